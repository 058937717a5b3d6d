/* SPDX-License-Identifier: MIT */
/*
 * test_data.c: unit tests of message transfer: DATA (354, dot-unstuffing,
 * BODY chunks that concatenate to the exact body whatever the input split,
 * size and text line limits, no valid recipients, arguments), BDAT (chunks,
 * LAST, zero-size LAST, octets that look like commands, BDAT without
 * recipients, DATA and BDAT mixed, limits), bare LF / bare CR under both
 * policies in commands and data, and the published SMTP smuggling
 * sequences, none of which may end a message or smuggle a second one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(data, .timeout = 60);

/* Feed a string one byte per feed() call. */
static void send_bytewise(harness *h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    h_sendn(h, s + i, 1);
}

/* ------------------------------------------------------------------------ */
/* DATA                                                                     */
/* ------------------------------------------------------------------------ */

Test(data, basic_message) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354 ");
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 1);
  H_EXPECT_NONE(&h);
  h_send(&h, "Subject: test\r\n\r\nHello world\r\n");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  h_send(&h, ".\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_str_eq(h_buf_str(&h.message),
                   "Subject: test\r\n\r\nHello world\r\n");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 1);
  /* BODY events come between DATA and MESSAGE_END */
  int id = h_find(&h, MXGW_EV_DATA, NULL, 0);
  int ib = h_find(&h, MXGW_EV_BODY, NULL, 0);
  int ie = h_find(&h, MXGW_EV_MESSAGE_END, NULL, 0);
  cr_assert(id >= 0 && ib > id && ie > ib);
  cr_assert_eq(h_find(&h, MXGW_EV_BODY, NULL, (size_t)ie), -1);
  /* a second transaction */
  h_send(&h, "MAIL FROM:<x@example.org>\r\nRCPT TO:<y@example.net>\r\n"
             "DATA\r\nsecond\r\n.\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_str_eq(h_buf_str(&h.message), "second\r\n");
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 2);
  h_free(&h);
}

Test(data, empty_message) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n.\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_str_eq(h_buf_str(&h.message), "");
  h_free(&h);
}

static const char stuffed[] = "..leading dot\r\n"
                              "...\r\n"
                              ".x\r\n"
                              "middle . dot\r\n"
                              "..\r\n"
                              "\r\n"
                              "end\r\n"
                              ".\r\n";
static const char unstuffed[] = ".leading dot\r\n"
                                "..\r\n"
                                "x\r\n"
                                "middle . dot\r\n"
                                ".\r\n"
                                "\r\n"
                                "end\r\n";

Test(data, dot_unstuffing) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  h_send(&h, stuffed);
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_str_eq(h_buf_str(&h.message), unstuffed, "body: %s",
                   h_esc0(&h, h_buf_str(&h.message)));
  h_free(&h);
}

Test(data, body_bytewise_equals_whole) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  send_bytewise(&h, stuffed, strlen(stuffed));
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_str_eq(h_buf_str(&h.message), unstuffed, "body: %s",
                   h_esc0(&h, h_buf_str(&h.message)));
  h_free(&h);
}

Test(data, body_every_split) {
  /* the whole dialogue split once at every offset */
  h_buf in = {0};
  h_buf_adds(&in, "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
                  "RCPT TO:<b@example.net>\r\nDATA\r\n");
  h_buf_adds(&in, stuffed);
  h_buf_adds(&in, "QUIT\r\n");
  for (size_t cut = 0; cut <= in.len; cut++) {
    harness h;
    h_init(&h);
    h_start(&h);
    h_sendn(&h, in.p, cut);
    h_sendn(&h, in.p + cut, in.len - cut);
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1, "split at %zu", cut);
    cr_assert_str_eq(h_buf_str(&h.message), unstuffed, "split at %zu: %s", cut,
                     h_esc0(&h, h_buf_str(&h.message)));
    cr_assert_eq(h_count_replies(&h, "221 2.0.0"), 1, "split at %zu", cut);
    h_free(&h);
  }
  h_buf_free(&in);
}

Test(data, large_body) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  h_buf body = {0};
  for (int i = 0; body.len < 1024 * 1024; i++)
    h_buf_addf(&body, "%s%07d abcdefghijklmnopqrstuvwxyz0123456789\r\n",
               (i % 7 == 0) ? "." : "", i);
  h_buf wire = {0};
  /* dot-stuff it */
  const char *p = body.p;
  while (*p) {
    if (*p == '.')
      h_buf_add(&wire, ".", 1);
    const char *e = strstr(p, "\r\n") + 2;
    h_buf_add(&wire, p, (size_t)(e - p));
    p = e;
  }
  h_buf_adds(&wire, ".\r\n");
  /* feed in odd-sized pieces */
  for (size_t off = 0; off < wire.len; off += 4093)
    h_sendn(&h, wire.p + off, wire.len - off < 4093 ? wire.len - off : 4093);
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h.message.len, body.len);
  cr_assert(memcmp(h.message.p, body.p, body.len) == 0);
  cr_assert_gt(h.body_chunks, 1, "a 1 MiB body in one chunk");
  h_buf_free(&body);
  h_buf_free(&wire);
  h_free(&h);
}

Test(data, size_limit_after_end) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 100);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  char line[60];
  memset(line, 'x', 48);
  strcpy(line + 48, "\r\n"); /* 50 octets */
  h_send(&h, line);
  h_send(&h, line);
  h_send(&h, line);  /* 150 > 100 */
  H_EXPECT_NONE(&h); /* the reply waits for the end of the data */
  h_send(&h, line);
  h_send(&h, ".\r\nNOOP\r\n");
  H_EXPECT(&h, "552 5.3.4");
  H_EXPECT(&h, "250 2.0.0"); /* NOOP: back in command mode */
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 0);
  h_free(&h);
}

Test(data, size_limit_exact_fits) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 100);
  h_start_txn(&h);
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  char line[60];
  memset(line, 'y', 48);
  strcpy(line + 48, "\r\n");
  h_send(&h, line);
  h_send(&h, line); /* exactly 100 */
  h_send(&h, ".\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h.message.len, 100);
  h_free(&h);
}

Test(data, text_line_limit) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  char ok[1100], bad[1100];
  memset(ok, 'a', 998);
  strcpy(ok + 998, "\r\n"); /* 1000 octets with CRLF: allowed */
  memset(bad, 'b', 999);
  strcpy(bad + 999, "\r\n"); /* 1001 */
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  h_send(&h, ok);
  h_send(&h, ".\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h.message.len, 1000);
  h_send(&h,
         "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  h_send(&h, bad);
  h_send(&h, "more\r\n");
  H_EXPECT_NONE(&h);
  h_send(&h, ".\r\nNOOP\r\n");
  H_EXPECT(&h, "554 5.6.0");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  h_free(&h);
}

Test(data, text_line_unlimited) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_TEXT_LINE, 0);
  h_start_txn(&h);
  h_buf line = {0};
  for (int i = 0; i < 5000; i++)
    h_buf_add(&line, "z", 1);
  h_buf_adds(&line, "\r\n");
  h_send(&h, "DATA\r\n");
  H_EXPECT(&h, "354");
  h_sendn(&h, line.p, line.len);
  h_send(&h, ".\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h.message.len, line.len);
  h_buf_free(&line);
  h_free(&h);
}

Test(data, no_valid_recipients) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_RCPT, H_REPLY, 550, "5.1.1", "unknown");
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\n"
             "DATA\r\nNOOP\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "550 5.1.1");
  H_EXPECT(&h, "554 5.5.1");
  H_EXPECT(&h, "250 2.0.0"); /* NOOP was a command */
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_BODY), 0);
  h_free(&h);
}

Test(data, no_rcpt_at_all) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nDATA\r\n");
  H_EXPECT(&h, "250 2.1.0");
  const char *r = h_pop_reply(&h);
  cr_assert(r && (h_reply_is(r, "503 5.5.1") || h_reply_is(r, "554 5.5.1")),
            "DATA without RCPT: %s", h_esc0(&h, r));
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
  h_free(&h);
}

Test(data, data_with_arguments) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA now\r\nNOOP\r\n");
  H_EXPECT(&h, "501 5.5.4");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
  /* the transaction is still open */
  h_send(&h, "DATA\r\nx\r\n.\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  h_free(&h);
}

Test(data, message_end_deferred_holds_pipeline) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_MESSAGE_END, H_DEFER, 0, NULL, NULL);
  h_start_txn(&h);
  h_send(&h, "DATA\r\nbody\r\n.\r\nMAIL FROM:<n@example.org>\r\n");
  H_EXPECT(&h, "354");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_MESSAGE_END);
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 1);
  h_accept(&h);
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.1.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 2);
  h_free(&h);
}

Test(data, data_decision_deferred_keeps_body_buffered) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_DATA, H_DEFER, 0, NULL, NULL);
  h_start_txn(&h);
  h_send(&h, "DATA\r\nQUIT\r\nRSET\r\n.\r\nNOOP\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_DATA);
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_BODY), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  h_accept(&h);
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_str_eq(h_buf_str(&h.message), "QUIT\r\nRSET\r\n");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  h_free(&h);
}

Test(data, bdat_decision_deferred_keeps_chunk_buffered) {
  harness h;
  h_init(&h);
  h_policy(&h, MXGW_EV_DATA, H_DEFER, 0, NULL, NULL);
  h_start_txn(&h);
  h_send(&h, "BDAT 6\r\nQUIT\r\nBDAT 0 LAST\r\n");
  cr_assert_eq(mxgw_session_pending(h.s), MXGW_EV_DATA);
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_BODY), 0);
  h_accept(&h);
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_str_eq(h_buf_str(&h.message), "QUIT\r\n");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  h_free(&h);
}

static void rcpt_count_hook(harness *h, int ev) {
  if (ev == MXGW_EV_DATA || ev == MXGW_EV_MESSAGE_END) {
    h_buf *b = h->user;
    h_buf_addf(b, "%d:%lld:%lld ", ev,
               (long long)h_get_int(h, MXGW_INFO_RCPT_COUNT),
               (long long)h_get_int(h, MXGW_INFO_BDAT));
  }
}

Test(data, info_at_data_and_end) {
  harness h;
  h_buf seen = {0};
  h_init(&h);
  h.hook = rcpt_count_hook;
  h.user = &seen;
  h_start_ehlo(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "RCPT TO:<c@example.net>\r\nDATA\r\nx\r\n.\r\n"
             "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "BDAT 3 LAST\r\nabc");
  cr_assert_str_eq(h_buf_str(&seen), "7:2:0 9:2:0 7:1:1 9:1:1 ");
  h_buf_free(&seen);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* BDAT                                                                     */
/* ------------------------------------------------------------------------ */

Test(data, bdat_chunks) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "BDAT 5\r\nhello");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  h_send(&h, "BDAT 8\r\n world\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 1, "DATA only for the first BDAT");
  h_send(&h, "BDAT 10 LAST\r\n.\r\n..end\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  /* no dot-unstuffing in BDAT */
  cr_assert_str_eq(h_buf_str(&h.message), "hello world\r\n.\r\n..end\r\n",
                   "body %s", h_esc0(&h, h_buf_str(&h.message)));
  cr_assert_eq(h_get_int(&h, MXGW_INFO_MESSAGES), 1);
  h_free(&h);
}

/* BDAT content is not changed, but without BINARYMIME it must be CRLF
 * lines: under MXGW_BARE_REJECT (the default) a bare LF or CR anywhere,
 * also a CR ending one chunk and followed by something else than LF in
 * the next, or a CR that ends the message, fails it with 550 5.5.2 at the
 * end of the chunk where it is seen (later BDATs get 503, as after a size
 * failure). A CR LF split across two chunks is fine. MXGW_BARE_NORMALIZE
 * passes the octets on unchanged (the LMTP client and proxy mode make the
 * lines CRLF). `bad` 1: seen in chunk 1, 2: in chunk 2. */
static void bdat_bare_run(int policy, const char *c1, size_t n1,
                          const char *c2, size_t n2, int bad) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_BARE_NEWLINE, policy);
  h_start_txn(&h);
  h_buf in = {0};
  char hdr[64];
  snprintf(hdr, sizeof hdr, "BDAT %zu\r\n", n1);
  h_buf_adds(&in, hdr);
  h_buf_add(&in, c1, n1);
  snprintf(hdr, sizeof hdr, "BDAT %zu LAST\r\n", n2);
  h_buf_adds(&in, hdr);
  h_buf_add(&in, c2, n2);
  h_sendn(&h, in.p, in.len);
  if (bad == 1 && policy == MXGW_BARE_REJECT) {
    H_EXPECT(&h, "550 5.5.2");
    H_EXPECT(&h, "503 5.5.1");
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
    h_buf_free(&in);
    h_free(&h);
    return;
  }
  H_EXPECT(&h, "250 2.0.0");
  const char *r = h_pop_reply(&h);
  if (bad && policy == MXGW_BARE_REJECT) {
    cr_assert(r && h_reply_is(r, "550 5.5.2"), "%.*s|%.*s: got %s", (int)n1,
              c1, (int)n2, c2, h_esc0(&h, r));
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  } else {
    cr_assert(r && h_reply_is(r, "250 2.0.0"), "got %s", h_esc0(&h, r));
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
    cr_assert_eq(h.message.len, n1 + n2);
    cr_assert(!memcmp(h.message.p, c1, n1) &&
              !memcmp(h.message.p + n1, c2, n2));
  }
  h_buf_free(&in);
  h_free(&h);
}

Test(data, bdat_bare_newlines) {
  static const struct {
    const char *c1, *c2;
    int bad;
  } rows[] = {
      {"a\r\nb", "\r\n", 0},          /* clean */
      {"a\r", "\nb\r\n", 0},          /* CR LF split across chunks */
      {"a\nb", "\r\n", 1},             /* bare LF */
      {"a\rb", "\r\n", 1},             /* bare CR */
      {"a\r", "b\r\n", 2},             /* CR, then not LF in the next */
      {"a\r\n", "b\r", 2},             /* ends in a CR */
      {"x\r\n", "\r.\r\nMAIL FROM:<e@x>\r\n", 2}, /* smuggling */
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
    for (int pol = 0; pol < 2; pol++)
      bdat_bare_run(pol ? MXGW_BARE_NORMALIZE : MXGW_BARE_REJECT, rows[i].c1,
                    strlen(rows[i].c1), rows[i].c2, strlen(rows[i].c2),
                    rows[i].bad);
}

Test(data, bdat_bytewise) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  static const char in[] =
      "BDAT 13\r\nQUIT\r\nabc\r\n\r\nBDAT 3 LAST\r\nxyzNOOP\r\n";
  send_bytewise(&h, in, strlen(in));
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_str_eq(h_buf_str(&h.message), "QUIT\r\nabc\r\n\r\nxyz");
  h_free(&h);
}

Test(data, bdat_zero_last) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "BDAT 4\r\nabcdBDAT 0 LAST\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_str_eq(h_buf_str(&h.message), "abcd");
  /* a message that is only BDAT 0 LAST */
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "BDAT 0 LAST\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 2);
  cr_assert_str_eq(h_buf_str(&h.message), "");
  h_free(&h);
}

Test(data, bdat_lookalike_commands_are_data) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  static const char payload[] =
      "QUIT\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n.\r\n";
  h_buf cmd = {0};
  h_buf_addf(&cmd, "BDAT %zu LAST\r\n", strlen(payload));
  h_buf_adds(&cmd, payload);
  h_sendn(&h, cmd.p, cmd.len);
  h_buf_free(&cmd);
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_RSET), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 1);
  cr_assert_str_eq(h_buf_str(&h.message), payload);
  h_send(&h, "NOOP\r\n");
  H_EXPECT(&h, "250 2.0.0");
  h_free(&h);
}

Test(data, bdat_without_rcpt_consumes_octets) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  /* no MAIL at all */
  h_send(&h, "BDAT 6\r\nQUIT\r\nNOOP\r\n");
  H_EXPECT(&h, "503 5.5.1");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0, "BDAT octets were executed");
  /* MAIL but no RCPT */
  h_send(&h, "MAIL FROM:<a@example.org>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "503 5.5.1");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0, "BDAT octets were executed");
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_BODY), 0);
  h_free(&h);
}

Test(data, bdat_rejected_at_data_consumes_octets) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_DATA, H_REPLY, 554, "5.7.1", "no");
  h_start_txn(&h);
  h_send(&h, "BDAT 6\r\nQUIT\r\nNOOP\r\n");
  H_EXPECT(&h, "554 5.7.1 no\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_CLOSE), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_BODY), 0);
  h_free(&h);
}

Test(data, data_and_bdat_mixed) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "BDAT 5\r\nhelloDATA\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "503 5.5.1");
  h_send(&h, "BDAT 0 LAST\r\n");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1);
  cr_assert_str_eq(h_buf_str(&h.message), "hello");
  /* the next message may use DATA */
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "DATA\r\nplain\r\n.\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_str_eq(h_buf_str(&h.message), "plain\r\n");
  h_free(&h);
}

/* A BDAT whose size cannot be read leaves the session unable to tell data
 * from commands: 501 5.5.4, then either the session goes on (and the next
 * command works) or it closes with 421; the bytes after it are never run as
 * a command in the closing case. */
Test(data, bdat_bad_arguments) {
  static const char *bad[] = {"BDAT\r\n",          "BDAT x\r\n",
                              "BDAT -1\r\n",       "BDAT 5 FIRST\r\n",
                              "BDAT 5 LAST x\r\n", "BDAT 5x\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    harness h;
    h_init(&h);
    h_start_txn(&h);
    h_send(&h, bad[i]);
    h_send(&h, "MAIL FROM:<z@example.org>\r\n");
    const char *r = h_pop_reply(&h);
    cr_assert(r && h_reply_is(r, "501 5.5.4"), "%s -> %s", h_esc0(&h, bad[i]),
              h_esc0(&h, r));
    r = h_pop_reply(&h);
    cr_assert(r != NULL, "%s: nothing after the 501", h_esc0(&h, bad[i]));
    if (h_reply_is(r, "421 4.")) {
      cr_assert_eq(h_last_event(&h), MXGW_EV_CLOSE);
      cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 1);
    } else {
      /* nested MAIL: the transaction is still open */
      cr_assert(h_reply_is(r, "503 5.5.1"), "%s then MAIL -> %s",
                h_esc0(&h, bad[i]), h_esc0(&h, r));
    }
    H_EXPECT_NONE(&h);
    cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
    h_free(&h);
  }
}

Test(data, bdat_chunking_off) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_CHUNKING, 0);
  h_start_txn(&h);
  h_send(&h, "BDAT 0 LAST\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r && r[0] == '5', "BDAT without CHUNKING: %s", h_esc0(&h, r));
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  h_free(&h);
}

Test(data, bdat_size_limit) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_MESSAGE_SIZE, 10);
  h_start_txn(&h);
  h_send(&h, "BDAT 6\r\n123456BDAT 6 LAST\r\n789012NOOP\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  if (h_reply_is(r, "250 2.0.0")) /* first chunk fits */
    r = h_pop_reply(&h);
  cr_assert(r && h_reply_is(r, "552 5.3.4"), "got %s", h_esc0(&h, r));
  H_EXPECT(&h, "250 2.0.0"); /* NOOP: the octets were consumed */
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  h_free(&h);
}

Test(data, bdat_no_text_line_limit) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_buf c = {0};
  h_buf_adds(&c, "BDAT 5002 LAST\r\n");
  for (int i = 0; i < 5000; i++)
    h_buf_add(&c, "q", 1);
  h_buf_adds(&c, "\r\n");
  h_sendn(&h, c.p, c.len);
  h_buf_free(&c);
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h.message.len, 5002);
  h_free(&h);
}

Test(data, bdat_rset_aborts) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "BDAT 5\r\nhelloRSET\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_RSET), 1);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  h_send(&h, "BDAT 1 LAST\r\nx");
  H_EXPECT(&h, "503 5.5.1");
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Bare LF / bare CR                                                        */
/* ------------------------------------------------------------------------ */

Test(data, bare_lf_command_reject) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "NOOP\nMAIL FROM:<x@example.org>\r\n");
  H_EXPECT(&h, "500 5.5.2");
  cr_assert_eq(h_count_replies(&h, "250 2.0.0"), 0,
               "a command ending in bare LF was executed");
  cr_assert(h_log_find(&h, MXGW_LOG_PROTOCOL, NULL) != NULL,
            "bare LF not logged");
  h_free(&h);
}

Test(data, bare_cr_command_reject) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  h_send(&h, "NO\rOP\r\n");
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT_NONE(&h);
  h_send(&h, "MAIL FROM:<a@example.org>\rRCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "500 5.5.2");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 0);
  h_free(&h);
}

Test(data, bare_newline_command_normalize) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_BARE_NEWLINE, MXGW_BARE_NORMALIZE);
  h_start(&h);
  H_EXPECT(&h, "220 ");
  h_send(&h, "EHLO c.example\nNOOP\rMAIL FROM:<a@example.org>\n"
             "RCPT TO:<b@example.net>\r\n");
  H_EXPECT(&h, "250");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT_NONE(&h);
  h_free(&h);
}

Test(data, bare_lf_data_reject) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\nline1\nline2\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT_NONE(&h);
  h_send(&h, ".\r\nNOOP\r\n");
  H_EXPECT(&h, "550 5.5.2");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  h_free(&h);
}

Test(data, bare_cr_data_reject) {
  harness h;
  h_init(&h);
  h_start_txn(&h);
  h_send(&h, "DATA\r\nline1\rline2\r\n.\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "550 5.5.2");
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0);
  cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1);
  h_free(&h);
}

Test(data, bare_newline_data_normalize) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_BARE_NEWLINE, MXGW_BARE_NORMALIZE);
  h_start_txn(&h);
  h_send(&h, "DATA\r\nline1\nline2\rline3\r\n.\r\n");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_str_eq(h_buf_str(&h.message), "line1\r\nline2\r\nline3\r\n",
                   "body %s", h_esc0(&h, h_buf_str(&h.message)));
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* SMTP smuggling                                                           */
/* ------------------------------------------------------------------------ */

struct smuggle_row {
  const char *name;
  const char *seq;
};

static const struct smuggle_row smuggles[] = {
    {"<LF>.<LF>", "\n.\n"},
    {"<LF>.<CRLF>", "\n.\r\n"},
    {"<CR>.<CR>", "\r.\r"},
    {"<CRLF>.<LF>", "\r\n.\n"},
    {"<CR><LF>.<CR>", "\r\n.\r"},
    {"<CR>.<CRLF>", "\r.\r\n"},
    {"<LF>.<CR>", "\n.\r"},
    {"<CR>.<LF>", "\r.\n"},
    {"<CRLF>.<CR><CRLF>", "\r\n.\r\r\n"},
    {"<LF>.<LF><CRLF>", "\n.\n\r\n"},
    {"<CRLF>.<LF><CRLF>", "\r\n.\n\r\n"},
};

static void smuggle_run(int policy, const struct smuggle_row *row,
                        int bytewise) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_BARE_NEWLINE, policy);
  h_start_txn(&h);
  h_buf in = {0};
  h_buf_adds(&in, "DATA\r\nSubject: test\r\n\r\nfirst message");
  h_buf_adds(&in, row->seq);
  h_buf_adds(&in, "MAIL FROM:<smuggled@evil.example>\r\n"
                  "RCPT TO:<victim@example.net>\r\n"
                  "DATA\r\n"
                  "Subject: smuggled\r\n\r\nsmuggled body\r\n"
                  ".\r\n"
                  "QUIT\r\n");
  if (bytewise)
    send_bytewise(&h, in.p, in.len);
  else
    h_sendn(&h, in.p, in.len);
  const char *ctx = row->name;
  H_EXPECT(&h, "354");
  if (policy == MXGW_BARE_REJECT) {
    const char *r = h_pop_reply(&h);
    cr_assert(r && h_reply_is(r, "550 5.5.2"), "%s (reject): got %s", ctx,
              h_esc0(&h, r));
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 0, "%s", ctx);
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_ABORT), 1, "%s", ctx);
  } else {
    const char *r = h_pop_reply(&h);
    cr_assert(r && h_reply_is(r, "250 2.0.0"), "%s (normalize): got %s", ctx,
              h_esc0(&h, r));
    cr_assert_eq(h_count(&h, MXGW_EV_MESSAGE_END), 1, "%s", ctx);
    /* the would-be second message is inside the first */
    cr_assert(strstr(h_buf_str(&h.message),
                     "MAIL FROM:<smuggled@evil.example>") != NULL,
              "%s: body %s", ctx, h_esc0(&h, h_buf_str(&h.message)));
    cr_assert(strstr(h_buf_str(&h.message), "smuggled body\r\n") != NULL);
    /* and its line endings are CRLF only */
    const char *b = h_buf_str(&h.message);
    for (size_t i = 0; i < h.message.len; i++) {
      if (b[i] == '\n')
        cr_assert(i > 0 && b[i - 1] == '\r', "%s: bare LF in body", ctx);
      if (b[i] == '\r')
        cr_assert(b[i + 1] == '\n', "%s: bare CR in body", ctx);
    }
  }
  H_EXPECT(&h, "221 2.0.0");
  H_EXPECT_NONE(&h);
  cr_assert_eq(h_count(&h, MXGW_EV_MAIL), 1, "%s: a second MAIL", ctx);
  cr_assert_eq(h_find(&h, MXGW_EV_MAIL, "smuggled@evil.example", 0), -1,
               "%s: smuggled MAIL reached the application", ctx);
  cr_assert_eq(h_count(&h, MXGW_EV_DATA), 1, "%s", ctx);
  cr_assert_eq(h_count(&h, MXGW_EV_RCPT), 1, "%s", ctx);
  h_buf_free(&in);
  h_free(&h);
}

Test(data, smuggling_reject) {
  for (size_t i = 0; i < sizeof smuggles / sizeof smuggles[0]; i++) {
    smuggle_run(MXGW_BARE_REJECT, &smuggles[i], 0);
    smuggle_run(MXGW_BARE_REJECT, &smuggles[i], 1);
  }
}

Test(data, smuggling_normalize) {
  for (size_t i = 0; i < sizeof smuggles / sizeof smuggles[0]; i++) {
    smuggle_run(MXGW_BARE_NORMALIZE, &smuggles[i], 0);
    smuggle_run(MXGW_BARE_NORMALIZE, &smuggles[i], 1);
  }
}
