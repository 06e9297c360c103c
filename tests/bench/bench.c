/*
 * bench.c - helpers shared by the benchmark clients (see bench.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "bench.h"

volatile int bench_stop;

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_until(uint64_t t_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(t_ns / 1000000000u), .tv_nsec = (long)(t_ns % 1000000000u) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !bench_stop)
		;
}

uint64_t bench_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_rand(uint64_t *s)
{
	uint64_t x = *s ? *s : 0x9e3779b97f4a7c15u;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1du;
}

long long bench_seq_of(const char *text, size_t len)
{
	static const char key[] = "bench_seq";
	const char *p = memmem(text, len, key, sizeof(key) - 1);
	const char *end = text + len;
	long long v = 0;
	int skipped = 0;

	if (!p)
		return -1;
	p += sizeof(key) - 1;
	/* `": "` or `":"` (jsonb text puts a space after the colon). */
	while (p < end && (*p < '0' || *p > '9')) {
		if (++skipped > 4)
			return -1;
		p++;
	}
	if (p == end)
		return -1;
	while (p < end && *p >= '0' && *p <= '9')
		v = v * 10 + (*p++ - '0');
	return v;
}

char *bench_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		size_t r;

		if (cap - n < 4096) {
			char *p = realloc(buf, cap ? cap * 2 : 8192);

			if (!p) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = p;
			cap = cap ? cap * 2 : 8192;
		}
		r = fread(buf + n, 1, cap - n - 1, f);
		if (r == 0)
			break;
		n += r;
	}
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

int bench_doc_render(const char *tmpl, long long seq, const char *node, uint64_t *rng, char *buf, size_t cap)
{
	struct timespec now;
	char val[64], created[48];
	const char *p = tmpl;
	size_t n = 0;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	/* Go's RFC3339Nano for microsecond times. */
	strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(created + strlen(created), sizeof(created) - strlen(created), ".%06ldZ",
		 now.tv_nsec / 1000);
	while (*p) {
		const char *at = strchr(p, '@');
		const char *e;
		size_t lit, vl;

		if (!at)
			at = p + strlen(p);
		lit = (size_t)(at - p);
		if (n + lit + 1 > cap)
			return -1;
		memcpy(buf + n, p, lit);
		n += lit;
		if (!*at)
			break;
		e = strchr(at + 1, '@');
		if (!e)
			return -1;
		val[0] = '\0';
		if (strncmp(at, "@SEQ@", 5) == 0)
			snprintf(val, sizeof(val), "%lld", seq);
		else if (strncmp(at, "@NODE@", 6) == 0)
			snprintf(val, sizeof(val), "%s", node);
		else if (strncmp(at, "@SPAN@", 6) == 0)
			snprintf(val, sizeof(val), "%016llx", (unsigned long long)bench_rand(rng));
		else if (strncmp(at, "@SEC@", 5) == 0)
			snprintf(val, sizeof(val), "%lld", (long long)now.tv_sec);
		else if (strncmp(at, "@NANO@", 6) == 0)
			snprintf(val, sizeof(val), "%ld", now.tv_nsec / 1000 * 1000);
		else if (strncmp(at, "@CREATED@", 9) == 0)
			snprintf(val, sizeof(val), "%s", created);
		else {
			/* A lone '@' in the document's text. */
			if (n + 2 > cap)
				return -1;
			buf[n++] = '@';
			p = at + 1;
			continue;
		}
		vl = strlen(val);
		if (n + vl + 1 > cap)
			return -1;
		memcpy(buf + n, val, vl);
		n += vl;
		p = e + 1;
	}
	buf[n] = '\0';
	return (int)n;
}

void bench_log_add(struct bench_log *l, long long seq, uint64_t t_ns, long long extra)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 65536;
		struct bench_rec *p = realloc(l->r, cap * sizeof(*p));

		if (!p)
			bench_die("out of memory");
		l->r = p;
		l->cap = cap;
	}
	l->r[l->n++] = (struct bench_rec){ seq, t_ns, extra };
}

int bench_log_write(const struct bench_log *l, const char *path)
{
	FILE *f;
	size_t i;

	if (!path)
		return 0;
	f = fopen(path, "w");
	if (!f)
		return -errno;
	for (i = 0; i < l->n; i++)
		fprintf(f, "%lld %llu %lld\n", l->r[i].seq, (unsigned long long)l->r[i].t_ns, l->r[i].extra);
	return fclose(f) == 0 ? 0 : -errno;
}

int bench_seen_add(struct bench_seen *s, long long seq)
{
	size_t byte;

	if (seq < 0)
		return 0;
	byte = (size_t)seq / 8;
	if (byte >= s->nbytes) {
		size_t nb = s->nbytes ? s->nbytes : 65536;
		unsigned char *p;

		while (nb <= byte)
			nb *= 2;
		p = realloc(s->bits, nb);
		if (!p)
			bench_die("out of memory");
		memset(p + s->nbytes, 0, nb - s->nbytes);
		s->bits = p;
		s->nbytes = nb;
	}
	if (s->bits[byte] & (1u << (seq % 8))) {
		s->dups++;
		return 0;
	}
	s->bits[byte] |= (unsigned char)(1u << (seq % 8));
	s->distinct++;
	return 1;
}

static void on_signal(int sig)
{
	(void)sig;
	bench_stop = 1;
}

void bench_on_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

void bench_ready(const char *path)
{
	FILE *f;

	if (!path)
		return;
	f = fopen(path, "w");
	if (f)
		fclose(f);
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

int bench_epoll_wait(int ep, struct epoll_event *evs, int max, uint64_t deadline_ns)
{
	uint64_t now = bench_now_ns();
	int n;

	if (now >= deadline_ns)
		return -1;
	n = epoll_wait(ep, evs, max, (int)((deadline_ns - now) / 1000000 + 1));
	if (n < 0 && errno != EINTR)
		bench_die("epoll_wait: %s", strerror(errno));
	return n < 0 ? 0 : n;
}
