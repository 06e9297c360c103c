/*
 * bench_sub.c - nvsrelayd subscribers for the benchmark, over the daemon's
 * Unix socket.  Run by tests/bench/bench.pl.
 *
 * Two ways to read, both speaking protocol v1:
 * - library (default): libnvsrelay (nvsrelay.h), every frame parsed, as an
 *   application would; used for latency and the restart test (a durable
 *   consumer that acknowledges every event and reconnects on its own);
 * - --raw: N connections in one epoll loop, split into lines by the
 *   protocol's frame reader (proto/frame.c) and classified by their
 *   prefix, so that throughput and fan-out measure the daemon, not JSON
 *   decoding in the client.  With --consumer and --ack each connection is
 *   a durable consumer of its own (NAME-i) that acknowledges, after each
 *   read, the last event it got (as a consumer handling what arrived
 *   together would).
 *
 *   bench_sub --socket P [--raw] [--conns N] [--consumer NAME] [--ack]
 *             [--resume-after TOKEN] [--reconnect] [--expect N] [--seconds S]
 *             [--ready FILE] [--token-out FILE] [--out FILE]
 *
 * FILE gets "seq t_ns 0" per event of the first connection.  --expect N
 * ends the run once every connection has N distinct events; --token-out
 * writes the first bookmark's token (a position to resume from later).
 * stdout gets one JSON summary line.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench.h"
#include "frame.h"
#include "nvsrelay.h"

struct opts {
	const char *socket, *consumer, *resume_after, *ready, *token_out, *out;
	int raw, conns, ack, reconnect;
	long long expect;
	double seconds;
};

struct rawconn {
	int fd;
	FrameReader *fr;
	int watching;
	long long events;
	uint64_t done_ns;
	char ack_tok[64];	/* the last event's token, not yet acknowledged */
};

static struct bench_log g_log;
static struct bench_seen g_seen;
static uint64_t g_first_ns, g_last_ns;
/* Tokens compare as strings in delivery order: one that does not grow
 * is an ordering violation (a duplicate after a reconnect is not). */
static char g_last_tok[64];
static long long g_disorder;

static void note_token(const char *tok, int after_reconnect)
{
	int c;

	if (!tok)
		return;
	c = strcmp(tok, g_last_tok);
	if (c < 0 && !after_reconnect)
		g_disorder++;
	if (c > 0)
		snprintf(g_last_tok, sizeof(g_last_tok), "%s", tok);
}

static void write_token(const char *path, const char *tok)
{
	FILE *f;

	if (!path || !tok)
		return;
	f = fopen(path, "w");
	if (!f)
		bench_die("cannot write %s", path);
	fprintf(f, "%s\n", tok);
	fclose(f);
}

static void note_event(long long seq, uint64_t now, int record)
{
	if (!g_first_ns)
		g_first_ns = now;
	g_last_ns = now;
	if (record) {
		bench_log_add(&g_log, seq, now, 0);
		bench_seen_add(&g_seen, seq);
	}
}

/* --- library mode ------------------------------------------------------ */

static nvsrelay_conn *lib_connect(const struct opts *o, uint64_t deadline)
{
	struct nvsrelay_options co = { .client = "bench_sub", .timeout_ms = 5000 };
	struct nvsrelay_watch_opts wo = { .table = "health_events", .consumer = o->consumer,
					  .resume_after = o->resume_after };

	for (;;) {
		nvsrelay_conn *c = nvsrelay_connect_unix(o->socket, &co);

		if (!c)
			bench_die("out of memory");
		if (nvsrelay_status(c) == 0 && nvsrelay_watch(c, 1, &wo) == 0)
			return c;
		if (!o->reconnect || bench_stop || bench_now_ns() >= deadline)
			bench_die("bench_sub: %s", nvsrelay_error(c)->message);
		nvsrelay_close(c);
		bench_sleep_until(bench_now_ns() + 10000000);
	}
}

static int run_lib(const struct opts *o, uint64_t deadline)
{
	nvsrelay_conn *c = lib_connect(o, deadline);
	int watching = 0, nrec = 0;
	uint64_t down_ns = 0, watch_ns = 0;
	char recon[4096] = "";
	size_t rl = 0;

	while (!bench_stop && (o->expect == 0 || g_seen.distinct < o->expect)) {
		const nvsrelay_frame *f;
		uint64_t now = bench_now_ns();
		int r;

		if (now >= deadline)
			break;
		r = nvsrelay_next(c, (int)((deadline - now) / 1000000 + 1), &f);
		if (r == 0 || r == -EINTR)
			continue;
		if (r < 0) {
			if (!o->reconnect)
				bench_die("bench_sub: %s", nvsrelay_error(c)->message);
			down_ns = bench_now_ns();
			nvsrelay_close(c);
			c = lib_connect(o, deadline);
			watching = 0;
			continue;
		}
		now = bench_now_ns();
		switch (nvsrelay_frame_type(f)) {
		case NVSRELAY_FRAME_EVENT: {
			size_t len;
			const char *ev = nvsrelay_event_json(f, &len);

			note_event(bench_seq_of(ev, len), now, 1);
			note_token(nvsrelay_frame_token(f), o->reconnect);
			if (down_ns && nrec < 16) {
				rl += (size_t)snprintf(recon + rl, sizeof(recon) - rl,
						       "%s{\"down_ns\":%llu,\"watch_ns\":%llu,\"event_ns\":%llu}",
						       nrec ? "," : "", (unsigned long long)down_ns,
						       (unsigned long long)watch_ns, (unsigned long long)now);
				nrec++;
				down_ns = 0;
			}
			if (o->ack)
				nvsrelay_ack(c, 1, nvsrelay_frame_token(f));
			break;
		}
		case NVSRELAY_FRAME_BOOKMARK:
			if (!watching) {
				watching = 1;
				watch_ns = now;
				if (!g_first_ns) {
					write_token(o->token_out, nvsrelay_frame_token(f));
					bench_ready(o->ready);
				}
			}
			if (o->ack && o->expect == 0)
				nvsrelay_ack(c, 1, nvsrelay_frame_token(f));
			break;
		case NVSRELAY_FRAME_ERROR: {
			const struct nvsrelay_error *e = nvsrelay_frame_error(f);

			bench_die("bench_sub: error frame %d %s: %s", e->code, e->code_name, e->message);
		}
		default:
			break;
		}
	}
	if (o->ack)
		nvsrelay_flush(c, 2000);
	nvsrelay_close(c);
	printf("{\"conns\":1,\"events\":%zu,\"distinct\":%lld,\"duplicates\":%lld,\"disorder\":%lld,"
	       "\"first_ns\":%llu,\"last_ns\":%llu,\"reconnects\":[%s]", g_log.n, g_seen.distinct, g_seen.dups, g_disorder,
	       (unsigned long long)g_first_ns, (unsigned long long)g_last_ns, recon);
	return 0;
}

/* --- raw mode ----------------------------------------------------------- */

static int raw_connect(const struct opts *o, int idx)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[1024];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

	if (fd < 0)
		bench_die("socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", o->socket);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		bench_die("connect %s: %s", o->socket, strerror(errno));
	n = snprintf(buf, sizeof(buf), "{\"op\":\"hello\",\"v\":1,\"client\":\"bench_sub\"}\n"
		     "{\"op\":\"watch\",\"sid\":1,\"table\":\"health_events\"");
	if (o->resume_after)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"resumeAfter\":{\"_data\":\"%s\"}",
			      o->resume_after);
	if (o->consumer && o->conns > 1)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"consumer\":\"%s-%d\"", o->consumer, idx);
	else if (o->consumer)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ",\"consumer\":\"%s\"", o->consumer);
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "}\n");
	if (n <= 0 || (size_t)n >= sizeof(buf) || send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
		bench_die("sending hello/watch failed");
	return fd;
}

static const char *token_in(const char *line, size_t len, char *tok, size_t cap)
{
	static const char key[] = "\"_data\":\"";
	const char *p = memmem(line, len, key, sizeof(key) - 1), *e;

	if (!p)
		return NULL;
	p += sizeof(key) - 1;
	e = memchr(p, '"', len - (size_t)(p - line));
	if (!e || (size_t)(e - p) >= cap)
		return NULL;
	memcpy(tok, p, (size_t)(e - p));
	tok[e - p] = '\0';
	return tok;
}

static int run_raw(const struct opts *o, uint64_t deadline)
{
	struct rawconn *cs = calloc((size_t)o->conns, sizeof(*cs));
	struct epoll_event evs[256];
	int ep = epoll_create1(EPOLL_CLOEXEC), i, watching = 0, done = 0;
	long long total = 0, acks = 0;

	if (!cs || ep < 0)
		bench_die("out of memory");
	for (i = 0; i < o->conns; i++) {
		struct epoll_event e = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

		cs[i].fd = raw_connect(o, i);
		cs[i].fr = frame_reader_new(16u << 20);
		if (!cs[i].fr || epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &e) < 0)
			bench_die("epoll: %s", strerror(errno));
	}
	while (!bench_stop && done < o->conns) {
		uint64_t now;
		int n = bench_epoll_wait(ep, evs, 256, deadline);

		if (n < 0)
			break;
		for (int k = 0; k < n; k++) {
			struct rawconn *c = &cs[evs[k].data.u32];
			const char *line;
			size_t len;
			char *buf;
			ssize_t r;

			if (frame_reader_space(c->fr, 65536, &buf, &len) < 0)
				bench_die("out of memory");
			r = recv(c->fd, buf, len, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (r <= 0)
				bench_die("bench_sub: connection %u closed by the daemon", evs[k].data.u32);
			frame_reader_commit(c->fr, (size_t)r);
			now = bench_now_ns();
			while (frame_reader_next(c->fr, &line, &len) > 0) {
				if (len > 13 && memcmp(line, "{\"op\":\"event\"", 13) == 0) {
					int first = c == &cs[0];

					c->events++;
					total++;
					if (o->ack && !token_in(line, len, c->ack_tok, sizeof(c->ack_tok)))
						c->ack_tok[0] = '\0';
					note_event(first ? bench_seq_of(line, len) : -1, now, first);
					if (first) {
						char tok[64];

						note_token(token_in(line, len, tok, sizeof(tok)), 0);
					}
					if (o->expect && c->events == o->expect) {
						c->done_ns = now;
						done++;
					}
				} else if (len > 16 && memcmp(line, "{\"op\":\"bookmark\"", 16) == 0) {
					if (!c->watching) {
						char tok[64];

						c->watching = 1;
						if (c == &cs[0])
							write_token(o->token_out, token_in(line, len, tok, sizeof(tok)));
						if (++watching == o->conns)
							bench_ready(o->ready);
					}
				} else if (len > 13 && memcmp(line, "{\"op\":\"error\"", 13) == 0) {
					bench_die("bench_sub: %.*s", (int)(len > 400 ? 400 : len), line);
				}
			}
			if (c->ack_tok[0]) {
				char ack[160];
				int an = snprintf(ack, sizeof(ack), "{\"op\":\"ack\",\"sid\":1,\"token\":{\"_data\":\"%s\"}}\n",
						  c->ack_tok);

				/* A full socket buffer only delays the position: the next
				 * read's ack carries a later token. */
				if (an > 0 && (size_t)an < sizeof(ack) &&
				    send(c->fd, ack, (size_t)an, MSG_NOSIGNAL | MSG_DONTWAIT) == an)
					acks++;
				c->ack_tok[0] = '\0';
			}
		}
	}
	printf("{\"conns\":%d,\"acks\":%lld,\"events\":%lld,\"complete_conns\":%d,\"distinct\":%lld,\"duplicates\":%lld,"
	       "\"disorder\":%lld,\"first_ns\":%llu,\"last_ns\":%llu", o->conns, acks, total, done, g_seen.distinct,
	       g_seen.dups, g_disorder,
	       (unsigned long long)g_first_ns, (unsigned long long)g_last_ns);
	for (i = 0; i < o->conns; i++) {
		close(cs[i].fd);
		frame_reader_free(cs[i].fr);
	}
	free(cs);
	close(ep);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "socket", 1, NULL, 'S' }, { "raw", 0, NULL, 'r' }, { "conns", 1, NULL, 'N' },
		{ "consumer", 1, NULL, 'C' }, { "ack", 0, NULL, 'a' }, { "resume-after", 1, NULL, 'A' },
		{ "reconnect", 0, NULL, 'x' }, { "expect", 1, NULL, 'n' }, { "seconds", 1, NULL, 's' },
		{ "ready", 1, NULL, 'R' }, { "token-out", 1, NULL, 'T' }, { "out", 1, NULL, 'o' },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o = { .conns = 1, .seconds = 3600 };
	uint64_t cpu0, deadline;
	int c;

	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'S': o.socket = optarg; break;
		case 'r': o.raw = 1; break;
		case 'N': o.conns = atoi(optarg); break;
		case 'C': o.consumer = optarg; break;
		case 'a': o.ack = 1; break;
		case 'A': o.resume_after = optarg; break;
		case 'x': o.reconnect = 1; break;
		case 'n': o.expect = atoll(optarg); break;
		case 's': o.seconds = atof(optarg); break;
		case 'R': o.ready = optarg; break;
		case 'T': o.token_out = optarg; break;
		case 'o': o.out = optarg; break;
		default: exit(64);
		}
	}
	if (!o.socket || o.conns < 1 || (!o.raw && o.conns != 1))
		bench_die("usage: bench_sub --socket P [--raw] [--conns N] [--consumer NAME] [--ack] "
			  "[--resume-after TOKEN] [--reconnect] [--expect N] [--seconds S] [--ready F] "
			  "[--token-out F] [--out F]");
	bench_on_signals();
	cpu0 = bench_cpu_ns();
	deadline = bench_now_ns() + (uint64_t)(o.seconds * 1e9);
	if (o.raw)
		run_raw(&o, deadline);
	else
		run_lib(&o, deadline);
	printf(",\"cpu_s\":%.3f}\n", (double)(bench_cpu_ns() - cpu0) / 1e9);
	if (bench_log_write(&g_log, o.out) < 0)
		bench_die("cannot write %s", o.out);
	return 0;
}
