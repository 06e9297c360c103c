/*
 * listener.h - where subscribers connect: the Unix socket (file mode plus an
 * allow-list of peer users and groups) and the optional TCP listener (TLS
 * with client certificates or a bearer token, or plaintext on loopback),
 * bound from the configuration or adopted from systemd.  main.c prepares the
 * listeners before anything else runs, so a bad TLS file, token file or
 * address stops the daemon at once; it starts accepting when the relay is
 * ready and frees the listeners first on shutdown.  Accepted connections
 * become clients.
 */
#ifndef NVSRELAY_LISTENER_H
#define NVSRELAY_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "client.h"

typedef struct listener Listener;

/* Adopts the sockets systemd passed ("unix" and "tcp"), resolves listen_tcp
 * (plaintext only on loopback), loads the TLS context, reads the token file
 * (refused when group or others may read it) and resolves the allow-lists.
 * Binds nothing yet.  Returns NULL with the reason in err. */
Listener *listener_new(const struct client_env *env, char *err, size_t errlen);

/* Binds the configured sockets that were not adopted and starts accepting.
 * Returns 0 (also when already started) or a negative errno with err. */
int listener_start(Listener *l, char *err, size_t errlen);
bool listener_started(const Listener *l);

/* Stops accepting and removes the socket file it created; NULL is fine. */
void listener_free(Listener *l);

#endif
