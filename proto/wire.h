/*
 * wire.h - the subscriber's side of protocol v1 (proto/PROTOCOL.md) as pure
 * functions: builds the frames a client sends and takes apart the frames the
 * server sends.  No I/O, no logging, so it is unit-tested on its own.  Used
 * by the client library (proto/nvsrelay.c).
 */
#ifndef NVSRELAY_WIRE_H
#define NVSRELAY_WIRE_H

#include <stddef.h>

#include <cJSON.h>

/* The hello field that carries a bearer token on the TCP listener. */
#define WIRE_AUTH_FIELD "token"

/* A watch request; NULL fields are left out of the frame. */
struct wire_watch {
	long long sid;
	const char *table;		/* NULL: "health_events" */
	const char *consumer;
	const char *resume_after;	/* token text, the "_data" value */
	const char *start_after;	/* token text */
	const char *start_at;		/* startAtOperationTime, RFC 3339 */
	const char *pipeline;		/* JSON text of an array of stages */
	const char *before;		/* fullDocumentBeforeChange */
};

/*
 * Frame builders.  Each sets *ret to a malloc'd, NUL-terminated frame that
 * ends in '\n' (the caller frees it) and returns 0; -ENOMEM when out of
 * memory; -EINVAL for an argument the protocol cannot carry, with a message
 * in err (err may be NULL).
 */
int wire_hello(const char *client, const char *auth, char **ret);
int wire_watch(const struct wire_watch *w, char **ret, char *err, size_t errlen);
int wire_ack(long long sid, const char *token, char **ret, char *err, size_t errlen);
int wire_unwatch(long long sid, char **ret);

enum wire_type {
	WIRE_EVENT = 1,
	WIRE_BOOKMARK,
	WIRE_ERROR,
	WIRE_PONG,
	WIRE_HELLO,
	WIRE_OTHER,		/* a well-formed frame of an op this version does not know */
};

/* One parsed server frame.  Every pointer points into root or into the
 * parsed line, and stays valid until wire_msg_clear() (and, for event, as
 * long as the line is unchanged).  Zero-initialised or cleared, it is safe
 * to clear again. */
struct wire_msg {
	enum wire_type type;
	long long sid;			/* -1 when the frame has none */
	const char *token;		/* event _id._data, bookmark or error token; or NULL */
	const char *op_type;		/* events: operationType */
	const char *event;		/* events: the event object's bytes in the line */
	size_t event_len;
	int code;			/* errors */
	const char *code_name;		/* errors: "" when absent */
	const char *message;		/* errors: "" when absent */
	const char *generation;		/* hello, or NULL */
	long long max_frame;		/* hello: maxFrameBytes, 0 when absent */
	cJSON *root;
	char *owned;			/* private: a re-printed event, rarely */
};

/*
 * Parses one frame (len bytes, no newline).  Returns 0 and fills m (release
 * it with wire_msg_clear); -EBADMSG when the line is not a JSON object with
 * a string "op", or an event, bookmark or error lacks a field the protocol
 * requires (a message in err); -ENOMEM.  Unknown ops come back as WIRE_OTHER
 * so newer servers can add frames.  On failure m needs no clearing.
 */
int wire_parse(const char *line, size_t len, struct wire_msg *m, char *err, size_t errlen);
void wire_msg_clear(struct wire_msg *m);

/*
 * Locates the value of member key of the JSON object text json (len bytes),
 * on the top level only.  Returns 0 with the value's offset and length;
 * -ENOENT when the object has no such member written without escapes;
 * -EBADMSG when json is not an object.  The text is assumed to have been
 * validated by a JSON parser already: this only skips, it does not check.
 * Used to hand out the event exactly as the server wrote it.
 */
int wire_member_span(const char *json, size_t len, const char *key, size_t *ret_off, size_t *ret_len);

#endif
