/*
 * client.c - one subscriber connection, over the Unix socket, plaintext
 * TCP on loopback, or TLS.
 *
 * Transport: a plain fd, or an OpenSSL session driven non-blocking under
 * libev.  A TLS client first completes its handshake (SSL_read and SSL_write
 * may each need the socket readable or writable, and records the session has
 * already decrypted are read on without waiting for the socket).  A client
 * that must present a bearer token is then held until its first frame, a
 * hello carrying it.  Both must be done within AUTH_TIMEOUT.
 *
 * Input is split into NDJSON frames by the frame reader (hard size cap),
 * each frame parsed with cJSON and dispatched by "op".  Every bad frame gets
 * an error frame with a MongoDB-style code and the connection carries on;
 * only I/O failures, refusals and slow consumers end it, and always through
 * client_close().
 *
 * Output is a queue of chunks.  An event chunk holds a reference to the
 * event every subscriber shares plus its own small envelope; other frames are
 * small owned copies, coalesced.  Plain sockets are written with sendmsg (a
 * writev that cannot raise SIGPIPE), TLS through a record-sized staging
 * buffer.  hub.c fills the queue and stops at a high-water mark, resuming
 * when it drains, or sooner when it asked to (client_wake_below).
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
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "client.h"
#include "count.h"
#include "filter.h"
#include "frame.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "relay.h"
#include "tls.h"
#include "utf8.h"

#define READ_ROOM 65536
#define CLOSE_LINGER 2.0
/* The TLS handshake and, with a token, the hello carrying it must be done
 * by then, so a silent connection cannot hold a slot. */
#define AUTH_TIMEOUT 10.0
/* TLS output is copied here and written a record at a time. */
#define TLS_STAGE 16384
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
	int fd;
	char peer[96];
	enum client_state state;
	SSL *ssl;                /* NULL: a plain socket */
	bool tls_broken;         /* a fatal TLS error: no close_notify */
	bool read_wants_write;   /* SSL_read waits for the socket to be writable */
	bool write_wants_read;   /* SSL_write waits for it to be readable */
	bool need_token;
	unsigned char token_sha256[32];
	enum client_refusal refuse_why; /* refusal sent once the handshake is done */
	int refuse_code;         /* 0: none */
	const char *refuse_name, *refuse_msg;
	FrameReader *fr;
	struct chunk *head, *tail;      /* output queue */
	size_t queued;           /* bytes in it not yet written */
	char *stage;             /* TLS: the next queued bytes, handed to SSL_write */
	size_t stage_len, stage_off;
	struct sidpos *left;     /* per sid, what left for the socket */
	size_t nleft;
	uint64_t left_seq;
	size_t wake_below;       /* hub_client_writable once queued drops below this (0: at empty) */
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
	free(c->stage);
	c->stage = NULL;
	c->stage_len = c->stage_off = 0;
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
	/* The session's socket BIO does not own the fd. */
	SSL_free(c->ssl);
	close(c->fd);
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
 * partly written (its frame must be completed) and, with TLS, what was handed
 * to SSL_write (a retry must offer the same bytes).  Those count as sent, so
 * the error frames that follow carry their positions.
 */
static void drop_unsent(Client *c)
{
	size_t promised = c->stage_len - c->stage_off, at = 0;
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

static void drop(Client *c, enum client_drop why, int code, const char *name, const char *msg,
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
	drop(c, DROP_HARD_LIMIT, ERR_EXCEEDED_MEMORY_LIMIT, "ExceededMemoryLimit", msg, "output limit exceeded");
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

/* --- writing ----------------------------------------------------------- */

static int flush_plain(Client *c, char *why, size_t whylen)
{
	struct iovec iov[IOV_BATCH];
	size_t budget = WRITE_QUANTUM;

	while (c->head && budget > 0) {
		struct msghdr msg;
		struct chunk *ch;
		int n = 0;
		ssize_t w;

		for (ch = c->head; ch && n + 3 <= IOV_BATCH; ch = ch->next)
			n += chunk_pieces(ch, iov + n);
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)n;
		w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			advance(c, (size_t)w);
			budget -= (size_t)w < budget ? (size_t)w : budget;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		snprintf(why, whylen, "%s", w == 0 ? "peer closed" : strerror(errno));
		return -EPIPE;
	}
	return 0;
}

/* Copies the next queued bytes, up to one record, into the stage. */
static void fill_stage(Client *c)
{
	struct iovec iov[3];
	size_t n = 0;

	for (struct chunk *ch = c->head; ch && n < TLS_STAGE; ch = ch->next) {
		int k = chunk_pieces(ch, iov);

		for (int i = 0; i < k && n < TLS_STAGE; i++) {
			size_t take = iov[i].iov_len < TLS_STAGE - n ? iov[i].iov_len : TLS_STAGE - n;

			memcpy(c->stage + n, iov[i].iov_base, take);
			n += take;
		}
	}
	c->stage_len = n;
	c->stage_off = 0;
}

static int flush_tls(Client *c, char *why, size_t whylen)
{
	size_t budget = WRITE_QUANTUM;

	while (c->queued > 0 && budget > 0) {
		int r, e;

		if (c->stage_off == c->stage_len) {
			if (!c->stage && !(c->stage = malloc(TLS_STAGE))) {
				snprintf(why, whylen, "out of memory");
				return -ENOMEM;
			}
			fill_stage(c);
		}
		ERR_clear_error();
		r = SSL_write(c->ssl, c->stage + c->stage_off, (int)(c->stage_len - c->stage_off));
		if (r > 0) {
			c->stage_off += (size_t)r;
			advance(c, (size_t)r);
			budget -= (size_t)r < budget ? (size_t)r : budget;
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_WANT_READ) {
			c->write_wants_read = true;
			return 0;
		}
		c->tls_broken = true;
		tls_error(c->ssl, e == SSL_ERROR_SYSCALL ? errno : 0, why, whylen);
		return -EPIPE;
	}
	if (c->queued == 0) {
		free(c->stage);
		c->stage = NULL;
		c->stage_len = c->stage_off = 0;
	}
	return 0;
}

/* Writes what is queued; from the writable socket, or from the readable one
 * when a TLS write waited for the peer. */
static void output(Client *c)
{
	char why[256];
	int r = c->ssl ? flush_tls(c, why, sizeof(why)) : flush_plain(c, why, sizeof(why));

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
			hub_client_writable(c->env.hub, c);
		}
		return;
	}
	ev_io_stop(c->env.loop, &c->wio);
	ev_timer_stop(c->env.loop, &c->slow);
	c->soft_since = 0;
	c->wake_below = 0;
	if (c->closing) {
		if (c->ssl && !c->tls_broken && c->state != CS_HANDSHAKE) {
			ERR_clear_error();
			SSL_shutdown(c->ssl);   /* close_notify, best effort */
			ERR_clear_error();
		}
		free_later(c);
		return;
	}
	hub_client_writable(c->env.hub, c);
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
	hub_client_gone(c->env.hub, c);
	ev_io_stop(c->env.loop, &c->rio);
	ev_timer_stop(c->env.loop, &c->auth);
	ev_timer_stop(c->env.loop, &c->slow);
	shutdown(c->fd, SHUT_RD);
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

Client *client_find(uint64_t id)
{
	for (Client *c = clients; c; c = c->next)
		if (c->id == id && !c->closing)
			return c;
	return NULL;
}

void client_free_all(void)
{
	while (clients)
		client_free(clients);
}

static void drop(Client *c, enum client_drop why, int code, const char *name, const char *msg,
		 const char *reason)
{
	if (c->closing || c->dropping)
		return;
	drops[why]++;
	c->dropping = true;
	drop_unsent(c);
	log_warning("slow consumer dropped client=c%" PRIu64 " peer=%s limit=%s queued=%zu", c->id, c->peer,
		    client_drop_name(why), c->queued);
	hub_client_error(c->env.hub, c, code, name, msg);
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
		drop(c, DROP_STALLED, ERR_EXCEEDED_TIME_LIMIT, "ExceededTimeLimit", msg, reason);
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
			drop(c, DROP_SOFT_LIMIT, ERR_EXCEEDED_MEMORY_LIMIT, "ExceededMemoryLimit", msg, reason);
		}
		return;
	}
	c->soft_since = 0;
}

void client_refuse(Client *c, enum client_refusal why, int code, const char *name, const char *msg)
{
	if (c->closing)
		return;
	if (c->state == CS_HANDSHAKE) {
		/* Answered in plain text the frame would be noise to a TLS
		 * client; it goes out once the session is up. */
		c->refuse_why = why;
		c->refuse_code = code;
		c->refuse_name = name;
		c->refuse_msg = msg;
		return;
	}
	refused(c, why, msg);
	client_send_error(c, -1, code, name, msg, NULL);
	client_close(c, msg);
}

/* --- access ------------------------------------------------------------ */

/* The first frame of a client that must present a token: a hello whose token
 * hashes to the configured one (compared in constant time). */
static bool authenticate(Client *c, cJSON *m)
{
	const cJSON *op = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "op") : NULL;
	cJSON *tok = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "token") : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const char *detail = "the first frame is not a hello with a token";
	bool ok = false;

	if (cJSON_IsString(op) && strcmp(op->valuestring, "hello") == 0 && cJSON_IsString(tok)) {
		size_t n = strlen(tok->valuestring);

		ok = EVP_Digest(tok->valuestring, n, md, &mdlen, EVP_sha256(), NULL) == 1 &&
		     mdlen == sizeof(c->token_sha256) &&
		     CRYPTO_memcmp(md, c->token_sha256, sizeof(c->token_sha256)) == 0;
		/* No copy of a secret outlives the check. */
		explicit_bzero(tok->valuestring, n);
		detail = "wrong token";
	}
	if (!ok) {
		refused(c, REFUSAL_AUTH_FAILED, detail);
		client_send_error(c, -1, ERR_AUTH_FAILED, "AuthenticationFailed",
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

/* max_subscriptions_per_client, checked before a watch reaches the hub. */
static bool watch_admitted(Client *c, const cJSON *m)
{
	const cJSON *sid = cJSON_GetObjectItemCaseSensitive(m, "sid");
	int max = c->env.cv->max_subscriptions_per_client;
	char msg[128];

	if (hub_client_subscriptions(c->env.hub, c) < (size_t)max)
		return true;
	snprintf(msg, sizeof(msg), "too many subscriptions on this connection (max_subscriptions_per_client = %d)",
		 max);
	refused(c, REFUSAL_MAX_SUBSCRIPTIONS, msg);
	client_send_error(c, cJSON_IsNumber(sid) && sid->valuedouble >= 0 && sid->valuedouble <= 9007199254740991.0
			  ? (long long)sid->valuedouble : -1,
			  ERR_EXCEEDED_LIMIT, "ExceededLimit", msg, NULL);
	return false;
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

/* A misspelt option ("startAtOperationtime") must not quietly become "start
 * at the head": unknown fields are refused, as MongoDB does. */
static bool known_fields(Client *c, long long sid, const cJSON *m)
{
	static const char *const known[] = {
		"op", "sid", "table", "consumer", "resumeAfter", "startAfter", "startAtOperationTime",
		"pipeline", "fullDocumentBeforeChange", NULL
	};
	const cJSON *f;
	char msg[200];
	size_t i;

	for (f = m->child; f; f = f->next) {
		for (i = 0; known[i] && strcmp(known[i], f->string) != 0; i++)
			;
		if (!known[i]) {
			snprintf(msg, sizeof(msg), "unknown field '%.64s' in watch", f->string);
			client_send_error(c, sid, ERR_UNKNOWN_FIELD, "Location40415", msg, NULL);
			return false;
		}
	}
	return true;
}

static void op_watch(Client *c, const cJSON *m)
{
	struct watch_req req;
	const cJSON *t, *consumer, *ra, *sa, *sat, *eid, *fdbc, *pipe;
	char msg[512];
	long long sid;

	memset(&req, 0, sizeof(req));
	if (!get_sid(c, m, &sid))
		return;
	if (!known_fields(c, sid, m))
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
		if (!cJSON_IsString(consumer) || !consumer->valuestring[0] || strlen(consumer->valuestring) > 255 ||
		    !utf8_valid(consumer->valuestring)) {
			client_send_error(c, sid, ERR_TYPE_MISMATCH, "TypeMismatch",
					  "consumer must be a non-empty UTF-8 string of at most 255 bytes", NULL);
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
	if (filter_compile(pipe, &req.filter, msg, sizeof(msg)) < 0) {
		/* Refused, never ignored: a filter that silently matched
		 * everything would be worse than an error. */
		client_send_error(c, sid, ERR_BAD_VALUE, "BadValue", msg, NULL);
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
	if (c->state == CS_AUTH && !authenticate(c, m)) {
		cJSON_Delete(m);
		return;
	}
	/* One frame, one object: bytes after it (other than blanks) make the
	 * whole frame malformed rather than being ignored. */
	if (m && end)
		while (end < line + len && (*end == ' ' || *end == '\t'))
			end++;
	if (m && end != line + len) {
		cJSON_Delete(m);
		m = NULL;
	}
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
		if (watch_admitted(c, m))
			op_watch(c, m);
	} else if (strcmp(op->valuestring, "ack") == 0) {
		op_ack(c, m);
	} else if (strcmp(op->valuestring, "unwatch") == 0) {
		op_unwatch(c, m);
	} else if (strcmp(op->valuestring, "ping") == 0) {
		client_send(c, "{\"op\":\"pong\"}\n", 14);
	} else if (strcmp(op->valuestring, "count") == 0) {
		count_op(c, c->env.hub, m);
	} else {
		client_send_error(c, -1, ERR_COMMAND_NOT_FOUND, "CommandNotFound",
				  "unknown op; expected hello, watch, ack, unwatch, ping or count", NULL);
	}
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
			client_send_error(c, -1, ERR_TOO_LARGE, "BSONObjectTooLarge", msg, NULL);
			continue;
		}
		if (len == 0)
			continue;
		dispatch(c, line, len);
	}
}

static void read_plain(Client *c)
{
	char *buf;
	size_t room;
	ssize_t n;

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
	process_frames(c);
}

/* Reads until the socket has nothing more: records the session already
 * holds are decrypted and read on even though the socket is not readable. */
static void read_tls(Client *c)
{
	char why[256];

	do {
		char *buf;
		size_t room;
		int r, e;

		if (frame_reader_space(c->fr, READ_ROOM, &buf, &room) < 0) {
			client_close(c, "out of memory");
			return;
		}
		ERR_clear_error();
		r = SSL_read(c->ssl, buf, room < INT_MAX ? (int)room : INT_MAX);
		if (r > 0) {
			frame_reader_commit(c->fr, (size_t)r);
			process_frames(c);
			continue;
		}
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			return;
		if (e == SSL_ERROR_WANT_WRITE) {
			c->read_wants_write = true;
			ev_io_stop(c->env.loop, &c->rio);
			ev_io_start(c->env.loop, &c->wio);
			return;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			client_close(c, "peer closed");
			return;
		}
		c->tls_broken = true;
		client_close(c, tls_error(c->ssl, e == SSL_ERROR_SYSCALL ? errno : 0, why, sizeof(why)));
		return;
	} while (!c->closing && (SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl)));
}

static void handshake(Client *c)
{
	char why[256], desc[96], subject[256];
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		c->state = c->need_token ? CS_AUTH : CS_OPEN;
		if (c->state == CS_OPEN)
			ev_timer_stop(c->env.loop, &c->auth);
		log_info("client TLS established client=c%" PRIu64 " peer=%s tls='%s' subject=%s", c->id, c->peer,
			 tls_describe(c->ssl, desc, sizeof(desc)),
			 LOGQ(tls_peer_subject(c->ssl, subject, sizeof(subject))));
		ev_io_stop(c->env.loop, &c->wio);
		ev_io_start(c->env.loop, &c->rio);
		if (c->refuse_code) {
			client_refuse(c, c->refuse_why, c->refuse_code, c->refuse_name, c->refuse_msg);
			return;
		}
		if (c->queued)
			ev_io_start(c->env.loop, &c->wio);
		/* A client may send its first frames with its last handshake
		 * message; they wait in the session, not in the socket. */
		if (SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl))
			read_tls(c);
		return;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ev_io_stop(c->env.loop, &c->wio);
		ev_io_start(c->env.loop, &c->rio);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ev_io_stop(c->env.loop, &c->rio);
		ev_io_start(c->env.loop, &c->wio);
		return;
	}
	c->tls_broken = true;
	refused(c, REFUSAL_TLS_HANDSHAKE,
		tls_error(c->ssl, e == SSL_ERROR_SYSCALL ? errno : 0, why, sizeof(why)));
	client_close(c, "TLS handshake failed");
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Client *c = w->data;

	(void)loop;
	(void)revents;
	if (!c->ssl) {
		read_plain(c);
		return;
	}
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
	read_tls(c);
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
			read_tls(c);
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
		client_send_error(c, -1, ERR_AUTH_FAILED, "AuthenticationFailed", msg, NULL);
		client_close(c, "authentication timed out");
	}
}

Client *client_new(const struct client_env *env, int fd, const char *peer, const struct client_transport *t)
{
	Client *c = calloc(1, sizeof(*c));

	if (!c || !(c->fr = frame_reader_new((size_t)env->cv->max_frame_bytes))) {
		free(c);
		if (t)
			SSL_free(t->ssl);
		close(fd);
		return NULL;
	}
	c->env = *env;
	c->fd = fd;
	c->id = next_id++;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->state = CS_OPEN;
	if (t && t->ssl) {
		c->ssl = t->ssl;
		c->state = CS_HANDSHAKE;
	}
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
