/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf_int.h: what the SPF modules share: the per-check arena, the
 * parsed form of a record (mxgw_spf_record.c), the macro expander
 * (mxgw_spf_macro.c), and the check object that the evaluator
 * (mxgw_spf.c) fills in and the output module (mxgw_spf_output.c) reads.
 */
#ifndef MXGW_SPF_INT_H
#define MXGW_SPF_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgw/mxgw_spf.h"
#include "mxgw_int.h"

/* ---- arena ------------------------------------------------------------ */

/* Blocks are kept across resets, so a recycled check allocates nothing. */
typedef struct spf_ablk spf_ablk;
typedef struct spf_arena {
  spf_ablk *first, *cur;
  spf_ablk *big; /* oversized allocations, freed on reset */
} spf_arena;

void *mxgw__spf_alloc(spf_arena *a, const mxgw_mem *m, size_t n);
char *mxgw__spf_strndup(spf_arena *a, const mxgw_mem *m, const char *s,
                        size_t n);
void mxgw__spf_arena_reset(spf_arena *a, const mxgw_mem *m);
void mxgw__spf_arena_free(spf_arena *a, const mxgw_mem *m);

/* ---- records ---------------------------------------------------------- */

enum spf_ttype {
  T_ALL = 1,
  T_INCLUDE,
  T_A,
  T_MX,
  T_PTR,
  T_IP4,
  T_IP6,
  T_EXISTS,
  T_REDIRECT, /* modifiers from here */
  T_EXP,
  T_UNKNOWN_MOD
};

/* spf_term.flags */
#define SPF_TF_MACRO 1 /* the domain-spec contains '%' */
#define SPF_TF_USES_P 2 /* ... and uses %{p} */

typedef struct spf_term {
  const char *text; /* the term as written */
  const char *spec; /* domain-spec (macro-string), or NULL for <domain> */
  uint32_t tlen, slen;
  uint8_t type;  /* enum spf_ttype */
  uint8_t qual;  /* mxgw_spf_result of a match */
  uint8_t cidr4; /* a, mx, ip4 */
  uint8_t cidr6; /* a, mx, ip6 */
  uint8_t flags;
  uint8_t addr[16]; /* ip4 (4 octets), ip6 */
} spf_term;

typedef struct spf_record {
  spf_term *terms;
  size_t n;
  int redirect; /* index of redirect=, or -1 */
  int exp;      /* index of exp=, or -1 */
} spf_record;

/* 1 if txt (a TXT record's data) is an SPF record: "v=spf1" in any case,
 * followed by a space or the end (RFC 7208 4.5). */
int mxgw__spf_is_record(const char *txt, size_t len);

/*
 * Parse a whole record (RFC 7208 4.6, 5, 6, 7.1), including syntax checks
 * of every term and macro. The terms point into rec, which must outlive
 * them. On a syntax error returns -1 with a description in err; MXGW_E_NOMEM
 * when the arena cannot grow.
 */
int mxgw__spf_parse(spf_arena *a, const mxgw_mem *m, const char *rec,
                    size_t len, spf_record *out, char *err, size_t errcap);

/* Strict dotted-quad (no leading zeros). 0 or -1. */
int mxgw__spf_parse_ip4(const char *s, size_t n, uint8_t out[4]);

/* ---- macros ----------------------------------------------------------- */

/* Flags for the macro functions. */
#define SPF_M_DOMAIN 1 /* a domain-spec: letters slodiphv only */
#define SPF_M_EXP 2    /* explanation text: also c r t, and spaces */
#define SPF_M_ANY 4    /* an unknown modifier's value: all letters */

/* Values of the macro letters, indexed by letter - 'a'. */
typedef struct spf_macro_env {
  const char *v[26];
  size_t n[26];
} spf_macro_env;

/*
 * Syntax of a macro-string (RFC 7208 7.1). *uses_p (may be NULL) says
 * whether %{p} occurs; *ends_macro (may be NULL) whether the string ends in
 * a macro-expand (the domain-end alternative). 0, or -1 with *err set.
 */
int mxgw__spf_macro_check(const char *s, size_t n, int flags, int *uses_p,
                          int *ends_macro, const char **err);

/*
 * Expand a macro-string into out (reset first). With SPF_M_DOMAIN the
 * result is a target name: a final dot is removed and a name longer than
 * 253 octets loses labels on the left (7.3), with memory bounded however
 * large the expansion gets; with SPF_M_EXP the text is cut at
 * SPF_EXP_MAX octets. The p macro's value must be in env when used.
 * Returns 0, -1 (syntax; *err set), or MXGW_E_NOMEM.
 */
#define SPF_EXP_MAX 2048
int mxgw__spf_expand(mxgw_buf *out, const mxgw_mem *m,
                     const spf_macro_env *env, const char *s, size_t n,
                     int flags, const char **err);

/* 0 if name is a usable DNS name: labels 1..63 octets, at most 253. */
int mxgw__spf_name_ok(const char *name, size_t n);

/* ---- checks ----------------------------------------------------------- */

/*
 * The trace is recorded as structured entries while the check runs: what
 * happened (a code), the numbers it needs, and pointers to data that lives
 * as long as the check (its arena, its own fields, string literals) -
 * nothing is formatted or escaped then. The text is written once, the first
 * time the trace (or the JSON) is asked for, by mxgw__spf_trace_format()
 * (mxgw_spf_output.c), and cached in trace_text.
 */

/* Why a term matched or not (the part in parentheses of a term entry). */
enum spf_why_code {
  WHY_NONE = 0, /* nothing to say */
  WHY_TEXT,     /* s: a string literal */
  WHY_NOTIN,    /* "<c> is not in <s,n>" */
  WHY_BADNAME,  /* "\"<s,n>\" is not a valid domain name: ... a of b" */
  WHY_VOID,     /* "<s> has no <type> record: <st>, void lookup a of b" */
  WHY_A,        /* "no <type> address of <s> is within <c>/a" */
  WHY_MXHOST,   /* "via MX host <s>" */
  WHY_MXNONE,   /* "no address of the a MX host(s) of <s> is within <c>/b" */
  WHY_PTRFAIL,  /* "the PTR lookup failed (<st>), ..." */
  WHY_PTRNONE,  /* "no PTR name of <c> is in <s>" */
  WHY_PTRVAL,   /* "<s> is validated" */
  WHY_PTRNOVAL, /* "no PTR name of <c> in <s> resolves back to it" */
  WHY_GAVE,     /* "<s,n> gave <result a>" */
  WHY_EXPBAD    /* "the explanation text is not valid (<s>)" */
};

typedef struct spf_why {
  const char *s; /* the name or text it quotes (NUL-terminated) */
  uint32_t n;    /* its length where the code says <s,n> */
  uint8_t code;  /* enum spf_why_code */
  uint8_t type;  /* a DNS type */
  uint8_t st;    /* a DNS status */
  int a, b;
} spf_why;

/* An answer as the trace shows it: the count, and the first records, each
 * copied only as far as the text can show it. */
#define SPF_TR_SHOWN 16
typedef struct spf_tr_rr {
  const char *p; /* NULL: the record was unreadable (not shown) */
  uint32_t len;  /* the record's length */
  uint32_t have; /* octets copied at p */
  int pref;      /* MX preference */
} spf_tr_rr;
typedef struct spf_tr_ans {
  size_t n;     /* records in the answer */
  size_t shown; /* rr[] entries */
  spf_tr_rr rr[];
} spf_tr_ans;

/* Entry codes and the fields each one uses. */
enum spf_tr_code {
  TRC_PROBLEM = 1, /* a = result, s1/n1 = problem */
  TRC_ANSWER,      /* type, st, flag = suffix (TRS_*), s1 = name, ans */
  TRC_NOREC,       /* s1/n1 = domain, st */
  TRC_REC,         /* s1/n1 = domain, s2/n2 = record */
  TRC_BADDOM,      /* s1/n1 = the checked domain */
  TRC_INCLUDE,     /* s1/n1 = term, s2/n2 = target */
  TRC_REDIRECT,    /* s1/n1 = term, s2/n2 = target */
  TRC_PVAL,        /* pn = p names, a = how many */
  TRC_TERM,        /* s1/n1 = term, flag = matched, type = qualifier, why */
  TRC_EXPDEF,      /* s1/n1 = exp= term, why */
  TRC_EXPL,        /* flag = default, s1/n1 = exp= term, s2/n2 = text */
  TRC_FRAME,       /* s1/n1 = domain, a = result, s2/n2 = deciding term */
  TRC_FINAL        /* the check's own fields (done by then) */
};
enum { TRS_NONE = 0, TRS_P, TRS_EXP }; /* TRC_ANSWER suffixes */

typedef struct spf_trace_ent {
  uint32_t off, len; /* the text in trace_text, once formatted */
  uint8_t depth, kind;
  uint8_t code;      /* enum spf_tr_code */
  uint8_t type, st, flag;
  int a;
  const char *s1, *s2;
  uint32_t n1, n2;
  union {
    const spf_tr_ans *ans;
    const char *const *pn;
    spf_why why;
  } u;
} spf_trace_ent;

typedef struct spf_frame spf_frame;
typedef struct spf_slot spf_slot;

struct mxgw_spf {
  mxgw_mem mem;
  mxgw_resolver *r;
  int max_terms, max_void, max_mx, max_ptr;
  int64_t timeout_ms;
  int trace;
  int64_t now;
  uint64_t t_val;    /* the last %{t} value, and its digits */
  char t_str[24];
  size_t t_len;      /* 0: none yet */
  char *receiver;    /* NULL: none */
  char *defexp;      /* NULL: the built-in default */
  mxgw_spf_check *pool; /* finished checks kept for reuse */
  size_t npool;
};

struct mxgw_spf_check {
  mxgw_spf *spf;
  mxgw_resolver *r;
  mxgw_mem mem;
  spf_arena arena;
  mxgw_spf_check *next_free;

  /* inputs */
  uint8_t ip[16];
  int v6;
  int identity;
  char c_str[48];  /* %{c}: the address for people */
  char i_str[72];  /* %{i}: dotted quad, or 32 dotted nibbles */
  char rev[80];    /* reverse name for PTR lookups */
  char t_str[24];  /* %{t} */
  size_t c_len, i_len, t_len;
  const char *sender, *local, *sdomain, *helo, *receiver;
  size_t sender_n, local_n, sdomain_n, helo_n, receiver_n;
  const char *defexp;

  /* limits (copied at start) */
  int max_terms, max_void, max_mx, max_ptr;
  int64_t timeout_ms, start_ms;
  int trace_on;

  /* counters */
  int dns_terms, voids, mx_names, ptr_names, queries;

  /* evaluation state (mxgw_spf.c) */
  int done, result, phase;
  spf_frame *fr;          /* current check_host() level */
  int wait;               /* what the outstanding lookup is for */
  mxgw_dns_query *q;      /* outstanding single lookup */
  const char *qname;      /* its name (for the trace) */
  int qtype;
  spf_slot *slots;        /* outstanding batch lookups */
  size_t nslots, slots_pending;
  int p_state;            /* %{p}: 0 unknown, 1 resolving, 2 known */
  const char **p_names;   /* validated names */
  size_t p_n;
  const spf_term *exp_term; /* exp= of the deciding record, or NULL */
  int xstate;             /* explanation sub-state */
  int in_run;             /* inside mxgw_spf_check_run() */
  int free_pending;       /* freed by the hook during _run() */
  const char *exp_domain; /* <domain> of that record */
  size_t exp_domain_n;
  const char *exp_text;   /* TXT of the exp= target, while expanding */
  size_t exp_text_n;
  mxgw_buf scratch;       /* macro expansion */
  mxgw_spf_done_cb cb;
  void *cbarg;

  /* results */
  const char *mechanism, *domain, *explanation, *problem;
  size_t mechanism_n, domain_n, explanation_n, problem_n;

  /* trace */
  spf_trace_ent *tr;
  size_t ntr, captr;
  size_t nfmt;          /* entries written into trace_text so far */
  mxgw_buf trace_text;

  /* outputs (mxgw_spf_output.c) */
  mxgw_buf out_json, out_rspf, out_ar, out_reply;
};

/* Expand a macro-string against the check's values with <domain> d (used
 * by the output module for the default explanation too). */
int mxgw__spf_check_expand(mxgw_spf_check *c, const char *d, size_t dn,
                           const char *s, size_t n, int flags,
                           const char **err);

#define SPF_DEFAULT_EXP "%{o} does not designate %{c} as a permitted sender"

/* snprintf() for the messages of the SPF modules, without stdio: %s, %.Ns,
 * %.*s, %d, %u, %x, %X (with 0 and width, l, ll, z) and %%; anything else
 * goes to vsnprintf(). Writes at most cap - 1 octets and a NUL; returns
 * how many it wrote (not how many it would have). */
int mxgw__spf_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
    MXGW_PRINTF(3, 0);
int mxgw__spf_fmt(char *buf, size_t cap, const char *fmt, ...)
    MXGW_PRINTF(3, 4);

/* "A", "AAAA", "MX", "TXT", "PTR", "CNAME", else "?". */
const char *mxgw__spf_type_name(int type);

/* Write the text of the trace entries recorded since the last call into
 * trace_text (mxgw_spf_output.c). MXGW_OK or MXGW_E_NOMEM. */
int mxgw__spf_trace_format(mxgw_spf_check *c);

#endif /* MXGW_SPF_INT_H */
