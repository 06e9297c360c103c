/*
 * source.h - the hub's event source: catch-up pages for subscribers behind
 * the ring, durable positions, and the lookups that turn an NVSentinel
 * eventID or a time into a position, and backlog counts.  The hub (hub.c) knows its source only
 * through these ops; the PostgreSQL reader (relay.c, relay_source()) is one
 * implementation, the fake of tests/unit/test_hub.c another.  main.c hands
 * the source to the hub with hub_set_source.
 *
 * The head is not asked for: the source pushes the live stream into the
 * hub (hub_publish, hub_set_head), so data flows source -> hub only.
 *
 * Every call either returns 0 and answers exactly once, later, from the
 * event loop (never from inside the call), or returns a negative errno and
 * never answers: -ENOTCONN when the source is unreachable right now.
 */
#ifndef NVSRELAY_SOURCE_H
#define NVSRELAY_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "token.h"

/* Called with the events of one page (references owned by the callee), the
 * position after them, or an error (code != 0: a protocol error code, events
 * empty). */
typedef void (*source_page_cb)(void *arg, struct event **evs, size_t n, const struct token *next,
			       int code, const char *msg);
/* status 0: found (*pos set); -ENOENT: no stored position; -ESTALE: older
 * than the retained history; -EINVAL: unusable; other: error. */
typedef void (*source_pos_cb)(void *arg, int status, const struct token *pos, const char *msg);
typedef void (*source_done_cb)(void *arg, int status);
/* status 0: count set; else an error (-ENOTCONN: unreachable, retry). */
typedef void (*source_count_cb)(void *arg, int status, uint64_t count, const char *msg);

struct source_ops {
	/* The next page after pos; table limits rows to one table (the
	 * position still advances over the others), TABLE_OTHER: all. */
	int (*read_page)(void *impl, const struct token *pos, enum event_table table,
			 source_page_cb cb, void *arg);
	/* A durable consumer's stored position. */
	int (*load_position)(void *impl, const char *consumer, source_pos_cb cb, void *arg);
	/* Stores it; a stored position never moves backwards. */
	int (*save_position)(void *impl, const char *consumer, const struct token *pos,
			     source_done_cb cb, void *arg);
	/* Stores n consumers' positions in one write, cb once for all; NULL:
	 * the hub stores them one at a time. */
	int (*save_positions)(void *impl, size_t n, const char *const *consumers, const struct token *pos,
			      source_done_cb cb, void *arg);
	/* The position after changelog row event_id (NVSentinel's {timestamp,
	 * eventID} tokens). */
	int (*position_of_event)(void *impl, uint64_t event_id, source_pos_cb cb, void *arg);
	/* The position of the last tick written at or before an RFC 3339 time
	 * (startAtOperationTime). */
	int (*position_at_time)(void *impl, const char *rfc3339, source_pos_cb cb, void *arg);
	/* Whether pos names a tick written in this generation (asked for
	 * start positions beyond the hub's head): 0 with pos, or -ENOENT;
	 * also -ENOENT at once for a tick no database can hold.  NULL where the
	 * source cannot tell (a chained relay): such a start is refused as
	 * retryable (HostUnreachable). */
	int (*position_exists)(void *impl, const struct token *pos, source_pos_cb cb, void *arg);
	/* How many changes of table lie after pos, for a backlog gauge (the
	 * "count" request; PROTOCOL.md says what is approximate).  NULL
	 * where the source cannot count: a node relay, which has no
	 * changelog of its own. */
	int (*count_after)(void *impl, enum event_table table, const struct token *pos,
			   source_count_cb cb, void *arg);
};

struct source {
	const struct source_ops *ops;
	void *impl;
};

#endif
