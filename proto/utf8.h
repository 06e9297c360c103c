/*
 * utf8.h - UTF-8 validation, shared by the log (escaping), the metrics
 * renderer (label values) and the protocol (strings that reach PostgreSQL,
 * client-supplied text quoted in error frames).  Pure code.
 */
#ifndef NVSRELAY_UTF8_H
#define NVSRELAY_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence starting at s (1..4), or 0 for an
 * invalid, overlong or surrogate sequence.  s must be NUL-terminated. */
size_t utf8_len(const unsigned char *s);

/* True when the whole NUL-terminated string is valid UTF-8. */
bool utf8_valid(const char *s);

/* Copies len bytes of src, a string a client sent (it may hold NULs and
 * invalid UTF-8), into dst of size bytes (size > 0) so it can be quoted in
 * an error message: always valid UTF-8 and NUL-terminated, each byte of an
 * invalid or cut sequence and each control character (NUL included) written
 * as \xHH, and, when it does not fit, cut at a character boundary and
 * ended with "..." (when at least one character fits before it).  Returns
 * the length written, excluding the NUL. */
size_t utf8_quote(char *dst, size_t size, const char *src, size_t len);

#endif
