/*
 * opsconn.h - the connections of the daemon's two small servers, the admin
 * socket (admin.c) and the HTTP endpoint (http.c): accepting up to a limit,
 * a fixed input buffer, an output buffer written without blocking, a
 * deadline, a lingering close, and freeing.  Each server keeps only its
 * protocol, in the callbacks of struct opsconn_ops.  Sockets come from
 * net.c.
 */
#ifndef NVSRELAY_OPSCONN_H
#define NVSRELAY_OPSCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <ev.h>

typedef struct opsconn_server OpsServer;
typedef struct opsconn OpsConn;

struct opsconn_ops {
	const char *name;        /* for the log: "admin", "http" */
	unsigned max_conns;      /* connections past it are closed at once... */
	bool evict_idle;         /* ...or make room by closing the oldest one that
				  * has nothing queued (it has not asked yet) */
	size_t in_max;           /* input buffer, bytes */
	const char *refusal;     /* to a connection refused when out of fds */
	size_t data_size;        /* the server's state per connection, zeroed */
	double deadline, repeat; /* first deadline, then again every repeat (0: once) */
	/* An accepted fd; the callee calls opsconn_new or closes it.  NULL:
	 * every connection gets opsconn_new. */
	void (*accept)(void *ud, int fd);
	/* n > 0 bytes were added to the input, 0: the peer finished sending,
	 * -ENOBUFS: the input buffer is full and nothing was read. */
	void (*input)(OpsConn *c, int n);
	/* The socket takes more of the output (after opsconn_flush returned 0). */
	void (*writable)(OpsConn *c);
	/* The deadline passed (never while lingering: that just frees). */
	void (*timeout)(OpsConn *c);
	/* c is about to be freed; may be NULL. */
	void (*close)(OpsConn *c);
};

/* Starts accepting on the listening socket fd, which is the server's from
 * now on (closed on failure too).  ops must outlive the server.  Returns
 * NULL when out of memory. */
OpsServer *opsconn_server_new(struct ev_loop *loop, int fd, const struct opsconn_ops *ops, void *ud);
/* Frees every connection (their close callbacks run), then stops
 * accepting; NULL is fine. */
void opsconn_server_free(OpsServer *s);

/* A connection on accepted fd, reading, with its first deadline running.
 * NULL (fd closed) at max_conns (unless an idle one was evicted) or out of
 * memory. */
OpsConn *opsconn_new(OpsServer *s, int fd);
void opsconn_free(OpsConn *c);

/* The server's ud, and this connection's data_size bytes. */
void *opsconn_ud(const OpsConn *c);
void *opsconn_data(OpsConn *c);

/* The bytes received and not consumed yet (writable in place). */
char *opsconn_in(OpsConn *c, size_t *len);
void opsconn_consume(OpsConn *c, size_t n);
/* Whether to read at all (a server that waits for something else stops). */
void opsconn_reading(OpsConn *c, bool on);

/* Appends n bytes to the output and returns where to write them, or NULL
 * when out of memory (the output is unchanged). */
char *opsconn_out(OpsConn *c, size_t n);
/* Output bytes queued since the output was last empty. */
size_t opsconn_queued(const OpsConn *c);
/* Writes what the socket takes.  Returns 1 when all is written, 0 when the
 * rest waits for the writable callback, -1 when c was freed (the peer is
 * gone). */
int opsconn_flush(OpsConn *c);

/* Restarts the deadline: after seconds, then every repeat (0: once). */
void opsconn_deadline(OpsConn *c, double after, double repeat);

/* Closes gracefully once the answer is written: shuts down the sending
 * side, then reads and drops what the peer still sends until its EOF or
 * for at most seconds, so that unread input cannot turn the close into a
 * reset that destroys the answer in flight. */
void opsconn_linger(OpsConn *c, double seconds);

#endif
