/*
 * ops.c - what operators and orchestrators see of a running relay.
 *
 * HTTP (http.c): /metrics renders the registry after setting the gauges
 * that are sampled rather than counted (subscribers, per-consumer lag,
 * pool use); /livez answers as long as the loop turns; /readyz says
 * whether subscribers get a live stream.
 *
 * Degraded (a capture trigger or the changelog's xid default missing or
 * disabled, seen by pgstats.c) is still ready: /readyz answers 200 with
 * "degraded: why".  The relay serves everything that is captured and every
 * subscriber's backlog; the fault is in the database and no restart or
 * rescheduling of the relay fixes it, so failing the readiness probe would
 * only take the working part out of service (every replica at once, as they
 * all see the same database).  It is paged through the capture-inactive
 * alert and shown by `nvsrelay status` instead.  The admin socket (admin.c) and the
 * PostgreSQL statistics sampler (pgstats.c) are started here too.
 *
 * systemd: a STATUS= line every STATUS_INTERVAL seconds, and, when the
 * service has WatchdogSec, a WATCHDOG=1 at half the interval but only if
 * the PostgreSQL connections showed activity since the previous ping: a
 * finished query (the ticker probes the changelog head every
 * poll_interval_ms, a reader reads each tick) or a connect attempt (when
 * PostgreSQL is away).  An idle healthy relay therefore keeps pinging, and
 * one whose loop or connections are wedged stops, so systemd restarts it.
 * Before the relay is first ready it pings whenever the timer runs:
 * TimeoutStartSec bounds start-up (a long migration is one long query).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "client.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "ops.h"
#include "pgconn.h"
#include "pgstats.h"

#define STATUS_INTERVAL 10.0

struct ops {
	struct ops_env env;
	Http *http;
	Admin *admin;
	PgStats *stats;
	ev_timer status;
	ev_timer watchdog;
	uint64_t activity;          /* pgconn_activity() at the last ping */
	bool was_ready;
	double events_at_status;    /* M_EVENTS_READ at the last STATUS= */
	ev_tstamp status_at;
};

/* What the scrape-time gauges found, for STATUS= too. */
struct summary {
	size_t subscribers;
	double max_lag;
};

/* The source's state as the relay's: a chained relay reports its upstream
 * connection where the relay reports its main PostgreSQL connection. */
static void get_status(const Ops *o, struct relay_status *st)
{
	struct upstream_status us;

	if (!o->env.upstream) {
		relay_get_status(o->env.relay, st);
		return;
	}
	upstream_get_status(o->env.upstream, &us);
	memset(st, 0, sizeof(*st));
	st->ready = us.ready;
	st->main_up = us.up;
	st->generation = us.head.gen;
	st->head = us.head;
	st->head_age = us.head_age;
}

bool ops_is_ready(const Ops *o, const char **why)
{
	const struct conf_values *cv = o->env.cv;
	struct relay_status st;
	/* Ticks come at least every tick_idle_ms: three missed ones, plus
	 * room for a slow read, and the stream is not live. */
	double window = 3.0 * cv->tick_idle_ms / 1000.0 + 5.0;
	const char *w = NULL;

	get_status(o, &st);
	if (!st.ready)
		w = o->env.upstream ? "starting: no position from the upstream yet"
		  : "starting: schema not verified or no tick read yet";
	else if (!st.main_up)
		w = o->env.upstream ? "upstream connection down" : "PostgreSQL connection down";
	else if (st.head_age > window)
		w = o->env.upstream ? "nothing from the upstream recently" : "no tick read recently";
	if (why)
		*why = w;
	return w == NULL;
}

const char *ops_health(Ops *o, const char **why)
{
	const char *d;

	if (!ops_is_ready(o, why))
		return "not ready";
	if ((d = pgstats_degraded(o->stats))) {
		if (why)
			*why = d;
		return "degraded";
	}
	return "ready";
}

static const char *admin_health(void *arg, const char **why)
{
	return ops_health(arg, why);
}

static void admin_source(void *arg, struct relay_status *st, struct admin_upstream *up)
{
	const Ops *o = arg;
	struct upstream_status us;

	get_status(o, st);
	memset(up, 0, sizeof(*up));
	if (o->env.upstream) {
		upstream_get_status(o->env.upstream, &us);
		up->addr = us.addr;
		up->reconnects = us.reconnects;
	}
}

static void consumer_gauges(void *arg, const struct hub_sub_info *si)
{
	struct summary *sum = arg;

	if (si->lag_seconds > sum->max_lag)
		sum->max_lag = si->lag_seconds;
	if (!si->consumer)
		return;
	metrics_max(M_CONSUMER_LAG_EVENTS, si->consumer, (double)si->lag_events);
	metrics_max(M_CONSUMER_LAG_SECONDS, si->consumer, si->lag_seconds);
	metrics_max(M_CONSUMER_TOKEN_AGE, si->consumer, si->ack_age);
	metrics_max(M_CONSUMER_BUFFERED, si->consumer, (double)si->buffered);
	metrics_max(M_CONSUMER_CONNECTED, si->consumer, 1);
}

static void collect(Ops *o, struct summary *sum)
{
	struct relay_status st;
	unsigned total, up, busy;

	get_status(o, &st);
	metrics_set(M_READY, NULL, ops_is_ready(o, NULL));
	metrics_set(M_TICKER_LEADER, NULL, st.leader);
	metrics_set(M_HEAD_TICK, NULL, (double)st.head.tick);
	metrics_set(M_SUBSCRIBERS, NULL, (double)hub_subscription_count(o->env.hub));
	metrics_set(M_CLIENTS, NULL, (double)client_count());
	metrics_set(M_RING_EVENTS, NULL, (double)hub_ring_count(o->env.hub));
	pgconn_pool_stats(&total, &up, &busy);
	metrics_set(M_PG_POOL_SIZE, NULL, total);
	metrics_set(M_PG_POOL_UP, NULL, up);
	metrics_set(M_PG_POOL_BUSY, NULL, busy);
	/* Consumers come and go: start from nothing every time. */
	metrics_clear(M_CONSUMER_LAG_EVENTS);
	metrics_clear(M_CONSUMER_LAG_SECONDS);
	metrics_clear(M_CONSUMER_TOKEN_AGE);
	metrics_clear(M_CONSUMER_BUFFERED);
	metrics_clear(M_CONSUMER_CONNECTED);
	metrics_clear(M_CONSUMER_SEEN_AGE);
	memset(sum, 0, sizeof(*sum));
	sum->subscribers = hub_subscription_count(o->env.hub);
	hub_foreach(o->env.hub, consumer_gauges, sum);
	/* Then the durable consumers that are not connected, so one that
	 * crash-loops keeps its series and its alerts. */
	pgstats_consumer_gauges(o->stats);
}

static void handler(void *ud, const char *path, struct http_response *res)
{
	Ops *o = ud;
	struct summary sum;
	const char *why;

	if (strcmp(path, "/metrics") == 0) {
		collect(o, &sum);
		res->body = metrics_render(&res->len);
		res->type = "text/plain; version=0.0.4; charset=utf-8";
		if (!res->body)
			http_text(res, 500, "out of memory\n");
	} else if (strcmp(path, "/livez") == 0) {
		/* Answering at all shows the loop turns. */
		http_text(res, 200, "ok\n");
	} else if (strcmp(path, "/readyz") == 0) {
		const char *state = ops_health(o, &why);
		char msg[256];

		if (strcmp(state, "ready") == 0) {
			http_text(res, 200, "ready\n");
		} else {
			snprintf(msg, sizeof(msg), "%s: %s\n", state, why);
			http_text(res, strcmp(state, "degraded") == 0 ? 200 : 503, msg);
		}
	}
}

static void status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Ops *o = w->data;
	struct summary sum;
	ev_tstamp now = ev_now(loop);
	double events = metrics_get(M_EVENTS_READ, NULL), rate;
	const char *why, *state;
	char msg[320];

	(void)revents;
	collect(o, &sum);
	rate = now > o->status_at ? (events - o->events_at_status) / (now - o->status_at) : 0;
	o->events_at_status = events;
	o->status_at = now;
	state = ops_health(o, &why);
	if (strcmp(state, "ready") == 0)
		snprintf(msg, sizeof(msg), "STATUS=streaming: %zu subscribers, %.1f events/s, max lag %.1f s",
			 sum.subscribers, rate, sum.max_lag);
	else if (strcmp(state, "degraded") == 0)
		snprintf(msg, sizeof(msg), "STATUS=degraded: %s; %zu subscribers, %.1f events/s, max lag %.1f s",
			 why, sum.subscribers, rate, sum.max_lag);
	else
		snprintf(msg, sizeof(msg), "STATUS=not ready: %s; %zu subscribers", why, sum.subscribers);
	sd_notify(0, msg);
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Ops *o = w->data;
	uint64_t a = pgconn_activity();
	struct relay_status st;

	(void)loop;
	(void)revents;
	get_status(o, &st);
	o->was_ready |= st.ready;
	/* A chained relay's sign of life is its upstream stream moving. */
	if (o->env.upstream)
		a = st.main_up && st.head_age >= 0 && st.head_age < w->repeat ? o->activity + 1 : o->activity;
	if (a != o->activity || !o->was_ready)
		sd_notify(0, "WATCHDOG=1");
	else
		log_warning("no PostgreSQL activity for %.1f s: withholding the watchdog ping", w->repeat);
	o->activity = a;
}

/* Fails (-EADDRINUSE) only when another process accepts on the admin
 * socket: a second daemon must not start beside a running one.  Any other
 * trouble with an endpoint is logged and the relay runs without it. */
static int start_endpoints(Ops *o, char *ret_err, size_t errlen)
{
	const struct conf_values *cv = o->env.cv;
	struct admin_env aenv;
	char err[512];

	if (cv->admin_socket[0] && net_unix_alive(cv->admin_socket)) {
		snprintf(ret_err, errlen, "another process (a running nvsrelayd?) accepts connections on the admin "
			 "socket %s: refusing to start beside it", cv->admin_socket);
		return -EADDRINUSE;
	}

	if (cv->http_listen[0]) {
		o->http = http_new(o->env.loop, cv->http_listen, handler, o, err, sizeof(err));
		if (o->http)
			log_notice("http listening address=%s", cv->http_listen);
		else
			log_err("http endpoint disabled: %s", err);
	}
	if (cv->admin_socket[0]) {
		aenv.loop = o->env.loop;
		aenv.hub = o->env.hub;
		aenv.relay = o->env.relay;
		aenv.cv = cv;
		aenv.start_time = ev_time();
		aenv.reload = o->env.reload;
		aenv.health = admin_health;
		aenv.source = admin_source;
		aenv.health_arg = o;
		o->admin = admin_new(&aenv, cv->admin_socket, err, sizeof(err));
		if (o->admin)
			log_notice("admin socket listening socket=%s", cv->admin_socket);
		else
			log_err("admin socket disabled: %s", err);
	}
	return 0;
}

Ops *ops_new(const struct ops_env *env, char *err, size_t errlen)
{
	Ops *o = calloc(1, sizeof(*o));
	uint64_t usec = 0;

	snprintf(err, errlen, "out of memory");
	if (!o)
		return NULL;
	o->env = *env;
	metrics_set(M_BUILD_INFO, NVSRELAY_VERSION, 1);
	metrics_set(M_START_TIME, NULL, ev_time());
	if (env->relay)
		o->stats = pgstats_new(env->loop, env->cv, env->relay);
	if (start_endpoints(o, err, errlen) < 0) {
		pgstats_free(o->stats);
		free(o);
		return NULL;
	}
	o->status_at = ev_now(env->loop);
	ev_timer_init(&o->status, status_cb, STATUS_INTERVAL, STATUS_INTERVAL);
	o->status.data = o;
	ev_timer_start(env->loop, &o->status);
	ev_init(&o->watchdog, watchdog_cb);
	o->watchdog.data = o;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		double iv = (double)usec / 2e6;

		ev_timer_set(&o->watchdog, iv, iv);
		ev_timer_start(env->loop, &o->watchdog);
		o->activity = pgconn_activity();
		log_info("systemd watchdog pinged every %.1f s while PostgreSQL shows activity", iv);
	}
	return o;
}

void ops_free(Ops *o)
{
	if (!o)
		return;
	ev_timer_stop(o->env.loop, &o->status);
	ev_timer_stop(o->env.loop, &o->watchdog);
	http_free(o->http);
	admin_free(o->admin);
	pgstats_free(o->stats);
	free(o);
}

void ops_reconfigure(Ops *o)
{
	if (o)
		pgstats_reconfigure(o->stats);
}
