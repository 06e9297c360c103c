/*
 * subtab.h - a hash table from (owner, sid) to a pointer: the hub finds a
 * client's subscription by the sid of an ack or unwatch, and the first of a
 * client's subscriptions, in constant time instead of scanning every
 * subscription of the daemon.  Pure code: no I/O; owners are compared by
 * address only.  Used by hub.c.
 */
#ifndef NVSRELAY_SUBTAB_H
#define NVSRELAY_SUBTAB_H

#include <stddef.h>

typedef struct subtab Subtab;

Subtab *subtab_new(void);
void subtab_free(Subtab *t);
/* Returns 0, -EEXIST when (owner, sid) is taken, or -ENOMEM. */
int subtab_put(Subtab *t, const void *owner, long long sid, void *val);
/* Replaces the value of (owner, sid); -ENOENT when absent.  Never allocates. */
int subtab_set(Subtab *t, const void *owner, long long sid, void *val);
/* The value, or NULL. */
void *subtab_get(const Subtab *t, const void *owner, long long sid);
/* Removes (owner, sid) if present; returns its value or NULL. */
void *subtab_del(Subtab *t, const void *owner, long long sid);
size_t subtab_count(const Subtab *t);

#endif
