/*
 * fuzz_extjson.c - libFuzzer target for the mongoexport converter
 * (cli/extjson.c).
 *
 * The input is an export.  The first byte chooses how it is cut into reads
 * and the largest document kept; the rest is split by the scanner twice,
 * once fed whole and once in those reads, and both must give the same
 * documents, lines and errors.  Every document goes through
 * extjson_to_json(), whose output must be JSON cJSON reads back and must
 * convert to itself again (plain JSON is a fixed point), and through
 * extjson_convert() for both tables: a row has every column of its table,
 * a UUID id and a JSON document; a refusal leaves the row empty and says
 * why.  Leaks are the sanitizer's to report.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "extjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_DOCS 64

struct result {
	int status;
	unsigned long line, index;
	char *text;          /* copy of the document */
	size_t len;
};

static bool is_uuid(const char *s)
{
	static const char form[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	size_t i;

	if (!s || strlen(s) != 36)
		return false;
	for (i = 0; i < 36; i++)
		if (form[i] == '-' ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
			return false;
	return true;
}

static void check_doc(const char *text, size_t len)
{
	char err[256] = "", err2[256] = "";
	char *out = extjson_to_json(text, len, err, sizeof(err));
	enum extjson_table t;

	if (out) {
		cJSON *back = cJSON_Parse(out);
		char *again;

		CHECK(back != NULL);
		cJSON_Delete(back);
		again = extjson_to_json(out, strlen(out), err2, sizeof(err2));
		CHECK(again != NULL && strcmp(again, out) == 0);
		free(again);
		free(out);
	} else {
		CHECK(err[0] != '\0');
	}
	for (t = EXTJSON_HEALTH_EVENTS; t <= EXTJSON_MAINTENANCE_EVENTS; t++) {
		const char *const *cols = extjson_columns(t);
		struct extjson_row row;
		unsigned i, n = 0;
		int r;

		err[0] = '\0';
		r = extjson_convert(t, text, len, &row, err, sizeof(err));
		while (cols[n])
			n++;
		CHECK(row.ncols == n);
		if (r == 0) {
			CHECK(is_uuid(row.val[0]));
			for (i = 0; i < n; i++)
				if (strcmp(cols[i], "document") == 0) {
					cJSON *d = cJSON_Parse(row.val[i]);
					CHECK(cJSON_IsObject(d));
					CHECK(!!cJSON_GetObjectItemCaseSensitive(d, "_id") == row.kept_id);
					cJSON_Delete(d);
				}
			extjson_row_clear(&row);
		} else {
			CHECK(r == -EINVAL || r == -ENOMEM);
			CHECK(err[0] != '\0');
			for (i = 0; i < EXTJSON_MAX_COLS; i++)
				CHECK(row.val[i] == NULL);
		}
	}
}

/* Splits data into results; chunk 0 feeds everything at once. */
static int split(const uint8_t *data, size_t size, size_t chunk, size_t max_doc, struct result *res,
		 char *err, size_t errlen)
{
	ExtjsonScanner *s = extjson_scanner_new(max_doc);
	struct extjson_doc d;
	size_t off = 0;
	bool eof = false;
	int n = 0, r;

	if (!s)
		return -1;
	for (;;) {
		if (!eof) {
			size_t k = chunk && size - off > chunk ? chunk : size - off;
			CHECK(extjson_scanner_feed(s, (const char *)data + off, k) == 0);
			off += k;
			eof = off == size;
		}
		while (n < MAX_DOCS && (r = extjson_scanner_next(s, eof, &d, err, errlen)) != 0) {
			CHECK(r == 1 || r == -EMSGSIZE || r == -EBADMSG);
			res[n].status = r;
			if (r == 1) {
				CHECK(d.len <= max_doc);
				res[n].text = malloc(d.len + 1);
				CHECK(res[n].text != NULL);
				memcpy(res[n].text, d.text, d.len);
				res[n].len = d.len;
			}
			if (r != -EBADMSG) {
				CHECK(d.line >= 1 && d.index == (unsigned long)n + 1);
				res[n].line = d.line;
				res[n].index = d.index;
			}
			n++;
			if (r == -EBADMSG)
				goto out;
		}
		if (eof || n == MAX_DOCS)
			break;
	}
out:
	CHECK(extjson_scanner_offset(s) <= size);
	extjson_scanner_free(s);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct result whole[MAX_DOCS], cut[MAX_DOCS];
	char err1[128] = "", err2[128] = "";
	size_t chunk, max_doc;
	int n1, n2, i;

	if (size < 1)
		return 0;
	chunk = 1 + (data[0] & 0x0f);
	max_doc = (data[0] & 0x10) ? 32 : 1 << 16;
	data++;
	size--;
	memset(whole, 0, sizeof(whole));
	memset(cut, 0, sizeof(cut));
	n1 = split(data, size, 0, max_doc, whole, err1, sizeof(err1));
	n2 = split(data, size, chunk, max_doc, cut, err2, sizeof(err2));
	CHECK(n1 == n2);
	CHECK(strcmp(err1, err2) == 0);
	for (i = 0; i < n1; i++) {
		CHECK(whole[i].status == cut[i].status);
		CHECK(whole[i].line == cut[i].line);
		CHECK(whole[i].len == cut[i].len);
		CHECK(whole[i].len == 0 || memcmp(whole[i].text, cut[i].text, whole[i].len) == 0);
		if (whole[i].status == 1)
			check_doc(whole[i].text, whole[i].len);
		free(whole[i].text);
		free(cut[i].text);
	}
	return 0;
}
