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

/* What one pipeline may cost (proto/PROTOCOL.md, "Filters"): compiling is
 * linear in its size, but a watch frame may be 16 MiB, and the compiled
 * filter runs once per event for as long as the subscription lives.
 * NVSentinel's pipelines (tests/pipelines/) use at most 42 values, 4
 * branches and 4 list elements, in 10 levels of JSON. */
#define FILTER_MAX_VALUES   10000	/* JSON values in the whole pipeline */
#define FILTER_MAX_DEPTH    64		/* nested queries, sub-documents, literals */
#define FILTER_MAX_BRANCHES 1000	/* elements of one $and / $or / $nor */
#define FILTER_MAX_LIST     1000	/* elements of one $in / $nin */

/* Compiles pipeline (a JSON array of {"$match": {...}} stages; NULL or []
 * means "everything").  On success returns 0 and *ret (NULL when the
 * pipeline matches everything).  An unsupported stage or operator, or a
 * malformed pipeline, or one over a limit above, returns -EINVAL with a
 * message naming the offending stage index and path in err; -ENOMEM when out of memory.  The filter does
 * not reference pipeline after returning. */
int filter_compile(const cJSON *pipeline, Filter **ret, char *err, size_t errlen);

/* True when event (the change event object of DESIGN section 5) passes
 * every stage.  f == NULL matches everything. */
bool filter_match(const Filter *f, const cJSON *event);

void filter_free(Filter *f);

/*
 * Guards let the hub read one field of an event once for many filters
 * instead of running each of them: a component per node watching its own
 * node's events is a thousand filters that differ in one string.
 * filter_guard gives a condition every match of f needs, the field at
 * *path equal to the string *value (a conjunct of the whole pipeline, the
 * one with the longest path); false when f has none.  Both point into f.
 */
bool filter_guard(const Filter *f, const char **path, const char **value);

typedef struct filter_key FilterKey;
enum { FILTER_KEY_NONE, FILTER_KEY_STRING, FILTER_KEY_ANY };
/* A field path compiled for filter_key_read; NULL if path is not one a
 * filter could hold, or out of memory. */
FilterKey *filter_key_new(const char *path);
void filter_key_free(FilterKey *k);
/* What event holds at k's path, read as filter_match reads it:
 * FILTER_KEY_STRING and *s, one string (an equality to any other string is
 * false); FILTER_KEY_NONE, nothing a string equals (missing, null, a
 * number, a boolean, an object); FILTER_KEY_ANY, an array on the way or at
 * the end (many values: only filter_match can tell). */
int filter_key_read(const FilterKey *k, const cJSON *event, const char **s);
/* The pipeline it was compiled from (for `nvsrelay clients`). */
const cJSON *filter_pipeline(const Filter *f);

#endif
