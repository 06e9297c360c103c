/*
 * position.c - positions kept in and looked up from PostgreSQL: a durable
 * consumer's row in resume_tokens (read, and written without ever moving a
 * stored token backwards), the position after an NVSentinel eventID (also
 * one whose row NVSentinel's cleanup removed), the position at a time
 * (startAtOperationTime), and the count of a table's changes after a
 * position (the "count" request).  relay.c calls these on
 * its main connection when the hub asks its source (source.h) for them, and
 * uses position_oldest_msg for catch-up reads past the retained history.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "position.h"

/* The durable positions of one or many consumers in one statement (one
 * commit, one WAL flush), as a superset of NVSentinel's {timestamp,
 * eventID} so a component can move between its in-process watcher and the
 * relay.  A write never moves a stored relay token backwards.  One row per
 * name, the highest token, since an INSERT ... ON CONFLICT may not touch a
 * row twice. */
static const char save_sql[] =
	"INSERT INTO resume_tokens (client_name, resume_token, last_updated)"
	" SELECT DISTINCT ON (v.name) v.name, jsonb_build_object('token', v.tok, 'eventID', e.id, 'timestamp',"
	"  to_char(coalesce(c.changed_at, clock_timestamp()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')),"
	"  now()"
	" FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(name, tok, id, tick)"
	" CROSS JOIN LATERAL (SELECT coalesce(v.id, (SELECT max_id FROM nvsrelay.tick WHERE tick_id = v.tick)) AS id) e"
	" LEFT JOIN datastore_changelog c ON c.id = e.id"
	" ORDER BY v.name, v.tok DESC"
	" ON CONFLICT (client_name) DO UPDATE SET resume_token = EXCLUDED.resume_token, last_updated = now()"
	" WHERE resume_tokens.resume_token->>'token' IS NULL"
	"  OR CASE WHEN left(resume_tokens.resume_token->>'token', 8) = left(EXCLUDED.resume_token->>'token', 8)"
	"   THEN resume_tokens.resume_token->>'token' < EXCLUDED.resume_token->>'token'"
	/* A token of another generation (before a restore) is no position
	 * here, whatever its random generation compares as; only one of the
	 * current generation replaces it. */
	"   ELSE left(EXCLUDED.resume_token->>'token', 8) ="
	"    (SELECT lpad(to_hex(generation), 8, '0') FROM nvsrelay.meta) END";

struct pos_req {
	uint32_t gen;               /* the generation positions are made in */
	source_pos_cb cb;
	void *arg;
	char *consumer;
	struct token pos;           /* position_exists: the position asked about */
	uint64_t event_id;          /* NVSentinel eventID being resolved */
};

/*
 * eventID N means "every row up to N was processed", so a stream from it
 * starts after N in the first batch holding any row after N.  A row's
 * first tick is the first whose snapshot sees it; the CTE a names the row
 * to start from (N itself, or the first retained one after it) and its
 * first tick tk.
 * Rows after N in earlier batches committed before it: among the rows after
 * N up to tk's max_id, whose transactions (few: the rows of one share its
 * xid) are taken once; the ticks that see one of them are a run ending at
 * tk, walked back from it (none when tk is the first tick, whose batch may
 * be a large imported history).  Rows up to N in the batches between come
 * again.
 */
#define FIRST_TICK(XID) \
	"CASE WHEN " XID " IS NULL THEN (SELECT min(tick_id) FROM nvsrelay.tick)" \
	" ELSE (SELECT min(t.tick_id) FROM nvsrelay.tick t WHERE pg_visible_in_snapshot(" XID ", t.snap)) END"
#define AFTER_N_XIDS \
	" xs AS MATERIALIZED (SELECT DISTINCT r.xid FROM a, datastore_changelog r WHERE r.id > $1::bigint" \
	"  AND r.id <= (SELECT max_id FROM nvsrelay.tick WHERE tick_id = a.tk) AND r.xid IS NOT NULL" \
	"  AND a.tk > (SELECT min(tick_id) FROM nvsrelay.tick))"
#define START_TICK \
	"(SELECT min(tick_id) FROM nvsrelay.tick WHERE tick_id <= a.tk AND tick_id > coalesce((" \
	"  SELECT t.tick_id FROM nvsrelay.tick t WHERE t.tick_id < a.tk AND NOT EXISTS (" \
	"   SELECT 1 FROM xs WHERE pg_visible_in_snapshot(xs.xid, t.snap)) ORDER BY t.tick_id DESC LIMIT 1), 0))"

/* Row 0: the tick to start in (NULL: no tick covers the row yet) and the
 * row id; no row: the changelog no longer has it. */
static const char event_pos_sql[] =
	"WITH a AS (SELECT c.id, " FIRST_TICK("c.xid") " AS tk FROM datastore_changelog c WHERE c.id = $1::bigint),"
	AFTER_N_XIDS
	" SELECT CASE WHEN a.tk IS NOT NULL THEN " START_TICK " END, a.id, (SELECT min(tick_id) FROM nvsrelay.tick)"
	" FROM a";

void position_oldest_msg(uint32_t gen, const char *what, const char *min_tick, char *buf, size_t len)
{
	struct token t = { gen, min_tick ? strtoull(min_tick, NULL, 10) : 0, TOKEN_ID_END };
	char hex[TOKEN_HEX_LEN + 1];

	token_format(&t, hex);
	if (min_tick && *min_tick)
		snprintf(buf, len, "%s is older than the retained history; the oldest available position is {\"_data\":\"%s\"}",
			 what, hex);
	else
		snprintf(buf, len, "%s is older than the retained history, which is empty", what);
}

/* For an eventID whose row is gone: the oldest and newest tick, the ids the
 * oldest tick's and the newest tick's snapshots had seen, and the first
 * retained row after the eventID with the tick whose batch holds it (row
 * NULL: none; tick NULL: not in a tick yet). */
static const char removed_pos_sql[] =
	"WITH lo AS (SELECT tick_id, max_id FROM nvsrelay.tick ORDER BY tick_id LIMIT 1),"
	" hi AS (SELECT tick_id, max_id FROM nvsrelay.tick ORDER BY tick_id DESC LIMIT 1),"
	" a AS (SELECT c.id, " FIRST_TICK("c.xid") " AS tk FROM datastore_changelog c"
	"  WHERE c.id > $1::bigint ORDER BY c.id LIMIT 1),"
	AFTER_N_XIDS
	" SELECT (SELECT tick_id FROM lo), (SELECT max_id FROM lo), (SELECT tick_id FROM hi), (SELECT max_id FROM hi),"
	"  (SELECT id FROM a), (SELECT " START_TICK " FROM a)";

static uint64_t col_u64(const PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? 0 : strtoull(PQgetvalue(res, 0, col), NULL, 10);
}

/* Where an eventID whose row is gone resumes (status 0), or why it cannot. */
static int removed_pos(const struct pos_req *q, const PGresult *res, struct token *t, char *msg, size_t len)
{
	uint64_t lo = col_u64(res, 0), lo_max = col_u64(res, 1), hi = col_u64(res, 2), hi_max = col_u64(res, 3);
	uint64_t next = col_u64(res, 4), next_tick = col_u64(res, 5);

	if (lo == 0) {
		position_oldest_msg(q->gen, "NVSentinel position (eventID)", NULL, msg, len);
		return -ESTALE;
	}
	if (q->event_id > hi_max && next == 0) {
		snprintf(msg, len, "NVSentinel position (eventID %" PRIu64 ") is beyond every change"
			 " of this database (newest %" PRIu64 ")", q->event_id, hi_max);
		return -ESTALE;
	}
	if (lo > 1 && q->event_id != 0 && q->event_id < lo_max) {
		char what[96], lo_s[24];

		snprintf(what, sizeof(what), "NVSentinel position (eventID %" PRIu64 ")", q->event_id);
		snprintf(lo_s, sizeof(lo_s), "%" PRIu64, lo);
		position_oldest_msg(q->gen, what, lo_s, msg, len);
		return -ESTALE;
	}
	if (next != 0 && next_tick == 0) {
		snprintf(msg, len, "the changelog row after that eventID is not committed in any tick yet; retry");
		return -EAGAIN;
	}
	t->gen = q->gen;
	if (q->event_id == 0 && lo > 1) {
		t->tick = lo;                   /* the oldest readable position */
		t->id = TOKEN_ID_END;
	} else if (next != 0) {
		t->tick = next_tick;            /* that batch from the first row after eventID */
		t->id = q->event_id;
	} else {
		t->tick = hi;                   /* nothing retained after it: the head */
		t->id = TOKEN_ID_END;
	}
	return 0;
}

/*
 * NVSentinel's cleanup_changelog deletes rows every consumer has marked
 * processed, so a component moving over may hold an eventID whose row is
 * gone although nothing after it is: its watcher would go on from the next
 * row, and so does this.  Only rows our own retention pruned are a real
 * loss: those are the ones visible in the oldest tick once older ticks were
 * dropped (tick 1, the history batch, still there means nothing was).
 * eventID 0 is NVSentinel's "nothing processed yet": from the start of what
 * is retained.  "Beyond every change" compares with the newest tick's
 * max_id, which the ticker never lets go down: pruning may have emptied the
 * changelog.
 */
static void removed_pos_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct pos_req *q = arg;
	struct token t = { 0, 0, 0 };
	char msg[256], hex[TOKEN_HEX_LEN + 1];
	int status;

	(void)pc;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		q->cb(q->arg, -EIO, NULL, "cannot resolve the NVSentinel position");
	} else if ((status = removed_pos(q, res, &t, msg, sizeof(msg))) < 0) {
		q->cb(q->arg, status, NULL, msg);
	} else {
		token_format(&t, hex);
		log_warning("NVSentinel position not in the changelog, resuming after it consumer=%s eventID=%" PRIu64
			    " next_retained=%" PRIu64 " position=%s", LOGQ(q->consumer ? q->consumer : ""),
			    q->event_id, col_u64(res, 4), hex);
		metrics_add(M_REMOVED_POSITION_RESUMES, NULL, 1);
		q->cb(q->arg, 0, &t, NULL);
	}
	free(q->consumer);
	free(q);
}

static void event_pos_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct pos_req *q = arg;
	struct token t = { 0, 0, 0 };
	char id[24];
	const char *params[1] = { id };

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		q->cb(q->arg, -EIO, NULL, "cannot resolve the NVSentinel position");
	} else if (PQntuples(res) == 0) {
		/* The row is gone: NVSentinel's cleanup_changelog or our own
		 * retention removed it.  Which one decides between resuming
		 * after it and 286; removed_pos_sql tells them apart. */
		snprintf(id, sizeof(id), "%" PRIu64, q->event_id);
		if (pgconn_query_kind(pc, "position_removed", removed_pos_sql, 1, params, removed_pos_cb, q) == 0)
			return;
		q->cb(q->arg, -EIO, NULL, "cannot resolve the NVSentinel position");
	} else if (PQgetisnull(res, 0, 0)) {
		q->cb(q->arg, -EAGAIN, NULL, "the changelog row of that eventID is not committed in any tick yet; retry");
	} else {
		/* After that row in the batch of the first tick that saw it;
		 * for rows older than the relay that is the history batch. */
		t.gen = q->gen;
		t.tick = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		t.id = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
		q->cb(q->arg, 0, &t, NULL);
	}
	free(q->consumer);
	free(q);
}

static struct pos_req *pos_req_new(uint32_t gen, source_pos_cb cb, void *arg)
{
	struct pos_req *q = calloc(1, sizeof(*q));

	if (q) {
		q->gen = gen;
		q->cb = cb;
		q->arg = arg;
	}
	return q;
}

int position_of_event(PgConn *pc, uint32_t gen, uint64_t event_id, source_pos_cb cb, void *arg)
{
	char id[24];
	const char *params[1] = { id };
	struct pos_req *q;

	if (!pgconn_is_up(pc))
		return -ENOTCONN;
	if (!(q = pos_req_new(gen, cb, arg)))
		return -ENOMEM;
	q->event_id = event_id;
	snprintf(id, sizeof(id), "%" PRIu64, event_id);
	if (pgconn_query_kind(pc, "position_event", event_pos_sql, 1, params, event_pos_cb, q) < 0) {
		free(q);
		return -ENOTCONN;
	}
	return 0;
}

static void time_pos_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct pos_req *q = arg;
	struct token t = { 0, 0, TOKEN_ID_END };
	char msg[256];

	(void)pc;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		/* PostgreSQL's words stay in the log: they are for the
		 * operator, and may name the server's internals. */
		if (res)
			log_warning("startAtOperationTime not resolved error='%s'", PQresultErrorMessage(res));
		snprintf(msg, sizeof(msg), "cannot resolve startAtOperationTime: %s",
			 res ? "PostgreSQL refused the time (out of range?)" : "connection lost");
		q->cb(q->arg, res ? -EINVAL : -EIO, NULL, msg);
	} else if (PQgetisnull(res, 0, 0)) {
		position_oldest_msg(q->gen, "startAtOperationTime",
				    PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1), msg, sizeof(msg));
		q->cb(q->arg, -ESTALE, NULL, msg);
	} else {
		t.gen = q->gen;
		t.tick = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		q->cb(q->arg, 0, &t, NULL);
	}
	free(q);
}

int position_at_time(PgConn *pc, uint32_t gen, const char *rfc3339, source_pos_cb cb, void *arg)
{
	const char *params[1] = { rfc3339 };
	struct pos_req *q;

	if (!pgconn_is_up(pc))
		return -ENOTCONN;
	if (!(q = pos_req_new(gen, cb, arg)))
		return -ENOMEM;
	/* Every change committed after the last tick written at or before the
	 * time is delivered: a batch is never split by time. */
	if (pgconn_query_kind(pc, "position_time",
			 "SELECT max(tick_id), (SELECT min(tick_id) FROM nvsrelay.tick) FROM nvsrelay.tick"
			 " WHERE created_at <= $1::timestamptz",
			 1, params, time_pos_cb, q) < 0) {
		free(q);
		return -ENOTCONN;
	}
	return 0;
}

static void exists_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct pos_req *q = arg;

	(void)pc;
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK)
		q->cb(q->arg, -EIO, NULL, "cannot check the start position");
	else if (PQntuples(res) == 0)
		q->cb(q->arg, -ENOENT, NULL, "the start position names no tick written in this generation");
	else
		q->cb(q->arg, 0, &q->pos, NULL);
	free(q);
}

int position_exists(PgConn *pc, const struct token *pos, source_pos_cb cb, void *arg)
{
	char tick[24];
	const char *params[1] = { tick };
	struct pos_req *q;

	if (pos->tick > INT64_MAX)
		return -ENOENT;
	if (!pgconn_is_up(pc))
		return -ENOTCONN;
	if (!(q = pos_req_new(pos->gen, cb, arg)))
		return -ENOMEM;
	q->pos = *pos;
	snprintf(tick, sizeof(tick), "%" PRIu64, pos->tick);
	/* Written, or lost in a server crash: not written but with ticks on
	 * both sides (batch.c reads on from the tick before it). */
	if (pgconn_query_kind(pc, "position_exists",
			      "SELECT 1 FROM nvsrelay.tick WHERE tick_id = $1::bigint"
			      " OR (tick_id < $1::bigint AND EXISTS (SELECT 1 FROM nvsrelay.tick WHERE tick_id > $1::bigint))"
			      " LIMIT 1",
			      1, params, exists_cb, q) < 0) {
		free(q);
		return -ENOTCONN;
	}
	return 0;
}

static void load_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct pos_req *q = arg;
	cJSON *j = NULL;
	const cJSON *tok, *eid;
	struct token t;
	char id[24];
	const char *params[1];

	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		q->cb(q->arg, -EIO, NULL, "cannot read the stored position");
		goto out;
	}
	if (PQntuples(res) == 0) {
		q->cb(q->arg, -ENOENT, NULL, NULL);
		goto out;
	}
	j = cJSON_Parse(PQgetvalue(res, 0, 0));
	tok = cJSON_GetObjectItemCaseSensitive(j, "token");
	eid = cJSON_GetObjectItemCaseSensitive(j, "eventID");
	if (cJSON_IsString(tok)) {
		if (token_parse(tok->valuestring, strlen(tok->valuestring), &t) < 0)
			q->cb(q->arg, -EINVAL, NULL, "stored resume token is malformed");
		else
			q->cb(q->arg, 0, &t, NULL);
		goto out;
	}
	if (cJSON_IsNumber(eid) && eid->valuedouble >= 0) {
		/* NVSentinel's own {timestamp, eventID}. */
		snprintf(id, sizeof(id), "%.0f", eid->valuedouble);
		q->event_id = strtoull(id, NULL, 10);
		params[0] = id;
		if (pgconn_query_kind(pc, "position_event", event_pos_sql, 1, params, event_pos_cb, q) == 0) {
			cJSON_Delete(j);
			return;
		}
		q->cb(q->arg, -EIO, NULL, "PostgreSQL connection lost");
		goto out;
	}
	q->cb(q->arg, -EINVAL, NULL, "stored resume token has neither a token nor an eventID");
out:
	cJSON_Delete(j);
	free(q->consumer);
	free(q);
}

int position_load(PgConn *pc, uint32_t gen, const char *consumer, source_pos_cb cb, void *arg)
{
	struct pos_req *q;
	const char *params[1] = { consumer };

	if (!pgconn_is_up(pc))
		return -ENOTCONN;
	if (!(q = pos_req_new(gen, cb, arg)))
		return -ENOMEM;
	q->consumer = strdup(consumer);         /* for the log line; NULL is fine */
	if (pgconn_query_kind(pc, "position_load", "SELECT resume_token::text FROM resume_tokens WHERE client_name = $1",
			 1, params, load_cb, q) < 0) {
		free(q->consumer);
		free(q);
		return -ENOTCONN;
	}
	return 0;
}

struct save_req {
	source_done_cb done;
	void *arg;
	size_t n;
	char *first;             /* the first consumer, for the log line */
};

static void save_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct save_req *q = arg;
	int status = 0;

	(void)pc;
	if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_warning("cannot store position consumer=%s consumers=%zu error='%s'", LOGQ(q->first), q->n,
			    res ? PQresultErrorMessage(res) : "connection lost");
		status = -EIO;
	}
	q->done(q->arg, status);
	free(q->first);
	free(q);
}

/* Appends element i of a PostgreSQL array literal: s quoted, or NULL. */
static void arr_elem(char **w, size_t i, const char *s)
{
	char *p = *w;

	*p++ = i ? ',' : '{';
	if (!s) {
		memcpy(p, "NULL", 4);
		p += 4;
	} else {
		*p++ = '"';
		for (; *s; s++) {
			if (*s == '"' || *s == '\\')
				*p++ = '\\';
			*p++ = *s;
		}
		*p++ = '"';
	}
	*w = p;
}

/* Column a of save_sql's row for consumer at pos, as text in text or NULL.
 * The id and tick go through ::bigint: a value past INT64_MAX (no row or
 * tick has one) would fail the whole write, so it is passed as NULL, as is
 * the id of a position at a batch's end. */
static const char *row_field(int a, const char *consumer, const struct token *pos, char *text, size_t size)
{
	switch (a) {
	case 0:
		return consumer;
	case 1:
		token_format(pos, text);
		return text;
	case 2:
		if (pos->id == TOKEN_ID_END || pos->id > INT64_MAX)
			return NULL;
		snprintf(text, size, "%" PRIu64, pos->id);
		return text;
	default:
		if (pos->tick > INT64_MAX)
			return NULL;
		snprintf(text, size, "%" PRIu64, pos->tick);
		return text;
	}
}

/* save_sql for n consumers; kind tells one write from a flush's batch in
 * pg_query_duration_seconds. */
static int save_rows(PgConn *pc, const char *kind, size_t n, const char *const *consumers,
		     const struct token *pos, source_done_cb cb, void *arg)
{
	char *buf = NULL, *arr[4], *w;
	size_t room = 4 * 2 + n * (4 * 3 + TOKEN_HEX_LEN + 2 * 24);
	struct save_req *q = NULL;
	int r = -ENOMEM;

	if (!pgconn_is_up(pc))
		return -ENOTCONN;
	for (size_t i = 0; i < n; i++)
		room += 2 * strlen(consumers[i]);
	if (n == 0 || !(buf = malloc(room)) || !(q = calloc(1, sizeof(*q))) || !(q->first = strdup(consumers[0])))
		goto out;
	w = buf;
	for (int a = 0; a < 4; a++) {
		arr[a] = w;
		for (size_t i = 0; i < n; i++) {
			char text[TOKEN_HEX_LEN + 24];

			arr_elem(&w, i, row_field(a, consumers[i], &pos[i], text, sizeof(text)));
		}
		*w++ = '}';
		*w++ = '\0';
	}
	q->done = cb;
	q->arg = arg;
	q->n = n;
	r = pgconn_query_prep(pc, kind, save_sql, 4, (const char *const *)arr, save_cb, q);
	if (r == 0)
		q = NULL;
	else
		r = -ENOTCONN;
out:
	if (q)
		free(q->first);
	free(q);
	free(buf);
	return r;
}

int position_save(PgConn *pc, const char *consumer, const struct token *pos, source_done_cb cb, void *arg)
{
	return save_rows(pc, "position_save", 1, &consumer, pos, cb, arg);
}

int position_save_many(PgConn *pc, size_t n, const char *const *consumers, const struct token *pos,
		       source_done_cb cb, void *arg)
{
	return save_rows(pc, "position_saves", n, consumers, pos, cb, arg);
}

/*
 * The "count" request: the table's changelog rows with an id above the
 * position's, its own id inside a batch or, at a batch end, the highest id
 * its tick had seen.  A row committed after the position with a lower id
 * (a transaction that ran across it) is not counted and no pipeline is
 * applied: the figure NVSentinel's own watcher gave, for a gauge, capped at
 * one million (the LIMIT) so that a huge backlog stays one bounded range
 * scan.
 */
static const char count_sql[] =
	"SELECT count(*) FROM (SELECT 1 FROM datastore_changelog c WHERE c.table_name = $1::text"
	" AND c.id > CASE WHEN $3::boolean"
	"  THEN coalesce((SELECT max_id FROM nvsrelay.tick WHERE tick_id <= $2::bigint"
	"   ORDER BY tick_id DESC LIMIT 1), 0)"
	"  ELSE $4::bigint END"
	" LIMIT 1000000) x";

struct count_req {
	source_count_cb cb;
	void *arg;
};

static void count_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct count_req *q = arg;

	(void)pc;
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		q->cb(q->arg, 0, strtoull(PQgetvalue(res, 0, 0), NULL, 10), NULL);
	else
		q->cb(q->arg, -EIO, 0, "count: PostgreSQL unavailable, retry");
	free(q);
}

int position_count(PgConn *pc, const char *table, const struct token *pos, source_count_cb cb, void *arg)
{
	char tick[24], id[24];
	const char *params[4] = { table, tick, pos->id == TOKEN_ID_END ? "true" : "false", id };
	struct count_req *q;

	if (!pgconn_is_up(pc))
		return -ENOTCONN;
	if (!(q = calloc(1, sizeof(*q))))
		return -ENOMEM;
	q->cb = cb;
	q->arg = arg;
	/* No tick or row has an id past INT64_MAX: such a position lies
	 * after every change. */
	snprintf(tick, sizeof(tick), "%" PRIu64, pos->tick > INT64_MAX ? (uint64_t)INT64_MAX : pos->tick);
	snprintf(id, sizeof(id), "%" PRIu64,
		 pos->id == TOKEN_ID_END ? 0 : pos->id > INT64_MAX ? (uint64_t)INT64_MAX : pos->id);
	if (pgconn_query_kind(pc, "count", count_sql, 4, params, count_cb, q) < 0) {
		free(q);
		return -ENOTCONN;
	}
	return 0;
}
