/*
 * upstream.c - the chained source (upstream.h).
 *
 * One live connection to the first upstream of the list that answers, with
 * one subscription (sid 0) on table "*": every table in one stream, in the
 * upstream's order, so the local ring stays in position order and the head
 * is exact.  It resumes after the local head on every reconnect, so a
 * restart or a switch to another upstream of the same database loses
 * nothing and repeats nothing.  Events are published as they arrive; the
 * head is handed to the hub once per loop iteration (a prepare watcher), so
 * the hub pumps once per read, not once per event.
 *
 * Position requests (load, store, eventID, time) travel on the same
 * connection, tagged with sids from 1 up, and stay queued across
 * reconnects: they are sent again on the next connection (all are
 * idempotent), so a local subscriber waits rather than fails while the
 * upstream is away.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "cursor.h"
#include "errors.h"
#include "fileio.h"
#include "log.h"
#include "metrics.h"
#include "upconn.h"
#include "upframe.h"
#include "upstream.h"
#include "wire.h"

#define NODE_MAX 64
#define LIVE_SID 0

enum preq_kind { P_LOAD, P_SAVE, P_EVENT, P_TIME };

struct preq {
	struct preq *next;
	long long sid;
	enum preq_kind kind;
	char *frame;               /* the request, ready to send again */
	source_pos_cb cb;
	source_done_cb done;
	void *arg;
};

struct upstream {
	struct ev_loop *loop;
	const struct conf_values *cv;
	Hub *hub;
	void (*ready)(void *ud);
	void *ud;
	char **addrs;
	size_t naddrs, cur;
	UpConnTls *tls;
	char *token;
	char node[NODE_MAX + 1];
	char client[NODE_MAX + 32];
	double timeout;
	UpConn *live;
	bool streaming;            /* the live subscription confirmed its start */
	bool have_head, head_dirty;
	struct token head;
	ev_tstamp head_at;
	uint32_t gen;
	struct preq *reqs, **reqs_tail;
	long long next_sid;
	Cursors *cursors;
	ev_timer retry;
	double backoff;
	ev_prepare prep;
	struct source src;
	uint64_t reconnects;
	ev_tstamp refused_logged_at;
};

static void connect_live(Upstream *u);

static void set_head(Upstream *u, const struct token *t)
{
	u->head = *t;
	u->head_at = ev_now(u->loop);
	u->head_dirty = true;
}

static void prep_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	Upstream *u = w->data;

	(void)loop;
	(void)revents;
	if (u->head_dirty) {
		u->head_dirty = false;
		hub_set_head(u->hub, &u->head);
	}
}

static struct preq *take_req(Upstream *u, long long sid)
{
	struct preq **pp, *q;

	for (pp = &u->reqs; (q = *pp); pp = &q->next)
		if (q->sid == sid) {
			*pp = q->next;
			if (u->reqs_tail == &q->next)
				u->reqs_tail = pp;
			return q;
		}
	return NULL;
}

static void req_free(struct preq *q)
{
	free(q->frame);
	free(q);
}

/* The upstream's consumer_owners refused a name of this node: said at most
 * once a minute, as the hub tries a refused store again at every flush. */
static void log_refused(Upstream *u, const struct preq *q, const struct upframe *f)
{
	ev_tstamp now = ev_now(u->loop);

	if (u->refused_logged_at > 0 && now - u->refused_logged_at < 60)
		return;
	u->refused_logged_at = now;
	log_err("upstream refused a consumer of this node request=%s node=%s message=%s",
		q->kind == P_SAVE ? "store" : "position", u->node, LOGQ(f->msg));
}

static void complete(Upstream *u, struct preq *q, const struct upframe *f)
{
	if (u && f->type == UPF_ERROR && f->code == ERR_UNAUTHORIZED)
		log_refused(u, q, f);
	if (q->kind == P_SAVE) {
		q->done(q->arg, f->type == UPF_STORED ? 0 : f->code == ERR_UNAUTHORIZED ? -EACCES : -EIO);
	} else if (f->type == UPF_POSITION) {
		if (f->has_token)
			q->cb(q->arg, 0, &f->tok, NULL);
		else
			q->cb(q->arg, -ENOENT, NULL, NULL);
	} else {
		int st = f->code == ERR_HISTORY_LOST ? -ESTALE : f->code == ERR_CHANGE_STREAM_FATAL ? -EINVAL
		       : f->code == ERR_UNAUTHORIZED ? -EACCES : -EAGAIN;
		q->cb(q->arg, st, NULL, f->msg);
	}
	req_free(q);
}

static void send_reqs(Upstream *u)
{
	for (struct preq *q = u->reqs; q && u->live; q = q->next)
		upconn_send(u->live, q->frame, strlen(q->frame));
}

static void schedule_retry(Upstream *u)
{
	const struct conf_values *cv = u->cv;
	double d;

	if (u->backoff <= 0)
		u->backoff = cv->reconnect_min_ms / 1000.0;
	d = u->backoff * (0.5 + (double)random() / RAND_MAX / 2);
	u->backoff *= 2;
	if (u->backoff > cv->reconnect_max_ms / 1000.0)
		u->backoff = cv->reconnect_max_ms / 1000.0;
	ev_timer_stop(u->loop, &u->retry);
	ev_timer_set(&u->retry, d, 0.);
	ev_timer_start(u->loop, &u->retry);
}

/* The live connection is over: the next upstream of the list is tried
 * (the same one when there is only one), after a backoff. */
static void live_lost(Upstream *u, const char *why)
{
	log_warning("upstream connection lost address=%s reason=%s", u->addrs[u->cur], LOGQ(why));
	u->live = NULL;
	u->streaming = false;
	u->reconnects++;
	u->cur = (u->cur + 1) % u->naddrs;
	cursors_reset(u->cursors);
	schedule_retry(u);
}

static void on_up(void *arg, UpConn *c, const char *generation)
{
	Upstream *u = arg;
	unsigned long g;
	char *end;

	(void)c;
	g = strtoul(generation, &end, 16);
	if (*generation && !*end)
		u->gen = (uint32_t)g;
}

static void live_event(Upstream *u, struct upframe *f)
{
	if (!u->have_head || token_cmp(&f->tok, &u->head) > 0 || f->tok.gen != u->head.gen) {
		hub_publish(u->hub, f->ev);
		metrics_add(M_EVENTS_READ, NULL, 1);
		set_head(u, &f->tok);
	} else {
		event_unref(f->ev);
	}
}

static void live_bookmark(Upstream *u, const struct upframe *f)
{
	if (!u->streaming) {
		u->streaming = true;
		u->backoff = 0;
		log_notice("streaming from upstream address=%s node=%s", u->addrs[u->cur], u->node);
	}
	if (!u->have_head) {
		u->have_head = true;
		u->head = f->tok;
		u->head_at = ev_now(u->loop);
		hub_set_head(u->hub, &u->head);
		u->ready(u->ud);
	} else if (token_cmp(&f->tok, &u->head) > 0 || f->tok.gen != u->head.gen) {
		set_head(u, &f->tok);
	} else {
		u->head_at = ev_now(u->loop);
	}
}

/*
 * The upstream no longer has this node's head (pruned behind its retention
 * caps, or a new changelog generation): resuming from it would be refused
 * forever.  As a relay reading PostgreSQL does (relay.c), every
 * subscription here ends with 286 and the stream starts again from the
 * upstream's head.
 */
static void head_lost(Upstream *u, const char *msg)
{
	char why[600];
	size_t n;

	snprintf(why, sizeof(why), "%s (this node relay's upstream)", msg ? msg : "history lost");
	n = hub_lose_head(u->hub, why);
	u->have_head = false;
	u->head_dirty = false;
	metrics_add(M_LIVE_POSITION_LOST, NULL, 1);
	log_err("upstream no longer has this relay's head: %zu subscription(s) ended with ChangeStreamHistoryLost;"
		" streaming on from the upstream's head", n);
}

static void on_frame(void *arg, UpConn *c, const char *line, size_t len)
{
	Upstream *u = arg;
	struct upframe f;
	struct preq *q;
	char err[200], why[400];

	if (upframe_parse(line, len, &f, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "bad frame from the upstream: %s", err);
		upconn_close(c);
		live_lost(u, why);
		return;
	}
	if (f.type == UPF_EVENT && f.sid == LIVE_SID) {
		live_event(u, &f);
	} else if (f.type == UPF_EVENT) {
		event_unref(f.ev);
	} else if (f.type == UPF_BOOKMARK && f.sid == LIVE_SID) {
		live_bookmark(u, &f);
	} else if (f.type == UPF_ERROR && (f.sid == LIVE_SID || f.sid < 0)) {
		log_err("upstream refused the live subscription code=%d message=%s", f.code, LOGQ(f.msg));
		if (f.code == ERR_HISTORY_LOST && u->have_head)
			head_lost(u, f.msg);
		snprintf(why, sizeof(why), "error %d from the upstream", f.code);
		upconn_close(c);
		live_lost(u, why);
	} else if ((f.type == UPF_ERROR || f.type == UPF_POSITION || f.type == UPF_STORED) &&
		   (q = take_req(u, f.sid))) {
		complete(u, q, &f);
	}
}

static void on_down(void *arg, UpConn *c, const char *why)
{
	(void)c;
	live_lost(arg, why);
}

static const struct upconn_cbs live_cbs = { on_up, on_frame, on_down };

static void connect_live(Upstream *u)
{
	char hex[TOKEN_HEX_LEN + 1], *frame = NULL, err[128];
	struct upconn_opts o = {
		.addr = u->addrs[u->cur], .tls = u->tls, .token = u->token, .client = u->client,
		.timeout = u->timeout,
	};
	struct wire_watch w = { .sid = LIVE_SID, .table = "*", .before = "whenAvailable" };

	if (u->have_head) {
		token_format(&u->head, hex);
		w.resume_after = hex;
	}
	log_info("connecting to upstream address=%s", o.addr);
	if (wire_watch(&w, &frame, err, sizeof(err)) < 0 || !(u->live = upconn_open(u->loop, &o, &live_cbs, u)) ||
	    upconn_send(u->live, frame, strlen(frame)) < 0) {
		free(frame);
		upconn_close(u->live);
		u->live = NULL;
		log_err("cannot open the upstream connection: out of memory");
		schedule_retry(u);
		return;
	}
	free(frame);
	send_reqs(u);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	connect_live(w->data);
}

/* --- source ops ----------------------------------------------------------- */

static int add_req(Upstream *u, enum preq_kind kind, cJSON *o, source_pos_cb cb, source_done_cb done, void *arg)
{
	struct preq *q = calloc(1, sizeof(*q));
	char *frame = NULL;
	size_t n;

	if (!q || !o || !cJSON_AddStringToObject(o, "op", kind == P_SAVE ? "store" : "position") ||
	    !cJSON_AddNumberToObject(o, "sid", (double)++u->next_sid) || !(frame = cJSON_PrintUnformatted(o)) ||
	    !(q->frame = realloc(frame, (n = strlen(frame)) + 2))) {
		free(frame);
		free(q);
		cJSON_Delete(o);
		return -ENOMEM;
	}
	cJSON_Delete(o);
	memcpy(q->frame + n, "\n", 2);
	q->sid = u->next_sid;
	q->kind = kind;
	q->cb = cb;
	q->done = done;
	q->arg = arg;
	*u->reqs_tail = q;
	u->reqs_tail = &q->next;
	if (u->live)
		upconn_send(u->live, q->frame, n + 1);
	return 0;
}

/* The name a node's consumer has in resume_tokens upstream. */
static cJSON *consumer_req(Upstream *u, const char *consumer)
{
	cJSON *o = cJSON_CreateObject();
	char name[NODE_MAX + 2 + 256];

	snprintf(name, sizeof(name), "%s/%s", u->node, consumer);
	if (o && !cJSON_AddStringToObject(o, "consumer", name)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

static int src_read_page(void *impl, const struct token *pos, enum event_table table, source_page_cb cb, void *arg)
{
	Upstream *u = impl;

	if (!u->streaming)
		return -ENOTCONN;
	return cursors_read(u->cursors, u->addrs[u->cur], pos, table, cb, arg);
}

static int src_load(void *impl, const char *consumer, source_pos_cb cb, void *arg)
{
	Upstream *u = impl;

	return add_req(u, P_LOAD, consumer_req(u, consumer), cb, NULL, arg);
}

static int src_save(void *impl, const char *consumer, const struct token *pos, source_done_cb done, void *arg)
{
	Upstream *u = impl;
	cJSON *o = consumer_req(u, consumer), *t;
	char hex[TOKEN_HEX_LEN + 1];

	token_format(pos, hex);
	if (o && (!(t = cJSON_AddObjectToObject(o, "token")) || !cJSON_AddStringToObject(t, "_data", hex))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return add_req(u, P_SAVE, o, NULL, done, arg);
}

static int src_event(void *impl, uint64_t event_id, source_pos_cb cb, void *arg)
{
	cJSON *o = cJSON_CreateObject();

	if (o && !cJSON_AddNumberToObject(o, "eventID", (double)event_id)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return add_req(impl, P_EVENT, o, cb, NULL, arg);
}

static int src_time(void *impl, const char *rfc3339, source_pos_cb cb, void *arg)
{
	cJSON *o = cJSON_CreateObject();

	if (o && !cJSON_AddStringToObject(o, "at", rfc3339)) {
		cJSON_Delete(o);
		o = NULL;
	}
	return add_req(impl, P_TIME, o, cb, NULL, arg);
}

static const struct source_ops upstream_ops = {
	.read_page = src_read_page,
	.load_position = src_load,
	.save_position = src_save,
	.position_of_event = src_event,
	.position_at_time = src_time,
};

/* --- life cycle -------------------------------------------------------------- */

static int read_token(const char *path, char **ret, char *err, size_t errlen)
{
	size_t len = 0;
	char *t;

	if (fileio_private(path, S_IRWXG | S_IRWXO, "upstream_token_file", "a token", err, errlen) < 0)
		return -EPERM;
	if (!(t = fileio_read(path, 4096, &len))) {
		snprintf(err, errlen, "upstream_token_file %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	while (len > 0 && strchr("\r\n \t", t[len - 1]))
		t[--len] = '\0';
	if (len == 0 || memchr(t, '\n', len)) {
		memset(t, 0, len);
		free(t);
		snprintf(err, errlen, "upstream_token_file %s: expected one non-empty line", path);
		return -EINVAL;
	}
	*ret = t;
	return 0;
}

static int split_addrs(Upstream *u, const char *list)
{
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");
		char **a = realloc(u->addrs, (u->naddrs + 1) * sizeof(*a));
		if (!a)
			return -ENOMEM;
		u->addrs = a;
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (!(u->addrs[u->naddrs] = strndup(p, n)))
			return -ENOMEM;
		u->naddrs++;
		p += strcspn(p, ",");
		while (*p == ',' || *p == ' ')
			p++;
	}
	return u->naddrs ? 0 : -EINVAL;
}

Upstream *upstream_new(struct ev_loop *loop, const struct conf_values *cv, Hub *hub,
		       void (*ready)(void *ud), void *ud, char *err, size_t errlen)
{
	Upstream *u = calloc(1, sizeof(*u));
	struct cursor_env ce;

	snprintf(err, errlen, "out of memory");
	if (!u)
		return NULL;
	u->loop = loop;
	u->cv = cv;
	u->hub = hub;
	u->ready = ready;
	u->ud = ud;
	u->reqs_tail = &u->reqs;
	u->timeout = cv->upstream_timeout_ms / 1000.0;
	if (*cv->node_name)
		snprintf(u->node, sizeof(u->node), "%s", cv->node_name);
	else if (gethostname(u->node, sizeof(u->node)) < 0 || !u->node[0])
		snprintf(u->node, sizeof(u->node), "node");
	u->node[NODE_MAX] = '\0';
	snprintf(u->client, sizeof(u->client), "nvsrelayd/%s", u->node);
	if (split_addrs(u, cv->upstream) < 0) {
		snprintf(err, errlen, "upstream: expected HOST:PORT[,HOST:PORT...]");
		goto fail;
	}
	if (*cv->upstream_token_file && read_token(cv->upstream_token_file, &u->token, err, errlen) < 0)
		goto fail;
	if (cv->upstream_tls &&
	    !(u->tls = upconn_tls_new(cv->upstream_ca_file, cv->upstream_cert_file, cv->upstream_key_file, err, errlen)))
		goto fail;
	ce = (struct cursor_env){ .loop = loop, .cv = cv, .tls = u->tls, .token = u->token, .client = u->client,
				  .timeout = u->timeout };
	if (!(u->cursors = cursors_new(&ce)))
		goto fail;
	u->src.ops = &upstream_ops;
	u->src.impl = u;
	ev_timer_init(&u->retry, retry_cb, 0., 0.);
	u->retry.data = u;
	ev_prepare_init(&u->prep, prep_cb);
	u->prep.data = u;
	ev_prepare_start(loop, &u->prep);
	err[0] = '\0';
	return u;
fail:
	upstream_free(u);
	return NULL;
}

void upstream_start(Upstream *u)
{
	log_notice("chained to upstream relays=%s node=%s tls=%s", u->cv->upstream, u->node, u->tls ? "on" : "off");
	connect_live(u);
}

void upstream_free(Upstream *u)
{
	struct preq *q;
	struct upframe f = { .type = UPF_ERROR, .code = ERR_HOST_UNREACHABLE };

	if (!u)
		return;
	snprintf(f.msg, sizeof(f.msg), "shutting down");
	ev_timer_stop(u->loop, &u->retry);
	ev_prepare_stop(u->loop, &u->prep);
	upconn_close(u->live);
	cursors_free(u->cursors);
	while ((q = u->reqs)) {
		u->reqs = q->next;
		complete(NULL, q, &f);
	}
	for (size_t i = 0; i < u->naddrs; i++)
		free(u->addrs[i]);
	free(u->addrs);
	if (u->token) {
		memset(u->token, 0, strlen(u->token));
		free(u->token);
	}
	upconn_tls_free(u->tls);
	free(u);
}

const struct source *upstream_source(Upstream *u)
{
	return &u->src;
}

uint32_t upstream_generation(const Upstream *u)
{
	return u->have_head ? u->head.gen : u->gen;
}

void upstream_get_status(const Upstream *u, struct upstream_status *st)
{
	memset(st, 0, sizeof(*st));
	st->ready = u->have_head;
	st->up = u->streaming;
	st->head = u->head;
	st->head_age = u->have_head ? ev_now(u->loop) - u->head_at : -1;
	st->addr = u->addrs[u->cur];
	st->reconnects = u->reconnects;
}
