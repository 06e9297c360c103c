/*
 * batch.h - the batch statements and the events of their rows (batch.c).
 * Used by relay.c, which sends them; ticker.c gets batch_tick_sql from it.
 */
#ifndef NVSRELAY_BATCH_H
#define NVSRELAY_BATCH_H

#include <libpq-fe.h>

#include "event.h"
#include "token.h"

/* Every statement answers with a header row (changelog id NULL), then one
 * row per change: its tick, id, table, record id, operation, clusterTime,
 * new and old document as text.  The parameters are described at each. */
extern const char batch_page_sql[];     /* the batches after a tick */
extern const char batch_walk_sql[];     /* the pages after it */
extern const char batch_history_sql[];  /* the batch of tick 1 */
extern const char batch_tick_sql[];     /* a tick, and its batch's first page */

/* The events of a page's rows (row 1 on), each at its row's tick; *next becomes
 * where reading goes on.  Returns how many are in *evs (to free) or
 * -ENOMEM. */
int batch_events(const PGresult *res, const struct token *from, struct token *next, int batch_rows,
		 const char *dbname, struct event ***evs);

#endif
