/*
 * downlink.c - position and store requests of chained relays (downlink.h).
 *
 * A request becomes one call of the source's ops; its answer is one frame
 * tagged with the request's sid.  A request outlives nothing: when its
 * client goes, the answer is dropped but the source's call still completes
 * (a store is idempotent, and the chained relay sends it again after it
 * reconnects).  A store for a consumer subscribed here directly is refused,
 * as the admin socket's reset is: two writers of one name would fight.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "downlink.h"
#include "errors.h"
#include "log.h"
#include "request.h"

struct dreq {
	struct dreq *next, *prev;
	Downlink *d;
	Client *c;                 /* NULL once the client went */
	long long sid;
};

struct downlink {
	Hub *hub;
	const struct source *src;
	struct dreq *pending;
};

Downlink *downlink_new(Hub *hub)
{
	Downlink *d = calloc(1, sizeof(*d));

	if (d)
		d->hub = hub;
	return d;
}

static void unlink_req(struct dreq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else if (q->d && q->d->pending == q)
		q->d->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->next = q->prev = NULL;
}

void downlink_free(Downlink *d)
{
	struct dreq *q;

	if (!d)
		return;
	/* Callbacks may still come (the source is freed after us): they
	 * find a request that belongs to nobody. */
	while ((q = d->pending)) {
		unlink_req(q);
		q->d = NULL;
		q->c = NULL;
	}
	free(d);
}

void downlink_set_source(Downlink *d, const struct source *src)
{
	d->src = src;
}

void downlink_client_gone(Downlink *d, Client *c)
{
	for (struct dreq *q = d->pending; q; q = q->next)
		if (q->c == c)
			q->c = NULL;
}

/* Takes q off the list; returns its client, or NULL when there is nobody
 * to answer. */
static Client *finish(struct dreq *q)
{
	Client *c = q->c;

	unlink_req(q);
	return c;
}

static void answer_error(Client *c, long long sid, int status, const char *msg)
{
	int code = status == -ESTALE ? ERR_HISTORY_LOST : status == -EINVAL ? ERR_CHANGE_STREAM_FATAL
		 : ERR_HOST_UNREACHABLE;

	client_send_error(c, sid, code, msg && *msg ? msg : "position request failed; retry", NULL);
}

static void pos_done(void *arg, int status, const struct token *pos, const char *msg)
{
	struct dreq *q = arg;
	Client *c = finish(q);
	char buf[128], hex[TOKEN_HEX_LEN + 1];
	int n;

	if (c && status == 0) {
		token_format(pos, hex);
		n = snprintf(buf, sizeof(buf), "{\"op\":\"position\",\"sid\":%lld,\"token\":{\"_data\":\"%s\"}}\n",
			     q->sid, hex);
		client_send(c, buf, (size_t)n);
	} else if (c && status == -ENOENT) {
		n = snprintf(buf, sizeof(buf), "{\"op\":\"position\",\"sid\":%lld,\"token\":null}\n", q->sid);
		client_send(c, buf, (size_t)n);
	} else if (c) {
		answer_error(c, q->sid, status, msg);
	}
	free(q);
}

static void store_done(void *arg, int status)
{
	struct dreq *q = arg;
	Client *c = finish(q);
	char buf[64];
	int n;

	if (c && status == 0) {
		n = snprintf(buf, sizeof(buf), "{\"op\":\"stored\",\"sid\":%lld}\n", q->sid);
		client_send(c, buf, (size_t)n);
	} else if (c) {
		answer_error(c, q->sid, status, "the position was not written; retry");
	}
	free(q);
}

void downlink_request(Downlink *d, Client *c, const struct request *req)
{
	const struct source *src = d->src;
	struct dreq *q;
	int r;

	if (!src) {
		client_send_error(c, req->sid, ERR_HOST_UNREACHABLE, "not ready: the event source is not reached yet", NULL);
		return;
	}
	if (req->op == REQUEST_STORE && hub_consumer_busy(d->hub, req->consumer)) {
		client_send_error(c, req->sid, ERR_BAD_VALUE,
				  "the consumer is subscribed on this relay directly; its position is not written for another", NULL);
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		client_send_error(c, req->sid, ERR_HOST_UNREACHABLE, "out of memory; retry", NULL);
		return;
	}
	q->d = d;
	q->c = c;
	q->sid = req->sid;
	/* On the list before the call: a source may answer inside it (pgconn
	 * fails its queue at once when the send finds the connection gone),
	 * and the answer unlinks and frees q. */
	q->next = d->pending;
	if (q->next)
		q->next->prev = q;
	d->pending = q;
	if (req->op == REQUEST_STORE) {
		log_debug("chained store consumer=%s client=c%llu", LOGQ(req->consumer),
			  (unsigned long long)client_id(c));
		r = src->ops->save_position(src->impl, req->consumer, &req->ack, store_done, q);
	} else if (req->consumer) {
		r = src->ops->load_position(src->impl, req->consumer, pos_done, q);
	} else if (req->has_event_id) {
		r = src->ops->position_of_event(src->impl, req->event_id, pos_done, q);
	} else {
		r = src->ops->position_at_time(src->impl, req->start_at, pos_done, q);
	}
	if (r < 0) {
		unlink_req(q);
		free(q);
		client_send_error(c, req->sid, ERR_HOST_UNREACHABLE, "not ready: the event source is not reachable; retry",
				  NULL);
	}
}
