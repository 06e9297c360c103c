/*
 * hubcount.c - the hub's "count" requests (hub_count in hub.h): how many
 * changes of a table lie after a position, for a component's backlog gauge
 * (NVSentinel's GetUnprocessedEventCount).  main.c's count upcall calls
 * hub_count; the figure comes from the source's count_after (source.h), the
 * answer goes back to the client.
 *
 * Each request is one statement on the connection the live stream reads
 * from, so how many wait at once is bounded, per connection and in all: a
 * client looping on count must not delay every subscriber's events.
 *
 * A request touches no subscription.  It outlives nothing: when its client
 * goes (hub_count_client_gone) or the hub is freed, the answer is dropped,
 * but the request stays allocated until the source's callback, which runs
 * exactly once, frees it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "client.h"
#include "errors.h"
#include "hub.h"
#include "hubsub.h"
#include "source.h"

#define COUNT_PER_CLIENT 16
#define COUNT_TOTAL 256

struct hub_count {
	struct hub_count *next, *prev;
	Hub *hub;                  /* NULL once the hub was freed */
	Client *client;            /* NULL once the client went */
	long long id;              /* echoed; < 0: the request had none */
};

static void unlink_count(struct hub_count *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else if (q->hub && q->hub->counts == q)
		q->hub->counts = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->next = q->prev = NULL;
}

static void count_done(void *arg, int status, uint64_t count, const char *msg)
{
	struct hub_count *q = arg;
	Client *c = q->client;
	char buf[96];
	int n;

	unlink_count(q);
	if (c && status == 0) {
		if (q->id >= 0)
			n = snprintf(buf, sizeof(buf), "{\"op\":\"count\",\"id\":%lld,\"count\":%" PRIu64 "}\n", q->id, count);
		else
			n = snprintf(buf, sizeof(buf), "{\"op\":\"count\",\"count\":%" PRIu64 "}\n", count);
		client_send(c, buf, (size_t)n);
	} else if (c) {
		client_send_error(c, -1, ERR_HOST_UNREACHABLE, msg && *msg ? msg : "count: PostgreSQL unavailable, retry",
				  NULL);
	}
	free(q);
}

void hub_count(Hub *h, Client *c, long long id, enum event_table table, const struct token *pos)
{
	struct hub_count *q;
	char msg[160];
	size_t mine = 0, all = 0;

	if (!h->have_head || !h->src) {
		client_send_error(c, -1, ERR_HOST_UNREACHABLE, "count: not ready: PostgreSQL not reached yet", NULL);
		return;
	}
	if (!h->src->ops->count_after) {
		client_send_error(c, -1, ERR_COMMAND_NOT_FOUND,
				  "count is not served by a node relay (upstream set); ask a relay that reads PostgreSQL",
				  NULL);
		return;
	}
	if (pos->gen != h->head.gen) {
		snprintf(msg, sizeof(msg),
			 "count: the position belongs to another database or changelog generation (this one is %08x)",
			 (unsigned)h->head.gen);
		client_send_error(c, -1, ERR_HISTORY_LOST, msg, NULL);
		return;
	}
	for (q = h->counts; q; q = q->next) {
		all++;
		mine += q->client == c;
	}
	if (mine >= COUNT_PER_CLIENT || all >= COUNT_TOTAL) {
		snprintf(msg, sizeof(msg), "count: too many count requests waiting (%d on a connection, %d in all); retry"
			 " after the answers", COUNT_PER_CLIENT, COUNT_TOTAL);
		client_send_error(c, -1, ERR_EXCEEDED_LIMIT, msg, NULL);
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		client_send_error(c, -1, ERR_HOST_UNREACHABLE, "count: out of memory, retry", NULL);
		return;
	}
	q->hub = h;
	q->client = c;
	q->id = id;
	if (h->src->ops->count_after(h->src->impl, table, pos, count_done, q) < 0) {
		free(q);
		client_send_error(c, -1, ERR_HOST_UNREACHABLE, "count: PostgreSQL unavailable, retry", NULL);
		return;
	}
	q->next = h->counts;
	if (q->next)
		q->next->prev = q;
	h->counts = q;
}

void hub_count_client_gone(Hub *h, Client *c)
{
	for (struct hub_count *q = h->counts; q; q = q->next)
		if (q->client == c)
			q->client = NULL;
}

void hub_count_free_all(Hub *h)
{
	struct hub_count *q;

	while ((q = h->counts)) {
		unlink_count(q);
		q->hub = NULL;
		q->client = NULL;
	}
}
