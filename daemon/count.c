/*
 * count.c - {"op":"count","table":…,"after":{"_data":…}}.
 *
 * Counts the table's changelog rows with an id above the position's: the
 * position's own id inside a batch, or at a batch end (bookmarks) the
 * highest id its tick had seen.  A row committed after the position with a
 * lower id than that (a transaction that ran across it) is not counted, and
 * the subscription's pipeline is not applied: the answer is what
 * NVSentinel's own watcher counted (rows after the id), for a gauge, capped
 * at one million (the LIMIT) so a huge backlog stays one bounded range scan.
 *
 * The reply goes to the client by id, so a client gone before PostgreSQL
 * answered is simply not found.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count.h"
#include "hub.h"
#include "pgconn.h"
#include "relay.h"

struct count_req {
	uint64_t client;
	bool has_id;
	long long id;            /* echoed, so a client may pipeline requests */
};

static const char count_sql[] =
	"SELECT count(*) FROM (SELECT 1 FROM datastore_changelog c WHERE c.table_name = $1::text"
	" AND c.id > CASE WHEN $3::boolean"
	"  THEN coalesce((SELECT max_id FROM nvsrelay.tick WHERE tick_id <= $2::bigint"
	"   ORDER BY tick_id DESC LIMIT 1), 0)"
	"  ELSE $4::bigint END"
	" LIMIT 1000000) x";

static void reply(Client *c, const struct count_req *q, const char *count)
{
	char buf[128];
	int n;

	if (q->has_id)
		n = snprintf(buf, sizeof(buf), "{\"op\":\"count\",\"id\":%lld,\"count\":%s}\n", q->id, count);
	else
		n = snprintf(buf, sizeof(buf), "{\"op\":\"count\",\"count\":%s}\n", count);
	if (n > 0 && (size_t)n < sizeof(buf))
		client_send(c, buf, (size_t)n);
}

static void count_cb(PgConn *pc, PGresult *res, void *arg)
{
	struct count_req *q = arg;
	Client *c = client_find(q->client);

	(void)pc;
	if (c) {
		if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			reply(c, q, PQgetvalue(res, 0, 0));
		else
			client_send_error(c, -1, ERR_HOST_UNREACHABLE, "HostUnreachable",
					  "count: PostgreSQL unavailable, retry", NULL);
	}
	free(q);
}

static bool table_name(const char *name, const char **ret)
{
	if (strcmp(name, "health_events") == 0 || strcmp(name, "HealthEvents") == 0)
		*ret = "health_events";
	else if (strcmp(name, "maintenance_events") == 0 || strcmp(name, "MaintenanceEvents") == 0)
		*ret = "maintenance_events";
	else
		return false;
	return true;
}

void count_op(Client *c, struct hub *h, const cJSON *m)
{
	const cJSON *tbl = cJSON_GetObjectItemCaseSensitive(m, "table");
	const cJSON *after = cJSON_GetObjectItemCaseSensitive(m, "after");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
	const cJSON *d = cJSON_IsObject(after) ? cJSON_GetObjectItemCaseSensitive(after, "_data") : NULL;
	Relay *r = hub_relay(h);
	const char *table;
	struct token t;
	struct count_req *q;
	char tick[24], pid[24], msg[160];
	const char *params[4];

	for (const cJSON *f = m->child; f; f = f->next) {
		if (strcmp(f->string, "op") && strcmp(f->string, "table") && strcmp(f->string, "after")
		    && strcmp(f->string, "id")) {
			snprintf(msg, sizeof(msg), "count: unknown field \"%.60s\"; expected table, after, id", f->string);
			client_send_error(c, -1, ERR_UNKNOWN_FIELD, "Location40415", msg, NULL);
			return;
		}
	}
	if (id && (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 9007199254740991.0
		   || id->valuedouble != (double)(long long)id->valuedouble)) {
		client_send_error(c, -1, ERR_TYPE_MISMATCH, "TypeMismatch", "count: id must be a non-negative integer", NULL);
		return;
	}
	if (!cJSON_IsString(tbl) || !table_name(tbl->valuestring, &table)) {
		client_send_error(c, -1, ERR_INVALID_NAMESPACE, "InvalidNamespace",
				  "count: table must be health_events or maintenance_events", NULL);
		return;
	}
	if (!cJSON_IsString(d) || token_parse(d->valuestring, strlen(d->valuestring), &t) < 0) {
		client_send_error(c, -1, ERR_CHANGE_STREAM_FATAL, "ChangeStreamFatalError",
				  "count: after is not a valid resume token: expected {\"_data\":\"<40 hex digits>\"}", NULL);
		return;
	}
	if (!r || !relay_is_ready(r)) {
		client_send_error(c, -1, ERR_HOST_UNREACHABLE, "HostUnreachable", "count: PostgreSQL unavailable, retry", NULL);
		return;
	}
	if (t.gen != relay_generation(r)) {
		client_send_error(c, -1, ERR_HISTORY_LOST, "ChangeStreamHistoryLost",
				  "count: the position belongs to another database or changelog generation", NULL);
		return;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		client_close(c, "out of memory");
		return;
	}
	q->client = client_id(c);
	if (id) {
		q->has_id = true;
		q->id = (long long)id->valuedouble;
	}
	snprintf(tick, sizeof(tick), "%" PRIu64, t.tick);
	snprintf(pid, sizeof(pid), "%" PRIu64, t.id == TOKEN_ID_END ? 0 : t.id);
	params[0] = table;
	params[1] = tick;
	params[2] = t.id == TOKEN_ID_END ? "true" : "false";
	params[3] = pid;
	if (pgconn_query_kind(relay_main_conn(r), "count", count_sql, 4, params, count_cb, q) < 0) {
		free(q);
		client_send_error(c, -1, ERR_HOST_UNREACHABLE, "HostUnreachable", "count: PostgreSQL unavailable, retry", NULL);
	}
}
