/*
 * errbuf.h - the one way the pure parsers (conf.c, conf_value.c,
 * conf_load.c, allow.c) write a message into the caller's error buffer.
 * Their callers pass (err, errlen) down and may pass NULL or 0 when they do
 * not want the text; one copy keeps that rule and the truncation the same
 * everywhere.
 */
#ifndef NVSRELAY_ERRBUF_H
#define NVSRELAY_ERRBUF_H

#include <stddef.h>

/* Formats into err (truncated to errlen, always terminated); does nothing
 * when err is NULL or errlen is 0. */
__attribute__((format(printf, 3, 4)))
void errbuf_set(char *err, size_t errlen, const char *fmt, ...);

#endif
