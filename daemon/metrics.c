/*
 * metrics.c - the metric catalogue, the process-wide registry and the
 * Prometheus text exposition.  Called from everywhere in the daemon with
 * one-line updates; rendered by ops.c for GET /metrics; unit-tested by
 * tests/unit/test_metrics.c.
 *
 * Names follow Prometheus conventions: the nvsrelay_ prefix, base units
 * (seconds, bytes), _total on counters.  A family has at most one label, and
 * at most METRICS_MAX_SERIES values of it (METRICS_MAX_CONSUMERS for the
 * per-consumer families); further values share the series
 * labelled "other".  Recording is best-effort: when memory runs out an
 * update is dropped rather than failing the caller.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "utf8.h"

enum mtype { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

#define MF_SPARSE 0x1   /* no sample until first set (sampled from PostgreSQL) */

struct family {
	const char *name;
	enum mtype type;
	const char *label;          /* label name, or NULL */
	unsigned flags;
	const double *bounds;       /* histogram upper bounds, ascending */
	size_t nbounds;
	const char *help;
};

static const double rows_bounds[] = { 0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000 };
static const double secs_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
				      0.25, 0.5, 1, 2.5, 5, 10, 30 };

static const double latency_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
					  300 };

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define F(id, n, t, l, fl, ...) [id] = { .name = "nvsrelay_" n, .type = t, .label = l, .flags = fl, __VA_ARGS__ }

static const struct family families[M_COUNT] = {
	F(M_BUILD_INFO, "build_info", MT_GAUGE, "version", MF_SPARSE,
	  .help = "Always 1; the label carries the nvsrelayd version."),
	F(M_START_TIME, "start_time_seconds", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Start time of the process since the Unix epoch, in seconds."),
	F(M_READY, "ready", MT_GAUGE, NULL, 0,
	  .help = "1 when the schema is verified, the main connection is up and ticks are being read."),
	F(M_TICKER_LEADER, "ticker_leader", MT_GAUGE, NULL, 0,
	  .help = "1 when this relay holds the ticker lock and writes the snapshot ticks."),
	F(M_HEAD_TICK, "head_tick", MT_GAUGE, NULL, 0,
	  .help = "Tick id of the live head: every batch up to it has been read."),
	F(M_TICKS_WRITTEN, "ticks_written_total", MT_COUNTER, NULL, 0,
	  .help = "Snapshot ticks written by this relay while it was the ticker."),
	F(M_TICKS_READ, "ticks_read_total", MT_COUNTER, NULL, 0,
	  .help = "Live reads that ended at a batch's end (one read may span several small batches)."),
	F(M_BATCH_ROWS, "batch_rows", MT_HISTOGRAM, NULL, 0, .bounds = rows_bounds, .nbounds = N(rows_bounds),
	  .help = "Changelog rows per live read (one page of a batch; batch_rows caps a page)."),
	F(M_EVENTS_READ, "events_read_total", MT_COUNTER, NULL, 0,
	  .help = "Change events read from the changelog by the live reader."),
	F(M_EVENTS_DELIVERED, "events_delivered_total", MT_COUNTER, NULL, 0,
	  .help = "Event frames queued to subscribers (one per subscription that receives it)."),
	F(M_BOOKMARKS_SENT, "bookmarks_sent_total", MT_COUNTER, NULL, 0,
	  .help = "Bookmark frames queued to subscribers."),
	F(M_ACKS, "acks_total", MT_COUNTER, NULL, 0,
	  .help = "Acknowledgements received from subscribers."),
	F(M_RING_EVENTS, "ring_events", MT_GAUGE, NULL, 0,
	  .help = "Recent events held in memory for subscribers that are a little behind."),
	F(M_SUBSCRIBERS, "subscribers", MT_GAUGE, NULL, 0,
	  .help = "Active subscriptions (watch streams)."),
	F(M_CLIENTS, "clients", MT_GAUGE, NULL, 0,
	  .help = "Connected subscriber connections."),
	F(M_DISCONNECTS, "client_disconnects_total", MT_COUNTER, "reason", 0,
	  .help = "Subscriber connections closed, by reason."),
	F(M_REFUSALS, "client_refusals_total", MT_COUNTER, "reason", 0,
	  .help = "Subscriber connections and requests refused, by reason (max_clients, auth_failed, frame_too_large, ...)."),
	F(M_SLOW_DROPS, "slow_consumer_drops_total", MT_COUNTER, "reason", 0,
	  .help = "Slow subscribers disconnected, by limit (hard_limit, soft_limit, stalled)."),
	F(M_CONSUMER_LAG_EVENTS, "consumer_lag_events", MT_GAUGE, "consumer", 0,
	  .help = "Events of its table after the durable consumer's acknowledged position (lower bound when it is behind the ring)."),
	F(M_CONSUMER_LAG_SECONDS, "consumer_lag_seconds", MT_GAUGE, "consumer", 0,
	  .help = "Age of the oldest event the durable consumer has not acknowledged; 0 when caught up."),
	F(M_CONSUMER_TOKEN_AGE, "consumer_token_age_seconds", MT_GAUGE, "consumer", 0,
	  .help = "Seconds since the durable consumer's acknowledged position last moved."),
	F(M_CONSUMER_BUFFERED, "consumer_buffered_bytes", MT_GAUGE, "consumer", 0,
	  .help = "Bytes queued to the durable consumer's connection and not yet written."),
	F(M_CONSUMER_CONNECTED, "consumer_connected", MT_GAUGE, "consumer", 0,
	  .help = "1 while the durable consumer has a subscription on this relay; 0 for one known to resume_tokens (seen within consumer_idle_hours) that has none."),
	F(M_CONSUMER_SEEN_AGE, "consumer_last_seen_seconds", MT_GAUGE, "consumer", 0,
	  .help = "Seconds since resume_tokens.last_updated of the durable consumer (each position write, and every prune_interval_s while it is connected to any relay)."),
	F(M_RETENTION_PRUNED, "retention_pruned_rows_total", MT_COUNTER, NULL, 0,
	  .help = "Changelog rows deleted by retention (only the ticker prunes)."),
	F(M_RETENTION_OLDEST, "retention_oldest_change_age_seconds", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Age of the oldest change still in datastore_changelog (0 when it is empty)."),
	F(M_RETENTION_HOLDER, "retention_holding_consumer", MT_GAUGE, "consumer", MF_SPARSE,
	  .help = "1 for the durable consumer with the oldest position among those that hold the changelog back (seen within consumer_idle_hours)."),
	F(M_PG_UP, "pg_connection_up", MT_GAUGE, "conn", 0,
	  .help = "1 when the PostgreSQL connection is up and its session is set up."),
	F(M_PG_RECONNECTS, "pg_reconnects_total", MT_COUNTER, "conn", 0,
	  .help = "Connection attempts after a lost connection or a failed attempt."),
	F(M_PG_POOL_SIZE, "pg_pool_connections", MT_GAUGE, NULL, 0,
	  .help = "PostgreSQL connections the relay keeps."),
	F(M_PG_POOL_UP, "pg_pool_connections_up", MT_GAUGE, NULL, 0,
	  .help = "PostgreSQL connections that are up."),
	F(M_PG_POOL_BUSY, "pg_pool_connections_busy", MT_GAUGE, NULL, 0,
	  .help = "PostgreSQL connections with a query in flight (utilisation = busy / connections)."),
	F(M_PG_QUERY_SECONDS, "pg_query_duration_seconds", MT_HISTOGRAM, "kind", 0,
	  .bounds = secs_bounds, .nbounds = N(secs_bounds),
	  .help = "Time from sending a query to its last result, by query kind."),
	F(M_PG_QUERY_ERRORS, "pg_query_errors_total", MT_COUNTER, "kind", 0,
	  .help = "Queries that failed or lost their connection, by query kind."),
	F(M_PG_REPLICA_PAGES, "pg_replica_pages_total", MT_COUNTER, "from", 0,
	  .help = "Pages tried on the hot standby: read there, or from the primary because it had not replayed them."),
	F(M_PG_TABLE_ROWS, "pg_table_rows", MT_GAUGE, "table", MF_SPARSE,
	  .help = "Estimated rows of the relay's tables (pg_class.reltuples, else live tuples)."),
	F(M_PG_TABLE_BYTES, "pg_table_size_bytes", MT_GAUGE, "table", MF_SPARSE,
	  .help = "Size of the relay's tables with indexes and TOAST (pg_total_relation_size)."),
	F(M_PG_TABLE_GROWTH, "pg_table_growth_bytes_per_second", MT_GAUGE, "table", MF_SPARSE,
	  .help = "Growth of pg_table_size_bytes between the last two samples."),
	F(M_PG_OLDEST_XACT, "pg_oldest_xact_age_seconds", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Age of the oldest open transaction holding an xid in this database (0 when none)."),
	F(M_PG_NOTIFY_QUEUE, "pg_notification_queue_usage_ratio", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Fraction of the NOTIFY queue in use (pg_notification_queue_usage)."),
	F(M_PG_XACT_COMMIT, "pg_xact_commit_total", MT_COUNTER, NULL, MF_SPARSE,
	  .help = "Transactions committed in this database (pg_stat_database.xact_commit)."),
	F(M_PG_INDEX_HIT, "pg_index_hit_ratio", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Index blocks found in shared buffers over all index blocks read (pg_statio_user_indexes)."),
	F(M_PG_REPLICAS, "pg_replicas", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Streaming replicas connected to the primary (pg_stat_replication)."),
	F(M_PG_REPLICATION_LAG, "pg_replication_lag_seconds", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "Largest replay lag of the streaming replicas; absent without replicas."),
	F(M_PG_STATS_TIME, "pg_stats_timestamp_seconds", MT_GAUGE, NULL, MF_SPARSE,
	  .help = "When the PostgreSQL statistics above were last sampled, since the Unix epoch."),
	F(M_CAPTURE_ACTIVE, "capture_active", MT_GAUGE, "table", MF_SPARSE,
	  .help = "1 while the table's capture trigger and the changelog's xid default are in place; 0: its changes are not captured."),
	F(M_HTTP_REQUESTS, "http_requests_total", MT_COUNTER, "code", 0,
	  .help = "HTTP requests answered, by status code."),
	F(M_ADMIN_COMMANDS, "admin_commands_total", MT_COUNTER, "cmd", 0,
	  .help = "Admin socket commands received, by command."),
	F(M_RELOADS, "config_reloads_total", MT_COUNTER, "result", 0,
	  .help = "Configuration reloads (SIGHUP or the admin socket), by result."),
	F(M_DELIVERY_LATENCY, "delivery_latency_seconds", MT_HISTOGRAM, NULL, 0,
	  .bounds = latency_bounds, .nbounds = N(latency_bounds),
	  .help = "From a change's changed_at (set by the capture trigger) to its frame being queued to a live "
		  "subscriber's connection; events read back from PostgreSQL for a subscriber behind the ring "
		  "are not counted (their age is consumer lag)."),
	F(M_REMOVED_POSITION_RESUMES, "removed_position_resumes_total", MT_COUNTER, NULL, 0,
	  .help = "NVSentinel positions (eventID) whose changelog row was already removed, resumed after it."),
	F(M_LOST_TICK_READS, "lost_tick_reads_total", MT_COUNTER, NULL, 0,
	  .help = "Reads from a position on a tick a PostgreSQL crash took before it reached the disk; read on "
		  "from the tick before it, so events after that tick were delivered again."),
	F(M_LIVE_POSITION_LOST, "live_position_lost_total", MT_COUNTER, NULL, 0,
	  .help = "Times the live reader's position was pruned before it was read (a standby relay behind another "
		  "relay's retention caps): every subscription ended with 286 and reading went on from the newest tick."),
};

struct series {
	char *label;                /* NULL in an unlabelled family */
	double v;                   /* counter/gauge value, histogram sum */
	unsigned long long count;   /* histogram observations */
	unsigned long long *buckets;/* per bound, plus +Inf; not cumulative */
};

struct fstate {
	struct series *s;
	size_t n, cap;
};

static struct fstate reg[M_COUNT];

static void series_free(struct series *s)
{
	free(s->label);
	free(s->buckets);
}

static struct series *series_new(enum metric_id id, const char *label)
{
	const struct family *f = &families[id];
	struct fstate *st = &reg[id];
	struct series *s;

	if (st->n == st->cap) {
		size_t cap = st->cap ? 2 * st->cap : 4;
		struct series *p = realloc(st->s, cap * sizeof(*p));

		if (!p)
			return NULL;
		st->s = p;
		st->cap = cap;
	}
	s = &st->s[st->n];
	memset(s, 0, sizeof(*s));
	if (f->label && !(s->label = strdup(label)))
		return NULL;
	if (f->type == MT_HISTOGRAM && !(s->buckets = calloc(f->nbounds + 1, sizeof(*s->buckets)))) {
		free(s->label);
		return NULL;
	}
	st->n++;
	return s;
}

static struct series *find(enum metric_id id, const char *label)
{
	struct fstate *st = &reg[id];

	if (!families[id].label)
		return st->n ? &st->s[0] : NULL;
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->s[i].label, label) == 0)
			return &st->s[i];
	return NULL;
}

static size_t max_series(enum metric_id id)
{
	return strcmp(families[id].label, "consumer") == 0 ? METRICS_MAX_CONSUMERS : METRICS_MAX_SERIES;
}

/* The series for label, created if need be; a new label past the cap goes
 * to "other".  *fresh tells a new series from an existing one. */
static struct series *lookup(enum metric_id id, const char *label, bool *fresh)
{
	struct series *s;

	*fresh = false;
	if ((unsigned)id >= M_COUNT)
		return NULL;
	if (families[id].label && !label)
		label = "";
	if ((s = find(id, label)))
		return s;
	if (families[id].label && reg[id].n >= max_series(id)) {
		label = METRICS_OTHER;
		if ((s = find(id, label)))
			return s;
	}
	*fresh = true;
	return series_new(id, label);
}

void metrics_add(enum metric_id id, const char *label, double v)
{
	bool fresh;
	struct series *s = lookup(id, label, &fresh);
	const struct family *f;
	size_t b;

	if (!s)
		return;
	f = &families[id];
	if (f->type != MT_HISTOGRAM) {
		s->v += v;
		return;
	}
	/* The first bound not below v; NaN lands in +Inf. */
	for (b = 0; b < f->nbounds && !(v <= f->bounds[b]); b++)
		;
	s->buckets[b]++;
	s->count++;
	s->v += v;
}

void metrics_set(enum metric_id id, const char *label, double v)
{
	bool fresh;
	struct series *s = lookup(id, label, &fresh);

	if (s && families[id].type != MT_HISTOGRAM)
		s->v = v;
}

void metrics_max(enum metric_id id, const char *label, double v)
{
	bool fresh;
	struct series *s = lookup(id, label, &fresh);

	if (s && families[id].type != MT_HISTOGRAM && (fresh || v > s->v))
		s->v = v;
}

void metrics_clear(enum metric_id id)
{
	struct fstate *st;

	if ((unsigned)id >= M_COUNT)
		return;
	st = &reg[id];
	for (size_t i = 0; i < st->n; i++)
		series_free(&st->s[i]);
	st->n = 0;
}

double metrics_get(enum metric_id id, const char *label)
{
	const struct series *s;

	if ((unsigned)id >= M_COUNT)
		return 0;
	s = find(id, label ? label : "");
	if (!s)
		return 0;
	return families[id].type == MT_HISTOGRAM ? (double)s->count : s->v;
}

void metrics_reset(void)
{
	for (int id = 0; id < M_COUNT; id++) {
		metrics_clear((enum metric_id)id);
		free(reg[id].s);
		reg[id].s = NULL;
		reg[id].cap = 0;
	}
}

const char *metrics_label(const char *text, char *buf, size_t len)
{
	size_t n = 0;
	bool sep = false;

	if (len == 0)
		return "";
	for (const char *p = text ? text : ""; *p && n + 1 < len && n < 40; p++) {
		char ch = *p;

		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
			if (sep && n > 0) {
				if (n + 2 >= len || n + 2 > 40)
					break;
				buf[n++] = '_';
			}
			sep = false;
			buf[n++] = ch;
		} else {
			sep = true;
		}
	}
	buf[n] = '\0';
	if (n == 0)
		snprintf(buf, len, "unknown");
	return buf;
}

/* --- rendering ----------------------------------------------------------- */

struct out {
	char *buf;
	size_t len, cap;
	bool oom;
};

static void out_reserve(struct out *o, size_t n)
{
	size_t cap;
	char *p;

	if (o->oom || o->len + n + 1 <= o->cap)
		return;
	for (cap = o->cap ? o->cap : 8192; cap < o->len + n + 1; cap *= 2)
		;
	if (!(p = realloc(o->buf, cap))) {
		o->oom = true;
		return;
	}
	o->buf = p;
	o->cap = cap;
}

static void out_mem(struct out *o, const char *s, size_t n)
{
	out_reserve(o, n);
	if (o->oom)
		return;
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

static void out_str(struct out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void out_fmt(struct out *o, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_mem(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* The shortest decimal that reads back as v, in Prometheus' spelling of
 * the special values. */
static void out_num(struct out *o, double v)
{
	char tmp[40];

	if (isnan(v)) {
		out_str(o, "NaN");
		return;
	}
	if (isinf(v)) {
		out_str(o, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	out_str(o, tmp);
}

/* A label value as the format wants it: \\, \" and \n escaped.  Other
 * control characters and bytes that are not UTF-8 become '?', since a
 * scraper rejects the whole page for one bad byte. */
static void out_label_value(struct out *o, const char *v)
{
	const unsigned char *s = (const unsigned char *)v;

	while (*s) {
		size_t n = utf8_len(s);

		if (*s == '\\' || *s == '"') {
			out_mem(o, "\\", 1);
			out_mem(o, (const char *)s, 1);
		} else if (*s == '\n') {
			out_str(o, "\\n");
		} else if (n == 0 || *s < 0x20 || *s == 0x7f) {
			out_str(o, "?");
			n = 1;
		} else {
			out_mem(o, (const char *)s, n);
			s += n;
			continue;
		}
		s++;
	}
}

/* name{label="value",le="bound"} with either part optional. */
static void out_name(struct out *o, const struct family *f, const char *suffix,
		     const struct series *s, const char *le)
{
	out_str(o, f->name);
	out_str(o, suffix);
	if (!s->label && !le)
		return;
	out_str(o, "{");
	if (s->label) {
		out_str(o, f->label);
		out_str(o, "=\"");
		out_label_value(o, s->label);
		out_str(o, "\"");
	}
	if (le) {
		out_str(o, s->label ? ",le=\"" : "le=\"");
		out_str(o, le);
		out_str(o, "\"");
	}
	out_str(o, "}");
}

static void render_series(struct out *o, const struct family *f, const struct series *s)
{
	unsigned long long cum = 0;
	char le[40];

	if (f->type != MT_HISTOGRAM) {
		out_name(o, f, "", s, NULL);
		out_str(o, " ");
		out_num(o, s->v);
		out_str(o, "\n");
		return;
	}
	for (size_t b = 0; b <= f->nbounds; b++) {
		cum += s->buckets ? s->buckets[b] : 0;
		if (b < f->nbounds)
			snprintf(le, sizeof(le), "%.15g", f->bounds[b]);
		else
			snprintf(le, sizeof(le), "+Inf");
		out_name(o, f, "_bucket", s, le);
		out_fmt(o, " %llu\n", cum);
	}
	out_name(o, f, "_sum", s, NULL);
	out_str(o, " ");
	out_num(o, s->v);
	out_str(o, "\n");
	out_name(o, f, "_count", s, NULL);
	out_fmt(o, " %llu\n", s->count);
}

char *metrics_render(size_t *ret_len)
{
	static const char *const type_names[] = { "counter", "gauge", "histogram" };
	struct out o = { NULL, 0, 0, false };

	out_reserve(&o, 0);
	for (int id = 0; id < M_COUNT; id++) {
		const struct family *f = &families[id];
		const struct fstate *st = &reg[id];
		/* An unlabelled family that nothing set yet shows its zero, so
		 * rate() has a starting point; sampled ones stay absent. */
		struct series zero = { NULL, 0, 0, NULL };
		bool show_zero = !f->label && !(f->flags & MF_SPARSE) && st->n == 0;

		if (st->n == 0 && !show_zero)
			continue;
		out_fmt(&o, "# HELP %s ", f->name);
		out_str(&o, f->help);
		out_fmt(&o, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
		if (show_zero)
			render_series(&o, f, &zero);
		for (size_t i = 0; i < st->n; i++)
			render_series(&o, f, &st->s[i]);
	}
	if (o.oom) {
		free(o.buf);
		return NULL;
	}
	if (ret_len)
		*ret_len = o.len;
	return o.buf;
}
