/*
 * log.h - the daemon's log: syslog levels, text on a terminal, priority
 * prefixes for the journal, JSON lines for Kubernetes.  Only daemon-level
 * code logs; pure modules return errors instead.
 */
#ifndef NVSRELAY_LOG_H
#define NVSRELAY_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_ERR = 3, LOG_WARNING = 4, LOG_NOTICE = 5, LOG_INFO = 6, LOG_DEBUG = 7 };

/* level: err|warning|notice|info|debug; format: auto|text|journal|json
 * (auto picks journal under systemd, text on a terminal, json otherwise).
 * Returns 0 or -EINVAL. */
int log_setup(const char *level, const char *format);

/* Where the trailing key=value pairs of a formatted message begin (the
 * members of a JSON line), or strlen(msg) when it has none. */
size_t log_fields_at(const char *msg);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Quotes a string that came from outside (a consumer or client name, a
 * message echoing input) for a log line: in single quotes, with ' and \
 * backslash-escaped, control characters and bytes that are not UTF-8 as
 * \n, \t, \r or \xNN, cut with "..." to fit len.  Returns buf. */
const char *log_quote(const char *s, char *buf, size_t len);

/* log_quote into a temporary that lives until the end of the statement's
 * block: log_info("x=%s", LOGQ(name)). */
#define LOG_QUOTE_MAX 320
#define LOGQ(s) log_quote((s), (char[LOG_QUOTE_MAX]){ 0 }, LOG_QUOTE_MAX)

#define log_err(...)     log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
