/* SPDX-License-Identifier: MIT */
/*
 * mxgw_proxy.c: proxy (before-queue) mode. Couples a borrowed SMTP session
 * to an LMTP backend connection spoken here in strict lock-step (one
 * command, one reply, no pipelining): MAIL, each RCPT and DATA go to the
 * backend when the session asks for the decision, and the backend's reply
 * becomes the SMTP reply; the body streams through dot-stuffed; after the
 * final dot one reply per accepted recipient is awaited and folded into
 * the single SMTP reply by the policy in mxgw_proxy.h. No I/O, no clock.
 */
#include "mxgw/mxgw_proxy.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "mxgw/mxgw_session.h"
#include "mxgw_int.h"
#include "mxgw_lmtp_int.h"

enum bstate {
  B_NONE,       /* no connection */
  B_CONNECTING, /* WANT_CONNECT */
  B_UP,         /* connected */
  B_CLOSING     /* WANT_CLOSE */
};

enum awk { /* replies awaited, in order */
  A_GREETING = 1,
  A_LHLO,
  A_XCLIENT,
  A_MAIL,
  A_RCPT,
  A_DATA,
  A_FINAL,
  A_RSET,
  A_QUIT
};

#define AQ_MAX 8
#define MAX_FINAL 1024

typedef struct finalr {
  int code;
  char enh[16];
} finalr;

struct mxgw_proxy {
  mxgw_mem mem;
  mxgw_session *s;
  int64_t opt[8];
  char *lhlo_name;

  int bstate;
  bool ready;       /* greeting and LHLO done */
  bool ever_ready;  /* this connection got as far as LHLO */
  bool xclient_sent;
  int ext_xclient;  /* XCLIENT offered */
  char *xc_attrs;
  int ext_8bit, ext_utf8, ext_size;

  int aq[AQ_MAX];
  size_t aq_len;
  int64_t deadline;
  int64_t body_since; /* last progress of body output, for the stall timer */
  bool progress;      /* output consumed since the last tick */
  bool reconnect;     /* MAIL waits for the closing connection to go */

  mxgw_buf in, out;
  char *scratch;
  size_t scratch_cap;

  int pend;          /* session decision the proxy owes, MXGW_EV_*, or 0 */
  bool txn;          /* a backend transaction is open (MAIL accepted) */
  bool broken;       /* the backend was lost during this transaction */
  bool in_body;      /* DATA accepted by both sides */
  int bol;           /* body output at the beginning of a line */
  int cr;            /* the body's last octet so far was a CR */
  size_t nacc;       /* recipients the backend accepted */
  size_t nfinal;     /* final replies received */
  finalr *fin;
  size_t fin_cap;
  char first_fail_text[512];
  char errmsg[256];
};

/* ---- helpers ------------------------------------------------------------- */

static int64_t tmo(const mxgw_proxy *p, int k) { return p->opt[k]; }

static void arm(mxgw_proxy *p, int64_t now, int k) {
  p->deadline = now + tmo(p, k);
}

static int push_await(mxgw_proxy *p, int k) {
  if (p->aq_len == AQ_MAX)
    return MXGW_E_STATE;
  p->aq[p->aq_len++] = k;
  return MXGW_OK;
}

static int pop_await(mxgw_proxy *p) {
  if (!p->aq_len)
    return 0;
  int k = p->aq[0];
  memmove(p->aq, p->aq + 1, (p->aq_len - 1) * sizeof p->aq[0]);
  p->aq_len--;
  return k;
}

static int send_line(mxgw_proxy *p, int await, int64_t now, const char *fmt,
                     ...) MXGW_PRINTF(4, 5);
static int send_line(mxgw_proxy *p, int await, int64_t now, const char *fmt,
                     ...) {
  va_list ap;
  va_start(ap, fmt);
  int rv = mxgw__buf_vappendf(&p->out, &p->mem, fmt, ap);
  va_end(ap);
  if (rv || mxgw__buf_append(&p->out, &p->mem, "\r\n", 2))
    return MXGW_E_NOMEM;
  if ((rv = push_await(p, await)))
    return rv;
  arm(p, now, await == A_FINAL ? MXGW_PROXY_OPT_DATA_TIMEOUT_MS
                                : MXGW_PROXY_OPT_COMMAND_TIMEOUT_MS);
  return MXGW_OK;
}

/* Reply text made safe for mxgw_session_reply(): printable ASCII and HT,
 * lines joined with "\n", at most 8 lines of 400 octets. */
static void sanitize(char *dst, size_t cap, const char *t, size_t tl) {
  size_t o = 0, col = 0, lines = 1;
  for (size_t i = 0; i < tl && o + 1 < cap; i++) {
    unsigned char ch = (unsigned char)t[i];
    if (ch == '\n') {
      if (lines == 8)
        break;
      lines++;
      col = 0;
      dst[o++] = '\n';
      continue;
    }
    if (col >= 400)
      continue;
    dst[o++] = (ch == '\t' || (ch >= 32 && ch < 127)) ? (char)ch : '?';
    col++;
  }
  while (o && dst[o - 1] == '\n')
    o--;
  dst[o] = 0;
}

/* Answer the decision the proxy owes; falls back to the default text when
 * the backend's text or enhanced code does not pass the session's checks. */
static int answer(mxgw_proxy *p, int code, const char *enh, const char *text) {
  p->pend = 0;
  if (enh && !*enh)
    enh = NULL;
  if (text && !*text)
    text = NULL;
  int rv = mxgw_session_reply(p->s, code, enh, text);
  if (rv == MXGW_E_INVAL)
    rv = mxgw_session_reply(p->s, code, NULL, NULL);
  if (rv == MXGW_E_INVAL)
    rv = mxgw_session_reply(p->s, code / 100 == 5 ? 554 : 451, NULL, NULL);
  return rv == MXGW_E_STATE ? MXGW_OK : rv;
}

static void end_txn(mxgw_proxy *p) {
  p->txn = p->broken = p->in_body = false;
  p->nacc = p->nfinal = 0;
  p->first_fail_text[0] = 0;
}

/* The backend is gone (refused, dropped, timed out, broke the protocol). */
static int backend_lost(mxgw_proxy *p, const char *why) {
  snprintf(p->errmsg, sizeof p->errmsg, "%s", why ? why : "backend failed");
  const char *enh = p->ever_ready ? "4.4.2" : "4.4.1";
  int rv = MXGW_OK;
  if (p->txn || p->pend)
    p->broken = true;
  if (p->pend) {
    char t[300];
    snprintf(t, sizeof t, "Backend unavailable (%.200s), try again later",
             p->errmsg);
    sanitize(t, sizeof t, t, strlen(t));
    rv = answer(p, 451, p->pend == MXGW_EV_MESSAGE_END ? "4.4.2" : enh, t);
  }
  p->aq_len = 0;
  p->deadline = -1;
  p->ready = p->ever_ready = p->xclient_sent = false;
  mxgw__buf_reset(&p->in);
  mxgw__buf_reset(&p->out);
  p->bstate = p->bstate == B_UP ? B_CLOSING : B_NONE;
  return rv;
}

static void parse_lhlo(mxgw_proxy *p, const char *t, size_t tl) {
  p->ext_xclient = p->ext_8bit = p->ext_utf8 = p->ext_size = 0;
  mxgw__free(&p->mem, p->xc_attrs);
  p->xc_attrs = NULL;
  size_t i = 0;
  bool first = true;
  while (i < tl) {
    size_t j = i;
    while (j < tl && t[j] != '\n')
      j++;
    const char *l = t + i;
    size_t ll = j - i, kw = 0;
    i = j + 1;
    if (first) {
      first = false;
      continue;
    }
    while (kw < ll && l[kw] != ' ')
      kw++;
    if (mxgw__ieq(l, kw, "XCLIENT")) {
      p->ext_xclient = 1;
      p->xc_attrs = kw < ll ? mxgw__memdup0(&p->mem, l + kw + 1, ll - kw - 1)
                            : NULL;
    } else if (mxgw__ieq(l, kw, "8BITMIME"))
      p->ext_8bit = 1;
    else if (mxgw__ieq(l, kw, "SMTPUTF8"))
      p->ext_utf8 = 1;
    else if (mxgw__ieq(l, kw, "SIZE"))
      p->ext_size = 1;
  }
}

static bool xc_offers(const mxgw_proxy *p, const char *name) {
  const char *s = p->xc_attrs;
  size_t nl = strlen(name);
  while (s && *s) {
    while (*s == ' ')
      s++;
    size_t w = 0;
    while (s[w] && s[w] != ' ')
      w++;
    if (w == nl && mxgw__ieq(s, w, name))
      return true;
    s += w;
  }
  return false;
}

/* xtext (RFC 3461 4) of a session string. */
static int append_xtext(mxgw_proxy *p, const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    int rv = (ch < 33 || ch > 126 || ch == '+' || ch == '=')
                 ? mxgw__buf_appendf(&p->out, &p->mem, "+%02X", ch)
                 : mxgw__buf_append(&p->out, &p->mem, v + i, 1);
    if (rv)
      return MXGW_E_NOMEM;
  }
  return MXGW_OK;
}

static bool sstr(const mxgw_proxy *p, int key, const char **v, size_t *n) {
  return mxgw_session_get_str(p->s, key, v, n) == MXGW_OK;
}

static bool clean_path(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 32 || v[i] == 127 || v[i] == '<' || v[i] == '>')
      return false;
  return true;
}

static int send_mail(mxgw_proxy *p, int64_t now) {
  const char *v;
  size_t n;
  if (!sstr(p, MXGW_INFO_MAIL_FROM, &v, &n))
    v = "", n = 0;
  if (!clean_path(v, n))
    return answer(p, 553, "5.1.7", "Bad sender address syntax");
  if (mxgw__buf_appendf(&p->out, &p->mem, "MAIL FROM:<%.*s>", (int)n, v))
    return MXGW_E_NOMEM;
  int64_t iv = 0;
  if (p->ext_size && mxgw_session_get_int(p->s, MXGW_INFO_SIZE, &iv) == 0 &&
      iv >= 0 && mxgw__buf_appendf(&p->out, &p->mem, " SIZE=%lld",
                                   (long long)iv))
    return MXGW_E_NOMEM;
  if (p->ext_8bit && sstr(p, MXGW_INFO_BODY, &v, &n) &&
      mxgw__ieq(v, n, "8BITMIME") &&
      mxgw__buf_appendf(&p->out, &p->mem, " BODY=8BITMIME"))
    return MXGW_E_NOMEM;
  if (mxgw_session_get_int(p->s, MXGW_INFO_SMTPUTF8, &iv) == 0 && iv) {
    if (!p->ext_utf8)
      return answer(p, 553, "5.6.7", "Backend does not support SMTPUTF8");
    if (mxgw__buf_appendf(&p->out, &p->mem, " SMTPUTF8"))
      return MXGW_E_NOMEM;
  }
  return send_line(p, A_MAIL, now, "%s", "");
}

/* MAIL is owed and the connection is ready: XCLIENT first when offered. */
static int start_mail(mxgw_proxy *p, int64_t now) {
  const char *v;
  size_t n;
  if (tmo(p, MXGW_PROXY_OPT_XCLIENT) && p->ext_xclient && !p->xclient_sent) {
    p->xclient_sent = true;
    bool any = false;
    if (mxgw__buf_appendf(&p->out, &p->mem, "XCLIENT"))
      return MXGW_E_NOMEM;
    if (xc_offers(p, "ADDR") && sstr(p, MXGW_INFO_PEER_ADDR, &v, &n) && n) {
      if (mxgw__buf_appendf(&p->out, &p->mem, " ADDR=") ||
          append_xtext(p, v, n))
        return MXGW_E_NOMEM;
      any = true;
    }
    if (xc_offers(p, "HELO") && sstr(p, MXGW_INFO_HELO, &v, &n) && n) {
      if (mxgw__buf_appendf(&p->out, &p->mem, " HELO=") ||
          append_xtext(p, v, n))
        return MXGW_E_NOMEM;
      any = true;
    }
    if (any)
      return send_line(p, A_XCLIENT, now, "%s", "");
    p->out.len -= 7; /* nothing offered that we have */
  }
  return send_mail(p, now);
}

/* Fold the per-recipient replies into one SMTP reply (mxgw_proxy.h). */
static int final_answer(mxgw_proxy *p) {
  size_t ok = 0, tmp = 0;
  bool same = true;
  for (size_t i = 0; i < p->nfinal; i++) {
    int c = p->fin[i].code;
    ok += c / 100 == 2;
    tmp += c / 100 == 4;
    if (c != p->fin[0].code || strcmp(p->fin[i].enh, p->fin[0].enh))
      same = false;
  }
  int rv;
  if (ok == p->nfinal) {
    char t[96];
    snprintf(t, sizeof t, "Ok: delivered to %zu recipient%s", ok,
             ok == 1 ? "" : "s");
    rv = answer(p, 250, "2.0.0", t);
  } else if (same)
    rv = answer(p, p->fin[0].code, p->fin[0].enh, p->first_fail_text);
  else if (!tmp && !ok)
    rv = answer(p, 554, "5.0.0", p->first_fail_text);
  else if (!tmp && tmo(p, MXGW_PROXY_OPT_PARTIAL_5XX))
    rv = answer(p, 250, "2.0.0", "Ok: delivered to some recipients; others "
                                 "failed permanently");
  else
    rv = answer(p, 451, "4.3.0",
                "Not delivered to every recipient, try again later");
  end_txn(p);
  return rv;
}

/* One complete reply from the backend. */
static int on_reply(mxgw_proxy *p, const mxgw__lmtp_reply *r, const char *t,
                    size_t tl, int64_t now) {
  int k = pop_await(p);
  p->deadline = p->aq_len ? p->deadline : -1;
  bool ok = r->code / 100 == 2;
  char txt[4096];
  sanitize(txt, sizeof txt, t, tl);
  switch (k) {
  case A_GREETING:
    if (r->code != 220)
      return backend_lost(p, "backend greeting refused");
    return send_line(p, A_LHLO, now, "LHLO %s",
                     p->lhlo_name ? p->lhlo_name : "localhost");
  case A_XCLIENT:
    if (r->code == 220) {
      const char *v;
      size_t n;
      if (xc_offers(p, "HELO") && sstr(p, MXGW_INFO_HELO, &v, &n) && n &&
          clean_path(v, n) && !memchr(v, ' ', n))
        return send_line(p, A_LHLO, now, "LHLO %.*s", (int)n, v);
      return send_line(p, A_LHLO, now, "LHLO %s",
                       p->lhlo_name ? p->lhlo_name : "localhost");
    }
    return p->pend == MXGW_EV_MAIL ? send_mail(p, now) : MXGW_OK;
  case A_LHLO:
    if (!ok)
      return backend_lost(p, "backend refused LHLO");
    parse_lhlo(p, t, tl);
    p->ready = p->ever_ready = true;
    if (p->pend == MXGW_EV_MAIL)
      return p->xclient_sent ? send_mail(p, now) : start_mail(p, now);
    return MXGW_OK;
  case A_MAIL:
    if (p->pend != MXGW_EV_MAIL)
      return MXGW_OK;
    if (ok) {
      p->txn = true;
      return answer(p, 250, r->enh, txt);
    }
    return answer(p, r->code, r->enh, txt);
  case A_RCPT:
    if (p->pend != MXGW_EV_RCPT)
      return MXGW_OK;
    if (ok) {
      p->nacc++;
      int c = r->code == 251 || r->code == 252 ? r->code : 250;
      return answer(p, c, r->enh, txt);
    }
    return answer(p, r->code, r->enh, txt);
  case A_DATA:
    if (p->pend != MXGW_EV_DATA)
      return MXGW_OK;
    if (r->code == 354) {
      int rv = answer(p, 354, NULL, NULL);
      if (rv)
        return rv;
      p->in_body = true;
      p->bol = 1;
      p->cr = 0;
      p->body_since = now;
      if (tmo(p, MXGW_PROXY_OPT_RECEIVED)) {
        const char *h;
        size_t hl;
        if (mxgw_session_received_header(
                p->s, NULL,
                (now + p->opt[MXGW_PROXY_OPT_CLOCK_OFFSET_MS]) / 1000, &h, &hl) ==
                0 &&
            mxgw__buf_append(&p->out, &p->mem, h, hl))
          return MXGW_E_NOMEM;
      }
      return MXGW_OK;
    }
    if (ok || r->code / 100 == 3)
      return backend_lost(p, "backend answered DATA with an unexpected code");
    return answer(p, r->code, r->enh, txt);
  case A_FINAL:
    if (p->nfinal < p->fin_cap) {
      p->fin[p->nfinal].code = r->code;
      snprintf(p->fin[p->nfinal].enh, sizeof p->fin[0].enh, "%s", r->enh);
    }
    if (!ok && !p->first_fail_text[0])
      snprintf(p->first_fail_text, sizeof p->first_fail_text, "%.500s", txt);
    p->nfinal++;
    if (p->nfinal == p->nacc) {
      p->deadline = -1;
      return final_answer(p);
    }
    /* more per-recipient replies to come: A_FINAL stays at the head */
    memmove(p->aq + 1, p->aq, p->aq_len * sizeof p->aq[0]);
    p->aq[0] = A_FINAL;
    p->aq_len++;
    arm(p, now, MXGW_PROXY_OPT_DATA_TIMEOUT_MS);
    return MXGW_OK;
  case A_RSET:
    if (p->pend == MXGW_EV_MAIL && p->ready && !p->aq_len)
      return start_mail(p, now);
    return MXGW_OK;
  case A_QUIT:
    p->bstate = B_CLOSING;
    return MXGW_OK;
  default:
    return backend_lost(p, "unexpected reply from the backend");
  }
}

/* ---- public -------------------------------------------------------------- */

int mxgw_proxy_new(mxgw_proxy **out, mxgw_session *s, const mxgw_mem *mem) {
  if (!out || !s)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_proxy *p = mxgw__calloc(&m, 1, sizeof *p);
  if (!p)
    return MXGW_E_NOMEM;
  p->mem = m;
  p->s = s;
  p->opt[MXGW_PROXY_OPT_COMMAND_TIMEOUT_MS] = 300000;
  p->opt[MXGW_PROXY_OPT_DATA_TIMEOUT_MS] = 600000;
  p->opt[MXGW_PROXY_OPT_BODY_BUFFER] = 262144;
  p->opt[MXGW_PROXY_OPT_XCLIENT] = 1;
  p->opt[MXGW_PROXY_OPT_PARTIAL_5XX] = 0;
  p->opt[MXGW_PROXY_OPT_RECEIVED] = 1;
  p->deadline = -1;
  *out = p;
  return MXGW_OK;
}

void mxgw_proxy_free(mxgw_proxy *p) {
  if (!p)
    return;
  mxgw__buf_free(&p->in, &p->mem);
  mxgw__buf_free(&p->out, &p->mem);
  mxgw__free(&p->mem, p->scratch);
  mxgw__free(&p->mem, p->fin);
  mxgw__free(&p->mem, p->xc_attrs);
  mxgw__free(&p->mem, p->lhlo_name);
  mxgw_mem m = p->mem;
  mxgw__free(&m, p);
}

int mxgw_proxy_set_int(mxgw_proxy *p, int key, int64_t v) {
  if (!p || key < 1 || key > 7)
    return MXGW_E_INVAL;
  if (key == MXGW_PROXY_OPT_CLOCK_OFFSET_MS) {
    p->opt[key] = v;
    return MXGW_OK;
  }
  if ((key <= 2 && (v < 1 || v > INT32_MAX)) ||
      (key == 3 && (v < 4096 || v > INT32_MAX)) || (key > 3 && (v < 0 || v > 1)))
    return MXGW_E_RANGE;
  p->opt[key] = v;
  return MXGW_OK;
}

int mxgw_proxy_set_str(mxgw_proxy *p, int key, const char *v) {
  if (!p || key != MXGW_PROXY_OPT_LHLO_NAME || !v || !*v)
    return MXGW_E_INVAL;
  for (const char *q = v; *q; q++)
    if ((unsigned char)*q <= 32 || *q == 127)
      return MXGW_E_INVAL;
  char *d = mxgw__strdup(&p->mem, v);
  if (!d)
    return MXGW_E_NOMEM;
  mxgw__free(&p->mem, p->lhlo_name);
  p->lhlo_name = d;
  return MXGW_OK;
}

/* A body chunk into DATA: dot-stuffed, and every line ending sent as
 * CRLF. The session gives CRLF lines for DATA, but BDAT chunks are passed
 * as the client sent them, and with MXGW_BARE_NORMALIZE they may hold bare
 * CR or LF: sent raw, "\r.\r\n" would end the data early on a backend
 * that accepts a bare CR before the dot (SMTP smuggling), so a bare CR or
 * LF becomes CRLF here, as the LMTP client does for spooled mail. A CR at
 * the end of a chunk waits for the next octet (p->cr). */
static int crlf(mxgw_proxy *p) {
  p->bol = 1;
  return mxgw__buf_append(&p->out, &p->mem, "\r\n", 2) ? MXGW_E_NOMEM : 0;
}

static int put_body(mxgw_proxy *p, const char *d, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (p->cr) { /* CR LF, or a bare CR: either way one line end */
      p->cr = 0;
      if (crlf(p))
        return MXGW_E_NOMEM;
      if (d[i] == '\n') {
        i++;
        continue;
      }
    }
    if (d[i] == '\r' || d[i] == '\n') {
      if (d[i] == '\r')
        p->cr = 1;
      else if (crlf(p)) /* a bare LF */
        return MXGW_E_NOMEM;
      i++;
      continue;
    }
    if (p->bol && d[i] == '.' &&
        mxgw__buf_append(&p->out, &p->mem, ".", 1))
      return MXGW_E_NOMEM;
    size_t e = i;
    while (e < n && d[e] != '\r' && d[e] != '\n')
      e++;
    if (mxgw__buf_append(&p->out, &p->mem, d + i, e - i))
      return MXGW_E_NOMEM;
    p->bol = 0;
    i = e;
  }
  return MXGW_OK;
}

int mxgw_proxy_session_event(mxgw_proxy *p, int ev, int64_t now) {
  if (!p)
    return MXGW_E_INVAL;
  const char *v;
  size_t n;
  int rv = MXGW_OK;
  switch (ev) {
  case MXGW_EV_MAIL:
    p->pend = ev;
    end_txn(p);
    if (p->bstate == B_CLOSING)
      p->reconnect = true; /* connect again once it is closed */
    else if (p->bstate == B_NONE)
      p->bstate = B_CONNECTING;
    else if (p->ready && !p->aq_len)
      rv = start_mail(p, now);
    /* else: sent when LHLO (or the RSET) is answered */
    break;
  case MXGW_EV_RCPT:
    p->pend = ev;
    if (p->broken || p->bstate != B_UP)
      rv = answer(p, 451, "4.4.2", "Backend unavailable, try again later");
    else if (!sstr(p, MXGW_INFO_RCPT, &v, &n) || !n || !clean_path(v, n))
      rv = answer(p, 553, "5.1.3", "Bad recipient address syntax");
    else
      rv = send_line(p, A_RCPT, now, "RCPT TO:<%.*s>", (int)n, v);
    break;
  case MXGW_EV_DATA:
    p->pend = ev;
    if (p->broken || p->bstate != B_UP)
      rv = answer(p, 451, "4.4.2", "Backend unavailable, try again later");
    else if (!p->nacc)
      rv = answer(p, 554, "5.5.1", "No valid recipients");
    else {
      int64_t bdat = 0;
      mxgw_session_get_int(p->s, MXGW_INFO_BDAT, &bdat);
      rv = send_line(p, A_DATA, now, "DATA");
      (void)bdat; /* BDAT from the client: the session delivers the same
                     BODY events; 354 becomes its first-chunk accept */
    }
    break;
  case MXGW_EV_BODY:
    if (p->in_body && !p->broken && p->bstate == B_UP &&
        mxgw_session_get_str(p->s, MXGW_INFO_DATA, &v, &n) == 0) {
      if (!mxgw__buf_size(&p->out))
        p->body_since = now;
      rv = put_body(p, v, n);
    }
    break;
  case MXGW_EV_MESSAGE_END:
    p->pend = ev;
    if (p->broken || p->bstate != B_UP || !p->in_body) {
      rv = answer(p, 451, "4.4.2", "Backend lost during the data, try again");
      end_txn(p);
      break;
    }
    if (p->cr || !p->bol) { /* a pending CR, or no line end at the end */
      p->cr = 0;
      if (crlf(p))
        return MXGW_E_NOMEM;
    }
    if (p->fin_cap < p->nacc) {
      finalr *f = mxgw__realloc(&p->mem, p->fin, p->nacc * sizeof *f);
      if (!f)
        return MXGW_E_NOMEM;
      p->fin = f;
      p->fin_cap = p->nacc;
    }
    p->in_body = false;
    p->nfinal = 0;
    if ((rv = mxgw__buf_append(&p->out, &p->mem, ".\r\n", 3)))
      return MXGW_E_NOMEM;
    if (p->aq_len == AQ_MAX)
      return MXGW_E_STATE;
    p->aq[p->aq_len++] = A_FINAL;
    arm(p, now, MXGW_PROXY_OPT_DATA_TIMEOUT_MS);
    break;
  case MXGW_EV_MESSAGE_ABORT:
  case MXGW_EV_RSET:
    if (p->in_body || (p->aq_len && p->aq[0] == A_FINAL)) {
      /* a DATA in progress cannot be taken back: drop the connection */
      end_txn(p);
      rv = backend_lost(p, "transaction aborted during the data");
    } else if (p->txn && p->bstate == B_UP && !p->broken) {
      rv = send_line(p, A_RSET, now, "RSET");
    }
    end_txn(p);
    break;
  case MXGW_EV_CLOSE:
    p->pend = 0;
    if (p->bstate == B_UP && !p->in_body && !p->aq_len)
      rv = send_line(p, A_QUIT, now, "QUIT");
    else if (p->bstate == B_UP)
      p->bstate = B_CLOSING;
    else if (p->bstate == B_CONNECTING)
      p->bstate = B_NONE;
    end_txn(p);
    break;
  default:
    return 0;
  }
  return rv < 0 ? rv : 1;
}

int mxgw_proxy_backend_connected(mxgw_proxy *p, int64_t now) {
  if (!p)
    return MXGW_E_INVAL;
  if (p->bstate != B_CONNECTING)
    return MXGW_E_STATE;
  p->bstate = B_UP;
  p->ready = p->ever_ready = p->xclient_sent = false;
  p->aq_len = 0;
  mxgw__buf_reset(&p->in);
  mxgw__buf_reset(&p->out);
  int rv = push_await(p, A_GREETING);
  arm(p, now, MXGW_PROXY_OPT_COMMAND_TIMEOUT_MS);
  return rv;
}

int mxgw_proxy_backend_failed(mxgw_proxy *p, const char *text, int64_t now) {
  (void)now;
  if (!p)
    return MXGW_E_INVAL;
  int rv = backend_lost(p, text ? text : "backend connection failed");
  if (p->bstate == B_CONNECTING)
    p->bstate = B_NONE;
  return rv;
}

int mxgw_proxy_backend_feed(mxgw_proxy *p, const void *buf, size_t len,
                            int64_t now) {
  if (!p || (!buf && len))
    return MXGW_E_INVAL;
  if (p->bstate != B_UP)
    return MXGW_OK;
  if (mxgw__buf_append(&p->in, &p->mem, buf, len))
    return MXGW_E_NOMEM;
  while (p->bstate == B_UP && mxgw__buf_size(&p->in)) {
    size_t n = mxgw__buf_size(&p->in);
    if (p->scratch_cap < n + 1) {
      char *s = mxgw__realloc(&p->mem, p->scratch, n + 1);
      if (!s)
        return MXGW_E_NOMEM;
      p->scratch = s;
      p->scratch_cap = n + 1;
    }
    mxgw__lmtp_reply r;
    size_t tl = 0;
    int used = mxgw__lmtp_reply_parse(mxgw__buf_ptr(&p->in), n, &r,
                                      p->scratch, &tl);
    if (used == 0)
      break;
    if (used < 0 || !p->aq_len) {
      char t[128];
      snprintf(t, sizeof t, "backend protocol error: %s",
               used < 0 && r.err ? r.err : "unexpected reply");
      return backend_lost(p, t);
    }
    mxgw__buf_consume(&p->in, (size_t)used);
    int rv = on_reply(p, &r, p->scratch, tl, now);
    if (rv)
      return rv;
  }
  return MXGW_OK;
}

int mxgw_proxy_backend_eof(mxgw_proxy *p, int64_t now) {
  (void)now;
  if (!p)
    return MXGW_E_INVAL;
  if (p->bstate != B_UP)
    return MXGW_OK;
  if (p->aq_len == 1 && p->aq[0] == A_QUIT) {
    p->aq_len = 0;
    p->bstate = B_CLOSING;
    return MXGW_OK;
  }
  return backend_lost(p, "backend closed the connection");
}

int mxgw_proxy_backend_closed(mxgw_proxy *p) {
  if (!p)
    return MXGW_E_INVAL;
  if (p->bstate == B_CLOSING || p->bstate == B_UP) {
    if (p->bstate == B_UP && (p->aq_len || p->txn))
      backend_lost(p, "backend connection closed");
    p->bstate = p->reconnect ? B_CONNECTING : B_NONE;
    p->reconnect = false;
    p->ready = false;
    p->aq_len = 0;
    p->deadline = -1;
    mxgw__buf_reset(&p->in);
    mxgw__buf_reset(&p->out);
  }
  return MXGW_OK;
}

int mxgw_proxy_backend_output(mxgw_proxy *p, const char **ptr, size_t *len) {
  if (!p || !ptr || !len)
    return MXGW_E_INVAL;
  *ptr = mxgw__buf_ptr(&p->out);
  *len = mxgw__buf_size(&p->out);
  return MXGW_OK;
}

int mxgw_proxy_backend_consume(mxgw_proxy *p, size_t n) {
  if (!p || n > mxgw__buf_size(&p->out))
    return MXGW_E_INVAL;
  mxgw__buf_consume(&p->out, n);
  if (n)
    p->progress = true;
  return MXGW_OK;
}

int mxgw_proxy_want(const mxgw_proxy *p) {
  if (!p)
    return 0;
  switch (p->bstate) {
  case B_CONNECTING:
    return MXGW_PROXY_WANT_CONNECT;
  case B_CLOSING:
    return MXGW_PROXY_WANT_CLOSE;
  case B_UP: {
    int w = MXGW_PROXY_WANT_READ;
    size_t o = mxgw__buf_size(&p->out);
    if (o)
      w |= MXGW_PROXY_WANT_WRITE;
    if (o > (size_t)p->opt[MXGW_PROXY_OPT_BODY_BUFFER])
      w |= MXGW_PROXY_WANT_PAUSE;
    return w;
  }
  default:
    return 0;
  }
}

int64_t mxgw_proxy_deadline(const mxgw_proxy *p) {
  if (!p || p->bstate != B_UP)
    return -1;
  if (p->in_body && mxgw__buf_size(&p->out)) {
    int64_t d = p->body_since + p->opt[MXGW_PROXY_OPT_DATA_TIMEOUT_MS];
    return p->deadline < 0 || d < p->deadline ? d : p->deadline;
  }
  return p->deadline;
}

int mxgw_proxy_tick(mxgw_proxy *p, int64_t now) {
  if (!p)
    return MXGW_E_INVAL;
  if (p->progress || (p->in_body && !mxgw__buf_size(&p->out)))
    p->body_since = now;
  p->progress = false; /* nothing pending or progress: restart the timer */
  int64_t d = mxgw_proxy_deadline(p);
  if (d < 0 || now < d)
    return 0;
  int rv = backend_lost(p, "backend timed out");
  return rv < 0 ? rv : 1;
}

const char *mxgw_proxy_errmsg(const mxgw_proxy *p) {
  return p ? p->errmsg : "";
}
