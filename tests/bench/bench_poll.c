/*
 * bench_poll.c - the incumbent: NVSentinel's PostgreSQL change-stream
 * emulation (store-client changestream.go) re-implemented in C with libpq,
 * so the relay is measured against what NVSentinel's components run today.
 * Run by tests/bench/bench.pl.
 *
 * What is reproduced, and how (see the bench README for the sources):
 * - the cursor (lastTimestamp, lastEventID), starting at "now" with id 0
 *   (no stored resume token);
 * - fetchNewChanges: one statement per poll, parameters bound per call (an
 *   unnamed statement, as lib/pq does), WHERE table_name = $1 AND
 *   (changed_at > $2 OR (changed_at = $2 AND id > $3)) ORDER BY changed_at,
 *   id LIMIT 100; one fetch per tick, never "until empty";
 * - advancePosition: per row, id > lastEventID moves both halves of the
 *   cursor to that row; the row is decoded (new_values parsed as JSON; for
 *   an UPDATE old_values too, and the changed leaves collected as
 *   findUpdatedFields does) and handed on;
 * - polling mode: a 10 ms ticker (Go's time.Ticker: ticks missed while a
 *   fetch runs collapse into one);
 * - hybrid mode: a dedicated LISTEN connection on nvsentinel_changes; each
 *   notification {"id":N,...} fetches row N by id (also when N is below the
 *   cursor and not among the last 10,000 ids seen: the #1469 recovery),
 *   then, when N was above the cursor, runs fetchNewChanges; a fallback
 *   poller checks every 30 s and polls every 5 s while no NOTIFY came for
 *   more than 30 s.  It needs NVSentinel's own trigger (payload with the
 *   changelog id): bench.pl installs it for the hybrid runs.
 *
 *   bench_poll --conninfo C (--interval-ms MS | --hybrid) [--table T]
 *              [--expect N] [--seconds S] [--ready FILE] [--out FILE]
 *
 * FILE gets "seq t_ns changelog_id" per delivered row (duplicates
 * included).  stdout gets one JSON summary line.
 */
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "bench.h"

#define RECENT_LIMIT 10000
#define RECENT_SLOTS 32768	/* power of two, > 2 * RECENT_LIMIT */

static const char fetch_sql[] =
	"\n\t\tSELECT id, record_id, operation, old_values, new_values, changed_at\n"
	"\t\tFROM datastore_changelog\n"
	"\t\tWHERE table_name = $1\n"
	"\t\t  AND (\n"
	"\t\t      changed_at > $2\n"
	"\t\t      OR (changed_at = $2 AND id > $3)\n"
	"\t\t  )\n"
	"\t\tORDER BY changed_at ASC, id ASC\n"
	"\t\tLIMIT 100\n\t";

static const char by_id_sql[] =
	"\n\t\tSELECT id, record_id, operation, old_values, new_values, changed_at\n"
	"\t\tFROM datastore_changelog\n"
	"\t\tWHERE table_name = $1 AND id = $2\n\t";

struct watcher {
	PGconn *db;
	const char *table;
	char last_ts[64];
	long long last_id;
	/* recentEventIDs: the last RECENT_LIMIT ids, in a ring plus an
	 * open-addressing set (Go: a map and a slice). */
	long long ring[RECENT_LIMIT];
	size_t ring_n, ring_head;
	long long slots[RECENT_SLOTS];
	struct bench_log log;
	struct bench_seen seen;
	long long queries, rows, updated;
};

static size_t slot_of(long long id)
{
	return (size_t)(((unsigned long long)id * 0x9e3779b97f4a7c15ull) >> 49) & (RECENT_SLOTS - 1);
}

static int recent_has(const struct watcher *w, long long id)
{
	size_t i = slot_of(id);

	while (w->slots[i]) {
		if (w->slots[i] == id)
			return 1;
		i = (i + 1) & (RECENT_SLOTS - 1);
	}
	return 0;
}

static void recent_del(struct watcher *w, long long id)
{
	size_t i = slot_of(id), j;

	while (w->slots[i] && w->slots[i] != id)
		i = (i + 1) & (RECENT_SLOTS - 1);
	if (!w->slots[i])
		return;
	w->slots[i] = 0;
	/* Re-insert the rest of the cluster (linear probing deletion). */
	for (j = (i + 1) & (RECENT_SLOTS - 1); w->slots[j]; j = (j + 1) & (RECENT_SLOTS - 1)) {
		long long v = w->slots[j];
		size_t k = slot_of(v);

		w->slots[j] = 0;
		while (w->slots[k])
			k = (k + 1) & (RECENT_SLOTS - 1);
		w->slots[k] = v;
	}
}

static void recent_add(struct watcher *w, long long id)
{
	size_t i;

	if (id <= 0 || recent_has(w, id))
		return;
	if (w->ring_n == RECENT_LIMIT) {
		recent_del(w, w->ring[w->ring_head]);
		w->ring[w->ring_head] = id;
		w->ring_head = (w->ring_head + 1) % RECENT_LIMIT;
	} else {
		w->ring[(w->ring_head + w->ring_n) % RECENT_LIMIT] = id;
		w->ring_n++;
	}
	i = slot_of(id);
	while (w->slots[i])
		i = (i + 1) & (RECENT_SLOTS - 1);
	w->slots[i] = id;
}

/* findUpdatedFields + flattenMap: the leaves of nv that differ from ov,
 * counted (Go builds a map of dot paths; the walk is the cost). */
static long long updated_fields(const cJSON *ov, const cJSON *nv)
{
	const cJSON *k;
	long long n = 0;

	cJSON_ArrayForEach(k, nv) {
		const cJSON *o = ov ? cJSON_GetObjectItemCaseSensitive(ov, k->string) : NULL;

		if (cJSON_IsObject(k))
			n += updated_fields(cJSON_IsObject(o) ? o : NULL, k);
		else if (!o || !cJSON_Compare(o, k, 1))
			n++;
	}
	return n;
}

/* processChangelogRows + sendEventsToChannel: decode, advance, deliver. */
static void deliver(struct watcher *w, PGresult *r)
{
	int i, n = PQntuples(r);
	uint64_t now;

	for (i = 0; i < n; i++) {
		long long id = atoll(PQgetvalue(r, i, 0));
		const char *nv = PQgetvalue(r, i, 4);
		size_t nvlen = (size_t)PQgetlength(r, i, 4);
		cJSON *doc = PQgetisnull(r, i, 4) ? NULL : cJSON_ParseWithLength(nv, nvlen);
		long long seq = bench_seq_of(nv, nvlen);

		if (doc && !PQgetisnull(r, i, 3) && strcmp(PQgetvalue(r, i, 2), "UPDATE") == 0) {
			cJSON *old = cJSON_ParseWithLength(PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3));

			w->updated += updated_fields(cJSON_GetObjectItemCaseSensitive(old, "document"),
						     cJSON_GetObjectItemCaseSensitive(doc, "document"));
			cJSON_Delete(old);
		}
		cJSON_Delete(doc);
		recent_add(w, id);
		if (id > w->last_id) {
			w->last_id = id;
			snprintf(w->last_ts, sizeof(w->last_ts), "%s", PQgetvalue(r, i, 5));
		}
		now = bench_now_ns();
		bench_log_add(&w->log, seq, now, id);
		bench_seen_add(&w->seen, seq);
		w->rows++;
	}
}

static void fetch_new(struct watcher *w)
{
	char idbuf[32];
	const char *params[3] = { w->table, w->last_ts, idbuf };
	PGresult *r;

	snprintf(idbuf, sizeof(idbuf), "%lld", w->last_id);
	r = PQexecParams(w->db, fetch_sql, 3, NULL, params, NULL, NULL, 0);
	w->queries++;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "bench_poll: fetch: %s", PQerrorMessage(w->db));
	else
		deliver(w, r);
	PQclear(r);
}

static void fetch_by_id(struct watcher *w, long long id)
{
	char idbuf[32];
	const char *params[2] = { w->table, idbuf };
	PGresult *r;

	snprintf(idbuf, sizeof(idbuf), "%lld", id);
	r = PQexecParams(w->db, by_id_sql, 2, NULL, params, NULL, NULL, 0);
	w->queries++;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fprintf(stderr, "bench_poll: fetch by id: %s", PQerrorMessage(w->db));
	else
		deliver(w, r);
	PQclear(r);
}

/* handleNotification */
static void on_notify(struct watcher *w, const char *payload)
{
	cJSON *p = cJSON_Parse(payload);
	const cJSON *idv = p ? cJSON_GetObjectItemCaseSensitive(p, "id") : NULL;
	long long id = cJSON_IsNumber(idv) ? (long long)idv->valuedouble : 0;

	cJSON_Delete(p);
	if (!p)
		return;
	if (id <= w->last_id) {
		if (recent_has(w, id))
			return;
		fetch_by_id(w, id);
		return;
	}
	fetch_by_id(w, id);
	fetch_new(w);
}

static void time_now_text(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + strlen(buf), len - strlen(buf), ".%06ld+00", ts.tv_nsec / 1000);
}

static PGconn *connect_db(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
		bench_die("bench_poll: connect: %s", PQerrorMessage(c));
	PQclear(PQexec(c, "SET application_name = 'bench_poll'"));
	return c;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "conninfo", 1, NULL, 'c' }, { "interval-ms", 1, NULL, 'i' }, { "hybrid", 0, NULL, 'h' },
		{ "table", 1, NULL, 't' }, { "expect", 1, NULL, 'n' }, { "seconds", 1, NULL, 's' },
		{ "ready", 1, NULL, 'R' }, { "out", 1, NULL, 'o' }, { NULL, 0, NULL, 0 }
	};
	static struct watcher w;
	const char *conninfo = NULL, *ready = NULL, *out = NULL;
	double interval_ms = 0, seconds = 3600;
	long long expect = 0, notifies = 0, fallback_polls = 0;
	int hybrid = 0, c;
	PGconn *listener = NULL;
	uint64_t deadline, cpu0, next_tick, last_notify, check_iv;

	w.table = "health_events";
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c': conninfo = optarg; break;
		case 'i': interval_ms = atof(optarg); break;
		case 'h': hybrid = 1; break;
		case 't': w.table = optarg; break;
		case 'n': expect = atoll(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'R': ready = optarg; break;
		case 'o': out = optarg; break;
		default: exit(64);
		}
	}
	if (!conninfo || (!hybrid && interval_ms <= 0))
		bench_die("usage: bench_poll --conninfo C (--interval-ms MS | --hybrid) [--table T] [--expect N] "
			  "[--seconds S] [--ready F] [--out F]");
	bench_on_signals();
	w.db = connect_db(conninfo);
	/* loadResumePosition without a stored token: time.Now(), id 0. */
	time_now_text(w.last_ts, sizeof(w.last_ts));
	w.last_id = 0;
	if (hybrid) {
		PGresult *r;

		listener = connect_db(conninfo);
		r = PQexec(listener, "LISTEN nvsentinel_changes");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			bench_die("bench_poll: LISTEN: %s", PQerrorMessage(listener));
		PQclear(r);
	}
	cpu0 = bench_cpu_ns();
	last_notify = bench_now_ns();
	check_iv = 30000000000ull;
	next_tick = bench_now_ns() + (hybrid ? check_iv : (uint64_t)(interval_ms * 1e6));
	deadline = bench_now_ns() + (uint64_t)(seconds * 1e9);
	bench_ready(ready);
	while (!bench_stop && (expect == 0 || w.seen.distinct < expect)) {
		uint64_t now = bench_now_ns();

		if (now >= deadline)
			break;
		if (!hybrid) {
			if (now < next_tick) {
				bench_sleep_until(next_tick < deadline ? next_tick : deadline);
				continue;
			}
			fetch_new(&w);
			/* Go's ticker: the next tick on the original grid; ticks that
			 * passed during the fetch are collapsed into one. */
			next_tick += (uint64_t)(interval_ms * 1e6);
			now = bench_now_ns();
			if (next_tick <= now) {
				uint64_t iv = (uint64_t)(interval_ms * 1e6);

				next_tick = now + iv - (now - next_tick) % iv;
				fetch_new(&w);
			}
			continue;
		}
		{
			struct pollfd p = { .fd = PQsocket(listener), .events = POLLIN };
			uint64_t until = next_tick < deadline ? next_tick : deadline;
			PGnotify *n;

			if (now >= next_tick) {
				/* adaptiveFallbackPoller */
				if (now - last_notify > 30000000000ull) {
					check_iv = 5000000000ull;
					fetch_new(&w);
					fallback_polls++;
				} else {
					check_iv = 30000000000ull;
				}
				next_tick = now + check_iv;
				continue;
			}
			if (poll(&p, 1, (int)((until - now) / 1000000 + 1)) <= 0)
				continue;
			if (!PQconsumeInput(listener))
				bench_die("bench_poll: %s", PQerrorMessage(listener));
			while ((n = PQnotifies(listener)) != NULL) {
				last_notify = bench_now_ns();
				notifies++;
				on_notify(&w, n->extra);
				PQfreemem(n);
			}
		}
	}
	if (bench_log_write(&w.log, out) < 0)
		bench_die("cannot write %s", out);
	printf("{\"delivered\":%zu,\"distinct\":%lld,\"duplicates\":%lld,\"queries\":%lld,\"rows\":%lld,"
	       "\"updated_fields\":%lld,\"notifications\":%lld,\"fallback_polls\":%lld,\"cpu_s\":%.3f}\n",
	       w.log.n, w.seen.distinct, w.seen.dups, w.queries, w.rows, w.updated, notifies, fallback_polls,
	       (double)(bench_cpu_ns() - cpu0) / 1e9);
	PQfinish(w.db);
	if (listener)
		PQfinish(listener);
	return 0;
}
