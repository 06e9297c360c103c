/*
 * admin.c - the admin socket behind `nvsrelay status|consumers|reset|reload`.
 *
 * Each connection reads JSON lines and answers each with one JSON line, in
 * order: a command that needs PostgreSQL (consumers, reset) is queued on
 * the relay's main connection and the connection reads nothing more until
 * it is answered.  Only root and the daemon's own user get in; the file
 * mode (0600) already keeps others out, the SO_PEERCRED check holds even
 * when the mode is loosened or the socket is passed around.
 *
 * reset moves a stored durable position.  It is refused while the consumer
 * has a subscription, or a detached one still writing its position: that
 * write would land after ours and undo it.  Since watch reads the stored
 * position on the same connection, in order, a consumer that subscribes
 * after the reset starts from the new position.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "admin.h"
#include "client.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"

#define ADMIN_MAX_LINE   65536
#define ADMIN_MAX_CONNS  16
#define ADMIN_MAX_OUT    (4 * 1024 * 1024)
#define ADMIN_IDLE       60.0
#define CONSUMERS_MAX    10000

struct aconn;

/* A command waiting for PostgreSQL; outlives its connection if need be. */
struct areq {
	struct aconn *c;
	char *consumer;
	char token[TOKEN_HEX_LEN + 1];
};

struct aconn {
	struct aconn *next, *prev;
	Admin *a;
	int fd;
	char in[ADMIN_MAX_LINE];
	size_t in_len;
	char *out;
	size_t out_len, out_off, out_cap;
	struct areq *pending;
	bool eof;               /* the peer finished sending */
	ev_io rio, wio;
	ev_timer idle;
};

struct admin {
	struct admin_env env;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ev_io io;
	struct aconn *conns;
	unsigned nconns;
};

static void process(struct aconn *c);

static void conn_free(struct aconn *c)
{
	Admin *a = c->a;

	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	if (c->pending)
		c->pending->c = NULL;
	ev_io_stop(a->env.loop, &c->rio);
	ev_io_stop(a->env.loop, &c->wio);
	ev_timer_stop(a->env.loop, &c->idle);
	close(c->fd);
	free(c->out);
	free(c);
}

/* Writes what the socket takes.  Returns false when c was freed. */
static bool flush(struct aconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_start(c->a->env.loop, &c->wio);
			return true;
		}
		conn_free(c);
		return false;
	}
	c->out_off = c->out_len = 0;
	ev_io_stop(c->a->env.loop, &c->wio);
	if (c->eof && !c->pending && c->in_len == 0) {
		conn_free(c);
		return false;
	}
	return true;
}

/* Queues one answer line; consumes o. */
static void reply(struct aconn *c, cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL;
	size_t n;

	cJSON_Delete(o);
	if (!s) {
		s = strdup("{\"ok\":false,\"error\":\"out of memory\"}");
		if (!s)
			return;
	}
	n = strlen(s);
	if (c->out_len + n + 1 > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *p;

		while (cap < c->out_len + n + 1)
			cap *= 2;
		if (!(p = realloc(c->out, cap))) {
			free(s);
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, s, n);
	c->out[c->out_len + n] = '\n';
	c->out_len += n + 1;
	free(s);
}

static void reply_error(struct aconn *c, const char *msg)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddFalseToObject(o, "ok");
	cJSON_AddStringToObject(o, "error", msg);
	reply(c, o);
}

static cJSON *ok_object(void)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddTrueToObject(o, "ok");
	return o;
}

static void add_token(cJSON *o, const char *key, const struct token *t)
{
	char hex[TOKEN_HEX_LEN + 1];

	if (!t) {
		cJSON_AddNullToObject(o, key);
		return;
	}
	token_format(t, hex);
	cJSON_AddStringToObject(o, key, hex);
}

/* RFC 3339 UTC with milliseconds for a wall-clock time. */
static void add_time(cJSON *o, const char *key, double t)
{
	char buf[64];
	time_t s = (time_t)t;
	struct tm tm;

	gmtime_r(&s, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((t - (double)s) * 1000) % 1000);
	cJSON_AddStringToObject(o, key, buf);
}

/* --- status ---------------------------------------------------------------- */

static void cmd_status(struct aconn *c)
{
	const struct admin_env *env = &c->a->env;
	struct relay_status st;
	unsigned total, up, busy;
	char gen[16];
	cJSON *o = ok_object();

	relay_get_status(env->relay, &st);
	pgconn_pool_stats(&total, &up, &busy);
	snprintf(gen, sizeof(gen), "%08" PRIx32, st.generation);
	cJSON_AddStringToObject(o, "version", NVSRELAY_VERSION);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	cJSON_AddStringToObject(o, "generation", gen);
	add_token(o, "head", st.ready ? &st.head : NULL);
	cJSON_AddBoolToObject(o, "ready", st.ready && st.main_up);
	cJSON_AddBoolToObject(o, "ticker_leader", st.leader);
	cJSON_AddNumberToObject(o, "connections_up", up);
	cJSON_AddNumberToObject(o, "connections", total);
	cJSON_AddNumberToObject(o, "subscribers", (double)hub_subscription_count(env->hub));
	cJSON_AddNumberToObject(o, "clients", (double)client_count());
	cJSON_AddNumberToObject(o, "uptime_s", (double)(long long)(ev_time() - env->start_time));
	reply(c, o);
}

/* --- consumers --------------------------------------------------------------- */

/* The live side of each durable consumer, merged over its subscriptions. */
struct live {
	char *name;
	unsigned subs;
	struct token acked;
	double lag_events, lag_seconds, ack_age;
	bool lag_exact;
};

struct live_list {
	struct live *v;
	size_t n, cap;
	bool oom;
};

static void collect_live(void *arg, const struct hub_sub_info *si)
{
	struct live_list *l = arg;
	struct live *e = NULL;

	if (!si->consumer || l->oom)
		return;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, si->consumer) == 0)
			e = &l->v[i];
	if (!e) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 16;
			struct live *p = realloc(l->v, cap * sizeof(*p));

			if (!p) {
				l->oom = true;
				return;
			}
			l->v = p;
			l->cap = cap;
		}
		e = &l->v[l->n];
		memset(e, 0, sizeof(*e));
		if (!(e->name = strdup(si->consumer))) {
			l->oom = true;
			return;
		}
		e->acked = si->acked;
		e->ack_age = si->ack_age;
		e->lag_exact = true;
		l->n++;
	}
	/* Two subscriptions of one consumer (two tables): the furthest
	 * behind counts. */
	e->subs++;
	if (token_cmp(&si->acked, &e->acked) < 0)
		e->acked = si->acked;
	if ((double)si->lag_events > e->lag_events)
		e->lag_events = (double)si->lag_events;
	if (si->lag_seconds > e->lag_seconds)
		e->lag_seconds = si->lag_seconds;
	if (si->ack_age > e->ack_age)
		e->ack_age = si->ack_age;
	e->lag_exact &= si->lag_exact;
}

static void live_free(struct live_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
}

static const char consumers_sql[] =
	"SELECT r.client_name, r.resume_token->>'token',"
	"  to_char(r.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
	"  (SELECT count(*) FROM (SELECT 1 FROM datastore_changelog c WHERE c.id > e.id LIMIT 10000000) x),"
	"  extract(epoch FROM clock_timestamp() -"
	"   (SELECT c.changed_at FROM datastore_changelog c WHERE c.id > e.id ORDER BY c.id LIMIT 1))::float8"
	" FROM resume_tokens r,"
	"  LATERAL (SELECT CASE WHEN r.resume_token->>'eventID' ~ '^[0-9]{1,18}$'"
	"   THEN (r.resume_token->>'eventID')::bigint END AS id) e"
	" ORDER BY r.client_name LIMIT 10000";

static cJSON *consumer_entry(const char *name)
{
	cJSON *e = cJSON_CreateObject();

	cJSON_AddStringToObject(e, "name", name);
	return e;
}

static void consumers_done(PgConn *pc, PGresult *res, void *arg)
{
	struct areq *q = arg;
	struct aconn *c = q->c;
	struct live_list live = { NULL, 0, 0, false };
	cJSON *o, *arr;
	double now = (double)time(NULL);

	(void)pc;
	free(q->consumer);
	free(q);
	if (!c)
		return;
	c->pending = NULL;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		reply_error(c, res ? PQresultErrorMessage(res) : "PostgreSQL connection lost");
		goto out;
	}
	hub_foreach(c->a->env.hub, collect_live, &live);
	o = ok_object();
	arr = cJSON_AddArrayToObject(o, "consumers");
	for (int i = 0; i < PQntuples(res); i++) {
		const char *name = PQgetvalue(res, i, 0);
		cJSON *e = consumer_entry(name);
		struct live *l = NULL;

		for (size_t k = 0; k < live.n; k++)
			if (strcmp(live.v[k].name, name) == 0)
				l = &live.v[k];
		cJSON_AddBoolToObject(e, "connected", l != NULL);
		cJSON_AddNumberToObject(e, "subscriptions", l ? l->subs : 0);
		if (l) {
			add_token(e, "token", &l->acked);
		} else if (PQgetisnull(res, i, 1)) {
			cJSON_AddNullToObject(e, "token");
		} else {
			cJSON_AddStringToObject(e, "token", PQgetvalue(res, i, 1));
		}
		if (PQgetisnull(res, i, 1))
			cJSON_AddNullToObject(e, "stored_token");
		else
			cJSON_AddStringToObject(e, "stored_token", PQgetvalue(res, i, 1));
		cJSON_AddStringToObject(e, "stored_at", PQgetvalue(res, i, 2));
		/* Connected: the ring knows exactly, unless the consumer is
		 * behind it; stored only: estimated from changelog ids. */
		if (l && l->lag_exact) {
			cJSON_AddNumberToObject(e, "lag_events", l->lag_events);
			cJSON_AddNumberToObject(e, "lag_seconds", l->lag_seconds);
		} else if (!PQgetisnull(res, i, 3) && !PQgetisnull(res, i, 1)) {
			double ev = strtod(PQgetvalue(res, i, 3), NULL);
			double secs = PQgetisnull(res, i, 4) ? 0 : strtod(PQgetvalue(res, i, 4), NULL);

			cJSON_AddNumberToObject(e, "lag_events", l && l->lag_events > ev ? l->lag_events : ev);
			cJSON_AddNumberToObject(e, "lag_seconds", l && l->lag_seconds > secs ? l->lag_seconds : secs);
		} else {
			cJSON_AddNullToObject(e, "lag_events");
			cJSON_AddNullToObject(e, "lag_seconds");
		}
		if (l)
			add_time(e, "last_ack", now - l->ack_age);
		else
			cJSON_AddStringToObject(e, "last_ack", PQgetvalue(res, i, 2));
		if (l)
			l->subs = 0;   /* listed */
		cJSON_AddItemToArray(arr, e);
	}
	/* Connected consumers whose first position write is still on its way. */
	for (size_t k = 0; k < live.n; k++) {
		struct live *l = &live.v[k];
		cJSON *e;

		if (!l->subs)
			continue;
		e = consumer_entry(l->name);
		cJSON_AddTrueToObject(e, "connected");
		cJSON_AddNumberToObject(e, "subscriptions", l->subs);
		add_token(e, "token", &l->acked);
		cJSON_AddNullToObject(e, "stored_token");
		cJSON_AddNullToObject(e, "stored_at");
		cJSON_AddNumberToObject(e, "lag_events", l->lag_events);
		cJSON_AddNumberToObject(e, "lag_seconds", l->lag_seconds);
		add_time(e, "last_ack", now - l->ack_age);
		cJSON_AddItemToArray(arr, e);
	}
	if (live.oom) {
		cJSON_Delete(o);
		reply_error(c, "out of memory");
	} else {
		reply(c, o);
	}
out:
	live_free(&live);
	if (flush(c))
		process(c);
}

/* --- reset --------------------------------------------------------------- */

/*
 * Moves a stored position, backwards or forwards, written in the format
 * relay.c's position writes use.  Only positions of ticks still retained
 * are accepted: one before them could never be served.
 */
static const char reset_sql[] =
	"WITH old AS (SELECT resume_token->>'token' AS t FROM resume_tokens WHERE client_name = $1),"
	" tk AS (SELECT tick_id, max_id FROM nvsrelay.tick WHERE tick_id = $4::bigint),"
	" e AS (SELECT v.id, c.changed_at FROM (SELECT coalesce($3::bigint, (SELECT max_id FROM tk)) AS id) v"
	"  LEFT JOIN datastore_changelog c ON c.id = v.id),"
	" up AS (INSERT INTO resume_tokens (client_name, resume_token, last_updated)"
	"  SELECT $1, jsonb_build_object('token', $2::text, 'eventID', e.id, 'timestamp',"
	"   to_char(coalesce(e.changed_at, clock_timestamp()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')),"
	"   now() FROM e WHERE EXISTS (SELECT 1 FROM tk)"
	"  ON CONFLICT (client_name) DO UPDATE SET resume_token = EXCLUDED.resume_token, last_updated = now()"
	"  RETURNING 1)"
	" SELECT (SELECT t FROM old), (SELECT count(*) FROM up), EXISTS (SELECT 1 FROM old)";

static void reset_done(PgConn *pc, PGresult *res, void *arg)
{
	struct areq *q = arg;
	struct aconn *c = q->c;
	cJSON *o;

	(void)pc;
	if (!c)
		goto out;
	c->pending = NULL;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		reply_error(c, res ? PQresultErrorMessage(res) : "PostgreSQL connection lost");
	} else if (strcmp(PQgetvalue(res, 0, 1), "1") != 0) {
		reply_error(c, "that position is not in the retained history of this database");
	} else {
		log_notice("consumer position reset consumer=%s to=%s from=%s", LOGQ(q->consumer), q->token,
			   PQgetisnull(res, 0, 0) ? "(none)" : LOGQ(PQgetvalue(res, 0, 0)));
		o = ok_object();
		cJSON_AddStringToObject(o, "consumer", q->consumer);
		cJSON_AddStringToObject(o, "token", q->token);
		if (PQgetisnull(res, 0, 0))
			cJSON_AddNullToObject(o, "previous");
		else
			cJSON_AddStringToObject(o, "previous", PQgetvalue(res, 0, 0));
		cJSON_AddBoolToObject(o, "created", strcmp(PQgetvalue(res, 0, 2), "t") != 0);
		reply(c, o);
	}
	if (flush(c))
		process(c);
out:
	free(q->consumer);
	free(q);
}

static void cmd_reset(struct aconn *c, const cJSON *m)
{
	const struct admin_env *env = &c->a->env;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "consumer");
	const cJSON *to = cJSON_GetObjectItemCaseSensitive(m, "to");
	struct relay_status st;
	struct token t;
	char id[24], tick[24];
	const char *params[4];
	struct areq *q;
	PgConn *pc;

	if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 255) {
		reply_error(c, "reset needs \"consumer\": a non-empty string of at most 255 bytes");
		return;
	}
	if (to && !cJSON_IsString(to)) {
		reply_error(c, "\"to\" must be \"head\" or a 40-hex-digit token");
		return;
	}
	relay_get_status(env->relay, &st);
	pc = relay_main_conn(env->relay);
	if (!st.ready || !pc || !pgconn_is_up(pc)) {
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	if (!to || strcmp(to->valuestring, "head") == 0) {
		t = st.head;
	} else if (token_parse(to->valuestring, strlen(to->valuestring), &t) < 0) {
		reply_error(c, "\"to\" must be \"head\" or a 40-hex-digit token");
		return;
	} else if (t.gen != st.generation) {
		reply_error(c, "the token belongs to another database or changelog generation");
		return;
	}
	if (hub_consumer_busy(env->hub, name->valuestring)) {
		reply_error(c, "the consumer is connected; stop it (or wait for its last position write) and retry");
		return;
	}
	if (!(q = calloc(1, sizeof(*q))) || !(q->consumer = strdup(name->valuestring))) {
		free(q);
		reply_error(c, "out of memory");
		return;
	}
	q->c = c;
	token_format(&t, q->token);
	snprintf(id, sizeof(id), "%" PRIu64, t.id);
	snprintf(tick, sizeof(tick), "%" PRIu64, t.tick);
	params[0] = q->consumer;
	params[1] = q->token;
	params[2] = t.id == TOKEN_ID_END ? NULL : id;
	params[3] = tick;
	if (pgconn_query_kind(pc, "position_reset", reset_sql, 4, params, reset_done, q) < 0) {
		free(q->consumer);
		free(q);
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	c->pending = q;
}

static void cmd_consumers(struct aconn *c)
{
	PgConn *pc = relay_main_conn(c->a->env.relay);
	struct areq *q;

	if (!pc || !pgconn_is_up(pc)) {
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		reply_error(c, "out of memory");
		return;
	}
	q->c = c;
	if (pgconn_query_kind(pc, "consumers", consumers_sql, 0, NULL, consumers_done, q) < 0) {
		free(q);
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	c->pending = q;
}

/* --- reload -------------------------------------------------------------- */

static void cmd_reload(struct aconn *c)
{
	struct admin_reload res;
	cJSON *o;

	memset(&res, 0, sizeof(res));
	c->a->env.reload(&res);
	if (res.status < 0) {
		reply_error(c, res.error[0] ? res.error : "reload failed");
		return;
	}
	o = ok_object();
	cJSON_AddStringToObject(o, "applied", res.applied);
	cJSON_AddStringToObject(o, "restart_needed", res.restart);
	reply(c, o);
}

/* --- connection ------------------------------------------------------------ */

static void dispatch(struct aconn *c, const char *line, size_t len)
{
	cJSON *m = cJSON_ParseWithLength(line, len);
	const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(m, "cmd");
	char label[48];

	if (!cJSON_IsObject(m) || !cJSON_IsString(cmd)) {
		reply_error(c, "expected a JSON object with a string \"cmd\"");
		cJSON_Delete(m);
		return;
	}
	snprintf(label, sizeof(label), "%s", cmd->valuestring);
	if (strcmp(cmd->valuestring, "status") == 0) {
		cmd_status(c);
	} else if (strcmp(cmd->valuestring, "consumers") == 0) {
		cmd_consumers(c);
	} else if (strcmp(cmd->valuestring, "reset") == 0) {
		cmd_reset(c, m);
	} else if (strcmp(cmd->valuestring, "reload") == 0) {
		log_notice("reload requested on the admin socket");
		cmd_reload(c);
	} else {
		reply_error(c, "unknown cmd; expected status, consumers, reset or reload");
		snprintf(label, sizeof(label), "unknown");
	}
	metrics_add(M_ADMIN_COMMANDS, label, 1);
	cJSON_Delete(m);
}

/* Runs the complete lines received, one command at a time. */
static void process(struct aconn *c)
{
	char *nl;

	while (!c->pending && c->out_len < ADMIN_MAX_OUT && (nl = memchr(c->in, '\n', c->in_len))) {
		size_t len = (size_t)(nl - c->in);

		if (len > 0)
			dispatch(c, c->in, len);
		c->in_len -= len + 1;
		memmove(c->in, nl + 1, c->in_len);
	}
	if (c->eof && c->in_len > 0 && !c->pending && !memchr(c->in, '\n', c->in_len)) {
		/* A last line without its newline. */
		dispatch(c, c->in, c->in_len);
		c->in_len = 0;
	}
	if (c->pending || c->eof)
		ev_io_stop(c->a->env.loop, &c->rio);
	else
		ev_io_start(c->a->env.loop, &c->rio);
	if (c->out_len)
		flush(c);
	else if (c->eof && !c->pending && c->in_len == 0)
		conn_free(c);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct aconn *c = w->data;
	ssize_t n;

	(void)loop;
	(void)revents;
	if (c->in_len == sizeof(c->in)) {
		reply_error(c, "request line too long");
		c->in_len = 0;
		c->eof = true;
		process(c);
		return;
	}
	n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_free(c);
		return;
	}
	ev_timer_again(c->a->env.loop, &c->idle);
	if (n == 0)
		c->eof = true;
	else
		c->in_len += (size_t)n;
	process(c);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct aconn *c = w->data;

	(void)loop;
	(void)revents;
	if (flush(c))
		process(c);
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct aconn *c = w->data;

	(void)loop;
	(void)revents;
	if (!c->pending)
		conn_free(c);
}

static bool peer_allowed(int fd, char *who, size_t len)
{
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		snprintf(who, len, "unknown");
		return false;
	}
	snprintf(who, len, "pid=%d,uid=%u", (int)cred.pid, (unsigned)cred.uid);
	return cred.uid == 0 || cred.uid == geteuid();
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Admin *a = w->data;
	struct aconn *c;
	char who[64];
	int fd;

	(void)revents;
	for (;;) {
		fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warning("admin accept failed error='%s'", strerror(errno));
			return;
		}
		if (!peer_allowed(fd, who, sizeof(who))) {
			static const char msg[] = "{\"ok\":false,\"error\":\"permission denied: root or the daemon's user only\"}\n";

			log_warning("admin connection refused peer=%s reason='not root or the daemon user'", who);
			if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				log_debug("admin refusal not sent error='%s'", strerror(errno));
			close(fd);
			continue;
		}
		if (a->nconns >= ADMIN_MAX_CONNS || !(c = calloc(1, sizeof(*c)))) {
			close(fd);
			continue;
		}
		c->a = a;
		c->fd = fd;
		ev_io_init(&c->rio, read_cb, fd, EV_READ);
		c->rio.data = c;
		ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
		c->wio.data = c;
		ev_init(&c->idle, idle_cb);
		c->idle.repeat = ADMIN_IDLE;
		c->idle.data = c;
		ev_timer_again(loop, &c->idle);
		ev_io_start(loop, &c->rio);
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->nconns++;
		log_debug("admin connection peer=%s", who);
	}
}

Admin *admin_new(const struct admin_env *env, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	Admin *a;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "admin_socket path too long (max %zu bytes): %s", sizeof(sa.sun_path) - 1, path);
		return NULL;
	}
	if (!(a = calloc(1, sizeof(*a)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->env = *env;
	snprintf(a->path, sizeof(a->path), "%s", path);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->fd < 0)
		goto fail;
	/* A socket file left by a killed predecessor would make bind fail. */
	unlink(path);
	if (bind(a->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 || listen(a->fd, 16) < 0)
		goto fail;
	ev_io_init(&a->io, accept_cb, a->fd, EV_READ);
	a->io.data = a;
	ev_io_start(env->loop, &a->io);
	return a;
fail:
	snprintf(err, errlen, "cannot listen on admin socket %s: %s", path, strerror(errno));
	if (a->fd >= 0)
		close(a->fd);
	free(a);
	return NULL;
}

void admin_free(Admin *a)
{
	if (!a)
		return;
	while (a->conns)
		conn_free(a->conns);
	ev_io_stop(a->env.loop, &a->io);
	close(a->fd);
	unlink(a->path);
	free(a);
}
