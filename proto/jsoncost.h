/*
 * jsoncost.h - what a frame would cost as a cJSON tree, found before it is
 * parsed.  cJSON allocates one item (64 bytes and more) per JSON value, so a
 * 16 MiB frame of "[1,1,1,..." becomes 8 million items; counting them first,
 * in one pass over the bytes and without allocating, lets the daemon refuse
 * such a frame for the price of reading it.  Pure code: no I/O, no logging,
 * unit-tested and fuzzed.  intake.c calls it on every frame a client
 * connection reads, before cJSON_Parse.
 */
#ifndef NVSRELAY_JSONCOST_H
#define NVSRELAY_JSONCOST_H

#include <stdbool.h>
#include <stddef.h>

/* The most a frame may cost. */
struct jsoncost_budget {
	size_t values;		/* JSON values: objects, arrays, strings, numbers, literals */
	unsigned depth;		/* nesting of objects and arrays; a flat object is 1 */
};

/* Suggested budgets.  A watch carries a pipeline (at most 10000 values and
 * 64 levels of queries, each two JSON levels: filter.h); every other frame
 * (hello, ack, unwatch, ping) has under 10 values and 2 levels, and so has
 * everything a connection may send before it is authenticated. */
#define JSONCOST_WATCH_VALUES 16384
#define JSONCOST_WATCH_DEPTH  160
#define JSONCOST_OTHER_VALUES 64
#define JSONCOST_OTHER_DEPTH  8

struct jsoncost {
	size_t values;		/* values counted (until the scan stopped) */
	unsigned depth;		/* deepest nesting seen (until the scan stopped) */
	bool watch;		/* the first top-level "op" member is "watch" */
	bool nul;		/* a string holds \u0000, at which cJSON cuts it
				 * (and which PostgreSQL's jsonb refuses) */
};

/*
 * Scans the len bytes of one frame once, allocating nothing, and charges it
 * against watch when its first top-level "op" member is the string "watch",
 * and against other otherwise.  Until the op is seen (it may come after a
 * large member) the larger of the two applies; the scan stops as soon as
 * the frame is over its budget.  Returns 0 when within it, -E2BIG when not;
 * *out holds the counts so far either way.
 *
 * For valid JSON the counts are exact: values is the number of items
 * cJSON_Parse allocates, depth the deepest nesting.  The bytes are not
 * validated (cJSON does that afterwards, within the budget); for anything
 * else the counts bound what a parse could allocate before failing.  An
 * "op" key or value spelt with escapes is not recognised, so such a frame
 * gets the other budget.  Before authentication, pass the small budget as
 * both.
 */
int jsoncost_scan(const char *buf, size_t len, const struct jsoncost_budget *watch,
		  const struct jsoncost_budget *other, struct jsoncost *out);

#endif
