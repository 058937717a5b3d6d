/* SPDX-License-Identifier: MIT */
/*
 * test_tls_load.c: loading certificates and keys, and every diagnosis the
 * loader gives: each fixture from gen-fixtures.sh must fail (or warn) with
 * its own error code and a message that names the file and says what is
 * wrong, as an operator would read it. Also: the context is unchanged by a
 * failed add, options are range-checked, memory pairs work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tls_helpers.h"

TestSuite(load, .fini = tls_test_cleanup);

static mxgw_tls *srv(void) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  return t;
}

static char msg[8192];

/* Line number of the n-th (1-based) BEGIN line of a file, by grep. */
static int begin_line(const char *file, int n) {
  char *o = run("grep -n -- '-----BEGIN' '%s' | sed -n %dp | cut -d: -f1", file, n);
  int l = atoi(o);
  free(o);
  cr_assert_gt(l, 0);
  return l;
}

TLS_TEST(load, good_rsa_and_ecdsa_pairs) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_generation(t), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"),
                                       fx("ec.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert_str_eq(mxgw_tls_errmsg(t), "");
  /* added, not yet serving */
  cr_assert_eq(mxgw_tls_cert_count(t), 0);
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_generation(t), 1);
  cr_assert_eq(mxgw_tls_cert_count(t), 2);
  mxgw_tls_free(t);
}

TLS_TEST(load, missing_file) {
  mxgw_tls *t = srv();
  const char *p = fx("no-such-file.pem");
  int rv = mxgw_tls_add_cert_files(t, NULL, p, fx("rsa.key"));
  snprintf(msg, sizeof msg, "%s: no such file", p);
  assert_err(t, rv, MXGW_E_IO, msg);
  /* a missing key file is named too */
  rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                               fx("no-such.key"));
  snprintf(msg, sizeof msg, "%s: no such file", fx("no-such.key"));
  assert_err(t, rv, MXGW_E_IO, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, directory_given_as_file) {
  mxgw_tls *t = srv();
  const char *d = fx("ca");
  int rv = mxgw_tls_add_cert_files(t, NULL, d, fx("rsa.key"));
  snprintf(msg, sizeof msg, "%s: is a directory, not a file", d);
  assert_err(t, rv, MXGW_E_IO, msg);
  mxgw_tls_free(t);
}

/* Tests run as root, which reads anything: try as nobody, in a child
 * process that reports the result through a pipe. */
TLS_TEST(load, unreadable_file) {
  const char *dir = scratch_dir();
  replace_file(dir, "cert.pem", fx("rsa-fullchain.pem"), 0600);
  replace_file(dir, "key.pem", fx("rsa.key"), 0600);
  cr_assert_eq(chmod(dir, 0755), 0);
  const char *c = in_dir(dir, "cert.pem");
  const char *k = in_dir(dir, "key.pem");
  int fd[2];
  cr_assert_eq(pipe(fd), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(fd[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(2);
    mxgw_tls *t = NULL;
    if (mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL))
      _exit(3);
    char out[4200];
    int rv = mxgw_tls_add_cert_files(t, NULL, c, k);
    int n = snprintf(out, sizeof out, "%d %s", rv, mxgw_tls_errmsg(t));
    ssize_t w = write(fd[1], out, (size_t)n);
    mxgw_tls_free(t);
    _exit(w == n ? 0 : 4);
  }
  close(fd[1]);
  char got[4200];
  ssize_t n = read(fd[0], got, sizeof got - 1);
  close(fd[0]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed");
  cr_assert_gt(n, 0);
  got[n] = 0;
  snprintf(msg, sizeof msg,
           "%d %s: cannot open: Permission denied (running as uid 65534)",
           MXGW_E_IO, c);
  cr_assert_str_eq(got, msg);
}

TLS_TEST(load, empty_file) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("empty.pem"), fx("rsa.key"));
  snprintf(msg, sizeof msg, "%s: file is empty", fx("empty.pem"));
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, garbage_is_not_pem) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("garbage.pem"), fx("rsa.key"));
  snprintf(msg, sizeof msg,
           "%s: not PEM: no '-----BEGIN ...-----' line (the file starts with "
           "\"This is not a certificate.\")",
           fx("garbage.pem"));
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, corrupt_pem_block) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("corrupt.pem"), fx("rsa.key"));
  cr_assert_eq(rv, MXGW_E_SYNTAX, "%s", mxgw_tls_errmsg(t));
  snprintf(msg, sizeof msg, "%s line 1: CERTIFICATE block is corrupt: ",
           fx("corrupt.pem"));
  cr_assert(strncmp(mxgw_tls_errmsg(t), msg, strlen(msg)) == 0, "%s",
            mxgw_tls_errmsg(t));
  cr_assert_gt(strlen(mxgw_tls_errmsg(t)), strlen(msg)); /* and a reason */
  mxgw_tls_free(t);
}

TLS_TEST(load, truncated_pem_block) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("truncated.pem"), fx("rsa.key"));
  snprintf(msg, sizeof msg,
           "%s line 1: '-----BEGIN CERTIFICATE-----' has no '-----END "
           "CERTIFICATE-----' line (file truncated?)",
           fx("truncated.pem"));
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  mxgw_tls_free(t);
}

/* The DER message gives a command; running it must fix the file. */
TLS_TEST(load, der_certificate_and_its_conversion) {
  mxgw_tls *t = srv();
  const char *dir = scratch_dir();
  replace_file(dir, "cert.der", fx("rsa.der"), 0644);
  const char *c = in_dir(dir, "cert.der");
  int rv = mxgw_tls_add_cert_files(t, NULL, c, fx("rsa.key"));
  snprintf(msg, sizeof msg,
           "%s: looks like DER (binary), not PEM: a DER certificate; convert "
           "with: openssl x509 -inform der -in %s -out %s.pem",
           c, c, c);
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  const char *cmd = strstr(msg, "openssl x509");
  free(run("%s 2>&1", cmd));
  char pem[4200];
  snprintf(pem, sizeof pem, "%s.pem", c);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, pem, fx("rsa.key")), 0, "%s",
               mxgw_tls_errmsg(t));
  mxgw_tls_free(t);
}

TLS_TEST(load, der_key_and_its_conversion) {
  mxgw_tls *t = srv();
  const char *dir = scratch_dir();
  replace_file(dir, "key.der", fx("rsa-key.der"), 0600);
  const char *k = in_dir(dir, "key.der");
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), k);
  snprintf(msg, sizeof msg,
           "%s: looks like DER (binary), not PEM: a DER private key; convert "
           "with: openssl pkey -inform der -in %s -out %s.pem",
           k, k, k);
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  free(run("umask 077; %s 2>&1", strstr(msg, "openssl pkey")));
  char pem[4200];
  snprintf(pem, sizeof pem, "%s.pem", k);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), pem),
               0, "%s", mxgw_tls_errmsg(t));
  mxgw_tls_free(t);
}

TLS_TEST(load, certificate_request_is_not_a_certificate) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("request.pem"), fx("rsa.key"));
  snprintf(msg, sizeof msg,
           "%s: no CERTIFICATE block (found: CERTIFICATE REQUEST at line 1)",
           fx("request.pem"));
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, swapped_certificate_and_key) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa.key"), fx("rsa.pem"));
  snprintf(msg, sizeof msg,
           "%s: no CERTIFICATE block (found: PRIVATE KEY at line 1); are the "
           "certificate and key files swapped?",
           fx("rsa.key"));
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, key_file_without_key) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                   fx("inter.pem"));
  snprintf(msg, sizeof msg, "%s: no PRIVATE KEY block (found: CERTIFICATE at line 1)",
           fx("inter.pem"));
  assert_err(t, rv, MXGW_E_SYNTAX, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, key_does_not_match) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                   fx("mismatch.key"));
  snprintf(msg, sizeof msg,
           "%s: the private key (RSA 2048) does not match the certificate "
           "CN=mx.example.test (RSA 2048) in %s",
           fx("mismatch.key"), fx("rsa-fullchain.pem"));
  assert_err(t, rv, MXGW_E_TLS, msg);
  rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), fx("ec.key"));
  snprintf(msg, sizeof msg,
           "%s: the private key (EC 256) does not match the certificate "
           "CN=mx.example.test (RSA 2048) in %s",
           fx("ec.key"), fx("rsa-fullchain.pem"));
  assert_err(t, rv, MXGW_E_TLS, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, encrypted_key_without_passphrase) {
  mxgw_tls *t = srv();
  const char *keys[] = {"encrypted.key", "encrypted-legacy.key"};
  for (int i = 0; i < 2; i++) {
    int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), fx(keys[i]));
    snprintf(msg, sizeof msg,
             "%s line 1: the private key is encrypted and no passphrase is "
             "set (MXGW_TLS_KEY_PASSPHRASE)",
             fx(keys[i]));
    assert_err(t, rv, MXGW_E_TLS, msg);
  }
  mxgw_tls_free(t);
}

TLS_TEST(load, encrypted_key_wrong_passphrase) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_KEY_PASSPHRASE, "wrong"), 0);
  const char *keys[] = {"encrypted.key", "encrypted-legacy.key"};
  for (int i = 0; i < 2; i++) {
    int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), fx(keys[i]));
    snprintf(msg, sizeof msg,
             "%s line 1: cannot decrypt the private key: wrong passphrase "
             "(MXGW_TLS_KEY_PASSPHRASE)",
             fx(keys[i]));
    assert_err(t, rv, MXGW_E_TLS, msg);
  }
  mxgw_tls_free(t);
}

TLS_TEST(load, encrypted_key_right_passphrase) {
  const char *keys[] = {"encrypted.key", "encrypted-legacy.key"};
  for (int i = 0; i < 2; i++) {
    mxgw_tls *t = srv();
    cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_KEY_PASSPHRASE, "correct-horse"), 0);
    cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                         fx(keys[i])),
                 0, "%s", mxgw_tls_errmsg(t));
    /* reload decrypts it again */
    cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
    mxgw_tls_free(t);
  }
}

TLS_TEST(load, expired) {
  mxgw_tls *t = srv();
  time_t now = time(NULL);
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("expired-fullchain.pem"),
                                   fx("ec.key"));
  char *na = ossl_date(fx("expired.pem"), "notAfter");
  cr_assert_str_eq(na, "2021-01-01T00:00:00Z");
  long ago = -days_between(now, iso_to_time(na));
  long ago2 = -days_between(time(NULL), iso_to_time(na)); /* midnight passed? */
  cr_assert_eq(rv, MXGW_E_TLS);
  snprintf(msg, sizeof msg,
           "%s: certificate CN=mx.example.test expired on %s (%ld days ago)",
           fx("expired-fullchain.pem"), na, ago);
  if (ago2 != ago && strcmp(mxgw_tls_errmsg(t), msg) != 0)
    snprintf(msg, sizeof msg,
             "%s: certificate CN=mx.example.test expired on %s (%ld days ago)",
             fx("expired-fullchain.pem"), na, ago2);
  assert_err(t, rv, MXGW_E_TLS, msg);
  /* REFUSE_EXPIRED 0: loads, with a warning */
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_REFUSE_EXPIRED, 0), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("expired-fullchain.pem"),
                                       fx("ec.key")),
               0, "%s", mxgw_tls_errmsg(t));
  snprintf(msg, sizeof msg, "certificate CN=mx.example.test expired on %s", na);
  cr_assert(has_warning(t, msg));
  mxgw_tls_free(t);
  free(na);
}

TLS_TEST(load, not_yet_valid) {
  mxgw_tls *t = srv();
  time_t now = time(NULL);
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("future-fullchain.pem"),
                                   fx("ec.key"));
  char *nb = ossl_date(fx("future.pem"), "notBefore");
  char *na = ossl_date(fx("future.pem"), "notAfter");
  /* floored days: the fixture is seconds old, so the value may change
   * during the call; accept the one on either side */
  long in = days_between(now, iso_to_time(nb));
  long in2 = days_between(time(NULL), iso_to_time(nb));
  cr_assert(in >= 9 && in <= 10, "%ld", in);
  cr_assert_eq(rv, MXGW_E_TLS);
  snprintf(msg, sizeof msg,
           "%s: certificate CN=mx.example.test is not yet valid: valid from "
           "%s (in %ld days), until %s",
           fx("future-fullchain.pem"), nb, in, na);
  if (in2 != in && strcmp(mxgw_tls_errmsg(t), msg) != 0)
    snprintf(msg, sizeof msg,
             "%s: certificate CN=mx.example.test is not yet valid: valid from "
             "%s (in %ld days), until %s",
             fx("future-fullchain.pem"), nb, in2, na);
  assert_err(t, rv, MXGW_E_TLS, msg);
  mxgw_tls_free(t);
  free(nb);
  free(na);
}

TLS_TEST(load, expiring_soon_warns) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("expiring-fullchain.pem"),
                                       fx("ec.key")),
               0, "%s", mxgw_tls_errmsg(t));
  char *na = ossl_date(fx("expiring.pem"), "notAfter");
  /* days left, floored: the fixture is seconds old, so a day boundary may
   * pass during the test; take the value on each side of the calls */
  long before = days_between(time(NULL), iso_to_time(na));
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  int64_t dl;
  cr_assert_eq(mxgw_tls_cert_int(t, 0, MXGW_CERT_DAYS_LEFT, &dl), 0);
  long after = days_between(time(NULL), iso_to_time(na));
  cr_assert(before == 4 || before == 5, "%ld", before); /* -days 5 */
  cr_assert(dl == before || dl == after, "%lld", (long long)dl);
  cr_assert_eq(mxgw_tls_warning_count(t), 1);
  const char *w;
  cr_assert_eq(mxgw_tls_warning(t, 0, &w, NULL), 0);
  char msg2[8192];
  snprintf(msg, sizeof msg,
           "%s: certificate CN=mx.example.test expires in %ld days, on %s",
           fx("expiring-fullchain.pem"), before, na);
  snprintf(msg2, sizeof msg2,
           "%s: certificate CN=mx.example.test expires in %ld days, on %s",
           fx("expiring-fullchain.pem"), after, na);
  cr_assert(!strcmp(w, msg) || !strcmp(w, msg2), "got: %s\nwant: %s", w, msg);
  /* threshold below the days left: no warning */
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_EXPIRY_WARN_DAYS, 2), 0);
  cr_assert_eq(mxgw_tls_reload(t), 0);
  cr_assert_eq(mxgw_tls_warning_count(t), 0);
  cr_assert_eq(mxgw_tls_warning(t, 0, &w, NULL), MXGW_E_RANGE);
  mxgw_tls_free(t);
  free(na);
}

/* The deployment's failure: a self-signed CN=localhost where mail for
 * mx.example.org arrives. */
TLS_TEST(load, self_signed_localhost_does_not_cover_hostname) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, "mx.example.org"), 0);
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("localhost.pem"),
                                   fx("localhost.key"));
  snprintf(msg, sizeof msg,
           "%s: certificate CN=localhost (self-signed) does not cover "
           "mx.example.org; SAN: localhost",
           fx("localhost.pem"));
  assert_err(t, rv, MXGW_E_TLS, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, self_signed_without_hostname_loads_and_is_noted) {
  mxgw_tls *t = server_with(fx("localhost.pem"), fx("localhost.key"));
  int64_t v;
  cr_assert_eq(mxgw_tls_cert_int(t, 0, MXGW_CERT_SELF_SIGNED, &v), 0);
  cr_assert_eq(v, 1);
  cr_assert_eq(mxgw_tls_warning_count(t), 0);
  /* with a host name it covers: loads, with a warning */
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, "LocalHost"), 0);
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  snprintf(msg, sizeof msg,
           "%s: certificate CN=localhost is self-signed: clients that verify "
           "certificates will refuse it",
           fx("localhost.pem"));
  cr_assert(has_warning(t, msg));
  mxgw_tls_free(t);
}

TLS_TEST(load, wrong_hostname) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, "mx.example.test"), 0);
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("wronghost-fullchain.pem"),
                                   fx("ec.key"));
  snprintf(msg, sizeof msg,
           "%s: certificate CN=wrong.example.net does not cover "
           "mx.example.test; SAN: wrong.example.net",
           fx("wronghost-fullchain.pem"));
  assert_err(t, rv, MXGW_E_TLS, msg);
  /* the right certificate passes; a SAN other than the CN counts */
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, "SMTP.example.test"), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  /* REFUSE_HOSTNAME_MISMATCH 0: a warning */
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_REFUSE_HOSTNAME_MISMATCH, 0), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, "mx.example.test"), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("wronghost-fullchain.pem"),
                                       fx("ec.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert(has_warning(t, "CN=wrong.example.net does not cover mx.example.test"));
  mxgw_tls_free(t);
}

TLS_TEST(load, sni_name_must_be_covered) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, "mx.other.test", fx("rsa-fullchain.pem"),
                                   fx("rsa.key"));
  snprintf(msg, sizeof msg,
           "%s: certificate CN=mx.example.test does not cover its SNI name "
           "mx.other.test; SAN: mx.example.test, smtp.example.test",
           fx("rsa-fullchain.pem"));
  assert_err(t, rv, MXGW_E_TLS, msg);
  rv = mxgw_tls_add_cert_files(t, "*.other.test", fx("other-fullchain.pem"),
                               fx("other.key"));
  cr_assert_eq(rv, MXGW_E_TLS, "%s", mxgw_tls_errmsg(t));
  cr_assert(strstr(mxgw_tls_errmsg(t), "does not cover its SNI name *.other.test"));
  cr_assert_eq(mxgw_tls_add_cert_files(t, "*.wild.test", fx("wild-fullchain.pem"),
                                       fx("wild.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_add_cert_files(t, "MX.Other.Test.", fx("other-fullchain.pem"),
                                       fx("other.key")),
               0, "%s", mxgw_tls_errmsg(t));
  /* bad names */
  cr_assert_eq(mxgw_tls_add_cert_files(t, "", fx("other-fullchain.pem"),
                                       fx("other.key")),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_tls_add_cert_files(t, "a..b", fx("other-fullchain.pem"),
                                       fx("other.key")),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_tls_add_cert_files(t, "*x.wild.test", fx("wild-fullchain.pem"),
                                       fx("wild.key")),
               MXGW_E_INVAL);
  mxgw_tls_free(t);
}

TLS_TEST(load, world_readable_key_refused) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                   fx("world.key"));
  snprintf(msg, sizeof msg,
           "%s: private key file mode 0644 is readable by group and others; "
           "chmod 600 %s (or set MXGW_TLS_STRICT_KEY_MODE to 0)",
           fx("world.key"), fx("world.key"));
  assert_err(t, rv, MXGW_E_PERM, msg);
  rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), fx("group.key"));
  snprintf(msg, sizeof msg,
           "%s: private key file mode 0640 is readable by group; chmod 600 %s "
           "(or set MXGW_TLS_STRICT_KEY_MODE to 0)",
           fx("group.key"), fx("group.key"));
  assert_err(t, rv, MXGW_E_PERM, msg);
  /* STRICT_KEY_MODE 0: a warning */
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_STRICT_KEY_MODE, 0), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("world.key")),
               0, "%s", mxgw_tls_errmsg(t));
  snprintf(msg, sizeof msg,
           "%s: private key file mode 0644 is readable by group and others; "
           "chmod 600 %s",
           fx("world.key"), fx("world.key"));
  cr_assert(has_warning(t, msg));
  mxgw_tls_free(t);
}

TLS_TEST(load, combined_file) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("combined.pem"), NULL), 0,
               "%s", mxgw_tls_errmsg(t));
  /* the same file readable by others exposes the key */
  const char *dir = scratch_dir();
  replace_file(dir, "combined.pem", fx("combined.pem"), 0644);
  const char *c = in_dir(dir, "combined.pem");
  mxgw_tls *t2 = srv();
  int rv = mxgw_tls_add_cert_files(t2, NULL, c, c);
  snprintf(msg, sizeof msg,
           "%s: private key file mode 0644 is readable by group and others; "
           "chmod 600 %s (or set MXGW_TLS_STRICT_KEY_MODE to 0)",
           c, c);
  assert_err(t2, rv, MXGW_E_PERM, msg);
  /* a chain file that also holds a key is checked even when the key comes
   * from another file */
  rv = mxgw_tls_add_cert_files(t2, NULL, c, fx("rsa.key"));
  assert_err(t2, rv, MXGW_E_PERM, msg);
  mxgw_tls_free(t);
  mxgw_tls_free(t2);
}

TLS_TEST(load, chain_complete_with_ca_file_has_no_warning) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_warning_count(t), 0);
  mxgw_tls_free(t);
}

TLS_TEST(load, chain_complete_with_ca_path_has_no_warning) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_PATH, fx("capath")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_warning_count(t), 0);
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_warning_count(t), 0);
  mxgw_tls_free(t);
}

TLS_TEST(load, chain_ending_at_unknown_root_warns) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_warning_count(t), 1);
  const char *w;
  cr_assert_eq(mxgw_tls_warning(t, 0, &w, NULL), 0);
  snprintf(msg, sizeof msg,
           "%s: chain incomplete: CN=MXGW Test Intermediate CA is issued by "
           "CN=MXGW Test Root CA, which is not included (nor in "
           "MXGW_TLS_CA_FILE, MXGW_TLS_CA_PATH or the system trust store); "
           "fine if it is a root your clients trust (set MXGW_TLS_CA_FILE to "
           "it to say so), otherwise append its certificate",
           fx("rsa-fullchain.pem"));
  cr_assert_str_eq(w, msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, chain_missing_intermediate_warns) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("leaf-only.pem"), fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  snprintf(msg, sizeof msg,
           "%s: chain incomplete: CN=mx.example.test is issued by CN=MXGW "
           "Test Intermediate CA, which is not included (nor in "
           "MXGW_TLS_CA_FILE, MXGW_TLS_CA_PATH or the system trust store); "
           "clients will fail to verify it: append the intermediate "
           "certificate(s) after the certificate (fullchain.pem rather than "
           "cert.pem)",
           fx("leaf-only.pem"));
  cr_assert(has_warning(t, msg), "want: %s", msg);
  /* and a verifying client does fail */
  cr_assert_eq(mxgw_tls_reload(t), 0);
  mxgw_tls *c = client_ctx();
  cr_assert_null(served_fp(t, c, "mx.example.test"));
  mxgw_tls_free(c);
  cr_assert_eq(mxgw_tls_warning_count(t), 1);
  mxgw_tls_free(t);
}

TLS_TEST(load, chain_out_of_order_warns_and_is_reordered) {
  const char *files[] = {"leaf-second.pem", "reversed-chain.pem"};
  for (int i = 0; i < 2; i++) {
    mxgw_tls *t = srv();
    cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
    cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx(files[i]), fx("rsa.key")),
                 0, "%s", mxgw_tls_errmsg(t));
    cr_assert_eq(mxgw_tls_reload(t), 0);
    snprintf(msg, sizeof msg,
             "%s: chain out of order; it must start with the certificate, "
             "each followed by its issuer; serving it as: leaf "
             "CN=mx.example.test (line %d), then CN=MXGW Test Intermediate CA%s",
             fx(files[i]), i == 0 ? begin_line(fx(files[i]), 2) : 1,
             i == 0 ? "" : ", then CN=MXGW Test Root CA");
    cr_assert(has_warning(t, msg), "want warning: %s", msg);
    cr_assert_eq(mxgw_tls_warning_count(t), 1);
    int64_t len;
    cr_assert_eq(mxgw_tls_cert_int(t, 0, MXGW_CERT_CHAIN_LENGTH, &len), 0);
    cr_assert_eq(len, i == 0 ? 2 : 3);
    /* a verifying client accepts what is served */
    mxgw_tls *c = client_ctx();
    char *fp = served_fp(t, c, "mx.example.test");
    cr_assert(fp, "handshake failed with the reordered chain");
    free(fp);
    mxgw_tls_free(c);
    mxgw_tls_free(t);
  }
}

TLS_TEST(load, unrelated_certificate_in_chain_warns) {
  const char *dir = scratch_dir();
  char *cmd = run("cat '%s' '%s' > '%s/x.pem' && echo ok", fx("rsa-fullchain.pem"),
                  fx("localhost.pem"), dir);
  free(cmd);
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, in_dir(dir, "x.pem"), fx("rsa.key")),
               0, "%s", mxgw_tls_errmsg(t));
  snprintf(msg, sizeof msg,
           "%s line %d: certificate CN=localhost is not part of the chain of "
           "CN=mx.example.test; not served",
           in_dir(dir, "x.pem"), begin_line(in_dir(dir, "x.pem"), 3));
  cr_assert(has_warning(t, msg), "%s", msg);
  mxgw_tls_free(t);
}

TLS_TEST(load, duplicate_key_type_for_a_name) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"),
                                       fx("ec.key")),
               0);
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("renewed-fullchain.pem"),
                                   fx("renewed.key"));
  snprintf(msg, sizeof msg,
           "%s: the default name already has an EC certificate (from %s)",
           fx("renewed-fullchain.pem"), fx("ec-fullchain.pem"));
  assert_err(t, rv, MXGW_E_INVAL, msg);
  /* the same certificate for another name is fine */
  cr_assert_eq(mxgw_tls_add_cert_files(t, "mx.example.test",
                                       fx("renewed-fullchain.pem"),
                                       fx("renewed.key")),
               0, "%s", mxgw_tls_errmsg(t));
  mxgw_tls_free(t);
}

TLS_TEST(load, failed_add_leaves_context_unchanged) {
  mxgw_tls *t = server_with(fx("ec-fullchain.pem"), fx("ec.key"));
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("garbage.pem"), fx("rsa.key")),
               MXGW_E_SYNTAX);
  cr_assert_eq(mxgw_tls_generation(t), 1);
  cr_assert_eq(mxgw_tls_cert_count(t), 1);
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_cert_count(t), 1); /* garbage was not remembered */
  cr_assert_str_eq(mxgw_tls_errmsg(t), "");
  mxgw_tls_free(t);
}

TLS_TEST(load, reload_without_certificates) {
  mxgw_tls *t = srv();
  int rv = mxgw_tls_reload(t);
  assert_err(t, rv, MXGW_E_STATE,
             "no certificate: add one with mxgw_tls_add_cert_files() first");
  char why[200];
  cr_assert_null(mxgw__tls_server_ssl(t, why, sizeof why));
  cr_assert_str_eq(why, "no certificate loaded: call mxgw_tls_reload() after "
                        "adding certificates");
  mxgw_tls_free(t);
}

TLS_TEST(load, ca_file_problems) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"),
                                       fx("ec.key")),
               0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("nope.pem")), 0);
  int rv = mxgw_tls_reload(t);
  snprintf(msg, sizeof msg, "%s: no such file", fx("nope.pem"));
  assert_err(t, rv, MXGW_E_IO, msg);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("garbage.pem")), 0);
  rv = mxgw_tls_reload(t);
  cr_assert_eq(rv, MXGW_E_SYNTAX);
  cr_assert(strstr(mxgw_tls_errmsg(t), "not PEM"));
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_PATH, fx("root.pem")), 0);
  rv = mxgw_tls_reload(t);
  snprintf(msg, sizeof msg,
           "%s: not a directory (MXGW_TLS_CA_PATH wants a hashed directory; "
           "use MXGW_TLS_CA_FILE for a file)",
           fx("root.pem"));
  assert_err(t, rv, MXGW_E_IO, msg);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_PATH, NULL), 0);
  /* requiring client certificates needs something to verify them with */
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_CLIENT_CERT, 2), 0);
  rv = mxgw_tls_reload(t);
  assert_err(t, rv, MXGW_E_INVAL,
             "MXGW_TLS_CLIENT_CERT 2 (require a client certificate) needs "
             "MXGW_TLS_CA_FILE or MXGW_TLS_CA_PATH to verify it");
  cr_assert_eq(mxgw_tls_generation(t), 0);
  mxgw_tls_free(t);
}

TLS_TEST(load, options_are_checked) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_int(t, 0, 1), MXGW_E_INVAL);
  cr_assert_eq(mxgw_tls_set_int(t, 99, 1), MXGW_E_INVAL);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_MIN_VERSION, 11), MXGW_E_RANGE);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_MAX_VERSION, 14), MXGW_E_RANGE);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_CLIENT_CERT, 3), MXGW_E_RANGE);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_STRICT_KEY_MODE, -1), MXGW_E_RANGE);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_RELOAD_INTERVAL_MS, -1), MXGW_E_RANGE);
  cr_assert_eq(mxgw_tls_set_str(t, 99, "x"), MXGW_E_INVAL);
  int rv = mxgw_tls_set_str(t, MXGW_TLS_CIPHERS, "NO-SUCH-CIPHER");
  cr_assert_eq(rv, MXGW_E_INVAL);
  cr_assert(strncmp(mxgw_tls_errmsg(t), "MXGW_TLS_CIPHERS \"NO-SUCH-CIPHER\": ", 35) == 0,
            "%s", mxgw_tls_errmsg(t));
  rv = mxgw_tls_set_str(t, MXGW_TLS_CIPHERSUITES, "TLS_NO_SUCH");
  cr_assert_eq(rv, MXGW_E_INVAL);
  cr_assert(strstr(mxgw_tls_errmsg(t), "MXGW_TLS_CIPHERSUITES \"TLS_NO_SUCH\""));
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CIPHERS, "ECDHE+AESGCM"), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CIPHERSUITES, "TLS_AES_256_GCM_SHA384"), 0);
  /* min above max is refused at load */
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"), fx("ec.key")), 0);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_MIN_VERSION, MXGW_TLS_V1_3), 0);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_MAX_VERSION, MXGW_TLS_V1_2), 0);
  rv = mxgw_tls_reload(t);
  assert_err(t, rv, MXGW_E_INVAL,
             "MXGW_TLS_MIN_VERSION (TLS 1.3) is above MXGW_TLS_MAX_VERSION (TLS 1.2)");
  cr_assert_eq(mxgw_tls_new(NULL, MXGW_TLS_SERVER, NULL), MXGW_E_INVAL);
  mxgw_tls *bad;
  cr_assert_eq(mxgw_tls_new(&bad, 3, NULL), MXGW_E_INVAL);
  cr_assert_null(bad);
  mxgw_tls_free(NULL);
  mxgw_tls_free(t);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert(f);
  char *b = malloc(65536);
  *len = fread(b, 1, 65536, f);
  fclose(f);
  return b;
}

TLS_TEST(load, from_memory) {
  size_t cl, kl;
  char *c = slurp(fx("ec-fullchain.pem"), &cl);
  char *k = slurp(fx("ec.key"), &kl);
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_add_cert_pem(t, NULL, c, cl, k, kl), 0, "%s",
               mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_reload(t), 0);
  const char *f;
  cr_assert_eq(mxgw_tls_cert_str(t, 0, MXGW_CERT_FILE, &f, NULL), 0);
  cr_assert_str_eq(f, "");
  /* reload works from the remembered copy, after the caller's buffers are
   * gone */
  memset(c, 0, cl);
  memset(k, 0, kl);
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  int rv = mxgw_tls_add_cert_pem(t, NULL, "hello", 5, k, kl);
  assert_err(t, rv, MXGW_E_SYNTAX,
             "<memory: certificate chain>: not PEM: no '-----BEGIN ...-----' "
             "line (the file starts with \"hello\")");
  free(c);
  free(k);
  mxgw_tls_free(t);
}

TLS_TEST(load, memory_pair_with_key_in_chain) {
  size_t cl;
  char *c = slurp(fx("combined.pem"), &cl);
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_add_cert_pem(t, NULL, c, cl, NULL, 0), 0, "%s",
               mxgw_tls_errmsg(t));
  free(c);
  mxgw_tls_free(t);
}

/* OpenSSL's own checks still apply: security level 3 wants RSA >= 3072. */
TLS_TEST(load, key_too_weak_for_the_security_level) {
  mxgw_tls *t = srv();
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CIPHERS, "DEFAULT:@SECLEVEL=3"), 0);
  int rv = mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"), fx("rsa.key"));
  snprintf(msg, sizeof msg,
           "%s: OpenSSL refused certificate CN=mx.example.test: ee key too small",
           fx("rsa-fullchain.pem"));
  assert_err(t, rv, MXGW_E_TLS, msg);
  /* EC P-256 is 128-bit security: fine at level 3 */
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"), fx("ec.key")),
               0, "%s", mxgw_tls_errmsg(t));
  mxgw_tls_free(t);
}
