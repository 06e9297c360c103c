/*
 * relay.c - the PostgreSQL side of the daemon.
 *
 * Owns three connections: "main" (schema, batch reads, catch-up pages,
 * durable positions), the ticker's own, and "listen" (LISTEN only, so a
 * NOTIFY is never stuck behind a long read).  The live reader walks the
 * ticks in order and, for each pair, reads the batch in id-ordered pages;
 * each row becomes an event at position (tick, id) and goes to the hub.
 * On the leader the tick statement itself brings the first page of the
 * batch it closes (batch.c), so the common case, a batch of one page, costs
 * one round trip after the NOTIFY and never waits behind the main
 * connection's catch-up pages and position saves.  Catch-up pages for
 * subscribers behind the ring use the same statements, so a batch looks the
 * same to everyone, whenever it is read; with a hot standby configured
 * (replica.c) a page is read there first and kept only when the standby
 * has replayed the batch's end tick.  The hub gets
 * them, and durable positions (position.c), through relay_source()'s ops.
 *
 * PostgreSQL going away never ends the process: connections reconnect with
 * backoff, the live position is kept in memory, and reading resumes from it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "errors.h"
#include "hub.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "position.h"
#include "relay.h"
#include "replica.h"
#include "retention.h"
#include "schema.h"
#include "ticker.h"

struct relay {
	struct ev_loop *loop;
	const Conf *conf;
	const struct conf_values *cv;
	struct hub *hub;
	void (*ready_cb)(void *ud);
	void (*fatal_cb)(void *ud, const char *why);
	void *ud;
	const char *const *keys, *const *vals;
	PgConn *main, *listen;
	Ticker *ticker;
	Retention *retention;
	bool schema_done;
	bool ready;
	uint32_t generation;
	char dbname[128];
	struct token live;          /* everything up to here is in the hub */
	bool live_known;
	bool live_reading;
	bool live_again;            /* kicked while reading */
	uint64_t tick_written;      /* the latest tick this relay's ticker wrote */
	uint64_t tick_after;        /* the tick the tick statement in flight reads after */
	ev_timer poll;              /* safety net when another relay ticks */
	ev_timer schema_retry;      /* a failed schema step, retried with backoff */
	int schema_backoff_ms;
	bool closing;
	ev_tstamp head_moved;       /* the live reader last moved the head */
	struct source source;       /* what the hub sees of it */
	Replica *replica;           /* hot standby for pages, or NULL */
};

struct page_req {
	Relay *r;
	struct token pos;
	enum event_table table;
	source_page_cb cb;
	void *arg;
	/* The query, kept to run it again on the primary when the standby
	 * has not replayed the batch yet. */
	const char *sql, *kind;
	int nparams;
	const char *params[5];
	char tick[24], after[24], limit[16];
};

static void live_kick(Relay *r);
static void find_head(Relay *r);
static int read_history(Relay *r, struct page_req *q);
static int reread_after(Relay *r, struct page_req *q);
static const char *table_param(enum event_table table);

uint32_t relay_generation(const Relay *r)
{
	return r->generation;
}

static void page_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct page_req *q = arg;
	Relay *r = q->r;
	struct event **evs = NULL;
	struct token next = q->pos;
	int rows, n;
	char msg[600];

	(void)pc;
	if (!res) {
		q->cb(q->arg, NULL, 0, &q->pos, ERR_HOST_UNREACHABLE, "PostgreSQL connection lost");
		goto out;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(msg, sizeof(msg), "batch read failed: %s", PQresultErrorMessage(res));
		log_err("%s", msg);
		q->cb(q->arg, NULL, 0, &q->pos, ERR_HOST_UNREACHABLE, msg);
		goto out;
	}
	rows = PQntuples(res);
	if (rows >= 1 && !PQgetisnull(res, 0, 2) && *PQgetvalue(res, 0, 2) == 'l') {
		/* The tick was lost in a server crash (batch.c): read on from the
		 * tick before it.  The batch after a position is what page_sql
		 * reads, so a position inside the lost batch starts it over. */
		metrics_add(M_LOST_TICK_READS, NULL, 1);
		log_warning("position on tick %" PRIu64 " lost in a server crash: reading on from the tick before it"
			    " (events after that tick are delivered again)", q->pos.tick);
		if (q->pos.id != TOKEN_ID_END) {
			q->pos.id = TOKEN_ID_END;
			if (reread_after(r, q) == 0)
				return;
			q->cb(q->arg, NULL, 0, &q->pos, ERR_HOST_UNREACHABLE, "PostgreSQL connection lost");
			goto out;
		}
	} else if (rows < 1 || PQgetisnull(res, 0, 2)) {
		/* The token's tick is not (or no longer) in this database. */
		position_oldest_msg(r->generation, q->table == TABLE_OTHER ? "this relay's live position" : "resume position",
				    rows < 1 || PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3),
				    msg, sizeof(msg));
		q->cb(q->arg, NULL, 0, &q->pos, ERR_HISTORY_LOST, msg);
		goto out;
	}
	if (PQgetisnull(res, 0, 0)) {
		if (q->pos.id == TOKEN_ID_END) {
			q->cb(q->arg, NULL, 0, &q->pos, 0, NULL);   /* no newer tick yet */
		} else if (q->pos.tick == 1) {
			/* Tick 1 has no predecessor: its batch is the history the
			 * relay found when it started (tick 1 still exists: checked
			 * above). */
			if (read_history(r, q) == 0)
				return;
			q->cb(q->arg, NULL, 0, &q->pos, ERR_HOST_UNREACHABLE, "PostgreSQL connection lost");
		} else {
			q->cb(q->arg, NULL, 0, &q->pos, ERR_HISTORY_LOST,
			      "resume position precedes the first batch of this database");
		}
		goto out;
	}
	next.tick = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	n = batch_events(res, &q->pos, &next, r->cv->batch_rows, r->dbname, &evs);
	if (n < 0) {
		q->cb(q->arg, NULL, 0, &q->pos, ERR_HOST_UNREACHABLE, "out of memory");
		goto out;
	}
	q->cb(q->arg, evs, (size_t)n, &next, 0, NULL);
out:
	free(evs);
	free(q);
}

static const char *table_param(enum event_table table)
{
	return table == TABLE_HEALTH_EVENTS ? "health_events"
	     : table == TABLE_MAINTENANCE_EVENTS ? "maintenance_events" : NULL;
}

static int read_history(Relay *r, struct page_req *q)
{
	char tick[24], after[24], limit[16];
	const char *params[4] = { tick, after, limit, table_param(q->table) };

	snprintf(tick, sizeof(tick), "%" PRIu64, q->pos.tick);
	snprintf(after, sizeof(after), "%" PRIu64, q->pos.id);
	snprintf(limit, sizeof(limit), "%d", r->cv->batch_rows);
	return pgconn_query_kind(r->main, "history", batch_history_sql, 4, params, page_cb, q);
}

/*
 * A page from the standby counts only when the standby shows the batch's
 * end tick (header columns 0 and 2): WAL is replayed in commit order and the
 * tick committed after every transaction its snapshot sees, so the whole
 * batch is there.  Anything else (not replayed yet, tick 1's history, an
 * error, the standby gone) is asked of the primary, which decides.
 */
static void replica_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct page_req *q = arg;
	Relay *r = q->r;

	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) >= 1 &&
	    !PQgetisnull(res, 0, 0) && !PQgetisnull(res, 0, 2)) {
		metrics_add(M_PG_REPLICA_PAGES, "replica", 1);
		page_cb(pc, res, q);
		return;
	}
	metrics_add(M_PG_REPLICA_PAGES, "primary", 1);
	if (!r->main || pgconn_query_prep(r->main, q->kind, q->sql, q->nparams, q->params, page_cb, q) < 0) {
		q->cb(q->arg, NULL, 0, &q->pos, ERR_HOST_UNREACHABLE, "PostgreSQL connection lost");
		free(q);
	}
}

/* The statement and parameters that read on from q->pos. */
static void page_req_set(struct page_req *q)
{
	snprintf(q->tick, sizeof(q->tick), "%" PRIu64, q->pos.tick);
	snprintf(q->after, sizeof(q->after), "%" PRIu64, q->pos.id == TOKEN_ID_END ? 0 : q->pos.id);
	snprintf(q->limit, sizeof(q->limit), "%d", q->r->cv->batch_rows);
	q->params[0] = q->tick;
	if (q->pos.id == TOKEN_ID_END) {
		/* The batches after a tick: batch_page_sql finds where they end. */
		q->params[1] = q->limit;
		q->params[2] = table_param(q->table);
		q->params[3] = NULL;
		q->params[4] = NULL;
		q->sql = batch_page_sql;
		q->nparams = 3;
	} else {
		/* Inside a batch whose end tick is known: walk on from pos->id. */
		q->params[1] = q->after;
		q->params[2] = q->limit;
		q->params[3] = table_param(q->table);
		q->params[4] = NULL;
		q->sql = batch_walk_sql;
		q->nparams = 4;
	}
}

/* q again, from its (changed) position, on the primary. */
static int reread_after(Relay *r, struct page_req *q)
{
	page_req_set(q);
	return pgconn_query_prep(r->main, q->kind, q->sql, q->nparams, q->params, page_cb, q);
}

static int read_page(Relay *r, const struct token *pos, enum event_table table,
		     source_page_cb cb, void *arg)
{
	struct page_req *q;
	PgConn *rc = replica_conn(r->replica);

	if (!r->main || !pgconn_is_up(r->main))
		return -ENOTCONN;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->r = r;
	q->pos = *pos;
	q->table = table;
	q->cb = cb;
	q->arg = arg;
	page_req_set(q);
	q->kind = table == TABLE_OTHER ? "batch" : "catchup";
	if (rc && pgconn_query_prep(rc, table == TABLE_OTHER ? "batch_replica" : "catchup_replica", q->sql, q->nparams,
				    q->params, replica_cb, q) == 0)
		return 0;
	if (pgconn_query_prep(r->main, q->kind, q->sql, q->nparams, q->params, page_cb, q) < 0) {
		free(q);
		return -ENOTCONN;
	}
	return 0;
}

/* --- live reader --------------------------------------------------------- */

/* A tick that waited for the reader may go now.  Not while closing: the
 * ticker is freed before the main connection fails its reads. */
static void reader_done(Relay *r)
{
	if (!r->closing)
		ticker_reader_done(r->ticker);
}

/* A page of the live stream read: its events go to the hub, the head moves
 * to next.  Returns whether it moved.  A read on the standby outlives the
 * main connection's drop, so two reads of a batch can answer: the events of
 * a page (in position order) at or before the head are out already. */
static bool live_take(Relay *r, struct event **evs, size_t n, const struct token *next)
{
	size_t i, old;
	bool moved;

	log_debug("live path stage=rows n=%zu t=%.6f", n, ev_time());
	for (old = 0; old < n && token_cmp(&evs[old]->pos, &r->live) <= 0; old++)
		event_unref(evs[old]);
	for (i = old; i < n; i++)
		hub_publish(r->hub, evs[i]);
	if (n)
		log_debug("live path stage=published t=%.6f already_out=%zu", ev_time(), old);
	moved = token_cmp(next, &r->live) > 0;
	if (moved) {
		r->head_moved = ev_now(r->loop);
		metrics_add(M_EVENTS_READ, NULL, (double)(n - old));
		metrics_add(M_BATCH_ROWS, NULL, (double)(n - old));
		metrics_add(M_TICKS_READ, NULL, next->id == TOKEN_ID_END);
		r->live = *next;
	}
	hub_set_head(r->hub, &r->live);
	return moved;
}

/*
 * The tick the live reader stands on is gone: another relay's retention
 * pruned it (retention_max_rows or _age past retention_floor_s) while this
 * one, a standby, was behind.  Reading again cannot bring it back, and
 * walking on would hide the gap, so every subscription ends with 286 at the
 * position it reached and the reader starts over from the newest tick, as
 * a restarted relay would.
 */
static void live_lost(Relay *r, const char *msg)
{
	char tok[TOKEN_HEX_LEN + 1], why[768];
	size_t n;

	token_format(&r->live, tok);
	snprintf(why, sizeof(why), "%s: changes were pruned before this relay read them", msg);
	n = hub_lose_head(r->hub, why);
	metrics_add(M_LIVE_POSITION_LOST, NULL, 1);
	log_err("live position %s was pruned before this relay read it (another relay's retention caps):"
		" %zu subscription(s) ended with ChangeStreamHistoryLost; reading on from the newest tick", tok, n);
	r->live_known = false;
	find_head(r);
}

static void live_page(void *arg, struct event **evs, size_t n, const struct token *next,
		      int code, const char *msg)
{
	Relay *r = arg;
	bool moved, again;

	r->live_reading = false;
	if (code == ERR_HISTORY_LOST && !r->closing) {
		live_lost(r, msg);
		reader_done(r);
		return;
	}
	if (code) {
		if (!r->closing)
			log_warning("live read failed reason='%s'", msg);
		reader_done(r);
		return;
	}
	moved = live_take(r, evs, n, next);
	/* Keep reading while there is more: the rest of this batch (unless a
	 * bad row stopped it), or the batches of ticks written meanwhile.  The
	 * leader knows its ticks (ticked()), so after a batch it reads again
	 * only while one of them is unread; reading until a read came back
	 * empty cost a second, always empty, batch query per tick.  The latest
	 * tick written, not a flag: a flag cleared by one re-read loses a
	 * second tick written during it, and its events wait for the next.  A
	 * standby learns of ticks only by reading: it reads until nothing
	 * moves. */
	if (next->id != TOKEN_ID_END)
		again = moved;
	else if (ticker_is_leader(r->ticker))
		again = r->tick_written > next->tick;
	else
		again = moved || r->live_again;
	r->live_again = false;
	if (again)
		live_kick(r);
	if (!r->live_reading)
		reader_done(r);
}

static void live_kick(Relay *r)
{
	if (!r->live_known)
		return;
	if (r->live_reading) {
		r->live_again = true;
		return;
	}
	if (read_page(r, &r->live, TABLE_OTHER, live_page, r) == 0) {
		r->live_reading = true;
		log_debug("live path stage=batch_sent t=%.6f", ev_time());
	}
}

static void set_ready(Relay *r)
{
	char tok[TOKEN_HEX_LEN + 1];

	if (r->ready)
		return;
	r->ready = true;
	r->head_moved = ev_now(r->loop);
	token_format(&r->live, tok);
	log_notice("ready generation=%08" PRIx32 " head=%s", r->generation, tok);
	hub_set_head(r->hub, &r->live);
	r->ready_cb(r->ud);
}

static void head_cb(PgConn *pc, PGresult *res, void *arg)
{
	Relay *r = arg;

	(void)pc;
	/* Several lookups may be in flight (ticks and polls ask while the head
	 * is unknown): the first answer counts, later ones would move the
	 * reader back. */
	if (r->live_known || !res || PQresultStatus(res) != PGRES_TUPLES_OK || PQgetisnull(res, 0, 0))
		return;   /* no tick yet: the ticker's first tick calls back */
	r->live.gen = r->generation;
	r->live.tick = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	r->live.id = TOKEN_ID_END;
	r->live_known = true;
	if (r->ready)
		hub_set_head(r->hub, &r->live);   /* after live_lost */
	set_ready(r);
	live_kick(r);
}

static void find_head(Relay *r)
{
	pgconn_query_kind(r->main, "head", "SELECT max(tick_id) FROM nvsrelay.tick", 0, NULL, head_cb, r);
}

static bool live_is_reading(void *ud)
{
	return ((Relay *)ud)->live_reading;
}

/* The tick statement reads the new batch's first page only for a reader
 * that stands, idle, at the end of the latest batch (tick_sql's $1). */
static uint64_t live_read_after(void *ud)
{
	Relay *r = ud;

	r->tick_after = 0;
	if (!r->schema_done || !r->live_known || r->live_reading || r->live.id != TOKEN_ID_END)
		return 0;
	return r->tick_after = r->live.tick;
}

/* The tick is committed.  Its statement read the first page of its batch
 * when the reader stood at the previous tick ('y'); the rows are the
 * reader's only if it still stands there and is not reading: a read
 * started meanwhile on the main connection may have the same batch, and
 * that read's result wins.  Otherwise the reader reads as before. */
static void ticked(void *ud, uint64_t tick, const PGresult *res)
{
	Relay *r = ud;
	struct event **evs = NULL;
	struct token next;
	int n;

	r->tick_written = tick;
	/* Until nvsrelay.meta is read the generation is unknown, and a head
	 * found now would carry generation 0. */
	if (!r->schema_done)
		return;
	if (!r->live_known) {
		find_head(r);
		return;
	}
	if (PQgetisnull(res, 0, 2) || r->live_reading || r->live.id != TOKEN_ID_END || r->live.tick != r->tick_after) {
		live_kick(r);
		return;
	}
	next = r->live;
	next.tick = tick;
	n = batch_events(res, &r->live, &next, r->cv->batch_rows, r->dbname, &evs);
	if (n < 0) {
		live_kick(r);
		return;
	}
	/* More of the batch (a full page) is read on the main connection. */
	if (live_take(r, evs, (size_t)n, &next) && next.id != TOKEN_ID_END)
		live_kick(r);
	free(evs);
}

static void meta_cb(PgConn *pc, PGresult *res, void *arg)
{
	Relay *r = arg;

	(void)pc;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_err("cannot read nvsrelay.meta error='%s'", PQresultErrorMessage(res));
		r->fatal_cb(r->ud, "nvsrelay.meta unreadable");
		return;
	}
	r->generation = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	snprintf(r->dbname, sizeof(r->dbname), "%s", PQgetvalue(res, 0, 1));
	r->schema_done = true;
	ticker_start(r->ticker);
	retention_start(r->retention);
	find_head(r);
}

/*
 * A dump restored into another cluster brings its ticks and changelog
 * xids along, but they count the old cluster's transactions: resuming a
 * token against them would misorder or skip rows without a word.  So when
 * pg_control_system() names another cluster than nvsrelay.meta, one
 * statement starts a new generation (tokens from before get
 * ChangeStreamHistoryLost), drops the old ticks and clears the old rows'
 * xids, which makes them history from before the relay, as rows written
 * before it was installed are.  A promoted physical replica keeps its
 * system identifier: nothing happens there.  The check only reads, so a
 * least-privilege role runs it too; of relays starting together, only the
 * one whose UPDATE still sees the old identifier ($1) writes.
 */
static const char restore_sql[] =
	"WITH cur AS (SELECT system_identifier::text AS sid FROM pg_control_system()),"
	" m AS (UPDATE nvsrelay.meta m SET system_identifier = cur.sid,"
	"   generation = (m.generation + floor(random() * 4294967294)::bigint) % 4294967295 + 1"
	"  FROM cur WHERE m.system_identifier = $1 AND m.system_identifier <> cur.sid RETURNING m.generation),"
	" t AS (DELETE FROM nvsrelay.tick WHERE EXISTS (SELECT 1 FROM m)),"
	" c AS (UPDATE datastore_changelog SET xid = NULL WHERE xid IS NOT NULL AND EXISTS (SELECT 1 FROM m))"
	" SELECT (SELECT generation FROM m), (SELECT sid FROM cur)";

static void read_meta(Relay *r)
{
	pgconn_query_kind(r->main, "meta", "SELECT generation, database_name FROM nvsrelay.meta", 0, NULL, meta_cb, r);
}

static void restored_cb(PgConn *pc, PGresult *res, void *arg)
{
	Relay *r = arg;

	(void)pc;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_err("database restored into another cluster, but no new changelog generation could be started;"
			" start nvsrelayd once with the role that owns its schema error='%s'", PQresultErrorMessage(res));
		r->fatal_cb(r->ud, "restored database: a new generation could not be started");
		return;
	}
	if (PQgetisnull(res, 0, 0))
		log_notice("database restored into another cluster: another relay started the new generation");
	else
		log_warning("database restored into another cluster (system_identifier now %s): new changelog generation"
			    " %08lx, tokens from before the restore get ChangeStreamHistoryLost", PQgetvalue(res, 0, 1),
			    strtoul(PQgetvalue(res, 0, 0), NULL, 10));
	read_meta(r);
}

static void restore_check_cb(PgConn *pc, PGresult *res, void *arg)
{
	Relay *r = arg;
	const char *params[1];

	(void)pc;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
		log_warning("cannot compare the cluster's system_identifier with nvsrelay.meta, a restore into another"
			    " cluster would go unnoticed error='%s'", PQresultErrorMessage(res));
	} else if (strcmp(PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1)) != 0) {
		log_warning("database restored into another cluster: nvsrelay.meta names system_identifier %s, this"
			    " cluster is %s (generation %08lx)", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
			    strtoul(PQgetvalue(res, 0, 2), NULL, 10));
		params[0] = PQgetvalue(res, 0, 0);
		pgconn_query_kind(r->main, "meta", restore_sql, 1, params, restored_cb, r);
		return;
	}
	read_meta(r);
}

static void schema_done(void *arg, int status, unsigned applied, const char *msg)
{
	Relay *r = arg;

	if (status == -EPROTO) {
		log_err("schema check failed: %s", msg);
		r->fatal_cb(r->ud, msg);
		return;
	}
	if (status < 0) {
		/* Not a reconnect storm: a missing privilege stays missing, so
		 * retry on the same connection, backing off. */
		r->schema_backoff_ms = r->schema_backoff_ms ? r->schema_backoff_ms * 2 : 1000;
		if (r->schema_backoff_ms > r->cv->reconnect_max_ms)
			r->schema_backoff_ms = r->cv->reconnect_max_ms;
		log_err("schema step failed, retrying in %d ms: %s", r->schema_backoff_ms, msg);
		ev_timer_stop(r->loop, &r->schema_retry);
		ev_timer_set(&r->schema_retry, r->schema_backoff_ms / 1000.0, 0.);
		ev_timer_start(r->loop, &r->schema_retry);
		return;
	}
	r->schema_backoff_ms = 0;
	if (applied)
		log_notice("schema migrated applied=%u", applied);
	else
		log_info("schema is current");
	pgconn_query_kind(r->main, "meta",
			  "SELECT m.system_identifier, (SELECT system_identifier::text FROM pg_control_system()),"
			  " m.generation FROM nvsrelay.meta m", 0, NULL, restore_check_cb, r);
}

static void run_schema(Relay *r)
{
	if (!r->schema_done && !ev_is_active(&r->schema_retry) &&
	    schema_run(r->main, r->cv->schema == SCHEMA_AUTO, schema_done, r) < 0)
		pgconn_reset(r->main, "schema step could not start");
}

static void schema_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	if (pgconn_is_up(((Relay *)w->data)->main))
		run_schema(w->data);
}

static void main_up(PgConn *pc, void *ud)
{
	Relay *r = ud;

	(void)pc;
	if (!r->schema_done) {
		run_schema(r);
		return;
	}
	if (!r->live_known) {
		/* No head yet: the hub must not see a zero position as one. */
		find_head(r);
		return;
	}
	live_kick(r);
	hub_set_head(r->hub, &r->live);   /* waiting subscribers resume */
}

static void main_down(PgConn *pc, void *ud, const char *why)
{
	Relay *r = ud;

	(void)pc;
	(void)why;
	r->live_reading = false;
	reader_done(r);
}

static void listen_done(PgConn *pc, PGresult *res, void *arg)
{
	Relay *r = arg;

	/* Failed by pgconn_free when closing: the ticker is gone already. */
	if (r->closing)
		return;
	if (res && PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_err("LISTEN failed conn=%s error='%s'", pgconn_name(pc), PQresultErrorMessage(res));
		return;
	}
	/* NOTIFYs sent while we were not listening are gone: look now. */
	if (res)
		ticker_listening(r->ticker, true);
	ticker_kick(r->ticker);
	live_kick(r);
}

static void listen_down(PgConn *pc, void *ud, const char *why)
{
	Relay *r = ud;

	(void)pc;
	(void)why;
	ticker_listening(r->ticker, false);
}

static void listen_up(PgConn *pc, void *ud)
{
	pgconn_query_kind(pc, "listen", "LISTEN nvsentinel_changes", 0, NULL, listen_done, ud);
}

static void listen_notify(PgConn *pc, void *ud, const PGnotify *n)
{
	Relay *r = ud;

	(void)pc;
	(void)n;
	log_debug("live path stage=notify t=%.6f", ev_time());
	ticker_kick(r->ticker);
	if (!ticker_is_leader(r->ticker))
		live_kick(r);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Relay *r = w->data;

	(void)loop;
	(void)revents;
	/* The leader's own ticks kick the reader; a standby relay only learns
	 * of ticks by looking. */
	if ((!ticker_is_leader(r->ticker) || !r->ready) && r->schema_done) {
		if (!r->live_known)
			find_head(r);
		else
			live_kick(r);
	}
}

/* --- the hub's source ------------------------------------------------------ */

/* Catch-up pages use the live reader's statements; positions are
 * position.c's, on the main connection, behind the batch reads. */
static int src_read_page(void *impl, const struct token *pos, enum event_table table,
			 source_page_cb cb, void *arg)
{
	return read_page(impl, pos, table, cb, arg);
}

static int src_load_position(void *impl, const char *consumer, source_pos_cb cb, void *arg)
{
	return position_load(((Relay *)impl)->main, ((Relay *)impl)->generation, consumer, cb, arg);
}

static int src_save_position(void *impl, const char *consumer, const struct token *pos,
			     source_done_cb cb, void *arg)
{
	return position_save(((Relay *)impl)->main, consumer, pos, cb, arg);
}

static int src_save_positions(void *impl, size_t n, const char *const *consumers, const struct token *pos,
			      source_done_cb cb, void *arg)
{
	return position_save_many(((Relay *)impl)->main, n, consumers, pos, cb, arg);
}

static int src_position_of_event(void *impl, uint64_t event_id, source_pos_cb cb, void *arg)
{
	return position_of_event(((Relay *)impl)->main, ((Relay *)impl)->generation, event_id, cb, arg);
}

static int src_position_at_time(void *impl, const char *rfc3339, source_pos_cb cb, void *arg)
{
	return position_at_time(((Relay *)impl)->main, ((Relay *)impl)->generation, rfc3339, cb, arg);
}

static int src_position_exists(void *impl, const struct token *pos, source_pos_cb cb, void *arg)
{
	return position_exists(((Relay *)impl)->main, pos, cb, arg);
}

static int src_count_after(void *impl, enum event_table table, const struct token *pos,
			   source_count_cb cb, void *arg)
{
	return position_count(((Relay *)impl)->main,
			      table == TABLE_MAINTENANCE_EVENTS ? "maintenance_events" : "health_events", pos, cb, arg);
}

static const struct source_ops relay_source_ops = {
	.read_page = src_read_page,
	.load_position = src_load_position,
	.save_position = src_save_position,
	.save_positions = src_save_positions,
	.position_of_event = src_position_of_event,
	.position_at_time = src_position_at_time,
	.position_exists = src_position_exists,
	.count_after = src_count_after,
};

const struct source *relay_source(Relay *r)
{
	return &r->source;
}

/* --- lifecycle ---------------------------------------------------------- */

static bool retention_is_leader(void *ud)
{
	return ticker_is_leader(((Relay *)ud)->ticker);
}

static size_t retention_consumers(void *ud, const char **names, size_t max)
{
	return hub_consumers(((Relay *)ud)->hub, names, max);
}

static uint64_t retention_reader_tick(void *ud)
{
	return ((Relay *)ud)->live.tick;
}

static const struct retention_ops retention_ops = {
	.is_leader = retention_is_leader,
	.consumers = retention_consumers,
	.reader_tick = retention_reader_tick,
};

Relay *relay_new(struct ev_loop *loop, const Conf *conf, struct hub *hub,
		 void (*ready)(void *ud), void (*fatal)(void *ud, const char *why), void *ud)
{
	static const struct pgconn_ops main_ops = { .up = main_up, .down = main_down };
	static const struct pgconn_ops listen_ops = { .up = listen_up, .down = listen_down, .notify = listen_notify };
	static const struct ticker_ops ticker_ops = { .tick_sql = batch_tick_sql, .read_after = live_read_after,
						      .ticked = ticked, .reading = live_is_reading };
	Relay *r = calloc(1, sizeof(*r));
	struct pgconn_cfg pcfg;
	bool oom;
	double iv;

	if (!r)
		return NULL;
	r->loop = loop;
	r->conf = conf;
	r->cv = conf_values(conf);
	r->hub = hub;
	r->ready_cb = ready;
	r->fatal_cb = fatal;
	r->ud = ud;
	r->source.ops = &relay_source_ops;
	r->source.impl = r;
	conf_libpq_params(conf, &r->keys, &r->vals);
	pcfg.keys = r->keys;
	pcfg.vals = r->vals;
	pcfg.backoff_min_ms = r->cv->reconnect_min_ms;
	pcfg.backoff_max_ms = r->cv->reconnect_max_ms;
	pcfg.connect_timeout_s = r->cv->connect_timeout_s;
	/* JIT adds tens of milliseconds to the batch query for nothing. */
	pcfg.session_sql = "SET jit = off";
	r->main = pgconn_new(loop, "main", &pcfg, &main_ops, r);
	r->listen = pgconn_new(loop, "listen", &pcfg, &listen_ops, r);
	/* Over a large changelog the plan cache planned the tick statement on
	 * every call (0.45 ms, 0.13 ms to run at 1M rows) for no faster plan. */
	pcfg.session_sql = "SET jit = off; SET synchronous_commit = on; SET plan_cache_mode = force_generic_plan";
	r->ticker = ticker_new(loop, r->cv, &pcfg, &ticker_ops, r);
	pcfg.session_sql = "SET jit = off";
	r->retention = retention_new(loop, r->cv, &pcfg, &retention_ops, r);
	r->replica = replica_new(loop, conf, &pcfg, &oom);
	if (!r->main || !r->listen || !r->ticker || !r->retention || oom) {
		relay_free(r);
		return NULL;
	}
	iv = r->cv->poll_interval_ms / 1000.0;
	ev_timer_init(&r->poll, poll_cb, iv, iv);
	r->poll.data = r;
	ev_init(&r->schema_retry, schema_retry_cb);
	r->schema_retry.data = r;
	return r;
}

void relay_free(Relay *r)
{
	if (!r)
		return;
	r->closing = true;
	ev_timer_stop(r->loop, &r->poll);
	ev_timer_stop(r->loop, &r->schema_retry);
	retention_free(r->retention);
	ticker_free(r->ticker);
	replica_free(r->replica);
	pgconn_free(r->main);
	pgconn_free(r->listen);
	free(r);
}

void relay_start(Relay *r)
{
	pgconn_start(r->main);
	pgconn_start(r->listen);
	replica_start(r->replica);
	ev_timer_start(r->loop, &r->poll);
}

/* --- operations ------------------------------------------------------------ */

void relay_get_status(const Relay *r, struct relay_status *st)
{
	if (!r) {   /* chained to an upstream: no PostgreSQL side */
		memset(st, 0, sizeof(*st));
		st->head_age = -1;
		return;
	}
	st->ready = r->ready;
	st->main_up = pgconn_is_up(r->main);
	st->leader = ticker_is_leader(r->ticker);
	st->generation = r->generation;
	st->head = r->live;
	st->head_age = r->ready ? ev_now(r->loop) - r->head_moved : -1;
}

struct pgconn *relay_main_conn(Relay *r)
{
	return r ? r->main : NULL;
}

void relay_reconfigure(Relay *r)
{
	/* The interval is read when the timer is re-armed; the other runtime
	 * keys are looked up on every use. */
	r->poll.repeat = r->cv->poll_interval_ms / 1000.0;
	if (ev_is_active(&r->poll))
		ev_timer_again(r->loop, &r->poll);
	ticker_reconfigure(r->ticker);
}
