/* SPDX-License-Identifier: MIT */
/*
 * test_session.c: unit tests of the session lifecycle and the basic
 * commands: start/peer/CONNECT, the greeting, early talkers, EHLO/HELO and
 * the extension list, command sequencing (503s), RSET, NOOP, QUIT, VRFY,
 * EXPN, HELP, unknown commands, application decisions (custom and
 * multi-line replies, invalid codes, 421), deferral with pipelining,
 * back-pressure on input and output, partial writes, want(), eof(),
 * shutdown(), and the getters.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(session, .timeout = 30);

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

Test(session, calls_before_start) {
  harness h;
  h_init(&h);
  H_OK(mxgw_session_new(&h.s, h.cfg, NULL));
  H_RET(MXGW_E_STATE, mxgw_session_feed(h.s, "NOOP\r\n", 6, 0));
  H_RET(MXGW_E_STATE, mxgw_session_eof(h.s));
  H_RET(MXGW_E_STATE, mxgw_session_tick(h.s, 10));
  H_RET(MXGW_E_INVAL, mxgw_session_set_peer(h.s, NULL, 25, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_set_peer(h.s, "999.1.1.1", 25, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_set_peer(h.s, "example.com", 25, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_set_peer(h.s, "192.0.2.1x", 25, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_set_peer(h.s, "2001:db8::zz", 25, NULL));
  H_OK(mxgw_session_set_peer(h.s, "2001:db8::1", 25, "v6.example"));
  H_OK(mxgw_session_set_peer(h.s, "192.0.2.9", 2525, "c.example"));
  H_OK(mxgw_session_start(h.s, 5));
  H_RET(MXGW_E_STATE, mxgw_session_start(h.s, 6));
  H_RET(MXGW_E_STATE, mxgw_session_set_peer(h.s, "192.0.2.1", 1, NULL));
  h_pump(&h);
  H_EXPECT(&h, "220 ");
  char *a = h_get_str(&h, MXGW_INFO_PEER_ADDR);
  cr_assert(a != NULL);
  cr_assert_str_eq(a, "192.0.2.9", "the last set_peer before start wins");
  free(a);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_PEER_PORT), 2525);
  h_free(&h);
}

Test(session, invalid_arguments) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  H_RET(MXGW_E_INVAL, mxgw_session_feed(h.s, NULL, 5, h.now));
  H_RET(0, mxgw_session_feed(h.s, "x", 0, h.now));
  const char *p;
  size_t n;
  H_RET(MXGW_E_INVAL, mxgw_session_get_str(h.s, MXGW_INFO_HELO, NULL, &n));
  H_RET(MXGW_E_INVAL, mxgw_session_get_str(h.s, MXGW_INFO_HELO, &p, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_get_int(h.s, MXGW_INFO_IS_EHLO, NULL));
  /* the session is unharmed */
  h_send(&h, "NOOP\r\n");
  H_EXPECT(&h, "250 2.0.0");
  h_free(&h);
}

Test(session, connect_event_and_peer_info) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_CONNECT, H_DEFER, 0, NULL, NULL);
  h_start(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_CONNECT), 1);
  cr_assert_eq(h.nevents, 1, "CONNECT must be the first and only event");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_CONNECT);
  H_EXPECT_NONE(&h); /* no greeting before the decision */
  char *a = h_get_str(&h, MXGW_INFO_PEER_ADDR);
  char *n = h_get_str(&h, MXGW_INFO_PEER_HOST);
  cr_assert(a && n);
  cr_assert_str_eq(a, "192.0.2.1");
  cr_assert_str_eq(n, "client.example");
  free(a);
  free(n);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_PEER_PORT), 4711);
  h_accept(&h);
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_NONE);
  H_EXPECT(&h, "220 localhost");
  H_RET(MXGW_E_STATE, mxgw_session_accept(h.s));
  H_RET(MXGW_E_STATE, mxgw_session_reply(h.s, 550, NULL, NULL));
  h_free(&h);
}

Test(session, peer_host_unknown) {
  harness h;
  h_init(&h);
  H_OK(mxgw_session_new(&h.s, h.cfg, NULL));
  H_OK(mxgw_session_set_peer(h.s, "198.51.100.7", 0, NULL));
  H_OK(mxgw_session_start(h.s, 0));
  h_pump(&h);
  char *n = h_get_str(&h, MXGW_INFO_PEER_HOST);
  cr_assert(n != NULL);
  cr_assert_str_eq(n, "unknown");
  free(n);
  h_free(&h);
}

Test(session, connect_reject_554_then_only_quit) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_CONNECT, H_REPLY, 554, NULL, "No SMTP service here");
  h_start(&h);
  const char *r = h_pop_reply(&h);
  cr_assert(r && strncmp(r, "554 ", 4) == 0, "got %s", h_esc0(&h, r));
  cr_assert(strstr(r, "No SMTP service here") != NULL);
  h_send(&h, "EHLO client.example\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_HELO), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_send(&h, "QUIT\r\n");
  H_EXPECT(&h, "221 2.0.0");
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

Test(session, connect_reject_421_closes) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_CONNECT, H_REPLY, 421, "4.7.0", "Too busy");
  h_start(&h);
  H_EXPECT(&h, "421 4.7.0 Too busy\r\n");
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  H_RET(MXGW_E_CLOSED, mxgw_session_feed(h.s, "EHLO x\r\n", 8, h.now));
  h_free(&h);
}

/* An accepting CONNECT or HELO reply gets our host name in front. */
Test(session, custom_greeting_and_helo_text) {
  harness h;
  h_init(&h);
  h_set_str(&h, MXGW_OPT_HOSTNAME, "mx.example.org");
  h_policy(&h, MXGW_EV_CONNECT, H_REPLY, 220, NULL, "Welcome, friend");
  h_policy(&h, MXGW_EV_HELO, H_REPLY, 250, NULL, "Hello there");
  h_start(&h);
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "220 mx.example.org Welcome, friend\r\n");
  h_send(&h, "HELO c.example\r\n");
  r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "250 mx.example.org Hello there\r\n");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(session, connect_invalid_codes) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_CONNECT, H_DEFER, 0, NULL, NULL);
  h_start(&h);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 250, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 354, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 99, NULL, NULL));
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_CONNECT,
               "a refused reply must leave the decision pending");
  h_accept(&h);
  H_EXPECT(&h, "220 ");
  h_free(&h);
}

Test(session, early_talker_before_connect_event) {
  harness h;
  h_init(&h);
  h_create(&h);
  static const char early[] = "EHLO early.example\r\n";
  int n = mxgw_session_feed(h.s, early, sizeof early - 1, h.now);
  cr_assert(n >= 0, "feed: %s", mxgw_errname(n));
  h_pump(&h);
  cr_assert_eq(h_count_replies(&h, "554 5.5.1"), 1, "output: %s",
               h_esc0(&h, h_output(&h)));
  cr_assert_eq(h_count(&h, MXGW_EV_HELO), 0, "early input was executed");
  cr_assert(strstr(h_output(&h), "250") == NULL);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  cr_assert(h_log_find(&h, MXGW_LOG_PROTOCOL, NULL) != NULL,
            "early talker not logged as a protocol violation");
  h_free(&h);
}

Test(session, early_talker_while_connect_deferred) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_CONNECT, H_DEFER, 0, NULL, NULL);
  h_start(&h);
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_CONNECT);
  h_send(&h, "EHLO early.example\r\nMAIL FROM:<x@example.org>\r\n");
  /* the CONNECT decision is dropped: answering it fails */
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_NONE);
  H_RET(MXGW_E_STATE, mxgw_session_accept(h.s));
  cr_assert(strstr(h_output(&h), "220") == NULL,
            "greeting sent to an early talker: %s", h_esc0(&h, h_output(&h)));
  cr_assert_eq(h_count_replies(&h, "554 5.5.1"), 1, "output: %s",
               h_esc0(&h, h_output(&h)));
  cr_assert_eq(h_count(&h, MXGW_EV_HELO), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

/* Input right after the greeting was queued is not early. */
Test(session, input_after_greeting_is_fine) {
  harness h;
  h_init(&h);
  h_start(&h);
  h_send(&h, "EHLO client.example\r\n");
  H_EXPECT(&h, "220 ");
  H_EXPECT(&h, "250");
  cr_assert_eq(h_count(&h, MXGW_EV_HELO), 1);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* EHLO / HELO                                                              */
/* ------------------------------------------------------------------------ */

static char *ehlo_reply(harness *h) {
  h_start(h);
  H_EXPECT(h, "220 ");
  h_send(h, "EHLO client.example\r\n");
  const char *r = h_pop_reply(h);
  cr_assert(r != NULL, "no EHLO reply");
  cr_assert(h_reply_is(r, "250"), "EHLO reply %s", h_esc0(h, r));
  return strdup(r);
}

static void assert_ext(harness *h, const char *reply, const char *kw,
                       int present) {
  char *p = h_ehlo_ext(reply, kw);
  if (present)
    cr_assert(p != NULL, "%s not advertised: %s", kw, h_esc0(h, reply));
  else
    cr_assert(p == NULL, "%s advertised: %s", kw, h_esc0(h, reply));
  free(p);
}

Test(session, ehlo_default_extensions) {
  harness h;
  h_init(&h);
  char *r = ehlo_reply(&h);
  cr_assert(strncmp(r, "250-localhost", 13) == 0, "%s", h_esc0(&h, r));
  assert_ext(&h, r, "PIPELINING", 1);
  assert_ext(&h, r, "8BITMIME", 1);
  assert_ext(&h, r, "SMTPUTF8", 1);
  assert_ext(&h, r, "ENHANCEDSTATUSCODES", 1);
  assert_ext(&h, r, "CHUNKING", 1);
  assert_ext(&h, r, "DSN", 1);
  assert_ext(&h, r, "STARTTLS", 0);
  assert_ext(&h, r, "AUTH", 0);
  assert_ext(&h, r, "BINARYMIME", 0);
  char *size = h_ehlo_ext(r, "SIZE");
  cr_assert(size != NULL, "SIZE not advertised");
  cr_assert_str_eq(size, "67108864");
  free(size);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_IS_EHLO), 1);
  char *helo = h_get_str(&h, MXGW_INFO_HELO);
  cr_assert(helo != NULL);
  cr_assert_str_eq(helo, "client.example");
  free(helo);
  cr_assert_str_eq(h_nth(&h, MXGW_EV_HELO, 0)->str, "client.example");
  free(r);
  h_free(&h);
}

struct ext_row {
  int opt;
  const char *kw;
};

Test(session, ehlo_each_option_off) {
  static const struct ext_row rows[] = {
      {MXGW_OPT_PIPELINING, "PIPELINING"},
      {MXGW_OPT_8BITMIME, "8BITMIME"},
      {MXGW_OPT_SMTPUTF8, "SMTPUTF8"},
      {MXGW_OPT_CHUNKING, "CHUNKING"},
      {MXGW_OPT_DSN, "DSN"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    harness h;
    h_init(&h);
    h_set(&h, rows[i].opt, 0);
    char *r = ehlo_reply(&h);
    assert_ext(&h, r, rows[i].kw, 0);
    /* the others stay */
    for (size_t j = 0; j < sizeof rows / sizeof rows[0]; j++)
      if (j != i)
        assert_ext(&h, r, rows[j].kw, 1);
    assert_ext(&h, r, "ENHANCEDSTATUSCODES", 1);
    assert_ext(&h, r, "SIZE", 1);
    free(r);
    h_free(&h);
  }
}

Test(session, ehlo_size_value) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 123456);
  char *r = ehlo_reply(&h);
  char *size = h_ehlo_ext(r, "SIZE");
  cr_assert(size != NULL);
  cr_assert_str_eq(size, "123456");
  free(size);
  free(r);
  h_free(&h);
}

Test(session, ehlo_size_unlimited) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 0);
  char *r = ehlo_reply(&h);
  char *size = h_ehlo_ext(r, "SIZE");
  /* RFC 1870: "SIZE" or "SIZE 0" means no fixed limit */
  cr_assert(size != NULL, "SIZE not advertised");
  cr_assert(strcmp(size, "") == 0 || strcmp(size, "0") == 0, "SIZE %s", size);
  free(size);
  free(r);
  h_free(&h);
}

Test(session, ehlo_all_on) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  char *r = ehlo_reply(&h);
  assert_ext(&h, r, "STARTTLS", 1);
  char *auth = h_ehlo_ext(r, "AUTH");
  cr_assert(auth != NULL, "AUTH not advertised: %s", h_esc0(&h, r));
  cr_assert(h_has_word(auth, "PLAIN") && h_has_word(auth, "LOGIN"), "AUTH %s",
            auth);
  free(auth);
  free(r);
  h_free(&h);
}

Test(session, helo_single_line) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "HELO old.example\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert(strncmp(r, "250 ", 4) == 0, "HELO reply must be one line: %s",
            h_esc0(&h, r));
  cr_assert(strstr(r, "PIPELINING") == NULL && strstr(r, "STARTTLS") == NULL);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_IS_EHLO), 0);
  cr_assert_str_eq(h_nth(&h, MXGW_EV_HELO, 0)->str, "old.example");
  /* a transaction works after HELO */
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(session, helo_ehlo_need_argument) {
  harness h;
  h_init(&h);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "EHLO\r\n");
  H_EXPECT(&h, "501 5.5.4");
  h_send(&h, "HELO\r\n");
  H_EXPECT(&h, "501 5.5.4");
  h_send(&h, "EHLO \r\n");
  H_EXPECT(&h, "501 5.5.4");
  cr_assert_eq(h_count(&h, MXGW_EV_HELO), 0);
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_free(&h);
}

Test(session, ehlo_address_literal_and_case) {
  harness h;
  h_init(&h);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "ehlo [192.0.2.1]\r\n");
  H_EXPECT(&h, "250");
  cr_assert_str_eq(h_nth(&h, MXGW_EV_HELO, 0)->str, "[192.0.2.1]");
  h_send(&h, "mail from:<a@example.org>\r\nrcpt to:<b@example.net>\r\n"
             "data\r\nhi\r\n.\r\nquit\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "221 2.0.0");
  h_free(&h);
}

Test(session, helo_rejected_by_application) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_HELO, H_REPLY, 550, "5.7.1", "Go away");
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "EHLO bad.example\r\n");
  H_EXPECT(&h, "550 5.7.1 Go away\r\n");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_free(&h);
}

Test(session, ehlo_again_resets_transaction) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "EHLO again.example\r\n");
  H_EXPECT(&h, "250");
  cr_assert_eq(h_count(&h, MXGW_EV_RSET), 1, "a new EHLO must emit RSET");
  h_send(&h, "RCPT TO:<x@example.net>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_str_eq(h_nth(&h, MXGW_EV_HELO, 1)->str, "again.example");
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Sequencing and simple commands                                           */
/* ------------------------------------------------------------------------ */

Test(session, mail_before_helo) {
  harness h;
  h_init(&h);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_free(&h);
}

Test(session, nested_mail) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nMAIL FROM:<b@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 1);
  char *f = h_get_str(&h, MXGW_INFO_MAIL_FROM);
  cr_assert(f != NULL);
  cr_assert_str_eq(f, "a@example.org", "nested MAIL replaced the sender");
  free(f);
  h_free(&h);
}

Test(session, rcpt_before_mail) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "RCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 0);
  h_free(&h);
}

Test(session, data_before_mail) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
  /* the following line is a command, not data */
  h_send(&h, "NOOP\r\n");
  H_EXPECT(&h, "250 2.0.0");
  h_free(&h);
}

Test(session, rset) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_RSET), 1);
  h_send(&h, "RCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 0);
  h_send(&h, "RSET extra\r\n");
  H_EXPECT(&h, "501 5.5.4");
  h_free(&h);
}

Test(session, rset_keeps_helo) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "RSET\r\nMAIL FROM:<c@example.org>\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.1.0");
  h_free(&h);
}

Test(session, noop) {
  harness h;
  h_init(&h);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "NOOP\r\nNOOP some text\r\nnoop\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT_NONE(&h);
  h_free(&h);
}

Test(session, quit) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "QUIT\r\nNOOP\r\n");
  H_EXPECT(&h, "221 2.0.0");
  H_EXPECT_NONE(&h); /* nothing after QUIT is executed */
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 1);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  int w = mxgw_session_want(h.s);
  cr_assert(w & MXGW_WANT_CLOSE);
  cr_assert(!(w & MXGW_WANT_WRITE));
  cr_assert(!(w & MXGW_WANT_READ));
  cr_assert_eq(mxgw_session_deadline(h.s), -1);
  H_RET(MXGW_E_CLOSED, mxgw_session_feed(h.s, "NOOP\r\n", 6, h.now));
  cr_assert_eq(mxgw_session_next_event(h.s), 0, "events after CLOSE");
  h_free(&h);
}

Test(session, vrfy_252) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "VRFY postmaster\r\n");
  H_EXPECT(&h, "252 2.0.0");
  h_send(&h, "VRFY <user@example.org>\r\n");
  H_EXPECT(&h, "252 2.0.0");
  h_free(&h);
}

Test(session, expn_not_implemented) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "EXPN staff\r\n");
  H_EXPECT(&h, "502 5.5.1");
  h_free(&h);
}

Test(session, help_214) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "HELP\r\n");
  H_EXPECT(&h, "214 2.0.0");
  h_send(&h, "HELP MAIL\r\n");
  H_EXPECT(&h, "214 2.0.0");
  h_free(&h);
}

Test(session, unknown_command) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "FROB x\r\n");
  H_EXPECT(&h, "500 5.5.2");
  h_send(&h, "\r\n");
  H_EXPECT(&h, "500 5.5.2");
  h_send(&h, "MAILFROM:<a@example.org>\r\n");
  H_EXPECT(&h, "500 5.5.2");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  /* the session goes on */
  h_send(&h, "NOOP\r\n");
  H_EXPECT(&h, "250 2.0.0");
  h_free(&h);
}

Test(session, nul_in_command) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  static const char cmd[] = "MAIL FROM:<a@example.org>\0 junk\r\nNOOP\r\n";
  h_sendn(&h, cmd, sizeof cmd - 1);
  const char *r = h_pop_reply(&h);
  cr_assert(r && r[0] == '5', "a command with NUL: %s", h_esc0(&h, r));
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0, "a command with NUL ran");
  h_free(&h);
}

Test(session, pipelined_replies_in_order) {
  harness h;
  h_init(&h);
  h_start(&h);
  h_send(&h, "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
             "RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
             "DATA\r\nline\r\n.\r\nQUIT\r\n");
  H_EXPECT(&h, "220 ");
  H_EXPECT(&h, "250");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "221 2.0.0");
  H_EXPECT_NONE(&h);
  static const int want[] = {MXGW_EV_CONNECT, MXGW_EV_HELO, MXGW_EV_MAIL,
                             MXGW_EV_RCPT,    MXGW_EV_RCPT, MXGW_EV_DATA};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_assert_eq(h.events[i].ev, want[i], "event %zu is %d, want %d", i,
                 h.events[i].ev, want[i]);
  cr_assert_str_eq(h.events[3].str, "b@example.net");
  cr_assert_str_eq(h.events[4].str, "c@example.net");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_str_eq(h_buf_str(&h.message), "line\r\n");
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Decisions                                                                */
/* ------------------------------------------------------------------------ */

Test(session, custom_reply_exact) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 550, "5.1.1", "No such user here");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@example.net>\r\n"
             "RCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "550 5.1.1 No such user here\r\n");
  H_EXPECT(&h, "250 2.1.5");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 1,
               "a rejected recipient must not join the message");
  const char *p;
  size_t n;
  H_OK(mxgw_session_rcpt_get_str(h.s, 0, MXGW_INFO_RCPT, &p, &n));
  cr_assert(n == 13 && memcmp(p, "b@example.net", 13) == 0);
  h_free(&h);
}

Test(session, custom_reply_multiline) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_MAIL, H_REPLY, 550, "5.7.1",
           "Rejected\nSee https://example.org/why\nThird line");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<spam@example.org>\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "550-5.7.1 Rejected\r\n"
                      "550-5.7.1 See https://example.org/why\r\n"
                      "550 5.7.1 Third line\r\n");
  /* no transaction started */
  h_send(&h, "RCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_free(&h);
}

Test(session, custom_accept_text) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_MAIL, H_REPLY, 250, "2.1.0", "Sender looks fine");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0 Sender looks fine\r\n");
  H_EXPECT(&h, "250 2.1.5"); /* the transaction is open */
  h_free(&h);
}

Test(session, rcpt_accept_251) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 251, "2.1.5",
           "User not local; will forward");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "251 2.1.5 User not local; will forward\r\n");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 1,
               "a 251 accepts the recipient");
  h_free(&h);
}

Test(session, reply_default_enhanced_code) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 450, NULL, "Try later");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  /* "450 4.x.y Try later": an enhanced code of class 4 is filled in */
  cr_assert(strncmp(r, "450 4.", 6) == 0, "%s", h_esc0(&h, r));
  cr_assert(strstr(r, " Try later\r\n") != NULL, "%s", h_esc0(&h, r));
  h_free(&h);
}

Test(session, reply_default_text) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 550, "5.7.1", NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "550 5.7.1");
  h_free(&h);
}

Test(session, reply_invalid_arguments) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_RCPT, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 0, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 99, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 199, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 354, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 600, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 1000, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, -250, NULL, NULL));
  /* enhanced code class must match; syntax c.s.d with 1-3 digit s and d */
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "4.1.1", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "2.0.0", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 250, "5.0.0", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1.1", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "x.y.z", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1000.1", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1000", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "6.1.1", NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "", NULL));
  /* control characters in the text */
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1", "a\rb"));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1", "a\r\n250 ok"));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1", "bell\a"));
  /* RFC 5321 4.2: textstring is HT and printable ASCII only */
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1", "\xc3\xa9t\xc3\xa9"));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 550, "5.1.1", "del\x7f"));
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT,
               "the decision must stay pending after MXGW_E_INVAL");
  H_EXPECT_NONE(&h);
  /* valid forms (HT is allowed in reply text) */
  h_reply(&h, 550, "5.100.100", "ok\tform");
  H_EXPECT(&h, "550 5.100.100 ok\tform\r\n");
  h_free(&h);
}

Test(session, reply_invalid_codes_per_stage) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  for (int ev = MXGW_EV_HELO; ev <= MXGW_EV_MESSAGE_END; ev++)
    if (h_is_decision(ev))
      h_policy(&h, ev, H_DEFER, 0, NULL, NULL);
  h_start(&h); /* CONNECT is accepted by default policy */
  H_EXPECT(&h, "220 ");
  /* HELO: 2xx or 4xx/5xx; 354 is not a HELO answer */
  h_send(&h, "EHLO c.example\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_HELO);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 354, NULL, NULL));
  h_accept(&h);
  H_EXPECT(&h, "250");
  /* AUTH: 235 or 4xx/5xx */
  h_send(&h, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_AUTH);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 250, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 354, NULL, NULL));
  h_reply(&h, 535, "5.7.8", "Nope");
  H_EXPECT(&h, "535 5.7.8 Nope\r\n");
  /* MAIL: not 354 */
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_MAIL);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 354, NULL, NULL));
  h_accept(&h);
  H_EXPECT(&h, "250 2.1.0");
  h_send(&h, "RCPT TO:<b@example.net>\r\n");
  h_accept(&h);
  H_EXPECT(&h, "250 2.1.5");
  /* DATA: 354 or 4xx/5xx */
  h_send(&h, "DATA\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_DATA);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 250, NULL, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 235, NULL, NULL));
  h_reply(&h, 354, NULL, "Go ahead, end with dot");
  const char *r = h_pop_reply(&h);
  cr_assert(r && strncmp(r, "354 ", 4) == 0 &&
                strstr(r, "Go ahead, end with dot\r\n"),
            "%s", h_esc0(&h, r));
  /* MESSAGE_END: 2xx or 4xx/5xx, not 354 */
  h_send(&h, "body\r\n.\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_MESSAGE_END);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 354, NULL, NULL));
  h_reply(&h, 250, "2.0.0", "Queued as X1");
  H_EXPECT(&h, "250 2.0.0 Queued as X1\r\n");
  /* STARTTLS: 220 or 4xx/5xx */
  h_send(&h, "STARTTLS\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_STARTTLS);
  H_RET(MXGW_E_INVAL, mxgw_session_reply(h.s, 250, NULL, NULL));
  h_reply(&h, 454, "4.7.0", "TLS not available now");
  H_EXPECT(&h, "454 4.7.0 TLS not available now\r\n");
  h_free(&h);
}

Test(session, reply_421_closes) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_MAIL, H_REPLY, 421, "4.3.0", "Local trouble");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "NOOP\r\n");
  H_EXPECT(&h, "421 4.3.0 Local trouble\r\n");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 0);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  h_free(&h);
}

Test(session, message_end_reject) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_MESSAGE_END, H_REPLY, 550, "5.7.1", "Spam");
  h_start_txn(&h);
  h_send(&h, "DATA\r\nbuy now\r\n.\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "550 5.7.1 Spam\r\n");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 0);
  /* the session goes on with a fresh transaction */
  h_send(&h, "RCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "DATA\r\nok\r\n.\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 1);
  h_free(&h);
}

Test(session, data_rejected_by_application) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_DATA, H_REPLY, 554, "5.7.1", "No data for you");
  h_start_txn(&h);
  h_send(&h, "DATA\r\nNOOP\r\n");
  H_EXPECT(&h, "554 5.7.1 No data for you\r\n");
  /* the line after a refused DATA is a command */
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_BODY), 0);
  h_free(&h);
}

Test(session, accept_without_pending) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  H_RET(MXGW_E_STATE, mxgw_session_accept(h.s));
  H_RET(MXGW_E_STATE, mxgw_session_reply(h.s, 250, NULL, NULL));
  H_RET(MXGW_E_STATE, mxgw_session_reply(h.s, 550, "5.0.0", "x"));
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_NONE);
  H_EXPECT_NONE(&h);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Deferral and back-pressure                                               */
/* ------------------------------------------------------------------------ */

Test(session, deferral_keeps_pipeline_buffered) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_RCPT, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "RCPT TO:<c@example.net>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT);
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 1);
  cr_assert_str_eq(h_nth(&h, MXGW_EV_RCPT, 0)->str, "b@example.net");
  cr_assert_eq(mxgw_session_next_event(h.s), 0);
  cr_assert_eq(mxgw_session_next_event(h.s), 0);
  cr_assert_eq(mxgw_session_deadline(h.s), -1,
               "no timer may run while a decision is pending");
  /* nothing after the MAIL reply may have been sent */
  cr_assert(strstr(h_output(&h), "2.1.5") == NULL);
  cr_assert(strstr(h_output(&h), "354") == NULL);
  cr_assert(strstr(h_output(&h), "221") == NULL);
  /* the RCPT info is still readable while pending */
  char *r = h_get_str(&h, MXGW_INFO_RCPT);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "b@example.net");
  free(r);
  /* much later: reject the first, the second becomes pending */
  h.now += 5000;
  h_reply(&h, 550, "5.1.1", "Unknown user");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT);
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 2);
  cr_assert_str_eq(h_nth(&h, MXGW_EV_RCPT, 1)->str, "c@example.net");
  cr_assert(strstr(h_output(&h), "354") == NULL);
  h_accept(&h);
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "550 5.1.1 Unknown user\r\n");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "221 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_str_eq(h_buf_str(&h.message), "hello\r\n");
  h_free(&h);
}

Test(session, deferred_mail_blocks_rcpt) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_MAIL, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_MAIL);
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 0);
  H_EXPECT_NONE(&h);
  /* rejecting MAIL makes the pipelined RCPT a sequence error */
  h_reply(&h, 550, "5.7.1", "Sender refused");
  H_EXPECT(&h, "550 5.7.1 Sender refused\r\n");
  H_EXPECT(&h, "503 5.5.1");
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 0);
  h_free(&h);
}

Test(session, feed_backpressure_input) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_COMMAND_LINE, 512);
  h_set(&h, MXGW_OPT_INPUT_BUFFER, 16384);
  h_set(&h, MXGW_OPT_MAX_JUNK_COMMANDS, 1000000);
  h_policy(&h, MXGW_EV_RCPT, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT);
  /* 8000 NOOPs inside the transaction (not junk) */
  h_buf big = {0};
  for (int i = 0; i < 8000; i++)
    h_buf_adds(&big, "NOOP\r\n");
  int n = mxgw_session_feed(h.s, big.p, big.len, h.now);
  cr_assert(n >= 0, "feed: %s", mxgw_errname(n));
  cr_assert_lt((size_t)n, big.len,
               "feed took all %zu bytes while a "
               "decision is pending and the buffer holds 16384",
               big.len);
  cr_assert_leq(n, 16384, "feed took %d bytes beyond INPUT_BUFFER", n);
  /* offering more while full takes nothing */
  int n2 = mxgw_session_feed(h.s, big.p + n, big.len - (size_t)n, h.now);
  cr_assert(n2 >= 0);
  cr_assert_leq(n + n2, 16384);
  h_buf_add(&h.in, big.p + n + n2, big.len - (size_t)(n + n2));
  h_buf_free(&big);
  h_accept(&h); /* resumes; the harness keeps offering the rest */
  cr_assert_eq(h.in.len, 0, "input left over");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  cr_assert_eq(h_count_replies(&h, "250 2.0.0"), 8000);
  h_free(&h);
}

Test(session, output_backpressure) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_OUTPUT_BUFFER, 4096);
  h_set(&h, MXGW_OPT_MAX_JUNK_COMMANDS, 1000000);
  h_start_txn(&h);
  h.auto_output = 0; /* the client stops reading */
  h_buf big = {0};
  for (int i = 0; i < 2000; i++)
    h_buf_adds(&big, "NOOP\r\n");
  h_sendn(&h, big.p, big.len);
  h_buf_free(&big);
  const char *p;
  size_t len;
  H_OK(mxgw_session_output(h.s, &p, &len));
  cr_assert_gt(len, 0);
  cr_assert_lt(len, 4096 + 512, "%zu bytes queued past OUTPUT_BUFFER", len);
  cr_assert_eq(mxgw_session_next_event(h.s), 0);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_WRITE);
  /* the client reads again: everything gets answered */
  h.auto_output = 1;
  h_pump(&h);
  cr_assert_eq(h_count_replies(&h, "250 2.0.0"), 2000);
  cr_assert_eq(h.in.len, 0);
  h_free(&h);
}

Test(session, output_partial_consume) {
  harness h;
  h_init(&h);
  h.auto_output = 0;
  h_start(&h);
  h_send(&h, "EHLO c.example\r\nNOOP\r\n");
  const char *p;
  size_t len;
  H_OK(mxgw_session_output(h.s, &p, &len));
  cr_assert_gt(len, 10);
  char *all = strndup(p, len);
  size_t total = len;
  H_RET(MXGW_E_INVAL, mxgw_session_consume(h.s, len + 1));
  H_RET(MXGW_E_INVAL, mxgw_session_output(h.s, NULL, &len));
  H_RET(MXGW_E_INVAL, mxgw_session_output(h.s, &p, NULL));
  /* write one byte at a time */
  h_buf got = {0};
  for (size_t i = 0; i < total; i++) {
    H_OK(mxgw_session_output(h.s, &p, &len));
    cr_assert_eq(len, total - i);
    h_buf_add(&got, p, 1);
    H_OK(mxgw_session_consume(h.s, 1));
  }
  H_OK(mxgw_session_output(h.s, &p, &len));
  cr_assert_eq(len, 0);
  H_OK(mxgw_session_consume(h.s, 0));
  H_RET(MXGW_E_INVAL, mxgw_session_consume(h.s, 1));
  cr_assert_str_eq(h_buf_str(&got), all);
  cr_assert(strncmp(all, "220 ", 4) == 0);
  cr_assert(strstr(all, "\r\n250 2.0.0") != NULL);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_BYTES_OUT), (int64_t)total);
  free(all);
  h_buf_free(&got);
  h_free(&h);
}

Test(session, want_bits) {
  harness h;
  h_init(&h);
  h.auto_output = 0;
  h_start(&h);
  int w = mxgw_session_want(h.s);
  cr_assert(w & MXGW_WANT_WRITE, "greeting pending: want 0x%x", w);
  cr_assert(w & MXGW_WANT_READ);
  cr_assert(!(w & MXGW_WANT_CLOSE));
  h.auto_output = 1;
  h_drain(&h);
  w = mxgw_session_want(h.s);
  cr_assert(!(w & MXGW_WANT_WRITE), "nothing pending: want 0x%x", w);
  cr_assert(w & MXGW_WANT_READ);
  h.auto_output = 0;
  h_send(&h, "QUIT\r\n");
  w = mxgw_session_want(h.s);
  cr_assert(w & MXGW_WANT_WRITE);
  cr_assert(w & MXGW_WANT_CLOSE);
  cr_assert(!(w & MXGW_WANT_READ));
  h.auto_output = 1;
  h_drain(&h);
  w = mxgw_session_want(h.s);
  cr_assert_eq(w, MXGW_WANT_CLOSE);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* eof, shutdown                                                            */
/* ------------------------------------------------------------------------ */

Test(session, eof_idle) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  H_OK(mxgw_session_eof(h.s));
  h_pump(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 1);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  H_RET(MXGW_E_CLOSED, mxgw_session_feed(h.s, "NOOP\r\n", 6, h.now));
  h_free(&h);
}

Test(session, eof_mid_data) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\nSubject: half\r\n\r\nsome");
  H_EXPECT(&h, "354");
  H_OK(mxgw_session_eof(h.s));
  h_pump(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  int ia = h_find(&h, MXGW_EV_MESSAGE_ABORT, NULL, 0);
  int ic = h_find(&h, MXGW_EV_CLOSE, NULL, 0);
  cr_assert(ia >= 0 && ic > ia, "MESSAGE_ABORT must come before CLOSE");
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  /* both carry a reason in MXGW_INFO_DATA */
  cr_assert(h.events[ia].str && h.events[ia].len > 0, "no abort reason");
  cr_assert(h.events[ic].str && h.events[ic].len > 0, "no close reason");
  h_free(&h);
}

Test(session, eof_mid_transaction) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  H_OK(mxgw_session_eof(h.s));
  h_pump(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_leq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 1);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

/* eof() is a half-close: input already buffered is still served and a
 * pending decision still answered; then the session closes. */
Test(session, eof_with_pending_decision) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_RCPT, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "NOOP\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT);
  H_OK(mxgw_session_eof(h.s));
  h_pump(&h);
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT,
               "eof must not drop a pending decision");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0, "CLOSE with a decision open");
  H_RET(MXGW_E_STATE, mxgw_session_feed(h.s, "NOOP\r\n", 6, h.now));
  h_accept(&h);
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT) <= 1, 1);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 1);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  h_free(&h);
}

Test(session, shutdown_default_text) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  H_OK(mxgw_session_shutdown(h.s, NULL));
  h_pump(&h);
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "421 4.3.2 localhost Service shutting down\r\n");
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  H_RET(MXGW_E_CLOSED, mxgw_session_shutdown(h.s, NULL));
  H_RET(MXGW_E_CLOSED, mxgw_session_feed(h.s, "NOOP\r\n", 6, h.now));
  h_free(&h);
}

Test(session, shutdown_custom_text_drops_pending) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_RCPT, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_RCPT);
  H_OK(mxgw_session_shutdown(h.s, "Maintenance"));
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_NONE);
  H_RET(MXGW_E_STATE, mxgw_session_accept(h.s));
  h_pump(&h);
  H_EXPECT(&h, "250 2.1.0");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert_str_eq(r, "421 4.3.2 localhost Maintenance\r\n");
  H_EXPECT_NONE(&h);
  /* no message data was under way: MESSAGE_ABORT is for body data */
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 1);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

Test(session, shutdown_mid_data) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\npartial body\r\n");
  H_EXPECT(&h, "354");
  H_OK(mxgw_session_shutdown(h.s, NULL));
  h_pump(&h);
  H_EXPECT(&h, "421 4.3.2");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Getters                                                                  */
/* ------------------------------------------------------------------------ */

Test(session, getter_errors) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  const char *p;
  size_t n;
  int64_t v;
  H_RET(MXGW_E_INVAL, mxgw_session_get_str(h.s, 999, &p, &n));
  H_RET(MXGW_E_INVAL, mxgw_session_get_str(h.s, MXGW_INFO_IS_EHLO, &p, &n));
  H_RET(MXGW_E_INVAL, mxgw_session_get_int(h.s, 999, &v));
  H_RET(MXGW_E_INVAL, mxgw_session_get_int(h.s, MXGW_INFO_HELO, &v));
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_get_str(h.s, MXGW_INFO_MAIL_FROM, &p, &n));
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_get_str(h.s, MXGW_INFO_AUTH_IDENTITY, &p, &n));
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_get_str(h.s, MXGW_INFO_TLS_PROTOCOL, &p, &n));
  H_RET(MXGW_E_RANGE,
        mxgw_session_rcpt_get_str(h.s, 0, MXGW_INFO_RCPT, &p, &n));
  H_RET(MXGW_E_RANGE,
        mxgw_session_rcpt_get_int(h.s, 0, MXGW_INFO_NOTIFY_FLAGS, &v));
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n");
  H_OK(mxgw_session_rcpt_get_str(h.s, 0, MXGW_INFO_RCPT, &p, &n));
  H_RET(MXGW_E_RANGE,
        mxgw_session_rcpt_get_str(h.s, 1, MXGW_INFO_RCPT, &p, &n));
  H_RET(MXGW_E_INVAL,
        mxgw_session_rcpt_get_str(h.s, 0, MXGW_INFO_HELO, &p, &n));
  H_RET(MXGW_E_INVAL, mxgw_session_rcpt_get_int(h.s, 0, MXGW_INFO_SIZE, &v));
  h_free(&h);
}

Test(session, user_data_and_errmsg) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  int x;
  cr_assert_eq(mxgw_session_get_user(h.s), NULL);
  mxgw_session_set_user(h.s, &x);
  cr_assert_eq(mxgw_session_get_user(h.s), &x);
  const char *m = mxgw_session_errmsg(h.s);
  cr_assert(m != NULL);
  H_RET(MXGW_E_STATE, mxgw_session_accept(h.s));
  m = mxgw_session_errmsg(h.s);
  cr_assert(m != NULL);
  h_free(&h);
}

static void size_hook(harness *h, int ev) {
  if (ev == MXGW_EV_MESSAGE_END)
    *(int64_t *)h->user = h_get_int(h, MXGW_INFO_MESSAGE_SIZE);
}

Test(session, counters) {
  harness h;
  int64_t msg_size = -1;
  h_init(&h);
  h.hook = size_hook;
  h.user = &msg_size;
  h_start(&h);
  h_send(&h, "EHLO c.example\r\nMAIL FROM:<a@example.org> SIZE=20\r\n"
             "RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
             "FROB\r\nDATA\r\n");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_IS_EHLO), 1);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_SIZE), 20);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_SMTPUTF8), 0);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 2);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_ERRORS), 1);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_TLS), 0);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_AUTHENTICATED), 0);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 0);
  h_send(&h, "0123456789\r\n..x\r\n.\r\n");
  /* RFC 1870: CRLFs count, the final dot and stuffing dots do not */
  cr_assert_eq(msg_size, 16, "MESSAGE_SIZE at MESSAGE_END: %lld",
               (long long)msg_size);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 1);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_BDAT), 0);
  h_send(&h, "NOOP\r\n");
  /* EHLO MAIL RCPT RCPT FROB DATA NOOP */
  cr_assert_eq(h_get_int(&h, MXGW_INFO_COMMANDS), 7);
  int64_t in = h_get_int(&h, MXGW_INFO_BYTES_IN);
  int64_t out = h_get_int(&h, MXGW_INFO_BYTES_OUT);
  size_t fed = strlen("EHLO c.example\r\nMAIL FROM:<a@example.org> SIZE=20\r\n"
                      "RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
                      "FROB\r\nDATA\r\n0123456789\r\n..x\r\n.\r\nNOOP\r\n");
  cr_assert_eq(in, (int64_t)fed, "BYTES_IN %lld, fed %zu", (long long)in, fed);
  cr_assert_eq(out, (int64_t)h.out.len, "BYTES_OUT %lld, consumed %zu",
               (long long)out, h.out.len);
  h_free(&h);
}
