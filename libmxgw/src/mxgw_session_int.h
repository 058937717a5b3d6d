/* SPDX-License-Identifier: MIT */
/*
 * mxgw_session_int.h: the session's private layout, shared by the state
 * machine (mxgw_session.c) and its TLS glue (mxgw_session_tls.c).
 */
#ifndef MXGW_SESSION_INT_H
#define MXGW_SESSION_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mxgw/mxgw_session.h"
#include "mxgw_int.h"

typedef struct ssl_st SSL; /* <openssl/ssl.h> */

#define OPT_MAX 26 /* one past the last mxgw_opt */

struct mxgw_session_config {
  atomic_int refs;
  atomic_bool frozen;
  mxgw_mem mem;
  int64_t opt[OPT_MAX];
  char *hostname;
  char *greeting;
  struct mxgw_tls *tls; /* referenced; NULL: STARTTLS is the app's job */
};

enum state {
  ST_NEW,       /* created, not started */
  ST_CONNECT,   /* started; greeting not yet sent */
  ST_CMD,       /* reading commands */
  ST_NOSERVICE, /* greeted with 554: only QUIT (RFC 5321 3.1) */
  ST_DATA,      /* reading DATA text */
  ST_BDAT,      /* reading a BDAT chunk into the message */
  ST_BDAT_SKIP, /* reading a BDAT chunk to throw away */
  ST_AUTH,      /* waiting for an AUTH continuation line */
  ST_TLS_WAIT,  /* STARTTLS accepted, waiting for the handshake */
  ST_CLOSED
};

/* Commands, for dispatch and the disconnect counters. */
enum cmd {
  C_HELO, C_EHLO, C_MAIL, C_RCPT, C_DATA, C_BDAT, C_RSET, C_NOOP, C_QUIT,
  C_VRFY, C_EXPN, C_HELP, C_STARTTLS, C_AUTH, C_UNKNOWN, C_COUNT
};

typedef struct rcpt {
  char *addr;
  size_t len;
  char *notify; /* NULL if not given */
  char *orcpt;  /* decoded "type;addr", NULL if not given */
  int notify_flags;
} rcpt;

typedef struct queued_ev {
  int type;
  const char *reason; /* static */
} queued_ev;

struct mxgw_session {
  mxgw_mem mem;
  mxgw_session_config *cfg;
  const int64_t *opt; /* cfg->opt */
  void *user;
  mxgw_log_fn log_fn;
  void *log_user;

  enum state state;
  int pending;       /* decision event waiting, or 0 */
  int pending_cmd;   /* command behind the pending decision */
  bool announced;    /* the pending decision was returned as an event */
  bool owe_crlf;     /* a normalized CRLF is owed as a BODY event */
  bool owe_end;      /* the end of data was read after the last span */
  bool greeted;      /* CONNECT answered */
  bool close_after;  /* close once the current reply is queued */
  bool closed_emit;  /* CLOSE event delivered */
  bool eof;
  const char *close_reason;

  /* identity */
  char *peer_addr;
  char *peer_host;
  int peer_port;
  char *helo;
  bool is_ehlo;
  bool tls;
  char *tls_proto;
  char *tls_cipher;
  char *auth_identity;

  /* transaction */
  mxgw_arena arena;
  bool in_tx;
  char *mail_from;
  size_t mail_from_len;
  int64_t size_param;
  bool smtputf8;
  const char *body_type; /* static */
  const char *ret;       /* static */
  char *envid;
  char *mail_auth;
  rcpt *rcpts;
  size_t nrcpt, rcpt_cap;
  size_t rcpt_attempts;
  rcpt cand; /* RCPT waiting for a decision (strings in the arena) */
  bool data_started; /* DATA/BDAT decision accepted in this transaction */
  bool bdat_mode;
  /* message being received */
  int64_t msg_size;
  int64_t line_len;
  uint8_t bol;       /* BOL_HARD after a real CRLF, BOL_SOFT after a
                        normalized bare CR/LF, else BOL_NONE */
  int msg_fail;      /* 0 or a failure reason (FAIL_*) */
  uint64_t bdat_left;
  bool bdat_last;
  bool bdat_cr;      /* the last BDAT octet so far was a CR */
  uint64_t bdat_chunk;
  int bdat_rej_code;      /* the application's rejection of a first BDAT */
  char bdat_rej_enh[16];
  char *bdat_rej_text;

  /* AUTH */
  int auth_mech; /* 1 PLAIN, 2 LOGIN */
  int auth_step;
  mxgw_buf auth; /* decoded: authzid \0 user \0 password \0 */
  size_t auth_user_off, auth_pass_off;

  /* buffers */
  mxgw_buf in, out, tmp;
  mxgw_buf pout; /* TLS: plaintext replies waiting to be encrypted */
  SSL *ssl;      /* TLS inside the session (memory BIOs), or NULL */
  bool tls_hs;   /* TLS handshake in progress */
  bool starttls_reset; /* forget pre-TLS state when the handshake ends */
  char *tls_peer; /* client certificate subject, if any */
  size_t in_cap; /* effective MXGW_OPT_INPUT_BUFFER (>= any line limit) */
  size_t scan_off; /* command scanner: bytes already known to hold no LF */
  bool skip_line;  /* discarding the rest of an over-long line */

  /* current event */
  const char *ev_ptr;
  size_t ev_len;
  queued_ev evq[4];
  int evq_head, evq_n;

  /* time */
  int64_t now;
  int64_t deadline;

  /* counters */
  uint32_t cmd_ok[C_COUNT], cmd_total[C_COUNT];
  int64_t errors, unknown, junk, messages, bytes_in, bytes_out;

  char errmsg[256];
};

/* FAIL_ABORTED: MESSAGE_ABORT was emitted for another reason (timeout, RSET,
 * out of memory...): no BODY or second ABORT follows for that message. */
enum { FAIL_NONE, FAIL_SIZE, FAIL_LINE, FAIL_BARE_LF, FAIL_BARE_CR, FAIL_ABORTED };
enum { BOL_NONE, BOL_HARD, BOL_SOFT };

/* TLS glue (mxgw_session_tls.c). All return MXGW_OK or an error with a
 * reason in s->errmsg; the caller logs and closes. */
int mxgw__stls_begin(mxgw_session *s);            /* new SSL, accept state */
int mxgw__stls_input(mxgw_session *s, const void *buf, size_t len,
                     size_t *taken);              /* ciphertext in */
int mxgw__stls_pump(mxgw_session *s); /* handshake, decrypt; 1: handshake
                                          just completed */
int mxgw__stls_flush(mxgw_session *s);            /* encrypt pout -> out */
void mxgw__stls_close_notify(mxgw_session *s);
void mxgw__stls_free(mxgw_session *s);
bool mxgw__stls_want_write(const mxgw_session *s);
size_t mxgw__stls_input_pending(const mxgw_session *s);
const char *mxgw__stls_peer_subject(mxgw_session *s);
const char *mxgw__stls_sni(const mxgw_session *s);
const char *mxgw__stls_protocol(const mxgw_session *s);
const char *mxgw__stls_cipher(const mxgw_session *s);

#endif /* MXGW_SESSION_INT_H */
