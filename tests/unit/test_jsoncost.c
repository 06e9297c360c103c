/*
 * test_jsoncost.c - unit tests of the frame cost scanner (proto/jsoncost.c):
 * exact counts against cJSON's own tree, strings holding brackets, quotes
 * and escapes, keys not counted, the watch budget chosen by the top-level
 * op wherever it stands, early refusal of a 16 MiB array, the small
 * budget for frames before authentication, and strings holding \u0000.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "jsoncost.h"

static const struct jsoncost_budget watch = { JSONCOST_WATCH_VALUES, JSONCOST_WATCH_DEPTH };
static const struct jsoncost_budget other = { JSONCOST_OTHER_VALUES, JSONCOST_OTHER_DEPTH };
static const struct jsoncost_budget unlimited = { SIZE_MAX, ~0u };

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

/* Scans text without limits: the counts must be what cJSON builds. */
static struct jsoncost
exact(const char *text)
{
	struct jsoncost c;
	cJSON *j = cJSON_Parse(text);

	if (j == NULL)
		fail_msg("test JSON does not parse: %s", text);
	assert_int_equal(jsoncost_scan(text, strlen(text), &unlimited, &unlimited, &c), 0);
	if (c.values != items(j) || c.depth != depth(j))
		fail_msg("%s: scanned %zu values %u deep, cJSON has %zu and %u", text, c.values, c.depth,
			 items(j), depth(j));
	cJSON_Delete(j);
	return c;
}

static void
test_counts(void **state)
{
	(void)state;
	assert_int_equal(exact("{}").values, 1);
	assert_int_equal(exact("{}").depth, 1);
	assert_int_equal(exact("1").depth, 0);
	exact("\"x\"");
	exact("[1,2,3]");
	exact("[true,false,null,-1.5e+3,0]");
	exact("{\"op\":\"ping\"}");
	exact("{\"op\":\"ack\",\"sid\":1,\"token\":{\"_data\":\"29f334dc00000000000000040000000000000002\"}}");
	/* brackets, quotes, colons and escapes inside strings are not structure */
	exact("{\"a\":\"[{\\\"x\\\":1}]\",\"b\\\\\":\"\\\\\",\"c\":\"\\u005b:\"}");
	exact(" { \"k\" : [ { } , [ ] , \"v\" ] , \"e\" : \"\" } ");
	exact("[[[[[[[[[[1]]]]]]]]]]");
	/* cJSON takes every control character for a blank */
	exact("{\"op\"\b\x01:\"ping\"\f}");
	exact("{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\",\"pipeline\":[{\"$match\":{\"$or\":"
	      "[{\"operationType\":\"update\"},{\"fullDocument.a\":{\"$in\":[\"x\",\"y\",null]}}]}}]}");
}

static void
test_watch_detected(void **state)
{
	const char *w1 = "{\"op\":\"watch\",\"sid\":1}";
	const char *w2 = "{\"pipeline\":[{\"$match\":{\"op\":\"x\"}}],\"sid\":1, \"op\" : \"watch\"}";
	const char *a1 = "{\"op\":\"ack\",\"x\":{\"op\":\"watch\"}}";
	const char *a2 = "{\"x\":{\"op\":\"watch\"},\"op\":\"ack\"}";
	const char *a3 = "{\"op\":\"ack\",\"op\":\"watch\"}";	/* cJSON takes the first */
	const char *a4 = "{\"op\":\"watcher\"}";
	const char *a5 = "{\"\\u006fp\":\"watch\"}";	/* escaped: not recognised */
	const char *a6 = "[\"op\",\"watch\"]";

	(void)state;
	assert_true(exact(w1).watch);
	assert_true(exact(w2).watch);
	assert_false(exact(a1).watch);
	assert_false(exact(a2).watch);
	assert_false(exact(a3).watch);
	assert_false(exact(a4).watch);
	assert_false(exact(a5).watch);
	assert_false(exact(a6).watch);
}

/* A string with \u0000 is cut there by cJSON: "ab\u0000cd" reads as "ab",
 * so a consumer name could pass for another; the scan says so. */
static void
test_nul_escape(void **state)
{
	struct jsoncost c;
	static const char *const with[] = {
		"{\"op\":\"watch\",\"consumer\":\"ab\\u0000cd\"}",
		"{\"k\\u0000\":1}",
		"[\"\\\\\\u0000\"]",			/* an escaped backslash, then \u0000 */
		"{\"consumer\":\"\\u00000\"}",		/* \u0000, then '0' */
	};
	static const char *const without[] = {
		"{\"consumer\":\"ab\\\\u0000cd\"}",	/* a backslash, then u0000 */
		"{\"a\":\"\\u0001 u0000\"}",
		"{\"a\":\"\\u000\"}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(with) / sizeof(with[0]); i++) {
		assert_int_equal(jsoncost_scan(with[i], strlen(with[i]), &watch, &other, &c), 0);
		if (!c.nul)
			fail_msg("%s: \\u0000 not seen", with[i]);
	}
	for (size_t i = 0; i < sizeof(without) / sizeof(without[0]); i++) {
		assert_int_equal(jsoncost_scan(without[i], strlen(without[i]), &watch, &other, &c), 0);
		if (c.nul)
			fail_msg("%s: \\u0000 seen", without[i]);
	}
}

/* A frame of n copies of item in an array, optionally inside a watch. */
static char *
big(size_t n, const char *item, bool in_watch)
{
	size_t il = strlen(item), cap = n * (il + 1) + 64, len = 0;
	char *s = malloc(cap);

	assert_non_null(s);
	len += (size_t)snprintf(s, cap, "%s", in_watch ? "{\"pipeline\":[" : "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			s[len++] = ',';
		memcpy(s + len, item, il);
		len += il;
	}
	snprintf(s + len, cap - len, "%s", in_watch ? "],\"op\":\"watch\"}" : "]");
	return s;
}

static void
test_budgets(void **state)
{
	struct jsoncost c;
	char *s;
	char deep[64];

	(void)state;
	/* the small budget for frames that are not watches */
	s = big(JSONCOST_OTHER_VALUES - 1, "1", false);
	assert_int_equal(jsoncost_scan(s, strlen(s), &watch, &other, &c), 0);
	assert_int_equal(c.values, JSONCOST_OTHER_VALUES);
	free(s);
	s = big(JSONCOST_OTHER_VALUES, "1", false);
	assert_int_equal(jsoncost_scan(s, strlen(s), &watch, &other, &c), -E2BIG);
	assert_false(c.watch);
	free(s);

	/* a watch may hold more, even with its op last */
	s = big(1000, "{\"a\":1}", true);
	assert_int_equal(jsoncost_scan(s, strlen(s), &watch, &other, &c), 0);
	assert_true(c.watch);
	assert_int_equal(c.values, 3 + 2000);	/* frame, pipeline, "watch"; 1000 x {"a":1} */
	/* ... but not before authentication */
	assert_int_equal(jsoncost_scan(s, strlen(s), &other, &other, &c), -E2BIG);
	assert_int_equal(c.values, JSONCOST_OTHER_VALUES + 1);
	free(s);
	s = big(JSONCOST_WATCH_VALUES, "1", true);
	assert_int_equal(jsoncost_scan(s, strlen(s), &watch, &other, &c), -E2BIG);
	assert_int_equal(c.values, JSONCOST_WATCH_VALUES + 1);
	free(s);

	/* depth */
	snprintf(deep, sizeof(deep), "{\"op\":\"ping\",\"a\":[[[[[[[[1]]]]]]]]}");
	assert_int_equal(jsoncost_scan(deep, strlen(deep), &watch, &other, &c), -E2BIG);
	assert_int_equal(c.depth, JSONCOST_OTHER_DEPTH + 1);
	snprintf(deep, sizeof(deep), "{\"op\":\"ping\",\"a\":[[[[[[1]]]]]]}");
	assert_int_equal(jsoncost_scan(deep, strlen(deep), &watch, &other, &c), 0);
	assert_int_equal(c.depth, 7);

	/* nothing at all, blanks, a NUL, garbage: nothing to allocate */
	assert_int_equal(jsoncost_scan("", 0, &other, &other, &c), 0);
	assert_int_equal(c.values, 0);
	assert_int_equal(jsoncost_scan(" \t", 2, &other, &other, &c), 0);
	assert_int_equal(jsoncost_scan("{\"a\0\":1}", 9, &other, &other, &c), 0);
	assert_int_equal(c.values, 2);
	assert_int_equal(jsoncost_scan("\"unterminated", 13, &other, &other, &c), 0);
	assert_int_equal(c.values, 1);
	assert_int_equal(jsoncost_scan("]]]}}", 5, &other, &other, &c), 0);
	assert_int_equal(c.depth, 0);
}

/* The frame of issue 13: 16 MiB of one array.  cJSON builds 8 million items
 * (hundreds of MB) out of it; the scan refuses it after its first bytes. */
static void
test_huge_array_refused_early(void **state)
{
	size_t n = 8u << 20;
	char *s = big(n, "1", false);
	struct jsoncost c;
	clock_t t0 = clock();

	(void)state;
	assert_int_equal(jsoncost_scan(s, strlen(s), &watch, &other, &c), -E2BIG);
	/* op unknown: the larger budget applies until the scan stops */
	assert_int_equal(c.values, JSONCOST_WATCH_VALUES + 1);
	assert_int_equal(jsoncost_scan(s, strlen(s), &other, &other, &c), -E2BIG);
	assert_int_equal(c.values, JSONCOST_OTHER_VALUES + 1);
	print_message("# 16 MiB array refused in %.1f ms\n", (double)(clock() - t0) * 1000 / CLOCKS_PER_SEC);
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_watch_detected),
		cmocka_unit_test(test_budgets),
		cmocka_unit_test(test_nul_escape),
		cmocka_unit_test(test_huge_array_refused_early),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
