/* SPDX-License-Identifier: MIT */
/*
 * deliver_dsn_tool.c: the delivery scheduler's success and delay DSNs, for
 * test_deliver_dsn.py (messages are queued with deliver_tool's enqueue).
 *   deliver_dsn_tool --spool DIR run --backend T [--backend T...]
 *       [--now UNIX] [--lifetime S] [--delay-warning S] [--bounce keep|dsn]
 *       [--bounce-rcpt ADDR] [--hostname H] [--backoff S]
 *     one mxgw_deliver_run_once(); prints "log LEVEL LINE" and "json JSON"
 *     per log event, then "tried=N" and "stat NAME=VALUE" lines (as
 *     deliver_tool does);
 *   deliver_dsn_tool --spool DIR body ID
 *     writes the body of queued message ID to stdout (read through
 *     mxgw_queue_entry_body(), wherever it is);
 *   deliver_dsn_tool --spool DIR options
 *     checks MXGW_DELIVER_OPT_DELAY_WARNING (default, range, get) on a
 *     scheduler and through mxgw_server_config_set_deliver_int(); prints
 *     "ok" or the first failed check (exit 1).
 * Exit status 0 on success, 1 on an API error, 2 on bad usage.
 */
#define _GNU_SOURCE
#include <mxgw/mxgw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(void) {
  fprintf(stderr, "usage: see the comment at the top of deliver_dsn_tool.c\n");
  exit(2);
}

static void log_cb(void *user, int level, const char *line, const char *json) {
  (void)user;
  printf("log %d %s\njson %s\n", level, line, json);
  fflush(stdout);
}

static int die(const char *what, int rv) {
  fprintf(stderr, "%s: %s\n", what, mxgw_strerror(rv));
  return 1;
}

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      printf("FAILED line %d: %s\n", __LINE__, #cond);                       \
      return 1;                                                              \
    }                                                                        \
  } while (0)

static int options(mxgw_queue *q) {
  mxgw_deliver *d;
  CHECK(mxgw_deliver_new(&d, q, NULL) == MXGW_OK);
  int64_t v = -1;
  CHECK(mxgw_deliver_get_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, &v) == 0);
  CHECK(v == 0); /* off by default, like Postfix's delay_warning_time */
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, -1) ==
        MXGW_E_RANGE);
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING,
                             (int64_t)INT32_MAX + 1) == MXGW_E_RANGE);
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, 14400) == 0);
  CHECK(mxgw_deliver_get_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, &v) == 0);
  CHECK(v == 14400);
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, 0) == 0);
  mxgw_deliver_free(d);
  mxgw_server_config *cfg;
  CHECK(mxgw_server_config_new(&cfg, NULL) == MXGW_OK);
  CHECK(mxgw_server_config_set_deliver_int(
            cfg, MXGW_DELIVER_OPT_DELAY_WARNING, 3600) == MXGW_OK);
  CHECK(mxgw_server_config_set_deliver_int(
            cfg, MXGW_DELIVER_OPT_DELAY_WARNING + 1, 1) == MXGW_E_INVAL);
  mxgw_server_config_free(cfg);
  printf("ok\n");
  return 0;
}

static int body(mxgw_queue *q, const char *id) {
  mxgw_queue_entry *e;
  int rv = mxgw_queue_load(q, id, &e);
  if (rv)
    return die("load", rv);
  int fd;
  int64_t off, len;
  rv = mxgw_queue_entry_body(e, &fd, &off, &len);
  if (rv) {
    mxgw_queue_entry_free(e);
    return die("body", rv);
  }
  char buf[65536];
  while (len > 0) {
    ssize_t r = pread(fd, buf, len < (int64_t)sizeof buf ? (size_t)len
                                                         : sizeof buf,
                      (off_t)off);
    if (r <= 0)
      break;
    fwrite(buf, 1, (size_t)r, stdout);
    off += r;
    len -= r;
  }
  close(fd);
  mxgw_queue_entry_free(e);
  return len == 0 ? 0 : die("read", MXGW_E_IO);
}

int main(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[1], "--spool") != 0)
    usage();
  const char *spool = argv[2], *cmd = argv[3];
  const char *backends[16], *bounce = NULL, *bounce_rcpt = NULL;
  const char *hostname = NULL;
  int nb = 0;
  long long now = 0, lifetime = -1, delay_warning = -1, backoff = 0;
  int first = 4;
  if (strcmp(cmd, "body") == 0) {
    if (argc != 5)
      usage();
    first = argc;
  }
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
    if (OPT("--backend") && nb < 16) backends[nb++] = v;
    else if (OPT("--now")) now = atoll(v);
    else if (OPT("--lifetime")) lifetime = atoll(v);
    else if (OPT("--delay-warning")) delay_warning = atoll(v);
    else if (OPT("--bounce")) bounce = v;
    else if (OPT("--bounce-rcpt")) bounce_rcpt = v;
    else if (OPT("--hostname")) hostname = v;
    else if (OPT("--backoff")) backoff = atoll(v);
    else usage();
#undef OPT
  }
  mxgw_queue *q;
  int rv = mxgw_queue_new(&q, spool, NULL);
  if (!rv)
    rv = mxgw_queue_open(q);
  if (rv)
    return die("queue open", rv);
  int status = 0;
  if (strcmp(cmd, "options") == 0) {
    status = options(q);
  } else if (strcmp(cmd, "body") == 0) {
    status = body(q, argv[4]);
  } else if (strcmp(cmd, "run") == 0) {
    if (nb == 0)
      usage();
    mxgw_deliver *d;
    if ((rv = mxgw_deliver_new(&d, q, NULL)))
      return die("deliver_new", rv);
    for (int i = 0; !rv && i < nb; i++)
      rv = mxgw_deliver_add_backend(d, backends[i]);
    if (!rv && lifetime >= 0)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_LIFETIME, lifetime);
    if (!rv && delay_warning >= 0)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING,
                                delay_warning);
    if (!rv && backoff)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_BACKOFF_INITIAL, backoff);
    if (!rv && bounce)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_BOUNCE,
                                strcmp(bounce, "dsn") == 0 ? MXGW_BOUNCE_DSN
                                                           : MXGW_BOUNCE_KEEP);
    if (!rv && bounce_rcpt)
      rv = mxgw_deliver_set_str(d, MXGW_DELIVER_OPT_BOUNCE_RCPT, bounce_rcpt);
    if (!rv && hostname)
      rv = mxgw_deliver_set_str(d, MXGW_DELIVER_OPT_HOSTNAME, hostname);
    if (!rv)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS, 5000);
    if (!rv)
      rv = mxgw_deliver_set_log(d, log_cb, NULL);
    if (rv)
      return die("configure", rv);
    rv = mxgw_deliver_run_once(d, now ? now : (long long)time(NULL));
    if (rv < 0) {
      status = die("run_once", rv);
    } else {
      printf("tried=%d\n", rv);
      static const char *const names[] = {"attempts", "sent", "deferred",
                                          "bounced", "dsns", "removed",
                                          "kept_failed", "errors"};
      for (int k = 0; k < 8; k++) {
        int64_t v = 0;
        mxgw_deliver_get_int(d, MXGW_DELIVER_STAT_ATTEMPTS + k, &v);
        printf("stat %s=%lld\n", names[k], (long long)v);
      }
    }
    mxgw_deliver_free(d);
  } else {
    usage();
  }
  mxgw_queue_free(q);
  return status;
}
