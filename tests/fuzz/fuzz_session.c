/* SPDX-License-Identifier: MIT */
/*
 * fuzz_session.c: libFuzzer target for the SMTP session engine. The first
 * 8 input bytes choose the configuration (bare-newline policy, STARTTLS,
 * AUTH, AUTH over plaintext, CHUNKING, small limits and buffers, short
 * timeouts, a failing allocator) and seed a small PRNG; the rest is what the
 * client sends. The PRNG cuts that text into feeds of random sizes, picks
 * each decision (accept, reply with 2xx/3xx/4xx/5xx including 421, a
 * multi-line or an invalid reply, or defer for a while and answer later),
 * reports the TLS handshake after an accepted STARTTLS, advances the clock
 * and calls tick(), consumes output in random partial amounts, and ends
 * with eof() or abort(). Invariants checked on every step, each a
 * __builtin_trap() on violation: next_event() returns only known events
 * (or MXGW_E_NOMEM); the output is complete CRLF lines, each "ddd " or
 * "ddd-" with a 2xx-5xx code and continuation lines sharing it; DATA bodies
 * contain no bare LF or bare CR and end with CRLF; the BODY lengths add up
 * to MXGW_INFO_MESSAGE_SIZE at MESSAGE_END; nothing follows CLOSE;
 * decisions are pending while announced; the timer fires when its deadline
 * has passed; the session never stalls while its input, output and
 * decisions are being serviced; and eof() or abort() always
 * leads to CLOSE. See tests/fuzz/README.md for how to build and run it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mxgw/mxgw.h>

#include "failmem.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      __builtin_trap();                                                        \
  } while (0)

/* ------------------------------------------------------------------------ */
/* PRNG (xorshift64*), seeded from the input                                */
/* ------------------------------------------------------------------------ */

typedef struct rng {
  uint64_t s;
} rng;

static uint32_t rnd(rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return (uint32_t)((r->s * 2685821657736338717ull) >> 32);
}

/* 0 .. n-1 */
static uint32_t below(rng *r, uint32_t n) { return n ? rnd(r) % n : 0; }

/* true with probability num/den */
static bool chance(rng *r, uint32_t num, uint32_t den) {
  return below(r, den) < num;
}

/* ------------------------------------------------------------------------ */
/* State of one run                                                         */
/* ------------------------------------------------------------------------ */

typedef struct run {
  mxgw_session *s;
  rng r;
  int64_t now;
  bool nomem_possible;
  bool normalize;

  bool closed;       /* CLOSE was returned */
  bool eof_sent;
  int defer;         /* >0: answer the pending decision after this many steps */
  int deferred_ev;   /* the decision being deferred */
  bool tls_wait;     /* a STARTTLS was accepted, handshake not reported */
  bool greeted;      /* CONNECT was answered */

  /* current message */
  uint64_t body_len;
  int last_body; /* last BODY octet of the message, -1 if none */
  bool bdat;

  /* output checker: the line being assembled from consumed bytes */
  char line[1024];
  size_t line_len;
  bool line_overflow;
  int cont_code; /* code of a "ddd-" line awaiting its continuation, or 0 */
  int last_out;  /* the last output octet consumed, -1 if none */
} run;

static void touch(const char *p, size_t n) {
  volatile unsigned char sink = 0;
  for (size_t i = 0; i < n; i++)
    sink ^= (unsigned char)p[i];
  (void)sink;
}

/* Check one complete reply line (without CRLF). */
static void check_line(run *u, const char *l, size_t n) {
  CHECK(n >= 3);
  for (int i = 0; i < 3; i++)
    CHECK(l[i] >= '0' && l[i] <= '9');
  CHECK(l[0] >= '2' && l[0] <= '5');
  int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
  if (u->cont_code)
    CHECK(code == u->cont_code);
  u->cont_code = 0;
  if (n > 3) {
    CHECK(l[3] == ' ' || l[3] == '-');
    if (l[3] == '-')
      u->cont_code = code;
  }
  for (size_t i = 0; i < n; i++)
    CHECK(l[i] != '\r' && l[i] != '\n' && l[i] != '\0');
}

/* Take n consumed output bytes into the line checker. */
static void check_output_bytes(run *u, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    int prev = u->last_out;
    u->last_out = (unsigned char)c;
    if (c == '\n') {
      /* the line must end in CR LF */
      CHECK(prev == '\r' && u->line_len > 0);
      if (!u->line_overflow)
        check_line(u, u->line, u->line_len - 1);
      u->line_len = 0;
      u->line_overflow = false;
      continue;
    }
    /* a CR may only appear right before LF */
    CHECK(prev != '\r');
    if (u->line_len < sizeof u->line)
      u->line[u->line_len++] = c;
    else
      u->line_overflow = true; /* replies are short; keep checking CRs */
  }
}

/* Consume some (or all) of the pending output, checking it. */
static void drain_output(run *u, bool all) {
  const char *p;
  size_t n;
  CHECK(mxgw_session_output(u->s, &p, &n) == MXGW_OK);
  if (n == 0)
    return;
  /* whatever is pending is whole lines: it ends in CR LF (the CR may
   * already have been consumed) */
  CHECK(p[n - 1] == '\n');
  if (n >= 2)
    CHECK(p[n - 2] == '\r');
  else
    CHECK(u->last_out == '\r');
  CHECK(mxgw_session_want(u->s) & MXGW_WANT_WRITE);
  size_t take = all ? n : (size_t)below(&u->r, (uint32_t)n + 1);
  if (!all && chance(&u->r, 1, 2))
    take = n;
  check_output_bytes(u, p, take);
  CHECK(mxgw_session_consume(u->s, take) == MXGW_OK);
  CHECK(mxgw_session_consume(u->s, n - take + 1) == MXGW_E_INVAL);
}

/* ------------------------------------------------------------------------ */
/* Decisions                                                                */
/* ------------------------------------------------------------------------ */

/* A reply code that accepts at this stage. */
static int accept_code(run *u, int ev) {
  switch (ev) {
  case MXGW_EV_CONNECT:
  case MXGW_EV_STARTTLS:
    return 220;
  case MXGW_EV_AUTH:
    return 235;
  case MXGW_EV_DATA:
    return 354;
  default:
    return chance(&u->r, 1, 2) ? 250 : 251;
  }
}

static void answer(run *u, int ev) {
  static const int rejects[] = {421, 450, 451, 452, 454, 500, 501, 503,
                                530, 535, 550, 551, 552, 553, 554};
  static const char *const texts[] = {
      NULL, "Ok", "custom text", "first line\nsecond line\nthird line",
      "x", "\xc3\xa9t\xc3\xa9 UTF-8"};
  mxgw_session *s = u->s;
  CHECK(mxgw_session_pending(s) == ev);
  /* mostly accept, so that dialogues get far; refuse CONNECT rarely */
  uint32_t pick = below(&u->r, 64);
  if (ev == MXGW_EV_CONNECT && pick >= 50 && pick < 58 && chance(&u->r, 3, 4))
    pick = 0;
  int rv;
  bool accepted;
  if (pick < 44) {
    rv = mxgw_session_accept(s);
    accepted = true;
  } else if (pick < 50) {
    const char *t = texts[below(&u->r, sizeof texts / sizeof texts[0])];
    int code = accept_code(u, ev);
    const char *enh = NULL;
    if (code / 100 == 2 && chance(&u->r, 1, 2))
      enh = "2.0.0";
    rv = mxgw_session_reply(s, code, enh, t);
    if (rv == MXGW_E_INVAL) /* e.g. a text the engine refuses */
      rv = mxgw_session_accept(s);
    accepted = true;
  } else if (pick < 58) {
    int code = rejects[below(&u->r, sizeof rejects / sizeof rejects[0])];
    const char *t = texts[below(&u->r, sizeof texts / sizeof texts[0])];
    const char *enh = NULL;
    if (chance(&u->r, 1, 2))
      enh = code / 100 == 4 ? "4.7.1" : "5.7.1";
    rv = mxgw_session_reply(s, code, enh, t);
    if (rv == MXGW_E_INVAL)
      rv = mxgw_session_reply(s, code, NULL, NULL);
    accepted = false;
  } else {
    /* invalid answers must be refused and leave the decision pending */
    static const int bad[] = {0, 199, 600, 1000, -1};
    CHECK(mxgw_session_reply(s, bad[below(&u->r, 5)], NULL, NULL) ==
          MXGW_E_INVAL);
    CHECK(mxgw_session_reply(s, 550, "4.1.1", NULL) == MXGW_E_INVAL);
    CHECK(mxgw_session_reply(s, 550, NULL, "bad\r\ntext") == MXGW_E_INVAL);
    if (ev != MXGW_EV_DATA)
      CHECK(mxgw_session_reply(s, 354, NULL, NULL) == MXGW_E_INVAL);
    CHECK(mxgw_session_pending(s) == ev);
    rv = mxgw_session_accept(s);
    accepted = true;
  }
  if (rv == MXGW_E_NOMEM) {
    CHECK(u->nomem_possible);
    return;
  }
  CHECK(rv == MXGW_OK);
  CHECK(mxgw_session_pending(s) == MXGW_EV_NONE);
  /* a second answer is refused */
  CHECK(mxgw_session_accept(s) == MXGW_E_STATE);
  if (ev == MXGW_EV_STARTTLS && accepted)
    u->tls_wait = true;
  if (ev == MXGW_EV_CONNECT)
    u->greeted = true;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */
/* ------------------------------------------------------------------------ */

static void read_items(run *u) {
  mxgw_session *s = u->s;
  const char *p;
  size_t n;
  for (int k = MXGW_INFO_DATA; k <= MXGW_INFO_TLS_SNI; k++) {
    int rv = mxgw_session_get_str(s, k, &p, &n);
    CHECK(rv == MXGW_OK || rv == MXGW_E_NOTFOUND);
    if (rv == MXGW_OK) {
      CHECK(p != NULL || n == 0);
      if (n)
        touch(p, n);
    }
  }
  CHECK(mxgw_session_get_str(s, 99, &p, &n) == MXGW_E_INVAL);
  int64_t v, rc = 0;
  for (int k = MXGW_INFO_IS_EHLO; k <= MXGW_INFO_PEER_PORT; k++) {
    int rv = mxgw_session_get_int(s, k, &v);
    if (k == MXGW_INFO_NOTIFY_FLAGS) /* per recipient only */
      continue;
    CHECK(rv == MXGW_OK);
    if (k == MXGW_INFO_RCPT_COUNT)
      rc = v;
  }
  CHECK(rc >= 0);
  for (int64_t i = 0; i < rc && i < 8; i++) {
    CHECK(mxgw_session_rcpt_get_str(s, (size_t)i, MXGW_INFO_RCPT, &p, &n) ==
          MXGW_OK);
    touch(p, n);
    int rv = mxgw_session_rcpt_get_str(s, (size_t)i, MXGW_INFO_ORCPT, &p, &n);
    CHECK(rv == MXGW_OK || rv == MXGW_E_NOTFOUND);
    CHECK(mxgw_session_rcpt_get_int(s, (size_t)i, MXGW_INFO_NOTIFY_FLAGS,
                                    &v) == MXGW_OK);
  }
  CHECK(mxgw_session_rcpt_get_str(s, (size_t)rc, MXGW_INFO_RCPT, &p, &n) ==
        MXGW_E_RANGE);
}

static void check_received(run *u) {
  const char *p;
  size_t n;
  const char *qid = chance(&u->r, 1, 2) ? "Q1D" : NULL;
  int rv = mxgw_session_received_header(u->s, qid, 1700000000, &p, &n);
  if (rv == MXGW_E_NOMEM) {
    CHECK(u->nomem_possible);
    return;
  }
  if (rv == MXGW_E_STATE)
    return;
  CHECK(rv == MXGW_OK);
  CHECK(n > 12 && memcmp(p, "Received: ", 10) == 0);
  CHECK(p[n - 2] == '\r' && p[n - 1] == '\n');
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\n')
      CHECK(i > 0 && p[i - 1] == '\r');
    if (p[i] == '\r')
      CHECK(i + 1 < n && p[i + 1] == '\n');
  }
}

static void start_message(run *u) {
  u->body_len = 0;
  u->last_body = -1;
  u->bdat = false;
}

/* Handle events until there are none. Returns how many were handled. */
static int events(run *u) {
  mxgw_session *s = u->s;
  int handled = 0;
  for (int guard = 0; guard < 100000; guard++) {
    int ev = mxgw_session_next_event(s);
    if (u->closed) {
      CHECK(ev == 0); /* nothing after CLOSE */
      return handled;
    }
    if (ev == MXGW_E_NOMEM) {
      CHECK(u->nomem_possible);
      continue; /* the session now closes with 421 */
    }
    CHECK(ev >= 0 && ev <= MXGW_EV_CLOSE);
    if (ev == 0) {
      /* an announced decision stays pending and is not returned twice */
      if (u->defer)
        CHECK(mxgw_session_pending(s) == u->deferred_ev);
      return handled;
    }
    handled++;
    const char *p;
    size_t n;
    int64_t v;
    switch (ev) {
    case MXGW_EV_CONNECT:
    case MXGW_EV_HELO:
    case MXGW_EV_STARTTLS:
    case MXGW_EV_AUTH:
    case MXGW_EV_MAIL:
    case MXGW_EV_RCPT:
    case MXGW_EV_DATA:
    case MXGW_EV_MESSAGE_END:
      CHECK(mxgw_session_pending(s) == ev);
      CHECK(mxgw_session_deadline(s) == -1); /* no timer while deciding */
      CHECK(!u->defer);
      if (chance(&u->r, 1, 8))
        read_items(u);
      if (ev == MXGW_EV_DATA) {
        start_message(u);
        CHECK(mxgw_session_get_int(s, MXGW_INFO_BDAT, &v) == MXGW_OK);
        u->bdat = v != 0;
      }
      if (ev == MXGW_EV_MESSAGE_END) {
        CHECK(mxgw_session_get_int(s, MXGW_INFO_MESSAGE_SIZE, &v) == MXGW_OK);
        CHECK((uint64_t)v == u->body_len);
        if (!u->bdat && u->body_len)
          CHECK(u->last_body == '\n'); /* a DATA body ends with CRLF */
        if (chance(&u->r, 1, 4))
          check_received(u);
      }
      if ((ev == MXGW_EV_MAIL || ev == MXGW_EV_RCPT) && chance(&u->r, 1, 16))
        check_received(u);
      if (chance(&u->r, 1, 8)) {
        u->defer = 1 + (int)below(&u->r, 6);
        u->deferred_ev = ev;
      } else {
        answer(u, ev);
      }
      break;
    case MXGW_EV_BODY:
      CHECK(mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &n) == MXGW_OK);
      CHECK(n > 0);
      touch(p, n);
      if (!u->bdat) {
        /* DATA bodies: CRLF line endings only, under either policy */
        for (size_t i = 0; i < n; i++) {
          int prev = i ? (unsigned char)p[i - 1] : u->last_body;
          if (p[i] == '\n')
            CHECK(prev == '\r');
          if (prev == '\r')
            CHECK(p[i] == '\n');
        }
      }
      u->last_body = (unsigned char)p[n - 1];
      u->body_len += n;
      CHECK(mxgw_session_get_int(s, MXGW_INFO_MESSAGE_SIZE, &v) == MXGW_OK);
      CHECK((uint64_t)v == u->body_len);
      break;
    case MXGW_EV_MESSAGE_ABORT:
    case MXGW_EV_RSET:
      CHECK(mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &n) == MXGW_OK ||
            ev == MXGW_EV_RSET);
      start_message(u);
      break;
    case MXGW_EV_CLOSE:
      CHECK(mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &n) == MXGW_OK);
      CHECK(n > 0);
      u->closed = true;
      u->defer = 0;
      CHECK(mxgw_session_pending(s) == MXGW_EV_NONE);
      CHECK(mxgw_session_want(s) & MXGW_WANT_CLOSE);
      CHECK(mxgw_session_deadline(s) == -1);
      CHECK(mxgw_session_feed(s, "x", 1, u->now) == MXGW_E_CLOSED);
      CHECK(mxgw_session_accept(s) == MXGW_E_STATE);
      break;
    default:
      CHECK(0);
    }
  }
  CHECK(0); /* an endless stream of events */
  return handled;
}

/* Answer a deferred decision once its time has come. */
static void service_deferred(run *u) {
  if (!u->defer || --u->defer > 0)
    return;
  int ev = u->deferred_ev;
  u->deferred_ev = 0;
  if (mxgw_session_pending(u->s) != ev) {
    /* only a close may drop a pending decision */
    CHECK(u->closed || u->eof_sent || u->nomem_possible);
    return;
  }
  answer(u, ev);
}

static void maybe_tick(run *u) {
  if (chance(&u->r, 3, 4))
    return;
  int64_t d = mxgw_session_deadline(u->s);
  if (d >= 0 && chance(&u->r, 1, 128))
    u->now = d + below(&u->r, 3); /* let the timer fire */
  else
    u->now += below(&u->r, 2000);
  int rv = mxgw_session_tick(u->s, u->now);
  CHECK(rv == 0 || rv == 1 || (rv == MXGW_E_NOMEM && u->nomem_possible));
  if (d >= 0 && u->now >= d)
    CHECK(rv != 0); /* a deadline that has passed fires */
  if (d >= 0 && u->now < d)
    CHECK(rv == 0);
}

/* ------------------------------------------------------------------------ */
/* Configuration from the first bytes                                       */
/* ------------------------------------------------------------------------ */

static void set(mxgw_session_config *c, int key, int64_t v) {
  CHECK(mxgw_session_config_set_int(c, key, v) == MXGW_OK);
}

static mxgw_session_config *make_config(const uint8_t *h, run *u) {
  mxgw_session_config *c;
  CHECK(mxgw_session_config_new(&c, NULL) == MXGW_OK);
  u->normalize = h[0] & 1;
  set(c, MXGW_OPT_BARE_NEWLINE, u->normalize ? MXGW_BARE_NORMALIZE
                                             : MXGW_BARE_REJECT);
  set(c, MXGW_OPT_STARTTLS, (h[0] >> 1) & 1);
  set(c, MXGW_OPT_AUTH, (h[0] >> 2) & 1);
  set(c, MXGW_OPT_AUTH_PLAINTEXT, (h[0] >> 3) & 1);
  set(c, MXGW_OPT_CHUNKING, !((h[0] >> 4) & 1));
  set(c, MXGW_OPT_REQUIRE_TLS, (h[0] >> 5) & 1);
  set(c, MXGW_OPT_REQUIRE_AUTH, (h[0] >> 6) & 1);
  set(c, MXGW_OPT_PIPELINING, !((h[0] >> 7) & 1));
  if (h[1] & 1)
    set(c, MXGW_OPT_MAX_MESSAGE_SIZE, 1 + h[3] * 4);
  if (h[1] & 2)
    set(c, MXGW_OPT_MAX_RECIPIENTS, 1 + (h[3] & 3));
  if (h[1] & 4)
    set(c, MXGW_OPT_MAX_MESSAGES, 1 + (h[3] & 1));
  if (h[1] & 8) {
    set(c, MXGW_OPT_MAX_COMMAND_LINE, 512);
    set(c, MXGW_OPT_INPUT_BUFFER, 16384);
    set(c, MXGW_OPT_OUTPUT_BUFFER, 4096);
  }
  if (h[1] & 16)
    set(c, MXGW_OPT_MAX_TEXT_LINE, (h[1] & 32) ? 0 : 20 + (h[3] & 63));
  if (h[1] & 64) {
    set(c, MXGW_OPT_MAX_ERRORS, 1 + (h[3] & 3));
    set(c, MXGW_OPT_MAX_UNKNOWN_COMMANDS, 1 + ((h[3] >> 2) & 3));
    set(c, MXGW_OPT_MAX_JUNK_COMMANDS, 1 + ((h[3] >> 4) & 3));
  }
  set(c, MXGW_OPT_SMTPUTF8, !(h[2] & 1));
  set(c, MXGW_OPT_DSN, !((h[2] >> 1) & 1));
  set(c, MXGW_OPT_8BITMIME, !((h[2] >> 2) & 1));
  set(c, MXGW_OPT_REJECT_HTTP, !((h[2] >> 3) & 1));
  set(c, MXGW_OPT_IMPLICIT_TLS, (h[2] >> 4) & 1);
  if (h[2] & 32) {
    set(c, MXGW_OPT_COMMAND_TIMEOUT_MS, 1000);
    set(c, MXGW_OPT_DATA_TIMEOUT_MS, 500);
  }
  if (h[2] & 64)
    CHECK(mxgw_session_config_set_str(c, MXGW_OPT_HOSTNAME,
                                      "mx.example.test") == MXGW_OK);
  if (h[2] & 128)
    CHECK(mxgw_session_config_set_str(c, MXGW_OPT_GREETING,
                                      "ESMTP fuzz ready") == MXGW_OK);
  return c;
}

static void log_hook(void *user, mxgw_session *s, int kind, const char *text,
                     size_t len) {
  (void)user;
  (void)s;
  CHECK(kind >= MXGW_LOG_CONNECT && kind <= MXGW_LOG_TLS);
  CHECK(text != NULL || len == 0);
  touch(text, len);
}

/* The client closed its side: eof(). */
static void send_eof(run *u) {
  CHECK(mxgw_session_eof(u->s) == MXGW_OK);
  u->eof_sent = true;
}

/* The connection is gone: abort() drops input, output and any decision. */
static void send_abort(run *u) {
  CHECK(mxgw_session_abort(u->s) == MXGW_OK);
  u->eof_sent = true;
  const char *p;
  size_t n;
  CHECK(mxgw_session_output(u->s, &p, &n) == MXGW_OK);
  CHECK(n == 0);
  CHECK(mxgw_session_pending(u->s) == MXGW_EV_NONE);
  u->line_len = 0; /* what was not written is gone */
  u->line_overflow = false;
  u->cont_code = 0;
  u->last_out = -1;
}

/* End of input: eof() (or, now and then, abort()), then service the
 * session until CLOSE. */
static void finish(run *u) {
  if (!u->closed && !u->eof_sent) {
    if (chance(&u->r, 1, 8))
      send_abort(u);
    else
      send_eof(u);
  }
  for (int i = 0; i < 10000 && !u->closed; i++) {
    if (u->defer) {
      u->defer = 1; /* answer now */
      service_deferred(u);
    }
    if (u->tls_wait && !u->closed) {
      int rv = mxgw_session_starttls_done(u->s, NULL, NULL);
      CHECK(rv == MXGW_OK || (rv == MXGW_E_NOMEM && u->nomem_possible));
      if (rv == MXGW_OK)
        u->tls_wait = false;
    }
    events(u);
    drain_output(u, true);
  }
  CHECK(u->closed); /* eof() always leads to CLOSE */
  /* the last replies are complete too */
  drain_output(u, true);
  CHECK(u->line_len == 0 && u->cont_code == 0);
}

#define HEADER 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < HEADER)
    return 0;
  const uint8_t *h = data;
  const char *in = (const char *)data + HEADER;
  size_t in_len = size - HEADER, pos = 0;

  run u;
  memset(&u, 0, sizeof u);
  u.r.s = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < HEADER; i++)
    u.r.s = (u.r.s ^ h[i]) * 0x100000001b3ull;
  if (!u.r.s)
    u.r.s = 1;
  u.now = 1000;
  u.last_body = -1;
  u.last_out = -1;

  mxgw_session_config *cfg = make_config(h, &u);
  failmem fm = {0};
  if (h[1] & 128) {
    fm.fail_at = 1 + h[4] % 48u;
    fm.sticky = h[5] & 1;
    u.nomem_possible = true;
  }
  mxgw_mem mem = failmem_mem(&fm);
  mxgw_session *s = NULL;
  int rv = mxgw_session_new(&s, cfg, &mem);
  mxgw_session_config_free(cfg); /* the session keeps its own reference */
  if (rv == MXGW_E_NOMEM) {
    CHECK(u.nomem_possible);
    return 0;
  }
  CHECK(rv == MXGW_OK && s);
  u.s = s;
  /* the configuration is frozen now */
  if (h[6] & 1)
    mxgw_session_set_log(s, log_hook, NULL);
  rv = mxgw_session_set_peer(s, (h[6] & 2) ? "2001:db8::25" : "192.0.2.25",
                             (h[6] & 4) ? 0 : 40025,
                             (h[6] & 8) ? "client.example.org" : NULL);
  CHECK(rv == MXGW_OK || (rv == MXGW_E_NOMEM && u.nomem_possible));
  CHECK(mxgw_session_feed(s, "x", 1, u.now) == MXGW_E_STATE);
  CHECK(mxgw_session_start(s, u.now) == MXGW_OK);
  CHECK(mxgw_session_start(s, u.now) == MXGW_E_STATE);

  int stalls = 0;
  for (int step = 0; step < 20000 && !u.closed; step++) {
    int progress = events(&u);
    service_deferred(&u);

    /* the application side */
    if (u.tls_wait && !u.closed && chance(&u.r, 1, 3)) {
      rv = mxgw_session_starttls_done(s, chance(&u.r, 1, 2) ? "TLSv1.3" : NULL,
                                      "TLS_AES_256_GCM_SHA384");
      if (rv == MXGW_OK) {
        u.tls_wait = false;
        int64_t tls = 0;
        CHECK(mxgw_session_get_int(s, MXGW_INFO_TLS, &tls) == MXGW_OK);
        CHECK(tls == 1);
      } else {
        CHECK(rv == MXGW_E_NOMEM && u.nomem_possible);
      }
    } else if (!u.tls_wait && !u.closed && chance(&u.r, 1, 64)) {
      CHECK(mxgw_session_starttls_done(s, NULL, NULL) == MXGW_E_STATE);
    }
    if (!u.closed && !u.eof_sent && chance(&u.r, 1, 400)) {
      rv = mxgw_session_shutdown(s, chance(&u.r, 1, 2) ? NULL : "going down");
      /* E_CLOSED: it closed since the last events() (a deferred 421) */
      CHECK(rv == MXGW_OK || (rv == MXGW_E_NOMEM && u.nomem_possible) ||
            (rv == MXGW_E_CLOSED &&
             (mxgw_session_want(s) & MXGW_WANT_CLOSE)));
    }
    if (!u.closed && !u.eof_sent && chance(&u.r, 1, 1000))
      send_abort(&u); /* the connection breaks */
    maybe_tick(&u);
    drain_output(&u, chance(&u.r, 1, 4));

    /* the client side */
    int fed = 0;
    /* a client waits for the greeting, except an early talker */
    if (pos < in_len && !u.eof_sent && !u.closed &&
        (u.greeted || chance(&u.r, 1, 32))) {
      size_t want;
      switch (below(&u.r, 5)) {
      case 0: want = 1; break;
      case 1: want = 1 + below(&u.r, 8); break;
      case 2: want = 1 + below(&u.r, 64); break;
      case 3: want = 1 + below(&u.r, 1024); break;
      default: want = in_len - pos; break;
      }
      if (want > in_len - pos)
        want = in_len - pos;
      u.now += below(&u.r, 50);
      int n = mxgw_session_feed(s, in + pos, want, u.now);
      if (n == MXGW_E_NOMEM) {
        CHECK(u.nomem_possible);
        if (fm.sticky)
          send_eof(&u); /* no memory for input, ever: give up */
      } else if (n == MXGW_E_CLOSED) {
        /* closed before CLOSE was read (e.g. an error limit): drain */
        pos = in_len;
      } else {
        CHECK(n >= 0 && (size_t)n <= want);
        pos += (size_t)n;
        fed = n;
      }
    }

    if (progress || fed || u.defer) {
      stalls = 0;
      continue;
    }
    /* no progress this step: write everything, then see what is left */
    drain_output(&u, true);
    if (u.tls_wait && !u.closed)
      continue; /* the handshake is reported above, sooner or later */
    if (pos < in_len && !u.eof_sent && !u.closed) {
      /* input is waiting and everything else is serviced: the session
       * must take input or produce events within a few more steps */
      CHECK(++stalls < 64 || u.nomem_possible);
      continue;
    }
    if (!u.eof_sent) {
      if (chance(&u.r, 1, 8))
        send_abort(&u);
      else
        send_eof(&u);
      continue;
    }
    /* after eof() the buffered input is worked off, then CLOSE follows */
    CHECK(++stalls < 64);
  }
  finish(&u);
  CHECK(mxgw_session_next_event(s) == 0);
  CHECK(mxgw_session_want(s) & MXGW_WANT_CLOSE);
  mxgw_session_free(s);
  return 0;
}
