/*
 * errors.c - names of the protocol's error codes (errors.h).  Pure; linked
 * into the daemon and its unit tests.
 */
#include <stddef.h>

#include "errors.h"

static const struct {
	int code;
	const char *name;
} names[] = {
	{ ERR_BAD_VALUE, "BadValue" },
	{ ERR_HOST_UNREACHABLE, "HostUnreachable" },
	{ ERR_FAILED_TO_PARSE, "FailedToParse" },
	{ ERR_UNAUTHORIZED, "Unauthorized" },
	{ ERR_TYPE_MISMATCH, "TypeMismatch" },
	{ ERR_AUTH_FAILED, "AuthenticationFailed" },
	{ ERR_EXCEEDED_LIMIT, "ExceededLimit" },
	{ ERR_COMMAND_NOT_FOUND, "CommandNotFound" },
	{ ERR_INVALID_NAMESPACE, "InvalidNamespace" },
	{ ERR_EXCEEDED_MEMORY_LIMIT, "ExceededMemoryLimit" },
	{ ERR_INVALID_RESUME_TOKEN, "InvalidResumeToken" },
	{ ERR_EXCEEDED_TIME_LIMIT, "ExceededTimeLimit" },
	{ ERR_CHANGE_STREAM_FATAL, "ChangeStreamFatalError" },
	{ ERR_HISTORY_LOST, "ChangeStreamHistoryLost" },
	{ ERR_TOO_LARGE, "BSONObjectTooLarge" },
	{ ERR_INTERRUPTED, "Interrupted" },
	/* MongoDB has no name for it and reports its location. */
	{ ERR_UNKNOWN_FIELD, "Location40415" },
};

const char *proto_error_name(int code)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].code == code)
			return names[i].name;
	return "UnknownError";
}
