/*
 * hostport.h - the one reader of "HOST:PORT" addresses: listen_tcp,
 * http_listen and upstream in the configuration (conf_value.c), the
 * listeners that bind them (net.c), the connections to upstream relays
 * (upconn.c) and `nvsrelay watch --tcp` (cli/main.c).
 *
 * HOST is a name or an address, an IPv6 address in brackets ("[::1]:6543":
 * bare, its colons would be taken for the port's).  PORT is a decimal
 * number 1..65535, or with HOSTPORT_SERVICE anything non-empty (a service
 * name, left to getaddrinfo).  Pure code: no I/O, no allocation.
 */
#ifndef NVSRELAY_HOSTPORT_H
#define NVSRELAY_HOSTPORT_H

#include <stdbool.h>

/* A DNS name has at most 253 bytes; an address written out far fewer. */
#define HOSTPORT_HOST_MAX 256

/* PORT may be a service name (or a number out of range): the caller
 * resolves it and reports what does not resolve. */
#define HOSTPORT_SERVICE 0x1

struct hostport {
	char host[HOSTPORT_HOST_MAX];   /* without the brackets */
	const char *port;               /* points into the parsed string */
	unsigned port_num;              /* 0 when PORT is a service name */
	bool bracketed;                 /* HOST was written [like:this] */
};

/* Splits s into hp.  Returns 0, -EINVAL when s is not HOST:PORT (no colon,
 * empty HOST or PORT, an unbracketed colon in HOST, junk around the
 * brackets, a PORT that is not a number), -ERANGE for a PORT outside
 * 1..65535, or -ENAMETOOLONG for a HOST of HOSTPORT_HOST_MAX bytes or
 * more. */
int hostport_parse(const char *s, unsigned flags, struct hostport *hp);

#endif
