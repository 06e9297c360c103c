/*
 * hub.c - subscriptions, the ring of recent events, and delivery.
 *
 * Every subscription is a cursor: the position of the last change it has
 * passed (delivered, or skipped because it belongs to another table).  The
 * ring holds the most recent events in position order and covers the
 * positions (ring_start, head].  A subscription at or after ring_start is
 * served from the ring; one before it (a resume from an old token, or a
 * reader too slow for the ring) is served page by page from PostgreSQL
 * through its source's read_page (source.h) until it reaches the ring.
 * Since both paths read the same tick batches in the same order, the
 * switch has no gap and no duplicate.  Output per client is bounded: the
 * pump stops at a high-water mark and resumes when the client drains,
 * falling back to catch-up reads if the ring moved on meanwhile.  A catch-up reader asks for its next page
 * as soon as the previous one is queued, while a few pages' worth are
 * waiting at most, so the query runs while the client reads: query and
 * transmission overlap instead of taking turns.
 *
 * Durable subscriptions (a consumer name) keep the acknowledged position
 * and write it to resume_tokens at most every ack_flush_ms, all of them in
 * one write (hubsave.c).  Filters share reads of the fields they compare
 * (hubguard.c), and a guarded subscription at the head is only looked at
 * when an event may concern it (hubpark.c); bookmarks go out a slice per
 * loop turn (hubmark.c).  A consumer has
 * one reader at a time: a plain watch takes the name over (the holder ends
 * with Interrupted), a standby watch waits and is promoted, from the
 * acknowledged position, when the holder goes.  Start positions beyond the
 * head are checked with the source: a token must name a written tick.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "client.h"
#include "filter.h"
#include "hub.h"
#include "hubsub.h"
#include "log.h"
#include "metrics.h"
#include "source.h"
#include "subtab.h"

/* Stop filling a client's output buffer beyond this; resume on drain. */
#define PUMP_HIGH_WATER (256 * 1024)
/* A catch-up reader keeps up to this many pages queued ahead of its client
 * (one query in flight at a time: the pages are sequential) ... */
#define CATCHUP_PAGES 4
/* ... and all catch-up readers together about this much, so a crowd of
 * them resuming at once does not multiply the daemon's memory: their
 * share shrinks, down to PUMP_HIGH_WATER each (the pump without
 * read-ahead). */
#define CATCHUP_BUDGET (64 * 1024 * 1024)
/* A subscriber that only passes changes gets a bookmark at most this
 * often (PROTOCOL.md: about once a second), or every BOOKMARK_TICKS
 * position flushes when ack_flush_ms makes those more frequent.  A
 * bookmark is a write to the client: a thousand filtered subscribers
 * bookmarked on every 200 ms flush were 5,000 TLS writes a second, more
 * than the events they got. */
#define BOOKMARK_INTERVAL 1.0
#define BOOKMARK_TICKS 5

static void pump(struct sub *s);

static const struct token *tmax(const struct token *a, const struct token *b)
{
	return token_cmp(a, b) >= 0 ? a : b;
}

static void set_catching(struct sub *s, bool on)
{
	if (s->catching == on)
		return;
	s->catching = on;
	if (on)
		s->hub->ncatching++;
	else
		s->hub->ncatching--;
}

static void sub_free(struct sub *s)
{
	filter_free(s->filter);
	free(s->consumer);
	free(s);
}

/* An event that cannot be parsed for the filter (out of memory) is sent:
 * a duplicate is tolerable, a silent drop is not.  ring_i: the event's
 * ring index, whose guard field is read once for every subscription
 * (hubguard.c); NOT_RING for a catch-up page's. */
#define NOT_RING SIZE_MAX
static bool wants(struct sub *s, struct event *ev, size_t ring_i)
{
	const cJSON *tree;

	/* TABLE_OTHER: every table (a chained relay's one stream). */
	if (ev->table != s->table && s->table != TABLE_OTHER)
		return false;
	if (!s->filter)
		return true;
	if (ring_i != NOT_RING && hub_guard_skips(s->hub, s, ring_i))
		return false;
	tree = event_tree(ev);
	return !tree || filter_match(s->filter, tree);
}

/* A client's live subscriptions are a list of their own, so what happens
 * to one connection (its socket drained, its close, its next watch) costs
 * in its own few subscriptions, not in every subscription of the daemon:
 * with a thousand subscribers, each socket drain walked all thousand. */
struct sub *hub_client_first(const Hub *h, const Client *c)
{
	return subtab_get(h->byclient, c, 0);
}

static int client_link(Hub *h, Client *c, struct sub *s)
{
	struct sub *first = hub_client_first(h, c);

	if (!first)
		return subtab_put(h->byclient, c, 0, s);
	s->cprev = first;
	s->cnext = first->cnext;
	if (first->cnext)
		first->cnext->cprev = s;
	first->cnext = s;
	return 0;
}

static void client_unlink(Hub *h, struct sub *s)
{
	if (s->cprev)
		s->cprev->cnext = s->cnext;
	else if (s->cnext)
		subtab_set(h->byclient, s->client, 0, s->cnext);
	else
		subtab_del(h->byclient, s->client, 0);
	if (s->cnext)
		s->cnext->cprev = s->cprev;
	s->cnext = s->cprev = NULL;
}

static void sub_unlink(struct sub *s)
{
	Hub *h = s->hub;

	client_unlink(h, s);
	if (s->prev)
		s->prev->next = s->next;
	else if (h->subs == s)
		h->subs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	subtab_del(h->bysid, s->client, s->sid);
	h->nsubs--;
}

/* Detaches a subscription.  Its memory is only freed by reap(), from the
 * timer, so a caller further up the stack (a pump loop, a callback) may
 * still look at s->state safely. */
static void promote(Hub *h, const struct sub *gone, bool was_active);

static void sub_kill(struct sub *s)
{
	Hub *h = s->hub;
	bool was_active = s->state == SUB_ACTIVE;

	if (s->state == SUB_DEAD)
		return;
	hub_mark_forget(h, s);
	hub_park_unlink(h, s);
	sub_unlink(s);
	set_catching(s, false);
	hub_guard_detach(h, s);   /* a dead subscription runs no filter */
	s->state = SUB_DEAD;
	s->client = NULL;
	hub_save(s);
	s->next = h->dead;
	h->dead = s;
	if (s->consumer && !s->standby)
		promote(h, s, was_active);
}

static void reap(Hub *h, bool all)
{
	struct sub **pp = &h->dead, *s;

	while ((s = *pp)) {
		if (all || (!s->reading && !s->saving)) {
			*pp = s->next;
			sub_free(s);
		} else {
			pp = &s->next;
		}
	}
}

static void send_event(struct sub *s, struct event *ev)
{
	client_send_event(s->client, s->sid, ev, s->before);
	/* Not catch-up reads: a backlog read back from PostgreSQL is lag. */
	if (!s->catching && ev->changed_at > 0)
		metrics_add(M_DELIVERY_LATENCY, NULL, ev_now(s->hub->loop) > ev->changed_at ?
			    ev_now(s->hub->loop) - ev->changed_at : 0);
	s->sent = ev->pos;
	s->last_event = ev->pos;
	metrics_add(M_EVENTS_DELIVERED, NULL, 1);
}

static void page_done(void *arg, struct event **evs, size_t n, const struct token *next,
		      int code, const char *msg)
{
	struct sub *s = arg;
	size_t i, before;

	s->reading = false;
	if (s->state == SUB_DEAD) {
		for (i = 0; i < n; i++)
			event_unref(evs[i]);
		return;
	}
	if (code) {
		if (code == ERR_HOST_UNREACHABLE) {
			/* PostgreSQL is away: the subscription waits, the client stays. */
			return;
		}
		client_send_error(s->client, s->sid, code == ERR_HISTORY_LOST ? code : ERR_CHANGE_STREAM_FATAL,
				  msg, &s->pos);
		sub_kill(s);
		return;
	}
	before = client_pending(s->client);
	for (i = 0; i < n; i++) {
		if (s->state == SUB_ACTIVE && token_cmp(&evs[i]->pos, &s->pos) > 0 &&
		    wants(s, evs[i], NOT_RING)) {
			send_event(s, evs[i]);
			s->pos = evs[i]->pos;
		}
		event_unref(evs[i]);
	}
	if (s->state != SUB_ACTIVE)
		return;
	if (client_pending(s->client) > before)
		s->page_bytes = client_pending(s->client) - before;
	s->pos = *tmax(&s->pos, next);
	pump(s);
}

/*
 * How much of s's client output may be queued when s asks for its next
 * catch-up page: a few pages, so the next query starts while the client
 * still has pages to read.  Capped at half the smaller of the hard and soft
 * output limits, so a page arriving on top neither crosses the hard limit
 * nor keeps a client that reads as fast as it can above the soft one (a
 * slow reader is still cut off by them as before), and at an even share of
 * CATCHUP_BUDGET.  Never below PUMP_HIGH_WATER, where it stood before.
 */
static size_t catchup_ahead(const struct sub *s)
{
	const struct conf_values *cv = s->hub->cv;
	size_t want = CATCHUP_PAGES * s->page_bytes;
	size_t cap = (size_t)cv->client_output_limit;
	size_t share = CATCHUP_BUDGET / (s->hub->ncatching ? s->hub->ncatching : 1);

	if (cv->client_output_soft_limit > 0 && (size_t)cv->client_output_soft_limit < cap)
		cap = (size_t)cv->client_output_soft_limit;
	if (want > cap / 2)
		want = cap / 2;
	if (want > share)
		want = share;
	return want > PUMP_HIGH_WATER ? want : PUMP_HIGH_WATER;
}

static void pump(struct sub *s)
{
	Hub *h = s->hub;
	size_t i;

	/* Parked: at the head as of the last move, and woken for anything
	 * after it that may concern it (hubpark.c). */
	if (s->state != SUB_ACTIVE || s->reading || s->parked || !h->have_head)
		return;
	if (token_cmp(&s->pos, &h->ring_start) < 0) {
		size_t ahead;

		set_catching(s, true);
		ahead = catchup_ahead(s);
		if (client_pending(s->client) >= ahead) {
			/* Ask again once it is below, not only when empty. */
			client_wake_below(s->client, ahead);
			return;
		}
		if (h->src->ops->read_page(h->src->impl, &s->pos, s->table, page_done, s) == 0)
			s->reading = true;
		return;
	}
	set_catching(s, false);
	for (i = hub_ring_after(h, &s->pos); i < h->count; i++) {
		struct event *ev = hub_ring_at(h, i);

		/* Only a send needs room in the client's output: passing what s
		 * does not want looks at s alone, and a thousand subscribers
		 * each wanting one node's events mostly pass. */
		if (!wants(s, ev, i)) {
			s->pos = ev->pos;
			continue;
		}
		if (client_pending(s->client) >= PUMP_HIGH_WATER)
			return;
		send_event(s, ev);
		if (s->state != SUB_ACTIVE)
			return;   /* the send closed the client */
		s->pos = ev->pos;
	}
	s->pos = *tmax(&s->pos, &h->head);
}

static void pump_all(Hub *h)
{
	struct sub *s, *next;

	hub_park_wake(h);
	for (s = h->awake; s; s = next) {
		next = s->pnext;
		pump(s);
		hub_park_try(h, s);
		/* Closing a client kills all its subscriptions, maybe next too. */
		if (next && next->state == SUB_DEAD)
			next = h->awake;
	}
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Hub *h = w->data;

	(void)loop;
	(void)revents;
	reap(h, false);
	hub_save_all(h);
	hub_mark_sweep(h);
}

/* The flush tick (ack_flush_ms, at most BOOKMARK_INTERVAL) and the
 * bookmark spacing it allows. */
static void set_intervals(Hub *h)
{
	double iv = h->cv->ack_flush_ms / 1000.0;

	if (iv > BOOKMARK_INTERVAL)
		iv = BOOKMARK_INTERVAL;
	h->tick.repeat = iv;
	h->bookmark_every = BOOKMARK_TICKS * iv < BOOKMARK_INTERVAL ? BOOKMARK_TICKS * iv : BOOKMARK_INTERVAL;
}

Hub *hub_new(struct ev_loop *loop, const struct conf_values *cv)
{
	Hub *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->loop = loop;
	h->cv = cv;
	h->cap = cv->ring_events > 0 ? (size_t)cv->ring_events : 1;
	h->ring = calloc(h->cap, sizeof(*h->ring));
	h->ring_time = calloc(h->cap, sizeof(*h->ring_time));
	h->bysid = subtab_new();
	h->byclient = subtab_new();
	if (!h->ring || !h->ring_time || !h->bysid || !h->byclient || hub_park_init(h) < 0) {
		hub_park_free(h);
		subtab_free(h->bysid);
		subtab_free(h->byclient);
		free(h->ring);
		free(h->ring_time);
		free(h);
		return NULL;
	}
	ev_timer_init(&h->tick, tick_cb, 0.2, 0.2);
	h->tick.data = h;
	hub_mark_init(h);
	set_intervals(h);
	ev_timer_set(&h->tick, h->tick.repeat, h->tick.repeat);
	ev_timer_start(loop, &h->tick);
	return h;
}

/* Drops every event of the ring. */
static void ring_clear(Hub *h)
{
	for (size_t i = 0; i < h->count; i++)
		event_unref(hub_ring_at(h, i));
	h->first = h->count = h->unparsed = 0;
}

void hub_free(Hub *h)
{
	if (!h)
		return;
	ev_timer_stop(h->loop, &h->tick);
	hub_mark_stop(h);
	h->closing = true;
	while (h->subs)
		sub_kill(h->subs);
	reap(h, true);
	hub_guard_free(h);
	hub_count_free_all(h);
	ring_clear(h);
	free(h->ring);
	free(h->ring_time);
	subtab_free(h->bysid);
	subtab_free(h->byclient);
	hub_park_free(h);
	free(h);
}

void hub_set_source(Hub *h, const struct source *src)
{
	h->src = src;
}

void hub_set_head(Hub *h, const struct token *head)
{
	if (!h->have_head) {
		h->ring_start = *head;
		h->have_head = true;
	}
	if (token_cmp(head, &h->head) > 0 || h->head.gen != head->gen)
		h->head = *head;
	pump_all(h);
	/* Live delivery is done: the ring keeps text; a lagging filtered
	 * subscriber parses again when it gets there. */
	for (; h->unparsed < h->count; h->unparsed++)
		event_drop_tree(hub_ring_at(h, h->unparsed));
}

void hub_publish(Hub *h, struct event *ev)
{
	size_t slot;

	if (h->count == h->cap) {
		struct event *old = h->ring[h->first];
		if (h->unparsed > 0)
			h->unparsed--;
		h->ring_start = old->pos;
		event_unref(old);
		h->first = (h->first + 1) % h->cap;
		h->count--;
	}
	slot = (h->first + h->count) % h->cap;
	hub_guard_forget(h, slot);
	h->ring[slot] = ev;
	h->ring_time[slot] = ev_now(h->loop);
	h->count++;
	h->head = *tmax(&h->head, &ev->pos);
}

/* Every position a subscription holds is at or before the lost head, so
 * each of them has a gap ahead: none may walk on into the new head's
 * stream.  Standbys go too (their consumer's position is as lost), and
 * none is promoted meanwhile. */
size_t hub_lose_head(Hub *h, const char *msg)
{
	size_t n = 0;
	bool closing = h->closing;

	h->closing = true;
	while (h->subs) {
		struct sub *s = h->subs;
		client_send_error(s->client, s->sid, ERR_HISTORY_LOST, msg,
				  s->state == SUB_ACTIVE ? hub_pos(s) : NULL);
		sub_kill(s);
		n++;
	}
	h->closing = closing;
	ring_clear(h);
	h->have_head = false;
	memset(&h->head, 0, sizeof(h->head));
	return n;
}

static struct sub *find_sub(Hub *h, Client *c, long long sid)
{
	return subtab_get(h->bysid, c, sid);
}

static void activate(struct sub *s, const struct token *start)
{
	s->pos = *start;
	s->sent = *start;
	s->acked = *start;
	s->acked_at = ev_now(s->hub->loop);
	s->last_event = *start;
	s->saved = *start;
	s->state = SUB_ACTIVE;
	/* The first bookmark confirms the subscription and gives a token to
	 * resume from even if nothing ever matches. */
	hub_bookmark(s);
	/* A bookmark past client_output_limit closed the client and killed s. */
	if (s->state == SUB_DEAD)
		return;
	hub_mark_phase(s);
	if (s->consumer) {
		s->dirty = true;
		hub_save(s);
	}
	log_info("subscription started client=c%llu sid=%lld table=%s consumer=%s",
		 (unsigned long long)client_id(s->client), s->sid,
		 s->table == TABLE_HEALTH_EVENTS ? "health_events" : "maintenance_events",
		 LOGQ(s->consumer ? s->consumer : ""));
	pump(s);
}

static void refuse_start(struct sub *s, int status, const char *msg)
{
	int code = ERR_HOST_UNREACHABLE;

	if (status == -ESTALE)
		code = ERR_HISTORY_LOST;
	else if (status == -EINVAL)
		code = ERR_CHANGE_STREAM_FATAL;
	else if (status == -ENOENT)
		code = ERR_INVALID_RESUME_TOKEN;
	else if (status == -EACCES)
		code = ERR_UNAUTHORIZED;   /* a chained relay's upstream refused the name */
	client_send_error(s->client, s->sid, code, msg, NULL);
	sub_kill(s);
}

static void start_checked(void *arg, int status, const struct token *pos, const char *msg)
{
	struct sub *s = arg;

	s->reading = false;
	if (s->state == SUB_DEAD)
		return;
	if (status < 0)
		refuse_start(s, status, msg ? msg : "the start position names no tick written in this generation");
	else
		activate(s, pos);
}

/* Starts s at pos, which must be a position that exists: at or before the
 * head, or (another relay of the database may be a tick ahead) a tick the
 * source has written.  A forged token far ahead would otherwise make the
 * consumer skip every change up to it. */
static void start_at(struct sub *s, const struct token *pos)
{
	Hub *h = s->hub;
	int r;

	if (token_cmp(pos, &h->head) <= 0) {
		activate(s, pos);
		return;
	}
	if (!h->src || !h->src->ops->position_exists) {
		/* A chained relay cannot ask the database; its upstream may hold
		 * the position before it does, so the client is told to retry. */
		refuse_start(s, -EAGAIN, "the start position is ahead of this relay's stream; retry");
		return;
	}
	r = h->src->ops->position_exists(h->src->impl, pos, start_checked, s);
	if (r == 0) {
		s->reading = true;
	} else if (r == -ENOENT) {
		refuse_start(s, r, "the start position names no tick written in this generation");
	} else {
		refuse_start(s, r, "PostgreSQL unavailable, retry");
	}
}

static void position_loaded(void *arg, int status, const struct token *pos, const char *msg)
{
	struct sub *s = arg;
	Hub *h = s->hub;

	s->reading = false;
	if (s->state == SUB_DEAD)
		return;
	if (status == -ENOENT) {
		activate(s, s->fenced ? &s->fence : &h->head);
	} else if (status < 0) {
		refuse_start(s, status, msg);
	} else if (pos->gen != h->head.gen) {
		client_send_error(s->client, s->sid, ERR_HISTORY_LOST,
				  "stored position belongs to another database or changelog generation", NULL);
		sub_kill(s);
	} else {
		/* The previous holder's last acks may still be on their way to
		 * resume_tokens: never start before them. */
		start_at(s, s->fenced ? tmax(pos, &s->fence) : pos);
	}
}

/* Durable consumer fencing: one live subscription per consumer name.  The
 * newcomer wins (the old connection is usually a dead peer not yet noticed)
 * and starts no earlier than what the old one acknowledged; the old one is
 * told why.  Standbys stay.  Stored positions never move backwards (the
 * source's save). */
static void take_over(Hub *h, struct sub *s)
{
	struct sub *o, *next;
	char msg[320];

	for (o = h->subs; o; o = next) {
		next = o->next;
		if (o == s || o->standby || !o->consumer || strcmp(o->consumer, s->consumer) != 0)
			continue;
		if (o->state == SUB_ACTIVE) {
			struct token done = hub_durable_pos(o);
			if (!s->fenced || token_cmp(&done, &s->fence) > 0) {
				s->fence = done;
				s->fenced = true;
			}
		}
		snprintf(msg, sizeof(msg), "consumer '%s' was taken over by another subscription", o->consumer);
		log_notice("consumer taken over consumer=%s from=c%llu to=c%llu", LOGQ(o->consumer),
			   (unsigned long long)client_id(o->client), (unsigned long long)client_id(s->client));
		client_send_error(o->client, o->sid, ERR_INTERRUPTED, msg, &o->sent);
		sub_kill(o);
		if (next && next->state == SUB_DEAD)
			next = h->subs;
	}
	/* A holder that has just left may still be writing its last position
	 * (a component restarting right after its last ack): the load of the
	 * stored one could overtake that write, so start no earlier either.
	 * Standbys never write, so only former holders fence. */
	for (o = h->dead; o; o = o->next) {
		if (o->saving && o->consumer && strcmp(o->consumer, s->consumer) == 0) {
			struct token done = hub_durable_pos(o);
			if (!s->fenced || token_cmp(&done, &s->fence) > 0) {
				s->fence = done;
				s->fenced = true;
			}
		}
	}
}

/* The consumer's holder, other than s: a live subscription that is no standby. */
static bool has_holder(const Hub *h, const struct sub *s)
{
	for (const struct sub *o = h->subs; o; o = o->next)
		if (o != s && !o->standby && o->consumer && strcmp(o->consumer, s->consumer) == 0)
			return true;
	return false;
}

static void load_start(struct sub *s)
{
	int r = s->hub->src->ops->load_position(s->hub->src->impl, s->consumer, position_loaded, s);

	if (r < 0) {
		client_send_error(s->client, s->sid, ERR_HOST_UNREACHABLE, "PostgreSQL unavailable, retry", NULL);
		sub_kill(s);
		return;
	}
	s->reading = true;
}

/* gone held its consumer and was detached: the oldest standby of that name
 * (the list is newest first) starts from what gone acknowledged, or from the
 * stored position if that is further. */
static void promote(Hub *h, const struct sub *gone, bool was_active)
{
	struct sub *t = NULL;

	if (h->closing || !h->src || has_holder(h, gone))
		return;
	for (struct sub *o = h->subs; o; o = o->next)
		if (o->standby && strcmp(o->consumer, gone->consumer) == 0)
			t = o;
	if (!t)
		return;
	t->standby = false;
	if (was_active) {
		t->fence = hub_durable_pos(gone);
		t->fenced = true;
	}
	log_notice("standby took over consumer=%s to=c%llu", LOGQ(t->consumer),
		   (unsigned long long)client_id(t->client));
	load_start(t);
}

int hub_watch(Hub *h, Client *c, const struct watch_req *req)
{
	struct sub *s;
	int r;

	if (find_sub(h, c, req->sid)) {
		client_send_error(c, req->sid, ERR_BAD_VALUE, "sid already in use", NULL);
		filter_free(req->filter);
		return -EEXIST;
	}
	if (!h->have_head || !h->src) {
		client_send_error(c, req->sid, ERR_HOST_UNREACHABLE,
				  "not ready: PostgreSQL not reached yet", NULL);
		filter_free(req->filter);
		return -EAGAIN;
	}
	if (req->has_resume && req->resume.gen != h->head.gen) {
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "resume token belongs to another database or changelog generation (this one is %08x)",
			 (unsigned)h->head.gen);
		client_send_error(c, req->sid, ERR_HISTORY_LOST, msg, NULL);
		filter_free(req->filter);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s)
		s->guard = -1;
	if (!s || (req->consumer && !(s->consumer = strdup(req->consumer))) ||
	    subtab_put(h->bysid, c, req->sid, s) < 0 || client_link(h, c, s) < 0) {
		if (s && subtab_get(h->bysid, c, req->sid) == s)
			subtab_del(h->bysid, c, req->sid);
		if (s)
			free(s->consumer);
		free(s);
		client_send_error(c, req->sid, ERR_BAD_VALUE, "out of memory", NULL);
		filter_free(req->filter);
		return -ENOMEM;
	}
	s->hub = h;
	s->client = c;
	s->sid = req->sid;
	/* A sid used before on this connection: the error frame of a drop
	 * must not name where the old subscription got to. */
	client_sid_reset(c, s->sid);
	s->table = req->table;
	s->before = req->before;
	s->filter = req->filter;
	hub_guard_attach(h, s);
	s->state = SUB_LOADING;
	s->next = h->subs;
	if (h->subs)
		h->subs->prev = s;
	h->subs = s;
	hub_park_link(h, s);
	h->nsubs++;

	if (s->consumer && req->standby && has_holder(h, s)) {
		char frame[64];
		int n = snprintf(frame, sizeof(frame), "{\"op\":\"standby\",\"sid\":%lld}\n", s->sid);
		s->standby = true;
		log_info("subscription standing by client=c%llu sid=%lld consumer=%s",
			 (unsigned long long)client_id(c), s->sid, LOGQ(s->consumer));
		client_send(c, frame, (size_t)n);
		return 0;
	}
	if (s->consumer)
		take_over(h, s);
	/* The old holder may be this very client: the frame telling it so can
	 * pass client_output_limit and close it, s included. */
	if (s->state == SUB_DEAD)
		return 0;
	if (req->has_resume) {
		start_at(s, &req->resume);
		return 0;
	}
	if (req->has_event_id)
		r = h->src->ops->position_of_event(h->src->impl, req->event_id, position_loaded, s);
	else if (req->start_at)
		r = h->src->ops->position_at_time(h->src->impl, req->start_at, position_loaded, s);
	else if (s->consumer) {
		load_start(s);
		return 0;
	} else {
		activate(s, &h->head);
		return 0;
	}
	if (r < 0) {
		client_send_error(c, s->sid, ERR_HOST_UNREACHABLE,
				  "PostgreSQL unavailable, retry", NULL);
		sub_kill(s);
		return -EAGAIN;
	}
	s->reading = true;
	return 0;
}

int hub_ack(Hub *h, Client *c, long long sid, const struct token *tok)
{
	struct sub *s = find_sub(h, c, sid);

	if (!s || s->state != SUB_ACTIVE) {
		client_send_error(c, sid, ERR_BAD_VALUE, "ack for an unknown sid", NULL);
		return -ENOENT;
	}
	/* Only what was sent: an ack must not move a durable position past
	 * what the consumer has seen. */
	if (tok->gen != h->head.gen || token_cmp(tok, &s->sent) > 0) {
		client_send_error(c, sid, ERR_BAD_VALUE,
				  "ack token is not a position this subscription was sent", &s->sent);
		return -EINVAL;
	}
	metrics_add(M_ACKS, NULL, 1);
	if (token_cmp(tok, &s->acked) > 0) {
		s->acked = *tok;   /* written by the flush timer */
		s->acked_at = ev_now(h->loop);
	}
	return 0;
}

int hub_unwatch(Hub *h, Client *c, long long sid)
{
	struct sub *s = find_sub(h, c, sid);

	if (!s) {
		client_send_error(c, sid, ERR_BAD_VALUE, "unwatch for an unknown sid", NULL);
		return -ENOENT;
	}
	sub_kill(s);
	return 0;
}

void hub_client_gone(Hub *h, Client *c)
{
	struct sub *s;

	while ((s = hub_client_first(h, c)))
		sub_kill(s);
	hub_count_client_gone(h, c);
}

void hub_client_error(Hub *h, Client *c, int code, const char *msg)
{
	struct token tok;

	for (struct sub *s = hub_client_first(h, c); s; s = s->cnext)
		client_send_error(c, s->sid, code, msg, client_delivered(c, s->sid, &tok) ? &tok : NULL);
}

void hub_client_writable(Hub *h, Client *c)
{
	struct sub *s, *next;

	for (s = hub_client_first(h, c); s; s = next) {
		next = s->cnext;
		pump(s);
		/* A send that closed the client killed all of its subscriptions. */
		if (next && next->state == SUB_DEAD)
			next = hub_client_first(h, c);
	}
}

/* Shutdown waits for the position writes in flight on list. */
static void await_saves(Hub *h, struct sub *list)
{
	for (struct sub *s = list; s; s = s->next) {
		if (s->saving && !s->shutdown_wait) {
			s->shutdown_wait = true;
			h->shutdown_pending++;
		}
	}
}

void hub_shutdown(Hub *h, void (*done)(void *arg), void *arg)
{
	struct sub *s, *next;

	h->shutdown_done = done;
	h->shutdown_arg = arg;
	h->closing = true;
	h->shutdown_pending = 1;
	for (s = h->subs; s; s = next) {
		next = s->next;
		if (s->shutdown_seen)
			continue;
		s->shutdown_seen = true;
		if (s->state == SUB_ACTIVE)
			hub_bookmark(s);
		hub_save(s);
		/* A bookmark that closed its client killed the client's other
		 * subscriptions, next maybe among them: start over. */
		if (next && next->state == SUB_DEAD)
			next = h->subs;
	}
	/* Every write in flight, also those of subscriptions that died. */
	await_saves(h, h->subs);
	await_saves(h, h->dead);
	if (--h->shutdown_pending == 0)
		done(arg);
}

void hub_reconfigure(Hub *h)
{
	set_intervals(h);
	ev_timer_again(h->loop, &h->tick);
}
