/*
 * filter.h - MongoDB $match pipelines with NVSentinel's semantics, compiled
 * once at watch time and evaluated against each change event.  Pure code
 * (no I/O, no logging) so it is unit-tested and fuzzed.  client.c compiles
 * the pipeline of a watch frame; hub.c evaluates it per event.
 */
#ifndef NVSRELAY_FILTER_H
#define NVSRELAY_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

typedef struct filter Filter;

/* Compiles pipeline (a JSON array of {"$match": {...}} stages; NULL or []
 * means "everything").  On success returns 0 and *ret (NULL when the
 * pipeline matches everything).  An unsupported stage or operator, or a
 * malformed pipeline, returns -EINVAL with a message naming the offending
 * stage index and path in err; -ENOMEM when out of memory.  The filter does
 * not reference pipeline after returning. */
int filter_compile(const cJSON *pipeline, Filter **ret, char *err, size_t errlen);

/* True when event (the change event object of DESIGN section 5) passes
 * every stage.  f == NULL matches everything. */
bool filter_match(const Filter *f, const cJSON *event);

void filter_free(Filter *f);

#endif
