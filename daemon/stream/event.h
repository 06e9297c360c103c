/*
 * event.h - one change event, built once from a changelog row and shared by
 * reference by every subscriber that receives it (DESIGN section 5).
 * event_build is pure (no I/O) so it is unit-tested; relay.c calls it for
 * live batches and catch-up reads, hub.c holds the references.
 */
#ifndef NVSRELAY_EVENT_H
#define NVSRELAY_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "token.h"

enum event_table { TABLE_HEALTH_EVENTS, TABLE_MAINTENANCE_EVENTS, TABLE_OTHER };

/* A changelog row as read by the batch query; texts are NUL-terminated. */
struct change_row {
	uint64_t id;
	const char *table;         /* datastore_changelog.table_name */
	const char *record_id;     /* uuid text */
	const char *operation;     /* INSERT | UPDATE | DELETE */
	const char *cluster_time;  /* RFC 3339 UTC with microseconds */
	const char *new_doc;       /* fullDocument JSON text or NULL */
	const char *old_doc;       /* fullDocumentBeforeChange JSON text or NULL */
};

struct event {
	int refs;
	struct token pos;
	enum event_table table;
	char *json;          /* the event object */
	size_t len;
	char *json_before;   /* update with fullDocumentBeforeChange, else NULL */
	size_t len_before;
	cJSON *tree;         /* json parsed for filters, while it is hot */
	double changed_at;   /* the change's clusterTime, Unix seconds; 0 unknown */
};

/* Builds the event JSON for row at position pos in database db.  Returns a
 * new event with one reference, or NULL (out of memory or a document that is
 * not valid JSON; *ret_err then names the reason). */
struct event *event_build(const struct change_row *row, const struct token *pos, const char *db,
			  const char **ret_err);

enum event_table event_table_of(const char *name);

/* The event parsed, for filter evaluation: parsed on first use and kept
 * until event_drop_tree (the hub drops it once live delivery is done, so
 * the ring holds text, not trees).  NULL when out of memory. */
const cJSON *event_tree(struct event *ev);
void event_drop_tree(struct event *ev);

struct event *event_ref(struct event *ev);
void event_unref(struct event *ev);

#endif
