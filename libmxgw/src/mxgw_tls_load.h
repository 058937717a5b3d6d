/* SPDX-License-Identifier: MIT */
/*
 * mxgw_tls_load.h: the certificate loader shared by mxgw_tls.c and
 * mxgw_tls_load.c. It reads one certificate chain and its private key (from
 * files or memory), diagnoses every problem with a message that names the
 * file, orders the chain, and extracts what inspection reports. It knows
 * nothing of contexts or generations.
 */
#ifndef MXGW_TLS_LOAD_H
#define MXGW_TLS_LOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "mxgw_int.h"

/* A list of owned strings (warnings). */
typedef struct tls_strlist {
  char **v;
  size_t n;
  size_t cap;
} tls_strlist;

int mxgw__tls_strlist_add(tls_strlist *l, const mxgw_mem *m, const char *fmt,
                          ...) MXGW_PRINTF(3, 4);
void mxgw__tls_strlist_clear(tls_strlist *l, const mxgw_mem *m);

/* What a file looked like when it was read (for change detection). */
typedef struct tls_stamp {
  int err; /* errno of stat(), 0 if it succeeded */
  dev_t dev;
  ino_t ino;
  off_t size;
  mode_t mode;
  struct timespec mtim;
} tls_stamp;

void mxgw__tls_stamp_path(tls_stamp *st, const char *path);
bool mxgw__tls_stamp_eq(const tls_stamp *a, const tls_stamp *b);

/* Settings the loader needs (a snapshot of the context's options). */
typedef struct tls_load_opts {
  bool strict_key_mode;
  bool refuse_expired;
  bool refuse_hostname_mismatch;
  int64_t expiry_warn_days;
  const char *hostname;   /* checked for default (sni == NULL) pairs */
  const char *passphrase; /* NULL if none */
  const char *ca_file;    /* to complete chains */
  const char *ca_path;
  time_t now;
} tls_load_opts;

/* Where a pair comes from: files (chain_file set) or memory. */
typedef struct tls_pair_src {
  const char *sni; /* NULL for the default certificate */
  const char *chain_file;
  const char *key_file; /* same as chain_file when the key is in it */
  const char *chain_pem;
  size_t chain_len;
  const char *key_pem; /* NULL: in chain_pem */
  size_t key_len;
} tls_pair_src;

/* Inspection of one loaded pair; every string is owned. */
typedef struct tls_cert_info {
  char *subject;
  char *issuer;
  char *san; /* "a, b" */
  char *not_before;
  char *not_after;
  char *key_type;
  char *key_group; /* EC curve, "" otherwise */
  char *fingerprint;
  char *file;
  char *key_file;
  char *sni;
  int64_t key_bits;
  int64_t chain_length;
  bool self_signed;
  time_t not_after_t;
  int key_id; /* EVP_PKEY base id */
} tls_cert_info;

void mxgw__tls_info_free(tls_cert_info *ci, const mxgw_mem *m);

/* A loaded pair: the ordered chain and the key, ready for an SSL_CTX. */
typedef struct tls_loaded {
  X509 *leaf;
  STACK_OF(X509) *chain; /* intermediates, in order */
  EVP_PKEY *key;
  tls_cert_info info;
  tls_stamp chain_st;
  tls_stamp key_st;
} tls_loaded;

void mxgw__tls_loaded_free(tls_loaded *l, const mxgw_mem *m);

/*
 * Load and validate one pair. On success fills *out (the caller frees it
 * with mxgw__tls_loaded_free) and appends warnings; on failure returns a
 * negative mxgw_err with the detail in *err (reset first) and *out is
 * empty. Clears the OpenSSL error queue before returning.
 */
int mxgw__tls_load_pair(const mxgw_mem *m, const tls_load_opts *o,
                        const tls_pair_src *src, tls_loaded *out,
                        mxgw_buf *err, tls_strlist *warnings);

/* Check that a CA file or directory exists and is usable; 0 or an error
 * with the detail in *err. */
int mxgw__tls_check_ca(const mxgw_mem *m, const char *ca_file,
                       const char *ca_path, mxgw_buf *err);

/* Whole days from now until t (negative once past). */
int64_t mxgw__tls_days_left(time_t t, time_t now);

/* RFC 2253 subject of a certificate and its SHA-256 fingerprint
 * ("AB:CD:..."), into buf (always NUL-terminated). 0 or -1. */
int mxgw__tls_name_str(const X509_NAME *name, char *buf, size_t len);
int mxgw__tls_fingerprint(const X509 *x, char *buf, size_t len);

/* Append the OpenSSL error queue's most relevant reason to *b (or
 * "unknown OpenSSL error") and clear the queue. */
void mxgw__tls_append_ssl_error(mxgw_buf *b, const mxgw_mem *m);

#endif /* MXGW_TLS_LOAD_H */
