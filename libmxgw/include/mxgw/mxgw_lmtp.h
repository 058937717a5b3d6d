/* SPDX-License-Identifier: MIT */
/*
 * mxgw_lmtp.h: an LMTP client (RFC 2033) with a sans-IO core, and a small
 * driver on top that does the socket I/O itself.
 *
 * The core (mxgw_lmtp) does no I/O and reads no clock, like the SMTP
 * session (mxgw_session.h):
 *
 *   - bytes from the backend go in with mxgw_lmtp_feed();
 *   - bytes for the backend come out with mxgw_lmtp_output() and are
 *     released with mxgw_lmtp_consume() (partial writes are fine);
 *   - time goes in (feed, tick, body calls), mxgw_lmtp_deadline() says when
 *     mxgw_lmtp_tick() is due;
 *   - mxgw_lmtp_want() says whether to read, write, push body, or close;
 *   - what happened comes out as events pulled with mxgw_lmtp_next_event().
 *
 * It greets with LHLO and parses the extensions (PIPELINING, SIZE,
 * 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING, DSN, STARTTLS, XCLIENT
 * with its attribute list), runs STARTTLS through OpenSSL memory BIOs when
 * asked to (MXGW_LMTP_OPT_STARTTLS with a client mxgw_tls context), then
 * per message: XCLIENT (when the message carries client attributes and the
 * backend offers it) and LHLO again, MAIL (SIZE, BODY=8BITMIME, SMTPUTF8,
 * RET, ENVID: each only when offered), one RCPT per recipient (NOTIFY and
 * ORCPT only with DSN), DATA or BDAT (CHUNKING offered and enabled), with
 * PIPELINING when offered, and reads one reply per accepted recipient after
 * the end of data (RFC 2033 4.2). One connection carries up to
 * MXGW_LMTP_OPT_MAX_MESSAGES messages (RSET between them when needed),
 * then QUIT.
 *
 * A message:
 *
 *     mxgw_lmtp_msg_new(c, "sender@example.org");
 *     mxgw_lmtp_msg_add_rcpt(c, "a@example.net", 0, NULL);
 *     mxgw_lmtp_msg_submit(c, now);         // may come before the greeting
 *     loop: push body chunks with mxgw_lmtp_body() while want() has
 *           MXGW_LMTP_WANT_BODY (it takes what fits: back-pressure), then
 *           mxgw_lmtp_body_end(); pump I/O; on MXGW_LMTP_EV_DONE read the
 *           per-recipient results with mxgw_lmtp_rcpt_get_int()/_str().
 *
 * The body is streamed, never held whole: the client turns bare LF and bare
 * CR into CRLF, dot-stuffs (DATA), ends the last line with CRLF and sends
 * the terminating "." (DATA) or BDAT LAST.
 *
 * Results: every recipient of a submitted message gets exactly one result:
 * the backend's RCPT reply if it refused it there, else its own reply after
 * the data, else (MAIL or DATA refused) that reply, else, when the
 * connection failed, timed out or broke the protocol before the answer, a
 * temporary failure made up by the client (451 4.4.x, MXGW_LMTP_R_LOCAL 1).
 * A recipient is never reported delivered unless the backend said 2xx for
 * it after the data.
 *
 * Ownership: strings returned through `const char **ptr, size_t *len` point
 * into client memory, are not NUL-terminated unless stated, and stay valid
 * until the next call that changes the client (feed, tick, msg_*, body*,
 * next_event, free). Strings passed in are copied.
 *
 * Threading: one client is used by one thread at a time. A frozen
 * configuration may be shared by clients on any thread.
 */
#ifndef MXGW_LMTP_H
#define MXGW_LMTP_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_lmtp_config mxgw_lmtp_config;
typedef struct mxgw_lmtp mxgw_lmtp;
typedef struct mxgw_lmtp_conn mxgw_lmtp_conn;
struct mxgw_tls; /* mxgw_tls.h */

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

/** Integer options (mxgw_lmtp_config_set_int). Defaults in brackets. */
typedef enum mxgw_lmtp_opt {
  /** Connect timeout of the driver, ms. [30000] */
  MXGW_LMTP_OPT_CONNECT_TIMEOUT_MS = 1,
  /** Wait for the greeting and for each command reply, ms. [300000] */
  MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS = 2,
  /** Data transfer: longest time without being able to send body octets,
   *  and the wait for the replies after the end of data, ms. [600000] */
  MXGW_LMTP_OPT_DATA_TIMEOUT_MS = 3,
  /** Messages per connection before QUIT. 0 = no limit. [100] */
  MXGW_LMTP_OPT_MAX_MESSAGES = 4,
  /** STARTTLS: 0 never, 1 when offered, 2 required (a backend not offering
   *  it fails the connection with 451 4.7.5). Needs a TLS context. [0] */
  MXGW_LMTP_OPT_STARTTLS = 5,
  /** Send XCLIENT when offered and the message has client attributes. [1] */
  MXGW_LMTP_OPT_XCLIENT = 6,
  /** Pipeline MAIL, RCPT and DATA when PIPELINING is offered. [1] */
  MXGW_LMTP_OPT_PIPELINING = 7,
  /** Use BDAT when CHUNKING is offered (else DATA). [0] */
  MXGW_LMTP_OPT_CHUNKING = 8,
  /** BDAT chunk size in octets, 512..16777216. [65536] */
  MXGW_LMTP_OPT_CHUNK_SIZE = 9,
  /** Body octets buffered before mxgw_lmtp_body() takes no more, >= 4096.
   *  [262144] */
  MXGW_LMTP_OPT_BODY_BUFFER = 10
} mxgw_lmtp_opt;

/** String options (mxgw_lmtp_config_set_str). */
typedef enum mxgw_lmtp_opt_str {
  /** Our name in LHLO. ["localhost"] */
  MXGW_LMTP_OPT_LHLO_NAME = 100,
  /** Name to verify the backend's certificate against (and SNI). [the TLS
   *  context's MXGW_TLS_HOSTNAME] */
  MXGW_LMTP_OPT_TLS_SERVERNAME = 101
} mxgw_lmtp_opt_str;

/**
 * Create a configuration with the defaults above.
 * Errors: MXGW_E_INVAL (out NULL), MXGW_E_NOMEM.
 * Ownership: the caller owns one reference (mxgw_lmtp_config_free());
 * clients hold their own.
 */
MXGW_EXTERN int mxgw_lmtp_config_new(mxgw_lmtp_config **out,
                                     const mxgw_mem *mem);
/** Release the caller's reference. NULL is a no-op. Context: any thread. */
MXGW_EXTERN void mxgw_lmtp_config_free(mxgw_lmtp_config *cfg);
/** Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE, MXGW_E_BUSY (frozen:
 *  a client was created from it). */
MXGW_EXTERN int mxgw_lmtp_config_set_int(mxgw_lmtp_config *cfg, int key,
                                         int64_t value);
/** Errors: MXGW_E_INVAL (unknown key or NULL out). */
MXGW_EXTERN int mxgw_lmtp_config_get_int(const mxgw_lmtp_config *cfg, int key,
                                         int64_t *out);
/** Errors: MXGW_E_INVAL (unknown key, NULL or control characters),
 *  MXGW_E_BUSY, MXGW_E_NOMEM. */
MXGW_EXTERN int mxgw_lmtp_config_set_str(mxgw_lmtp_config *cfg, int key,
                                         const char *value);
/**
 * Attach a CLIENT TLS context (mxgw_tls_new(.., MXGW_TLS_CLIENT, ..), loaded
 * with mxgw_tls_reload(); MXGW_TLS_CA_FILE and MXGW_TLS_VERIFY_PEER decide
 * the verification). The configuration keeps a reference; NULL detaches.
 * Errors: MXGW_E_INVAL, MXGW_E_BUSY.
 */
MXGW_EXTERN int mxgw_lmtp_config_set_tls(mxgw_lmtp_config *cfg,
                                         struct mxgw_tls *tls);

/* ------------------------------------------------------------------------ */
/* The sans-IO client                                                       */
/* ------------------------------------------------------------------------ */

/**
 * Create a client for one connection. The configuration is frozen.
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_lmtp_new(mxgw_lmtp **out, mxgw_lmtp_config *cfg,
                              const mxgw_mem *mem);
/** Free the client. NULL is a no-op. */
MXGW_EXTERN void mxgw_lmtp_free(mxgw_lmtp *c);

/**
 * The connection is established: wait for the greeting (command timeout).
 * Errors: MXGW_E_STATE (already started or aborted).
 */
MXGW_EXTERN int mxgw_lmtp_start(mxgw_lmtp *c, int64_t now_ms);

/**
 * Bytes received from the backend (ciphertext under TLS).
 * @return the number taken (all of them unless the client is closed), or
 *         MXGW_E_INVAL, MXGW_E_STATE (not started), MXGW_E_NOMEM. Protocol
 *         violations are not errors: they fail the message and close
 *         (events DONE and CLOSED).
 */
MXGW_EXTERN int mxgw_lmtp_feed(mxgw_lmtp *c, const void *buf, size_t len,
                               int64_t now_ms);
/** The backend closed the connection (read returned 0). */
MXGW_EXTERN int mxgw_lmtp_eof(mxgw_lmtp *c, int64_t now_ms);
/**
 * The connection failed or could not be made (text: why, e.g. "connect to
 * 127.0.0.1:24: Connection refused"; NULL for a default). Every recipient
 * still without a result gets 451 with enh ("4.4.1" when never started,
 * "4.4.2" after) and the text. Valid in any state, also before start.
 */
MXGW_EXTERN int mxgw_lmtp_abort(mxgw_lmtp *c, const char *enh,
                                const char *text, int64_t now_ms);

/** Peek at the bytes for the backend. Errors: MXGW_E_INVAL. */
MXGW_EXTERN int mxgw_lmtp_output(mxgw_lmtp *c, const char **ptr, size_t *len);
/** n bytes of output were written. Errors: MXGW_E_INVAL (n too large). */
MXGW_EXTERN int mxgw_lmtp_consume(mxgw_lmtp *c, size_t n);

/** Bits of mxgw_lmtp_want(). */
typedef enum mxgw_lmtp_want_bits {
  MXGW_LMTP_WANT_READ = 1,  /**< a reply is awaited */
  MXGW_LMTP_WANT_WRITE = 2, /**< output is pending */
  MXGW_LMTP_WANT_CLOSE = 4, /**< over: close once output is written */
  MXGW_LMTP_WANT_BODY = 8   /**< mxgw_lmtp_body() would take octets */
} mxgw_lmtp_want_bits;
MXGW_EXTERN int mxgw_lmtp_want(const mxgw_lmtp *c);

/** When mxgw_lmtp_tick() is due (same clock as now_ms), or -1. */
MXGW_EXTERN int64_t mxgw_lmtp_deadline(const mxgw_lmtp *c);
/** Advance time; a passed deadline fails what is waiting (451 4.4.2) and
 *  closes. @return 1 if it fired, 0 if not. */
MXGW_EXTERN int mxgw_lmtp_tick(mxgw_lmtp *c, int64_t now_ms);

/** Ask for QUIT once the current message (if any) is done. */
MXGW_EXTERN int mxgw_lmtp_quit(mxgw_lmtp *c);

/* ---- events ------------------------------------------------------------ */

/** Events returned by mxgw_lmtp_next_event(). */
typedef enum mxgw_lmtp_event {
  MXGW_LMTP_EV_NONE = 0,
  /** The connection is ready for a message (after the greeting and LHLO,
   *  and after each message while the connection is reusable). */
  MXGW_LMTP_EV_READY = 1,
  /** The backend answered the RCPT of recipient MXGW_LMTP_INFO_RCPT_INDEX
   *  (before the data: proxy mode can pass it on). */
  MXGW_LMTP_EV_RCPT = 2,
  /** The message is finished: every recipient has its result. */
  MXGW_LMTP_EV_DONE = 3,
  /** The connection is over (QUIT, failure, timeout). Last event. */
  MXGW_LMTP_EV_CLOSED = 4
} mxgw_lmtp_event;

/** @return the next event (> 0), 0 for none. */
MXGW_EXTERN int mxgw_lmtp_next_event(mxgw_lmtp *c);

/* ---- a message ---------------------------------------------------------- */

/**
 * Begin a message (the envelope is built with the calls below, then
 * submitted). The previous message's results are discarded.
 * @param mail_from  reverse path without <>, "" for the null sender.
 * A message may be built on a client that has closed (or is quitting after
 * MXGW_LMTP_OPT_MAX_MESSAGES): the blocking driver (mxgw_lmtp_conn) then
 * reconnects before it submits; submitting it on the closed client itself
 * fails with MXGW_E_CLOSED.
 * Errors: MXGW_E_STATE (a message is in progress), MXGW_E_INVAL (NULL,
 * CR/LF/controls, or <>), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_lmtp_msg_new(mxgw_lmtp *c, const char *mail_from);

/** Integer message options (mxgw_lmtp_msg_set_int). */
typedef enum mxgw_lmtp_msg_opt {
  /** SIZE= estimate in octets, -1 for none. [-1] */
  MXGW_LMTP_MSG_SIZE = 1,
  /** BODY=8BITMIME (1) or not (0). [0] */
  MXGW_LMTP_MSG_8BITMIME = 2,
  /** SMTPUTF8 (1) or not (0). A backend not offering it fails the message
   *  with 553 5.6.7 (local). [0] */
  MXGW_LMTP_MSG_SMTPUTF8 = 3,
  /** RET=: 0 none, 1 FULL, 2 HDRS. [0] */
  MXGW_LMTP_MSG_RET = 4,
  /** XCLIENT PORT=, 0 for none. [0] */
  MXGW_LMTP_MSG_XCLIENT_PORT = 5
} mxgw_lmtp_msg_opt;

/** String message options (mxgw_lmtp_msg_set_str). XCLIENT attributes are
 *  sent only if the backend lists them. */
typedef enum mxgw_lmtp_msg_opt_str {
  MXGW_LMTP_MSG_ENVID = 100,          /**< ENVID= (xtext-encoded by us) */
  MXGW_LMTP_MSG_XCLIENT_ADDR = 101,   /**< original client IP address */
  MXGW_LMTP_MSG_XCLIENT_HELO = 102,   /**< its HELO name */
  MXGW_LMTP_MSG_XCLIENT_NAME = 103,   /**< its reverse DNS name */
  MXGW_LMTP_MSG_XCLIENT_PROTO = 104,  /**< "SMTP" or "ESMTP" */
  MXGW_LMTP_MSG_XCLIENT_LOGIN = 105   /**< authenticated user */
} mxgw_lmtp_msg_opt_str;

/** Errors: MXGW_E_STATE (no message or already submitted), MXGW_E_INVAL
 *  (unknown key, bad value), MXGW_E_NOMEM. */
MXGW_EXTERN int mxgw_lmtp_msg_set_int(mxgw_lmtp *c, int key, int64_t value);
MXGW_EXTERN int mxgw_lmtp_msg_set_str(mxgw_lmtp *c, int key,
                                      const char *value);

/**
 * Add a recipient.
 * @param rcpt    forward path without <>.
 * @param notify  mxgw_notify bits (mxgw_session.h: NEVER 1, SUCCESS 2,
 *                FAILURE 4, DELAY 8), 0 for none.
 * @param orcpt   "rfc822;addr" (xtext-encoded by us) or NULL.
 * @return the recipient's index (>= 0).
 * Errors: MXGW_E_STATE, MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_lmtp_msg_add_rcpt(mxgw_lmtp *c, const char *rcpt,
                                       int notify, const char *orcpt);

/** The envelope is complete: it is sent as soon as the connection is
 *  ready. Errors: MXGW_E_STATE (no message, no recipient, submitted). */
MXGW_EXTERN int mxgw_lmtp_msg_submit(mxgw_lmtp *c, int64_t now_ms);

/**
 * Push body octets (the message as stored: header, blank line, body; any
 * line endings). @return octets taken (0..len; fewer when the buffer is
 * full: wait for MXGW_LMTP_WANT_BODY), or MXGW_E_STATE (no submitted
 * message, or after body_end), MXGW_E_NOMEM. After the message failed early
 * (all recipients refused), the octets are taken and dropped.
 */
MXGW_EXTERN int mxgw_lmtp_body(mxgw_lmtp *c, const void *buf, size_t len,
                               int64_t now_ms);
/** The body is complete. Errors: MXGW_E_STATE. */
MXGW_EXTERN int mxgw_lmtp_body_end(mxgw_lmtp *c, int64_t now_ms);

/* ---- results and information -------------------------------------------- */

/** Keys for the getters. */
typedef enum mxgw_lmtp_info {
  /* recipient strings (mxgw_lmtp_rcpt_get_str) */
  MXGW_LMTP_R_ADDRESS = 1, /**< the recipient */
  MXGW_LMTP_R_ENH = 2,     /**< enhanced status code "c.s.d", or "" */
  MXGW_LMTP_R_TEXT = 3,    /**< reply text without code and enhanced
                                code; lines joined with "\n" */
  /* recipient integers (mxgw_lmtp_rcpt_get_int) */
  MXGW_LMTP_R_CODE = 50,   /**< reply code; 0 while unknown */
  MXGW_LMTP_R_STAGE = 51,  /**< mxgw_lmtp_stage of the reply */
  MXGW_LMTP_R_LOCAL = 52,  /**< 1 if made up by the client (no reply) */
  /* client strings (mxgw_lmtp_get_str) */
  MXGW_LMTP_INFO_GREETING = 100,   /**< the 220 line's text */
  MXGW_LMTP_INFO_XCLIENT = 101,    /**< XCLIENT attribute list offered */
  MXGW_LMTP_INFO_TLS_PROTOCOL = 102,
  MXGW_LMTP_INFO_TLS_CIPHER = 103,
  MXGW_LMTP_INFO_LAST_REPLY = 104, /**< last reply, lines joined by "\n" */
  /* client integers (mxgw_lmtp_get_int) */
  MXGW_LMTP_INFO_EXTENSIONS = 150, /**< mxgw_lmtp_ext bits offered */
  MXGW_LMTP_INFO_SIZE_LIMIT = 151, /**< SIZE offered (0 none/unlimited) */
  MXGW_LMTP_INFO_TLS = 152,        /**< 1 once TLS is up */
  MXGW_LMTP_INFO_MESSAGES = 153,   /**< messages finished on this client */
  MXGW_LMTP_INFO_RCPT_INDEX = 154, /**< recipient of the last EV_RCPT */
  MXGW_LMTP_INFO_RCPT_COUNT = 155, /**< recipients of the message */
  MXGW_LMTP_INFO_BODY_OCTETS = 156 /**< body octets sent after conversion */
} mxgw_lmtp_info;

/** Where a recipient's result came from. */
typedef enum mxgw_lmtp_stage {
  MXGW_LMTP_STAGE_NONE = 0,       /**< no result yet */
  MXGW_LMTP_STAGE_CONNECT = 1,    /**< connection, greeting, LHLO, TLS,
                                       XCLIENT */
  MXGW_LMTP_STAGE_MAIL = 2,
  MXGW_LMTP_STAGE_RCPT = 3,
  MXGW_LMTP_STAGE_DATA = 4,       /**< DATA or a non-final BDAT refused */
  MXGW_LMTP_STAGE_DELIVERY = 5    /**< the per-recipient reply after data */
} mxgw_lmtp_stage;

/** Extension bits (MXGW_LMTP_INFO_EXTENSIONS). */
typedef enum mxgw_lmtp_ext {
  MXGW_LMTP_EXT_PIPELINING = 1,
  MXGW_LMTP_EXT_SIZE = 2,
  MXGW_LMTP_EXT_8BITMIME = 4,
  MXGW_LMTP_EXT_SMTPUTF8 = 8,
  MXGW_LMTP_EXT_ENHANCEDSTATUSCODES = 16,
  MXGW_LMTP_EXT_CHUNKING = 32,
  MXGW_LMTP_EXT_DSN = 64,
  MXGW_LMTP_EXT_STARTTLS = 128,
  MXGW_LMTP_EXT_XCLIENT = 256
} mxgw_lmtp_ext;

/** Errors: MXGW_E_INVAL (key), MXGW_E_RANGE (idx), MXGW_E_NOTFOUND. */
MXGW_EXTERN int mxgw_lmtp_rcpt_get_str(const mxgw_lmtp *c, size_t idx,
                                       int key, const char **ptr,
                                       size_t *len);
MXGW_EXTERN int mxgw_lmtp_rcpt_get_int(const mxgw_lmtp *c, size_t idx,
                                       int key, int64_t *out);
MXGW_EXTERN int mxgw_lmtp_get_str(const mxgw_lmtp *c, int key,
                                  const char **ptr, size_t *len);
MXGW_EXTERN int mxgw_lmtp_get_int(const mxgw_lmtp *c, int key, int64_t *out);
/** Detail of the last failure (NUL-terminated, "" if none). */
MXGW_EXTERN const char *mxgw_lmtp_errmsg(const mxgw_lmtp *c);

/* ------------------------------------------------------------------------ */
/* Driver: sockets                                                          */
/* ------------------------------------------------------------------------ */

/**
 * A connection to a backend that does the socket I/O for a client it owns.
 * @param target  "unix:/path", "/path", "host:port", "[v6addr]:port" or
 *                "inet:host:port" (numeric addresses only: no DNS).
 * Errors: MXGW_E_INVAL (bad target), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_lmtp_conn_new(mxgw_lmtp_conn **out,
                                   mxgw_lmtp_config *cfg, const char *target,
                                   const mxgw_mem *mem);
/** Close the socket (without QUIT) and free. NULL is a no-op. */
MXGW_EXTERN void mxgw_lmtp_conn_free(mxgw_lmtp_conn *conn);
/** The client (build messages and read results on it). Ownership: the
 *  connection's. A connection that closed is replaced by a fresh client at
 *  the next delivery, so get it again after each call. */
MXGW_EXTERN mxgw_lmtp *mxgw_lmtp_conn_client(mxgw_lmtp_conn *conn);

/**
 * Blocking: deliver the message prepared on the client (msg_new, add_rcpt,
 * not yet submitted) with its body read from fd until EOF, connecting first
 * if needed (reusing the connection otherwise). Returns when every
 * recipient has its result. Uses poll(); timeouts from the configuration.
 * @return MXGW_OK (read the results, temporary failures included), or
 * MXGW_E_STATE (no message), MXGW_E_IO (reading fd failed: the message is
 * abandoned, nothing is claimed delivered), MXGW_E_NOMEM.
 * Context: blocks; call without holding locks (bindings release the GIL).
 */
MXGW_EXTERN int mxgw_lmtp_conn_deliver_fd(mxgw_lmtp_conn *conn, int fd);
/** Same with the body being the `length` octets at `offset` in fd (read
 *  with pread(); fd's file position is not used). A file that ends before
 *  offset + length fails the message like a read error (MXGW_E_IO).
 *  This is how a message in the queue's journal is delivered
 *  (mxgw_queue_entry_body()). Errors: also MXGW_E_INVAL (negative offset
 *  or length). */
MXGW_EXTERN int mxgw_lmtp_conn_deliver_range(mxgw_lmtp_conn *conn, int fd,
                                             int64_t offset, int64_t length);
/** Same with a file. Errors: also MXGW_E_IO (cannot open). */
MXGW_EXTERN int mxgw_lmtp_conn_deliver_file(mxgw_lmtp_conn *conn,
                                            const char *path);
/** Blocking: QUIT (if connected) and close. */
MXGW_EXTERN int mxgw_lmtp_conn_quit(mxgw_lmtp_conn *conn);

/* Non-blocking use from an event loop (epoll, poll): */

/**
 * Connect if not connected (non-blocking; the socket becomes writable when
 * done). A failure is not returned: it fails the message (451 4.4.1).
 * Errors: MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_lmtp_conn_open(mxgw_lmtp_conn *conn, int64_t now_ms);
/** The socket, or -1 when not connected. */
MXGW_EXTERN int mxgw_lmtp_conn_fd(const mxgw_lmtp_conn *conn);
/** poll() events (POLLIN, POLLOUT) to wait for now. */
MXGW_EXTERN int mxgw_lmtp_conn_events(const mxgw_lmtp_conn *conn);
/** Absolute time to call mxgw_lmtp_conn_process() even without events, or
 *  -1. */
MXGW_EXTERN int64_t mxgw_lmtp_conn_deadline(const mxgw_lmtp_conn *conn);
/** Do the I/O the revents allow, then advance time. Read events from the
 *  client afterwards. Errors: MXGW_E_NOMEM. */
MXGW_EXTERN int mxgw_lmtp_conn_process(mxgw_lmtp_conn *conn, int revents,
                                       int64_t now_ms);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_LMTP_H */
