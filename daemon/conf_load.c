/*
 * conf_load.c - where a configuration comes from: the text of a config file,
 * the environment and --set arguments, and conf_load(), which layers them
 * (built-in defaults < file < environment < --set) into a finished Conf.
 * nvsrelayd's main.c calls conf_load() at start and on every reload, so a
 * reload sees exactly what a restart would; `nvsrelay import` (cli/import.c)
 * calls it for the same connection settings.
 *
 * Everything goes through conf_set(), so this file knows keys only through
 * conf.h (names and environment variables of the table).  Pure apart from
 * conf_load() reading the file it is given (fileio.c) and the password
 * file (datastore_password_file); nothing is logged.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "conf_load.h"
#include "conf_value.h"
#include "errbuf.h"
#include "fileio.h"

/*
 * Parses one line (without its '\n') into buf as "key\0value\0" and sets it.
 * Comments are whole lines only, so that passwords and datastore_options may
 * contain '#'.  A double-quoted value knows \\ \" \n \t \r; a single-quoted
 * one is literal.  After a closing quote only blanks or a comment may follow.
 */
static int load_line(Conf *c, const char *s, size_t n, char *buf, char *err, size_t errlen)
{
	size_t i = 0, k;
	char *w = buf, quote, sbuf[72];

	while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i == n || s[i] == '#')
		return 0;
	k = i;
	while (i < n && s[i] != '=' && s[i] != ' ' && s[i] != '\t')
		*w++ = s[i++];
	*w++ = '\0';
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	/* The line is not echoed: it may be a mistyped password. */
	if (i == n || s[i] != '=') {
		errbuf_set(err, errlen, "expected 'key = value'");
		return -EINVAL;
	}
	if (i == k) {
		errbuf_set(err, errlen, "missing key before '='");
		return -EINVAL;
	}
	i++;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (i < n && (s[i] == '"' || s[i] == '\'')) {
		quote = s[i++];
		for (;; i++) {
			if (i == n) {
				errbuf_set(err, errlen, "%s: unterminated quote", conf_value_shown(buf, sbuf, sizeof(sbuf)));
				return -EINVAL;
			}
			if (s[i] == quote)
				break;
			if (s[i] == '\\' && quote == '"') {
				if (++i == n) {
					errbuf_set(err, errlen, "%s: unterminated quote", conf_value_shown(buf, sbuf, sizeof(sbuf)));
					return -EINVAL;
				}
				switch (s[i]) {
				case '\\': case '"': *w++ = s[i]; break;
				case 'n': *w++ = '\n'; break;
				case 't': *w++ = '\t'; break;
				case 'r': *w++ = '\r'; break;
				default:
					errbuf_set(err, errlen, "%s: unknown escape in quoted value (known: \\\\ \\\" \\n \\t \\r)",
					       conf_value_shown(buf, sbuf, sizeof(sbuf)));
					return -EINVAL;
				}
				continue;
			}
			*w++ = s[i];
		}
		for (i++; i < n && (s[i] == ' ' || s[i] == '\t'); i++)
			;
		if (i < n && s[i] != '#') {
			errbuf_set(err, errlen, "%s: unexpected text after the closing quote", conf_value_shown(buf, sbuf, sizeof(sbuf)));
			return -EINVAL;
		}
	} else {
		while (i < n)
			*w++ = s[i++];
	}
	*w = '\0';
	return conf_set(c, buf, buf + strlen(buf) + 1, err, errlen);
}

int conf_load_text(Conf *c, const char *text, const char *source, char *err, size_t errlen)
{
	const char *p = text, *eol;
	char *buf = NULL, msg[512];
	size_t cap = 0, n;
	unsigned line = 0;
	int r = 0;

	if (!source)
		source = "(config)";
	if (!text)
		return 0;
	/* Some editors start files with a UTF-8 byte order mark. */
	if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3;
	for (; *p; p = *eol ? eol + 1 : eol) {
		eol = strchr(p, '\n');
		if (!eol)
			eol = p + strlen(p);
		n = (size_t)(eol - p);
		line++;
		if (n + 2 > cap) {
			/* The old buffer may hold a password: wipe, do not realloc. */
			if (buf)
				explicit_bzero(buf, cap);
			free(buf);
			cap = n + 2;
			buf = malloc(cap);
			if (!buf) {
				errbuf_set(err, errlen, "%s:%u: out of memory", source, line);
				r = -ENOMEM;
				goto out;
			}
		}
		msg[0] = '\0';
		r = load_line(c, p, n, buf, msg, sizeof(msg));
		if (r < 0) {
			errbuf_set(err, errlen, "%s:%u: %s", source, line, msg);
			goto out;
		}
	}
out:
	if (buf)
		explicit_bzero(buf, cap);
	free(buf);
	return r;
}

static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static int env_set(Conf *c, const char *key, const char *var, const char *value, char *err, size_t errlen)
{
	char msg[512];
	int r;

	msg[0] = '\0';
	r = conf_set(c, key, value, msg, sizeof(msg));
	if (r < 0)
		errbuf_set(err, errlen, "environment variable %s: %s", var, msg);
	return r;
}

/*
 * The seed variables first, then NVSRELAYD_<KEY>, so that the relay's own
 * name wins over the shared DATASTORE_* ones whatever the order of envp.
 * An empty seed variable counts as unset, as in NVSentinel (Go's Getenv, and
 * Helm writes "" for unset values); an empty NVSRELAYD_<KEY> sets "" (for
 * example to disable listen_unix).  Unknown NVSRELAYD_* names are ignored:
 * Kubernetes injects NVSRELAYD_PORT, NVSRELAYD_SERVICE_HOST and friends
 * into every pod of a namespace with a Service called nvsrelayd.
 */
int conf_load_env(Conf *c, char *const *envp, char *err, size_t errlen)
{
	char var[64];
	const char *val, *name, *alt, *key;
	int r;

	for (size_t i = 0; (key = conf_key_name(i)); i++) {
		if (!(name = conf_key_env(i, &alt)))
			continue;
		val = env_get(envp, name);
		if ((!val || !*val) && alt) {
			name = alt;
			val = env_get(envp, name);
		}
		if (val && *val && (r = env_set(c, key, name, val, err, errlen)) < 0)
			return r;
	}
	for (size_t i = 0; (key = conf_key_name(i)); i++) {
		size_t j;

		j = (size_t)snprintf(var, sizeof(var), "NVSRELAYD_");
		for (const char *s = key; *s && j + 1 < sizeof(var); s++)
			var[j++] = (*s >= 'a' && *s <= 'z') ? (char)(*s - 'a' + 'A') : *s;
		var[j] = '\0';
		val = env_get(envp, var);
		if (val && (r = env_set(c, key, var, val, err, errlen)) < 0)
			return r;
	}
	return 0;
}

/*
 * datastore_password_file: a password that is never in argv (which ps
 * shows) nor in the environment.  Held to the token file's rule: readable
 * by the daemon's user only.  Its first line is the password.
 */
static int load_password_file(Conf *c, char *err, size_t errlen)
{
	const struct conf_values *v = conf_values(c);
	const char *path = v->datastore_password_file;
	char buf[1025], msg[256];
	struct stat st;
	ssize_t n;
	int fd, r = -EINVAL;

	if (!*path)
		return 0;
	if (*v->datastore_password) {
		errbuf_set(err, errlen, "datastore_password and datastore_password_file are both set; give one");
		return -EINVAL;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		errbuf_set(err, errlen, "datastore_password_file %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		errbuf_set(err, errlen, "datastore_password_file %s: not a regular file", path);
		goto out;
	}
	if (fileio_mode_check((unsigned)st.st_mode, S_IRWXG | S_IRWXO, "datastore_password_file", path, "a password",
			      err, errlen) < 0)
		goto out;
	if ((n = read(fd, buf, sizeof(buf) - 1)) < 0) {
		errbuf_set(err, errlen, "datastore_password_file %s: %s", path, strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!*buf || (size_t)n == sizeof(buf) - 1) {
		errbuf_set(err, errlen, "datastore_password_file %s: expected one line of 1 to %zu bytes", path,
		       sizeof(buf) - 2);
		goto out;
	}
	msg[0] = '\0';
	if ((r = conf_set(c, "datastore_password", buf, msg, sizeof(msg))) < 0)
		errbuf_set(err, errlen, "datastore_password_file %s: %s", path, msg);
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return r;
}

int conf_load(const struct conf_sources *src, Conf **ret, char *err, size_t errlen)
{
	Conf *c = conf_new();
	char *text, msg[400];
	int r = -EBADMSG;

	*ret = NULL;
	if (!c) {
		errbuf_set(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (src->file) {
		/* No limit of its own: whatever fits in memory. */
		if (!(text = fileio_read(src->file, SIZE_MAX / 2, NULL))) {
			if (errno == ENOMEM)
				errbuf_set(err, errlen, "out of memory reading %s", src->file);
			else
				errbuf_set(err, errlen, "cannot open %s: %s", src->file, strerror(errno));
			goto out;
		}
		r = conf_load_text(c, text, src->file, err, errlen);
		explicit_bzero(text, strlen(text));   /* it may hold the password */
		free(text);
		if (r < 0)
			goto fail;
	}
	if (conf_load_env(c, src->envp, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < src->nsets; i++) {
		char *kv = strdup(src->sets[i]), *eq = kv ? strchr(kv, '=') : NULL;

		if (!eq) {
			errbuf_set(err, errlen, "--set expects KEY=VALUE, got '%s'", src->sets[i]);
			free(kv);
			r = -EINVAL;
			goto out;
		}
		*eq = '\0';
		r = conf_set(c, kv, eq + 1, msg, sizeof(msg));
		free(kv);
		if (r < 0) {
			errbuf_set(err, errlen, "--set: %s", msg);
			goto fail;
		}
	}
	if (load_password_file(c, err, errlen) < 0 || conf_finish(c, err, errlen) < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	r = -EBADMSG;
out:
	conf_free(c);
	return r;
}

static int check_path(const char *key, const char *path, bool dir, char *err, size_t errlen)
{
	struct stat st;

	if (!path || !*path)
		return 0;
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s: %s", key, path, strerror(errno));
		return -ENOENT;
	}
	if (dir != S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: %s is %s", key, path, dir ? "not a directory" : "a directory");
		return -ENOENT;
	}
	return 0;
}

int conf_load_check_files(const struct conf_values *v, char *err, size_t errlen)
{
	bool verify = v->datastore_sslmode == SSLMODE_VERIFY_CA || v->datastore_sslmode == SSLMODE_VERIFY_FULL;
	int r;

	if ((r = check_path("client_cert_mount_path", v->client_cert_mount_path, true, err, errlen)) < 0 ||
	    (r = check_path("datastore_sslcert", v->datastore_sslcert, false, err, errlen)) < 0 ||
	    (r = check_path("datastore_sslkey", v->datastore_sslkey, false, err, errlen)) < 0 ||
	    (verify && (r = check_path("datastore_sslrootcert", v->datastore_sslrootcert, false, err, errlen)) < 0) ||
	    (r = check_path("tls_cert_file", v->tls_cert_file, false, err, errlen)) < 0 ||
	    (r = check_path("tls_key_file", v->tls_key_file, false, err, errlen)) < 0 ||
	    (r = check_path("tls_ca_file", v->tls_ca_file, false, err, errlen)) < 0 ||
	    (r = check_path("auth_token_file", v->auth_token_file, false, err, errlen)) < 0)
		return r;
	return 0;
}
