/*
 * event.c - turns a changelog row into the change event NVSentinel's
 * components consume (its Go provider's buildEventDocument, completed with
 * MongoDB's ns, documentKey and removedFields).  The documents arrive as the
 * jsonb text PostgreSQL produced and are embedded raw, so content is exactly
 * what was stored; only updates are parsed, to compute updateDescription.
 *
 * Every row gives a well-formed event, so one odd row never stalls a stream
 * (proto/PROTOCOL.md, "The change event"): the operation is matched without
 * regard to case, anything but insert, update and delete becomes an
 * "unknown" event without documents, and a document that is not an object
 * is shown as null.  MongoDB never has anything but a document there, and
 * for health_events the relay's query appends the record id with jsonb ||,
 * which turns a stored null, scalar or array into an array.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "diff.h"
#include "event.h"
#include "rfc3339.h"

enum event_table event_table_of(const char *name)
{
	if (strcmp(name, "health_events") == 0)
		return TABLE_HEALTH_EVENTS;
	if (strcmp(name, "maintenance_events") == 0)
		return TABLE_MAINTENANCE_EVENTS;
	return TABLE_OTHER;
}

static const char *op_name(const char *op)
{
	if (strcasecmp(op, "INSERT") == 0)
		return "insert";
	if (strcasecmp(op, "UPDATE") == 0)
		return "update";
	if (strcasecmp(op, "DELETE") == 0)
		return "delete";
	return "unknown";
}

/* text when it holds a JSON object, else NULL (shown as null).  jsonb's
 * text starts with its first token, so its first byte tells. */
static const char *object_or_null(const char *text)
{
	const char *p = text;

	if (!p)
		return NULL;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return *p == '{' ? text : NULL;
}

/* text embedded as it is.  The item borrows it (cJSON_IsReference, as
 * cJSON_CreateStringReference does for strings) instead of copying a
 * document of a kilobyte or more that is copied once more when printed:
 * the row's text outlives the tree, which event_build deletes before it
 * returns. */
static cJSON *raw_or_null(const char *text)
{
	cJSON *item = cJSON_CreateNull();

	if (item && text) {
		item->type = cJSON_Raw | cJSON_IsReference;
		item->valuestring = (char *)text;
	}
	return item;
}

/* root as text, printed into a buffer of size (0: unknown) so that the
 * common event is written once instead of through cJSON's doubling
 * buffer and a final copy; a tree that does not fit is printed the usual
 * way. */
static char *print(cJSON *root, size_t size, size_t *ret_len)
{
	char *s = NULL, *fit;

	if (size > 0 && size <= INT_MAX && (s = malloc(size)) &&
	    !cJSON_PrintPreallocated(root, s, (int)size, false)) {
		free(s);
		s = NULL;
	}
	if (s) {
		*ret_len = strlen(s);
		/* Shrinking in place: the ring keeps the event. */
		if ((fit = realloc(s, *ret_len + 1)))
			s = fit;
		return s;
	}
	if ((s = cJSON_PrintUnformatted(root)))
		*ret_len = strlen(s);
	return s;
}

/* What an insert or a delete prints to at most: its documents, and every
 * other field even if each of its bytes were escaped as \u00XX. */
static size_t print_size(const struct change_row *row, const char *db, const char *new_doc, const char *old_doc)
{
	size_t n = 256 + TOKEN_HEX_LEN;

	n += 6 * (strlen(row->cluster_time) + strlen(db) + strlen(row->table) + strlen(row->record_id));
	n += new_doc ? strlen(new_doc) : 0;
	n += old_doc ? strlen(old_doc) : 0;
	return n;
}

/* clusterTime as Unix seconds, 0 when it is not a timestamp: the delivery
 * latency histogram (hub.c) measures from it.  Read for every row, live
 * and catch-up alike, so by rfc3339.c's arithmetic: sscanf and timegm's
 * time zone code were a fifth of building an event. */
static double utc_seconds(const char *s)
{
	struct rfc3339_time t;

	return s && rfc3339_parse(s, &t) ? (double)t.sec + t.nsec / 1e9 : 0;
}

struct event *event_build(const struct change_row *row, const struct token *pos, const char *db,
			  const char **ret_err)
{
	struct event *ev = NULL;
	cJSON *root = NULL, *o, *olddoc = NULL, *newdoc = NULL, *ud;
	char tok[TOKEN_HEX_LEN + 1];
	const char *op = op_name(row->operation);
	bool is_update = strcmp(op, "update") == 0;
	bool is_delete = strcmp(op, "delete") == 0;
	bool is_known = is_update || is_delete || strcmp(op, "insert") == 0;
	const char *new_doc = object_or_null(row->new_doc);
	const char *old_doc = object_or_null(row->old_doc);

	*ret_err = "out of memory";
	ev = calloc(1, sizeof(*ev));
	root = cJSON_CreateObject();
	if (!ev || !root)
		goto fail;
	ev->refs = 1;
	ev->pos = *pos;
	ev->table = event_table_of(row->table);
	ev->changed_at = utc_seconds(row->cluster_time);
	token_format(pos, tok);

	if (!(o = cJSON_AddObjectToObject(root, "_id")) || !cJSON_AddStringToObject(o, "_data", tok))
		goto fail;
	if (!cJSON_AddStringToObject(root, "operationType", op) ||
	    !cJSON_AddStringToObject(root, "clusterTime", row->cluster_time))
		goto fail;
	if (!(o = cJSON_AddObjectToObject(root, "ns")) || !cJSON_AddStringToObject(o, "db", db) ||
	    !cJSON_AddStringToObject(o, "coll", row->table))
		goto fail;
	if (!(o = cJSON_AddObjectToObject(root, "documentKey")) ||
	    !cJSON_AddStringToObject(o, "_id", row->record_id))
		goto fail;
	if (is_known && !cJSON_AddItemToObject(root, "fullDocument", raw_or_null(is_delete ? NULL : new_doc)))
		goto fail;
	if (is_delete && !cJSON_AddItemToObject(root, "fullDocumentBeforeChange", raw_or_null(old_doc)))
		goto fail;
	if (is_update) {
		olddoc = old_doc ? cJSON_Parse(old_doc) : NULL;
		newdoc = new_doc ? cJSON_Parse(new_doc) : NULL;
		if ((old_doc && !olddoc) || (new_doc && !newdoc)) {
			*ret_err = "changelog document is not valid JSON";
			goto fail;
		}
		if (!(ud = diff_update(olddoc, newdoc)))
			goto fail;
		cJSON_AddItemToObject(root, "updateDescription", ud);
	}
	if (!(ev->json = print(root, is_update ? 0 : print_size(row, db, new_doc, old_doc), &ev->len)))
		goto fail;
	if (is_update && old_doc) {
		/* The variant for subscribers that asked for the pre-image; MongoDB
		 * puts it before updateDescription. */
		cJSON *before = raw_or_null(old_doc);
		cJSON *udesc = cJSON_DetachItemFromObject(root, "updateDescription");
		if (!before || !cJSON_AddItemToObject(root, "fullDocumentBeforeChange", before)) {
			cJSON_Delete(udesc);
			goto fail;
		}
		cJSON_AddItemToObject(root, "updateDescription", udesc);
		if (!(ev->json_before = print(root, 0, &ev->len_before)))
			goto fail;
	}
	cJSON_Delete(olddoc);
	cJSON_Delete(newdoc);
	cJSON_Delete(root);
	*ret_err = NULL;
	return ev;
fail:
	cJSON_Delete(olddoc);
	cJSON_Delete(newdoc);
	cJSON_Delete(root);
	event_unref(ev);
	return NULL;
}

struct event *event_ref(struct event *ev)
{
	ev->refs++;
	return ev;
}

const cJSON *event_tree(struct event *ev)
{
	if (!ev->tree)
		ev->tree = cJSON_ParseWithLength(ev->json, ev->len);
	return ev->tree;
}

void event_drop_tree(struct event *ev)
{
	cJSON_Delete(ev->tree);
	ev->tree = NULL;
}

void event_unref(struct event *ev)
{
	if (!ev || --ev->refs > 0)
		return;
	cJSON_Delete(ev->tree);
	free(ev->json);
	free(ev->json_before);
	free(ev);
}
