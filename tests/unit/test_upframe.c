/*
 * test_upframe.c - frames from an upstream relay as a chained relay reads
 * them: events rebuilt byte for byte from event_build's output (an update
 * with its pre-image split into both variants, one without left whole,
 * inserts and deletes untouched, a document that itself holds the member's
 * text), bookmarks, the answers to position and store, errors, and frames
 * that must be refused.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "errors.h"
#include "event.h"
#include "upframe.h"

static const struct token pos = { 0x29f334dc, 4, 2 };

static struct event *build(const char *op, const char *newd, const char *oldd)
{
	struct change_row r = { 2, "health_events", "u1", op, "2026-11-25T10:00:00.123456Z", newd, oldd };
	const char *err = NULL;
	struct event *ev = event_build(&r, &pos, "nvsentinel", &err);

	assert_non_null(ev);
	return ev;
}

/* What the upstream writes for ev, with or without the pre-image. */
static char *frame_of(const struct event *ev, bool before)
{
	const char *json = before && ev->json_before ? ev->json_before : ev->json;
	size_t n = strlen(json) + 64;
	char *f = malloc(n);

	assert_non_null(f);
	snprintf(f, n, "{\"op\":\"event\",\"sid\":0,\"event\":%s}", json);
	return f;
}

static void round_trip(const char *op, const char *newd, const char *oldd)
{
	struct event *ev = build(op, newd, oldd);
	char *line = frame_of(ev, true), err[200];
	struct upframe f;

	assert_int_equal(upframe_parse(line, strlen(line), &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, UPF_EVENT);
	assert_int_equal(f.sid, 0);
	assert_true(f.has_token);
	assert_int_equal(token_cmp(&f.tok, &pos), 0);
	assert_int_equal(f.tok.gen, pos.gen);
	assert_int_equal(f.ev->table, TABLE_HEALTH_EVENTS);
	assert_int_equal(f.ev->len, ev->len);
	assert_string_equal(f.ev->json, ev->json);
	if (ev->json_before) {
		assert_non_null(f.ev->json_before);
		assert_int_equal(f.ev->len_before, ev->len_before);
		assert_string_equal(f.ev->json_before, ev->json_before);
	} else {
		assert_null(f.ev->json_before);
	}
	event_unref(f.ev);
	event_unref(ev);
	free(line);
}

static void test_events_byte_for_byte(void **state)
{
	(void)state;
	round_trip("INSERT", "{\"a\": 1}", NULL);
	round_trip("UPDATE", "{\"a\": 2, \"b\": [1, 2]}", "{\"a\": 1}");
	round_trip("UPDATE", "{\"a\": 2}", NULL);             /* no pre-image to split */
	round_trip("UPDATE", "{\"a\": 2}", "[1]");            /* not an object: none offered */
	round_trip("DELETE", NULL, "{\"a\": 1}");             /* part of the event, not cut */
	/* The member's text inside a document is not the member. */
	round_trip("UPDATE", "{\"m\": \",\\\"fullDocumentBeforeChange\\\":1\"}",
		   "{\"m\": \",\\\"fullDocumentBeforeChange\\\":0\", \"fullDocumentBeforeChange\": 1}");
	round_trip("bogus", "{\"a\": 1}", NULL);
}

static void test_other_frames(void **state)
{
	struct upframe f;
	char err[200];
	const char *bm = "{\"op\":\"bookmark\",\"sid\":0,\"token\":{\"_data\":\"29f334dc0000000000000004ffffffffffffffff\"}}";
	const char *p1 = "{\"op\":\"position\",\"sid\":7,\"token\":{\"_data\":\"29f334dc00000000000000040000000000000002\"}}";
	const char *p2 = "{\"op\":\"position\",\"sid\":8,\"token\":null}";
	const char *st = "{\"op\":\"stored\",\"sid\":9}";
	const char *er = "{\"op\":\"error\",\"sid\":3,\"code\":286,\"codeName\":\"ChangeStreamHistoryLost\",\"message\":\"gone\"}";

	(void)state;
	assert_int_equal(upframe_parse(bm, strlen(bm), &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, UPF_BOOKMARK);
	assert_int_equal(f.tok.id, TOKEN_ID_END);
	assert_int_equal(upframe_parse(p1, strlen(p1), &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, UPF_POSITION);
	assert_int_equal(f.sid, 7);
	assert_true(f.has_token);
	assert_int_equal(f.tok.id, 2);
	assert_int_equal(upframe_parse(p2, strlen(p2), &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, UPF_POSITION);
	assert_false(f.has_token);
	assert_int_equal(upframe_parse(st, strlen(st), &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, UPF_STORED);
	assert_int_equal(f.sid, 9);
	assert_int_equal(upframe_parse(er, strlen(er), &f, err, sizeof(err)), 0);
	assert_int_equal(f.type, UPF_ERROR);
	assert_int_equal(f.code, ERR_HISTORY_LOST);
	assert_string_equal(f.msg, "gone");
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"not json",
		"{\"op\":\"event\",\"sid\":0,\"event\":{\"_id\":{\"_data\":\"xyz\"},\"operationType\":\"insert\",\"ns\":{\"coll\":\"health_events\"}}}",
		"{\"op\":\"event\",\"sid\":0,\"event\":{\"_id\":{\"_data\":\"29f334dc00000000000000040000000000000002\"},\"operationType\":\"insert\"}}",
		"{\"op\":\"bookmark\",\"sid\":0,\"token\":{\"_data\":\"29f3\"}}",
		"{\"op\":\"position\",\"sid\":1,\"token\":{\"_data\":7}}",
		"{\"op\":\"stored\"}",
	};
	struct upframe f;
	char err[200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (upframe_parse(bad[i], strlen(bad[i]), &f, err, sizeof(err)) != -EBADMSG)
			fail_msg("case %zu accepted", i);
		assert_true(err[0] != '\0');
		assert_null(f.ev);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_events_byte_for_byte),
		cmocka_unit_test(test_other_frames),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests_name("upframe", tests, NULL, NULL);
}
