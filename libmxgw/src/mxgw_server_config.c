/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server_config.c: the server configuration (setters, validation,
 * accepted domains) and the policy request objects handed to callbacks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "mxgw/mxgw_deliver.h"
#include "mxgw/mxgw_spf.h"
#include "mxgw_server_int.h"
#include "mxgw_tls_int.h"

static int cfg_err(mxgw_server_config *cfg, int rc, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
static int cfg_err(mxgw_server_config *cfg, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cfg->errmsg, sizeof cfg->errmsg, fmt, ap);
  va_end(ap);
  return rc;
}

int mxgw_server_config_new(mxgw_server_config **out, const mxgw_mem *mem) {
  mxgw_mem m;
  mxgw_server_config *cfg;
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw__mem_init(&m, mem);
  cfg = mxgw__calloc(&m, 1, sizeof *cfg);
  if (!cfg)
    return MXGW_E_NOMEM;
  cfg->mem = m;
  atomic_init(&cfg->refs, 1);
  atomic_init(&cfg->frozen, 0);
  cfg->max_conn = 10000;
  cfg->max_per_ip = 20;
  cfg->rate_per_ip = 0;
  cfg->greet_delay = 0;
  cfg->spf = 0;
  cfg->spf_timeout = 20000;
  for (int i = 0; i < MXGW__SRV_NSPF; i++)
    cfg->spf_action[i] = MXGW_ACTION_ACCEPT;
  cfg->spf_action[MXGW_SPF_FAIL] = MXGW_ACTION_REJECT;
  cfg->spf_action[MXGW_SPF_TEMPERROR] = MXGW_ACTION_TEMPFAIL;
  cfg->policy_workers = 4;
  cfg->policy_timeout = 60000;
  cfg->queue_sync = 1;
  cfg->queue_workers = 4;
  cfg->queue_journal = 1;
  cfg->queue_journal_max_body = 1 << 20;
  cfg->deliver = 1;
  cfg->log_protocol = 0;
  cfg->backlog = 511;
  cfg->proxy_timeout = 10000;
  cfg->auth_relay = 1;
  cfg->drain_timeout = 30000;
  cfg->tls_check_ms = 60000;
  cfg->rcpt_verify = 0;
  cfg->verify_ttl = 600;
  cfg->verify_neg_ttl = 60;
  cfg->verify_timeout = 10000;
  cfg->proxy_mode = 0;
  *out = cfg;
  return MXGW_OK;
}

void mxgw__srv_cfg_ref(mxgw_server_config *cfg) {
  atomic_fetch_add(&cfg->refs, 1);
}

static void free_list(const mxgw_mem *m, char **l, size_t n) {
  for (size_t i = 0; i < n; i++)
    mxgw__free(m, l[i]);
  mxgw__free(m, l);
}

void mxgw_server_config_free(mxgw_server_config *cfg) {
  if (!cfg || atomic_fetch_sub(&cfg->refs, 1) != 1)
    return;
  const mxgw_mem *m = &cfg->mem;
  for (int i = 0; i < cfg->nls; i++)
    mxgw_tls_free(cfg->ls[i].tls);
  free_list(m, cfg->domains, cfg->ndomains);
  free_list(m, cfg->backends, cfg->nbackends);
  for (int i = 0; i < 8; i++)
    mxgw__free(m, cfg->dstr[i]);
  mxgw_tls_free(cfg->dtls);
  mxgw__free(m, cfg->hostname);
  mxgw__free(m, cfg->greeting);
  mxgw__free(m, cfg->spool);
  mxgw__free(m, cfg->dns_servers);
  mxgw__free(m, cfg->dns_options);
  mxgw__free(m, cfg);
}

#define FROZEN(cfg)                                                            \
  do {                                                                         \
    if (atomic_load(&(cfg)->frozen))                                           \
      return cfg_err(cfg, MXGW_E_BUSY, "configuration is in use (frozen)");    \
  } while (0)

static int64_t *srv_int_slot(mxgw_server_config *cfg, int key, int64_t *min,
                             int64_t *max);
static const int64_t *srv_int_cslot(const mxgw_server_config *cfg, int key) {
  int64_t min, max;
  union {
    const mxgw_server_config *c;
    mxgw_server_config *m;
  } u = {cfg};
  return srv_int_slot(u.m, key, &min, &max);
}

static int64_t *srv_int_slot(mxgw_server_config *cfg, int key, int64_t *min,
                             int64_t *max) {
  *min = 0;
  *max = INT64_MAX;
  switch (key) {
  case MXGW_SRV_OPT_MAX_CONNECTIONS: *min = 1; *max = 10000000; return &cfg->max_conn;
  case MXGW_SRV_OPT_MAX_CONN_PER_IP: *max = 10000000; return &cfg->max_per_ip;
  case MXGW_SRV_OPT_CONN_RATE_PER_IP: *max = 100000000; return &cfg->rate_per_ip;
  case MXGW_SRV_OPT_GREETING_DELAY_MS: *max = 600000; return &cfg->greet_delay;
  case MXGW_SRV_OPT_SPF: *max = 1; return &cfg->spf;
  case MXGW_SRV_OPT_SPF_TIMEOUT_MS: *min = 1; *max = 600000; return &cfg->spf_timeout;
  case MXGW_SRV_OPT_POLICY_WORKERS: *max = 256; return &cfg->policy_workers;
  case MXGW_SRV_OPT_POLICY_TIMEOUT_MS: *max = 86400000; return &cfg->policy_timeout;
  case MXGW_SRV_OPT_QUEUE_SYNC: *max = 1; return &cfg->queue_sync;
  case MXGW_SRV_OPT_QUEUE_WORKERS: *min = 1; *max = 256; return &cfg->queue_workers;
  case MXGW_SRV_OPT_QUEUE_JOURNAL: *max = 1; return &cfg->queue_journal;
  case MXGW_SRV_OPT_QUEUE_JOURNAL_MAX_BODY:
    *min = 1024;
    *max = 64 << 20;
    return &cfg->queue_journal_max_body;
  case MXGW_SRV_OPT_DELIVER: *max = 1; return &cfg->deliver;
  case MXGW_SRV_OPT_LOG_PROTOCOL: *max = 1; return &cfg->log_protocol;
  case MXGW_SRV_OPT_BACKLOG: *min = 1; *max = 65535; return &cfg->backlog;
  case MXGW_SRV_OPT_PROXY_TIMEOUT_MS: *min = 1; *max = 600000; return &cfg->proxy_timeout;
  case MXGW_SRV_OPT_AUTH_RELAY: *max = 1; return &cfg->auth_relay;
  case MXGW_SRV_OPT_DRAIN_TIMEOUT_MS: *max = 86400000; return &cfg->drain_timeout;
  case MXGW_SRV_OPT_TLS_CHECK_MS: *max = 86400000; return &cfg->tls_check_ms;
  case MXGW_SRV_OPT_RCPT_VERIFY: *max = 1; return &cfg->rcpt_verify;
  case MXGW_SRV_OPT_VERIFY_TTL: *max = 86400 * 30; return &cfg->verify_ttl;
  case MXGW_SRV_OPT_VERIFY_NEG_TTL: *max = 86400 * 30; return &cfg->verify_neg_ttl;
  case MXGW_SRV_OPT_VERIFY_TIMEOUT_MS: *min = 100; *max = 600000; return &cfg->verify_timeout;
  case MXGW_SRV_OPT_PROXY_MODE: *max = 1; return &cfg->proxy_mode;
  default:
    if (key >= MXGW_SRV_OPT_SPF_ACTION &&
        key < MXGW_SRV_OPT_SPF_ACTION + MXGW__SRV_NSPF) {
      *max = MXGW_ACTION_TEMPFAIL;
      return &cfg->spf_action[key - MXGW_SRV_OPT_SPF_ACTION];
    }
    return NULL;
  }
}

static int derived_sess_opt(int key) {
  return key == MXGW_OPT_STARTTLS || key == MXGW_OPT_REQUIRE_TLS ||
         key == MXGW_OPT_AUTH || key == MXGW_OPT_AUTH_PLAINTEXT ||
         key == MXGW_OPT_REQUIRE_AUTH || key == MXGW_OPT_IMPLICIT_TLS;
}

int mxgw_server_config_set_int(mxgw_server_config *cfg, int key,
                               int64_t value) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (key >= 1 && key < MXGW__SRV_NSESS_OPT) {
    mxgw_session_config *sc;
    int rc;
    if (derived_sess_opt(key))
      return cfg_err(cfg, MXGW_E_INVAL,
                     "session option %d is derived from the listener mode",
                     key);
    /* Let the session layer validate the value. */
    rc = mxgw_session_config_new(&sc, &cfg->mem);
    if (rc < 0)
      return rc;
    rc = mxgw_session_config_set_int(sc, key, value);
    mxgw_session_config_free(sc);
    if (rc < 0)
      return cfg_err(cfg, rc, "session option %d: value %lld refused", key,
                     (long long)value);
    cfg->sess_int[key] = value;
    cfg->sess_set[key] = 1;
    return MXGW_OK;
  }
  int64_t min, max, *slot = srv_int_slot(cfg, key, &min, &max);
  if (!slot)
    return cfg_err(cfg, MXGW_E_INVAL, "unknown option %d", key);
  if (value < min || value > max)
    return cfg_err(cfg, MXGW_E_RANGE, "option %d: %lld not in %lld..%lld",
                   key, (long long)value, (long long)min, (long long)max);
  *slot = value;
  return MXGW_OK;
}

int mxgw_server_config_get_int(const mxgw_server_config *cfg, int key,
                               int64_t *out) {
  if (!cfg || !out)
    return MXGW_E_INVAL;
  if (key >= 1 && key < MXGW__SRV_NSESS_OPT) {
    if (cfg->sess_set[key]) {
      *out = cfg->sess_int[key];
      return MXGW_OK;
    }
    mxgw_session_config *sc;
    int rc = mxgw_session_config_new(&sc, NULL);
    if (rc < 0)
      return rc;
    rc = mxgw_session_config_get_int(sc, key, out);
    mxgw_session_config_free(sc);
    return rc;
  }
  const int64_t *slot = srv_int_cslot(cfg, key);
  if (!slot)
    return MXGW_E_INVAL;
  *out = *slot;
  return MXGW_OK;
}

static int set_copy(mxgw_server_config *cfg, char **slot, const char *v) {
  char *c = mxgw__strdup(&cfg->mem, v);
  if (!c)
    return MXGW_E_NOMEM;
  mxgw__free(&cfg->mem, *slot);
  *slot = c;
  return MXGW_OK;
}

static int has_ctl(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 32 || *s == 127)
      return 1;
  return 0;
}

int mxgw_server_config_set_str(mxgw_server_config *cfg, int key,
                               const char *value) {
  if (!cfg)
    return MXGW_E_INVAL;
  if (!value)
    return cfg_err(cfg, MXGW_E_INVAL, "NULL value");
  FROZEN(cfg);
  if (has_ctl(value))
    return cfg_err(cfg, MXGW_E_INVAL, "control characters in value");
  switch (key) {
  case MXGW_OPT_HOSTNAME:
  case MXGW_OPT_GREETING: {
    mxgw_session_config *sc;
    int rc = mxgw_session_config_new(&sc, &cfg->mem);
    if (rc < 0)
      return rc;
    rc = mxgw_session_config_set_str(sc, key, value);
    mxgw_session_config_free(sc);
    if (rc < 0)
      return cfg_err(cfg, rc, "%s: \"%s\" refused",
                     key == MXGW_OPT_HOSTNAME ? "hostname" : "greeting",
                     value);
    return set_copy(cfg, key == MXGW_OPT_HOSTNAME ? &cfg->hostname
                                                  : &cfg->greeting,
                    value);
  }
  case MXGW_SRV_OPT_SPOOL_DIR:
    if (!*value)
      return cfg_err(cfg, MXGW_E_INVAL, "empty spool directory");
    return set_copy(cfg, &cfg->spool, value);
  case MXGW_SRV_OPT_DNS_SERVERS:
    return set_copy(cfg, &cfg->dns_servers, value);
  case MXGW_SRV_OPT_DNS_OPTIONS:
    return set_copy(cfg, &cfg->dns_options, value);
  default:
    return cfg_err(cfg, MXGW_E_INVAL, "unknown string option %d", key);
  }
}

int mxgw_server_config_add_listener(mxgw_server_config *cfg,
                                    const char *addr, int port, int mode) {
  unsigned char buf[16];
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (!addr || strlen(addr) >= sizeof cfg->ls[0].addr ||
      (inet_pton(AF_INET, addr, buf) != 1 &&
       inet_pton(AF_INET6, addr, buf) != 1))
    return cfg_err(cfg, MXGW_E_INVAL, "listener address \"%s\" is not a "
                   "numeric IPv4 or IPv6 address", addr ? addr : "(null)");
  if (port < 0 || port > 65535)
    return cfg_err(cfg, MXGW_E_INVAL, "listener port %d not in 0..65535",
                   port);
  if (mode < MXGW_LISTEN_SMTP || mode > MXGW_LISTEN_SMTPS)
    return cfg_err(cfg, MXGW_E_INVAL, "unknown listener mode %d", mode);
  if (cfg->nls >= MXGW__SRV_MAX_LISTENERS)
    return cfg_err(cfg, MXGW_E_RANGE, "more than %d listeners",
                   MXGW__SRV_MAX_LISTENERS);
  struct mxgw__srv_listener_cfg *l = &cfg->ls[cfg->nls];
  memset(l, 0, sizeof *l);
  snprintf(l->addr, sizeof l->addr, "%s", addr);
  l->port = port;
  l->mode = mode;
  l->tls_policy = -1;
  return cfg->nls++;
}

int mxgw_server_config_listener_set_int(mxgw_server_config *cfg, int idx,
                                        int key, int64_t value) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (idx < 0 || idx >= cfg->nls)
    return cfg_err(cfg, MXGW_E_RANGE, "no listener %d", idx);
  struct mxgw__srv_listener_cfg *l = &cfg->ls[idx];
  switch (key) {
  case MXGW_LISTENER_TLS:
    if (value < MXGW_TLS_POLICY_NONE || value > MXGW_TLS_POLICY_ENCRYPT)
      return cfg_err(cfg, MXGW_E_RANGE, "TLS policy %lld", (long long)value);
    l->tls_policy = (int)value;
    return MXGW_OK;
  case MXGW_LISTENER_PROXY:
  case MXGW_LISTENER_AUTH_PLAINTEXT:
    if (value < 0 || value > 1)
      return cfg_err(cfg, MXGW_E_RANGE, "value %lld not 0 or 1",
                     (long long)value);
    if (key == MXGW_LISTENER_PROXY)
      l->proxy = (int)value;
    else
      l->auth_plaintext = (int)value;
    return MXGW_OK;
  default:
    return cfg_err(cfg, MXGW_E_INVAL, "unknown listener option %d", key);
  }
}

int mxgw_server_config_listener_set_tls(mxgw_server_config *cfg, int idx,
                                        struct mxgw_tls *tls) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (idx < 0 || idx >= cfg->nls)
    return cfg_err(cfg, MXGW_E_RANGE, "no listener %d", idx);
  /* Our own reference, released by mxgw_server_config_free(). */
  mxgw__tls_set(&cfg->ls[idx].tls, tls);
  return MXGW_OK;
}

static int valid_domain(const char *d) {
  size_t n = strlen(d), lab = 0;
  if (n == 0 || n > 253)
    return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    if (c == '.') {
      if (lab == 0 && i != 0)
        return 0;
      lab = 0;
      continue;
    }
    if (!(isalnum(c) || c == '-' || c == '_' || c >= 0x80))
      return 0;
    if (++lab > 63)
      return 0;
  }
  return lab > 0;
}

static int list_add(mxgw_server_config *cfg, char ***list, size_t *n,
                    const char *v) {
  char **nl = mxgw__realloc(&cfg->mem, *list, (*n + 1) * sizeof *nl);
  if (!nl)
    return MXGW_E_NOMEM;
  *list = nl;
  nl[*n] = mxgw__strdup(&cfg->mem, v);
  if (!nl[*n])
    return MXGW_E_NOMEM;
  (*n)++;
  return MXGW_OK;
}

int mxgw_server_config_add_domain(mxgw_server_config *cfg,
                                  const char *domain) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (!domain || !valid_domain(domain))
    return cfg_err(cfg, MXGW_E_INVAL, "\"%s\" is not a domain",
                   domain ? domain : "(null)");
  int rc = list_add(cfg, &cfg->domains, &cfg->ndomains, domain);
  if (rc == 0) {
    char *d = cfg->domains[cfg->ndomains - 1];
    for (; *d; d++)
      *d = (char)mxgw__lower((unsigned char)*d);
  }
  return rc;
}

int mxgw_server_config_add_backend(mxgw_server_config *cfg,
                                   const char *target) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (!target || !*target || has_ctl(target))
    return cfg_err(cfg, MXGW_E_INVAL, "bad backend");
  if (cfg->nbackends >= 16)
    return cfg_err(cfg, MXGW_E_RANGE, "more than 16 backends");
  return list_add(cfg, &cfg->backends, &cfg->nbackends, target);
}

int mxgw_server_config_set_deliver_int(mxgw_server_config *cfg, int key,
                                       int64_t value) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (key < MXGW_DELIVER_OPT_CONCURRENCY ||
      key > MXGW_DELIVER_OPT_DELAY_WARNING)
    return cfg_err(cfg, MXGW_E_INVAL, "unknown delivery option %d", key);
  for (size_t i = 0; i < cfg->ndopt; i++)
    if (cfg->dopt[i].key == key) {
      cfg->dopt[i].value = value;
      return MXGW_OK;
    }
  if (cfg->ndopt >= sizeof cfg->dopt / sizeof cfg->dopt[0])
    return MXGW_E_RANGE;
  cfg->dopt[cfg->ndopt].key = key;
  cfg->dopt[cfg->ndopt].value = value;
  cfg->ndopt++;
  return MXGW_OK;
}

int mxgw_server_config_set_deliver_str(mxgw_server_config *cfg, int key,
                                       const char *value) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (!value || has_ctl(value))
    return cfg_err(cfg, MXGW_E_INVAL, "bad delivery string value");
  if (key != MXGW_DELIVER_OPT_BOUNCE_RCPT &&
      key != MXGW_DELIVER_OPT_TLS_SERVERNAME)
    return cfg_err(cfg, MXGW_E_INVAL, "unknown delivery string option %d",
                   key);
  return set_copy(cfg, &cfg->dstr[key - 100], value);
}

int mxgw_server_config_set_deliver_tls(mxgw_server_config *cfg,
                                       struct mxgw_tls *tls) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  mxgw__tls_set(&cfg->dtls, tls);
  return MXGW_OK;
}

int mxgw_server_config_set_log(mxgw_server_config *cfg, mxgw_server_log_fn fn,
                               void *user) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  cfg->log_fn = fn;
  cfg->log_user = user;
  return MXGW_OK;
}

int mxgw_server_config_set_policy(mxgw_server_config *cfg, int stage,
                                  mxgw_server_policy_fn fn, void *user) {
  if (!cfg)
    return MXGW_E_INVAL;
  FROZEN(cfg);
  if (stage < MXGW_STAGE_CONNECT || stage > MXGW_STAGE_MESSAGE_END)
    return cfg_err(cfg, MXGW_E_INVAL, "unknown stage %d", stage);
  cfg->policy[stage].fn = fn;
  cfg->policy[stage].user = user;
  return MXGW_OK;
}

const char *mxgw_server_config_errmsg(const mxgw_server_config *cfg) {
  return cfg ? cfg->errmsg : "";
}

int mxgw__srv_cfg_validate(mxgw_server_config *cfg, char *err, size_t cap) {
  if (cfg->nls == 0) {
    snprintf(err, cap, "no listener");
    return MXGW_E_INVAL;
  }
  if (!cfg->spool) {
    snprintf(err, cap, "no spool directory (MXGW_SRV_OPT_SPOOL_DIR)");
    return MXGW_E_INVAL;
  }
  if (cfg->deliver && cfg->nbackends == 0) {
    snprintf(err, cap, "no LMTP backend (and delivery is on)");
    return MXGW_E_INVAL;
  }
  if (cfg->proxy_mode && cfg->nbackends == 0) {
    snprintf(err, cap, "proxy mode needs an LMTP backend");
    return MXGW_E_INVAL;
  }
  for (size_t i = 0; cfg->proxy_mode && i < cfg->ndopt; i++)
    if (cfg->dopt[i].key == MXGW_DELIVER_OPT_STARTTLS &&
        cfg->dopt[i].value == 2) {
      snprintf(err, cap, "proxy mode does not use STARTTLS to the backends "
               "(MXGW_DELIVER_OPT_STARTTLS is 2, required)");
      return MXGW_E_INVAL;
    }
  if (cfg->rcpt_verify && cfg->nbackends == 0) {
    snprintf(err, cap, "recipient verification needs an LMTP backend");
    return MXGW_E_INVAL;
  }
  for (int i = 0; i < cfg->nls; i++) {
    const struct mxgw__srv_listener_cfg *l = &cfg->ls[i];
    if (l->tls)
      continue;
    if (l->mode == MXGW_LISTEN_SMTPS) {
      snprintf(err, cap, "listener %d (%s:%d): smtps needs a TLS context", i,
               l->addr, l->port);
      return MXGW_E_INVAL;
    }
    if (l->tls_policy > MXGW_TLS_POLICY_NONE) {
      snprintf(err, cap, "listener %d (%s:%d): TLS policy %s needs a TLS "
               "context", i, l->addr, l->port,
               l->tls_policy == MXGW_TLS_POLICY_MAY ? "may" : "encrypt");
      return MXGW_E_INVAL;
    }
    if (l->mode == MXGW_LISTEN_SUBMISSION && !l->auth_plaintext) {
      snprintf(err, cap, "listener %d (%s:%d): submission needs a TLS "
               "context (AUTH only over TLS)", i, l->addr, l->port);
      return MXGW_E_INVAL;
    }
  }
  return MXGW_OK;
}

/* The domain of a forward path, matched against the accepted domains. */
int mxgw__srv_domain_ok(const mxgw_server_config *cfg, const char *addr,
                        size_t len) {
  if (cfg->ndomains == 0)
    return 1;
  const char *at = NULL;
  for (size_t i = len; i > 0; i--)
    if (addr[i - 1] == '@') {
      at = addr + i - 1;
      break;
    }
  if (!at)
    return mxgw__ieq(addr, len, "postmaster");
  const char *dom = at + 1;
  size_t dlen = len - (size_t)(dom - addr);
  if (dlen && dom[dlen - 1] == '.')
    dlen--;
  for (size_t i = 0; i < cfg->ndomains; i++) {
    const char *d = cfg->domains[i];
    size_t n = strlen(d);
    if (d[0] == '.') {
      /* subdomains: dom ends with ".example.org" */
      if (dlen > n && mxgw__ieq(dom + dlen - n, n, d))
        return 1;
    } else if (mxgw__ieq(dom, dlen, d)) {
      return 1;
    }
  }
  return 0;
}

int mxgw__srv_is_ipv6(const char *addr) { return strchr(addr, ':') != NULL; }

/* ------------------------------------------------------------------------ */
/* Policy requests                                                          */
/* ------------------------------------------------------------------------ */

int mxgw__srv_req_new(const mxgw_mem *mem, int stage, mxgw_server_req **out) {
  mxgw_server_req *r = mxgw__calloc(mem, 1, sizeof *r);
  if (!r)
    return MXGW_E_NOMEM;
  r->mem = mem;
  r->stage = stage;
  r->num[MXGW_REQ_STAGE - 100] = stage;
  r->num[MXGW_REQ_SPF - 100] = -1;
  r->num[MXGW_REQ_SIZE - 100] = -1;
  *out = r;
  return MXGW_OK;
}

int mxgw__srv_req_set(mxgw_server_req *r, int key, const char *s,
                      size_t len) {
  if (key < 1 || key >= 16)
    return MXGW_E_INVAL;
  char *c = mxgw__memdup0(r->mem, s, len);
  if (!c)
    return MXGW_E_NOMEM;
  mxgw__free(r->mem, r->str[key]);
  r->str[key] = c;
  return MXGW_OK;
}

int mxgw__srv_req_add_rcpt(mxgw_server_req *r, const char *s, size_t len) {
  char **nl = mxgw__realloc(r->mem, r->rcpts, (r->nrcpt + 1) * sizeof *nl);
  if (!nl)
    return MXGW_E_NOMEM;
  r->rcpts = nl;
  nl[r->nrcpt] = mxgw__memdup0(r->mem, s, len);
  if (!nl[r->nrcpt])
    return MXGW_E_NOMEM;
  r->nrcpt++;
  return MXGW_OK;
}

void mxgw__srv_req_free(mxgw_server_req *r) {
  if (!r)
    return;
  for (int i = 0; i < 16; i++)
    mxgw__free(r->mem, r->str[i]);
  for (size_t i = 0; i < r->nrcpt; i++)
    mxgw__free(r->mem, r->rcpts[i]);
  mxgw__free(r->mem, r->rcpts);
  mxgw__free(r->mem, r->text);
  mxgw__free(r->mem, r);
}

const char *mxgw_server_req_get_str(const mxgw_server_req *r, int key) {
  if (!r || key < 1 || key >= 16)
    return NULL;
  return r->str[key];
}

int64_t mxgw_server_req_get_int(const mxgw_server_req *r, int key) {
  if (!r || key < 100 || key >= 116)
    return 0;
  return r->num[key - 100];
}

const char *mxgw_server_req_rcpt(const mxgw_server_req *r, size_t idx) {
  if (!r || idx >= r->nrcpt)
    return NULL;
  return r->rcpts[idx];
}

int mxgw__srv_check_reply(int code, const char *enh, const char *text) {
  if (code < 200 || code > 599)
    return MXGW_E_INVAL;
  if (enh) {
    int a, b, c, n = 0;
    if (sscanf(enh, "%d.%d.%d%n", &a, &b, &c, &n) != 3 ||
        (size_t)n != strlen(enh) || a != code / 100 || n > 15)
      return MXGW_E_INVAL;
  }
  if (text) {
    for (const char *p = text; *p; p++) {
      unsigned char ch = (unsigned char)*p;
      if (ch != '\n' && ch != '\t' && (ch < 32 || ch == 127))
        return MXGW_E_INVAL;
    }
  }
  return MXGW_OK;
}

int mxgw_server_req_reply(mxgw_server_req *r, int code, const char *enh,
                          const char *text) {
  if (!r || mxgw__srv_check_reply(code, enh, text) < 0)
    return MXGW_E_INVAL;
  char *t = NULL;
  if (text) {
    t = mxgw__strdup(r->mem, text);
    if (!t)
      return MXGW_E_NOMEM;
  }
  mxgw__free(r->mem, r->text);
  r->text = t;
  r->code = code;
  snprintf(r->enh, sizeof r->enh, "%s", enh ? enh : "");
  return MXGW_OK;
}
