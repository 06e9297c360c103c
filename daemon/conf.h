/*
 * conf.h - configuration: one option table, the Conf built from it,
 * validation and the libpq parameters.  Pure code: errors come back as text
 * in a caller buffer, nothing is logged.  The sources (file, environment,
 * --set) and the builder that layers them are conf_load.h; the syntax of
 * single values is conf_value.c.  main.c owns the Conf.
 */
#ifndef NVSRELAY_CONF_H
#define NVSRELAY_CONF_H

#include <stdbool.h>
#include <stddef.h>

enum conf_sslmode { SSLMODE_DISABLE, SSLMODE_REQUIRE, SSLMODE_VERIFY_CA, SSLMODE_VERIFY_FULL };
enum conf_schema { SCHEMA_AUTO, SCHEMA_VERIFY };
enum conf_log_format { LOG_FORMAT_AUTO, LOG_FORMAT_TEXT, LOG_FORMAT_JOURNAL, LOG_FORMAT_JSON };

/* Read-only view used by the daemon after conf_finish(). Strings are owned by
 * the Conf and never NULL (empty string when unset). */
struct conf_values {
	const char *datastore_host;      /* comma list = libpq multi-host */
	const char *datastore_port;      /* one port, or one per host */
	const char *datastore_database;
	const char *datastore_username;
	const char *datastore_password;
	const char *datastore_password_file; /* read into datastore_password by conf_load */
	enum conf_sslmode datastore_sslmode;
	const char *datastore_sslcert;
	const char *datastore_sslkey;
	const char *datastore_sslrootcert;
	const char *datastore_options;   /* extra libpq key=value pairs */
	const char *client_cert_mount_path;
	const char *datastore_replica_host; /* hot standby for batch reads, "" = none */
	const char *datastore_replica_port; /* "" = datastore_port */
	const char *listen_unix;         /* socket path, "" = none */
	int unix_socket_mode;            /* octal in text, e.g. 0660 */
	enum conf_schema schema;
	const char *log_level;           /* err|warning|notice|info|debug */
	enum conf_log_format log_format;
	int poll_interval_ms;            /* changelog head probe */
	int poll_interval_max_ms;        /* ... backing off to this while idle */
	int tick_min_interval_ms;        /* floor between ticks while busy */
	int tick_idle_ms;                /* heartbeat tick when nothing moved */
	int batch_rows;                  /* rows per batch page */
	int ring_events;                 /* recent events kept in memory */
	int max_frame_bytes;
	int max_clients;
	int max_subscriptions_per_client;
	int client_output_limit;         /* bytes queued to one client before disconnect */
	int client_output_soft_limit;    /* ... above this for soft_seconds (0 = none) */
	int client_output_soft_seconds;  /* or not read at all this long (0 = off) */
	const char *listen_tcp;          /* HOST:PORT of the TCP listener, "" = none */
	int tcp_plaintext;               /* 1: without TLS, plaintext on loopback */
	const char *tls_cert_file;       /* TCP listener's certificate chain (PEM) */
	const char *tls_key_file;
	const char *tls_ca_file;         /* set: client certificates required */
	const char *auth_token_file;     /* TCP clients' bearer token, "" = none */
	const char *unix_allow_uids;     /* comma list of uids/user names, "" = any */
	const char *unix_allow_gids;     /* comma list of gids/group names, "" = any */
	const char *consumer_owners;     /* which identity may use which consumer (owners.c), "" = any */
	int ack_flush_ms;                /* durable positions written at most this often */
	int retention_max_age_hours;     /* 0 = no age cap */
	int retention_max_rows;          /* 0 = no size cap */
	int consumer_idle_hours;
	int retention_floor_s;
	int prune_interval_s;
	int prune_chunk_rows;
	int reconnect_min_ms;
	int reconnect_max_ms;
	int connect_timeout_s;
	int shutdown_timeout_ms;
	const char *http_listen;         /* HOST:PORT of /metrics, /livez and /readyz, "" = off */
	int stats_interval_s;            /* PostgreSQL statistics sampling, 0 = off */
	const char *admin_socket;        /* admin socket path, "" = none */
	const char *upstream;            /* HOST:PORT list of upstream relays, "" = PostgreSQL */
	int upstream_tls;                /* 1: TLS to the upstream */
	const char *upstream_ca_file;    /* CA verifying the upstream, "" = system */
	const char *upstream_cert_file;  /* client certificate for mutual TLS, "" = none */
	const char *upstream_key_file;
	const char *upstream_token_file; /* bearer token for the upstream's hello, "" = none */
	int upstream_timeout_ms;         /* silence (or connect) past this: next upstream */
	const char *node_name;           /* this relay's name upstream, "" = host name */
};

typedef struct conf Conf;

/* A Conf holding the built-in defaults; NULL when out of memory. */
Conf *conf_new(void);
void conf_free(Conf *c);

/* Sets one key from text (the config file, environment and --set all come
 * here).  Returns 0, -ENOENT for an unknown key, -EINVAL for a bad value; err
 * gets a message naming the key and the accepted values. */
int conf_set(Conf *c, const char *key, const char *value, char *err, size_t errlen);

/* Cross-key validation and derived values (cert files from the mount path
 * when sslcert/sslkey/sslrootcert are unset; ranges).  Returns 0 or -EINVAL. */
int conf_finish(Conf *c, char *err, size_t errlen);

const struct conf_values *conf_values(const Conf *c);

/* libpq keywords/values for PQconnectStartParams, NULL-terminated, owned by
 * the Conf (valid until conf_free).  Includes application_name=nvsrelayd,
 * gssencmode=disable for TCP hosts and keepalive settings. */
void conf_libpq_params(const Conf *c, const char *const **ret_keys, const char *const **ret_vals);

/* Writes every key with its effective value, one "key = value" per line, the
 * password shown as "(set)" or "".  Returns bytes that would be written, like
 * snprintf. */
size_t conf_dump(const Conf *c, char *buf, size_t len);

/* Iterates the option table for documentation checks: returns the i-th key
 * name, or NULL past the end. */
const char *conf_key_name(size_t i);
/* The i-th key's seed environment variable (DATASTORE_HOST...), or NULL;
 * *alt the one read when that is unset or empty, or NULL. */
const char *conf_key_env(size_t i, const char **alt);

/* Reload: copies the keys that may change at runtime from src (a complete,
 * finished Conf built from the same sources) into dst, which stays the one
 * Conf every module points into.  applied gets the comma-separated names of
 * the keys taken over, restart those that differ but only take effect after
 * a restart (connection settings, listeners; secrets are only named).
 * Returns the number of keys applied. */
int conf_reload(Conf *dst, const Conf *src, char *applied, size_t alen, char *restart, size_t rlen);
bool conf_key_reloadable(const char *key);

#endif
