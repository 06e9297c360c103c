/*
 * nvsrelay.c - libnvsrelay: one client connection to nvsrelayd.
 *
 * Owns the socket, the optional TLS session (OpenSSL), the frame reader
 * (frame.c), the queue of frames to send, and the one frame most recently
 * handed out.  Called by applications through nvsrelay.h and by the
 * `nvsrelay watch` command.  Frames are built and parsed by wire.c, so this
 * file is only I/O and bookkeeping.
 *
 * The socket is non-blocking after connect.  Blocking use is the event-loop
 * use plus poll(): nvsrelay_next() = poll_frame, else flush, poll, read.  So
 * both uses share one code path, and the blocking one cannot behave
 * differently from what an event loop sees.
 *
 * A failure of the connection is recorded once (fail()) and returned by
 * every later call: the caller needs no state machine of its own, and a
 * frame lost halfway is never mistaken for a quiet stream.
 *
 * TLS writes go through a copy of OpenSSL's socket BIO whose write uses
 * send(MSG_NOSIGNAL): a library must not let a closed peer kill its host
 * with SIGPIPE, nor touch the host's signal handling.
 */
#include "nvsrelay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "frame.h"
#include "wire.h"

#define DEFAULT_TIMEOUT_MS 10000
#define READ_ROOM 65536
/* Frames from the server are at most its max_frame_bytes, which it may set
 * up to 1 GiB; the reader only grows to what actually arrives. */
#define MAX_SERVER_FRAME (1u << 30)

struct nvsrelay_frame {
	struct wire_msg m;
	const char *line;		/* in the frame reader */
	size_t line_len;
	struct nvsrelay_error err;	/* errors: points into m */
	const char *event;		/* events: the connection's NUL-terminated copy */
	bool live;
};

struct nvsrelay_conn {
	int fd;
	int status;			/* 0, or the sticky negative errno */
	bool eof;			/* the server closed; frames may remain */
	SSL_CTX *ctx;
	SSL *ssl;
	FrameReader *fr;
	char *out;			/* queued frames, [out_off, out_len) unsent */
	size_t out_off, out_len, out_cap;
	struct nvsrelay_frame frame;
	char *ev;			/* NUL-terminated copy of the current event */
	size_t ev_cap;
	int timeout_ms;
	char *client, *auth;
	char generation[16];
	/* The latest failure; strings owned here. */
	struct nvsrelay_error err;
	char *err_name, *err_msg, *err_token;
};

/* --- small helpers ------------------------------------------------------ */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline for poll(); deadline < 0 is forever. */
static int
left_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left < 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
clear_error(nvsrelay_conn *c)
{
	free(c->err_name);
	free(c->err_msg);
	free(c->err_token);
	c->err_name = c->err_msg = c->err_token = NULL;
	c->err.code = 0;
	c->err.code_name = "";
	c->err.message = "";
	c->err.token = NULL;
	c->err.sid = -1;
}

/* Records a local error message (code 0).  Out of memory leaves it "". */
static void set_local_error(nvsrelay_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_local_error(nvsrelay_conn *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	clear_error(c);
	c->err_msg = strdup(buf);
	c->err.message = c->err_msg ? c->err_msg : "";
}

static void
set_server_error(nvsrelay_conn *c, const struct wire_msg *m)
{
	clear_error(c);
	c->err_name = strdup(m->code_name);
	c->err_msg = strdup(m->message);
	c->err_token = dup_or_null(m->token);
	c->err.code = m->code;
	c->err.code_name = c->err_name ? c->err_name : "";
	c->err.message = c->err_msg ? c->err_msg : "";
	c->err.token = c->err_token;
	c->err.sid = m->sid;
}

/* Makes status sticky; keeps the first failure. */
static int
fail(nvsrelay_conn *c, int status)
{
	if (c->status == 0)
		c->status = status;
	return c->status;
}

static int
fail_msg(nvsrelay_conn *c, int status, const char *what)
{
	if (c->status == 0)
		set_local_error(c, "%s", what);
	return fail(c, status);
}

static int
fail_errno(nvsrelay_conn *c, int err, const char *what)
{
	if (c->status == 0)
		set_local_error(c, "%s: %s", what, strerror(err));
	return fail(c, -err);
}

/* OpenSSL's queued errors as one message, plus the verification result. */
static int
fail_tls(nvsrelay_conn *c, int status, const char *what)
{
	char buf[400], one[256];
	size_t used = 0;
	unsigned long e;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, one, sizeof(one));
		used += (size_t)snprintf(buf + used, used < sizeof(buf) ? sizeof(buf) - used : 0, "%s%s",
					 used ? "; " : "", one);
		if (used >= sizeof(buf))
			break;
	}
	if (c->ssl && SSL_get_verify_result(c->ssl) != X509_V_OK) {
		if (c->status == 0)
			set_local_error(c, "%s: certificate verification failed: %s", what,
					X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
		return fail(c, status);
	}
	if (c->status == 0)
		set_local_error(c, "%s%s%s", what, buf[0] ? ": " : "", buf);
	return fail(c, status);
}

/* --- the no-SIGPIPE socket BIO ------------------------------------------ */

static BIO_METHOD *nosig_method;
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

static int
nosig_write(BIO *b, const char *buf, int len)
{
	int fd = -1;
	ssize_t n;

	BIO_get_fd(b, &fd);
	BIO_clear_retry_flags(b);
	n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static void
nosig_init(void)
{
	const BIO_METHOD *sock = BIO_s_socket();
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
				     "nvsrelay socket");

	if (!m)
		return;
	if (!BIO_meth_set_write(m, nosig_write) ||
	    !BIO_meth_set_read(m, BIO_meth_get_read(sock)) ||
	    !BIO_meth_set_puts(m, BIO_meth_get_puts(sock)) ||
	    !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) ||
	    !BIO_meth_set_create(m, BIO_meth_get_create(sock)) ||
	    !BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock))) {
		BIO_meth_free(m);
		return;
	}
	nosig_method = m;
}

/* --- frames out --------------------------------------------------------- */

/* With TLS 1.3 a server that refuses the client's certificate says so in an
 * alert after the client's handshake has finished, and closes; the client
 * then sees only a reset on its first write.  Reading once may find the
 * alert, which is the reason worth reporting.  True when OpenSSL queued an
 * error for it. */
static bool
tls_read_alert(nvsrelay_conn *c)
{
	char buf[256];
	int r;

	ERR_clear_error();
	r = SSL_read(c->ssl, buf, sizeof(buf));
	return r <= 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_SSL;
}

static int
write_some(nvsrelay_conn *c)
{
	while (c->out_off < c->out_len) {
		size_t len = c->out_len - c->out_off;
		ssize_t n;

		if (c->ssl) {
			int r;

			ERR_clear_error();
			r = SSL_write(c->ssl, c->out + c->out_off, len > INT_MAX ? INT_MAX : (int)len);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
					return 1;
				if (e == SSL_ERROR_SYSCALL && errno != 0) {
					int err = errno;

					return tls_read_alert(c) ? fail_tls(c, -EPROTO, "refused by the server")
								 : fail_errno(c, err, "write");
				}
				return fail_tls(c, -EPROTO, "TLS write failed");
			}
			n = r;
		} else {
			n = send(c->fd, c->out + c->out_off, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return 1;
				return fail_errno(c, errno, "write");
			}
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Takes ownership of line (a frame from wire.c) and tries to send it. */
static int
queue(nvsrelay_conn *c, char *line)
{
	size_t len = strlen(line);
	int r;

	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p) {
			free(line);
			return -ENOMEM;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, line, len);
	c->out_len += len;
	free(line);
	r = write_some(c);
	return r < 0 ? r : 0;
}

/* --- frames in ---------------------------------------------------------- */

static void
clear_frame(nvsrelay_conn *c)
{
	if (c->frame.live)
		wire_msg_clear(&c->frame.m);
	memset(&c->frame, 0, sizeof(c->frame));
}

static int
read_some(nvsrelay_conn *c)
{
	int total = 0;

	for (;;) {
		char *buf;
		size_t room;
		ssize_t n;

		if (frame_reader_space(c->fr, READ_ROOM, &buf, &room) < 0)
			return fail_msg(c, -ENOMEM, "out of memory");
		if (room > INT_MAX)
			room = INT_MAX;
		if (c->ssl) {
			int r;

			ERR_clear_error();
			r = SSL_read(c->ssl, buf, (int)room);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);

				if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
					return total;
				if (e == SSL_ERROR_ZERO_RETURN) {
					c->eof = true;
					return total;
				}
				if (e == SSL_ERROR_SYSCALL && errno != 0 && errno != ECONNRESET)
					return fail_errno(c, errno, "read");
				if (e == SSL_ERROR_SYSCALL) {
					/* EOF without close_notify: the server went away. */
					c->eof = true;
					return total;
				}
				return fail_tls(c, -EPROTO, "TLS read failed");
			}
			n = r;
		} else {
			n = recv(c->fd, buf, room, 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return total;
				if (errno == ECONNRESET) {
					c->eof = true;
					return total;
				}
				return fail_errno(c, errno, "read");
			}
			if (n == 0) {
				c->eof = true;
				return total;
			}
		}
		frame_reader_commit(c->fr, (size_t)n);
		total = (size_t)n > (size_t)(INT_MAX - total) ? INT_MAX : total + (int)n;
		/* Plain sockets: one read per call, the loop's poll says when
		 * there is more.  TLS: what OpenSSL already decrypted never
		 * shows on the socket, so take it now (at most one record). */
		if (!c->ssl || SSL_pending(c->ssl) == 0)
			return total;
	}
}

/* Next frame from the reader, hello frames included (connect needs them). */
static int
next_frame(nvsrelay_conn *c)
{
	char err[160];

	clear_frame(c);
	if (c->status)
		return c->status;
	for (;;) {
		const char *line;
		size_t len;
		int r = frame_reader_next(c->fr, &line, &len);

		if (r == -EMSGSIZE)
			return fail_msg(c, -EMSGSIZE, "the server sent a frame larger than 1 GiB");
		if (r == 0) {
			if (c->eof)
				return fail_msg(c, -ECONNRESET, "connection closed by the server");
			return 0;
		}
		if (len == 0)
			continue;
		r = wire_parse(line, len, &c->frame.m, err, sizeof(err));
		if (r == -ENOMEM)
			return fail_msg(c, -ENOMEM, "out of memory");
		if (r < 0) {
			if (c->status == 0)
				set_local_error(c, "the server sent a malformed frame: %s", err);
			return fail(c, -EPROTO);
		}
		c->frame.live = true;
		c->frame.line = line;
		c->frame.line_len = len;
		if (c->frame.m.type == WIRE_EVENT) {
			if (c->frame.m.event_len + 1 > c->ev_cap) {
				size_t cap = c->frame.m.event_len + 1;
				char *p = realloc(c->ev, cap < 4096 ? 4096 : cap);

				if (!p)
					return fail_msg(c, -ENOMEM, "out of memory");
				c->ev = p;
				c->ev_cap = cap < 4096 ? 4096 : cap;
			}
			memcpy(c->ev, c->frame.m.event, c->frame.m.event_len);
			c->ev[c->frame.m.event_len] = '\0';
			c->frame.event = c->ev;
		} else if (c->frame.m.type == WIRE_ERROR) {
			c->frame.err.code = c->frame.m.code;
			c->frame.err.code_name = c->frame.m.code_name;
			c->frame.err.message = c->frame.m.message;
			c->frame.err.token = c->frame.m.token;
			c->frame.err.sid = c->frame.m.sid;
			set_server_error(c, &c->frame.m);
		}
		return 1;
	}
}

/* Waits for readability or writability until deadline (-1: forever) and
 * does the I/O.  1 when something happened, 0 on timeout, or a failure. */
static int
wait_io(nvsrelay_conn *c, int64_t deadline)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int n, r;

	if (c->out_off < c->out_len)
		p.events |= POLLOUT;
	n = poll(&p, 1, left_ms(deadline));
	if (n < 0)
		return errno == EINTR ? -EINTR : fail_errno(c, errno, "poll");
	if (n == 0)
		return 0;
	if (p.revents & POLLOUT) {
		r = write_some(c);
		if (r < 0)
			return r;
	}
	if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
		r = read_some(c);
		if (r < 0)
			return r;
	}
	return 1;
}

/* The next frame, doing I/O until deadline (-1: forever): 1 with the frame
 * in c->frame, 0 on timeout, or a failure (-EINTR on a signal). */
static int
next_until(nvsrelay_conn *c, int64_t deadline)
{
	for (;;) {
		int r = next_frame(c);

		if (r != 0)
			return r;
		r = write_some(c);
		if (r < 0)
			return r;
		r = wait_io(c, deadline);
		if (r <= 0)
			return r;
	}
}

/* --- connecting --------------------------------------------------------- */

static nvsrelay_conn *
conn_new(const struct nvsrelay_options *o)
{
	nvsrelay_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->fd = -1;
	clear_error(c);
	c->timeout_ms = o && o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->fr = frame_reader_new(MAX_SERVER_FRAME);
	c->client = dup_or_null(o ? o->client : NULL);
	c->auth = dup_or_null(o ? o->auth_token : NULL);
	if (!c->fr || (o && o->client && !c->client) || (o && o->auth_token && !c->auth)) {
		nvsrelay_close(c);
		return NULL;
	}
	return c;
}

/* Waits for a non-blocking connect to finish: 0 or a negative errno. */
static int
finish_connect(int fd, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0, n;
	socklen_t len = sizeof(err);

	do {
		n = poll(&p, 1, left_ms(deadline));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

static int
hello(nvsrelay_conn *c, int64_t deadline)
{
	char *line;
	int r;

	r = wire_hello(c->client, c->auth, &line);
	if (r < 0)
		return fail_msg(c, r, "out of memory");
	r = queue(c, line);
	if (r < 0)
		return fail(c, r);
	for (;;) {
		r = next_until(c, deadline);
		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		if (r == 0)
			return fail_msg(c, -ETIMEDOUT, "no hello from the server in time");
		if (c->frame.m.type == WIRE_HELLO) {
			snprintf(c->generation, sizeof(c->generation), "%s",
				 c->frame.m.generation ? c->frame.m.generation : "");
			clear_frame(c);
			return 0;
		}
		if (c->frame.m.type == WIRE_ERROR) {
			int code = c->frame.m.code;

			/* The error is already recorded from the frame. */
			clear_frame(c);
			/* 13 Unauthorized, 18 AuthenticationFailed. */
			return fail(c, code == 13 || code == 18 ? -EACCES : -ECONNREFUSED);
		}
		/* Nothing else may come before hello; skip it rather than
		 * refuse a newer server. */
	}
}

static int
tls_start(nvsrelay_conn *c, const char *host, const struct nvsrelay_options *o, int64_t deadline)
{
	const char *name = o->server_name ? o->server_name : host;
	unsigned char addr[sizeof(struct in6_addr)];
	BIO *bio;
	int r;

	pthread_once(&nosig_once, nosig_init);
	if (!nosig_method)
		return fail_msg(c, -ENOMEM, "out of memory");
	ERR_clear_error();
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx)
		return fail_tls(c, -ENOMEM, "TLS setup failed");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
	if (o->ca_file ? SSL_CTX_load_verify_locations(c->ctx, o->ca_file, NULL) != 1
		       : SSL_CTX_set_default_verify_paths(c->ctx) != 1)
		return fail_tls(c, -EINVAL, o->ca_file ? "cannot load the CA file" : "cannot load the system CAs");
	if (o->cert_file) {
		if (SSL_CTX_use_certificate_chain_file(c->ctx, o->cert_file) != 1)
			return fail_tls(c, -EINVAL, "cannot load the client certificate");
		if (SSL_CTX_use_PrivateKey_file(c->ctx, o->key_file ? o->key_file : o->cert_file,
						SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(c->ctx) != 1)
			return fail_tls(c, -EINVAL, "cannot load the client key");
	}
	c->ssl = SSL_new(c->ctx);
	bio = BIO_new(nosig_method);
	if (!c->ssl || !bio) {
		BIO_free(bio);
		return fail_tls(c, -ENOMEM, "TLS setup failed");
	}
	BIO_set_fd(bio, c->fd, BIO_NOCLOSE);
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
			return fail_tls(c, -EINVAL, "bad server address");
	} else if (SSL_set1_host(c->ssl, name) != 1 || SSL_set_tlsext_host_name(c->ssl, name) != 1) {
		return fail_tls(c, -EINVAL, "bad server name");
	}
	for (;;) {
		struct pollfd p = { .fd = c->fd };
		int n;

		ERR_clear_error();
		r = SSL_connect(c->ssl);
		if (r == 1)
			return 0;
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			p.events = POLLIN;
			break;
		case SSL_ERROR_WANT_WRITE:
			p.events = POLLOUT;
			break;
		case SSL_ERROR_SYSCALL:
			if (errno != 0)
				return fail_errno(c, errno, "TLS handshake");
			return fail_tls(c, -ECONNRESET, "TLS handshake failed (connection closed)");
		default:
			return fail_tls(c, -EPROTO, "TLS handshake failed");
		}
		do {
			n = poll(&p, 1, left_ms(deadline));
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			return fail_errno(c, errno, "poll");
		if (n == 0)
			return fail_msg(c, -ETIMEDOUT, "TLS handshake timed out");
	}
}

nvsrelay_conn *
nvsrelay_connect_unix(const char *path, const struct nvsrelay_options *opts)
{
	nvsrelay_conn *c = conn_new(opts);
	struct sockaddr_un sa;
	int64_t deadline;
	int r;

	if (!c)
		return NULL;
	deadline = now_ms() + c->timeout_ms;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		fail_msg(c, -EINVAL, "socket path empty or too long");
		return c;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (c->fd < 0) {
		fail_errno(c, errno, "socket");
		return c;
	}
	for (;;) {
		r = connect(c->fd, (struct sockaddr *)&sa, sizeof(sa));
		if (r == 0 || errno == EISCONN)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS) {
			r = finish_connect(c->fd, deadline);
			if (r < 0) {
				set_local_error(c, "cannot connect to %s: %s", path, strerror(-r));
				fail(c, r);
				return c;
			}
			break;
		}
		/* A full backlog: the listener is busy, not gone. */
		if (errno == EAGAIN && left_ms(deadline) > 0) {
			poll(NULL, 0, 10);
			continue;
		}
		set_local_error(c, "cannot connect to %s: %s", path, strerror(errno));
		fail(c, -errno);
		return c;
	}
	hello(c, deadline);
	return c;
}

nvsrelay_conn *
nvsrelay_connect_tcp(const char *host, const char *port, const struct nvsrelay_options *opts)
{
	static const struct nvsrelay_options none;
	const struct nvsrelay_options *o = opts ? opts : &none;
	nvsrelay_conn *c = conn_new(opts);
	struct addrinfo hints, *res = NULL, *ai;
	int64_t deadline;
	int r, last = ECONNREFUSED, one = 1;

	if (!c)
		return NULL;
	deadline = now_ms() + c->timeout_ms;
	if (!host || !port) {
		fail_msg(c, -EINVAL, "host and port are required");
		return c;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0) {
		set_local_error(c, "cannot resolve %s:%s: %s", host, port, gai_strerror(r));
		fail(c, r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH);
		return c;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
		if (c->fd < 0) {
			last = errno;
			continue;
		}
		r = connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
		if (r == -EINPROGRESS)
			r = finish_connect(c->fd, deadline);
		if (r == 0)
			break;
		last = -r;
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		set_local_error(c, "cannot connect to %s:%s: %s", host, port, strerror(last));
		fail(c, -last);
		return c;
	}
	/* Acks are small frames that should leave at once. */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!o->plaintext && tls_start(c, host, o, deadline) < 0)
		return c;
	hello(c, deadline);
	return c;
}

/* --- the rest of the API ------------------------------------------------ */

int
nvsrelay_status(const nvsrelay_conn *c)
{
	return c->status;
}

const struct nvsrelay_error *
nvsrelay_error(const nvsrelay_conn *c)
{
	return &c->err;
}

const char *
nvsrelay_generation(const nvsrelay_conn *c)
{
	return c->generation;
}

/* Queues a frame from a wire.c builder result. */
static int
send_built(nvsrelay_conn *c, int r, char *line, const char *err)
{
	if (r == -EINVAL) {
		set_local_error(c, "%s", err);
		return r;
	}
	if (r < 0)
		return fail_msg(c, r, "out of memory");
	r = queue(c, line);
	return r == -ENOMEM ? fail_msg(c, r, "out of memory") : r;
}

int
nvsrelay_watch(nvsrelay_conn *c, long long sid, const struct nvsrelay_watch_opts *opts)
{
	static const struct nvsrelay_watch_opts none;
	const struct nvsrelay_watch_opts *o = opts ? opts : &none;
	struct wire_watch w = {
		.sid = sid,
		.table = o->table,
		.consumer = o->consumer,
		.resume_after = o->resume_after,
		.start_after = o->start_after,
		.start_at = o->start_at_operation_time,
		.pipeline = o->pipeline,
		.before = o->full_document_before_change,
	};
	char err[160] = "", *line = NULL;
	int r;

	if (c->status)
		return c->status;
	r = wire_watch(&w, &line, err, sizeof(err));
	return send_built(c, r, line, err);
}

int
nvsrelay_ack(nvsrelay_conn *c, long long sid, const char *token)
{
	char err[160] = "", *line = NULL;
	int r;

	if (c->status)
		return c->status;
	r = wire_ack(sid, token, &line, err, sizeof(err));
	return send_built(c, r, line, err);
}

int
nvsrelay_unwatch(nvsrelay_conn *c, long long sid)
{
	char *line = NULL;
	int r;

	if (c->status)
		return c->status;
	r = wire_unwatch(sid, &line);
	return send_built(c, r, line, "sid must be between 0 and 2^53-1");
}

int
nvsrelay_ping(nvsrelay_conn *c)
{
	char *line;

	if (c->status)
		return c->status;
	line = strdup("{\"op\":\"ping\"}\n");
	return send_built(c, line ? 0 : -ENOMEM, line, "");
}

int
nvsrelay_poll_frame(nvsrelay_conn *c, const nvsrelay_frame **ret)
{
	int r = next_frame(c);

	if (r == 1)
		*ret = &c->frame;
	return r;
}

int
nvsrelay_next(nvsrelay_conn *c, int timeout_ms, const nvsrelay_frame **ret)
{
	int r = next_until(c, timeout_ms < 0 ? -1 : now_ms() + timeout_ms);

	if (r == 1)
		*ret = &c->frame;
	return r;
}

int
nvsrelay_flush(nvsrelay_conn *c, int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		int r, n;

		if (c->status)
			return c->status;
		r = write_some(c);
		if (r <= 0)
			return r;
		n = poll(&p, 1, left_ms(deadline));
		if (n < 0 && errno != EINTR)
			return fail_errno(c, errno, "poll");
		if (n == 0)
			return -ETIMEDOUT;
	}
}

int
nvsrelay_fd(const nvsrelay_conn *c)
{
	return c->fd;
}

int
nvsrelay_want_write(const nvsrelay_conn *c)
{
	return c->status == 0 && c->out_off < c->out_len;
}

int
nvsrelay_read_ready(nvsrelay_conn *c)
{
	clear_frame(c);
	if (c->status)
		return c->status;
	if (c->eof)
		return 0;
	return read_some(c);
}

int
nvsrelay_write_ready(nvsrelay_conn *c)
{
	if (c->status)
		return c->status;
	return write_some(c);
}

void
nvsrelay_close(nvsrelay_conn *c)
{
	if (!c)
		return;
	clear_frame(c);
	if (c->ssl) {
		/* close_notify is a courtesy: one try, never a wait. */
		if (c->status == 0) {
			write_some(c);
			SSL_shutdown(c->ssl);
		}
		SSL_free(c->ssl);
	} else if (c->fd >= 0 && c->status == 0) {
		write_some(c);
	}
	SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
	ERR_clear_error();
	frame_reader_free(c->fr);
	free(c->out);
	free(c->ev);
	free(c->client);
	free(c->auth);
	clear_error(c);
	free(c);
}

/* --- frame accessors ---------------------------------------------------- */

int
nvsrelay_frame_type(const nvsrelay_frame *f)
{
	switch (f->m.type) {
	case WIRE_EVENT:
		return NVSRELAY_FRAME_EVENT;
	case WIRE_BOOKMARK:
		return NVSRELAY_FRAME_BOOKMARK;
	case WIRE_ERROR:
		return NVSRELAY_FRAME_ERROR;
	case WIRE_PONG:
		return NVSRELAY_FRAME_PONG;
	default:
		return NVSRELAY_FRAME_OTHER;
	}
}

long long
nvsrelay_frame_sid(const nvsrelay_frame *f)
{
	return f->m.sid;
}

const char *
nvsrelay_frame_token(const nvsrelay_frame *f)
{
	return f->m.token;
}

const char *
nvsrelay_event_json(const nvsrelay_frame *f, size_t *len)
{
	if (f->m.type != WIRE_EVENT)
		return NULL;
	if (len)
		*len = f->m.event_len;
	return f->event;
}

const char *
nvsrelay_event_operation_type(const nvsrelay_frame *f)
{
	return f->m.type == WIRE_EVENT ? f->m.op_type : NULL;
}

const struct nvsrelay_error *
nvsrelay_frame_error(const nvsrelay_frame *f)
{
	return f->m.type == WIRE_ERROR ? &f->err : NULL;
}

const char *
nvsrelay_frame_text(const nvsrelay_frame *f, size_t *len)
{
	if (len)
		*len = f->line_len;
	return f->line;
}
