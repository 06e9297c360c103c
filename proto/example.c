/*
 * example.c - a libnvsrelay subscriber driven by its own poll() loop, the
 * way a program with an event loop (libev, libuv, epoll) uses the library.
 * Not part of the library: it documents the event-loop API and is built
 * and run by tests/integ/81-libnvsrelay.t against the installed library.
 *
 *   cc example.c $(pkg-config --cflags --libs nvsrelay) -o nvsrelay-example
 *   nvsrelay-example unix /run/nvsrelayd/nvsrelayd.sock 10 [CONSUMER]
 *   nvsrelay-example tcp HOST PORT CA CERT KEY TOKEN 10 [CONSUMER]
 *
 * Prints "watching <token>" once the subscription is confirmed, then
 * "<operationType> <token>" per event and acknowledges it (with a consumer,
 * that moves its stored position), then "done <n>" after n events.  Exit status 0, 1 when the connection fails, 2 on a server error.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nvsrelay.h>

static int fail(nvsrelay_conn *c, const char *what)
{
	fprintf(stderr, "%s: %s\n", what, nvsrelay_error(c)->message);
	nvsrelay_close(c);
	return 1;
}

int main(int argc, char **argv)
{
	struct nvsrelay_options o = { .client = "nvsrelay-example", .timeout_ms = 5000 };
	struct nvsrelay_watch_opts w = { .table = "health_events" };
	nvsrelay_conn *c;
	long want, got = 0;
	int i, watching = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);

	if (argc >= 4 && strcmp(argv[1], "unix") == 0) {
		i = 3;
		c = nvsrelay_connect_unix(argv[2], &o);
	} else if (argc >= 9 && strcmp(argv[1], "tcp") == 0) {
		o.ca_file = argv[4];
		o.cert_file = argv[5];
		o.key_file = argv[6];
		o.auth_token = argv[7][0] ? argv[7] : NULL;
		i = 8;
		c = nvsrelay_connect_tcp(argv[2], argv[3], &o);
	} else {
		fprintf(stderr, "usage: %s unix PATH COUNT [CONSUMER]\n"
			"       %s tcp HOST PORT CA CERT KEY TOKEN COUNT [CONSUMER]\n", argv[0], argv[0]);
		return 64;
	}
	if (!c)
		return 1;
	if (nvsrelay_status(c) < 0)
		return fail(c, "connect");
	want = strtol(argv[i], NULL, 10);
	w.consumer = i + 1 < argc ? argv[i + 1] : NULL;
	if (nvsrelay_watch(c, 7, &w) < 0)
		return fail(c, "watch");

	while (got < want) {
		struct pollfd p = { .fd = nvsrelay_fd(c), .events = POLLIN };
		const nvsrelay_frame *f;
		int r;

		if (nvsrelay_want_write(c))
			p.events |= POLLOUT;
		if (poll(&p, 1, 10000) <= 0) {
			fprintf(stderr, "no frame for 10 s\n");
			nvsrelay_close(c);
			return 1;
		}
		if ((p.revents & POLLOUT) && nvsrelay_write_ready(c) < 0)
			return fail(c, "write");
		if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (nvsrelay_read_ready(c) < 0)
			return fail(c, "read");
		/* Take every complete frame: the next read may move the buffer. */
		while (got < want && (r = nvsrelay_poll_frame(c, &f)) != 0) {
			if (r < 0)
				return fail(c, "frame");
			if (nvsrelay_frame_type(f) == NVSRELAY_FRAME_ERROR) {
				const struct nvsrelay_error *e = nvsrelay_frame_error(f);

				printf("error %d %s: %s\n", e->code, e->code_name, e->message);
				nvsrelay_close(c);
				return 2;
			}
			if (nvsrelay_frame_type(f) == NVSRELAY_FRAME_BOOKMARK && !watching) {
				/* The first bookmark confirms the subscription. */
				printf("watching %s\n", nvsrelay_frame_token(f));
				watching = 1;
			}
			if (nvsrelay_frame_type(f) != NVSRELAY_FRAME_EVENT || nvsrelay_frame_sid(f) != 7)
				continue;
			printf("%s %s\n", nvsrelay_event_operation_type(f), nvsrelay_frame_token(f));
			nvsrelay_ack(c, 7, nvsrelay_frame_token(f));
			got++;
		}
	}
	/* The last acknowledgement should reach the server before we go. */
	if (nvsrelay_flush(c, 5000) < 0)
		return fail(c, "flush");
	printf("done %ld\n", got);
	nvsrelay_close(c);
	return 0;
}
