/* SPDX-License-Identifier: MIT */
/*
 * queue_helper.c: a test driver for the crash and CLI tests.
 *   write SPOOL N THREADS   N messages per thread (0 = until killed), each
 *                           committed with mxgw_queue_commit(); after each
 *                           commit that returned OK prints "OK <id>"
 *   defer SPOOL             takes every due message: first recipient
 *                           delivered, second deferred with 451 4.4.1
 *   fail SPOOL              takes every due message: second recipient 550
 *   verify SPOOL            opens as owner (recovery), then prints
 *                           "MSG <id> <state>" for every intact message,
 *                           "BAD <id>" for a body that does not match, and
 *                           "QUARANTINED <n>"
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "queue_helper.h"

static mxgw_queue *q;
static int per_thread;

static void *writer(void *arg) {
  (void)arg;
  for (int i = 0; per_thread == 0 || i < per_thread; i++) {
    mxgw_queue_msg *m = NULL;
    char id[32], line[64];
    int rc = qh_write(q, &m, id);
    if (rc == MXGW_OK)
      rc = mxgw_queue_commit(m);
    if (rc != MXGW_OK) {
      fprintf(stderr, "commit: %s\n", mxgw_errname(rc));
      exit(1);
    }
    int n = snprintf(line, sizeof line, "OK %s\n", id);
    if (write(1, line, (size_t)n) != n) /* one write: whole lines */
      exit(1);
  }
  return NULL;
}

static int deliver(int second_state, int code, const char *enh,
                   const char *text) {
  mxgw_queue_entry *e;
  int n = 0, rc;
  while ((rc = mxgw_queue_take(q, (int64_t)time(NULL), &e)) == MXGW_OK) {
    mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0",
                              "<info@example.net> Saved");
    mxgw_queue_entry_set_rcpt(e, 1, second_state, code, enh, text);
    rc = mxgw_queue_finish(q, e, (int64_t)time(NULL) + 3600);
    mxgw_queue_entry_free(e);
    if (rc < 0)
      return 1;
    n++;
  }
  printf("%d\n", n);
  return rc == MXGW_E_NOTFOUND ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return 2;
  int rc = mxgw_queue_new(&q, argv[2], NULL);
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  if (rc == MXGW_OK)
    rc = mxgw_queue_open(q);
  if (rc != MXGW_OK) {
    fprintf(stderr, "open: %s\n", mxgw_errname(rc));
    return 1;
  }
  if (!strcmp(argv[1], "write") && argc == 5) {
    per_thread = atoi(argv[3]);
    int nt = atoi(argv[4]);
    pthread_t th[64];
    for (int i = 0; i < nt && i < 64; i++)
      pthread_create(&th[i], NULL, writer, NULL);
    for (int i = 0; i < nt && i < 64; i++)
      pthread_join(th[i], NULL);
  } else if (!strcmp(argv[1], "defer")) {
    rc = deliver(MXGW_RCPT_DEFERRED, 451, "4.4.1",
                 "connect to 127.0.0.1[127.0.0.1]:2525: Connection refused");
  } else if (!strcmp(argv[1], "fail")) {
    rc = deliver(MXGW_RCPT_FAILED, 550, "5.1.1", "<bob@example.net> User unknown");
  } else if (!strcmp(argv[1], "verify")) {
    for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED; s++) {
      mxgw_queue_iter *it;
      mxgw_queue_entry *e;
      if (mxgw_queue_iter_new(q, s, &it) != MXGW_OK)
        return 1;
      while ((rc = mxgw_queue_iter_next(it, &e)) != 0) {
        const char *id, *path;
        size_t l;
        if (rc < 0) {
          mxgw_queue_iter_id(it, &id, &l);
          printf("BAD %s\n", id);
          continue;
        }
        mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &l);
        mxgw_queue_entry_get_str(e, MXGW_QKEY_BODY_PATH, &path, &l);
        printf("%s %s %s\n", qh_check_body(path, id) ? "MSG" : "BAD", id,
               mxgw_queue_state_name(s));
      }
      mxgw_queue_iter_free(it);
    }
    int64_t v = 0;
    mxgw_queue_get_int(q, MXGW_QSTAT_QUARANTINED, &v);
    printf("QUARANTINED %lld\n", (long long)v);
    rc = 0;
  } else {
    rc = 2;
  }
  mxgw_queue_free(q);
  return rc;
}
