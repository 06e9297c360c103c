/*
 * hubview.c - the hub as operations see it: subscription counts, the
 * durable consumers, and each subscription's lag for /metrics (ops.c) and
 * the admin socket (admin.c).  Reads the state hub.c owns (hubsub.h), and
 * holds the ring helpers both use.
 */
#include <string.h>

#include "hub.h"
#include "hubsub.h"

struct event *hub_ring_at(const Hub *h, size_t i)
{
	return h->ring[(h->first + i) % h->cap];
}

/* Index of the first ring event with a position after pos. */
size_t hub_ring_after(const Hub *h, const struct token *pos)
{
	size_t lo = 0, hi = h->count;

	/* Most callers stand among the newest few events (a pump after a
	 * publish): those are in cache, the middle of the ring is not. */
	for (size_t k = 0; k < 4 && hi > 0; k++, hi--)
		if (token_cmp(&hub_ring_at(h, hi - 1)->pos, pos) <= 0)
			return hi;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (token_cmp(&hub_ring_at(h, mid)->pos, pos) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* What a durable consumer has finished: its acknowledged position, and
 * once every event sent is acknowledged, everything the subscription has
 * passed since (other tables, filtered out, idle ticks) as far as a frame
 * told the client: a stored position is always one it was sent.  So a
 * consumer that only acks events still moves forward, and holds no history back,
 * through hours of nothing to deliver. */
struct token hub_durable_pos(const struct sub *s)
{
	if (token_cmp(&s->acked, &s->last_event) < 0 || token_cmp(&s->acked, &s->sent) >= 0)
		return s->acked;
	return s->sent;
}

size_t hub_client_subscriptions(const Hub *h, const Client *c)
{
	size_t n = 0;

	for (const struct sub *s = hub_client_first(h, c); s; s = s->cnext)
		n++;
	return n;
}

size_t hub_subscription_count(const Hub *h)
{
	return h->nsubs;
}

size_t hub_consumers(const Hub *h, const char **names, size_t max)
{
	const struct sub *s;
	size_t n = 0;

	for (s = h->subs; s && n < max; s = s->next)
		if (s->consumer && !s->standby)
			names[n++] = s->consumer;
	return n;
}

/* --- operations (ops.c, admin.c) ----------------------------------------- */

/* How far s is behind the head: the events of its table in the ring after
 * what it has finished (a durable consumer: its durable position; others:
 * what they were sent), and the age of the oldest of them. */
static void sub_lag(const Hub *h, const struct sub *s, struct hub_sub_info *si)
{
	struct token from = s->consumer ? hub_durable_pos(s) : *hub_pos(s);
	ev_tstamp now = ev_now(h->loop);

	si->lag_events = 0;
	si->lag_seconds = 0;
	si->lag_exact = s->state == SUB_ACTIVE && token_cmp(&from, &h->ring_start) >= 0;
	if (s->state != SUB_ACTIVE)
		return;
	for (size_t i = hub_ring_after(h, &from); i < h->count; i++) {
		if (hub_ring_at(h, i)->table != s->table)
			continue;
		if (si->lag_events++ == 0)
			si->lag_seconds = now - h->ring_time[(h->first + i) % h->cap];
	}
	/* Behind the ring: at least as old as everything in it. */
	if (!si->lag_exact && h->count)
		si->lag_seconds = now - h->ring_time[h->first];
}

void hub_foreach(const Hub *h, void (*fn)(void *arg, const struct hub_sub_info *si), void *arg)
{
	struct hub_sub_info si;

	for (const struct sub *s = h->subs; s; s = s->next) {
		if (s->standby)
			continue;   /* one row per consumer: its holder's */
		memset(&si, 0, sizeof(si));
		si.consumer = s->consumer;
		si.client = client_id(s->client);
		si.sid = s->sid;
		si.table = s->table;
		si.active = s->state == SUB_ACTIVE;
		si.acked = s->consumer ? s->acked : *hub_pos(s);
		si.ack_age = s->consumer ? ev_now(h->loop) - s->acked_at : 0;
		si.buffered = client_pending(s->client);
		si.conn = s->client;
		si.filter = s->filter;
		si.before = s->before;
		sub_lag(h, s, &si);
		fn(arg, &si);
	}
}

bool hub_consumer_busy(const Hub *h, const char *consumer)
{
	for (const struct sub *s = h->subs; s; s = s->next)
		if (s->consumer && strcmp(s->consumer, consumer) == 0)
			return true;
	/* A detached subscription's last position write would land after a
	 * reset and undo it. */
	for (const struct sub *s = h->dead; s; s = s->next)
		if (s->consumer && s->saving && strcmp(s->consumer, consumer) == 0)
			return true;
	return false;
}

size_t hub_ring_count(const Hub *h)
{
	return h->count;
}

