/*
 * test_utf8.c - unit tests of proto/utf8.c: the validator, and the copy of
 * a client-supplied string into an error message (a multi-byte character
 * never cut, invalid sequences, NUL and control characters escaped, the
 * result always valid UTF-8 and NUL-terminated within its buffer).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "utf8.h"

/* Copies len bytes of src into a buffer of size and checks the invariants. */
static const char *
quote(const char *src, size_t len, size_t size)
{
	static char buf[256];
	size_t n;

	assert_true(size <= sizeof(buf) - 8);
	memset(buf, 'Z', sizeof(buf));
	n = utf8_quote(buf, size, src, len);
	assert_int_equal(n, strlen(buf));
	assert_true(n < size);
	assert_true(utf8_valid(buf));
	assert_int_equal(buf[size], 'Z');	/* nothing written past size */
	for (size_t i = 0; i < n; i++)
		assert_true((unsigned char)buf[i] >= 0x20 && buf[i] != 0x7f);
	return buf;
}

#define Q(lit, size) quote(lit, sizeof(lit) - 1, size)

static void
test_valid(void **state)
{
	(void)state;
	assert_true(utf8_valid("plain h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	assert_false(utf8_valid("\xc0\xaf"));		/* overlong '/' */
	assert_false(utf8_valid("\xed\xa0\x80"));	/* surrogate */
	assert_false(utf8_valid("\xf4\x90\x80\x80"));	/* past U+10FFFF */
	assert_false(utf8_valid("\xc3"));		/* cut */
}

static void
test_quote_whole(void **state)
{
	(void)state;
	assert_string_equal(Q("fault-quarantine", 64), "fault-quarantine");
	assert_string_equal(Q("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 64), "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	assert_string_equal(Q("", 1), "");
	/* a string with a backslash is copied as it is */
	assert_string_equal(Q("a\\x41", 64), "a\\x41");
}

static void
test_quote_escapes(void **state)
{
	(void)state;
	/* NUL inside the string: nothing after it is lost */
	assert_string_equal(Q("a\0b", 64), "a\\x00b");
	assert_string_equal(Q("tab\there\nline\x7f", 64), "tab\\x09here\\x0aline\\x7f");
	assert_string_equal(Q("\xff\xfe", 64), "\\xff\\xfe");
	assert_string_equal(Q("\xc0\xaf", 64), "\\xc0\\xaf");
	assert_string_equal(Q("\xed\xa0\x80", 64), "\\xed\\xa0\\x80");
	assert_string_equal(Q("\xf4\x90\x80\x80", 64), "\\xf4\\x90\\x80\\x80");
	/* a sequence the input cuts short is escaped byte by byte, and the
	 * byte that interrupts it starts afresh */
	assert_string_equal(Q("ab\xe2\x82", 64), "ab\\xe2\\x82");
	assert_string_equal(Q("\xe2\x82z\xc3\xa9", 64), "\\xe2\\x82z\xc3\xa9");
	/* the input's length is respected even without a NUL after it */
	assert_string_equal(quote("abc\xc3\xa9", 4, 64), "abc\\xc3");
}

static void
test_quote_cut(void **state)
{
	(void)state;
	/* fits exactly: no marker */
	assert_string_equal(Q("abcdefgh", 9), "abcdefgh");
	/* does not fit: cut with "..." */
	assert_string_equal(Q("abcdefghi", 9), "abcde...");
	assert_string_equal(Q("abcdefghi", 8), "abcd...");
	assert_string_equal(Q("abcdefghi", 5), "a...");
	/* too small for the marker: just cut */
	assert_string_equal(Q("abcdefghi", 4), "abc");
	assert_string_equal(Q("abcdefghi", 1), "");
	/* never half a character... */
	assert_string_equal(Q("ab\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 10), "ab\xe2\x82\xac...");
	assert_string_equal(Q("\xe2\x82\xac\xe2\x82\xac", 6), "\xe2\x82\xac");
	assert_string_equal(Q("\xe2\x82\xac\xe2\x82\xac", 3), "");
	assert_string_equal(Q("\xf0\x9f\x98\x80", 4), "");
	/* ... nor half an escape */
	assert_string_equal(Q("a\xff\xff\xff", 9), "a\\xff...");
	assert_string_equal(Q("a\xff\xff\xff", 8), "a...");
	assert_string_equal(Q("\0\0\0", 6), "\\x00");
	/* every size, every split of a mixed string */
	{
		static const char mix[] = "n\xc3\xa9\0\xff\xe2\x82\xac\xf0\x9f\x98\x80\xc3z";

		for (size_t size = 1; size < 60; size++)
			for (size_t len = 0; len < sizeof(mix); len++)
				quote(mix, len, size);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_quote_whole),
		cmocka_unit_test(test_quote_escapes),
		cmocka_unit_test(test_quote_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
