/*
 * bench.h - helpers shared by the benchmark clients in tests/bench/ (the
 * writer, the LISTEN floor, the NVSentinel polling baseline and the
 * nvsrelayd subscriber): a monotonic clock every process on the machine
 * shares, a seeded PRNG, the health-event document template, the sequence
 * number a document carries, and per-event records written at exit.
 * Driven by tests/bench/bench.pl; not part of the daemon.
 */
#ifndef NVSRELAY_BENCH_H
#define NVSRELAY_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* CLOCK_MONOTONIC in nanoseconds: comparable between processes. */
uint64_t bench_now_ns(void);
void bench_sleep_until(uint64_t t_ns);

/* The process's own CPU time (user + system), nanoseconds. */
uint64_t bench_cpu_ns(void);

/* xorshift64*: reproducible from the seed the driver records. */
uint64_t bench_rand(uint64_t *state);

/* The sequence number a document carries ("bench_seq": "N"), found in any
 * rendering of it (the event JSON, jsonb text, changelog new_values);
 * -1 when absent. */
long long bench_seq_of(const char *text, size_t len);

/*
 * The document template (written by bench.pl from NvsTest::health_doc):
 * compact JSON with the placeholders @SEQ@, @NODE@, @SPAN@, @SEC@, @NANO@
 * and @CREATED@.  bench_doc_render fills them into buf (NUL-terminated;
 * node is the node name, the span id comes from rng) and returns the
 * length, or -1 when it does not fit.
 */
char *bench_read_file(const char *path, size_t *len);
int bench_doc_render(const char *tmpl, long long seq, const char *node, uint64_t *rng, char *buf, size_t cap);

/* One record per delivered event: "seq t_ns [extra]\n", buffered in memory
 * and written at exit, so recording costs no syscalls while measuring. */
struct bench_rec {
	long long seq;
	uint64_t t_ns;
	long long extra;
};

struct bench_log {
	struct bench_rec *r;
	size_t n, cap;
};

void bench_log_add(struct bench_log *l, long long seq, uint64_t t_ns, long long extra);
int bench_log_write(const struct bench_log *l, const char *path);

/* Which sequence numbers arrived: bench_seen_add is 1 the first time. */
struct bench_seen {
	unsigned char *bits;
	size_t nbytes;
	long long distinct, dups;
};

int bench_seen_add(struct bench_seen *s, long long seq);

/* epoll_wait on ep for at most max events until deadline_ns: the number
 * ready (0 after EINTR), or -1 once the deadline has passed. */
struct epoll_event;
int bench_epoll_wait(int ep, struct epoll_event *evs, int max, uint64_t deadline_ns);

/* Set by SIGTERM/SIGINT (bench_on_signals installs the handlers). */
extern volatile int bench_stop;
void bench_on_signals(void);

/* Touches path (the driver waits for it before it starts writing). */
void bench_ready(const char *path);

void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
