-- The rest of a batch after its first page, read by walking the primary key.
-- The first page of a batch still comes from the batch query in relay.c
-- (through the xid index); for the pages after it that query had the xid
-- index return every row of the batch again and drop those already read, so
-- a batch of N rows cost N^2 / batch_rows row reads.  This walks the ids
-- from the last one read instead, so each page costs about its own rows.
--
-- The batch is the same set: rows whose xid is visible in tick $1's snapshot
-- and not in its predecessor's.  A snapshot hides exactly the xids at or
-- above its xmax and those in its xip, so "not visible in the previous
-- snapshot" is the batch query's two branches (xids that started after the
-- previous tick, and those in progress at it); "visible in this one" bounds
-- them above.  A NULL xid (a row older than the relay) is in no batch but
-- the first tick's, read elsewhere, as before.  Rows of aborted transactions
-- are invisible to the reading statement itself.  The tick's max_id is
-- max(id) taken in the statement (the snapshot) that stored the tick, so
-- every row visible in that snapshot has an id at or below it: it bounds
-- the walk, it does not define the batch.
--
-- Pinned per function, not per session: with the bounds unknown when the
-- body is planned, the planner expects a few hundred rows and prefers a
-- bitmap scan plus a sort over the whole rest of the range (some 200 ms for
-- a 1,000-row page at 200k rows, against 5 ms for the ordered index scan).
-- Turning bitmap scans off for the whole connection made the table-filtered
-- first page of a catch-up read walk the whole table by another index, so
-- the setting stays inside this function (which also keeps it from being
-- inlined into the caller and planned there).
--
-- $1 tick (the batch ending at it), $2 rows after this changelog id, $3 page
-- size, $4 table or NULL.  No rows when tick $1 or its predecessor is gone;
-- the caller tells those cases apart itself.
CREATE OR REPLACE FUNCTION nvsrelay.batch_walk(tick BIGINT, after BIGINT, lim INTEGER, tbl TEXT)
RETURNS SETOF datastore_changelog
LANGUAGE sql STABLE
SET enable_bitmapscan = off
AS $$
    SELECT c.* FROM datastore_changelog c
    WHERE c.id > $2
      AND c.id <= (SELECT n.max_id FROM nvsrelay.tick n WHERE n.tick_id = $1)
      AND c.xid IS NOT NULL
      AND pg_visible_in_snapshot(c.xid, (SELECT n.snap FROM nvsrelay.tick n WHERE n.tick_id = $1))
      AND NOT pg_visible_in_snapshot(c.xid, (SELECT p.snap FROM nvsrelay.tick p
            WHERE p.tick_id = (SELECT max(tick_id) FROM nvsrelay.tick WHERE tick_id < $1)))
      AND ($4 IS NULL OR c.table_name = $4)
    ORDER BY c.id LIMIT $3
$$;
