/*
 * retention.h - keeps the changelog and the tick table bounded.  Every relay
 * marks its connected durable consumers as alive; the ticking relay deletes
 * what every live consumer has acknowledged, capped by age and size.  Runs
 * on a connection of its own so long deletes never delay delivery.  relay.c
 * creates it once the schema is in place.
 */
#ifndef NVSRELAY_RETENTION_H
#define NVSRELAY_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "pgconn.h"

typedef struct retention Retention;

struct retention_ops {
	bool (*is_leader)(void *ud);
	/* Fills names with up to max connected durable consumer names. */
	size_t (*consumers)(void *ud, const char **names, size_t max);
	/* The tick this relay's own reader stands in (0: none yet).  Never
	 * pruned past, whatever the caps say: what it has not read yet no
	 * subscriber has. */
	uint64_t (*reader_tick)(void *ud);
};

Retention *retention_new(struct ev_loop *loop, const struct conf_values *cv, const struct pgconn_cfg *pcfg,
			 const struct retention_ops *ops, void *ud);
void retention_start(Retention *rt);
void retention_free(Retention *rt);

#endif
