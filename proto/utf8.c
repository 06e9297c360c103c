/*
 * utf8.c - the one UTF-8 validator (see utf8.h for who uses it).
 */
#include <stdio.h>
#include <string.h>

#include "utf8.h"

size_t utf8_len(const unsigned char *s)
{
	size_t n, i;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	while (*p) {
		if (!(n = utf8_len(p)))
			return false;
		p += n;
	}
	return true;
}

/* Length of the valid character at s[0..avail), or 0: like utf8_len, but
 * never reads past avail, as a client's string need not end in a NUL. */
static size_t utf8_len_within(const unsigned char *s, size_t avail)
{
	unsigned char tmp[5] = { 0 };
	size_t want = s[0] < 0x80 ? 1 : s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;

	if (want > avail)
		want = avail;
	memcpy(tmp, s, want);
	return utf8_len(tmp);
}

size_t utf8_quote(char *dst, size_t size, const char *src, size_t len)
{
	static const char marker[] = "...";
	const unsigned char *p = (const unsigned char *)src;
	size_t i = 0, out = 0, cut = 0, n;
	char piece[5];

	while (i < len) {
		n = utf8_len_within(p + i, len - i);
		if (n == 0 || p[i] < 0x20 || p[i] == 0x7f) {
			snprintf(piece, sizeof(piece), "\\x%02x", p[i]);
			n = 1;
		} else {
			memcpy(piece, p + i, n);
			piece[n] = '\0';
		}
		if (out + strlen(piece) + 1 > size) {
			/* Cut at the last boundary that leaves room for the
			 * marker, unless that would leave only the marker. */
			if (cut > 0) {
				memcpy(dst + cut, marker, sizeof(marker));
				return cut + sizeof(marker) - 1;
			}
			break;
		}
		memcpy(dst + out, piece, strlen(piece));
		out += strlen(piece);
		i += n;
		if (out + sizeof(marker) <= size)
			cut = out;
	}
	dst[out] = '\0';
	return out;
}
