/* SPDX-License-Identifier: MIT */
/*
 * test_failmalloc.c: allocation-failure tests. A counting mxgw_mem makes
 * the Nth allocation fail (once, or from then on), and a full dialogue
 * (STARTTLS, AUTH, MAIL with parameters, RCPT with DSN, DATA, the Received
 * header, BDAT, errors, QUIT) is rerun for N = 1, 2, ... until it completes
 * without hitting the failure. Every run must either report MXGW_E_NOMEM
 * from some call (after which the session, if next_event failed, closes
 * with 421 4.3.0) or produce exactly the output of a run without failures;
 * it must never crash, and every block it allocated must be freed (counted
 * here, and checked again by ASan's leak checker in the sanitizer build).
 */
#include <stdlib.h>
#include <string.h>

#include "failmem.h"
#include "harness.h"

TestSuite(failmalloc, .timeout = 600);

/* The outcome of one dialogue. */
typedef struct run {
  int err;        /* first error returned by any call (0: none) */
  int from_next;  /* it came from next_event() */
  int completed;  /* the dialogue ran to QUIT */
  int closed_421; /* after a next_event NOMEM: a 421 4.3.0 was queued */
  int got_close;  /* a CLOSE event was seen after the error */
  h_buf out;      /* everything written to the client */
  h_buf events;   /* the event numbers, as text */
} run;

struct hook_state {
  int hdr_rc;
};

static void hdr_hook(harness *h, int ev) {
  struct hook_state *st = h->user;
  if (ev == MXGW_EV_MESSAGE_END) {
    const char *p;
    size_t n;
    int rc = mxgw_session_received_header(h->s, "QID1", 1700000000, &p, &n);
    if (rc != MXGW_OK && st->hdr_rc == 0)
      st->hdr_rc = rc;
  }
}

static const char *const script[] = {
    "EHLO client.example\r\n",
    "STARTTLS\r\n",
    /* starttls_done() here */
    "EHLO client.example\r\n",
    "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n",
    ("MAIL FROM:<\"quoted sender\"@example.org> SIZE=100 BODY=8BITMIME "
     "ENVID=x+2By RET=HDRS AUTH=<>\r\n"),
    "RCPT TO:<b@example.net> NOTIFY=SUCCESS,DELAY "
    "ORCPT=rfc822;b+40example.net\r\n",
    "RCPT TO:<c@[192.0.2.7]>\r\n",
    "RCPT TO:<d@example.net>\r\n", /* rejected by the application */
    "DATA\r\n",
    "Subject: failmalloc\r\n\r\n..stuffed\r\nline two\r\n.\r\n",
    "MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\n",
    "RSET\r\nVRFY x\r\nHELP\r\nFROB\r\nMAIL FROM:<bad\r\n",
    "QUIT\r\n",
};

static void record_error(run *r, int rc, int from_next) {
  if (r->err == 0 && rc < 0) {
    r->err = rc;
    r->from_next = from_next;
  }
}

/* Run the dialogue with allocator f; fill r. Frees everything. */
static void dialogue(failmem *f, run *r) {
  mxgw_mem mem = failmem_mem(f);
  harness h;
  struct hook_state st = {0};
  memset(&h, 0, sizeof h);
  memset(r, 0, sizeof *r);
  h.mem = &mem;
  h.now = 1000;
  h.auto_output = 1;
  h.tolerant = 1;
  h.hook = hdr_hook;
  h.user = &st;
  h_script(&h, MXGW_EV_RCPT, H_ACCEPT, 0, NULL, NULL);
  h_script(&h, MXGW_EV_RCPT, H_ACCEPT, 0, NULL, NULL);
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 550, "5.1.1", "No such user");

  int rc = mxgw_session_config_new(&h.cfg, &mem);
  if (rc) {
    cr_assert_eq(h.cfg, NULL, "config_new failed but set *out");
    record_error(r, rc, 0);
    goto done;
  }
  if ((rc = mxgw_session_config_set_str(h.cfg, MXGW_OPT_HOSTNAME,
                                        "mx.example.org")) ||
      (rc = mxgw_session_config_set_int(h.cfg, MXGW_OPT_STARTTLS, 1)) ||
      (rc = mxgw_session_config_set_int(h.cfg, MXGW_OPT_AUTH, 1))) {
    record_error(r, rc, 0);
    goto done;
  }
  if ((rc = mxgw_session_new(&h.s, h.cfg, &mem))) {
    cr_assert_eq(h.s, NULL, "session_new failed but set *out");
    record_error(r, rc, 0);
    goto done;
  }
  mxgw_session_set_log(h.s, NULL, NULL);
  if ((rc = mxgw_session_set_peer(h.s, "192.0.2.1", 4711, "client.example")) ||
      (rc = mxgw_session_start(h.s, h.now))) {
    record_error(r, rc, 0);
    goto done;
  }
  h_pump(&h);
  for (size_t i = 0;
       i < sizeof script / sizeof script[0] && !h.last_err && !st.hdr_rc; i++) {
    h_send(&h, script[i]);
    if (h.last_err)
      break;
    if (i == 1) {
      rc = mxgw_session_starttls_done(h.s, "TLSv1.3", "TLS_AES_256_GCM_SHA384");
      if (rc) {
        record_error(r, rc, 0);
        goto done;
      }
      h_pump(&h);
    }
    if (i + 1 == sizeof script / sizeof script[0] && !h.last_err)
      r->completed = 1;
  }
  if (st.hdr_rc)
    record_error(r, st.hdr_rc, 0);
  if (h.last_err) {
    /* Was it next_event? Then the session must close with 421 4.3.0. */
    int w = mxgw_session_want(h.s);
    record_error(r, h.last_err, (w & MXGW_WANT_CLOSE) != 0);
    h.last_err = 0;
    h_run(&h);
    h_drain(&h);
    r->got_close = h_count(&h, MXGW_EV_CLOSE) > 0;
  }
  r->closed_421 = strstr(h_output(&h), "421 4.3.0") != NULL;
  if (h.events)
    for (size_t i = 0; i < h.nevents; i++)
      h_buf_addf(&r->events, "%d ", h.events[i].ev);
  h_buf_add(&r->out, h_output(&h), h.out.len);

done:
  h.user = NULL;
  h_free(&h);
}

static void failmalloc_loop(int sticky) {
  /* reference run: no failure */
  failmem ref = {0};
  run rr;
  dialogue(&ref, &rr);
  cr_assert_eq(rr.err, 0, "reference run failed: %s", mxgw_errname(rr.err));
  cr_assert(rr.completed, "reference run did not complete");
  cr_assert_eq(ref.live, 0, "reference run leaked %ld blocks", ref.live);
  cr_assert(strstr(h_buf_str(&rr.out), "221 2.0.0") != NULL);
  long total = ref.n;
  cr_assert_gt(total, 5, "suspiciously few allocations: %ld", total);
  cr_log_info("dialogue makes %ld allocations%s", total,
              sticky ? " (sticky failures)" : "");

  long n;
  for (n = 1; n <= total + 1; n++) {
    failmem f = {0};
    f.fail_at = n;
    f.sticky = sticky;
    run r;
    dialogue(&f, &r);
    cr_assert_eq(f.live, 0, "N=%ld%s: %ld blocks leaked", n,
                 sticky ? " (sticky)" : "", f.live);
    if (!f.failed) {
      /* past the last allocation: a normal run */
      cr_assert_eq(r.err, 0, "N=%ld: error %s without a failed allocation", n,
                   mxgw_errname(r.err));
      cr_assert_str_eq(h_buf_str(&r.out), h_buf_str(&rr.out));
      h_buf_free(&r.out);
      h_buf_free(&r.events);
      break;
    }
    if (r.err) {
      cr_assert_eq(r.err, MXGW_E_NOMEM, "N=%ld: %s instead of MXGW_E_NOMEM", n,
                   mxgw_errname(r.err));
      if (r.from_next && !sticky)
        cr_assert(r.closed_421 && r.got_close,
                  "N=%ld: next_event NOMEM without 421 4.3.0 and CLOSE: %s", n,
                  h_buf_str(&r.out));
    } else {
      /* the failure was absorbed: the result must be the normal one */
      cr_assert(r.completed, "N=%ld: no error reported, dialogue incomplete",
                n);
      cr_assert_str_eq(h_buf_str(&r.out), h_buf_str(&rr.out),
                       "N=%ld: failure absorbed but the output differs", n);
    }
    h_buf_free(&r.out);
    h_buf_free(&r.events);
  }
  cr_assert_leq(n, total + 1, "never completed");
  h_buf_free(&rr.out);
  h_buf_free(&rr.events);
  h_leak_check();
}

Test(failmalloc, single_failure) { failmalloc_loop(0); }
Test(failmalloc, persistent_failure) { failmalloc_loop(1); }

Test(failmalloc, config_new_nomem) {
  failmem f = {0};
  f.fail_at = 1;
  mxgw_mem mem = failmem_mem(&f);
  mxgw_session_config *cfg = (mxgw_session_config *)&f; /* poison */
  H_RET(MXGW_E_NOMEM, mxgw_session_config_new(&cfg, &mem));
  cr_assert_eq(cfg, NULL);
  cr_assert_eq(f.live, 0);
  h_leak_check();
}

Test(failmalloc, allocator_is_used) {
  failmem f = {0};
  mxgw_mem mem = failmem_mem(&f);
  mxgw_session_config *cfg = NULL;
  mxgw_session *s = NULL;
  H_OK(mxgw_session_config_new(&cfg, &mem));
  long after_cfg = f.n;
  cr_assert_gt(after_cfg, 0, "config_new did not use the allocator");
  /* a session with its own allocator; the config keeps using its own */
  failmem g = {0};
  mxgw_mem mem2 = failmem_mem(&g);
  H_OK(mxgw_session_new(&s, cfg, &mem2));
  cr_assert_gt(g.n, 0, "session_new did not use its allocator");
  cr_assert_eq(f.n, after_cfg, "session_new used the config's allocator");
  mxgw_session_config_free(cfg);
  cr_assert_gt(f.live, 0, "config freed while a session holds it");
  mxgw_session_free(s);
  cr_assert_eq(f.live, 0);
  cr_assert_eq(g.live, 0);
  h_leak_check();
}
