/*
 * ticker.c - the elected writer of nvsrelay.tick.
 *
 * A tick stores pg_current_snapshot(); the batch between two ticks is fixed
 * forever, which is what makes tokens valid on any relay and across
 * restarts.  Three things make a tick happen: a kick (NOTIFY), the head
 * probe (a read-only query asking whether any changelog row became visible
 * since the last tick; it consumes no xid, and it is what picks up rows
 * written without a NOTIFY and long transactions that finally committed),
 * and the idle heartbeat (tick_idle_ms), which keeps bookmarks moving and
 * shows standby relays that the leader is alive.
 *
 * The probe runs poll_interval_ms after any activity, a committed tick
 * included (a tick reads whatever a probe would find), and while probes
 * find nothing and the LISTEN connection is up its interval doubles up to
 * poll_interval_max_ms: PostgreSQL does not drop notifications of a live
 * LISTEN session (a full queue fails the notifying commit instead), so an
 * idle relay need not ask four times a second.  A kick, a probe that finds
 * rows and a LISTEN connection going down bring it back to poll_interval_ms.
 *
 * Under load a tick waits for the live reader to finish reading the ones
 * before it, so batches grow with the rate (as group commit does) instead of
 * the per-tick costs (the tick, a batch query, its round trips) growing
 * with it.  "Under load" is a kick arriving while a tick is in flight or
 * waiting: then ticks are also kept tick_min_interval_ms apart.  A kick
 * into a quiet ticker ticks at once, however recent the last tick: the
 * floor only batches a stream of kicks, it must not delay the first.  The
 * idle tick does not wait.
 *
 * The statement is the relay's (ticker_ops.tick_sql): it inserts the tick
 * and, in the same round trip, reads the first page of the batch the tick
 * closes, so an event costs one round trip after its NOTIFY, not two.
 * Its result is handed over only after ReadyForQuery, i.e. after the
 * tick's commit.
 *
 * The tick commits asynchronously (synchronous_commit off for its
 * transaction only): its WAL flush was the largest cost between a writer's
 * commit and its subscribers.  A tick adds no data, only a name for a
 * snapshot, and the rows it names were flushed by their writers before
 * they became visible to it.  What a crash can take is the tick itself, in
 * the moment before the WAL writer or any later commit flushes it, after
 * its rows were delivered.  Three rules make that cost a redelivery and
 * never a loss or a wrong position:
 *  - every stored position was written by a synchronous commit after the
 *    tick it names, and WAL is flushed in order: a tick that a stored
 *    position names is on disk;
 *  - a lost tick's id is never written again: a crash ends every session,
 *    so the next tick is the first of a new leadership, and that one leaves
 *    a gap of 2^32 ids (the statement's $3).  It commits synchronously: a
 *    second crash that took it would let the next leadership write its id
 *    again, with another snapshot, under tokens already handed out;
 *  - a position on a lost tick (a subscriber's in-memory token, this
 *    relay's own reader) reads on from the tick before it (batch.c, 'l'):
 *    that one is on disk, so no xid it counts as finished can be reused,
 *    and the batches after it hold the lost one's rows again.
 * Only the holder of the advisory lock ticks, since two tickers could
 * commit snapshots out of order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "ticker.h"

#define TICKER_LOCK_KEY "7243381923472002"

struct ticker {
	struct ev_loop *loop;
	const struct conf_values *cv;
	PgConn *pc;
	struct ticker_ops ops;
	void *ud;
	bool leader;
	bool busy;            /* a tick, probe or lock attempt in flight */
	bool wanted;          /* a kick arrived while busy, reading or too early */
	bool ticking;         /* the busy query is a tick */
	bool loaded;          /* kicks keep coming: keep ticks the floor apart */
	bool fresh;           /* no tick of this leadership committed yet */
	char *last_snap;      /* snapshot text of the latest tick */
	ev_tstamp last_tick;
	bool listening;       /* the relay's LISTEN session is up */
	double probe_iv;      /* seconds to the next probe, backing off */
	ev_timer poll;        /* head probe / lock retry */
	ev_timer soon;        /* deferred tick honouring the floor interval */
};

static void do_tick(Ticker *t);

static double base_iv(const Ticker *t)
{
	return t->cv->poll_interval_ms / 1000.0;
}

/* Arms the probe for iv from now, or for the idle tick if that is due
 * sooner.  An idle tick already due is the one just sent. */
static void rearm_in(Ticker *t, double iv)
{
	double idle;

	if (!ev_is_active(&t->poll))
		return;
	if (t->leader && t->last_snap) {
		idle = t->last_tick + t->cv->tick_idle_ms / 1000.0 - ev_now(t->loop);
		if (idle > 0 && idle < iv)
			iv = idle > 0.001 ? idle : 0.001;
	}
	t->poll.repeat = iv;
	ev_timer_again(t->loop, &t->poll);
}

static void rearm(Ticker *t)
{
	rearm_in(t, t->probe_iv);
}

/* Activity: probe at poll_interval_ms again. */
static void probe_reset(Ticker *t)
{
	if (t->probe_iv == base_iv(t))
		return;
	t->probe_iv = base_iv(t);
	rearm(t);
}

static void tick_done(PgConn *pc, PGresult *res, void *arg)
{
	Ticker *t = arg;

	(void)pc;
	t->busy = false;
	t->ticking = false;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1 || PQnfields(res) < 4 ||
	    PQgetisnull(res, 0, 0) || PQgetisnull(res, 0, 3)) {
		log_err("tick failed error='%s'", PQresultErrorMessage(res));
		/* A NOTIFY during the failed tick still wants one. */
		if (t->wanted)
			ticker_kick(t);
		return;
	}
	t->fresh = false;
	free(t->last_snap);
	t->last_snap = strdup(PQgetvalue(res, 0, 3));
	t->last_tick = ev_now(t->loop);
	metrics_add(M_TICKS_WRITTEN, NULL, 1);
	log_debug("tick %s rows=%d", PQgetvalue(res, 0, 0), PQntuples(res) - 1);
	log_debug("live path stage=tick_committed t=%.6f", ev_time());
	/* No kick during this tick: the next one is not part of a stream. */
	if (!t->wanted)
		t->loaded = false;
	t->ops.ticked(t->ud, strtoull(PQgetvalue(res, 0, 0), NULL, 10), res);
	if (t->wanted)
		ticker_kick(t);
}

/* The statement (the relay's) takes max(tick_id) + 1 inside its INSERT
 * (+ 2^32 for a leadership's first): only the lock holder writes, and its
 * statements are serial, so ids grow. */
static void do_tick(Ticker *t)
{
	char after[24], rows[16];
	const char *params[3] = { after, rows, NULL };

	if (t->busy || !t->leader)
		return;
	t->wanted = false;
	snprintf(after, sizeof(after), "%llu", (unsigned long long)t->ops.read_after(t->ud));
	snprintf(rows, sizeof(rows), "%d", t->cv->batch_rows);
	params[2] = t->fresh ? "t" : "f";
	if (pgconn_query_prep(t->pc, "tick", t->ops.tick_sql, 3, params, tick_done, t) == 0) {
		t->busy = true;
		t->ticking = true;
		log_debug("live path stage=tick_sent t=%.6f", ev_time());
	}
}

void ticker_kick(Ticker *t)
{
	double wait;

	if (!t->leader)
		return;
	probe_reset(t);
	if (t->busy || t->ops.reading(t->ud)) {
		t->wanted = true;
		t->loaded = t->loaded || t->ticking || !t->busy;
		return;
	}
	wait = t->last_tick + t->cv->tick_min_interval_ms / 1000.0 - ev_now(t->loop);
	if (wait > 0 && t->loaded) {
		t->wanted = true;
		if (!ev_is_active(&t->soon)) {
			ev_timer_set(&t->soon, wait, 0.);
			ev_timer_start(t->loop, &t->soon);
		}
		return;
	}
	do_tick(t);
}

void ticker_reader_done(Ticker *t)
{
	if (t->wanted)
		ticker_kick(t);
}

static void soon_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Ticker *t = w->data;

	(void)loop;
	(void)revents;
	if (t->wanted)
		ticker_kick(t);
}

static void probe_done(PgConn *pc, PGresult *res, void *arg)
{
	Ticker *t = arg;

	(void)pc;
	t->busy = false;
	log_debug("live path stage=probe_done t=%.6f", ev_time());
	if (!res)
		return;
	/* A kick that came during the probe is for a commit the probe's
	 * snapshot may not have seen: it ticks whatever the probe found. */
	if (t->wanted || (PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0)) {
		ticker_kick(t);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return;
	if (t->listening) {
		double cap = t->cv->poll_interval_max_ms / 1000.0;

		t->probe_iv = t->probe_iv * 2 < cap ? t->probe_iv * 2 : cap;
		if (t->probe_iv < base_iv(t))
			t->probe_iv = base_iv(t);
		rearm(t);
	}
}

static void lock_done(PgConn *pc, PGresult *res, void *arg)
{
	Ticker *t = arg;

	(void)pc;
	t->busy = false;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		return;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		return;
	t->leader = true;
	t->fresh = true;
	log_notice("ticker elected: this relay writes the snapshot ticks");
	do_tick(t);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Ticker *t = w->data;
	/* Rows visible now that the last tick did not see: the range branch
	 * and the xip branch of the batch query, with "now" as the snapshot,
	 * and like it sorting out xids before touching rows (see page_sql in
	 * relay.c): the range is cut around the xids in progress now, and of
	 * the last tick's xids in progress only those committed since are
	 * looked up.  So a large open transaction costs a probe nothing (it
	 * was 100+ ms per probe at 200k uncommitted rows), and when it
	 * commits its first row is found at once. */
	static const char probe[] =
		"WITH s AS (SELECT pg_snapshot_xmax($1::pg_snapshot) AS lo, pg_snapshot_xmax(pg_current_snapshot()) AS hi),"
		" r AS (SELECT x, lead(x) OVER (ORDER BY x) AS nx FROM s, pg_snapshot_xip(pg_current_snapshot()) x"
		"  WHERE x >= s.lo)"
		" SELECT EXISTS (SELECT 1 FROM s, datastore_changelog c"
		"  WHERE c.xid >= s.lo AND c.xid < coalesce((SELECT min(x) FROM r), s.hi)"
		" UNION ALL SELECT 1 FROM s, r, LATERAL (SELECT 1 FROM datastore_changelog c"
		"  WHERE c.xid > r.x AND c.xid < coalesce(r.nx, s.hi) OFFSET 0) c"
		" UNION ALL SELECT 1 FROM datastore_changelog c"
		"  WHERE c.xid = ANY (ARRAY(SELECT x FROM pg_snapshot_xip($1::pg_snapshot) x"
		"   WHERE pg_visible_in_snapshot(x, pg_current_snapshot()))))";
	const char *params[1];
	double since;

	(void)loop;
	(void)revents;
	if (!pgconn_is_up(t->pc) || t->busy)
		return;
	if (!t->leader) {
		if (pgconn_query_kind(t->pc, "lock", "SELECT pg_try_advisory_lock(" TICKER_LOCK_KEY ")", 0, NULL,
				 lock_done, t) == 0)
			t->busy = true;
		return;
	}
	since = ev_now(t->loop) - t->last_tick;
	if (!t->last_snap || since >= t->cv->tick_idle_ms / 1000.0) {
		do_tick(t);
		rearm(t);
		return;
	}
	/* A tick committed within the interval read everything a probe would
	 * find: under a steady stream of kicks the probe only cost a round
	 * trip, and a NOTIFY arriving during it waited for it.  The probe is
	 * due an interval after that tick instead. */
	if (since < t->probe_iv) {
		rearm_in(t, t->probe_iv - since);
		return;
	}
	params[0] = t->last_snap;
	if (pgconn_query_prep(t->pc, "probe", probe, 1, params, probe_done, t) == 0) {
		t->busy = true;
		log_debug("live path stage=probe_sent t=%.6f", ev_time());
	}
	rearm(t);
}

static void up(PgConn *pc, void *ud)
{
	Ticker *t = ud;

	(void)pc;
	t->busy = false;
	poll_cb(t->loop, &t->poll, 0);
}

static void down(PgConn *pc, void *ud, const char *why)
{
	Ticker *t = ud;

	(void)pc;
	(void)why;
	/* The lock died with the session; another relay may take over. */
	if (t->leader)
		log_warning("ticker lost its connection; leadership released");
	t->leader = false;
	t->busy = false;
	t->ticking = false;
	probe_reset(t);
}

Ticker *ticker_new(struct ev_loop *loop, const struct conf_values *cv, const struct pgconn_cfg *pcfg,
		   const struct ticker_ops *tops, void *ud)
{
	static const struct pgconn_ops ops = { .up = up, .down = down };
	Ticker *t = calloc(1, sizeof(*t));
	double iv;

	if (!t)
		return NULL;
	t->loop = loop;
	t->cv = cv;
	t->ops = *tops;
	t->ud = ud;
	t->pc = pgconn_new(loop, "ticker", pcfg, &ops, t);
	if (!t->pc) {
		free(t);
		return NULL;
	}
	iv = cv->poll_interval_ms / 1000.0;
	t->probe_iv = iv;
	ev_timer_init(&t->poll, poll_cb, iv, iv);
	t->poll.data = t;
	ev_init(&t->soon, soon_cb);
	t->soon.data = t;
	return t;
}

void ticker_free(Ticker *t)
{
	if (!t)
		return;
	ev_timer_stop(t->loop, &t->poll);
	ev_timer_stop(t->loop, &t->soon);
	pgconn_free(t->pc);
	free(t->last_snap);
	free(t);
}

void ticker_start(Ticker *t)
{
	ev_timer_start(t->loop, &t->poll);
	pgconn_start(t->pc);
}

bool ticker_is_leader(const Ticker *t)
{
	return t->leader;
}

void ticker_reconfigure(Ticker *t)
{
	t->probe_iv = base_iv(t);
	rearm(t);
}

void ticker_listening(Ticker *t, bool up)
{
	t->listening = up;
	if (!up)
		probe_reset(t);
}
