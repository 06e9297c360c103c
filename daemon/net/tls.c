/*
 * tls.c - the OpenSSL side of the subscriber TCP listener: the server
 * context (TLS 1.2 with forward-secret AEAD suites only, or TLS 1.3;
 * certificate and key from PEM files, client
 * certificates required and verified when a CA file is configured) and the
 * error text that goes to the log.  listener.c owns the context and creates
 * one session per connection; transport.c drives the sessions.
 *
 * Sessions run non-blocking with partial writes and moving write buffers
 * allowed, so transport.c can write a record at a time from a buffer it
 * refills, and with renegotiation off, so a write never has to wait for the
 * peer to send something first.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "fileio.h"
#include "tls.h"

/* ECDHE or DHE key exchange, AES-GCM or CHACHA20-POLY1305, either
 * certificate type; never unauthenticated or pre-shared-key suites. */
#define TLS12_SUITES "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!PSK:!SRP:!DSS"

struct tls_server {
	SSL_CTX *ctx;
	bool verify;            /* client certificates required */
};

/* OpenSSL's words for the oldest queued error, without the
 * "error:0A0000C7:" code prefix that means nothing to an operator. */
static bool queue_text(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	char tmp[256];
	const char *s = tmp;
	int colons = 0;

	if (!e)
		return false;
	ERR_error_string_n(e, tmp, sizeof(tmp));
	for (const char *p = tmp; *p && colons < 2; p++) {
		if (*p == ':' && ++colons == 2)
			s = p + 1;
	}
	/* Cut to fit: OpenSSL's texts are longer than anyone reads. */
	size_t n = strlen(s);
	if (n >= len)
		n = len - 1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	ERR_clear_error();
	return true;
}

const char *tls_error(SSL *ssl, int syserr, char *buf, size_t len)
{
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
	char q[200];

	if (!queue_text(q, sizeof(q)))
		snprintf(q, sizeof(q), "%s", syserr ? strerror(syserr) : "connection closed by peer");
	if (vr != X509_V_OK)
		snprintf(buf, len, "%s (client certificate: %s)", q, X509_verify_cert_error_string(vr));
	else
		snprintf(buf, len, "%s", q);
	return buf;
}

const char *tls_describe(SSL *ssl, char *buf, size_t len)
{
	snprintf(buf, len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	return buf;
}

const char *tls_peer_subject(SSL *ssl, char *buf, size_t len)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	X509_NAME *name;
	char *all;

	buf[0] = '\0';
	if (!cert)
		return buf;
	/* In the one-line form a '/' inside a value is only told from the
	 * one between entries by a backslash (OpenSSL 3.0 writes "\/"; not
	 * every version does): such a subject names no one. */
	name = X509_get_subject_name(cert);
	for (int i = 0; i < X509_NAME_entry_count(name); i++) {
		const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));

		if (memchr(ASN1_STRING_get0_data(v), '/', (size_t)ASN1_STRING_length(v)))
			return buf;
	}
	if (!(all = X509_NAME_oneline(name, NULL, 0)))
		return buf;
	if (strlen(all) < len)
		strcpy(buf, all);
	OPENSSL_free(all);
	return buf;
}

const char *tls_peer_cn(SSL *ssl, char *buf, size_t len)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	X509_NAME *name;
	unsigned char *utf8 = NULL;
	int i = -1, last = -1, n;

	buf[0] = '\0';
	if (!cert)
		return buf;
	name = X509_get_subject_name(cert);
	while ((i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0)
		last = i;
	if (last < 0)
		return buf;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last)));
	if (n >= 0 && (size_t)n < len && !memchr(utf8, '\0', (size_t)n)) {
		memcpy(buf, utf8, (size_t)n);
		buf[n] = '\0';
	}
	OPENSSL_free(utf8);
	return buf;
}

TlsServer *tls_server_new(const char *cert_file, const char *key_file, const char *ca_file,
			  char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "nvsrelayd";
	TlsServer *t = calloc(1, sizeof(*t));
	char why[200];

	ERR_clear_error();
	if (!t || !(t->ctx = SSL_CTX_new(TLS_server_method()))) {
		snprintf(err, errlen, "cannot create a TLS context: %s", tls_error(NULL, ENOMEM, why, sizeof(why)));
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	/* TLS 1.2 only with forward secrecy and AEAD: static RSA key exchange
	 * gives up every recorded session with the key, and CBC suites are
	 * the ones padding-oracle attacks live on.  TLS 1.3 suites, set apart
	 * by OpenSSL, are all of that kind already and stay as they are. */
	if (SSL_CTX_set_cipher_list(t->ctx, TLS12_SUITES) != 1) {
		snprintf(err, errlen, "cannot set the TLS 1.2 cipher suites: %s", tls_error(NULL, 0, why, sizeof(why)));
		goto fail;
	}
	/* DHE needs parameters; OpenSSL picks them by the key's strength. */
	SSL_CTX_set_dh_auto(t->ctx, 1);
	/* A peer that drops the connection without close_notify has only
	 * closed it: NDJSON frames carry their own end. */
	SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				 SSL_MODE_RELEASE_BUFFERS);
	/* Resumed sessions are refused without one when clients are verified. */
	SSL_CTX_set_session_id_context(t->ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
		snprintf(err, errlen, "tls_cert_file %s: %s", cert_file, tls_error(NULL, 0, why, sizeof(why)));
		goto fail;
	}
	if (fileio_private(key_file, S_IRWXO, "tls_key_file", "a private key", err, errlen) < 0)
		goto fail;
	if (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "tls_key_file %s: %s", key_file, tls_error(NULL, 0, why, sizeof(why)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(t->ctx) != 1) {
		snprintf(err, errlen, "tls_key_file %s does not belong to tls_cert_file %s: %s", key_file,
			 cert_file, tls_error(NULL, 0, why, sizeof(why)));
		goto fail;
	}
	if (ca_file && *ca_file) {
		STACK_OF(X509_NAME) *names;

		if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1 ||
		    !(names = SSL_load_client_CA_file(ca_file))) {
			snprintf(err, errlen, "tls_ca_file %s: %s", ca_file, tls_error(NULL, 0, why, sizeof(why)));
			goto fail;
		}
		/* Tells clients which CAs are accepted, so one holding several
		 * certificates picks the right one. */
		SSL_CTX_set_client_CA_list(t->ctx, names);
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		t->verify = true;
	}
	return t;
fail:
	tls_server_free(t);
	return NULL;
}

void tls_server_free(TlsServer *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}

bool tls_server_verifies_clients(const TlsServer *t)
{
	return t->verify;
}

SSL *tls_server_session(TlsServer *t, int fd, char *err, size_t errlen)
{
	char why[200];
	SSL *ssl;

	ERR_clear_error();
	ssl = SSL_new(t->ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1) {
		snprintf(err, errlen, "cannot start a TLS session: %s", tls_error(NULL, ENOMEM, why, sizeof(why)));
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}
