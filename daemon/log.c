/*
 * log.c - formats and writes log lines to stderr.  The format is chosen once
 * at start-up (log_setup from main.c); every daemon module calls log_msg
 * through the log_* macros.
 *
 * Lines are written as "what happened key=value key='quoted value'", values
 * from outside quoted by log_quote.  Text and journal print that as it is;
 * JSON makes the trailing key=value pairs members of the object, so a log
 * pipeline can select on them, and keeps only the words before them in
 * "msg".  A tail that does not parse as pairs stays in "msg": nothing is
 * lost, it is just not split.
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

static bool is_key_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool is_key_char(char ch)
{
	return is_key_start(ch) || (ch >= '0' && ch <= '9');
}

/* Length of "key=" at s, or 0.  The object's own members are not keys. */
static size_t key_len(const char *s)
{
	size_t n = 0;

	if (!is_key_start(s[0]))
		return 0;
	while (is_key_char(s[n]))
		n++;
	if (s[n] != '=')
		return 0;
	if ((n == 2 && memcmp(s, "ts", 2) == 0) || (n == 3 && memcmp(s, "msg", 3) == 0) ||
	    (n == 5 && memcmp(s, "level", 5) == 0))
		return 0;
	return n + 1;
}

/* Length of the value at s: a bare word, or a log_quote'd string that must
 * end at a space or the end.  0 when the quotes do not close. */
static size_t value_len(const char *s)
{
	size_t n = 0;

	if (s[0] != '\'') {
		while (s[n] && s[n] != ' ')
			n++;
		return n;
	}
	for (n = 1; s[n]; n++) {
		if (s[n] == '\\' && s[n + 1])
			n++;
		else if (s[n] == '\'')
			return s[n + 1] == '\0' || s[n + 1] == ' ' ? n + 1 : 0;
	}
	return 0;
}

/* Whether s, to its end, is key=value pairs separated by spaces. */
static bool all_pairs(const char *s)
{
	while (*s) {
		size_t k = key_len(s), v;

		if (!k)
			return false;
		s += k;
		v = value_len(s);
		if (!v && *s == '\'')
			return false;
		s += v;
		while (*s == ' ')
			s++;
	}
	return true;
}

size_t log_fields_at(const char *msg)
{
	size_t len = strlen(msg);

	for (size_t i = 0; i < len; i++)
		if ((i == 0 || msg[i - 1] == ' ') && key_len(msg + i) && all_pairs(msg + i))
			return i;
	return len;
}

/* A bare value that JSON reads as the same number is written as one. */
static bool is_number(const char *s, size_t n)
{
	size_t i = 0;

	if (i < n && s[i] == '-')
		i++;
	if (i >= n || s[i] < '0' || s[i] > '9' || (s[i] == '0' && i + 1 < n && s[i + 1] != '.'))
		return false;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i < n && s[i] == '.') {
		if (++i >= n)
			return false;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return i == n && n <= 20;
}

static void json_escape_n(const char *s, size_t n, FILE *f)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
}

/* The pairs from log_fields_at as members.  log_quote's \' \\ \n \t \r
 * are undone; \xNN stays as written (the byte may not be UTF-8). */
static void json_fields(const char *s, FILE *f)
{
	while (*s) {
		size_t k = key_len(s), v;

		fputs(",\"", f);
		json_escape_n(s, k - 1, f);
		fputs("\":", f);
		s += k;
		v = value_len(s);
		if (s[0] == '\'') {
			fputc('"', f);
			for (size_t i = 1; i + 1 < v; i++) {
				char ch = s[i];

				if (ch == '\\' && i + 2 < v && strchr("\\'ntr", s[i + 1])) {
					ch = s[++i];
					ch = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch == 'r' ? '\r' : ch;
				}
				json_escape_n(&ch, 1, f);
			}
			fputc('"', f);
		} else if (is_number(s, v)) {
			fwrite(s, 1, v, f);
		} else {
			fputc('"', f);
			json_escape_n(s, v, f);
			fputc('"', f);
		}
		s += v;
		while (*s == ' ')
			s++;
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
	case SINK_JSON: {
		size_t at = log_fields_at(msg), end = at;

		while (end > 0 && msg[end - 1] == ' ')
			end--;
		fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[lvl]);
		json_escape_n(msg, end, stderr);
		fputc('"', stderr);
		json_fields(msg + at, stderr);
		fputs("}\n", stderr);
		break;
	}
	default:
		fprintf(stderr, "%s %s %s\n", ts, level_names[lvl], msg);
	}
	fflush(stderr);
}
