/*
 * http.h - a tiny HTTP/1.0 server for the operations endpoints (/metrics,
 * /livez, /readyz): one GET or HEAD per connection, a capped request, a
 * deadline per connection, non-blocking under the libev loop.  ops.c
 * creates it and answers the requests through a handler.
 */
#ifndef NVSRELAY_HTTP_H
#define NVSRELAY_HTTP_H

#include <stddef.h>
#include <ev.h>

typedef struct http Http;

struct http_response {
	int status;             /* 200 unless the handler says otherwise */
	const char *type;       /* Content-Type; text/plain unless set */
	char *body;             /* malloc'd, freed by http.c; NULL for none */
	size_t len;
};

/* path is the request target without its query string.  Malformed
 * requests, other methods and oversized headers are answered by http.c and
 * never reach the handler. */
typedef void (*http_handler)(void *ud, const char *path, struct http_response *res);

/* addr is "HOST:PORT" ("[v6]:PORT" for IPv6).  Returns NULL with err
 * filled in when the address cannot be resolved or bound. */
Http *http_new(struct ev_loop *loop, const char *addr, http_handler handler, void *ud,
	       char *err, size_t errlen);
void http_free(Http *h);

/* Sets res to a copy of text (helper for handlers).  Returns 0 or -ENOMEM. */
int http_text(struct http_response *res, int status, const char *text);

#endif
