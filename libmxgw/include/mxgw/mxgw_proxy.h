/* SPDX-License-Identifier: MIT */
/*
 * mxgw_proxy.h: proxy (before-queue) mode. One SMTP session is coupled to
 * one LMTP backend connection and the LMTP transaction runs in step with
 * the SMTP one: nothing is spooled, the backend's answers become the SMTP
 * answers, and a message is accepted (250) only after the backend answered
 * for every recipient. Sans-IO like mxgw_session and mxgw_lmtp: the
 * application owns both sockets and the clock; the proxy owns neither.
 *
 * Ownership: the application creates and drives the mxgw_session; the
 * proxy borrows it (it must outlive the proxy) and answers its MAIL, RCPT,
 * DATA and MESSAGE_END decisions. The backend LMTP protocol (greeting,
 * LHLO, XCLIENT, MAIL, RCPT, DATA, dot-stuffed body, one reply per
 * recipient, RSET, QUIT) is spoken by the proxy itself, strictly in step
 * (no pipelining): the buffered mxgw_lmtp client needs the whole envelope
 * before it sends MAIL, which cannot give per-RCPT answers in step.
 *
 * Loop:
 *
 *   ev = mxgw_session_next_event(s);
 *   if (!mxgw_proxy_session_event(p, ev, now)) ...the application decides
 *                                  (CONNECT, HELO, STARTTLS, AUTH...)
 *   want = mxgw_proxy_want(p):
 *     MXGW_PROXY_WANT_CONNECT: connect the backend socket, then
 *       mxgw_proxy_backend_connected() or mxgw_proxy_backend_failed()
 *       (the bit stays set while a non-blocking connect is in progress);
 *     READ/WRITE: backend bytes in with mxgw_proxy_backend_feed() (EOF:
 *       mxgw_proxy_backend_eof()), out with mxgw_proxy_backend_output()/
 *       mxgw_proxy_backend_consume();
 *     CLOSE: close the backend socket, then mxgw_proxy_backend_closed();
 *     PAUSE: stop reading the SMTP client (the backend is slower than the
 *       client: body octets pending for it exceed the buffer limit).
 *   mxgw_proxy_deadline()/mxgw_proxy_tick() carry the backend timeouts.
 *   After any proxy call, drain session output (replies may have been
 *   given) and session events.
 *
 * End-of-data policy (RFC 2033 gives one reply per recipient, SMTP has one
 * reply per message), see docs/lmtp.md "Proxy mode":
 *   - every recipient 2xx: 250 2.0.0;
 *   - every recipient the same failure (code and enhanced code): that
 *     reply, passed through;
 *   - otherwise any 4xx, or 2xx mixed with 5xx: 451 4.3.0, the sender
 *     keeps the message and retries (the recipients already delivered get
 *     a duplicate rather than any recipient losing the message);
 *     with MXGW_PROXY_OPT_PARTIAL_5XX set to 1, 2xx mixed with 5xx only
 *     gives 250 instead (no duplicates; the 5xx recipients are then only
 *     in the log: choose it when the backend's 5xx at data are rare);
 *   - all failed, different 5xx: 554 5.0.0.
 * Backend unreachable at MAIL: 451 4.4.1; backend lost later: 451 4.4.2 to
 * the pending decision (after the final dot too: never 250).
 *
 * Threading: one proxy with its session on one thread at a time.
 */
#ifndef MXGW_PROXY_H
#define MXGW_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct mxgw_session; /* mxgw_session.h */
typedef struct mxgw_proxy mxgw_proxy;

/** Integer options (mxgw_proxy_set_int). Defaults in brackets. */
typedef enum mxgw_proxy_opt {
  /** Greeting and each command reply from the backend, ms. [300000] */
  MXGW_PROXY_OPT_COMMAND_TIMEOUT_MS = 1,
  /** Replies after the end of data, and a stalled body, ms. [600000] */
  MXGW_PROXY_OPT_DATA_TIMEOUT_MS = 2,
  /** Body octets pending for the backend before WANT_PAUSE. [262144] */
  MXGW_PROXY_OPT_BODY_BUFFER = 3,
  /** Send XCLIENT ADDR/HELO/PROTO when offered (1) or not (0). [1] */
  MXGW_PROXY_OPT_XCLIENT = 4,
  /** 2xx mixed with 5xx at the end of data: 0 gives 451 4.3.0, 1 gives
   *  250. [0] */
  MXGW_PROXY_OPT_PARTIAL_5XX = 5,
  /** Prepend the session's Received header to the body (1) or not. [1] */
  MXGW_PROXY_OPT_RECEIVED = 6,
  /** Unix time in ms minus now_ms (the clock the application passes in),
   *  for the Received header's date; the proxy reads no clock. [0] */
  MXGW_PROXY_OPT_CLOCK_OFFSET_MS = 7
} mxgw_proxy_opt;

/** String options (mxgw_proxy_set_str). */
typedef enum mxgw_proxy_opt_str {
  /** Our name in LHLO. ["localhost"] */
  MXGW_PROXY_OPT_LHLO_NAME = 100
} mxgw_proxy_opt_str;

/** Bits of mxgw_proxy_want(). */
typedef enum mxgw_proxy_want_bits {
  MXGW_PROXY_WANT_READ = 1,
  MXGW_PROXY_WANT_WRITE = 2,
  MXGW_PROXY_WANT_CLOSE = 4,   /**< close the backend socket */
  MXGW_PROXY_WANT_CONNECT = 8, /**< open a backend connection */
  MXGW_PROXY_WANT_PAUSE = 16   /**< stop feeding the SMTP session */
} mxgw_proxy_want_bits;

/**
 * Create a proxy for session s (borrowed, see above).
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_proxy_new(mxgw_proxy **out, struct mxgw_session *s,
                               const mxgw_mem *mem);
/** Free. NULL is a no-op. The session is not freed. */
MXGW_EXTERN void mxgw_proxy_free(mxgw_proxy *p);
/** Errors: MXGW_E_INVAL (key), MXGW_E_RANGE. */
MXGW_EXTERN int mxgw_proxy_set_int(mxgw_proxy *p, int key, int64_t value);
/** Errors: MXGW_E_INVAL (key, NULL, control characters), MXGW_E_NOMEM. */
MXGW_EXTERN int mxgw_proxy_set_str(mxgw_proxy *p, int key, const char *value);

/**
 * Hand every event of the session to the proxy.
 * @return 1 if the proxy handled it (it answered or will answer the
 *         decision: MAIL, RCPT, DATA, MESSAGE_END; BODY, MESSAGE_ABORT,
 *         RSET, CLOSE are consumed), 0 if the application decides (CONNECT,
 *         HELO, STARTTLS, AUTH), or MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_proxy_session_event(mxgw_proxy *p, int ev,
                                         int64_t now_ms);

/** The backend socket is connected: the greeting is awaited. */
MXGW_EXTERN int mxgw_proxy_backend_connected(mxgw_proxy *p, int64_t now_ms);
/** The connection could not be made or failed (text: why, may be NULL). */
MXGW_EXTERN int mxgw_proxy_backend_failed(mxgw_proxy *p, const char *text,
                                          int64_t now_ms);
/** Bytes from the backend. @return MXGW_OK or MXGW_E_NOMEM. */
MXGW_EXTERN int mxgw_proxy_backend_feed(mxgw_proxy *p, const void *buf,
                                        size_t len, int64_t now_ms);
/** The backend closed the connection. */
MXGW_EXTERN int mxgw_proxy_backend_eof(mxgw_proxy *p, int64_t now_ms);
/** The application closed the backend socket after WANT_CLOSE. */
MXGW_EXTERN int mxgw_proxy_backend_closed(mxgw_proxy *p);
/** Peek at / release bytes for the backend. Errors: MXGW_E_INVAL. */
MXGW_EXTERN int mxgw_proxy_backend_output(mxgw_proxy *p, const char **ptr,
                                          size_t *len);
MXGW_EXTERN int mxgw_proxy_backend_consume(mxgw_proxy *p, size_t n);

MXGW_EXTERN int mxgw_proxy_want(const mxgw_proxy *p);
/** When mxgw_proxy_tick() is due, or -1. */
MXGW_EXTERN int64_t mxgw_proxy_deadline(const mxgw_proxy *p);
/** A passed deadline fails what waits (451 4.4.2) and closes the backend.
 *  @return 1 if it fired, 0 if not. */
MXGW_EXTERN int mxgw_proxy_tick(mxgw_proxy *p, int64_t now_ms);

/** The last backend failure (NUL-terminated, "" if none). */
MXGW_EXTERN const char *mxgw_proxy_errmsg(const mxgw_proxy *p);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_PROXY_H */
