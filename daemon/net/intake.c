/*
 * intake.c - the cost check before a frame is parsed (see intake.h).  cJSON
 * allocates one item of 64 bytes and more per value, so a 16 MiB frame of
 * "[1,1,..." would take 40 times its size; jsoncost counts the values
 * first, in one pass and without allocating.
 */
#include <stdio.h>

#include <cJSON.h>

#include "errors.h"
#include "intake.h"
#include "jsoncost.h"

static const struct jsoncost_budget watch_budget = { JSONCOST_WATCH_VALUES, JSONCOST_WATCH_DEPTH };
static const struct jsoncost_budget other_budget = { JSONCOST_OTHER_VALUES, JSONCOST_OTHER_DEPTH };

/* The sid of a frame known to be within its budget, so cheap to parse. */
static long long frame_sid(const char *line, size_t len)
{
	cJSON *m = cJSON_ParseWithLength(line, len);
	const cJSON *sid = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "sid") : NULL;
	long long id = cJSON_IsNumber(sid) && sid->valuedouble >= 0 && sid->valuedouble < 9e15 ?
		       (long long)sid->valuedouble : -1;

	cJSON_Delete(m);
	return id;
}

int intake_check(const char *line, size_t len, bool authed, long long *sid, char *msg, size_t msglen)
{
	const struct jsoncost_budget *b;
	struct jsoncost cost;

	*sid = -1;
	if (!authed && len > INTAKE_PREAUTH_MAX) {
		snprintf(msg, msglen, "frame larger than %d bytes before authentication", INTAKE_PREAUTH_MAX);
		return ERR_TOO_LARGE;
	}
	/* Before authentication, a watch gets no more than a hello. */
	if (jsoncost_scan(line, len, authed ? &watch_budget : &other_budget, &other_budget, &cost) < 0) {
		b = authed && cost.watch ? &watch_budget : &other_budget;
		snprintf(msg, msglen, "frame too complex: more than %zu JSON values or %u levels of nesting "
			 "(a watch may have %d and %d, other frames %d and %d)", b->values, b->depth,
			 JSONCOST_WATCH_VALUES, JSONCOST_WATCH_DEPTH, JSONCOST_OTHER_VALUES, JSONCOST_OTHER_DEPTH);
		return ERR_TOO_LARGE;
	}
	if (cost.nul) {
		/* cJSON would cut the string there: a consumer "a\u0000b"
		 * would silently become "a" (and jsonb refuses \u0000). */
		*sid = frame_sid(line, len);
		snprintf(msg, msglen, "strings must not contain \\u0000");
		return ERR_BAD_VALUE;
	}
	return 0;
}
