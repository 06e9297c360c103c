/*
 * client.h - one subscriber connection: NDJSON framing in, protocol v1
 * dispatch, a bounded output buffer, and the single failure path
 * client_close().  listener.c creates clients; hub.c writes frames to them.
 */
#ifndef NVSRELAY_CLIENT_H
#define NVSRELAY_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "token.h"

typedef struct client Client;
struct hub;

struct client_env {
	struct ev_loop *loop;
	struct hub *hub;
	const struct conf_values *cv;
	uint32_t (*generation)(void);   /* current changelog generation */
};

/* Takes ownership of fd.  Returns NULL (fd closed) when out of memory. */
Client *client_new(const struct client_env *env, int fd, const char *peer);

uint64_t client_id(const Client *c);
size_t client_pending(const Client *c);

/* Queues bytes (one or more complete frames). */
void client_send(Client *c, const char *data, size_t len);
void client_send_event(Client *c, long long sid, const char *json, size_t len);
void client_send_bookmark(Client *c, long long sid, const struct token *tok);
/* sid < 0: connection-level error. tok may be NULL. */
void client_send_error(Client *c, long long sid, int code, const char *name, const char *msg,
		       const struct token *tok);

/* The one failure path: logs once, detaches subscriptions, flushes what is
 * queued (bounded time) and frees the client later in the loop. */
void client_close(Client *c, const char *reason);

/* Closes every client (shutdown), flushing queued output first. */
void client_close_all(const char *reason);

/* Frees every client at once; only after the loop has stopped. */
void client_free_all(void);
size_t client_count(void);

#endif
