/* SPDX-License-Identifier: MIT */
/*
 * mxgw_lmtp.c: the sans-IO LMTP client core (RFC 2033). It keeps a queue of
 * the replies it waits for (one entry per command sent, and one per accepted
 * recipient after the end of data, RFC 2033 4.2), so pipelined commands
 * (RFC 2920) and their replies stay matched; converts the streamed body to
 * canonical CRLF form with dot-stuffing (RFC 5321 4.5.2) or BDAT framing
 * (RFC 3030); and gives every recipient exactly one result, made up as a
 * temporary failure when the backend never answered for it. TLS to the
 * backend runs through OpenSSL memory BIOs (as mxgw_session_tls.c does for
 * the server side), so the core still does no I/O.
 */
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgw/mxgw_lmtp.h"
#include "mxgw/mxgw_tls.h"
#include "mxgw_int.h"
#include "mxgw_lmtp_int.h"
#include "mxgw_tls_int.h"

/* ---- configuration ---------------------------------------------------- */

struct mxgw_lmtp_config {
  mxgw_mem mem;
  atomic_int refs;
  atomic_bool frozen;
  int64_t iopt[11];
  char *lhlo;
  char *servername;
  mxgw_tls *tls;
};

static const int64_t opt_min[11] = {0, 1, 1, 1, 0, 0, 0, 0, 0, 512, 4096};
static const int64_t opt_max[11] = {0,       INT32_MAX, INT32_MAX, INT32_MAX,
                                    1000000, 2,         1,         1,
                                    1,       16777216,  1 << 30};

int mxgw_lmtp_config_new(mxgw_lmtp_config **out, const mxgw_mem *mem) {
  if (!out)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_lmtp_config *cfg = mxgw__calloc(&m, 1, sizeof *cfg);
  if (!cfg)
    return MXGW_E_NOMEM;
  cfg->mem = m;
  atomic_init(&cfg->refs, 1);
  atomic_init(&cfg->frozen, false);
  cfg->iopt[MXGW_LMTP_OPT_CONNECT_TIMEOUT_MS] = 30000;
  cfg->iopt[MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS] = 300000;
  cfg->iopt[MXGW_LMTP_OPT_DATA_TIMEOUT_MS] = 600000;
  cfg->iopt[MXGW_LMTP_OPT_MAX_MESSAGES] = 100;
  cfg->iopt[MXGW_LMTP_OPT_STARTTLS] = 0;
  cfg->iopt[MXGW_LMTP_OPT_XCLIENT] = 1;
  cfg->iopt[MXGW_LMTP_OPT_PIPELINING] = 1;
  cfg->iopt[MXGW_LMTP_OPT_CHUNKING] = 0;
  cfg->iopt[MXGW_LMTP_OPT_CHUNK_SIZE] = 65536;
  cfg->iopt[MXGW_LMTP_OPT_BODY_BUFFER] = 262144;
  *out = cfg;
  return MXGW_OK;
}

static void config_unref(mxgw_lmtp_config *cfg) {
  if (!cfg || atomic_fetch_sub(&cfg->refs, 1) != 1)
    return;
  mxgw_mem m = cfg->mem;
  mxgw__free(&m, cfg->lhlo);
  mxgw__free(&m, cfg->servername);
  if (cfg->tls)
    mxgw__tls_unref(cfg->tls);
  mxgw__free(&m, cfg);
}

void mxgw_lmtp_config_free(mxgw_lmtp_config *cfg) { config_unref(cfg); }

int mxgw_lmtp_config_set_int(mxgw_lmtp_config *cfg, int key, int64_t value) {
  if (!cfg || key < 1 || key > 10)
    return MXGW_E_INVAL;
  if (atomic_load(&cfg->frozen))
    return MXGW_E_BUSY;
  if (value < opt_min[key] || value > opt_max[key])
    return MXGW_E_RANGE;
  cfg->iopt[key] = value;
  return MXGW_OK;
}

int mxgw_lmtp_config_get_int(const mxgw_lmtp_config *cfg, int key,
                             int64_t *out) {
  if (!cfg || !out || key < 1 || key > 10)
    return MXGW_E_INVAL;
  *out = cfg->iopt[key];
  return MXGW_OK;
}

/* Printable ASCII only: these strings go into command lines. */
static bool clean(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 127)
      return false;
  return true;
}

int mxgw_lmtp_config_set_str(mxgw_lmtp_config *cfg, int key,
                             const char *value) {
  if (!cfg || !value || !*value || !clean(value))
    return MXGW_E_INVAL;
  char **slot;
  if (key == MXGW_LMTP_OPT_LHLO_NAME)
    slot = &cfg->lhlo;
  else if (key == MXGW_LMTP_OPT_TLS_SERVERNAME)
    slot = &cfg->servername;
  else
    return MXGW_E_INVAL;
  if (atomic_load(&cfg->frozen))
    return MXGW_E_BUSY;
  char *d = mxgw__strdup(&cfg->mem, value);
  if (!d)
    return MXGW_E_NOMEM;
  mxgw__free(&cfg->mem, *slot);
  *slot = d;
  return MXGW_OK;
}

int mxgw_lmtp_config_set_tls(mxgw_lmtp_config *cfg, mxgw_tls *tls) {
  if (!cfg)
    return MXGW_E_INVAL;
  if (atomic_load(&cfg->frozen))
    return MXGW_E_BUSY;
  mxgw__tls_set(&cfg->tls, tls);
  return MXGW_OK;
}

/* ---- client state ------------------------------------------------------ */

/* What a queued reply answers. */
enum pk {
  PK_GREETING,
  PK_LHLO,
  PK_STARTTLS,
  PK_XCLIENT,
  PK_RSET,
  PK_MAIL,
  PK_RCPT,
  PK_DATA,
  PK_BDAT,  /* a non-final chunk */
  PK_FINAL, /* per accepted recipient, after "." or BDAT LAST */
  PK_QUIT
};

typedef struct pend {
  int kind;
  size_t idx;
} pend;

enum phase { PH_INIT, PH_GREETING, PH_LHLO, PH_STARTTLS, PH_TLS_HS, PH_READY,
             PH_QUIT, PH_CLOSED };

enum mstate {
  M_NONE,     /* no message */
  M_BUILD,    /* msg_new called, envelope being built */
  M_QUEUED,   /* submitted, waiting for the connection */
  M_XCLIENT,  /* XCLIENT and the LHLO after it */
  M_ENVELOPE, /* MAIL / RCPT / DATA sent */
  M_BODY,     /* body going out */
  M_FINAL,    /* end of data sent, per-recipient replies awaited */
  M_DONE      /* every recipient has its result */
};

typedef struct rcpt {
  char *addr;
  char *orcpt;
  int notify;
  int code;
  int stage;
  int local;
  bool accepted;
  char enh[16];
  char *text;
  size_t text_len;
} rcpt;

typedef struct ev {
  int type;
  size_t idx;
} ev;

struct mxgw_lmtp {
  mxgw_mem mem;
  mxgw_lmtp_config *cfg;
  int phase;
  int64_t now;
  int64_t deadline;
  bool started, quit_wanted, need_rset, in_lhlo_after_xclient;

  mxgw_buf in;   /* plaintext input */
  mxgw_buf out;  /* wire output */
  mxgw_buf pout; /* plaintext output while TLS is on */
  mxgw_buf rtext; /* scratch: text of the reply being handled */
  SSL *ssl;
  bool tls_hs;

  /* replies awaited */
  pend *pq;
  size_t pq_head, pq_len, pq_cap;

  /* events */
  ev *eq;
  size_t eq_head, eq_len, eq_cap;
  size_t ev_idx;

  /* server */
  int ext;
  int64_t size_limit;
  char *greeting;
  char *xclient_attrs;
  char *last_reply;
  int messages;

  /* the message */
  int mstate;
  char *from;
  int64_t size;
  int eightbit, smtputf8, ret;
  char *envid;
  char *xc[5]; /* ADDR HELO NAME PROTO LOGIN */
  int64_t xc_port;
  rcpt *rc;
  size_t nrc, rc_cap;
  size_t naccepted, nrcpt_replies, nfinal;
  size_t next_rcpt; /* without pipelining: next RCPT to send */
  bool chunking;    /* this message uses BDAT */
  bool body_ended, body_discard, body_final_sent;
  mxgw_buf body;    /* converted body not yet in the output */
  int conv_bol, conv_cr;
  int64_t body_octets;

  char errmsg[256];
  char errenh[16]; /* enhanced code of the failure that closed it */
};

/* ---- small helpers ---------------------------------------------------- */

static int64_t iopt(const mxgw_lmtp *c, int k) { return c->cfg->iopt[k]; }

static mxgw_buf *cmdbuf(mxgw_lmtp *c) { return c->ssl ? &c->pout : &c->out; }

static int push_ev(mxgw_lmtp *c, int type, size_t idx) {
  if (c->eq_head + c->eq_len == c->eq_cap) {
    if (c->eq_head) {
      memmove(c->eq, c->eq + c->eq_head, c->eq_len * sizeof *c->eq);
      c->eq_head = 0;
    } else {
      size_t nc = c->eq_cap ? c->eq_cap * 2 : 16;
      ev *n = mxgw__realloc(&c->mem, c->eq, nc * sizeof *n);
      if (!n)
        return MXGW_E_NOMEM;
      c->eq = n;
      c->eq_cap = nc;
    }
  }
  c->eq[c->eq_head + c->eq_len++] = (ev){type, idx};
  return MXGW_OK;
}

static int push_pend(mxgw_lmtp *c, int kind, size_t idx) {
  if (c->pq_head + c->pq_len == c->pq_cap) {
    if (c->pq_head) {
      memmove(c->pq, c->pq + c->pq_head, c->pq_len * sizeof *c->pq);
      c->pq_head = 0;
    } else {
      size_t nc = c->pq_cap ? c->pq_cap * 2 : 16;
      pend *n = mxgw__realloc(&c->mem, c->pq, nc * sizeof *n);
      if (!n)
        return MXGW_E_NOMEM;
      c->pq = n;
      c->pq_cap = nc;
    }
  }
  c->pq[c->pq_head + c->pq_len++] = (pend){kind, idx};
  return MXGW_OK;
}

static void arm(mxgw_lmtp *c, int64_t timeout) {
  c->deadline = c->now + timeout;
}

/* Queue a command line (CRLF appended) and the reply it waits for. */
static int send_cmd(mxgw_lmtp *c, int kind, size_t idx, const char *fmt, ...)
    MXGW_PRINTF(4, 5);
static int send_cmd(mxgw_lmtp *c, int kind, size_t idx, const char *fmt,
                    ...) {
  va_list ap;
  va_start(ap, fmt);
  int rv = mxgw__buf_vappendf(cmdbuf(c), &c->mem, fmt, ap);
  va_end(ap);
  if (rv || mxgw__buf_append(cmdbuf(c), &c->mem, "\r\n", 2) ||
      push_pend(c, kind, idx))
    return MXGW_E_NOMEM;
  arm(c, iopt(c, MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS));
  return MXGW_OK;
}

/* Give recipient i its result (once: the first result wins). */
static int set_result(mxgw_lmtp *c, size_t i, int code, const char *enh,
                      const char *text, size_t tlen, int stage, int local) {
  rcpt *r = &c->rc[i];
  if (r->code)
    return MXGW_OK;
  char *t = mxgw__memdup0(&c->mem, text, tlen);
  if (!t)
    return MXGW_E_NOMEM;
  r->code = code;
  r->stage = stage;
  r->local = local;
  snprintf(r->enh, sizeof r->enh, "%s", enh ? enh : "");
  r->text = t;
  r->text_len = tlen;
  return MXGW_OK;
}

static bool message_active(const mxgw_lmtp *c) {
  return c->mstate >= M_QUEUED && c->mstate < M_DONE;
}

/* The message is over: every recipient must have its result. */
static int finish_message(mxgw_lmtp *c) {
  c->mstate = M_DONE;
  c->messages++;
  mxgw__buf_free(&c->body, &c->mem);
  c->body_discard = true;
  return push_ev(c, MXGW_LMTP_EV_DONE, 0);
}

/* Fail every recipient still without a result; finish the message. */
static int fail_rest(mxgw_lmtp *c, int code, const char *enh,
                     const char *text, size_t tlen, int stage, int local) {
  if (!message_active(c))
    return MXGW_OK;
  for (size_t i = 0; i < c->nrc; i++)
    if (set_result(c, i, code, enh, text, tlen, stage, local))
      return MXGW_E_NOMEM;
  return finish_message(c);
}

/* The connection is unusable: everything waiting fails, and we close. */
static int conn_fail(mxgw_lmtp *c, int code, const char *enh,
                     const char *text, int stage, int local) {
  snprintf(c->errmsg, sizeof c->errmsg, "%.*s", (int)sizeof c->errmsg - 1, text);
  snprintf(c->errenh, sizeof c->errenh, "%s", enh);
  int rv = fail_rest(c, code, enh, text, strlen(text), stage, local);
  if (c->phase != PH_CLOSED) {
    c->phase = PH_CLOSED;
    c->pq_len = c->pq_head = 0;
    mxgw__buf_reset(&c->pout);
    if (!rv)
      rv = push_ev(c, MXGW_LMTP_EV_CLOSED, 0);
  }
  return rv;
}

static const char *phase_what(const mxgw_lmtp *c) {
  switch (c->mstate) {
  case M_ENVELOPE:
    return "while sending the envelope";
  case M_BODY:
    return "while sending the message body";
  case M_FINAL:
    return "while waiting for the end-of-data replies";
  default:
    break;
  }
  switch (c->phase) {
  case PH_GREETING:
    return "while waiting for the greeting";
  case PH_LHLO:
    return "after LHLO";
  case PH_STARTTLS:
  case PH_TLS_HS:
    return "during STARTTLS";
  default:
    return "";
  }
}

/* Stage a failure of the connection is reported with. */
static int cur_stage(const mxgw_lmtp *c) {
  switch (c->mstate) {
  case M_ENVELOPE:
    return MXGW_LMTP_STAGE_RCPT;
  case M_BODY:
    return MXGW_LMTP_STAGE_DATA;
  case M_FINAL:
    return MXGW_LMTP_STAGE_DELIVERY;
  default:
    return MXGW_LMTP_STAGE_CONNECT;
  }
}

/* ---- reply parser ------------------------------------------------------ */

static bool isdig(int ch) { return ch >= '0' && ch <= '9'; }

/* Length of an enhanced status code "c.s.d" at p (RFC 3463: class 2/4/5,
 * subject and detail 1-3 digits) followed by SP or the end, else 0. */
static size_t enh_len(const char *p, size_t n) {
  size_t i = 0;
  if (n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
    return 0;
  i = 2;
  for (int part = 0; part < 2; part++) {
    size_t d = 0;
    while (i < n && isdig((unsigned char)p[i]) && d < 4)
      i++, d++;
    if (d == 0 || d > 3)
      return 0;
    if (part == 0) {
      if (i >= n || p[i] != '.')
        return 0;
      i++;
    }
  }
  if (i < n && p[i] != ' ')
    return 0;
  return i;
}

int mxgw__lmtp_reply_parse(const char *p, size_t n, mxgw__lmtp_reply *r,
                           char *text, size_t *tlen) {
  size_t pos = 0, el = 0;
  r->code = 0;
  r->enh[0] = '\0';
  r->lines = 0;
  r->err = NULL;
  *tlen = 0;
  for (;;) {
    /* one line: find CRLF within the limit */
    size_t avail = n - pos, lim = avail;
    if (lim > MXGW__LMTP_MAX_REPLY_LINE)
      lim = MXGW__LMTP_MAX_REPLY_LINE;
    const char *l = p + pos;
    size_t e = 0;
    bool found = false;
    for (; e < lim; e++) {
      unsigned char ch = (unsigned char)l[e];
      if (ch == '\r') {
        if (e + 1 >= avail)
          break; /* need the next byte */
        if (l[e + 1] != '\n') {
          r->err = "bare CR in reply";
          return MXGW_E_PROTOCOL;
        }
        found = true;
        break;
      }
      if (ch == '\n') {
        r->err = "bare LF in reply";
        return MXGW_E_PROTOCOL;
      }
      if (ch == 0) {
        r->err = "NUL in reply";
        return MXGW_E_PROTOCOL;
      }
    }
    /* check the code as soon as its bytes are there */
    size_t have = found ? e : (e < avail ? e : avail);
    if (have >= 1 && (l[0] < '2' || l[0] > '5')) {
      r->err = "reply code must start with 2, 3, 4 or 5";
      return MXGW_E_PROTOCOL;
    }
    if (have >= 2 && (l[1] < '0' || l[1] > '5')) {
      r->err = "bad second digit of reply code";
      return MXGW_E_PROTOCOL;
    }
    if (have >= 3 && !isdig((unsigned char)l[2])) {
      r->err = "bad third digit of reply code";
      return MXGW_E_PROTOCOL;
    }
    if (have >= 4 && l[3] != '-' && l[3] != ' ') {
      r->err = "reply code not followed by SP or '-'";
      return MXGW_E_PROTOCOL;
    }
    if (!found) {
      if (e >= MXGW__LMTP_MAX_REPLY_LINE) {
        r->err = "reply line too long";
        return MXGW_E_PROTOCOL;
      }
      return 0;
    }
    if (e < 3) {
      r->err = "reply line shorter than a code";
      return MXGW_E_PROTOCOL;
    }
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    if (r->lines == 0)
      r->code = code;
    else if (code != r->code) {
      r->err = "reply lines with different codes";
      return MXGW_E_PROTOCOL;
    }
    bool more = e > 3 && l[3] == '-';
    const char *t = e > 4 ? l + 4 : l + e;
    size_t tl = e > 4 ? e - 4 : 0;
    if (r->lines == 0) {
      el = enh_len(t, tl);
      if (el && t[0] == l[0] && el < sizeof r->enh) {
        memcpy(r->enh, t, el);
        r->enh[el] = '\0';
      } else
        el = 0;
    }
    if (el && tl >= el && memcmp(t, r->enh, el) == 0 &&
        (tl == el || t[el] == ' ')) {
      t += el;
      tl -= el;
      if (tl) {
        t++;
        tl--;
      }
    }
    if (r->lines)
      text[(*tlen)++] = '\n';
    memcpy(text + *tlen, t, tl);
    *tlen += tl;
    r->lines++;
    pos += e + 2;
    if (!more)
      return (int)pos;
    if (r->lines >= MXGW__LMTP_MAX_REPLY_LINES) {
      r->err = "too many reply lines";
      return MXGW_E_PROTOCOL;
    }
    if (pos >= n)
      return 0;
  }
}

/* ---- LHLO extensions ---------------------------------------------------- */

static int parse_ehlo(mxgw_lmtp *c, const char *t, size_t tl) {
  c->ext = 0;
  c->size_limit = 0;
  mxgw__free(&c->mem, c->xclient_attrs);
  c->xclient_attrs = NULL;
  size_t i = 0;
  bool first = true;
  while (i <= tl) {
    size_t j = i;
    while (j < tl && t[j] != '\n')
      j++;
    const char *l = t + i;
    size_t ll = j - i;
    i = j + 1;
    if (first) { /* the first line is the server's name */
      first = false;
      continue;
    }
    size_t kw = 0;
    while (kw < ll && l[kw] != ' ')
      kw++;
    const char *arg = kw < ll ? l + kw + 1 : l + ll;
    size_t al = kw < ll ? ll - kw - 1 : 0;
    static const struct {
      const char *name;
      int bit;
    } tab[] = {{"PIPELINING", MXGW_LMTP_EXT_PIPELINING},
               {"SIZE", MXGW_LMTP_EXT_SIZE},
               {"8BITMIME", MXGW_LMTP_EXT_8BITMIME},
               {"SMTPUTF8", MXGW_LMTP_EXT_SMTPUTF8},
               {"ENHANCEDSTATUSCODES", MXGW_LMTP_EXT_ENHANCEDSTATUSCODES},
               {"CHUNKING", MXGW_LMTP_EXT_CHUNKING},
               {"DSN", MXGW_LMTP_EXT_DSN},
               {"STARTTLS", MXGW_LMTP_EXT_STARTTLS},
               {"XCLIENT", MXGW_LMTP_EXT_XCLIENT}};
    for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++) {
      if (!mxgw__ieq(l, kw, tab[k].name))
        continue;
      c->ext |= tab[k].bit;
      if (tab[k].bit == MXGW_LMTP_EXT_SIZE) {
        int64_t v = 0;
        for (size_t q = 0; q < al && isdig((unsigned char)arg[q]); q++)
          if (v < INT64_MAX / 10 - 10)
            v = v * 10 + (arg[q] - '0');
        c->size_limit = v;
      } else if (tab[k].bit == MXGW_LMTP_EXT_XCLIENT) {
        c->xclient_attrs = mxgw__memdup0(&c->mem, arg, al);
        if (!c->xclient_attrs)
          return MXGW_E_NOMEM;
      }
    }
  }
  return MXGW_OK;
}

/* Is attribute name listed in XCLIENT's offer? */
static bool xclient_offers(const mxgw_lmtp *c, const char *name) {
  const char *s = c->xclient_attrs;
  if (!s)
    return false;
  size_t nl = strlen(name);
  while (*s) {
    while (*s == ' ')
      s++;
    size_t w = 0;
    while (s[w] && s[w] != ' ')
      w++;
    if (w && mxgw__ieq(s, w, name))
      return true;
    (void)nl;
    s += w;
  }
  return false;
}

/* ---- sending the message ------------------------------------------------ */

/* xtext (RFC 3461 4): '+', '=', and octets outside 33..126 as +XX. */
static int append_xtext(mxgw_buf *b, const mxgw_mem *m, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    int rv = (ch < 33 || ch > 126 || ch == '+' || ch == '=')
                 ? mxgw__buf_appendf(b, m, "+%02X", ch)
                 : mxgw__buf_append(b, m, s, 1);
    if (rv)
      return MXGW_E_NOMEM;
  }
  return MXGW_OK;
}

static int send_rcpt(mxgw_lmtp *c, size_t i) {
  mxgw_buf *b = cmdbuf(c);
  rcpt *r = &c->rc[i];
  if (mxgw__buf_appendf(b, &c->mem, "RCPT TO:<%s>", r->addr))
    return MXGW_E_NOMEM;
  if ((c->ext & MXGW_LMTP_EXT_DSN) && r->notify) {
    static const char *names[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
    const char *sep = " NOTIFY=";
    for (int k = 0; k < 4; k++)
      if (r->notify & (1 << k)) {
        if (mxgw__buf_appendf(b, &c->mem, "%s%s", sep, names[k]))
          return MXGW_E_NOMEM;
        sep = ",";
      }
  }
  if ((c->ext & MXGW_LMTP_EXT_DSN) && r->orcpt) {
    const char *semi = strchr(r->orcpt, ';');
    if (semi) {
      if (mxgw__buf_appendf(b, &c->mem, " ORCPT=%.*s;", (int)(semi - r->orcpt),
                            r->orcpt) ||
          append_xtext(b, &c->mem, semi + 1))
        return MXGW_E_NOMEM;
    }
  }
  return send_cmd(c, PK_RCPT, i, "%s", "");
}

static int send_data_cmd(mxgw_lmtp *c) {
  return send_cmd(c, PK_DATA, 0, "DATA");
}

/* MAIL, and with pipelining every RCPT and DATA too. */
static int send_envelope(mxgw_lmtp *c) {
  c->mstate = M_ENVELOPE;
  if (c->smtputf8 && !(c->ext & MXGW_LMTP_EXT_SMTPUTF8)) {
    static const char t[] = "backend does not support SMTPUTF8";
    return fail_rest(c, 553, "5.6.7", t, sizeof t - 1, MXGW_LMTP_STAGE_MAIL,
                     1);
  }
  if ((c->ext & MXGW_LMTP_EXT_SIZE) && c->size_limit > 0 &&
      c->size > c->size_limit) {
    static const char t[] = "message too big for the backend";
    return fail_rest(c, 552, "5.3.4", t, sizeof t - 1, MXGW_LMTP_STAGE_MAIL,
                     1);
  }
  c->chunking = iopt(c, MXGW_LMTP_OPT_CHUNKING) &&
                (c->ext & MXGW_LMTP_EXT_CHUNKING);
  mxgw_buf *b = cmdbuf(c);
  if (mxgw__buf_appendf(b, &c->mem, "MAIL FROM:<%s>", c->from))
    return MXGW_E_NOMEM;
  if ((c->ext & MXGW_LMTP_EXT_SIZE) && c->size >= 0 &&
      mxgw__buf_appendf(b, &c->mem, " SIZE=%lld", (long long)c->size))
    return MXGW_E_NOMEM;
  if ((c->ext & MXGW_LMTP_EXT_8BITMIME) && c->eightbit &&
      mxgw__buf_appendf(b, &c->mem, " BODY=8BITMIME"))
    return MXGW_E_NOMEM;
  if (c->smtputf8 && mxgw__buf_appendf(b, &c->mem, " SMTPUTF8"))
    return MXGW_E_NOMEM;
  if ((c->ext & MXGW_LMTP_EXT_DSN) && c->ret &&
      mxgw__buf_appendf(b, &c->mem, " RET=%s", c->ret == 1 ? "FULL" : "HDRS"))
    return MXGW_E_NOMEM;
  if ((c->ext & MXGW_LMTP_EXT_DSN) && c->envid &&
      (mxgw__buf_appendf(b, &c->mem, " ENVID=") ||
       append_xtext(b, &c->mem, c->envid)))
    return MXGW_E_NOMEM;
  int rv = send_cmd(c, PK_MAIL, 0, "%s", "");
  if (rv)
    return rv;
  bool pipe = iopt(c, MXGW_LMTP_OPT_PIPELINING) &&
              (c->ext & MXGW_LMTP_EXT_PIPELINING);
  if (!pipe) {
    c->next_rcpt = 0;
    return MXGW_OK;
  }
  for (size_t i = 0; i < c->nrc; i++)
    if ((rv = send_rcpt(c, i)))
      return rv;
  c->next_rcpt = c->nrc;
  if (!c->chunking)
    return send_data_cmd(c);
  return MXGW_OK;
}

static int start_message(mxgw_lmtp *c) {
  bool any = false;
  for (int k = 0; k < 5; k++)
    any |= c->xc[k] != NULL;
  any |= c->xc_port > 0;
  if (c->need_rset) {
    c->need_rset = false;
    int rv = send_cmd(c, PK_RSET, 0, "RSET");
    if (rv)
      return rv;
  }
  if (any && iopt(c, MXGW_LMTP_OPT_XCLIENT) &&
      (c->ext & MXGW_LMTP_EXT_XCLIENT)) {
    static const char *names[] = {"ADDR", "HELO", "NAME", "PROTO", "LOGIN"};
    mxgw_buf *b = cmdbuf(c);
    if (mxgw__buf_appendf(b, &c->mem, "XCLIENT"))
      return MXGW_E_NOMEM;
    int sent = 0;
    for (int k = 0; k < 5; k++)
      if (c->xc[k] && xclient_offers(c, names[k])) {
        if (mxgw__buf_appendf(b, &c->mem, " %s=", names[k]) ||
            append_xtext(b, &c->mem, c->xc[k]))
          return MXGW_E_NOMEM;
        sent++;
      }
    if (c->xc_port > 0 && xclient_offers(c, "PORT")) {
      if (mxgw__buf_appendf(b, &c->mem, " PORT=%lld", (long long)c->xc_port))
        return MXGW_E_NOMEM;
      sent++;
    }
    if (sent) {
      c->mstate = M_XCLIENT;
      return send_cmd(c, PK_XCLIENT, 0, "%s", "");
    }
    /* nothing we have is offered: take back "XCLIENT" */
    b->len -= 7;
  }
  return send_envelope(c);
}

/* Length of the run at p (at most n bytes) that holds no CR and no LF. */
static size_t plain_run(const unsigned char *p, size_t n) {
  const unsigned char *lf = memchr(p, '\n', n);
  if (lf)
    n = (size_t)(lf - p);
  const unsigned char *cr = memchr(p, '\r', n);
  return cr ? (size_t)(cr - p) : n;
}

/* Append converted body octets: CRLF lines, dot-stuffed for DATA. The
 * bytes between line ends are copied as runs; line ends, a pending CR and
 * a dot at the start of a line go one byte at a time. The body buffer
 * stays within the BODY_BUFFER option (a byte may add up to 4 octets). */
static int conv(mxgw_lmtp *c, const unsigned char *p, size_t n,
                size_t *taken) {
  mxgw_buf *b = &c->body;
  size_t cap = (size_t)iopt(c, MXGW_LMTP_OPT_BODY_BUFFER);
  size_t i = 0;
  if (mxgw__buf_reserve(b, &c->mem, n * 2 + 4 < cap ? n * 2 + 4 : cap + 4))
    return MXGW_E_NOMEM;
  while (i < n) {
    size_t size = mxgw__buf_size(b);
    if (size + 4 > cap)
      break;
    unsigned char ch = p[i];
    if (!c->conv_cr && ch != '\r' && ch != '\n' &&
        !(c->conv_bol && ch == '.' && !c->chunking)) {
      size_t k = plain_run(p + i, n - i);
      if (k > cap - 3 - size)
        k = cap - 3 - size;
      if (mxgw__buf_append(b, &c->mem, p + i, k))
        return MXGW_E_NOMEM;
      c->conv_bol = 0;
      i += k;
      continue;
    }
    if (mxgw__buf_reserve(b, &c->mem, 4))
      return MXGW_E_NOMEM;
    char *w = b->data + b->len;
    size_t k = 0;
    i++;
    if (c->conv_cr) { /* a CR is pending: CRLF, or a bare CR made CRLF */
      c->conv_cr = 0;
      w[k++] = '\r';
      w[k++] = '\n';
      c->conv_bol = 1;
      if (ch == '\n') {
        b->len += k;
        continue;
      }
    }
    if (ch == '\r') {
      c->conv_cr = 1;
    } else if (ch == '\n') {
      w[k++] = '\r';
      w[k++] = '\n';
      c->conv_bol = 1;
    } else {
      if (c->conv_bol && ch == '.' && !c->chunking)
        w[k++] = '.';
      w[k++] = (char)ch;
      c->conv_bol = 0;
    }
    b->len += k;
  }
  *taken = i;
  return MXGW_OK;
}

/* Move converted body into the output (framed as BDAT when chunking). */
static int pump_body(mxgw_lmtp *c) {
  if (c->mstate != M_BODY)
    return MXGW_OK;
  size_t cap = (size_t)iopt(c, MXGW_LMTP_OPT_BODY_BUFFER);
  for (;;) {
    size_t outsz = mxgw__buf_size(&c->out) + mxgw__buf_size(&c->pout);
    size_t have = mxgw__buf_size(&c->body);
    if (outsz >= cap)
      return MXGW_OK;
    if (!c->chunking) {
      if (have) {
        size_t n = have < cap - outsz ? have : cap - outsz;
        if (mxgw__buf_append(cmdbuf(c), &c->mem, mxgw__buf_ptr(&c->body), n))
          return MXGW_E_NOMEM;
        mxgw__buf_consume(&c->body, n);
        c->body_octets += (int64_t)n;
        c->deadline = c->now + iopt(c, MXGW_LMTP_OPT_DATA_TIMEOUT_MS);
        continue;
      }
      if (!c->body_ended)
        return MXGW_OK;
      if (mxgw__buf_append(cmdbuf(c), &c->mem, ".\r\n", 3))
        return MXGW_E_NOMEM;
    } else {
      size_t chunk = (size_t)iopt(c, MXGW_LMTP_OPT_CHUNK_SIZE);
      if (!c->body_ended && have < chunk)
        return MXGW_OK;
      size_t n = have < chunk ? have : chunk;
      bool last = c->body_ended && n == have;
      if (mxgw__buf_appendf(cmdbuf(c), &c->mem, "BDAT %zu%s\r\n", n,
                            last ? " LAST" : "") ||
          mxgw__buf_append(cmdbuf(c), &c->mem, mxgw__buf_ptr(&c->body), n))
        return MXGW_E_NOMEM;
      mxgw__buf_consume(&c->body, n);
      c->body_octets += (int64_t)n;
      if (!last) {
        if (push_pend(c, PK_BDAT, 0))
          return MXGW_E_NOMEM;
        c->deadline = c->now + iopt(c, MXGW_LMTP_OPT_DATA_TIMEOUT_MS);
        continue;
      }
    }
    /* end of data: one reply per accepted recipient, in RCPT order */
    for (size_t i = 0; i < c->nrc; i++)
      if (c->rc[i].accepted && push_pend(c, PK_FINAL, i))
        return MXGW_E_NOMEM;
    c->mstate = M_FINAL;
    c->body_final_sent = true;
    c->deadline = c->now + iopt(c, MXGW_LMTP_OPT_DATA_TIMEOUT_MS);
    return MXGW_OK;
  }
}

/* After a message: READY for the next one, or QUIT. */
static int after_message(mxgw_lmtp *c) {
  int64_t max = iopt(c, MXGW_LMTP_OPT_MAX_MESSAGES);
  if (c->phase != PH_READY)
    return MXGW_OK;
  if (c->quit_wanted || (max > 0 && c->messages >= max)) {
    c->phase = PH_QUIT;
    return send_cmd(c, PK_QUIT, 0, "QUIT");
  }
  return push_ev(c, MXGW_LMTP_EV_READY, 0);
}

/* Start what can start now. */
static int advance(mxgw_lmtp *c) {
  if (c->phase == PH_READY && c->mstate == M_QUEUED && c->pq_len == 0)
    return start_message(c);
  if (c->phase == PH_READY && c->quit_wanted && !message_active(c) &&
      c->pq_len == 0) {
    c->phase = PH_QUIT;
    return send_cmd(c, PK_QUIT, 0, "QUIT");
  }
  return pump_body(c);
}

/* ---- TLS ---------------------------------------------------------------- */

static int tls_fail(mxgw_lmtp *c, const char *what) {
  unsigned long e = ERR_peek_last_error();
  char buf[160] = "", msg[256];
  if (e)
    ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  long vr = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
  snprintf(msg, sizeof msg, "%s%s%s%s%s", what, e ? ": " : "", buf,
           vr != X509_V_OK ? ": " : "",
           vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
  return conn_fail(c, 451, "4.7.5", msg, MXGW_LMTP_STAGE_CONNECT, 1);
}

static int drain_wbio(mxgw_lmtp *c) {
  BIO *wb = SSL_get_wbio(c->ssl);
  size_t npend;
  while ((npend = BIO_ctrl_pending(wb)) > 0) {
    if (mxgw__buf_reserve(&c->out, &c->mem, npend))
      return MXGW_E_NOMEM;
    int r = BIO_read(wb, c->out.data + c->out.len, (int)npend);
    if (r <= 0)
      break;
    c->out.len += (size_t)r;
  }
  return MXGW_OK;
}

static int tls_begin(mxgw_lmtp *c) {
  char why[200] = "";
  const char *name = c->cfg->servername;
  SSL *ssl = mxgw__tls_client_ssl(c->cfg->tls, name, why, sizeof why);
  if (!ssl) {
    char m[256];
    snprintf(m, sizeof m, "TLS not available: %s", why);
    return conn_fail(c, 451, "4.7.5", m, MXGW_LMTP_STAGE_CONNECT, 1);
  }
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  if (!rb || !wb) {
    BIO_free(rb);
    BIO_free(wb);
    SSL_free(ssl);
    return MXGW_E_NOMEM;
  }
  BIO_set_mem_eof_return(rb, -1);
  SSL_set_bio(ssl, rb, wb);
  c->ssl = ssl;
  c->tls_hs = true;
  c->phase = PH_TLS_HS;
  return MXGW_OK;
}

/* Handshake or decrypt what arrived. 1 when the handshake just finished. */
static int tls_pump(mxgw_lmtp *c) {
  int done = 0;
  if (c->tls_hs) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
      c->tls_hs = false;
      done = 1;
    } else {
      int e = SSL_get_error(c->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        drain_wbio(c);
        int rv = tls_fail(c, "TLS handshake with the backend failed");
        return rv ? rv : -100;
      }
    }
  }
  if (!c->tls_hs) {
    for (;;) {
      if (mxgw__buf_reserve(&c->in, &c->mem, 16384))
        return MXGW_E_NOMEM;
      ERR_clear_error();
      int r = SSL_read(c->ssl, c->in.data + c->in.len, 16384);
      if (r > 0) {
        c->in.len += (size_t)r;
        continue;
      }
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
          e == SSL_ERROR_ZERO_RETURN)
        break;
      int rv = tls_fail(c, "TLS read failed");
      return rv ? rv : -100;
    }
  }
  if (drain_wbio(c))
    return MXGW_E_NOMEM;
  return done;
}

static int tls_flush(mxgw_lmtp *c) {
  if (!c->ssl || c->tls_hs)
    return MXGW_OK;
  while (mxgw__buf_size(&c->pout)) {
    size_t n = mxgw__buf_size(&c->pout);
    if (n > 65536)
      n = 65536;
    ERR_clear_error();
    int w = SSL_write(c->ssl, mxgw__buf_ptr(&c->pout), (int)n);
    if (w <= 0)
      return tls_fail(c, "TLS write failed");
    mxgw__buf_consume(&c->pout, (size_t)w);
  }
  return drain_wbio(c);
}

/* ---- handling replies --------------------------------------------------- */

static int send_lhlo(mxgw_lmtp *c) {
  const char *name = c->cfg->lhlo ? c->cfg->lhlo : "localhost";
  return send_cmd(c, PK_LHLO, 0, "LHLO %s", name);
}

static int on_reply(mxgw_lmtp *c, const mxgw__lmtp_reply *r, const char *t,
                    size_t tl) {
  int rv = MXGW_OK;
  bool ok = r->code >= 200 && r->code < 300;
  const char *enh = r->enh[0] ? r->enh : NULL;
  if (c->pq_len == 0)
    return conn_fail(c, 451, "4.5.0",
                     "protocol error: reply from the backend to no command",
                     cur_stage(c), 1);
  pend p = c->pq[c->pq_head++];
  if (--c->pq_len == 0)
    c->pq_head = 0;
  /* a deadline runs while replies are awaited */
  if (c->pq_len)
    arm(c, c->mstate == M_FINAL ? iopt(c, MXGW_LMTP_OPT_DATA_TIMEOUT_MS)
                                : iopt(c, MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS));
  else
    c->deadline = -1;

  /* 421: the backend is closing (RFC 5321 3.8); PK_FINAL keeps its own. */
  if (r->code == 421 && p.kind != PK_FINAL && p.kind != PK_QUIT)
    return fail_rest(c, r->code, enh, t, tl, cur_stage(c), 0)
               ? MXGW_E_NOMEM
               : conn_fail(c, r->code, enh, "backend closing (421)",
                           cur_stage(c), 0);

  switch (p.kind) {
  case PK_GREETING:
    if (r->code != 220)
      break;
    mxgw__free(&c->mem, c->greeting);
    c->greeting = mxgw__memdup0(&c->mem, t, tl);
    if (!c->greeting)
      return MXGW_E_NOMEM;
    c->phase = PH_LHLO;
    return send_lhlo(c);
  case PK_LHLO:
    if (!ok)
      break;
    if ((rv = parse_ehlo(c, t, tl)))
      return rv;
    if (c->mstate == M_XCLIENT) /* LHLO after XCLIENT */
      return send_envelope(c);
    if (!c->ssl && iopt(c, MXGW_LMTP_OPT_STARTTLS) && c->cfg->tls) {
      if (c->ext & MXGW_LMTP_EXT_STARTTLS) {
        c->phase = PH_STARTTLS;
        return send_cmd(c, PK_STARTTLS, 0, "STARTTLS");
      }
      if (iopt(c, MXGW_LMTP_OPT_STARTTLS) == 2)
        return conn_fail(c, 451, "4.7.5",
                         "backend does not offer STARTTLS",
                         MXGW_LMTP_STAGE_CONNECT, 1);
    }
    c->phase = PH_READY;
    if ((rv = push_ev(c, MXGW_LMTP_EV_READY, 0)))
      return rv;
    return advance(c);
  case PK_STARTTLS:
    if (r->code == 220) {
      /* RFC 3207 6: nothing may follow the 220 in the clear */
      if (mxgw__buf_size(&c->in))
        return conn_fail(c, 451, "4.5.0",
                         "protocol error: data after the STARTTLS reply",
                         MXGW_LMTP_STAGE_CONNECT, 1);
      return tls_begin(c);
    }
    if (iopt(c, MXGW_LMTP_OPT_STARTTLS) == 2)
      break;
    c->phase = PH_READY;
    if ((rv = push_ev(c, MXGW_LMTP_EV_READY, 0)))
      return rv;
    return advance(c);
  case PK_XCLIENT:
    /* The XCLIENT reply is a new greeting: LHLO again. The LHLO name is
     * the client's HELO when XCLIENT passed one, since the LHLO argument
     * replaces the HELO the backend records (Dovecot's Received header). */
    if (ok && c->xc[1] && xclient_offers(c, "HELO") && clean(c->xc[1]))
      return send_cmd(c, PK_LHLO, 0, "LHLO %s", c->xc[1]);
    if (ok)
      return send_lhlo(c);
    /* refused: go on without it */
    snprintf(c->errmsg, sizeof c->errmsg, "XCLIENT refused: %d %.*s", r->code,
             (int)(tl > 200 ? 200 : tl), t);
    return send_envelope(c);
  case PK_RSET:
    if (!ok)
      break;
    return MXGW_OK;
  case PK_MAIL:
    if (!message_active(c))
      return MXGW_OK;
    if (!ok) {
      /* pipelined RCPT and DATA replies still come: they are ignored */
      rv = fail_rest(c, r->code, enh, t, tl, MXGW_LMTP_STAGE_MAIL, 0);
      return rv ? rv : after_message(c);
    }
    c->need_rset = true;
    if (c->next_rcpt == 0 && c->nrc)
      return send_rcpt(c, c->next_rcpt++);
    return MXGW_OK;
  case PK_RCPT: {
    if (!message_active(c))
      return MXGW_OK;
    c->nrcpt_replies++;
    if (ok)
      c->rc[p.idx].accepted = true, c->naccepted++;
    else if ((rv = set_result(c, p.idx, r->code, enh, t, tl,
                              MXGW_LMTP_STAGE_RCPT, 0)))
      return rv;
    if ((rv = push_ev(c, MXGW_LMTP_EV_RCPT, p.idx)))
      return rv;
    if (c->nrcpt_replies < c->nrc) {
      if (c->next_rcpt < c->nrc && c->next_rcpt == c->nrcpt_replies)
        return send_rcpt(c, c->next_rcpt++);
      return MXGW_OK;
    }
    /* all RCPT replies are in */
    bool data_sent = c->pq_len && c->pq[c->pq_head].kind == PK_DATA;
    if (c->naccepted == 0) {
      if (data_sent)
        return MXGW_OK; /* its (failing) reply finishes the message */
      rv = finish_message(c);
      return rv ? rv : after_message(c);
    }
    if (c->chunking) {
      c->mstate = M_BODY;
      return pump_body(c);
    }
    if (!data_sent)
      return send_data_cmd(c);
    return MXGW_OK;
  }
  case PK_DATA:
    if (!message_active(c)) {
      if (r->code == 354) /* cannot end it cleanly: drop the connection */
        return conn_fail(c, 451, "4.5.0",
                         "protocol error: 354 to DATA without recipients",
                         MXGW_LMTP_STAGE_DATA, 1);
      return MXGW_OK;
    }
    if (r->code == 354) {
      if (c->naccepted == 0)
        return conn_fail(c, 451, "4.5.0",
                         "protocol error: 354 to DATA without recipients",
                         MXGW_LMTP_STAGE_DATA, 1);
      c->mstate = M_BODY;
      return pump_body(c);
    }
    rv = fail_rest(c, r->code, enh, t, tl, MXGW_LMTP_STAGE_DATA, 0);
    return rv ? rv : after_message(c);
  case PK_BDAT:
    if (ok)
      return MXGW_OK;
    /* the chunks after it cannot be taken back: fail and drop */
    if ((rv = fail_rest(c, r->code, enh, t, tl, MXGW_LMTP_STAGE_DATA, 0)))
      return rv;
    return conn_fail(c, r->code, enh, "BDAT refused", MXGW_LMTP_STAGE_DATA,
                     0);
  case PK_FINAL:
    if ((rv = set_result(c, p.idx, r->code, enh, t, tl,
                         MXGW_LMTP_STAGE_DELIVERY, 0)))
      return rv;
    if (++c->nfinal == c->naccepted) {
      c->need_rset = false;
      if ((rv = finish_message(c)))
        return rv;
      if (r->code == 421)
        return conn_fail(c, 421, enh, "backend closing (421)",
                         MXGW_LMTP_STAGE_CONNECT, 0);
      return after_message(c);
    }
    return MXGW_OK;
  case PK_QUIT:
    c->phase = PH_CLOSED;
    return push_ev(c, MXGW_LMTP_EV_CLOSED, 0);
  }
  /* a failing reply to a connection-level command */
  char msg[300];
  snprintf(msg, sizeof msg, "%.*s", (int)(tl > 250 ? 250 : tl), t);
  int code = r->code >= 500 && c->mstate == M_QUEUED ? r->code : r->code;
  if ((rv = fail_rest(c, code, enh, t, tl, MXGW_LMTP_STAGE_CONNECT, 0)))
    return rv;
  return conn_fail(c, code, enh, msg, MXGW_LMTP_STAGE_CONNECT, 0);
}

/* Parse and handle every complete reply in the input. */
static int process(mxgw_lmtp *c) {
  while (c->phase != PH_CLOSED && c->phase != PH_TLS_HS &&
         mxgw__buf_size(&c->in)) {
    size_t n = mxgw__buf_size(&c->in);
    mxgw__lmtp_reply r;
    size_t tl;
    if (mxgw__buf_reserve(&c->rtext, &c->mem, n + 1))
      return MXGW_E_NOMEM;
    mxgw__buf_reset(&c->rtext);
    int got = mxgw__lmtp_reply_parse(mxgw__buf_ptr(&c->in), n, &r,
                                     c->rtext.data, &tl);
    if (got == 0)
      return MXGW_OK;
    if (got < 0) {
      char m[200];
      snprintf(m, sizeof m, "protocol error: %s", r.err);
      return conn_fail(c, 451, "4.5.0", m, cur_stage(c), 1);
    }
    mxgw__free(&c->mem, c->last_reply);
    c->last_reply = mxgw__memdup0(&c->mem, mxgw__buf_ptr(&c->in), (size_t)got);
    mxgw__buf_consume(&c->in, (size_t)got);
    if (!c->last_reply)
      return MXGW_E_NOMEM;
    int rv = on_reply(c, &r, c->rtext.data, tl);
    if (rv)
      return rv;
    if (c->phase == PH_TLS_HS) {
      rv = tls_pump(c);
      if (rv < 0)
        return rv == -100 ? MXGW_OK : rv;
    }
  }
  return MXGW_OK;
}

/* ---- public: lifecycle and I/O ---------------------------------------- */

int mxgw_lmtp_new(mxgw_lmtp **out, mxgw_lmtp_config *cfg,
                  const mxgw_mem *mem) {
  if (!out || !cfg)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_lmtp *c = mxgw__calloc(&m, 1, sizeof *c);
  if (!c)
    return MXGW_E_NOMEM;
  c->mem = m;
  atomic_store(&cfg->frozen, true);
  atomic_fetch_add(&cfg->refs, 1);
  c->cfg = cfg;
  c->phase = PH_INIT;
  c->deadline = -1;
  c->size = -1;
  *out = c;
  return MXGW_OK;
}

static void free_message(mxgw_lmtp *c) {
  for (size_t i = 0; i < c->nrc; i++) {
    mxgw__free(&c->mem, c->rc[i].addr);
    mxgw__free(&c->mem, c->rc[i].orcpt);
    mxgw__free(&c->mem, c->rc[i].text);
  }
  c->nrc = 0;
  mxgw__free(&c->mem, c->from);
  mxgw__free(&c->mem, c->envid);
  c->from = c->envid = NULL;
  for (int k = 0; k < 5; k++) {
    mxgw__free(&c->mem, c->xc[k]);
    c->xc[k] = NULL;
  }
  mxgw__buf_free(&c->body, &c->mem);
}

void mxgw_lmtp_free(mxgw_lmtp *c) {
  if (!c)
    return;
  free_message(c);
  mxgw__free(&c->mem, c->rc);
  mxgw__buf_free(&c->in, &c->mem);
  mxgw__buf_free(&c->out, &c->mem);
  mxgw__buf_free(&c->pout, &c->mem);
  mxgw__buf_free(&c->rtext, &c->mem);
  if (c->ssl)
    SSL_free(c->ssl);
  mxgw__free(&c->mem, c->pq);
  mxgw__free(&c->mem, c->eq);
  mxgw__free(&c->mem, c->greeting);
  mxgw__free(&c->mem, c->xclient_attrs);
  mxgw__free(&c->mem, c->last_reply);
  config_unref(c->cfg);
  mxgw_mem m = c->mem;
  mxgw__free(&m, c);
}

int mxgw_lmtp_start(mxgw_lmtp *c, int64_t now_ms) {
  if (!c)
    return MXGW_E_INVAL;
  if (c->phase != PH_INIT)
    return MXGW_E_STATE;
  c->now = now_ms;
  c->phase = PH_GREETING;
  if (push_pend(c, PK_GREETING, 0))
    return MXGW_E_NOMEM;
  arm(c, iopt(c, MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS));
  return MXGW_OK;
}

int mxgw_lmtp_feed(mxgw_lmtp *c, const void *buf, size_t len,
                   int64_t now_ms) {
  if (!c || (!buf && len))
    return MXGW_E_INVAL;
  if (c->phase == PH_INIT)
    return MXGW_E_STATE;
  if (c->phase == PH_CLOSED)
    return MXGW_E_CLOSED;
  if (len > INT32_MAX)
    len = INT32_MAX;
  c->now = now_ms;
  if (c->ssl) {
    if (len && BIO_write(SSL_get_rbio(c->ssl), buf, (int)len) != (int)len)
      return MXGW_E_NOMEM;
    int rv = tls_pump(c);
    if (rv < 0)
      return rv == -100 ? (int)len : rv;
    if (rv == 1) { /* handshake done: LHLO again (RFC 3207 4.2) */
      c->ext = 0;
      c->phase = PH_LHLO;
      if ((rv = send_lhlo(c)))
        return rv;
    }
  } else if (mxgw__buf_append(&c->in, &c->mem, buf, len))
    return MXGW_E_NOMEM;
  int rv = process(c);
  if (rv)
    return rv;
  return (int)len;
}

int mxgw_lmtp_eof(mxgw_lmtp *c, int64_t now_ms) {
  if (!c)
    return MXGW_E_INVAL;
  c->now = now_ms;
  if (c->phase == PH_CLOSED)
    return MXGW_OK;
  if (c->phase == PH_QUIT) {
    c->phase = PH_CLOSED;
    return push_ev(c, MXGW_LMTP_EV_CLOSED, 0);
  }
  char m[200];
  snprintf(m, sizeof m, "lost connection with the backend %s",
           phase_what(c));
  return conn_fail(c, 451, "4.4.2", m, cur_stage(c), 1);
}

int mxgw_lmtp_abort(mxgw_lmtp *c, const char *enh, const char *text,
                    int64_t now_ms) {
  if (!c)
    return MXGW_E_INVAL;
  c->now = now_ms;
  if (c->phase == PH_CLOSED)
    return MXGW_OK;
  bool never = c->phase == PH_INIT;
  char m[256];
  snprintf(m, sizeof m, "%s", text ? text
                          : never ? "cannot connect to the backend"
                                  : "connection with the backend failed");
  return conn_fail(c, 451, enh ? enh : never ? "4.4.1" : "4.4.2", m,
                   cur_stage(c), 1);
}

int mxgw_lmtp_output(mxgw_lmtp *c, const char **ptr, size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  int rv = pump_body(c);
  if (!rv && c->ssl)
    rv = tls_flush(c);
  if (rv)
    return rv;
  *ptr = mxgw__buf_ptr(&c->out);
  *len = mxgw__buf_size(&c->out);
  return MXGW_OK;
}

int mxgw_lmtp_consume(mxgw_lmtp *c, size_t n) {
  if (!c || n > mxgw__buf_size(&c->out))
    return MXGW_E_INVAL;
  mxgw__buf_consume(&c->out, n);
  if (n && c->mstate == M_BODY)
    c->deadline = c->now + iopt(c, MXGW_LMTP_OPT_DATA_TIMEOUT_MS);
  return MXGW_OK;
}

static bool body_room(const mxgw_lmtp *c) {
  size_t cap = (size_t)iopt(c, MXGW_LMTP_OPT_BODY_BUFFER);
  return mxgw__buf_size(&c->body) + 4 <= cap;
}

int mxgw_lmtp_want(const mxgw_lmtp *c) {
  if (!c)
    return 0;
  int w = 0;
  bool out = mxgw__buf_size(&c->out) ||
             (c->ssl && !c->tls_hs && mxgw__buf_size(&c->pout)) ||
             (c->ssl && BIO_ctrl_pending(SSL_get_wbio(c->ssl)) > 0);
  if (out)
    w |= MXGW_LMTP_WANT_WRITE;
  if (c->phase == PH_CLOSED)
    return w | MXGW_LMTP_WANT_CLOSE;
  if (c->phase != PH_INIT)
    w |= MXGW_LMTP_WANT_READ;
  /* body octets are taken once DATA or BDAT is chosen (dot-stuffing or
   * not), i.e. from the envelope on */
  if (c->mstate >= M_ENVELOPE && c->mstate <= M_BODY && !c->body_ended &&
      body_room(c))
    w |= MXGW_LMTP_WANT_BODY;
  if (c->mstate == M_DONE && !c->body_ended)
    w |= MXGW_LMTP_WANT_BODY; /* taken and dropped */
  return w;
}

int64_t mxgw_lmtp_deadline(const mxgw_lmtp *c) {
  if (!c || c->phase == PH_CLOSED || c->phase == PH_INIT)
    return -1;
  if (c->pq_len || mxgw__buf_size(&c->out) || c->phase == PH_TLS_HS)
    return c->deadline;
  return -1;
}

int mxgw_lmtp_tick(mxgw_lmtp *c, int64_t now_ms) {
  if (!c)
    return MXGW_E_INVAL;
  c->now = now_ms;
  int64_t d = mxgw_lmtp_deadline(c);
  if (d < 0 || now_ms < d)
    return 0;
  char m[200];
  snprintf(m, sizeof m, "timeout %s", phase_what(c));
  int rv = conn_fail(c, 451, "4.4.2", m, cur_stage(c), 1);
  return rv ? rv : 1;
}

int mxgw_lmtp_quit(mxgw_lmtp *c) {
  if (!c)
    return MXGW_E_INVAL;
  c->quit_wanted = true;
  if (c->phase == PH_INIT || c->phase == PH_GREETING) {
    return MXGW_OK;
  }
  return advance(c);
}

int mxgw_lmtp_next_event(mxgw_lmtp *c) {
  if (!c || c->eq_len == 0)
    return 0;
  ev e = c->eq[c->eq_head++];
  if (--c->eq_len == 0)
    c->eq_head = 0;
  c->ev_idx = e.idx;
  return e.type;
}

/* ---- public: a message ---------------------------------------------------- */

static bool clean_addr(const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch < 33 || ch == 127 || ch == '<' || ch == '>')
      return false;
  }
  return true;
}

int mxgw_lmtp_msg_new(mxgw_lmtp *c, const char *mail_from) {
  if (!c || !mail_from || !clean_addr(mail_from))
    return MXGW_E_INVAL;
  if (message_active(c))
    return MXGW_E_STATE;
  if (c->mstate == M_DONE && !c->body_ended)
    c->body_ended = true; /* the app stopped pushing a failed message */
  free_message(c);
  char *f = mxgw__strdup(&c->mem, mail_from);
  if (!f)
    return MXGW_E_NOMEM;
  c->from = f;
  c->mstate = M_BUILD;
  c->size = -1;
  c->eightbit = c->smtputf8 = c->ret = 0;
  c->xc_port = 0;
  c->naccepted = c->nrcpt_replies = c->nfinal = c->next_rcpt = 0;
  c->body_ended = c->body_discard = c->body_final_sent = false;
  c->conv_bol = 1;
  c->conv_cr = 0;
  c->body_octets = 0;
  return MXGW_OK;
}

int mxgw_lmtp_msg_set_int(mxgw_lmtp *c, int key, int64_t value) {
  if (!c)
    return MXGW_E_INVAL;
  if (c->mstate != M_BUILD)
    return MXGW_E_STATE;
  switch (key) {
  case MXGW_LMTP_MSG_SIZE:
    if (value < -1)
      return MXGW_E_INVAL;
    c->size = value;
    return MXGW_OK;
  case MXGW_LMTP_MSG_8BITMIME:
  case MXGW_LMTP_MSG_SMTPUTF8:
    if (value != 0 && value != 1)
      return MXGW_E_INVAL;
    *(key == MXGW_LMTP_MSG_8BITMIME ? &c->eightbit : &c->smtputf8) =
        (int)value;
    return MXGW_OK;
  case MXGW_LMTP_MSG_RET:
    if (value < 0 || value > 2)
      return MXGW_E_INVAL;
    c->ret = (int)value;
    return MXGW_OK;
  case MXGW_LMTP_MSG_XCLIENT_PORT:
    if (value < 0 || value > 65535)
      return MXGW_E_INVAL;
    c->xc_port = value;
    return MXGW_OK;
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_lmtp_msg_set_str(mxgw_lmtp *c, int key, const char *value) {
  if (!c || !value)
    return MXGW_E_INVAL;
  if (c->mstate != M_BUILD)
    return MXGW_E_STATE;
  char **slot;
  if (key == MXGW_LMTP_MSG_ENVID)
    slot = &c->envid;
  else if (key >= MXGW_LMTP_MSG_XCLIENT_ADDR &&
           key <= MXGW_LMTP_MSG_XCLIENT_LOGIN)
    slot = &c->xc[key - MXGW_LMTP_MSG_XCLIENT_ADDR];
  else
    return MXGW_E_INVAL;
  for (const char *s = value; *s; s++)
    if ((unsigned char)*s < 32 || *s == 127)
      return MXGW_E_INVAL;
  char *d = mxgw__strdup(&c->mem, value);
  if (!d)
    return MXGW_E_NOMEM;
  mxgw__free(&c->mem, *slot);
  *slot = d;
  return MXGW_OK;
}

int mxgw_lmtp_msg_add_rcpt(mxgw_lmtp *c, const char *addr, int notify,
                           const char *orcpt) {
  if (!c || !addr || !*addr || !clean_addr(addr) || notify < 0 ||
      notify > 15 || ((notify & 1) && notify != 1) ||
      (orcpt && (!strchr(orcpt, ';') || strchr(orcpt, '\r') ||
                 strchr(orcpt, '\n'))))
    return MXGW_E_INVAL;
  if (c->mstate != M_BUILD)
    return MXGW_E_STATE;
  if (c->nrc > INT32_MAX - 1)
    return MXGW_E_RANGE;
  if (c->nrc == c->rc_cap) {
    size_t nc = c->rc_cap ? c->rc_cap * 2 : 8;
    rcpt *n = mxgw__realloc(&c->mem, c->rc, nc * sizeof *n);
    if (!n)
      return MXGW_E_NOMEM;
    c->rc = n;
    c->rc_cap = nc;
  }
  rcpt *r = &c->rc[c->nrc];
  memset(r, 0, sizeof *r);
  r->addr = mxgw__strdup(&c->mem, addr);
  r->orcpt = orcpt ? mxgw__strdup(&c->mem, orcpt) : NULL;
  if (!r->addr || (orcpt && !r->orcpt)) {
    mxgw__free(&c->mem, r->addr);
    mxgw__free(&c->mem, r->orcpt);
    return MXGW_E_NOMEM;
  }
  r->notify = notify;
  return (int)c->nrc++;
}

int mxgw_lmtp_msg_submit(mxgw_lmtp *c, int64_t now_ms) {
  if (!c)
    return MXGW_E_INVAL;
  if (c->mstate != M_BUILD || c->nrc == 0)
    return MXGW_E_STATE;
  if (c->phase == PH_CLOSED || c->phase == PH_QUIT)
    return MXGW_E_CLOSED;
  c->now = now_ms;
  c->mstate = M_QUEUED;
  return advance(c);
}

int mxgw_lmtp_body(mxgw_lmtp *c, const void *buf, size_t len,
                   int64_t now_ms) {
  if (!c || (!buf && len))
    return MXGW_E_INVAL;
  if (c->mstate < M_QUEUED || c->body_ended)
    return MXGW_E_STATE;
  c->now = now_ms;
  if (len > INT32_MAX)
    len = INT32_MAX;
  if (c->mstate == M_DONE || c->body_discard)
    return (int)len;
  if (c->mstate < M_ENVELOPE)
    return 0; /* DATA or BDAT not chosen yet: see mxgw_lmtp_want() */
  size_t taken = 0;
  int rv = conv(c, buf, len, &taken);
  if (!rv)
    rv = pump_body(c);
  return rv ? rv : (int)taken;
}

int mxgw_lmtp_body_end(mxgw_lmtp *c, int64_t now_ms) {
  if (!c)
    return MXGW_E_INVAL;
  if (c->mstate < M_QUEUED || c->body_ended)
    return MXGW_E_STATE;
  c->now = now_ms;
  c->body_ended = true;
  if (c->mstate == M_DONE)
    return MXGW_OK;
  /* end the last line (RFC 5321 4.1.1.4: the data ends with CRLF.CRLF) */
  if (mxgw__buf_reserve(&c->body, &c->mem, 4))
    return MXGW_E_NOMEM;
  if (c->conv_cr || !c->conv_bol) {
    memcpy(c->body.data + c->body.len, "\r\n", 2);
    c->body.len += 2;
    c->conv_cr = 0;
    c->conv_bol = 1;
  }
  return pump_body(c);
}

/* ---- public: results ------------------------------------------------------ */

int mxgw_lmtp_rcpt_get_str(const mxgw_lmtp *c, size_t idx, int key,
                           const char **ptr, size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  if (key != MXGW_LMTP_R_ADDRESS && key != MXGW_LMTP_R_ENH &&
      key != MXGW_LMTP_R_TEXT)
    return MXGW_E_INVAL;
  if (idx >= c->nrc)
    return MXGW_E_RANGE;
  const rcpt *r = &c->rc[idx];
  if (key == MXGW_LMTP_R_ADDRESS) {
    *ptr = r->addr;
    *len = strlen(r->addr);
    return MXGW_OK;
  }
  if (!r->code)
    return MXGW_E_NOTFOUND;
  if (key == MXGW_LMTP_R_ENH) {
    *ptr = r->enh;
    *len = strlen(r->enh);
  } else {
    *ptr = r->text;
    *len = r->text_len;
  }
  return MXGW_OK;
}

int mxgw_lmtp_rcpt_get_int(const mxgw_lmtp *c, size_t idx, int key,
                           int64_t *out) {
  if (!c || !out)
    return MXGW_E_INVAL;
  if (key != MXGW_LMTP_R_CODE && key != MXGW_LMTP_R_STAGE &&
      key != MXGW_LMTP_R_LOCAL)
    return MXGW_E_INVAL;
  if (idx >= c->nrc)
    return MXGW_E_RANGE;
  const rcpt *r = &c->rc[idx];
  *out = key == MXGW_LMTP_R_CODE    ? r->code
         : key == MXGW_LMTP_R_STAGE ? r->stage
                                    : r->local;
  return MXGW_OK;
}

int mxgw_lmtp_get_str(const mxgw_lmtp *c, int key, const char **ptr,
                      size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  const char *s;
  switch (key) {
  case MXGW_LMTP_INFO_GREETING:
    s = c->greeting;
    break;
  case MXGW_LMTP_INFO_XCLIENT:
    s = c->xclient_attrs;
    break;
  case MXGW_LMTP_INFO_TLS_PROTOCOL:
    s = c->ssl && !c->tls_hs ? SSL_get_version(c->ssl) : NULL;
    break;
  case MXGW_LMTP_INFO_TLS_CIPHER:
    s = c->ssl && !c->tls_hs ? SSL_get_cipher_name(c->ssl) : NULL;
    break;
  case MXGW_LMTP_INFO_LAST_REPLY:
    s = c->last_reply;
    break;
  default:
    return MXGW_E_INVAL;
  }
  if (!s)
    return MXGW_E_NOTFOUND;
  *ptr = s;
  *len = strlen(s);
  return MXGW_OK;
}

int mxgw_lmtp_get_int(const mxgw_lmtp *c, int key, int64_t *out) {
  if (!c || !out)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_LMTP_INFO_EXTENSIONS:
    *out = c->ext;
    break;
  case MXGW_LMTP_INFO_SIZE_LIMIT:
    *out = c->size_limit;
    break;
  case MXGW_LMTP_INFO_TLS:
    *out = c->ssl && !c->tls_hs;
    break;
  case MXGW_LMTP_INFO_MESSAGES:
    *out = c->messages;
    break;
  case MXGW_LMTP_INFO_RCPT_INDEX:
    *out = (int64_t)c->ev_idx;
    break;
  case MXGW_LMTP_INFO_RCPT_COUNT:
    *out = (int64_t)c->nrc;
    break;
  case MXGW_LMTP_INFO_BODY_OCTETS:
    *out = c->body_octets;
    break;
  default:
    return MXGW_E_INVAL;
  }
  return MXGW_OK;
}

/* ---- internal: for the driver ------------------------------------------- */

void mxgw__lmtp_reset(mxgw_lmtp *c) {
  if (c->ssl)
    SSL_free(c->ssl);
  c->ssl = NULL;
  c->tls_hs = false;
  mxgw__buf_reset(&c->in);
  mxgw__buf_reset(&c->out);
  mxgw__buf_reset(&c->pout);
  c->pq_head = c->pq_len = 0;
  c->eq_head = c->eq_len = 0;
  c->phase = PH_INIT;
  c->deadline = -1;
  c->ext = 0;
  c->size_limit = 0;
  c->messages = 0;
  c->need_rset = c->quit_wanted = false;
}

bool mxgw__lmtp_closed(const mxgw_lmtp *c) { return c->phase == PH_CLOSED; }
bool mxgw__lmtp_started(const mxgw_lmtp *c) { return c->phase != PH_INIT; }
bool mxgw__lmtp_msg_ready(const mxgw_lmtp *c) { return c->mstate == M_BUILD; }

int mxgw__lmtp_fail_unsent(mxgw_lmtp *c) {
  if (c->mstate != M_BUILD)
    return MXGW_E_STATE;
  const char *t = c->errmsg[0] ? c->errmsg : "cannot connect to the backend";
  c->mstate = M_QUEUED; /* so that fail_rest() sees an active message */
  return fail_rest(c, 451, "4.4.1", t, strlen(t), MXGW_LMTP_STAGE_CONNECT, 1);
}
bool mxgw__lmtp_msg_done(const mxgw_lmtp *c) { return c->mstate == M_DONE; }
void mxgw__lmtp_config_ref(mxgw_lmtp_config *cfg) {
  atomic_fetch_add(&cfg->refs, 1);
}
void mxgw__lmtp_config_unref(mxgw_lmtp_config *cfg) { config_unref(cfg); }

const char *mxgw__lmtp_errenh(const mxgw_lmtp *c) { return c->errenh; }

const char *mxgw_lmtp_errmsg(const mxgw_lmtp *c) {
  return c ? c->errmsg : "";
}
