/*
 * request.h - decoding of the requests a subscriber sends (protocol v1:
 * hello, watch, ack, unwatch, ping, count; position and store for chained
 * relays) into one struct, or into the error frame
 * the server answers with: a code from errors.h and its message.  Pure code:
 * no I/O, no logging, no allocation beyond cJSON's parse, so it is
 * unit-tested and fuzzed.  client.c calls it for every frame and hands the
 * result to the hub; the pipeline stays JSON for the daemon's filter.c.
 */
#ifndef NVSRELAY_REQUEST_H
#define NVSRELAY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "token.h"

enum request_op {
	REQUEST_NONE,              /* not an object with a string "op", or an unknown op */
	REQUEST_HELLO,
	REQUEST_WATCH,
	REQUEST_ACK,
	REQUEST_UNWATCH,
	REQUEST_PING,
	REQUEST_POSITION,          /* a position lookup for a chained relay */
	REQUEST_STORE,             /* a durable position write for a chained relay */
	REQUEST_COUNT,             /* how many changes of a table lie after a position */
};

enum request_table {
	REQUEST_HEALTH_EVENTS,
	REQUEST_MAINTENANCE_EVENTS,
	REQUEST_ALL_TABLES,        /* "*": every table in one stream (chained relays) */
};

/* A decoded request.  Strings and the pipeline point into the frame's JSON:
 * they live as long as it does. */
struct request {
	enum request_op op;
	/* The frame's "sid" read loosely (any number in range, truncated), -1
	 * without one: where a refusal of a watch goes before it is decoded. */
	long long reply_sid;
	long long sid;             /* watch, ack, unwatch; position and store: the reply's tag */
	/* hello */
	int version;               /* 1 (the only one), also when "v" is absent */
	const char *token;         /* bearer token or NULL */
	/* watch */
	enum request_table table;
	const char *consumer;      /* durable name or NULL (also position, store) */
	bool has_resume;           /* resumeAfter / startAfter as a token */
	struct token resume;
	bool has_event_id;         /* resumeAfter in NVSentinel's {timestamp, eventID} form;
				    * position: "eventID" */
	uint64_t event_id;
	const char *start_at;      /* startAtOperationTime (RFC 3339, shape checked) or NULL;
				    * position: "at" */
	const cJSON *pipeline;     /* the "pipeline" member or NULL, for filter_compile */
	bool before;               /* fullDocumentBeforeChange whenAvailable or required */
	bool standby;              /* with consumer: wait while another subscription holds it */
	/* ack; store: the position to write; count: "after" */
	struct token ack;
	/* count: "id", copied into the answer; -1 without one */
	long long count_id;
};

/* Why a frame was refused: the error frame's fields. */
struct request_error {
	int code;                  /* enum proto_error */
	long long sid;             /* the subscription it concerns, -1: the connection */
	char msg[512];
};

/* Parses the text of one frame (without its newline) into *ret, which the
 * caller frees with cJSON_Delete in every case.  Returns 0 when the frame is
 * one JSON value followed by nothing but blanks, else -EINVAL with err set;
 * *ret is then the value read before the bytes that spoiled the frame, or
 * NULL (the token check of a first frame looks at it all the same). */
int request_parse(const char *text, size_t len, cJSON **ret, struct request_error *err);

/* Decodes a parsed frame.  Returns 0, or -EINVAL with err set; req->op and
 * req->reply_sid are set either way, as far as the frame shows them. */
int request_decode(const cJSON *m, struct request *req, struct request_error *err);

/* The token of a hello frame, or NULL when m is not a hello with a string
 * token.  Not const: the caller wipes the secret once it is checked. */
char *request_hello_token(cJSON *m);

#endif
