/*
 * conf_value.h - the syntax of configuration values (numbers, modes, socket
 * paths, HOST:PORT, lists, libpq conninfo pairs).  Pure; used by conf.c's
 * option table and conf_finish().  The checks share one signature, the one
 * of the table's check hook: 0, or -EINVAL with a message naming key in err.
 */
#ifndef NVSRELAY_CONF_VALUE_H
#define NVSRELAY_CONF_VALUE_H

#include <stdbool.h>
#include <stddef.h>

/* A decimal int (optional '-', digits only), saturating far out of range. */
bool conf_value_int(const char *s, long long *ret);
/* Octal digits only. */
bool conf_value_octal(const char *s, long long *ret);

/* s as one short printable line in buf (len >= 5), for messages: values are
 * echoed, and a stray newline must not break the caller's log line. */
const char *conf_value_shown(const char *s, char *buf, size_t len);

/* Items of a comma list (1 for "" and for a list without commas). */
size_t conf_value_count_items(const char *s);

/* True when hostport's host is an address written out and not a loopback
 * one; names are not resolved here. */
bool conf_value_non_loopback(const char *hostport);

int conf_value_socket_path(const char *key, const char *value, char *err, size_t errlen);
int conf_value_listen_addr(const char *key, const char *value, char *err, size_t errlen);
int conf_value_port_list(const char *key, const char *value, char *err, size_t errlen);
int conf_value_id_list(const char *key, const char *value, char *err, size_t errlen);
/* consumer_owners: the grammar of owners.c. */
int conf_value_owners(const char *key, const char *value, char *err, size_t errlen);
int conf_value_options(const char *key, const char *value, char *err, size_t errlen);
/* "" or one port (datastore_replica_port). */
int conf_value_port_opt(const char *key, const char *value, char *err, size_t errlen);
/* "" or HOST:PORT[,HOST:PORT...] (upstream). */
int conf_value_hostport_list(const char *key, const char *value, char *err, size_t errlen);
/* "" or at most 64 bytes of letters, digits, '.', '-' and '_' (node_name). */
int conf_value_node_name(const char *key, const char *value, char *err, size_t errlen);

/*
 * Splits datastore_options (libpq's conninfo syntax) into "key\0value\0"
 * pairs in a new *ret_arena of conf_value_arena_len(s) bytes, freed with
 * conf_value_arena_free; returns the number of pairs, or -EINVAL (err names
 * the pair, never a value: options can carry secrets) or -ENOMEM.  Keywords
 * that have a key of their own (host, sslmode, ...) are refused.
 */
int conf_value_options_split(const char *s, char **ret_arena, char *err, size_t errlen);
size_t conf_value_arena_len(const char *s);
void conf_value_arena_free(char *arena, size_t len);

#endif
