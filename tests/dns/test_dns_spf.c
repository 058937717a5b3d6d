/* SPDX-License-Identifier: MIT */
/*
 * test_dns_spf.c: SPF evaluated through the c-ares resolver against NSD on
 * loopback (dns_fixture.py), and the same scenarios through the static
 * resolver loaded from the same zone file, which must agree: pass, fail,
 * softfail, neutral, none, include, redirect, exp=, a, mx, CNAME, IPv6,
 * void lookups (NXDOMAIN and NODATA; the third is permerror), a TXT record
 * over 512 octets (TCP), and what only real DNS can do: SERVFAIL, REFUSED,
 * timeouts and lying servers give temperror. Also the cache across
 * evaluations and 1,000 evaluations in flight on one resolver.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mxgw/mxgw_resolver.h"
#include "mxgw/mxgw_spf.h"
#include "mxgw_resolver_ares.h"

static const char *env(const char *k) {
  const char *v = getenv(k);
  cr_assert(v && *v, "%s is not set: run through tests/dns/dns_fixture.py", k);
  return v;
}

static mxgw_resolver *ares_to(const char *server) {
  char sv[128];
  snprintf(sv, sizeof sv, "servers=%s", server);
  const char *opts[] = {sv, "timeout_ms=300", "tries=1", NULL};
  mxgw_resolver *r = NULL;
  cr_assert_eq(mxgw_resolver_new_ares(&r, opts, NULL), MXGW_OK);
  return r;
}

static mxgw_resolver *static_zone(void) {
  mxgw_resolver *r = NULL;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  int rv = mxgw_resolver_load_zone_file(r, env("MXGW_TEST_DNS_ZONE"), NULL);
  cr_assert_eq(rv, MXGW_OK, "zone: %s", mxgw_resolver_errmsg(r));
  return r;
}

static mxgw_spf *new_spf(mxgw_resolver *r) {
  mxgw_spf *spf = NULL;
  cr_assert_eq(mxgw_spf_new(&spf, r, NULL), MXGW_OK);
  cr_assert_eq(mxgw_spf_set_str(spf, MXGW_SPF_OPT_RECEIVER, "mx.test"),
               MXGW_OK);
  return spf;
}

static const char *str(const mxgw_spf_check *chk, int key) {
  const char *p;
  size_t n;
  if (mxgw_spf_check_get_str(chk, key, &p, &n) != MXGW_OK)
    return NULL;
  return p;
}

static int64_t num(const mxgw_spf_check *chk, int key) {
  int64_t v = -1;
  cr_assert_eq(mxgw_spf_check_get_int(chk, key, &v), MXGW_OK);
  return v;
}

/* Does any trace entry of this kind contain `needle`? */
static int trace_has(const mxgw_spf_check *chk, int kind, const char *needle) {
  size_t n = mxgw_spf_check_trace_count(chk);
  for (size_t i = 0; i < n; i++) {
    int k;
    const char *p;
    size_t l;
    cr_assert_eq(mxgw_spf_check_trace(chk, i, NULL, &k, &p, &l), MXGW_OK);
    if (k == kind && strstr(p, needle))
      return 1;
  }
  return 0;
}

static mxgw_spf_check *check(mxgw_spf *spf, const char *ip,
                             const char *sender) {
  mxgw_spf_check *chk = NULL;
  int rv = mxgw_spf_check_sync(spf, ip, "helo.test", sender,
                               MXGW_SPF_ID_MAILFROM, &chk);
  cr_assert_eq(rv, MXGW_OK, "check %s %s: %s", ip, sender, mxgw_strerror(rv));
  cr_assert(mxgw_spf_check_done(chk));
  return chk;
}

/* ---- the scenarios both resolvers serve ------------------------------- */

typedef struct scenario {
  const char *ip, *sender;
  int result;
  const char *mechanism; /* NULL: not checked */
  const char *explanation; /* exact, NULL: not checked */
  int64_t void_lookups; /* -1: not checked */
} scenario;

static const scenario scenarios[] = {
    {"192.0.2.1", "a@pass.spf.test", MXGW_SPF_PASS, "ip4:192.0.2.1", NULL, 0},
    {"192.0.2.99", "a@pass.spf.test", MXGW_SPF_FAIL, "-all", NULL, 0},
    {"192.0.2.99", "a@softfail.spf.test", MXGW_SPF_SOFTFAIL, "~all", NULL, -1},
    {"192.0.2.99", "a@neutral.spf.test", MXGW_SPF_NEUTRAL, "?all", NULL, -1},
    {"192.0.2.1", "a@nospf.spf.test", MXGW_SPF_NONE, NULL, NULL, -1},
    {"192.0.2.1", "a@nosuch.spf.test", MXGW_SPF_NONE, NULL, NULL, -1},
    {"198.51.100.7", "a@include.spf.test", MXGW_SPF_PASS,
     "include:inc1.spf.test", NULL, -1},
    {"192.0.2.77", "a@include.spf.test", MXGW_SPF_PASS,
     "include:inc1.spf.test", NULL, -1},
    {"10.1.1.1", "a@include.spf.test", MXGW_SPF_FAIL, "-all", NULL, -1},
    {"192.0.2.1", "a@redirect.spf.test", MXGW_SPF_PASS, "ip4:192.0.2.1", NULL,
     -1},
    {"192.0.2.2", "a@redirect.spf.test", MXGW_SPF_FAIL, "-all", NULL, -1},
    {"192.0.2.99", "a@exp.spf.test", MXGW_SPF_FAIL, "-all",
     "192.0.2.99 is not one of exp.spf.test's designated mail servers.", -1},
    {"192.0.2.12", "a@mxrec.spf.test", MXGW_SPF_PASS, "mx", NULL, -1},
    {"192.0.2.13", "a@mxrec.spf.test", MXGW_SPF_FAIL, "-all", NULL, -1},
    {"198.51.100.200", "a@arec.spf.test", MXGW_SPF_PASS, "a/24", NULL, -1},
    {"192.0.2.1", "a@cname.spf.test", MXGW_SPF_PASS, "ip4:192.0.2.1", NULL,
     -1},
    {"2001:db8::1", "a@v6.spf.test", MXGW_SPF_PASS, "ip6:2001:db8::/32", NULL,
     -1},
    {"::ffff:192.0.2.1", "a@pass.spf.test", MXGW_SPF_PASS, "ip4:192.0.2.1",
     NULL, -1},
    {"192.0.2.1", "a@void2.spf.test", MXGW_SPF_FAIL, "-all", NULL, 2},
    {"192.0.2.1", "a@void3.spf.test", MXGW_SPF_PERMERROR, NULL, NULL, -1},
    {"192.0.2.1", "a@two.spf.test", MXGW_SPF_PERMERROR, NULL, NULL, -1},
    {"203.0.113.12", "a@big.spf.test", MXGW_SPF_PASS, "ip4:203.0.113.12",
     NULL, -1},
    {"203.0.113.59", "a@big.spf.test", MXGW_SPF_PASS, "ip4:203.0.113.59",
     NULL, -1},
    {"203.0.113.60", "a@big.spf.test", MXGW_SPF_FAIL, "-all", NULL, -1},
    {"192.0.2.1", "a@servfail-softly.spf.test", MXGW_SPF_PASS,
     "ip4:192.0.2.1", NULL, 0},
};

static void run_scenarios(mxgw_resolver *r, const char *what) {
  mxgw_spf *spf = new_spf(r);
  for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
    const scenario *s = &scenarios[i];
    mxgw_spf_check *chk = check(spf, s->ip, s->sender);
    int res = mxgw_spf_check_result(chk);
    const char *prob = str(chk, MXGW_SPF_INFO_PROBLEM);
    cr_expect_eq(res, s->result, "%s: %s from %s: %s, want %s (%s)", what,
                 s->sender, s->ip, mxgw_spf_result_name(res),
                 mxgw_spf_result_name(s->result), prob ? prob : "");
    if (s->mechanism) {
      const char *m = str(chk, MXGW_SPF_INFO_MECHANISM);
      cr_expect(m && strcmp(m, s->mechanism) == 0, "%s: %s from %s: term %s, want %s",
                what, s->sender, s->ip, m ? m : "(none)", s->mechanism);
    }
    if (s->explanation) {
      const char *e = str(chk, MXGW_SPF_INFO_EXPLANATION);
      cr_expect(e && strcmp(e, s->explanation) == 0,
                "%s: explanation \"%s\"", what, e ? e : "(none)");
    }
    if (s->void_lookups >= 0)
      cr_expect_eq(num(chk, MXGW_SPF_INFO_VOID_LOOKUPS), s->void_lookups,
                   "%s: %s: void lookups", what, s->sender);
    mxgw_spf_check_free(chk);
  }
  mxgw_spf_free(spf);
}

Test(spf_dns, scenarios_over_cares, .timeout = 60) {
  mxgw_resolver *r = ares_to(env("MXGW_TEST_DNS"));
  run_scenarios(r, "c-ares");
  mxgw__ares_stats st;
  cr_assert_eq(mxgw__resolver_ares_stats(r, &st), MXGW_OK);
  cr_assert_gt(st.sent, 20, "the scenarios made only %llu queries",
               (unsigned long long)st.sent);
  cr_assert_geq(st.tcp_sockets, 1, "big.spf.test did not use TCP");
  mxgw_resolver_free(r);
}

Test(spf_dns, same_scenarios_over_the_static_zone) {
  mxgw_resolver *r = static_zone();
  run_scenarios(r, "static");
  mxgw_resolver_free(r);
}

Test(spf_dns, trace_explains_a_fail) {
  mxgw_resolver *r = ares_to(env("MXGW_TEST_DNS"));
  mxgw_spf *spf = new_spf(r);
  mxgw_spf_check *chk = check(spf, "43.207.242.167", "user@softfail.spf.test");
  cr_assert_eq(mxgw_spf_check_result(chk), MXGW_SPF_SOFTFAIL);
  /* the lookup with its answer, the term that did not match, the ~all */
  cr_assert(trace_has(chk, MXGW_SPF_TRACE_QUERY, "softfail.spf.test"));
  cr_assert(trace_has(chk, MXGW_SPF_TRACE_QUERY, "v=spf1 ip4:192.0.2.1 ~all"));
  cr_assert(trace_has(chk, MXGW_SPF_TRACE_TERM, "ip4:192.0.2.1"));
  cr_assert(trace_has(chk, MXGW_SPF_TRACE_TERM, "43.207.242.167"));
  cr_assert(trace_has(chk, MXGW_SPF_TRACE_TERM, "~all"));
  const char *h;
  size_t n;
  cr_assert_eq(mxgw_spf_check_received_spf(chk, &h, &n), MXGW_OK);
  cr_assert(strncmp(h, "Received-SPF: softfail", 22) == 0, "%s", h);
  cr_assert_not_null(strstr(h, "client-ip=43.207.242.167"));
  cr_assert_eq(mxgw_spf_check_auth_results(chk, NULL, &h, &n), MXGW_OK);
  cr_assert(strncmp(h, "spf=softfail", 12) == 0, "%s", h);
  cr_assert_not_null(strstr(h, "smtp.mailfrom=user@softfail.spf.test"));
  mxgw_spf_check_free(chk);
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
}

/* ---- what only real DNS does ------------------------------------------------ */

typedef struct failure {
  const char *server_env; /* an environment variable, or IP:PORT */
  const char *sender;
  int result;
} failure;

Test(spf_dns, dns_failures_give_temperror, .timeout = 60) {
  static const failure cases[] = {
      {"MXGW_TEST_DNS", "a@servfail.spf.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS", "a@refused.spf.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS", "a@spf.broken.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_SILENT", "a@pass.spf.test", MXGW_SPF_TEMPERROR},
      /* a dead server: nothing listens on UDP port 9 of loopback */
      {"127.0.0.1:9", "a@pass.spf.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@badid.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@wrongq.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@garbage.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@badtxt.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@loop.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@trunc.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@servfail.liar.test", MXGW_SPF_TEMPERROR},
      {"MXGW_TEST_DNS_LIAR", "a@cnameloop.liar.test", MXGW_SPF_TEMPERROR},
      /* a TXT question answered with an A record: no SPF record */
      {"MXGW_TEST_DNS_LIAR", "a@wrongtype.liar.test", MXGW_SPF_NONE},
      {"MXGW_TEST_DNS_LIAR", "a@ok.liar.test", MXGW_SPF_PASS},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *sv = cases[i].server_env;
    mxgw_resolver *r = ares_to(strncmp(sv, "MXGW_", 5) ? sv : env(sv));
    mxgw_spf *spf = new_spf(r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mxgw_spf_check *chk = check(spf, "192.0.2.1", cases[i].sender);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    int res = mxgw_spf_check_result(chk);
    cr_expect_eq(res, cases[i].result, "%s: %s, want %s", cases[i].sender,
                 mxgw_spf_result_name(res),
                 mxgw_spf_result_name(cases[i].result));
    if (res == MXGW_SPF_TEMPERROR)
      cr_expect_not_null(str(chk, MXGW_SPF_INFO_PROBLEM), "%s: no problem",
                         cases[i].sender);
    cr_expect_lt(dt, 5.0, "%s took %.1f s", cases[i].sender, dt);
    mxgw_spf_check_free(chk);
    mxgw_spf_free(spf);
    mxgw_resolver_free(r);
  }
}

Test(spf_dns, cache_shared_by_evaluations) {
  mxgw_resolver *r = ares_to(env("MXGW_TEST_DNS"));
  mxgw_spf *spf = new_spf(r);
  mxgw__ares_stats st;
  mxgw_spf_check *chk = check(spf, "192.0.2.77", "a@include.spf.test");
  cr_assert_eq(mxgw_spf_check_result(chk), MXGW_SPF_PASS);
  int64_t q1 = num(chk, MXGW_SPF_INFO_DNS_QUERIES);
  cr_assert_geq(q1, 4); /* TXT include, inc1, inc2, A host */
  mxgw_spf_check_free(chk);
  cr_assert_eq(mxgw__resolver_ares_stats(r, &st), MXGW_OK);
  uint64_t sent = st.sent;
  cr_assert_eq(sent, (uint64_t)q1);

  chk = check(spf, "192.0.2.77", "b@include.spf.test");
  cr_assert_eq(mxgw_spf_check_result(chk), MXGW_SPF_PASS);
  cr_assert_eq(num(chk, MXGW_SPF_INFO_DNS_QUERIES), q1);
  mxgw_spf_check_free(chk);
  cr_assert_eq(mxgw__resolver_ares_stats(r, &st), MXGW_OK);
  cr_assert_eq(st.sent, sent, "the second evaluation went to the network");
  cr_assert_eq(st.cache_hits, (uint64_t)q1);

  /* counted at the server too */
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
  r = ares_to(env("MXGW_TEST_DNS_LIAR"));
  spf = new_spf(r);
  for (int i = 0; i < 3; i++) {
    chk = check(spf, "192.0.2.1", "x@ok.cache.liar.test");
    cr_assert_eq(mxgw_spf_check_result(chk), MXGW_SPF_PASS);
    mxgw_spf_check_free(chk);
  }
  FILE *f = fopen(env("MXGW_TEST_DNS_LIAR_LOG"), "r");
  cr_assert_not_null(f);
  char line[256];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (strcmp(line, "ok.cache.liar.test 16\n") == 0)
      n++;
  fclose(f);
  cr_assert_eq(n, 1, "the server saw %d TXT queries for 3 evaluations", n);
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
}

/* ---- 1,000 evaluations in flight ---------------------------------------------- */

typedef struct slot {
  mxgw_spf_check *chk;
  int want;
  int done;
} slot;

static void on_done(void *arg, mxgw_spf_check *chk) {
  slot *s = arg;
  (void)chk;
  s->done++;
}

Test(spf_dns, thousand_evaluations_in_flight, .timeout = 120) {
  mxgw_resolver *r = ares_to(env("MXGW_TEST_DNS"));
  mxgw_spf *spf = new_spf(r);
  enum { N = 1000 };
  cr_assert_geq(atoi(env("MXGW_TEST_DNS_BULK")), N);
  slot *s = calloc(N, sizeof *s);
  for (int i = 0; i < N; i++) {
    char ip[32], sender[64];
    /* d<i>.bulk.test: "v=spf1 ip4:192.0.2.<i%250> a:h<i>.bulk.test -all",
     * h<i> A 198.51.100.<i%250> */
    switch (i % 3) {
    case 0:
      snprintf(ip, sizeof ip, "192.0.2.%d", i % 250);
      s[i].want = MXGW_SPF_PASS;
      break;
    case 1:
      snprintf(ip, sizeof ip, "198.51.100.%d", i % 250);
      s[i].want = MXGW_SPF_PASS;
      break;
    default:
      snprintf(ip, sizeof ip, "203.0.113.%d", i % 250);
      s[i].want = MXGW_SPF_FAIL;
      break;
    }
    snprintf(sender, sizeof sender, "u%d@d%d.bulk.test", i, i);
    cr_assert_eq(mxgw_spf_check_start(spf, ip, "helo.test", sender,
                                      MXGW_SPF_ID_MAILFROM, &s[i].chk),
                 MXGW_OK);
    cr_assert(!mxgw_spf_check_done(s[i].chk));
    cr_assert_eq(mxgw_spf_check_set_done_cb(s[i].chk, on_done, &s[i]),
                 MXGW_OK);
  }
  cr_assert_geq(mxgw_resolver_pending(r), (size_t)N);
  cr_assert_eq(mxgw_resolver_run(r, 60000), MXGW_OK);
  int right = 0;
  for (int i = 0; i < N; i++) {
    cr_assert_eq(s[i].done, 1, "check %d completed %d times", i, s[i].done);
    if (mxgw_spf_check_result(s[i].chk) == s[i].want)
      right++;
    mxgw_spf_check_free(s[i].chk);
  }
  cr_assert_eq(right, N, "%d of %d results right", right, N);
  free(s);
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
}
