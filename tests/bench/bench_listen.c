/*
 * bench_listen.c - the latency floor: a bare LISTEN client that receives the
 * capture trigger's NOTIFY and nothing else.  No relay can tell a subscriber
 * about a commit sooner than PostgreSQL tells a listener, so every latency
 * figure is read against this one, measured in the same run.
 * Run by tests/bench/bench.pl.
 *
 *   bench_listen --conninfo C [--channel CH] [--expect N] [--seconds S]
 *                [--ready FILE] [--out FILE]
 *
 * FILE gets "backend_pid t_ns 0" per notification, in arrival order (the
 * payload is constant per table, so the writer's backend pid and commit
 * order identify the event).  Exits after N notifications, S seconds, or
 * SIGTERM; stdout gets one JSON summary line.
 */
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench.h"

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "conninfo", 1, NULL, 'c' }, { "channel", 1, NULL, 'C' }, { "expect", 1, NULL, 'n' },
		{ "seconds", 1, NULL, 's' }, { "ready", 1, NULL, 'R' }, { "out", 1, NULL, 'o' },
		{ NULL, 0, NULL, 0 }
	};
	const char *conninfo = NULL, *channel = "nvsentinel_changes", *ready = NULL, *out = NULL;
	long long expect = 0;
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
		default: exit(64);
		}
	}
	if (!conninfo)
		bench_die("usage: bench_listen --conninfo C [--channel CH] [--expect N] [--seconds S] [--ready F] [--out F]");
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
	while (!bench_stop && (expect == 0 || (long long)log.n < expect)) {
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
		while ((n = PQnotifies(pg)) != NULL) {
			bench_log_add(&log, n->be_pid, now, 0);
			PQfreemem(n);
		}
	}
	if (bench_log_write(&log, out) < 0)
		bench_die("cannot write %s", out);
	printf("{\"notifications\":%zu,\"cpu_s\":%.3f}\n", log.n, (double)(bench_cpu_ns() - cpu0) / 1e9);
	PQfinish(pg);
	return 0;
}
