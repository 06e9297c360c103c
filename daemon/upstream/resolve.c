/*
 * resolve.c - non-blocking name resolution (resolve.h).
 *
 * getaddrinfo_a runs the lookup on glibc's own thread; we ask gai_error
 * every few milliseconds rather than take a signal or a callback on that
 * thread, so nothing of ours ever runs outside the loop.  The upstream
 * connection's own timeout bounds the wait (upconn.c cancels).  A lookup
 * that cannot be cancelled any more still writes into its request: the
 * request is kept on a list until glibc is done with it, then freed.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"

#define POLL_S 0.005

struct resolve {
	struct ev_loop *loop;
	resolve_cb cb;
	void *arg;
	struct gaicb req;
	struct addrinfo hints;
	struct addrinfo *numeric;  /* a numeric host: no lookup at all */
	bool queued;               /* handed to getaddrinfo_a */
	int refused;               /* getaddrinfo_a's own failure, given from the loop */
	ev_timer timer;
	struct resolve *next_orphan;
	char *host, *port;
};

/* Cancelled lookups glibc was still running. */
static struct resolve *orphans;

static void res_free(struct resolve *r)
{
	if (r->numeric)
		freeaddrinfo(r->numeric);
	if (r->queued && r->req.ar_result)
		freeaddrinfo(r->req.ar_result);
	free(r->host);
	free(r->port);
	free(r);
}

static void reap_orphans(void)
{
	struct resolve **pp = &orphans, *r;

	while ((r = *pp)) {
		if (gai_error(&r->req) == EAI_INPROGRESS) {
			pp = &r->next_orphan;
			continue;
		}
		*pp = r->next_orphan;
		res_free(r);
	}
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolve *r = w->data;
	char err[160];
	int e;

	(void)revents;
	if (r->numeric) {
		ev_timer_stop(loop, w);
		r->cb(r->arg, r->numeric, NULL);
		res_free(r);
		return;
	}
	if ((e = r->queued ? gai_error(&r->req) : r->refused) == EAI_INPROGRESS)
		return;
	ev_timer_stop(loop, w);
	if (e == 0 && r->req.ar_result) {
		r->cb(r->arg, r->req.ar_result, NULL);
	} else {
		snprintf(err, sizeof(err), "cannot resolve %s: %s", r->host,
			 /* errno of glibc's lookup thread is not ours to read */
			 e == EAI_SYSTEM ? "system error during the lookup" : gai_strerror(e ? e : EAI_NONAME));
		r->cb(r->arg, NULL, err);
	}
	res_free(r);
}

Resolve *resolve_start(struct ev_loop *loop, const char *host, const char *port, resolve_cb cb, void *arg)
{
	struct resolve *r = calloc(1, sizeof(*r));
	struct gaicb *list[1];
	struct sigevent sev = { .sigev_notify = SIGEV_NONE };
	struct addrinfo numeric;

	reap_orphans();
	if (!r || !(r->host = strdup(host)) || !(r->port = strdup(port))) {
		if (r)
			res_free(r);
		return NULL;
	}
	r->loop = loop;
	r->cb = cb;
	r->arg = arg;
	r->hints.ai_family = AF_UNSPEC;
	r->hints.ai_socktype = SOCK_STREAM;
	ev_timer_init(&r->timer, timer_cb, 0., POLL_S);
	r->timer.data = r;
	numeric = r->hints;
	numeric.ai_flags = AI_NUMERICHOST;
	/* An address needs no lookup; a numeric port neither, a service name
	 * only /etc/services. */
	if (getaddrinfo(host, port, &numeric, &r->numeric) != 0) {
		r->numeric = NULL;
		r->req.ar_name = r->host;
		r->req.ar_service = r->port;
		r->req.ar_request = &r->hints;
		list[0] = &r->req;
		/* EAI_AGAIN or EAI_MEMORY: the answer is a failure, still
		 * given from the loop. */
		if ((r->refused = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev)) == 0)
			r->queued = true;
	}
	ev_timer_start(loop, &r->timer);
	return r;
}

void resolve_cancel(Resolve *r)
{
	if (!r)
		return;
	ev_timer_stop(r->loop, &r->timer);
	if (r->queued && gai_cancel(&r->req) == EAI_NOTCANCELED) {
		r->next_orphan = orphans;
		orphans = r;
	} else {
		res_free(r);
	}
	reap_orphans();
}
