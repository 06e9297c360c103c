/*
 * migrate.c - `nvsrelayd --migrate [--dry-run]`: schema.c's work done
 * from the command line, for a DBA's change window or a deployment job,
 * and its plan shown before anything is touched.
 *
 * It connects with the daemon's settings (blocking libpq: this is a
 * command, not the event loop) and follows schema.c step for step, so it
 * can run beside live relays: the same advisory lock, the state read again
 * under it, consecutive ordinary migrations in one transaction with their
 * bookkeeping rows, a no-transaction migration (CREATE INDEX CONCURRENTLY)
 * alone under a session lock after dropping an invalid index an interrupted
 * build left, and a refusal of changed checksums or newer versions.  The
 * plan (migrations, lock key, bookkeeping, the check) is schema.h's.
 * NVSentinel's own bookkeeping (nvsentinel_schema_migrations) is reported,
 * never written.  main.c calls migrate_main().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <libpq-fe.h>

#include "migrate.h"
#include "schema.h"

#define EXIT_FAILED 1

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static PGresult *run(PGconn *pg, const char *sql, const char *what)
{
	PGresult *res = PQexec(pg, sql);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	fprintf(stderr, "nvsrelayd: %s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(pg));
	PQclear(res);
	return NULL;
}

static bool exec_ok(PGconn *pg, const char *sql, const char *what)
{
	PGresult *res = run(pg, sql, what);

	PQclear(res);
	return res != NULL;
}

/* Checks nvsrelay.schema_migrations (res: rows of version, checksum,
 * applied_at) with schema_check.  Returns 0, or EX_CONFIG with the reason
 * printed. */
static int check_state(const PGresult *res, struct schema_state *st)
{
	if (schema_check(res, st) == 0)
		return 0;
	if (st->changed)
		fprintf(stderr, "nvsrelayd: migration %s was applied with a different checksum: "
			"refusing to touch the database\n", st->changed->name);
	else
		fprintf(stderr, "nvsrelayd: the database has schema version %u, newer than this nvsrelayd "
			"knows (%u): refusing to touch it\n", st->newer,
			schema_migrations[schema_migration_count - 1].version);
	return EX_CONFIG;
}

static const char state_sql[] =
	"SELECT version, checksum, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS\"Z\"')"
	" FROM nvsrelay.schema_migrations ORDER BY version";

static void print_plan(const PGresult *res, const struct schema_state *st)
{
	unsigned i;

	for (i = 0; i < schema_migration_count; i++) {
		const struct schema_migration *m = &schema_migrations[i];

		if (st->row[i] >= 0)
			printf("  %-28s applied %s\n", m->name, PQgetvalue(res, st->row[i], 2));
		else if (m->notx)
			printf("  %-28s would run alone, outside any transaction (a concurrent index build)\n", m->name);
		else
			printf("  %-28s would run in the migration transaction\n", m->name);
	}
}

static bool bookkeeping(PGconn *pg, const struct schema_migration *m)
{
	char row[256];

	schema_record_sql(m, row, sizeof(row));
	return exec_ok(pg, row, m->name);
}

/* One migration alone: session lock, an invalid leftover dropped, the
 * statement, its row, unlock. */
static bool apply_notx(PGconn *pg, const struct schema_migration *m)
{
	char name[64], sql[128];
	const char *params[1] = { name };
	PGresult *res;
	bool ok = false;
	double t = now_s();

	if (!exec_ok(pg, "SELECT pg_advisory_lock(" SCHEMA_LOCK_KEY ")", "taking the migration lock"))
		return false;
	if (schema_notx_index(m, name)) {
		res = PQexecParams(pg, "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid",
				   1, NULL, params, NULL, NULL, 0);
		if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
			printf("  dropping the invalid index %s left by an interrupted build\n", name);
			snprintf(sql, sizeof(sql), "DROP INDEX CONCURRENTLY %s", name);
			if (!exec_ok(pg, sql, "dropping the invalid index")) {
				PQclear(res);
				goto out;
			}
		}
		PQclear(res);
	}
	printf("  applying %s (alone) ...", m->name);
	fflush(stdout);
	if (!exec_ok(pg, m->sql, m->name) || !bookkeeping(pg, m)) {
		printf(" failed\n");
		goto out;
	}
	printf(" done in %.2f s\n", now_s() - t);
	ok = true;
out:
	exec_ok(pg, "SELECT pg_advisory_unlock(" SCHEMA_LOCK_KEY ")", "releasing the migration lock");
	return ok;
}

/*
 * Applies whatever is missing, round by round as schema.c does.  Returns
 * 0, EXIT_FAILED or EX_CONFIG; *applied counts what ran.
 */
static int apply(PGconn *pg, unsigned *applied)
{
	struct schema_state st;
	PGresult *res;
	unsigned i, first;
	double t;
	int r;

	for (;;) {
		/* Another relay may be migrating: wait for it, then look again. */
		if (!exec_ok(pg, "BEGIN", "BEGIN") ||
		    !exec_ok(pg, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")", "taking the migration lock") ||
		    !exec_ok(pg, "SET LOCAL lock_timeout = '2s'", "setting lock_timeout") ||
		    !exec_ok(pg, SCHEMA_BOOKKEEPING_SQL, "creating nvsrelay.schema_migrations"))
			return EXIT_FAILED;
		res = run(pg, state_sql, "reading nvsrelay.schema_migrations");
		if (!res)
			return EXIT_FAILED;
		r = check_state(res, &st);
		PQclear(res);
		if (r)
			return r;
		for (first = 0; first < schema_migration_count && st.row[first] >= 0; first++)
			;
		if (first == schema_migration_count)
			return exec_ok(pg, "COMMIT", "COMMIT") ? 0 : EXIT_FAILED;
		if (schema_migrations[first].notx) {
			if (!exec_ok(pg, "COMMIT", "COMMIT") || !apply_notx(pg, &schema_migrations[first]))
				return EXIT_FAILED;
			(*applied)++;
			continue;
		}
		t = now_s();
		for (i = first; i < schema_migration_count && !schema_migrations[i].notx && st.row[i] < 0; i++) {
			printf("  applying %s (in the transaction) ...\n", schema_migrations[i].name);
			if (!exec_ok(pg, schema_migrations[i].sql, schema_migrations[i].name) ||
			    !bookkeeping(pg, &schema_migrations[i]))
				return EXIT_FAILED;
		}
		if (!exec_ok(pg, "COMMIT", "COMMIT"))
			return EXIT_FAILED;
		printf("  committed %u migration%s in %.2f s\n", i - first, i - first == 1 ? "" : "s", now_s() - t);
		*applied += i - first;
	}
}

int migrate_main(const Conf *conf, bool dry_run)
{
	const struct conf_values *cv = conf_values(conf);
	const char *const *keys, *const *vals;
	const char *k[64], *v[64];
	struct schema_state st = { 0 };
	PGconn *pg;
	PGresult *res, *recorded = NULL;    /* nvsrelay.schema_migrations, for the plan */
	size_t i, n = 0;
	unsigned applied = 0, pending;
	int code = EXIT_FAILED;

	for (i = 0; i < SCHEMA_MAX_MIGRATIONS; i++)
		st.row[i] = -1;
	if (schema_migration_count > SCHEMA_MAX_MIGRATIONS) {
		fprintf(stderr, "nvsrelayd: too many migrations for --migrate\n");
		return EXIT_FAILED;
	}
	conf_libpq_params(conf, &keys, &vals);
	for (i = 0; keys[i] && n < 62; i++) {
		if (strcmp(keys[i], "application_name") == 0)
			continue;
		k[n] = keys[i];
		v[n++] = vals[i];
	}
	k[n] = "application_name";
	v[n++] = "nvsrelayd-migrate";
	k[n] = NULL;
	v[n] = NULL;
	pg = PQconnectdbParams(k, v, 0);
	if (!pg || PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "nvsrelayd: cannot connect to PostgreSQL: %s", pg ? PQerrorMessage(pg) : "out of memory\n");
		goto out;
	}
	/* IF NOT EXISTS notices are the normal case here, not news. */
	if (!exec_ok(pg, "SET client_min_messages = warning", "SET client_min_messages"))
		goto out;
	printf("database %s on %s:%s, PostgreSQL %s, as %s\n", PQdb(pg), cv->datastore_host, PQport(pg),
	       PQparameterStatus(pg, "server_version"), PQuser(pg));

	res = run(pg, "SELECT to_regclass('nvsrelay.schema_migrations') IS NOT NULL,"
		      " to_regclass('nvsentinel_schema_migrations') IS NOT NULL,"
		      " to_regclass('health_events') IS NOT NULL", "reading the schema");
	if (!res)
		goto out;
	{
		bool ours = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		bool nvs = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		bool tables = strcmp(PQgetvalue(res, 0, 2), "t") == 0;

		PQclear(res);
		if (nvs) {
			res = run(pg, "SELECT coalesce(max(version), 0) FROM nvsentinel_schema_migrations",
				  "reading nvsentinel_schema_migrations");
			if (!res)
				goto out;
			printf("NVSentinel's own schema: version %s (nvsentinel_schema_migrations, left as it is)\n",
			       PQgetvalue(res, 0, 0));
			PQclear(res);
		} else if (tables) {
			printf("NVSentinel's tables exist; they are kept as they are\n");
		} else {
			printf("no NVSentinel tables yet: 001 creates them\n");
		}
		if (ours) {
			recorded = run(pg, state_sql, "reading nvsrelay.schema_migrations");
			if (!recorded)
				goto out;
			code = check_state(recorded, &st);
			if (code)
				goto out;
		}
	}
	pending = schema_migration_count - st.count;
	printf("nvsrelay schema: %u of %u migrations applied\n", st.count, schema_migration_count);
	print_plan(recorded, &st);
	if (pending == 0) {
		printf("nothing to do\n");
		code = 0;
		goto out;
	}
	if (dry_run) {
		printf("dry run: %u migration%s would run; nothing was changed\n", pending, pending == 1 ? "" : "s");
		code = 0;
		goto out;
	}
	code = apply(pg, &applied);
	if (code == 0)
		printf("schema current: %u migration%s applied now\n", applied, applied == 1 ? "" : "s");
out:
	if (code == EXIT_FAILED && pg && PQstatus(pg) == CONNECTION_OK)
		fprintf(stderr, "nvsrelayd: migration stopped; what was committed stays, the rest runs next time\n");
	PQclear(recorded);
	PQfinish(pg);
	return code;
}
