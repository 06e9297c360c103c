/*
 * request.c - the server's decoding of subscriber requests (see request.h).
 * Every check and message is part of the protocol: clients and the
 * integration tests match the codes and words, so they change only with
 * PROTOCOL.md.  The checks of a watch run in a fixed order and the first
 * failure is the one reported.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "request.h"
#include "utf8.h"

/* 2^53 - 1: the largest integer a JSON number carries exactly. */
#define MAX_EXACT 9007199254740991.0

static int fail(struct request_error *err, long long sid, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct request_error *err, long long sid, int code, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	err->sid = sid;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int request_parse(const char *text, size_t len, cJSON **ret, struct request_error *err)
{
	const char *end = NULL;
	cJSON *m = cJSON_ParseWithLengthOpts(text, len, &end, 0);

	*ret = m;
	/* One frame, one object: bytes after it (other than blanks) make the
	 * whole frame malformed rather than being ignored. */
	if (m && end)
		while (end < text + len && (*end == ' ' || *end == '\t'))
			end++;
	if (m && end == text + len)
		return 0;
	return fail(err, -1, ERR_FAILED_TO_PARSE, "malformed JSON at byte %zu",
		    end && end >= text ? (size_t)(end - text) : (size_t)0);
}

char *request_hello_token(cJSON *m)
{
	const cJSON *op = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "op") : NULL;
	cJSON *tok = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "token") : NULL;

	if (cJSON_IsString(op) && strcmp(op->valuestring, "hello") == 0 && cJSON_IsString(tok))
		return tok->valuestring;
	return NULL;
}

static int get_sid(const cJSON *m, long long *ret, struct request_error *err)
{
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(m, "sid");

	if (!cJSON_IsNumber(sid) || sid->valuedouble < 0 || sid->valuedouble > MAX_EXACT ||
	    sid->valuedouble != (double)(long long)sid->valuedouble)
		return fail(err, -1, ERR_TYPE_MISMATCH, "sid must be a non-negative integer");
	*ret = (long long)sid->valuedouble;
	return 0;
}

/* Reads {"_data":"<token>"} (or a bare token string). */
static int get_token(const cJSON *v, const char *field, long long sid, struct token *ret,
		     struct request_error *err)
{
	const cJSON *d = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "_data") : v;

	if (!cJSON_IsString(d) || token_parse(d->valuestring, strlen(d->valuestring), ret) < 0)
		return fail(err, sid, ERR_CHANGE_STREAM_FATAL,
			    "%s is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}", field);
	return 0;
}

static bool table_of(const char *name, enum request_table *ret)
{
	if (strcmp(name, "health_events") == 0 || strcmp(name, "HealthEvents") == 0)
		*ret = REQUEST_HEALTH_EVENTS;
	else if (strcmp(name, "maintenance_events") == 0 || strcmp(name, "MaintenanceEvents") == 0)
		*ret = REQUEST_MAINTENANCE_EVENTS;
	else if (strcmp(name, "*") == 0)
		*ret = REQUEST_ALL_TABLES;
	else
		return false;
	return true;
}

/* Shape check only (PostgreSQL parses the value): digits, separators and a
 * zone, so nothing else reaches SQL even as a parameter. */
static bool valid_rfc3339(const cJSON *v)
{
	const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
	size_t n, i;

	if (!s || (n = strlen(s)) < 20 || n > 40)
		return false;
	for (i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= '0' && ch <= '9') || ch == '-' || ch == ':' || ch == '.' || ch == 'T' ||
		      ch == 'Z' || ch == '+' || ch == 't' || ch == 'z'))
			return false;
	}
	return s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == 't') && s[13] == ':';
}

/* A misspelt option ("startAtOperationtime") must not quietly become "start
 * at the head": unknown fields are refused, as MongoDB does. */
static int known_fields(const cJSON *m, long long sid, struct request_error *err)
{
	static const char *const known[] = {
		"op", "sid", "table", "consumer", "resumeAfter", "startAfter", "startAtOperationTime",
		"pipeline", "fullDocumentBeforeChange", "standby", NULL
	};
	size_t i;

	for (const cJSON *f = m->child; f; f = f->next) {
		for (i = 0; known[i] && strcmp(known[i], f->string) != 0; i++)
			;
		if (!known[i])
			return fail(err, sid, ERR_UNKNOWN_FIELD, "unknown field '%.64s' in watch", f->string);
	}
	return 0;
}

static int decode_hello(const cJSON *m, struct request *req, struct request_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "v");
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(m, "token");

	if (v && (!cJSON_IsNumber(v) || v->valuedouble != 1))
		return fail(err, -1, ERR_BAD_VALUE, "unsupported protocol version; this server speaks v 1");
	req->version = 1;
	req->token = cJSON_IsString(tok) ? tok->valuestring : NULL;
	return 0;
}

/* The resume position: a token, or NVSentinel's stored {"timestamp",
 * "eventID"}, which a component moving over from its in-process watcher
 * passes as it had it. */
static int decode_resume(const cJSON *ra, const cJSON *sa, struct request *req,
			 struct request_error *err)
{
	const cJSON *pos = ra ? ra : sa;
	const cJSON *eid = cJSON_IsObject(pos) ? cJSON_GetObjectItemCaseSensitive(pos, "eventID") : NULL;

	if (eid && !cJSON_GetObjectItemCaseSensitive(pos, "_data")) {
		if (!cJSON_IsNumber(eid) || eid->valuedouble < 0 || eid->valuedouble > MAX_EXACT)
			return fail(err, req->sid, ERR_CHANGE_STREAM_FATAL, "eventID must be a non-negative integer");
		req->has_event_id = true;
		req->event_id = (uint64_t)eid->valuedouble;
	} else if (pos) {
		if (get_token(pos, ra ? "resumeAfter" : "startAfter", req->sid, &req->resume, err) < 0)
			return -EINVAL;
		req->has_resume = true;
	}
	return 0;
}

static int decode_watch(const cJSON *m, struct request *req, struct request_error *err)
{
	const cJSON *t, *consumer, *ra, *sa, *sat, *fdbc, *sb;
	long long sid;

	if (get_sid(m, &sid, err) < 0 || known_fields(m, sid, err) < 0)
		return -EINVAL;
	req->sid = sid;
	t = cJSON_GetObjectItemCaseSensitive(m, "table");
	if (!cJSON_IsString(t) || !table_of(t->valuestring, &req->table))
		return fail(err, sid, ERR_INVALID_NAMESPACE,
			    "table must be health_events (HealthEvents), maintenance_events (MaintenanceEvents) or *");
	consumer = cJSON_GetObjectItemCaseSensitive(m, "consumer");
	if (consumer && !cJSON_IsNull(consumer)) {
		if (!cJSON_IsString(consumer) || !consumer->valuestring[0] || strlen(consumer->valuestring) > 255 ||
		    !utf8_valid(consumer->valuestring))
			return fail(err, sid, ERR_TYPE_MISMATCH,
				    "consumer must be a non-empty UTF-8 string of at most 255 bytes");
		req->consumer = consumer->valuestring;
	}
	ra = cJSON_GetObjectItemCaseSensitive(m, "resumeAfter");
	sa = cJSON_GetObjectItemCaseSensitive(m, "startAfter");
	if (ra && sa)
		return fail(err, sid, ERR_BAD_VALUE, "give only one of resumeAfter and startAfter");
	sat = cJSON_GetObjectItemCaseSensitive(m, "startAtOperationTime");
	if ((ra || sa) && sat)
		return fail(err, sid, ERR_BAD_VALUE, "give only one of resumeAfter, startAfter and startAtOperationTime");
	if (decode_resume(ra, sa, req, err) < 0)
		return -EINVAL;
	if (sat) {
		if (!valid_rfc3339(sat))
			return fail(err, sid, ERR_BAD_VALUE,
				    "startAtOperationTime must be an RFC 3339 time such as 2026-11-25T10:00:00Z");
		req->start_at = sat->valuestring;
	}
	fdbc = cJSON_GetObjectItemCaseSensitive(m, "fullDocumentBeforeChange");
	if (fdbc) {
		if (!cJSON_IsString(fdbc) || (strcmp(fdbc->valuestring, "off") != 0 &&
					      strcmp(fdbc->valuestring, "whenAvailable") != 0 &&
					      strcmp(fdbc->valuestring, "required") != 0))
			return fail(err, sid, ERR_BAD_VALUE, "fullDocumentBeforeChange must be off, whenAvailable or required");
		req->before = strcmp(fdbc->valuestring, "off") != 0;
	}
	/* A standby starts where the consumer's holder stopped, nowhere else. */
	sb = cJSON_GetObjectItemCaseSensitive(m, "standby");
	if (sb) {
		if (!cJSON_IsBool(sb))
			return fail(err, sid, ERR_TYPE_MISMATCH, "standby must be true or false");
		req->standby = cJSON_IsTrue(sb);
		if (req->standby && !req->consumer)
			return fail(err, sid, ERR_BAD_VALUE, "standby needs a consumer");
		if (req->standby && (ra || sa || sat))
			return fail(err, sid, ERR_BAD_VALUE,
				    "standby takes over from the consumer's acknowledged position:"
				    " give no resumeAfter, startAfter or startAtOperationTime");
	}
	/* Compiled by the daemon; a pipeline it cannot compile is refused
	 * there, never ignored. */
	req->pipeline = cJSON_GetObjectItemCaseSensitive(m, "pipeline");
	return 0;
}

static int get_consumer(const cJSON *m, long long sid, struct request *req, struct request_error *err)
{
	const cJSON *consumer = cJSON_GetObjectItemCaseSensitive(m, "consumer");

	if (!cJSON_IsString(consumer) || !consumer->valuestring[0] || strlen(consumer->valuestring) > 255 ||
	    !utf8_valid(consumer->valuestring))
		return fail(err, sid, ERR_TYPE_MISMATCH, "consumer must be a non-empty UTF-8 string of at most 255 bytes");
	req->consumer = consumer->valuestring;
	return 0;
}

/* A chained relay's lookup: exactly one of consumer, eventID and at. */
static int decode_position(const cJSON *m, struct request *req, struct request_error *err)
{
	const cJSON *eid = cJSON_GetObjectItemCaseSensitive(m, "eventID");
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(m, "at");
	bool has_consumer = cJSON_GetObjectItemCaseSensitive(m, "consumer") != NULL;

	if (get_sid(m, &req->sid, err) < 0)
		return -EINVAL;
	if (has_consumer + !!eid + !!at != 1)
		return fail(err, req->sid, ERR_BAD_VALUE, "position needs exactly one of consumer, eventID and at");
	if (has_consumer)
		return get_consumer(m, req->sid, req, err);
	if (eid) {
		if (!cJSON_IsNumber(eid) || eid->valuedouble < 0 || eid->valuedouble > MAX_EXACT)
			return fail(err, req->sid, ERR_CHANGE_STREAM_FATAL, "eventID must be a non-negative integer");
		req->has_event_id = true;
		req->event_id = (uint64_t)eid->valuedouble;
		return 0;
	}
	if (!valid_rfc3339(at))
		return fail(err, req->sid, ERR_BAD_VALUE, "at must be an RFC 3339 time such as 2026-11-25T10:00:00Z");
	req->start_at = at->valuestring;
	return 0;
}

static int decode_store(const cJSON *m, struct request *req, struct request_error *err)
{
	if (get_sid(m, &req->sid, err) < 0 || get_consumer(m, req->sid, req, err) < 0)
		return -EINVAL;
	return get_token(cJSON_GetObjectItemCaseSensitive(m, "token"), "token", req->sid, &req->ack, err);
}

/* A backlog figure: a table (not "*") and a position; "id" tags the answer.
 * Refusals are connection-level: a count concerns no subscription. */
static int decode_count(const cJSON *m, struct request *req, struct request_error *err)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "table");

	for (const cJSON *f = m->child; f; f = f->next)
		if (strcmp(f->string, "op") && strcmp(f->string, "table") && strcmp(f->string, "after") &&
		    strcmp(f->string, "id"))
			return fail(err, -1, ERR_UNKNOWN_FIELD,
				    "unknown field '%.64s' in count; expected table, after and id", f->string);
	if (id && (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > MAX_EXACT ||
		   id->valuedouble != (double)(long long)id->valuedouble))
		return fail(err, -1, ERR_TYPE_MISMATCH, "count: id must be a non-negative integer");
	req->count_id = id ? (long long)id->valuedouble : -1;
	if (!cJSON_IsString(t) || !table_of(t->valuestring, &req->table) || req->table == REQUEST_ALL_TABLES)
		return fail(err, -1, ERR_INVALID_NAMESPACE,
			    "count: table must be health_events (HealthEvents) or maintenance_events (MaintenanceEvents)");
	return get_token(cJSON_GetObjectItemCaseSensitive(m, "after"), "count: after", -1, &req->ack, err);
}

static const struct {
	const char *name;
	enum request_op op;
} ops[] = {
	{ "hello", REQUEST_HELLO },
	{ "watch", REQUEST_WATCH },
	{ "ack", REQUEST_ACK },
	{ "unwatch", REQUEST_UNWATCH },
	{ "ping", REQUEST_PING },
	{ "position", REQUEST_POSITION },
	{ "store", REQUEST_STORE },
	{ "count", REQUEST_COUNT },
};

int request_decode(const cJSON *m, struct request *req, struct request_error *err)
{
	const cJSON *op = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "op") : NULL;
	const cJSON *sid = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "sid") : NULL;

	memset(req, 0, sizeof(*req));
	req->sid = -1;
	req->count_id = -1;
	req->reply_sid = cJSON_IsNumber(sid) && sid->valuedouble >= 0 && sid->valuedouble <= MAX_EXACT
			 ? (long long)sid->valuedouble : -1;
	if (!cJSON_IsString(op))
		return fail(err, -1, ERR_FAILED_TO_PARSE, "a frame must be a JSON object with a string \"op\"");
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(op->valuestring, ops[i].name) == 0)
			req->op = ops[i].op;
	switch (req->op) {
	case REQUEST_HELLO:
		return decode_hello(m, req, err);
	case REQUEST_WATCH:
		return decode_watch(m, req, err);
	case REQUEST_ACK:
		if (get_sid(m, &req->sid, err) < 0)
			return -EINVAL;
		return get_token(cJSON_GetObjectItemCaseSensitive(m, "token"), "token", req->sid, &req->ack, err);
	case REQUEST_UNWATCH:
		return get_sid(m, &req->sid, err);
	case REQUEST_PING:
		return 0;
	case REQUEST_POSITION:
		return decode_position(m, req, err);
	case REQUEST_STORE:
		return decode_store(m, req, err);
	case REQUEST_COUNT:
		return decode_count(m, req, err);
	case REQUEST_NONE:
		break;
	}
	return fail(err, -1, ERR_COMMAND_NOT_FOUND,
		    "unknown op; expected hello, watch, ack, unwatch, ping, count, position or store");
}
