/*
 * metrics.h - the daemon's Prometheus metrics: one catalogue of families
 * (counters, gauges, histograms, at most one label each), one process-wide
 * registry, and the text exposition format.  Pure code: no I/O, no logging,
 * no clock; callers pass every value.
 *
 * Modules record with one-line calls (metrics_add(M_ACKS, NULL, 1)); ops.c
 * sets the sampled gauges just before rendering /metrics.  A labelled family
 * keeps at most METRICS_MAX_SERIES label values (METRICS_MAX_CONSUMERS for
 * the "consumer" label); later values are folded into the series labelled
 * "other", so a label can never grow without bound.
 */
#ifndef NVSRELAY_METRICS_H
#define NVSRELAY_METRICS_H

#include <stddef.h>

#define METRICS_MAX_SERIES 32
/* Per-consumer families hold more: every durable consumer NVSentinel runs
 * must keep its own series, or an alert on one of them cannot fire. */
#define METRICS_MAX_CONSUMERS 256
#define METRICS_OTHER "other"

enum metric_id {
	M_BUILD_INFO,
	M_START_TIME,
	M_READY,
	M_TICKER_LEADER,
	M_HEAD_TICK,
	M_TICKS_WRITTEN,
	M_TICKS_READ,
	M_BATCH_ROWS,
	M_EVENTS_READ,
	M_EVENTS_DELIVERED,
	M_BOOKMARKS_SENT,
	M_ACKS,
	M_RING_EVENTS,
	M_SUBSCRIBERS,
	M_CLIENTS,
	M_DISCONNECTS,
	M_REFUSALS,
	M_SLOW_DROPS,
	M_CONSUMER_LAG_EVENTS,
	M_CONSUMER_LAG_SECONDS,
	M_CONSUMER_TOKEN_AGE,
	M_CONSUMER_BUFFERED,
	M_CONSUMER_CONNECTED,
	M_CONSUMER_SEEN_AGE,
	M_RETENTION_PRUNED,
	M_RETENTION_OLDEST,
	M_RETENTION_HOLDER,
	M_PG_UP,
	M_PG_RECONNECTS,
	M_PG_POOL_SIZE,
	M_PG_POOL_UP,
	M_PG_POOL_BUSY,
	M_PG_QUERY_SECONDS,
	M_PG_QUERY_ERRORS,
	M_PG_REPLICA_PAGES,
	M_PG_TABLE_ROWS,
	M_PG_TABLE_BYTES,
	M_PG_TABLE_GROWTH,
	M_PG_OLDEST_XACT,
	M_PG_NOTIFY_QUEUE,
	M_PG_XACT_COMMIT,
	M_PG_INDEX_HIT,
	M_PG_REPLICAS,
	M_PG_REPLICATION_LAG,
	M_PG_STATS_TIME,
	M_CAPTURE_ACTIVE,
	M_HTTP_REQUESTS,
	M_ADMIN_COMMANDS,
	M_RELOADS,
	M_DELIVERY_LATENCY,
	M_REMOVED_POSITION_RESUMES,
	M_LOST_TICK_READS,
	M_LIVE_POSITION_LOST,
	M_COUNT
};

/* Counters and gauges: adds v.  Histograms: records one observation. */
void metrics_add(enum metric_id id, const char *label, double v);
/* Gauges (and counters mirrored from PostgreSQL): sets the value. */
void metrics_set(enum metric_id id, const char *label, double v);
/* Gauges: keeps the larger of the current value and v (a new series takes
 * v), so per-name maxima fold sensibly into "other". */
void metrics_max(enum metric_id id, const char *label, double v);
/* Drops every series of a family: gauges recomputed on each scrape start
 * from nothing, so a consumer that left disappears. */
void metrics_clear(enum metric_id id);

/* Current value (histograms: the observation count); 0 for a missing series. */
double metrics_get(enum metric_id id, const char *label);

/* Maps free text (a disconnect reason) to a label value: lower case, runs
 * of anything but letters and digits become one '_', at most 40 bytes. */
const char *metrics_label(const char *text, char *buf, size_t len);

/* The text exposition (format 0.0.4) of every family, malloc'd and
 * NUL-terminated; NULL when out of memory.  *ret_len gets its length. */
char *metrics_render(size_t *ret_len);

/* Frees every series (exit, and between unit tests). */
void metrics_reset(void);

#endif
