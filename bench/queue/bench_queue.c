/* SPDX-License-Identifier: MIT */
/*
 * bench_queue.c: durable commits per second of the queue with 1, 8 and 64
 * concurrent committers (threads calling mxgw_queue_commit()), on the disk
 * that holds --spool, with the fsync counters that show the group commit.
 * Usage: bench_queue --spool DIR [--seconds S] [--size BYTES]
 *        [--threads N,N,...] [--nosync]
 * Each message is a fresh body of --size octets and two recipients; the
 * spool is emptied between runs (not timed).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mxgw/mxgw.h>

static mxgw_queue *q;
static atomic_int stop;
static size_t body_size = 4096;
static char *body;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *committer(void *arg) {
  long *count = arg;
  while (!atomic_load(&stop)) {
    mxgw_queue_msg *m;
    if (mxgw_queue_begin(q, &m) != MXGW_OK)
      exit(1);
    mxgw_queue_write(m, body, body_size);
    mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "alice@example.org", 17);
    mxgw_queue_msg_add_rcpt(m, "info@example.net", 16, 0, NULL, 0);
    mxgw_queue_msg_add_rcpt(m, "bob@example.net", 15, 0, NULL, 0);
    if (mxgw_queue_commit(m) != MXGW_OK)
      exit(1);
    (*count)++;
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *spool = NULL, *threads = "1,8,64";
  double seconds = 5;
  int sync = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--spool") && i + 1 < argc) spool = argv[++i];
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc) body_size = (size_t)atol(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
    else if (!strcmp(argv[i], "--nosync")) sync = 0;
    else { fprintf(stderr, "usage: bench_queue --spool DIR [--seconds S] [--size B] [--threads 1,8,64] [--nosync]\n"); return 2; }
  }
  if (!spool)
    return 2;
  body = malloc(body_size);
  for (size_t i = 0; i < body_size; i++)
    body[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
  printf("%-8s %10s %10s %12s %12s %10s\n", "threads", "msgs", "msg/s",
         "dirsync/msg", "filesync/msg", "batch avg");
  char *list = strdup(threads);
  for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
    int nt = atoi(tok);
    if (nt < 1 || nt > 1024)
      return 2;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", spool);
    if (system(cmd) != 0)
      return 1;
    if (mxgw_queue_new(&q, spool, NULL) || mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0) ||
        mxgw_queue_set_int(q, MXGW_QOPT_SYNC, sync) || mxgw_queue_open(q))
      return 1;
    int64_t d0, f0, b0, d1, f1, b1;
    mxgw_queue_get_int(q, MXGW_QSTAT_DIR_SYNCS, &d0);
    mxgw_queue_get_int(q, MXGW_QSTAT_FILE_SYNCS, &f0);
    mxgw_queue_get_int(q, MXGW_QSTAT_BATCHES, &b0);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    long *cnt = calloc((size_t)nt, sizeof *cnt);
    atomic_store(&stop, 0);
    double t0 = now();
    for (int i = 0; i < nt; i++)
      pthread_create(&th[i], NULL, committer, &cnt[i]);
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    long total = 0;
    for (int i = 0; i < nt; i++) {
      pthread_join(th[i], NULL);
      total += cnt[i];
    }
    double el = now() - t0;
    mxgw_queue_get_int(q, MXGW_QSTAT_DIR_SYNCS, &d1);
    mxgw_queue_get_int(q, MXGW_QSTAT_FILE_SYNCS, &f1);
    mxgw_queue_get_int(q, MXGW_QSTAT_BATCHES, &b1);
    printf("%-8d %10ld %10.0f %12.3f %12.3f %10.1f\n", nt, total, (double)total / el,
           (double)(d1 - d0) / (double)total, (double)(f1 - f0) / (double)total,
           b1 > b0 ? (double)total / (double)(b1 - b0) : 0.0);
    fflush(stdout);
    mxgw_queue_free(q);
    free(th);
    free(cnt);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", spool);
  return system(cmd) == 0 ? 0 : 1;
}
