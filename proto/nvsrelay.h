/*
 * nvsrelay.h - libnvsrelay, the C client library of nvsrelayd.
 *
 * It speaks protocol v1 (PROTOCOL.md, shipped with nvsrelayd) over the
 * daemon's Unix socket or its TCP listener (TLS by default), for two kinds
 * of program:
 *
 *   blocking:    c = nvsrelay_connect_unix(path, NULL);
 *                nvsrelay_watch(c, 1, &(struct nvsrelay_watch_opts){ .consumer = "me" });
 *                while (nvsrelay_next(c, -1, &f) > 0) { ...; nvsrelay_ack(c, 1, token); }
 *
 *   event loop:  watch nvsrelay_fd(c) for POLLIN, plus POLLOUT while
 *                nvsrelay_want_write(c); on POLLIN call nvsrelay_read_ready(c)
 *                and then nvsrelay_poll_frame(c, &f) until it returns 0; on
 *                POLLOUT call nvsrelay_write_ready(c).
 *
 * Conventions:
 * - Functions that can fail return 0 (or a count) on success and a negative
 *   errno on failure.  A failure of the connection itself (-ECONNRESET,
 *   -ETIMEDOUT on connect, -EPROTO for a server that breaks the protocol,
 *   -EACCES for refused credentials, ...) is sticky: every later call
 *   returns it, and nvsrelay_status() reports it.  -EINVAL (a bad argument)
 *   and -EINTR (a signal interrupted a wait) are not sticky.
 * - nvsrelay_error() explains the latest failure: a server error frame's
 *   code, codeName, message and token, or a local message (code 0).
 * - Ownership: strings passed in are copied (or used only during the call);
 *   the caller keeps them.  Pointers handed out (frames, their strings,
 *   the error) belong to the connection and stay valid until the next call
 *   that reads from it (nvsrelay_next, nvsrelay_poll_frame,
 *   nvsrelay_read_ready) or nvsrelay_close().  Copy what you keep longer.
 * - A connection is not thread-safe: use it from one thread at a time.
 * - The library never installs signal handlers: writes to a closed TLS
 *   connection have SIGPIPE blocked for the calling thread while they run,
 *   and plain sockets are written with MSG_NOSIGNAL.
 * - Tokens are the "_data" strings of the server ({"_data": "..."}): opaque,
 *   but tokens of one database compare as strings in delivery order.
 *
 * ABI: soname libnvsrelay.so.0.  The option structs may gain fields only at
 * their end and only with a new soname; zero-initialise them (designated
 * initialisers) so a field you do not set is NULL or 0.
 */
#ifndef NVSRELAY_H
#define NVSRELAY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NVSRELAY_API __attribute__((visibility("default")))
#else
#define NVSRELAY_API
#endif

/* The protocol version this library speaks (the hello "v"). */
#define NVSRELAY_PROTOCOL 1

typedef struct nvsrelay_conn nvsrelay_conn;
typedef struct nvsrelay_frame nvsrelay_frame;

/* How to connect; NULL for all defaults.  TLS fields apply to TCP only. */
struct nvsrelay_options {
	const char *client;		/* name sent in hello; NULL: "libnvsrelay" */
	const char *auth_token;		/* bearer token sent in hello, or NULL */
	const char *ca_file;		/* PEM bundle to verify the server; NULL: system CAs */
	const char *cert_file;		/* PEM client certificate (mutual TLS), or NULL */
	const char *key_file;		/* its private key; NULL: read from cert_file */
	const char *server_name;	/* name checked in the certificate and sent as SNI;
					 * NULL: the host (an IP address is checked as one) */
	int plaintext;			/* 1: no TLS (only a loopback plaintext listener) */
	int timeout_ms;			/* connect + TLS handshake + hello; <= 0: 10000 */
};

/* One subscription; NULL fields are not sent (the server's defaults apply:
 * the consumer's stored position, else the head). */
struct nvsrelay_watch_opts {
	const char *table;		/* NULL: "health_events" */
	const char *consumer;		/* durable name (resume_tokens client_name) */
	const char *resume_after;	/* start after this token */
	const char *start_after;	/* the same, MongoDB's other spelling */
	const char *start_at_operation_time;	/* RFC 3339, e.g. "2026-11-25T10:00:00Z" */
	const char *pipeline;		/* JSON text: an array of {"$match": ...} stages */
	const char *full_document_before_change;	/* "off", "whenAvailable", "required" */
};

/* A failure.  Strings are never NULL except token. */
struct nvsrelay_error {
	int code;			/* server error code (MongoDB's numbering), 0: local */
	const char *code_name;		/* e.g. "ChangeStreamHistoryLost"; "" when local */
	const char *message;		/* what happened; "" when nothing failed */
	const char *token;		/* the last position the subscription reached, or NULL */
	long long sid;			/* the subscription, -1 for the connection */
};

enum nvsrelay_frame_type {
	NVSRELAY_FRAME_EVENT = 1,	/* one change */
	NVSRELAY_FRAME_BOOKMARK,	/* the subscription passed a position (token) */
	NVSRELAY_FRAME_ERROR,		/* nvsrelay_frame_error() says what */
	NVSRELAY_FRAME_PONG,		/* answer to nvsrelay_ping() */
	NVSRELAY_FRAME_OTHER,		/* a frame of a newer protocol revision: skip it */
};

/*
 * Connecting.  Both block for at most timeout_ms while they connect, do the
 * TLS handshake and exchange hello, and return a connection object: NULL
 * only when out of memory.  Check nvsrelay_status(): on failure it is a
 * negative errno and nvsrelay_error() says why (a refused token comes back
 * as the server's error with -EACCES).  Close the object either way.  port
 * is a number or a service name.  Afterwards the socket is non-blocking.
 */
NVSRELAY_API nvsrelay_conn *nvsrelay_connect_unix(const char *path, const struct nvsrelay_options *opts);
NVSRELAY_API nvsrelay_conn *nvsrelay_connect_tcp(const char *host, const char *port,
						 const struct nvsrelay_options *opts);

/* 0 while the connection works, else its sticky negative errno. */
NVSRELAY_API int nvsrelay_status(const nvsrelay_conn *c);

/* The latest failure (see struct nvsrelay_error); never NULL. */
NVSRELAY_API const struct nvsrelay_error *nvsrelay_error(const nvsrelay_conn *c);

/* The server's changelog generation (8 hex digits) from its hello, or "". */
NVSRELAY_API const char *nvsrelay_generation(const nvsrelay_conn *c);

/*
 * Requests.  Each queues one frame and writes what the socket takes without
 * blocking; the rest leaves from nvsrelay_next(), nvsrelay_write_ready() or
 * nvsrelay_flush().  sid is the client's number for the subscription
 * (0 .. 2^53-1), unique on the connection.  A watch is confirmed by a first
 * bookmark, or refused by an error frame with that sid.  -EINVAL (message in
 * nvsrelay_error) when the pipeline is not a JSON array or an argument cannot
 * be sent.
 */
NVSRELAY_API int nvsrelay_watch(nvsrelay_conn *c, long long sid, const struct nvsrelay_watch_opts *opts);
/* Cumulative: everything of sid up to token is processed.  Acknowledge only
 * tokens the subscription delivered (events or bookmarks). */
NVSRELAY_API int nvsrelay_ack(nvsrelay_conn *c, long long sid, const char *token);
NVSRELAY_API int nvsrelay_unwatch(nvsrelay_conn *c, long long sid);
NVSRELAY_API int nvsrelay_ping(nvsrelay_conn *c);

/*
 * Blocking use: waits up to timeout_ms (< 0: forever, 0: do not wait) for
 * the next frame, writing queued requests meanwhile.  Returns 1 and *ret,
 * 0 on timeout, or a negative errno (-EINTR when a signal arrived).  An
 * error frame is returned as a frame (NVSRELAY_FRAME_ERROR), not as a
 * failure: the connection stays usable.
 */
NVSRELAY_API int nvsrelay_next(nvsrelay_conn *c, int timeout_ms, const nvsrelay_frame **ret);

/* Blocks up to timeout_ms until every queued request is written: 0, or
 * -ETIMEDOUT, or the connection's failure.  Call it before closing when the
 * last acknowledgement matters. */
NVSRELAY_API int nvsrelay_flush(nvsrelay_conn *c, int timeout_ms);

/*
 * Event-loop use (level-triggered; an edge-triggered loop calls
 * nvsrelay_read_ready until it returns 0).
 * nvsrelay_fd:          the socket, or -1 when not connected.
 * nvsrelay_want_write:  1 while queued output waits for POLLOUT.
 * nvsrelay_read_ready:  reads what arrived without blocking: the number of
 *                       bytes read, 0 when nothing was there, or the failure
 *                       (-ECONNRESET when the server closed the connection).
 *                       Then take every frame with nvsrelay_poll_frame: the
 *                       buffer only holds what you have not taken yet.
 * nvsrelay_write_ready: writes queued output: 0 when all is written, 1 when
 *                       some is left, or the failure.
 * nvsrelay_poll_frame:  the next complete frame already read: 1 and *ret,
 *                       0 when there is none, or the failure.
 */
NVSRELAY_API int nvsrelay_fd(const nvsrelay_conn *c);
NVSRELAY_API int nvsrelay_want_write(const nvsrelay_conn *c);
NVSRELAY_API int nvsrelay_read_ready(nvsrelay_conn *c);
NVSRELAY_API int nvsrelay_write_ready(nvsrelay_conn *c);
NVSRELAY_API int nvsrelay_poll_frame(nvsrelay_conn *c, const nvsrelay_frame **ret);

/* Closes the socket without waiting and frees c and everything it handed
 * out.  NULL is allowed. */
NVSRELAY_API void nvsrelay_close(nvsrelay_conn *c);

/*
 * Frames (owned by the connection, see above).
 * type:  an enum nvsrelay_frame_type value.
 * sid:   the subscription, -1 for connection-level frames.
 * token: events: _id._data; bookmarks: the position; errors: the last
 *        position reached, or NULL.
 * nvsrelay_event_json: events: the event object byte for byte as the
 *        server sent it (one line of JSON, NUL-terminated; *len without the
 *        NUL when len is not NULL); NULL for other frames.
 * nvsrelay_event_operation_type: "insert", "update", "delete"; NULL for
 *        other frames.
 * nvsrelay_frame_error: errors: the error; NULL for other frames.
 * nvsrelay_frame_text: the whole frame line as received, NUL-terminated.
 */
NVSRELAY_API int nvsrelay_frame_type(const nvsrelay_frame *f);
NVSRELAY_API long long nvsrelay_frame_sid(const nvsrelay_frame *f);
NVSRELAY_API const char *nvsrelay_frame_token(const nvsrelay_frame *f);
NVSRELAY_API const char *nvsrelay_event_json(const nvsrelay_frame *f, size_t *len);
NVSRELAY_API const char *nvsrelay_event_operation_type(const nvsrelay_frame *f);
NVSRELAY_API const struct nvsrelay_error *nvsrelay_frame_error(const nvsrelay_frame *f);
NVSRELAY_API const char *nvsrelay_frame_text(const nvsrelay_frame *f, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
