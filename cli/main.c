/*
 * main.c - nvsrelay, the command-line tool.
 *
 * `nvsrelay watch` subscribes through libnvsrelay (proto/nvsrelay.h), over
 * the daemon's Unix socket or its TCP listener, and prints each change event
 * as one JSON line on stdout.  With --ack (implied by --consumer, for
 * compatibility with the first version of this tool) it acknowledges each
 * event only after the line is written and flushed, so a durable position
 * never moves past what was actually printed.
 *
 * Other subcommands live in their own files (cli.h): `status`, `clients`,
 * `consumers`, `reset`, `drop-consumer`, `reload` call ctl_main() from ctl.c, `import` calls
 * import_main() from import.c, each with argv[0] set to the subcommand's
 * name.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "cli.h"
#include "fileio.h"
#include "hostport.h"
#include "nvsrelay.h"

#define DEFAULT_SOCKET "/run/nvsrelayd/nvsrelayd.sock"
#define MAX_PIPELINE_FILE (16u << 20)
/* Longest wait between checks of the stop flag: a signal that lands just
 * before poll() starts is then noticed within this time. */
#define STOP_CHECK_MS 500

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: nvsrelay watch [OPTIONS]\n"
		"       nvsrelay status | clients | consumers | reset | drop-consumer | reload ...\n"
		"                                                  (admin commands, see nvsrelay status --help)\n"
		"       nvsrelay import ...\n"
		"       nvsrelay --version\n\n"
		"watch prints change events as NDJSON on stdout, one event per line.\n\n"
		"Connection:\n"
		"  --socket PATH         daemon socket (default $NVSRELAY_SOCKET or " DEFAULT_SOCKET ")\n"
		"  --tcp HOST:PORT       the daemon's TCP listener instead, over TLS ([ADDR]:PORT for IPv6)\n"
		"  --cacert FILE         CA bundle that verifies the server (default: the system CAs)\n"
		"  --cert FILE           client certificate for mutual TLS\n"
		"  --key FILE            its private key (default: read from --cert)\n"
		"  --server-name NAME    name expected in the server certificate (default: HOST)\n"
		"  --token-file FILE     present the bearer token in FILE (first line)\n"
		"  --plaintext           TCP without TLS (only a loopback plaintext listener)\n"
		"Subscription:\n"
		"  --table TABLE         health_events (default) or maintenance_events\n"
		"  --consumer NAME       durable consumer: start from its stored position; implies --ack\n"
		"  --resume-after TOKEN  start after this token\n"
		"  --start-at TIME       start at the first change at or after TIME (RFC 3339)\n"
		"  --pipeline JSON|@FILE $match stages, as JSON text or read from FILE\n"
		"  --before              include fullDocumentBeforeChange on updates\n"
		"Output:\n"
		"  --ack                 acknowledge each event (and bookmark) once it is printed\n"
		"  --no-ack              do not, even with --consumer\n"
		"  --count N             exit after N events\n"
		"  --timeout SEC         exit after SEC seconds without an event\n"
		"  --bookmarks           print bookmark frames too (on stderr)\n\n"
		"Exit status: 0 after --count, --timeout or a signal; 1 when the connection\n"
		"fails or the server sends an error (printed on stderr); 64 for bad usage.\n");
}

struct watch_args {
	const char *socket;
	char *host, *port;		/* --tcp, split */
	struct nvsrelay_options conn;
	struct nvsrelay_watch_opts w;
	char *token;			/* read from --token-file */
	char *pipeline;			/* read from @FILE */
	int ack;			/* -1: not given */
	bool bookmarks;
	long count;			/* -1: no limit */
	long timeout_ms;		/* -1: none */
};

/* HOST:PORT or [ADDR]:PORT; the port may be a service name. */
static int split_hostport(const char *s, char **host, char **port)
{
	struct hostport hp;
	int r = hostport_parse(s, HOSTPORT_SERVICE, &hp);

	if (r < 0)
		return r;
	*host = strdup(hp.host);
	*port = strdup(hp.port);
	return *host && *port ? 0 : -ENOMEM;
}

static bool parse_long(const char *s, long min, long *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min)
		return false;
	*ret = v;
	return true;
}

static int parse_args(int argc, char **argv, struct watch_args *a)
{
	int i;

	a->socket = getenv("NVSRELAY_SOCKET");
	if (!a->socket || !a->socket[0])
		a->socket = DEFAULT_SOCKET;
	a->ack = -1;
	a->count = -1;
	a->timeout_ms = -1;
	a->conn.client = "nvsrelay-cli";
	for (i = 0; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--before") == 0) {
			a->w.full_document_before_change = "whenAvailable";
			continue;
		} else if (strcmp(o, "--bookmarks") == 0) {
			a->bookmarks = true;
			continue;
		} else if (strcmp(o, "--ack") == 0) {
			a->ack = 1;
			continue;
		} else if (strcmp(o, "--no-ack") == 0) {
			a->ack = 0;
			continue;
		} else if (strcmp(o, "--plaintext") == 0) {
			a->conn.plaintext = 1;
			continue;
		}
		if (strncmp(o, "--", 2) != 0 || !v) {
			fprintf(stderr, "nvsrelay: unknown or incomplete option '%s'\n", o);
			return -EINVAL;
		}
		i++;
		if (strcmp(o, "--socket") == 0) {
			a->socket = v;
		} else if (strcmp(o, "--tcp") == 0) {
			free(a->host);
			free(a->port);
			a->host = a->port = NULL;
			if (split_hostport(v, &a->host, &a->port) < 0) {
				fprintf(stderr, "nvsrelay: --tcp expects HOST:PORT or [ADDR]:PORT\n");
				return -EINVAL;
			}
		} else if (strcmp(o, "--cacert") == 0) {
			a->conn.ca_file = v;
		} else if (strcmp(o, "--cert") == 0) {
			a->conn.cert_file = v;
		} else if (strcmp(o, "--key") == 0) {
			a->conn.key_file = v;
		} else if (strcmp(o, "--server-name") == 0) {
			a->conn.server_name = v;
		} else if (strcmp(o, "--token-file") == 0) {
			size_t n;

			free(a->token);
			a->token = fileio_read(v, 65536, NULL);
			if (!a->token) {
				fprintf(stderr, "nvsrelay: cannot read %s: %s\n", v, strerror(errno));
				return -EINVAL;
			}
			a->token[strcspn(a->token, "\r\n")] = '\0';
			n = strlen(a->token);
			while (n > 0 && (a->token[n - 1] == ' ' || a->token[n - 1] == '\t'))
				a->token[--n] = '\0';
			if (n == 0) {
				fprintf(stderr, "nvsrelay: %s holds no token\n", v);
				return -EINVAL;
			}
			a->conn.auth_token = a->token;
		} else if (strcmp(o, "--table") == 0) {
			a->w.table = v;
		} else if (strcmp(o, "--consumer") == 0) {
			a->w.consumer = v;
		} else if (strcmp(o, "--resume-after") == 0) {
			a->w.resume_after = v;
		} else if (strcmp(o, "--start-at") == 0) {
			a->w.start_at_operation_time = v;
		} else if (strcmp(o, "--pipeline") == 0) {
			if (v[0] == '@') {
				free(a->pipeline);
				a->pipeline = fileio_read(v + 1, MAX_PIPELINE_FILE, NULL);
				if (!a->pipeline) {
					fprintf(stderr, "nvsrelay: cannot read %s: %s\n", v + 1, strerror(errno));
					return -EINVAL;
				}
				a->w.pipeline = a->pipeline;
			} else {
				a->w.pipeline = v;
			}
		} else if (strcmp(o, "--count") == 0) {
			if (!parse_long(v, 0, &a->count)) {
				fprintf(stderr, "nvsrelay: --count expects a number >= 0\n");
				return -EINVAL;
			}
		} else if (strcmp(o, "--timeout") == 0) {
			char *end;
			double s;

			errno = 0;
			s = strtod(v, &end);
			if (errno || end == v || *end || !(s > 0) || s > 86400.0 * 365) {
				fprintf(stderr, "nvsrelay: --timeout expects seconds > 0\n");
				return -EINVAL;
			}
			a->timeout_ms = (long)(s * 1000 + 0.5);
		} else {
			fprintf(stderr, "nvsrelay: unknown option '%s'\n", o);
			return -EINVAL;
		}
	}
	if (a->ack < 0)
		a->ack = a->w.consumer != NULL;
	if (!a->host && (a->conn.ca_file || a->conn.cert_file || a->conn.key_file || a->conn.server_name ||
			 a->conn.auth_token || a->conn.plaintext)) {
		fprintf(stderr, "nvsrelay: --cacert, --cert, --key, --server-name, --token-file and "
			"--plaintext need --tcp\n");
		return -EINVAL;
	}
	if (a->conn.key_file && !a->conn.cert_file) {
		fprintf(stderr, "nvsrelay: --key needs --cert\n");
		return -EINVAL;
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_server_error(const struct nvsrelay_error *e)
{
	fprintf(stderr, "nvsrelay: server error %d %s: %s", e->code, e->code_name, e->message);
	if (e->token)
		fprintf(stderr, " (last position %s)", e->token);
	fputc('\n', stderr);
}

static void print_failure(nvsrelay_conn *c, const char *what)
{
	const struct nvsrelay_error *e = nvsrelay_error(c);

	if (e->code)
		print_server_error(e);
	else
		fprintf(stderr, "nvsrelay: %s: %s\n", what, e->message[0] ? e->message : strerror(-nvsrelay_status(c)));
}

/* Prints one event line; false when stdout is gone. */
static bool print_event(const nvsrelay_frame *f)
{
	size_t len;
	const char *json = nvsrelay_event_json(f, &len);

	if (fwrite(json, 1, len, stdout) != len || putchar('\n') == EOF || fflush(stdout) == EOF) {
		fprintf(stderr, "nvsrelay: cannot write to stdout: %s\n", strerror(errno));
		return false;
	}
	return true;
}

static int run_watch(const struct watch_args *a, nvsrelay_conn *c)
{
	long seen = 0;
	/* --timeout counts from the last event: bookmarks do not keep an
	 * idle watcher alive. */
	long long deadline = a->timeout_ms >= 0 ? now_ms() + a->timeout_ms : -1;
	bool acked = false;
	int rc = 0, r;

	r = nvsrelay_watch(c, 1, &a->w);
	if (r == -EINVAL) {
		fprintf(stderr, "nvsrelay: %s\n", nvsrelay_error(c)->message);
		return EX_USAGE;
	}
	if (r < 0) {
		print_failure(c, "watch failed");
		return 1;
	}
	while (!stop && (a->count < 0 || seen < a->count)) {
		const nvsrelay_frame *f;
		int wait = STOP_CHECK_MS;

		if (deadline >= 0) {
			long long left = deadline - now_ms();

			if (left <= 0)
				break;
			if (left < wait)
				wait = (int)left;
		}
		r = nvsrelay_next(c, wait, &f);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			print_failure(c, "connection failed");
			rc = 1;
			break;
		}
		if (r == 0)
			continue;
		switch (nvsrelay_frame_type(f)) {
		case NVSRELAY_FRAME_EVENT:
			if (!print_event(f)) {
				rc = 1;
				goto out;
			}
			seen++;
			if (deadline >= 0)
				deadline = now_ms() + a->timeout_ms;
			if (a->ack) {
				nvsrelay_ack(c, 1, nvsrelay_frame_token(f));
				acked = true;
			}
			break;
		case NVSRELAY_FRAME_BOOKMARK:
			if (a->bookmarks)
				fprintf(stderr, "%s\n", nvsrelay_frame_text(f, NULL));
			/* Everything before the bookmark is printed already. */
			if (a->ack) {
				nvsrelay_ack(c, 1, nvsrelay_frame_token(f));
				acked = true;
			}
			break;
		case NVSRELAY_FRAME_ERROR:
			print_server_error(nvsrelay_frame_error(f));
			rc = 1;
			goto out;
		default:
			break;
		}
	}
out:
	/* The last acknowledgement must reach the server before we go. */
	if (acked && nvsrelay_status(c) == 0 && nvsrelay_flush(c, 5000) < 0) {
		print_failure(c, "acknowledgement not sent");
		rc = 1;
	}
	return rc;
}

static int do_watch(int argc, char **argv)
{
	struct watch_args a;
	nvsrelay_conn *c;
	int rc;

	memset(&a, 0, sizeof(a));
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	}
	if (parse_args(argc, argv, &a) < 0) {
		rc = EX_USAGE;
		goto out;
	}
	c = a.host ? nvsrelay_connect_tcp(a.host, a.port, &a.conn) : nvsrelay_connect_unix(a.socket, &a.conn);
	if (!c) {
		fprintf(stderr, "nvsrelay: out of memory\n");
		rc = 1;
		goto out;
	}
	if (nvsrelay_status(c) < 0) {
		print_failure(c, "cannot connect");
		rc = 1;
	} else {
		rc = run_watch(&a, c);
	}
	nvsrelay_close(c);
out:
	free(a.host);
	free(a.port);
	free(a.token);
	free(a.pipeline);
	return rc;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
		printf("nvsrelay %s\n", NVSRELAY_VERSION);
		return 0;
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "watch") == 0)
		return do_watch(argc - 2, argv + 2);
	if (argc >= 2 && (ctl_is_command(argv[1]) || strcmp(argv[1], "import") == 0)) {
		int (*fn)(int, char **) = strcmp(argv[1], "import") == 0 ? import_main : ctl_main;

		/* The subcommands install their own handlers if they want any. */
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		return fn(argc - 1, argv + 1);
	}
	usage(stderr);
	return EX_USAGE;
}
