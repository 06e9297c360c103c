/*
 * conf.c - the configuration of nvsrelayd.  Owns the option table (the one
 * source of truth for key names, types, defaults, ranges, the environment
 * variables that set them and their help text), the Conf and its validation
 * across keys, the client certificate paths derived from the mount path, the
 * libpq connection parameters built from all of it, --check-config's dump
 * and the reload diff.
 *
 * Pure code: no I/O, no getenv(), no logging.  conf_load.c feeds it the
 * sources through conf_set() and calls conf_finish(); the syntax checks of
 * single values are in conf_value.c.  Errors come back as text in the
 * caller's buffer so that the caller decides how to report them.
 *
 * tests/integ/optscan.t reads the OPT(...) entries below to check that
 * conf/nvsrelayd.conf and README.md list every key with its default, so keep
 * "OPT(name, type, "default"," together on the entry's first line.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "conf_value.h"
#include "errbuf.h"

enum opt_type {
	T_STR,          /* const char * field, any text */
	T_INT,          /* int field, decimal, min..max */
	T_MODE,         /* int field, octal file mode, 0..max */
	T_ENUM,         /* enum conf_* field, index into names */
	T_NAME,         /* const char * field pointing at one of names */
};

#define OPT_NONEMPTY    0x1     /* "" is rejected */
#define OPT_SECRET      0x2     /* never shown, wiped before free */
#define OPT_CONNINFO    0x4     /* libpq pairs; sslpassword is not shown */

struct opt {
	const char *name;
	enum opt_type type;
	size_t off;                     /* field in struct conf_values */
	const char *def;                /* default, as config text */
	int min, max;                   /* T_INT, T_MODE */
	const char *const *names;       /* T_ENUM, T_NAME; NULL-terminated */
	unsigned flags;                 /* OPT_* */
	const char *env;                /* seed variable that sets it, or NULL */
	const char *env_alt;            /* read when env is unset or empty */
	int (*check)(const char *key, const char *value, char *err, size_t errlen);   /* conf_value.h */
	const char *help;
};

/* The names are in the order of the enums in conf.h, which index them. */
static const char *const sslmode_names[] = { "disable", "require", "verify-ca", "verify-full", NULL };
static const char *const schema_names[] = { "auto", "verify", NULL };
static const char *const level_names[] = { "err", "warning", "notice", "info", "debug", NULL };
static const char *const format_names[] = { "auto", "text", "journal", "json", NULL };
static const char *const onoff_names[] = { "off", "on", NULL };

_Static_assert(SSLMODE_DISABLE == 0 && SSLMODE_VERIFY_FULL == 3, "sslmode_names order");
_Static_assert(SCHEMA_AUTO == 0 && SCHEMA_VERIFY == 1, "schema_names order");
_Static_assert(LOG_FORMAT_AUTO == 0 && LOG_FORMAT_JSON == 3, "format_names order");
/* Enum fields are written as int (memcpy), which needs the same size. */
_Static_assert(sizeof(enum conf_sslmode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_schema) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_log_format) == sizeof(int), "enum size");

/* #n keeps the key name and the struct field from drifting apart. */
#define OPT(n, t, d, ...) \
	{ .name = #n, .type = t, .off = offsetof(struct conf_values, n), .def = d, __VA_ARGS__ }

static const struct opt opts[] = {
	OPT(datastore_host, T_STR, "localhost", .flags = OPT_NONEMPTY, .env = "DATASTORE_HOST",
	    .help = "host name, address or socket directory; a comma list means libpq multi-host failover"),
	OPT(datastore_port, T_STR, "5432", .check = conf_value_port_list, .env = "DATASTORE_PORT",
	    .help = "PostgreSQL port (1..65535) for every host, or a comma list of one port per host"),
	OPT(datastore_database, T_STR, "nvsentinel", .flags = OPT_NONEMPTY, .env = "DATASTORE_DATABASE",
	    .help = "database holding NVSentinel's tables"),
	OPT(datastore_username, T_STR, "nvsentinel", .flags = OPT_NONEMPTY, .env = "DATASTORE_USERNAME",
	    .help = "PostgreSQL user; with client-certificate auth it must equal the certificate's CN"),
	OPT(datastore_password, T_STR, "", .flags = OPT_SECRET, .env = "DATASTORE_PASSWORD",
	    .help = "password for SCRAM-SHA-256 auth; empty for client-certificate auth"),
	OPT(datastore_password_file, T_STR, "",
	    .help = "file whose first line is the password, readable by the daemon's user only"),
	OPT(datastore_sslmode, T_ENUM, "require", .names = sslmode_names, .env = "DATASTORE_SSLMODE",
	    .help = "TLS to PostgreSQL: disable, require, verify-ca or verify-full"),
	OPT(datastore_sslcert, T_STR, "", .env = "DATASTORE_SSLCERT",
	    .help = "client certificate file; empty: <client_cert_mount_path>/tls.crt when that is set"),
	OPT(datastore_sslkey, T_STR, "", .env = "DATASTORE_SSLKEY",
	    .help = "client key file (mode 0600); empty: <client_cert_mount_path>/tls.key when that is set"),
	OPT(datastore_sslrootcert, T_STR, "", .env = "DATASTORE_SSLROOTCERT",
	    .help = "CA bundle for verify-ca/full; empty: <client_cert_mount_path>/ca.crt when that is set"),
	OPT(datastore_options, T_STR, "", .flags = OPT_CONNINFO, .check = conf_value_options,
	    .help = "extra libpq parameters as \"key=value key2='value 2'\""),
	OPT(client_cert_mount_path, T_STR, "", .env = "POSTGRESQL_CLIENT_CERT_MOUNT_PATH",
	    .env_alt = "MONGODB_CLIENT_CERT_MOUNT_PATH",
	    .help = "directory holding tls.crt, tls.key and ca.crt, as mounted from a Kubernetes secret"),
	OPT(datastore_replica_host, T_STR, "",
	    .help = "hot standby that batch and catch-up pages are read from once it has replayed them; empty for none"),
	OPT(datastore_replica_port, T_STR, "", .check = conf_value_port_opt,
	    .help = "port of datastore_replica_host; empty: datastore_port"),
	OPT(listen_unix, T_STR, "/run/nvsrelayd/nvsrelayd.sock", .check = conf_value_socket_path,
	    .help = "subscriber Unix socket path; empty for none"),
	OPT(unix_socket_mode, T_MODE, "0660", .max = 0777,
	    .help = "file mode of the Unix socket, in octal"),
	OPT(unix_allow_uids, T_STR, "", .check = conf_value_id_list,
	    .help = "users (ids or names, comma-separated) allowed on the Unix socket; empty: any the file mode lets in"),
	OPT(unix_allow_gids, T_STR, "", .check = conf_value_id_list,
	    .help = "groups (ids or names, comma-separated) whose members are allowed on the Unix socket"),
	OPT(consumer_owners, T_STR, "", .check = conf_value_owners,
	    .help = "which peer identities may use which consumer names (\"NAME = uid:N, cn:S; prefix* = ...\"); empty: any"),
	OPT(listen_tcp, T_STR, "", .check = conf_value_listen_addr,
	    .help = "HOST:PORT of the subscriber TCP listener (TLS, or plaintext on loopback); empty for none"),
	OPT(tcp_plaintext, T_ENUM, "off", .names = onoff_names,
	    .help = "on: without TLS, the TCP listener speaks plaintext, on a loopback address only"),
	OPT(tls_cert_file, T_STR, "",
	    .help = "certificate chain (PEM) of the TCP listener"),
	OPT(tls_key_file, T_STR, "",
	    .help = "private key (PEM) of tls_cert_file"),
	OPT(tls_ca_file, T_STR, "",
	    .help = "CA certificates (PEM); set: TCP clients must present a certificate signed by one"),
	OPT(auth_token_file, T_STR, "",
	    .help = "file holding the bearer token TCP clients send in their hello; mode 0600 or stricter"),
	OPT(schema, T_ENUM, "auto", .names = schema_names,
	    .help = "auto installs and migrates the schema; verify only checks it, refusing to run when behind"),
	OPT(log_level, T_NAME, "info", .names = level_names,
	    .help = "least severe level logged: err, warning, notice, info or debug"),
	OPT(log_format, T_ENUM, "auto", .names = format_names,
	    .help = "auto picks journal under systemd, text on a terminal, else json; or text, journal, json"),
	OPT(poll_interval_ms, T_INT, "250", .min = 1, .max = 600000,
	    .help = "how often the changelog head is probed after activity or while LISTEN is down"),
	OPT(poll_interval_max_ms, T_INT, "2000", .min = 1, .max = 600000,
	    .help = "the probe interval doubles up to this while probes find nothing and LISTEN is up"),
	OPT(tick_min_interval_ms, T_INT, "2", .min = 1, .max = 60000,
	    .help = "shortest time between two ticks while changes keep coming"),
	OPT(tick_idle_ms, T_INT, "5000", .min = 1, .max = 3600000,
	    .help = "a tick is written at least this often, so long transactions are picked up"),
	OPT(batch_rows, T_INT, "1000", .min = 1, .max = 1000000,
	    .help = "changelog rows read per batch page"),
	OPT(ring_events, T_INT, "8192", .min = 1, .max = 16777216,
	    .help = "recent events kept in memory for subscribers that are catching up"),
	OPT(max_frame_bytes, T_INT, "16777216", .min = 1024, .max = 1073741824,
	    .help = "largest protocol frame accepted from a client (events sent may be larger)"),
	OPT(max_clients, T_INT, "1024", .min = 1, .max = 1048576,
	    .help = "subscriber connections accepted at once"),
	OPT(max_subscriptions_per_client, T_INT, "64", .min = 1, .max = 65536,
	    .help = "subscriptions one connection may hold at once"),
	OPT(client_output_limit, T_INT, "67108864", .min = 1024, .max = INT_MAX,
	    .help = "bytes queued to one subscriber before it is disconnected to resume later"),
	OPT(client_output_soft_limit, T_INT, "8388608", .min = 0, .max = INT_MAX,
	    .help = "a subscriber with more queued than this for client_output_soft_seconds is disconnected (0: none)"),
	OPT(client_output_soft_seconds, T_INT, "60", .min = 0, .max = 86400,
	    .help = "seconds above the soft limit, or without reading anything queued, before a disconnect (0: never)"),
	OPT(ack_flush_ms, T_INT, "200", .min = 1, .max = 600000,
	    .help = "acknowledged positions are written to resume_tokens at most this often"),
	OPT(retention_max_age_hours, T_INT, "168", .min = 0, .max = 876000,
	    .help = "changelog older than this is pruned even if a consumer still needs it (0: no age cap)"),
	OPT(retention_max_rows, T_INT, "0", .min = 0, .max = INT_MAX,
	    .help = "keep at most about this many changelog rows, oldest pruned first (0: no cap)"),
	OPT(consumer_idle_hours, T_INT, "168", .min = 1, .max = 876000,
	    .help = "a durable consumer not seen for this long stops holding the changelog back"),
	OPT(retention_floor_s, T_INT, "600", .min = 0, .max = 86400,
	    .help = "ticks and rows of the last this many seconds are never pruned (standby relays read a little behind)"),
	OPT(prune_interval_s, T_INT, "60", .min = 1, .max = 86400,
	    .help = "seconds between pruning rounds of the ticking relay"),
	OPT(prune_chunk_rows, T_INT, "5000", .min = 100, .max = 1000000,
	    .help = "changelog rows deleted per statement, so pruning never holds locks for long"),
	OPT(reconnect_min_ms, T_INT, "100", .min = 1, .max = 3600000,
	    .help = "first delay before reconnecting to PostgreSQL"),
	OPT(reconnect_max_ms, T_INT, "10000", .min = 1, .max = 3600000,
	    .help = "longest delay between reconnect attempts"),
	OPT(connect_timeout_s, T_INT, "10", .min = 2, .max = 3600,
	    .help = "give up on one connection attempt after this many seconds"),
	OPT(shutdown_timeout_ms, T_INT, "5000", .min = 1, .max = 3600000,
	    .help = "on SIGTERM, time allowed to flush subscribers and acknowledged positions"),
	OPT(http_listen, T_STR, "127.0.0.1:9187", .check = conf_value_listen_addr,
	    .help = "HOST:PORT of the HTTP endpoint for /metrics, /livez and /readyz; empty for none"),
	OPT(stats_interval_s, T_INT, "15", .min = 0, .max = 86400,
	    .help = "how often PostgreSQL statistics for /metrics are sampled; 0 for never"),
	OPT(admin_socket, T_STR, "/run/nvsrelayd/admin.sock", .check = conf_value_socket_path,
	    .help = "admin Unix socket (JSON lines; root and the daemon's user only); empty for none"),
	OPT(upstream, T_STR, "", .check = conf_value_hostport_list,
	    .help = "HOST:PORT[,HOST:PORT...] of upstream relays; set: events come from them, no PostgreSQL connection"),
	OPT(upstream_tls, T_ENUM, "on", .names = onoff_names,
	    .help = "on: TLS to the upstream, verifying its certificate; off: plaintext (loopback or a trusted network)"),
	OPT(upstream_ca_file, T_STR, "",
	    .help = "CA certificates (PEM) that sign the upstream's certificate; empty: the system's"),
	OPT(upstream_cert_file, T_STR, "",
	    .help = "client certificate chain (PEM) presented to the upstream; empty: none"),
	OPT(upstream_key_file, T_STR, "",
	    .help = "private key (PEM) of upstream_cert_file; empty: in upstream_cert_file"),
	OPT(upstream_token_file, T_STR, "",
	    .help = "file holding the bearer token sent in the hello to the upstream; empty: none"),
	OPT(upstream_timeout_ms, T_INT, "10000", .min = 300, .max = 3600000,
	    .help = "nothing from the upstream for this long (pinged every third of it): try the next one"),
	OPT(node_name, T_STR, "", .check = conf_value_node_name,
	    .help = "this relay's name upstream: its consumers are stored as <node_name>/<consumer>; empty: host name"),
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Keys a running daemon takes over on reload (conf_reload).  Their readers
 * look them up on every use, or re-arm their timers when told; none is a
 * string, so no module can be left holding a freed pointer. */
static const char *const reloadable[] = {
	"log_level", "log_format", "poll_interval_ms", "poll_interval_max_ms", "tick_min_interval_ms", "tick_idle_ms",
	"batch_rows", "max_clients", "client_output_limit", "client_output_soft_limit",
	"client_output_soft_seconds", "ack_flush_ms", "shutdown_timeout_ms", "stats_interval_s",
};
/* Not max_subscriptions_per_client: client.c sizes a per-connection table
 * by it once, so a larger value at runtime would write past that table. */

/*
 * A LISTEN connection can sit idle for hours; without keepalives a primary
 * that vanished (node loss, failover) leaves the socket looking open until
 * the kernel's two-hour default.  30 s idle plus 3 probes 10 s apart finds a
 * dead peer in about a minute.  datastore_options can override them.
 */
#define KEEPALIVES_IDLE         "30"
#define KEEPALIVES_INTERVAL     "10"
#define KEEPALIVES_COUNT        "3"

/* One set of libpq parameters.  Older sets stay allocated until conf_free()
 * because callers were promised their arrays live that long. */
struct pqparams {
	struct pqparams *older;
	size_t n, cap;
	const char **keys;      /* n + 1 entries, NULL-terminated */
	char **vals;            /* owned copies, NULL-terminated */
	char *arena;            /* keys taken from datastore_options */
	size_t arena_len;       /* its size, to wipe it */
};

struct conf {
	struct conf_values v;           /* the public view; strings point into str[] */
	char *str[N_OPTS];              /* owned text of T_STR options */
	bool derived[N_OPTS];           /* filled in by conf_finish, not by a source */
	struct pqparams *pq;            /* newest libpq parameters */
};

/* Writes "a, b, c" for the accepted-values part of messages. */
static const char *names_list(const char *const *names, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (size_t i = 0; names[i]; i++) {
		int n = snprintf(buf + pos, len - pos, "%s%s", i ? ", " : "", names[i]);

		if (n < 0 || (size_t)n >= len - pos)
			break;
		pos += (size_t)n;
	}
	return buf;
}

static const struct opt *find_opt(const char *key)
{
	for (size_t i = 0; i < N_OPTS; i++)
		if (strcmp(opts[i].name, key) == 0)
			return &opts[i];
	return NULL;
}

static size_t opt_index(const char *key)
{
	return (size_t)(find_opt(key) - opts);
}

static void *field(Conf *c, const struct opt *o)
{
	return (char *)&c->v + o->off;
}

static int enum_get(const Conf *c, const struct opt *o)
{
	int idx;

	memcpy(&idx, (const char *)&c->v + o->off, sizeof(idx));
	return idx;
}

/* Frees a string that may hold a secret; a core dump or a reused heap block
 * should not show it. */
static void free_wiped(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Replaces the text of string option i and points the view at it. */
static int str_replace(Conf *c, size_t i, const char *value, bool derived)
{
	char *dup = strdup(value);

	if (!dup)
		return -ENOMEM;
	free_wiped(c->str[i]);
	c->str[i] = dup;
	c->derived[i] = derived;
	*(const char **)field(c, &opts[i]) = dup;
	return 0;
}

static int find_name(const char *const *names, const char *value)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(names[i], value) == 0)
			return i;
	return -1;
}

static int set_opt(Conf *c, const struct opt *o, const char *value, char *err, size_t errlen)
{
	char sbuf[72], nbuf[128];
	long long n;
	int idx, r;

	switch (o->type) {
	case T_STR:
		if ((o->flags & OPT_NONEMPTY) && !*value) {
			errbuf_set(err, errlen, "%s: must not be empty", o->name);
			return -EINVAL;
		}
		if (o->check && (r = o->check(o->name, value, err, errlen)) < 0)
			return r;
		return str_replace(c, (size_t)(o - opts), value, false);
	case T_INT:
		if (!conf_value_int(value, &n)) {
			errbuf_set(err, errlen, "%s: invalid value '%s' (expected an integer %d..%d)",
			       o->name, conf_value_shown(value, sbuf, sizeof(sbuf)), o->min, o->max);
			return -EINVAL;
		}
		if (n < o->min || n > o->max) {
			errbuf_set(err, errlen, "%s: %s is out of range (expected %d..%d)",
			       o->name, conf_value_shown(value, sbuf, sizeof(sbuf)), o->min, o->max);
			return -EINVAL;
		}
		*(int *)field(c, o) = (int)n;
		return 0;
	case T_MODE:
		if (!conf_value_octal(value, &n) || n < o->min || n > o->max) {
			errbuf_set(err, errlen, "%s: invalid value '%s' (expected an octal file mode %04o..%04o, such as 0660)",
			       o->name, conf_value_shown(value, sbuf, sizeof(sbuf)), (unsigned)o->min, (unsigned)o->max);
			return -EINVAL;
		}
		*(int *)field(c, o) = (int)n;
		return 0;
	case T_ENUM:
	case T_NAME:
		idx = find_name(o->names, value);
		if (idx < 0) {
			errbuf_set(err, errlen, "%s: invalid value '%s' (accepted: %s)", o->name,
			       conf_value_shown(value, sbuf, sizeof(sbuf)), names_list(o->names, nbuf, sizeof(nbuf)));
			return -EINVAL;
		}
		if (o->type == T_ENUM)
			memcpy(field(c, o), &idx, sizeof(idx));
		else
			*(const char **)field(c, o) = o->names[idx];
		return 0;
	}
	return -EINVAL;
}

int conf_set(Conf *c, const char *key, const char *value, char *err, size_t errlen)
{
	const struct opt *o = find_opt(key);
	char sbuf[72];

	if (!o) {
		errbuf_set(err, errlen, "unknown key '%s'", conf_value_shown(key, sbuf, sizeof(sbuf)));
		return -ENOENT;
	}
	return set_opt(c, o, value ? value : "", err, errlen);
}

static void pq_free(struct pqparams *b)
{
	while (b) {
		struct pqparams *older = b->older;

		/* Values include the password. */
		for (size_t i = 0; i < b->n; i++)
			free_wiped(b->vals[i]);
		free(b->keys);
		free(b->vals);
		conf_value_arena_free(b->arena, b->arena_len);
		free(b);
		b = older;
	}
}

/* Sets key to val, replacing an earlier value of the same key so that
 * datastore_options overrides the built-in tuning instead of repeating it. */
static int pq_put(struct pqparams *b, const char *key, const char *val)
{
	char *dup = strdup(val);
	size_t i;

	if (!dup)
		return -ENOMEM;
	for (i = 0; i < b->n; i++) {
		if (strcmp(b->keys[i], key) == 0) {
			free_wiped(b->vals[i]);
			b->vals[i] = dup;
			return 0;
		}
	}
	if (b->n + 1 >= b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 32;
		const char **keys = realloc(b->keys, cap * sizeof(*keys));
		char **vals;

		if (keys)
			b->keys = keys;
		vals = keys ? realloc(b->vals, cap * sizeof(*vals)) : NULL;
		if (!vals) {
			free(dup);
			return -ENOMEM;
		}
		b->vals = vals;
		b->cap = cap;
	}
	b->keys[b->n] = key;
	b->vals[b->n] = dup;
	b->n++;
	b->keys[b->n] = NULL;
	b->vals[b->n] = NULL;
	return 0;
}

static int pq_put_int(struct pqparams *b, const char *key, int val)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "%d", val);
	return pq_put(b, key, buf);
}

/* Puts key only when its value is set: an empty value would override libpq's
 * own default (for sslrootcert, ~/.postgresql/root.crt). */
static int pq_put_set(struct pqparams *b, const char *key, const char *val)
{
	return *val ? pq_put(b, key, val) : 0;
}

static int pq_build(Conf *c, char *err, size_t errlen)
{
	const struct conf_values *v = &c->v;
	struct pqparams *b = calloc(1, sizeof(*b));
	const char *p;
	int n, r = -ENOMEM;

	if (!b)
		return -ENOMEM;
	if ((r = pq_put(b, "host", v->datastore_host)) < 0 ||
	    (r = pq_put(b, "port", v->datastore_port)) < 0 ||
	    (r = pq_put(b, "dbname", v->datastore_database)) < 0 ||
	    (r = pq_put(b, "user", v->datastore_username)) < 0 ||
	    (r = pq_put_set(b, "password", v->datastore_password)) < 0 ||
	    (r = pq_put(b, "sslmode", sslmode_names[v->datastore_sslmode])) < 0 ||
	    (r = pq_put_set(b, "sslcert", v->datastore_sslcert)) < 0 ||
	    (r = pq_put_set(b, "sslkey", v->datastore_sslkey)) < 0 ||
	    (r = pq_put_set(b, "sslrootcert", v->datastore_sslrootcert)) < 0 ||
	    (r = pq_put(b, "application_name", "nvsrelayd")) < 0 ||
	    /* With a Kerberos credential cache around, libpq's default
	     * (prefer) first tries GSS encryption on every TCP connect, which
	     * costs a round trip or a stall; the relay never uses GSS.  libpq
	     * ignores the setting for Unix sockets. */
	    (r = pq_put(b, "gssencmode", "disable")) < 0 ||
	    (r = pq_put(b, "keepalives", "1")) < 0 ||
	    (r = pq_put(b, "keepalives_idle", KEEPALIVES_IDLE)) < 0 ||
	    (r = pq_put(b, "keepalives_interval", KEEPALIVES_INTERVAL)) < 0 ||
	    (r = pq_put(b, "keepalives_count", KEEPALIVES_COUNT)) < 0 ||
	    /* libpq honours this only in its blocking connect; the daemon
	     * times out its non-blocking connects itself, with the same value. */
	    (r = pq_put_int(b, "connect_timeout", v->connect_timeout_s)) < 0)
		goto out;
	/* Ticks are written and batches read on the primary: after a failover
	 * libpq must skip the host that became a standby. */
	if (strchr(v->datastore_host, ',') && (r = pq_put(b, "target_session_attrs", "read-write")) < 0)
		goto out;

	b->arena_len = conf_value_arena_len(v->datastore_options);
	n = conf_value_options_split(v->datastore_options, &b->arena, err, errlen);
	if (n < 0) {
		r = n;
		goto out;
	}
	p = b->arena;
	for (int i = 0; i < n; i++) {
		const char *val = p + strlen(p) + 1;

		if ((r = pq_put(b, p, val)) < 0)
			goto out;
		p = val + strlen(val) + 1;
	}
	b->older = c->pq;
	c->pq = b;
	return 0;
out:
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "out of memory");
	pq_free(b);
	return r;
}

/* Fills an unset certificate key with <mount>/<file>.  A value derived
 * earlier is derived again, so that a changed mount path is followed. */
static int derive_cert(Conf *c, const char *key, const char *file)
{
	size_t i = opt_index(key);
	const char *mount = c->v.client_cert_mount_path;
	size_t len = strlen(mount);
	char *path;
	int r;

	if (*c->str[i] && !c->derived[i])
		return 0;               /* set by a source: the operator's choice */
	if (!len)
		return c->derived[i] ? str_replace(c, i, "", false) : 0;
	/* "/etc/ssl/client-certs/" should not give "//tls.crt". */
	while (len > 1 && mount[len - 1] == '/')
		len--;
	path = malloc(len + 1 + strlen(file) + 1);
	if (!path)
		return -ENOMEM;
	snprintf(path, len + 1 + strlen(file) + 1, "%.*s%s%s", (int)len, mount,
		 mount[len - 1] == '/' ? "" : "/", file);
	r = str_replace(c, i, path, true);
	free(path);
	return r;
}

/* The TCP listener is TLS with client certificates or a token, or, when no
 * TLS is configured and tcp_plaintext allows it, plaintext on loopback;
 * anything else would hand every change to whoever reaches the port. */
static int check_tcp(const struct conf_values *v, char *err, size_t errlen)
{
	bool tls = *v->tls_cert_file || *v->tls_key_file;
	char sbuf[72];

	if (!*v->tls_cert_file != !*v->tls_key_file) {
		errbuf_set(err, errlen, "tls_cert_file and tls_key_file must be set together");
		return -EINVAL;
	}
	if (*v->tls_ca_file && !tls) {
		errbuf_set(err, errlen, "tls_ca_file is set but tls_cert_file and tls_key_file are not: "
		       "client certificates are checked only over TLS");
		return -EINVAL;
	}
	if (!*v->listen_tcp)
		return 0;
	if (!tls && !v->tcp_plaintext) {
		errbuf_set(err, errlen, "listen_tcp = %s needs TLS (tls_cert_file and tls_key_file), or tcp_plaintext = on "
		       "for a loopback address", conf_value_shown(v->listen_tcp, sbuf, sizeof(sbuf)));
		return -EINVAL;
	}
	if (tls && !*v->tls_ca_file && !*v->auth_token_file) {
		errbuf_set(err, errlen, "listen_tcp with TLS needs client certificates (tls_ca_file) or a token "
		       "(auth_token_file): otherwise anyone who reaches the port reads every change");
		return -EINVAL;
	}
	/* TCP has no peer credentials: any local user would get around the
	 * allow-list of the Unix socket. */
	if (!tls && !*v->auth_token_file && (*v->unix_allow_uids || *v->unix_allow_gids)) {
		errbuf_set(err, errlen, "tcp_plaintext = on without a token lets every local user in over TCP, around "
		       "unix_allow_uids and unix_allow_gids (TCP has no peer credentials); set auth_token_file, "
		       "use TLS, or leave the allow-list empty");
		return -EINVAL;
	}
	if (!tls && conf_value_non_loopback(v->listen_tcp)) {
		errbuf_set(err, errlen, "tcp_plaintext = on is allowed on a loopback address only, and listen_tcp = %s "
		       "is not one; use TLS (tls_cert_file, tls_key_file) for other addresses",
		       conf_value_shown(v->listen_tcp, sbuf, sizeof(sbuf)));
		return -EINVAL;
	}
	return 0;
}

int conf_finish(Conf *c, char *err, size_t errlen)
{
	const struct conf_values *v = &c->v;
	size_t ports, hosts;
	int r;

	if (v->reconnect_min_ms > v->reconnect_max_ms) {
		errbuf_set(err, errlen, "reconnect_min_ms (%d) must not be greater than reconnect_max_ms (%d)",
		       v->reconnect_min_ms, v->reconnect_max_ms);
		return -EINVAL;
	}
	if (v->tick_min_interval_ms > v->tick_idle_ms) {
		errbuf_set(err, errlen, "tick_min_interval_ms (%d) must not be greater than tick_idle_ms (%d)",
		       v->tick_min_interval_ms, v->tick_idle_ms);
		return -EINVAL;
	}
	/* libpq would refuse the mismatch only when connecting. */
	ports = conf_value_count_items(v->datastore_port);
	hosts = conf_value_count_items(v->datastore_host);
	if (ports > 1 && ports != hosts) {
		errbuf_set(err, errlen, "datastore_port lists %zu ports for %zu hosts in datastore_host "
		       "(give one port for all hosts, or one per host)", ports, hosts);
		return -EINVAL;
	}
	/* Otherwise one large event would disconnect every subscriber. */
	if (v->client_output_limit < v->max_frame_bytes) {
		errbuf_set(err, errlen, "client_output_limit (%d) must be at least max_frame_bytes (%d)",
		       v->client_output_limit, v->max_frame_bytes);
		return -EINVAL;
	}
	if ((r = check_tcp(v, err, errlen)) < 0)
		return r;
	if ((r = derive_cert(c, "datastore_sslcert", "tls.crt")) < 0 ||
	    (r = derive_cert(c, "datastore_sslkey", "tls.key")) < 0 ||
	    (r = derive_cert(c, "datastore_sslrootcert", "ca.crt")) < 0) {
		errbuf_set(err, errlen, "out of memory");
		return r;
	}
	return pq_build(c, err, errlen);
}

Conf *conf_new(void)
{
	Conf *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	/* Defaults go through the same validation as every other source, so a
	 * bad default in the table fails here (and in the unit test). */
	for (size_t i = 0; i < N_OPTS; i++)
		if (set_opt(c, &opts[i], opts[i].def, NULL, 0) < 0)
			goto out;
	if (conf_finish(c, NULL, 0) < 0)
		goto out;
	return c;
out:
	conf_free(c);
	return NULL;
}

void conf_free(Conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < N_OPTS; i++)
		free_wiped(c->str[i]);
	pq_free(c->pq);
	free(c);
}

const struct conf_values *conf_values(const Conf *c)
{
	return &c->v;
}

/* The arrays reflect the last conf_finish() (conf_new runs one).  Callers
 * pass expand_dbname = 0: datastore_database is a name, never a conninfo. */
void conf_libpq_params(const Conf *c, const char *const **ret_keys, const char *const **ret_vals)
{
	*ret_keys = (const char *const *)c->pq->keys;
	*ret_vals = (const char *const *)c->pq->vals;
}

/* snprintf-style output: counts everything, writes what fits. */
struct out {
	char *buf;
	size_t len, pos;
};

static void out_ch(struct out *o, char ch)
{
	if (o->pos + 1 < o->len)
		o->buf[o->pos] = ch;
	o->pos++;
}

static void out_str(struct out *o, const char *s)
{
	while (*s)
		out_ch(o, *s++);
}

/* Writes a value so that conf_load_text reads it back unchanged. */
static void out_value(struct out *o, const char *s)
{
	size_t n = strlen(s);
	bool quote = n == 0 || s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t' ||
		     s[0] == '"' || s[0] == '\'' || strpbrk(s, "\n\r") != NULL;

	if (!quote) {
		out_str(o, s);
		return;
	}
	out_ch(o, '"');
	for (; *s; s++) {
		switch (*s) {
		case '"': out_str(o, "\\\""); break;
		case '\\': out_str(o, "\\\\"); break;
		case '\n': out_str(o, "\\n"); break;
		case '\r': out_str(o, "\\r"); break;
		case '\t': out_str(o, "\\t"); break;
		default: out_ch(o, *s); break;
		}
	}
	out_ch(o, '"');
}

/*
 * datastore_options as the dump shows it: as written, unless it sets
 * sslpassword (the client key's passphrase), in which case the pairs are
 * written back in libpq syntax with that value replaced by "(set)".
 */
static void out_options(struct out *o, const char *s)
{
	char *arena = NULL, *text, *w;
	const char *p;
	bool secret = false;
	int n = conf_value_options_split(s, &arena, NULL, 0);

	if (n < 0) {
		/* Validated when set, so only out of memory gets here. */
		out_str(o, "(not shown)");
		return;
	}
	p = arena;
	for (int i = 0; i < n; i++) {
		secret |= strcmp(p, "sslpassword") == 0;
		p += strlen(p) + 1;
		p += strlen(p) + 1;
	}
	/* Worst case per pair: key, '=', quotes, each value byte escaped,
	 * "(set)" and a separator. */
	text = secret ? malloc(2 * strlen(s) + 16 * (size_t)n + 1) : NULL;
	if (!secret || !text) {
		out_value(o, secret ? "(not shown)" : s);
		conf_value_arena_free(arena, conf_value_arena_len(s));
		return;
	}
	w = text;
	p = arena;
	for (int i = 0; i < n; i++) {
		const char *val = p + strlen(p) + 1;
		bool quote = !*val || strpbrk(val, " \t\n\r\f\v'\\") != NULL;

		w += sprintf(w, "%s%s=", i ? " " : "", p);
		if (strcmp(p, "sslpassword") == 0) {
			w += sprintf(w, "(set)");
		} else {
			if (quote)
				*w++ = '\'';
			for (const char *v = val; *v; v++) {
				if (*v == '\'' || *v == '\\')
					*w++ = '\\';
				*w++ = *v;
			}
			if (quote)
				*w++ = '\'';
		}
		p = val + strlen(val) + 1;
	}
	*w = '\0';
	out_value(o, text);
	free_wiped(text);
	conf_value_arena_free(arena, conf_value_arena_len(s));
}

size_t conf_dump(const Conf *c, char *buf, size_t len)
{
	struct out o = { buf, len, 0 };
	char num[16];

	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt *opt = &opts[i];
		const void *f = (const char *)&c->v + opt->off;

		out_str(&o, opt->name);
		out_str(&o, " = ");
		switch (opt->type) {
		case T_STR:
			if (opt->flags & OPT_SECRET)
				out_str(&o, **(const char *const *)f ? "(set)" : "\"\"");
			else if (opt->flags & OPT_CONNINFO)
				out_options(&o, *(const char *const *)f);
			else
				out_value(&o, *(const char *const *)f);
			break;
		case T_INT:
			snprintf(num, sizeof(num), "%d", *(const int *)f);
			out_str(&o, num);
			break;
		case T_MODE:
			snprintf(num, sizeof(num), "%04o", (unsigned)*(const int *)f);
			out_str(&o, num);
			break;
		case T_ENUM:
			out_str(&o, opt->names[enum_get(c, opt)]);
			break;
		case T_NAME:
			out_str(&o, *(const char *const *)f);
			break;
		}
		out_ch(&o, '\n');
	}
	if (len)
		buf[o.pos < len ? o.pos : len - 1] = '\0';
	return o.pos;
}

const char *conf_key_env(size_t i, const char **alt)
{
	if (alt)
		*alt = i < N_OPTS ? opts[i].env_alt : NULL;
	return i < N_OPTS ? opts[i].env : NULL;
}

const char *conf_key_name(size_t i)
{
	return i < N_OPTS ? opts[i].name : NULL;
}

static bool is_reloadable(const char *name)
{
	for (size_t i = 0; i < sizeof(reloadable) / sizeof(reloadable[0]); i++)
		if (strcmp(reloadable[i], name) == 0)
			return true;
	return false;
}

static void list_add(char *buf, size_t len, const char *name)
{
	size_t n = strlen(buf);

	if (len > n)
		snprintf(buf + n, len - n, "%s%s", n ? "," : "", name);
}

int conf_reload(Conf *dst, const Conf *src, char *applied, size_t alen, char *restart, size_t rlen)
{
	int changed = 0;

	if (alen)
		applied[0] = '\0';
	if (rlen)
		restart[0] = '\0';
	for (size_t i = 0; i < N_OPTS; i++) {
		const struct opt *o = &opts[i];
		void *d = field(dst, o);
		const void *s = (const char *)&src->v + o->off;
		bool same;

		if (o->type == T_STR || o->type == T_NAME)
			same = strcmp(*(const char *const *)d, *(const char *const *)s) == 0;
		else
			same = memcmp(d, s, sizeof(int)) == 0;
		if (same)
			continue;
		if (o->type == T_STR || !is_reloadable(o->name)) {
			list_add(restart, rlen, o->name);
			continue;
		}
		/* Names point into the static tables, ints are copied: nothing
		 * that a module may hold a pointer to is freed. */
		if (o->type == T_NAME)
			*(const char **)d = *(const char *const *)s;
		else
			memcpy(d, s, sizeof(int));
		list_add(applied, alen, o->name);
		changed++;
	}
	return changed;
}

bool conf_key_reloadable(const char *key)
{
	const struct opt *o = find_opt(key);

	return o && o->type != T_STR && is_reloadable(key);
}
