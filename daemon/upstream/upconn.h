/*
 * upconn.h - one protocol connection from this relay to an upstream
 * nvsrelayd: non-blocking connect on the daemon's loop, TLS (OpenSSL,
 * through transport.h) with the configured CA, client certificate and
 * token, the hello exchange, NDJSON frames in, a byte queue out, and a
 * silence timeout (a ping every third of it).  upstream.c opens one for the
 * live stream and one per catch-up cursor; it never blocks the loop.
 */
#ifndef NVSRELAY_UPCONN_H
#define NVSRELAY_UPCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <ev.h>

typedef struct upconn UpConn;
typedef struct upconn_tls UpConnTls;

struct upconn_cbs {
	/* The server's hello arrived; generation is its 8-hex text or "". */
	void (*up)(void *arg, UpConn *u, const char *generation);
	/* One frame after the hello (len bytes, no newline). */
	void (*frame)(void *arg, UpConn *u, const char *line, size_t len);
	/* The connection failed or closed; u is freed after the call returns. */
	void (*down)(void *arg, UpConn *u, const char *why);
};

struct upconn_opts {
	const char *addr;          /* HOST:PORT */
	UpConnTls *tls;            /* NULL: plaintext */
	const char *token;         /* bearer token for the hello, or NULL */
	const char *client;        /* name in the hello */
	double timeout;            /* connect + hello, and longest silence, in seconds */
};

/* A TLS client context: CA bundle to verify the upstream's certificate
 * (empty: the system's), optional client certificate and key.  NULL with
 * err on failure. */
UpConnTls *upconn_tls_new(const char *ca_file, const char *cert_file, const char *key_file,
			  char *err, size_t errlen);
void upconn_tls_free(UpConnTls *t);

/* Starts connecting; callbacks come from the loop, never from inside this
 * call.  NULL when out of memory. */
UpConn *upconn_open(struct ev_loop *loop, const struct upconn_opts *o, const struct upconn_cbs *cbs, void *arg);
/* Queues bytes (complete frames); sent once the hello is done. */
int upconn_send(UpConn *u, const char *data, size_t len);
/* Stops or resumes reading (backpressure towards the upstream). */
void upconn_pause(UpConn *u, bool paused);
/* Closes without calling down; safe from inside a callback. */
void upconn_close(UpConn *u);
const char *upconn_addr(const UpConn *u);

#endif
