/* SPDX-License-Identifier: MIT */
/*
 * test_queue_journal.c: Criterion tests of the queue's incoming journal
 * (MXGW_QOPT_JOURNAL): byte-exact round trip through take() and
 * mxgw_queue_entry_body() at the size limits, the journal counters and
 * shared fdatasyncs of concurrent committers (also 400 at once, and 1500
 * asynchronous ones), delivered messages leaving (and segment files going
 * away in order), deferred/failed/saved messages written out as files,
 * recovery at open (journal on and off, after free without finishing and
 * after a child's _exit, done records across segments), torn segment tails,
 * interrupted spills, a record that checks out but does not load, the
 * on-disk record format checked with an independent CRC-32C, operator
 * handles (owner 0) listing and reading journal messages (also while the
 * owner works, and of a dead owner), manage() refusing them, MAX_MSGS
 * overflow to files, ID order of mixed listings, take() not starving
 * incoming/ and deferred/, options, a spool from before the journal, and
 * commits racing deliveries on small segments.
 *
 * Where recovery with the journal on may either write the messages out as
 * files or keep them in the journal, the tests accept both and check what a
 * user sees: count, state, byte-exact body through mxgw_queue_entry_body().
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue_helper.h"

static char spool[256];


static void setup(void) {
  snprintf(spool, sizeof spool, "/tmp/mxgw-journal-test.XXXXXX");
  cr_assert_not_null(mkdtemp(spool));
}

static void teardown(void) {
  if (qh_rm_rf(spool) != 0)
    cr_log_warn("cleanup of %s failed", spool);
}

TestSuite(journal, .init = setup, .fini = teardown, .timeout = 180);

/* Options for open_jq(): 0 leaves the library's default. */
typedef struct jopts {
  int journal;     /* MXGW_QOPT_JOURNAL */
  int noowner;     /* MXGW_QOPT_OWNER 0: an operator tool */
  int workers;
  int64_t max_body, segment, max_msgs;
} jopts;

static mxgw_queue *open_with(jopts o) {
  mxgw_queue *q;
  cr_assert_eq(mxgw_queue_new(&q, spool, NULL), MXGW_OK);
  cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, o.workers),
               MXGW_OK);
  cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL, o.journal), MXGW_OK);
  if (o.noowner)
    cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_OWNER, 0), MXGW_OK);
  if (o.max_body)
    cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL_MAX_BODY, o.max_body),
                 MXGW_OK);
  if (o.segment)
    cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL_SEGMENT, o.segment),
                 MXGW_OK);
  if (o.max_msgs)
    cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL_MAX_MSGS, o.max_msgs),
                 MXGW_OK);
  int rc = mxgw_queue_open(q);
  cr_assert_eq(rc, MXGW_OK, "open: %s", mxgw_errname(rc));
  return q;
}

static mxgw_queue *open_jq(void) { return open_with((jopts){.journal = 1}); }

static int count_files(const char *sub) {
  int n = qh_count_entries(spool, sub);
  cr_assert_geq(n, 0, "%s/%s", spool, sub);
  return n;
}

/* Path of the newest segment (highest name) in journal/, and its size. */
static int64_t last_segment(char *path, size_t n) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/journal", spool);
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  char best[256] = "";
  struct dirent *de;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.' && strcmp(de->d_name, best) > 0)
      snprintf(best, sizeof best, "%s", de->d_name);
  closedir(d);
  cr_assert_neq(best[0], '\0', "no segment in journal/");
  snprintf(path, n, "%s/%s", dir, best);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  return (int64_t)st.st_size;
}

static int exists(const char *sub, const char *name) {
  char path[500];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s/%s", spool, sub, name);
  return stat(path, &st) == 0;
}

static int64_t stat_of(mxgw_queue *q, int key) {
  int64_t v = -1;
  cr_assert_eq(mxgw_queue_get_int(q, key, &v), MXGW_OK);
  return v;
}

static int64_t get_i(const mxgw_queue_entry *e, int key) {
  int64_t v = -1;
  cr_assert_eq(mxgw_queue_entry_get_int(e, key, &v), MXGW_OK, "key %d", key);
  return v;
}

static int64_t rcpt_i(const mxgw_queue_entry *e, size_t idx, int key) {
  int64_t v = -1;
  cr_assert_eq(mxgw_queue_entry_rcpt_get_int(e, idx, key, &v), MXGW_OK);
  return v;
}

static const char *get_s(const mxgw_queue_entry *e, int key) {
  const char *p = NULL;
  size_t l;
  cr_assert_eq(mxgw_queue_entry_get_str(e, key, &p, &l), MXGW_OK, "key %d",
               key);
  return p;
}

/* Deterministic binary body (every octet value, NULs, bare CR/LF). */
static unsigned char *make_body(size_t len, uint32_t seed) {
  unsigned char *b = malloc(len ? len : 1);
  cr_assert_not_null(b);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b[i] = (unsigned char)(x >> 11);
  }
  return b;
}

/* Begin, write `len` octets in uneven chunks, envelope with two
 * recipients, commit; the ID goes to id[32]. */
static int commit_bytes(mxgw_queue *q, const unsigned char *body, size_t len,
                        char *id) {
  mxgw_queue_msg *m = NULL;
  int rc = mxgw_queue_begin(q, &m);
  if (rc != MXGW_OK)
    return rc;
  const char *p;
  size_t l;
  mxgw_queue_msg_id(m, &p, &l);
  snprintf(id, 32, "%s", p);
  for (size_t off = 0, step = 1; off < len; step = step * 3 + 1) {
    size_t n = step % 9001 + 1;
    if (n > len - off)
      n = len - off;
    if ((rc = mxgw_queue_write(m, body + off, n)) != MXGW_OK) {
      mxgw_queue_msg_free(m);
      return rc;
    }
    off += n;
  }
  mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "alice@example.org", 17);
  mxgw_queue_msg_set_str(m, MXGW_QKEY_CLIENT_ADDR, "192.0.2.7", 9);
  mxgw_queue_msg_set_str(m, MXGW_QKEY_TLS_JSON, "{\"protocol\":\"TLSv1.3\"}",
                         22);
  mxgw_queue_msg_add_rcpt(m, "info@example.net", 16, 0, NULL, 0);
  mxgw_queue_msg_add_rcpt(m, "bob@example.net", 15, MXGW_NOTIFY_FAILURE,
                          "rfc822;bob@example.net", 22);
  return mxgw_queue_commit(m);
}

/* Commit qh_write()'s deterministic body (checked with qh_check_body). */
static void commit_qh(mxgw_queue *q, char *id) {
  mxgw_queue_msg *m = NULL;
  cr_assert_eq(qh_write(q, &m, id), MXGW_OK);
  cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
}

/* The body as a user reads it: mxgw_queue_entry_body() + pread(). */
static unsigned char *read_body(const mxgw_queue_entry *e, int64_t *len) {
  int fd = -1;
  int64_t off = -1;
  int rc = mxgw_queue_entry_body(e, &fd, &off, len);
  cr_assert_eq(rc, MXGW_OK, "entry_body: %s", mxgw_errname(rc));
  cr_assert_geq(fd, 0);
  cr_assert_geq(off, 0);
  cr_assert_geq(*len, 0);
  unsigned char *b = malloc((size_t)*len + 1);
  cr_assert_not_null(b);
  for (int64_t done = 0; done < *len;) {
    ssize_t r = pread(fd, b + done, (size_t)(*len - done), (off_t)(off + done));
    cr_assert_gt(r, 0, "short body: %lld of %lld", (long long)done,
                 (long long)*len);
    done += r;
  }
  close(fd);
  return b;
}

static void assert_body(const mxgw_queue_entry *e, const unsigned char *want,
                        size_t len) {
  int64_t got_len;
  unsigned char *got = read_body(e, &got_len);
  cr_assert_eq(got_len, (int64_t)len, "body length %lld, want %zu",
               (long long)got_len, len);
  cr_assert(len == 0 || memcmp(got, want, len) == 0, "body differs");
  free(got);
}

/* 1 if the body read through entry_body is qh_body(id). */
static int qh_entry_ok(const mxgw_queue_entry *e) {
  const char *id = get_s(e, MXGW_QKEY_ID);
  int64_t len;
  unsigned char *got = read_body(e, &len);
  size_t size = qh_body_size(id);
  int ok = len == (int64_t)size;
  unsigned char *want = malloc(size);
  qh_body(id, 0, want, size);
  if (ok)
    ok = memcmp(got, want, size) == 0;
  free(want);
  free(got);
  return ok;
}

/* A recovered message reads back intact wherever it now is: a file in
 * incoming/ (also through MXGW_QKEY_BODY_PATH) or, with the journal on, a
 * record the owner indexed again at open. */
static void assert_recovered(const mxgw_queue_entry *e) {
  const char *id = get_s(e, MXGW_QKEY_ID);
  cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_INCOMING, "%s", id);
  cr_assert(qh_entry_ok(e), "%s: body differs", id);
  if (!get_i(e, MXGW_QKEY_IN_JOURNAL))
    cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id), "%s", id);
}

static void deliver_all(mxgw_queue_entry *e) {
  int64_t n = get_i(e, MXGW_QKEY_RCPT_COUNT);
  for (int64_t i = 0; i < n; i++)
    cr_assert_eq(mxgw_queue_entry_set_rcpt(e, (size_t)i, MXGW_RCPT_DELIVERED,
                                           250, "2.0.0", "Saved"),
                 MXGW_OK);
}

/* ------------------------------------------------------------------------ */

Test(journal, round_trip_byte_exact_at_the_size_limits) {
  enum { MAXB = 100000 }; /* not a power of two on purpose */
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_body = MAXB});
  const size_t sizes[] = {0, 1, 65535, 65537, MAXB, MAXB + 1};
  enum { N = sizeof sizes / sizeof *sizes };
  unsigned char *bodies[N];
  char ids[N][32];
  for (int i = 0; i < N; i++) {
    bodies[i] = make_body(sizes[i], (uint32_t)i + 7);
    int rc = commit_bytes(q, bodies[i], sizes[i], ids[i]);
    cr_assert_eq(rc, MXGW_OK, "size %zu: %s", sizes[i], mxgw_errname(rc));
  }
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMITS), N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), N - 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), N - 1);
  cr_assert_eq(count_files("tmp"), 0);
  cr_assert_eq(count_files("incoming"), 2, "only MAX_BODY+1 as files");
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N);
  /* loaded before delivery: metadata and body */
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK, "%s", ids[i]);
    int in_j = sizes[i] <= MAXB;
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), in_j, "size %zu", sizes[i]);
    cr_assert_eq(get_i(e, MXGW_QKEY_SIZE), (int64_t)sizes[i]);
    cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_INCOMING);
    cr_assert_eq(get_i(e, MXGW_QKEY_RCPT_COUNT), 2);
    cr_assert_str_eq(get_s(e, MXGW_QKEY_SENDER), "alice@example.org");
    cr_assert_str_eq(get_s(e, MXGW_QKEY_TLS_JSON), "{\"protocol\":\"TLSv1.3\"}");
    const char *p;
    size_t l;
    if (in_j) {
      cr_assert_eq(mxgw_queue_entry_get_str(e, MXGW_QKEY_BODY_PATH, &p, &l),
                   MXGW_E_NOTFOUND, "a journal message has no body file");
    } else {
      cr_assert_eq(mxgw_queue_entry_get_str(e, MXGW_QKEY_BODY_PATH, &p, &l),
                   MXGW_OK);
      cr_assert(strstr(p, "/incoming/") != NULL, "%s", p);
    }
    assert_body(e, bodies[i], sizes[i]);
    mxgw_queue_entry_free(e);
  }
  /* take every one, each exactly once, and read it as a deliverer does */
  int taken[N] = {0};
  for (int k = 0; k < N; k++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK, "take %d", k);
    const char *id = get_s(e, MXGW_QKEY_ID);
    int i = 0;
    while (i < N && strcmp(ids[i], id))
      i++;
    cr_assert_lt(i, N, "take %d: unknown ID %s", k, id);
    cr_assert_eq(taken[i]++, 0, "%s taken twice", id);
    cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_ACTIVE);
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), sizes[i] <= MAXB);
    assert_body(e, bodies[i], sizes[i]);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), N);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  for (int i = 0; i < N; i++)
    free(bodies[i]);
  mxgw_queue_free(q);
}

Test(journal, default_max_body_is_one_mebibyte) {
  mxgw_queue *q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QOPT_JOURNAL_MAX_BODY), 1 << 20);
  size_t sizes[2] = {1 << 20, (1 << 20) + 1};
  for (int i = 0; i < 2; i++) {
    unsigned char *b = make_body(sizes[i], 99u + (uint32_t)i);
    char id[32];
    cr_assert_eq(commit_bytes(q, b, sizes[i], id), MXGW_OK);
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), i == 0);
    assert_body(e, b, sizes[i]);
    mxgw_queue_entry_free(e);
    free(b);
  }
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

Test(journal, concurrent_committers_share_fdatasyncs) {
  mxgw_queue *q = open_jq();
  enum { T = 16, N = 12 };
  pthread_t th[T];
  struct thr a[T];
  int64_t f0 = stat_of(q, MXGW_QSTAT_FILE_SYNCS);
  int64_t d0 = stat_of(q, MXGW_QSTAT_DIR_SYNCS);
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
  int64_t files = stat_of(q, MXGW_QSTAT_FILE_SYNCS) - f0;
  int64_t dirs = stat_of(q, MXGW_QSTAT_DIR_SYNCS) - d0;
  int64_t batches = stat_of(q, MXGW_QSTAT_BATCHES);
  cr_log_info("%d journal commits: %lld file syncs, %lld dir syncs, %lld "
              "batches", T * N, (long long)files, (long long)dirs,
              (long long)batches);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMITS), T * N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), T * N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), T * N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMIT_ERRORS), 0);
  cr_assert_lt(files, T * N, "no sharing: %lld fdatasyncs for %d commits",
               (long long)files, T * N);
  cr_assert_geq(batches, 1);
  cr_assert_leq(files, batches, "more than one fdatasync per group commit");
  cr_assert_lt(dirs, 4, "journal commits need no directory fsync each");
  cr_assert_eq(count_files("incoming"), 0);
  cr_assert_eq(count_files("tmp"), 0);
  /* every one readable and intact */
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  int seen = 0;
  cr_assert_eq(mxgw_queue_iter_new(q, MXGW_QSTATE_INCOMING, &it), MXGW_OK);
  while (mxgw_queue_iter_next(it, &e) == 1) {
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 1);
    cr_assert(qh_entry_ok(e), "%s", get_s(e, MXGW_QKEY_ID));
    seen++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(seen, T * N);
  mxgw_queue_free(q);
}

Test(journal, delivered_is_gone_and_stays_gone) {
  mxgw_queue *q = open_jq();
  char id[32];
  commit_qh(q, id);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id);
  cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  deliver_all(e);
  int64_t f0 = stat_of(q, MXGW_QSTAT_FILE_SYNCS);
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_FILE_SYNCS), f0,
               "a done record has no sync of its own (docs/queue.md)");
  int fd;
  int64_t off, len;
  cr_assert_eq(mxgw_queue_entry_body(e, &fd, &off, &len), MXGW_E_NOTFOUND);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_E_NOTFOUND);
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++)
    cr_assert_eq(mxgw_queue_count(q, s), 0, "%s", mxgw_queue_state_name(s));
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SPILLS), 0);
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_E_NOTFOUND);
  mxgw_queue_free(q);
  /* the done record keeps it from coming back at the next open */
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 0);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  cr_assert_eq(count_files("incoming"), 0);
  mxgw_queue_free(q);
}

Test(journal, segments_are_removed_in_order_once_finished) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .segment = 64 << 10});
  enum { N = 40, SZ = 8000 };
  char ids[N][32];
  unsigned char *b = make_body(SZ, 5);
  for (int i = 0; i < N; i++)
    cr_assert_eq(commit_bytes(q, b, SZ, ids[i]), MXGW_OK);
  int segs = count_files("journal");
  cr_log_info("%d segments for %d x %d octets", segs, N, SZ);
  cr_assert_geq(segs, 4, "segment size 64 KiB not honoured: %d files", segs);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS), segs);
  mxgw_queue_entry *es[N];
  for (int i = 0; i < N; i++) {
    cr_assert_eq(mxgw_queue_take(q, 0, &es[i]), MXGW_OK);
    cr_assert_str_eq(get_s(es[i], MXGW_QKEY_ID), ids[i]);
  }
  /* newest first: no segment may go while the oldest is still live */
  for (int i = N - 1; i >= 1; i--) {
    deliver_all(es[i]);
    cr_assert_eq(mxgw_queue_finish(q, es[i], 0), 0);
    mxgw_queue_entry_free(es[i]);
  }
  cr_assert_eq(count_files("journal"), segs,
               "a segment was removed while an older one is live");
  /* the oldest message still reads correctly */
  assert_body(es[0], b, SZ);
  deliver_all(es[0]);
  cr_assert_eq(mxgw_queue_finish(q, es[0], 0), 0);
  mxgw_queue_entry_free(es[0]);
  cr_assert_eq(count_files("journal"), 1, "finished segments not removed");
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS), 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 0);
  mxgw_queue_entry *e;
  for (int i = 0; i < N; i++)
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_E_NOTFOUND);
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++)
    cr_assert_eq(mxgw_queue_count(q, s), 0);
  mxgw_queue_free(q);
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 0);
  cr_assert_eq(count_files("incoming"), 0);
  mxgw_queue_free(q);
  free(b);
}

Test(journal, deferred_is_spilled_with_its_new_metadata) {
  mxgw_queue *q = open_jq();
  size_t sz = 30000;
  unsigned char *b = make_body(sz, 11);
  char id[32];
  cr_assert_eq(commit_bytes(q, b, sz, id), MXGW_OK);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 1000, &e), MXGW_OK);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "Saved");
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.4.1",
                            "Connection refused");
  int64_t f0 = stat_of(q, MXGW_QSTAT_FILE_SYNCS);
  int64_t d0 = stat_of(q, MXGW_QSTAT_DIR_SYNCS);
  cr_assert_eq(mxgw_queue_finish(q, e, 5000), MXGW_QSTATE_DEFERRED);
  /* durable before the journal lets go: body and metadata fdatasynced,
   * deferred/ fsynced */
  cr_assert_geq(stat_of(q, MXGW_QSTAT_FILE_SYNCS) - f0, 2);
  cr_assert_geq(stat_of(q, MXGW_QSTAT_DIR_SYNCS) - d0, 1);
  /* the same entry now points at the file */
  cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 0);
  assert_body(e, b, sz);
  mxgw_queue_entry_free(e);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SPILLS), 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 0);
  cr_assert(exists("deferred", id));
  char name[64];
  snprintf(name, sizeof name, "%s.json", id);
  cr_assert(exists("deferred", name));
  cr_assert_eq(count_files("deferred"), 2);
  cr_assert_eq(count_files("tmp"), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), 1);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_DEFERRED);
  cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 0);
  cr_assert_eq(get_i(e, MXGW_QKEY_ATTEMPTS), 1);
  cr_assert_eq(get_i(e, MXGW_QKEY_NEXT_ATTEMPT), 5000);
  cr_assert_eq(get_i(e, MXGW_QKEY_SIZE), (int64_t)sz);
  cr_assert_eq(rcpt_i(e, 0, MXGW_QRKEY_STATE), MXGW_RCPT_DELIVERED);
  cr_assert_eq(rcpt_i(e, 1, MXGW_QRKEY_STATE), MXGW_RCPT_DEFERRED);
  cr_assert_eq(rcpt_i(e, 1, MXGW_QRKEY_CODE), 451);
  cr_assert_eq(rcpt_i(e, 1, MXGW_QRKEY_NOTIFY), MXGW_NOTIFY_FAILURE);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_SENDER), "alice@example.org");
  cr_assert_str_eq(get_s(e, MXGW_QKEY_TLS_JSON), "{\"protocol\":\"TLSv1.3\"}");
  const char *p = get_s(e, MXGW_QKEY_BODY_PATH);
  cr_assert(strstr(p, "/deferred/") != NULL, "%s", p);
  assert_body(e, b, sz);
  mxgw_queue_entry_free(e);
  /* the next attempt works as for any file message */
  cr_assert_eq(mxgw_queue_take(q, 4999, &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_take(q, 5000, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id);
  assert_body(e, b, sz);
  deliver_all(e);
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
  mxgw_queue_entry_free(e);
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++)
    cr_assert_eq(mxgw_queue_count(q, s), 0);
  mxgw_queue_free(q);
  /* "moved": not recovered a second time */
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 0);
  cr_assert_eq(count_files("incoming"), 0);
  mxgw_queue_free(q);
  free(b);
}

Test(journal, failed_is_spilled_to_failed) {
  mxgw_queue *q = open_jq();
  char id[32];
  commit_qh(q, id);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_FAILED, 550, "5.1.1",
                            "User unknown");
  cr_assert_eq(mxgw_queue_finish(q, e, 0), MXGW_QSTATE_FAILED);
  mxgw_queue_entry_free(e);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SPILLS), 1);
  cr_assert_eq(count_files("failed"), 2);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_FAILED), 1);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_FAILED);
  cr_assert_eq(get_i(e, MXGW_QKEY_ATTEMPTS), 1);
  cr_assert_eq(rcpt_i(e, 1, MXGW_QRKEY_STATE), MXGW_RCPT_FAILED);
  cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id));
  mxgw_queue_entry_free(e);
  /* an operator can requeue it like any failed message */
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_REQUEUE, id, 0), 1);
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id);
  cr_assert_eq(rcpt_i(e, 1, MXGW_QRKEY_STATE), MXGW_RCPT_PENDING);
  cr_assert(qh_entry_ok(e));
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

Test(journal, save_writes_files_to_active_then_finish_works) {
  mxgw_queue *q = open_jq();
  char id[32], id2[32];
  commit_qh(q, id);
  commit_qh(q, id2);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  cr_assert_eq(mxgw_queue_save(q, e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 0);
  cr_assert(exists("active", id));
  cr_assert_eq(count_files("active"), 2);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SPILLS), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 1);
  const char *p = get_s(e, MXGW_QKEY_BODY_PATH);
  cr_assert(strstr(p, "/active/") != NULL, "%s", p);
  cr_assert(qh_check_body(p, id));
  cr_assert(qh_entry_ok(e));
  /* a second save rewrites the file's metadata */
  cr_assert_eq(mxgw_queue_save(q, e), MXGW_OK);
  cr_assert_eq(count_files("active"), 2);
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
  mxgw_queue_entry_free(e);
  cr_assert_eq(count_files("active"), 0);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_E_NOTFOUND);
  /* saved, then the process dies: back in incoming/ once, with the
   * saved recipient state, not a second time from the journal */
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id2);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  cr_assert_eq(mxgw_queue_save(q, e), MXGW_OK);
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_RECOVERED_ACTIVE), 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 1);
  cr_assert_eq(count_files("incoming"), 2);
  cr_assert_eq(mxgw_queue_load(q, id2, &e), MXGW_OK);
  cr_assert_eq(rcpt_i(e, 0, MXGW_QRKEY_STATE), MXGW_RCPT_DELIVERED);
  cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id2));
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

/* Commit n, take `taken` of them, deliver one more (done) if `deliver`:
 * then the handle is freed without finishing; returns the delivered ID in
 * gone[32] (or ""). */
static void leave_journal(int n, int taken, int deliver, char (*ids)[32],
                          char *gone) {
  mxgw_queue *q = open_jq();
  for (int i = 0; i < n; i++)
    commit_qh(q, ids[i]);
  gone[0] = '\0';
  if (deliver) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
    snprintf(gone, 32, "%s", get_s(e, MXGW_QKEY_ID));
    deliver_all(e);
    cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
    mxgw_queue_entry_free(e);
  }
  for (int i = 0; i < taken; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
    mxgw_queue_entry_free(e); /* active, never finished */
  }
  cr_assert_eq(count_files("incoming"), 0);
  mxgw_queue_free(q);
}

/* After reopening: the n messages (but `gone`) are incoming, once each,
 * intact. With `files` (the journal off) all of them as files and no
 * segment left; with the journal on they may also stay in the journal. */
static void check_recovered(mxgw_queue *q, int n, char (*ids)[32],
                            const char *gone, int files) {
  int want = n - (gone[0] != '\0');
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), want);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_RECOVERED), want);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), want);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 0);
  cr_assert_eq(count_files("tmp"), 0);
  cr_assert_eq(count_files("corrupt"), 0);
  int nj = 0;
  for (int i = 0; i < n; i++) {
    mxgw_queue_entry *e;
    if (!strcmp(ids[i], gone)) {
      cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_E_NOTFOUND,
                   "delivered message came back");
      continue;
    }
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK, "%s", ids[i]);
    int in_j = (int)get_i(e, MXGW_QKEY_IN_JOURNAL);
    cr_assert(!files || !in_j, "%s still in the journal", ids[i]);
    nj += in_j;
    cr_assert_eq(get_i(e, MXGW_QKEY_ATTEMPTS), 0);
    cr_assert_eq(get_i(e, MXGW_QKEY_RCPT_COUNT), 2);
    cr_assert_str_eq(get_s(e, MXGW_QKEY_SENDER), "alice@example.org");
    assert_recovered(e);
    mxgw_queue_entry_free(e);
  }
  cr_assert_eq(count_files("incoming"), 2 * (want - nj));
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), nj);
  if (files)
    cr_assert_eq(count_files("journal"), 0, "segments left behind");
  else
    cr_assert_eq(count_files("journal"),
                 stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS));
}

Test(journal, recovery_with_the_journal_on) {
  enum { N = 12 };
  char ids[N][32], gone[32];
  leave_journal(N, 3, 1, ids, gone);
  mxgw_queue *q = open_jq();
  check_recovered(q, N, ids, gone, 0);
  /* the recovered ones are delivered, all but `keep` (taken, never
   * finished), and a new one is committed */
  char keep[32] = "", nid[32];
  for (int k = 0; k < N - 1; k++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
    if (k == 4) {
      snprintf(keep, sizeof keep, "%s", get_s(e, MXGW_QKEY_ID));
    } else {
      deliver_all(e);
      cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
    }
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_E_NOTFOUND);
  commit_qh(q, nid);
  cr_assert_eq(count_files("journal"), stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS));
  mxgw_queue_free(q);
  /* a second open: exactly `keep` and the new one, nothing twice */
  q = open_jq();
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 2);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_RECOVERED), 2);
  const char *two[2] = {keep, nid};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(mxgw_queue_load(q, two[i], &e), MXGW_OK, "%s", two[i]);
    assert_recovered(e);
    mxgw_queue_entry_free(e);
  }
  for (int i = 0; i < N; i++)
    if (strcmp(ids[i], keep)) {
      cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_E_NOTFOUND,
                   "delivered %s came back", ids[i]);
    }
  /* once everything is delivered, one segment is left */
  while (mxgw_queue_take(q, 0, &e) == MXGW_OK) {
    deliver_all(e);
    cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
    mxgw_queue_entry_free(e);
  }
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 0);
  cr_assert_eq(count_files("journal"), 1, "finished segments left behind");
  cr_assert_eq(count_files("incoming"), 0);
  mxgw_queue_free(q);
}

Test(journal, recovery_with_the_journal_off) {
  enum { N = 7 };
  char ids[N][32], gone[32];
  leave_journal(N, 2, 1, ids, gone);
  mxgw_queue *q = open_with((jopts){.journal = 0});
  check_recovered(q, N, ids, gone, 1);
  char id[32];
  commit_qh(q, id);
  cr_assert_eq(count_files("journal"), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), 0);
  mxgw_queue_free(q);
}

Test(journal, recovery_after_the_writer_process_exits) {
  enum { N = 9 };
  int pfd[2];
  cr_assert_eq(pipe(pfd), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(pfd[0]);
    mxgw_queue *q;
    if (mxgw_queue_new(&q, spool, NULL) != MXGW_OK ||
        mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0) != MXGW_OK ||
        mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL, 1) != MXGW_OK ||
        mxgw_queue_open(q) != MXGW_OK)
      _exit(3);
    for (int i = 0; i < N; i++) {
      mxgw_queue_msg *m = NULL;
      char id[32];
      if (qh_write(q, &m, id) != MXGW_OK || mxgw_queue_commit(m) != MXGW_OK)
        _exit(4);
      if (write(pfd[1], id, 32) != 32)
        _exit(5);
    }
    _exit(0); /* no free, no finish: as if killed */
  }
  close(pfd[1]);
  char ids[N][32];
  int got = 0;
  while (got < N && read(pfd[0], ids[got], 32) == 32)
    got++;
  close(pfd[0]);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
  cr_assert_eq(got, N);
  cr_assert_eq(count_files("incoming"), 0, "the child used the journal");
  mxgw_queue *q = open_jq();
  check_recovered(q, N, ids, "", 0);
  mxgw_queue_free(q);
}

/* Commit three into the journal and free; returns the segment's path, its
 * size and the offset where the third record starts. */
static int64_t three_in_journal(char (*ids)[32], char *seg, size_t segn,
                                int64_t *third) {
  mxgw_queue *q = open_jq();
  char p[512];
  commit_qh(q, ids[0]);
  commit_qh(q, ids[1]);
  *third = last_segment(p, sizeof p);
  commit_qh(q, ids[2]);
  mxgw_queue_free(q);
  return last_segment(seg, segn);
}

static void check_two_of_three(char (*ids)[32]) {
  mxgw_queue *q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 2);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 2);
  cr_assert_eq(count_files("corrupt"), 0, "nothing invalid appears");
  mxgw_queue_entry *e;
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    assert_recovered(e);
    mxgw_queue_entry_free(e);
  }
  cr_assert_eq(mxgw_queue_load(q, ids[2], &e), MXGW_E_NOTFOUND);
  mxgw_queue_free(q);
}

Test(journal, torn_tail_truncated_record) {
  char ids[3][32], seg[512];
  int64_t third;
  int64_t size = three_in_journal(ids, seg, sizeof seg, &third);
  cr_assert_gt(size, third + 64);
  /* the third record's write never finished */
  cr_assert_eq(truncate(seg, (off_t)(size - 7)), 0);
  check_two_of_three(ids);
}

Test(journal, torn_tail_half_header) {
  char ids[3][32], seg[512];
  int64_t third;
  three_in_journal(ids, seg, sizeof seg, &third);
  cr_assert_eq(truncate(seg, (off_t)(third + 30)), 0);
  check_two_of_three(ids);
}

Test(journal, torn_tail_bad_crc) {
  char ids[3][32], seg[512];
  int64_t third;
  int64_t size = three_in_journal(ids, seg, sizeof seg, &third);
  int fd = open(seg, O_RDWR);
  cr_assert_geq(fd, 0);
  unsigned char c;
  off_t at = (off_t)(third + (size - third) / 2);
  cr_assert_eq(pread(fd, &c, 1, at), 1);
  c ^= 0x20;
  cr_assert_eq(pwrite(fd, &c, 1, at), 1);
  close(fd);
  check_two_of_three(ids);
}

Test(journal, torn_tail_garbage_appended) {
  char ids[3][32], seg[512];
  int64_t third;
  three_in_journal(ids, seg, sizeof seg, &third);
  int fd = open(seg, O_WRONLY | O_APPEND);
  cr_assert_geq(fd, 0);
  /* garbage that starts like a record */
  unsigned char junk[200];
  memset(junk, 0xA5, sizeof junk);
  memcpy(junk, "MXJ1\x01\0\0\0", 8);
  cr_assert_eq(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
  close(fd);
  mxgw_queue *q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 3);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 3);
  cr_assert_eq(count_files("corrupt"), 0);
  for (int i = 0; i < 3; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    assert_recovered(e);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
}

/* finish() to deferred, then cut the "moved" record off the segment: the
 * state of a crash after the spill's renames, before its record. */
Test(journal, spill_interrupted_before_moved_is_not_duplicated) {
  mxgw_queue *q = open_jq();
  char id[32], other[32], seg[512];
  commit_qh(q, id);
  commit_qh(q, other);
  int64_t before = last_segment(seg, sizeof seg);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), id);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.4.1", "later");
  cr_assert_eq(mxgw_queue_finish(q, e, 5000), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
  int64_t after = last_segment(seg, sizeof seg);
  cr_assert_eq(after, before + 64, "one 64-octet moved record");
  cr_assert_eq(truncate(seg, (off_t)before), 0);
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 1); /* `other` */
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 1);
  cr_assert_eq(count_files("deferred"), 2);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_DEFERRED);
  cr_assert_eq(get_i(e, MXGW_QKEY_ATTEMPTS), 1);
  cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id));
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

/* Killed between the spill's two renames: the body is in deferred/, its
 * metadata still in tmp/, the record live. The message must survive once. */
Test(journal, spill_interrupted_between_renames_keeps_the_message) {
  char ids[3][32], seg[512];
  int64_t third;
  three_in_journal(ids, seg, sizeof seg, &third);
  const char *id = ids[1];
  size_t size = qh_body_size(id);
  unsigned char *b = malloc(size);
  qh_body(id, 0, b, size);
  char path[600];
  snprintf(path, sizeof path, "%s/deferred/%s", spool, id);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(b, 1, size, f), size);
  fclose(f);
  free(b);
  snprintf(path, sizeof path, "%s/tmp/%s.json", spool, id);
  f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f, "{\"id\":\"%s\",\"sender\":\"alice@example.org\",\"attempts\":1,"
             "\"recipients\":[{\"addr\":\"info@example.net\",\"state\":"
             "\"delivered\"},{\"addr\":\"bob@example.net\",\"state\":"
             "\"deferred\"}]}", id);
  fclose(f);
  mxgw_queue *q = open_jq();
  int total = 0;
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED; s++)
    total += mxgw_queue_count(q, s);
  cr_assert_eq(total, 3, "messages after recovery: %d", total);
  cr_assert_eq(count_files("corrupt"), 0);
  cr_assert_eq(count_files("tmp"), 0);
  for (int i = 0; i < 3; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK, "%s lost", ids[i]);
    cr_assert(qh_entry_ok(e), "%s", ids[i]);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
}

Test(journal, operator_handle_lists_and_reads_journal_messages) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_body = 1024});
  enum { N = 6 };
  char ids[N][32];
  unsigned char *bodies[N];
  size_t sizes[N];
  for (int i = 0; i < N; i++) {
    sizes[i] = i == 2 ? 5000 : (size_t)(100 * i); /* 2: a file */
    bodies[i] = make_body(sizes[i], 40u + (uint32_t)i);
    cr_assert_eq(commit_bytes(q, bodies[i], sizes[i], ids[i]), MXGW_OK);
  }
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), N - 1);
  mxgw_queue *op = open_with((jopts){.noowner = 1});
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_INCOMING), N);
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  int k = 0;
  cr_assert_eq(mxgw_queue_iter_new(op, MXGW_QSTATE_INCOMING, &it), MXGW_OK);
  while (mxgw_queue_iter_next(it, &e) == 1) {
    cr_assert_lt(k, N);
    cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), ids[k], "ID order");
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), sizes[k] <= 1024);
    cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_INCOMING);
    assert_body(e, bodies[k], sizes[k]);
    k++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(k, N);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(mxgw_queue_load(op, ids[i], &e), MXGW_OK, "%s", ids[i]);
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), sizes[i] <= 1024);
    cr_assert_eq(get_i(e, MXGW_QKEY_SIZE), (int64_t)sizes[i]);
    cr_assert_str_eq(get_s(e, MXGW_QKEY_SENDER), "alice@example.org");
    assert_body(e, bodies[i], sizes[i]);
    const char *js;
    size_t jl;
    cr_assert_eq(mxgw_queue_entry_json(e, &js, &jl), MXGW_OK);
    cr_assert(strstr(js, ids[i]) != NULL);
    /* an operator cannot save or finish what the owner delivers */
    if (sizes[i] <= 1024) {
      cr_assert_eq(mxgw_queue_save(op, e), MXGW_E_BUSY);
      cr_assert_eq(mxgw_queue_finish(op, e, 0), MXGW_E_STATE);
    }
    mxgw_queue_entry_free(e);
  }
  /* management of journal messages is refused, by either handle */
  cr_assert_eq(mxgw_queue_manage(op, MXGW_QOP_HOLD, ids[0], 0), MXGW_E_BUSY);
  cr_assert_eq(mxgw_queue_manage(op, MXGW_QOP_DELETE, ids[1], 0), MXGW_E_BUSY);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_HOLD, ids[0], 0), MXGW_E_BUSY);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_DELETE, ids[3], 0), MXGW_E_BUSY);
  cr_assert_eq(mxgw_queue_manage(op, MXGW_QOP_HOLD, ids[2], 0), 1); /* file */
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_INCOMING), N - 1);
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_HOLD), 1);
  /* taken by the owner: still refused; delivered: gone for the operator */
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), ids[0]);
  cr_assert_eq(mxgw_queue_manage(q, MXGW_QOP_HOLD, ids[0], 0), MXGW_E_BUSY);
  cr_assert_eq(mxgw_queue_manage(op, MXGW_QOP_HOLD, ids[0], 0), MXGW_E_BUSY);
  deliver_all(e);
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_load(op, ids[0], &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_manage(op, MXGW_QOP_HOLD, ids[0], 0),
               MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_INCOMING), N - 2);
  /* deferred by the owner: the operator sees it in deferred/ only */
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), ids[1]);
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.4.1", "later");
  cr_assert_eq(mxgw_queue_finish(q, e, 9999), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_INCOMING), N - 3);
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_DEFERRED), 1);
  cr_assert_eq(mxgw_queue_load(op, ids[1], &e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_DEFERRED);
  assert_body(e, bodies[1], sizes[1]);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_manage(op, MXGW_QOP_HOLD, ids[1], 0), 1);
  /* an operator handle never writes into the journal */
  char oid[32];
  cr_assert_eq(commit_bytes(op, bodies[0], sizes[0], oid), MXGW_OK);
  cr_assert_eq(stat_of(op, MXGW_QSTAT_JOURNAL_COMMITS), 0);
  cr_assert(exists("incoming", oid));
  mxgw_queue_free(op);
  mxgw_queue_free(q);
  for (int i = 0; i < N; i++)
    free(bodies[i]);
}

Test(journal, max_msgs_overflows_to_files) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_msgs = 3});
  /* refused and abandoned messages must not use up journal places */
  for (int i = 0; i < 5; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(mxgw_queue_begin(q, &m), MXGW_OK);
    mxgw_queue_write(m, "x\r\n", 3);
    if (i % 2)
      mxgw_queue_msg_free(m);
    else
      cr_assert_eq(mxgw_queue_commit(m), MXGW_E_STATE); /* no recipient */
  }
  cr_assert_eq(count_files("tmp"), 0);
  enum { N = 5 };
  char ids[N][32];
  for (int i = 0; i < N; i++)
    commit_qh(q, ids[i]);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMITS), N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), 3);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 3);
  cr_assert_eq(count_files("incoming"), 2 * (N - 3));
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N);
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), i < 3, "%d", i);
    if (i >= 3)
      cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), ids[i]));
    cr_assert(qh_entry_ok(e));
    mxgw_queue_entry_free(e);
  }
  /* a delivery of a journal message frees a place */
  mxgw_queue_entry *e;
  for (;;) {
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
    if (get_i(e, MXGW_QKEY_IN_JOURNAL))
      break;
    mxgw_queue_entry_free(e); /* a file message: stays active */
  }
  deliver_all(e);
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
  mxgw_queue_entry_free(e);
  char id[32];
  commit_qh(q, id);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 1);
  mxgw_queue_entry_free(e);
  commit_qh(q, id);
  cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
  cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), 0);
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

Test(journal, listing_merges_files_and_journal_by_id) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_body = 1024});
  enum { N = 10 };
  char ids[N][32];
  for (int i = 0; i < N; i++) {
    size_t sz = (i * 7) % 3 == 0 ? 3000 : 200;
    unsigned char *b = make_body(sz, (uint32_t)i);
    cr_assert_eq(commit_bytes(q, b, sz, ids[i]), MXGW_OK);
    free(b);
  }
  for (int i = 1; i < N; i++)
    cr_assert_lt(strcmp(ids[i - 1], ids[i]), 0, "IDs not increasing");
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_iter_new(q, MXGW_QSTATE_INCOMING, &it), MXGW_OK);
  int k = 0, inj = 0;
  while (mxgw_queue_iter_next(it, &e) == 1) {
    cr_assert_lt(k, N);
    cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), ids[k]);
    const char *id;
    size_t l;
    cr_assert_eq(mxgw_queue_iter_id(it, &id, &l), MXGW_OK);
    cr_assert_str_eq(id, ids[k]);
    inj += (int)get_i(e, MXGW_QKEY_IN_JOURNAL);
    k++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(k, N);
  cr_assert(inj > 0 && inj < N, "mixed listing: %d in the journal", inj);
  /* taken journal messages are listed as active, in order too */
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
    mxgw_queue_entry_free(e);
  }
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 3);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N - 3);
  cr_assert_eq(mxgw_queue_iter_new(q, MXGW_QSTATE_ACTIVE, &it), MXGW_OK);
  k = 0;
  while (mxgw_queue_iter_next(it, &e) == 1) {
    cr_assert_eq(get_i(e, MXGW_QKEY_STATE), MXGW_QSTATE_ACTIVE);
    k++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(k, 3);
  mxgw_queue_free(q);
}

Test(journal, options_range_and_busy) {
  mxgw_queue *q;
  cr_assert_eq(mxgw_queue_new(&q, spool, NULL), MXGW_OK);
  int64_t v;
  cr_assert_eq(mxgw_queue_get_int(q, MXGW_QOPT_JOURNAL, &v), MXGW_OK);
  cr_assert_eq(v, 0, "the journal is off by default");
  mxgw_queue_get_int(q, MXGW_QOPT_JOURNAL_MAX_BODY, &v);
  cr_assert_eq(v, 1 << 20);
  mxgw_queue_get_int(q, MXGW_QOPT_JOURNAL_SEGMENT, &v);
  cr_assert_eq(v, 32 << 20);
  mxgw_queue_get_int(q, MXGW_QOPT_JOURNAL_MAX_MSGS, &v);
  cr_assert_eq(v, 100000);
  static const struct {
    int key;
    int64_t bad[2], good[2];
  } t[] = {
      {MXGW_QOPT_JOURNAL, {-1, 2}, {0, 1}},
      {MXGW_QOPT_JOURNAL_MAX_BODY, {1023, (64 << 20) + 1}, {1024, 64 << 20}},
      {MXGW_QOPT_JOURNAL_SEGMENT,
       {(64 << 10) - 1, (1ll << 30) + 1},
       {64 << 10, 1ll << 30}},
      {MXGW_QOPT_JOURNAL_MAX_MSGS, {0, 10000001}, {1, 10000000}},
  };
  for (size_t i = 0; i < sizeof t / sizeof *t; i++)
    for (int k = 0; k < 2; k++) {
      cr_assert_eq(mxgw_queue_set_int(q, t[i].key, t[i].bad[k]), MXGW_E_RANGE,
                   "key %d value %lld", t[i].key, (long long)t[i].bad[k]);
      cr_assert_eq(mxgw_queue_set_int(q, t[i].key, t[i].good[k]), MXGW_OK,
                   "key %d value %lld", t[i].key, (long long)t[i].good[k]);
      cr_assert_eq(mxgw_queue_get_int(q, t[i].key, &v), MXGW_OK);
      cr_assert_eq(v, t[i].good[k]);
    }
  cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL_SEGMENT, 1 << 20),
               MXGW_OK);
  cr_assert_eq(mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0), MXGW_OK);
  cr_assert_eq(mxgw_queue_open(q), MXGW_OK);
  for (size_t i = 0; i < sizeof t / sizeof *t; i++)
    cr_assert_eq(mxgw_queue_set_int(q, t[i].key, t[i].good[0]), MXGW_E_BUSY);
  mxgw_queue_get_int(q, MXGW_QOPT_JOURNAL, &v);
  cr_assert_eq(v, 1, "unchanged by the refused set");
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS), 1);
  cr_assert_eq(count_files("journal"), 1);
  mxgw_queue_free(q);
}

Test(journal, async_commit_through_eventfd) {
  mxgw_queue *q =
      open_with((jopts){.journal = 1, .workers = 4, .max_body = 150000});
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
      cr_assert_eq(d[i].status, MXGW_OK, "%s", mxgw_errname(d[i].status));
      int idx = (int)(d[i].tag - 1000);
      cr_assert(idx >= 0 && idx < N);
      cr_assert_str_eq(d[i].id, ids[idx]);
      cr_assert_eq(got[idx], 0, "tag reported twice");
      got[idx] = 1;
      total++;
    }
  }
  int want_j = 0;
  for (int i = 0; i < N; i++)
    want_j += qh_body_size(ids[i]) <= 150000;
  cr_log_info("%d async commits, %d into the journal, %lld file syncs", N,
              want_j, (long long)stat_of(q, MXGW_QSTAT_FILE_SYNCS));
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMITS), N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), want_j);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N);
  cr_assert_eq(count_files("incoming"), 2 * (N - want_j));
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL),
                 qh_body_size(ids[i]) <= 150000);
    cr_assert(qh_entry_ok(e), "%s", ids[i]);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
  /* and they are durable: all recovered */
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), want_j);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N);
  mxgw_queue_free(q);
}

/* Sizes 0, 1 and exactly MAX_BODY, binary, through recovery and through a
 * spill of an empty body. */
Test(journal, edge_sizes_survive_recovery_and_spill) {
  enum { MAXB = 4096 };
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_body = MAXB});
  const size_t sizes[] = {0, 1, 2, MAXB - 1, MAXB, 0};
  enum { N = sizeof sizes / sizeof *sizes };
  unsigned char *bodies[N];
  char ids[N][32];
  for (int i = 0; i < N; i++) {
    bodies[i] = make_body(sizes[i], 300u + (uint32_t)i);
    cr_assert_eq(commit_bytes(q, bodies[i], sizes[i], ids[i]), MXGW_OK);
  }
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), N);
  /* the last (empty) one is deferred: an empty body file in deferred/ */
  mxgw_queue_entry *es[N];
  for (int i = 0; i < N; i++)
    cr_assert_eq(mxgw_queue_take(q, 0, &es[i]), MXGW_OK);
  cr_assert_str_eq(get_s(es[N - 1], MXGW_QKEY_ID), ids[N - 1]);
  mxgw_queue_entry_set_rcpt(es[N - 1], 1, MXGW_RCPT_DEFERRED, 451, "4.4.1",
                            "later");
  cr_assert_eq(mxgw_queue_finish(q, es[N - 1], 7000), MXGW_QSTATE_DEFERRED);
  assert_body(es[N - 1], bodies[N - 1], 0);
  for (int i = 0; i < N; i++)
    mxgw_queue_entry_free(es[i]);
  mxgw_queue_free(q); /* the others were taken, never finished */
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), N - 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N - 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), 1);
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    cr_assert_eq(get_i(e, MXGW_QKEY_SIZE), (int64_t)sizes[i]);
    struct stat st;
    if (!get_i(e, MXGW_QKEY_IN_JOURNAL)) {
      cr_assert_eq(stat(get_s(e, MXGW_QKEY_BODY_PATH), &st), 0);
      cr_assert_eq(st.st_size, (off_t)sizes[i], "body file of %zu octets",
                   sizes[i]);
    }
    assert_body(e, bodies[i], sizes[i]);
    mxgw_queue_entry_free(e);
    free(bodies[i]);
  }
  mxgw_queue_free(q);
}

/* A gateway died and has not been restarted: mxgw-queue (owner 0) lists
 * what its journal holds, without the delivered one, and reads bodies. */
Test(journal, operator_lists_a_dead_owners_journal) {
  enum { N = 6 };
  char ids[N][32], gone[32];
  leave_journal(N, 2, 1, ids, gone);
  mxgw_queue *op = open_with((jopts){.noowner = 1});
  cr_assert_eq(mxgw_queue_count(op, MXGW_QSTATE_INCOMING), N - 1);
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  int k = 0;
  cr_assert_eq(mxgw_queue_iter_new(op, MXGW_QSTATE_INCOMING, &it), MXGW_OK);
  while (mxgw_queue_iter_next(it, &e) == 1) {
    cr_assert_str_neq(get_s(e, MXGW_QKEY_ID), gone);
    cr_assert(qh_entry_ok(e));
    k++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(k, N - 1);
  cr_assert_eq(mxgw_queue_load(op, gone, &e), MXGW_E_NOTFOUND);
  mxgw_queue_free(op);
  /* the operator changed nothing: the owner still recovers them all */
  mxgw_queue *q = open_jq();
  check_recovered(q, N, ids, gone, 0);
  mxgw_queue_free(q);
}

struct big {
  mxgw_queue *q;
  pthread_barrier_t *bar;
  int rc;
  char id[32];
};

static void *one_commit(void *arg) {
  struct big *b = arg;
  mxgw_queue_msg *m = NULL;
  b->rc = mxgw_queue_begin(b->q, &m);
  if (b->rc != MXGW_OK)
    return NULL;
  const char *p;
  size_t l;
  mxgw_queue_msg_id(m, &p, &l);
  snprintf(b->id, sizeof b->id, "%s", p);
  size_t size = 200 + qh_body_size(b->id) % 800;
  unsigned char buf[1000];
  qh_body(b->id, 0, buf, size);
  mxgw_queue_write(m, buf, size);
  mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "", 0);
  mxgw_queue_msg_add_rcpt(m, "info@example.net", 16, 0, NULL, 0);
  pthread_barrier_wait(b->bar);
  b->rc = mxgw_queue_commit(m);
  return NULL;
}

/* More committers at once than one pwritev() takes (340 records). */
Test(journal, very_large_group_commit) {
  mxgw_queue *q = open_jq();
  enum { T = 400 };
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, T);
  static struct big b[T];
  pthread_t th[T];
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 256 << 10);
  int started = 0;
  for (int i = 0; i < T; i++) {
    b[i] = (struct big){.q = q, .bar = &bar, .rc = -1};
    cr_assert_eq(pthread_create(&th[i], &at, one_commit, &b[i]), 0);
    started++;
  }
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  pthread_barrier_destroy(&bar);
  pthread_attr_destroy(&at);
  for (int i = 0; i < T; i++)
    cr_assert_eq(b[i].rc, MXGW_OK, "%d: %s", i, mxgw_errname(b[i].rc));
  int64_t batches = stat_of(q, MXGW_QSTAT_BATCHES);
  cr_log_info("%d simultaneous commits: %lld batches, %lld file syncs", T,
              (long long)batches,
              (long long)stat_of(q, MXGW_QSTAT_FILE_SYNCS));
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), T);
  for (int i = 0; i < T; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, b[i].id, &e), MXGW_OK);
    int64_t len;
    unsigned char *got = read_body(e, &len);
    size_t size = 200 + qh_body_size(b[i].id) % 800;
    unsigned char want[1000];
    qh_body(b[i].id, 0, want, size);
    cr_assert_eq(len, (int64_t)size);
    cr_assert(memcmp(got, want, size) == 0, "%s differs", b[i].id);
    free(got);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
  /* and the records are where recovery finds them */
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), T);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 0);
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  int n = 0;
  cr_assert_eq(mxgw_queue_iter_new(q, MXGW_QSTATE_INCOMING, &it), MXGW_OK);
  while (mxgw_queue_iter_next(it, &e) == 1) {
    const char *id = get_s(e, MXGW_QKEY_ID);
    size_t size = 200 + qh_body_size(id) % 800;
    unsigned char want[1000];
    qh_body(id, 0, want, size);
    assert_body(e, want, size);
    n++;
  }
  mxgw_queue_iter_free(it);
  cr_assert_eq(n, T);
  mxgw_queue_free(q);
}

/* Committers and deliverers at once on small segments: rotation, spills
 * and segment removal race with commits. Every message ends delivered or
 * deferred exactly once. */
enum { ST_W = 4, ST_N = 60, ST_D = 3 };

struct stress {
  mxgw_queue *q;
  pthread_mutex_t mu;
  int committed, finished, deferred, delivered, saved, errors;
  int stop;
  int wait_go, go; /* deliverers wait for go when wait_go */
};

static void *st_writer(void *arg) {
  struct stress *s = arg;
  for (int i = 0; i < ST_N; i++) {
    mxgw_queue_msg *m = NULL;
    char id[32];
    int rc = qh_write(s->q, &m, id);
    if (rc == MXGW_OK)
      rc = mxgw_queue_commit(m);
    pthread_mutex_lock(&s->mu);
    if (rc == MXGW_OK)
      s->committed++;
    else
      s->errors++;
    pthread_mutex_unlock(&s->mu);
  }
  return NULL;
}

static void *st_deliverer(void *arg) {
  struct stress *s = arg;
  for (unsigned n = 0;; n++) {
    pthread_mutex_lock(&s->mu);
    int done = s->stop && s->finished == s->committed;
    int wait = s->wait_go && !s->go && !s->stop;
    pthread_mutex_unlock(&s->mu);
    if (done)
      break;
    if (wait) {
      sched_yield();
      continue;
    }
    mxgw_queue_entry *e;
    int rc = mxgw_queue_take(s->q, 0, &e);
    if (rc == MXGW_E_NOTFOUND) {
      sched_yield();
      continue;
    }
    int ok = rc == MXGW_OK && qh_entry_ok(e);
    int saved = 0;
    if (ok && n % 3 == 1) { /* a save first, as a slow delivery does */
      mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
      ok = mxgw_queue_save(s->q, e) == MXGW_OK && qh_entry_ok(e);
      saved = 1;
    }
    int to = -1;
    if (ok) {
      mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DELIVERED, 250, "2.0.0", "ok");
      mxgw_queue_entry_set_rcpt(e, 1, n % 2 ? MXGW_RCPT_DELIVERED
                                            : MXGW_RCPT_DEFERRED,
                                n % 2 ? 250 : 451, "x", "y");
      to = mxgw_queue_finish(s->q, e, 1 << 30);
    }
    mxgw_queue_entry_free(e);
    pthread_mutex_lock(&s->mu);
    if (to == 0)
      s->delivered++;
    else if (to == MXGW_QSTATE_DEFERRED)
      s->deferred++;
    else
      s->errors++;
    s->saved += saved;
    s->finished++;
    pthread_mutex_unlock(&s->mu);
  }
  return NULL;
}

Test(journal, commits_race_with_deliveries_on_small_segments) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .segment = 64 << 10});
  struct stress s = {.q = q};
  pthread_mutex_init(&s.mu, NULL);
  pthread_t w[ST_W], d[ST_D];
  for (int i = 0; i < ST_D; i++)
    pthread_create(&d[i], NULL, st_deliverer, &s);
  for (int i = 0; i < ST_W; i++)
    pthread_create(&w[i], NULL, st_writer, &s);
  for (int i = 0; i < ST_W; i++)
    pthread_join(w[i], NULL);
  pthread_mutex_lock(&s.mu);
  s.stop = 1;
  pthread_mutex_unlock(&s.mu);
  for (int i = 0; i < ST_D; i++)
    pthread_join(d[i], NULL);
  cr_log_info("%d committed, %d delivered, %d deferred (%d saved first), "
              "%lld spills, %d errors", s.committed, s.delivered, s.deferred,
              s.saved, (long long)stat_of(q, MXGW_QSTAT_JOURNAL_SPILLS),
              s.errors);
  cr_assert_eq(s.errors, 0);
  cr_assert_eq(s.committed, ST_W * ST_N);
  cr_assert_eq(s.delivered + s.deferred, s.committed);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), s.deferred);
  cr_assert_eq(count_files("journal"), 1, "finished segments left behind");
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS), 1);
  cr_assert_eq(count_files("tmp"), 0);
  mxgw_queue_free(q);
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), s.deferred);
  mxgw_queue_free(q);
  pthread_mutex_destroy(&s.mu);
}

/* Many small asynchronous commits: a worker takes every waiting journal
 * message at once, so batches grow past one pwritev() (340 records). */
Test(journal, async_burst_of_small_messages) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .workers = 2});
  int efd = mxgw_queue_eventfd(q);
  enum { N = 1500 };
  static char ids[N][32];
  static unsigned char want[1000];
  for (int i = 0; i < N; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(mxgw_queue_begin(q, &m), MXGW_OK);
    const char *p;
    size_t l;
    mxgw_queue_msg_id(m, &p, &l);
    snprintf(ids[i], 32, "%s", p);
    size_t size = 100 + qh_body_size(p) % 900;
    qh_body(ids[i], 0, want, size);
    cr_assert_eq(mxgw_queue_write(m, want, size), MXGW_OK);
    mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "", 0);
    mxgw_queue_msg_add_rcpt(m, "info@example.net", 16, 0, NULL, 0);
    cr_assert_eq(mxgw_queue_commit_async(m, (uint64_t)i), MXGW_OK);
  }
  static int got[N];
  int total = 0;
  while (total < N) {
    struct pollfd pf = {efd, POLLIN, 0};
    cr_assert_eq(poll(&pf, 1, 60000), 1, "no completion within 60 s");
    mxgw_queue_done d[64];
    int n = mxgw_queue_completed(q, d, 64);
    for (int i = 0; i < n; i++) {
      cr_assert_eq(d[i].status, MXGW_OK, "%s", mxgw_errname(d[i].status));
      cr_assert_lt(d[i].tag, (uint64_t)N);
      cr_assert_str_eq(d[i].id, ids[d[i].tag]);
      cr_assert_eq(got[d[i].tag]++, 0, "reported twice");
      total++;
    }
  }
  int64_t batches = stat_of(q, MXGW_QSTAT_BATCHES);
  cr_log_info("%d async journal commits in %lld batches (%lld file syncs)",
              N, (long long)batches,
              (long long)stat_of(q, MXGW_QSTAT_FILE_SYNCS));
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), N);
  cr_assert_lt(stat_of(q, MXGW_QSTAT_FILE_SYNCS), N);
  mxgw_queue_free(q);
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 0);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 0);
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK, "%s", ids[i]);
    size_t size = 100 + qh_body_size(ids[i]) % 900;
    qh_body(ids[i], 0, want, size);
    assert_body(e, want, size);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
}

/* ------------------------------------------------------------------------ */
/* The on-disk format, as docs/queue.md documents it                        */
/* ------------------------------------------------------------------------ */

/* CRC-32C, bitwise, written from the definition (not the library's). */
static uint32_t ref_crc32c(uint32_t crc, const unsigned char *p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

static uint64_t le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

typedef struct rec {
  uint32_t type, mlen;
  uint64_t blen;
  char id[33];
  const unsigned char *meta, *body;
  int crc_ok, reserved_zero;
} rec;

/* Parse the records of a segment image; returns how many. */
static int parse_segment(const unsigned char *buf, size_t size, rec *out,
                         int max) {
  size_t off = 0;
  int n = 0;
  while (off + 64 <= size && n < max) {
    const unsigned char *h = buf + off;
    cr_assert(memcmp(h, "MXJ1", 4) == 0, "magic at %zu", off);
    rec *r = &out[n++];
    r->type = (uint32_t)le(h + 4, 4);
    r->mlen = (uint32_t)le(h + 8, 4);
    r->blen = le(h + 16, 8);
    memcpy(r->id, h + 24, 32);
    r->id[32] = '\0';
    r->reserved_zero = le(h + 56, 8) == 0;
    cr_assert_leq(off + 64 + r->mlen + r->blen, size);
    unsigned char hz[64];
    memcpy(hz, h, 64);
    memset(hz + 12, 0, 4);
    uint32_t c = ref_crc32c(0, hz, 64);
    c = ref_crc32c(c, h + 64, r->mlen + r->blen);
    r->crc_ok = c == (uint32_t)le(h + 12, 4);
    r->meta = h + 64;
    r->body = h + 64 + r->mlen;
    off += 64 + r->mlen + r->blen;
  }
  cr_assert_eq(off, size, "trailing octets in the segment");
  return n;
}

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  b[n] = '\0';
  *len = (size_t)n;
  return b;
}

Test(journal, segment_format_is_as_documented) {
  cr_assert_eq(ref_crc32c(0, (const unsigned char *)"123456789", 9),
               0xE3069283u, "reference CRC-32C check value");
  mxgw_queue *q = open_jq();
  size_t sz[2] = {777, 0};
  unsigned char *b[2];
  char ids[2][32];
  for (int i = 0; i < 2; i++) {
    b[i] = make_body(sz[i], 1234u + (uint32_t)i);
    cr_assert_eq(commit_bytes(q, b[i], sz[i], ids[i]), MXGW_OK);
  }
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  deliver_all(e);
  cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.4.1", "later");
  cr_assert_eq(mxgw_queue_finish(q, e, 9000), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
  char seg[512];
  last_segment(seg, sizeof seg);
  const char *base = strrchr(seg, '/') + 1;
  cr_assert_eq(strlen(base), 20, "%s", base);
  cr_assert_str_eq(base + 16, ".log");
  for (int i = 0; i < 16; i++)
    cr_assert(strchr("0123456789abcdefABCDEF", base[i]) != NULL, "%s", base);
  size_t len;
  unsigned char *img = slurp(seg, &len);
  rec r[8];
  int n = parse_segment(img, len, r, 8);
  cr_assert_eq(n, 4, "2 messages, 1 done, 1 moved: %d records", n);
  for (int i = 0; i < 4; i++) {
    cr_assert(r[i].crc_ok, "record %d: CRC-32C does not match", i);
    cr_assert(r[i].reserved_zero, "record %d: reserved field", i);
  }
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(r[i].type, 1);
    cr_assert_str_eq(r[i].id, ids[i]);
    cr_assert_eq(r[i].blen, (uint64_t)sz[i]);
    cr_assert(sz[i] == 0 || memcmp(r[i].body, b[i], sz[i]) == 0);
    char *meta = strndup((const char *)r[i].meta, r[i].mlen);
    cr_assert(strstr(meta, ids[i]) && strstr(meta, "alice@example.org"),
              "metadata: %s", meta);
    free(meta);
  }
  cr_assert_eq(r[2].type, 2);
  cr_assert_str_eq(r[2].id, ids[0]);
  cr_assert_eq(r[2].mlen, 0);
  cr_assert_eq(r[2].blen, 0);
  cr_assert_eq(r[3].type, 3);
  cr_assert_str_eq(r[3].id, ids[1]);
  /* the ID field is NUL-padded */
  for (size_t k = strlen(ids[0]); k < 32; k++)
    cr_assert_eq(img[24 + k], 0);
  free(img);
  free(b[0]);
  free(b[1]);
}

Test(journal, recovered_metadata_is_the_records_metadata) {
  char ids[3][32], seg[512];
  int64_t third;
  three_in_journal(ids, seg, sizeof seg, &third);
  size_t len;
  unsigned char *img = slurp(seg, &len);
  rec r[4];
  cr_assert_eq(parse_segment(img, len, r, 4), 3);
  mxgw_queue *q = open_with((jopts){.journal = 0}); /* to files */
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 3);
  mxgw_queue_free(q);
  for (int i = 0; i < 3; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s/incoming/%s.json", spool, ids[i]);
    size_t ml;
    unsigned char *m = slurp(path, &ml);
    cr_assert_eq(ml, r[i].mlen, "%s", path);
    cr_assert(memcmp(m, r[i].meta, ml) == 0, "%s differs from the record",
              path);
    free(m);
  }
  free(img);
}

/* A spool made before the journal existed has no journal/. An owner that
 * does not create directories (MXGW_QOPT_CREATE 0) and does not use the
 * journal must still open it, as before the upgrade. */
Test(journal, owner_without_create_opens_a_spool_without_journal_dir) {
  mxgw_queue *q = open_with((jopts){.journal = 0});
  char id[32];
  commit_qh(q, id);
  mxgw_queue_free(q);
  char path[400];
  snprintf(path, sizeof path, "%s/journal", spool);
  cr_assert_eq(rmdir(path), 0);
  /* an operator tool opens it (it always did) */
  cr_assert_eq(mxgw_queue_new(&q, spool, NULL), MXGW_OK);
  mxgw_queue_set_int(q, MXGW_QOPT_OWNER, 0);
  mxgw_queue_set_int(q, MXGW_QOPT_CREATE, 0);
  mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  cr_assert_eq(mxgw_queue_open(q), MXGW_OK);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 1);
  mxgw_queue_free(q);
  /* the gateway itself, journal off, CREATE 0 */
  cr_assert_eq(mxgw_queue_new(&q, spool, NULL), MXGW_OK);
  mxgw_queue_set_int(q, MXGW_QOPT_CREATE, 0);
  mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  int rc = mxgw_queue_open(q);
  cr_assert_eq(rc, MXGW_OK,
               "owner, journal off, CREATE 0, no journal/: open gives %s "
               "(a spool from before the journal no longer opens)",
               mxgw_errname(rc));
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 1);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
  cr_assert(qh_check_body(get_s(e, MXGW_QKEY_BODY_PATH), id));
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
  /* an owner that wants the journal needs CREATE for journal/ */
  cr_assert_eq(mxgw_queue_new(&q, spool, NULL), MXGW_OK);
  mxgw_queue_set_int(q, MXGW_QOPT_CREATE, 0);
  mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL, 1);
  mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  cr_assert_eq(mxgw_queue_open(q), MXGW_E_NOTFOUND);
  mxgw_queue_free(q);
  /* the message is still there, untouched */
  q = open_with((jopts){.journal = 1});
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 1);
  mxgw_queue_free(q);
}

/* A record as the format describes it, CRC from the reference code. */
static size_t make_record(unsigned char *out, uint32_t type, const char *id,
                          const char *meta, const unsigned char *body,
                          size_t blen) {
  size_t mlen = strlen(meta);
  memset(out, 0, 64);
  memcpy(out, "MXJ1", 4);
  for (int i = 0; i < 4; i++) {
    out[4 + i] = (unsigned char)(type >> (8 * i));
    out[8 + i] = (unsigned char)(mlen >> (8 * i));
  }
  for (int i = 0; i < 8; i++)
    out[16 + i] = (unsigned char)((uint64_t)blen >> (8 * i));
  memcpy(out + 24, id, strlen(id));
  memcpy(out + 64, meta, mlen);
  if (blen)
    memcpy(out + 64 + mlen, body, blen);
  uint32_t c = ref_crc32c(0, out, 64 + mlen + blen);
  for (int i = 0; i < 4; i++)
    out[12 + i] = (unsigned char)(c >> (8 * i));
  return 64 + mlen + blen;
}

static void append_file(const char *path, const void *buf, size_t len) {
  int fd = open(path, O_WRONLY | O_APPEND);
  cr_assert_geq(fd, 0, "%s", path);
  cr_assert_eq(write(fd, buf, len), (ssize_t)len);
  close(fd);
}

/* A record that checks out but whose metadata does not load is kept aside
 * in corrupt/, not lost and not delivered; one with an ID that is not a
 * queue ID ends the readable part (nothing is written under that name). */
Test(journal, unloadable_record_goes_to_corrupt) {
  char ids[3][32], seg[512];
  int64_t third;
  three_in_journal(ids, seg, sizeof seg, &third);
  unsigned char rec1[512], rec2[512];
  const char *bad = "00000000000000000000ZZZ";
  char meta[200];
  snprintf(meta, sizeof meta, "{\"id\":\"%s\",\"sender\":\"\"}", bad);
  size_t n1 = make_record(rec1, 1, bad, meta, (const unsigned char *)"b\r\n",
                          3);
  append_file(seg, rec1, n1);
  /* checks out too, but its ID is a path */
  size_t n2 = make_record(rec2, 1, "../../../QQQQQQQQQ",
                          "{\"id\":\"../../../QQQQQQQQQ\",\"sender\":\"\","
                          "\"recipients\":[{\"addr\":\"a@b\",\"state\":"
                          "\"pending\"}]}",
                          (const unsigned char *)"x", 1);
  append_file(seg, rec2, n2);
  mxgw_queue *q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), 3);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 1);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 1);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 3);
  cr_assert(exists("corrupt", bad));
  char name[64];
  snprintf(name, sizeof name, "%s.json", bad);
  cr_assert(exists("corrupt", name));
  cr_assert_eq(count_files("corrupt"), 2);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_load(q, bad, &e), MXGW_E_NOTFOUND);
  mxgw_queue_free(q);
  /* the next open neither quarantines it again nor brings it back */
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_QUARANTINED), 0);
  cr_assert_eq(count_files("corrupt"), 2);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), 3);
  cr_assert_eq(mxgw_queue_load(q, bad, &e), MXGW_E_NOTFOUND);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    assert_recovered(e);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
  char up[600];
  struct stat st;
  snprintf(up, sizeof up, "%s/../QQQQQQQQQ", spool);
  cr_assert_neq(stat(up, &st), 0, "wrote outside the spool");
}

/* Done records land in the newest segment, for messages in older ones:
 * recovery must match them across segments. */
Test(journal, done_records_across_segments) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .segment = 64 << 10});
  enum { N = 30, SZ = 9000 };
  char ids[N][32];
  unsigned char *b = make_body(SZ, 77);
  for (int i = 0; i < N; i++)
    cr_assert_eq(commit_bytes(q, b, SZ, ids[i]), MXGW_OK);
  cr_assert_geq(count_files("journal"), 3);
  /* every third delivered, every third deferred, the rest left active */
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_take(q, 0, &e), MXGW_OK);
    cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), ids[i]);
    if (i % 3 == 0) {
      deliver_all(e);
      cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
    } else if (i % 3 == 1) {
      mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DEFERRED, 421, "4.3.2", "x");
      cr_assert_eq(mxgw_queue_finish(q, e, 99999), MXGW_QSTATE_DEFERRED);
    }
    mxgw_queue_entry_free(e);
  }
  /* and more commits after the done records, into new segments */
  char more[N][32];
  for (int i = 0; i < N; i++)
    cr_assert_eq(commit_bytes(q, b, SZ, more[i]), MXGW_OK);
  mxgw_queue_free(q);
  q = open_jq();
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), N / 3 + N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_TORN), 0);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N / 3 + N);
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), N / 3);
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    int rc = mxgw_queue_load(q, ids[i], &e);
    if (i % 3 == 0) {
      cr_assert_eq(rc, MXGW_E_NOTFOUND, "delivered %d came back", i);
      continue;
    }
    cr_assert_eq(rc, MXGW_OK);
    cr_assert_eq(get_i(e, MXGW_QKEY_STATE),
                 i % 3 == 1 ? MXGW_QSTATE_DEFERRED : MXGW_QSTATE_INCOMING);
    assert_body(e, b, SZ);
    mxgw_queue_entry_free(e);
  }
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, more[i], &e), MXGW_OK);
    assert_body(e, b, SZ);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
  free(b);
}

/* mxgw_queue_free() completes pending asynchronous commits first: they are
 * all in the spool at the next open. */
Test(journal, free_completes_pending_async_commits) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .workers = 2});
  enum { N = 80 };
  char ids[N][32];
  for (int i = 0; i < N; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(qh_write(q, &m, ids[i]), MXGW_OK);
    cr_assert_eq(mxgw_queue_commit_async(m, (uint64_t)i), MXGW_OK);
  }
  mxgw_queue_free(q);
  q = open_jq();
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_RECOVERED), N);
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK, "%s", ids[i]);
    assert_recovered(e);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
}

/* Under load the journal is never empty: a message in incoming/ (a large
 * one, or one recovered at open) and a deferred one that is due must
 * still be taken, not wait until the journal runs dry. */
Test(journal, files_are_not_starved_by_a_busy_journal) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_body = 1024});
  unsigned char *small = make_body(300, 1), *big = make_body(3000, 2);
  char id[32], fid[32], did[32];
  for (int i = 0; i < 4; i++)
    cr_assert_eq(commit_bytes(q, small, 300, id), MXGW_OK);
  /* one deferred message, due at 100 */
  cr_assert_eq(commit_bytes(q, big, 3000, did), MXGW_OK);
  mxgw_queue_entry *e;
  for (;;) {
    cr_assert_eq(mxgw_queue_take(q, 50, &e), MXGW_OK);
    if (!strcmp(get_s(e, MXGW_QKEY_ID), did))
      break;
    deliver_all(e);
    cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DEFERRED, 451, "4.4.1", "later");
  cr_assert_eq(mxgw_queue_finish(q, e, 100), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  /* a file message arrives while the journal keeps filling */
  cr_assert_eq(commit_bytes(q, big, 3000, fid), MXGW_OK);
  int got_f = 0, got_d = 0;
  for (int k = 0; k < 24 && !(got_f && got_d); k++) {
    cr_assert_eq(commit_bytes(q, small, 300, id), MXGW_OK);
    cr_assert_eq(commit_bytes(q, small, 300, id), MXGW_OK);
    cr_assert_eq(mxgw_queue_take(q, 200, &e), MXGW_OK);
    const char *t = get_s(e, MXGW_QKEY_ID);
    if (!strcmp(t, fid))
      got_f = k + 1;
    if (!strcmp(t, did))
      got_d = k + 1;
    deliver_all(e);
    cr_assert_geq(mxgw_queue_finish(q, e, 0), 0);
    mxgw_queue_entry_free(e);
  }
  cr_log_info("incoming/ message taken at take %d, deferred at take %d",
              got_f, got_d);
  cr_assert(got_f, "a message in incoming/ waited 24 takes behind the "
                   "journal");
  cr_assert(got_d, "a due deferred message waited 24 takes behind the "
                   "journal");
  mxgw_queue_free(q);
  free(small);
  free(big);
}

/* take() remembers when deferred/ next has something due; a message
 * deferred from the journal to an earlier time must not wait for that. */
Test(journal, deferred_from_the_journal_is_due_on_time) {
  mxgw_queue *q = open_jq();
  char a[32], b[32];
  commit_qh(q, a);
  commit_qh(q, b);
  mxgw_queue_entry *e;
  cr_assert_eq(mxgw_queue_take(q, 1000, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), a);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DEFERRED, 451, "4.4.1", "x");
  cr_assert_eq(mxgw_queue_finish(q, e, 9000), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_take(q, 1001, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), b);
  /* nothing due before 9000: this take scans and remembers that */
  mxgw_queue_entry *none;
  cr_assert_eq(mxgw_queue_take(q, 1002, &none), MXGW_E_NOTFOUND);
  mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DEFERRED, 451, "4.4.1", "x");
  cr_assert_eq(mxgw_queue_finish(q, e, 1010), MXGW_QSTATE_DEFERRED);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_take(q, 1009, &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_take(q, 1010, &e), MXGW_OK,
               "deferred to 1010, not taken at 1010");
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), b);
  mxgw_queue_entry_free(e);
  cr_assert_eq(mxgw_queue_take(q, 8999, &e), MXGW_E_NOTFOUND);
  cr_assert_eq(mxgw_queue_take(q, 9000, &e), MXGW_OK);
  cr_assert_str_eq(get_s(e, MXGW_QKEY_ID), a);
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
}

/* mxgw-queue list/show while the gateway commits, delivers, defers and
 * removes segments: every message the operator sees reads back intact or
 * is gone (NOTFOUND); never another message's bytes, never unreadable. */
struct opview {
  struct stress *s;
  int seen, gone, bad;
};

static void *operator_loop(void *arg) {
  struct opview *o = arg;
  mxgw_queue *op;
  if (mxgw_queue_new(&op, spool, NULL) != MXGW_OK ||
      mxgw_queue_set_int(op, MXGW_QOPT_OWNER, 0) != MXGW_OK ||
      mxgw_queue_set_int(op, MXGW_QOPT_ASYNC_WORKERS, 0) != MXGW_OK ||
      mxgw_queue_open(op) != MXGW_OK) {
    o->bad++;
    return NULL;
  }
  for (;;) {
    pthread_mutex_lock(&o->s->mu);
    int stop = o->s->stop;
    pthread_mutex_unlock(&o->s->mu);
    if (stop)
      break;
    if (mxgw_queue_count(op, MXGW_QSTATE_INCOMING) < 0)
      o->bad++;
    mxgw_queue_iter *it;
    mxgw_queue_entry *e;
    if (mxgw_queue_iter_new(op, MXGW_QSTATE_INCOMING, &it) != MXGW_OK) {
      o->bad++;
      continue;
    }
    int rc;
    while ((rc = mxgw_queue_iter_next(it, &e)) != 0) {
      if (rc < 0) {
        o->bad++;
        continue;
      }
      const char *id;
      size_t l;
      mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &l);
      int fd;
      int64_t off, len;
      rc = mxgw_queue_entry_body(e, &fd, &off, &len);
      if (rc == MXGW_E_NOTFOUND) {
        o->gone++;
        continue;
      }
      if (rc != MXGW_OK) {
        o->bad++;
        continue;
      }
      size_t size = qh_body_size(id);
      unsigned char *got = malloc(size + 1), *want = malloc(size);
      ssize_t r = len == (int64_t)size ? pread(fd, got, size, (off_t)off) : -1;
      qh_body(id, 0, want, size);
      if (r != (ssize_t)size || memcmp(got, want, size) != 0) {
        o->bad++;
      } else {
        o->seen++;
        pthread_mutex_lock(&o->s->mu);
        o->s->go = 1; /* the deliverers may start */
        pthread_mutex_unlock(&o->s->mu);
      }
      free(got);
      free(want);
      close(fd);
    }
    mxgw_queue_iter_free(it);
  }
  mxgw_queue_free(op);
  return NULL;
}

Test(journal, operator_reads_while_the_owner_works) {
  mxgw_queue *q = open_with((jopts){.journal = 1, .segment = 64 << 10});
  struct stress s = {.q = q, .wait_go = 1};
  pthread_mutex_init(&s.mu, NULL);
  struct opview o = {.s = &s};
  pthread_t w[ST_W], d[ST_D], opt;
  pthread_create(&opt, NULL, operator_loop, &o);
  for (int i = 0; i < ST_D; i++)
    pthread_create(&d[i], NULL, st_deliverer, &s);
  for (int i = 0; i < ST_W; i++)
    pthread_create(&w[i], NULL, st_writer, &s);
  for (int i = 0; i < ST_W; i++)
    pthread_join(w[i], NULL);
  pthread_mutex_lock(&s.mu);
  s.stop = 1;
  pthread_mutex_unlock(&s.mu);
  for (int i = 0; i < ST_D; i++)
    pthread_join(d[i], NULL);
  pthread_join(opt, NULL);
  cr_log_info("operator: %d bodies read intact, %d gone meanwhile, %d bad",
              o.seen, o.gone, o.bad);
  cr_assert_eq(s.errors, 0);
  cr_assert_eq(o.bad, 0, "the operator saw %d unreadable or wrong messages",
               o.bad);
  cr_assert_gt(o.seen, 0, "the operator never saw a message");
  mxgw_queue_free(q);
  pthread_mutex_destroy(&s.mu);
}

/* Asynchronous commits past MAX_MSGS: a worker's batch mixes journal
 * records and files in one group commit. */
Test(journal, async_batches_mix_journal_and_files) {
  mxgw_queue *q =
      open_with((jopts){.journal = 1, .workers = 3, .max_msgs = 10});
  int efd = mxgw_queue_eventfd(q);
  enum { N = 100 };
  char ids[N][32];
  for (int i = 0; i < N; i++) {
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(qh_write(q, &m, ids[i]), MXGW_OK);
    cr_assert_eq(mxgw_queue_commit_async(m, (uint64_t)i), MXGW_OK);
  }
  int total = 0;
  while (total < N) {
    struct pollfd pf = {efd, POLLIN, 0};
    cr_assert_eq(poll(&pf, 1, 60000), 1);
    mxgw_queue_done d[32];
    int n = mxgw_queue_completed(q, d, 32);
    for (int i = 0; i < n; i++) {
      cr_assert_eq(d[i].status, MXGW_OK, "%s", mxgw_errname(d[i].status));
      cr_assert_str_eq(d[i].id, ids[d[i].tag]);
    }
    total += n;
  }
  cr_assert_eq(stat_of(q, MXGW_QSTAT_COMMITS), N);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_COMMITS), 10);
  cr_assert_eq(stat_of(q, MXGW_QSTAT_JOURNAL_MESSAGES), 10);
  cr_assert_eq(count_files("incoming"), 2 * (N - 10));
  cr_assert_eq(count_files("tmp"), 0);
  int nj = 0;
  for (int i = 0; i < N; i++) {
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, ids[i], &e), MXGW_OK);
    nj += (int)get_i(e, MXGW_QKEY_IN_JOURNAL);
    cr_assert(qh_entry_ok(e), "%s", ids[i]);
    mxgw_queue_entry_free(e);
  }
  cr_assert_eq(nj, 10);
  mxgw_queue_free(q);
}

/* The whole body in one mxgw_queue_write(), below, at and above MAX_BODY. */
Test(journal, one_write_for_the_whole_body) {
  enum { MAXB = 70000 };
  mxgw_queue *q = open_with((jopts){.journal = 1, .max_body = MAXB});
  const size_t sizes[] = {MAXB - 1, MAXB, MAXB + 1, 3 * MAXB};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    unsigned char *b = make_body(sizes[i], 500u + (uint32_t)i);
    mxgw_queue_msg *m = NULL;
    cr_assert_eq(mxgw_queue_begin(q, &m), MXGW_OK);
    const char *p;
    size_t l;
    mxgw_queue_msg_id(m, &p, &l);
    char id[32];
    snprintf(id, sizeof id, "%s", p);
    cr_assert_eq(mxgw_queue_write(m, b, sizes[i]), MXGW_OK);
    mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "", 0);
    mxgw_queue_msg_add_rcpt(m, "info@example.net", 16, 0, NULL, 0);
    cr_assert_eq(mxgw_queue_commit(m), MXGW_OK);
    mxgw_queue_entry *e;
    cr_assert_eq(mxgw_queue_load(q, id, &e), MXGW_OK);
    cr_assert_eq(get_i(e, MXGW_QKEY_IN_JOURNAL), sizes[i] <= MAXB);
    assert_body(e, b, sizes[i]);
    mxgw_queue_entry_free(e);
    free(b);
  }
  cr_assert_eq(count_files("tmp"), 0);
  mxgw_queue_free(q);
}

/* Several gateway lifetimes on one spool, each ended without finishing
 * what it had taken (a crash): after every open the spool holds exactly
 * what a model says, wherever the journal keeps it. */
enum { LR = 6, LN = 14 };
enum { M_NONE, M_INCOMING, M_DEFERRED, M_GONE };

Test(journal, restarts_keep_exactly_the_live_messages) {
  static char ids[LR * LN][32];
  static int model[LR * LN];
  int n = 0;
  for (int round = 0; round <= LR; round++) {
    mxgw_queue *q = open_with((jopts){.journal = round < LR,
                                      .segment = 64 << 10});
    /* the model holds */
    int want_in = 0, want_def = 0;
    for (int i = 0; i < n; i++) {
      mxgw_queue_entry *e;
      int rc = mxgw_queue_load(q, ids[i], &e);
      if (model[i] == M_GONE) {
        cr_assert_eq(rc, MXGW_E_NOTFOUND, "round %d: delivered %s is back",
                     round, ids[i]);
        continue;
      }
      cr_assert_eq(rc, MXGW_OK, "round %d: %s lost", round, ids[i]);
      int st = (int)get_i(e, MXGW_QKEY_STATE);
      cr_assert_eq(st, model[i] == M_DEFERRED ? MXGW_QSTATE_DEFERRED
                                              : MXGW_QSTATE_INCOMING,
                   "round %d: %s in %s", round, ids[i],
                   mxgw_queue_state_name(st));
      cr_assert(qh_entry_ok(e), "round %d: %s differs", round, ids[i]);
      want_in += model[i] == M_INCOMING;
      want_def += model[i] == M_DEFERRED;
      mxgw_queue_entry_free(e);
    }
    cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_INCOMING), want_in,
                 "round %d", round);
    cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), want_def);
    cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_CORRUPT), 0);
    if (round == LR) { /* the journal turned off: files only */
      cr_assert_eq(count_files("journal"), 0);
      cr_assert_eq(count_files("incoming"), 2 * want_in);
      mxgw_queue_free(q);
      break;
    }
    cr_assert_eq(count_files("journal"),
                 stat_of(q, MXGW_QSTAT_JOURNAL_SEGMENTS));
    for (int k = 0; k < LN; k++) {
      commit_qh(q, ids[n]);
      model[n++] = M_INCOMING;
    }
    /* take some (old and new); deliver, defer or leave each */
    for (int k = 0; k < LN; k++) {
      mxgw_queue_entry *e;
      if (mxgw_queue_take(q, 0, &e) != MXGW_OK)
        break;
      const char *id = get_s(e, MXGW_QKEY_ID);
      int i = 0;
      while (i < n && strcmp(ids[i], id))
        i++;
      cr_assert_lt(i, n, "unknown %s", id);
      cr_assert_eq(model[i], M_INCOMING, "%s taken in model state %d", id,
                   model[i]);
      if (k % 3 == 0) {
        deliver_all(e);
        cr_assert_eq(mxgw_queue_finish(q, e, 0), 0);
        model[i] = M_GONE;
      } else if (k % 3 == 1) {
        mxgw_queue_entry_set_rcpt(e, 1, MXGW_RCPT_DEFERRED, 451, "4.4.1",
                                  "later");
        cr_assert_eq(mxgw_queue_finish(q, e, 1 << 30), MXGW_QSTATE_DEFERRED);
        model[i] = M_DEFERRED;
      } /* else: taken, never finished: incoming again after the crash */
      mxgw_queue_entry_free(e);
    }
    mxgw_queue_free(q);
  }
}
