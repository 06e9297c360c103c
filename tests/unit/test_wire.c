/*
 * test_wire.c - unit tests of the client side of the protocol
 * (proto/wire.c): the frames libnvsrelay sends (hello, watch with every
 * option, ack, unwatch) and how it takes server frames apart (events handed
 * out byte-for-byte, bookmarks, errors, hello, unknown ops, broken frames),
 * plus the member scanner that finds the event inside its frame.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "errors.h"
#include "token.h"
#include "wire.h"

#define TOK "0000000a00000000000000030000000000000007"

static int
parse(const char *line, struct wire_msg *m)
{
	char err[160];

	return wire_parse(line, strlen(line), m, err, sizeof(err));
}

/* Parses a built frame back and checks it is one line ending in '\n'. */
static cJSON *
reparse(const char *frame)
{
	size_t n = strlen(frame);
	cJSON *o;

	assert_true(n > 1);
	assert_int_equal(frame[n - 1], '\n');
	assert_null(memchr(frame, '\n', n - 1));
	o = cJSON_ParseWithLength(frame, n - 1);
	assert_non_null(o);
	return o;
}

static const char *
str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static void
test_hello(void **state)
{
	char *f;
	cJSON *o;

	(void)state;
	assert_int_equal(wire_hello(NULL, NULL, &f), 0);
	assert_string_equal(f, "{\"op\":\"hello\",\"v\":1,\"client\":\"libnvsrelay\"}\n");
	free(f);

	assert_int_equal(wire_hello("node-drainer", "s3cr\"et\n", &f), 0);
	o = reparse(f);
	assert_string_equal(str(o, "client"), "node-drainer");
	assert_string_equal(str(o, WIRE_AUTH_FIELD), "s3cr\"et\n");
	cJSON_Delete(o);
	free(f);
}

static void
test_watch_minimal(void **state)
{
	struct wire_watch w = { .sid = 1 };
	char *f;

	(void)state;
	assert_int_equal(wire_watch(&w, &f, NULL, 0), 0);
	assert_string_equal(f, "{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\"}\n");
	free(f);
}

static void
test_watch_everything(void **state)
{
	struct wire_watch w = {
		.sid = 9007199254740991LL,
		.table = "MaintenanceEvents",
		.consumer = "fault-quarantine",
		.resume_after = TOK,
		.start_at = "2026-11-25T10:00:00.5Z",
		.pipeline = "[ {\"$match\": {\"operationType\": {\"$in\": [\"insert\", \"update\"]},\n"
			    "  \"fullDocument.healthevent.isfatal\": true}} ]",
		.before = "required",
	};
	const cJSON *p, *m;
	char *f, err[160];
	cJSON *o;

	(void)state;
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), 0);
	/* Pretty-printed pipeline text still makes a one-line frame. */
	o = reparse(f);
	/* The sid is written as an integer, never in exponent form. */
	assert_non_null(strstr(f, "\"sid\":9007199254740991,"));
	assert_string_equal(str(o, "op"), "watch");
	assert_string_equal(str(o, "table"), "MaintenanceEvents");
	assert_string_equal(str(o, "consumer"), "fault-quarantine");
	assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(o, "resumeAfter"), "_data"), TOK);
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "startAfter"));
	assert_string_equal(str(o, "startAtOperationTime"), "2026-11-25T10:00:00.5Z");
	assert_string_equal(str(o, "fullDocumentBeforeChange"), "required");
	p = cJSON_GetObjectItemCaseSensitive(o, "pipeline");
	assert_true(cJSON_IsArray(p));
	assert_int_equal(cJSON_GetArraySize(p), 1);
	m = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(p, 0), "$match");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "fullDocument.healthevent.isfatal")));
	cJSON_Delete(o);
	free(f);

	w.resume_after = NULL;
	w.start_after = TOK;
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), 0);
	o = reparse(f);
	assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(o, "startAfter"), "_data"), TOK);
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "resumeAfter"));
	cJSON_Delete(o);
	free(f);
}

static void
test_watch_refused(void **state)
{
	struct wire_watch w = { .sid = 1 };
	char *f = NULL, err[160];

	(void)state;
	w.pipeline = "{\"$match\": {}}";
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "pipeline must be a JSON array of stages");
	w.pipeline = "[{\"$match\": }]";
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not valid JSON"));
	w.pipeline = "[] trailing";
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), -EINVAL);
	w.pipeline = "";
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), -EINVAL);
	w.pipeline = "[]";
	w.sid = -1;
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), -EINVAL);
	w.sid = 9007199254740992LL;
	assert_int_equal(wire_watch(&w, &f, NULL, 0), -EINVAL);
	assert_null(f);
	w.sid = 0;
	assert_int_equal(wire_watch(&w, &f, err, sizeof(err)), 0);
	assert_non_null(strstr(f, "\"pipeline\":[]"));
	free(f);
}

static void
test_ack_unwatch(void **state)
{
	char *f, err[160];

	(void)state;
	assert_int_equal(wire_ack(3, TOK, &f, err, sizeof(err)), 0);
	assert_string_equal(f, "{\"op\":\"ack\",\"sid\":3,\"token\":{\"_data\":\"" TOK "\"}}\n");
	free(f);
	assert_int_equal(wire_ack(3, "", &f, err, sizeof(err)), -EINVAL);
	assert_int_equal(wire_ack(3, NULL, &f, err, sizeof(err)), -EINVAL);
	assert_int_equal(wire_ack(-2, TOK, &f, err, sizeof(err)), -EINVAL);
	assert_int_equal(wire_unwatch(12, &f), 0);
	assert_string_equal(f, "{\"op\":\"unwatch\",\"sid\":12}\n");
	free(f);
	assert_int_equal(wire_unwatch(-1, &f), -EINVAL);
}

static void
test_parse_event(void **state)
{
	/* Spacing, key order and number forms as PostgreSQL's jsonb text
	 * writes them: the event must come out exactly as it went in. */
	const char *ev = "{\"_id\":{\"_data\":\"" TOK "\"},\"operationType\":\"update\","
			 "\"fullDocument\":{\"a\": 1.50, \"big\": 12345678901234567890, \"s\": \"}]\\\"{\"},"
			 "\"updateDescription\":{\"updatedFields\":{\"a\": 1.50},\"removedFields\":[]}}";
	char line[1024];
	struct wire_msg m;

	(void)state;
	snprintf(line, sizeof(line), "{\"op\":\"event\",\"sid\":7,\"event\":%s}", ev);
	assert_int_equal(parse(line, &m), 0);
	assert_int_equal(m.type, WIRE_EVENT);
	assert_int_equal(m.sid, 7);
	assert_string_equal(m.token, TOK);
	assert_string_equal(m.op_type, "update");
	assert_int_equal(m.event_len, strlen(ev));
	assert_memory_equal(m.event, ev, strlen(ev));
	assert_true(m.event >= line && m.event < line + strlen(line));
	wire_msg_clear(&m);

	/* Another member order and whitespace. */
	snprintf(line, sizeof(line), " { \"event\" : %s , \"sid\" : 7 , \"op\" : \"event\" } ", ev);
	assert_int_equal(parse(line, &m), 0);
	assert_int_equal(m.event_len, strlen(ev));
	assert_memory_equal(m.event, ev, strlen(ev));
	wire_msg_clear(&m);

	/* An escaped key is legal JSON: the event is then re-printed. */
	snprintf(line, sizeof(line), "{\"op\":\"event\",\"sid\":7,\"\\u0065vent\":%s}", ev);
	assert_int_equal(parse(line, &m), 0);
	assert_non_null(m.event);
	assert_non_null(strstr(m.event, TOK));
	assert_int_equal(m.event_len, strlen(m.event));
	wire_msg_clear(&m);
	wire_msg_clear(&m);
}

static void
test_parse_bookmark_error_hello(void **state)
{
	struct wire_msg m;

	(void)state;
	assert_int_equal(parse("{\"op\":\"bookmark\",\"sid\":0,\"token\":{\"_data\":\"" TOK "\"}}", &m), 0);
	assert_int_equal(m.type, WIRE_BOOKMARK);
	assert_int_equal(m.sid, 0);
	assert_string_equal(m.token, TOK);
	assert_null(m.event);
	wire_msg_clear(&m);

	assert_int_equal(parse("{\"op\":\"error\",\"sid\":1,\"code\":286,\"codeName\":\"ChangeStreamHistoryLost\","
			       "\"message\":\"oldest is x\",\"token\":{\"_data\":\"" TOK "\"}}", &m), 0);
	assert_int_equal(m.type, WIRE_ERROR);
	assert_int_equal(m.sid, 1);
	assert_int_equal(m.code, 286);
	assert_string_equal(m.code_name, "ChangeStreamHistoryLost");
	assert_string_equal(m.message, "oldest is x");
	assert_string_equal(m.token, TOK);
	wire_msg_clear(&m);

	/* Connection-level error: no sid, no token, no names. */
	assert_int_equal(parse("{\"op\":\"error\",\"code\":9}", &m), 0);
	assert_int_equal(m.sid, -1);
	assert_int_equal(m.code, 9);
	assert_string_equal(m.code_name, "");
	assert_string_equal(m.message, "");
	assert_null(m.token);
	wire_msg_clear(&m);

	assert_int_equal(parse("{\"op\":\"hello\",\"v\":1,\"server\":\"nvsrelayd\",\"generation\":\"0000000a\","
			       "\"maxFrameBytes\":16777216}", &m), 0);
	assert_int_equal(m.type, WIRE_HELLO);
	assert_string_equal(m.generation, "0000000a");
	assert_int_equal(m.max_frame, 16777216);
	wire_msg_clear(&m);

	assert_int_equal(parse("{\"op\":\"pong\"}", &m), 0);
	assert_int_equal(m.type, WIRE_PONG);
	wire_msg_clear(&m);

	/* A newer server's frame is passed over, not refused. */
	assert_int_equal(parse("{\"op\":\"stats\",\"sid\":1,\"lag\":3}", &m), 0);
	assert_int_equal(m.type, WIRE_OTHER);
	assert_int_equal(m.sid, 1);
	wire_msg_clear(&m);
}

static void
test_parse_broken(void **state)
{
	static const char *bad[] = {
		"",
		"not json",
		"[1,2]",
		"{\"op\":1}",
		"{\"sid\":1}",
		"{\"op\":\"event\",\"sid\":1}",
		"{\"op\":\"event\",\"event\":{\"_id\":{\"_data\":\"x\"},\"operationType\":\"insert\"}}",
		"{\"op\":\"event\",\"sid\":1,\"event\":{\"operationType\":\"insert\"}}",
		"{\"op\":\"event\",\"sid\":1,\"event\":{\"_id\":{\"_data\":\"x\"}}}",
		"{\"op\":\"event\",\"sid\":1,\"event\":{\"_id\":\"x\",\"operationType\":\"insert\"}}",
		"{\"op\":\"event\",\"sid\":\"1\",\"event\":{\"_id\":{\"_data\":\"x\"},\"operationType\":\"insert\"}}",
		"{\"op\":\"event\",\"sid\":1.5,\"event\":{\"_id\":{\"_data\":\"x\"},\"operationType\":\"insert\"}}",
		"{\"op\":\"bookmark\",\"sid\":1}",
		"{\"op\":\"bookmark\",\"sid\":1,\"token\":{\"_data\":5}}",
		"{\"op\":\"bookmark\",\"token\":{\"_data\":\"x\"}}",
		"{\"op\":\"error\",\"sid\":1}",
		"{\"op\":\"error\",\"code\":\"286\"}",
		"{\"op\":\"error\",\"code\":1e12}",
		"{\"op\":\"pong\"} trailing",
	};
	struct wire_msg m;
	char err[160];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(wire_parse(bad[i], strlen(bad[i]), &m, err, sizeof(err)), -EBADMSG);
		assert_true(err[0] != '\0');
		assert_null(m.root);
	}
	/* Length is honoured: what follows len is not part of the frame. */
	assert_int_equal(wire_parse("{\"op\":\"pong\"}garbage", 13, &m, err, sizeof(err)), 0);
	wire_msg_clear(&m);
}

static void
test_member_span(void **state)
{
	const char *j = "{\"a\":\"x\\\"}\",\"b\":[1,{\"event\":2}],\"event\":{\"k\":\"]}\"},\"z\":null}";
	size_t off, len;

	(void)state;
	assert_int_equal(wire_member_span(j, strlen(j), "event", &off, &len), 0);
	assert_int_equal(len, strlen("{\"k\":\"]}\"}"));
	assert_memory_equal(j + off, "{\"k\":\"]}\"}", len);
	assert_int_equal(wire_member_span(j, strlen(j), "z", &off, &len), 0);
	assert_memory_equal(j + off, "null", len);
	assert_int_equal(len, 4);
	assert_int_equal(wire_member_span(j, strlen(j), "a", &off, &len), 0);
	assert_memory_equal(j + off, "\"x\\\"}\"", len);
	/* Only the top level counts. */
	assert_int_equal(wire_member_span("{\"b\":{\"event\":1}}", 17, "event", &off, &len), -ENOENT);
	assert_int_equal(wire_member_span("{}", 2, "event", &off, &len), -ENOENT);
	assert_int_equal(wire_member_span("[1]", 3, "event", &off, &len), -EBADMSG);
	assert_int_equal(wire_member_span("", 0, "event", &off, &len), -EBADMSG);
	/* Truncated input never reads past len. */
	assert_int_equal(wire_member_span("{\"event\":{\"a\":\"", 15, "event", &off, &len), 0);
	assert_int_equal(off + len, 15);
	assert_int_equal(wire_member_span("{\"ev", 4, "event", &off, &len), -EBADMSG);
	assert_int_equal(wire_member_span("{\"x\"", 4, "event", &off, &len), -EBADMSG);
}

/* The server's error frame (proto_error_frame) reads back as it was built:
 * one line ending in its newline, bad UTF-8 replaced, the token's text. */
static void
test_error_frame_round_trip(void **state)
{
	struct token tok = { 0x2a, 7, 9 };
	char hex[TOKEN_HEX_LEN + 1], err[128];
	struct wire_msg m = { 0 };
	size_t len;
	char *f;

	(void)state;
	f = proto_error_frame(3, ERR_HISTORY_LOST, "gone \xff here", &tok, &len);
	assert_non_null(f);
	assert_true(len > 1 && f[len - 1] == '\n' && memchr(f, '\n', len) == f + len - 1);
	assert_int_equal(wire_parse(f, len - 1, &m, err, sizeof(err)), 0);
	assert_int_equal(m.type, WIRE_ERROR);
	assert_int_equal(m.sid, 3);
	assert_int_equal(m.code, ERR_HISTORY_LOST);
	assert_string_equal(m.code_name, "ChangeStreamHistoryLost");
	assert_non_null(strstr(m.message, "gone "));
	assert_null(strchr(m.message, '\xff'));
	token_format(&tok, hex);
	assert_string_equal(m.token, hex);
	wire_msg_clear(&m);
	free(f);
	f = proto_error_frame(-1, ERR_AUTH_FAILED, "no", NULL, &len);
	assert_int_equal(wire_parse(f, len - 1, &m, err, sizeof(err)), 0);
	assert_int_equal(m.sid, -1);
	assert_null(m.token);
	wire_msg_clear(&m);
	free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_watch_minimal),
		cmocka_unit_test(test_watch_everything),
		cmocka_unit_test(test_watch_refused),
		cmocka_unit_test(test_ack_unwatch),
		cmocka_unit_test(test_parse_event),
		cmocka_unit_test(test_parse_bookmark_error_hello),
		cmocka_unit_test(test_parse_broken),
		cmocka_unit_test(test_member_span),
		cmocka_unit_test(test_error_frame_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
