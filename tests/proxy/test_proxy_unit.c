/* SPDX-License-Identifier: MIT */
/*
 * test_proxy_unit.c: the sans-IO coupling of mxgw_proxy with an
 * mxgw_session, without sockets: SMTP client bytes go into the session,
 * the backend is scripted (its replies fed whole or byte by byte), and the
 * tests check the LMTP commands the proxy writes and the SMTP replies the
 * client gets: in-step RCPT answers, the end-of-data policy, dot-stuffing,
 * connect failure, EOF mid-data, timeout and sanitised reply texts.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <mxgw/mxgw.h>

typedef struct t {
  mxgw_session_config *cfg;
  mxgw_session *s;
  mxgw_proxy *p;
  int64_t now;
  char smtp[16384]; /* SMTP output so far */
  size_t smtp_len;
  char lmtp[65536]; /* backend output so far */
  size_t lmtp_len;
} t;

/* Run session events through the proxy, collect both outputs. */
static void pump(t *x) {
  for (int round = 0; round < 64; round++) {
    int ev, moved = 0;
    while ((ev = mxgw_session_next_event(x->s)) > 0) {
      moved = 1;
      int rc = mxgw_proxy_session_event(x->p, ev, x->now);
      cr_assert(rc >= 0, "proxy event %d: %d", ev, rc);
      if (rc == 0)
        cr_assert_eq(mxgw_session_accept(x->s), MXGW_OK);
    }
    const char *o;
    size_t n;
    while (mxgw_session_output(x->s, &o, &n) == 0 && n) {
      cr_assert(x->smtp_len + n < sizeof x->smtp);
      memcpy(x->smtp + x->smtp_len, o, n);
      x->smtp_len += n;
      x->smtp[x->smtp_len] = 0;
      mxgw_session_consume(x->s, n);
      moved = 1;
    }
    while (mxgw_proxy_backend_output(x->p, &o, &n) == 0 && n) {
      if (x->lmtp_len + n < sizeof x->lmtp) {
        memcpy(x->lmtp + x->lmtp_len, o, n);
        x->lmtp_len += n;
        x->lmtp[x->lmtp_len] = 0;
      }
      mxgw_proxy_backend_consume(x->p, n);
      moved = 1;
    }
    if (!moved)
      return;
  }
}

static void smtp(t *x, const char *s) {
  size_t len = strlen(s), off = 0;
  while (off < len) {
    int n = mxgw_session_feed(x->s, s + off, len - off, x->now);
    cr_assert(n >= 0, "feed: %d", n);
    off += (size_t)n;
    pump(x);
    if (n == 0 && off < len)
      cr_assert_fail("session stalled with %zu octets unread", len - off);
  }
  pump(x);
}

static void backend(t *x, const char *s, int bytewise) {
  size_t len = strlen(s);
  if (bytewise)
    for (size_t i = 0; i < len; i++) {
      cr_assert_eq(mxgw_proxy_backend_feed(x->p, s + i, 1, x->now), MXGW_OK);
      pump(x);
    }
  else
    cr_assert_eq(mxgw_proxy_backend_feed(x->p, s, len, x->now), MXGW_OK);
  pump(x);
}

/* The last complete SMTP reply line. */
static const char *last_reply(t *x) {
  static char line[1024];
  char *end = x->smtp + x->smtp_len;
  cr_assert(x->smtp_len >= 2 && end[-1] == '\n');
  char *st = end - 2;
  while (st > x->smtp && st[-1] != '\n')
    st--;
  snprintf(line, sizeof line, "%.*s", (int)(end - 2 - st), st);
  return line;
}

static void setup(t *x) {
  memset(x, 0, sizeof *x);
  x->now = 1000;
  cr_assert_eq(mxgw_session_config_new(&x->cfg, NULL), MXGW_OK);
  cr_assert_eq(mxgw_session_config_set_str(x->cfg, MXGW_OPT_HOSTNAME,
                                           "mx.example.test"), MXGW_OK);
  cr_assert_eq(mxgw_session_new(&x->s, x->cfg, NULL), MXGW_OK);
  cr_assert_eq(mxgw_session_set_peer(x->s, "192.0.2.1", 4711, NULL), MXGW_OK);
  cr_assert_eq(mxgw_proxy_new(&x->p, x->s, NULL), MXGW_OK);
  cr_assert_eq(mxgw_proxy_set_int(x->p, MXGW_PROXY_OPT_RECEIVED, 0), MXGW_OK);
  cr_assert_eq(mxgw_session_start(x->s, x->now), MXGW_OK);
  pump(x);
  smtp(x, "EHLO client.example\r\n");
}

static void teardown(t *x) {
  mxgw_proxy_free(x->p);
  mxgw_session_free(x->s);
  mxgw_session_config_free(x->cfg);
}

/* MAIL connects; greeting and LHLO (with XCLIENT offered). */
static void connect_backend(t *x, int bytewise) {
  smtp(x, "MAIL FROM:<s@origin.example>\r\n");
  cr_assert(mxgw_proxy_want(x->p) & MXGW_PROXY_WANT_CONNECT);
  cr_assert_eq(mxgw_proxy_backend_connected(x->p, x->now), MXGW_OK);
  backend(x, "220 store LMTP\r\n", bytewise);
  cr_assert_str_eq(x->lmtp, "LHLO localhost\r\n");
  backend(x, "250-store\r\n250-XCLIENT ADDR HELO\r\n250 8BITMIME\r\n",
          bytewise);
  cr_assert(strstr(x->lmtp, "XCLIENT ADDR=192.0.2.1 HELO=client.example\r\n"));
  backend(x, "220 store LMTP\r\n", bytewise);
  cr_assert(strstr(x->lmtp, "LHLO client.example\r\n"));
  backend(x, "250-store\r\n250 8BITMIME\r\n", bytewise);
  cr_assert(strstr(x->lmtp, "MAIL FROM:<s@origin.example>\r\n"));
  cr_assert_eq(mxgw_session_pending(x->s), MXGW_EV_MAIL,
               "MAIL answered before the backend");
  backend(x, "250 2.1.0 Ok\r\n", bytewise);
  cr_assert_str_eq(last_reply(x), "250 2.1.0 Ok");
}

static void txn_opt(int bytewise, const char *final, const char *want,
                    int partial) {
  t x;
  setup(&x);
  cr_assert_eq(mxgw_proxy_set_int(x.p, MXGW_PROXY_OPT_PARTIAL_5XX, partial),
               MXGW_OK);
  connect_backend(&x, bytewise);
  smtp(&x, "RCPT TO:<a@x.example>\r\n");
  backend(&x, "250 2.1.5 a ok\r\n", bytewise);
  cr_assert_str_eq(last_reply(&x), "250 2.1.5 a ok");
  smtp(&x, "RCPT TO:<nobody@x.example>\r\n");
  backend(&x, "550 5.1.1 <nobody@x.example> User doesn't exist\r\n",
          bytewise);
  cr_assert_str_eq(last_reply(&x),
                   "550 5.1.1 <nobody@x.example> User doesn't exist");
  smtp(&x, "RCPT TO:<b@x.example>\r\n");
  backend(&x, "250 2.1.5 b ok\r\n", bytewise);
  smtp(&x, "DATA\r\n");
  cr_assert(strstr(x.lmtp, "DATA\r\n"));
  backend(&x, "354 go\r\n", bytewise);
  cr_assert(strncmp(last_reply(&x), "354", 3) == 0);
  size_t before = x.lmtp_len;
  smtp(&x, "Subject: t\r\n\r\n..dot\r\nend\r\n.\r\n");
  cr_assert_str_eq(x.lmtp + before, "Subject: t\r\n\r\n..dot\r\nend\r\n.\r\n");
  cr_assert_eq(mxgw_session_pending(x.s), MXGW_EV_MESSAGE_END);
  backend(&x, final, bytewise);
  cr_assert_str_eq(last_reply(&x), want);
  teardown(&x);
}

static void txn(int bytewise, const char *final, const char *want) {
  txn_opt(bytewise, final, want, 0);
}

Test(proxy, all_delivered) {
  txn(0, "250 2.0.0 <a> Saved\r\n250 2.0.0 <b> Saved\r\n",
      "250 2.0.0 Ok: delivered to 2 recipients");
}
Test(proxy, all_delivered_bytewise) {
  txn(1, "250 2.0.0 <a> Saved\r\n250 2.0.0 <b> Saved\r\n",
      "250 2.0.0 Ok: delivered to 2 recipients");
}
Test(proxy, same_failure_passed_through) {
  txn(0, "452 4.2.2 quota\r\n452 4.2.2 quota\r\n", "452 4.2.2 quota");
}
Test(proxy, mixed_temporary_is_451) {
  txn(0, "250 2.0.0 ok\r\n451 4.3.0 later\r\n",
      "451 4.3.0 Not delivered to every recipient, try again later");
}
Test(proxy, mixed_5xx_is_451_by_default) {
  txn(1, "552 5.2.2 full\r\n250 2.0.0 ok\r\n",
      "451 4.3.0 Not delivered to every recipient, try again later");
}
Test(proxy, mixed_5xx_is_250_with_partial_option) {
  txn_opt(0, "552 5.2.2 full\r\n250 2.0.0 ok\r\n",
          "250 2.0.0 Ok: delivered to some recipients; others failed "
          "permanently", 1);
}
Test(proxy, mixed_4xx_stays_451_with_partial_option) {
  txn_opt(0, "452 4.2.2 full\r\n250 2.0.0 ok\r\n",
          "451 4.3.0 Not delivered to every recipient, try again later", 1);
}
Test(proxy, different_5xx_is_554) {
  txn(0, "552 5.2.2 full\r\n550 5.7.1 no\r\n", "554 5.0.0 full");
}

Test(proxy, connect_failure_is_451_at_mail) {
  t x;
  setup(&x);
  smtp(&x, "MAIL FROM:<s@origin.example>\r\n");
  cr_assert_eq(mxgw_proxy_backend_failed(x.p, "connect: refused", x.now),
               MXGW_OK);
  pump(&x);
  cr_assert(strncmp(last_reply(&x), "451 4.4.1 ", 10) == 0, "%s",
            last_reply(&x));
  cr_assert_eq(mxgw_proxy_want(x.p), 0);
  teardown(&x);
}

Test(proxy, eof_mid_data_is_never_250) {
  t x;
  setup(&x);
  connect_backend(&x, 0);
  smtp(&x, "RCPT TO:<a@x.example>\r\n");
  backend(&x, "250 2.1.5 ok\r\n", 0);
  smtp(&x, "DATA\r\n");
  backend(&x, "354 go\r\n", 0);
  smtp(&x, "Subject: t\r\n\r\npart\r\n");
  cr_assert_eq(mxgw_proxy_backend_eof(x.p, x.now), MXGW_OK);
  pump(&x);
  cr_assert(mxgw_proxy_want(x.p) & MXGW_PROXY_WANT_CLOSE);
  smtp(&x, "more\r\n.\r\n");
  cr_assert(strncmp(last_reply(&x), "451 4.4.2 ", 10) == 0, "%s",
            last_reply(&x));
  teardown(&x);
}

Test(proxy, timeout_after_dot) {
  t x;
  setup(&x);
  cr_assert_eq(mxgw_proxy_set_int(x.p, MXGW_PROXY_OPT_DATA_TIMEOUT_MS, 5000),
               MXGW_OK);
  connect_backend(&x, 0);
  smtp(&x, "RCPT TO:<a@x.example>\r\n");
  backend(&x, "250 2.1.5 ok\r\n", 0);
  smtp(&x, "DATA\r\n");
  backend(&x, "354 go\r\n", 0);
  smtp(&x, "x\r\n.\r\n");
  int64_t d = mxgw_proxy_deadline(x.p);
  cr_assert_eq(d, x.now + 5000);
  cr_assert_eq(mxgw_proxy_tick(x.p, d - 1), 0);
  cr_assert_eq(mxgw_proxy_tick(x.p, d), 1);
  pump(&x);
  cr_assert(strncmp(last_reply(&x), "451 4.4.2 ", 10) == 0, "%s",
            last_reply(&x));
  teardown(&x);
}

Test(proxy, reply_text_sanitised) {
  t x;
  setup(&x);
  connect_backend(&x, 0);
  smtp(&x, "RCPT TO:<a@x.example>\r\n");
  backend(&x, "550-5.1.1 first \x01line\r\n550 5.1.1 second\x7f\r\n", 0);
  cr_assert(strstr(x.smtp, "550-5.1.1 first ?line\r\n550 5.1.1 second?\r\n"),
            "%s", x.smtp);
  teardown(&x);
}

Test(proxy, rset_is_passed_on) {
  t x;
  setup(&x);
  connect_backend(&x, 0);
  smtp(&x, "RSET\r\n");
  cr_assert(strstr(x.lmtp, "RSET\r\n"));
  backend(&x, "250 2.0.0 ok\r\n", 0);
  size_t before = x.lmtp_len;
  smtp(&x, "MAIL FROM:<t@origin.example>\r\n");
  cr_assert_str_eq(x.lmtp + before, "MAIL FROM:<t@origin.example>\r\n");
  cr_assert_eq(mxgw_proxy_want(x.p) & MXGW_PROXY_WANT_CONNECT, 0);
  teardown(&x);
}

Test(proxy, bdat_client_relayed_as_data) {
  t x;
  setup(&x);
  connect_backend(&x, 0);
  smtp(&x, "RCPT TO:<a@x.example>\r\n");
  backend(&x, "250 2.1.5 ok\r\n", 0);
  smtp(&x, "BDAT 12 LAST\r\n.dot\r\nline\r\n");
  cr_assert(strstr(x.lmtp, "DATA\r\n"));
  size_t before = x.lmtp_len;
  backend(&x, "354 go\r\n", 0);
  pump(&x);
  cr_assert_str_eq(x.lmtp + before, "..dot\r\nline\r\n.\r\n");
  backend(&x, "250 2.0.0 saved\r\n", 0);
  cr_assert_str_eq(last_reply(&x), "250 2.0.0 Ok: delivered to 1 recipient");
  teardown(&x);
}
