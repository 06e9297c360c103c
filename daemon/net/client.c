/*
 * client.c - one subscriber connection, over the Unix socket, plaintext
 * TCP on loopback, or TLS: its state, output queue and limits.
 *
 * The byte stream is a Transport (transport.c: a plain socket or a TLS
 * session).  A TLS client first completes its handshake; a client that must
 * present a bearer token is then held until its first frame, a hello
 * carrying it.  Both must be done within AUTH_TIMEOUT, and until then the
 * connection has its own budget (CLIENT_UNAUTH_MAX), not max_clients'.
 *
 * Input is split into NDJSON frames by the frame reader (size cap), each
 * checked for its cost (intake.c) and decoded by request.c.  A bad frame
 * gets an error frame with a MongoDB-style code and the connection carries
 * on; only I/O, refusals and slow consumers end it, via client_close().
 * Subscription requests go up to the hub through the upcalls in client_env
 * (main.c wires them), never by calling it: the hub calls down into this
 * file to send, so the two do not call each other in a circle.
 *
 * Output goes through the client's queue (outq.c: shared events by
 * reference, small frames coalesced), handed to the transport as an iovec.
 * The hub fills the queue and stops at a high-water mark, resuming when it
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
#include <malloc.h>
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
#include "intake.h"
#include "log.h"
#include "metrics.h"
#include "outq.h"
#include "request.h"
#include "transport.h"

#define READ_ROOM 65536
#define CLOSE_LINGER 2.0
/* The TLS handshake and, with a token, the hello carrying it must be done
 * by then, so a silent connection cannot hold a slot. */
#define AUTH_TIMEOUT 10.0
#define BIG_FRAME (1024 * 1024) /* after one, memory goes back to the system */
/* Bytes written per writable event before other clients get their turn. */
#define WRITE_QUANTUM (1024 * 1024)
#define IOV_BATCH (IOV_MAX < 1024 ? IOV_MAX : 1024)

enum client_state {
	CS_HANDSHAKE,            /* TLS handshake running; no frames yet */
	CS_AUTH,                 /* waiting for the hello with the token */
	CS_OPEN,                 /* frames are dispatched */
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
	bool has_cred;           /* Unix peer credentials, for consumer_owners */
	unsigned uid, gid;
	enum client_refusal refuse_why; /* refusal sent once the handshake is done */
	int refuse_code;         /* 0: none */
	const char *refuse_msg;
	FrameReader *fr;
	Outq *q;
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
static size_t nunauth;           /* clients not CS_OPEN */
static uint64_t next_id = 1;

/* Counts and logs one refusal of c; the caller sends the frame, if any. */
static void refused(Client *c, enum client_refusal why, const char *detail)
{
	clientstat_refused(why);
	log_warning("client refused client=c%" PRIu64 " peer=%s refusal=%s reason=%s", c->id, c->peer,
		    clientstat_refusal_name(why), LOGQ(detail));
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
	if (c->state != CS_OPEN)
		nunauth--;
	ev_io_stop(c->env.loop, &c->rio);
	ev_io_stop(c->env.loop, &c->wio);
	ev_timer_stop(c->env.loop, &c->linger);
	ev_timer_stop(c->env.loop, &c->auth);
	ev_timer_stop(c->env.loop, &c->slow);
	outq_free(c->q);
	transport_free(c->t);
	frame_reader_free(c->fr);
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

const char *client_peer(const Client *c)
{
	return c->peer;
}

void client_owner_id(Client *c, struct owner_id *id, struct owner_bufs *bufs)
{
	memset(id, 0, sizeof(*id));
	id->has_cred = c->has_cred;
	id->uid = c->uid;
	id->gid = c->gid;
	id->token = c->need_token && c->state == CS_OPEN;
	transport_peer_subject(c->t, bufs->subject, sizeof(bufs->subject));
	id->subject = bufs->subject[0] ? bufs->subject : NULL;
	transport_peer_cn(c->t, bufs->cn, sizeof(bufs->cn));
	id->cn = bufs->cn[0] ? bufs->cn : NULL;
}

size_t client_pending(const Client *c)
{
	return outq_bytes(c->q);
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

size_t client_count_unauthenticated(void)
{
	return nunauth;
}

size_t client_count_authenticated(void)
{
	return nclients - nunauth;
}

/* --- output queue ------------------------------------------------------ */

bool client_delivered(const Client *c, long long sid, struct token *ret)
{
	return outq_delivered(c->q, sid, ret);
}

void client_sid_reset(Client *c, long long sid)
{
	outq_sid_reset(c->q, sid);
}

static void slow_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Bookkeeping after bytes joined the queue, which held was_queued before. */
static void queued(Client *c, size_t was_queued)
{
	const struct conf_values *cv = c->env.cv;
	ev_tstamp now = ev_now(c->env.loop);

	if (was_queued == 0)
		c->progress = now;
	if (cv->client_output_soft_limit > 0 && outq_bytes(c->q) > (size_t)cv->client_output_soft_limit &&
	    c->soft_since == 0)
		c->soft_since = now;
	if (cv->client_output_soft_seconds > 0 && !ev_is_active(&c->slow)) {
		double iv = cv->client_output_soft_seconds >= 4 ? 1.0 : cv->client_output_soft_seconds / 4.0;

		ev_timer_set(&c->slow, iv, iv);
		ev_timer_start(c->env.loop, &c->slow);
	}
	if (c->state == CS_HANDSHAKE || c->write_wants_read)
		return;
	/* A queue that was empty is written once the current callback returns,
	 * before the loop polls again (redis writes in beforeSleep): the
	 * socket almost always takes it, and a live event does not wait for
	 * a poll round to learn what it already knows.  Whatever is left
	 * waits for the socket to be writable. */
	if (was_queued == 0 && !ev_is_active(&c->wio) && !ev_is_pending(&c->wio))
		ev_feed_event(c->env.loop, &c->wio, EV_WRITE);
	else
		ev_io_start(c->env.loop, &c->wio);
}

static void drop(Client *c, enum client_drop why, int code, const char *msg,
		 const char *reason);

/* The hard limit: false, and the client dropped, when len more bytes would
 * pass client_output_limit.  Checked before queueing, so the error frames
 * name the last position that is really on its way. */
static bool room_for(Client *c, size_t len)
{
	size_t limit = (size_t)c->env.cv->client_output_limit, have = outq_bytes(c->q);
	char msg[160];

	if (c->dropping || have + len <= limit)
		return true;
	snprintf(msg, sizeof(msg),
		 "output limit exceeded: %zu bytes queued and %zu more would pass client_output_limit (%zu)",
		 have, len, limit);
	drop(c, DROP_HARD_LIMIT, ERR_EXCEEDED_MEMORY_LIMIT, msg, "output limit exceeded");
	return false;
}

static void queue_frame(Client *c, const char *data, size_t len, bool has_pos, long long sid,
			const struct token *pos)
{
	size_t was = outq_bytes(c->q);

	if (c->closing || len == 0 || !room_for(c, len))
		return;
	if (outq_push(c->q, data, len, has_pos, sid, pos) < 0) {
		client_close(c, "out of memory");
		return;
	}
	queued(c, was);
}

void client_send(Client *c, const char *data, size_t len)
{
	queue_frame(c, data, len, false, 0, NULL);
}

void client_send_event(Client *c, long long sid, struct event *ev, bool before)
{
	size_t was = outq_bytes(c->q);

	if (c->closing || !room_for(c, outq_event_len(sid, ev, before)))
		return;
	if (outq_push_event(c->q, sid, ev, before) < 0) {
		client_close(c, "out of memory");
		return;
	}
	queued(c, was);
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
	size_t n;
	char *s = proto_error_frame(sid, code, msg, tok, &n);

	if (!s)
		return;
	log_info("client error client=c%" PRIu64 " sid=%lld code=%d reason=%s", c->id, sid, code, LOGQ(msg));
	client_send(c, s, n);
	free(s);
}

/* --- writing ----------------------------------------------------------- */

static int flush(Client *c, char *why, size_t whylen)
{
	struct iovec iov[IOV_BATCH];
	size_t budget = WRITE_QUANTUM, max = transport_write_max(c->t);

	while (outq_bytes(c->q) > 0 && budget > 0) {
		int n = outq_iov(c->q, iov, IOV_BATCH, max);
		ssize_t w = transport_writev(c->t, iov, n, why, whylen);

		if (w > 0) {
			outq_consume(c->q, (size_t)w);
			c->progress = ev_now(c->env.loop);
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
		outq_clear(c->q);
		if (c->closing)
			free_later(c);
		else
			client_close(c, why);
		return;
	}
	if (outq_bytes(c->q) > 0) {
		if (c->write_wants_read && !c->read_wants_write)
			ev_io_stop(c->env.loop, &c->wio);
		else
			ev_io_start(c->env.loop, &c->wio);
		if (c->wake_below && outq_bytes(c->q) < c->wake_below && !c->closing) {
			c->wake_below = 0;
			c->env.up->writable(c->env.up_arg, c);
		}
		return;
	}
	if (!c->read_wants_write)   /* a TLS read waits on it */
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
	ev_timer_set(&c->linger, outq_bytes(c->q) ? linger : 0., 0.);
	ev_timer_start(c->env.loop, &c->linger);
	if (outq_bytes(c->q) && c->state != CS_HANDSHAKE && !c->write_wants_read)
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
	clientstat_dropped(why);
	c->dropping = true;
	/* A dropped client keeps only what it has started to receive (and
	 * what the transport took: a TLS retry must offer the same bytes), so
	 * its memory comes back and its error frames carry those positions. */
	outq_drop_unsent(c->q, transport_unwritten(c->t));
	log_warning("slow consumer dropped client=c%" PRIu64 " peer=%s limit=%s queued=%zu", c->id, c->peer,
		    clientstat_drop_name(why), outq_bytes(c->q));
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
	/* secs 0: turned off by a reload since this timer started. */
	if (c->closing || outq_bytes(c->q) == 0 || secs <= 0) {
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
	if (cv->client_output_soft_limit > 0 && outq_bytes(c->q) > (size_t)cv->client_output_soft_limit) {
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

/* c has authenticated (TLS handshake, token): it leaves the budget of
 * unauthenticated connections for max_clients.  False: no room, refused. */
static bool opened(Client *c)
{
	c->state = CS_OPEN;
	nunauth--;
	ev_timer_stop(c->env.loop, &c->auth);
	if (client_count_authenticated() <= (size_t)c->env.cv->max_clients)
		return true;
	client_refuse(c, REFUSAL_MAX_CLIENTS, ERR_EXCEEDED_LIMIT, "too many clients (max_clients)");
	return false;
}

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
	log_debug("client authenticated client=c%" PRIu64 " peer=%s", c->id, c->peer);
	return opened(c);
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
	case REQUEST_POSITION:
	case REQUEST_STORE:
		if (c->env.up->position)
			c->env.up->position(c->env.up_arg, c, &req);
		else
			client_send_error(c, req.sid, ERR_COMMAND_NOT_FOUND, "position and store are not served here", NULL);
		break;
	case REQUEST_COUNT:
		c->env.up->count(c->env.up_arg, c, &req);
		break;
	case REQUEST_NONE:
		break;
	}
out:
	cJSON_Delete(m);
}

/* --- reading ----------------------------------------------------------- */

/* Checked before it is parsed (intake.c).  False: refused with an error
 * frame and, before authentication, the end of the connection. */
static bool affordable(Client *c, const char *line, size_t len)
{
	char msg[256];
	long long sid;
	int code = intake_check(line, len, c->state == CS_OPEN, &sid, msg, sizeof(msg));

	if (code == 0)
		return true;
	if (code == ERR_TOO_LARGE)
		refused(c, REFUSAL_FRAME_TOO_LARGE, msg);
	client_send_error(c, sid, code, msg, NULL);
	if (c->state != CS_OPEN)
		client_close(c, msg);
	return false;
}

static void process_frames(Client *c)
{
	const char *line;
	size_t len;
	bool big = false;
	int r;

	while (!c->closing && (r = frame_reader_next(c->fr, &line, &len)) != 0) {
		if (r == -EMSGSIZE) {
			char msg[96];
			snprintf(msg, sizeof(msg), "frame larger than max_frame_bytes (%d)",
				 c->env.cv->max_frame_bytes);
			refused(c, REFUSAL_FRAME_TOO_LARGE, msg);
			client_send_error(c, -1, ERR_TOO_LARGE, msg, NULL);
			big = true; /* its bytes were buffered all the same */
			continue;
		}
		if (len == 0)
			continue;
		big |= len >= BIG_FRAME;
		if (affordable(c, line, len))
			dispatch(c, line, len);
	}
	/* Before authentication a partial frame may not grow past a hello
	 * either: its length alone is refused, its bytes are not read. */
	if (!c->closing && c->state != CS_OPEN && frame_reader_pending(c->fr) > INTAKE_PREAUTH_MAX)
		affordable(c, NULL, frame_reader_pending(c->fr));
	/* A large frame must not cost its size for the rest of the
	 * connection (nor of the daemon: malloc keeps what it freed). */
	frame_reader_release(c->fr, 2 * READ_ROOM);
	if (big)
		malloc_trim(0);
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
	char why[256], desc[96], subject[512];
	int r = transport_handshake(c->t, why, sizeof(why));

	if (r == 0) {
		c->state = CS_AUTH;
		log_info("client TLS established client=c%" PRIu64 " peer=%s tls='%s' subject=%s", c->id, c->peer,
			 transport_describe(c->t, desc, sizeof(desc)),
			 LOGQ(transport_peer_subject(c->t, subject, sizeof(subject))));
		ev_io_stop(c->env.loop, &c->wio);
		ev_io_start(c->env.loop, &c->rio);
		if (c->refuse_code) {
			client_refuse(c, c->refuse_why, c->refuse_code, c->refuse_msg);
			return;
		}
		if (!c->need_token && !opened(c))
			return;
		if (outq_bytes(c->q))
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

	/* Positions that left: one per subscription, plus room for sids
	 * unwatched lately. */
	if (!c || !(c->fr = frame_reader_new((size_t)env->cv->max_frame_bytes)) ||
	    !(c->q = outq_new((size_t)env->cv->max_subscriptions_per_client + 16))) {
		if (c)
			frame_reader_free(c->fr);
		free(c);
		transport_free(tr);
		return NULL;
	}
	c->env = *env;
	c->t = tr;
	c->id = next_id++;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	if (t && t->has_cred) {
		c->has_cred = true;
		c->uid = t->uid;
		c->gid = t->gid;
	}
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
		nunauth++;
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
