/*
 * clientstat.c - names and counters of refused and dropped subscriber
 * connections (clientstat.h), kept in the metrics registry so /metrics
 * shows them by reason.
 */
#include "clientstat.h"
#include "metrics.h"

static const char *const refusal_names[CLIENT_REFUSAL_MAX] = {
	[REFUSAL_MAX_CLIENTS] = "max_clients",
	[REFUSAL_MAX_SUBSCRIPTIONS] = "max_subscriptions",
	[REFUSAL_FRAME_TOO_LARGE] = "frame_too_large",
	[REFUSAL_PEER_NOT_ALLOWED] = "peer_not_allowed",
	[REFUSAL_AUTH_FAILED] = "auth_failed",
	[REFUSAL_TLS_HANDSHAKE] = "tls_handshake",
	[REFUSAL_UNAUTHENTICATED] = "unauthenticated",
};

static const char *const drop_names[CLIENT_DROP_MAX] = {
	[DROP_HARD_LIMIT] = "hard_limit",
	[DROP_SOFT_LIMIT] = "soft_limit",
	[DROP_STALLED] = "stalled",
};

const char *clientstat_refusal_name(enum client_refusal r)
{
	return (unsigned)r < CLIENT_REFUSAL_MAX ? refusal_names[r] : "unknown";
}

const char *clientstat_drop_name(enum client_drop d)
{
	return (unsigned)d < CLIENT_DROP_MAX ? drop_names[d] : "unknown";
}

void clientstat_refused(enum client_refusal r)
{
	metrics_add(M_REFUSALS, clientstat_refusal_name(r), 1);
}

void clientstat_dropped(enum client_drop d)
{
	metrics_add(M_SLOW_DROPS, clientstat_drop_name(d), 1);
}
