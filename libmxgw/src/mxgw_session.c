/* SPDX-License-Identifier: MIT */
/*
 * mxgw_session.c: the sans-IO SMTP server session (RFC 5321 and the ESMTP
 * extensions listed in mxgw_session.h).
 *
 * Input is copied into `in`; mxgw_session_next_event() processes it lazily,
 * one command (or one span of message data) at a time, so that a pending
 * decision simply stops processing and leaves pipelined input where it is.
 * Replies are appended to `out` in order. The DATA scanner hands out spans of
 * `in` as BODY events (zero copy); it splits a span only where it removes a
 * stuffed dot or replaces a bare CR/LF. Dot handling and the end of data are
 * recognised only at the start of a line that follows a real CRLF: this is
 * what defeats SMTP smuggling (<LF>.<LF>, <CR>.<CR>, ... never end DATA).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mxgw_session_int.h"
#include "mxgw_smtp_parse.h"
#include "mxgw_tls_int.h"

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */


static const struct {
  int64_t def, min, max;
} opt_info[OPT_MAX] = {
    [MXGW_OPT_MAX_MESSAGE_SIZE] = {67108864, 0, INT64_MAX / 4},
    [MXGW_OPT_MAX_RECIPIENTS] = {1000, 1, 1000000},
    [MXGW_OPT_MAX_MESSAGES] = {1000, 1, INT32_MAX},
    [MXGW_OPT_MAX_COMMAND_LINE] = {2048, 512, 65536},
    [MXGW_OPT_MAX_TEXT_LINE] = {1000, 0, INT32_MAX},
    [MXGW_OPT_MAX_ERRORS] = {20, 1, INT32_MAX},
    [MXGW_OPT_MAX_UNKNOWN_COMMANDS] = {10, 1, INT32_MAX},
    [MXGW_OPT_MAX_JUNK_COMMANDS] = {100, 1, INT32_MAX},
    [MXGW_OPT_COMMAND_TIMEOUT_MS] = {300000, 1, INT32_MAX},
    [MXGW_OPT_DATA_TIMEOUT_MS] = {180000, 1, INT32_MAX},
    [MXGW_OPT_BARE_NEWLINE] = {MXGW_BARE_REJECT, 0, 1},
    [MXGW_OPT_STARTTLS] = {0, 0, 1},
    [MXGW_OPT_REQUIRE_TLS] = {0, 0, 1},
    [MXGW_OPT_AUTH] = {0, 0, 1},
    [MXGW_OPT_AUTH_PLAINTEXT] = {0, 0, 1},
    [MXGW_OPT_REQUIRE_AUTH] = {0, 0, 1},
    [MXGW_OPT_SMTPUTF8] = {1, 0, 1},
    [MXGW_OPT_CHUNKING] = {1, 0, 1},
    [MXGW_OPT_DSN] = {1, 0, 1},
    [MXGW_OPT_8BITMIME] = {1, 0, 1},
    [MXGW_OPT_PIPELINING] = {1, 0, 1},
    [MXGW_OPT_INPUT_BUFFER] = {65536, 16384, 64 * 1024 * 1024},
    [MXGW_OPT_OUTPUT_BUFFER] = {65536, 4096, 64 * 1024 * 1024},
    [MXGW_OPT_REJECT_HTTP] = {1, 0, 1},
    [MXGW_OPT_IMPLICIT_TLS] = {0, 0, 1},
};

static bool opt_valid(int key) {
  return key > 0 && key < OPT_MAX && opt_info[key].max != 0;
}

int mxgw_session_config_new(mxgw_session_config **out, const mxgw_mem *mem) {
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_session_config *c = mxgw__calloc(&m, 1, sizeof *c);
  if (!c)
    return MXGW_E_NOMEM;
  c->mem = m;
  atomic_init(&c->refs, 1);
  atomic_init(&c->frozen, false);
  for (int k = 0; k < OPT_MAX; k++)
    c->opt[k] = opt_info[k].def;
  c->hostname = mxgw__strdup(&m, "localhost");
  c->greeting = mxgw__strdup(&m, "ESMTP");
  if (!c->hostname || !c->greeting) {
    mxgw__free(&m, c->hostname);
    mxgw__free(&m, c->greeting);
    mxgw__free(&m, c);
    return MXGW_E_NOMEM;
  }
  *out = c;
  return MXGW_OK;
}

static void config_unref(mxgw_session_config *c) {
  if (!c || atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  mxgw_mem m = c->mem;
  if (c->tls)
    mxgw__tls_unref(c->tls);
  mxgw__free(&m, c->hostname);
  mxgw__free(&m, c->greeting);
  mxgw__free(&m, c);
}

void mxgw_session_config_free(mxgw_session_config *cfg) { config_unref(cfg); }

int mxgw_session_config_set_int(mxgw_session_config *cfg, int key,
                                int64_t value) {
  if (!cfg || !opt_valid(key))
    return MXGW_E_INVAL;
  if (atomic_load(&cfg->frozen))
    return MXGW_E_BUSY;
  if (value < opt_info[key].min || value > opt_info[key].max)
    return MXGW_E_RANGE;
  cfg->opt[key] = value;
  return MXGW_OK;
}

int mxgw_session_config_get_int(const mxgw_session_config *cfg, int key,
                                int64_t *out) {
  if (!cfg || !out || !opt_valid(key))
    return MXGW_E_INVAL;
  *out = cfg->opt[key];
  return MXGW_OK;
}

static bool printable_text(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 32 || *s == 127)
      return false;
  return true;
}

int mxgw_session_config_set_str(mxgw_session_config *cfg, int key,
                                const char *value) {
  if (!cfg || !value)
    return MXGW_E_INVAL;
  if (atomic_load(&cfg->frozen))
    return MXGW_E_BUSY;
  char **slot;
  switch (key) {
  case MXGW_OPT_HOSTNAME:
    if (!mxgw__valid_domain(value, strlen(value), false) &&
        !mxgw__valid_addr_literal(value, strlen(value)))
      return MXGW_E_INVAL;
    slot = &cfg->hostname;
    break;
  case MXGW_OPT_GREETING:
    if (!printable_text(value) || strlen(value) > 400)
      return MXGW_E_INVAL;
    slot = &cfg->greeting;
    break;
  default:
    return MXGW_E_INVAL;
  }
  char *d = mxgw__strdup(&cfg->mem, value);
  if (!d)
    return MXGW_E_NOMEM;
  mxgw__free(&cfg->mem, *slot);
  *slot = d;
  return MXGW_OK;
}

int mxgw_session_config_set_tls(mxgw_session_config *cfg, struct mxgw_tls *tls) {
  if (!cfg)
    return MXGW_E_INVAL;
  if (atomic_load(&cfg->frozen))
    return MXGW_E_BUSY;
  mxgw__tls_set(&cfg->tls, tls);
  return MXGW_OK;
}

/* ------------------------------------------------------------------------ */
/* Session state                                                            */
/* ------------------------------------------------------------------------ */

static const char *const cmd_names[C_COUNT] = {
    "helo", "ehlo", "mail", "rcpt", "data", "bdat", "rset", "noop", "quit",
    "vrfy", "expn", "help", "starttls", "auth", "unknown"};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static int set_err(mxgw_session *s, int code, const char *msg) {
  snprintf(s->errmsg, sizeof s->errmsg, "%s", msg);
  return code;
}

static void slog(mxgw_session *s, int kind, const char *text, size_t len) {
  if (s->log_fn)
    s->log_fn(s->log_user, s, kind, text, len);
}

static void slogf(mxgw_session *s, int kind, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
static void slogf(mxgw_session *s, int kind, const char *fmt, ...) {
  if (!s->log_fn)
    return;
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  slog(s, kind, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static int tls_pump(mxgw_session *s);

static void push_ev(mxgw_session *s, int type, const char *reason) {
  if (s->evq_n == (int)(sizeof s->evq / sizeof s->evq[0]))
    return; /* cannot happen: at most ABORT, RSET, CLOSE are ever queued */
  int i = (s->evq_head + s->evq_n) % (int)(sizeof s->evq / sizeof s->evq[0]);
  s->evq[i].type = type;
  s->evq[i].reason = reason;
  s->evq_n++;
}

static const char *hostname(const mxgw_session *s) { return s->cfg->hostname; }

static void arm_timer(mxgw_session *s) {
  if (s->state == ST_CLOSED || s->state == ST_NEW) {
    s->deadline = -1;
    return;
  }
  int64_t t = (s->state == ST_DATA || s->state == ST_BDAT ||
               s->state == ST_BDAT_SKIP)
                  ? s->opt[MXGW_OPT_DATA_TIMEOUT_MS]
                  : s->opt[MXGW_OPT_COMMAND_TIMEOUT_MS];
  s->deadline = s->now + t;
}

/*
 * Queue a reply. text may hold '\n'-separated lines; enh may be NULL (no
 * enhanced code: greeting and EHLO/HELO replies, RFC 2034 3). Returns
 * MXGW_E_NOMEM on allocation failure, leaving `ob` unchanged.
 */
static int reply_to(mxgw_session *s, mxgw_buf *ob, int code, const char *enh,
                    const char *text) {
  size_t before = mxgw__buf_size(ob);
  const char *line = text;
  int rv = MXGW_OK;
  for (;;) {
    const char *nl = strchr(line, '\n');
    size_t ll = nl ? (size_t)(nl - line) : strlen(line);
    char sep = nl ? '-' : ' ';
    if (enh)
      rv = mxgw__buf_appendf(ob, &s->mem, "%d%c%s %.*s\r\n", code, sep, enh,
                             (int)ll, line);
    else
      rv = mxgw__buf_appendf(ob, &s->mem, "%d%c%.*s\r\n", code, sep,
                             (int)ll, line);
    if (rv)
      break;
    if (!nl)
      break;
    line = nl + 1;
  }
  if (rv) {
    /* roll back a partly written multi-line reply */
    ob->len = ob->off + before;
    return rv;
  }
  slog(s, MXGW_LOG_REPLY, mxgw__buf_ptr(ob) + before,
       mxgw__buf_size(ob) - before);
  return MXGW_OK;
}

/* With TLS inside the session, replies wait in pout for encryption. */
static int reply(mxgw_session *s, int code, const char *enh, const char *text) {
  return reply_to(s, s->ssl ? &s->pout : &s->out, code, enh, text);
}

static int replyf(mxgw_session *s, int code, const char *enh, const char *fmt,
                  ...) MXGW_PRINTF(4, 5);
static int replyf(mxgw_session *s, int code, const char *enh, const char *fmt,
                  ...) {
  char buf[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return reply(s, code, enh, buf);
}

static void begin_close(mxgw_session *s, const char *reason) {
  if (s->state == ST_CLOSED)
    return;
  s->state = ST_CLOSED;
  s->pending = 0;
  s->close_reason = reason;
  s->deadline = -1;
  if (s->ssl)
    mxgw__stls_close_notify(s); /* after the last reply */
  /* Wipe credentials that may still be held. */
  if (s->auth.data)
    memset(s->auth.data, 0, s->auth.cap);
  mxgw__buf_reset(&s->in);
}

static void log_disconnect(mxgw_session *s) {
  if (!s->log_fn)
    return;
  char buf[600];
  int n = snprintf(buf, sizeof buf, "disconnect from %s[%s]",
                   s->peer_host ? s->peer_host : "unknown",
                   s->peer_addr ? s->peer_addr : "unknown");
  uint32_t ok = 0, tot = 0;
  for (int c = 0; c < C_COUNT && n > 0 && (size_t)n < sizeof buf; c++) {
    ok += s->cmd_ok[c];
    tot += s->cmd_total[c];
    if (!s->cmd_total[c])
      continue;
    if (s->cmd_ok[c] == s->cmd_total[c])
      n += snprintf(buf + n, sizeof buf - (size_t)n, " %s=%u", cmd_names[c],
                    s->cmd_total[c]);
    else
      n += snprintf(buf + n, sizeof buf - (size_t)n, " %s=%u/%u", cmd_names[c],
                    s->cmd_ok[c], s->cmd_total[c]);
  }
  if (n > 0 && (size_t)n < sizeof buf) {
    if (ok == tot)
      n += snprintf(buf + n, sizeof buf - (size_t)n, " commands=%u", tot);
    else
      n += snprintf(buf + n, sizeof buf - (size_t)n, " commands=%u/%u", ok,
                    tot);
  }
  if (n < 0)
    return;
  slog(s, MXGW_LOG_DISCONNECT, buf,
       (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Abort the message in progress, if any (emits MESSAGE_ABORT once; no BODY
 * follows it). */
static void abort_message(mxgw_session *s, const char *reason) {
  if (s->data_started && !s->msg_fail) {
    push_ev(s, MXGW_EV_MESSAGE_ABORT, reason);
    s->msg_fail = FAIL_ABORTED;
  }
}

static void reset_tx(mxgw_session *s) {
  s->in_tx = false;
  s->mail_from = NULL;
  s->mail_from_len = 0;
  s->size_param = -1;
  s->smtputf8 = false;
  s->body_type = NULL;
  s->ret = NULL;
  s->envid = NULL;
  s->mail_auth = NULL;
  s->nrcpt = 0;
  s->rcpt_attempts = 0;
  memset(&s->cand, 0, sizeof s->cand);
  s->data_started = false;
  s->bdat_mode = false;
  s->bdat_cr = false;
  s->msg_size = 0;
  s->line_len = 0;
  s->msg_fail = FAIL_NONE;
  mxgw__arena_reset(&s->arena, &s->mem);
}

/* Fatal allocation failure: best-effort 421, then close. */
static int fail_nomem(mxgw_session *s) {
  abort_message(s, "out of memory");
  (void)replyf(s, 421, "4.3.0", "%s Error: out of memory", hostname(s));
  begin_close(s, "out of memory");
  set_err(s, MXGW_E_NOMEM, "out of memory");
  return MXGW_E_NOMEM;
}

/* Count a client error; past the limit, 421 and close. */
static int client_error(mxgw_session *s) {
  s->errors++;
  if (s->errors >= s->opt[MXGW_OPT_MAX_ERRORS] && s->state != ST_CLOSED) {
    abort_message(s, "too many errors");
    if (replyf(s, 421, "4.7.0", "%s Error: too many errors", hostname(s)))
      return MXGW_E_NOMEM;
    begin_close(s, "too many errors");
  }
  return MXGW_OK;
}

/* Reply to a client mistake (4xx/5xx) and count it. */
static int err_reply(mxgw_session *s, int code, const char *enh,
                     const char *text) {
  int rv = reply(s, code, enh, text);
  if (rv)
    return rv;
  return client_error(s);
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

int mxgw_session_new(mxgw_session **out, mxgw_session_config *cfg,
                     const mxgw_mem *mem) {
  if (!out || !cfg)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_session *s = mxgw__calloc(&m, 1, sizeof *s);
  if (!s)
    return MXGW_E_NOMEM;
  s->mem = m;
  atomic_store(&cfg->frozen, true);
  atomic_fetch_add(&cfg->refs, 1);
  s->cfg = cfg;
  s->opt = cfg->opt;
  s->state = ST_NEW;
  s->deadline = -1;
  s->size_param = -1;
  s->tls = cfg->opt[MXGW_OPT_IMPLICIT_TLS] != 0;
  /* A whole command line (or AUTH line, RFC 4954 4) must fit. */
  size_t need = (size_t)cfg->opt[MXGW_OPT_MAX_COMMAND_LINE];
  if (need < 12288)
    need = 12288;
  s->in_cap = (size_t)cfg->opt[MXGW_OPT_INPUT_BUFFER];
  if (s->in_cap < need + 1)
    s->in_cap = need + 1;
  *out = s;
  return MXGW_OK;
}

void mxgw_session_free(mxgw_session *s) {
  if (!s)
    return;
  mxgw_mem m = s->mem;
  if (s->auth.data)
    memset(s->auth.data, 0, s->auth.cap);
  mxgw__buf_free(&s->auth, &m);
  mxgw__buf_free(&s->in, &m);
  mxgw__buf_free(&s->out, &m);
  mxgw__buf_free(&s->pout, &m);
  mxgw__buf_free(&s->tmp, &m);
  mxgw__stls_free(s);
  mxgw__free(&m, s->tls_peer);
  mxgw__arena_free(&s->arena, &m);
  mxgw__free(&m, s->rcpts);
  mxgw__free(&m, s->peer_addr);
  mxgw__free(&m, s->peer_host);
  mxgw__free(&m, s->helo);
  mxgw__free(&m, s->tls_proto);
  mxgw__free(&m, s->tls_cipher);
  mxgw__free(&m, s->auth_identity);
  mxgw__free(&m, s->bdat_rej_text);
  config_unref(s->cfg);
  mxgw__free(&m, s);
}

/* Replaces *pa and *pb with copies of a and b (NULL for NULL): both or,
 * when there is no memory for them, neither. */
static int set_str_pair(mxgw_session *s, char **pa, const char *a, char **pb,
                        const char *b) {
  char *ca = a ? mxgw__strdup(&s->mem, a) : NULL;
  char *cb = b ? mxgw__strdup(&s->mem, b) : NULL;
  if ((a && !ca) || (b && !cb)) {
    mxgw__free(&s->mem, ca);
    mxgw__free(&s->mem, cb);
    return set_err(s, MXGW_E_NOMEM, "out of memory");
  }
  mxgw__free(&s->mem, *pa);
  mxgw__free(&s->mem, *pb);
  *pa = ca;
  *pb = cb;
  return MXGW_OK;
}

int mxgw_session_set_peer(mxgw_session *s, const char *addr, int port,
                          const char *host) {
  if (!s || !addr)
    return MXGW_E_INVAL;
  if (s->state != ST_NEW)
    return set_err(s, MXGW_E_STATE, "set_peer after start");
  unsigned char tmp[16];
  if (inet_pton(AF_INET, addr, tmp) != 1 && inet_pton(AF_INET6, addr, tmp) != 1)
    return set_err(s, MXGW_E_INVAL, "peer address is not an IPv4/IPv6 address");
  if (port < 0 || port > 65535)
    return set_err(s, MXGW_E_INVAL, "peer port out of range");
  if (host && !mxgw__valid_domain(host, strlen(host), false))
    return set_err(s, MXGW_E_INVAL, "peer host name is not a valid domain");
  int rv = set_str_pair(s, &s->peer_addr, addr, &s->peer_host, host);
  if (rv)
    return rv;
  s->peer_port = port;
  return MXGW_OK;
}

int mxgw_session_start(mxgw_session *s, int64_t now_ms) {
  if (!s)
    return MXGW_E_INVAL;
  if (s->state != ST_NEW)
    return set_err(s, MXGW_E_STATE, "session already started");
  s->now = now_ms;
  s->state = ST_CONNECT;
  s->deadline = -1; /* no timer until the greeting is sent */
  slogf(s, MXGW_LOG_CONNECT, "connect from %s[%s]",
        s->peer_host ? s->peer_host : "unknown",
        s->peer_addr ? s->peer_addr : "unknown");
  if (s->opt[MXGW_OPT_IMPLICIT_TLS] && s->cfg->tls) {
    /* RFC 8314: TLS from the first byte; the greeting waits for it. */
    int rv = mxgw__stls_begin(s);
    if (rv) {
      slogf(s, MXGW_LOG_PROTOCOL, "%s", s->errmsg);
      begin_close(s, "TLS not available");
      return rv;
    }
  }
  return MXGW_OK;
}

void mxgw_session_set_user(mxgw_session *s, void *user) {
  if (s)
    s->user = user;
}
void *mxgw_session_get_user(const mxgw_session *s) { return s ? s->user : NULL; }

void mxgw_session_set_log(mxgw_session *s, mxgw_log_fn fn, void *user) {
  if (!s)
    return;
  s->log_fn = fn;
  s->log_user = user;
}

const char *mxgw_session_errmsg(const mxgw_session *s) {
  return s ? s->errmsg : "";
}

/* ------------------------------------------------------------------------ */
/* I/O                                                                      */
/* ------------------------------------------------------------------------ */

int mxgw_session_feed(mxgw_session *s, const void *buf, size_t len,
                      int64_t now_ms) {
  if (!s || (!buf && len))
    return MXGW_E_INVAL;
  if (s->state == ST_NEW)
    return set_err(s, MXGW_E_STATE, "feed before start");
  if (s->state == ST_CLOSED)
    return set_err(s, MXGW_E_CLOSED, "session is closed");
  if (s->eof)
    return set_err(s, MXGW_E_STATE, "feed after eof");
  s->now = now_ms;
  if (len == 0)
    return 0;
  if (s->ssl) {
    size_t taken;
    int rv = mxgw__stls_input(s, buf, len, &taken);
    if (rv)
      return rv; /* s->errmsg says why */
    s->bytes_in += (int64_t)taken;
    if (!s->pending)
      arm_timer(s);
    rv = tls_pump(s);
    if (rv == MXGW_E_NOMEM)
      return rv;
    return (int)taken;
  }
  if (s->state == ST_CONNECT) {
    /* Early talker: input before our greeting (RFC 5321 3.1, 4.3.1). */
    s->bytes_in += (int64_t)len;
    slogf(s, MXGW_LOG_PROTOCOL, "early talker: %zu bytes before the greeting",
          len);
    if (replyf(s, 554, "5.5.1", "%s Error: talking before the greeting",
               hostname(s)))
      return fail_nomem(s);
    begin_close(s, "early talker");
    return (int)(len > INT32_MAX ? INT32_MAX : len);
  }
  if (s->state == ST_TLS_WAIT) {
    /* Plaintext after an accepted STARTTLS is never executed (CVE-2011-0411). */
    s->bytes_in += (int64_t)len;
    slogf(s, MXGW_LOG_PROTOCOL,
          "discarded %zu bytes of plaintext sent after STARTTLS", len);
    return (int)(len > INT32_MAX ? INT32_MAX : len);
  }
  size_t cap = s->in_cap;
  size_t have = mxgw__buf_size(&s->in);
  if (have >= cap)
    return 0;
  size_t take = len < cap - have ? len : cap - have;
  if (take > INT32_MAX)
    take = INT32_MAX;
  if (mxgw__buf_append(&s->in, &s->mem, buf, take))
    return set_err(s, MXGW_E_NOMEM, "out of memory");
  s->bytes_in += (int64_t)take;
  if (!s->pending)
    arm_timer(s);
  return (int)take;
}

int mxgw_session_eof(mxgw_session *s) {
  if (!s)
    return MXGW_E_INVAL;
  if (s->state == ST_NEW)
    return set_err(s, MXGW_E_STATE, "eof before start");
  /* Input already buffered is still processed and its replies queued (the
   * client may only have shut down its sending side); the session closes
   * when that input is used up. */
  s->eof = true;
  return MXGW_OK;
}

int mxgw_session_abort(mxgw_session *s) {
  if (!s)
    return MXGW_E_INVAL;
  if (s->state == ST_NEW)
    return set_err(s, MXGW_E_STATE, "abort before start");
  if (s->state != ST_CLOSED) {
    if (s->state == ST_DATA || s->state == ST_BDAT || s->in_tx)
      slogf(s, MXGW_LOG_PROTOCOL, "lost connection after %s",
            s->state == ST_DATA || s->state == ST_BDAT ? "DATA" : "MAIL");
    abort_message(s, "connection lost");
    begin_close(s, "connection lost");
  }
  /* Nothing buffered can reach the client any more. */
  s->eof = true;
  mxgw__buf_reset(&s->in);
  mxgw__buf_reset(&s->out);
  mxgw__buf_reset(&s->pout);
  return MXGW_OK;
}

int mxgw_session_output(mxgw_session *s, const char **ptr, size_t *len) {
  if (!s || !ptr || !len)
    return MXGW_E_INVAL;
  if (s->ssl) {
    int rv = mxgw__stls_flush(s);
    if (rv && s->state != ST_CLOSED) {
      slogf(s, MXGW_LOG_PROTOCOL, "%s", s->errmsg);
      abort_message(s, "TLS error");
      begin_close(s, "TLS error");
    }
  }
  *ptr = mxgw__buf_ptr(&s->out);
  *len = mxgw__buf_size(&s->out);
  if (!s->out.data)
    *ptr = "";
  return MXGW_OK;
}

int mxgw_session_consume(mxgw_session *s, size_t n) {
  if (!s || n > mxgw__buf_size(&s->out))
    return MXGW_E_INVAL;
  mxgw__buf_consume(&s->out, n);
  s->bytes_out += (int64_t)n;
  if (mxgw__buf_size(&s->out) == 0 && s->out.cap > 4096)
    mxgw__buf_free(&s->out, &s->mem);
  return MXGW_OK;
}

int mxgw_session_want(const mxgw_session *s) {
  if (!s)
    return 0;
  int w = 0;
  if (mxgw__buf_size(&s->out) || mxgw__stls_want_write(s))
    w |= MXGW_WANT_WRITE;
  if (s->state == ST_CLOSED)
    return w | MXGW_WANT_CLOSE;
  if (s->state != ST_NEW && !s->eof &&
      mxgw__buf_size(&s->in) + mxgw__stls_input_pending(s) < s->in_cap)
    w |= MXGW_WANT_READ;
  return w;
}

int64_t mxgw_session_deadline(const mxgw_session *s) {
  if (!s || s->pending || s->state == ST_CLOSED || s->state == ST_NEW)
    return -1;
  return s->deadline;
}

int mxgw_session_tick(mxgw_session *s, int64_t now_ms) {
  if (!s)
    return MXGW_E_INVAL;
  if (s->state == ST_NEW)
    return set_err(s, MXGW_E_STATE, "tick before start");
  s->now = now_ms;
  if (s->state == ST_CLOSED || s->pending || s->deadline < 0 ||
      now_ms < s->deadline)
    return 0;
  if (s->ssl && s->tls_hs) {
    /* Nothing can be said in plaintext any more, and nothing encrypted
     * yet: just close. */
    slogf(s, MXGW_LOG_PROTOCOL, "timeout during the TLS handshake");
    begin_close(s, "TLS handshake timeout");
    return 1;
  }
  abort_message(s, "timeout");
  slogf(s, MXGW_LOG_PROTOCOL, "timeout after %s",
        s->state == ST_DATA || s->state == ST_BDAT ? "DATA" : "command");
  if (replyf(s, 421, "4.4.2", "%s Error: timeout exceeded", hostname(s)))
    return fail_nomem(s);
  begin_close(s, "timeout");
  return 1;
}

int mxgw_session_shutdown(mxgw_session *s, const char *text) {
  if (!s)
    return MXGW_E_INVAL;
  if (s->state == ST_CLOSED)
    return set_err(s, MXGW_E_CLOSED, "session is closed");
  if (text && !printable_text(text))
    return set_err(s, MXGW_E_INVAL, "text has control characters");
  abort_message(s, "server shutdown");
  if (s->state != ST_NEW) {
    int rv = text ? replyf(s, 421, "4.3.2", "%s %s", hostname(s), text)
                  : replyf(s, 421, "4.3.2", "%s Service shutting down",
                           hostname(s));
    if (rv)
      return fail_nomem(s);
  }
  begin_close(s, "server shutdown");
  return MXGW_OK;
}

/* ------------------------------------------------------------------------ */
/* EHLO reply and Received header                                           */
/* ------------------------------------------------------------------------ */

static bool auth_offered(const mxgw_session *s) {
  return s->opt[MXGW_OPT_AUTH] && (s->tls || s->opt[MXGW_OPT_AUTH_PLAINTEXT]);
}
static bool starttls_offered(const mxgw_session *s) {
  return s->opt[MXGW_OPT_STARTTLS] && !s->tls;
}

static int ehlo_reply(mxgw_session *s, const char *first) {
  mxgw_buf *t = &s->tmp;
  mxgw__buf_reset(t);
  int rv = mxgw__buf_appendf(t, &s->mem, "%s", first);
  if (!rv && s->opt[MXGW_OPT_PIPELINING])
    rv = mxgw__buf_appendf(t, &s->mem, "\nPIPELINING");
  if (!rv) {
    if (s->opt[MXGW_OPT_MAX_MESSAGE_SIZE])
      rv = mxgw__buf_appendf(t, &s->mem, "\nSIZE %lld",
                             (long long)s->opt[MXGW_OPT_MAX_MESSAGE_SIZE]);
    else
      rv = mxgw__buf_appendf(t, &s->mem, "\nSIZE");
  }
  if (!rv && starttls_offered(s))
    rv = mxgw__buf_appendf(t, &s->mem, "\nSTARTTLS");
  if (!rv && auth_offered(s) && !s->auth_identity)
    rv = mxgw__buf_appendf(t, &s->mem, "\nAUTH PLAIN LOGIN");
  if (!rv)
    rv = mxgw__buf_appendf(t, &s->mem, "\nENHANCEDSTATUSCODES");
  if (!rv && s->opt[MXGW_OPT_8BITMIME])
    rv = mxgw__buf_appendf(t, &s->mem, "\n8BITMIME");
  if (!rv && s->opt[MXGW_OPT_DSN])
    rv = mxgw__buf_appendf(t, &s->mem, "\nDSN");
  if (!rv && s->opt[MXGW_OPT_SMTPUTF8])
    rv = mxgw__buf_appendf(t, &s->mem, "\nSMTPUTF8");
  if (!rv && s->opt[MXGW_OPT_CHUNKING])
    rv = mxgw__buf_appendf(t, &s->mem, "\nCHUNKING");
  if (!rv)
    rv = mxgw__buf_append(t, &s->mem, "", 1);
  if (rv)
    return rv;
  return reply(s, 250, NULL, mxgw__buf_ptr(t));
}

static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed",
                                   "Thu", "Fri", "Sat"};
static const char *const month[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

int mxgw_session_received_header(mxgw_session *s, const char *queue_id,
                                 int64_t unix_time, const char **ptr,
                                 size_t *len) {
  if (!s || !ptr || !len)
    return MXGW_E_INVAL;
  if (!s->in_tx)
    return set_err(s, MXGW_E_STATE, "no transaction");
  if (queue_id) {
    for (const char *q = queue_id; *q; q++)
      if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
            (*q >= '0' && *q <= '9') || strchr(".-_@<>$", *q)))
        return set_err(s, MXGW_E_INVAL, "queue id must be an atom");
  }
  time_t t = (time_t)unix_time;
  struct tm tm;
  if (!gmtime_r(&t, &tm))
    return set_err(s, MXGW_E_INVAL, "time out of range");
  mxgw_buf *b = &s->tmp;
  mxgw__buf_reset(b);
  const mxgw_mem *m = &s->mem;
  const char *addr = s->peer_addr ? s->peer_addr : NULL;
  bool v6 = addr && strchr(addr, ':');
  const char *helo = s->helo;
  bool helo_ok = helo && (mxgw__valid_domain(helo, strlen(helo), true) ||
                          mxgw__valid_addr_literal(helo, strlen(helo)));
  int rv = mxgw__buf_appendf(b, m, "Received: from %s", helo_ok ? helo : "unknown");
  if (!rv) {
    /* TCP-info = [Domain FWS] address-literal (RFC 5321 4.4) */
    if (addr)
      rv = mxgw__buf_appendf(b, m, " (%s [%s%s])",
                             s->peer_host ? s->peer_host : "unknown",
                             v6 ? "IPv6:" : "", addr);
    else
      rv = mxgw__buf_appendf(b, m, " (unknown)");
  }
  if (!rv && helo && !helo_ok) {
    /* keep an invalid HELO argument visible, in a comment, quoted */
    rv = mxgw__buf_appendf(b, m, "\r\n\t(helo \"");
    for (const char *q = helo; !rv && *q; q++)
      rv = (*q == '"' || *q == '\\' || *q == '(' || *q == ')')
               ? mxgw__buf_appendf(b, m, "\\%c", *q)
               : mxgw__buf_append(b, m, q, 1);
    if (!rv)
      rv = mxgw__buf_appendf(b, m, "\")");
  }
  if (!rv && s->tls)
    rv = mxgw__buf_appendf(b, m, "\r\n\t(using %s with cipher %s)",
                           s->tls_proto ? s->tls_proto : "TLS",
                           s->tls_cipher ? s->tls_cipher : "unknown");
  if (!rv) {
    const char *base = s->smtputf8 ? "UTF8SMTP"
                       : (s->is_ehlo || s->tls || s->auth_identity) ? "ESMTP"
                                                                    : "SMTP";
    bool st = s->tls && strcmp(base, "SMTP") != 0;
    rv = mxgw__buf_appendf(b, m, "\r\n\tby %s (libmxgw) with %s%s%s",
                           hostname(s), base, st ? "S" : "",
                           s->auth_identity ? "A" : "");
  }
  if (!rv && queue_id && *queue_id)
    rv = mxgw__buf_appendf(b, m, " id %s", queue_id);
  if (!rv && s->nrcpt == 1)
    rv = mxgw__buf_appendf(b, m, "\r\n\tfor <%.*s>", (int)s->rcpts[0].len,
                           s->rcpts[0].addr);
  if (!rv)
    rv = mxgw__buf_appendf(b, m, "; %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
                           wday[tm.tm_wday], tm.tm_mday, month[tm.tm_mon],
                           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (rv)
    return set_err(s, MXGW_E_NOMEM, "out of memory");
  *ptr = mxgw__buf_ptr(b);
  *len = mxgw__buf_size(b);
  return MXGW_OK;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

/* Result of a command handler: an event to return, 0 to go on, or < 0. */

static int decide(mxgw_session *s, int ev, int cmd) {
  s->pending = ev;
  s->pending_cmd = cmd;
  s->announced = false;
  s->deadline = -1;
  return ev;
}

static const char *skip_sp(const char *p, const char *end) {
  while (p < end && *p == ' ')
    p++;
  return p;
}

static int cmd_helo(mxgw_session *s, const char *arg, size_t alen, bool ehlo) {
  if (alen == 0 || memchr(arg, ' ', alen))
    return err_reply(s, 501, "5.5.4", ehlo ? "Syntax: EHLO hostname"
                                           : "Syntax: HELO hostname");
  for (size_t i = 0; i < alen; i++)
    if ((unsigned char)arg[i] < 33 || arg[i] == 127)
      return err_reply(s, 501, "5.5.4", "Syntax: EHLO hostname");
  if (mxgw__has_8bit(arg, alen) && !mxgw__utf8_valid(arg, alen))
    return err_reply(s, 501, "5.5.4", "Syntax: EHLO hostname");
  /* EHLO/HELO reset the transaction (RFC 5321 4.1.4). */
  if (s->in_tx) {
    abort_message(s, "HELO reset");
    push_ev(s, MXGW_EV_RSET, "HELO");
    reset_tx(s);
  }
  /* The argument is stored now so the application can read it. */
  char *h = mxgw__memdup0(&s->mem, arg, alen);
  if (!h)
    return fail_nomem(s);
  mxgw__free(&s->mem, s->helo);
  s->helo = h;
  s->is_ehlo = ehlo;
  return decide(s, MXGW_EV_HELO, ehlo ? C_EHLO : C_HELO);
}

/* Parse ESMTP parameters "K=V K2 ..." of MAIL (rcpt=false) or RCPT. */
static int parse_params(mxgw_session *s, const char *p, const char *end,
                        bool rcpt_cmd, const char **enh, const char **msg,
                        int *code) {
  bool seen[8] = {false};
  *code = 0;
  while ((p = skip_sp(p, end)) < end) {
    const char *k = p;
    while (p < end && *p != ' ' && *p != '=')
      p++;
    size_t klen = (size_t)(p - k);
    const char *v = NULL;
    size_t vlen = 0;
    if (p < end && *p == '=') {
      v = ++p;
      while (p < end && *p != ' ')
        p++;
      vlen = (size_t)(p - v);
      if (vlen == 0)
        goto bad;
      for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 33 || c == '=' || c == 127 || (c >= 0x80 && !s->smtputf8))
          goto bad;
      }
    }
    int idx = -1;
    if (!rcpt_cmd) {
      if (mxgw__ieq(k, klen, "SIZE")) {
        idx = 0;
        /* RFC 1870: size-value ::= 1*20DIGIT; saturate past INT64_MAX */
        if (!v || vlen > 20)
          goto bad;
        int64_t n = 0;
        for (size_t i = 0; i < vlen; i++) {
          if (v[i] < '0' || v[i] > '9')
            goto bad;
          int d = v[i] - '0';
          n = n > (INT64_MAX - d) / 10 ? INT64_MAX : n * 10 + d;
        }
        s->size_param = n;
      } else if (mxgw__ieq(k, klen, "BODY")) {
        idx = 1;
        if (!v)
          goto bad;
        if (mxgw__ieq(v, vlen, "7BIT"))
          s->body_type = "7BIT";
        else if (mxgw__ieq(v, vlen, "8BITMIME") && s->opt[MXGW_OPT_8BITMIME])
          s->body_type = "8BITMIME";
        else {
          *code = 555, *enh = "5.5.4", *msg = "Unsupported BODY type";
          return 0;
        }
      } else if (mxgw__ieq(k, klen, "SMTPUTF8") && s->opt[MXGW_OPT_SMTPUTF8]) {
        idx = 2;
        if (v)
          goto bad;
        s->smtputf8 = true;
      } else if (mxgw__ieq(k, klen, "RET") && s->opt[MXGW_OPT_DSN]) {
        idx = 3;
        if (v && mxgw__ieq(v, vlen, "FULL"))
          s->ret = "FULL";
        else if (v && mxgw__ieq(v, vlen, "HDRS"))
          s->ret = "HDRS";
        else
          goto bad;
      } else if ((mxgw__ieq(k, klen, "ENVID") && s->opt[MXGW_OPT_DSN]) ||
                 (mxgw__ieq(k, klen, "AUTH") && s->opt[MXGW_OPT_AUTH])) {
        bool envid = (k[0] | 32) == 'e';
        idx = envid ? 4 : 5;
        if (!v || (envid && vlen > 100))
          goto bad;
        char *d = mxgw__arena_alloc(&s->arena, &s->mem, vlen + 1);
        if (!d)
          return MXGW_E_NOMEM;
        long dl = mxgw__xtext_decode(v, vlen, d);
        if (dl < 0)
          goto bad;
        d[dl] = '\0';
        if (envid)
          s->envid = d;
        else
          s->mail_auth = d;
      }
    } else {
      if (mxgw__ieq(k, klen, "NOTIFY") && s->opt[MXGW_OPT_DSN]) {
        idx = 6;
        if (!v)
          goto bad;
        int flags = 0;
        const char *q = v, *qe = v + vlen;
        while (q < qe) {
          const char *c = memchr(q, ',', (size_t)(qe - q));
          size_t wl = (size_t)((c ? c : qe) - q);
          int f = mxgw__ieq(q, wl, "NEVER")     ? MXGW_NOTIFY_NEVER
                  : mxgw__ieq(q, wl, "SUCCESS") ? MXGW_NOTIFY_SUCCESS
                  : mxgw__ieq(q, wl, "FAILURE") ? MXGW_NOTIFY_FAILURE
                  : mxgw__ieq(q, wl, "DELAY")   ? MXGW_NOTIFY_DELAY
                                                : 0;
          if (!f || (flags & f))
            goto bad;
          flags |= f;
          q = c ? c + 1 : qe;
          if (c && q == qe)
            goto bad;
        }
        /* RFC 3461 4.1: NEVER must appear alone. */
        if ((flags & MXGW_NOTIFY_NEVER) && flags != MXGW_NOTIFY_NEVER)
          goto bad;
        s->cand.notify_flags = flags;
        s->cand.notify = mxgw__arena_strndup(&s->arena, &s->mem, v, vlen);
        if (!s->cand.notify)
          return MXGW_E_NOMEM;
      } else if (mxgw__ieq(k, klen, "ORCPT") && s->opt[MXGW_OPT_DSN]) {
        idx = 7;
        if (!v || vlen > 500)
          goto bad;
        const char *semi = memchr(v, ';', vlen);
        if (!semi || semi == v || semi == v + vlen - 1)
          goto bad;
        char *d = mxgw__arena_alloc(&s->arena, &s->mem, vlen + 1);
        if (!d)
          return MXGW_E_NOMEM;
        size_t tl = (size_t)(semi - v) + 1;
        memcpy(d, v, tl);
        long dl = mxgw__xtext_decode(semi + 1, vlen - tl, d + tl);
        if (dl < 0)
          goto bad;
        d[tl + (size_t)dl] = '\0';
        s->cand.orcpt = d;
      }
    }
    if (idx < 0) {
      *code = 555, *enh = "5.5.4";
      *msg = "Unsupported option";
      return 0;
    }
    if (seen[idx]) {
      *code = 501, *enh = "5.5.4", *msg = "Duplicate parameter";
      return 0;
    }
    seen[idx] = true;
  }
  return 0;
bad:
  *code = 501, *enh = "5.5.4", *msg = "Bad parameter value";
  return 0;
}

static int path_error(mxgw_session *s, int r, bool mail) {
  switch (r) {
  case MXGW_PATH_UTF8:
    return err_reply(s, 553, "5.6.7",
                     "Non-ASCII address requires the SMTPUTF8 parameter");
  case MXGW_PATH_TOOLONG:
    return err_reply(s, 501, mail ? "5.1.7" : "5.1.3",
                     "Address too long (RFC 5321 4.5.3.1)");
  case MXGW_PATH_NULL:
    return err_reply(s, 501, "5.1.3", "Null recipient not allowed");
  default:
    return err_reply(s, 501, mail ? "5.1.7" : "5.1.3",
                     mail ? "Bad sender address syntax"
                          : "Bad recipient address syntax");
  }
}

static int cmd_mail(mxgw_session *s, const char *arg, size_t alen) {
  if (!s->helo)
    return err_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
  if (s->in_tx)
    return err_reply(s, 503, "5.5.1", "Error: nested MAIL command");
  if (s->opt[MXGW_OPT_REQUIRE_TLS] && !s->tls)
    return err_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
  if (s->opt[MXGW_OPT_REQUIRE_AUTH] && !s->auth_identity)
    return err_reply(s, 530, "5.7.0", "Authentication required");
  if (s->messages >= s->opt[MXGW_OPT_MAX_MESSAGES])
    return err_reply(s, 452, "4.5.3", "Error: too many messages in this session");
  const char *end = arg + alen;
  if (alen < 5 || !mxgw__iprefix(arg, alen, "FROM:"))
    return err_reply(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
  const char *p = skip_sp(arg + 5, end);
  reset_tx(s);
  /* Parameters first: SMTPUTF8 decides whether UTF-8 is allowed in the path. */
  mxgw_path path;
  const char *gt = p;
  {
    /* find the end of the path to reach the parameters */
    bool q = false;
    if (gt >= end || *gt != '<')
      return err_reply(s, 501, "5.1.7", "Bad sender address syntax");
    for (; gt < end; gt++) {
      if (q && *gt == '\\' && gt + 1 < end) {
        gt++;
        continue;
      }
      if (*gt == '"')
        q = !q;
      else if (!q && *gt == '>')
        break;
    }
    if (gt >= end)
      return err_reply(s, 501, "5.1.7", "Bad sender address syntax");
    if (gt + 1 < end && gt[1] != ' ')
      return err_reply(s, 501, "5.1.7", "Bad sender address syntax");
  }
  const char *enh = NULL, *msg = NULL;
  int code = 0;
  if (parse_params(s, gt + 1, end, false, &enh, &msg, &code) < 0)
    return fail_nomem(s);
  if (code) {
    reset_tx(s);
    return err_reply(s, code, enh, msg);
  }
  int r = mxgw__parse_path(p, (size_t)(gt + 1 - p), true, false, s->smtputf8,
                           &path);
  if (r != MXGW_PATH_OK) {
    reset_tx(s);
    return path_error(s, r, true);
  }
  int64_t max = s->opt[MXGW_OPT_MAX_MESSAGE_SIZE];
  if (max && s->size_param > max) {
    reset_tx(s);
    return err_reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
  }
  s->mail_from = mxgw__arena_strndup(&s->arena, &s->mem,
                                     path.mailbox ? path.mailbox : "",
                                     path.mailbox_len);
  if (!s->mail_from)
    return fail_nomem(s);
  s->mail_from_len = path.mailbox_len;
  return decide(s, MXGW_EV_MAIL, C_MAIL);
}

static int cmd_rcpt(mxgw_session *s, const char *arg, size_t alen) {
  if (!s->in_tx)
    return err_reply(s, 503, "5.5.1", "Error: need MAIL command");
  if (s->data_started)
    return err_reply(s, 503, "5.5.1", "Error: BDAT in progress");
  const char *end = arg + alen;
  if (alen < 3 || !mxgw__iprefix(arg, alen, "TO:"))
    return err_reply(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
  const char *p = skip_sp(arg + 3, end);
  s->rcpt_attempts++;
  memset(&s->cand, 0, sizeof s->cand);
  mxgw_path path;
  int r = mxgw__parse_path(p, (size_t)(end - p), false, true, s->smtputf8, &path);
  if (r != MXGW_PATH_OK)
    return path_error(s, r, false);
  const char *after = p + path.consumed;
  if (after < end && *after != ' ')
    return err_reply(s, 501, "5.1.3", "Bad recipient address syntax");
  const char *enh = NULL, *msg = NULL;
  int code = 0;
  if (parse_params(s, after, end, true, &enh, &msg, &code) < 0)
    return fail_nomem(s);
  if (code)
    return err_reply(s, code, enh, msg);
  if ((int64_t)s->nrcpt >= s->opt[MXGW_OPT_MAX_RECIPIENTS])
    return err_reply(s, 452, "4.5.3", "Error: too many recipients");
  s->cand.addr =
      mxgw__arena_strndup(&s->arena, &s->mem, path.mailbox, path.mailbox_len);
  if (!s->cand.addr)
    return fail_nomem(s);
  s->cand.len = path.mailbox_len;
  return decide(s, MXGW_EV_RCPT, C_RCPT);
}

static int need_rcpt(mxgw_session *s) {
  if (!s->in_tx)
    return err_reply(s, 503, "5.5.1", "Error: need MAIL command");
  if (s->rcpt_attempts == 0)
    return err_reply(s, 503, "5.5.1", "Error: need RCPT command");
  /* RFC 2920 3.1: after pipelined RCPTs that all failed */
  return err_reply(s, 554, "5.5.1", "Error: no valid recipients");
}

static int cmd_data(mxgw_session *s, size_t alen) {
  if (alen)
    return err_reply(s, 501, "5.5.4", "Syntax: DATA");
  if (s->bdat_mode)
    return err_reply(s, 503, "5.5.1", "Error: BDAT in progress");
  if (!s->in_tx || s->nrcpt == 0)
    return need_rcpt(s);
  return decide(s, MXGW_EV_DATA, C_DATA);
}

static void start_message(mxgw_session *s) {
  s->data_started = true;
  s->msg_size = 0;
  s->line_len = 0;
  s->bol = BOL_HARD;
  s->msg_fail = FAIL_NONE;
}

static int cmd_bdat(mxgw_session *s, const char *arg, size_t alen) {
  const char *end = arg + alen, *p = arg;
  uint64_t n = 0;
  size_t digits = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    if (++digits > 18)
      break;
    n = n * 10 + (uint64_t)(*p++ - '0');
  }
  bool last = false;
  if (digits > 0 && digits <= 18) {
    const char *q = skip_sp(p, end);
    if (q == end && q == p)
      last = false;
    else if (q > p && mxgw__ieq(q, (size_t)(end - q), "LAST"))
      last = true;
    else
      digits = 0;
  }
  if (digits == 0 || digits > 18 || !s->opt[MXGW_OPT_CHUNKING]) {
    /* We cannot trust that a chunk of that size follows: close. */
    if (!s->opt[MXGW_OPT_CHUNKING]
            ? replyf(s, 502, "5.5.1", "Error: command not implemented")
            : replyf(s, 501, "5.5.4", "Syntax: BDAT size [LAST]"))
      return fail_nomem(s);
    s->errors++;
    if (replyf(s, 421, "4.5.4", "%s Error: cannot resynchronise after a bad BDAT",
               hostname(s)))
      return fail_nomem(s);
    begin_close(s, "bad BDAT");
    return 0;
  }
  s->bdat_left = n;
  s->bdat_last = last;
  s->bdat_chunk = n;
  if (!s->in_tx || s->nrcpt == 0 || (s->data_started && !s->bdat_mode) ||
      s->msg_fail) {
    /* Consume and discard the chunk, then reply (RFC 3030 2). */
    s->state = ST_BDAT_SKIP;
    return 0;
  }
  if (!s->data_started) {
    s->bdat_mode = true;
    return decide(s, MXGW_EV_DATA, C_BDAT);
  }
  s->state = ST_BDAT;
  return 0;
}

static int cmd_auth(mxgw_session *s, const char *arg, size_t alen) {
  if (!s->opt[MXGW_OPT_AUTH])
    return err_reply(s, 503, "5.5.1", "Error: authentication not enabled");
  if (!auth_offered(s))
    return err_reply(s, 538, "5.7.11",
                     "Encryption required for requested authentication mechanism");
  if (s->auth_identity)
    return err_reply(s, 503, "5.5.1", "Error: already authenticated");
  if (s->in_tx)
    return err_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
  if (!s->helo)
    return err_reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
  if (alen == 0)
    return err_reply(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
  const char *end = arg + alen, *sp = memchr(arg, ' ', alen);
  size_t mlen = sp ? (size_t)(sp - arg) : alen;
  const char *ir = sp ? skip_sp(sp, end) : end;
  if (mxgw__ieq(arg, mlen, "PLAIN"))
    s->auth_mech = 1;
  else if (mxgw__ieq(arg, mlen, "LOGIN"))
    s->auth_mech = 2;
  else
    return err_reply(s, 504, "5.5.4", "Unrecognized authentication type");
  mxgw__buf_reset(&s->auth);
  s->auth_step = 0;
  s->state = ST_AUTH;
  if (ir < end)
    return 1; /* initial response: the caller processes it as a line */
  if (s->auth_mech == 1)
    return reply(s, 334, NULL, "");
  return reply(s, 334, NULL, "VXNlcm5hbWU6"); /* "Username:" */
}

/* One AUTH continuation line (or initial response). */
static int auth_line(mxgw_session *s, const char *p, size_t n) {
  if (n == 1 && p[0] == '*') {
    s->state = ST_CMD;
    return err_reply(s, 501, "5.7.0", "Authentication aborted");
  }
  unsigned char *d;
  if (mxgw__buf_reserve(&s->auth, &s->mem, n / 4 * 3 + 2))
    return fail_nomem(s);
  d = (unsigned char *)s->auth.data + s->auth.len;
  long dl;
  if (n == 1 && p[0] == '=')
    dl = 0; /* RFC 4954 4: "=" is an empty initial response */
  else
    dl = mxgw__base64_decode(p, n, d);
  if (dl < 0) {
    s->state = ST_CMD;
    return err_reply(s, 501, "5.5.2", "Cannot decode response");
  }
  if (memchr(d, '\0', (size_t)dl) && s->auth_mech == 2) {
    s->state = ST_CMD;
    return err_reply(s, 501, "5.5.2", "Invalid response");
  }
  if (s->auth_mech == 1) {
    /* PLAIN (RFC 4616): authzid NUL authcid NUL passwd */
    unsigned char *z1 = memchr(d, '\0', (size_t)dl);
    unsigned char *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(d + dl - z1 - 1)) : NULL;
    if (!z1 || !z2 || memchr(z2 + 1, '\0', (size_t)(d + dl - z2 - 1)) ||
        z2 == z1 + 1) {
      s->state = ST_CMD;
      return err_reply(s, 501, "5.5.2", "Invalid PLAIN response");
    }
    d[dl] = '\0';
    s->auth_user_off = (size_t)(z1 + 1 - d);
    s->auth_pass_off = (size_t)(z2 + 1 - d);
    s->auth.len += (size_t)dl + 1;
  } else {
    /* LOGIN: first the user name, then the password */
    if (s->auth_step == 0) {
      /* stored as: "" NUL user NUL */
      memmove(d + 1, d, (size_t)dl);
      d[0] = '\0';
      d[dl + 1] = '\0';
      s->auth_user_off = 1;
      s->auth.len += (size_t)dl + 2;
      s->auth_step = 1;
      return reply(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
    }
    d[dl] = '\0';
    s->auth_pass_off = s->auth.len;
    s->auth.len += (size_t)dl + 1;
  }
  s->state = ST_CMD;
  return decide(s, MXGW_EV_AUTH, C_AUTH);
}

static bool is_http(const char *p, size_t n) {
  static const char *const verbs[] = {"GET ", "POST ", "HEAD ", "PUT ",
                                      "CONNECT ", "OPTIONS ", "Host:",
                                      "User-Agent:"};
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (mxgw__iprefix(p, n, verbs[i]))
      return true;
  return false;
}

static const struct {
  const char *name;
  int cmd;
} cmd_table[] = {
    {"HELO", C_HELO}, {"EHLO", C_EHLO}, {"MAIL", C_MAIL},
    {"RCPT", C_RCPT}, {"DATA", C_DATA}, {"BDAT", C_BDAT},
    {"RSET", C_RSET}, {"NOOP", C_NOOP}, {"QUIT", C_QUIT},
    {"VRFY", C_VRFY}, {"EXPN", C_EXPN}, {"HELP", C_HELP},
    {"STARTTLS", C_STARTTLS}, {"AUTH", C_AUTH},
};

static int junk(mxgw_session *s) {
  if (++s->junk > s->opt[MXGW_OPT_MAX_JUNK_COMMANDS]) {
    if (replyf(s, 421, "4.7.0", "%s Error: too many junk commands",
               hostname(s)))
      return MXGW_E_NOMEM;
    begin_close(s, "too many junk commands");
    return 1;
  }
  return 0;
}

/* Execute one command line (without its line ending). */
static int command(mxgw_session *s, const char *line, size_t n) {
  const char *end = line + n;
  const char *sp = memchr(line, ' ', n);
  size_t vlen = sp ? (size_t)(sp - line) : n;
  const char *arg = sp ? sp + 1 : end;
  size_t alen = (size_t)(end - arg);
  int cmd = C_UNKNOWN;
  for (size_t i = 0; i < sizeof cmd_table / sizeof cmd_table[0]; i++)
    if (mxgw__ieq(line, vlen, cmd_table[i].name)) {
      cmd = cmd_table[i].cmd;
      break;
    }
  if (s->log_fn) {
    const char *ir = cmd == C_AUTH ? memchr(arg, ' ', alen) : NULL;
    if (ir) /* never log an AUTH initial response */
      slogf(s, MXGW_LOG_COMMAND, "%.*s ***", (int)(ir - line), line);
    else
      slog(s, MXGW_LOG_COMMAND, line, n);
  }
  s->cmd_total[cmd]++;
  if (cmd == C_UNKNOWN && s->opt[MXGW_OPT_REJECT_HTTP] && is_http(line, n)) {
    slogf(s, MXGW_LOG_PROTOCOL, "HTTP request on the SMTP port");
    if (replyf(s, 421, "4.7.0", "%s Error: HTTP request rejected", hostname(s)))
      return fail_nomem(s);
    begin_close(s, "HTTP request");
    return 0;
  }
  if (s->state == ST_NOSERVICE && cmd != C_QUIT)
    return err_reply(s, 503, "5.5.1", "Error: no service");
  /* Trailing spaces are tolerated on commands without arguments. */
  int rv;
  switch (cmd) {
  case C_HELO:
  case C_EHLO:
    while (alen && arg[alen - 1] == ' ')
      alen--;
    return cmd_helo(s, arg, alen, cmd == C_EHLO);
  case C_MAIL:
    return cmd_mail(s, arg, alen);
  case C_RCPT:
    return cmd_rcpt(s, arg, alen);
  case C_DATA:
    while (alen && arg[alen - 1] == ' ')
      alen--;
    return cmd_data(s, alen);
  case C_BDAT:
    return cmd_bdat(s, arg, alen);
  case C_RSET:
    while (alen && arg[alen - 1] == ' ')
      alen--;
    if (alen)
      return err_reply(s, 501, "5.5.4", "Syntax: RSET");
    if ((rv = junk(s)) != 0)
      return rv < 0 ? fail_nomem(s) : 0;
    if (s->in_tx) {
      abort_message(s, "RSET");
      push_ev(s, MXGW_EV_RSET, "RSET");
      reset_tx(s);
    }
    s->cmd_ok[cmd]++;
    return reply(s, 250, "2.0.0", "Ok");
  case C_NOOP:
    if ((rv = junk(s)) != 0)
      return rv < 0 ? fail_nomem(s) : 0;
    s->cmd_ok[cmd]++;
    return reply(s, 250, "2.0.0", "Ok");
  case C_QUIT:
    s->cmd_ok[cmd]++;
    abort_message(s, "QUIT");
    rv = reply(s, 221, "2.0.0", "Bye");
    begin_close(s, "QUIT");
    return rv;
  case C_VRFY:
    if (alen == 0)
      return err_reply(s, 501, "5.5.4", "Syntax: VRFY address");
    if ((rv = junk(s)) != 0)
      return rv < 0 ? fail_nomem(s) : 0;
    s->cmd_ok[cmd]++;
    return reply(s, 252, "2.0.0",
                 "Cannot VRFY user, but will accept message and attempt "
                 "delivery");
  case C_EXPN:
    return err_reply(s, 502, "5.5.1", "Error: command not implemented");
  case C_HELP:
    if ((rv = junk(s)) != 0)
      return rv < 0 ? fail_nomem(s) : 0;
    s->cmd_ok[cmd]++;
    return replyf(s, 214, "2.0.0",
                  "Commands: HELO EHLO MAIL RCPT DATA%s RSET NOOP QUIT VRFY "
                  "HELP%s%s",
                  s->opt[MXGW_OPT_CHUNKING] ? " BDAT" : "",
                  starttls_offered(s) ? " STARTTLS" : "",
                  auth_offered(s) ? " AUTH" : "");
  case C_STARTTLS:
    if (!starttls_offered(s))
      return s->tls ? err_reply(s, 554, "5.5.1", "Error: TLS already active")
                    : err_reply(s, 502, "5.5.1", "Error: command not implemented");
    while (alen && arg[alen - 1] == ' ')
      alen--;
    if (alen)
      return err_reply(s, 501, "5.5.4", "Syntax: STARTTLS");
    if (s->in_tx)
      return err_reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
    return decide(s, MXGW_EV_STARTTLS, C_STARTTLS);
  case C_AUTH:
    rv = cmd_auth(s, arg, alen);
    if (rv == 1) {
      const char *ir = skip_sp(memchr(arg, ' ', alen), end);
      return auth_line(s, ir, (size_t)(end - ir));
    }
    return rv;
  default:
    if (n == 0)
      rv = err_reply(s, 500, "5.5.2", "Error: bad syntax");
    else if (mxgw__ieq(line, vlen, "ETRN") || mxgw__ieq(line, vlen, "TURN") ||
             mxgw__ieq(line, vlen, "ATRN"))
      return err_reply(s, 502, "5.5.1", "Error: command not implemented");
    else
      rv = err_reply(s, 500, "5.5.2", "Error: command not recognized");
    if (rv || s->state == ST_CLOSED)
      return rv;
    if (++s->unknown >= s->opt[MXGW_OPT_MAX_UNKNOWN_COMMANDS]) {
      if (replyf(s, 421, "4.7.0", "%s Error: too many unrecognized commands",
                 hostname(s)))
        return fail_nomem(s);
      begin_close(s, "too many unrecognized commands");
    }
    return 0;
  }
}

/* ------------------------------------------------------------------------ */
/* Decisions                                                                */
/* ------------------------------------------------------------------------ */

static bool valid_enh(const char *e, int code) {
  /* class "." subject "." detail, RFC 3463 2: 1-3 digits each */
  if (!e || e[0] != '0' + code / 100 || e[1] != '.')
    return false;
  const char *p = e + 2;
  for (int part = 0; part < 2; part++) {
    int d = 0;
    while (*p >= '0' && *p <= '9') {
      p++;
      d++;
    }
    if (d < 1 || d > 3)
      return false;
    if (part == 0) {
      if (*p != '.')
        return false;
      p++;
    }
  }
  return *p == '\0';
}

static bool valid_reply_text(const char *t) {
  size_t line = 0;
  for (; *t; t++) {
    unsigned char c = (unsigned char)*t;
    if (c == '\n') {
      line = 0;
      continue;
    }
    /* RFC 5321 4.2: textstring = 1*(%d09 / %d32-126) */
    if ((c < 32 && c != '\t') || c > 126)
      return false;
    if (++line > 500)
      return false;
  }
  return true;
}

static bool accept_code_ok(int ev, int cmd, int code) {
  switch (ev) {
  case MXGW_EV_CONNECT:
  case MXGW_EV_STARTTLS:
    return code == 220;
  case MXGW_EV_HELO:
  case MXGW_EV_MAIL:
  case MXGW_EV_MESSAGE_END:
    return code == 250;
  case MXGW_EV_RCPT:
    return code == 250 || code == 251 || code == 252;
  case MXGW_EV_AUTH:
    return code == 235;
  case MXGW_EV_DATA:
    return cmd == C_BDAT ? (code == 250 || code == 354) : code == 354;
  default:
    return false;
  }
}

static void wipe_auth(mxgw_session *s) {
  if (s->auth.data)
    memset(s->auth.data, 0, s->auth.cap);
  mxgw__buf_reset(&s->auth);
}

/* Carry out an answered decision. code 0 = default accept. */
static int answer(mxgw_session *s, int code, const char *enh, const char *text) {
  int ev = s->pending, cmd = s->pending_cmd;
  bool accept = code == 0 || code < 400;
  s->pending = 0;
  s->pending_cmd = 0;
  int rv = MXGW_OK;
  /* DATA and BDAT count as successful once the message is accepted */
  if (accept && ev != MXGW_EV_DATA && ev != MXGW_EV_CONNECT)
    s->cmd_ok[cmd]++;
  switch (ev) {
  case MXGW_EV_CONNECT:
    s->greeted = true;
    if (accept) {
      s->state = ST_CMD;
      rv = text ? replyf(s, 220, NULL, "%s %s", hostname(s), text)
                : replyf(s, 220, NULL, "%s %s", hostname(s), s->cfg->greeting);
    } else {
      rv = reply(s, code, enh ? enh : (code / 100 == 4 ? "4.3.2" : "5.3.2"),
                 text ? text : "Service not available");
      s->state = code == 421 ? ST_CMD : ST_NOSERVICE;
    }
    break;
  case MXGW_EV_HELO:
    if (accept) {
      char first[600];
      if (text)
        snprintf(first, sizeof first, "%s %s", hostname(s), text);
      else
        snprintf(first, sizeof first, "%s", hostname(s));
      rv = s->is_ehlo ? ehlo_reply(s, first) : reply(s, 250, NULL, first);
    } else {
      mxgw__free(&s->mem, s->helo);
      s->helo = NULL;
      rv = reply(s, code, enh ? enh : (code / 100 == 4 ? "4.7.0" : "5.7.1"),
                 text ? text : "Error: HELO rejected");
      if (!rv)
        rv = client_error(s);
    }
    break;
  case MXGW_EV_STARTTLS:
    if (accept) {
      if (s->cfg->tls) {
        /* TLS inside the session: the 220 still goes out in plaintext. */
        if (mxgw__stls_begin(s)) {
          slogf(s, MXGW_LOG_PROTOCOL, "%s", s->errmsg);
          rv = reply(s, 454, "4.7.0", "TLS not available due to temporary reason");
          break;
        }
        rv = reply_to(s, &s->out, 220, enh ? enh : "2.0.0",
                      text ? text : "Ready to start TLS");
        s->starttls_reset = true;
      } else {
        rv = reply(s, 220, enh ? enh : "2.0.0",
                   text ? text : "Ready to start TLS");
        s->state = ST_TLS_WAIT;
      }
      size_t left = mxgw__buf_size(&s->in);
      if (left) {
        /* CVE-2011-0411: pipelined plaintext is never executed after TLS. */
        slogf(s, MXGW_LOG_PROTOCOL,
              "discarded %zu bytes of plaintext pipelined after STARTTLS", left);
        mxgw__buf_reset(&s->in);
      }
      s->scan_off = 0;
    } else {
      rv = reply(s, code, enh ? enh : (code / 100 == 4 ? "4.7.0" : "5.7.0"),
                 text ? text : "TLS not available");
      if (!rv)
        rv = client_error(s);
    }
    break;
  case MXGW_EV_AUTH:
    if (accept) {
      const char *u = s->auth.data + s->auth_user_off;
      mxgw__free(&s->mem, s->auth_identity);
      s->auth_identity = mxgw__strdup(&s->mem, u);
      if (!s->auth_identity) {
        wipe_auth(s);
        return fail_nomem(s);
      }
      rv = reply(s, 235, enh ? enh : "2.7.0",
                 text ? text : "Authentication successful");
    } else {
      rv = reply(s, code, enh ? enh : (code == 535 ? "5.7.8" : code / 100 == 4 ? "4.7.0" : "5.7.8"),
                 text ? text : "Authentication credentials invalid");
      if (!rv)
        rv = client_error(s);
    }
    wipe_auth(s);
    break;
  case MXGW_EV_MAIL:
    if (accept) {
      s->in_tx = true;
      rv = reply(s, code ? code : 250, enh ? enh : "2.1.0", text ? text : "Ok");
    } else {
      reset_tx(s);
      rv = reply(s, code, enh ? enh : (code / 100 == 4 ? "4.1.0" : "5.1.0"),
                 text ? text : "Sender rejected");
      if (!rv)
        rv = client_error(s);
    }
    break;
  case MXGW_EV_RCPT:
    if (accept) {
      if (s->nrcpt == s->rcpt_cap) {
        size_t nc = s->rcpt_cap ? s->rcpt_cap * 2 : 4;
        rcpt *r = mxgw__realloc(&s->mem, s->rcpts, nc * sizeof *r);
        if (!r)
          return fail_nomem(s);
        s->rcpts = r;
        s->rcpt_cap = nc;
      }
      s->rcpts[s->nrcpt++] = s->cand;
      rv = reply(s, code ? code : 250, enh ? enh : "2.1.5", text ? text : "Ok");
    } else {
      rv = reply(s, code, enh ? enh : (code / 100 == 4 ? "4.1.1" : "5.1.1"),
                 text ? text : "Recipient rejected");
      if (!rv)
        rv = client_error(s);
    }
    memset(&s->cand, 0, sizeof s->cand);
    break;
  case MXGW_EV_DATA:
    if (accept) {
      start_message(s);
      if (cmd == C_DATA) {
        s->state = ST_DATA;
        rv = reply(s, 354, NULL,
                   text ? text : "End data with <CR><LF>.<CR><LF>");
      } else {
        s->state = ST_BDAT;
      }
    } else {
      const char *e = enh ? enh : (code / 100 == 4 ? "4.3.0" : "5.7.1");
      const char *t = text ? text : "Message rejected";
      if (cmd == C_BDAT) {
        /* The chunk follows the command: discard it, then reply. */
        s->state = ST_BDAT_SKIP;
        s->bdat_mode = false;
        reset_tx(s);
        rv = MXGW_OK;
        /* remember the rejection: it is sent after the chunk is read */
        mxgw__free(&s->mem, s->bdat_rej_text);
        s->bdat_rej_text = mxgw__strdup(&s->mem, t);
        if (!s->bdat_rej_text)
          return fail_nomem(s);
        s->bdat_rej_code = code;
        snprintf(s->bdat_rej_enh, sizeof s->bdat_rej_enh, "%s", e);
      } else {
        rv = reply(s, code, e, t);
        if (!rv)
          rv = client_error(s);
      }
    }
    break;
  case MXGW_EV_MESSAGE_END:
    s->state = ST_CMD;
    if (accept) {
      s->messages++;
      rv = reply(s, 250, enh ? enh : "2.0.0", text ? text : "Ok: queued");
    } else {
      rv = reply(s, code, enh ? enh : (code / 100 == 4 ? "4.3.0" : "5.7.1"),
                 text ? text : "Message rejected");
      if (!rv)
        rv = client_error(s);
    }
    reset_tx(s);
    break;
  default:
    return set_err(s, MXGW_E_STATE, "no decision pending");
  }
  if (rv)
    return fail_nomem(s);
  if (code == 421 && s->state != ST_CLOSED)
    begin_close(s, "closed by the application");
  if (s->state != ST_CLOSED)
    arm_timer(s);
  return MXGW_OK;
}

int mxgw_session_accept(mxgw_session *s) {
  if (!s)
    return MXGW_E_INVAL;
  if (!s->pending || !s->announced)
    return set_err(s, MXGW_E_STATE, "no decision pending");
  return answer(s, 0, NULL, NULL);
}

int mxgw_session_reply(mxgw_session *s, int code, const char *enh,
                       const char *text) {
  if (!s)
    return MXGW_E_INVAL;
  if (!s->pending || !s->announced)
    return set_err(s, MXGW_E_STATE, "no decision pending");
  if (code < 200 || code > 599)
    return set_err(s, MXGW_E_INVAL, "reply code must be 200..599");
  if (code < 400 && !accept_code_ok(s->pending, s->pending_cmd, code))
    return set_err(s, MXGW_E_INVAL, "this reply code does not fit this stage");
  if (enh && !valid_enh(enh, code))
    return set_err(s, MXGW_E_INVAL,
                   "enhanced status code must be class.subject.detail with "
                   "the reply's class");
  if (text && !valid_reply_text(text))
    return set_err(s, MXGW_E_INVAL,
                   "reply text has control characters or a line over 500 "
                   "octets");
  return answer(s, code, enh, text);
}

int mxgw_session_pending(const mxgw_session *s) {
  return s && s->announced ? s->pending : 0;
}

/* RFC 3207 4.2: forget everything learned from the client before TLS. */
static void forget_pre_tls(mxgw_session *s) {
  mxgw__free(&s->mem, s->helo);
  s->helo = NULL;
  s->is_ehlo = false;
  mxgw__free(&s->mem, s->auth_identity);
  s->auth_identity = NULL;
  reset_tx(s);
}

int mxgw_session_starttls_done(mxgw_session *s, const char *protocol,
                               const char *cipher) {
  if (!s)
    return MXGW_E_INVAL;
  if (s->state != ST_TLS_WAIT || s->ssl)
    return set_err(s, MXGW_E_STATE, "no STARTTLS was accepted (or the "
                                    "session runs TLS itself)");
  if ((protocol && !printable_text(protocol)) || (cipher && !printable_text(cipher)))
    return set_err(s, MXGW_E_INVAL, "control characters in TLS parameters");
  int rv = set_str_pair(s, &s->tls_proto, protocol, &s->tls_cipher, cipher);
  if (rv)
    return rv;
  s->tls = true;
  forget_pre_tls(s);
  mxgw__buf_reset(&s->in);
  s->scan_off = 0;
  s->state = ST_CMD;
  arm_timer(s);
  return MXGW_OK;
}

/* The handshake run inside the session completed. */
static int tls_established(mxgw_session *s) {
  const char *p = mxgw__stls_protocol(s), *c = mxgw__stls_cipher(s);
  mxgw__free(&s->mem, s->tls_proto);
  mxgw__free(&s->mem, s->tls_cipher);
  s->tls_proto = p ? mxgw__strdup(&s->mem, p) : NULL;
  s->tls_cipher = c ? mxgw__strdup(&s->mem, c) : NULL;
  if ((p && !s->tls_proto) || (c && !s->tls_cipher))
    return fail_nomem(s);
  (void)mxgw__stls_peer_subject(s);
  s->tls = true;
  slogf(s, MXGW_LOG_TLS, "TLS connection established: %s with cipher %s%s%s",
        p ? p : "?", c ? c : "?", s->tls_peer ? ", client certificate " : "",
        s->tls_peer ? s->tls_peer : "");
  if (s->starttls_reset) {
    s->starttls_reset = false;
    forget_pre_tls(s);
  }
  return MXGW_OK;
}

/* Run the TLS engine over buffered ciphertext; close the session on error. */
static int tls_pump(mxgw_session *s) {
  int rv = mxgw__stls_pump(s);
  if (rv == 1)
    return tls_established(s);
  if (rv == MXGW_E_NOMEM)
    return fail_nomem(s);
  if (rv < 0) {
    slogf(s, MXGW_LOG_PROTOCOL, "%s", s->errmsg);
    abort_message(s, "TLS error");
    begin_close(s, "TLS error");
  }
  return rv;
}

/* ------------------------------------------------------------------------ */
/* Input processing                                                         */
/* ------------------------------------------------------------------------ */

static int body_event(mxgw_session *s, const char *p, size_t n) {
  s->ev_ptr = p;
  s->ev_len = n;
  return MXGW_EV_BODY;
}

/* Mark the message as failed; it is read to its end and then refused. */
static void fail_message(mxgw_session *s, int why) {
  if (s->msg_fail)
    return;
  static const char *const reason[] = {NULL, "message size limit exceeded",
                                       "message line too long",
                                       "bare <LF> in message",
                                       "bare <CR> in message"};
  push_ev(s, MXGW_EV_MESSAGE_ABORT, reason[why]);
  if (why == FAIL_BARE_LF || why == FAIL_BARE_CR)
    slogf(s, MXGW_LOG_PROTOCOL, "%s", reason[why]);
  s->msg_fail = why;
}

static int add_size(mxgw_session *s, size_t n) {
  s->msg_size += (int64_t)n;
  int64_t max = s->opt[MXGW_OPT_MAX_MESSAGE_SIZE];
  if (max && s->msg_size > max) {
    fail_message(s, FAIL_SIZE);
    return -1;
  }
  return 0;
}

static int message_end(mxgw_session *s);

/* Emit what scan_data() owes after a span: a normalized CRLF, the end. */
static int owed(mxgw_session *s) {
  if (s->owe_crlf) {
    s->owe_crlf = false;
    if (!s->msg_fail && add_size(s, 2) == 0)
      return body_event(s, "\r\n", 2);
  }
  if (s->owe_end) {
    s->owe_end = false;
    return message_end(s);
  }
  return 0;
}

/* The end of a message (DATA or BDAT LAST) has been read. */
static int message_end(mxgw_session *s) {
  s->state = ST_CMD;
  if (s->msg_fail) {
    int rv;
    switch (s->msg_fail) {
    case FAIL_SIZE:
      rv = reply(s, 552, "5.3.4", "Error: message exceeds fixed maximum size");
      break;
    case FAIL_LINE:
      rv = replyf(s, 554, "5.6.0",
                  "Error: message has a line over %lld octets (RFC 5321 "
                  "4.5.3.1.6)",
                  (long long)s->opt[MXGW_OPT_MAX_TEXT_LINE]);
      break;
    case FAIL_BARE_LF:
      rv = reply(s, 550, "5.5.2",
                 "Error: bare <LF> received (RFC 5321 2.3.8); use <CR><LF>");
      break;
    case FAIL_ABORTED:
      /* only reachable if a session kept running after an abort */
      rv = reply(s, 451, "4.3.0", "Error: message aborted");
      break;
    default:
      rv = reply(s, 550, "5.5.2",
                 "Error: bare <CR> received (RFC 5321 2.3.8); use <CR><LF>");
      break;
    }
    reset_tx(s);
    if (rv)
      return fail_nomem(s);
    rv = client_error(s);
    return rv < 0 ? fail_nomem(s) : 0;
  }
  return decide(s, MXGW_EV_MESSAGE_END, s->bdat_mode ? C_BDAT : C_DATA);
}

/*
 * DATA scanner. Looks at in[off..) and returns one BODY event for the
 * longest span it can hand out unchanged, or detects the end of data.
 * Returns an event, 0 (need more input), or < 0.
 */
static int scan_data(mxgw_session *s) {
  const char *p = mxgw__buf_ptr(&s->in);
  size_t n = mxgw__buf_size(&s->in);
  bool normalize = s->opt[MXGW_OPT_BARE_NEWLINE] == MXGW_BARE_NORMALIZE;
  int64_t maxline = s->opt[MXGW_OPT_MAX_TEXT_LINE];
  size_t pos = 0;          /* scan position */
  size_t lstart = 0;       /* where the current line started in p */
  int64_t carried = s->line_len; /* line bytes before p */
  const char *cr = NULL, *lf = NULL; /* cached next CR / LF */
  size_t skip = 0;         /* bytes to drop after the span */
  const char *insert = NULL; /* "\r\n" to emit after the span */
  bool end = false;

  for (;;) {
    if (s->bol) {
      /* RFC 5321 4.5.2: a line that is a single period ends the data, a
       * leading period followed by other characters is deleted. Only a line
       * after a real CRLF can end the data; after a normalized bare CR/LF a
       * lone period stays text. */
      if (pos >= n)
        break;
      if (p[pos] == '.') {
        if (pos + 1 >= n)
          break;
        char c = p[pos + 1];
        if (c == '\r' && pos + 2 >= n)
          break;
        if (c == '\r' && p[pos + 2] == '\n' && s->bol == BOL_HARD) {
          end = true;
          skip = 3;
          break;
        }
        if (c != '\r' && c != '\n') {
          s->bol = BOL_NONE;
          skip = 1; /* a stuffed dot: drop it */
          break;
        }
        /* a lone period ended by a bare CR/LF, or after a soft line
         * break: it is text and is kept */
      }
      s->bol = BOL_NONE;
    }
    if (!cr || cr < p + pos)
      cr = memchr(p + pos, '\r', n - pos);
    if (!lf || lf < p + pos)
      lf = memchr(p + pos, '\n', n - pos);
    if (!cr && !lf) {
      pos = n;
      break;
    }
    const char *q = !cr ? lf : !lf ? cr : (cr < lf ? cr : lf);
    size_t qi = (size_t)(q - p);
    if (*q == '\r') {
      if (qi + 1 >= n) {
        pos = qi; /* hold the CR until we see what follows */
        break;
      }
      if (p[qi + 1] == '\n') {
        pos = qi + 2;
        int64_t ll = carried + (int64_t)(pos - lstart);
        if (maxline && ll > maxline && !s->msg_fail)
          fail_message(s, FAIL_LINE);
        lstart = pos;
        carried = 0;
        s->bol = BOL_HARD;
        continue;
      }
    }
    /* a bare CR, or a bare LF (a CRLF was found at its CR above) */
    if (normalize) {
      pos = qi;
      skip = 1;
      insert = "\r\n";
      break;
    }
    fail_message(s, *q == '\r' ? FAIL_BARE_CR : FAIL_BARE_LF);
    pos = qi + 1;
  }
  /* line accounting for the part of a line that stays open */
  s->line_len = carried + (int64_t)(pos - lstart);
  if (maxline && s->line_len > maxline && !s->msg_fail)
    fail_message(s, FAIL_LINE);
  if (insert) {
    s->line_len = 0;
    s->owe_crlf = true;
    s->bol = BOL_SOFT;
  }
  if (end)
    s->owe_end = true;
  mxgw__buf_consume(&s->in, pos + skip);
  if (pos && !s->msg_fail && add_size(s, pos) == 0)
    return body_event(s, p, pos);
  return owed(s);
}

/* BDAT content is passed on as sent, but without BINARYMIME (not offered)
 * it must still be lines ended by CRLF (RFC 3030 3, RFC 5321 2.3.8): under
 * MXGW_BARE_REJECT a bare CR or LF fails the message like in DATA (550
 * 5.5.2 after the last chunk). A CR at the end of a chunk is judged by the
 * next octet (or the end of the message). Returns FAIL_BARE_* or 0. */
static int bdat_bare(mxgw_session *s, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (s->bdat_cr && c != '\n')
      return FAIL_BARE_CR;
    if (!s->bdat_cr && c == '\n')
      return FAIL_BARE_LF;
    s->bdat_cr = c == '\r';
  }
  return 0;
}

static int scan_bdat(mxgw_session *s) {
  size_t n = mxgw__buf_size(&s->in);
  if (s->bdat_left == 0 || n == 0) {
    if (s->bdat_left)
      return 0;
    /* chunk complete */
    if (s->state == ST_BDAT_SKIP) {
      s->state = ST_CMD;
      int rv;
      if (s->bdat_rej_code) {
        /* a rejected first BDAT: the application's reply */
        int code = s->bdat_rej_code;
        rv = reply(s, code, s->bdat_rej_enh, s->bdat_rej_text);
        s->bdat_rej_code = 0;
        mxgw__free(&s->mem, s->bdat_rej_text);
        s->bdat_rej_text = NULL;
        if (!rv && code == 421)
          begin_close(s, "closed by the application");
      } else if (s->msg_fail == FAIL_SIZE) {
        rv = reply(s, 552, "5.3.4", "Error: message exceeds fixed maximum size");
        reset_tx(s);
      } else if (!s->in_tx) {
        rv = reply(s, 503, "5.5.1", "Error: need MAIL command");
      } else if (s->nrcpt == 0) {
        rv = s->rcpt_attempts ? reply(s, 554, "5.5.1", "Error: no valid recipients")
                              : reply(s, 503, "5.5.1", "Error: need RCPT command");
      } else {
        rv = reply(s, 503, "5.5.1", "Error: DATA in progress");
      }
      if (rv)
        return fail_nomem(s);
      rv = client_error(s);
      return rv < 0 ? fail_nomem(s) : 0;
    }
    if (s->bdat_last) {
      if (s->bdat_cr && !s->msg_fail &&
          s->opt[MXGW_OPT_BARE_NEWLINE] == MXGW_BARE_REJECT)
        fail_message(s, FAIL_BARE_CR); /* the message ends in a CR */
      return message_end(s);
    }
    s->state = ST_CMD;
    if (s->msg_fail == FAIL_BARE_LF || s->msg_fail == FAIL_BARE_CR)
      return message_end(s); /* 550 5.5.2 now; later BDATs get 503 */
    if (s->msg_fail == FAIL_SIZE) {
      /* RFC 3030 2: the transaction fails; later BDATs get 503 */
      reset_tx(s);
      int rv = reply(s, 552, "5.3.4", "Error: message exceeds fixed maximum size");
      if (!rv)
        rv = client_error(s);
      return rv ? fail_nomem(s) : 0;
    }
    s->cmd_ok[C_BDAT]++;
    if (replyf(s, 250, "2.0.0", "Ok: %llu octets received",
               (unsigned long long)s->bdat_chunk))
      return fail_nomem(s);
    return 0;
  }
  size_t take = n < s->bdat_left ? n : (size_t)s->bdat_left;
  const char *p = mxgw__buf_ptr(&s->in);
  mxgw__buf_consume(&s->in, take);
  s->bdat_left -= take;
  if (s->state == ST_BDAT && !s->msg_fail &&
      s->opt[MXGW_OPT_BARE_NEWLINE] == MXGW_BARE_REJECT) {
    int why = bdat_bare(s, p, take);
    if (why)
      fail_message(s, why);
  }
  if (s->state == ST_BDAT && !s->msg_fail && add_size(s, take) == 0)
    return body_event(s, p, take);
  return scan_bdat(s);
}

/* Find the next command line: 1 (line, len, adv set), 0 (need more), -1. */
static int next_line(mxgw_session *s, size_t limit, const char **line,
                     size_t *len, size_t *adv, int *bare) {
  const char *p = mxgw__buf_ptr(&s->in);
  size_t n = mxgw__buf_size(&s->in);
  bool normalize = s->opt[MXGW_OPT_BARE_NEWLINE] == MXGW_BARE_NORMALIZE;
  *bare = 0;
  size_t from = s->scan_off < n ? s->scan_off : 0;
  const char *lf = memchr(p + from, '\n', n - from);
  size_t end = lf ? (size_t)(lf - p) : n;
  const char *cr = memchr(p, '\r', end);
  if (cr && (size_t)(cr - p) + 1 < end) {
    /* a bare CR inside the line */
    size_t ci = (size_t)(cr - p);
    if (normalize) {
      *line = p, *len = ci, *adv = ci + 1;
      return 1;
    }
    if (!lf) {
      /* wait for the end of the line, then refuse it */
      if (n > limit)
        goto toolong;
      s->scan_off = n;
      return 0;
    }
    *bare = 2;
    *line = p, *len = end, *adv = end + 1;
    return 1;
  }
  if (!lf) {
    if (normalize && cr && (size_t)(cr - p) + 1 < n) {
      size_t ci = (size_t)(cr - p);
      *line = p, *len = ci, *adv = ci + 1;
      return 1;
    }
    if (n > limit)
      goto toolong;
    s->scan_off = n;
    return 0;
  }
  s->scan_off = 0;
  if (end > 0 && p[end - 1] == '\r') {
    *line = p, *len = end - 1, *adv = end + 1;
  } else {
    *line = p, *len = end, *adv = end + 1;
    if (!normalize)
      *bare = 1;
  }
  if (*adv > limit) {
    *bare = 3;
  }
  return 1;
toolong:
  /* Discard what we have and the rest of the line. */
  s->skip_line = true;
  s->scan_off = 0;
  mxgw__buf_consume(&s->in, n);
  *bare = 3;
  return -1;
}

/* A command line refused before it is parsed (too long, bare CR or LF):
 * counted as unknown, ends an AUTH exchange, 500 with text. */
static int reject_line(mxgw_session *s, const char *text) {
  s->cmd_total[C_UNKNOWN]++;
  if (s->state == ST_AUTH)
    s->state = ST_CMD;
  return err_reply(s, 500, "5.5.2", text);
}

static int process_input(mxgw_session *s) {
  for (;;) {
    if (s->state == ST_CLOSED || s->pending)
      return 0;
    if (mxgw__buf_size(&s->out) + mxgw__buf_size(&s->pout) >=
        (size_t)s->opt[MXGW_OPT_OUTPUT_BUFFER])
      return 0; /* the client is not reading: stop */
    switch (s->state) {
    case ST_DATA: {
      size_t before = mxgw__buf_size(&s->in);
      int rv = scan_data(s);
      if (rv)
        return rv;
      if (s->state == ST_DATA && mxgw__buf_size(&s->in) == before)
        return 0; /* need more input */
      continue;
    }
    case ST_BDAT:
    case ST_BDAT_SKIP: {
      int rv = scan_bdat(s);
      if (rv)
        return rv;
      if (s->state == ST_BDAT || s->state == ST_BDAT_SKIP)
        return 0;
      continue;
    }
    case ST_TLS_WAIT:
      return 0;
    default:
      break;
    }
    if (mxgw__buf_size(&s->in) == 0)
      return 0;
    /* command or AUTH line */
    size_t limit = (size_t)s->opt[MXGW_OPT_MAX_COMMAND_LINE];
    if (s->state == ST_AUTH && limit < 12288)
      limit = 12288; /* RFC 4954 4 */
    const char *line;
    size_t len, adv;
    int bare;
    if (s->skip_line) {
      const char *p = mxgw__buf_ptr(&s->in);
      const char *lf = memchr(p, '\n', mxgw__buf_size(&s->in));
      if (!lf) {
        mxgw__buf_reset(&s->in);
        return 0;
      }
      mxgw__buf_consume(&s->in, (size_t)(lf - p) + 1);
      s->skip_line = false;
      if (reject_line(s, "Error: line too long"))
        return fail_nomem(s);
      continue;
    }
    int r = next_line(s, limit, &line, &len, &adv, &bare);
    if (r == 0)
      return 0;
    if (r < 0)
      continue; /* over-long line: now skipping to its end */
    if (bare == 3) {
      mxgw__buf_consume(&s->in, adv);
      if (reject_line(s, "Error: line too long"))
        return fail_nomem(s);
      continue;
    }
    if (bare) {
      slogf(s, MXGW_LOG_PROTOCOL, "bare <%s> in command",
            bare == 1 ? "LF" : "CR");
      mxgw__buf_consume(&s->in, adv);
      if (reject_line(s, bare == 1 ? "Error: bare <LF> received; use <CR><LF>"
                                   : "Error: bare <CR> received; use <CR><LF>"))
        return fail_nomem(s);
      continue;
    }
    int rv;
    if (s->state == ST_AUTH) {
      if (s->log_fn)
        slog(s, MXGW_LOG_COMMAND, "***", 3);
      rv = auth_line(s, line, len);
    } else {
      rv = command(s, line, len);
    }
    /* The line is consumed after it has been parsed: the parsers read it
     * in place, and whatever they keep they have copied. */
    mxgw__buf_consume(&s->in, adv);
    s->scan_off = 0;
    if (rv < 0)
      return rv;
    if (rv > 0)
      return rv;
  }
}

/* Set the event payload of a decision when it is announced. */
static int announce(mxgw_session *s) {
  s->announced = true;
  switch (s->pending) {
  case MXGW_EV_CONNECT:
    s->ev_ptr = s->peer_addr;
    break;
  case MXGW_EV_HELO:
    s->ev_ptr = s->helo;
    break;
  case MXGW_EV_MAIL:
    s->ev_ptr = s->mail_from;
    break;
  case MXGW_EV_RCPT:
    s->ev_ptr = s->cand.addr;
    break;
  case MXGW_EV_AUTH:
    s->ev_ptr = s->auth.data + s->auth_user_off;
    break;
  default:
    break;
  }
  s->ev_len = s->ev_ptr ? strlen(s->ev_ptr) : 0;
  return s->pending;
}

static int next_event(mxgw_session *s) {
  for (;;) {
    if (s->evq_n) {
      /* Information events queued while processing (RSET, ABORT) come
       * before the decision that followed them. */
      queued_ev *q = &s->evq[s->evq_head];
      s->evq_head = (s->evq_head + 1) % (int)(sizeof s->evq / sizeof s->evq[0]);
      s->evq_n--;
      s->ev_ptr = q->reason;
      s->ev_len = q->reason ? strlen(q->reason) : 0;
      return q->type;
    }
    if (s->state == ST_NEW)
      return 0;
    if (s->pending)
      return s->announced ? 0 : announce(s);
    if (s->state == ST_CLOSED) {
      if (s->closed_emit)
        return 0;
      s->closed_emit = true;
      log_disconnect(s);
      s->ev_ptr = s->close_reason ? s->close_reason : "closed";
      s->ev_len = strlen(s->ev_ptr);
      mxgw__buf_free(&s->in, &s->mem);
      return MXGW_EV_CLOSE;
    }
    if (s->state == ST_CONNECT && !s->greeted) {
      decide(s, MXGW_EV_CONNECT, C_UNKNOWN);
      continue;
    }
    if (s->ssl && !s->tls_hs && mxgw__stls_input_pending(s)) {
      /* decrypt what waited for room in the input buffer */
      if (tls_pump(s) == MXGW_E_NOMEM)
        return MXGW_E_NOMEM;
      if (s->state == ST_CLOSED || s->evq_n)
        continue;
    }
    int rv = (s->owe_crlf || s->owe_end) ? owed(s) : 0;
    if (rv == 0)
      rv = process_input(s);
    if (rv < 0)
      return rv;
    if (rv == MXGW_EV_BODY)
      return rv;
    if (rv > 0 || s->evq_n || s->state == ST_CLOSED)
      continue; /* a decision (announced above), queued events, or CLOSE */
    if (s->eof) {
      /* all input used up after the client closed its side */
      abort_message(s, "client disconnected");
      if (s->state == ST_DATA || s->state == ST_BDAT || s->in_tx)
        slogf(s, MXGW_LOG_PROTOCOL, "lost connection after %s",
              s->state == ST_DATA || s->state == ST_BDAT ? "DATA" : "MAIL");
      begin_close(s, "client disconnected");
      continue;
    }
    if (mxgw__buf_size(&s->in) == 0 && s->in.cap > 1024)
      mxgw__buf_free(&s->in, &s->mem);
    return 0;
  }
}

int mxgw_session_next_event(mxgw_session *s) {
  if (!s)
    return MXGW_E_INVAL;
  s->ev_ptr = NULL;
  s->ev_len = 0;
  int rv = next_event(s);
  /* The contract: after MXGW_E_NOMEM the session closes with 421, whichever
   * path ran out (a reply deep inside a command handler included). */
  if (rv == MXGW_E_NOMEM && s->state != ST_CLOSED)
    (void)fail_nomem(s);
  return rv;
}

/* ------------------------------------------------------------------------ */
/* Getters                                                                  */
/* ------------------------------------------------------------------------ */

static int str_out(const char *v, size_t n, const char **ptr, size_t *len) {
  if (!v)
    return MXGW_E_NOTFOUND;
  *ptr = v;
  *len = n;
  return MXGW_OK;
}

static int str0(const char *v, const char **ptr, size_t *len) {
  return str_out(v, v ? strlen(v) : 0, ptr, len);
}

int mxgw_session_get_str(const mxgw_session *s, int key, const char **ptr,
                         size_t *len) {
  if (!s || !ptr || !len)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_INFO_DATA:
    return str_out(s->ev_ptr, s->ev_len, ptr, len);
  case MXGW_INFO_HELO:
    return str0(s->helo, ptr, len);
  case MXGW_INFO_PEER_ADDR:
    return str0(s->peer_addr, ptr, len);
  case MXGW_INFO_PEER_HOST:
    return str0(s->peer_host ? s->peer_host : "unknown", ptr, len);
  case MXGW_INFO_MAIL_FROM:
    return str_out(s->mail_from, s->mail_from_len, ptr, len);
  case MXGW_INFO_RCPT:
    return str_out(s->cand.addr, s->cand.len, ptr, len);
  case MXGW_INFO_ENVID:
    return str0(s->envid, ptr, len);
  case MXGW_INFO_RET:
    return str0(s->ret, ptr, len);
  case MXGW_INFO_BODY:
    return str0(s->mail_from ? (s->body_type ? s->body_type : "7BIT") : NULL,
                ptr, len);
  case MXGW_INFO_MAIL_AUTH:
    return str0(s->mail_auth, ptr, len);
  case MXGW_INFO_NOTIFY:
    return str0(s->cand.notify, ptr, len);
  case MXGW_INFO_ORCPT:
    return str0(s->cand.orcpt, ptr, len);
  case MXGW_INFO_AUTH_MECH:
    return str0(s->auth_mech == 1 ? "PLAIN" : s->auth_mech == 2 ? "LOGIN" : NULL,
                ptr, len);
  case MXGW_INFO_AUTH_AUTHZID:
    return str0(s->pending == MXGW_EV_AUTH ? s->auth.data : NULL, ptr, len);
  case MXGW_INFO_AUTH_USER:
    return str0(s->pending == MXGW_EV_AUTH ? s->auth.data + s->auth_user_off
                                           : NULL,
                ptr, len);
  case MXGW_INFO_AUTH_PASSWORD:
    return str0(s->pending == MXGW_EV_AUTH ? s->auth.data + s->auth_pass_off
                                           : NULL,
                ptr, len);
  case MXGW_INFO_AUTH_IDENTITY:
    return str0(s->auth_identity, ptr, len);
  case MXGW_INFO_TLS_PROTOCOL:
    return str0(s->tls_proto, ptr, len);
  case MXGW_INFO_TLS_CIPHER:
    return str0(s->tls_cipher, ptr, len);
  case MXGW_INFO_HOSTNAME:
    return str0(s->cfg->hostname, ptr, len);
  case MXGW_INFO_TLS_PEER_SUBJECT:
    return str0(s->tls_peer, ptr, len);
  case MXGW_INFO_TLS_SNI:
    return str0(mxgw__stls_sni(s), ptr, len);
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_session_get_int(const mxgw_session *s, int key, int64_t *out) {
  if (!s || !out)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_INFO_IS_EHLO: *out = s->is_ehlo; break;
  case MXGW_INFO_SIZE: *out = s->size_param; break;
  case MXGW_INFO_SMTPUTF8: *out = s->smtputf8; break;
  case MXGW_INFO_RCPT_COUNT: *out = (int64_t)s->nrcpt; break;
  case MXGW_INFO_MESSAGE_SIZE: *out = s->msg_size; break;
  case MXGW_INFO_TLS: *out = s->tls; break;
  case MXGW_INFO_AUTHENTICATED: *out = s->auth_identity != NULL; break;
  case MXGW_INFO_MESSAGES: *out = s->messages; break;
  case MXGW_INFO_COMMANDS: {
    int64_t t = 0;
    for (int c = 0; c < C_COUNT; c++)
      t += s->cmd_total[c];
    *out = t;
    break;
  }
  case MXGW_INFO_ERRORS: *out = s->errors; break;
  case MXGW_INFO_BYTES_IN: *out = s->bytes_in; break;
  case MXGW_INFO_BYTES_OUT: *out = s->bytes_out; break;
  case MXGW_INFO_NOTIFY_FLAGS: *out = s->cand.notify_flags; break;
  case MXGW_INFO_BDAT: *out = s->bdat_mode; break;
  case MXGW_INFO_PEER_PORT: *out = s->peer_port; break;
  default:
    return MXGW_E_INVAL;
  }
  return MXGW_OK;
}

int mxgw_session_rcpt_get_str(const mxgw_session *s, size_t idx, int key,
                              const char **ptr, size_t *len) {
  if (!s || !ptr || !len)
    return MXGW_E_INVAL;
  if (idx >= s->nrcpt)
    return MXGW_E_RANGE;
  const rcpt *r = &s->rcpts[idx];
  switch (key) {
  case MXGW_INFO_RCPT:
    return str_out(r->addr, r->len, ptr, len);
  case MXGW_INFO_NOTIFY:
    return str0(r->notify, ptr, len);
  case MXGW_INFO_ORCPT:
    return str0(r->orcpt, ptr, len);
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_session_rcpt_get_int(const mxgw_session *s, size_t idx, int key,
                              int64_t *out) {
  if (!s || !out)
    return MXGW_E_INVAL;
  if (idx >= s->nrcpt)
    return MXGW_E_RANGE;
  if (key != MXGW_INFO_NOTIFY_FLAGS)
    return MXGW_E_INVAL;
  *out = s->rcpts[idx].notify_flags;
  return MXGW_OK;
}
