/*
 * upconn.c - a client connection to an upstream nvsrelayd (upconn.h).
 *
 * Steps: resolve and connect (non-blocking), TLS handshake when configured,
 * our hello (with the token), the server's hello, then frames.  Any failure,
 * a timeout at any step, or silence past the timeout once open ends the
 * connection through the one down callback.  Names are resolved without
 * blocking the loop (resolve.c), under the same timeout as the rest of the
 * steps; the attempt starts from a timer, never inside a caller.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "fileio.h"
#include "frame.h"
#include "hostport.h"
#include "resolve.h"
#include "tls.h"
#include "transport.h"
#include "upconn.h"
#include "wire.h"

/* The largest frame taken from upstream.  Not max_frame_bytes, which
 * bounds what a relay reads: an event carries its documents whole (an
 * update with its pre-image, twice) and may be larger. */
#define UPSTREAM_FRAME_MAX (1024 * 1024 * 1024)

enum upstate { U_START, U_CONNECTING, U_HANDSHAKE, U_HELLO, U_OPEN };

struct upconn_tls {
	SSL_CTX *ctx;
};

struct upconn {
	struct ev_loop *loop;
	struct upconn_cbs cbs;
	void *arg;
	char *addr, *token, *client;
	UpConnTls *tls;
	double timeout;
	enum upstate state;
	int fd;
	Resolve *res;              /* the name being resolved (U_START) */
	struct hostport hp;        /* parsed from addr: host for TLS, port */
	Transport *t;
	FrameReader *fr;
	char *out;
	size_t out_len, out_off, out_cap;
	ev_io io;
	ev_timer kick, timer;
	ev_tstamp last_rx;
	bool paused, closed;
	int busy;                  /* inside a callback: free later */
};

UpConnTls *upconn_tls_new(const char *ca_file, const char *cert_file, const char *key_file,
			  char *err, size_t errlen)
{
	UpConnTls *t = calloc(1, sizeof(*t));
	const char *key = *key_file ? key_file : cert_file;
	char why[256];

	if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
		snprintf(err, errlen, "cannot create a TLS context");
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (*ca_file ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1
		     : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		snprintf(err, errlen, "upstream_ca_file %s: %s", *ca_file ? ca_file : "(system)",
			 tls_error(NULL, EINVAL, why, sizeof(why)));
		goto fail;
	}
	if (*cert_file && fileio_private(key, S_IRWXO, "upstream_key_file", "a private key", err, errlen) < 0)
		goto fail;
	if (*cert_file && (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1 ||
			   SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 ||
			   SSL_CTX_check_private_key(t->ctx) != 1)) {
		snprintf(err, errlen, "upstream_cert_file %s: %s", cert_file, tls_error(NULL, EINVAL, why, sizeof(why)));
		goto fail;
	}
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return t;
fail:
	upconn_tls_free(t);
	return NULL;
}

void upconn_tls_free(UpConnTls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

static void release(UpConn *u)
{
	resolve_cancel(u->res);
	ev_io_stop(u->loop, &u->io);
	ev_timer_stop(u->loop, &u->kick);
	ev_timer_stop(u->loop, &u->timer);
	if (u->t)
		transport_free(u->t);
	else if (u->fd >= 0)
		close(u->fd);
	frame_reader_free(u->fr);
	if (u->token)
		memset(u->token, 0, strlen(u->token));
	free(u->token);
	free(u->addr);
	free(u->client);
	free(u->out);
	free(u);
}

void upconn_close(UpConn *u)
{
	if (!u || u->closed)
		return;
	u->closed = true;
	if (u->busy == 0)
		release(u);
}

static void fail(UpConn *u, const char *why)
{
	if (u->closed)
		return;
	u->busy++;
	u->cbs.down(u->arg, u, why);
	u->busy--;
	u->closed = true;
	if (u->busy == 0)
		release(u);
}

static void want(UpConn *u, int events)
{
	if (u->paused && u->state == U_OPEN)
		events &= ~EV_READ;
	if (u->io.events == events && ev_is_active(&u->io))
		return;
	ev_io_stop(u->loop, &u->io);
	ev_io_set(&u->io, u->fd, events);
	if (events)
		ev_io_start(u->loop, &u->io);
}

static int queue(UpConn *u, const char *data, size_t len)
{
	if (u->out_off > 0 && u->out_off == u->out_len)
		u->out_off = u->out_len = 0;
	if (u->out_len + len > u->out_cap) {
		size_t cap = (u->out_len + len) * 2;
		char *p = realloc(u->out, cap);
		if (!p)
			return -ENOMEM;
		u->out = p;
		u->out_cap = cap;
	}
	memcpy(u->out + u->out_len, data, len);
	u->out_len += len;
	return 0;
}

/* Writes what is queued; false when the connection failed. */
static bool flush(UpConn *u)
{
	char why[256];

	while (u->out_off < u->out_len) {
		struct iovec iov = { u->out + u->out_off, u->out_len - u->out_off };
		ssize_t r = transport_writev(u->t, &iov, 1, why, sizeof(why));
		if (r == TRANSPORT_WANT_WRITE || r == TRANSPORT_WANT_READ)
			break;
		if (r < 0) {
			fail(u, why);
			return false;
		}
		u->out_off += (size_t)r;
	}
	want(u, EV_READ | (u->out_off < u->out_len || transport_unwritten(u->t) ? EV_WRITE : 0));
	return true;
}

int upconn_send(UpConn *u, const char *data, size_t len)
{
	if (u->closed)
		return -ENOTCONN;
	if (queue(u, data, len) < 0)
		return -ENOMEM;
	if (u->state >= U_HELLO)
		flush(u);
	return 0;
}

void upconn_pause(UpConn *u, bool paused)
{
	if (u->paused == paused || u->closed)
		return;
	u->paused = paused;
	if (u->state >= U_HELLO)
		flush(u);
}

const char *upconn_addr(const UpConn *u)
{
	return u->addr;
}

static void on_hello(UpConn *u, const char *line, size_t len)
{
	struct wire_msg m = { 0 };
	char err[200], why[400];

	if (wire_parse(line, len, &m, err, sizeof(err)) < 0) {
		snprintf(why, sizeof(why), "bad first frame from upstream: %s", err);
		fail(u, why);
		return;
	}
	if (m.type != WIRE_HELLO) {
		snprintf(why, sizeof(why), "upstream refused the hello: %d %s", m.code, m.message ? m.message : "");
		wire_msg_clear(&m);
		fail(u, why);
		return;
	}
	u->state = U_OPEN;
	ev_timer_stop(u->loop, &u->timer);
	ev_timer_set(&u->timer, u->timeout / 3, u->timeout / 3);
	ev_timer_start(u->loop, &u->timer);
	u->cbs.up(u->arg, u, m.generation ? m.generation : "");
	wire_msg_clear(&m);
	if (!u->closed)
		flush(u);
}

static void read_frames(UpConn *u)
{
	char *buf, why[256];
	size_t room;
	const char *line;
	size_t len;
	ssize_t n;
	int r;

	do {
		if (frame_reader_space(u->fr, 16384, &buf, &room) < 0) {
			fail(u, "out of memory");
			return;
		}
		n = transport_read(u->t, buf, room, why, sizeof(why));
		if (n == TRANSPORT_WANT_READ || n == TRANSPORT_WANT_WRITE)
			break;
		if (n == TRANSPORT_CLOSED) {
			fail(u, "upstream closed the connection");
			return;
		}
		if (n < 0) {
			fail(u, why);
			return;
		}
		frame_reader_commit(u->fr, (size_t)n);
		u->last_rx = ev_now(u->loop);
		while (!u->closed && (r = frame_reader_next(u->fr, &line, &len)) != 0) {
			if (r < 0) {
				fail(u, "upstream sent a frame over 1 GiB");
				return;
			}
			if (len == 0)
				continue;
			if (u->state == U_HELLO)
				on_hello(u, line, len);
			else
				u->cbs.frame(u->arg, u, line, len);
		}
	} while (!u->closed && !u->paused && transport_has_pending(u->t));
}

static void handshake(UpConn *u)
{
	char why[300], msg[360];
	int r = transport_handshake(u->t, why, sizeof(why));

	if (r == TRANSPORT_WANT_READ || r == TRANSPORT_WANT_WRITE) {
		want(u, r == TRANSPORT_WANT_READ ? EV_READ : EV_WRITE);
		return;
	}
	if (r < 0) {
		snprintf(msg, sizeof(msg), "TLS handshake: %s", why);
		fail(u, msg);
		return;
	}
	/* The hello was queued first at open; what follows it may go too:
	 * the server takes frames in order. */
	u->state = U_HELLO;
	flush(u);
}

static void connected(UpConn *u)
{
	int err = 0;
	socklen_t el = sizeof(err);
	char msg[300];

	if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		snprintf(msg, sizeof(msg), "connect: %s", strerror(err));
		fail(u, msg);
		return;
	}
	u->state = U_HANDSHAKE;
	handshake(u);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	UpConn *u = w->data;

	(void)loop;
	u->busy++;
	if (u->state == U_CONNECTING)
		connected(u);
	else if (u->state == U_HANDSHAKE)
		handshake(u);
	else {
		if ((revents & EV_WRITE) && !u->closed)
			flush(u);
		if ((revents & EV_READ) && !u->closed)
			read_frames(u);
		if (!u->closed)
			flush(u);
	}
	if (--u->busy == 0 && u->closed)
		release(u);
}

static int start_connect(UpConn *u, const struct addrinfo *ai, char *why, size_t whylen)
{
	const struct hostport hp = u->hp;
	SSL *ssl = NULL;
	int one = 1;

	u->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0 || (connect(u->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
		snprintf(why, whylen, "connect: %s", strerror(errno));
		return -errno;
	}
	setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (u->tls) {
		ERR_clear_error();
		if (!(ssl = SSL_new(u->tls->ctx)) || SSL_set_fd(ssl, u->fd) != 1) {
			SSL_free(ssl);
			snprintf(why, whylen, "cannot start a TLS session");
			return -ENOMEM;
		}
		SSL_set_connect_state(ssl);
		SSL_set_tlsext_host_name(ssl, hp.host);
		/* The certificate must name the address we dialled. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), hp.host) != 1)
			SSL_set1_host(ssl, hp.host);
		u->t = transport_tls(u->fd, ssl);
	} else {
		u->t = transport_plain(u->fd);
	}
	if (!u->t) {
		u->fd = -1;   /* closed by the transport */
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	u->state = U_CONNECTING;
	ev_io_init(&u->io, io_cb, u->fd, EV_WRITE);
	u->io.data = u;
	ev_io_start(u->loop, &u->io);
	return 0;
}

static void resolved(void *arg, const struct addrinfo *ai, const char *err)
{
	UpConn *u = arg;
	char why[300];

	u->res = NULL;
	if (!ai)
		fail(u, err);
	else if (start_connect(u, ai, why, sizeof(why)) < 0)
		fail(u, why);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	UpConn *u = w->data;

	(void)revents;
	if (hostport_parse(u->addr, HOSTPORT_SERVICE, &u->hp) < 0)
		fail(u, "not HOST:PORT");
	else if (!(u->res = resolve_start(loop, u->hp.host, u->hp.port, resolved, u)))
		fail(u, "out of memory");
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	UpConn *u = w->data;
	char msg[128];

	(void)revents;
	if (u->state != U_OPEN) {
		snprintf(msg, sizeof(msg), "no answer within %.1f s (name lookup, connect, TLS or hello)", u->timeout);
		fail(u, msg);
	} else if (ev_now(loop) - u->last_rx > u->timeout) {
		snprintf(msg, sizeof(msg), "nothing received for %.1f s", ev_now(loop) - u->last_rx);
		fail(u, msg);
	} else {
		upconn_send(u, "{\"op\":\"ping\"}\n", 14);
	}
}

UpConn *upconn_open(struct ev_loop *loop, const struct upconn_opts *o, const struct upconn_cbs *cbs, void *arg)
{
	UpConn *u = calloc(1, sizeof(*u));
	char *hello = NULL;

	if (!u)
		return NULL;
	u->loop = loop;
	u->cbs = *cbs;
	u->arg = arg;
	u->fd = -1;
	u->tls = o->tls;
	u->timeout = o->timeout;
	u->addr = strdup(o->addr);
	u->client = strdup(o->client ? o->client : "nvsrelayd");
	u->token = o->token ? strdup(o->token) : NULL;
	u->fr = frame_reader_new(UPSTREAM_FRAME_MAX);
	if (!u->addr || !u->client || (o->token && !u->token) || !u->fr ||
	    wire_hello(u->client, u->token, &hello) < 0 || queue(u, hello, strlen(hello)) < 0) {
		free(hello);
		release(u);
		return NULL;
	}
	free(hello);
	ev_init(&u->io, io_cb);
	u->io.data = u;
	ev_timer_init(&u->kick, kick_cb, 0., 0.);
	u->kick.data = u;
	ev_timer_start(loop, &u->kick);
	ev_timer_init(&u->timer, timer_cb, o->timeout, 0.);
	u->timer.data = u;
	ev_timer_start(loop, &u->timer);
	u->last_rx = ev_now(loop);
	return u;
}
