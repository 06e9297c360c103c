/*
 * hubmark.c - bookmarks: a subscription that passes changes without a frame
 * (other tables, filtered out, idle ticks) is told how far it got, so its
 * durable position moves even when nothing matches.
 *
 * hub.c's flush tick starts a sweep over the subscriptions; the sweep sends
 * the bookmarks that are due a slice at a time from an idle watcher, so the
 * event loop reads and delivers live events between slices.  A thousand
 * filtered subscribers falling due on one flush were a thousand TLS writes
 * in one callback: every live event that arrived meanwhile waited 15-20 ms
 * (the loaded benchmark's per-node subscribers: p99 37-40 ms against 18-21
 * without periodic bookmarks).  Each subscription's bookmarks also start at
 * a phase of its own, so subscribers that connected together do not fall
 * due on the same flush forever after.
 */
#include <ev.h>

#include "client.h"
#include "hubsub.h"
#include "metrics.h"

/* Per loop turn: bookmarks sent, and subscriptions looked at. */
#define MARK_SLICE_SENDS 16
#define MARK_SLICE_VISITS 256

void hub_bookmark(struct sub *s)
{
	const struct token *pos = hub_pos(s);

	client_send_bookmark(s->client, s->sid, pos);
	s->bookmarked = ev_now(s->hub->loop);
	s->sent = *pos;
	metrics_add(M_BOOKMARKS_SENT, NULL, 1);
}

void hub_mark_phase(struct sub *s)
{
	struct hub *h = s->hub;

	/* Golden-ratio steps spread any number of subscriptions evenly over
	 * the interval, whatever order they come and go in. */
	h->mark_phase += 0.6180339887498949;
	if (h->mark_phase >= 1.0)
		h->mark_phase -= 1.0;
	s->bookmarked -= h->mark_phase * h->bookmark_every;
}

static bool due(const struct hub *h, const struct sub *s)
{
	/* Half a flush early: due times fall between flushes. */
	return s->state == SUB_ACTIVE && !s->reading && token_cmp(hub_pos(s), &s->sent) > 0 &&
	       ev_now(h->loop) - s->bookmarked >= h->bookmark_every - h->tick.repeat / 2 &&
	       client_pending(s->client) == 0;
}

/* One slice of the sweep; false when it is over. */
static bool slice(struct hub *h)
{
	int sends = 0, visits = 0;

	while (h->mark_next && sends < MARK_SLICE_SENDS && visits < MARK_SLICE_VISITS) {
		struct sub *s = h->mark_next;

		/* Before the send: a send that closes the client kills s and
		 * maybe its successor, and hub_mark_forget moves mark_next on. */
		h->mark_next = s->next;
		visits++;
		if (due(h, s)) {
			hub_bookmark(s);
			sends++;
		}
	}
	return h->mark_next != NULL;
}

static void idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct hub *h = w->data;

	(void)revents;
	if (!slice(h))
		ev_idle_stop(loop, w);
}

void hub_mark_init(struct hub *h)
{
	ev_idle_init(&h->mark_idle, idle_cb);
	h->mark_idle.data = h;
}

void hub_mark_sweep(struct hub *h)
{
	if (h->mark_next) {
		/* A loop too busy to go idle for a whole flush interval still
		 * sends a slice per flush. */
		slice(h);
		return;
	}
	h->mark_next = h->subs;
	if (slice(h))
		ev_idle_start(h->loop, &h->mark_idle);
}

void hub_mark_forget(struct hub *h, const struct sub *s)
{
	if (h->mark_next == s)
		h->mark_next = s->next;
}

void hub_mark_stop(struct hub *h)
{
	h->mark_next = NULL;
	ev_idle_stop(h->loop, &h->mark_idle);
}
