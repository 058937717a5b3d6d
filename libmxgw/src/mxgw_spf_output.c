/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf_output.c: what a finished check is turned into: the
 * Received-SPF header field (RFC 7208 9.1) with its key-value pairs quoted
 * as RFC 5322 requires (dot-atom or quoted-string) and folded; the spf
 * resinfo of Authentication-Results (RFC 8601 2.7.2) with the identity as
 * smtp.mailfrom or smtp.helo; the whole check as JSON (jansson); and the
 * gateway policy with the RFC 7372 enhanced status codes. Also the text of
 * the trace: the evaluator records structured entries, and they are
 * written out here once, the first time the trace or the JSON is read.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "mxgw_spf_int.h"

/* ---- quoting -------------------------------------------------------------- */

static int is_atext(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9'))
    return 1;
  return c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* dot-atom-text = 1*atext *("." 1*atext) */
static int is_dot_atom(const char *s, size_t n) {
  if (n == 0 || s[0] == '.' || s[n - 1] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '.') {
      if (s[i + 1] == '.')
        return 0;
    } else if (!is_atext((unsigned char)s[i])) {
      return 0;
    }
  }
  return 1;
}

/* A host name as RFC 6376 domain-name: LDH labels, at least two. */
static int is_domain_name(const char *s, size_t n) {
  if (n == 0 || n > 253)
    return 0;
  size_t lab = 0, labels = 1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '.') {
      if (!lab || s[i - 1] == '-')
        return 0;
      lab = 0;
      labels++;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || (c == '-' && lab > 0)))
      return 0;
    if (++lab > 63)
      return 0;
  }
  return lab && s[n - 1] != '-' && labels >= 2;
}

/* quoted-string; control characters are dropped */
static int put_quoted(mxgw_buf *b, const mxgw_mem *m, const char *s, size_t n) {
  int rv = mxgw__buf_append(b, m, "\"", 1);
  for (size_t i = 0; i < n && !rv; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      continue;
    if (c == '"' || c == '\\')
      rv = mxgw__buf_append(b, m, "\\", 1);
    if (!rv)
      rv = mxgw__buf_append(b, m, &s[i], 1);
  }
  return rv ? rv : mxgw__buf_append(b, m, "\"", 1);
}

/* dot-atom as is, anything else as a quoted-string */
static int put_value(mxgw_buf *b, const mxgw_mem *m, const char *s, size_t n) {
  if (is_dot_atom(s, n))
    return mxgw__buf_append(b, m, s, n);
  return put_quoted(b, m, s, n);
}

/* comment text: quoted-pairs for ( ) \, controls dropped */
static int put_ctext(mxgw_buf *b, const mxgw_mem *m, const char *s, size_t n) {
  int rv = 0;
  for (size_t i = 0; i < n && !rv; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      continue;
    if (c == '(' || c == ')' || c == '\\')
      rv = mxgw__buf_append(b, m, "\\", 1);
    if (!rv)
      rv = mxgw__buf_append(b, m, &s[i], 1);
  }
  return rv;
}

/* ---- folding -------------------------------------------------------------- */

/* Writes tokens separated by single spaces, folding (CRLF SP) before a
 * token that would pass column 78. */
typedef struct folder {
  mxgw_buf *b;
  const mxgw_mem *m;
  size_t line_start;
  int err;
} folder;

static void fold_token(folder *f, const char *s, size_t n, int space) {
  if (f->err)
    return;
  size_t col = f->b->len - f->line_start;
  if (space) {
    if (col + 1 + n > 78 && col > 1) {
      f->err = mxgw__buf_append(f->b, f->m, "\r\n", 2);
      f->line_start = f->b->len;
    }
    if (!f->err)
      f->err = mxgw__buf_append(f->b, f->m, " ", 1);
  }
  if (!f->err)
    f->err = mxgw__buf_append(f->b, f->m, s, n);
}

/* Fold text (already quoted/escaped) at its spaces. FWS may appear inside
 * comments and quoted-strings (RFC 5322 3.2.2, 3.2.4): unfolding removes
 * only the CRLF, so the content is unchanged. A space right after a
 * backslash belongs to a quoted-pair and is not a folding point. */
static void fold_text(folder *f, const char *s, size_t n, int space_first) {
  size_t i = 0;
  int first = 1;
  while (i < n) {
    size_t j = i;
    while (j < n && s[j] != ' ') {
      if (s[j] == '\\' && j + 1 < n)
        j++;
      j++;
    }
    fold_token(f, s + i, j - i, first ? space_first : 1);
    first = 0;
    i = j;
    while (i < n && s[i] == ' ')
      i++;
  }
}

/* ---- the comment sentence ------------------------------------------------- */

static int comment_text(mxgw_spf_check *c, mxgw_buf *b) {
  const mxgw_mem *m = &c->mem;
  const char *who = c->identity == MXGW_SPF_ID_HELO ? c->helo : c->sender;
  size_t who_n = c->identity == MXGW_SPF_ID_HELO ? c->helo_n : c->sender_n;
  const char *ip = c->c_str;
  int rv = 0;
#define S(x) (rv = rv ? rv : mxgw__buf_append(b, m, (x), strlen(x)))
#define W() (rv = rv ? rv : put_ctext(b, m, who, who_n))
  switch (c->result) {
  case MXGW_SPF_PASS:
    S("domain of "), W(), S(" designates "), S(ip), S(" as permitted sender");
    break;
  case MXGW_SPF_FAIL:
    S("domain of "), W(), S(" does not designate "), S(ip),
        S(" as permitted sender");
    break;
  case MXGW_SPF_SOFTFAIL:
    S("domain of transitioning "), W(), S(" does not designate "), S(ip),
        S(" as permitted sender");
    break;
  case MXGW_SPF_NEUTRAL:
    S(ip), S(" is neither permitted nor denied by domain of "), W();
    break;
  case MXGW_SPF_NONE:
    S("domain of "), W(), S(" does not designate permitted sender hosts");
    break;
  case MXGW_SPF_TEMPERROR:
    S("temporary error in processing during lookup of "), W();
    break;
  default:
    S("permanent error in processing domain of "), W();
    break;
  }
#undef S
#undef W
  return rv;
}

/* ---- Received-SPF ---------------------------------------------------------- */

int mxgw_spf_check_received_spf(mxgw_spf_check *c, const char **ptr,
                                size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  if (!c->done)
    return MXGW_E_STATE;
  const mxgw_mem *m = &c->mem;
  mxgw_buf tmp = {0};
  mxgw_buf *b = &c->out_rspf;
  mxgw__buf_reset(b);
  folder f = {b, m, 0, 0};
  fold_token(&f, "Received-SPF:", 13, 0);
  const char *res = mxgw_spf_result_name(c->result);
  fold_token(&f, res, strlen(res), 1);
  /* (receiver: sentence) */
  int rv = mxgw__buf_append(&tmp, m, "(", 1);
  if (!rv && c->receiver) {
    rv = put_ctext(&tmp, m, c->receiver, c->receiver_n);
    if (!rv)
      rv = mxgw__buf_append(&tmp, m, ": ", 2);
  }
  if (!rv)
    rv = comment_text(c, &tmp);
  if (!rv)
    rv = mxgw__buf_append(&tmp, m, ")", 1);
  if (!rv)
    fold_text(&f, mxgw__buf_ptr(&tmp), mxgw__buf_size(&tmp), 1);
  struct {
    const char *k, *v;
    size_t n;
  } kv[7];
  int nkv = 0;
  kv[nkv].k = "client-ip", kv[nkv].v = c->c_str, kv[nkv++].n = strlen(c->c_str);
  if (c->identity == MXGW_SPF_ID_MAILFROM)
    kv[nkv].k = "envelope-from", kv[nkv].v = c->sender, kv[nkv++].n = c->sender_n;
  if (c->helo_n)
    kv[nkv].k = "helo", kv[nkv].v = c->helo, kv[nkv++].n = c->helo_n;
  if (c->receiver)
    kv[nkv].k = "receiver", kv[nkv].v = c->receiver, kv[nkv++].n = c->receiver_n;
  if (c->problem)
    kv[nkv].k = "problem", kv[nkv].v = c->problem, kv[nkv++].n = c->problem_n;
  else if (c->mechanism)
    kv[nkv].k = "mechanism", kv[nkv].v = c->mechanism,
    kv[nkv++].n = c->mechanism_n;
  const char *id = c->identity == MXGW_SPF_ID_HELO ? "helo" : "mailfrom";
  kv[nkv].k = "identity", kv[nkv].v = id, kv[nkv++].n = strlen(id);
  for (int i = 0; i < nkv && !rv; i++) {
    mxgw__buf_reset(&tmp);
    rv = mxgw__buf_append(&tmp, m, kv[i].k, strlen(kv[i].k));
    if (!rv)
      rv = mxgw__buf_append(&tmp, m, "=", 1);
    if (!rv)
      rv = put_value(&tmp, m, kv[i].v, kv[i].n);
    if (!rv && i + 1 < nkv)
      rv = mxgw__buf_append(&tmp, m, ";", 1);
    if (!rv) /* a long quoted value may be folded at its spaces */
      fold_text(&f, mxgw__buf_ptr(&tmp), mxgw__buf_size(&tmp), 1);
  }
  mxgw__buf_free(&tmp, m);
  if (!rv && !f.err)
    rv = mxgw__buf_append(b, m, "\r\n\0", 3);
  if (rv || f.err)
    return MXGW_E_NOMEM;
  b->len--; /* the NUL is not counted */
  *ptr = mxgw__buf_ptr(b);
  *len = mxgw__buf_size(b);
  return MXGW_OK;
}

/* ---- Authentication-Results ------------------------------------------------ */

/* RFC 2045 token */
static int is_token(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c))
      return 0;
  }
  return 1;
}

int mxgw_spf_check_auth_results(mxgw_spf_check *c, const char *authserv_id,
                                const char **ptr, size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  if (authserv_id && !is_token(authserv_id, strlen(authserv_id)))
    return MXGW_E_INVAL;
  if (!c->done)
    return MXGW_E_STATE;
  const mxgw_mem *m = &c->mem;
  mxgw_buf r = {0};
  int rv = mxgw__buf_append(&r, m, "spf=", 4);
  const char *res = mxgw_spf_result_name(c->result);
  if (!rv)
    rv = mxgw__buf_append(&r, m, res, strlen(res));
  if (!rv)
    rv = mxgw__buf_append(&r, m, " (", 2);
  if (!rv)
    rv = comment_text(c, &r);
  if (!rv)
    rv = mxgw__buf_append(&r, m, ")", 1);
  if (!rv && c->identity == MXGW_SPF_ID_HELO) {
    rv = mxgw__buf_append(&r, m, " smtp.helo=", 11);
    if (!rv)
      rv = is_domain_name(c->helo, c->helo_n)
               ? mxgw__buf_append(&r, m, c->helo, c->helo_n)
               : put_quoted(&r, m, c->helo, c->helo_n);
  } else if (!rv) {
    rv = mxgw__buf_append(&r, m, " smtp.mailfrom=", 15);
    /* [local-part "@"] domain-name, local-part a dot-atom or quoted */
    if (!rv) {
      if (is_domain_name(c->sdomain, c->sdomain_n)) {
        rv = put_value(&r, m, c->local, c->local_n);
        if (!rv)
          rv = mxgw__buf_append(&r, m, "@", 1);
        if (!rv)
          rv = mxgw__buf_append(&r, m, c->sdomain, c->sdomain_n);
      } else {
        rv = put_quoted(&r, m, c->sender, c->sender_n);
      }
    }
  }
  mxgw_buf *b = &c->out_ar;
  mxgw__buf_reset(b);
  if (!rv && !authserv_id) {
    rv = mxgw__buf_append(b, m, mxgw__buf_ptr(&r), mxgw__buf_size(&r));
    if (!rv)
      rv = mxgw__buf_append(b, m, "\0", 1);
    if (!rv)
      b->len--;
  } else if (!rv) {
    folder f = {b, m, 0, 0};
    fold_token(&f, "Authentication-Results:", 23, 0);
    mxgw_buf idb = {0};
    rv = mxgw__buf_append(&idb, m, authserv_id, strlen(authserv_id));
    if (!rv)
      rv = mxgw__buf_append(&idb, m, ";", 1);
    if (!rv)
      fold_token(&f, mxgw__buf_ptr(&idb), mxgw__buf_size(&idb), 1);
    mxgw__buf_free(&idb, m);
    if (!rv)
      fold_text(&f, mxgw__buf_ptr(&r), mxgw__buf_size(&r), 1);
    if (!rv && !f.err)
      rv = mxgw__buf_append(b, m, "\r\n\0", 3);
    if (f.err)
      rv = f.err;
    if (!rv)
      b->len--;
  }
  mxgw__buf_free(&r, m);
  if (rv)
    return MXGW_E_NOMEM;
  *ptr = mxgw__buf_ptr(b);
  *len = mxgw__buf_size(b);
  return MXGW_OK;
}

/* ---- policy ---------------------------------------------------------------- */

int mxgw_spf_policy(int result, int permerror_reject, int *code,
                    const char **enh) {
  if (!code)
    return MXGW_E_INVAL;
  const char *e = NULL;
  int k = 0;
  switch (result) {
  case MXGW_SPF_FAIL:
    k = 550, e = "5.7.23";
    break;
  case MXGW_SPF_TEMPERROR:
    k = 451, e = "4.7.24";
    break;
  case MXGW_SPF_PERMERROR:
    if (permerror_reject)
      k = 550, e = "5.7.24";
    break;
  case MXGW_SPF_PASS:
  case MXGW_SPF_NEUTRAL:
  case MXGW_SPF_NONE:
  case MXGW_SPF_SOFTFAIL:
    break;
  default:
    return MXGW_E_INVAL;
  }
  *code = k;
  if (enh)
    *enh = e;
  return MXGW_OK;
}

#define REPLY_MAX 400

static int put_printable(mxgw_buf *b, const mxgw_mem *m, const char *s,
                         size_t n) {
  for (size_t i = 0; i < n && mxgw__buf_size(b) < REPLY_MAX; i++) {
    char ch = s[i];
    if ((unsigned char)ch < 0x20 || (unsigned char)ch >= 0x7f)
      ch = '?';
    if (mxgw__buf_append(b, m, &ch, 1))
      return MXGW_E_NOMEM;
  }
  return MXGW_OK;
}

int mxgw_spf_check_reply(mxgw_spf_check *c, int permerror_reject, int *code,
                         const char **enh, const char **text, size_t *len) {
  if (!c || !code || !text || !len)
    return MXGW_E_INVAL;
  if (!c->done)
    return MXGW_E_STATE;
  int rv = mxgw_spf_policy(c->result, permerror_reject, code, enh);
  if (rv)
    return rv;
  mxgw_buf *b = &c->out_reply;
  mxgw__buf_reset(b);
  if (*code) {
    const mxgw_mem *m = &c->mem;
    if (c->result == MXGW_SPF_FAIL) {
      rv = put_printable(b, m, c->explanation ? c->explanation : "",
                         c->explanation_n);
    } else {
      const char *pre = c->result == MXGW_SPF_TEMPERROR
                            ? "SPF temporary error: "
                            : "SPF permanent error: ";
      rv = put_printable(b, m, pre, strlen(pre));
      if (!rv)
        rv = put_printable(b, m, c->problem ? c->problem : "", c->problem_n);
    }
  }
  if (!rv)
    rv = mxgw__buf_append(b, &c->mem, "\0", 1);
  if (rv)
    return MXGW_E_NOMEM;
  b->len--;
  *text = mxgw__buf_ptr(b);
  *len = mxgw__buf_size(b);
  return MXGW_OK;
}

/* ---- the trace's text ---------------------------------------------------- */

/* A writer into the check's trace_text; err is set when it cannot grow. */
typedef struct tw {
  mxgw_buf *b;
  const mxgw_mem *m;
  int err;
} tw;

static void tw_put(tw *w, const char *s, size_t n) {
  mxgw_buf *b = w->b;
  if (!n)
    return;
  if (MXGW_LIKELY(b->cap - b->len >= n)) {
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return;
  }
  if (mxgw__buf_append(b, w->m, s, n))
    w->err = 1;
}
static void tw_str(tw *w, const char *s) { tw_put(w, s, strlen(s)); }
#define TW_LIT(w, lit) tw_put((w), (lit), sizeof(lit) - 1)
/* at most n octets of s, stopping at a NUL (printf's "%.*s") */
static void tw_prec(tw *w, const char *s, size_t n) {
  const char *z = memchr(s, '\0', n);
  tw_put(w, s, z ? (size_t)(z - s) : n);
}
/* 1 if the 8 octets at s are all printable ASCII (0x20-0x7e): no octet
 * below 0x20, none above 0x7e (the "hasless"/"hasmore" word tests) */
static int printable8(const char *s) {
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  uint64_t x;
  memcpy(&x, s, 8);
  uint64_t below = (x - ones * 0x20) & ~x & highs;
  uint64_t above = ((x + ones) | x) & highs;
  return !(below | above);
}

/* bytes from outside (DNS, records) with non-printables as \xHH; at most
 * max octets of text, then "..." (reads at most max octets of s) */
static void tw_esc(tw *w, const char *s, size_t n, size_t max) {
  static const char hex[] = "0123456789abcdef";
  size_t k = 0, i = 0;
  while (i < n) {
    if (k >= max) {
      TW_LIT(w, "...");
      return;
    }
    unsigned char u = (unsigned char)s[i];
    if (u >= 0x20 && u < 0x7f) {
      size_t lim = i + (max - k), j = i + 1;
      if (lim > n)
        lim = n;
      while (lim - j >= 8 && printable8(s + j))
        j += 8;
      while (j < lim && (unsigned char)s[j] >= 0x20 &&
             (unsigned char)s[j] < 0x7f)
        j++;
      tw_put(w, s + i, j - i);
      k += j - i;
      i = j;
    } else {
      char b[4] = {'\\', 'x', hex[u >> 4], hex[u & 15]};
      tw_put(w, b, 4);
      k += 4;
      i++;
    }
  }
}
static void tw_num(tw *w, long v) {
  char b[24];
  int n = 0;
  unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
  do {
    b[sizeof b - 1 - n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    b[sizeof b - 1 - n++] = '-';
  tw_put(w, b + sizeof b - n, (size_t)n);
}
static void tw_addr(tw *w, const char *a, size_t n) {
  char b[48];
  if (n == 4) { /* dotted quad, as inet_ntop() writes it */
    for (int i = 0; i < 4; i++) {
      if (i)
        tw_put(w, ".", 1);
      tw_num(w, (unsigned char)a[i]);
    }
  } else if (n == 16 && inet_ntop(AF_INET6, a, b, sizeof b)) {
    tw_str(w, b);
  } else {
    TW_LIT(w, "(malformed address)");
  }
}

/* "TXT example.org: NOERROR, 1 record: \"v=spf1 ...\"" and the like */
static void tw_answer(tw *w, const spf_trace_ent *e) {
  int type = e->type;
  tw_str(w, mxgw__spf_type_name(type));
  tw_put(w, " ", 1);
  tw_esc(w, e->s1, strlen(e->s1), 300);
  tw_put(w, ": ", 2);
  tw_str(w, mxgw_dns_status_name(e->st));
  const spf_tr_ans *a = e->u.ans;
  if (e->st == MXGW_DNS_OK && a) {
    size_t n = a->n;
    if (type == MXGW_DNS_TXT || n > 1) {
      tw_put(w, ", ", 2);
      tw_num(w, (long)n);
      tw_str(w, n == 1 ? " record" : " records");
    }
    tw_put(w, ":", 1);
    for (size_t i = 0; i < a->shown; i++) {
      const spf_tr_rr *r = &a->rr[i];
      if (!r->p)
        continue;
      tw_put(w, i ? ", " : " ", i ? 2 : 1);
      switch (type) {
      case MXGW_DNS_A:
      case MXGW_DNS_AAAA:
        tw_addr(w, r->p, r->len);
        break;
      case MXGW_DNS_TXT:
        tw_put(w, "\"", 1);
        tw_esc(w, r->p, r->have, 400);
        tw_put(w, "\"", 1);
        break;
      case MXGW_DNS_MX:
        tw_num(w, r->pref);
        tw_put(w, " ", 1);
        if (r->len)
          tw_esc(w, r->p, r->have, 300);
        else
          TW_LIT(w, ". (null MX)");
        break;
      default:
        tw_esc(w, r->p, r->have, 300);
      }
    }
    if (a->shown < n) {
      TW_LIT(w, " ... (");
      tw_num(w, (long)(n - a->shown));
      TW_LIT(w, " more)");
    }
  }
  if (e->flag == TRS_P)
    TW_LIT(w, " (for the %{p} macro)");
  else if (e->flag == TRS_EXP)
    TW_LIT(w, " (exp=)");
}

/* The reason of a term's outcome (unescaped, as the evaluator words it). */
static void tw_why(tw *w, const mxgw_spf_check *c, const spf_why *y) {
  size_t start = w->b->len, cap = 599;
  switch (y->code) {
  case WHY_NONE:
    break;
  case WHY_TEXT:
    tw_str(w, y->s);
    break;
  case WHY_NOTIN:
    tw_str(w, c->c_str);
    TW_LIT(w, " is not in ");
    tw_prec(w, y->s, y->n);
    break;
  case WHY_BADNAME:
    tw_put(w, "\"", 1);
    tw_prec(w, y->s, y->n);
    TW_LIT(w, "\" is not a valid domain name: treated as non-existent, "
              "void lookup ");
    tw_num(w, y->a);
    TW_LIT(w, " of ");
    tw_num(w, y->b);
    break;
  case WHY_VOID:
    cap = 399;
    tw_prec(w, y->s, 260);
    TW_LIT(w, " has no ");
    tw_str(w, mxgw__spf_type_name(y->type));
    TW_LIT(w, " record: ");
    tw_str(w, mxgw_dns_status_name(y->st));
    TW_LIT(w, ", void lookup ");
    tw_num(w, y->a);
    TW_LIT(w, " of ");
    tw_num(w, y->b);
    break;
  case WHY_A:
    TW_LIT(w, "no ");
    tw_str(w, mxgw__spf_type_name(y->type));
    TW_LIT(w, " address of ");
    tw_prec(w, y->s, 260);
    TW_LIT(w, " is within ");
    tw_str(w, c->c_str);
    tw_put(w, "/", 1);
    tw_num(w, y->a);
    break;
  case WHY_MXHOST:
    TW_LIT(w, "via MX host ");
    tw_str(w, y->s);
    break;
  case WHY_MXNONE:
    TW_LIT(w, "no address of the ");
    tw_num(w, y->a);
    tw_str(w, y->a == 1 ? " MX host of " : " MX hosts of ");
    tw_prec(w, y->s, 260);
    TW_LIT(w, " is within ");
    tw_str(w, c->c_str);
    tw_put(w, "/", 1);
    tw_num(w, y->b);
    break;
  case WHY_PTRFAIL:
    TW_LIT(w, "the PTR lookup failed (");
    tw_str(w, mxgw_dns_status_name(y->st));
    TW_LIT(w, "), so ptr does not match (RFC 7208 5.5)");
    break;
  case WHY_PTRNONE:
    TW_LIT(w, "no PTR name of ");
    tw_str(w, c->c_str);
    TW_LIT(w, " is in ");
    tw_prec(w, y->s, 260);
    break;
  case WHY_PTRVAL:
    tw_str(w, y->s);
    TW_LIT(w, " is validated");
    break;
  case WHY_PTRNOVAL:
    TW_LIT(w, "no PTR name of ");
    tw_str(w, c->c_str);
    TW_LIT(w, " in ");
    tw_prec(w, y->s, 260);
    TW_LIT(w, " resolves back to it");
    break;
  case WHY_GAVE:
    tw_prec(w, y->s, y->n);
    TW_LIT(w, " gave ");
    tw_str(w, mxgw_spf_result_name(y->a));
    break;
  case WHY_EXPBAD:
    TW_LIT(w, "the explanation text is not valid (");
    tw_str(w, y->s);
    tw_put(w, ")", 1);
    break;
  }
  /* the evaluator's reasons were cut to the buffer they were written in */
  if (!w->err && w->b->len - start > cap)
    w->b->len = start + cap;
}

static void tw_entry(tw *w, const mxgw_spf_check *c, const spf_trace_ent *e) {
  switch (e->code) {
  case TRC_PROBLEM:
    tw_str(w, mxgw_spf_result_name(e->a));
    tw_put(w, ": ", 2);
    tw_put(w, e->s1, e->n1);
    break;
  case TRC_ANSWER:
    tw_answer(w, e);
    break;
  case TRC_NOREC:
    tw_esc(w, e->s1, e->n1, 300);
    if (e->st != MXGW_DNS_OK)
      tw_str(w, e->st == MXGW_DNS_NXDOMAIN ? ": the domain does not exist"
                                           : ": no TXT records");
    else
      TW_LIT(w, ": no TXT record starts with \"v=spf1\"");
    TW_LIT(w, ", so no SPF record");
    break;
  case TRC_REC:
    tw_esc(w, e->s1, e->n1, 300);
    tw_put(w, ": ", 2);
    tw_esc(w, e->s2, e->n2, 4096);
    break;
  case TRC_BADDOM:
    tw_esc(w, e->s1, e->n1, 300);
    TW_LIT(w, ": not a valid multi-label domain name, so no SPF check (RFC "
              "7208 4.3)");
    break;
  case TRC_INCLUDE:
  case TRC_REDIRECT:
    tw_esc(w, e->s1, e->n1, 300);
    tw_str(w, e->code == TRC_INCLUDE
                  ? ": checking "
                  : ": no mechanism matched; the result is that of ");
    tw_esc(w, e->s2, e->n2, 300);
    break;
  case TRC_PVAL:
    TW_LIT(w, "%{p}: ");
    if (!e->a)
      TW_LIT(w, "no validated name (\"unknown\")");
    for (int i = 0; i < e->a; i++) {
      tw_str(w, i ? ", " : "validated ");
      tw_str(w, e->u.pn[i]);
    }
    break;
  case TRC_TERM: {
    tw_esc(w, e->s1, e->n1, 300);
    tw_str(w, e->flag ? ": match" : ": no match");
    size_t open = w->b->len;
    tw_put(w, " (", 2);
    tw_why(w, c, &e->u.why);
    if (!w->err && w->b->len == open + 2)
      w->b->len = open; /* no reason given */
    else
      tw_put(w, ")", 1);
    if (e->flag) {
      TW_LIT(w, " -> ");
      tw_str(w, mxgw_spf_result_name(e->type));
    }
    break;
  }
  case TRC_EXPDEF:
    tw_esc(w, e->s1, e->n1, 300);
    tw_put(w, ": ", 2);
    tw_why(w, c, &e->u.why);
    TW_LIT(w, ", so the default explanation is used (RFC 7208 6.2)");
    break;
  case TRC_EXPL:
    if (e->flag) {
      TW_LIT(w, "default explanation: \"");
    } else {
      tw_esc(w, e->s1, e->n1, 300);
      TW_LIT(w, ": explanation \"");
    }
    tw_esc(w, e->s2, e->n2, 600);
    tw_put(w, "\"", 1);
    break;
  case TRC_FRAME:
    tw_esc(w, e->s1, e->n1, 300);
    tw_put(w, ": ", 2);
    tw_str(w, mxgw_spf_result_name(e->a));
    if (e->s2) {
      tw_put(w, " (", 2);
      tw_esc(w, e->s2, e->n2, 300);
      tw_put(w, ")", 1);
    } else if (e->a == MXGW_SPF_NEUTRAL) {
      TW_LIT(w, " (default: no term matched)");
    }
    break;
  case TRC_FINAL:
    TW_LIT(w, "result: ");
    tw_str(w, mxgw_spf_result_name(c->result));
    if (c->mechanism) {
      tw_put(w, " (", 2);
      tw_esc(w, c->mechanism, c->mechanism_n, 300);
      if (c->domain) {
        TW_LIT(w, " in ");
        tw_esc(w, c->domain, c->domain_n, 300);
      }
      tw_put(w, ")", 1);
    }
    TW_LIT(w, "; DNS terms ");
    tw_num(w, c->dns_terms);
    tw_put(w, "/", 1);
    tw_num(w, c->max_terms);
    TW_LIT(w, ", void lookups ");
    tw_num(w, c->voids);
    tw_put(w, "/", 1);
    tw_num(w, c->max_void);
    TW_LIT(w, ", DNS queries ");
    tw_num(w, c->queries);
    break;
  }
}

int mxgw__spf_trace_format(mxgw_spf_check *c) {
  tw w = {&c->trace_text, &c->mem, 0};
  while (c->nfmt < c->ntr) {
    spf_trace_ent *e = &c->tr[c->nfmt];
    size_t start = c->trace_text.len;
    tw_entry(&w, c, e);
    tw_put(&w, "", 1); /* entries are NUL-terminated */
    if (w.err) {
      c->trace_text.len = start;
      return MXGW_E_NOMEM;
    }
    e->off = (uint32_t)start;
    e->len = (uint32_t)(c->trace_text.len - 1 - start);
    c->nfmt++;
  }
  return MXGW_OK;
}

/* ---- JSON -------------------------------------------------------------------- */

/* A JSON string of bytes that may not be UTF-8: invalid bytes as \xHH. */
static json_t *jstr(const char *s, size_t n) {
  if (!s)
    return json_null();
  json_t *j = json_stringn(s, n);
  if (j)
    return j;
  static const char hex[] = "0123456789abcdef";
  char *t = malloc(n * 4 + 1);
  if (!t)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char u = (unsigned char)s[i];
    if (u >= 0x80 || u == 0) {
      t[k++] = '\\';
      t[k++] = 'x';
      t[k++] = hex[u >> 4];
      t[k++] = hex[u & 15];
    } else {
      t[k++] = (char)u;
    }
  }
  j = json_stringn(t, k);
  free(t);
  return j;
}

static int dump_cb(const char *buf, size_t size, void *data) {
  mxgw_spf_check *c = data;
  return mxgw__buf_append(&c->out_json, &c->mem, buf, size) ? -1 : 0;
}

static int jset(json_t *o, const char *k, json_t *v) {
  return v ? json_object_set_new(o, k, v) : -1;
}

int mxgw_spf_check_json(mxgw_spf_check *c, const char **ptr, size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  if (!c->done)
    return MXGW_E_STATE;
  const char *rspf = NULL;
  size_t rspf_n = 0;
  int rv = mxgw_spf_check_received_spf(c, &rspf, &rspf_n);
  if (rv)
    return rv;
  json_t *o = json_object();
  if (!o)
    return MXGW_E_NOMEM;
  int e = 0;
  e |= jset(o, "result", json_string(mxgw_spf_result_name(c->result)));
  e |= jset(o, "identity", json_string(c->identity == MXGW_SPF_ID_HELO
                                           ? "helo"
                                           : "mailfrom"));
  e |= jset(o, "client_ip", json_string(c->c_str));
  e |= jset(o, "sender", jstr(c->sender, c->sender_n));
  e |= jset(o, "helo", jstr(c->helo, c->helo_n));
  e |= jset(o, "checked_domain", jstr(c->sdomain, c->sdomain_n));
  e |= jset(o, "domain", jstr(c->domain, c->domain_n));
  e |= jset(o, "mechanism", jstr(c->mechanism, c->mechanism_n));
  e |= jset(o, "explanation", jstr(c->explanation, c->explanation_n));
  e |= jset(o, "problem", jstr(c->problem, c->problem_n));
  json_t *cnt = json_object();
  if (cnt) {
    e |= jset(cnt, "dns_terms", json_integer(c->dns_terms));
    e |= jset(cnt, "max_dns_terms", json_integer(c->max_terms));
    e |= jset(cnt, "void_lookups", json_integer(c->voids));
    e |= jset(cnt, "max_void_lookups", json_integer(c->max_void));
    e |= jset(cnt, "mx_names", json_integer(c->mx_names));
    e |= jset(cnt, "max_mx_names", json_integer(c->max_mx));
    e |= jset(cnt, "ptr_names", json_integer(c->ptr_names));
    e |= jset(cnt, "max_ptr_names", json_integer(c->max_ptr));
    e |= jset(cnt, "dns_queries", json_integer(c->queries));
  }
  e |= jset(o, "counts", cnt);
  if (mxgw__spf_trace_format(c)) {
    json_decref(o);
    return MXGW_E_NOMEM;
  }
  json_t *tr = json_array();
  for (size_t i = 0; tr && i < c->ntr; i++) {
    json_t *ent = json_object();
    if (!ent) {
      e = -1;
      break;
    }
    e |= jset(ent, "depth", json_integer(c->tr[i].depth));
    e |= jset(ent, "kind", json_string(mxgw_spf_trace_kind_name(c->tr[i].kind)));
    e |= jset(ent, "text", jstr(c->trace_text.data + c->tr[i].off, c->tr[i].len));
    e |= json_array_append_new(tr, ent);
  }
  e |= jset(o, "trace", tr);
  e |= jset(o, "received_spf", jstr(rspf, rspf_n));
  mxgw__buf_reset(&c->out_json);
  if (!e)
    e = json_dump_callback(o, dump_cb, c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!e)
    e = mxgw__buf_append(&c->out_json, &c->mem, "\0", 1);
  if (e)
    return MXGW_E_NOMEM;
  c->out_json.len--;
  *ptr = mxgw__buf_ptr(&c->out_json);
  *len = mxgw__buf_size(&c->out_json);
  return MXGW_OK;
}
