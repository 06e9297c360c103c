/*
 * client.h - one subscriber connection: its transport (transport.h), NDJSON
 * framing in, dispatch of the requests request.c decodes, a bounded output
 * queue that holds shared events by reference, the slow-consumer policy and
 * the single failure path client_close().  listener.c creates clients; the
 * hub writes frames to them and hears from them only through the upcalls
 * main.c puts in client_env.  Refusals and drops are counted by reason in
 * clientstat.c.
 */
#ifndef NVSRELAY_CLIENT_H
#define NVSRELAY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "clientstat.h"
#include "conf.h"
#include "event.h"
#include "owners.h"
#include "token.h"


/* Connections at once that have not authenticated yet (TLS handshake or
 * token pending); past it the listener refuses new ones. */
#define CLIENT_UNAUTH_MAX 128

typedef struct client Client;
struct filter;
struct request;
struct ssl_st;

/* What a client asks of the subscriptions above it (the hub).  arg is
 * client_env's up_arg.  watch, ack and unwatch return 0 or a negative errno
 * with an error frame already sent to the client. */
struct client_upcalls {
	/* A decoded watch; takes the compiled pipeline (NULL: none). */
	int (*watch)(void *arg, Client *c, const struct request *req, struct filter *filter);
	int (*ack)(void *arg, Client *c, long long sid, const struct token *tok);
	int (*unwatch)(void *arg, Client *c, long long sid);
	/* c is closing: its subscriptions end. */
	void (*gone)(void *arg, Client *c);
	/* c's queue drained (or fell below client_wake_below). */
	void (*writable)(void *arg, Client *c);
	/* c is being dropped: an error frame to each of its subscriptions. */
	void (*error)(void *arg, Client *c, int code, const char *msg);
	/* Subscriptions of c, for max_subscriptions_per_client. */
	size_t (*subscriptions)(void *arg, const Client *c);
	/* A chained relay's position or store request (request.h); NULL:
	 * refused as an unknown op. */
	void (*position)(void *arg, Client *c, const struct request *req);
	/* A decoded count; the answer (or a connection-level error) is sent
	 * to c later, or not at all once c has gone. */
	void (*count)(void *arg, Client *c, const struct request *req);
};

struct client_env {
	struct ev_loop *loop;
	const struct client_upcalls *up;
	void *up_arg;
	const struct conf_values *cv;
	uint32_t (*generation)(void);   /* current changelog generation */
};

/* How a connection came in.  NULL or all zero: a plain socket, no token. */
struct client_transport {
	struct ssl_st *ssl;                 /* TLS session to hand-shake (taken over), or NULL */
	const unsigned char *token_sha256;  /* 32 bytes: the first frame must be a hello whose
					     * token hashes to this; NULL: no token */
	bool has_cred;                      /* Unix socket: the peer's SO_PEERCRED */
	unsigned uid, gid;
};

/* Takes ownership of fd (and of t->ssl).  Returns NULL (fd closed, session
 * freed) when out of memory. */
Client *client_new(const struct client_env *env, int fd, const char *peer, const struct client_transport *t);

/* Refuses a new client: counts and logs the refusal, sends the error frame
 * (once its TLS handshake is done, so the client can read it) and closes. */
void client_refuse(Client *c, enum client_refusal why, int code, const char *msg);

uint64_t client_id(const Client *c);
/* "unix:uid=..", "tls:ADDR", as log lines name the peer. */
const char *client_peer(const Client *c);
/* What the transport proved about the peer (consumer_owners), in the
 * caller's buffers for a TLS certificate's subject and last CN. */
void client_owner_id(Client *c, struct owner_id *id, struct owner_bufs *bufs);
/* Bytes queued and not yet written to the socket. */
size_t client_pending(const Client *c);
/* Asks for the writable upcall as soon as fewer than bytes are queued
 * (once; by default it comes only when the queue is empty). */
void client_wake_below(Client *c, size_t bytes);

/* Queues bytes (one or more complete frames). */
void client_send(Client *c, const char *data, size_t len);
/* Queues an event frame for sid, holding a reference to ev: its
 * fullDocumentBeforeChange variant when before is set and the event has one. */
void client_send_event(Client *c, long long sid, struct event *ev, bool before);
void client_send_bookmark(Client *c, long long sid, const struct token *tok);
/* sid < 0: connection-level error. tok may be NULL. */
void client_send_error(Client *c, long long sid, int code, const char *msg,
		       const struct token *tok);

/* The position of the last event or bookmark of sid that left for the
 * socket (or, for a client being dropped, will leave before its error
 * frame).  Returns false when none did. */
bool client_delivered(const Client *c, long long sid, struct token *ret);
/* sid now names a new subscription: client_delivered forgets the old one's
 * positions, including those of its frames still queued. */
void client_sid_reset(Client *c, long long sid);

/* The one failure path: logs once, detaches subscriptions, flushes what is
 * queued (bounded time) and frees the client later in the loop. */
void client_close(Client *c, const char *reason);

/* Closes every client (shutdown), flushing queued output first. */
void client_close_all(const char *reason);

/* Frees every client at once; only after the loop has stopped. */
void client_free_all(void);
/* Every connection, closing ones included. */
size_t client_count(void);
/* Connections still in their TLS handshake or waiting for their token: they
 * have their own budget, CLIENT_UNAUTH_MAX, and deadline, so that silent
 * connections cannot take max_clients from the subscribers. */
size_t client_count_unauthenticated(void);
/* The others: what max_clients limits. */
size_t client_count_authenticated(void);

#endif
