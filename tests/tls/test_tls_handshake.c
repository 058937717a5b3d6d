/* SPDX-License-Identifier: MIT */
/*
 * test_tls_handshake.c: real TLS handshakes, in memory, between
 * mxgw__tls_server_ssl() and mxgw__tls_client_ssl() over BIO pairs. They
 * prove which certificate is served: RSA or ECDSA by the client's
 * signature algorithms and ciphers, by SNI name (exact, wildcard, case),
 * before and after a reload (on demand and detected from renamed files),
 * and that a failed reload keeps serving the old one. Also protocol
 * versions, resumption, client certificates, client-side verification,
 * the safe defaults, and handshakes on other threads during reloads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>

#include "mxgw_tls_load.h" /* mxgw__tls_name_str */
#include "tls_helpers.h"

TestSuite(handshake, .fini = tls_test_cleanup);
TestSuite(reload, .fini = tls_test_cleanup);
TestSuite(refcount, .fini = tls_test_cleanup);

static mxgw_tls *dual(void) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("rsa-fullchain.pem"),
                                       fx("rsa.key")), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("ec-fullchain.pem"),
                                       fx("ec.key")), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  return t;
}

/* A handshake where the client is restricted by `how`. */
static char *served_with(mxgw_tls *srv, mxgw_tls *cli, const char *sigalgs,
                         const char *ciphers12) {
  char why[256];
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  cr_assert(s && c);
  if (sigalgs) {
    char list[256]; /* the macro takes a non-const pointer */
    snprintf(list, sizeof list, "%s", sigalgs);
    cr_assert_eq(SSL_set1_sigalgs_list(c, list), 1);
  }
  if (ciphers12) {
    cr_assert_eq(SSL_set_max_proto_version(c, TLS1_2_VERSION), 1);
    cr_assert_eq(SSL_set_cipher_list(c, ciphers12), 1);
  }
  char *fp = handshake(s, c) ? peer_fp(c) : NULL;
  if (fp && ciphers12)
    cr_assert_str_eq(SSL_get_version(c), "TLSv1.2");
  SSL_free(s);
  SSL_free(c);
  return fp;
}

TLS_TEST(handshake, verifying_client_accepts_the_chain) {
  mxgw_tls *srv = dual(), *cli = client_ctx();
  char why[256];
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  cr_assert(handshake(s, c));
  cr_assert_eq(SSL_get_verify_result(c), X509_V_OK);
  cr_assert_str_eq(SSL_get_version(c), "TLSv1.3");
  /* data flows */
  cr_assert_eq(SSL_write(c, "EHLO x\r\n", 8), 8);
  char buf[16];
  cr_assert_eq(SSL_read(s, buf, sizeof buf), 8);
  cr_assert(memcmp(buf, "EHLO x\r\n", 8) == 0);
  SSL_free(s);
  SSL_free(c);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(handshake, rsa_or_ecdsa_chosen_per_client) {
  mxgw_tls *srv = dual(), *cli = client_ctx();
  char *rsa = ossl_fp(fx("rsa.pem")), *ec = ossl_fp(fx("ec.pem"));
  char *fp;
  /* TLS 1.3: by signature algorithms */
  fp = served_with(srv, cli, "rsa_pss_rsae_sha256:rsa_pkcs1_sha256", NULL);
  cr_assert(fp);
  cr_assert_str_eq(fp, rsa);
  free(fp);
  fp = served_with(srv, cli, "ecdsa_secp256r1_sha256", NULL);
  cr_assert(fp);
  cr_assert_str_eq(fp, ec);
  free(fp);
  /* TLS 1.2: by cipher suite */
  fp = served_with(srv, cli, NULL, "ECDHE-RSA-AES128-GCM-SHA256");
  cr_assert(fp);
  cr_assert_str_eq(fp, rsa);
  free(fp);
  fp = served_with(srv, cli, NULL, "ECDHE-ECDSA-AES128-GCM-SHA256");
  cr_assert(fp);
  cr_assert_str_eq(fp, ec);
  free(fp);
  /* a client that takes either gets one of them */
  fp = served_fp(srv, cli, "mx.example.test");
  cr_assert(fp && (!strcmp(fp, ec) || !strcmp(fp, rsa)));
  free(fp);
  /* with only the RSA certificate, an ECDSA-only client fails */
  mxgw_tls *r = server_with(fx("rsa-fullchain.pem"), fx("rsa.key"));
  cr_assert_null(served_with(r, cli, "ecdsa_secp256r1_sha256", NULL));
  mxgw_tls_free(r);
  free(rsa);
  free(ec);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(handshake, sni_selects_the_certificate) {
  mxgw_tls *srv = NULL;
  cr_assert_eq(mxgw_tls_new(&srv, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(srv, NULL, fx("ec-fullchain.pem"),
                                       fx("ec.key")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(srv, "mx.other.test",
                                       fx("other-fullchain.pem"),
                                       fx("other.key")), 0, "%s", mxgw_tls_errmsg(srv));
  cr_assert_eq(mxgw_tls_add_cert_files(srv, "*.wild.test",
                                       fx("wild-fullchain.pem"),
                                       fx("wild.key")), 0, "%s", mxgw_tls_errmsg(srv));
  cr_assert_eq(mxgw_tls_reload(srv), 0, "%s", mxgw_tls_errmsg(srv));
  mxgw_tls *cli = client_ctx();
  char *def = ossl_fp(fx("ec.pem")), *other = ossl_fp(fx("other.pem")),
       *wild = ossl_fp(fx("wild.pem"));
  struct {
    const char *sni;
    const char *want;
  } cases[] = {
      {"mx.example.test", def}, {"mx.other.test", other},
      {"MX.Other.TEST", other}, {"a.wild.test", wild},
      {"B.WILD.test", wild},    {NULL, def},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *fp = served_fp(srv, cli, cases[i].sni);
    cr_assert(fp, "handshake for %s failed", cases[i].sni);
    cr_assert_str_eq(fp, cases[i].want, "SNI %s", cases[i].sni);
    free(fp);
  }
  /* unknown names get the default certificate (the verifying client then
   * refuses it, as it should) */
  mxgw_tls *nov = NULL;
  cr_assert_eq(mxgw_tls_new(&nov, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_eq(mxgw_tls_set_int(nov, MXGW_TLS_VERIFY_PEER, 0), 0);
  cr_assert_eq(mxgw_tls_reload(nov), 0);
  const char *unknown[] = {"b.a.wild.test", "wild.test", "other.test", "x.mx.other.test"};
  for (size_t i = 0; i < 4; i++) {
    char *fp = served_fp(srv, nov, unknown[i]);
    cr_assert(fp);
    cr_assert_str_eq(fp, def, "SNI %s", unknown[i]);
    free(fp);
  }
  mxgw_tls_free(nov);
  free(def);
  free(other);
  free(wild);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(handshake, sni_only_context_serves_first_name_by_default) {
  mxgw_tls *srv = NULL;
  cr_assert_eq(mxgw_tls_new(&srv, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(srv, "mx.other.test",
                                       fx("other-fullchain.pem"), fx("other.key")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(srv, "*.wild.test",
                                       fx("wild-fullchain.pem"), fx("wild.key")), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0);
  mxgw_tls *cli = client_ctx();
  char *other = ossl_fp(fx("other.pem")), *wild = ossl_fp(fx("wild.pem"));
  char *fp = served_fp(srv, cli, NULL);
  cr_assert_str_eq(fp, other);
  free(fp);
  fp = served_fp(srv, cli, "x.wild.test");
  cr_assert_str_eq(fp, wild);
  free(fp);
  free(other);
  free(wild);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(handshake, client_verification) {
  mxgw_tls *srv = dual();
  char why[256];
  /* wrong name */
  mxgw_tls *cli = client_ctx();
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(cli, "wrong.example.net", why, sizeof why);
  cr_assert_not(handshake(s, c));
  cr_assert_eq(SSL_get_verify_result(c), X509_V_ERR_HOSTNAME_MISMATCH);
  SSL_free(s);
  SSL_free(c);
  /* the name from MXGW_TLS_HOSTNAME when none is given */
  mxgw_tls *named = NULL;
  cr_assert_eq(mxgw_tls_new(&named, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(named, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_set_str(named, MXGW_TLS_HOSTNAME, "smtp.example.test"), 0);
  cr_assert_eq(mxgw_tls_reload(named), 0, "%s", mxgw_tls_errmsg(named));
  s = mxgw__tls_server_ssl(srv, why, sizeof why);
  c = mxgw__tls_client_ssl(named, NULL, why, sizeof why);
  cr_assert_str_eq(SSL_get_servername(c, TLSEXT_NAMETYPE_host_name),
                   "smtp.example.test");
  cr_assert(handshake(s, c));
  SSL_free(s);
  SSL_free(c);
  mxgw_tls_free(named);
  /* a hashed CA directory instead of a file */
  mxgw_tls *dir = NULL;
  cr_assert_eq(mxgw_tls_new(&dir, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(dir, MXGW_TLS_CA_PATH, fx("capath")), 0);
  cr_assert_eq(mxgw_tls_reload(dir), 0, "%s", mxgw_tls_errmsg(dir));
  char *fp0 = served_fp(srv, dir, "mx.example.test");
  cr_assert(fp0);
  free(fp0);
  mxgw_tls_free(dir);
  /* system trust store only: the test root is unknown */
  mxgw_tls *sys = NULL;
  cr_assert_eq(mxgw_tls_new(&sys, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_eq(mxgw_tls_reload(sys), 0, "%s", mxgw_tls_errmsg(sys));
  s = mxgw__tls_server_ssl(srv, why, sizeof why);
  c = mxgw__tls_client_ssl(sys, "mx.example.test", why, sizeof why);
  cr_assert_not(handshake(s, c));
  long vr = SSL_get_verify_result(c);
  cr_assert(vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                vr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN,
            "%ld", vr);
  SSL_free(s);
  SSL_free(c);
  /* verification off: anything goes (opportunistic TLS to a backend) */
  cr_assert_eq(mxgw_tls_set_int(sys, MXGW_TLS_VERIFY_PEER, 0), 0);
  cr_assert_eq(mxgw_tls_reload(sys), 0);
  char *fp = served_fp(srv, sys, "wrong.example.net");
  cr_assert(fp);
  free(fp);
  /* an address literal: no SNI */
  c = mxgw__tls_client_ssl(sys, "127.0.0.1", why, sizeof why);
  cr_assert(c);
  cr_assert_null(SSL_get_servername(c, TLSEXT_NAMETYPE_host_name));
  SSL_free(c);
  /* wrong roles, not loaded */
  cr_assert_null(mxgw__tls_client_ssl(srv, "x", why, sizeof why));
  cr_assert_str_eq(why, "not a client TLS context");
  cr_assert_null(mxgw__tls_server_ssl(sys, why, sizeof why));
  cr_assert_str_eq(why, "not a server TLS context");
  mxgw_tls *fresh = NULL;
  cr_assert_eq(mxgw_tls_new(&fresh, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_null(mxgw__tls_client_ssl(fresh, "x", why, sizeof why));
  cr_assert_str_eq(why, "TLS client context not loaded: call mxgw_tls_reload() first");
  mxgw_tls_free(fresh);
  mxgw_tls_free(sys);
  mxgw_tls_free(cli);
  mxgw_tls_free(srv);
}

static const char *version_of(mxgw_tls *srv, mxgw_tls *cli, int cli_min,
                              int cli_max) {
  char why[256];
  static char v[32];
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  SSL_set_min_proto_version(c, cli_min);
  SSL_set_max_proto_version(c, cli_max);
  snprintf(v, sizeof v, "%s", handshake(s, c) ? SSL_get_version(s) : "failed");
  SSL_free(s);
  SSL_free(c);
  return v;
}

TLS_TEST(handshake, protocol_versions) {
  mxgw_tls *srv = dual(), *cli = client_ctx();
  cr_assert_str_eq(version_of(srv, cli, TLS1_2_VERSION, TLS1_3_VERSION), "TLSv1.3");
  cr_assert_str_eq(version_of(srv, cli, TLS1_2_VERSION, TLS1_2_VERSION), "TLSv1.2");
  /* TLS 1.1 and below are refused by default (the client may offer them:
   * security level 0 lets it) */
  {
    char why[256];
    SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
    SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
    SSL_set_security_level(c, 0);
    SSL_set_cipher_list(c, "DEFAULT:@SECLEVEL=0");
    SSL_set_min_proto_version(c, TLS1_VERSION);
    SSL_set_max_proto_version(c, TLS1_1_VERSION);
    cr_assert_not(handshake(s, c));
    SSL_free(s);
    SSL_free(c);
  }
  /* TLS 1.3 only */
  cr_assert_eq(mxgw_tls_set_int(srv, MXGW_TLS_MIN_VERSION, MXGW_TLS_V1_3), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0);
  cr_assert_str_eq(version_of(srv, cli, TLS1_2_VERSION, TLS1_2_VERSION), "failed");
  cr_assert_str_eq(version_of(srv, cli, TLS1_2_VERSION, TLS1_3_VERSION), "TLSv1.3");
  /* TLS 1.2 only */
  cr_assert_eq(mxgw_tls_set_int(srv, MXGW_TLS_MIN_VERSION, MXGW_TLS_V1_2), 0);
  cr_assert_eq(mxgw_tls_set_int(srv, MXGW_TLS_MAX_VERSION, MXGW_TLS_V1_2), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0);
  cr_assert_str_eq(version_of(srv, cli, TLS1_2_VERSION, TLS1_3_VERSION), "TLSv1.2");
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(handshake, ciphers_and_ciphersuites_apply) {
  mxgw_tls *srv = NULL, *cli = client_ctx();
  cr_assert_eq(mxgw_tls_new(&srv, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(srv, MXGW_TLS_CIPHERSUITES, "TLS_CHACHA20_POLY1305_SHA256"), 0);
  cr_assert_eq(mxgw_tls_set_str(srv, MXGW_TLS_CIPHERS, "ECDHE-ECDSA-CHACHA20-POLY1305"), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(srv, NULL, fx("ec-fullchain.pem"), fx("ec.key")), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0, "%s", mxgw_tls_errmsg(srv));
  char why[256];
  for (int v = 0; v < 2; v++) {
    SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
    SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
    if (v)
      SSL_set_max_proto_version(c, TLS1_2_VERSION);
    cr_assert(handshake(s, c));
    cr_assert_str_eq(SSL_get_cipher_name(c),
                     v ? "ECDHE-ECDSA-CHACHA20-POLY1305"
                       : "TLS_CHACHA20_POLY1305_SHA256");
    SSL_free(s);
    SSL_free(c);
  }
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(handshake, safe_defaults_on_server_objects) {
  mxgw_tls *srv = dual();
  char why[256];
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  cr_assert(s);
  cr_assert(SSL_get_options(s) & SSL_OP_NO_RENEGOTIATION);
  cr_assert(SSL_get_options(s) & SSL_OP_NO_COMPRESSION);
  cr_assert(SSL_get_mode(s) & SSL_MODE_RELEASE_BUFFERS);
  cr_assert_eq(SSL_get_min_proto_version(s), TLS1_2_VERSION);
  cr_assert_eq(SSL_is_server(s), 1);
  SSL_free(s);
  mxgw_tls_free(srv);
}

TLS_TEST(handshake, renegotiation_is_refused) {
  mxgw_tls *srv = dual(), *cli = client_ctx();
  char why[256];
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  SSL_set_max_proto_version(c, TLS1_2_VERSION);
  /* our client would not ask; this one insists */
  SSL_clear_options(c, SSL_OP_NO_RENEGOTIATION);
  cr_assert(handshake(s, c));
  cr_assert_eq(SSL_renegotiate(c), 1);
  /* the client asks; the server declines (no_renegotiation alert) and
   * the client, which insisted, fails or stays on the first handshake */
  bool renegotiated = false;
  char buf[8];
  for (int i = 0; i < 8; i++) {
    (void)SSL_do_handshake(c);
    (void)SSL_read(s, buf, sizeof buf);
    ERR_clear_error();
  }
  renegotiated = SSL_renegotiate_pending(c) == 0 &&
                 SSL_num_renegotiations(s) > 0;
  cr_assert_not(renegotiated);
  cr_assert_eq(SSL_num_renegotiations(s), 0);
  /* nor does the server start one */
  cr_assert_eq(SSL_renegotiate(s), 0);
  ERR_clear_error();
  SSL_free(s);
  SSL_free(c);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

/* One full handshake, then a resumption attempt with its session. */
static bool resumed(mxgw_tls *srv, mxgw_tls *cli, int maxv) {
  char why[256], buf[8];
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  SSL_set_max_proto_version(c, maxv);
  cr_assert(handshake(s, c));
  /* TLS 1.3 tickets come after the handshake: let the client read them */
  cr_assert_eq(SSL_write(s, "x", 1), 1);
  cr_assert_eq(SSL_read(c, buf, sizeof buf), 1);
  SSL_SESSION *sess = SSL_get1_session(c);
  cr_assert(sess);
  bool resumable = SSL_SESSION_is_resumable(sess) == 1;
  /* a clean close (close_notify both ways): OpenSSL forgets the sessions
   * of connections freed without one */
  SSL_shutdown(c);
  SSL_shutdown(s);
  SSL_shutdown(c);
  SSL_free(s);
  SSL_free(c);
  if (!resumable) { /* nothing to offer (no ticket, no session id) */
    SSL_SESSION_free(sess);
    return false;
  }
  s = mxgw__tls_server_ssl(srv, why, sizeof why);
  c = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  SSL_set_max_proto_version(c, maxv);
  cr_assert_eq(SSL_set_session(c, sess), 1);
  cr_assert(handshake(s, c));
  bool r = SSL_session_reused(c) == 1;
  SSL_SESSION_free(sess);
  SSL_free(s);
  SSL_free(c);
  return r;
}

TLS_TEST(handshake, session_resumption) {
  mxgw_tls *srv = dual(), *cli = client_ctx();
  cr_assert(resumed(srv, cli, TLS1_3_VERSION));
  cr_assert(resumed(srv, cli, TLS1_2_VERSION));
  cr_assert_eq(mxgw_tls_set_int(srv, MXGW_TLS_SESSION_CACHE, 0), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0);
  cr_assert_not(resumed(srv, cli, TLS1_2_VERSION));
  cr_assert_not(resumed(srv, cli, TLS1_3_VERSION));
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

static mxgw_tls *client_with_cert(void) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_CLIENT, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, fx("client-fullchain.pem"),
                                       fx("client.key")), 0, "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  return t;
}

TLS_TEST(handshake, client_certificates) {
  mxgw_tls *srv = dual(), *anon = client_ctx(), *cert = client_with_cert();
  char why[256], name[256];
  /* required: without one the handshake fails, with one it works and the
   * server sees who it is */
  cr_assert_eq(mxgw_tls_set_int(srv, MXGW_TLS_CLIENT_CERT, 2), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0, "%s", mxgw_tls_errmsg(srv));
  SSL *s = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c = mxgw__tls_client_ssl(anon, "mx.example.test", why, sizeof why);
  pair_up(s, c);
  bool ok = drive(s, c);
  if (ok) { /* TLS 1.3: the client finishes first; the server refuses */
    char buf[4];
    cr_assert_leq(SSL_read(s, buf, sizeof buf), 0);
    ok = false;
  }
  cr_assert_not(ok);
  SSL_free(s);
  SSL_free(c);
  s = mxgw__tls_server_ssl(srv, why, sizeof why);
  c = mxgw__tls_client_ssl(cert, "mx.example.test", why, sizeof why);
  cr_assert(handshake(s, c));
  X509 *peer = SSL_get0_peer_certificate(s);
  cr_assert(peer);
  cr_assert_eq(mxgw__tls_name_str(X509_get_subject_name(peer), name, sizeof name), 0);
  cr_assert_str_eq(name, "CN=client.example.test");
  cr_assert_eq(SSL_get_verify_result(s), X509_V_OK);
  SSL_free(s);
  SSL_free(c);
  /* asked, not required: both clients get through; the result says which
   * one was verified */
  cr_assert_eq(mxgw_tls_set_int(srv, MXGW_TLS_CLIENT_CERT, 1), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0);
  s = mxgw__tls_server_ssl(srv, why, sizeof why);
  c = mxgw__tls_client_ssl(anon, "mx.example.test", why, sizeof why);
  cr_assert(handshake(s, c));
  cr_assert_null(SSL_get0_peer_certificate(s));
  SSL_free(s);
  SSL_free(c);
  /* a client certificate from an unknown CA is accepted but not verified */
  cr_assert_eq(mxgw_tls_set_str(srv, MXGW_TLS_CA_FILE, fx("localhost.pem")), 0);
  cr_assert_eq(mxgw_tls_reload(srv), 0);
  s = mxgw__tls_server_ssl(srv, why, sizeof why);
  c = mxgw__tls_client_ssl(cert, "mx.example.test", why, sizeof why);
  cr_assert(handshake(s, c));
  cr_assert(SSL_get0_peer_certificate(s));
  cr_assert_neq(SSL_get_verify_result(s), X509_V_OK);
  SSL_free(s);
  SSL_free(c);
  mxgw_tls_free(srv);
  mxgw_tls_free(anon);
  mxgw_tls_free(cert);
}

/* ---- reload ---------------------------------------------------------------- */

/* A server on dir/cert.pem + dir/key.pem, starting with the EC pair. */
static mxgw_tls *reloadable(const char **dirp) {
  const char *dir = scratch_dir();
  replace_file(dir, "cert.pem", fx("ec-fullchain.pem"), 0644);
  replace_file(dir, "key.pem", fx("ec.key"), 0600);
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  cr_assert_eq(mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, fx("root.pem")), 0);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_RELOAD_INTERVAL_MS, 1000), 0);
  cr_assert_eq(mxgw_tls_add_cert_files(t, NULL, in_dir(dir, "cert.pem"),
                                       in_dir(dir, "key.pem")), 0, "%s",
               mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_reload(t), 0, "%s", mxgw_tls_errmsg(t));
  *dirp = dir;
  return t;
}

TLS_TEST(reload, on_demand_swaps_and_keeps_handshakes_in_progress) {
  const char *dir;
  mxgw_tls *srv = reloadable(&dir), *cli = client_ctx();
  char *old = ossl_fp(fx("ec.pem")), *neu = ossl_fp(fx("renewed.pem"));
  char why[256];
  char *fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, old);
  free(fp);
  /* a handshake half done: the server has answered the ClientHello */
  SSL *s1 = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c1 = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  pair_up(s1, c1);
  cr_assert_eq(SSL_get_error(c1, SSL_do_handshake(c1)), SSL_ERROR_WANT_READ);
  cr_assert_eq(SSL_get_error(s1, SSL_do_handshake(s1)), SSL_ERROR_WANT_READ);
  /* a server object created, whose client has not spoken yet */
  SSL *s2 = mxgw__tls_server_ssl(srv, why, sizeof why);
  /* an established session */
  SSL *s3 = mxgw__tls_server_ssl(srv, why, sizeof why);
  SSL *c3 = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  cr_assert(handshake(s3, c3));

  replace_file(dir, "cert.pem", fx("renewed-fullchain.pem"), 0644);
  replace_file(dir, "key.pem", fx("renewed.key"), 0600);
  cr_assert_eq(mxgw_tls_reload(srv), 0, "%s", mxgw_tls_errmsg(srv));
  cr_assert_eq(mxgw_tls_generation(srv), 2);
  const char *p;
  cr_assert_eq(mxgw_tls_cert_str(srv, 0, MXGW_CERT_FINGERPRINT, &p, NULL), 0);
  cr_assert_str_eq(p, neu);

  /* new handshakes get the new certificate */
  fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, neu);
  free(fp);
  /* the half-done one finishes with the old one */
  cr_assert(drive(s1, c1));
  fp = peer_fp(c1);
  cr_assert_str_eq(fp, old);
  free(fp);
  /* the one whose ClientHello comes after the swap gets the new one */
  SSL *c2 = mxgw__tls_client_ssl(cli, "mx.example.test", why, sizeof why);
  cr_assert(handshake(s2, c2));
  fp = peer_fp(c2);
  cr_assert_str_eq(fp, neu);
  free(fp);
  /* the established one keeps working */
  char buf[8];
  cr_assert_eq(SSL_write(c3, "DATA\r\n", 6), 6);
  cr_assert_eq(SSL_read(s3, buf, sizeof buf), 6);
  cr_assert_eq(SSL_write(s3, "354 \r\n", 6), 6);
  cr_assert_eq(SSL_read(c3, buf, sizeof buf), 6);
  SSL_free(s1);
  SSL_free(c1);
  SSL_free(s2);
  SSL_free(c2);
  /* the context may go before the last session of an old generation */
  mxgw_tls_free(srv);
  cr_assert_eq(SSL_write(c3, "QUIT\r\n", 6), 6);
  cr_assert_eq(SSL_read(s3, buf, sizeof buf), 6);
  SSL_free(s3);
  SSL_free(c3);
  mxgw_tls_free(cli);
  free(old);
  free(neu);
}

TLS_TEST(reload, failure_keeps_serving_the_old_certificate) {
  const char *dir;
  mxgw_tls *srv = reloadable(&dir), *cli = client_ctx();
  char *old = ossl_fp(fx("ec.pem")), *neu = ossl_fp(fx("renewed.pem"));
  /* a renewal that went wrong: new certificate, key not (yet) replaced */
  replace_file(dir, "cert.pem", fx("renewed-fullchain.pem"), 0644);
  int rv = mxgw_tls_reload(srv);
  cr_assert_eq(rv, MXGW_E_TLS);
  char msg[4096];
  snprintf(msg, sizeof msg,
           "%s: the private key (EC 256) does not match the certificate "
           "CN=mx.example.test (EC 256) in %s",
           in_dir(dir, "key.pem"), in_dir(dir, "cert.pem"));
  cr_assert_str_eq(mxgw_tls_errmsg(srv), msg);
  cr_assert_eq(mxgw_tls_generation(srv), 1);
  const char *p;
  cr_assert_eq(mxgw_tls_cert_str(srv, 0, MXGW_CERT_FINGERPRINT, &p, NULL), 0);
  cr_assert_str_eq(p, old);
  char *fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, old);
  free(fp);
  /* each kind of breakage keeps the old one too */
  const char *bad[][2] = {{"garbage.pem", "cert.pem"}, {"empty.pem", "cert.pem"},
                          {"world.key", "key.pem"}};
  for (int i = 0; i < 3; i++) {
    replace_file(dir, bad[i][1], fx(bad[i][0]), 0644);
    cr_assert_lt(mxgw_tls_reload(srv), 0);
    cr_assert_eq(mxgw_tls_generation(srv), 1);
    fp = served_fp(srv, cli, "mx.example.test");
    cr_assert_str_eq(fp, old);
    free(fp);
  }
  /* fixed: the next reload serves the new pair, and clears the error */
  replace_file(dir, "cert.pem", fx("renewed-fullchain.pem"), 0644);
  replace_file(dir, "key.pem", fx("renewed.key"), 0600);
  cr_assert_eq(mxgw_tls_reload(srv), 0, "%s", mxgw_tls_errmsg(srv));
  cr_assert_str_eq(mxgw_tls_errmsg(srv), "");
  cr_assert_eq(mxgw_tls_generation(srv), 2);
  fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, neu);
  free(fp);
  free(old);
  free(neu);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(reload, check_reload_sees_renamed_files_at_the_interval) {
  const char *dir;
  mxgw_tls *srv = reloadable(&dir), *cli = client_ctx();
  char *old = ossl_fp(fx("ec.pem")), *neu = ossl_fp(fx("renewed.pem"));
  cr_assert_eq(mxgw_tls_check_reload(srv, 10000), 0); /* nothing changed */
  cr_assert_eq(mxgw_tls_generation(srv), 1);
  replace_file(dir, "cert.pem", fx("renewed-fullchain.pem"), 0644);
  replace_file(dir, "key.pem", fx("renewed.key"), 0600);
  /* within the interval: not even looked at */
  cr_assert_eq(mxgw_tls_check_reload(srv, 10999), 0);
  cr_assert_eq(mxgw_tls_generation(srv), 1);
  char *fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, old);
  free(fp);
  /* at the interval: seen and reloaded */
  cr_assert_eq(mxgw_tls_check_reload(srv, 11000), 1, "%s", mxgw_tls_errmsg(srv));
  cr_assert_eq(mxgw_tls_generation(srv), 2);
  fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, neu);
  free(fp);
  /* nothing more to do */
  cr_assert_eq(mxgw_tls_check_reload(srv, 12000), 0);
  /* same content renamed over again (new inode): reloaded */
  replace_file(dir, "key.pem", fx("renewed.key"), 0600);
  cr_assert_eq(mxgw_tls_check_reload(srv, 13000), 1);
  cr_assert_eq(mxgw_tls_generation(srv), 3);
  free(old);
  free(neu);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(reload, check_reload_half_renewed_then_complete) {
  const char *dir;
  mxgw_tls *srv = reloadable(&dir), *cli = client_ctx();
  char *old = ossl_fp(fx("ec.pem")), *neu = ossl_fp(fx("renewed.pem"));
  /* the check falls between the two renames */
  replace_file(dir, "cert.pem", fx("renewed-fullchain.pem"), 0644);
  int rv = mxgw_tls_check_reload(srv, 1000);
  cr_assert_eq(rv, MXGW_E_TLS);
  cr_assert(strstr(mxgw_tls_errmsg(srv), "does not match"));
  char *fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, old);
  free(fp);
  /* a broken state is not retried while nothing changes */
  cr_assert_eq(mxgw_tls_check_reload(srv, 2000), 0);
  /* the key arrives */
  replace_file(dir, "key.pem", fx("renewed.key"), 0600);
  cr_assert_eq(mxgw_tls_check_reload(srv, 3000), 1, "%s", mxgw_tls_errmsg(srv));
  fp = served_fp(srv, cli, "mx.example.test");
  cr_assert_str_eq(fp, neu);
  free(fp);
  free(old);
  free(neu);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
}

TLS_TEST(reload, memory_pairs_do_not_trigger_check_reload) {
  mxgw_tls *t = NULL;
  cr_assert_eq(mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL), 0);
  char *pem = run("cat '%s' '%s'", fx("ec-fullchain.pem"), fx("ec.key"));
  cr_assert_eq(mxgw_tls_add_cert_pem(t, NULL, pem, strlen(pem), NULL, 0), 0,
               "%s", mxgw_tls_errmsg(t));
  cr_assert_eq(mxgw_tls_reload(t), 0);
  cr_assert_eq(mxgw_tls_set_int(t, MXGW_TLS_RELOAD_INTERVAL_MS, 0), 0);
  cr_assert_eq(mxgw_tls_check_reload(t, 0), 0);
  cr_assert_eq(mxgw_tls_check_reload(t, 1), 0);
  cr_assert_eq(mxgw_tls_generation(t), 1);
  free(pem);
  mxgw_tls_free(t);
}

/* ---- threads ----------------------------------------------------------------- */

typedef struct worker {
  mxgw_tls *srv;
  mxgw_tls *cli;
  const char *fp_a;
  const char *fp_b;
  int n;
  int failed;
  int seen_a;
  int seen_b;
  atomic_int *stop;
  atomic_int *done; /* handshakes completed, all threads */
} worker;

static void *work(void *arg) {
  worker *w = arg;
  char why[256];
  for (int i = 0; i < w->n || !atomic_load(w->stop); i++) {
    SSL *s = mxgw__tls_server_ssl(w->srv, why, sizeof why);
    SSL *c = mxgw__tls_client_ssl(w->cli, "mx.example.test", why, sizeof why);
    if (!s || !c) {
      w->failed++;
    } else {
      pair_up(s, c);
      if (!drive(s, c)) {
        w->failed++;
      } else {
        char *fp = peer_fp(c);
        if (!strcmp(fp, w->fp_a))
          w->seen_a++;
        else if (!strcmp(fp, w->fp_b))
          w->seen_b++;
        else
          w->failed++;
        free(fp);
      }
    }
    atomic_fetch_add(w->done, 1);
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    if (i > 100000)
      break;
  }
  return NULL;
}

Test(reload, handshakes_on_other_threads_during_reloads, .timeout = 300) {
  const char *dir;
  mxgw_tls *srv = reloadable(&dir), *cli = client_ctx();
  char *a = ossl_fp(fx("ec.pem")), *b = ossl_fp(fx("renewed.pem"));
  atomic_int stop, done;
  atomic_init(&stop, 0);
  atomic_init(&done, 0);
  worker w[2];
  pthread_t th[2];
  for (int i = 0; i < 2; i++) {
    w[i] = (worker){srv, cli, a, b, 50, 0, 0, 0, &stop, &done};
    cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
  }
  int reloads = 0;
  for (int i = 0; i < 40; i++) {
    bool renewed = i % 2 == 0;
    replace_file(dir, "cert.pem", fx(renewed ? "renewed-fullchain.pem" : "ec-fullchain.pem"), 0644);
    replace_file(dir, "key.pem", fx(renewed ? "renewed.key" : "ec.key"), 0600);
    cr_assert_eq(mxgw_tls_reload(srv), 0, "%s", mxgw_tls_errmsg(srv));
    reloads++;
    /* let the workers complete a few handshakes on this generation */
    int target = atomic_load(&done) + 3;
    for (int ms = 0; ms < 10000 && atomic_load(&done) < target; ms++)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  cr_assert_eq(mxgw_tls_generation(srv), (uint64_t)reloads + 1);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(w[i].failed, 0, "thread %d: %d failed handshakes", i, w[i].failed);
    cr_assert_geq(w[i].seen_a + w[i].seen_b, 50);
  }
  cr_assert_gt(w[0].seen_a + w[1].seen_a, 0);
  cr_assert_gt(w[0].seen_b + w[1].seen_b, 0);
  free(a);
  free(b);
  mxgw_tls_free(srv);
  mxgw_tls_free(cli);
  tls_test_cleanup();
  tls_leak_check();
}

TLS_TEST(refcount, references_keep_the_context) {
  mxgw_tls *srv = dual(), *cli = client_ctx();
  mxgw__tls_ref(srv);
  mxgw_tls_free(srv); /* the caller's reference */
  char *fp = served_fp(srv, cli, "mx.example.test");
  cr_assert(fp);
  free(fp);
  mxgw__tls_unref(srv); /* the last one */
  mxgw_tls_free(cli);
}
