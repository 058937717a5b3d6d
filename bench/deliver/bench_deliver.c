/* SPDX-License-Identifier: MIT */
/*
 * bench_deliver.c: messages/s and CPU per message of the durable queue plus
 * the delivery scheduler (mxgw_deliver) plus the LMTP client, against a
 * running LMTP backend (smtp-sink -L, Dovecot). It commits N messages of
 * SIZE octets (blocking commits from --committers threads, fsynced unless
 * --nosync; into the queue's journal with --journal), then delivers them with one mxgw_deliver_run_once() at
 * --concurrency connections, with the log hook formatting every line (and
 * writing it to /dev/null). It prints one line per phase:
 *   phase=commit msgs=N secs=S msg_per_s=R cpu_ms_per_msg=C
 *   phase=deliver msgs=N secs=S msg_per_s=R cpu_ms_per_msg=C sent=K
 * CPU is user+system of this process (all threads), from getrusage().
 * Exit status 1 if not every message was delivered (status=sent) or the
 * queue is not empty afterwards.
 */
#define _GNU_SOURCE
#include <mxgw/mxgw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void log_null(void *user, int level, const char *line,
                     const char *json) {
  FILE *f = user;
  fprintf(f, "%d %s\n%s\n", level, line, json);
}

typedef struct job {
  mxgw_queue *q;
  const char *body;
  size_t size;
  int n;
  const char *rcpt;
  int failed;
} job;

static void *commit_main(void *arg) {
  job *j = arg;
  for (int i = 0; i < j->n; i++) {
    mxgw_queue_msg *m;
    if (mxgw_queue_begin(j->q, &m) ||
        mxgw_queue_write(m, j->body, j->size) ||
        mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "bench@remote.example",
                               20) ||
        mxgw_queue_msg_add_rcpt(m, j->rcpt, strlen(j->rcpt), 0, NULL, 0)) {
      mxgw_queue_msg_free(m);
      j->failed++;
      continue;
    }
    if (mxgw_queue_commit(m))
      j->failed++;
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *spool = NULL, *backend = NULL, *rcpt = "alice@example.test";
  int n = 2000, conc = 4, committers = 8, nosync = 0, journal = 0;
  size_t size = 1024;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
    if (OPT("--spool")) spool = v;
    else if (OPT("--backend")) backend = v;
    else if (OPT("--rcpt")) rcpt = v;
    else if (OPT("--messages")) n = atoi(v);
    else if (OPT("--size")) size = (size_t)atol(v);
    else if (OPT("--concurrency")) conc = atoi(v);
    else if (OPT("--committers")) committers = atoi(v);
    else if (strcmp(a, "--nosync") == 0) nosync = 1;
    else if (strcmp(a, "--journal") == 0) journal = 1;
    else {
      fprintf(stderr, "usage: bench_deliver --spool DIR --backend T "
                      "[--messages N] [--size B] [--concurrency C] "
                      "[--committers K] [--rcpt A] [--nosync] [--journal]\n");
      return 2;
    }
#undef OPT
  }
  if (!spool || !backend || n < 1 || committers < 1)
    return 2;
  /* a plausible message: header, then 76-column lines to `size` */
  char *body = malloc(size + 200);
  size_t len = (size_t)snprintf(body, 200,
                                "From: bench@remote.example\r\n"
                                "To: %s\r\nSubject: bench\r\n\r\n", rcpt);
  while (len + 78 <= size) {
    memset(body + len, 'x', 76);
    memcpy(body + len + 76, "\r\n", 2);
    len += 78;
  }
  mxgw_queue *q;
  if (mxgw_queue_new(&q, spool, NULL) ||
      (nosync && mxgw_queue_set_int(q, MXGW_QOPT_SYNC, 0)) ||
      (journal && mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL, 1)) ||
      mxgw_queue_open(q)) {
    fprintf(stderr, "cannot open the spool %s\n", spool);
    return 1;
  }
  /* commit phase */
  pthread_t tids[256];
  job jobs[256];
  if (committers > 256)
    committers = 256;
  double w0 = wall(), c0 = cpu();
  for (int t = 0; t < committers; t++) {
    jobs[t] = (job){q, body, len, n / committers + (t < n % committers),
                    rcpt, 0};
    pthread_create(&tids[t], NULL, commit_main, &jobs[t]);
  }
  int failed = 0;
  for (int t = 0; t < committers; t++) {
    pthread_join(tids[t], NULL);
    failed += jobs[t].failed;
  }
  double w1 = wall(), c1 = cpu();
  printf("phase=commit msgs=%d size=%zu secs=%.3f msg_per_s=%.0f "
         "cpu_ms_per_msg=%.3f sync=%d journal=%d failed=%d\n",
         n, len, w1 - w0, n / (w1 - w0), (c1 - c0) * 1000 / n, !nosync,
         journal, failed);
  /* delivery phase */
  mxgw_deliver *d;
  FILE *devnull = fopen("/dev/null", "w");
  if (mxgw_deliver_new(&d, q, NULL) || mxgw_deliver_add_backend(d, backend) ||
      mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_CONCURRENCY, conc) ||
      mxgw_deliver_set_log(d, log_null, devnull)) {
    fprintf(stderr, "cannot configure the scheduler\n");
    return 1;
  }
  w0 = wall();
  c0 = cpu();
  int tried = mxgw_deliver_run_once(d, (int64_t)time(NULL));
  w1 = wall();
  c1 = cpu();
  int64_t sent = 0;
  mxgw_deliver_get_int(d, MXGW_DELIVER_STAT_SENT, &sent);
  printf("phase=deliver msgs=%d secs=%.3f msg_per_s=%.0f cpu_ms_per_msg=%.3f "
         "concurrency=%d sent=%lld\n",
         tried, w1 - w0, tried / (w1 - w0), (c1 - c0) * 1000 / n, conc,
         (long long)sent);
  int left = 0;
  for (int st = MXGW_QSTATE_INCOMING; st <= MXGW_QSTATE_FAILED; st++)
    left += mxgw_queue_count(q, st);
  mxgw_deliver_free(d);
  mxgw_queue_free(q);
  fclose(devnull);
  free(body);
  if (sent != n - failed || left != 0) {
    fprintf(stderr, "not all delivered: sent=%lld of %d, %d left\n",
            (long long)sent, n, left);
    return 1;
  }
  return 0;
}
