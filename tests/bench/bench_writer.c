/*
 * bench_writer.c - writes health events the way NVSentinel's store connector
 * does (INSERT INTO health_events ... document::jsonb, one transaction per
 * event), paced open-loop at a target rate by W connections, and records
 * for every transaction the moment its COMMIT was sent: the start of
 * "commit -> subscriber" latency.  Also the out-of-order workload (a random
 * hold between INSERT and COMMIT, some transactions rolled back).
 * Run by tests/bench/bench.pl.
 *
 *   bench_writer --conninfo C --template F --count N --rate R [--writers W]
 *                [--rows-per-tx K] [--hold-max-ms H] [--rollback-pct P]
 *                [--seed S] [--first-seq Q] [--deadline-s D] [--out FILE]
 *
 * FILE gets one line per event: "seq backend_pid t_commit_sent_ns
 * t_commit_done_ns status", status 1 committed, 0 rolled back or failed
 * before COMMIT, 2 unknown (the connection broke during COMMIT); each
 * writer's lines in its commit order (the LISTEN floor maps notifications
 * to events by backend pid and order).  A broken connection is re-opened
 * (PostgreSQL restarts during the restart test).  stdout gets one JSON
 * summary line.  --deadline-s: no transaction starts later than D seconds
 * after the start, so a writer that fell behind its rate does not stretch
 * the run (the summary's "unsent" counts what it left out).
 *
 * Lifecycles (--updates K and/or --pad-max B): each of the N events is
 * inserted with a "pad" of random hex text of --pad-min to --pad-max bytes
 * in its document's metadata (past TOAST's 2 KB when large), then updated
 * K times, each UPDATE its own transaction, as NVSentinel's components do
 * (eviction status, updated_at, and a new bench_seq so each change is an
 * event of its own: seq Q + i*(K+1) + u).  --rate counts lifecycles.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bench.h"

struct opts {
	const char *conninfo, *tmpl, *out;
	long long count, first_seq;
	double rate;
	int writers, rows_per_tx, hold_max_ms, rollback_pct, updates, pad_min, pad_max;
	uint64_t seed;
	uint64_t deadline_ns;	/* absolute; 0: none */
};

struct txrec {
	long long seq;
	int pid;
	uint64_t t0, t1;
	int committed;
};

struct writer {
	const struct opts *o;
	int idx;
	PGconn *pg;
	uint64_t start_ns;
	struct txrec *recs;
	size_t nrecs;
	long long late;		/* transactions sent more than 1 ms behind schedule */
	long long errors;
	pthread_t th;
};

static PGresult *exec_ok(PGconn *pg, const char *sql, const char *what)
{
	PGresult *r = PQexec(pg, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "bench_writer: %s: %s", what, PQerrorMessage(pg));
		PQclear(r);
		return NULL;
	}
	return r;
}

/* After a failed statement: a broken connection is re-opened for up to a
 * minute (the server may be restarting). */
static void recover(struct writer *w)
{
	uint64_t until = bench_now_ns() + 60000000000ull;

	if (PQstatus(w->pg) == CONNECTION_OK) {
		PQclear(PQexec(w->pg, "ROLLBACK"));
		return;
	}
	while (!bench_stop && bench_now_ns() < until) {
		PQreset(w->pg);
		if (PQstatus(w->pg) == CONNECTION_OK)
			return;
		bench_sleep_until(bench_now_ns() + 10000000);
	}
	bench_die("bench_writer: cannot reconnect: %s", PQerrorMessage(w->pg));
}

static int past(const struct opts *o)
{
	return o->deadline_ns && bench_now_ns() > o->deadline_ns;
}

/* One transaction: sql, then COMMIT timed; the record is appended. */
static PGresult *timed_tx(struct writer *w, const char *sql, long long seq, int keep)
{
	PGresult *r = exec_ok(w->pg, sql, "lifecycle"), *c;
	uint64_t t0, t1;

	if (!r) {
		w->errors++;
		recover(w);
		w->recs[w->nrecs++] = (struct txrec){ seq, PQbackendPID(w->pg), 0, 0, 0 };
		return NULL;
	}
	t0 = bench_now_ns();
	c = exec_ok(w->pg, "COMMIT", "commit");
	t1 = bench_now_ns();
	w->recs[w->nrecs++] = (struct txrec){ seq, PQbackendPID(w->pg), t0, t1, c ? 1 : 0 };
	if (!c) {
		w->errors++;
		recover(w);
	}
	PQclear(c);
	if (!keep || !c) {
		PQclear(r);
		return NULL;
	}
	return r;
}

static void *lifecycle_main(void *arg)
{
	static const char *const status[] = { "InProgress", "Succeeded", "Failed", "NotStarted" };
	struct writer *w = arg;
	const struct opts *o = w->o;
	uint64_t rng = o->seed ^ (0x9e3779b97f4a7c15u * (uint64_t)(w->idx + 1));
	char sql[16384], doc[8192], id[64], node[32];
	long long g;
	int u;

	w->recs = calloc((size_t)(o->count / o->writers + 1) * (size_t)(o->updates + 1), sizeof(*w->recs));
	if (!w->recs)
		bench_die("out of memory");
	for (g = w->idx; g < o->count && !bench_stop && !past(o); g += o->writers) {
		uint64_t sched = w->start_ns + (uint64_t)((double)g * 1e9 / o->rate);
		long long seq0 = o->first_seq + g * (o->updates + 1);
		int pad = o->pad_min + (o->pad_max > o->pad_min ? (int)(bench_rand(&rng) % (uint64_t)(o->pad_max - o->pad_min + 1)) : 0);
		char *lit;
		PGresult *r;
		int dl;

		bench_sleep_until(sched);
		if (bench_now_ns() > sched + 1000000)
			w->late++;
		snprintf(node, sizeof(node), "gpu-node-%03u", (unsigned)(bench_rand(&rng) % 512));
		dl = bench_doc_render(o->tmpl, seq0, node, &rng, doc, sizeof(doc));
		if (dl < 0)
			bench_die("document template too large");
		lit = PQescapeLiteral(w->pg, doc, (size_t)dl);
		if (!lit)
			bench_die("escape: %s", PQerrorMessage(w->pg));
		/* md5 text: random hex, so TOAST's compression cannot fold it away. */
		if ((size_t)snprintf(sql, sizeof(sql), "BEGIN; INSERT INTO health_events (node_name, event_type, severity, "
				     "recommended_action, document) VALUES ('%s', 'GpuXidError', 'GPU', 'RESTART_BM', "
				     "jsonb_set(%s::jsonb, '{healthevent,metadata,pad}', to_jsonb((SELECT "
				     "coalesce(left(string_agg(md5(random()::text), ''), %d), '') FROM generate_series(1, %d))))) "
				     "RETURNING id", node, lit, pad, pad / 32 + 1) >= sizeof(sql))
			bench_die("statement too large");
		PQfreemem(lit);
		r = timed_tx(w, sql, seq0, 1);
		if (!r || PQntuples(r) != 1) {
			PQclear(r);
			continue;
		}
		snprintf(id, sizeof(id), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
		for (u = 1; u <= o->updates && !bench_stop; u++) {
			snprintf(sql, sizeof(sql), "BEGIN; UPDATE health_events SET user_pods_eviction_status = '%s', "
				 "updated_at = now(), document = jsonb_set(document, '{healthevent,metadata,bench_seq}', "
				 "to_jsonb('%lld'::text)) WHERE id = '%s'", status[(u - 1) % 4], seq0 + u, id);
			timed_tx(w, sql, seq0 + u, 0);
		}
	}
	return NULL;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	const struct opts *o = w->o;
	uint64_t rng = o->seed ^ (0x9e3779b97f4a7c15u * (uint64_t)(w->idx + 1));
	long long ntx = (o->count + o->rows_per_tx - 1) / o->rows_per_tx;
	int pid = PQbackendPID(w->pg);
	size_t cap = 8192 + (size_t)o->rows_per_tx * 4096;
	char *sql = malloc(cap), doc[8192];
	long long g;

	if (!sql)
		bench_die("out of memory");
	w->recs = calloc((size_t)o->count / (size_t)o->writers + (size_t)o->rows_per_tx + 1, sizeof(*w->recs));
	if (!w->recs)
		bench_die("out of memory");
	for (g = w->idx; g < ntx && !bench_stop && !past(o); g += o->writers) {
		uint64_t sched = w->start_ns + (uint64_t)((double)g * o->rows_per_tx * 1e9 / o->rate);
		long long seq0 = o->first_seq + g * o->rows_per_tx, k, nrows;
		size_t n;
		PGresult *r;
		uint64_t t0, t1;
		int commit = 1;

		nrows = o->count - g * o->rows_per_tx;
		if (nrows > o->rows_per_tx)
			nrows = o->rows_per_tx;
		bench_sleep_until(sched);
		if (bench_now_ns() > sched + 1000000)
			w->late++;
		n = (size_t)snprintf(sql, cap, "BEGIN; INSERT INTO health_events (node_name, event_type, severity, "
				     "recommended_action, document) VALUES ");
		for (k = 0; k < nrows; k++) {
			char node[32], *lit;
			int dl;

			snprintf(node, sizeof(node), "gpu-node-%03u", (unsigned)(bench_rand(&rng) % 512));
			dl = bench_doc_render(o->tmpl, seq0 + k, node, &rng, doc, sizeof(doc));
			if (dl < 0)
				bench_die("document template too large");
			lit = PQescapeLiteral(w->pg, doc, (size_t)dl);
			if (!lit)
				bench_die("escape: %s", PQerrorMessage(w->pg));
			if (n + strlen(lit) + 128 > cap)
				bench_die("statement too large");
			n += (size_t)snprintf(sql + n, cap - n, "%s('%s', 'GpuXidError', 'GPU', 'RESTART_BM', %s::jsonb)",
					      k ? ", " : "", node, lit);
			PQfreemem(lit);
		}
		r = exec_ok(w->pg, sql, "insert");
		if (!r) {
			w->errors++;
			recover(w);
			pid = PQbackendPID(w->pg);
			for (k = 0; k < nrows; k++)
				w->recs[w->nrecs++] = (struct txrec){ seq0 + k, pid, 0, 0, 0 };
			continue;
		}
		PQclear(r);
		if (o->hold_max_ms > 0) {
			uint64_t hold = bench_rand(&rng) % ((uint64_t)o->hold_max_ms * 1000000u + 1);

			bench_sleep_until(bench_now_ns() + hold);
		}
		if (o->rollback_pct > 0 && (int)(bench_rand(&rng) % 100) < o->rollback_pct)
			commit = 0;
		t0 = bench_now_ns();
		r = exec_ok(w->pg, commit ? "COMMIT" : "ROLLBACK", "commit");
		t1 = bench_now_ns();
		PQclear(r);
		if (!r) {
			w->errors++;
			/* A COMMIT that got no answer may or may not have happened. */
			commit = commit && PQstatus(w->pg) != CONNECTION_OK ? 2 : 0;
		}
		for (k = 0; k < nrows; k++)
			w->recs[w->nrecs++] = (struct txrec){ seq0 + k, pid, t0, t1, commit };
		if (!r) {
			recover(w);
			pid = PQbackendPID(w->pg);
		}
	}
	free(sql);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_writer --conninfo C --template F --count N --rate R [--writers W] "
		"[--rows-per-tx K] [--hold-max-ms H] [--rollback-pct P] [--seed S] [--first-seq Q] [--out FILE]\n"
		"       [--updates K] [--pad-min B] [--pad-max B] [--deadline-s D]\n");
	exit(64);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "conninfo", 1, NULL, 'c' }, { "template", 1, NULL, 't' }, { "count", 1, NULL, 'n' },
		{ "rate", 1, NULL, 'r' }, { "writers", 1, NULL, 'w' }, { "rows-per-tx", 1, NULL, 'k' },
		{ "hold-max-ms", 1, NULL, 'H' }, { "rollback-pct", 1, NULL, 'P' }, { "seed", 1, NULL, 's' },
		{ "first-seq", 1, NULL, 'q' }, { "out", 1, NULL, 'o' }, { "updates", 1, NULL, 'u' },
		{ "pad-min", 1, NULL, 'm' }, { "pad-max", 1, NULL, 'M' }, { "deadline-s", 1, NULL, 'D' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { .writers = 1, .rows_per_tx = 1, .first_seq = 1, .seed = 1 };
	struct writer *ws;
	long long committed = 0, rolled = 0, unknown = 0, late = 0, errors = 0;
	uint64_t t_start, t_end;
	double deadline_s = 0;
	size_t sent = 0;
	FILE *f = NULL;
	int c, i;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c': o.conninfo = optarg; break;
		case 't': o.tmpl = optarg; break;
		case 'n': o.count = atoll(optarg); break;
		case 'r': o.rate = atof(optarg); break;
		case 'w': o.writers = atoi(optarg); break;
		case 'k': o.rows_per_tx = atoi(optarg); break;
		case 'H': o.hold_max_ms = atoi(optarg); break;
		case 'P': o.rollback_pct = atoi(optarg); break;
		case 's': o.seed = strtoull(optarg, NULL, 0); break;
		case 'q': o.first_seq = atoll(optarg); break;
		case 'o': o.out = optarg; break;
		case 'u': o.updates = atoi(optarg); break;
		case 'm': o.pad_min = atoi(optarg); break;
		case 'M': o.pad_max = atoi(optarg); break;
		case 'D': deadline_s = atof(optarg); break;
		default: usage();
		}
	}
	if (!o.conninfo || !o.tmpl || o.count <= 0 || o.rate <= 0 || o.writers < 1 || o.rows_per_tx < 1 ||
	    o.updates < 0 || o.pad_min < 0 || o.pad_max < o.pad_min || o.pad_max > 8000)
		usage();
	if ((o.updates || o.pad_max) && (o.rows_per_tx != 1 || o.hold_max_ms || o.rollback_pct))
		bench_die("bench_writer: lifecycles are single-row, without holds or rollbacks");
	o.tmpl = bench_read_file(o.tmpl, NULL);
	if (!o.tmpl)
		bench_die("cannot read the template");
	bench_on_signals();
	ws = calloc((size_t)o.writers, sizeof(*ws));
	if (!ws)
		bench_die("out of memory");
	for (i = 0; i < o.writers; i++) {
		ws[i].o = &o;
		ws[i].idx = i;
		ws[i].pg = PQconnectdb(o.conninfo);
		if (PQstatus(ws[i].pg) != CONNECTION_OK)
			bench_die("bench_writer: connect: %s", PQerrorMessage(ws[i].pg));
	}
	t_start = bench_now_ns() + 20000000;
	if (deadline_s > 0)
		o.deadline_ns = t_start + (uint64_t)(deadline_s * 1e9);
	for (i = 0; i < o.writers; i++) {
		ws[i].start_ns = t_start;
		if (pthread_create(&ws[i].th, NULL, o.updates || o.pad_max ? lifecycle_main : writer_main, &ws[i]) != 0)
			bench_die("pthread_create failed");
	}
	for (i = 0; i < o.writers; i++)
		pthread_join(ws[i].th, NULL);
	t_end = bench_now_ns();
	if (o.out && !(f = fopen(o.out, "w")))
		bench_die("cannot write %s", o.out);
	for (i = 0; i < o.writers; i++) {
		size_t j;

		for (j = 0; j < ws[i].nrecs; j++) {
			const struct txrec *t = &ws[i].recs[j];

			if (f)
				fprintf(f, "%lld %d %llu %llu %d\n", t->seq, t->pid, (unsigned long long)t->t0,
					(unsigned long long)t->t1, t->committed);
			if (t->committed == 1)
				committed++;
			else if (t->committed == 2)
				unknown++;
			else
				rolled++;
		}
		late += ws[i].late;
		errors += ws[i].errors;
		PQfinish(ws[i].pg);
		sent += ws[i].nrecs;
		free(ws[i].recs);
	}
	if (f && fclose(f) != 0)
		bench_die("cannot write %s", o.out);
	printf("{\"committed\":%lld,\"rolled_back\":%lld,\"unknown\":%lld,\"late_tx\":%lld,\"errors\":%lld,"
	       "\"unsent\":%lld,\"seconds\":%.3f,\"start_ns\":%llu,\"end_ns\":%llu}\n",
	       committed, rolled, unknown, late, errors,
	       o.count * (o.updates + 1) - (long long)sent, (double)(t_end - t_start) / 1e9,
	       (unsigned long long)t_start, (unsigned long long)t_end);
	/* Freed so a sanitizer build's leak check can see real leaks. */
	free(ws);
	free((char *)o.tmpl);
	return 0;
}
