/*
 * listener.c - accepts subscriber connections: on the Unix socket, checking
 * the peer's credentials (SO_PEERCRED) against unix_allow_uids and
 * unix_allow_gids, and on the TCP listener, where each connection gets a TLS
 * session and, with auth_token_file, must present the token in its hello.
 * Sockets passed by systemd (sd_listen_fds_with_names, names "unix" and
 * "tcp", or by type when unnamed) are adopted instead of bound.
 *
 * Everything that can be wrong in the configuration is checked by
 * listener_new, before the daemon connects anywhere; binding waits for
 * listener_start, so nobody connects to a relay that is not ready.
 * Refusals (max_clients, a peer not allowed) are an error frame, a counter
 * (clientstat_refused) and a log line, never a silent drop.  The sockets
 * themselves (listening, accepting, peer credentials) are net.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <systemd/sd-daemon.h>

#include "errors.h"
#include "allow.h"
#include "fileio.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "tls.h"

#define BACKLOG 128
#define TOKEN_MAX 4096
#define TOKEN_MIN 16

struct lsock {
	struct listener *l;
	bool tcp;
	bool adopted;            /* passed by systemd: never unlinked */
	char name[128];          /* path or address, for the log */
};

struct listener {
	struct client_env env;
	NetAcceptor *acc;        /* owns the sockets */
	struct lsock socks[NET_ACCEPTOR_MAX];
	size_t nsocks;
	bool started;
	bool adopted_unix, adopted_tcp;
	char bound_path[NET_UNIX_PATH_MAX]; /* created here: unlinked at the end */
	struct addrinfo *tcp_addrs;     /* listen_tcp, resolved; bound at start */
	bool tcp_plaintext;
	TlsServer *tls;
	bool need_token;
	unsigned char token_sha256[32];
	struct allow_list uids, gids;
	uid_t self;
};

/* The acceptor takes fd (and closes it) only when it is added. */
static int add_sock(Listener *l, int fd, bool tcp, bool adopted, const char *name)
{
	struct lsock *s = &l->socks[l->nsocks];

	if (net_acceptor_add(l->acc, fd, s) < 0)
		return -ENOSPC;
	l->nsocks++;
	s->l = l;
	s->tcp = tcp;
	s->adopted = adopted;
	snprintf(s->name, sizeof(s->name), "%s", name);
	return 0;
}

/* --- refusing ---------------------------------------------------------- */

/* A refusal before any client exists: one error frame on the fresh socket
 * (its buffer is empty, so it fits), the counter, the log line. */
static void refuse_fd(int fd, enum client_refusal why, int code, const char *msg,
		      const char *peer)
{
	char frame[320];
	int n = snprintf(frame, sizeof(frame), "{\"op\":\"error\",\"code\":%d,\"codeName\":\"%s\",\"message\":\"%s\"}\n",
			 code, proto_error_name(code), msg);

	clientstat_refused(why);
	log_warning("client refused peer=%s refusal=%s reason='%s'", peer, clientstat_refusal_name(why), msg);
	if (send(fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("refusal frame not sent peer=%s error='%s'", peer, strerror(errno));
	close(fd);
}

/* --- accepting --------------------------------------------------------- */

static bool peer_allowed(Listener *l, int fd, const struct ucred *cred)
{
	gid_t small[64], *groups = small;
	unsigned ids[64 + 1], *pid = ids;
	size_t n = 0;
	bool ok;

	if (l->uids.n == 0 && l->gids.n == 0)
		return true;
	/* The daemon's own user (its admin tools) is always let in. */
	if (cred->uid == l->self)
		return true;
	/* Supplementary groups count too, as they do for the file mode. */
	if (l->gids.n > 0)
		n = net_peer_groups(fd, small, sizeof(small) / sizeof(small[0]), &groups);
	n++;
	if (n > sizeof(ids) / sizeof(ids[0]) && !(pid = malloc(n * sizeof(*pid))))
		n = 1;
	pid[0] = cred->gid;
	for (size_t i = 1; i < n; i++)
		pid[i] = groups[i - 1];
	ok = allow_peer(&l->uids, &l->gids, cred->uid, pid, n);
	if (groups != small)
		free(groups);
	if (pid != ids)
		free(pid);
	return ok;
}

static void accept_unix(Listener *l, int fd)
{
	struct ucred cred;
	char peer[64], who[48], msg[160];

	if (net_peer_cred(fd, &cred) < 0) {
		cred.pid = 0;
		cred.uid = (uid_t)-1;
		cred.gid = (gid_t)-1;
	}
	snprintf(peer, sizeof(peer), "unix:%s", net_cred_text(&cred, who, sizeof(who)));
	if (!peer_allowed(l, fd, &cred)) {
		snprintf(msg, sizeof(msg), "uid %u (gid %u) is not allowed on this socket (unix_allow_uids, unix_allow_gids)",
			 (unsigned)cred.uid, (unsigned)cred.gid);
		refuse_fd(fd, REFUSAL_PEER_NOT_ALLOWED, ERR_UNAUTHORIZED, msg, peer);
		return;
	}
	/* The peer's credentials are its authentication: a Unix client that
	 * is let in counts against max_clients at once, and may stay idle. */
	if (client_count_authenticated() >= (size_t)l->env.cv->max_clients) {
		refuse_fd(fd, REFUSAL_MAX_CLIENTS, ERR_EXCEEDED_LIMIT, "too many clients (max_clients)", peer);
		return;
	}
	client_new(&l->env, fd, peer, &(struct client_transport){ .has_cred = cred.uid != (uid_t)-1,
								 .uid = cred.uid, .gid = cred.gid });
}

static void accept_tcp(Listener *l, int fd, const struct sockaddr *sa)
{
	struct client_transport t = { .token_sha256 = l->need_token ? l->token_sha256 : NULL };
	size_t max = (size_t)l->env.cv->max_clients;
	char addr[80], peer[96], err[256];
	int on = 1, idle = 60, intvl = 10, cnt = 6;

	snprintf(peer, sizeof(peer), "%s:%s", l->tls ? "tls" : "tcp", net_addr_text(sa, addr, sizeof(addr)));
	/* Frames are written whole, often small (pong, bookmark); a dead peer
	 * behind a silent network is found in about two minutes. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	if (!l->tls && !l->need_token) {
		/* Plaintext on loopback without a token: nothing to wait for
		 * (conf.c refuses it beside a Unix allow-list). */
		if (client_count_authenticated() >= max) {
			refuse_fd(fd, REFUSAL_MAX_CLIENTS, ERR_EXCEEDED_LIMIT,
				  "too many clients (max_clients)", peer);
			return;
		}
		client_new(&l->env, fd, peer, &t);
		return;
	}
	/* Until its handshake and token are done a connection counts against
	 * its own budget; max_clients is checked when it is through, so that
	 * silent connections cannot lock the subscribers out. */
	if (client_count_unauthenticated() >= CLIENT_UNAUTH_MAX) {
		if (l->tls) {
			/* Plain text would be noise to a TLS client. */
			clientstat_refused(REFUSAL_UNAUTHENTICATED);
			log_warning("client refused peer=%s refusal=unauthenticated reason='%d connections are "
				    "still authenticating, closed before TLS'", peer, CLIENT_UNAUTH_MAX);
			close(fd);
		} else {
			refuse_fd(fd, REFUSAL_UNAUTHENTICATED, ERR_EXCEEDED_LIMIT,
				  "too many connections still authenticating", peer);
		}
		return;
	}
	if (l->tls && !(t.ssl = tls_server_session(l->tls, fd, err, sizeof(err)))) {
		log_warning("client not accepted peer=%s reason='%s'", peer, err);
		close(fd);
		return;
	}
	client_new(&l->env, fd, peer, &t);
}

static void accept_cb(void *ud, int fd, const struct sockaddr *sa)
{
	struct lsock *s = ud;

	if (fd < 0)
		log_warning("accept failed socket=%s error='%s'", s->name, strerror(-fd));
	else if (s->tcp)
		accept_tcp(s->l, fd, sa);
	else
		accept_unix(s->l, fd);
}

/* --- preparing --------------------------------------------------------- */

static bool default_fd_name(const char *name)
{
	size_t n = strlen(name);

	/* Without FileDescriptorName= systemd names a socket after its unit;
	 * systemd-socket-activate without --fdname says "unknown". */
	return strcmp(name, "unknown") == 0 || (n > 7 && strcmp(name + n - 7, ".socket") == 0);
}

/* Takes over the subscriber sockets systemd passed.  Other passed sockets
 * (the admin socket, the HTTP endpoint) are left to their modules. */
static int adopt(Listener *l, char *err, size_t errlen)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(0, &names), r = 0;

	if (n < 0) {
		snprintf(err, errlen, "cannot read the sockets passed by systemd: %s", strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		bool is_unix = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0;
		bool is_inet = sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) > 0;
		bool want_unix = strcmp(name, "unix") == 0 || (default_fd_name(name) && is_unix && !l->adopted_unix);
		bool want_tcp = strcmp(name, "tcp") == 0 || (default_fd_name(name) && is_inet && !l->adopted_tcp);
		struct sockaddr_storage sa;
		char what[128];

		if (!want_unix && !want_tcp)
			continue;
		if ((want_unix && (!is_unix || l->adopted_unix)) || (want_tcp && (!is_inet || l->adopted_tcp))) {
			snprintf(err, errlen, "systemd passed socket '%s' (fd %d), which is not %s listening %s stream socket",
				 name, fd, (want_unix ? l->adopted_unix : l->adopted_tcp) ? "a second" : "a",
				 want_unix ? "Unix" : "TCP");
			r = -EINVAL;
			goto out;
		}
		if ((r = net_adopt_fd(fd)) < 0) {
			snprintf(err, errlen, "systemd passed socket '%s' (fd %d): %s", name, fd, strerror(-r));
			goto out;
		}
		net_sock_text(fd, &sa, what, sizeof(what));
		if (want_unix) {
			l->adopted_unix = true;
		} else {
			if (l->tcp_plaintext && !net_is_loopback((struct sockaddr *)&sa)) {
				snprintf(err, errlen, "tcp_plaintext = on is allowed on a loopback address only, and the "
					 "TCP socket systemd passed is bound to %s; use TLS (tls_cert_file, tls_key_file)",
					 what);
				r = -EINVAL;
				goto out;
			}
			l->adopted_tcp = true;
		}
		if ((r = add_sock(l, fd, want_tcp, true, what)) < 0) {
			snprintf(err, errlen, "too many sockets passed by systemd");
			goto out;
		}
		log_notice("using socket passed by systemd name=%s fd=%d socket=%s", name, fd, what);
	}
	if (l->adopted_unix && *l->env.cv->listen_unix)
		log_notice("listen_unix ignored: systemd passed the Unix socket");
	if (l->adopted_tcp && *l->env.cv->listen_tcp)
		log_notice("listen_tcp ignored: systemd passed the TCP socket");
out:
	for (int i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

static int resolve_tcp(Listener *l, char *err, size_t errlen)
{
	const char *why;
	int r;

	/* conf.c checked the HOST:PORT shape. */
	r = net_resolve_passive(l->env.cv->listen_tcp, &l->tcp_addrs, &why);
	if (r == -EINVAL) {
		snprintf(err, errlen, "listen_tcp = %s: expected HOST:PORT", l->env.cv->listen_tcp);
		return r;
	}
	if (r < 0) {
		snprintf(err, errlen, "listen_tcp = %s: %s", l->env.cv->listen_tcp, why);
		return -EINVAL;
	}
	for (struct addrinfo *ai = l->tcp_addrs; ai; ai = ai->ai_next) {
		if (l->tcp_plaintext && !net_is_loopback(ai->ai_addr)) {
			char a[80];
			snprintf(err, errlen, "tcp_plaintext = on is allowed on a loopback address only, and "
				 "listen_tcp = %s is %s; use TLS (tls_cert_file, tls_key_file) for other addresses",
				 l->env.cv->listen_tcp, net_addr_text(ai->ai_addr, a, sizeof(a)));
			return -EINVAL;
		}
	}
	return 0;
}

/* The bearer token: one line, kept only as its SHA-256. */
static int load_token(Listener *l, const char *path, char *err, size_t errlen)
{
	char buf[TOKEN_MAX + 2];
	struct stat st;
	ssize_t n;
	size_t len;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), r = 0;
	unsigned int mdlen = 0;

	if (fd < 0) {
		snprintf(err, errlen, "auth_token_file %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "auth_token_file %s: not a regular file", path);
		r = -EINVAL;
		goto out;
	}
	if ((r = fileio_mode_check((unsigned)st.st_mode, S_IRWXG | S_IRWXO, "auth_token_file", path, "a token",
				   err, errlen)) < 0)
		goto out;
	n = read(fd, buf, sizeof(buf));
	if (n < 0) {
		snprintf(err, errlen, "auth_token_file %s: %s", path, strerror(errno));
		r = -errno;
		goto out;
	}
	len = (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
			   buf[len - 1] == '\t'))
		len--;
	if (len > TOKEN_MAX || memchr(buf, '\n', len)) {
		snprintf(err, errlen, "auth_token_file %s: expected one line of at most %d bytes", path, TOKEN_MAX);
		r = -EINVAL;
		goto out;
	}
	if (len < TOKEN_MIN) {
		snprintf(err, errlen, "auth_token_file %s: the token must be at least %d bytes (such as the output "
			 "of openssl rand -hex 32)", path, TOKEN_MIN);
		r = -EINVAL;
		goto out;
	}
	if (EVP_Digest(buf, len, l->token_sha256, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != sizeof(l->token_sha256)) {
		snprintf(err, errlen, "auth_token_file %s: cannot hash the token", path);
		r = -EINVAL;
		goto out;
	}
	l->need_token = true;
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return r;
}

static int resolve_user(const char *name, unsigned *ret_id, void *ud)
{
	struct passwd *pw = getpwnam(name);

	(void)ud;
	if (!pw)
		return -ENOENT;
	*ret_id = (unsigned)pw->pw_uid;
	return 0;
}

static int resolve_group(const char *name, unsigned *ret_id, void *ud)
{
	struct group *gr = getgrnam(name);

	(void)ud;
	if (!gr)
		return -ENOENT;
	*ret_id = (unsigned)gr->gr_gid;
	return 0;
}

Listener *listener_new(const struct client_env *env, char *err, size_t errlen)
{
	const struct conf_values *cv = env->cv;
	Listener *l = calloc(1, sizeof(*l));
	bool tcp;

	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->env = *env;
	l->self = geteuid();
	l->tcp_plaintext = cv->tcp_plaintext && !*cv->tls_cert_file;
	if (!(l->acc = net_acceptor_new(env->loop, accept_cb))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* 24: ERR_EXCEEDED_LIMIT.  Over TLS the frame is noise; the close is not. */
	net_acceptor_refusal(l->acc, "{\"op\":\"error\",\"code\":24,\"codeName\":\"ExceededLimit\","
			     "\"message\":\"out of file descriptors; try again later\"}\n");
	if (adopt(l, err, errlen) < 0)
		goto fail;
	if (!l->adopted_tcp && *cv->listen_tcp && resolve_tcp(l, err, errlen) < 0)
		goto fail;
	tcp = l->adopted_tcp || l->tcp_addrs;
	/* conf.c holds listen_tcp to these rules; a socket from systemd must
	 * follow them too. */
	if (tcp && !*cv->tls_cert_file && !l->tcp_plaintext) {
		snprintf(err, errlen, "the TCP listener needs TLS (tls_cert_file and tls_key_file), or "
			 "tcp_plaintext = on for a loopback address");
		goto fail;
	}
	if (tcp && *cv->tls_cert_file && !*cv->tls_ca_file && !*cv->auth_token_file) {
		snprintf(err, errlen, "the TCP listener with TLS needs client certificates (tls_ca_file) or a "
			 "token (auth_token_file)");
		goto fail;
	}
	if (*cv->tls_cert_file) {
		if (!(l->tls = tls_server_new(cv->tls_cert_file, cv->tls_key_file, cv->tls_ca_file, err, errlen)))
			goto fail;
		if (!tcp)
			log_notice("tls_cert_file is set but there is no TCP listener (listen_tcp is empty), ignoring");
	}
	if (*cv->auth_token_file && load_token(l, cv->auth_token_file, err, errlen) < 0)
		goto fail;
	if (allow_parse(cv->unix_allow_uids, "unix_allow_uids", resolve_user, NULL, &l->uids, err, errlen) < 0 ||
	    allow_parse(cv->unix_allow_gids, "unix_allow_gids", resolve_group, NULL, &l->gids, err, errlen) < 0)
		goto fail;
	/* conf.c's rule, for a socket from systemd too: TCP has no peer
	 * credentials to hold to the allow-list. */
	if (tcp && l->tcp_plaintext && !l->need_token && (l->uids.n || l->gids.n)) {
		snprintf(err, errlen, "tcp_plaintext = on without a token lets every local user in over TCP, around "
			 "unix_allow_uids and unix_allow_gids; set auth_token_file, use TLS, or leave the allow-list empty");
		goto fail;
	}
	return l;
fail:
	listener_free(l);
	return NULL;
}

static int bind_unix(Listener *l, char *err, size_t errlen)
{
	const char *path = l->env.cv->listen_unix;
	int fd = net_listen_unix(path, (unsigned)l->env.cv->unix_socket_mode, BACKLOG);

	if (fd == -ENAMETOOLONG) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s", NET_UNIX_PATH_MAX - 1, path);
		return fd;
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(-fd));
		return -EADDRNOTAVAIL;
	}
	memcpy(l->bound_path, path, strlen(path) + 1);
	if (add_sock(l, fd, false, false, path) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(ENOSPC));
		close(fd);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

static int bind_tcp(Listener *l, char *err, size_t errlen)
{
	size_t bound = 0;
	char a[80];
	int e = 0;

	for (struct addrinfo *ai = l->tcp_addrs; ai; ai = ai->ai_next) {
		/* "localhost" gives 127.0.0.1 and ::1: each its own socket. */
		int fd = net_listen_tcp(ai, BACKLOG, true);

		net_addr_text(ai->ai_addr, a, sizeof(a));
		if (fd < 0) {
			e = -fd;
			/* An address family the host does not have (no IPv6)
			 * only matters when it was the only one. */
			if (e == EADDRNOTAVAIL || e == EAFNOSUPPORT) {
				log_notice("not listening on %s: %s", a, strerror(e));
				continue;
			}
			snprintf(err, errlen, "cannot listen on %s (listen_tcp): %s", a, strerror(e));
			return -e;
		}
		if (add_sock(l, fd, true, false, a) < 0) {
			close(fd);
			snprintf(err, errlen, "listen_tcp: too many addresses");
			return -ENOSPC;
		}
		bound++;
	}
	if (!bound) {
		snprintf(err, errlen, "cannot listen on listen_tcp = %s: %s", l->env.cv->listen_tcp,
			 strerror(e ? e : EADDRNOTAVAIL));
		return -(e ? e : EADDRNOTAVAIL);
	}
	return 0;
}

int listener_start(Listener *l, char *err, size_t errlen)
{
	const struct conf_values *cv = l->env.cv;
	int r;

	if (l->started)
		return 0;
	if (!l->adopted_unix && *cv->listen_unix && (r = bind_unix(l, err, errlen)) < 0)
		return r;
	if (l->tcp_addrs && (r = bind_tcp(l, err, errlen)) < 0)
		return r;
	net_acceptor_start(l->acc);
	for (size_t i = 0; i < l->nsocks; i++) {
		const struct lsock *s = &l->socks[i];

		if (s->tcp)
			log_notice("listening tcp=%s transport=%s%s", s->name, l->tls ? "tls" : "plaintext",
				   l->tls && tls_server_verifies_clients(l->tls) ? " client_certificates=required" :
				   l->need_token ? " token=required" : "");
		else
			log_notice("listening socket=%s%s", s->name,
				   l->uids.n || l->gids.n ? " allow_list=on" : "");
	}
	l->started = true;
	return 0;
}

bool listener_started(const Listener *l)
{
	return l && l->started;
}

void listener_free(Listener *l)
{
	if (!l)
		return;
	/* systemd keeps its own copy of an adopted socket. */
	net_acceptor_free(l->acc);
	if (l->bound_path[0])
		unlink(l->bound_path);
	if (l->tcp_addrs)
		freeaddrinfo(l->tcp_addrs);
	tls_server_free(l->tls);
	allow_clear(&l->uids);
	allow_clear(&l->gids);
	explicit_bzero(l->token_sha256, sizeof(l->token_sha256));
	free(l);
}
