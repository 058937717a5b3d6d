/* SPDX-License-Identifier: MIT */
/*
 * harness.c: the unit-test driver declared in harness.h. It runs the loop
 * an application would run (feed, next_event, decide, output/consume) with
 * the time held in h->now, and keeps copies of everything the session
 * produced so tests can assert on replies, events, bodies and log records.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define H_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define H_HAVE_LSAN 1
#endif
#endif
#ifdef H_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Escaped strings handed out by h_esc(), freed with the harness. */
typedef struct h_esc_list {
  struct h_esc_list *next;
  char s[];
} h_esc_list;

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  cr_assert(q != NULL, "out of memory in the test harness");
  return q;
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* ASCII case-insensitive comparison of n bytes (0 when equal). */
static int ncasecmp(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int d = lower((unsigned char)a[i]) - lower((unsigned char)b[i]);
    if (d || !a[i])
      return d;
  }
  return 0;
}

static char *xmemdup0(const char *p, size_t n) {
  char *d = xrealloc(NULL, n + 1);
  if (n)
    memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

void h_buf_add(h_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void h_buf_adds(h_buf *b, const char *s) { h_buf_add(b, s, strlen(s)); }

void h_buf_addf(h_buf *b, const char *fmt, ...) {
  va_list ap;
  char tmp[1024];
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  cr_assert(n >= 0 && (size_t)n < sizeof tmp, "h_buf_addf overflow");
  h_buf_add(b, tmp, (size_t)n);
}

void h_buf_reset(h_buf *b) {
  b->len = 0;
  if (b->p)
    b->p[0] = '\0';
}

void h_buf_free(h_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

const char *h_buf_str(const h_buf *b) { return b->p ? b->p : ""; }

int h_is_decision(int ev) {
  switch (ev) {
  case MXGW_EV_CONNECT:
  case MXGW_EV_HELO:
  case MXGW_EV_STARTTLS:
  case MXGW_EV_AUTH:
  case MXGW_EV_MAIL:
  case MXGW_EV_RCPT:
  case MXGW_EV_DATA:
  case MXGW_EV_MESSAGE_END:
    return 1;
  default:
    return 0;
  }
}

static void log_hook(void *user, mxgw_session *s, int kind, const char *text,
                     size_t len) {
  harness *h = user;
  (void)s;
  if (h->nlogs == h->caplogs) {
    h->caplogs = h->caplogs ? h->caplogs * 2 : 64;
    h->logs = xrealloc(h->logs, h->caplogs * sizeof *h->logs);
  }
  h->logs[h->nlogs].kind = kind;
  h->logs[h->nlogs].text = xmemdup0(text, len);
  h->logs[h->nlogs].len = len;
  h->nlogs++;
}

void h_init_mem(harness *h, const mxgw_mem *mem) {
  memset(h, 0, sizeof *h);
  h->mem = mem;
  h->now = 1000;
  h->auto_output = 1;
  int rc = mxgw_session_config_new(&h->cfg, mem);
  cr_assert_eq(rc, MXGW_OK, "mxgw_session_config_new: %s", mxgw_errname(rc));
  cr_assert(h->cfg != NULL);
}

void h_init(harness *h) { h_init_mem(h, NULL); }

void h_set(harness *h, int key, int64_t value) {
  int rc = mxgw_session_config_set_int(h->cfg, key, value);
  cr_assert_eq(rc, MXGW_OK, "set_int(%d, %lld): %s", key, (long long)value,
               mxgw_errname(rc));
}

void h_set_str(harness *h, int key, const char *value) {
  int rc = mxgw_session_config_set_str(h->cfg, key, value);
  cr_assert_eq(rc, MXGW_OK, "set_str(%d, %s): %s", key, value,
               mxgw_errname(rc));
}

void h_create(harness *h) {
  int rc = mxgw_session_new(&h->s, h->cfg, h->mem);
  cr_assert_eq(rc, MXGW_OK, "mxgw_session_new: %s", mxgw_errname(rc));
  mxgw_session_set_log(h->s, log_hook, h);
  rc = mxgw_session_set_peer(h->s, "192.0.2.1", 4711, "client.example");
  cr_assert_eq(rc, MXGW_OK, "set_peer: %s", mxgw_errname(rc));
  rc = mxgw_session_start(h->s, h->now);
  cr_assert_eq(rc, MXGW_OK, "start: %s", mxgw_errname(rc));
}

void h_start(harness *h) {
  h_create(h);
  h_pump(h);
}

void h_start_ehlo(harness *h) {
  h_start(h);
  H_EXPECT(h, "220 ");
  h_send(h, "EHLO client.example\r\n");
  H_EXPECT(h, "250");
}

void h_start_txn(harness *h) {
  h_start_ehlo(h);
  h_send(h, "MAIL FROM:<sender@example.org>\r\n");
  H_EXPECT(h, "250 2.1.0");
  h_send(h, "RCPT TO:<rcpt@example.net>\r\n");
  H_EXPECT(h, "250 2.1.5");
}

void h_free(harness *h) {
  mxgw_session_free(h->s);
  mxgw_session_config_free(h->cfg);
  h->s = NULL;
  h->cfg = NULL;
  for (size_t i = 0; i < h->nevents; i++)
    free(h->events[i].str);
  free(h->events);
  for (size_t i = 0; i < h->nlogs; i++)
    free(h->logs[i].text);
  free(h->logs);
  h_buf_free(&h->out);
  h_buf_free(&h->in);
  h_buf_free(&h->body);
  h_buf_free(&h->message);
  h_buf_free(&h->reply);
  h_esc_list *e = h->esc_list;
  while (e) {
    h_esc_list *n = e->next;
    free(e);
    e = n;
  }
  h->esc_list = NULL;
  h_leak_check();
}

void h_leak_check(void) {
#ifdef H_HAVE_LSAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
               "memory leaked: see the LeakSanitizer report above");
#endif
}

void h_policy(harness *h, int ev, int mode, int code, const char *enh,
              const char *text) {
  cr_assert(ev > 0 && ev < H_NEV);
  h->policy[ev] = (h_decision){ev, mode, code, enh, text, 0};
}

void h_script(harness *h, int ev, int mode, int code, const char *enh,
              const char *text) {
  cr_assert(h->nscript < sizeof h->script / sizeof h->script[0]);
  h->script[h->nscript++] = (h_decision){ev, mode, code, enh, text, 0};
}

char *h_get_str(const harness *h, int key) {
  const char *p = NULL;
  size_t n = 0;
  if (mxgw_session_get_str(h->s, key, &p, &n) != MXGW_OK)
    return NULL;
  return xmemdup0(p, n);
}

int64_t h_get_int(const harness *h, int key) {
  int64_t v = -12345;
  int rc = mxgw_session_get_int(h->s, key, &v);
  cr_assert_eq(rc, MXGW_OK, "get_int(%d): %s", key, mxgw_errname(rc));
  return v;
}

static void record(harness *h, int ev) {
  int key = 0;
  switch (ev) {
  case MXGW_EV_HELO:
    key = MXGW_INFO_HELO;
    break;
  case MXGW_EV_MAIL:
    key = MXGW_INFO_MAIL_FROM;
    break;
  case MXGW_EV_RCPT:
    key = MXGW_INFO_RCPT;
    break;
  case MXGW_EV_AUTH:
    key = MXGW_INFO_AUTH_USER;
    break;
  case MXGW_EV_BODY:
  case MXGW_EV_MESSAGE_ABORT:
  case MXGW_EV_CLOSE:
    key = MXGW_INFO_DATA;
    break;
  default:
    break;
  }
  const char *p = NULL;
  size_t n = 0;
  char *str = NULL;
  if (key && mxgw_session_get_str(h->s, key, &p, &n) == MXGW_OK)
    str = xmemdup0(p, n);
  else
    n = 0;
  if (h->nevents == h->capevents) {
    h->capevents = h->capevents ? h->capevents * 2 : 64;
    h->events = xrealloc(h->events, h->capevents * sizeof *h->events);
  }
  h->events[h->nevents++] = (h_event){ev, str, n};
  if (ev > 0 && ev < H_NEV)
    h->count[ev]++;
  switch (ev) {
  case MXGW_EV_DATA:
    h_buf_reset(&h->body);
    h->body_chunks = 0;
    break;
  case MXGW_EV_BODY:
    h_buf_add(&h->body, str ? str : "", n);
    h->body_chunks++;
    break;
  case MXGW_EV_MESSAGE_END:
    h_buf_reset(&h->message);
    h_buf_add(&h->message, h->body.p ? h->body.p : "", h->body.len);
    break;
  default:
    break;
  }
}

static void decide(harness *h, int ev) {
  h_decision d = h->policy[ev];
  for (size_t i = 0; i < h->nscript; i++) {
    if (!h->script[i].used && h->script[i].ev == ev) {
      h->script[i].used = 1;
      d = h->script[i];
      break;
    }
  }
  int rc = 0;
  if (d.mode == H_ACCEPT)
    rc = mxgw_session_accept(h->s);
  else if (d.mode == H_REPLY)
    rc = mxgw_session_reply(h->s, d.code, d.enh, d.text);
  else
    return;
  h->decision_err = rc;
  if (rc < 0) {
    h->last_err = rc;
    if (!h->tolerant)
      cr_assert_fail("decision on event %d returned %s (%s)", ev,
                     mxgw_errname(rc), mxgw_session_errmsg(h->s));
  }
}

int h_run(harness *h) {
  int n = 0;
  for (;;) {
    int ev = mxgw_session_next_event(h->s);
    if (ev < 0) {
      h->last_err = ev;
      if (!h->tolerant)
        cr_assert_fail("next_event returned %s (%s)", mxgw_errname(ev),
                       mxgw_session_errmsg(h->s));
      break;
    }
    if (ev == 0)
      break;
    cr_assert(ev < H_NEV, "unknown event %d", ev);
    n++;
    record(h, ev);
    if (h->hook)
      h->hook(h, ev);
    /* The hook may have answered an H_DEFER decision already. */
    if (h_is_decision(ev) && mxgw_session_pending(h->s) == ev)
      decide(h, ev);
    if (h->tolerant && n > 100000)
      break;
  }
  return n;
}

size_t h_drain(harness *h) {
  size_t total = 0;
  if (!h->auto_output)
    return 0;
  for (;;) {
    const char *p = NULL;
    size_t n = 0;
    int rc = mxgw_session_output(h->s, &p, &n);
    if (rc != MXGW_OK) {
      h->last_err = rc;
      if (!h->tolerant)
        cr_assert_fail("output returned %s", mxgw_errname(rc));
      break;
    }
    if (n == 0)
      break;
    h_buf_add(&h->out, p, n);
    rc = mxgw_session_consume(h->s, n);
    if (rc != MXGW_OK) {
      h->last_err = rc;
      if (!h->tolerant)
        cr_assert_fail("consume returned %s", mxgw_errname(rc));
      break;
    }
    total += n;
  }
  return total;
}

void h_pump(harness *h) {
  for (int guard = 0; guard < 10000000; guard++) {
    int moved = 0;
    if (h->in.len > 0) {
      if (h->feed_closed) {
        h->discarded += h->in.len;
        h_buf_reset(&h->in);
      } else {
        int n = mxgw_session_feed(h->s, h->in.p, h->in.len, h->now);
        if (n == MXGW_E_CLOSED) {
          h->feed_closed = 1;
          h->discarded += h->in.len;
          h_buf_reset(&h->in);
        } else if (n < 0) {
          h->last_err = n;
          if (!h->tolerant)
            cr_assert_fail("feed returned %s (%s)", mxgw_errname(n),
                           mxgw_session_errmsg(h->s));
          return;
        } else if (n > 0) {
          cr_assert((size_t)n <= h->in.len, "feed took more than offered");
          memmove(h->in.p, h->in.p + n, h->in.len - (size_t)n + 1);
          h->in.len -= (size_t)n;
          moved = 1;
        }
      }
    }
    if (h_run(h) > 0)
      moved = 1;
    if (h_drain(h) > 0)
      moved = 1;
    if (h->tolerant && h->last_err < 0)
      return;
    if (!moved)
      return;
  }
  cr_assert_fail("h_pump: no end");
}

void h_sendn(harness *h, const void *p, size_t n) {
  h_buf_add(&h->in, p, n);
  h_pump(h);
}

void h_send(harness *h, const char *str) { h_sendn(h, str, strlen(str)); }

void h_accept(harness *h) {
  int rc = mxgw_session_accept(h->s);
  cr_assert_eq(rc, MXGW_OK, "accept: %s (%s)", mxgw_errname(rc),
               mxgw_session_errmsg(h->s));
  h_pump(h);
}

void h_reply(harness *h, int code, const char *enh, const char *text) {
  int rc = mxgw_session_reply(h->s, code, enh, text);
  cr_assert_eq(rc, MXGW_OK, "reply(%d): %s (%s)", code, mxgw_errname(rc),
               mxgw_session_errmsg(h->s));
  h_pump(h);
}

/* Length of the complete reply starting at p (0 if incomplete). */
static size_t reply_len(const char *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    const char *nl = memchr(p + off, '\n', n - off);
    if (!nl)
      return 0;
    size_t line_end = (size_t)(nl - p) + 1;
    /* final line: "ddd " or "ddd\r\n" */
    if (line_end - off >= 4 && p[off + 3] != '-')
      return line_end;
    if (line_end - off < 4)
      return line_end; /* malformed short line: treat as a whole reply */
    off = line_end;
  }
  return 0;
}

const char *h_pop_reply(harness *h) {
  const char *p = h_buf_str(&h->out) + h->out_read;
  size_t n = h->out.len - h->out_read;
  size_t len = reply_len(p, n);
  if (len == 0)
    return NULL;
  h_buf_reset(&h->reply);
  h_buf_add(&h->reply, p, len);
  h->out_read += len;
  return h->reply.p;
}

int h_reply_is(const char *r, const char *prefix) {
  size_t n = strlen(r);
  if (n < 5 || r[n - 2] != '\r' || r[n - 1] != '\n')
    return 0;
  /* every line: same 3 digits, '-' on all but the last, ' ' on the last */
  const char *line = r;
  const char *last = r;
  while (*line) {
    const char *eol = strstr(line, "\r\n");
    if (!eol)
      return 0;
    if (eol - line < 3 || strncmp(line, r, 3) != 0)
      return 0;
    for (int i = 0; i < 3; i++)
      if (line[i] < '0' || line[i] > '9')
        return 0;
    int final = (eol + 2 == r + n);
    if (final) {
      if (eol - line > 3 && line[3] != ' ')
        return 0;
      last = line;
    } else if (line[3] != '-') {
      return 0;
    }
    /* no bare CR or LF inside a line */
    for (const char *c = line; c < eol; c++)
      if (*c == '\r' || *c == '\n')
        return 0;
    line = eol + 2;
  }
  return strncmp(last, prefix, strlen(prefix)) == 0;
}

const char *h_unread(const harness *h) {
  return h_buf_str(&h->out) + h->out_read;
}

const char *h_output(const harness *h) { return h_buf_str(&h->out); }

int h_count_replies(const harness *h, const char *prefix) {
  const char *p = h_buf_str(&h->out);
  size_t n = h->out.len;
  size_t off = 0;
  int count = 0;
  while (off < n) {
    size_t len = reply_len(p + off, n - off);
    if (len == 0)
      break;
    const char *last = p + off;
    /* find the start of the final line */
    for (size_t i = off; i + 1 < off + len; i++)
      if (p[i] == '\n' && i + 1 < off + len)
        last = p + i + 1;
    if (strncmp(last, prefix, strlen(prefix)) == 0)
      count++;
    off += len;
  }
  return count;
}

int h_count(const harness *h, int ev) {
  return (ev > 0 && ev < H_NEV) ? h->count[ev] : 0;
}

int h_find(const harness *h, int ev, const char *str, size_t from) {
  for (size_t i = from; i < h->nevents; i++) {
    if (h->events[i].ev != ev)
      continue;
    if (str && (!h->events[i].str || strcmp(h->events[i].str, str) != 0))
      continue;
    return (int)i;
  }
  return -1;
}

const h_event *h_nth(const harness *h, int ev, int n) {
  for (size_t i = 0; i < h->nevents; i++)
    if (h->events[i].ev == ev && n-- == 0)
      return &h->events[i];
  return NULL;
}

int h_last_event(const harness *h) {
  return h->nevents ? h->events[h->nevents - 1].ev : 0;
}

const h_log *h_log_find(const harness *h, int kind, const char *needle) {
  for (size_t i = 0; i < h->nlogs; i++) {
    if (kind && h->logs[i].kind != kind)
      continue;
    if (!needle || strstr(h->logs[i].text, needle))
      return &h->logs[i];
  }
  return NULL;
}

int h_log_count(const harness *h, int kind) {
  int n = 0;
  for (size_t i = 0; i < h->nlogs; i++)
    if (!kind || h->logs[i].kind == kind)
      n++;
  return n;
}

const char *h_esc(harness *h, const char *p, size_t n) {
  h_esc_list *e = xrealloc(NULL, sizeof *e + 4 * n + 1);
  char *d = e->s;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\r') {
      *d++ = '\\';
      *d++ = 'r';
    } else if (c == '\n') {
      *d++ = '\\';
      *d++ = 'n';
    } else if (c < 0x20 || c == 0x7f) {
      d += sprintf(d, "\\x%02x", c);
    } else {
      *d++ = (char)c;
    }
  }
  *d = '\0';
  e->next = h->esc_list;
  h->esc_list = e;
  return e->s;
}

const char *h_esc0(harness *h, const char *p) {
  return h_esc(h, p ? p : "(null)", strlen(p ? p : "(null)"));
}

char *h_ehlo_ext(const char *reply, const char *kw) {
  size_t kwlen = strlen(kw);
  const char *line = reply;
  int first = 1;
  while (line && *line) {
    const char *eol = strstr(line, "\r\n");
    if (!eol)
      eol = line + strlen(line);
    if (!first && eol - line >= 4) {
      const char *k = line + 4;
      size_t n = (size_t)(eol - k);
      if (n >= kwlen && ncasecmp(k, kw, kwlen) == 0 &&
          (n == kwlen || k[kwlen] == ' ')) {
        const char *prm = k + kwlen;
        while (prm < eol && *prm == ' ')
          prm++;
        return xmemdup0(prm, (size_t)(eol - prm));
      }
    }
    first = 0;
    line = *eol ? eol + 2 : eol;
  }
  return NULL;
}

int h_has_word(const char *list, const char *word) {
  size_t wl = strlen(word);
  const char *p = list;
  while (p && *p) {
    while (*p == ' ')
      p++;
    const char *e = p;
    while (*e && *e != ' ')
      e++;
    if ((size_t)(e - p) == wl && ncasecmp(p, word, wl) == 0)
      return 1;
    p = e;
  }
  return 0;
}
