/*
 * upframe.c - frames from an upstream relay (upframe.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "upframe.h"
#include "wire.h"

#define BEFORE_MEMBER ",\"fullDocumentBeforeChange\":"

static int set_err(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return -EBADMSG;
}

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

/* The event object text, with ev->json and ev->json_before as event.c
 * would have built them. */
static int fill_texts(struct event *ev, const char *text, size_t len, bool update)
{
	size_t off, vlen, mlen = strlen(BEFORE_MEMBER);

	if (update && wire_member_span(text, len, "fullDocumentBeforeChange", &off, &vlen) == 0 &&
	    off >= mlen && memcmp(text + off - mlen, BEFORE_MEMBER, mlen) == 0) {
		size_t cut = off - mlen, end = off + vlen;

		if (!(ev->json_before = dup_n(text, len)) || !(ev->json = malloc(len - (end - cut) + 1)))
			return -ENOMEM;
		memcpy(ev->json, text, cut);
		memcpy(ev->json + cut, text + end, len - end);
		ev->len = len - (end - cut);
		ev->json[ev->len] = '\0';
		ev->len_before = len;
		return 0;
	}
	if (!(ev->json = dup_n(text, len)))
		return -ENOMEM;
	ev->len = len;
	return 0;
}

static int parse_event(struct wire_msg *m, struct upframe *f, char *err, size_t errlen)
{
	const cJSON *evo = cJSON_GetObjectItemCaseSensitive(m->root, "event");
	const cJSON *ns = cJSON_GetObjectItemCaseSensitive(evo, "ns");
	const cJSON *coll = cJSON_GetObjectItemCaseSensitive(ns, "coll");
	struct event *ev;
	int r;

	if (token_parse(m->token, strlen(m->token), &f->tok) < 0)
		return set_err(err, errlen, "event with a malformed _id._data");
	if (!cJSON_IsString(coll))
		return set_err(err, errlen, "event without ns.coll");
	/* JSON never carries a raw NUL, and the hub's texts are C strings. */
	if (memchr(m->event, '\0', m->event_len))
		return set_err(err, errlen, "event with a NUL byte");
	if (!(ev = calloc(1, sizeof(*ev))))
		return -ENOMEM;
	ev->refs = 1;
	ev->pos = f->tok;
	ev->table = event_table_of(coll->valuestring);
	r = fill_texts(ev, m->event, m->event_len, strcmp(m->op_type, "update") == 0);
	if (r < 0) {
		event_unref(ev);
		return r;
	}
	f->has_token = true;
	f->ev = ev;
	return 0;
}

static int parse_token_member(const cJSON *root, struct upframe *f)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "token");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(t, "_data");

	if (cJSON_IsNull(t) || !t)
		return 0;
	if (!cJSON_IsString(d) || token_parse(d->valuestring, strlen(d->valuestring), &f->tok) < 0)
		return -EBADMSG;
	f->has_token = true;
	return 0;
}

int upframe_parse(const char *line, size_t len, struct upframe *f, char *err, size_t errlen)
{
	struct wire_msg m;
	const cJSON *op;
	int r = 0;

	memset(f, 0, sizeof(*f));
	f->sid = -1;
	if ((r = wire_parse(line, len, &m, err, errlen)) < 0)
		return r;
	f->sid = m.sid;
	switch (m.type) {
	case WIRE_EVENT:
		f->type = UPF_EVENT;
		r = parse_event(&m, f, err, errlen);
		break;
	case WIRE_BOOKMARK:
		f->type = UPF_BOOKMARK;
		if (token_parse(m.token, strlen(m.token), &f->tok) < 0)
			r = set_err(err, errlen, "bookmark with a malformed token");
		f->has_token = true;
		break;
	case WIRE_ERROR:
		f->type = UPF_ERROR;
		f->code = m.code;
		snprintf(f->msg, sizeof(f->msg), "%s", m.message);
		if (m.token && token_parse(m.token, strlen(m.token), &f->tok) == 0)
			f->has_token = true;
		break;
	case WIRE_PONG:
		f->type = UPF_PONG;
		break;
	default:
		op = cJSON_GetObjectItemCaseSensitive(m.root, "op");
		f->type = UPF_OTHER;
		if (strcmp(op->valuestring, "position") == 0) {
			f->type = UPF_POSITION;
			if (parse_token_member(m.root, f) < 0)
				r = set_err(err, errlen, "position answer with a malformed token");
		} else if (strcmp(op->valuestring, "stored") == 0) {
			f->type = UPF_STORED;
		}
		if (f->type != UPF_OTHER && f->sid < 0)
			r = set_err(err, errlen, "answer without sid");
		break;
	}
	wire_msg_clear(&m);
	return r;
}
