/*
 * port.h — loopback ports for the benchmarks that start servers (Redis,
 * flockd, cluster nodes): one the kernel finds free now, so runs beside
 * other users of the machine do not meet on fixed ports.
 *
 * Included by the benchmarks in tests/bench (and gateway/bench.h there);
 * the helpers are static inline, so a bench that uses one is not warned
 * about the other.
 */
#ifndef FLOCK_TESTS_BENCH_PORT_H
#define FLOCK_TESTS_BENCH_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

/* Binds fd to 127.0.0.1:port (0: any); the port bound, or -1. */
static inline int
bench_bind_loopback(int fd, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t n = sizeof a;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
		getsockname(fd, (struct sockaddr *)&a, &n) != 0)
		return -1;
	return ntohs(a.sin_port);
}

/* Whether 127.0.0.1:port can be bound now. */
static inline bool
port_free(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	bool ok = bench_bind_loopback(fd, port) == port;
	close(fd);
	return ok;
}

/* A loopback port the kernel found free, or -1. */
static inline int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	int port = bench_bind_loopback(fd, 0);
	close(fd);
	return port;
}

#endif
