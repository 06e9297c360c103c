/*
 * retention.c - prunes consumed changelog rows and old ticks.
 *
 * The position a durable consumer needs is its stored token's tick T: batch
 * T is the rows visible in tick T and not in T-1, so ticks from T-1 on and
 * the rows not yet visible in tick T-1 must stay.  The horizon is the lowest
 * such tick over consumers seen within consumer_idle_hours (or connected to
 * any relay, which refreshes last_updated), raised by the age and row caps,
 * and never past the ticks of the last retention_floor_s: standby relays and
 * in-memory subscribers read a little behind the head.  Nor past the tick
 * this relay's own reader is in: a batch of millions of rows takes it
 * minutes, and the caps count rows written after it meanwhile.
 *
 * A reader behind the horizon (an in-memory subscriber past the floor, a
 * consumer the caps gave up on) must learn that its history is gone, never
 * walk on over rows deleted under it.  Readers find that out by their
 * tick: a tick that no longer exists is ChangeStreamHistoryLost.  So the
 * ticks below the horizon tick K go first, and only then the rows, and only
 * those of batches before K (xid below the xmin of the tick before K): a
 * reader still in batch K's predecessor has lost its tick before any of
 * its rows go, and one in batch K keeps its rows.  Rows are deleted in
 * chunks, each its own short transaction; everything xmin leaves behind
 * goes in a later round.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "log.h"
#include "metrics.h"
#include "retention.h"

#define MAX_CONSUMERS 1024
#define MAX_CHUNKS_PER_ROUND 200

/* $1 idle hours, $2 age cap hours (0 none), $3 row cap (0 none), $4 floor
 * seconds, $5 the tick of this relay's reader (0 none).  Returns the
 * lowest tick to keep (NULL: nothing to prune), the oldest tick now, and the
 * idle consumers that would have held it back. */
static const char horizon_sql[] =
	"WITH g AS (SELECT lpad(to_hex(generation), 8, '0') AS gen FROM nvsrelay.meta),"
	" head AS (SELECT max(tick_id) AS t, min(tick_id) AS lo FROM nvsrelay.tick),"
	" held AS (SELECT r.client_name,"
	"   ('x' || substr(r.resume_token->>'token', 9, 16))::bit(64)::bigint AS t,"
	"   r.last_updated > now() - make_interval(hours => $1::int) AS active"
	"  FROM resume_tokens r, g WHERE r.resume_token ? 'token'"
	"   AND substr(r.resume_token->>'token', 1, 8) = g.gen),"
	" want AS (SELECT least("
	"   greatest(least((SELECT min(t) FROM held WHERE active), (SELECT t FROM head)),"
	"    (SELECT max(tick_id) FROM nvsrelay.tick WHERE $2::int > 0"
	"      AND created_at < now() - make_interval(hours => $2::int)),"
	"    (SELECT min(tick_id) FROM nvsrelay.tick WHERE $3::bigint > 0"
	"      AND max_id >= (SELECT coalesce(max(id), 0) FROM datastore_changelog) - $3::bigint)),"
	"   (SELECT min(tick_id) FROM nvsrelay.tick WHERE created_at >= now() - make_interval(secs => $4::int)),"
	"   nullif($5::bigint, 0), (SELECT t FROM head)) AS t),"
	/* The batch of tick t needs the tick before it (ids have gaps). */
	" keep AS (SELECT (SELECT max(tick_id) FROM nvsrelay.tick WHERE tick_id < w.t) AS keep FROM want w),"
	" pred AS (SELECT k.snap, k.max_id FROM nvsrelay.tick k, keep WHERE k.tick_id < keep.keep"
	"  ORDER BY k.tick_id DESC LIMIT 1)"
	" SELECT CASE WHEN keep.keep > head.lo THEN keep.keep END, head.lo,"
	"  (SELECT string_agg(client_name, ',') FROM held WHERE NOT active AND t <= keep.keep),"
	/* A component still on NVSentinel's own watcher reads the changelog
	 * by id: rows after its eventID stay.  Nor is any row to go above the
	 * predecessor's max_id: every row visible in its snapshot is below it. */
	"  least(coalesce((SELECT min((r.resume_token->>'eventID')::bigint) FROM resume_tokens r"
	"   WHERE NOT r.resume_token ? 'token' AND jsonb_typeof(r.resume_token->'eventID') = 'number'"
	"    AND r.last_updated > now() - make_interval(hours => $1::int)), 9223372036854775807),"
	"   (SELECT max_id FROM pred)),"
	/* Rows of batches before the kept tick: below the xmin of its predecessor. */
	"  (SELECT pg_snapshot_xmin(snap) FROM pred)::text"
	" FROM keep, head";

struct retention {
	struct ev_loop *loop;
	const struct conf_values *cv;
	struct retention_ops ops;
	void *ud;
	PgConn *pc;
	ev_timer timer;
	bool busy;
	char keep[24];          /* tick being pruned down to */
	char below_xid[24];     /* rows of xids below this go (batches before keep) */
	char max_id[24];        /* and no row above this id (NVSentinel watchers) */
	long long after;        /* the round's chunks walk the ids up from here */
	int chunks;
	long long deleted;
	char *warned;           /* idle consumers already logged, comma list */
};

static void round_done(Retention *rt)
{
	rt->busy = false;
	if (rt->deleted > 0)
		log_info("pruned changelog rows=%lld below_tick=%s", rt->deleted, rt->keep);
}

static void delete_chunk(Retention *rt);

static void chunk_cb(PgConn *pc, PGresult *res, void *arg)
{
	Retention *rt = arg;
	long n;

	(void)pc;
	if (!res) {
		rt->busy = false;
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_warning("pruning the changelog failed error='%s'", PQresultErrorMessage(res));
		round_done(rt);
		return;
	}
	n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (!PQgetisnull(res, 0, 1))
		rt->after = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	rt->deleted += n;
	metrics_add(M_RETENTION_PRUNED, NULL, (double)n);
	if (n >= rt->cv->prune_chunk_rows && ++rt->chunks < MAX_CHUNKS_PER_ROUND) {
		delete_chunk(rt);
		return;
	}
	round_done(rt);
}

/*
 * Rows of transactions older than that xmin are visible in the tick before
 * the kept one, so they belong to batches before it (rows without an xid
 * predate the relay).  Each chunk walks the primary key on from where the
 * last one stopped: "xid < x" alone was a sequential scan from the start of
 * the heap, and once a large backlog had gone every chunk read all of its
 * emptied pages again (after 1M rows, 210 ms and 75k buffers a chunk, and
 * the live path starved beside it).
 */
static void delete_chunk(Retention *rt)
{
	char chunk[16], after[24];
	const char *params[4] = { rt->below_xid, chunk, rt->max_id, after };

	snprintf(chunk, sizeof(chunk), "%d", rt->cv->prune_chunk_rows);
	snprintf(after, sizeof(after), "%lld", rt->after);
	if (pgconn_query(rt->pc,
			 "WITH d AS (DELETE FROM datastore_changelog WHERE id IN (SELECT id FROM datastore_changelog"
			 " WHERE id > $4::bigint AND id <= $3::bigint AND (xid < $1::xid8 OR xid IS NULL)"
			 " ORDER BY id LIMIT $2::integer) RETURNING id)"
			 " SELECT count(*), max(id) FROM d",
			 4, params, chunk_cb, rt) < 0)
		rt->busy = false;
}

/* Ticks go first: a reader whose batch loses rows has lost its tick. */
static void ticks_cb(PgConn *pc, PGresult *res, void *arg)
{
	Retention *rt = arg;

	(void)pc;
	if (!res) {
		rt->busy = false;
		return;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_warning("pruning ticks failed error='%s'", PQresultErrorMessage(res));
		round_done(rt);
		return;
	}
	delete_chunk(rt);
}

static bool listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	const char *p = list;

	while (p && (p = strstr(p, name))) {
		if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
		p += n;
	}
	return false;
}

static void warn_idle(Retention *rt, const char *names)
{
	char *copy = strdup(names), *save = NULL, *name;

	if (!copy)
		return;
	for (name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		size_t old = rt->warned ? strlen(rt->warned) : 0;
		char *w;

		if (listed(rt->warned, name))
			continue;
		log_warning("consumer idle for more than %d hours no longer holds the changelog back consumer='%s'",
			    rt->cv->consumer_idle_hours, name);
		if ((w = realloc(rt->warned, old + strlen(name) + 2))) {
			snprintf(w + old, strlen(name) + 2, "%s%s", old ? "," : "", name);
			rt->warned = w;
		}
	}
	free(copy);
}

static void horizon_cb(PgConn *pc, PGresult *res, void *arg)
{
	Retention *rt = arg;
	const char *params[1];

	if (!res) {
		rt->busy = false;
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_warning("retention horizon query failed error='%s'", PQresultErrorMessage(res));
		rt->busy = false;
		return;
	}
	if (!PQgetisnull(res, 0, 2))
		warn_idle(rt, PQgetvalue(res, 0, 2));
	if (PQgetisnull(res, 0, 0)) {
		rt->busy = false;
		return;
	}
	snprintf(rt->keep, sizeof(rt->keep), "%s", PQgetvalue(res, 0, 0));
	snprintf(rt->max_id, sizeof(rt->max_id), "%s", PQgetvalue(res, 0, 3));
	snprintf(rt->below_xid, sizeof(rt->below_xid), "%s", PQgetvalue(res, 0, 4));
	rt->chunks = 0;
	rt->deleted = 0;
	rt->after = 0;
	params[0] = rt->keep;
	if (pgconn_query(pc, "DELETE FROM nvsrelay.tick WHERE tick_id < $1::bigint", 1, params, ticks_cb, rt) < 0)
		rt->busy = false;
}

static void heartbeat_cb(PgConn *pc, PGresult *res, void *arg)
{
	Retention *rt = arg;
	char idle[16], age[16], rows[24], floor_s[16], reader[24];
	const char *params[5] = { idle, age, rows, floor_s, reader };

	if (!res) {
		rt->busy = false;
		return;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		log_warning("consumer heartbeat failed error='%s'", PQresultErrorMessage(res));
	if (!rt->ops.is_leader(rt->ud)) {
		rt->busy = false;
		return;
	}
	snprintf(idle, sizeof(idle), "%d", rt->cv->consumer_idle_hours);
	snprintf(age, sizeof(age), "%d", rt->cv->retention_max_age_hours);
	snprintf(rows, sizeof(rows), "%d", rt->cv->retention_max_rows);
	snprintf(floor_s, sizeof(floor_s), "%d", rt->cv->retention_floor_s);
	snprintf(reader, sizeof(reader), "%" PRIu64, rt->ops.reader_tick(rt->ud));
	if (pgconn_query(pc, horizon_sql, 5, params, horizon_cb, rt) < 0)
		rt->busy = false;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Retention *rt = w->data;
	const char *names[MAX_CONSUMERS];
	size_t n, i;
	cJSON *arr;
	char *json;
	const char *params[1];

	(void)loop;
	(void)revents;
	if (rt->busy || !pgconn_is_up(rt->pc))
		return;
	/* Connected consumers are alive whatever their last ack: refresh them
	 * so a quiet stream does not look abandoned. */
	n = rt->ops.consumers(rt->ud, names, MAX_CONSUMERS);
	arr = cJSON_CreateArray();
	for (i = 0; arr && i < n; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(names[i]));
	json = arr ? cJSON_PrintUnformatted(arr) : NULL;
	cJSON_Delete(arr);
	if (!json)
		return;
	params[0] = json;
	if (pgconn_query(rt->pc,
			 "UPDATE resume_tokens SET last_updated = now()"
			 " WHERE client_name IN (SELECT jsonb_array_elements_text($1::jsonb))",
			 1, params, heartbeat_cb, rt) == 0)
		rt->busy = true;
	free(json);
}

Retention *retention_new(struct ev_loop *loop, const struct conf_values *cv, const struct pgconn_cfg *pcfg,
			 const struct retention_ops *ops, void *ud)
{
	static const struct pgconn_ops pops = { 0 };
	Retention *rt = calloc(1, sizeof(*rt));

	if (!rt)
		return NULL;
	rt->loop = loop;
	rt->cv = cv;
	rt->ops = *ops;
	rt->ud = ud;
	if (!(rt->pc = pgconn_new(loop, "janitor", pcfg, &pops, rt))) {
		free(rt);
		return NULL;
	}
	ev_timer_init(&rt->timer, timer_cb, cv->prune_interval_s, cv->prune_interval_s);
	rt->timer.data = rt;
	return rt;
}

void retention_start(Retention *rt)
{
	pgconn_start(rt->pc);
	ev_timer_start(rt->loop, &rt->timer);
}

void retention_free(Retention *rt)
{
	if (!rt)
		return;
	ev_timer_stop(rt->loop, &rt->timer);
	pgconn_free(rt->pc);
	free(rt->warned);
	free(rt);
}
