/* SPDX-License-Identifier: MIT */
/*
 * mxgw_tls_int.h: how the session (and later the LMTP client) gets OpenSSL
 * objects from a TLS context. Only this header and mxgw_tls.c know the
 * context's layout.
 */
#ifndef MXGW_TLS_INT_H
#define MXGW_TLS_INT_H

#include <openssl/ssl.h>

#include "mxgw/mxgw_tls.h"

/* Take / drop a reference on a context (atomic; any thread). */
void mxgw__tls_ref(mxgw_tls *t);
void mxgw__tls_unref(mxgw_tls *t);
/* A configuration's reference: takes one on t (may be NULL), releases the
 * one held in *slot, stores t. */
void mxgw__tls_set(mxgw_tls **slot, mxgw_tls *t);

/*
 * A new server-side SSL object bound to the current generation (its SNI
 * callback switches among that generation's certificates), in accept state.
 * NULL when the context has no loaded generation or on allocation failure
 * (errbuf receives a reason). Safe to call from any thread concurrently
 * with mxgw_tls_reload() on the owner's thread.
 * Lifetime: the SNI callback reads the context, so keep a reference to it
 * (as a session configuration does) until the SSL object is freed. The SSL
 * holds its own SSL_CTX references: the generation may be replaced and
 * freed meanwhile. Free the SSL after SSL_shutdown() (or mark it shut down
 * with SSL_set_shutdown()) if its TLS 1.2 session is to stay resumable:
 * OpenSSL drops the cached session of a connection freed without one.
 */
SSL *mxgw__tls_server_ssl(mxgw_tls *t, char *errbuf, size_t errlen);

/*
 * A new client-side SSL object for connecting to `servername` (SNI and, with
 * VERIFY_PEER, host name verification), in connect state. servername NULL:
 * MXGW_TLS_HOSTNAME; an address literal is verified against IP SANs and
 * sent without SNI. The context must have been loaded (mxgw_tls_reload()).
 */
SSL *mxgw__tls_client_ssl(mxgw_tls *t, const char *servername, char *errbuf,
                          size_t errlen);

#endif /* MXGW_TLS_INT_H */
