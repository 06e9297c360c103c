/*
 * rfc3339.h - the one reader and writer of RFC 3339 timestamps: the CLI's
 * Extended JSON dates (cli/extjson.c) and the clusterTime every change
 * event carries, read back as seconds for the delivery latency histogram
 * (daemon/stream/event.c).  Pure code: no I/O, no allocation, no time
 * zone database.
 */
#ifndef NVSRELAY_RFC3339_H
#define NVSRELAY_RFC3339_H

#include <stdbool.h>

struct rfc3339_time {
	long long sec;   /* since 1970-01-01T00:00:00Z */
	long nsec;
};

/* The years NVSentinel's Go writers can write (time.Time's JSON) and
 * PostgreSQL can store: 0001 to 9999. */
#define RFC3339_SEC_MIN (-62135596800LL)   /* 0001-01-01T00:00:00Z */
#define RFC3339_SEC_MAX (253402300799LL)   /* 9999-12-31T23:59:59Z */

/* YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM|+HHMM|-HHMM),
 * a real calendar date within the years above: true and *out set.  Digits
 * of the fraction past nanoseconds are read and dropped. */
bool rfc3339_parse(const char *s, struct rfc3339_time *out);

/* Go's time.RFC3339Nano in UTC (the fraction without trailing zeros);
 * t within the years above. */
void rfc3339_format(const struct rfc3339_time *t, char out[40]);

#endif
