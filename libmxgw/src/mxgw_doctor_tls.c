/* SPDX-License-Identifier: MIT */
/*
 * mxgw_doctor_tls.c: the certificate check (the files: host name, days
 * left, chain, key match, key mode, self-signed) and the live listener
 * probe (greeting, EHLO, STARTTLS, handshake, the served certificate
 * compared with the files; TLS required on submission).
 *
 * The files are loaded through mxgw_tls (its precise load errors) and read
 * again with OpenSSL for the individual findings.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "mxgw/mxgw_tls.h"
#include "mxgw_int.h"
#include "mxgw_doctor_int.h"

/* ---- certificate helpers ------------------------------------------------ */

static void x509_fp(X509 *x, char *buf, size_t cap) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  buf[0] = '\0';
  if (!X509_digest(x, EVP_sha256(), md, &n))
    return;
  size_t l = 0;
  for (unsigned int i = 0; i < n && l + 4 < cap; i++)
    l += (size_t)snprintf(buf + l, cap - l, "%s%02X", i ? ":" : "", md[i]);
}

static void x509_name(X509_NAME *nm, char *buf, size_t cap) {
  buf[0] = '\0';
  BIO *b = BIO_new(BIO_s_mem());
  if (!b)
    return;
  if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253) >= 0) {
    char *p;
    long l = BIO_get_mem_data(b, &p);
    mxgw__doc_fmt(buf, cap, "%.*s", (int)l, p);
  }
  BIO_free(b);
}

static void x509_san(X509 *x, char *buf, size_t cap) {
  buf[0] = '\0';
  GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  if (!g)
    return;
  size_t l = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(g); i++) {
    GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
    if (n->type != GEN_DNS)
      continue;
    const unsigned char *s = ASN1_STRING_get0_data(n->d.dNSName);
    int sl = ASN1_STRING_length(n->d.dNSName);
    int w = snprintf(buf + l, cap - l, "%s%.*s", l ? "," : "", sl,
                     (const char *)s);
    if (w < 0 || (size_t)w >= cap - l)
      break;
    l += (size_t)w;
  }
  GENERAL_NAMES_free(g);
}

/* "2027-01-02" */
static void asn1_date(const ASN1_TIME *t, char *buf, size_t cap) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  buf[0] = '\0';
  if (ASN1_TIME_to_tm(t, &tm) == 1)
    strftime(buf, cap, "%Y-%m-%d %H:%M UTC", &tm);
}

/* Days from now to t (negative when t is past). */
static int days_until(const ASN1_TIME *t, int64_t now) {
  ASN1_TIME *n = ASN1_TIME_set(NULL, (time_t)now);
  int days = 0, secs = 0;
  if (!n || !ASN1_TIME_diff(&days, &secs, n, t))
    days = 0;
  ASN1_TIME_free(n);
  if (days == 0 && secs < 0)
    days = -1;
  return days;
}

static int self_signed(X509 *x) { return X509_self_signed(x, 0) == 1; }

/* The leaf and the rest of a PEM chain file. */
static X509 *read_chain(const char *file, STACK_OF(X509) **rest) {
  *rest = NULL;
  BIO *b = BIO_new_file(file, "r");
  if (!b)
    return NULL;
  X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
  if (leaf) {
    *rest = sk_X509_new_null();
    X509 *x;
    while (*rest && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)))
      if (!sk_X509_push(*rest, x))
        X509_free(x);
  }
  ERR_clear_error();
  BIO_free(b);
  return leaf;
}

static int no_pass(char *buf, int size, int rw, void *u) {
  (void)buf;
  (void)size;
  (void)rw;
  (void)u;
  return 0;
}

static EVP_PKEY *read_key(const char *file) {
  BIO *b = BIO_new_file(file, "r");
  if (!b)
    return NULL;
  EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, no_pass, NULL);
  ERR_clear_error();
  BIO_free(b);
  return k;
}

static void short_fp(const char *fp, char *buf, size_t cap) {
  /* the first 8 octets: "AB:CD:EF:01:23:45:67:89..." */
  mxgw__doc_fmt(buf, cap, "%.23s%s", fp, strlen(fp) > 23 ? "..." : "");
}

/* ---- the certificate files ---------------------------------------------- */

/* Chain completeness. Returns a status and fills finding/fix. */
static int check_chain(mxgw_doctor *d, X509 *leaf, STACK_OF(X509) *rest,
                       char *finding, size_t fcap, char *fix, size_t xcap) {
  X509_STORE *st = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  int status = MXGW_DOCTOR_FAIL;
  fix[0] = '\0';
  if (!st || !ctx) {
    mxgw__doc_fmt(finding, fcap, "cannot verify the chain: out of memory");
    goto out;
  }
  X509_STORE_set_default_paths(st);
  if (d->ca_file && X509_STORE_load_file(st, d->ca_file) != 1) {
    mxgw__doc_fmt(finding, fcap, "cannot read the CA file %s", d->ca_file);
    mxgw__doc_fmt(fix, xcap, "check --ca-file");
    goto out;
  }
  X509_STORE_set_flags(st, X509_V_FLAG_NO_CHECK_TIME);
  if (!X509_STORE_CTX_init(ctx, st, leaf, rest)) {
    mxgw__doc_fmt(finding, fcap, "cannot verify the chain");
    goto out;
  }
  int ok = X509_verify_cert(ctx) == 1;
  int nrest = rest ? sk_X509_num(rest) : 0;
  if (ok) {
    STACK_OF(X509) *ch = X509_STORE_CTX_get0_chain(ctx);
    int n = ch ? sk_X509_num(ch) : 0;
    char root[300] = "";
    if (n)
      x509_name(X509_get_subject_name(sk_X509_value(ch, n - 1)), root,
                sizeof root);
    status = MXGW_DOCTOR_OK;
    mxgw__doc_fmt(finding, fcap,
                  "chain complete: %d certificate%s in the file, verified up "
                  "to the trusted root %s",
                  1 + nrest, nrest ? "s" : "", root);
    goto out;
  }
  int err = X509_STORE_CTX_get_error(ctx);
  int depth = X509_STORE_CTX_get_error_depth(ctx);
  X509 *bad = X509_STORE_CTX_get_current_cert(ctx);
  char subj[300] = "", iss[300] = "";
  if (bad) {
    x509_name(X509_get_subject_name(bad), subj, sizeof subj);
    x509_name(X509_get_issuer_name(bad), iss, sizeof iss);
  }
  if ((err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
       err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) &&
      depth == 0) {
    mxgw__doc_fmt(finding, fcap,
                  "chain incomplete: the issuer of the certificate (%s) is "
                  "neither in %s nor a trusted root",
                  iss, d->tls_cert);
    mxgw__doc_fmt(fix, xcap,
                  "append the intermediate certificate(s) to %s, leaf first "
                  "(use the full chain, e.g. certbot's fullchain.pem)",
                  d->tls_cert);
  } else if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
             err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
    status = MXGW_DOCTOR_WARN;
    mxgw__doc_fmt(finding, fcap,
                  "the chain in the file ends at %s, whose issuer %s is not "
                  "a trusted root on this system",
                  subj, iss);
    mxgw__doc_fmt(fix, xcap,
                  "if %s is a private CA, give its certificate with "
                  "--ca-file; otherwise append the missing intermediate to %s",
                  iss, d->tls_cert);
  } else {
    mxgw__doc_fmt(finding, fcap, "the chain does not verify: %s (at %s)",
                  X509_verify_cert_error_string(err), subj);
    mxgw__doc_fmt(fix, xcap,
                  "put the leaf first and then its intermediates, each "
                  "signing the one before, in %s",
                  d->tls_cert);
  }
out:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(st);
  ERR_clear_error();
  return status;
}

int mxgw__doc_check_cert(mxgw_doctor *d) {
  char concerns[600], kconcerns[600], finding[1600], fix[1200];
  char subj[300], iss[300], san[600], date[64];
  const char *key = d->tls_key ? d->tls_key : d->tls_cert;
  int rc = MXGW_OK, nfail = 0;
  mxgw__doc_fmt(concerns, sizeof concerns, "certificate %s", d->tls_cert);
  mxgw__doc_fmt(kconcerns, sizeof kconcerns, "private key %s", key);

  /* the library's loader: its precise message if the pair is refused */
  mxgw_tls *t = NULL;
  char loaderr[700] = "";
  int lrc = mxgw_tls_new(&t, MXGW_TLS_SERVER, &d->mem);
  if (lrc == MXGW_OK) {
    (void)mxgw_tls_set_int(t, MXGW_TLS_STRICT_KEY_MODE, 0);
    (void)mxgw_tls_set_int(t, MXGW_TLS_REFUSE_EXPIRED, 0);
    (void)mxgw_tls_set_int(t, MXGW_TLS_REFUSE_HOSTNAME_MISMATCH, 0);
    if (d->ca_file)
      (void)mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, d->ca_file);
    lrc = mxgw_tls_add_cert_files(t, NULL, d->tls_cert, d->tls_key);
    if (lrc != MXGW_OK)
      mxgw__doc_fmt(loaderr, sizeof loaderr, "%s", mxgw_tls_errmsg(t));
  }
  mxgw_tls_free(t);
  if (lrc == MXGW_E_NOMEM)
    return lrc;

  STACK_OF(X509) *rest = NULL;
  X509 *leaf = read_chain(d->tls_cert, &rest);
  if (!leaf) {
    mxgw__doc_fmt(finding, sizeof finding, "cannot be read: %s",
                  loaderr[0] ? loaderr : "no PEM certificate in the file");
    mxgw__doc_fmt(fix, sizeof fix,
                  "point the certificate setting at the PEM chain file "
                  "(leaf first, then intermediates)");
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, MXGW_DOCTOR_FAIL, concerns,
                         finding, fix, NULL, NULL);
  }
  x509_fp(leaf, d->cert_fp, sizeof d->cert_fp);
  x509_name(X509_get_subject_name(leaf), subj, sizeof subj);
  x509_name(X509_get_issuer_name(leaf), iss, sizeof iss);
  x509_san(leaf, san, sizeof san);
  mxgw__doc_fmt(d->cert_subject, sizeof d->cert_subject, "%s", subj);
  int ss = self_signed(leaf);

  /* 1. host name */
  if (d->hostname && rc == MXGW_OK) {
    int ok = X509_check_host(leaf, d->hostname, 0, 0, NULL) == 1;
    fix[0] = '\0';
    if (ok) {
      mxgw__doc_fmt(finding, sizeof finding, "covers %s (subject %s, DNS names %s)",
                    d->hostname, subj, san[0] ? san : "none");
    } else {
      nfail++;
      mxgw__doc_fmt(finding, sizeof finding,
                    "does not cover %s: subject %s, DNS names %s",
                    d->hostname, subj, san[0] ? san : "none");
      mxgw__doc_fmt(fix, sizeof fix,
                    "get a certificate for %s (e.g. certbot certonly -d %s) "
                    "and point the certificate setting at it",
                    d->hostname, d->hostname);
    }
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT,
                       ok ? MXGW_DOCTOR_OK : MXGW_DOCTOR_FAIL, concerns,
                       finding, fix, NULL, NULL);
  }
  /* 2. validity */
  if (rc == MXGW_OK) {
    int status = MXGW_DOCTOR_OK;
    fix[0] = '\0';
    int left = days_until(X509_get0_notAfter(leaf), d->now);
    int before = days_until(X509_get0_notBefore(leaf), d->now);
    asn1_date(X509_get0_notAfter(leaf), date, sizeof date);
    if (left < 0) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding, "expired on %s (%d days ago)",
                    date, -left);
    } else if (before > 0) {
      char nb[64];
      asn1_date(X509_get0_notBefore(leaf), nb, sizeof nb);
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding, "not valid before %s", nb);
    } else if (left < d->expiry_warn_days) {
      status = MXGW_DOCTOR_WARN;
      mxgw__doc_fmt(finding, sizeof finding,
                    "expires on %s: %d days left (warning below %d)", date,
                    left, (int)d->expiry_warn_days);
    } else {
      mxgw__doc_fmt(finding, sizeof finding, "valid until %s: %d days left",
                    date, left);
    }
    if (status != MXGW_DOCTOR_OK) {
      if (status == MXGW_DOCTOR_FAIL)
        nfail++;
      mxgw__doc_fmt(fix, sizeof fix,
                    "renew it (e.g. certbot renew) and reload the gateway");
    }
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, status, concerns, finding,
                       fix, NULL, NULL);
  }
  /* 3. chain (not for a self-signed certificate: see 6) */
  if (rc == MXGW_OK && !ss) {
    int status = check_chain(d, leaf, rest, finding, sizeof finding, fix,
                             sizeof fix);
    if (status == MXGW_DOCTOR_FAIL)
      nfail++;
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, status, concerns, finding,
                       fix, NULL, NULL);
  }
  /* 4. the key matches, 5. its mode */
  EVP_PKEY *pk = rc == MXGW_OK ? read_key(key) : NULL;
  if (rc == MXGW_OK) {
    int status = MXGW_DOCTOR_OK;
    fix[0] = '\0';
    if (!pk) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding, "cannot be read: %s",
                    loaderr[0] ? loaderr : "no unencrypted PEM private key");
      mxgw__doc_fmt(fix, sizeof fix,
                    "point the key setting at the PEM private key of the "
                    "certificate (unencrypted)");
    } else if (X509_check_private_key(leaf, pk) != 1) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding,
                    "does not belong to the certificate %s (%s)", d->tls_cert,
                    subj);
      mxgw__doc_fmt(fix, sizeof fix,
                    "use the key the certificate was issued for; compare "
                    "`openssl x509 -noout -pubkey -in %s` with `openssl pkey "
                    "-pubout -in %s`",
                    d->tls_cert, key);
    } else {
      mxgw__doc_fmt(finding, sizeof finding,
                    "matches the certificate (%s, %d bits)",
                    EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC    ? "EC"
                    : EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA ? "RSA"
                    : OBJ_nid2sn(EVP_PKEY_get_base_id(pk)),
                    EVP_PKEY_get_bits(pk));
    }
    ERR_clear_error();
    if (status == MXGW_DOCTOR_FAIL)
      nfail++;
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, status, kconcerns, finding,
                       fix, NULL, NULL);
  }
  EVP_PKEY_free(pk);
  if (rc == MXGW_OK) {
    struct stat sb;
    int status = MXGW_DOCTOR_OK;
    fix[0] = '\0';
    if (stat(key, &sb) != 0) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding, "cannot stat the key file");
    } else if (sb.st_mode & 077) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding,
                    "mode %04o: readable by %s", (unsigned)(sb.st_mode & 07777),
                    (sb.st_mode & 007) ? "everyone" : "the group");
      mxgw__doc_fmt(fix, sizeof fix, "chmod 600 %s", key);
    } else {
      mxgw__doc_fmt(finding, sizeof finding, "mode %04o: readable by its owner only",
                    (unsigned)(sb.st_mode & 07777));
    }
    if (status == MXGW_DOCTOR_FAIL)
      nfail++;
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, status, kconcerns, finding,
                       fix, NULL, NULL);
  }
  /* 6. self-signed */
  if (rc == MXGW_OK) {
    int status = MXGW_DOCTOR_OK;
    fix[0] = '\0';
    if (ss) {
      status = d->allow_self_signed ? MXGW_DOCTOR_WARN : MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding,
                    "self-signed (%s): senders that verify certificates "
                    "(MTA-STS, DANE) refuse it%s",
                    subj, d->allow_self_signed ? " (allowed)" : "");
      mxgw__doc_fmt(fix, sizeof fix,
                    "replace it with a certificate for %s from a public CA "
                    "(e.g. certbot certonly -d %s)",
                    d->hostname ? d->hostname : "the gateway's host name",
                    d->hostname ? d->hostname : "HOST");
    } else {
      mxgw__doc_fmt(finding, sizeof finding, "issued by %s", iss);
    }
    if (status == MXGW_DOCTOR_FAIL)
      nfail++;
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, status, concerns, finding,
                       fix, NULL, NULL);
  }
  /* the loader refused the pair for a reason not reported above */
  if (rc == MXGW_OK && lrc != MXGW_OK && !nfail)
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_CERT, MXGW_DOCTOR_FAIL, concerns,
                       loaderr, "correct the files as the message says", NULL,
                       NULL);
  X509_free(leaf);
  sk_X509_pop_free(rest, X509_free);
  return rc;
}

/* ---- listener probes ----------------------------------------------------- */

enum { L_SMTP = 0, L_SUBMISSION = 1, L_SMTPS = 2 };

static int ehlo(doc_conn *c, const char *name, char *text, size_t cap,
                int *code, char *err, size_t ecap) {
  char line[320];
  mxgw__doc_fmt(line, sizeof line, "EHLO %s", name);
  if (mxgw__doc_send(c, line, err, ecap))
    return -1;
  return mxgw__doc_reply(c, code, text, cap, err, ecap);
}

static int has_ext(const char *text, const char *ext) {
  size_t el = strlen(ext);
  const char *p = text;
  while (p && *p) {
    const char *e = strchr(p, '\n');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l >= el && !strncasecmp(p, ext, el) && (l == el || p[el] == ' '))
      return 1;
    p = e ? e + 1 : NULL;
  }
  return 0;
}

static void first_line(const char *text, char *buf, size_t cap) {
  const char *e = strchr(text, '\n');
  mxgw__doc_fmt(buf, cap, "%.*s", (int)(e ? e - text : (long)strlen(text)),
                text);
}

static int tls_handshake(mxgw_doctor *d, doc_conn *c, SSL_CTX **ctxp,
                         char *err, size_t ecap) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  *ctxp = ctx;
  if (!ctx) {
    mxgw__doc_fmt(err, ecap, "OpenSSL: cannot create a context");
    return -1;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL *ssl = SSL_new(ctx);
  if (!ssl || !SSL_set_fd(ssl, c->fd)) {
    SSL_free(ssl);
    mxgw__doc_fmt(err, ecap, "OpenSSL: cannot create a connection");
    return -1;
  }
  if (d->hostname)
    SSL_set_tlsext_host_name(ssl, d->hostname);
  c->ssl = ssl;
  if (SSL_connect(ssl) != 1) {
    unsigned long e = ERR_peek_last_error();
    char eb[256] = "";
    if (e)
      ERR_error_string_n(e, eb, sizeof eb);
    else
      mxgw__doc_fmt(eb, sizeof eb, "the server closed the connection or "
                                   "did not answer");
    mxgw__doc_fmt(err, ecap, "TLS handshake failed: %s", eb);
    ERR_clear_error();
    return -1;
  }
  return 0;
}

/* The SHA-256 of the leaf in TLS_CERT when the cert check did not run. */
static void files_fp(mxgw_doctor *d) {
  if (d->cert_fp[0] || !d->tls_cert)
    return;
  STACK_OF(X509) *rest = NULL;
  X509 *leaf = read_chain(d->tls_cert, &rest);
  if (leaf) {
    x509_fp(leaf, d->cert_fp, sizeof d->cert_fp);
    x509_name(X509_get_subject_name(leaf), d->cert_subject,
              sizeof d->cert_subject);
  }
  X509_free(leaf);
  sk_X509_pop_free(rest, X509_free);
}

static int probe_one(mxgw_doctor *d, const char *spec) {
  char target[300], concerns[400], finding[1800], fix[1000], err[600];
  char text[4096], greet[300], detail[1200], mailres[400] = "";
  const char *slash = strrchr(spec, '/');
  int kind = L_SMTP;
  size_t tl = slash ? (size_t)(slash - spec) : strlen(spec);
  mxgw__doc_fmt(target, sizeof target, "%.*s", (int)tl, spec);
  if (slash && !strcmp(slash + 1, "submission"))
    kind = L_SUBMISSION;
  else if (slash && !strcmp(slash + 1, "smtps"))
    kind = L_SMTPS;
  static const char *const kdesc[] = {
      "smtp: STARTTLS expected",
      "submission: STARTTLS required before MAIL",
      "smtps: implicit TLS"};
  mxgw__doc_fmt(concerns, sizeof concerns, "listener %s (%s)", target,
                kdesc[kind]);
  const char *me = d->hostname ? d->hostname : "localhost";
  doc_conn c;
  SSL_CTX *ctx = NULL;
  int code = 0, status = MXGW_DOCTOR_FAIL;
  fix[0] = '\0';
  detail[0] = '\0';
  if (mxgw__doc_connect(&c, target, 0, d->timeout_ms, err, sizeof err)) {
    mxgw__doc_fmt(finding, sizeof finding, "not reachable: %s", err);
    mxgw__doc_fmt(fix, sizeof fix,
                  "start the gateway, or make it listen on %s (and open the "
                  "firewall for it)",
                  target);
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_LISTENER, status, concerns,
                         finding, fix, NULL, NULL);
  }
  if (kind == L_SMTPS && tls_handshake(d, &c, &ctx, err, sizeof err)) {
    mxgw__doc_fmt(finding, sizeof finding, "%s", err);
    mxgw__doc_fmt(fix, sizeof fix,
                  "configure the certificate and key on this listener, or "
                  "declare it /smtp if it speaks STARTTLS");
    goto done;
  }
  if (mxgw__doc_reply(&c, &code, text, sizeof text, err, sizeof err)) {
    mxgw__doc_fmt(finding, sizeof finding, "no SMTP greeting: %s", err);
    mxgw__doc_fmt(fix, sizeof fix,
                  "check that %s is the gateway's SMTP port%s", target,
                  kind == L_SMTP ? " (an implicit-TLS port is /smtps)" : "");
    goto done;
  }
  first_line(text, greet, sizeof greet);
  if (code != 220) {
    mxgw__doc_fmt(finding, sizeof finding, "greeting refused: %d %s", code,
                  greet);
    mxgw__doc_fmt(fix, sizeof fix, "read the gateway's log");
    goto done;
  }
  if (ehlo(&c, me, text, sizeof text, &code, err, sizeof err) ||
      code != 250) {
    mxgw__doc_fmt(finding, sizeof finding, "220 greeting, then EHLO %s: %s",
                  code ? "refused" : "failed",
                  code ? text : err);
    mxgw__doc_fmt(fix, sizeof fix, "read the gateway's log");
    goto done;
  }
  if (kind != L_SMTPS) {
    if (kind == L_SUBMISSION) {
      char mail[400];
      int mcode = 0;
      char mt[1000];
      mxgw__doc_fmt(mail, sizeof mail, "MAIL FROM:<%s%s%s>",
                    d->probe_sender ? d->probe_sender : "postmaster@",
                    d->probe_sender ? "" : (d->domain ? d->domain : me), "");
      if (mxgw__doc_send(&c, mail, err, sizeof err) ||
          mxgw__doc_reply(&c, &mcode, mt, sizeof mt, err, sizeof err)) {
        mxgw__doc_fmt(finding, sizeof finding, "MAIL before STARTTLS: %s", err);
        goto done;
      }
      first_line(mt, greet, sizeof greet);
      mxgw__doc_fmt(mailres, sizeof mailres, "%d %s", mcode, greet);
      if (mcode < 400) {
        mxgw__doc_fmt(finding, sizeof finding,
                      "accepts MAIL before STARTTLS (%s): TLS is not "
                      "required, so passwords and mail can cross in "
                      "cleartext",
                      mailres);
        mxgw__doc_fmt(fix, sizeof fix,
                      "require TLS on this listener (TLS policy \"encrypt\": "
                      "530 5.7.0 before STARTTLS)");
        goto done;
      }
      (void)mxgw__doc_send(&c, "RSET", err, sizeof err);
      (void)mxgw__doc_reply(&c, &mcode, mt, sizeof mt, err, sizeof err);
    }
    if (!has_ext(text, "STARTTLS")) {
      char exts[600];
      size_t el = 0;
      exts[0] = '\0';
      const char *p = strchr(text, '\n');
      while (p) {
        p++;
        const char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        int w = snprintf(exts + el, sizeof exts - el, "%s%.*s",
                         el ? ", " : "", (int)l, p);
        if (w < 0 || (size_t)w >= sizeof exts - el)
          break;
        el += (size_t)w;
        p = e;
      }
      mxgw__doc_fmt(finding, sizeof finding,
                    "STARTTLS is not offered (EHLO lists: %s): senders "
                    "deliver in cleartext, or not at all if they require TLS",
                    exts[0] ? exts : "nothing");
      mxgw__doc_fmt(fix, sizeof fix,
                    "give this listener the certificate and key%s%s%s so "
                    "that it offers STARTTLS",
                    d->tls_cert ? " (" : "", d->tls_cert ? d->tls_cert : "",
                    d->tls_cert ? ")" : "");
      goto done;
    }
    if (mxgw__doc_send(&c, "STARTTLS", err, sizeof err) ||
        mxgw__doc_reply(&c, &code, text, sizeof text, err, sizeof err)) {
      mxgw__doc_fmt(finding, sizeof finding, "STARTTLS offered, then: %s",
                    err);
      goto done;
    }
    if (code != 220) {
      first_line(text, greet, sizeof greet);
      mxgw__doc_fmt(finding, sizeof finding,
                    "STARTTLS offered but refused: %d %s", code, greet);
      mxgw__doc_fmt(fix, sizeof fix,
                    "check the gateway's TLS settings and its log");
      goto done;
    }
    if (tls_handshake(d, &c, &ctx, err, sizeof err)) {
      mxgw__doc_fmt(finding, sizeof finding, "STARTTLS offered, but %s", err);
      mxgw__doc_fmt(fix, sizeof fix,
                    "check the gateway's certificate, key and TLS versions "
                    "(TLS 1.2 at least)");
      goto done;
    }
  }
  /* the served certificate */
  SSL *ssl = c.ssl;
  X509 *peer = SSL_get1_peer_certificate(ssl);
  char fp[128] = "", subj[300] = "", sfp[40], ffp[40];
  if (peer) {
    x509_fp(peer, fp, sizeof fp);
    x509_name(X509_get_subject_name(peer), subj, sizeof subj);
  }
  int pss = peer && self_signed(peer);
  int phost = peer && d->hostname &&
              X509_check_host(peer, d->hostname, 0, 0, NULL) == 1;
  X509_free(peer);
  short_fp(fp, sfp, sizeof sfp);
  files_fp(d);
  short_fp(d->cert_fp, ffp, sizeof ffp);
  char tlsinfo[200];
  mxgw__doc_fmt(tlsinfo, sizeof tlsinfo, "%s %s", SSL_get_version(ssl),
                SSL_get_cipher_name(ssl));
  mxgw__doc_fmt(detail, sizeof detail,
                "served: %s SHA-256 %s%s%s%s%s", subj, fp,
                d->cert_fp[0] ? "\nfile:   " : "",
                d->cert_fp[0] ? d->cert_subject : "",
                d->cert_fp[0] ? " SHA-256 " : "", d->cert_fp);
  if (!fp[0]) {
    mxgw__doc_fmt(finding, sizeof finding,
                  "handshake done (%s) but no certificate was served",
                  tlsinfo);
    goto done;
  }
  if (d->cert_fp[0] && strcmp(fp, d->cert_fp)) {
    mxgw__doc_fmt(finding, sizeof finding,
                  "serves %s%s (SHA-256 %s), not the certificate in %s (%s, "
                  "SHA-256 %s)",
                  subj, pss ? ", self-signed" : "", sfp, d->tls_cert,
                  d->cert_subject, ffp);
    mxgw__doc_fmt(fix, sizeof fix,
                  "make the gateway serve %s: check that its certificate "
                  "setting names that file, then reload (SIGHUP) or restart "
                  "it",
                  d->tls_cert);
    goto done;
  }
  if (!d->cert_fp[0] && ((d->hostname && !phost) ||
                         (pss && !d->allow_self_signed))) {
    mxgw__doc_fmt(finding, sizeof finding, "serves %s%s (SHA-256 %s)%s%s",
                  subj, pss ? ", self-signed" : "", sfp,
                  d->hostname && !phost ? ", which does not cover " : "",
                  d->hostname && !phost ? d->hostname : "");
    mxgw__doc_fmt(fix, sizeof fix,
                  "install a certificate for %s from a public CA and reload "
                  "the gateway",
                  d->hostname ? d->hostname : "the gateway's host name");
    goto done;
  }
  /* EHLO again over TLS */
  if (ehlo(&c, me, text, sizeof text, &code, err, sizeof err) ||
      code != 250) {
    mxgw__doc_fmt(finding, sizeof finding, "TLS up (%s), then EHLO %s: %s",
                  tlsinfo, code ? "refused" : "failed", code ? text : err);
    mxgw__doc_fmt(fix, sizeof fix, "read the gateway's log");
    goto done;
  }
  (void)mxgw__doc_send(&c, "QUIT", err, sizeof err);
  status = MXGW_DOCTOR_OK;
  if (kind == L_SMTPS)
    mxgw__doc_fmt(finding, sizeof finding,
                  "implicit TLS (%s), 220 greeting, serves %s (SHA-256 %s)%s",
                  tlsinfo, subj, sfp,
                  d->cert_fp[0] ? ": the certificate in the files" : "");
  else
    mxgw__doc_fmt(finding, sizeof finding,
                  "220 greeting, STARTTLS offered%s%s%s, %s, serves %s "
                  "(SHA-256 %s)%s",
                  mailres[0] ? ", MAIL before STARTTLS refused (" : "",
                  mailres, mailres[0] ? ")" : "", tlsinfo, subj, sfp,
                  d->cert_fp[0] ? ": the certificate in the files" : "");
done:
  mxgw__doc_close(&c);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_LISTENER, status, concerns,
                       finding, fix, NULL, detail);
}

int mxgw__doc_check_listeners(mxgw_doctor *d) {
  for (size_t i = 0; i < d->n_listen; i++) {
    int rc = probe_one(d, d->listen[i]);
    if (rc)
      return rc;
  }
  return MXGW_OK;
}

/* ---- round trip ----------------------------------------------------------- */


/* Scan the log from `off` for the delivery line of queue ID `id`. Returns
 * 1 and fills status/line when found, 0 if not (yet), -1 if unreadable. */
static int rt_scan(mxgw_doctor *d, long off, const char *id, char *status,
                   size_t scap, char *line, size_t lcap) {
  FILE *f = fopen(d->log_file, "r");
  if (!f)
    return -1;
  struct stat sb;
  if (fstat(fileno(f), &sb) == 0 && sb.st_size < off)
    off = 0; /* rotated or truncated */
  if (fseek(f, off, SEEK_SET) != 0) {
    fclose(f);
    return -1;
  }
  char buf[8192];
  int found = 0;
  while (!found && fgets(buf, sizeof buf, f)) {
    if (!strstr(buf, id))
      continue;
    const char *st = strstr(buf, "status=");
    size_t skip = 7;
    if (!st) {
      st = strstr(buf, "\"status\":\"");
      skip = 10;
    }
    if (!st)
      continue;
    size_t n = strspn(st + skip, "abcdefghijklmnopqrstuvwxyz");
    if (!n)
      continue;
    mxgw__doc_fmt(status, scap, "%.*s", (int)n, st + skip);
    size_t bl = strcspn(st, "\r\n");
    mxgw__doc_fmt(line, lcap, "%.*s", (int)(bl > 300 ? 300 : bl), st);
    found = 1;
  }
  fclose(f);
  return found;
}

static const char *rt_listener(mxgw_doctor *d, char *target, size_t cap,
                               int *smtps) {
  for (size_t i = 0; i < d->n_listen; i++) {
    const char *s = d->listen[i];
    const char *slash = strrchr(s, '/');
    if (slash && !strcmp(slash + 1, "submission"))
      continue;
    *smtps = slash && !strcmp(slash + 1, "smtps");
    size_t tl = slash ? (size_t)(slash - s) : strlen(s);
    mxgw__doc_fmt(target, cap, "%.*s", (int)tl, s);
    return target;
  }
  return NULL;
}

/* One command and its reply; 0 if the reply's class is `want` (2, 3). */
static int rt_cmd(doc_conn *c, const char *cmd, int want, int *code,
                  char *text, size_t tcap, char *err, size_t ecap) {
  if (cmd && mxgw__doc_send(c, cmd, err, ecap))
    return -1;
  if (mxgw__doc_reply(c, code, text, tcap, err, ecap))
    return -1;
  if (*code / 100 != want) {
    char fl[300];
    first_line(text, fl, sizeof fl);
    mxgw__doc_fmt(err, ecap, "%s%s%d %s", cmd ? cmd : "greeting",
                  cmd ? ": " : ": ", *code, fl);
    return -1;
  }
  return 0;
}

int mxgw__doc_check_round_trip(mxgw_doctor *d) {
  char concerns[600], finding[1600], fix[800], err[700], text[4096];
  char target[300], sender[300], line[600], qid[80] = "", reply[300] = "";
  int smtps = 0, code = 0, status = MXGW_DOCTOR_FAIL;
  fix[0] = '\0';
  if (!rt_listener(d, target, sizeof target, &smtps) || !d->log_file) {
    mxgw__doc_fmt(concerns, sizeof concerns, "round trip to %s", d->rt_rcpt);
    return mxgw__doc_add(
        d, MXGW_DOCTOR_CHECK_ROUND_TRIP, MXGW_DOCTOR_WARN, concerns,
        "not run: it needs an smtp or smtps listener and the gateway's log "
        "file",
        "give --listen HOST:PORT/smtp and --log-file FILE", NULL, NULL);
  }
  mxgw__doc_fmt(concerns, sizeof concerns,
                "round trip to %s through %s (log %s)", d->rt_rcpt, target,
                d->log_file);
  struct stat sb;
  if (stat(d->log_file, &sb) != 0) {
    mxgw__doc_fmt(finding, sizeof finding, "cannot read the log file %s",
                  d->log_file);
    mxgw__doc_fmt(fix, sizeof fix,
                  "give the gateway's log file (mxgwd: logging.outputs[] "
                  "with destination \"file\")");
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_ROUND_TRIP, status, concerns,
                         finding, fix, NULL, NULL);
  }
  long off = (long)sb.st_size;
  if (d->probe_sender)
    mxgw__doc_fmt(sender, sizeof sender, "%s", d->probe_sender);
  else
    mxgw__doc_fmt(sender, sizeof sender, "postmaster@%s",
                  d->domain ? d->domain
                            : (d->hostname ? d->hostname : "localhost"));
  const char *me = d->hostname ? d->hostname : "localhost";
  char token[80];
  mxgw__doc_fmt(token, sizeof token, "%lld.%lld", (long long)d->now,
                (long long)(mxgw__mono_ms() % 1000000));
  doc_conn c;
  SSL_CTX *ctx = NULL;
  int64_t t0 = mxgw__mono_ms();
  if (mxgw__doc_connect(&c, target, 0, d->timeout_ms, err, sizeof err)) {
    mxgw__doc_fmt(finding, sizeof finding, "not sent: %s", err);
    mxgw__doc_fmt(fix, sizeof fix, "see the listener findings");
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_ROUND_TRIP, status, concerns,
                         finding, fix, NULL, NULL);
  }
  char cmd[700];
  int tls = 0;
  if (smtps) {
    if (tls_handshake(d, &c, &ctx, err, sizeof err))
      goto failed;
    tls = 1;
  }
  if (rt_cmd(&c, NULL, 2, &code, text, sizeof text, err, sizeof err))
    goto failed;
  mxgw__doc_fmt(cmd, sizeof cmd, "EHLO %s", me);
  if (rt_cmd(&c, cmd, 2, &code, text, sizeof text, err, sizeof err))
    goto failed;
  if (!tls && has_ext(text, "STARTTLS")) {
    if (rt_cmd(&c, "STARTTLS", 2, &code, text, sizeof text, err, sizeof err) ||
        tls_handshake(d, &c, &ctx, err, sizeof err) ||
        rt_cmd(&c, cmd, 2, &code, text, sizeof text, err, sizeof err))
      goto failed;
    tls = 1;
  }
  mxgw__doc_fmt(cmd, sizeof cmd, "MAIL FROM:<%s>", sender);
  if (rt_cmd(&c, cmd, 2, &code, text, sizeof text, err, sizeof err))
    goto failed;
  mxgw__doc_fmt(cmd, sizeof cmd, "RCPT TO:<%s>", d->rt_rcpt);
  if (rt_cmd(&c, cmd, 2, &code, text, sizeof text, err, sizeof err))
    goto failed;
  if (rt_cmd(&c, "DATA", 3, &code, text, sizeof text, err, sizeof err))
    goto failed;
  const char *body[] = {"Subject: mxgw-doctor round trip", "X-Mxgw-Doctor: "
                        "round trip", "", "This message was sent by "
                        "mxgw-doctor to test delivery through the gateway.",
                        "It can be deleted."};
  mxgw__doc_fmt(cmd, sizeof cmd, "From: <%s>", sender);
  if (mxgw__doc_send(&c, cmd, err, sizeof err))
    goto failed;
  mxgw__doc_fmt(cmd, sizeof cmd, "To: <%s>", d->rt_rcpt);
  if (mxgw__doc_send(&c, cmd, err, sizeof err))
    goto failed;
  mxgw__doc_fmt(cmd, sizeof cmd, "Message-ID: <doctor.%s@%s>", token, me);
  if (mxgw__doc_send(&c, cmd, err, sizeof err))
    goto failed;
  for (size_t i = 0; i < sizeof body / sizeof body[0]; i++)
    if (mxgw__doc_send(&c, body[i], err, sizeof err))
      goto failed;
  if (rt_cmd(&c, ".", 2, &code, text, sizeof text, err, sizeof err))
    goto failed;
  first_line(text, reply, sizeof reply);
  const char *qa = strstr(reply, "queued as ");
  if (qa)
    mxgw__doc_fmt(qid, sizeof qid, "%.*s",
                  (int)strcspn(qa + 10, " \t)"), qa + 10);
  (void)mxgw__doc_send(&c, "QUIT", err, sizeof err);
  mxgw__doc_close(&c);
  SSL_CTX_free(ctx);
  ctx = NULL;
  if (!qid[0]) {
    status = MXGW_DOCTOR_WARN;
    mxgw__doc_fmt(finding, sizeof finding,
                  "accepted (%d %s), but the reply names no queue ID to "
                  "follow in the log",
                  code, reply);
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_ROUND_TRIP, status, concerns,
                         finding, "", NULL, NULL);
  }
  /* wait for the delivery line */
  char st[32] = "";
  int found = 0;
  while (!found && mxgw__mono_ms() - t0 < d->rt_wait_ms) {
    found = rt_scan(d, off, qid, st, sizeof st, line, sizeof line);
    if (found < 0) {
      found = 0;
      break;
    }
    if (!found) {
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  double secs = (double)(mxgw__mono_ms() - t0) / 1000.0;
  if (found && !strcmp(st, "sent")) {
    status = MXGW_DOCTOR_OK;
    mxgw__doc_fmt(finding, sizeof finding,
                  "delivered in %.1f s%s: queued as %s, then %s", secs,
                  tls ? " (over TLS)" : "", qid, line);
  } else if (found) {
    mxgw__doc_fmt(finding, sizeof finding,
                  "queued as %s, then not delivered: %s", qid, line);
    mxgw__doc_fmt(fix, sizeof fix,
                  "see the backend and queue findings; the line says what "
                  "the backend answered");
  } else {
    mxgw__doc_fmt(finding, sizeof finding,
                  "queued as %s (%s), but no delivery line for it in %s "
                  "within %.0f s",
                  qid, reply, d->log_file, (double)d->rt_wait_ms / 1000.0);
    mxgw__doc_fmt(fix, sizeof fix,
                  "see the backend and queue findings (mxgw-queue show %s); "
                  "check that %s is the gateway's log",
                  qid, d->log_file);
  }
  return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_ROUND_TRIP, status, concerns,
                       finding, fix, NULL, NULL);
failed:
  mxgw__doc_close(&c);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  mxgw__doc_fmt(finding, sizeof finding, "not accepted: %s", err);
  mxgw__doc_fmt(fix, sizeof fix,
                "send to an address of a domain the gateway serves; see the "
                "listener findings");
  return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_ROUND_TRIP, status, concerns,
                       finding, fix, NULL, NULL);
}
