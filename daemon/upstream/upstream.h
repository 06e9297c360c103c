/*
 * upstream.h - the chained source: with `upstream` configured this relay
 * opens no PostgreSQL connection and takes its events from an upstream
 * nvsrelayd over the protocol (one live subscription for every table,
 * whatever the number of local subscribers), publishes them into the local
 * hub with the upstream's positions, so local subscribers get the same
 * bytes and the same tokens, and implements the hub's source ops
 * (source.h) through the upstream: catch-up pages (cursor.c), durable
 * positions under "<node_name>/<consumer>", eventID and time lookups.
 * main.c creates it instead of the PostgreSQL relay.
 */
#ifndef NVSRELAY_UPSTREAM_H
#define NVSRELAY_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "hub.h"
#include "source.h"
#include "token.h"

typedef struct upstream Upstream;

/* NULL with err on a configuration error (TLS files, token file, the
 * address list) or when out of memory. */
Upstream *upstream_new(struct ev_loop *loop, const struct conf_values *cv, Hub *hub,
		       void (*ready)(void *ud), void *ud, char *err, size_t errlen);
void upstream_free(Upstream *u);
void upstream_start(Upstream *u);
const struct source *upstream_source(Upstream *u);
uint32_t upstream_generation(const Upstream *u);

struct upstream_status {
	bool ready;                /* the first position is known */
	bool up;                   /* the live subscription is running */
	struct token head;
	double head_age;           /* seconds since a frame moved the head; -1 before ready */
	const char *addr;          /* the upstream in use or being tried */
	uint64_t reconnects;
};
void upstream_get_status(const Upstream *u, struct upstream_status *st);

#endif
