/* SPDX-License-Identifier: MIT */
/*
 * harness.h: a small driver for the unit tests of the SMTP session engine.
 * It owns a configuration and a session, feeds client bytes (keeping what
 * the session does not take yet), pulls events and answers decisions with a
 * policy (accept everything by default, per-event replies, one-shot scripted
 * answers, or deferral), writes all output into one string, and records the
 * events and log records so tests can assert on them afterwards. Only the
 * public API is used.
 */
#ifndef MXGW_UNIT_HARNESS_H
#define MXGW_UNIT_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <criterion/criterion.h>

#include "mxgw/mxgw_session.h"

#define H_NEV 16 /* event numbers are < H_NEV */

/* How a decision event is answered. */
enum h_mode {
  H_ACCEPT = 0, /* mxgw_session_accept() */
  H_REPLY = 1,  /* mxgw_session_reply(code, enh, text) */
  H_DEFER = 2   /* leave it pending; the test answers later */
};

typedef struct h_decision {
  int ev; /* only for scripted decisions */
  int mode;
  int code;
  const char *enh;
  const char *text;
  int used;
} h_decision;

typedef struct h_buf {
  char *p; /* always NUL-terminated when non-NULL */
  size_t len;
  size_t cap;
} h_buf;

/* One recorded event. str is a copy of the interesting string, if any:
 * HELO: the HELO argument; MAIL: the reverse path; RCPT: the forward path;
 * AUTH: the authentication identity; BODY, MESSAGE_ABORT, CLOSE: DATA. */
typedef struct h_event {
  int ev;
  char *str;
  size_t len;
} h_event;

typedef struct h_log {
  int kind;
  char *text;
  size_t len;
} h_log;

typedef struct harness harness;
/* Called for every event before the decision is made (may call getters and,
 * for H_DEFER events, may answer the decision itself). */
typedef void (*h_hook_fn)(harness *h, int ev);

struct harness {
  mxgw_session_config *cfg;
  mxgw_session *s;
  int64_t now;
  const mxgw_mem *mem; /* allocator for config and session (NULL: malloc) */

  h_buf out;       /* everything consumed from mxgw_session_output() */
  size_t out_read; /* offset of the first reply not yet popped */
  h_buf in;        /* client bytes not yet taken by feed */
  h_buf body;      /* BODY chunks of the current message */
  h_buf message;   /* the body of the last message at MESSAGE_END */
  h_buf reply;     /* the last popped reply */
  size_t body_chunks;

  h_event *events;
  size_t nevents, capevents;
  int count[H_NEV];

  h_log *logs;
  size_t nlogs, caplogs;

  h_decision policy[H_NEV];
  h_decision script[64];
  size_t nscript;

  h_hook_fn hook;
  void *user;     /* for the test */
  void *esc_list; /* strings from h_esc() */

  int auto_output;  /* drain output into `out` after each step (1) */
  int tolerant;     /* do not assert on API errors (failmalloc) */
  int last_err;     /* last negative return seen by the harness */
  int feed_closed;  /* feed returned MXGW_E_CLOSED */
  size_t discarded; /* bytes dropped because the session was closed */
  int decision_err; /* return of the last accept()/reply() by policy */
};

/* Set up: a fresh configuration with the defaults (asserts success). */
void h_init(harness *h);
void h_init_mem(harness *h, const mxgw_mem *mem);
/* Set an option on the configuration (asserts MXGW_OK). */
void h_set(harness *h, int key, int64_t value);
void h_set_str(harness *h, int key, const char *value);
/* Create the session (peer 192.0.2.1:4711 "client.example"), install the
 * log hook and start it at h->now. Does not pull events. */
void h_create(harness *h);
/* h_create, then pull events (CONNECT is answered by policy). */
void h_start(harness *h);
/* h_start, pop the greeting (asserts 220), send "EHLO client.example",
 * pop the EHLO reply (asserts 250). */
void h_start_ehlo(harness *h);
/* h_start_ehlo plus MAIL FROM:<sender@example.org> and
 * RCPT TO:<rcpt@example.net> (both assert their 250). */
void h_start_txn(harness *h);
/* Free everything, then (in a sanitizer build) run LeakSanitizer and fail
 * the test if anything allocated so far is unreachable. */
void h_free(harness *h);
/* The leak check alone (a no-op without AddressSanitizer). Criterion does
 * not fail a test on LeakSanitizer's exit-time report, so tests check here. */
void h_leak_check(void);

/* Answer every event of this type by this policy. */
void h_policy(harness *h, int ev, int mode, int code, const char *enh,
              const char *text);
/* Answer the next event of this type (only once) by this policy. */
void h_script(harness *h, int ev, int mode, int code, const char *enh,
              const char *text);

/* Append bytes to the client input and process as far as possible. */
void h_send(harness *h, const char *str);
void h_sendn(harness *h, const void *p, size_t n);
/* Feed buffered input, pull events, drain output until nothing moves. */
void h_pump(harness *h);
/* Pull events until next_event returns <= 0; returns events pulled. */
int h_run(harness *h);
/* Move all pending output into h->out (consume everything). */
size_t h_drain(harness *h);

/* Answer the pending decision (assert the call returns 0), then pump. */
void h_accept(harness *h);
void h_reply(harness *h, int code, const char *enh, const char *text);

/* The next complete reply (all of its lines, CRLFs included) that the test
 * has not popped yet, NUL-terminated, or NULL if none. Valid until the next
 * pop. */
const char *h_pop_reply(harness *h);
/* Does the reply's last line start with prefix, and do all of its lines
 * carry the same code with '-' / ' ' continuation correctly? */
int h_reply_is(const char *reply, const char *prefix);
/* Output not yet popped, NUL-terminated. */
const char *h_unread(const harness *h);
/* All output so far, NUL-terminated ("" if none). */
const char *h_output(const harness *h);
/* Number of replies in all output whose final line starts with prefix. */
int h_count_replies(const harness *h, const char *prefix);

int h_count(const harness *h, int ev);
/* The index of the first recorded event ev (with str, if not NULL, equal to
 * its copy), searching from index `from`; -1 if none. */
int h_find(const harness *h, int ev, const char *str, size_t from);
/* The n-th recorded event of type ev (0-based), or NULL. */
const h_event *h_nth(const harness *h, int ev, int n);
/* The last recorded event number, or 0. */
int h_last_event(const harness *h);

/* Does any log record of this kind (0: any) contain needle? Returns the
 * first such record or NULL. */
const h_log *h_log_find(const harness *h, int kind, const char *needle);
int h_log_count(const harness *h, int kind);

/* Copy a session string item into a NUL-terminated heap string owned by
 * the caller (free()). NULL when get_str fails. */
char *h_get_str(const harness *h, int key);
int64_t h_get_int(const harness *h, int key);

/* Render bytes with \r, \n and controls escaped, into a static-per-call
 * heap string owned by the harness (freed at h_free). For messages only. */
const char *h_esc(harness *h, const char *p, size_t n);
const char *h_esc0(harness *h, const char *p);

/* Simple growable buffers. */
void h_buf_add(h_buf *b, const void *p, size_t n);
void h_buf_adds(h_buf *b, const char *s);
void h_buf_addf(h_buf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void h_buf_reset(h_buf *b);
void h_buf_free(h_buf *b);
const char *h_buf_str(const h_buf *b);

/* In an EHLO reply, the parameters of the extension keyword kw (matched
 * case-insensitively as a whole word on one of the lines after the first),
 * as a heap string ("" when it has none; free()), or NULL if it is not
 * advertised. */
char *h_ehlo_ext(const char *reply, const char *kw);
/* Does the whitespace-separated list `list` contain word (ignoring case)? */
int h_has_word(const char *list, const char *word);

/* Is ev a decision event? */
int h_is_decision(int ev);

/* Assert that the next reply starts with prefix (e.g. "452 4.5.3"). */
#define H_EXPECT(h, prefix)                                                    \
  do {                                                                         \
    const char *h_r_ = h_pop_reply(h);                                         \
    cr_assert(h_r_ != NULL, "expected a \"%s\" reply, got none (unread: %s)",  \
              (prefix), h_esc0((h), h_unread(h)));                             \
    cr_assert(h_reply_is(h_r_, (prefix)), "expected \"%s\", got \"%s\"",       \
              (prefix), h_esc0((h), h_r_));                                    \
  } while (0)

/* Assert that there is no further (complete or partial) output. */
#define H_EXPECT_NONE(h)                                                       \
  do {                                                                         \
    cr_assert_eq(h_unread(h)[0], '\0', "expected no more output, got \"%s\"",  \
                 h_esc0((h), h_unread(h)));                                    \
  } while (0)

/* Assert a call returns the given mxgw status. */
#define H_OK(call) H_RET(MXGW_OK, call)
#define H_RET(want, call)                                                      \
  do {                                                                         \
    int h_rc_ = (call);                                                        \
    cr_assert_eq(h_rc_, (want), "%s returned %d (%s), expected %d (%s)",       \
                 #call, h_rc_, mxgw_errname(h_rc_), (int)(want),               \
                 mxgw_errname(want));                                          \
  } while (0)

#endif /* MXGW_UNIT_HARNESS_H */
