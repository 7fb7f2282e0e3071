/*
 * gateway_media_bench.c — serving photos: flockd's GET /media/{hash}/
 * {variant} against nginx serving the same bytes, in the same run.
 *
 * Goal (issue 7): served media requests/s with wrk for a cached variant,
 * at least 0.5x nginx's.
 *
 * Method: one flockd (FLOCK_TEST=1, loopback, a temp data directory)
 * takes a generated 12-megapixel JPEG from a signed-up user through
 * POST /v1/media; the bench polls GET /v1/media/{id} until the item is
 * ready, then reads the small and medium variants once (checking 200,
 * the immutable Cache-Control, the ETag and a 304 for If-None-Match).
 * nginx (Debian's nginx-light, 2 workers, sendfile, etag on) serves the
 * identical bytes at the same path with the same header class: the
 * security headers and Cache-Control flockd sent, Content-Type
 * image/jpeg, a strong ETag. wrk then runs with the same threads,
 * connections and duration against each server, alternating variant by
 * variant (flockd, nginx, flockd, nginx) so a neighbour's load on the
 * shared machine lands on both. Besides req/s and p99, each server's CPU
 * time per request (from /proc, nginx's workers included) is printed:
 * it is steadier than req/s on a loaded machine.
 *
 * Prints `figure` lines, `ratio media_serve nginx <flock/nginx>` for the
 * small variant (the feed's image size) and the same for medium.
 * Images processed per second per core and the pool's memory peak are
 * actors_media_bench's figures.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>

#include <jansson.h>

#include "actors/media.h"
#include "tests/bench/gateway/bench.h"

/* wrk: the same for both servers. 64 keep-alive connections on 2
 * threads is what the feed comparison uses; 10 s gives a stable rate. */
#define SERVE_CONNECTIONS 64
#define SERVE_SECONDS 10
/* The upload: a 12-megapixel photo-like JPEG (as actors_media_bench). */
#define PHOTO_WIDTH 4000u
#define PHOTO_HEIGHT 3000u
/* Processing a 12 Mpixel image takes about a second; a loaded machine
 * gets generous room. */
#define READY_WAIT_MS 120000u
#define READY_POLL_MS 50u
/* One HTTP answer read whole (a medium variant is ~100 KiB). */
#define ANSWER_BYTES_MAX (4u << 20)

typedef struct answer {
	int status;
	char *headers;      /* the header block, NUL-terminated, in buf */
	unsigned char *body;
	size_t body_length;
	char buf[ANSWER_BYTES_MAX];
} answer;

static answer reply;

/* One request on a fresh connection (Connection: close); the answer
 * into reply. Returns the status or -1. */
static int
request(int port, const char *method, const char *path, const char *token,
	const char *content_type, const void *body, size_t length,
	const char *extra_header)
{
	int fd = connect_local(port, NULL);
	if (fd < 0)
		return -1;
	char head[2048];
	int n = snprintf(head, sizeof head,
		"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		"Content-Length: %zu\r\n%s%s%s%s%s%s%s\r\n",
		method, path, length, token ? "Authorization: Bearer " : "",
		token ? token : "", token ? "\r\n" : "",
		content_type ? "Content-Type: " : "",
		content_type ? content_type : "", content_type ? "\r\n" : "",
		extra_header ? extra_header : "");
	bool ok = n > 0 && (size_t)n < sizeof head &&
		write(fd, head, (size_t)n) == n;
	const unsigned char *p = body;
	size_t left = length;
	while (ok && left > 0) {
		ssize_t w = write(fd, p, left);
		if (w <= 0)
			ok = false;
		else {
			p += w;
			left -= (size_t)w;
		}
	}
	size_t used = 0;
	ssize_t got;
	while (ok && used + 1 < sizeof reply.buf &&
		(got = read(fd, reply.buf + used, sizeof reply.buf - 1 - used)) >
			0)
		used += (size_t)got;
	close(fd);
	reply.buf[used] = '\0';
	reply.status = -1;
	char *end = strstr(reply.buf, "\r\n\r\n");
	if (!ok || end == NULL ||
		sscanf(reply.buf, "HTTP/1.%*d %d", &reply.status) != 1)
		return -1;
	*end = '\0';
	reply.headers = reply.buf;
	reply.body = (unsigned char *)end + 4;
	reply.body_length = used - (size_t)(reply.body -
		(unsigned char *)reply.buf);
	return reply.status;
}

/* A header's value from reply (case-insensitive name), copied. */
static bool
reply_header(const char *name, char *out, size_t size)
{
	size_t n = strlen(name);
	for (const char *line = strstr(reply.headers, "\r\n"); line != NULL;
		line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;
		if (strncasecmp(h, name, n) != 0 || h[n] != ':')
			continue;
		h += n + 1;
		while (*h == ' ')
			h++;
		size_t len = strcspn(h, "\r");
		if (len >= size)
			return false;
		memcpy(out, h, len);
		out[len] = '\0';
		return true;
	}
	return false;
}

/* A string field of reply's JSON body, copied. */
static bool
reply_json_string(const char *key, const char *inner, char *out,
	size_t size)
{
	json_error_t error;
	json_t *root_value = json_loadb((const char *)reply.body,
		reply.body_length, 0, &error);
	json_t *v = json_object_get(root_value, key);
	if (inner != NULL)
		v = json_object_get(v, inner);
	bool ok = json_is_string(v) && strlen(json_string_value(v)) < size;
	if (ok)
		snprintf(out, size, "%s", json_string_value(v));
	json_decref(root_value);
	return ok;
}

/* ---- nginx with the same bytes and headers ------------------------------- */

static bool
write_file(const char *path, const void *bytes, size_t length)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return false;
	bool ok = fwrite(bytes, 1, length, f) == length;
	return fclose(f) == 0 && ok;
}

static void
make_dirs(const char *path)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	mkdir(p, 0755);
}

/* The headers flockd sent that nginx must send too (add_header lines):
 * everything but what nginx writes itself. */
static void
nginx_add_headers(const char *flock_headers, FILE *conf)
{
	static const char *const own[] = {"content-type", "content-length",
		"etag", "connection", "keep-alive", "date", "server",
		"last-modified", "accept-ranges"};
	for (const char *line = strstr(flock_headers, "\r\n"); line != NULL;
		line = strstr(line + 2, "\r\n")) {
		const char *h = line + 2;
		size_t name = strcspn(h, ":\r");
		if (h[name] != ':')
			continue;
		bool skip = false;
		for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
			skip |= name == strlen(own[i]) &&
				strncasecmp(h, own[i], name) == 0;
		if (skip)
			continue;
		const char *v = h + name + 1;
		while (*v == ' ')
			v++;
		fprintf(conf, "   add_header %.*s \"%.*s\" always;\n", (int)name,
			h, (int)strcspn(v, "\r"), v);
	}
}

/* Starts nginx serving www (files already in place); the port out. */
static pid_t
nginx_start(const char *dir, const char *flock_headers, int *port_out)
{
	char conf[PATH_MAX], log[PATH_MAX];
	int port = free_port();
	snprintf(conf, sizeof conf, "%s/nginx.conf", dir);
	FILE *f = fopen(conf, "w");
	if (f == NULL)
		return -1;
	fprintf(f,
		"user root;\nworker_processes 2;\ndaemon off;\n"
		"pid %s/nginx.pid;\nerror_log %s/error.log;\n"
		"events { worker_connections 4096; }\n"
		"http {\n access_log off;\n keepalive_requests 1000000;\n"
		" sendfile on;\n tcp_nopush on;\n etag on;\n"
		" server {\n  listen 127.0.0.1:%d;\n  root %s/www;\n"
		"  location /media/ {\n   default_type image/jpeg;\n",
		dir, dir, port, dir);
	nginx_add_headers(flock_headers, f);
	fprintf(f, "  }\n }\n}\n");
	fclose(f);
	snprintf(log, sizeof log, "%s/nginx.out", dir);
	char *argv[] = {"/usr/sbin/nginx", "-p", (char *)dir, "-c", conf, NULL};
	pid_t pid = spawn(argv, log, NULL);
	for (int i = 0; i < 50; i++) {
		usleep(100000);
		int fd = connect_local(port, NULL);
		if (fd >= 0) {
			close(fd);
			*port_out = port;
			return pid;
		}
	}
	stop(pid);
	return -1;
}

/* CPU time of pid and its children that are alive (nginx's workers). */
static uint64_t
cpu_tree_us(pid_t pid)
{
	uint64_t total = cpu_us(pid);
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		pid_t child = (pid_t)atoi(e->d_name);
		if (child <= 0 || child == pid)
			continue;
		char path[64], buf[512];
		snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		char *p = strrchr(buf, ')');
		int ppid = 0;
		if (p != NULL && sscanf(p + 2, "%*c %d", &ppid) == 1 &&
			ppid == pid)
			total += cpu_us(child);
	}
	if (d != NULL)
		closedir(d);
	return total;
}

/* ---- the comparison -------------------------------------------------------- */

typedef struct served {
	wrk_result r;
	double cpu_per_request_us;
} served;

static served
serve(pid_t pid, int port, const char *path)
{
	served s;
	uint64_t before = cpu_tree_us(pid);
	s.r = wrk(port, path, SERVE_CONNECTIONS, SERVE_SECONDS, NULL, NULL,
		NULL);
	uint64_t used = cpu_tree_us(pid) - before;
	s.cpu_per_request_us = s.r.rps > 0 ?
		(double)used / (s.r.rps * SERVE_SECONDS) : 0;
	return s;
}

static void
report(const char *prefix, const char *name, const served *s)
{
	char n[128];
	snprintf(n, sizeof n, "%s_%s", prefix, name);
	figure(n, s->r.rps, "req/s");
	snprintf(n, sizeof n, "%s_%s_p99_ms", prefix, name);
	figure(n, s->r.p99_ms, "ms");
	snprintf(n, sizeof n, "%s_%s_cpu_per_request", prefix, name);
	figure(n, s->cpu_per_request_us, "us");
}

/* Signs up, uploads the photo, waits for ready; the hash out. */
static bool
upload_photo(const node *n, char *hash, size_t hash_size)
{
	static const char signup[] = "{\"username\":\"photographer\","
		"\"email\":\"p@example.com\",\"password\":\"correct horse\"}";
	char token[1024], media_id[32], path[128];
	if (request(n->port, "POST", "/v1/signup", NULL, "application/json",
		    signup, sizeof signup - 1, NULL) != 201 ||
		!reply_json_string("token", NULL, token, sizeof token)) {
		fprintf(stderr, "bench: signup failed: %d %s\n", reply.status,
			(const char *)reply.body);
		return false;
	}
	media_generate_spec spec = {.format = MEDIA_GENERATE_JPEG,
		.width = PHOTO_WIDTH, .height = PHOTO_HEIGHT, .quality = 90,
		.seed = 7};
	unsigned char *photo = NULL;
	size_t length = 0;
	if (media_vips_generate(&spec, &photo, &length) != 0) {
		fprintf(stderr, "bench: could not generate a JPEG\n");
		return false;
	}
	uint64_t t0 = now_ns();
	int status = request(n->port, "POST", "/v1/media", token, "image/jpeg",
		photo, length, NULL);
	free(photo);
	if (status != 201 ||
		!reply_json_string("media_id", NULL, media_id, sizeof media_id)) {
		fprintf(stderr, "bench: upload failed: %d %s\n", status,
			(const char *)reply.body);
		return false;
	}
	printf("upload: %zu bytes answered in %.1f ms\n", length,
		(double)(now_ns() - t0) / 1e6);
	snprintf(path, sizeof path, "/v1/media/%s", media_id);
	char state[32] = "", url[256];
	for (uint32_t waited = 0; waited < READY_WAIT_MS;
		waited += READY_POLL_MS) {
		if (request(n->port, "GET", path, token, NULL, NULL, 0, NULL) ==
				200 &&
			reply_json_string("status", NULL, state, sizeof state) &&
			strcmp(state, "processing") != 0)
			break;
		usleep(READY_POLL_MS * 1000u);
	}
	printf("media: %s after %.1f s\n", state,
		(double)(now_ns() - t0) / 1e9);
	if (strcmp(state, "ready") != 0 ||
		!reply_json_string("variants", "small", url, sizeof url)) {
		fprintf(stderr, "bench: media did not turn ready: %s\n",
			(const char *)reply.body);
		return false;
	}
	/* ".../media/<hash>/small" */
	const char *h = strstr(url, "/media/");
	if (h == NULL || strlen(h + 7) < MEDIA_HASH_HEX_BYTES ||
		hash_size <= MEDIA_HASH_HEX_BYTES)
		return false;
	memcpy(hash, h + 7, MEDIA_HASH_HEX_BYTES);
	hash[MEDIA_HASH_HEX_BYTES] = '\0';
	return true;
}

/* Reads a variant from flockd and checks its headers; puts the same
 * bytes where nginx serves them. The header block for nginx out. */
static bool
stage_variant(const node *n, const char *path, const char *nginx_dir,
	char *headers, size_t headers_size)
{
	char etag[200], cache[128], type[64], inm[256];
	if (request(n->port, "GET", path, NULL, NULL, NULL, 0, NULL) != 200 ||
		!reply_header("etag", etag, sizeof etag) ||
		!reply_header("cache-control", cache, sizeof cache) ||
		!reply_header("content-type", type, sizeof type) ||
		strstr(cache, "immutable") == NULL ||
		strcmp(type, "image/jpeg") != 0) {
		fprintf(stderr, "bench: GET %s: %d\n%s\n", path, reply.status,
			reply.headers ? reply.headers : "");
		return false;
	}
	printf("%s: %zu bytes, ETag %s, Cache-Control %s\n", path,
		reply.body_length, etag, cache);
	char file[PATH_MAX];
	snprintf(file, sizeof file, "%s/www%s", nginx_dir, path);
	char *slash = strrchr(file, '/');
	*slash = '\0';
	make_dirs(file);
	*slash = '/';
	if (!write_file(file, reply.body, reply.body_length))
		return false;
	snprintf(headers, headers_size, "%s", reply.headers);
	snprintf(inm, sizeof inm, "If-None-Match: %s\r\n", etag);
	int status = request(n->port, "GET", path, NULL, NULL, NULL, 0, inm);
	if (status != 304) {
		fprintf(stderr, "bench: If-None-Match answered %d\n", status);
		return false;
	}
	return true;
}

static void
bench_media_serve(void)
{
	node n;
	if (!node_start(&n, "media", NULL))
		return;
	char hash[MEDIA_HASH_HEX_BYTES + 1];
	if (!upload_photo(&n, hash, sizeof hash)) {
		stop(n.pid);
		return;
	}
	static const char *const variants[] = {"small", "medium"};
	char paths[2][160], nginx_dir[256], headers[8192];
	snprintf(nginx_dir, sizeof nginx_dir, "%s/nginx", tmp_root);
	for (size_t i = 0; i < 2; i++) {
		snprintf(paths[i], sizeof paths[i], "/media/%s/%s", hash,
			variants[i]);
		if (!stage_variant(&n, paths[i], nginx_dir, headers,
			    sizeof headers)) {
			stop(n.pid);
			return;
		}
	}
	int ng_port = 0;
	pid_t ng = nginx_start(nginx_dir, headers, &ng_port);
	if (ng < 0) {
		printf("skip nginx: it did not start (see %s)\n", nginx_dir);
		stop(n.pid);
		return;
	}
	for (size_t i = 0; i < 2; i++) {
		/* The small variant (the feed's image) has the issue's
		 * names; medium is the same with its own. */
		const char *ratio = i == 0 ? "media_serve" : "media_serve_medium";
		served f = serve(n.pid, n.port, paths[i]);
		served x = serve(ng, ng_port, paths[i]);
		report(ratio, "flock", &f);
		report(ratio, "nginx", &x);
		if (x.r.rps <= 0 || f.r.rps <= 0)
			continue;
		printf("ratio %s nginx %.3f\n", ratio, f.r.rps / x.r.rps);
		printf("ratio %s_p99 nginx %.3f\n", ratio,
			f.r.p99_ms / (x.r.p99_ms > 0 ? x.r.p99_ms : 1));
		if (x.cpu_per_request_us > 0)
			printf("ratio %s_cpu_per_request nginx %.3f\n", ratio,
				f.cpu_per_request_us / x.cpu_per_request_us);
	}
	stop(ng);
	stop(n.pid);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	locate();
	if (!executable(flockd_path)) {
		printf("skip gateway media bench: no flockd at %s\n",
			flockd_path);
		return 0;
	}
	if (!executable("/usr/bin/wrk") || !executable("/usr/sbin/nginx")) {
		printf("skip gateway media bench: wrk and nginx-light are "
		       "needed (make bench installs them)\n");
		return 0;
	}
	if (media_vips_init() != 0) {
		printf("skip gateway media bench: libvips did not start\n");
		return 0;
	}
	snprintf(tmp_root, sizeof tmp_root, "/tmp/flock-media-bench-XXXXXX");
	if (mkdtemp(tmp_root) == NULL)
		return 1;
	chmod(tmp_root, 0755);
	bench_media_serve();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
	if (system(cmd) != 0)
		fprintf(stderr, "bench: could not remove %s\n", tmp_root);
	return 0;
}
