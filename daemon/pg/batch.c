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
 * with the page's end tick (s.t, NULL when there is none), what tick $1
 * is ('y' written, 'l' lost: not written but inside the kept range, NULL
 * gone or never) and the oldest tick, then the rows, each with its tick.
 * A lost tick is one a server crash took before its asynchronous commit
 * reached the disk (ticker.c): the batch after it is then the batch after
 * the tick before it, which holds the lost one's rows again. */
#define PAGE_HEADER \
	" SELECT (SELECT t FROM s) AS tk, NULL::bigint AS id," \
	"  (SELECT CASE WHEN EXISTS (SELECT 1 FROM nvsrelay.tick WHERE tick_id = $1::bigint) THEN 'y'" \
	"   WHEN EXISTS (SELECT 1 FROM nvsrelay.tick WHERE tick_id < $1::bigint) THEN 'l' END)," \
	"  (SELECT min(tick_id) FROM nvsrelay.tick)::text, NULL, NULL, NULL, NULL"

/*
 * The rows of the batch from snapshot s.ps to snapshot s.ns (CTE s, with
 * lo and hi their xmax), as CTE NAME, unordered.  The batch is the range
 * of xids that started after the previous tick and are visible in this
 * one, plus the xids in progress at the previous tick that this one sees
 * committed (form B of the tick prototype: its cost does not grow with old
 * transactions elsewhere in the cluster).
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
 * to walk the primary key and test every row against every gap.
 */
#define BATCH_SET(NAME, COND) \
	" r AS (SELECT x, lead(x) OVER (ORDER BY x) AS nx FROM s, pg_snapshot_xip(s.ns) x WHERE x >= s.lo)," \
	" " NAME " AS (SELECT c.* FROM s, datastore_changelog c" \
	"  WHERE c.xid >= s.lo AND c.xid < coalesce((SELECT min(x) FROM r), s.hi) AND " COND \
	"  UNION ALL SELECT c.* FROM s, r, LATERAL (SELECT * FROM datastore_changelog c" \
	"   WHERE c.xid > r.x AND c.xid < coalesce(r.nx, s.hi) AND " COND " OFFSET 0) c" \
	"  UNION ALL SELECT c.* FROM s, datastore_changelog c" \
	"  WHERE c.xid = ANY (ARRAY(SELECT x FROM pg_snapshot_xip(s.ps) x WHERE pg_visible_in_snapshot(x, s.ns)))" \
	"   AND " COND ")"

/* How many ticks one page may span (see batch_page_sql). */
#define SPAN_TICKS "256"

/*
 * The first page after a batch's end: the batches after tick $1, up to $2
 * rows, of table $3 (NULL: all), in delivery order (tick, then id), each
 * row with the tick of its batch.  One statement reads many batches when
 * they are small: a backlog of ticks of an event or two each (a quiet
 * live stream) cost a round trip per tick, which held catch-up to some
 * 2k events a second.
 *
 * The page spans the ticks w after $1 whose max_id stays within $2 of the
 * start's (max_id never goes down, so they are a prefix; at least one
 * tick, at most SPAN_TICKS), as one batch from the start's snapshot to the
 * last one's; each row then belongs to the first of those ticks whose
 * snapshot sees it (snapshots only grow, so that is its batch).  No tick
 * before the first whose xmax is above the row's xid can see it, so that
 * one, found by binary search (width_bucket over the ticks' xmax, which
 * never go down), is the row's tick unless the xid was in progress there;
 * only then are the ticks searched one by one.  The start p is tick $1, or
 * when $1 is lost (PAGE_HEADER's 'l') the tick before it.  A page that
 * ends inside a batch goes on through batch_walk_sql.
 */
const char batch_page_sql[] =
	"WITH p AS (SELECT tick_id, snap, max_id FROM nvsrelay.tick WHERE tick_id <= $1::bigint"
	"  ORDER BY tick_id DESC LIMIT 1),"
	" w AS (SELECT w.tick_id, w.snap, pg_snapshot_xmax(w.snap) AS xmax FROM p, nvsrelay.tick w"
	"  WHERE w.tick_id > $1::bigint AND (w.max_id <= p.max_id + $2::integer"
	"   OR w.tick_id = (SELECT min(tick_id) FROM nvsrelay.tick WHERE tick_id > $1::bigint))"
	"  ORDER BY w.tick_id LIMIT " SPAN_TICKS "),"
	" s AS (SELECT n.tick_id AS t, p.snap AS ps, n.snap AS ns,"
	"   pg_snapshot_xmax(p.snap) AS lo, pg_snapshot_xmax(n.snap) AS hi"
	"  FROM p, (SELECT tick_id, snap FROM w ORDER BY tick_id DESC LIMIT 1) n),"
	" a AS (SELECT array_agg(tick_id ORDER BY tick_id) AS ids, array_agg(xmax ORDER BY tick_id) AS xs,"
	"   array_agg(snap ORDER BY tick_id) AS snaps FROM w),"
	BATCH_SET("b", "($3::text IS NULL OR c.table_name = $3::text)") ","
	" k AS (SELECT CASE WHEN pg_visible_in_snapshot(b.xid, a.snaps[j.i]) THEN a.ids[j.i]"
	"   ELSE (SELECT min(w.tick_id) FROM w WHERE w.xmax > b.xid AND pg_visible_in_snapshot(b.xid, w.snap)) END AS tk,"
	"   b.* FROM a, b, LATERAL (SELECT width_bucket(b.xid, a.xs) + 1 AS i) j ORDER BY 1, b.id LIMIT $2::integer)"
	" SELECT * FROM (" PAGE_HEADER
	"  UNION ALL SELECT c.tk, " ROW_COLUMNS " FROM k c) u"
	" ORDER BY u.id IS NOT NULL, u.tk, u.id";

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
 * it) but for that first tick: see ticker.c for why that is safe.
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
	"  FROM (SELECT set_config('synchronous_commit', CASE WHEN $3::boolean THEN 'on' ELSE 'off' END, true)) a"
	"  RETURNING tick_id, snap),"
	" s AS (SELECT t.tick_id AS t, p.snap AS ps, t.snap AS ns,"
	"   pg_snapshot_xmax(p.snap) AS lo, pg_snapshot_xmax(t.snap) AS hi FROM t, p WHERE p.tick_id = $1::bigint),"
	BATCH_SET("b", "TRUE") ","
	" c AS (SELECT * FROM b ORDER BY id LIMIT $2::integer)"
	" SELECT (SELECT tick_id FROM t), NULL::bigint, (SELECT 'y' FROM s), (SELECT snap::text FROM t),"
	"  NULL, NULL, NULL, NULL"
	" UNION ALL SELECT (SELECT tick_id FROM t), " ROW_COLUMNS
	" FROM c ORDER BY 2 NULLS FIRST";

/*
 * The rest of a batch a page ended inside: the same columns and header as
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
	PAGE_HEADER " UNION ALL SELECT (SELECT t FROM s), " ROW_COLUMNS
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
 * The events of a page's rows (row 1 on; row 0 is the header), each at
 * the tick in its column 0.  Stops at a row that cannot become an event, never skipping
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
		pos.tick = strtoull(PQgetvalue(res, (int)i, 0), NULL, 10);
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
		*next = evs[n - 1]->pos;              /* more of its batch to read */
	else if (n + 1 < (size_t)rows)
		*next = n ? evs[n - 1]->pos : *from;  /* stopped at a bad row */
	*evsp = evs;
	return (int)n;
}
