/*
 * import.c - `nvsrelay import`: loads a mongoexport of NVSentinel's
 * health_events or maintenance_events collection into the PostgreSQL
 * tables, with the documents and extracted columns NVSentinel's own
 * writers would have stored (conversion: extjson.c).  main.c calls
 * import_main() with argv[0] = "import".
 *
 * All or nothing: one transaction.  Documents are converted here and sent
 * with COPY, in batches, into a temporary table; one INSERT ... SELECT ...
 * ON CONFLICT DO NOTHING then moves them into the real table and COMMIT
 * makes them visible at once.  The staging table is what makes COPY's
 * speed and idempotence go together (COPY itself has no ON CONFLICT), keeps
 * the capture trigger out of the COPY path, and means an error or an
 * interruption at any point leaves the database as it was.  Re-running an
 * import inserts nothing twice: the ids are derived from the Mongo _id.
 *
 * Unless --stream is given, the transaction sets nvsrelay.capture = off,
 * which the capture trigger (sql/004_capture_switch.sql) honours, so the
 * history does not flood the change stream.  Connection settings are the
 * daemon's (conf.c): the configuration file, DATASTORE_* and --set.
 *
 * Exit status: 0 committed (documents skipped with --on-error skip are
 * listed and counted), 1 nothing imported, EX_USAGE (64) bad usage,
 * EX_UNAVAILABLE (69) PostgreSQL not reachable.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cli.h"
#include "conf.h"
#include "conf_load.h"
#include "extjson.h"

#define EXIT_FAILED 1
#define DEFAULT_CONFIG "/etc/nvsrelayd/nvsrelayd.conf"
#define MAX_DOC (64u << 20)         /* well above Mongo's 16 MiB BSON limit */
#define READ_CHUNK (1u << 20)
#define DEFAULT_BATCH 10000
#define STAGE "nvsrelay_import"


extern char **environ;

static volatile sig_atomic_t interrupted;

struct import {
	/* options */
	enum extjson_table table;
	const char *path;           /* NULL or "-": stdin */
	const char *config;
	bool config_given;
	bool require_array;
	bool skip_bad;
	bool stream;
	bool dry_run;
	long batch;
	/* state */
	FILE *in;
	const char *name;           /* the input as messages name it */
	unsigned long long size;    /* 0: unknown (a pipe) */
	PGconn *pg;
	ExtjsonScanner *scan;
	bool tty;                   /* progress as a redrawn bar on stderr */
	double every;               /* else a progress line this often (s); 0 none */
	double t0, last_draw;
	unsigned long read, bad, staged;
	long long inserted;
	/* the batch being converted, as COPY text, and where its rows came from */
	char *copy;
	size_t copy_len, copy_cap;
	unsigned long n, *lines, *index;
	bool insert_pending;         /* the previous batch's INSERT runs on the server */
	unsigned long pending_line;
	char copy_sql[640], insert_sql[2048];
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: nvsrelay import --table TABLE [OPTIONS] [FILE]\n\n"
		"Loads a mongoexport of NVSentinel's health_events or maintenance_events\n"
		"collection (FILE, or standard input when FILE is - or missing) into\n"
		"PostgreSQL, as NVSentinel's writers store them. JSON lines and --jsonArray,\n"
		"compact or --pretty, Extended JSON v1 and v2 (canonical or relaxed) are all\n"
		"read. One transaction: either every good document is imported, or nothing.\n"
		"Documents already present (same id) are left alone, so a re-run is safe.\n\n"
		"  --table TABLE        health_events or maintenance_events (also HealthEvents,\n"
		"                       MaintenanceEvents)\n"
		"  --jsonArray          the input must be one JSON array (detected anyway)\n"
		"  --on-error skip|stop a bad document stops the import (default, nothing is\n"
		"                       imported) or is reported and skipped\n"
		"  --stream             imported rows enter the change stream (default: not;\n"
		"                       subscribers are not flooded with history)\n"
		"  --batch N            documents per COPY (default %d)\n"
		"  --dry-run            only convert and check; nothing is written\n"
		"  --progress SEC       when standard error is no terminal, a progress line every\n"
		"                       SEC seconds (default 10; 0 for none)\n"
		"  -c, --config FILE    nvsrelayd configuration for the connection settings\n"
		"                       (default " DEFAULT_CONFIG " when readable)\n"
		"  --set KEY=VALUE      override one setting, as for nvsrelayd\n\n"
		"Connection: the DATASTORE_* environment variables and configuration keys of\n"
		"nvsrelayd. Progress is shown on standard error: a bar on a terminal, else a\n"
		"line every --progress seconds (a Job's log); the summary goes to standard output, bad documents to standard error as\n"
		"FILE:LINE: document N: reason.\n\n"
		"Exit status: 0 imported; 1 nothing imported (bad input, PostgreSQL error);\n"
		"64 bad usage; 69 PostgreSQL could not be reached.\n",
		DEFAULT_BATCH);
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- configuration --------------------------------------------------------- */

/* The daemon's layering (conf_load): file < environment < --set. */
static Conf *load_conf(struct import *im, char **sets, int nsets, char *err, size_t errlen)
{
	struct conf_sources src = { .file = im->config, .envp = environ,
				    .sets = (const char *const *)sets, .nsets = (size_t)nsets };
	Conf *c;

	return conf_load(&src, &c, err, errlen) == 0 ? c : NULL;
}

/* The daemon's connection parameters, named as this tool, in UTF-8. */
static PGconn *connect_pg(const Conf *conf)
{
	const char *const *keys, *const *vals;
	const char *k[64], *v[64];
	size_t i, n = 0;
	PGconn *pg;

	conf_libpq_params(conf, &keys, &vals);
	for (i = 0; keys[i] && n < 61; i++) {
		if (strcmp(keys[i], "application_name") == 0 || strcmp(keys[i], "client_encoding") == 0)
			continue;
		k[n] = keys[i];
		v[n++] = vals[i];
	}
	k[n] = "application_name";
	v[n++] = "nvsrelay-import";
	k[n] = "client_encoding";
	v[n++] = "UTF8";
	k[n] = NULL;
	v[n] = NULL;
	pg = PQconnectdbParams(k, v, 0);
	return pg;
}

/* --- output ---------------------------------------------------------------- */

static void clear_progress(struct import *im)
{
	if (im->tty && im->last_draw > 0)
		fputs("\r\033[K", stderr);
}

static void bad_doc(struct import *im, unsigned long line, unsigned long index, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void bad_doc(struct import *im, unsigned long line, unsigned long index, const char *fmt, ...)
{
	va_list ap;

	clear_progress(im);
	fprintf(stderr, "%s:%lu: document %lu: ", im->name, line, index);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (im->tty)
		im->last_draw = 0;
}

/* 1234567 -> "1,234,567" */
static const char *grouped(unsigned long v, char buf[32])
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%lu", v), i, o = 0;

	for (i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = tmp[i];
	}
	buf[o] = '\0';
	return buf;
}

static void draw_progress(struct import *im, bool force)
{
	double t = now_s(), el = t - im->t0;
	unsigned long long off = extjson_scanner_offset(im->scan);
	char a[32], b[32];

	/* Off a terminal (a Kubernetes Job's log) whole lines, now and then,
	 * and none at the end: the summary says it all. */
	if (!im->tty) {
		if (force || im->every <= 0 || t - im->last_draw < im->every)
			return;
		im->last_draw = t;
		fprintf(stderr, "nvsrelay import: %s documents, %.1f", grouped(im->read, a), off / 1e6);
		if (im->size)
			fprintf(stderr, " of %.1f MB (%d%%)", im->size / 1e6, (int)(off * 100 / im->size));
		else
			fprintf(stderr, " MB");
		fprintf(stderr, ", %s/s, %.0f s\n", grouped(el > 0 ? (unsigned long)(im->read / el) : 0, b), el);
		fflush(stderr);
		return;
	}
	if (!force && t - im->last_draw < 0.1)
		return;
	im->last_draw = t;
	if (im->size) {
		int pct = (int)(off * 100 / im->size), width = 30, fill = pct * width / 100;
		fprintf(stderr, "\r%3d%% [%.*s%s%*s] %s documents  %.1f/%.1f MB  %s/s ", pct, fill > 0 ? fill - 1 : 0,
			"==============================", fill > 0 ? (pct == 100 ? "=" : ">") : "", width - fill, "",
			grouped(im->read, a), off / 1e6, im->size / 1e6, grouped(el > 0 ? (unsigned long)(im->read / el) : 0, b));
	} else {
		fprintf(stderr, "\r%s documents  %.1f MB  %s/s ", grouped(im->read, a), off / 1e6,
			grouped(el > 0 ? (unsigned long)(im->read / el) : 0, b));
	}
	fflush(stderr);
}

/* --- PostgreSQL ------------------------------------------------------------- */

static bool pg_ok(struct import *im, PGresult *res, const char *what)
{
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN)
		return true;
	clear_progress(im);
	fprintf(stderr, "nvsrelay import: %s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(im->pg));
	return false;
}

static bool exec_ok(struct import *im, const char *sql, const char *what)
{
	PGresult *res = PQexec(im->pg, sql);
	bool ok = pg_ok(im, res, what);

	PQclear(res);
	return ok;
}

/*
 * Refuses to import where the rows would not go where the user expects:
 * the table must exist, and unless --stream every enabled trigger on it
 * must honour nvsrelay.capture (NVSentinel's own DDL, run again by one of
 * its components, puts back a trigger function that does not).
 */
static bool preflight(struct import *im)
{
	const char *params[1] = { extjson_table_name(im->table) };
	PGresult *res;
	bool ok = false;

	res = PQexecParams(im->pg,
			   "SELECT to_regclass($1) IS NOT NULL,"
			   " (SELECT string_agg(t.tgname || ' (function ' || p.proname || ')', ', ' ORDER BY t.tgname)"
			   "  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
			   "  WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal AND t.tgenabled <> 'D'"
			   "   AND p.prosrc NOT LIKE '%nvsrelay.capture%')",
			   1, NULL, params, NULL, NULL, 0);
	if (!pg_ok(im, res, "checking the schema"))
		goto out;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		fprintf(stderr, "nvsrelay import: table %s does not exist: install the schema first "
			"(nvsrelayd --migrate, or start nvsrelayd once)\n", params[0]);
		goto out;
	}
	if (!im->stream && !PQgetisnull(res, 0, 1)) {
		fprintf(stderr, "nvsrelay import: on %s, trigger %s does not honour nvsrelay.capture, so the imported "
			"rows would enter the change stream; install the relay's schema (nvsrelayd --migrate) or pass "
			"--stream\n", params[0], PQgetvalue(res, 0, 1));
		goto out;
	}
	ok = true;
out:
	PQclear(res);
	return ok;
}

/* The staging table (a temporary one, dropped at COMMIT) and the two
 * statements every batch runs: its COPY, then the move into the table. */
static bool begin(struct import *im)
{
	const char *const *cols = extjson_columns(im->table), *t = extjson_table_name(im->table);
	char sql[1024], list[512];
	size_t n = 0, m;
	int i;

	for (i = 0; cols[i]; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", cols[i]);
	/* A batch fits in the session's temporary buffers and never spills;
	 * settable only before the first temporary table. */
	if (!exec_ok(im, "SET temp_buffers = '128MB'", "SET temp_buffers") ||
	    !exec_ok(im, "SET client_min_messages = warning", "SET client_min_messages") || !exec_ok(im, "BEGIN", "BEGIN"))
		return false;
	if (!im->stream && !exec_ok(im, "SET LOCAL nvsrelay.capture = off", "turning capture off"))
		return false;
	snprintf(sql, sizeof(sql), "CREATE TEMPORARY TABLE " STAGE " ON COMMIT DROP AS SELECT %s FROM %s WITH NO DATA",
		 list, t);
	if (!exec_ok(im, sql, "creating the staging table"))
		return false;
	snprintf(im->copy_sql, sizeof(im->copy_sql), "COPY " STAGE " (%s) FROM STDIN", list);
	/* The staging table is only ever appended to, so a scan returns the
	 * rows in export order.  Where a document has no time of its own, the
	 * database's now(), as the column defaults would give.  ON CONFLICT
	 * without a target also passes over rows that collide on
	 * maintenance_events.event_id or NVSentinel's idempotency key index. */
	m = (size_t)snprintf(im->insert_sql, sizeof(im->insert_sql), "INSERT INTO %s (%s) SELECT ", t, list);
	for (i = 0; cols[i]; i++) {
		bool now = strcmp(cols[i], "created_at") == 0 || strcmp(cols[i], "updated_at") == 0 ||
			   strcmp(cols[i], "last_updated_timestamp") == 0;
		m += (size_t)snprintf(im->insert_sql + m, sizeof(im->insert_sql) - m,
				      now ? "%scoalesce(%s, now())" : "%s%s", i ? ", " : "", cols[i]);
	}
	snprintf(im->insert_sql + m, sizeof(im->insert_sql) - m,
		 " FROM " STAGE " ON CONFLICT DO NOTHING; TRUNCATE " STAGE);
	return true;
}

static bool append(struct import *im, const char *s, size_t n)
{
	if (im->copy_len + n + 1 > im->copy_cap) {
		size_t cap = im->copy_cap ? im->copy_cap : 1u << 20;
		char *p;

		while (cap < im->copy_len + n + 1)
			cap *= 2;
		p = realloc(im->copy, cap);
		if (!p)
			return false;
		im->copy = p;
		im->copy_cap = cap;
	}
	memcpy(im->copy + im->copy_len, s, n);
	im->copy_len += n;
	return true;
}

/* One row in COPY's text format: \N for NULL; backslash, tab, newline and
 * carriage return escaped. */
static bool add_row(struct import *im, const struct extjson_row *row, unsigned long line, unsigned long index)
{
	unsigned i;

	for (i = 0; i < row->ncols; i++) {
		const char *v = row->val[i], *p, *run;

		if (i && !append(im, "\t", 1))
			return false;
		if (!v) {
			if (!append(im, "\\N", 2))
				return false;
			continue;
		}
		for (p = run = v;; p++) {
			const char *esc = *p == '\\' ? "\\\\" : *p == '\t' ? "\\t" : *p == '\n' ? "\\n"
					: *p == '\r' ? "\\r" : NULL;
			if (!esc && *p)
				continue;
			if (!append(im, run, (size_t)(p - run)) || (esc && !append(im, esc, 2)))
				return false;
			if (!*p)
				break;
			run = p + 1;
		}
	}
	if (!append(im, "\n", 1))
		return false;
	im->lines[im->n] = line;
	im->index[im->n] = index;
	im->n++;
	im->staged++;
	return true;
}

/* Collects the previous batch's INSERT and TRUNCATE. */
static bool finish_insert(struct import *im)
{
	PGresult *res;
	bool ok = true, first = true;

	if (!im->insert_pending)
		return true;
	im->insert_pending = false;
	while ((res = PQgetResult(im->pg))) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			if (ok) {
				clear_progress(im);
				fprintf(stderr, "%s: the batch from line %lu on: PostgreSQL refused it: %s", im->name,
					im->pending_line, PQresultErrorMessage(res));
			}
			ok = false;
		} else if (first) {
			im->inserted += strtoll(PQcmdTuples(res), NULL, 10);
		}
		first = false;
		PQclear(res);
	}
	return ok;
}

/*
 * Sends the converted batch: COPY into the staging table (a row PostgreSQL
 * refuses is named by its input line), then the move into the table, which
 * is left running while the next batch is converted.
 */
static bool flush(struct import *im)
{
	PGresult *res;
	size_t off;
	bool ok;

	if (im->n == 0)
		return true;
	if (!finish_insert(im))
		return false;
	res = PQexec(im->pg, im->copy_sql);
	ok = pg_ok(im, res, "COPY");
	PQclear(res);
	if (!ok)
		return false;
	for (off = 0; off < im->copy_len; off += 1u << 20) {
		size_t k = im->copy_len - off < (1u << 20) ? im->copy_len - off : 1u << 20;
		if (PQputCopyData(im->pg, im->copy + off, (int)k) != 1)
			return pg_ok(im, NULL, "COPY");
	}
	if (PQputCopyEnd(im->pg, NULL) != 1)
		return pg_ok(im, NULL, "COPY");
	res = PQgetResult(im->pg);
	ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok) {
		const char *ctx = res ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;
		const char *at = ctx ? strstr(ctx, ", line ") : NULL;
		unsigned long row = at ? strtoul(at + 7, NULL, 10) : 0;

		if (row >= 1 && row <= im->n)
			bad_doc(im, im->lines[row - 1], im->index[row - 1], "PostgreSQL refused it: %s",
				res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : "connection lost");
		else
			pg_ok(im, res, "COPY");
	}
	PQclear(res);
	while ((res = PQgetResult(im->pg)))
		PQclear(res);
	if (!ok)
		return false;
	if (!PQsendQuery(im->pg, im->insert_sql))
		return pg_ok(im, NULL, "inserting the staged rows");
	im->insert_pending = true;
	im->pending_line = im->lines[0];
	im->n = 0;
	im->copy_len = 0;
	return true;
}

/* --- the import -------------------------------------------------------------- */

/* A batch is sent at --batch documents, or earlier when its text is large. */
#define BATCH_BYTES (64u << 20)

static int convert_one(struct import *im, const struct extjson_doc *d)
{
	struct extjson_row row;
	char err[512];
	int r;

	im->read++;
	r = extjson_convert(im->table, d->text, d->len, &row, err, sizeof(err));
	if (r == -ENOMEM) {
		fprintf(stderr, "nvsrelay import: out of memory\n");
		return -ENOMEM;
	}
	if (r < 0) {
		bad_doc(im, d->line, d->index, "%s", err);
		im->bad++;
		return im->skip_bad ? 0 : -EINVAL;
	}
	if (im->dry_run)
		im->staged++;
	else if (!add_row(im, &row, d->line, d->index))
		r = -ENOMEM;
	else if ((im->n >= (unsigned long)im->batch || im->copy_len >= BATCH_BYTES) && !flush(im))
		r = -EIO;
	extjson_row_clear(&row);
	return r;
}

/* Reads, converts and sends everything.  0, or negative: stop. */
static int run(struct import *im)
{
	char *buf = malloc(READ_CHUNK), err[256];
	struct extjson_doc d;
	bool eof = false;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	while (!eof && r == 0) {
		size_t n = fread(buf, 1, READ_CHUNK, im->in);

		if (n < READ_CHUNK) {
			if (ferror(im->in)) {
				fprintf(stderr, "nvsrelay import: reading %s: %s\n", im->name, strerror(errno));
				r = -EIO;
				break;
			}
			eof = true;
		}
		if (extjson_scanner_feed(im->scan, buf, n) < 0) {
			r = -ENOMEM;
			break;
		}
		while (r == 0) {
			int k = extjson_scanner_next(im->scan, eof, &d, err, sizeof(err));

			if (k == 0)
				break;
			if (k == -EBADMSG) {
				clear_progress(im);
				fprintf(stderr, "%s: %s; cannot read further\n", im->name, err);
				r = -EINVAL;
			} else if (k == -EMSGSIZE) {
				im->read++;
				im->bad++;
				bad_doc(im, d.line, d.index, "longer than %u MiB", MAX_DOC >> 20);
				r = im->skip_bad ? 0 : -EINVAL;
			} else if (im->require_array && !extjson_scanner_is_array(im->scan)) {
				fprintf(stderr, "%s: --jsonArray given, but the input is not a JSON array\n", im->name);
				r = -EINVAL;
			} else {
				r = convert_one(im, &d);
			}
			if (interrupted)
				r = -EINTR;
			draw_progress(im, false);
		}
	}
	free(buf);
	if (r == 0 && !im->dry_run && (!flush(im) || !finish_insert(im)))
		r = -EIO;
	return r;
}

static int parse_args(struct import *im, int argc, char **argv, char ***sets, int *nsets)
{
	const char *table = NULL;
	int i;

	im->batch = DEFAULT_BATCH;
	im->every = 10;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--table") == 0 && v) {
			table = v;
			i++;
		} else if (strcmp(a, "--jsonArray") == 0) {
			im->require_array = true;
		} else if (strcmp(a, "--on-error") == 0 && v) {
			if (strcmp(v, "skip") == 0)
				im->skip_bad = true;
			else if (strcmp(v, "stop") == 0)
				im->skip_bad = false;
			else {
				fprintf(stderr, "nvsrelay import: --on-error takes skip or stop, not '%s'\n", v);
				return -1;
			}
			i++;
		} else if (strcmp(a, "--stream") == 0) {
			im->stream = true;
		} else if (strcmp(a, "--dry-run") == 0) {
			im->dry_run = true;
		} else if (strcmp(a, "--progress") == 0 && v) {
			char *end;
			im->every = strtod(v, &end);
			if (*end || !(im->every >= 0) || im->every > 86400) {
				fprintf(stderr, "nvsrelay import: --progress takes 0 to 86400 seconds, not '%s'\n", v);
				return -1;
			}
			i++;
		} else if (strcmp(a, "--batch") == 0 && v) {
			char *end;
			im->batch = strtol(v, &end, 10);
			if (*end || im->batch < 1 || im->batch > 10000000) {
				fprintf(stderr, "nvsrelay import: --batch takes 1 to 10000000, not '%s'\n", v);
				return -1;
			}
			i++;
		} else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && v) {
			im->config = v;
			im->config_given = true;
			i++;
		} else if (strcmp(a, "--set") == 0 && v) {
			(*sets)[(*nsets)++] = argv[++i];
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "nvsrelay import: unknown or incomplete option '%s'\n", a);
			return -1;
		} else if (!im->path) {
			im->path = a;
		} else {
			fprintf(stderr, "nvsrelay import: one input file only ('%s' and '%s')\n", im->path, a);
			return -1;
		}
	}
	if (!table) {
		fprintf(stderr, "nvsrelay import: --table is required (health_events or maintenance_events)\n");
		return -1;
	}
	if (extjson_table_from_name(table, &im->table) < 0) {
		fprintf(stderr, "nvsrelay import: --table takes health_events or maintenance_events, not '%s'\n", table);
		return -1;
	}
	return 0;
}

int import_main(int argc, char **argv)
{
	struct import im = { 0 };
	char **sets = calloc((size_t)argc + 1, sizeof(*sets)), err[512], a[32], b[32], c[32], d[32], e[32];
	int nsets = 0, code = EXIT_FAILED, r;
	Conf *conf = NULL;
	double el;
	struct stat st;

	if (!sets)
		return EXIT_FAILED;
	if (parse_args(&im, argc, argv, &sets, &nsets) < 0) {
		usage(stderr);
		free(sets);
		return EX_USAGE;
	}
	if (!im.config && access(DEFAULT_CONFIG, R_OK) == 0)
		im.config = DEFAULT_CONFIG;
	if (!im.path || strcmp(im.path, "-") == 0) {
		im.in = stdin;
		im.name = "(stdin)";
	} else {
		im.in = fopen(im.path, "r");
		im.name = im.path;
		if (!im.in) {
			fprintf(stderr, "nvsrelay import: cannot open %s: %s\n", im.path, strerror(errno));
			goto out;
		}
	}
	if (fstat(fileno(im.in), &st) == 0 && S_ISREG(st.st_mode))
		im.size = (unsigned long long)st.st_size;
	im.tty = isatty(STDERR_FILENO);
	im.scan = extjson_scanner_new(MAX_DOC);
	im.lines = calloc((size_t)im.batch, sizeof(*im.lines));
	im.index = calloc((size_t)im.batch, sizeof(*im.index));
	if (!im.scan || !im.lines || !im.index) {
		fprintf(stderr, "nvsrelay import: out of memory\n");
		goto out;
	}

	if (!im.dry_run) {
		conf = load_conf(&im, sets, nsets, err, sizeof(err));
		if (!conf) {
			fprintf(stderr, "nvsrelay import: %s\n", err);
			code = EX_USAGE;
			goto out;
		}
		im.pg = connect_pg(conf);
		if (!im.pg || PQstatus(im.pg) != CONNECTION_OK) {
			fprintf(stderr, "nvsrelay import: cannot connect to PostgreSQL: %s",
				im.pg ? PQerrorMessage(im.pg) : "out of memory\n");
			code = EX_UNAVAILABLE;
			goto out;
		}
		if (!preflight(&im) || !begin(&im))
			goto out;
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	im.t0 = now_s();
	if (!im.tty)
		im.last_draw = im.t0;
	r = run(&im);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	draw_progress(&im, true);
	clear_progress(&im);
	if (r == -EINTR)
		fprintf(stderr, "nvsrelay import: interrupted\n");
	if (r < 0)
		goto out;
	if (!im.dry_run && !exec_ok(&im, "COMMIT", "COMMIT"))
		goto out;
	el = now_s() - im.t0;
	if (im.dry_run)
		printf("checked %s: %s read, %s good, %s bad, in %.2f s (%s documents/s); nothing written (dry run)\n",
		       extjson_table_name(im.table), grouped(im.read, a), grouped(im.staged, b), grouped(im.bad, c),
		       el, grouped(el > 0 ? (unsigned long)(im.read / el) : im.read, d));
	else
		printf("imported %s: %s read, %s inserted, %s already present, %s bad skipped, in %.2f s "
		       "(%s documents/s); %s\n",
		       extjson_table_name(im.table), grouped(im.read, a), grouped((unsigned long)im.inserted, b),
		       grouped(im.staged - (unsigned long)im.inserted, c), grouped(im.bad, d), el,
		       grouped(el > 0 ? (unsigned long)(im.read / el) : im.read, e),
		       im.stream ? "the new rows entered the change stream" : "not streamed (--stream to publish)");
	code = 0;
out:
	if (code != 0 && (im.pg || im.dry_run) && code != EX_USAGE && code != EX_UNAVAILABLE)
		fprintf(stderr, "nvsrelay import: nothing imported\n");
	if (im.pg)
		PQfinish(im.pg);     /* an open transaction is rolled back */
	if (im.in && im.in != stdin)
		fclose(im.in);
	extjson_scanner_free(im.scan);
	free(im.lines);
	free(im.index);
	free(im.copy);
	free(sets);
	conf_free(conf);
	return code;
}
