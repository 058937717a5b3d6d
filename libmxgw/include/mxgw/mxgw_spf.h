/* SPDX-License-Identifier: MIT */
/*
 * mxgw_spf.h: Sender Policy Framework (RFC 7208) evaluation over the
 * asynchronous resolver of mxgw_resolver.h, with the result headers
 * (Received-SPF, the spf part of Authentication-Results) and a policy helper
 * that maps results to SMTP replies (RFC 7372 codes).
 *
 * An evaluator context (mxgw_spf) holds the options and borrows a resolver.
 * Each evaluation is an mxgw_spf_check: a state machine that asks the
 * resolver for DNS answers and resumes in the resolver's callbacks, so it
 * never blocks. Any number of checks may be in flight on one resolver. A
 * C event loop drives the resolver (mxgw_resolver_fds/timeout/process) and
 * learns about completion through mxgw_spf_check_set_done_cb(); simple
 * programs and language bindings use the blocking mxgw_spf_check_sync():
 *
 *     mxgw_resolver *r; mxgw_spf *spf; mxgw_spf_check *chk;
 *     mxgw_resolver_new_ares(&r, NULL, NULL);
 *     mxgw_spf_new(&spf, r, NULL);
 *     mxgw_spf_check_sync(spf, "192.0.2.1", "mx.example.org",
 *                         "user@example.org", MXGW_SPF_ID_MAILFROM, &chk);
 *     printf("%s\n", mxgw_spf_result_name(mxgw_spf_check_result(chk)));
 *     mxgw_spf_check_free(chk); mxgw_spf_free(spf); mxgw_resolver_free(r);
 *
 * Every check ends in one of the seven results within bounded time and
 * memory: the processing limits of RFC 7208 4.6.4 are enforced, CNAME and
 * include loops end at those limits, macro expansions are bounded, and DNS
 * failures give temperror.
 *
 * A check records what it did: the result, the term that decided it, the
 * explanation, the problem for errors, counters against each limit, and a
 * trace of every DNS lookup (with its answer) and every term (matched or
 * not, and why). The trace is what tells an operator which term failed to
 * authorize an address.
 *
 * Ownership: strings returned through `const char **ptr, size_t *len` point
 * into the check and stay valid until mxgw_spf_check_free() (the outputs of
 * the _json/_received_spf/_auth_results/_reply calls until the same call is
 * made again on the check). They are NUL-terminated. Strings passed in are
 * copied.
 *
 * Threading: a context, its resolver and its checks are used by one thread
 * at a time.
 */
#ifndef MXGW_SPF_H
#define MXGW_SPF_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"
#include "mxgw_resolver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_spf mxgw_spf;
typedef struct mxgw_spf_check mxgw_spf_check;

/** The seven results of RFC 7208 2.6. */
typedef enum mxgw_spf_result {
  MXGW_SPF_NONE = 0,      /**< no SPF record, or no checkable domain */
  MXGW_SPF_NEUTRAL = 1,   /**< the domain makes no assertion ("?", default) */
  MXGW_SPF_PASS = 2,      /**< the client is authorized */
  MXGW_SPF_FAIL = 3,      /**< the client is not authorized ("-") */
  MXGW_SPF_SOFTFAIL = 4,  /**< probably not authorized ("~") */
  MXGW_SPF_TEMPERROR = 5, /**< a transient (DNS) error */
  MXGW_SPF_PERMERROR = 6  /**< the published records are wrong */
} mxgw_spf_result;

/**
 * The result's name as RFC 7208 and RFC 8601 write it: "none", "neutral",
 * "pass", "fail", "softfail", "temperror", "permerror" ("unknown" for any
 * other value). Ownership: static storage.
 */
MXGW_EXTERN const char *mxgw_spf_result_name(int result);

/** The identity being checked (RFC 7208 2.3, 2.4). */
typedef enum mxgw_spf_identity {
  /** MAIL FROM: the domain of the reverse-path; for a null reverse-path
   *  the HELO domain, with the sender "postmaster@<helo>". */
  MXGW_SPF_ID_MAILFROM = 1,
  /** HELO/EHLO: the HELO domain, with the sender "postmaster@<helo>". */
  MXGW_SPF_ID_HELO = 2
} mxgw_spf_identity;

/* ------------------------------------------------------------------------ */
/* Evaluator context                                                        */
/* ------------------------------------------------------------------------ */

/** Integer options for mxgw_spf_set_int(). Defaults in brackets. Checks
 *  take the values current when they start. */
typedef enum mxgw_spf_opt {
  /** Terms that query DNS (include, a, mx, ptr, exists, redirect) per
   *  evaluation, across include and redirect (RFC 7208 4.6.4); one more is
   *  permerror. 1..1000. [10] */
  MXGW_SPF_OPT_MAX_DNS_TERMS = 1,
  /** Void lookups (NXDOMAIN, or no record of the asked type) by a, mx,
   *  ptr and exists terms; one more is permerror. 0..1000. [2] */
  MXGW_SPF_OPT_MAX_VOID_LOOKUPS = 2,
  /** MX names one mx term may look up; more is permerror. 1..1000. [10] */
  MXGW_SPF_OPT_MAX_MX_NAMES = 3,
  /** PTR names one ptr term or %{p} macro looks at; the rest are
   *  ignored. 1..1000. [10] */
  MXGW_SPF_OPT_MAX_PTR_NAMES = 4,
  /** Overall time limit of one evaluation in ms, checked each time an
   *  answer arrives; past it the result is temperror. RFC 7208 4.6.4 asks
   *  for at least 20 seconds. 0 = no limit. [20000] */
  MXGW_SPF_OPT_TIMEOUT_MS = 5,
  /** Record the trace (1) or not (0): without it evaluation is faster and
   *  mxgw_spf_check_trace_count() is 0. [1] */
  MXGW_SPF_OPT_TRACE = 6,
  /** Seconds since the epoch for the %{t} macro, 0 = read the clock. [0] */
  MXGW_SPF_OPT_NOW = 7
} mxgw_spf_opt;

/** String options for mxgw_spf_set_str(). */
typedef enum mxgw_spf_opt_str {
  /** Our host name: the %{r} macro, receiver= in Received-SPF and the
   *  header comments. NULL or "" for none (%{r} is then "unknown").
   *  [none] */
  MXGW_SPF_OPT_RECEIVER = 100,
  /** Explanation for a fail result when the domain publishes no usable
   *  exp= (RFC 7208 6.2). A macro string like exp= text (%{o}, %{c} ...).
   *  ["%{o} does not designate %{c} as a permitted sender"] */
  MXGW_SPF_OPT_DEFAULT_EXPLANATION = 101
} mxgw_spf_opt_str;

/**
 * Create an evaluator context.
 * @param out  receives the context.
 * @param r    the resolver to ask. Borrowed: it must outlive the context
 *             and its checks.
 * @param mem  allocator for the context and its checks, or NULL.
 * Errors: MXGW_E_INVAL (NULL out or r), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_spf_new(mxgw_spf **out, mxgw_resolver *r,
                             const mxgw_mem *mem);

/** Free a context. Free its checks first. NULL is a no-op. */
MXGW_EXTERN void mxgw_spf_free(mxgw_spf *spf);

/**
 * Set an integer option.
 * Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE (value out of range).
 */
MXGW_EXTERN int mxgw_spf_set_int(mxgw_spf *spf, int key, int64_t value);

/** Read an integer option. Errors: MXGW_E_INVAL (unknown key, NULL out). */
MXGW_EXTERN int mxgw_spf_get_int(const mxgw_spf *spf, int key, int64_t *out);

/**
 * Set a string option (copied).
 * Errors: MXGW_E_INVAL (unknown key; a receiver with spaces or control
 * characters; a default explanation that is not a valid macro string),
 * MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_spf_set_str(mxgw_spf *spf, int key, const char *value);

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Completion hook: runs once when the check finishes, from inside
 * mxgw_resolver_process() (or _run(), mxgw_spf_check_abort(), or
 * mxgw_resolver_free()). The hook may free the check.
 */
typedef void (*mxgw_spf_done_cb)(void *arg, mxgw_spf_check *chk);

/**
 * Start an evaluation: check_host() of RFC 7208 4 for the client ip and
 * the given identity. The check asks the resolver and continues in its
 * callbacks; nothing blocks. Some checks finish at once (a malformed domain
 * gives none without any lookup): test mxgw_spf_check_done() afterwards.
 * @param ip         the client address, "192.0.2.1" or "2001:db8::1"; an
 *                   IPv4-mapped IPv6 address is evaluated as IPv4.
 * @param helo       the HELO/EHLO argument (may be NULL or "" for
 *                   MXGW_SPF_ID_MAILFROM with a non-null sender).
 * @param mail_from  the reverse-path without angle brackets ("" or NULL for
 *                   the null sender). Without a local part ("@example.org",
 *                   "example.org") the local part is "postmaster".
 * @param identity   MXGW_SPF_ID_MAILFROM or MXGW_SPF_ID_HELO.
 * @param out        receives the check.
 * Errors: MXGW_E_INVAL (NULL spf/out, bad ip, unknown identity, a missing
 * HELO where it is needed, control characters or more than 1024 octets in
 * helo or mail_from), MXGW_E_NOMEM.
 * Ownership: the caller frees the check with mxgw_spf_check_free().
 */
MXGW_EXTERN int mxgw_spf_check_start(mxgw_spf *spf, const char *ip,
                                     const char *helo, const char *mail_from,
                                     int identity, mxgw_spf_check **out);

/**
 * Set the completion hook (NULL to remove it). The hook never runs inside
 * this call or inside mxgw_spf_check_start(): if the check is already done
 * it does not run at all.
 * Errors: MXGW_E_INVAL (NULL chk).
 */
MXGW_EXTERN int mxgw_spf_check_set_done_cb(mxgw_spf_check *chk,
                                           mxgw_spf_done_cb cb, void *arg);

/** 1 if the check has its result, 0 if it still waits for DNS. */
MXGW_EXTERN int mxgw_spf_check_done(const mxgw_spf_check *chk);

/**
 * Block, driving the resolver (its descriptors and timers, as
 * mxgw_resolver_run() does), until this check is done or timeout_ms passed
 * (-1: no limit). Other checks on the resolver progress too.
 * @return MXGW_OK (done), or MXGW_E_TIMEOUT (still running: keep driving,
 *         or end it with mxgw_spf_check_abort()).
 * Errors: MXGW_E_INVAL, MXGW_E_IO (poll failed). Context: not from inside a
 * resolver callback.
 */
MXGW_EXTERN int mxgw_spf_check_run(mxgw_spf_check *chk, int64_t timeout_ms);

/**
 * One blocking evaluation: mxgw_spf_check_start() then
 * mxgw_spf_check_run() within MXGW_SPF_OPT_TIMEOUT_MS (a check still
 * running then is aborted: temperror). On success *out is done.
 * Errors: as mxgw_spf_check_start(); MXGW_E_IO.
 */
MXGW_EXTERN int mxgw_spf_check_sync(mxgw_spf *spf, const char *ip,
                                    const char *helo, const char *mail_from,
                                    int identity, mxgw_spf_check **out);

/**
 * End a running check now with temperror ("evaluation aborted"), for an
 * event loop's own deadline. Its outstanding queries are cancelled; the
 * completion hook runs inside this call. No-op on a finished check.
 */
MXGW_EXTERN void mxgw_spf_check_abort(mxgw_spf_check *chk);

/** Free a check; a running check's queries are cancelled (its hook does not
 *  run). May be called from the completion hook. NULL is a no-op. */
MXGW_EXTERN void mxgw_spf_check_free(mxgw_spf_check *chk);

/* ------------------------------------------------------------------------ */
/* Results                                                                  */
/* ------------------------------------------------------------------------ */

/** The result (an mxgw_spf_result), or MXGW_E_STATE while running,
 *  MXGW_E_INVAL for NULL. */
MXGW_EXTERN int mxgw_spf_check_result(const mxgw_spf_check *chk);

/** Keys for mxgw_spf_check_get_str() (1..99) and _get_int() (100..). */
typedef enum mxgw_spf_info {
  /** The term that decided, as written in the record ("ip4:192.0.2.0/24",
   *  "-all", "include:_spf.example.net"), in the record of the checked
   *  domain or of a redirect= target; "default" when no term matched
   *  (RFC 7208 9.1). Not set for none, temperror and permerror. */
  MXGW_SPF_INFO_MECHANISM = 1,
  /** The domain whose record decided (the last redirect= target), or the
   *  checked domain. */
  MXGW_SPF_INFO_DOMAIN = 2,
  /** For fail: the explanation, from exp= (RFC 7208 6.2) or the default
   *  (MXGW_SPF_OPT_DEFAULT_EXPLANATION). Not set otherwise. */
  MXGW_SPF_INFO_EXPLANATION = 3,
  /** For temperror and permerror: what went wrong, e.g.
   *  "include:foo.example: no SPF record (RFC 7208 5.2)". */
  MXGW_SPF_INFO_PROBLEM = 4,
  /** The client address as evaluated ("192.0.2.1" for ::ffff:192.0.2.1). */
  MXGW_SPF_INFO_CLIENT_IP = 5,
  /** The sender as evaluated: the reverse-path, or "postmaster@<helo>". */
  MXGW_SPF_INFO_SENDER = 6,
  /** The HELO argument as given ("" if none). */
  MXGW_SPF_INFO_HELO = 7,
  /** "mailfrom" or "helo". */
  MXGW_SPF_INFO_IDENTITY = 8,
  /** The initial domain checked (<domain> of check_host()). */
  MXGW_SPF_INFO_CHECKED_DOMAIN = 9,
  /** Terms that queried DNS (include, a, mx, ptr, exists, redirect),
   *  against MXGW_SPF_OPT_MAX_DNS_TERMS. */
  MXGW_SPF_INFO_DNS_TERMS = 100,
  /** Void lookups, against MXGW_SPF_OPT_MAX_VOID_LOOKUPS. */
  MXGW_SPF_INFO_VOID_LOOKUPS = 101,
  /** Most MX names one mx term returned, against _MAX_MX_NAMES. */
  MXGW_SPF_INFO_MX_NAMES = 102,
  /** Most PTR names one ptr term or %{p} returned, against _MAX_PTR_NAMES
   *  (those past the limit were ignored). */
  MXGW_SPF_INFO_PTR_NAMES = 103,
  /** DNS lookups asked of the resolver (all types, exp= included). */
  MXGW_SPF_INFO_DNS_QUERIES = 104,
  /** MXGW_SPF_ID_MAILFROM or MXGW_SPF_ID_HELO. */
  MXGW_SPF_INFO_IDENTITY_ID = 105
} mxgw_spf_info;

/**
 * Read a string item of a check.
 * Errors: MXGW_E_INVAL (unknown key, NULL pointers), MXGW_E_STATE (the
 * check is running: only CLIENT_IP, SENDER, HELO, IDENTITY and
 * CHECKED_DOMAIN are readable), MXGW_E_NOTFOUND (not set for this result).
 */
MXGW_EXTERN int mxgw_spf_check_get_str(const mxgw_spf_check *chk, int key,
                                       const char **ptr, size_t *len);

/** Read an integer item (counters are readable while running).
 *  Errors: MXGW_E_INVAL. */
MXGW_EXTERN int mxgw_spf_check_get_int(const mxgw_spf_check *chk, int key,
                                       int64_t *out);

/** Kinds of trace entries. */
typedef enum mxgw_spf_trace_kind {
  /** A DNS lookup and its outcome: "TXT example.org: NOERROR 2 records:
   *  \"v=spf1 ...\" ...", "A mail.example.org: NXDOMAIN (void lookup 1
   *  of 2)". */
  MXGW_SPF_TRACE_QUERY = 1,
  /** The SPF record selected for a domain (or why there is none). */
  MXGW_SPF_TRACE_RECORD = 2,
  /** One term evaluated: "ip4:192.0.2.0/24: no match (203.0.113.5 is not
   *  in 192.0.2.0/24)", "-all: match -> fail". */
  MXGW_SPF_TRACE_TERM = 3,
  /** The result of one check_host() level, and the final result. */
  MXGW_SPF_TRACE_RESULT = 4
} mxgw_spf_trace_kind;

/** "query", "record", "term", "result" ("unknown" otherwise). */
MXGW_EXTERN const char *mxgw_spf_trace_kind_name(int kind);

/** Number of trace entries so far. */
MXGW_EXTERN size_t mxgw_spf_check_trace_count(const mxgw_spf_check *chk);

/**
 * Trace entry i (0 .. count-1), in the order things happened.
 * @param depth  receives the include depth (0 for the checked domain and
 *               its redirect= targets, 1 inside an include, ...); may be
 *               NULL.
 * @param kind   receives an mxgw_spf_trace_kind; may be NULL.
 * @param ptr,len  receive the text (printable ASCII; bytes outside it from
 *               DNS are shown as \xHH).
 * The text is formatted the first time the trace is read (evaluation only
 * records structured entries) and cached in the check.
 * Errors: MXGW_E_INVAL, MXGW_E_RANGE (i), MXGW_E_NOMEM (formatting).
 */
MXGW_EXTERN int mxgw_spf_check_trace(const mxgw_spf_check *chk, size_t i,
                                     int *depth, int *kind, const char **ptr,
                                     size_t *len);

/**
 * The whole check as one JSON object (jansson): result, identity, client_ip,
 * sender, helo, domain, mechanism, explanation, problem, counts (with the
 * limits), trace (objects with depth, kind, text), received_spf.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE (running), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_spf_check_json(mxgw_spf_check *chk, const char **ptr,
                                    size_t *len);

/* ------------------------------------------------------------------------ */
/* Headers                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * The Received-SPF header field (RFC 7208 9.1), complete: name, result,
 * comment, then the key-value pairs client-ip, envelope-from (MAIL FROM
 * identity), helo, receiver (if MXGW_SPF_OPT_RECEIVER is set), problem
 * (errors) or mechanism, identity. Values that are not dot-atoms are
 * quoted-strings; control characters are dropped. Folded at 78 columns,
 * ends in CRLF; prepend it to the message.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE (running), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_spf_check_received_spf(mxgw_spf_check *chk,
                                            const char **ptr, size_t *len);

/**
 * The spf result of an Authentication-Results header field (RFC 8601):
 * "spf=pass smtp.mailfrom=user@example.org" (MAIL FROM identity; a
 * local part that is not a dot-atom is a quoted-string) or
 * "spf=none smtp.helo=mx.example.org" (HELO identity), with a comment
 * naming the client address for fail, softfail, neutral and pass.
 * @param authserv_id  NULL to get just that resinfo, to be assembled by the
 *        caller with other methods' results as
 *        "Authentication-Results: " authserv-id "; " resinfo *(";" resinfo)
 *        CRLF; or the authserv-id (our host name) to get a complete header
 *        field with only the spf result, folded and ending in CRLF.
 * Errors: MXGW_E_INVAL (authserv_id that is not a token), MXGW_E_STATE,
 * MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_spf_check_auth_results(mxgw_spf_check *chk,
                                            const char *authserv_id,
                                            const char **ptr, size_t *len);

/* ------------------------------------------------------------------------ */
/* Policy                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Map a result to an SMTP reply for a gateway (RFC 7372 codes):
 * fail: 550 5.7.23; temperror: 451 4.7.24; permerror: 550 5.7.24 if
 * permerror_reject is non-zero, else accept; pass, neutral, none,
 * softfail: accept (add the header).
 * @param code  receives the reply code, or 0 to accept.
 * @param enh   receives the enhanced status code ("5.7.23"), or NULL when
 *              accepting; may itself be NULL. Static storage.
 * Errors: MXGW_E_INVAL (unknown result, NULL code).
 */
MXGW_EXTERN int mxgw_spf_policy(int result, int permerror_reject, int *code,
                                const char **enh);

/**
 * The policy of mxgw_spf_policy() for a finished check, with the reply text
 * to pass to mxgw_session_reply(): for fail the explanation; for temperror
 * "SPF temporary error: <problem>"; for permerror "SPF permanent error:
 * <problem>"; "" when accepting. The text is printable ASCII, at most 400
 * octets.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE (running), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_spf_check_reply(mxgw_spf_check *chk, int permerror_reject,
                                     int *code, const char **enh,
                                     const char **text, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_SPF_H */
