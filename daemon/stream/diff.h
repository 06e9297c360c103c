/*
 * diff.h - the updateDescription of an update event: flattened dot-path keys
 * of the changed leaves (arrays compared and reported whole, as NVSentinel's
 * findUpdatedFields does) plus removedFields.  Pure code over cJSON trees.
 * Called by event.c.
 */
#ifndef NVSRELAY_DIFF_H
#define NVSRELAY_DIFF_H

#include <cJSON.h>

/* Returns a new object {"updatedFields":{...},"removedFields":[...]} comparing
 * old_doc with new_doc (a NULL or non-object side counts as an empty object),
 * or NULL when out of memory.  Keys recurse into nested objects joined by '.';
 * a key present only in old_doc is listed in removedFields by its path (not
 * recursed into).  Values in updatedFields are copies of new_doc's values. */
cJSON *diff_update(const cJSON *old_doc, const cJSON *new_doc);

#endif
