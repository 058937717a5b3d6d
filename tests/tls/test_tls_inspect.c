/* SPDX-License-Identifier: MIT */
/*
 * test_tls_inspect.c: inspection of the serving certificates, compared with
 * what the openssl command says about the same files (subject, issuer,
 * SAN, dates, key, SHA-256 fingerprint), and the JSON document.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tls_helpers.h"

TestSuite(inspect, .fini = tls_test_cleanup);

static const char *str(mxgw_tls *t, size_t i, int key) {
  const char *p = NULL;
  size_t n = 0;
  cr_assert_eq(mxgw_tls_cert_str(t, i, key, &p, &n), 0);
  cr_assert_eq(strlen(p), n);
  return p;
}

static int64_t num(mxgw_tls *t, size_t i, int key) {
  int64_t v = -12345;
  cr_assert_eq(mxgw_tls_cert_int(t, i, key, &v), 0);
  return v;
}

/* "DNS:a, DNS:b" -> "a, b" */
static char *ossl_san(const char *file) {
  char *o = run("openssl x509 -noout -ext subjectAltName -in '%s' | tail -n 1 | "
                "sed -e 's/^ *//' -e 's/DNS://g'",
                file);
  return o;
}

static void check_cert(mxgw_tls *t, size_t i, const char *leaf,
                       const char *chain, const char *sni, const char *type,
                       int64_t bits, int64_t chain_len, int64_t self) {
  char *subject = ossl_x509(leaf, "-subject -nameopt RFC2253", "subject=");
  char *issuer = ossl_x509(leaf, "-issuer -nameopt RFC2253", "issuer=");
  char *fp = ossl_fp(leaf);
  char *nb = ossl_date(leaf, "notBefore");
  char *na = ossl_date(leaf, "notAfter");
  char *san = ossl_san(leaf);
  char *text_bits = run("openssl x509 -noout -text -in '%s' | "
                        "grep -o 'Public-Key: ([0-9]*' | grep -o '[0-9]*$'",
                        leaf);
  cr_assert_str_eq(str(t, i, MXGW_CERT_SUBJECT), subject);
  cr_assert_str_eq(str(t, i, MXGW_CERT_ISSUER), issuer);
  cr_assert_str_eq(str(t, i, MXGW_CERT_FINGERPRINT), fp);
  cr_assert_str_eq(str(t, i, MXGW_CERT_NOT_BEFORE), nb);
  cr_assert_str_eq(str(t, i, MXGW_CERT_NOT_AFTER), na);
  cr_assert_str_eq(str(t, i, MXGW_CERT_SAN), san);
  cr_assert_str_eq(str(t, i, MXGW_CERT_KEY_TYPE), type);
  cr_assert_str_eq(str(t, i, MXGW_CERT_FILE), chain);
  cr_assert_str_eq(str(t, i, MXGW_CERT_SNI_NAME), sni ? sni : "");
  cr_assert_eq(num(t, i, MXGW_CERT_KEY_BITS), bits);
  cr_assert_eq(atoll(text_bits), bits);
  cr_assert_eq(num(t, i, MXGW_CERT_CHAIN_LENGTH), chain_len);
  cr_assert_eq(num(t, i, MXGW_CERT_SELF_SIGNED), self);
  cr_assert_eq(num(t, i, MXGW_CERT_DAYS_LEFT),
               days_between(time(NULL), iso_to_time(na)));
  free(subject);
  free(issuer);
  free(fp);
  free(nb);
  free(na);
  free(san);
  free(text_bits);
}

static mxgw_tls *three(void) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"),
                                       fx("ec.key")), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_add_cert_files(t, "mx.other.test",
                                       fx("other-fullchain.pem"),
                                       fx("other.key")), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  return t;
}

TLS_TEST(inspect, getters_match_openssl) {
  mxgw_tls *t = three();
  cr_assert_eq(mxgw_tls_cert_count(t), 3);
  check_cert(t, 0, fx("rsa.pem"), fx("rsa-fullchain.pem"), NULL, "RSA", 2048, 2, 0);
  check_cert(t, 1, fx("ec.pem"), fx("ec-fullchain.pem"), NULL, "EC", 256, 2, 0);
  check_cert(t, 2, fx("other.pem"), fx("other-fullchain.pem"), "mx.other.test",
             "EC", 256, 2, 0);
  cr_assert_str_eq(str(t, 0, MXGW_CERT_SAN), "mx.example.test, smtp.example.test");
  const char *p;
  int64_t v;
  cr_assert_eq(mxgw_tls_cert_str(t, 3, MXGW_CERT_SUBJECT, &p, NULL), MXGW_E_RANGE);
  cr_assert_eq(mxgw_tls_cert_str(t, 0, MXGW_CERT_KEY_BITS, &p, NULL), MXGW_E_INVAL);
  cr_assert_eq(mxgw_tls_cert_int(t, 0, MXGW_CERT_SUBJECT, &v), MXGW_E_INVAL);
  cr_assert_eq(mxgw_tls_cert_int(t, 9, MXGW_CERT_KEY_BITS, &v), MXGW_E_RANGE);
  mxgw_tls_free(t);
}

TLS_TEST(inspect, self_signed_localhost) {
  mxgw_tls *t = server_with(fx("localhost.pem"), fx("localhost.key"));
  check_cert(t, 0, fx("localhost.pem"), fx("localhost.pem"), NULL, "EC", 256, 1, 1);
  cr_assert_str_eq(str(t, 0, MXGW_CERT_SUBJECT), "CN=localhost");
  cr_assert_str_eq(str(t, 0, MXGW_CERT_ISSUER), "CN=localhost");
  mxgw_tls_free(t);
}

TLS_TEST(inspect, before_any_load) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_cert_count(t), 0);
  const char *p;
  cr_assert_eq(mxgw_tls_cert_str(t, 0, MXGW_CERT_SUBJECT, &p, NULL), MXGW_E_RANGE);
  size_t n;
  cr_assert_eq(mxgw_tls_json(t, &p, &n), 0);
  json_error_t je;
  json_t *j = json_loadb(p, n, 0, &je);
  cr_assert(j, "%s", je.text);
  cr_assert_eq(json_integer_value(json_object_get(j, "generation")), 0);
  cr_assert_eq(json_array_size(json_object_get(j, "certificates")), 0);
  cr_assert(json_is_null(json_object_get(j, "error")));
  json_decref(j);
  mxgw_tls_free(t);
}

TLS_TEST(inspect, json_matches_getters) {
  mxgw_tls *t = three();
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_tls_json(t, &p, &n), 0);
  cr_assert_eq(strlen(p), n);
  json_error_t je;
  json_t *j = json_loadb(p, n, 0, &je);
  cr_assert(j, "invalid JSON (%s): %s", je.text, p);
  cr_assert_str_eq(json_string_value(json_object_get(j, "role")), "server");
  cr_assert_eq(json_integer_value(json_object_get(j, "generation")), 1);
  json_t *certs = json_object_get(j, "certificates");
  cr_assert_eq(json_array_size(certs), 3);
  for (size_t i = 0; i < 3; i++) {
    json_t *c = json_array_get(certs, i);
    cr_assert_str_eq(json_string_value(json_object_get(c, "subject")),
                     str(t, i, MXGW_CERT_SUBJECT));
    cr_assert_str_eq(json_string_value(json_object_get(c, "issuer")),
                     str(t, i, MXGW_CERT_ISSUER));
    cr_assert_str_eq(json_string_value(json_object_get(c, "fingerprint_sha256")),
                     str(t, i, MXGW_CERT_FINGERPRINT));
    cr_assert_str_eq(json_string_value(json_object_get(c, "not_before")),
                     str(t, i, MXGW_CERT_NOT_BEFORE));
    cr_assert_str_eq(json_string_value(json_object_get(c, "not_after")),
                     str(t, i, MXGW_CERT_NOT_AFTER));
    cr_assert_str_eq(json_string_value(json_object_get(c, "key_type")),
                     str(t, i, MXGW_CERT_KEY_TYPE));
    cr_assert_str_eq(json_string_value(json_object_get(c, "file")),
                     str(t, i, MXGW_CERT_FILE));
    cr_assert_eq(json_integer_value(json_object_get(c, "key_bits")),
                 num(t, i, MXGW_CERT_KEY_BITS));
    cr_assert_eq(json_integer_value(json_object_get(c, "days_left")),
                 num(t, i, MXGW_CERT_DAYS_LEFT));
    cr_assert_eq(json_integer_value(json_object_get(c, "chain_length")), 2);
    cr_assert(json_is_false(json_object_get(c, "self_signed")));
    json_t *san = json_object_get(c, "san");
    cr_assert(json_is_array(san));
    cr_assert_str_eq(json_string_value(json_array_get(san, 0)),
                     i == 2 ? "mx.other.test" : "mx.example.test");
  }
  json_t *c0 = json_array_get(certs, 0);
  cr_assert(json_is_null(json_object_get(c0, "sni_name")));
  cr_assert_eq(json_array_size(json_object_get(c0, "san")), 2);
  cr_assert_null(json_object_get(c0, "key_group")); /* RSA */
  json_t *c1 = json_array_get(certs, 1);
  cr_assert_str_eq(json_string_value(json_object_get(c1, "key_group")), "prime256v1");
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(certs, 2),
                                                     "sni_name")),
                   "mx.other.test");
  cr_assert_eq(json_array_size(json_object_get(j, "warnings")), 0);
  json_decref(j);
  mxgw_tls_free(t);
}

TLS_TEST(inspect, json_reports_warnings_and_errors) {
  mxgw_tls *t = server_with(fx("expiring-fullchain.pem"), fx("ec.key"));
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("garbage.pem"), fx("ec.key")),
               MXGW_E_SYNTAX);
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_tls_json(t, &p, &n), 0);
  json_t *j = json_loadb(p, n, 0, NULL);
  cr_assert(j);
  json_t *w = json_object_get(j, "warnings");
  cr_assert_eq(json_array_size(w), 2, "%s", p); /* expiring, incomplete */
  cr_assert(strstr(json_string_value(json_array_get(w, 0)), "expires in"));
  cr_assert_str_eq(json_string_value(json_object_get(j, "error")),
                   mxgw_tls_errmsg(t));
  json_decref(j);
  mxgw_tls_free(t);
}
