/*
 * owners.c - the consumer_owners map (owners.h).
 *
 * Grammar: entries separated by ';', each "PATTERN = ID[, ID ...]".
 * PATTERN is a consumer name, a prefix ending in '*' ("fault-*"), or '*'
 * alone.  An ID is one of
 *   uid:N        a Unix-socket peer with that uid
 *   gid:N        a Unix-socket peer with that primary gid
 *   subject:S    a TLS peer whose certificate's one-line subject is S
 *                ("/O=NVIDIA/CN=node-drainer", as the log line shows it)
 *   cn:S         a TLS peer whose subject's last CN is S
 *   cn:{node}    a TLS peer whose subject's last CN is the consumer name's
 *                first '/'-separated part: a chained relay's certificate
 *                names its node_name, so "* = cn:{node}" lets every node
 *                write only its own consumers' positions upstream (a name
 *                without '/' is no node's: list those before it)
 *   token        a TCP peer that authenticated with auth_token_file's token
 *   any          every peer
 * Blanks around items are ignored; a pattern cannot hold '=' or ';'.
 * Entries are tried in order and the first whose pattern matches decides,
 * so put the specific ones first and a catch-all ("* = any") last.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "owners.h"

enum id_kind { ID_UID, ID_GID, ID_SUBJECT, ID_CN, ID_CN_NODE, ID_TOKEN, ID_ANY };

struct ident {
	enum id_kind kind;
	unsigned num;
	char *text;
};

struct entry {
	char *pattern;
	bool prefix;             /* pattern ended in '*': match names starting with it */
	struct ident *ids;
	size_t nids;
};

struct owners {
	struct entry *e;
	size_t n;
};

static char *trimmed(const char *p, size_t len)
{
	char *s;

	while (len && (*p == ' ' || *p == '\t'))
		p++, len--;
	while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
		len--;
	s = malloc(len + 1);
	if (s) {
		memcpy(s, p, len);
		s[len] = '\0';
	}
	return s;
}

void owners_free(Owners *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++) {
		for (size_t j = 0; j < o->e[i].nids; j++)
			free(o->e[i].ids[j].text);
		free(o->e[i].ids);
		free(o->e[i].pattern);
	}
	free(o->e);
	free(o);
}

static int parse_num(const char *s, unsigned *ret)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 0xfffffffeUL)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

/* One ID of an entry; takes text (freed on failure). */
static int parse_id(char *text, struct ident *id, char *err, size_t errlen)
{
	static const struct {
		const char *prefix;
		enum id_kind kind;
	} kinds[] = {
		{ "uid:", ID_UID }, { "gid:", ID_GID }, { "subject:", ID_SUBJECT }, { "cn:", ID_CN },
	};

	memset(id, 0, sizeof(*id));
	if (strcmp(text, "token") == 0 || strcmp(text, "any") == 0) {
		id->kind = text[0] == 't' ? ID_TOKEN : ID_ANY;
		free(text);
		return 0;
	}
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].prefix);
		if (strncmp(text, kinds[i].prefix, n) != 0)
			continue;
		id->kind = kinds[i].kind;
		if (id->kind == ID_UID || id->kind == ID_GID) {
			if (parse_num(text + n, &id->num) < 0)
				break;
			free(text);
			return 0;
		}
		if (!text[n])
			break;
		if (id->kind == ID_CN && strcmp(text + n, "{node}") == 0) {
			id->kind = ID_CN_NODE;
			free(text);
			return 0;
		}
		memmove(text, text + n, strlen(text + n) + 1);
		id->text = text;
		return 0;
	}
	snprintf(err, errlen, "'%.64s' is no identity (uid:N, gid:N, subject:S, cn:S, cn:{node}, token, any)", text);
	free(text);
	return -EINVAL;
}

static int parse_entry(const char *p, size_t len, struct entry *e, char *err, size_t errlen)
{
	const char *eq = memchr(p, '=', len), *q, *end = p + len;
	size_t plen;

	memset(e, 0, sizeof(*e));
	if (!eq) {
		snprintf(err, errlen, "entry '%.*s' has no '=' between the consumer pattern and the identities",
			 (int)(len > 64 ? 64 : len), p);
		return -EINVAL;
	}
	if (!(e->pattern = trimmed(p, (size_t)(eq - p))))
		return -ENOMEM;
	plen = strlen(e->pattern);
	if (!plen || memchr(e->pattern, '*', plen - 1)) {
		snprintf(err, errlen, "consumer pattern '%.64s' must be a name, a prefix ending in '*', or '*'",
			 e->pattern);
		return -EINVAL;
	}
	if (e->pattern[plen - 1] == '*') {
		e->prefix = true;
		e->pattern[plen - 1] = '\0';
	}
	for (q = eq + 1; q <= end; ) {
		const char *c = memchr(q, ',', (size_t)(end - q));
		const char *stop = c ? c : end;
		struct ident *ids;
		char *text;
		int r;

		if (!(text = trimmed(q, (size_t)(stop - q))))
			return -ENOMEM;
		if (!text[0]) {
			free(text);
			snprintf(err, errlen, "consumer pattern '%.64s' has an empty identity", e->pattern);
			return -EINVAL;
		}
		ids = realloc(e->ids, (e->nids + 1) * sizeof(*ids));
		if (!ids) {
			free(text);
			return -ENOMEM;
		}
		e->ids = ids;
		if ((r = parse_id(text, &e->ids[e->nids], err, errlen)) < 0)
			return r;
		e->nids++;
		q = stop + 1;
	}
	return 0;
}

int owners_parse(const char *spec, Owners **ret, char *err, size_t errlen)
{
	Owners *o;
	const char *p = spec ? spec : "";
	int r = 0;

	*ret = NULL;
	if (!p[strspn(p, " \t;")])
		return 0;
	if (!(o = calloc(1, sizeof(*o))))
		return -ENOMEM;
	while (*p) {
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		struct entry *e;

		if (p[strspn(p, " \t")] == ';' || !p[strspn(p, " \t")]) {
			p += semi ? len + 1 : len;   /* an empty entry */
			continue;
		}
		e = realloc(o->e, (o->n + 1) * sizeof(*e));
		if (!e) {
			r = -ENOMEM;
			break;
		}
		o->e = e;
		r = parse_entry(p, len, &o->e[o->n], err, errlen);
		o->n++;   /* freed with the map, also when half parsed */
		if (r < 0)
			break;
		p += semi ? len + 1 : len;
	}
	if (r < 0) {
		if (r == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		owners_free(o);
		return r;
	}
	*ret = o;
	return 0;
}

/* A name with no '/' has no node part: cn:{node} never matches it, so a
 * node cannot claim a name of the upstream's own consumers. */
static bool cn_is_node(const char *cn, const char *consumer)
{
	const char *slash = strchr(consumer, '/');

	return slash && slash > consumer && strlen(cn) == (size_t)(slash - consumer) &&
	       strncmp(cn, consumer, (size_t)(slash - consumer)) == 0;
}

static bool id_matches(const struct ident *w, const struct owner_id *id, const char *consumer)
{
	switch (w->kind) {
	case ID_UID:
		return id->has_cred && id->uid == w->num;
	case ID_GID:
		return id->has_cred && id->gid == w->num;
	case ID_SUBJECT:
		return id->subject && strcmp(id->subject, w->text) == 0;
	case ID_CN:
		return id->cn && strcmp(id->cn, w->text) == 0;
	case ID_CN_NODE:
		return id->cn && cn_is_node(id->cn, consumer);
	case ID_TOKEN:
		return id->token;
	case ID_ANY:
		return true;
	}
	return false;
}

bool owners_allowed(const Owners *o, const char *consumer, const struct owner_id *id)
{
	if (!o)
		return true;
	for (size_t i = 0; i < o->n; i++) {
		const struct entry *e = &o->e[i];

		if (e->prefix ? strncmp(consumer, e->pattern, strlen(e->pattern)) != 0
			      : strcmp(consumer, e->pattern) != 0)
			continue;
		for (size_t j = 0; j < e->nids; j++)
			if (id_matches(&e->ids[j], id, consumer))
				return true;
		return false;
	}
	return false;
}

const char *owners_id_text(const struct owner_id *id, char *buf, size_t len)
{
	if (id->has_cred)
		snprintf(buf, len, "uid=%u gid=%u", id->uid, id->gid);
	else if (id->subject && id->subject[0])
		snprintf(buf, len, "subject=%s", id->subject);
	else if (id->cn)
		snprintf(buf, len, "cn=%s", id->cn);
	else if (id->token)
		snprintf(buf, len, "token");
	else
		snprintf(buf, len, "none");
	return buf;
}
