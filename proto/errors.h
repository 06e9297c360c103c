/*
 * errors.h - the protocol's error codes (MongoDB's numbers, so drivers and
 * NVSentinel's code recognise them) and their names, in one table.  Error
 * frames carry both; every sender names only the code.  The request decoder
 * (request.c), the daemon's senders of error frames (client.c, listener.c,
 * hub.c, the sources) and the upstream side's readers of them include it.
 */
#ifndef NVSRELAY_ERRORS_H
#define NVSRELAY_ERRORS_H

enum proto_error {
	ERR_BAD_VALUE = 2,
	ERR_HOST_UNREACHABLE = 6,
	ERR_FAILED_TO_PARSE = 9,
	ERR_UNAUTHORIZED = 13,
	ERR_TYPE_MISMATCH = 14,
	ERR_AUTH_FAILED = 18,
	ERR_EXCEEDED_LIMIT = 24,          /* too many clients or subscriptions */
	ERR_COMMAND_NOT_FOUND = 59,
	ERR_INVALID_NAMESPACE = 73,
	ERR_EXCEEDED_MEMORY_LIMIT = 146,  /* output past a limit */
	ERR_INVALID_RESUME_TOKEN = 260,   /* a start position that names no written tick */
	ERR_EXCEEDED_TIME_LIMIT = 262,    /* output not read */
	ERR_CHANGE_STREAM_FATAL = 280,
	ERR_HISTORY_LOST = 286,
	ERR_TOO_LARGE = 10334,
	ERR_INTERRUPTED = 11601,
	ERR_UNKNOWN_FIELD = 40415,
};

/* The code's name for the "codeName" member; "UnknownError" for a code not
 * in the table. */
const char *proto_error_name(int code);

struct token;
/* An error frame, '\n' included, in *len bytes of malloc'd memory, not
 * NUL-terminated (NULL when out of memory): sid < 0 leaves "sid" out (a
 * connection's error), tok may be NULL.  msg may quote client text: what
 * is not valid UTF-8 is replaced and it is cut to fit. */
char *proto_error_frame(long long sid, int code, const char *msg, const struct token *tok, size_t *len);

#endif
