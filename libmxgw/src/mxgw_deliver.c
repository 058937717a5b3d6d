/* SPDX-License-Identifier: MIT */
/*
 * mxgw_deliver.c: the delivery scheduler. mxgw_deliver_run_once() starts up
 * to CONCURRENCY worker threads; each claims due messages with
 * mxgw_queue_take(), opens (or reuses) a connection to the first backend
 * that accepts one, delivers the not yet final recipients with the blocking
 * LMTP driver, records each recipient's outcome in the entry (2xx
 * delivered, 5xx failed, anything else deferred), fails recipients that
 * are past the queue lifetime, queues a DSN for the recipients that failed
 * in this attempt (before the outcome is saved: a crash in between repeats
 * the attempt and the DSN, it never loses it), a success DSN for those
 * delivered with NOTIFY=SUCCESS (unless the backend offers DSN itself) and
 * a delay warning for those deferred past MXGW_DELIVER_OPT_DELAY_WARNING
 * (once per recipient: marked "delay_dsn" in the metadata), and ends the
 * attempt with mxgw_queue_finish() at the backoff time. Postfix-style log
 * lines and JSON events go to the log hook under a mutex.
 *
 * Why threads and the blocking driver rather than the non-blocking one in
 * an event loop: every step around a delivery (take, save, finish, the DSN
 * commit) is file system work that blocks on fsync and cannot be polled;
 * threads let those fsyncs overlap with each other and with the network,
 * and one thread per connection keeps the concurrency limit trivially
 * exact ("at most CONCURRENCY connections per backend").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mxgw/mxgw_lmtp.h"
#include "mxgw/mxgw_session.h"
#include "mxgw_deliver_int.h"
#include "mxgw_lmtp_int.h"
#include "mxgw_queue_int.h"

#define MAX_BACKENDS 16
#define NSTATS 8

typedef struct backend {
  char *target; /* as given to mxgw_lmtp_conn_new() */
  char *relay;  /* for the log: "127.0.0.1[127.0.0.1]:2525", "local[/p]" */
  char *host;   /* for Remote-MTA: "127.0.0.1", "localhost" */
  _Atomic int64_t down_until_ms; /* connection failed: skip until then */
  char why[600];                  /* why (under be_mu) */
  char why_enh[16];               /* its enhanced code (under be_mu) */
} backend;

struct mxgw_deliver {
  mxgw_mem mem;
  mxgw_queue *q;
  mxgw_queue *bq;
  backend be[MAX_BACKENDS];
  size_t nb;
  mxgw_lmtp_config *cfg;
  int64_t concurrency, backoff_initial, backoff_factor, backoff_max, lifetime;
  int64_t bounce, keep_bounced, bounce_size_limit, poll_ms, delay_warning;
  char *hostname, *bounce_rcpt;
  mxgw_deliver_log_fn *log_fn;
  void *log_user;
  pthread_mutex_t log_mu;
  pthread_mutex_t be_mu;
  _Atomic int64_t stats[NSTATS];
  atomic_bool running;
  atomic_bool stop;
  int wake_fd;
  /* mxgw_deliver_run(): its workers wait for the next pass here */
  pthread_mutex_t run_mu;
  pthread_cond_t run_cv;
  uint64_t run_gen;
  bool run_stop;
  atomic_bool run_live; /* workers are waiting on run_cv */
};

/* mxgw_deliver_run() workers keep their LMTP connections between passes
 * and close them after this long without a message (Postfix caches SMTP
 * connections for 2 s; an LMTP store nearby is cheap to keep). */
#define RUN_IDLE_MS 5000

typedef struct worker {
  mxgw_deliver *d;
  pthread_t tid;
  int64_t now;
  int tried;
  mxgw_lmtp_conn *conn[MAX_BACKENDS];
} worker;

static int64_t real_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stat_add(mxgw_deliver *d, int key, int64_t n) {
  atomic_fetch_add(&d->stats[key - MXGW_DELIVER_STAT_ATTEMPTS], n);
}

/* ---- configuration --------------------------------------------------- */

int mxgw_deliver_new(mxgw_deliver **out, struct mxgw_queue *q,
                     const mxgw_mem *mem) {
  if (!out || !q)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_deliver *d = mxgw__calloc(&m, 1, sizeof *d);
  if (!d)
    return MXGW_E_NOMEM;
  d->mem = m;
  d->q = d->bq = q;
  d->concurrency = 4;
  d->backoff_initial = 60;
  d->backoff_factor = 2;
  d->backoff_max = 3600;
  d->lifetime = 5 * 86400;
  d->bounce = MXGW_BOUNCE_DSN;
  d->bounce_size_limit = 50000;
  d->poll_ms = 1000;
  d->wake_fd = -1;
  d->hostname = mxgw__strdup(&m, "localhost");
  d->bounce_rcpt = mxgw__strdup(&m, "");
  int rv = MXGW_E_NOMEM;
  if (!d->hostname || !d->bounce_rcpt ||
      mxgw_lmtp_config_new(&d->cfg, mem) != MXGW_OK)
    goto fail;
  mxgw_lmtp_config_set_str(d->cfg, MXGW_LMTP_OPT_LHLO_NAME, "localhost");
  rv = MXGW_E_IO;
  d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->wake_fd < 0)
    goto fail;
  pthread_mutex_init(&d->log_mu, NULL);
  pthread_mutex_init(&d->be_mu, NULL);
  pthread_mutex_init(&d->run_mu, NULL);
  pthread_cond_init(&d->run_cv, NULL);
  *out = d;
  return MXGW_OK;
fail:
  mxgw_lmtp_config_free(d->cfg);
  mxgw__free(&m, d->hostname);
  mxgw__free(&m, d->bounce_rcpt);
  mxgw__free(&m, d);
  return rv;
}

void mxgw_deliver_free(mxgw_deliver *d) {
  if (!d)
    return;
  mxgw_mem m = d->mem;
  for (size_t i = 0; i < d->nb; i++) {
    mxgw__free(&m, d->be[i].target);
    mxgw__free(&m, d->be[i].relay);
    mxgw__free(&m, d->be[i].host);
  }
  mxgw_lmtp_config_free(d->cfg);
  mxgw__free(&m, d->hostname);
  mxgw__free(&m, d->bounce_rcpt);
  if (d->wake_fd >= 0)
    close(d->wake_fd);
  pthread_mutex_destroy(&d->log_mu);
  pthread_mutex_destroy(&d->be_mu);
  pthread_mutex_destroy(&d->run_mu);
  pthread_cond_destroy(&d->run_cv);
  mxgw__free(&m, d);
}

/* Log names of a target: relay "host[addr]:port" as Postfix prints it (no
 * DNS here, so host = address), and the host alone for Remote-MTA. */
static int backend_names(mxgw_deliver *d, backend *b, const char *t) {
  char relay[600], host[300];
  if (strncmp(t, "unix:", 5) == 0 || t[0] == '/') {
    const char *p = t[0] == '/' ? t : t + 5;
    snprintf(relay, sizeof relay, "local[%.500s]", p);
    snprintf(host, sizeof host, "localhost");
  } else {
    const char *p = strncmp(t, "inet:", 5) == 0 ? t + 5 : t;
    const char *colon;
    size_t hl;
    if (p[0] == '[') {
      const char *e = strchr(p, ']');
      if (!e)
        return MXGW_E_INVAL;
      p++;
      hl = (size_t)(e - p);
      colon = e + 1;
    } else {
      colon = strrchr(p, ':');
      if (!colon)
        return MXGW_E_INVAL;
      hl = (size_t)(colon - p);
    }
    if (*colon != ':' || hl == 0 || hl > 255)
      return MXGW_E_INVAL;
    snprintf(relay, sizeof relay, "%.*s[%.*s]:%.20s", (int)hl, p, (int)hl, p,
             colon + 1);
    snprintf(host, sizeof host, "%.*s", (int)hl, p);
  }
  b->relay = mxgw__strdup(&d->mem, relay);
  b->host = mxgw__strdup(&d->mem, host);
  return b->relay && b->host ? MXGW_OK : MXGW_E_NOMEM;
}

int mxgw_deliver_add_backend(mxgw_deliver *d, const char *target) {
  if (!d || !target || !*target)
    return MXGW_E_INVAL;
  if (atomic_load(&d->running))
    return MXGW_E_BUSY;
  if (d->nb == MAX_BACKENDS)
    return MXGW_E_RANGE;
  /* validate the target the way the driver parses it */
  mxgw_lmtp_config *tmp;
  if (mxgw_lmtp_config_new(&tmp, &d->mem))
    return MXGW_E_NOMEM;
  mxgw_lmtp_conn *probe;
  int rv = mxgw_lmtp_conn_new(&probe, tmp, target, &d->mem);
  mxgw_lmtp_config_free(tmp);
  if (rv)
    return rv;
  mxgw_lmtp_conn_free(probe);
  backend *b = &d->be[d->nb];
  memset(b, 0, sizeof *b);
  b->target = mxgw__strdup(&d->mem, target);
  if (!b->target)
    return MXGW_E_NOMEM;
  if ((rv = backend_names(d, b, target))) {
    mxgw__free(&d->mem, b->target);
    mxgw__free(&d->mem, b->relay);
    mxgw__free(&d->mem, b->host);
    return rv;
  }
  d->nb++;
  return MXGW_OK;
}

/* The LMTP client option that deliver option key stands for, or 0. */
static int lmtp_opt(int key) {
  switch (key) {
  case MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS:
    return MXGW_LMTP_OPT_CONNECT_TIMEOUT_MS;
  case MXGW_DELIVER_OPT_COMMAND_TIMEOUT_MS:
    return MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS;
  case MXGW_DELIVER_OPT_DATA_TIMEOUT_MS:
    return MXGW_LMTP_OPT_DATA_TIMEOUT_MS;
  case MXGW_DELIVER_OPT_STARTTLS:
    return MXGW_LMTP_OPT_STARTTLS;
  case MXGW_DELIVER_OPT_XCLIENT:
    return MXGW_LMTP_OPT_XCLIENT;
  case MXGW_DELIVER_OPT_MAX_MESSAGES:
    return MXGW_LMTP_OPT_MAX_MESSAGES;
  default:
    return 0;
  }
}

int mxgw_deliver_set_int(mxgw_deliver *d, int key, int64_t v) {
  if (!d)
    return MXGW_E_INVAL;
  if (atomic_load(&d->running))
    return MXGW_E_BUSY;
  switch (key) {
#define RANGE(field, lo, hi)                                                 \
  if (v < (lo) || v > (hi))                                                  \
    return MXGW_E_RANGE;                                                     \
  d->field = v;                                                              \
  return MXGW_OK
  case MXGW_DELIVER_OPT_CONCURRENCY: RANGE(concurrency, 1, 1024);
  case MXGW_DELIVER_OPT_BACKOFF_INITIAL: RANGE(backoff_initial, 1, INT32_MAX);
  case MXGW_DELIVER_OPT_BACKOFF_FACTOR: RANGE(backoff_factor, 1, 100);
  case MXGW_DELIVER_OPT_BACKOFF_MAX: RANGE(backoff_max, 1, INT32_MAX);
  case MXGW_DELIVER_OPT_LIFETIME: RANGE(lifetime, 0, INT32_MAX);
  case MXGW_DELIVER_OPT_BOUNCE: RANGE(bounce, 0, 1);
  case MXGW_DELIVER_OPT_KEEP_BOUNCED: RANGE(keep_bounced, 0, 1);
  case MXGW_DELIVER_OPT_BOUNCE_SIZE_LIMIT:
    RANGE(bounce_size_limit, 0, INT64_MAX);
  case MXGW_DELIVER_OPT_POLL_MS: RANGE(poll_ms, 1, 3600000);
  case MXGW_DELIVER_OPT_DELAY_WARNING: RANGE(delay_warning, 0, INT32_MAX);
#undef RANGE
  default: {
    int lk = lmtp_opt(key);
    return lk ? mxgw_lmtp_config_set_int(d->cfg, lk, v) : MXGW_E_INVAL;
  }
  }
}

int mxgw_deliver_get_int(mxgw_deliver *d, int key, int64_t *out) {
  if (!d || !out)
    return MXGW_E_INVAL;
  if (key >= MXGW_DELIVER_STAT_ATTEMPTS &&
      key < MXGW_DELIVER_STAT_ATTEMPTS + NSTATS) {
    *out = atomic_load(&d->stats[key - MXGW_DELIVER_STAT_ATTEMPTS]);
    return MXGW_OK;
  }
  switch (key) {
  case MXGW_DELIVER_OPT_CONCURRENCY: *out = d->concurrency; return MXGW_OK;
  case MXGW_DELIVER_OPT_BACKOFF_INITIAL: *out = d->backoff_initial; return 0;
  case MXGW_DELIVER_OPT_BACKOFF_FACTOR: *out = d->backoff_factor; return 0;
  case MXGW_DELIVER_OPT_BACKOFF_MAX: *out = d->backoff_max; return 0;
  case MXGW_DELIVER_OPT_LIFETIME: *out = d->lifetime; return 0;
  case MXGW_DELIVER_OPT_BOUNCE: *out = d->bounce; return 0;
  case MXGW_DELIVER_OPT_KEEP_BOUNCED: *out = d->keep_bounced; return 0;
  case MXGW_DELIVER_OPT_BOUNCE_SIZE_LIMIT:
    *out = d->bounce_size_limit;
    return 0;
  case MXGW_DELIVER_OPT_POLL_MS: *out = d->poll_ms; return 0;
  case MXGW_DELIVER_OPT_DELAY_WARNING: *out = d->delay_warning; return 0;
  default: {
    int lk = lmtp_opt(key);
    return lk ? mxgw_lmtp_config_get_int(d->cfg, lk, out) : MXGW_E_INVAL;
  }
  }
}

int mxgw_deliver_set_str(mxgw_deliver *d, int key, const char *value) {
  if (!d || !value)
    return MXGW_E_INVAL;
  if (atomic_load(&d->running))
    return MXGW_E_BUSY;
  for (const char *p = value; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return MXGW_E_INVAL;
  char **field;
  switch (key) {
  case MXGW_DELIVER_OPT_HOSTNAME: {
    if (!*value)
      return MXGW_E_INVAL;
    int rv = mxgw_lmtp_config_set_str(d->cfg, MXGW_LMTP_OPT_LHLO_NAME, value);
    if (rv)
      return rv;
    field = &d->hostname;
    break;
  }
  case MXGW_DELIVER_OPT_BOUNCE_RCPT:
    field = &d->bounce_rcpt;
    break;
  case MXGW_DELIVER_OPT_TLS_SERVERNAME:
    return mxgw_lmtp_config_set_str(d->cfg, MXGW_LMTP_OPT_TLS_SERVERNAME,
                                    value);
  default:
    return MXGW_E_INVAL;
  }
  char *copy = mxgw__strdup(&d->mem, value);
  if (!copy)
    return MXGW_E_NOMEM;
  mxgw__free(&d->mem, *field);
  *field = copy;
  return MXGW_OK;
}

int mxgw_deliver_set_tls(mxgw_deliver *d, struct mxgw_tls *tls) {
  if (!d)
    return MXGW_E_INVAL;
  if (atomic_load(&d->running))
    return MXGW_E_BUSY;
  return mxgw_lmtp_config_set_tls(d->cfg, tls);
}

int mxgw_deliver_set_bounce_queue(mxgw_deliver *d, struct mxgw_queue *bq) {
  if (!d)
    return MXGW_E_INVAL;
  if (atomic_load(&d->running))
    return MXGW_E_BUSY;
  d->bq = bq ? bq : d->q;
  return MXGW_OK;
}

int mxgw_deliver_set_log(mxgw_deliver *d, mxgw_deliver_log_fn *fn,
                         void *user) {
  if (!d)
    return MXGW_E_INVAL;
  if (atomic_load(&d->running))
    return MXGW_E_BUSY;
  d->log_fn = fn;
  d->log_user = user;
  return MXGW_OK;
}

/* ---- logging ----------------------------------------------------------- */

static void emit(mxgw_deliver *d, int level, const char *line, json_t *j) {
  if (!d->log_fn) {
    json_decref(j);
    return;
  }
  char *js = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
  pthread_mutex_lock(&d->log_mu);
  d->log_fn(d->log_user, level, line, js ? js : "{}");
  pthread_mutex_unlock(&d->log_mu);
  free(js);
  json_decref(j);
}

/* printf into a line and log it with a small JSON object. */
static void logf_simple(mxgw_deliver *d, int level, const char *id,
                        const char *event, const char *fmt, ...)
    MXGW_PRINTF(5, 6);
static void logf_simple(mxgw_deliver *d, int level, const char *id,
                        const char *event, const char *fmt, ...) {
  if (!d->log_fn)
    return;
  char msg[1200], line[1300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "%s: %s", id, msg);
  json_t *j = json_pack("{s:s, s:s, s:s}", "queue_id", id, "event", event,
                        "text", msg);
  emit(d, level, line, j);
}

/* Postfix prints delays with two decimals but drops trailing zeros
 * ("0.24", "0.1", "0"), below 10 ms "0.01" style is kept. */
static void fmt_secs(char *out, size_t n, int64_t ms) {
  if (ms < 0)
    ms = 0;
  int64_t cs = (ms + 5) / 10;
  if (cs % 100 == 0)
    snprintf(out, n, "%lld", (long long)(cs / 100));
  else if (cs % 10 == 0)
    snprintf(out, n, "%lld.%lld", (long long)(cs / 100),
             (long long)(cs % 100 / 10));
  else
    snprintf(out, n, "%lld.%02lld", (long long)(cs / 100),
             (long long)(cs % 100));
}

/* The text of a reply on one line: "250 2.0.0 <a> Saved". */
static void reply_line(char *out, size_t n, int code, const char *enh,
                       const char *text) {
  size_t o = 0;
  if (code)
    o = (size_t)snprintf(out, n, "%d ", code);
  if (enh && *enh && o < n)
    o += (size_t)snprintf(out + o, n - o, "%s ", enh);
  for (const char *p = text ? text : ""; *p && o + 1 < n; p++)
    out[o++] = (*p == '\n' || *p == '\r') ? ' ' : *p;
  if (o >= n)
    o = n - 1;
  while (o > 0 && out[o - 1] == ' ')
    o--;
  out[o] = 0;
}

typedef struct rcpt_log {
  const char *id, *to, *orig_to, *relay, *status, *enh, *reason;
  int64_t delays_ms[4];
  int64_t total_ms;
  int code;
} rcpt_log;

static void log_rcpt(mxgw_deliver *d, const rcpt_log *r) {
  char a[4][24], total[24];
  for (int i = 0; i < 4; i++)
    fmt_secs(a[i], sizeof a[i], r->delays_ms[i]);
  fmt_secs(total, sizeof total, r->total_ms);
  const char *dsn = r->enh && *r->enh ? r->enh
                    : r->code >= 500  ? "5.0.0"
                    : r->code >= 200 && r->code < 300 ? "2.0.0"
                                                      : "4.0.0";
  char line[4000], orig[600] = "";
  if (r->orig_to && *r->orig_to) {
    const char *semi = strchr(r->orig_to, ';');
    snprintf(orig, sizeof orig, " orig_to=<%.500s>,",
             semi ? semi + 1 : r->orig_to);
  }
  snprintf(line, sizeof line,
           "%s: to=<%.500s>,%s relay=%.600s, delay=%s, delays=%s/%s/%s/%s, "
           "dsn=%s, status=%s (%.1000s)",
           r->id, r->to, orig, r->relay, total, a[0], a[1], a[2], a[3], dsn,
           r->status, r->reason);
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:s, s:f, s:[f,f,f,f], s:s, s:s, s:i, s:s}",
      "queue_id", r->id, "event", "delivery", "to", r->to, "relay", r->relay,
      "delay", r->total_ms / 1000.0, "delays", r->delays_ms[0] / 1000.0,
      r->delays_ms[1] / 1000.0, r->delays_ms[2] / 1000.0,
      r->delays_ms[3] / 1000.0, "dsn", dsn, "status", r->status, "code",
      r->code, "reason", r->reason);
  if (j && r->orig_to && *r->orig_to)
    json_object_set_new(j, "orig_to", json_string(r->orig_to));
  emit(d, strcmp(r->status, "sent") == 0 ? 0 : 1, line, j);
}

/* ---- one delivery attempt ------------------------------------------------ */

static const char *estr(const mxgw_queue_entry *e, int key) {
  const char *p = "";
  size_t l;
  if (mxgw_queue_entry_get_str(e, key, &p, &l))
    return "";
  return p;
}

static int64_t eint(const mxgw_queue_entry *e, int key) {
  int64_t v = 0;
  mxgw_queue_entry_get_int(e, key, &v);
  return v;
}

static const char *rstr(const mxgw_queue_entry *e, size_t i, int key) {
  const char *p = "";
  size_t l;
  if (mxgw_queue_entry_rcpt_get_str(e, i, key, &p, &l))
    return "";
  return p;
}

static int64_t rcpt_int(const mxgw_queue_entry *e, size_t i, int key) {
  int64_t v = 0;
  mxgw_queue_entry_rcpt_get_int(e, i, key, &v);
  return v;
}

/* Make sure conn is connected and past LHLO. @return true if it is; else
 * `why` says what failed. A reused connection that the backend closed
 * meanwhile is noticed here (readable while idle) and replaced. */
static bool ensure_open(mxgw_lmtp_conn *conn, char *why, size_t n,
                        char *enh, size_t en) {
  int fd = mxgw_lmtp_conn_fd(conn);
  if (fd >= 0) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0)
      mxgw_lmtp_conn_process(conn, p.revents, real_ms());
    mxgw_lmtp *c = mxgw_lmtp_conn_client(conn);
    while (mxgw_lmtp_next_event(c) > 0)
      ;
    if (mxgw_lmtp_conn_fd(conn) >= 0 && !(mxgw_lmtp_want(c) &
                                          MXGW_LMTP_WANT_CLOSE))
      return true;
  }
  if (mxgw_lmtp_conn_open(conn, real_ms()))
    goto failed;
  for (;;) {
    mxgw_lmtp *c = mxgw_lmtp_conn_client(conn);
    int ev;
    while ((ev = mxgw_lmtp_next_event(c)) > 0) {
      if (ev == MXGW_LMTP_EV_READY)
        return true;
      if (ev == MXGW_LMTP_EV_CLOSED)
        goto failed;
    }
    fd = mxgw_lmtp_conn_fd(conn);
    int64_t now = real_ms(), dl = mxgw_lmtp_conn_deadline(conn);
    int timeout = dl < 0 ? 1000 : dl <= now ? 0 : (int)(dl - now);
    int revents = 0;
    if (fd >= 0) {
      struct pollfd p = {fd, (short)mxgw_lmtp_conn_events(conn), 0};
      int r = poll(&p, 1, timeout);
      if (r < 0 && errno != EINTR)
        goto failed;
      revents = r > 0 ? p.revents : 0;
    }
    if (mxgw_lmtp_conn_process(conn, revents, real_ms()))
      goto failed;
    if (fd < 0 && mxgw_lmtp_conn_fd(conn) < 0) {
      /* closed without an event pending: drain and fail */
      while ((ev = mxgw_lmtp_next_event(c)) > 0)
        if (ev == MXGW_LMTP_EV_READY)
          return true;
      goto failed;
    }
  }
failed: {
  mxgw_lmtp *c = mxgw_lmtp_conn_client(conn);
  const char *em = mxgw_lmtp_errmsg(c);
  const char *lr = NULL;
  size_t ll = 0;
  if ((!em || !*em) &&
      mxgw_lmtp_get_str(c, MXGW_LMTP_INFO_LAST_REPLY, &lr, &ll) == 0 && ll)
    snprintf(why, n, "%.*s", (int)ll, lr);
  else
    snprintf(why, n, "%s", em && *em ? em : "cannot connect");
  for (char *p = why; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  while (mxgw_lmtp_next_event(c) > 0)
    ;
  /* 4.4.1 no connection; 4.7.5 STARTTLS; 4.5.0 greeting or LHLO ... */
  snprintf(enh, en, "%s", mxgw__lmtp_errenh(c));
  mxgw_lmtp_conn_free(conn);
  return false;
}
}

/* Whether a DSN may be sent for failed recipient i (RFC 3461 4.1). */
static bool dsn_wanted(const mxgw_queue_entry *e, size_t i) {
  if (!*estr(e, MXGW_QKEY_SENDER))
    return false; /* never bounce to the null sender */
  int64_t nf = rcpt_int(e, i, MXGW_QRKEY_NOTIFY);
  if (nf & MXGW_NOTIFY_NEVER)
    return false;
  return nf == 0 || (nf & MXGW_NOTIFY_FAILURE);
}

/* Whether recipient i asked for a success DSN (NOTIFY=SUCCESS only when
 * given explicitly, RFC 3461 4.1). */
static bool success_wanted(const mxgw_queue_entry *e, size_t i) {
  int64_t nf = rcpt_int(e, i, MXGW_QRKEY_NOTIFY);
  return *estr(e, MXGW_QKEY_SENDER) && !(nf & MXGW_NOTIFY_NEVER) &&
         (nf & MXGW_NOTIFY_SUCCESS);
}

/* Whether a delay DSN may be sent for recipient i: NOTIFY with DELAY, or
 * no NOTIFY (RFC 3461 4.1: then FAILURE,DELAY is at the MTA's discretion;
 * we warn, as Postfix does), and not warned before. */
#define DELAY_MARK "delay_dsn"
static bool delay_wanted(const mxgw_queue_entry *e, size_t i) {
  int64_t nf = rcpt_int(e, i, MXGW_QRKEY_NOTIFY);
  return *estr(e, MXGW_QKEY_SENDER) && !(nf & MXGW_NOTIFY_NEVER) &&
         (nf == 0 || (nf & MXGW_NOTIFY_DELAY)) &&
         mxgw__queue_entry_rcpt_mark(e, i, DELAY_MARK) == 0;
}

/* Arrival in ms: the queue ID starts with 13 hex digits of microseconds
 * since the epoch (docs/queue.md), finer than the metadata's seconds. */
static int64_t arrival_time_ms(const char *id, int64_t arrival) {
  int64_t us = 0;
  for (int i = 0; i < 13; i++) {
    char ch = id[i];
    int v = ch >= '0' && ch <= '9'   ? ch - '0'
            : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                     : -1;
    if (v < 0)
      return arrival * 1000;
    us = us * 16 + v;
  }
  int64_t ms = us / 1000;
  return ms / 1000 == arrival ? ms : arrival * 1000;
}

typedef struct outcome {
  size_t idx; /* entry recipient index */
  int code;
  int state;  /* mxgw_rcpt_state after this attempt */
  bool remote;
  bool failed_now;
  bool pick;  /* in the report being composed (queue_report) */
  char enh[16];
  char *text;
} outcome;

/* Queue one DSN of `kind` for the outcomes with .pick set (before the
 * attempt's outcome is saved) and log it.
 * @return MXGW_OK, or the error (logged by the caller). */
static int queue_report(worker *w, const mxgw_queue_entry *e, const char *id,
                        const outcome *out, size_t no, mxgw__dsn_kind kind,
                        const char *rhost) {
  mxgw_deliver *d = w->d;
  size_t n = 0;
  for (size_t k = 0; k < no; k++)
    n += out[k].pick;
  mxgw__dsn_rcpt *dr = mxgw__calloc(&d->mem, n ? n : 1, sizeof *dr);
  if (!dr)
    return MXGW_E_NOMEM;
  size_t nd = 0;
  for (size_t k = 0; k < no; k++)
    if (out[k].pick)
      dr[nd++] = (mxgw__dsn_rcpt){
          .addr = rstr(e, out[k].idx, MXGW_QRKEY_ADDR),
          .orcpt = rstr(e, out[k].idx, MXGW_QRKEY_ORCPT),
          .enh = out[k].enh,
          .text = out[k].text ? out[k].text : "",
          .code = out[k].code,
          .remote = out[k].remote,
          .relay = out[k].remote ? rhost : "",
      };
  mxgw__dsn_args a = {
      .hostname = d->hostname,
      .bounce_rcpt = d->bounce_rcpt,
      .size_limit = d->bounce_size_limit,
      .now = w->now,
      .kind = kind,
      .retry_until = eint(e, MXGW_QKEY_ARRIVAL) + d->lifetime,
  };
  char dsn_id[40] = "";
  int rv = mxgw__dsn_queue(d->bq, e, dr, nd, &a, dsn_id);
  mxgw__free(&d->mem, dr);
  if (rv == MXGW_OK) {
    stat_add(d, MXGW_DELIVER_STAT_DSNS, 1);
    /* Postfix's wording for the three kinds */
    logf_simple(d, 1, id, "dsn", "sender %s notification: %s",
                kind == MXGW__DSN_FAILED    ? "non-delivery"
                : kind == MXGW__DSN_DELAYED ? "delay"
                                            : "delivery status",
                dsn_id);
  }
  return rv;
}

static bool ascii_only(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] >= 0x80)
      return false;
  return true;
}

/* The client asked for SMTPUTF8 (MAIL ... SMTPUTF8). Require it of the
 * backend only when the message needs it, as Postfix does: when the sender,
 * a recipient being delivered or the header section holds non-ASCII octets.
 * An all-ASCII message goes to a backend without SMTPUTF8 (Dovecot 2.3)
 * as it is, instead of failing with 553 5.6.7. A header section that
 * cannot be read counts as needing it (the client then reports why). */
static bool needs_smtputf8(mxgw_lmtp *c, const mxgw_queue_entry *e,
                           const outcome *out, size_t no) {
  int64_t ext = 0;
  if (mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_EXTENSIONS, &ext) == MXGW_OK &&
      (ext & MXGW_LMTP_EXT_SMTPUTF8))
    return true; /* offered: pass the client's request on unchanged */
  const char *from = estr(e, MXGW_QKEY_SENDER);
  if (!ascii_only(from, strlen(from)))
    return true;
  for (size_t k = 0; k < no; k++) {
    const char *a = rstr(e, out[k].idx, MXGW_QRKEY_ADDR);
    if (!ascii_only(a, strlen(a)))
      return true;
  }
  int fd;
  int64_t pos, left;
  if (mxgw_queue_entry_body(e, &fd, &pos, &left) != MXGW_OK)
    return true;
  /* the header section: up to the first empty line (or 256 KiB) */
  char buf[8192];
  size_t total = 0;
  int bol = 1; /* at the beginning of a line (a CR there keeps it) */
  bool need = false, done = false;
  while (!done && !need && total < 256 * 1024 && left > 0) {
    ssize_t r = pread(fd, buf, left < (int64_t)sizeof buf ? (size_t)left
                                                          : sizeof buf,
                      (off_t)pos);
    if (r > 0) {
      pos += r;
      left -= r;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (ssize_t i = 0; i < r; i++) {
      unsigned char ch = (unsigned char)buf[i];
      if (ch >= 0x80) {
        need = true;
        break;
      }
      if (ch == '\n') {
        if (bol) {
          done = true; /* empty line: end of the header section */
          break;
        }
        bol = 1;
      } else if (ch == '\r' && bol) {
        /* an empty line's CR keeps bol */
      } else {
        bol = 0;
      }
    }
    total += (size_t)r;
  }
  close(fd);
  return need || (!done && total >= 256 * 1024);
}

static void deliver_entry(worker *w, mxgw_queue_entry *e) {
  mxgw_deliver *d = w->d;
  const mxgw_mem *m = &d->mem;
  int64_t t_take = real_ms();
  char id[40];
  snprintf(id, sizeof id, "%s", estr(e, MXGW_QKEY_ID));
  int64_t arrival = eint(e, MXGW_QKEY_ARRIVAL);
  int64_t arrival_ms = arrival_time_ms(id, arrival);
  int64_t attempts = eint(e, MXGW_QKEY_ATTEMPTS);
  size_t nr = (size_t)eint(e, MXGW_QKEY_RCPT_COUNT);
  outcome *out = mxgw__calloc(m, nr ? nr : 1, sizeof *out);
  size_t no = 0;
  if (!out) {
    stat_add(d, MXGW_DELIVER_STAT_ERRORS, 1);
    logf_simple(d, 2, id, "error", "out of memory; left for recovery");
    return;
  }
  for (size_t i = 0; i < nr; i++) {
    int64_t st = rcpt_int(e, i, MXGW_QRKEY_STATE);
    if (st == MXGW_RCPT_PENDING || st == MXGW_RCPT_DEFERRED)
      out[no++].idx = i;
  }
  stat_add(d, MXGW_DELIVER_STAT_ATTEMPTS, 1);

  /* connect: the first backend that takes a connection */
  int used = -1, why_b = -1;
  char why[600] = "no backend", why_enh[16] = "";
  int64_t t_conn = real_ms(), t_ready = t_conn, t_done = t_conn;
  for (size_t b = 0; no && b < d->nb; b++) {
    if (atomic_load(&d->be[b].down_until_ms) > real_ms()) {
      pthread_mutex_lock(&d->be_mu);
      snprintf(why, sizeof why, "%s", d->be[b].why);
      snprintf(why_enh, sizeof why_enh, "%s", d->be[b].why_enh);
      pthread_mutex_unlock(&d->be_mu);
      why_b = (int)b;
      continue;
    }
    if (!w->conn[b] &&
        mxgw_lmtp_conn_new(&w->conn[b], d->cfg, d->be[b].target, m))
      continue;
    t_conn = real_ms();
    if (!ensure_open(w->conn[b], why, sizeof why, why_enh, sizeof why_enh)) {
      w->conn[b] = NULL; /* freed by ensure_open */
      why_b = (int)b;
      /* other workers skip it for the rest of this run (the next run, or
       * the next pass of mxgw_deliver_run(), tries it again) */
      pthread_mutex_lock(&d->be_mu);
      snprintf(d->be[b].why, sizeof d->be[b].why, "%s", why);
      snprintf(d->be[b].why_enh, sizeof d->be[b].why_enh, "%s", why_enh);
      pthread_mutex_unlock(&d->be_mu);
      atomic_store(&d->be[b].down_until_ms, INT64_MAX);
      continue;
    }
    used = (int)b;
    t_ready = real_ms();
    break;
  }

  /* deliver */
  mxgw_lmtp *c = NULL;
  int drv = MXGW_OK;
  if (used >= 0) {
    mxgw_lmtp_conn *conn = w->conn[used];
    c = mxgw_lmtp_conn_client(conn);
    const char *sender = estr(e, MXGW_QKEY_SENDER);
    int rv = mxgw_lmtp_msg_new(c, sender);
    if (!rv)
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_SIZE,
                                 eint(e, MXGW_QKEY_SIZE));
    if (!rv && strcmp(estr(e, MXGW_QKEY_BODY), "8BITMIME") == 0)
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_8BITMIME, 1);
    if (!rv && eint(e, MXGW_QKEY_SMTPUTF8) && needs_smtputf8(c, e, out, no))
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_SMTPUTF8, 1);
    const char *ret = estr(e, MXGW_QKEY_RET);
    if (!rv && *ret)
      rv = mxgw_lmtp_msg_set_int(c, MXGW_LMTP_MSG_RET,
                                 strcmp(ret, "HDRS") == 0 ? 2 : 1);
    if (!rv && *estr(e, MXGW_QKEY_ENVID))
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_ENVID,
                                 estr(e, MXGW_QKEY_ENVID));
    if (!rv && *estr(e, MXGW_QKEY_CLIENT_ADDR))
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_XCLIENT_ADDR,
                                 estr(e, MXGW_QKEY_CLIENT_ADDR));
    if (!rv && *estr(e, MXGW_QKEY_CLIENT_HELO))
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_XCLIENT_HELO,
                                 estr(e, MXGW_QKEY_CLIENT_HELO));
    if (!rv && *estr(e, MXGW_QKEY_CLIENT_HOST))
      rv = mxgw_lmtp_msg_set_str(c, MXGW_LMTP_MSG_XCLIENT_NAME,
                                 estr(e, MXGW_QKEY_CLIENT_HOST));
    for (size_t k = 0; !rv && k < no; k++) {
      const char *orcpt = rstr(e, out[k].idx, MXGW_QRKEY_ORCPT);
      int ix = mxgw_lmtp_msg_add_rcpt(
          c, rstr(e, out[k].idx, MXGW_QRKEY_ADDR),
          (int)rcpt_int(e, out[k].idx, MXGW_QRKEY_NOTIFY), *orcpt ? orcpt : NULL);
      rv = ix < 0 ? ix : 0;
    }
    int bfd = -1;
    int64_t boff = 0, blen = 0;
    if (!rv)
      rv = mxgw_queue_entry_body(e, &bfd, &boff, &blen) ? MXGW_E_IO : 0;
    if (!rv)
      drv = mxgw_lmtp_conn_deliver_range(conn, bfd, boff, blen);
    else
      drv = rv;
    if (bfd >= 0)
      close(bfd);
    t_done = real_ms();
    c = mxgw_lmtp_conn_client(conn);
    if (drv != MXGW_OK) {
      /* envelope rejected by the client or the body unreadable: nothing
       * may be claimed; drop the connection so no half state is reused */
      snprintf(why, sizeof why, "local error: %s", mxgw_strerror(drv));
      mxgw_lmtp_conn_free(conn);
      w->conn[used] = NULL;
      c = NULL;
    }
  }

  /* outcomes */
  /* no backend took the message: a connection that was made and then
   * failed (STARTTLS 4.7.5, a refused greeting or LHLO) names its backend
   * and keeps its enhanced code, as Postfix logs it; no connection at all
   * is relay=none, 4.4.1 */
  bool talked = used < 0 && why_b >= 0 && *why_enh && strcmp(why_enh, "4.4.1");
  int rb = used >= 0 ? used : talked ? why_b : -1;
  const char *relay = rb >= 0 ? d->be[rb].relay : "none";
  const char *rhost = rb >= 0 ? d->be[rb].host : "";
  bool expired = w->now >= arrival + d->lifetime;
  for (size_t k = 0; k < no; k++) {
    outcome *o = &out[k];
    int64_t code = 451, local = 1;
    const char *enh = used >= 0 ? "4.4.2" : talked ? why_enh : "4.4.1",
               *text = why;
    size_t el = strlen(enh), tl = strlen(why);
    if (c) {
      mxgw_lmtp_rcpt_get_int(c, k, MXGW_LMTP_R_CODE, &code);
      mxgw_lmtp_rcpt_get_int(c, k, MXGW_LMTP_R_LOCAL, &local);
      if (mxgw_lmtp_rcpt_get_str(c, k, MXGW_LMTP_R_ENH, &enh, &el))
        enh = "", el = 0;
      if (mxgw_lmtp_rcpt_get_str(c, k, MXGW_LMTP_R_TEXT, &text, &tl))
        text = "", tl = 0;
    }
    o->code = (int)code;
    o->remote = !local;
    snprintf(o->enh, sizeof o->enh, "%.*s", (int)el, enh);
    o->text = mxgw__memdup0(m, text, tl);
    int state = code >= 200 && code < 300   ? MXGW_RCPT_DELIVERED
                : code >= 500 && code < 600 ? MXGW_RCPT_FAILED
                                            : MXGW_RCPT_DEFERRED;
    mxgw_queue_entry_set_rcpt(e, o->idx, state, o->code, o->enh,
                              o->text ? o->text : "");
    char reply[1200], reason[1400];
    reply_line(reply, sizeof reply, o->code, o->enh, o->text);
    if (state == MXGW_RCPT_DELIVERED || !o->remote)
      snprintf(reason, sizeof reason, "%s", reply);
    else
      snprintf(reason, sizeof reason, "host %.*s said: %s",
               (int)(strcspn(relay, "]") + (strchr(relay, ']') ? 1 : 0)),
               relay, reply);
    if (state == MXGW_RCPT_DEFERRED && expired) {
      /* past the queue lifetime: final, with the last error kept */
      state = MXGW_RCPT_FAILED;
      mxgw_queue_entry_set_rcpt(e, o->idx, state, o->code, o->enh,
                                o->text ? o->text : "");
      size_t rl = strlen(reason);
      snprintf(reason + rl, sizeof reason - rl,
               " (message expired: in the queue for %llds)",
               (long long)(w->now - arrival));
    }
    if (state == MXGW_RCPT_FAILED)
      o->failed_now = true;
    o->state = state;
    stat_add(d,
             state == MXGW_RCPT_DELIVERED ? MXGW_DELIVER_STAT_SENT
             : state == MXGW_RCPT_FAILED  ? MXGW_DELIVER_STAT_BOUNCED
                                          : MXGW_DELIVER_STAT_DEFERRED,
             1);
    rcpt_log rl = {
        .id = id,
        .to = rstr(e, o->idx, MXGW_QRKEY_ADDR),
        .orig_to = rstr(e, o->idx, MXGW_QRKEY_ORCPT),
        .relay = relay,
        .status = state == MXGW_RCPT_DELIVERED ? "sent"
                  : state == MXGW_RCPT_FAILED  ? "bounced"
                                               : "deferred",
        .enh = o->enh,
        .reason = reason,
        .code = o->code,
        .total_ms = t_done - arrival_ms,
        .delays_ms = {t_take - arrival_ms, t_conn - t_take,
                      t_ready - t_conn, t_done - t_ready},
    };
    log_rcpt(d, &rl);
  }

  /* DSNs, queued BEFORE the outcome is saved: a crash in between repeats
   * the attempt and its DSNs, it never loses one */
  bool dsn_on = d->bounce == MXGW_BOUNCE_DSN && *estr(e, MXGW_QKEY_SENDER);
  /* failure: for the recipients that failed in this attempt */
  size_t npick = 0;
  for (size_t k = 0; k < no; k++) {
    out[k].pick = dsn_on && out[k].failed_now && dsn_wanted(e, out[k].idx);
    npick += out[k].pick;
  }
  if (npick) {
    int rv = queue_report(w, e, id, out, no, MXGW__DSN_FAILED, rhost);
    if (rv != MXGW_OK) {
      /* the failure cannot be reported now: keep those recipients
       * deferred so a later attempt fails them and reports again */
      for (size_t k = 0; k < no; k++)
        if (out[k].pick) {
          out[k].state = MXGW_RCPT_DEFERRED;
          mxgw_queue_entry_set_rcpt(e, out[k].idx, MXGW_RCPT_DEFERRED,
                                    out[k].code, out[k].enh,
                                    out[k].text ? out[k].text : "");
        }
      stat_add(d, MXGW_DELIVER_STAT_ERRORS, 1);
      logf_simple(d, 2, id, "error",
                  "cannot queue the non-delivery notification: %s; the "
                  "failed recipients stay deferred",
                  mxgw_strerror(rv));
    }
  }
  /* success: delivered now with NOTIFY=SUCCESS, unless the backend offers
   * DSN (then it got NOTIFY and ORCPT and is responsible, RFC 3461 5.2) */
  int64_t ext = 0;
  if (c)
    mxgw_lmtp_get_int(c, MXGW_LMTP_INFO_EXTENSIONS, &ext);
  npick = 0;
  for (size_t k = 0; k < no; k++) {
    out[k].pick = dsn_on && out[k].state == MXGW_RCPT_DELIVERED &&
                  success_wanted(e, out[k].idx);
    npick += out[k].pick;
  }
  if (npick && (ext & MXGW_LMTP_EXT_DSN)) {
    logf_simple(d, 0, id, "dsn",
                "sender delivery status notification left to %s (it offers "
                "DSN): %zu recipient(s)",
                relay, npick);
  } else if (npick) {
    int rv = queue_report(w, e, id, out, no, MXGW__DSN_DELIVERED, rhost);
    if (rv != MXGW_OK) {
      /* the mail is delivered; the report is lost (logged) */
      stat_add(d, MXGW_DELIVER_STAT_ERRORS, 1);
      logf_simple(d, 2, id, "error",
                  "cannot queue the delivery status notification: %s",
                  mxgw_strerror(rv));
    }
  }
  /* delay: still deferred at or after arrival + DELAY_WARNING, once per
   * recipient (the mark is saved with the outcome) */
  npick = 0;
  bool warn_time = d->delay_warning > 0 &&
                   w->now >= arrival + d->delay_warning;
  for (size_t k = 0; k < no; k++) {
    out[k].pick = dsn_on && warn_time &&
                  out[k].state == MXGW_RCPT_DEFERRED &&
                  delay_wanted(e, out[k].idx);
    npick += out[k].pick;
  }
  if (npick) {
    int rv = queue_report(w, e, id, out, no, MXGW__DSN_DELAYED, rhost);
    for (size_t k = 0; rv == MXGW_OK && k < no; k++)
      if (out[k].pick)
        rv = mxgw__queue_entry_rcpt_set_mark(e, out[k].idx, DELAY_MARK,
                                             w->now);
    if (rv != MXGW_OK) {
      stat_add(d, MXGW_DELIVER_STAT_ERRORS, 1);
      logf_simple(d, 2, id, "error",
                  "cannot queue the delay notification: %s; tried again at "
                  "the next attempt",
                  mxgw_strerror(rv));
    }
  }

  /* end the attempt */
  int64_t delay = d->backoff_initial;
  for (int64_t i = 0; i < attempts && delay < d->backoff_max; i++)
    delay *= d->backoff_factor;
  if (delay > d->backoff_max)
    delay = d->backoff_max;
  int64_t next = w->now + delay;
  int st = mxgw_queue_finish(d->q, e, next);
  if (st < 0) {
    stat_add(d, MXGW_DELIVER_STAT_ERRORS, 1);
    logf_simple(d, 2, id, "error",
                "cannot save the delivery results: %s; the message is "
                "retried after recovery",
                mxgw_strerror(st));
  } else if (st == 0) {
    stat_add(d, MXGW_DELIVER_STAT_REMOVED, 1);
    logf_simple(d, 0, id, "removed", "removed");
  } else if (st == MXGW_QSTATE_FAILED) {
    /* remove only if every failed recipient was reported by a DSN */
    bool all_reported = d->bounce == MXGW_BOUNCE_DSN && !d->keep_bounced;
    for (size_t i = 0; all_reported && i < nr; i++)
      if (rcpt_int(e, i, MXGW_QRKEY_STATE) == MXGW_RCPT_FAILED &&
          !dsn_wanted(e, i))
        all_reported = false;
    int rv = all_reported ? mxgw_queue_manage(d->q, MXGW_QOP_DELETE, id, 0)
                          : 0;
    if (all_reported && rv == 1) {
      stat_add(d, MXGW_DELIVER_STAT_REMOVED, 1);
      logf_simple(d, 0, id, "removed", "removed");
    } else {
      stat_add(d, MXGW_DELIVER_STAT_KEPT_FAILED, 1);
      logf_simple(d, 1, id, "failed",
                  "moved to the failed queue (%s)",
                  !*estr(e, MXGW_QKEY_SENDER) ? "null sender: no notification"
                  : d->bounce != MXGW_BOUNCE_DSN ? "bounce policy: keep"
                  : d->keep_bounced             ? "kept after notification"
                  : rv < 0                      ? "cannot remove"
                                                : "no notification requested");
    }
  } else if (st == MXGW_QSTATE_DEFERRED) {
    logf_simple(d, 1, id, "deferred", "deferred until %lld (attempt %lld)",
                (long long)next, (long long)attempts + 1);
  }
  for (size_t k = 0; k < no; k++)
    mxgw__free(m, out[k].text);
  mxgw__free(m, out);
}

/* Wake one waiting run worker for a pass (a new generation). */
static void kick_one(mxgw_deliver *d) {
  pthread_mutex_lock(&d->run_mu);
  d->run_gen++;
  pthread_cond_signal(&d->run_cv);
  pthread_mutex_unlock(&d->run_mu);
}

/* One pass: take and deliver until nothing is due. With run workers, one
 * that took a message wakes one more while more is waiting, so concurrency
 * follows the backlog without waking every worker for each message. */
static void drain(worker *w) {
  mxgw_deliver *d = w->d;
  for (;;) {
    mxgw_queue_entry *e = NULL;
    int rv = mxgw_queue_take(d->q, w->now, &e);
    if (rv == MXGW_E_NOTFOUND)
      break;
    if (rv == MXGW_OK && atomic_load(&d->run_live) &&
        mxgw__queue_more_due(d->q))
      kick_one(d);
    if (rv) {
      stat_add(d, MXGW_DELIVER_STAT_ERRORS, 1);
      logf_simple(d, 2, "mxgw-deliver", "error", "queue take: %s",
                  mxgw_strerror(rv));
      break;
    }
    deliver_entry(w, e);
    mxgw_queue_entry_free(e);
    w->tried++;
  }
}

static bool close_conns(worker *w) {
  bool any = false;
  for (size_t b = 0; b < w->d->nb; b++) {
    if (w->conn[b]) {
      mxgw_lmtp_conn_quit(w->conn[b]);
      mxgw_lmtp_conn_free(w->conn[b]);
      w->conn[b] = NULL;
      any = true;
    }
  }
  return any;
}

static void *worker_main(void *arg) {
  worker *w = arg;
  drain(w);
  close_conns(w);
  return NULL;
}

/* A worker of mxgw_deliver_run(): a pass each time the run moves the
 * generation on (a wake-up or the poll interval), its connections kept
 * between passes until RUN_IDLE_MS without a message. */
static void *run_worker_main(void *arg) {
  worker *w = arg;
  mxgw_deliver *d = w->d;
  uint64_t seen = 0;
  bool open = false;
  pthread_mutex_lock(&d->run_mu);
  for (;;) {
    if (d->run_stop)
      break;
    if (d->run_gen == seen) {
      if (!open) {
        pthread_cond_wait(&d->run_cv, &d->run_mu);
        continue;
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += RUN_IDLE_MS / 1000;
      ts.tv_nsec += (long)(RUN_IDLE_MS % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      if (pthread_cond_timedwait(&d->run_cv, &d->run_mu, &ts) == ETIMEDOUT &&
          d->run_gen == seen && !d->run_stop) {
        pthread_mutex_unlock(&d->run_mu);
        close_conns(w); /* idle: QUIT */
        open = false;
        pthread_mutex_lock(&d->run_mu);
      }
      continue;
    }
    seen = d->run_gen;
    pthread_mutex_unlock(&d->run_mu);
    w->now = (int64_t)time(NULL);
    drain(w);
    for (size_t b = 0; b < d->nb; b++)
      if (w->conn[b])
        open = true;
    pthread_mutex_lock(&d->run_mu);
  }
  pthread_mutex_unlock(&d->run_mu);
  close_conns(w);
  return NULL;
}

/* Marks d as running for mxgw_deliver_run*(); false without a backend or
 * while a run is going on. */
static bool run_claim(mxgw_deliver *d) {
  if (d->nb == 0)
    return false;
  bool expect = false;
  return atomic_compare_exchange_strong(&d->running, &expect, true);
}

/* Starts workers ws[0..n) of d on fn, each with the time now; *started
 * counts those that run. MXGW_E_IO when not even one could start. */
static int start_workers(mxgw_deliver *d, worker *ws, size_t n, int64_t now,
                         void *(*fn)(void *), size_t *started) {
  *started = 0;
  for (size_t i = 0; i < n; i++) {
    ws[i].d = d;
    ws[i].now = now;
    if (pthread_create(&ws[i].tid, NULL, fn, &ws[i]) != 0)
      return *started ? MXGW_OK : MXGW_E_IO;
    (*started)++;
  }
  return MXGW_OK;
}

int mxgw_deliver_run_once(mxgw_deliver *d, int64_t now) {
  if (!d)
    return MXGW_E_INVAL;
  if (!run_claim(d))
    return MXGW_E_STATE;
  for (size_t b = 0; b < d->nb; b++)
    atomic_store(&d->be[b].down_until_ms, 0);
  size_t n = (size_t)d->concurrency;
  worker *ws = mxgw__calloc(&d->mem, n, sizeof *ws);
  if (!ws) {
    atomic_store(&d->running, false);
    return MXGW_E_NOMEM;
  }
  size_t started;
  int rv = start_workers(d, ws, n, now, worker_main, &started);
  int tried = 0;
  for (size_t i = 0; i < started; i++) {
    pthread_join(ws[i].tid, NULL);
    tried += ws[i].tried;
  }
  mxgw__free(&d->mem, ws);
  atomic_store(&d->running, false);
  return rv ? rv : tried;
}

int mxgw_deliver_run(mxgw_deliver *d) {
  if (!d)
    return MXGW_E_INVAL;
  if (!run_claim(d))
    return MXGW_E_STATE;
  size_t n = (size_t)d->concurrency, started = 0;
  worker *ws = mxgw__calloc(&d->mem, n, sizeof *ws);
  int rv = ws ? MXGW_OK : MXGW_E_NOMEM;
  pthread_mutex_lock(&d->run_mu);
  d->run_stop = false;
  d->run_gen = 0;
  pthread_mutex_unlock(&d->run_mu);
  if (ws)
    rv = start_workers(d, ws, n, 0, run_worker_main, &started);
  /* each poll interval is a pass: backends marked down in the last one are
   * tried again, deferred messages that came due are taken (new commits
   * wake a worker directly: mxgw_deliver_wakeup()) */
  if (rv == MXGW_OK)
    atomic_store(&d->run_live, true);
  while (rv == MXGW_OK && !atomic_load(&d->stop)) {
    for (size_t b = 0; b < d->nb; b++)
      atomic_store(&d->be[b].down_until_ms, 0);
    kick_one(d);
    struct pollfd p = {d->wake_fd, POLLIN, 0};
    if (poll(&p, 1, (int)d->poll_ms) > 0) {
      uint64_t v;
      if (read(d->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        rv = MXGW_E_IO;
    }
  }
  atomic_store(&d->run_live, false);
  pthread_mutex_lock(&d->run_mu);
  d->run_stop = true;
  pthread_cond_broadcast(&d->run_cv);
  pthread_mutex_unlock(&d->run_mu);
  for (size_t i = 0; i < started; i++)
    pthread_join(ws[i].tid, NULL);
  mxgw__free(&d->mem, ws);
  atomic_store(&d->running, false);
  atomic_store(&d->stop, false);
  return rv;
}

static int wake(mxgw_deliver *d) {
  uint64_t one = 1;
  return write(d->wake_fd, &one, sizeof one) == sizeof one || errno == EAGAIN
             ? MXGW_OK
             : MXGW_E_IO;
}

int mxgw_deliver_stop(mxgw_deliver *d) {
  if (!d)
    return MXGW_E_INVAL;
  atomic_store(&d->stop, true);
  return wake(d);
}

int mxgw_deliver_wakeup(mxgw_deliver *d) {
  if (!d)
    return MXGW_E_INVAL;
  if (atomic_load(&d->run_live)) { /* straight to a waiting worker */
    kick_one(d);
    return MXGW_OK;
  }
  return wake(d);
}
