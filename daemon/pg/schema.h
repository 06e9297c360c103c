/*
 * schema.h - installs and verifies the embedded migrations (sql/NNN_*.sql,
 * compiled in by sql/embed.sh).  Applied forward-only in one transaction
 * under an advisory lock, recorded with SHA-256 checksums in
 * nvsrelay.schema_migrations.  relay.c runs it when its main connection is
 * first up.
 */
#ifndef NVSRELAY_SCHEMA_H
#define NVSRELAY_SCHEMA_H

#include <stdbool.h>

#include "pgconn.h"

struct schema_migration {
	unsigned version;
	const char *name;
	bool notx;          /* one statement, run outside any transaction */
	const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const unsigned schema_migration_count;

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
