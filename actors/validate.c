/*
 * actors/validate.c — input validation for the social core (API.md
 * "Limits") and the caption parser for hashtags and mentions.
 *
 * Invariants: "characters" are UTF-8 code points (overlongs, surrogates
 * and bytes past U+10FFFF are invalid); a tag is a run of [a-z0-9_] after
 * its sign, lowercased, at most ACTORS_TAG_BYTES_MAX bytes.
 *
 * What it deliberately does not do: Unicode letters in tags (ASCII only,
 * like the username alphabet), email deliverability.
 */
#include "actors/internal.h"

#include <ctype.h>

/* Longest hashtag or mention kept; longer runs are cut there (Instagram
 * tags are short; 100 bounds the per-tag work). */
#define ACTORS_TAG_BYTES_MAX 100u
/* Distinct tags one caption can yield: 2,200 characters hold at most
 * 1,100 "#a" pairs. */
#define ACTORS_TAGS_SCAN_MAX 1100u

bool
actors__username_normalize(const char *name, char *out, size_t size)
{
	ACTORS_ASSERT(size > API_USERNAME_BYTES_MAX);
	if (name == NULL)
		return false;
	size_t n = strlen(name);
	if (n < 1 || n > API_USERNAME_BYTES_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (unsigned char)(ch - 'A' + 'a');
		bool ok = (ch >= 'a' && ch <= 'z') ||
			(ch >= '0' && ch <= '9') || ch == '.' || ch == '_';
		if (!ok)
			return false;
		out[i] = (char)ch;
	}
	out[n] = '\0';
	return true;
}

bool
actors__email_valid(const char *email)
{
	if (email == NULL)
		return false;
	size_t n = strlen(email);
	if (n < 3 || n > API_EMAIL_BYTES_MAX)
		return false;
	const char *at = strchr(email, '@');
	if (at == NULL || at == email || strchr(at + 1, '@') != NULL)
		return false;
	const char *domain = at + 1;
	if (*domain == '\0' || *domain == '.' || email[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)email[i];
		if (ch <= ' ' || ch == 0x7f)
			return false;
	}
	return strchr(domain, '.') != NULL;
}

bool
actors__password_valid(const char *password)
{
	if (password == NULL)
		return false;
	size_t n = strnlen(password, API_PASSWORD_BYTES_MAX + 1);
	return n >= API_PASSWORD_BYTES_MIN && n <= API_PASSWORD_BYTES_MAX;
}

long
actors__utf8_count(const char *s, size_t length)
{
	const unsigned char *p = (const unsigned char *)s;
	long count = 0;
	size_t i = 0;
	while (i < length) {
		unsigned char c = p[i];
		uint32_t cp;
		size_t n;
		if (c < 0x80) {
			cp = c;
			n = 1;
		} else if ((c & 0xe0) == 0xc0) {
			cp = c & 0x1f;
			n = 2;
		} else if ((c & 0xf0) == 0xe0) {
			cp = c & 0x0f;
			n = 3;
		} else if ((c & 0xf8) == 0xf0) {
			cp = c & 0x07;
			n = 4;
		} else {
			return -1;
		}
		if (length - i < n)
			return -1;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return -1;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		static const uint32_t min_for_length[5] = {0, 0, 0x80, 0x800,
			0x10000};
		if (cp < min_for_length[n] || cp > 0x10ffff ||
			(cp >= 0xd800 && cp <= 0xdfff))
			return -1;
		i += n;
		count++;
	}
	return count;
}

static bool
tag_char(unsigned char ch)
{
	return isalnum(ch) || ch == '_';
}

typedef struct tag_seen {
	uint64_t hashes[ACTORS_TAGS_SCAN_MAX];
	uint32_t count;
} tag_seen;

static bool
tag_seen_add(tag_seen *seen, uint64_t h)
{
	for (uint32_t i = 0; i < seen->count; i++)
		if (seen->hashes[i] == h)
			return false;
	ACTORS_ASSERT(seen->count < ACTORS_TAGS_SCAN_MAX);
	seen->hashes[seen->count++] = h;
	return true;
}

uint32_t
actors__parse_tags(const char *text, size_t length, char sign,
	actors__tag_callback fn, void *arg)
{
	tag_seen seen;
	seen.count = 0;
	uint32_t distinct = 0;
	size_t i = 0;
	while (i < length) {
		bool starts = text[i] == sign &&
			(i == 0 || !tag_char((unsigned char)text[i - 1]));
		if (!starts) {
			i++;
			continue;
		}
		size_t start = ++i;
		while (i < length && tag_char((unsigned char)text[i]))
			i++;
		size_t n = i - start;
		if (n == 0)
			continue;
		if (n > ACTORS_TAG_BYTES_MAX)
			n = ACTORS_TAG_BYTES_MAX;
		char tag[ACTORS_TAG_BYTES_MAX + 1];
		for (size_t k = 0; k < n; k++)
			tag[k] = (char)tolower((unsigned char)text[start + k]);
		tag[n] = '\0';
		if (!tag_seen_add(&seen, actors__hash64(tag, n)))
			continue;
		distinct++;
		if (fn != NULL)
			fn(arg, tag, n);
	}
	return distinct;
}

static int
text_check(const char *text, long characters_max, const char *what_long,
	const char **detail)
{
	if (text == NULL) {
		*detail = "missing text";
		return API_EINVALID;
	}
	size_t n = strnlen(text, (size_t)characters_max * 4 + 1);
	long count = actors__utf8_count(text, n);
	if (count < 0) {
		*detail = "text is not valid UTF-8";
		return API_EINVALID;
	}
	if (count > characters_max || n > (size_t)characters_max * 4) {
		*detail = what_long;
		return API_EINVALID;
	}
	return API_OK;
}

int
actors__caption_check(const char *caption, const char **detail)
{
	int rc = text_check(caption, API_CAPTION_CHARACTERS_MAX,
		"caption longer than 2200 characters", detail);
	if (rc != API_OK)
		return rc;
	uint32_t tags = actors__parse_tags(caption, strlen(caption), '#',
		NULL, NULL);
	if (tags > API_CAPTION_HASHTAGS_MAX) {
		*detail = "more than 30 hashtags";
		return API_EINVALID;
	}
	return API_OK;
}

int
actors__comment_check(const char *text, const char **detail)
{
	int rc = text_check(text, API_COMMENT_CHARACTERS_MAX,
		"comment longer than 2200 characters", detail);
	if (rc != API_OK)
		return rc;
	if (text[0] == '\0') {
		*detail = "empty comment";
		return API_EINVALID;
	}
	return API_OK;
}

int
actors__bio_check(const char *bio, const char **detail)
{
	return text_check(bio, API_BIO_CHARACTERS_MAX,
		"bio longer than 150 characters", detail);
}
