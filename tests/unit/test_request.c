/*
 * test_request.c - unit tests of request decoding (proto/request.c): every
 * op decoded from a good frame, frames the client library builds (wire.c)
 * decoded back, and for every bad input the error code, sid and message a
 * client sees today (the integration tests match the same words).
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

#include "errors.h"
#include "request.h"
#include "token.h"
#include "wire.h"

#define TOK "0000000100000000000000070000000000000009"

/* Decodes one frame of text: the parse and decode results in one code. */
static int
decode(const char *text, struct request *req, struct request_error *err, cJSON **root)
{
	int r = request_parse(text, strlen(text), root, err);

	memset(req, 0, sizeof(*req));
	if (r < 0)
		return r;
	return request_decode(*root, req, err);
}

/* A frame that must be refused with code, sid and message. */
static void
refused(const char *text, int code, long long sid, const char *msg)
{
	struct request req;
	struct request_error err;
	cJSON *root;

	assert_int_equal(decode(text, &req, &err, &root), -EINVAL);
	assert_int_equal(err.code, code);
	assert_int_equal(err.sid, sid);
	assert_string_equal(err.msg, msg);
	cJSON_Delete(root);
}

static void
test_parse(void **state)
{
	struct request_error err;
	cJSON *m;

	(void)state;
	assert_int_equal(request_parse("{\"op\":\"ping\"} \t", 15, &m, &err), 0);
	assert_true(cJSON_IsObject(m));
	cJSON_Delete(m);
	/* Bytes after the object spoil the frame, but the object is handed
	 * back for the token check of a first frame. */
	assert_int_equal(request_parse("{\"op\":\"ping\"} x", 15, &m, &err), -EINVAL);
	assert_non_null(m);
	assert_int_equal(err.code, ERR_FAILED_TO_PARSE);
	assert_int_equal(err.sid, -1);
	assert_string_equal(err.msg, "malformed JSON at byte 14");
	cJSON_Delete(m);
	assert_int_equal(request_parse("{\"op\":", 6, &m, &err), -EINVAL);
	assert_null(m);
	assert_string_equal(err.msg, "malformed JSON at byte 5");
	assert_int_equal(request_parse("nope", 4, &m, &err), -EINVAL);
	assert_null(m);
	assert_string_equal(err.msg, "malformed JSON at byte 0");
	/* The length bounds the parse: no NUL needed. */
	assert_int_equal(request_parse("{\"op\":\"ping\"}garbage", 13, &m, &err), 0);
	cJSON_Delete(m);
}

static void
test_not_a_request(void **state)
{
	(void)state;
	refused("[1,2]", ERR_FAILED_TO_PARSE, -1, "a frame must be a JSON object with a string \"op\"");
	refused("{\"sid\":1}", ERR_FAILED_TO_PARSE, -1, "a frame must be a JSON object with a string \"op\"");
	refused("{\"op\":7}", ERR_FAILED_TO_PARSE, -1, "a frame must be a JSON object with a string \"op\"");
	refused("\"watch\"", ERR_FAILED_TO_PARSE, -1, "a frame must be a JSON object with a string \"op\"");
	refused("{\"op\":\"subscribe\"}", ERR_COMMAND_NOT_FOUND, -1,
		"unknown op; expected hello, watch, ack, unwatch, ping, count, position or store");
	refused("{\"op\":\"Watch\"}", ERR_COMMAND_NOT_FOUND, -1,
		"unknown op; expected hello, watch, ack, unwatch, ping, count, position or store");
	refused("{\"op\":\"ping\"} {}", ERR_FAILED_TO_PARSE, -1, "malformed JSON at byte 14");
}

static void
test_hello(void **state)
{
	struct request req;
	struct request_error err;
	cJSON *m;

	(void)state;
	assert_int_equal(decode("{\"op\":\"hello\"}", &req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_HELLO);
	assert_int_equal(req.version, 1);
	assert_null(req.token);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"hello\",\"v\":1,\"token\":\"s3cret\",\"client\":\"x\"}", &req, &err, &m), 0);
	assert_string_equal(req.token, "s3cret");
	assert_string_equal(request_hello_token(m), "s3cret");
	cJSON_Delete(m);
	refused("{\"op\":\"hello\",\"v\":2}", ERR_BAD_VALUE, -1, "unsupported protocol version; this server speaks v 1");
	refused("{\"op\":\"hello\",\"v\":\"1\"}", ERR_BAD_VALUE, -1,
		"unsupported protocol version; this server speaks v 1");
}

static void
test_hello_token(void **state)
{
	struct request_error err;
	cJSON *m;

	(void)state;
	assert_null(request_hello_token(NULL));
	request_parse("{\"op\":\"watch\",\"token\":\"t\"}", 26, &m, &err);
	assert_null(request_hello_token(m));
	cJSON_Delete(m);
	request_parse("{\"op\":\"hello\",\"token\":5}", 24, &m, &err);
	assert_null(request_hello_token(m));
	cJSON_Delete(m);
	/* A token in a frame spoilt after its object still counts. */
	assert_int_equal(request_parse("{\"op\":\"hello\",\"token\":\"t\"}x", 27, &m, &err), -EINVAL);
	assert_string_equal(request_hello_token(m), "t");
	cJSON_Delete(m);
}

static void
test_watch(void **state)
{
	struct request req;
	struct request_error err;
	struct token t;
	cJSON *m;

	(void)state;
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":3,\"table\":\"MaintenanceEvents\",\"consumer\":\"fq\","
				"\"resumeAfter\":{\"_data\":\"" TOK "\"},\"pipeline\":[{\"$match\":{}}],"
				"\"fullDocumentBeforeChange\":\"required\"}", &req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_WATCH);
	assert_int_equal(req.sid, 3);
	assert_int_equal(req.reply_sid, 3);
	assert_int_equal(req.table, REQUEST_MAINTENANCE_EVENTS);
	assert_string_equal(req.consumer, "fq");
	assert_true(req.has_resume);
	assert_false(req.has_event_id);
	assert_int_equal(token_parse(TOK, TOKEN_HEX_LEN, &t), 0);
	assert_int_equal(token_cmp(&req.resume, &t), 0);
	assert_int_equal(req.resume.gen, t.gen);
	assert_true(cJSON_IsArray(req.pipeline));
	assert_true(req.before);
	assert_null(req.start_at);
	cJSON_Delete(m);

	/* The least a watch needs; a null consumer is no consumer. */
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":0,\"table\":\"health_events\",\"consumer\":null,"
				"\"fullDocumentBeforeChange\":\"off\"}", &req, &err, &m), 0);
	assert_int_equal(req.table, REQUEST_HEALTH_EVENTS);
	assert_null(req.consumer);
	assert_false(req.has_resume);
	assert_null(req.pipeline);
	assert_false(req.before);
	cJSON_Delete(m);

	/* startAfter, a bare token string, and a start time. */
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":1,\"table\":\"HealthEvents\",\"startAfter\":\"" TOK "\"}",
				&req, &err, &m), 0);
	assert_true(req.has_resume);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\","
				"\"startAtOperationTime\":\"2026-11-25T10:00:00.5+01:00\"}", &req, &err, &m), 0);
	assert_string_equal(req.start_at, "2026-11-25T10:00:00.5+01:00");
	cJSON_Delete(m);

	/* NVSentinel's stored position. */
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\","
				"\"resumeAfter\":{\"timestamp\":1,\"eventID\":42}}", &req, &err, &m), 0);
	assert_true(req.has_event_id);
	assert_false(req.has_resume);
	assert_int_equal(req.event_id, 42);
	cJSON_Delete(m);
}

static void
test_watch_refused(void **state)
{
	const char *w = "{\"op\":\"watch\",\"sid\":5,\"table\":\"health_events\",";
	char frame[512];

	(void)state;
	refused("{\"op\":\"watch\",\"table\":\"health_events\"}", ERR_TYPE_MISMATCH, -1,
		"sid must be a non-negative integer");
	refused("{\"op\":\"watch\",\"sid\":-1}", ERR_TYPE_MISMATCH, -1, "sid must be a non-negative integer");
	refused("{\"op\":\"watch\",\"sid\":1.5}", ERR_TYPE_MISMATCH, -1, "sid must be a non-negative integer");
	refused("{\"op\":\"watch\",\"sid\":9007199254740992}", ERR_TYPE_MISMATCH, -1,
		"sid must be a non-negative integer");
	refused("{\"op\":\"watch\",\"sid\":\"1\"}", ERR_TYPE_MISMATCH, -1, "sid must be a non-negative integer");
	/* Unknown fields first, before the table is even looked at. */
	refused("{\"op\":\"watch\",\"sid\":5,\"startAtOperationtime\":\"x\"}", ERR_UNKNOWN_FIELD, 5,
		"unknown field 'startAtOperationtime' in watch");
	refused("{\"op\":\"watch\",\"sid\":5,\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}",
		ERR_UNKNOWN_FIELD, 5,
		"unknown field 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' in watch");
	refused("{\"op\":\"watch\",\"sid\":5}", ERR_INVALID_NAMESPACE, 5,
		"table must be health_events (HealthEvents), maintenance_events (MaintenanceEvents) or *");
	refused("{\"op\":\"watch\",\"sid\":5,\"table\":\"nodes\"}", ERR_INVALID_NAMESPACE, 5,
		"table must be health_events (HealthEvents), maintenance_events (MaintenanceEvents) or *");

#define WATCH(rest) (snprintf(frame, sizeof(frame), "%s%s}", w, rest), frame)
	refused(WATCH("\"consumer\":\"\""), ERR_TYPE_MISMATCH, 5,
		"consumer must be a non-empty UTF-8 string of at most 255 bytes");
	refused(WATCH("\"consumer\":7"), ERR_TYPE_MISMATCH, 5,
		"consumer must be a non-empty UTF-8 string of at most 255 bytes");
	refused(WATCH("\"consumer\":\"\xc0\xaf\""), ERR_TYPE_MISMATCH, 5,
		"consumer must be a non-empty UTF-8 string of at most 255 bytes");
	refused(WATCH("\"consumer\":\"\xc3\x28\""), ERR_TYPE_MISMATCH, 5,
		"consumer must be a non-empty UTF-8 string of at most 255 bytes");
	{
		char name[300], rest[320];
		struct request req;
		struct request_error err;
		cJSON *m;

		memset(name, 'c', 255);
		name[255] = '\0';
		snprintf(rest, sizeof(rest), "\"consumer\":\"%s\"", name);
		assert_int_equal(decode(WATCH(rest), &req, &err, &m), 0);
		assert_int_equal(strlen(req.consumer), 255);
		cJSON_Delete(m);
		snprintf(rest, sizeof(rest), "\"consumer\":\"%sc\"", name);
		refused(WATCH(rest), ERR_TYPE_MISMATCH, 5,
			"consumer must be a non-empty UTF-8 string of at most 255 bytes");
	}
	refused(WATCH("\"resumeAfter\":\"" TOK "\",\"startAfter\":\"" TOK "\""), ERR_BAD_VALUE, 5,
		"give only one of resumeAfter and startAfter");
	refused(WATCH("\"startAfter\":\"" TOK "\",\"startAtOperationTime\":\"2026-11-25T10:00:00Z\""), ERR_BAD_VALUE,
		5, "give only one of resumeAfter, startAfter and startAtOperationTime");
	refused(WATCH("\"resumeAfter\":{\"eventID\":-1}"), ERR_CHANGE_STREAM_FATAL, 5,
		"eventID must be a non-negative integer");
	refused(WATCH("\"resumeAfter\":{\"eventID\":\"12\"}"), ERR_CHANGE_STREAM_FATAL, 5,
		"eventID must be a non-negative integer");
	refused(WATCH("\"resumeAfter\":{\"_data\":\"xyz\"}"), ERR_CHANGE_STREAM_FATAL, 5,
		"resumeAfter is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
	/* With _data present the eventID form does not apply. */
	refused(WATCH("\"startAfter\":{\"_data\":5,\"eventID\":1}"), ERR_CHANGE_STREAM_FATAL, 5,
		"startAfter is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
	refused(WATCH("\"resumeAfter\":null"), ERR_CHANGE_STREAM_FATAL, 5,
		"resumeAfter is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
	refused(WATCH("\"startAtOperationTime\":\"yesterday\""), ERR_BAD_VALUE, 5,
		"startAtOperationTime must be an RFC 3339 time such as 2026-11-25T10:00:00Z");
	refused(WATCH("\"startAtOperationTime\":\"2026-11-25T10:00:00Z'; --\""), ERR_BAD_VALUE, 5,
		"startAtOperationTime must be an RFC 3339 time such as 2026-11-25T10:00:00Z");
	refused(WATCH("\"startAtOperationTime\":1764064800"), ERR_BAD_VALUE, 5,
		"startAtOperationTime must be an RFC 3339 time such as 2026-11-25T10:00:00Z");
	refused(WATCH("\"fullDocumentBeforeChange\":\"updateLookup\""), ERR_BAD_VALUE, 5,
		"fullDocumentBeforeChange must be off, whenAvailable or required");
	refused(WATCH("\"fullDocumentBeforeChange\":true"), ERR_BAD_VALUE, 5,
		"fullDocumentBeforeChange must be off, whenAvailable or required");
#undef WATCH
}

/* standby: a boolean, with a consumer, without a start position. */
static void
test_watch_standby(void **state)
{
	struct request req;
	struct request_error err;
	cJSON *root;

	(void)state;
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\",\"consumer\":\"a\","
				"\"standby\":true}", &req, &err, &root), 0);
	assert_true(req.standby);
	assert_string_equal(req.consumer, "a");
	cJSON_Delete(root);
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\",\"standby\":false}",
				&req, &err, &root), 0);
	assert_false(req.standby);
	cJSON_Delete(root);
	refused("{\"op\":\"watch\",\"sid\":2,\"table\":\"health_events\",\"standby\":true}", ERR_BAD_VALUE, 2,
		"standby needs a consumer");
	refused("{\"op\":\"watch\",\"sid\":2,\"table\":\"health_events\",\"consumer\":\"a\",\"standby\":1}",
		ERR_TYPE_MISMATCH, 2, "standby must be true or false");
	refused("{\"op\":\"watch\",\"sid\":2,\"table\":\"health_events\",\"consumer\":\"a\",\"standby\":true,"
		"\"resumeAfter\":{\"_data\":\"" TOK "\"}}", ERR_BAD_VALUE, 2,
		"standby takes over from the consumer's acknowledged position:"
		" give no resumeAfter, startAfter or startAtOperationTime");
}

static void
test_reply_sid(void **state)
{
	struct request req;
	struct request_error err;
	cJSON *m;

	(void)state;
	/* Loose: a fractional sid still addresses a refusal of the watch. */
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":2.5}", &req, &err, &m), -EINVAL);
	assert_int_equal(req.op, REQUEST_WATCH);
	assert_int_equal(req.reply_sid, 2);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":-3}", &req, &err, &m), -EINVAL);
	assert_int_equal(req.reply_sid, -1);
	cJSON_Delete(m);
}

static void
test_ack_unwatch_ping(void **state)
{
	struct request req;
	struct request_error err;
	struct token t;
	cJSON *m;

	(void)state;
	assert_int_equal(decode("{\"op\":\"ack\",\"sid\":4,\"token\":{\"_data\":\"" TOK "\"}}", &req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_ACK);
	assert_int_equal(req.sid, 4);
	token_parse(TOK, TOKEN_HEX_LEN, &t);
	assert_int_equal(token_cmp(&req.ack, &t), 0);
	cJSON_Delete(m);
	refused("{\"op\":\"ack\",\"token\":\"" TOK "\"}", ERR_TYPE_MISMATCH, -1, "sid must be a non-negative integer");
	refused("{\"op\":\"ack\",\"sid\":4}", ERR_CHANGE_STREAM_FATAL, 4,
		"token is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
	refused("{\"op\":\"ack\",\"sid\":4,\"token\":\"" TOK "0\"}", ERR_CHANGE_STREAM_FATAL, 4,
		"token is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");

	assert_int_equal(decode("{\"op\":\"unwatch\",\"sid\":9}", &req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_UNWATCH);
	assert_int_equal(req.sid, 9);
	cJSON_Delete(m);
	refused("{\"op\":\"unwatch\",\"sid\":true}", ERR_TYPE_MISMATCH, -1, "sid must be a non-negative integer");

	assert_int_equal(decode("{\"op\":\"ping\",\"anything\":[1]}", &req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_PING);
	cJSON_Delete(m);
}

/* A chained relay's requests and its one stream of every table. */
static void
test_chained(void **state)
{
	struct request req;
	struct request_error err;
	struct token t;
	cJSON *m;

	(void)state;
	assert_int_equal(decode("{\"op\":\"watch\",\"sid\":0,\"table\":\"*\"}", &req, &err, &m), 0);
	assert_int_equal(req.table, REQUEST_ALL_TABLES);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"position\",\"sid\":3,\"consumer\":\"n1/drainer\"}", &req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_POSITION);
	assert_int_equal(req.sid, 3);
	assert_string_equal(req.consumer, "n1/drainer");
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"position\",\"sid\":4,\"eventID\":77}", &req, &err, &m), 0);
	assert_true(req.has_event_id);
	assert_int_equal(req.event_id, 77);
	assert_null(req.consumer);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"position\",\"sid\":5,\"at\":\"2026-11-25T10:00:00Z\"}", &req, &err, &m), 0);
	assert_string_equal(req.start_at, "2026-11-25T10:00:00Z");
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"store\",\"sid\":6,\"consumer\":\"n1/d\",\"token\":{\"_data\":\"" TOK "\"}}",
				&req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_STORE);
	token_parse(TOK, TOKEN_HEX_LEN, &t);
	assert_int_equal(token_cmp(&req.ack, &t), 0);
	assert_string_equal(req.consumer, "n1/d");
	cJSON_Delete(m);
	refused("{\"op\":\"position\",\"sid\":3}", ERR_BAD_VALUE, 3, "position needs exactly one of consumer, eventID and at");
	refused("{\"op\":\"position\",\"sid\":3,\"consumer\":\"a\",\"eventID\":1}", ERR_BAD_VALUE, 3,
		"position needs exactly one of consumer, eventID and at");
	refused("{\"op\":\"position\",\"sid\":3,\"consumer\":\"\"}", ERR_TYPE_MISMATCH, 3,
		"consumer must be a non-empty UTF-8 string of at most 255 bytes");
	refused("{\"op\":\"position\",\"sid\":3,\"at\":\"yesterday\"}", ERR_BAD_VALUE, 3,
		"at must be an RFC 3339 time such as 2026-11-25T10:00:00Z");
	refused("{\"op\":\"position\",\"sid\":3,\"eventID\":-1}", ERR_CHANGE_STREAM_FATAL, 3,
		"eventID must be a non-negative integer");
	refused("{\"op\":\"store\",\"sid\":6,\"consumer\":\"n1/d\"}", ERR_CHANGE_STREAM_FATAL, 6,
		"token is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
	refused("{\"op\":\"store\",\"consumer\":\"n1/d\"}", ERR_TYPE_MISMATCH, -1, "sid must be a non-negative integer");
}

/* What the client library sends decodes to what it meant. */
/* count: a table (not "*"), a position, an optional id; every refusal is
 * connection-level (sid -1), a sid included. */
static void
test_count(void **state)
{
	struct request req;
	struct request_error err;
	struct token t;
	cJSON *m;

	(void)state;
	token_parse(TOK, TOKEN_HEX_LEN, &t);
	assert_int_equal(decode("{\"op\":\"count\",\"table\":\"HealthEvents\",\"after\":{\"_data\":\"" TOK "\"},\"id\":7}",
				&req, &err, &m), 0);
	assert_int_equal(req.op, REQUEST_COUNT);
	assert_int_equal(req.table, REQUEST_HEALTH_EVENTS);
	assert_int_equal(req.count_id, 7);
	assert_int_equal(token_cmp(&req.ack, &t), 0);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"count\",\"table\":\"maintenance_events\",\"after\":\"" TOK "\"}", &req, &err, &m), 0);
	assert_int_equal(req.table, REQUEST_MAINTENANCE_EVENTS);
	assert_int_equal(req.count_id, -1);
	cJSON_Delete(m);
	assert_int_equal(decode("{\"op\":\"count\",\"table\":\"health_events\",\"after\":\"" TOK "\",\"id\":9007199254740991}",
				&req, &err, &m), 0);
	assert_int_equal(req.count_id, 9007199254740991LL);
	cJSON_Delete(m);
	refused("{\"op\":\"count\",\"table\":\"health_events\",\"after\":\"" TOK "\",\"sid\":1}", ERR_UNKNOWN_FIELD, -1,
		"unknown field 'sid' in count; expected table, after and id");
	refused("{\"op\":\"count\",\"table\":\"health_events\",\"after\":\"" TOK "\",\"id\":\"x\"}", ERR_TYPE_MISMATCH, -1,
		"count: id must be a non-negative integer");
	refused("{\"op\":\"count\",\"table\":\"health_events\",\"after\":\"" TOK "\",\"id\":-1}", ERR_TYPE_MISMATCH, -1,
		"count: id must be a non-negative integer");
	refused("{\"op\":\"count\",\"table\":\"health_events\",\"after\":\"" TOK "\",\"id\":1.5}", ERR_TYPE_MISMATCH, -1,
		"count: id must be a non-negative integer");
	refused("{\"op\":\"count\",\"table\":\"*\",\"after\":\"" TOK "\"}", ERR_INVALID_NAMESPACE, -1,
		"count: table must be health_events (HealthEvents) or maintenance_events (MaintenanceEvents)");
	refused("{\"op\":\"count\",\"after\":\"" TOK "\"}", ERR_INVALID_NAMESPACE, -1,
		"count: table must be health_events (HealthEvents) or maintenance_events (MaintenanceEvents)");
	refused("{\"op\":\"count\",\"table\":\"health_events\"}", ERR_CHANGE_STREAM_FATAL, -1,
		"count: after is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
	refused("{\"op\":\"count\",\"table\":\"health_events\",\"after\":{\"_data\":\"abc\"}}", ERR_CHANGE_STREAM_FATAL, -1,
		"count: after is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}");
}

static void
test_wire_round_trip(void **state)
{
	struct wire_watch w = {
		.sid = 12, .table = "maintenance_events", .consumer = "node-drainer", .start_after = TOK,
		.pipeline = "[{\"$match\":{\"operationType\":\"insert\"}}]", .before = "whenAvailable",
	};
	struct request req;
	struct request_error err;
	char *line;
	cJSON *m;

	(void)state;
	assert_int_equal(wire_watch(&w, &line, NULL, 0), 0);
	assert_int_equal(request_parse(line, strlen(line) - 1, &m, &err), 0);
	assert_int_equal(request_decode(m, &req, &err), 0);
	assert_int_equal(req.sid, 12);
	assert_int_equal(req.table, REQUEST_MAINTENANCE_EVENTS);
	assert_string_equal(req.consumer, "node-drainer");
	assert_true(req.has_resume);
	assert_true(req.before);
	assert_true(cJSON_IsArray(req.pipeline));
	cJSON_Delete(m);
	free(line);

	assert_int_equal(wire_ack(12, TOK, &line, NULL, 0), 0);
	assert_int_equal(request_parse(line, strlen(line) - 1, &m, &err), 0);
	assert_int_equal(request_decode(m, &req, &err), 0);
	assert_int_equal(req.op, REQUEST_ACK);
	cJSON_Delete(m);
	free(line);

	assert_int_equal(wire_hello("test", "tok", &line), 0);
	assert_int_equal(request_parse(line, strlen(line) - 1, &m, &err), 0);
	assert_int_equal(request_decode(m, &req, &err), 0);
	assert_int_equal(req.op, REQUEST_HELLO);
	assert_string_equal(req.token, "tok");
	cJSON_Delete(m);
	free(line);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_not_a_request),
		cmocka_unit_test(test_hello),
		cmocka_unit_test(test_hello_token),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_watch_refused),
		cmocka_unit_test(test_watch_standby),
		cmocka_unit_test(test_reply_sid),
		cmocka_unit_test(test_ack_unwatch_ping),
		cmocka_unit_test(test_chained),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_wire_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
