/*
 * allow.c - parses the Unix socket's allow-lists and applies them to a
 * peer's credentials.  listener.c calls it at start-up (parse) and on every
 * accepted connection (allow_peer); tests/unit/test_allow.c covers it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allow.h"
#include "errbuf.h"

/* Longer than any user or group name a system accepts. */
#define NAME_MAX_LEN 256

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Portable user and group names, plus the '@' and '$' some directories use. */
static bool name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.' || ch == '-' || ch == '@' || ch == '$';
}

static int add(struct allow_list *l, unsigned id)
{
	unsigned *p;

	if (allow_has(l, id))
		return 0;
	p = realloc(l->ids, (l->n + 1) * sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->ids = p;
	l->ids[l->n++] = id;
	return 0;
}

int allow_parse(const char *text, const char *what, allow_resolve_fn resolve, void *ud,
		struct allow_list *ret, char *err, size_t errlen)
{
	struct allow_list l = { NULL, 0 };
	char item[NAME_MAX_LEN + 1];
	const char *p = text ? text : "";
	int r = 0;

	while (*p) {
		const char *start, *end;
		size_t len, i;
		bool digits = true;

		while (is_blank(*p))
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && is_blank(end[-1]))
			end--;
		len = (size_t)(end - start);
		if (len == 0) {
			/* ",1000" is a typo, not an empty entry; blanks alone
			 * are the empty list. */
			if (*p) {
				errbuf_set(err, errlen, "%s: empty item in the list", what);
				r = -EINVAL;
				goto out;
			}
			break;
		}
		if (len > NAME_MAX_LEN) {
			errbuf_set(err, errlen, "%s: item longer than %d bytes", what, NAME_MAX_LEN);
			r = -EINVAL;
			goto out;
		}
		memcpy(item, start, len);
		item[len] = '\0';
		for (i = 0; i < len; i++) {
			if (!name_char(item[i]) || (i == 0 && item[i] == '-')) {
				errbuf_set(err, errlen, "%s: '%s' is neither a number nor a user or group name", what, item);
				r = -EINVAL;
				goto out;
			}
			digits &= item[i] >= '0' && item[i] <= '9';
		}
		if (digits) {
			unsigned long long v = 0;

			for (i = 0; i < len && v <= 0xffffffffULL; i++)
				v = v * 10 + (unsigned)(item[i] - '0');
			/* (uid_t)-1 means "no id" to the kernel. */
			if (v >= 0xffffffffULL) {
				errbuf_set(err, errlen, "%s: %s is out of range", what, item);
				r = -EINVAL;
				goto out;
			}
			r = add(&l, (unsigned)v);
		} else {
			unsigned id;

			if (!resolve || resolve(item, &id, ud) < 0) {
				errbuf_set(err, errlen, "%s: unknown name '%s'", what, item);
				r = -EINVAL;
				goto out;
			}
			r = add(&l, id);
		}
		if (r < 0) {
			errbuf_set(err, errlen, "%s: out of memory", what);
			goto out;
		}
		if (*p == ',')
			p++;
		if (!*p && p[-1] == ',') {
			errbuf_set(err, errlen, "%s: empty item in the list", what);
			r = -EINVAL;
			goto out;
		}
	}
	allow_clear(ret);
	*ret = l;
	return 0;
out:
	allow_clear(&l);
	return r;
}

void allow_clear(struct allow_list *l)
{
	free(l->ids);
	l->ids = NULL;
	l->n = 0;
}

bool allow_has(const struct allow_list *l, unsigned id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->ids[i] == id)
			return true;
	return false;
}

bool allow_peer(const struct allow_list *uids, const struct allow_list *gids, unsigned uid,
		const unsigned *peer_gids, size_t ngids)
{
	if (uids->n == 0 && gids->n == 0)
		return true;
	if (allow_has(uids, uid))
		return true;
	for (size_t i = 0; i < ngids; i++)
		if (allow_has(gids, peer_gids[i]))
			return true;
	return false;
}
