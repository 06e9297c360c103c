/*
 * net.h - the sockets under the daemon's three servers: the subscriber
 * listener (listener.c), the admin socket (admin.c) and the HTTP endpoint
 * (http.c, through opsconn.c).  Listening on a Unix path or TCP addresses,
 * accepting without blocking and without spinning when file descriptors
 * run out, and who the peer is: its credentials (SO_PEERCRED) and its name
 * for the log.  What a server does with a connection is its own business.
 */
#ifndef NVSRELAY_NET_H
#define NVSRELAY_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <ev.h>

/* Bytes a Unix socket path may have, its NUL included. */
#define NET_UNIX_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)
/* Listening sockets one acceptor watches. */
#define NET_ACCEPTOR_MAX 8

/* --- listening ----------------------------------------------------------- */

/* A listening Unix stream socket at path with file mode `mode`.  A file
 * left there (by a killed predecessor) is removed first, but not one a
 * live process accepts on (-EADDRINUSE): a second daemon started on the
 * same path must not take it from the first.  The file is removed again
 * when a later step fails.  Returns the non-blocking, close-on-exec
 * descriptor, -ENAMETOOLONG for a path of NET_UNIX_PATH_MAX bytes or more,
 * or a negative errno. */
int net_listen_unix(const char *path, unsigned mode, int backlog);
/* Whether a process accepts connections on the Unix socket at path. */
bool net_unix_alive(const char *path);

/* Resolves "HOST:PORT" ("[v6]:PORT") for listening, numeric port only.
 * Returns 0 with *res to freeaddrinfo, -EINVAL when addr is not HOST:PORT,
 * or -ENOENT with the resolver's reason in *why. */
int net_resolve_passive(const char *addr, struct addrinfo **res, const char **why);

/* A listening TCP socket on one resolved address, with SO_REUSEADDR, and
 * IPV6_V6ONLY on an IPv6 address when v6only (so that "localhost" can be
 * bound as 127.0.0.1 and ::1 side by side).  Returns the non-blocking,
 * close-on-exec descriptor or a negative errno. */
int net_listen_tcp(const struct addrinfo *ai, int backlog, bool v6only);

/* --- accepting ----------------------------------------------------------- */

typedef struct net_acceptor NetAcceptor;

/* One accepted connection: fd is non-blocking and close-on-exec and now
 * the callee's; peer is its address.  fd < 0 is a failed accept (-errno,
 * worth a log line); when it was for want of descriptors or memory, the
 * acceptor has already stopped accepting for a second rather than spin on
 * the connection still waiting. */
typedef void (*net_accept_fn)(void *ud, int fd, const struct sockaddr *peer);

NetAcceptor *net_acceptor_new(struct ev_loop *loop, net_accept_fn fn);
/* Watches a listening socket (from now on the acceptor's to close); ud is
 * passed to fn for its connections.  Returns 0 or -ENOSPC. */
int net_acceptor_add(NetAcceptor *a, int fd, void *ud);
/* What a connection refused for want of file descriptors is sent before
 * its close (text must outlive a; NULL: nothing).  One descriptor is kept
 * in reserve for this: when accept fails with EMFILE, it is closed, one
 * waiting connection is accepted, told and closed, the reserve is taken
 * again and accepting pauses for a second. */
void net_acceptor_refusal(NetAcceptor *a, const char *text);
void net_acceptor_start(NetAcceptor *a);
/* Stops accepting and closes the listening sockets; NULL is fine. */
void net_acceptor_free(NetAcceptor *a);

/* Sets O_NONBLOCK and FD_CLOEXEC on a socket someone else made (systemd).
 * Returns 0 or a negative errno. */
int net_adopt_fd(int fd);

/* --- peers --------------------------------------------------------------- */

/* The peer process of a Unix socket.  Returns 0 or a negative errno. */
int net_peer_cred(int fd, struct ucred *cred);

/* The peer's supplementary groups (SO_PEERGROUPS): into buf when its n
 * entries are enough, else into an array to free().  *groups is buf or
 * that array either way; returns the count, 0 when unknown. */
size_t net_peer_groups(int fd, gid_t *buf, size_t n, gid_t **groups);

/* "pid=P,uid=U" for the log.  Returns buf. */
const char *net_cred_text(const struct ucred *cred, char *buf, size_t len);

/* "1.2.3.4:PORT", "[v6]:PORT", or "unix".  Returns buf. */
const char *net_addr_text(const struct sockaddr *sa, char *buf, size_t len);

/* The local name of a listening socket: its path (or "(unnamed)") or its
 * address as net_addr_text writes it; sa receives the address. */
const char *net_sock_text(int fd, struct sockaddr_storage *sa, char *buf, size_t len);

/* 127.0.0.0/8, ::1 or ::ffff:127.x.y.z. */
bool net_is_loopback(const struct sockaddr *sa);

#endif
