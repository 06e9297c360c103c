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
 * (client_count_refusal) and a log line, never a silent drop.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <systemd/sd-daemon.h>

#include "errors.h"
#include "allow.h"
#include "listener.h"
#include "log.h"
#include "tls.h"

#define MAX_SOCKS 8
#define BACKLOG 128
/* TLS connections past max_clients get their refusal after the handshake;
 * beyond this many more they are closed outright. */
#define REFUSING_MAX 64
/* Out of file descriptors: stop accepting this long rather than spin. */
#define ACCEPT_PAUSE 1.0
#define TOKEN_MAX 4096
#define TOKEN_MIN 16

struct lsock {
	struct listener *l;
	int fd;
	bool tcp;
	bool adopted;            /* passed by systemd: never unlinked */
	char name[128];          /* path or address, for the log */
	ev_io io;
};

struct listener {
	struct client_env env;
	struct lsock socks[MAX_SOCKS];
	size_t nsocks;
	bool started;
	bool adopted_unix, adopted_tcp;
	char bound_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* created here: unlinked at the end */
	struct addrinfo *tcp_addrs;     /* listen_tcp, resolved; bound at start */
	bool tcp_plaintext;
	TlsServer *tls;
	bool need_token;
	unsigned char token_sha256[32];
	struct allow_list uids, gids;
	uid_t self;
	ev_timer pause;          /* accepting paused after EMFILE */
};

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents);

static int add_sock(Listener *l, int fd, bool tcp, bool adopted, const char *name)
{
	struct lsock *s;

	if (l->nsocks == MAX_SOCKS)
		return -ENOSPC;
	s = &l->socks[l->nsocks++];
	s->l = l;
	s->fd = fd;
	s->tcp = tcp;
	s->adopted = adopted;
	snprintf(s->name, sizeof(s->name), "%s", name);
	ev_io_init(&s->io, accept_cb, fd, EV_READ);
	s->io.data = s;
	return 0;
}

static const char *sockaddr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "unix");
	}
	return buf;
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
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

	client_count_refusal(why);
	log_warning("client refused peer=%s refusal=%s reason='%s'", peer, client_refusal_name(why), msg);
	if (send(fd, frame, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("refusal frame not sent peer=%s error='%s'", peer, strerror(errno));
	close(fd);
}

/* --- accepting --------------------------------------------------------- */

static bool peer_allowed(Listener *l, int fd, const struct ucred *cred)
{
	gid_t small[64], *groups = small;
	unsigned ids[64 + 1], *pid = ids;
	socklen_t glen = 0;
	size_t n = 0;
	bool ok;

	if (l->uids.n == 0 && l->gids.n == 0)
		return true;
	/* The daemon's own user (its admin tools) is always let in. */
	if (cred->uid == l->self)
		return true;
#ifdef SO_PEERGROUPS
	/* Supplementary groups count too, as they do for the file mode. */
	glen = sizeof(small);
	if (l->gids.n > 0 && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) < 0) {
		groups = errno == ERANGE ? malloc(glen) : NULL;
		if (groups && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) < 0) {
			free(groups);
			groups = NULL;
		}
		if (!groups)
			glen = 0;
	} else if (l->gids.n == 0) {
		glen = 0;
	}
#else
	(void)fd;
#endif
	n = 1 + glen / sizeof(gid_t);
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
	socklen_t clen = sizeof(cred);
	char peer[64], msg[160];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		cred.pid = 0;
		cred.uid = (uid_t)-1;
		cred.gid = (gid_t)-1;
	}
	snprintf(peer, sizeof(peer), "unix:pid=%d,uid=%u", (int)cred.pid, (unsigned)cred.uid);
	if (!peer_allowed(l, fd, &cred)) {
		snprintf(msg, sizeof(msg), "uid %u (gid %u) is not allowed on this socket (unix_allow_uids, unix_allow_gids)",
			 (unsigned)cred.uid, (unsigned)cred.gid);
		refuse_fd(fd, REFUSAL_PEER_NOT_ALLOWED, ERR_UNAUTHORIZED, msg, peer);
		return;
	}
	if (client_count() >= (size_t)l->env.cv->max_clients) {
		refuse_fd(fd, REFUSAL_MAX_CLIENTS, ERR_EXCEEDED_LIMIT, "too many clients (max_clients)", peer);
		return;
	}
	client_new(&l->env, fd, peer, NULL);
}

static void accept_tcp(Listener *l, int fd, const struct sockaddr *sa)
{
	struct client_transport t = { NULL, l->need_token ? l->token_sha256 : NULL };
	size_t max = (size_t)l->env.cv->max_clients;
	char addr[80], peer[96], err[256];
	int on = 1, idle = 60, intvl = 10, cnt = 6;
	Client *c;

	snprintf(peer, sizeof(peer), "%s:%s", l->tls ? "tls" : "tcp", sockaddr_text(sa, addr, sizeof(addr)));
	/* Frames are written whole, often small (pong, bookmark); a dead peer
	 * behind a silent network is found in about two minutes. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	if (!l->tls) {
		if (client_count() >= max) {
			refuse_fd(fd, REFUSAL_MAX_CLIENTS, ERR_EXCEEDED_LIMIT,
				  "too many clients (max_clients)", peer);
			return;
		}
		client_new(&l->env, fd, peer, &t);
		return;
	}
	if (client_count() >= max + REFUSING_MAX) {
		client_count_refusal(REFUSAL_MAX_CLIENTS);
		log_warning("client refused peer=%s refusal=max_clients reason='too many clients, closed before TLS'",
			    peer);
		close(fd);
		return;
	}
	if (!(t.ssl = tls_server_session(l->tls, fd, err, sizeof(err)))) {
		log_warning("client not accepted peer=%s reason='%s'", peer, err);
		close(fd);
		return;
	}
	c = client_new(&l->env, fd, peer, &t);
	if (c && client_count() > max)
		client_refuse(c, REFUSAL_MAX_CLIENTS, ERR_EXCEEDED_LIMIT, "too many clients (max_clients)");
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Listener *l = w->data;

	(void)revents;
	for (size_t i = 0; i < l->nsocks; i++)
		ev_io_start(loop, &l->socks[i].io);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct lsock *s = w->data;
	Listener *l = s->l;
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd;

	(void)revents;
	for (;;) {
		salen = sizeof(sa);
		fd = accept4(s->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
				return;
			log_warning("accept failed socket=%s error='%s'", s->name, strerror(errno));
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* The pending connection stays readable: without a
				 * pause the loop would spin on it. */
				for (size_t i = 0; i < l->nsocks; i++)
					ev_io_stop(loop, &l->socks[i].io);
				ev_timer_set(&l->pause, ACCEPT_PAUSE, 0.);
				ev_timer_start(loop, &l->pause);
			}
			return;
		}
		if (s->tcp)
			accept_tcp(l, fd, (struct sockaddr *)&sa);
		else
			accept_unix(l, fd);
	}
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
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
		    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			snprintf(err, errlen, "systemd passed socket '%s' (fd %d): %s", name, fd, strerror(errno));
			r = -errno;
			goto out;
		}
		if (want_unix) {
			struct sockaddr_un sa;
			socklen_t len = sizeof(sa);

			memset(&sa, 0, sizeof(sa));
			getsockname(fd, (struct sockaddr *)&sa, &len);
			snprintf(what, sizeof(what), "%s", sa.sun_path[0] ? sa.sun_path : "(unnamed)");
			l->adopted_unix = true;
		} else {
			struct sockaddr_storage sa;
			socklen_t len = sizeof(sa);

			memset(&sa, 0, sizeof(sa));
			getsockname(fd, (struct sockaddr *)&sa, &len);
			sockaddr_text((struct sockaddr *)&sa, what, sizeof(what));
			if (l->tcp_plaintext && !is_loopback((struct sockaddr *)&sa)) {
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
	const char *v = l->env.cv->listen_tcp, *colon = strrchr(v, ':');
	struct addrinfo hints, *ai;
	char host[256];
	size_t hlen = colon ? (size_t)(colon - v) : 0;
	int r;

	/* conf.c checked the HOST:PORT shape. */
	if (hlen >= 2 && v[0] == '[') {
		v++;
		hlen -= 2;
	}
	if (!colon || hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errlen, "listen_tcp = %s: expected HOST:PORT", l->env.cv->listen_tcp);
		return -EINVAL;
	}
	memcpy(host, v, hlen);
	host[hlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	r = getaddrinfo(host, colon + 1, &hints, &l->tcp_addrs);
	if (r != 0) {
		snprintf(err, errlen, "listen_tcp = %s: %s", l->env.cv->listen_tcp, gai_strerror(r));
		l->tcp_addrs = NULL;
		return -EINVAL;
	}
	for (ai = l->tcp_addrs; ai; ai = ai->ai_next) {
		if (l->tcp_plaintext && !is_loopback(ai->ai_addr)) {
			char a[80];
			snprintf(err, errlen, "tcp_plaintext = on is allowed on a loopback address only, and "
				 "listen_tcp = %s is %s; use TLS (tls_cert_file, tls_key_file) for other addresses",
				 l->env.cv->listen_tcp, sockaddr_text(ai->ai_addr, a, sizeof(a)));
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
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "auth_token_file %s has mode %04o: a token must not be readable by group or "
			 "others (chmod 600, or defaultMode: 0400 for a Kubernetes secret)",
			 path, (unsigned)(st.st_mode & 07777));
		r = -EPERM;
		goto out;
	}
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
	ev_init(&l->pause, pause_cb);
	l->pause.data = l;
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
	return l;
fail:
	listener_free(l);
	return NULL;
}

static int bind_unix(Listener *l, char *err, size_t errlen)
{
	const char *path = l->env.cv->listen_unix;
	struct sockaddr_un sa;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s", sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* A socket file left by a killed predecessor would make bind fail. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	memcpy(l->bound_path, path, strlen(path) + 1);
	if (chmod(path, (mode_t)l->env.cv->unix_socket_mode) < 0 || listen(fd, BACKLOG) < 0 ||
	    add_sock(l, fd, false, false, path) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -EADDRNOTAVAIL;
}

static int bind_tcp(Listener *l, char *err, size_t errlen)
{
	size_t bound = 0;
	char a[80];
	int e = 0;

	for (struct addrinfo *ai = l->tcp_addrs; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		int on = 1;

		sockaddr_text(ai->ai_addr, a, sizeof(a));
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		/* "localhost" gives 127.0.0.1 and ::1: each its own socket. */
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, BACKLOG) < 0) {
			e = errno;
			close(fd);
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
	for (size_t i = 0; i < l->nsocks; i++) {
		struct lsock *s = &l->socks[i];

		ev_io_start(l->env.loop, &s->io);
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
	ev_timer_stop(l->env.loop, &l->pause);
	for (size_t i = 0; i < l->nsocks; i++) {
		ev_io_stop(l->env.loop, &l->socks[i].io);
		/* systemd keeps its own copy of an adopted socket. */
		close(l->socks[i].fd);
	}
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
