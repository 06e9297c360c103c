/*
 * test_frame.c - unit tests of the NDJSON frame reader (proto/frame.c):
 * splitting across reads, CRLF, blank lines, the size cap at and around
 * max_frame, recovery after an oversized frame, and the memory bound while an
 * oversized frame is still arriving.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static FrameReader *
reader(size_t max_frame)
{
	FrameReader *fr = frame_reader_new(max_frame);

	assert_non_null(fr);
	return fr;
}

static void
feed_str(FrameReader *fr, const char *s)
{
	assert_int_equal(frame_reader_feed(fr, s, strlen(s)), 0);
}

/* Asserts the next result is the frame `want`. */
static void
expect_frame(FrameReader *fr, const char *want)
{
	const char *line = NULL;
	size_t len = 0;

	assert_int_equal(frame_reader_next(fr, &line, &len), 1);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(line, want, len);
}

static void
expect_none(FrameReader *fr)
{
	const char *line;
	size_t len;

	assert_int_equal(frame_reader_next(fr, &line, &len), 0);
}

static void
expect_oversize(FrameReader *fr)
{
	const char *line;
	size_t len;

	assert_int_equal(frame_reader_next(fr, &line, &len), -EMSGSIZE);
}

static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void
test_new_free(void **state)
{
	FrameReader *fr = reader(1024);

	(void)state;
	assert_int_equal(frame_reader_pending(fr), 0);
	expect_none(fr);
	frame_reader_free(fr);
	frame_reader_free(NULL);
}

static void
test_split_across_feeds(void **state)
{
	const char *msg = "{\"op\":\"hello\",\"v\":1,\"client\":\"fault-quarantine\"}\n";
	FrameReader *fr = reader(1024);

	(void)state;
	feed_str(fr, "{\"op\":\"hel");
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), 10);
	feed_str(fr, "lo\",\"v\":1,");
	expect_none(fr);
	feed_str(fr, "\"client\":\"fault-quarantine\"}");
	expect_none(fr);
	feed_str(fr, "\n");
	expect_frame(fr, "{\"op\":\"hello\",\"v\":1,\"client\":\"fault-quarantine\"}");
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), 0);

	/* One byte per read, the worst case for rescanning. */
	for (size_t i = 0; msg[i] != '\0'; i++) {
		assert_int_equal(frame_reader_feed(fr, msg + i, 1), 0);
		if (msg[i + 1] != '\0')
			expect_none(fr);
	}
	expect_frame(fr, "{\"op\":\"hello\",\"v\":1,\"client\":\"fault-quarantine\"}");
	expect_none(fr);
	frame_reader_free(fr);
}

static void
test_many_frames_one_feed(void **state)
{
	size_t n = 2000, off = 0, cap = n * 32;
	char *all = malloc(cap);
	FrameReader *fr = reader(64);
	char want[32];

	(void)state;
	assert_non_null(all);
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(all + off, cap - off, "{\"op\":\"ack\",\"sid\":%zu}\n", i);
	/* The last frame is left incomplete, to be finished by a later read. */
	assert_int_equal(frame_reader_feed(fr, all, off - 1), 0);
	for (size_t i = 0; i < n - 1; i++) {
		snprintf(want, sizeof(want), "{\"op\":\"ack\",\"sid\":%zu}", i);
		expect_frame(fr, want);
	}
	expect_none(fr);
	feed_str(fr, "\n");
	snprintf(want, sizeof(want), "{\"op\":\"ack\",\"sid\":%zu}", n - 1);
	expect_frame(fr, want);
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), 0);
	free(all);
	frame_reader_free(fr);
}

static void
test_crlf_and_blank_lines(void **state)
{
	FrameReader *fr = reader(64);
	const char *line;
	size_t len;

	(void)state;
	feed_str(fr, "{\"op\":\"ping\"}\r\n\n\r\na\rb\n\r");
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_frame(fr, "");
	expect_frame(fr, "");
	/* Only a '\r' right before the newline belongs to the terminator. */
	expect_frame(fr, "a\rb");
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), 1);
	feed_str(fr, "\n");
	expect_frame(fr, "");

	/* CRLF split between two reads. */
	feed_str(fr, "{}\r");
	expect_none(fr);
	feed_str(fr, "\n");
	assert_int_equal(frame_reader_next(fr, &line, &len), 1);
	assert_int_equal(len, 2);
	/* frame.c also NUL-terminates in place, which callers may rely on. */
	assert_string_equal(line, "{}");
	expect_none(fr);
	frame_reader_free(fr);
}

static void
test_exact_size_and_one_more(void **state)
{
	size_t max = 100;
	char *exact = repeat('x', max);
	char *over = repeat('y', max + 1);
	FrameReader *fr = reader(max);
	char buf[256];

	(void)state;
	snprintf(buf, sizeof(buf), "%s\n", exact);
	feed_str(fr, buf);
	expect_frame(fr, exact);

	snprintf(buf, sizeof(buf), "%s\r\n", exact);
	feed_str(fr, buf);
	expect_frame(fr, exact);

	snprintf(buf, sizeof(buf), "%s\n", over);
	feed_str(fr, buf);
	expect_oversize(fr);
	expect_none(fr);

	snprintf(buf, sizeof(buf), "%s\r\n", over);
	feed_str(fr, buf);
	expect_oversize(fr);
	expect_none(fr);

	/* max_frame bytes plus a '\r' may still end in '\n': keep waiting. */
	feed_str(fr, exact);
	feed_str(fr, "\r");
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), max + 1);
	feed_str(fr, "\n");
	expect_frame(fr, exact);

	/* ... but max_frame + 1 bytes without a '\r' cannot fit any more. */
	feed_str(fr, over);
	expect_oversize(fr);
	assert_int_equal(frame_reader_pending(fr), 0);
	feed_str(fr, "\nok\n");
	expect_frame(fr, "ok");
	expect_none(fr);

	/* The '\r' was a byte of the frame after all. */
	feed_str(fr, exact);
	feed_str(fr, "\r");
	expect_none(fr);
	feed_str(fr, "z\nok\n");
	expect_oversize(fr);
	expect_frame(fr, "ok");
	expect_none(fr);

	free(exact);
	free(over);
	frame_reader_free(fr);
}

static void
test_zero_max_frame(void **state)
{
	FrameReader *fr = reader(0);

	(void)state;
	feed_str(fr, "\n\r\na\n\n");
	expect_frame(fr, "");
	expect_frame(fr, "");
	expect_oversize(fr);
	expect_frame(fr, "");
	expect_none(fr);
	frame_reader_free(fr);
}

static void
test_oversize_mid_stream(void **state)
{
	char *big = repeat('x', 5000);
	FrameReader *fr = reader(1024);

	(void)state;
	/* Whole oversized frame inside one read, between two good ones. */
	feed_str(fr, "{\"op\":\"ping\"}\n");
	feed_str(fr, big);
	feed_str(fr, "\n{\"op\":\"unwatch\",\"sid\":1}\n");
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_oversize(fr);
	expect_frame(fr, "{\"op\":\"unwatch\",\"sid\":1}");
	expect_none(fr);

	/* Two oversized frames back to back: one error each. */
	feed_str(fr, big);
	feed_str(fr, "\n");
	feed_str(fr, big);
	feed_str(fr, "\n{\"op\":\"ping\"}\n");
	expect_oversize(fr);
	expect_oversize(fr);
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_none(fr);

	/* Oversized frame whose end and the next frame arrive together. */
	feed_str(fr, "{\"op\":\"watch\",\"pipeline\":\"");
	expect_none(fr);
	feed_str(fr, big);
	expect_oversize(fr);
	expect_none(fr);
	feed_str(fr, "\"}\n{\"op\":\"ping\"}\n{\"op\":");
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_none(fr);
	feed_str(fr, "\"ping\"}\n");
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_none(fr);

	free(big);
	frame_reader_free(fr);
}

/* A peer streams megabytes without a newline: the reader reports it once and
 * holds no more than a frame's worth plus one read. */
static void
test_oversize_bounded_memory(void **state)
{
	size_t max = 4096, room = 512, errors = 0;
	FrameReader *fr = reader(max);

	(void)state;
	for (int i = 0; i < 20000; i++) {
		const char *line;
		size_t len, space_len;
		char *space;
		int r;

		assert_int_equal(frame_reader_space(fr, room, &space, &space_len), 0);
		assert_true(space_len >= room);
		/* Pending plus the offered room is a lower bound of the allocation. */
		assert_true(frame_reader_pending(fr) + space_len <= max + room + 1);
		memset(space, 'x', room);
		frame_reader_commit(fr, room);
		while ((r = frame_reader_next(fr, &line, &len)) != 0) {
			assert_int_equal(r, -EMSGSIZE);
			errors++;
		}
		assert_true(frame_reader_pending(fr) <= max + room);
	}
	assert_int_equal(errors, 1);
	feed_str(fr, "xxxx\n{\"op\":\"ping\"}\n");
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), 0);
	frame_reader_free(fr);
}

static void
test_space_commit(void **state)
{
	FrameReader *fr = reader(64);
	char *space;
	size_t len;

	(void)state;
	assert_int_equal(frame_reader_space(fr, 8, &space, &len), 0);
	assert_true(len >= 8);
	memcpy(space, "ab\ncd", 5);
	frame_reader_commit(fr, 5);
	assert_int_equal(frame_reader_pending(fr), 5);
	expect_frame(fr, "ab");
	expect_none(fr);
	assert_int_equal(frame_reader_pending(fr), 2);
	assert_int_equal(frame_reader_space(fr, 8, &space, &len), 0);
	memcpy(space, "\n", 1);
	frame_reader_commit(fr, 1);
	expect_frame(fr, "cd");
	expect_none(fr);
	/* min_room larger than max_frame is still honoured. */
	assert_int_equal(frame_reader_space(fr, 1 << 16, &space, &len), 0);
	assert_true(len >= 1 << 16);
	frame_reader_free(fr);
}

/* Deterministic xorshift, so a failure reproduces. */
static uint32_t
rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Random frame lengths (blank, CRLF, around the cap, far over it) read in
 * random chunk sizes must give exactly what splitting the stream at once
 * gives. */
static void
test_random_chunks_match_model(void **state)
{
	(void)state;
	for (uint32_t seed = 1; seed <= 40; seed++) {
		uint32_t s = seed * 2654435761u;
		size_t max = 1 + rnd(&s) % 300, nframes = 400;
		size_t *lens = calloc(nframes, sizeof(*lens));
		int *crlf = calloc(nframes, sizeof(*crlf));
		size_t cap = nframes * (max * 3 + 2), off = 0;
		char *stream = malloc(cap);
		FrameReader *fr = reader(max);
		size_t fed = 0, got = 0;

		assert_non_null(lens);
		assert_non_null(crlf);
		assert_non_null(stream);
		for (size_t i = 0; i < nframes; i++) {
			switch (rnd(&s) % 6) {
			case 0: lens[i] = 0; break;
			case 1: lens[i] = max; break;
			case 2: lens[i] = max + 1; break;
			case 3: lens[i] = max * 3; break;
			default: lens[i] = rnd(&s) % max; break;
			}
			crlf[i] = rnd(&s) % 2;
			for (size_t j = 0; j < lens[i]; j++)
				stream[off++] = (char)('a' + (i + j) % 26);
			if (crlf[i])
				stream[off++] = '\r';
			stream[off++] = '\n';
		}
		while (fed < off) {
			size_t chunk = 1 + rnd(&s) % (2 * max + 2);
			const char *line;
			size_t len;
			int r;

			if (chunk > off - fed)
				chunk = off - fed;
			assert_int_equal(frame_reader_feed(fr, stream + fed, chunk), 0);
			fed += chunk;
			while ((r = frame_reader_next(fr, &line, &len)) != 0) {
				assert_true(got < nframes);
				if (lens[got] > max) {
					assert_int_equal(r, -EMSGSIZE);
				} else {
					assert_int_equal(r, 1);
					assert_int_equal(len, lens[got]);
					for (size_t j = 0; j < len; j++)
						assert_int_equal(line[j], 'a' + (got + j) % 26);
				}
				got++;
			}
			assert_true(frame_reader_pending(fr) <= max + 1);
		}
		assert_int_equal(got, nframes);
		assert_int_equal(frame_reader_pending(fr), 0);
		frame_reader_free(fr);
		free(stream);
		free(crlf);
		free(lens);
	}
}

/* A large frame's buffer is given back once it is consumed, never while a
 * partial frame or a discarded one is pending. */
static void
test_release(void **state)
{
	FrameReader *fr = reader(100000);
	char big[70001];
	char *room;
	size_t len;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	feed_str(fr, big);
	frame_reader_release(fr, 4096);         /* partial frame: kept */
	assert_int_equal(frame_reader_pending(fr), sizeof(big) - 1);
	feed_str(fr, "\n{\"op\":\"pi");
	expect_frame(fr, big);
	frame_reader_release(fr, 4096);         /* "{"op":"pi" pending: kept */
	feed_str(fr, "ng\"}\n");
	expect_frame(fr, "{\"op\":\"ping\"}");
	expect_none(fr);
	frame_reader_release(fr, 4096);
	assert_int_equal(frame_reader_space(fr, 16, &room, &len), 0);
	assert_true(len < 70000);               /* allocated afresh, small */
	feed_str(fr, "{}\n");
	expect_frame(fr, "{}");
	frame_reader_free(fr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_free),
		cmocka_unit_test(test_split_across_feeds),
		cmocka_unit_test(test_many_frames_one_feed),
		cmocka_unit_test(test_crlf_and_blank_lines),
		cmocka_unit_test(test_exact_size_and_one_more),
		cmocka_unit_test(test_zero_max_frame),
		cmocka_unit_test(test_oversize_mid_stream),
		cmocka_unit_test(test_oversize_bounded_memory),
		cmocka_unit_test(test_space_commit),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_random_chunks_match_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
