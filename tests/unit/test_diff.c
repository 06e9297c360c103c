/*
 * test_diff.c - unit tests of updateDescription (daemon/stream/diff.c) on
 * NVSentinel health-event documents and on the edge cases of the
 * findUpdatedFields semantics: nested paths, removals, arrays reported whole,
 * type changes, numeric equality, output order, deep nesting and running out
 * of memory half-way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "diff.h"

static cJSON *
parse(const char *s)
{
	cJSON *j = cJSON_Parse(s);

	assert_non_null(j);
	return j;
}

/* Diffs two documents given as JSON text (NULL for a missing side) and
 * compares the compact result with `want`. */
static void
check(const char *old_s, const char *new_s, const char *want)
{
	cJSON *old_doc = old_s != NULL ? parse(old_s) : NULL;
	cJSON *new_doc = new_s != NULL ? parse(new_s) : NULL;
	cJSON *d = diff_update(old_doc, new_doc);
	char *got;

	assert_non_null(d);
	/* The result must own its values: free the inputs before printing. */
	cJSON_Delete(old_doc);
	cJSON_Delete(new_doc);
	got = cJSON_PrintUnformatted(d);
	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
	cJSON_Delete(d);
}

#define EMPTY "{\"updatedFields\":{},\"removedFields\":[]}"

static const char quarantine_old[] =
	"{\"createdAt\":\"2026-11-25T10:00:00.123Z\","
	"\"healthevent\":{\"nodeName\":\"n1\",\"agent\":\"gpu-health-monitor\","
	"\"checkName\":\"GpuXidError\",\"isFatal\":true,\"isHealthy\":false,"
	"\"errorCode\":[\"79\"],\"recommendedAction\":2,"
	"\"entitiesImpacted\":[{\"entityType\":\"GPU\",\"entityValue\":\"0\"}]},"
	"\"healtheventstatus\":{\"nodequarantined\":null,"
	"\"userpodsevictionstatus\":{\"status\":\"\"},\"faultremediated\":null,"
	"\"spanids\":{\"platform-connector\":\"a\"}}}";

static void
test_quarantine(void **state)
{
	const char *new_s =
		"{\"createdAt\":\"2026-11-25T10:00:00.123Z\","
		"\"healthevent\":{\"nodeName\":\"n1\",\"agent\":\"gpu-health-monitor\","
		"\"checkName\":\"GpuXidError\",\"isFatal\":true,\"isHealthy\":false,"
		"\"errorCode\":[\"79\"],\"recommendedAction\":2,"
		"\"entitiesImpacted\":[{\"entityType\":\"GPU\",\"entityValue\":\"0\"}]},"
		"\"healtheventstatus\":{\"nodequarantined\":\"Quarantined\","
		"\"userpodsevictionstatus\":{\"status\":\"\"},\"faultremediated\":null,"
		"\"spanids\":{\"platform-connector\":\"a\",\"fault-quarantine\":\"b7e1\"}}}";

	(void)state;
	check(quarantine_old, new_s,
	      "{\"updatedFields\":{"
	      "\"healtheventstatus.nodequarantined\":\"Quarantined\","
	      "\"healtheventstatus.spanids.fault-quarantine\":\"b7e1\"},"
	      "\"removedFields\":[]}");
}

static void
test_drain_and_remediate(void **state)
{
	const char *old_s =
		"{\"healtheventstatus\":{\"nodequarantined\":\"Quarantined\","
		"\"userpodsevictionstatus\":{\"status\":\"InProgress\",\"message\":\"\"},"
		"\"faultremediated\":null,\"lastremediationtimestamp\":null}}";
	const char *new_s =
		"{\"healtheventstatus\":{\"nodequarantined\":\"Quarantined\","
		"\"userpodsevictionstatus\":{\"status\":\"Succeeded\",\"message\":\"\"},"
		"\"faultremediated\":true,"
		"\"lastremediationtimestamp\":{\"seconds\":1764064800,\"nanos\":0}}}";

	(void)state;
	check(old_s, new_s,
	      "{\"updatedFields\":{"
	      "\"healtheventstatus.userpodsevictionstatus.status\":\"Succeeded\","
	      "\"healtheventstatus.faultremediated\":true,"
	      "\"healtheventstatus.lastremediationtimestamp\":{\"seconds\":1764064800,\"nanos\":0}},"
	      "\"removedFields\":[]}");
}

static void
test_no_change(void **state)
{
	(void)state;
	check(quarantine_old, quarantine_old, EMPTY);
	check("{}", "{}", EMPTY);
	check(NULL, NULL, EMPTY);
	/* Key order of objects does not matter, at any depth. */
	check("{\"a\":1,\"b\":{\"x\":[{\"p\":1,\"q\":2}],\"y\":2}}",
	      "{\"b\":{\"y\":2,\"x\":[{\"q\":2,\"p\":1}]},\"a\":1}", EMPTY);
}

static void
test_removed(void **state)
{
	(void)state;
	/* A removed object is listed once, not recursed into. */
	check("{\"a\":1,\"b\":{\"c\":1,\"d\":2},\"e\":{\"f\":{\"g\":1}},\"h\":null}",
	      "{\"a\":1,\"b\":{\"c\":1}}",
	      "{\"updatedFields\":{},\"removedFields\":[\"b.d\",\"e\",\"h\"]}");
	check("{\"healthevent\":{\"nodeName\":\"n1\",\"message\":\"XID 79\"}}",
	      "{\"healthevent\":{\"nodeName\":\"n2\"}}",
	      "{\"updatedFields\":{\"healthevent.nodeName\":\"n2\"},"
	      "\"removedFields\":[\"healthevent.message\"]}");
}

static void
test_arrays_reported_whole(void **state)
{
	(void)state;
	check("{\"healthevent\":{\"entitiesImpacted\":[{\"entityType\":\"GPU\",\"entityValue\":\"0\"}]}}",
	      "{\"healthevent\":{\"entitiesImpacted\":[{\"entityType\":\"GPU\",\"entityValue\":\"0\"},"
	      "{\"entityType\":\"GPU\",\"entityValue\":\"1\"}]}}",
	      "{\"updatedFields\":{\"healthevent.entitiesImpacted\":"
	      "[{\"entityType\":\"GPU\",\"entityValue\":\"0\"},"
	      "{\"entityType\":\"GPU\",\"entityValue\":\"1\"}]},"
	      "\"removedFields\":[]}");
	/* A change deep inside an array element still reports the whole array. */
	check("{\"a\":[1,{\"b\":[2,3]}]}", "{\"a\":[1,{\"b\":[2,4]}]}",
	      "{\"updatedFields\":{\"a\":[1,{\"b\":[2,4]}]},\"removedFields\":[]}");
	/* Order inside an array matters. */
	check("{\"a\":[1,2]}", "{\"a\":[2,1]}",
	      "{\"updatedFields\":{\"a\":[2,1]},\"removedFields\":[]}");
	check("{\"a\":[1,2]}", "{\"a\":[1,2,3]}",
	      "{\"updatedFields\":{\"a\":[1,2,3]},\"removedFields\":[]}");
	check("{\"a\":[1,2]}", "{\"a\":[]}",
	      "{\"updatedFields\":{\"a\":[]},\"removedFields\":[]}");
	check("{\"a\":[[1],[2]]}", "{\"a\":[[1],[2]]}", EMPTY);
	/* Objects inside arrays must match key for key, both ways. */
	check("{\"a\":[{\"p\":1}]}", "{\"a\":[{\"p\":1,\"q\":2}]}",
	      "{\"updatedFields\":{\"a\":[{\"p\":1,\"q\":2}]},\"removedFields\":[]}");
	check("{\"a\":[{\"p\":1,\"q\":2}]}", "{\"a\":[{\"q\":2}]}",
	      "{\"updatedFields\":{\"a\":[{\"q\":2}]},\"removedFields\":[]}");
}

static void
test_type_changes(void **state)
{
	(void)state;
	check("{\"s\":{\"nodequarantined\":null}}", "{\"s\":{\"nodequarantined\":{\"by\":\"fq\"}}}",
	      "{\"updatedFields\":{\"s.nodequarantined\":{\"by\":\"fq\"}},\"removedFields\":[]}");
	/* Object to null: the object's keys are not listed as removed. */
	check("{\"a\":{\"b\":1}}", "{\"a\":null}",
	      "{\"updatedFields\":{\"a\":null},\"removedFields\":[]}");
	check("{\"a\":{\"b\":1}}", "{\"a\":[{\"b\":1}]}",
	      "{\"updatedFields\":{\"a\":[{\"b\":1}]},\"removedFields\":[]}");
	check("{\"a\":\"1\",\"b\":true,\"c\":0,\"d\":null,\"e\":[]}",
	      "{\"a\":1,\"b\":false,\"c\":false,\"d\":false,\"e\":{}}",
	      "{\"updatedFields\":{\"a\":1,\"b\":false,\"c\":false,\"d\":false,\"e\":{}},"
	      "\"removedFields\":[]}");
}

static void
test_numbers_and_strings(void **state)
{
	(void)state;
	check("{\"a\":1,\"b\":100,\"c\":-0,\"d\":0.5,\"e\":12345678901}",
	      "{\"a\":1.0,\"b\":1e2,\"c\":0,\"d\":5e-1,\"e\":12345678901.0}", EMPTY);
	check("{\"a\":1}", "{\"a\":1.000001}",
	      "{\"updatedFields\":{\"a\":1.000001},\"removedFields\":[]}");
	/* Strings compare byte-wise, keys case-sensitively. */
	check("{\"s\":\"Quarantined\"}", "{\"s\":\"quarantined\"}",
	      "{\"updatedFields\":{\"s\":\"quarantined\"},\"removedFields\":[]}");
	check("{\"nodeName\":\"n1\"}", "{\"nodename\":\"n1\"}",
	      "{\"updatedFields\":{\"nodename\":\"n1\"},\"removedFields\":[\"nodeName\"]}");
	check("{\"s\":\"caf\\u00e9\"}", "{\"s\":\"caf\\u00e9\"}", EMPTY);
	/* Paths are keys joined with '.', whatever the keys contain. */
	check("{\"\":{\"a\":1},\"b\":{\"\":1}}", "{\"\":{\"a\":2},\"b\":{\"\":2}}",
	      "{\"updatedFields\":{\".a\":2,\"b.\":2},\"removedFields\":[]}");
}

static void
test_added_keys_and_order(void **state)
{
	(void)state;
	/* New objects are reported whole; updatedFields follow new_doc's order,
	 * removedFields old_doc's. */
	check("{\"gone0\":0,\"z\":1,\"y\":{\"k\":1,\"gone1\":1},\"gone2\":2,\"x\":3}",
	      "{\"x\":4,\"w\":{\"deep\":{\"v\":1}},\"y\":{\"k\":2,\"n\":[1]},\"z\":1}",
	      "{\"updatedFields\":{\"x\":4,\"w\":{\"deep\":{\"v\":1}},\"y.k\":2,\"y.n\":[1]},"
	      "\"removedFields\":[\"gone0\",\"y.gone1\",\"gone2\"]}");
	/* A missing or non-object side counts as an empty object. */
	check(NULL, "{\"a\":{\"b\":1},\"c\":2}",
	      "{\"updatedFields\":{\"a\":{\"b\":1},\"c\":2},\"removedFields\":[]}");
	check("{\"a\":{\"b\":1},\"c\":2}", NULL,
	      "{\"updatedFields\":{},\"removedFields\":[\"a\",\"c\"]}");
	check("[1,2]", "{\"a\":1}",
	      "{\"updatedFields\":{\"a\":1},\"removedFields\":[]}");
	check("{\"a\":1}", "\"text\"",
	      "{\"updatedFields\":{},\"removedFields\":[\"a\"]}");
	/* Empty objects on both sides are simply equal. */
	check("{\"a\":{}}", "{\"a\":{}}", EMPTY);
	check("{\"a\":{}}", "{\"a\":{\"b\":{}}}",
	      "{\"updatedFields\":{\"a.b\":{}},\"removedFields\":[]}");
}

/* Nesting close to cJSON's parse limit, changed at the bottom. */
static void
test_deep_nesting(void **state)
{
	enum { DEPTH = 990 };
	size_t n = DEPTH * 6 + 64;
	char *old_s = malloc(n), *new_s = malloc(n), *want = malloc(DEPTH * 2 + 64);
	size_t o = 0, w = 0;
	cJSON *old_doc, *new_doc, *d, *upd;

	(void)state;
	assert_non_null(old_s);
	assert_non_null(new_s);
	assert_non_null(want);
	for (int i = 0; i < DEPTH; i++) {
		memcpy(old_s + o, "{\"a\":", 5);
		o += 5;
		memcpy(want + w, "a.", 2);
		w += 2;
	}
	memcpy(want + w, "x", 2);
	memcpy(new_s, old_s, o);
	memcpy(old_s + o, "{\"x\":1}", 7);
	memcpy(new_s + o, "{\"x\":2}", 7);
	o += 7;
	memset(old_s + o, '}', DEPTH);
	memset(new_s + o, '}', DEPTH);
	o += DEPTH;
	old_s[o] = new_s[o] = '\0';

	old_doc = parse(old_s);
	new_doc = parse(new_s);
	d = diff_update(old_doc, new_doc);
	assert_non_null(d);
	upd = cJSON_GetObjectItemCaseSensitive(d, "updatedFields");
	assert_non_null(upd);
	assert_non_null(upd->child);
	assert_null(upd->child->next);
	assert_string_equal(upd->child->string, want);
	assert_int_equal(upd->child->valuedouble, 2);
	cJSON_Delete(d);

	d = diff_update(old_doc, old_doc);
	assert_non_null(d);
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "updatedFields")->child);
	cJSON_Delete(d);

	cJSON_Delete(old_doc);
	cJSON_Delete(new_doc);
	free(old_s);
	free(new_s);
	free(want);
}

/* An allocator that fails after a set number of successes. */
static long allocs_left;

static void *
failing_malloc(size_t n)
{
	if (allocs_left-- <= 0)
		return NULL;
	return malloc(n);
}

static void
test_out_of_memory(void **state)
{
	const char *new_s =
		"{\"healthevent\":{\"nodeName\":\"n1\",\"isFatal\":false},"
		"\"healtheventstatus\":{\"nodequarantined\":\"Quarantined\","
		"\"spanids\":{\"fault-quarantine\":\"b\"}},\"extra\":[1,2,3]}";
	cJSON *old_doc = parse(quarantine_old);
	cJSON *new_doc = parse(new_s);
	cJSON_Hooks hooks = { failing_malloc, free };
	int succeeded = 0;

	(void)state;
	/* Every failing allocation must give NULL and leak nothing; enough of
	 * them must give the full answer. */
	for (long n = 0; n < 200 && !succeeded; n++) {
		cJSON *d;

		allocs_left = n;
		cJSON_InitHooks(&hooks);
		d = diff_update(old_doc, new_doc);
		cJSON_InitHooks(NULL);
		if (d != NULL) {
			char *got = cJSON_PrintUnformatted(d);

			assert_non_null(got);
			assert_string_equal(got,
				"{\"updatedFields\":{\"healthevent.isFatal\":false,"
				"\"healtheventstatus.nodequarantined\":\"Quarantined\","
				"\"healtheventstatus.spanids.fault-quarantine\":\"b\","
				"\"extra\":[1,2,3]},"
				"\"removedFields\":[\"createdAt\",\"healthevent.agent\","
				"\"healthevent.checkName\",\"healthevent.isHealthy\","
				"\"healthevent.errorCode\",\"healthevent.recommendedAction\","
				"\"healthevent.entitiesImpacted\","
				"\"healtheventstatus.userpodsevictionstatus\","
				"\"healtheventstatus.faultremediated\","
				"\"healtheventstatus.spanids.platform-connector\"]}");
			free(got);
			cJSON_Delete(d);
			succeeded = 1;
		}
	}
	assert_true(succeeded);
	cJSON_Delete(old_doc);
	cJSON_Delete(new_doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quarantine),
		cmocka_unit_test(test_drain_and_remediate),
		cmocka_unit_test(test_no_change),
		cmocka_unit_test(test_removed),
		cmocka_unit_test(test_arrays_reported_whole),
		cmocka_unit_test(test_type_changes),
		cmocka_unit_test(test_numbers_and_strings),
		cmocka_unit_test(test_added_keys_and_order),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_out_of_memory),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
