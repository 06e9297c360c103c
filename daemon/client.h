/*
 * client.h - one subscriber connection: its transport (a plain socket or a
 * TLS session), NDJSON framing in, protocol v1 dispatch, a bounded output
 * queue that holds shared events by reference, the slow-consumer policy and
 * the single failure path client_close().  listener.c creates clients; hub.c
 * writes frames to them; the metrics read the refusal and drop counters.
 */
#ifndef NVSRELAY_CLIENT_H
#define NVSRELAY_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "conf.h"
#include "event.h"
#include "token.h"

/* MongoDB error codes of access control and limits. */
#define ERR_UNAUTHORIZED 13             /* Unauthorized */
#define ERR_AUTH_FAILED 18              /* AuthenticationFailed */
#define ERR_EXCEEDED_LIMIT 24           /* ExceededLimit: too many clients or subscriptions */
#define ERR_EXCEEDED_MEMORY_LIMIT 146   /* ExceededMemoryLimit: output past a limit */
#define ERR_EXCEEDED_TIME_LIMIT 262     /* ExceededTimeLimit: output not read */

typedef struct client Client;
struct hub;
struct ssl_st;

struct client_env {
	struct ev_loop *loop;
	struct hub *hub;
	const struct conf_values *cv;
	uint32_t (*generation)(void);   /* current changelog generation */
};

/* How a connection came in.  NULL or all zero: a plain socket, no token. */
struct client_transport {
	struct ssl_st *ssl;                 /* TLS session to hand-shake (taken over), or NULL */
	const unsigned char *token_sha256;  /* 32 bytes: the first frame must be a hello whose
					     * token hashes to this; NULL: no token */
};

/* Connections and requests refused, counted per reason. */
enum client_refusal {
	REFUSAL_MAX_CLIENTS,            /* max_clients reached */
	REFUSAL_MAX_SUBSCRIPTIONS,      /* max_subscriptions_per_client reached */
	REFUSAL_FRAME_TOO_LARGE,        /* a frame over max_frame_bytes */
	REFUSAL_PEER_NOT_ALLOWED,       /* Unix peer not on unix_allow_uids/gids */
	REFUSAL_AUTH_FAILED,            /* token missing or wrong */
	REFUSAL_TLS_HANDSHAKE,          /* TLS handshake failed (no or a bad certificate) */
	CLIENT_REFUSAL_MAX
};

/* Slow consumers disconnected, counted per reason. */
enum client_drop {
	DROP_HARD_LIMIT,                /* output past client_output_limit */
	DROP_SOFT_LIMIT,                /* output above client_output_soft_limit too long */
	DROP_STALLED,                   /* output not read at all for client_output_soft_seconds */
	CLIENT_DROP_MAX
};

uint64_t client_refusals(enum client_refusal r);
uint64_t client_drops(enum client_drop d);
/* Short snake_case names, for metric labels and log lines. */
const char *client_refusal_name(enum client_refusal r);
const char *client_drop_name(enum client_drop d);
/* For listener.c, which refuses some connections before a client exists. */
void client_count_refusal(enum client_refusal r);

/* Takes ownership of fd (and of t->ssl).  Returns NULL (fd closed, session
 * freed) when out of memory. */
Client *client_new(const struct client_env *env, int fd, const char *peer, const struct client_transport *t);

/* Refuses a new client: counts and logs the refusal, sends the error frame
 * (once its TLS handshake is done, so the client can read it) and closes. */
void client_refuse(Client *c, enum client_refusal why, int code, const char *name, const char *msg);

uint64_t client_id(const Client *c);
/* The open (not closing) client with that id, or NULL: for answers that
 * arrive after the client may have gone. */
Client *client_find(uint64_t id);
/* Bytes queued and not yet written to the socket. */
size_t client_pending(const Client *c);
/* Asks for hub_client_writable as soon as fewer than bytes are queued
 * (once; by default it comes only when the queue is empty). */
void client_wake_below(Client *c, size_t bytes);

/* Queues bytes (one or more complete frames). */
void client_send(Client *c, const char *data, size_t len);
/* Queues an event frame for sid, holding a reference to ev: its
 * fullDocumentBeforeChange variant when before is set and the event has one. */
void client_send_event(Client *c, long long sid, struct event *ev, bool before);
void client_send_bookmark(Client *c, long long sid, const struct token *tok);
/* sid < 0: connection-level error. tok may be NULL. */
void client_send_error(Client *c, long long sid, int code, const char *name, const char *msg,
		       const struct token *tok);

/* The position of the last event or bookmark of sid that left for the
 * socket (or, for a client being dropped, will leave before its error
 * frame).  Returns false when none did. */
bool client_delivered(const Client *c, long long sid, struct token *ret);

/* The one failure path: logs once, detaches subscriptions, flushes what is
 * queued (bounded time) and frees the client later in the loop. */
void client_close(Client *c, const char *reason);

/* Closes every client (shutdown), flushing queued output first. */
void client_close_all(const char *reason);

/* Frees every client at once; only after the loop has stopped. */
void client_free_all(void);
size_t client_count(void);

#endif
