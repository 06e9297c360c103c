/*
 * allow.h - the allow-list of peer users and groups for the subscriber Unix
 * socket (unix_allow_uids, unix_allow_gids).  Pure code: names become ids
 * through a resolver the caller passes (listener.c uses getpwnam_r and
 * getgrnam_r), so parsing and the admission rule are unit-tested without a
 * user database.
 */
#ifndef NVSRELAY_ALLOW_H
#define NVSRELAY_ALLOW_H

#include <stdbool.h>
#include <stddef.h>

struct allow_list {
	unsigned *ids;
	size_t n;
};

/* Turns a user or group name into its id: 0, or -ENOENT when unknown. */
typedef int (*allow_resolve_fn)(const char *name, unsigned *ret_id, void *ud);

/* Parses a comma list of decimal ids and names ("0, 1000, nvsentinel");
 * blanks around items are ignored, "" is the empty list.  what names the
 * setting in messages.  Returns 0 with *ret filled (the caller frees it with
 * allow_clear), -EINVAL with err naming the item (bad syntax, unknown name),
 * or -ENOMEM. */
int allow_parse(const char *text, const char *what, allow_resolve_fn resolve, void *ud,
		struct allow_list *ret, char *err, size_t errlen);

void allow_clear(struct allow_list *l);
bool allow_has(const struct allow_list *l, unsigned id);

/* The rule of the socket: a peer is admitted when both lists are empty, when
 * its uid is listed, or when one of its groups (gids[0..ngids)) is listed. */
bool allow_peer(const struct allow_list *uids, const struct allow_list *gids, unsigned uid,
		const unsigned *peer_gids, size_t ngids);

#endif
