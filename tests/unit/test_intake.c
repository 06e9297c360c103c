/*
 * test_intake.c - the checks before a subscriber's frame is parsed:
 * budgets per kind of frame, the limit before authentication, \u0000.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "errors.h"
#include "intake.h"
#include "jsoncost.h"

static int check(const char *frame, bool authed, long long *sid)
{
	char msg[256];

	return intake_check(frame, strlen(frame), authed, sid, msg, sizeof(msg));
}

/* A frame with n values in one array, after a prefix. */
static char *array_frame(const char *prefix, size_t n, const char *suffix)
{
	size_t len = strlen(prefix) + 2 * n + strlen(suffix) + 1;
	char *s = malloc(len), *p;

	assert_non_null(s);
	p = s + sprintf(s, "%s", prefix);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, i ? ",1" : "1");
	strcpy(p, suffix);
	return s;
}

static void test_budgets(void **state)
{
	long long sid;
	char *ping_small = array_frame("{\"op\":\"ping\",\"x\":[", 20, "]}");
	char *ping_big = array_frame("{\"op\":\"ping\",\"x\":[", 200, "]}");
	char *watch_ok = array_frame("{\"op\":\"watch\",\"sid\":1,\"pipeline\":[{\"$match\":{\"a\":{\"$in\":[", 2000,
				     "]}}}]}");
	char *watch_big = array_frame("{\"op\":\"watch\",\"sid\":1,\"pipeline\":[{\"$match\":{\"a\":{\"$in\":[",
				      JSONCOST_WATCH_VALUES + 10, "]}}}]}");

	(void)state;
	assert_int_equal(check(ping_small, true, &sid), 0);
	assert_int_equal(check(ping_big, true, &sid), ERR_TOO_LARGE);
	assert_int_equal(check(watch_ok, true, &sid), 0);
	assert_int_equal(check(watch_big, true, &sid), ERR_TOO_LARGE);
	/* Before authentication a watch gets no more than a hello. */
	assert_int_equal(check(watch_ok, false, &sid), ERR_TOO_LARGE);
	assert_int_equal(check("{\"op\":\"hello\",\"v\":1,\"token\":\"abc\"}", false, &sid), 0);
	free(ping_small);
	free(ping_big);
	free(watch_ok);
	free(watch_big);
}

static void test_preauth_size(void **state)
{
	char big[INTAKE_PREAUTH_MAX + 64];
	char msg[128];
	long long sid;

	(void)state;
	snprintf(big, sizeof(big), "{\"op\":\"hello\",\"token\":\"%0*d\"}", INTAKE_PREAUTH_MAX, 0);
	assert_int_equal(intake_check(big, strlen(big), false, &sid, msg, sizeof(msg)), ERR_TOO_LARGE);
	assert_non_null(strstr(msg, "before authentication"));
	assert_int_equal(intake_check(big, strlen(big), true, &sid, msg, sizeof(msg)), 0);
	/* The length alone decides; the bytes are not read. */
	assert_int_equal(intake_check(NULL, INTAKE_PREAUTH_MAX + 1, false, &sid, msg, sizeof(msg)), ERR_TOO_LARGE);
}

static void test_nul(void **state)
{
	long long sid = 0;

	(void)state;
	assert_int_equal(check("{\"op\":\"watch\",\"sid\":8,\"consumer\":\"a\\u0000b\"}", true, &sid), ERR_BAD_VALUE);
	assert_int_equal(sid, 8);
	assert_int_equal(check("{\"op\":\"ping\",\"x\":\"\\u0000\"}", true, &sid), ERR_BAD_VALUE);
	assert_int_equal(sid, -1);
	assert_int_equal(check("{\"op\":\"ping\",\"x\":\"\\\\u0000\"}", true, &sid), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budgets),
		cmocka_unit_test(test_preauth_size),
		cmocka_unit_test(test_nul),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
