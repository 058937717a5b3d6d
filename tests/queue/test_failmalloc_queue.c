/* SPDX-License-Identifier: MIT */
/*
 * test_failmalloc_queue.c: allocation failures in the durable queue.
 *
 * A counting mxgw_mem makes the k-th allocation attempt fail (once, or
 * "sticky": from the k-th on), and one scenario is rerun for k = 1, 2, ...
 * until a run completes without reaching an injected failure. The scenario,
 * with MXGW_QOPT_JOURNAL off and on: open a fresh spool, commit four
 * messages (begin, write in chunks, envelope, commit; one body larger than
 * MXGW_QOPT_JOURNAL_MAX_BODY so it goes to files even with the journal),
 * take one and read its body (mxgw_queue_entry_body) and finish it
 * delivered (removed), take one and finish it deferred, take one and finish
 * it failed, close, reopen (recovery runs with the failing allocator too),
 * take the last one, close with it active and reopen again (recovery of
 * an active message, still with the failing allocator).
 *
 * Every run must:
 *   - get from each call either its normal result or MXGW_E_NOMEM (any
 *     other code fails the test, naming the call and k);
 *   - never crash (Criterion reports a signal as a failure);
 *   - free every block it got from the mxgw_mem (counted here) and leak
 *     nothing else (LeakSanitizer, in the ASan build: label "queue;unit");
 *   - leave the spool consistent, checked by reopening it as owner with the
 *     plain allocator: every message whose commit returned MXGW_OK and that
 *     was not finished as delivered is there, in the state we left it in
 *     (active ones recovered to incoming), with its body byte for byte and
 *     its envelope; a message whose commit failed (or was never committed)
 *     is absent; one finished as delivered is absent; one whose finish
 *     failed is absent or intact; nothing in tmp/ or corrupt/.
 *
 * Limits: only allocations routed through the mxgw_mem are failed. The
 * metadata is built with jansson, which allocates with its own malloc
 * (json_set_alloc_funcs() is process-global and would break the library's
 * "no global state" rule, so this test does not call it): a jansson
 * allocation failure is not simulated here. Neither are OpenSSL's or libc's
 * (opendir, ...). The spool is opened with MXGW_QOPT_SYNC 0 (no fsyncs: the
 * test is about memory, not power loss; queue_crash covers that) and
 * MXGW_QOPT_ASYNC_WORKERS 0 so the allocation sequence is deterministic.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <mxgw/mxgw.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "failmem.h"
#include "queue_helper.h"

TestSuite(failmalloc_queue, .timeout = 600);

/* ---- helpers ------------------------------------------------------------ */

static int rm_cb(const char *p, const struct stat *sb, int type,
                 struct FTW *ftw) {
  (void)sb;
  (void)type;
  (void)ftw;
  return remove(p);
}

static void rm_rf(const char *dir) {
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Entries of spool/sub; a directory that is not there has none. */
static int count_dir(const char *spool, const char *sub) {
  int n = qh_count_entries(spool, sub);
  return n < 0 ? 0 : n;
}

#define NMSG 4
#define JMAX 4096 /* MXGW_QOPT_JOURNAL_MAX_BODY */

/* What the scenario knows about each message. */
enum mstate {
  M_NONE = 0,   /* never committed, or its commit failed: must be absent */
  M_INCOMING,   /* committed (or taken and left active): incoming */
  M_REMOVED,    /* finished delivered (finish returned 0): absent */
  M_DEFERRED,   /* finished deferred */
  M_FAILED,     /* finished failed */
  M_PRESENT,    /* taken, or a take/finish failed: intact, any state */
  M_UNKNOWN     /* its finish as delivered failed: absent or intact */
};

typedef struct rec {
  char id[64];
  enum mstate st;
  unsigned char *body;
  size_t blen;
} rec;

static size_t body_size(int i) {
  static const size_t sizes[NMSG] = {97, 3000, JMAX + 5000, 1};
  return sizes[i];
}

static void make_body(rec *r, int i) {
  r->blen = body_size(i);
  r->body = malloc(r->blen);
  cr_assert_not_null(r->body);
  for (size_t j = 0; j < r->blen; j++)
    r->body[j] = (j % 64 == 63) ? '\n' : (unsigned char)('A' + (i * 7 + j) % 26);
}

static rec *find_rec(rec *r, const char *id) {
  for (int i = 0; i < NMSG; i++)
    if (r[i].id[0] && strcmp(r[i].id, id) == 0)
      return &r[i];
  return NULL;
}

static const char SENDER[] = "sender@example.org";
static const char RCPT0[] = "a@example.net";
static const char RCPT1[] = "b@example.net";
static const char ORCPT1[] = "rfc822;B@example.net";

/* The scenario's outcome. */
typedef struct outcome {
  int err;           /* first error (0: none) */
  char call[160];    /* the call that returned it */
  int unexpected;    /* it was not MXGW_E_NOMEM */
} outcome;

/* Check a call: OK continues; an error is recorded and ends the scenario. */
#define STEP(expr_)                                                           \
  do {                                                                         \
    int rv_ = (expr_);                                                         \
    if (rv_ < 0) {                                                             \
      oc->err = rv_;                                                           \
      oc->unexpected = rv_ != MXGW_E_NOMEM;                                    \
      if (!oc->call[0])                                                        \
        snprintf(oc->call, sizeof oc->call, "%s (line %d)", #expr_, __LINE__); \
      goto out;                                                                \
    }                                                                          \
  } while (0)

static int open_queue(mxgw_queue **q, const char *spool, const mxgw_mem *mem,
                      int journal) {
  *q = NULL;
  int rv = mxgw_queue_new(q, spool, mem);
  if (!rv)
    rv = mxgw_queue_set_int(*q, MXGW_QOPT_SYNC, 0);
  if (!rv)
    rv = mxgw_queue_set_int(*q, MXGW_QOPT_ASYNC_WORKERS, 0);
  if (!rv)
    rv = mxgw_queue_set_int(*q, MXGW_QOPT_JOURNAL, journal);
  if (!rv && journal)
    rv = mxgw_queue_set_int(*q, MXGW_QOPT_JOURNAL_MAX_BODY, JMAX);
  if (!rv)
    rv = mxgw_queue_open(*q);
  return rv;
}

/* Read the entry's body and compare it with the record. */
static int check_body(const mxgw_queue_entry *e, const rec *r) {
  int fd = -1;
  int64_t off = 0, len = 0;
  int rv = mxgw_queue_entry_body(e, &fd, &off, &len);
  if (rv)
    return rv;
  unsigned char *buf = malloc(r->blen + 1);
  cr_assert_not_null(buf);
  ssize_t n = len == (int64_t)r->blen ? pread(fd, buf, r->blen, off) : -1;
  close(fd);
  cr_assert_eq(len, (int64_t)r->blen, "message %s: body length %lld, want %zu",
               r->id, (long long)len, r->blen);
  cr_assert_eq(n, (ssize_t)r->blen, "message %s: short read", r->id);
  cr_assert(memcmp(buf, r->body, r->blen) == 0, "message %s: body differs",
            r->id);
  free(buf);
  return MXGW_OK;
}

/* Take one message, check its body, record every recipient as `rstate`
 * and finish it. On an error the entry is freed and the error returned
 * (oc->call names the call). */
static int take_finish(mxgw_queue *q, rec *recs, int rstate, int64_t now,
                       enum mstate want, outcome *oc) {
  mxgw_queue_entry *e = NULL;
  const char *what = "mxgw_queue_take";
  int rv = mxgw_queue_take(q, now, &e);
  if (rv) {
    /* nothing was handed out, nothing may be lost: every incoming message
     * must still be there (if one was moved to active/ meanwhile, recovery
     * puts it back) */
    for (int i = 0; i < NMSG; i++)
      if (recs[i].st == M_INCOMING)
        recs[i].st = M_PRESENT;
    goto fail;
  }
  const char *id;
  size_t il;
  cr_assert_eq(mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &il), MXGW_OK);
  rec *r = find_rec(recs, id);
  cr_assert_not_null(r, "take returned an unknown message %s", id);
  cr_assert_eq(r->st, M_INCOMING, "take returned %s in state %d", id, r->st);
  r->st = M_PRESENT; /* active: recovery requeues it, until finish says */
  what = "mxgw_queue_entry_body";
  if ((rv = check_body(e, r)))
    goto fail;
  what = "mxgw_queue_entry_set_rcpt";
  for (size_t k = 0; k < 2; k++) {
    int code = rstate == MXGW_RCPT_DELIVERED ? 250
               : rstate == MXGW_RCPT_FAILED  ? 550
                                             : 451;
    const char *enh = code == 250 ? "2.0.0" : code == 550 ? "5.1.1" : "4.2.0";
    if ((rv = mxgw_queue_entry_set_rcpt(e, k, rstate, code, enh,
                                        "failmalloc test reply")))
      goto fail;
  }
  what = "mxgw_queue_finish";
  rv = mxgw_queue_finish(q, e, rstate == MXGW_RCPT_DEFERRED ? now + 3600 : 0);
  if (rv < 0) {
    if (want == M_REMOVED)
      r->st = M_UNKNOWN;
    goto fail;
  }
  int want_state = want == M_REMOVED    ? 0
                   : want == M_DEFERRED ? MXGW_QSTATE_DEFERRED
                                        : MXGW_QSTATE_FAILED;
  cr_assert_eq(rv, want_state, "finish %s: state %d, want %d", id, rv,
               want_state);
  r->st = want;
  mxgw_queue_entry_free(e);
  return MXGW_OK;
fail:
  mxgw_queue_entry_free(e);
  snprintf(oc->call, sizeof oc->call, "%s (finishing as %s)", what,
           want == M_REMOVED ? "delivered" : want == M_DEFERRED ? "deferred"
                                                                : "failed");
  return rv;
}

/* One run. Returns true when no injected failure was reached. */
static bool scenario(failmem *f, int journal, const char *spool, rec *recs,
                     outcome *oc) {
  mxgw_mem mem = failmem_mem(f);
  mxgw_queue *q = NULL;
  mxgw_queue_msg *msg = NULL;
  mxgw_queue_entry *e = NULL;
  int64_t now = (int64_t)time(NULL);
  memset(oc, 0, sizeof *oc);

  STEP(open_queue(&q, spool, &mem, journal));
  for (int i = 0; i < NMSG; i++) {
    rec *r = &recs[i];
    STEP(mxgw_queue_begin(q, &msg));
    const char *id;
    size_t il;
    STEP(mxgw_queue_msg_id(msg, &id, &il));
    snprintf(r->id, sizeof r->id, "%.*s", (int)il, id);
    /* in three chunks: the journal buffers, files stream */
    size_t a = r->blen / 3, b = r->blen / 2;
    STEP(mxgw_queue_write(msg, r->body, a));
    STEP(mxgw_queue_write(msg, r->body + a, b - a));
    STEP(mxgw_queue_write(msg, r->body + b, r->blen - b));
    STEP(mxgw_queue_msg_set_str(msg, MXGW_QKEY_SENDER, SENDER,
                                strlen(SENDER)));
    STEP(mxgw_queue_msg_set_str(msg, MXGW_QKEY_CLIENT_ADDR, "192.0.2.1", 9));
    STEP(mxgw_queue_msg_set_str(msg, MXGW_QKEY_TLS_JSON, "{\"v\":\"TLSv1.3\"}",
                                15));
    STEP(mxgw_queue_msg_add_rcpt(msg, RCPT0, strlen(RCPT0), 0, NULL, 0));
    STEP(mxgw_queue_msg_add_rcpt(msg, RCPT1, strlen(RCPT1), 6, ORCPT1,
                                 strlen(ORCPT1)));
    int rv = mxgw_queue_commit(msg); /* consumed either way */
    msg = NULL;
    STEP(rv);
    r->st = M_INCOMING;
  }
  STEP(take_finish(q, recs, MXGW_RCPT_DELIVERED, now, M_REMOVED, oc));
  STEP(take_finish(q, recs, MXGW_RCPT_DEFERRED, now, M_DEFERRED, oc));
  STEP(take_finish(q, recs, MXGW_RCPT_FAILED, now, M_FAILED, oc));
  cr_assert_eq(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED), 1);
  mxgw_queue_free(q);
  q = NULL;

  /* reopen: recovery (journal replay into incoming/) with the failing
   * allocator, then take the last message and close with it active */
  STEP(open_queue(&q, spool, &mem, journal));
  {
    int rv = mxgw_queue_take(q, now, &e);
    if (rv != MXGW_OK) {
      for (int i = 0; i < NMSG; i++)
        if (recs[i].st == M_INCOMING)
          recs[i].st = M_PRESENT;
      snprintf(oc->call, sizeof oc->call,
               "mxgw_queue_take after reopen (the last message is due)");
    }
    STEP(rv);
    const char *id;
    size_t il;
    cr_assert_eq(mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &il), MXGW_OK);
    rec *r = find_rec(recs, id);
    cr_assert_not_null(r, "take after reopen returned unknown %s", id);
    cr_assert_eq(r->st, M_INCOMING, "take after reopen: %s in state %d", id,
                 r->st);
    STEP(check_body(e, r)); /* stays "incoming": recovery requeues it */
  }
  /* nothing else is due (the deferred one is an hour away) */
  {
    mxgw_queue_entry *e2 = NULL;
    int rv = mxgw_queue_take(q, now, &e2);
    mxgw_queue_entry_free(e2);
    if (rv != MXGW_E_NOTFOUND)
      STEP(rv == MXGW_OK ? MXGW_E_STATE : rv);
  }
  /* close with it active, and recover it (active -> incoming) under the
   * failing allocator too */
  mxgw_queue_entry_free(e);
  e = NULL;
  mxgw_queue_free(q);
  q = NULL;
  STEP(open_queue(&q, spool, &mem, journal));
  {
    /* a message file left in active/ is counted as RECOVERED_ACTIVE; a
     * journal message that was taken is indexed again like every live
     * journal message (the journal does not record takes), so with the
     * journal it may be counted in JOURNAL_RECOVERED instead */
    int64_t ra = -1, jr = 0;
    mxgw_queue_get_int(q, MXGW_QSTAT_RECOVERED_ACTIVE, &ra);
    mxgw_queue_get_int(q, MXGW_QSTAT_JOURNAL_RECOVERED, &jr);
    if (journal ? ra + jr < 1 : ra != 1) {
      snprintf(oc->call, sizeof oc->call,
               "reopen recovered %lld active messages and %lld journal "
               "messages, want the active one among them",
               (long long)ra, (long long)jr);
      STEP(MXGW_E_STATE);
    }
  }

out:
  mxgw_queue_msg_free(msg);
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
  cr_assert_eq(atomic_load(&f->live), 0,
               "k=%ld%s journal=%d: %ld block(s) from the mxgw_mem not freed "
               "(stopped at %s: %s)",
               f->fail_at, f->sticky ? " (sticky)" : "", journal,
               atomic_load(&f->live), oc->call[0] ? oc->call : "the end",
               mxgw_errname(oc->err));
  return !atomic_load(&f->failed);
}

/* Reopen with the plain allocator and check what is left. Returns false
 * with the reason in why[] on the first inconsistency. */
#define VCHECK(cond, ...)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      snprintf(why, whylen, __VA_ARGS__);                                      \
      goto vout;                                                               \
    }                                                                          \
  } while (0)

static bool verify(const char *spool, int journal, rec *recs,
                   const outcome *oc, char *why, size_t whylen) {
  mxgw_queue *q = NULL;
  mxgw_queue_entry *e = NULL;
  bool ok = false;
  const char *ctx = oc->call[0] ? oc->call : "(no failure)";
  int rv = open_queue(&q, spool, NULL, journal);
  VCHECK(rv == MXGW_OK, "reopen: %s", mxgw_errname(rv));
  VCHECK(count_dir(spool, "corrupt") == 0,
         "%d file(s) in corrupt/: a committed message was quarantined "
         "(run stopped at %s)",
         count_dir(spool, "corrupt"), ctx);
  for (int i = 0; i < NMSG; i++) {
    rec *r = &recs[i];
    if (!r->id[0])
      continue;
    rv = mxgw_queue_load(q, r->id, &e);
    if (r->st == M_NONE || r->st == M_REMOVED) {
      VCHECK(rv == MXGW_E_NOTFOUND,
             "message %d (%s) should be absent (%s) but load gave %s; run "
             "stopped at %s", i, r->id,
             r->st == M_NONE ? "commit failed" : "finished delivered",
             mxgw_errname(rv), ctx);
      continue;
    }
    if (r->st == M_UNKNOWN && rv == MXGW_E_NOTFOUND)
      continue;
    VCHECK(rv == MXGW_OK,
           "message %d (%s, committed, scenario state %d) lost: load gave "
           "%s; run stopped at %s", i, r->id, r->st, mxgw_errname(rv), ctx);
    int64_t st = 0, n = 0;
    mxgw_queue_entry_get_int(e, MXGW_QKEY_STATE, &st);
    mxgw_queue_entry_get_int(e, MXGW_QKEY_RCPT_COUNT, &n);
    int want = r->st == M_INCOMING   ? MXGW_QSTATE_INCOMING
               : r->st == M_DEFERRED ? MXGW_QSTATE_DEFERRED
               : r->st == M_FAILED   ? MXGW_QSTATE_FAILED
                                     : (int)st;
    VCHECK(st == want, "message %s in state %lld, want %d; run stopped at %s",
           r->id, (long long)st, want, ctx);
    VCHECK(n == 2, "message %s: %lld recipients", r->id, (long long)n);
    const char *p = "";
    size_t pl;
    mxgw_queue_entry_get_str(e, MXGW_QKEY_SENDER, &p, &pl);
    VCHECK(strcmp(p, SENDER) == 0, "message %s: sender <%s>", r->id, p);
    p = "";
    mxgw_queue_entry_rcpt_get_str(e, 0, MXGW_QRKEY_ADDR, &p, &pl);
    VCHECK(strcmp(p, RCPT0) == 0, "message %s: rcpt 0 <%s>", r->id, p);
    p = "";
    mxgw_queue_entry_rcpt_get_str(e, 1, MXGW_QRKEY_ORCPT, &p, &pl);
    VCHECK(strcmp(p, ORCPT1) == 0, "message %s: orcpt 1 %s", r->id, p);
    if (r->st == M_DEFERRED || r->st == M_FAILED) {
      int64_t rs = 0;
      mxgw_queue_entry_rcpt_get_int(e, 1, MXGW_QRKEY_STATE, &rs);
      VCHECK(rs == (r->st == M_DEFERRED ? MXGW_RCPT_DEFERRED
                                        : MXGW_RCPT_FAILED),
             "message %s: recipient state %lld", r->id, (long long)rs);
    }
    rv = check_body(e, r);
    VCHECK(rv == MXGW_OK, "message %s: body unreadable: %s", r->id,
           mxgw_errname(rv));
    mxgw_queue_entry_free(e);
    e = NULL;
  }
  VCHECK(count_dir(spool, "tmp") == 0, "files left in tmp/");
  ok = true;
vout:
  mxgw_queue_entry_free(e);
  mxgw_queue_free(q);
  return ok;
}

static void leak_check(void) {
#ifdef FAILMEM_HAVE_LSAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
               "memory leaked: see the LeakSanitizer report above");
#endif
}

/* Every k, then one verdict listing the runs that went wrong (all of them
 * are run, so one bug does not hide the next). */
static void run_all(int journal, int sticky) {
  rec recs[NMSG];
  long k, injected = 0, bad = 0;
  char report[4096] = "";
  size_t rl = 0;
  for (k = 1; k < 100000; k++) {
    char spool[] = "/tmp/mxgw-fmq.XXXXXX";
    cr_assert_not_null(mkdtemp(spool));
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < NMSG; i++)
      make_body(&recs[i], i);
    failmem f = {.fail_at = k, .sticky = sticky};
    outcome oc;
    bool clean = scenario(&f, journal, spool, recs, &oc);
    char why[700] = "";
    bool ok;
    if (oc.unexpected) {
      char vwhy[400] = "spool consistent";
      verify(spool, journal, recs, &oc, vwhy, sizeof vwhy);
      snprintf(why, sizeof why, "%s returned %s (want MXGW_OK or "
               "MXGW_E_NOMEM); then: %s", oc.call, mxgw_errname(oc.err), vwhy);
      ok = false;
    } else if (clean && oc.err) {
      snprintf(why, sizeof why, "run without failure: %s returned %s",
               oc.call, mxgw_errname(oc.err));
      ok = false;
    } else {
      ok = verify(spool, journal, recs, &oc, why, sizeof why);
    }
    if (!clean)
      injected++;
    if (!ok) {
      bad++;
      cr_log_error("k=%ld%s journal=%d: %s", k, sticky ? " sticky" : "",
                   journal, why);
      if (rl < sizeof report - 200)
        rl += (size_t)snprintf(report + rl, sizeof report - rl,
                               "\n  k=%ld: %.600s", k, why);
    }
    for (int i = 0; i < NMSG; i++)
      free(recs[i].body);
    rm_rf(spool);
    if (clean)
      break;
  }
  leak_check();
  cr_log_info("journal=%d sticky=%d: %ld runs, %ld with an injected "
              "allocation failure, %ld inconsistent",
              journal, sticky, k, injected, bad);
  cr_assert_eq(bad, 0, "journal=%d%s: %ld of %ld runs went wrong:%s",
               journal, sticky ? " sticky" : "", bad, k, report);
  cr_assert_gt(injected, 20, "too few allocations to be a meaningful test");
}

Test(failmalloc_queue, files) { run_all(0, 0); }
Test(failmalloc_queue, journal) { run_all(1, 0); }
Test(failmalloc_queue, files_sticky) { run_all(0, 1); }
Test(failmalloc_queue, journal_sticky) { run_all(1, 1); }
