/*
 * token.c - the resume-token codec: struct token <-> 40 hex digits.
 *
 * Called by the daemon (events, bookmarks, acks, durable positions), the
 * client library and the CLI.  Pure code: no I/O, no allocation.
 *
 * Digits are written and read by hand rather than with printf/strtoull:
 * the format must be exactly fixed-width lower case (so tokens order as
 * strings), and strtoull would accept signs, spaces and "0x" that a token
 * must not contain.
 */
#include "token.h"

#include <errno.h>

static const char hex_digits[] = "0123456789abcdef";

static void
put_hex(char *out, uint64_t v, int ndigits)
{
	for (int i = ndigits - 1; i >= 0; i--) {
		out[i] = hex_digits[v & 0xf];
		v >>= 4;
	}
}

/* Returns the digit's value, or -1 for anything but [0-9a-fA-F]. */
static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
get_hex(const char *s, int ndigits, uint64_t *ret)
{
	uint64_t v = 0;

	for (int i = 0; i < ndigits; i++) {
		int d = hex_value(s[i]);

		if (d < 0)
			return -EINVAL;
		v = (v << 4) | (uint64_t)d;
	}
	*ret = v;
	return 0;
}

void
token_format(const struct token *t, char out[TOKEN_HEX_LEN + 1])
{
	put_hex(out, t->gen, 8);
	put_hex(out + 8, t->tick, 16);
	put_hex(out + 24, t->id, 16);
	out[TOKEN_HEX_LEN] = '\0';
}

int
token_parse(const char *s, size_t len, struct token *ret)
{
	uint64_t gen, tick, id;

	if (s == NULL || len != TOKEN_HEX_LEN)
		return -EINVAL;
	if (get_hex(s, 8, &gen) < 0 || get_hex(s + 8, 16, &tick) < 0 ||
	    get_hex(s + 24, 16, &id) < 0)
		return -EINVAL;
	/* Only written on success, so a caller's old position survives a bad token. */
	ret->gen = (uint32_t)gen;
	ret->tick = tick;
	ret->id = id;
	return 0;
}

int
token_cmp(const struct token *a, const struct token *b)
{
	if (a->tick != b->tick)
		return a->tick < b->tick ? -1 : 1;
	if (a->id != b->id)
		return a->id < b->id ? -1 : 1;
	return 0;
}
