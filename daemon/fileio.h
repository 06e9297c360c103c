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

/* Whether the regular file at path is closed to the readers deny names (a
 * mode mask: S_IRWXO for a key, S_IRWXG | S_IRWXO for a token): 0, or
 * -EPERM with its mode in *mode, or -errno when it cannot be examined
 * (-EINVAL: not a regular file). */
int fileio_private(const char *path, unsigned deny, unsigned *mode);

#endif
