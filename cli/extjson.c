/*
 * extjson.c - mongoexport output to NVSentinel's PostgreSQL rows (see
 * extjson.h).  Three layers: the scanner cuts the export into documents
 * (line format with --pretty blocks, or one --jsonArray), the value
 * converter parses one document with cJSON and rewrites the Extended JSON
 * type wrappers in place, and the row builder takes the id and the
 * extracted columns from the converted document.
 *
 * cJSON keeps numbers as doubles, which would change int64 values beyond
 * 2^53 and the text of every decimal.  So after cJSON has accepted a
 * document, a second pass over the text collects each number token in
 * document order, and every number node becomes a raw node holding exactly
 * those digits: what was exported is what PostgreSQL gets.
 *
 * Pure code, called by import.c, unit-tested by tests/unit/test_extjson.c
 * and fuzzed by tests/fuzz/fuzz_extjson.c.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <openssl/evp.h>

#include "extjson.h"
#include "rfc3339.h"

/* ====================================================================== */
/* Scanner                                                                */
/* ====================================================================== */

enum scan_mode { MODE_UNKNOWN, MODE_LINES, MODE_ARRAY };
enum arr_state { ARR_OPEN, ARR_FIRST, ARR_NEXT, ARR_VALUE, ARR_AFTER, ARR_DONE };

struct extjson_scanner {
	char *buf;
	size_t len, cap;
	size_t pos;                 /* next byte to look at */
	size_t start;               /* first byte of the current document */
	size_t nl;                  /* the newline before the current line */
	size_t max_doc;
	unsigned long long base;    /* input offset of buf[0] */
	unsigned long line;         /* line of buf[pos] */
	unsigned long doc_line;
	unsigned long index;
	enum scan_mode mode;
	enum arr_state arr;
	int depth;
	bool in_doc, in_str, esc;
	bool broken;                /* a string was open at a newline */
	bool line_start;            /* buf[pos] starts a line inside a document */
	bool oversized;             /* bytes of this document are being dropped */
	bool scalar;                /* array element that is not an object */
};

ExtjsonScanner *extjson_scanner_new(size_t max_doc)
{
	ExtjsonScanner *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->max_doc = max_doc ? max_doc : 1;
	s->line = 1;
	return s;
}

void extjson_scanner_free(ExtjsonScanner *s)
{
	if (!s)
		return;
	free(s->buf);
	free(s);
}

bool extjson_scanner_is_array(const ExtjsonScanner *s)
{
	return s->mode == MODE_ARRAY;
}

unsigned long long extjson_scanner_offset(const ExtjsonScanner *s)
{
	return s->base + s->pos;
}

int extjson_scanner_feed(ExtjsonScanner *s, const char *buf, size_t len)
{
	/* Drop what no document needs any more, then make room. */
	size_t keep = s->in_doc ? s->start : s->pos;

	if (keep > 0) {
		memmove(s->buf, s->buf + keep, s->len - keep);
		s->len -= keep;
		s->pos -= keep;
		s->nl = s->nl >= keep ? s->nl - keep : 0;
		if (s->in_doc)
			s->start -= keep;
		s->base += keep;
	}
	if (len > SIZE_MAX - s->len - 1)
		return -ENOMEM;
	if (s->len + len + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 65536;
		char *p;

		while (cap < s->len + len + 1)
			cap *= 2;
		p = realloc(s->buf, cap);
		if (!p)
			return -ENOMEM;
		s->buf = p;
		s->cap = cap;
	}
	if (len)
		memcpy(s->buf + s->len, buf, len);
	s->len += len;
	return 0;
}

static void begin_doc(ExtjsonScanner *s)
{
	s->in_doc = true;
	s->start = s->pos;
	s->doc_line = s->line;
	s->index++;
	s->depth = 0;
	s->in_str = s->esc = s->broken = s->line_start = s->oversized = false;
}

/* Document [start, end) is complete. */
static int end_doc(ExtjsonScanner *s, size_t end, struct extjson_doc *doc)
{
	bool oversized = s->oversized;

	if (end < s->start)
		end = s->start;
	while (end > s->start && (s->buf[end - 1] == ' ' || s->buf[end - 1] == '\t' ||
				  s->buf[end - 1] == '\r' || s->buf[end - 1] == '\n'))
		end--;
	doc->text = s->buf + s->start;
	doc->len = oversized ? 0 : end - s->start;
	doc->line = s->doc_line;
	doc->index = s->index;
	s->in_doc = false;
	s->oversized = false;
	return oversized ? -EMSGSIZE : 1;
}

/* JSON structure only: strings (with escapes) and nesting. */
static void track(ExtjsonScanner *s, unsigned char c)
{
	if (s->in_str) {
		if (s->esc)
			s->esc = false;
		else if (c == '\\')
			s->esc = true;
		else if (c == '"')
			s->in_str = false;
		return;
	}
	if (c == '"')
		s->in_str = true;
	else if (c == '{' || c == '[')
		s->depth++;
	else if (c == '}' || c == ']')
		s->depth--;
}

/* An overlong document is still followed to its end, but its bytes are
 * let go as they pass, so memory stays bounded. */
static void check_size(ExtjsonScanner *s)
{
	if (!s->oversized && s->pos - s->start > s->max_doc)
		s->oversized = true;
	if (s->oversized)
		s->start = s->pos;
}

static int lines_next(ExtjsonScanner *s, bool eof, struct extjson_doc *doc)
{
	while (s->pos < s->len) {
		unsigned char c = (unsigned char)s->buf[s->pos];

		if (!s->in_doc) {
			if (c == '\n') {
				s->line++;
				s->pos++;
				continue;
			}
			if (c == ' ' || c == '\t' || c == '\r') {
				s->pos++;
				continue;
			}
			begin_doc(s);
		}
		if (s->line_start) {
			s->line_start = false;
			/* A line starting with '{' while the document is still
			 * open: the previous one was cut short. */
			if (c == '{' && (s->broken || s->depth > 0))
				return end_doc(s, s->nl, doc);
		}
		if (c == '\n') {
			if (!s->in_str && !s->broken && s->depth <= 0) {
				size_t end = s->pos;

				s->pos++;
				s->line++;
				return end_doc(s, end, doc);
			}
			/* JSON strings hold no raw newline: this one is broken,
			 * find the next document start. */
			if (s->in_str) {
				s->broken = true;
				s->in_str = s->esc = false;
			}
			s->nl = s->pos;
			s->pos++;
			s->line++;
			s->line_start = true;
			check_size(s);
			continue;
		}
		if (!s->broken)
			track(s, c);
		s->pos++;
		check_size(s);
	}
	if (eof && s->in_doc)
		return end_doc(s, s->len, doc);
	return 0;
}

static int bad_array(ExtjsonScanner *s, char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "line %lu: %s", s->line, what);
	return -EBADMSG;
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int array_next(ExtjsonScanner *s, bool eof, struct extjson_doc *doc, char *err, size_t errlen)
{
	while (s->pos < s->len) {
		unsigned char c = (unsigned char)s->buf[s->pos];

		if (s->arr == ARR_VALUE) {
			if (s->scalar && !s->in_str && (is_ws(c) || c == ',' || c == ']')) {
				s->arr = ARR_AFTER;
				return end_doc(s, s->pos, doc);
			}
			if (c == '\n')
				s->line++;
			track(s, c);
			s->pos++;
			check_size(s);
			if (!s->scalar && !s->in_str && s->depth == 0) {
				s->arr = ARR_AFTER;
				return end_doc(s, s->pos, doc);
			}
			continue;
		}
		if (is_ws(c)) {
			if (c == '\n')
				s->line++;
			s->pos++;
			continue;
		}
		switch (s->arr) {
		case ARR_OPEN:
			if (c != '[')
				return bad_array(s, err, errlen, "expected '[' to open the --jsonArray");
			s->arr = ARR_FIRST;
			s->pos++;
			continue;
		case ARR_FIRST:
		case ARR_NEXT:
			if (c == ']') {
				if (s->arr == ARR_NEXT)
					return bad_array(s, err, errlen, "',' followed by ']' in the --jsonArray");
				s->arr = ARR_DONE;
				s->pos++;
				continue;
			}
			if (c == ',')
				return bad_array(s, err, errlen, "empty element in the --jsonArray");
			begin_doc(s);
			s->scalar = c != '{' && c != '[';
			s->arr = ARR_VALUE;
			continue;
		case ARR_AFTER:
			if (c == ',')
				s->arr = ARR_NEXT;
			else if (c == ']')
				s->arr = ARR_DONE;
			else
				return bad_array(s, err, errlen, "expected ',' or ']' between documents of the --jsonArray");
			s->pos++;
			continue;
		case ARR_DONE:
			return bad_array(s, err, errlen, "text after the closing ']' of the --jsonArray");
		case ARR_VALUE:
			break;
		}
	}
	if (!eof)
		return 0;
	if (s->arr == ARR_VALUE && s->scalar && !s->in_str) {
		s->arr = ARR_AFTER;
		return end_doc(s, s->pos, doc);
	}
	if (s->arr != ARR_DONE)
		return bad_array(s, err, errlen, s->arr == ARR_VALUE ? "the export ends inside a document"
				 : "the export ends before the closing ']' of the --jsonArray");
	return 0;
}

int extjson_scanner_next(ExtjsonScanner *s, bool eof, struct extjson_doc *doc, char *err, size_t errlen)
{
	if (s->mode == MODE_UNKNOWN) {
		/* A UTF-8 byte order mark, then the first byte decides. */
		if (s->base == 0 && s->pos == 0 && s->len >= 3 && memcmp(s->buf, "\xEF\xBB\xBF", 3) == 0)
			s->pos = 3;
		else if (s->base == 0 && s->pos == 0 && s->len < 3 && !eof &&
			 memcmp(s->buf, "\xEF\xBB\xBF", s->len) == 0)
			return 0;
		while (s->pos < s->len && is_ws((unsigned char)s->buf[s->pos])) {
			if (s->buf[s->pos] == '\n')
				s->line++;
			s->pos++;
		}
		if (s->pos == s->len)
			return 0;
		s->mode = s->buf[s->pos] == '[' ? MODE_ARRAY : MODE_LINES;
		s->arr = ARR_OPEN;
	}
	if (s->mode == MODE_ARRAY)
		return array_next(s, eof, doc, err, errlen);
	return lines_next(s, eof, doc);
}

/* ====================================================================== */
/* Small codecs: numbers, times, UUIDs, base64                            */
/* ====================================================================== */

/* RFC 8259 number grammar. */
static bool json_number(const char *s, size_t n)
{
	size_t i = 0;

	if (i < n && s[i] == '-')
		i++;
	if (i == n)
		return false;
	if (s[i] == '0')
		i++;
	else if (s[i] >= '1' && s[i] <= '9')
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
	else
		return false;
	if (i < n && s[i] == '.') {
		size_t d = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		size_t d;
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		d = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == d)
			return false;
	}
	return i == n;
}

/* What PostgreSQL's numeric surely holds (131072 digits before the point,
 * 16383 after): all a double or a Decimal128 can be, with room to spare. */
#define MAX_EXPONENT 10000
#define MAX_NUMBER_LEN 1000

/* A JSON number PostgreSQL can store: not too long, exponent in range. */
static bool number_storable(const char *s, size_t n)
{
	size_t k, m;
	long long e = 0;

	if (n > MAX_NUMBER_LEN)
		return false;
	for (k = 0; k < n && s[k] != 'e' && s[k] != 'E'; k++)
		;
	if (k < n) {
		/* json_number() saw digits after the 'e'. */
		for (m = k + 1 + (s[k + 1] == '+' || s[k + 1] == '-'); m < n && e <= MAX_EXPONENT; m++)
			e = e * 10 + (s[m] - '0');
	}
	return e <= MAX_EXPONENT;
}

/* Decimal integer, optional '-', no leading '+' or spaces, within range. */
static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
	unsigned long long v = 0, lim;
	bool neg = false;
	const char *p = s;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (!*p)
		return false;
	lim = neg ? (unsigned long long)(-(lo + 1)) + 1 : (unsigned long long)hi;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		if (v > (lim - (unsigned long long)(*p - '0')) / 10)
			return false;
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	if (neg)
		*out = v == 0 ? 0 : -(long long)(v - 1) - 1;
	else
		*out = (long long)v;
	return true;
}

static bool ts_from_ms(long long ms, struct rfc3339_time *out)
{
	long long sec = ms / 1000, rem = ms % 1000;

	if (rem < 0) {
		rem += 1000;
		sec--;
	}
	out->sec = sec;
	out->nsec = (long)rem * 1000000;
	return sec >= RFC3339_SEC_MIN && sec <= RFC3339_SEC_MAX;
}

static void format_uuid(const unsigned char b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int i, o = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool parse_hex(const char *s, size_t n, unsigned char *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
		if (lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

/* 8-4-4-4-12 hex digits. */
static bool parse_uuid(const char *s, unsigned char b[16])
{
	static const int groups[] = { 8, 4, 4, 4, 12 };
	unsigned char *o = b;
	int g;

	if (strlen(s) != 36)
		return false;
	for (g = 0; g < 5; g++) {
		if (!parse_hex(s, (size_t)groups[g] / 2, o))
			return false;
		o += groups[g] / 2;
		s += groups[g];
		if (g < 4 && *s++ != '-')
			return false;
	}
	return true;
}

/* RFC 4122 version 5 in a namespace of our own, so re-imports agree. */
static const unsigned char ns_import[16] = {
	0x6f, 0x2c, 0x7a, 0x39, 0x4f, 0x5e, 0x4b, 0x8e, 0x9d, 0x1a, 0x3c, 0x0b, 0x7e, 0x5d, 0x2a, 0x61,
};

static bool uuid5(const char *name, size_t len, char out[37])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, ns_import, 16) &&
		  EVP_DigestUpdate(ctx, name, len) && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 16;

	EVP_MD_CTX_free(ctx);
	if (!ok)
		return false;
	md[6] = (md[6] & 0x0f) | 0x50;
	md[8] = (md[8] & 0x3f) | 0x80;
	format_uuid(md, out);
	return true;
}

/* An ObjectId's 12 bytes in an RFC 9562 version 8 UUID:
 * oid[0..5]-8000-8000-oid[6..11], readable both ways. */
static void uuid_from_oid(const unsigned char oid[12], char out[37])
{
	unsigned char b[16];

	memcpy(b, oid, 6);
	b[6] = 0x80;
	b[7] = 0x00;
	b[8] = 0x80;
	b[9] = 0x00;
	memcpy(b + 10, oid + 6, 6);
	format_uuid(b, out);
}

/* Standard base64 with padding; the decoded length in *n (may be 0). */
static unsigned char *base64_decode(const char *s, int *n)
{
	size_t len = strlen(s), i;
	unsigned char *out;
	int r, pad = 0;

	if (len % 4 || len > INT_MAX / 2)
		return NULL;
	for (i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '+' || c == '/' || (c == '=' && i >= len - 2 && (i == len - 1 || s[len - 1] == '='));
		if (!ok)
			return NULL;
	}
	if (len && s[len - 1] == '=')
		pad = len >= 2 && s[len - 2] == '=' ? 2 : 1;
	out = malloc(len / 4 * 3 + 1);
	if (!out)
		return NULL;
	r = len ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)len) : 0;
	if (r < 0) {
		free(out);
		return NULL;
	}
	*n = r - pad;
	return out;
}

/* ====================================================================== */
/* Value conversion                                                       */
/* ====================================================================== */

struct conv {
	char *err;
	size_t errlen;
	char path[200];     /* where we are, for messages */
	size_t plen;        /* always leaves room for "...": plen + 4 < sizeof(path) */
	bool full;          /* "..." ends the path since the push at full_at */
	size_t full_at;
	bool failed;
};

static void fail(struct conv *cx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct conv *cx, const char *fmt, ...)
{
	char msg[300];
	va_list ap;

	if (cx->failed)
		return;
	cx->failed = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cx->plen)
		snprintf(cx->err, cx->errlen, "%s: %s", cx->path, msg);
	else
		snprintf(cx->err, cx->errlen, "%s", msg);
}

/* Runs for every node: no printf. */
static size_t path_push(struct conv *cx, const cJSON *item, int index)
{
	size_t old = cx->plen, room = sizeof(cx->path) - old, n;
	char tmp[16], *p = tmp + sizeof(tmp);

	if (cx->full)
		return old;
	if (item->string) {
		n = strlen(item->string) + (old ? 1 : 0);
		if (n + 4 >= room)
			goto full;
		if (old)
			cx->path[cx->plen++] = '.';
		memcpy(cx->path + cx->plen, item->string, n - (old ? 1 : 0));
		cx->plen = old + n;
	} else {
		*--p = ']';
		do
			*--p = (char)('0' + index % 10);
		while ((index /= 10) > 0);
		*--p = '[';
		n = (size_t)(tmp + sizeof(tmp) - p);
		if (n + 4 >= room)
			goto full;
		memcpy(cx->path + old, p, n);
		cx->plen = old + n;
	}
	cx->path[cx->plen] = '\0';
	return old;
full:
	memcpy(cx->path + old, "...", 4);
	cx->plen = old + 3;
	cx->full = true;
	cx->full_at = old;
	return old;
}

static void path_pop(struct conv *cx, size_t old)
{
	if (cx->full && old != cx->full_at)
		return;
	cx->full = false;
	cx->plen = old;
	cx->path[old] = '\0';
}

/* In-place replacement keeps the node's key and its place in the parent. */
static int become(cJSON *node, int type, const char *text)
{
	char *copy = text ? strdup(text) : NULL;

	if (text && !copy)
		return -ENOMEM;
	cJSON_Delete(node->child);
	node->child = NULL;
	free(node->valuestring);
	node->valuestring = copy;
	node->type = type;
	node->valueint = 0;
	node->valuedouble = 0;
	return 0;
}

static bool is_raw_integer(const cJSON *v, long long lo, long long hi, long long *out)
{
	return cJSON_IsRaw(v) && parse_int(v->valuestring, lo, hi, out);
}

/* The keys that make an object an Extended JSON type wrapper. */
static const char *const wrapper_keys[] = {
	"$oid", "$date", "$numberLong", "$numberInt", "$numberDouble", "$numberDecimal", "$binary", "$type",
	"$uuid", "$undefined", "$timestamp", "$regularExpression", "$regex", "$options", "$code", "$scope",
	"$symbol", "$minKey", "$maxKey", "$dbPointer", NULL,
};

static bool wrapper_key(const char *k)
{
	size_t i;

	if (!k || k[0] != '$')
		return false;
	for (i = 0; wrapper_keys[i]; i++)
		if (strcmp(k, wrapper_keys[i]) == 0)
			return true;
	return false;
}

static int date_value(struct conv *cx, cJSON *node, const cJSON *v)
{
	struct rfc3339_time t;
	long long ms;
	char out[40];

	if (cJSON_IsString(v)) {
		if (!rfc3339_parse(v->valuestring, &t)) {
			fail(cx, "$date: \"%.40s\" is not an ISO-8601 date between years 1 and 9999",
			     v->valuestring);
			return -EINVAL;
		}
	} else {
		const cJSON *l = cJSON_IsObject(v) && v->child && !v->child->next &&
				 v->child->string && strcmp(v->child->string, "$numberLong") == 0 ? v->child : NULL;
		bool ok = l ? cJSON_IsString(l) && parse_int(l->valuestring, LLONG_MIN, LLONG_MAX, &ms)
			    : is_raw_integer(v, LLONG_MIN, LLONG_MAX, &ms);

		if (!ok) {
			fail(cx, "$date: expected an ISO-8601 string, {\"$numberLong\": \"<ms>\"} or milliseconds");
			return -EINVAL;
		}
		if (!ts_from_ms(ms, &t)) {
			fail(cx, "$date: %lld ms is outside years 1 to 9999", ms);
			return -EINVAL;
		}
	}
	rfc3339_format(&t, out);
	return become(node, cJSON_String, out);
}

/* Shortest text that reads back as the same double. */
static void format_double(double d, char out[32])
{
	int prec;

	for (prec = 15; prec <= 17; prec++) {
		snprintf(out, 32, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
}

static int float_value(struct conv *cx, cJSON *node, const cJSON *v, const char *key)
{
	const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
	char buf[32], *end;
	double d;

	if (!s) {
		fail(cx, "%s: expected a string", key);
		return -EINVAL;
	}
	if (strcmp(s, "NaN") == 0 || strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0)
		return become(node, cJSON_String, s);
	if (strcmp(s, "+Infinity") == 0 || strcmp(s, "Inf") == 0)
		return become(node, cJSON_String, "Infinity");
	if (strcmp(s, "-Inf") == 0)
		return become(node, cJSON_String, "-Infinity");
	if (strcmp(s, "-NaN") == 0)
		return become(node, cJSON_String, "NaN");
	if (json_number(s, strlen(s))) {
		if (!number_storable(s, strlen(s))) {
			fail(cx, "%s: \"%.40s\" is beyond what PostgreSQL stores", key, s);
			return -EINVAL;
		}
		return become(node, cJSON_Raw, s);
	}
	/* Not JSON's grammar ("1.", ".5", "+1", "1E5" is fine): a double can
	 * be rewritten without loss, a decimal's digits must not change. */
	if (strcmp(key, "$numberDouble") == 0 && *s && strchr("+-.0123456789", *s)) {
		errno = 0;
		d = strtod(s, &end);
		if (*end == '\0' && isfinite(d) && errno != ERANGE) {
			format_double(d, buf);
			return become(node, cJSON_Raw, buf);
		}
	}
	fail(cx, "%s: \"%.40s\" is not a number", key, s);
	return -EINVAL;
}

static bool isxdigit_str(const char *s)
{
	for (; *s; s++)
		if (hexval(*s) < 0)
			return false;
	return true;
}

static int binary_value(struct conv *cx, cJSON *node, const char *b64, const char *subtype)
{
	unsigned char *bytes;
	long long st;
	int n = 0, r;
	char uuid[37];

	if (!b64 || !subtype || strlen(subtype) < 1 || strlen(subtype) > 2 || !isxdigit_str(subtype)) {
		fail(cx, "$binary: expected base64 text and a one-byte hex subType");
		return -EINVAL;
	}
	st = strtol(subtype, NULL, 16);
	bytes = base64_decode(b64, &n);
	if (!bytes) {
		fail(cx, "$binary: not valid base64");
		return -EINVAL;
	}
	if ((st == 3 || st == 4) && n == 16) {
		format_uuid(bytes, uuid);
		r = become(node, cJSON_String, uuid);
	} else {
		r = become(node, cJSON_String, b64);
	}
	free(bytes);
	return r;
}

static const char *const unsupported_keys[] = {
	"$timestamp", "$regularExpression", "$regex", "$code", "$symbol", "$minKey", "$maxKey",
	"$dbPointer", NULL,
};

/* 1: node was a type wrapper and now holds the plain value; 0: an
 * ordinary object; negative: refused (cx says why) or out of memory. */
static int wrapper(struct conv *cx, cJSON *node)
{
	const cJSON *a = node->child, *b, *c, *v;
	const char *k;
	unsigned char oid[12], u[16];
	long long n;
	char text[37];
	size_t i;

	for (c = a; c; c = c->next)
		if (wrapper_key(c->string))
			break;
	if (!c)
		return 0;
	for (i = 0; unsupported_keys[i]; i++)
		if (cJSON_GetObjectItemCaseSensitive(node, unsupported_keys[i])) {
			fail(cx, "Extended JSON type %s is not supported (NVSentinel's documents never hold one)",
			     unsupported_keys[i]);
			return -EINVAL;
		}
	b = a->next;
	k = a->string;
	v = a;
	if (!b && strcmp(k, "$oid") == 0) {
		if (!cJSON_IsString(v) || strlen(v->valuestring) != 24 || !parse_hex(v->valuestring, 12, oid)) {
			fail(cx, "$oid: expected 24 hex digits");
			return -EINVAL;
		}
		for (i = 0; i < 12; i++)
			snprintf(text + 2 * i, 3, "%02x", oid[i]);
		return become(node, cJSON_String, text) < 0 ? -ENOMEM : 1;
	}
	if (!b && strcmp(k, "$date") == 0)
		return date_value(cx, node, v) < 0 ? -EINVAL : 1;
	if (!b && (strcmp(k, "$numberLong") == 0 || strcmp(k, "$numberInt") == 0)) {
		bool is_long = k[7] == 'L';
		long long lo = is_long ? LLONG_MIN : INT32_MIN, hi = is_long ? LLONG_MAX : INT32_MAX;
		const char *s = cJSON_IsString(v) ? v->valuestring : cJSON_IsRaw(v) ? v->valuestring : NULL;

		if (!s || !parse_int(s, lo, hi, &n)) {
			fail(cx, "%s: expected a decimal %s", k, is_long ? "64-bit integer" : "32-bit integer");
			return -EINVAL;
		}
		snprintf(text, sizeof(text), "%lld", n);
		return become(node, cJSON_Raw, text) < 0 ? -ENOMEM : 1;
	}
	if (!b && (strcmp(k, "$numberDouble") == 0 || strcmp(k, "$numberDecimal") == 0))
		return float_value(cx, node, v, k) < 0 ? (cx->failed ? -EINVAL : -ENOMEM) : 1;
	if (!b && strcmp(k, "$binary") == 0 && cJSON_IsObject(v)) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "base64");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "subType");

		if (cJSON_GetArraySize(v) != 2 || !cJSON_IsString(d) || !cJSON_IsString(t)) {
			fail(cx, "$binary: expected {\"base64\": ..., \"subType\": ...}");
			return -EINVAL;
		}
		return binary_value(cx, node, d->valuestring, t->valuestring) < 0 ? (cx->failed ? -EINVAL : -ENOMEM) : 1;
	}
	if (b && !b->next && (strcmp(k, "$binary") == 0 || strcmp(k, "$type") == 0)) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(node, "$binary");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(node, "$type");

		if (!cJSON_IsString(d) || !cJSON_IsString(t)) {
			fail(cx, "$binary: expected {\"$binary\": \"<base64>\", \"$type\": \"<hex>\"}");
			return -EINVAL;
		}
		return binary_value(cx, node, d->valuestring, t->valuestring) < 0 ? (cx->failed ? -EINVAL : -ENOMEM) : 1;
	}
	if (!b && strcmp(k, "$uuid") == 0) {
		if (!cJSON_IsString(v) || !parse_uuid(v->valuestring, u)) {
			fail(cx, "$uuid: expected a UUID in 8-4-4-4-12 hex form");
			return -EINVAL;
		}
		format_uuid(u, text);
		return become(node, cJSON_String, text) < 0 ? -ENOMEM : 1;
	}
	if (!b && strcmp(k, "$undefined") == 0 && cJSON_IsTrue(v))
		return become(node, cJSON_NULL, NULL) < 0 ? -ENOMEM : 1;
	fail(cx, "malformed Extended JSON: %s with %s", c->string, b ? "other keys beside it" : "a value of the wrong type");
	return -EINVAL;
}

static int convert(struct conv *cx, cJSON *node)
{
	cJSON *c;
	int i = 0, r;

	if (cJSON_IsObject(node)) {
		r = wrapper(cx, node);
		if (r != 0)
			return r < 0 ? r : 0;
	}
	if (!cJSON_IsObject(node) && !cJSON_IsArray(node))
		return 0;
	for (c = node->child; c; c = c->next, i++) {
		size_t old = path_push(cx, c, i);

		r = convert(cx, c);
		path_pop(cx, old);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Bytes of one UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	unsigned long cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

struct numbers {
	size_t *off, *len;
	size_t n, cap, next;
};

/*
 * The checks cJSON does not make, and the number tokens in document order.
 * Runs only on text cJSON accepted, so outside strings a '-' or a digit
 * always starts a number.
 */
static int prescan(struct conv *cx, const char *t, size_t n, struct numbers *nums)
{
	const unsigned char *u = (const unsigned char *)t;
	bool in_str = false;
	size_t i = 0, j, k;

	while (i < n) {
		unsigned char c = u[i];

		if (c == 0) {
			fail(cx, "NUL byte at byte %zu", i + 1);
			return -EINVAL;
		}
		if (c >= 0x80) {
			k = utf8_len(u + i, n - i);
			if (!k) {
				fail(cx, "invalid UTF-8 at byte %zu", i + 1);
				return -EINVAL;
			}
			i += k;
			continue;
		}
		if (in_str) {
			if (c == '\\') {
				if (i + 5 < n && t[i + 1] == 'u' && memcmp(t + i + 2, "0000", 4) == 0) {
					fail(cx, "\\u0000 in a string at byte %zu: PostgreSQL cannot store it", i + 1);
					return -EINVAL;
				}
				i += 2;
				continue;
			}
			if (c == '"')
				in_str = false;
			i++;
			continue;
		}
		if (c == '"') {
			in_str = true;
			i++;
			continue;
		}
		if (c != '-' && (c < '0' || c > '9')) {
			i++;
			continue;
		}
		for (j = i; j < n && u[j] && strchr("0123456789+-.eE", u[j]); j++)
			;
		if (!json_number(t + i, j - i)) {
			fail(cx, "invalid number \"%.*s\" at byte %zu", (int)(j - i > 40 ? 40 : j - i), t + i, i + 1);
			return -EINVAL;
		}
		if (!number_storable(t + i, j - i)) {
			fail(cx, "number \"%.*s\" at byte %zu is beyond what PostgreSQL stores",
			     (int)(j - i > 40 ? 40 : j - i), t + i, i + 1);
			return -EINVAL;
		}
		if (nums->n == nums->cap) {
			size_t cap = nums->cap ? nums->cap * 2 : 64;
			size_t *o = realloc(nums->off, cap * sizeof(*o)), *l;

			if (!o)
				return -ENOMEM;
			nums->off = o;
			l = realloc(nums->len, cap * sizeof(*l));
			if (!l)
				return -ENOMEM;
			nums->len = l;
			nums->cap = cap;
		}
		nums->off[nums->n] = i;
		nums->len[nums->n++] = j - i;
		i = j;
	}
	return 0;
}

/* Every number node takes the text of the next token in document order. */
static int raw_numbers(cJSON *node, const char *t, struct numbers *nums)
{
	for (; node; node = node->next) {
		if (cJSON_IsNumber(node)) {
			char *s;

			if (nums->next >= nums->n)
				return -EPROTO;
			s = strndup(t + nums->off[nums->next], nums->len[nums->next]);
			if (!s)
				return -ENOMEM;
			nums->next++;
			node->type = cJSON_Raw;
			node->valuestring = s;
		} else if (node->child) {
			int r = raw_numbers(node->child, t, nums);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

/* Parses, numbers as raw nodes; NULL with cx->err set. */
static cJSON *parse_raw(struct conv *cx, const char *text, size_t len)
{
	struct numbers nums = { 0 };
	const char *end = NULL;
	cJSON *root;
	int r;

	root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!root) {
		size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
		char near[24];
		size_t i;

		for (i = 0; i < sizeof(near) - 1 && at + i < len; i++)
			near[i] = (unsigned char)text[at + i] < 0x20 ? ' ' : text[at + i];
		near[i] = '\0';
		if (at >= len)
			fail(cx, "invalid JSON: the document ends early (after %zu bytes)", len);
		else
			fail(cx, "invalid JSON at byte %zu near \"%s\"", at + 1, near);
		return NULL;
	}
	for (; end && end < text + len; end++)
		if (!is_ws((unsigned char)*end)) {
			fail(cx, "invalid JSON: text after the document at byte %zu", (size_t)(end - text) + 1);
			goto bad;
		}
	r = prescan(cx, text, len, &nums);
	if (r == 0)
		r = raw_numbers(root, text, &nums);
	if (r == 0 && nums.next != nums.n)
		r = -EPROTO;
	free(nums.off);
	free(nums.len);
	if (r == -EPROTO)
		fail(cx, "invalid JSON: numbers could not be matched to the text");
	if (r < 0)
		goto bad;
	return root;
bad:
	if (!cx->failed)
		fail(cx, "out of memory");
	cJSON_Delete(root);
	return NULL;
}

char *extjson_to_json(const char *text, size_t len, char *err, size_t errlen)
{
	struct conv cx = { .err = err, .errlen = errlen };
	cJSON *root = parse_raw(&cx, text, len);
	char *out;

	if (!root)
		return NULL;
	if (convert(&cx, root) < 0) {
		if (!cx.failed)
			fail(&cx, "out of memory");
		cJSON_Delete(root);
		return NULL;
	}
	out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	if (!out)
		snprintf(err, errlen, "out of memory");
	return out;
}

/* ====================================================================== */
/* Rows                                                                   */
/* ====================================================================== */

static const char *const health_cols[] = {
	"id", "node_name", "event_type", "severity", "recommended_action", "node_quarantined",
	"user_pods_eviction_status", "user_pods_eviction_message", "fault_remediated",
	"last_remediation_timestamp", "quarantine_finish_timestamp", "drain_finish_timestamp",
	"document", "created_at", "updated_at", NULL,
};
enum {
	H_ID, H_NODE, H_TYPE, H_SEVERITY, H_ACTION, H_QUARANTINED, H_EVICTION, H_EVICTION_MSG, H_REMEDIATED,
	H_LAST_REMEDIATION, H_QUARANTINE_FINISH, H_DRAIN_FINISH, H_DOC, H_CREATED, H_UPDATED, H_NCOLS
};

static const char *const maint_cols[] = {
	"id", "event_id", "csp", "cluster_name", "node_name", "status", "csp_status", "scheduled_start_time",
	"actual_end_time", "event_received_timestamp", "last_updated_timestamp", "document", "created_at",
	"updated_at", NULL,
};
enum {
	M_ID, M_EVENT_ID, M_CSP, M_CLUSTER, M_NODE, M_STATUS, M_CSP_STATUS, M_SCHEDULED_START, M_ACTUAL_END,
	M_RECEIVED, M_LAST_UPDATED, M_DOC, M_CREATED, M_UPDATED, M_NCOLS
};

int extjson_table_from_name(const char *name, enum extjson_table *t)
{
	if (strcmp(name, "health_events") == 0 || strcmp(name, "HealthEvents") == 0)
		*t = EXTJSON_HEALTH_EVENTS;
	else if (strcmp(name, "maintenance_events") == 0 || strcmp(name, "MaintenanceEvents") == 0)
		*t = EXTJSON_MAINTENANCE_EVENTS;
	else
		return -EINVAL;
	return 0;
}

const char *extjson_table_name(enum extjson_table t)
{
	return t == EXTJSON_HEALTH_EVENTS ? "health_events" : "maintenance_events";
}

const char *const *extjson_columns(enum extjson_table t)
{
	return t == EXTJSON_HEALTH_EVENTS ? health_cols : maint_cols;
}

void extjson_row_clear(struct extjson_row *row)
{
	unsigned i;

	for (i = 0; i < EXTJSON_MAX_COLS; i++) {
		free(row->val[i]);
		row->val[i] = NULL;
	}
	row->ncols = 0;
	row->kept_id = false;
}

/* Characters, as VARCHAR(n) counts them (the text is valid UTF-8). */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

enum missing { AS_EMPTY, AS_NULL, REQUIRED };

static int set_val(struct extjson_row *row, unsigned col, const char *s)
{
	free(row->val[col]);
	row->val[col] = s ? strdup(s) : NULL;
	return s && !row->val[col] ? -ENOMEM : 0;
}

/* The keys NVSentinel's writers use, looked up as its readers do:
 * without regard to case. */
static const cJSON *field(const cJSON *obj, const char *key)
{
	return cJSON_IsObject(obj) ? cJSON_GetObjectItem(obj, key) : NULL;
}

static int col_string(struct conv *cx, struct extjson_row *row, unsigned col, const cJSON *obj,
		      const char *where, const char *key, size_t maxlen, enum missing missing)
{
	const cJSON *v = field(obj, key);

	if (!v || cJSON_IsNull(v)) {
		if (missing == REQUIRED) {
			fail(cx, "%s%s is missing (its column is NOT NULL)", where, key);
			return -EINVAL;
		}
		return set_val(row, col, missing == AS_EMPTY ? "" : NULL);
	}
	if (!cJSON_IsString(v)) {
		fail(cx, "%s%s: expected a string", where, key);
		return -EINVAL;
	}
	if (maxlen && utf8_chars(v->valuestring) > maxlen) {
		fail(cx, "%s%s: longer than the %zu characters its column holds", where, key, maxlen);
		return -EINVAL;
	}
	if (missing == REQUIRED && !*v->valuestring) {
		fail(cx, "%s%s is empty", where, key);
		return -EINVAL;
	}
	return set_val(row, col, v->valuestring);
}

/* A time as NVSentinel stores one: an RFC 3339 string (time.Time, or a
 * converted $date) or protobuf's {"seconds": N, "nanos": N}. */
static int col_time(struct conv *cx, struct extjson_row *row, unsigned col, const cJSON *obj,
		    const char *where, const char *key, enum missing missing)
{
	const cJSON *v = field(obj, key), *sec, *nsec;
	struct rfc3339_time t;
	long long s = 0, ns = 0;
	char out[40];

	if (!v || cJSON_IsNull(v)) {
		if (missing == REQUIRED) {
			fail(cx, "%s%s is missing (its column is NOT NULL)", where, key);
			return -EINVAL;
		}
		return set_val(row, col, NULL);
	}
	if (cJSON_IsString(v)) {
		if (!rfc3339_parse(v->valuestring, &t)) {
			fail(cx, "%s%s: \"%.40s\" is not an RFC 3339 time between years 1 and 9999", where, key,
			     v->valuestring);
			return -EINVAL;
		}
	} else if (cJSON_IsObject(v)) {
		sec = field(v, "seconds");
		nsec = field(v, "nanos");
		if ((sec && !is_raw_integer(sec, RFC3339_SEC_MIN, RFC3339_SEC_MAX, &s)) ||
		    (nsec && !is_raw_integer(nsec, 0, 999999999, &ns))) {
			fail(cx, "%s%s: expected {\"seconds\": N, \"nanos\": N} between years 1 and 9999", where, key);
			return -EINVAL;
		}
		t.sec = s;
		t.nsec = (long)ns;
	} else {
		fail(cx, "%s%s: expected a time", where, key);
		return -EINVAL;
	}
	rfc3339_format(&t, out);
	return set_val(row, col, out);
}

/* RecommendedAction.String(): the enum's name, the number when unknown. */
static const char *action_name(long long v, char buf[24])
{
	static const struct { int v; const char *name; } names[] = {
		{ 0, "NONE" }, { 2, "COMPONENT_RESET" }, { 5, "CONTACT_SUPPORT" }, { 6, "RUN_FIELDDIAG" },
		{ 15, "RESTART_VM" }, { 24, "RESTART_BM" }, { 25, "REPLACE_VM" }, { 26, "RUN_DCGMEUD" },
		{ 27, "CUSTOM" }, { 99, "UNKNOWN" },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].v == v)
			return names[i].name;
	snprintf(buf, 24, "%lld", v);
	return buf;
}

static int health_columns(struct conv *cx, struct extjson_row *row, const cJSON *doc)
{
	const cJSON *he = field(doc, "healthevent"), *st = field(doc, "healtheventstatus");
	const cJSON *ev = field(st, "userpodsevictionstatus"), *v;
	char buf[24];
	long long n;
	int r = 0;

	if (!cJSON_IsObject(he)) {
		fail(cx, "no healthevent object (is this a health_events export?)");
		return -EINVAL;
	}
	if (st && !cJSON_IsObject(st) && !cJSON_IsNull(st)) {
		fail(cx, "healtheventstatus: expected an object");
		return -EINVAL;
	}
	r = r ? r : col_string(cx, row, H_NODE, he, "healthevent.", "nodeName", 255, AS_EMPTY);
	r = r ? r : col_string(cx, row, H_TYPE, he, "healthevent.", "checkName", 100, AS_EMPTY);
	r = r ? r : col_string(cx, row, H_SEVERITY, he, "healthevent.", "componentClass", 50, AS_EMPTY);
	if (r)
		return r;
	v = field(he, "recommendedAction");
	if (!v || cJSON_IsNull(v))
		r = set_val(row, H_ACTION, "NONE");
	else if (is_raw_integer(v, INT32_MIN, INT32_MAX, &n))
		r = set_val(row, H_ACTION, action_name(n, buf));
	else
		r = col_string(cx, row, H_ACTION, he, "healthevent.", "recommendedAction", 100, AS_EMPTY);
	r = r ? r : col_string(cx, row, H_QUARANTINED, st, "healtheventstatus.", "nodeQuarantined", 50, AS_NULL);
	if (r)
		return r;
	if (ev && !cJSON_IsObject(ev) && !cJSON_IsNull(ev)) {
		fail(cx, "healtheventstatus.userpodsevictionstatus: expected an object");
		return -EINVAL;
	}
	r = col_string(cx, row, H_EVICTION, ev, "healtheventstatus.userpodsevictionstatus.", "status", 50, AS_NULL);
	if (!r && row->val[H_EVICTION] && !*row->val[H_EVICTION])
		r = set_val(row, H_EVICTION, NULL);
	r = r ? r : col_string(cx, row, H_EVICTION_MSG, ev, "healtheventstatus.userpodsevictionstatus.", "message",
			       0, AS_EMPTY);
	if (r)
		return r;
	v = field(st, "faultRemediated");
	if (cJSON_IsObject(v))
		v = field(v, "value");
	if (cJSON_IsBool(v))
		r = set_val(row, H_REMEDIATED, cJSON_IsTrue(v) ? "t" : "f");
	else if (v && !cJSON_IsNull(v)) {
		fail(cx, "healtheventstatus.faultremediated: expected a boolean or {\"value\": boolean}");
		return -EINVAL;
	}
	r = r ? r : col_time(cx, row, H_LAST_REMEDIATION, st, "healtheventstatus.", "lastRemediationTimestamp", AS_NULL);
	r = r ? r : col_time(cx, row, H_QUARANTINE_FINISH, st, "healtheventstatus.", "quarantineFinishTimestamp", AS_NULL);
	r = r ? r : col_time(cx, row, H_DRAIN_FINISH, st, "healtheventstatus.", "drainFinishTimestamp", AS_NULL);
	r = r ? r : col_time(cx, row, H_CREATED, doc, "", "createdAt", AS_NULL);
	r = r ? r : set_val(row, H_UPDATED, row->val[H_CREATED]);
	return r;
}

static int maintenance_columns(struct conv *cx, struct extjson_row *row, const cJSON *doc)
{
	int r = 0;

	r = r ? r : col_string(cx, row, M_EVENT_ID, doc, "", "eventId", 255, REQUIRED);
	r = r ? r : col_string(cx, row, M_CSP, doc, "", "csp", 50, AS_EMPTY);
	r = r ? r : col_string(cx, row, M_CLUSTER, doc, "", "clusterName", 255, AS_EMPTY);
	r = r ? r : col_string(cx, row, M_NODE, doc, "", "nodeName", 255, AS_NULL);
	r = r ? r : col_string(cx, row, M_STATUS, doc, "", "status", 50, AS_EMPTY);
	r = r ? r : col_string(cx, row, M_CSP_STATUS, doc, "", "cspStatus", 50, AS_NULL);
	r = r ? r : col_time(cx, row, M_SCHEDULED_START, doc, "", "scheduledStartTime", AS_NULL);
	r = r ? r : col_time(cx, row, M_ACTUAL_END, doc, "", "actualEndTime", AS_NULL);
	r = r ? r : col_time(cx, row, M_RECEIVED, doc, "", "eventReceivedTimestamp", REQUIRED);
	r = r ? r : col_time(cx, row, M_LAST_UPDATED, doc, "", "lastUpdatedTimestamp", AS_NULL);
	r = r ? r : set_val(row, M_CREATED, row->val[M_RECEIVED]);
	r = r ? r : set_val(row, M_UPDATED, row->val[M_LAST_UPDATED]);
	return r;
}

int extjson_convert(enum extjson_table t, const char *text, size_t len, struct extjson_row *row,
		    char *err, size_t errlen)
{
	struct conv cx = { .err = err, .errlen = errlen };
	cJSON *root = NULL, *id;
	unsigned char oid[12] = { 0 }, u[16];
	bool is_oid = false;
	char uuid[37], *doc = NULL, *idtext = NULL;
	int r = -EINVAL;

	memset(row, 0, sizeof(*row));
	row->ncols = t == EXTJSON_HEALTH_EVENTS ? H_NCOLS : M_NCOLS;

	root = parse_raw(&cx, text, len);
	if (!root)
		goto out;
	if (!cJSON_IsObject(root)) {
		fail(&cx, "not a document (a JSON object)");
		goto out;
	}
	/* An ObjectId is known by its wrapper, before conversion makes it a
	 * plain string like any other. */
	id = cJSON_GetObjectItemCaseSensitive(root, "_id");
	if (cJSON_IsObject(id) && id->child && !id->child->next && id->child->string &&
	    strcmp(id->child->string, "$oid") == 0 && cJSON_IsString(id->child) &&
	    strlen(id->child->valuestring) == 24 && parse_hex(id->child->valuestring, 12, oid))
		is_oid = true;
	r = convert(&cx, root);
	if (r == -ENOMEM || (r < 0 && !cx.failed))
		goto oom;
	if (r < 0)
		goto out;
	id = cJSON_GetObjectItemCaseSensitive(root, "_id");
	if (is_oid) {
		uuid_from_oid(oid, uuid);
	} else if (cJSON_IsString(id) && parse_uuid(id->valuestring, u)) {
		format_uuid(u, uuid);
	} else if (id) {
		idtext = cJSON_PrintUnformatted(id);
		if (!idtext || !uuid5(idtext, strlen(idtext), uuid))
			goto oom;
		row->kept_id = true;
	}
	if (id && !row->kept_id)
		cJSON_DeleteItemFromObjectCaseSensitive(root, "_id");
	r = t == EXTJSON_HEALTH_EVENTS ? health_columns(&cx, row, root) : maintenance_columns(&cx, row, root);
	if (r == -ENOMEM)
		goto oom;
	if (r < 0)
		goto out;
	doc = cJSON_PrintUnformatted(root);
	if (!doc)
		goto oom;
	if (!id) {
		static const char prefix[] = "document:";
		size_t n = strlen(doc);
		char *name = malloc(sizeof(prefix) + n);

		if (!name)
			goto oom;
		memcpy(name, prefix, sizeof(prefix) - 1);
		memcpy(name + sizeof(prefix) - 1, doc, n + 1);
		if (!uuid5(name, sizeof(prefix) - 1 + n, uuid)) {
			free(name);
			goto oom;
		}
		free(name);
	}
	r = set_val(row, 0, uuid);
	if (r < 0)
		goto oom;
	row->val[t == EXTJSON_HEALTH_EVENTS ? H_DOC : M_DOC] = doc;
	doc = NULL;
	r = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
	r = -ENOMEM;
out:
	if (r < 0) {
		unsigned n = row->ncols;
		extjson_row_clear(row);
		row->ncols = n;
	}
	free(idtext);
	free(doc);
	cJSON_Delete(root);
	return r;
}
