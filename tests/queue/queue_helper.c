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
 *                           "MSG <id> <state>" for every intact message
 *                           (body read with mxgw_queue_entry_body(), and
 *                           also through its file when it has one),
 *                           "BAD <id>" for a body that does not match, and
 *                           "QUARANTINED <n>"
 * Environment (all commands):
 *   QUEUE_HELPER_JOURNAL=1     open with MXGW_QOPT_JOURNAL (verify then also
 *                              prints "JOURNAL <recovered> <torn>")
 *   QUEUE_HELPER_SEGMENT=N     MXGW_QOPT_JOURNAL_SEGMENT (rotate early)
 *   QUEUE_HELPER_DELIVERERS=K  write: K more threads take messages while
 *                              the writers run; each one is either
 *                              delivered (after printing "DEL <id>") or
 *                              deferred, alternately, so that a kill can
 *                              hit spills, done records and segment
 *                              removal too
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "queue_helper.h"

static mxgw_queue *q;
static int per_thread;
static atomic_int writers_done;

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

/* Take and finish messages while the writers run: alternately delivered
 * ("DEL <id>" printed before the finish, so the test knows it may be
 * gone) and deferred (it must stay). */
static void *deliverer(void *arg) {
  (void)arg;
  for (unsigned n = 0; !atomic_load(&writers_done); n++) {
    mxgw_queue_entry *e;
    int rc = mxgw_queue_take(q, (int64_t)time(NULL), &e);
    if (rc == MXGW_E_NOTFOUND) {
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, NULL);
      continue;
    }
    if (rc != MXGW_OK) {
      fprintf(stderr, "take: %s\n", mxgw_errname(rc));
      exit(1);
    }
    const char *id;
    size_t l;
    char line[64];
    mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &l);
    mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
    if (n % 2) {
      int k = snprintf(line, sizeof line, "DEL %s\n", id);
      if (write(1, line, (size_t)k) != k)
        exit(1);
      mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
    } else {
      mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.4.1",
                                "later");
    }
    rc = mxgw_queue_finish(q, e, (int64_t)time(NULL) + 3600);
    mxgw_queue_entry_free(e);
    if (rc < 0) {
      fprintf(stderr, "finish: %s\n", mxgw_errname(rc));
      exit(1);
    }
  }
  return NULL;
}

/* 1 if the entry's body, read as a deliverer reads it (and through its
 * file, if it has one), is exactly the body of its ID. */
static int body_ok(const mxgw_queue_entry *e, const char *id) {
  const char *path;
  size_t l;
  int64_t in_j = 0;
  mxgw_queue_entry_get_int(e, MXGW_QKEY_IN_JOURNAL, &in_j);
  if (!in_j && (mxgw_queue_entry_get_str(e, MXGW_QKEY_BODY_PATH, &path, &l) !=
                    MXGW_OK ||
                !qh_check_body(path, id)))
    return 0;
  int fd;
  int64_t off, len;
  if (mxgw_queue_entry_body(e, &fd, &off, &len) != MXGW_OK)
    return 0;
  size_t size = qh_body_size(id);
  int ok = len == (int64_t)size;
  unsigned char got[8192], want[8192];
  for (size_t done = 0; ok && done < size;) {
    size_t n = size - done < sizeof got ? size - done : sizeof got;
    ok = pread(fd, got, n, (off_t)(off + (int64_t)done)) == (ssize_t)n;
    qh_body(id, done, want, n);
    ok = ok && memcmp(got, want, n) == 0;
    done += n;
  }
  close(fd);
  return ok;
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
  const char *journal = getenv("QUEUE_HELPER_JOURNAL");
  const char *segment = getenv("QUEUE_HELPER_SEGMENT");
  const char *deliverers = getenv("QUEUE_HELPER_DELIVERERS");
  int use_journal = journal && !strcmp(journal, "1");
  int rc = mxgw_queue_new(&q, argv[2], NULL);
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  if (rc == MXGW_OK && use_journal)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL, 1);
  if (rc == MXGW_OK && segment)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL_SEGMENT, atoll(segment));
  if (rc == MXGW_OK)
    rc = mxgw_queue_open(q);
  if (rc != MXGW_OK) {
    fprintf(stderr, "open: %s\n", mxgw_errname(rc));
    return 1;
  }
  if (!strcmp(argv[1], "write") && argc == 5) {
    per_thread = atoi(argv[3]);
    int nt = atoi(argv[4]);
    int nd = deliverers ? atoi(deliverers) : 0;
    pthread_t th[64], dth[16];
    for (int i = 0; i < nd && i < 16; i++)
      pthread_create(&dth[i], NULL, deliverer, NULL);
    for (int i = 0; i < nt && i < 64; i++)
      pthread_create(&th[i], NULL, writer, NULL);
    for (int i = 0; i < nt && i < 64; i++)
      pthread_join(th[i], NULL);
    atomic_store(&writers_done, 1);
    for (int i = 0; i < nd && i < 16; i++)
      pthread_join(dth[i], NULL);
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
        const char *id;
        size_t l;
        if (rc < 0) {
          mxgw_queue_iter_id(it, &id, &l);
          printf("BAD %s\n", id);
          continue;
        }
        mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &l);
        printf("%s %s %s\n", body_ok(e, id) ? "MSG" : "BAD", id,
               mxgw_queue_state_name(s));
      }
      mxgw_queue_iter_free(it);
    }
    int64_t v = 0;
    mxgw_queue_get_int(q, MXGW_QSTAT_QUARANTINED, &v);
    printf("QUARANTINED %lld\n", (long long)v);
    if (use_journal) {
      int64_t t = 0;
      mxgw_queue_get_int(q, MXGW_QSTAT_JOURNAL_RECOVERED, &v);
      mxgw_queue_get_int(q, MXGW_QSTAT_JOURNAL_TORN, &t);
      printf("JOURNAL %lld %lld\n", (long long)v, (long long)t);
    }
    rc = 0;
  } else {
    rc = 2;
  }
  mxgw_queue_free(q);
  return rc;
}
