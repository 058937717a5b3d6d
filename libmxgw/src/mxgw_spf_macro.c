/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf_macro.c: SPF macro strings (RFC 7208 7): the syntax check used
 * when a record is parsed, and the expander for domain-specs and
 * explanation text, with the transformers (a count of right-hand parts,
 * reversal), the delimiters, and URL-encoding for upper-case letters
 * (7.3). Expansion is bounded: a domain expansion keeps at most a few
 * kilobytes however many macros the record holds, dropping labels on the
 * left exactly as the final truncation to 253 octets would (7.3), and an
 * explanation is cut at SPF_EXP_MAX octets.
 */
#include <string.h>

#include "mxgw_spf_int.h"

static int is_delim(char c) {
  return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' ||
         c == '_' || c == '=';
}

static int letter_ok(char l, int flags) {
  switch (l) {
  case 's':
  case 'l':
  case 'o':
  case 'd':
  case 'i':
  case 'p':
  case 'h':
  case 'v':
    return 1;
  case 'c':
  case 'r':
  case 't':
    return (flags & (SPF_M_EXP | SPF_M_ANY)) != 0;
  default:
    return 0;
  }
}

/*
 * Parse one "%{...}" starting at s[i] == '%' && s[i+1] == '{'. On success
 * returns the index after '}' and fills the pieces.
 */
typedef struct spf_mexp {
  char letter; /* lower case */
  int upper;
  unsigned long digits; /* 0: none */
  int reverse;
  unsigned delims; /* bit per delimiter character, 0: none given */
} spf_mexp;

static unsigned delim_bit(char c) {
  static const char set[] = ".-+,/_=";
  const char *p = strchr(set, c);
  return p ? 1u << (p - set) : 0;
}

static size_t parse_mexp(const char *s, size_t n, size_t i, int flags,
                         spf_mexp *m, const char **err) {
  i += 2; /* "%{" */
  if (i >= n) {
    *err = "unterminated macro";
    return 0;
  }
  char l = s[i];
  char ll = (char)mxgw__lower((unsigned char)l);
  if (!letter_ok(ll, flags)) {
    *err = (ll == 'c' || ll == 'r' || ll == 't')
               ? "macros c, r and t are allowed only in exp= text"
               : "unknown macro letter";
    return 0;
  }
  m->letter = ll;
  m->upper = (l != ll);
  i++;
  int nd = 0;
  m->digits = 0;
  while (i < n && s[i] >= '0' && s[i] <= '9') {
    if (m->digits < 1000000)
      m->digits = m->digits * 10 + (unsigned long)(s[i] - '0');
    nd++;
    i++;
  }
  if (nd && m->digits == 0) {
    *err = "macro transformer 0";
    return 0;
  }
  m->reverse = 0;
  if (i < n && (s[i] == 'r' || s[i] == 'R')) {
    m->reverse = 1;
    i++;
  }
  m->delims = 0;
  while (i < n && is_delim(s[i]))
    m->delims |= delim_bit(s[i++]);
  if (i >= n || s[i] != '}') {
    *err = "bad macro (expected '}')";
    return 0;
  }
  return i + 1;
}

int mxgw__spf_macro_check(const char *s, size_t n, int flags, int *uses_p,
                          int *ends_macro, const char **err) {
  int p = 0, last = 0;
  size_t i = 0;
  while (i < n) {
    char c = s[i];
    if (c == '%') {
      if (i + 1 >= n) {
        *err = "'%' at the end";
        return -1;
      }
      char c2 = s[i + 1];
      if (c2 == '%' || c2 == '_' || c2 == '-') {
        i += 2;
        last = 1;
        continue;
      }
      if (c2 != '{') {
        *err = "'%' not followed by '{', '%', '_' or '-'";
        return -1;
      }
      spf_mexp m;
      size_t j = parse_mexp(s, n, i, flags, &m, err);
      if (!j)
        return -1;
      if (m.letter == 'p')
        p = 1;
      i = j;
      last = 1;
      continue;
    }
    unsigned char u = (unsigned char)c;
    if (!((u >= 0x21 && u <= 0x7e) || (u == ' ' && (flags & SPF_M_EXP)))) {
      *err = u >= 0x80 ? "non-ASCII character" : "control character or space";
      return -1;
    }
    i++;
    last = 0;
  }
  if (uses_p)
    *uses_p = p;
  if (ends_macro)
    *ends_macro = last;
  return 0;
}

/* ---- expansion -------------------------------------------------------- */

#define DOMAIN_STREAM_MAX 4096

typedef struct xstate {
  mxgw_buf *out;
  const mxgw_mem *m;
  int flags;
  int discard; /* dropping an overlong first label up to its dot */
  int nomem;
} xstate;

/* Drop labels on the left while the name is longer than 254 octets (one
 * more than 253, for a final dot that may still be removed): the final
 * truncation of 7.3 would drop them too. */
static void compact(xstate *x) {
  mxgw_buf *b = x->out;
  while (b->len - b->off > 254) {
    const char *p = b->data + b->off;
    const char *dot = memchr(p, '.', b->len - b->off);
    if (!dot) {
      /* one label longer than 254: dropped if a dot follows, else the
       * whole name is invalid */
      x->discard = 1;
      mxgw__buf_reset(b);
      return;
    }
    mxgw__buf_consume(b, (size_t)(dot - p) + 1);
  }
}

static void put_raw(xstate *x, const char *p, size_t n) {
  if (x->nomem || n == 0)
    return;
  if (x->flags & SPF_M_DOMAIN) {
    while (x->discard && n) {
      const char *dot = memchr(p, '.', n);
      if (!dot)
        return;
      n -= (size_t)(dot - p) + 1;
      p = dot + 1;
      x->discard = 0;
    }
    if (!n)
      return;
    if (mxgw__buf_append(x->out, x->m, p, n)) {
      x->nomem = 1;
      return;
    }
    if (mxgw__buf_size(x->out) > DOMAIN_STREAM_MAX)
      compact(x);
    return;
  }
  if (x->flags & SPF_M_EXP) {
    size_t have = mxgw__buf_size(x->out);
    if (have >= SPF_EXP_MAX)
      return;
    if (n > SPF_EXP_MAX - have)
      n = SPF_EXP_MAX - have;
  }
  if (mxgw__buf_append(x->out, x->m, p, n))
    x->nomem = 1;
}

static void put(xstate *x, const char *p, size_t n, int esc) {
  if (!esc) {
    put_raw(x, p, n);
    return;
  }
  static const char hex[] = "0123456789ABCDEF";
  char tmp[96];
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      tmp[k++] = (char)c;
    } else {
      tmp[k++] = '%';
      tmp[k++] = hex[c >> 4];
      tmp[k++] = hex[c & 15];
    }
    if (k > sizeof tmp - 3) {
      put_raw(x, tmp, k);
      k = 0;
    }
  }
  put_raw(x, tmp, k);
}

static int in_set(char c, unsigned delims) {
  unsigned b = delim_bit(c);
  return b && (delims & b);
}

/* Emit one macro's value after the transformers (7.3). */
static void emit_value(xstate *x, const char *v, size_t n, const spf_mexp *m) {
  unsigned delims = m->delims ? m->delims : delim_bit('.');
  if (!m->digits && !m->reverse && delims == delim_bit('.')) {
    put(x, v, n, m->upper);
    return;
  }
  /* count the parts */
  size_t parts = 1;
  for (size_t i = 0; i < n; i++)
    if (in_set(v[i], delims))
      parts++;
  size_t keep = (m->digits && m->digits < parts) ? m->digits : parts;
  if (!m->reverse) {
    /* the last `keep` parts, delimiters become dots */
    size_t skip = parts - keep, start = 0;
    for (size_t i = 0; i < n && skip; i++)
      if (in_set(v[i], delims)) {
        skip--;
        start = i + 1;
      }
    size_t seg = start;
    for (size_t i = start; i <= n; i++) {
      if (i == n || in_set(v[i], delims)) {
        put(x, v + seg, i - seg, m->upper);
        if (i < n)
          put_raw(x, ".", 1);
        seg = i + 1;
      }
    }
    return;
  }
  /* reversed: the first `keep` parts in reverse order (the last `keep` of
   * the reversed list) */
  size_t end = n, cnt = 0;
  for (size_t i = 0; i < n; i++)
    if (in_set(v[i], delims) && ++cnt == keep) {
      end = i;
      break;
    }
  size_t e = end;
  int first = 1;
  for (;;) {
    size_t s0 = e;
    while (s0 > 0 && !in_set(v[s0 - 1], delims))
      s0--;
    if (!first)
      put_raw(x, ".", 1);
    put(x, v + s0, e - s0, m->upper);
    first = 0;
    if (s0 == 0)
      break;
    e = s0 - 1;
  }
}

int mxgw__spf_expand(mxgw_buf *out, const mxgw_mem *m,
                     const spf_macro_env *env, const char *s, size_t n,
                     int flags, const char **err) {
  xstate x = {out, m, flags, 0, 0};
  mxgw__buf_reset(out);
  size_t i = 0;
  while (i < n) {
    const char *pct = memchr(s + i, '%', n - i);
    size_t lit = pct ? (size_t)(pct - (s + i)) : n - i;
    for (size_t k = i; k < i + lit; k++) {
      unsigned char u = (unsigned char)s[k];
      if (!((u >= 0x21 && u <= 0x7e) || (u == ' ' && (flags & SPF_M_EXP)))) {
        *err = u >= 0x80 ? "non-ASCII character" : "control character";
        return -1;
      }
    }
    put_raw(&x, s + i, lit);
    i += lit;
    if (i >= n)
      break;
    if (i + 1 >= n) {
      *err = "'%' at the end";
      return -1;
    }
    char c2 = s[i + 1];
    if (c2 == '%') {
      put_raw(&x, "%", 1);
      i += 2;
      continue;
    }
    if (c2 == '_') {
      put_raw(&x, " ", 1);
      i += 2;
      continue;
    }
    if (c2 == '-') {
      put_raw(&x, "%20", 3);
      i += 2;
      continue;
    }
    if (c2 != '{') {
      *err = "'%' not followed by '{', '%', '_' or '-'";
      return -1;
    }
    spf_mexp me;
    size_t j = parse_mexp(s, n, i, flags, &me, err);
    if (!j)
      return -1;
    int li = me.letter - 'a';
    emit_value(&x, env->v[li] ? env->v[li] : "", env->v[li] ? env->n[li] : 0,
               &me);
    i = j;
  }
  if (x.nomem)
    return MXGW_E_NOMEM;
  if (flags & SPF_M_DOMAIN) {
    if (x.discard) /* a label of more than 254 octets at the end: invalid */
      mxgw__buf_reset(out);
    size_t len = mxgw__buf_size(out);
    if (len && out->data[out->len - 1] == '.')
      out->len--;
    while (mxgw__buf_size(out) > 253) {
      const char *p = out->data + out->off;
      const char *dot = memchr(p, '.', mxgw__buf_size(out));
      if (!dot)
        break;
      mxgw__buf_consume(out, (size_t)(dot - p) + 1);
    }
  }
  /* NUL-terminate without counting it */
  if (mxgw__buf_reserve(out, m, 1))
    return MXGW_E_NOMEM;
  out->data[out->len] = '\0';
  return 0;
}

int mxgw__spf_name_ok(const char *name, size_t n) {
  if (n == 0 || n > 253)
    return -1;
  size_t lab = 0;
  for (size_t i = 0; i < n; i++) {
    if (name[i] == '.') {
      if (lab == 0)
        return -1;
      lab = 0;
    } else if (name[i] == '\0' || ++lab > 63) {
      return -1;
    }
  }
  return lab ? 0 : -1;
}
