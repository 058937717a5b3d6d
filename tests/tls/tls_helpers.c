/* SPDX-License-Identifier: MIT */
/*
 * tls_helpers.c: fixtures, the openssl command, contexts and in-memory
 * handshakes for the TLS context tests (see tls_helpers.h).
 */
#include "tls_helpers.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TLS_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TLS_HAVE_LSAN 1
#endif
#endif
#ifdef TLS_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

static char ring[16][4096];
static int ring_i;

static char *ring_next(void) { return ring[ring_i++ % 16]; }

const char *fx(const char *name) {
  const char *dir = getenv("MXGW_TLS_FIXTURES");
  cr_assert(dir && *dir, "MXGW_TLS_FIXTURES is not set (run through ctest)");
  char *p = ring_next();
  snprintf(p, sizeof ring[0], "%s/%s", dir, name);
  return p;
}

const char *in_dir(const char *dir, const char *name) {
  char *p = ring_next();
  snprintf(p, sizeof ring[0], "%s/%s", dir, name);
  return p;
}

char *run(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  FILE *f = popen(cmd, "r");
  cr_assert(f, "popen %s", cmd);
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  size_t r;
  while ((r = fread(out + len, 1, cap - len - 1, f)) > 0) {
    len += r;
    if (cap - len < 2)
      out = realloc(out, cap *= 2);
  }
  int st = pclose(f);
  cr_assert_eq(st, 0, "command failed (%d): %s", st, cmd);
  while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
    len--;
  out[len] = 0;
  return out;
}

char *ossl_x509(const char *file, const char *args, const char *prefix) {
  char *o = run("openssl x509 -noout %s -in '%s'", args, file);
  size_t pl = strlen(prefix);
  for (char *l = o; l && *l;) {
    char *nl = strchr(l, '\n');
    if (nl)
      *nl = 0;
    if (strncmp(l, prefix, pl) == 0) {
      char *v = strdup(l + pl);
      free(o);
      return v;
    }
    l = nl ? nl + 1 : NULL;
  }
  cr_assert_fail("no '%s' in openssl output for %s", prefix, file);
  return NULL;
}

char *ossl_fp(const char *file) {
  return ossl_x509(file, "-fingerprint -sha256", "sha256 Fingerprint=");
}

char *ossl_date(const char *file, const char *which) {
  char pfx[32];
  snprintf(pfx, sizeof pfx, "%s=", which);
  char *v = ossl_x509(file, "-dates -dateopt iso_8601", pfx);
  /* "2026-11-28 04:37:02Z" -> "2026-11-28T04:37:02Z" */
  char *sp = strchr(v, ' ');
  if (sp)
    *sp = 'T';
  return v;
}

time_t iso_to_time(const char *iso) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  cr_assert_eq(sscanf(iso, "%d-%d-%dT%d:%d:%dZ", &tm.tm_year, &tm.tm_mon,
                      &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
               6, "bad date %s", iso);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return timegm(&tm);
}

long days_between(time_t a, time_t b) {
  long long d = (long long)b - (long long)a;
  return (long)(d >= 0 ? d / 86400 : -((-d + 86399) / 86400));
}

mxgw_tls *server_with(const char *chain, const char *key) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  int rv = mxgw_tls_add_cert_files(t, NULL, chain, key);
  cr_assert_eq(rv, 0, "add %s: %s", chain, mxgw_tls_errmsg(t));
  rv = mxgw_tls_reload(t);
  cr_assert_eq(rv, 0, "reload: %s", mxgw_tls_errmsg(t));
  return t;
}

mxgw_tls *client_ctx(void) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  return t;
}

void pair_up(SSL *srv, SSL *cli) {
  BIO *a = NULL, *b = NULL;
  cr_assert_eq(BIO_new_bio_pair(&a, 0, &b, 0), 1);
  SSL_set_bio(srv, a, a);
  SSL_set_bio(cli, b, b);
}

static bool step_ok(SSL *s, int r) {
  if (r == 1)
    return true;
  int e = SSL_get_error(s, r);
  return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

bool drive(SSL *srv, SSL *cli) {
  for (int i = 0; i < 64; i++) {
    int rc = SSL_do_handshake(cli);
    if (!step_ok(cli, rc)) {
      ERR_clear_error();
      return false;
    }
    int rs = SSL_do_handshake(srv);
    if (!step_ok(srv, rs)) {
      ERR_clear_error();
      return false;
    }
    if (rc == 1 && rs == 1)
      return true;
  }
  return false;
}

bool handshake(SSL *srv, SSL *cli) {
  pair_up(srv, cli);
  return drive(srv, cli);
}

char *peer_fp(SSL *cli) {
  X509 *x = SSL_get0_peer_certificate(cli);
  cr_assert(x, "no peer certificate");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  cr_assert(X509_digest(x, EVP_sha256(), md, &n));
  char *s = malloc(n * 3 + 1);
  for (unsigned i = 0; i < n; i++)
    sprintf(s + i * 3, "%02X%s", md[i], i + 1 < n ? ":" : "");
  return s;
}

char *served_fp(mxgw_tls *srv, mxgw_tls *cli, const char *servername) {
  char why[256] = "";
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  cr_assert(s, "server ssl: %s", why);
  SSL *c = mxgw__tls_client_ssl(cli, servername, why, sizeof why);
  cr_assert(c, "client ssl: %s", why);
  if (!servername) /* no name: no SNI and no name check */
    SSL_set_verify(c, SSL_VERIFY_PEER, NULL);
  char *fp = handshake(s, c) ? peer_fp(c) : NULL;
  SSL_free(s);
  SSL_free(c);
  return fp;
}

static char scratch[8][64];
static int nscratch;

const char *scratch_dir(void) {
  cr_assert_lt(nscratch, 8);
  char *d = scratch[nscratch++];
  snprintf(d, sizeof scratch[0], "/tmp/mxgw-tls-test-XXXXXX");
  cr_assert(mkdtemp(d));
  return d;
}

void tls_test_cleanup(void) {
  for (int i = 0; i < nscratch; i++) {
    char cmd[sizeof scratch + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch[i]);
    if (system(cmd) != 0)
      fprintf(stderr, "cannot remove %s\n", scratch[i]);
  }
  nscratch = 0;
}

void tls_leak_check(void) {
#ifdef TLS_HAVE_LSAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
               "memory leaked: see the LeakSanitizer report above");
#endif
}

void replace_file(const char *dir, const char *name, const char *src,
                  unsigned mode) {
  char tmp[4096], dst[4096];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
  snprintf(dst, sizeof dst, "%s/%s", dir, name);
  FILE *in = fopen(src, "rb");
  cr_assert(in, "open %s", src);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert(fd >= 0, "create %s", tmp);
  char buf[8192];
  size_t r;
  while ((r = fread(buf, 1, sizeof buf, in)) > 0)
    cr_assert_eq(write(fd, buf, r), (ssize_t)r);
  fclose(in);
  cr_assert_eq(fchmod(fd, mode), 0);
  close(fd);
  cr_assert_eq(rename(tmp, dst), 0);
}

bool has_warning(const mxgw_tls *t, const char *needle) {
  for (size_t i = 0; i < mxgw_tls_warning_count(t); i++) {
    const char *p;
    size_t n;
    cr_assert_eq(mxgw_tls_warning(t, i, &p, &n), 0);
    cr_assert_eq(strlen(p), n);
    if (strstr(p, needle))
      return true;
  }
  return false;
}
