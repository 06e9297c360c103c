/*
 * frame.h - NDJSON framing: splits a byte stream into newline-terminated
 * frames with a hard size cap.  Pure code: no I/O, no logging, so it is
 * unit-tested and fuzzed.  Used by the daemon's client connections, the
 * client library and the CLI.
 */
#ifndef NVSRELAY_FRAME_H
#define NVSRELAY_FRAME_H

#include <stddef.h>

typedef struct frame_reader FrameReader;

/* max_frame is the largest frame accepted, excluding the newline.
 * Returns NULL when out of memory. */
FrameReader *frame_reader_new(size_t max_frame);
void frame_reader_free(FrameReader *fr);

/* Space to read into: sets *ret_buf and *ret_len to writable room (at least
 * min_room bytes, growing the buffer but never past max_frame + min_room).
 * Returns 0 or -ENOMEM. */
int frame_reader_space(FrameReader *fr, size_t min_room, char **ret_buf, size_t *ret_len);

/* Marks n bytes written into the space as received. */
void frame_reader_commit(FrameReader *fr, size_t n);

/* Copies len bytes in (space + memcpy + commit).  Returns 0 or -ENOMEM. */
int frame_reader_feed(FrameReader *fr, const char *buf, size_t len);

/* Next complete frame.  Returns 1 and sets *ret_line and *ret_len (without the
 * newline; a trailing '\r' is stripped; valid until the next call on fr);
 * 0 when no complete frame is buffered; -EMSGSIZE once for each frame longer
 * than max_frame: its bytes are discarded up to and including its newline,
 * so memory stays bounded and the next frame parses normally. */
int frame_reader_next(FrameReader *fr, const char **ret_line, size_t *ret_len);

/* Bytes buffered but not yet returned as frames. */
size_t frame_reader_pending(const FrameReader *fr);

/* Gives the buffer back when it has grown past keep bytes and holds nothing
 * (no partial frame, not discarding one), so that one large frame does not
 * cost a connection its size for the rest of its life.  The next
 * frame_reader_space() allocates afresh. */
void frame_reader_release(FrameReader *fr, size_t keep);

#endif
