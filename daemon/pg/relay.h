/*
 * relay.h - the PostgreSQL side: connections, schema, the live batch reader
 * over snapshot ticks, catch-up pages for subscribers behind the ring, and
 * durable positions in resume_tokens (position.c).  main.c creates it and
 * hands its source ops (source.h) to the hub; the relay publishes into the
 * hub, the hub never calls the relay by name.
 */
#ifndef NVSRELAY_RELAY_H
#define NVSRELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "source.h"
#include "token.h"

typedef struct relay Relay;
struct hub;
struct pgconn;


Relay *relay_new(struct ev_loop *loop, const Conf *conf, struct hub *hub,
		 void (*ready)(void *ud), void (*fatal)(void *ud, const char *why), void *ud);
void relay_free(Relay *r);
void relay_start(Relay *r);

uint32_t relay_generation(const Relay *r);

/* The catch-up pages and positions the hub reads (main.c hands it over
 * with hub_set_source); valid until relay_free. */
const struct source *relay_source(Relay *r);

/* For /readyz, /metrics and the admin socket (ops.c, admin.c). */
struct relay_status {
	bool ready;                 /* schema verified, live head known */
	bool main_up;               /* the main connection is up */
	bool leader;                /* this relay writes the ticks */
	uint32_t generation;
	struct token head;          /* everything up to here was read */
	double head_age;            /* seconds since the head last moved; -1 before ready */
};
/* r may be NULL (a chained relay): all zero, not ready. */
void relay_get_status(const Relay *r, struct relay_status *st);
/* The main connection (NULL when r is), for the statistics sampler and admin commands: their
 * queries queue behind the batch reads, in order. */
struct pgconn *relay_main_conn(Relay *r);
/* Re-arms timers after a reload changed poll_interval_ms. */
void relay_reconfigure(Relay *r);

#endif
