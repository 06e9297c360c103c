/*
 * test_log.c - unit tests of daemon/log.c's JSON lines: the trailing
 * key=value pairs of a message become members (quoted values unescaped,
 * numbers as numbers), "msg" keeps only the words before them, a tail that
 * is not pairs stays in "msg" whole, and text format is unchanged.  stderr
 * is pointed at a temporary file and every line read back and parsed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "log.h"

/* Read through a descriptor of its own: stderr's offset moves with writes. */
static FILE *out;

static int setup(void **state)
{
	char path[] = "/tmp/test_log.XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	if (fd < 0 || dup2(fd, STDERR_FILENO) < 0 || !(out = fopen(path, "r")))
		return -1;
	close(fd);
	unlink(path);
	return 0;
}

/* The line written since the last call. */
static char *last_line(void)
{
	static char line[4096];

	fflush(stderr);
	line[0] = '\0';
	clearerr(out);
	assert_non_null(fgets(line, sizeof(line), out));
	assert_true(strlen(line) > 0 && line[strlen(line) - 1] == '\n');
	return line;
}

static cJSON *json_line(void)
{
	cJSON *o = cJSON_Parse(last_line());

	assert_true(cJSON_IsObject(o));
	return o;
}

static const char *member(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static void test_fields(void **state)
{
	cJSON *o;

	(void)state;
	assert_int_equal(log_setup("info", "json"), 0);
	log_warning("client refused client=c%d peer=%s reason=%s", 7, "10.0.0.1:5000", LOGQ("it's a \"bad\"\nname"));
	o = json_line();
	assert_string_equal(member(o, "level"), "warning");
	assert_string_equal(member(o, "msg"), "client refused");
	assert_string_equal(member(o, "client"), "c7");
	assert_string_equal(member(o, "peer"), "10.0.0.1:5000");
	assert_string_equal(member(o, "reason"), "it's a \"bad\"\nname");
	cJSON_Delete(o);

	log_info("pruned changelog rows=%d below_tick=%s ratio=%s", 42, "0042", "0.5");
	o = json_line();
	assert_string_equal(member(o, "msg"), "pruned changelog");
	assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "rows")));
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(o, "rows")->valueint, 42);
	/* A leading zero is no JSON number: it stays the string it was. */
	assert_string_equal(member(o, "below_tick"), "0042");
	assert_true(cJSON_GetObjectItemCaseSensitive(o, "ratio")->valuedouble == 0.5);
	cJSON_Delete(o);

	/* \xNN stays as written; an empty value is an empty string. */
	log_info("odd consumer=%s empty=", LOGQ("a\xff"));
	o = json_line();
	assert_string_equal(member(o, "msg"), "odd");
	assert_string_equal(member(o, "consumer"), "a\\xff");
	assert_string_equal(member(o, "empty"), "");
	cJSON_Delete(o);
}

static void test_not_pairs(void **state)
{
	cJSON *o;

	(void)state;
	assert_int_equal(log_setup("info", "json"), 0);
	/* No pairs at all. */
	log_notice("capture is on again for table %s", "health_events");
	o = json_line();
	assert_string_equal(member(o, "msg"), "capture is on again for table health_events");
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "table"));
	cJSON_Delete(o);

	/* A quote that does not close where the value should end: the pairs
	 * start after it, the rest stays in msg. */
	log_warning("failed error='can't connect' conn=%s", "main");
	o = json_line();
	assert_string_equal(member(o, "msg"), "failed error='can't connect'");
	assert_string_equal(member(o, "conn"), "main");
	cJSON_Delete(o);

	/* Text between pairs: only the pairs at the end are members. */
	log_info("listening tcp=%s and more words", "127.0.0.1:1");
	o = json_line();
	assert_string_equal(member(o, "msg"), "listening tcp=127.0.0.1:1 and more words");
	cJSON_Delete(o);

	/* The object's own members are never overwritten. */
	log_info("odd msg=%s level=%s", "x", "y");
	o = json_line();
	assert_string_equal(member(o, "msg"), "odd msg=x level=y");
	assert_string_equal(member(o, "level"), "info");
	cJSON_Delete(o);

	assert_int_equal(log_fields_at("a b=c"), 2);
	assert_int_equal(log_fields_at("a=b c"), 5);
	assert_int_equal(log_fields_at(""), 0);
}

/* Whatever the message (quotes, backslashes, '=' and spaces in any order),
 * the line is one JSON object whose msg is a prefix of the message. */
static void test_hostile(void **state)
{
	static const char alphabet[] = "ab=' \\\"x_1.-";
	char m[64];
	unsigned seed = 12345;

	(void)state;
	assert_int_equal(log_setup("info", "json"), 0);
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(seed % (sizeof(m) - 1));
		cJSON *o;
		const char *msg;

		for (size_t k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			m[k] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		m[n] = '\0';
		seed = seed * 1103515245u + 12345u;
		log_info("%s", m);
		o = json_line();
		msg = member(o, "msg");
		assert_true(strncmp(m, msg, strlen(msg)) == 0);
		cJSON_Delete(o);
	}
}

static void test_text_unchanged(void **state)
{
	char *l;

	(void)state;
	assert_int_equal(log_setup("info", "text"), 0);
	log_info("client closed client=c%d reason=%s", 3, LOGQ("bye"));
	l = last_line();
	assert_non_null(strstr(l, " info client closed client=c3 reason='bye'\n"));
	assert_int_equal(log_setup("info", "journal"), 0);
	log_warning("slow consumer dropped client=c%d", 4);
	assert_string_equal(last_line(), "<4>slow consumer dropped client=c4\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_not_pairs),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_text_unchanged),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
