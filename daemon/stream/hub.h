/*
 * hub.h - subscriptions and the ring of recent events.  The event source
 * publishes each event once; the hub hands it by reference to every
 * matching subscription, serves subscribers that fell behind the ring
 * through catch-up reads, emits bookmarks and persists durable positions,
 * both through the source's ops (source.h).  Clients reach the
 * subscription functions through the upcalls main.c wires
 * (client_upcalls); the source (relay.c) publishes.
 */
#ifndef NVSRELAY_HUB_H
#define NVSRELAY_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "event.h"
#include "token.h"

typedef struct hub Hub;
struct client;
struct source;

struct watch_req {
	long long sid;
	enum event_table table;
	const char *consumer;      /* durable name or NULL */
	bool has_resume;           /* resumeAfter / startAfter given */
	struct token resume;
	bool has_event_id;         /* resumeAfter in NVSentinel's {timestamp, eventID} form */
	uint64_t event_id;
	const char *start_at;      /* startAtOperationTime (RFC 3339) or NULL */
	struct filter *filter;     /* compiled pipeline or NULL; hub_watch takes it */
	bool before;               /* fullDocumentBeforeChange on updates */
	bool standby;              /* with consumer: wait while the name is held */
};

Hub *hub_new(struct ev_loop *loop, const struct conf_values *cv);
void hub_free(Hub *h);
/* Where catch-up pages and positions come from; NULL: none (not ready,
 * or shutting down).  src must outlive its use. */
void hub_set_source(Hub *h, const struct source *src);

/* The live stream: start position once known, then events and head moves. */
void hub_set_head(Hub *h, const struct token *head);
void hub_publish(Hub *h, struct event *ev);        /* takes a reference */
/* The source's live position is gone from its history (pruned by another
 * relay's retention): every subscription ends with ChangeStreamHistoryLost
 * (msg) at the position it reached, the ring is emptied, and new watches are
 * refused as not ready until hub_set_head gives the new head.  Returns
 * how many subscriptions ended. */
size_t hub_lose_head(Hub *h, const char *msg);

/* Subscription calls, from clients through their upcalls.  Each returns 0 or a negative errno with
 * an error frame already sent to the client. */
int hub_watch(Hub *h, struct client *c, const struct watch_req *req);
int hub_ack(Hub *h, struct client *c, long long sid, const struct token *tok);
int hub_unwatch(Hub *h, struct client *c, long long sid);
void hub_client_gone(Hub *h, struct client *c);
void hub_client_writable(Hub *h, struct client *c);
/* The "count" request (hubcount.c): how many changes of table lie after
 * pos, asked of the source; the answer, {"op":"count","id":..,"count":N}
 * (no "id" when id < 0), or a connection-level error frame goes to c
 * later, or to nobody once c has gone. */
void hub_count(Hub *h, struct client *c, long long id, enum event_table table, const struct token *pos);
/* Subscriptions of c, whatever their state (max_subscriptions_per_client). */
size_t hub_client_subscriptions(const Hub *h, const struct client *c);
/* An error frame to every subscription of c, each with the position the
 * client really received (client_delivered), before c is dropped. */
void hub_client_error(Hub *h, struct client *c, int code, const char *msg);

/* Shutdown: a final bookmark to every subscription and a last write of
 * durable positions; done() runs when the writes finished or failed. */
void hub_shutdown(Hub *h, void (*done)(void *arg), void *arg);

size_t hub_subscription_count(const Hub *h);

/* One subscription as /metrics and the admin socket see it. */
struct hub_sub_info {
	const char *consumer;       /* durable name, or NULL */
	uint64_t client;            /* client id */
	long long sid;
	enum event_table table;
	bool active;                /* false while its start position is loaded */
	struct token acked;         /* durable: acknowledged; else passed */
	size_t lag_events;          /* events of its table in the ring after what it finished */
	bool lag_exact;             /* false when that is behind the ring (a lower bound) */
	double lag_seconds;         /* age of the oldest of those events; 0 when none */
	double ack_age;             /* seconds since acked last moved (durable only) */
	size_t buffered;            /* bytes queued to its connection */
	const struct client *conn;  /* its connection (client_peer) */
	const struct filter *filter;/* its pipeline or NULL (filter_pipeline) */
	bool before;                /* fullDocumentBeforeChange */
};
void hub_foreach(const Hub *h, void (*fn)(void *arg, const struct hub_sub_info *si), void *arg);
/* true while consumer has a subscription, or a detached one still writes its
 * position (admin reset must wait for both). */
bool hub_consumer_busy(const Hub *h, const char *consumer);
size_t hub_ring_count(const Hub *h);
/* Re-arms the flush timer after a reload changed ack_flush_ms. */
void hub_reconfigure(Hub *h);

/* Standbys are not listed by hub_foreach and hub_consumers: one entry per
 * consumer, its holder's.  Up to max names of the durable consumers subscribed right now (pointers
 * valid until the next loop iteration); returns how many were written. */
size_t hub_consumers(const Hub *h, const char **names, size_t max);

#endif
