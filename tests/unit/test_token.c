/*
 * test_token.c - unit tests of the resume-token codec (proto/token.c): the
 * fixed format, round trips, string order equal to delivery order, and the
 * inputs a token must refuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "token.h"

static int
sign(int v)
{
	return (v > 0) - (v < 0);
}

static void
assert_token_equal(const struct token *a, const struct token *b)
{
	assert_int_equal(a->gen, b->gen);
	assert_int_equal(a->tick, b->tick);
	assert_int_equal(a->id, b->id);
}

static void
test_format_known(void **state)
{
	struct token t = { .gen = 1, .tick = 0x2a, .id = TOKEN_ID_END };
	struct token z = { 0 };
	struct token m = { .gen = 0xdeadbeef, .tick = 0x0123456789abcdefULL, .id = 0xfedcba9876543210ULL };
	char out[TOKEN_HEX_LEN + 1];

	(void)state;
	token_format(&t, out);
	assert_string_equal(out, "00000001" "000000000000002a" "ffffffffffffffff");
	/* A bookmark's id is all f's, so it sorts after every row of its tick. */
	assert_memory_equal(out + 24, "ffffffffffffffff", 16);

	token_format(&z, out);
	assert_string_equal(out, "0000000000000000000000000000000000000000");

	token_format(&m, out);
	assert_string_equal(out, "deadbeef" "0123456789abcdef" "fedcba9876543210");
	assert_int_equal(strlen(out), TOKEN_HEX_LEN);
}

static void
test_round_trip(void **state)
{
	const struct token cases[] = {
		{ 0, 0, 0 },
		{ 1, 1, 1 },
		{ UINT32_MAX, UINT64_MAX, UINT64_MAX },
		{ 7, 123456789, TOKEN_ID_END },
		{ 0x80000000u, 0x8000000000000000ULL, 0x7fffffffffffffffULL },
		{ 42, 1ULL << 40, 99 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[TOKEN_HEX_LEN + 1];
		struct token back;

		token_format(&cases[i], out);
		for (size_t j = 0; j < TOKEN_HEX_LEN; j++)
			assert_non_null(strchr("0123456789abcdef", out[j]));
		assert_int_equal(token_parse(out, strlen(out), &back), 0);
		assert_token_equal(&back, &cases[i]);
		assert_int_equal(token_cmp(&back, &cases[i]), 0);
	}
}

static void
test_parse_upper_case_and_unterminated(void **state)
{
	const char *upper = "DEADBEEF0123456789ABCDEFFEDCBA9876543210";
	const char *mixed = "DeadBeef0123456789aBcDeFfEdCbA9876543210";
	/* Parsing must stop at len: the digits after it are not part of the token. */
	const char *longer = "0000000100000000000000020000000000000003zz";
	struct token t, u;

	(void)state;
	assert_int_equal(token_parse(upper, strlen(upper), &t), 0);
	assert_int_equal(t.gen, 0xdeadbeefu);
	assert_int_equal(t.tick, 0x0123456789abcdefULL);
	assert_int_equal(t.id, 0xfedcba9876543210ULL);
	assert_int_equal(token_parse(mixed, strlen(mixed), &u), 0);
	assert_token_equal(&t, &u);

	assert_int_equal(token_parse(longer, TOKEN_HEX_LEN, &t), 0);
	assert_int_equal(t.gen, 1);
	assert_int_equal(t.tick, 2);
	assert_int_equal(t.id, 3);
}

static void
test_parse_rejects(void **state)
{
	const char *good = "0000000100000000000000020000000000000003";
	const char *bad[] = {
		"",
		"000000010000000000000002000000000000000",	/* 39 */
		"00000001000000000000000200000000000000030",	/* 41 */
		"0x00000100000000000000020000000000000003",
		"000000010x000000000000020000000000000003",
		"+0000001000000000000000200000000000000003",
		"+000000100000000000000020000000000000003",
		"-000000100000000000000020000000000000003",
		" 000000100000000000000020000000000000003",
		"000000010000000000000002000000000000000 ",
		"0000000100000000000000020000000000000g03",
		"00000001000000000000000200000000000000G3",
		"00000001-0000000000000002-00000000000003",
		"0000000100000000000000020000000000000003\n",
	};
	struct token t = { .gen = 9, .tick = 9, .id = 9 };
	const struct token untouched = t;
	char with_nul[TOKEN_HEX_LEN];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(token_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
		assert_token_equal(&t, &untouched);
	}

	/* Wrong explicit lengths of a good token. */
	assert_int_equal(token_parse(good, 0, &t), -EINVAL);
	assert_int_equal(token_parse(good, TOKEN_HEX_LEN - 1, &t), -EINVAL);
	assert_int_equal(token_parse(NULL, TOKEN_HEX_LEN, &t), -EINVAL);

	/* An embedded NUL at every position, length still 40. */
	for (size_t i = 0; i < TOKEN_HEX_LEN; i++) {
		memcpy(with_nul, good, TOKEN_HEX_LEN);
		with_nul[i] = '\0';
		assert_int_equal(token_parse(with_nul, TOKEN_HEX_LEN, &t), -EINVAL);
	}
	/* Every byte that is not a hex digit, at the first and the last position. */
	for (int c = 0; c < 256; c++) {
		if (strchr("0123456789abcdefABCDEF", c) != NULL && c != '\0')
			continue;
		memcpy(with_nul, good, TOKEN_HEX_LEN);
		with_nul[0] = (char)c;
		assert_int_equal(token_parse(with_nul, TOKEN_HEX_LEN, &t), -EINVAL);
		memcpy(with_nul, good, TOKEN_HEX_LEN);
		with_nul[TOKEN_HEX_LEN - 1] = (char)c;
		assert_int_equal(token_parse(with_nul, TOKEN_HEX_LEN, &t), -EINVAL);
	}
	assert_token_equal(&t, &untouched);
}

static void
test_cmp(void **state)
{
	struct token a = { .gen = 1, .tick = 5, .id = 10 };
	struct token b = { .gen = 2, .tick = 5, .id = 10 };
	struct token c = { .gen = 1, .tick = 5, .id = TOKEN_ID_END };
	struct token d = { .gen = 1, .tick = 6, .id = 0 };

	(void)state;
	/* The generation is not part of the position. */
	assert_int_equal(token_cmp(&a, &b), 0);
	assert_int_equal(token_cmp(&a, &c), -1);
	assert_int_equal(token_cmp(&c, &a), 1);
	/* A whole batch (bookmark) still comes before the next tick's first row. */
	assert_int_equal(token_cmp(&c, &d), -1);
	assert_int_equal(token_cmp(&d, &c), 1);
}

/* Within one generation, comparing the strings must give delivery order. */
static void
test_string_order_is_delivery_order(void **state)
{
	const uint64_t vals[] = {
		0, 1, 2, 9, 10, 15, 16, 255, 256, 4095, 4096, 65535, 65536,
		0xffffffffULL, 0x100000000ULL, 1ULL << 52, 1ULL << 53,
		0x7fffffffffffffffULL, 0x8000000000000000ULL, UINT64_MAX - 1, UINT64_MAX,
	};
	enum { NV = sizeof(vals) / sizeof(vals[0]) };
	const uint32_t gens[] = { 0, 1, 0xabcdu, UINT32_MAX };
	static struct token toks[NV * NV];
	static char strs[NV * NV][TOKEN_HEX_LEN + 1];

	(void)state;
	for (size_t g = 0; g < sizeof(gens) / sizeof(gens[0]); g++) {
		for (size_t i = 0; i < NV * NV; i++) {
			toks[i] = (struct token){ gens[g], vals[i / NV], vals[i % NV] };
			token_format(&toks[i], strs[i]);
		}
		for (size_t i = 0; i < NV * NV; i++) {
			for (size_t j = 0; j < NV * NV; j++) {
				int c = token_cmp(&toks[i], &toks[j]);

				assert_int_equal(sign(strcmp(strs[i], strs[j])), c);
				assert_int_equal(token_cmp(&toks[j], &toks[i]), -c);
			}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_known),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_parse_upper_case_and_unterminated),
		cmocka_unit_test(test_parse_rejects),
		cmocka_unit_test(test_cmp),
		cmocka_unit_test(test_string_order_is_delivery_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
