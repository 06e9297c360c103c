/*
 * listener.c - accepts subscriber connections on the Unix socket.  New
 * connections past max_clients are refused with an error frame and counted
 * in the log, never silently dropped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listener.h"
#include "log.h"

struct listener {
	struct client_env env;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ev_io io;
};

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	Listener *l = w->data;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	char peer[64];
	int fd;

	(void)loop;
	(void)revents;
	for (;;) {
		fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				log_warning("accept failed error='%s'", strerror(errno));
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
			snprintf(peer, sizeof(peer), "unix:pid=%d,uid=%u", (int)cred.pid, (unsigned)cred.uid);
		else
			snprintf(peer, sizeof(peer), "unix");
		if (client_count() >= (size_t)l->env.cv->max_clients) {
			static const char msg[] =
				"{\"op\":\"error\",\"code\":24,\"codeName\":\"ExceededLimit\","
				"\"message\":\"too many clients (max_clients)\"}\n";
			log_warning("client refused peer=%s reason='max_clients reached'", peer);
			if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				log_debug("refusal frame not sent error='%s'", strerror(errno));
			close(fd);
			continue;
		}
		client_new(&l->env, fd, peer);
	}
}

Listener *listener_new(const struct client_env *env, const char *path, int mode, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	Listener *l;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long (max %zu bytes): %s", sizeof(sa.sun_path) - 1, path);
		return NULL;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->env = *env;
	snprintf(l->path, sizeof(l->path), "%s", path);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		goto fail;
	/* A socket file left by a killed predecessor would make bind fail. */
	unlink(path);
	if (bind(l->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, (mode_t)mode) < 0 ||
	    listen(l->fd, 128) < 0)
		goto fail;
	ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
	l->io.data = l;
	ev_io_start(env->loop, &l->io);
	return l;
fail:
	snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
	if (l->fd >= 0)
		close(l->fd);
	free(l);
	return NULL;
}

void listener_free(Listener *l)
{
	if (!l)
		return;
	ev_io_stop(l->env.loop, &l->io);
	close(l->fd);
	unlink(l->path);
	free(l);
}
