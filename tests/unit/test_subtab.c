/*
 * test_subtab.c - the (owner, sid) table of daemon/stream/subtab.c against
 * a plain array as reference: random puts, gets and deletes over a few
 * owners and colliding sids, through growth and backward-shift deletion.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>

#include "subtab.h"

#define OWNERS 7
#define SIDS 300

static int owner_tag[OWNERS];
static void *ref[OWNERS][SIDS];

static void test_basic(void **state)
{
	Subtab *t = subtab_new();
	int a, b, v1, v2;

	(void)state;
	assert_non_null(t);
	assert_null(subtab_get(t, &a, 1));
	assert_int_equal(subtab_put(t, &a, 1, &v1), 0);
	assert_int_equal(subtab_put(t, &a, 1, &v2), -EEXIST);
	assert_int_equal(subtab_put(t, &b, 1, &v2), 0);   /* same sid, other owner */
	assert_ptr_equal(subtab_get(t, &a, 1), &v1);
	assert_ptr_equal(subtab_get(t, &b, 1), &v2);
	assert_int_equal(subtab_set(t, &b, 1, &v1), 0);   /* replaced in place */
	assert_ptr_equal(subtab_get(t, &b, 1), &v1);
	assert_int_equal(subtab_set(t, &b, 2, &v1), -ENOENT);
	assert_null(subtab_get(t, &b, 2));
	assert_int_equal(subtab_count(t), 2);
	assert_int_equal(subtab_set(t, &b, 1, &v2), 0);
	assert_null(subtab_get(t, &a, -1));
	assert_ptr_equal(subtab_del(t, &a, 1), &v1);
	assert_null(subtab_del(t, &a, 1));
	assert_int_equal(subtab_count(t), 1);
	subtab_free(t);
}

static void test_random(void **state)
{
	Subtab *t = subtab_new();
	size_t n = 0;

	(void)state;
	srand(7);
	for (int round = 0; round < 200000; round++) {
		int o = rand() % OWNERS, k = rand() % SIDS;
		long long sid = (long long)k * 1000003LL - 5;
		void *val = &ref[o][k];

		switch (rand() % 3) {
		case 0:
			if (ref[o][k]) {
				assert_int_equal(subtab_put(t, &owner_tag[o], sid, val), -EEXIST);
			} else {
				assert_int_equal(subtab_put(t, &owner_tag[o], sid, val), 0);
				ref[o][k] = val;
				n++;
			}
			break;
		case 1:
			assert_ptr_equal(subtab_get(t, &owner_tag[o], sid), ref[o][k]);
			break;
		default:
			assert_ptr_equal(subtab_del(t, &owner_tag[o], sid), ref[o][k]);
			if (ref[o][k])
				n--;
			ref[o][k] = NULL;
		}
		assert_int_equal(subtab_count(t), n);
	}
	for (int o = 0; o < OWNERS; o++)
		for (int k = 0; k < SIDS; k++)
			assert_ptr_equal(subtab_get(t, &owner_tag[o], (long long)k * 1000003LL - 5), ref[o][k]);
	subtab_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
