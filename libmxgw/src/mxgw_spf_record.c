/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf_record.c: the SPF record parser. A selected record ("v=spf1"
 * and its terms, RFC 7208 4.5) is checked whole before anything is
 * evaluated, since any syntax error anywhere is a permerror (4.6): only
 * printable ASCII and single-space separators; qualifiers only on
 * mechanisms; the eight mechanisms with exactly the arguments 5.1-5.7
 * allow (domain-specs whose last label is a valid toplabel or a macro
 * (7.1), strict dotted quads, IPv6 addresses, CIDR lengths without leading
 * zeros in range, the dual CIDR of a and mx); redirect= and exp= at most
 * once each; unknown modifiers with a valid name and macro-string. The
 * terms are returned pointing into the record text.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "mxgw_spf_int.h"

int mxgw__spf_is_record(const char *txt, size_t len) {
  return len >= 6 && mxgw__iprefix(txt, len, "v=spf1") &&
         (len == 6 || txt[6] == ' ');
}

int mxgw__spf_parse_ip4(const char *s, size_t n, uint8_t out[4]) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    if (part) {
      if (i >= n || s[i] != '.')
        return -1;
      i++;
    }
    if (i >= n || s[i] < '0' || s[i] > '9')
      return -1;
    unsigned v = 0;
    size_t st = i;
    while (i < n && s[i] >= '0' && s[i] <= '9' && i - st < 4)
      v = v * 10 + (unsigned)(s[i++] - '0');
    if (v > 255 || i - st > 3 || (i - st > 1 && s[st] == '0'))
      return -1;
    out[part] = (uint8_t)v;
  }
  return i == n ? 0 : -1;
}

static int is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_alnum(char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int toplabel_ok(const char *s, size_t n) {
  if (n == 0)
    return 0;
  int alpha = 0, dash = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '-')
      dash = 1;
    else if (is_alpha(s[i]))
      alpha = 1;
    else if (!(s[i] >= '0' && s[i] <= '9'))
      return 0;
  }
  if (!dash)
    return alpha;
  return is_alnum(s[0]) && is_alnum(s[n - 1]);
}

typedef struct perr {
  char *buf;
  size_t cap;
} perr;

static int fail(perr *e, const spf_term *t, const char *what) {
  mxgw__spf_fmt(e->buf, e->cap, "%s \"%.*s\"", what,
                (int)(t->tlen > 200 ? 200 : t->tlen), t->text);
  return -1;
}

/* domain-spec = macro-string domain-end (7.1) */
static int domain_spec(perr *e, spf_term *t, const char *s, size_t n) {
  const char *err = NULL;
  int uses_p = 0, ends_macro = 0;
  if (n == 0)
    return fail(e, t, "empty domain-spec in");
  if (mxgw__spf_macro_check(s, n, SPF_M_DOMAIN, &uses_p, &ends_macro, &err)) {
    char what[120];
    mxgw__spf_fmt(what, sizeof what, "bad macro (%s) in", err);
    return fail(e, t, what);
  }
  if (!ends_macro) {
    size_t m = n;
    if (s[m - 1] == '.')
      m--;
    size_t k = m;
    while (k > 0 && s[k - 1] != '.')
      k--;
    if (k == 0 || !toplabel_ok(s + k, m - k))
      return fail(e, t, "domain-spec does not end in a valid top label:");
  }
  t->spec = s;
  t->slen = (uint32_t)n;
  if (memchr(s, '%', n))
    t->flags |= SPF_TF_MACRO;
  if (uses_p)
    t->flags |= SPF_TF_USES_P;
  return 0;
}

/* "/" ("0" / %x31-39 0*2DIGIT) with a maximum */
static int cidr_val(const char *s, size_t n, int max) {
  if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
    return -1;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v > max ? -1 : v;
}

/* The argument of a and mx: [ ":" domain-spec ] [ dual-cidr-length ] */
static int a_mx_arg(perr *e, spf_term *t, const char *s, size_t n) {
  t->cidr4 = 32;
  t->cidr6 = 128;
  size_t j = n;
  while (j > 0 && s[j - 1] >= '0' && s[j - 1] <= '9')
    j--;
  if (j < n && j >= 2 && s[j - 1] == '/' && s[j - 2] == '/') {
    int v = cidr_val(s + j, n - j, 128);
    if (v < 0)
      return fail(e, t, "bad IPv6 CIDR length in");
    t->cidr6 = (uint8_t)v;
    n = j - 2;
    j = n;
    while (j > 0 && s[j - 1] >= '0' && s[j - 1] <= '9')
      j--;
  }
  if (j < n && j >= 1 && s[j - 1] == '/') {
    int v = cidr_val(s + j, n - j, 32);
    if (v < 0)
      return fail(e, t, "bad IPv4 CIDR length in");
    t->cidr4 = (uint8_t)v;
    n = j - 1;
  }
  if (n == 0)
    return 0;
  if (s[0] != ':')
    return fail(e, t, "bad argument in");
  return domain_spec(e, t, s + 1, n - 1);
}

static int ip_arg(perr *e, spf_term *t, const char *s, size_t n, int v6) {
  if (n == 0 || s[0] != ':')
    return fail(e, t, v6 ? "ip6 needs an address:" : "ip4 needs an address:");
  s++;
  n--;
  const char *slash = memchr(s, '/', n);
  size_t an = slash ? (size_t)(slash - s) : n;
  int max = v6 ? 128 : 32;
  int len = max;
  if (slash) {
    len = cidr_val(slash + 1, n - an - 1, max);
    if (len < 0)
      return fail(e, t, v6 ? "bad IPv6 CIDR length in" : "bad IPv4 CIDR length in");
  }
  if (v6) {
    char buf[48];
    if (an == 0 || an >= sizeof buf)
      return fail(e, t, "bad IPv6 address in");
    memcpy(buf, s, an);
    buf[an] = '\0';
    if (inet_pton(AF_INET6, buf, t->addr) != 1)
      return fail(e, t, "bad IPv6 address in");
    t->cidr6 = (uint8_t)len;
  } else {
    if (mxgw__spf_parse_ip4(s, an, t->addr))
      return fail(e, t, "bad IPv4 address in");
    t->cidr4 = (uint8_t)len;
  }
  return 0;
}

static const struct {
  const char *name;
  uint8_t type;
} mechs[] = {
    {"all", T_ALL},   {"include", T_INCLUDE}, {"a", T_A},
    {"mx", T_MX},     {"ptr", T_PTR},         {"ip4", T_IP4},
    {"ip6", T_IP6},   {"exists", T_EXISTS},
};

static int parse_term(perr *e, spf_term *t, spf_record *rec, int idx) {
  const char *s = t->text;
  size_t n = t->tlen, i = 0;
  int qual = -1;
  switch (s[0]) {
  case '+':
    qual = MXGW_SPF_PASS;
    break;
  case '-':
    qual = MXGW_SPF_FAIL;
    break;
  case '~':
    qual = MXGW_SPF_SOFTFAIL;
    break;
  case '?':
    qual = MXGW_SPF_NEUTRAL;
    break;
  }
  if (qual >= 0)
    i = 1;
  size_t ns = i;
  if (i < n && is_alpha(s[i])) {
    while (i < n && (is_alnum(s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.'))
      i++;
  }
  size_t nl = i - ns;
  if (nl == 0)
    return fail(e, t, i < n && s[i] == '=' ? "modifier without a name:"
                                            : "bad term");
  if (i < n && s[i] == '=') { /* a modifier */
    if (qual >= 0)
      return fail(e, t, "qualifier on a modifier:");
    const char *v = s + i + 1;
    size_t vn = n - i - 1;
    if (mxgw__ieq(s + ns, nl, "redirect") || mxgw__ieq(s + ns, nl, "exp")) {
      int is_redir = (nl == 8);
      int *slot = is_redir ? &rec->redirect : &rec->exp;
      if (*slot >= 0)
        return fail(e, t, is_redir ? "second redirect= modifier:"
                                   : "second exp= modifier:");
      *slot = idx;
      t->type = is_redir ? T_REDIRECT : T_EXP;
      return domain_spec(e, t, v, vn);
    }
    const char *err = NULL;
    if (mxgw__spf_macro_check(v, vn, SPF_M_ANY, NULL, NULL, &err)) {
      char what[120];
      mxgw__spf_fmt(what, sizeof what, "bad macro (%s) in modifier", err);
      return fail(e, t, what);
    }
    t->type = T_UNKNOWN_MOD;
    return 0;
  }
  t->qual = (uint8_t)(qual >= 0 ? qual : MXGW_SPF_PASS);
  if (i < n && s[i] != ':' && s[i] != '/')
    return fail(e, t, "bad term");
  t->type = 0;
  for (size_t k = 0; k < sizeof mechs / sizeof mechs[0]; k++)
    if (mxgw__ieq(s + ns, nl, mechs[k].name)) {
      t->type = mechs[k].type;
      break;
    }
  if (!t->type)
    return fail(e, t, "unknown mechanism");
  const char *a = s + i;
  size_t an = n - i;
  switch (t->type) {
  case T_ALL:
    if (an)
      return fail(e, t, "\"all\" takes no argument:");
    return 0;
  case T_INCLUDE:
  case T_EXISTS:
    if (an == 0 || a[0] != ':')
      return fail(e, t, t->type == T_INCLUDE ? "include needs a domain:"
                                             : "exists needs a domain:");
    return domain_spec(e, t, a + 1, an - 1);
  case T_A:
  case T_MX:
    return a_mx_arg(e, t, a, an);
  case T_PTR:
    if (an == 0)
      return 0;
    if (a[0] != ':')
      return fail(e, t, "bad argument in");
    return domain_spec(e, t, a + 1, an - 1);
  case T_IP4:
    return ip_arg(e, t, a, an, 0);
  case T_IP6:
    return ip_arg(e, t, a, an, 1);
  }
  return fail(e, t, "bad term");
}

int mxgw__spf_parse(spf_arena *a, const mxgw_mem *m, const char *rec,
                    size_t len, spf_record *out, char *err, size_t errcap) {
  perr e = {err, errcap};
  out->terms = NULL;
  out->n = 0;
  out->redirect = out->exp = -1;
  if (!mxgw__spf_is_record(rec, len)) {
    mxgw__spf_fmt(err, errcap,
                  "not an SPF record (no \"v=spf1\" at the start)");
    return -1;
  }
  /* printable ASCII only; count the terms after "v=spf1" on the way */
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)rec[i];
    if (c < 0x20 || c > 0x7e) {
      mxgw__spf_fmt(err, errcap,
                    "%s character 0x%02X at offset %zu of the record",
                    c >= 0x80 ? "non-ASCII" : "control", c, i);
      return -1;
    }
    n += (i >= 6 && c != ' ' && rec[i - 1] == ' ');
  }
  if (n == 0)
    return 0;
  spf_term *terms = mxgw__spf_alloc(a, m, n * sizeof *terms);
  if (!terms)
    return MXGW_E_NOMEM;
  memset(terms, 0, n * sizeof *terms);
  size_t k = 0, i = 6;
  while (i < len) {
    while (i < len && rec[i] == ' ')
      i++;
    if (i >= len)
      break;
    size_t st = i;
    while (i < len && rec[i] != ' ')
      i++;
    spf_term *t = &terms[k];
    t->text = rec + st;
    t->tlen = (uint32_t)(i - st);
    if (parse_term(&e, t, out, (int)k))
      return -1;
    k++;
  }
  out->terms = terms;
  out->n = k;
  return 0;
}
