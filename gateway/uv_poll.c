/*
 * uv_poll.c — libuv's uv_poll_init/start/stop as lws's libuv plugin
 * sees them: unchanged events are not applied again, and the changes
 * made during a batch (gw__uv_poll_batch_begin/end, on the loop's
 * thread) are applied once, as their net result, when it ends.
 *
 * Role: Debian's libuv (1.44) makes every uv_poll_start an epoll_ctl
 * DEL and, at the next poll, an ADD, even when the events did not
 * change; lws 4.1's plugin calls it on every lws_change_pollfd, also for
 * a change that changes nothing (POLLIN again when a keep-alive request
 * takes a header table), and lws_http_transaction_completed asks for
 * POLLOUT only to clear it on the next writable turn. On GET /v1/feed
 * that was 7 epoll_ctl per request and a sixth of the loop's CPU.
 * flockd exports these three symbols (Makefile), so the plugin, which
 * lws loads with dlopen, binds to them; they call libuv's own
 * (dlsym RTLD_NEXT). In a program that does not export them only the
 * gateway's own calls come here, and everything works as before.
 *
 * Invariants:
 *   - what libuv has applied for a handle is what the shadow says
 *     (applied/cb_applied), or the shadow is not `known` and the next
 *     call goes through;
 *   - a batch is one thread's; a call from another thread, or outside
 *     a batch, is applied at once; uv_poll_stop is always applied at
 *     once (a stopped handle may be closed next);
 *   - a handle that is closing when the batch ends is left alone
 *     (libuv stopped it; its memory lives until its close callback,
 *     which runs after the batch).
 *
 * What it deliberately does not do: change which events are watched,
 * or when: a batch ends before the loop polls again.
 */
#include "gateway/internal.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* The shadow table: descriptors in chunks allocated on first use. */
#define SHADOW_CHUNK_FDS 1024u
#define SHADOW_CHUNKS 4096u /* descriptors below 4 Mi */
/* Handles one batch may hold; past that, changes apply at once. */
#define BATCH_HANDLES_MAX 1024u

typedef struct shadow {
	uv_poll_t *handle;
	uv_poll_cb cb;
	uv_poll_cb cb_applied;
	int want;
	int applied;
	bool known;
	bool queued;
} shadow;

static _Atomic(shadow *) chunks[SHADOW_CHUNKS];

typedef int (*poll_init_fn)(uv_loop_t *, uv_poll_t *, int);
typedef int (*poll_start_fn)(uv_poll_t *, int, uv_poll_cb);
typedef int (*poll_stop_fn)(uv_poll_t *);

static poll_init_fn real_init;
static poll_start_fn real_start;
static poll_stop_fn real_stop;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

/* dlsym answers a function as an object pointer; POSIX lets it be
 * copied to a function pointer (ISO C has no cast for it). */
static void
next_symbol(const char *name, void *fn, size_t size)
{
	void *p = dlsym(RTLD_NEXT, name);
	gw__assert(p != NULL && size == sizeof p);
	memcpy(fn, &p, size);
}

static void
find_real(void)
{
	next_symbol("uv_poll_init", &real_init, sizeof real_init);
	next_symbol("uv_poll_start", &real_start, sizeof real_start);
	next_symbol("uv_poll_stop", &real_stop, sizeof real_stop);
	gw__assert(real_init != NULL && real_start != NULL &&
		real_stop != NULL);
}

static _Thread_local struct {
	bool open;
	uint32_t count;
	int fds[BATCH_HANDLES_MAX];
} batch;

static shadow *
shadow_of(int fd, bool create)
{
	if (fd < 0 || (unsigned)fd >= SHADOW_CHUNK_FDS * SHADOW_CHUNKS)
		return NULL;
	uint32_t c = (uint32_t)fd / SHADOW_CHUNK_FDS;
	shadow *chunk = atomic_load_explicit(&chunks[c], memory_order_acquire);
	if (chunk == NULL) {
		if (!create)
			return NULL;
		shadow *fresh = calloc(SHADOW_CHUNK_FDS, sizeof *fresh);
		if (fresh == NULL)
			return NULL;
		shadow *expected = NULL;
		if (atomic_compare_exchange_strong_explicit(&chunks[c],
			    &expected, fresh, memory_order_acq_rel,
			    memory_order_acquire)) {
			chunk = fresh;
		} else {
			free(fresh);
			chunk = expected;
		}
	}
	return &chunk[(uint32_t)fd % SHADOW_CHUNK_FDS];
}

static int
handle_fd(uv_poll_t *h)
{
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)h, &fd) != 0)
		return -1;
	return fd;
}

/* Brings libuv to what the shadow wants. */
static int
apply(shadow *s)
{
	if (s->known && s->applied == s->want &&
		(s->want == 0 || s->cb_applied == s->cb))
		return 0;
	int rc = s->want != 0 ? real_start(s->handle, s->want, s->cb)
			      : real_stop(s->handle);
	if (rc == 0) {
		s->applied = s->want;
		s->cb_applied = s->cb;
		s->known = true;
	} else {
		s->known = false;
	}
	return rc;
}

int
uv_poll_init(uv_loop_t *loop, uv_poll_t *h, int fd)
{
	pthread_once(&real_once, find_real);
	int rc = real_init(loop, h, fd);
	shadow *s = rc == 0 ? shadow_of(fd, true) : NULL;
	if (s != NULL)
		*s = (shadow){.handle = h, .known = true};
	return rc;
}

int
uv_poll_start(uv_poll_t *h, int events, uv_poll_cb cb)
{
	pthread_once(&real_once, find_real);
	shadow *s = shadow_of(handle_fd(h), false);
	if (s == NULL || s->handle != h || uv_is_closing((uv_handle_t *)h))
		return real_start(h, events, cb);
	s->want = events;
	s->cb = cb;
	if (batch.open && events != 0) {
		if (s->queued)
			return 0;
		if (batch.count < BATCH_HANDLES_MAX) {
			s->queued = true;
			batch.fds[batch.count++] = handle_fd(h);
			return 0;
		}
	}
	return apply(s);
}

int
uv_poll_stop(uv_poll_t *h)
{
	pthread_once(&real_once, find_real);
	shadow *s = shadow_of(handle_fd(h), false);
	if (s == NULL || s->handle != h || uv_is_closing((uv_handle_t *)h))
		return real_stop(h);
	s->want = 0;
	return apply(s);
}

void
gw__uv_poll_batch_begin(void)
{
	batch.open = true;
	batch.count = 0;
}

void
gw__uv_poll_batch_end(void)
{
	batch.open = false;
	for (uint32_t i = 0; i < batch.count; i++) {
		shadow *s = shadow_of(batch.fds[i], false);
		if (s == NULL || !s->queued)
			continue;
		s->queued = false;
		if (s->handle == NULL || uv_is_closing((uv_handle_t *)s->handle))
			continue;
		(void)apply(s);
	}
	batch.count = 0;
}
