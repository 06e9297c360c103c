/*
 * errors.c - names of the protocol's error codes and the error frame
 * (errors.h).  Pure; linked into the daemon and its unit tests.
 */
#include <stddef.h>
#include <string.h>

#include <cJSON.h>

#include "errors.h"
#include "token.h"
#include "utf8.h"

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

char *proto_error_frame(long long sid, int code, const char *msg, const struct token *tok, size_t *len)
{
	cJSON *o = cJSON_CreateObject(), *t;
	char quoted[1024], hex[TOKEN_HEX_LEN + 1], *s;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "op", "error");
	if (sid >= 0)
		cJSON_AddNumberToObject(o, "sid", (double)sid);
	cJSON_AddNumberToObject(o, "code", code);
	cJSON_AddStringToObject(o, "codeName", proto_error_name(code));
	utf8_quote(quoted, sizeof(quoted), msg, strlen(msg));
	cJSON_AddStringToObject(o, "message", quoted);
	if (tok && (t = cJSON_AddObjectToObject(o, "token"))) {
		token_format(tok, hex);
		cJSON_AddStringToObject(t, "_data", hex);
	}
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!s)
		return NULL;
	/* The terminating NUL's byte takes the newline: one frame, one push. */
	*len = strlen(s);
	s[(*len)++] = '\n';
	return s;
}
