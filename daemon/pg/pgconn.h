/*
 * pgconn.h - one non-blocking libpq connection driven by the libev loop:
 * connect state machine (TLS included), a FIFO of queries with one in flight,
 * notifications, and reconnection with jittered exponential backoff.  The
 * relay (relay.c) owns its connections; nothing else talks to libpq.
 */
#ifndef NVSRELAY_PGCONN_H
#define NVSRELAY_PGCONN_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>
#include <libpq-fe.h>

typedef struct pgconn PgConn;

/* Called once per query.  res is the first error result of the query or else
 * its last result; NULL when the connection was lost before it completed.
 * The result is cleared by pgconn after the callback returns. */
typedef void (*pgconn_cb)(PgConn *pc, PGresult *res, void *arg);

struct pgconn_ops {
	void (*up)(PgConn *pc, void *ud);                     /* connected and session set up */
	void (*down)(PgConn *pc, void *ud, const char *why);  /* lost; reconnect is scheduled */
	void (*notify)(PgConn *pc, void *ud, const PGnotify *n);
};

struct pgconn_cfg {
	const char *const *keys;   /* PQconnectStartParams keywords, NULL-terminated */
	const char *const *vals;
	const char *session_sql;   /* run right after connecting, before up() */
	int backoff_min_ms;
	int backoff_max_ms;
	int connect_timeout_s;
};

/* name tags log lines ("main", "ticker", "listen").  cfg arrays must outlive
 * the connection.  Returns NULL when out of memory. */
PgConn *pgconn_new(struct ev_loop *loop, const char *name, const struct pgconn_cfg *cfg,
		   const struct pgconn_ops *ops, void *ud);
void pgconn_free(PgConn *pc);

/* Starts connecting (and keeps reconnecting after any loss until freed). */
void pgconn_start(PgConn *pc);

/* Queues a query.  With params == NULL and nparams == 0 the text may hold
 * several statements (simple protocol).  Text and params are copied.
 * Returns 0, or -ENOTCONN when the connection is not up. */
int pgconn_query(PgConn *pc, const char *sql, int nparams, const char *const *params,
		 pgconn_cb cb, void *arg);
/* The same, naming the kind of query for the latency histogram and error
 * counter of /metrics (a static string: "batch", "tick", ...); plain
 * pgconn_query counts as "other". */
int pgconn_query_kind(PgConn *pc, const char *kind, const char *sql, int nparams,
		      const char *const *params, pgconn_cb cb, void *arg);
/* The same for a hot statement: one statement (no ';' list), prepared on
 * the connection at its first use and executed by name after that, until
 * the connection is lost.  (kind, sql) is the key, so one text used under
 * two kinds gets two prepared statements, each with its own plan cache.
 * Beyond a small number of distinct statements it runs unprepared. */
int pgconn_query_prep(PgConn *pc, const char *kind, const char *sql, int nparams,
		      const char *const *params, pgconn_cb cb, void *arg);

/* Drops the connection (failing queued queries) and reconnects after backoff. */
void pgconn_reset(PgConn *pc, const char *why);

bool pgconn_is_up(const PgConn *pc);
bool pgconn_is_idle(const PgConn *pc);   /* up, nothing queued or in flight */
const char *pgconn_name(const PgConn *pc);
bool pgconn_is_busy(const PgConn *pc);   /* a query in flight */

/* Every connection of the process: how many, how many up, how many with a
 * query in flight (pool utilisation for /metrics). */
void pgconn_pool_stats(unsigned *total, unsigned *up, unsigned *busy);

/* Grows with every connect attempt, lost connection and finished query:
 * the watchdog pings only while it moves. */
uint64_t pgconn_activity(void);

#endif
