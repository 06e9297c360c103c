-- nvsrelay: no-transaction
-- The index every batch query uses.  Built concurrently, outside the
-- migration transaction, so writers keep writing while it is built over a
-- large changelog.  A build interrupted half-way leaves an invalid index of
-- this name; nvsrelayd drops such a leftover before building it again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS datastore_changelog_xid_idx ON datastore_changelog (xid);
