/* SPDX-License-Identifier: MIT */
/*
 * mxgw_session_tls.c: TLS inside the session, through OpenSSL memory BIOs,
 * so the session stays sans-IO: ciphertext the application feeds goes into
 * the read BIO, the handshake and decryption run here, plaintext lands in
 * the session's input buffer; replies are queued in `pout` and encrypted
 * into the output buffer when the application asks for output.
 */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "mxgw_session_int.h"
#include "mxgw_tls_int.h"

/* Record the OpenSSL error queue (or what) in s->errmsg. */
static int tls_err(mxgw_session *s, const char *what) {
  unsigned long e = ERR_peek_last_error();
  char buf[200] = "";
  if (e)
    ERR_error_string_n(e, buf, sizeof buf);
  snprintf(s->errmsg, sizeof s->errmsg, "%s%s%s", what, e ? ": " : "", buf);
  ERR_clear_error();
  return MXGW_E_TLS;
}

int mxgw__stls_begin(mxgw_session *s) {
  if (!s->cfg->tls)
    return MXGW_E_STATE;
  char why[200] = "";
  SSL *ssl = mxgw__tls_server_ssl(s->cfg->tls, why, sizeof why);
  if (!ssl) {
    snprintf(s->errmsg, sizeof s->errmsg, "TLS not available: %s", why);
    return MXGW_E_TLS;
  }
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  if (!rb || !wb) {
    BIO_free(rb);
    BIO_free(wb);
    SSL_free(ssl);
    return tls_err(s, "cannot create memory BIOs");
  }
  /* An empty memory BIO means "no data yet", not end of file. */
  BIO_set_mem_eof_return(rb, -1);
  SSL_set_bio(ssl, rb, wb);
  SSL_set_accept_state(ssl);
  s->ssl = ssl;
  s->tls_hs = true;
  return MXGW_OK;
}

size_t mxgw__stls_input_pending(const mxgw_session *s) {
  return s->ssl ? BIO_ctrl_pending(SSL_get_rbio(s->ssl)) : 0;
}

int mxgw__stls_input(mxgw_session *s, const void *buf, size_t len,
                     size_t *taken) {
  /* Ciphertext waiting to be decrypted counts against the input buffer:
   * the same back-pressure as for plaintext. */
  size_t have = mxgw__stls_input_pending(s) + mxgw__buf_size(&s->in);
  size_t room = have < s->in_cap ? s->in_cap - have : 0;
  size_t n = len < room ? len : room;
  if (n > INT32_MAX)
    n = INT32_MAX;
  *taken = 0;
  if (n == 0)
    return MXGW_OK;
  int w = BIO_write(SSL_get_rbio(s->ssl), buf, (int)n);
  if (w <= 0)
    return tls_err(s, "cannot buffer TLS input");
  *taken = (size_t)w;
  return MXGW_OK;
}

/* Move whatever OpenSSL wrote to the write BIO into the output buffer. */
static int drain_wbio(mxgw_session *s) {
  BIO *wb = SSL_get_wbio(s->ssl);
  size_t pend;
  while ((pend = BIO_ctrl_pending(wb)) > 0) {
    if (mxgw__buf_reserve(&s->out, &s->mem, pend))
      return MXGW_E_NOMEM;
    int r = BIO_read(wb, s->out.data + s->out.len, (int)pend);
    if (r <= 0)
      break;
    s->out.len += (size_t)r;
  }
  return MXGW_OK;
}

int mxgw__stls_pump(mxgw_session *s) {
  if (!s->ssl)
    return MXGW_OK;
  int rv = MXGW_OK, done = 0;
  if (s->tls_hs) {
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
      s->tls_hs = false;
      done = 1;
    } else {
      int e = SSL_get_error(s->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        drain_wbio(s); /* send the alert, if any */
        return tls_err(s, "TLS handshake failed");
      }
    }
  }
  if (!s->tls_hs) {
    for (;;) {
      size_t room = s->in_cap > mxgw__buf_size(&s->in)
                        ? s->in_cap - mxgw__buf_size(&s->in)
                        : 0;
      if (room == 0)
        break;
      if (room > 16384)
        room = 16384;
      if (mxgw__buf_reserve(&s->in, &s->mem, room))
        return MXGW_E_NOMEM;
      ERR_clear_error();
      int r = SSL_read(s->ssl, s->in.data + s->in.len, (int)room);
      if (r > 0) {
        s->in.len += (size_t)r;
        continue;
      }
      int e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        break;
      if (e == SSL_ERROR_ZERO_RETURN) {
        s->eof = true; /* close_notify: the client is done sending */
        break;
      }
      rv = tls_err(s, "TLS read failed");
      break;
    }
  }
  if (drain_wbio(s))
    return MXGW_E_NOMEM;
  return rv ? rv : done;
}

int mxgw__stls_flush(mxgw_session *s) {
  if (!s->ssl || s->tls_hs)
    return MXGW_OK;
  while (mxgw__buf_size(&s->pout)) {
    size_t n = mxgw__buf_size(&s->pout);
    if (n > INT32_MAX)
      n = INT32_MAX;
    ERR_clear_error();
    int w = SSL_write(s->ssl, mxgw__buf_ptr(&s->pout), (int)n);
    if (w <= 0)
      return tls_err(s, "TLS write failed");
    mxgw__buf_consume(&s->pout, (size_t)w);
  }
  if (s->pout.cap > 4096)
    mxgw__buf_free(&s->pout, &s->mem);
  return drain_wbio(s);
}

void mxgw__stls_close_notify(mxgw_session *s) {
  if (!s->ssl || s->tls_hs)
    return;
  (void)mxgw__stls_flush(s);
  ERR_clear_error();
  if (SSL_shutdown(s->ssl) < 0)
    ERR_clear_error();
  (void)drain_wbio(s);
}

bool mxgw__stls_want_write(const mxgw_session *s) {
  if (!s->ssl)
    return false;
  return (!s->tls_hs && mxgw__buf_size(&s->pout)) ||
         BIO_ctrl_pending(SSL_get_wbio(s->ssl)) > 0;
}

const char *mxgw__stls_peer_subject(mxgw_session *s) {
  if (s->tls_peer || !s->ssl || s->tls_hs)
    return s->tls_peer;
  X509 *peer = SSL_get1_peer_certificate(s->ssl);
  if (!peer)
    return NULL;
  char buf[512];
  BIO *b = BIO_new(BIO_s_mem());
  if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                              XN_FLAG_RFC2253) >= 0) {
    int n = BIO_read(b, buf, (int)sizeof buf - 1);
    if (n > 0) {
      buf[n] = '\0';
      s->tls_peer = mxgw__strdup(&s->mem, buf);
    }
  }
  BIO_free(b);
  X509_free(peer);
  return s->tls_peer;
}

const char *mxgw__stls_sni(const mxgw_session *s) {
  return s->ssl ? SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

const char *mxgw__stls_protocol(const mxgw_session *s) {
  return s->ssl ? SSL_get_version(s->ssl) : NULL;
}

const char *mxgw__stls_cipher(const mxgw_session *s) {
  return s->ssl ? SSL_get_cipher_name(s->ssl) : NULL;
}

void mxgw__stls_free(mxgw_session *s) {
  if (s->ssl)
    SSL_free(s->ssl); /* frees both BIOs */
  s->ssl = NULL;
}
