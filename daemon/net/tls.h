/*
 * tls.h - TLS for the subscriber TCP listener, on OpenSSL.  listener.c builds
 * the server context from the configured PEM files and starts one session per
 * accepted connection; transport.c drives each session non-blocking (handshake,
 * reads, writes) with OpenSSL's own calls and reports failures through
 * tls_error().
 */
#ifndef NVSRELAY_TLS_H
#define NVSRELAY_TLS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tls_server TlsServer;
struct ssl_st;

/* A server context: certificate chain and key (PEM), TLS 1.2 or later.  With
 * a CA file, every client must present a certificate it signed.  Returns NULL
 * with the reason (file and OpenSSL's words) in err. */
TlsServer *tls_server_new(const char *cert_file, const char *key_file, const char *ca_file,
			  char *err, size_t errlen);
void tls_server_free(TlsServer *t);

/* True when clients must present a certificate. */
bool tls_server_verifies_clients(const TlsServer *t);

/* A session on the accepted, non-blocking fd, in server (accept) state; the
 * handshake is the caller's first step.  The session holds its own reference
 * to the context, so it may outlive the TlsServer.  NULL with err on failure;
 * the fd stays the caller's either way. */
struct ssl_st *tls_server_session(TlsServer *t, int fd, char *err, size_t errlen);

/* Describes why the last OpenSSL call on ssl failed (ssl may be NULL):
 * OpenSSL's error queue and the certificate verification result, else
 * syserr (an errno; 0 means the peer closed).  Empties the thread's error
 * queue.  Returns buf. */
const char *tls_error(struct ssl_st *ssl, int syserr, char *buf, size_t len);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for the log. */
const char *tls_describe(struct ssl_st *ssl, char *buf, size_t len);

/* The client certificate's subject ("/CN=fault-quarantine"), "" without one,
 * when it does not fit in buf (a cut subject could match a shorter one) or
 * when a value holds '/' (it would read as another entry). */
const char *tls_peer_subject(struct ssl_st *ssl, char *buf, size_t len);
/* The value of the subject's last commonName, read from the name's entries
 * (in the one-line subject a CN of "x/CN=y" reads as "/CN=x\/CN=y", whose
 * last "/CN=" is not the entry's); "" without one, or when it holds a NUL
 * or does not fit in buf. */
const char *tls_peer_cn(struct ssl_st *ssl, char *buf, size_t len);

#endif
