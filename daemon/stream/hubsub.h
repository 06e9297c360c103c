/*
 * hubsub.h - the hub's private state (struct hub, struct sub), shared by
 * hub.c, which owns it, hubview.c, which reads it for /metrics and the
 * admin socket, hubcount.c, which keeps the count requests in flight,
 * hubguard.c, which keeps the filter guards, hubpark.c, which parks the
 * guarded subscriptions at the head, hubsave.c, which writes durable
 * positions, and hubmark.c, which sends bookmarks.  No other module
 * includes it.
 */
#ifndef NVSRELAY_HUBSUB_H
#define NVSRELAY_HUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "client.h"
#include "conf.h"
#include "event.h"
#include "filter.h"
#include "source.h"
#include "subtab.h"
#include "token.h"

enum sub_state { SUB_LOADING, SUB_ACTIVE, SUB_DEAD };

/* Distinct guarded fields the hub reads once per ring event (hubguard.c). */
#define HUB_GUARD_SLOTS 4

struct hub_guard {
	FilterKey *key;               /* NULL: free */
	char *path;
	size_t refs;                  /* subscriptions guarded by this field */
	size_t parked;                /* of them parked (hubpark.c) */
	uint32_t gen;                 /* names this use of the slot in ring_guard */
};

struct sub {
	struct sub *next, *prev;      /* hub list */
	struct sub *cnext, *cprev;    /* the same client's others (hub.byclient has the first) */
	struct sub *pnext, *pprev;    /* hub.awake or hub.parked */
	struct sub *bnext, *bprev;    /* parked: its bucket (hub.buckets has the first) */
	bool parked;                  /* at hub.park_pos, pos is stale (hubpark.c) */
	struct hub *hub;
	Client *client;
	long long sid;
	enum event_table table;
	char *consumer;               /* durable name, or NULL */
	bool before;                  /* wants fullDocumentBeforeChange */
	Filter *filter;               /* compiled pipeline, NULL: everything */
	int guard;                    /* hub.guard slot of its filter's guard, -1: none */
	uint64_t guard_hash;          /* the string the guard wants, hashed */
	enum sub_state state;
	bool reading;                 /* catch-up page in flight */
	bool catching;                /* behind the ring: served by catch-up reads */
	size_t page_bytes;            /* output queued by its last catch-up page */
	bool saving;                  /* position write in flight */
	bool dirty;                   /* acked moved since the last write */
	bool shutdown_wait;           /* shutdown waits for this write */
	bool shutdown_seen;           /* shutdown sent its last bookmark */
	struct token pos;             /* passed up to here */
	struct token sent;            /* position of the last frame sent */
	ev_tstamp bookmarked;         /* when the last bookmark was sent */
	struct token acked;           /* acknowledged (durable only) */
	ev_tstamp acked_at;           /* when acked last moved */
	struct token last_event;      /* position of the last event sent */
	struct token saved;           /* durable position written or being written */
	bool standby;                 /* waits for the consumer's holder to go */
	bool fenced;                  /* took over a consumer: start no earlier than */
	struct token fence;           /* ... what the previous holder acknowledged */
};

struct hub {
	struct ev_loop *loop;
	const struct conf_values *cv;
	const struct source *src;     /* catch-up pages and positions, or NULL */
	struct sub *subs;
	struct sub *awake;            /* visited when the head moves */
	struct sub *parked;           /* not visited: woken by their guard's value */
	Subtab *buckets;              /* (guard slot, value hash) -> first parked sub */
	struct token park_pos;        /* where every parked subscription is */
	struct sub *dead;             /* detached, freed once no callback is pending */
	struct hub_count *counts;     /* count requests waiting for the source (hubcount.c) */
	Subtab *bysid;                /* (client, sid) -> live sub: acks in constant time */
	Subtab *byclient;             /* (client, 0) -> its oldest live sub, the rest by cnext */
	size_t nsubs;
	size_t ncatching;             /* subscriptions with catching set */
	struct event **ring;
	size_t cap, first, count;
	size_t unparsed;              /* ring index from which trees may be cached */
	ev_tstamp *ring_time;         /* when each ring event was read */
	struct hub_guard guard[HUB_GUARD_SLOTS];
	uint32_t guard_gen;
	struct guard_val *ring_guard; /* per ring slot and guard slot; allocated on first use */
	struct token ring_start;      /* position just before ring[first] */
	struct token head;            /* live position: everything up to it read */
	bool have_head;
	bool closing;                 /* shutting down or freed: no standby promoted */
	ev_timer tick;                /* bookmarks and position writes */
	double bookmark_every;        /* a subscription's bookmarks at most this often */
	ev_idle mark_idle;            /* the bookmark sweep, a slice per loop turn */
	struct sub *mark_next;        /* where the sweep goes on, NULL: no sweep */
	double mark_phase;            /* the last subscription's bookmark phase */
	void (*shutdown_done)(void *);
	void *shutdown_arg;
	int shutdown_pending;
};

struct event *hub_ring_at(const struct hub *h, size_t i);
/* hubsave.c: s's durable position written now if it moved (hub_save); every
 * consumer's that moved, in one write where the source can (hub_save_all,
 * the flush). */
void hub_save(struct sub *s);
void hub_save_all(struct hub *h);
/* hubguard.c: s's filter's guard takes (or shares) a slot, or s->guard is
 * -1; detach gives it back.  forget: ring slot (physical index) holds a
 * new event.  skips: ring event i certainly fails s's filter. */
void hub_guard_attach(struct hub *h, struct sub *s);
void hub_guard_detach(struct hub *h, struct sub *s);
void hub_guard_forget(struct hub *h, size_t slot);
bool hub_guard_skips(struct hub *h, const struct sub *s, size_t i);
/* What ring event i holds in guard slot k: FILTER_KEY_STRING (*hash set),
 * FILTER_KEY_NONE, or FILTER_KEY_ANY (also for an event that cannot be
 * parsed). */
int hub_guard_value(struct hub *h, int k, size_t i, uint64_t *hash);
void hub_guard_free(struct hub *h);
/* hubpark.c: where s is (s->pos is stale while s is parked); the bucket
 * table (init, free); s joins the visited subscriptions (link) or leaves
 * the hub (unlink); s parks if it is guarded and at the head (try); the
 * head moved: wake the subscriptions the new events' guard values name,
 * the others are at the head (wake). */
const struct token *hub_pos(const struct sub *s);
int hub_park_init(struct hub *h);
void hub_park_free(struct hub *h);
void hub_park_link(struct hub *h, struct sub *s);
void hub_park_unlink(struct hub *h, struct sub *s);
void hub_park_try(struct hub *h, struct sub *s);
void hub_park_wake(struct hub *h);
/* hubmark.c: a bookmark to s now (hub_bookmark); s's bookmarks start at
 * a phase of their own (mark_phase, after its first); the flush tick's
 * sweep (sweep); s leaves the hub list (forget); no sweep (stop). */
void hub_bookmark(struct sub *s);
void hub_mark_phase(struct sub *s);
void hub_mark_init(struct hub *h);
void hub_mark_sweep(struct hub *h);
void hub_mark_forget(struct hub *h, const struct sub *s);
void hub_mark_stop(struct hub *h);
/* c's oldest live subscription (then by cnext), or NULL. */
struct sub *hub_client_first(const struct hub *h, const Client *c);
/* Index of the first ring event with a position after pos. */
size_t hub_ring_after(const struct hub *h, const struct token *pos);
/* What a durable consumer has finished: its acknowledged position, and
 * once every event sent is acknowledged, everything the subscription has
 * passed since (other tables, filtered out, idle ticks) as far as a frame
 * told the client: a stored position is always one it was sent.  So a consumer
 * that only acks events still moves forward, and holds no history back,
 * through hours of nothing to deliver. */
struct token hub_durable_pos(const struct sub *s);
/* hubcount.c: c is closing, its counts in flight are answered to nobody;
 * the hub is freed, every count in flight belongs to nobody. */
void hub_count_client_gone(struct hub *h, Client *c);
void hub_count_free_all(struct hub *h);

#endif
