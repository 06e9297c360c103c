/*
 * upframe.h - a frame from an upstream relay turned into what the local hub
 * holds: events rebuilt byte for byte (both variants: with and without the
 * pre-image of an update), positions as tokens, answers to position and
 * store requests.  Pure code: no I/O, so it is unit-tested.  upstream.c and
 * cursor.c call it for every frame.
 */
#ifndef NVSRELAY_UPFRAME_H
#define NVSRELAY_UPFRAME_H

#include <stdbool.h>
#include <stddef.h>

#include "event.h"
#include "token.h"

enum upframe_type {
	UPF_EVENT = 1,
	UPF_BOOKMARK,
	UPF_ERROR,
	UPF_POSITION,              /* answer to position: has_token, or none stored */
	UPF_STORED,                /* answer to store */
	UPF_PONG,
	UPF_OTHER,                 /* a frame this relay has no use for */
};

struct upframe {
	enum upframe_type type;
	long long sid;             /* -1 when absent */
	bool has_token;
	struct token tok;          /* event, bookmark, position; error when present */
	struct event *ev;          /* UPF_EVENT: one reference, the caller's */
	int code;                  /* UPF_ERROR */
	char msg[320];             /* UPF_ERROR */
};

/*
 * Parses one frame.  The upstream asks for every event with its pre-image
 * (fullDocumentBeforeChange: whenAvailable); an update that carries one is
 * split into the event without it (the member and its comma cut out, which
 * is exactly the text the upstream built) and the variant with it, so local
 * subscribers get what they would have got upstream.  Returns 0, -EBADMSG
 * (message in err) or -ENOMEM.
 */
int upframe_parse(const char *line, size_t len, struct upframe *f, char *err, size_t errlen);

#endif
