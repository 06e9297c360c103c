/*
 * hostport.c - splits "HOST:PORT" and "[IPv6]:PORT" (see hostport.h).
 *
 * The port is after the last colon, so "[::1]:80" needs no special case to
 * find it; the brackets only tell an IPv6 address from a name with junk.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "hostport.h"

/* Decimal digits only: no sign, no blanks, saturating past the range. */
static bool port_number(const char *s, unsigned long *ret)
{
	unsigned long n = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (n <= 65535)
			n = n * 10 + (unsigned long)(*s - '0');
	}
	*ret = n;
	return true;
}

int hostport_parse(const char *s, unsigned flags, struct hostport *hp)
{
	const char *colon = s ? strrchr(s, ':') : NULL, *h = s;
	unsigned long port = 0;
	size_t hlen;

	memset(hp, 0, sizeof(*hp));
	if (!colon || !colon[1])
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (hlen > 0 && s[0] == '[') {
		if (hlen < 3 || s[hlen - 1] != ']')
			return -EINVAL;
		h = s + 1;
		hlen -= 2;
		hp->bracketed = true;
	} else if (memchr(s, ':', hlen)) {
		return -EINVAL;
	}
	if (hlen == 0 || memchr(h, '[', hlen) || memchr(h, ']', hlen))
		return -EINVAL;
	if (hlen >= sizeof(hp->host))
		return -ENAMETOOLONG;
	if (!port_number(colon + 1, &port)) {
		if (!(flags & HOSTPORT_SERVICE))
			return -EINVAL;
		port = 0;
	} else if (port < 1 || port > 65535) {
		if (!(flags & HOSTPORT_SERVICE))
			return -ERANGE;
		port = 0;
	}
	memcpy(hp->host, h, hlen);
	hp->host[hlen] = '\0';
	hp->port = colon + 1;
	hp->port_num = (unsigned)port;
	return 0;
}
