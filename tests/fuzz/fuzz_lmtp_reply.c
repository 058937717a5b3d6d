/* SPDX-License-Identifier: MIT */
/*
 * fuzz_lmtp_reply.c: libFuzzer target for the LMTP client's reply parser
 * and the client core around it. The input is parsed reply by reply by
 * mxgw__lmtp_reply_parse() (invariants: a complete reply is consumed
 * exactly, text fits, codes in range, the enhanced code's class matches),
 * then fed as a backend's bytes, at a split point taken from the first
 * byte, to a client with a submitted two-recipient message, whose
 * invariant is: every recipient ends with at most one result, and once the
 * message is DONE every recipient has one.
 */
#include <mxgw/mxgw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mxgw_lmtp_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  size_t off = 0;
  while (off < size) {
    mxgw__lmtp_reply r;
    size_t tl = 0;
    int n = mxgw__lmtp_reply_parse(p + off, size - off, &r, text, &tl);
    if (n <= 0) {
      if (n < 0 && !r.err)
        abort();
      break;
    }
    if ((size_t)n > size - off || tl > (size_t)n || r.code < 200 ||
        r.code > 559 || r.lines == 0)
      abort();
    if (r.enh[0] && r.enh[0] != '0' + r.code / 100)
      abort();
    off += (size_t)n;
  }
  free(text);

  mxgw_lmtp_config *cfg;
  mxgw_lmtp *c;
  if (mxgw_lmtp_config_new(&cfg, NULL))
    return 0;
  if (size && (data[0] & 1))
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNKING, 1);
  if (size && (data[0] & 2))
    mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_PIPELINING, 0);
  if (mxgw_lmtp_new(&c, cfg, NULL)) {
    mxgw_lmtp_config_free(cfg);
    return 0;
  }
  mxgw_lmtp_config_free(cfg);
  mxgw_lmtp_msg_new(c, "s@o.test");
  mxgw_lmtp_msg_add_rcpt(c, "a@x.test", 0, NULL);
  mxgw_lmtp_msg_add_rcpt(c, "b@x.test", 6, "rfc822;b@x.test");
  mxgw_lmtp_msg_submit(c, 0);
  mxgw_lmtp_start(c, 0);
  size_t split = size ? data[0] % (size + 1) : 0;
  int64_t now = 0;
  for (int part = 0; part < 2; part++) {
    size_t a = part ? split : 0, b = part ? size : split;
    if (b > a)
      mxgw_lmtp_feed(c, p + a, b - a, now++);
    const char *o;
    size_t ol;
    if (mxgw_lmtp_output(c, &o, &ol) == 0)
      mxgw_lmtp_consume(c, ol);
    if (mxgw_lmtp_want(c) & MXGW_LMTP_WANT_BODY) {
      mxgw_lmtp_body(c, ".x\n", 3, now);
      mxgw_lmtp_body_end(c, now);
    }
    int ev;
    while ((ev = mxgw_lmtp_next_event(c)) > 0)
      if (ev == MXGW_LMTP_EV_DONE)
        for (size_t i = 0; i < 2; i++) {
          int64_t code = 0;
          mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_CODE, &code);
          if (code < 200 || code > 599)
            abort();
        }
  }
  mxgw_lmtp_eof(c, now);
  mxgw_lmtp_free(c);
  return 0;
}
