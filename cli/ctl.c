/*
 * ctl.c - `nvsrelay status | clients | consumers | reset | drop-consumer |
 * reload`: the command-line
 * side of the daemon's admin socket (daemon/net/admin.c).  main.c calls
 * ctl_main() with argv[0] set to the subcommand.  One JSON line out, one
 * back; printed for people, or as the raw JSON line with --json.
 *
 * Exit status (<sysexits.h>): 0 done, 1 the daemon refused or failed the
 * command, EX_USAGE (64) bad usage, EX_UNAVAILABLE (69) the daemon could not
 * be reached.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"

#define DEFAULT_ADMIN_SOCKET "/run/nvsrelayd/admin.sock"
#define MAX_ANSWER (64u << 20)


static void usage(FILE *f)
{
	fprintf(f,
		"Usage: nvsrelay status    [--admin-socket PATH] [--json]\n"
		"       nvsrelay clients   [--admin-socket PATH] [--json]\n"
		"       nvsrelay consumers [--admin-socket PATH] [--json]\n"
		"       nvsrelay reset CONSUMER [--to head|TOKEN | --at TIME] [--create] [--admin-socket PATH] [--json]\n"
		"       nvsrelay drop-consumer CONSUMER [--admin-socket PATH] [--json]\n"
		"       nvsrelay reload    [--admin-socket PATH] [--json]\n\n"
		"status         version, state (ready, degraded or not ready, and why), generation, live head,\n"
		"               ticker role, connections, subscribers\n"
		"clients        every live subscription: client, peer, consumer, table, pipeline, position, lag\n"
		"consumers      durable consumers: connected, acknowledged token, lag, last acknowledgement\n"
		"reset          moves a durable consumer's stored position to the live head (default), to\n"
		"               TOKEN, or to the end of the last tick at or before TIME (RFC 3339); refused\n"
		"               while the consumer is connected, and for a name resume_tokens does not know\n"
		"               unless --create\n"
		"drop-consumer  deletes a durable consumer's stored position (one gone for good that holds\n"
		"               the changelog back); refused while it is connected\n"
		"reload         reads the configuration again, like SIGHUP\n\n"
		"  --admin-socket PATH  admin socket (default $NVSRELAY_ADMIN_SOCKET or " DEFAULT_ADMIN_SOCKET ")\n"
		"  --json               print the daemon's answer as one JSON line\n"
		"  --timeout SEC        wait at most SEC seconds for the answer (default 30)\n\n"
		"Exit status: 0 done; 1 the daemon refused the command; 64 bad usage;\n"
		"69 the daemon could not be reached.\n");
}

static int connect_admin(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "nvsrelay: admin socket path too long: %s\n", path);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "nvsrelay: cannot connect to %s: %s%s\n", path, strerror(errno),
			errno == EACCES ? " (root or the daemon's user only)" : "");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sends one request line and reads one answer line (malloc'd, without the
 * newline), or NULL with a message printed. */
static char *exchange(int fd, const char *req, double timeout)
{
	size_t len = strlen(req), off = 0, cap = 0, n = 0;
	double deadline = now_s() + timeout;
	char *buf = NULL, *nl;

	while (off < len) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "nvsrelay: sending to the admin socket: %s\n", strerror(errno));
			return NULL;
		}
		off += (size_t)w;
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		double left = deadline - now_s();
		ssize_t r;
		int pr;

		if (left <= 0) {
			fprintf(stderr, "nvsrelay: no answer from the daemon within %.0f s\n", timeout);
			break;
		}
		pr = poll(&p, 1, (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		if (cap - n < 4096) {
			char *nb;

			if (cap >= MAX_ANSWER || !(nb = realloc(buf, cap ? 2 * cap : 65536))) {
				fprintf(stderr, "nvsrelay: answer too large\n");
				break;
			}
			buf = nb;
			cap = cap ? 2 * cap : 65536;
		}
		r = recv(fd, buf + n, cap - n - 1, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "nvsrelay: the daemon closed the admin connection%s%s\n",
				r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
			break;
		}
		n += (size_t)r;
		buf[n] = '\0';
		if ((nl = memchr(buf, '\n', n))) {
			*nl = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

/* Prints a string from the daemon without letting it drive the terminal. */
static void put_safe(const char *s, int width)
{
	int n = 0;

	for (; s && *s; s++, n++)
		putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
	for (; n < width; n++)
		putchar(' ');
}

static const char *str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *key, bool *present)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (present)
		*present = cJSON_IsNumber(v);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *yesno(const cJSON *o, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)) ? "yes" : "no";
}

static void print_status(const cJSON *a)
{
	double up = num(a, "uptime_s", NULL);

	printf("version         %s\n", str(a, "version") ? str(a, "version") : "?");
	printf("pid             %.0f\n", num(a, "pid", NULL));
	printf("generation      %s\n", str(a, "generation") ? str(a, "generation") : "?");
	printf("head            %s\n", str(a, "head") ? str(a, "head") : "(not known yet)");
	printf("ready           %s\n", yesno(a, "ready"));
	printf("state           %s%s%s\n", str(a, "state") ? str(a, "state") : yesno(a, "ready"),
	       str(a, "reason") ? ": " : "", str(a, "reason") ? str(a, "reason") : "");
	if (str(a, "upstream"))
		printf("upstream        %s (%s, %.0f reconnects)\n", str(a, "upstream"),
		       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "upstream_up")) ? "up" : "down",
		       num(a, "upstream_reconnects", NULL));
	printf("ticker leader   %s\n", yesno(a, "ticker_leader"));
	printf("connections     %.0f of %.0f up\n", num(a, "connections_up", NULL), num(a, "connections", NULL));
	printf("subscribers     %.0f\n", num(a, "subscribers", NULL));
	printf("clients         %.0f\n", num(a, "clients", NULL));
	printf("uptime          %.0fd %02.0f:%02.0f:%02.0f\n", (double)(long long)(up / 86400),
	       (double)((long long)up % 86400 / 3600), (double)((long long)up % 3600 / 60), (double)((long long)up % 60));
}

static void print_consumers(const cJSON *a)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(a, "consumers"), *e;
	int w = 8;

	cJSON_ArrayForEach(e, arr) {
		int l = str(e, "name") ? (int)strlen(str(e, "name")) : 0;

		if (l > w)
			w = l > 48 ? 48 : l;
	}
	put_safe("CONSUMER", w);
	printf("  CONNECTED  LAG_EVENTS  LAG_SECONDS  LAST_ACK                  TOKEN\n");
	cJSON_ArrayForEach(e, arr) {
		bool has_ev, has_s;
		double ev = num(e, "lag_events", &has_ev), s = num(e, "lag_seconds", &has_s);
		char evb[32], sb[32];

		if (has_ev)
			snprintf(evb, sizeof(evb), "%.0f", ev);
		else
			snprintf(evb, sizeof(evb), "-");
		if (has_s)
			snprintf(sb, sizeof(sb), "%.1f", s);
		else
			snprintf(sb, sizeof(sb), "-");
		put_safe(str(e, "name"), w);
		printf("  %-9s  %10s  %11s  %-24s  %s\n", yesno(e, "connected"), evb, sb,
		       str(e, "last_ack") ? str(e, "last_ack") : "-", str(e, "token") ? str(e, "token") : "-");
	}
}

static void print_clients(const cJSON *a)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(a, "clients"), *e;

	printf("%-8s %-24s %-5s %-20s %-18s %-8s %-40s %10s %9s %s\n", "CLIENT", "PEER", "SID", "CONSUMER", "TABLE",
	       "STATE", "POSITION", "LAG_EVENTS", "LAG_SECS", "PIPELINE");
	cJSON_ArrayForEach(e, arr) {
		put_safe(str(e, "client"), 8);
		putchar(' ');
		put_safe(str(e, "peer"), 24);
		printf(" %-5.0f ", num(e, "sid", NULL));
		put_safe(str(e, "consumer") ? str(e, "consumer") : "-", 20);
		putchar(' ');
		put_safe(str(e, "table"), 18);
		putchar(' ');
		put_safe(str(e, "state"), 8);
		putchar(' ');
		put_safe(str(e, "position") ? str(e, "position") : "-", 40);
		printf(" %9.0f%s %9.1f ", num(e, "lag_events", NULL),
		       cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e, "lag_exact")) ? "+" : " ",
		       num(e, "lag_seconds", NULL));
		put_safe(str(e, "pipeline") ? str(e, "pipeline") : "-", 0);
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "before")))
			printf(" (+before)");
		putchar('\n');
	}
}

static void print_drop(const cJSON *a)
{
	printf("consumer ");
	put_safe(str(a, "consumer"), 0);
	printf(" dropped (its position was %s)\n", str(a, "token") ? str(a, "token") : "not set");
}

static void print_reset(const cJSON *a)
{
	printf("consumer ");
	put_safe(str(a, "consumer"), 0);
	printf(" now resumes after %s (was %s)\n", str(a, "token") ? str(a, "token") : "?",
	       str(a, "previous") ? str(a, "previous") : "not stored");
}

static void print_reload(const cJSON *a)
{
	const char *ap = str(a, "applied"), *rs = str(a, "restart_needed");

	printf("configuration reloaded\n");
	printf("applied         %s\n", ap && *ap ? ap : "(nothing changed)");
	if (rs && *rs)
		printf("restart needed  %s\n", rs);
}

bool ctl_is_command(const char *s)
{
	static const char *const cmds[] = { "status", "clients", "consumers", "reset", "drop-consumer", "reload" };

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(s, cmds[i]) == 0)
			return true;
	return false;
}

int ctl_main(int argc, char **argv)
{
	const char *cmd = argc > 0 ? argv[0] : "";
	const char *path = getenv("NVSRELAY_ADMIN_SOCKET"), *consumer = NULL, *to = NULL, *at = NULL;
	bool named = strcmp(cmd, "reset") == 0 || strcmp(cmd, "drop-consumer") == 0;
	double timeout = 30;
	bool json = false, create = false;
	cJSON *req, *ans;
	char *line, *text;
	int i, fd, rc;

	if (!path || !*path)
		path = DEFAULT_ADMIN_SOCKET;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--admin-socket") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(a, "--json") == 0) {
			json = true;
		} else if (strcmp(a, "--timeout") == 0 && i + 1 < argc) {
			char *end;

			timeout = strtod(argv[++i], &end);
			if (*end || !(timeout > 0)) {
				fprintf(stderr, "nvsrelay: --timeout expects seconds, got '%s'\n", argv[i]);
				return EX_USAGE;
			}
		} else if (strcmp(a, "--to") == 0 && i + 1 < argc && strcmp(cmd, "reset") == 0 && !at) {
			to = argv[++i];
		} else if (strcmp(a, "--at") == 0 && i + 1 < argc && strcmp(cmd, "reset") == 0 && !to) {
			at = argv[++i];
		} else if (strcmp(a, "--create") == 0 && strcmp(cmd, "reset") == 0) {
			create = true;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (a[0] != '-' && named && !consumer) {
			consumer = a;
		} else {
			fprintf(stderr, "nvsrelay %s: unknown or incomplete argument '%s'\n", cmd, a);
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (named && !consumer) {
		fprintf(stderr, "nvsrelay %s: which consumer?\n", cmd);
		usage(stderr);
		return EX_USAGE;
	}
	if (!ctl_is_command(cmd)) {
		usage(stderr);
		return EX_USAGE;
	}

	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "cmd", cmd);
	if (consumer)
		cJSON_AddStringToObject(req, "consumer", consumer);
	if (to)
		cJSON_AddStringToObject(req, "to", to);
	if (at)
		cJSON_AddStringToObject(req, "at", at);
	if (create)
		cJSON_AddTrueToObject(req, "create");
	text = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (!text) {
		fprintf(stderr, "nvsrelay: out of memory\n");
		return 1;
	}
	line = malloc(strlen(text) + 2);
	if (!line) {
		free(text);
		return 1;
	}
	sprintf(line, "%s\n", text);
	free(text);

	if ((fd = connect_admin(path)) < 0) {
		free(line);
		return EX_UNAVAILABLE;
	}
	text = exchange(fd, line, timeout);
	close(fd);
	free(line);
	if (!text)
		return EX_UNAVAILABLE;
	ans = cJSON_Parse(text);
	if (!cJSON_IsObject(ans)) {
		fprintf(stderr, "nvsrelay: the daemon's answer is not a JSON object\n");
		cJSON_Delete(ans);
		free(text);
		return 1;
	}
	if (!cJSON_GetObjectItemCaseSensitive(ans, "ok") && cJSON_GetObjectItemCaseSensitive(ans, "op")) {
		/* The subscriber protocol answers with frames ("op"), not "ok". */
		fprintf(stderr, "nvsrelay %s: %s is a subscriber socket, not the admin socket; give the daemon's "
			"admin_socket with --admin-socket or $NVSRELAY_ADMIN_SOCKET (default " DEFAULT_ADMIN_SOCKET ")\n",
			cmd, path);
		rc = EX_USAGE;
	} else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ans, "ok"))) {
		const char *err = str(ans, "error");

		if (json)
			puts(text);
		fprintf(stderr, "nvsrelay %s: ", cmd);
		for (const char *p = err ? err : "failed"; *p; p++)
			fputc((unsigned char)*p < 0x20 ? '?' : *p, stderr);
		fputc('\n', stderr);
		rc = 1;
	} else {
		if (json)
			puts(text);
		else if (strcmp(cmd, "status") == 0)
			print_status(ans);
		else if (strcmp(cmd, "consumers") == 0)
			print_consumers(ans);
		else if (strcmp(cmd, "clients") == 0)
			print_clients(ans);
		else if (strcmp(cmd, "drop-consumer") == 0)
			print_drop(ans);
		else if (strcmp(cmd, "reset") == 0)
			print_reset(ans);
		else
			print_reload(ans);
		rc = 0;
	}
	cJSON_Delete(ans);
	free(text);
	return fflush(stdout) == 0 ? rc : 1;
}
