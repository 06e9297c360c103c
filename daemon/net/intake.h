/*
 * intake.h - whether the daemon will parse a subscriber's frame at all:
 * what the frame would cost as a cJSON tree (jsoncost.h) against the budget
 * of its kind, the hello-sized limit before authentication, and strings
 * cJSON would cut at a \u0000.  Pure code, unit-tested; client.c asks it
 * about every frame before request.c parses it.
 */
#ifndef NVSRELAY_INTAKE_H
#define NVSRELAY_INTAKE_H

#include <stdbool.h>
#include <stddef.h>

/* Before it is authenticated a connection sends one hello: this is plenty
 * for one with a token, and all an unknown peer may make us buffer. */
#define INTAKE_PREAUTH_MAX 4096

/*
 * Checks the len bytes of one frame; authed: the connection is past its TLS
 * handshake and token.  Returns 0 to parse it, or the error code to answer
 * with (ERR_TOO_LARGE, ERR_BAD_VALUE) and the message in msg; *sid is then
 * the frame's sid when it could be read cheaply, else -1.  Before
 * authentication a length over INTAKE_PREAUTH_MAX is refused without
 * reading line (which may then be NULL).
 */
int intake_check(const char *line, size_t len, bool authed, long long *sid, char *msg, size_t msglen);

#endif
