/*
 * http.c - the HTTP/1.0 server behind /metrics, /livez and /readyz.
 *
 * Deliberately small: probes and scrapers send one short GET and read one
 * answer, so a connection reads at most HTTP_MAX_REQUEST bytes of request
 * head, is answered once with "Connection: close" and is closed.  Nothing a
 * peer sends can make it allocate more than that or wait longer than
 * HTTP_TIMEOUT: garbage gets 400, an endless head 431, a silent peer the
 * deadline.  When all HTTP_MAX_CONNS are taken, a new connection closes the
 * oldest one that has not sent its request, so probes are answered under
 * a flood of idle connections.  After answering, the socket is shut down for writing and
 * drained briefly before close, so a request body we never read cannot turn
 * the close into a reset that destroys the answer in flight.
 *
 * ops.c owns the server and supplies the handler; net.c and opsconn.c
 * hold the sockets and connection buffers.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metrics.h"
#include "net.h"
#include "opsconn.h"

#define HTTP_MAX_REQUEST 8192
#define HTTP_MAX_CONNS   32
#define HTTP_TIMEOUT     5.0
#define HTTP_LINGER      1.0

/* Per connection, beside opsconn's buffers (the request head is its input). */
struct hconn {
	bool answered;          /* the answer is queued */
};

struct http {
	http_handler handler;
	void *ud;
	OpsServer *srv;
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

/* Once the answer is written, the connection lingers and closes. */
static void send_answer(OpsConn *c)
{
	if (opsconn_flush(c) == 1)
		opsconn_linger(c, HTTP_LINGER);
}

static void answer(OpsConn *c, struct http_response *res, bool head)
{
	struct hconn *hc = opsconn_data(c);
	char hdr[512], code[8], *out = NULL;
	int n;

	hc->answered = true;
	snprintf(code, sizeof(code), "%d", res->status);
	metrics_add(M_HTTP_REQUESTS, code, 1);
	n = snprintf(hdr, sizeof(hdr),
		     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
		     res->status, reason(res->status), res->type ? res->type : "text/plain; charset=utf-8",
		     res->len, res->status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(hdr) || !(out = opsconn_out(c, (size_t)n + (head ? 0 : res->len)))) {
		free(res->body);
		opsconn_free(c);
		return;
	}
	memcpy(out, hdr, (size_t)n);
	if (!head && res->len)
		memcpy(out + n, res->body, res->len);
	free(res->body);
	res->body = NULL;
	opsconn_reading(c, false);
	send_answer(c);
}

static void answer_text(OpsConn *c, int status, const char *text)
{
	struct http_response res = { 0 };

	if (http_text(&res, status, text) < 0) {
		opsconn_free(c);
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

static void handle(OpsConn *c)
{
	Http *h = opsconn_ud(c);
	struct http_response res = { 0 };
	size_t len;
	char *req = opsconn_in(c, &len), *method = NULL, *target = NULL;
	char *eol = memchr(req, '\n', len);
	int status = eol ? parse_line(req, (size_t)(eol - req), &method, &target) : 400;

	if (status) {
		answer_text(c, status, status == 405 ? "method not allowed\n" : "bad request\n");
		return;
	}
	res.status = 200;
	h->handler(h->ud, target, &res);
	if (!res.body && res.status == 200 && http_text(&res, 404, "not found\n") < 0) {
		opsconn_free(c);
		return;
	}
	answer(c, &res, strcmp(method, "HEAD") == 0);
}

static bool head_complete(const char *req, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (req[i] != '\n')
			continue;
		if (req[i + 1] == '\n')
			return true;
		if (req[i + 1] == '\r' && i + 2 < len && req[i + 2] == '\n')
			return true;
	}
	return false;
}

static void conn_input(OpsConn *c, int n)
{
	size_t len;
	const char *req = opsconn_in(c, &len);

	if (n == 0) {
		/* The peer is done sending: whatever came is all there is. */
		if (len == 0)
			opsconn_free(c);
		else
			handle(c);
		return;
	}
	if (n > 0 && head_complete(req, len))
		handle(c);
	else if (len == HTTP_MAX_REQUEST)
		answer_text(c, 431, "request head too large\n");
}

static void conn_timeout(OpsConn *c)
{
	const struct hconn *hc = opsconn_data(c);
	size_t len;

	opsconn_in(c, &len);
	if (hc->answered || len == 0) {
		opsconn_free(c);
		return;
	}
	answer_text(c, 408, "request timeout\n");
}

static const struct opsconn_ops http_ops = {
	.name = "http",
	.max_conns = HTTP_MAX_CONNS,
	.evict_idle = true,
	.refusal = "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
		   "Content-Length: 24\r\nConnection: close\r\n\r\nout of file descriptors\n",
	.in_max = HTTP_MAX_REQUEST,
	.data_size = sizeof(struct hconn),
	.deadline = HTTP_TIMEOUT,
	.input = conn_input,
	.writable = send_answer,
	.timeout = conn_timeout,
};

Http *http_new(struct ev_loop *loop, const char *addr, http_handler handler, void *ud,
	       char *err, size_t errlen)
{
	struct addrinfo *ai, *a;
	const char *why;
	Http *h;
	int r, fd = -1, e = 0;

	if ((r = net_resolve_passive(addr, &ai, &why)) == -EINVAL) {
		snprintf(err, errlen, "http_listen: cannot read '%s' as HOST:PORT", addr);
		return NULL;
	}
	if (r < 0) {
		snprintf(err, errlen, "http_listen %s: %s", addr, why);
		return NULL;
	}
	if (!(h = calloc(1, sizeof(*h)))) {
		freeaddrinfo(ai);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->handler = handler;
	h->ud = ud;
	for (a = ai; a && fd < 0; a = a->ai_next)
		if ((fd = net_listen_tcp(a, 16, false)) < 0)
			e = -fd;
	freeaddrinfo(ai);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(e));
		free(h);
		return NULL;
	}
	if (!(h->srv = opsconn_server_new(loop, fd, &http_ops, h))) {
		snprintf(err, errlen, "out of memory");
		free(h);
		return NULL;
	}
	return h;
}

void http_free(Http *h)
{
	if (!h)
		return;
	opsconn_server_free(h->srv);
	free(h);
}
