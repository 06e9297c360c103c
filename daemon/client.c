/*
 * client.c - one subscriber connection (Unix socket).
 *
 * Input is split into NDJSON frames by the frame reader (hard size cap),
 * each frame parsed with cJSON and dispatched by "op".  Every bad frame gets
 * an error frame with a MongoDB-style code and the connection carries on;
 * only I/O failures and an output buffer past client_output_limit end it,
 * and always through client_close().  Output is a plain byte buffer written
 * when the socket is writable; hub.c fills it and stops at a high-water
 * mark, so the limit only bounds a client that stopped reading entirely.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cJSON.h>

#include "client.h"
#include "frame.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"

#define READ_ROOM 65536
#define CLOSE_LINGER 2.0

struct client {
	struct client *next, *prev;
	struct client_env env;
	uint64_t id;
	int fd;
	char peer[64];
	FrameReader *fr;
	char *out;
	size_t out_len, out_off, out_cap;
	ev_io rio, wio;
	ev_timer linger;         /* bounded flush after close */
	bool closing;
	bool hello;
};

static Client *clients;
static size_t nclients;
static uint64_t next_id = 1;

static void client_free(Client *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nclients--;
	ev_io_stop(c->env.loop, &c->rio);
	ev_io_stop(c->env.loop, &c->wio);
	ev_timer_stop(c->env.loop, &c->linger);
	close(c->fd);
	frame_reader_free(c->fr);
	free(c->out);
	free(c);
}

uint64_t client_id(const Client *c)
{
	return c->id;
}

size_t client_pending(const Client *c)
{
	return c->out_len - c->out_off;
}

size_t client_count(void)
{
	return nclients;
}

static int out_reserve(Client *c, size_t n)
{
	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n <= c->out_cap)
		return 0;
	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		if (c->out_len + n <= c->out_cap)
			return 0;
	}
	size_t cap = c->out_cap ? c->out_cap : 4096;
	while (cap < c->out_len + n)
		cap *= 2;
	char *p = realloc(c->out, cap);
	if (!p)
		return -ENOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

static void append(Client *c, const char *data, size_t len)
{
	if (out_reserve(c, len) < 0) {
		client_close(c, "out of memory");
		return;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
}

static void flush_out(Client *c)
{
	while (client_pending(c) > 0) {
		ssize_t n = send(c->fd, c->out + c->out_off, client_pending(c), MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_start(c->env.loop, &c->wio);
			return;
		}
		/* The peer is gone: nothing more can be delivered. */
		c->out_off = c->out_len;
		if (c->closing) {
			client_free(c);
		} else {
			client_close(c, n == 0 ? "peer closed" : strerror(errno));
		}
		return;
	}
	ev_io_stop(c->env.loop, &c->wio);
	if (c->closing)
		client_free(c);
}

static bool over_limit(Client *c)
{
	if (client_pending(c) > (size_t)c->env.cv->client_output_limit) {
		client_close(c, "output limit exceeded");
		return true;
	}
	return false;
}

void client_send(Client *c, const char *data, size_t len)
{
	if (c->closing)
		return;
	append(c, data, len);
	if (!c->closing && !over_limit(c))
		ev_io_start(c->env.loop, &c->wio);
}

void client_send_event(Client *c, long long sid, const char *json, size_t len)
{
	char hdr[64];
	int n;

	if (c->closing)
		return;
	/* The event bytes are shared; only the envelope is per subscription. */
	n = snprintf(hdr, sizeof(hdr), "{\"op\":\"event\",\"sid\":%lld,\"event\":", sid);
	if (out_reserve(c, (size_t)n + len + 2) < 0) {
		client_close(c, "out of memory");
		return;
	}
	memcpy(c->out + c->out_len, hdr, (size_t)n);
	memcpy(c->out + c->out_len + n, json, len);
	memcpy(c->out + c->out_len + n + len, "}\n", 2);
	c->out_len += (size_t)n + len + 2;
	if (!over_limit(c))
		ev_io_start(c->env.loop, &c->wio);
}

void client_send_bookmark(Client *c, long long sid, const struct token *tok)
{
	char buf[128], hex[TOKEN_HEX_LEN + 1];
	int n;

	token_format(tok, hex);
	n = snprintf(buf, sizeof(buf), "{\"op\":\"bookmark\",\"sid\":%lld,\"token\":{\"_data\":\"%s\"}}\n",
		     sid, hex);
	client_send(c, buf, (size_t)n);
}

void client_send_error(Client *c, long long sid, int code, const char *name, const char *msg,
		       const struct token *tok)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	if (!o)
		return;
	cJSON_AddStringToObject(o, "op", "error");
	if (sid >= 0)
		cJSON_AddNumberToObject(o, "sid", (double)sid);
	cJSON_AddNumberToObject(o, "code", code);
	cJSON_AddStringToObject(o, "codeName", name);
	cJSON_AddStringToObject(o, "message", msg);
	if (tok) {
		char hex[TOKEN_HEX_LEN + 1];
		token_format(tok, hex);
		cJSON *t = cJSON_AddObjectToObject(o, "token");
		if (t)
			cJSON_AddStringToObject(t, "_data", hex);
	}
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return;
	log_info("client error client=c%" PRIu64 " sid=%lld code=%d reason=%s", c->id, sid, code, LOGQ(msg));
	client_send(c, s, strlen(s));
	client_send(c, "\n", 1);
	free(s);
}

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	client_free(w->data);
}

void client_close(Client *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	log_info("client closed client=c%" PRIu64 " peer=%s reason='%s'", c->id, c->peer, reason);
	metrics_add(M_DISCONNECTS, metrics_label(reason, (char[48]){ 0 }, 48), 1);
	hub_client_gone(c->env.hub, c);
	ev_io_stop(c->env.loop, &c->rio);
	shutdown(c->fd, SHUT_RD);
	/* Whatever is queued (an error frame, a final bookmark) gets a short
	 * chance to leave; the free always happens from the loop, never from
	 * inside a caller that may still hold c. */
	ev_timer_set(&c->linger, client_pending(c) ? CLOSE_LINGER : 0., 0.);
	ev_timer_start(c->env.loop, &c->linger);
	if (client_pending(c))
		ev_io_start(c->env.loop, &c->wio);
}

void client_close_all(const char *reason)
{
	Client *c, *next;

	for (c = clients; c; c = next) {
		next = c->next;
		client_close(c, reason);
	}
}

void client_free_all(void)
{
	while (clients)
		client_free(clients);
}

/* --- protocol ---------------------------------------------------------- */

static bool get_sid(Client *c, const cJSON *m, long long *ret)
{
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(m, "sid");

	if (!cJSON_IsNumber(sid) || sid->valuedouble < 0 || sid->valuedouble > 9007199254740991.0 ||
	    sid->valuedouble != (double)(long long)sid->valuedouble) {
		client_send_error(c, -1, ERR_TYPE_MISMATCH, "TypeMismatch",
				  "sid must be a non-negative integer", NULL);
		return false;
	}
	*ret = (long long)sid->valuedouble;
	return true;
}

/* Reads {"_data":"<token>"} (or a bare token string). */
static int get_token(Client *c, long long sid, const cJSON *v, const char *field, struct token *ret)
{
	char msg[160];
	const cJSON *d = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "_data") : v;

	if (!cJSON_IsString(d) || token_parse(d->valuestring, strlen(d->valuestring), ret) < 0) {
		snprintf(msg, sizeof(msg), "%s is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}",
			 field);
		client_send_error(c, sid, ERR_CHANGE_STREAM_FATAL, "ChangeStreamFatalError", msg, NULL);
		return -EINVAL;
	}
	return 0;
}

static bool table_of(const char *name, enum event_table *ret)
{
	if (strcmp(name, "health_events") == 0 || strcmp(name, "HealthEvents") == 0)
		*ret = TABLE_HEALTH_EVENTS;
	else if (strcmp(name, "maintenance_events") == 0 || strcmp(name, "MaintenanceEvents") == 0)
		*ret = TABLE_MAINTENANCE_EVENTS;
	else
		return false;
	return true;
}

static void op_hello(Client *c, const cJSON *m)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "v");
	char buf[256];
	int n;

	if (v && (!cJSON_IsNumber(v) || v->valuedouble != 1)) {
		client_send_error(c, -1, ERR_BAD_VALUE, "BadValue", "unsupported protocol version; this server speaks v 1", NULL);
		return;
	}
	c->hello = true;
	n = snprintf(buf, sizeof(buf),
		     "{\"op\":\"hello\",\"v\":1,\"server\":\"nvsrelayd\",\"version\":\"%s\","
		     "\"generation\":\"%08" PRIx32 "\",\"maxFrameBytes\":%d}\n",
		     NVSRELAY_VERSION, c->env.generation(), c->env.cv->max_frame_bytes);
	client_send(c, buf, (size_t)n);
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

static void op_watch(Client *c, const cJSON *m)
{
	struct watch_req req;
	const cJSON *t, *consumer, *ra, *sa, *sat, *eid, *fdbc, *pipe;
	long long sid;

	memset(&req, 0, sizeof(req));
	if (!get_sid(c, m, &sid))
		return;
	req.sid = sid;
	t = cJSON_GetObjectItemCaseSensitive(m, "table");
	if (!cJSON_IsString(t) || !table_of(t->valuestring, &req.table)) {
		client_send_error(c, sid, ERR_INVALID_NAMESPACE, "InvalidNamespace",
				  "table must be health_events (HealthEvents) or maintenance_events (MaintenanceEvents)", NULL);
		return;
	}
	consumer = cJSON_GetObjectItemCaseSensitive(m, "consumer");
	if (consumer && !cJSON_IsNull(consumer)) {
		if (!cJSON_IsString(consumer) || !consumer->valuestring[0] || strlen(consumer->valuestring) > 255) {
			client_send_error(c, sid, ERR_TYPE_MISMATCH, "TypeMismatch",
					  "consumer must be a non-empty string of at most 255 bytes", NULL);
			return;
		}
		req.consumer = consumer->valuestring;
	}
	ra = cJSON_GetObjectItemCaseSensitive(m, "resumeAfter");
	sa = cJSON_GetObjectItemCaseSensitive(m, "startAfter");
	if (ra && sa) {
		client_send_error(c, sid, ERR_BAD_VALUE, "BadValue", "give only one of resumeAfter and startAfter", NULL);
		return;
	}
	sat = cJSON_GetObjectItemCaseSensitive(m, "startAtOperationTime");
	if ((ra || sa) && sat) {
		client_send_error(c, sid, ERR_BAD_VALUE, "BadValue",
				  "give only one of resumeAfter, startAfter and startAtOperationTime", NULL);
		return;
	}
	eid = cJSON_IsObject(ra ? ra : sa) ? cJSON_GetObjectItemCaseSensitive(ra ? ra : sa, "eventID") : NULL;
	if (eid && !cJSON_GetObjectItemCaseSensitive(ra ? ra : sa, "_data")) {
		/* NVSentinel's stored {"timestamp","eventID"}: a component moving
		 * over from its in-process watcher passes what it had. */
		if (!cJSON_IsNumber(eid) || eid->valuedouble < 0 || eid->valuedouble > 9007199254740991.0) {
			client_send_error(c, sid, ERR_CHANGE_STREAM_FATAL, "ChangeStreamFatalError",
					  "eventID must be a non-negative integer", NULL);
			return;
		}
		req.has_event_id = true;
		req.event_id = (uint64_t)eid->valuedouble;
	} else if (ra || sa) {
		if (get_token(c, sid, ra ? ra : sa, ra ? "resumeAfter" : "startAfter", &req.resume) < 0)
			return;
		req.has_resume = true;
	}
	if (sat) {
		if (!valid_rfc3339(sat)) {
			client_send_error(c, sid, ERR_BAD_VALUE, "BadValue",
					  "startAtOperationTime must be an RFC 3339 time such as 2026-11-25T10:00:00Z", NULL);
			return;
		}
		req.start_at = sat->valuestring;
	}
	fdbc = cJSON_GetObjectItemCaseSensitive(m, "fullDocumentBeforeChange");
	if (fdbc) {
		if (!cJSON_IsString(fdbc) || (strcmp(fdbc->valuestring, "off") != 0 &&
					      strcmp(fdbc->valuestring, "whenAvailable") != 0 &&
					      strcmp(fdbc->valuestring, "required") != 0)) {
			client_send_error(c, sid, ERR_BAD_VALUE, "BadValue",
					  "fullDocumentBeforeChange must be off, whenAvailable or required", NULL);
			return;
		}
		req.before = strcmp(fdbc->valuestring, "off") != 0;
	}
	pipe = cJSON_GetObjectItemCaseSensitive(m, "pipeline");
	if (pipe && !(cJSON_IsArray(pipe) && cJSON_GetArraySize(pipe) == 0)) {
		/* Refuse rather than ignore: a filter that silently matched
		 * everything would be worse than an error. */
		client_send_error(c, sid, ERR_BAD_VALUE, "BadValue",
				  "pipeline stages are not supported by this server version", NULL);
		return;
	}
	hub_watch(c->env.hub, c, &req);
}

static void op_ack(Client *c, const cJSON *m)
{
	struct token tok;
	long long sid;

	if (!get_sid(c, m, &sid))
		return;
	if (get_token(c, sid, cJSON_GetObjectItemCaseSensitive(m, "token"), "token", &tok) < 0)
		return;
	hub_ack(c->env.hub, c, sid, &tok);
}

static void op_unwatch(Client *c, const cJSON *m)
{
	long long sid;

	if (get_sid(c, m, &sid))
		hub_unwatch(c->env.hub, c, sid);
}

static void dispatch(Client *c, const char *line, size_t len)
{
	cJSON *m;
	const cJSON *op;
	const char *end = NULL;
	char msg[128];

	m = cJSON_ParseWithLengthOpts(line, len, &end, 0);
	if (!m) {
		snprintf(msg, sizeof(msg), "malformed JSON at byte %zu", end && end >= line ? (size_t)(end - line) : (size_t)0);
		client_send_error(c, -1, ERR_FAILED_TO_PARSE, "FailedToParse", msg, NULL);
		return;
	}
	op = cJSON_GetObjectItemCaseSensitive(m, "op");
	if (!cJSON_IsObject(m) || !cJSON_IsString(op)) {
		client_send_error(c, -1, ERR_FAILED_TO_PARSE, "FailedToParse",
				  "a frame must be a JSON object with a string \"op\"", NULL);
	} else if (strcmp(op->valuestring, "hello") == 0) {
		op_hello(c, m);
	} else if (strcmp(op->valuestring, "watch") == 0) {
		op_watch(c, m);
	} else if (strcmp(op->valuestring, "ack") == 0) {
		op_ack(c, m);
	} else if (strcmp(op->valuestring, "unwatch") == 0) {
		op_unwatch(c, m);
	} else if (strcmp(op->valuestring, "ping") == 0) {
		client_send(c, "{\"op\":\"pong\"}\n", 14);
	} else {
		client_send_error(c, -1, ERR_COMMAND_NOT_FOUND, "CommandNotFound",
				  "unknown op; expected hello, watch, ack, unwatch or ping", NULL);
	}
	cJSON_Delete(m);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Client *c = w->data;
	char *buf;
	size_t room;
	ssize_t n;
	const char *line;
	size_t len;
	int r;

	(void)loop;
	(void)revents;
	if (frame_reader_space(c->fr, READ_ROOM, &buf, &room) < 0) {
		client_close(c, "out of memory");
		return;
	}
	n = recv(c->fd, buf, room, 0);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		client_close(c, n == 0 ? "peer closed" : strerror(errno));
		return;
	}
	frame_reader_commit(c->fr, (size_t)n);
	while (!c->closing && (r = frame_reader_next(c->fr, &line, &len)) != 0) {
		if (r == -EMSGSIZE) {
			char msg[96];
			snprintf(msg, sizeof(msg), "frame larger than max_frame_bytes (%d)",
				 c->env.cv->max_frame_bytes);
			client_send_error(c, -1, ERR_TOO_LARGE, "BSONObjectTooLarge", msg, NULL);
			continue;
		}
		if (len == 0)
			continue;
		dispatch(c, line, len);
	}
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Client *c = w->data;

	(void)loop;
	(void)revents;
	flush_out(c);
	/* flush_out may have freed a closing client. */
}

static void write_cb_pump(struct ev_loop *loop, ev_io *w, int revents)
{
	Client *c = w->data;
	bool closing = c->closing;

	write_cb(loop, w, revents);
	if (!closing && client_pending(c) == 0)
		hub_client_writable(c->env.hub, c);
}

Client *client_new(const struct client_env *env, int fd, const char *peer)
{
	Client *c = calloc(1, sizeof(*c));

	if (!c || !(c->fr = frame_reader_new((size_t)env->cv->max_frame_bytes))) {
		free(c);
		close(fd);
		return NULL;
	}
	c->env = *env;
	c->fd = fd;
	c->id = next_id++;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	ev_io_init(&c->rio, read_cb, fd, EV_READ);
	c->rio.data = c;
	ev_io_init(&c->wio, write_cb_pump, fd, EV_WRITE);
	c->wio.data = c;
	ev_init(&c->linger, linger_cb);
	c->linger.data = c;
	ev_io_start(env->loop, &c->rio);
	c->next = clients;
	if (clients)
		clients->prev = c;
	clients = c;
	nclients++;
	log_debug("client connected client=c%" PRIu64 " peer=%s", c->id, c->peer);
	return c;
}
