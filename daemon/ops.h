/*
 * ops.h - the daemon's operations side: the HTTP endpoints (/metrics,
 * /livez, /readyz), the admin socket, PostgreSQL statistics sampling,
 * systemd STATUS= summaries and watchdog pings.  main.c creates it once the
 * hub and the relay exist and tells it about reloads.
 */
#ifndef NVSRELAY_OPS_H
#define NVSRELAY_OPS_H

#include <stdbool.h>
#include <ev.h>

#include "admin.h"
#include "conf.h"
#include "hub.h"
#include "relay.h"
#include "upstream.h"

typedef struct ops Ops;

struct ops_env {
	struct ev_loop *loop;
	const struct conf_values *cv;
	Hub *hub;
	Relay *relay;              /* NULL when chained */
	Upstream *upstream;        /* set when chained (then no relay) */
	void (*reload)(struct admin_reload *res);
};

/* Starts whatever the configuration enables.  An endpoint that cannot be
 * opened is logged and left out: the relay itself runs on.  NULL only when
 * out of memory. */
/* NULL with err set: out of memory, or another process serves the admin
 * socket. */
Ops *ops_new(const struct ops_env *env, char *err, size_t errlen);
void ops_free(Ops *o);

/* Runtime keys changed (reload). */
void ops_reconfigure(Ops *o);

/* Ready for /readyz: schema verified, main connection up, and the live head
 * moved recently (ticks are written at least every tick_idle_ms).  why gets
 * the reason when not. */
bool ops_is_ready(const Ops *o, const char **why);
/* "ready", "degraded" (ready, but see why) or "not ready" (see why). */
const char *ops_health(Ops *o, const char **why);

#endif
