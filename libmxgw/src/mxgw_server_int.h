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
      deliver, log_protocol, backlog, proxy_timeout, auth_relay,
      drain_timeout, tls_check_ms, rcpt_verify, verify_ttl, verify_neg_ttl,
      verify_timeout;
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

#endif /* MXGW_SERVER_INT_H */
