/*
 * rfc3339.c - RFC 3339 timestamps read and written by calendar arithmetic
 * (H. Hinnant's civil-date algorithms) instead of mktime/timegm and their
 * time zone machinery: event.c reads one per change event.
 */
#include <stdio.h>
#include <string.h>

#include "rfc3339.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
	long long era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long long)doe - 719468;
}

static void civil_from_days(long long z, long long *y, unsigned *m, unsigned *d)
{
	long long era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	*y = (long long)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y += *m <= 2;
}

static unsigned days_in_month(long long y, unsigned m)
{
	static const unsigned char dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : dm[m - 1];
}

static int digits(const char *s, int n)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

bool rfc3339_parse(const char *s, struct rfc3339_time *out)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
	long ns = 0;
	size_t i = 19, n = strlen(s);

	if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return false;
	y = digits(s, 4);
	mo = digits(s + 5, 2);
	d = digits(s + 8, 2);
	h = digits(s + 11, 2);
	mi = digits(s + 14, 2);
	se = digits(s + 17, 2);
	if (y < 0 || mo < 1 || mo > 12 || d < 1 || (unsigned)d > days_in_month(y, (unsigned)mo) ||
	    h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
		return false;
	if (s[i] == '.') {
		long scale = 100000000;
		size_t f = ++i;

		while (i < n && s[i] >= '0' && s[i] <= '9') {
			if (i - f < 9) {
				ns += (s[i] - '0') * scale;
				scale /= 10;
			}
			i++;
		}
		if (i == f)
			return false;
	}
	if (i < n && (s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
		sign = 0;
	} else if (i < n && (s[i] == '+' || s[i] == '-')) {
		sign = s[i] == '-' ? -1 : 1;
		if (n - i == 6 && s[i + 3] == ':') {
			oh = digits(s + i + 1, 2);
			om = digits(s + i + 4, 2);
		} else if (n - i == 5) {
			oh = digits(s + i + 1, 2);
			om = digits(s + i + 3, 2);
		} else {
			return false;
		}
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return false;
	} else {
		return false;
	}
	out->sec = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se
		   - sign * (oh * 3600 + om * 60);
	out->nsec = ns;
	return out->sec >= RFC3339_SEC_MIN && out->sec <= RFC3339_SEC_MAX;
}

void rfc3339_format(const struct rfc3339_time *t, char out[40])
{
	long long days = t->sec >= 0 ? t->sec / 86400 : -((-t->sec + 86399) / 86400);
	long long secs = t->sec - days * 86400, y;
	unsigned m, d;
	char frac[12] = "";

	civil_from_days(days, &y, &m, &d);
	if (t->nsec) {
		int k;

		snprintf(frac, sizeof(frac), ".%09ld", t->nsec);
		for (k = 9; frac[k] == '0'; k--)
			frac[k] = '\0';
	}
	/* Callers keep times within years 1 to 9999 (RFC3339_SEC_MIN, RFC3339_SEC_MAX). */
	snprintf(out, 40, "%04d-%02u-%02uT%02d:%02d:%02d%sZ", (int)(y % 10000), m % 100, d % 100,
		 (int)(secs / 3600 % 24), (int)(secs / 60 % 60), (int)(secs % 60), frac);
}
