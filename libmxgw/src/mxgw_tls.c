/* SPDX-License-Identifier: MIT */
/*
 * mxgw_tls.c: TLS contexts on OpenSSL 3. A context remembers its options
 * and the certificate pairs added to it (file names, or copies of PEM
 * text) and serves from a *generation*: one SSL_CTX per SNI name plus the
 * default one, each holding every key type added for that name (RSA and
 * ECDSA side by side; OpenSSL picks per client from its signature
 * algorithms and ciphers). A reload builds a complete new generation,
 * validating every file, and swaps it in under a mutex; SSL objects hold
 * references to their SSL_CTX, so handshakes in progress keep theirs and
 * the old generation goes away with its last user. The SNI callback looks
 * up the *current* generation, so a handshake whose ClientHello arrives
 * after a reload already gets the new certificate. File changes are
 * detected by stat() (device, inode, size, mtime with nanoseconds) at a
 * bounded interval. The server and client SSL factories are in
 * mxgw_tls_int.h; the loader and its diagnostics in mxgw_tls_load.c.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "mxgw_tls_int.h"
#include "mxgw_tls_load.h"

#define NIOPT 11 /* integer options 1..10 */
#define SOPT_BASE 100
#define NSOPT 6 /* string options 100..105 */
#define SESSION_ID_CTX "mxgw"

/* One added certificate pair, remembered for reloads. */
typedef struct cert_src {
  char *sni; /* NULL: default; else lower case, no trailing dot */
  char *chain_file;
  char *key_file;
  char *chain_pem; /* memory pairs: copies */
  size_t chain_len;
  char *key_pem;
  size_t key_len;
  int key_id; /* EVP_PKEY base id of the certificate's key */
} cert_src;

typedef struct tls_name {
  char *name; /* lower case; "*.example.org" for a wildcard */
  SSL_CTX *ctx;
} tls_name;

/* A generation: immutable once built, freed with its last reference. */
typedef struct tls_gen {
  atomic_uint refs;
  mxgw_mem mem;
  SSL_CTX *def; /* default certificate (or the first name's) */
  tls_name *names;
  size_t nnames;
  tls_cert_info *info; /* one per pair, in the order added */
  size_t ninfo;
  char *hostname; /* client: the default name to verify */
  bool verify;    /* client: VERIFY_PEER */
} tls_gen;

struct mxgw_tls {
  atomic_uint refs;
  mxgw_mem mem;
  int role;
  int64_t iopt[NIOPT];
  char *sopt[NSOPT];
  cert_src *src;
  size_t nsrc;
  size_t capsrc;
  pthread_mutex_t lock; /* protects cur against other threads' reads */
  tls_gen *cur;
  _Atomic uint64_t generation;
  char *errmsg;     /* NULL: none */
  bool errmsg_oom;  /* the message could not be stored */
  tls_strlist warn;
  tls_stamp *seen; /* 2 per pair (chain, key), then CA file and CA path */
  size_t nseen;
  bool checked;
  int64_t last_check;
  char *json;
};

/* ---- errors ------------------------------------------------------------- */

static void set_errmsg(mxgw_tls *t, const char *p, size_t n) {
  mxgw__free(&t->mem, t->errmsg);
  t->errmsg = mxgw__memdup0(&t->mem, p, n);
  t->errmsg_oom = t->errmsg == NULL;
}

static void clear_err(mxgw_tls *t) {
  mxgw__free(&t->mem, t->errmsg);
  t->errmsg = NULL;
  t->errmsg_oom = false;
}

static int fail_buf(mxgw_tls *t, int rv, const mxgw_buf *b) {
  if (mxgw__buf_size(b))
    set_errmsg(t, mxgw__buf_ptr(b), mxgw__buf_size(b));
  else
    set_errmsg(t, mxgw_strerror(rv), strlen(mxgw_strerror(rv)));
  return rv;
}

static int fail(mxgw_tls *t, int rv, const char *fmt, ...) MXGW_PRINTF(3, 4);
static int fail(mxgw_tls *t, int rv, const char *fmt, ...) {
  mxgw_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  (void)mxgw__buf_vappendf(&b, &t->mem, fmt, ap);
  va_end(ap);
  fail_buf(t, rv, &b);
  mxgw__buf_free(&b, &t->mem);
  return rv;
}

static void errbuf_set(char *buf, size_t len, const char *msg) {
  if (buf && len) {
    size_t n = strlen(msg);
    if (n >= len)
      n = len - 1;
    memcpy(buf, msg, n);
    buf[n] = 0;
  }
}

static void errbuf_ssl(char *buf, size_t len, const char *what) {
  char tmp[256];
  unsigned long e = ERR_peek_last_error();
  if (e)
    ERR_error_string_n(e, tmp, sizeof tmp);
  else
    snprintf(tmp, sizeof tmp, "out of memory");
  ERR_clear_error();
  if (buf && len)
    snprintf(buf, len, "%s: %s", what, tmp);
}

/* ---- generations ------------------------------------------------------- */

static void gen_ref(tls_gen *g) {
  atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

static void gen_unref(tls_gen *g) {
  if (!g || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
    return;
  mxgw_mem m = g->mem;
  SSL_CTX_free(g->def);
  for (size_t i = 0; i < g->nnames; i++) {
    mxgw__free(&m, g->names[i].name);
    SSL_CTX_free(g->names[i].ctx);
  }
  mxgw__free(&m, g->names);
  for (size_t i = 0; i < g->ninfo; i++)
    mxgw__tls_info_free(&g->info[i], &m);
  mxgw__free(&m, g->info);
  mxgw__free(&m, g->hostname);
  mxgw__free(&m, g);
}

/* The current generation with a reference, or NULL. Any thread. */
static tls_gen *gen_get(mxgw_tls *t) {
  pthread_mutex_lock(&t->lock);
  tls_gen *g = t->cur;
  if (g)
    gen_ref(g);
  pthread_mutex_unlock(&t->lock);
  return g;
}

/* Normalise a host name into buf (lower case, no trailing dot); false if
 * it does not fit or is empty. */
static bool norm_name(const char *in, char *buf, size_t len) {
  size_t n = strlen(in);
  if (n && in[n - 1] == '.')
    n--;
  if (!n || n >= len)
    return false;
  for (size_t i = 0; i < n; i++)
    buf[i] = (char)mxgw__lower((unsigned char)in[i]);
  buf[n] = 0;
  return true;
}

static SSL_CTX *gen_lookup(const tls_gen *g, const char *servername) {
  char name[256];
  if (!servername || !norm_name(servername, name, sizeof name))
    return NULL;
  for (size_t i = 0; i < g->nnames; i++)
    if (strcmp(g->names[i].name, name) == 0)
      return g->names[i].ctx;
  const char *dot = strchr(name, '.');
  if (!dot || dot == name)
    return NULL;
  for (size_t i = 0; i < g->nnames; i++) {
    const char *n = g->names[i].name;
    if (n[0] == '*' && strcmp(n + 1, dot) == 0)
      return g->names[i].ctx;
  }
  return NULL;
}

/*
 * SNI: switch the handshake to the current generation's context for the
 * name (exact, then "*.parent"), or to its default context. OpenSSL calls
 * this for every ClientHello, with or without SNI.
 */
static int sni_cb(SSL *ssl, int *alert, void *arg) {
  mxgw_tls *t = arg;
  (void)alert;
  tls_gen *g = gen_get(t);
  if (!g)
    return SSL_TLSEXT_ERR_OK;
  SSL_CTX *want =
      gen_lookup(g, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
  if (!want)
    want = g->def;
  if (SSL_get_SSL_CTX(ssl) != want)
    (void)SSL_set_SSL_CTX(ssl, want); /* takes its own reference */
  gen_unref(g);
  return SSL_TLSEXT_ERR_OK;
}

/* With MXGW_TLS_CLIENT_CERT 1 any client certificate is accepted; the
 * application reads the verification result (SSL_get_verify_result). */
static int accept_any_cb(int ok, X509_STORE_CTX *ctx) {
  (void)ok;
  (void)ctx;
  return 1;
}

static int proto_version(int64_t v) {
  return v == MXGW_TLS_V1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

static const char *sopt(const mxgw_tls *t, int key) {
  const char *s = t->sopt[key - SOPT_BASE];
  return s && *s ? s : NULL;
}

/* A fresh SSL_CTX with the context's settings (no certificate yet). */
static SSL_CTX *new_ctx(mxgw_tls *t, mxgw_buf *err) {
  const mxgw_mem *m = &t->mem;
  bool server = t->role == MXGW_TLS_SERVER;
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    (void)mxgw__buf_appendf(err, m, "cannot create an SSL_CTX: ");
    mxgw__tls_append_ssl_error(err, m);
    return NULL;
  }
  const char *s;
  if (!SSL_CTX_set_min_proto_version(ctx, proto_version(t->iopt[MXGW_TLS_MIN_VERSION])) ||
      !SSL_CTX_set_max_proto_version(ctx, proto_version(t->iopt[MXGW_TLS_MAX_VERSION]))) {
    (void)mxgw__buf_appendf(err, m, "cannot set the protocol versions: ");
    goto ssl_fail;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if ((s = sopt(t, MXGW_TLS_CIPHERS)) && !SSL_CTX_set_cipher_list(ctx, s)) {
    (void)mxgw__buf_appendf(err, m, "MXGW_TLS_CIPHERS \"%s\": ", s);
    goto ssl_fail;
  }
  if ((s = sopt(t, MXGW_TLS_CIPHERSUITES)) && !SSL_CTX_set_ciphersuites(ctx, s)) {
    (void)mxgw__buf_appendf(err, m, "MXGW_TLS_CIPHERSUITES \"%s\": ", s);
    goto ssl_fail;
  }
  const char *caf = sopt(t, MXGW_TLS_CA_FILE), *cap = sopt(t, MXGW_TLS_CA_PATH);
  if (caf && !SSL_CTX_load_verify_file(ctx, caf)) {
    (void)mxgw__buf_appendf(err, m, "%s: cannot load CA certificates: ", caf);
    goto ssl_fail;
  }
  if (cap && !SSL_CTX_load_verify_dir(ctx, cap)) {
    (void)mxgw__buf_appendf(err, m, "%s: cannot use as CA directory: ", cap);
    goto ssl_fail;
  }
  if (server) {
    (void)SSL_CTX_set_session_id_context(ctx, (const unsigned char *)SESSION_ID_CTX,
                                         sizeof SESSION_ID_CTX - 1);
    if (t->iopt[MXGW_TLS_SESSION_CACHE]) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    } else {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      (void)SSL_CTX_set_num_tickets(ctx, 0);
    }
    (void)SSL_CTX_set_dh_auto(ctx, 1);
    int64_t cc = t->iopt[MXGW_TLS_CLIENT_CERT];
    if (cc == 1)
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any_cb);
    else if (cc == 2)
      SSL_CTX_set_verify(ctx,
                         SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT |
                             SSL_VERIFY_CLIENT_ONCE,
                         NULL);
    if (cc && caf) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(caf);
      if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
  } else {
    if (t->iopt[MXGW_TLS_VERIFY_PEER]) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
      if (!caf && !cap && !SSL_CTX_set_default_verify_paths(ctx)) {
        (void)mxgw__buf_appendf(err, m, "cannot load the system trust store: ");
        goto ssl_fail;
      }
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
  }
  ERR_clear_error();
  return ctx;
ssl_fail:
  mxgw__tls_append_ssl_error(err, m);
  SSL_CTX_free(ctx);
  return NULL;
}

static void load_opts(const mxgw_tls *t, tls_load_opts *o) {
  memset(o, 0, sizeof *o);
  o->strict_key_mode = t->iopt[MXGW_TLS_STRICT_KEY_MODE] != 0;
  o->refuse_expired = t->iopt[MXGW_TLS_REFUSE_EXPIRED] != 0;
  o->refuse_hostname_mismatch = t->iopt[MXGW_TLS_REFUSE_HOSTNAME_MISMATCH] != 0;
  o->expiry_warn_days = t->iopt[MXGW_TLS_EXPIRY_WARN_DAYS];
  o->hostname = t->role == MXGW_TLS_SERVER ? sopt(t, MXGW_TLS_HOSTNAME) : NULL;
  o->passphrase = t->sopt[MXGW_TLS_KEY_PASSPHRASE - SOPT_BASE];
  o->ca_file = sopt(t, MXGW_TLS_CA_FILE);
  o->ca_path = sopt(t, MXGW_TLS_CA_PATH);
  o->now = time(NULL);
}

static void src_to_pair(const cert_src *c, tls_pair_src *p) {
  memset(p, 0, sizeof *p);
  p->sni = c->sni;
  p->chain_file = c->chain_file;
  p->key_file = c->key_file;
  p->chain_pem = c->chain_pem;
  p->chain_len = c->chain_len;
  p->key_pem = c->key_pem;
  p->key_len = c->key_len;
}

/* Put a loaded pair into ctx; OpenSSL may still refuse it (weak key for
 * the security level, unsupported key type). */
static int install(mxgw_tls *t, SSL_CTX *ctx, tls_loaded *l,
                   const char *file, mxgw_buf *err) {
  if (SSL_CTX_use_cert_and_key(ctx, l->leaf, l->key, l->chain, 1) != 1) {
    mxgw__buf_reset(err);
    (void)mxgw__buf_appendf(err, &t->mem, "%s: OpenSSL refused certificate %s: ",
                            file, l->info.subject ? l->info.subject : "");
    mxgw__tls_append_ssl_error(err, &t->mem);
    return MXGW_E_TLS;
  }
  return 0;
}

static int check_settings(mxgw_tls *t, mxgw_buf *err) {
  const mxgw_mem *m = &t->mem;
  if (t->iopt[MXGW_TLS_MIN_VERSION] > t->iopt[MXGW_TLS_MAX_VERSION]) {
    (void)mxgw__buf_appendf(err, m,
                            "MXGW_TLS_MIN_VERSION (TLS 1.%d) is above "
                            "MXGW_TLS_MAX_VERSION (TLS 1.%d)",
                            (int)t->iopt[MXGW_TLS_MIN_VERSION] - 10,
                            (int)t->iopt[MXGW_TLS_MAX_VERSION] - 10);
    return MXGW_E_INVAL;
  }
  if (t->role == MXGW_TLS_SERVER && t->iopt[MXGW_TLS_CLIENT_CERT] == 2 &&
      !sopt(t, MXGW_TLS_CA_FILE) && !sopt(t, MXGW_TLS_CA_PATH)) {
    (void)mxgw__buf_appendf(err, m,
                            "MXGW_TLS_CLIENT_CERT 2 (require a client "
                            "certificate) needs MXGW_TLS_CA_FILE or "
                            "MXGW_TLS_CA_PATH to verify it");
    return MXGW_E_INVAL;
  }
  return mxgw__tls_check_ca(m, sopt(t, MXGW_TLS_CA_FILE),
                            sopt(t, MXGW_TLS_CA_PATH), err);
}

/* Build a complete generation from the context's pairs and settings. */
static int build_gen(mxgw_tls *t, tls_gen **out, tls_strlist *w,
                     mxgw_buf *err) {
  const mxgw_mem *m = &t->mem;
  tls_load_opts o;
  tls_loaded l;
  int rv;
  *out = NULL;
  mxgw__buf_reset(err);
  ERR_clear_error();
  if (t->role == MXGW_TLS_SERVER && t->nsrc == 0) {
    (void)mxgw__buf_appendf(err, m,
                            "no certificate: add one with "
                            "mxgw_tls_add_cert_files() first");
    return MXGW_E_STATE;
  }
  if ((rv = check_settings(t, err)))
    return rv;
  load_opts(t, &o);

  tls_gen *g = mxgw__calloc(m, 1, sizeof *g);
  if (!g)
    return MXGW_E_NOMEM;
  atomic_init(&g->refs, 1);
  g->mem = t->mem;
  g->verify = t->iopt[MXGW_TLS_VERIFY_PEER] != 0;
  if (t->nsrc) {
    g->info = mxgw__calloc(m, t->nsrc, sizeof *g->info);
    g->names = mxgw__calloc(m, t->nsrc, sizeof *g->names);
    if (!g->info || !g->names) {
      rv = MXGW_E_NOMEM;
      goto fail;
    }
  }
  if (t->role == MXGW_TLS_CLIENT && sopt(t, MXGW_TLS_HOSTNAME) &&
      !(g->hostname = mxgw__strdup(m, sopt(t, MXGW_TLS_HOSTNAME)))) {
    rv = MXGW_E_NOMEM;
    goto fail;
  }

  for (size_t i = 0; i < t->nsrc; i++) {
    const cert_src *c = &t->src[i];
    tls_pair_src ps;
    src_to_pair(c, &ps);
    if ((rv = mxgw__tls_load_pair(m, &o, &ps, &l, err, w)))
      goto fail;
    /* which context: the default, or the SNI name's */
    SSL_CTX **slot = &g->def;
    if (c->sni && t->role == MXGW_TLS_SERVER) {
      size_t k;
      for (k = 0; k < g->nnames; k++)
        if (strcmp(g->names[k].name, c->sni) == 0)
          break;
      if (k == g->nnames) {
        if (!(g->names[k].name = mxgw__strdup(m, c->sni))) {
          mxgw__tls_loaded_free(&l, m);
          rv = MXGW_E_NOMEM;
          goto fail;
        }
        g->nnames++;
      }
      slot = &g->names[k].ctx;
    }
    if (!*slot && !(*slot = new_ctx(t, err))) {
      mxgw__tls_loaded_free(&l, m);
      rv = MXGW_E_TLS;
      goto fail;
    }
    rv = install(t, *slot, &l, c->chain_file ? c->chain_file
                                             : "<memory: certificate chain>",
                 err);
    g->info[g->ninfo++] = l.info; /* moved */
    memset(&l.info, 0, sizeof l.info);
    mxgw__tls_loaded_free(&l, m);
    if (rv)
      goto fail;
  }
  if (!g->def) {
    if (g->nnames) { /* no default pair: the first name's serves */
      g->def = g->names[0].ctx;
      SSL_CTX_up_ref(g->def);
    } else if (!(g->def = new_ctx(t, err))) { /* a client without a cert */
      rv = MXGW_E_TLS;
      goto fail;
    }
  }
  ERR_clear_error();
  *out = g;
  return 0;
fail:
  ERR_clear_error();
  gen_unref(g);
  return rv;
}

/* ---- file stamps ------------------------------------------------------- */

static int stamp_all(const mxgw_tls *t, tls_stamp **out, size_t *n) {
  size_t k = 2 * t->nsrc + 2;
  tls_stamp *st = mxgw__calloc(&t->mem, k, sizeof *st);
  if (!st)
    return MXGW_E_NOMEM;
  for (size_t i = 0; i < t->nsrc; i++) {
    const cert_src *c = &t->src[i];
    if (c->chain_file) {
      mxgw__tls_stamp_path(&st[2 * i], c->chain_file);
      mxgw__tls_stamp_path(&st[2 * i + 1], c->key_file);
    }
  }
  if (sopt(t, MXGW_TLS_CA_FILE))
    mxgw__tls_stamp_path(&st[k - 2], sopt(t, MXGW_TLS_CA_FILE));
  if (sopt(t, MXGW_TLS_CA_PATH))
    mxgw__tls_stamp_path(&st[k - 1], sopt(t, MXGW_TLS_CA_PATH));
  *out = st;
  *n = k;
  return 0;
}

static bool stamps_eq(const tls_stamp *a, size_t na, const tls_stamp *b,
                      size_t nb) {
  if (!a || !b || na != nb)
    return false;
  for (size_t i = 0; i < na; i++)
    if (!mxgw__tls_stamp_eq(&a[i], &b[i]))
      return false;
  return true;
}

/* ---- public API ---------------------------------------------------------- */

int mxgw_tls_new(mxgw_tls **out, int role, const mxgw_mem *mem) {
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  if (role != MXGW_TLS_SERVER && role != MXGW_TLS_CLIENT)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_tls *t = mxgw__calloc(&m, 1, sizeof *t);
  if (!t)
    return MXGW_E_NOMEM;
  t->mem = m;
  t->role = role;
  atomic_init(&t->refs, 1);
  atomic_init(&t->generation, 0);
  if (pthread_mutex_init(&t->lock, NULL) != 0) {
    mxgw__free(&m, t);
    return MXGW_E_NOMEM;
  }
  t->iopt[MXGW_TLS_MIN_VERSION] = MXGW_TLS_V1_2;
  t->iopt[MXGW_TLS_MAX_VERSION] = MXGW_TLS_V1_3;
  t->iopt[MXGW_TLS_STRICT_KEY_MODE] = 1;
  t->iopt[MXGW_TLS_EXPIRY_WARN_DAYS] = 30;
  t->iopt[MXGW_TLS_REFUSE_EXPIRED] = 1;
  t->iopt[MXGW_TLS_REFUSE_HOSTNAME_MISMATCH] = 1;
  t->iopt[MXGW_TLS_CLIENT_CERT] = 0;
  t->iopt[MXGW_TLS_VERIFY_PEER] = 1;
  t->iopt[MXGW_TLS_SESSION_CACHE] = 1;
  t->iopt[MXGW_TLS_RELOAD_INTERVAL_MS] = 60000;
  *out = t;
  return 0;
}

static void tls_destroy(mxgw_tls *t) {
  mxgw_mem m = t->mem;
  gen_unref(t->cur);
  for (size_t i = 0; i < t->nsrc; i++) {
    cert_src *c = &t->src[i];
    mxgw__free(&m, c->sni);
    mxgw__free(&m, c->chain_file);
    mxgw__free(&m, c->key_file);
    mxgw__free(&m, c->chain_pem);
    if (c->key_pem)
      OPENSSL_cleanse(c->key_pem, c->key_len);
    mxgw__free(&m, c->key_pem);
  }
  mxgw__free(&m, t->src);
  for (int i = 0; i < NSOPT; i++) {
    if (t->sopt[i] && i == MXGW_TLS_KEY_PASSPHRASE - SOPT_BASE)
      OPENSSL_cleanse(t->sopt[i], strlen(t->sopt[i]));
    mxgw__free(&m, t->sopt[i]);
  }
  mxgw__free(&m, t->errmsg);
  mxgw__tls_strlist_clear(&t->warn, &m);
  mxgw__free(&m, t->seen);
  mxgw__free(&m, t->json);
  pthread_mutex_destroy(&t->lock);
  mxgw__free(&m, t);
}

void mxgw__tls_ref(mxgw_tls *t) {
  if (t)
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
}

void mxgw__tls_unref(mxgw_tls *t) {
  if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1)
    tls_destroy(t);
}

void mxgw_tls_free(mxgw_tls *t) { mxgw__tls_unref(t); }

void mxgw__tls_set(mxgw_tls **slot, mxgw_tls *t) {
  mxgw__tls_ref(t); /* first: t may be the context already in *slot */
  mxgw__tls_unref(*slot);
  *slot = t;
}

int mxgw_tls_set_int(mxgw_tls *t, int key, int64_t v) {
  if (!t || key < 1 || key >= NIOPT)
    return MXGW_E_INVAL;
  int64_t lo = 0, hi = 1;
  switch (key) {
  case MXGW_TLS_MIN_VERSION:
  case MXGW_TLS_MAX_VERSION: lo = MXGW_TLS_V1_2; hi = MXGW_TLS_V1_3; break;
  case MXGW_TLS_EXPIRY_WARN_DAYS: hi = 3650; break;
  case MXGW_TLS_CLIENT_CERT: hi = 2; break;
  case MXGW_TLS_RELOAD_INTERVAL_MS: hi = INT64_C(86400000) * 366; break;
  default: break;
  }
  if (v < lo || v > hi)
    return fail(t, MXGW_E_RANGE, "option %d: %lld is out of range [%lld, %lld]",
                key, (long long)v, (long long)lo, (long long)hi);
  t->iopt[key] = v;
  return 0;
}

int mxgw_tls_set_str(mxgw_tls *t, int key, const char *value) {
  if (!t || key < SOPT_BASE || key >= SOPT_BASE + NSOPT)
    return MXGW_E_INVAL;
  /* check cipher strings now, while the caller knows which one it was */
  if (value && *value &&
      (key == MXGW_TLS_CIPHERS || key == MXGW_TLS_CIPHERSUITES)) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
      return fail(t, MXGW_E_NOMEM, "cannot create an SSL_CTX");
    int ok = key == MXGW_TLS_CIPHERS ? SSL_CTX_set_cipher_list(ctx, value)
                                     : SSL_CTX_set_ciphersuites(ctx, value);
    SSL_CTX_free(ctx);
    if (!ok) {
      mxgw_buf b = {0};
      (void)mxgw__buf_appendf(&b, &t->mem, "%s \"%s\": ",
                              key == MXGW_TLS_CIPHERS ? "MXGW_TLS_CIPHERS"
                                                      : "MXGW_TLS_CIPHERSUITES",
                              value);
      mxgw__tls_append_ssl_error(&b, &t->mem);
      fail_buf(t, MXGW_E_INVAL, &b);
      mxgw__buf_free(&b, &t->mem);
      return MXGW_E_INVAL;
    }
    ERR_clear_error();
  }
  char *copy = NULL;
  if (value && !(copy = mxgw__strdup(&t->mem, value)))
    return MXGW_E_NOMEM;
  char **slot = &t->sopt[key - SOPT_BASE];
  if (*slot && key == MXGW_TLS_KEY_PASSPHRASE)
    OPENSSL_cleanse(*slot, strlen(*slot));
  mxgw__free(&t->mem, *slot);
  *slot = copy;
  return 0;
}

/* Validate an SNI name: a host name or "*." + host name; into buf. */
static int check_sni(mxgw_tls *t, const char *sni, char *buf, size_t len) {
  if (t->role != MXGW_TLS_SERVER)
    return fail(t, MXGW_E_INVAL, "a client context takes no SNI name");
  if (!norm_name(sni, buf, len))
    return fail(t, MXGW_E_INVAL, "SNI name \"%s\": empty or too long", sni);
  const char *p = buf;
  if (p[0] == '*') {
    if (p[1] != '.' || !p[2])
      return fail(t, MXGW_E_INVAL,
                  "SNI name \"%s\": a wildcard must be \"*.\" + a domain", sni);
    p += 2;
  }
  for (const char *q = p; *q; q++) {
    char c = *q;
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
              (c == '.' && q != p && q[-1] != '.');
    if (!ok)
      return fail(t, MXGW_E_INVAL, "SNI name \"%s\": not a host name", sni);
  }
  return 0;
}

/* Shared by the two add functions: validate now, remember on success. */
static int add_pair(mxgw_tls *t, const char *sni, cert_src *c) {
  const mxgw_mem *m = &t->mem;
  char name[256];
  int rv;
  if (sni && (rv = check_sni(t, sni, name, sizeof name)))
    return rv;
  if (sni && !(c->sni = mxgw__strdup(m, name)))
    return MXGW_E_NOMEM;

  tls_load_opts o;
  tls_loaded l;
  tls_strlist w = {0};
  mxgw_buf err = {0};
  tls_pair_src ps;
  load_opts(t, &o);
  src_to_pair(c, &ps);
  rv = mxgw__tls_load_pair(m, &o, &ps, &l, &err, &w);
  if (rv)
    goto out;
  c->key_id = l.info.key_id;
  for (size_t i = 0; i < t->nsrc; i++) {
    const cert_src *d = &t->src[i];
    bool same = (!d->sni && !c->sni) ||
                (d->sni && c->sni && strcmp(d->sni, c->sni) == 0);
    if (same && d->key_id == c->key_id) {
      mxgw__buf_reset(&err);
      (void)mxgw__buf_appendf(
          &err, m, "%s: %s already has an %s certificate (from %s)",
          c->chain_file ? c->chain_file : "<memory: certificate chain>",
          c->sni ? c->sni : "the default name", l.info.key_type,
          d->chain_file ? d->chain_file : "memory");
      rv = MXGW_E_INVAL;
      goto out;
    }
  }
  {
    SSL_CTX *ctx = new_ctx(t, &err);
    if (!ctx) {
      rv = MXGW_E_TLS;
      goto out;
    }
    rv = install(t, ctx, &l, c->chain_file ? c->chain_file
                                           : "<memory: certificate chain>",
                 &err);
    SSL_CTX_free(ctx);
    if (rv)
      goto out;
  }
  if (t->nsrc == t->capsrc) {
    size_t cap = t->capsrc ? t->capsrc * 2 : 4;
    cert_src *v = mxgw__realloc(m, t->src, cap * sizeof *v);
    if (!v) {
      rv = MXGW_E_NOMEM;
      goto out;
    }
    t->src = v;
    t->capsrc = cap;
  }
  t->src[t->nsrc++] = *c;
  memset(c, 0, sizeof *c);
  mxgw__tls_strlist_clear(&t->warn, m);
  t->warn = w;
  memset(&w, 0, sizeof w);
  clear_err(t);
out:
  if (rv)
    fail_buf(t, rv, &err);
  mxgw__tls_loaded_free(&l, m);
  mxgw__tls_strlist_clear(&w, m);
  mxgw__buf_free(&err, m);
  ERR_clear_error();
  return rv;
}

static void src_free(const mxgw_mem *m, cert_src *c) {
  mxgw__free(m, c->sni);
  mxgw__free(m, c->chain_file);
  mxgw__free(m, c->key_file);
  mxgw__free(m, c->chain_pem);
  if (c->key_pem)
    OPENSSL_cleanse(c->key_pem, c->key_len);
  mxgw__free(m, c->key_pem);
  memset(c, 0, sizeof *c);
}

int mxgw_tls_add_cert_files(mxgw_tls *t, const char *sni_name,
                            const char *chain_file, const char *key_file) {
  if (!t)
    return MXGW_E_INVAL;
  if (!chain_file || !*chain_file)
    return fail(t, MXGW_E_INVAL, "no certificate file name");
  if (!key_file || !*key_file)
    key_file = chain_file;
  cert_src c = {0};
  c.chain_file = mxgw__strdup(&t->mem, chain_file);
  c.key_file = mxgw__strdup(&t->mem, key_file);
  int rv = (c.chain_file && c.key_file) ? add_pair(t, sni_name, &c)
                                        : MXGW_E_NOMEM;
  src_free(&t->mem, &c);
  if (rv == MXGW_E_NOMEM)
    set_errmsg(t, "out of memory", 13);
  return rv;
}

int mxgw_tls_add_cert_pem(mxgw_tls *t, const char *sni_name,
                          const char *chain_pem, size_t chain_len,
                          const char *key_pem, size_t key_len) {
  if (!t)
    return MXGW_E_INVAL;
  if (!chain_pem)
    return fail(t, MXGW_E_INVAL, "no certificate");
  cert_src c = {0};
  c.chain_pem = mxgw__memdup0(&t->mem, chain_pem, chain_len);
  c.chain_len = chain_len;
  if (key_pem) {
    c.key_pem = mxgw__memdup0(&t->mem, key_pem, key_len);
    c.key_len = key_len;
  }
  int rv = (c.chain_pem && (!key_pem || c.key_pem)) ? add_pair(t, sni_name, &c)
                                                    : MXGW_E_NOMEM;
  src_free(&t->mem, &c);
  if (rv == MXGW_E_NOMEM)
    set_errmsg(t, "out of memory", 13);
  return rv;
}

int mxgw_tls_reload(mxgw_tls *t) {
  if (!t)
    return MXGW_E_INVAL;
  tls_strlist w = {0};
  mxgw_buf err = {0};
  tls_gen *g = NULL;
  tls_stamp *st = NULL;
  size_t nst = 0;
  /* stamp first: a change during the load is seen by the next check */
  int rv = stamp_all(t, &st, &nst);
  if (!rv)
    rv = build_gen(t, &g, &w, &err);
  mxgw__tls_strlist_clear(&t->warn, &t->mem);
  t->warn = w;
  if (rv) {
    fail_buf(t, rv, &err);
    mxgw__buf_free(&err, &t->mem);
    mxgw__free(&t->mem, st);
    return rv;
  }
  mxgw__buf_free(&err, &t->mem);
  pthread_mutex_lock(&t->lock);
  tls_gen *old = t->cur;
  t->cur = g;
  atomic_fetch_add(&t->generation, 1);
  pthread_mutex_unlock(&t->lock);
  gen_unref(old);
  mxgw__free(&t->mem, t->seen);
  t->seen = st;
  t->nseen = nst;
  mxgw__free(&t->mem, t->json);
  t->json = NULL;
  clear_err(t);
  return 0;
}

int mxgw_tls_check_reload(mxgw_tls *t, int64_t now_ms) {
  if (!t)
    return MXGW_E_INVAL;
  if (t->nsrc == 0 && !sopt(t, MXGW_TLS_CA_FILE) && !sopt(t, MXGW_TLS_CA_PATH))
    return 0;
  if (t->checked && now_ms >= t->last_check &&
      now_ms - t->last_check < t->iopt[MXGW_TLS_RELOAD_INTERVAL_MS])
    return 0;
  t->checked = true;
  t->last_check = now_ms;
  tls_stamp *st;
  size_t n;
  int rv = stamp_all(t, &st, &n);
  if (rv)
    return fail(t, rv, "out of memory");
  if (stamps_eq(st, n, t->seen, t->nseen)) {
    mxgw__free(&t->mem, st);
    return 0;
  }
  /* remember what we tried, so a broken file is retried once it changes
   * again rather than at every check */
  mxgw__free(&t->mem, t->seen);
  t->seen = st;
  t->nseen = n;
  rv = mxgw_tls_reload(t);
  return rv ? rv : 1;
}

uint64_t mxgw_tls_generation(const mxgw_tls *t) {
  return t ? atomic_load(&((mxgw_tls *)(uintptr_t)t)->generation) : 0;
}

const char *mxgw_tls_errmsg(const mxgw_tls *t) {
  if (!t)
    return "";
  return t->errmsg ? t->errmsg : t->errmsg_oom ? "out of memory" : "";
}

size_t mxgw_tls_warning_count(const mxgw_tls *t) { return t ? t->warn.n : 0; }

int mxgw_tls_warning(const mxgw_tls *t, size_t i, const char **ptr,
                     size_t *len) {
  if (!t || !ptr)
    return MXGW_E_INVAL;
  if (i >= t->warn.n)
    return MXGW_E_RANGE;
  *ptr = t->warn.v[i];
  if (len)
    *len = strlen(t->warn.v[i]);
  return 0;
}

size_t mxgw_tls_cert_count(const mxgw_tls *t) {
  return t && t->cur ? t->cur->ninfo : 0;
}

int mxgw_tls_cert_str(const mxgw_tls *t, size_t i, int key, const char **ptr,
                      size_t *len) {
  if (!t || !ptr)
    return MXGW_E_INVAL;
  if (!t->cur || i >= t->cur->ninfo)
    return MXGW_E_RANGE;
  const tls_cert_info *ci = &t->cur->info[i];
  const char *s;
  switch (key) {
  case MXGW_CERT_SUBJECT: s = ci->subject; break;
  case MXGW_CERT_ISSUER: s = ci->issuer; break;
  case MXGW_CERT_SAN: s = ci->san; break;
  case MXGW_CERT_NOT_BEFORE: s = ci->not_before; break;
  case MXGW_CERT_NOT_AFTER: s = ci->not_after; break;
  case MXGW_CERT_KEY_TYPE: s = ci->key_type; break;
  case MXGW_CERT_FINGERPRINT: s = ci->fingerprint; break;
  case MXGW_CERT_FILE: s = ci->file; break;
  case MXGW_CERT_SNI_NAME: s = ci->sni; break;
  default: return MXGW_E_INVAL;
  }
  *ptr = s;
  if (len)
    *len = strlen(s);
  return 0;
}

int mxgw_tls_cert_int(const mxgw_tls *t, size_t i, int key, int64_t *out) {
  if (!t || !out)
    return MXGW_E_INVAL;
  if (!t->cur || i >= t->cur->ninfo)
    return MXGW_E_RANGE;
  const tls_cert_info *ci = &t->cur->info[i];
  switch (key) {
  case MXGW_CERT_KEY_BITS: *out = ci->key_bits; break;
  case MXGW_CERT_DAYS_LEFT:
    *out = mxgw__tls_days_left(ci->not_after_t, time(NULL));
    break;
  case MXGW_CERT_SELF_SIGNED: *out = ci->self_signed; break;
  case MXGW_CERT_CHAIN_LENGTH: *out = ci->chain_length; break;
  default: return MXGW_E_INVAL;
  }
  return 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static int jset(json_t *o, const char *k, json_t *v) {
  return v ? json_object_set_new(o, k, v) : -1;
}

static json_t *san_array(const char *san) {
  json_t *a = json_array();
  if (!a)
    return NULL;
  const char *p = san;
  while (*p) {
    const char *e = strstr(p, ", ");
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (json_array_append_new(a, json_stringn(p, n))) {
      json_decref(a);
      return NULL;
    }
    p += n + (e ? 2 : 0);
  }
  return a;
}

static json_t *cert_json(const tls_cert_info *ci, time_t now) {
  json_t *o = json_object();
  if (!o)
    return NULL;
  int r = 0;
  r |= jset(o, "sni_name", *ci->sni ? json_string(ci->sni) : json_null());
  r |= jset(o, "file", *ci->file ? json_string(ci->file) : json_null());
  r |= jset(o, "key_file", *ci->key_file ? json_string(ci->key_file) : json_null());
  r |= jset(o, "subject", json_string(ci->subject));
  r |= jset(o, "issuer", json_string(ci->issuer));
  r |= jset(o, "san", san_array(ci->san));
  r |= jset(o, "not_before", json_string(ci->not_before));
  r |= jset(o, "not_after", json_string(ci->not_after));
  r |= jset(o, "days_left", json_integer(mxgw__tls_days_left(ci->not_after_t, now)));
  r |= jset(o, "key_type", json_string(ci->key_type));
  r |= jset(o, "key_bits", json_integer(ci->key_bits));
  if (*ci->key_group)
    r |= jset(o, "key_group", json_string(ci->key_group));
  r |= jset(o, "fingerprint_sha256", json_string(ci->fingerprint));
  r |= jset(o, "self_signed", json_boolean(ci->self_signed));
  r |= jset(o, "chain_length", json_integer(ci->chain_length));
  if (r) {
    json_decref(o);
    return NULL;
  }
  return o;
}

int mxgw_tls_json(mxgw_tls *t, const char **ptr, size_t *len) {
  if (!t || !ptr)
    return MXGW_E_INVAL;
  int rv = MXGW_E_NOMEM;
  time_t now = time(NULL);
  json_t *root = json_object(), *certs = json_array(), *warns = json_array();
  if (!root || !certs || !warns) {
    json_decref(certs);
    json_decref(warns);
    goto out;
  }
  int r = 0;
  r |= jset(root, "role", json_string(t->role == MXGW_TLS_SERVER ? "server"
                                                                 : "client"));
  r |= jset(root, "generation", json_integer((json_int_t)mxgw_tls_generation(t)));
  r |= jset(root, "certificates", certs);
  r |= jset(root, "warnings", warns);
  const char *em = mxgw_tls_errmsg(t);
  r |= jset(root, "error", *em ? json_string(em) : json_null());
  if (r)
    goto out;
  for (size_t i = 0; t->cur && i < t->cur->ninfo; i++)
    if (json_array_append_new(certs, cert_json(&t->cur->info[i], now)))
      goto out;
  for (size_t i = 0; i < t->warn.n; i++)
    if (json_array_append_new(warns, json_string(t->warn.v[i])))
      goto out;
  size_t n = json_dumpb(root, NULL, 0, JSON_COMPACT);
  if (!n)
    goto out;
  char *s = mxgw__malloc(&t->mem, n + 1);
  if (!s)
    goto out;
  json_dumpb(root, s, n, JSON_COMPACT);
  s[n] = 0;
  mxgw__free(&t->mem, t->json);
  t->json = s;
  *ptr = s;
  if (len)
    *len = n;
  rv = 0;
out:
  json_decref(root);
  return rv;
}

/* ---- SSL factories (mxgw_tls_int.h) ---------------------------------------- */

SSL *mxgw__tls_server_ssl(mxgw_tls *t, char *errbuf, size_t errlen) {
  if (!t || t->role != MXGW_TLS_SERVER) {
    errbuf_set(errbuf, errlen, "not a server TLS context");
    return NULL;
  }
  tls_gen *g = gen_get(t);
  if (!g) {
    errbuf_set(errbuf, errlen,
               "no certificate loaded: call mxgw_tls_reload() after adding "
               "certificates");
    return NULL;
  }
  SSL *s = SSL_new(g->def);
  gen_unref(g);
  if (!s) {
    errbuf_ssl(errbuf, errlen, "SSL_new");
    return NULL;
  }
  SSL_set_accept_state(s);
  return s;
}

SSL *mxgw__tls_client_ssl(mxgw_tls *t, const char *servername, char *errbuf,
                          size_t errlen) {
  if (!t || t->role != MXGW_TLS_CLIENT) {
    errbuf_set(errbuf, errlen, "not a client TLS context");
    return NULL;
  }
  tls_gen *g = gen_get(t);
  if (!g) {
    errbuf_set(errbuf, errlen,
               "TLS client context not loaded: call mxgw_tls_reload() first");
    return NULL;
  }
  SSL *s = SSL_new(g->def);
  const char *name = servername && *servername ? servername : g->hostname;
  bool verify = g->verify;
  bool ok = s != NULL;
  if (ok && name) {
    unsigned char ip[16];
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1) {
      /* no SNI for address literals (RFC 6066 section 3) */
      if (verify)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name) == 1;
    } else {
      char host[256]; /* the macro takes a non-const pointer */
      size_t hl = strlen(name);
      ok = hl < sizeof host;
      if (ok) {
        memcpy(host, name, hl + 1);
        ok = SSL_set_tlsext_host_name(s, host) == 1;
      }
      if (ok && verify) {
        SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set1_host(s, name) == 1;
      }
    }
  }
  gen_unref(g);
  if (!ok) {
    errbuf_ssl(errbuf, errlen, s ? "cannot set the server name" : "SSL_new");
    SSL_free(s);
    return NULL;
  }
  SSL_set_connect_state(s);
  return s;
}
