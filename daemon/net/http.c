/*
 * http.c - the HTTP/1.0 server behind /metrics, /livez and /readyz.
 *
 * Deliberately small: probes and scrapers send one short GET and read one
 * answer, so a connection reads at most HTTP_MAX_REQUEST bytes of request
 * head, is answered once with "Connection: close" and is closed.  Nothing a
 * peer sends can make it allocate more than that or wait longer than
 * HTTP_TIMEOUT: garbage gets 400, an endless head 431, a silent peer the
 * deadline.  After answering, the socket is shut down for writing and
 * drained briefly before close, so a request body we never read cannot turn
 * the close into a reset that destroys the answer in flight.
 *
 * ops.c owns the server and supplies the handler.
 */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "metrics.h"

#define HTTP_MAX_REQUEST 8192
#define HTTP_MAX_CONNS   32
#define HTTP_TIMEOUT     5.0
#define HTTP_LINGER      1.0

struct conn {
	struct conn *next, *prev;
	Http *h;
	int fd;
	char req[HTTP_MAX_REQUEST];
	size_t len;
	char *out;
	size_t out_len, out_off;
	bool answered;          /* the answer is queued */
	bool draining;          /* answer written, reading to EOF */
	ev_io io;
	ev_timer timer;
};

struct http {
	struct ev_loop *loop;
	http_handler handler;
	void *ud;
	int fd;
	ev_io io;
	struct conn *conns;
	unsigned nconns;
};

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

int http_text(struct http_response *res, int status, const char *text)
{
	res->status = status;
	res->type = "text/plain; charset=utf-8";
	free(res->body);
	res->len = strlen(text);
	res->body = strdup(text);
	return res->body ? 0 : -ENOMEM;
}

static void conn_free(struct conn *c)
{
	Http *h = c->h;

	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->nconns--;
	ev_io_stop(h->loop, &c->io);
	ev_timer_stop(h->loop, &c->timer);
	close(c->fd);
	free(c->out);
	free(c);
}

static void drain(struct conn *c)
{
	c->draining = true;
	shutdown(c->fd, SHUT_WR);
	ev_io_stop(c->h->loop, &c->io);
	ev_io_set(&c->io, c->fd, EV_READ);
	ev_io_start(c->h->loop, &c->io);
	ev_timer_stop(c->h->loop, &c->timer);
	ev_timer_set(&c->timer, HTTP_LINGER, 0.);
	ev_timer_start(c->h->loop, &c->timer);
}

/* Writes what the socket takes; false when the connection was freed. */
static bool flush(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_stop(c->h->loop, &c->io);
			ev_io_set(&c->io, c->fd, EV_WRITE);
			ev_io_start(c->h->loop, &c->io);
			return true;
		}
		conn_free(c);
		return false;
	}
	drain(c);
	return true;
}

static void answer(struct conn *c, struct http_response *res, bool head)
{
	char hdr[512], code[8];
	int n;

	c->answered = true;
	snprintf(code, sizeof(code), "%d", res->status);
	metrics_add(M_HTTP_REQUESTS, code, 1);
	n = snprintf(hdr, sizeof(hdr),
		     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
		     res->status, reason(res->status), res->type ? res->type : "text/plain; charset=utf-8",
		     res->len, res->status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(hdr) || !(c->out = malloc((size_t)n + (head ? 0 : res->len)))) {
		free(res->body);
		conn_free(c);
		return;
	}
	memcpy(c->out, hdr, (size_t)n);
	if (!head && res->len)
		memcpy(c->out + n, res->body, res->len);
	c->out_len = (size_t)n + (head ? 0 : res->len);
	free(res->body);
	res->body = NULL;
	ev_io_stop(c->h->loop, &c->io);
	flush(c);
}

static void answer_text(struct conn *c, int status, const char *text)
{
	struct http_response res = { 0 };

	if (http_text(&res, status, text) < 0) {
		conn_free(c);
		return;
	}
	answer(c, &res, false);
}

/* Splits the request line METHOD SP TARGET SP HTTP/1.x in place; header
 * lines are not needed and not looked at.  Returns the status to answer
 * with when the line is not acceptable, else 0. */
static int parse_line(char *line, size_t len, char **method, char **target)
{
	char *sp1, *sp2, *q;

	if (memchr(line, '\0', len))
		return 400;
	line[len] = '\0';
	if (len && line[len - 1] == '\r')
		line[len - 1] = '\0';
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || sp1 == line || strchr(sp2 + 1, ' '))
		return 400;
	*sp1 = *sp2 = '\0';
	for (const char *p = line; *p; p++)
		if (*p < 'A' || *p > 'Z')
			return 400;
	if (sp1[1] != '/' || strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp2[8] < '0' || sp2[8] > '9' || sp2[9])
		return 400;
	if ((q = strchr(sp1 + 1, '?')))
		*q = '\0';
	for (const unsigned char *p = (const unsigned char *)sp1 + 1; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return 400;
	*method = line;
	*target = sp1 + 1;
	return strcmp(line, "GET") == 0 || strcmp(line, "HEAD") == 0 ? 0 : 405;
}

static void handle(struct conn *c)
{
	struct http_response res = { 0 };
	char *eol = memchr(c->req, '\n', c->len), *method = NULL, *target = NULL;
	int status = eol ? parse_line(c->req, (size_t)(eol - c->req), &method, &target) : 400;

	if (status) {
		answer_text(c, status, status == 405 ? "method not allowed\n" : "bad request\n");
		return;
	}
	res.status = 200;
	c->h->handler(c->h->ud, target, &res);
	if (!res.body && res.status == 200 && http_text(&res, 404, "not found\n") < 0) {
		conn_free(c);
		return;
	}
	answer(c, &res, strcmp(method, "HEAD") == 0);
}

static bool head_complete(const struct conn *c)
{
	for (size_t i = 0; i + 1 < c->len; i++) {
		if (c->req[i] != '\n')
			continue;
		if (c->req[i + 1] == '\n')
			return true;
		if (c->req[i + 1] == '\r' && i + 2 < c->len && c->req[i + 2] == '\n')
			return true;
	}
	return false;
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	char sink[4096];
	ssize_t n;

	(void)loop;
	if (revents & EV_WRITE) {
		flush(c);
		return;
	}
	if (c->draining) {
		n = recv(c->fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			conn_free(c);
		return;
	}
	n = recv(c->fd, c->req + c->len, sizeof(c->req) - c->len, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_free(c);
		return;
	}
	if (n == 0) {
		/* The peer is done sending: whatever came is all there is. */
		if (c->len == 0) {
			conn_free(c);
			return;
		}
		handle(c);
		return;
	}
	c->len += (size_t)n;
	if (head_complete(c)) {
		handle(c);
	} else if (c->len == sizeof(c->req)) {
		answer_text(c, 431, "request head too large\n");
	}
}

static void conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	if (c->answered || c->len == 0) {
		conn_free(c);
		return;
	}
	answer_text(c, 408, "request timeout\n");
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Http *h = w->data;
	struct conn *c;
	int fd;

	(void)revents;
	for (;;) {
		fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warning("http accept failed error='%s'", strerror(errno));
			return;
		}
		/* Probes and scrapes are few; a flood only costs its own sockets. */
		if (h->nconns >= HTTP_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->h = h;
		c->fd = fd;
		ev_io_init(&c->io, conn_io, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, conn_timeout, HTTP_TIMEOUT, 0.);
		c->timer.data = c;
		ev_io_start(loop, &c->io);
		ev_timer_start(loop, &c->timer);
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		h->nconns++;
	}
}

/* Splits "host:port" / "[v6]:port" into buf; returns the port or NULL. */
static const char *split_addr(const char *addr, char *host, size_t len)
{
	const char *colon = strrchr(addr, ':');
	size_t n;

	if (!colon)
		return NULL;
	n = (size_t)(colon - addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n == 0 || n >= len)
		return NULL;
	memcpy(host, addr, n);
	host[n] = '\0';
	return colon + 1;
}

Http *http_new(struct ev_loop *loop, const char *addr, http_handler handler, void *ud,
	       char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL, *a;
	char host[256];
	const char *port = split_addr(addr, host, sizeof(host));
	Http *h;
	int r, one = 1, e = 0;

	if (!port) {
		snprintf(err, errlen, "http_listen: cannot read '%s' as HOST:PORT", addr);
		return NULL;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((r = getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "http_listen %s: %s", addr, gai_strerror(r));
		return NULL;
	}
	if (!(h = calloc(1, sizeof(*h)))) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->handler = handler;
	h->ud = ud;
	h->fd = -1;
	for (a = ai; a && h->fd < 0; a = a->ai_next) {
		h->fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
		if (h->fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(h->fd, a->ai_addr, a->ai_addrlen) < 0 || listen(h->fd, 16) < 0) {
			e = errno;
			close(h->fd);
			h->fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (h->fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(e));
		free(h);
		return NULL;
	}
	ev_io_init(&h->io, accept_cb, h->fd, EV_READ);
	h->io.data = h;
	ev_io_start(loop, &h->io);
	return h;
}

void http_free(Http *h)
{
	if (!h)
		return;
	while (h->conns)
		conn_free(h->conns);
	ev_io_stop(h->loop, &h->io);
	close(h->fd);
	free(h);
}
