/*
 * conf_load.h - the configuration's sources and the one builder that layers
 * them: built-in defaults < config file < environment < --set.  Used by
 * nvsrelayd (main.c: start and reload) and `nvsrelay import`.
 */
#ifndef NVSRELAY_CONF_LOAD_H
#define NVSRELAY_CONF_LOAD_H

#include <stddef.h>

#include "conf.h"

/* Parses "key = value" lines (# comments, blank lines, optional quotes).
 * source names the file in messages ("file:line: ...").  Stops at the first
 * error: returns -EINVAL/-ENOENT with err filled in. */
int conf_load_text(Conf *c, const char *text, const char *source, char *err, size_t errlen);

/* Applies the environment: the seed's DATASTORE_* variables,
 * POSTGRESQL_CLIENT_CERT_MOUNT_PATH (else MONGODB_CLIENT_CERT_MOUNT_PATH) and
 * NVSRELAYD_<KEY> for every key.  envp is a NULL-terminated "NAME=value"
 * array (pass environ).  Returns as conf_set, naming the variable. */
int conf_load_env(Conf *c, char *const *envp, char *err, size_t errlen);

/* The sources of one configuration, lowest precedence first. */
struct conf_sources {
	const char *file;               /* config file, NULL for none */
	char *const *envp;              /* environ */
	const char *const *sets;        /* --set arguments, "KEY=VALUE" each */
	size_t nsets;
};

/*
 * A finished Conf from src in *ret.  Returns 0; -EINVAL when a --set
 * argument is not KEY=VALUE (a usage error); -EBADMSG when the configuration
 * is bad (the file cannot be read, a key or value is wrong, conf_finish
 * refused it); -ENOMEM.  err says why.
 */
int conf_load(const struct conf_sources *src, Conf **ret, char *err, size_t errlen);

/* --check-config's look at the files the configuration names: the client
 * certificate mount path is a directory, and every certificate, key, CA
 * and token file set (or derived from the mount path) exists.  The CA
 * bundle for PostgreSQL is checked only with verify-ca or verify-full,
 * the only modes in which libpq reads it.  Returns 0, or -ENOENT with err
 * naming the key and the file. */
int conf_load_check_files(const struct conf_values *v, char *err, size_t errlen);

#endif
