/*
 * owners.h - which peer identity may use which durable consumer name
 * (consumer_owners): parsing of the map and matching against an identity.
 * Pure code: no I/O, no logging, so it is unit-tested.  conf.c checks the
 * key with owners_parse; main.c's watch upcall asks owners_allowed with
 * the identity client.c reports for the connection.
 */
#ifndef NVSRELAY_OWNERS_H
#define NVSRELAY_OWNERS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct owners Owners;

/* What the transport proved about a peer. */
struct owner_id {
	bool has_cred;             /* Unix socket: SO_PEERCRED read */
	unsigned uid, gid;
	const char *subject;       /* TLS: the client certificate's one-line subject, or NULL */
	const char *cn;            /* TLS: its last commonName's value, or NULL */
	bool token;                /* authenticated with auth_token_file's token */
};

/* Room for a peer's subject and CN while its owner_id is in use. */
struct owner_bufs {
	char subject[512];
	char cn[256];
};

/* Parses "PATTERN = ID, ID; PATTERN = ID ..." (owners.c has the grammar).
 * An empty or blank spec gives *ret = NULL: no map, any identity may use
 * any name.  Returns 0, or -EINVAL with err set; -ENOMEM. */
int owners_parse(const char *spec, Owners **ret, char *err, size_t errlen);
void owners_free(Owners *o);

/* Whether id may use consumer: the first entry whose pattern matches
 * decides; a name no pattern matches is refused.  A NULL map allows all. */
bool owners_allowed(const Owners *o, const char *consumer, const struct owner_id *id);

/* The identity as a log line names it ("uid=1000 gid=1000", "subject=...",
 * "token", "none"). */
const char *owners_id_text(const struct owner_id *id, char *buf, size_t len);

#endif
