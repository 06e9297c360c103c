/*
 * wire.c - client frames of protocol v1 built, server frames taken apart.
 *
 * Owns nothing between calls.  Called by the client library (nvsrelay.c) for
 * every frame it sends or receives; pure code, no I/O, no logging.
 *
 * Frames are built with cJSON so every string is escaped the one correct
 * way.  Sids are written as integers by hand: cJSON prints large doubles
 * with an exponent, which a strict peer could refuse.
 *
 * Parsing checks what the protocol promises (an event has a token and an
 * operationType, a bookmark a token, an error a code) so a broken server is
 * reported as one rather than surfacing later as a NULL.  The event itself
 * is handed out as the bytes the server wrote, located by a small scanner,
 * not re-serialised: cJSON would print numbers its own way, and the event's
 * fullDocument is promised byte-for-byte in content.
 */
#include "wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest integer a JSON number carries exactly (2^53 - 1). */
#define SID_MAX 9007199254740991LL

static void
set_err(char *err, size_t errlen, const char *msg)
{
	if (err && errlen > 0)
		snprintf(err, errlen, "%s", msg);
}

/* Parses exactly len bytes of JSON text (whitespace around is allowed);
 * NULL for bad input or no memory, with *at the offset it failed at. */
static cJSON *
parse_exact(const char *text, size_t len, size_t *at)
{
	const char *end = NULL, *p;
	cJSON *o = cJSON_ParseWithLengthOpts(text, len, &end, 0);

	*at = end && end >= text ? (size_t)(end - text) : 0;
	if (!o)
		return NULL;
	for (p = end; p < text + len; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
			*at = (size_t)(p - text);
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

static bool
add_sid(cJSON *o, long long sid)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", sid);
	return cJSON_AddRawToObject(o, "sid", num) != NULL;
}

/* Prints o compactly plus '\n' into a fresh buffer; frees o. */
static int
finish(cJSON *o, bool ok, char **ret)
{
	char *s = NULL, *line;
	size_t n;

	if (ok)
		s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return -ENOMEM;
	n = strlen(s);
	line = realloc(s, n + 2);
	if (!line) {
		free(s);
		return -ENOMEM;
	}
	line[n] = '\n';
	line[n + 1] = '\0';
	*ret = line;
	return 0;
}

int
wire_hello(const char *client, const char *auth, char **ret)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;

	ok = ok && cJSON_AddStringToObject(o, "op", "hello");
	ok = ok && cJSON_AddNumberToObject(o, "v", 1);
	ok = ok && cJSON_AddStringToObject(o, "client", client ? client : "libnvsrelay");
	if (auth)
		ok = ok && cJSON_AddStringToObject(o, WIRE_AUTH_FIELD, auth);
	return finish(o, ok, ret);
}

static bool
add_token(cJSON *o, const char *name, const char *token)
{
	cJSON *t = cJSON_AddObjectToObject(o, name);

	return t && cJSON_AddStringToObject(t, "_data", token);
}

int
wire_watch(const struct wire_watch *w, char **ret, char *err, size_t errlen)
{
	cJSON *o, *pipe = NULL;
	bool ok;

	if (w->sid < 0 || w->sid > SID_MAX) {
		set_err(err, errlen, "sid must be between 0 and 2^53-1");
		return -EINVAL;
	}
	if (w->pipeline) {
		size_t at;

		pipe = parse_exact(w->pipeline, strlen(w->pipeline), &at);
		if (!pipe || !cJSON_IsArray(pipe)) {
			char msg[96];

			if (!pipe)
				snprintf(msg, sizeof(msg), "pipeline is not valid JSON (at byte %zu)", at);
			else
				snprintf(msg, sizeof(msg), "pipeline must be a JSON array of stages");
			set_err(err, errlen, msg);
			cJSON_Delete(pipe);
			return -EINVAL;
		}
	}
	o = cJSON_CreateObject();
	ok = o != NULL;
	ok = ok && cJSON_AddStringToObject(o, "op", "watch");
	ok = ok && add_sid(o, w->sid);
	ok = ok && cJSON_AddStringToObject(o, "table", w->table ? w->table : "health_events");
	if (w->consumer)
		ok = ok && cJSON_AddStringToObject(o, "consumer", w->consumer);
	if (w->resume_after)
		ok = ok && add_token(o, "resumeAfter", w->resume_after);
	if (w->start_after)
		ok = ok && add_token(o, "startAfter", w->start_after);
	if (w->start_at)
		ok = ok && cJSON_AddStringToObject(o, "startAtOperationTime", w->start_at);
	if (w->before)
		ok = ok && cJSON_AddStringToObject(o, "fullDocumentBeforeChange", w->before);
	if (pipe) {
		/* On failure the array is not attached: free it here. */
		if (ok && cJSON_AddItemToObject(o, "pipeline", pipe))
			pipe = NULL;
		else
			ok = false;
		cJSON_Delete(pipe);
	}
	return finish(o, ok, ret);
}

int
wire_ack(long long sid, const char *token, char **ret, char *err, size_t errlen)
{
	cJSON *o;
	bool ok;

	if (sid < 0 || sid > SID_MAX) {
		set_err(err, errlen, "sid must be between 0 and 2^53-1");
		return -EINVAL;
	}
	if (!token || !token[0]) {
		set_err(err, errlen, "ack needs a token");
		return -EINVAL;
	}
	o = cJSON_CreateObject();
	ok = o != NULL;
	ok = ok && cJSON_AddStringToObject(o, "op", "ack");
	ok = ok && add_sid(o, sid);
	ok = ok && add_token(o, "token", token);
	return finish(o, ok, ret);
}

int
wire_unwatch(long long sid, char **ret)
{
	cJSON *o;
	bool ok;

	if (sid < 0 || sid > SID_MAX)
		return -EINVAL;
	o = cJSON_CreateObject();
	ok = o != NULL;
	ok = ok && cJSON_AddStringToObject(o, "op", "unwatch");
	ok = ok && add_sid(o, sid);
	return finish(o, ok, ret);
}

/* --- parsing ----------------------------------------------------------- */

static const char *
token_of(const cJSON *t)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(t, "_data");

	return cJSON_IsObject(t) && cJSON_IsString(d) ? d->valuestring : NULL;
}

static bool
whole_number(const cJSON *v, long long *ret)
{
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= -(double)SID_MAX && v->valuedouble <= (double)SID_MAX) ||
	    v->valuedouble != (double)(long long)v->valuedouble)
		return false;
	*ret = (long long)v->valuedouble;
	return true;
}

static int
bad(struct wire_msg *m, char *err, size_t errlen, const char *msg)
{
	set_err(err, errlen, msg);
	wire_msg_clear(m);
	return -EBADMSG;
}

static int
parse_event(struct wire_msg *m, const char *line, size_t len, char *err, size_t errlen)
{
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(m->root, "event");
	const cJSON *ot = cJSON_GetObjectItemCaseSensitive(ev, "operationType");
	size_t off, vlen;

	if (!cJSON_IsObject(ev))
		return bad(m, err, errlen, "event frame without an event object");
	m->token = token_of(cJSON_GetObjectItemCaseSensitive(ev, "_id"));
	if (!m->token)
		return bad(m, err, errlen, "event without _id._data");
	if (!cJSON_IsString(ot))
		return bad(m, err, errlen, "event without operationType");
	m->op_type = ot->valuestring;
	if (wire_member_span(line, len, "event", &off, &vlen) == 0) {
		m->event = line + off;
		m->event_len = vlen;
	} else {
		/* Only a key written with escapes gets here; JSON allows it. */
		m->owned = cJSON_PrintUnformatted(ev);
		if (!m->owned) {
			cJSON_Delete(m->root);
			memset(m, 0, sizeof(*m));
			return -ENOMEM;
		}
		m->event = m->owned;
		m->event_len = strlen(m->owned);
	}
	return 0;
}

int
wire_parse(const char *line, size_t len, struct wire_msg *m, char *err, size_t errlen)
{
	const cJSON *op, *sid, *v;
	size_t at;

	memset(m, 0, sizeof(*m));
	m->sid = -1;
	m->root = parse_exact(line, len, &at);
	if (!m->root) {
		/* cJSON reports allocation failure and bad input alike; a
		 * frame that is not even JSON is what it almost always is. */
		char msg[64];

		snprintf(msg, sizeof(msg), "frame is not JSON (at byte %zu)", at);
		return bad(m, err, errlen, msg);
	}
	op = cJSON_GetObjectItemCaseSensitive(m->root, "op");
	if (!cJSON_IsObject(m->root) || !cJSON_IsString(op))
		return bad(m, err, errlen, "frame is not a JSON object with a string op");
	sid = cJSON_GetObjectItemCaseSensitive(m->root, "sid");
	if (sid && !whole_number(sid, &m->sid))
		return bad(m, err, errlen, "sid is not an integer");

	if (strcmp(op->valuestring, "event") == 0) {
		m->type = WIRE_EVENT;
		if (!sid)
			return bad(m, err, errlen, "event frame without sid");
		return parse_event(m, line, len, err, errlen);
	}
	if (strcmp(op->valuestring, "bookmark") == 0) {
		m->type = WIRE_BOOKMARK;
		m->token = token_of(cJSON_GetObjectItemCaseSensitive(m->root, "token"));
		if (!sid || !m->token)
			return bad(m, err, errlen, "bookmark frame without sid or token._data");
		return 0;
	}
	if (strcmp(op->valuestring, "error") == 0) {
		long long code;

		m->type = WIRE_ERROR;
		if (!whole_number(cJSON_GetObjectItemCaseSensitive(m->root, "code"), &code) ||
		    code < -2147483647LL || code > 2147483647LL)
			return bad(m, err, errlen, "error frame without an integer code");
		m->code = (int)code;
		v = cJSON_GetObjectItemCaseSensitive(m->root, "codeName");
		m->code_name = cJSON_IsString(v) ? v->valuestring : "";
		v = cJSON_GetObjectItemCaseSensitive(m->root, "message");
		m->message = cJSON_IsString(v) ? v->valuestring : "";
		m->token = token_of(cJSON_GetObjectItemCaseSensitive(m->root, "token"));
		return 0;
	}
	if (strcmp(op->valuestring, "pong") == 0) {
		m->type = WIRE_PONG;
		return 0;
	}
	if (strcmp(op->valuestring, "hello") == 0) {
		m->type = WIRE_HELLO;
		v = cJSON_GetObjectItemCaseSensitive(m->root, "generation");
		m->generation = cJSON_IsString(v) ? v->valuestring : NULL;
		if (!whole_number(cJSON_GetObjectItemCaseSensitive(m->root, "maxFrameBytes"), &m->max_frame))
			m->max_frame = 0;
		return 0;
	}
	m->type = WIRE_OTHER;
	return 0;
}

void
wire_msg_clear(struct wire_msg *m)
{
	cJSON_Delete(m->root);
	free(m->owned);
	memset(m, 0, sizeof(*m));
	m->sid = -1;
}

/* --- the member scanner ------------------------------------------------- */

static size_t
skip_ws(const char *s, size_t i, size_t n)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* i is at the opening quote; returns the index after the closing one. */
static size_t
skip_string(const char *s, size_t i, size_t n)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return n;
}

static size_t
skip_value(const char *s, size_t i, size_t n)
{
	size_t depth = 0;

	if (i < n && s[i] == '"')
		return skip_string(s, i, n);
	if (i < n && s[i] != '{' && s[i] != '[') {
		while (i < n && !strchr(",}] \t\r\n", s[i]))
			i++;
		return i;
	}
	while (i < n) {
		char c = s[i];

		if (c == '"') {
			i = skip_string(s, i, n);
			continue;
		}
		if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (--depth == 0)
				return i + 1;
		}
		i++;
	}
	return n;
}

int
wire_member_span(const char *json, size_t len, const char *key, size_t *ret_off, size_t *ret_len)
{
	size_t klen = strlen(key), i = skip_ws(json, 0, len);

	if (i >= len || json[i] != '{')
		return -EBADMSG;
	i = skip_ws(json, i + 1, len);
	while (i < len && json[i] == '"') {
		size_t kstart = i + 1, kend = skip_string(json, i, len), vstart, vend;

		i = skip_ws(json, kend, len);
		if (i >= len || json[i] != ':')
			return -EBADMSG;
		vstart = skip_ws(json, i + 1, len);
		vend = skip_value(json, vstart, len);
		if (kend - kstart == klen + 1 && memcmp(json + kstart, key, klen) == 0) {
			*ret_off = vstart;
			*ret_len = vend - vstart;
			return 0;
		}
		i = skip_ws(json, vend, len);
		if (i >= len || json[i] != ',')
			break;
		i = skip_ws(json, i + 1, len);
	}
	return -ENOENT;
}
