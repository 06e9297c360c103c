/*
 * net.c - listening, accepting and naming peers for the daemon's servers
 * (see net.h).  Every socket here is non-blocking and close-on-exec from
 * its first moment: the event loop must never wait on one, and none may
 * leak into another program.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostport.h"
#include "net.h"

/* Out of file descriptors: stop accepting this long rather than spin. */
#define ACCEPT_PAUSE 1.0

struct net_lsock {
	NetAcceptor *a;
	int fd;
	void *ud;
	ev_io io;
};

struct net_acceptor {
	struct ev_loop *loop;
	net_accept_fn fn;
	const char *refusal;     /* sent to a connection refused for want of fds */
	struct net_lsock socks[NET_ACCEPTOR_MAX];
	size_t n;
	ev_timer pause;          /* accepting paused after EMFILE */
};

/* --- listening ----------------------------------------------------------- */

bool net_unix_alive(const char *path)
{
	struct sockaddr_un sa;
	size_t len = strlen(path);
	bool alive;
	int fd;

	if (len >= sizeof(sa.sun_path))
		return false;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		return false;
	/* EAGAIN: a full backlog, still someone's. */
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
	close(fd);
	return alive;
}

int net_listen_unix(const char *path, unsigned mode, int backlog)
{
	struct sockaddr_un sa;
	size_t len = strlen(path);
	int fd, e;

	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file left by a killed predecessor would make bind fail. */
	if (net_unix_alive(path)) {
		close(fd);
		return -EADDRINUSE;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	if (chmod(path, (mode_t)mode) < 0 || listen(fd, backlog) < 0) {
		e = errno;
		close(fd);
		unlink(path);
		return -e;
	}
	return fd;
}

int net_resolve_passive(const char *addr, struct addrinfo **res, const char **why)
{
	struct addrinfo hints;
	struct hostport hp;
	int r;

	*res = NULL;
	*why = "expected HOST:PORT";
	if (hostport_parse(addr, 0, &hp) < 0)
		return -EINVAL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((r = getaddrinfo(hp.host, hp.port, &hints, res)) != 0) {
		*res = NULL;
		*why = gai_strerror(r);
		return -ENOENT;
	}
	return 0;
}

int net_listen_tcp(const struct addrinfo *ai, int backlog, bool v6only)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	int on = 1, e;

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (v6only && ai->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* --- accepting ----------------------------------------------------------- */

/* One descriptor held in reserve for the whole process: when none are left,
 * closing it lets an acceptor take the waiting connection and refuse it
 * with a word, rather than leave it hanging in the backlog. */
static int reserve_fd = -1;

static void reserve_take(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Out of descriptors: the connection waiting on s gets the acceptor's
 * refusal and is closed, then the reserve is taken again. */
static void refuse_one(struct net_lsock *s)
{
	NetAcceptor *a = s->a;
	int fd;

	if (reserve_fd < 0)
		return;
	close(reserve_fd);
	reserve_fd = -1;
	fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		/* Its buffer is empty: the text fits, or the close says it. */
		if (a->refusal)
			(void)send(fd, a->refusal, strlen(a->refusal), MSG_NOSIGNAL | MSG_DONTWAIT);
		close(fd);
	}
	reserve_take();
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	NetAcceptor *a = w->data;

	(void)revents;
	for (size_t i = 0; i < a->n; i++)
		ev_io_start(loop, &a->socks[i].io);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct net_lsock *s = w->data;
	NetAcceptor *a = s->a;
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd, e;

	(void)revents;
	for (;;) {
		salen = sizeof(sa);
		fd = accept4(s->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			a->fn(s->ud, fd, (struct sockaddr *)&sa);
			continue;
		}
		e = errno;
		if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED)
			return;
		a->fn(s->ud, -e, NULL);
		if (e == EMFILE || e == ENFILE)
			refuse_one(s);
		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			/* The pending connection stays readable: without a
			 * pause the loop would spin on it. */
			for (size_t i = 0; i < a->n; i++)
				ev_io_stop(loop, &a->socks[i].io);
			ev_timer_set(&a->pause, ACCEPT_PAUSE, 0.);
			ev_timer_start(loop, &a->pause);
		}
		return;
	}
}

NetAcceptor *net_acceptor_new(struct ev_loop *loop, net_accept_fn fn)
{
	NetAcceptor *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->loop = loop;
	a->fn = fn;
	reserve_take();
	ev_init(&a->pause, pause_cb);
	a->pause.data = a;
	return a;
}

int net_acceptor_add(NetAcceptor *a, int fd, void *ud)
{
	struct net_lsock *s;

	if (a->n == NET_ACCEPTOR_MAX)
		return -ENOSPC;
	s = &a->socks[a->n++];
	s->a = a;
	s->fd = fd;
	s->ud = ud;
	ev_io_init(&s->io, accept_cb, fd, EV_READ);
	s->io.data = s;
	return 0;
}

void net_acceptor_refusal(NetAcceptor *a, const char *text)
{
	a->refusal = text;
}

void net_acceptor_start(NetAcceptor *a)
{
	for (size_t i = 0; i < a->n; i++)
		ev_io_start(a->loop, &a->socks[i].io);
}

void net_acceptor_free(NetAcceptor *a)
{
	if (!a)
		return;
	ev_timer_stop(a->loop, &a->pause);
	for (size_t i = 0; i < a->n; i++) {
		ev_io_stop(a->loop, &a->socks[i].io);
		close(a->socks[i].fd);
	}
	free(a);
}

int net_adopt_fd(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

/* --- peers --------------------------------------------------------------- */

int net_peer_cred(int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0 ? -errno : 0;
}

size_t net_peer_groups(int fd, gid_t *buf, size_t n, gid_t **groups)
{
	*groups = buf;
#ifdef SO_PEERGROUPS
	socklen_t len = (socklen_t)(n * sizeof(gid_t));
	gid_t *g = buf;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
		/* ERANGE tells the size needed. */
		g = errno == ERANGE ? malloc(len) : NULL;
		if (g && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) < 0) {
			free(g);
			g = NULL;
		}
		if (!g)
			return 0;
	}
	*groups = g;
	return len / sizeof(gid_t);
#else
	(void)fd;
	(void)n;
	return 0;
#endif
}

const char *net_cred_text(const struct ucred *cred, char *buf, size_t len)
{
	snprintf(buf, len, "pid=%d,uid=%u", (int)cred->pid, (unsigned)cred->uid);
	return buf;
}

const char *net_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "unix");
	}
	return buf;
}

const char *net_sock_text(int fd, struct sockaddr_storage *sa, char *buf, size_t len)
{
	socklen_t salen = sizeof(*sa);
	const struct sockaddr_un *un = (const struct sockaddr_un *)sa;

	memset(sa, 0, sizeof(*sa));
	getsockname(fd, (struct sockaddr *)sa, &salen);
	if (sa->ss_family == AF_INET || sa->ss_family == AF_INET6)
		return net_addr_text((const struct sockaddr *)sa, buf, len);
	snprintf(buf, len, "%s", un->sun_path[0] ? un->sun_path : "(unnamed)");
	return buf;
}

bool net_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}
