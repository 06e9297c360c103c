/*
 * client.c - one subscriber connection, over the Unix socket, plaintext
 * TCP on loopback, or TLS: its state, output queue and limits.
 *
 * The byte stream is a Transport (transport.c: a plain socket or a TLS
 * session).  A TLS client first completes its handshake; a client that must
 * present a bearer token is then held until its first frame, a hello
 * carrying it.  Both must be done within AUTH_TIMEOUT.
 *
 * Input is split into NDJSON frames by the frame reader (hard size cap) and
 * each frame decoded by request.c.  Every bad frame gets an error frame with
 * a MongoDB-style code and the connection carries on; only I/O failures,
 * refusals and slow consumers end it, and always through client_close().
 * Subscription requests go up to the hub through the upcalls in client_env
 * (main.c wires them), never by calling it: the hub calls down into this
 * file to send, so the two do not call each other in a circle.
 *
 * Output is a queue of chunks.  An event chunk holds a reference to the
 * event every subscriber shares plus its own small envelope; other frames are
 * small owned copies, coalesced, handed to the transport as an iovec.  The
 * hub fills the queue and stops at a high-water mark, resuming when it
 * drains, or sooner when it asked to (client_wake_below).
 * client_output_limit is a hard cap; a client above client_output_soft_limit
 * for client_output_soft_seconds, or whose output has not moved at all for
 * that long, is dropped (redis style).  A dropped client loses what it has
 * not started to receive, so its memory comes back at once, and gets one
 * error frame per subscription with the position it really received:
 * resuming from there loses nothing.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "errors.h"
#include "client.h"
#include "filter.h"
#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "transport.h"

#define READ_ROOM 65536
#define CLOSE_LINGER 2.0
/* The TLS handshake and, with a token, the hello carrying it must be done
 * by then, so a silent connection cannot hold a slot. */
#define AUTH_TIMEOUT 10.0
/* Bytes written per writable event before other clients get their turn. */
#define WRITE_QUANTUM (1024 * 1024)
#define IOV_BATCH (IOV_MAX < 1024 ? IOV_MAX : 1024)
/* Small frames without a position share chunks of at least this size. */
#define CHUNK_MIN 512

enum client_state {
	CS_HANDSHAKE,            /* TLS handshake running; no frames yet */
	CS_AUTH,                 /* waiting for the hello with the token */
	CS_OPEN,                 /* frames are dispatched */
};

/* One queued frame, or several small ones sharing data. */
struct chunk {
	struct chunk *next;
	struct event *ev;        /* shared event (a reference), or NULL: data is the frames */
	bool before;             /* ev: the fullDocumentBeforeChange variant */
	bool has_pos;            /* an event or bookmark: sid has reached pos */
	long long sid;
	struct token pos;
	size_t len;              /* bytes of the whole chunk */
	size_t off;              /* bytes already written */
	size_t head;             /* ev: the envelope head in data */
	size_t cap;              /* room in data */
	char data[];
};

/* The last position of one sid that left for the socket. */
struct sidpos {
	long long sid;
	uint64_t seq;            /* when it was last moved, to evict the stalest */
	struct token pos;
};

struct client {
	struct client *next, *prev;
	struct client_env env;
	uint64_t id;
	Transport *t;
	char peer[96];
	enum client_state state;
	bool read_wants_write;   /* a TLS read waits for the socket to be writable */
	bool write_wants_read;   /* a TLS write waits for it to be readable */
	bool need_token;
	unsigned char token_sha256[32];
	enum client_refusal refuse_why; /* refusal sent once the handshake is done */
	int refuse_code;         /* 0: none */
	const char *refuse_msg;
	FrameReader *fr;
	struct chunk *head, *tail;      /* output queue */
	size_t queued;           /* bytes in it not yet written */
	struct sidpos *left;     /* per sid, what left for the socket */
	size_t nleft;
	uint64_t left_seq;
	size_t wake_below;       /* the writable upcall once queued drops below this (0: at empty) */
	ev_tstamp progress;      /* output last moved (or started) */
	ev_tstamp soft_since;    /* above the soft limit since, 0: not above */
	ev_io rio, wio;
	ev_timer linger;         /* bounded flush after close, then the free */
	ev_timer auth;           /* handshake and token deadline */
	ev_timer slow;           /* slow-consumer check while output is queued */
	bool closing;
	bool dropping;           /* being dropped: its error frames pass the limits */
	bool hello;
};

static Client *clients;
static size_t nclients;
static uint64_t next_id = 1;
static uint64_t refusals[CLIENT_REFUSAL_MAX];
static uint64_t drops[CLIENT_DROP_MAX];

static const char *const refusal_names[CLIENT_REFUSAL_MAX] = {
	[REFUSAL_MAX_CLIENTS] = "max_clients",
	[REFUSAL_MAX_SUBSCRIPTIONS] = "max_subscriptions",
	[REFUSAL_FRAME_TOO_LARGE] = "frame_too_large",
	[REFUSAL_PEER_NOT_ALLOWED] = "peer_not_allowed",
	[REFUSAL_AUTH_FAILED] = "auth_failed",
	[REFUSAL_TLS_HANDSHAKE] = "tls_handshake",
};

static const char *const drop_names[CLIENT_DROP_MAX] = {
	[DROP_HARD_LIMIT] = "hard_limit",
	[DROP_SOFT_LIMIT] = "soft_limit",
	[DROP_STALLED] = "stalled",
};

uint64_t client_refusals(enum client_refusal r)
{
	return (unsigned)r < CLIENT_REFUSAL_MAX ? refusals[r] : 0;
}

uint64_t client_drops(enum client_drop d)
{
	return (unsigned)d < CLIENT_DROP_MAX ? drops[d] : 0;
}

const char *client_refusal_name(enum client_refusal r)
{
	return (unsigned)r < CLIENT_REFUSAL_MAX ? refusal_names[r] : "unknown";
}

const char *client_drop_name(enum client_drop d)
{
	return (unsigned)d < CLIENT_DROP_MAX ? drop_names[d] : "unknown";
}

void client_count_refusal(enum client_refusal r)
{
	if ((unsigned)r < CLIENT_REFUSAL_MAX)
		refusals[r]++;
}

/* Counts and logs one refusal of c; the caller sends the frame, if any. */
static void refused(Client *c, enum client_refusal why, const char *detail)
{
	client_count_refusal(why);
	log_warning("client refused client=c%" PRIu64 " peer=%s refusal=%s reason=%s", c->id, c->peer,
		    client_refusal_name(why), LOGQ(detail));
}

static void chunk_free(struct chunk *ch)
{
	if (ch->ev)
		event_unref(ch->ev);
	free(ch);
}

static void discard_queue(Client *c)
{
	struct chunk *ch, *next;

	for (ch = c->head; ch; ch = next) {
		next = ch->next;
		chunk_free(ch);
	}
	c->head = c->tail = NULL;
	c->queued = 0;
}

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
	ev_timer_stop(c->env.loop, &c->auth);
	ev_timer_stop(c->env.loop, &c->slow);
	discard_queue(c);
	transport_free(c->t);
	frame_reader_free(c->fr);
	free(c->left);
	free(c);
}

/* Frees c from the loop, never under a caller that may still hold it. */
static void free_later(Client *c)
{
	ev_io_stop(c->env.loop, &c->wio);
	ev_timer_stop(c->env.loop, &c->linger);
	ev_timer_set(&c->linger, 0., 0.);
	ev_timer_start(c->env.loop, &c->linger);
}

uint64_t client_id(const Client *c)
{
	return c->id;
}

size_t client_pending(const Client *c)
{
	return c->queued;
}

void client_wake_below(Client *c, size_t bytes)
{
	if (bytes > c->wake_below)
		c->wake_below = bytes;
}

size_t client_count(void)
{
	return nclients;
}

/* --- output queue ------------------------------------------------------ */

static const char *chunk_json(const struct chunk *ch, size_t *ret_len)
{
	if (ch->before) {
		*ret_len = ch->ev->len_before;
		return ch->ev->json_before;
	}
	*ret_len = ch->ev->len;
	return ch->ev->json;
}

/* The unwritten bytes of ch, as at most three pieces. */
static int chunk_pieces(const struct chunk *ch, struct iovec *iov)
{
	struct iovec all[3];
	size_t skip = ch->off, jlen;
	int n = 1, k = 0;

	if (ch->ev) {
		all[0].iov_base = (void *)ch->data;
		all[0].iov_len = ch->head;
		all[1].iov_base = (void *)chunk_json(ch, &jlen);
		all[1].iov_len = jlen;
		all[2].iov_base = (void *)"}\n";
		all[2].iov_len = 2;
		n = 3;
	} else {
		all[0].iov_base = (void *)ch->data;
		all[0].iov_len = ch->len;
	}
	for (int i = 0; i < n; i++) {
		if (skip >= all[i].iov_len) {
			skip -= all[i].iov_len;
			continue;
		}
		iov[k].iov_base = (char *)all[i].iov_base + skip;
		iov[k].iov_len = all[i].iov_len - skip;
		skip = 0;
		k++;
	}
	return k;
}

/* Records that sid's frames up to pos left.  The table is bounded: past
 * max_subscriptions_per_client (plus room for unwatched sids) the entry
 * moved longest ago goes, which only costs a token in a final error frame
 * for a subscription that is long gone. */
static void note_left(Client *c, long long sid, const struct token *pos)
{
	size_t cap = (size_t)c->env.cv->max_subscriptions_per_client + 16, i, old = 0;

	for (i = 0; i < c->nleft; i++) {
		if (c->left[i].sid == sid) {
			c->left[i].pos = *pos;
			c->left[i].seq = ++c->left_seq;
			return;
		}
		if (c->left[i].seq < c->left[old].seq)
			old = i;
	}
	if (!c->left && !(c->left = calloc(cap, sizeof(*c->left))))
		return;
	i = c->nleft < cap ? c->nleft++ : old;
	c->left[i].sid = sid;
	c->left[i].pos = *pos;
	c->left[i].seq = ++c->left_seq;
}

bool client_delivered(const Client *c, long long sid, struct token *ret)
{
	for (size_t i = 0; i < c->nleft; i++) {
		if (c->left[i].sid == sid) {
			*ret = c->left[i].pos;
			return true;
		}
	}
	return false;
}

static void pop_chunk(Client *c)
{
	struct chunk *ch = c->head;

	c->head = ch->next;
	if (!c->head)
		c->tail = NULL;
	if (ch->has_pos)
		note_left(c, ch->sid, &ch->pos);
	chunk_free(ch);
}

/* n bytes from the front of the queue were written. */
static void advance(Client *c, size_t n)
{
	c->queued -= n;
	c->progress = ev_now(c->env.loop);
	while (n > 0) {
		struct chunk *ch = c->head;
		size_t left = ch->len - ch->off;

		if (n < left) {
			ch->off += n;
			return;
		}
		n -= left;
		pop_chunk(c);
	}
}

/*
 * A dropped client keeps only what it has started to receive: the chunk
 * partly written (its frame must be completed) and what the transport took
 * (a TLS retry must offer the same bytes).  Those count as sent, so the
 * error frames that follow carry their positions.
 */
static void drop_unsent(Client *c)
{
	size_t promised = transport_unwritten(c->t), at = 0;
	struct chunk **pp = &c->head, *ch;

	while ((ch = *pp)) {
		size_t left = ch->len - ch->off;

		if (ch->off > 0 || at < promised) {
			if (ch->has_pos)
				note_left(c, ch->sid, &ch->pos);
			at += left;
			c->tail = ch;
			pp = &ch->next;
			continue;
		}
		*pp = ch->next;
		c->queued -= left;
		chunk_free(ch);
	}
	if (!c->head)
		c->tail = NULL;
}

static void slow_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Bookkeeping after len bytes joined the queue. */
static void queued(Client *c, size_t len)
{
	const struct conf_values *cv = c->env.cv;
	ev_tstamp now = ev_now(c->env.loop);

	if (c->queued == 0)
		c->progress = now;
	c->queued += len;
	if (cv->client_output_soft_limit > 0 && c->queued > (size_t)cv->client_output_soft_limit &&
	    c->soft_since == 0)
		c->soft_since = now;
	if (cv->client_output_soft_seconds > 0 && !ev_is_active(&c->slow)) {
		double iv = cv->client_output_soft_seconds >= 4 ? 1.0 : cv->client_output_soft_seconds / 4.0;

		ev_timer_set(&c->slow, iv, iv);
		ev_timer_start(c->env.loop, &c->slow);
	}
	if (c->state != CS_HANDSHAKE && !c->write_wants_read)
		ev_io_start(c->env.loop, &c->wio);
}

static void drop(Client *c, enum client_drop why, int code, const char *msg,
		 const char *reason);

/* The hard limit: false, and the client dropped, when len more bytes would
 * pass client_output_limit.  Checked before queueing, so the error frames
 * name the last position that is really on its way. */
static bool room_for(Client *c, size_t len)
{
	size_t limit = (size_t)c->env.cv->client_output_limit;
	char msg[160];

	if (c->dropping || c->queued + len <= limit)
		return true;
	snprintf(msg, sizeof(msg),
		 "output limit exceeded: %zu bytes queued and %zu more would pass client_output_limit (%zu)",
		 c->queued, len, limit);
	drop(c, DROP_HARD_LIMIT, ERR_EXCEEDED_MEMORY_LIMIT, msg, "output limit exceeded");
	return false;
}

static void queue_frame(Client *c, const char *data, size_t len, bool has_pos, long long sid,
			const struct token *pos)
{
	struct chunk *t = c->tail, *ch;
	size_t cap;

	if (c->closing || len == 0 || !room_for(c, len))
		return;
	if (!has_pos && t && !t->ev && !t->has_pos && t->cap - t->len >= len) {
		memcpy(t->data + t->len, data, len);
		t->len += len;
		queued(c, len);
		return;
	}
	cap = has_pos || len >= CHUNK_MIN ? len : CHUNK_MIN;
	ch = malloc(sizeof(*ch) + cap);
	if (!ch) {
		client_close(c, "out of memory");
		return;
	}
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->data, data, len);
	ch->len = len;
	ch->cap = cap;
	ch->has_pos = has_pos;
	ch->sid = sid;
	if (pos)
		ch->pos = *pos;
	if (t)
		t->next = ch;
	else
		c->head = ch;
	c->tail = ch;
	queued(c, len);
}

void client_send(Client *c, const char *data, size_t len)
{
	queue_frame(c, data, len, false, 0, NULL);
}

void client_send_event(Client *c, long long sid, struct event *ev, bool before)
{
	char head[64];
	struct chunk *ch;
	size_t jlen, len;
	int n;

	if (c->closing)
		return;
	before = before && ev->json_before;
	jlen = before ? ev->len_before : ev->len;
	/* Only the envelope is per subscription; the event bytes are shared. */
	n = snprintf(head, sizeof(head), "{\"op\":\"event\",\"sid\":%lld,\"event\":", sid);
	len = (size_t)n + jlen + 2;
	if (!room_for(c, len))
		return;
	ch = malloc(sizeof(*ch) + (size_t)n);
	if (!ch) {
		client_close(c, "out of memory");
		return;
	}
	memset(ch, 0, sizeof(*ch));
	memcpy(ch->data, head, (size_t)n);
	ch->ev = event_ref(ev);
	ch->before = before;
	ch->has_pos = true;
	ch->sid = sid;
	ch->pos = ev->pos;
	ch->len = len;
	ch->head = (size_t)n;
	ch->cap = (size_t)n;
	if (c->tail)
		c->tail->next = ch;
	else
		c->head = ch;
	c->tail = ch;
	queued(c, len);
}

void client_send_bookmark(Client *c, long long sid, const struct token *tok)
{
	char buf[128], hex[TOKEN_HEX_LEN + 1];
	int n;

	token_format(tok, hex);
	n = snprintf(buf, sizeof(buf), "{\"op\":\"bookmark\",\"sid\":%lld,\"token\":{\"_data\":\"%s\"}}\n",
		     sid, hex);
	queue_frame(c, buf, (size_t)n, true, sid, tok);
}

void client_send_error(Client *c, long long sid, int code, const char *msg,
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
	cJSON_AddStringToObject(o, "codeName", proto_error_name(code));
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

/* --- writing ----------------------------------------------------------- */

static int flush(Client *c, char *why, size_t whylen)
{
	struct iovec iov[IOV_BATCH];
	size_t budget = WRITE_QUANTUM, max = transport_write_max(c->t);

	while (c->head && budget > 0) {
		struct chunk *ch;
		size_t bytes = 0;
		int n = 0;
		ssize_t w;

		for (ch = c->head; ch && n + 3 <= IOV_BATCH && bytes < max; ch = ch->next) {
			n += chunk_pieces(ch, iov + n);
			bytes += ch->len - ch->off;
		}
		w = transport_writev(c->t, iov, n, why, whylen);
		if (w > 0) {
			advance(c, (size_t)w);
			budget -= (size_t)w < budget ? (size_t)w : budget;
			continue;
		}
		if (w == TRANSPORT_WANT_READ)
			c->write_wants_read = true;
		if (w == TRANSPORT_WANT_READ || w == TRANSPORT_WANT_WRITE)
			return 0;
		return -EPIPE;
	}
	return 0;
}

/* Writes what is queued; from the writable socket, or from the readable one
 * when a TLS write waited for the peer. */
static void output(Client *c)
{
	char why[256];
	int r = flush(c, why, sizeof(why));

	if (r < 0) {
		/* The peer is gone: nothing more can be delivered. */
		discard_queue(c);
		if (c->closing)
			free_later(c);
		else
			client_close(c, why);
		return;
	}
	if (c->queued > 0) {
		if (c->write_wants_read)
			ev_io_stop(c->env.loop, &c->wio);
		else
			ev_io_start(c->env.loop, &c->wio);
		if (c->wake_below && c->queued < c->wake_below && !c->closing) {
			c->wake_below = 0;
			c->env.up->writable(c->env.up_arg, c);
		}
		return;
	}
	ev_io_stop(c->env.loop, &c->wio);
	ev_timer_stop(c->env.loop, &c->slow);
	c->soft_since = 0;
	c->wake_below = 0;
	if (c->closing) {
		transport_shutdown(c->t);
		free_later(c);
		return;
	}
	c->env.up->writable(c->env.up_arg, c);
}

/* --- closing and the slow-consumer policy ------------------------------- */

static void linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	client_free(w->data);
}

void client_close(Client *c, const char *reason)
{
	double linger = CLOSE_LINGER;

	if (c->closing)
		return;
	c->closing = true;
	log_info("client closed client=c%" PRIu64 " peer=%s reason=%s", c->id, c->peer, LOGQ(reason));
	metrics_add(M_DISCONNECTS, metrics_label(reason, (char[48]){ 0 }, 48), 1);
	c->env.up->gone(c->env.up_arg, c);
	ev_io_stop(c->env.loop, &c->rio);
	ev_timer_stop(c->env.loop, &c->auth);
	ev_timer_stop(c->env.loop, &c->slow);
	transport_stop_reading(c->t);
	/* What is queued (an error frame, a final bookmark) gets a bounded
	 * chance to leave.  A dropped client has only its error frames left
	 * and did not read for a while: it gets as long again. */
	if (c->dropping && c->env.cv->client_output_soft_seconds > linger)
		linger = c->env.cv->client_output_soft_seconds;
	ev_timer_stop(c->env.loop, &c->linger);
	ev_timer_set(&c->linger, c->queued ? linger : 0., 0.);
	ev_timer_start(c->env.loop, &c->linger);
	if (c->queued && c->state != CS_HANDSHAKE && !c->write_wants_read)
		ev_io_start(c->env.loop, &c->wio);
	else
		ev_io_stop(c->env.loop, &c->wio);
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

static void drop(Client *c, enum client_drop why, int code, const char *msg,
		 const char *reason)
{
	if (c->closing || c->dropping)
		return;
	drops[why]++;
	c->dropping = true;
	drop_unsent(c);
	log_warning("slow consumer dropped client=c%" PRIu64 " peer=%s limit=%s queued=%zu", c->id, c->peer,
		    client_drop_name(why), c->queued);
	c->env.up->error(c->env.up_arg, c, code, msg);
	client_close(c, reason);
}

static void slow_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Client *c = w->data;
	const struct conf_values *cv = c->env.cv;
	double secs = cv->client_output_soft_seconds;
	ev_tstamp now = ev_now(loop);
	char msg[200], reason[96];

	(void)revents;
	if (c->closing || c->queued == 0) {
		ev_timer_stop(loop, w);
		c->soft_since = 0;
		return;
	}
	if (now - c->progress >= secs) {
		snprintf(msg, sizeof(msg), "no output was read for %d seconds (client_output_soft_seconds); "
			 "resume after the token", cv->client_output_soft_seconds);
		snprintf(reason, sizeof(reason), "output not read for %d s", cv->client_output_soft_seconds);
		drop(c, DROP_STALLED, ERR_EXCEEDED_TIME_LIMIT, msg, reason);
		return;
	}
	if (cv->client_output_soft_limit > 0 && c->queued > (size_t)cv->client_output_soft_limit) {
		if (c->soft_since == 0)
			c->soft_since = now;
		if (now - c->soft_since >= secs) {
			snprintf(msg, sizeof(msg), "output above client_output_soft_limit (%d bytes) for %d seconds; "
				 "resume after the token", cv->client_output_soft_limit, cv->client_output_soft_seconds);
			snprintf(reason, sizeof(reason), "output above the soft limit for %d s",
				 cv->client_output_soft_seconds);
			drop(c, DROP_SOFT_LIMIT, ERR_EXCEEDED_MEMORY_LIMIT, msg, reason);
		}
		return;
	}
	c->soft_since = 0;
}

void client_refuse(Client *c, enum client_refusal why, int code, const char *msg)
{
	if (c->closing)
		return;
	if (c->state == CS_HANDSHAKE) {
		/* Answered in plain text the frame would be noise to a TLS
		 * client; it goes out once the session is up. */
		c->refuse_why = why;
		c->refuse_code = code;
		c->refuse_msg = msg;
		return;
	}
	refused(c, why, msg);
	client_send_error(c, -1, code, msg, NULL);
	client_close(c, msg);
}

/* --- access ------------------------------------------------------------ */

/* The first frame of a client that must present a token: a hello whose token
 * hashes to the configured one (compared in constant time).  m may be NULL
 * or a frame that is malformed after its object. */
static bool authenticate(Client *c, cJSON *m)
{
	char *tok = request_hello_token(m);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const char *detail = "the first frame is not a hello with a token";
	bool ok = false;

	if (tok) {
		size_t n = strlen(tok);

		ok = EVP_Digest(tok, n, md, &mdlen, EVP_sha256(), NULL) == 1 &&
		     mdlen == sizeof(c->token_sha256) &&
		     CRYPTO_memcmp(md, c->token_sha256, sizeof(c->token_sha256)) == 0;
		/* No copy of a secret outlives the check. */
		explicit_bzero(tok, n);
		detail = "wrong token";
	}
	if (!ok) {
		refused(c, REFUSAL_AUTH_FAILED, detail);
		client_send_error(c, -1, ERR_AUTH_FAILED,
				  "authentication failed: the first frame must be {\"op\":\"hello\",\"v\":1,"
				  "\"token\":\"...\"} with the configured token", NULL);
		client_close(c, "authentication failed");
		return false;
	}
	c->state = CS_OPEN;
	ev_timer_stop(c->env.loop, &c->auth);
	log_debug("client authenticated client=c%" PRIu64 " peer=%s", c->id, c->peer);
	return true;
}

/* max_subscriptions_per_client, checked before a watch is even decoded. */
static bool watch_admitted(Client *c, long long sid)
{
	int max = c->env.cv->max_subscriptions_per_client;
	char msg[128];

	if (c->env.up->subscriptions(c->env.up_arg, c) < (size_t)max)
		return true;
	snprintf(msg, sizeof(msg), "too many subscriptions on this connection (max_subscriptions_per_client = %d)",
		 max);
	refused(c, REFUSAL_MAX_SUBSCRIPTIONS, msg);
	client_send_error(c, sid, ERR_EXCEEDED_LIMIT, msg, NULL);
	return false;
}

/* --- protocol ---------------------------------------------------------- */

static void op_hello(Client *c)
{
	char buf[256];
	int n;

	c->hello = true;
	n = snprintf(buf, sizeof(buf),
		     "{\"op\":\"hello\",\"v\":1,\"server\":\"nvsrelayd\",\"version\":\"%s\","
		     "\"generation\":\"%08" PRIx32 "\",\"maxFrameBytes\":%d}\n",
		     NVSRELAY_VERSION, c->env.generation(), c->env.cv->max_frame_bytes);
	client_send(c, buf, (size_t)n);
}

static void op_watch(Client *c, const struct request *req)
{
	struct filter *f = NULL;
	char msg[512];

	if (filter_compile(req->pipeline, &f, msg, sizeof(msg)) < 0) {
		/* Refused, never ignored: a filter that silently matched
		 * everything would be worse than an error. */
		client_send_error(c, req->sid, ERR_BAD_VALUE, msg, NULL);
		return;
	}
	c->env.up->watch(c->env.up_arg, c, req, f);
}

static void dispatch(Client *c, const char *line, size_t len)
{
	struct request_error err;
	struct request req = { .op = REQUEST_NONE };
	cJSON *m;
	int r = request_parse(line, len, &m, &err);

	if (c->state == CS_AUTH && !authenticate(c, m))
		goto out;
	if (r == 0)
		r = request_decode(m, &req, &err);
	if (req.op == REQUEST_WATCH && !watch_admitted(c, req.reply_sid))
		goto out;
	if (r < 0) {
		client_send_error(c, err.sid, err.code, err.msg, NULL);
		goto out;
	}
	switch (req.op) {
	case REQUEST_HELLO:
		op_hello(c);
		break;
	case REQUEST_WATCH:
		op_watch(c, &req);
		break;
	case REQUEST_ACK:
		c->env.up->ack(c->env.up_arg, c, req.sid, &req.ack);
		break;
	case REQUEST_UNWATCH:
		c->env.up->unwatch(c->env.up_arg, c, req.sid);
		break;
	case REQUEST_PING:
		client_send(c, "{\"op\":\"pong\"}\n", 14);
		break;
	case REQUEST_NONE:
		break;
	}
out:
	cJSON_Delete(m);
}

/* --- reading ----------------------------------------------------------- */

static void process_frames(Client *c)
{
	const char *line;
	size_t len;
	int r;

	while (!c->closing && (r = frame_reader_next(c->fr, &line, &len)) != 0) {
		if (r == -EMSGSIZE) {
			char msg[96];
			snprintf(msg, sizeof(msg), "frame larger than max_frame_bytes (%d)",
				 c->env.cv->max_frame_bytes);
			refused(c, REFUSAL_FRAME_TOO_LARGE, msg);
			client_send_error(c, -1, ERR_TOO_LARGE, msg, NULL);
			continue;
		}
		if (len == 0)
			continue;
		dispatch(c, line, len);
	}
}

/* Reads until the transport has nothing more: records a TLS session has
 * already decrypted are read on even though the socket is not readable. */
static void input(Client *c)
{
	char why[256];

	do {
		char *buf;
		size_t room;
		ssize_t n;

		if (frame_reader_space(c->fr, READ_ROOM, &buf, &room) < 0) {
			client_close(c, "out of memory");
			return;
		}
		n = transport_read(c->t, buf, room, why, sizeof(why));
		if (n > 0) {
			frame_reader_commit(c->fr, (size_t)n);
			process_frames(c);
			continue;
		}
		if (n == TRANSPORT_WANT_READ)
			return;
		if (n == TRANSPORT_WANT_WRITE) {
			c->read_wants_write = true;
			ev_io_stop(c->env.loop, &c->rio);
			ev_io_start(c->env.loop, &c->wio);
			return;
		}
		client_close(c, n == TRANSPORT_CLOSED ? "peer closed" : why);
		return;
	} while (!c->closing && transport_has_pending(c->t));
}

static void handshake(Client *c)
{
	char why[256], desc[96], subject[256];
	int r = transport_handshake(c->t, why, sizeof(why));

	if (r == 0) {
		c->state = c->need_token ? CS_AUTH : CS_OPEN;
		if (c->state == CS_OPEN)
			ev_timer_stop(c->env.loop, &c->auth);
		log_info("client TLS established client=c%" PRIu64 " peer=%s tls='%s' subject=%s", c->id, c->peer,
			 transport_describe(c->t, desc, sizeof(desc)),
			 LOGQ(transport_peer_subject(c->t, subject, sizeof(subject))));
		ev_io_stop(c->env.loop, &c->wio);
		ev_io_start(c->env.loop, &c->rio);
		if (c->refuse_code) {
			client_refuse(c, c->refuse_why, c->refuse_code, c->refuse_msg);
			return;
		}
		if (c->queued)
			ev_io_start(c->env.loop, &c->wio);
		/* A client may send its first frames with its last handshake
		 * message; they wait in the session, not in the socket. */
		if (transport_has_pending(c->t))
			input(c);
		return;
	}
	if (r == TRANSPORT_WANT_READ) {
		ev_io_stop(c->env.loop, &c->wio);
		ev_io_start(c->env.loop, &c->rio);
		return;
	}
	if (r == TRANSPORT_WANT_WRITE) {
		ev_io_stop(c->env.loop, &c->rio);
		ev_io_start(c->env.loop, &c->wio);
		return;
	}
	refused(c, REFUSAL_TLS_HANDSHAKE, why);
	client_close(c, "TLS handshake failed");
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Client *c = w->data;

	(void)loop;
	(void)revents;
	if (c->state == CS_HANDSHAKE) {
		handshake(c);
		return;
	}
	if (c->write_wants_read) {
		c->write_wants_read = false;
		output(c);
		if (c->closing)
			return;
	}
	input(c);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Client *c = w->data;

	(void)revents;
	if (c->state == CS_HANDSHAKE) {
		handshake(c);
		return;
	}
	if (c->read_wants_write) {
		c->read_wants_write = false;
		if (!c->closing) {
			ev_io_start(loop, &c->rio);
			input(c);
		}
	}
	output(c);
}

static void auth_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Client *c = w->data;
	char msg[96];

	(void)loop;
	(void)revents;
	if (c->closing)
		return;
	if (c->state == CS_HANDSHAKE) {
		snprintf(msg, sizeof(msg), "no TLS handshake within %.0f seconds", AUTH_TIMEOUT);
		refused(c, REFUSAL_TLS_HANDSHAKE, msg);
		client_close(c, "TLS handshake timed out");
	} else if (c->state == CS_AUTH) {
		snprintf(msg, sizeof(msg), "no hello with a token within %.0f seconds", AUTH_TIMEOUT);
		refused(c, REFUSAL_AUTH_FAILED, msg);
		client_send_error(c, -1, ERR_AUTH_FAILED, msg, NULL);
		client_close(c, "authentication timed out");
	}
}

Client *client_new(const struct client_env *env, int fd, const char *peer, const struct client_transport *t)
{
	Transport *tr = t && t->ssl ? transport_tls(fd, t->ssl) : transport_plain(fd);
	Client *c = tr ? calloc(1, sizeof(*c)) : NULL;

	if (!c || !(c->fr = frame_reader_new((size_t)env->cv->max_frame_bytes))) {
		free(c);
		transport_free(tr);
		return NULL;
	}
	c->env = *env;
	c->t = tr;
	c->id = next_id++;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->state = t && t->ssl ? CS_HANDSHAKE : CS_OPEN;
	if (t && t->token_sha256) {
		memcpy(c->token_sha256, t->token_sha256, sizeof(c->token_sha256));
		c->need_token = true;
		if (c->state == CS_OPEN)
			c->state = CS_AUTH;
	}
	ev_io_init(&c->rio, read_cb, fd, EV_READ);
	c->rio.data = c;
	ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
	c->wio.data = c;
	ev_init(&c->linger, linger_cb);
	c->linger.data = c;
	ev_init(&c->auth, auth_cb);
	c->auth.data = c;
	ev_init(&c->slow, slow_cb);
	c->slow.data = c;
	ev_io_start(env->loop, &c->rio);
	if (c->state != CS_OPEN) {
		ev_timer_set(&c->auth, AUTH_TIMEOUT, 0.);
		ev_timer_start(env->loop, &c->auth);
	}
	c->next = clients;
	if (clients)
		clients->prev = c;
	clients = c;
	nclients++;
	log_debug("client connected client=c%" PRIu64 " peer=%s", c->id, c->peer);
	return c;
}
