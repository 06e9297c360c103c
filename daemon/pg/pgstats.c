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
 * And it reads resume_tokens, because a durable consumer that is not
 * connected (a component crash-looping, or gone) has no subscription for the
 * hub to report: its lag, from its stored position, and when it was last
 * seen keep its series alive, so an alert on it fires instead of the series
 * vanishing.  Only consumers seen within consumer_idle_hours, the ones that
 * hold the changelog back, most recently seen first, at most
 * METRICS_MAX_CONSUMERS of them.  Their lag in events is the distance in
 * changelog ids (all tables, an estimate: ids have gaps), cheap whatever the
 * backlog; the hub's exact per-table lag replaces it while connected.
 *
 * Seeing other roles' transactions in pg_stat_activity needs
 * pg_read_all_stats; without it the oldest-transaction age covers the
 * relay's role only.
 */
#include <stdbool.h>
#include <stdio.h>
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
	" c AS (SELECT t.name, to_regclass(t.name) AS oid FROM t),"
	/* $1 consumer_idle_hours, $2 how many consumers at most. */
	" k AS (SELECT r.client_name AS name, (r.resume_token->>'eventID')::bigint AS eid,"
	"  extract(epoch FROM clock_timestamp() - r.last_updated)::float8 AS seen"
	"  FROM resume_tokens r WHERE (r.resume_token->>'eventID') ~ '^[0-9]{1,18}$'"
	"   AND r.last_updated > now() - make_interval(hours => $1::int)"
	"  ORDER BY r.last_updated DESC, r.client_name LIMIT $2::int),"
	" hd AS (SELECT max(id) AS id FROM datastore_changelog)"
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
	"  FROM (VALUES ('health_events'), ('maintenance_events')) t(tbl)"
	" UNION ALL SELECT 'consumer_lag_events', k.name, greatest(hd.id - k.eid, 0)::float8 FROM k, hd"
	" UNION ALL SELECT 'consumer_lag_seconds', k.name, coalesce(extract(epoch FROM clock_timestamp() -"
	"  (SELECT d.changed_at FROM datastore_changelog d WHERE d.id > k.eid ORDER BY d.id LIMIT 1)), 0)::float8 FROM k"
	" UNION ALL SELECT 'consumer_seen', k.name, k.seen FROM k"
	" UNION ALL (SELECT 'retention_holder', k.name, 1::float8 FROM k ORDER BY k.eid, k.name LIMIT 1)"
	" UNION ALL SELECT 'oldest_change', NULL, coalesce(extract(epoch FROM clock_timestamp() -"
	"  (SELECT d.changed_at FROM datastore_changelog d ORDER BY d.id LIMIT 1)), 0)::float8";

/* A durable consumer as resume_tokens had it at the last sample. */
struct stored {
	char *name;
	double lag_events;
	double lag_seconds;
	double seen;                /* seconds since last_updated */
};

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
	struct stored *consumers;   /* of the last sample */
	size_t nconsumers;
	size_t nfilling;            /* while a sample's rows are applied */
	ev_tstamp consumers_at;     /* when they were sampled */
	char degraded[160];         /* pgstats_degraded's answer */
};

static void consumers_free(struct stored *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].name);
	free(c);
}

/* The entry for name in the table being filled, added if need be. */
static struct stored *stored_get(PgStats *ps, struct stored *c, const char *name)
{
	for (size_t i = 0; i < ps->nfilling; i++)
		if (strcmp(c[i].name, name) == 0)
			return &c[i];
	if (ps->nfilling >= METRICS_MAX_CONSUMERS || !(c[ps->nfilling].name = strdup(name)))
		return NULL;
	return &c[ps->nfilling++];
}

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

static void apply_row(PgStats *ps, const char *what, const char *label, double v, double *replicas,
		      struct stored *fill)
{
	ev_tstamp now = ev_now(ps->loop);
	struct stored *st;
	int i;

	if (strncmp(what, "consumer_", 9) == 0) {
		if (!fill || !label || !(st = stored_get(ps, fill, label)))
			return;
		if (strcmp(what, "consumer_lag_events") == 0)
			st->lag_events = v;
		else if (strcmp(what, "consumer_lag_seconds") == 0)
			st->lag_seconds = v;
		else if (strcmp(what, "consumer_seen") == 0)
			st->seen = v;
	} else if (strcmp(what, "retention_holder") == 0 && label) {
		metrics_set(M_RETENTION_HOLDER, label, 1);
	} else if (strcmp(what, "oldest_change") == 0) {
		metrics_set(M_RETENTION_OLDEST, NULL, v);
	} else if (strcmp(what, "rows") == 0) {
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
	struct stored *fill;
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
	/* Both are replaced whole: a consumer deleted from resume_tokens (or
	 * idle too long) goes, and so does a holder that moved on. */
	fill = calloc(METRICS_MAX_CONSUMERS, sizeof(*fill));
	ps->nfilling = 0;
	metrics_clear(M_RETENTION_HOLDER);
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, 0) || PQgetisnull(res, i, 2))
			continue;
		apply_row(ps, PQgetvalue(res, i, 0), PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1),
			  strtod(PQgetvalue(res, i, 2), NULL), &replicas, fill);
	}
	/* Out of memory: the previous table stays. */
	if (fill) {
		consumers_free(ps->consumers, ps->nconsumers);
		ps->consumers = fill;
		ps->nconsumers = ps->nfilling;
		ps->consumers_at = ev_now(ps->loop);
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
	char idle[16], max[16];
	const char *params[2] = { idle, max };

	if (ps->pending || !pc || !pgconn_is_up(pc) || !(s = calloc(1, sizeof(*s))))
		return;
	s->ps = ps;
	snprintf(idle, sizeof(idle), "%d", ps->cv->consumer_idle_hours);
	snprintf(max, sizeof(max), "%d", METRICS_MAX_CONSUMERS);
	if (pgconn_query_kind(pc, "stats", stats_sql, 2, params, sample_done, s) < 0) {
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
	consumers_free(ps->consumers, ps->nconsumers);
	free(ps);
}

void pgstats_consumer_gauges(const PgStats *ps)
{
	double age;

	if (!ps)
		return;
	/* The sample is up to stats_interval_s old: ages move on meanwhile. */
	age = ev_now(ps->loop) - ps->consumers_at;
	for (size_t i = 0; i < ps->nconsumers; i++) {
		const struct stored *c = &ps->consumers[i];

		metrics_set(M_CONSUMER_SEEN_AGE, c->name, c->seen + age);
		if (metrics_get(M_CONSUMER_CONNECTED, c->name) > 0)
			continue;
		metrics_max(M_CONSUMER_CONNECTED, c->name, 0);
		metrics_max(M_CONSUMER_LAG_EVENTS, c->name, c->lag_events);
		metrics_max(M_CONSUMER_LAG_SECONDS, c->name, c->lag_seconds > 0 ? c->lag_seconds + age : 0);
	}
}

const char *pgstats_degraded(PgStats *ps)
{
	size_t n = 0;

	if (!ps)
		return NULL;
	ps->degraded[0] = '\0';
	for (int i = 0; i < N_CAPTURED; i++) {
		if (ps->capture[i] != 0)
			continue;
		n += (size_t)snprintf(ps->degraded + n, n < sizeof(ps->degraded) ? sizeof(ps->degraded) - n : 0,
				      "%s%s", n ? ", " : "capture is off for ", captured[i]);
		if (n >= sizeof(ps->degraded))
			n = sizeof(ps->degraded) - 1;
	}
	if (!n)
		return NULL;
	snprintf(ps->degraded + n, sizeof(ps->degraded) - n, " (trigger or xid default missing or disabled)");
	return ps->degraded;
}

void pgstats_reconfigure(PgStats *ps)
{
	if (ps && ps->cv->stats_interval_s != ps->interval)
		arm(ps);
}
