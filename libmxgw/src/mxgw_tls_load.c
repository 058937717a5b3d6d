/* SPDX-License-Identifier: MIT */
/*
 * mxgw_tls_load.c: reading and validating one certificate chain and its
 * private key. Files are read whole (with their stat() for change
 * detection), split into PEM blocks by a small scanner that knows line
 * numbers, and each block decoded by OpenSSL. Every problem becomes one
 * precise message naming the file: missing or unreadable, empty, DER or
 * other binary data, garbage, corrupt block, no certificate or no key,
 * encrypted key without (or with the wrong) passphrase, key readable by
 * group or others, key not matching the certificate, expired or not yet
 * valid, host name not covered. Softer findings are warnings: the chain out
 * of order (it is then served in order), a certificate not part of the
 * chain, the chain incomplete, expiry within N days, self-signed. The
 * result also carries what inspection reports (subject, SAN, dates, key,
 * fingerprint).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "mxgw_tls_load.h"

#define MAX_FILE_SIZE (1024 * 1024) /* certificate and key files */
#define MAX_BLOCKS 64

/* ---- small helpers ------------------------------------------------------- */

int mxgw__tls_strlist_add(tls_strlist *l, const mxgw_mem *m, const char *fmt,
                          ...) {
  mxgw_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  int rv = mxgw__buf_vappendf(&b, m, fmt, ap);
  va_end(ap);
  if (!rv)
    rv = mxgw__buf_append(&b, m, "", 1); /* NUL */
  if (rv) {
    mxgw__buf_free(&b, m);
    return MXGW_E_NOMEM;
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    char **v = mxgw__realloc(m, l->v, cap * sizeof *v);
    if (!v) {
      mxgw__buf_free(&b, m);
      return MXGW_E_NOMEM;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = b.data; /* off is 0: we never consumed */
  return 0;
}

void mxgw__tls_strlist_clear(tls_strlist *l, const mxgw_mem *m) {
  for (size_t i = 0; i < l->n; i++)
    mxgw__free(m, l->v[i]);
  mxgw__free(m, l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

static void err_set(mxgw_buf *err, const mxgw_mem *m, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
static void err_set(mxgw_buf *err, const mxgw_mem *m, const char *fmt, ...) {
  va_list ap;
  mxgw__buf_reset(err);
  va_start(ap, fmt);
  (void)mxgw__buf_vappendf(err, m, fmt, ap);
  va_end(ap);
}

void mxgw__tls_append_ssl_error(mxgw_buf *b, const mxgw_mem *m) {
  unsigned long e = ERR_peek_last_error();
  if (!e) {
    (void)mxgw__buf_appendf(b, m, "unknown OpenSSL error");
  } else {
    const char *r = ERR_reason_error_string(e);
    if (r) {
      (void)mxgw__buf_appendf(b, m, "%s", r);
    } else {
      char tmp[256];
      ERR_error_string_n(e, tmp, sizeof tmp);
      (void)mxgw__buf_appendf(b, m, "%s", tmp);
    }
  }
  ERR_clear_error();
}

/* Does [p, p+n) contain the NUL-terminated string needle? */
static bool contains(const char *p, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; k <= n && i <= n - k; i++)
    if (p[i] == needle[0] && memcmp(p + i, needle, k) == 0)
      return true;
  return false;
}

static const char *errno_str(int e, char *buf, size_t len) {
  /* XSI strerror_r (_POSIX_C_SOURCE 200809L). */
  if (strerror_r(e, buf, len) != 0)
    snprintf(buf, len, "error %d", e);
  return buf;
}

void mxgw__tls_stamp_path(tls_stamp *st, const char *path) {
  struct stat sb;
  memset(st, 0, sizeof *st);
  if (stat(path, &sb) != 0) {
    st->err = errno ? errno : EIO;
    return;
  }
  st->dev = sb.st_dev;
  st->ino = sb.st_ino;
  st->size = sb.st_size;
  st->mode = sb.st_mode;
  st->mtim = sb.st_mtim;
}

static void stamp_from(tls_stamp *st, const struct stat *sb) {
  memset(st, 0, sizeof *st);
  st->dev = sb->st_dev;
  st->ino = sb->st_ino;
  st->size = sb->st_size;
  st->mode = sb->st_mode;
  st->mtim = sb->st_mtim;
}

bool mxgw__tls_stamp_eq(const tls_stamp *a, const tls_stamp *b) {
  if (a->err || b->err)
    return a->err == b->err;
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
         a->mode == b->mode && a->mtim.tv_sec == b->mtim.tv_sec &&
         a->mtim.tv_nsec == b->mtim.tv_nsec;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned mo, unsigned d) {
  y -= mo <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (mo + (mo > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static time_t tm_to_time(const struct tm *tm) {
  int64_t days = days_from_civil((int64_t)tm->tm_year + 1900,
                                 (unsigned)tm->tm_mon + 1, (unsigned)tm->tm_mday);
  return (time_t)(days * 86400 + tm->tm_hour * 3600 + tm->tm_min * 60 +
                  tm->tm_sec);
}

static int asn1_time(const ASN1_TIME *a, time_t *t, char *iso, size_t isolen) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!a || !ASN1_TIME_to_tm(a, &tm)) {
    snprintf(iso, isolen, "?");
    *t = 0;
    return -1;
  }
  *t = tm_to_time(&tm);
  snprintf(iso, isolen, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return 0;
}

int64_t mxgw__tls_days_left(time_t t, time_t now) {
  int64_t d = (int64_t)t - (int64_t)now;
  /* floor division: one second past expiry is day -1 */
  return d >= 0 ? d / 86400 : -((-d + 86399) / 86400);
}

int mxgw__tls_name_str(const X509_NAME *name, char *buf, size_t len) {
  if (!len)
    return -1;
  buf[0] = 0;
  BIO *b = BIO_new(BIO_s_mem());
  if (!b)
    return -1;
  /* RFC 2253, keeping UTF-8 readable */
  int n = X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  if (n < 0) {
    BIO_free(b);
    return -1;
  }
  char *p = NULL;
  long blen = BIO_get_mem_data(b, &p);
  size_t k = blen > 0 ? (size_t)blen : 0;
  if (k >= len)
    k = len - 1;
  if (k)
    memcpy(buf, p, k);
  buf[k] = 0;
  BIO_free(b);
  return 0;
}

int mxgw__tls_fingerprint(const X509 *x, char *buf, size_t len) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!len)
    return -1;
  buf[0] = 0;
  if (!X509_digest(x, EVP_sha256(), md, &n) || len < (size_t)n * 3)
    return -1;
  static const char hex[] = "0123456789ABCDEF";
  for (unsigned i = 0; i < n; i++) {
    buf[i * 3] = hex[md[i] >> 4];
    buf[i * 3 + 1] = hex[md[i] & 15];
    buf[i * 3 + 2] = i + 1 < n ? ':' : 0;
  }
  return 0;
}

static char *dup0(const mxgw_mem *m, const char *s) {
  return mxgw__strdup(m, s ? s : "");
}

/* "CN=x" of a certificate, for messages. */
static void subj(const X509 *x, char *buf, size_t len) {
  if (mxgw__tls_name_str(X509_get_subject_name(x), buf, len) || !buf[0])
    snprintf(buf, len, "(empty subject)");
}

static void key_desc(const EVP_PKEY *k, char *buf, size_t len) {
  if (!k) {
    snprintf(buf, len, "no key");
    return;
  }
  const char *t;
  switch (EVP_PKEY_get_base_id(k)) {
  case EVP_PKEY_RSA: t = "RSA"; break;
  case EVP_PKEY_RSA_PSS: t = "RSA-PSS"; break;
  case EVP_PKEY_EC: t = "EC"; break;
  case EVP_PKEY_ED25519: t = "ED25519"; break;
  case EVP_PKEY_ED448: t = "ED448"; break;
  case EVP_PKEY_DSA: t = "DSA"; break;
  default: t = "unknown"; break;
  }
  snprintf(buf, len, "%s %d", t, EVP_PKEY_get_bits(k));
}

static const char *key_type_name(int id) {
  switch (id) {
  case EVP_PKEY_RSA: return "RSA";
  case EVP_PKEY_RSA_PSS: return "RSA-PSS";
  case EVP_PKEY_EC: return "EC";
  case EVP_PKEY_ED25519: return "ED25519";
  case EVP_PKEY_ED448: return "ED448";
  case EVP_PKEY_DSA: return "DSA";
  default: return "unknown";
  }
}

/* DNS names of the subjectAltName, ", "-separated; *n receives the count. */
static int san_list(const mxgw_mem *m, const X509 *x, mxgw_buf *out, int *n) {
  *n = 0;
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  if (!gens)
    return 0;
  int rv = 0;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !rv; i++) {
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type != GEN_DNS)
      continue;
    const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
    int len = ASN1_STRING_length(g->d.dNSName);
    if (*n)
      rv = mxgw__buf_append(out, m, ", ", 2);
    for (int j = 0; j < len && !rv; j++) {
      char c = (p[j] > 32 && p[j] < 127 && p[j] != ',') ? (char)p[j] : '?';
      rv = mxgw__buf_append(out, m, &c, 1);
    }
    (*n)++;
  }
  GENERAL_NAMES_free(gens);
  return rv ? MXGW_E_NOMEM : 0;
}

/* ---- reading files --------------------------------------------------------- */

typedef struct src_data {
  const char *name; /* file name or "<memory ...>" for messages */
  const char *data;
  size_t len;
  char *owned; /* file contents */
  tls_stamp st;
  bool from_file;
} src_data;

static int read_file(const mxgw_mem *m, const char *path, src_data *sd,
                     mxgw_buf *err) {
  char eb[128];
  sd->name = path;
  sd->from_file = true;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    sd->st.err = e;
    if (e == ENOENT)
      err_set(err, m, "%s: no such file", path);
    else if (e == EACCES)
      err_set(err, m, "%s: cannot open: %s (running as uid %ld)", path,
              errno_str(e, eb, sizeof eb), (long)geteuid());
    else
      err_set(err, m, "%s: cannot open: %s", path, errno_str(e, eb, sizeof eb));
    return MXGW_E_IO;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    err_set(err, m, "%s: cannot stat: %s", path, errno_str(e, eb, sizeof eb));
    return MXGW_E_IO;
  }
  stamp_from(&sd->st, &sb);
  if (S_ISDIR(sb.st_mode)) {
    close(fd);
    err_set(err, m, "%s: is a directory, not a file", path);
    return MXGW_E_IO;
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    err_set(err, m, "%s: not a regular file", path);
    return MXGW_E_IO;
  }
  if (sb.st_size > MAX_FILE_SIZE) {
    close(fd);
    err_set(err, m, "%s: too large for a certificate or key file (%lld bytes)",
            path, (long long)sb.st_size);
    return MXGW_E_IO;
  }
  size_t cap = (size_t)sb.st_size + 1, len = 0;
  char *buf = mxgw__malloc(m, cap);
  if (!buf) {
    close(fd);
    return MXGW_E_NOMEM;
  }
  for (;;) {
    if (len + 1 >= cap) { /* the file grew while we read it */
      if (cap > MAX_FILE_SIZE) {
        mxgw__free(m, buf);
        close(fd);
        err_set(err, m, "%s: too large for a certificate or key file", path);
        return MXGW_E_IO;
      }
      char *nb = mxgw__realloc(m, buf, cap * 2);
      if (!nb) {
        mxgw__free(m, buf);
        close(fd);
        return MXGW_E_NOMEM;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int e = errno;
      mxgw__free(m, buf);
      close(fd);
      err_set(err, m, "%s: read error: %s", path, errno_str(e, eb, sizeof eb));
      return MXGW_E_IO;
    }
    if (r == 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0;
  sd->owned = buf;
  sd->data = buf;
  sd->len = len;
  return 0;
}

/* ---- PEM scanning -------------------------------------------------------- */

typedef struct pem_block {
  const char *p; /* from the BEGIN line to the end of the END line */
  size_t len;
  char label[48];
  int line; /* of the BEGIN line, 1-based */
  bool encrypted;
} pem_block;

typedef struct pem_scan {
  pem_block b[MAX_BLOCKS];
  int n;
} pem_scan;

/* Next line [*ls, *le) (without the line end); returns false at the end. */
static bool next_line(const char *d, size_t len, size_t *pos, const char **ls,
                      size_t *ll) {
  if (*pos >= len)
    return false;
  const char *s = d + *pos;
  const char *e = memchr(s, '\n', len - *pos);
  size_t n = e ? (size_t)(e - s) : len - *pos;
  *pos += n + (e ? 1 : 0);
  while (n && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  *ls = s;
  *ll = n;
  return true;
}

static bool is_marker(const char *l, size_t n, const char *kind, char *label,
                      size_t lablen) {
  size_t k = strlen(kind);
  if (n < k + 5 || memcmp(l, kind, k) != 0 || memcmp(l + n - 5, "-----", 5))
    return false;
  size_t ln = n - k - 5;
  if (ln >= lablen)
    ln = lablen - 1;
  memcpy(label, l + k, ln);
  label[ln] = 0;
  return true;
}

static int pem_scan_data(const mxgw_mem *m, const src_data *sd, pem_scan *ps,
                         mxgw_buf *err) {
  size_t pos = 0;
  int line = 0;
  const char *l;
  size_t ll;
  ps->n = 0;
  while (next_line(sd->data, sd->len, &pos, &l, &ll)) {
    line++;
    char label[48];
    if (!is_marker(l, ll, "-----BEGIN ", label, sizeof label))
      continue;
    if (ps->n == MAX_BLOCKS) {
      err_set(err, m, "%s: more than %d PEM blocks", sd->name, MAX_BLOCKS);
      return MXGW_E_SYNTAX;
    }
    pem_block *b = &ps->b[ps->n];
    memcpy(b->label, label, sizeof label);
    b->line = line;
    b->p = l;
    b->encrypted = strcmp(label, "ENCRYPTED PRIVATE KEY") == 0;
    bool ended = false;
    while (next_line(sd->data, sd->len, &pos, &l, &ll)) {
      line++;
      char endl[48];
      if (ll >= 9 && memcmp(l, "Proc-Type", 9) == 0 &&
          contains(l, ll, "ENCRYPTED"))
        b->encrypted = true;
      if (is_marker(l, ll, "-----END ", endl, sizeof endl)) {
        if (strcmp(endl, b->label) != 0) {
          err_set(err, m,
                  "%s line %d: '-----BEGIN %s-----' (line %d) ends with "
                  "'-----END %s-----'",
                  sd->name, line, b->label, b->line, endl);
          return MXGW_E_SYNTAX;
        }
        b->len = (size_t)(l + ll - b->p);
        ended = true;
        break;
      }
      if (is_marker(l, ll, "-----BEGIN ", endl, sizeof endl)) {
        err_set(err, m,
                "%s line %d: '-----BEGIN %s-----' (line %d) has no "
                "'-----END %s-----' line before the next BEGIN",
                sd->name, line, b->label, b->line, b->label);
        return MXGW_E_SYNTAX;
      }
    }
    if (!ended) {
      err_set(err, m,
              "%s line %d: '-----BEGIN %s-----' has no '-----END %s-----' "
              "line (file truncated?)",
              sd->name, b->line, b->label, b->label);
      return MXGW_E_SYNTAX;
    }
    ps->n++;
  }
  return 0;
}

static bool is_key_label(const char *l) {
  return !strcmp(l, "PRIVATE KEY") || !strcmp(l, "ENCRYPTED PRIVATE KEY") ||
         !strcmp(l, "RSA PRIVATE KEY") || !strcmp(l, "EC PRIVATE KEY") ||
         !strcmp(l, "DSA PRIVATE KEY");
}

static bool is_cert_label(const char *l) {
  return !strcmp(l, "CERTIFICATE") || !strcmp(l, "TRUSTED CERTIFICATE") ||
         !strcmp(l, "X509 CERTIFICATE");
}

/* "CERTIFICATE REQUEST at line 1, PRIVATE KEY at line 9" */
static void found_list(const pem_scan *ps, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = 0;
  for (int i = 0; i < ps->n && k + 1 < len; i++) {
    int w = snprintf(buf + k, len - k, "%s%s at line %d", i ? ", " : "",
                     ps->b[i].label, ps->b[i].line);
    if (w < 0)
      break;
    k += (size_t)w;
  }
}

/* The data has no PEM block: say what it is. */
static int not_pem(const mxgw_mem *m, const src_data *sd, bool want_key,
                   mxgw_buf *err) {
  const unsigned char *u = (const unsigned char *)sd->data;
  size_t i;
  for (i = 0; i < sd->len; i++)
    if (u[i] != ' ' && u[i] != '\t' && u[i] != '\r' && u[i] != '\n')
      break;
  if (sd->len == 0) {
    err_set(err, m, "%s: file is empty", sd->name);
    return MXGW_E_SYNTAX;
  }
  if (i == sd->len) {
    err_set(err, m, "%s: file is empty (only white space)", sd->name);
    return MXGW_E_SYNTAX;
  }
  if (u[0] == 0x30 && sd->len < (size_t)LONG_MAX) {
    /* ASN.1 SEQUENCE: DER. Which kind? */
    const unsigned char *p = u;
    X509 *x = d2i_X509(NULL, &p, (long)sd->len);
    if (x) {
      X509_free(x);
      ERR_clear_error();
      err_set(err, m,
              "%s: looks like DER (binary), not PEM: a DER certificate; "
              "convert with: openssl x509 -inform der -in %s -out %s.pem",
              sd->name, sd->name, sd->name);
      return MXGW_E_SYNTAX;
    }
    p = u;
    EVP_PKEY *k = d2i_AutoPrivateKey(NULL, &p, (long)sd->len);
    if (k) {
      EVP_PKEY_free(k);
      ERR_clear_error();
      err_set(err, m,
              "%s: looks like DER (binary), not PEM: a DER private key; "
              "convert with: openssl pkey -inform der -in %s -out %s.pem",
              sd->name, sd->name, sd->name);
      return MXGW_E_SYNTAX;
    }
    p = u;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)sd->len);
    if (p12) {
      PKCS12_free(p12);
      ERR_clear_error();
      err_set(err, m,
              "%s: looks like PKCS#12 (binary), not PEM; convert with: "
              "openssl pkcs12 -in %s -out %s.pem -nodes (then split the "
              "certificates and the key)",
              sd->name, sd->name, sd->name);
      return MXGW_E_SYNTAX;
    }
    ERR_clear_error();
    err_set(err, m,
            "%s: looks like DER (binary ASN.1), not PEM; convert with: "
            "openssl %s -inform der -in %s -out %s.pem",
            sd->name, want_key ? "pkey" : "x509", sd->name, sd->name);
    return MXGW_E_SYNTAX;
  }
  /* text or binary garbage: quote the start if it is text */
  size_t n = 0, bin = 0;
  const size_t lim = sd->len < 256 ? sd->len : 256;
  for (size_t j = 0; j < lim; j++)
    if (u[j] == 0 || (u[j] < 32 && u[j] != '\n' && u[j] != '\r' && u[j] != '\t'))
      bin++;
  if (bin) {
    err_set(err, m, "%s: not PEM: binary data, no '-----BEGIN' line", sd->name);
    return MXGW_E_SYNTAX;
  }
  char q[48];
  for (size_t j = i; j < sd->len && n < 40 && u[j] != '\n' && u[j] != '\r'; j++)
    q[n++] = (u[j] >= 32 && u[j] < 127) ? (char)u[j] : '?';
  q[n] = 0;
  err_set(err, m,
          "%s: not PEM: no '-----BEGIN ...-----' line (the file starts with "
          "\"%s\")",
          sd->name, q);
  return MXGW_E_SYNTAX;
}

/* ---- key decoding ---------------------------------------------------------- */

typedef struct pw_state {
  const char *pass;
  bool asked;
} pw_state;

static int pw_cb(char *buf, int size, int rwflag, void *u) {
  pw_state *ps = u;
  (void)rwflag;
  ps->asked = true;
  if (!ps->pass || size <= 0)
    return -1; /* never prompt on a terminal */
  size_t n = strlen(ps->pass);
  if (n > (size_t)size)
    n = (size_t)size;
  memcpy(buf, ps->pass, n);
  return (int)n;
}

static int decode_key(const mxgw_mem *m, const src_data *sd,
                      const pem_block *b, const char *pass, EVP_PKEY **out,
                      mxgw_buf *err) {
  *out = NULL;
  if (b->encrypted && !pass) {
    err_set(err, m,
            "%s line %d: the private key is encrypted and no passphrase is "
            "set (MXGW_TLS_KEY_PASSPHRASE)",
            sd->name, b->line);
    return MXGW_E_TLS;
  }
  BIO *bio = BIO_new_mem_buf(b->p, (int)b->len);
  if (!bio)
    return MXGW_E_NOMEM;
  pw_state pw = {pass, false};
  ERR_clear_error();
  EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, pw_cb, &pw);
  BIO_free(bio);
  if (!k) {
    if (b->encrypted) {
      ERR_clear_error();
      err_set(err, m,
              "%s line %d: cannot decrypt the private key: wrong passphrase "
              "(MXGW_TLS_KEY_PASSPHRASE)",
              sd->name, b->line);
      return MXGW_E_TLS;
    }
    err_set(err, m, "%s line %d: %s block is corrupt: ", sd->name, b->line,
            b->label);
    mxgw__tls_append_ssl_error(err, m);
    return MXGW_E_SYNTAX;
  }
  *out = k;
  return 0;
}

/* ---- chain order ------------------------------------------------------------ */

/* Does `issuer` issue `x` (names, key identifiers, signature)? */
static bool issues(X509 *issuer, X509 *x) {
  if (X509_check_issued(issuer, x) != X509_V_OK)
    return false;
  EVP_PKEY *pk = X509_get0_pubkey(issuer);
  bool ok = pk && X509_verify(x, pk) == 1;
  ERR_clear_error();
  return ok;
}

/* Is the issuer of x found in the CA file / path or the system store? */
static bool issuer_known(const tls_load_opts *o, X509 *x) {
  bool found = false;
  X509_STORE *st = X509_STORE_new();
  X509_STORE_CTX *sc = X509_STORE_CTX_new();
  if (st && sc) {
    if (o->ca_file && *o->ca_file)
      (void)X509_STORE_load_file(st, o->ca_file);
    if (o->ca_path && *o->ca_path)
      (void)X509_STORE_load_path(st, o->ca_path);
    (void)X509_STORE_set_default_paths(st);
    X509 *iss = NULL;
    if (X509_STORE_CTX_init(sc, st, x, NULL) &&
        X509_STORE_CTX_get1_issuer(&iss, sc, x) == 1 && iss) {
      found = true;
      X509_free(iss);
    }
  }
  X509_STORE_CTX_free(sc);
  X509_STORE_free(st);
  ERR_clear_error();
  return found;
}

/* ---- host names ------------------------------------------------------------ */

static bool covers(X509 *x, const char *host) {
  int r;
  unsigned char ip[16];
  if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
    r = X509_check_ip_asc(x, host, 0);
  } else if (host[0] == '*' && host[1] == '.') {
    /* an SNI wildcard: the certificate must carry the same wildcard */
    char probe[300];
    snprintf(probe, sizeof probe, "mxgw-probe%s", host + 1);
    r = X509_check_host(x, probe, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL);
  } else {
    r = X509_check_host(x, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL);
  }
  ERR_clear_error();
  return r == 1;
}

/* ---- the loader ------------------------------------------------------------ */

void mxgw__tls_info_free(tls_cert_info *ci, const mxgw_mem *m) {
  mxgw__free(m, ci->subject);
  mxgw__free(m, ci->issuer);
  mxgw__free(m, ci->san);
  mxgw__free(m, ci->not_before);
  mxgw__free(m, ci->not_after);
  mxgw__free(m, ci->key_type);
  mxgw__free(m, ci->key_group);
  mxgw__free(m, ci->fingerprint);
  mxgw__free(m, ci->file);
  mxgw__free(m, ci->key_file);
  mxgw__free(m, ci->sni);
  memset(ci, 0, sizeof *ci);
}

void mxgw__tls_loaded_free(tls_loaded *l, const mxgw_mem *m) {
  X509_free(l->leaf);
  sk_X509_pop_free(l->chain, X509_free);
  EVP_PKEY_free(l->key);
  mxgw__tls_info_free(&l->info, m);
  memset(l, 0, sizeof *l);
}

static const char *mode_problem(mode_t mode) {
  bool g = (mode & S_IRGRP) != 0, w = (mode & S_IROTH) != 0;
  return g && w ? "group and others" : g ? "group" : w ? "others" : NULL;
}

/* A file holding a private key must not be readable by group or others. */
static int check_mode(const mxgw_mem *m, const tls_load_opts *o,
                      const src_data *sd, mxgw_buf *err, tls_strlist *w) {
  if (!sd->from_file)
    return 0;
  const char *who = mode_problem(sd->st.mode);
  if (!who)
    return 0;
  unsigned mode = (unsigned)(sd->st.mode & 07777);
  if (o->strict_key_mode) {
    err_set(err, m,
            "%s: private key file mode %04o is readable by %s; chmod 600 %s "
            "(or set MXGW_TLS_STRICT_KEY_MODE to 0)",
            sd->name, mode, who, sd->name);
    return MXGW_E_PERM;
  }
  return mxgw__tls_strlist_add(w, m,
                               "%s: private key file mode %04o is readable "
                               "by %s; chmod 600 %s",
                               sd->name, mode, who, sd->name);
}

static int fill_info(const mxgw_mem *m, const tls_pair_src *src,
                     tls_loaded *l) {
  tls_cert_info *ci = &l->info;
  char buf[1024];
  char iso[40];
  mxgw_buf san = {0};
  int nsan = 0;
  int rv = 0;
  mxgw__tls_name_str(X509_get_subject_name(l->leaf), buf, sizeof buf);
  ci->subject = dup0(m, buf);
  mxgw__tls_name_str(X509_get_issuer_name(l->leaf), buf, sizeof buf);
  ci->issuer = dup0(m, buf);
  rv = san_list(m, l->leaf, &san, &nsan);
  ci->san = mxgw__memdup0(m, mxgw__buf_ptr(&san), mxgw__buf_size(&san));
  mxgw__buf_free(&san, m);
  time_t t;
  asn1_time(X509_get0_notBefore(l->leaf), &t, iso, sizeof iso);
  ci->not_before = dup0(m, iso);
  asn1_time(X509_get0_notAfter(l->leaf), &ci->not_after_t, iso, sizeof iso);
  ci->not_after = dup0(m, iso);
  EVP_PKEY *pk = X509_get0_pubkey(l->leaf);
  ci->key_id = pk ? EVP_PKEY_get_base_id(pk) : 0;
  ci->key_type = dup0(m, key_type_name(ci->key_id));
  ci->key_bits = pk ? EVP_PKEY_get_bits(pk) : 0;
  buf[0] = 0;
  if (pk && ci->key_id == EVP_PKEY_EC) {
    size_t gl = 0;
    if (!EVP_PKEY_get_group_name(pk, buf, sizeof buf, &gl))
      buf[0] = 0;
  }
  ci->key_group = dup0(m, buf);
  mxgw__tls_fingerprint(l->leaf, buf, sizeof buf);
  ci->fingerprint = dup0(m, buf);
  ci->file = dup0(m, src->chain_file);
  ci->key_file = dup0(m, src->chain_file ? src->key_file : NULL);
  ci->sni = dup0(m, src->sni);
  ci->self_signed = X509_self_signed(l->leaf, 1) == 1;
  ci->chain_length = 1 + (l->chain ? sk_X509_num(l->chain) : 0);
  ERR_clear_error();
  if (rv || !ci->subject || !ci->issuer || !ci->san || !ci->not_before ||
      !ci->not_after || !ci->key_type || !ci->key_group || !ci->fingerprint ||
      !ci->file || !ci->key_file || !ci->sni)
    return MXGW_E_NOMEM;
  return 0;
}

int mxgw__tls_load_pair(const mxgw_mem *m, const tls_load_opts *o,
                        const tls_pair_src *src, tls_loaded *out,
                        mxgw_buf *err, tls_strlist *w) {
  src_data cd = {0}, kd = {0};
  pem_scan *cs = NULL, *ks = NULL;
  STACK_OF(X509) *certs = NULL;
  int *lines = NULL;
  int rv = 0;
  char sb[512], sb2[512], kb[64], kb2[64];

  memset(out, 0, sizeof *out);
  mxgw__buf_reset(err);
  ERR_clear_error();

  /* 1. read */
  if (src->chain_file) {
    const char *kf = src->key_file ? src->key_file : src->chain_file;
    if ((rv = read_file(m, src->chain_file, &cd, err)))
      goto done;
    if ((rv = read_file(m, kf, &kd, err)))
      goto done;
  } else {
    cd.name = "<memory: certificate chain>";
    cd.data = src->chain_pem ? src->chain_pem : "";
    cd.len = src->chain_pem ? src->chain_len : 0;
    if (src->key_pem) {
      kd.name = "<memory: private key>";
      kd.data = src->key_pem;
      kd.len = src->key_len;
    } else {
      kd = cd;
      kd.owned = NULL;
    }
  }
  out->chain_st = cd.st;
  out->key_st = kd.st;

  /* 2. PEM structure */
  cs = mxgw__calloc(m, 1, sizeof *cs);
  ks = mxgw__calloc(m, 1, sizeof *ks);
  if (!cs || !ks) {
    rv = MXGW_E_NOMEM;
    goto done;
  }
  if ((rv = pem_scan_data(m, &cd, cs, err)))
    goto done;
  if (cs->n == 0) {
    rv = not_pem(m, &cd, false, err);
    goto done;
  }
  if ((rv = pem_scan_data(m, &kd, ks, err)))
    goto done;
  if (ks->n == 0) {
    rv = not_pem(m, &kd, true, err);
    goto done;
  }

  /* 3. the mode of the files that hold a private key, before decoding it
   * (a chain file with a key in it is a key file too) */
  for (int i = 0; i < ks->n; i++)
    if (is_key_label(ks->b[i].label)) {
      if ((rv = check_mode(m, o, &kd, err, w)))
        goto done;
      break;
    }
  if (kd.data != cd.data || kd.len != cd.len) {
    for (int i = 0; i < cs->n; i++)
      if (is_key_label(cs->b[i].label)) {
        if ((rv = check_mode(m, o, &cd, err, w)))
          goto done;
        break;
      }
  }

  /* 4. certificates */
  certs = sk_X509_new_null();
  lines = mxgw__calloc(m, MAX_BLOCKS, sizeof *lines);
  if (!certs || !lines) {
    rv = MXGW_E_NOMEM;
    goto done;
  }
  for (int i = 0; i < cs->n; i++) {
    const pem_block *b = &cs->b[i];
    if (!is_cert_label(b->label))
      continue;
    BIO *bio = BIO_new_mem_buf(b->p, (int)b->len);
    if (!bio) {
      rv = MXGW_E_NOMEM;
      goto done;
    }
    X509 *x = strcmp(b->label, "TRUSTED CERTIFICATE")
                  ? PEM_read_bio_X509(bio, NULL, NULL, NULL)
                  : PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!x) {
      err_set(err, m, "%s line %d: %s block is corrupt: ", cd.name, b->line,
              b->label);
      mxgw__tls_append_ssl_error(err, m);
      rv = MXGW_E_SYNTAX;
      goto done;
    }
    lines[sk_X509_num(certs)] = b->line;
    if (!sk_X509_push(certs, x)) {
      X509_free(x);
      rv = MXGW_E_NOMEM;
      goto done;
    }
  }
  if (sk_X509_num(certs) == 0) {
    char fl[512];
    bool has_key = false;
    for (int i = 0; i < cs->n; i++)
      has_key |= is_key_label(cs->b[i].label);
    found_list(cs, fl, sizeof fl);
    err_set(err, m, "%s: no CERTIFICATE block (found: %s)%s", cd.name, fl,
            has_key ? "; are the certificate and key files swapped?" : "");
    rv = MXGW_E_SYNTAX;
    goto done;
  }

  /* 5. the key */
  const pem_block *key_blk = NULL;
  int nkeys = 0;
  for (int i = 0; i < ks->n; i++)
    if (is_key_label(ks->b[i].label) && nkeys++ == 0)
      key_blk = &ks->b[i];
  if (!key_blk) {
    char fl[512];
    found_list(ks, fl, sizeof fl);
    err_set(err, m, "%s: no PRIVATE KEY block (found: %s)", kd.name, fl);
    rv = MXGW_E_SYNTAX;
    goto done;
  }
  if ((rv = decode_key(m, &kd, key_blk, o->passphrase, &out->key, err)))
    goto done;
  if (nkeys > 1 && (rv = mxgw__tls_strlist_add(
                        w, m, "%s: %d private keys; using the first (line %d)",
                        kd.name, nkeys, key_blk->line)))
    goto done;

  /* 6. which certificate is the key's (the leaf) */
  int li = -1;
  for (int i = 0; i < sk_X509_num(certs) && li < 0; i++) {
    X509 *x = sk_X509_value(certs, i);
    if (X509_check_private_key(x, out->key) == 1)
      li = i;
  }
  ERR_clear_error();
  if (li < 0) {
    X509 *x0 = sk_X509_value(certs, 0);
    subj(x0, sb, sizeof sb);
    key_desc(out->key, kb, sizeof kb);
    key_desc(X509_get0_pubkey(x0), kb2, sizeof kb2);
    err_set(err, m,
            "%s: the private key (%s) does not match the certificate %s (%s) "
            "in %s",
            kd.name, kb, sb, kb2, cd.name);
    rv = MXGW_E_TLS;
    goto done;
  }
  out->leaf = sk_X509_delete(certs, li);
  int leaf_line = lines[li];
  memmove(lines + li, lines + li + 1,
          (size_t)(MAX_BLOCKS - li - 1) * sizeof *lines);
  subj(out->leaf, sb, sizeof sb);

  /* 7. dates */
  {
    time_t nb, na;
    char isob[40], isoa[40];
    asn1_time(X509_get0_notBefore(out->leaf), &nb, isob, sizeof isob);
    asn1_time(X509_get0_notAfter(out->leaf), &na, isoa, sizeof isoa);
    int64_t dl = mxgw__tls_days_left(na, o->now);
    if (o->now < nb) {
      int64_t in = mxgw__tls_days_left(nb, o->now);
      if (o->refuse_expired) {
        err_set(err, m,
                "%s: certificate %s is not yet valid: valid from %s (in %lld "
                "day%s), until %s",
                cd.name, sb, isob, (long long)in, in == 1 ? "" : "s", isoa);
        rv = MXGW_E_TLS;
        goto done;
      }
      if ((rv = mxgw__tls_strlist_add(w, m,
                                      "%s: certificate %s is not yet valid: "
                                      "valid from %s (in %lld days)",
                                      cd.name, sb, isob, (long long)in)))
        goto done;
    } else if (o->now > na) {
      if (o->refuse_expired) {
        err_set(err, m, "%s: certificate %s expired on %s (%lld day%s ago)",
                cd.name, sb, isoa, (long long)-dl, dl == -1 ? "" : "s");
        rv = MXGW_E_TLS;
        goto done;
      }
      if ((rv = mxgw__tls_strlist_add(w, m,
                                      "%s: certificate %s expired on %s (%lld "
                                      "days ago)",
                                      cd.name, sb, isoa, (long long)-dl)))
        goto done;
    } else if (dl < o->expiry_warn_days) {
      if ((rv = mxgw__tls_strlist_add(w, m,
                                      "%s: certificate %s expires in %lld "
                                      "day%s, on %s",
                                      cd.name, sb, (long long)dl,
                                      dl == 1 ? "" : "s", isoa)))
        goto done;
    }
  }

  /* 8. host names */
  {
    bool self = X509_self_signed(out->leaf, 1) == 1;
    ERR_clear_error();
    const char *name = src->sni ? src->sni : o->hostname;
    if (name && *name && !covers(out->leaf, name)) {
      mxgw_buf san = {0};
      int nsan = 0;
      if (san_list(m, out->leaf, &san, &nsan)) {
        mxgw__buf_free(&san, m);
        rv = MXGW_E_NOMEM;
        goto done;
      }
      char cn[600];
      cn[0] = 0;
      if (!nsan)
        snprintf(cn, sizeof cn, "none (the subject %s is used)", sb);
      if (o->refuse_hostname_mismatch) {
        err_set(err, m, "%s: certificate %s%s does not cover %s%s; SAN: %.*s%s",
                cd.name, sb, self ? " (self-signed)" : "",
                src->sni ? "its SNI name " : "", name,
                (int)mxgw__buf_size(&san), mxgw__buf_ptr(&san), cn);
        rv = MXGW_E_TLS;
      } else {
        rv = mxgw__tls_strlist_add(w, m,
                                   "%s: certificate %s%s does not cover %s%s; "
                                   "SAN: %.*s%s",
                                   cd.name, sb, self ? " (self-signed)" : "",
                                   src->sni ? "its SNI name " : "", name,
                                   (int)mxgw__buf_size(&san),
                                   mxgw__buf_ptr(&san), cn);
      }
      mxgw__buf_free(&san, m);
      if (rv)
        goto done;
    }
    if (self && !src->sni && o->hostname && *o->hostname &&
        (rv = mxgw__tls_strlist_add(
             w, m,
             "%s: certificate %s is self-signed: clients that verify "
             "certificates will refuse it",
             cd.name, sb)))
      goto done;
  }

  /* 9. order the chain: leaf, then each certificate's issuer */
  out->chain = sk_X509_new_null();
  if (!out->chain) {
    rv = MXGW_E_NOMEM;
    goto done;
  }
  {
    bool in_order = li == 0;
    X509 *cur = out->leaf;
    while (sk_X509_num(certs) > 0 && X509_self_signed(cur, 0) != 1) {
      int found = -1;
      for (int i = 0; i < sk_X509_num(certs) && found < 0; i++)
        if (issues(sk_X509_value(certs, i), cur))
          found = i;
      if (found < 0)
        break;
      if (found != 0) /* the next one in the file is not the issuer */
        in_order = false;
      X509 *x = sk_X509_delete(certs, found);
      memmove(lines + found, lines + found + 1,
              (size_t)(MAX_BLOCKS - found - 1) * sizeof *lines);
      if (!sk_X509_push(out->chain, x)) {
        X509_free(x);
        rv = MXGW_E_NOMEM;
        goto done;
      }
      cur = x;
    }
    ERR_clear_error();
    if (!in_order) {
      mxgw_buf ord = {0};
      int r2 = mxgw__buf_appendf(&ord, m, "leaf %s (line %d)", sb, leaf_line);
      for (int i = 0; i < sk_X509_num(out->chain) && !r2; i++) {
        subj(sk_X509_value(out->chain, i), sb2, sizeof sb2);
        r2 = mxgw__buf_appendf(&ord, m, ", then %s", sb2);
      }
      if (!r2)
        r2 = mxgw__tls_strlist_add(w, m,
                                   "%s: chain out of order; it must start with "
                                   "the certificate, each followed by its "
                                   "issuer; serving it as: %.*s",
                                   cd.name, (int)mxgw__buf_size(&ord),
                                   mxgw__buf_ptr(&ord));
      mxgw__buf_free(&ord, m);
      if ((rv = r2))
        goto done;
    }
    /* certificates that are not part of the chain */
    for (int i = 0; i < sk_X509_num(certs); i++) {
      subj(sk_X509_value(certs, i), sb2, sizeof sb2);
      if ((rv = mxgw__tls_strlist_add(w, m,
                                      "%s line %d: certificate %s is not part "
                                      "of the chain of %s; not served",
                                      cd.name, lines[i], sb2, sb)))
        goto done;
    }
    /* completeness: the last one must be a root or have a known issuer */
    if (X509_self_signed(cur, 0) != 1 && !issuer_known(o, cur)) {
      char is[512];
      subj(cur, sb2, sizeof sb2);
      mxgw__tls_name_str(X509_get_issuer_name(cur), is, sizeof is);
      /* only the leaf: an intermediate is missing for sure; otherwise the
       * missing one may be a private root the clients have */
      bool leaf_only = cur == out->leaf;
      if ((rv = mxgw__tls_strlist_add(
               w, m,
               "%s: chain incomplete: %s is issued by %s, which is not "
               "included (nor in MXGW_TLS_CA_FILE, MXGW_TLS_CA_PATH or the "
               "system trust store); %s",
               cd.name, sb2, is,
               leaf_only ? "clients will fail to verify it: append the "
                           "intermediate certificate(s) after the certificate "
                           "(fullchain.pem rather than cert.pem)"
                         : "fine if it is a root your clients trust (set "
                           "MXGW_TLS_CA_FILE to it to say so), otherwise "
                           "append its certificate")))
        goto done;
    }
    ERR_clear_error();
    /* expired intermediates */
    for (int i = 0; i < sk_X509_num(out->chain); i++) {
      X509 *x = sk_X509_value(out->chain, i);
      time_t na;
      char iso[40];
      asn1_time(X509_get0_notAfter(x), &na, iso, sizeof iso);
      if (na < o->now) {
        subj(x, sb2, sizeof sb2);
        if ((rv = mxgw__tls_strlist_add(w, m,
                                        "%s: chain certificate %s expired on %s",
                                        cd.name, sb2, iso)))
          goto done;
      }
    }
  }

  rv = fill_info(m, src, out);

done:
  if (rv)
    mxgw__tls_loaded_free(out, m);
  sk_X509_pop_free(certs, X509_free);
  mxgw__free(m, lines);
  mxgw__free(m, cs);
  mxgw__free(m, ks);
  mxgw__free(m, cd.owned);
  mxgw__free(m, kd.owned);
  ERR_clear_error();
  return rv;
}

int mxgw__tls_check_ca(const mxgw_mem *m, const char *ca_file,
                       const char *ca_path, mxgw_buf *err) {
  int rv = 0;
  mxgw__buf_reset(err);
  if (ca_file && *ca_file) {
    src_data sd = {0};
    if ((rv = read_file(m, ca_file, &sd, err)))
      return rv;
    /* bundles have many blocks: OpenSSL reads them; we only explain a
     * file that has no PEM at all */
    if (!contains(sd.data, sd.len, "-----BEGIN")) {
      rv = not_pem(m, &sd, false, err);
    } else {
      X509_STORE *st = X509_STORE_new();
      if (!st) {
        rv = MXGW_E_NOMEM;
      } else if (!X509_STORE_load_file(st, ca_file)) {
        err_set(err, m, "%s: cannot load CA certificates: ", ca_file);
        mxgw__tls_append_ssl_error(err, m);
        rv = MXGW_E_SYNTAX;
      }
      X509_STORE_free(st);
    }
    mxgw__free(m, sd.owned);
    if (rv)
      return rv;
  }
  if (ca_path && *ca_path) {
    struct stat sb;
    char eb[128];
    if (stat(ca_path, &sb) != 0) {
      err_set(err, m, "%s: %s", ca_path, errno ==
              ENOENT ? "no such directory" : errno_str(errno, eb, sizeof eb));
      return MXGW_E_IO;
    }
    if (!S_ISDIR(sb.st_mode)) {
      err_set(err, m, "%s: not a directory (MXGW_TLS_CA_PATH wants a hashed "
              "directory; use MXGW_TLS_CA_FILE for a file)", ca_path);
      return MXGW_E_IO;
    }
  }
  ERR_clear_error();
  return 0;
}
