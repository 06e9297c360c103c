/*
 * main.c - nvsrelayd: command line, configuration layering, the event loop
 * and the shutdown sequence.  Owns the loop, the Conf, the event source (the
 * PostgreSQL relay, or with `upstream` set the chained source), the hub, the
 * downlink that answers relays chained below, and the listener.
 *
 * Exit codes (<sysexits.h>): 0 clean stop, 1 runtime failure, EX_USAGE (64)
 * bad usage, EX_CONFIG (78) bad configuration or a schema this binary must
 * not touch (systemd units use RestartPreventExitStatus=78 so a bad config
 * does not restart-loop).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <systemd/sd-daemon.h>

#include "client.h"
#include "conf.h"
#include "conf_load.h"
#include "downlink.h"
#include "errors.h"
#include "fileio.h"
#include "filter.h"
#include "hub.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "ops.h"
#include "owners.h"
#include "relay.h"
#include "request.h"
#include "upstream.h"

#define DEFAULT_CONFIG "/etc/nvsrelayd/nvsrelayd.conf"

extern char **environ;

static struct {
	struct ev_loop *loop;
	Conf *conf;
	const struct conf_values *cv;
	Hub *hub;
	Owners *owners;             /* consumer_owners, NULL: any identity, any name */
	Relay *relay;               /* the PostgreSQL source, or NULL when chained */
	Upstream *upstream;         /* the chained source, or NULL */
	Downlink *downlink;
	Listener *listener;
	struct client_env cenv;
	ev_signal sigterm, sigint, sighup;
	ev_timer deadline, drain;
	bool stopping;
	int exit_code;
	Ops *ops;
	const char *config;         /* the file read at start, read again on reload */
	const char **sets;          /* the --set arguments, applied again on reload (kept, as argv) */
	size_t nsets;
	bool ready_sent;            /* READY=1 went out: reloads are announced */
	bool migrate, dry_run;      /* --migrate [--dry-run]: the schema step only */
	bool no_file_check;         /* --check-config --no-file-check */
} g;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: nvsrelayd [options]\n"
		"Relays committed changes of NVSentinel's PostgreSQL tables to subscribers\n"
		"as MongoDB-style change streams over a Unix socket (NDJSON).\n\n"
		"Options:\n"
		"  -c, --config FILE    configuration file (default " DEFAULT_CONFIG " if present)\n"
		"      --set KEY=VALUE  override one setting (repeatable; wins over file and environment)\n"
		"      --check-config   validate the configuration and the files it names, print it and exit\n"
		"      --no-file-check  with --check-config: not the files (a configuration for another host)\n"
		"      --migrate        install or upgrade the schema, print what ran and exit\n"
		"      --dry-run        with --migrate: only print the plan\n"
		"  -V, --version        print the version and exit\n"
		"  -h, --help           print this help and exit\n\n"
		"Environment: DATASTORE_HOST, DATASTORE_PORT, DATASTORE_DATABASE, DATASTORE_USERNAME,\n"
		"DATASTORE_PASSWORD, DATASTORE_SSLMODE, DATASTORE_SSLCERT, DATASTORE_SSLKEY,\n"
		"DATASTORE_SSLROOTCERT, POSTGRESQL_CLIENT_CERT_MOUNT_PATH (tls.crt, tls.key, ca.crt),\n"
		"and NVSRELAYD_<KEY> for every configuration key.\n");
}

static uint32_t generation(void)
{
	return g.relay ? relay_generation(g.relay) : g.upstream ? upstream_generation(g.upstream) : 0;
}

/* --- the clients' upcalls, served by the hub ---------------------------- */

/* consumer_owners: a durable name only for the identities the map lists. */
static bool consumer_allowed(Client *c, const struct request *rq)
{
	struct owner_id id;
	struct owner_bufs bufs;
	char who[600], msg[400];

	if (!g.owners || !rq->consumer)
		return true;
	client_owner_id(c, &id, &bufs);
	if (owners_allowed(g.owners, rq->consumer, &id))
		return true;
	owners_id_text(&id, who, sizeof(who));
	log_warning("consumer refused client=c%" PRIu64 " peer=%s identity=%s consumer=%s", client_id(c),
		    client_peer(c), LOGQ(who), LOGQ(rq->consumer));
	/* The name is valid UTF-8 of at most 255 bytes (request.c). */
	snprintf(msg, sizeof(msg), "consumer '%.255s' is not allowed for this connection's identity (consumer_owners)",
		 rq->consumer);
	client_send_error(c, rq->sid, ERR_UNAUTHORIZED, msg, NULL);
	return false;
}

static int up_watch(void *arg, Client *c, const struct request *rq, struct filter *filter)
{
	struct watch_req req = {
		.sid = rq->sid,
		/* TABLE_OTHER: every table, for a chained relay. */
		.table = rq->table == REQUEST_MAINTENANCE_EVENTS ? TABLE_MAINTENANCE_EVENTS
		       : rq->table == REQUEST_ALL_TABLES ? TABLE_OTHER : TABLE_HEALTH_EVENTS,
		.consumer = rq->consumer,
		.has_resume = rq->has_resume,
		.resume = rq->resume,
		.has_event_id = rq->has_event_id,
		.event_id = rq->event_id,
		.start_at = rq->start_at,
		.filter = filter,
		.before = rq->before,
		.standby = rq->standby,
	};

	if (!consumer_allowed(c, rq)) {
		filter_free(filter);
		return -EACCES;
	}

	return hub_watch(arg, c, &req);
}

static int up_ack(void *arg, Client *c, long long sid, const struct token *tok)
{
	return hub_ack(arg, c, sid, tok);
}

static int up_unwatch(void *arg, Client *c, long long sid)
{
	return hub_unwatch(arg, c, sid);
}

static void up_gone(void *arg, Client *c)
{
	hub_client_gone(arg, c);
	if (g.downlink)   /* NULL once freed at exit, before the sources */
		downlink_client_gone(g.downlink, c);
}

/* A chained relay's load or store of a name: the same owners as a watch
 * of it, so a node writes only what the map gives its certificate. */
static void up_position(void *arg, Client *c, const struct request *rq)
{
	(void)arg;
	if (!consumer_allowed(c, rq))
		return;
	downlink_request(g.downlink, c, rq);
}

static void up_count(void *arg, Client *c, const struct request *rq)
{
	enum event_table t = rq->table == REQUEST_MAINTENANCE_EVENTS ? TABLE_MAINTENANCE_EVENTS : TABLE_HEALTH_EVENTS;

	hub_count(arg, c, rq->count_id, t, &rq->ack);
}

static void up_writable(void *arg, Client *c)
{
	hub_client_writable(arg, c);
}

static void up_error(void *arg, Client *c, int code, const char *msg)
{
	hub_client_error(arg, c, code, msg);
}

static size_t up_subscriptions(void *arg, const Client *c)
{
	return hub_client_subscriptions(arg, c);
}

static const struct client_upcalls hub_upcalls = {
	.watch = up_watch,
	.ack = up_ack,
	.unwatch = up_unwatch,
	.gone = up_gone,
	.writable = up_writable,
	.error = up_error,
	.subscriptions = up_subscriptions,
	.position = up_position,
	.count = up_count,
};

static void on_ready(void *ud)
{
	char err[256];

	(void)ud;
	if (g.stopping || listener_started(g.listener))
		return;
	if (listener_start(g.listener, err, sizeof(err)) < 0) {
		log_err("%s", err);
		g.exit_code = 1;
		ev_break(g.loop, EVBREAK_ALL);
		return;
	}
	sd_notify(0, "READY=1\nSTATUS=streaming");
	g.ready_sent = true;
}

static void on_fatal(void *ud, const char *why)
{
	(void)ud;
	log_err("stopping: %s", why);
	g.exit_code = EX_CONFIG;
	ev_break(g.loop, EVBREAK_ALL);
}

static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	if (client_count() == 0)
		ev_break(loop, EVBREAK_ALL);
}

static void positions_saved(void *arg)
{
	(void)arg;
	client_close_all("server shutting down");
	ev_timer_init(&g.drain, drain_cb, 0., 0.05);
	ev_timer_start(g.loop, &g.drain);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	log_warning("shutdown deadline reached, exiting with %zu clients still open", client_count());
	ev_break(loop, EVBREAK_ALL);
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	if (g.stopping) {
		log_warning("second signal, exiting now");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	g.stopping = true;
	log_notice("shutting down signal=%s", w->signum == SIGTERM ? "TERM" : "INT");
	sd_notify(0, "STOPPING=1");
	listener_free(g.listener);
	g.listener = NULL;
	ev_timer_init(&g.deadline, deadline_cb, g.cv->shutdown_timeout_ms / 1000.0, 0.);
	ev_timer_start(loop, &g.deadline);
	hub_shutdown(g.hub, positions_saved, NULL);
}

static const char *log_format_name(enum conf_log_format f)
{
	return f == LOG_FORMAT_TEXT ? "text" : f == LOG_FORMAT_JOURNAL ? "journal"
	     : f == LOG_FORMAT_JSON ? "json" : "auto";
}

/*
 * A Conf from the sources (conf_load): defaults, the config file, the
 * environment, the --set arguments.  Returns 0, or an exit code with err
 * filled in.  Used at start and on every reload, so a reload sees exactly
 * what a restart would.
 */
static int build_conf(Conf **ret, char *err, size_t errlen)
{
	struct conf_sources src = { .file = g.config, .envp = environ,
				    .sets = g.sets, .nsets = g.nsets };
	int r = conf_load(&src, ret, err, errlen);

	return r == 0 ? 0 : r == -ENOMEM ? 1 : r == -EINVAL ? EX_USAGE : EX_CONFIG;
}

/*
 * SIGHUP and the admin socket's reload: the sources are read again and the
 * keys that can change at runtime are copied into the one live Conf (see
 * conf_reload), so no module is left holding a pointer into a freed one.
 * A configuration that does not load changes nothing.
 */
static void reload(struct admin_reload *res)
{
	struct timespec now;
	Conf *next = NULL;

	memset(res, 0, sizeof(*res));
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (g.ready_sent)
		sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
			   (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u);
	if (build_conf(&next, res->error, sizeof(res->error)) != 0) {
		res->status = -EINVAL;
		metrics_add(M_RELOADS, "failed", 1);
		log_err("reload failed, the running configuration is kept: %s", res->error);
	} else {
		conf_reload(g.conf, next, res->applied, sizeof(res->applied), res->restart, sizeof(res->restart));
		conf_free(next);
		log_setup(g.cv->log_level, log_format_name(g.cv->log_format));
		hub_reconfigure(g.hub);
		if (g.relay)
			relay_reconfigure(g.relay);
		ops_reconfigure(g.ops);
		metrics_add(M_RELOADS, "applied", 1);
		log_notice("configuration reloaded applied=%s restart_needed=%s",
			   res->applied[0] ? res->applied : "(none)", res->restart[0] ? res->restart : "(none)");
	}
	if (g.ready_sent)
		sd_notify(0, "READY=1");
}

static void hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct admin_reload res;

	(void)loop;
	(void)w;
	(void)revents;
	log_notice("SIGHUP received, reloading the configuration");
	reload(&res);
}

static int load_config(int argc, char **argv, bool *check_only)
{
	const char *config = NULL;
	char err[512];
	int i, r;

	*check_only = false;
	g.sets = calloc((size_t)argc, sizeof(*g.sets));
	if (!g.sets) {
		fprintf(stderr, "nvsrelayd: out of memory\n");
		return 1;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("nvsrelayd %s\n", NVSRELAY_VERSION);
			exit(0);
		} else if (strcmp(a, "--check-config") == 0) {
			*check_only = true;
		} else if (strcmp(a, "--no-file-check") == 0) {
			g.no_file_check = true;
		} else if (strcmp(a, "--migrate") == 0) {
			g.migrate = true;
		} else if (strcmp(a, "--dry-run") == 0) {
			g.dry_run = true;
		} else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			config = argv[++i];
		} else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
			g.sets[g.nsets++] = argv[++i];
		} else {
			fprintf(stderr, "nvsrelayd: unknown or incomplete option '%s'\n", a);
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (!config && access(DEFAULT_CONFIG, F_OK) == 0)
		config = DEFAULT_CONFIG;
	g.config = config;
	r = build_conf(&g.conf, err, sizeof(err));
	if (r != 0) {
		fprintf(stderr, "nvsrelayd: %s\n", err);
		return r;
	}
	g.cv = conf_values(g.conf);
	return 0;
}

/* Descriptors besides the subscribers': the unauthenticated budget, HTTP,
 * admin, PostgreSQL, the log, systemd and slack. */
#define FDS_BESIDE_CLIENTS (CLIENT_UNAUTH_MAX + 64)

/* max_clients is only as good as RLIMIT_NOFILE: the soft limit is raised
 * towards the hard one as far as needed, and what remains short is said at
 * start rather than found by the first client refused for want of fds. */
static void check_nofile(int max_clients)
{
	rlim_t need = (rlim_t)max_clients + FDS_BESIDE_CLIENTS;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return;
	if (rl.rlim_max > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need)
		log_warning("max_clients = %d needs about %llu file descriptors and RLIMIT_NOFILE allows %llu "
			    "(hard limit %llu): connections past that are refused; raise LimitNOFILE= (ulimit -n) "
			    "or lower max_clients", max_clients, (unsigned long long)need,
			    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

/* A config file holding the password must be as private as the password
 * file or the token file; an existing installation is warned rather than
 * refused.  The file is read again, on its own, to learn whether it sets
 * the password (not the environment or --set). */
static void check_config_mode(const char *path)
{
	struct stat st;
	char *text, err[256];
	Conf *c;

	if (!path || stat(path, &st) < 0 || !S_ISREG(st.st_mode) || !(st.st_mode & (S_IRWXG | S_IRWXO)) ||
	    !(text = fileio_read(path, SIZE_MAX / 2, NULL)))
		return;
	if ((c = conf_new()) && conf_load_text(c, text, path, err, sizeof(err)) == 0 &&
	    *conf_values(c)->datastore_password)
		log_warning("%s has mode %04o and holds datastore_password: anyone in its group or on the host can "
			    "read it; chmod 600, or move the password to datastore_password_file or DATASTORE_PASSWORD",
			    path, (unsigned)(st.st_mode & 07777));
	conf_free(c);
	explicit_bzero(text, strlen(text));
	free(text);
}

int main(int argc, char **argv)
{
	char lerr[512];
	bool check_only;
	int r;

	r = load_config(argc, argv, &check_only);
	if (r != 0) {
		conf_free(g.conf);
		return r;
	}
	if (check_only) {
		size_t n = conf_dump(g.conf, NULL, 0);
		char *buf;

		if (!g.no_file_check && conf_load_check_files(g.cv, lerr, sizeof(lerr)) < 0) {
			fprintf(stderr, "nvsrelayd: %s\n", lerr);
			conf_free(g.conf);
			return EX_CONFIG;
		}
		buf = malloc(n + 1);
		if (buf) {
			conf_dump(g.conf, buf, n + 1);
			fputs(buf, stdout);
			free(buf);
		}
		printf("# configuration OK\n");
		conf_free(g.conf);
		return 0;
	}
	if (g.migrate || g.dry_run) {
		r = g.migrate ? migrate_main(g.conf, g.dry_run) : EX_USAGE;
		if (!g.migrate)
			fprintf(stderr, "nvsrelayd: --dry-run goes with --migrate\n");
		conf_free(g.conf);
		return r;
	}
	if (log_setup(g.cv->log_level, g.cv->log_format == LOG_FORMAT_TEXT ? "text"
			 : g.cv->log_format == LOG_FORMAT_JOURNAL ? "journal"
			 : g.cv->log_format == LOG_FORMAT_JSON ? "json" : "auto") < 0) {
		fprintf(stderr, "nvsrelayd: bad log_level or log_format\n");
		conf_free(g.conf);
		return EX_CONFIG;
	}
	signal(SIGPIPE, SIG_IGN);
	check_nofile(g.cv->max_clients);
	check_config_mode(g.config);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());

	/* Checked when the configuration loaded (conf_value_owners). */
	if (owners_parse(g.cv->consumer_owners, &g.owners, lerr, sizeof(lerr)) < 0) {
		fprintf(stderr, "nvsrelayd: consumer_owners: %s\n", lerr);
		conf_free(g.conf);
		return EX_CONFIG;
	}
	g.loop = ev_loop_new(EVFLAG_AUTO);
	g.hub = hub_new(g.loop, g.cv);
	g.downlink = downlink_new(g.hub);
	if (!g.loop || !g.hub || !g.downlink) {
		log_err("out of memory at start-up");
		return 1;
	}
	if (*g.cv->upstream) {
		/* Chained: no PostgreSQL connection at all. */
		g.upstream = upstream_new(g.loop, g.cv, g.hub, on_ready, NULL, lerr, sizeof(lerr));
		if (!g.upstream) {
			log_err("%s", lerr);
			return EX_CONFIG;
		}
		hub_set_source(g.hub, upstream_source(g.upstream));
		downlink_set_source(g.downlink, upstream_source(g.upstream));
	} else {
		g.relay = relay_new(g.loop, g.conf, g.hub, on_ready, on_fatal, NULL);
		if (!g.relay) {
			log_err("out of memory at start-up");
			return 1;
		}
		hub_set_source(g.hub, relay_source(g.relay));
		downlink_set_source(g.downlink, relay_source(g.relay));
	}
	g.cenv.loop = g.loop;
	g.cenv.up = &hub_upcalls;
	g.cenv.up_arg = g.hub;
	g.cenv.cv = g.cv;
	g.cenv.generation = generation;
	g.ops = ops_new(&(struct ops_env){ .loop = g.loop, .cv = g.cv, .hub = g.hub, .relay = g.relay,
					   .upstream = g.upstream, .reload = reload }, lerr, sizeof(lerr));
	if (!g.ops) {
		log_err("%s", lerr);
		return 1;
	}
	/* TLS files, the token file and addresses are checked before the
	 * relay connects anywhere. */
	g.listener = listener_new(&g.cenv, lerr, sizeof(lerr));
	if (!g.listener) {
		log_err("%s", lerr);
		g.exit_code = EX_CONFIG;
		goto out;
	}

	ev_signal_init(&g.sigterm, stop_cb, SIGTERM);
	ev_signal_init(&g.sigint, stop_cb, SIGINT);
	ev_signal_init(&g.sighup, hup_cb, SIGHUP);
	ev_signal_start(g.loop, &g.sigterm);
	ev_signal_start(g.loop, &g.sigint);
	ev_signal_start(g.loop, &g.sighup);

	if (g.upstream) {
		log_notice("nvsrelayd %s starting upstream=%s", NVSRELAY_VERSION, g.cv->upstream);
		upstream_start(g.upstream);
	} else {
		log_notice("nvsrelayd %s starting database=%s host=%s sslmode=%s", NVSRELAY_VERSION,
			   g.cv->datastore_database, g.cv->datastore_host,
			   (const char *[]){ "disable", "require", "verify-ca", "verify-full" }[g.cv->datastore_sslmode]);
		relay_start(g.relay);
	}
	ev_run(g.loop, 0);

out:
	/* The relay goes first: failing its pending queries calls back into
	 * the hub, which must still exist but must not query again. */
	listener_free(g.listener);
	ops_free(g.ops);
	hub_set_source(g.hub, NULL);
	downlink_set_source(g.downlink, NULL);
	downlink_free(g.downlink);
	/* A position write the relay fails may end the hub's shutdown, which
	 * closes the clients: up_gone must not reach the freed downlink. */
	g.downlink = NULL;
	relay_free(g.relay);
	g.relay = NULL;
	upstream_free(g.upstream);
	g.upstream = NULL;
	hub_free(g.hub);
	client_free_all();
	owners_free(g.owners);
	ev_loop_destroy(g.loop);
	metrics_reset();
	conf_free(g.conf);
	if (g.exit_code == 0)
		log_notice("stopped");
	return g.exit_code;
}
