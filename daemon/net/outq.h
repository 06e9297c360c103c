/*
 * outq.h - the output queue of one connection: frames copied in (small ones
 * share a chunk), events held by reference behind their own small envelope,
 * handed out from the front as an iovec and consumed as they are written.
 * It also remembers, per sid, the position of the last event or bookmark
 * that left, for the error frames of a client being dropped.  No I/O and no
 * limits: client.c owns one queue per client and applies the limits, the
 * timers and the writes around it.
 */
#ifndef NVSRELAY_OUTQ_H
#define NVSRELAY_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "token.h"

typedef struct outq Outq;
struct event;

/* max_sids bounds the table of positions that left (see outq_delivered).
 * NULL when out of memory. */
Outq *outq_new(size_t max_sids);
void outq_free(Outq *q);

/* Bytes queued and not yet consumed. */
size_t outq_bytes(const Outq *q);

/* Queues a copy of len bytes (one or more complete frames); with has_pos, a
 * frame that moves sid to pos once it has left.  0 or -ENOMEM. */
int outq_push(Outq *q, const char *data, size_t len, bool has_pos, long long sid, const struct token *pos);

/* Bytes the event frame for sid takes: its envelope and the event (the
 * fullDocumentBeforeChange variant when before is set and it has one). */
size_t outq_event_len(long long sid, const struct event *ev, bool before);
/* Queues that frame, holding a reference to ev.  0 or -ENOMEM. */
int outq_push_event(Outq *q, long long sid, struct event *ev, bool before);

/* The unconsumed bytes from the front, as iov entries (at most max, which
 * must be 3 or more): whole frames until about max_bytes are covered.
 * Returns the number of entries. */
int outq_iov(const Outq *q, struct iovec *iov, int max, size_t max_bytes);

/* n bytes from the front were written. */
void outq_consume(Outq *q, size_t n);

/* Drops every frame not started yet, keeping the one partly written and the
 * first `promised` bytes (taken by the transport, which must write them);
 * the frames kept count as left.  For a client being dropped. */
void outq_drop_unsent(Outq *q, size_t promised);

/* Empties the queue (the peer is gone). */
void outq_clear(Outq *q);

/* The position of the last event or bookmark of sid that left.  The table
 * is bounded: past max_sids the entry moved longest ago goes, which only
 * costs a token in a final error frame for a subscription long gone. */
bool outq_delivered(const Outq *q, long long sid, struct token *ret);
/* A new subscription takes sid: what is queued for sid so far, and what
 * left of it, belong to the one before and no longer count as sid's. */
void outq_sid_reset(Outq *q, long long sid);

#endif
