/*
 * bench_fan.c - many filtered subscribers over TCP+TLS for the benchmark's
 * fan-out latency phase (tests/bench/bench.pl runs several of these
 * processes side by side).  Each connection is a libnvsrelay client with a
 * client certificate, watching health_events through one of the pipelines
 * given (in turn), and every event it gets is recorded with its arrival
 * time, so the driver can compute each subscriber's latency.  Every K-th
 * connection (--stall-every K) is a slow reader: once its watch is
 * confirmed it never reads again, so the daemon's output to it backs up.
 *
 *   bench_fan --port P --tls DIR --conns N [--pipeline FILE]... [--first I]
 *             [--stall-every K] [--expect E] [--seconds S] [--ready FILE]
 *             [--out FILE]
 *
 * DIR holds ca.crt, client.crt and client.key.  FILE (--ready) is touched
 * once every connection has its watch confirmed.  --expect E ends the run
 * once every reading connection has E events.  --out gets "seq t_ns conn"
 * per event, conn counted from --first.  stdout gets one JSON summary line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"
#include "nvsrelay.h"

#define MAX_PIPES 16

struct fan {
	nvsrelay_conn *c;
	int watching, stalled;
	long long events;
};

static nvsrelay_conn *fan_connect(const char *port, const struct nvsrelay_options *co, const char *pipe)
{
	struct nvsrelay_watch_opts wo = { .table = "health_events", .pipeline = pipe };

	/* A relay busy with handshakes may refuse a burst of them (its budget
	 * for connections not yet authenticated): try again, as a component
	 * would. */
	for (int tries = 0;; tries++) {
		nvsrelay_conn *c = nvsrelay_connect_tcp("127.0.0.1", port, co);

		if (!c)
			bench_die("out of memory");
		if (nvsrelay_status(c) == 0 && nvsrelay_watch(c, 1, &wo) == 0 && nvsrelay_flush(c, 10000) == 0)
			return c;
		if (tries == 100 || bench_stop)
			bench_die("bench_fan: connect: %s", nvsrelay_error(c)->message);
		nvsrelay_close(c);
		bench_sleep_until(bench_now_ns() + 100000000);
	}
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "port", 1, NULL, 'p' }, { "tls", 1, NULL, 't' }, { "conns", 1, NULL, 'N' },
		{ "pipeline", 1, NULL, 'P' }, { "first", 1, NULL, 'f' }, { "stall-every", 1, NULL, 'k' },
		{ "expect", 1, NULL, 'n' }, { "seconds", 1, NULL, 's' }, { "ready", 1, NULL, 'R' },
		{ "out", 1, NULL, 'o' }, { NULL, 0, NULL, 0 }
	};
	const char *port = NULL, *dir = NULL, *ready = NULL, *out = NULL;
	char *pipes[MAX_PIPES], ca[512], cert[512], key[512];
	int npipes = 0, conns = 0, first = 0, stall_every = 0, opt, ep, watching = 0, done = 0, reading = 0;
	long long expect = 0, total = 0, errors = 0, closed = 0;
	double seconds = 3600;
	struct nvsrelay_options co = { .client = "bench_fan", .server_name = "localhost", .timeout_ms = 30000 };
	struct bench_log log = { 0 };
	struct fan *fs;
	uint64_t cpu0 = bench_cpu_ns(), deadline, first_ns = 0, last_ns = 0;

	while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (opt) {
		case 'p': port = optarg; break;
		case 't': dir = optarg; break;
		case 'N': conns = atoi(optarg); break;
		case 'P':
			if (npipes == MAX_PIPES || !(pipes[npipes++] = bench_read_file(optarg, NULL)))
				bench_die("bench_fan: cannot read %s", optarg);
			break;
		case 'f': first = atoi(optarg); break;
		case 'k': stall_every = atoi(optarg); break;
		case 'n': expect = atoll(optarg); break;
		case 's': seconds = atof(optarg); break;
		case 'R': ready = optarg; break;
		case 'o': out = optarg; break;
		default: exit(64);
		}
	}
	if (!port || !dir || conns < 1)
		bench_die("usage: bench_fan --port P --tls DIR --conns N [--pipeline FILE]... [--first I] "
			  "[--stall-every K] [--expect E] [--seconds S] [--ready FILE] [--out FILE]");
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	snprintf(cert, sizeof(cert), "%s/client.crt", dir);
	snprintf(key, sizeof(key), "%s/client.key", dir);
	co.ca_file = ca;
	co.cert_file = cert;
	co.key_file = key;
	bench_on_signals();
	fs = calloc((size_t)conns, sizeof(*fs));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!fs || ep < 0)
		bench_die("out of memory");
	for (int i = 0; i < conns; i++) {
		struct epoll_event e = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i };

		fs[i].c = fan_connect(port, &co, npipes ? pipes[(first + i) % npipes] : NULL);
		fs[i].stalled = stall_every > 0 && (first + i) % stall_every == stall_every - 1;
		reading += !fs[i].stalled;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, nvsrelay_fd(fs[i].c), &e) < 0)
			bench_die("epoll: %s", strerror(errno));
	}
	deadline = bench_now_ns() + (uint64_t)(seconds * 1e9);
	while (!bench_stop && (!expect || done < reading)) {
		struct epoll_event evs[256];
		int n = bench_epoll_wait(ep, evs, 256, deadline);

		if (n < 0)
			break;
		for (int k = 0; k < n; k++) {
			struct fan *f = &fs[evs[k].data.u32];
			const nvsrelay_frame *fr;
			int r = nvsrelay_read_ready(f->c);
			uint64_t now;

			if (r < 0)
				bench_die("bench_fan: connection %u: %s", first + evs[k].data.u32,
					  nvsrelay_error(f->c)->message);
			now = bench_now_ns();
			while (nvsrelay_poll_frame(f->c, &fr) > 0) {
				switch (nvsrelay_frame_type(fr)) {
				case NVSRELAY_FRAME_EVENT: {
					size_t len;
					const char *ev = nvsrelay_event_json(fr, &len);

					bench_log_add(&log, bench_seq_of(ev, len), now, first + (long long)evs[k].data.u32);
					if (!first_ns)
						first_ns = now;
					last_ns = now;
					total++;
					if (++f->events == expect && !f->stalled)
						done++;
					break;
				}
				case NVSRELAY_FRAME_BOOKMARK:
					if (!f->watching) {
						f->watching = 1;
						if (++watching == conns)
							bench_ready(ready);
					}
					break;
				case NVSRELAY_FRAME_ERROR:
					errors++;
					break;
				default:
					break;
				}
			}
			/* A slow reader stops once it is watching: the daemon's
			 * output to it backs up in the socket and its queue.  A
			 * connection the daemon closed has nothing more to say. */
			if ((f->stalled && f->watching) || (r == 0 && (evs[k].events & (EPOLLRDHUP | EPOLLHUP)))) {
				epoll_ctl(ep, EPOLL_CTL_DEL, nvsrelay_fd(f->c), NULL);
				closed += !f->stalled;
			}
		}
	}
	printf("{\"conns\":%d,\"reading\":%d,\"confirmed\":%d,\"events\":%lld,\"complete_conns\":%d,\"errors\":%lld,"
	       "\"closed\":%lld,\"first_ns\":%llu,\"last_ns\":%llu,\"cpu_s\":%.3f}\n", conns, reading, watching, total, done,
	       errors, closed,
	       (unsigned long long)first_ns, (unsigned long long)last_ns, (double)(bench_cpu_ns() - cpu0) / 1e9);
	for (int i = 0; i < conns; i++)
		nvsrelay_close(fs[i].c);
	for (int i = 0; i < npipes; i++)
		free(pipes[i]);
	free(fs);
	close(ep);
	if (bench_log_write(&log, out) < 0)
		bench_die("cannot write %s", out);
	return 0;
}
