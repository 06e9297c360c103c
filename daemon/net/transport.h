/*
 * transport.h - the byte stream under one protocol connection: a plain
 * socket (Unix or TCP) or a TLS session on one, behind a small table of
 * operations (as pgbouncer's sbuf and redis's ConnectionType).  client.c
 * creates one per connection and does all its socket I/O through it, and so
 * does upconn.c for each connection to an upstream relay; the event loop,
 * framing and queue stay with the caller.  Nothing here logs: a
 * failure comes back with its reason for the caller's log line.
 */
#ifndef NVSRELAY_TRANSPORT_H
#define NVSRELAY_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct transport Transport;
struct ssl_st;

/* Results of a read, write or handshake that moved no bytes. */
enum transport_result {
	TRANSPORT_WANT_READ = -0x1001,  /* call again once the socket is readable */
	TRANSPORT_WANT_WRITE = -0x1002, /* call again once the socket is writable */
	TRANSPORT_CLOSED = -0x1003,     /* the peer closed the stream (reads only) */
	TRANSPORT_FAILED = -0x1004,     /* broken; the reason is in why */
};

/* Take ownership of fd (and of ssl, in accept state): NULL when out of
 * memory, with the socket closed and the session freed. */
Transport *transport_plain(int fd);
Transport *transport_tls(int fd, struct ssl_st *ssl);

/* Frees the session and closes the socket; NULL is safe. */
void transport_free(Transport *t);

/* The socket, for the event loop's watchers. */
int transport_fd(const Transport *t);

/* One step of the handshake: 0 when done (at once for a plain socket), or
 * an enum transport_result. */
int transport_handshake(Transport *t, char *why, size_t whylen);

/* Reads up to len bytes: the count, or an enum transport_result. */
ssize_t transport_read(Transport *t, char *buf, size_t len, char *why, size_t whylen);

/* True when bytes are ready to read without the socket (records a TLS
 * session has already decrypted). */
bool transport_has_pending(Transport *t);

/* Writes from the front of iov: the count, or an enum transport_result.
 * Bytes taken but not yet written (a TLS record, which must be offered again
 * as it was) go first in the next call, whatever iov then holds: they stay
 * at the front of the caller's queue until written. */
ssize_t transport_writev(Transport *t, const struct iovec *iov, int iovcnt, char *why, size_t whylen);

/* At most this many bytes go per writev, so the caller builds no more iov. */
size_t transport_write_max(const Transport *t);

/* Bytes writev took and has not written yet. */
size_t transport_unwritten(const Transport *t);

/* Stops reading from the peer; queued output may still leave. */
void transport_stop_reading(Transport *t);

/* An orderly end of the session (TLS close_notify) once output is done;
 * best effort, skipped when the session is broken or never came up. */
void transport_shutdown(Transport *t);

/* Protocol and peer certificate subject for the log ("" for plain). */
const char *transport_describe(Transport *t, char *buf, size_t len);
const char *transport_peer_subject(Transport *t, char *buf, size_t len);
/* The certificate's last commonName ("" for plain or none): tls_peer_cn. */
const char *transport_peer_cn(Transport *t, char *buf, size_t len);

#endif
