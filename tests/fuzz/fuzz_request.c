/*
 * fuzz_request.c - libFuzzer target for request decoding (proto/request.c).
 *
 * The input is the text of one frame.  It is parsed and decoded as the
 * daemon does for every frame, and the answer is checked: a refusal names a
 * code of the protocol's table with a message; an accepted request holds
 * only what the decoder promises (a sid in range, a consumer of valid UTF-8
 * within 255 bytes, one resume form at most, a start time of the checked
 * shape).  An accepted watch, ack, unwatch or hello is then built again as
 * the client library would send it (wire.c) and must decode to the same
 * request, so the two halves of the protocol cannot drift apart.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "request.h"
#include "token.h"
#include "utf8.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void
check_refusal(const struct request_error *err)
{
	CHECK(strcmp(proto_error_name(err->code), "UnknownError") != 0);
	CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
	CHECK(err->msg[0] != '\0');
	CHECK(err->sid >= -1);
}

static void
check_request(const struct request *req)
{
	if (req->op == REQUEST_WATCH || req->op == REQUEST_ACK || req->op == REQUEST_UNWATCH)
		CHECK(req->sid >= 0 && req->sid <= 9007199254740991LL && req->reply_sid == req->sid);
	if (req->op == REQUEST_HELLO)
		CHECK(req->version == 1);
	if (req->op == REQUEST_COUNT)
		CHECK((req->table == REQUEST_HEALTH_EVENTS || req->table == REQUEST_MAINTENANCE_EVENTS) &&
		      req->count_id >= -1 && req->count_id <= 9007199254740991LL);
	if (req->op != REQUEST_WATCH)
		return;
	CHECK(req->table == REQUEST_HEALTH_EVENTS || req->table == REQUEST_MAINTENANCE_EVENTS);
	CHECK(!(req->has_resume && req->has_event_id));
	CHECK(!((req->has_resume || req->has_event_id) && req->start_at));
	if (req->consumer) {
		size_t n = strlen(req->consumer);

		CHECK(n > 0 && n <= 255 && utf8_valid(req->consumer));
	}
	if (req->start_at) {
		size_t n = strlen(req->start_at);

		CHECK(n >= 20 && n <= 40 && strspn(req->start_at, "0123456789-:.TZ+tz") == n);
	}
}

/* Decodes the frame line (with its newline) into *req; NULL root on failure. */
static cJSON *
decode_line(const char *line, struct request *req)
{
	struct request_error err;
	cJSON *m;

	CHECK(request_parse(line, strlen(line) - 1, &m, &err) == 0);
	CHECK(request_decode(m, req, &err) == 0);
	return m;
}

/* The request built again by the client library decodes the same. */
static void
round_trip(const struct request *req)
{
	char hex[TOKEN_HEX_LEN + 1], *line = NULL, *pipe = NULL;
	struct request again;
	cJSON *m = NULL;

	switch (req->op) {
	case REQUEST_WATCH: {
		struct wire_watch w = {
			.sid = req->sid,
			.table = req->table == REQUEST_HEALTH_EVENTS ? "health_events"
			       : req->table == REQUEST_ALL_TABLES ? "*" : "maintenance_events",
			.consumer = req->consumer,
			.start_at = req->start_at,
			.before = req->before ? "whenAvailable" : NULL,
		};

		/* The client library speaks tokens and pipelines of stages only. */
		if (req->has_event_id || (req->pipeline && !cJSON_IsArray(req->pipeline)))
			return;
		if (req->has_resume) {
			token_format(&req->resume, hex);
			w.resume_after = hex;
		}
		if (req->pipeline && !(w.pipeline = pipe = cJSON_PrintUnformatted(req->pipeline)))
			return;
		if (wire_watch(&w, &line, NULL, 0) < 0)
			break;
		m = decode_line(line, &again);
		CHECK(again.op == REQUEST_WATCH && again.sid == req->sid && again.table == req->table);
		CHECK(!req->consumer == !again.consumer);
		CHECK(!req->consumer || strcmp(req->consumer, again.consumer) == 0);
		CHECK(again.has_resume == req->has_resume);
		CHECK(!req->has_resume || (token_cmp(&again.resume, &req->resume) == 0 &&
					   again.resume.gen == req->resume.gen));
		CHECK(!req->start_at == !again.start_at);
		CHECK(!req->start_at || strcmp(req->start_at, again.start_at) == 0);
		CHECK(again.before == req->before);
		CHECK(!req->pipeline == !again.pipeline);
		if (req->pipeline) {
			char *p2 = cJSON_PrintUnformatted(again.pipeline);

			/* As printed: a number beyond a double prints as null. */
			CHECK(!p2 || strcmp(pipe, p2) == 0);
			free(p2);
		}
		break;
	}
	case REQUEST_ACK:
		token_format(&req->ack, hex);
		if (wire_ack(req->sid, hex, &line, NULL, 0) < 0)
			break;
		m = decode_line(line, &again);
		CHECK(again.op == REQUEST_ACK && again.sid == req->sid);
		CHECK(token_cmp(&again.ack, &req->ack) == 0 && again.ack.gen == req->ack.gen);
		break;
	case REQUEST_UNWATCH:
		if (wire_unwatch(req->sid, &line) < 0)
			break;
		m = decode_line(line, &again);
		CHECK(again.op == REQUEST_UNWATCH && again.sid == req->sid);
		break;
	case REQUEST_HELLO:
		if (wire_hello("fuzz", req->token, &line) < 0)
			break;
		m = decode_line(line, &again);
		CHECK(again.op == REQUEST_HELLO && !again.token == !req->token);
		CHECK(!req->token || strcmp(again.token, req->token) == 0);
		break;
	case REQUEST_PING:
	case REQUEST_POSITION:     /* only chained relays build these */
	case REQUEST_STORE:
	case REQUEST_COUNT:        /* the Go client builds it, not wire.c */
	case REQUEST_NONE:
		break;
	}
	cJSON_Delete(m);
	free(line);
	free(pipe);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request req, twice;
	struct request_error err, err2;
	cJSON *m = NULL;
	int r;

	r = request_parse((const char *)data, size, &m, &err);
	/* The token check of a first frame reads whatever was parsed. */
	(void)request_hello_token(m);
	if (r < 0) {
		CHECK(err.code == ERR_FAILED_TO_PARSE && err.sid == -1);
		check_refusal(&err);
		cJSON_Delete(m);
		return 0;
	}
	CHECK(m != NULL);
	r = request_decode(m, &req, &err);
	/* Decoding reads the frame only: the same answer twice. */
	CHECK(request_decode(m, &twice, &err2) == r);
	CHECK(twice.op == req.op && twice.reply_sid == req.reply_sid);
	if (r < 0) {
		CHECK(r == -EINVAL);
		check_refusal(&err);
		CHECK(err.code == err2.code && err.sid == err2.sid && strcmp(err.msg, err2.msg) == 0);
	} else {
		check_request(&req);
		round_trip(&req);
	}
	cJSON_Delete(m);
	return 0;
}
