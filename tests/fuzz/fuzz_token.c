/*
 * fuzz_token.c - libFuzzer target for the resume-token codec
 * (proto/token.c).
 *
 * The input is tried as a token whole, and when it is long enough also as
 * two tokens (its first and last 40 bytes).  A token parses only from
 * exactly 40 hex digits, formats back to the same digits in lower case, and
 * two tokens of one generation order as their formatted strings do.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static int
sign(int v)
{
	return (v > 0) - (v < 0);
}

/* Parses s and checks the round trip; 1 when it is a token. */
static int
one(const char *s, size_t len, struct token *t, char out[TOKEN_HEX_LEN + 1])
{
	struct token back;
	int hex = len == TOKEN_HEX_LEN;

	for (size_t i = 0; hex && i < len; i++)
		hex = isxdigit((unsigned char)s[i]) != 0;
	memset(t, 0xa5, sizeof(*t));
	if (token_parse(s, len, t) < 0) {
		CHECK(!hex);
		return 0;
	}
	CHECK(hex);
	token_format(t, out);
	CHECK(strlen(out) == TOKEN_HEX_LEN);
	for (size_t i = 0; i < TOKEN_HEX_LEN; i++)
		CHECK(out[i] == tolower((unsigned char)s[i]));
	CHECK(token_parse(out, TOKEN_HEX_LEN, &back) == 0);
	CHECK(back.gen == t->gen && back.tick == t->tick && back.id == t->id);
	CHECK(token_cmp(t, &back) == 0);
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct token a, b;
	char fa[TOKEN_HEX_LEN + 1], fb[TOKEN_HEX_LEN + 1];

	(void)one(s, size, &a, fa);
	if (size < 2 * TOKEN_HEX_LEN)
		return 0;
	if (!one(s, TOKEN_HEX_LEN, &a, fa) || !one(s + size - TOKEN_HEX_LEN, TOKEN_HEX_LEN, &b, fb))
		return 0;
	CHECK(sign(token_cmp(&a, &b)) == -sign(token_cmp(&b, &a)));
	if (a.gen == b.gen)
		CHECK(sign(token_cmp(&a, &b)) == sign(strcmp(fa, fb)));
	return 0;
}
