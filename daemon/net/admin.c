/*
 * admin.c - the admin socket behind `nvsrelay status|clients|consumers|
 * reset|drop-consumer|reload`.
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
 *
 * drop-consumer deletes a consumer's resume_tokens row, for one that is
 * gone for good and holds retention back; refused while it is busy, for
 * the same reason.
 *
 * clients lists every live subscription from the hub, like pgbouncer's
 * SHOW CLIENTS: answered at once, without PostgreSQL.
 *
 * net.c and opsconn.c hold the socket and the connection buffers; this
 * file is the protocol.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "admin.h"
#include "client.h"
#include "filter.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "opsconn.h"
#include "pgconn.h"

#define ADMIN_MAX_LINE   65536
#define ADMIN_MAX_CONNS  16
#define ADMIN_MAX_OUT    (4 * 1024 * 1024)
#define ADMIN_IDLE       60.0
#define CONSUMERS_MAX    10000
#define PIPELINE_SUMMARY 160     /* bytes of a pipeline `clients` shows */

/* A command waiting for PostgreSQL; outlives its connection if need be. */
struct areq {
	OpsConn *c;
	char *consumer;
	char token[TOKEN_HEX_LEN + 1];
	bool create;            /* reset: a name resume_tokens lacks is made */
	bool at;                /* reset: to a time */
};

/* Per connection, beside opsconn's buffers. */
struct aconn {
	struct areq *pending;
	bool eof;               /* the peer finished sending */
};

struct admin {
	struct admin_env env;
	char path[NET_UNIX_PATH_MAX];
	OpsServer *srv;
};

static void process(OpsConn *c);

static struct aconn *conn_state(OpsConn *c)
{
	return opsconn_data(c);
}

static Admin *conn_admin(const OpsConn *c)
{
	return opsconn_ud(c);
}

static void conn_close(OpsConn *c)
{
	struct aconn *ac = conn_state(c);

	if (ac->pending)
		ac->pending->c = NULL;
}

/* Writes what the socket takes; once all is out, a connection whose peer
 * is done is closed.  Returns false when c was freed. */
static bool flush(OpsConn *c)
{
	struct aconn *ac = conn_state(c);
	size_t in_len;
	int r = opsconn_flush(c);

	if (r < 0)
		return false;
	opsconn_in(c, &in_len);
	if (r > 0 && ac->eof && !ac->pending && in_len == 0) {
		opsconn_free(c);
		return false;
	}
	return true;
}

/* Queues one answer line; consumes o. */
static void reply(OpsConn *c, cJSON *o)
{
	char *s = o ? cJSON_PrintUnformatted(o) : NULL, *p;
	size_t n;

	cJSON_Delete(o);
	if (!s) {
		s = strdup("{\"ok\":false,\"error\":\"out of memory\"}");
		if (!s)
			return;
	}
	n = strlen(s);
	if ((p = opsconn_out(c, n + 1))) {
		memcpy(p, s, n);
		p[n] = '\n';
	}
	free(s);
}

static void reply_error(OpsConn *c, const char *msg)
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

static void cmd_status(OpsConn *c)
{
	const struct admin_env *env = &conn_admin(c)->env;
	struct relay_status st;
	struct admin_upstream us;
	unsigned total, up, busy;
	char gen[16];
	const char *state, *why = NULL;
	cJSON *o = ok_object();

	/* A chained relay has no PostgreSQL: its generation and head are its
	 * upstream stream's. */
	env->source(env->health_arg, &st, &us);
	pgconn_pool_stats(&total, &up, &busy);
	snprintf(gen, sizeof(gen), "%08" PRIx32, st.generation);
	cJSON_AddStringToObject(o, "version", NVSRELAY_VERSION);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	cJSON_AddStringToObject(o, "generation", gen);
	add_token(o, "head", st.ready ? &st.head : NULL);
	state = env->health(env->health_arg, &why);
	cJSON_AddBoolToObject(o, "ready", strcmp(state, "not ready") != 0);
	cJSON_AddStringToObject(o, "state", state);
	if (strcmp(state, "ready") != 0)
		cJSON_AddStringToObject(o, "reason", why);
	if (us.addr) {
		cJSON_AddStringToObject(o, "upstream", us.addr);
		cJSON_AddBoolToObject(o, "upstream_up", st.main_up);
		cJSON_AddNumberToObject(o, "upstream_reconnects", (double)us.reconnects);
	}
	cJSON_AddBoolToObject(o, "ticker_leader", st.leader);
	cJSON_AddNumberToObject(o, "connections_up", up);
	cJSON_AddNumberToObject(o, "connections", total);
	cJSON_AddNumberToObject(o, "subscribers", (double)hub_subscription_count(env->hub));
	cJSON_AddNumberToObject(o, "clients", (double)client_count());
	cJSON_AddNumberToObject(o, "uptime_s", (double)(long long)(ev_time() - env->start_time));
	reply(c, o);
}

/* --- clients --------------------------------------------------------------- */

static const char *const table_names[] = { "health_events", "maintenance_events", "other" };

/* The pipeline as compact JSON, cut to PIPELINE_SUMMARY bytes (on a UTF-8
 * character boundary) with "..."; NULL for none. */
static void add_pipeline(cJSON *o, const struct filter *f)
{
	char *text = f ? cJSON_PrintUnformatted(filter_pipeline(f)) : NULL;
	size_t n;

	if (!text) {
		cJSON_AddNullToObject(o, "pipeline");
		return;
	}
	if ((n = strlen(text)) > PIPELINE_SUMMARY) {
		n = PIPELINE_SUMMARY - 3;
		while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
			n--;
		memcpy(text + n, "...", 4);
	}
	cJSON_AddStringToObject(o, "pipeline", text);
	free(text);
}

static void collect_client(void *arg, const struct hub_sub_info *si)
{
	cJSON *arr = arg, *e = cJSON_CreateObject();
	char id[24];

	if (!arr || !e) {
		cJSON_Delete(e);
		return;
	}
	snprintf(id, sizeof(id), "c%" PRIu64, si->client);
	cJSON_AddStringToObject(e, "client", id);
	cJSON_AddStringToObject(e, "peer", si->conn ? client_peer(si->conn) : "?");
	cJSON_AddNumberToObject(e, "sid", (double)si->sid);
	if (si->consumer)
		cJSON_AddStringToObject(e, "consumer", si->consumer);
	else
		cJSON_AddNullToObject(e, "consumer");
	cJSON_AddStringToObject(e, "table", table_names[si->table <= TABLE_OTHER ? si->table : TABLE_OTHER]);
	add_pipeline(e, si->filter);
	cJSON_AddBoolToObject(e, "before", si->before);
	cJSON_AddStringToObject(e, "state", si->active ? "live" : "starting");
	add_token(e, "position", &si->acked);
	cJSON_AddNumberToObject(e, "lag_events", (double)si->lag_events);
	cJSON_AddBoolToObject(e, "lag_exact", si->lag_exact);
	cJSON_AddNumberToObject(e, "lag_seconds", si->lag_seconds);
	cJSON_AddNumberToObject(e, "buffered", (double)si->buffered);
	cJSON_AddItemToArray(arr, e);
}

static void cmd_clients(OpsConn *c)
{
	cJSON *o = ok_object();

	hub_foreach(conn_admin(c)->env.hub, collect_client, cJSON_AddArrayToObject(o, "clients"));
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
	OpsConn *c = q->c;
	struct live_list live = { NULL, 0, 0, false };
	cJSON *o, *arr;
	double now = (double)time(NULL);

	(void)pc;
	free(q->consumer);
	free(q);
	if (!c)
		return;
	conn_state(c)->pending = NULL;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		reply_error(c, res ? PQresultErrorMessage(res) : "PostgreSQL connection lost");
		goto out;
	}
	hub_foreach(conn_admin(c)->env.hub, collect_live, &live);
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
 * are accepted: one before them could never be served.  With a time ($6)
 * instead of a token, the position is the end of the last tick created at
 * or before it, its token formatted here as token_format would.  A name
 * resume_tokens does not know is refused unless $7 (create): a typo must
 * not become a new consumer that holds the changelog back.
 */
static const char reset_sql[] =
	"WITH old AS (SELECT resume_token->>'token' AS t FROM resume_tokens WHERE client_name = $1),"
	" tk AS (SELECT tick_id, max_id, coalesce($2::text, lpad(to_hex($5::bigint), 8, '0')"
	"   || lpad(to_hex(tick_id), 16, '0') || 'ffffffffffffffff') AS tok FROM nvsrelay.tick"
	"  WHERE tick_id = coalesce($4::bigint,"
	"   (SELECT max(tick_id) FROM nvsrelay.tick WHERE created_at <= $6::timestamptz))),"
	" e AS (SELECT v.id, c.changed_at FROM (SELECT coalesce($3::bigint, (SELECT max_id FROM tk)) AS id) v"
	"  LEFT JOIN datastore_changelog c ON c.id = v.id),"
	" up AS (INSERT INTO resume_tokens (client_name, resume_token, last_updated)"
	"  SELECT $1, jsonb_build_object('token', (SELECT tok FROM tk), 'eventID', e.id, 'timestamp',"
	"   to_char(coalesce(e.changed_at, clock_timestamp()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')),"
	"   now() FROM e WHERE EXISTS (SELECT 1 FROM tk) AND ($7::boolean OR EXISTS (SELECT 1 FROM old))"
	"  ON CONFLICT (client_name) DO UPDATE SET resume_token = EXCLUDED.resume_token, last_updated = now()"
	"  RETURNING 1)"
	" SELECT (SELECT t FROM old), (SELECT count(*) FROM up), EXISTS (SELECT 1 FROM old), (SELECT tok FROM tk)";

static void reset_done(PgConn *pc, PGresult *res, void *arg)
{
	struct areq *q = arg;
	OpsConn *c = q->c;
	cJSON *o;

	(void)pc;
	if (!c)
		goto out;
	conn_state(c)->pending = NULL;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		reply_error(c, res ? PQresultErrorMessage(res) : "PostgreSQL connection lost");
	} else if (strcmp(PQgetvalue(res, 0, 1), "1") != 0 && strcmp(PQgetvalue(res, 0, 2), "t") != 0 &&
		   !PQgetisnull(res, 0, 3) && !q->create) {
		reply_error(c, "no such consumer in resume_tokens (a typo?); --create makes a new one");
	} else if (strcmp(PQgetvalue(res, 0, 1), "1") != 0) {
		reply_error(c, q->at ? "no retained tick at or before that time" :
			    "that position is not in the retained history of this database");
	} else {
		snprintf(q->token, sizeof(q->token), "%s", PQgetvalue(res, 0, 3));
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

static void cmd_reset(OpsConn *c, const cJSON *m)
{
	const struct admin_env *env = &conn_admin(c)->env;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "consumer");
	const cJSON *to = cJSON_GetObjectItemCaseSensitive(m, "to");
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(m, "at");
	struct relay_status st;
	struct token t;
	char id[24], tick[24], gen[16];
	const char *params[7];
	struct areq *q;
	PgConn *pc;

	if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 255) {
		reply_error(c, "reset needs \"consumer\": a non-empty string of at most 255 bytes");
		return;
	}
	if ((to && !cJSON_IsString(to)) || (at && (!cJSON_IsString(at) || to))) {
		reply_error(c, "either \"to\": \"head\" or a 40-hex-digit token, or \"at\": a time");
		return;
	}
	relay_get_status(env->relay, &st);
	pc = relay_main_conn(env->relay);
	if (!st.ready || !pc || !pgconn_is_up(pc)) {
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	if (at) {
		t = st.head;    /* the tick comes from the time */
	} else if (!to || strcmp(to->valuestring, "head") == 0) {
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
	q->create = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "create"));
	q->at = at != NULL;
	token_format(&t, q->token);
	snprintf(id, sizeof(id), "%" PRIu64, t.id);
	snprintf(tick, sizeof(tick), "%" PRIu64, t.tick);
	snprintf(gen, sizeof(gen), "%" PRIu32, st.generation);
	params[0] = q->consumer;
	params[1] = at ? NULL : q->token;
	params[2] = at || t.id == TOKEN_ID_END ? NULL : id;
	params[3] = at ? NULL : tick;
	params[4] = gen;
	params[5] = at ? at->valuestring : NULL;
	params[6] = q->create ? "true" : "false";
	if (pgconn_query_kind(pc, "position_reset", reset_sql, 7, params, reset_done, q) < 0) {
		free(q->consumer);
		free(q);
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	conn_state(c)->pending = q;
}

static void cmd_consumers(OpsConn *c)
{
	PgConn *pc = relay_main_conn(conn_admin(c)->env.relay);
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
	conn_state(c)->pending = q;
}

/* --- drop-consumer ---------------------------------------------------------- */

static const char drop_sql[] =
	"DELETE FROM resume_tokens WHERE client_name = $1 RETURNING resume_token->>'token'";

static void drop_done(PgConn *pc, PGresult *res, void *arg)
{
	struct areq *q = arg;
	OpsConn *c = q->c;
	cJSON *o;

	(void)pc;
	if (!c)
		goto out;
	conn_state(c)->pending = NULL;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		reply_error(c, res ? PQresultErrorMessage(res) : "PostgreSQL connection lost");
	} else if (PQntuples(res) == 0) {
		reply_error(c, "no such consumer in resume_tokens");
	} else {
		log_notice("consumer dropped consumer=%s position=%s", LOGQ(q->consumer),
			   PQgetisnull(res, 0, 0) ? "(none)" : LOGQ(PQgetvalue(res, 0, 0)));
		o = ok_object();
		cJSON_AddStringToObject(o, "consumer", q->consumer);
		if (PQgetisnull(res, 0, 0))
			cJSON_AddNullToObject(o, "token");
		else
			cJSON_AddStringToObject(o, "token", PQgetvalue(res, 0, 0));
		reply(c, o);
	}
	if (flush(c))
		process(c);
out:
	free(q->consumer);
	free(q);
}

static void cmd_drop(OpsConn *c, const cJSON *m)
{
	const struct admin_env *env = &conn_admin(c)->env;
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "consumer");
	PgConn *pc = relay_main_conn(env->relay);
	const char *params[1];
	struct areq *q;

	if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 255) {
		reply_error(c, "drop-consumer needs \"consumer\": a non-empty string of at most 255 bytes");
		return;
	}
	if (!pc || !pgconn_is_up(pc)) {
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	/* Its next position write would bring the row back. */
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
	params[0] = q->consumer;
	if (pgconn_query_kind(pc, "consumer_drop", drop_sql, 1, params, drop_done, q) < 0) {
		free(q->consumer);
		free(q);
		reply_error(c, "not ready: PostgreSQL is not connected");
		return;
	}
	conn_state(c)->pending = q;
}

/* --- reload -------------------------------------------------------------- */

static void cmd_reload(OpsConn *c)
{
	struct admin_reload res;
	cJSON *o;

	memset(&res, 0, sizeof(res));
	conn_admin(c)->env.reload(&res);
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

static void dispatch(OpsConn *c, const char *line, size_t len)
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
	} else if (strcmp(cmd->valuestring, "clients") == 0) {
		cmd_clients(c);
	} else if (strcmp(cmd->valuestring, "drop-consumer") == 0) {
		cmd_drop(c, m);
	} else if (strcmp(cmd->valuestring, "reset") == 0) {
		cmd_reset(c, m);
	} else if (strcmp(cmd->valuestring, "reload") == 0) {
		log_notice("reload requested on the admin socket");
		cmd_reload(c);
	} else {
		reply_error(c, "unknown cmd; expected status, clients, consumers, reset, drop-consumer or reload");
		snprintf(label, sizeof(label), "unknown");
	}
	metrics_add(M_ADMIN_COMMANDS, label, 1);
	cJSON_Delete(m);
}

/* Runs the complete lines received, one command at a time. */
static void process(OpsConn *c)
{
	struct aconn *ac = conn_state(c);
	size_t in_len;
	char *in = opsconn_in(c, &in_len), *nl;
	bool full;

	while (!ac->pending && opsconn_queued(c) < ADMIN_MAX_OUT && (nl = memchr(in, '\n', in_len))) {
		size_t len = (size_t)(nl - in);

		if (len > 0)
			dispatch(c, in, len);
		opsconn_consume(c, len + 1);
		in = opsconn_in(c, &in_len);
	}
	if (ac->eof && in_len > 0 && !ac->pending && !memchr(in, '\n', in_len)) {
		/* A last line without its newline. */
		dispatch(c, in, in_len);
		opsconn_consume(c, in_len);
		in_len = 0;
	}
	/* Not while answers are backed up: lines would pile up to the input
	 * cap and be thrown away as one too long. */
	full = opsconn_queued(c) >= ADMIN_MAX_OUT;
	opsconn_reading(c, !ac->pending && !ac->eof && !full);
	if (!opsconn_queued(c)) {
		if (ac->eof && !ac->pending && in_len == 0)
			opsconn_free(c);
		return;
	}
	/* All written at once: no writable callback comes to go on. */
	if (flush(c) && full && opsconn_queued(c) == 0)
		process(c);
}

static void conn_input(OpsConn *c, int n)
{
	struct aconn *ac = conn_state(c);
	size_t in_len;

	if (n == -ENOBUFS) {
		reply_error(c, "request line too long");
		opsconn_in(c, &in_len);
		opsconn_consume(c, in_len);
		ac->eof = true;
		process(c);
		return;
	}
	opsconn_deadline(c, ADMIN_IDLE, ADMIN_IDLE);
	if (n == 0)
		ac->eof = true;
	process(c);
}

static void conn_writable(OpsConn *c)
{
	if (flush(c))
		process(c);
}

static void conn_idle(OpsConn *c)
{
	if (!conn_state(c)->pending)
		opsconn_free(c);
}

/* Only root and the daemon's own user get in. */
static void conn_accept(void *ud, int fd)
{
	static const char msg[] = "{\"ok\":false,\"error\":\"permission denied: root or the daemon's user only\"}\n";
	Admin *a = ud;
	struct ucred cred;
	char who[64];

	if (net_peer_cred(fd, &cred) == 0) {
		net_cred_text(&cred, who, sizeof(who));
		if (cred.uid == 0 || cred.uid == geteuid()) {
			if (opsconn_new(a->srv, fd))
				log_debug("admin connection peer=%s", who);
			return;
		}
	} else {
		snprintf(who, sizeof(who), "unknown");
	}
	log_warning("admin connection refused peer=%s reason='not root or the daemon user'", who);
	if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("admin refusal not sent error='%s'", strerror(errno));
	close(fd);
}

static const struct opsconn_ops admin_ops = {
	.name = "admin",
	.max_conns = ADMIN_MAX_CONNS,
	.in_max = ADMIN_MAX_LINE,
	.refusal = "{\"ok\":false,\"error\":\"out of file descriptors\"}\n",
	.data_size = sizeof(struct aconn),
	.deadline = ADMIN_IDLE,
	.repeat = ADMIN_IDLE,
	.accept = conn_accept,
	.input = conn_input,
	.writable = conn_writable,
	.timeout = conn_idle,
	.close = conn_close,
};

Admin *admin_new(const struct admin_env *env, const char *path, char *err, size_t errlen)
{
	Admin *a;
	int fd;

	if (strlen(path) >= NET_UNIX_PATH_MAX) {
		snprintf(err, errlen, "admin_socket path too long (max %zu bytes): %s", NET_UNIX_PATH_MAX - 1, path);
		return NULL;
	}
	if (!(a = calloc(1, sizeof(*a)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->env = *env;
	snprintf(a->path, sizeof(a->path), "%s", path);
	if ((fd = net_listen_unix(path, 0600, 16)) < 0) {
		snprintf(err, errlen, "cannot listen on admin socket %s: %s", path, strerror(-fd));
		free(a);
		return NULL;
	}
	if (!(a->srv = opsconn_server_new(env->loop, fd, &admin_ops, a))) {
		snprintf(err, errlen, "out of memory");
		unlink(path);
		free(a);
		return NULL;
	}
	return a;
}

void admin_free(Admin *a)
{
	if (!a)
		return;
	opsconn_server_free(a->srv);
	unlink(a->path);
	free(a);
}
