/*
 * log.c - formats and writes log lines to stderr.  The format is chosen once
 * at start-up (log_setup from main.c); every daemon module calls log_msg
 * through the log_* macros.  Messages are built by the daemon from escaped
 * values, so JSON output only has to escape the message itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "utf8.h"

enum sink { SINK_TEXT, SINK_JOURNAL, SINK_JSON };

static enum log_level threshold = LOG_INFO;
static enum sink sink = SINK_TEXT;

static const char *const level_names[8] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
};

int log_setup(const char *level, const char *format)
{
	int i;

	for (i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (strcmp(level, level_names[i]) == 0)
			break;
	if (i > LOG_DEBUG)
		return -EINVAL;
	threshold = (enum log_level)i;

	if (strcmp(format, "text") == 0)
		sink = SINK_TEXT;
	else if (strcmp(format, "journal") == 0)
		sink = SINK_JOURNAL;
	else if (strcmp(format, "json") == 0)
		sink = SINK_JSON;
	else if (strcmp(format, "auto") == 0)
		sink = getenv("JOURNAL_STREAM") ? SINK_JOURNAL
		     : isatty(STDERR_FILENO) ? SINK_TEXT : SINK_JSON;
	else
		return -EINVAL;
	return 0;
}

static void json_escape(const char *s, FILE *f)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
}

const char *log_quote(const char *s, char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n = 0;

	if (len < 8) {
		if (len)
			buf[0] = '\0';
		return buf;
	}
	buf[n++] = '\'';
	while (*p) {
		char esc[8];
		size_t k = utf8_len(p), el = 0;

		if (*p == '\'' || *p == '\\')
			el = (size_t)snprintf(esc, sizeof(esc), "\\%c", *p);
		else if (*p == '\n')
			el = (size_t)snprintf(esc, sizeof(esc), "\\n");
		else if (*p == '\t')
			el = (size_t)snprintf(esc, sizeof(esc), "\\t");
		else if (*p == '\r')
			el = (size_t)snprintf(esc, sizeof(esc), "\\r");
		else if (k == 0 || *p < 0x20 || *p == 0x7f)
			el = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", *p);
		/* Keep room for "...", the closing quote and the NUL. */
		if (n + (el ? el : k) + 5 > len) {
			memcpy(buf + n, "...", 3);
			n += 3;
			break;
		}
		if (el) {
			memcpy(buf + n, esc, el);
			n += el;
			p++;
		} else {
			memcpy(buf + n, p, k);
			n += k;
			p += k;
		}
	}
	buf[n++] = '\'';
	buf[n] = '\0';
	return buf;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char msg[2048], ts[64];
	struct timespec now;
	struct tm tm;
	va_list ap;

	if (lvl > threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One entry, one line: PostgreSQL messages carry newlines (DETAIL,
	 * LINE excerpts) that would split an entry in text and journal. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
		else if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';    /* no terminal escapes from a PostgreSQL message */
	for (size_t n = strlen(msg); n > 0 && msg[n - 1] == ' '; n--)
		msg[n - 1] = '\0';

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (long)(now.tv_nsec / 1000000) % 1000);

	switch (sink) {
	case SINK_JOURNAL:
		fprintf(stderr, "<%d>%s\n", (int)lvl, msg);
		break;
	case SINK_JSON:
		fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[lvl]);
		json_escape(msg, stderr);
		fputs("\"}\n", stderr);
		break;
	default:
		fprintf(stderr, "%s %s %s\n", ts, level_names[lvl], msg);
	}
	fflush(stderr);
}
