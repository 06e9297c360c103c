/*
 * test_metrics.c - unit tests of the metrics registry and its Prometheus
 * text rendering (daemon/metrics.c): zero values of unlabelled families,
 * label escaping, the cap on label values, histogram buckets, gauges that
 * keep a maximum, and the label normaliser.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clientstat.h"
#include "metrics.h"

static int reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
}

static char *render(void)
{
	size_t len = 0;
	char *s = metrics_render(&len);

	assert_non_null(s);
	assert_int_equal(strlen(s), len);
	return s;
}

static void assert_has(const char *text, const char *needle)
{
	if (!strstr(text, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, text);
}

static void assert_lacks(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fail_msg("did not expect \"%s\" in:\n%s", needle, text);
}

static void test_empty(void **state)
{
	char *s;

	(void)state;
	s = render();
	/* Unlabelled counters start at zero so rate() has a first sample. */
	assert_has(s, "# HELP nvsrelay_events_delivered_total ");
	assert_has(s, "# TYPE nvsrelay_events_delivered_total counter\nnvsrelay_events_delivered_total 0\n");
	assert_has(s, "# TYPE nvsrelay_batch_rows histogram\n");
	assert_has(s, "nvsrelay_batch_rows_bucket{le=\"+Inf\"} 0\n");
	assert_has(s, "nvsrelay_batch_rows_count 0\n");
	/* Sampled and labelled families say nothing until they have data. */
	assert_lacks(s, "nvsrelay_pg_replication_lag_seconds");
	assert_lacks(s, "nvsrelay_consumer_lag_events");
	free(s);
}

static void test_counter_and_gauge(void **state)
{
	char *s;

	(void)state;
	metrics_add(M_EVENTS_DELIVERED, NULL, 3);
	metrics_add(M_EVENTS_DELIVERED, NULL, 4);
	metrics_set(M_SUBSCRIBERS, NULL, 12);
	metrics_set(M_PG_NOTIFY_QUEUE, NULL, 0.1);
	metrics_add(M_DISCONNECTS, "peer_closed", 1);
	metrics_add(M_DISCONNECTS, "peer_closed", 1);
	metrics_add(M_DISCONNECTS, "output_limit", 1);
	assert_true(metrics_get(M_EVENTS_DELIVERED, NULL) == 7);
	assert_true(metrics_get(M_DISCONNECTS, "peer_closed") == 2);
	assert_true(metrics_get(M_DISCONNECTS, "nope") == 0);
	s = render();
	assert_has(s, "\nnvsrelay_events_delivered_total 7\n");
	assert_has(s, "\nnvsrelay_subscribers 12\n");
	assert_has(s, "\nnvsrelay_pg_notification_queue_usage_ratio 0.1\n");
	assert_has(s, "\nnvsrelay_client_disconnects_total{reason=\"peer_closed\"} 2\n");
	assert_has(s, "\nnvsrelay_client_disconnects_total{reason=\"output_limit\"} 1\n");
	assert_has(s, "# TYPE nvsrelay_client_disconnects_total counter\n");
	free(s);
}

static void test_numbers(void **state)
{
	char *s;

	(void)state;
	metrics_set(M_PG_TABLE_BYTES, "a", 1e20);
	metrics_set(M_PG_TABLE_BYTES, "b", NAN);
	metrics_set(M_PG_TABLE_BYTES, "c", -INFINITY);
	metrics_set(M_PG_TABLE_BYTES, "d", 1234567890123.0);
	metrics_set(M_PG_TABLE_BYTES, "e", 1.0 / 3);
	s = render();
	assert_has(s, "{table=\"a\"} 1e+20\n");
	assert_has(s, "{table=\"b\"} NaN\n");
	assert_has(s, "{table=\"c\"} -Inf\n");
	assert_has(s, "{table=\"d\"} 1234567890123\n");
	assert_has(s, "{table=\"e\"} 0.33333333333333331\n");
	free(s);
}

static void test_label_escaping(void **state)
{
	char *s;

	(void)state;
	metrics_set(M_CONSUMER_LAG_EVENTS, "a\"b\\c\nd", 1);
	metrics_set(M_CONSUMER_LAG_EVENTS, "tab\there\x01", 2);
	metrics_set(M_CONSUMER_LAG_EVENTS, "bad\xff\xfeutf8", 3);
	metrics_set(M_CONSUMER_LAG_EVENTS, "caf\xc3\xa9", 4);
	metrics_set(M_CONSUMER_LAG_EVENTS, "\xed\xa0\x80", 5);  /* a surrogate */
	s = render();
	assert_has(s, "nvsrelay_consumer_lag_events{consumer=\"a\\\"b\\\\c\\nd\"} 1\n");
	assert_has(s, "nvsrelay_consumer_lag_events{consumer=\"tab?here?\"} 2\n");
	assert_has(s, "nvsrelay_consumer_lag_events{consumer=\"bad??utf8\"} 3\n");
	assert_has(s, "nvsrelay_consumer_lag_events{consumer=\"caf\xc3\xa9\"} 4\n");
	assert_has(s, "nvsrelay_consumer_lag_events{consumer=\"???\"} 5\n");
	free(s);
}

static void test_cap_folds_into_other(void **state)
{
	char name[32], *s;
	int i;

	(void)state;
	for (i = 0; i < METRICS_MAX_CONSUMERS + 10; i++) {
		snprintf(name, sizeof(name), "consumer-%03d", i);
		metrics_max(M_CONSUMER_LAG_SECONDS, name, i);
		metrics_add(M_CONSUMER_BUFFERED, name, 100);
	}
	s = render();
	snprintf(name, sizeof(name), "consumer-%03d\"", METRICS_MAX_CONSUMERS - 1);
	assert_has(s, name);
	snprintf(name, sizeof(name), "consumer-%03d\"", METRICS_MAX_CONSUMERS);
	assert_lacks(s, name);
	/* The overflow keeps the largest lag and the sum of the bytes. */
	snprintf(name, sizeof(name), "{consumer=\"other\"} %d\n", METRICS_MAX_CONSUMERS + 9);
	assert_has(s, name);
	assert_has(s, "nvsrelay_consumer_buffered_bytes{consumer=\"other\"} 1000\n");
	assert_true(metrics_get(M_CONSUMER_LAG_SECONDS, METRICS_OTHER) == METRICS_MAX_CONSUMERS + 9);
	free(s);

	metrics_clear(M_CONSUMER_LAG_SECONDS);
	s = render();
	assert_lacks(s, "nvsrelay_consumer_lag_seconds{");
	assert_has(s, "nvsrelay_consumer_buffered_bytes{");
	free(s);
	/* After a clear the names fit again. */
	metrics_set(M_CONSUMER_LAG_SECONDS, "fresh", 1);
	assert_true(metrics_get(M_CONSUMER_LAG_SECONDS, "fresh") == 1);

	/* Other labels keep the smaller cap. */
	for (i = 0; i < METRICS_MAX_SERIES + 5; i++) {
		snprintf(name, sizeof(name), "reason_%02d", i);
		metrics_add(M_DISCONNECTS, name, 1);
	}
	assert_true(metrics_get(M_DISCONNECTS, METRICS_OTHER) == 5);
	snprintf(name, sizeof(name), "reason_%02d", METRICS_MAX_SERIES - 1);
	assert_true(metrics_get(M_DISCONNECTS, name) == 1);
}

static void test_max(void **state)
{
	(void)state;
	metrics_max(M_CONSUMER_LAG_EVENTS, "x", 5);
	metrics_max(M_CONSUMER_LAG_EVENTS, "x", 3);
	assert_true(metrics_get(M_CONSUMER_LAG_EVENTS, "x") == 5);
	metrics_max(M_CONSUMER_LAG_EVENTS, "x", 9);
	assert_true(metrics_get(M_CONSUMER_LAG_EVENTS, "x") == 9);
	/* A new series takes the value even when it is negative. */
	metrics_max(M_CONSUMER_LAG_EVENTS, "y", -2);
	assert_true(metrics_get(M_CONSUMER_LAG_EVENTS, "y") == -2);
}

static void test_histogram(void **state)
{
	char *s;

	(void)state;
	metrics_add(M_PG_QUERY_SECONDS, "batch", 0.0001);
	metrics_add(M_PG_QUERY_SECONDS, "batch", 0.001);    /* on a bound: counts in it */
	metrics_add(M_PG_QUERY_SECONDS, "batch", 0.2);
	metrics_add(M_PG_QUERY_SECONDS, "batch", 100);
	metrics_add(M_PG_QUERY_SECONDS, "tick", 0.003);
	metrics_set(M_PG_QUERY_SECONDS, "batch", 5);        /* ignored for histograms */
	assert_true(metrics_get(M_PG_QUERY_SECONDS, "batch") == 4);
	s = render();
	assert_has(s, "# TYPE nvsrelay_pg_query_duration_seconds histogram\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"batch\",le=\"0.0005\"} 1\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"batch\",le=\"0.001\"} 2\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"batch\",le=\"0.1\"} 2\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"batch\",le=\"0.25\"} 3\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"batch\",le=\"30\"} 3\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"batch\",le=\"+Inf\"} 4\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_sum{kind=\"batch\"} 100.2011\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_count{kind=\"batch\"} 4\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"tick\",le=\"0.0025\"} 0\n");
	assert_has(s, "nvsrelay_pg_query_duration_seconds_bucket{kind=\"tick\",le=\"0.005\"} 1\n");
	free(s);
}

/* Every sample line has a name, optional labels and a number, and every
 * family is announced by HELP then TYPE before its samples. */
static void test_format_shape(void **state)
{
	char *s, *line, *save = NULL;
	char family[128] = "";

	(void)state;
	metrics_set(M_BUILD_INFO, "1.2.3", 1);
	metrics_add(M_PG_QUERY_SECONDS, "stats", 0.01);
	metrics_add(M_HTTP_REQUESTS, "200", 1);
	s = render();
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", family);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(strncmp(line + 7, family, strlen(family)), 0);
			continue;
		}
		assert_int_equal(strncmp(line, family, strlen(family)), 0);
		assert_non_null(strrchr(line, ' '));
		assert_true(strncmp(line, "nvsrelay_", 9) == 0);
	}
	free(s);
}

static void test_label_normaliser(void **state)
{
	char buf[64];

	(void)state;
	assert_string_equal(metrics_label("peer closed", buf, sizeof(buf)), "peer_closed");
	assert_string_equal(metrics_label("Output limit exceeded", buf, sizeof(buf)), "output_limit_exceeded");
	assert_string_equal(metrics_label("  Connection reset by peer!  ", buf, sizeof(buf)), "connection_reset_by_peer");
	assert_string_equal(metrics_label("", buf, sizeof(buf)), "unknown");
	assert_string_equal(metrics_label(NULL, buf, sizeof(buf)), "unknown");
	assert_string_equal(metrics_label("\"\n\x01", buf, sizeof(buf)), "unknown");
	assert_true(strlen(metrics_label("a b c d e f g h i j k l m n o p q r s t u v w x y z", buf, sizeof(buf))) <= 40);
	assert_string_equal(metrics_label("abcdef", buf, 4), "abc");
}

/* Refusals and slow-consumer drops reach /metrics by reason. */
static void test_client_reasons(void **state)
{
	char *s;

	(void)state;
	clientstat_refused(REFUSAL_AUTH_FAILED);
	clientstat_refused(REFUSAL_AUTH_FAILED);
	clientstat_refused(REFUSAL_MAX_CLIENTS);
	clientstat_dropped(DROP_STALLED);
	clientstat_refused((enum client_refusal)99);
	s = render();
	assert_has(s, "nvsrelay_client_refusals_total{reason=\"auth_failed\"} 2\n");
	assert_has(s, "nvsrelay_client_refusals_total{reason=\"max_clients\"} 1\n");
	assert_has(s, "nvsrelay_client_refusals_total{reason=\"unknown\"} 1\n");
	assert_has(s, "nvsrelay_slow_consumer_drops_total{reason=\"stalled\"} 1\n");
	assert_lacks(s, "reason=\"hard_limit\"");
	free(s);
	assert_string_equal(clientstat_drop_name(DROP_SOFT_LIMIT), "soft_limit");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_empty, reset),
		cmocka_unit_test_setup(test_counter_and_gauge, reset),
		cmocka_unit_test_setup(test_numbers, reset),
		cmocka_unit_test_setup(test_label_escaping, reset),
		cmocka_unit_test_setup(test_cap_folds_into_other, reset),
		cmocka_unit_test_setup(test_max, reset),
		cmocka_unit_test_setup(test_histogram, reset),
		cmocka_unit_test_setup(test_format_shape, reset),
		cmocka_unit_test_setup(test_label_normaliser, reset),
		cmocka_unit_test_setup(test_client_reasons, reset),
	};

	return cmocka_run_group_tests(tests, NULL, reset);
}
