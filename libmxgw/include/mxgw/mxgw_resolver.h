/* SPDX-License-Identifier: MIT */
/*
 * mxgw_resolver.h: the asynchronous DNS resolver interface that SPF (and
 * later the doctor) asks for answers, and the two resolvers libmxgw ships:
 *
 *   - a static in-memory zone, loaded from an RFC 1035 master file or built
 *     record by record (tests, offline checks, "what if I change my record");
 *   - c-ares (1.18+, as in Debian 12), fitted into the caller's event loop
 *     through its socket-state hook: the caller watches the descriptors that
 *     mxgw_resolver_fds() lists, calls mxgw_resolver_process() when they are
 *     ready or when mxgw_resolver_timeout() expires. It has a TTL-respecting
 *     cache shared by every query made through the resolver.
 *
 * A query completes exactly once through its callback (libuv's rule: a call
 * that fails returns an error and never calls back). The static resolver
 * completes queries from inside mxgw_resolver_process() (never from inside
 * mxgw_resolver_query() itself), so callers never see re-entrant callbacks.
 *
 * Ownership: an answer passed to a callback is borrowed for the duration of
 * the callback; copy what you need. Strings passed in are copied.
 * Threading: one resolver is used by one thread at a time.
 */
#ifndef MXGW_RESOLVER_H
#define MXGW_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_resolver mxgw_resolver;
typedef struct mxgw_dns_answer mxgw_dns_answer;
typedef struct mxgw_dns_query mxgw_dns_query;

/** Record types (the IANA numbers). */
typedef enum mxgw_dns_type {
  MXGW_DNS_A = 1,
  MXGW_DNS_CNAME = 5,
  MXGW_DNS_PTR = 12,
  MXGW_DNS_MX = 15,
  MXGW_DNS_TXT = 16,
  MXGW_DNS_AAAA = 28
} mxgw_dns_type;

/** Outcome of a lookup. NODATA and NXDOMAIN count as void lookups in SPF
 *  (RFC 7208 4.6.4); SERVFAIL, TIMEOUT and ERROR give temperror. */
typedef enum mxgw_dns_status {
  MXGW_DNS_OK = 0,       /**< at least one record of the asked type */
  MXGW_DNS_NODATA = 1,   /**< the name exists, no record of this type */
  MXGW_DNS_NXDOMAIN = 2, /**< the name does not exist */
  MXGW_DNS_SERVFAIL = 3, /**< the server failed (or refused) */
  MXGW_DNS_TIMEOUT = 4,  /**< no answer in time */
  MXGW_DNS_ERROR = 5     /**< anything else: malformed answer, bad name */
} mxgw_dns_status;

/** Short name of a status ("NOERROR", "NODATA", "NXDOMAIN", ...). */
MXGW_EXTERN const char *mxgw_dns_status_name(int status);

/**
 * Completion callback. status is an mxgw_dns_status; ans is NULL unless
 * status is MXGW_DNS_OK. Called on the thread that calls
 * mxgw_resolver_process() (or mxgw_resolver_run()).
 */
typedef void (*mxgw_dns_cb)(void *arg, int status, const mxgw_dns_answer *ans);

/* ---- answers ---------------------------------------------------------- */

/** Number of records of the asked type (CNAMEs already followed). */
MXGW_EXTERN size_t mxgw_dns_answer_count(const mxgw_dns_answer *a);
/** Smallest TTL of the records, in seconds. */
MXGW_EXTERN uint32_t mxgw_dns_answer_ttl(const mxgw_dns_answer *a);
/**
 * Record i as bytes: A: 4 octets, AAAA: 16 octets, TXT: the character
 * strings concatenated (RFC 7208 3.3), MX and PTR: the target name in
 * presentation form without the final dot.
 * Errors: MXGW_E_RANGE. Ownership: borrowed (valid during the callback).
 */
MXGW_EXTERN int mxgw_dns_answer_data(const mxgw_dns_answer *a, size_t i,
                                     const char **ptr, size_t *len);
/** MX preference of record i (0 for other types). */
MXGW_EXTERN int mxgw_dns_answer_pref(const mxgw_dns_answer *a, size_t i);

/* ---- resolvers -------------------------------------------------------- */

/**
 * A static resolver with an empty zone. Names are matched case-
 * insensitively; a name with records of other types gives NODATA (also
 * when only skipped types such as NS, SOA or SPF were loaded for it), an
 * unknown name NXDOMAIN (also an empty non-terminal, where a real server
 * would say NODATA). CNAMEs are followed; a chain longer than 8 or a loop
 * gives SERVFAIL. Errors: MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_resolver_new_static(mxgw_resolver **out,
                                         const mxgw_mem *mem);

/**
 * Add a record to a static resolver. data is in presentation form: an
 * address for A/AAAA, "PREF NAME" for MX, the name for PTR/CNAME, and for
 * TXT the text itself (one string; use mxgw_resolver_load_zone() for several
 * character strings). status_override: 0, or MXGW_DNS_SERVFAIL /
 * MXGW_DNS_TIMEOUT to make every query for (name, type) fail that way (data
 * is then ignored).
 * Errors: MXGW_E_INVAL (bad name or data; detail in mxgw_resolver_errmsg),
 * MXGW_E_UNSUPPORTED (not a static resolver), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_resolver_add_record(mxgw_resolver *r, const char *name,
                                         int type, uint32_t ttl,
                                         const char *data, int status_override);

/**
 * Load an RFC 1035 master file into a static resolver: $ORIGIN, $TTL,
 * relative and absolute names, "@", A, AAAA, MX, TXT (several quoted
 * strings, escapes), PTR, CNAME, comments and parentheses. Other types are
 * skipped with no error.
 * @param text,len  the file contents.
 * @param origin    initial origin, or NULL for the root.
 * The file loads whole or not at all: after any error (also running out
 * of memory part of the way) the resolver answers as before the call.
 * Errors: MXGW_E_SYNTAX (mxgw_resolver_errmsg names the line),
 * MXGW_E_UNSUPPORTED (r is not a static resolver), MXGW_E_NOMEM,
 * MXGW_E_INVAL (r NULL, text NULL with len > 0, or a bad origin).
 */
MXGW_EXTERN int mxgw_resolver_load_zone(mxgw_resolver *r, const char *text,
                                        size_t len, const char *origin);
/** Same, from a file. Errors: also MXGW_E_IO (unreadable file). */
MXGW_EXTERN int mxgw_resolver_load_zone_file(mxgw_resolver *r,
                                             const char *path,
                                             const char *origin);

/**
 * A resolver on c-ares. Options are given as a NULL-terminated list of
 * "key=value" strings (NULL for all defaults):
 *   - servers=IP[:PORT][,IP[:PORT]...] ("[v6]:PORT" for IPv6);
 *     default: /etc/resolv.conf
 *   - timeout_ms=N: timeout of the first try; c-ares doubles it on each
 *     further round (200 ms with 3 tries gives up after about 1.4 s) [2000]
 *   - tries=N: tries per server [2]
 *   - cache_size=N: cache entries, 0 disables the cache [10000]
 *   - negative_ttl=S: cache NXDOMAIN/NODATA for at most S seconds
 *     (RFC 2308; only when the answer carries an SOA), 0 = never [300]
 * TCP is used when a UDP answer is truncated (large TXT records).
 * Errors: MXGW_E_INVAL (unknown key, or a value that does not parse: check
 * the syntax above), MXGW_E_DNS (c-ares could not start), MXGW_E_NOMEM. On
 * error *out is NULL.
 */
MXGW_EXTERN int mxgw_resolver_new_ares(mxgw_resolver **out,
                                       const char *const *options,
                                       const mxgw_mem *mem);

/** Free a resolver. Queries still in flight complete with MXGW_DNS_ERROR
 *  (their callbacks run inside this call, so their owners can clean up).
 *  NULL is a no-op. */
MXGW_EXTERN void mxgw_resolver_free(mxgw_resolver *r);

/**
 * Start a lookup. The callback runs exactly once, later, from
 * mxgw_resolver_process() or mxgw_resolver_run().
 * @param q  if not NULL, receives a handle for mxgw_resolver_cancel().
 * Errors: MXGW_E_INVAL (bad name or type), MXGW_E_NOMEM. On error the
 * callback never runs.
 */
MXGW_EXTERN int mxgw_resolver_query(mxgw_resolver *r, const char *name,
                                    int type, mxgw_dns_cb cb, void *arg,
                                    mxgw_dns_query **q);

/** Cancel a query that has not completed: its callback will not run. The
 *  handle is invalid afterwards. Must not be called for a query whose
 *  callback has already run. */
MXGW_EXTERN void mxgw_resolver_cancel(mxgw_resolver *r, mxgw_dns_query *q);

/** Queries started and not yet completed. */
MXGW_EXTERN size_t mxgw_resolver_pending(const mxgw_resolver *r);

/**
 * Descriptors to watch. Fills fds[0..n) and events[i] (1 = readable,
 * 2 = writable) for up to cap entries; returns how many there are (may be
 * more than cap). The static resolver has none.
 */
MXGW_EXTERN int mxgw_resolver_fds(mxgw_resolver *r, int *fds, int *events,
                                  int cap);

/** Milliseconds until mxgw_resolver_process() must be called even without
 *  ready descriptors (0 = now; -1 = no timer). */
MXGW_EXTERN int64_t mxgw_resolver_timeout(mxgw_resolver *r);

/**
 * Do the work that is due: read ready descriptors (fd = -1 when only a
 * timeout fired), handle timeouts, complete queries (callbacks run here).
 * Must not be called from inside a query callback.
 * @return number of callbacks run, or an error: MXGW_E_STATE (called from
 *         a callback).
 */
MXGW_EXTERN int mxgw_resolver_process(mxgw_resolver *r, int fd, int events);

/**
 * Block until no query is pending or timeout_ms passed (-1: no limit),
 * polling the descriptors itself. For simple programs and the blocking SPF
 * call. @return MXGW_OK, or MXGW_E_TIMEOUT, MXGW_E_IO (poll failed),
 * MXGW_E_STATE (queries pending but nothing to wait for, or called from a
 * callback).
 */
MXGW_EXTERN int mxgw_resolver_run(mxgw_resolver *r, int64_t timeout_ms);

/** Detail of the last error on this resolver (never NULL). */
MXGW_EXTERN const char *mxgw_resolver_errmsg(const mxgw_resolver *r);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_RESOLVER_H */
