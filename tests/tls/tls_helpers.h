/* SPDX-License-Identifier: MIT */
/*
 * tls_helpers.h: shared by the TLS context tests: fixture paths (generated
 * by gen-fixtures.sh into $MXGW_TLS_FIXTURES), running the openssl command
 * to get the values a user would compare with, contexts built from
 * fixtures, in-memory handshakes between mxgw__tls_server_ssl() and
 * mxgw__tls_client_ssl() over a BIO pair, and scratch directories where
 * files are replaced the way a renewal tool does it (write, then rename).
 */
#ifndef MXGW_TLS_HELPERS_H
#define MXGW_TLS_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <criterion/criterion.h>
#include <openssl/ssl.h>

#include "mxgw/mxgw_tls.h"
#include "mxgw_tls_int.h"

/* Path of a fixture (valid until 16 more calls). */
const char *fx(const char *name);

/* Run a shell command; its standard output, trailing white space removed
 * (malloc'd; the test aborts if the command fails). */
char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* `openssl x509 -noout ARGS -in FILE`, the value after PREFIX on the first
 * line that starts with it (malloc'd). */
char *ossl_x509(const char *file, const char *args, const char *prefix);

/* SHA-256 fingerprint of the first certificate in FILE, as openssl prints
 * it ("AB:CD:..."). */
char *ossl_fp(const char *file);

/* "notBefore"/"notAfter" of FILE as ISO 8601 ("2026-11-28T04:37:02Z"). */
char *ossl_date(const char *file, const char *which);
time_t iso_to_time(const char *iso);

/* Floor of (b - a) in days. */
long days_between(time_t a, time_t b);

/* A server context with one pair added and loaded (asserting success). */
mxgw_tls *server_with(const char *chain, const char *key);
/* A client context trusting root.pem, loaded. */
mxgw_tls *client_ctx(void);

/* Handshake srv and cli over a fresh BIO pair; true on success. */
bool handshake(SSL *srv, SSL *cli);
/* Connect both ends over a BIO pair without handshaking. */
void pair_up(SSL *srv, SSL *cli);
/* Run both handshakes until they finish or fail; true on success. */
bool drive(SSL *srv, SSL *cli);
/* Fingerprint of the certificate the client received (malloc'd). */
char *peer_fp(SSL *cli);
/* Handshake a new server SSL from srv with a new client SSL for
 * servername; returns the served fingerprint (malloc'd) or NULL if the
 * handshake failed. */
char *served_fp(mxgw_tls *srv, mxgw_tls *cli, const char *servername);

/* A new empty directory under /tmp, removed by tls_test_fini(). */
const char *scratch_dir(void);

/* Remove the scratch directories (TestSuite .fini, and TLS_TEST). */
void tls_test_cleanup(void);
/* Under ASan, fail the test if memory leaked (no-op otherwise). Must run in
 * the test body: Criterion ignores assertions in .fini. */
void tls_leak_check(void);

/* A Criterion test that checks for leaks once its body has returned. */
#define TLS_TEST(suite, name)                                                  \
  static void suite##_##name##_body(void);                                     \
  Test(suite, name) {                                                          \
    suite##_##name##_body();                                                   \
    tls_test_cleanup();                                                        \
    tls_leak_check();                                                          \
  }                                                                            \
  static void suite##_##name##_body(void)
/* Replace dir/name with a copy of src, mode mode, by writing dir/.name.tmp
 * and renaming it over (what certbot-style tools do). */
void replace_file(const char *dir, const char *name, const char *src,
                  unsigned mode);
/* dir/name (valid until 16 more calls). */
const char *in_dir(const char *dir, const char *name);

/* Assert a call failed with `code` and an error message equal to `msg`. */
#define assert_err(t, rv, code, msg)                                           \
  do {                                                                         \
    cr_assert_eq((rv), (code), "got %s (%s), want %s", mxgw_errname(rv),       \
                 mxgw_tls_errmsg(t), mxgw_errname(code));                      \
    cr_assert_str_eq(mxgw_tls_errmsg(t), (msg));                               \
  } while (0)

/* Does any warning contain `needle`? */
bool has_warning(const mxgw_tls *t, const char *needle);

#endif /* MXGW_TLS_HELPERS_H */
