/*
 * test_event.c - event_build: the change event shape of DESIGN section 5
 * for inserts, updates (with and without the pre-image variant) and
 * deletes, refusal of a document that is not JSON, documents that are not
 * objects, the case of the operation and operations that are none of the
 * three.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
