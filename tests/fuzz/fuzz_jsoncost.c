/*
 * fuzz_jsoncost.c - libFuzzer target for the frame cost scanner
 * (proto/jsoncost.c).
 *
 * The first two input bytes choose the two budgets, the rest is the frame.
 * Scanned without limits, a frame cJSON parses whole must count exactly the
 * items and the depth of cJSON's tree, and a prefix it parses may not count
 * less; a frame said to be a watch must have a top-level "op": "watch".
 * Scanned with the budgets, the verdict must be the one the full counts
 * give for the budget its op selects, and the scan may not stop later than
 * one value or level past the larger budget.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "jsoncost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static size_t
items(const cJSON *v)
{
	size_t n = 1;
	const cJSON *e;

	cJSON_ArrayForEach(e, v)
		n += items(e);
	return n;
}

static unsigned
depth(const cJSON *v)
{
	unsigned d = 0, k;
	const cJSON *e;

	if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
		return 0;
	cJSON_ArrayForEach(e, v)
		if ((k = depth(e)) > d)
			d = k;
	return d + 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct jsoncost_budget unlimited = { SIZE_MAX, ~0u };
	struct jsoncost_budget w, o;
	struct jsoncost full, c;
	const char *text, *end = NULL;
	cJSON *j, *e;
	size_t len;
	int r, want;

	if (size < 2)
		return 0;
	w.values = data[0] & 0x3f;
	w.depth = data[0] >> 6;
	o.values = data[1] & 0x3f;
	o.depth = data[1] >> 6;
	text = (const char *)data + 2;
	len = size - 2;

	CHECK(jsoncost_scan(text, len, &unlimited, &unlimited, &full) == 0);
	j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (j != NULL) {
		while (end < text + len && (unsigned char)*end <= ' ')
			end++;
		if (end == text + len) {
			CHECK(full.values == items(j));
			CHECK(full.depth == depth(j));
		} else {
			CHECK(full.values >= items(j));
			CHECK(full.depth >= depth(j));
		}
		if (full.watch && end == text + len) {
			int found = 0;

			CHECK(cJSON_IsObject(j));
			cJSON_ArrayForEach(e, j)
				if (e->string && strcmp(e->string, "op") == 0 && cJSON_IsString(e) &&
				    strcmp(e->valuestring, "watch") == 0)
					found = 1;
			CHECK(found);
		}
		cJSON_Delete(j);
	}

	r = jsoncost_scan(text, len, &w, &o, &c);
	want = full.watch ? (full.values > w.values || full.depth > w.depth)
			  : (full.values > o.values || full.depth > o.depth);
	CHECK(r == (want ? -E2BIG : 0));
	CHECK(c.values <= full.values && c.depth <= full.depth);
	if (r == -E2BIG)
		CHECK(c.values <= (w.values > o.values ? w.values : o.values) + 1 &&
		      c.depth <= (w.depth > o.depth ? w.depth : o.depth) + 1);
	else
		CHECK(c.values == full.values && c.depth == full.depth && c.watch == full.watch && c.nul == full.nul);
	return 0;
}
