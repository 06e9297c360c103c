/*
 * test_hostport.c - unit tests of the HOST:PORT reader (proto/hostport.c)
 * that the configuration, the daemon's listeners and the CLI share: names,
 * IPv4, bracketed IPv6, and every malformed shape it must refuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "hostport.h"

static void assert_split(const char *s, unsigned flags, const char *host, const char *port, unsigned num,
			 bool bracketed)
{
	struct hostport hp;

	if (hostport_parse(s, flags, &hp) != 0)
		fail_msg("refused %s", s);
	assert_string_equal(hp.host, host);
	assert_string_equal(hp.port, port);
	assert_int_equal(hp.port_num, num);
	assert_int_equal(hp.bracketed, bracketed);
}

static void test_ipv4(void **state)
{
	(void)state;
	assert_split("127.0.0.1:9187", 0, "127.0.0.1", "9187", 9187, false);
	assert_split("0.0.0.0:1", 0, "0.0.0.0", "1", 1, false);
	assert_split("10.1.2.3:65535", 0, "10.1.2.3", "65535", 65535, false);
	/* Leading zeros are still the number. */
	assert_split("10.1.2.3:0080", 0, "10.1.2.3", "0080", 80, false);
}

static void test_ipv6(void **state)
{
	(void)state;
	assert_split("[::1]:6543", 0, "::1", "6543", 6543, true);
	assert_split("[::]:80", 0, "::", "80", 80, true);
	assert_split("[fe80::1%eth0]:80", 0, "fe80::1%eth0", "80", 80, true);
	assert_split("[::ffff:127.0.0.1]:7000", 0, "::ffff:127.0.0.1", "7000", 7000, true);
	/* Brackets around anything are taken off; resolving judges the rest. */
	assert_split("[localhost]:1", 0, "localhost", "1", 1, true);
}

static void test_names(void **state)
{
	(void)state;
	assert_split("localhost:7000", 0, "localhost", "7000", 7000, false);
	assert_split("relay.example.org:443", 0, "relay.example.org", "443", 443, false);
	assert_split("nvsrelayd-0.nvsrelayd:6543", 0, "nvsrelayd-0.nvsrelayd", "6543", 6543, false);
}

static void test_bad_shape(void **state)
{
	static const char *const bad[] = {
		"", "9187", ":9187", ":", "[]:80", "[:80", "[::1]", "::1:9187", "[::1:80", "::1",
		"[::1]x:80", "x[::1]:80", "a]:80", "[a]b]:80", "[[::1]]:80",
	};
	struct hostport hp;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (hostport_parse(bad[i], 0, &hp) != -EINVAL)
			fail_msg("accepted %s", bad[i]);
	assert_int_equal(hostport_parse(NULL, 0, &hp), -EINVAL);
}

static void test_bad_port(void **state)
{
	static const char *const missing[] = { "host:", "[::1]:", "127.0.0.1:" };
	static const char *const not_number[] = { "host:abc", "host:-1", "host:+80", "host: 80", "host:80 ",
						  "host:80x", "host:0x50", "[::1]:80]", "host:8 0" };
	static const char *const range[] = { "host:0", "host:65536", "host:99999999999999999999", "[::1]:00000" };
	struct hostport hp;

	(void)state;
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
		if (hostport_parse(missing[i], 0, &hp) != -EINVAL)
			fail_msg("accepted %s", missing[i]);
	for (size_t i = 0; i < sizeof(not_number) / sizeof(not_number[0]); i++)
		if (hostport_parse(not_number[i], 0, &hp) != -EINVAL)
			fail_msg("accepted %s", not_number[i]);
	for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++)
		if (hostport_parse(range[i], 0, &hp) != -ERANGE)
			fail_msg("accepted %s", range[i]);
	/* Nothing is left behind from a refusal. */
	assert_int_equal(hp.host[0], '\0');
	assert_null(hp.port);
}

static void test_service(void **state)
{
	struct hostport hp;

	(void)state;
	assert_split("relay:https", HOSTPORT_SERVICE, "relay", "https", 0, false);
	assert_split("[::1]:nvsrelay", HOSTPORT_SERVICE, "::1", "nvsrelay", 0, true);
	assert_split("relay:70000", HOSTPORT_SERVICE, "relay", "70000", 0, false);
	assert_split("relay:6543", HOSTPORT_SERVICE, "relay", "6543", 6543, false);
	/* The shape rules hold all the same. */
	assert_int_equal(hostport_parse("relay:", HOSTPORT_SERVICE, &hp), -EINVAL);
	assert_int_equal(hostport_parse("::1:80", HOSTPORT_SERVICE, &hp), -EINVAL);
	assert_int_equal(hostport_parse(":80", HOSTPORT_SERVICE, &hp), -EINVAL);
}

static void test_long_host(void **state)
{
	char s[HOSTPORT_HOST_MAX + 16];
	struct hostport hp;

	(void)state;
	memset(s, 'a', HOSTPORT_HOST_MAX - 1);
	strcpy(s + HOSTPORT_HOST_MAX - 1, ":80");
	assert_int_equal(hostport_parse(s, 0, &hp), 0);
	assert_int_equal(strlen(hp.host), HOSTPORT_HOST_MAX - 1);
	memset(s, 'a', HOSTPORT_HOST_MAX);
	strcpy(s + HOSTPORT_HOST_MAX, ":80");
	assert_int_equal(hostport_parse(s, 0, &hp), -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv4),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_bad_shape),
		cmocka_unit_test(test_bad_port),
		cmocka_unit_test(test_service),
		cmocka_unit_test(test_long_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
