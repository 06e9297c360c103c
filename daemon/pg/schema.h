/*
 * schema.h - installs and verifies the embedded migrations (sql/NNN_*.sql,
 * compiled in by sql/embed.sh).  Applied forward-only in one transaction
 * under an advisory lock, recorded with SHA-256 checksums in
 * nvsrelay.schema_migrations.  relay.c runs it when its main connection is
 * first up; migrate.c (`nvsrelayd --migrate`) runs the same plan by hand.
 *
 * The plan lives here once: the list of migrations, the advisory-lock key,
 * the bookkeeping table and its rows, and the check of what a database has
 * recorded against what this binary embeds.
 */
#ifndef NVSRELAY_SCHEMA_H
#define NVSRELAY_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "pgconn.h"

struct schema_migration {
	unsigned version;
	const char *name;
	bool notx;          /* one statement, run outside any transaction */
	const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const unsigned schema_migration_count;

/* Relays and --migrate take this advisory lock while migrating, so they
 * migrate one at a time: as a transaction lock around ordinary migrations,
 * as a session lock around a no-transaction one. */
#define SCHEMA_LOCK_KEY "7243381923472001"

/* Creates the schema and the bookkeeping table when missing. */
#define SCHEMA_BOOKKEEPING_SQL \
	"CREATE SCHEMA IF NOT EXISTS nvsrelay;" \
	"CREATE TABLE IF NOT EXISTS nvsrelay.schema_migrations (" \
	" version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL," \
	" applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());"

#define SCHEMA_MAX_MIGRATIONS 64

/* What a database recorded, checked against the embedded list. */
struct schema_state {
	unsigned count;                         /* embedded migrations recorded */
	int row[SCHEMA_MAX_MIGRATIONS];         /* each one's row in the result, -1: not recorded */
	unsigned newer;                         /* a recorded version this binary lacks, or 0 */
	const struct schema_migration *changed; /* recorded with another checksum, or NULL */
};

/* Checks rows of (version, checksum, ...) from nvsrelay.schema_migrations.
 * Returns 0, or -EPROTO when the database must not be touched (st->newer or
 * st->changed says why); st is filled up to that row. */
int schema_check(const PGresult *res, struct schema_state *st);

/* The INSERT that records m as applied, into buf. */
void schema_record_sql(const struct schema_migration *m, char *buf, size_t len);

/* The index a no-transaction migration builds (CREATE INDEX CONCURRENTLY
 * IF NOT EXISTS name ...) into name; false when it builds none. */
bool schema_notx_index(const struct schema_migration *m, char name[64]);

/* status 0: schema current (applied is the number of migrations run now);
 * -EPROTO: mismatch (verify mode, checksum changed, or a newer schema);
 * -EIO: PostgreSQL error or connection lost (msg says which). */
typedef void (*schema_cb)(void *arg, int status, unsigned applied, const char *msg);

/* apply: install missing migrations (schema = auto); otherwise only check.
 * Returns 0 or -ENOTCONN / -ENOMEM. */
int schema_run(PgConn *pc, bool apply, schema_cb cb, void *arg);

/* Lowercase hex SHA-256 of a migration's text into out[65]. */
void schema_checksum(const char *sql, char out[65]);

#endif
