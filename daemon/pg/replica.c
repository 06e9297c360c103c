/*
 * replica.c - the hot standby's connection (replica.h).  Its libpq
 * parameters are the primary's with host and port replaced (TLS, user,
 * database and keepalives as configured), without the multi-host keys:
 * this is one server, read-only by nature.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "replica.h"

struct replica {
	PgConn *pc;
	const char **keys, **vals;
};

static void up(PgConn *pc, void *ud)
{
	(void)pc;
	(void)ud;
	log_notice("hot standby connected: batch and catch-up pages are read there once it has replayed their tick");
}

static void down(PgConn *pc, void *ud, const char *why)
{
	(void)pc;
	(void)ud;
	log_warning("hot standby connection lost, pages are read from the primary reason='%s'", why);
}

Replica *replica_new(struct ev_loop *loop, const Conf *conf, const struct pgconn_cfg *base, bool *oom)
{
	static const struct pgconn_ops ops = { .up = up, .down = down };
	const struct conf_values *cv = conf_values(conf);
	struct pgconn_cfg cfg = *base;
	Replica *rp;
	size_t n = 0, j = 0;

	*oom = false;
	if (!*cv->datastore_replica_host)
		return NULL;
	while (base->keys[n])
		n++;
	rp = calloc(1, sizeof(*rp));
	if (!rp || !(rp->keys = calloc(n + 2, sizeof(char *))) || !(rp->vals = calloc(n + 2, sizeof(char *))))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const char *k = base->keys[i];
		if (strcmp(k, "hostaddr") == 0 || strcmp(k, "target_session_attrs") == 0)
			continue;
		rp->keys[j] = k;
		rp->vals[j] = strcmp(k, "host") == 0 ? cv->datastore_replica_host
			    : strcmp(k, "port") == 0 && *cv->datastore_replica_port ? cv->datastore_replica_port
			    : base->vals[i];
		j++;
	}
	cfg.keys = rp->keys;
	cfg.vals = rp->vals;
	if (!(rp->pc = pgconn_new(loop, "replica", &cfg, &ops, rp)))
		goto fail;
	return rp;
fail:
	replica_free(rp);
	*oom = true;
	return NULL;
}

void replica_free(Replica *rp)
{
	if (!rp)
		return;
	pgconn_free(rp->pc);
	free(rp->keys);
	free(rp->vals);
	free(rp);
}

void replica_start(Replica *rp)
{
	if (rp)
		pgconn_start(rp->pc);
}

PgConn *replica_conn(Replica *rp)
{
	return rp && pgconn_is_up(rp->pc) ? rp->pc : NULL;
}
