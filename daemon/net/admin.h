/*
 * admin.h - the admin socket: JSON lines from `nvsrelay status`,
 * `consumers`, `reset` and `reload` (cli/ctl.c).  A Unix socket of mode
 * 0600 that lets in root and the daemon's own user only (SO_PEERCRED).
 * ops.c creates it; main.c supplies the reload.
 *
 * Requests:  {"cmd":"status"} | {"cmd":"consumers"} | {"cmd":"reload"}
 *            {"cmd":"reset","consumer":"NAME","to":"head"|"<40 hex token>"}
 * Answers:   {"ok":true,...} or {"ok":false,"error":"..."}, one line each,
 *            in request order.
 */
#ifndef NVSRELAY_ADMIN_H
#define NVSRELAY_ADMIN_H

#include <stddef.h>
#include <ev.h>

#include "conf.h"
#include "hub.h"
#include "relay.h"

typedef struct admin Admin;

/* What a configuration reload did (main.c fills it in). */
struct admin_reload {
	int status;                 /* 0, or negative: the running config was kept */
	char error[512];
	char applied[512];          /* keys taken over, comma-separated */
	char restart[512];          /* keys that changed but need a restart */
};

/* A chained relay's upstream, for status. */
struct admin_upstream {
	const char *addr;           /* in use or being tried; NULL: not chained */
	unsigned long long reconnects;
};

struct admin_env {
	struct ev_loop *loop;
	Hub *hub;
	Relay *relay;
	const struct conf_values *cv;
	double start_time;          /* ev_time() at start */
	void (*reload)(struct admin_reload *res);
	/* "ready", "degraded" or "not ready", and why when not ready (ops.c). */
	const char *(*health)(void *arg, const char **why);
	/* The source's state: the relay's, or for a chained relay its upstream
	 * connection's, with the upstream's address (NULL when not chained). */
	void (*source)(void *arg, struct relay_status *st, struct admin_upstream *up);
	void *health_arg;
};

Admin *admin_new(const struct admin_env *env, const char *path, char *err, size_t errlen);
/* Safe with commands in flight: their answers are dropped. */
void admin_free(Admin *a);

#endif
