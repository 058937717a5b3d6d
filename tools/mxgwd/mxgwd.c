/* SPDX-License-Identifier: MIT */
/*
 * mxgwd.c: the MX gateway daemon. It reads a JSON configuration
 * (config.c; docs/mxgwd.md), maps it onto the library's server layer
 * (mxgw_server.h: listeners, TLS, limits, SPF, spool, LMTP delivery), adds
 * what is the daemon's own (log outputs, the AUTH users file) and runs it:
 *
 *   mxgwd --config FILE          run in the foreground until SIGTERM
 *   mxgwd --check-config FILE    validate, print a summary, exit 0 or 1
 *
 * Signals: SIGHUP reloads the configuration and the certificates without
 * dropping connections (a configuration with errors is refused and the
 * running one kept; the errors are logged); SIGTERM or SIGINT drains
 * (listeners closed, sessions finish their transaction or get 421, nothing
 * acknowledged is lost) and exits; a second SIGTERM stops at once.
 * Signals are taken by one thread with sigwait() (mxgw_server_reload()
 * must not run in a signal handler); every other thread blocks them.
 *
 * Exit status: 0 clean stop or valid configuration, 1 invalid
 * configuration or a start-up failure, 2 usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* crypt_r */
#endif

#include <crypt.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mxgw/mxgw.h>
#include <mxgw/mxgw_deliver.h>
#include <mxgw/mxgw_server.h>
#include <mxgw/mxgw_session.h>
#include <mxgw/mxgw_tls.h>

#include "config.h"
#include "log.h"

#define PROG "mxgwd"

/* ---- one generation of the configuration -------------------------------- */

/* What a configuration (the first, or one reloaded by SIGHUP) owns beyond
 * the server's copy: the parsed file, TLS contexts, AUTH users.
 * Sessions started under a generation may still call its callbacks after
 * a reload, so generations are kept until exit. */
typedef struct user {
  char *name;
  char *hash;
} user;

typedef struct gen {
  struct gen *next;
  mxgwd_config *cfg;
  mxgw_server_config *scfg;
  mxgw_tls **tls; /* one per listener, or NULL */
  size_t n_tls;
  mxgw_tls *lmtp_tls; /* client context for STARTTLS to the backends */
  user *users;
  size_t n_users;
} gen;

static void gen_free(gen *g) {
  if (!g)
    return;
  for (size_t i = 0; i < g->n_tls; i++)
    mxgw_tls_free(g->tls[i]);
  free(g->tls);
  mxgw_tls_free(g->lmtp_tls);
  for (size_t i = 0; i < g->n_users; i++) {
    free(g->users[i].name);
    free(g->users[i].hash);
  }
  free(g->users);
  mxgw_server_config_free(g->scfg);
  mxgwd_config_free(g->cfg);
  free(g);
}

/* ---- policy callbacks --------------------------------------------------- */

static void add_msg(mxgwd_msgs *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int load_users(gen *g, mxgwd_msgs *errs) {
  const char *file = g->cfg->auth_users_file;
  if (!file)
    return 0;
  FILE *f = fopen(file, "r");
  if (!f) {
    add_msg(errs, "auth.users_file: %s: %s", file, strerror(errno));
    return -1;
  }
  char line[1024];
  size_t cap = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    char *colon = strchr(line, ':');
    if (!line[0] || line[0] == '#' || !colon)
      continue;
    *colon = 0;
    if (g->n_users == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      user *nu = realloc(g->users, ncap * sizeof *nu);
      if (!nu)
        break;
      g->users = nu;
      cap = ncap;
    }
    user *u = &g->users[g->n_users];
    u->name = strdup(line);
    u->hash = strdup(colon + 1);
    if (!u->name || !u->hash) {
      free(u->name);
      free(u->hash);
      break;
    }
    g->n_users++;
  }
  fclose(f);
  return 0;
}

/* AUTH: the users file, crypt(3) hashes. Runs on a policy worker. */
static int on_auth(void *u, mxgw_server_req *req) {
  gen *g = u;
  const char *name = mxgw_server_req_get_str(req, MXGW_REQ_AUTH_USER);
  const char *pw = mxgw_server_req_get_str(req, MXGW_REQ_AUTH_PASSWORD);
  bool ok = false;
  for (size_t i = 0; name && pw && i < g->n_users; i++) {
    if (strcmp(g->users[i].name, name) != 0)
      continue;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (!cd)
      return MXGW_E_NOMEM;
    const char *h = crypt_r(pw, g->users[i].hash, cd);
    size_t hl = strlen(g->users[i].hash);
    if (h && strlen(h) == hl) {
      unsigned char diff = 0;
      for (size_t k = 0; k < hl; k++)
        diff |= (unsigned char)(h[k] ^ g->users[i].hash[k]);
      ok = diff == 0;
    }
    free(cd);
    break;
  }
  if (!ok)
    mxgw_server_req_reply(req, 535, "5.7.8",
                          "Authentication credentials invalid");
  return MXGW_OK;
}

/* ---- configuration -> server -------------------------------------------- */

static void add_msg(mxgwd_msgs *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_msg(mxgwd_msgs *m, const char *fmt, ...) {
  char buf[1500];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char **v = realloc(m->v, (m->n + 1) * sizeof *v);
  if (!v)
    return;
  m->v = v;
  m->v[m->n++] = strdup(buf);
}

/* One setter, with the key path for the error. */
#define SET(call, path)                                                        \
  do {                                                                         \
    int rv_ = (call);                                                          \
    if (rv_ < 0)                                                               \
      add_msg(errs, "%s: %s (%s)", path,                                       \
              *mxgw_server_config_errmsg(s) ? mxgw_server_config_errmsg(s)     \
                                            : mxgw_strerror(rv_),              \
              mxgw_errname(rv_));                                              \
  } while (0)

static mxgw_tls *make_tls(const mxgwd_config *c, const mxgwd_listener *l,
                          size_t i, mxgwd_msgs *errs) {
  /* One context for every pair: tls.cert_file (default), then each of
   * tls.certificates once per SNI name (or as another default pair: RSA and
   * ECDSA are chosen per client). mxgw_tls watches all their files. */
  mxgw_tls *t = NULL;
  char where[64] = "";
  int rv = mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL);
  if (rv == 0)
    rv = mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, c->hostname);
  /* the context's own rate limit would otherwise hold tls_check_interval
   * (MXGW_SRV_OPT_TLS_CHECK_MS) to its default of one minute */
  if (rv == 0)
    rv = mxgw_tls_set_int(t, MXGW_TLS_RELOAD_INTERVAL_MS,
                          c->tls_check_interval_ms);
  if (rv == 0 && l->cert_file)
    rv = mxgw_tls_add_cert_files(t, NULL, l->cert_file, l->key_file);
  for (size_t k = 0; rv == 0 && k < l->n_certs; k++) {
    const mxgwd_cert *ce = &l->certs[k];
    snprintf(where, sizeof where, ".certificates[%zu]", k);
    for (size_t j = 0; rv == 0 && j < (ce->n_server_names ? ce->n_server_names
                                                          : 1);
         j++)
      rv = mxgw_tls_add_cert_files(
          t, ce->n_server_names ? ce->server_names[j] : NULL, ce->cert_file,
          ce->key_file);
  }
  if (rv == 0) {
    where[0] = 0;
    rv = mxgw_tls_reload(t);
  }
  if (rv != 0) {
    add_msg(errs, "listeners[%zu].tls%s: %s", i, where,
            t ? mxgw_tls_errmsg(t) : mxgw_strerror(rv));
    mxgw_tls_free(t);
    return NULL;
  }
  return t;
}

/* Build the server configuration of generation g. 0 or -1 (errs filled). */
static int build(gen *g, mxgwd_msgs *errs) {
  const mxgwd_config *c = g->cfg;
  mxgw_server_config *s = NULL;
  int rv = mxgw_server_config_new(&s, NULL);
  if (rv) {
    add_msg(errs, "mxgw_server_config_new: %s", mxgw_strerror(rv));
    return -1;
  }
  g->scfg = s;
  char p[128];
  SET(mxgw_server_config_set_str(s, MXGW_OPT_HOSTNAME, c->hostname),
      "hostname");
  SET(mxgw_server_config_set_log(s, mxgwd_log_hook, NULL), "logging");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_DRAIN_TIMEOUT_MS,
                                 c->shutdown_timeout_ms),
      "shutdown_timeout");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_LOG_PROTOCOL,
                                 c->logging.log_commands),
      "logging.log_commands");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_POLICY_WORKERS,
                                 c->policy_workers),
      "policy_workers");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_TLS_CHECK_MS,
                                 c->tls_check_interval_ms),
      "tls_check_interval");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_PROXY_TIMEOUT_MS,
                                 c->limits.proxy_timeout_ms),
      "limits.proxy_timeout");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_AUTH_RELAY, c->auth_relay),
      "auth.relay");

  g->tls = calloc(c->n_listeners + 1, sizeof *g->tls);
  g->n_tls = c->n_listeners;
  bool any_auth = false;
  for (size_t i = 0; i < c->n_listeners; i++) {
    const mxgwd_listener *l = &c->listeners[i];
    static const int modes[] = {MXGW_LISTEN_SMTP, MXGW_LISTEN_SUBMISSION,
                                MXGW_LISTEN_SMTPS};
    snprintf(p, sizeof p, "listeners[%zu]", i);
    int idx = mxgw_server_config_add_listener(s, l->address, l->port,
                                              modes[l->mode]);
    if (idx < 0) {
      SET(idx, p);
      continue;
    }
    any_auth |= l->auth;
    if (l->mode != MXGWD_MODE_SMTPS) {
      static const int pol[] = {MXGW_TLS_POLICY_NONE, MXGW_TLS_POLICY_MAY,
                                MXGW_TLS_POLICY_ENCRYPT};
      snprintf(p, sizeof p, "listeners[%zu].tls.policy", i);
      SET(mxgw_server_config_listener_set_int(s, idx, MXGW_LISTENER_TLS,
                                              pol[l->tls_policy]),
          p);
    }
    if (l->proxy_protocol) {
      snprintf(p, sizeof p, "listeners[%zu].proxy_protocol", i);
      SET(mxgw_server_config_listener_set_int(s, idx, MXGW_LISTENER_PROXY, 1),
          p);
    }
    if (l->tls_policy != MXGWD_TLS_NONE && (l->cert_file || l->n_certs)) {
      g->tls[i] = make_tls(c, l, i, errs);
      if (g->tls[i]) {
        snprintf(p, sizeof p, "listeners[%zu].tls", i);
        SET(mxgw_server_config_listener_set_tls(s, idx, g->tls[i]), p);
      }
    }
  }

  for (size_t i = 0; i < c->n_domains; i++) {
    const char *d = c->domains[i];
    snprintf(p, sizeof p, "domains[%zu]", i);
    /* "*.example.org" is the library's ".example.org" */
    SET(mxgw_server_config_add_domain(s, d[0] == '*' ? d + 1 : d), p);
  }

  /* SPF */
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_SPF, c->spf.enabled),
      "spf.enabled");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_SPF_TIMEOUT_MS,
                                 c->spf.timeout_ms),
      "spf.timeout");
  for (int i = 0; i < MXGWD_SPF_RESULTS; i++) {
    static const int act[] = {MXGW_ACTION_ACCEPT, MXGW_ACTION_REJECT,
                              MXGW_ACTION_TEMPFAIL};
    snprintf(p, sizeof p, "spf.policy.%s", mxgwd_spf_result_names[i]);
    SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_SPF_ACTION + i,
                                   act[c->spf.action[i]]),
        p);
  }
  if (c->spf.n_dns_servers) {
    char list[2048] = "";
    for (size_t i = 0; i < c->spf.n_dns_servers; i++) {
      size_t l = strlen(list);
      snprintf(list + l, sizeof list - l, "%s%s", i ? "," : "",
               c->spf.dns_servers[i]);
    }
    SET(mxgw_server_config_set_str(s, MXGW_SRV_OPT_DNS_SERVERS, list),
        "spf.dns_servers");
  }

  /* limits */
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_MAX_CONNECTIONS,
                                 c->limits.max_connections),
      "limits.max_connections");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_MAX_CONN_PER_IP,
                                 c->limits.max_connections_per_ip),
      "limits.max_connections_per_ip");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_CONN_RATE_PER_IP,
                                 c->limits.connection_rate_per_ip),
      "limits.connection_rate_per_ip");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_GREETING_DELAY_MS,
                                 c->limits.greeting_delay_ms),
      "limits.greeting_delay");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_MAX_ERRORS, c->limits.max_errors),
      "limits.max_errors");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_MAX_JUNK_COMMANDS,
                                 c->limits.max_junk_commands),
      "limits.max_junk_commands");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_MAX_UNKNOWN_COMMANDS,
                                 c->limits.max_unknown_commands),
      "limits.max_unknown_commands");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_MAX_MESSAGE_SIZE,
                                 c->limits.max_message_size),
      "limits.max_message_size");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_MAX_RECIPIENTS,
                                 c->limits.max_recipients),
      "limits.max_recipients");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_MAX_MESSAGES,
                                 c->limits.max_messages_per_connection),
      "limits.max_messages_per_connection");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_COMMAND_TIMEOUT_MS,
                                 c->limits.command_timeout_ms),
      "limits.command_timeout");
  SET(mxgw_server_config_set_int(s, MXGW_OPT_DATA_TIMEOUT_MS,
                                 c->limits.data_timeout_ms),
      "limits.data_timeout");

  /* spool and delivery */
  SET(mxgw_server_config_set_str(s, MXGW_SRV_OPT_SPOOL_DIR,
                                 c->spool.directory),
      "spool.directory");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_QUEUE_SYNC, c->spool.sync),
      "spool.sync");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_QUEUE_WORKERS,
                                 c->spool.commit_workers),
      "spool.commit_workers");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_QUEUE_JOURNAL,
                                 c->spool.journal),
      "spool.journal");
  SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_QUEUE_JOURNAL_MAX_BODY,
                                 c->spool.journal_max_body),
      "spool.journal_max_body");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_LIFETIME,
                                         c->spool.max_lifetime_ms / 1000),
      "spool.max_lifetime");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_DELAY_WARNING,
                                         c->spool.delay_warning_ms / 1000),
      "spool.delay_warning");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_BACKOFF_INITIAL,
                                         c->spool.backoff_initial_ms / 1000),
      "spool.backoff_initial");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_BACKOFF_FACTOR,
                                         c->spool.backoff_factor),
      "spool.backoff_factor");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_BACKOFF_MAX,
                                         c->spool.backoff_max_ms / 1000),
      "spool.backoff_max");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_BOUNCE,
                                         c->spool.bounce == MXGWD_BOUNCE_DSN
                                             ? MXGW_BOUNCE_DSN
                                             : MXGW_BOUNCE_KEEP),
      "spool.bounce");
  for (size_t i = 0; i < c->lmtp.n_backends; i++) {
    snprintf(p, sizeof p, "lmtp.backends[%zu]", i);
    SET(mxgw_server_config_add_backend(s, c->lmtp.backends[i]), p);
  }
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_CONCURRENCY,
                                         c->lmtp.concurrency),
      "lmtp.concurrency");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_XCLIENT,
                                         c->lmtp.xclient),
      "lmtp.xclient");
  SET(mxgw_server_config_set_deliver_int(s,
                                         MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS,
                                         c->lmtp.connect_timeout_ms),
      "lmtp.connect_timeout");
  SET(mxgw_server_config_set_deliver_int(s,
                                         MXGW_DELIVER_OPT_COMMAND_TIMEOUT_MS,
                                         c->lmtp.command_timeout_ms),
      "lmtp.command_timeout");
  SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_DATA_TIMEOUT_MS,
                                         c->lmtp.data_timeout_ms),
      "lmtp.data_timeout");
  if (c->spool.bounce_recipient)
    SET(mxgw_server_config_set_deliver_str(s, MXGW_DELIVER_OPT_BOUNCE_RCPT,
                                           c->spool.bounce_recipient),
        "spool.bounce_recipient");
  if (c->lmtp.starttls != MXGWD_LMTP_TLS_NEVER) {
    /* a client context: the system trust store or tls_ca_file */
    mxgw_tls *t = NULL;
    int trv = mxgw_tls_new(&t, MXGW_TLS_CLIENT, NULL);
    if (trv == 0)
      trv = mxgw_tls_set_int(t, MXGW_TLS_VERIFY_PEER, c->lmtp.tls_verify);
    if (trv == 0 && c->lmtp.tls_ca_file)
      trv = mxgw_tls_set_str(t, MXGW_TLS_CA_FILE, c->lmtp.tls_ca_file);
    if (trv == 0 && c->lmtp.tls_servername)
      trv = mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, c->lmtp.tls_servername);
    if (trv == 0)
      trv = mxgw_tls_reload(t);
    if (trv != 0) {
      add_msg(errs, "lmtp.tls_ca_file: %s",
              t && *mxgw_tls_errmsg(t) ? mxgw_tls_errmsg(t)
                                       : mxgw_strerror(trv));
      mxgw_tls_free(t);
    } else {
      g->lmtp_tls = t;
      SET(mxgw_server_config_set_deliver_tls(s, t), "lmtp.starttls");
      SET(mxgw_server_config_set_deliver_int(s, MXGW_DELIVER_OPT_STARTTLS,
                                             c->lmtp.starttls),
          "lmtp.starttls");
      if (c->lmtp.tls_servername)
        SET(mxgw_server_config_set_deliver_str(
                s, MXGW_DELIVER_OPT_TLS_SERVERNAME, c->lmtp.tls_servername),
            "lmtp.tls_servername");
    }
  }

  /* the daemon's own policies */
  if (any_auth) {
    load_users(g, errs);
    SET(mxgw_server_config_set_policy(s, MXGW_STAGE_AUTH, on_auth, g),
        "auth");
  }
  if (c->recipients.mode == MXGWD_RV_PROXY)
    SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_PROXY_MODE, 1),
        "recipient_validation.mode");
  if (c->recipients.mode == MXGWD_RV_LMTP_PROBE) {
    SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_RCPT_VERIFY, 1),
        "recipient_validation.mode");
    SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_VERIFY_TTL,
                                   c->recipients.cache_ttl_ms / 1000),
        "recipient_validation.cache_ttl");
    SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_VERIFY_NEG_TTL,
                                   c->recipients.negative_cache_ttl_ms / 1000),
        "recipient_validation.negative_cache_ttl");
    SET(mxgw_server_config_set_int(s, MXGW_SRV_OPT_VERIFY_TIMEOUT_MS,
                                   c->recipients.timeout_ms),
        "recipient_validation.timeout");
  }
  return errs->n ? -1 : 0;
}

/* Load, validate and build one generation. NULL with errs filled. */
static gen *load_gen(const char *file, mxgwd_msgs *errs, mxgwd_msgs *warns) {
  gen *g = calloc(1, sizeof *g);
  if (!g) {
    add_msg(errs, "out of memory");
    return NULL;
  }
  if (mxgwd_config_load(file, MXGWD_CHECK_FILES, &g->cfg, errs, warns) != 0 ||
      build(g, errs) != 0) {
    gen_free(g);
    return NULL;
  }
  return g;
}

/* ---- signals ------------------------------------------------------------ */

typedef struct daemon_state {
  const char *file;
  mxgw_server *srv;
  gen *gens; /* newest first */
  sigset_t sigs;
  int terms;
} daemon_state;

static void reload(daemon_state *d) {
  mxgwd_logf(MXGWD_INFO, "reload: reading %s", d->file);
  mxgwd_msgs errs = {0}, warns = {0};
  gen *g = load_gen(d->file, &errs, &warns);
  for (size_t i = 0; i < warns.n; i++)
    mxgwd_logf(MXGWD_WARNING, "%s: %s", d->file, warns.v[i]);
  if (!g) {
    for (size_t i = 0; i < errs.n; i++)
      mxgwd_logf(MXGWD_ERROR, "%s: %s", d->file, errs.v[i]);
    mxgwd_logf(MXGWD_ERROR,
               "reload: %zu error%s in %s: keeping the running configuration",
               errs.n, errs.n == 1 ? "" : "s", d->file);
    mxgwd_msgs_free(&errs);
    mxgwd_msgs_free(&warns);
    return;
  }
  mxgwd_msgs_free(&errs);
  mxgwd_msgs_free(&warns);
  int rv = mxgw_server_reload(d->srv, g->scfg);
  if (rv != MXGW_OK && rv != MXGW_E_TLS) {
    const char *why = *mxgw_server_errmsg(d->srv) ? mxgw_server_errmsg(d->srv)
                                                  : mxgw_strerror(rv);
    if (strncmp(why, "reload: ", 8) == 0)
      why += 8;
    mxgwd_logf(MXGWD_ERROR, "reload: %s: keeping the running configuration",
               why);
    gen_free(g);
    return;
  }
  mxgwd_log_configure(g->cfg); /* reopens log files (rotation) */
  g->next = d->gens;
  d->gens = g;
  for (size_t i = 0; i < g->n_tls; i++)
    for (size_t k = 0; g->tls[i] && k < mxgw_tls_cert_count(g->tls[i]); k++) {
      const char *fp = "", *na = "", *file = "", *sni = "";
      size_t fl = 0, nl = 0, il = 0, sl = 0;
      mxgw_tls_cert_str(g->tls[i], k, MXGW_CERT_FINGERPRINT, &fp, &fl);
      mxgw_tls_cert_str(g->tls[i], k, MXGW_CERT_NOT_AFTER, &na, &nl);
      mxgw_tls_cert_str(g->tls[i], k, MXGW_CERT_FILE, &file, &il);
      mxgw_tls_cert_str(g->tls[i], k, MXGW_CERT_SNI_NAME, &sni, &sl);
      mxgwd_logf(MXGWD_INFO,
                 "reload: listeners[%zu] certificate %.*s%s%.*s%s (sha256 "
                 "%.*s, valid until %.*s)",
                 i, (int)il, file, sl ? " for " : "", (int)sl, sni,
                 sl ? "" : " (default)", (int)fl, fp, (int)nl, na);
    }
  mxgwd_logf(MXGWD_INFO, "reload: done%s", rv == MXGW_E_TLS
                                               ? " (a certificate failed to "
                                                 "reload: see above)"
                                               : "");
}

static void *signal_thread(void *arg) {
  daemon_state *d = arg;
  for (;;) {
    int sig = 0;
    if (sigwait(&d->sigs, &sig) != 0)
      continue;
    if (sig == SIGHUP) {
      reload(d);
    } else if (sig == SIGTERM || sig == SIGINT) {
      if (d->terms++ == 0) {
        mxgwd_logf(MXGWD_INFO,
                   "%s: draining: no new connections, sessions finish or "
                   "get 421 within %llds",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   (long long)(d->gens->cfg->shutdown_timeout_ms / 1000));
        mxgw_server_drain(d->srv, -1);
      } else {
        mxgwd_logf(MXGWD_INFO, "%s again: stopping now",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT");
        mxgw_server_stop(d->srv);
      }
    } else if (sig == SIGUSR2) {
      return NULL; /* main: the server has stopped */
    }
  }
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f, "usage: %s --config FILE        run the gateway\n"
             "       %s --check-config FILE  validate FILE and exit\n"
             "       %s --version\n"
             "See docs/mxgwd.md for the configuration keys.\n",
          PROG, PROG, PROG);
}

static void print_msgs(const char *file, const mxgwd_msgs *m,
                       const char *prefix) {
  for (size_t i = 0; i < m->n; i++)
    fprintf(stderr, "%s: %s%s\n", file, prefix, m->v[i]);
}

static int check_config(const char *file) {
  mxgwd_msgs errs = {0}, warns = {0};
  gen *g = load_gen(file, &errs, &warns);
  if (g) {
    /* mxgw_server_new validates the combination without opening anything */
    mxgw_server *srv = NULL;
    int rv = mxgw_server_new(&srv, g->scfg, NULL);
    if (rv != MXGW_OK)
      add_msg(&errs, "%s", srv && *mxgw_server_errmsg(srv)
                               ? mxgw_server_errmsg(srv)
                               : mxgw_strerror(rv));
    mxgw_server_free(srv);
  }
  print_msgs(file, &warns, "warning: ");
  int status = 0;
  if (errs.n) {
    print_msgs(file, &errs, "");
    fprintf(stderr, "%s: %zu error%s\n", file, errs.n, errs.n == 1 ? "" : "s");
    status = 1;
  } else {
    mxgwd_config_summary(g->cfg, stdout);
    printf("%s: configuration OK\n", file);
  }
  gen_free(g);
  mxgwd_msgs_free(&errs);
  mxgwd_msgs_free(&warns);
  return status;
}

static int run(const char *file) {
  mxgwd_log_init(NULL);
  mxgwd_msgs errs = {0}, warns = {0};
  gen *g = load_gen(file, &errs, &warns);
  if (!g) {
    print_msgs(file, &warns, "warning: ");
    print_msgs(file, &errs, "");
    fprintf(stderr, "%s: %zu error%s; not starting\n", file, errs.n,
            errs.n == 1 ? "" : "s");
    mxgwd_msgs_free(&errs);
    mxgwd_msgs_free(&warns);
    return 1;
  }
  mxgwd_msgs_free(&errs);
  if (mxgwd_log_configure(g->cfg) != 0) {
    mxgwd_msgs_free(&warns);
    gen_free(g);
    return 1;
  }
  /* warnings (a self-signed certificate, ...) go to the configured logs */
  for (size_t i = 0; i < warns.n; i++)
    mxgwd_logf(MXGWD_WARNING, "%s: %s", file, warns.v[i]);
  mxgwd_msgs_free(&warns);

  /* Signals: blocked here, before any thread exists, so every thread the
   * server starts inherits the mask; one thread takes them. */
  daemon_state d = {.file = file, .gens = g};
  sigemptyset(&d.sigs);
  sigaddset(&d.sigs, SIGHUP);
  sigaddset(&d.sigs, SIGTERM);
  sigaddset(&d.sigs, SIGINT);
  sigaddset(&d.sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &d.sigs, NULL);
  signal(SIGPIPE, SIG_IGN);

  int rv = mxgw_server_new(&d.srv, g->scfg, NULL);
  if (rv == MXGW_OK)
    rv = mxgw_server_start(d.srv);
  if (rv != MXGW_OK) {
    mxgwd_logf(MXGWD_ERROR, "cannot start: %s",
               d.srv && *mxgw_server_errmsg(d.srv) ? mxgw_server_errmsg(d.srv)
                                                   : mxgw_strerror(rv));
    mxgw_server_free(d.srv);
    gen_free(g);
    mxgwd_log_close();
    return 1;
  }
  mxgwd_logf(MXGWD_INFO, "mxgwd %s started: hostname %s, spool %s, %zu LMTP "
                         "backend%s (first %s)",
             mxgw_version(NULL), g->cfg->hostname, g->cfg->spool.directory,
             g->cfg->lmtp.n_backends, g->cfg->lmtp.n_backends == 1 ? "" : "s",
             g->cfg->lmtp.backends[0]);

  pthread_t sigth;
  if (pthread_create(&sigth, NULL, signal_thread, &d) != 0) {
    mxgwd_logf(MXGWD_ERROR, "cannot start the signal thread");
    mxgw_server_free(d.srv);
    gen_free(g);
    return 1;
  }
  rv = mxgw_server_run(d.srv, (int)g->cfg->workers);
  pthread_kill(sigth, SIGUSR2);
  pthread_join(sigth, NULL);
  int status = 0;
  if (rv != MXGW_OK) {
    mxgwd_logf(MXGWD_ERROR, "stopped with an error: %s",
               *mxgw_server_errmsg(d.srv) ? mxgw_server_errmsg(d.srv)
                                          : mxgw_strerror(rv));
    status = 1;
  }
  int64_t msgs = 0, conns = 0;
  mxgw_server_get_int(d.srv, MXGW_SRV_STAT_MESSAGES, &msgs);
  mxgw_server_get_int(d.srv, MXGW_SRV_STAT_CONNECTIONS, &conns);
  mxgw_server_free(d.srv);
  mxgwd_logf(MXGWD_INFO, "stopped: %lld connections, %lld messages queued",
             (long long)conns, (long long)msgs);
  while (d.gens) {
    gen *n = d.gens->next;
    gen_free(d.gens);
    d.gens = n;
  }
  mxgwd_log_close();
  return status;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'},
      {"check-config", required_argument, NULL, 'C'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *config = NULL, *check = NULL;
  int o;
  while ((o = getopt_long(argc, argv, "c:C:Vh", opts, NULL)) != -1) {
    switch (o) {
    case 'c': config = optarg; break;
    case 'C': check = optarg; break;
    case 'V': printf("%s %s\n", PROG, mxgw_version(NULL)); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc || (!config == !check)) {
    usage(stderr);
    return 2;
  }
  return check ? check_config(check) : run(config);
}
