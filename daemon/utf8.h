/*
 * utf8.h - UTF-8 validation, shared by the log (escaping), the metrics
 * renderer (label values) and the protocol (strings that reach PostgreSQL).
 * Pure code.
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

#endif
