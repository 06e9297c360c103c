/*
 * downlink.h - the upstream side of chaining: answers the position and
 * store requests of relays chained below this one (proto/PROTOCOL.md,
 * "Chained relays") from whatever source this relay's hub reads, so a
 * node's durable positions end up in PostgreSQL's resume_tokens however
 * deep the tree.  main.c creates it and routes the clients' position upcall
 * and their departure here.
 */
#ifndef NVSRELAY_DOWNLINK_H
#define NVSRELAY_DOWNLINK_H

#include "hub.h"
#include "source.h"

typedef struct downlink Downlink;
struct client;
struct request;

Downlink *downlink_new(Hub *hub);
void downlink_free(Downlink *d);
/* The source asked; NULL: requests are refused as not ready. */
void downlink_set_source(Downlink *d, const struct source *src);
/* A REQUEST_POSITION or REQUEST_STORE from c; the answer comes later. */
void downlink_request(Downlink *d, struct client *c, const struct request *req);
/* c is closing: answers still pending for it are dropped. */
void downlink_client_gone(Downlink *d, struct client *c);

#endif
