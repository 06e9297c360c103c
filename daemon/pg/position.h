/*
 * position.h - positions kept in and looked up from PostgreSQL: durable
 * consumer positions in resume_tokens, the position after an NVSentinel
 * eventID (also one whose row NVSentinel's cleanup removed) and the
 * position at a time; the count of a table's changes after a position.
 * relay.c calls these on its main connection for the hub's source ops
 * (source.h); they answer as the ops do, and stamp found positions with
 * generation gen.
 */
#ifndef NVSRELAY_POSITION_H
#define NVSRELAY_POSITION_H

#include <stddef.h>
#include <stdint.h>

#include "pgconn.h"
#include "source.h"
#include "token.h"

int position_load(PgConn *pc, uint32_t gen, const char *consumer, source_pos_cb cb, void *arg);
/* A stored relay token is never moved backwards. */
int position_save(PgConn *pc, const char *consumer, const struct token *pos, source_done_cb cb, void *arg);
/* Several at once (one statement); n >= 1.  Each as position_save. */
int position_save_many(PgConn *pc, size_t n, const char *const *consumers, const struct token *pos,
		       source_done_cb cb, void *arg);
/* -ESTALE: older than the retained history (or beyond every change);
 * -EAGAIN: not in a tick yet.  A row NVSentinel's cleanup removed resumes
 * with the next retained one (a warning and a metric). */
int position_of_event(PgConn *pc, uint32_t gen, uint64_t event_id, source_pos_cb cb, void *arg);
int position_at_time(PgConn *pc, uint32_t gen, const char *rfc3339, source_pos_cb cb, void *arg);
/* Whether pos's tick is written (source_ops.position_exists). */
int position_exists(PgConn *pc, const struct token *pos, source_pos_cb cb, void *arg);

/* How many changes of table (its changelog name) lie after pos, at most
 * 1,000,000 (source_ops.count_after). */
int position_count(PgConn *pc, const char *table, const struct token *pos, source_count_cb cb, void *arg);

/* The message for a position older than the retained history, naming the
 * oldest position left (min_tick, NULL or "" when the history is empty). */
void position_oldest_msg(uint32_t gen, const char *what, const char *min_tick, char *buf, size_t len);

#endif
