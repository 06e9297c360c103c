/*
 * jsoncost.c - counts the values and the nesting of a frame's JSON in one
 * pass, without allocating, so a frame is judged before cJSON_Parse builds
 * it (see jsoncost.h for who calls it).
 *
 * A value starts at '{', '[', a number's first character, a literal's first
 * letter, or a string that is not a key; a string is a key when the next
 * character after it, blanks aside, is ':'.  cJSON keeps a key in its item
 * rather than as an item of its own, which is why keys are not counted.
 * Only the first top-level "op" member is looked at, as cJSON's lookup
 * finds that one.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "jsoncost.h"

/* cJSON skips every control character as a blank, not only JSON's four. */
static int
blank(unsigned char ch)
{
	return ch <= ' ';
}

static int
number_char(unsigned char ch)
{
	return (ch >= '0' && ch <= '9') || ch == '-' || ch == '+' || ch == '.' || ch == 'e' || ch == 'E';
}

static int
letter(unsigned char ch)
{
	return ch >= 'a' && ch <= 'z';
}

/* Index of the closing quote of the string whose opening quote is at i, or
 * len when it is not closed; sets *nul when it holds the escape \u0000. */
static size_t
string_end(const char *buf, size_t len, size_t i, bool *nul)
{
	for (i++; i < len; i++) {
		if (buf[i] == '\\') {
			if (len - i > 5 && memcmp(buf + i + 1, "u0000", 5) == 0)
				*nul = true;
			i++;
		} else if (buf[i] == '"') {
			return i;
		}
	}
	return len;
}

static int
is(const char *buf, size_t start, size_t end, const char *word)
{
	size_t n = strlen(word);

	return end - start == n && memcmp(buf + start, word, n) == 0;
}

int
jsoncost_scan(const char *buf, size_t len, const struct jsoncost_budget *watch,
	      const struct jsoncost_budget *other, struct jsoncost *out)
{
	struct jsoncost_budget most = {
		watch->values > other->values ? watch->values : other->values,
		watch->depth > other->depth ? watch->depth : other->depth,
	};
	const struct jsoncost_budget *b = &most;	/* until the op is known */
	enum { OP_NONE, OP_VALUE, OP_KNOWN } op = OP_NONE;
	size_t values = 0, i = 0, j;
	unsigned depth = 0, deepest = 0;
	int top_object = 0, r = 0;

	out->watch = false;
	out->nul = false;
	while (i < len) {
		unsigned char ch = (unsigned char)buf[i];
		int counted = 1;

		if (ch == '{' || ch == '[') {
			if (depth == 0 && values == 0)
				top_object = ch == '{';
			if (++depth > deepest)
				deepest = depth;
			i++;
		} else if (ch == '}' || ch == ']') {
			if (depth > 0)
				depth--;
			counted = 0;
			i++;
		} else if (ch == '"') {
			size_t end = string_end(buf, len, i, &out->nul);

			for (j = end + 1; j < len && blank((unsigned char)buf[j]); j++)
				;
			/* outside any container nothing is a key: cJSON takes
			 * the string for the frame and stops there */
			if (j < len && buf[j] == ':' && depth > 0) {
				counted = 0;
				if (op == OP_NONE && depth == 1 && top_object && is(buf, i + 1, end, "op"))
					op = OP_VALUE;
			} else if (op == OP_VALUE) {
				out->watch = is(buf, i + 1, end, "watch");
				op = OP_KNOWN;
			}
			i = end + 1;
		} else if (number_char(ch) || letter(ch)) {
			while (i < len && (number_char((unsigned char)buf[i]) || letter((unsigned char)buf[i])))
				i++;
		} else {
			counted = 0;	/* blanks, ',' and ':', and bytes cJSON will refuse */
			i++;
		}
		if (counted) {
			values++;
			/* the value of "op" was not a string */
			if (op == OP_VALUE && ch != '"')
				op = OP_KNOWN;
			if (op == OP_KNOWN)
				b = out->watch ? watch : other;
		}
		if (values > b->values || deepest > b->depth) {
			r = -E2BIG;
			break;
		}
	}
	if (r == 0 && op != OP_KNOWN && (values > other->values || deepest > other->depth))
		r = -E2BIG;
	out->values = values;
	out->depth = deepest;
	return r;
}
