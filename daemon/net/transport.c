/*
 * transport.c - plain and TLS byte streams for client.c and upconn.c (see
 * transport.h).
 *
 * Plain sockets are written with sendmsg, a writev that cannot raise
 * SIGPIPE.  A TLS session is driven non-blocking: SSL_read and SSL_write may
 * each need the socket readable or writable (TRANSPORT_WANT_*), and output is
 * copied into a record-sized stage handed to SSL_write, because a write that
 * must be retried has to be offered the same bytes again.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls.h"
#include "transport.h"

/* TLS output is copied here and written a record at a time. */
#define TLS_STAGE 16384

struct transport_ops {
	ssize_t (*read)(Transport *t, char *buf, size_t len, char *why, size_t whylen);
	ssize_t (*writev)(Transport *t, const struct iovec *iov, int iovcnt, char *why, size_t whylen);
	bool (*has_pending)(Transport *t);
	int (*handshake)(Transport *t, char *why, size_t whylen);
	void (*shutdown)(Transport *t);
	const char *(*describe)(Transport *t, char *buf, size_t len);
	const char *(*peer_subject)(Transport *t, char *buf, size_t len);
	const char *(*peer_cn)(Transport *t, char *buf, size_t len);
	void (*free)(Transport *t);
	size_t write_max;
};

struct transport {
	const struct transport_ops *ops;
	int fd;
	SSL *ssl;
	bool established;        /* handshake done */
	bool broken;             /* a fatal TLS error: no close_notify */
	char *stage;             /* TLS: bytes taken from the caller, handed to SSL_write */
	size_t stage_len, stage_off;
};

/* --- plain ------------------------------------------------------------- */

static ssize_t plain_read(Transport *t, char *buf, size_t len, char *why, size_t whylen)
{
	ssize_t n = recv(t->fd, buf, len, 0);

	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return TRANSPORT_WANT_READ;
	if (n == 0)
		return TRANSPORT_CLOSED;
	snprintf(why, whylen, "%s", strerror(errno));
	return TRANSPORT_FAILED;
}

static ssize_t plain_writev(Transport *t, const struct iovec *iov, int iovcnt, char *why, size_t whylen)
{
	struct msghdr msg;
	ssize_t w;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = (struct iovec *)iov;
	msg.msg_iovlen = (size_t)iovcnt;
	do
		w = sendmsg(t->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (w < 0 && errno == EINTR);
	if (w > 0)
		return w;
	if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return TRANSPORT_WANT_WRITE;
	snprintf(why, whylen, "%s", w == 0 ? "peer closed" : strerror(errno));
	return TRANSPORT_FAILED;
}

static void plain_free(Transport *t)
{
	close(t->fd);
	free(t);
}

static const struct transport_ops plain_ops = {
	.read = plain_read,
	.writev = plain_writev,
	.free = plain_free,
	.write_max = SIZE_MAX,
};

/* --- TLS --------------------------------------------------------------- */

/* A failed OpenSSL call: the session is broken, why says how. */
static int tls_failed(Transport *t, int e, char *why, size_t whylen)
{
	t->broken = true;
	tls_error(t->ssl, e == SSL_ERROR_SYSCALL ? errno : 0, why, whylen);
	return TRANSPORT_FAILED;
}

static ssize_t tls_read(Transport *t, char *buf, size_t len, char *why, size_t whylen)
{
	int r, e;

	ERR_clear_error();
	r = SSL_read(t->ssl, buf, len < INT_MAX ? (int)len : INT_MAX);
	if (r > 0)
		return r;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return TRANSPORT_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TRANSPORT_WANT_WRITE;
	if (e == SSL_ERROR_ZERO_RETURN)
		return TRANSPORT_CLOSED;
	return tls_failed(t, e, why, whylen);
}

/* Copies the front of iov, up to one record, into the stage. */
static void fill_stage(Transport *t, const struct iovec *iov, int iovcnt)
{
	size_t n = 0;

	for (int i = 0; i < iovcnt && n < TLS_STAGE; i++) {
		size_t take = iov[i].iov_len < TLS_STAGE - n ? iov[i].iov_len : TLS_STAGE - n;

		memcpy(t->stage + n, iov[i].iov_base, take);
		n += take;
	}
	t->stage_len = n;
	t->stage_off = 0;
}

static ssize_t tls_writev(Transport *t, const struct iovec *iov, int iovcnt, char *why, size_t whylen)
{
	size_t offered = 0;
	int r, e;

	for (int i = 0; i < iovcnt; i++)
		offered += iov[i].iov_len;
	if (t->stage_off == t->stage_len) {
		if (!t->stage && !(t->stage = malloc(TLS_STAGE))) {
			snprintf(why, whylen, "out of memory");
			return TRANSPORT_FAILED;
		}
		fill_stage(t, iov, iovcnt);
	}
	ERR_clear_error();
	r = SSL_write(t->ssl, t->stage + t->stage_off, (int)(t->stage_len - t->stage_off));
	if (r > 0) {
		t->stage_off += (size_t)r;
		/* All the caller had is out: the stage is not kept for later. */
		if (t->stage_off == t->stage_len && (size_t)r >= offered) {
			free(t->stage);
			t->stage = NULL;
			t->stage_len = t->stage_off = 0;
		}
		return r;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE)
		return TRANSPORT_WANT_WRITE;
	if (e == SSL_ERROR_WANT_READ)
		return TRANSPORT_WANT_READ;
	return tls_failed(t, e, why, whylen);
}

static bool tls_has_pending(Transport *t)
{
	return SSL_pending(t->ssl) > 0 || SSL_has_pending(t->ssl);
}

static int tls_handshake(Transport *t, char *why, size_t whylen)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->established = true;
		return 0;
	}
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return TRANSPORT_WANT_READ;
	if (e == SSL_ERROR_WANT_WRITE)
		return TRANSPORT_WANT_WRITE;
	return tls_failed(t, e, why, whylen);
}

static void tls_shutdown(Transport *t)
{
	if (t->broken || !t->established)
		return;
	ERR_clear_error();
	SSL_shutdown(t->ssl);   /* close_notify, best effort */
	ERR_clear_error();
}

static const char *tls_describe_session(Transport *t, char *buf, size_t len)
{
	return tls_describe(t->ssl, buf, len);
}

static const char *tls_subject(Transport *t, char *buf, size_t len)
{
	return tls_peer_subject(t->ssl, buf, len);
}

static const char *tls_cn(Transport *t, char *buf, size_t len)
{
	return tls_peer_cn(t->ssl, buf, len);
}

static void tls_free(Transport *t)
{
	/* The session's socket BIO does not own the fd. */
	SSL_free(t->ssl);
	free(t->stage);
	plain_free(t);
}

static const struct transport_ops tls_ops = {
	.read = tls_read,
	.writev = tls_writev,
	.has_pending = tls_has_pending,
	.handshake = tls_handshake,
	.shutdown = tls_shutdown,
	.describe = tls_describe_session,
	.peer_subject = tls_subject,
	.peer_cn = tls_cn,
	.free = tls_free,
	.write_max = TLS_STAGE,
};

/* --- the interface ----------------------------------------------------- */

static Transport *transport_new(const struct transport_ops *ops, int fd, SSL *ssl)
{
	Transport *t = calloc(1, sizeof(*t));

	if (!t) {
		SSL_free(ssl);
		close(fd);
		return NULL;
	}
	t->ops = ops;
	t->fd = fd;
	t->ssl = ssl;
	return t;
}

Transport *transport_plain(int fd)
{
	return transport_new(&plain_ops, fd, NULL);
}

Transport *transport_tls(int fd, struct ssl_st *ssl)
{
	return transport_new(&tls_ops, fd, ssl);
}

void transport_free(Transport *t)
{
	if (t)
		t->ops->free(t);
}

int transport_fd(const Transport *t)
{
	return t->fd;
}

int transport_handshake(Transport *t, char *why, size_t whylen)
{
	return t->ops->handshake ? t->ops->handshake(t, why, whylen) : 0;
}

ssize_t transport_read(Transport *t, char *buf, size_t len, char *why, size_t whylen)
{
	return t->ops->read(t, buf, len, why, whylen);
}

bool transport_has_pending(Transport *t)
{
	return t->ops->has_pending && t->ops->has_pending(t);
}

ssize_t transport_writev(Transport *t, const struct iovec *iov, int iovcnt, char *why, size_t whylen)
{
	return t->ops->writev(t, iov, iovcnt, why, whylen);
}

size_t transport_write_max(const Transport *t)
{
	return t->ops->write_max;
}

size_t transport_unwritten(const Transport *t)
{
	return t->stage_len - t->stage_off;
}

void transport_stop_reading(Transport *t)
{
	shutdown(t->fd, SHUT_RD);
}

void transport_shutdown(Transport *t)
{
	if (t->ops->shutdown)
		t->ops->shutdown(t);
}

const char *transport_describe(Transport *t, char *buf, size_t len)
{
	if (t->ops->describe)
		return t->ops->describe(t, buf, len);
	snprintf(buf, len, "%s", "");
	return buf;
}

const char *transport_peer_subject(Transport *t, char *buf, size_t len)
{
	if (t->ops->peer_subject)
		return t->ops->peer_subject(t, buf, len);
	snprintf(buf, len, "%s", "");
	return buf;
}

const char *transport_peer_cn(Transport *t, char *buf, size_t len)
{
	if (t->ops->peer_cn)
		return t->ops->peer_cn(t, buf, len);
	snprintf(buf, len, "%s", "");
	return buf;
}
