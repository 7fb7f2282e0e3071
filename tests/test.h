/*
 * test.h — flock's test registry.
 *
 * Each TEST(name) registers itself at load time; the runner
 * (tests/runner.c) forks one child per test with a timeout, so a crash
 * or a hang fails that test alone. Checks abort the child with the file,
 * line and the failed expression. A test passes when its function
 * returns; TEST_SKIP reports why a test could not run here.
 *
 * Names start with the module ("runtime_", "persistence_", ...), so
 * `flock-tests runtime_` runs one module's tests.
 */
#ifndef FLOCK_TEST_H
#define FLOCK_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_function)(void);

/* Default seconds a test may run before the runner kills it. */
#define TEST_TIMEOUT_SECONDS_DEFAULT 60

void test_register(const char *name, test_function fn, unsigned timeout_s);
_Noreturn void test_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
_Noreturn void test_skip(const char *why);
/* A fresh empty directory for this test (removed by the runner after). */
const char *test_tmpdir(void);
/* True when built with sanitizers (tests may shrink iteration counts only
 * for speed under ASan, never their assertions). */
bool test_sanitized(void);

#define TEST_WITH_TIMEOUT(name, seconds)                                     \
	static void name(void);                                              \
	__attribute__((constructor)) static void name##__register(void)      \
	{                                                                    \
		test_register(#name, name, (seconds));                       \
	}                                                                    \
	static void name(void)

#define TEST(name) TEST_WITH_TIMEOUT(name, TEST_TIMEOUT_SECONDS_DEFAULT)

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond))                                                 \
			test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);   \
	} while (0)

#define CHECK_MSG(cond, ...)                                                 \
	do {                                                                 \
		if (!(cond))                                                 \
			test_fail(__FILE__, __LINE__, __VA_ARGS__);          \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		long long check_a__ = (long long)(a);                        \
		long long check_b__ = (long long)(b);                        \
		if (check_a__ != check_b__)                                  \
			test_fail(__FILE__, __LINE__,                        \
				"CHECK_EQ(%s, %s): %lld != %lld", #a, #b,    \
				check_a__, check_b__);                       \
	} while (0)

#define CHECK_EQ_U64(a, b)                                                   \
	do {                                                                 \
		uint64_t check_a__ = (uint64_t)(a);                          \
		uint64_t check_b__ = (uint64_t)(b);                          \
		if (check_a__ != check_b__)                                  \
			test_fail(__FILE__, __LINE__,                        \
				"CHECK_EQ_U64(%s, %s): %" PRIu64             \
				" != %" PRIu64,                              \
				#a, #b, check_a__, check_b__);               \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                   \
	do {                                                                 \
		const char *check_a__ = (a);                                 \
		const char *check_b__ = (b);                                 \
		if (check_a__ == NULL || check_b__ == NULL ||                \
			strcmp(check_a__, check_b__) != 0)                   \
			test_fail(__FILE__, __LINE__,                        \
				"CHECK_STR_EQ(%s, %s): \"%s\" != \"%s\"", #a, \
				#b, check_a__ ? check_a__ : "(null)",        \
				check_b__ ? check_b__ : "(null)");           \
	} while (0)

#define TEST_SKIP(why) test_skip(why)

#endif /* FLOCK_TEST_H */
