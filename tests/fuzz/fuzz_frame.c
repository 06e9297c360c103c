/*
 * fuzz_frame.c - libFuzzer target for the frame reader and the token parser.
 *
 * The first two input bytes choose max_frame and how the rest of the input
 * is cut into reads; the rest is the byte stream.  Reads alternate between
 * frame_reader_feed() and frame_reader_space()/commit(), each followed by
 * draining frame_reader_next().  Every result is checked against a model
 * that splits the whole stream at once, so a chunking-dependent answer, an
 * oversized frame returned, a second -EMSGSIZE for one frame or unbounded
 * buffering aborts.  Each frame also goes through token_parse(), and a parsed
 * token must format back to the same digits.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "frame.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct model {
	const char *stream;
	size_t len;
	size_t pos;	/* start of the next line the reader should report */
	size_t max_frame;
};

/* The model's answer for the next complete line: 1 with the frame,
 * -EMSGSIZE, or 0 when no complete line is buffered. */
static int
model_next(struct model *m, size_t fed, const char **ret_line, size_t *ret_len)
{
	const char *line = m->stream + m->pos;
	const char *nl = memchr(line, '\n', fed - m->pos);
	size_t len;

	if (nl == NULL)
		return 0;
	len = (size_t)(nl - line);
	m->pos += len + 1;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > m->max_frame)
		return -EMSGSIZE;
	*ret_line = line;
	*ret_len = len;
	return 1;
}

static void
check_token(const char *line, size_t len)
{
	struct token t;
	char out[TOKEN_HEX_LEN + 1];

	if (token_parse(line, len, &t) < 0)
		return;
	CHECK(len == TOKEN_HEX_LEN);
	token_format(&t, out);
	CHECK(strlen(out) == TOKEN_HEX_LEN);
	CHECK(strncasecmp(out, line, TOKEN_HEX_LEN) == 0);
}

/* True when an unterminated line can no longer fit, even if its last byte is
 * the '\r' of a CRLF: the reader must then have reported it already. */
static int
tail_oversized(const struct model *m, size_t fed)
{
	size_t avail = fed - m->pos;

	return avail > m->max_frame &&
	       (avail - m->max_frame > 1 || m->stream[fed - 1] != '\r');
}

/* Drains the reader after `fed` bytes of the stream have gone in. */
static void
drain(FrameReader *fr, struct model *m, size_t fed, int *tail_reported)
{
	const char *line, *want;
	size_t len, want_len;
	int r;

	/* A line reported while unterminated ends at its newline, silently. */
	if (*tail_reported) {
		const char *nl = memchr(m->stream + m->pos, '\n', fed - m->pos);

		if (nl != NULL) {
			m->pos = (size_t)(nl - m->stream) + 1;
			*tail_reported = 0;
		} else {
			m->pos = fed;
		}
	}
	while ((r = frame_reader_next(fr, &line, &len)) != 0) {
		if (r == -EMSGSIZE && memchr(m->stream + m->pos, '\n', fed - m->pos) == NULL) {
			CHECK(!*tail_reported);
			CHECK(tail_oversized(m, fed));
			*tail_reported = 1;
			m->pos = fed;
			continue;
		}
		CHECK(model_next(m, fed, &want, &want_len) == r);
		if (r == 1) {
			CHECK(len == want_len && len <= m->max_frame);
			CHECK(memcmp(line, want, len) == 0);
			CHECK(memchr(line, '\n', len) == NULL);
			check_token(line, len);
		}
	}
	CHECK(model_next(m, fed, &want, &want_len) == 0);
	if (*tail_reported) {
		CHECK(frame_reader_pending(fr) == 0);
	} else {
		CHECK(!tail_oversized(m, fed));
		CHECK(frame_reader_pending(fr) == fed - m->pos);
		CHECK(frame_reader_pending(fr) <= m->max_frame + 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model m;
	FrameReader *fr;
	uint32_t rng;
	size_t fed = 0, max_chunk, mem_bound;
	int tail_reported = 0;

	if (size < 2)
		return 0;
	/* Small caps make oversized frames common; large ones exercise growth. */
	m.max_frame = data[0] < 192 ? data[0] : (size_t)(data[0] - 191) * 256;
	rng = 0x9e3779b9u ^ data[1];
	m.stream = (const char *)data + 2;
	m.len = size - 2;
	m.pos = 0;
	max_chunk = 2 * m.max_frame + 3;
	/* One partial frame plus the largest read, or the first allocation. */
	mem_bound = m.max_frame + 1 + max_chunk;
	if (mem_bound < 4096)
		mem_bound = 4096;
	fr = frame_reader_new(m.max_frame);
	if (fr == NULL)
		return 0;

	while (fed < m.len) {
		size_t chunk, room_len;
		char *room;

		rng = rng * 1103515245u + 12345u;
		chunk = 1 + (rng >> 16) % max_chunk;
		if (chunk > m.len - fed)
			chunk = m.len - fed;
		if (rng & 0x10000u) {
			CHECK(frame_reader_feed(fr, m.stream + fed, chunk) == 0);
		} else {
			CHECK(frame_reader_space(fr, chunk, &room, &room_len) == 0);
			CHECK(room_len >= chunk);
			/* What is pending plus what is offered is a lower
			 * bound of the allocation. */
			CHECK(frame_reader_pending(fr) + room_len <= mem_bound);
			memcpy(room, m.stream + fed, chunk);
			frame_reader_commit(fr, chunk);
		}
		fed += chunk;
		drain(fr, &m, fed, &tail_reported);
	}
	frame_reader_free(fr);
	return 0;
}
