/* SPDX-License-Identifier: MIT */
/*
 * test_lmtp_unit.c: Criterion tests of the sans-IO LMTP client core, with
 * a scripted backend: server bytes are fed one byte at a time (and whole),
 * the client's output is compared byte for byte with what RFC 2033 / 2920 /
 * 3030 / 5321 say it must send, and per-recipient results are checked.
 * Also a table of reply-parser cases (white box, mxgw_lmtp_int.h).
 */
#include <criterion/criterion.h>
#include <mxgw/mxgw.h>
#include <string.h>

#include "mxgw_lmtp_int.h"

static mxgw_lmtp_config *cfg;
static mxgw_lmtp *c;
static int64_t now = 1000;
static int bytewise;

static void setup_with(int pipelining, int chunking) {
  cr_assert_eq(mxgw_lmtp_config_new(&cfg, NULL), 0);
  mxgw_lmtp_config_set_str(cfg, MXGW_LMTP_OPT_LHLO_NAME, "gw.test");
  mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_PIPELINING, pipelining);
  mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNKING, chunking);
  mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNK_SIZE, 512);
  mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS, 5000);
  cr_assert_eq(mxgw_lmtp_new(&c, cfg, NULL), 0);
  mxgw_lmtp_config_free(cfg); /* the client keeps its reference */
}
static void teardown(void) { mxgw_lmtp_free(c); }

static void feed(const char *s) {
  size_t n = strlen(s);
  if (bytewise) {
    for (size_t i = 0; i < n; i++)
      cr_assert_eq(mxgw_lmtp_feed(c, s + i, 1, now), 1);
  } else
    cr_assert_eq(mxgw_lmtp_feed(c, s, n, now), (int)n);
}

/* Take all output and compare. */
static void expect_out(const char *want) {
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_lmtp_output(c, &p, &n), 0);
  cr_assert_eq(n, strlen(want), "output %.*s\nwant %s", (int)n, p, want);
  cr_assert(memcmp(p, want, n) == 0, "output %.*s\nwant %s", (int)n, p, want);
  mxgw_lmtp_consume(c, n);
}

static int next_ev(void) { return mxgw_lmtp_next_event(c); }

static void result(size_t i, int code, const char *enh, int stage, int local) {
  int64_t v;
  const char *p;
  size_t n;
  mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_CODE, &v);
  cr_assert_eq(v, code, "rcpt %zu code %lld", i, (long long)v);
  mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_STAGE, &v);
  cr_assert_eq(v, stage, "rcpt %zu stage %lld", i, (long long)v);
  mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_LOCAL, &v);
  cr_assert_eq(v, local);
  cr_assert_eq(mxgw_lmtp_rcpt_get_str(c, i, MXGW_LMTP_R_ENH, &p, &n), 0);
  cr_assert(n == strlen(enh) && memcmp(p, enh, n) == 0, "enh %.*s", (int)n,
            p);
}

static const char lhlo_reply[] = "250-srv.test\r\n250-PIPELINING\r\n"
                                 "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                                 "250-CHUNKING\r\n250 SIZE 1000000\r\n";

static void greet(void) {
  cr_assert_eq(mxgw_lmtp_start(c, now), 0);
  expect_out("");
  feed("220 srv.test LMTP ready\r\n");
  expect_out("LHLO gw.test\r\n");
  feed(lhlo_reply);
  cr_assert_eq(next_ev(), MXGW_LMTP_EV_READY);
  int64_t ext;
  mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_EXTENSIONS, &ext);
  cr_assert_eq(ext, MXGW_LMTP_EXT_PIPELINING | MXGW_LMTP_EXT_SIZE |
                        MXGW_LMTP_EXT_8BITMIME | MXGW_LMTP_EXT_CHUNKING |
                        MXGW_LMTP_EXT_ENHANCEDSTATUSCODES);
}

static void push_body(const char *s) {
  size_t n = strlen(s), off = 0;
  while (off < n) {
    int k = mxgw_lmtp_body(c, s + off, bytewise ? 1 : n - off, now);
    cr_assert(k > 0);
    off += (size_t)k;
  }
}

static void pipelined_flow(void) {
  greet();
  cr_assert_eq(mxgw_lmtp_msg_new(c, "s@origin.test"), 0);
  mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_SIZE, 42);
  mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_8BITMIME, 1);
  cr_assert_eq(mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL), 0);
  cr_assert_eq(mxgw_lmtp_msg_add_rcpt(c, "b@x.test", 0, NULL), 1);
  cr_assert_eq(mxgw_lmtp_msg_add_rcpt(c, "c@x.test", 0, NULL), 2);
  cr_assert_eq(mxgw_lmtp_msg_submit(c, now), 0);
  /* RFC 2920: the whole envelope and DATA in one go */
  expect_out("MAIL FROM:<s@origin.test> SIZE=42 BODY=8BITMIME\r\n"
             "RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\n"
             "RCPT TO:<c@x.test>\r\nDATA\r\n");
  cr_assert(mxgw_lmtp_want(c) & MXGW_LMTP_WANT_BODY);
  /* body before the 354 is buffered, not sent */
  push_body("Subject: t\n\n.dot\r\nbare\rcr\r\n..two\nlast");
  expect_out("");
  feed("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 <b@x.test> unknown\r\n"
       "250 2.1.5 ok\r\n");
  int e1 = next_ev(), e2 = next_ev(), e3 = next_ev();
  cr_assert(e1 == MXGW_LMTP_EV_RCPT && e2 == e1 && e3 == e1);
  result(1, 550, "5.1.1", MXGW_LMTP_STAGE_RCPT, 0);
  feed("354 go\r\n");
  expect_out("Subject: t\r\n\r\n..dot\r\nbare\r\ncr\r\n...two\r\nlast");
  cr_assert_eq(mxgw_lmtp_body_end(c, now), 0);
  expect_out("\r\n.\r\n");
  /* RFC 2033 4.2: one reply per accepted recipient, in order */
  feed("250 2.0.0 <a@x.test> saved\r\n");
  cr_assert_eq(next_ev(), 0);
  feed("452 4.2.2 <c@x.test> over quota\r\n");
  cr_assert_eq(next_ev(), MXGW_LMTP_EV_DONE);
  cr_assert_eq(next_ev(), MXGW_LMTP_EV_READY);
  result(0, 250, "2.0.0", MXGW_LMTP_STAGE_DELIVERY, 0);
  result(1, 550, "5.1.1", MXGW_LMTP_STAGE_RCPT, 0);
  result(2, 452, "4.2.2", MXGW_LMTP_STAGE_DELIVERY, 0);
  const char *p;
  size_t n;
  mxgw_lmtp_rcpt_get_str(c, 2, MXGW_LMTP_R_TEXT, &p, &n);
  cr_assert(n == 21 && memcmp(p, "<c@x.test> over quota", 21) == 0);
  cr_assert_eq(mxgw_lmtp_quit(c), 0);
  expect_out("QUIT\r\n");
  feed("221 2.0.0 bye\r\n");
  cr_assert_eq(next_ev(), MXGW_LMTP_EV_CLOSED);
  cr_assert(mxgw_lmtp_want(c) & MXGW_LMTP_WANT_CLOSE);
}

static void setup_pipe(void) { setup_with(1, 0); }
static void setup_nopipe(void) { setup_with(0, 0); }
static void setup_chunk(void) { setup_with(1, 1); }

Test(lmtp, pipelined_whole, .init = setup_pipe, .fini = teardown) {
  bytewise = 0;
  pipelined_flow();
}

Test(lmtp, pipelined_byte_by_byte, .init = setup_pipe, .fini = teardown) {
  bytewise = 1;
  pipelined_flow();
}

Test(lmtp, without_pipelining_one_command_at_a_time, .init = setup_nopipe,
     .fini = teardown) {
  greet();
  mxgw_lmtp_msg_new(c, "");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_add_rcpt(c, "b@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  expect_out("MAIL FROM:<>\r\n");
  feed("250 2.1.0 ok\r\n");
  expect_out("RCPT TO:<a@x.test>\r\n");
  feed("550 5.1.1 no\r\n");
  expect_out("RCPT TO:<b@x.test>\r\n");
  feed("550 5.1.1 no\r\n");
  /* nobody accepted: no DATA, the message is done, RSET comes before the
   * next MAIL */
  expect_out("");
  while (next_ev() != MXGW_LMTP_EV_DONE)
    ;
  result(0, 550, "5.1.1", MXGW_LMTP_STAGE_RCPT, 0);
  result(1, 550, "5.1.1", MXGW_LMTP_STAGE_RCPT, 0);
  mxgw_lmtp_msg_new(c, "x@y.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  expect_out("RSET\r\nMAIL FROM:<x@y.test>\r\n");
}

Test(lmtp, bdat_framing, .init = setup_chunk, .fini = teardown) {
  greet();
  mxgw_lmtp_msg_new(c, "s@o.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  expect_out("MAIL FROM:<s@o.test>\r\nRCPT TO:<a@x.test>\r\n");
  feed("250 2.1.0 ok\r\n250 2.1.5 ok\r\n");
  char big[700];
  memset(big, 'x', sizeof big - 1);
  big[0] = '.'; /* no dot-stuffing with BDAT */
  big[sizeof big - 1] = '\0';
  push_body(big);
  /* a full 512-octet chunk goes out at once */
  const char *p;
  size_t n;
  mxgw_lmtp_output(c, &p, &n);
  cr_assert(n == 10 + 512 && memcmp(p, "BDAT 512\r\n.xx", 13) == 0);
  mxgw_lmtp_consume(c, n);
  mxgw_lmtp_body_end(c, now);
  mxgw_lmtp_output(c, &p, &n);
  cr_assert(n == 15 + 189, "%zu", n); /* 187 octets + the CRLF added */
  cr_assert(memcmp(p, "BDAT 189 LAST\r\n", 15) == 0);
  mxgw_lmtp_consume(c, n);
  feed("250 2.0.0 chunk ok\r\n250 2.0.0 <a@x.test> saved\r\n");
  while (next_ev() != MXGW_LMTP_EV_DONE)
    ;
  result(0, 250, "2.0.0", MXGW_LMTP_STAGE_DELIVERY, 0);
}

Test(lmtp, timeout_fails_temporarily, .init = setup_pipe, .fini = teardown) {
  greet();
  mxgw_lmtp_msg_new(c, "s@o.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  expect_out("MAIL FROM:<s@o.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
  int64_t d = mxgw_lmtp_deadline(c);
  cr_assert_eq(d, now + 5000);
  cr_assert_eq(mxgw_lmtp_tick(c, d - 1), 0);
  cr_assert_eq(mxgw_lmtp_tick(c, d), 1);
  result(0, 451, "4.4.2", MXGW_LMTP_STAGE_RCPT, 1);
  cr_assert_eq(next_ev(), MXGW_LMTP_EV_DONE);
  cr_assert_eq(next_ev(), MXGW_LMTP_EV_CLOSED);
}

Test(lmtp, eof_after_dot_keeps_given_results, .init = setup_pipe,
     .fini = teardown) {
  greet();
  mxgw_lmtp_msg_new(c, "s@o.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_add_rcpt(c, "b@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  feed("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  mxgw_lmtp_body(c, "hi\r\n", 4, now);
  mxgw_lmtp_body_end(c, now);
  feed("250 2.0.0 saved\r\n");
  mxgw_lmtp_eof(c, now);
  result(0, 250, "2.0.0", MXGW_LMTP_STAGE_DELIVERY, 0);
  result(1, 451, "4.4.2", MXGW_LMTP_STAGE_DELIVERY, 1);
}

Test(lmtp, bad_reply_closes, .init = setup_pipe, .fini = teardown) {
  greet();
  mxgw_lmtp_msg_new(c, "s@o.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  feed("250 ok\n");
  result(0, 451, "4.5.0", MXGW_LMTP_STAGE_RCPT, 1);
  cr_assert(mxgw_lmtp_want(c) & MXGW_LMTP_WANT_CLOSE);
}

Test(lmtp, abort_before_start, .init = setup_pipe, .fini = teardown) {
  mxgw_lmtp_msg_new(c, "s@o.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_submit(c, now);
  mxgw_lmtp_abort(c, NULL, "connect to 127.0.0.1:1: Connection refused", now);
  result(0, 451, "4.4.1", MXGW_LMTP_STAGE_CONNECT, 1);
}

/* ---- reply parser ---- */

struct pcase {
  const char *in;
  int rv; /* >0: consumed length; 0 incomplete; <0 error */
  int code;
  const char *enh;
  const char *text;
};

Test(lmtp, reply_parser_table) {
  static const struct pcase cases[] = {
      {"250 ok\r\n", 8, 250, "", "ok"},
      {"250\r\n", 5, 250, "", ""},
      {"250 2.1.5 ok\r\n", 14, 250, "2.1.5", "ok"},
      {"250 2.1.5\r\n", 11, 250, "2.1.5", ""},
      {"550 2.1.5 mismatch\r\n", 20, 550, "", "2.1.5 mismatch"},
      {"250-a\r\n250 b\r\nrest", 14, 250, "", "a\nb"},
      {"452-4.2.2 full\r\n452 4.2.2 really\r\n", 34, 452, "4.2.2",
       "full\nreally"},
      {"250-a\r\n", 0, 0, NULL, NULL},
      {"250 ok\r", 0, 0, NULL, NULL},
      {"25", 0, 0, NULL, NULL},
      {"250 ok\n", -1, 0, NULL, NULL},
      {"250 o\rk\r\n", -1, 0, NULL, NULL},
      {"250-a\r\n251 b\r\n", -1, 0, NULL, NULL},
      {"150 x\r\n", -1, 0, NULL, NULL},
      {"260 x\r\n", -1, 0, NULL, NULL},
      {"25x x\r\n", -1, 0, NULL, NULL},
      {"250x\r\n", -1, 0, NULL, NULL},
      {"25\r\n", -1, 0, NULL, NULL},
      {"250 a\0b\r\n", -1, 0, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct pcase *k = &cases[i];
    size_t n = strlen(k->in);
    if (i == sizeof cases / sizeof cases[0] - 1)
      n = 10; /* the NUL case */
    char text[256];
    size_t tl;
    mxgw__lmtp_reply r;
    int rv = mxgw__lmtp_reply_parse(k->in, n, &r, text, &tl);
    if (k->rv < 0) {
      cr_assert_eq(rv, MXGW_E_PROTOCOL, "case %zu: %d", i, rv);
      cr_assert(r.err != NULL);
      continue;
    }
    cr_assert_eq(rv, k->rv, "case %zu: %d", i, rv);
    if (rv == 0)
      continue;
    cr_assert_eq(r.code, k->code, "case %zu", i);
    cr_assert_str_eq(r.enh, k->enh, "case %zu", i);
    cr_assert(tl == strlen(k->text) && memcmp(text, k->text, tl) == 0,
              "case %zu: %.*s", i, (int)tl, text);
  }
  /* a line over the limit without CRLF is an error, not "need more" */
  static char longl[MXGW__LMTP_MAX_REPLY_LINE + 10];
  memset(longl, 'a', sizeof longl);
  memcpy(longl, "250 ", 4);
  char *text = malloc(sizeof longl);
  size_t tl;
  mxgw__lmtp_reply r;
  cr_assert_eq(mxgw__lmtp_reply_parse(longl, sizeof longl, &r, text, &tl),
               MXGW_E_PROTOCOL);
  free(text);
}

/* The DATA conversion against a byte-at-a-time reference: CRLF, bare CR
 * and bare LF all become CRLF; a '.' that starts a line is doubled; an
 * unterminated last line gets its CRLF; then ".\r\n". Random bodies rich in
 * dots and line ends, pushed in random pieces through a small body buffer
 * (4,096 octets, the minimum) so that mxgw_lmtp_body() often takes only
 * part of a piece, and the output taken as it comes. */
static uint32_t rnd_state = 2463534242u;
static uint32_t rnd(void) { /* xorshift32: the same bodies every run */
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 17;
  rnd_state ^= rnd_state << 5;
  return rnd_state;
}

static size_t ref_convert(const char *in, size_t n, char *out) {
  size_t o = 0;
  int bol = 1;
  for (size_t i = 0; i < n; i++) {
    char ch = in[i];
    if (ch == '\r' || ch == '\n') {
      if (ch == '\r' && i + 1 < n && in[i + 1] == '\n')
        i++;
      out[o++] = '\r';
      out[o++] = '\n';
      bol = 1;
      continue;
    }
    if (bol && ch == '.')
      out[o++] = '.';
    out[o++] = ch;
    bol = 0;
  }
  if (!bol) {
    out[o++] = '\r';
    out[o++] = '\n';
  }
  memcpy(out + o, ".\r\n", 3);
  return o + 3;
}

static void drain(char *got, size_t *gl, size_t cap) {
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_lmtp_output(c, &p, &n), 0);
  cr_assert_leq(*gl + n, cap);
  memcpy(got + *gl, p, n);
  *gl += n;
  mxgw_lmtp_consume(c, n);
}

Test(lmtp, data_conversion_matches_reference) {
  static const char alphabet[] = "ab.\r\n..\r\nx\n\r yz";
  enum { MAXB = 20000 };
  static char body[MAXB], want[3 * MAXB + 8], got[3 * MAXB + 8];
  for (int round = 0; round < 300; round++) {
    cr_assert_eq(mxgw_lmtp_config_new(&cfg, NULL), 0);
    mxgw_lmtp_config_set_str(cfg, MXGW_LMTP_OPT_LHLO_NAME, "gw.test");
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_PIPELINING, 1);
    cr_assert_eq(mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_BODY_BUFFER,
                                          4096), 0);
    cr_assert_eq(mxgw_lmtp_new(&c, cfg, NULL), 0);
    mxgw_lmtp_config_free(cfg);
    greet();
    cr_assert_eq(mxgw_lmtp_msg_new(c, "s@origin.test"), 0);
    cr_assert_eq(mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL), 0);
    cr_assert_eq(mxgw_lmtp_msg_submit(c, now), 0);
    expect_out("MAIL FROM:<s@origin.test>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
    feed("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n");
    cr_assert_eq(next_ev(), MXGW_LMTP_EV_RCPT);

    /* mostly long plain runs, sometimes dense with line ends and dots */
    size_t n = round < 4 ? (size_t)round : rnd() % MAXB;
    int dense = rnd() % 3 == 0;
    for (size_t i = 0; i < n; i++)
      body[i] = (dense || rnd() % 40 == 0)
                    ? alphabet[rnd() % (sizeof alphabet - 1)]
                    : (char)('A' + rnd() % 26);
    size_t wl = ref_convert(body, n, want), gl = 0, off = 0;
    int stalls = 0;
    while (off < n) {
      size_t piece = 1 + rnd() % (rnd() % 2 ? 9000 : 64);
      if (piece > n - off)
        piece = n - off;
      int k = mxgw_lmtp_body(c, body + off, piece, now);
      cr_assert_geq(k, 0, "round %d: mxgw_lmtp_body: %d", round, k);
      off += (size_t)k;
      stalls = k == 0 ? stalls + 1 : 0;
      cr_assert_lt(stalls, 3, "round %d: body stalls at %zu", round, off);
      drain(got, &gl, sizeof got);
    }
    cr_assert_eq(mxgw_lmtp_body_end(c, now), 0);
    drain(got, &gl, sizeof got);
    cr_assert_eq(gl, wl, "round %d (%zu octets in): %zu out, want %zu", round,
                 n, gl, wl);
    cr_assert(memcmp(got, want, wl) == 0, "round %d: output differs", round);
    mxgw_lmtp_free(c);
    c = NULL;
  }
}
