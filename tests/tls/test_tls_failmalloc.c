/* SPDX-License-Identifier: MIT */
/*
 * test_tls_failmalloc.c: every allocation the TLS context makes through its
 * mxgw_mem fails once, in turn (N = 1, 2, ... until the scenario runs
 * through): each call must then return MXGW_E_NOMEM (or succeed), leave
 * the context usable and leak nothing (checked by LeakSanitizer in the
 * ASan build). OpenSSL's own allocations are not covered.
 */
#include <stdlib.h>
#include <string.h>

#include "failmem.h"
#include "tls_helpers.h"

TestSuite(failmalloc, .fini = tls_test_cleanup);

#define STEP(call)                                                             \
  do {                                                                         \
    int rv_ = (call);                                                          \
    if (rv_ == MXGW_E_NOMEM) {                                                 \
      failed = true;                                                           \
      goto out;                                                                \
    }                                                                          \
    cr_assert_eq(rv_, 0, "%s: %s (%s)", #call, mxgw_errname(rv_),             \
                 t ? mxgw_tls_errmsg(t) : "");                                 \
  } while (0)

/* The whole life of a server context; true if an allocation failed. */
static bool scenario(failmem *f) {
  mxgw_mem mem = failmem_mem(f);
  mxgw_tls *t = NULL, *cli = NULL;
  bool failed = false;
  const char *p;
  char why[256];
  STEP(mxgw_tls_new(&t, MXGW_TLS_SERVER, &mem));
  STEP(mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, "mx.example.test"));
  STEP(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), fx("rsa.key")));
  STEP(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"), fx("ec.key")));
  STEP(mxgw_tls_add_cert_files(t, "*.wild.test", fx("wild-fullchain.pem"),
                               fx("wild.key")));
  STEP(mxgw_tls_reload(t)); /* with a warning: the chain ends at our root */
  cr_assert_eq(mxgw_tls_warning_count(t), 3);
  STEP(mxgw_tls_check_reload(t, 0));
  STEP(mxgw_tls_json(t, &p, NULL));
  STEP(mxgw_tls_reload(t));
  SSL *s = mxgw__tls_server_ssl(t, why, sizeof why);
  cr_assert(s, "%s", why);
  SSL_free(s);
  STEP(mxgw_tls_new(&cli, MXGW_TLS_CLIENT, &mem));
  STEP(mxgw_tls_set_str(cli, MXGW_TLS_CA_FILE, fx("root.pem")));
  STEP(mxgw_tls_set_str(cli, MXGW_TLS_HOSTNAME, "mx.example.test"));
  STEP(mxgw_tls_reload(cli));
  char *fp = served_fp(t, cli, "a.wild.test");
  cr_assert(fp);
  free(fp);
out:
  mxgw_tls_free(t);
  mxgw_tls_free(cli);
  return failed;
}

TLS_TEST(failmalloc, every_allocation_fails_once) {
  failmem f = {0};
  cr_assert_not(scenario(&f));
  long total = f.n;
  cr_assert_gt(total, 20);
  for (long i = 1; i <= total; i++) {
    failmem g = {.fail_at = i};
    cr_assert(scenario(&g), "allocation %ld of %ld failed unnoticed", i, total);
  }
}

/* A failed load (an error message to allocate) under allocation failure. */
TLS_TEST(failmalloc, errors_under_allocation_failure) {
  for (long i = 1; i < 200; i++) {
    failmem g = {.fail_at = i};
    mxgw_mem mem = failmem_mem(&g);
    mxgw_tls *t = NULL;
    if (mxgw_tls_new(&t, MXGW_TLS_SERVER, &mem))
      continue;
    int rv = mxgw_tls_add_cert_files(t, NULL, fx("expired-fullchain.pem"), fx("ec.key"));
    cr_assert(rv == MXGW_E_TLS || rv == MXGW_E_NOMEM, "%d", rv);
    cr_assert_not_null(mxgw_tls_errmsg(t));
    mxgw_tls_free(t);
    if (g.n < i)
      break; /* ran through without reaching allocation i */
  }
}
