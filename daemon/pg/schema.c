/*
 * schema.c - brings the database to the embedded schema version.
 *
 * First a plain read of nvsrelay.schema_migrations: when everything is
 * applied with matching checksums that is all, and a role without DDL rights
 * can run the relay.  Otherwise (schema = auto) a transaction takes an
 * advisory lock (relays starting together migrate one at a time), reads
 * again, then runs every missing migration with its bookkeeping row and
 * commits.  A migration marked no-transaction (a concurrent index build)
 * runs on its own between rounds, under a session lock.  A migration
 * whose recorded checksum differs from the embedded one, or a database newer
 * than this binary, stops the daemon rather than guess.
 *
 * The plan itself (lock key, bookkeeping, the check of recorded against
 * embedded migrations) is shared with migrate.c through schema.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "log.h"
#include "schema.h"

struct run {
	bool probe;          /* first, read-only look: no DDL rights needed when current */
	bool apply;
	schema_cb cb;
	void *arg;
	unsigned pending;    /* applied in this round */
	unsigned applied;    /* applied in earlier rounds */
	const struct schema_migration *notx;
};

static int start(PgConn *pc, struct run *run);

void schema_checksum(const char *sql, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0, i;

	EVP_Digest(sql, strlen(sql), md, &len, EVP_sha256(), NULL);
	for (i = 0; i < len && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[64] = '\0';
}

int schema_check(const PGresult *res, struct schema_state *st)
{
	char sum[65];
	int r, n = PQntuples(res);
	unsigned i;

	memset(st, 0, sizeof(*st));
	for (i = 0; i < SCHEMA_MAX_MIGRATIONS; i++)
		st->row[i] = -1;
	for (r = 0; r < n; r++) {
		unsigned v = (unsigned)strtoul(PQgetvalue(res, r, 0), NULL, 10);
		const struct schema_migration *m = NULL;

		for (i = 0; i < schema_migration_count && i < SCHEMA_MAX_MIGRATIONS; i++)
			if (schema_migrations[i].version == v)
				m = &schema_migrations[i];
		if (!m) {
			st->newer = v;
			return -EPROTO;
		}
		schema_checksum(m->sql, sum);
		if (strcmp(sum, PQgetvalue(res, r, 1)) != 0) {
			st->changed = m;
			return -EPROTO;
		}
		st->row[m - schema_migrations] = r;
		st->count++;
	}
	return 0;
}

void schema_record_sql(const struct schema_migration *m, char *buf, size_t len)
{
	char sum[65];

	schema_checksum(m->sql, sum);
	snprintf(buf, len, "INSERT INTO nvsrelay.schema_migrations (version, name, checksum) VALUES (%u, '%s', '%s')",
		 m->version, m->name, sum);
}

bool schema_notx_index(const struct schema_migration *m, char name[64])
{
	const char *p = strstr(m->sql, "IF NOT EXISTS ");

	return p && sscanf(p, "IF NOT EXISTS %63[a-z0-9_]", name) == 1;
}

static void finish(PgConn *pc, struct run *run, int status, unsigned applied, const char *msg)
{
	/* Outside a transaction ROLLBACK only warns; the session lock is
	 * held during a no-transaction migration. */
	if (status < 0 && run->apply && pgconn_is_up(pc))
		pgconn_query(pc, "ROLLBACK; SELECT pg_advisory_unlock_all()", 0, NULL, NULL, NULL);
	run->cb(run->arg, status, applied, msg);
	free(run);
}

static void applied_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct run *run = arg;
	char msg[600];

	if (!res) {
		finish(pc, run, -EIO, 0, "connection lost during migration");
		return;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(msg, sizeof(msg), "migration failed: %s", PQresultErrorMessage(res));
		finish(pc, run, -EIO, 0, msg);
		return;
	}
	run->applied += run->pending;
	run->pending = 0;
	/* A no-transaction migration may follow: look again. */
	run->probe = true;
	if (start(pc, run) < 0)
		finish(pc, run, -EIO, 0, "connection lost during migration");
}

/*
 * A no-transaction migration (CREATE INDEX CONCURRENTLY): the transaction
 * lock is gone, so a session lock keeps other relays out; then the
 * statement, its bookkeeping row, the unlock, and another round.
 */
static void notx_step(PgConn *pc, PGresult *res, void *arg);

static void notx_done(PgConn *pc, PGresult *res, void *arg)
{
	struct run *run = arg;
	char msg[600];

	if (!res || (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)) {
		snprintf(msg, sizeof(msg), "migration %s failed: %s", run->notx->name,
			 res ? PQresultErrorMessage(res) : "connection lost");
		finish(pc, run, -EIO, 0, msg);
		return;
	}
	notx_step(pc, NULL, run);
}

static void notx_invalid(PgConn *pc, PGresult *res, void *arg)
{
	struct run *run = arg;
	char sql[128], name[64];

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		notx_done(pc, res, arg);
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		notx_step(pc, NULL, run);
		return;
	}
	if (!schema_notx_index(run->notx, name)) {
		notx_step(pc, NULL, run);
		return;
	}
	log_warning("dropping the invalid index %s left by an interrupted migration", name);
	snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY %s", name);
	if (pgconn_query(pc, sql, 0, NULL, notx_done, run) < 0)
		finish(pc, run, -EIO, 0, "connection lost during migration");
}

static void notx_step(PgConn *pc, PGresult *res, void *arg)
{
	struct run *run = arg;
	const struct schema_migration *m = run->notx;
	char row[256], name[64];
	const char *params[1] = { name };
	int r = 0;

	(void)res;
	switch (run->pending++) {
	case 0:
		r = pgconn_query(pc, "SELECT pg_advisory_lock(" SCHEMA_LOCK_KEY ")", 0, NULL, notx_done, run);
		break;
	case 1:
		/* An interrupted concurrent build leaves an invalid index that
		 * IF NOT EXISTS would keep forever: drop it first. */
		if (!schema_notx_index(m, name)) {
			notx_step(pc, NULL, run);
			return;
		}
		r = pgconn_query(pc,
				 "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1)"
				 " AND NOT indisvalid) THEN 'invalid' END",
				 1, params, notx_invalid, run);
		break;
	case 2:
		log_notice("applying migration %s", m->name);
		r = pgconn_query(pc, m->sql, 0, NULL, notx_done, run);
		break;
	case 3:
		schema_record_sql(m, row, sizeof(row));
		r = pgconn_query(pc, row, 0, NULL, notx_done, run);
		break;
	case 4:
		r = pgconn_query(pc, "SELECT pg_advisory_unlock(" SCHEMA_LOCK_KEY ")", 0, NULL, notx_done, run);
		break;
	default:
		run->applied++;
		run->pending = 0;
		run->notx = NULL;
		run->probe = true;
		r = start(pc, run);
	}
	if (r < 0)
		finish(pc, run, -EIO, 0, "connection lost during migration");
}

static int append(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	char *p = realloc(*buf, *len + n + 1);

	if (!p)
		return -ENOMEM;
	memcpy(p + *len, s, n + 1);
	*buf = p;
	*len += n;
	return 0;
}

static bool complete(const PGresult *res);
static int begin_locked(PgConn *pc, struct run *run);

static void state_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct run *run = arg;
	char msg[600], row[256];
	struct schema_state st;
	char *sql = NULL;
	size_t len = 0;
	unsigned i;
	int n;

	if (!res) {
		finish(pc, run, -EIO, 0, "connection lost while reading the schema version");
		return;
	}
	if (run->probe) {
		run->probe = false;
		if (complete(res)) {
			finish(pc, run, 0, run->applied, NULL);
			return;
		}
		if (run->apply) {
			/* Missing or behind: take the lock and look again inside
			 * the transaction, another relay may be migrating now. */
			if (begin_locked(pc, run) < 0)
				finish(pc, run, -EIO, 0, "connection lost");
			return;
		}
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* insufficient_privilege: the schema may well be there, the
		 * role just cannot see into it; "not installed" would send the
		 * operator to run migrations that are done already. */
		if (state && strcmp(state, "42501") == 0)
			snprintf(msg, sizeof(msg), "permission denied reading nvsrelay.schema_migrations: the role needs "
				 "USAGE on schema nvsrelay and SELECT on its tables (README, \"Least privilege\"): %s",
				 PQresultErrorMessage(res));
		else
			snprintf(msg, sizeof(msg), "%s: %s",
				 run->apply ? "cannot prepare migrations" : "schema not installed (schema = verify)",
				 PQresultErrorMessage(res));
		finish(pc, run, run->apply ? -EIO : -EPROTO, 0, msg);
		return;
	}
	if (schema_check(res, &st) < 0) {
		if (st.changed)
			snprintf(msg, sizeof(msg), "migration %s was applied with a different checksum", st.changed->name);
		else
			snprintf(msg, sizeof(msg), "database has schema version %u, newer than this nvsrelayd knows (%u)",
				 st.newer, schema_migrations[schema_migration_count - 1].version);
		finish(pc, run, -EPROTO, 0, msg);
		return;
	}
	n = (int)st.count;
	if ((unsigned)n == schema_migration_count) {
		if (run->apply) {
			pgconn_query(pc, "COMMIT", 0, NULL, NULL, NULL);
			run->apply = false;
		}
		finish(pc, run, 0, run->applied, NULL);
		return;
	}
	if (!run->apply) {
		snprintf(msg, sizeof(msg), "schema is at version %d of %u and schema = verify", n,
			 schema_migration_count);
		finish(pc, run, -EPROTO, 0, msg);
		return;
	}
	if (schema_migrations[n].notx) {
		/* Leaves the transaction; notx_step takes a session lock. */
		pgconn_query(pc, "COMMIT", 0, NULL, NULL, NULL);
		run->notx = &schema_migrations[n];
		run->pending = 0;
		notx_step(pc, NULL, run);
		return;
	}
	for (i = (unsigned)n; i < schema_migration_count && !schema_migrations[i].notx; i++) {
		const struct schema_migration *m = &schema_migrations[i];
		log_notice("applying migration %s", m->name);
		schema_record_sql(m, row, sizeof(row));
		if (append(&sql, &len, m->sql) < 0 || append(&sql, &len, "\n") < 0 ||
		    append(&sql, &len, row) < 0 || append(&sql, &len, ";\n") < 0)
			goto oom;
		run->pending++;
	}
	if (append(&sql, &len, "COMMIT;") < 0)
		goto oom;
	if (pgconn_query(pc, sql, 0, NULL, applied_cb, run) < 0)
		goto oom;
	free(sql);
	return;
oom:
	free(sql);
	finish(pc, run, -EIO, 0, "out of memory or connection lost");
}

/* True when every embedded migration is recorded with its checksum. */
static bool complete(const PGresult *res)
{
	struct schema_state st;

	return PQresultStatus(res) == PGRES_TUPLES_OK && schema_check(res, &st) == 0 &&
	       st.count == schema_migration_count;
}

static int begin_locked(PgConn *pc, struct run *run)
{
	return pgconn_query(pc,
				 "BEGIN;"
				 "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ");"
				 /* A table lock NVSentinel's writers hold fails the step
				  * after 2 s (retried with backoff) rather than queueing
				  * every writer behind the migration. */
				 "SET LOCAL lock_timeout = '2s';"
				 SCHEMA_BOOKKEEPING_SQL
				 "SELECT version, checksum FROM nvsrelay.schema_migrations ORDER BY version;",
				 0, NULL, state_cb, run);
}

static int start(PgConn *pc, struct run *run)
{
	return pgconn_query(pc, "SELECT version, checksum FROM nvsrelay.schema_migrations ORDER BY version",
			    0, NULL, state_cb, run);
}

int schema_run(PgConn *pc, bool apply, schema_cb cb, void *arg)
{
	struct run *run = calloc(1, sizeof(*run));
	int r;

	if (!run)
		return -ENOMEM;
	run->probe = true;
	run->apply = apply;
	run->cb = cb;
	run->arg = arg;
	r = start(pc, run);
	if (r < 0)
		free(run);
	return r;
}
