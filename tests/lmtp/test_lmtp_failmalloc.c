/* SPDX-License-Identifier: MIT */
/*
 * test_lmtp_failmalloc.c: allocation failures in the sans-IO LMTP client.
 *
 * A counting mxgw_mem (given to mxgw_lmtp_config_new and mxgw_lmtp_new)
 * makes the k-th allocation attempt fail, once or "sticky" (from the k-th
 * on), and one exchange is rerun for k = 1, 2, ... until a run completes
 * without reaching an injected failure. The backend is a small reactive
 * LMTP server in this file that answers whatever the client sent (no
 * network): greeting, LHLO with PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME,
 * SIZE, DSN (and CHUNKING in the BDAT variant), then two messages on one
 * connection: the first with SIZE/BODY/RET/ENVID, three recipients (one
 * refused at RCPT, one 452 after the data, NOTIFY/ORCPT), a 20 KB body
 * pushed in pieces with back-pressure (bare LF, leading dots); the second
 * with one recipient; then QUIT.
 *
 * Every run must:
 *   - get from each call its normal result or MXGW_E_NOMEM (the documented
 *     code for allocation failure); anything else fails the test;
 *   - never crash; free every block it got from the mxgw_mem (counted) and
 *     leak nothing else (LeakSanitizer in the ASan build: label
 *     "lmtp;unit");
 *   - after the failure, abort + drain: no recipient may be reported
 *     delivered (2xx) unless the backend said 2xx for it after the data;
 *   - if no call reported an error although an allocation failed, the
 *     bytes on the wire and every result must equal the failure-free run.
 *
 * Limits: only the mxgw_mem-routed allocations are failed; OpenSSL's (no
 * TLS here) and libc's are not.
 */
#include <criterion/criterion.h>
#include <mxgw/mxgw.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failmem.h"

TestSuite(failmalloc_lmtp, .timeout = 600);

/* ---- a growing byte string ---------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + n + 1)
      nc *= 2;
    b->p = realloc(b->p, nc);
    cr_assert_not_null(b->p);
    b->cap = nc;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_free(sbuf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- the backend ---------------------------------------------------------- */

/* Reads the client's bytes, answers them into `reply`. */
typedef struct backend {
  int chunking;
  sbuf in;        /* client bytes not parsed yet */
  sbuf reply;     /* bytes for the client, not fed yet */
  int data_mode;  /* inside DATA */
  size_t bdat_left;
  int bdat_last;
  int accepted;   /* recipients accepted in this transaction */
  char rcpt[8][64];
  int closed;     /* QUIT answered */
  int delivered_ok[8]; /* per recipient of the current transaction: 250 */
  int final_sent; /* the end-of-data replies went out (message count) */
} backend;

static const char *final_for(const char *rcpt) {
  return strncmp(rcpt, "b@", 2) == 0 ? "452 4.2.2 <b@example.net> Mailbox full"
                                     : "250 2.0.0 Saved";
}

static void be_final(backend *b) {
  for (int i = 0; i < b->accepted; i++) {
    sb_str(&b->reply, final_for(b->rcpt[i]));
    sb_str(&b->reply, "\r\n");
  }
  b->final_sent++;
  b->accepted = 0;
}

static void be_line(backend *b, const char *l, size_t n) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "%.*s", (int)(n < 599 ? n : 599), l);
  if (strncmp(cmd, "LHLO", 4) == 0) {
    sb_str(&b->reply, "250-srv.test\r\n250-PIPELINING\r\n"
                      "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                      "250-DSN\r\n");
    if (b->chunking)
      sb_str(&b->reply, "250-CHUNKING\r\n");
    sb_str(&b->reply, "250 SIZE 10000000\r\n");
  } else if (strncmp(cmd, "MAIL", 4) == 0) {
    b->accepted = 0;
    sb_str(&b->reply, "250 2.1.0 OK\r\n");
  } else if (strncmp(cmd, "RCPT", 4) == 0) {
    const char *a = strchr(cmd, '<');
    if (a && strncmp(a + 1, "c@", 2) == 0) {
      sb_str(&b->reply, "550 5.1.1 <c@example.net> User unknown\r\n");
    } else {
      if (a && b->accepted < 8)
        snprintf(b->rcpt[b->accepted++], 64, "%.60s", a + 1);
      sb_str(&b->reply, "250 2.1.5 OK\r\n");
    }
  } else if (strcmp(cmd, "DATA") == 0) {
    b->data_mode = 1;
    sb_str(&b->reply, "354 go ahead\r\n");
  } else if (strncmp(cmd, "BDAT ", 5) == 0) {
    b->bdat_left = strtoul(cmd + 5, NULL, 10);
    b->bdat_last = strstr(cmd, "LAST") != NULL;
    if (b->bdat_left == 0 && b->bdat_last)
      be_final(b);
  } else if (strcmp(cmd, "RSET") == 0) {
    sb_str(&b->reply, "250 2.0.0 OK\r\n");
  } else if (strcmp(cmd, "QUIT") == 0) {
    sb_str(&b->reply, "221 2.0.0 bye\r\n");
    b->closed = 1;
  } else {
    sb_str(&b->reply, "500 5.5.2 what?\r\n");
  }
}

static void be_take(backend *b, const char *p, size_t n) {
  sb_add(&b->in, p, n);
  size_t pos = 0;
  for (;;) {
    if (b->bdat_left) {
      size_t k = b->in.len - pos < b->bdat_left ? b->in.len - pos
                                                : b->bdat_left;
      pos += k;
      b->bdat_left -= k;
      if (b->bdat_left)
        break;
      if (b->bdat_last)
        be_final(b);
      else
        sb_str(&b->reply, "250 2.0.0 chunk OK\r\n");
      continue;
    }
    char *nl = memchr(b->in.p + pos, '\n', b->in.len - pos);
    if (!nl)
      break;
    size_t ll = (size_t)(nl - (b->in.p + pos)) + 1;
    const char *line = b->in.p + pos;
    pos += ll;
    if (b->data_mode) {
      if (ll == 3 && memcmp(line, ".\r\n", 3) == 0) {
        b->data_mode = 0;
        be_final(b);
      }
      continue;
    }
    be_line(b, line, ll >= 2 && line[ll - 2] == '\r' ? ll - 2 : ll - 1);
  }
  memmove(b->in.p, b->in.p + pos, b->in.len - pos);
  b->in.len -= pos;
}

/* ---- one exchange --------------------------------------------------------- */

#define NR1 3
typedef struct result {
  int64_t code[NR1 + 1], local[NR1 + 1], stage[NR1 + 1];
  char text[NR1 + 1][128];
  int msgs_done;
} result;

typedef struct run {
  int err;         /* first error returned (0: none) */
  char call[120];  /* which call */
  sbuf wire;       /* every byte the client sent */
  result res[2];   /* results of message 1 and 2 */
  int done[2];     /* EV_DONE seen for message i */
  int closed;      /* EV_CLOSED seen */
} run;

#define CALL(expr_)                                                            \
  do {                                                                         \
    int rv_ = (expr_);                                                         \
    if (rv_ < 0) {                                                             \
      r->err = rv_;                                                            \
      snprintf(r->call, sizeof r->call, "%s (line %d)", #expr_, __LINE__);     \
      goto failed;                                                             \
    }                                                                          \
  } while (0)

static int64_t now = 1000000;

static void read_results(mxgw_lmtp *c, result *res, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const char *p = "";
    size_t pl = 0;
    mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_CODE, &res->code[i]);
    mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_LOCAL, &res->local[i]);
    mxgw_lmtp_rcpt_get_int(c, i, MXGW_LMTP_R_STAGE, &res->stage[i]);
    if (mxgw_lmtp_rcpt_get_str(c, i, MXGW_LMTP_R_TEXT, &p, &pl) == 0)
      snprintf(res->text[i], sizeof res->text[i], "%.*s",
               (int)(pl < 127 ? pl : 127), p);
  }
}

/* Move the client's output to the backend and the backend's replies to the
 * client until nothing moves; collect events. */
static int pump(mxgw_lmtp *c, backend *b, run *r, int msg, size_t nrcpt) {
  for (int rounds = 0; rounds < 10000; rounds++) {
    bool moved = false;
    const char *p;
    size_t n;
    int rv = mxgw_lmtp_output(c, &p, &n);
    if (rv)
      return rv;
    if (n) {
      sb_add(&r->wire, p, n);
      be_take(b, p, n);
      if ((rv = mxgw_lmtp_consume(c, n)))
        return rv;
      moved = true;
    }
    if (b->reply.len) {
      rv = mxgw_lmtp_feed(c, b->reply.p, b->reply.len, now);
      if (rv < 0)
        return rv;
      cr_assert(rv == (int)b->reply.len || (mxgw_lmtp_want(c) &
                                            MXGW_LMTP_WANT_CLOSE),
                "feed took %d of %zu", rv, b->reply.len);
      b->reply.len = 0;
      moved = true;
      if (b->closed) {
        if ((rv = mxgw_lmtp_eof(c, now)))
          return rv;
      }
    }
    int ev;
    while ((ev = mxgw_lmtp_next_event(c)) > 0) {
      moved = true;
      if (ev == MXGW_LMTP_EV_DONE && msg >= 0) {
        r->done[msg] = 1;
        read_results(c, &r->res[msg], nrcpt);
      } else if (ev == MXGW_LMTP_EV_CLOSED) {
        r->closed = 1;
      }
    }
    if (ev < 0)
      return ev;
    if (!moved)
      return MXGW_OK;
  }
  cr_assert(false, "the exchange does not settle");
  return MXGW_E_STATE;
}

static void make_body(sbuf *body) {
  sb_str(body, "From: s@example.org\nTo: a@example.net\nSubject: fm\n\n");
  for (int i = 0; i < 400; i++) {
    char l[80];
    snprintf(l, sizeof l, "%sline %d of the body with some text\r\n",
             i % 17 == 0 ? "." : "", i);
    sb_str(body, l);
    if (i % 50 == 0)
      sb_str(body, "bare LF line\n");
  }
}

/* Push the body in pieces, honouring back-pressure. */
static int push_body(mxgw_lmtp *c, backend *b, run *r, const sbuf *body,
                     int msg, size_t nrcpt) {
  size_t off = 0;
  while (off < body->len) {
    size_t want = body->len - off < 1000 ? body->len - off : 1000;
    int t = mxgw_lmtp_body(c, body->p + off, want, now);
    if (t < 0)
      return t;
    off += (size_t)t;
    int rv = pump(c, b, r, msg, nrcpt);
    if (rv)
      return rv;
    if (t == 0 && !(mxgw_lmtp_want(c) & MXGW_LMTP_WANT_BODY) &&
        (mxgw_lmtp_want(c) & MXGW_LMTP_WANT_CLOSE))
      return MXGW_OK; /* failed early: nothing more is wanted */
  }
  return mxgw_lmtp_body_end(c, now);
}

/* The exchange. Returns true if no injected failure was reached. */
static bool exchange(failmem *f, int chunking, run *r) {
  mxgw_mem mem = failmem_mem(f);
  mxgw_lmtp_config *cfg = NULL;
  mxgw_lmtp *c = NULL;
  backend b = {.chunking = chunking};
  sbuf body = {0};
  make_body(&body);
  int msg = -1;
  size_t nrcpt = 0;

  CALL(mxgw_lmtp_config_new(&cfg, &mem));
  CALL(mxgw_lmtp_config_set_str(cfg, MXGW_LMTP_OPT_LHLO_NAME, "gw.test"));
  CALL(mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNKING, chunking));
  CALL(mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CHUNK_SIZE, 4096));
  CALL(mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_BODY_BUFFER, 8192));
  CALL(mxgw_lmtp_new(&c, cfg, &mem));
  CALL(mxgw_lmtp_start(c, now));
  sb_str(&b.reply, "220 srv.test LMTP ready\r\n");
  CALL(pump(c, &b, r, msg, nrcpt));

  /* message 1 */
  msg = 0;
  nrcpt = NR1;
  CALL(mxgw_lmtp_msg_new(c, "s@example.org"));
  CALL(mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_SIZE, (int64_t)body.len));
  CALL(mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_8BITMIME, 1));
  CALL(mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_RET, 2));
  CALL(mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_ENVID, "env+id=1"));
  CALL(mxgw_lmtp_msg_add_rcpt(c, "a@example.net", 2 | 4,
                              "rfc822;A@example.net"));
  CALL(mxgw_lmtp_msg_add_rcpt(c, "b@example.net", 0, NULL));
  CALL(mxgw_lmtp_msg_add_rcpt(c, "c@example.net", 0, NULL));
  CALL(mxgw_lmtp_msg_submit(c, now));
  CALL(pump(c, &b, r, msg, nrcpt));
  CALL(push_body(c, &b, r, &body, msg, nrcpt));
  CALL(pump(c, &b, r, msg, nrcpt));
  cr_assert(r->done[0], "message 1 not done");

  /* message 2 on the same connection */
  msg = 1;
  nrcpt = 1;
  CALL(mxgw_lmtp_msg_new(c, ""));
  CALL(mxgw_lmtp_msg_add_rcpt(c, "d@example.net", 0, NULL));
  CALL(mxgw_lmtp_msg_submit(c, now));
  CALL(pump(c, &b, r, msg, nrcpt));
  CALL(push_body(c, &b, r, &body, msg, nrcpt));
  CALL(pump(c, &b, r, msg, nrcpt));
  cr_assert(r->done[1], "message 2 not done");
  CALL(mxgw_lmtp_quit(c));
  CALL(pump(c, &b, r, -1, 0));
  cr_assert(r->closed, "no CLOSED after QUIT");
  goto out;

failed:
  /* the error path: what is left must still be sane. Abort (it may fail
   * for lack of memory too), drain, and no recipient may read as
   * delivered unless the backend said 250 after the data */
  if (c) {
    mxgw_lmtp_abort(c, NULL, "failmalloc", now);
    while (mxgw_lmtp_next_event(c) > 0)
      ;
    if (msg >= 0) {
      result res;
      memset(&res, 0, sizeof res);
      read_results(c, &res, nrcpt);
      for (size_t i = 0; i < nrcpt; i++)
        if (res.code[i] >= 200 && res.code[i] < 300)
          cr_assert(b.final_sent > msg && !res.local[i] &&
                        res.stage[i] == 5,
                    "k=%ld: recipient %zu of message %d reads %lld although "
                    "the backend did not deliver it (failure at %s)",
                    f->fail_at, i, msg + 1, (long long)res.code[i], r->call);
    }
  }
out:
  mxgw_lmtp_free(c);
  mxgw_lmtp_config_free(cfg);
  sb_free(&body);
  sb_free(&b.in);
  sb_free(&b.reply);
  cr_assert_eq(f->live, 0, "k=%ld%s chunking=%d: %ld block(s) not freed "
               "(failure at %s)", f->fail_at, f->sticky ? " sticky" : "",
               chunking, f->live, r->call[0] ? r->call : "none reported");
  return !f->failed;
}

static void run_all(int chunking, int sticky) {
  failmem f0 = {0};
  run ref;
  memset(&ref, 0, sizeof ref);
  cr_assert(exchange(&f0, chunking, &ref));
  cr_assert_eq(ref.err, 0, "failure-free run: %s: %s", ref.call,
               mxgw_errname(ref.err));
  /* the reference itself is right */
  cr_assert_eq(ref.res[0].code[0], 250);
  cr_assert_eq(ref.res[0].code[1], 452);
  cr_assert_eq(ref.res[0].code[2], 550);
  cr_assert_eq(ref.res[1].code[0], 250);
  cr_assert_not_null(strstr(ref.wire.p, "MAIL FROM:<s@example.org> SIZE="),
                     "%s", ref.wire.p);
  cr_assert_not_null(strstr(ref.wire.p, "RET=HDRS ENVID=env+2Bid+3D1\r\n"),
                     "%s", ref.wire.p);
  cr_assert_not_null(strstr(ref.wire.p, "RCPT TO:<a@example.net> "
                                        "NOTIFY=SUCCESS,FAILURE "
                                        "ORCPT=rfc822;A@example.net\r\n"),
                     "%s", ref.wire.p);
  cr_assert_not_null(strstr(ref.wire.p, chunking ? "BDAT " : "DATA\r\n"));
  cr_assert_not_null(strstr(ref.wire.p, chunking ? "\r\n.line 0 of the"
                                                 : "\r\n..line 0 of the"));
  cr_assert_not_null(strstr(ref.wire.p, "QUIT\r\n"));
  long k, injected = 0, silent = 0;
  for (k = 1; k < 100000; k++) {
    failmem f = {.fail_at = k, .sticky = sticky};
    run r;
    memset(&r, 0, sizeof r);
    bool clean = exchange(&f, chunking, &r);
    cr_assert(r.err == 0 || r.err == MXGW_E_NOMEM,
              "k=%ld%s chunking=%d: %s returned %s (want MXGW_E_NOMEM)", k,
              sticky ? " sticky" : "", chunking, r.call, mxgw_errname(r.err));
    if (!clean)
      injected++;
    if (r.err == 0) {
      /* nothing reported: then nothing may differ */
      silent += !clean;
      cr_assert(r.wire.len == ref.wire.len &&
                    memcmp(r.wire.p, ref.wire.p, r.wire.len) == 0,
                "k=%ld%s chunking=%d: an unreported allocation failure "
                "changed the bytes sent", k, sticky ? " sticky" : "",
                chunking);
      cr_assert(memcmp(&r.res, &ref.res, sizeof r.res) == 0,
                "k=%ld%s chunking=%d: an unreported allocation failure "
                "changed the results", k, sticky ? " sticky" : "", chunking);
    }
    sb_free(&r.wire);
    if (clean)
      break;
  }
  sb_free(&ref.wire);
#ifdef FAILMEM_HAVE_LSAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
               "memory leaked: see the LeakSanitizer report above");
#endif
  cr_log_info("chunking=%d sticky=%d: %ld runs, %ld with an injected "
              "failure, %ld of them absorbed without an error", chunking,
              sticky, k, injected, silent);
  cr_assert_gt(injected, 10, "too few allocations to be meaningful");
}

Test(failmalloc_lmtp, data) { run_all(0, 0); }
Test(failmalloc_lmtp, data_sticky) { run_all(0, 1); }
Test(failmalloc_lmtp, bdat) { run_all(1, 0); }
Test(failmalloc_lmtp, bdat_sticky) { run_all(1, 1); }
