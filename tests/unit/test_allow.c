/*
 * test_allow.c - unit tests of the Unix socket allow-lists (daemon/net/allow.c):
 * ids and names, blanks, duplicates, the inputs the parser must refuse with a
 * message, and the admission rule over uid and groups.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "allow.h"

/* A user database of two entries. */
static int
resolve(const char *name, unsigned *ret_id, void *ud)
{
	int *calls = ud;

	(*calls)++;
	if (strcmp(name, "nvsentinel") == 0) {
		*ret_id = 1000;
		return 0;
	}
	if (strcmp(name, "svc.relay-1") == 0) {
		*ret_id = 4242;
		return 0;
	}
	return -ENOENT;
}

static void
test_parse_ids_and_names(void **state)
{
	struct allow_list l = { NULL, 0 };
	char err[128] = "";
	int calls = 0;

	(void)state;
	assert_int_equal(allow_parse(" 0, nvsentinel ,svc.relay-1,\t65534 ", "unix_allow_uids", resolve, &calls,
				     &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 4);
	assert_int_equal(l.ids[0], 0);
	assert_int_equal(l.ids[1], 1000);
	assert_int_equal(l.ids[2], 4242);
	assert_int_equal(l.ids[3], 65534);
	assert_int_equal(calls, 2);
	assert_true(allow_has(&l, 1000));
	assert_false(allow_has(&l, 1001));

	/* A second parse replaces the list; duplicates are kept once. */
	assert_int_equal(allow_parse("7,7,nvsentinel,1000", "x", resolve, &calls, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.ids[0], 7);
	assert_int_equal(l.ids[1], 1000);
	allow_clear(&l);
	assert_null(l.ids);
	assert_int_equal(l.n, 0);
	allow_clear(&l);
}

static void
test_parse_empty(void **state)
{
	struct allow_list l = { NULL, 0 };
	char err[128] = "";
	int calls = 0;

	(void)state;
	assert_int_equal(allow_parse("", "x", resolve, &calls, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(allow_parse("  \t ", "x", resolve, &calls, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(allow_parse(NULL, "x", resolve, &calls, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(calls, 0);
}

static void
test_parse_refused(void **state)
{
	static const struct {
		const char *text;
		const char *msg;
	} cases[] = {
		{ "1000,", "unix_allow_gids: empty item in the list" },
		{ ",1000", "unix_allow_gids: empty item in the list" },
		{ "1, ,2", "unix_allow_gids: empty item in the list" },
		{ "1,,2", "unix_allow_gids: empty item in the list" },
		{ "nobody-here", "unix_allow_gids: unknown name 'nobody-here'" },
		{ "-1", "unix_allow_gids: '-1' is neither a number nor a user or group name" },
		{ "10 00", "unix_allow_gids: '10 00' is neither a number nor a user or group name" },
		{ "a;b", "unix_allow_gids: 'a;b' is neither a number nor a user or group name" },
		{ "4294967295", "unix_allow_gids: 4294967295 is out of range" },
		{ "99999999999999999999999", "unix_allow_gids: 99999999999999999999999 is out of range" },
	};
	struct allow_list l = { NULL, 0 };
	char err[128];
	int calls = 0;

	(void)state;
	/* A failed parse leaves the previous list alone. */
	assert_int_equal(allow_parse("5", "x", resolve, &calls, &l, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		assert_int_equal(allow_parse(cases[i].text, "unix_allow_gids", resolve, &calls, &l, err,
					     sizeof(err)), -EINVAL);
		assert_string_equal(err, cases[i].msg);
		assert_int_equal(l.n, 1);
		assert_int_equal(l.ids[0], 5);
	}
	/* Without a resolver every name is unknown. */
	assert_int_equal(allow_parse("nvsentinel", "x", NULL, NULL, &l, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "x: unknown name 'nvsentinel'");
	/* A NULL error buffer is allowed. */
	assert_int_equal(allow_parse("1,", "x", resolve, &calls, &l, NULL, 0), -EINVAL);
	allow_clear(&l);
}

static void
test_peer_rule(void **state)
{
	unsigned u[] = { 0, 1000 }, g[] = { 300 };
	struct allow_list uids = { u, 2 }, gids = { g, 1 }, none = { NULL, 0 };
	unsigned groups[] = { 65534, 300 };

	(void)state;
	/* Both empty: the file mode alone decides. */
	assert_true(allow_peer(&none, &none, 65534, groups, 1));
	assert_true(allow_peer(&uids, &gids, 1000, groups, 1));
	assert_false(allow_peer(&uids, &gids, 65534, groups, 1));
	/* A supplementary group admits. */
	assert_true(allow_peer(&uids, &gids, 65534, groups, 2));
	/* Only uids listed: groups never admit. */
	assert_false(allow_peer(&uids, &none, 65534, groups, 2));
	assert_true(allow_peer(&uids, &none, 0, NULL, 0));
	/* Only gids listed. */
	assert_false(allow_peer(&none, &gids, 1000, groups, 1));
	assert_true(allow_peer(&none, &gids, 1000, groups, 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ids_and_names),
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_parse_refused),
		cmocka_unit_test(test_peer_rule),
	};

	return cmocka_run_group_tests_name("allow", tests, NULL, NULL);
}
