/*
 * log.h - the daemon's log: syslog levels, text on a terminal, priority
 * prefixes for the journal, JSON lines for Kubernetes.  Only daemon-level
 * code logs; pure modules return errors instead.
 */
#ifndef NVSRELAY_LOG_H
#define NVSRELAY_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERR = 3, LOG_WARNING = 4, LOG_NOTICE = 5, LOG_INFO = 6, LOG_DEBUG = 7 };

/* level: err|warning|notice|info|debug; format: auto|text|journal|json
 * (auto picks journal under systemd, text on a terminal, json otherwise).
 * Returns 0 or -EINVAL. */
int log_setup(const char *level, const char *format);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)     log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
