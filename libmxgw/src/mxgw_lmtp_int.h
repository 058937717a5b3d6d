/* SPDX-License-Identifier: MIT */
/*
 * mxgw_lmtp_int.h: internals of the LMTP client shared by its core
 * (mxgw_lmtp.c), its socket driver (mxgw_lmtp_io.c) and the fuzz target:
 * the strict multi-line reply parser.
 */
#ifndef MXGW_LMTP_INT_H
#define MXGW_LMTP_INT_H

#include <stddef.h>
#include <sys/socket.h>

#include "mxgw/mxgw_lmtp.h"

/* Limits of one reply (RFC 5321 4.5.3.1.5 gives 512 per line; be generous
 * with real servers, strict with garbage). */
#define MXGW__LMTP_MAX_REPLY_LINE 4096
#define MXGW__LMTP_MAX_REPLY_LINES 256

typedef struct mxgw__lmtp_reply {
  int code;          /* 200..559 */
  char enh[16];      /* "c.s.d" or "" */
  size_t lines;
  const char *err;   /* static reason when the parse fails */
} mxgw__lmtp_reply;

/*
 * Parse one complete reply at the start of p[0..n).
 * text (capacity >= n) receives the text of all lines without code and
 * enhanced code, joined with "\n"; *tlen its length.
 * @return bytes of the reply (> 0), 0 when incomplete (more input needed),
 *         MXGW_E_PROTOCOL when malformed (r->err says why).
 * Strict: lines end in CRLF (a bare CR or LF is an error), codes are
 * [2-5][0-5][0-9], every line has the same code, '-' continues and ' ' or
 * nothing after the code ends the reply, no NUL, line and line-count
 * limits above. The enhanced code is taken when the first line starts
 * with one whose class matches the code's (RFC 2034); it is removed from
 * each line that repeats it.
 */
int mxgw__lmtp_reply_parse(const char *p, size_t n, mxgw__lmtp_reply *r,
                           char *text, size_t *tlen);

/* For the driver (mxgw_lmtp_io.c). */
#include <stdbool.h>
/* Back to the state before mxgw_lmtp_start() (a new connection), keeping
 * the message being built. */
void mxgw__lmtp_reset(mxgw_lmtp *c);
bool mxgw__lmtp_closed(const mxgw_lmtp *c);
bool mxgw__lmtp_started(const mxgw_lmtp *c);
bool mxgw__lmtp_msg_ready(const mxgw_lmtp *c); /* built, not submitted */
/* An LMTP target ("unix:/path", "/path", "host:port", "[v6]:port",
 * "inet:host:port"; numeric addresses only) as a socket address; label (if
 * not NULL) gets "host[host]:port" or the path. MXGW_OK or MXGW_E_INVAL. */
int mxgw__lmtp_target_addr(const char *t, struct sockaddr_storage *ss,
                           socklen_t *sl, char *label, size_t labelcap);
/* The built, unsubmitted message fails (451 4.4.1, local, the last error)
 * because the connection could not be made. */
int mxgw__lmtp_fail_unsent(mxgw_lmtp *c);
/* The enhanced status code of the failure that closed the connection ("" if
 * none): "4.7.5" STARTTLS, "4.5.0" protocol, "4.4.2" lost, ... */
const char *mxgw__lmtp_errenh(const mxgw_lmtp *c);
bool mxgw__lmtp_msg_done(const mxgw_lmtp *c);
void mxgw__lmtp_config_ref(mxgw_lmtp_config *cfg);
void mxgw__lmtp_config_unref(mxgw_lmtp_config *cfg);

#endif /* MXGW_LMTP_INT_H */
