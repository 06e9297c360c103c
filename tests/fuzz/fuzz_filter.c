/*
 * fuzz_filter.c - libFuzzer target for the $match compiler and evaluator
 * (daemon/stream/filter.c).
 *
 * The input's first line is a pipeline, the rest an event (both JSON; an
 * event that does not parse is matched as NULL).  A refused pipeline must
 * come back as -EINVAL, no filter and a message naming the pipeline.  An
 * accepted one is matched after the parsed pipeline is gone (the filter may
 * not keep references into it), and its first stage is re-compiled wrapped
 * in $or, $and and $nor, which must agree with it, and negate it.  Leaks are
 * the sanitizer's to report.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

/* Compiles [{"$match": {op: [q]}}]; 1 or 0 for its answer on ev, -1 when
 * refused for depth or size (q may already sit at the limit). */
static int
wrapped(const cJSON *q, const char *op, const cJSON *ev, char *err, size_t errlen)
{
	cJSON *p = cJSON_CreateArray(), *stage = cJSON_CreateObject(), *body = cJSON_CreateObject();
	cJSON *arr = cJSON_CreateArray(), *dup = cJSON_Duplicate(q, 1);
	Filter *f = NULL;
	int r, ans = -1;

	if (!p || !stage || !body || !arr || !dup) {
		cJSON_Delete(p);
		cJSON_Delete(stage);
		cJSON_Delete(body);
		cJSON_Delete(arr);
		cJSON_Delete(dup);
		return -1;
	}
	cJSON_AddItemToArray(arr, dup);
	cJSON_AddItemToObject(body, op, arr);
	cJSON_AddItemToObject(stage, "$match", body);
	cJSON_AddItemToArray(p, stage);
	r = filter_compile(p, &f, err, errlen);
	cJSON_Delete(p);
	if (r == 0) {
		CHECK(f != NULL);
		ans = filter_match(f, ev);
		filter_free(f);
	} else {
		CHECK(r == -EINVAL || r == -ENOMEM);
		CHECK(f == NULL);
		/* q may already sit at a limit that the wrapping passes */
		CHECK(r == -ENOMEM || strstr(err, "nested deeper") != NULL || strstr(err, "more than") != NULL);
	}
	return ans;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const char *nl = memchr(text, '\n', size);
	size_t plen = nl ? (size_t)(nl - text) : size;
	cJSON *pipeline, *ev = NULL, *first = NULL;
	Filter *f = (Filter *)&plen;
	char err[512];
	bool ans;
	int r, w;

	pipeline = cJSON_ParseWithLength(text, plen);
	if (pipeline == NULL)
		return 0;
	if (nl != NULL)
		ev = cJSON_ParseWithLength(nl + 1, size - plen - 1);

	r = filter_compile(pipeline, &f, err, sizeof(err));
	if (r != 0) {
		CHECK(r == -EINVAL || r == -ENOMEM);
		CHECK(f == NULL);
		CHECK(r == -ENOMEM || strncmp(err, "pipeline", 8) == 0);
		CHECK(strlen(err) < sizeof(err));
		goto out;
	}
	/* The first stage's body, kept for the wrapped forms. */
	if (cJSON_IsArray(pipeline) && cJSON_IsObject(pipeline->child) &&
	    cJSON_GetArraySize(pipeline) == 1)
		first = cJSON_DetachItemViaPointer(pipeline->child, pipeline->child->child);
	cJSON_Delete(pipeline);
	pipeline = NULL;

	ans = filter_match(f, ev);
	CHECK(filter_match(f, ev) == ans);
	filter_free(f);

	if (first != NULL && cJSON_IsObject(first)) {
		if ((w = wrapped(first, "$or", ev, err, sizeof(err))) >= 0)
			CHECK(w == ans);
		if ((w = wrapped(first, "$and", ev, err, sizeof(err))) >= 0)
			CHECK(w == ans);
		if ((w = wrapped(first, "$nor", ev, err, sizeof(err))) >= 0)
			CHECK(w == !ans);
	}
out:
	cJSON_Delete(first);
	cJSON_Delete(pipeline);
	cJSON_Delete(ev);
	return 0;
}
