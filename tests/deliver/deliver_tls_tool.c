/* SPDX-License-Identifier: MIT */
/*
 * deliver_tls_tool.c: the front end of test_deliver_ipv6_tls.py: the queue
 * and the delivery scheduler with STARTTLS options (deliver_tool.c has
 * none).
 *   deliver_tls_tool --spool DIR enqueue --from F --rcpt R [--rcpt R...]
 *       --file PATH
 *     commits one message, prints "id=ID";
 *   deliver_tls_tool --spool DIR run --backend T [--backend T...]
 *       [--starttls 0|1|2] [--ca FILE] [--verify 0|1] [--servername NAME]
 *       [--tls-hostname NAME] [--timeout-ms N]
 *     one mxgw_deliver_run_once() with a client mxgw_tls context (CA file,
 *     MXGW_TLS_VERIFY_PEER, MXGW_TLS_HOSTNAME) attached by
 *     mxgw_deliver_set_tls() and MXGW_DELIVER_OPT_STARTTLS /
 *     MXGW_DELIVER_OPT_TLS_SERVERNAME; prints "log LEVEL LINE" and
 *     "json JSON" per log event, then "tried=N" and "stat NAME=VALUE".
 * Exit status 0 on success, 1 on an API error, 2 on bad usage.
 */
#include <mxgw/mxgw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(void) {
  fprintf(stderr, "usage: see the comment at the top of deliver_tls_tool.c\n");
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
  const char *from = NULL, *file = NULL, *ca = NULL, *servername = NULL;
  const char *tls_hostname = NULL;
  const char *rcpts[16], *backends[16];
  int nr = 0, nb = 0, starttls = 0, verify = 1;
  long long timeout = 0;
  for (int i = 4; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
    if (OPT("--from")) from = v;
    else if (OPT("--rcpt") && nr < 16) rcpts[nr++] = v;
    else if (OPT("--file")) file = v;
    else if (OPT("--backend") && nb < 16) backends[nb++] = v;
    else if (OPT("--starttls")) starttls = atoi(v);
    else if (OPT("--ca")) ca = v;
    else if (OPT("--verify")) verify = atoi(v);
    else if (OPT("--servername")) servername = v;
    else if (OPT("--tls-hostname")) tls_hostname = v;
    else if (OPT("--timeout-ms")) timeout = atoll(v);
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
  if (strcmp(cmd, "enqueue") == 0) {
    if (!from || !file || nr == 0)
      usage();
    FILE *f = fopen(file, "rb");
    if (!f)
      return die("open file", MXGW_E_IO);
    static char body[1 << 20];
    size_t blen = fread(body, 1, sizeof body, f);
    fclose(f);
    mxgw_queue_msg *msg;
    if ((rv = mxgw_queue_begin(q, &msg)))
      return die("begin", rv);
    rv = mxgw_queue_write(msg, body, blen);
    if (!rv)
      rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_SENDER, from, strlen(from));
    for (int i = 0; !rv && i < nr; i++)
      rv = mxgw_queue_msg_add_rcpt(msg, rcpts[i], strlen(rcpts[i]), 0, NULL, 0);
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
  } else if (strcmp(cmd, "run") == 0) {
    if (nb == 0)
      usage();
    mxgw_tls *tls = NULL;
    if (starttls) {
      rv = mxgw_tls_new(&tls, MXGW_TLS_CLIENT, NULL);
      if (!rv && ca)
        rv = mxgw_tls_set_str(tls, MXGW_TLS_CA_FILE, ca);
      if (!rv)
        rv = mxgw_tls_set_int(tls, MXGW_TLS_VERIFY_PEER, verify);
      if (!rv && tls_hostname)
        rv = mxgw_tls_set_str(tls, MXGW_TLS_HOSTNAME, tls_hostname);
      if (!rv)
        rv = mxgw_tls_reload(tls);
      if (rv) {
        fprintf(stderr, "tls: %s\n", tls ? mxgw_tls_errmsg(tls) : "");
        return die("tls", rv);
      }
    }
    mxgw_deliver *d;
    if ((rv = mxgw_deliver_new(&d, q, NULL)))
      return die("deliver_new", rv);
    for (int i = 0; !rv && i < nb; i++)
      rv = mxgw_deliver_add_backend(d, backends[i]);
    if (!rv)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_CONCURRENCY, 1);
    if (!rv && tls)
      rv = mxgw_deliver_set_tls(d, tls);
    if (!rv && starttls)
      rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_STARTTLS, starttls);
    if (!rv && servername)
      rv = mxgw_deliver_set_str(d, MXGW_DELIVER_OPT_TLS_SERVERNAME,
                                servername);
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
    mxgw_tls_free(tls); /* the scheduler holds its own reference */
    rv = mxgw_deliver_run_once(d, (long long)time(NULL));
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
