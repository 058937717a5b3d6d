/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server_int.h: internals of the server layer shared by
 * mxgw_server_config.c (configuration, policy requests) and mxgw_server.c
 * (loops, connections, threads). Not installed.
 */
#ifndef MXGW_SERVER_INT_H
#define MXGW_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "mxgw/mxgw_server.h"
#include "mxgw/mxgw_session.h"
#include "mxgw_int.h"

#define MXGW__SRV_MAX_LISTENERS 64
#define MXGW__SRV_NSESS_OPT 26  /* mxgw_opt keys 1..25 */
#define MXGW__SRV_NSTAGE 7      /* mxgw_server_stage 1..6 */
#define MXGW__SRV_NSPF 7        /* mxgw_spf_result 0..6 */

struct mxgw__srv_listener_cfg {
  char addr[64];
  int port;
  int mode;
  int tls_policy; /* -1: default */
  int proxy;
  int auth_plaintext;
  struct mxgw_tls *tls;
};

struct mxgw__srv_policy {
  mxgw_server_policy_fn fn;
  void *user;
};

struct mxgw_server_config {
  mxgw_mem mem;
  atomic_int refs;
  atomic_int frozen;
  int64_t sess_int[MXGW__SRV_NSESS_OPT];
  unsigned char sess_set[MXGW__SRV_NSESS_OPT];
  char *hostname, *greeting;
  /* server options */
  int64_t max_conn, max_per_ip, rate_per_ip, greet_delay, spf, spf_timeout;
  int64_t spf_action[MXGW__SRV_NSPF];
  int64_t policy_workers, policy_timeout, queue_sync, queue_workers,
      queue_journal, queue_journal_max_body,
      deliver, log_protocol, backlog, proxy_timeout, auth_relay,
      drain_timeout, tls_check_ms, rcpt_verify, verify_ttl, verify_neg_ttl,
      verify_timeout, proxy_mode;
  char *spool, *dns_servers, *dns_options;
  struct mxgw__srv_listener_cfg ls[MXGW__SRV_MAX_LISTENERS];
  int nls;
  char **domains;
  size_t ndomains;
  char **backends;
  size_t nbackends;
  struct {
    int key;
    int64_t value;
  } dopt[64];
  size_t ndopt;
  char *dstr[8]; /* mxgw_deliver_opt_str - 100 */
  struct mxgw_tls *dtls;
  mxgw_server_log_fn log_fn;
  void *log_user;
  struct mxgw__srv_policy policy[MXGW__SRV_NSTAGE];
  char errmsg[256];
};

/* A policy request: everything a callback may read, copied, plus the
 * answer. Owned by the loop; travels to a worker and back. */
struct mxgw_server_req {
  const mxgw_mem *mem;
  int stage;
  char *str[16];      /* mxgw_server_req_key 1..13 */
  int64_t num[16];    /* keys 100..109 -> [key-100] */
  char **rcpts;
  size_t nrcpt;
  /* answer */
  int code;           /* 0: accept */
  char enh[16];
  char *text;
  int failed;         /* the callback returned an error */
  int verify;         /* RCPT: probe the backend first */
  /* routing */
  struct mxgw__srv_policy pol;
  const struct mxgw_server_config *cfg; /* the session's (frozen) */
  void *srv;
  void *conn;         /* struct conn *, kept alive while the request lives */
  void *loop;
  uint64_t gen;       /* conn->req_gen when sent */
  struct mxgw_server_req *next;
};

/* mxgw_server_config.c */
void mxgw__srv_cfg_ref(mxgw_server_config *cfg);
int mxgw__srv_cfg_validate(mxgw_server_config *cfg, char *err, size_t cap);
int mxgw__srv_domain_ok(const mxgw_server_config *cfg, const char *addr,
                        size_t len);
int mxgw__srv_req_new(const mxgw_mem *mem, int stage,
                      mxgw_server_req **out);
int mxgw__srv_req_set(mxgw_server_req *req, int key, const char *s,
                      size_t len);
int mxgw__srv_req_add_rcpt(mxgw_server_req *req, const char *s, size_t len);
void mxgw__srv_req_free(mxgw_server_req *req);
int mxgw__srv_is_ipv6(const char *addr);
int mxgw__srv_check_reply(int code, const char *enh, const char *text);

/* mxgw_server_verify.c: one blocking LMTP recipient probe. Tries the
 * backends in order until one answers. Returns the RCPT reply code (2xx,
 * 4xx, 5xx; 0 when no backend could be asked), with the backend's text. */
int mxgw__srv_probe(char *const *backends, size_t n, const char *lhlo,
                    const char *rcpt, int timeout_ms, char *text,
                    size_t cap);

/* mxgw_server_proxy.c: proxy (before-queue) mode, MXGW_SRV_OPT_PROXY_MODE.
 * One per session: an mxgw_proxy coupled to the session, and the backend
 * socket it wants (connect to the backends in order, the first that
 * connects is used; registered in the loop's epoll with ep_ptr as its
 * data pointer). cfg gives the backends, the LMTP options and the LHLO
 * name; it must outlive the object. Runs on the session's loop thread
 * only. */
struct mxgw__srv_px;
typedef void (*mxgw__srv_px_log_fn)(void *user, int level, const char *line);
int mxgw__srv_px_new(struct mxgw__srv_px **out, const mxgw_mem *mem,
                     mxgw_session *s, const mxgw_server_config *cfg,
                     int epfd, void *ep_ptr, mxgw__srv_px_log_fn log,
                     void *log_user);
/* Sends what is still queued for the backend (QUIT) without blocking,
 * closes the backend socket, frees. NULL is a no-op. */
void mxgw__srv_px_free(struct mxgw__srv_px *x);
/* Hand a session event to the proxy (mxgw_proxy_session_event()). */
int mxgw__srv_px_event(struct mxgw__srv_px *x, int ev, int64_t now);
/* A header block (the Received-SPF field, CRLF-terminated) written to the
 * backend ahead of the proxy's Received field once DATA got its 354; NULL
 * for none. Copied. */
int mxgw__srv_px_set_prefix(struct mxgw__srv_px *x, const char *hdr);
/* Act on what the proxy wants (connect, write, close); 1 if something
 * moved. */
int mxgw__srv_px_pump(struct mxgw__srv_px *x, int64_t now);
/* The backend socket is ready (epoll events). */
void mxgw__srv_px_io(struct mxgw__srv_px *x, uint32_t events, int64_t now);
/* 1 while the SMTP client must not be fed (WANT_PAUSE). */
int mxgw__srv_px_paused(const struct mxgw__srv_px *x);
int64_t mxgw__srv_px_deadline(const struct mxgw__srv_px *x);
void mxgw__srv_px_tick(struct mxgw__srv_px *x, int64_t now);
/* The session queued a reply (its log hook, MXGW_LOG_REPLY). */
void mxgw__srv_px_note_reply(struct mxgw__srv_px *x, const char *text,
                             size_t len);
/* 1 once per decision the proxy answered: the event (MXGW_EV_MAIL, _RCPT,
 * _DATA, _MESSAGE_END), the reply code and its last line's text. */
int mxgw__srv_px_answered(struct mxgw__srv_px *x, int *ev, int *code,
                          char *text, size_t cap);
/* The backend in use ("" before the first connection). */
const char *mxgw__srv_px_backend(const struct mxgw__srv_px *x);
/* The sender and the recipient (RCPT: that one; DATA, end of message: the
 * first) when the last decision was handed to the proxy. */
const char *mxgw__srv_px_from(const struct mxgw__srv_px *x);
const char *mxgw__srv_px_to(const struct mxgw__srv_px *x);

#endif /* MXGW_SERVER_INT_H */
