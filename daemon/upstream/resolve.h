/*
 * resolve.h - name resolution that never blocks the event loop, for the
 * connections to upstream relays (upconn.c).  A numeric address is taken
 * as it is; a name goes to glibc's getaddrinfo_a, whose answer is looked
 * for from a short timer, so a slow or silent DNS server holds up only the
 * connection that waits for it.
 */
#ifndef NVSRELAY_RESOLVE_H
#define NVSRELAY_RESOLVE_H

#include <netdb.h>
#include <ev.h>

typedef struct resolve Resolve;

/* ai is the first address (owned by the resolver, valid during the call),
 * or NULL with err saying why. */
typedef void (*resolve_cb)(void *arg, const struct addrinfo *ai, const char *err);

/* Resolves host and port (a number or a service name) for a TCP
 * connection.  cb is called once, from the loop, never inside this call;
 * the resolver frees itself after it.  NULL when out of memory. */
Resolve *resolve_start(struct ev_loop *loop, const char *host, const char *port, resolve_cb cb, void *arg);

/* Gives up: cb is not called.  A lookup glibc cannot cancel is finished
 * and freed later, from another resolve_start or resolve_cancel. */
void resolve_cancel(Resolve *r);

#endif
