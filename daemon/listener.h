/*
 * listener.h - the Unix socket subscribers connect to.  main.c opens it once
 * the relay is ready and closes it first on shutdown; accepted connections
 * become clients.
 */
#ifndef NVSRELAY_LISTENER_H
#define NVSRELAY_LISTENER_H

#include "client.h"

typedef struct listener Listener;

/* Binds path (a stale socket file is replaced) with the given mode.
 * Returns NULL and sets *ret_err (static text + errno) on failure. */
Listener *listener_new(const struct client_env *env, const char *path, int mode, char *err, size_t errlen);

/* Stops accepting and removes the socket file. */
void listener_free(Listener *l);

#endif
