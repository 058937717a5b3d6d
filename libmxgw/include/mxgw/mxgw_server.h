/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server.h: the server layer. It owns the sockets, the event loop and
 * the threads, and wires the other components together into an inbound MX
 * gateway:
 *
 *   listeners (smtp / submission / smtps, STARTTLS policy, PROXY protocol)
 *     -> mxgw_session (one per connection, TLS from the listener's mxgw_tls)
 *     -> policies (accepted domains, limits, early talker, SPF at MAIL FROM
 *        through the c-ares resolver, application callbacks)
 *     -> mxgw_queue (the body streams into the spool with the Received and
 *        Received-SPF headers prepended; 250 only once the commit is durable)
 *     -> mxgw_deliver (its own thread: LMTP to the backends, retries).
 *
 * Two objects: a configuration (mxgw_server_config, built with setters and
 * frozen once a server uses it) and the server (mxgw_server).
 *
 * Two ways to run it:
 *
 *   - mxgw_server_run(): blocks and runs N event loops (threads; one per
 *     core by default), each with its own listening sockets on the same
 *     addresses (SO_REUSEPORT: the kernel spreads the connections), until
 *     mxgw_server_drain() or mxgw_server_stop() has completed.
 *
 *   - embedded: mxgw_server_start(), then the application's own loop
 *     watches mxgw_server_fd() (an epoll descriptor, readable when there is
 *     work) and calls mxgw_server_process() when it is readable or when
 *     mxgw_server_timeout_ms() has passed. One loop, on the application's
 *     thread.
 *
 * Either way the server also runs, on threads of its own: the queue's
 * commit workers, one delivery thread (mxgw_deliver_run()), and a small
 * pool of policy workers on which the application's callbacks run (they
 * may block: a Python function reading SQLite never stalls other sessions;
 * its answer is posted back to the session's loop).
 *
 * Nothing acknowledged is lost: "250 2.0.0 Ok: queued as ID" is sent only
 * after mxgw_queue_commit_async() reported the message durable; a failed
 * commit gives 451 4.3.0 (452 4.3.1 when the disk is full).
 *
 * Errors: as everywhere in libmxgw, 0 or a negative mxgw_err; the detail of
 * the last error of a handle is in mxgw_server_config_errmsg() /
 * mxgw_server_errmsg().
 *
 * Ownership: strings passed in are copied. Strings returned are owned by
 * the handle (see each function). Objects passed in (mxgw_tls contexts) are
 * referenced, not consumed: the caller still frees its own reference.
 *
 * Threading: a configuration is built on one thread; once frozen it is
 * read-only. A server is created, started, run, processed and freed on one
 * thread (the "owner"); mxgw_server_drain(), mxgw_server_stop(),
 * mxgw_server_reload() and mxgw_server_get_int() may be called from any
 * thread, and mxgw_server_drain() / mxgw_server_stop() also from a signal
 * handler (they only store an atomic flag and write to an eventfd).
 * Callbacks run on the threads documented at their typedef.
 */
#ifndef MXGW_SERVER_H
#define MXGW_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_server_config mxgw_server_config;
typedef struct mxgw_server mxgw_server;
typedef struct mxgw_server_req mxgw_server_req;
struct mxgw_tls; /* mxgw_tls.h */

/* ------------------------------------------------------------------------ */
/* Configuration keys                                                       */
/* ------------------------------------------------------------------------ */

/*
 * mxgw_server_config_set_int() takes three families of keys:
 *   - the session options of mxgw_session.h (mxgw_opt, 1..99: message
 *     size, recipients, error and junk-command limits, timeouts, bare
 *     newlines, SMTPUTF8, ...). They apply to the sessions of every
 *     listener. The TLS and AUTH options (MXGW_OPT_STARTTLS, _REQUIRE_TLS,
 *     _AUTH, _AUTH_PLAINTEXT, _REQUIRE_AUTH, _IMPLICIT_TLS) are derived
 *     from each listener's mode and TLS policy and cannot be set here.
 *   - the server options below (mxgw_server_opt, 1000..1999).
 * mxgw_server_config_set_str() takes MXGW_OPT_HOSTNAME and
 * MXGW_OPT_GREETING of mxgw_session.h, and mxgw_server_opt_str.
 * Delivery options go through mxgw_server_config_set_deliver_int().
 */

/** Actions for a policy decision (SPF results). */
typedef enum mxgw_server_action {
  MXGW_ACTION_ACCEPT = 0,   /**< go on (the Received-SPF header is added) */
  MXGW_ACTION_REJECT = 1,   /**< 5xx (SPF: 550 5.7.23 / 550 5.7.24) */
  MXGW_ACTION_TEMPFAIL = 2  /**< 4xx (SPF: 451 4.7.24) */
} mxgw_server_action;

/** Integer server options (mxgw_server_config_set_int). Defaults in
 *  brackets. */
typedef enum mxgw_server_opt {
  /** Most client connections at once, over all listeners and loops; more
   *  are answered "421 4.7.0 <host> Too many connections" and closed.
   *  [10000] */
  MXGW_SRV_OPT_MAX_CONNECTIONS = 1001,
  /** Most connections at once from one client IP address (IPv6: per /64);
   *  more get 421 4.7.0. 0 = no limit. [20] */
  MXGW_SRV_OPT_MAX_CONN_PER_IP = 1002,
  /** Most new connections per client IP address (IPv6: per /64) in any
   *  sliding minute (estimated from the current and the previous fixed
   *  minute, weighted by their overlap); more get 421 4.7.0. 0 = no
   *  limit. [0] */
  MXGW_SRV_OPT_CONN_RATE_PER_IP = 1003,
  /** Wait this long before the 220 greeting (ms). A client that talks
   *  before the greeting is an early talker: 554 5.5.1 and the connection
   *  is closed (Postfix postscreen's pregreet test). A client that hangs
   *  up during the delay without a word is closed at once (logged at info
   *  level), releasing its connection slots. 0 = greet at once
   *  (on a PROXY listener, SMTP bytes that came with the PROXY header are
   *  still refused as early talk). [0] */
  MXGW_SRV_OPT_GREETING_DELAY_MS = 1004,
  /** SPF check of MAIL FROM (the HELO identity for the null sender): 1 on,
   *  0 off. Needs a resolver (MXGW_SRV_OPT_DNS_SERVERS, or
   *  /etc/resolv.conf). [0] */
  MXGW_SRV_OPT_SPF = 1005,
  /** Give up an SPF check after this many ms: the result is temperror.
   *  [20000] */
  MXGW_SRV_OPT_SPF_TIMEOUT_MS = 1006,
  /** The action for each SPF result: key MXGW_SRV_OPT_SPF_ACTION +
   *  mxgw_spf_result (MXGW_SPF_NONE .. MXGW_SPF_PERMERROR), value an
   *  mxgw_server_action. Defaults: fail REJECT (550 5.7.23), temperror
   *  TEMPFAIL (451 4.7.24), every other result ACCEPT. A REJECT of
   *  permerror gives 550 5.7.24; a REJECT of softfail, neutral or none
   *  550 5.7.23; a TEMPFAIL of any result 451 4.7.24. Accepted messages
   *  carry a Received-SPF header. */
  MXGW_SRV_OPT_SPF_ACTION = 1010, /* .. 1016 */
  /** Policy worker threads that run the application's callbacks (1..256).
   *  0 runs callbacks inline on the loop thread (only for callbacks that
   *  never block). [4] */
  MXGW_SRV_OPT_POLICY_WORKERS = 1020,
  /** A callback that has not answered after this many ms: the session gets
   *  451 4.3.0 and the late answer is dropped. 0 = wait for ever. [60000] */
  MXGW_SRV_OPT_POLICY_TIMEOUT_MS = 1021,
  /** Queue durability (MXGW_QOPT_SYNC): 1 fsync, 0 none (tests only). [1] */
  MXGW_SRV_OPT_QUEUE_SYNC = 1030,
  /** Queue commit workers (MXGW_QOPT_ASYNC_WORKERS), >= 1. [4] */
  MXGW_SRV_OPT_QUEUE_WORKERS = 1031,
  /** The queue's incoming journal (MXGW_QOPT_JOURNAL): messages up to
   *  MXGW_SRV_OPT_QUEUE_JOURNAL_MAX_BODY octets are committed by appending
   *  them to a journal segment (one write and one fdatasync per group
   *  commit) instead of creating files; 0 = two files per message. [1] */
  MXGW_SRV_OPT_QUEUE_JOURNAL = 1033,
  /** Largest body committed to the journal, octets (buffered in memory
   *  while it is received). [1048576] */
  MXGW_SRV_OPT_QUEUE_JOURNAL_MAX_BODY = 1034,
  /** Run the delivery thread (1), or only queue (0: another process, e.g.
   *  a second mxgwd or `mxgw-queue`, delivers). [1] */
  MXGW_SRV_OPT_DELIVER = 1032,
  /** Log every command and reply (debug level). [0] */
  MXGW_SRV_OPT_LOG_PROTOCOL = 1040,
  /** listen() backlog. [511] */
  MXGW_SRV_OPT_BACKLOG = 1041,
  /** Time allowed for a PROXY protocol header after connect, ms. [10000] */
  MXGW_SRV_OPT_PROXY_TIMEOUT_MS = 1042,
  /** Authenticated clients (AUTH) may send to any domain (1), or only to
   *  accepted domains like everyone else (0). [1] */
  MXGW_SRV_OPT_AUTH_RELAY = 1043,
  /** How long mxgw_server_drain() waits when given a negative timeout, ms.
   *  [30000] */
  MXGW_SRV_OPT_DRAIN_TIMEOUT_MS = 1044,
  /** Check the listeners' certificate files for changes at most this often
   *  (mxgw_tls_check_reload()), ms; 0 = only on mxgw_server_reload().
   *  Each listener's TLS context has its own minimum interval too
   *  (MXGW_TLS_RELOAD_INTERVAL_MS, 60 s by default): set it as low on the
   *  context for a shorter check to take effect. [60000] */
  MXGW_SRV_OPT_TLS_CHECK_MS = 1045,
  /** Recipient verification at RCPT TO (after the accepted domains):
   *  0 none (the backend decides at delivery; an unknown user bounces);
   *  1 LMTP probe: a backend (the delivery backends, in order) is asked
   *  "MAIL FROM:<> RCPT TO:<addr>" and the session answers as it did: 2xx
   *  accept, 5xx "550 5.1.1 <addr>: Recipient address rejected: <backend
   *  text>", 4xx or no backend reachable "451 4.4.3 <addr>: Recipient
   *  address verification unavailable". Probes run on the policy workers
   *  (inline on the loop thread when there are none) and their results are
   *  cached, shared by the loops. [0] */
  MXGW_SRV_OPT_RCPT_VERIFY = 1046,
  /** Cache lifetime of a positive (2xx) probe result, seconds; 0 = no
   *  caching. [600] */
  MXGW_SRV_OPT_VERIFY_TTL = 1047,
  /** Cache lifetime of a negative (5xx) probe result, seconds. Temporary
   *  failures are never cached. [60] */
  MXGW_SRV_OPT_VERIFY_NEG_TTL = 1048,
  /** Time allowed for one probe (connect and every reply), ms. [10000] */
  MXGW_SRV_OPT_VERIFY_TIMEOUT_MS = 1049,
  /** Proxy (before-queue) mode, for every listener: 0 spools (the queue
   *  and the delivery thread, the default); 1 couples each session to an
   *  mxgw_proxy (mxgw_proxy.h) speaking LMTP to the backends (the first
   *  that accepts a connection, the others are fallbacks), connected at
   *  the session's first MAIL: the backend's MAIL and RCPT replies are the
   *  session's, and the reply after DATA is given only once the backend
   *  answered for every recipient. Nothing is spooled (no queue ID: the
   *  logs say NOQUEUE, "proxy-accept" / "proxy-reject"). A backend that
   *  cannot be reached gives 451 4.4.1 at MAIL; one lost later 451 4.4.2.
   *  The accepted domains, SPF, the recipient probe and the callbacks
   *  still decide first (MAIL and RCPT reach the backend only once they
   *  accepted; a callback's 2xx at MAIL, RCPT or MESSAGE_END means
   *  "accept", the backend's reply is sent). The delivery timeouts
   *  MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS (per backend tried),
   *  _COMMAND_TIMEOUT_MS and _DATA_TIMEOUT_MS bound the backend, XCLIENT
   *  follows MXGW_DELIVER_OPT_XCLIENT; no STARTTLS to the backend
   *  (MXGW_DELIVER_OPT_STARTTLS 2 is refused by mxgw_server_new()). The spool
   *  is still opened (and the delivery thread still delivers what an
   *  earlier spooling run left there). See docs/server.md "Proxy mode".
   *  [0] */
  MXGW_SRV_OPT_PROXY_MODE = 1050
} mxgw_server_opt;

/** String server options (mxgw_server_config_set_str). */
typedef enum mxgw_server_opt_str {
  /** Spool directory (mxgw_queue), created if missing. Required. */
  MXGW_SRV_OPT_SPOOL_DIR = 1100,
  /** DNS servers for SPF, as mxgw_resolver_new_ares()'s "servers=":
   *  "IP[:PORT][,IP[:PORT]...]". [""; /etc/resolv.conf] */
  MXGW_SRV_OPT_DNS_SERVERS = 1101,
  /** Further c-ares options, "key=value;key=value" (timeout_ms, tries,
   *  cache_size, negative_ttl; see mxgw_resolver_new_ares()). [""] */
  MXGW_SRV_OPT_DNS_OPTIONS = 1102
} mxgw_server_opt_str;

/** Listener modes (mxgw_server_config_add_listener). */
typedef enum mxgw_listen_mode {
  /** Port 25: STARTTLS offered per the TLS policy; no AUTH. */
  MXGW_LISTEN_SMTP = 1,
  /** Port 587: AUTH offered, and only over TLS (AUTH and MAIL before TLS
   *  get 530 5.7.0); MAIL requires AUTH. TLS policy at least "may". */
  MXGW_LISTEN_SUBMISSION = 2,
  /** Port 465: implicit TLS (RFC 8314), AUTH offered as on submission.
   *  Needs a TLS context. */
  MXGW_LISTEN_SMTPS = 3
} mxgw_listen_mode;

/** TLS policies of a listener (MXGW_LISTENER_TLS). */
typedef enum mxgw_tls_policy {
  MXGW_TLS_POLICY_NONE = 0,    /**< no STARTTLS */
  MXGW_TLS_POLICY_MAY = 1,     /**< STARTTLS offered (needs a context) */
  MXGW_TLS_POLICY_ENCRYPT = 2  /**< STARTTLS required before MAIL (530
                                    5.7.0) */
} mxgw_tls_policy;

/** Integer listener options (mxgw_server_config_listener_set_int). */
typedef enum mxgw_listener_opt {
  /** mxgw_tls_policy. [MAY if a TLS context is set, else NONE; smtps
   *  always has implicit TLS] */
  MXGW_LISTENER_TLS = 1,
  /** Expect a PROXY protocol header (HAProxy v1 or v2) before SMTP, and
   *  use the client address it carries everywhere (limits, logs, SPF,
   *  Received, XCLIENT to the backend). A connection without a valid
   *  header is closed. [0] */
  MXGW_LISTENER_PROXY = 2,
  /** Allow AUTH without TLS on this listener (testing only). [0] */
  MXGW_LISTENER_AUTH_PLAINTEXT = 3
} mxgw_listener_opt;

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                */
/* ------------------------------------------------------------------------ */

/** Log levels of mxgw_server_log_fn. */
typedef enum mxgw_server_log_level {
  MXGW_SRV_LOG_DEBUG = 0,   /**< protocol trace (MXGW_SRV_OPT_LOG_PROTOCOL) */
  MXGW_SRV_LOG_INFO = 1,    /**< connect, disconnect, from=, status=sent */
  MXGW_SRV_LOG_NOTICE = 2,  /**< rejections, deferrals, bounces */
  MXGW_SRV_LOG_WARNING = 3, /**< limits hit, TLS failures, queue errors */
  MXGW_SRV_LOG_ERROR = 4    /**< failures of the server itself */
} mxgw_server_log_level;

/**
 * The log hook: one Postfix-style line (no newline, NUL-terminated,
 * borrowed for the call), e.g.
 *   "connect from unknown[127.0.0.1]"
 *   "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <a@b.c>:
 *    Relay access denied; from=<x@y.z> to=<a@b.c> proto=ESMTP helo=<h>"
 *   "3F2A...: client=unknown[127.0.0.1]"
 *   "3F2A...: from=<x@y.z>, size=1234, nrcpt=1 (queue active)"
 *   "3F2A...: to=<a@b.c>, relay=127.0.0.1[127.0.0.1]:24, ..., status=sent
 *    (250 2.0.0 <a@b.c> Saved)" (from mxgw_deliver)
 *   "disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1
 *    commands=5"
 * Context: called from the loop threads, the delivery thread and the
 * policy workers, but never twice at once (the server serializes the
 * calls). It must not call mxgw_server functions other than
 * mxgw_server_drain(), mxgw_server_stop() and mxgw_server_get_int().
 */
typedef void (*mxgw_server_log_fn)(void *user, int level, const char *line);

/** Decision stages for policy callbacks (mxgw_server_config_set_policy). */
typedef enum mxgw_server_stage {
  MXGW_STAGE_CONNECT = 1,     /**< a client connected (after the built-in
                                   limits); default reply to reject 554 */
  MXGW_STAGE_HELO = 2,        /**< HELO/EHLO */
  MXGW_STAGE_AUTH = 3,        /**< AUTH credentials: without a callback
                                   every AUTH fails (535 5.7.8) */
  MXGW_STAGE_MAIL = 4,        /**< MAIL FROM (after SPF) */
  MXGW_STAGE_RCPT = 5,        /**< RCPT TO (after the accepted domains) */
  MXGW_STAGE_MESSAGE_END = 6  /**< the message is complete and in the spool
                                   (not yet committed): reject to drop it
                                   (proxy mode: streamed to the backend,
                                   the final dot not yet sent) */
} mxgw_server_stage;

/**
 * A policy callback. It reads the request with the mxgw_server_req_*
 * getters and answers:
 *   - return MXGW_OK without calling mxgw_server_req_reply(): accept (the
 *     built-in default reply);
 *   - call mxgw_server_req_reply() and return MXGW_OK: that reply (a 4xx or
 *     5xx rejects; a 421 also closes the connection);
 *   - return a negative value (the callback failed, e.g. a Python
 *     exception): 451 4.3.0 and a warning is logged.
 * Context: runs on a policy worker thread (MXGW_SRV_OPT_POLICY_WORKERS;
 * callbacks of different sessions may run at the same time on different
 * workers: a callback that is not thread-safe needs POLICY_WORKERS 1), or
 * on the loop thread when POLICY_WORKERS is 0. It may block; the session
 * waits (its other input stays buffered), other sessions go on. The
 * request is valid only during the call. It must not call other
 * mxgw_server functions than mxgw_server_drain(), mxgw_server_stop() and
 * mxgw_server_get_int().
 */
typedef int (*mxgw_server_policy_fn)(void *user, mxgw_server_req *req);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/**
 * Create a configuration with the defaults above (no listeners, no
 * domains: every domain is accepted; no backends).
 * Errors: MXGW_E_INVAL (out NULL), MXGW_E_NOMEM.
 * Ownership: the caller owns one reference (mxgw_server_config_free());
 * servers hold their own.
 */
MXGW_EXTERN int mxgw_server_config_new(mxgw_server_config **out,
                                       const mxgw_mem *mem);

/** Release the caller's reference. NULL is a no-op. Any thread. */
MXGW_EXTERN void mxgw_server_config_free(mxgw_server_config *cfg);

/**
 * Set an integer option: a session option (mxgw_opt) or a server option
 * (mxgw_server_opt).
 * Errors: MXGW_E_INVAL (unknown key, or a TLS/AUTH session option that is
 * derived from the listeners), MXGW_E_RANGE, MXGW_E_BUSY (frozen: a server
 * uses it).
 */
MXGW_EXTERN int mxgw_server_config_set_int(mxgw_server_config *cfg, int key,
                                           int64_t value);

/** Read an integer option (as set, or its default).
 *  Errors: MXGW_E_INVAL (unknown key, NULL out). */
MXGW_EXTERN int mxgw_server_config_get_int(const mxgw_server_config *cfg,
                                           int key, int64_t *out);

/**
 * Set a string option (copied): MXGW_OPT_HOSTNAME (also used for LHLO, the
 * Received header and SPF's receiver), MXGW_OPT_GREETING, mxgw_server_opt_str.
 * Errors: MXGW_E_INVAL (unknown key, NULL, bad host name), MXGW_E_BUSY,
 * MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_config_set_str(mxgw_server_config *cfg, int key,
                                           const char *value);

/**
 * Add a listener.
 * @param addr  numeric address to bind: "0.0.0.0", "::", "127.0.0.1",
 *              "::1" (no host names).
 * @param port  0..65535; 0 picks a free port (read it back with
 *              mxgw_server_listener_port()).
 * @param mode  an mxgw_listen_mode.
 * @return the listener's index (>= 0; the first is 0), or an error:
 *         MXGW_E_INVAL (bad address, port or mode), MXGW_E_RANGE (more than
 *         64 listeners), MXGW_E_BUSY, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_config_add_listener(mxgw_server_config *cfg,
                                                const char *addr, int port,
                                                int mode);

/** Set a listener option (mxgw_listener_opt) of listener idx.
 *  Errors: MXGW_E_INVAL (key), MXGW_E_RANGE (idx or value), MXGW_E_BUSY. */
MXGW_EXTERN int mxgw_server_config_listener_set_int(mxgw_server_config *cfg,
                                                    int idx, int key,
                                                    int64_t value);

/**
 * Attach a server TLS context (loaded: mxgw_tls_reload() succeeded) to
 * listener idx; NULL detaches. A reference is kept. Each new session takes
 * the context's current generation, so certificates renewed through
 * mxgw_tls_reload() (or mxgw_server_reload(), or the periodic file check
 * MXGW_SRV_OPT_TLS_CHECK_MS) reach new sessions without a restart.
 * Errors: MXGW_E_INVAL, MXGW_E_RANGE (idx), MXGW_E_BUSY.
 */
MXGW_EXTERN int mxgw_server_config_listener_set_tls(mxgw_server_config *cfg,
                                                    int idx,
                                                    struct mxgw_tls *tls);

/**
 * Add an accepted domain (case-insensitive). "example.org" matches that
 * domain only; ".example.org" matches its subdomains. RCPT TO for other
 * domains gets "554 5.7.1 <addr>: Relay access denied" (except from
 * authenticated clients with MXGW_SRV_OPT_AUTH_RELAY). With no domain
 * added, every domain is accepted. "postmaster" without a domain is
 * always accepted (RFC 5321 4.5.1).
 * Errors: MXGW_E_INVAL (not a domain), MXGW_E_BUSY, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_config_add_domain(mxgw_server_config *cfg,
                                              const char *domain);

/**
 * Append an LMTP backend for delivery (mxgw_deliver_add_backend() syntax:
 * "host:port", "[v6]:port", "unix:/path"); the first that accepts a
 * connection is used, the others are fallbacks.
 * Errors: MXGW_E_INVAL, MXGW_E_RANGE (more than 16), MXGW_E_BUSY,
 * MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_config_add_backend(mxgw_server_config *cfg,
                                               const char *target);

/**
 * Set a delivery option (mxgw_deliver_opt of mxgw_deliver.h: concurrency,
 * backoff, lifetime, LMTP timeouts, XCLIENT, bounce policy, poll interval,
 * delay warning).
 * Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE, MXGW_E_BUSY.
 */
MXGW_EXTERN int mxgw_server_config_set_deliver_int(mxgw_server_config *cfg,
                                                   int key, int64_t value);

/**
 * Set a delivery string option (mxgw_deliver_opt_str of mxgw_deliver.h:
 * MXGW_DELIVER_OPT_BOUNCE_RCPT, MXGW_DELIVER_OPT_TLS_SERVERNAME; the LHLO
 * name is MXGW_OPT_HOSTNAME). Copied.
 * Errors: MXGW_E_INVAL (unknown key, NULL, control characters),
 * MXGW_E_BUSY, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_config_set_deliver_str(mxgw_server_config *cfg,
                                                   int key,
                                                   const char *value);

/**
 * A client TLS context for STARTTLS to the LMTP backends
 * (MXGW_DELIVER_OPT_STARTTLS); a reference is kept, NULL detaches.
 * Errors: MXGW_E_INVAL, MXGW_E_BUSY.
 */
MXGW_EXTERN int mxgw_server_config_set_deliver_tls(mxgw_server_config *cfg,
                                                   struct mxgw_tls *tls);

/**
 * Set the log hook (NULL: no logging).
 * Errors: MXGW_E_INVAL, MXGW_E_BUSY.
 */
MXGW_EXTERN int mxgw_server_config_set_log(mxgw_server_config *cfg,
                                           mxgw_server_log_fn fn, void *user);

/**
 * Set (or with fn NULL remove) the policy callback of a stage.
 * Errors: MXGW_E_INVAL (unknown stage), MXGW_E_BUSY.
 */
MXGW_EXTERN int mxgw_server_config_set_policy(mxgw_server_config *cfg,
                                              int stage,
                                              mxgw_server_policy_fn fn,
                                              void *user);

/** Detail of the last error on this configuration ("" if none). Owned by
 *  the configuration, valid until its next call. */
MXGW_EXTERN const char *mxgw_server_config_errmsg(
    const mxgw_server_config *cfg);

/* ------------------------------------------------------------------------ */
/* Policy requests (inside a policy callback only)                          */
/* ------------------------------------------------------------------------ */

/** Keys for mxgw_server_req_get_str() (1..99) and _get_int() (100..). */
typedef enum mxgw_server_req_key {
  MXGW_REQ_CLIENT_ADDR = 1,   /**< client IP (the PROXY header's source on
                                   PROXY listeners) */
  MXGW_REQ_CLIENT_HOST = 2,   /**< client host name, "unknown" */
  MXGW_REQ_HELO = 3,          /**< HELO/EHLO argument (NULL before) */
  MXGW_REQ_MAIL_FROM = 4,     /**< reverse path, "" for <> (MAIL and later) */
  MXGW_REQ_RCPT = 5,          /**< the recipient being decided (RCPT) */
  MXGW_REQ_QUEUE_ID = 6,      /**< queue ID (MESSAGE_END) */
  MXGW_REQ_SPF_RESULT = 7,    /**< "pass", "fail", ... (MAIL and later, when
                                   SPF is on) */
  MXGW_REQ_AUTH_MECH = 8,     /**< AUTH: "PLAIN" or "LOGIN" */
  MXGW_REQ_AUTH_USER = 9,     /**< AUTH: the authentication identity; later
                                   stages: the authenticated user */
  MXGW_REQ_AUTH_PASSWORD = 10,/**< AUTH only */
  MXGW_REQ_TLS_PROTOCOL = 11, /**< e.g. "TLSv1.3" (NULL without TLS) */
  MXGW_REQ_TLS_CIPHER = 12,
  MXGW_REQ_LOCAL_ADDR = 13,   /**< the address the client connected to */
  MXGW_REQ_STAGE = 100,       /**< mxgw_server_stage */
  MXGW_REQ_CLIENT_PORT = 101,
  MXGW_REQ_LISTENER = 102,    /**< listener index */
  MXGW_REQ_TLS = 103,         /**< 1 if TLS is active */
  MXGW_REQ_AUTHENTICATED = 104, /**< 1 after a successful AUTH */
  MXGW_REQ_RCPT_COUNT = 105,  /**< accepted recipients so far */
  MXGW_REQ_SIZE = 106,        /**< MAIL SIZE= (-1), or at MESSAGE_END the
                                   message size with our headers */
  MXGW_REQ_SPF = 107,         /**< mxgw_spf_result, -1 if not checked */
  MXGW_REQ_SESSION_ID = 108,  /**< unique per server, for correlation */
  MXGW_REQ_LOCAL_PORT = 109
} mxgw_server_req_key;

/**
 * A string item of the request, NUL-terminated, or NULL when it is not set
 * at this stage (or key is unknown). Ownership: the request's; valid until
 * the callback returns.
 */
MXGW_EXTERN const char *mxgw_server_req_get_str(const mxgw_server_req *req,
                                                int key);

/** An integer item (0 for unknown keys). */
MXGW_EXTERN int64_t mxgw_server_req_get_int(const mxgw_server_req *req,
                                            int key);

/** Accepted recipient idx (0 .. RCPT_COUNT-1) at MESSAGE_END (and the
 *  recipients accepted so far at RCPT), or NULL. Valid during the call. */
MXGW_EXTERN const char *mxgw_server_req_rcpt(const mxgw_server_req *req,
                                             size_t idx);

/**
 * Answer with a reply instead of accepting (see mxgw_session_reply() for
 * what is allowed at each stage). Calling it again replaces the answer.
 * @param code  200..599.
 * @param enh   "c.s.d" matching code's class, or NULL for a default.
 * @param text  NULL for a default; printable ASCII, "\n" between lines.
 * Errors: MXGW_E_INVAL (bad code, enhanced code or text), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_req_reply(mxgw_server_req *req, int code,
                                      const char *enh, const char *text);

/* ------------------------------------------------------------------------ */
/* The server                                                               */
/* ------------------------------------------------------------------------ */

/**
 * Create a server from a configuration. The configuration is validated
 * (at least one listener; a spool directory; smtps and TLS policies that
 * need a TLS context have one; backends when DELIVER or PROXY_MODE is on)
 * and frozen;
 * the server keeps a reference. Nothing is opened yet.
 * Errors: MXGW_E_INVAL (an invalid configuration: mxgw_server_errmsg()
 * names the problem; *out is then still set, so the message can be read,
 * and must be freed), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_server_new(mxgw_server **out, mxgw_server_config *cfg,
                                const mxgw_mem *mem);

/**
 * Stop everything at once (sessions are closed with 421 4.3.2 without
 * waiting; commits in flight complete first, so the queue is consistent),
 * join the threads, free. NULL is a no-op. Context: the owner thread, not
 * while mxgw_server_run() runs, and not while another thread may still be
 * inside mxgw_server_drain(), _stop(), _reload() or _get_int() on this
 * server (synchronize with that thread first: those calls read the server).
 */
MXGW_EXTERN void mxgw_server_free(mxgw_server *srv);

/**
 * Open the spool (with recovery), the resolver, the listening sockets
 * (loop 0), and start the queue, delivery and policy threads. Needed for
 * the embedded API; mxgw_server_run() calls it if it was not called.
 * Errors: MXGW_E_STATE (already started), MXGW_E_IO (a socket could not
 * be bound: mxgw_server_errmsg() names the address and errno text),
 * MXGW_E_BUSY (the spool is owned by another process), MXGW_E_PERM,
 * MXGW_E_DNS, MXGW_E_NOMEM, and the errors of mxgw_queue_open().
 */
MXGW_EXTERN int mxgw_server_start(mxgw_server *srv);

/**
 * Run until a drain or stop has completed. Starts the server if needed,
 * then runs `loops` event loops: loop 0 on the calling thread, the others
 * on threads of their own, each with its own listening sockets
 * (SO_REUSEPORT).
 * @param loops  number of loops; 0 = one per online CPU.
 * @return MXGW_OK after a completed drain/stop, or an error of
 *         mxgw_server_start(); MXGW_E_STATE if the embedded API was used
 *         (mxgw_server_process()) or run() already ran.
 * Context: the owner thread; blocks.
 */
MXGW_EXTERN int mxgw_server_run(mxgw_server *srv, int loops);

/**
 * Embedded: the descriptor to watch for reading (an epoll descriptor; it
 * becomes readable when mxgw_server_process() has work). -1 before
 * mxgw_server_start(). Owned by the server: do not close it.
 */
MXGW_EXTERN int mxgw_server_fd(const mxgw_server *srv);

/**
 * Embedded: milliseconds until mxgw_server_process() must be called even
 * if the descriptor is not readable; -1 = no timer, 0 = now.
 */
MXGW_EXTERN int mxgw_server_timeout_ms(mxgw_server *srv);

/**
 * Embedded: do the work that is ready (never blocks): accept, read, write,
 * timers, DNS, commit completions, policy answers.
 * @return 0 while running; 1 once a drain or stop has completed (then the
 *         server may be freed); or a negative error: MXGW_E_STATE (not
 *         started, or mxgw_server_run() is in use).
 * Context: the owner thread.
 */
MXGW_EXTERN int mxgw_server_process(mxgw_server *srv);

/**
 * Graceful drain: close the listening sockets at once (no new
 * connections), let sessions finish the transaction they are in, close
 * sessions that are between transactions with "421 4.3.2 <host> Service
 * shutting down", and when timeout_ms has passed 421 every session left
 * (a message whose commit is in flight still gets its 250 or 451 first:
 * nothing acknowledged is lost and the spool stays consistent). Then the
 * delivery thread finishes its current pass and stops, and run() returns
 * (process() returns 1).
 * @param timeout_ms  grace period; < 0 for MXGW_SRV_OPT_DRAIN_TIMEOUT_MS.
 * Errors: none (MXGW_OK; a second call only shortens the grace period).
 * Context: any thread, and async-signal-safe (it stores atomics and writes
 * to an eventfd), so mxgwd may call it from its SIGTERM handler.
 */
MXGW_EXTERN int mxgw_server_drain(mxgw_server *srv, int64_t timeout_ms);

/** drain(srv, 0): every session gets its 421 now. Any thread,
 *  async-signal-safe. */
MXGW_EXTERN int mxgw_server_stop(mxgw_server *srv);

/**
 * Reload without dropping connections (SIGHUP). With cfg NULL: reload the
 * listeners' TLS certificates from their files (mxgw_tls_reload()). With a
 * configuration: also take its policies, limits, accepted domains, SPF
 * settings, session options, callbacks and log hook, and its listeners' TLS
 * contexts, for sessions that connect from now on (sessions in progress
 * keep the configuration they started with). The new configuration must
 * have the same listeners (address, port, mode, PROXY flag, in the same
 * order); the spool, DNS servers, backends and delivery options are not
 * changed by a reload (a warning is logged when they differ). The new
 * configuration is frozen and referenced.
 * @return MXGW_OK, or an error with nothing changed: MXGW_E_INVAL (the
 *         listeners differ, or the configuration is invalid; see
 *         mxgw_server_errmsg()), MXGW_E_STATE (not started); a certificate
 *         that fails to reload is logged (warning) and keeps serving the
 *         old one, and the call returns MXGW_E_TLS after applying the rest.
 * Context: any thread except from inside a callback; not from a signal
 * handler (use a self-pipe or signalfd to get to a thread).
 */
MXGW_EXTERN int mxgw_server_reload(mxgw_server *srv, mxgw_server_config *cfg);

/**
 * The port listener idx is bound to (useful with port 0). Negative error:
 * MXGW_E_RANGE (idx), MXGW_E_STATE (not started).
 */
MXGW_EXTERN int mxgw_server_listener_port(const mxgw_server *srv, int idx);

/** Counters for mxgw_server_get_int() (since start unless noted). */
typedef enum mxgw_server_stat {
  MXGW_SRV_STAT_CONNECTIONS = 2000,  /**< connections accepted */
  MXGW_SRV_STAT_SESSIONS = 2001,     /**< sessions open now */
  MXGW_SRV_STAT_REFUSED = 2002,      /**< connections refused by a limit */
  MXGW_SRV_STAT_MESSAGES = 2003,     /**< messages queued (250 sent) */
  MXGW_SRV_STAT_COMMIT_ERRORS = 2004,/**< commits that failed (451/452) */
  MXGW_SRV_STAT_REJECTED_RCPT = 2005,/**< RCPTs refused (domains, policy) */
  MXGW_SRV_STAT_SPF_CHECKS = 2006,   /**< SPF checks started */
  MXGW_SRV_STAT_POLICY_CALLS = 2007, /**< policy callbacks run */
  MXGW_SRV_STAT_EARLY_TALKERS = 2008,/**< clients that talked too early */
  MXGW_SRV_STAT_LOOPS = 2009,        /**< event loops running */
  MXGW_SRV_STAT_DRAINING = 2010,     /**< 1 once a drain started */
  MXGW_SRV_STAT_RELOADS = 2011,      /**< successful mxgw_server_reload() */
  MXGW_SRV_STAT_DELIVERED = 2012,    /**< recipients delivered (deliver's
                                          MXGW_DELIVER_STAT_SENT) */
  MXGW_SRV_STAT_PROXY_ERRORS = 2013, /**< bad or missing PROXY headers */
  MXGW_SRV_STAT_VERIFY_PROBES = 2014,/**< recipient probes sent to a
                                          backend */
  MXGW_SRV_STAT_VERIFY_CACHED = 2015 /**< RCPTs answered from the
                                          verification cache */
} mxgw_server_stat;

/** Read a counter (mxgw_server_stat) or an option of the current
 *  configuration. Errors: MXGW_E_INVAL (unknown key, NULL out). Context: any
 *  thread. */
MXGW_EXTERN int mxgw_server_get_int(mxgw_server *srv, int key, int64_t *out);

/** Detail of the last error of a call on the owner thread ("" if none);
 *  owned by the server, valid until its next call. */
MXGW_EXTERN const char *mxgw_server_errmsg(const mxgw_server *srv);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_SERVER_H */
