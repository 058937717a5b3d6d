/* SPDX-License-Identifier: MIT */
/*
 * test_paths.c: unit tests of MAIL and RCPT: their ESMTP parameters (SIZE,
 * BODY, SMTPUTF8, RET, ENVID, AUTH=, NOTIFY, ORCPT; unknown, duplicate and
 * malformed ones), the recipient limit, and the RFC 5321 path syntax:
 * quoted local parts, the null path, source routes, domain literals, UTF-8
 * addresses with and without SMTPUTF8, and length limits, with the exact
 * reply and enhanced code for each error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(paths, .timeout = 30);

/* A session after EHLO with a generous error budget. */
static void setup(harness *h) {
  h_set(h, MXGW_OPT_MAX_ERRORS, 1000);
  h_set(h, MXGW_OPT_MAX_UNKNOWN_COMMANDS, 1000);
  h_start_ehlo(h);
}

/* Send "MAIL FROM:<args>", expect the reply; if it was accepted, check the
 * reverse path and reset. */
static void mail_expect(harness *h, const char *args, const char *prefix,
                        const char *want_from) {
  h_buf cmd = {0};
  h_buf_addf(&cmd, "MAIL FROM:%s\r\n", args);
  int before = h_count(h, MXGW_EV_MAIL);
  h_sendn(h, cmd.p, cmd.len);
  const char *r = h_pop_reply(h);
  cr_assert(r != NULL, "no reply to %s", h_esc(h, cmd.p, cmd.len));
  cr_assert(h_reply_is(r, prefix), "%s -> %s, want %s",
            h_esc(h, cmd.p, cmd.len), h_esc0(h, r), prefix);
  if (prefix[0] == '2') {
    cr_assert_eq(h_count(h, MXGW_EV_MAIL), before + 1);
    if (want_from) {
      char *f = h_get_str(h, MXGW_INFO_MAIL_FROM);
      cr_assert(f != NULL, "MAIL_FROM not set after %s", cmd.p);
      cr_assert_str_eq(f, want_from, "reverse path of %s", cmd.p);
      free(f);
    }
    h_send(h, "RSET\r\n");
    H_EXPECT(h, "250 2.0.0");
  } else {
    cr_assert_eq(h_count(h, MXGW_EV_MAIL), before,
                 "a refused MAIL reached the application: %s", cmd.p);
  }
  h_buf_free(&cmd);
}

/* With a transaction open, send "RCPT TO:<args>" and expect the reply. */
static void rcpt_expect(harness *h, const char *args, const char *prefix,
                        const char *want_rcpt) {
  h_buf cmd = {0};
  h_buf_addf(&cmd, "RCPT TO:%s\r\n", args);
  int before = h_count(h, MXGW_EV_RCPT);
  h_sendn(h, cmd.p, cmd.len);
  const char *r = h_pop_reply(h);
  cr_assert(r != NULL, "no reply to %s", h_esc(h, cmd.p, cmd.len));
  cr_assert(h_reply_is(r, prefix), "%s -> %s, want %s",
            h_esc(h, cmd.p, cmd.len), h_esc0(h, r), prefix);
  if (prefix[0] == '2') {
    cr_assert_eq(h_count(h, MXGW_EV_RCPT), before + 1);
    if (want_rcpt)
      cr_assert_str_eq(h_nth(h, MXGW_EV_RCPT, before)->str, want_rcpt);
  } else {
    cr_assert_eq(h_count(h, MXGW_EV_RCPT), before,
                 "a refused RCPT reached the application: %s", cmd.p);
  }
  h_buf_free(&cmd);
}

static void open_mail(harness *h, const char *args) {
  h_buf cmd = {0};
  h_buf_addf(&cmd, "MAIL FROM:%s\r\n", args);
  h_sendn(h, cmd.p, cmd.len);
  h_buf_free(&cmd);
  H_EXPECT(h, "250 2.1.0");
}

/* ------------------------------------------------------------------------ */
/* MAIL parameters                                                          */
/* ------------------------------------------------------------------------ */

Test(paths, mail_size_param) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 1000);
  setup(&h);
  h_send(&h, "MAIL FROM:<a@example.org> SIZE=1000\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_SIZE), 1000);
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_SIZE), -1, "SIZE not given: -1");
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  mail_expect(&h, "<a@example.org> SIZE=1001", "552 5.3.4", NULL);
  mail_expect(&h, "<a@example.org> size=5000000", "552 5.3.4", NULL);
  mail_expect(&h, "<a@example.org> SIZE=abc", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> SIZE=", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> SIZE=-5", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> SIZE=0", "250 2.1.0", "a@example.org");
  h_free(&h);
}

Test(paths, mail_size_huge_number) {
  harness h;
  h_init(&h);
  setup(&h);
  h_send(&h, "MAIL FROM:<a@example.org> SIZE=99999999999999999999999999\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert(h_reply_is(r, "552 5.3.4") || h_reply_is(r, "501 5.5.4"),
            "an overflowing SIZE must be refused: %s", h_esc0(&h, r));
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_free(&h);
}

Test(paths, mail_size_unlimited) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 0);
  setup(&h);
  mail_expect(&h, "<a@example.org> SIZE=999999999", "250 2.1.0", NULL);
  h_free(&h);
}

Test(paths, mail_body_param) {
  harness h;
  h_init(&h);
  setup(&h);
  h_send(&h, "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n");
  H_EXPECT(&h, "250 2.1.0");
  char *b = h_get_str(&h, MXGW_INFO_BODY);
  cr_assert(b != NULL);
  cr_assert_str_eq(b, "8BITMIME");
  free(b);
  h_send(&h, "RSET\r\nMAIL FROM:<a@example.org> body=7bit\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.1.0");
  b = h_get_str(&h, MXGW_INFO_BODY);
  cr_assert(b != NULL);
  cr_assert_str_eq(b, "7BIT");
  free(b);
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  mail_expect(&h, "<a@example.org> BODY=BINARYMIME", "555 5.5.4", NULL);
  h_free(&h);
}

Test(paths, mail_body_8bitmime_off) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_8BITMIME, 0);
  setup(&h);
  mail_expect(&h, "<a@example.org> BODY=8BITMIME", "555 5.5.4", NULL);
  h_free(&h);
}

Test(paths, mail_smtputf8_param) {
  harness h;
  h_init(&h);
  setup(&h);
  h_send(&h, "MAIL FROM:<a@example.org> SMTPUTF8\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_SMTPUTF8), 1);
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  mail_expect(&h, "<a@example.org> SMTPUTF8=yes", "501 5.5.4", NULL);
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_SMTPUTF8), 0);
  h_free(&h);
}

Test(paths, mail_smtputf8_off) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_SMTPUTF8, 0);
  setup(&h);
  mail_expect(&h, "<a@example.org> SMTPUTF8", "555 5.5.4", NULL);
  mail_expect(&h, "<j\xc3\xb6rg@example.org> SMTPUTF8", "555 5.5.4", NULL);
  mail_expect(&h, "<j\xc3\xb6rg@example.org>", "553 5.6.7", NULL);
  h_free(&h);
}

Test(paths, mail_dsn_params) {
  harness h;
  h_init(&h);
  setup(&h);
  h_send(&h, "MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159+2Bx+3Dy\r\n");
  H_EXPECT(&h, "250 2.1.0");
  char *ret = h_get_str(&h, MXGW_INFO_RET);
  char *envid = h_get_str(&h, MXGW_INFO_ENVID);
  cr_assert(ret && envid);
  cr_assert_str_eq(ret, "HDRS");
  cr_assert_str_eq(envid, "QQ314159+x=y", "ENVID must be xtext-decoded");
  free(ret);
  free(envid);
  h_send(&h, "RSET\r\nMAIL FROM:<a@example.org> ret=full\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.1.0");
  ret = h_get_str(&h, MXGW_INFO_RET);
  cr_assert(ret != NULL);
  cr_assert_str_eq(ret, "FULL");
  free(ret);
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  mail_expect(&h, "<a@example.org> RET=SOME", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> ENVID=bad+zz", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> ENVID=bad+2", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> ENVID=a=b", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> ENVID=", "501 5.5.4", NULL);
  h_free(&h);
}

Test(paths, mail_dsn_off) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_DSN, 0);
  setup(&h);
  mail_expect(&h, "<a@example.org> RET=FULL", "555 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> ENVID=x", "555 5.5.4", NULL);
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "<b@example.net> NOTIFY=NEVER", "555 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> ORCPT=rfc822;b@example.net", "555 5.5.4",
              NULL);
  h_free(&h);
}

Test(paths, mail_auth_param) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  setup(&h);
  h_send(&h, "MAIL FROM:<a@example.org> AUTH=<>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  char *a = h_get_str(&h, MXGW_INFO_MAIL_AUTH);
  cr_assert(a != NULL);
  cr_assert_str_eq(a, "<>");
  free(a);
  h_send(&h, "RSET\r\nMAIL FROM:<a@example.org> AUTH=user+40example.org\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.1.0");
  a = h_get_str(&h, MXGW_INFO_MAIL_AUTH);
  cr_assert(a != NULL);
  cr_assert_str_eq(a, "user@example.org");
  free(a);
  h_free(&h);
}

Test(paths, mail_unknown_and_duplicate_params) {
  harness h;
  h_init(&h);
  setup(&h);
  mail_expect(&h, "<a@example.org> FOO=bar", "555 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> XFOO", "555 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> SIZE=1 SIZE=2", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> size=1 SIZE=1", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> BODY=7BIT BODY=8BITMIME", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> SMTPUTF8 SMTPUTF8", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> RET=FULL RET=HDRS", "501 5.5.4", NULL);
  mail_expect(&h, "<a@example.org> ENVID=a ENVID=b", "501 5.5.4", NULL);
  /* all known parameters together are fine */
  mail_expect(&h,
              "<a@example.org> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x",
              "250 2.1.0", "a@example.org");
  h_free(&h);
}

Test(paths, mail_syntax_keyword) {
  harness h;
  h_init(&h);
  setup(&h);
  h_send(&h, "MAIL\r\n");
  H_EXPECT(&h, "501 5.5.4");
  h_send(&h, "MAIL TO:<a@example.org>\r\n");
  H_EXPECT(&h, "501 5.5.4");
  h_send(&h, "MAIL FROM\r\n");
  H_EXPECT(&h, "501 5.5.4");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* RCPT parameters and limits                                               */
/* ------------------------------------------------------------------------ */

static void notify_hook(harness *h, int ev) {
  if (ev == MXGW_EV_RCPT) {
    h_buf *b = h->user;
    char *n = h_get_str(h, MXGW_INFO_NOTIFY);
    char *o = h_get_str(h, MXGW_INFO_ORCPT);
    h_buf_addf(b, "[%s|%s]", n ? n : "-", o ? o : "-");
    free(n);
    free(o);
  }
}

Test(paths, rcpt_notify_orcpt) {
  harness h;
  h_buf seen = {0};
  h_init(&h);
  h.hook = notify_hook;
  h.user = &seen;
  setup(&h);
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "<b@example.net> NOTIFY=SUCCESS,DELAY", "250 2.1.5",
              "b@example.net");
  rcpt_expect(&h, "<c@example.net> NOTIFY=NEVER ORCPT=rfc822;c+40example.net",
              "250 2.1.5", "c@example.net");
  rcpt_expect(&h, "<d@example.net> notify=failure", "250 2.1.5",
              "d@example.net");
  rcpt_expect(&h, "<e@example.net>", "250 2.1.5", "e@example.net");
  cr_assert_str_eq(h_buf_str(&seen),
                   "[SUCCESS,DELAY|-][NEVER|rfc822;c@example.net]"
                   "[failure|-][-|-]");
  static const int64_t flags[] = {MXGW_NOTIFY_SUCCESS | MXGW_NOTIFY_DELAY,
                                  MXGW_NOTIFY_NEVER, MXGW_NOTIFY_FAILURE, 0};
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 4);
  for (size_t i = 0; i < 4; i++) {
    int64_t v = -1;
    H_OK(mxgw_session_rcpt_get_int(h.s, i, MXGW_INFO_NOTIFY_FLAGS, &v));
    cr_assert_eq(v, flags[i], "recipient %zu NOTIFY flags %lld", i,
                 (long long)v);
  }
  const char *p;
  size_t n;
  H_OK(mxgw_session_rcpt_get_str(h.s, 1, MXGW_INFO_ORCPT, &p, &n));
  cr_assert(n == 20 && memcmp(p, "rfc822;c@example.net", n) == 0,
            "ORCPT of recipient 1: %s", h_esc(&h, p, n));
  H_OK(mxgw_session_rcpt_get_str(h.s, 2, MXGW_INFO_RCPT, &p, &n));
  cr_assert(n == 13 && memcmp(p, "d@example.net", n) == 0);
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_rcpt_get_str(h.s, 3, MXGW_INFO_NOTIFY, &p, &n));
  H_RET(MXGW_E_NOTFOUND,
        mxgw_session_rcpt_get_str(h.s, 0, MXGW_INFO_ORCPT, &p, &n));
  h_buf_free(&seen);
  h_free(&h);
}

Test(paths, rcpt_bad_dsn_params) {
  harness h;
  h_init(&h);
  setup(&h);
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "<b@example.net> NOTIFY=NEVER,SUCCESS", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> NOTIFY=FAILURE,NEVER", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> NOTIFY=BOGUS", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> NOTIFY=", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> NOTIFY=SUCCESS,", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4",
              NULL);
  rcpt_expect(&h, "<b@example.net> ORCPT=nosemicolon", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> ORCPT=rfc822;bad+zz", "501 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> FOO=1", "555 5.5.4", NULL);
  rcpt_expect(&h, "<b@example.net> SIZE=10", "555 5.5.4", NULL);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 0);
  h_free(&h);
}

Test(paths, rcpt_postmaster) {
  harness h;
  h_init(&h);
  setup(&h);
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "<Postmaster>", "250 2.1.5", "Postmaster");
  rcpt_expect(&h, "<postmaster>", "250 2.1.5", "postmaster");
  rcpt_expect(&h, "<POSTMASTER>", "250 2.1.5", "POSTMASTER");
  rcpt_expect(&h, "<webmaster>", "501 5.1.3", NULL);
  h_free(&h);
}

Test(paths, rcpt_null_path_refused) {
  harness h;
  h_init(&h);
  setup(&h);
  open_mail(&h, "<>");
  char *f = h_get_str(&h, MXGW_INFO_MAIL_FROM);
  cr_assert(f != NULL, "MAIL_FROM must be \"\" for <>");
  cr_assert_str_eq(f, "");
  free(f);
  rcpt_expect(&h, "<>", "501 5.1.3", NULL);
  rcpt_expect(&h, "<b@example.net>", "250 2.1.5", "b@example.net");
  h_free(&h);
}

Test(paths, recipient_limit) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_RECIPIENTS, 2);
  /* a recipient refused by the application does not count */
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 550, "5.1.1", "unknown");
  setup(&h);
  open_mail(&h, "<a@example.org>");
  h_send(&h, "RCPT TO:<x@example.net>\r\n");
  H_EXPECT(&h, "550 5.1.1 unknown\r\n");
  rcpt_expect(&h, "<b@example.net>", "250 2.1.5", "b@example.net");
  rcpt_expect(&h, "<c@example.net>", "250 2.1.5", "c@example.net");
  int before = h_count(&h, MXGW_EV_RCPT);
  h_send(&h, "RCPT TO:<d@example.net>\r\n");
  H_EXPECT(&h, "452 4.5.3");
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), before,
               "the recipient past the limit reached the application");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_RCPT_COUNT), 2);
  /* the message can still be sent to the two */
  h_send(&h, "DATA\r\nx\r\n.\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  /* a new transaction starts counting again */
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "<e@example.net>", "250 2.1.5", "e@example.net");
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Path syntax                                                              */
/* ------------------------------------------------------------------------ */

struct path_row {
  const char *path;
  const char *value; /* expected reverse/forward path, NULL: don't check */
};

static const struct path_row valid_paths[] = {
    {"<user@example.org>", "user@example.org"},
    {"<first.last+tag@sub.example.org>", "first.last+tag@sub.example.org"},
    {"<!#$%&'*+-/=?^_`{|}~@example.org>", "!#$%&'*+-/=?^_`{|}~@example.org"},
    {"<\"john doe\"@example.org>", "\"john doe\"@example.org"},
    {"<\"a\\\"b\"@example.org>", "\"a\\\"b\"@example.org"},
    {"<\"a\\\\b\"@example.org>", "\"a\\\\b\"@example.org"},
    {"<\"\"@example.org>", NULL},
    {"<user@x-1.example>", "user@x-1.example"},
    {"<user@[192.0.2.1]>", "user@[192.0.2.1]"},
    {"<user@[IPv6:2001:db8::1]>", "user@[IPv6:2001:db8::1]"},
    {"<user@[IPv6:::1]>", "user@[IPv6:::1]"},
    {"<user@[IPv6:2001:db8:0:0:0:0:0:1]>", "user@[IPv6:2001:db8:0:0:0:0:0:1]"},
    {"<user@[IPv6:::ffff:192.0.2.1]>", "user@[IPv6:::ffff:192.0.2.1]"},
    {"<@a.example,@b.example:user@d.example>", "user@d.example"},
    {"<@a.example:user@d.example>", "user@d.example"},
    {"<USER@EXAMPLE.ORG>", "USER@EXAMPLE.ORG"},
};

static const char *invalid_paths[] = {
    "<user@>",
    "<@example.org>",
    "<user>",
    "<user@@example.org>",
    "<us er@example.org>",
    "<.user@example.org>",
    "<user.@example.org>",
    "<us..er@example.org>",
    "<user@example..org>",
    "<user@-example.org>",
    "<user@example-.org>",
    "<user@.example.org>",
    "<user@example.org.>",
    "<user@exa mple.org>",
    "<user@[192.0.2.256]>",
    "<user@[192.0.2]>",
    "<user@[192.0.2.1.5]>",
    "<user@[IPv6:2001:db8::zz]>",
    "<user@[IPv6:1:2:3:4:5:6:7:8:9]>",
    "<user@[IPv6:2001::db8::1]>",
    "<user@[192.0.2.1>",
    "<user@[]>",
    "<user@[foo]>",
    "<\"unterminated@example.org>",
    "<\"q\"x@example.org>",
    "<user@example.org",
    "<user@example.org>>",
    "<<user@example.org>",
    "<@:user@example.org>",
    "<@a.example,user@example.org>",
    "<user(comment)@example.org>",
    "<user@example.org\x01>",
};

Test(paths, valid_reverse_paths) {
  harness h;
  h_init(&h);
  setup(&h);
  for (size_t i = 0; i < sizeof valid_paths / sizeof valid_paths[0]; i++)
    mail_expect(&h, valid_paths[i].path, "250 2.1.0", valid_paths[i].value);
  mail_expect(&h, "<>", "250 2.1.0", "");
  h_free(&h);
}

Test(paths, valid_forward_paths) {
  harness h;
  h_init(&h);
  setup(&h);
  open_mail(&h, "<a@example.org>");
  for (size_t i = 0; i < sizeof valid_paths / sizeof valid_paths[0]; i++)
    rcpt_expect(&h, valid_paths[i].path, "250 2.1.5", valid_paths[i].value);
  h_free(&h);
}

Test(paths, invalid_reverse_paths) {
  harness h;
  h_init(&h);
  setup(&h);
  for (size_t i = 0; i < sizeof invalid_paths / sizeof invalid_paths[0]; i++)
    mail_expect(&h, invalid_paths[i], "501 5.1.7", NULL);
  h_free(&h);
}

Test(paths, invalid_forward_paths) {
  harness h;
  h_init(&h);
  setup(&h);
  open_mail(&h, "<a@example.org>");
  for (size_t i = 0; i < sizeof invalid_paths / sizeof invalid_paths[0]; i++)
    rcpt_expect(&h, invalid_paths[i], "501 5.1.3", NULL);
  h_free(&h);
}

/* RFC 5321 4.1.2: Reverse-path and Forward-path need the angle brackets. */
Test(paths, path_without_brackets) {
  harness h;
  h_init(&h);
  setup(&h);
  mail_expect(&h, "user@example.org", "501 5.1.7", NULL);
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "user@example.net", "501 5.1.3", NULL);
  h_free(&h);
}

Test(paths, length_limits) {
  harness h;
  h_init(&h);
  setup(&h);
  char lp64[80], lp65[80], path[512];
  memset(lp64, 'a', 64);
  lp64[64] = '\0';
  memset(lp65, 'b', 65);
  lp65[65] = '\0';
  /* local part of 64 octets is fine, 65 is not (RFC 5321 4.5.3.1.1) */
  snprintf(path, sizeof path, "<%s@example.org>", lp64);
  mail_expect(&h, path, "250 2.1.0", NULL);
  snprintf(path, sizeof path, "<%s@example.org>", lp65);
  mail_expect(&h, path, "501 5.1.7", NULL);
  /* domain of more than 255 octets (labels of 63) */
  char dom[400] = "";
  for (int i = 0; i < 5; i++) {
    size_t l = strlen(dom);
    memset(dom + l, 'c' + i, 63);
    dom[l + 63] = '.';
    dom[l + 64] = '\0';
  }
  strcat(dom, "org"); /* 5*64 + 3 = 323 octets */
  snprintf(path, sizeof path, "<u@%s>", dom);
  mail_expect(&h, path, "501 5.1.7", NULL);
  open_mail(&h, "<a@example.org>");
  snprintf(path, sizeof path, "<%s@example.net>", lp64);
  rcpt_expect(&h, path, "250 2.1.5", NULL);
  snprintf(path, sizeof path, "<%s@example.net>", lp65);
  rcpt_expect(&h, path, "501 5.1.3", NULL);
  snprintf(path, sizeof path, "<u@%s>", dom);
  rcpt_expect(&h, path, "501 5.1.3", NULL);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* UTF-8 addresses (RFC 6531)                                               */
/* ------------------------------------------------------------------------ */

Test(paths, utf8_sender_needs_smtputf8) {
  harness h;
  h_init(&h);
  setup(&h);
  mail_expect(&h, "<j\xc3\xb6rg@example.org>", "553 5.6.7", NULL);
  mail_expect(&h,
              "<user@b\xc3\xbc"
              "cher.example>",
              "553 5.6.7", NULL);
  mail_expect(&h, "<j\xc3\xb6rg@example.org> SMTPUTF8", "250 2.1.0",
              "j\xc3\xb6rg@example.org");
  mail_expect(&h,
              "<user@b\xc3\xbc"
              "cher.example> SMTPUTF8",
              "250 2.1.0",
              "user@b\xc3\xbc"
              "cher.example");
  h_free(&h);
}

Test(paths, utf8_recipient_needs_smtputf8_mail) {
  harness h;
  h_init(&h);
  setup(&h);
  open_mail(&h, "<a@example.org>");
  rcpt_expect(&h, "<\xe7\x94\xa8\xe6\x88\xb7@example.net>", "553 5.6.7", NULL);
  h_send(&h, "RSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  open_mail(&h, "<a@example.org> SMTPUTF8");
  rcpt_expect(&h, "<\xe7\x94\xa8\xe6\x88\xb7@example.net>", "250 2.1.5",
              "\xe7\x94\xa8\xe6\x88\xb7@example.net");
  rcpt_expect(&h, "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.example>",
              "250 2.1.5", NULL);
  h_free(&h);
}

Test(paths, invalid_utf8_refused) {
  harness h;
  h_init(&h);
  setup(&h);
  static const char *bad[] = {
      "<j\xffrg@example.org> SMTPUTF8",
      "<j\xc0\xafrg@example.org> SMTPUTF8",     /* overlong '/' */
      "<j\xc3rg@example.org> SMTPUTF8",         /* truncated sequence */
      "<j\xed\xa0\x80rg@example.org> SMTPUTF8", /* surrogate */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    h_buf cmd = {0};
    h_buf_addf(&cmd, "MAIL FROM:%s\r\n", bad[i]);
    h_sendn(&h, cmd.p, cmd.len);
    const char *r = h_pop_reply(&h);
    cr_assert(r != NULL);
    cr_assert(h_reply_is(r, "501 5.1.7") || h_reply_is(r, "553 5.6.7"),
              "%s -> %s", h_esc(&h, cmd.p, cmd.len), h_esc0(&h, r));
    h_buf_free(&cmd);
  }
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_free(&h);
}
