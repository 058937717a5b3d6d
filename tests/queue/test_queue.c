/* SPDX-License-Identifier: MIT */
/*
 * test_queue.c: Criterion tests of the durable queue: byte-exact write and
 * read back, envelope round trip, layout (nothing left in tmp/), refused
 * commits, group commit with concurrent threads (fewer directory fsyncs
 * than messages), asynchronous commit through the eventfd, delivery moves
 * (take, finish to deferred/failed/removed), recovery of active messages,
 * quarantine of incomplete entries, operator actions, the owner lock, and
 * ENOSPC on a 1 MiB tmpfs (skipped when mount is not permitted).
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue_helper.h"

static char spool[256];


static void setup(void) {
  snprintf(spool, sizeof spool, "/tmp/mxgw-queue-test.XXXXXX");
  cr_assert_not_null(mkdtemp(spool));
}

static void teardown(void) {
  if (qh_rm_rf(spool) != 0)
    cr_log_warn("cleanup of %s failed", spool);
}

TestSuite(queue, .init = setup, .fini = teardown, .timeout = 120);

static mxgw_queue *open_q(int workers) {
  mxgw_queue *q;
  cr_assert_eq(mxgw_queue_new(&q, spool, NULL), MXGW_OK);
  cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, workers),
               MXGW_OK);
  int rc = mxgw_queue_open(q);
  cr_assert_eq(rc, MXGW_OK, "open: %s", mxgw_errname(rc));
  return q;
}

static int count_files(const char *sub) {
  int n = qh_count_entries(spool, sub);
  cr_assert_geq(n, 0, "%s/%s", spool, sub);
  return n;
}

static int64_t stat_of(mxgw_queue *q, int key) {
  int64_t v = -1;
  cr_assert_eq(mxgw_queue_get_int(q, key, &v), MXGW_OK);
  return v;
}

static const char *get_s(const mxgw_queue_entry *e, int key) {
  const char *p = NULL;
  size_t l;
  cr_assert_eq(mxgw_queue_entry_get_str(e, key, &p, &l), MXGW_OK, "key %d",
               key);
  return p;
}

Test(queue, commit_reads_back_byte_exact) {
  mxgw_queue *q = open_q(0);
  char ids[5][32];
  for (int i = 0; i < 5; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(qh_write(q, &m, ids[i]), MXGW_OK);
    cr_assert_eq(mxgw_queue_msg_set_str(m, MXGW_QKEY_TLS_JSON,
                                        "{\"protocol\":\"TLSv1.3\"}", 22),
                 MXGW_OK);
    cr_assert_eq(mxgw_queue_msg_set_str(m, MXGW_QKEY_SPF_JSON, "{bad", 4),
                 MXGW_E_SYNTAX);
    cr_assert_eq(mxgw_queue_msg_set_int(m, MXGW_QKEY_SMTPUTF8, 1), MXGW_OK);
    cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
  }
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < i; j++)
      cr_assert_str_neq(ids[i], ids[j]);
  cr_assert_eq(count_files("tmp"), 0);
  cr_assert_eq(count_files("incoming"), 10); /* body + metadata each */
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 5);
  for (int i = 0; i < 5; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), ids[i]));
    int64_t v;
    mxgw_queue_entry_get_int(e, MXGW_QKEY_SIZE, &v);
    cr_assert_eq(v, (int64_t)qh_body_size(ids[i]));
    cr_assert_str_eq(get_s(e, MXGW_QKEY_SENDER), "alice@example.org");
    cr_assert_str_eq(get_s(e, MXGW_QKEY_CLIENT_ADDR), "192.0.2.7");
    cr_assert_str_eq(get_s(e, MXGW_QKEY_TLS_JSON), "{\"protocol\":\"TLSv1.3\"}");
    mxgw_queue_entry_get_int(e, MXGW_QKEY_SMTPUTF8, &v);
    cr_assert_eq(v, 1);
    mxgw_queue_entry_get_int(e, MXGW_QKEY_STATE, &v);
    cr_assert_eq(v, MXGW_QSTATE_INCOMING);
    mxgw_queue_entry_get_int(e, MXGW_QKEY_RCPT_COUNT, &v);
    cr_assert_eq(v, 2);
    const char *p;
    size_t l;
    cr_assert_eq(mxgw_queue_entry_rcpt_get_str(e, 1, MXGW_QRKEY_ORCPT, &p, &l),
                 MXGW_OK);
    cr_assert_str_eq(p, "rfc822;bob@example.net");
    mxgw_queue_entry_rcpt_get_int(e, 1, MXGW_QRKEY_NOTIFY, &v);
    cr_assert_eq(v, MXGW_NOTIFY_FAILURE | MXGW_NOTIFY_DELAY);
    mxgw_queue_entry_rcpt_get_int(e, 0, MXGW_QRKEY_STATE, &v);
    cr_assert_eq(v, MXGW_RCPT_PENDING);
    cr_assert_eq(mxgw_queue_entry_rcpt_get_int(e, 2, MXGW_QRKEY_STATE, &v),
                 MXGW_E_RANGE);
    mxgw_queue_entry_free(e);
  }
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMITS), 5);
  mxgw_queue_free(q);
}

Test(queue, refused_commits_leave_nothing) {
  mxgw_queue *q = open_q(0);
  mxgw_queue_msg *m = NULL;
  cr_assert_eq(mxgw_queue_begin(q, &m), MXGW_OK);
  mxgw_queue_write(m, "Subject: x\r\n\r\nbody\r\n", 20);
  mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "", 0);
  cr_assert_eq(mxgw_queue_commit(m), MXGW_E_STATE); /* no recipient */
  cr_assert_eq(mxgw_queue_begin(q, &m), MXGW_OK);
  mxgw_queue_write(m, "x", 1);
  mxgw_queue_msg_free(m); /* abandoned (client gone) */
  cr_assert_eq(count_files("tmp"), 0);
  cr_assert_eq(count_files("incoming"), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMIT_ERRORS), 1);
  mxgw_queue_free(q);
}

struct thr {
  mxgw_queue *q;
  int n, ok;
};

static void *committer(void *arg) {
  struct thr *t = arg;
  for (int i = 0; i < t->n; i++) {
    mxgw_queue_msg *m = NULL;
    char id[32];
    if (qh_write(t->q, &m, id) == MXGW_OK && mxgw_queue_commit(m) == MXGW_OK)
      t->ok++;
  }
  return NULL;
}

Test(queue, group_commit_shares_directory_fsyncs) {
  mxgw_queue *q = open_q(0);
  enum { T = 16, N = 12 };
  pthread_t th[T];
  struct thr a[T];
  int64_t dir0 = stat_of(q, MXGW_QSTAT_DIR_SYNCS);
  for (int i = 0; i < T; i++) {
    a[i] = (struct thr){q, N, 0};
    pthread_create(&th[i], NULL, committer, &a[i]);
  }
  int ok = 0;
  for (int i = 0; i < T; i++) {
    pthread_join(th[i], NULL);
    ok += a[i].ok;
  }
  cr_assert_eq(ok, T * N);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), T * N);
  int64_t dirs = stat_of(q, MXGW_QSTAT_DIR_SYNCS) - dir0;
  cr_log_info("%d commits, %lld directory fsyncs, %lld file fsyncs", T * N,
              (long long)dirs, (long long)stat_of(q, MXGW_QSTAT_FILE_SYNCS));
  cr_assert_lt(dirs, T * N, "group commit: %lld dir fsyncs for %d commits",
               (long long)dirs, T * N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_FILE_SYNCS), 2 * T * N);
  /* every one intact */
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  int seen = 0;
  cr_assert_eq(mxgw_queue_iter_new(q, MXGW_QSTATE_INCOMING, &it), MXGW_OK);
  while (mxgw_queue_iter_next(it, &e) == 1) {
    cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH),
                            get_s(e, MXGW_QKEY_ID)));
    seen++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(seen, T * N);
  mxgw_queue_free(q);
}

Test(queue, async_commit_through_eventfd) {
  mxgw_queue *q = open_q(4);
  int efd = mxgw_queue_eventfd(q);
  cr_assert_geq(efd, 0);
  enum { N = 60 };
  char ids[N][32];
  for (int i = 0; i < N; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(qh_write(q, &m, ids[i]), MXGW_OK);
    cr_assert_eq(mxgw_queue_commit_async(m, (uint64_t)i + 1000), MXGW_OK);
  }
  int got[N] = {0}, total = 0;
  while (total < N) {
    struct pollfd p = {efd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 30000), 1, "no completion within 30 s");
    mxgw_queue_done d[16];
    int n = mxgw_queue_completed(q, d, 16);
    cr_assert_geq(n, 0);
    for (int i = 0; i < n; i++) {
      cr_assert_eq(d[i].status, MXGW_OK);
      int idx = (int)(d[i].tag - 1000);
      cr_assert(idx >= 0 && idx < N);
      cr_assert_str_eq(d[i].id, ids[idx]);
      cr_assert_eq(got[idx], 0, "tag reported twice");
      got[idx] = 1;
      total++;
    }
  }
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N);
  mxgw_queue_free(q);
}

Test(queue, delivery_moves) {
  mxgw_queue *q = open_q(0);
  char id[32];
  mxgw_queue_msg *m = NULL;
  cr_assert_eq(qh_write(q, &m, id), MXGW_OK);
  cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 1000, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 1);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_HOLD, id, 0), MXGW_E_BUSY);
  /* first recipient delivered, second deferred */
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "Saved");
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.3.0",
                            "Temporary failure");
  cr_assert_eq(mxgw_queue_finish(q, e, 5000), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_take(q, 4999, &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_take(q, 5000, &e), MXGW_OK);
  int64_t v;
  mxgw_queue_entry_get_int(e, MXGW_QKEY_ATTEMPTS, &v);
  cr_assert_eq(v, 1);
  mxgw_queue_entry_rcpt_get_int(e, 0, MXGW_QRKEY_STATE, &v);
  cr_assert_eq(v, MXGW_RCPT_DELIVERED);
  const char *p;
  size_t l;
  mxgw_queue_entry_rcpt_get_str(e, 1, MXGW_QRKEY_TEXT, &p, &l);
  cr_assert_str_eq(p, "Temporary failure");
  /* second now fails permanently: kept in failed/ */
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_FAILED, 550, "5.1.1",
                            "User unknown");
  cr_assert_eq(mxgw_queue_finish(q, e, 0), MXGW_QSTATE_FAILED);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_FAILED), 1);
  /* requeue: the failed recipient is pending again */
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_REQUEUE, id, 0), 1);
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  mxgw_queue_entry_rcpt_get_int(e, 1, MXGW_QRKEY_STATE, &v);
  cr_assert_eq(v, MXGW_RCPT_PENDING);
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0); /* removed */
  mxgw_queue_entry_free(e);
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++)
    cr_assert_eq(mxgw_queue_count(q, s), 0, "state %s",
                 mxgw_queue_state_name(s));
  cr_assert_eq(count_files("tmp"), 0);
  mxgw_queue_free(q);
}

Test(queue, recovery_requeues_active_and_lock_is_exclusive) {
  mxgw_queue *q = open_q(0);
  char id[32];
  mxgw_queue_msg *m = NULL;
  cr_assert_eq(qh_write(q, &m, id), MXGW_OK);
  cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  cr_assert_eq(mxgw_queue_save(q, e), MXGW_OK);
  mxgw_queue_entry_free(e);
  /* a second owner is refused while the first runs */
  mxgw_queue *q2;
  mxgw_queue_new(&q2, spool, NULL);
  cr_assert_eq(mxgw_queue_open(q2), MXGW_E_BUSY);
  mxgw_queue_free(q2);
  mxgw_queue_free(q); /* "crash" with the message active */
  q = open_q(0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_RECOVERED_ACTIVE), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 0);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  int64_t v;
  mxgw_queue_entry_get_int(e, MXGW_QKEY_STATE, &v);
  cr_assert_eq(v, MXGW_QSTATE_INCOMING);
  mxgw_queue_entry_rcpt_get_int(e, 0, MXGW_QRKEY_STATE, &v);
  cr_assert_eq(v, MXGW_RCPT_DELIVERED, "saved recipient state survives");
  cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id));
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

static void put(const char *sub, const char *name, const char *text) {
  char path[500];
  snprintf(path, sizeof path, "%s/%s/%s", spool, sub, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

static int exists(const char *sub, const char *name) {
  char path[500];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s/%s", spool, sub, name);
  return stat(path, &st) == 0;
}

Test(queue, recovery_quarantines_and_reunites) {
  mxgw_queue *q = open_q(0);
  char id[32];
  mxgw_queue_msg *m = NULL;
  cr_assert_eq(qh_write(q, &m, id), MXGW_OK);
  cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_HOLD, id, 0), 1);
  mxgw_queue_free(q);
  /* an interrupted move: body already in deferred/, metadata in hold/ */
  char from[400], to[400];
  snprintf(from, sizeof from, "%s/hold/%s", spool, id);
  snprintf(to, sizeof to, "%s/deferred/%s", spool, id);
  cr_assert_eq(rename(from, to), 0);
  put("deferred", "0000000000AAA0000000001", "lone body\r\n");
  put("hold", "0000000000AAA0000000002.json",
      "{\"id\":\"0000000000AAA0000000002\",\"sender\":\"\",\"recipients\":"
      "[{\"addr\":\"a@b\",\"state\":\"pending\"}]}");
  put("failed", "0000000000AAA0000000003", "body\r\n");
  put("failed", "0000000000AAA0000000003.json", "{not json");
  put("tmp", "0000000000AAA0000000004", "half-written body");
  /* an uncommitted message (killed between its two renames): no 250 was
     given, its tmp/ metadata explains the lone body, which is removed */
  put("incoming", "0000000000AAA0000000005", "body");
  put("tmp", "0000000000AAA0000000005.json", "{}");
  q = open_q(0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 4);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_ORPHANS_REMOVED), 3);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_RECOVERED), 1);
  cr_assert(exists("corrupt", "0000000000AAA0000000001"));
  cr_assert(exists("corrupt", "0000000000AAA0000000002.json"));
  cr_assert(exists("corrupt", "0000000000AAA0000000003"));
  cr_assert(exists("corrupt", "0000000000AAA0000000003.json"));
  cr_assert_not(exists("incoming", "0000000000AAA0000000005"));
  cr_assert_eq(count_files("tmp"), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_HOLD), 1);
  cr_assert(exists("hold", id), "body reunited with its metadata");
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id));
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

Test(queue, operator_actions) {
  mxgw_queue *q = open_q(0);
  char ids[4][32];
  for (int i = 0; i < 4; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(qh_write(q, &m, ids[i]), MXGW_OK);
    cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
  }
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_HOLD, NULL, 0), 4);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_HOLD), 4);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_RELEASE, ids[0], 0), 1);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_RELEASE, ids[0], 0),
               MXGW_E_STATE);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_DELETE, NULL,
                                 MXGW_QSTATE_HOLD), 3);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_DELETE, ids[1], 0),
               MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_HOLD), 0);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_DELETE, "bad/../id", 0),
               MXGW_E_INVAL);
  cr_assert_eq(count_files("tmp"), 0);
  mxgw_queue_free(q);
}

Test(queue, disk_full_is_distinct_and_leaves_nothing) {
  if (mount("tmpfs", spool, "tmpfs", 0, "size=1m") != 0)
    cr_skip_test("cannot mount a tmpfs here: %s", strerror(errno));
  mxgw_queue *q = open_q(0);
  int nospace = 0, committed = 0;
  for (int i = 0; i < 40 && !nospace; i++) {
    mxgw_queue_msg *m = NULL;
    char id[32];
    int rc = qh_write(q, &m, id);
    if (rc == MXGW_OK)
      rc = mxgw_queue_commit(m);
    if (rc == MXGW_OK)
      committed++;
    else if (rc == MXGW_E_NOSPACE)
      nospace = 1;
    else
      cr_assert_fail("unexpected %s", mxgw_errname(rc));
  }
  cr_assert(nospace, "1 MiB never filled");
  cr_assert_str_eq(mxgw_errname(MXGW_E_NOSPACE), "MXGW_E_NOSPACE");
  cr_assert_eq(count_files("tmp"), 0, "temporary files left behind");
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), committed);
  cr_assert_eq(count_files("incoming"), 2 * committed);
  /* what was committed is intact */
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  mxgw_queue_iter_new(q, MXGW_QSTATE_INCOMING, &it);
  while (mxgw_queue_iter_next(it, &e) == 1)
    cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH),
                            get_s(e, MXGW_QKEY_ID)));
  mxgw_queue_iter_free(it);
  mxgw_queue_free(q);
  cr_assert_eq(umount(spool), 0);
}
