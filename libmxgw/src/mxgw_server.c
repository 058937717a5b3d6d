/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server.c: the server layer (mxgw_server.h). Event loops on epoll,
 * each owning its listening sockets (SO_REUSEPORT), its connections, a
 * c-ares resolver and an SPF context; a pool of policy workers whose
 * answers come back through the loop's eventfd; the queue's commit
 * completions through the queue's eventfd; the delivery scheduler on a
 * thread of its own.
 *
 * A connection never waits on anything but its loop: a decision that needs
 * DNS, a callback or a durable commit leaves the session's decision
 * pending (mxgw_session_pending()) and the answer is given when the
 * result arrives. A connection whose socket closes while such a result is
 * outstanding stays allocated (a "zombie", refs > 0) until it arrives.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mxgw/mxgw_deliver.h"
#include "mxgw/mxgw_proxyproto.h"
#include "mxgw/mxgw_queue.h"
#include "mxgw/mxgw_resolver.h"
#include "mxgw/mxgw_spf.h"
#include "mxgw/mxgw_tls.h"
#include "mxgw_int.h"
#include "mxgw_server_int.h"

#define RBUF_SIZE 65536
#define PROXY_BUF_MAX (16 + 65535)
#define MAX_EVENTS 256
#define MAX_DNS_FDS 32
#define IP_BUCKETS 4096

enum hkind { H_LISTEN = 1, H_CONN, H_WAKE, H_QUEUE, H_DNS, H_BACKEND };
struct handle {
  int kind;
  int fd;
};

enum wait_kind { W_NONE = 0, W_GREET, W_SPF, W_POLICY, W_COMMIT, W_PROXY };

/* A configuration as sessions use it: the server configuration plus one
 * frozen session configuration per listener. Reference counted: each
 * connection holds the snapshot it started with. */
struct snap {
  atomic_int refs;
  mxgw_server_config *cfg;
  mxgw_session_config *scfg[MXGW__SRV_MAX_LISTENERS];
};

struct lsock {
  struct handle h;
  int idx;
  int port;
};

struct loop;

struct conn {
  struct handle h; /* first */
  struct loop *lp;
  struct snap *snap;
  int li;
  uint64_t id;
  mxgw_session *s;
  struct conn *prev, *next, *ready_next, *grave_next;
  int in_ready;
  char addr[64], laddr[64];
  int port, lport;
  char ipkey[72];
  int ip_counted;
  unsigned char *in;
  size_t in_len, in_cap;
  uint32_t ep_mask;
  int rd_eof, broken, closed_ev, dead, in_txn, shut;
  int wait;
  int64_t wait_deadline;
  int refs;
  uint64_t req_gen;
  int req_stage;
  mxgw_queue_msg *msg;
  int msg_err;
  char qid[32];
  mxgw_spf_check *spf;
  int spf_result;
  char *spf_hdr;
  char *spf_json;
  /* proxy mode (MXGW_SRV_OPT_PROXY_MODE): the backend of this session */
  struct mxgw__srv_px *px;
  struct handle bh; /* epoll data of the backend socket (kind H_BACKEND) */
};

struct inbox_done {
  mxgw_queue_done d;
};

struct loop {
  mxgw_server *srv;
  int id;
  int epfd;
  struct handle wake;
  struct handle qh;
  struct lsock ls[MXGW__SRV_MAX_LISTENERS];
  int nls;
  int listening;
  struct conn *conns;
  size_t nconns;
  size_t nzombies;
  struct conn *ready;
  struct conn *grave; /* closed, freed by bury() */
  unsigned char *rbuf;
  pthread_t tid;
  int has_thread;
  mxgw_resolver *res;
  mxgw_spf *spf;
  struct handle dnsh[MAX_DNS_FDS];
  uint32_t dnsev[MAX_DNS_FDS];
  ino_t dnsino[MAX_DNS_FDS]; /* the socket each registration was made for */
  int ndns;
  pthread_mutex_t mu; /* inbox */
  mxgw_server_req *inbox;
  mxgw_queue_done *qin;
  size_t nqin, capqin;
  int64_t next_timer;
  int drain_seen;
  int64_t drain_deadline;
  int drain_forced;
  int done;
  int64_t tls_next;
};

struct ipent {
  struct ipent *next;
  char key[72];
  unsigned count;
  int64_t win_start; /* start of the current minute window, ms */
  unsigned cur, prev;
};

struct vent {
  struct vent *next;
  int64_t expires; /* monotonic ms */
  int code;
  char *text;
  char key[];
};

#define VC_BUCKETS 1024
#define VC_MAX 100000

struct pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  mxgw_server_req *head, *tail;
  pthread_t *tids;
  int n;
  int stop;
};

struct mxgw_server {
  mxgw_mem mem;
  pthread_mutex_t mu; /* snap, log hook, tls reload */
  pthread_mutex_t logmu;
  struct snap *snap;
  mxgw_server_config *cfg0; /* the configuration at creation */
  mxgw_server_log_fn log_fn;
  void *log_user;
  atomic_int log_protocol;
  char hostname[256];
  mxgw_queue *q;
  mxgw_deliver *d;
  pthread_t dtid;
  int has_dthread;
  struct pool pool;
  struct loop **loops;
  int nloops;
  int started, running, embedded, finished;
  atomic_int draining;
  atomic_llong drain_timeout;
  atomic_llong nconn_total;
  atomic_ullong next_id;
  atomic_llong stat[16];
  pthread_mutex_t ipmu;
  struct ipent *ipt[IP_BUCKETS];
  size_t nip;
  int ports[MXGW__SRV_MAX_LISTENERS];
  pthread_mutex_t vcmu; /* recipient verification cache */
  struct vent *vc[VC_BUCKETS];
  size_t nvc;
  char errmsg[512];
};

#define STAT_ADD(srv, k, v) atomic_fetch_add(&(srv)->stat[(k) - 2000], (v))


/* ------------------------------------------------------------------------ */
/* Logging                                                                  */
/* ------------------------------------------------------------------------ */

static void srv_log(mxgw_server *srv, int level, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
static void srv_log(mxgw_server *srv, int level, const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&srv->logmu);
  if (srv->log_fn && (level != MXGW_SRV_LOG_DEBUG || atomic_load(&srv->log_protocol)))
    srv->log_fn(srv->log_user, level, line);
  pthread_mutex_unlock(&srv->logmu);
}

static void sess_log(void *user, mxgw_session *s, int kind, const char *text,
                     size_t len) {
  struct conn *c = user;
  int level;
  (void)s;
  if (c->px && kind == MXGW_LOG_REPLY)
    mxgw__srv_px_note_reply(c->px, text, len);
  switch (kind) {
  case MXGW_LOG_CONNECT:
  case MXGW_LOG_DISCONNECT:
  case MXGW_LOG_TLS: level = MXGW_SRV_LOG_INFO; break;
  case MXGW_LOG_PROTOCOL: level = MXGW_SRV_LOG_NOTICE; break;
  default:
    if (!atomic_load(&c->lp->srv->log_protocol))
      return; /* do not even format it */
    level = MXGW_SRV_LOG_DEBUG;
    break;
  }
  while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
    len--;
  if (len > 1500)
    len = 1500;
  if (kind == MXGW_LOG_COMMAND || kind == MXGW_LOG_REPLY)
    srv_log(c->lp->srv, level, "%s[%s]: %s %.*s",
            kind == MXGW_LOG_COMMAND ? "<" : ">", c->addr,
            kind == MXGW_LOG_COMMAND ? "cmd" : "reply", (int)len, text);
  else if (kind == MXGW_LOG_PROTOCOL)
    srv_log(c->lp->srv, level, "%.*s from unknown[%s]", (int)len, text,
            c->addr);
  else
    srv_log(c->lp->srv, level, "%.*s", (int)len, text);
}

static void deliver_log(void *user, int level, const char *line,
                        const char *json) {
  mxgw_server *srv = user;
  (void)json;
  srv_log(srv,
          level == 0   ? MXGW_SRV_LOG_INFO
          : level == 1 ? MXGW_SRV_LOG_NOTICE
                       : MXGW_SRV_LOG_WARNING,
          "%s", line);
}

/* ------------------------------------------------------------------------ */
/* Snapshots                                                                */
/* ------------------------------------------------------------------------ */

static void snap_unref(struct snap *sn) {
  if (!sn || atomic_fetch_sub(&sn->refs, 1) != 1)
    return;
  mxgw_server_config *cfg = sn->cfg;
  for (int i = 0; i < cfg->nls; i++)
    mxgw_session_config_free(sn->scfg[i]);
  mxgw__free(&cfg->mem, sn);
  mxgw_server_config_free(cfg);
}

static void snap_ref(struct snap *sn) { atomic_fetch_add(&sn->refs, 1); }

static int snap_new(mxgw_server_config *cfg, struct snap **out, char *err,
                    size_t cap) {
  int rc = mxgw__srv_cfg_validate(cfg, err, cap);
  if (rc < 0)
    return rc;
  struct snap *sn = mxgw__calloc(&cfg->mem, 1, sizeof *sn);
  if (!sn)
    return MXGW_E_NOMEM;
  atomic_init(&sn->refs, 1);
  atomic_store(&cfg->frozen, 1);
  mxgw__srv_cfg_ref(cfg);
  sn->cfg = cfg;
  for (int i = 0; i < cfg->nls && rc == 0; i++) {
    const struct mxgw__srv_listener_cfg *l = &cfg->ls[i];
    mxgw_session_config *sc;
    rc = mxgw_session_config_new(&sc, &cfg->mem);
    if (rc < 0)
      break;
    sn->scfg[i] = sc;
    for (int k = 1; k < MXGW__SRV_NSESS_OPT && rc == 0; k++)
      if (cfg->sess_set[k])
        rc = mxgw_session_config_set_int(sc, k, cfg->sess_int[k]);
    if (rc == 0 && cfg->hostname)
      rc = mxgw_session_config_set_str(sc, MXGW_OPT_HOSTNAME, cfg->hostname);
    if (rc == 0 && cfg->greeting)
      rc = mxgw_session_config_set_str(sc, MXGW_OPT_GREETING, cfg->greeting);
    int pol = l->tls_policy >= 0
                  ? l->tls_policy
                  : (l->tls ? MXGW_TLS_POLICY_MAY : MXGW_TLS_POLICY_NONE);
    int starttls = 0, reqtls = 0, auth = 0, implicit = 0;
    switch (l->mode) {
    case MXGW_LISTEN_SMTP:
      starttls = l->tls && pol >= MXGW_TLS_POLICY_MAY;
      reqtls = l->tls && pol == MXGW_TLS_POLICY_ENCRYPT;
      break;
    case MXGW_LISTEN_SUBMISSION:
      starttls = l->tls && pol >= MXGW_TLS_POLICY_MAY;
      if (l->tls && !starttls)
        starttls = 1; /* submission always offers STARTTLS when it can */
      reqtls = l->tls && !l->auth_plaintext;
      auth = 1;
      break;
    case MXGW_LISTEN_SMTPS:
      implicit = 1;
      auth = 1;
      break;
    }
    if (rc == 0)
      rc = mxgw_session_config_set_int(sc, MXGW_OPT_STARTTLS, starttls);
    if (rc == 0)
      rc = mxgw_session_config_set_int(sc, MXGW_OPT_REQUIRE_TLS, reqtls);
    if (rc == 0)
      rc = mxgw_session_config_set_int(sc, MXGW_OPT_AUTH, auth);
    if (rc == 0)
      rc = mxgw_session_config_set_int(sc, MXGW_OPT_REQUIRE_AUTH, auth);
    if (rc == 0)
      rc = mxgw_session_config_set_int(sc, MXGW_OPT_AUTH_PLAINTEXT,
                                       l->auth_plaintext);
    if (rc == 0)
      rc = mxgw_session_config_set_int(sc, MXGW_OPT_IMPLICIT_TLS, implicit);
    if (rc == 0 && l->tls)
      rc = mxgw_session_config_set_tls(sc, l->tls);
    if (rc < 0)
      snprintf(err, cap, "listener %d: session configuration: %s", i,
               mxgw_strerror(rc));
  }
  if (rc < 0) {
    snap_unref(sn);
    return rc;
  }
  *out = sn;
  return MXGW_OK;
}

static struct snap *cur_snap(mxgw_server *srv) {
  pthread_mutex_lock(&srv->mu);
  struct snap *sn = srv->snap;
  snap_ref(sn);
  pthread_mutex_unlock(&srv->mu);
  return sn;
}

/* ------------------------------------------------------------------------ */
/* Per-IP limits                                                            */
/* ------------------------------------------------------------------------ */

static void ip_key(const char *addr, char *key, size_t cap) {
  unsigned char b[16];
  if (mxgw__srv_is_ipv6(addr) && inet_pton(AF_INET6, addr, b) == 1 &&
      !(memcmp(b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)) {
    memset(b + 8, 0, 8); /* per /64 */
    char t[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, b, t, sizeof t);
    snprintf(key, cap, "%s/64", t);
  } else {
    snprintf(key, cap, "%s", addr);
  }
}

static unsigned ip_hash(const char *k) {
  unsigned h = 2166136261u;
  for (; *k; k++)
    h = (h ^ (unsigned char)*k) * 16777619u;
  return h % IP_BUCKETS;
}

/* Count a new connection from key. 0: allowed; 1: too many at once; 2: rate
 * exceeded. The rate is a sliding minute, estimated from the current and the
 * previous fixed minute (weighted by the overlap). */
static int ip_acquire(mxgw_server *srv, const char *key, int64_t max_conn,
                      int64_t rate, int64_t now, unsigned *count) {
  int res = 0;
  pthread_mutex_lock(&srv->ipmu);
  unsigned h = ip_hash(key);
  struct ipent *e = srv->ipt[h];
  while (e && strcmp(e->key, key) != 0)
    e = e->next;
  if (!e) {
    e = mxgw__calloc(&srv->mem, 1, sizeof *e);
    if (!e) {
      pthread_mutex_unlock(&srv->ipmu);
      return 0; /* fail open on memory shortage */
    }
    snprintf(e->key, sizeof e->key, "%s", key);
    e->win_start = now;
    e->next = srv->ipt[h];
    srv->ipt[h] = e;
    srv->nip++;
  }
  int64_t el = now - e->win_start;
  if (el >= 60000) {
    e->prev = el >= 120000 ? 0 : e->cur;
    e->cur = 0;
    e->win_start = now - (el % 60000);
    el = now - e->win_start;
  }
  if (max_conn > 0 && e->count >= (uint64_t)max_conn) {
    res = 1;
  } else if (rate > 0) {
    double est = e->prev * (1.0 - (double)el / 60000.0) + e->cur;
    if (est + 1 > (double)rate)
      res = 2;
  }
  if (res == 0) {
    e->count++;
    e->cur++;
  }
  *count = e->count;
  pthread_mutex_unlock(&srv->ipmu);
  return res;
}

static void ip_release(mxgw_server *srv, const char *key, int64_t now) {
  pthread_mutex_lock(&srv->ipmu);
  unsigned h = ip_hash(key);
  struct ipent **pp = &srv->ipt[h], *e;
  while ((e = *pp) && strcmp(e->key, key) != 0)
    pp = &e->next;
  if (e && e->count > 0)
    e->count--;
  /* Forget idle entries whose rate history has expired. */
  if (e && e->count == 0 && now - e->win_start >= 120000) {
    *pp = e->next;
    mxgw__free(&srv->mem, e);
    srv->nip--;
  }
  pthread_mutex_unlock(&srv->ipmu);
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static void conn_schedule(struct conn *c) {
  if (c->in_ready || c->dead)
    return;
  c->in_ready = 1;
  c->ready_next = c->lp->ready;
  c->lp->ready = c;
}

static void conn_free(struct conn *c) {
  const mxgw_mem *m = &c->lp->srv->mem;
  mxgw__srv_px_free(c->px);
  mxgw_session_free(c->s);
  mxgw_queue_msg_free(c->msg);
  mxgw_spf_check_free(c->spf);
  mxgw__free(m, c->spf_hdr);
  mxgw__free(m, c->spf_json);
  mxgw__free(m, c->in);
  snap_unref(c->snap);
  mxgw__free(m, c);
}

static void conn_close(struct conn *c) {
  struct loop *lp = c->lp;
  mxgw_server *srv = lp->srv;
  if (c->dead)
    return;
  c->dead = 1;
  epoll_ctl(lp->epfd, EPOLL_CTL_DEL, c->h.fd, NULL);
  close(c->h.fd);
  c->h.fd = -1;
  if (c->prev)
    c->prev->next = c->next;
  else
    lp->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  lp->nconns--;
  atomic_fetch_sub(&srv->nconn_total, 1);
  STAT_ADD(srv, MXGW_SRV_STAT_SESSIONS, -1);
  if (c->ip_counted)
    ip_release(srv, c->ipkey, mxgw__mono_ms());
  c->ip_counted = 0;
  /* An SPF check may be running: stop it (its hook must not run). */
  mxgw_spf_check_free(c->spf);
  c->spf = NULL;
  mxgw_queue_msg_free(c->msg); /* an uncommitted message is discarded */
  c->msg = NULL;
  mxgw__srv_px_free(c->px); /* the backend connection goes too */
  c->px = NULL;
  /* Freed by bury() at the end of the loop round, once no result is
   * outstanding (refs): callers up the stack may still look at c->dead. */
  c->grave_next = lp->grave;
  lp->grave = c;
  lp->nzombies++;
}

static void bury(struct loop *lp, int force) {
  struct conn **pp = &lp->grave, *c;
  while ((c = *pp)) {
    if (force || (c->refs == 0 && !c->in_ready)) {
      *pp = c->grave_next;
      lp->nzombies--;
      conn_free(c);
    } else {
      pp = &c->grave_next;
    }
  }
}

static void set_mask(struct conn *c, uint32_t mask) {
  if (mask == c->ep_mask)
    return;
  struct epoll_event ee;
  memset(&ee, 0, sizeof ee);
  ee.events = mask;
  ee.data.ptr = &c->h;
  if (epoll_ctl(c->lp->epfd, EPOLL_CTL_MOD, c->h.fd, &ee) == 0)
    c->ep_mask = mask;
}

static int in_keep(struct conn *c, const unsigned char *p, size_t n) {
  const mxgw_mem *m = &c->lp->srv->mem;
  if (c->in_len + n > c->in_cap) {
    size_t cap = c->in_len + n;
    unsigned char *nb = mxgw__realloc(m, c->in, cap);
    if (!nb)
      return MXGW_E_NOMEM;
    c->in = nb;
    c->in_cap = cap;
  }
  memcpy(c->in + c->in_len, p, n);
  c->in_len += n;
  return MXGW_OK;
}

static void in_drop(struct conn *c, size_t n) {
  if (n >= c->in_len) {
    c->in_len = 0;
    /* Give the memory back: idle connections hold no buffer. */
    mxgw__free(&c->lp->srv->mem, c->in);
    c->in = NULL;
    c->in_cap = 0;
    return;
  }
  memmove(c->in, c->in + n, c->in_len - n);
  c->in_len -= n;
}

static int64_t conn_deadline(const struct conn *c) {
  int64_t d = c->s ? mxgw_session_deadline(c->s) : -1;
  if (c->wait != W_NONE && c->wait != W_COMMIT && c->wait_deadline > 0 &&
      (d < 0 || c->wait_deadline < d))
    d = c->wait_deadline;
  if (c->px) {
    int64_t pd = mxgw__srv_px_deadline(c->px);
    if (pd >= 0 && (d < 0 || pd < d))
      d = pd;
  }
  return d;
}

static void note_timer(struct loop *lp, int64_t d) {
  if (d >= 0 && (lp->next_timer < 0 || d < lp->next_timer))
    lp->next_timer = d;
}

/* ---- replies ---------------------------------------------------------- */

static void reply(struct conn *c, int code, const char *enh,
                  const char *text) {
  int rc = mxgw_session_reply(c->s, code, enh, text);
  if (rc < 0 && rc != MXGW_E_STATE) {
    srv_log(c->lp->srv, MXGW_SRV_LOG_WARNING,
            "warning: reply %d %s refused by the session (%s); 451 instead",
            code, enh ? enh : "", mxgw_session_errmsg(c->s));
    mxgw_session_reply(c->s, 451, "4.3.0", "Error: local error");
  }
}

static void accept_(struct conn *c) {
  int rc = mxgw_session_accept(c->s);
  if (rc < 0 && rc != MXGW_E_STATE)
    srv_log(c->lp->srv, MXGW_SRV_LOG_WARNING, "warning: accept: %s",
            mxgw_strerror(rc));
}

static void sget(const struct conn *c, int key, const char **p, size_t *n) {
  if (mxgw_session_get_str(c->s, key, p, n) < 0) {
    *p = "";
    *n = 0;
  }
}

static const char *proto_name(const struct conn *c) {
  int64_t ehlo = 0;
  mxgw_session_get_int(c->s, MXGW_INFO_IS_EHLO, &ehlo);
  return ehlo ? "ESMTP" : "SMTP";
}

/* "NOQUEUE: reject: RCPT from unknown[addr]: 554 5.7.1 <x>: Relay access
 * denied; from=<f> to=<t> proto=ESMTP helo=<h>" as Postfix logs it. */
static void log_reject(struct conn *c, const char *stage, int code,
                       const char *enh, const char *text) {
  const char *from, *to, *helo;
  size_t fl, tl, hl;
  sget(c, MXGW_INFO_MAIL_FROM, &from, &fl);
  sget(c, MXGW_INFO_HELO, &helo, &hl);
  if (strcmp(stage, "RCPT") == 0)
    sget(c, MXGW_INFO_RCPT, &to, &tl);
  else {
    to = "";
    tl = 0;
  }
  srv_log(c->lp->srv, MXGW_SRV_LOG_NOTICE,
          "NOQUEUE: reject: %s from unknown[%s]: %d %s %s; from=<%.*s> "
          "to=<%.*s> proto=%s helo=<%.*s>",
          stage, c->addr, code, enh, text, (int)(fl > 300 ? 300 : fl), from,
          (int)(tl > 300 ? 300 : tl), to, proto_name(c),
          (int)(hl > 255 ? 255 : hl), helo);
}

/* ---- policy requests -------------------------------------------------- */

static void pool_push(mxgw_server *srv, mxgw_server_req *r);
static void stage_default(struct conn *c, int stage);

static void req_fill(struct conn *c, mxgw_server_req *r) {
  const char *p;
  size_t n;
  static const struct {
    int rk, sk;
  } map[] = {{MXGW_REQ_HELO, MXGW_INFO_HELO},
             {MXGW_REQ_CLIENT_HOST, MXGW_INFO_PEER_HOST},
             {MXGW_REQ_TLS_PROTOCOL, MXGW_INFO_TLS_PROTOCOL},
             {MXGW_REQ_TLS_CIPHER, MXGW_INFO_TLS_CIPHER}};
  mxgw__srv_req_set(r, MXGW_REQ_CLIENT_ADDR, c->addr, strlen(c->addr));
  mxgw__srv_req_set(r, MXGW_REQ_LOCAL_ADDR, c->laddr, strlen(c->laddr));
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (mxgw_session_get_str(c->s, map[i].sk, &p, &n) == 0)
      mxgw__srv_req_set(r, map[i].rk, p, n);
  if (r->stage >= MXGW_STAGE_MAIL &&
      mxgw_session_get_str(c->s, MXGW_INFO_MAIL_FROM, &p, &n) == 0)
    mxgw__srv_req_set(r, MXGW_REQ_MAIL_FROM, p, n);
  if (r->stage == MXGW_STAGE_RCPT &&
      mxgw_session_get_str(c->s, MXGW_INFO_RCPT, &p, &n) == 0)
    mxgw__srv_req_set(r, MXGW_REQ_RCPT, p, n);
  if (r->stage == MXGW_STAGE_AUTH) {
    if (mxgw_session_get_str(c->s, MXGW_INFO_AUTH_MECH, &p, &n) == 0)
      mxgw__srv_req_set(r, MXGW_REQ_AUTH_MECH, p, n);
    if (mxgw_session_get_str(c->s, MXGW_INFO_AUTH_USER, &p, &n) == 0)
      mxgw__srv_req_set(r, MXGW_REQ_AUTH_USER, p, n);
    if (mxgw_session_get_str(c->s, MXGW_INFO_AUTH_PASSWORD, &p, &n) == 0)
      mxgw__srv_req_set(r, MXGW_REQ_AUTH_PASSWORD, p, n);
  } else if (mxgw_session_get_str(c->s, MXGW_INFO_AUTH_IDENTITY, &p, &n) ==
             0) {
    mxgw__srv_req_set(r, MXGW_REQ_AUTH_USER, p, n);
  }
  if (r->stage == MXGW_STAGE_MESSAGE_END)
    mxgw__srv_req_set(r, MXGW_REQ_QUEUE_ID, c->qid, strlen(c->qid));
  if (c->spf_result >= 0) {
    const char *nm = mxgw_spf_result_name(c->spf_result);
    mxgw__srv_req_set(r, MXGW_REQ_SPF_RESULT, nm, strlen(nm));
  }
  int64_t v = 0, cnt = 0;
  r->num[MXGW_REQ_CLIENT_PORT - 100] = c->port;
  r->num[MXGW_REQ_LOCAL_PORT - 100] = c->lport;
  r->num[MXGW_REQ_LISTENER - 100] = c->li;
  r->num[MXGW_REQ_SESSION_ID - 100] = (int64_t)c->id;
  r->num[MXGW_REQ_SPF - 100] = c->spf_result;
  if (mxgw_session_get_int(c->s, MXGW_INFO_TLS, &v) == 0)
    r->num[MXGW_REQ_TLS - 100] = v;
  if (mxgw_session_get_int(c->s, MXGW_INFO_AUTHENTICATED, &v) == 0)
    r->num[MXGW_REQ_AUTHENTICATED - 100] = v;
  if (mxgw_session_get_int(c->s, MXGW_INFO_RCPT_COUNT, &cnt) == 0)
    r->num[MXGW_REQ_RCPT_COUNT - 100] = cnt;
  if (r->stage == MXGW_STAGE_MESSAGE_END) {
    if (mxgw_session_get_int(c->s, MXGW_INFO_MESSAGE_SIZE, &v) == 0)
      r->num[MXGW_REQ_SIZE - 100] = v;
  } else if (r->stage >= MXGW_STAGE_MAIL &&
             mxgw_session_get_int(c->s, MXGW_INFO_SIZE, &v) == 0) {
    r->num[MXGW_REQ_SIZE - 100] = v;
  }
  for (int64_t i = 0; i < cnt; i++)
    if (mxgw_session_rcpt_get_str(c->s, (size_t)i, MXGW_INFO_RCPT, &p, &n) ==
        0)
      mxgw__srv_req_add_rcpt(r, p, n);
}

static void apply_answer(struct conn *c, mxgw_server_req *r);

/* Send the decision of `stage` to its callback if there is one; return 0
 * when there is none (the caller applies the default). */
static void run_req(mxgw_server_req *r);
static int vc_get(mxgw_server *srv, const char *addr, int64_t now, int *code,
                  char *text, size_t cap);
static int verify_answer(mxgw_server_req *r, const char *rcpt, int code,
                         const char *text);

static int policy_v(struct conn *c, int stage, int verify, int64_t now) {
  mxgw_server *srv = c->lp->srv;
  const struct mxgw__srv_policy *pol = &c->snap->cfg->policy[stage];
  mxgw_server_req *r;
  if (!pol->fn && !verify)
    return 0;
  if (mxgw__srv_req_new(&srv->mem, stage, &r) < 0) {
    reply(c, 451, "4.3.0", "Error: out of memory");
    return 1;
  }
  req_fill(c, r);
  r->pol = *pol;
  r->verify = verify;
  r->cfg = c->snap->cfg;
  r->srv = srv;
  r->conn = c;
  r->loop = c->lp;
  r->gen = ++c->req_gen;
  c->req_stage = stage;
  if (pol->fn)
    STAT_ADD(srv, MXGW_SRV_STAT_POLICY_CALLS, 1);
  if (c->snap->cfg->policy_workers == 0) {
    run_req(r);
    apply_answer(c, r);
    mxgw__srv_req_free(r);
    return 1;
  }
  c->wait = W_POLICY;
  c->wait_deadline =
      c->snap->cfg->policy_timeout > 0 ? now + c->snap->cfg->policy_timeout
                                       : 0;
  c->refs++;
  pool_push(srv, r);
  return 1;
}

static int policy(struct conn *c, int stage, int64_t now) {
  return policy_v(c, stage, 0, now);
}

static void commit(struct conn *c);
static void px_abort(struct conn *c);
static int px_stage(struct conn *c, int stage);
static int px_on_event(struct conn *c, int ev, int64_t now);
static int px_pump(struct conn *c, int64_t now);

static void apply_answer(struct conn *c, mxgw_server_req *r) {
  int stage = r->stage;
  if (r->failed) {
    srv_log(c->lp->srv, MXGW_SRV_LOG_WARNING,
            "warning: policy callback for stage %d failed; 451 to "
            "unknown[%s]",
            stage, c->addr);
    if (stage == MXGW_STAGE_MESSAGE_END) {
      mxgw_queue_msg_free(c->msg);
      c->msg = NULL;
      c->in_txn = 0;
      px_abort(c);
    }
    reply(c, 451, "4.3.0", "Error: policy temporarily unavailable");
    return;
  }
  if (r->code) {
    const char *enh = r->enh[0] ? r->enh : NULL;
    if (r->code >= 400) {
      const char *names[] = {"", "CONNECT", "HELO", "AUTH",
                             "MAIL", "RCPT", "END-OF-MESSAGE"};
      log_reject(c, names[stage], r->code, enh ? enh : "",
                 r->text ? r->text : "");
      if (stage == MXGW_STAGE_RCPT)
        STAT_ADD(c->lp->srv, MXGW_SRV_STAT_REJECTED_RCPT, 1);
      if (stage == MXGW_STAGE_MESSAGE_END) {
        mxgw_queue_msg_free(c->msg);
        c->msg = NULL;
        c->in_txn = 0;
        px_abort(c);
      }
      reply(c, r->code, enh, r->text);
      return;
    }
    if (c->px && stage >= MXGW_STAGE_MAIL) {
      stage_default(c, stage); /* accepted: the backend answers */
      return;
    }
    if (stage == MXGW_STAGE_MESSAGE_END) {
      commit(c); /* accepting at end of message means: queue it */
      return;
    }
    reply(c, r->code, enh, r->text);
    if (stage == MXGW_STAGE_MAIL)
      c->in_txn = 1;
    return;
  }
  stage_default(c, stage);
}

/* ---- SPF -------------------------------------------------------------- */

static int loop_dns_init(struct loop *lp, struct snap *sn);
static void dns_sync(struct loop *lp);

static void mail_continue(struct conn *c, int64_t now) {
  if (!policy(c, MXGW_STAGE_MAIL, now))
    stage_default(c, MXGW_STAGE_MAIL);
}

static void spf_finish(struct conn *c) {
  mxgw_server *srv = c->lp->srv;
  mxgw_spf_check *chk = c->spf;
  const char *p;
  size_t n;
  c->spf = NULL;
  c->wait = W_NONE;
  c->spf_result = mxgw_spf_check_result(chk);
  if (c->spf_result < 0)
    c->spf_result = MXGW_SPF_TEMPERROR;
  mxgw__free(&srv->mem, c->spf_hdr);
  mxgw__free(&srv->mem, c->spf_json);
  c->spf_hdr = c->spf_json = NULL;
  if (mxgw_spf_check_received_spf(chk, &p, &n) == 0)
    c->spf_hdr = mxgw__memdup0(&srv->mem, p, n);
  if (mxgw_spf_check_json(chk, &p, &n) == 0)
    c->spf_json = mxgw__memdup0(&srv->mem, p, n);
  mxgw_spf_check_free(chk);
  int act = (int)c->snap->cfg->spf_action[c->spf_result];
  if (act == MXGW_ACTION_REJECT || act == MXGW_ACTION_TEMPFAIL) {
    char text[300];
    const char *from;
    size_t fl;
    sget(c, MXGW_INFO_MAIL_FROM, &from, &fl);
    int code = act == MXGW_ACTION_REJECT ? 550 : 451;
    const char *enh = act == MXGW_ACTION_TEMPFAIL ? "4.7.24"
                      : c->spf_result == MXGW_SPF_PERMERROR ? "5.7.24"
                                                            : "5.7.23";
    snprintf(text, sizeof text, "SPF %s: %.*s is not allowed to send from %s",
             mxgw_spf_result_name(c->spf_result), (int)(fl > 200 ? 200 : fl),
             from, c->addr);
    if (act == MXGW_ACTION_TEMPFAIL)
      snprintf(text, sizeof text, "SPF %s: try again later",
               mxgw_spf_result_name(c->spf_result));
    log_reject(c, "MAIL", code, enh, text);
    reply(c, code, enh, text);
    return;
  }
  mail_continue(c, mxgw__mono_ms());
}

static void spf_done_cb(void *arg, mxgw_spf_check *chk) {
  struct conn *c = arg;
  (void)chk;
  if (c->dead || c->wait != W_SPF)
    return;
  spf_finish(c);
  conn_schedule(c);
}

static void spf_start(struct conn *c, int64_t now) {
  struct loop *lp = c->lp;
  const char *from, *helo;
  size_t fl, hl;
  char *f, *h;
  int rc;
  if (!lp->spf && loop_dns_init(lp, c->snap) < 0) {
    goto temperror;
  }
  sget(c, MXGW_INFO_MAIL_FROM, &from, &fl);
  sget(c, MXGW_INFO_HELO, &helo, &hl);
  f = mxgw__memdup0(&lp->srv->mem, from, fl);
  h = mxgw__memdup0(&lp->srv->mem, helo, hl);
  rc = (f && h) ? mxgw_spf_check_start(lp->spf, c->addr, h, f,
                                       fl ? MXGW_SPF_ID_MAILFROM
                                          : MXGW_SPF_ID_HELO,
                                       &c->spf)
                : MXGW_E_NOMEM;
  mxgw__free(&lp->srv->mem, f);
  mxgw__free(&lp->srv->mem, h);
  if (rc < 0)
    goto temperror;
  STAT_ADD(lp->srv, MXGW_SRV_STAT_SPF_CHECKS, 1);
  c->wait = W_SPF;
  if (mxgw_spf_check_done(c->spf)) {
    spf_finish(c);
    return;
  }
  mxgw_spf_check_set_done_cb(c->spf, spf_done_cb, c);
  c->wait_deadline = now + c->snap->cfg->spf_timeout;
  dns_sync(lp);
  return;
temperror:
  /* SPF could not even start (bad HELO for the null sender...): none. */
  c->spf_result = MXGW_SPF_NONE;
  mail_continue(c, now);
}

/* ---- messages --------------------------------------------------------- */

static void storage_reply(struct conn *c, int err) {
  if (err == MXGW_E_NOSPACE)
    reply(c, 452, "4.3.1", "Error: insufficient system storage");
  else
    reply(c, 451, "4.3.0", "Error: queue file write error");
}

static void msg_begin(struct conn *c) {
  mxgw_server *srv = c->lp->srv;
  const char *p, *id;
  size_t n, idl;
  int rc;
  mxgw_queue_msg_free(c->msg);
  c->msg = NULL;
  c->msg_err = 0;
  rc = mxgw_queue_begin(srv->q, &c->msg);
  if (rc < 0) {
    srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: queue: cannot start a "
            "message: %s", mxgw_strerror(rc));
    storage_reply(c, rc);
    return;
  }
  mxgw_queue_msg_id(c->msg, &id, &idl);
  snprintf(c->qid, sizeof c->qid, "%.*s", (int)idl, id);
  /* RFC 7208 9.1: Received-SPF above our Received field. */
  if (c->spf_hdr)
    rc = mxgw_queue_write(c->msg, c->spf_hdr, strlen(c->spf_hdr));
  if (rc == 0)
    rc = mxgw_session_received_header(c->s, c->qid, (int64_t)time(NULL), &p,
                                      &n);
  if (rc == 0)
    rc = mxgw_queue_write(c->msg, p, n);
  if (rc < 0) {
    srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: %s: queue write: %s",
            c->qid, mxgw_strerror(rc));
    mxgw_queue_msg_free(c->msg);
    c->msg = NULL;
    storage_reply(c, rc);
    return;
  }
  accept_(c);
}

static void msg_body(struct conn *c) {
  const char *p;
  size_t n;
  if (!c->msg || c->msg_err)
    return;
  if (mxgw_session_get_str(c->s, MXGW_INFO_DATA, &p, &n) < 0)
    return;
  int rc = mxgw_queue_write(c->msg, p, n);
  if (rc < 0)
    c->msg_err = rc;
}

static int set_meta(struct conn *c) {
  static const struct {
    int sk, qk;
  } map[] = {{MXGW_INFO_MAIL_FROM, MXGW_QKEY_SENDER},
             {MXGW_INFO_ENVID, MXGW_QKEY_ENVID},
             {MXGW_INFO_RET, MXGW_QKEY_RET},
             {MXGW_INFO_BODY, MXGW_QKEY_BODY},
             {MXGW_INFO_HELO, MXGW_QKEY_CLIENT_HELO},
             {MXGW_INFO_PEER_HOST, MXGW_QKEY_CLIENT_HOST}};
  const char *p, *o;
  size_t n, on;
  int64_t v = 0, cnt = 0;
  int rc = 0;
  for (size_t i = 0; i < sizeof map / sizeof map[0] && rc == 0; i++)
    if (mxgw_session_get_str(c->s, map[i].sk, &p, &n) == 0)
      rc = mxgw_queue_msg_set_str(c->msg, map[i].qk, p, n);
  if (rc == 0)
    rc = mxgw_queue_msg_set_str(c->msg, MXGW_QKEY_CLIENT_ADDR, c->addr,
                                strlen(c->addr));
  if (rc == 0 && mxgw_session_get_int(c->s, MXGW_INFO_SMTPUTF8, &v) == 0)
    rc = mxgw_queue_msg_set_int(c->msg, MXGW_QKEY_SMTPUTF8, v);
  if (rc == 0 && c->spf_json)
    rc = mxgw_queue_msg_set_str(c->msg, MXGW_QKEY_SPF_JSON, c->spf_json,
                                strlen(c->spf_json));
  if (rc == 0 && mxgw_session_get_int(c->s, MXGW_INFO_TLS, &v) == 0 && v) {
    char js[256];
    const char *pr, *ci;
    size_t pl, cl;
    sget(c, MXGW_INFO_TLS_PROTOCOL, &pr, &pl);
    sget(c, MXGW_INFO_TLS_CIPHER, &ci, &cl);
    int jl = snprintf(js, sizeof js, "{\"protocol\":\"%.*s\",\"cipher\":"
                      "\"%.*s\"}", (int)(pl > 40 ? 40 : pl), pr,
                      (int)(cl > 100 ? 100 : cl), ci);
    if (jl > 0 && (size_t)jl < sizeof js)
      rc = mxgw_queue_msg_set_str(c->msg, MXGW_QKEY_TLS_JSON, js,
                                  (size_t)jl);
  }
  if (rc == 0)
    rc = mxgw_session_get_int(c->s, MXGW_INFO_RCPT_COUNT, &cnt);
  for (int64_t i = 0; i < cnt && rc == 0; i++) {
    int64_t nf = 0;
    if (mxgw_session_rcpt_get_str(c->s, (size_t)i, MXGW_INFO_RCPT, &p, &n) <
        0)
      continue;
    if (mxgw_session_rcpt_get_str(c->s, (size_t)i, MXGW_INFO_ORCPT, &o, &on) <
        0) {
      o = NULL;
      on = 0;
    }
    mxgw_session_rcpt_get_int(c->s, (size_t)i, MXGW_INFO_NOTIFY_FLAGS, &nf);
    rc = mxgw_queue_msg_add_rcpt(c->msg, p, n, (int)nf, o, on);
  }
  return rc;
}

static void msg_end(struct conn *c, int64_t now) {
  mxgw_server *srv = c->lp->srv;
  if (!c->msg) {
    storage_reply(c, MXGW_E_IO);
    c->in_txn = 0;
    return;
  }
  int rc = c->msg_err ? c->msg_err : set_meta(c);
  if (rc < 0) {
    srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: %s: queue: %s", c->qid,
            mxgw_strerror(rc));
    mxgw_queue_msg_free(c->msg);
    c->msg = NULL;
    c->in_txn = 0;
    storage_reply(c, rc);
    return;
  }
  if (!policy(c, MXGW_STAGE_MESSAGE_END, now))
    commit(c);
}

static void commit(struct conn *c) {
  mxgw_queue_msg *m = c->msg;
  c->msg = NULL;
  int rc = mxgw_queue_commit_async(m, (uint64_t)(uintptr_t)c);
  if (rc < 0) {
    srv_log(c->lp->srv, MXGW_SRV_LOG_WARNING, "warning: %s: commit: %s",
            c->qid, mxgw_strerror(rc));
    STAT_ADD(c->lp->srv, MXGW_SRV_STAT_COMMIT_ERRORS, 1);
    c->in_txn = 0;
    storage_reply(c, rc);
    return;
  }
  c->wait = W_COMMIT;
  c->refs++;
}

static void commit_done(struct loop *lp, const mxgw_queue_done *d) {
  struct conn *c = (struct conn *)(uintptr_t)d->tag;
  mxgw_server *srv = lp->srv;
  c->refs--;
  if (d->status == MXGW_OK) {
    STAT_ADD(srv, MXGW_SRV_STAT_MESSAGES, 1);
    if (srv->d)
      mxgw_deliver_wakeup(srv->d);
  } else {
    STAT_ADD(srv, MXGW_SRV_STAT_COMMIT_ERRORS, 1);
  }
  if (c->dead) {
    if (d->status == MXGW_OK)
      srv_log(srv, MXGW_SRV_LOG_INFO, "%s: client=unknown[%s] (gone before "
              "the reply; message queued)", d->id, c->addr);
    return;
  }
  c->wait = W_NONE;
  c->in_txn = 0;
  if (d->status != MXGW_OK) {
    srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: %s: commit failed: %s",
            d->id, mxgw_strerror(d->status));
    storage_reply(c, d->status);
  } else {
    const char *from;
    size_t fl;
    int64_t size = 0, nrcpt = 0;
    char text[96];
    sget(c, MXGW_INFO_MAIL_FROM, &from, &fl);
    mxgw_session_get_int(c->s, MXGW_INFO_MESSAGE_SIZE, &size);
    mxgw_session_get_int(c->s, MXGW_INFO_RCPT_COUNT, &nrcpt);
    srv_log(srv, MXGW_SRV_LOG_INFO, "%s: client=unknown[%s]", d->id,
            c->addr);
    srv_log(srv, MXGW_SRV_LOG_INFO,
            "%s: from=<%.*s>, size=%" PRId64 ", nrcpt=%" PRId64
            " (queue active)",
            d->id, (int)(fl > 300 ? 300 : fl), from, size, nrcpt);
    snprintf(text, sizeof text, "Ok: queued as %s", d->id);
    reply(c, 250, "2.0.0", text);
  }
  conn_schedule(c);
}

/* ---- decisions -------------------------------------------------------- */

static void stage_default(struct conn *c, int stage) {
  if (c->px && px_stage(c, stage))
    return;
  switch (stage) {
  case MXGW_STAGE_AUTH:
    /* accepted by the callback */
    accept_(c);
    break;
  case MXGW_STAGE_MAIL:
    accept_(c);
    c->in_txn = 1;
    break;
  case MXGW_STAGE_MESSAGE_END:
    commit(c);
    break;
  default:
    accept_(c);
    break;
  }
}

static void connect_continue(struct conn *c, int64_t now) {
  if (mxgw_session_pending(c->s) != MXGW_EV_CONNECT)
    return; /* an early talker was refused meanwhile */
  if (!policy(c, MXGW_STAGE_CONNECT, now))
    accept_(c);
}

static void on_event(struct conn *c, int ev, int64_t now) {
  const struct mxgw_server_config *cfg = c->snap->cfg;
  if (c->px && px_on_event(c, ev, now))
    return;
  switch (ev) {
  case MXGW_EV_CONNECT:
    if (cfg->greet_delay > 0) {
      c->wait = W_GREET;
      c->wait_deadline = now + cfg->greet_delay;
    } else {
      connect_continue(c, now);
    }
    break;
  case MXGW_EV_HELO:
    if (!policy(c, MXGW_STAGE_HELO, now))
      accept_(c);
    break;
  case MXGW_EV_STARTTLS:
    if (cfg->ls[c->li].tls)
      accept_(c);
    else
      reply(c, 454, "4.7.0", "TLS not available");
    break;
  case MXGW_EV_AUTH:
    if (!policy(c, MXGW_STAGE_AUTH, now))
      reply(c, 535, "5.7.8", "Error: authentication failed");
    break;
  case MXGW_EV_MAIL:
    c->spf_result = -1;
    mxgw__free(&c->lp->srv->mem, c->spf_hdr);
    mxgw__free(&c->lp->srv->mem, c->spf_json);
    c->spf_hdr = c->spf_json = NULL;
    if (cfg->spf)
      spf_start(c, now);
    else
      mail_continue(c, now);
    break;
  case MXGW_EV_RCPT: {
    const char *p;
    size_t n;
    int64_t authd = 0;
    sget(c, MXGW_INFO_RCPT, &p, &n);
    mxgw_session_get_int(c->s, MXGW_INFO_AUTHENTICATED, &authd);
    if (!(authd && cfg->auth_relay) && !mxgw__srv_domain_ok(cfg, p, n)) {
      char text[400];
      snprintf(text, sizeof text, "<%.*s>: Relay access denied",
               (int)(n > 300 ? 300 : n), p);
      log_reject(c, "RCPT", 554, "5.7.1", text);
      STAT_ADD(c->lp->srv, MXGW_SRV_STAT_REJECTED_RCPT, 1);
      reply(c, 554, "5.7.1", text);
      break;
    }
    if (cfg->rcpt_verify) {
      int code;
      char text[512], *rc = mxgw__memdup0(&c->lp->srv->mem, p, n);
      if (rc && vc_get(c->lp->srv, rc, now, &code, text, sizeof text)) {
        mxgw_server_req *vr;
        STAT_ADD(c->lp->srv, MXGW_SRV_STAT_VERIFY_CACHED, 1);
        if (mxgw__srv_req_new(&c->lp->srv->mem, MXGW_STAGE_RCPT, &vr) == 0) {
          if (!verify_answer(vr, rc, code, text)) {
            STAT_ADD(c->lp->srv, MXGW_SRV_STAT_REJECTED_RCPT, 1);
            log_reject(c, "RCPT", vr->code, vr->enh, vr->text);
            reply(c, vr->code, vr->enh, vr->text);
            mxgw__srv_req_free(vr);
            mxgw__free(&c->lp->srv->mem, rc);
            break;
          }
          mxgw__srv_req_free(vr);
        }
        mxgw__free(&c->lp->srv->mem, rc);
      } else {
        mxgw__free(&c->lp->srv->mem, rc);
        policy_v(c, MXGW_STAGE_RCPT, 1, now);
        break;
      }
    }
    if (!policy(c, MXGW_STAGE_RCPT, now))
      stage_default(c, MXGW_STAGE_RCPT);
    break;
  }
  case MXGW_EV_DATA:
    msg_begin(c);
    break;
  case MXGW_EV_BODY:
    msg_body(c);
    break;
  case MXGW_EV_MESSAGE_END:
    msg_end(c, now);
    break;
  case MXGW_EV_MESSAGE_ABORT:
    mxgw_queue_msg_free(c->msg);
    c->msg = NULL;
    c->in_txn = 0;
    break;
  case MXGW_EV_RSET:
    c->in_txn = 0;
    break;
  case MXGW_EV_CLOSE:
    c->closed_ev = 1;
    mxgw_queue_msg_free(c->msg);
    c->msg = NULL;
    c->in_txn = 0;
    break;
  default:
    if (mxgw_session_pending(c->s) != MXGW_EV_NONE)
      reply(c, 451, "4.3.0", "Error: not supported");
    break;
  }
}

/* ---- I/O -------------------------------------------------------------- */

static void conn_flush(struct conn *c) {
  for (;;) {
    const char *p;
    size_t len;
    if (mxgw_session_output(c->s, &p, &len) < 0 || len == 0)
      return;
    ssize_t n = send(c->h.fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        c->broken = 1;
      return;
    }
    mxgw_session_consume(c->s, (size_t)n);
    if ((size_t)n < len)
      return;
  }
}

static int feed(struct conn *c, const unsigned char *p, size_t n,
                int64_t now) {
  int r = mxgw_session_feed(c->s, p, n, now);
  if (r < 0)
    return (int)n; /* closed: discard */
  return r;
}

static void conn_pump(struct conn *c, int64_t now) {
  if (!c->s)
    return;
  while (!c->broken) {
    int progress = 0, ev;
    if (c->in_len > 0 && !(c->px && mxgw__srv_px_paused(c->px))) {
      int n = feed(c, c->in, c->in_len, now);
      if (n > 0) {
        in_drop(c, (size_t)n);
        progress = 1;
      }
    }
    while ((ev = mxgw_session_next_event(c->s)) > 0) {
      on_event(c, ev, now);
      progress = 1;
    }
    if (c->px && px_pump(c, now))
      progress = 1;
    const char *p;
    size_t before, after;
    mxgw_session_output(c->s, &p, &before);
    conn_flush(c);
    mxgw_session_output(c->s, &p, &after);
    if (after < before)
      progress = 1;
    if (!progress)
      break;
  }
}

static void conn_update(struct conn *c) {
  struct loop *lp = c->lp;
  if (c->dead)
    return;
  if (c->broken) {
    if (c->s && !c->closed_ev) {
      int ev;
      mxgw_session_abort(c->s);
      while ((ev = mxgw_session_next_event(c->s)) > 0)
        on_event(c, ev, mxgw__mono_ms());
    }
    conn_close(c);
    return;
  }
  if (!c->s) { /* waiting for the PROXY header */
    if (c->rd_eof || (lp->drain_seen && lp->drain_forced)) {
      conn_close(c);
      return;
    }
    set_mask(c, EPOLLIN);
    return;
  }
  /* Draining: close sessions that are between transactions. */
  if (atomic_load(&lp->srv->draining) && lp->drain_seen && !c->shut &&
      !c->closed_ev && !c->in_txn && c->wait == W_NONE &&
      mxgw_session_pending(c->s) == MXGW_EV_NONE) {
    c->shut = 1;
    mxgw_session_shutdown(c->s, NULL);
    conn_pump(c, mxgw__mono_ms());
  }
  int want = mxgw_session_want(c->s);
  if (((want & MXGW_WANT_CLOSE) || c->closed_ev) &&
      !(want & MXGW_WANT_WRITE)) {
    if (c->wait == W_COMMIT)
      return; /* the reply to a commit in flight is still to come */
    conn_close(c);
    return;
  }
  uint32_t mask = 0;
  if (!c->rd_eof && c->in_len == 0 && (want & MXGW_WANT_READ))
    mask |= EPOLLIN;
  if (want & MXGW_WANT_WRITE)
    mask |= EPOLLOUT;
  if (mask == 0 && conn_deadline(c) < 0 && c->wait == W_NONE) {
    srv_log(lp->srv, MXGW_SRV_LOG_WARNING,
            "warning: session with unknown[%s] stalled; closing", c->addr);
    conn_close(c);
    return;
  }
  set_mask(c, mask);
  note_timer(lp, conn_deadline(c));
}

/* ---- proxy mode (MXGW_SRV_OPT_PROXY_MODE) ---------------------------- */

/* The session's MAIL, RCPT, DATA and end of message reach the mxgw_proxy
 * (mxgw_server_proxy.c) once the server's own checks accepted them; the
 * proxy answers them with the backend's replies. */

static void px_log(void *user, int level, const char *line) {
  srv_log(user, level, "%s", line);
}

/* Postfix's log_whatsup() as smtpd logs a before-queue proxy's answers:
 * "NOQUEUE: proxy-accept: END-OF-MESSAGE from unknown[addr]: 250 2.0.0
 * ...; from=<f> to=<t> proto=ESMTP helo=<h>". */
static void px_whatsup(struct conn *c, int level, const char *what,
                       const char *where, int code, const char *text) {
  const char *helo;
  size_t hl;
  sget(c, MXGW_INFO_HELO, &helo, &hl);
  srv_log(c->lp->srv, level,
          "NOQUEUE: %s: %s from unknown[%s]: %d %s; from=<%s> to=<%s> "
          "proto=%s helo=<%.*s>",
          what, where, c->addr, code, text, mxgw__srv_px_from(c->px),
          mxgw__srv_px_to(c->px), proto_name(c), (int)(hl > 255 ? 255 : hl),
          helo);
}

static void px_abort(struct conn *c) {
  if (c->px)
    mxgw__srv_px_event(c->px, MXGW_EV_MESSAGE_ABORT, mxgw__mono_ms());
}

/* The server accepted a MAIL, RCPT or the end of the message: the proxy
 * (the backend) decides. 0 for other stages. */
static int px_stage(struct conn *c, int stage) {
  int ev = stage == MXGW_STAGE_MAIL          ? MXGW_EV_MAIL
           : stage == MXGW_STAGE_RCPT        ? MXGW_EV_RCPT
           : stage == MXGW_STAGE_MESSAGE_END ? MXGW_EV_MESSAGE_END
                                             : 0;
  if (!ev)
    return 0;
  if (ev == MXGW_EV_MAIL)
    c->in_txn = 1;
  int rc = mxgw__srv_px_event(c->px, ev, mxgw__mono_ms());
  if (rc < 0) {
    srv_log(c->lp->srv, MXGW_SRV_LOG_WARNING, "warning: proxy: %s for "
            "unknown[%s]", mxgw_strerror(rc), c->addr);
    if (ev != MXGW_EV_RCPT)
      c->in_txn = 0;
    reply(c, 451, "4.3.0", "Error: local error");
  }
  conn_schedule(c);
  return 1;
}

/* Session events in proxy mode; 1 if handled here, 0 to go on with the
 * common handling (MAIL and RCPT: SPF, domains, callbacks first). */
static int px_on_event(struct conn *c, int ev, int64_t now) {
  int rc;
  switch (ev) {
  case MXGW_EV_DATA:
    rc = mxgw__srv_px_set_prefix(c->px, c->spf_hdr);
    if (rc == 0)
      rc = mxgw__srv_px_event(c->px, ev, now);
    if (rc < 0)
      reply(c, 451, "4.3.0", "Error: local error");
    return 1;
  case MXGW_EV_BODY:
    if (mxgw__srv_px_event(c->px, ev, now) < 0)
      px_abort(c); /* out of memory: the end of data gets 451 */
    return 1;
  case MXGW_EV_MESSAGE_END:
    if (!policy(c, MXGW_STAGE_MESSAGE_END, now))
      stage_default(c, MXGW_STAGE_MESSAGE_END);
    return 1;
  case MXGW_EV_MESSAGE_ABORT:
  case MXGW_EV_RSET:
  case MXGW_EV_CLOSE:
    mxgw__srv_px_event(c->px, ev, now);
    return 0;
  default:
    return 0;
  }
}

/* Drive the backend socket, and log what the backend decided. */
static int px_pump(struct conn *c, int64_t now) {
  int moved = mxgw__srv_px_pump(c->px, now);
  int ev, code;
  char text[512];
  while (c->px && mxgw__srv_px_answered(c->px, &ev, &code, text,
                                        sizeof text)) {
    moved = 1;
    if (ev == MXGW_EV_MESSAGE_END) {
      c->in_txn = 0;
      if (code / 100 == 2)
        STAT_ADD(c->lp->srv, MXGW_SRV_STAT_MESSAGES, 1);
      px_whatsup(c, code / 100 == 2 ? MXGW_SRV_LOG_INFO : MXGW_SRV_LOG_NOTICE,
                 code / 100 == 2 ? "proxy-accept" : "proxy-reject",
                 "END-OF-MESSAGE", code, text);
      continue;
    }
    if (code < 400)
      continue;
    if (ev == MXGW_EV_MAIL)
      c->in_txn = 0;
    if (ev == MXGW_EV_RCPT)
      STAT_ADD(c->lp->srv, MXGW_SRV_STAT_REJECTED_RCPT, 1);
    px_whatsup(c, MXGW_SRV_LOG_NOTICE, "proxy-reject",
               ev == MXGW_EV_MAIL   ? "MAIL"
               : ev == MXGW_EV_RCPT ? "RCPT"
                                    : "DATA",
               code, text);
  }
  return moved;
}

static void backend_io(struct conn *c, uint32_t events, int64_t now) {
  if (c->dead || !c->px)
    return;
  mxgw__srv_px_io(c->px, events, now);
  conn_pump(c, now);
  conn_update(c);
}

static void session_create(struct conn *c, int64_t now);

static void refuse(struct conn *c, const char *text) {
  char line[512];
  int n = snprintf(line, sizeof line, "421 4.7.0 %s %s\r\n",
                   c->lp->srv->hostname, text);
  if (n > 0) {
    ssize_t w = send(c->h.fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
  }
  STAT_ADD(c->lp->srv, MXGW_SRV_STAT_REFUSED, 1);
  conn_close(c);
}

/* The client's address is known (from accept, or from the PROXY header):
 * apply the per-IP limits, then start the session. */
static void client_known(struct conn *c, int64_t now) {
  mxgw_server *srv = c->lp->srv;
  const mxgw_server_config *cfg = c->snap->cfg;
  unsigned count = 0;
  ip_key(c->addr, c->ipkey, sizeof c->ipkey);
  int r = ip_acquire(srv, c->ipkey, cfg->max_per_ip, cfg->rate_per_ip, now,
                     &count);
  if (r == 1) {
    srv_log(srv, MXGW_SRV_LOG_WARNING,
            "warning: Connection concurrency limit exceeded: %u from "
            "unknown[%s]",
            count + 1, c->addr);
    refuse(c, "Error: too many connections from your address");
    return;
  }
  if (r == 2) {
    srv_log(srv, MXGW_SRV_LOG_WARNING,
            "warning: Connection rate limit exceeded: %" PRId64
            "/min from unknown[%s]",
            cfg->rate_per_ip, c->addr);
    refuse(c, "Error: too many connections per minute from your address; "
              "try again later");
    return;
  }
  c->ip_counted = 1;
  session_create(c, now);
}

static void session_create(struct conn *c, int64_t now) {
  mxgw_server *srv = c->lp->srv;
  int rc = mxgw_session_new(&c->s, c->snap->scfg[c->li], &srv->mem);
  if (rc == 0)
    rc = mxgw_session_set_peer(c->s, c->addr, c->port, NULL);
  if (rc < 0) {
    srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: session for [%s]: %s",
            c->addr, mxgw_strerror(rc));
    c->broken = 1;
    mxgw_session_free(c->s);
    c->s = NULL;
    conn_close(c);
    return;
  }
  mxgw_session_set_user(c->s, c);
  mxgw_session_set_log(c->s, sess_log, c);
  if (c->snap->cfg->proxy_mode) {
    c->bh.kind = H_BACKEND;
    c->bh.fd = -1;
    /* Backends and LMTP options as delivery has them: those of the
     * configuration at creation (a reload does not change them). */
    const mxgw_server_config *bc =
        srv->cfg0->nbackends ? srv->cfg0 : c->snap->cfg;
    rc = mxgw__srv_px_new(&c->px, &srv->mem, c->s, bc, c->lp->epfd, &c->bh,
                          px_log, srv);
    if (rc < 0) {
      srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: proxy for [%s]: %s",
              c->addr, mxgw_strerror(rc));
      c->px = NULL;
      c->broken = 1;
      conn_close(c);
      return;
    }
  }
  c->wait = W_NONE;
  mxgw_session_start(c->s, now);
  conn_pump(c, now);
  conn_update(c);
}

static void proxy_input(struct conn *c, int64_t now) {
  mxgw_server *srv = c->lp->srv;
  mxgw_proxy_hdr h;
  int r = mxgw_proxyproto_parse(c->in, c->in_len, &h);
  if (r == 0 && c->in_len < PROXY_BUF_MAX && !c->rd_eof)
    return;
  if (r <= 0) {
    STAT_ADD(srv, MXGW_SRV_STAT_PROXY_ERRORS, 1);
    srv_log(srv, MXGW_SRV_LOG_WARNING,
            "warning: haproxy read: %s from [%s]:%d",
            r == 0 ? "lost connection before the PROXY header"
                   : "improper PROXY protocol header",
            c->addr, c->port);
    conn_close(c);
    return;
  }
  if (h.command == MXGW_PROXY_CMD_PROXY &&
      (h.family == AF_INET || h.family == AF_INET6) && h.src_addr[0]) {
    snprintf(c->addr, sizeof c->addr, "%s", h.src_addr);
    c->port = h.src_port;
    snprintf(c->laddr, sizeof c->laddr, "%s", h.dst_addr);
    c->lport = h.dst_port;
  }
  in_drop(c, (size_t)r);
  client_known(c, now);
}

static void conn_io(struct conn *c, uint32_t events, int64_t now) {
  struct loop *lp = c->lp;
  if (c->dead)
    return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->rd_eof &&
      !c->broken && (c->in_len == 0 || !c->s)) {
    ssize_t n = recv(c->h.fd, lp->rbuf, RBUF_SIZE, 0);
    if (n > 0) {
      if (!c->s) {
        if (in_keep(c, lp->rbuf, (size_t)n) < 0)
          c->broken = 1;
        else
          proxy_input(c, now);
        if (c->dead)
          return;
      } else {
        /* Feed straight from the loop's buffer; keep what is not taken. */
        int t = (c->px && mxgw__srv_px_paused(c->px))
                    ? 0
                    : feed(c, lp->rbuf, (size_t)n, now);
        if (t < 0)
          t = 0;
        if ((size_t)t < (size_t)n && in_keep(c, lp->rbuf + t, (size_t)n - (size_t)t) < 0)
          c->broken = 1;
      }
    } else if (n == 0) {
      c->rd_eof = 1;
      if (!c->s) {
        proxy_input(c, now);
        if (c->dead)
          return;
      } else if (c->wait == W_GREET && c->in_len == 0 && !c->closed_ev) {
        /* Gone before the greeting, having said nothing (a port probe, a
         * client that gave up): nothing is owed, and waiting out the delay
         * would hold its connection slots (total and per IP) meanwhile. */
        srv_log(c->lp->srv, MXGW_SRV_LOG_INFO,
                "hangup during the greeting delay from unknown[%s]",
                c->addr);
        c->broken = 1;
      } else if (!c->closed_ev) {
        mxgw_session_eof(c->s);
      }
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      c->broken = 1;
    }
  } else if ((events & EPOLLERR) ||
             ((events & EPOLLHUP) && !(c->ep_mask & EPOLLIN))) {
    c->broken = 1;
  }
  if (c->dead)
    return;
  conn_pump(c, now);
  conn_update(c);
}

static void on_accept(struct loop *lp, struct lsock *ls, int64_t now) {
  mxgw_server *srv = lp->srv;
  for (int i = 0; i < 64; i++) {
    struct sockaddr_storage ss, ls_ss;
    socklen_t sl = sizeof ss, lsl = sizeof ls_ss;
    int fd = accept4(ls->h.fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return; /* EAGAIN, or EMFILE etc.: try again at the next wakeup */
    STAT_ADD(srv, MXGW_SRV_STAT_CONNECTIONS, 1);
    struct conn *c = mxgw__calloc(&srv->mem, 1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->h.kind = H_CONN;
    c->h.fd = fd;
    c->lp = lp;
    c->li = ls->idx;
    c->id = atomic_fetch_add(&srv->next_id, 1) + 1;
    c->spf_result = -1;
    c->snap = cur_snap(srv);
    if (getnameinfo((struct sockaddr *)&ss, sl, c->addr, sizeof c->addr, NULL,
                    0, NI_NUMERICHOST) != 0)
      snprintf(c->addr, sizeof c->addr, "0.0.0.0");
    /* "::ffff:192.0.2.1" is an IPv4 client on a dual-stack socket. */
    if (strncmp(c->addr, "::ffff:", 7) == 0 && strchr(c->addr + 7, '.'))
      memmove(c->addr, c->addr + 7, strlen(c->addr + 7) + 1);
    c->port = ss.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (getsockname(fd, (struct sockaddr *)&ls_ss, &lsl) == 0 &&
        getnameinfo((struct sockaddr *)&ls_ss, lsl, c->laddr, sizeof c->laddr,
                    NULL, 0, NI_NUMERICHOST) == 0)
      c->lport = ls->port;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ee;
    memset(&ee, 0, sizeof ee);
    ee.events = EPOLLIN;
    ee.data.ptr = &c->h;
    c->ep_mask = EPOLLIN;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
      close(fd);
      snap_unref(c->snap);
      mxgw__free(&srv->mem, c);
      continue;
    }
    c->next = lp->conns;
    if (lp->conns)
      lp->conns->prev = c;
    lp->conns = c;
    lp->nconns++;
    STAT_ADD(srv, MXGW_SRV_STAT_SESSIONS, 1);
    long long total = atomic_fetch_add(&srv->nconn_total, 1) + 1;
    if (total > c->snap->cfg->max_conn) {
      srv_log(srv, MXGW_SRV_LOG_WARNING,
              "warning: too many connections (%lld); refusing [%s]", total,
              c->addr);
      refuse(c, "Error: too many connections");
      continue;
    }
    if (c->snap->cfg->ls[c->li].proxy) {
      c->wait = W_PROXY;
      c->wait_deadline = now + c->snap->cfg->proxy_timeout;
      note_timer(lp, c->wait_deadline);
      continue;
    }
    client_known(c, now);
  }
}

/* ------------------------------------------------------------------------ */
/* DNS in the loop                                                          */
/* ------------------------------------------------------------------------ */

static int loop_dns_init(struct loop *lp, struct snap *sn) {
  mxgw_server *srv = lp->srv;
  const mxgw_server_config *cfg = sn->cfg;
  char *opts[16];
  char buf[1024];
  int no = 0, rc;
  if (lp->spf)
    return MXGW_OK;
  if (cfg->dns_servers && *cfg->dns_servers) {
    static const char pfx[] = "servers=";
    size_t l = strlen(cfg->dns_servers);
    opts[no] = mxgw__malloc(&srv->mem, l + sizeof pfx);
    if (!opts[no])
      return MXGW_E_NOMEM;
    memcpy(opts[no], pfx, sizeof pfx - 1);
    memcpy(opts[no] + sizeof pfx - 1, cfg->dns_servers, l + 1);
    no++;
  }
  if (cfg->dns_options && *cfg->dns_options) {
    snprintf(buf, sizeof buf, "%s", cfg->dns_options);
    for (char *save = NULL, *t = strtok_r(buf, ";", &save); t && no < 15;
         t = strtok_r(NULL, ";", &save))
      if (*t && (opts[no] = mxgw__strdup(&srv->mem, t)))
        no++;
  }
  opts[no] = NULL;
  rc = mxgw_resolver_new_ares(&lp->res, (const char *const *)opts, &srv->mem);
  for (int i = 0; i < no; i++)
    mxgw__free(&srv->mem, opts[i]);
  if (rc < 0) {
    srv_log(srv, MXGW_SRV_LOG_ERROR, "error: DNS resolver: %s",
            mxgw_strerror(rc));
    return rc;
  }
  rc = mxgw_spf_new(&lp->spf, lp->res, &srv->mem);
  if (rc == 0 && cfg->hostname)
    mxgw_spf_set_str(lp->spf, MXGW_SPF_OPT_RECEIVER, cfg->hostname);
  if (rc < 0) {
    mxgw_resolver_free(lp->res);
    lp->res = NULL;
  }
  return rc;
}

/* Make the epoll set match the resolver's descriptors. */
static void dns_sync(struct loop *lp) {
  int fds[MAX_DNS_FDS], evs[MAX_DNS_FDS];
  if (!lp->res)
    return;
  int n = mxgw_resolver_fds(lp->res, fds, evs, MAX_DNS_FDS);
  if (n > MAX_DNS_FDS)
    n = MAX_DNS_FDS;
  /* Drop registrations that are gone. */
  for (int i = 0; i < lp->ndns;) {
    int found = 0;
    for (int j = 0; j < n; j++)
      if (fds[j] == lp->dnsh[i].fd)
        found = 1;
    if (!found) {
      /* c-ares has closed it (closing removed it from the epoll set), and
       * the number may already belong to a new client connection: only a
       * socket still open as the same file is deleted here. Deleting by
       * number alone took a connection accepted meanwhile out of the set,
       * and that session never saw its next command. */
      struct stat st;
      if (fstat(lp->dnsh[i].fd, &st) == 0 && st.st_ino == lp->dnsino[i])
        epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->dnsh[i].fd, NULL);
      lp->dnsh[i] = lp->dnsh[lp->ndns - 1];
      lp->dnsev[i] = lp->dnsev[lp->ndns - 1];
      lp->dnsino[i] = lp->dnsino[lp->ndns - 1];
      lp->ndns--;
      /* fix the data pointers of moved entries below */
      continue;
    }
    i++;
  }
  for (int j = 0; j < n; j++) {
    uint32_t want = ((evs[j] & 1) ? EPOLLIN : 0) | ((evs[j] & 2) ? EPOLLOUT : 0);
    int i;
    for (i = 0; i < lp->ndns; i++)
      if (lp->dnsh[i].fd == fds[j])
        break;
    struct epoll_event ee;
    memset(&ee, 0, sizeof ee);
    ee.events = want;
    if (i == lp->ndns) {
      if (lp->ndns >= MAX_DNS_FDS)
        continue;
      struct stat st;
      lp->dnsh[i].kind = H_DNS;
      lp->dnsh[i].fd = fds[j];
      lp->dnsev[i] = want;
      lp->dnsino[i] = fstat(fds[j], &st) == 0 ? st.st_ino : 0;
      lp->ndns++;
      ee.data.ptr = &lp->dnsh[i];
      if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fds[j], &ee) < 0 &&
          errno == EEXIST)
        epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fds[j], &ee);
    } else {
      lp->dnsev[i] = want;
      ee.data.ptr = &lp->dnsh[i];
      if (epoll_ctl(lp->epfd, EPOLL_CTL_MOD, fds[j], &ee) < 0 &&
          errno == ENOENT)
        epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fds[j], &ee);
    }
  }
  /* Entries may have moved in the array: refresh every data pointer. */
  for (int i = 0; i < lp->ndns; i++) {
    struct epoll_event ee;
    memset(&ee, 0, sizeof ee);
    ee.events = lp->dnsev[i];
    ee.data.ptr = &lp->dnsh[i];
    epoll_ctl(lp->epfd, EPOLL_CTL_MOD, lp->dnsh[i].fd, &ee);
  }
}


/* ------------------------------------------------------------------------ */
/* Recipient verification cache                                            */
/* ------------------------------------------------------------------------ */

static unsigned vc_hash(const char *k) {
  unsigned h = 2166136261u;
  for (; *k; k++)
    h = (h ^ (unsigned)mxgw__lower((unsigned char)*k)) * 16777619u;
  return h % VC_BUCKETS;
}

static void vc_clear_locked(mxgw_server *srv) {
  for (int i = 0; i < VC_BUCKETS; i++)
    while (srv->vc[i]) {
      struct vent *e = srv->vc[i];
      srv->vc[i] = e->next;
      mxgw__free(&srv->mem, e->text);
      mxgw__free(&srv->mem, e);
    }
  srv->nvc = 0;
}

/* 1 and the cached answer if addr has a live entry. */
static int vc_get(mxgw_server *srv, const char *addr, int64_t now, int *code,
                  char *text, size_t cap) {
  int hit = 0;
  pthread_mutex_lock(&srv->vcmu);
  struct vent **pp = &srv->vc[vc_hash(addr)], *e;
  while ((e = *pp)) {
    if (strcasecmp(e->key, addr) == 0) {
      if (e->expires > now) {
        *code = e->code;
        snprintf(text, cap, "%s", e->text ? e->text : "");
        hit = 1;
      } else {
        *pp = e->next;
        mxgw__free(&srv->mem, e->text);
        mxgw__free(&srv->mem, e);
        srv->nvc--;
      }
      break;
    }
    pp = &e->next;
  }
  pthread_mutex_unlock(&srv->vcmu);
  return hit;
}

static void vc_put(mxgw_server *srv, const char *addr, int code,
                   const char *text, int64_t ttl_s, int64_t now) {
  if (ttl_s <= 0)
    return;
  size_t kl = strlen(addr);
  struct vent *e = mxgw__malloc(&srv->mem, sizeof *e + kl + 1);
  if (!e)
    return;
  memcpy(e->key, addr, kl + 1);
  e->code = code;
  e->expires = now + ttl_s * 1000;
  e->text = mxgw__strdup(&srv->mem, text);
  pthread_mutex_lock(&srv->vcmu);
  if (srv->nvc >= VC_MAX)
    vc_clear_locked(srv); /* crude but bounded */
  unsigned h = vc_hash(addr);
  struct vent **pp = &srv->vc[h], *o;
  while ((o = *pp)) { /* replace an older entry */
    if (strcasecmp(o->key, addr) == 0) {
      *pp = o->next;
      mxgw__free(&srv->mem, o->text);
      mxgw__free(&srv->mem, o);
      srv->nvc--;
      break;
    }
    pp = &o->next;
  }
  e->next = srv->vc[h];
  srv->vc[h] = e;
  srv->nvc++;
  pthread_mutex_unlock(&srv->vcmu);
}

/* Turn a probe (or cached) answer into the request's reply. Returns 1 if
 * the recipient is accepted. */
/* Length of an enhanced status code ("5.1.1") at the start of p, or 0. */
static size_t enh_code_len(const char *p) {
  size_t i = 0;
  if (p[i] != '2' && p[i] != '4' && p[i] != '5')
    return 0;
  i++;
  for (int part = 0; part < 2; part++) {
    if (p[i] != '.')
      return 0;
    size_t d = ++i;
    while (p[i] >= '0' && p[i] <= '9' && i - d < 3)
      i++;
    if (i == d)
      return 0;
  }
  return (p[i] == ' ' || p[i] == '\0') ? i : 0;
}

static int verify_answer(mxgw_server_req *r, const char *rcpt, int code,
                         const char *text) {
  char t[700];
  if (code / 100 == 2)
    return 1;
  if (code / 100 == 5) {
    /* The backend's own enhanced code (Dovecot: 5.1.1) is given once, as
     * ours, not repeated inside the text. */
    char enh[16] = "5.1.1";
    size_t el = text ? enh_code_len(text) : 0;
    if (el && text[0] == '5' && el < sizeof enh) {
      memcpy(enh, text, el);
      enh[el] = '\0';
    }
    const char *rest = text ? text + el : "";
    while (*rest == ' ')
      rest++;
    snprintf(t, sizeof t, "<%.300s>: Recipient address rejected: %.300s",
             rcpt, *rest ? rest : "undeliverable address");
    mxgw_server_req_reply(r, 550, enh, t);
  } else {
    snprintf(t, sizeof t, "<%.300s>: Recipient address verification "
             "unavailable", rcpt);
    mxgw_server_req_reply(r, 451, "4.4.3", t);
  }
  return 0;
}

/* Run a request: the verification probe (if asked), then the callback. */
static void run_req(mxgw_server_req *r) {
  if (r->verify) {
    mxgw_server *srv = r->srv;
    const mxgw_server_config *cfg = r->cfg;
    const char *rcpt = r->str[MXGW_REQ_RCPT] ? r->str[MXGW_REQ_RCPT] : "";
    char text[512];
    int code = mxgw__srv_probe(cfg->backends, cfg->nbackends,
                               cfg->hostname ? cfg->hostname : "localhost",
                               rcpt, (int)cfg->verify_timeout, text,
                               sizeof text);
    STAT_ADD(srv, MXGW_SRV_STAT_VERIFY_PROBES, 1);
    if (code / 100 == 2)
      vc_put(srv, rcpt, code, text, cfg->verify_ttl, mxgw__mono_ms());
    else if (code / 100 == 5)
      vc_put(srv, rcpt, code, text, cfg->verify_neg_ttl, mxgw__mono_ms());
    if (!verify_answer(r, rcpt, code, text))
      return;
  }
  if (r->pol.fn && r->pol.fn(r->pol.user, r) < 0)
    r->failed = 1;
}

/* ------------------------------------------------------------------------ */
/* Policy worker pool                                                       */
/* ------------------------------------------------------------------------ */

static void loop_wake(struct loop *lp) {
  uint64_t one = 1;
  ssize_t w = write(lp->wake.fd, &one, sizeof one);
  (void)w;
}

static void *pool_main(void *arg) {
  mxgw_server *srv = arg;
  struct pool *p = &srv->pool;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->head && !p->stop)
      pthread_cond_wait(&p->cv, &p->mu);
    if (!p->head) {
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    mxgw_server_req *r = p->head;
    p->head = r->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    r->next = NULL;
    run_req(r);
    struct loop *lp = r->loop;
    pthread_mutex_lock(&lp->mu);
    r->next = lp->inbox;
    lp->inbox = r;
    pthread_mutex_unlock(&lp->mu);
    loop_wake(lp);
  }
}

static void pool_push(mxgw_server *srv, mxgw_server_req *r) {
  struct pool *p = &srv->pool;
  r->next = NULL;
  pthread_mutex_lock(&p->mu);
  if (p->tail)
    p->tail->next = r;
  else
    p->head = r;
  p->tail = r;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

static int pool_start(mxgw_server *srv, int n) {
  struct pool *p = &srv->pool;
  if (n <= 0)
    return MXGW_OK;
  p->tids = mxgw__calloc(&srv->mem, (size_t)n, sizeof *p->tids);
  if (!p->tids)
    return MXGW_E_NOMEM;
  for (int i = 0; i < n; i++) {
    if (pthread_create(&p->tids[i], NULL, pool_main, srv) != 0)
      return MXGW_E_IO;
    p->n++;
  }
  return MXGW_OK;
}

static void pool_stop(mxgw_server *srv) {
  struct pool *p = &srv->pool;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n; i++)
    pthread_join(p->tids[i], NULL);
  p->n = 0;
  mxgw__free(&srv->mem, p->tids);
  p->tids = NULL;
}

/* ------------------------------------------------------------------------ */
/* Loops                                                                    */
/* ------------------------------------------------------------------------ */

static int open_listener(mxgw_server *srv, struct loop *lp, int idx,
                         int port) {
  const struct mxgw__srv_listener_cfg *l = &srv->cfg0->ls[idx];
  struct sockaddr_storage ss;
  socklen_t sl;
  int one = 1, fd;
  memset(&ss, 0, sizeof ss);
  if (mxgw__srv_is_ipv6(l->addr)) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, l->addr, &s6->sin6_addr);
    sl = sizeof *s6;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, l->addr, &s4->sin_addr);
    sl = sizeof *s4;
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    goto fail;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
      listen(fd, (int)srv->cfg0->backlog) < 0)
    goto fail;
  sl = sizeof ss;
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  struct lsock *ls = &lp->ls[lp->nls];
  ls->h.kind = H_LISTEN;
  ls->h.fd = fd;
  ls->idx = idx;
  ls->port = ss.ss_family == AF_INET6
                 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  struct epoll_event ee;
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  ee.data.ptr = &ls->h;
  if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
    goto fail;
  lp->nls++;
  return ls->port;
fail:;
  int e = errno;
  snprintf(srv->errmsg, sizeof srv->errmsg, "listener %d: %s:%d: %s", idx,
           l->addr, port, strerror(e));
  if (fd >= 0)
    close(fd);
  return e == EACCES ? MXGW_E_PERM : MXGW_E_IO;
}

static void close_listeners(struct loop *lp) {
  for (int i = 0; i < lp->nls; i++) {
    epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->ls[i].h.fd, NULL);
    close(lp->ls[i].h.fd);
  }
  lp->nls = 0;
  lp->listening = 0;
}

static void loop_free(struct loop *lp) {
  if (!lp)
    return;
  mxgw_server *srv = lp->srv;
  close_listeners(lp);
  for (struct conn *c = lp->ready; c; c = c->ready_next)
    c->in_ready = 0;
  lp->ready = NULL;
  while (lp->conns)
    conn_close(lp->conns);
  bury(lp, 1);
  mxgw_server_req *r = lp->inbox;
  while (r) {
    mxgw_server_req *n = r->next;
    mxgw__srv_req_free(r);
    r = n;
  }
  mxgw_spf_free(lp->spf);
  mxgw_resolver_free(lp->res);
  if (lp->wake.fd >= 0)
    close(lp->wake.fd);
  if (lp->epfd >= 0)
    close(lp->epfd);
  pthread_mutex_destroy(&lp->mu);
  mxgw__free(&srv->mem, lp->qin);
  mxgw__free(&srv->mem, lp->rbuf);
  mxgw__free(&srv->mem, lp);
}

static int loop_new(mxgw_server *srv, int id, struct loop **out) {
  struct loop *lp = mxgw__calloc(&srv->mem, 1, sizeof *lp);
  int rc = MXGW_OK;
  if (!lp)
    return MXGW_E_NOMEM;
  lp->srv = srv;
  lp->id = id;
  lp->next_timer = -1;
  lp->wake.fd = -1;
  pthread_mutex_init(&lp->mu, NULL);
  lp->rbuf = mxgw__malloc(&srv->mem, RBUF_SIZE);
  lp->epfd = epoll_create1(EPOLL_CLOEXEC);
  lp->wake.kind = H_WAKE;
  lp->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  lp->qh.kind = H_QUEUE;
  lp->qh.fd = mxgw_queue_eventfd(srv->q);
  if (!lp->rbuf || lp->epfd < 0 || lp->wake.fd < 0) {
    loop_free(lp);
    return MXGW_E_IO;
  }
  struct epoll_event ee;
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  ee.data.ptr = &lp->wake;
  epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wake.fd, &ee);
  ee.data.ptr = &lp->qh;
  ee.events = EPOLLIN | (srv->nloops > 1 || id > 0 ? EPOLLEXCLUSIVE : 0);
  if (lp->qh.fd >= 0)
    epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->qh.fd, &ee);
  for (int i = 0; i < srv->cfg0->nls; i++) {
    int port = srv->ports[i] ? srv->ports[i] : srv->cfg0->ls[i].port;
    rc = open_listener(srv, lp, i, port);
    if (rc < 0) {
      loop_free(lp);
      return rc;
    }
    if (!srv->ports[i])
      srv->ports[i] = rc;
  }
  lp->listening = 1;
  if (srv->cfg0->spf)
    loop_dns_init(lp, srv->snap); /* a failure is retried per check */
  *out = lp;
  return MXGW_OK;
}

/* Route a finished commit to the loop of its connection. */
static void route_done(struct loop *lp, const mxgw_queue_done *d) {
  struct conn *c = (struct conn *)(uintptr_t)d->tag;
  struct loop *to = c->lp;
  if (to == lp) {
    commit_done(lp, d);
    return;
  }
  pthread_mutex_lock(&to->mu);
  if (to->nqin == to->capqin) {
    size_t cap = to->capqin ? to->capqin * 2 : 64;
    mxgw_queue_done *nq = mxgw__realloc(&lp->srv->mem, to->qin,
                                        cap * sizeof *nq);
    if (!nq) {
      pthread_mutex_unlock(&to->mu);
      return; /* cannot happen in practice; the client times out */
    }
    to->qin = nq;
    to->capqin = cap;
  }
  to->qin[to->nqin++] = *d;
  pthread_mutex_unlock(&to->mu);
  loop_wake(to);
}

static void on_queue(struct loop *lp) {
  mxgw_queue_done done[64];
  int n;
  while ((n = mxgw_queue_completed(lp->srv->q, done, 64)) > 0)
    for (int i = 0; i < n; i++)
      route_done(lp, &done[i]);
}

static void drain_start(struct loop *lp, int64_t now) {
  long long t = atomic_load(&lp->srv->drain_timeout);
  int64_t dl = now + (t < 0 ? 0 : t);
  if (!lp->drain_seen || dl < lp->drain_deadline)
    lp->drain_deadline = dl;
  if (!lp->drain_seen) {
    lp->drain_seen = 1;
    close_listeners(lp);
    if (lp->id == 0)
      srv_log(lp->srv, MXGW_SRV_LOG_INFO,
              "draining: no new connections; %zu sessions to finish",
              (size_t)atomic_load(&lp->srv->nconn_total));
  }
  for (struct conn *c = lp->conns; c; c = c->next)
    conn_schedule(c);
  note_timer(lp, lp->drain_deadline);
}

static void on_wake(struct loop *lp, int64_t now) {
  uint64_t v;
  ssize_t r = read(lp->wake.fd, &v, sizeof v);
  (void)r;
  pthread_mutex_lock(&lp->mu);
  mxgw_server_req *in = lp->inbox;
  lp->inbox = NULL;
  size_t nq = lp->nqin;
  mxgw_queue_done qd[64];
  if (nq > 64)
    nq = 64;
  if (nq) {
    memcpy(qd, lp->qin, nq * sizeof *qd);
    memmove(lp->qin, lp->qin + nq, (lp->nqin - nq) * sizeof *qd);
    lp->nqin -= nq;
  }
  int more = lp->nqin > 0;
  pthread_mutex_unlock(&lp->mu);
  if (more)
    loop_wake(lp);
  for (size_t i = 0; i < nq; i++)
    commit_done(lp, &qd[i]);
  while (in) {
    mxgw_server_req *rq = in;
    in = rq->next;
    struct conn *c = rq->conn;
    c->refs--;
    if (!c->dead && c->wait == W_POLICY && rq->gen == c->req_gen) {
      c->wait = W_NONE;
      apply_answer(c, rq);
      conn_schedule(c);
    }
    mxgw__srv_req_free(rq);
  }
  if (atomic_load(&lp->srv->draining))
    drain_start(lp, now);
}

static void tls_check(mxgw_server *srv, int64_t now) {
  pthread_mutex_lock(&srv->mu);
  mxgw_server_config *cfg = srv->snap->cfg;
  for (int i = 0; i < cfg->nls; i++) {
    mxgw_tls *t = cfg->ls[i].tls;
    int dup = 0;
    for (int j = 0; j < i; j++)
      if (cfg->ls[j].tls == t)
        dup = 1;
    if (!t || dup)
      continue;
    int rc = mxgw_tls_check_reload(t, now);
    if (rc == 1)
      srv_log(srv, MXGW_SRV_LOG_INFO, "TLS certificates of listener %d "
              "reloaded (generation %llu)", i,
              (unsigned long long)mxgw_tls_generation(t));
    else if (rc < 0)
      srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: TLS reload of listener "
              "%d failed, old certificate kept: %s", i, mxgw_tls_errmsg(t));
  }
  pthread_mutex_unlock(&srv->mu);
}

static void timers(struct loop *lp, int64_t now) {
  mxgw_server *srv = lp->srv;
  if (lp->res) {
    int64_t t = mxgw_resolver_timeout(lp->res);
    if (t == 0) {
      mxgw_resolver_process(lp->res, -1, 0);
      dns_sync(lp);
    }
  }
  if (lp->id == 0 && srv->cfg0->tls_check_ms > 0 &&
      now >= lp->tls_next) {
    if (lp->tls_next)
      tls_check(srv, now);
    lp->tls_next = now + srv->cfg0->tls_check_ms;
  }
  if (lp->drain_seen && !lp->drain_forced && now >= lp->drain_deadline) {
    lp->drain_forced = 1;
    for (struct conn *c = lp->conns; c; c = c->next) {
      if (c->wait == W_COMMIT || c->closed_ev || !c->s) {
        if (!c->s)
          conn_schedule(c); /* PROXY wait: closed below */
        continue;
      }
      if (c->wait == W_POLICY)
        c->req_gen++; /* the late answer is dropped */
      if (c->wait == W_SPF) {
        mxgw_spf_check_free(c->spf);
        c->spf = NULL;
      }
      c->wait = W_NONE;
      c->shut = 1;
      mxgw_session_shutdown(c->s, NULL);
      conn_schedule(c);
    }
  }
  if (lp->next_timer >= 0 && now >= lp->next_timer) {
    lp->next_timer = -1;
    for (struct conn *c = lp->conns, *next; c; c = next) {
      next = c->next;
      if (c->wait != W_NONE && c->wait != W_COMMIT && c->wait_deadline > 0 &&
          now >= c->wait_deadline) {
        switch (c->wait) {
        case W_GREET:
          c->wait = W_NONE;
          connect_continue(c, now);
          break;
        case W_SPF:
          mxgw_spf_check_abort(c->spf); /* the hook runs: temperror */
          break;
        case W_POLICY:
          c->req_gen++;
          c->wait = W_NONE;
          srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: policy callback "
                  "timed out for unknown[%s]", c->addr);
          if (c->req_stage == MXGW_STAGE_MESSAGE_END) {
            mxgw_queue_msg_free(c->msg);
            c->msg = NULL;
            c->in_txn = 0;
            px_abort(c);
          }
          reply(c, 451, "4.3.0", "Error: policy timeout");
          break;
        case W_PROXY:
          STAT_ADD(srv, MXGW_SRV_STAT_PROXY_ERRORS, 1);
          srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: haproxy read: "
                  "timeout waiting for the PROXY header from [%s]:%d",
                  c->addr, c->port);
          conn_close(c);
          continue;
        }
        conn_schedule(c);
      }
      if (c->s) {
        int64_t d = mxgw_session_deadline(c->s);
        if (d >= 0 && d <= now) {
          mxgw_session_tick(c->s, now);
          conn_schedule(c);
        }
      }
      if (c->px) {
        int64_t d = mxgw__srv_px_deadline(c->px);
        if (d >= 0 && d <= now) {
          mxgw__srv_px_tick(c->px, now);
          conn_schedule(c);
        }
      }
      note_timer(lp, conn_deadline(c));
    }
  }
}

static void run_ready(struct loop *lp, int64_t now) {
  while (lp->ready) {
    struct conn *c = lp->ready;
    lp->ready = c->ready_next;
    c->in_ready = 0;
    if (c->dead)
      continue;
    conn_pump(c, now);
    conn_update(c);
  }
}

static int loop_timeout(struct loop *lp, int64_t now) {
  int64_t t = -1;
  if (lp->ready)
    return 0;
  if (lp->next_timer >= 0)
    t = lp->next_timer - now;
  if (lp->res) {
    int64_t r = mxgw_resolver_timeout(lp->res);
    if (r >= 0 && (t < 0 || r < t))
      t = r;
  }
  if (lp->id == 0 && lp->srv->cfg0->tls_check_ms > 0) {
    int64_t r = lp->tls_next - now;
    if (t < 0 || r < t)
      t = r;
  }
  if (lp->drain_seen && !lp->drain_forced) {
    int64_t r = lp->drain_deadline - now;
    if (t < 0 || r < t)
      t = r;
  }
  if (t < 0 && t != -1)
    t = 0;
  if (t > INT_MAX)
    t = INT_MAX;
  return (int)t;
}

/* One round: wait at most timeout ms, dispatch, run timers and the ready
 * list. Returns 1 once the loop is finished (drained and empty). */
static int loop_once(struct loop *lp, int timeout) {
  struct epoll_event evs[MAX_EVENTS];
  int n = epoll_wait(lp->epfd, evs, MAX_EVENTS, timeout);
  int64_t now = mxgw__mono_ms();
  int dns = 0;
  if (atomic_load(&lp->srv->draining) && !lp->drain_seen)
    drain_start(lp, now);
  for (int i = 0; i < n; i++) {
    struct handle *h = evs[i].data.ptr;
    switch (h->kind) {
    case H_LISTEN:
      if (lp->listening)
        on_accept(lp, (struct lsock *)h, now);
      break;
    case H_CONN:
      conn_io((struct conn *)h, evs[i].events, now);
      break;
    case H_BACKEND:
      backend_io((struct conn *)(void *)((char *)h -
                                         offsetof(struct conn, bh)),
                 evs[i].events, now);
      break;
    case H_WAKE:
      on_wake(lp, now);
      break;
    case H_QUEUE:
      on_queue(lp);
      break;
    case H_DNS:
      if (lp->res) {
        int e = ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ? 1 : 0) |
                ((evs[i].events & EPOLLOUT) ? 2 : 0);
        mxgw_resolver_process(lp->res, h->fd, e);
        dns = 1;
      }
      break;
    }
  }
  if (dns)
    dns_sync(lp);
  timers(lp, now);
  run_ready(lp, now);
  if (lp->res && dns)
    dns_sync(lp);
  bury(lp, 0);
  if (lp->drain_seen && lp->nconns == 0 && lp->nzombies == 0)
    lp->done = 1;
  return lp->done;
}

static void *loop_thread(void *arg) {
  struct loop *lp = arg;
  while (!lp->done)
    loop_once(lp, loop_timeout(lp, mxgw__mono_ms()));
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* Server                                                                   */
/* ------------------------------------------------------------------------ */

static void *deliver_thread(void *arg) {
  mxgw_server *srv = arg;
  int rc = mxgw_deliver_run(srv->d);
  if (rc < 0)
    srv_log(srv, MXGW_SRV_LOG_ERROR, "error: delivery stopped: %s",
            mxgw_strerror(rc));
  return NULL;
}

int mxgw_server_new(mxgw_server **out, mxgw_server_config *cfg,
                    const mxgw_mem *mem) {
  if (!out || !cfg)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_server *srv = mxgw__calloc(&m, 1, sizeof *srv);
  if (!srv)
    return MXGW_E_NOMEM;
  srv->mem = m;
  pthread_mutex_init(&srv->mu, NULL);
  pthread_mutex_init(&srv->logmu, NULL);
  pthread_mutex_init(&srv->ipmu, NULL);
  pthread_mutex_init(&srv->vcmu, NULL);
  pthread_mutex_init(&srv->pool.mu, NULL);
  pthread_cond_init(&srv->pool.cv, NULL);
  atomic_init(&srv->draining, 0);
  atomic_init(&srv->drain_timeout, 0);
  atomic_init(&srv->nconn_total, 0);
  atomic_init(&srv->next_id, 0);
  for (int i = 0; i < 16; i++)
    atomic_init(&srv->stat[i], 0);
  *out = srv;
  int rc = snap_new(cfg, &srv->snap, srv->errmsg, sizeof srv->errmsg);
  if (rc < 0)
    return rc;
  mxgw__srv_cfg_ref(cfg);
  srv->cfg0 = cfg;
  srv->log_fn = cfg->log_fn;
  srv->log_user = cfg->log_user;
  atomic_store(&srv->log_protocol, (int)cfg->log_protocol);
  snprintf(srv->hostname, sizeof srv->hostname, "%s",
           cfg->hostname ? cfg->hostname : "localhost");
  return MXGW_OK;
}

int mxgw_server_start(mxgw_server *srv) {
  if (!srv)
    return MXGW_E_INVAL;
  if (!srv->snap)
    return MXGW_E_INVAL;
  if (srv->started)
    return MXGW_E_STATE;
  mxgw_server_config *cfg = srv->cfg0;
  int rc = mxgw_queue_new(&srv->q, cfg->spool, &srv->mem);
  if (rc == 0)
    rc = mxgw_queue_set_int(srv->q, MXGW_QOPT_SYNC, cfg->queue_sync);
  if (rc == 0)
    rc = mxgw_queue_set_int(srv->q, MXGW_QOPT_ASYNC_WORKERS,
                            cfg->queue_workers);
  if (rc == 0)
    rc = mxgw_queue_set_int(srv->q, MXGW_QOPT_JOURNAL, cfg->queue_journal);
  if (rc == 0)
    rc = mxgw_queue_set_int(srv->q, MXGW_QOPT_JOURNAL_MAX_BODY,
                            cfg->queue_journal_max_body);
  if (rc == 0)
    rc = mxgw_queue_open(srv->q);
  if (rc < 0) {
    snprintf(srv->errmsg, sizeof srv->errmsg, "spool %s: %s", cfg->spool,
             mxgw_strerror(rc));
    mxgw_queue_free(srv->q);
    srv->q = NULL;
    return rc;
  }
  if (cfg->deliver) {
    rc = mxgw_deliver_new(&srv->d, srv->q, &srv->mem);
    for (size_t i = 0; rc == 0 && i < cfg->nbackends; i++)
      rc = mxgw_deliver_add_backend(srv->d, cfg->backends[i]);
    for (size_t i = 0; rc == 0 && i < cfg->ndopt; i++)
      rc = mxgw_deliver_set_int(srv->d, cfg->dopt[i].key, cfg->dopt[i].value);
    if (rc == 0)
      rc = mxgw_deliver_set_str(srv->d, MXGW_DELIVER_OPT_HOSTNAME,
                                srv->hostname);
    for (int i = 0; rc == 0 && i < 8; i++)
      if (cfg->dstr[i])
        rc = mxgw_deliver_set_str(srv->d, 100 + i, cfg->dstr[i]);
    if (rc == 0 && cfg->dtls)
      rc = mxgw_deliver_set_tls(srv->d, cfg->dtls);
    if (rc == 0)
      rc = mxgw_deliver_set_log(srv->d, deliver_log, srv);
    if (rc < 0) {
      snprintf(srv->errmsg, sizeof srv->errmsg, "delivery: %s",
               mxgw_strerror(rc));
      return rc;
    }
  }
  rc = pool_start(srv, (int)cfg->policy_workers);
  if (rc < 0) {
    snprintf(srv->errmsg, sizeof srv->errmsg, "policy workers: %s",
             mxgw_strerror(rc));
    return rc;
  }
  srv->loops = mxgw__calloc(&srv->mem, 1, sizeof *srv->loops);
  if (!srv->loops)
    return MXGW_E_NOMEM;
  rc = loop_new(srv, 0, &srv->loops[0]);
  if (rc < 0)
    return rc;
  srv->nloops = 1;
  if (srv->d) {
    if (pthread_create(&srv->dtid, NULL, deliver_thread, srv) != 0) {
      snprintf(srv->errmsg, sizeof srv->errmsg, "delivery thread: %s",
               strerror(errno));
      return MXGW_E_IO;
    }
    srv->has_dthread = 1;
  }
  srv->started = 1;
  for (int i = 0; i < cfg->nls; i++)
    srv_log(srv, MXGW_SRV_LOG_INFO, "listening on %s%s%s:%d (%s%s)",
            mxgw__srv_is_ipv6(cfg->ls[i].addr) ? "[" : "", cfg->ls[i].addr,
            mxgw__srv_is_ipv6(cfg->ls[i].addr) ? "]" : "", srv->ports[i],
            cfg->ls[i].mode == MXGW_LISTEN_SMTP         ? "smtp"
            : cfg->ls[i].mode == MXGW_LISTEN_SUBMISSION ? "submission"
                                                        : "smtps",
            cfg->ls[i].proxy ? ", PROXY protocol" : "");
  return MXGW_OK;
}

/* Everything stopped: the delivery thread and the workers. */
static void finish(mxgw_server *srv) {
  if (srv->finished)
    return;
  srv->finished = 1;
  if (srv->has_dthread) {
    mxgw_deliver_stop(srv->d);
    pthread_join(srv->dtid, NULL);
    srv->has_dthread = 0;
  }
  pool_stop(srv);
  srv_log(srv, MXGW_SRV_LOG_INFO, "stopped");
}

int mxgw_server_run(mxgw_server *srv, int loops) {
  if (!srv || loops < 0)
    return MXGW_E_INVAL;
  if (srv->embedded || srv->running)
    return MXGW_E_STATE;
  if (!srv->started) {
    int rc = mxgw_server_start(srv);
    if (rc < 0)
      return rc;
  }
  srv->running = 1;
  if (loops == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    loops = n > 0 ? (int)n : 1;
  }
  if (loops > 256)
    loops = 256;
  struct loop **nl = mxgw__realloc(&srv->mem, srv->loops,
                                   (size_t)loops * sizeof *nl);
  if (!nl)
    return MXGW_E_NOMEM;
  srv->loops = nl;
  for (int i = 1; i < loops; i++) {
    struct loop *lp;
    if (loop_new(srv, i, &lp) < 0) {
      srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: loop %d: %s; running "
              "with %d", i, srv->errmsg, i);
      break;
    }
    srv->loops[srv->nloops++] = lp;
    if (pthread_create(&lp->tid, NULL, loop_thread, lp) != 0) {
      srv->nloops--;
      loop_free(lp);
      break;
    }
    lp->has_thread = 1;
  }
  loop_thread(srv->loops[0]);
  for (int i = 1; i < srv->nloops; i++)
    if (srv->loops[i]->has_thread) {
      pthread_join(srv->loops[i]->tid, NULL);
      srv->loops[i]->has_thread = 0;
    }
  finish(srv);
  return MXGW_OK;
}

int mxgw_server_fd(const mxgw_server *srv) {
  if (!srv || !srv->started)
    return -1;
  return srv->loops[0]->epfd;
}

int mxgw_server_timeout_ms(mxgw_server *srv) {
  if (!srv || !srv->started)
    return -1;
  return loop_timeout(srv->loops[0], mxgw__mono_ms());
}

int mxgw_server_process(mxgw_server *srv) {
  if (!srv || !srv->started || srv->running)
    return MXGW_E_STATE;
  if (srv->finished)
    return 1;
  srv->embedded = 1;
  if (loop_once(srv->loops[0], 0)) {
    finish(srv);
    return 1;
  }
  return 0;
}

int mxgw_server_drain(mxgw_server *srv, int64_t timeout_ms) {
  if (!srv)
    return MXGW_E_INVAL;
  if (timeout_ms < 0)
    timeout_ms = srv->cfg0 ? srv->cfg0->drain_timeout : 30000;
  long long cur = atomic_load(&srv->drain_timeout);
  if (!atomic_load(&srv->draining) || timeout_ms < cur)
    atomic_store(&srv->drain_timeout, (long long)timeout_ms);
  atomic_store(&srv->draining, 1);
  /* Wake every loop: write() is async-signal-safe. The loop array is only
   * grown by run() before the loops start. */
  for (int i = 0; i < srv->nloops; i++) {
    uint64_t one = 1;
    ssize_t w = write(srv->loops[i]->wake.fd, &one, sizeof one);
    (void)w;
  }
  return MXGW_OK;
}

int mxgw_server_stop(mxgw_server *srv) { return mxgw_server_drain(srv, 0); }

static int same_listeners(const mxgw_server_config *a,
                          const mxgw_server_config *b) {
  if (a->nls != b->nls)
    return 0;
  for (int i = 0; i < a->nls; i++)
    if (strcmp(a->ls[i].addr, b->ls[i].addr) != 0 ||
        a->ls[i].port != b->ls[i].port || a->ls[i].mode != b->ls[i].mode ||
        a->ls[i].proxy != b->ls[i].proxy)
      return 0;
  return 1;
}

int mxgw_server_reload(mxgw_server *srv, mxgw_server_config *cfg) {
  int rc = MXGW_OK, tls_rc = MXGW_OK;
  if (!srv)
    return MXGW_E_INVAL;
  if (!srv->started)
    return MXGW_E_STATE;
  if (cfg) {
    struct snap *sn;
    char err[400];
    if (!same_listeners(srv->cfg0, cfg)) {
      pthread_mutex_lock(&srv->mu);
      snprintf(srv->errmsg, sizeof srv->errmsg,
               "reload: the listeners differ (restart needed)");
      pthread_mutex_unlock(&srv->mu);
      return MXGW_E_INVAL;
    }
    rc = snap_new(cfg, &sn, err, sizeof err);
    if (rc < 0) {
      pthread_mutex_lock(&srv->mu);
      snprintf(srv->errmsg, sizeof srv->errmsg, "reload: %s", err);
      pthread_mutex_unlock(&srv->mu);
      return rc;
    }
    if ((cfg->spool && strcmp(cfg->spool, srv->cfg0->spool) != 0) ||
        cfg->nbackends != srv->cfg0->nbackends)
      srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: reload: spool and "
              "backend changes need a restart; not applied");
    pthread_mutex_lock(&srv->mu);
    struct snap *old = srv->snap;
    srv->snap = sn;
    pthread_mutex_unlock(&srv->mu);
    pthread_mutex_lock(&srv->logmu);
    srv->log_fn = cfg->log_fn;
    srv->log_user = cfg->log_user;
    atomic_store(&srv->log_protocol, (int)cfg->log_protocol);
    pthread_mutex_unlock(&srv->logmu);
    snap_unref(old);
  }
  pthread_mutex_lock(&srv->mu);
  mxgw_server_config *c = srv->snap->cfg;
  for (int i = 0; i < c->nls; i++) {
    int dup = 0;
    for (int j = 0; j < i; j++)
      if (c->ls[j].tls == c->ls[i].tls)
        dup = 1;
    if (!c->ls[i].tls || dup)
      continue;
    int r = mxgw_tls_reload(c->ls[i].tls);
    if (r < 0) {
      tls_rc = MXGW_E_TLS;
      srv_log(srv, MXGW_SRV_LOG_WARNING, "warning: reload: TLS of listener "
              "%d: %s; old certificate kept", i,
              mxgw_tls_errmsg(c->ls[i].tls));
    }
  }
  pthread_mutex_unlock(&srv->mu);
  STAT_ADD(srv, MXGW_SRV_STAT_RELOADS, 1);
  srv_log(srv, MXGW_SRV_LOG_INFO, "reloaded%s",
          cfg ? " configuration and certificates" : " certificates");
  return tls_rc;
}

int mxgw_server_listener_port(const mxgw_server *srv, int idx) {
  if (!srv)
    return MXGW_E_INVAL;
  if (!srv->started)
    return MXGW_E_STATE;
  if (idx < 0 || idx >= srv->cfg0->nls)
    return MXGW_E_RANGE;
  return srv->ports[idx];
}

int mxgw_server_get_int(mxgw_server *srv, int key, int64_t *out) {
  if (!srv || !out)
    return MXGW_E_INVAL;
  if (key >= 2000 && key < 2016) {
    switch (key) {
    case MXGW_SRV_STAT_LOOPS: *out = srv->nloops; return MXGW_OK;
    case MXGW_SRV_STAT_DRAINING: *out = atomic_load(&srv->draining); return MXGW_OK;
    case MXGW_SRV_STAT_DELIVERED:
      *out = 0;
      if (srv->d)
        mxgw_deliver_get_int(srv->d, MXGW_DELIVER_STAT_SENT, out);
      return MXGW_OK;
    default:
      *out = atomic_load(&srv->stat[key - 2000]);
      return MXGW_OK;
    }
  }
  pthread_mutex_lock(&srv->mu);
  int rc = srv->snap ? mxgw_server_config_get_int(srv->snap->cfg, key, out)
                     : MXGW_E_INVAL;
  pthread_mutex_unlock(&srv->mu);
  return rc;
}

const char *mxgw_server_errmsg(const mxgw_server *srv) {
  return srv ? srv->errmsg : "";
}

void mxgw_server_free(mxgw_server *srv) {
  if (!srv)
    return;
  if (srv->started && !srv->finished) {
    /* Stop now: every session gets its 421; commits in flight complete. */
    mxgw_server_stop(srv);
    struct loop *lp = srv->loops[0];
    int64_t until = mxgw__mono_ms() + 30000;
    while (!loop_once(lp, 50) && mxgw__mono_ms() < until)
      ;
    finish(srv);
  }
  for (int i = 0; i < srv->nloops; i++) {
    /* Collect what is still outstanding so zombies can go. */
    loop_free(srv->loops[i]);
  }
  mxgw__free(&srv->mem, srv->loops);
  pool_stop(srv);
  mxgw_deliver_free(srv->d);
  mxgw_queue_free(srv->q);
  snap_unref(srv->snap);
  mxgw_server_config_free(srv->cfg0);
  for (int i = 0; i < IP_BUCKETS; i++)
    while (srv->ipt[i]) {
      struct ipent *e = srv->ipt[i];
      srv->ipt[i] = e->next;
      mxgw__free(&srv->mem, e);
    }
  pthread_mutex_destroy(&srv->mu);
  pthread_mutex_destroy(&srv->logmu);
  pthread_mutex_destroy(&srv->ipmu);
  vc_clear_locked(srv);
  pthread_mutex_destroy(&srv->vcmu);
  pthread_mutex_destroy(&srv->pool.mu);
  pthread_cond_destroy(&srv->pool.cv);
  mxgw__free(&srv->mem, srv);
}
