/*
 * pgconn.c - a libpq connection as a libev-driven state machine.
 *
 * Connecting follows PQconnectPoll, re-reading PQsocket on every step because
 * libpq may switch sockets (multi-host lists, SSL fallbacks).  Queries are
 * queued and sent one at a time; results are collected until PQgetResult
 * returns NULL, then handed to the caller's callback.  Watchers stay
 * level-triggered because OpenSSL may hold decrypted bytes that epoll cannot
 * see; we keep calling PQconsumeInput until libpq is no longer busy.
 *
 * Any failure (connect, I/O, a fatal connection error) funnels into
 * conn_lost(): every pending callback gets NULL, the owner's down() runs,
 * and a reconnect timer fires after a jittered exponential backoff.
 *
 * Hot statements (pgconn_query_prep) are prepared once per connection: a
 * small table maps (kind, text) to a server-side name; the first use on a
 * connection sends Parse, every use after it only Bind/Execute, so
 * PostgreSQL parses once and, once its plan cache settles on a generic
 * plan, stops planning.  The table's "prepared" flags die with the
 * connection (conn_lost), since a new session knows none of the names.
 *
 * A generic plan is made once, from the statistics of that moment, and
 * kept until something invalidates it (DDL, an ANALYZE).  A changelog that
 * was empty or freshly truncated when the relay started looks like ten
 * pages to the planner, so the batch read got sequential scans that stayed
 * while the table grew (20 ms per read at 10k rows: the relay fell
 * behind).  So a statement is prepared afresh, under a new name, after
 * 1 s, 2 s, 4 s ... of use, then every PREP_AGE_MAX: each plan was made
 * with at least half of the table the statement now reads, and the cost is
 * a Deallocate and a Parse per statement a minute.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pgconn.h"

enum state { ST_IDLE, ST_CONNECTING, ST_SESSION, ST_UP, ST_WAIT };

/* Distinct prepared statements per connection; more are sent unprepared. */
#define PREP_MAX 16
/* Plan age (seconds) at which a statement is prepared again: doubling
 * from the first to the last. */
#define PREP_AGE_MIN 1.0
#define PREP_AGE_MAX 64.0

struct prep {
	const char *kind;        /* static string, part of the key */
	char *sql;               /* NULL: free slot */
	bool ready;              /* prepared on the current session as nvs_<slot>_<gen> */
	unsigned gen;
	ev_tstamp prepared_at;
	double age;              /* prepare again once this old */
};

/* What a prepared query sends next: its Execute, or first the old name's
 * Deallocate and the Parse of the new one. */
enum stage { STAGE_DECIDE, STAGE_CLOSE, STAGE_PARSE, STAGE_EXEC };

struct query {
	struct query *next;
	char *sql;
	int nparams;
	char **params;
	pgconn_cb cb;
	void *arg;
	const char *kind;        /* metrics label */
	ev_tstamp sent;
	int prep;                /* slot + 1 in pc->prep, 0: unprepared */
	enum stage stage;
};

struct pgconn {
	struct ev_loop *loop;
	const char *name;
	struct pgconn_cfg cfg;
	struct pgconn_ops ops;
	void *ud;
	PGconn *conn;
	enum state state;
	ev_io io;
	int io_fd;
	int io_events;
	ev_timer timer;          /* connect timeout or reconnect backoff */
	int backoff_ms;
	struct query *head, *tail;
	bool in_flight;
	PGresult *keep;          /* result handed to the callback */
	bool enqueuing;          /* inside pgconn_query*: no callback may run */
	bool lost_pending;       /* the connection failed while enqueuing ... */
	char lost_why[512];      /* ... for this reason, reported from lost */
	ev_timer lost;
	struct prep prep[PREP_MAX];
	struct pgconn *next_conn, *prev_conn;  /* every connection, for pool metrics */
};

static PgConn *conns;
/* Connect attempts and finished queries: the watchdog's sign of life. */
static uint64_t activity;

static void conn_lost(PgConn *pc, const char *why);
static void send_next(PgConn *pc);

static void query_free(struct query *q)
{
	int i;

	if (!q)
		return;
	for (i = 0; i < q->nparams; i++)
		free(q->params[i]);
	free(q->params);
	free(q->sql);
	free(q);
}

static void watch(PgConn *pc, int events)
{
	int fd = PQsocket(pc->conn);

	/* While connecting, libpq may close its socket and open the next one
	 * (next host of the list, SSL fallback) under the same descriptor
	 * number; epoll dropped the old one, so the same number is no proof of
	 * the same socket.  ev_io_set marks the fd for re-registration. */
	if (pc->state != ST_CONNECTING && fd == pc->io_fd && events == pc->io_events &&
	    ev_is_active(&pc->io))
		return;
	ev_io_stop(pc->loop, &pc->io);
	pc->io_fd = fd;
	pc->io_events = events;
	if (fd >= 0 && events) {
		ev_io_set(&pc->io, fd, events);
		ev_io_start(pc->loop, &pc->io);
	}
}

static void flush_or_watch(PgConn *pc)
{
	int r = PQflush(pc->conn);

	if (r < 0) {
		conn_lost(pc, PQerrorMessage(pc->conn));
		return;
	}
	/* Watching for write only while libpq has unsent data avoids spinning. */
	watch(pc, EV_READ | (r == 1 ? EV_WRITE : 0));
}

static char *trim_msg(const char *m)
{
	static char buf[512];
	size_t n;

	snprintf(buf, sizeof(buf), "%s", m ? m : "");
	for (n = strlen(buf); n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '); n--)
		buf[n - 1] = '\0';
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return buf;
}

static void schedule_reconnect(PgConn *pc)
{
	double delay;
	int base = pc->backoff_ms ? pc->backoff_ms : pc->cfg.backoff_min_ms;

	/* Full jitter in [base/2, base]: relays restarted together spread out. */
	delay = (base / 2 + (double)(random() % (base / 2 + 1))) / 1000.0;
	pc->backoff_ms = base * 2 > pc->cfg.backoff_max_ms ? pc->cfg.backoff_max_ms : base * 2;
	pc->state = ST_WAIT;
	ev_timer_stop(pc->loop, &pc->timer);
	ev_timer_set(&pc->timer, delay, 0.);
	ev_timer_start(pc->loop, &pc->timer);
}

static void fail_queries(PgConn *pc)
{
	struct query *q;

	while ((q = pc->head)) {
		pc->head = q->next;
		if (!pc->head)
			pc->tail = NULL;
		pc->in_flight = false;
		metrics_add(M_PG_QUERY_ERRORS, q->kind, 1);
		if (q->cb)
			q->cb(pc, NULL, q->arg);
		query_free(q);
	}
}

/*
 * A refusal that retrying will not cure: wrong password, unknown role or
 * database, no pg_hba.conf entry, a certificate the server does not take.
 * libpq gives no SQLSTATE for a failed connection, so its (English) server
 * messages are matched.  Retrying goes on anyway, since PostgreSQL may be
 * mid-provisioning (the role or database about to be created), but at error
 * level and saying that someone has to act.
 */
static const char *needs_operator(const char *msg)
{
	if (strstr(msg, "password authentication failed"))
		return "wrong password or user";
	if (strstr(msg, "database \"") && strstr(msg, "\" does not exist"))
		return "the database does not exist";
	if (strstr(msg, "role \"") && strstr(msg, "\" does not exist"))
		return "the role does not exist";
	if (strstr(msg, "no pg_hba.conf entry"))
		return "pg_hba.conf has no entry for this host, user and database";
	if (strstr(msg, "certificate authentication failed") || strstr(msg, "authentication failed for user"))
		return "the server refused the credentials";
	if (strstr(msg, "permission denied for database"))
		return "the role may not connect to the database";
	return NULL;
}

static void conn_lost(PgConn *pc, const char *why)
{
	const char *fatal;
	char reason[512];
	bool was_up = pc->state == ST_UP || pc->state == ST_SESSION;

	if (pc->enqueuing) {
		/* A send failed inside pgconn_query*: its caller marks the query
		 * in flight once that returns 0, so the failure (and every
		 * queued callback) comes from the loop, never from the call. */
		if (!pc->lost_pending) {
			snprintf(pc->lost_why, sizeof(pc->lost_why), "%s", why);
			pc->lost_pending = true;
			ev_io_stop(pc->loop, &pc->io);
			ev_timer_start(pc->loop, &pc->lost);
		}
		return;
	}
	pc->lost_pending = false;
	ev_timer_stop(pc->loop, &pc->lost);
	snprintf(reason, sizeof(reason), "%s", trim_msg(why));
	ev_io_stop(pc->loop, &pc->io);
	ev_timer_stop(pc->loop, &pc->timer);
	pc->io_fd = -1;
	if (pc->conn) {
		PQfinish(pc->conn);
		pc->conn = NULL;
	}
	/* The next session has none of this one's prepared statements. */
	for (int i = 0; i < PREP_MAX; i++) {
		pc->prep[i].ready = false;
		pc->prep[i].age = PREP_AGE_MIN;
	}
	/* A result collected from the dead connection (its FATAL) must not be
	 * taken for the first answer on the next one. */
	PQclear(pc->keep);
	pc->keep = NULL;
	activity++;
	metrics_set(M_PG_UP, pc->name, 0);
	if ((fatal = needs_operator(reason)))
		log_err("postgresql connect failed conn=%s reason='%s' cause='%s: retrying will not fix this, "
			"the configuration or the server must change (retrying anyway, in case PostgreSQL is still "
			"being provisioned)'", pc->name, reason, fatal);
	else if (was_up)
		log_warning("postgresql connection lost conn=%s reason='%s'", pc->name, reason);
	else
		log_warning("postgresql connect failed conn=%s reason='%s'", pc->name, reason);
	schedule_reconnect(pc);
	fail_queries(pc);
	if (pc->ops.down)
		pc->ops.down(pc, pc->ud, reason);
}

static void lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	PgConn *pc = w->data;

	(void)loop;
	(void)revents;
	conn_lost(pc, pc->lost_why);
}

static void session_done(PgConn *pc, PGresult *res, void *arg)
{
	(void)arg;
	if (!res)
		return;
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_err("session setup failed conn=%s error='%s'", pc->name,
			trim_msg(PQresultErrorMessage(res)));
		/* Never up, never retried would leave this connection dead. */
		conn_lost(pc, "session setup failed");
		return;
	}
	pc->state = ST_UP;
	pc->backoff_ms = 0;
	metrics_set(M_PG_UP, pc->name, 1);
	if (pc->ops.up)
		pc->ops.up(pc, pc->ud);
}

static void connected(PgConn *pc)
{
	ev_timer_stop(pc->loop, &pc->timer);
	if (PQsetnonblocking(pc->conn, 1) != 0) {
		conn_lost(pc, PQerrorMessage(pc->conn));
		return;
	}
	log_info("postgresql connected conn=%s host=%s port=%s tls=%s", pc->name,
		 PQhost(pc->conn), PQport(pc->conn),
		 PQsslInUse(pc->conn) ? PQsslAttribute(pc->conn, "protocol") : "off");
	pc->state = ST_SESSION;
	watch(pc, EV_READ);
	/* The session query is queued ahead of anything the owner sends. */
	struct query *q = calloc(1, sizeof(*q));
	if (!q || !(q->sql = strdup(pc->cfg.session_sql ? pc->cfg.session_sql : "SELECT 1"))) {
		free(q);
		conn_lost(pc, "out of memory");
		return;
	}
	q->cb = session_done;
	q->kind = "session";
	q->next = pc->head;
	pc->head = q;
	if (!pc->tail)
		pc->tail = q;
	send_next(pc);
}

static void connect_step(PgConn *pc)
{
	switch (PQconnectPoll(pc->conn)) {
	case PGRES_POLLING_READING:
		watch(pc, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		watch(pc, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		connected(pc);
		break;
	default:
		conn_lost(pc, PQerrorMessage(pc->conn));
	}
}

/* Server notices (the idempotent migrations' "already exists, skipping")
 * go to the log at debug level; libpq's default processor would print them
 * raw on stderr, outside the log format.  PQsetNoticeProcessor ignores a
 * NULL processor, so silencing needs a real one. */
static void notice_cb(void *arg, const char *msg)
{
	PgConn *pc = arg;

	log_debug("postgresql notice conn=%s message='%s'", pc->name, trim_msg(msg));
}

static void begin_connect(PgConn *pc)
{
	activity++;
	pc->conn = PQconnectStartParams(pc->cfg.keys, pc->cfg.vals, 0);
	if (!pc->conn) {
		conn_lost(pc, "out of memory");
		return;
	}
	if (PQstatus(pc->conn) == CONNECTION_BAD) {
		conn_lost(pc, PQerrorMessage(pc->conn));
		return;
	}
	PQsetNoticeProcessor(pc->conn, notice_cb, pc);
	pc->state = ST_CONNECTING;
	ev_timer_stop(pc->loop, &pc->timer);
	ev_timer_set(&pc->timer, pc->cfg.connect_timeout_s, 0.);
	ev_timer_start(pc->loop, &pc->timer);
	/* libpq's first wait is for writability. */
	pc->io_fd = -1;
	watch(pc, EV_WRITE);
}

static void deliver_notifies(PgConn *pc)
{
	PGnotify *n;

	while (pc->conn && (n = PQnotifies(pc->conn))) {
		if (pc->ops.notify)
			pc->ops.notify(pc, pc->ud, n);
		PQfreemem(n);
	}
}

static bool is_error(const PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE;
}

/* invalid_sql_statement_name: the named statement does not exist. */
static bool prep_lost(const PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	return state && strcmp(state, "26000") == 0;
}

static void read_results(PgConn *pc)
{
	for (;;) {
		PGresult *r;
		struct query *q;

		if (!pc->in_flight || PQisBusy(pc->conn))
			return;
		r = PQgetResult(pc->conn);
		if (r) {
			/* Keep the first error, else the last result. */
			if (pc->keep && is_error(pc->keep)) {
				PQclear(r);
			} else {
				PQclear(pc->keep);
				pc->keep = r;
			}
			continue;
		}
		q = pc->head;
		pc->in_flight = false;
		r = pc->keep;
		pc->keep = NULL;
		if (q->stage == STAGE_CLOSE || (q->stage == STAGE_PARSE && r && !is_error(r))) {
			/* A step before the query, which stays at the head.  A
			 * failed Deallocate changes nothing: the new name is new. */
			struct prep *p = &pc->prep[q->prep - 1];

			if (q->stage == STAGE_PARSE) {
				p->ready = true;
				p->prepared_at = ev_now(pc->loop);
			}
			q->stage = q->stage == STAGE_CLOSE ? STAGE_PARSE : STAGE_EXEC;
			PQclear(r);
			send_next(pc);
			continue;
		}
		/* A failed Parse is the query's failure; a statement missing
		 * at Execute (deallocated behind our back) is prepared again
		 * next time. */
		if (q->stage == STAGE_EXEC && r && is_error(r) && prep_lost(r))
			pc->prep[q->prep - 1].ready = false;
		pc->head = q->next;
		if (!pc->head)
			pc->tail = NULL;
		activity++;
		metrics_add(M_PG_QUERY_SECONDS, q->kind, ev_time() - q->sent);
		if (!r || is_error(r))
			metrics_add(M_PG_QUERY_ERRORS, q->kind, 1);
		if (q->cb)
			q->cb(pc, r, q->arg);
		PQclear(r);
		query_free(q);
		if (!pc->conn || PQstatus(pc->conn) == CONNECTION_BAD) {
			if (pc->conn)
				conn_lost(pc, PQerrorMessage(pc->conn));
			return;
		}
		send_next(pc);
	}
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	PgConn *pc = w->data;

	(void)loop;
	if (pc->state == ST_CONNECTING) {
		connect_step(pc);
		return;
	}
	if (revents & EV_WRITE) {
		flush_or_watch(pc);
		if (!pc->conn)
			return;
	}
	if (revents & EV_READ) {
		if (!PQconsumeInput(pc->conn)) {
			conn_lost(pc, PQerrorMessage(pc->conn));
			return;
		}
		read_results(pc);
		if (!pc->conn)
			return;
		deliver_notifies(pc);
		if (pc->conn && PQstatus(pc->conn) == CONNECTION_BAD)
			conn_lost(pc, PQerrorMessage(pc->conn));
	}
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	PgConn *pc = w->data;

	(void)loop;
	(void)revents;
	if (pc->state == ST_CONNECTING)
		conn_lost(pc, "connect timeout");
	else if (pc->state == ST_WAIT) {
		metrics_add(M_PG_RECONNECTS, pc->name, 1);
		begin_connect(pc);
	}
}

static void send_next(PgConn *pc)
{
	struct query *q = pc->head;
	int ok;

	if (!q || pc->in_flight || !pc->conn || pc->lost_pending)
		return;
	if (q->prep) {
		struct prep *p = &pc->prep[q->prep - 1];
		char name[48];

		if (q->stage == STAGE_DECIDE) {
			if (!p->ready)
				q->stage = STAGE_PARSE;
			else if (ev_now(pc->loop) - p->prepared_at >= p->age)
				q->stage = STAGE_CLOSE;
			else
				q->stage = STAGE_EXEC;
		}
		if (q->stage == STAGE_CLOSE) {
			p->ready = false;
			p->age = p->age * 2 > PREP_AGE_MAX ? PREP_AGE_MAX : p->age * 2;
			snprintf(name, sizeof(name), "DEALLOCATE nvs_%d_%u", q->prep, p->gen);
			ok = PQsendQuery(pc->conn, name);
		} else if (q->stage == STAGE_PARSE) {
			/* Types are left to the server, as for an unprepared query. */
			snprintf(name, sizeof(name), "nvs_%d_%u", q->prep, ++p->gen);
			ok = PQsendPrepare(pc->conn, name, p->sql, 0, NULL);
		} else {
			snprintf(name, sizeof(name), "nvs_%d_%u", q->prep, p->gen);
			ok = PQsendQueryPrepared(pc->conn, name, q->nparams, (const char *const *)q->params,
						 NULL, NULL, 0);
		}
	} else if (q->nparams > 0)
		ok = PQsendQueryParams(pc->conn, q->sql, q->nparams, NULL,
				       (const char *const *)q->params, NULL, NULL, 0);
	else
		ok = PQsendQuery(pc->conn, q->sql);
	if (!ok) {
		conn_lost(pc, PQerrorMessage(pc->conn));
		return;
	}
	pc->in_flight = true;
	if (!q->sent)
		q->sent = ev_time();
	flush_or_watch(pc);
}

PgConn *pgconn_new(struct ev_loop *loop, const char *name, const struct pgconn_cfg *cfg,
		   const struct pgconn_ops *ops, void *ud)
{
	PgConn *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return NULL;
	pc->loop = loop;
	pc->name = name;
	pc->cfg = *cfg;
	pc->ops = *ops;
	pc->ud = ud;
	pc->io_fd = -1;
	ev_init(&pc->io, io_cb);
	pc->io.data = pc;
	ev_init(&pc->timer, timer_cb);
	pc->timer.data = pc;
	ev_timer_init(&pc->lost, lost_cb, 0., 0.);
	pc->lost.data = pc;
	pc->next_conn = conns;
	if (conns)
		conns->prev_conn = pc;
	conns = pc;
	metrics_set(M_PG_UP, name, 0);
	metrics_add(M_PG_RECONNECTS, name, 0);   /* a first sample for rate() */
	return pc;
}

void pgconn_free(PgConn *pc)
{
	if (!pc)
		return;
	ev_io_stop(pc->loop, &pc->io);
	ev_timer_stop(pc->loop, &pc->timer);
	ev_timer_stop(pc->loop, &pc->lost);
	/* Owners free what they attached to a query in its callback; a
	 * callback that queries again is refused by the idle state. */
	pc->state = ST_IDLE;
	fail_queries(pc);
	PQclear(pc->keep);
	if (pc->conn)
		PQfinish(pc->conn);
	for (int i = 0; i < PREP_MAX; i++)
		free(pc->prep[i].sql);
	if (pc->prev_conn)
		pc->prev_conn->next_conn = pc->next_conn;
	else
		conns = pc->next_conn;
	if (pc->next_conn)
		pc->next_conn->prev_conn = pc->prev_conn;
	free(pc);
}

void pgconn_start(PgConn *pc)
{
	if (pc->state == ST_IDLE)
		begin_connect(pc);
}

int pgconn_query(PgConn *pc, const char *sql, int nparams, const char *const *params,
		 pgconn_cb cb, void *arg)
{
	return pgconn_query_kind(pc, "other", sql, nparams, params, cb, arg);
}

/* The slot of (kind, sql), taking a free one on first use; 0 when the
 * table is full (the query goes unprepared) or out of memory. */
static int prep_slot(PgConn *pc, const char *kind, const char *sql)
{
	int i;

	for (i = 0; i < PREP_MAX && pc->prep[i].sql; i++)
		if (strcmp(pc->prep[i].kind, kind) == 0 && strcmp(pc->prep[i].sql, sql) == 0)
			return i + 1;
	if (i == PREP_MAX || !(pc->prep[i].sql = strdup(sql)))
		return 0;
	pc->prep[i].kind = kind;
	pc->prep[i].ready = false;
	pc->prep[i].age = PREP_AGE_MIN;
	return i + 1;
}

static int enqueue(PgConn *pc, const char *kind, bool prepare, const char *sql, int nparams,
		   const char *const *params, pgconn_cb cb, void *arg)
{
	struct query *q;
	int i;

	if (pc->state != ST_UP)
		return -ENOTCONN;
	q = calloc(1, sizeof(*q));
	if (!q)
		goto oom;
	q->prep = prepare ? prep_slot(pc, kind, sql) : 0;
	q->cb = cb;
	q->arg = arg;
	q->kind = kind;
	if (!q->prep && !(q->sql = strdup(sql)))
		goto oom;
	if (nparams > 0) {
		if (!(q->params = calloc((size_t)nparams, sizeof(char *))))
			goto oom;
		q->nparams = nparams;
		for (i = 0; i < nparams; i++)
			if (params[i] && !(q->params[i] = strdup(params[i])))
				goto oom;
	}
	if (pc->tail)
		pc->tail->next = q;
	else
		pc->head = q;
	pc->tail = q;
	pc->enqueuing = true;
	send_next(pc);
	pc->enqueuing = false;
	return 0;
oom:
	query_free(q);
	return -ENOMEM;
}

int pgconn_query_kind(PgConn *pc, const char *kind, const char *sql, int nparams,
		      const char *const *params, pgconn_cb cb, void *arg)
{
	return enqueue(pc, kind, false, sql, nparams, params, cb, arg);
}

int pgconn_query_prep(PgConn *pc, const char *kind, const char *sql, int nparams,
		      const char *const *params, pgconn_cb cb, void *arg)
{
	return enqueue(pc, kind, true, sql, nparams, params, cb, arg);
}

void pgconn_reset(PgConn *pc, const char *why)
{
	if (pc->state == ST_UP || pc->state == ST_SESSION || pc->state == ST_CONNECTING)
		conn_lost(pc, why);
}

bool pgconn_is_up(const PgConn *pc)
{
	return pc->state == ST_UP;
}

bool pgconn_is_idle(const PgConn *pc)
{
	return pc->state == ST_UP && !pc->head;
}

const char *pgconn_name(const PgConn *pc)
{
	return pc->name;
}

bool pgconn_is_busy(const PgConn *pc)
{
	return pc->in_flight;
}

void pgconn_pool_stats(unsigned *total, unsigned *up, unsigned *busy)
{
	*total = *up = *busy = 0;
	for (const PgConn *pc = conns; pc; pc = pc->next_conn) {
		(*total)++;
		*up += pc->state == ST_UP;
		*busy += pc->in_flight;
	}
}

uint64_t pgconn_activity(void)
{
	return activity;
}
