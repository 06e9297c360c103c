/*
 * relay.h - the PostgreSQL side: connections, schema, the live batch reader
 * over snapshot ticks, catch-up pages for subscribers behind the ring, and
 * durable positions in resume_tokens.  main.c creates it; hub.c calls the
 * read and position functions.
 */
#ifndef NVSRELAY_RELAY_H
#define NVSRELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "event.h"
#include "token.h"

typedef struct relay Relay;
struct hub;
struct pgconn;


/* Called with the events of one page (references owned by the callee), the
 * position after them, or an error (code != 0, events empty). */
typedef void (*relay_page_cb)(void *arg, struct event **evs, size_t n, const struct token *next,
			      int code, const char *msg);
/* status 0: found (*pos set); -ENOENT: no stored position; other: error. */
typedef void (*relay_pos_cb)(void *arg, int status, const struct token *pos, const char *msg);
typedef void (*relay_done_cb)(void *arg, int status);

Relay *relay_new(struct ev_loop *loop, const Conf *conf, struct hub *hub,
		 void (*ready)(void *ud), void (*fatal)(void *ud, const char *why), void *ud);
void relay_free(Relay *r);
void relay_start(Relay *r);

bool relay_is_ready(const Relay *r);
uint32_t relay_generation(const Relay *r);

/* Reads the next page after pos; table limits rows to one table (the
 * position still advances over the others). */
int relay_read_page(Relay *r, const struct token *pos, enum event_table table,
		    relay_page_cb cb, void *arg);
int relay_load_position(Relay *r, const char *consumer, relay_pos_cb cb, void *arg);
/* The position after changelog row event_id (NVSentinel's {"timestamp",
 * "eventID"} tokens), or of the last tick written at or before an RFC 3339
 * time (startAtOperationTime).  -ESTALE: older than the retained history. */
int relay_position_of_event(Relay *r, uint64_t event_id, relay_pos_cb cb, void *arg);
int relay_position_at_time(Relay *r, const char *rfc3339, relay_pos_cb cb, void *arg);
int relay_save_position(Relay *r, const char *consumer, const struct token *pos,
			relay_done_cb cb, void *arg);

/* For /readyz, /metrics and the admin socket (ops.c, admin.c). */
struct relay_status {
	bool ready;                 /* schema verified, live head known */
	bool main_up;               /* the main connection is up */
	bool leader;                /* this relay writes the ticks */
	uint32_t generation;
	struct token head;          /* everything up to here was read */
	double head_age;            /* seconds since the head last moved; -1 before ready */
};
void relay_get_status(const Relay *r, struct relay_status *st);
/* The main connection, for the statistics sampler and admin commands: their
 * queries queue behind the batch reads, in order. */
struct pgconn *relay_main_conn(Relay *r);
/* Re-arms timers after a reload changed poll_interval_ms. */
void relay_reconfigure(Relay *r);

#endif
