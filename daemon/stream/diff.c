/*
 * diff.c - the updateDescription of an update event.
 *
 * Compares the old and new document of an updated row and builds MongoDB's
 * {"updatedFields":{...},"removedFields":[...]}, with the semantics of
 * NVSentinel's findUpdatedFields: objects present on both sides are recursed
 * into and their keys joined with '.', everything else (leaves, arrays, type
 * changes) is compared deeply and reported whole under its dotted path.
 * Keys only in new_doc are reported whole; keys only in old_doc are listed in
 * removedFields without recursing into them.  Called by event.c.  Pure code:
 * no I/O, no logging; the result and everything in it belong to the caller.
 *
 * updatedFields follow new_doc's key order and removedFields old_doc's, so
 * the same pair of documents always yields the same bytes.  Object
 * comparison ignores key order, as NVSentinel's Go maps do.
 */
#include "diff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The dotted path of the key being visited, reused across the whole walk. */
struct path {
	char *buf;
	size_t len;	/* excluding the NUL */
	size_t cap;
	size_t depth;	/* keys pushed; an empty key still takes a '.' after it */
};

/* Appends ".key" (or "key" at the top level) and stores in *ret_mark the
 * length path_pop() restores.  Returns 0 or -ENOMEM. */
static int
path_push(struct path *p, const char *key, size_t *ret_mark)
{
	size_t klen = strlen(key);
	size_t need = p->len + 1 + klen + 1;

	if (need > p->cap) {
		size_t cap = p->cap ? p->cap : 64;
		char *nbuf;

		while (cap < need)
			cap *= 2;
		nbuf = realloc(p->buf, cap);
		if (nbuf == NULL)
			return -ENOMEM;
		p->buf = nbuf;
		p->cap = cap;
	}
	*ret_mark = p->len;
	if (p->depth++ > 0)
		p->buf[p->len++] = '.';
	memcpy(p->buf + p->len, key, klen + 1);
	p->len += klen;
	return 0;
}

static void
path_pop(struct path *p, size_t mark)
{
	p->len = mark;
	p->buf[mark] = '\0';
	p->depth--;
}

/* A member added to an object with cJSON_AddItemToArray has no key; treat it
 * as "" rather than crash on a tree built by hand. */
static const char *
key_of(const cJSON *c)
{
	return c->string != NULL ? c->string : "";
}

/*
 * Finds key among the children of obj.  Both documents usually list their
 * keys in the same order, so *hint (the child after the previous match) is
 * tried first; that keeps the walk linear instead of quadratic in practice.
 */
static const cJSON *
find_key(const cJSON *obj, const char *key, const cJSON **hint)
{
	const cJSON *c;

	if (*hint != NULL && strcmp(key_of(*hint), key) == 0) {
		c = *hint;
	} else {
		for (c = obj != NULL ? obj->child : NULL; c != NULL; c = c->next)
			if (strcmp(key_of(c), key) == 0)
				break;
		if (c == NULL)
			return NULL;
	}
	*hint = c->next;
	return c;
}

static bool json_equal(const cJSON *a, const cJSON *b);

static bool
object_equal(const cJSON *a, const cJSON *b)
{
	const cJSON *hint = b->child;
	const cJSON *ca;
	size_t na = 0, nb = 0;

	for (const cJSON *cb = b->child; cb != NULL; cb = cb->next)
		nb++;
	for (ca = a->child; ca != NULL; ca = ca->next) {
		const cJSON *cb = find_key(b, key_of(ca), &hint);

		if (cb == NULL || !json_equal(ca, cb))
			return false;
		na++;
	}
	return na == nb;
}

static bool
json_equal(const cJSON *a, const cJSON *b)
{
	if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a) && cJSON_IsString(b))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsRaw(a) && cJSON_IsRaw(b))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
		const cJSON *ca = a->child, *cb = b->child;

		for (; ca != NULL && cb != NULL; ca = ca->next, cb = cb->next)
			if (!json_equal(ca, cb))
				return false;
		return ca == NULL && cb == NULL;
	}
	if (cJSON_IsObject(a) && cJSON_IsObject(b))
		return object_equal(a, b);
	/* null, true, false: equal exactly when the types match; the flag bits
	 * above the type byte (references, constant keys) do not count. */
	return (a->type & 0xff) == (b->type & 0xff);
}

static int
add_updated(cJSON *updated, const char *path, const cJSON *value)
{
	cJSON *copy = cJSON_Duplicate(value, 1);

	if (copy == NULL)
		return -ENOMEM;
	if (!cJSON_AddItemToObject(updated, path, copy)) {
		cJSON_Delete(copy);
		return -ENOMEM;
	}
	return 0;
}

static int
add_removed(cJSON *removed, const char *path)
{
	cJSON *s = cJSON_CreateString(path);

	if (s == NULL)
		return -ENOMEM;
	if (!cJSON_AddItemToArray(removed, s)) {
		cJSON_Delete(s);
		return -ENOMEM;
	}
	return 0;
}

/* Reports what new_obj adds or changes, in new_obj's key order.  Both are
 * objects or NULL (an empty object). */
static int
collect_updated(const cJSON *old_obj, const cJSON *new_obj, struct path *p, cJSON *updated)
{
	const cJSON *hint = old_obj != NULL ? old_obj->child : NULL;
	size_t mark;
	int r;

	for (const cJSON *c = new_obj != NULL ? new_obj->child : NULL; c != NULL; c = c->next) {
		const cJSON *o = find_key(old_obj, key_of(c), &hint);

		r = path_push(p, key_of(c), &mark);
		if (r < 0)
			return r;
		if (o != NULL && cJSON_IsObject(o) && cJSON_IsObject(c))
			r = collect_updated(o, c, p, updated);
		else if (o == NULL || !json_equal(o, c))
			r = add_updated(updated, p->buf, c);
		path_pop(p, mark);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Reports what old_obj has and new_obj lacks, in old_obj's key order; a
 * separate walk so removedFields reads in the old document's order. */
static int
collect_removed(const cJSON *old_obj, const cJSON *new_obj, struct path *p, cJSON *removed)
{
	const cJSON *hint = new_obj != NULL ? new_obj->child : NULL;
	size_t mark;
	int r;

	for (const cJSON *c = old_obj != NULL ? old_obj->child : NULL; c != NULL; c = c->next) {
		const cJSON *n = find_key(new_obj, key_of(c), &hint);

		if (n != NULL && !(cJSON_IsObject(n) && cJSON_IsObject(c)))
			continue;
		r = path_push(p, key_of(c), &mark);
		if (r < 0)
			return r;
		if (n == NULL)
			r = add_removed(removed, p->buf);
		else
			r = collect_removed(c, n, p, removed);
		path_pop(p, mark);
		if (r < 0)
			return r;
	}
	return 0;
}

cJSON *
diff_update(const cJSON *old_doc, const cJSON *new_doc)
{
	struct path p = { 0 };
	cJSON *res = cJSON_CreateObject();
	cJSON *updated, *removed;

	if (res == NULL)
		return NULL;
	updated = cJSON_AddObjectToObject(res, "updatedFields");
	removed = cJSON_AddArrayToObject(res, "removedFields");
	if (!cJSON_IsObject(old_doc))
		old_doc = NULL;
	if (!cJSON_IsObject(new_doc))
		new_doc = NULL;
	if (updated == NULL || removed == NULL ||
	    collect_updated(old_doc, new_doc, &p, updated) < 0 ||
	    collect_removed(old_doc, new_doc, &p, removed) < 0) {
		cJSON_Delete(res);
		res = NULL;
	}
	free(p.buf);
	return res;
}
