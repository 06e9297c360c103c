/*
 * clientstat.h - why subscriber connections were refused or dropped: the
 * reasons, their names (metric labels, log lines) and their counters in
 * /metrics.  client.c counts both; listener.c counts the refusals it makes
 * before a client exists.
 */
#ifndef NVSRELAY_CLIENTSTAT_H
#define NVSRELAY_CLIENTSTAT_H

/* Connections and requests refused, counted per reason. */
enum client_refusal {
	REFUSAL_MAX_CLIENTS,            /* max_clients reached */
	REFUSAL_MAX_SUBSCRIPTIONS,      /* max_subscriptions_per_client reached */
	REFUSAL_FRAME_TOO_LARGE,        /* a frame over max_frame_bytes */
	REFUSAL_PEER_NOT_ALLOWED,       /* Unix peer not on unix_allow_uids/gids */
	REFUSAL_AUTH_FAILED,            /* token missing or wrong */
	REFUSAL_TLS_HANDSHAKE,          /* TLS handshake failed (no or a bad certificate) */
	REFUSAL_UNAUTHENTICATED,        /* CLIENT_UNAUTH_MAX connections still authenticating */
	CLIENT_REFUSAL_MAX
};

/* Slow consumers disconnected, counted per reason. */
enum client_drop {
	DROP_HARD_LIMIT,                /* output past client_output_limit */
	DROP_SOFT_LIMIT,                /* output above client_output_soft_limit too long */
	DROP_STALLED,                   /* output not read at all for client_output_soft_seconds */
	CLIENT_DROP_MAX
};

/* Short snake_case names, for metric labels and log lines. */
const char *clientstat_refusal_name(enum client_refusal r);
const char *clientstat_drop_name(enum client_drop d);

/* One more in client_refusals_total / slow_consumer_drops_total. */
void clientstat_refused(enum client_refusal r);
void clientstat_dropped(enum client_drop d);

#endif
