/*
 * pgstats.h - samples PostgreSQL statistics for /metrics every
 * stats_interval_s seconds with one cheap query on the relay's main
 * connection: table sizes and growth, oldest open transaction, NOTIFY queue
 * use, commits, index hit ratio, replication lag, retention, and the durable
 * consumers of resume_tokens.  ops.c owns it.
 */
#ifndef NVSRELAY_PGSTATS_H
#define NVSRELAY_PGSTATS_H

#include <ev.h>

#include "conf.h"
#include "relay.h"

typedef struct pgstats PgStats;

PgStats *pgstats_new(struct ev_loop *loop, const struct conf_values *cv, Relay *r);
/* Safe with a sample in flight: its answer is then dropped. */
void pgstats_free(PgStats *ps);
/* stats_interval_s changed (reload). */
void pgstats_reconfigure(PgStats *ps);
/* Scrape time, after the hub's subscriptions set M_CONSUMER_CONNECTED: the
 * durable consumers of the last sample that are not connected here get
 * connected 0 and their lag from their stored position; every one gets its
 * last-seen age. */
void pgstats_consumer_gauges(const PgStats *ps);
/* Why the relay is degraded (serving, but a captured table's changes are
 * not reaching the changelog), or NULL; as of the last sample. */
const char *pgstats_degraded(PgStats *ps);

#endif
