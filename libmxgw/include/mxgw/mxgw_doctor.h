/* SPDX-License-Identifier: MIT */
/*
 * mxgw_doctor.h: diagnostics for an MX gateway. One call runs the checks an
 * operator would otherwise do by hand (dig MX/A/TXT, openssl s_client
 * -starttls smtp, nc -zv to the LMTP port, a look at the deferred queue)
 * and returns a list of findings. Each finding says:
 *
 *   - its status: ok, warn or fail;
 *   - its check ("dns", "spf", "cert", "listener", "backend", "queue");
 *   - what it concerns: the identity examined, e.g. "MX of example.org" or
 *     "SPF of example.org for 43.207.242.167 (outbound: MAIL FROM
 *     postmaster@example.org)";
 *   - a one-line finding, and the fix (empty when there is nothing to do);
 *   - optional detail lines (for SPF: the evaluation trace of mxgw_spf.h,
 *     which says which term matched or not);
 *   - an optional note (for SPF: that a domain's own SPF record concerns
 *     mail sent FROM it and plays no part in whether others can deliver TO
 *     it).
 *
 * The checks:
 *   DNS       the domain's MX hosts and their A/AAAA addresses: do they
 *             point at the gateway (its public addresses, or its host
 *             name)? The gateway host name's own addresses.
 *   SPF       the gateway's OUTBOUND role (bounces, notifications): does
 *             the domain's SPF record authorize every public address, and
 *             does the host name's record cover bounces (null sender, HELO
 *             identity)? Several SPF records, syntax errors and lookup-limit
 *             overruns are reported with the library's problem text.
 *   cert      the certificate and key files: host name covered, days left,
 *             chain complete, key matches, key mode 0600, self-signed.
 *   listener  a live probe of each listener: greeting, EHLO, STARTTLS
 *             offered, handshake, the served certificate's SHA-256 equal to
 *             the file's; on a submission listener, MAIL before STARTTLS
 *             must be refused.
 *   backend   the LMTP backend: connect and LHLO within the timeout;
 *             optionally a probe delivery.
 *   queue     counts per state, the oldest deferred message and its last
 *             error.
 *   roundtrip a test message through the gateway (SMTP to a listener, with
 *             STARTTLS when offered), then the gateway's log is watched
 *             for that message's delivery line (status=sent).
 * A check runs when what it needs is set (DOMAIN for DNS and SPF, TLS_CERT
 * for cert, LISTEN for listener, BACKEND, SPOOL; ROUND_TRIP_RCPT, LOG_FILE
 * and an smtp or smtps LISTEN for the round trip).
 *
 * Everything is blocking and bounded by MXGW_DOCTOR_OPT_TIMEOUT_MS per
 * network step. Network traffic goes only where the options point.
 *
 * Ownership: strings returned through `const char **ptr, size_t *len` are
 * NUL-terminated, point into the doctor and stay valid until the next
 * mxgw_doctor_run() or mxgw_doctor_free(). Strings passed in are copied.
 * Threading: one doctor is used by one thread at a time.
 */
#ifndef MXGW_DOCTOR_H
#define MXGW_DOCTOR_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"
#include "mxgw_resolver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_doctor mxgw_doctor;

/** Status of a finding, and of a whole run (the worst finding). The values
 *  are the CLI's exit status. */
typedef enum mxgw_doctor_status {
  MXGW_DOCTOR_OK = 0,
  MXGW_DOCTOR_WARN = 1,
  MXGW_DOCTOR_FAIL = 2
} mxgw_doctor_status;

/** "ok", "warn", "fail" ("unknown" otherwise). Static storage. */
MXGW_EXTERN const char *mxgw_doctor_status_name(int status);

/** Checks, as bits for mxgw_doctor_run(). */
typedef enum mxgw_doctor_check {
  MXGW_DOCTOR_CHECK_DNS = 1,
  MXGW_DOCTOR_CHECK_SPF = 2,
  MXGW_DOCTOR_CHECK_CERT = 4,
  MXGW_DOCTOR_CHECK_LISTENER = 8,
  MXGW_DOCTOR_CHECK_BACKEND = 16,
  MXGW_DOCTOR_CHECK_QUEUE = 32,
  MXGW_DOCTOR_CHECK_ROUND_TRIP = 64,
  MXGW_DOCTOR_CHECK_ALL = 127
} mxgw_doctor_check;

/** "dns", "spf", "cert", "listener", "backend", "queue", "roundtrip" for
 *  one bit
 *  ("unknown" otherwise). Static storage. */
MXGW_EXTERN const char *mxgw_doctor_check_name(int check);

/** String options (mxgw_doctor_set_str). "Repeatable" options add one value
 *  per call; the others replace. */
typedef enum mxgw_doctor_opt_str {
  /** The mail domain the gateway receives for ("example.org"). */
  MXGW_DOCTOR_OPT_DOMAIN = 1,
  /** The gateway's public host name (its EHLO name, the name its
   *  certificate must cover, what the MX should name). */
  MXGW_DOCTOR_OPT_HOSTNAME = 2,
  /** Repeatable: an address the gateway receives on and sends from
   *  ("43.207.242.167", "2001:db8::25"). */
  MXGW_DOCTOR_OPT_PUBLIC_IP = 3,
  /** Repeatable: a listener to probe, "HOST:PORT[/smtp|/submission|
   *  /smtps]" ("[v6]:PORT" for IPv6; numeric hosts or names resolved by
   *  the system). smtp: STARTTLS expected; submission: STARTTLS expected
   *  and required before MAIL; smtps: implicit TLS. [smtp] */
  MXGW_DOCTOR_OPT_LISTEN = 4,
  /** PEM certificate chain file (leaf first) and private key file. */
  MXGW_DOCTOR_OPT_TLS_CERT = 5,
  MXGW_DOCTOR_OPT_TLS_KEY = 6,
  /** CA file used (with the system store) to tell if the chain is
   *  complete. [system store only] */
  MXGW_DOCTOR_OPT_CA_FILE = 7,
  /** LMTP backend: "HOST:PORT", "[v6]:PORT" or "unix:PATH". */
  MXGW_DOCTOR_OPT_BACKEND = 8,
  /** Spool directory of the gateway's queue (opened read-only, without
   *  taking the owner lock). */
  MXGW_DOCTOR_OPT_SPOOL = 9,
  /** DNS server for the c-ares resolver, "IP[:PORT]" (several comma-
   *  separated). [/etc/resolv.conf] Ignored after mxgw_doctor_set_resolver().
   */
  MXGW_DOCTOR_OPT_DNS_SERVER = 10,
  /** Backend probe delivery: send one small message to this recipient
   *  (LHLO only when unset). */
  MXGW_DOCTOR_OPT_PROBE_RCPT = 11,
  /** Sender of the probe delivery and of the MAIL command on submission
   *  listeners. ["postmaster@DOMAIN"] */
  MXGW_DOCTOR_OPT_PROBE_SENDER = 12,
  /** Round trip: send a test message to this recipient through the first
   *  smtp (or smtps) listener and wait for its delivery line in LOG_FILE. */
  MXGW_DOCTOR_OPT_ROUND_TRIP_RCPT = 13,
  /** The gateway's log file (mxgwd's "text" or "json" format: a line with
   *  the queue ID and status=sent / "status":"sent"). */
  MXGW_DOCTOR_OPT_LOG_FILE = 14
} mxgw_doctor_opt_str;

/** Integer options (mxgw_doctor_set_int). Defaults in brackets. */
typedef enum mxgw_doctor_opt {
  /** Time limit of each network step (connect, a reply, a handshake, a
   *  DNS lookup), ms, 1..600000. [5000] */
  MXGW_DOCTOR_OPT_TIMEOUT_MS = 100,
  /** A self-signed certificate is a warning (1) instead of a failure. [0]
   */
  MXGW_DOCTOR_OPT_ALLOW_SELF_SIGNED = 101,
  /** Certificate expiry: warn below this many days left. [21] */
  MXGW_DOCTOR_OPT_EXPIRY_WARN_DAYS = 102,
  /** Queue: a deferred message older than this many seconds is a failure
   *  (younger ones a warning). [3600] */
  MXGW_DOCTOR_OPT_DEFERRED_FAIL_AGE = 103,
  /** Seconds since the epoch for ages and days left; 0 reads the clock. [0]
   */
  MXGW_DOCTOR_OPT_NOW = 104,
  /** Round trip: how long to wait for the delivery line, ms. [30000] */
  MXGW_DOCTOR_OPT_ROUND_TRIP_WAIT_MS = 105
} mxgw_doctor_opt;

/**
 * Create a doctor with no options set.
 * Errors: MXGW_E_INVAL (NULL out), MXGW_E_NOMEM.
 * Ownership: free with mxgw_doctor_free().
 */
MXGW_EXTERN int mxgw_doctor_new(mxgw_doctor **out, const mxgw_mem *mem);

/** Free a doctor and its findings. NULL is a no-op. */
MXGW_EXTERN void mxgw_doctor_free(mxgw_doctor *d);

/**
 * Set (or, for repeatable options, add) a string option. NULL clears it
 * (every value of a repeatable option).
 * Errors: MXGW_E_INVAL (unknown key; a public IP that is not an address; a
 * listener, backend or DNS server that does not parse: the detail is in
 * mxgw_doctor_errmsg()), MXGW_E_RANGE (more than 16 values), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_doctor_set_str(mxgw_doctor *d, int key,
                                    const char *value);

/** Set an integer option. Errors: MXGW_E_INVAL (unknown key),
 *  MXGW_E_RANGE. */
MXGW_EXTERN int mxgw_doctor_set_int(mxgw_doctor *d, int key, int64_t value);

/**
 * Use this resolver for DNS and SPF instead of creating a c-ares one (for
 * example a static resolver loaded from a zone file, to check a record
 * before publishing it). Borrowed: it must outlive the doctor's runs.
 * NULL goes back to c-ares. Errors: MXGW_E_INVAL (NULL d).
 */
MXGW_EXTERN int mxgw_doctor_set_resolver(mxgw_doctor *d, mxgw_resolver *r);

/**
 * Run the checks selected by `checks` (mxgw_doctor_check bits) whose
 * options are set, replacing the findings of an earlier run. Blocks.
 * @return the worst status (mxgw_doctor_status, >= 0) or an error:
 * MXGW_E_INVAL (NULL d), MXGW_E_STATE (nothing to check: no option set
 * for any selected check), MXGW_E_DNS (the c-ares resolver could not be
 * created), MXGW_E_NOMEM. Problems found are findings, not errors.
 */
MXGW_EXTERN int mxgw_doctor_run(mxgw_doctor *d, int checks);

/** Number of findings of the last run. */
MXGW_EXTERN size_t mxgw_doctor_count(const mxgw_doctor *d);

/** Keys of a finding. Strings: mxgw_doctor_get_str(); integers:
 *  mxgw_doctor_get_int(). */
typedef enum mxgw_doctor_key {
  MXGW_DOCTOR_F_CHECK = 1,    /**< "dns", "spf", ... */
  MXGW_DOCTOR_F_CONCERNS = 2, /**< the identity / object examined */
  MXGW_DOCTOR_F_FINDING = 3,  /**< one line */
  MXGW_DOCTOR_F_FIX = 4,      /**< one line, "" when nothing to do */
  MXGW_DOCTOR_F_NOTE = 5,     /**< "" or a remark (not a problem) */
  MXGW_DOCTOR_F_DETAIL = 6,   /**< "" or lines joined by "\n" (SPF trace) */
  MXGW_DOCTOR_F_STATUS = 100, /**< mxgw_doctor_status */
  MXGW_DOCTOR_F_CHECK_ID = 101 /**< the mxgw_doctor_check bit */
} mxgw_doctor_key;

/** Errors: MXGW_E_INVAL (NULL pointers, unknown key), MXGW_E_RANGE (i). */
MXGW_EXTERN int mxgw_doctor_get_str(const mxgw_doctor *d, size_t i, int key,
                                    const char **ptr, size_t *len);
/** Errors: MXGW_E_INVAL, MXGW_E_RANGE. */
MXGW_EXTERN int mxgw_doctor_get_int(const mxgw_doctor *d, size_t i, int key,
                                    int64_t *out);

/**
 * The last run as one JSON object: {"status", "exit", "counts": {"ok",
 * "warn", "fail"}, "findings": [{"check", "status", "concerns", "finding",
 * "fix", "note", "detail": [lines]}]}.
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_doctor_json(mxgw_doctor *d, const char **ptr,
                                 size_t *len);

/** Detail of the last error (never NULL, "" if none). */
MXGW_EXTERN const char *mxgw_doctor_errmsg(const mxgw_doctor *d);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_DOCTOR_H */
