/*
 * bench_listen.c - the latency floor: a bare LISTEN client that receives the
 * capture trigger's NOTIFY and nothing else.  No relay can tell a subscriber
 * about a commit sooner than PostgreSQL tells a listener, so every latency
 * figure is read against this one, measured in the same run.
 * Run by tests/bench/bench.pl.
 *
 * With --fetch-by-id it is the second floor, what NVSentinel's hybrid
 * watcher cannot do better than: each notification's payload carries the
 * changelog id ({"id":N,...}, NVSentinel's trigger) and the row is fetched
 * with hybrid's own statement (SELECT ... WHERE table_name = $1 AND id =
 * $2, unnamed, parameters bound per call), but with no cursor, no
 * fetchNewChanges and no recovery set.
 *
 *   bench_listen --conninfo C [--channel CH] [--fetch-by-id] [--expect N]
 *                [--seconds S] [--ready FILE] [--out FILE]
 *
 * FILE gets "backend_pid t_ns 0" per notification, in arrival order (the
 * writer's backend pid and commit order identify the event, whatever the
 * payload); with --fetch-by-id "seq t_ns changelog_id" per fetched row,
 * stamped when the row has arrived.  Exits after N notifications, S
 * seconds, or SIGTERM; stdout gets one JSON summary line.
 */
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench.h"

static const char by_id_sql[] =
	"\n\t\tSELECT id, record_id, operation, old_values, new_values, changed_at\n"
	"\t\tFROM datastore_changelog\n"
	"\t\tWHERE table_name = $1 AND id = $2\n\t";

/* The changelog id in a payload like {"id" : 452, "table" : ...}; 0 if none. */
static long long payload_id(const char *p)
{
	const char *k = strstr(p, "\"id\"");

	if (!k)
		return 0;
	k += 4;
	while (*k == ' ' || *k == ':')
		k++;
	return strtoll(k, NULL, 10);
}

/* One row by id; its seq goes to the log.  Returns the rows fetched. */
static int fetch_by_id(PGconn *pg, long long id, struct bench_log *log)
{
	char idbuf[32];
	const char *params[2] = { "health_events", idbuf };
	PGresult *r;
	int i, n = 0;

	snprintf(idbuf, sizeof(idbuf), "%lld", id);
	r = PQexecParams(pg, by_id_sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "bench_listen: fetch by id: %s", PQerrorMessage(pg));
	} else {
		uint64_t now = bench_now_ns();

		n = PQntuples(r);
		for (i = 0; i < n; i++)
			bench_log_add(log, bench_seq_of(PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4)), now, id);
	}
	PQclear(r);
	return n;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "conninfo", 1, NULL, 'c' }, { "channel", 1, NULL, 'C' }, { "expect", 1, NULL, 'n' },
		{ "seconds", 1, NULL, 's' }, { "ready", 1, NULL, 'R' }, { "out", 1, NULL, 'o' },
		{ "fetch-by-id", 0, NULL, 'f' }, { NULL, 0, NULL, 0 }
	};
	const char *conninfo = NULL, *channel = "nvsentinel_changes", *ready = NULL, *out = NULL;
	long long expect = 0, notifies = 0, queries = 0;
	int by_id = 0;
	double seconds = 3600;
	struct bench_log log = { 0 };
	uint64_t deadline, cpu0;
	PGconn *pg;
	PGresult *r;
	char sql[128];
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c': conninfo = optarg; break;
		case 'C': channel = optarg; break;
		case 'n': expect = atoll(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'R': ready = optarg; break;
		case 'o': out = optarg; break;
		case 'f': by_id = 1; break;
		default: exit(64);
		}
	}
	if (!conninfo)
		bench_die("usage: bench_listen --conninfo C [--channel CH] [--fetch-by-id] [--expect N] [--seconds S] [--ready F] [--out F]");
	bench_on_signals();
	pg = PQconnectdb(conninfo);
	if (PQstatus(pg) != CONNECTION_OK)
		bench_die("bench_listen: connect: %s", PQerrorMessage(pg));
	snprintf(sql, sizeof(sql), "LISTEN %s", channel);
	r = PQexec(pg, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		bench_die("bench_listen: %s", PQerrorMessage(pg));
	PQclear(r);
	cpu0 = bench_cpu_ns();
	deadline = bench_now_ns() + (uint64_t)(seconds * 1e9);
	bench_ready(ready);
	while (!bench_stop && (expect == 0 || notifies < expect)) {
		struct pollfd p = { .fd = PQsocket(pg), .events = POLLIN };
		uint64_t now = bench_now_ns();
		PGnotify *n;

		if (now >= deadline)
			break;
		if (poll(&p, 1, (int)((deadline - now) / 1000000 + 1)) <= 0)
			continue;
		now = bench_now_ns();
		if (!PQconsumeInput(pg))
			bench_die("bench_listen: %s", PQerrorMessage(pg));
		/* Fetches run between PQnotifies calls: libpq queues the
		 * notifications that arrive with their results. */
		while ((n = PQnotifies(pg)) != NULL) {
			notifies++;
			if (by_id) {
				fetch_by_id(pg, payload_id(n->extra), &log);
				queries++;
			} else {
				bench_log_add(&log, n->be_pid, now, 0);
			}
			PQfreemem(n);
		}
	}
	if (bench_log_write(&log, out) < 0)
		bench_die("cannot write %s", out);
	printf("{\"notifications\":%lld,\"rows\":%zu,\"queries\":%lld,\"cpu_s\":%.3f}\n", notifies, log.n, queries,
	       (double)(bench_cpu_ns() - cpu0) / 1e9);
	PQfinish(pg);
	return 0;
}
