/* SPDX-License-Identifier: MIT */
/*
 * mxgw_deliver.h: the delivery scheduler. It joins the durable queue
 * (mxgw_queue.h) and the LMTP client (mxgw_lmtp.h): it takes due messages
 * (incoming, and deferred ones whose next attempt time has passed),
 * delivers them to a list of LMTP backends (the first that accepts a
 * connection; the others are fallbacks) with up to MXGW_DELIVER_OPT_
 * CONCURRENCY connections per backend, and records each recipient's outcome
 * in the queue metadata: 2xx delivered, 4xx (and connection failures,
 * timeouts) deferred with exponential backoff, 5xx failed. A message whose
 * recipients are all final leaves the queue: all delivered, it is removed;
 * some failed, it goes to the failed state, or (bounce policy DSN) an
 * RFC 3464 delivery status notification is queued to the sender and the
 * message is removed. A deferred recipient still deferred after the maximal
 * queue lifetime becomes failed with its last error. A failed recipient is
 * never silently dropped: no DSN is ever sent to the null sender, and a
 * failed recipient for which no DSN was queued (null sender, NOTIFY=NEVER
 * or without FAILURE, policy KEEP) keeps its message in the failed state
 * for the operator (`mxgw-queue list --state failed`).
 *
 * Other DSNs (also only with MXGW_BOUNCE_DSN, never to the null sender):
 *  - success: recipients delivered in an attempt whose NOTIFY includes
 *    SUCCESS get one report per attempt, "Action: delivered" (the LMTP store
 *    is the final delivery, RFC 3461 6.2), status 2.0.0, the backend's
 *    reply as Diagnostic-Code, the original's header only (RFC 3461 4.3: a
 *    DSN without a failure returns the headers). Not when the backend
 *    offers DSN itself: then NOTIFY and ORCPT are passed on in RCPT and the
 *    backend is responsible (RFC 3461 5.2, relay to a DSN-capable server).
 *  - delay (MXGW_DELIVER_OPT_DELAY_WARNING): once an attempt at or after
 *    arrival + that time leaves recipients deferred, one "Action: delayed"
 *    report (4.x.x status of the last reply, Will-Retry-Until arrival +
 *    lifetime, header only) for those whose NOTIFY includes DELAY or who
 *    gave no NOTIFY (RFC 3461 4.1 leaves the latter to the MTA; like
 *    Postfix we warn). Each such recipient is marked in the metadata
 *    ("delay_dsn": the time of the warning) and never warned again.
 *
 * One log line per recipient per attempt, in Postfix's format:
 *   ID: to=<rcpt>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.24,
 *   delays=0.01/0/0.12/0.1, dsn=2.0.0, status=sent (250 2.0.0 <rcpt> Saved)
 * (status=sent, deferred or bounced), plus the same event as JSON.
 *
 * Delivery is at least once (docs/queue.md, "Delivery and retries").
 *
 * Driving it: mxgw_deliver_run_once() blocks until every message due at
 * `now` was tried once; mxgw_deliver_run() loops (on a thread of the
 * application) until mxgw_deliver_stop(). Worker threads with the blocking
 * LMTP driver do the deliveries (the queue's moves and saves block on fsync
 * anyway).
 *
 * Threading: configure the handle on one thread, before the first run.
 * mxgw_deliver_stop(), mxgw_deliver_wakeup() and mxgw_deliver_get_int()
 * may be called from any thread at any time. The log hook is called from
 * worker threads, one call at a time.
 */
#ifndef MXGW_DELIVER_H
#define MXGW_DELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_deliver mxgw_deliver;
struct mxgw_queue; /* mxgw_queue.h */
struct mxgw_tls;   /* mxgw_tls.h */

/** What happens to failed recipients (MXGW_DELIVER_OPT_BOUNCE). */
typedef enum mxgw_bounce_policy {
  /** No DSN of any kind (failure, success, delay): a message with failed
   *  recipients stays in the failed state for the operator. */
  MXGW_BOUNCE_KEEP = 0,
  /** An RFC 3464 DSN goes to the sender (or MXGW_DELIVER_OPT_BOUNCE_RCPT)
   *  through the bounce queue; then the message is removed (unless
   *  MXGW_DELIVER_OPT_KEEP_BOUNCED or some failed recipient got no DSN).
   *  Success (NOTIFY=SUCCESS) and delay (MXGW_DELIVER_OPT_DELAY_WARNING)
   *  reports take the same way. */
  MXGW_BOUNCE_DSN = 1
} mxgw_bounce_policy;

/** Integer options (mxgw_deliver_set_int). Defaults in brackets. */
typedef enum mxgw_deliver_opt {
  /** Connections (worker threads) per backend, 1..1024. [4] */
  MXGW_DELIVER_OPT_CONCURRENCY = 1,
  /** First retry delay, seconds, >= 1. [60] */
  MXGW_DELIVER_OPT_BACKOFF_INITIAL = 2,
  /** Retry delay factor per attempt, 1..100. [2] */
  MXGW_DELIVER_OPT_BACKOFF_FACTOR = 3,
  /** Longest retry delay, seconds, >= 1. [3600] */
  MXGW_DELIVER_OPT_BACKOFF_MAX = 4,
  /** Maximal queue lifetime, seconds since arrival, >= 0: a recipient
   *  still deferred after an attempt past it fails. [432000 (5 days)] */
  MXGW_DELIVER_OPT_LIFETIME = 5,
  /** LMTP timeouts in ms (mxgw_lmtp.h). [30000, 300000, 600000] */
  MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS = 6,
  MXGW_DELIVER_OPT_COMMAND_TIMEOUT_MS = 7,
  MXGW_DELIVER_OPT_DATA_TIMEOUT_MS = 8,
  /** STARTTLS to the backends: 0 never, 1 when offered, 2 required
   *  (needs mxgw_deliver_set_tls()). [0] */
  MXGW_DELIVER_OPT_STARTTLS = 9,
  /** XCLIENT with the original client's address and HELO when the backend
   *  offers it. [1] */
  MXGW_DELIVER_OPT_XCLIENT = 10,
  /** mxgw_bounce_policy. [MXGW_BOUNCE_DSN] */
  MXGW_DELIVER_OPT_BOUNCE = 11,
  /** With MXGW_BOUNCE_DSN: keep the message in the failed state after its
   *  DSN was queued (1) or remove it (0). [0] */
  MXGW_DELIVER_OPT_KEEP_BOUNCED = 12,
  /** Largest original returned whole in a failure DSN (RET=FULL or none);
   *  a larger one is returned as headers only (success and delay DSNs
   *  always return the header only). Octets. [50000] */
  MXGW_DELIVER_OPT_BOUNCE_SIZE_LIMIT = 13,
  /** Messages per LMTP connection. [100] */
  MXGW_DELIVER_OPT_MAX_MESSAGES = 14,
  /** mxgw_deliver_run(): rescan the queue at least this often, ms. [1000] */
  MXGW_DELIVER_OPT_POLL_MS = 15,
  /** Delay warning, seconds since arrival, 0 = off (Postfix's
   *  delay_warning_time): after an attempt at or past it that leaves
   *  recipients deferred, one "Action: delayed" DSN for them (NOTIFY with
   *  DELAY, or none), sent once per recipient. 0..INT32_MAX. [0] */
  MXGW_DELIVER_OPT_DELAY_WARNING = 16
} mxgw_deliver_opt;

/** String options (mxgw_deliver_set_str). */
typedef enum mxgw_deliver_opt_str {
  /** Our name in LHLO, in Reporting-MTA and in the DSN's From
   *  (MAILER-DAEMON@name). ["localhost"] */
  MXGW_DELIVER_OPT_HOSTNAME = 100,
  /** Envelope recipient of every DSN (a bounce mailbox on the LMTP store),
   *  instead of the original sender (left for a relay). [""] */
  MXGW_DELIVER_OPT_BOUNCE_RCPT = 101,
  /** Name to verify the backends' certificates against (also sent as
   *  SNI). Empty: the TLS context's MXGW_TLS_HOSTNAME if set; otherwise
   *  only the chain is verified (against the context's CA), no name: any
   *  certificate the CA issued is accepted. Set it (or pin a private CA
   *  that issues only the store's certificate). [""] */
  MXGW_DELIVER_OPT_TLS_SERVERNAME = 102
} mxgw_deliver_opt_str;

/** Counters (mxgw_deliver_get_int), monotonic since mxgw_deliver_new(). */
typedef enum mxgw_deliver_stat {
  MXGW_DELIVER_STAT_ATTEMPTS = 200,  /**< message delivery attempts */
  MXGW_DELIVER_STAT_SENT = 201,      /**< recipients delivered */
  MXGW_DELIVER_STAT_DEFERRED = 202,  /**< recipient attempts deferred */
  MXGW_DELIVER_STAT_BOUNCED = 203,   /**< recipients failed */
  MXGW_DELIVER_STAT_DSNS = 204,      /**< DSNs queued (all kinds) */
  MXGW_DELIVER_STAT_REMOVED = 205,   /**< messages removed (done) */
  MXGW_DELIVER_STAT_KEPT_FAILED = 206, /**< messages left in failed */
  MXGW_DELIVER_STAT_ERRORS = 207     /**< queue errors (messages left for
                                          recovery or the next run) */
} mxgw_deliver_stat;

/**
 * The log hook: one Postfix-style line (no newline) and the same event as
 * a JSON object, both NUL-terminated and borrowed for the call.
 * @param level  0 info (sent, removed), 1 notice (deferred, bounced,
 *               DSN queued), 2 warning (queue errors).
 */
typedef void mxgw_deliver_log_fn(void *user, int level, const char *line,
                                 const char *json);

/**
 * Create a scheduler bound to an open queue (not owned: free the scheduler
 * first). DSNs go into the same queue unless mxgw_deliver_set_bounce_queue().
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM, MXGW_E_IO (eventfd).
 */
MXGW_EXTERN int mxgw_deliver_new(mxgw_deliver **out, struct mxgw_queue *q,
                                 const mxgw_mem *mem);
/** Close connections and free. Not while a run is in progress. NULL ok. */
MXGW_EXTERN void mxgw_deliver_free(mxgw_deliver *d);

/**
 * Append an LMTP backend, tried in order: "host:port", "[v6]:port",
 * "inet:host:port" (numeric addresses), "unix:/path" or "/path".
 * Errors: MXGW_E_INVAL (bad target), MXGW_E_BUSY (running), MXGW_E_RANGE
 * (more than 16), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_deliver_add_backend(mxgw_deliver *d, const char *target);

/** Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE, MXGW_E_BUSY. */
MXGW_EXTERN int mxgw_deliver_set_int(mxgw_deliver *d, int key, int64_t value);
/** Options and counters. Errors: MXGW_E_INVAL. Context: any thread. */
MXGW_EXTERN int mxgw_deliver_get_int(mxgw_deliver *d, int key, int64_t *out);
/** Errors: MXGW_E_INVAL (unknown key, NULL, CR/LF), MXGW_E_BUSY,
 *  MXGW_E_NOMEM. */
MXGW_EXTERN int mxgw_deliver_set_str(mxgw_deliver *d, int key,
                                     const char *value);
/** A client TLS context for STARTTLS (a reference is kept; NULL detaches).
 *  Errors: MXGW_E_INVAL, MXGW_E_BUSY. */
MXGW_EXTERN int mxgw_deliver_set_tls(mxgw_deliver *d, struct mxgw_tls *tls);
/** Queue DSNs into `bq` (another open queue, e.g. the spool of a relay)
 *  instead of the delivery queue. NULL: the delivery queue. Not owned.
 *  Errors: MXGW_E_INVAL, MXGW_E_BUSY. */
MXGW_EXTERN int mxgw_deliver_set_bounce_queue(mxgw_deliver *d,
                                              struct mxgw_queue *bq);
/** Set the log hook (NULL: no logging). Errors: MXGW_E_INVAL, MXGW_E_BUSY. */
MXGW_EXTERN int mxgw_deliver_set_log(mxgw_deliver *d, mxgw_deliver_log_fn *fn,
                                     void *user);

/**
 * Try every message due at `now` (Unix seconds; incoming ones, deferred
 * ones with next attempt <= now, and DSNs queued meanwhile) once, with up
 * to CONCURRENCY worker threads, and return when all are done. Connections
 * are closed (QUIT) before it returns.
 * @return the number of messages tried (>= 0), or an error.
 * Errors: MXGW_E_STATE (no backend; or a run is in progress), MXGW_E_NOMEM,
 * MXGW_E_IO (threads could not be started).
 * Context: blocks; any one thread.
 */
MXGW_EXTERN int mxgw_deliver_run_once(mxgw_deliver *d, int64_t now);

/**
 * Loop until mxgw_deliver_stop(): CONCURRENCY worker threads that live as
 * long as the run; each mxgw_deliver_wakeup() and each poll interval
 * (MXGW_DELIVER_OPT_POLL_MS) starts a pass in which they take and deliver
 * every message due. Unlike run_once, a worker keeps its LMTP connections
 * between passes (reused up to MXGW_DELIVER_OPT_MAX_MESSAGES messages, a
 * connection the backend closed meanwhile is replaced) and QUITs them after
 * 5 s without a message, so a trickle of messages does not pay a connection
 * and LHLO each.
 * @return MXGW_OK after stop. Errors: MXGW_E_STATE (no backend, or a run is
 * in progress), MXGW_E_NOMEM, MXGW_E_IO (threads could not be started, or
 * the wake-up eventfd failed).
 * Context: blocks; run it on a thread of its own.
 */
MXGW_EXTERN int mxgw_deliver_run(mxgw_deliver *d);
/** Make mxgw_deliver_run() return (after the current pass). Any thread. */
MXGW_EXTERN int mxgw_deliver_stop(mxgw_deliver *d);
/** New messages were committed: make mxgw_deliver_run() pass now. Any
 *  thread. */
MXGW_EXTERN int mxgw_deliver_wakeup(mxgw_deliver *d);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_DELIVER_H */
