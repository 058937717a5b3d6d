/* SPDX-License-Identifier: MIT */
/*
 * test_limits.c: unit tests of the session's limits and defences: command
 * line length (exact boundaries, one reply per over-long line whatever the
 * input split), the error, unknown-command and junk-command limits (421
 * 4.7.0 and close), messages per connection (452 4.5.3), the command and
 * data timeouts through deadline()/tick() (421 4.4.2, MESSAGE_ABORT, CLOSE),
 * no timer while a decision is pending, and HTTP requests (421 at once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(limits, .timeout = 60);

/* "NOOP xxx...\r\n" of exactly n octets (n >= 7). */
static void noop_line(h_buf *b, size_t n) {
  h_buf_reset(b);
  h_buf_adds(b, "NOOP ");
  while (b->len < n - 2)
    h_buf_add(b, "x", 1);
  h_buf_adds(b, "\r\n");
}

/* ------------------------------------------------------------------------ */
/* Command line length                                                      */
/* ------------------------------------------------------------------------ */

static void line_limit_case(size_t limit, int bytewise) {
  harness h;
  h_buf line = {0};
  h_init(&h);
  if (limit != 2048)
    h_set(&h, MXGW_OPT_MAX_COMMAND_LINE, (int64_t)limit);
  h_start_ehlo(&h);
  /* exactly the limit, CRLF included: fine */
  noop_line(&line, limit);
  h_sendn(&h, line.p, line.len);
  H_EXPECT(&h, "250 2.0.0");
  /* one more octet: 500 5.5.2 */
  noop_line(&line, limit + 1);
  h_sendn(&h, line.p, line.len);
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT_NONE(&h);
  /* far too long, with a command in its tail: exactly one reply */
  h_buf_reset(&line);
  h_buf_adds(&line, "NOOP ");
  for (size_t i = 0; i < 3 * limit; i++)
    h_buf_add(&line, (i % 100 == 99) ? " " : "y", 1);
  h_buf_adds(&line, " QUIT\r\nMAIL FROM:<a@example.org>\r\n");
  if (bytewise) {
    for (size_t i = 0; i < line.len; i++)
      h_sendn(&h, line.p + i, 1);
  } else {
    h_sendn(&h, line.p, line.len);
  }
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  h_buf_free(&line);
  h_free(&h);
}

Test(limits, command_line_512) { line_limit_case(512, 0); }
Test(limits, command_line_512_bytewise) { line_limit_case(512, 1); }
Test(limits, command_line_default_2048) { line_limit_case(2048, 0); }

Test(limits, long_rcpt_params_fit_default) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  /* > 512 octets with DSN parameters (the reason the default is 2048) */
  char local[70], dom[200], addr[300];
  memset(local, 'l', 64);
  local[64] = '\0';
  dom[0] = '\0';
  for (int i = 0; i < 3; i++) {
    size_t k = strlen(dom);
    memset(dom + k, 'd', 55);
    strcpy(dom + k + 55, ".");
  }
  strcat(dom, "example"); /* 3*56 + 7 = 175 */
  snprintf(addr, sizeof addr, "%s@%s", local, dom);
  h_buf cmd = {0};
  h_buf_addf(&cmd, "RCPT TO:<%s> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;%s\r\n",
             addr, addr);
  cr_assert_gt(cmd.len, 512);
  cr_assert_lt(cmd.len, 2048);
  h_sendn(&h, cmd.p, cmd.len);
  H_EXPECT(&h, "250 2.1.5");
  h_buf_free(&cmd);
  h_free(&h);
}

/* A session raises INPUT_BUFFER to fit MAX_COMMAND_LINE: a line between
 * the two is answered, not left stalling the session. */
Test(limits, line_longer_than_input_buffer) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_COMMAND_LINE, 32768);
  h_set(&h, MXGW_OPT_INPUT_BUFFER, 16384);
  h_start_ehlo(&h);
  h_buf line = {0};
  noop_line(&line, 20000);
  h_sendn(&h, line.p, line.len);
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL,
            "a 20000-octet line (MAX_COMMAND_LINE 32768, INPUT_BUFFER 16384) "
            "stalled the session: %zu octets not taken by feed",
            h.in.len);
  cr_assert(h_reply_is(r, "250 2.0.0"), "%s", h_esc0(&h, r));
  /* one octet past the limit is still refused */
  noop_line(&line, 32769);
  h_sendn(&h, line.p, line.len);
  H_EXPECT(&h, "500 5.5.2");
  h_buf_free(&line);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Error, unknown and junk limits                                           */
/* ------------------------------------------------------------------------ */

/* After start_ehlo, send `cmd` count times; expect `n` replies `each`, then
 * 421 4.7.0, then nothing, and CLOSE. */
static void limit_case(harness *h, const char *cmd, int count, int n,
                       const char *each) {
  for (int i = 0; i < count; i++)
    h_send(h, cmd);
  for (int i = 0; i < n; i++) {
    const char *r = h_pop_reply(h);
    cr_assert(r && h_reply_is(r, each), "reply %d to %s: %s, want %s", i,
              h_esc0(h, cmd), h_esc0(h, r), each);
  }
  H_EXPECT(h, "421 4.7.0");
  H_EXPECT_NONE(h);
  cr_assert_eq(h_last_event(h), MXGW_EV_CLOSE);
  cr_assert(mxgw_session_want(h->s) & MXGW_WANT_CLOSE);
}

Test(limits, error_limit) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_ERRORS, 3);
  h_start_ehlo(&h);
  limit_case(&h, "RCPT TO:<a@example.net>\r\n", 6, 3, "503 5.5.1");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_ERRORS), 3);
  h_free(&h);
}

Test(limits, error_limit_mixed_errors) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_ERRORS, 4);
  h_start_ehlo(&h);
  h_send(&h,
         "MAIL FROM:<bad\r\nDATA\r\nNOOP\r\nMAIL FROM:<a@example.org> X=1\r\n"
         "FOO\r\nNOOP\r\n");
  H_EXPECT(&h, "501 5.1.7");
  H_EXPECT(&h, "503 5.5.1");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "555 5.5.4");
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT(&h, "421 4.7.0");
  H_EXPECT_NONE(&h);
  h_free(&h);
}

Test(limits, unknown_command_limit) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_UNKNOWN_COMMANDS, 3);
  h_start_ehlo(&h);
  limit_case(&h, "FROB\r\n", 6, 3, "500 5.5.2");
  h_free(&h);
}

Test(limits, unknown_command_default_limit) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  limit_case(&h, "XYZZY\r\n", 15, 10, "500 5.5.2");
  h_free(&h);
}

Test(limits, junk_limit) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_JUNK_COMMANDS, 4);
  h_start_ehlo(&h);
  h_send(&h, "NOOP\r\nRSET\r\nVRFY postmaster\r\nHELP\r\nNOOP\r\nNOOP\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "252 2.0.0");
  H_EXPECT(&h, "214 2.0.0");
  H_EXPECT(&h, "421 4.7.0");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

Test(limits, junk_default_limit) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  limit_case(&h, "NOOP\r\n", 105, 100, "250 2.0.0");
  h_free(&h);
}

/* The header: junk is counted anywhere, also inside a transaction (as
 * Postfix's smtpd_junk_command_limit). */
Test(limits, junk_counted_in_transaction) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_JUNK_COMMANDS, 3);
  h_start_txn(&h);
  limit_case(&h, "NOOP\r\n", 6, 3, "250 2.0.0");
  h_free(&h);
}

Test(limits, messages_per_connection) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGES, 2);
  h_start_ehlo(&h);
  for (int i = 0; i < 2; i++) {
    h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               "DATA\r\nm\r\n.\r\n");
    H_EXPECT(&h, "250 2.1.0");
    H_EXPECT(&h, "250 2.1.5");
    H_EXPECT(&h, "354");
    H_EXPECT(&h, "250 2.0.0");
  }
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "452 4.5.3");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 2);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 2);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Timeouts                                                                 */
/* ------------------------------------------------------------------------ */

Test(limits, command_timeout) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_COMMAND_TIMEOUT_MS, 1000);
  h.now = 10000;
  h_start(&h);
  H_EXPECT(&h, "220 ");
  cr_assert_eq(mxgw_session_deadline(h.s), 11000);
  h.now = 10500;
  h_send(&h, "EHLO c.example\r\n");
  H_EXPECT(&h, "250");
  cr_assert_eq(mxgw_session_deadline(h.s), 11500,
               "activity restarts the timer");
  cr_assert_eq(mxgw_session_tick(h.s, 11499), 0);
  h_pump(&h);
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  cr_assert_eq(mxgw_session_tick(h.s, 11500), 1);
  h_pump(&h);
  H_EXPECT(&h, "421 4.4.2");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 0);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert_eq(mxgw_session_deadline(h.s), -1);
  cr_assert(mxgw_session_want(h.s) & MXGW_WANT_CLOSE);
  cr_assert_eq(mxgw_session_tick(h.s, 99999), 0, "a second timeout");
  h_free(&h);
}

Test(limits, command_timeout_mid_transaction) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_COMMAND_TIMEOUT_MS, 1000);
  h_start_txn(&h);
  int64_t d = mxgw_session_deadline(h.s);
  cr_assert_eq(d, h.now + 1000);
  cr_assert_eq(mxgw_session_tick(h.s, d + 5), 1);
  h_pump(&h);
  H_EXPECT(&h, "421 4.4.2");
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

Test(limits, data_timeout) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_COMMAND_TIMEOUT_MS, 100000);
  h_set(&h, MXGW_OPT_DATA_TIMEOUT_MS, 500);
  h_start_txn(&h);
  h.now = 2000;
  h_send(&h, "DATA\r\nSubject: slow\r\n");
  H_EXPECT(&h, "354");
  cr_assert_eq(mxgw_session_deadline(h.s), 2500);
  h.now = 2400;
  h_send(&h, "more\r\n");
  cr_assert_eq(mxgw_session_deadline(h.s), 2900);
  cr_assert_eq(mxgw_session_tick(h.s, 2899), 0);
  cr_assert_eq(mxgw_session_tick(h.s, 2900), 1);
  h_pump(&h);
  H_EXPECT(&h, "421 4.4.2");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  int ia = h_find(&h, MXGW_EV_MESSAGE_ABORT, NULL, 0);
  int ic = h_find(&h, MXGW_EV_CLOSE, NULL, 0);
  cr_assert(ia >= 0 && ic > ia, "MESSAGE_ABORT then CLOSE");
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

Test(limits, bdat_timeout) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_COMMAND_TIMEOUT_MS, 100000);
  h_set(&h, MXGW_OPT_DATA_TIMEOUT_MS, 500);
  h_start_txn(&h);
  h.now = 3000;
  h_send(&h, "BDAT 100\r\nonly a few");
  cr_assert_eq(mxgw_session_deadline(h.s), 3500);
  cr_assert_eq(mxgw_session_tick(h.s, 3500), 1);
  h_pump(&h);
  H_EXPECT(&h, "421 4.4.2");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  h_free(&h);
}

Test(limits, no_timer_while_deciding) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_COMMAND_TIMEOUT_MS, 1000);
  h_policy(&h, MXGW_EV_MAIL, H_DEFER, 0, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_MAIL);
  cr_assert_eq(mxgw_session_deadline(h.s), -1);
  cr_assert_eq(mxgw_session_tick(h.s, h.now + 1000000), 0);
  h_pump(&h);
  H_EXPECT_NONE(&h);
  h.now += 1000000;
  h_accept(&h);
  H_EXPECT(&h, "250 2.1.0");
  int64_t d = mxgw_session_deadline(h.s);
  cr_assert(d > 0, "timer not re-armed after the decision");
  h_free(&h);
}

Test(limits, no_timer_before_greeting_decision) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_CONNECT, H_DEFER, 0, NULL, NULL);
  h_start(&h);
  cr_assert_eq(mxgw_session_deadline(h.s), -1);
  cr_assert_eq(mxgw_session_tick(h.s, h.now + 10000000), 0);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                     */
/* ------------------------------------------------------------------------ */

static void http_case(const char *req, int after_ehlo) {
  harness h;
  h_init(&h);
  if (after_ehlo) {
    h_start_ehlo(&h);
  } else {
    h_start(&h);
    H_EXPECT(&h, "220 ");
  }
  h_send(&h, req);
  h_send(&h, "EHLO c.example\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r && h_reply_is(r, "421 4.7.0"), "%s -> %s", h_esc0(&h, req),
            h_esc0(&h, r));
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
  cr_assert_eq(h_count(&h, MXGW_EV_HELO), after_ehlo ? 1 : 0);
  h_free(&h);
}

Test(limits, http_requests) {
  static const char *reqs[] = {
      "GET / HTTP/1.0\r\n",
      "POST /submit HTTP/1.1\r\n",
      "HEAD / HTTP/1.1\r\n",
      "PUT /x HTTP/1.1\r\n",
      "CONNECT mx.example:25 HTTP/1.1\r\n",
      "Host: mx.example\r\n",
      "get / HTTP/1.0\r\n",
  };
  for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
    http_case(reqs[i], 0);
    http_case(reqs[i], 1);
  }
}

Test(limits, http_allowed_when_disabled) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_REJECT_HTTP, 0);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "GET / HTTP/1.0\r\nEHLO c.example\r\n");
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT(&h, "250");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  h_free(&h);
}

Test(limits, getter_not_mistaken_for_http) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  /* commands that merely start like HTTP verbs */
  h_send(&h, "GETX\r\nHOSTNAME\r\nNOOP\r\n");
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  h_free(&h);
}
