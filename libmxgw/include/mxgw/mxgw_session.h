/* SPDX-License-Identifier: MIT */
/*
 * mxgw_session.h: the sans-IO SMTP server session engine (RFC 5321 with
 * PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, DSN,
 * STARTTLS and AUTH PLAIN/LOGIN).
 *
 * The session does no I/O and reads no clock. The application owns the
 * socket and the event loop:
 *
 *   - bytes from the client go in with mxgw_session_feed();
 *   - bytes for the client come out with mxgw_session_output() and are
 *     released with mxgw_session_consume() (partial writes are fine);
 *   - the current time (any monotonic clock, in milliseconds) is passed in,
 *     and mxgw_session_deadline() says when mxgw_session_tick() is due;
 *   - mxgw_session_want() says whether to read, write, or close.
 *
 * Everything the application must know or decide comes out as events,
 * pulled one at a time with mxgw_session_next_event(). Decision events
 * (CONNECT, HELO, STARTTLS, AUTH, MAIL, RCPT, DATA, MESSAGE_END) stop the
 * session until the application answers with mxgw_session_accept() or
 * mxgw_session_reply(); it may answer at once or much later (after an SPF or
 * LMTP check). Until then, pipelined input stays buffered and replies keep
 * their order. Information events (BODY, MESSAGE_ABORT, RSET, CLOSE) need no
 * answer. A typical loop:
 *
 *     n = mxgw_session_feed(s, buf, len, now);     // may take fewer bytes
 *     while ((ev = mxgw_session_next_event(s)) > 0) {
 *       switch (ev) {
 *       case MXGW_EV_RCPT: ... mxgw_session_accept(s); break;
 *       case MXGW_EV_BODY: mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &l);
 *                          write(fd, p, l); break;
 *       ...
 *       }
 *     }
 *     while (mxgw_session_output(s, &p, &l) == 0 && l) { send; consume }
 *
 * This pull style needs no callbacks, which is what lets SWIG bind it for
 * Python and Go. The only callback is the optional log hook.
 *
 * Ownership: strings returned through `const char **ptr, size_t *len` point
 * into session memory. They are not NUL-terminated unless stated, and stay
 * valid until the next call to mxgw_session_feed(), mxgw_session_next_event(),
 * mxgw_session_tick(), a decision call, or mxgw_session_free(). Strings passed
 * in are copied before the call returns.
 *
 * Threading: one session is used by one thread at a time. A frozen
 * mxgw_session_config may be shared by sessions on any thread.
 */
#ifndef MXGW_SESSION_H
#define MXGW_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_session_config mxgw_session_config;
typedef struct mxgw_session mxgw_session;
struct mxgw_tls; /* mxgw_tls.h */

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/** Integer options for mxgw_session_config_set_int(). Defaults in brackets. */
typedef enum mxgw_opt {
  /** Maximum message size in octets; advertised as SIZE. 0 = no limit.
   *  [67108864] */
  MXGW_OPT_MAX_MESSAGE_SIZE = 1,
  /** Maximum accepted recipients per message; more get 452 4.5.3. [1000] */
  MXGW_OPT_MAX_RECIPIENTS = 2,
  /** Maximum messages per connection; MAIL past it gets 452 4.5.3. [1000] */
  MXGW_OPT_MAX_MESSAGES = 3,
  /** Maximum command line, octets including CRLF. RFC 5321 4.5.3.1.4 gives
   *  512; ESMTP parameters (DSN, AUTH=, SIZE) need more. >= 512. [2048] */
  MXGW_OPT_MAX_COMMAND_LINE = 4,
  /** Maximum text line in DATA, octets including CRLF (RFC 5321
   *  4.5.3.1.6). A longer line fails the message with 554 5.6.0. 0 = no
   *  limit. Not applied to BDAT. [1000] */
  MXGW_OPT_MAX_TEXT_LINE = 5,
  /** Protocol errors (4xx/5xx replies to the client's mistakes) before the
   *  session is closed with 421 4.7.0. [20] */
  MXGW_OPT_MAX_ERRORS = 6,
  /** Unrecognised commands before 421 4.7.0. [10] */
  MXGW_OPT_MAX_UNKNOWN_COMMANDS = 7,
  /** NOOP, RSET, VRFY and HELP ("junk", counted anywhere, as Postfix's
   *  smtpd_junk_command_limit) before 421 4.7.0. [100] */
  MXGW_OPT_MAX_JUNK_COMMANDS = 8,
  /** Idle timeout waiting for a command, in ms (RFC 5321 4.5.3.2.7). [300000] */
  MXGW_OPT_COMMAND_TIMEOUT_MS = 9,
  /** Timeout between data blocks in DATA/BDAT, in ms (4.5.3.2.5). [180000] */
  MXGW_OPT_DATA_TIMEOUT_MS = 10,
  /** Bare LF / bare CR policy: MXGW_BARE_REJECT or MXGW_BARE_NORMALIZE.
   *  [MXGW_BARE_REJECT] */
  MXGW_OPT_BARE_NEWLINE = 11,
  /** Offer STARTTLS (1) or not (0). [0] */
  MXGW_OPT_STARTTLS = 12,
  /** Require TLS before MAIL (530 5.7.0), as a submission port does. [0] */
  MXGW_OPT_REQUIRE_TLS = 13,
  /** Offer AUTH PLAIN LOGIN (1) or not (0). [0] */
  MXGW_OPT_AUTH = 14,
  /** Allow AUTH over a connection without TLS. [0] */
  MXGW_OPT_AUTH_PLAINTEXT = 15,
  /** Require AUTH before MAIL (530 5.7.0). [0] */
  MXGW_OPT_REQUIRE_AUTH = 16,
  /** Advertise SMTPUTF8 (RFC 6531) and accept UTF-8 addresses with it. [1] */
  MXGW_OPT_SMTPUTF8 = 17,
  /** Advertise CHUNKING and accept BDAT (RFC 3030). A BDAT whose size
   *  cannot be parsed (or any BDAT with CHUNKING off) gets 501 5.5.4 (502
   *  5.5.1) and then 421: the octets that follow cannot be told from
   *  commands, so the session closes. [1] */
  MXGW_OPT_CHUNKING = 18,
  /** Advertise DSN and accept RET/ENVID/NOTIFY/ORCPT (RFC 3461). [1] */
  MXGW_OPT_DSN = 19,
  /** Advertise 8BITMIME (RFC 6152). [1] */
  MXGW_OPT_8BITMIME = 20,
  /** Advertise PIPELINING (RFC 2920). [1] */
  MXGW_OPT_PIPELINING = 21,
  /** Input buffer: how many unprocessed octets a session holds before it
   *  stops taking input (back-pressure); >= 16384. A session raises it to one more
   *  than the longest line it must accept (MAX_COMMAND_LINE, and 12288 for
   *  AUTH lines). [65536] */
  MXGW_OPT_INPUT_BUFFER = 22,
  /** Output buffer: when this many reply octets are waiting to be written,
   *  the session stops processing input until they are consumed; >= 4096.
   *  [65536] */
  MXGW_OPT_OUTPUT_BUFFER = 23,
  /** Disconnect clients that send HTTP/proxy requests (GET, POST, CONNECT,
   *  HEAD, PUT, "Host:") with 421 at once. [1] */
  MXGW_OPT_REJECT_HTTP = 24,
  /** The session is on an implicit-TLS (smtps, RFC 8314) connection: it
   *  starts in TLS and never offers STARTTLS. [0] */
  MXGW_OPT_IMPLICIT_TLS = 25
} mxgw_opt;

/** String options for mxgw_session_config_set_str(). */
typedef enum mxgw_opt_str {
  /** Our host name: greeting, EHLO reply, Received "by". ["localhost"] */
  MXGW_OPT_HOSTNAME = 100,
  /** Greeting text after the host name. ["ESMTP"] */
  MXGW_OPT_GREETING = 101
} mxgw_opt_str;

/** Values of MXGW_OPT_BARE_NEWLINE. */
typedef enum mxgw_bare_policy {
  /** Commands with a bare LF or CR get 500 5.5.2. A message containing one
   *  is read to the real <CRLF>.<CRLF> and refused with 550 5.5.2. */
  MXGW_BARE_REJECT = 0,
  /** Bare LF and bare CR are turned into CRLF, in commands and in data (as
   *  Postfix's smtpd_forbid_bare_newline=normalize). Only <CRLF>.<CRLF>
   *  ends DATA either way. */
  MXGW_BARE_NORMALIZE = 1
} mxgw_bare_policy;

/**
 * Create a session configuration with the defaults above.
 * @param out  receives the new configuration (reference count 1).
 * @param mem  allocator for the configuration, or NULL for malloc.
 * @return MXGW_OK.
 * Errors: MXGW_E_INVAL (out is NULL), MXGW_E_NOMEM.
 * Ownership: the caller owns one reference; release it with
 * mxgw_session_config_free(). Sessions hold their own references.
 */
MXGW_EXTERN int mxgw_session_config_new(mxgw_session_config **out,
                                        const mxgw_mem *mem);

/**
 * Release the caller's reference. The configuration is freed when its last
 * session is freed. NULL is a no-op. Context: any thread.
 */
MXGW_EXTERN void mxgw_session_config_free(mxgw_session_config *cfg);

/**
 * Set an integer option.
 * Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE (value out of range),
 * MXGW_E_BUSY (a session was created from it: it is frozen).
 */
MXGW_EXTERN int mxgw_session_config_set_int(mxgw_session_config *cfg, int key,
                                            int64_t value);

/** Read an integer option. Errors: MXGW_E_INVAL (unknown key or NULL out). */
MXGW_EXTERN int mxgw_session_config_get_int(const mxgw_session_config *cfg,
                                            int key, int64_t *out);

/**
 * Attach a TLS server context (mxgw_tls.h): the session then runs STARTTLS
 * (MXGW_OPT_STARTTLS) and implicit TLS (MXGW_OPT_IMPLICIT_TLS) itself,
 * through memory BIOs: the application feeds and sends wire bytes
 * (ciphertext) and sees no difference. Each handshake uses the context's
 * generation current at that moment, so a reload affects new sessions only.
 * Without a context, STARTTLS is the application's job
 * (mxgw_session_starttls_done()). The configuration keeps a reference; NULL
 * detaches.
 * Errors: MXGW_E_INVAL, MXGW_E_BUSY (frozen).
 */
MXGW_EXTERN int mxgw_session_config_set_tls(mxgw_session_config *cfg,
                                            struct mxgw_tls *tls);

/**
 * Set a string option (copied). MXGW_OPT_HOSTNAME must be a syntactically
 * valid domain or address literal.
 * Errors: MXGW_E_INVAL (unknown key, NULL or bad value), MXGW_E_BUSY,
 * MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_session_config_set_str(mxgw_session_config *cfg, int key,
                                            const char *value);

/* ------------------------------------------------------------------------ */
/* Session lifecycle and I/O                                                */
/* ------------------------------------------------------------------------ */

/**
 * Create a session for one client connection. The configuration is frozen
 * from now on and referenced by the session.
 * @param out  receives the session.
 * @param cfg  the configuration (not consumed; may be freed by the caller
 *             afterwards).
 * @param mem  allocator for this session, or NULL.
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_session_new(mxgw_session **out, mxgw_session_config *cfg,
                                 const mxgw_mem *mem);

/** Free a session and everything it owns. NULL is a no-op. */
MXGW_EXTERN void mxgw_session_free(mxgw_session *s);

/**
 * Describe the client, for the Received header and logs. Call before
 * mxgw_session_start().
 * @param addr  the client's IP address as text ("192.0.2.1", "2001:db8::1");
 *              required.
 * @param port  the client's port (0 if unknown).
 * @param host  the verified reverse-DNS name, or NULL for "unknown".
 * Errors: MXGW_E_INVAL (NULL or malformed addr), MXGW_E_STATE (already
 * started), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_session_set_peer(mxgw_session *s, const char *addr,
                                      int port, const char *host);

/**
 * Start the session. The first event is MXGW_EV_CONNECT; accepting it
 * queues the 220 greeting. Input that arrives before the greeting has been
 * queued is an early talker: it gets 554 5.5.1, the CONNECT decision is
 * dropped (answering it then fails with MXGW_E_STATE) and CLOSE follows.
 * Errors: MXGW_E_STATE (already started).
 */
MXGW_EXTERN int mxgw_session_start(mxgw_session *s, int64_t now_ms);

/**
 * Give the session bytes received from the client.
 * @return the number of bytes taken (0..len), which is less than len when
 *         the input buffer is full (a decision is pending, or the client
 *         does not read our replies). Keep the rest and offer it again after
 *         the next events have been handled. Errors (negative):
 *         MXGW_E_INVAL, MXGW_E_STATE (not started), MXGW_E_CLOSED (the
 *         session is over; discard the input), MXGW_E_NOMEM.
 * Ownership: the bytes are copied.
 */
MXGW_EXTERN int mxgw_session_feed(mxgw_session *s, const void *buf, size_t len,
                                  int64_t now_ms);

/**
 * Tell the session that the client closed its side (read returned 0). Input
 * already fed is still processed and its replies queued, since the client
 * may only have shut down its sending side; once that input is used up (and
 * no decision is pending), a message in progress (after DATA or the first
 * BDAT) is aborted (MESSAGE_ABORT) and CLOSE follows. If the connection is
 * gone entirely (a write fails), use mxgw_session_abort() instead. Further
 * feed() calls fail.
 * Errors: MXGW_E_STATE (not started).
 */
MXGW_EXTERN int mxgw_session_eof(mxgw_session *s);

/**
 * The connection is gone (a write or read failed, the peer reset it): drop
 * buffered input and output, abort a message in progress (MESSAGE_ABORT; a
 * pending decision is dropped) and close; CLOSE follows from
 * next_event(), with the disconnect log record. Use eof() instead when the
 * client only closed its sending side.
 * Errors: MXGW_E_STATE (not started).
 */
MXGW_EXTERN int mxgw_session_abort(mxgw_session *s);

/**
 * Process buffered input and return the next event.
 * @return an mxgw_event (> 0); 0 when there is nothing to report (more input
 *         is needed, a decision is pending, or the output buffer is full);
 *         or a negative error: MXGW_E_NOMEM (the session then closes with
 *         421 4.3.0).
 * The event's details are read with mxgw_session_get_str()/get_int() until
 * the next call to this function.
 */
MXGW_EXTERN int mxgw_session_next_event(mxgw_session *s);

/**
 * Peek at the bytes waiting to be written to the client.
 * @param ptr,len  receive the pending bytes (len 0 when none).
 * Ownership: session memory, valid until the next call on the session.
 * Errors: MXGW_E_INVAL.
 */
MXGW_EXTERN int mxgw_session_output(mxgw_session *s, const char **ptr,
                                    size_t *len);

/**
 * Mark n bytes from mxgw_session_output() as written.
 * Errors: MXGW_E_INVAL (n larger than what is pending).
 */
MXGW_EXTERN int mxgw_session_consume(mxgw_session *s, size_t n);

/** Bits returned by mxgw_session_want(). */
typedef enum mxgw_want {
  MXGW_WANT_READ = 1,  /**< the session can take input */
  MXGW_WANT_WRITE = 2, /**< output is pending */
  MXGW_WANT_CLOSE = 4  /**< the session is over: once output is written
                            (WANT_WRITE clear), close the connection */
} mxgw_want;

/** What the session needs from the event loop now (mxgw_want bits). */
MXGW_EXTERN int mxgw_session_want(const mxgw_session *s);

/**
 * The absolute time (same clock as now_ms) at which mxgw_session_tick() must
 * be called, or -1 if no timer runs (a decision is pending, or the session
 * is closed).
 */
MXGW_EXTERN int64_t mxgw_session_deadline(const mxgw_session *s);

/**
 * Advance time. When the deadline has passed, the session replies
 * 421 4.4.2 and closes (MESSAGE_ABORT and CLOSE follow as events).
 * @return 1 if the timeout fired, 0 if not. Errors: MXGW_E_STATE.
 */
MXGW_EXTERN int mxgw_session_tick(mxgw_session *s, int64_t now_ms);

/**
 * Close the session from the application side (shutdown, drain): queues
 * "421 4.3.2 <hostname> <text>" (text NULL for "Service shutting down",
 * RFC 5321 3.8) and closes.
 * A pending decision is dropped. Errors: MXGW_E_CLOSED.
 */
MXGW_EXTERN int mxgw_session_shutdown(mxgw_session *s, const char *text);

/* ------------------------------------------------------------------------ */
/* Events and decisions                                                     */
/* ------------------------------------------------------------------------ */

/** Events returned by mxgw_session_next_event(). */
typedef enum mxgw_event {
  MXGW_EV_NONE = 0,
  /** Decision: a client connected. Accept: 220 greeting. Reject: 554 (then
   *  only QUIT is served) or 421 (close). */
  MXGW_EV_CONNECT = 1,
  /** Decision: HELO or EHLO (MXGW_INFO_HELO, MXGW_INFO_IS_EHLO). Accept:
   *  250 (the EHLO extension list). */
  MXGW_EV_HELO = 2,
  /** Decision: STARTTLS. Accept: 220 2.0.0 and any input pipelined after
   *  the command is discarded. With a TLS context attached the session then
   *  runs the handshake itself (a failed handshake closes the session);
   *  without one it waits for mxgw_session_starttls_done(). Either way the
   *  client must EHLO again (RFC 3207 4.2). If the TLS context cannot start
   *  a handshake, the reply is 454 4.7.0 instead. */
  MXGW_EV_STARTTLS = 3,
  /** Decision: AUTH credentials (MXGW_INFO_AUTH_*). Accept: 235 2.7.0.
   *  Default rejection: 535 5.7.8. */
  MXGW_EV_AUTH = 4,
  /** Decision: MAIL FROM (MXGW_INFO_MAIL_FROM and parameters). Accept:
   *  250 2.1.0. */
  MXGW_EV_MAIL = 5,
  /** Decision: one RCPT TO (MXGW_INFO_RCPT, _NOTIFY, _ORCPT). Accept:
   *  250 2.1.5; the recipient joins the message. */
  MXGW_EV_RCPT = 6,
  /** Decision: DATA, or the first BDAT of a message. Accept: 354 (DATA) or
   *  the body starts (BDAT). */
  MXGW_EV_DATA = 7,
  /** Information: a chunk of the message, dot-unstuffed, CRLF line endings
   *  (MXGW_INFO_DATA). Chunks follow the wire; they are not lines. */
  MXGW_EV_BODY = 8,
  /** Decision: the message is complete. Accept: 250 2.0.0. Only now is the
   *  message the application's responsibility. */
  MXGW_EV_MESSAGE_END = 9,
  /** Information: the transaction ended without MESSAGE_END being accepted:
   *  size or line limit, bare newline, RSET, disconnect, timeout
   *  (MXGW_INFO_DATA holds the reason). Discard what was received. */
  MXGW_EV_MESSAGE_ABORT = 10,
  /** Information: RSET (or a new HELO) reset the transaction. */
  MXGW_EV_RSET = 11,
  /** Information: the session is over (QUIT, error limit, timeout, EOF,
   *  shutdown). MXGW_INFO_DATA holds the reason. Always the last event. */
  MXGW_EV_CLOSE = 12
} mxgw_event;

/**
 * Accept the pending decision with its default reply.
 * Errors: MXGW_E_STATE (no decision pending), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_session_accept(mxgw_session *s);

/**
 * Answer the pending decision with a reply of the application's choosing.
 * @param code  3-digit reply code. 4xx/5xx rejects; 421 also closes the
 *              session. Accepting codes must fit the stage: CONNECT and
 *              STARTTLS 220, HELO, MAIL and MESSAGE_END 250, RCPT 250, 251
 *              or 252, AUTH 235, DATA 354 (250 too for a first BDAT). For an
 *              accepting CONNECT or HELO reply, our host name is put in
 *              front of text (RFC 5321 4.1.1.1, 4.2).
 * @param enh   enhanced status code "c.s.d" whose class matches code, or
 *              NULL for a default (x.0.0, or the stage's usual code).
 * @param text  reply text, or NULL for the default. "\n" separates lines of
 *              a multi-line reply; otherwise only HT and printable ASCII
 *              (RFC 5321 4.2), at most 500 octets per line.
 * Errors: MXGW_E_STATE (no decision pending), MXGW_E_INVAL (bad code for
 * this stage, bad enhanced code, control characters), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_session_reply(mxgw_session *s, int code, const char *enh,
                                   const char *text);

/** The decision event that next_event() returned and that waits for an
 *  answer, or MXGW_EV_NONE. A decision is pending only once it has been
 *  returned: information events queued before it come first. */
MXGW_EXTERN int mxgw_session_pending(const mxgw_session *s);

/**
 * Report that the TLS handshake after an accepted STARTTLS succeeded (the
 * application ran it: the session does not see ciphertext). All state from
 * before TLS is discarded (RFC 3207 4.2: HELO, MAIL, RCPT, AUTH); the client
 * must EHLO again. From now on feed decrypted bytes.
 * @param protocol  e.g. "TLSv1.3" (may be NULL), for the Received header.
 * @param cipher    e.g. "TLS_AES_256_GCM_SHA384" (may be NULL).
 * Errors: MXGW_E_STATE (no STARTTLS was accepted), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_session_starttls_done(mxgw_session *s,
                                           const char *protocol,
                                           const char *cipher);

/* ------------------------------------------------------------------------ */
/* Information                                                              */
/* ------------------------------------------------------------------------ */

/** Keys for mxgw_session_get_str(), get_int() and rcpt_get_*(). */
typedef enum mxgw_info {
  /* strings */
  MXGW_INFO_DATA = 1,          /**< current event's payload (see events) */
  MXGW_INFO_HELO = 2,          /**< HELO/EHLO argument */
  MXGW_INFO_PEER_ADDR = 3,     /**< client IP address */
  MXGW_INFO_PEER_HOST = 4,     /**< client host name or "unknown" */
  MXGW_INFO_MAIL_FROM = 5,     /**< reverse path without <>, "" for <> */
  MXGW_INFO_RCPT = 6,          /**< forward path without <> (current RCPT or
                                    recipient idx) */
  MXGW_INFO_ENVID = 7,         /**< MAIL ENVID= (xtext decoded) */
  MXGW_INFO_RET = 8,           /**< "FULL" or "HDRS" */
  MXGW_INFO_BODY = 9,          /**< "7BIT" or "8BITMIME" */
  MXGW_INFO_MAIL_AUTH = 10,    /**< MAIL AUTH= (xtext decoded) */
  MXGW_INFO_NOTIFY = 11,       /**< RCPT NOTIFY= as given, e.g. "SUCCESS,DELAY" */
  MXGW_INFO_ORCPT = 12,        /**< RCPT ORCPT= "type;address" (decoded) */
  MXGW_INFO_AUTH_MECH = 13,    /**< "PLAIN" or "LOGIN" */
  MXGW_INFO_AUTH_AUTHZID = 14, /**< authorization identity (may be "") */
  MXGW_INFO_AUTH_USER = 15,    /**< authentication identity */
  MXGW_INFO_AUTH_PASSWORD = 16,/**< password (only during the AUTH event) */
  MXGW_INFO_AUTH_IDENTITY = 17,/**< the user after a successful AUTH */
  MXGW_INFO_TLS_PROTOCOL = 18, /**< negotiated protocol, e.g. "TLSv1.3" */
  MXGW_INFO_TLS_CIPHER = 19,
  MXGW_INFO_HOSTNAME = 20,     /**< our host name (configuration) */
  MXGW_INFO_TLS_PEER_SUBJECT = 21, /**< client certificate subject (RFC 2253),
                                        when the client sent one */
  MXGW_INFO_TLS_SNI = 22,      /**< server name the client asked for (SNI) */
  /* integers */
  MXGW_INFO_IS_EHLO = 100,     /**< 1 after EHLO, 0 after HELO */
  MXGW_INFO_SIZE = 101,        /**< MAIL SIZE= (-1 if not given) */
  MXGW_INFO_SMTPUTF8 = 102,    /**< 1 if MAIL had SMTPUTF8 */
  MXGW_INFO_RCPT_COUNT = 103,  /**< accepted recipients in this message */
  MXGW_INFO_MESSAGE_SIZE = 104,/**< body octets received so far */
  MXGW_INFO_TLS = 105,         /**< 1 once TLS is active */
  MXGW_INFO_AUTHENTICATED = 106, /**< 1 after a successful AUTH */
  MXGW_INFO_MESSAGES = 107,    /**< messages accepted in this session */
  MXGW_INFO_COMMANDS = 108,    /**< commands received */
  MXGW_INFO_ERRORS = 109,      /**< protocol errors counted */
  MXGW_INFO_BYTES_IN = 110,    /**< octets fed */
  MXGW_INFO_BYTES_OUT = 111,   /**< octets consumed (written) */
  MXGW_INFO_NOTIFY_FLAGS = 112,/**< mxgw_notify bits of a recipient */
  MXGW_INFO_BDAT = 113,        /**< 1 if the message came by BDAT */
  MXGW_INFO_PEER_PORT = 114
} mxgw_info;

/** RCPT NOTIFY= bits (RFC 3461 4.1). 0 means NOTIFY was not given. */
typedef enum mxgw_notify {
  MXGW_NOTIFY_NEVER = 1,
  MXGW_NOTIFY_SUCCESS = 2,
  MXGW_NOTIFY_FAILURE = 4,
  MXGW_NOTIFY_DELAY = 8
} mxgw_notify;

/**
 * Read a string item.
 * @param ptr,len  receive the value (not NUL-terminated).
 * Errors: MXGW_E_INVAL (unknown key), MXGW_E_NOTFOUND (not set now).
 * Ownership: session memory (see the header comment for how long).
 */
MXGW_EXTERN int mxgw_session_get_str(const mxgw_session *s, int key,
                                     const char **ptr, size_t *len);

/** Read an integer item. Errors: MXGW_E_INVAL (unknown key). */
MXGW_EXTERN int mxgw_session_get_int(const mxgw_session *s, int key,
                                     int64_t *out);

/**
 * Read an item of accepted recipient idx (0 .. RCPT_COUNT-1) of the current
 * message: MXGW_INFO_RCPT, MXGW_INFO_NOTIFY, MXGW_INFO_ORCPT.
 * Errors: MXGW_E_INVAL, MXGW_E_RANGE (idx), MXGW_E_NOTFOUND.
 */
MXGW_EXTERN int mxgw_session_rcpt_get_str(const mxgw_session *s, size_t idx,
                                          int key, const char **ptr,
                                          size_t *len);

/** Integer item of recipient idx: MXGW_INFO_NOTIFY_FLAGS. */
MXGW_EXTERN int mxgw_session_rcpt_get_int(const mxgw_session *s, size_t idx,
                                          int key, int64_t *out);

/**
 * Build the Received: header for the current message (RFC 5321 4.4,
 * RFC 6531 4.3 for the "with" keyword: SMTP, ESMTP, ESMTPS, ESMTPA,
 * ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA). It ends in CRLF
 * and is folded, ready to be prepended to the message.
 * @param queue_id   "id" clause, or NULL to leave it out.
 * @param unix_time  seconds since the epoch for the date (the session reads
 *                   no clock); formatted in UTC.
 * Errors: MXGW_E_STATE (no MAIL yet), MXGW_E_NOMEM.
 * Ownership: session memory, valid until the next call on the session.
 */
MXGW_EXTERN int mxgw_session_received_header(mxgw_session *s,
                                             const char *queue_id,
                                             int64_t unix_time,
                                             const char **ptr, size_t *len);

/** Per-session user data, for the application (not used by the library). */
MXGW_EXTERN void mxgw_session_set_user(mxgw_session *s, void *user);
MXGW_EXTERN void *mxgw_session_get_user(const mxgw_session *s);

/**
 * Detail of the last error returned by a call on this session, as a
 * NUL-terminated string ("" if none). Ownership: session memory, valid
 * until the next call on the session.
 */
MXGW_EXTERN const char *mxgw_session_errmsg(const mxgw_session *s);

/* ------------------------------------------------------------------------ */
/* Logging hook                                                             */
/* ------------------------------------------------------------------------ */

/** Kinds of log records. */
typedef enum mxgw_log_kind {
  MXGW_LOG_CONNECT = 1,    /**< "connect from host[addr]" */
  MXGW_LOG_COMMAND = 2,    /**< a command line as received (AUTH secrets
                                replaced by "***") */
  MXGW_LOG_REPLY = 3,      /**< a reply as queued, CRLFs included */
  MXGW_LOG_PROTOCOL = 4,   /**< a client protocol violation, e.g. bare LF,
                                early talker, plaintext after STARTTLS */
  MXGW_LOG_DISCONNECT = 5, /**< Postfix-style counters: "disconnect from
                                host[addr] ehlo=1 mail=1 rcpt=1/2 data=1
                                quit=1 commands=5/6" */
  MXGW_LOG_TLS = 6         /**< "TLS connection established: TLSv1.3 with
                                cipher ..." */
} mxgw_log_kind;

/**
 * The log hook. Called synchronously from inside session calls, on the
 * calling thread. text is not NUL-terminated and is borrowed for the
 * duration of the call. The hook must not call any mxgw_session function
 * except the getters.
 */
typedef void (*mxgw_log_fn)(void *user, mxgw_session *s, int kind,
                            const char *text, size_t len);

/** Install (or with fn NULL, remove) the log hook of this session. */
MXGW_EXTERN void mxgw_session_set_log(mxgw_session *s, mxgw_log_fn fn,
                                      void *user);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_SESSION_H */
