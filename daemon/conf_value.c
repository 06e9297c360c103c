/*
 * conf_value.c - the syntax of configuration values: integers, octal file
 * modes, Unix socket paths, HOST:PORT, port and id lists, and libpq's
 * conninfo pairs in datastore_options.  conf.c's option table points its
 * keys at these checks; they know nothing of the table or of a Conf, so the
 * dependency runs one way (conf -> conf_value).
 *
 * Pure code: no I/O, no logging; messages name the key and go to the
 * caller's buffer.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "conf_value.h"
#include "errbuf.h"
#include "hostport.h"
#include "owners.h"

/*
 * libpq keywords that have a key of their own.  datastore_options may not set
 * them: the key is validated (sslmode) and documented, and a second spelling
 * would silently win or lose depending on order.
 */
static const struct {
	const char *libpq;
	const char *key;
} reserved[] = {
	{ "host", "datastore_host" },
	{ "port", "datastore_port" },
	{ "dbname", "datastore_database" },
	{ "user", "datastore_username" },
	{ "password", "datastore_password" },
	{ "sslmode", "datastore_sslmode" },
	{ "sslcert", "datastore_sslcert" },
	{ "sslkey", "datastore_sslkey" },
	{ "sslrootcert", "datastore_sslrootcert" },
};

/* Values are echoed in messages; keep them one short printable line so a
 * stray newline cannot break the caller's log line. */
const char *conf_value_shown(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 4 < len; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i]) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}


/* Parses a decimal int; false on anything but optional '-' and digits. */
bool conf_value_int(const char *s, long long *ret)
{
	long long n = 0;
	bool neg = false;

	if (*s == '-') {
		neg = true;
		s++;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		/* Saturate: anything this large is out of every range anyway. */
		if (n < LLONG_MAX / 10 - 10)
			n = n * 10 + (*s - '0');
	}
	*ret = neg ? -n : n;
	return true;
}

bool conf_value_octal(const char *s, long long *ret)
{
	long long n = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '7')
			return false;
		if (n < LLONG_MAX / 8 - 8)
			n = n * 8 + (*s - '0');
	}
	*ret = n;
	return true;
}


/* Each input byte yields at most one output byte, each pair ("k=") takes at
 * least two input bytes and adds two NULs. */
size_t conf_value_arena_len(const char *s)
{
	return 2 * strlen(s) + 2;
}

/* Frees an options arena; it holds many strings, some maybe secret. */
void conf_value_arena_free(char *arena, size_t len)
{
	if (arena) {
		explicit_bzero(arena, len);
		free(arena);
	}
}

/*
 * Splits datastore_options, which uses libpq's conninfo syntax: "key=value"
 * pairs separated by white space, white space around '=' allowed, a value in
 * single quotes may hold spaces, and a backslash escapes the next character.
 * Writes "key\0value\0" pairs to a new *ret_arena (conf_value_arena_len(s) bytes, free
 * with arena_free) and returns how many, or -EINVAL / -ENOMEM.  Messages name
 * the pair and its key but never a value: options can carry secrets
 * (sslpassword).
 */
int conf_value_options_split(const char *s, char **ret_arena, char *err, size_t errlen)
{
	char *arena = malloc(conf_value_arena_len(s)), *w = arena, *key;
	const char *p = s;
	int n = 0, r = -EINVAL;

	if (!arena)
		return -ENOMEM;
	for (;;) {
		while (is_space(*p))
			p++;
		if (!*p)
			break;
		key = w;
		while (*p && *p != '=' && !is_space(*p)) {
			if (!((*p >= 'a' && *p <= 'z') || *p == '_')) {
				errbuf_set(err, errlen, "datastore_options: pair %d: a libpq keyword is made of "
				       "lower-case letters and '_'", n + 1);
				goto out;
			}
			*w++ = *p++;
		}
		*w++ = '\0';
		while (is_space(*p))
			p++;
		if (*p != '=' || !*key) {
			errbuf_set(err, errlen, "datastore_options: pair %d is not key=value", n + 1);
			goto out;
		}
		for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
			if (strcmp(key, reserved[i].libpq) == 0) {
				errbuf_set(err, errlen, "datastore_options: '%s' has its own key, set %s instead",
				       key, reserved[i].key);
				goto out;
			}
		}
		p++;
		while (is_space(*p))
			p++;
		if (*p == '\'') {
			for (p++;; p++) {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '\'')
					break;
				if (!*p) {
					errbuf_set(err, errlen, "datastore_options: '%s': unterminated quote", key);
					goto out;
				}
				*w++ = *p;
			}
			p++;
		} else {
			for (; *p && !is_space(*p); p++) {
				if (*p == '\\' && p[1])
					p++;
				*w++ = *p;
			}
		}
		*w++ = '\0';
		n++;
	}
	*ret_arena = arena;
	return n;
out:
	conf_value_arena_free(arena, conf_value_arena_len(s));
	return r;
}

int conf_value_options(const char *key, const char *value, char *err, size_t errlen)
{
	char *arena = NULL;
	int r = conf_value_options_split(value, &arena, err, errlen);

	(void)key;      /* the messages name datastore_options, the one such key */
	if (r >= 0)
		conf_value_arena_free(arena, conf_value_arena_len(value));
	return r < 0 ? r : 0;
}

/* bind() would fail later with a bare ENAMETOOLONG; say it here instead. */
int conf_value_socket_path(const char *key, const char *value, char *err, size_t errlen)
{
	size_t max = sizeof(((struct sockaddr_un *)0)->sun_path);

	if (strlen(value) >= max) {
		errbuf_set(err, errlen, "%s: path is %zu bytes, a Unix socket path must be shorter than %zu",
		       key, strlen(value), max);
		return -EINVAL;
	}
	return 0;
}

/* HOST:PORT, HOST a name or an address ([...] for IPv6), PORT 1..65535. */
int conf_value_listen_addr(const char *key, const char *value, char *err, size_t errlen)
{
	struct hostport hp;

	if (*value && hostport_parse(value, 0, &hp) < 0) {
		errbuf_set(err, errlen, "%s: expected HOST:PORT (such as 127.0.0.1:9187 or [::1]:9187) or \"\"",
		       key);
		return -EINVAL;
	}
	return 0;
}

int conf_value_port_opt(const char *key, const char *value, char *err, size_t errlen)
{
	if (!*value)
		return 0;
	if (strchr(value, ',')) {
		errbuf_set(err, errlen, "%s: one port (1..65535) or \"\"", key);
		return -EINVAL;
	}
	return conf_value_port_list(key, value, err, errlen);
}

int conf_value_hostport_list(const char *key, const char *value, char *err, size_t errlen)
{
	const char *p = value;
	char item[HOSTPORT_HOST_MAX + 16];
	struct hostport hp;

	while (*p) {
		size_t len = strcspn(p, ",");

		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (len >= sizeof(item) || (memcpy(item, p, len), item[len] = '\0', hostport_parse(item, 0, &hp) < 0)) {
			errbuf_set(err, errlen, "%s: expected HOST:PORT[,HOST:PORT...] (such as 10.0.0.5:6543) or \"\"", key);
			return -EINVAL;
		}
		p += strcspn(p, ",");
		while (*p == ',' || *p == ' ')
			p++;
	}
	return 0;
}

int conf_value_node_name(const char *key, const char *value, char *err, size_t errlen)
{
	size_t n = strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");

	if (value[n] || n > 64) {
		errbuf_set(err, errlen, "%s: at most 64 letters, digits, '.', '-' and '_'", key);
		return -EINVAL;
	}
	return 0;
}

/* One port, or libpq's per-host list "p1,p2,..." (its length is checked
 * against datastore_host in conf_finish, once both are known). */
int conf_value_port_list(const char *key, const char *value, char *err, size_t errlen)
{
	char sbuf[72], item[24];
	const char *p = value;
	long long n;

	do {
		size_t len = strcspn(p, ",");

		if (len >= sizeof(item))
			len = sizeof(item) - 1;   /* still too large: out of range below */
		memcpy(item, p, len);
		item[len] = '\0';
		if (!conf_value_int(item, &n)) {
			errbuf_set(err, errlen, "%s: invalid value '%s' (expected a port 1..65535, or a comma list "
			       "of one port per host)", key, conf_value_shown(value, sbuf, sizeof(sbuf)));
			return -EINVAL;
		}
		if (n < 1 || n > 65535) {
			errbuf_set(err, errlen, "%s: %s is out of range (expected 1..65535)", key,
			       conf_value_shown(item, sbuf, sizeof(sbuf)));
			return -EINVAL;
		}
		p += strcspn(p, ",");
	} while (*p++ == ',');
	return 0;
}

size_t conf_value_count_items(const char *s)
{
	size_t n = 1;

	for (; *s; s++)
		n += *s == ',';
	return n;
}

/* A comma list of ids and user or group names; listener.c resolves the
 * names (that needs the user database, which pure code does not read). */
int conf_value_id_list(const char *key, const char *value, char *err, size_t errlen)
{
	const char *p = value;
	bool item = false, any = false;

	for (; *p; p++) {
		char ch = *p;

		if (ch == ',') {
			if (!item)
				break;
			item = false;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			   ch == '_' || ch == '.' || ch == '@' || ch == '$' || (ch == '-' && item)) {
			item = any = true;
		} else if (ch != ' ' && ch != '\t') {
			break;
		} else if (item && p[1] && p[1] != ' ' && p[1] != '\t' && p[1] != ',') {
			break;           /* a blank inside an item */
		}
	}
	if (*p || (any && !item)) {
		errbuf_set(err, errlen, "%s: expected a comma list of numbers and names, such as \"0, 1000, nvsentinel\"",
		       key);
		return -EINVAL;
	}
	return 0;
}

/* True for an address written out that is not a loopback one (loopback:
 * 127.0.0.0/8, ::1, ::ffff:127.x.y.z).  Names are resolved and checked by
 * listener.c. */
bool conf_value_non_loopback(const char *value)
{
	struct hostport hp;
	unsigned char a[16];

	if (hostport_parse(value, 0, &hp) < 0)
		return false;
	if (inet_pton(AF_INET, hp.host, a) == 1)
		return a[0] != 127;
	if (inet_pton(AF_INET6, hp.host, a) == 1) {
		static const unsigned char lo[16] = { [15] = 1 };
		static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };

		return memcmp(a, lo, 16) != 0 && !(memcmp(a, mapped, 12) == 0 && a[12] == 127);
	}
	return false;
}

int conf_value_owners(const char *key, const char *value, char *err, size_t errlen)
{
	Owners *o;
	char why[200];
	int r = owners_parse(value, &o, why, sizeof(why));

	owners_free(o);
	if (r < 0)
		snprintf(err, errlen, "%s: %s", key, why);
	return r;
}
