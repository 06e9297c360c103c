/*
 * pgstats.c - the PostgreSQL side of /metrics.
 *
 * One statement per sample, on the main connection (queued behind batch
 * reads, never beside them), answering (metric, label, value) rows.  Every
 * part is cheap by construction: sizes from pg_class.reltuples and
 * pg_total_relation_size rather than count(*), the cumulative statistics
 * views, no scans of user tables.  A failed sample is logged at debug level
 * and the previous values stay until the next one.
 *
 * It also watches what capture depends on, because nothing else would notice
 * it gone: a table whose trigger was dropped or disabled (NVSentinel's own
 * DDL drops and recreates it), or a changelog whose xid default was removed,
 * produces no events at all, and the stream just looks quiet.
 *
 * Seeing other roles' transactions in pg_stat_activity needs
 * pg_read_all_stats; without it the oldest-transaction age covers the
 * relay's role only.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "pgstats.h"

#define N_TABLES 5
#define N_CAPTURED 2

static const char *const tables[N_TABLES] = {
	"datastore_changelog", "health_events", "maintenance_events", "resume_tokens", "nvsrelay.tick"
};

static const char *const captured[N_CAPTURED] = { "health_events", "maintenance_events" };

static const char stats_sql[] =
	"WITH t(name) AS (VALUES ('datastore_changelog'), ('health_events'), ('maintenance_events'),"
	"  ('resume_tokens'), ('nvsrelay.tick')),"
	" c AS (SELECT t.name, to_regclass(t.name) AS oid FROM t)"
	" SELECT 'rows', c.name, (CASE WHEN r.reltuples >= 0 THEN r.reltuples"
	"  ELSE pg_stat_get_live_tuples(c.oid) END)::float8"
	"  FROM c JOIN pg_class r ON r.oid = c.oid"
	" UNION ALL SELECT 'bytes', c.name, pg_total_relation_size(c.oid)::float8 FROM c WHERE c.oid IS NOT NULL"
	" UNION ALL SELECT 'oldest_xact', NULL,"
	"  coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8"
	"  FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database()"
	" UNION ALL SELECT 'notify_queue', NULL, pg_notification_queue_usage()"
	" UNION ALL SELECT 'xact_commit', NULL, xact_commit::float8 FROM pg_stat_database"
	"  WHERE datname = current_database()"
	" UNION ALL SELECT 'index_hit', NULL,"
	"  (sum(idx_blks_hit) / nullif(sum(idx_blks_hit + idx_blks_read), 0))::float8"
	"  FROM pg_statio_user_indexes"
	" UNION ALL SELECT 'replicas', NULL, count(*)::float8 FROM pg_stat_replication"
	" UNION ALL SELECT 'replication_lag', NULL, coalesce(max(extract(epoch FROM replay_lag)), 0)::float8"
	"  FROM pg_stat_replication"
	/* An enabled AFTER ROW trigger for INSERT, UPDATE and DELETE calling
	 * log_table_changes (tgtype bits: ROW 1, INSERT 4, DELETE 8, UPDATE 16),
	 * and the xid default that puts each row into a batch. */
	" UNION ALL SELECT 'capture', t.tbl, (EXISTS (SELECT 1 FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid"
	"   WHERE g.tgrelid = to_regclass(t.tbl) AND NOT g.tgisinternal AND g.tgenabled IN ('O', 'A')"
	"    AND g.tgtype & 31 = 29 AND p.proname = 'log_table_changes')"
	"  AND EXISTS (SELECT 1 FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
	"   WHERE d.adrelid = to_regclass('datastore_changelog') AND a.attname = 'xid'"
	"    AND pg_get_expr(d.adbin, d.adrelid) LIKE '%pg_current_xact_id()%'))::int::float8"
	"  FROM (VALUES ('health_events'), ('maintenance_events')) t(tbl)";

struct pgstats;

/* One sample in flight; outlives a freed PgStats until its answer. */
struct sample {
	struct pgstats *ps;
};

struct pgstats {
	struct ev_loop *loop;
	const struct conf_values *cv;
	Relay *relay;
	ev_timer timer;
	struct sample *pending;
	double last_bytes[N_TABLES];
	ev_tstamp last_at[N_TABLES];
	int interval;               /* stats_interval_s the timer was armed with */
	int capture[N_CAPTURED];    /* last seen: -1 unknown, 0 off, 1 on */
};

static int table_index(const char *name)
{
	for (int i = 0; i < N_TABLES; i++)
		if (strcmp(tables[i], name) == 0)
			return i;
	return -1;
}

/* Said once per change, not on every sample. */
static void capture_seen(PgStats *ps, const char *table, double v)
{
	int on = v > 0.5;

	for (int i = 0; i < N_CAPTURED; i++) {
		if (strcmp(captured[i], table) != 0 || ps->capture[i] == on)
			continue;
		if (!on)
			log_err("capture is off for table %s: its trigger calling log_table_changes() (AFTER INSERT OR "
				"UPDATE OR DELETE, FOR EACH ROW, enabled) or the xid default of datastore_changelog is "
				"missing, so its changes are not captured and never streamed; `nvsrelayd --migrate` "
				"or a restart with schema = auto reinstalls them", table);
		else if (ps->capture[i] == 0)
			log_notice("capture is on again for table %s", table);
		ps->capture[i] = on;
	}
}

static void apply_row(PgStats *ps, const char *what, const char *label, double v, double *replicas)
{
	ev_tstamp now = ev_now(ps->loop);
	int i;

	if (strcmp(what, "rows") == 0) {
		metrics_set(M_PG_TABLE_ROWS, label, v);
	} else if (strcmp(what, "bytes") == 0) {
		metrics_set(M_PG_TABLE_BYTES, label, v);
		if ((i = table_index(label)) < 0)
			return;
		if (ps->last_at[i] > 0 && now > ps->last_at[i])
			metrics_set(M_PG_TABLE_GROWTH, label, (v - ps->last_bytes[i]) / (now - ps->last_at[i]));
		ps->last_bytes[i] = v;
		ps->last_at[i] = now;
	} else if (strcmp(what, "oldest_xact") == 0) {
		metrics_set(M_PG_OLDEST_XACT, NULL, v);
	} else if (strcmp(what, "notify_queue") == 0) {
		metrics_set(M_PG_NOTIFY_QUEUE, NULL, v);
	} else if (strcmp(what, "xact_commit") == 0) {
		metrics_set(M_PG_XACT_COMMIT, NULL, v);
	} else if (strcmp(what, "index_hit") == 0) {
		metrics_set(M_PG_INDEX_HIT, NULL, v);
	} else if (strcmp(what, "replicas") == 0) {
		metrics_set(M_PG_REPLICAS, NULL, v);
		*replicas = v;
	} else if (strcmp(what, "replication_lag") == 0 && *replicas > 0) {
		metrics_set(M_PG_REPLICATION_LAG, NULL, v);
	} else if (strcmp(what, "capture") == 0 && label) {
		metrics_set(M_CAPTURE_ACTIVE, label, v);
		capture_seen(ps, label, v);
	}
}

static void sample_done(PgConn *pc, PGresult *res, void *arg)
{
	struct sample *s = arg;
	PgStats *ps = s->ps;
	double replicas = 0;

	(void)pc;
	free(s);
	if (!ps)
		return;
	ps->pending = NULL;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_debug("statistics sample failed error='%s'", PQresultErrorMessage(res));
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 0) || PQgetisnull(res, i, 2))
			continue;
		apply_row(ps, PQgetvalue(res, i, 0), PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1),
			  strtod(PQgetvalue(res, i, 2), NULL), &replicas);
	}
	/* Without replicas there is no lag to report, not a lag of 0. */
	if (replicas == 0)
		metrics_clear(M_PG_REPLICATION_LAG);
	metrics_set(M_PG_STATS_TIME, NULL, ev_now(ps->loop));
}

static void sample(PgStats *ps)
{
	PgConn *pc = relay_main_conn(ps->relay);
	struct sample *s;

	if (ps->pending || !pc || !pgconn_is_up(pc) || !(s = calloc(1, sizeof(*s))))
		return;
	s->ps = ps;
	if (pgconn_query_kind(pc, "stats", stats_sql, 0, NULL, sample_done, s) < 0) {
		free(s);
		return;
	}
	ps->pending = s;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	sample(w->data);
}

static void arm(PgStats *ps)
{
	ps->interval = ps->cv->stats_interval_s;
	ev_timer_stop(ps->loop, &ps->timer);
	if (ps->interval <= 0)
		return;
	/* The first sample soon after start, so /metrics is complete early. */
	ev_timer_set(&ps->timer, 1.0, ps->interval);
	ev_timer_start(ps->loop, &ps->timer);
}

PgStats *pgstats_new(struct ev_loop *loop, const struct conf_values *cv, Relay *r)
{
	PgStats *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->loop = loop;
	ps->cv = cv;
	ps->relay = r;
	for (int i = 0; i < N_CAPTURED; i++)
		ps->capture[i] = -1;
	ev_init(&ps->timer, timer_cb);
	ps->timer.data = ps;
	arm(ps);
	return ps;
}

void pgstats_free(PgStats *ps)
{
	if (!ps)
		return;
	ev_timer_stop(ps->loop, &ps->timer);
	if (ps->pending)
		ps->pending->ps = NULL;
	free(ps);
}

void pgstats_reconfigure(PgStats *ps)
{
	if (ps && ps->cv->stats_interval_s != ps->interval)
		arm(ps);
}
