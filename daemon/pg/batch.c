/*
 * batch.c - the statements that read batches (DESIGN section 4): the first
 * page of a batch, the pages after it, the history before the first tick,
 * and the tick that reads its own batch's first page; and the events of a
 * page's rows.  relay.c sends them (the tick statement through ticker.c);
 * what a batch is lives here, so every reader of a batch reads the same one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "batch.h"
#include "log.h"

/* The columns of one changelog row as event_build wants them: clusterTime
 * in UTC, and for health_events the stored document plus its record id. */
#define ROW_COLUMNS \
	"c.id, c.table_name, c.record_id::text, c.operation," \
	" to_char(c.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')," \
	" (CASE WHEN c.table_name = 'health_events'" \
	"  THEN (c.new_values->'document') || jsonb_build_object('id', c.record_id)" \
	"  ELSE c.new_values END)::text," \
	" (CASE WHEN c.table_name = 'health_events'" \
	"  THEN (c.old_values->'document') || jsonb_build_object('id', c.record_id)" \
	"  ELSE c.old_values END)::text"

/* What relay.c's page_cb reads from the page, walk and tick statements: a header row (id NULL)
 * with the batch's end tick (s.t, NULL when there is none), what tick $1
 * is ('y' written, 'l' lost: not written but inside the kept range, NULL
 * gone or never) and the oldest tick, then the rows, each with the end tick.
 * A lost tick is one a server crash took before its asynchronous commit
 * reached the disk (ticker.c): the batch after it is then the batch after
 * the tick before it, which holds the lost one's rows again. */
#define PAGE_HEAD \
	" SELECT (SELECT t FROM s), NULL::bigint," \
	"  (SELECT CASE WHEN EXISTS (SELECT 1 FROM nvsrelay.tick WHERE tick_id = $1::bigint) THEN 'y'" \
	"   WHEN EXISTS (SELECT 1 FROM nvsrelay.tick WHERE tick_id < $1::bigint) THEN 'l' END)," \
	"  (SELECT min(tick_id) FROM nvsrelay.tick)::text, NULL, NULL, NULL, NULL" \
	" UNION ALL SELECT (SELECT t FROM s), " ROW_COLUMNS

/*
 * One page of one batch.  $1 tick, $2 true = "the batch after tick $1",
 * false = "the batch ending at tick $1"; $3 rows after this changelog id;
 * $4 page size; $5 table or NULL.  The first row (id NULL) is a header: the
 * batch's end tick (NULL when there is none yet) and whether tick $1 exists.
 * The batch is the range of xids that started after the previous tick and
 * are visible in this one, plus the xids in progress at the previous tick
 * that this one sees committed (form B of the tick prototype: its cost does
 * not grow with old transactions elsewhere in the cluster).
 *
 * Xids are sorted out before any row is touched, because an index scan
 * visits every row in its range, visible or not: a transaction of 200k
 * uncommitted rows made every read over it cost 100+ ms.  So the range is
 * cut around the xids in progress at this tick (r: each one and the next;
 * within the range, "not in progress" is exactly "visible in this tick"),
 * one index range scan per gap, and of the previous tick's xids in progress
 * only those this tick sees committed are looked up, as an array (one index
 * scan; as a set-returning function in a join the planner, blind to their
 * number, hashed the whole changelog instead).  The gaps are a LATERAL
 * subquery kept apart by OFFSET 0: joined plainly, the planner may prefer
 * to walk the primary key from $3 and test every row against every gap.
 */
#define BATCH_ROWS(COND, LIMIT) \
	" r AS (SELECT x, lead(x) OVER (ORDER BY x) AS nx FROM s, pg_snapshot_xip(s.ns) x WHERE x >= s.lo)," \
	" c AS (SELECT c.* FROM s, datastore_changelog c" \
	"  WHERE c.xid >= s.lo AND c.xid < coalesce((SELECT min(x) FROM r), s.hi) AND " COND \
	"  UNION ALL SELECT c.* FROM s, r, LATERAL (SELECT * FROM datastore_changelog c" \
	"   WHERE c.xid > r.x AND c.xid < coalesce(r.nx, s.hi) AND " COND " OFFSET 0) c" \
	"  UNION ALL SELECT c.* FROM s, datastore_changelog c" \
	"  WHERE c.xid = ANY (ARRAY(SELECT x FROM pg_snapshot_xip(s.ps) x WHERE pg_visible_in_snapshot(x, s.ns)))" \
	"   AND " COND \
	"  ORDER BY id LIMIT " LIMIT ")"

const char batch_page_sql[] =
	"WITH n AS (SELECT tick_id, snap FROM nvsrelay.tick WHERE tick_id = CASE WHEN $2::boolean"
	"  THEN (SELECT min(tick_id) FROM nvsrelay.tick WHERE tick_id > $1::bigint) ELSE $1::bigint END),"
	" s AS (SELECT n.tick_id AS t, p.snap AS ps, n.snap AS ns,"
	"   pg_snapshot_xmax(p.snap) AS lo, pg_snapshot_xmax(n.snap) AS hi FROM n, nvsrelay.tick p"
	"  WHERE p.tick_id = (SELECT max(tick_id) FROM nvsrelay.tick WHERE tick_id < n.tick_id)),"
	BATCH_ROWS("c.id > $3::bigint AND ($5::text IS NULL OR c.table_name = $5::text)", "$4::integer")
	PAGE_HEAD
	" FROM c ORDER BY 2 NULLS FIRST";

/*
 * The leader's tick (ticker.c) and, in the same statement, the first page
 * of the batch it closes: one round trip from a NOTIFY to its rows instead
 * of two (the tick, then page_sql).  The INSERT is the tick as ticker.c
 * describes it; the rest is page_sql with the new tick's snapshot taken
 * from the INSERT's RETURNING and the previous tick (p, read before the
 * INSERT, which the statement cannot see) as its start.  $1 is the tick the
 * live reader stands at the end of (0: it is not there, or reading): when p
 * is not that tick, s is empty and nothing is read.  $2 is the page size.
 * $3 is true for the first tick of a leadership: its id leaves a gap of
 * 2^32 after the latest tick, past any tick a crash may have taken (ids of
 * lost ticks are never written again, so a token never names two
 * snapshots).  The transaction commits asynchronously (set_config, local to
 * it): see ticker.c for why that is safe.
 * The header row: the new tick, NULL, 'y' when the page was read, the new
 * snapshot (the ticker's probe wants it), then NULLs; then the rows, each
 * with the new tick.  The caller sees the result only after ReadyForQuery,
 * i.e. after the tick's commit, which is what makes the rows deliverable.
 * max_id never goes down, not even when pruning emptied the changelog.
 */
const char batch_tick_sql[] =
	"WITH p AS (SELECT tick_id, snap, max_id FROM nvsrelay.tick ORDER BY tick_id DESC LIMIT 1),"
	" t AS (INSERT INTO nvsrelay.tick (tick_id, snap, max_id)"
	"  SELECT coalesce((SELECT tick_id FROM p), 0) + CASE WHEN $3::boolean AND EXISTS (SELECT 1 FROM p)"
	"    THEN 4294967296 ELSE 1 END, pg_current_snapshot(),"
	"   greatest(coalesce((SELECT max(id) FROM datastore_changelog), 0), coalesce((SELECT max_id FROM p), 0))"
	"  FROM (SELECT set_config('synchronous_commit', 'off', true)) a"
	"  RETURNING tick_id, snap),"
	" s AS (SELECT t.tick_id AS t, p.snap AS ps, t.snap AS ns,"
	"   pg_snapshot_xmax(p.snap) AS lo, pg_snapshot_xmax(t.snap) AS hi FROM t, p WHERE p.tick_id = $1::bigint),"
	BATCH_ROWS("TRUE", "$2::integer")
	" SELECT (SELECT tick_id FROM t), NULL::bigint, (SELECT 'y' FROM s), (SELECT snap::text FROM t),"
	"  NULL, NULL, NULL, NULL"
	" UNION ALL SELECT (SELECT tick_id FROM t), " ROW_COLUMNS
	" FROM c ORDER BY 2 NULLS FIRST";

/*
 * The pages of a batch after its first: the same rows, columns and header as
 * page_sql, for a position inside the batch ending at tick $1 (after id $2,
 * $3 rows, $4 table or NULL).  page_sql would have the xid index return the
 * whole batch again for every page; nvsrelay.batch_walk (sql/005) walks the
 * primary key from $2 instead, so a large batch costs linear, not quadratic,
 * time.  The header's tick is NULL when tick $1 has no predecessor, as in
 * page_sql: for tick 1 that sends the reader to history_sql.
 */
const char batch_walk_sql[] =
	"WITH s AS (SELECT n.tick_id AS t FROM nvsrelay.tick n WHERE n.tick_id = $1::bigint"
	"  AND EXISTS (SELECT 1 FROM nvsrelay.tick p WHERE p.tick_id < n.tick_id))"
	PAGE_HEAD
	" FROM nvsrelay.batch_walk($1::bigint, $2::bigint, $3::integer, $4::text) c ORDER BY 2 NULLS FIRST";

/*
 * The batch of the first tick: every row already committed when the relay
 * started ticking.  Live streams never read it (they start at a later head);
 * it serves consumers arriving from NVSentinel's own watcher with a position
 * that predates the relay, in NVSentinel's id order, so they move over
 * without a gap.  $1 first tick, $2 after id, $3 page size, $4 table.
 */
const char batch_history_sql[] =
	"WITH n AS (SELECT snap, max_id FROM nvsrelay.tick WHERE tick_id = $1::bigint),"
	" c AS (SELECT c.* FROM n, datastore_changelog c"
	"  WHERE c.id > $2::bigint AND c.id <= n.max_id"
	"   AND (c.xid IS NULL OR pg_visible_in_snapshot(c.xid, n.snap))"
	"   AND ($4::text IS NULL OR c.table_name = $4::text) ORDER BY c.id LIMIT $3::integer)"
	" SELECT $1::bigint, NULL::bigint, 'y', $1::text, NULL, NULL, NULL, NULL"
	" UNION ALL SELECT $1::bigint, " ROW_COLUMNS
	" FROM c ORDER BY 2 NULLS FIRST";

/*
 * The events of a page's rows (row 1 on; row 0 is the header), at tick
 * next->tick.  Stops at a row that cannot become an event, never skipping
 * it.  Sets *next to where reading goes on: the batch's end when it was
 * read to the end, the last id when the page was full, the last good row
 * when a bad one stopped it (from: the position the page was read from).
 * Returns the number of events in *evs (to free), or -ENOMEM.
 */
int batch_events(const PGresult *res, const struct token *from, struct token *next, int batch_rows,
		 const char *dbname, struct event ***evsp)
{
	int rows = PQntuples(res);
	struct event **evs = NULL;
	size_t n = 0, i;

	next->id = TOKEN_ID_END;
	if (rows > 1 && !(evs = calloc((size_t)rows - 1, sizeof(*evs))))
		return -ENOMEM;
	for (i = 1; i < (size_t)rows; i++) {
		struct change_row row;
		struct token pos = *next;
		const char *err;
		struct event *ev;

		row.id = strtoull(PQgetvalue(res, (int)i, 1), NULL, 10);
		row.table = PQgetvalue(res, (int)i, 2);
		row.record_id = PQgetvalue(res, (int)i, 3);
		row.operation = PQgetvalue(res, (int)i, 4);
		row.cluster_time = PQgetvalue(res, (int)i, 5);
		row.new_doc = PQgetisnull(res, (int)i, 6) ? NULL : PQgetvalue(res, (int)i, 6);
		row.old_doc = PQgetisnull(res, (int)i, 7) ? NULL : PQgetvalue(res, (int)i, 7);
		pos.id = row.id;
		ev = event_build(&row, &pos, dbname, &err);
		if (!ev) {
			/* Never skip silently: stop here and retry this row later. */
			log_err("cannot build event changelog_id=%" PRIu64 " reason='%s'", row.id, err);
			break;
		}
		evs[n++] = ev;
	}
	if (n > 0 && n == (size_t)batch_rows)
		next->id = evs[n - 1]->pos.id;        /* more of this batch to read */
	else if (n + 1 < (size_t)rows)
		*next = n ? evs[n - 1]->pos : *from;  /* stopped at a bad row */
	*evsp = evs;
	return (int)n;
}
