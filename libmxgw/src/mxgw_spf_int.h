/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf_int.h: what the SPF modules share: the per-check arena, the
 * parsed form of a record (mxgw_spf_record.c), the macro expander
 * (mxgw_spf_macro.c), and the check object that the evaluator
 * (mxgw_spf.c) fills in and the output module (mxgw_spf_output.c) reads.
 */
#ifndef MXGW_SPF_INT_H
#define MXGW_SPF_INT_H

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

typedef struct spf_trace_ent {
  uint32_t off, len; /* in trace_text */
  uint8_t depth, kind;
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

#endif /* MXGW_SPF_INT_H */
