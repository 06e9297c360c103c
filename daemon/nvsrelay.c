/*
 * nvsrelay.c - the command-line tool.  `nvsrelay watch` subscribes over the
 * daemon's Unix socket and prints each change event as one JSON line; with
 * --consumer it acknowledges each event after printing it, so the durable
 * position only moves past what was actually written out.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cJSON.h>

#include "frame.h"
#include "token.h"

#define DEFAULT_SOCKET "/run/nvsrelayd/nvsrelayd.sock"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: nvsrelay watch [--socket PATH] [--table TABLE] [--consumer NAME]\n"
		"                      [--resume-after TOKEN] [--before] [--count N] [--timeout SEC]\n"
		"                      [--bookmarks]\n"
		"       nvsrelay --version\n\n"
		"watch prints change events as NDJSON on stdout.\n"
		"  --socket PATH         daemon socket (default $NVSRELAY_SOCKET or " DEFAULT_SOCKET ")\n"
		"  --table TABLE         health_events (default) or maintenance_events\n"
		"  --consumer NAME       durable consumer: resume from its stored position and\n"
		"                        acknowledge each event after printing it\n"
		"  --resume-after TOKEN  start after this 40-hex-digit token\n"
		"  --before              include fullDocumentBeforeChange on updates\n"
		"  --count N             exit after N events\n"
		"  --timeout SEC         exit after SEC seconds without a frame\n"
		"  --bookmarks           print bookmark frames too (on stderr)\n");
}

static int send_all(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_json(int fd, cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);
	int r;

	cJSON_Delete(o);
	if (!s)
		return -ENOMEM;
	r = send_all(fd, s, strlen(s));
	if (r == 0)
		r = send_all(fd, "\n", 1);
	free(s);
	return r;
}

static int do_watch(int argc, char **argv)
{
	const char *sock = getenv("NVSRELAY_SOCKET"), *table = "health_events", *consumer = NULL;
	const char *resume = NULL;
	bool before = false, bookmarks = false;
	long count = -1, seen = 0;
	int timeout_ms = -1, fd, i, rc = 1;
	struct sockaddr_un sa;
	FrameReader *fr = NULL;
	cJSON *o;
	struct token t;

	if (!sock)
		sock = DEFAULT_SOCKET;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--before") == 0) {
			before = true;
			continue;
		}
		if (strcmp(a, "--bookmarks") == 0) {
			bookmarks = true;
			continue;
		}
		if (!v) {
			fprintf(stderr, "nvsrelay: unknown or incomplete option '%s'\n", a);
			usage(stderr);
			return 64;
		}
		i++;
		if (strcmp(a, "--socket") == 0)
			sock = v;
		else if (strcmp(a, "--table") == 0)
			table = v;
		else if (strcmp(a, "--consumer") == 0)
			consumer = v;
		else if (strcmp(a, "--resume-after") == 0)
			resume = v;
		else if (strcmp(a, "--count") == 0)
			count = strtol(v, NULL, 10);
		else if (strcmp(a, "--timeout") == 0)
			timeout_ms = (int)(strtod(v, NULL) * 1000);
		else {
			fprintf(stderr, "nvsrelay: unknown option '%s'\n", a);
			usage(stderr);
			return 64;
		}
	}
	if (resume && token_parse(resume, strlen(resume), &t) < 0) {
		fprintf(stderr, "nvsrelay: --resume-after expects a 40-hex-digit token\n");
		return 64;
	}
	if (strlen(sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "nvsrelay: socket path too long\n");
		return 64;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "nvsrelay: cannot connect to %s: %s\n", sock, strerror(errno));
		goto out;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "op", "hello");
	cJSON_AddNumberToObject(o, "v", 1);
	cJSON_AddStringToObject(o, "client", "nvsrelay-cli");
	send_json(fd, o);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "op", "watch");
	cJSON_AddNumberToObject(o, "sid", 1);
	cJSON_AddStringToObject(o, "table", table);
	if (consumer)
		cJSON_AddStringToObject(o, "consumer", consumer);
	if (resume)
		cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "resumeAfter"), "_data", resume);
	if (before)
		cJSON_AddStringToObject(o, "fullDocumentBeforeChange", "whenAvailable");
	if (send_json(fd, o) < 0) {
		fprintf(stderr, "nvsrelay: send failed: %s\n", strerror(errno));
		goto out;
	}
	fr = frame_reader_new(64u << 20);
	if (!fr)
		goto out;
	while (!stop && (count < 0 || seen < count)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		const char *line;
		size_t len, room;
		char *buf;
		int r = poll(&p, 1, timeout_ms);

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			rc = 0;   /* quiet for --timeout: done */
			goto out;
		}
		if (frame_reader_space(fr, 65536, &buf, &room) < 0)
			goto out;
		ssize_t n = recv(fd, buf, room, 0);
		if (n <= 0) {
			fprintf(stderr, "nvsrelay: connection closed by the server\n");
			goto out;
		}
		frame_reader_commit(fr, (size_t)n);
		while ((r = frame_reader_next(fr, &line, &len)) != 0 && (count < 0 || seen < count)) {
			cJSON *m, *ev, *opv, *id;
			if (r < 0)
				continue;
			m = cJSON_ParseWithLength(line, len);
			opv = cJSON_GetObjectItemCaseSensitive(m, "op");
			if (!cJSON_IsString(opv)) {
				cJSON_Delete(m);
				continue;
			}
			if (strcmp(opv->valuestring, "event") == 0) {
				ev = cJSON_GetObjectItemCaseSensitive(m, "event");
				char *s = cJSON_PrintUnformatted(ev);
				if (s) {
					fputs(s, stdout);
					fputc('\n', stdout);
					fflush(stdout);
					free(s);
				}
				seen++;
				id = cJSON_GetObjectItemCaseSensitive(ev, "_id");
				if (consumer && id) {
					cJSON *ack = cJSON_CreateObject();
					cJSON_AddStringToObject(ack, "op", "ack");
					cJSON_AddNumberToObject(ack, "sid", 1);
					cJSON_AddItemToObject(ack, "token", cJSON_Duplicate(id, 1));
					send_json(fd, ack);
				}
			} else if (strcmp(opv->valuestring, "bookmark") == 0) {
				if (bookmarks)
					fprintf(stderr, "%.*s\n", (int)len, line);
				if (consumer) {
					cJSON *ack = cJSON_CreateObject();
					cJSON_AddStringToObject(ack, "op", "ack");
					cJSON_AddNumberToObject(ack, "sid", 1);
					cJSON_AddItemToObject(ack, "token",
							      cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(m, "token"), 1));
					send_json(fd, ack);
				}
			} else if (strcmp(opv->valuestring, "error") == 0) {
				fprintf(stderr, "nvsrelay: server error: %.*s\n", (int)len, line);
				cJSON_Delete(m);
				goto out;
			}
			cJSON_Delete(m);
		}
	}
	rc = 0;
out:
	frame_reader_free(fr);
	if (fd >= 0)
		close(fd);
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
	usage(stderr);
	return 64;
}
