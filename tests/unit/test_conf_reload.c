/*
 * test_conf_reload.c - unit tests of conf_reload (daemon/conf.c): runtime
 * keys are copied into the live Conf without moving it, restart-only keys
 * are named and left alone, secrets are named but never shown; and of the
 * keys the operations features added (http_listen syntax, defaults).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "conf.h"
#include "conf_load.h"

static Conf *conf_with(const char *text)
{
	char err[256];
	Conf *c = conf_new();

	assert_non_null(c);
	if (conf_load_text(c, text, "test", err, sizeof(err)) < 0 || conf_finish(c, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	return c;
}

static void test_reload_applies_runtime_keys(void **state)
{
	Conf *live = conf_with("log_level = info\npoll_interval_ms = 250\n");
	Conf *next = conf_with("log_level = debug\npoll_interval_ms = 100\ntick_idle_ms = 800\n"
			       "datastore_host = db.example\ndatastore_password = s3cret\n"
			       "http_listen = 127.0.0.1:9999\n");
	const struct conf_values *cv = conf_values(live);
	const char *host = cv->datastore_host;
	char applied[512], restart[512];
	int n;

	(void)state;
	n = conf_reload(live, next, applied, sizeof(applied), restart, sizeof(restart));
	assert_int_equal(n, 3);
	assert_string_equal(applied, "log_level,poll_interval_ms,tick_idle_ms");
	assert_string_equal(restart, "datastore_host,datastore_password,http_listen");
	assert_null(strstr(restart, "s3cret"));
	/* The same view, with the new runtime values and the old connection. */
	assert_ptr_equal(conf_values(live), cv);
	assert_string_equal(cv->log_level, "debug");
	assert_int_equal(cv->poll_interval_ms, 100);
	assert_int_equal(cv->tick_idle_ms, 800);
	assert_ptr_equal(cv->datastore_host, host);
	assert_string_equal(cv->datastore_host, "localhost");
	assert_string_equal(cv->datastore_password, "");
	assert_string_equal(cv->http_listen, "127.0.0.1:9187");

	/* Nothing new the second time; the restart list stays until restart. */
	n = conf_reload(live, next, applied, sizeof(applied), restart, sizeof(restart));
	assert_int_equal(n, 0);
	assert_string_equal(applied, "");
	assert_string_equal(restart, "datastore_host,datastore_password,http_listen");

	conf_free(next);
	/* live does not point into next. */
	assert_string_equal(cv->log_level, "debug");
	conf_free(live);
}

static void test_reload_small_buffers(void **state)
{
	Conf *live = conf_with("");
	Conf *next = conf_with("log_level = err\nbatch_rows = 7\nmax_clients = 3\n");
	char applied[8], restart[1];
	int n;

	(void)state;
	n = conf_reload(live, next, applied, sizeof(applied), restart, sizeof(restart));
	assert_int_equal(n, 3);
	assert_true(strlen(applied) < sizeof(applied));
	assert_string_equal(restart, "");
	assert_int_equal(conf_values(live)->batch_rows, 7);
	conf_free(next);
	conf_free(live);
}

static void test_reloadable_keys(void **state)
{
	(void)state;
	assert_true(conf_key_reloadable("log_level"));
	assert_true(conf_key_reloadable("poll_interval_ms"));
	assert_true(conf_key_reloadable("ack_flush_ms"));
	assert_false(conf_key_reloadable("datastore_host"));
	assert_false(conf_key_reloadable("listen_unix"));
	assert_false(conf_key_reloadable("http_listen"));
	assert_false(conf_key_reloadable("ring_events"));
	/* Sizes a per-connection table once: raising it live would overflow. */
	assert_false(conf_key_reloadable("max_subscriptions_per_client"));
	assert_false(conf_key_reloadable("max_frame_bytes"));
	assert_true(conf_key_reloadable("client_output_soft_limit"));
	assert_false(conf_key_reloadable("no_such_key"));
}

static void test_http_listen(void **state)
{
	static const char *const good[] = { "127.0.0.1:9187", "[::1]:1", "localhost:65535", "0.0.0.0:80", "" };
	static const char *const bad[] = { "9187", ":9187", "[::1]", "::1:9187", "[]:80", "host:0",
					   "host:65536", "host:-1", "host:abc", "host:", "[::1:80" };
	char err[256];
	Conf *c = conf_new();

	(void)state;
	assert_non_null(c);
	assert_string_equal(conf_values(c)->http_listen, "127.0.0.1:9187");
	assert_string_equal(conf_values(c)->admin_socket, "/run/nvsrelayd/admin.sock");
	assert_int_equal(conf_values(c)->stats_interval_s, 15);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (conf_set(c, "http_listen", good[i], err, sizeof(err)) != 0)
			fail_msg("refused %s: %s", good[i], err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (conf_set(c, "http_listen", bad[i], err, sizeof(err)) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
		assert_non_null(strstr(err, "http_listen"));
	}
	assert_int_equal(conf_set(c, "stats_interval_s", "0", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "stats_interval_s", "-1", err, sizeof(err)), -EINVAL);
	conf_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reload_applies_runtime_keys),
		cmocka_unit_test(test_reload_small_buffers),
		cmocka_unit_test(test_reloadable_keys),
		cmocka_unit_test(test_http_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
