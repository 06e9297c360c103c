/*
 * replica.h - the connection to a hot standby (datastore_replica_host) that
 * relay.c reads batch and catch-up pages from, to take read load off the
 * primary.  Ticks, positions, schema and retention stay on the primary.
 * relay.c owns it; a page is taken from the standby only when the standby
 * shows the batch's end tick (relay.c checks the page's header), so a
 * lagging or restarting standby never changes what is delivered.
 */
#ifndef NVSRELAY_REPLICA_H
#define NVSRELAY_REPLICA_H

#include <ev.h>

#include "conf.h"
#include "pgconn.h"

typedef struct replica Replica;

/* NULL when no replica is configured or out of memory (*oom tells). */
Replica *replica_new(struct ev_loop *loop, const Conf *conf, const struct pgconn_cfg *base, bool *oom);
void replica_free(Replica *rp);
void replica_start(Replica *rp);
/* The connection when it is up, else NULL (read from the primary). */
PgConn *replica_conn(Replica *rp);

#endif
