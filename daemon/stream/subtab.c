/*
 * subtab.c - (owner, sid) -> pointer, open addressing with linear probing
 * and backward-shift deletion (no tombstones, so a table that sees many
 * watches and unwatches never degrades).  Kept at most half full; grows by
 * doubling.  See subtab.h.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "subtab.h"

struct slot {
	const void *owner;   /* NULL: empty */
	long long sid;
	void *val;
};

struct subtab {
	struct slot *slot;
	size_t mask;         /* capacity - 1, a power of two */
	size_t n;
};

#define SUBTAB_MIN 16

static size_t hash(const void *owner, long long sid)
{
	uint64_t x = (uint64_t)(uintptr_t)owner ^ ((uint64_t)sid * 0x9e3779b97f4a7c15ULL);

	/* splitmix64's finaliser: pointers and small sids spread over all bits. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return (size_t)x;
}

Subtab *subtab_new(void)
{
	Subtab *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->slot = calloc(SUBTAB_MIN, sizeof(*t->slot));
	if (!t->slot) {
		free(t);
		return NULL;
	}
	t->mask = SUBTAB_MIN - 1;
	return t;
}

void subtab_free(Subtab *t)
{
	if (!t)
		return;
	free(t->slot);
	free(t);
}

static size_t find(const Subtab *t, const void *owner, long long sid)
{
	size_t i = hash(owner, sid) & t->mask;

	while (t->slot[i].owner && (t->slot[i].owner != owner || t->slot[i].sid != sid))
		i = (i + 1) & t->mask;
	return i;
}

static int grow(Subtab *t)
{
	size_t cap = (t->mask + 1) * 2;
	struct slot *old = t->slot, *s;
	size_t oldcap = t->mask + 1;

	s = calloc(cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	t->slot = s;
	t->mask = cap - 1;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].owner)
			t->slot[find(t, old[i].owner, old[i].sid)] = old[i];
	free(old);
	return 0;
}

int subtab_put(Subtab *t, const void *owner, long long sid, void *val)
{
	size_t i;

	if (t->slot[find(t, owner, sid)].owner)
		return -EEXIST;
	if ((t->n + 1) * 2 > t->mask + 1 && grow(t) < 0)
		return -ENOMEM;
	i = find(t, owner, sid);
	t->slot[i] = (struct slot){ owner, sid, val };
	t->n++;
	return 0;
}

int subtab_set(Subtab *t, const void *owner, long long sid, void *val)
{
	struct slot *sl = &t->slot[find(t, owner, sid)];

	if (!sl->owner)
		return -ENOENT;
	sl->val = val;
	return 0;
}

void *subtab_get(const Subtab *t, const void *owner, long long sid)
{
	return t->slot[find(t, owner, sid)].val;
}

void *subtab_del(Subtab *t, const void *owner, long long sid)
{
	size_t i = find(t, owner, sid), j = i;
	void *val = t->slot[i].val;

	if (!t->slot[i].owner)
		return NULL;
	/* Backward shift: move up every later entry of the run that may sit
	 * in the hole, so lookups never meet a gap before their entry. */
	for (;;) {
		t->slot[i] = (struct slot){ NULL, 0, NULL };
		for (;;) {
			size_t home;

			j = (j + 1) & t->mask;
			if (!t->slot[j].owner) {
				t->n--;
				return val;
			}
			home = hash(t->slot[j].owner, t->slot[j].sid) & t->mask;
			/* It stays if its home lies cyclically in (i, j]. */
			if (!(i <= j ? (i < home && home <= j) : (i < home || home <= j)))
				break;
		}
		t->slot[i] = t->slot[j];
		i = j;
	}
}

size_t subtab_count(const Subtab *t)
{
	return t->n;
}
