/*
 * test_conf.c - unit tests of conf.c: defaults, the config file syntax, the
 * layering of sources (defaults < file < environment < --set, applied in the
 * order main.c applies them), the NVSentinel environment variables, derived
 * certificate paths, the libpq parameters and the dump.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_load.h"

static char err[512];

static int setup(void **state)
{
	Conf *c = conf_new();

	err[0] = '\0';
	*state = c;
	return c ? 0 : -1;
}

static int teardown(void **state)
{
	conf_free(*state);
	return 0;
}

/* The value libpq would get for key, or NULL when it is not passed. */
static const char *pq(const Conf *c, const char *key)
{
	const char *const *keys, *const *vals;
	const char *found = NULL;

	conf_libpq_params(c, &keys, &vals);
	for (size_t i = 0; keys[i]; i++) {
		assert_non_null(vals[i]);
		if (strcmp(keys[i], key) == 0) {
			assert_null(found);     /* each key once */
			found = vals[i];
		}
	}
	return found;
}

static size_t pq_count(const Conf *c)
{
	const char *const *keys, *const *vals;
	size_t n = 0;

	conf_libpq_params(c, &keys, &vals);
	while (keys[n])
		n++;
	assert_null(vals[n]);
	return n;
}

static char *dump(const Conf *c)
{
	size_t n = conf_dump(c, NULL, 0);
	char *buf = malloc(n + 1);

	assert_non_null(buf);
	assert_int_equal(conf_dump(c, buf, n + 1), n);
	assert_int_equal(strlen(buf), n);
	return buf;
}

static void assert_dump_has(const Conf *c, const char *line)
{
	char *d = dump(c), want[600];

	snprintf(want, sizeof(want), "\n%s\n", line);
	/* Every line, the first one included, follows a '\n' here. */
	if (strncmp(d, want + 1, strlen(want + 1)) != 0 && !strstr(d, want))
		fail_msg("dump lacks '%s':\n%s", line, d);
	free(d);
}

static void test_defaults(void **state)
{
	Conf *c = *state;
	const struct conf_values *v;

	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	v = conf_values(c);
	assert_string_equal(v->datastore_host, "localhost");
	assert_string_equal(v->datastore_port, "5432");
	assert_string_equal(v->datastore_database, "nvsentinel");
	assert_string_equal(v->datastore_username, "nvsentinel");
	assert_string_equal(v->datastore_password, "");
	assert_int_equal(v->datastore_sslmode, SSLMODE_REQUIRE);
	assert_string_equal(v->datastore_sslcert, "");
	assert_string_equal(v->datastore_sslkey, "");
	assert_string_equal(v->datastore_sslrootcert, "");
	assert_string_equal(v->datastore_options, "");
	assert_string_equal(v->client_cert_mount_path, "");
	assert_string_equal(v->listen_unix, "/run/nvsrelayd/nvsrelayd.sock");
	assert_int_equal(v->unix_socket_mode, 0660);
	assert_int_equal(v->schema, SCHEMA_AUTO);
	assert_string_equal(v->log_level, "info");
	assert_int_equal(v->log_format, LOG_FORMAT_AUTO);
	assert_int_equal(v->poll_interval_ms, 250);
	assert_int_equal(v->poll_interval_max_ms, 2000);
	assert_int_equal(v->tick_min_interval_ms, 2);
	assert_int_equal(v->tick_idle_ms, 5000);
	assert_int_equal(v->batch_rows, 1000);
	assert_int_equal(v->ring_events, 8192);
	assert_int_equal(v->max_frame_bytes, 16777216);
	assert_int_equal(v->max_clients, 1024);
	assert_int_equal(v->client_output_limit, 67108864);
	assert_int_equal(v->ack_flush_ms, 200);
	assert_int_equal(v->retention_max_age_hours, 168);
	assert_int_equal(v->retention_max_rows, 0);
	assert_int_equal(v->consumer_idle_hours, 168);
	assert_int_equal(v->retention_floor_s, 600);
	assert_int_equal(v->prune_interval_s, 60);
	assert_int_equal(v->prune_chunk_rows, 5000);
	assert_int_equal(v->reconnect_min_ms, 100);
	assert_int_equal(v->reconnect_max_ms, 10000);
	assert_int_equal(v->connect_timeout_s, 10);
	assert_int_equal(v->shutdown_timeout_ms, 5000);
}

static void test_key_names(void **state)
{
	size_t n = 0;

	(void)state;
	while (conf_key_name(n))
		n++;
	assert_true(n >= 29);           /* exact list: test_env_every_key */
	assert_string_equal(conf_key_name(0), "datastore_host");
	assert_null(conf_key_name(n));
	assert_null(conf_key_name((size_t)-1));
}

static void test_file_syntax(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	const char *text;

	text =
		"\xEF\xBB\xBF# nvsrelayd.conf\n"
		"\n"
		"   # indented comment\n"
		"\t\n"
		"datastore_host=db1\n"
		"  datastore_port   =\t6543  \r\n"
		"datastore_database = \"my db\"   # comment after a quoted value\n"
		"datastore_username = 'it\\'\n"
		"datastore_password = pa#ss word \n"
		"datastore_sslcert = \"a\\\"b\\\\c\\td\\n\"\n"
		"datastore_options = options='-c statement_timeout=0'   \n"
		"listen_unix = \"\"\n"
		"unix_socket_mode = 0600\n"
		"log_level = debug\n"
		"log_format = json\n"
		"schema = verify\n"
		"datastore_sslmode = verify-full\n"
		"batch_rows = 7";
	assert_int_equal(conf_load_text(c, text, "t.conf", err, sizeof(err)), 0);
	assert_string_equal(v->datastore_host, "db1");
	assert_string_equal(v->datastore_port, "6543");
	assert_string_equal(v->datastore_database, "my db");
	assert_string_equal(v->datastore_username, "it\\");         /* single quotes: literal */
	assert_string_equal(v->datastore_password, "pa#ss word");   /* '#' mid-line is data */
	assert_string_equal(v->datastore_sslcert, "a\"b\\c\td\n");
	assert_string_equal(v->datastore_options, "options='-c statement_timeout=0'");
	assert_string_equal(v->listen_unix, "");
	assert_int_equal(v->unix_socket_mode, 0600);
	assert_string_equal(v->log_level, "debug");
	assert_int_equal(v->log_format, LOG_FORMAT_JSON);
	assert_int_equal(v->schema, SCHEMA_VERIFY);
	assert_int_equal(v->datastore_sslmode, SSLMODE_VERIFY_FULL);
	assert_int_equal(v->batch_rows, 7);

	/* Later lines win; empty text and NULL text change nothing. */
	assert_int_equal(conf_load_text(c, "batch_rows = 1\nbatch_rows = 2\n", "t", err, sizeof(err)), 0);
	assert_int_equal(v->batch_rows, 2);
	assert_int_equal(conf_load_text(c, "", "t", err, sizeof(err)), 0);
	assert_int_equal(conf_load_text(c, NULL, "t", err, sizeof(err)), 0);
	assert_int_equal(v->batch_rows, 2);
}

static void test_file_errors(void **state)
{
	static const struct {
		const char *text;
		int ret;
		const char *msg;        /* must appear in err */
	} cases[] = {
		{ "# ok\n\nsecret-password-typo\n", -EINVAL, "f.conf:3: expected 'key = value'" },
		{ "batch_rows 5\n", -EINVAL, "f.conf:1: expected 'key = value'" },
		{ "= 5\n", -EINVAL, "f.conf:1: missing key before '='" },
		{ "\n\nno_such_key = 1\n", -ENOENT, "f.conf:3: unknown key 'no_such_key'" },
		{ "Batch_Rows = 1\n", -ENOENT, "unknown key 'Batch_Rows'" },
		{ "datastore_port = 80a\n", -EINVAL, "f.conf:1: datastore_port: invalid value '80a' (expected a port 1..65535, or a comma list of one port per host)" },
		{ "datastore_port = 0\n", -EINVAL, "datastore_port: 0 is out of range (expected 1..65535)" },
		{ "datastore_port = 65536\n", -EINVAL, "(expected 1..65535)" },
		{ "datastore_port = -1\n", -EINVAL, "-1 is out of range" },
		{ "datastore_port = 99999999999999999999999\n", -EINVAL, "out of range" },
		{ "datastore_port =\n", -EINVAL, "datastore_port: invalid value ''" },
		{ "datastore_port = \" 5432\"\n", -EINVAL, "invalid value ' 5432'" },
		{ "datastore_port = 5432,\n", -EINVAL, "invalid value '5432,'" },
		{ "datastore_port = 5432,,5433\n", -EINVAL, "invalid value '5432,,5433'" },
		{ "datastore_port = 5432, 5433\n", -EINVAL, "invalid value '5432, 5433'" },
		{ "datastore_port = 5432,70000\n", -EINVAL, "datastore_port: 70000 is out of range (expected 1..65535)" },
		{ "batch_rows = 0\n", -EINVAL, "batch_rows: 0 is out of range (expected 1..1000000)" },
		{ "max_frame_bytes = 1023\n", -EINVAL, "(expected 1024..1073741824)" },
		{ "max_frame_bytes = 1073741825\n", -EINVAL, "(expected 1024..1073741824)" },
		{ "connect_timeout_s = 1\n", -EINVAL, "connect_timeout_s: 1 is out of range (expected 2..3600)" },
		{ "unix_socket_mode = 0668\n", -EINVAL, "unix_socket_mode: invalid value '0668' (expected an octal file mode 0000..0777" },
		{ "unix_socket_mode = 1777\n", -EINVAL, "unix_socket_mode: invalid value '1777'" },
		{ "datastore_sslmode = prefer\n", -EINVAL,
		  "f.conf:1: datastore_sslmode: invalid value 'prefer' (accepted: disable, require, verify-ca, verify-full)" },
		{ "datastore_sslmode = allow\n", -EINVAL, "(accepted: disable, require, verify-ca, verify-full)" },
		{ "datastore_sslmode = REQUIRE\n", -EINVAL, "invalid value 'REQUIRE'" },
		{ "schema = install\n", -EINVAL, "schema: invalid value 'install' (accepted: auto, verify)" },
		{ "log_level = warn\n", -EINVAL, "log_level: invalid value 'warn' (accepted: err, warning, notice, info, debug)" },
		{ "log_format = syslog\n", -EINVAL, "log_format: invalid value 'syslog' (accepted: auto, text, journal, json)" },
		{ "datastore_host =\n", -EINVAL, "datastore_host: must not be empty" },
		{ "datastore_database = ''\n", -EINVAL, "datastore_database: must not be empty" },
		{ "datastore_username = \"\"\n", -EINVAL, "datastore_username: must not be empty" },
		{ "datastore_host = \"db\n", -EINVAL, "f.conf:1: datastore_host: unterminated quote" },
		{ "datastore_host = 'db\n", -EINVAL, "datastore_host: unterminated quote" },
		{ "datastore_host = \"db\\\n", -EINVAL, "datastore_host: unterminated quote" },
		{ "datastore_host = \"db\" x\n", -EINVAL, "datastore_host: unexpected text after the closing quote" },
		{ "datastore_host = \"d\\b\"\n", -EINVAL, "datastore_host: unknown escape" },
		{ "datastore_options = sslmode=disable\n", -EINVAL,
		  "datastore_options: 'sslmode' has its own key, set datastore_sslmode instead" },
		{ "datastore_options = password=hunter2\n", -EINVAL, "set datastore_password instead" },
		{ "datastore_options = a=1 b\n", -EINVAL, "datastore_options: pair 2 is not key=value" },
		{ "datastore_options = =1\n", -EINVAL, "datastore_options: pair 1 is not key=value" },
		{ "datastore_options = Key=1\n", -EINVAL, "pair 1: a libpq keyword is made of lower-case letters and '_'" },
		{ "datastore_options = sslpassword='hunter2\n", -EINVAL, "datastore_options: 'sslpassword': unterminated quote" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Conf *c = conf_new();
		char *before, *after;

		assert_non_null(c);
		before = dump(c);
		err[0] = '\0';
		if (conf_load_text(c, cases[i].text, "f.conf", err, sizeof(err)) != cases[i].ret)
			fail_msg("case %zu '%s': expected %d, err '%s'", i, cases[i].text, cases[i].ret, err);
		if (!strstr(err, cases[i].msg))
			fail_msg("case %zu '%s': err '%s' lacks '%s'", i, cases[i].text, err, cases[i].msg);
		/* Nothing secret is echoed. */
		assert_null(strstr(err, "hunter2"));
		assert_null(strstr(err, "secret"));
		/* A failed set leaves the value alone. */
		after = dump(c);
		assert_string_equal(before, after);
		free(before);
		free(after);
		conf_free(c);
	}
}

static void test_file_stops_at_first_error(void **state)
{
	Conf *c = *state;

	assert_int_equal(conf_load_text(c, "batch_rows = 5\nbogus = 1\nmax_clients = 9\n", "f", err, sizeof(err)),
			 -ENOENT);
	assert_string_equal(err, "f:2: unknown key 'bogus'");
	assert_int_equal(conf_values(c)->batch_rows, 5);
	assert_int_equal(conf_values(c)->max_clients, 1024);
	/* A default source name, and no buffer at all, are both fine. */
	assert_int_equal(conf_load_text(c, "bogus = 1\n", NULL, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "(config):1: unknown key 'bogus'");
	assert_int_equal(conf_load_text(c, "bogus = 1\n", "f", NULL, 0), -ENOENT);
	/* A short buffer is truncated, not overrun. */
	memset(err, 'x', sizeof(err));
	assert_int_equal(conf_load_text(c, "bogus = 1\n", "f", err, 8), -ENOENT);
	assert_string_equal(err, "f:1: un");
}

static void test_conf_set(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	char path[120];

	assert_int_equal(conf_set(c, "nope", "1", err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "unknown key 'nope'");
	assert_int_equal(conf_set(c, "unix_socket_mode", "660", err, sizeof(err)), 0);
	assert_int_equal(v->unix_socket_mode, 0660);
	assert_int_equal(conf_set(c, "unix_socket_mode", "0", err, sizeof(err)), 0);
	assert_int_equal(v->unix_socket_mode, 0);
	assert_int_equal(conf_set(c, "client_output_limit", "2147483647", err, sizeof(err)), 0);
	assert_int_equal(v->client_output_limit, 2147483647);
	assert_int_equal(conf_set(c, "client_output_limit", "2147483648", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "max_frame_bytes", "1073741824", err, sizeof(err)), 0);
	assert_int_equal(v->max_frame_bytes, 1073741824);
	/* A value with control characters is echoed as one printable line. */
	assert_int_equal(conf_set(c, "batch_rows", "1\n2", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "batch_rows: invalid value '1?2' (expected an integer 1..1000000)");
	/* sun_path holds 108 bytes with the NUL. */
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[107] = '\0';
	assert_int_equal(conf_set(c, "listen_unix", path, err, sizeof(err)), 0);
	assert_int_equal(strlen(v->listen_unix), 107);
	path[107] = 'a';
	path[108] = '\0';
	assert_int_equal(conf_set(c, "listen_unix", path, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "listen_unix: path is 108 bytes, a Unix socket path must be shorter than 108");
	assert_int_equal(strlen(v->listen_unix), 107);
	for (const char *const *m = (const char *const[]){ "disable", "require", "verify-ca", "verify-full", NULL }; *m; m++) {
		assert_int_equal(conf_set(c, "datastore_sslmode", *m, err, sizeof(err)), 0);
		assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
		assert_string_equal(pq(c, "sslmode"), *m);
	}
}

/* Layering: main.c applies the file, then the environment, then --set. */
static void test_layering(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	char *env_none[] = { NULL };
	char *env[] = { "DATASTORE_PORT=2222", "NVSRELAYD_BATCH_ROWS=22", NULL };

	assert_int_equal(conf_load_text(c, "datastore_port = 1111\nbatch_rows = 11\nmax_clients = 11\n",
					"f", err, sizeof(err)), 0);
	assert_string_equal(v->datastore_port, "1111");
	assert_int_equal(v->poll_interval_ms, 250);     /* default survives */

	assert_int_equal(conf_load_env(c, env_none, err, sizeof(err)), 0);
	assert_int_equal(conf_load_env(c, NULL, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_port, "1111");

	assert_int_equal(conf_load_env(c, env, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_port, "2222");      /* env > file */
	assert_int_equal(v->batch_rows, 22);
	assert_int_equal(v->max_clients, 11);           /* file > default */

	assert_int_equal(conf_set(c, "datastore_port", "3333", err, sizeof(err)), 0);
	assert_string_equal(v->datastore_port, "3333");      /* --set > env */
	assert_int_equal(v->batch_rows, 22);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(pq(c, "port"), "3333");
}

static void test_env_datastore(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	char *env[] = {
		"PATH=/usr/bin",
		"DATASTORE_PROVIDER=postgresql",
		"DATASTORE_HOSTX=wrong",
		"DATASTORE_HOST=pg-0.pg,pg-1.pg",
		"DATASTORE_PORT=15432",
		"DATASTORE_DATABASE=nvs",
		"DATASTORE_USERNAME=postgresql",
		"DATASTORE_PASSWORD=s3cret pass=word",
		"DATASTORE_SSLMODE=verify-ca",
		"DATASTORE_SSLCERT=/c/cert.pem",
		"DATASTORE_SSLKEY=/c/key.pem",
		"DATASTORE_SSLROOTCERT=/c/ca.pem",
		"DATASTORE_HOST=second-is-ignored",
		NULL,
	};

	assert_int_equal(conf_load_env(c, env, err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_host, "pg-0.pg,pg-1.pg");
	assert_string_equal(v->datastore_port, "15432");
	assert_string_equal(v->datastore_database, "nvs");
	assert_string_equal(v->datastore_username, "postgresql");
	assert_string_equal(v->datastore_password, "s3cret pass=word");
	assert_int_equal(v->datastore_sslmode, SSLMODE_VERIFY_CA);
	assert_string_equal(v->datastore_sslcert, "/c/cert.pem");
	assert_string_equal(v->datastore_sslkey, "/c/key.pem");
	assert_string_equal(v->datastore_sslrootcert, "/c/ca.pem");
}

static void test_env_empty_and_precedence(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	/* NVSRELAYD_<KEY> wins over the seed variable in either order. */
	char *env[] = {
		"NVSRELAYD_DATASTORE_PORT=7777",
		"DATASTORE_PORT=6666",
		"DATASTORE_HOST=",              /* empty seed variable = unset */
		"DATASTORE_SSLMODE=",
		"NVSRELAYD_LISTEN_UNIX=",       /* empty NVSRELAYD_ variable = "" */
		"DATASTORE_DATABASE=fromseed",
		"NVSRELAYD_DATASTORE_DATABASE=fromrelay",
		/* Kubernetes service links for a Service named nvsrelayd. */
		"NVSRELAYD_PORT=tcp://10.0.0.7:7000",
		"NVSRELAYD_SERVICE_HOST=10.0.0.7",
		"NVSRELAYD_PORT_7000_TCP_ADDR=10.0.0.7",
		"nvsrelayd_batch_rows=5",       /* names are case-sensitive */
		NULL,
	};

	assert_int_equal(conf_load_env(c, env, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_port, "7777");
	assert_string_equal(v->datastore_host, "localhost");
	assert_int_equal(v->datastore_sslmode, SSLMODE_REQUIRE);
	assert_string_equal(v->listen_unix, "");
	assert_string_equal(v->datastore_database, "fromrelay");
	assert_int_equal(v->batch_rows, 1000);
}

static void test_env_errors(void **state)
{
	static const struct {
		const char *var;
		int ret;
		const char *msg;
	} cases[] = {
		{ "DATASTORE_PORT=abc", -EINVAL,
		  "environment variable DATASTORE_PORT: datastore_port: invalid value 'abc' (expected a port 1..65535, or a comma list of one port per host)" },
		{ "DATASTORE_SSLMODE=prefer", -EINVAL,
		  "environment variable DATASTORE_SSLMODE: datastore_sslmode: invalid value 'prefer' (accepted: disable, require, verify-ca, verify-full)" },
		{ "NVSRELAYD_DATASTORE_HOST=", -EINVAL,
		  "environment variable NVSRELAYD_DATASTORE_HOST: datastore_host: must not be empty" },
		{ "NVSRELAYD_LOG_LEVEL=trace", -EINVAL, "environment variable NVSRELAYD_LOG_LEVEL: log_level:" },
		{ "NVSRELAYD_DATASTORE_OPTIONS=password=hunter2", -EINVAL,
		  "environment variable NVSRELAYD_DATASTORE_OPTIONS: datastore_options: 'password' has its own key" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Conf *c = conf_new();
		char var[128];
		char *env[] = { var, NULL };

		assert_non_null(c);
		snprintf(var, sizeof(var), "%s", cases[i].var);
		err[0] = '\0';
		assert_int_equal(conf_load_env(c, env, err, sizeof(err)), cases[i].ret);
		if (!strstr(err, cases[i].msg))
			fail_msg("case %zu: err '%s' lacks '%s'", i, err, cases[i].msg);
		assert_null(strstr(err, "hunter2"));
		conf_free(c);
	}
}

/* One valid non-default value per key, in the dump's notation. */
static const struct {
	const char *key, *value, *dumped;
} every_key[] = {
	{ "datastore_host", "db.example", NULL },
	{ "datastore_port", "5433", NULL },
	{ "datastore_database", "nvdb", NULL },
	{ "datastore_username", "postgresql", NULL },
	{ "datastore_password", "pw", "(set)" },
	{ "datastore_password_file", "/x/pw", NULL },
	{ "datastore_sslmode", "verify-full", NULL },
	{ "datastore_sslcert", "/x/tls.crt", NULL },
	{ "datastore_sslkey", "/x/tls.key", NULL },
	{ "datastore_sslrootcert", "/x/ca.crt", NULL },
	{ "datastore_options", "sslcompression=0", NULL },
	{ "client_cert_mount_path", "/etc/ssl/client-certs", NULL },
	{ "datastore_replica_host", "standby.example", NULL },
	{ "datastore_replica_port", "5434", NULL },
	{ "listen_unix", "/tmp/r.sock", NULL },
	{ "unix_socket_mode", "600", "0600" },
	{ "unix_allow_uids", "0, nvsentinel", NULL },
	{ "unix_allow_gids", "nvsrelayd", NULL },
	{ "consumer_owners", "node-drainer = uid:1001; * = any", NULL },
	{ "listen_tcp", "[::]:6543", NULL },
	{ "tcp_plaintext", "on", NULL },
	{ "tls_cert_file", "/x/server.crt", NULL },
	{ "tls_key_file", "/x/server.key", NULL },
	{ "tls_ca_file", "/x/clients-ca.crt", NULL },
	{ "auth_token_file", "/x/token", NULL },
	{ "schema", "verify", NULL },
	{ "log_level", "notice", NULL },
	{ "log_format", "journal", NULL },
	{ "poll_interval_ms", "1000", NULL },
	{ "poll_interval_max_ms", "4000", NULL },
	{ "tick_min_interval_ms", "20", NULL },
	{ "tick_idle_ms", "2000", NULL },
	{ "batch_rows", "500", NULL },
	{ "ring_events", "1024", NULL },
	{ "max_frame_bytes", "65536", NULL },
	{ "max_clients", "64", NULL },
	{ "max_subscriptions_per_client", "8", NULL },
	{ "client_output_limit", "1048576", NULL },
	{ "client_output_soft_limit", "262144", NULL },
	{ "client_output_soft_seconds", "5", NULL },
	{ "ack_flush_ms", "50", NULL },
	{ "retention_max_age_hours", "24", NULL },
	{ "retention_max_rows", "1000000", NULL },
	{ "consumer_idle_hours", "12", NULL },
	{ "retention_floor_s", "120", NULL },
	{ "prune_interval_s", "30", NULL },
	{ "prune_chunk_rows", "2000", NULL },
	{ "reconnect_min_ms", "200", NULL },
	{ "reconnect_max_ms", "30000", NULL },
	{ "connect_timeout_s", "5", NULL },
	{ "shutdown_timeout_ms", "20000", NULL },
	{ "http_listen", "[::1]:9100", NULL },
	{ "stats_interval_s", "60", NULL },
	{ "admin_socket", "/tmp/a.sock", NULL },
	{ "upstream", "10.0.0.5:6543, relay-1.example:6543", NULL },
	{ "upstream_tls", "off", NULL },
	{ "upstream_ca_file", "/x/up-ca.crt", NULL },
	{ "upstream_cert_file", "/x/node.crt", NULL },
	{ "upstream_key_file", "/x/node.key", NULL },
	{ "upstream_token_file", "/x/up-token", NULL },
	{ "upstream_timeout_ms", "3000", NULL },
	{ "node_name", "gpu-node-01", NULL },
};

#define N_EVERY (sizeof(every_key) / sizeof(every_key[0]))

static void test_env_every_key(void **state)
{
	Conf *c = *state;
	char *env[N_EVERY + 1], line[300];
	char *dflt;
	size_t i;

	dflt = dump(c);
	/* A key added to conf.c must be added here too. */
	for (i = 0; conf_key_name(i); i++) {
		assert_true(i < N_EVERY);
		assert_string_equal(conf_key_name(i), every_key[i].key);
	}
	assert_int_equal(i, N_EVERY);

	for (i = 0; i < N_EVERY; i++) {
		char var[128];
		size_t j = (size_t)snprintf(var, sizeof(var), "NVSRELAYD_");

		for (const char *s = every_key[i].key; *s; s++)
			var[j++] = (*s >= 'a' && *s <= 'z') ? (char)(*s - 'a' + 'A') : *s;
		snprintf(var + j, sizeof(var) - j, "=%s", every_key[i].value);
		env[i] = strdup(var);
		assert_non_null(env[i]);
	}
	env[N_EVERY] = NULL;
	assert_int_equal(conf_load_env(c, env, err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	for (i = 0; i < N_EVERY; i++) {
		snprintf(line, sizeof(line), "%s = %s", every_key[i].key,
			 every_key[i].dumped ? every_key[i].dumped : every_key[i].value);
		assert_dump_has(c, line);
		/* Not the default, so the assignment is really seen. */
		assert_null(strstr(dflt, line));
		free(env[i]);
	}
	free(dflt);
}

static void test_cert_mount(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	char *env[] = {
		"MONGODB_CLIENT_CERT_MOUNT_PATH=/etc/ssl/mongo-client",
		"POSTGRESQL_CLIENT_CERT_MOUNT_PATH=/etc/ssl/client-certs/",
		"DATASTORE_SSLKEY=/keys/mine.key",
		NULL,
	};

	assert_int_equal(conf_load_env(c, env, err, sizeof(err)), 0);
	assert_string_equal(v->client_cert_mount_path, "/etc/ssl/client-certs/");
	/* Derived in conf_finish, not before. */
	assert_string_equal(v->datastore_sslcert, "");
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_sslcert, "/etc/ssl/client-certs/tls.crt");
	assert_string_equal(v->datastore_sslkey, "/keys/mine.key");     /* explicit wins */
	assert_string_equal(v->datastore_sslrootcert, "/etc/ssl/client-certs/ca.crt");
	assert_string_equal(pq(c, "sslcert"), "/etc/ssl/client-certs/tls.crt");
	assert_string_equal(pq(c, "sslkey"), "/keys/mine.key");
	assert_string_equal(pq(c, "sslrootcert"), "/etc/ssl/client-certs/ca.crt");

	/* A later --set of the mount path is followed by derived values only. */
	assert_int_equal(conf_set(c, "client_cert_mount_path", "/m", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "datastore_sslrootcert", "/ca/root.pem", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_sslcert, "/m/tls.crt");
	assert_string_equal(v->datastore_sslkey, "/keys/mine.key");
	assert_string_equal(v->datastore_sslrootcert, "/ca/root.pem");

	/* Clearing the mount path clears what it derived. */
	assert_int_equal(conf_set(c, "client_cert_mount_path", "", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_sslcert, "");
	assert_string_equal(v->datastore_sslkey, "/keys/mine.key");
	assert_null(pq(c, "sslcert"));

	assert_int_equal(conf_set(c, "client_cert_mount_path", "/", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_sslcert, "/tls.crt");
}

static void test_cert_mount_fallback(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);
	char *env[] = {
		"POSTGRESQL_CLIENT_CERT_MOUNT_PATH=",   /* empty: fall back */
		"MONGODB_CLIENT_CERT_MOUNT_PATH=/etc/ssl/mongo-client",
		NULL,
	};
	char *env_relay[] = {
		"MONGODB_CLIENT_CERT_MOUNT_PATH=/etc/ssl/mongo-client",
		"NVSRELAYD_CLIENT_CERT_MOUNT_PATH=/relay",
		NULL,
	};

	assert_int_equal(conf_load_env(c, env, err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->client_cert_mount_path, "/etc/ssl/mongo-client");
	assert_string_equal(v->datastore_sslcert, "/etc/ssl/mongo-client/tls.crt");
	assert_string_equal(v->datastore_sslkey, "/etc/ssl/mongo-client/tls.key");
	assert_string_equal(v->datastore_sslrootcert, "/etc/ssl/mongo-client/ca.crt");

	assert_int_equal(conf_load_env(c, env_relay, err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_sslcert, "/relay/tls.crt");
}

static void test_cert_explicit_file(void **state)
{
	Conf *c = *state;
	const struct conf_values *v = conf_values(c);

	/* Set in the file before the mount path arrives from the environment. */
	assert_int_equal(conf_load_text(c, "datastore_sslcert = /f/cert.pem\n", "f", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "client_cert_mount_path", "/mnt", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(v->datastore_sslcert, "/f/cert.pem");
	assert_string_equal(v->datastore_sslkey, "/mnt/tls.key");
	assert_string_equal(v->datastore_sslrootcert, "/mnt/ca.crt");
}

static void test_finish_cross_checks(void **state)
{
	Conf *c = *state;

	assert_int_equal(conf_set(c, "reconnect_min_ms", "20000", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "reconnect_min_ms (20000) must not be greater than reconnect_max_ms (10000)");
	assert_int_equal(conf_set(c, "reconnect_max_ms", "20000", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);

	assert_int_equal(conf_set(c, "tick_min_interval_ms", "6000", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "tick_min_interval_ms (6000) must not be greater than tick_idle_ms (5000)");
	assert_int_equal(conf_set(c, "tick_idle_ms", "6000", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);

	/* libpq's per-host ports: one for all hosts, or exactly one per host. */
	assert_int_equal(conf_set(c, "datastore_host", "pg-0,pg-1,pg-2", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "datastore_port", "5432,5433", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "datastore_port lists 2 ports for 3 hosts in datastore_host "
			    "(give one port for all hosts, or one per host)");
	assert_int_equal(conf_set(c, "datastore_port", "5432,5433,6432", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(pq(c, "port"), "5432,5433,6432");
	assert_int_equal(conf_set(c, "datastore_port", "6543", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(pq(c, "port"), "6543");

	assert_int_equal(conf_set(c, "client_output_limit", "1048576", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "client_output_limit (1048576) must be at least max_frame_bytes (16777216)");
	assert_int_equal(conf_set(c, "max_frame_bytes", "1048576", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, NULL, 0), 0);
}

/* The TCP listener: TLS with client certificates or a token, or plaintext
 * on loopback; the allow-lists' syntax. */
/* upstream is a list of HOST:PORT, node_name a short plain name. */
static void test_upstream_values(void **state)
{
	Conf *c = *state;
	static const char *const bad[] = { "relay", "relay:", ":6543", "a:1,,b", "a:1,b", "[::1:6543" };

	assert_int_equal(conf_set(c, "upstream", "10.0.0.5:6543,[::1]:6543, relay.example:6543", err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (conf_set(c, "upstream", bad[i], err, sizeof(err)) != -EINVAL)
			fail_msg("upstream '%s' accepted", bad[i]);
		assert_non_null(strstr(err, "upstream: expected HOST:PORT[,HOST:PORT...]"));
	}
	assert_int_equal(conf_set(c, "node_name", "gpu-node-01.rack_7", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "node_name", "a/b", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "node_name", "x x", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "node_name",
				  "a234567890123456789012345678901234567890123456789012345678901234", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "node_name",
				  "a2345678901234567890123456789012345678901234567890123456789012345", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "upstream_timeout_ms", "299", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "datastore_replica_port", "5432,5433", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "datastore_replica_port", "0", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "datastore_replica_port", "", err, sizeof(err)), 0);
}

static void test_tcp_rules(void **state)
{
	Conf *c = *state;
	static const char *const loopback[] = { "127.0.0.1:7000", "127.9.9.9:7000", "[::1]:7000",
						"[::ffff:127.0.0.1]:7000", "localhost:7000" };
	static const char *const bad_lists[] = { ",", "1,", ",1", "1,,2", "a b", "-x", "x;y", "1, ,2" };

	assert_int_equal(conf_set(c, "tls_cert_file", "/x/s.crt", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "tls_cert_file and tls_key_file must be set together");
	assert_int_equal(conf_set(c, "tls_key_file", "/x/s.key", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "listen_tcp", "0.0.0.0:6543", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "needs client certificates (tls_ca_file) or a token (auth_token_file)"));
	assert_int_equal(conf_set(c, "auth_token_file", "/x/token", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "auth_token_file", "", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "tls_ca_file", "/x/ca.crt", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	/* With TLS, tcp_plaintext has nothing to allow. */
	assert_int_equal(conf_set(c, "tcp_plaintext", "on", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);

	/* Without TLS: plaintext, asked for, on loopback only. */
	assert_int_equal(conf_set(c, "tls_cert_file", "", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "tls_key_file", "", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "tls_ca_file is set but tls_cert_file and tls_key_file are not: "
			    "client certificates are checked only over TLS");
	assert_int_equal(conf_set(c, "tls_ca_file", "", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tcp_plaintext = on is allowed on a loopback address only, and listen_tcp = "
				    "0.0.0.0:6543 is not one"));
	assert_int_equal(conf_set(c, "listen_tcp", "[::]:6543", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		assert_int_equal(conf_set(c, "listen_tcp", loopback[i], err, sizeof(err)), 0);
		assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	}
	/* Plaintext TCP without a token would get around a Unix allow-list. */
	assert_int_equal(conf_set(c, "unix_allow_gids", "1000", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "around unix_allow_uids and unix_allow_gids"));
	assert_int_equal(conf_set(c, "auth_token_file", "/x/token", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "auth_token_file", "", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "unix_allow_gids", "", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "tcp_plaintext", "off", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "listen_tcp = localhost:7000 needs TLS (tls_cert_file and tls_key_file), "
			    "or tcp_plaintext = on for a loopback address");
	assert_int_equal(conf_set(c, "tcp_plaintext", "yes", err, sizeof(err)), -EINVAL);
	assert_int_equal(conf_set(c, "listen_tcp", "", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);

	assert_int_equal(conf_set(c, "unix_allow_uids", " 0, 1000 ,nvsentinel,svc.a-1,sam$ ", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "unix_allow_gids", "", err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
		err[0] = '\0';
		assert_int_equal(conf_set(c, "unix_allow_gids", bad_lists[i], err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "unix_allow_gids: expected a comma list of numbers and names"));
	}
	assert_int_equal(conf_set(c, "consumer_owners", "a = uid:1; b* = cn:x, token", err, sizeof(err)), 0);
	err[0] = '\0';
	assert_int_equal(conf_set(c, "consumer_owners", "a = user:root", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "consumer_owners: "));
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
}

static void test_libpq_defaults(void **state)
{
	Conf *c = *state;
	static const char *const want[][2] = {
		{ "host", "localhost" },
		{ "port", "5432" },
		{ "dbname", "nvsentinel" },
		{ "user", "nvsentinel" },
		{ "sslmode", "require" },
		{ "application_name", "nvsrelayd" },
		{ "gssencmode", "disable" },
		{ "keepalives", "1" },
		{ "keepalives_idle", "30" },
		{ "keepalives_interval", "10" },
		{ "keepalives_count", "3" },
		{ "connect_timeout", "10" },
	};

	/* Usable straight from conf_new, and the same after conf_finish. */
	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
			const char *got = pq(c, want[i][0]);

			if (!got || strcmp(got, want[i][1]) != 0)
				fail_msg("%s: got '%s', want '%s'", want[i][0], got ? got : "(absent)", want[i][1]);
		}
		assert_int_equal(pq_count(c), sizeof(want) / sizeof(want[0]));
		assert_null(pq(c, "password"));
		assert_null(pq(c, "sslcert"));
		assert_null(pq(c, "sslkey"));
		assert_null(pq(c, "sslrootcert"));
		assert_null(pq(c, "target_session_attrs"));
		assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	}
}

static void test_libpq_full(void **state)
{
	Conf *c = *state;
	const char *const *old_keys, *const *old_vals;
	const char *text =
		"datastore_host = pg-a,pg-b\n"
		"datastore_port = 6432\n"
		"datastore_password = \"p w'\\\\\"\n"
		"datastore_sslmode = verify-full\n"
		"datastore_sslcert = /c/tls.crt\n"
		"datastore_sslkey = /c/tls.key\n"
		"datastore_sslrootcert = /c/ca.crt\n"
		"connect_timeout_s = 3\n"
		"datastore_options = options = '-c statement_timeout=0 -c x=\\'y\\'' keepalives_idle=5 "
		"  sslcrl=/c/crl\\ file.pem application_name=relay-a target_session_attrs=any  sslsni=\n";

	conf_libpq_params(c, &old_keys, &old_vals);
	assert_int_equal(conf_load_text(c, text, "f", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(pq(c, "host"), "pg-a,pg-b");
	assert_string_equal(pq(c, "port"), "6432");
	assert_string_equal(pq(c, "password"), "p w'\\");
	assert_string_equal(pq(c, "sslmode"), "verify-full");
	assert_string_equal(pq(c, "sslcert"), "/c/tls.crt");
	assert_string_equal(pq(c, "sslkey"), "/c/tls.key");
	assert_string_equal(pq(c, "sslrootcert"), "/c/ca.crt");
	assert_string_equal(pq(c, "connect_timeout"), "3");
	assert_string_equal(pq(c, "gssencmode"), "disable");
	assert_string_equal(pq(c, "keepalives"), "1");
	assert_string_equal(pq(c, "keepalives_interval"), "10");
	/* datastore_options: extra pairs, and overrides of built-in tuning. */
	assert_string_equal(pq(c, "options"), "-c statement_timeout=0 -c x='y'");
	assert_string_equal(pq(c, "keepalives_idle"), "5");
	assert_string_equal(pq(c, "sslcrl"), "/c/crl file.pem");
	assert_string_equal(pq(c, "application_name"), "relay-a");
	assert_string_equal(pq(c, "target_session_attrs"), "any");
	assert_string_equal(pq(c, "sslsni"), "");
	assert_int_equal(pq_count(c), 20);

	/* Arrays handed out earlier stay valid until conf_free. */
	assert_string_equal(old_keys[0], "host");
	assert_string_equal(old_vals[0], "localhost");
}

static void test_libpq_multihost(void **state)
{
	Conf *c = *state;

	assert_int_equal(conf_set(c, "datastore_host", "pg-0,pg-1,pg-2", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_string_equal(pq(c, "target_session_attrs"), "read-write");
	assert_int_equal(conf_set(c, "datastore_host", "/var/run/postgresql", err, sizeof(err)), 0);
	assert_int_equal(conf_finish(c, err, sizeof(err)), 0);
	assert_null(pq(c, "target_session_attrs"));
	assert_string_equal(pq(c, "host"), "/var/run/postgresql");
}

static void test_dump(void **state)
{
	Conf *c = *state, *c2;
	char *d, *d2, small[16];
	size_t n;

	d = dump(c);
	assert_non_null(strstr(d, "datastore_password = \"\"\n"));
	assert_non_null(strstr(d, "unix_socket_mode = 0660\n"));
	assert_non_null(strstr(d, "datastore_sslmode = require\n"));
	assert_non_null(strstr(d, "log_level = info\n"));
	assert_non_null(strstr(d, "datastore_sslcert = \"\"\n"));
	assert_int_equal(strncmp(d, "datastore_host = localhost\n", 27), 0);
	n = strlen(d);
	free(d);

	assert_int_equal(conf_set(c, "datastore_password", "hunter2 secret", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "datastore_options", "sslpassword=pw application_name='a b'", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "datastore_sslcert", " lead\"q\\\t\n\r", err, sizeof(err)), 0);
	assert_int_equal(conf_set(c, "listen_unix", "'x", err, sizeof(err)), 0);
	d = dump(c);
	assert_null(strstr(d, "hunter2"));
	assert_non_null(strstr(d, "datastore_password = (set)\n"));
	/* The client key's passphrase inside datastore_options is not shown either. */
	assert_non_null(strstr(d, "datastore_options = sslpassword=(set) application_name='a b'\n"));
	assert_null(strstr(d, "=pw"));
	assert_non_null(strstr(d, "datastore_sslcert = \" lead\\\"q\\\\\\t\\n\\r\"\n"));

	/* snprintf semantics. */
	assert_int_equal(conf_dump(c, NULL, 0), strlen(d));
	memset(small, 'x', sizeof(small));
	assert_int_equal(conf_dump(c, small, sizeof(small)), strlen(d));
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_memory_equal(small, d, sizeof(small) - 1);
	assert_int_equal(conf_dump(c, small, 1), strlen(d));
	assert_string_equal(small, "");
	assert_true(strlen(d) > n);

	/* The dump reads back as a config file (the password aside). */
	c2 = conf_new();
	assert_non_null(c2);
	assert_int_equal(conf_load_text(c2, d, "dump", err, sizeof(err)), 0);
	assert_string_equal(conf_values(c2)->datastore_sslcert, " lead\"q\\\t\n\r");
	assert_string_equal(conf_values(c2)->listen_unix, "'x");
	assert_string_equal(conf_values(c2)->datastore_options, "sslpassword=(set) application_name='a b'");
	d2 = dump(c2);
	assert_string_equal(d, d2);
	free(d2);
	conf_free(c2);
	free(d);

	/* Without sslpassword the options are shown as written. */
	assert_int_equal(conf_set(c, "datastore_options", " a=1   b='x y' ", err, sizeof(err)), 0);
	assert_dump_has(c, "datastore_options = \" a=1   b='x y' \"");
	assert_int_equal(conf_set(c, "datastore_options", "sslpassword='' x=a\\'b y=", err, sizeof(err)), 0);
	assert_dump_has(c, "datastore_options = sslpassword=(set) x='a\\'b' y=''");
}

static void test_free_null(void **state)
{
	(void)state;
	conf_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test(test_key_names),
		cmocka_unit_test_setup_teardown(test_file_syntax, setup, teardown),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test_setup_teardown(test_file_stops_at_first_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_layering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_datastore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_empty_and_precedence, setup, teardown),
		cmocka_unit_test(test_env_errors),
		cmocka_unit_test_setup_teardown(test_env_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_mount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_mount_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_explicit_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_finish_cross_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upstream_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_libpq_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_libpq_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_libpq_multihost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
		cmocka_unit_test(test_free_null),
	};

	return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
