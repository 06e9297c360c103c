/*
 * migrate.h - `nvsrelayd --migrate [--dry-run]`: the daemon's schema step
 * run by hand, with blocking libpq, printing the plan.  Called by main.c
 * once the configuration is loaded.
 */
#ifndef NVSRELAY_MIGRATE_H
#define NVSRELAY_MIGRATE_H

#include <stdbool.h>

#include "conf.h"

/* Prints which embedded migrations the database has, which would run and
 * how (in the migration transaction, or alone outside any transaction);
 * then, unless dry_run, applies them.  Returns the process exit status:
 * 0 done (or nothing to do), 1 PostgreSQL unreachable or a migration
 * failed, EX_CONFIG (78) a schema this binary must not touch (a changed
 * checksum, a newer version). */
int migrate_main(const Conf *conf, bool dry_run);

#endif
