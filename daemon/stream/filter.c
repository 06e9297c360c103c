/*
 * filter.c - MongoDB $match pipelines with NVSentinel's semantics.
 *
 * filter_compile() checks a whole pipeline and turns it into a small tree of
 * nodes: logical nodes ($and, $or, $nor), one node per field operator with
 * its path split into segments, and sub-document nodes whose children are
 * evaluated against the object found at their path.  Operand values and path
 * strings point into a private copy of the pipeline, so filter_match() only
 * walks the event and never allocates.  Anything not understood is refused at
 * compile time with the stage index and the path of the offending part:
 * a filter that ignored a condition would deliver events a component does
 * not expect, or hide ones it waits for.
 *
 * Semantics (proto/PROTOCOL.md, "Filters"): NVSentinel's application-side
 * PipelineFilter where it is sound, MongoDB's where NVSentinel is buggy:
 * key lookup tries the exact key, then a case-insensitive one, and prefers
 * the longest run of path segments that is itself a key (so a dotted key of
 * updateDescription.updatedFields is one key); a missing or null field
 * equals false; numbers compare as numbers; a field holding an array matches
 * when the array or any element does; $ne and $nin are the negations of $eq
 * and $in; objects without operators match as "contains these fields".
 *
 * Cost is bounded before anything is copied (filter.h, FILTER_MAX_*): the
 * whole pipeline is counted first, each node's children are allocated once
 * at their final number, and the evaluator recurses once per level, which
 * the depth limit keeps small.
 *
 * Pure code: no I/O, no logging.  client.c compiles the pipeline of a watch
 * frame; hub.c evaluates it for each event.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "filter.h"
#include "utf8.h"

enum kind {
	K_TRUE,
	K_AND,
	K_OR,
	K_NOR,
	K_EQ,
	K_NE,
	K_GT,
	K_GTE,
	K_LT,
	K_LTE,
	K_IN,
	K_NIN,
	K_EXISTS,
	K_DOC,		/* the object at path contains every child condition */
};

struct seg {
	uint32_t off;	/* start of the segment in node.path */
	int32_t index;	/* the segment as an array index, or -1 */
};

struct node {
	enum kind kind;
	bool exists;		/* K_EXISTS: the wanted answer */
	const char *path;	/* field nodes: the dotted path, in f->copy */
	struct seg *seg;
	size_t nseg;
	const cJSON *arg;	/* operand, in f->copy */
	struct node **kids;	/* K_AND, K_OR, K_NOR, K_DOC */
	size_t nkids;
};

struct filter {
	cJSON *copy;
	struct node *root;
};

/* Compile context: where the compiler is, for error messages. */
struct cc {
	char *err;
	size_t errlen;
	char where[256];
	size_t wlen;
	int depth;
};

static const char *const field_ops = "$eq $ne $gt $gte $lt $lte $in $nin $exists";

/* ---- compile-time helpers ---------------------------------------------- */

static size_t
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
where_push(struct cc *c, const char *fmt, ...)
{
	size_t old = c->wlen;
	va_list ap;
	int n;

	if (c->wlen < sizeof(c->where) - 1) {
		va_start(ap, fmt);
		n = vsnprintf(c->where + c->wlen, sizeof(c->where) - c->wlen, fmt, ap);
		va_end(ap);
		if (n > 0)
			c->wlen += (size_t)n;
		if (c->wlen > sizeof(c->where) - 1)
			c->wlen = sizeof(c->where) - 1;
	}
	return old;
}

static void
where_pop(struct cc *c, size_t len)
{
	c->wlen = len;
	c->where[len] = '\0';
}

static int
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
fail(struct cc *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n;

	if (c->err == NULL || c->errlen == 0)
		return -EINVAL;
	n = snprintf(msg, sizeof(msg), "%s: ", c->where);
	if (n >= 0 && (size_t)n < sizeof(msg)) {
		va_start(ap, fmt);
		vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* Keys and operator names are the client's bytes: the message goes
	 * back in a JSON string, so it must stay valid UTF-8 when cut. */
	utf8_quote(c->err, c->errlen, msg, strlen(msg));
	return -EINVAL;
}

static const char *
type_name(const cJSON *v)
{
	if (cJSON_IsObject(v))
		return "an object";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsNumber(v))
		return "a number";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNull(v))
		return "null";
	return "an unknown value";
}

static struct node *
node_new(enum kind kind)
{
	struct node *n = calloc(1, sizeof(*n));

	if (n != NULL)
		n->kind = kind;
	return n;
}

static void
node_free(struct node *n)
{
	if (n == NULL)
		return;
	for (size_t i = 0; i < n->nkids; i++)
		node_free(n->kids[i]);
	free(n->kids);
	free(n->seg);
	free(n);
}

/* A logical or sub-document node with room for n children, allocated once:
 * growing the array per child made a large pipeline quadratic. */
static struct node *
node_with_kids(enum kind kind, size_t n)
{
	struct node *p = node_new(kind);

	if (p != NULL && n > 0 && (p->kids = calloc(n, sizeof(*p->kids))) == NULL) {
		free(p);
		p = NULL;
	}
	return p;
}

/* Counts the JSON values of v into *n, stopping once past max, so a huge
 * pipeline is refused before it is copied or walked again. */
static void
count_values(const cJSON *v, size_t *n, size_t max)
{
	const cJSON *e;

	if (++*n > max)
		return;
	cJSON_ArrayForEach(e, v) {
		count_values(e, n, max);
		if (*n > max)
			return;
	}
}

/* Splits a dotted field path into segments; refuses empty segments, which
 * could never name a key the caller meant. */
static int
set_path(struct cc *c, struct node *n, const char *path)
{
	size_t nseg = 1, len = strlen(path), i, k = 0;

	if (len == 0)
		return fail(c, "empty field name");
	if (len > INT32_MAX)
		return fail(c, "field name too long");
	for (i = 0; i < len; i++)
		if (path[i] == '.')
			nseg++;
	n->seg = calloc(nseg, sizeof(*n->seg));
	if (n->seg == NULL)
		return -ENOMEM;
	n->path = path;
	n->nseg = nseg;
	for (i = 0; i <= len; i++) {
		size_t start = i;
		int64_t idx = 0;
		bool digits = true;

		while (i < len && path[i] != '.') {
			if (path[i] < '0' || path[i] > '9' || idx > INT32_MAX / 10)
				digits = false;
			else
				idx = idx * 10 + (path[i] - '0');
			i++;
		}
		if (i == start)
			return fail(c, "empty segment in field path \"%s\"", path);
		n->seg[k].off = (uint32_t)start;
		n->seg[k].index = digits && idx <= INT32_MAX ? (int32_t)idx : -1;
		k++;
	}
	return 0;
}

/* A literal operand may not contain operator-looking keys: they would be
 * matched as data, which is never what such a pipeline means. */
static int
check_literal(struct cc *c, const cJSON *v)
{
	const cJSON *e;
	int r = 0;

	if ((cJSON_IsObject(v) || cJSON_IsArray(v)) && ++c->depth > FILTER_MAX_DEPTH) {
		c->depth--;
		return fail(c, "nested deeper than %d levels", FILTER_MAX_DEPTH);
	}
	if (cJSON_IsObject(v)) {
		cJSON_ArrayForEach(e, v) {
			if (e->string != NULL && e->string[0] == '$')
				r = fail(c, "operator %s inside a literal value", e->string);
			else
				r = check_literal(c, e);
			if (r < 0)
				break;
		}
	} else if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(e, v)
			if ((r = check_literal(c, e)) < 0)
				break;
	} else if (!cJSON_IsString(v) && !cJSON_IsNumber(v) && !cJSON_IsBool(v) && !cJSON_IsNull(v)) {
		return fail(c, "unsupported value");
	}
	if (cJSON_IsObject(v) || cJSON_IsArray(v))
		c->depth--;
	return r < 0 ? -EINVAL : 0;
}

static const struct {
	const char *name;
	enum kind kind;
} ops[] = {
	{ "$eq", K_EQ }, { "$ne", K_NE }, { "$gt", K_GT }, { "$gte", K_GTE },
	{ "$lt", K_LT }, { "$lte", K_LTE }, { "$in", K_IN }, { "$nin", K_NIN },
	{ "$exists", K_EXISTS },
};

static bool
is_field_op(const char *name)
{
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(name, ops[i].name) == 0)
			return true;
	return false;
}

static int compile_query(struct cc *c, const cJSON *q, struct node **ret);
static int compile_field(struct cc *c, const char *path, const cJSON *v, struct node **ret);

/* One operator of an operator object: {path: {op: arg}}. */
static int
compile_op(struct cc *c, const char *path, const char *op, const cJSON *arg, struct node **ret)
{
	struct node *n = NULL;
	enum kind kind = K_TRUE;
	bool found = false;
	const cJSON *e;
	size_t mark;
	int r;

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(op, ops[i].name) == 0) {
			kind = ops[i].kind;
			found = true;
			break;
		}
	}
	if (!found) {
		if (strcmp(op, "$and") == 0 || strcmp(op, "$or") == 0 || strcmp(op, "$nor") == 0)
			return fail(c, "%s is only valid at query level, not on a field", op);
		return fail(c, "unknown operator %s (supported on a field: %s)", op, field_ops);
	}

	mark = where_push(c, ".%s", op);
	switch (kind) {
	case K_EQ:
	case K_NE:
		if ((r = check_literal(c, arg)) < 0)
			goto out;
		break;
	case K_GT:
	case K_GTE:
	case K_LT:
	case K_LTE:
		if (!cJSON_IsNumber(arg) && !cJSON_IsString(arg)) {
			r = fail(c, "expected a number or a string, got %s", type_name(arg));
			goto out;
		}
		break;
	case K_IN:
	case K_NIN:
		if (!cJSON_IsArray(arg)) {
			r = fail(c, "expected an array, got %s", type_name(arg));
			goto out;
		}
		if (cJSON_GetArraySize(arg) > FILTER_MAX_LIST) {
			r = fail(c, "%d elements, more than the %d allowed", cJSON_GetArraySize(arg),
				 FILTER_MAX_LIST);
			goto out;
		}
		cJSON_ArrayForEach(e, arg) {
			if ((r = check_literal(c, e)) < 0)
				goto out;
		}
		break;
	case K_EXISTS:
		if (!cJSON_IsBool(arg) && !cJSON_IsNumber(arg)) {
			r = fail(c, "expected true or false, got %s", type_name(arg));
			goto out;
		}
		break;
	default:
		break;
	}
	if ((n = node_new(kind)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	n->arg = arg;
	if (kind == K_EXISTS)
		n->exists = cJSON_IsBool(arg) ? cJSON_IsTrue(arg) : arg->valuedouble != 0;
	where_pop(c, mark);
	if ((r = set_path(c, n, path)) < 0)
		goto out;
	*ret = n;
	return 0;
out:
	node_free(n);
	return r;
}

/* Combines compiled conditions: none is "true", one is itself. */
static int
conjunction(struct node **kids, size_t nkids, struct node **ret)
{
	struct node *n;

	if (nkids == 1) {
		*ret = kids[0];
		free(kids);
		return 0;
	}
	if ((n = node_new(nkids == 0 ? K_TRUE : K_AND)) == NULL)
		return -ENOMEM;
	n->kids = kids;
	n->nkids = nkids;
	*ret = n;
	return 0;
}

/* {path: v}: an operator object, a sub-document, or a literal to equal. */
static int
compile_field(struct cc *c, const char *path, const cJSON *v, struct node **ret)
{
	struct node *n = NULL, *kid;
	struct node **kids = NULL;
	size_t nkids = 0, nops = 0, nfields = 0, mark;
	const cJSON *e;
	int r = 0;

	if (!cJSON_IsObject(v)) {
		if ((r = check_literal(c, v)) < 0)
			return r;
		if ((n = node_new(K_EQ)) == NULL)
			return -ENOMEM;
		n->arg = v;
		if ((r = set_path(c, n, path)) < 0) {
			node_free(n);
			return r;
		}
		*ret = n;
		return 0;
	}

	cJSON_ArrayForEach(e, v) {
		if (e->string != NULL && e->string[0] == '$')
			nops++;
		else
			nfields++;
	}
	if (nops == 0 && nfields == 0)
		return fail(c, "expected operators or fields, got an empty object");
	if (nops > 0 && nfields > 0)
		return fail(c, "operators and field names mixed in one object");
	if (++c->depth > FILTER_MAX_DEPTH)
		return fail(c, "nested deeper than %d levels", FILTER_MAX_DEPTH);

	if (nops > 0) {
		/* Each operator holds on its own, as in MongoDB:
		 * {a: {$gt: 1, $lt: 5}} is {$and: [{a: {$gt: 1}}, {a: {$lt: 5}}]}. */
		kids = calloc(nops, sizeof(*kids));
		if (kids == NULL) {
			r = -ENOMEM;
			goto out;
		}
		cJSON_ArrayForEach(e, v) {
			if ((r = compile_op(c, path, e->string, e, &kids[nkids])) < 0)
				goto out;
			nkids++;
		}
		r = conjunction(kids, nkids, ret);
		if (r == 0)
			kids = NULL;
		goto out;
	}

	if ((n = node_with_kids(K_DOC, nfields)) == NULL || (r = set_path(c, n, path)) < 0) {
		r = n == NULL ? -ENOMEM : r;
		goto out;
	}
	cJSON_ArrayForEach(e, v) {
		mark = where_push(c, ".%s", e->string ? e->string : "");
		kid = NULL;
		if ((r = compile_field(c, e->string ? e->string : "", e, &kid)) < 0)
			goto out;
		where_pop(c, mark);
		n->kids[n->nkids++] = kid;
	}
	*ret = n;
	n = NULL;
out:
	if (kids != NULL) {
		for (size_t i = 0; i < nkids; i++)
			node_free(kids[i]);
		free(kids);
	}
	node_free(n);
	c->depth--;
	return r;
}

/* $and / $or / $nor: a non-empty array of query objects. */
static int
compile_logical(struct cc *c, enum kind kind, const cJSON *arr, struct node **ret)
{
	struct node *n, *kid;
	const cJSON *e;
	size_t i = 0, mark;
	int r, size = cJSON_GetArraySize(arr);

	if (!cJSON_IsArray(arr) || size == 0)
		return fail(c, "expected a non-empty array of objects, got %s%s", type_name(arr),
			    cJSON_IsArray(arr) ? " that is empty" : "");
	if (size > FILTER_MAX_BRANCHES)
		return fail(c, "%d branches, more than the %d allowed", size, FILTER_MAX_BRANCHES);
	if ((n = node_with_kids(kind, (size_t)size)) == NULL)
		return -ENOMEM;
	cJSON_ArrayForEach(e, arr) {
		mark = where_push(c, "[%zu]", i++);
		if (!cJSON_IsObject(e)) {
			r = fail(c, "expected an object, got %s", type_name(e));
			goto out;
		}
		kid = NULL;
		if ((r = compile_query(c, e, &kid)) < 0)
			goto out;
		where_pop(c, mark);
		n->kids[n->nkids++] = kid;
	}
	*ret = n;
	return 0;
out:
	node_free(n);
	return r;
}

/* A query object: every member must hold. */
static int
compile_query(struct cc *c, const cJSON *q, struct node **ret)
{
	struct node **kids = NULL;
	size_t nkids = 0, mark;
	const cJSON *e;
	int r = 0, n = cJSON_GetArraySize(q);

	if (++c->depth > FILTER_MAX_DEPTH) {
		c->depth--;
		return fail(c, "nested deeper than %d levels", FILTER_MAX_DEPTH);
	}
	if (n > 0 && (kids = calloc((size_t)n, sizeof(*kids))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	cJSON_ArrayForEach(e, q) {
		const char *key = e->string ? e->string : "";

		mark = where_push(c, ".%s", key);
		if (key[0] == '$') {
			enum kind kind = K_AND;

			if (strcmp(key, "$and") == 0)
				kind = K_AND;
			else if (strcmp(key, "$or") == 0)
				kind = K_OR;
			else if (strcmp(key, "$nor") == 0)
				kind = K_NOR;
			else if (is_field_op(key))
				r = fail(c, "%s must be applied to a field, as {\"field\": {\"%s\": ...}}", key, key);
			else
				r = fail(c, "unknown operator %s (supported at query level: $and $or $nor)", key);
			if (r < 0)
				goto out;
			r = compile_logical(c, kind, e, &kids[nkids]);
		} else {
			r = compile_field(c, key, e, &kids[nkids]);
		}
		if (r < 0)
			goto out;
		nkids++;
		where_pop(c, mark);
	}
	if ((r = conjunction(kids, nkids, ret)) == 0)
		kids = NULL;
out:
	if (kids != NULL) {
		for (size_t i = 0; i < nkids; i++)
			node_free(kids[i]);
		free(kids);
	}
	c->depth--;
	return r;
}

int
filter_compile(const cJSON *pipeline, Filter **ret, char *err, size_t errlen)
{
	struct cc c = { .err = err, .errlen = errlen };
	struct filter *f = NULL;
	struct node **stages = NULL, *root = NULL;
	const cJSON *stage, *match;
	size_t nstages = 0, i = 0, nvalues = 0;
	int r = 0;

	*ret = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	/* A Go client marshals a nil pipeline as null. */
	if (pipeline == NULL || cJSON_IsNull(pipeline))
		return 0;
	where_push(&c, "pipeline");
	if (!cJSON_IsArray(pipeline))
		return fail(&c, "expected an array of stages, got %s", type_name(pipeline));
	if (cJSON_GetArraySize(pipeline) == 0)
		return 0;
	count_values(pipeline, &nvalues, FILTER_MAX_VALUES);
	if (nvalues > FILTER_MAX_VALUES)
		return fail(&c, "more than %d values, the most one pipeline may hold", FILTER_MAX_VALUES);

	f = calloc(1, sizeof(*f));
	if (f == NULL || (f->copy = cJSON_Duplicate(pipeline, 1)) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	stages = calloc((size_t)cJSON_GetArraySize(f->copy), sizeof(*stages));
	if (stages == NULL) {
		r = -ENOMEM;
		goto out;
	}
	cJSON_ArrayForEach(stage, f->copy) {
		struct node *n = NULL;

		where_pop(&c, 0);
		where_push(&c, "pipeline[%zu]", i++);
		if (!cJSON_IsObject(stage)) {
			r = fail(&c, "a stage must be an object, got %s", type_name(stage));
			goto out;
		}
		if (cJSON_GetArraySize(stage) != 1) {
			r = fail(&c, "a stage must have exactly one key, got %d", cJSON_GetArraySize(stage));
			goto out;
		}
		match = stage->child;
		if (strcmp(match->string, "$match") != 0) {
			r = fail(&c, "stage %s is not supported (only $match)", match->string);
			goto out;
		}
		where_push(&c, ".$match");
		if (!cJSON_IsObject(match)) {
			r = fail(&c, "expected an object, got %s", type_name(match));
			goto out;
		}
		if ((r = compile_query(&c, match, &n)) < 0)
			goto out;
		if (n->kind == K_TRUE)
			node_free(n);
		else
			stages[nstages++] = n;
	}
	if (nstages == 0)
		goto out;	/* only empty $match stages: everything passes */
	if ((r = conjunction(stages, nstages, &root)) < 0)
		goto out;
	stages = NULL;
	f->root = root;
	*ret = f;
	f = NULL;
out:
	if (stages != NULL) {
		for (size_t k = 0; k < nstages; k++)
			node_free(stages[k]);
		free(stages);
	}
	filter_free(f);
	if (r == -ENOMEM && err != NULL && errlen > 0)
		snprintf(err, errlen, "out of memory");
	return r;
}

const cJSON *
filter_pipeline(const Filter *f)
{
	return f->copy;
}

void
filter_free(Filter *f)
{
	if (f == NULL)
		return;
	node_free(f->root);
	cJSON_Delete(f->copy);
	free(f);
}

/* ---- evaluation (no allocation) ---------------------------------------- */

static unsigned char
lower(unsigned char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch + ('a' - 'A')) : ch;
}

/* The member of obj named by segments i.. of n's path: the longest run of
 * segments that is a key wins, spelled exactly before case-insensitively.
 * *next is the first segment not consumed.  NULL when no key matches. */
static const cJSON *
lookup(const cJSON *obj, const struct node *n, size_t i, size_t *next)
{
	const char *base = n->path + n->seg[i].off;
	const cJSON *best = NULL, *c;
	size_t best_len = 0;
	bool best_exact = false;

	for (c = obj->child; c != NULL; c = c->next) {
		const char *k = c->string;
		bool exact = true;
		size_t l;

		if (k == NULL)
			continue;
		for (l = 0; k[l] != '\0' && base[l] != '\0'; l++) {
			if (k[l] != base[l]) {
				if (lower((unsigned char)k[l]) != lower((unsigned char)base[l]))
					break;
				exact = false;
			}
		}
		if (l == 0 || k[l] != '\0' || (base[l] != '\0' && base[l] != '.'))
			continue;
		if (l > best_len || (l == best_len && exact && !best_exact)) {
			best = c;
			best_len = l;
			best_exact = exact;
		}
	}
	if (best != NULL) {
		size_t j = i + 1;

		for (size_t p = 0; p < best_len; p++)
			if (base[p] == '.')
				j++;
		*next = j;
	}
	return best;
}

typedef bool (*leaf_fn)(const struct node *n, const cJSON *v);

/* Calls fn on every value the path of n reaches from cur (NULL for a
 * missing field) until one returns true.  Through an array, a numeric
 * segment picks that element; any other segment goes on in each element
 * that is an object.  Trying a numeric segment both ways, as MongoDB does,
 * would reach a node of nested arrays by exponentially many routes; this
 * way every node is reached at most once, so a match costs at most one
 * pass over the event per condition. */
static bool
walk(const struct node *n, const cJSON *cur, size_t i, leaf_fn fn)
{
	const cJSON *e;
	bool visited = false;

	if (i == n->nseg || cur == NULL)
		return fn(n, cur);
	if (cJSON_IsObject(cur)) {
		size_t next = i + 1;

		e = lookup(cur, n, i, &next);
		return e != NULL ? walk(n, e, next, fn) : fn(n, NULL);
	}
	if (!cJSON_IsArray(cur))
		return fn(n, NULL);
	if (n->seg[i].index >= 0) {
		int32_t k = 0;

		cJSON_ArrayForEach(e, cur)
			if (k++ == n->seg[i].index)
				return walk(n, e, i + 1, fn);
		return fn(n, NULL);
	}
	cJSON_ArrayForEach(e, cur) {
		if (cJSON_IsObject(e)) {
			visited = true;
			if (walk(n, e, i, fn))
				return true;
		}
	}
	return visited ? false : fn(n, NULL);
}

/* Equality of two JSON values: numbers by value, objects regardless of key
 * order, arrays element by element. */
static bool
value_eq(const cJSON *a, const cJSON *b)
{
	const cJSON *x, *y;

	if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a) && cJSON_IsString(b))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (cJSON_IsBool(a) && cJSON_IsBool(b))
		return cJSON_IsTrue(a) == cJSON_IsTrue(b);
	if (cJSON_IsNull(a) && cJSON_IsNull(b))
		return true;
	if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
		for (x = a->child, y = b->child; x != NULL && y != NULL; x = x->next, y = y->next)
			if (!value_eq(x, y))
				return false;
		return x == NULL && y == NULL;
	}
	if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
		size_t na = 0, nb = 0;

		for (x = a->child; x != NULL; x = x->next)
			na++;
		for (y = b->child; y != NULL; y = y->next)
			nb++;
		if (na != nb)
			return false;
		for (x = a->child; x != NULL; x = x->next) {
			for (y = b->child; y != NULL; y = y->next)
				if (x->string != NULL && y->string != NULL && strcmp(x->string, y->string) == 0)
					break;
			if (y == NULL || !value_eq(x, y))
				return false;
		}
		return true;
	}
	return false;
}

/* actual (NULL = missing) equals want: missing and null equal null and
 * false (protobuf omits false booleans); an array equals want when it is
 * want or holds an element equal to it. */
static bool
leaf_equals(const cJSON *actual, const cJSON *want)
{
	const cJSON *e;

	if (actual == NULL || cJSON_IsNull(actual))
		return cJSON_IsNull(want) || cJSON_IsFalse(want);
	if (value_eq(actual, want))
		return true;
	if (cJSON_IsArray(actual)) {
		cJSON_ArrayForEach(e, actual)
			if (value_eq(e, want))
				return true;
	}
	return false;
}

static bool
leaf_eq(const struct node *n, const cJSON *v)
{
	return leaf_equals(v, n->arg);
}

static bool
leaf_in(const struct node *n, const cJSON *v)
{
	const cJSON *want;

	cJSON_ArrayForEach(want, n->arg)
		if (leaf_equals(v, want))
			return true;
	return false;
}

static bool
compare(enum kind kind, const cJSON *v, const cJSON *want)
{
	int cmp;

	if (cJSON_IsNumber(v) && cJSON_IsNumber(want)) {
		double a = v->valuedouble, b = want->valuedouble;

		cmp = (a > b) - (a < b);
		if (cmp == 0 && a != b)
			return false;	/* unordered */
	} else if (cJSON_IsString(v) && cJSON_IsString(want)) {
		cmp = strcmp(v->valuestring, want->valuestring);
	} else {
		return false;	/* only like types are ordered */
	}
	switch (kind) {
	case K_GT:
		return cmp > 0;
	case K_GTE:
		return cmp >= 0;
	case K_LT:
		return cmp < 0;
	case K_LTE:
		return cmp <= 0;
	default:
		return false;
	}
}

static bool
leaf_cmp(const struct node *n, const cJSON *v)
{
	const cJSON *e;

	if (v == NULL)
		return false;
	if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(e, v)
			if (compare(n->kind, e, n->arg))
				return true;
		return false;
	}
	return compare(n->kind, v, n->arg);
}

static bool
leaf_present(const struct node *n, const cJSON *v)
{
	(void)n;
	return v != NULL;
}

static bool eval(const struct node *n, const cJSON *ctx);

static bool
doc_contains(const struct node *n, const cJSON *obj)
{
	for (size_t i = 0; i < n->nkids; i++)
		if (!eval(n->kids[i], obj))
			return false;
	return true;
}

static bool
leaf_doc(const struct node *n, const cJSON *v)
{
	const cJSON *e;

	if (v == NULL)
		return false;
	if (cJSON_IsObject(v))
		return doc_contains(n, v);
	if (cJSON_IsArray(v)) {
		cJSON_ArrayForEach(e, v)
			if (cJSON_IsObject(e) && doc_contains(n, e))
				return true;
	}
	return false;
}

static bool
eval(const struct node *n, const cJSON *ctx)
{
	size_t i;

	switch (n->kind) {
	case K_TRUE:
		return true;
	case K_AND:
		for (i = 0; i < n->nkids; i++)
			if (!eval(n->kids[i], ctx))
				return false;
		return true;
	case K_OR:
		for (i = 0; i < n->nkids; i++)
			if (eval(n->kids[i], ctx))
				return true;
		return false;
	case K_NOR:
		for (i = 0; i < n->nkids; i++)
			if (eval(n->kids[i], ctx))
				return false;
		return true;
	case K_EQ:
		return walk(n, ctx, 0, leaf_eq);
	case K_NE:
		return !walk(n, ctx, 0, leaf_eq);
	case K_IN:
		return walk(n, ctx, 0, leaf_in);
	case K_NIN:
		return !walk(n, ctx, 0, leaf_in);
	case K_GT:
	case K_GTE:
	case K_LT:
	case K_LTE:
		return walk(n, ctx, 0, leaf_cmp);
	case K_EXISTS:
		return walk(n, ctx, 0, leaf_present) == n->exists;
	case K_DOC:
		return walk(n, ctx, 0, leaf_doc);
	}
	return false;
}

/* ---- guards: one field read for many filters ---------------------------- */

/* The K_EQ-to-a-string conjunct with the longest path, through $and only
 * (every stage is one more conjunct), or NULL. */
static const struct node *
find_guard(const struct node *n)
{
	const struct node *best = NULL;

	if (n->kind == K_EQ)
		return cJSON_IsString(n->arg) ? n : NULL;
	if (n->kind != K_AND)
		return NULL;
	for (size_t i = 0; i < n->nkids; i++) {
		const struct node *g = find_guard(n->kids[i]);

		if (g != NULL && (best == NULL || g->nseg > best->nseg))
			best = g;
	}
	return best;
}

bool
filter_guard(const Filter *f, const char **path, const char **value)
{
	const struct node *n = f != NULL ? find_guard(f->root) : NULL;

	if (n == NULL)
		return false;
	*path = n->path;
	*value = n->arg->valuestring;
	return true;
}

struct filter_key {
	struct node n;		/* kind unused: path and segments only */
	char path[];
};

FilterKey *
filter_key_new(const char *path)
{
	size_t len = strlen(path);
	FilterKey *k = calloc(1, sizeof(*k) + len + 1);
	struct cc c = { 0 };

	if (k == NULL)
		return NULL;
	memcpy(k->path, path, len + 1);
	if (set_path(&c, &k->n, k->path) < 0) {
		free(k->n.seg);
		free(k);
		return NULL;
	}
	return k;
}

void
filter_key_free(FilterKey *k)
{
	if (k == NULL)
		return;
	free(k->n.seg);
	free(k);
}

/* walk()'s route through objects, giving up at the first array: past one,
 * the path reaches many values and only walk() can say which matches. */
int
filter_key_read(const FilterKey *k, const cJSON *event, const char **s)
{
	const cJSON *cur = event;
	size_t i = 0;

	while (cur != NULL && i < k->n.nseg) {
		size_t next = i + 1;

		if (cJSON_IsArray(cur))
			return FILTER_KEY_ANY;
		if (!cJSON_IsObject(cur))
			return FILTER_KEY_NONE;	/* a scalar on the way: missing */
		cur = lookup(cur, &k->n, i, &next);
		i = next;
	}
	if (cur != NULL && cJSON_IsArray(cur))
		return FILTER_KEY_ANY;
	if (cur != NULL && cJSON_IsString(cur)) {
		*s = cur->valuestring;
		return FILTER_KEY_STRING;
	}
	return FILTER_KEY_NONE;
}

bool
filter_match(const Filter *f, const cJSON *event)
{
	if (f == NULL)
		return true;
	return eval(f->root, event);
}
