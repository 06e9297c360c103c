/*
 * token.h - resume tokens: the opaque 40-hex-digit position of a change.
 *
 * A token is generation (8 hex) + tick (16 hex) + changelog id (16 hex).
 * Position (tick, id) means: every batch before `tick` is delivered, and of
 * batch `tick` every row with changelog id <= `id`.  id == TOKEN_ID_END marks
 * a batch delivered whole (bookmarks).  Because every field is fixed-width
 * upper-case-free hex, tokens of one generation compare as strings in delivery
 * order.  Pure code: no I/O, no allocation.  Used by the daemon, the client
 * library and the CLI.
 */
#ifndef NVSRELAY_TOKEN_H
#define NVSRELAY_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_HEX_LEN 40
#define TOKEN_ID_END UINT64_MAX

struct token {
	uint32_t gen;   /* changelog generation (nvsrelay.meta) */
	uint64_t tick;  /* batch = rows visible in tick, not in tick-1 */
	uint64_t id;    /* last delivered changelog id in that batch */
};

/* Writes TOKEN_HEX_LEN lower-case hex digits plus NUL into out. */
void token_format(const struct token *t, char out[TOKEN_HEX_LEN + 1]);

/* Parses exactly TOKEN_HEX_LEN hex digits (either case).
 * Returns 0, or -EINVAL for any other length or character. */
int token_parse(const char *s, size_t len, struct token *ret);

/* Orders positions by (tick, id); the generation is not compared. */
int token_cmp(const struct token *a, const struct token *b);

#endif
