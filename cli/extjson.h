/*
 * extjson.h - MongoDB Extended JSON, as mongoexport writes it (v1 "strict"
 * and v2 canonical or relaxed, JSON lines or --jsonArray, compact or
 * --pretty), turned into the rows NVSentinel's PostgreSQL writers store:
 * the document as plain JSON with its keys as they were, plus the extracted
 * columns filled the way those writers fill them.  Pure code: no I/O, no
 * logging; errors come back as text in a caller buffer.  Used by
 * `nvsrelay import` (import.c); unit-tested and fuzzed.
 */
#ifndef NVSRELAY_EXTJSON_H
#define NVSRELAY_EXTJSON_H

#include <stdbool.h>
#include <stddef.h>

/* --- splitting an export into documents ----------------------------------- */

typedef struct extjson_scanner ExtjsonScanner;

struct extjson_doc {
	const char *text;          /* not NUL-terminated; valid until the next call */
	size_t len;
	unsigned long line;        /* 1-based line where the document starts */
	unsigned long index;       /* 1-based position in the export */
};

/* max_doc: the longest document kept (longer ones are skipped and reported).
 * The format is recognised from the first byte: '[' is a --jsonArray export,
 * anything else one document per line (or per --pretty block).  NULL when
 * out of memory. */
ExtjsonScanner *extjson_scanner_new(size_t max_doc);
void extjson_scanner_free(ExtjsonScanner *s);

/* Appends input.  Returns 0 or -ENOMEM. */
int extjson_scanner_feed(ExtjsonScanner *s, const char *buf, size_t len);

/*
 * The next document.  eof says no more input will be fed.  Returns 1 with
 * *doc; 0 when more input is needed (at eof: the export is done);
 * -EMSGSIZE for a document longer than max_doc (its bytes are dropped, doc
 * has its line and index; the next call goes on after it); -EBADMSG when
 * the export cannot be split any further (a --jsonArray whose brackets or
 * commas are broken, or that ends early), with err filled in.
 *
 * In the line format a document that ends mid-line, or with a string left
 * open, is returned as it is (the converter then names the problem) and
 * splitting resumes at the next line that starts with '{', so one broken
 * line costs one document.
 */
int extjson_scanner_next(ExtjsonScanner *s, bool eof, struct extjson_doc *doc, char *err, size_t errlen);

/* True once the input turned out to be a --jsonArray export. */
bool extjson_scanner_is_array(const ExtjsonScanner *s);

/* Input bytes consumed so far (for progress). */
unsigned long long extjson_scanner_offset(const ExtjsonScanner *s);

/* --- values --------------------------------------------------------------- */

/*
 * One Extended JSON text (a value, usually a document) as plain compact
 * JSON: $oid -> its hex string; $date (ISO string, {"$numberLong": ms} or
 * milliseconds) -> an RFC 3339 UTC string with the fraction's trailing
 * zeros dropped (Go's time.RFC3339Nano, as NVSentinel's writers store
 * times); $numberLong, $numberInt, $numberDouble, $numberDecimal -> JSON
 * numbers with their digits unchanged ("NaN", "Infinity" and "-Infinity",
 * which JSON cannot hold, become those strings, as protojson writes them);
 * $binary (v1 and v2) and $uuid -> a UUID string for UUID subtypes 3 and 4,
 * else the base64 string (Go's encoding of []byte); $undefined -> null.
 * Plain numbers keep their exact text.  Types NVSentinel never stores
 * ($timestamp, $regularExpression, $code, ...) are refused, as are
 * invalid UTF-8, "\u0000" (PostgreSQL's jsonb cannot store it) and nesting
 * deeper than 1000.  Returns malloc'd NUL-terminated JSON, or NULL with err.
 */
char *extjson_to_json(const char *text, size_t len, char *err, size_t errlen);

/* --- rows ----------------------------------------------------------------- */

enum extjson_table { EXTJSON_HEALTH_EVENTS, EXTJSON_MAINTENANCE_EVENTS };

#define EXTJSON_MAX_COLS 16

/* One row: values in the order of extjson_columns(), as COPY's text format
 * wants them before escaping (timestamps as RFC 3339, booleans t/f), NULL
 * for SQL NULL.  Owned by the row. */
struct extjson_row {
	unsigned ncols;
	char *val[EXTJSON_MAX_COLS];
	bool kept_id;              /* _id stayed in the document (see below) */
};

/* "health_events" or NVSentinel's "HealthEvents" (likewise maintenance).
 * Returns 0 or -EINVAL. */
int extjson_table_from_name(const char *name, enum extjson_table *t);
const char *extjson_table_name(enum extjson_table t);

/* The table's column names in row order, NULL-terminated.  The first is
 * always "id", the document is always "document". */
const char *const *extjson_columns(enum extjson_table t);

/*
 * One exported document -> one row.
 *
 * The Mongo _id becomes the row id: a UUID ($uuid, $binary subtype 3 or 4,
 * or a string in UUID form) as it is; an ObjectId as a version 8 UUID that
 * carries its 12 bytes (oid[0..5]-8000-8000-oid[6..11] in hex, so it can be
 * read back); anything else as a version 5 UUID of its JSON text, and then
 * _id stays in the document too (kept_id).  Without an _id the id is a
 * version 5 UUID of the converted document.  Re-importing the same export
 * therefore gives the same ids.  The document is stored without the _id it
 * was given an id for.
 *
 * Columns as NVSentinel's writers fill them:
 *   health_events: node_name, event_type (checkName), severity
 *   (componentClass), recommended_action (the enum's name, NONE when
 *   missing, the number for an unknown value), node_quarantined,
 *   user_pods_eviction_status (NULL when empty), user_pods_eviction_message,
 *   fault_remediated (bool or {"value": bool}), the three status timestamps
 *   ({"seconds","nanos"} or a date), created_at and updated_at (createdAt;
 *   NULL when missing, for the database's now()).
 *   maintenance_events: event_id (required), csp, cluster_name, node_name,
 *   status, csp_status, scheduled_start_time, actual_end_time,
 *   event_received_timestamp (required), last_updated_timestamp (NULL when
 *   missing), created_at (event_received_timestamp), updated_at
 *   (last_updated_timestamp).
 * Keys are looked up case-insensitively (Mongo stores "nodename", the
 * PostgreSQL writers "nodeName") and the document keeps them as they are.
 * Strings longer than their VARCHAR column are refused here, so the COPY
 * that follows does not fail half-way.
 *
 * Returns 0, -EINVAL (bad input, err says why and where) or -ENOMEM.  On
 * failure the row is left empty.
 */
int extjson_convert(enum extjson_table t, const char *text, size_t len, struct extjson_row *row,
		    char *err, size_t errlen);
void extjson_row_clear(struct extjson_row *row);

#endif
