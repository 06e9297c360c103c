/*
 * ticker.h - writes snapshot ticks (DESIGN section 4).  One relay per
 * database ticks at a time, elected by a session advisory lock on its own
 * connection; the others stand by and retry.  relay.c owns the ticker and
 * kicks it on NOTIFY; the ticker calls back after each committed tick,
 * with its id and the statement's result (the tick statement is the
 * relay's: it also reads the first page of the new batch).
 */
#ifndef NVSRELAY_TICKER_H
#define NVSRELAY_TICKER_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "pgconn.h"

typedef struct ticker Ticker;

struct ticker_ops {
	/* The tick statement: inserts the tick (see ticker.c for how) and may
	 * read more in the same round trip.  $1 is read_after(ud), $2
	 * batch_rows, $3 whether it is the first tick of this leadership.
	 * Its first result row is the header: the new tick's id in column 0,
	 * its snapshot as text in column 3. */
	const char *tick_sql;
	uint64_t (*read_after)(void *ud);
	/* After the tick's commit (ReadyForQuery): res is the statement's
	 * result, cleared after the call. */
	void (*ticked)(void *ud, uint64_t tick, const PGresult *res);
	/* Whether the live reader is reading now: a kick then waits for
	 * ticker_reader_done(). */
	bool (*reading)(void *ud);
};

Ticker *ticker_new(struct ev_loop *loop, const struct conf_values *cv, const struct pgconn_cfg *pcfg,
		   const struct ticker_ops *ops, void *ud);
void ticker_free(Ticker *t);
void ticker_start(Ticker *t);

/* Something may have committed (a NOTIFY arrived): tick now, or under
 * load (a kick came while the previous tick was in flight or waiting) no
 * sooner than tick_min_interval_ms after the previous tick, and not while
 * the live reader is still reading. */
void ticker_kick(Ticker *t);

/* The live reader stopped reading (caught up, failed or cut off): a kick
 * that waited for it ticks now. */
void ticker_reader_done(Ticker *t);

bool ticker_is_leader(const Ticker *t);

/* Re-arms the head probe after a reload changed poll_interval_ms. */
void ticker_reconfigure(Ticker *t);

/* The relay's LISTEN session is up (LISTEN done) or down: only while it
 * is up may the probe back off. */
void ticker_listening(Ticker *t, bool up);

#endif
