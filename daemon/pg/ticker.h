/*
 * ticker.h - writes snapshot ticks (DESIGN section 4).  One relay per
 * database ticks at a time, elected by a session advisory lock on its own
 * connection; the others stand by and retry.  relay.c owns the ticker and
 * kicks it on NOTIFY; the ticker calls back after each committed tick,
 * with its id.
 */
#ifndef NVSRELAY_TICKER_H
#define NVSRELAY_TICKER_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "pgconn.h"

typedef struct ticker Ticker;

/* reading(ud) tells whether the live reader is reading now: a kick then
 * waits for ticker_reader_done(). */
Ticker *ticker_new(struct ev_loop *loop, const struct conf_values *cv, const struct pgconn_cfg *pcfg,
		   void (*ticked)(void *ud, uint64_t tick), bool (*reading)(void *ud), void *ud);
void ticker_free(Ticker *t);
void ticker_start(Ticker *t);

/* Something may have committed (a NOTIFY arrived): tick soon, no sooner
 * than tick_min_interval_ms after the previous tick, and not while the live
 * reader is still reading. */
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
