/*
 * hubpark.c - parked subscriptions: a guarded subscription (hubguard.c)
 * that has passed everything up to the head waits in a bucket named by
 * the value its guard wants, at one position all parked subscriptions
 * share (hub.park_pos).  When the source moves the head, only the buckets
 * the new events' guard values name wake; every other parked subscription
 * is at the new head without being looked at.
 *
 * A thousand agents each watching their own node were a thousand
 * subscriptions visited after every tick, each visit a few cache misses:
 * a quarter of the relay's samples at 1,000 ev/s.  Now a tick costs the
 * subscriptions its events may concern.  An event whose guard field is
 * not a plain string (an array on the path, an event that cannot be
 * parsed) wakes every parked subscription of that field, and a ring that
 * dropped events not yet looked at wakes them all: waking too many costs
 * a visit, never an event.  hub.c calls this; a parked subscription's
 * s->pos is stale, so readers of its position use hub_pos.
 */
#include <stdlib.h>

#include "hubsub.h"
#include "subtab.h"

const struct token *hub_pos(const struct sub *s)
{
	return s->parked ? &s->hub->park_pos : &s->pos;
}

int hub_park_init(struct hub *h)
{
	h->buckets = subtab_new();
	return h->buckets ? 0 : -1;
}

void hub_park_free(struct hub *h)
{
	subtab_free(h->buckets);
	h->buckets = NULL;
}

static void list_add(struct sub **head, struct sub *s)
{
	s->pprev = NULL;
	s->pnext = *head;
	if (*head)
		(*head)->pprev = s;
	*head = s;
}

static void list_del(struct sub **head, struct sub *s)
{
	if (s->pprev)
		s->pprev->pnext = s->pnext;
	else
		*head = s->pnext;
	if (s->pnext)
		s->pnext->pprev = s->pprev;
	s->pnext = s->pprev = NULL;
}

void hub_park_link(struct hub *h, struct sub *s)
{
	list_add(&h->awake, s);
}

/* The bucket of subscriptions whose guard slot k wants a value of this hash. */
static const void *bucket_owner(struct hub *h, int k)
{
	return &h->guard[k];
}

static void unpark(struct hub *h, struct sub *s)
{
	const void *owner = bucket_owner(h, s->guard);

	if (s->bprev)
		s->bprev->bnext = s->bnext;
	else if (s->bnext)
		subtab_set(h->buckets, owner, (long long)s->guard_hash, s->bnext);
	else
		subtab_del(h->buckets, owner, (long long)s->guard_hash);
	if (s->bnext)
		s->bnext->bprev = s->bprev;
	s->bnext = s->bprev = NULL;
	s->pos = h->park_pos;
	s->parked = false;
	h->guard[s->guard].parked--;
	list_del(&h->parked, s);
	list_add(&h->awake, s);
}

void hub_park_unlink(struct hub *h, struct sub *s)
{
	if (s->parked)
		unpark(h, s);
	list_del(&h->awake, s);
}

void hub_park_try(struct hub *h, struct sub *s)
{
	struct sub *first;
	const void *owner;

	if (s->parked || s->state != SUB_ACTIVE || s->reading || s->catching || s->guard < 0 ||
	    token_cmp(&s->pos, &h->head) != 0 || token_cmp(&h->park_pos, &h->head) != 0)
		return;
	owner = bucket_owner(h, s->guard);
	first = subtab_get(h->buckets, owner, (long long)s->guard_hash);
	if (!first) {
		if (subtab_put(h->buckets, owner, (long long)s->guard_hash, s) < 0)
			return;   /* stays awake: visited, as before */
		s->bnext = s->bprev = NULL;
	} else {
		s->bprev = first;
		s->bnext = first->bnext;
		if (first->bnext)
			first->bnext->bprev = s;
		first->bnext = s;
	}
	list_del(&h->awake, s);
	list_add(&h->parked, s);
	s->parked = true;
	h->guard[s->guard].parked++;
}

/* Every parked subscription of guard slot k (k < 0: of every slot). */
static void wake_all(struct hub *h, int k)
{
	struct sub *s, *next;

	for (s = h->parked; s; s = next) {
		next = s->pnext;
		if (k < 0 || s->guard == k)
			unpark(h, s);
	}
}

static void wake_bucket(struct hub *h, int k, uint64_t hash)
{
	struct sub *s;

	while ((s = subtab_get(h->buckets, bucket_owner(h, k), (long long)hash)))
		unpark(h, s);
}

void hub_park_wake(struct hub *h)
{
	if (h->parked && (token_cmp(&h->park_pos, &h->ring_start) < 0 || h->park_pos.gen != h->head.gen))
		wake_all(h, -1);   /* events gone from the ring unread, or a new stream */
	for (size_t i = h->parked ? hub_ring_after(h, &h->park_pos) : h->count; i < h->count && h->parked; i++) {
		for (int k = 0; k < HUB_GUARD_SLOTS; k++) {
			uint64_t hash;

			if (!h->guard[k].parked)
				continue;
			switch (hub_guard_value(h, k, i, &hash)) {
			case FILTER_KEY_NONE:
				break;   /* no string there: no filter of slot k matches */
			case FILTER_KEY_STRING:
				wake_bucket(h, k, hash);
				break;
			default:
				wake_all(h, k);
			}
		}
	}
	h->park_pos = h->head;
}
