/* SPDX-License-Identifier: MIT */
/*
 * deliver_tool.c: a command-line front end to the queue and the delivery
 * scheduler, used by the Python tests in this directory.
 *   deliver_tool --spool DIR enqueue --from F --rcpt R [--rcpt R...]
 *       --file PATH [--count N] [--notify BITS] [--orcpt T;A] [--ret FULL|HDRS]
 *       [--envid X] [--arrival UNIX] [--client-addr A] [--client-helo H]
 *     commits N messages, prints "id=ID" for each;
 *   deliver_tool --spool DIR run --backend T [--backend T...] [--now UNIX]
 *       [--lifetime S] [--bounce keep|dsn] [--bounce-rcpt ADDR]
 *       [--keep-bounced] [--concurrency N] [--timeout-ms N] [--hostname H]
 *       [--backoff S] [--nosync]
 *     one mxgw_deliver_run_once(); prints "log LEVEL LINE" and "json JSON"
 *     per log event, then "tried=N" and "stat NAME=VALUE" lines.
 * Exit status 0 on success, 1 on an API error, 2 on bad usage.
 */
#include <mxgw/mxgw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(void) {
  fprintf(stderr, "usage: see the comment at the top of deliver_tool.c\n");
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

int main(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[1], "--spool") != 0)
    usage();
  const char *spool = argv[2], *cmd = argv[3];
  const char *from = NULL, *file = NULL, *orcpt = NULL, *ret = NULL;
  const char *envid = NULL, *caddr = NULL, *chelo = NULL;
  const char *rcpts[64], *backends[16], *bounce = NULL, *bounce_rcpt = NULL;
  const char *hostname = NULL;
  int nr = 0, nb = 0, count = 1, notify = 0, keep_bounced = 0, nosync = 0;
  int smtputf8 = 0;
  long long now = 0, lifetime = -1, conc = 0, timeout = 0, arrival = 0;
  long long backoff = 0;
  for (int i = 4; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
    if (OPT("--from")) from = v;
    else if (OPT("--rcpt") && nr < 64) rcpts[nr++] = v;
    else if (OPT("--file")) file = v;
    else if (OPT("--count")) count = atoi(v);
    else if (OPT("--notify")) notify = atoi(v);
    else if (OPT("--orcpt")) orcpt = v;
    else if (OPT("--ret")) ret = v;
    else if (OPT("--envid")) envid = v;
    else if (OPT("--arrival")) arrival = atoll(v);
    else if (OPT("--client-addr")) caddr = v;
    else if (OPT("--client-helo")) chelo = v;
    else if (OPT("--backend") && nb < 16) backends[nb++] = v;
    else if (OPT("--now")) now = atoll(v);
    else if (OPT("--lifetime")) lifetime = atoll(v);
    else if (OPT("--bounce")) bounce = v;
    else if (OPT("--bounce-rcpt")) bounce_rcpt = v;
    else if (OPT("--concurrency")) conc = atoll(v);
    else if (OPT("--timeout-ms")) timeout = atoll(v);
    else if (OPT("--hostname")) hostname = v;
    else if (OPT("--backoff")) backoff = atoll(v);
    else if (strcmp(a, "--keep-bounced") == 0) keep_bounced = 1;
    else if (strcmp(a, "--nosync") == 0) nosync = 1;
    else if (strcmp(a, "--smtputf8") == 0) smtputf8 = 1;
    else usage();
#undef OPT
  }
  mxgw_queue *q;
  int rv = mxgw_queue_new(&q, spool, NULL);
  if (!rv && nosync)
    rv = mxgw_queue_set_int(q, MXGW_QOPT_SYNC, 0);
  if (!rv)
    rv = mxgw_queue_open(q);
  if (rv)
    return die("queue open", rv);
  int status = 0;
  if (strcmp(cmd, "enqueue") == 0) {
    if (!from || !file || nr == 0)
      usage();
    FILE *f = fopen(file, "rb");
    if (!f)
      return die("open file", MXGW_E_IO);
    static char body[1 << 20];
    size_t blen = fread(body, 1, sizeof body, f);
    fclose(f);
    for (int m = 0; m < count; m++) {
      mxgw_queue_msg *msg;
      if ((rv = mxgw_queue_begin(q, &msg)))
        return die("begin", rv);
      rv = mxgw_queue_write(msg, body, blen);
      if (!rv)
        rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_SENDER, from, strlen(from));
      if (!rv && ret)
        rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_RET, ret, strlen(ret));
      if (!rv && envid)
        rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_ENVID, envid,
                                    strlen(envid));
      if (!rv && caddr)
        rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_CLIENT_ADDR, caddr,
                                    strlen(caddr));
      if (!rv && chelo)
        rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_CLIENT_HELO, chelo,
                                    strlen(chelo));
      if (!rv && arrival)
        rv = mxgw_queue_msg_set_int(msg, MXGW_QKEY_ARRIVAL, arrival);
      if (!rv && smtputf8)
        rv = mxgw_queue_msg_set_int(msg, MXGW_QKEY_SMTPUTF8, 1);
      for (int i = 0; !rv && i < nr; i++)
        rv = mxgw_queue_msg_add_rcpt(msg, rcpts[i], strlen(rcpts[i]), notify,
                                     orcpt, orcpt ? strlen(orcpt) : 0);
      const char *id;
      size_t il;
      mxgw_queue_msg_id(msg, &id, &il);
      char idbuf[64];
      snprintf(idbuf, sizeof idbuf, "%.*s", (int)il, id);
      if (rv) {
        mxgw_queue_msg_free(msg);
        return die("envelope", rv);
      }
      if ((rv = mxgw_queue_commit(msg)))
        return die("commit", rv);
      printf("id=%s\n", idbuf);
    }
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
    if (!rv && conc)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_CONCURRENCY, conc);
    if (!rv && backoff)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_BACKOFF_INITIAL, backoff);
    if (!rv && bounce)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_BOUNCE,
                                strcmp(bounce, "dsn") == 0 ? MXGW_BOUNCE_DSN
                                                           : MXGW_BOUNCE_KEEP);
    if (!rv && keep_bounced)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_KEEP_BOUNCED, 1);
    if (!rv && bounce_rcpt)
      rv = mxgw_deliver_set_str(d, MXGW_DELIVER_OPT_BOUNCE_RCPT, bounce_rcpt);
    if (!rv && hostname)
      rv = mxgw_deliver_set_str(d, MXGW_DELIVER_OPT_HOSTNAME, hostname);
    if (!rv && timeout) {
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS,
                                timeout);
      if (!rv)
        rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_COMMAND_TIMEOUT_MS,
                                  timeout);
      if (!rv)
        rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DATA_TIMEOUT_MS,
                                  timeout);
    }
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
