/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf.c: the SPF evaluator, check_host() of RFC 7208 as a state
 * machine over the asynchronous resolver. A check holds a stack of frames,
 * one per check_host() level (include pushes one; redirect= replaces the
 * current one, 6.1); each step either decides something from data at hand
 * or asks the resolver and returns, and the resolver's callback stores the
 * answer and steps on. Lookups that several names need at once (the
 * addresses of MX hosts, the validation of PTR names) go out together and
 * are judged in answer order once all are back, which keeps the outcome
 * the same as a sequential evaluation. Every error at any depth ends the
 * whole evaluation: include passes temperror and permerror up (5.2), and
 * redirect returns the target's result.
 *
 * Memory: a check allocates from its own arena; finished checks return to
 * their context's pool with their arena blocks and buffers, so a busy
 * gateway (or a benchmark) evaluates without malloc.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mxgw_resolver_int.h"
#include "mxgw_spf_int.h"

/* ---- arena ------------------------------------------------------------ */

struct spf_ablk {
  spf_ablk *next;
  size_t used;
  _Alignas(max_align_t) unsigned char mem[];
};

#define ABLK 8192
#define ABIG (ABLK / 4)

void *mxgw__spf_alloc(spf_arena *a, const mxgw_mem *m, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (n > ABIG) {
    spf_ablk *b = mxgw__malloc(m, sizeof *b + n);
    if (!b)
      return NULL;
    b->next = a->big;
    a->big = b;
    return b->mem;
  }
  if (!a->cur) {
    if (!a->first) {
      a->first = mxgw__malloc(m, sizeof *a->first + ABLK);
      if (!a->first)
        return NULL;
      a->first->next = NULL;
    }
    a->cur = a->first;
    a->cur->used = 0;
  }
  while (a->cur->used + n > ABLK) {
    if (!a->cur->next) {
      spf_ablk *b = mxgw__malloc(m, sizeof *b + ABLK);
      if (!b)
        return NULL;
      b->next = NULL;
      a->cur->next = b;
    }
    a->cur = a->cur->next;
    a->cur->used = 0;
  }
  void *p = a->cur->mem + a->cur->used;
  a->cur->used += n;
  return p;
}

char *mxgw__spf_strndup(spf_arena *a, const mxgw_mem *m, const char *s,
                        size_t n) {
  char *d = mxgw__spf_alloc(a, m, n + 1);
  if (d) {
    if (n)
      memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void mxgw__spf_arena_reset(spf_arena *a, const mxgw_mem *m) {
  while (a->big) {
    spf_ablk *b = a->big;
    a->big = b->next;
    mxgw__free(m, b);
  }
  a->cur = NULL;
}

void mxgw__spf_arena_free(spf_arena *a, const mxgw_mem *m) {
  mxgw__spf_arena_reset(a, m);
  while (a->first) {
    spf_ablk *b = a->first;
    a->first = b->next;
    mxgw__free(m, b);
  }
}

/* ---- formatting --------------------------------------------------------- */

/* A writer of at most cap - 1 octets and a NUL. */
typedef struct fmt_out {
  char *p, *end;
} fmt_out;

static void fo_put(fmt_out *o, const char *s, size_t n) {
  size_t room = (size_t)(o->end - o->p);
  if (n > room)
    n = room;
  memcpy(o->p, s, n);
  o->p += n;
}

static void fo_pad(fmt_out *o, char ch, size_t n) {
  while (n-- && o->p < o->end)
    *o->p++ = ch;
}

int mxgw__spf_vfmt(char *buf, size_t cap, const char *fmt, va_list ap) {
  if (!cap)
    return 0;
  va_list ap0;
  va_copy(ap0, ap);
  fmt_out o = {buf, buf + cap - 1};
  const char *f = fmt;
  while (*f) {
    const char *pct = strchr(f, '%');
    if (!pct) {
      fo_put(&o, f, strlen(f));
      break;
    }
    fo_put(&o, f, (size_t)(pct - f));
    f = pct + 1;
    int zero = 0, width = 0, prec = -1, lng = 0, size = 0;
    if (*f == '0') {
      zero = 1;
      f++;
    }
    while (*f >= '0' && *f <= '9')
      width = width * 10 + (*f++ - '0');
    if (*f == '.') {
      f++;
      if (*f == '*') {
        prec = va_arg(ap, int);
        f++;
      } else {
        prec = 0;
        while (*f >= '0' && *f <= '9')
          prec = prec * 10 + (*f++ - '0');
      }
    }
    if (*f == 'z') {
      size = 1;
      f++;
    } else {
      while (*f == 'l') {
        lng++;
        f++;
      }
    }
    char num[24];
    size_t nn = 0;
    unsigned long long u = 0;
    int neg = 0, base = 10;
    const char *digits = "0123456789abcdef";
    switch (*f) {
    case '%':
      fo_put(&o, "%", 1);
      f++;
      continue;
    case 's': {
      const char *s = va_arg(ap, const char *);
      size_t n = prec < 0 ? strlen(s) : (size_t)prec;
      if (prec >= 0) {
        const char *z = memchr(s, '\0', n);
        if (z)
          n = (size_t)(z - s);
      }
      if ((size_t)width > n)
        fo_pad(&o, ' ', (size_t)width - n);
      fo_put(&o, s, n);
      f++;
      continue;
    }
    case 'd': {
      long long v = size ? (long long)va_arg(ap, size_t)
                    : lng >= 2 ? va_arg(ap, long long)
                    : lng == 1 ? va_arg(ap, long)
                               : va_arg(ap, int);
      neg = v < 0;
      u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
      break;
    }
    case 'u':
    case 'x':
    case 'X':
      u = size ? va_arg(ap, size_t)
          : lng >= 2 ? va_arg(ap, unsigned long long)
          : lng == 1 ? va_arg(ap, unsigned long)
                     : va_arg(ap, unsigned);
      if (*f != 'u')
        base = 16;
      if (*f == 'X')
        digits = "0123456789ABCDEF";
      break;
    default: { /* not needed here: let the C library do it */
      int n = vsnprintf(buf, cap, fmt, ap0);
      va_end(ap0);
      return n < 0 ? 0 : (size_t)n >= cap ? (int)cap - 1 : n;
    }
    }
    f++;
    if (prec >= 0) { /* a precision on a number: not used here */
      int n = vsnprintf(buf, cap, fmt, ap0);
      va_end(ap0);
      return n < 0 ? 0 : (size_t)n >= cap ? (int)cap - 1 : n;
    }
    do {
      num[sizeof num - 1 - nn++] = digits[u % (unsigned)base];
      u /= (unsigned)base;
    } while (u);
    size_t len = nn + (size_t)neg;
    if (!zero && (size_t)width > len)
      fo_pad(&o, ' ', (size_t)width - len);
    if (neg)
      fo_put(&o, "-", 1);
    if (zero && (size_t)width > len)
      fo_pad(&o, '0', (size_t)width - len);
    fo_put(&o, num + sizeof num - nn, nn);
  }
  va_end(ap0);
  *o.p = '\0';
  return (int)(o.p - buf);
}

int mxgw__spf_fmt(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = mxgw__spf_vfmt(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

/* ---- names ------------------------------------------------------------ */

const char *mxgw_spf_result_name(int result) {
  switch (result) {
  case MXGW_SPF_NONE:
    return "none";
  case MXGW_SPF_NEUTRAL:
    return "neutral";
  case MXGW_SPF_PASS:
    return "pass";
  case MXGW_SPF_FAIL:
    return "fail";
  case MXGW_SPF_SOFTFAIL:
    return "softfail";
  case MXGW_SPF_TEMPERROR:
    return "temperror";
  case MXGW_SPF_PERMERROR:
    return "permerror";
  default:
    return "unknown";
  }
}

const char *mxgw_spf_trace_kind_name(int kind) {
  switch (kind) {
  case MXGW_SPF_TRACE_QUERY:
    return "query";
  case MXGW_SPF_TRACE_RECORD:
    return "record";
  case MXGW_SPF_TRACE_TERM:
    return "term";
  case MXGW_SPF_TRACE_RESULT:
    return "result";
  default:
    return "unknown";
  }
}

const char *mxgw__spf_type_name(int type) {
  switch (type) {
  case MXGW_DNS_A:
    return "A";
  case MXGW_DNS_AAAA:
    return "AAAA";
  case MXGW_DNS_MX:
    return "MX";
  case MXGW_DNS_TXT:
    return "TXT";
  case MXGW_DNS_PTR:
    return "PTR";
  case MXGW_DNS_CNAME:
    return "CNAME";
  default:
    return "?";
  }
}

/* The overall time limit is in seconds' range: a coarse clock (a few ms
 * resolution, no system call) is enough. */
static int64_t mono_ms(void) {
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- context ---------------------------------------------------------- */

int mxgw_spf_new(mxgw_spf **out, mxgw_resolver *r, const mxgw_mem *mem) {
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  if (!r)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_spf *s = mxgw__calloc(&m, 1, sizeof *s);
  if (!s)
    return MXGW_E_NOMEM;
  s->mem = m;
  s->r = r;
  s->max_terms = 10;
  s->max_void = 2;
  s->max_mx = 10;
  s->max_ptr = 10;
  s->timeout_ms = 20000;
  s->trace = 1;
  *out = s;
  return MXGW_OK;
}

static void check_destroy(mxgw_spf_check *c);

void mxgw_spf_free(mxgw_spf *spf) {
  if (!spf)
    return;
  while (spf->pool) {
    mxgw_spf_check *c = spf->pool;
    spf->pool = c->next_free;
    check_destroy(c);
  }
  mxgw__free(&spf->mem, spf->receiver);
  mxgw__free(&spf->mem, spf->defexp);
  mxgw_mem m = spf->mem;
  mxgw__free(&m, spf);
}

int mxgw_spf_set_int(mxgw_spf *spf, int key, int64_t v) {
  if (!spf)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_SPF_OPT_MAX_DNS_TERMS:
    if (v < 1 || v > 1000)
      return MXGW_E_RANGE;
    spf->max_terms = (int)v;
    return MXGW_OK;
  case MXGW_SPF_OPT_MAX_VOID_LOOKUPS:
    if (v < 0 || v > 1000)
      return MXGW_E_RANGE;
    spf->max_void = (int)v;
    return MXGW_OK;
  case MXGW_SPF_OPT_MAX_MX_NAMES:
    if (v < 1 || v > 1000)
      return MXGW_E_RANGE;
    spf->max_mx = (int)v;
    return MXGW_OK;
  case MXGW_SPF_OPT_MAX_PTR_NAMES:
    if (v < 1 || v > 1000)
      return MXGW_E_RANGE;
    spf->max_ptr = (int)v;
    return MXGW_OK;
  case MXGW_SPF_OPT_TIMEOUT_MS:
    if (v < 0 || v > 86400000)
      return MXGW_E_RANGE;
    spf->timeout_ms = v;
    return MXGW_OK;
  case MXGW_SPF_OPT_TRACE:
    if (v != 0 && v != 1)
      return MXGW_E_RANGE;
    spf->trace = (int)v;
    return MXGW_OK;
  case MXGW_SPF_OPT_NOW:
    if (v < 0)
      return MXGW_E_RANGE;
    spf->now = v;
    return MXGW_OK;
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_spf_get_int(const mxgw_spf *spf, int key, int64_t *out) {
  if (!spf || !out)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_SPF_OPT_MAX_DNS_TERMS:
    *out = spf->max_terms;
    return MXGW_OK;
  case MXGW_SPF_OPT_MAX_VOID_LOOKUPS:
    *out = spf->max_void;
    return MXGW_OK;
  case MXGW_SPF_OPT_MAX_MX_NAMES:
    *out = spf->max_mx;
    return MXGW_OK;
  case MXGW_SPF_OPT_MAX_PTR_NAMES:
    *out = spf->max_ptr;
    return MXGW_OK;
  case MXGW_SPF_OPT_TIMEOUT_MS:
    *out = spf->timeout_ms;
    return MXGW_OK;
  case MXGW_SPF_OPT_TRACE:
    *out = spf->trace;
    return MXGW_OK;
  case MXGW_SPF_OPT_NOW:
    *out = spf->now;
    return MXGW_OK;
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_spf_set_str(mxgw_spf *spf, int key, const char *value) {
  if (!spf)
    return MXGW_E_INVAL;
  char **slot;
  switch (key) {
  case MXGW_SPF_OPT_RECEIVER:
    slot = &spf->receiver;
    if (value) {
      for (const char *p = value; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
          return MXGW_E_INVAL;
      if (strlen(value) > 255)
        return MXGW_E_INVAL;
    }
    break;
  case MXGW_SPF_OPT_DEFAULT_EXPLANATION: {
    slot = &spf->defexp;
    const char *err;
    if (value && (strlen(value) > SPF_EXP_MAX ||
                  mxgw__spf_macro_check(value, strlen(value), SPF_M_EXP, NULL,
                                        NULL, &err)))
      return MXGW_E_INVAL;
    break;
  }
  default:
    return MXGW_E_INVAL;
  }
  char *copy = NULL;
  if (value && *value) {
    copy = mxgw__strdup(&spf->mem, value);
    if (!copy)
      return MXGW_E_NOMEM;
  }
  mxgw__free(&spf->mem, *slot);
  *slot = copy;
  return MXGW_OK;
}

/* ---- the check's trace ------------------------------------------------- */

/* A new, zeroed trace entry, or NULL when there is no memory for it (the
 * entry is dropped; the evaluation goes on). Nothing is formatted here:
 * see mxgw__spf_trace_format(). */
static spf_trace_ent *tr_add(mxgw_spf_check *c, int depth, int kind,
                             int code) {
  if (MXGW_UNLIKELY(c->ntr == c->captr)) {
    size_t nc = c->captr ? c->captr * 2 : 32;
    spf_trace_ent *nt = mxgw__realloc(&c->mem, c->tr, nc * sizeof *nt);
    if (!nt)
      return NULL;
    c->tr = nt;
    c->captr = nc;
  }
  spf_trace_ent *e = &c->tr[c->ntr++];
  memset(e, 0, sizeof *e);
  e->depth = (uint8_t)(depth > 255 ? 255 : depth);
  e->kind = (uint8_t)kind;
  e->code = (uint8_t)code;
  return e;
}

/* An entry with a subject (s1, n1) and an object (s2, n2). */
static void tr_pair(mxgw_spf_check *c, int depth, int kind, int code,
                    const char *s1, size_t n1, const char *s2, size_t n2) {
  spf_trace_ent *e = tr_add(c, depth, kind, code);
  if (e) {
    e->s1 = s1;
    e->n1 = (uint32_t)n1;
    e->s2 = s2;
    e->n2 = (uint32_t)n2;
  }
}

static spf_why mkwhy(int code, const char *s, size_t n) {
  spf_why w;
  memset(&w, 0, sizeof w);
  w.code = (uint8_t)code;
  w.s = s;
  w.n = (uint32_t)n;
  return w;
}

static spf_why why_text(const char *literal) {
  return mkwhy(WHY_TEXT, literal, 0);
}

#define TRACE(c) if ((c)->trace_on)

/* ---- evaluation state ------------------------------------------------- */

enum { PH_EVAL = 0, PH_EXP, PH_DONE };
enum { F_NEED_RECORD = 0, F_WAIT, F_TERMS, F_DONE };
enum { SUB_BEGIN = 0, SUB_TARGET, SUB_WAIT, SUB_DONE };
enum { O_NOMATCH = 0, O_MATCH };
enum {
  W_NONE = 0,
  W_RECORD,
  W_A,
  W_MX,
  W_PTR,
  W_EXISTS,
  W_EXP,
  W_P_PTR,
  W_BATCH_MX,
  W_BATCH_PTR,
  W_BATCH_P
};
enum { X_START = 0, X_TEXT, X_DEFAULT, X_END };

struct spf_frame {
  spf_frame *up;
  const char *domain;
  size_t dlen;
  spf_record rec;
  size_t pos;
  int depth;
  int redirected;
  int state;
  int sub;
  int outcome;
  int result;
  const spf_term *decided;
  const char *target;
  size_t tlen;
  spf_why why; /* reason of the outcome, for the trace */
};

struct spf_slot {
  mxgw_spf_check *c;
  mxgw_dns_query *q;
  const char *name;
  size_t nlen;
  int status; /* -1: not asked */
  int match;
  const spf_tr_ans *tans; /* the answer, for the trace */
  int traced;             /* tans (or the status alone) is recorded */
};

/* The term being evaluated in the current frame. */
static const spf_term *cur_term(const mxgw_spf_check *c) {
  const spf_frame *f = c->fr;
  if (f->pos < f->rec.n)
    return &f->rec.terms[f->pos];
  return f->rec.redirect >= 0 ? &f->rec.terms[f->rec.redirect] : NULL;
}

static void set_problem(mxgw_spf_check *c, int result, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
static void set_problem(mxgw_spf_check *c, int result, const char *fmt, ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  int n = mxgw__spf_vfmt(buf, sizeof buf, fmt, ap);
  va_end(ap);
  /* keep it printable: it goes into headers and SMTP replies */
  for (int i = 0; i < n; i++)
    if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] >= 0x7f)
      buf[i] = '?';
  c->problem = mxgw__spf_strndup(&c->arena, &c->mem, buf, (size_t)n);
  c->problem_n = c->problem ? (size_t)n : 0;
  c->result = result;
  c->phase = PH_DONE;
  TRACE(c) {
    if (c->problem) {
      spf_trace_ent *e = tr_add(c, c->fr ? c->fr->depth : 0,
                                MXGW_SPF_TRACE_RESULT, TRC_PROBLEM);
      if (e) {
        e->a = result;
        e->s1 = c->problem;
        e->n1 = (uint32_t)c->problem_n;
      }
    }
  }
}

static void nomem(mxgw_spf_check *c) {
  set_problem(c, MXGW_SPF_TEMPERROR, "out of memory");
}

/* Does address a (alen octets) fall within cidr bits of the client? */
static int addr_match(const mxgw_spf_check *c, const unsigned char *a,
                      size_t alen, int cidr) {
  size_t want = c->v6 ? 16 : 4;
  if (alen != want)
    return 0;
  int full = cidr / 8, rem = cidr % 8;
  if (memcmp(a, c->ip, (size_t)full))
    return 0;
  if (rem) {
    unsigned char mask = (unsigned char)(0xff << (8 - rem));
    if ((a[full] & mask) != (c->ip[full] & mask))
      return 0;
  }
  return 1;
}

/* ---- macro environment -------------------------------------------------- */

/* %{p} for <domain> d (7.3): d itself if validated, else a validated
 * subdomain of d, else any validated name, else "unknown". */
static const char *p_value(const mxgw_spf_check *c, const char *d, size_t dn,
                           size_t *n) {
  for (size_t i = 0; i < c->p_n; i++) {
    size_t ln = strlen(c->p_names[i]);
    if (ln == dn && mxgw__ieq(c->p_names[i], ln, d)) {
      *n = ln;
      return c->p_names[i];
    }
  }
  for (size_t i = 0; i < c->p_n; i++) {
    size_t ln = strlen(c->p_names[i]);
    if (ln > dn + 1 && c->p_names[i][ln - dn - 1] == '.' &&
        mxgw__ieq(c->p_names[i] + ln - dn, dn, d)) {
      *n = ln;
      return c->p_names[i];
    }
  }
  if (c->p_n) {
    *n = strlen(c->p_names[0]);
    return c->p_names[0];
  }
  *n = 7;
  return "unknown";
}

int mxgw__spf_check_expand(mxgw_spf_check *c, const char *d, size_t dn,
                           const char *s, size_t n, int flags,
                           const char **err) {
  spf_macro_env env;
  memset(&env, 0, sizeof env);
#define SETV(L, P, N)                                                          \
  do {                                                                         \
    env.v[(L) - 'a'] = (P);                                                    \
    env.n[(L) - 'a'] = (N);                                                    \
  } while (0)
  SETV('s', c->sender, c->sender_n);
  SETV('l', c->local, c->local_n);
  SETV('o', c->sdomain, c->sdomain_n);
  SETV('d', d, dn);
  SETV('i', c->i_str, c->i_len);
  SETV('h', c->helo, c->helo_n);
  SETV('c', c->c_str, c->c_len);
  if (c->receiver)
    SETV('r', c->receiver, c->receiver_n);
  else
    SETV('r', "unknown", 7);
  SETV('t', c->t_str, c->t_len);
  if (c->v6)
    SETV('v', "ip6", 3);
  else
    SETV('v', "in-addr", 7);
  if (c->p_state == 2) {
    size_t pn;
    const char *p = p_value(c, d, dn, &pn);
    SETV('p', p, pn);
  }
#undef SETV
  return mxgw__spf_expand(&c->scratch, &c->mem, &env, s, n, flags, err);
}

/* ---- asking the resolver ------------------------------------------------ */

static void handle(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans);
static void advance(mxgw_spf_check *c);
static void batch_done(mxgw_spf_check *c);

static int timed_out(mxgw_spf_check *c) {
  if (c->timeout_ms <= 0 || mono_ms() - c->start_ms <= c->timeout_ms)
    return 0;
  set_problem(c, MXGW_SPF_TEMPERROR,
              "evaluation took longer than %lld ms (RFC 7208 4.6.4)",
              (long long)c->timeout_ms);
  return 1;
}

static void on_answer(void *arg, int st, const mxgw_dns_answer *ans) {
  mxgw_spf_check *c = arg;
  c->q = NULL;
  if (c->done)
    return;
  if (timed_out(c)) {
    advance(c);
    return;
  }
  handle(c, st, ans);
  advance(c);
}

static void ask(mxgw_spf_check *c, const char *name, int type, int wait) {
  c->wait = wait;
  c->qname = name;
  c->qtype = type;
  c->queries++;
  int rv = mxgw_resolver_query(c->r, name, type, on_answer, c, &c->q);
  if (rv == MXGW_OK)
    return;
  c->q = NULL;
  if (rv == MXGW_E_NOMEM) {
    nomem(c);
    return;
  }
  /* the resolver refused the name: as a malformed answer */
  handle(c, MXGW_DNS_ERROR, NULL);
}

/* What the trace shows of an answer, copied into the arena: the count and
 * the first SPF_TR_SHOWN records, each only as far as the text can show it
 * (an address whole, other data up to one octet past the escaper's limit,
 * which is all the escaper looks at). NULL when there is no memory. */
static const spf_tr_ans *tr_copy_answer(mxgw_spf_check *c, int type,
                                        const mxgw_dns_answer *ans) {
  size_t n = mxgw_dns_answer_count(ans);
  size_t shown = n > SPF_TR_SHOWN ? SPF_TR_SHOWN : n;
  size_t cap = (type == MXGW_DNS_A || type == MXGW_DNS_AAAA) ? 16
               : type == MXGW_DNS_TXT                       ? 401
                                                            : 301;
  const char *p[SPF_TR_SHOWN];
  size_t l[SPF_TR_SHOWN];
  size_t total = sizeof(spf_tr_ans) + shown * sizeof(spf_tr_rr);
  for (size_t i = 0; i < shown; i++) {
    if (mxgw_dns_answer_data(ans, i, &p[i], &l[i])) {
      p[i] = NULL;
      continue;
    }
    total += l[i] < cap ? l[i] : cap;
  }
  spf_tr_ans *a = mxgw__spf_alloc(&c->arena, &c->mem, total);
  if (!a)
    return NULL;
  a->n = n;
  a->shown = shown;
  char *d = (char *)&a->rr[shown];
  for (size_t i = 0; i < shown; i++) {
    spf_tr_rr *r = &a->rr[i];
    if (!p[i]) {
      r->p = NULL;
      continue;
    }
    size_t have = l[i] < cap ? l[i] : cap;
    if (have)
      memcpy(d, p[i], have);
    r->p = d;
    r->len = (uint32_t)(l[i] > UINT32_MAX ? UINT32_MAX : l[i]);
    r->have = (uint32_t)have;
    r->pref = type == MXGW_DNS_MX ? mxgw_dns_answer_pref(ans, i) : 0;
    d += have;
  }
  return a;
}

/* Record a lookup and its answer (suffix: TRS_*). */
static void tr_answer(mxgw_spf_check *c, int depth, int type, const char *name,
                      int st, const mxgw_dns_answer *ans, int suffix) {
  const spf_tr_ans *a = NULL;
  if (st == MXGW_DNS_OK && ans) {
    a = tr_copy_answer(c, type, ans);
    if (!a)
      return;
  }
  spf_trace_ent *e = tr_add(c, depth, MXGW_SPF_TRACE_QUERY, TRC_ANSWER);
  if (!e)
    return;
  e->type = (uint8_t)type;
  e->st = (uint8_t)st;
  e->flag = (uint8_t)suffix;
  e->s1 = name;
  e->u.ans = a;
}

/* ---- batches ------------------------------------------------------------ */

static void on_slot(void *arg, int st, const mxgw_dns_answer *ans) {
  spf_slot *s = arg;
  mxgw_spf_check *c = s->c;
  s->q = NULL;
  s->status = st;
  if (c->done)
    return;
  if (st == MXGW_DNS_OK) {
    int cidr;
    if (c->wait == W_BATCH_MX) {
      const spf_term *t = cur_term(c);
      cidr = c->v6 ? t->cidr6 : t->cidr4;
    } else {
      cidr = c->v6 ? 128 : 32;
    }
    size_t n = mxgw_dns_answer_count(ans);
    for (size_t i = 0; i < n && !s->match; i++) {
      const char *p;
      size_t l;
      if (!mxgw_dns_answer_data(ans, i, &p, &l) &&
          addr_match(c, (const unsigned char *)p, l, cidr))
        s->match = 1;
    }
  }
  if (c->trace_on) {
    /* keep the answer; tr_slots() records it in order */
    if (st == MXGW_DNS_OK && ans) {
      s->tans = tr_copy_answer(c, c->v6 ? MXGW_DNS_AAAA : MXGW_DNS_A, ans);
      s->traced = s->tans != NULL;
    } else {
      s->traced = 1;
    }
  }
  if (--c->slots_pending)
    return;
  if (timed_out(c)) {
    advance(c);
    return;
  }
  batch_done(c);
  advance(c);
}

/* Ask the address lookups of a batch; slots with status -1 stay unasked. */
static void batch_start(mxgw_spf_check *c, int wait) {
  c->wait = wait;
  c->slots_pending = 0;
  for (size_t i = 0; i < c->nslots; i++) {
    spf_slot *s = &c->slots[i];
    if (s->status != 0)
      continue;
    c->queries++;
    int rv = mxgw_resolver_query(c->r, s->name,
                                 c->v6 ? MXGW_DNS_AAAA : MXGW_DNS_A, on_slot,
                                 s, &s->q);
    if (rv == MXGW_OK) {
      c->slots_pending++;
    } else {
      s->q = NULL;
      s->status = MXGW_DNS_ERROR;
      if (rv == MXGW_E_NOMEM) {
        nomem(c);
        return;
      }
    }
  }
  if (!c->slots_pending)
    batch_done(c);
}

static spf_slot *slots_new(mxgw_spf_check *c, size_t n) {
  c->slots = mxgw__spf_alloc(&c->arena, &c->mem, (n ? n : 1) * sizeof *c->slots);
  c->nslots = 0;
  if (c->slots)
    memset(c->slots, 0, (n ? n : 1) * sizeof *c->slots);
  return c->slots;
}

/* The next slot, for the target name of ans[i] (an MX exchange, a PTR
 * name) without the final dot; the caller sets its status. NULL after
 * nomem(). */
static spf_slot *slot_add(mxgw_spf_check *c, const mxgw_dns_answer *ans,
                          size_t i) {
  const char *p;
  size_t l;
  mxgw_dns_answer_data(ans, i, &p, &l);
  if (l && p[l - 1] == '.')
    l--;
  spf_slot *sl = &c->slots[c->nslots++];
  sl->c = c;
  sl->name = mxgw__spf_strndup(&c->arena, &c->mem, p, l);
  sl->nlen = l;
  if (!sl->name) {
    nomem(c);
    return NULL;
  }
  return sl;
}

/* One slot per target name of ans[0..n) (MX exchanges, PTR names). A name
 * that cannot be looked up, including a null MX (".", RFC 7505), gets
 * status -1: it has no addresses to ask. false after nomem(). */
static bool slots_from_names(mxgw_spf_check *c, const mxgw_dns_answer *ans,
                             size_t n) {
  if (!slots_new(c, n)) {
    nomem(c);
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    spf_slot *sl = slot_add(c, ans, i);
    if (!sl)
      return false;
    sl->status = mxgw__spf_name_ok(sl->name, sl->nlen) ? -1 : 0;
  }
  return true;
}

/* Trace the slots' answers in order, up to index last (inclusive). */
static void tr_slots(mxgw_spf_check *c, size_t last, int depth) {
  TRACE(c) {
    for (size_t i = 0; i <= last && i < c->nslots; i++) {
      spf_slot *s = &c->slots[i];
      if (s->status < 0 || !s->traced)
        continue;
      spf_trace_ent *e = tr_add(c, depth, MXGW_SPF_TRACE_QUERY, TRC_ANSWER);
      if (!e)
        continue;
      e->type = (uint8_t)(c->v6 ? MXGW_DNS_AAAA : MXGW_DNS_A);
      e->st = (uint8_t)s->status;
      e->s1 = s->name;
      e->u.ans = s->tans;
    }
  }
}

/* ---- targets ------------------------------------------------------------ */

enum { TG_OK = 0, TG_WAIT, TG_INVALID, TG_ERR };

static void need_p(mxgw_spf_check *c);

/* The target name of a term (or of exp=): <domain>, or the expansion of its
 * domain-spec. */
static int target(mxgw_spf_check *c, const char *dom, size_t dn,
                  const char *spec, size_t sn, int uses_p, const char **out,
                  size_t *outn) {
  if (!spec) {
    *out = dom;
    *outn = dn;
    return TG_OK;
  }
  if (uses_p && c->p_state != 2) {
    need_p(c);
    return c->phase == PH_DONE ? TG_ERR : TG_WAIT;
  }
  const char *err = NULL;
  int rv = mxgw__spf_check_expand(c, dom, dn, spec, sn, SPF_M_DOMAIN, &err);
  if (rv == MXGW_E_NOMEM) {
    nomem(c);
    return TG_ERR;
  }
  if (rv) { /* checked at parse time; cannot happen */
    set_problem(c, MXGW_SPF_PERMERROR, "bad macro in \"%.*s\": %s",
                (int)(sn > 200 ? 200 : sn), spec, err);
    return TG_ERR;
  }
  size_t n = mxgw__buf_size(&c->scratch);
  char *t = mxgw__spf_strndup(&c->arena, &c->mem, mxgw__buf_ptr(&c->scratch), n);
  if (!t) {
    nomem(c);
    return TG_ERR;
  }
  *out = t;
  *outn = n;
  return mxgw__spf_name_ok(t, n) ? TG_INVALID : TG_OK;
}

/* ---- %{p} ----------------------------------------------------------------- */

static void need_p(mxgw_spf_check *c) {
  if (c->p_state)
    return;
  c->p_state = 1;
  ask(c, c->rev, MXGW_DNS_PTR, W_P_PTR);
}

/* How many PTR names of ans to look at: the rest past max_ptr are ignored
 * (4.6.4); the largest count seen is kept for the caller. */
static size_t ptr_count(mxgw_spf_check *c, const mxgw_dns_answer *ans) {
  size_t n = mxgw_dns_answer_count(ans);
  if ((int)n > c->ptr_names)
    c->ptr_names = (int)n;
  return n > (size_t)c->max_ptr ? (size_t)c->max_ptr : n;
}

static void p_ptr_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans) {
  TRACE(c) {
    tr_answer(c, c->fr ? c->fr->depth : 0, MXGW_DNS_PTR, c->rev, st, ans,
              TRS_P);
  }
  if (st != MXGW_DNS_OK) {
    c->p_state = 2;
    return;
  }
  size_t n = ptr_count(c, ans);
  if (slots_from_names(c, ans, n))
    batch_start(c, W_BATCH_P);
}

static void p_batch_done(mxgw_spf_check *c) {
  size_t k = 0;
  for (size_t i = 0; i < c->nslots; i++)
    if (c->slots[i].status == MXGW_DNS_OK && c->slots[i].match)
      k++;
  c->p_names = mxgw__spf_alloc(&c->arena, &c->mem, (k ? k : 1) * sizeof(char *));
  if (!c->p_names) {
    nomem(c);
    return;
  }
  c->p_n = 0;
  for (size_t i = 0; i < c->nslots; i++)
    if (c->slots[i].status == MXGW_DNS_OK && c->slots[i].match)
      c->p_names[c->p_n++] = c->slots[i].name;
  tr_slots(c, c->nslots, c->fr ? c->fr->depth : 0);
  TRACE(c) {
    spf_trace_ent *e =
        tr_add(c, c->fr ? c->fr->depth : 0, MXGW_SPF_TRACE_TERM, TRC_PVAL);
    if (e) {
      e->u.pn = c->p_names;
      e->a = (int)c->p_n;
    }
  }
  c->p_state = 2;
  c->nslots = 0;
}

/* ---- terms ------------------------------------------------------------- */

static void term_outcome(mxgw_spf_check *c, int outcome, spf_why why) {
  c->fr->outcome = outcome;
  c->fr->why = why;
  c->fr->sub = SUB_DONE;
  c->wait = W_NONE;
}

/* Count a void lookup (4.6.4); 1 if the limit is now exceeded. */
static int void_lookup(mxgw_spf_check *c, const spf_term *t) {
  if (++c->voids <= c->max_void)
    return 0;
  set_problem(c, MXGW_SPF_PERMERROR,
              "more than %d void lookups, at \"%.*s\" in %.*s (RFC 7208 "
              "4.6.4)",
              c->max_void, (int)(t->tlen > 200 ? 200 : t->tlen), t->text,
              (int)c->fr->dlen, c->fr->domain);
  return 1;
}

/* "<name> has no <type> record: <status>, void lookup n of max" */
static spf_why void_why(mxgw_spf_check *c, const char *name, int type,
                        int st) {
  spf_why w = mkwhy(WHY_VOID, name, 0);
  w.type = (uint8_t)type;
  w.st = (uint8_t)st;
  w.a = c->voids;
  w.b = c->max_void;
  return w;
}

static void dns_error(mxgw_spf_check *c, const spf_term *t, int type,
                      const char *name, int st) {
  set_problem(c, MXGW_SPF_TEMPERROR, "%.*s%s%s lookup for %.260s: %s",
              t ? (int)(t->tlen > 200 ? 200 : t->tlen) : 0, t ? t->text : "",
              t ? ": " : "", mxgw__spf_type_name(type), name,
              mxgw_dns_status_name(st));
}

static int is_dns_term(int type) {
  return type == T_INCLUDE || type == T_A || type == T_MX || type == T_PTR ||
         type == T_EXISTS || type == T_REDIRECT;
}

static void push_include(mxgw_spf_check *c, const char *name, size_t n) {
  spf_frame *f = mxgw__spf_alloc(&c->arena, &c->mem, sizeof *f);
  if (!f) {
    nomem(c);
    return;
  }
  memset(f, 0, sizeof *f);
  f->up = c->fr;
  f->domain = name;
  f->dlen = n;
  f->depth = c->fr->depth + 1;
  f->rec.redirect = f->rec.exp = -1;
  f->state = F_NEED_RECORD;
  c->fr->sub = SUB_WAIT; /* until the child frame is done */
  c->fr = f;
}

static void eval_ip(mxgw_spf_check *c, const spf_term *t) {
  int v6t = (t->type == T_IP6);
  if (v6t != c->v6) {
    term_outcome(c, O_NOMATCH,
                 why_text(c->v6 ? "the client address is IPv6"
                                : "the client address is IPv4"));
    return;
  }
  int cidr = v6t ? t->cidr6 : t->cidr4;
  if (addr_match(c, t->addr, v6t ? 16 : 4, cidr)) {
    term_outcome(c, O_MATCH, mkwhy(WHY_NONE, NULL, 0));
    return;
  }
  const char *colon = memchr(t->text, ':', t->tlen);
  size_t off = colon ? (size_t)(colon + 1 - t->text) : t->tlen;
  term_outcome(c, O_NOMATCH, mkwhy(WHY_NOTIN, t->text + off, t->tlen - off));
}

/* Evaluate the current term (or redirect) as far as possible. */
static void step_term(mxgw_spf_check *c) {
  spf_frame *f = c->fr;
  const spf_term *t = cur_term(c);
  if (f->sub == SUB_BEGIN) {
    if (is_dns_term(t->type) && ++c->dns_terms > c->max_terms) {
      set_problem(c, MXGW_SPF_PERMERROR,
                  "more than %d DNS-querying terms, at \"%.*s\" in %.*s "
                  "(RFC 7208 4.6.4)",
                  c->max_terms, (int)(t->tlen > 200 ? 200 : t->tlen), t->text,
                  (int)f->dlen, f->domain);
      return;
    }
    f->sub = SUB_TARGET;
  }
  switch (t->type) {
  case T_ALL:
    term_outcome(c, O_MATCH, mkwhy(WHY_NONE, NULL, 0));
    return;
  case T_IP4:
  case T_IP6:
    eval_ip(c, t);
    return;
  default:
    break;
  }
  const char *name;
  size_t nl;
  int tg = target(c, f->domain, f->dlen, t->spec, t->slen,
                  (t->flags & SPF_TF_USES_P) != 0, &name, &nl);
  if (tg == TG_WAIT || tg == TG_ERR)
    return;
  f->target = name;
  f->tlen = nl;
  if (tg == TG_INVALID) {
    if (t->type == T_INCLUDE || t->type == T_REDIRECT) {
      set_problem(c, MXGW_SPF_PERMERROR,
                  "%.*s: target \"%.*s\" is not a valid domain name (RFC "
                  "7208 %s)",
                  (int)(t->tlen > 200 ? 200 : t->tlen), t->text,
                  (int)(nl > 260 ? 260 : nl), name,
                  t->type == T_INCLUDE ? "5.2" : "6.1");
      return;
    }
    /* RFC 7208 leaves this undefined; treated as a name that does not
     * exist (4.3, 5/10), i.e. a void lookup and no match */
    if (void_lookup(c, t))
      return;
    spf_why w = mkwhy(WHY_BADNAME, name, nl > 260 ? 260 : nl);
    w.a = c->voids;
    w.b = c->max_void;
    term_outcome(c, O_NOMATCH, w);
    return;
  }
  f->sub = SUB_WAIT;
  switch (t->type) {
  case T_INCLUDE:
    TRACE(c) {
      tr_pair(c, f->depth, MXGW_SPF_TRACE_TERM, TRC_INCLUDE, t->text, t->tlen,
              name, nl);
    }
    push_include(c, name, nl);
    return;
  case T_REDIRECT:
    TRACE(c) {
      tr_pair(c, f->depth, MXGW_SPF_TRACE_TERM, TRC_REDIRECT, t->text, t->tlen,
              name, nl);
    }
    f->domain = name;
    f->dlen = nl;
    f->redirected = 1;
    f->rec.terms = NULL;
    f->rec.n = 0;
    f->rec.redirect = f->rec.exp = -1;
    f->pos = 0;
    f->sub = SUB_BEGIN;
    f->state = F_NEED_RECORD;
    return;
  case T_A:
    ask(c, name, c->v6 ? MXGW_DNS_AAAA : MXGW_DNS_A, W_A);
    return;
  case T_MX:
    ask(c, name, MXGW_DNS_MX, W_MX);
    return;
  case T_PTR:
    ask(c, c->rev, MXGW_DNS_PTR, W_PTR);
    return;
  case T_EXISTS:
    ask(c, name, MXGW_DNS_A, W_EXISTS);
    return;
  }
}

/* ---- answers ------------------------------------------------------------ */

static void record_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans) {
  spf_frame *f = c->fr;
  TRACE(c) {
    tr_answer(c, f->depth, MXGW_DNS_TXT, f->domain, st, ans, TRS_NONE);
  }
  if (st != MXGW_DNS_OK && st != MXGW_DNS_NXDOMAIN && st != MXGW_DNS_NODATA) {
    const spf_term *t = f->up ? &f->up->rec.terms[f->up->pos] : NULL;
    set_problem(c, MXGW_SPF_TEMPERROR, "%.*s%sTXT lookup for %.*s: %s",
                t ? (int)(t->tlen > 200 ? 200 : t->tlen) : 0, t ? t->text : "",
                t ? ": " : "", (int)f->dlen, f->domain,
                mxgw_dns_status_name(st));
    return;
  }
  size_t n = st == MXGW_DNS_OK ? mxgw_dns_answer_count(ans) : 0;
  const char *rec = NULL;
  size_t rlen = 0, found = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t l;
    if (mxgw_dns_answer_data(ans, i, &p, &l))
      continue;
    if (mxgw__spf_is_record(p, l)) {
      found++;
      rec = p;
      rlen = l;
    }
  }
  if (found > 1) {
    set_problem(c, MXGW_SPF_PERMERROR,
                "%.*s has %zu SPF records (RFC 7208 4.5)", (int)f->dlen,
                f->domain, found);
    return;
  }
  if (found == 0) {
    TRACE(c) {
      spf_trace_ent *e =
          tr_add(c, f->depth, MXGW_SPF_TRACE_RECORD, TRC_NOREC);
      if (e) {
        e->s1 = f->domain;
        e->n1 = (uint32_t)f->dlen;
        e->st = (uint8_t)st;
      }
    }
    f->result = MXGW_SPF_NONE;
    f->state = F_DONE;
    return;
  }
  char *copy = mxgw__spf_strndup(&c->arena, &c->mem, rec, rlen);
  if (!copy) {
    nomem(c);
    return;
  }
  TRACE(c) {
    tr_pair(c, f->depth, MXGW_SPF_TRACE_RECORD, TRC_REC, f->domain, f->dlen,
            copy, rlen);
  }
  char err[300];
  int rv = mxgw__spf_parse(&c->arena, &c->mem, copy, rlen, &f->rec, err,
                           sizeof err);
  if (rv == MXGW_E_NOMEM) {
    nomem(c);
    return;
  }
  if (rv) {
    set_problem(c, MXGW_SPF_PERMERROR, "%.*s: %s (RFC 7208 4.6)",
                (int)f->dlen, f->domain, err);
    return;
  }
  f->state = F_TERMS;
  f->pos = 0;
  f->sub = SUB_BEGIN;
}

/* The start of every mechanism's answer (the lookup of type for name):
 * trace it, and on NXDOMAIN or NODATA count a void lookup (4.6.4) and let
 * term t not match. 1 when that settled the answer. */
static int mech_answer_void(mxgw_spf_check *c, const spf_term *t, int type,
                            const char *name, int st,
                            const mxgw_dns_answer *ans) {
  TRACE(c) {
    tr_answer(c, c->fr->depth, type, name, st, ans, TRS_NONE);
  }
  if (st != MXGW_DNS_NXDOMAIN && st != MXGW_DNS_NODATA)
    return 0;
  if (!void_lookup(c, t))
    term_outcome(c, O_NOMATCH, void_why(c, name, type, st));
  return 1;
}

static void a_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans,
                     int exists) {
  spf_frame *f = c->fr;
  const spf_term *t = cur_term(c);
  if (mech_answer_void(c, t, c->qtype, f->target, st, ans))
    return;
  if (st != MXGW_DNS_OK) {
    dns_error(c, t, c->qtype, f->target, st);
    return;
  }
  if (exists) {
    term_outcome(c, O_MATCH, mkwhy(WHY_NONE, NULL, 0));
    return;
  }
  int cidr = c->v6 ? t->cidr6 : t->cidr4;
  size_t n = mxgw_dns_answer_count(ans);
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t l;
    if (!mxgw_dns_answer_data(ans, i, &p, &l) &&
        addr_match(c, (const unsigned char *)p, l, cidr)) {
      term_outcome(c, O_MATCH, mkwhy(WHY_NONE, NULL, 0));
      return;
    }
  }
  spf_why w = mkwhy(WHY_A, f->target, 0);
  w.type = (uint8_t)c->qtype;
  w.a = cidr;
  term_outcome(c, O_NOMATCH, w);
}

static void mx_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans) {
  spf_frame *f = c->fr;
  const spf_term *t = cur_term(c);
  if (mech_answer_void(c, t, MXGW_DNS_MX, f->target, st, ans))
    return;
  if (st != MXGW_DNS_OK) {
    dns_error(c, t, MXGW_DNS_MX, f->target, st);
    return;
  }
  size_t n = mxgw_dns_answer_count(ans);
  if ((int)n > c->mx_names)
    c->mx_names = (int)n;
  if (n > (size_t)c->max_mx) {
    set_problem(c, MXGW_SPF_PERMERROR,
                "%.*s: %.260s has %zu MX names, more than %d (RFC 7208 "
                "4.6.4)",
                (int)(t->tlen > 200 ? 200 : t->tlen), t->text, f->target, n,
                c->max_mx);
    return;
  }
  if (slots_from_names(c, ans, n))
    batch_start(c, W_BATCH_MX);
}

static void mx_batch_done(mxgw_spf_check *c) {
  spf_frame *f = c->fr;
  const spf_term *t = cur_term(c);
  for (size_t i = 0; i < c->nslots; i++) {
    spf_slot *s = &c->slots[i];
    if (s->status < 0)
      continue;
    if (s->status == MXGW_DNS_OK && s->match) {
      tr_slots(c, i, f->depth);
      term_outcome(c, O_MATCH, mkwhy(WHY_MXHOST, s->name, 0));
      return;
    }
    if (s->status != MXGW_DNS_OK && s->status != MXGW_DNS_NXDOMAIN &&
        s->status != MXGW_DNS_NODATA) {
      tr_slots(c, i, f->depth);
      dns_error(c, t, c->v6 ? MXGW_DNS_AAAA : MXGW_DNS_A, s->name, s->status);
      return;
    }
  }
  tr_slots(c, c->nslots, f->depth);
  spf_why w = mkwhy(WHY_MXNONE, f->target, 0);
  w.a = (int)c->nslots;
  w.b = c->v6 ? t->cidr6 : t->cidr4;
  term_outcome(c, O_NOMATCH, w);
}

static void ptr_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans) {
  spf_frame *f = c->fr;
  const spf_term *t = cur_term(c);
  if (mech_answer_void(c, t, MXGW_DNS_PTR, c->rev, st, ans))
    return;
  if (st != MXGW_DNS_OK) {
    /* 5.5: a DNS error in the PTR lookup makes the mechanism not match */
    spf_why w = mkwhy(WHY_PTRFAIL, NULL, 0);
    w.st = (uint8_t)st;
    term_outcome(c, O_NOMATCH, w);
    return;
  }
  size_t n = ptr_count(c, ans);
  if (!slots_new(c, n)) {
    nomem(c);
    return;
  }
  size_t cand = 0;
  for (size_t i = 0; i < n; i++) {
    spf_slot *s = slot_add(c, ans, i);
    if (!s)
      return;
    const char *p = s->name;
    size_t l = s->nlen;
    /* only names in the target domain can match: validate just those */
    int in = 0;
    if (l == f->tlen)
      in = mxgw__ieq(p, l, f->target) || (l == 0 && f->tlen == 0);
    else if (l > f->tlen && p[l - f->tlen - 1] == '.')
      in = mxgw__ieq(p + l - f->tlen, f->tlen, f->target);
    s->status = (in && !mxgw__spf_name_ok(p, l)) ? 0 : -1;
    cand += (s->status == 0);
  }
  if (!cand) {
    term_outcome(c, O_NOMATCH, mkwhy(WHY_PTRNONE, f->target, 0));
    return;
  }
  batch_start(c, W_BATCH_PTR);
}

static void ptr_batch_done(mxgw_spf_check *c) {
  spf_frame *f = c->fr;
  for (size_t i = 0; i < c->nslots; i++) {
    spf_slot *s = &c->slots[i];
    if (s->status == MXGW_DNS_OK && s->match) {
      tr_slots(c, i, f->depth);
      term_outcome(c, O_MATCH, mkwhy(WHY_PTRVAL, s->name, 0));
      return;
    }
  }
  tr_slots(c, c->nslots, f->depth);
  term_outcome(c, O_NOMATCH, mkwhy(WHY_PTRNOVAL, f->target, 0));
}

static void exp_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans);

static void handle(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans) {
  int w = c->wait;
  c->wait = W_NONE;
  switch (w) {
  case W_RECORD:
    record_answer(c, st, ans);
    break;
  case W_A:
    a_answer(c, st, ans, 0);
    break;
  case W_EXISTS:
    a_answer(c, st, ans, 1);
    break;
  case W_MX:
    mx_answer(c, st, ans);
    break;
  case W_PTR:
    ptr_answer(c, st, ans);
    break;
  case W_P_PTR:
    p_ptr_answer(c, st, ans);
    break;
  case W_EXP:
    exp_answer(c, st, ans);
    break;
  }
}

static void batch_done(mxgw_spf_check *c) {
  int w = c->wait;
  c->wait = W_NONE;
  switch (w) {
  case W_BATCH_MX:
    mx_batch_done(c);
    break;
  case W_BATCH_PTR:
    ptr_batch_done(c);
    break;
  case W_BATCH_P:
    p_batch_done(c);
    break;
  }
}

/* ---- explanation (RFC 7208 6.2) ----------------------------------------- */

static void exp_default(mxgw_spf_check *c, spf_why why) {
  TRACE(c) {
    if (c->exp_term) {
      spf_trace_ent *e = tr_add(c, 0, MXGW_SPF_TRACE_TERM, TRC_EXPDEF);
      if (e) {
        e->s1 = c->exp_term->text;
        e->n1 = c->exp_term->tlen;
        e->u.why = why;
      }
    }
  }
  c->xstate = X_DEFAULT;
}

static void exp_answer(mxgw_spf_check *c, int st, const mxgw_dns_answer *ans) {
  TRACE(c) {
    tr_answer(c, 0, MXGW_DNS_TXT, c->qname, st, ans, TRS_EXP);
  }
  if (st != MXGW_DNS_OK) {
    exp_default(c, why_text("no TXT record"));
    return;
  }
  if (mxgw_dns_answer_count(ans) != 1) {
    exp_default(c, why_text("more than one TXT record"));
    return;
  }
  const char *p;
  size_t l;
  mxgw_dns_answer_data(ans, 0, &p, &l);
  c->exp_text = mxgw__spf_strndup(&c->arena, &c->mem, p, l);
  c->exp_text_n = l;
  if (!c->exp_text) {
    nomem(c);
    return;
  }
  c->xstate = X_TEXT;
}

static void set_explanation(mxgw_spf_check *c, int dflt) {
  size_t n = mxgw__buf_size(&c->scratch);
  c->explanation = mxgw__spf_strndup(&c->arena, &c->mem,
                                     mxgw__buf_ptr(&c->scratch), n);
  c->explanation_n = c->explanation ? n : 0;
  if (!c->explanation) {
    nomem(c);
    return;
  }
  TRACE(c) {
    spf_trace_ent *e = tr_add(c, 0, MXGW_SPF_TRACE_TERM, TRC_EXPL);
    if (e) {
      e->flag = (uint8_t)dflt;
      if (!dflt) {
        e->s1 = c->exp_term->text;
        e->n1 = c->exp_term->tlen;
      }
      e->s2 = c->explanation;
      e->n2 = (uint32_t)n;
    }
  }
}

static void step_exp(mxgw_spf_check *c) {
  const char *err = NULL;
  switch (c->xstate) {
  case X_START: {
    if (!c->exp_term) {
      c->xstate = X_DEFAULT;
      return;
    }
    const spf_term *t = c->exp_term;
    const char *name;
    size_t nl;
    int tg = target(c, c->exp_domain, c->exp_domain_n, t->spec, t->slen,
                    (t->flags & SPF_TF_USES_P) != 0, &name, &nl);
    if (tg == TG_WAIT || tg == TG_ERR)
      return;
    if (tg == TG_INVALID) {
      exp_default(c, why_text("the target is not a valid domain name"));
      return;
    }
    c->xstate = X_TEXT; /* exp_answer moves on, or to X_DEFAULT */
    ask(c, name, MXGW_DNS_TXT, W_EXP);
    return;
  }
  case X_TEXT: {
    int uses_p = 0;
    if (mxgw__spf_macro_check(c->exp_text, c->exp_text_n, SPF_M_EXP, &uses_p,
                              NULL, &err)) {
      exp_default(c, mkwhy(WHY_EXPBAD, err, 0));
      return;
    }
    if (uses_p && c->p_state != 2) {
      need_p(c);
      return;
    }
    int rv = mxgw__spf_check_expand(c, c->exp_domain, c->exp_domain_n,
                                    c->exp_text, c->exp_text_n, SPF_M_EXP,
                                    &err);
    if (rv == MXGW_E_NOMEM) {
      nomem(c);
      return;
    }
    if (rv) {
      exp_default(c, why_text("the explanation text is not valid"));
      return;
    }
    set_explanation(c, 0);
    c->xstate = X_END;
    return;
  }
  case X_DEFAULT: {
    const char *d = c->defexp ? c->defexp : SPF_DEFAULT_EXP;
    if (c->p_state != 2) {
      int uses_p = 0;
      if (!mxgw__spf_macro_check(d, strlen(d), SPF_M_EXP, &uses_p, NULL,
                                 &err) &&
          uses_p) {
        need_p(c);
        return;
      }
    }
    int rv = mxgw__spf_check_expand(c, c->exp_domain, c->exp_domain_n, d,
                                    strlen(d), SPF_M_EXP, &err);
    if (rv == MXGW_E_NOMEM) {
      nomem(c);
      return;
    }
    if (rv) /* validated when set */
      mxgw__buf_reset(&c->scratch);
    set_explanation(c, 1);
    c->xstate = X_END;
    return;
  }
  default:
    c->phase = PH_DONE;
    return;
  }
}

/* ---- frames -------------------------------------------------------------- */

static void frame_done(mxgw_spf_check *c) {
  spf_frame *f = c->fr;
  int r = f->result;
  if (r == MXGW_SPF_NONE && f->redirected) {
    set_problem(c, MXGW_SPF_PERMERROR,
                "redirect=%.*s: no SPF record there (RFC 7208 6.1)",
                (int)f->dlen, f->domain);
    return;
  }
  TRACE(c) {
    spf_trace_ent *e = tr_add(c, f->depth, MXGW_SPF_TRACE_RESULT, TRC_FRAME);
    if (e) {
      e->s1 = f->domain;
      e->n1 = (uint32_t)f->dlen;
      e->a = r;
      if (f->decided) {
        e->s2 = f->decided->text;
        e->n2 = f->decided->tlen;
      }
    }
  }
  if (!f->up) {
    c->result = r;
    c->domain = f->domain;
    c->domain_n = f->dlen;
    if (f->decided) {
      c->mechanism = mxgw__spf_strndup(&c->arena, &c->mem, f->decided->text,
                                       f->decided->tlen);
      c->mechanism_n = c->mechanism ? f->decided->tlen : 0;
    } else if (r == MXGW_SPF_NEUTRAL) {
      c->mechanism = "default";
      c->mechanism_n = 7;
    }
    if (r == MXGW_SPF_FAIL) {
      c->exp_term = f->rec.exp >= 0 ? &f->rec.terms[f->rec.exp] : NULL;
      c->exp_domain = f->domain;
      c->exp_domain_n = f->dlen;
      c->phase = PH_EXP;
      c->xstate = X_START;
    } else {
      c->phase = PH_DONE;
    }
    return;
  }
  spf_frame *up = f->up;
  c->fr = up;
  const spf_term *t = &up->rec.terms[up->pos];
  if (r == MXGW_SPF_NONE) {
    set_problem(c, MXGW_SPF_PERMERROR,
                "%.*s: no SPF record at %.*s (RFC 7208 5.2)",
                (int)(t->tlen > 200 ? 200 : t->tlen), t->text, (int)f->dlen,
                f->domain);
    return;
  }
  spf_why w = mkwhy(WHY_GAVE, f->domain, f->dlen > 260 ? 260 : f->dlen);
  w.a = r;
  term_outcome(c, r == MXGW_SPF_PASS ? O_MATCH : O_NOMATCH, w);
}

static void step_terms(mxgw_spf_check *c) {
  spf_frame *f = c->fr;
  if (f->sub == SUB_DONE) {
    const spf_term *t = cur_term(c);
    TRACE(c) {
      spf_trace_ent *e = tr_add(c, f->depth, MXGW_SPF_TRACE_TERM, TRC_TERM);
      if (e) {
        e->s1 = t->text;
        e->n1 = t->tlen;
        e->flag = f->outcome == O_MATCH;
        e->type = t->qual;
        e->u.why = f->why;
      }
    }
    f->sub = SUB_BEGIN;
    if (f->outcome == O_MATCH) {
      f->result = t->qual;
      f->decided = t;
      f->state = F_DONE;
      return;
    }
    f->pos++;
  }
  while (f->pos < f->rec.n && f->rec.terms[f->pos].type >= T_REDIRECT)
    f->pos++;
  if (f->pos >= f->rec.n && f->rec.redirect < 0) {
    f->result = MXGW_SPF_NEUTRAL; /* 4.7 */
    f->decided = NULL;
    f->state = F_DONE;
    return;
  }
  step_term(c);
}

static void step(mxgw_spf_check *c) {
  if (c->phase == PH_EXP) {
    step_exp(c);
    return;
  }
  spf_frame *f = c->fr;
  switch (f->state) {
  case F_NEED_RECORD:
    f->state = F_WAIT;
    ask(c, f->domain, MXGW_DNS_TXT, W_RECORD);
    return;
  case F_TERMS:
    step_terms(c);
    return;
  case F_DONE:
    frame_done(c);
    return;
  default: /* F_WAIT without a query: cannot happen */
    set_problem(c, MXGW_SPF_TEMPERROR, "internal error: lost a lookup");
    return;
  }
}

static void cancel_all(mxgw_spf_check *c) {
  if (c->q) {
    mxgw_resolver_cancel(c->r, c->q);
    c->q = NULL;
  }
  for (size_t i = 0; i < c->nslots; i++)
    if (c->slots[i].q) {
      mxgw_resolver_cancel(c->r, c->slots[i].q);
      c->slots[i].q = NULL;
    }
  c->slots_pending = 0;
}

static void finish(mxgw_spf_check *c) {
  cancel_all(c);
  c->done = 1;
  c->phase = PH_DONE;
  TRACE(c) {
    tr_add(c, 0, MXGW_SPF_TRACE_RESULT, TRC_FINAL);
  }
  mxgw_spf_done_cb cb = c->cb;
  c->cb = NULL;
  if (cb)
    cb(c->cbarg, c); /* last: the hook may free the check */
}

static void advance(mxgw_spf_check *c) {
  while (!c->done) {
    if (c->phase == PH_DONE) {
      finish(c);
      return;
    }
    if (c->q || c->slots_pending)
      return;
    step(c);
  }
}

/* ---- checks --------------------------------------------------------------- */

static void check_destroy(mxgw_spf_check *c) {
  mxgw_mem m = c->mem;
  mxgw__spf_arena_free(&c->arena, &m);
  mxgw__buf_free(&c->scratch, &m);
  mxgw__buf_free(&c->trace_text, &m);
  mxgw__buf_free(&c->out_json, &m);
  mxgw__buf_free(&c->out_rspf, &m);
  mxgw__buf_free(&c->out_ar, &m);
  mxgw__buf_free(&c->out_reply, &m);
  mxgw__free(&m, c->tr);
  mxgw__free(&m, c);
}

#define POOL_MAX 64

static mxgw_spf_check *check_alloc(mxgw_spf *spf) {
  mxgw_spf_check *c = spf->pool;
  if (!c) {
    c = mxgw__calloc(&spf->mem, 1, sizeof *c);
    if (!c)
      return NULL;
    c->mem = spf->mem;
    return c;
  }
  spf->pool = c->next_free;
  spf->npool--;
  /* keep the arena blocks and the buffers' memory, clear the rest */
  spf_arena arena = c->arena;
  mxgw_buf b[6] = {c->scratch, c->trace_text, c->out_json,
                   c->out_rspf, c->out_ar, c->out_reply};
  spf_trace_ent *tr = c->tr;
  size_t captr = c->captr;
  memset(c, 0, sizeof *c);
  c->mem = spf->mem;
  c->arena = arena;
  c->scratch = b[0];
  c->trace_text = b[1];
  c->out_json = b[2];
  c->out_rspf = b[3];
  c->out_ar = b[4];
  c->out_reply = b[5];
  mxgw__buf_reset(&c->scratch);
  mxgw__buf_reset(&c->trace_text);
  mxgw__buf_reset(&c->out_json);
  mxgw__buf_reset(&c->out_rspf);
  mxgw__buf_reset(&c->out_ar);
  mxgw__buf_reset(&c->out_reply);
  c->tr = tr;
  c->captr = captr;
  return c;
}

void mxgw_spf_check_free(mxgw_spf_check *c) {
  if (!c)
    return;
  if (c->in_run) {
    c->free_pending = 1;
    c->cb = NULL;
    return;
  }
  if (!c->done)
    cancel_all(c);
  mxgw_spf *spf = c->spf;
  if (spf->npool >= POOL_MAX) {
    check_destroy(c);
    return;
  }
  mxgw__spf_arena_reset(&c->arena, &c->mem);
  c->next_free = spf->pool;
  spf->pool = c;
  spf->npool++;
}

/* 4.3: a domain that cannot be an FQDN gives none without a lookup. */
static int domain_malformed(const char *d, size_t n) {
  if (n == 0 || n > 253 || d[0] == '[')
    return 1;
  size_t lab = 0, labels = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char u = (unsigned char)d[i];
    if (u <= 0x20 || u == 0x7f)
      return 1;
    if (u == '.') {
      if (!lab)
        return 1;
      lab = 0;
      labels++;
    } else if (++lab > 63) {
      return 1;
    }
  }
  if (!lab)
    return 1;
  return labels < 1; /* not multi-label */
}

static int text_ok(const char *s, size_t *n) {
  size_t l = strlen(s);
  if (l > 1024)
    return 0;
  for (size_t i = 0; i < l; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f)
      return 0;
  *n = l;
  return 1;
}

static char *put_u8(char *p, unsigned v) {
  if (v >= 100)
    *p++ = (char)('0' + v / 100);
  if (v >= 10)
    *p++ = (char)('0' + v / 10 % 10);
  *p++ = (char)('0' + v % 10);
  return p;
}

static void set_ip_strings(mxgw_spf_check *c) {
  static const char hexu[] = "0123456789ABCDEF";
  static const char hexl[] = "0123456789abcdef";
  if (!c->v6) {
    char *p = c->c_str;
    for (int i = 0; i < 4; i++) {
      p = put_u8(p, c->ip[i]);
      *p++ = i < 3 ? '.' : '\0';
    }
    c->c_len = (size_t)(p - c->c_str - 1);
    memcpy(c->i_str, c->c_str, c->c_len + 1);
    c->i_len = c->c_len;
    p = c->rev;
    for (int i = 3; i >= 0; i--) {
      p = put_u8(p, c->ip[i]);
      *p++ = '.';
    }
    memcpy(p, "in-addr.arpa", 13);
    return;
  }
  inet_ntop(AF_INET6, c->ip, c->c_str, sizeof c->c_str);
  c->c_len = strlen(c->c_str);
  c->i_len = 63;
  /* %{i}: 32 nibbles, upper case as the RFC 7208 test suite expects */
  char *p = c->i_str;
  for (int i = 0; i < 16; i++) {
    *p++ = hexu[c->ip[i] >> 4];
    *p++ = '.';
    *p++ = hexu[c->ip[i] & 15];
    *p++ = i == 15 ? '\0' : '.';
  }
  p = c->rev;
  for (int i = 15; i >= 0; i--) {
    *p++ = hexl[c->ip[i] & 15];
    *p++ = '.';
    *p++ = hexl[c->ip[i] >> 4];
    *p++ = '.';
  }
  memcpy(p, "ip6.arpa", 9);
}

int mxgw_spf_check_start(mxgw_spf *spf, const char *ip, const char *helo,
                         const char *mail_from, int identity,
                         mxgw_spf_check **out) {
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  if (!spf || !ip ||
      (identity != MXGW_SPF_ID_MAILFROM && identity != MXGW_SPF_ID_HELO))
    return MXGW_E_INVAL;
  uint8_t addr[16];
  int v6 = 0;
  if (inet_pton(AF_INET, ip, addr) != 1) {
    if (inet_pton(AF_INET6, ip, addr) != 1)
      return MXGW_E_INVAL;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(addr, mapped, 12) == 0)
      memmove(addr, addr + 12, 4); /* 5: evaluated as IPv4 */
    else
      v6 = 1;
  }
  size_t helo_n = 0, from_n = 0;
  if (!helo)
    helo = "";
  if (!mail_from || identity == MXGW_SPF_ID_HELO)
    mail_from = "";
  if (!text_ok(helo, &helo_n) || !text_ok(mail_from, &from_n))
    return MXGW_E_INVAL;
  /* tolerate angle brackets around the path */
  if (from_n >= 2 && mail_from[0] == '<' && mail_from[from_n - 1] == '>') {
    mail_from++;
    from_n -= 2;
  }
  if (from_n == 0 && helo_n == 0)
    return MXGW_E_INVAL;

  mxgw_spf_check *c = check_alloc(spf);
  if (!c)
    return MXGW_E_NOMEM;
  c->spf = spf;
  c->r = spf->r;
  c->identity = identity;
  c->v6 = v6;
  memcpy(c->ip, addr, v6 ? 16 : 4);
  set_ip_strings(c);
  c->max_terms = spf->max_terms;
  c->max_void = spf->max_void;
  c->max_mx = spf->max_mx;
  c->max_ptr = spf->max_ptr;
  c->timeout_ms = spf->timeout_ms;
  c->trace_on = spf->trace;
  c->defexp = spf->defexp;
  c->start_ms = c->timeout_ms > 0 ? mono_ms() : 0;
  {
    /* %{t}: the digits of the last second seen are kept in the context */
    uint64_t t = (uint64_t)(spf->now ? spf->now : (int64_t)time(NULL));
    if (!spf->t_len || t != spf->t_val) {
      char b[24];
      int k = 0;
      uint64_t v = t;
      do {
        b[k++] = (char)('0' + v % 10);
        v /= 10;
      } while (v);
      for (int i = 0; i < k; i++)
        spf->t_str[i] = b[k - 1 - i];
      spf->t_str[k] = '\0';
      spf->t_len = (size_t)k;
      spf->t_val = t;
    }
    memcpy(c->t_str, spf->t_str, sizeof c->t_str);
    c->t_len = spf->t_len;
  }
  mxgw_mem *m = &c->mem;
  spf_arena *a = &c->arena;
  c->helo = mxgw__spf_strndup(a, m, helo, helo_n);
  c->helo_n = helo_n;
  if (spf->receiver) {
    c->receiver = spf->receiver; /* copied below */
    c->receiver_n = strlen(spf->receiver);
    c->receiver = mxgw__spf_strndup(a, m, spf->receiver, c->receiver_n);
  }
  /* the sender (RFC 7208 4.3, 2.4) */
  const char *local = "postmaster", *dom;
  size_t local_n = 10, dom_n;
  if (from_n) {
    const char *at = NULL;
    for (size_t i = from_n; i > 0; i--)
      if (mail_from[i - 1] == '@') {
        at = mail_from + i - 1;
        break;
      }
    if (at) {
      if (at > mail_from) {
        local = mail_from;
        local_n = (size_t)(at - mail_from);
      }
      dom = at + 1;
      dom_n = from_n - (size_t)(at + 1 - mail_from);
    } else {
      dom = mail_from;
      dom_n = from_n;
    }
  } else {
    dom = helo;
    dom_n = helo_n;
  }
  if (dom_n > 1 && dom[dom_n - 1] == '.')
    dom_n--;
  c->local = mxgw__spf_strndup(a, m, local, local_n);
  c->local_n = local_n;
  c->sdomain = mxgw__spf_strndup(a, m, dom, dom_n);
  c->sdomain_n = dom_n;
  char *snd = mxgw__spf_alloc(a, m, local_n + dom_n + 2);
  if (!c->helo || !c->local || !c->sdomain || !snd ||
      (spf->receiver && !c->receiver)) {
    c->done = 1;
    mxgw_spf_check_free(c);
    return MXGW_E_NOMEM;
  }
  memcpy(snd, local, local_n);
  snd[local_n] = '@';
  memcpy(snd + local_n + 1, dom, dom_n);
  snd[local_n + 1 + dom_n] = '\0';
  c->sender = snd;
  c->sender_n = local_n + 1 + dom_n;

  *out = c;
  if (domain_malformed(c->sdomain, c->sdomain_n)) {
    TRACE(c) {
      tr_pair(c, 0, MXGW_SPF_TRACE_RECORD, TRC_BADDOM, c->sdomain,
              c->sdomain_n, NULL, 0);
    }
    c->result = MXGW_SPF_NONE;
    c->domain = c->sdomain;
    c->domain_n = c->sdomain_n;
    c->phase = PH_DONE;
    finish(c);
    return MXGW_OK;
  }
  spf_frame *f = mxgw__spf_alloc(a, m, sizeof *f);
  if (!f) {
    c->done = 1;
    mxgw_spf_check_free(c);
    *out = NULL;
    return MXGW_E_NOMEM;
  }
  memset(f, 0, sizeof *f);
  f->domain = c->sdomain;
  f->dlen = c->sdomain_n;
  f->rec.redirect = f->rec.exp = -1;
  f->state = F_NEED_RECORD;
  c->fr = f;
  c->result = MXGW_SPF_NONE;
  advance(c);
  return MXGW_OK;
}

int mxgw_spf_check_set_done_cb(mxgw_spf_check *c, mxgw_spf_done_cb cb,
                               void *arg) {
  if (!c)
    return MXGW_E_INVAL;
  if (c->done)
    return MXGW_OK;
  c->cb = cb;
  c->cbarg = arg;
  return MXGW_OK;
}

int mxgw_spf_check_done(const mxgw_spf_check *c) { return c && c->done; }

static int check_is_done(void *arg) {
  mxgw_spf_check *c = arg;
  return c->done || c->free_pending;
}

int mxgw_spf_check_run(mxgw_spf_check *c, int64_t timeout_ms) {
  if (!c)
    return MXGW_E_INVAL;
  if (c->done)
    return MXGW_OK;
  c->in_run++;
  int rv = mxgw__resolver_run_until(c->r, timeout_ms, check_is_done, c);
  c->in_run--;
  if (c->free_pending && !c->in_run) {
    c->free_pending = 0;
    mxgw_spf_check_free(c);
    return MXGW_OK;
  }
  if (c->done)
    return MXGW_OK;
  return rv ? rv : MXGW_E_TIMEOUT;
}

static void abort_with(mxgw_spf_check *c, const char *why) {
  if (!c || c->done)
    return;
  cancel_all(c);
  set_problem(c, MXGW_SPF_TEMPERROR, "%s", why);
  advance(c);
}

void mxgw_spf_check_abort(mxgw_spf_check *c) {
  abort_with(c, "evaluation aborted");
}

int mxgw_spf_check_sync(mxgw_spf *spf, const char *ip, const char *helo,
                        const char *mail_from, int identity,
                        mxgw_spf_check **out) {
  int rv = mxgw_spf_check_start(spf, ip, helo, mail_from, identity, out);
  if (rv)
    return rv;
  mxgw_spf_check *c = *out;
  if (c->done)
    return MXGW_OK;
  rv = mxgw_spf_check_run(c, spf->timeout_ms > 0 ? spf->timeout_ms : -1);
  if (rv == MXGW_E_TIMEOUT) {
    char why[120];
    snprintf(why, sizeof why,
             "evaluation took longer than %lld ms (RFC 7208 4.6.4)",
             (long long)spf->timeout_ms);
    abort_with(c, why);
    return MXGW_OK;
  }
  if (rv) {
    mxgw_spf_check_free(c);
    *out = NULL;
  }
  return rv;
}

/* ---- results ------------------------------------------------------------- */

int mxgw_spf_check_result(const mxgw_spf_check *c) {
  if (!c)
    return MXGW_E_INVAL;
  return c->done ? c->result : MXGW_E_STATE;
}

int mxgw_spf_check_get_str(const mxgw_spf_check *c, int key, const char **ptr,
                           size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  const char *p = NULL;
  size_t n = 0;
  int need_done = 1;
  switch (key) {
  case MXGW_SPF_INFO_MECHANISM:
    p = c->mechanism, n = c->mechanism_n;
    break;
  case MXGW_SPF_INFO_DOMAIN:
    p = c->domain, n = c->domain_n;
    break;
  case MXGW_SPF_INFO_EXPLANATION:
    p = c->explanation, n = c->explanation_n;
    break;
  case MXGW_SPF_INFO_PROBLEM:
    p = c->problem, n = c->problem_n;
    break;
  case MXGW_SPF_INFO_CLIENT_IP:
    p = c->c_str, n = strlen(c->c_str), need_done = 0;
    break;
  case MXGW_SPF_INFO_SENDER:
    p = c->sender, n = c->sender_n, need_done = 0;
    break;
  case MXGW_SPF_INFO_HELO:
    p = c->helo, n = c->helo_n, need_done = 0;
    break;
  case MXGW_SPF_INFO_IDENTITY:
    p = c->identity == MXGW_SPF_ID_HELO ? "helo" : "mailfrom";
    n = strlen(p);
    need_done = 0;
    break;
  case MXGW_SPF_INFO_CHECKED_DOMAIN:
    p = c->sdomain, n = c->sdomain_n, need_done = 0;
    break;
  default:
    return MXGW_E_INVAL;
  }
  if (need_done && !c->done)
    return MXGW_E_STATE;
  if (!p)
    return MXGW_E_NOTFOUND;
  *ptr = p;
  *len = n;
  return MXGW_OK;
}

int mxgw_spf_check_get_int(const mxgw_spf_check *c, int key, int64_t *out) {
  if (!c || !out)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_SPF_INFO_DNS_TERMS:
    *out = c->dns_terms;
    break;
  case MXGW_SPF_INFO_VOID_LOOKUPS:
    *out = c->voids;
    break;
  case MXGW_SPF_INFO_MX_NAMES:
    *out = c->mx_names;
    break;
  case MXGW_SPF_INFO_PTR_NAMES:
    *out = c->ptr_names;
    break;
  case MXGW_SPF_INFO_DNS_QUERIES:
    *out = c->queries;
    break;
  case MXGW_SPF_INFO_IDENTITY_ID:
    *out = c->identity;
    break;
  default:
    return MXGW_E_INVAL;
  }
  return MXGW_OK;
}

size_t mxgw_spf_check_trace_count(const mxgw_spf_check *c) {
  return c ? c->ntr : 0;
}

int mxgw_spf_check_trace(const mxgw_spf_check *c, size_t i, int *depth,
                         int *kind, const char **ptr, size_t *len) {
  if (!c || !ptr || !len)
    return MXGW_E_INVAL;
  if (i >= c->ntr)
    return MXGW_E_RANGE;
  if (c->nfmt < c->ntr) {
    /* the text is written on first use and kept: the check is not const
     * for the library, only for the caller */
    int rv = mxgw__spf_trace_format((mxgw_spf_check *)(uintptr_t)c);
    if (rv && c->nfmt <= i)
      return rv;
  }
  const spf_trace_ent *e = &c->tr[i];
  if (depth)
    *depth = e->depth;
  if (kind)
    *kind = e->kind;
  *ptr = c->trace_text.data + e->off;
  *len = e->len;
  return MXGW_OK;
}
