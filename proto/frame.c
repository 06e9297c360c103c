/*
 * frame.c - NDJSON framing with a hard size cap.
 *
 * Owns one growable read buffer per connection and cuts it into
 * newline-terminated frames.  Called by the daemon's client connections, the
 * client library and the CLI: they read from their socket into
 * frame_reader_space(), commit what arrived, then call frame_reader_next()
 * until it returns 0.  Pure code: no I/O, no logging.
 *
 * The buffer holds [start, end) of unreturned bytes.  It is compacted only
 * when the tail lacks room, so a burst of small frames costs no memmove.
 * `scanned` remembers how much of a partial frame is known to hold no
 * newline: a large frame arriving in small reads is searched once, not once
 * per read.
 *
 * Memory: as long as the caller drains frame_reader_next() to 0 between
 * reads, at most one partial frame stays buffered, and a partial frame that
 * can no longer fit max_frame is dropped (-EMSGSIZE) before the next read.
 * The buffer then never grows past max_frame + min_room (plus one byte: a
 * frame of exactly max_frame may be followed by its '\r' before the '\n').
 * Returned frames are also NUL-terminated in place (the terminator overwrites
 * the consumed '\r' or '\n'), which costs nothing and spares callers a copy.
 */
#include "frame.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Smallest allocation: one typical socket read, so small peers never realloc. */
#define FRAME_MIN_ALLOC 4096

struct frame_reader {
	char *buf;		/* NULL until the first frame_reader_space() */
	size_t cap;		/* allocated size of buf */
	size_t start;		/* first byte not yet returned */
	size_t end;		/* one past the last committed byte */
	size_t scanned;		/* bytes after start known to hold no '\n' */
	size_t max_frame;	/* largest frame accepted, without its newline */
	bool discarding;	/* dropping an oversized frame up to its '\n' */
};

static size_t
add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

FrameReader *
frame_reader_new(size_t max_frame)
{
	FrameReader *fr = calloc(1, sizeof(*fr));

	if (fr == NULL)
		return NULL;
	fr->max_frame = max_frame;
	return fr;
}

void
frame_reader_free(FrameReader *fr)
{
	if (fr == NULL)
		return;
	free(fr->buf);
	free(fr);
}

int
frame_reader_space(FrameReader *fr, size_t min_room, char **ret_buf, size_t *ret_len)
{
	size_t pending = fr->end - fr->start;

	if (fr->cap - fr->end < min_room) {
		/* Compacting is cheaper than growing when it frees enough room;
		 * what moves is at most one partial frame. */
		if (fr->start > 0 && fr->cap - pending >= min_room) {
			memmove(fr->buf, fr->buf + fr->start, pending);
			fr->start = 0;
			fr->end = pending;
		} else {
			size_t need = add_sat(pending, min_room);
			size_t limit = add_sat(fr->max_frame, min_room);
			size_t cap = fr->cap < FRAME_MIN_ALLOC / 2 ? FRAME_MIN_ALLOC : add_sat(fr->cap, fr->cap);
			char *nbuf;

			if (need == SIZE_MAX)
				return -ENOMEM;
			/* Doubling amortises the copies; the limit keeps one
			 * slow peer from holding more than a frame's worth. */
			if (cap > limit)
				cap = limit;
			if (cap < need)
				cap = need;
			if (fr->start == 0) {
				nbuf = realloc(fr->buf, cap);
				if (nbuf == NULL)
					return -ENOMEM;
			} else {
				/* Moving to a new block compacts in the same copy. */
				nbuf = malloc(cap);
				if (nbuf == NULL)
					return -ENOMEM;
				memcpy(nbuf, fr->buf + fr->start, pending);
				free(fr->buf);
				fr->start = 0;
				fr->end = pending;
			}
			fr->buf = nbuf;
			fr->cap = cap;
		}
	}
	/* Still unallocated only when min_room is 0. */
	*ret_buf = fr->buf != NULL ? fr->buf + fr->end : NULL;
	*ret_len = fr->cap - fr->end;
	return 0;
}

void
frame_reader_commit(FrameReader *fr, size_t n)
{
	assert(n <= fr->cap - fr->end);
	fr->end += n;
}

int
frame_reader_feed(FrameReader *fr, const char *buf, size_t len)
{
	char *room;
	size_t room_len;
	int r;

	if (len == 0)
		return 0;
	r = frame_reader_space(fr, len, &room, &room_len);
	if (r < 0)
		return r;
	memcpy(room, buf, len);
	frame_reader_commit(fr, len);
	return 0;
}

/* Drops everything buffered; resetting the offsets makes the next read land
 * at the front, so no compaction is ever needed after a drained buffer. */
static void
drop_all(FrameReader *fr)
{
	fr->start = fr->end = fr->scanned = 0;
}

int
frame_reader_next(FrameReader *fr, const char **ret_line, size_t *ret_len)
{
	for (;;) {
		size_t avail = fr->end - fr->start;
		char *line, *nl;
		size_t len;

		if (avail == 0) {
			drop_all(fr);
			return 0;
		}
		line = fr->buf + fr->start;
		nl = memchr(line + fr->scanned, '\n', avail - fr->scanned);
		if (nl == NULL) {
			if (fr->discarding) {
				drop_all(fr);
				return 0;
			}
			fr->scanned = avail;
			/* Past max_frame + 1 the frame cannot fit even if the
			 * last byte turns out to be the '\r' of a CRLF. */
			if (avail > fr->max_frame &&
			    (avail - fr->max_frame > 1 || line[avail - 1] != '\r')) {
				fr->discarding = true;
				drop_all(fr);
				return -EMSGSIZE;
			}
			return 0;
		}

		len = (size_t)(nl - line);
		fr->start += len + 1;
		fr->scanned = 0;
		if (fr->discarding) {
			fr->discarding = false;
			continue;
		}
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (len > fr->max_frame)
			return -EMSGSIZE;
		line[len] = '\0';
		*ret_line = line;
		*ret_len = len;
		return 1;
	}
}

size_t
frame_reader_pending(const FrameReader *fr)
{
	return fr->end - fr->start;
}

void
frame_reader_release(FrameReader *fr, size_t keep)
{
	if (fr->cap <= keep || fr->end != fr->start || fr->discarding)
		return;
	free(fr->buf);
	fr->buf = NULL;
	fr->cap = fr->start = fr->end = fr->scanned = 0;
}
