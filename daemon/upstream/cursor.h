/*
 * cursor.h - catch-up pages from the upstream for local subscribers behind
 * this node relay's ring: each cursor is a short-lived subscription on its
 * own upstream connection, resumed after the page's position, read page by
 * page as the hub asks and kept while the same subscriber keeps asking
 * (the next page continues where the last one ended).  The upstream serves
 * it from its ring, or from PostgreSQL when it is older.  upstream.c owns
 * the cursors and hands read_page (source.h) here.
 */
#ifndef NVSRELAY_CURSOR_H
#define NVSRELAY_CURSOR_H

#include <ev.h>

#include "conf.h"
#include "source.h"
#include "upconn.h"

typedef struct cursors Cursors;

struct cursor_env {
	struct ev_loop *loop;
	const struct conf_values *cv;
	UpConnTls *tls;
	const char *token;         /* bearer token or NULL */
	const char *client;        /* name in the hello */
	double timeout;            /* seconds, as the live connection's */
};

Cursors *cursors_new(const struct cursor_env *env);
/* Pending reads are answered with HostUnreachable first. */
void cursors_free(Cursors *cs);
/* The read_page op against the upstream at addr.  Returns 0 (answered
 * later) or -ENOTCONN when no cursor can be had right now. */
int cursors_read(Cursors *cs, const char *addr, const struct token *pos, enum event_table table,
		 source_page_cb cb, void *arg);
/* Closes every cursor (the upstream changed): pending reads are answered
 * with HostUnreachable and asked again on the next head move. */
void cursors_reset(Cursors *cs);
size_t cursors_count(const Cursors *cs);

#endif
