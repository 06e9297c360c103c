/*
 * test_conf_load.c - unit tests of the one configuration builder
 * (daemon/conf_load.c: defaults < file < environment < --set, with its
 * error classes) and of fileio_read (daemon/fileio.c), which nvsrelayd and
 * nvsrelay both use to read whole files.
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
#include <unistd.h>
#include <sys/stat.h>

#include "conf.h"
#include "conf_load.h"
#include "fileio.h"

static char path[64];

static void write_file(const char *text)
{
	int fd;
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/test_conf_load.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_layers(void **state)
{
	char *env[] = { "DATASTORE_HOST=env-host", "NVSRELAYD_MAX_CLIENTS=20", "NVSRELAYD_BATCH_ROWS=30", NULL };
	const char *sets[] = { "batch_rows=40" };
	struct conf_sources src = { .envp = env, .sets = sets, .nsets = 1 };
	char err[256];
	Conf *c;

	(void)state;
	write_file("datastore_host = file-host\nmax_clients = 10\nbatch_rows = 10\nring_events = 10\n");
	src.file = path;
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), 0);
	assert_string_equal(conf_values(c)->datastore_host, "env-host");
	assert_int_equal(conf_values(c)->max_clients, 20);
	assert_int_equal(conf_values(c)->batch_rows, 40);
	assert_int_equal(conf_values(c)->ring_events, 10);
	conf_free(c);
	unlink(path);

	/* No file, no environment, no --set: the defaults. */
	memset(&src, 0, sizeof(src));
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), 0);
	assert_int_equal(conf_values(c)->batch_rows, 1000);
	conf_free(c);
}

static void test_errors(void **state)
{
	const char *bad_arg[] = { "batch_rows" }, *bad_key[] = { "bogus=1" };
	struct conf_sources src = { 0 };
	char err[256];
	Conf *c = (Conf *)&src;

	(void)state;
	src.sets = bad_arg;
	src.nsets = 1;
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EINVAL);   /* usage */
	assert_null(c);
	assert_non_null(strstr(err, "--set expects KEY=VALUE, got 'batch_rows'"));

	src.sets = bad_key;
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "--set: unknown key 'bogus'");

	src.nsets = 0;
	src.file = "/nonexistent/nvsrelayd.conf";
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EBADMSG);
	assert_string_equal(err, "cannot open /nonexistent/nvsrelayd.conf: No such file or directory");

	write_file("reconnect_min_ms = 5\nreconnect_max_ms = 4\n");
	src.file = path;
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EBADMSG);   /* conf_finish */
	assert_non_null(strstr(err, "reconnect_min_ms"));
	unlink(path);
}

static void test_fileio(void **state)
{
	size_t len = 0;
	char *s;

	(void)state;
	write_file("0123456789");
	s = fileio_read(path, 10, &len);
	assert_non_null(s);
	assert_string_equal(s, "0123456789");
	assert_int_equal(len, 10);
	free(s);
	errno = 0;
	assert_null(fileio_read(path, 9, NULL));
	assert_int_equal(errno, EFBIG);
	unlink(path);
	assert_null(fileio_read(path, 100, NULL));
	assert_int_equal(errno, ENOENT);
	assert_null(fileio_read("/", 100, NULL));
	assert_int_equal(errno, EISDIR);
	/* Larger than one read: the buffer grows. */
	{
		char *big = malloc(300000);

		assert_non_null(big);
		memset(big, 'x', 299999);
		big[299999] = '\0';
		write_file(big);
		s = fileio_read(path, 1u << 20, &len);
		assert_non_null(s);
		assert_int_equal(len, 299999);
		assert_int_equal(strlen(s), 299999);
		free(s);
		free(big);
		unlink(path);
	}
}

/* datastore_password_file: its first line becomes the password; a file
 * group or others can read, or a password given twice, is refused. */
static void test_password_file(void **state)
{
	char set[96], err[512];
	const char *sets[] = { set, "datastore_password=inline" };
	struct conf_sources src = { .sets = sets, .nsets = 1 };
	Conf *c;

	(void)state;
	write_file("s3cret pass\nsecond line\n");
	snprintf(set, sizeof(set), "datastore_password_file=%s", path);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), 0);
	assert_string_equal(conf_values(c)->datastore_password, "s3cret pass");
	conf_free(c);
	src.nsets = 2;
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "both set"));
	src.nsets = 1;
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "has mode 0640: a password must not be readable by group or others"));
	unlink(path);
	assert_int_equal(conf_load(&src, &c, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layers),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_password_file),
		cmocka_unit_test(test_fileio),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
