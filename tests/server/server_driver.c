/* SPDX-License-Identifier: MIT */
/*
 * server_driver.c: a small command-line front end to mxgw_server for the
 * Python tests in this directory (not installed). Usage:
 *
 *   server_driver --spool DIR [--backend TARGET]... [--no-deliver]
 *     --listen ADDR:PORT:MODE[:tls=none|may|encrypt][:proxy][:plainauth]...
 *     [--cert FILE --key FILE] [--hostname NAME] [--domain D]...
 *     [--max-conn N] [--max-per-ip N] [--rate N] [--greet-delay MS]
 *     [--spf] [--dns IP:PORT] [--spf-action RESULT=accept|reject|tempfail]
 *     [--sess KEY=VALUE]... [--srv KEY=VALUE]... [--deliver KEY=VALUE]...
 *     [--verify] [--no-sync]
 *     [--workers N] [--policy-timeout MS] [--policy-sleep MS]
 *     [--reject-rcpt ADDR] [--reject-from ADDR] [--reject-connect ADDR]
 *     [--reject-end] [--auth USER:PASS] [--loops N | --embedded]
 *     [--drain-ms MS] [--log-protocol]
 *
 * MODE is smtp, submission or smtps. Once started it prints "port IDX PORT"
 * for each listener and "ready" on stdout. Log lines go to stderr as
 * "log LEVEL LINE". SIGTERM drains (--drain-ms, default 5000), SIGINT stops,
 * SIGHUP reloads (a configuration rebuilt from the same arguments, plus the
 * certificates), SIGUSR1 prints the counters ("stat NAME VALUE").
 *
 * Policy callbacks (on the worker pool): --policy-sleep makes every
 * callback sleep first (a blocking callback); --reject-* reject the named
 * client address, sender or recipient with 550 5.7.1; --reject-end rejects
 * every message at the end with 554 5.7.1; --auth accepts only USER:PASS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <mxgw/mxgw.h>

static int g_argc;
static char **g_argv;
static int policy_sleep_ms;
static const char *reject_rcpt, *reject_from, *reject_connect, *auth_pair;
static int reject_end;
static mxgw_tls *g_tls;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "server_driver: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void log_cb(void *user, int level, const char *line) {
  (void)user;
  pthread_mutex_lock(&out_mu);
  fprintf(stderr, "log %d %s\n", level, line);
  fflush(stderr);
  pthread_mutex_unlock(&out_mu);
}

static void nap(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int policy_cb(void *user, mxgw_server_req *req) {
  (void)user;
  if (policy_sleep_ms)
    nap(policy_sleep_ms);
  int stage = (int)mxgw_server_req_get_int(req, MXGW_REQ_STAGE);
  const char *v;
  switch (stage) {
  case MXGW_STAGE_CONNECT:
    v = mxgw_server_req_get_str(req, MXGW_REQ_CLIENT_ADDR);
    if (reject_connect && v && strcmp(v, reject_connect) == 0)
      return mxgw_server_req_reply(req, 554, "5.7.1", "Go away");
    break;
  case MXGW_STAGE_MAIL:
    v = mxgw_server_req_get_str(req, MXGW_REQ_MAIL_FROM);
    if (reject_from && v && strcmp(v, reject_from) == 0)
      return mxgw_server_req_reply(req, 550, "5.7.1", "Sender refused");
    break;
  case MXGW_STAGE_RCPT:
    v = mxgw_server_req_get_str(req, MXGW_REQ_RCPT);
    if (reject_rcpt && v && strcmp(v, reject_rcpt) == 0)
      return mxgw_server_req_reply(req, 550, "5.7.1", "Recipient refused");
    if (v && strcmp(v, "fail@example.test") == 0)
      return -1; /* a failing callback */
    break;
  case MXGW_STAGE_MESSAGE_END:
    if (reject_end)
      return mxgw_server_req_reply(req, 554, "5.7.1", "Message refused");
    break;
  case MXGW_STAGE_AUTH: {
    const char *u = mxgw_server_req_get_str(req, MXGW_REQ_AUTH_USER);
    const char *p = mxgw_server_req_get_str(req, MXGW_REQ_AUTH_PASSWORD);
    char pair[600];
    snprintf(pair, sizeof pair, "%s:%s", u ? u : "", p ? p : "");
    if (!auth_pair || strcmp(pair, auth_pair) != 0)
      return mxgw_server_req_reply(req, 535, "5.7.8",
                                   "Authentication failed");
    break;
  }
  default:
    break;
  }
  return MXGW_OK;
}

static void check(int rc, mxgw_server_config *cfg, const char *what) {
  if (rc < 0)
    die("%s: %s", what, cfg ? mxgw_server_config_errmsg(cfg)
                            : mxgw_strerror(rc));
}

static int parse_action(const char *s) {
  if (strcmp(s, "accept") == 0)
    return MXGW_ACTION_ACCEPT;
  if (strcmp(s, "reject") == 0)
    return MXGW_ACTION_REJECT;
  if (strcmp(s, "tempfail") == 0)
    return MXGW_ACTION_TEMPFAIL;
  die("bad action %s%s", s, "");
  return 0;
}

static int spf_result_num(const char *s) {
  for (int i = 0; i <= 6; i++)
    if (strcmp(mxgw_spf_result_name(i), s) == 0)
      return i;
  die("bad SPF result %s%s", s, "");
  return 0;
}

static const char *cert_file, *key_file;

/* Build a configuration from the command line (again on SIGHUP). */
static mxgw_server_config *build(int *loops, int *embedded, int64_t *drain) {
  mxgw_server_config *cfg;
  int rc = mxgw_server_config_new(&cfg, NULL);
  check(rc, NULL, "config");
  check(mxgw_server_config_set_log(cfg, log_cb, NULL), cfg, "log");
  for (int i = 1; i < g_argc; i++) {
    const char *o = g_argv[i];
    const char *a = i + 1 < g_argc ? g_argv[i + 1] : NULL;
#define ARG()                                                                  \
  do {                                                                         \
    if (!a)                                                                    \
      die("%s needs an argument%s", o, "");                                    \
    i++;                                                                       \
  } while (0)
    if (strcmp(o, "--spool") == 0) {
      ARG();
      check(mxgw_server_config_set_str(cfg, MXGW_SRV_OPT_SPOOL_DIR, a), cfg,
            o);
    } else if (strcmp(o, "--backend") == 0) {
      ARG();
      check(mxgw_server_config_add_backend(cfg, a), cfg, o);
    } else if (strcmp(o, "--no-deliver") == 0) {
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_DELIVER, 0), cfg, o);
    } else if (strcmp(o, "--hostname") == 0) {
      ARG();
      check(mxgw_server_config_set_str(cfg, MXGW_OPT_HOSTNAME, a), cfg, o);
    } else if (strcmp(o, "--domain") == 0) {
      ARG();
      check(mxgw_server_config_add_domain(cfg, a), cfg, o);
    } else if (strcmp(o, "--cert") == 0) {
      ARG();
      cert_file = a;
    } else if (strcmp(o, "--key") == 0) {
      ARG();
      key_file = a;
    } else if (strcmp(o, "--listen") == 0) {
      ARG();
      char buf[256], *save = NULL;
      snprintf(buf, sizeof buf, "%s", a);
      /* ADDR may be IPv6 in brackets */
      char *addr = buf, *rest;
      if (buf[0] == '[') {
        addr = buf + 1;
        rest = strchr(addr, ']');
        if (!rest)
          die("bad --listen %s%s", a, "");
        *rest++ = '\0';
        rest++; /* ':' */
      } else {
        rest = strchr(buf, ':');
        if (!rest)
          die("bad --listen %s%s", a, "");
        *rest++ = '\0';
      }
      char *port = strtok_r(rest, ":", &save);
      char *mode = strtok_r(NULL, ":", &save);
      int m = !mode || strcmp(mode, "smtp") == 0 ? MXGW_LISTEN_SMTP
              : strcmp(mode, "submission") == 0 ? MXGW_LISTEN_SUBMISSION
              : strcmp(mode, "smtps") == 0      ? MXGW_LISTEN_SMTPS
                                                : -1;
      int idx = mxgw_server_config_add_listener(cfg, addr,
                                                port ? atoi(port) : 0, m);
      check(idx, cfg, "--listen");
      if (g_tls)
        check(mxgw_server_config_listener_set_tls(cfg, idx, g_tls), cfg,
              "tls");
      for (char *t; (t = strtok_r(NULL, ":", &save));) {
        if (strncmp(t, "tls=", 4) == 0)
          check(mxgw_server_config_listener_set_int(
                    cfg, idx, MXGW_LISTENER_TLS,
                    strcmp(t + 4, "none") == 0  ? MXGW_TLS_POLICY_NONE
                    : strcmp(t + 4, "may") == 0 ? MXGW_TLS_POLICY_MAY
                                                : MXGW_TLS_POLICY_ENCRYPT),
                cfg, t);
        else if (strcmp(t, "proxy") == 0)
          check(mxgw_server_config_listener_set_int(cfg, idx,
                                                    MXGW_LISTENER_PROXY, 1),
                cfg, t);
        else if (strcmp(t, "plainauth") == 0)
          check(mxgw_server_config_listener_set_int(
                    cfg, idx, MXGW_LISTENER_AUTH_PLAINTEXT, 1),
                cfg, t);
        else
          die("bad listener flag %s%s", t, "");
      }
    } else if (strcmp(o, "--max-conn") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_MAX_CONNECTIONS,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--max-per-ip") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_MAX_CONN_PER_IP,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--rate") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_CONN_RATE_PER_IP,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--greet-delay") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_GREETING_DELAY_MS,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--spf") == 0) {
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_SPF, 1), cfg, o);
    } else if (strcmp(o, "--dns") == 0) {
      ARG();
      check(mxgw_server_config_set_str(cfg, MXGW_SRV_OPT_DNS_SERVERS, a), cfg,
            o);
    } else if (strcmp(o, "--dns-options") == 0) {
      ARG();
      check(mxgw_server_config_set_str(cfg, MXGW_SRV_OPT_DNS_OPTIONS, a), cfg,
            o);
    } else if (strcmp(o, "--spf-timeout") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_SPF_TIMEOUT_MS,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--spf-action") == 0) {
      ARG();
      char buf[64];
      snprintf(buf, sizeof buf, "%s", a);
      char *eq = strchr(buf, '=');
      if (!eq)
        die("bad --spf-action %s%s", a, "");
      *eq = '\0';
      check(mxgw_server_config_set_int(
                cfg, MXGW_SRV_OPT_SPF_ACTION + spf_result_num(buf),
                parse_action(eq + 1)), cfg, o);
    } else if (strcmp(o, "--verify") == 0) {
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_RCPT_VERIFY, 1), cfg,
            o);
    } else if (strcmp(o, "--sess") == 0 || strcmp(o, "--deliver") == 0 ||
               strcmp(o, "--srv") == 0) {
      ARG();
      char buf[64];
      snprintf(buf, sizeof buf, "%s", a);
      char *eq = strchr(buf, '=');
      if (!eq)
        die("bad %s %s", o, a);
      *eq = '\0';
      if (o[2] == 's') /* --sess (mxgw_opt) and --srv (mxgw_server_opt) */
        check(mxgw_server_config_set_int(cfg, atoi(buf), atoll(eq + 1)), cfg,
              o);
      else
        check(mxgw_server_config_set_deliver_int(cfg, atoi(buf),
                                                 atoll(eq + 1)), cfg, o);
    } else if (strcmp(o, "--no-sync") == 0) {
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_QUEUE_SYNC, 0), cfg,
            o);
    } else if (strcmp(o, "--workers") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_POLICY_WORKERS,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--policy-timeout") == 0) {
      ARG();
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_POLICY_TIMEOUT_MS,
                                       atoll(a)), cfg, o);
    } else if (strcmp(o, "--policy-sleep") == 0) {
      ARG();
      policy_sleep_ms = atoi(a);
    } else if (strcmp(o, "--reject-rcpt") == 0) {
      ARG();
      reject_rcpt = a;
    } else if (strcmp(o, "--reject-from") == 0) {
      ARG();
      reject_from = a;
    } else if (strcmp(o, "--reject-connect") == 0) {
      ARG();
      reject_connect = a;
    } else if (strcmp(o, "--reject-end") == 0) {
      reject_end = 1;
    } else if (strcmp(o, "--auth") == 0) {
      ARG();
      auth_pair = a;
    } else if (strcmp(o, "--policy") == 0) {
      ARG(); /* comma-separated stages: connect,helo,auth,mail,rcpt,end */
      char buf[128], *save = NULL;
      snprintf(buf, sizeof buf, "%s", a);
      for (char *t = strtok_r(buf, ",", &save); t;
           t = strtok_r(NULL, ",", &save)) {
        int st = strcmp(t, "connect") == 0 ? MXGW_STAGE_CONNECT
                 : strcmp(t, "helo") == 0  ? MXGW_STAGE_HELO
                 : strcmp(t, "auth") == 0  ? MXGW_STAGE_AUTH
                 : strcmp(t, "mail") == 0  ? MXGW_STAGE_MAIL
                 : strcmp(t, "rcpt") == 0  ? MXGW_STAGE_RCPT
                 : strcmp(t, "end") == 0   ? MXGW_STAGE_MESSAGE_END
                                           : -1;
        check(mxgw_server_config_set_policy(cfg, st, policy_cb, NULL), cfg,
              t);
      }
    } else if (strcmp(o, "--loops") == 0) {
      ARG();
      *loops = atoi(a);
    } else if (strcmp(o, "--embedded") == 0) {
      *embedded = 1;
    } else if (strcmp(o, "--drain-ms") == 0) {
      ARG();
      *drain = atoll(a);
    } else if (strcmp(o, "--log-protocol") == 0) {
      check(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_LOG_PROTOCOL, 1),
            cfg, o);
    } else {
      die("unknown option %s%s", o, "");
    }
  }
  return cfg;
}

static void load_tls(void) {
  int a = 0;
  for (int i = 1; i < g_argc; i++) {
    if (strcmp(g_argv[i], "--cert") == 0 && i + 1 < g_argc)
      cert_file = g_argv[i + 1], a++;
    if (strcmp(g_argv[i], "--key") == 0 && i + 1 < g_argc)
      key_file = g_argv[i + 1], a++;
  }
  if (!a)
    return;
  int rc = mxgw_tls_new(&g_tls, MXGW_TLS_SERVER, NULL);
  if (rc == 0)
    rc = mxgw_tls_set_int(g_tls, MXGW_TLS_STRICT_KEY_MODE, 0);
  if (rc == 0)
    rc = mxgw_tls_add_cert_files(g_tls, NULL, cert_file, key_file);
  if (rc == 0)
    rc = mxgw_tls_reload(g_tls);
  if (rc < 0)
    die("TLS: %s%s", mxgw_tls_errmsg(g_tls), "");
}

static void print_stats(mxgw_server *srv) {
  static const struct {
    const char *name;
    int key;
  } st[] = {{"connections", MXGW_SRV_STAT_CONNECTIONS},
            {"sessions", MXGW_SRV_STAT_SESSIONS},
            {"refused", MXGW_SRV_STAT_REFUSED},
            {"messages", MXGW_SRV_STAT_MESSAGES},
            {"commit_errors", MXGW_SRV_STAT_COMMIT_ERRORS},
            {"rejected_rcpt", MXGW_SRV_STAT_REJECTED_RCPT},
            {"spf_checks", MXGW_SRV_STAT_SPF_CHECKS},
            {"policy_calls", MXGW_SRV_STAT_POLICY_CALLS},
            {"loops", MXGW_SRV_STAT_LOOPS},
            {"reloads", MXGW_SRV_STAT_RELOADS},
            {"delivered", MXGW_SRV_STAT_DELIVERED},
            {"proxy_errors", MXGW_SRV_STAT_PROXY_ERRORS},
            {"verify_probes", MXGW_SRV_STAT_VERIFY_PROBES},
            {"verify_cached", MXGW_SRV_STAT_VERIFY_CACHED}};
  pthread_mutex_lock(&out_mu);
  for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
    int64_t v = -1;
    mxgw_server_get_int(srv, st[i].key, &v);
    printf("stat %s %lld\n", st[i].name, (long long)v);
  }
  printf("stats-end\n");
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
}

struct sigctx {
  mxgw_server *srv;
  sigset_t set;
  int64_t drain;
};

static void on_signal(struct sigctx *sc, int sig) {
  if (sig == SIGTERM) {
    mxgw_server_drain(sc->srv, sc->drain);
  } else if (sig == SIGINT) {
    mxgw_server_stop(sc->srv);
  } else if (sig == SIGHUP) {
    int l = 0, e = 0;
    int64_t d = 0;
    mxgw_server_config *cfg = build(&l, &e, &d);
    int rc = mxgw_server_reload(sc->srv, cfg);
    mxgw_server_config_free(cfg);
    pthread_mutex_lock(&out_mu);
    printf("reload %d %s\n", rc, rc < 0 ? mxgw_server_errmsg(sc->srv) : "");
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
  } else if (sig == SIGUSR1) {
    print_stats(sc->srv);
  }
}

/* The signal thread and main()'s mxgw_server_free() must not overlap. */
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;

static void *sig_thread(void *arg) {
  struct sigctx *sc = arg;
  for (;;) {
    int sig;
    if (sigwait(&sc->set, &sig) != 0)
      continue;
    pthread_mutex_lock(&sig_mu);
    if (sc->srv)
      on_signal(sc, sig);
    pthread_mutex_unlock(&sig_mu);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int loops = 1, embedded = 0;
  int64_t drain = 5000;
  g_argc = argc;
  g_argv = argv;
  load_tls();
  mxgw_server_config *cfg = build(&loops, &embedded, &drain);
  mxgw_server *srv;
  int rc = mxgw_server_new(&srv, cfg, NULL);
  if (rc < 0)
    die("server: %s%s", srv ? mxgw_server_errmsg(srv) : mxgw_strerror(rc),
        "");
  mxgw_server_config_free(cfg);
  struct sigctx sc = {.srv = srv, .drain = drain};
  sigemptyset(&sc.set);
  sigaddset(&sc.set, SIGTERM);
  sigaddset(&sc.set, SIGINT);
  sigaddset(&sc.set, SIGHUP);
  sigaddset(&sc.set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &sc.set, NULL); /* inherited by all threads */
  signal(SIGPIPE, SIG_IGN);
  rc = mxgw_server_start(srv);
  if (rc < 0)
    die("start: %s (%s)", mxgw_server_errmsg(srv), mxgw_strerror(rc));
  for (int i = 0;; i++) {
    int p = mxgw_server_listener_port(srv, i);
    if (p < 0)
      break;
    printf("port %d %d\n", i, p);
  }
  printf("ready\n");
  fflush(stdout);
  if (!embedded) {
    pthread_t t;
    pthread_create(&t, NULL, sig_thread, &sc);
    pthread_detach(t);
    rc = mxgw_server_run(srv, loops);
  } else {
    /* The application's own loop: the server's fd plus a signalfd. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int sfd = signalfd(-1, &sc.set, SFD_CLOEXEC | SFD_NONBLOCK);
    struct epoll_event ee = {.events = EPOLLIN};
    ee.data.fd = mxgw_server_fd(srv);
    epoll_ctl(ep, EPOLL_CTL_ADD, ee.data.fd, &ee);
    ee.data.fd = sfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ee);
    for (;;) {
      struct epoll_event evs[4];
      int n = epoll_wait(ep, evs, 4, mxgw_server_timeout_ms(srv));
      for (int i = 0; i < n; i++)
        if (evs[i].data.fd == sfd) {
          struct signalfd_siginfo si;
          while (read(sfd, &si, sizeof si) == sizeof si)
            on_signal(&sc, (int)si.ssi_signo);
        }
      rc = mxgw_server_process(srv);
      if (rc != 0)
        break;
    }
    if (rc == 1)
      rc = 0;
    close(sfd);
    close(ep);
  }
  print_stats(srv);
  pthread_mutex_lock(&sig_mu);
  sc.srv = NULL;
  pthread_mutex_unlock(&sig_mu);
  mxgw_server_free(srv);
  mxgw_tls_free(g_tls);
  pthread_mutex_lock(&out_mu);
  printf("exit %d\n", rc);
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
  return rc < 0 ? 1 : 0;
}
