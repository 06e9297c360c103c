/*
 * test_event.c - event_build: the change event shape of DESIGN section 5
 * for inserts, updates (with and without the pre-image variant) and
 * deletes, refusal of a document that is not JSON, documents that are not
 * objects, the case of the operation and operations that are none of the
 * three, the clusterTime read as seconds, and fields that print many times
 * their length.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <cJSON.h>

#include "event.h"

static const struct token pos = { 0x29f334dc, 4, 2 };
static const char *doc_old = "{\"id\": \"u1\", \"createdAt\": \"t\", \"healtheventstatus\": {\"nodequarantined\": null, \"spanids\": {\"a\": \"1\"}}, \"x\": 1}";
static const char *doc_new = "{\"id\": \"u1\", \"createdAt\": \"t\", \"healtheventstatus\": {\"nodequarantined\": \"Quarantined\", \"spanids\": {\"a\": \"1\"}}}";

static struct change_row row(const char *op, const char *newd, const char *oldd)
{
	struct change_row r = { 2, "health_events", "u1", op, "2026-11-25T10:00:00.123456Z", newd, oldd };
	return r;
}

static cJSON *parse(const char *s, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(s, len);
	assert_non_null(j);
	assert_int_equal(strlen(s), len);
	return j;
}

static const char *str(const cJSON *o, const char *path)
{
	char buf[128], *save = NULL, *k;
	const cJSON *cur = o;

	snprintf(buf, sizeof(buf), "%s", path);
	for (k = strtok_r(buf, "/", &save); k && cur; k = strtok_r(NULL, "/", &save))
		cur = cJSON_GetObjectItemCaseSensitive(cur, k);
	return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static void test_insert(void **state)
{
	struct change_row r = row("INSERT", doc_new, NULL);
	const char *err = "unset";
	struct event *ev = event_build(&r, &pos, "nvsentinel", &err);
	cJSON *j;

	(void)state;
	assert_non_null(ev);
	assert_null(err);
	assert_int_equal(ev->table, TABLE_HEALTH_EVENTS);
	assert_null(ev->json_before);
	j = parse(ev->json, ev->len);
	assert_string_equal(str(j, "_id/_data"), "29f334dc00000000000000040000000000000002");
	assert_string_equal(str(j, "operationType"), "insert");
	assert_string_equal(str(j, "clusterTime"), "2026-11-25T10:00:00.123456Z");
	assert_string_equal(str(j, "ns/db"), "nvsentinel");
	assert_string_equal(str(j, "ns/coll"), "health_events");
	assert_string_equal(str(j, "documentKey/_id"), "u1");
	assert_string_equal(str(j, "fullDocument/healtheventstatus/nodequarantined"), "Quarantined");
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "updateDescription"));
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "fullDocumentBeforeChange"));
	/* The stored document is embedded as PostgreSQL wrote it. */
	assert_non_null(strstr(ev->json, doc_new));
	cJSON_Delete(j);
	event_unref(ev);
}

static void test_update(void **state)
{
	struct change_row r = row("UPDATE", doc_new, doc_old);
	const char *err;
	struct event *ev = event_build(&r, &pos, "nvsentinel", &err);
	cJSON *j, *b, *ud;

	(void)state;
	assert_non_null(ev);
	j = parse(ev->json, ev->len);
	assert_string_equal(str(j, "operationType"), "update");
	ud = cJSON_GetObjectItemCaseSensitive(j, "updateDescription");
	assert_string_equal(str(ud, "updatedFields/healtheventstatus.nodequarantined"), "Quarantined");
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(j, "updateDescription"), "updatedFields")), 1);
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ud, "removedFields"), 0)->valuestring, "x");
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "fullDocumentBeforeChange"));
	assert_non_null(ev->json_before);
	b = parse(ev->json_before, ev->len_before);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(b, "fullDocumentBeforeChange"),
						 "healtheventstatus"), "nodequarantined")));
	assert_non_null(cJSON_GetObjectItemCaseSensitive(b, "updateDescription"));
	cJSON_Delete(j);
	cJSON_Delete(b);
	event_unref(ev);
}

static void test_delete(void **state)
{
	struct change_row r = row("DELETE", NULL, doc_old);
	const char *err;
	struct event *ev = event_build(&r, &pos, "nvsentinel", &err);
	cJSON *j;

	(void)state;
	assert_non_null(ev);
	j = parse(ev->json, ev->len);
	assert_string_equal(str(j, "operationType"), "delete");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "fullDocument")));
	assert_string_equal(str(j, "fullDocumentBeforeChange/id"), "u1");
	assert_null(cJSON_GetObjectItemCaseSensitive(j, "updateDescription"));
	cJSON_Delete(j);
	event_unref(ev);
}

static void test_bad_document(void **state)
{
	struct change_row r = row("UPDATE", "{\"a\": ", doc_old);
	const char *err = NULL;

	(void)state;
	assert_null(event_build(&r, &pos, "nvsentinel", &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "not valid JSON"));
}

/* Builds row and parses the event (and its pre-image variant, when built). */
static cJSON *build(struct change_row r, cJSON **ret_before)
{
	const char *err = "unset";
	struct event *ev = event_build(&r, &pos, "nvsentinel", &err);
	cJSON *j;

	assert_non_null(ev);
	assert_null(err);
	j = parse(ev->json, ev->len);
	if (ret_before)
		*ret_before = ev->json_before ? parse(ev->json_before, ev->len_before) : NULL;
	event_unref(ev);
	return j;
}

static const cJSON *member(const cJSON *o, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* A document that is not an object (for health_events the relay's query
 * appends the record id with jsonb ||, which turns a stored null, string,
 * number or array into an array) is delivered as null, as MongoDB never
 * shows anything but a document there. */
static void test_document_not_an_object(void **state)
{
	static const char *const odd[] = { "[null, {\"id\": \"u1\"}]", "[1, 2, {\"id\": \"u1\"}]", "\"s\"", "5", "null",
					   " [{\"id\": \"u1\"}]" };
	cJSON *j, *b, *ud;

	(void)state;
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		j = build(row("INSERT", odd[i], NULL), NULL);
		assert_string_equal(str(j, "operationType"), "insert");
		assert_true(cJSON_IsNull(member(j, "fullDocument")));
		cJSON_Delete(j);

		j = build(row("DELETE", NULL, odd[i]), NULL);
		assert_true(cJSON_IsNull(member(j, "fullDocument")));
		assert_true(cJSON_IsNull(member(j, "fullDocumentBeforeChange")));
		cJSON_Delete(j);

		/* object -> not an object: every field removed */
		j = build(row("UPDATE", odd[i], doc_old), &b);
		assert_true(cJSON_IsNull(member(j, "fullDocument")));
		ud = (cJSON *)member(j, "updateDescription");
		assert_int_equal(cJSON_GetArraySize(member(ud, "updatedFields")), 0);
		assert_int_equal(cJSON_GetArraySize(member(ud, "removedFields")), 4);
		assert_non_null(b);
		assert_string_equal(str(b, "fullDocumentBeforeChange/id"), "u1");
		cJSON_Delete(j);
		cJSON_Delete(b);

		/* not an object -> object: every field new, no pre-image */
		j = build(row("UPDATE", doc_new, odd[i]), &b);
		assert_string_equal(str(j, "fullDocument/id"), "u1");
		ud = (cJSON *)member(j, "updateDescription");
		assert_int_equal(cJSON_GetArraySize(member(ud, "updatedFields")), 3);
		assert_int_equal(cJSON_GetArraySize(member(ud, "removedFields")), 0);
		if (b != NULL)
			assert_true(cJSON_IsNull(member(b, "fullDocumentBeforeChange")));
		cJSON_Delete(j);
		cJSON_Delete(b);
	}
}

/* PostgreSQL's TG_OP is upper-case; a row written by hand may not be. */
static void test_operation_case(void **state)
{
	cJSON *j;

	(void)state;
	j = build(row("insert", doc_new, NULL), NULL);
	assert_string_equal(str(j, "operationType"), "insert");
	assert_string_equal(str(j, "fullDocument/id"), "u1");
	cJSON_Delete(j);
	j = build(row("Update", doc_new, doc_old), NULL);
	assert_string_equal(str(j, "operationType"), "update");
	assert_non_null(member(j, "updateDescription"));
	cJSON_Delete(j);
	j = build(row("delete", NULL, doc_old), NULL);
	assert_string_equal(str(j, "operationType"), "delete");
	assert_string_equal(str(j, "fullDocumentBeforeChange/id"), "u1");
	cJSON_Delete(j);
}

/* Any other operation: an event that says so and carries no document,
 * whatever the row holds, so no consumer takes it for an insert. */
static void test_unknown_operation(void **state)
{
	static const char *const ops[] = { "TRUNCATE", "", "INSERTX", "upsert" };
	cJSON *j, *b;

	(void)state;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		j = build(row(ops[i], doc_new, doc_old), &b);
		assert_string_equal(str(j, "operationType"), "unknown");
		assert_string_equal(str(j, "documentKey/_id"), "u1");
		assert_string_equal(str(j, "ns/coll"), "health_events");
		assert_null(member(j, "fullDocument"));
		assert_null(member(j, "fullDocumentBeforeChange"));
		assert_null(member(j, "updateDescription"));
		assert_null(b);
		cJSON_Delete(j);
	}
}

static void test_tables_and_refs(void **state)
{
	struct change_row r = row("INSERT", "{}", NULL);
	const char *err;
	struct event *ev;

	(void)state;
	assert_int_equal(event_table_of("maintenance_events"), TABLE_MAINTENANCE_EVENTS);
	assert_int_equal(event_table_of("health_events"), TABLE_HEALTH_EVENTS);
	assert_int_equal(event_table_of("other"), TABLE_OTHER);
	r.table = "maintenance_events";
	ev = event_build(&r, &pos, "db", &err);
	assert_non_null(ev);
	assert_int_equal(ev->table, TABLE_MAINTENANCE_EVENTS);
	assert_ptr_equal(event_ref(ev), ev);
	assert_int_equal(ev->refs, 2);
	event_unref(ev);
	event_unref(ev);
	event_unref(NULL);
}

static double changed_at(const char *cluster_time)
{
	struct change_row r = row("INSERT", "{}", NULL);
	const char *err;
	struct event *ev;
	double t;

	r.cluster_time = cluster_time;
	ev = event_build(&r, &pos, "db", &err);
	assert_non_null(ev);
	t = ev->changed_at;
	event_unref(ev);
	return t;
}

/* timegm's answer for y-m-d h:mi:s UTC. */
static double utc(int y, int m, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s };

	return (double)timegm(&tm);
}

/* changed_at (the delivery latency histogram's start) against timegm, and
 * 0 for anything that is not an RFC 3339 timestamp of a real date. */
static void test_cluster_time(void **state)
{
	static const int days[][6] = {
		{ 1970, 1, 1, 0, 0, 0 }, { 1999, 12, 31, 23, 59, 59 }, { 2000, 2, 29, 12, 0, 0 },
		{ 2000, 3, 1, 0, 0, 1 }, { 2024, 2, 29, 23, 59, 59 }, { 2026, 11, 25, 10, 0, 0 },
		{ 2100, 3, 1, 6, 30, 0 }, { 1969, 12, 31, 23, 59, 59 }, { 2038, 1, 19, 3, 14, 8 },
	};
	static const char *const bad[] = {
		"", "2026-11-25", "2026-11-25T10:00:00", "2026-11-25T10:00:00.5", "2026-13-01T00:00:00Z",
		"2026-00-10T00:00:00Z", "2026-11-31T00:00:00Z", "2025-02-29T00:00:00Z", "2026-11-25T24:00:00Z",
		"2026-11-25T10:60:00Z", "2026-11-25T10:00:60Z", "2026-1a-25T10:00:00Z", " 026-11-25T10:00:00Z",
		"2026-11-25T10:00:00ZZ", "2026/11/25T10:00:00Z", "2026-11-25T10:00:00+1:00",
	};
	char text[64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(days) / sizeof(days[0]); i++) {
		const int *d = days[i];

		snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02dZ", d[0], d[1], d[2], d[3], d[4], d[5]);
		assert_true(changed_at(text) == utc(d[0], d[1], d[2], d[3], d[4], d[5]));
	}
	assert_true(changed_at("2026-11-25T10:00:00.25Z") == utc(2026, 11, 25, 10, 0, 0) + 0.25);
	assert_true(changed_at("2026-11-25T10:00:00+01:30") == utc(2026, 11, 25, 8, 30, 0));
	assert_true(changed_at("2026-11-25 10:00:00z") == utc(2026, 11, 25, 10, 0, 0));
	assert_true(changed_at("2026-11-25T10:00:00.123456Z") > utc(2026, 11, 25, 10, 0, 0) + 0.123455);
	assert_true(changed_at("2026-11-25T10:00:00.123456Z") < utc(2026, 11, 25, 10, 0, 0) + 0.123457);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_true(changed_at(bad[i]) == 0);
}

/* An insert is printed into a buffer sized from its fields (or, should that
 * be short, the usual way): fields whose every byte prints as an escape,
 * and a document of 200 kB, come out whole and exact. */
static void test_print_size(void **state)
{
	static char id[512], table[64], big[200 * 1024];
	struct change_row r = row("INSERT", big, NULL);
	const char *err;
	struct event *ev;
	cJSON *j, *back;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(id) - 1; i++)
		id[i] = (char)(1 + i % 31);         /* control characters: \u00XX */
	for (i = 0; i < sizeof(table) - 1; i++)
		table[i] = i % 2 ? '"' : '\\';
	memset(big, 'x', sizeof(big) - 1);
	memcpy(big, "{\"k\": \"", 7);
	memcpy(big + sizeof(big) - 3, "\"}", 2);
	r.record_id = id;
	r.table = table;
	ev = event_build(&r, &pos, "db\x01\x02", &err);
	assert_non_null(ev);
	j = parse(ev->json, ev->len);
	assert_string_equal(str(j, "documentKey/_id"), id);
	assert_string_equal(str(j, "ns/coll"), table);
	assert_string_equal(str(j, "ns/db"), "db\x01\x02");
	back = cJSON_GetObjectItemCaseSensitive(j, "fullDocument");
	assert_non_null(back);
	assert_int_equal(strlen(str(back, "k")), sizeof(big) - 1 - 9);
	cJSON_Delete(j);
	event_unref(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_insert),
		cmocka_unit_test(test_update),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_bad_document),
		cmocka_unit_test(test_tables_and_refs),
		cmocka_unit_test(test_document_not_an_object),
		cmocka_unit_test(test_operation_case),
		cmocka_unit_test(test_unknown_operation),
		cmocka_unit_test(test_cluster_time),
		cmocka_unit_test(test_print_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
