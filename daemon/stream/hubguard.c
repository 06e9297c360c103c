/*
 * hubguard.c - filter guards: the hub reads one field of a ring event once
 * for every subscription whose filter needs it equal to some string, and
 * skips the filters wanting another value without running them.
 *
 * A thousand agents each watching their own node's events are a thousand
 * filters that differ in one string; run in full, each event cost a
 * thousand walks of its document (the relay's top symbols, and a core at
 * 1,000 ev/s).  filter_guard gives a filter's condition; subscriptions with
 * the same field share a slot; each ring event keeps, per slot, what it
 * holds there (a string's hash, or that no string can equal it).  A
 * different hash is a certain mismatch; an equal one, an array, or an event
 * that cannot be parsed goes to filter_match as before, so the guard only
 * ever saves work, never changes an answer.  Slots are few: filters beyond
 * them run in full.  hub.c calls this; catch-up pages (not in the ring)
 * run the filters in full.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "filter.h"
#include "hubsub.h"

struct guard_val {
	uint32_t gen;            /* the slot's gen when read; 0: not read */
	int what;                /* FILTER_KEY_* */
	uint64_t hash;           /* FILTER_KEY_STRING: the string's */
};

/* FNV-1a: equal strings, equal hashes; the rare collision only costs a
 * filter_match. */
static uint64_t str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void slot_clear(struct hub_guard *g)
{
	filter_key_free(g->key);
	free(g->path);
	g->key = NULL;
	g->path = NULL;
	g->refs = 0;
}

void hub_guard_attach(struct hub *h, struct sub *s)
{
	const char *path, *value;
	struct hub_guard *g = NULL;

	s->guard = -1;
	if (!filter_guard(s->filter, &path, &value))
		return;
	if (!h->ring_guard && !(h->ring_guard = calloc(h->cap * HUB_GUARD_SLOTS, sizeof(*h->ring_guard))))
		return;   /* the filter runs in full */
	for (int k = 0; k < HUB_GUARD_SLOTS; k++) {
		if (h->guard[k].refs && strcmp(h->guard[k].path, path) == 0) {
			g = &h->guard[k];
			break;
		}
		if (!h->guard[k].refs && !g)
			g = &h->guard[k];
	}
	if (!g)
		return;
	if (!g->refs) {
		g->key = filter_key_new(path);
		g->path = strdup(path);
		if (!g->key || !g->path) {
			slot_clear(g);
			return;
		}
		/* A new gen: what the ring kept for the slot's last field is void. */
		if (++h->guard_gen == 0)
			++h->guard_gen;
		g->gen = h->guard_gen;
	}
	g->refs++;
	s->guard = (int)(g - h->guard);
	s->guard_hash = str_hash(value);
}

void hub_guard_detach(struct hub *h, struct sub *s)
{
	if (s->guard < 0)
		return;
	if (--h->guard[s->guard].refs == 0)
		slot_clear(&h->guard[s->guard]);
	s->guard = -1;
}

void hub_guard_forget(struct hub *h, size_t slot)
{
	if (h->ring_guard)
		memset(&h->ring_guard[slot * HUB_GUARD_SLOTS], 0, HUB_GUARD_SLOTS * sizeof(*h->ring_guard));
}

int hub_guard_value(struct hub *h, int k, size_t i, uint64_t *hash)
{
	const struct hub_guard *g = &h->guard[k];
	struct guard_val *v = &h->ring_guard[((h->first + i) % h->cap) * HUB_GUARD_SLOTS + (size_t)k];

	if (v->gen != g->gen) {
		const cJSON *tree = event_tree(hub_ring_at(h, i));
		const char *str = NULL;

		if (!tree)
			return FILTER_KEY_ANY;   /* not kept: the filter runs, and sends it */
		v->what = filter_key_read(g->key, tree, &str);
		v->hash = v->what == FILTER_KEY_STRING ? str_hash(str) : 0;
		v->gen = g->gen;
	}
	*hash = v->hash;
	return v->what;
}

bool hub_guard_skips(struct hub *h, const struct sub *s, size_t i)
{
	uint64_t hash;
	int what;

	if (s->guard < 0)
		return false;
	what = hub_guard_value(h, s->guard, i, &hash);
	return what == FILTER_KEY_NONE || (what == FILTER_KEY_STRING && hash != s->guard_hash);
}

void hub_guard_free(struct hub *h)
{
	for (int k = 0; k < HUB_GUARD_SLOTS; k++)
		slot_clear(&h->guard[k]);
	free(h->ring_guard);
	h->ring_guard = NULL;
}
