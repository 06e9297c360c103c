/*
 * fileio.h - reads a whole small file (the config file, a token file, a
 * pipeline) into memory.  Used by conf_load.c for the daemon and `nvsrelay
 * import`, and by the CLI's main.c; one copy, so every reader gets the same
 * size limit and the same errno on failure.  Also whether a key or token
 * file is closed to other users (tls.c, upconn.c, upstream.c).
 */
#ifndef NVSRELAY_FILEIO_H
#define NVSRELAY_FILEIO_H

#include <stddef.h>

/* The file at path as a NUL-terminated string of at most max bytes (the
 * length in *len when len is not NULL).  NULL with errno set on failure:
 * fopen's errno, ENOMEM, EFBIG when longer than max, fread's errno (EIO if
 * none) on a read error.
 * The caller frees it (wiping it first when it may hold a secret). */
char *fileio_read(const char *path, size_t max, size_t *len);

/* Whether a secret file's mode grants none of deny's bits (S_IRWXO for a
 * private key, S_IRWXG | S_IRWXO for a password or a token): 0, or -EPERM
 * with err saying so ("<what> <path> has mode 0644: <noun> must not be
 * readable by ...") and how to fix it.  fileio_mode_check takes a mode
 * already read (from the fstat of the descriptor about to be read);
 * fileio_private stats path, and returns 0 too when it cannot (the reader
 * of the file then says why). */
int fileio_mode_check(unsigned mode, unsigned deny, const char *what, const char *path, const char *noun,
		      char *err, size_t errlen);
int fileio_private(const char *path, unsigned deny, const char *what, const char *noun, char *err, size_t errlen);

#endif
