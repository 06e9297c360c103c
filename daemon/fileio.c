/*
 * fileio.c - reads a whole small file into memory, and checks a secret
 * file's mode (see fileio.h).  No
 * logging: callers word the message, from errno.  A read error fails the
 * whole read: a directory given as a file is refused, not read as empty.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"

int fileio_mode_check(unsigned mode, unsigned deny, const char *what, const char *path, const char *noun,
		      char *err, size_t errlen)
{
	bool group = deny & S_IRWXG;

	if (!(mode & deny))
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "%s %s has mode %04o: %s must not be readable by %s (%s)", what, path,
			 mode & 07777, noun, group ? "group or others" : "others",
			 group ? "chmod 600, or defaultMode: 0400 for a Kubernetes secret"
			       : "chmod 600 or 640, or defaultMode: 0440 for a Kubernetes secret");
	return -EPERM;
}

int fileio_private(const char *path, unsigned deny, const char *what, const char *noun, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return 0;
	return fileio_mode_check((unsigned)st.st_mode, deny, what, path, noun, err, errlen);
}

char *fileio_read(const char *path, size_t max, size_t *ret_len)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL, *p;
	size_t len = 0, cap = 0, n;
	int e;

	if (!f)
		return NULL;
	errno = 0;
	for (;;) {
		if (cap - len < 4096 + 1) {
			cap = cap ? cap * 2 : 65536;
			p = realloc(buf, cap);
			if (!p) {
				e = ENOMEM;
				goto fail;
			}
			buf = p;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (len > max) {
			e = EFBIG;
			goto fail;
		}
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		e = errno ? errno : EIO;     /* EISDIR for a directory */
		goto fail;
	}
	fclose(f);
	buf[len] = '\0';
	if (ret_len)
		*ret_len = len;
	return buf;
fail:
	/* What was read may be a password: wipe it before it goes. */
	if (buf)
		explicit_bzero(buf, len);
	free(buf);
	fclose(f);
	errno = e;
	return NULL;
}
