/*
 * opsconn.c - connection plumbing shared by the admin socket and the HTTP
 * endpoint (see opsconn.h): a list of connections per server, fixed input
 * buffers, output flushed under the event loop, deadlines, lingering close.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "opsconn.h"

#define OUT_MIN 4096

struct opsconn_server {
	struct ev_loop *loop;
	const struct opsconn_ops *ops;
	void *ud;
	NetAcceptor *acc;
	OpsConn *conns;
	unsigned nconns;
};

struct opsconn {
	OpsConn *next, *prev;
	OpsServer *s;
	int fd;
	bool lingering;          /* answer written, reading to EOF */
	char *out;
	size_t out_len, out_off, out_cap;
	void *data;              /* ops->data_size bytes after in */
	ev_io rio, wio;
	ev_timer timer;
	size_t in_len;
	char in[];               /* ops->in_max bytes */
};

static bool transient(int e)
{
	return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

void opsconn_free(OpsConn *c)
{
	OpsServer *s = c->s;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	if (s->ops->close)
		s->ops->close(c);
	ev_io_stop(s->loop, &c->rio);
	ev_io_stop(s->loop, &c->wio);
	ev_timer_stop(s->loop, &c->timer);
	close(c->fd);
	free(c->out);
	free(c);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	OpsConn *c = w->data;
	size_t max = c->s->ops->in_max;
	char sink[4096];
	ssize_t n;

	(void)loop;
	(void)revents;
	if (c->lingering) {
		n = recv(c->fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && !transient(errno)))
			opsconn_free(c);
		return;
	}
	if (c->in_len == max) {
		c->s->ops->input(c, -ENOBUFS);
		return;
	}
	n = recv(c->fd, c->in + c->in_len, max - c->in_len, 0);
	if (n < 0) {
		if (!transient(errno))
			opsconn_free(c);
		return;
	}
	c->in_len += (size_t)n;
	c->s->ops->input(c, (int)n);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	OpsConn *c = w->data;

	(void)loop;
	(void)revents;
	c->s->ops->writable(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	OpsConn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->lingering)
		opsconn_free(c);
	else
		c->s->ops->timeout(c);
}

/* Closes the oldest connection (the list's tail) with nothing queued and
 * not lingering, if any. */
static void evict_idle(OpsServer *s)
{
	OpsConn *c, *victim = NULL;

	for (c = s->conns; c; c = c->next)
		if (!c->lingering && c->out_len == 0)
			victim = c;
	if (victim) {
		log_debug("%s connection evicted for a new one: %u open", s->ops->name, s->nconns);
		opsconn_free(victim);
	}
}

OpsConn *opsconn_new(OpsServer *s, int fd)
{
	const struct opsconn_ops *ops = s->ops;
	/* The server's data goes after the input, aligned for anything. */
	size_t off = (sizeof(OpsConn) + ops->in_max + sizeof(max_align_t) - 1) / sizeof(max_align_t) *
		     sizeof(max_align_t);
	OpsConn *c;

	/* Admin commands, probes and scrapes are few; a flood only costs its
	 * own sockets, and where the server allows it the newcomer wins over
	 * the oldest silent connection, so that a probe is answered under a
	 * flood of idle ones. */
	if (s->nconns >= ops->max_conns && ops->evict_idle)
		evict_idle(s);
	if (s->nconns >= ops->max_conns || !(c = calloc(1, off + ops->data_size))) {
		close(fd);
		return NULL;
	}
	c->s = s;
	c->fd = fd;
	c->data = (char *)c + off;
	ev_io_init(&c->rio, read_cb, fd, EV_READ);
	c->rio.data = c;
	ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
	c->wio.data = c;
	ev_init(&c->timer, timer_cb);
	c->timer.data = c;
	opsconn_deadline(c, ops->deadline, ops->repeat);
	ev_io_start(s->loop, &c->rio);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	return c;
}

void *opsconn_ud(const OpsConn *c)
{
	return c->s->ud;
}

void *opsconn_data(OpsConn *c)
{
	return c->data;
}

char *opsconn_in(OpsConn *c, size_t *len)
{
	*len = c->in_len;
	return c->in;
}

void opsconn_consume(OpsConn *c, size_t n)
{
	if (n > c->in_len)
		n = c->in_len;
	c->in_len -= n;
	memmove(c->in, c->in + n, c->in_len);
}

void opsconn_reading(OpsConn *c, bool on)
{
	if (on)
		ev_io_start(c->s->loop, &c->rio);
	else
		ev_io_stop(c->s->loop, &c->rio);
}

char *opsconn_out(OpsConn *c, size_t n)
{
	char *p;

	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : OUT_MIN;

		while (cap < c->out_len + n)
			cap *= 2;
		if (!(p = realloc(c->out, cap)))
			return NULL;
		c->out = p;
		c->out_cap = cap;
	}
	p = c->out + c->out_len;
	c->out_len += n;
	return p;
}

size_t opsconn_queued(const OpsConn *c)
{
	return c->out_len;
}

int opsconn_flush(OpsConn *c)
{
	struct ev_loop *loop = c->s->loop;

	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_start(loop, &c->wio);
			return 0;
		}
		opsconn_free(c);
		return -1;
	}
	c->out_off = c->out_len = 0;
	ev_io_stop(loop, &c->wio);
	return 1;
}

void opsconn_deadline(OpsConn *c, double after, double repeat)
{
	ev_timer_stop(c->s->loop, &c->timer);
	ev_timer_set(&c->timer, after, repeat);
	ev_timer_start(c->s->loop, &c->timer);
}

void opsconn_linger(OpsConn *c, double seconds)
{
	c->lingering = true;
	shutdown(c->fd, SHUT_WR);
	ev_io_stop(c->s->loop, &c->wio);
	ev_io_start(c->s->loop, &c->rio);
	opsconn_deadline(c, seconds, 0.);
}

/* --- the server ---------------------------------------------------------- */

static void accept_cb(void *ud, int fd, const struct sockaddr *peer)
{
	OpsServer *s = ud;

	(void)peer;
	if (fd < 0)
		log_warning("%s accept failed error='%s'", s->ops->name, strerror(-fd));
	else if (s->ops->accept)
		s->ops->accept(s->ud, fd);
	else
		opsconn_new(s, fd);
}

OpsServer *opsconn_server_new(struct ev_loop *loop, int fd, const struct opsconn_ops *ops, void *ud)
{
	OpsServer *s = calloc(1, sizeof(*s));

	if (!s || !(s->acc = net_acceptor_new(loop, accept_cb)) || net_acceptor_add(s->acc, fd, s) < 0) {
		if (s)
			net_acceptor_free(s->acc);
		free(s);
		close(fd);
		return NULL;
	}
	s->loop = loop;
	s->ops = ops;
	s->ud = ud;
	net_acceptor_refusal(s->acc, ops->refusal);
	net_acceptor_start(s->acc);
	return s;
}

void opsconn_server_free(OpsServer *s)
{
	if (!s)
		return;
	while (s->conns)
		opsconn_free(s->conns);
	net_acceptor_free(s->acc);
	free(s);
}
