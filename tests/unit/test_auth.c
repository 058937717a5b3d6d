/* SPDX-License-Identifier: MIT */
/*
 * test_auth.c: unit tests of STARTTLS and AUTH: when each is advertised,
 * STARTTLS errors, the CVE-2011-0411 defence (plaintext pipelined after
 * STARTTLS is never executed) and the state reset after the handshake,
 * implicit TLS, AUTH PLAIN (initial response, continuation, cancel, bad
 * base64, the credentials in the AUTH event, accept and default reject),
 * AUTH LOGIN, AUTH sequencing errors, and REQUIRE_TLS / REQUIRE_AUTH.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(auth, .timeout = 30);

/* base64 of "\0user\0secret" and "authz\0user\0secret" */
#define PLAIN_USER "AHVzZXIAc2VjcmV0"
#define PLAIN_AUTHZ "YXV0aHoAdXNlcgBzZWNyZXQ="

static void hello(harness *h) {
  h_start(h);
  H_EXPECT(h, "220 ");
}

static char *ehlo(harness *h) {
  h_send(h, "EHLO client.example\r\n");
  const char *r = h_pop_reply(h);
  cr_assert(r && h_reply_is(r, "250"), "EHLO: %s", h_esc0(h, r));
  return strdup(r);
}

/* STARTTLS accepted and the handshake reported done. */
static void go_tls(harness *h) {
  h_send(h, "STARTTLS\r\n");
  H_EXPECT(h, "220 2.0.0");
  H_OK(mxgw_session_starttls_done(h->s, "TLSv1.3", "TLS_AES_256_GCM_SHA384"));
  h_pump(h);
}

/* ------------------------------------------------------------------------ */
/* STARTTLS                                                                 */
/* ------------------------------------------------------------------------ */

Test(auth, starttls_advertised_only_when_enabled) {
  harness h;
  h_init(&h);
  hello(&h);
  char *r = ehlo(&h);
  char *x = h_ehlo_ext(r, "STARTTLS");
  cr_assert(x == NULL, "STARTTLS offered while disabled");
  free(r);
  h_send(&h, "STARTTLS\r\n");
  H_EXPECT(&h, "502 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_STARTTLS), 0);
  h_free(&h);

  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  hello(&h);
  r = ehlo(&h);
  x = h_ehlo_ext(r, "STARTTLS");
  cr_assert(x != NULL, "STARTTLS not offered: %s", h_esc0(&h, r));
  cr_assert_str_eq(x, "");
  free(x);
  free(r);
  go_tls(&h);
  r = ehlo(&h);
  x = h_ehlo_ext(r, "STARTTLS");
  cr_assert(x == NULL, "STARTTLS offered again over TLS");
  free(r);
  h_send(&h, "STARTTLS\r\n");
  const char *rr = h_pop_reply(&h);
  cr_assert(rr && rr[0] == '5', "STARTTLS over TLS: %s", h_esc0(&h, rr));
  cr_assert_eq(h_count(&h, MXGW_EV_STARTTLS), 1);
  h_free(&h);
}

Test(auth, starttls_with_arguments) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  hello(&h);
  free(ehlo(&h));
  h_send(&h, "STARTTLS now\r\n");
  H_EXPECT(&h, "501 5.5.4");
  cr_assert_eq(h_count(&h, MXGW_EV_STARTTLS), 0);
  h_free(&h);
}

Test(auth, starttls_pipelined_plaintext_discarded) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  hello(&h);
  free(ehlo(&h));
  h_send(&h, "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n"
             "RCPT TO:<victim@example.net>\r\n");
  cr_assert_eq(h_count(&h, MXGW_EV_STARTTLS), 1);
  H_EXPECT(&h, "220 2.0.0");
  H_EXPECT_NONE(&h);
  /* more plaintext before the handshake completes */
  h_send(&h, "MAIL FROM:<evil2@example.org>\r\n");
  H_EXPECT_NONE(&h);
  H_OK(mxgw_session_starttls_done(h.s, "TLSv1.3", "TLS_AES_128_GCM_SHA256"));
  h_pump(&h);
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0, "plaintext was executed");
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 0, "plaintext was executed");
  cr_assert(h_log_find(&h, MXGW_LOG_PROTOCOL, NULL) != NULL,
            "discarded plaintext not logged");
  /* state was reset: MAIL right after the handshake needs a new EHLO */
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_TLS), 1);
  char *p = h_get_str(&h, MXGW_INFO_TLS_PROTOCOL);
  char *c = h_get_str(&h, MXGW_INFO_TLS_CIPHER);
  cr_assert(p && c);
  cr_assert_str_eq(p, "TLSv1.3");
  cr_assert_str_eq(c, "TLS_AES_128_GCM_SHA256");
  free(p);
  free(c);
  free(ehlo(&h));
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(auth, starttls_resets_helo_and_auth) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  hello(&h);
  free(ehlo(&h));
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "235 2.7.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 1);
  go_tls(&h);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 0,
               "AUTH survived STARTTLS (RFC 3207 4.2)");
  const char *p;
  size_t n;
  H_RET(MXGW_E_NOTFOUND, mxgw_session_get_str(h.s, MXGW_INFO_HELO, &p, &n));
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_get_str(h.s, MXGW_INFO_AUTH_IDENTITY, &p, &n));
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_free(&h);
}

Test(auth, starttls_rejected_by_application) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_script(&h, MXGW_EV_STARTTLS, H_REPLY, 454, "4.7.0", "TLS not available");
  hello(&h);
  free(ehlo(&h));
  h_send(&h, "STARTTLS\r\nMAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "454 4.7.0 TLS not available\r\n");
  /* still plaintext, still greeted: the pipelined MAIL is served */
  H_EXPECT(&h, "250 2.1.0");
  H_RET(MXGW_E_STATE, mxgw_session_starttls_done(h.s, NULL, NULL));
  cr_assert_eq(h_get_int(&h, MXGW_INFO_TLS), 0);
  h_free(&h);
}

Test(auth, starttls_done_without_starttls) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  hello(&h);
  free(ehlo(&h));
  H_RET(MXGW_E_STATE, mxgw_session_starttls_done(h.s, "TLSv1.3", NULL));
  cr_assert_eq(h_get_int(&h, MXGW_INFO_TLS), 0);
  go_tls(&h);
  H_RET(MXGW_E_STATE, mxgw_session_starttls_done(h.s, "TLSv1.3", NULL));
  h_free(&h);
}

Test(auth, starttls_done_null_strings) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  hello(&h);
  free(ehlo(&h));
  h_send(&h, "STARTTLS\r\n");
  H_EXPECT(&h, "220 2.0.0");
  H_OK(mxgw_session_starttls_done(h.s, NULL, NULL));
  h_pump(&h);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_TLS), 1);
  free(ehlo(&h));
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(auth, implicit_tls) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_IMPLICIT_TLS, 1);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_set(&h, MXGW_OPT_AUTH, 1);
  hello(&h);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_TLS), 1);
  char *r = ehlo(&h);
  char *x = h_ehlo_ext(r, "STARTTLS");
  cr_assert(x == NULL, "STARTTLS offered on implicit TLS");
  x = h_ehlo_ext(r, "AUTH");
  cr_assert(x != NULL, "AUTH not offered over implicit TLS: %s", h_esc0(&h, r));
  free(x);
  free(r);
  h_send(&h, "STARTTLS\r\n");
  const char *rr = h_pop_reply(&h);
  cr_assert(rr && rr[0] == '5', "STARTTLS on implicit TLS: %s", h_esc0(&h, rr));
  cr_assert_eq(h_count(&h, MXGW_EV_STARTTLS), 0);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* AUTH                                                                     */
/* ------------------------------------------------------------------------ */

Test(auth, auth_offered_only_over_tls) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  hello(&h);
  char *r = ehlo(&h);
  char *x = h_ehlo_ext(r, "AUTH");
  cr_assert(x == NULL, "AUTH offered in plaintext");
  free(r);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  const char *rr = h_pop_reply(&h);
  cr_assert(rr && rr[0] == '5', "AUTH in plaintext: %s", h_esc0(&h, rr));
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 0);
  go_tls(&h);
  r = ehlo(&h);
  x = h_ehlo_ext(r, "AUTH");
  cr_assert(x != NULL, "AUTH not offered over TLS: %s", h_esc0(&h, r));
  cr_assert(h_has_word(x, "PLAIN") && h_has_word(x, "LOGIN"), "AUTH %s", x);
  free(x);
  free(r);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "235 2.7.0");
  h_free(&h);
}

Test(auth, auth_disabled) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1); /* AUTH itself stays off */
  hello(&h);
  char *r = ehlo(&h);
  char *x = h_ehlo_ext(r, "AUTH");
  cr_assert(x == NULL, "AUTH offered while disabled");
  free(r);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  const char *rr = h_pop_reply(&h);
  cr_assert(rr && rr[0] == '5', "AUTH while disabled: %s", h_esc0(&h, rr));
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 0);
  h_free(&h);
}

/* A session with AUTH over plaintext, after EHLO. */
static void auth_session(harness *h) {
  h_set(h, MXGW_OPT_AUTH, 1);
  h_set(h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  hello(h);
  free(ehlo(h));
}

struct creds {
  char *mech, *authzid, *user, *password;
  int events;
};

static void creds_hook(harness *h, int ev) {
  if (ev != MXGW_EV_AUTH)
    return;
  struct creds *c = h->user;
  free(c->mech);
  free(c->authzid);
  free(c->user);
  free(c->password);
  c->mech = h_get_str(h, MXGW_INFO_AUTH_MECH);
  c->authzid = h_get_str(h, MXGW_INFO_AUTH_AUTHZID);
  c->user = h_get_str(h, MXGW_INFO_AUTH_USER);
  c->password = h_get_str(h, MXGW_INFO_AUTH_PASSWORD);
  c->events++;
}

static void creds_free(struct creds *c) {
  free(c->mech);
  free(c->authzid);
  free(c->user);
  free(c->password);
}

Test(auth, plain_initial_response) {
  harness h;
  struct creds c = {0};
  h_init(&h);
  h.hook = creds_hook;
  h.user = &c;
  auth_session(&h);
  h_send(&h, "AUTH PLAIN " PLAIN_AUTHZ "\r\n");
  H_EXPECT(&h, "235 2.7.0");
  cr_assert_eq(c.events, 1);
  cr_assert(c.mech && c.authzid && c.user && c.password);
  cr_assert_str_eq(c.mech, "PLAIN");
  cr_assert_str_eq(c.authzid, "authz");
  cr_assert_str_eq(c.user, "user");
  cr_assert_str_eq(c.password, "secret");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 1);
  char *id = h_get_str(&h, MXGW_INFO_AUTH_IDENTITY);
  cr_assert(id != NULL);
  cr_assert_str_eq(id, "user");
  free(id);
  /* the password is only readable during the AUTH event */
  const char *p;
  size_t n;
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_get_str(h.s, MXGW_INFO_AUTH_PASSWORD, &p, &n));
  creds_free(&c);
  h_free(&h);
}

Test(auth, plain_empty_authzid) {
  harness h;
  struct creds c = {0};
  h_init(&h);
  h.hook = creds_hook;
  h.user = &c;
  auth_session(&h);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "235 2.7.0");
  cr_assert(c.authzid != NULL, "AUTHZID must be \"\" when empty");
  cr_assert_str_eq(c.authzid, "");
  cr_assert_str_eq(c.user, "user");
  cr_assert_str_eq(c.password, "secret");
  creds_free(&c);
  h_free(&h);
}

Test(auth, plain_continuation) {
  harness h;
  struct creds c = {0};
  h_init(&h);
  h.hook = creds_hook;
  h.user = &c;
  auth_session(&h);
  h_send(&h, "AUTH PLAIN\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "334 \r\n");
  cr_assert_eq(c.events, 0);
  h_send(&h, PLAIN_AUTHZ "\r\n");
  H_EXPECT(&h, "235 2.7.0");
  cr_assert_eq(c.events, 1);
  cr_assert_str_eq(c.user, "user");
  cr_assert_str_eq(c.authzid, "authz");
  creds_free(&c);
  h_free(&h);
}

Test(auth, cancel_with_star) {
  harness h;
  h_init(&h);
  auth_session(&h);
  h_send(&h, "AUTH PLAIN\r\n*\r\n");
  H_EXPECT(&h, "334 ");
  H_EXPECT(&h, "501 5.");
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 0);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 0);
  /* back to commands, and AUTH can be tried again */
  h_send(&h, "NOOP\r\nAUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "235 2.7.0");
  h_free(&h);
}

Test(auth, bad_base64) {
  harness h;
  h_init(&h);
  auth_session(&h);
  h_send(&h, "AUTH PLAIN !!!notbase64\r\n");
  H_EXPECT(&h, "501 5.5.2");
  h_send(&h, "AUTH PLAIN\r\nAHVz=ZXI\r\n");
  H_EXPECT(&h, "334 ");
  H_EXPECT(&h, "501 5.5.2");
  h_send(&h, "AUTH LOGIN\r\n%%%%\r\n");
  H_EXPECT(&h, "334 ");
  H_EXPECT(&h, "501 5.5.2");
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 0);
  h_send(&h, "NOOP\r\n");
  H_EXPECT(&h, "250 2.0.0");
  h_free(&h);
}

Test(auth, plain_malformed_credentials) {
  harness h;
  h_init(&h);
  auth_session(&h);
  /* base64 of "user secret" (no NULs) and of "\0user" (no password part) */
  h_send(&h, "AUTH PLAIN dXNlciBzZWNyZXQ=\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r && r[0] == '5', "%s", h_esc0(&h, r));
  h_send(&h, "AUTH PLAIN AHVzZXI=\r\n");
  r = h_pop_reply(&h);
  cr_assert(r && r[0] == '5', "%s", h_esc0(&h, r));
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 0);
  h_free(&h);
}

Test(auth, default_reject) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_AUTH, H_REPLY, 535, NULL, NULL);
  auth_session(&h);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "535 5.7.8");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 0);
  const char *p;
  size_t n;
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_get_str(h.s, MXGW_INFO_AUTH_IDENTITY, &p, &n));
  /* another try is allowed, and accepted this time */
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "235 2.7.0");
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 2);
  h_free(&h);
}

Test(auth, login_two_prompts) {
  harness h;
  struct creds c = {0};
  h_init(&h);
  h.hook = creds_hook;
  h.user = &c;
  auth_session(&h);
  h_send(&h, "AUTH LOGIN\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r && strncmp(r, "334 ", 4) == 0, "%s", h_esc0(&h, r));
  cr_assert_str_eq(r, "334 VXNlcm5hbWU6\r\n"); /* "Username:" */
  h_send(&h, "dXNlcg==\r\n");                  /* "user" */
  r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "334 UGFzc3dvcmQ6\r\n"); /* "Password:" */
  cr_assert_eq(c.events, 0);
  h_send(&h, "c2VjcmV0\r\n"); /* "secret" */
  H_EXPECT(&h, "235 2.7.0");
  cr_assert_eq(c.events, 1);
  cr_assert_str_eq(c.mech, "LOGIN");
  cr_assert_str_eq(c.user, "user");
  cr_assert_str_eq(c.password, "secret");
  cr_assert(c.authzid == NULL || strcmp(c.authzid, "") == 0);
  creds_free(&c);
  h_free(&h);
}

Test(auth, login_initial_response) {
  harness h;
  struct creds c = {0};
  h_init(&h);
  h.hook = creds_hook;
  h.user = &c;
  auth_session(&h);
  h_send(&h, "AUTH LOGIN dXNlcg==\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "334 UGFzc3dvcmQ6\r\n");
  h_send(&h, "c2VjcmV0\r\n");
  H_EXPECT(&h, "235 2.7.0");
  cr_assert_str_eq(c.user, "user");
  cr_assert_str_eq(c.password, "secret");
  creds_free(&c);
  h_free(&h);
}

Test(auth, sequencing_errors) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  hello(&h);
  /* before EHLO */
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "503 5.5.1");
  free(ehlo(&h));
  /* unknown mechanism */
  h_send(&h, "AUTH CRAM-MD5\r\n");
  H_EXPECT(&h, "504 5.5.4");
  /* during a transaction */
  h_send(&h, "MAIL FROM:<a@example.org>\r\nAUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "RSET\r\nAUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "235 2.7.0");
  /* twice */
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 1);
  h_free(&h);
}

Test(auth, auth_temporary_failure) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_AUTH, H_REPLY, 454, "4.7.0", "Temporary failure");
  auth_session(&h);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\n");
  H_EXPECT(&h, "454 4.7.0 Temporary failure\r\n");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 0);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* REQUIRE_TLS, REQUIRE_AUTH                                                */
/* ------------------------------------------------------------------------ */

Test(auth, require_tls) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_set(&h, MXGW_OPT_REQUIRE_TLS, 1);
  hello(&h);
  free(ehlo(&h));
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "530 5.7.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  go_tls(&h);
  free(ehlo(&h));
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(auth, require_auth) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_REQUIRE_AUTH, 1);
  auth_session(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "530 5.7.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\nMAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "235 2.7.0");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(auth, require_auth_failed_auth) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_REQUIRE_AUTH, 1);
  h_policy(&h, MXGW_EV_AUTH, H_REPLY, 535, NULL, NULL);
  auth_session(&h);
  h_send(&h, "AUTH PLAIN " PLAIN_USER "\r\nMAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "535 5.7.8");
  H_EXPECT(&h, "530 5.7.0");
  h_free(&h);
}

/* RFC 4954 4: "AUTH mechanism [initial-response]": no mechanism is a syntax
 * error (501), not an unknown mechanism (504). */
Test(auth, auth_without_mechanism) {
  harness h;
  h_init(&h);
  auth_session(&h);
  h_send(&h, "AUTH\r\n");
  H_EXPECT(&h, "501 5.5.4");
  cr_assert_eq(h_count(&h, MXGW_EV_AUTH), 0);
  h_free(&h);
}
