/*
 * router.c — the route table, query strings and header values.
 *
 * Role: everything about a request that is parsing text, with no socket:
 * matching method + path to a route (with up to two path parameters),
 * query parameters, bearer tokens, content types, ETags. All of it is a
 * fuzz target (tests/fuzz/http_fuzz.c).
 *
 * Invariants: every output buffer is bounded and NUL-terminated; a path
 * segment that is empty, "." or ".." never matches a parameter, so no
 * parameter can walk a file path.
 *
 * What it deliberately does not do: read the request line or headers off
 * the wire (libwebsockets does), decide authorization.
 */
#include "gateway/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The table. Order matters where patterns overlap: literal segments are
 * listed before parameters at the same position ("/v1/users/me" before
 * "/v1/users/{}", "/v1/media/uploads" before "/v1/media/{}"). */
static const gw__route_info routes[] = {
	{GW_ROUTE_SIGNUP, GW_METHOD_POST, "/v1/signup", GW_BODY_JSON,
		GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 201},
	{GW_ROUTE_LOGIN, GW_METHOD_POST, "/v1/login", GW_BODY_JSON,
		GW_ROUTE_F_API, 200},
	{GW_ROUTE_USER_ME, GW_METHOD_PATCH, "/v1/users/me", GW_BODY_JSON,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 200},
	{GW_ROUTE_USER_GET, GW_METHOD_GET, "/v1/users/{}", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 200},
	{GW_ROUTE_FOLLOW, GW_METHOD_POST, "/v1/users/{}/follow", GW_BODY_JSON,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 200},
	{GW_ROUTE_FOLLOWERS, GW_METHOD_GET, "/v1/users/{}/followers",
		GW_BODY_NONE, GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API,
		200},
	{GW_ROUTE_FOLLOWING, GW_METHOD_GET, "/v1/users/{}/following",
		GW_BODY_NONE, GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API,
		200},
	{GW_ROUTE_USER_POSTS, GW_METHOD_GET, "/v1/users/{}/posts", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API, 200},
	{GW_ROUTE_MEDIA_RESERVE, GW_METHOD_POST, "/v1/media/uploads",
		GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 201},
	{GW_ROUTE_MEDIA_PUT, GW_METHOD_PUT, "/v1/media/uploads/{}",
		GW_BODY_RAW_IMAGE, GW_ROUTE_F_API, 201},
	{GW_ROUTE_MEDIA_UPLOAD, GW_METHOD_POST, "/v1/media", GW_BODY_UPLOAD,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 201},
	{GW_ROUTE_MEDIA_GET, GW_METHOD_GET, "/v1/media/{}", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 200},
	{GW_ROUTE_POST_CREATE, GW_METHOD_POST, "/v1/posts", GW_BODY_POST,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 201},
	{GW_ROUTE_POST_GET, GW_METHOD_GET, "/v1/posts/{}", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 200},
	{GW_ROUTE_POST_DELETE, GW_METHOD_DELETE, "/v1/posts/{}", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 204},
	{GW_ROUTE_LIKE, GW_METHOD_POST, "/v1/posts/{}/like", GW_BODY_JSON,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 200},
	{GW_ROUTE_COMMENTS, GW_METHOD_GET, "/v1/posts/{}/comments", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API, 200},
	{GW_ROUTE_COMMENT_ADD, GW_METHOD_POST, "/v1/posts/{}/comments",
		GW_BODY_JSON,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 201},
	{GW_ROUTE_COMMENT_DELETE, GW_METHOD_DELETE, "/v1/posts/{}/comments/{}",
		GW_BODY_NONE, GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 204},
	{GW_ROUTE_FEED, GW_METHOD_GET, "/v1/feed", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API, 200},
	{GW_ROUTE_STORY_POST, GW_METHOD_POST, "/v1/stories", GW_BODY_JSON,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_IDEMPOTENT | GW_ROUTE_F_API, 201},
	{GW_ROUTE_STORIES, GW_METHOD_GET, "/v1/stories", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 200},
	{GW_ROUTE_STORY_SEEN, GW_METHOD_POST, "/v1/stories/{}/seen",
		GW_BODY_NONE, GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 204},
	{GW_ROUTE_NOTIFICATIONS, GW_METHOD_GET, "/v1/notifications",
		GW_BODY_NONE, GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API,
		200},
	{GW_ROUTE_NOTIFICATIONS_READ, GW_METHOD_POST, "/v1/notifications/read",
		GW_BODY_JSON, GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 204},
	{GW_ROUTE_SEARCH, GW_METHOD_GET, "/v1/search", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_PAGED | GW_ROUTE_F_API, 200},
	{GW_ROUTE_STREAM, GW_METHOD_GET, "/v1/stream", GW_BODY_NONE,
		GW_ROUTE_F_AUTH | GW_ROUTE_F_API, 101},
	{GW_ROUTE_MEDIA_FILE, GW_METHOD_GET, "/media/{}/{}", GW_BODY_NONE, 0,
		200},
	{GW_ROUTE_METRICS, GW_METHOD_GET, "/metrics", GW_BODY_NONE, 0, 200},
	{GW_ROUTE_HEALTHZ, GW_METHOD_GET, "/healthz", GW_BODY_NONE, 0, 200},
	{GW_ROUTE_READYZ, GW_METHOD_GET, "/readyz", GW_BODY_NONE, 0, 200},
	{GW_ROUTE_INDEX, GW_METHOD_GET, "/", GW_BODY_NONE, 0, 200},
	{GW_ROUTE_STATIC, GW_METHOD_GET, "/static/{*}", GW_BODY_NONE, 0, 200},
};

#define ROUTES_COUNT (sizeof routes / sizeof routes[0])

static const gw__route_info unmatched = {GW_ROUTE_UNMATCHED,
	GW_METHOD_OTHER, "unmatched", GW_BODY_NONE, GW_ROUTE_F_API, 404};

const char *
gw__method_name(gw__method m)
{
	static const char *const names[GW_METHOD_COUNT] = {"GET", "HEAD",
		"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"};
	if ((unsigned)m >= GW_METHOD_COUNT)
		return "OTHER";
	return names[m];
}

const gw__route_info *
gw__route_info_of(gw__route_id id)
{
	for (size_t i = 0; i < ROUTES_COUNT; i++)
		if (routes[i].id == id)
			return &routes[i];
	return &unmatched;
}

const char *
gw__route_label(gw__route_id id)
{
	return gw__route_info_of(id)->pattern;
}

/* Matches one pattern; fills params. The path has no query. */
static bool
pattern_match(const char *pattern, const char *path, gw__route_match *m)
{
	const char *p = pattern;
	const char *s = path;
	uint32_t params = 0;
	while (*p != '\0') {
		if (p[0] == '{' && p[1] == '*' && p[2] == '}') {
			/* The rest of the path, which must be non-empty. */
			size_t n = strlen(s);
			if (n == 0 || n >= GW_PATH_PARAM_BYTES_MAX)
				return false;
			if (params >= GW_PATH_PARAMS_MAX)
				return false;
			memcpy(m->params[params], s, n + 1);
			params++;
			s += n;
			p += 3;
			continue;
		}
		if (p[0] == '{' && p[1] == '}') {
			size_t n = strcspn(s, "/");
			if (n == 0 || n >= GW_PATH_PARAM_BYTES_MAX)
				return false;
			if ((n == 1 && s[0] == '.') ||
				(n == 2 && s[0] == '.' && s[1] == '.'))
				return false;
			if (params >= GW_PATH_PARAMS_MAX)
				return false;
			memcpy(m->params[params], s, n);
			m->params[params][n] = '\0';
			params++;
			s += n;
			p += 2;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	if (*s != '\0')
		return false;
	m->params_count = params;
	return true;
}

int
gw__route(gw__method method, const char *path, gw__route_match *out)
{
	gw__assert(path != NULL);
	gw__assert(out != NULL);
	memset(out, 0, sizeof *out);
	out->info = &unmatched;
	if (path[0] != '/' || strlen(path) >= GW_PATH_BYTES_MAX)
		return GW_ENOTFOUND;
	/* HEAD is served as GET without the body. */
	gw__method want = method == GW_METHOD_HEAD ? GW_METHOD_GET : method;
	const gw__route_info *found = NULL;
	gw__route_match scratch;
	for (size_t i = 0; i < ROUTES_COUNT; i++) {
		/* A literal first byte after "/v1/" rules most patterns out
		 * before any copying. */
		if (routes[i].pattern[1] != path[1])
			continue;
		scratch.params_count = 0;
		if (!pattern_match(routes[i].pattern, path, &scratch))
			continue;
		out->allowed_methods |= 1u << routes[i].method;
		if (routes[i].method == GW_METHOD_GET)
			out->allowed_methods |= 1u << GW_METHOD_HEAD;
		if (found == NULL && routes[i].method == want) {
			found = &routes[i];
			memcpy(out->params, scratch.params, sizeof out->params);
			out->params_count = scratch.params_count;
		}
	}
	if (found != NULL) {
		out->info = found;
		return 0;
	}
	if (out->allowed_methods != 0)
		return GW_EMETHOD;
	return GW_ENOTFOUND;
}

void
gw__allow_header(uint32_t allowed_methods, char *buf, size_t size)
{
	gw__assert(size > 0);
	buf[0] = '\0';
	size_t used = 0;
	for (int m = 0; m < GW_METHOD_COUNT; m++) {
		if ((allowed_methods & (1u << m)) == 0)
			continue;
		int n = snprintf(buf + used, size - used, "%s%s",
			used > 0 ? ", " : "", gw__method_name((gw__method)m));
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += (size_t)n;
	}
}

/* ---- query strings ------------------------------------------------------ */

void
gw__query_init(gw__query *q)
{
	q->count = 0;
	q->used = 0;
}

static int
query_store(gw__query *q, const char *name, size_t name_length,
	const char *value, size_t value_length)
{
	size_t need = name_length + 1 + value_length + 1;
	if (q->count >= GW_QUERY_PARAMS_MAX ||
		need > GW_QUERY_BYTES_MAX - q->used)
		return GW_ETOOLARGE;
	char *n = q->storage + q->used;
	memcpy(n, name, name_length);
	n[name_length] = '\0';
	char *v = n + name_length + 1;
	memcpy(v, value, value_length);
	v[value_length] = '\0';
	q->names[q->count] = n;
	q->values[q->count] = v;
	q->count++;
	q->used += (uint32_t)need;
	return 0;
}

int
gw__query_add(gw__query *q, const char *fragment, size_t length)
{
	const char *eq = memchr(fragment, '=', length);
	if (eq == NULL)
		return query_store(q, fragment, length, "", 0);
	size_t name_length = (size_t)(eq - fragment);
	return query_store(q, fragment, name_length, eq + 1,
		length - name_length - 1);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes src[0..n) into dst (at least n bytes); returns the length or
 * GW_EINVAL. */
static int
percent_decode(const char *src, size_t n, char *dst)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = src[i];
		if (c == '+') {
			dst[o++] = ' ';
		} else if (c == '%') {
			if (i + 2 >= n)
				return GW_EINVAL;
			int hi = hex_value(src[i + 1]);
			int lo = hex_value(src[i + 2]);
			if (hi < 0 || lo < 0)
				return GW_EINVAL;
			char d = (char)(hi * 16 + lo);
			if (d == '\0')
				return GW_EINVAL;
			dst[o++] = d;
			i += 2;
		} else if (c == '\0') {
			return GW_EINVAL;
		} else {
			dst[o++] = c;
		}
	}
	return (int)o;
}

int
gw__query_parse(gw__query *q, const char *raw, size_t length)
{
	gw__query_init(q);
	if (length >= GW_QUERY_BYTES_MAX)
		return GW_ETOOLARGE;
	char name[GW_QUERY_BYTES_MAX];
	char value[GW_QUERY_BYTES_MAX];
	size_t i = 0;
	while (i < length) {
		size_t end = i;
		while (end < length && raw[end] != '&')
			end++;
		if (end > i) {
			const char *frag = raw + i;
			size_t flen = end - i;
			const char *eq = memchr(frag, '=', flen);
			size_t nlen = eq ? (size_t)(eq - frag) : flen;
			int dn = percent_decode(frag, nlen, name);
			if (dn < 0)
				return dn;
			int dv = 0;
			if (eq != NULL) {
				dv = percent_decode(eq + 1, flen - nlen - 1,
					value);
				if (dv < 0)
					return dv;
			}
			int rc = query_store(q, name, (size_t)dn, value,
				(size_t)dv);
			if (rc < 0)
				return rc;
		}
		i = end + 1;
	}
	return 0;
}

const char *
gw__query_get(const gw__query *q, const char *name)
{
	for (uint32_t i = 0; i < q->count; i++)
		if (strcmp(q->names[i], name) == 0)
			return q->values[i];
	return NULL;
}

int
gw__percent_encode(const char *src, char *dst, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *s = (const unsigned char *)src; *s; s++) {
		bool plain = isalnum(*s) || *s == '-' || *s == '_' ||
			*s == '.' || *s == '~';
		size_t need = plain ? 1 : 3;
		if (o + need >= size)
			return GW_ETOOLARGE;
		if (plain) {
			dst[o++] = (char)*s;
		} else {
			dst[o++] = '%';
			dst[o++] = hex[*s >> 4];
			dst[o++] = hex[*s & 15];
		}
	}
	if (o >= size)
		return GW_ETOOLARGE;
	dst[o] = '\0';
	return (int)o;
}

int
gw__parse_u64(const char *s, uint64_t *out)
{
	if (s == NULL || *s == '\0')
		return GW_EINVAL;
	uint64_t v = 0;
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		if (s[n] < '0' || s[n] > '9' || n >= 20)
			return GW_EINVAL;
		uint64_t d = (uint64_t)(s[n] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return GW_EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int
gw__parse_page(const gw__query *q, uint32_t *limit, const char **cursor)
{
	*limit = API_PAGE_LIMIT_DEFAULT;
	*cursor = NULL;
	const char *l = gw__query_get(q, "limit");
	if (l != NULL) {
		uint64_t v;
		if (gw__parse_u64(l, &v) < 0 || v == 0)
			return GW_EINVAL;
		*limit = v > API_PAGE_LIMIT_MAX ? API_PAGE_LIMIT_MAX
						: (uint32_t)v;
	}
	const char *c = gw__query_get(q, "after_cursor");
	if (c != NULL && c[0] != '\0') {
		if (strlen(c) >= GW_PATH_PARAM_BYTES_MAX * 2)
			return GW_EINVAL;
		*cursor = c;
	}
	return 0;
}

/* ---- header values ------------------------------------------------------ */

int
gw__bearer(const char *value, const char **token, size_t *length)
{
	if (value == NULL)
		return GW_EINVAL;
	while (*value == ' ' || *value == '\t')
		value++;
	if (strncasecmp(value, "Bearer", 6) != 0)
		return GW_EINVAL;
	value += 6;
	if (*value != ' ' && *value != '\t')
		return GW_EINVAL;
	while (*value == ' ' || *value == '\t')
		value++;
	size_t n = strlen(value);
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		n--;
	if (n == 0 || n > GW_TOKEN_BYTES_MAX)
		return GW_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (value[i] <= ' ' || value[i] > '~')
			return GW_EINVAL;
	*token = value;
	*length = n;
	return 0;
}

static bool
token_char(char c)
{
	return c != '\0' &&
		(isalnum((unsigned char)c) || strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int
gw__content_type(const char *value, char *type, size_t type_size,
	char *boundary, size_t boundary_size)
{
	gw__assert(type_size > 0);
	type[0] = '\0';
	if (boundary_size > 0)
		boundary[0] = '\0';
	if (value == NULL)
		return GW_EINVAL;
	const char *s = value;
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = 0;
	bool slash = false;
	while (token_char(*s) || (*s == '/' && !slash)) {
		if (*s == '/')
			slash = true;
		if (n + 1 >= type_size)
			return GW_EINVAL;
		type[n++] = (char)tolower((unsigned char)*s);
		s++;
	}
	type[n] = '\0';
	if (!slash || n < 3 || type[0] == '/' || type[n - 1] == '/')
		return GW_EINVAL;
	/* Parameters: ; name=value or ; name="quoted". */
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			return 0;
		if (*s != ';')
			return GW_EINVAL;
		s++;
		while (*s == ' ' || *s == '\t')
			s++;
		const char *name = s;
		while (token_char(*s))
			s++;
		size_t name_length = (size_t)(s - name);
		if (name_length == 0 || *s != '=')
			return GW_EINVAL;
		s++;
		char v[256];
		size_t vn = 0;
		if (*s == '"') {
			s++;
			while (*s != '"') {
				if (*s == '\0')
					return GW_EINVAL;
				if (*s == '\\' && s[1] != '\0')
					s++;
				if (vn + 1 >= sizeof v)
					return GW_EINVAL;
				v[vn++] = *s++;
			}
			s++;
		} else {
			while (token_char(*s)) {
				if (vn + 1 >= sizeof v)
					return GW_EINVAL;
				v[vn++] = *s++;
			}
		}
		v[vn] = '\0';
		if (name_length == 8 && strncasecmp(name, "boundary", 8) == 0 &&
			boundary_size > 0) {
			/* RFC 2046: 1 to 70 characters. */
			if (vn == 0 || vn > 70 || vn + 1 > boundary_size)
				return GW_EINVAL;
			memcpy(boundary, v, vn + 1);
		}
	}
}

bool
gw__etag_matches(const char *if_none_match, const char *etag)
{
	if (if_none_match == NULL || etag == NULL)
		return false;
	size_t etag_length = strlen(etag);
	const char *s = if_none_match;
	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (*s == '\0')
			return false;
		if (*s == '*')
			return true;
		if (s[0] == 'W' && s[1] == '/')
			s += 2;
		size_t n = strcspn(s, ",");
		size_t trimmed = n;
		while (trimmed > 0 &&
			(s[trimmed - 1] == ' ' || s[trimmed - 1] == '\t'))
			trimmed--;
		if (trimmed == etag_length && memcmp(s, etag, trimmed) == 0)
			return true;
		s += n;
	}
}

bool
gw__idempotency_key_valid(const char *key, size_t length)
{
	if (length == 0 || length > GW_IDEMPOTENCY_KEY_BYTES_MAX)
		return false;
	for (size_t i = 0; i < length; i++)
		if (key[i] < '!' || key[i] > '~')
			return false;
	return true;
}

bool
gw__static_path_valid(const char *path)
{
	if (path == NULL || path[0] == '\0' || path[0] == '/' ||
		path[0] == '.')
		return false;
	char prev = '\0';
	for (const char *s = path; *s; s++) {
		char c = *s;
		bool ok = isalnum((unsigned char)c) || c == '.' || c == '_' ||
			c == '-' || c == '/';
		if (!ok)
			return false;
		if (c == '/' && prev == '/')
			return false;
		if (c == '.' && prev == '/')
			return false; /* no hidden files, no ".." segments */
		if (c == '.' && prev == '.')
			return false;
		prev = c;
	}
	return prev != '/';
}

const char *
gw__content_type_for(const char *file_name)
{
	static const struct {
		const char *ext;
		const char *type;
	} types[] = {
		{".html", "text/html; charset=utf-8"},
		{".js", "text/javascript; charset=utf-8"},
		{".mjs", "text/javascript; charset=utf-8"},
		{".css", "text/css; charset=utf-8"},
		{".json", "application/json"},
		{".map", "application/json"},
		{".svg", "image/svg+xml"},
		{".png", "image/png"},
		{".jpg", "image/jpeg"},
		{".jpeg", "image/jpeg"},
		{".webp", "image/webp"},
		{".gif", "image/gif"},
		{".ico", "image/x-icon"},
		{".txt", "text/plain; charset=utf-8"},
		{".woff2", "font/woff2"},
		{".webmanifest", "application/manifest+json"},
	};
	const char *dot = strrchr(file_name, '.');
	const char *slash = strrchr(file_name, '/');
	if (dot == NULL || (slash != NULL && dot < slash))
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strcasecmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}
