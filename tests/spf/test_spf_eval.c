/* SPDX-License-Identifier: MIT */
/*
 * test_spf_eval.c: SPF evaluation through the public API on the static
 * resolver: the trace that explains a result, every processing limit and
 * its option, include and redirect result mapping, the identities and the
 * initial checks, DNS failures, explanations, the asynchronous life of a
 * check (hooks, abort, free while running, many checks in flight on one
 * resolver, the overall time limit) and hostile records (NUL bytes, huge
 * records, expansion bombs, loops).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mxgw/mxgw.h>

static mxgw_resolver *R;
static mxgw_spf *S;

static void load(const char *text) {
  cr_assert_eq(mxgw_resolver_new_static(&R, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_load_zone(R, text, strlen(text), NULL), MXGW_OK,
               "%s", mxgw_resolver_errmsg(R));
  cr_assert_eq(mxgw_spf_new(&S, R, NULL), MXGW_OK);
}

static void fini(void) {
  mxgw_spf_free(S);
  mxgw_resolver_free(R);
  S = NULL;
  R = NULL;
}

TestSuite(spf_eval, .fini = fini);

static mxgw_spf_check *check(const char *ip, const char *helo,
                             const char *from) {
  mxgw_spf_check *c = NULL;
  cr_assert_eq(mxgw_spf_check_sync(S, ip, helo, from, MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  cr_assert(mxgw_spf_check_done(c));
  return c;
}

static int result(const char *ip, const char *from) {
  mxgw_spf_check *c = check(ip, "mx.client.test", from);
  int r = mxgw_spf_check_result(c);
  mxgw_spf_check_free(c);
  return r;
}

static const char *str(mxgw_spf_check *c, int key) {
  const char *p;
  size_t n;
  int rv = mxgw_spf_check_get_str(c, key, &p, &n);
  if (rv)
    return NULL;
  cr_assert_eq(strlen(p), n, "NUL-terminated");
  return p;
}

static int64_t num(mxgw_spf_check *c, int key) {
  int64_t v = -1;
  cr_assert_eq(mxgw_spf_check_get_int(c, key, &v), MXGW_OK);
  return v;
}

static int trace_has(mxgw_spf_check *c, int kind, const char *needle) {
  size_t n = mxgw_spf_check_trace_count(c);
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t l;
    int k, d;
    cr_assert_eq(mxgw_spf_check_trace(c, i, &d, &k, &p, &l), MXGW_OK);
    if ((!kind || k == kind) && strstr(p, needle))
      return 1;
  }
  return 0;
}

static void dump(mxgw_spf_check *c) {
  size_t n = mxgw_spf_check_trace_count(c);
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t l;
    int k, d;
    mxgw_spf_check_trace(c, i, &d, &k, &p, &l);
    fprintf(stderr, "  %d %-6s %s\n", d, mxgw_spf_trace_kind_name(k), p);
  }
}

#define ASSERT_TRACE(c, kind, needle)                                          \
  do {                                                                         \
    if (!trace_has((c), (kind), (needle))) {                                   \
      dump(c);                                                                 \
      cr_assert_fail("trace lacks \"%s\"", (needle));                          \
    }                                                                          \
  } while (0)

/* ---- the trace tells why ------------------------------------------------ */

static const char *story =
    "example.com. TXT \"v=spf1 ip4:192.0.2.0/24 include:_spf.example.net "
    "~all\"\n"
    "_spf.example.net. TXT \"v=spf1 ip4:198.51.100.0/24 -all\"\n";

Test(spf_eval, trace_shows_which_term_failed_to_authorize) {
  load(story);
  mxgw_spf_check *c = check("43.207.242.167", "mx.client.test", "a@example.com");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_SOFTFAIL);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_MECHANISM), "~all");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_DOMAIN), "example.com");
  cr_assert_null(str(c, MXGW_SPF_INFO_EXPLANATION), "only fail explains");
  cr_assert_null(str(c, MXGW_SPF_INFO_PROBLEM));
  ASSERT_TRACE(c, MXGW_SPF_TRACE_QUERY,
               "TXT example.com: NOERROR, 1 record: \"v=spf1 ip4:192.0.2.0/24");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM,
               "ip4:192.0.2.0/24: no match (43.207.242.167 is not in "
               "192.0.2.0/24)");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM,
               "ip4:198.51.100.0/24: no match (43.207.242.167 is not in "
               "198.51.100.0/24)");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM,
               "include:_spf.example.net: no match (_spf.example.net gave "
               "fail)");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM, "~all: match -> softfail");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_RESULT, "result: softfail (~all in example.com)");
  /* the include's entries are one level deeper */
  size_t n = mxgw_spf_check_trace_count(c);
  int deep = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t l;
    int k, d;
    mxgw_spf_check_trace(c, i, &d, &k, &p, &l);
    if (strstr(p, "198.51.100.0/24: no match"))
      deep = d;
  }
  cr_assert_eq(deep, 1);
  const char *p;
  size_t l;
  cr_assert_eq(mxgw_spf_check_trace(c, n, NULL, NULL, &p, &l), MXGW_E_RANGE);
  cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_TERMS), 1);
  cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_QUERIES), 2);
  mxgw_spf_check_free(c);

  c = check("198.51.100.7", "mx.client.test", "a@example.com");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_MECHANISM), "include:_spf.example.net");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM,
               "include:_spf.example.net: match (_spf.example.net gave pass) "
               "-> pass");
  mxgw_spf_check_free(c);
}

Test(spf_eval, trace_can_be_off) {
  load(story);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_TRACE, 0), MXGW_OK);
  mxgw_spf_check *c = check("43.207.242.167", "h.test", "a@example.com");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_SOFTFAIL);
  cr_assert_eq(mxgw_spf_check_trace_count(c), 0);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_MECHANISM), "~all");
  mxgw_spf_check_free(c);
}

/* ---- limits --------------------------------------------------------------- */

/* A record with n "a:hK.example.com" terms (each has an address that does
 * not match) and then ip4 of the client. */
static char *terms_zone(int n) {
  char *z = malloc(20000);
  int k = sprintf(z, "example.com. TXT \"v=spf1");
  for (int i = 0; i < n; i++)
    k += sprintf(z + k, " a:h%d.example.com", i);
  k += sprintf(z + k, " ip4:192.0.2.1 -all\"\n");
  for (int i = 0; i < n; i++)
    k += sprintf(z + k, "h%d.example.com. A 10.0.0.%d\n", i, i);
  return z;
}

Test(spf_eval, ten_dns_terms) {
  char *z = terms_zone(10);
  load(z);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "a@example.com");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_TERMS), 10);
  mxgw_spf_check_free(c);
  fini();
  free(z);
  z = terms_zone(11);
  load(z);
  c = check("192.0.2.1", "h.test", "a@example.com");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PERMERROR);
  cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_TERMS), 11);
  cr_assert(strstr(str(c, MXGW_SPF_INFO_PROBLEM),
                   "more than 10 DNS-querying terms, at \"a:h10.example.com\""),
            "%s", str(c, MXGW_SPF_INFO_PROBLEM));
  cr_assert_null(str(c, MXGW_SPF_INFO_MECHANISM));
  mxgw_spf_check_free(c);
  /* the limit is an option */
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_DNS_TERMS, 11), MXGW_OK);
  cr_assert_eq(result("192.0.2.1", "a@example.com"), MXGW_SPF_PASS);
  free(z);
}

Test(spf_eval, include_and_redirect_count) {
  load("a.test. TXT \"v=spf1 include:b.test redirect=c.test\"\n"
       "b.test. TXT \"v=spf1 a mx -all\"\n"
       "c.test. TXT \"v=spf1 exists:x.c.test -all\"\n"
       "b.test. A 10.0.0.1\nb.test. MX 0 b.test.\nx.c.test. A 127.0.0.2\n");
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@a.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  /* include, a, mx, redirect, exists */
  cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_TERMS), 5);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_DOMAIN), "c.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_MECHANISM), "exists:x.c.test");
  mxgw_spf_check_free(c);
}

Test(spf_eval, void_lookups) {
  load("two.test. TXT \"v=spf1 a:n1.two.test mx:n2.two.test ?all\"\n"
       "three.test. TXT \"v=spf1 a:n1.two.test exists:n3.two.test "
       "ptr:x.test ?all\"\n"
       "n2.two.test. A 10.0.0.1\n");
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@two.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_NEUTRAL);
  cr_assert_eq(num(c, MXGW_SPF_INFO_VOID_LOOKUPS), 2, "NXDOMAIN and NODATA");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM,
               "n1.two.test has no A record: NXDOMAIN, void lookup 1 of 2");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM,
               "n2.two.test has no MX record: NODATA, void lookup 2 of 2");
  mxgw_spf_check_free(c);
  c = check("192.0.2.1", "h.test", "u@three.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PERMERROR);
  cr_assert(strstr(str(c, MXGW_SPF_INFO_PROBLEM),
                   "more than 2 void lookups, at \"ptr:x.test\""),
            "%s", str(c, MXGW_SPF_INFO_PROBLEM));
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_VOID_LOOKUPS, 3), MXGW_OK);
  cr_assert_eq(result("192.0.2.1", "u@three.test"), MXGW_SPF_NEUTRAL);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_VOID_LOOKUPS, 0), MXGW_OK);
  cr_assert_eq(result("192.0.2.1", "u@two.test"), MXGW_SPF_PERMERROR);
}

static char *mx_zone(int n) {
  char *z = malloc(8000);
  int k = sprintf(z, "m.test. TXT \"v=spf1 mx -all\"\n");
  for (int i = 0; i < n; i++)
    k += sprintf(z + k, "m.test. MX %d mx%d.m.test.\nmx%d.m.test. A 10.1.0.%d\n",
                 i, i, i, i);
  /* the last MX host is the client */
  k += sprintf(z + k, "mx%d.m.test. A 192.0.2.1\n", n - 1);
  return z;
}

Test(spf_eval, mx_names) {
  char *z = mx_zone(10);
  load(z);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@m.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  cr_assert_eq(num(c, MXGW_SPF_INFO_MX_NAMES), 10);
  cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_TERMS), 1, "one term, however many names");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM, "mx: match (via MX host mx9.m.test) -> pass");
  mxgw_spf_check_free(c);
  fini();
  free(z);
  z = mx_zone(11);
  load(z);
  c = check("192.0.2.1", "h.test", "u@m.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PERMERROR);
  cr_assert(strstr(str(c, MXGW_SPF_INFO_PROBLEM),
                   "m.test has 11 MX names, more than 10"));
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_MX_NAMES, 11), MXGW_OK);
  cr_assert_eq(result("192.0.2.1", "u@m.test"), MXGW_SPF_PASS);
  free(z);
}

Test(spf_eval, ptr_names_past_the_limit_are_ignored) {
  char z[4000];
  int k = sprintf(z, "p.test. TXT \"v=spf1 ptr ?all\"\n");
  for (int i = 0; i < 11; i++)
    k += sprintf(z + k, "1.2.0.192.in-addr.arpa. PTR h%d.other.test.\n", i);
  /* only the 12th name is in p.test (and resolves back) */
  k += sprintf(z + k, "1.2.0.192.in-addr.arpa. PTR mail.p.test.\n"
                      "mail.p.test. A 192.0.2.1\n");
  load(z);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@p.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_NEUTRAL);
  cr_assert_eq(num(c, MXGW_SPF_INFO_PTR_NAMES), 12);
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_PTR_NAMES, 12), MXGW_OK);
  c = check("192.0.2.1", "h.test", "u@p.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM, "ptr: match (mail.p.test is validated)");
  mxgw_spf_check_free(c);
}

Test(spf_eval, ptr_validation) {
  load("p.test. TXT \"v=spf1 ptr:p.test -all\"\n"
       "1.2.0.192.in-addr.arpa. PTR fake.p.test.\n"
       "1.2.0.192.in-addr.arpa. PTR real.P.TEST.\n"
       "fake.p.test. A 10.9.9.9\nreal.p.test. A 192.0.2.1\n"
       "2.2.0.192.in-addr.arpa. PTR fake.p.test.\n"
       "err.test. TXT \"v=spf1 ptr -all\"\n");
  cr_assert_eq(result("192.0.2.1", "u@p.test"), MXGW_SPF_PASS);
  cr_assert_eq(result("192.0.2.2", "u@p.test"), MXGW_SPF_FAIL);
  /* a PTR lookup error makes ptr not match (5.5), not temperror */
  cr_assert_eq(mxgw_resolver_add_record(R, "3.2.0.192.in-addr.arpa",
                                        MXGW_DNS_PTR, 0, NULL,
                                        MXGW_DNS_SERVFAIL),
               MXGW_OK);
  mxgw_spf_check *c = check("192.0.2.3", "h.test", "u@err.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_FAIL);
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM, "the PTR lookup failed (SERVFAIL)");
  mxgw_spf_check_free(c);
}

/* ---- include and redirect ------------------------------------------------- */

Test(spf_eval, include_results) {
  load("pass.test. TXT \"v=spf1 +all\"\n"
       "fail.test. TXT \"v=spf1 -all\"\n"
       "soft.test. TXT \"v=spf1 ~all\"\n"
       "neutral.test. TXT \"v=spf1 ?all\"\n"
       "bad.test. TXT \"v=spf1 moo\"\n"
       "nospf.test. TXT \"hello\"\n"
       "i-pass.test. TXT \"v=spf1 -include:pass.test ?all\"\n"
       "i-fail.test. TXT \"v=spf1 include:fail.test -all\"\n"
       "i-soft.test. TXT \"v=spf1 include:soft.test -all\"\n"
       "i-neutral.test. TXT \"v=spf1 include:neutral.test -all\"\n"
       "i-bad.test. TXT \"v=spf1 include:bad.test +all\"\n"
       "i-none.test. TXT \"v=spf1 include:nospf.test +all\"\n"
       "i-nx.test. TXT \"v=spf1 include:nx.test +all\"\n"
       "i-slow.test. TXT \"v=spf1 include:slow.test +all\"\n");
  cr_assert_eq(mxgw_resolver_add_record(R, "slow.test", MXGW_DNS_TXT, 0, NULL,
                                        MXGW_DNS_TIMEOUT),
               MXGW_OK);
  cr_assert_eq(result("192.0.2.1", "u@i-pass.test"), MXGW_SPF_FAIL);
  cr_assert_eq(result("192.0.2.1", "u@i-fail.test"), MXGW_SPF_FAIL);
  cr_assert_eq(result("192.0.2.1", "u@i-soft.test"), MXGW_SPF_FAIL);
  cr_assert_eq(result("192.0.2.1", "u@i-neutral.test"), MXGW_SPF_FAIL);
  cr_assert_eq(result("192.0.2.1", "u@i-bad.test"), MXGW_SPF_PERMERROR);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@i-none.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PERMERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM),
                   "include:nospf.test: no SPF record at nospf.test (RFC 7208 "
                   "5.2)");
  mxgw_spf_check_free(c);
  cr_assert_eq(result("192.0.2.1", "u@i-nx.test"), MXGW_SPF_PERMERROR);
  c = check("192.0.2.1", "h.test", "u@i-slow.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_TEMPERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM),
                   "include:slow.test: TXT lookup for slow.test: TIMEOUT");
  mxgw_spf_check_free(c);
}

Test(spf_eval, redirect) {
  load("r.test. TXT \"v=spf1 redirect=t.test exp=x.r.test\"\n"
       "t.test. TXT \"v=spf1 a -all\"\nt.test. A 192.0.2.5\n"
       "nx.test. TXT \"v=spf1 redirect=nowhere.test\"\n"
       "loop.test. TXT \"v=spf1 redirect=loop.test\"\n"
       "x.r.test. TXT \"not used\"\n");
  mxgw_spf_check *c = check("192.0.2.5", "h.test", "u@r.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS,
               "a of the target is the target's name");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_DOMAIN), "t.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_CHECKED_DOMAIN), "r.test");
  mxgw_spf_check_free(c);
  c = check("192.0.2.6", "h.test", "u@r.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_FAIL);
  cr_assert(!strstr(str(c, MXGW_SPF_INFO_EXPLANATION), "not used"),
            "the exp= before a redirect is dropped (6.2)");
  mxgw_spf_check_free(c);
  c = check("192.0.2.6", "h.test", "u@nx.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PERMERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM),
                   "redirect=nowhere.test: no SPF record there (RFC 7208 6.1)");
  mxgw_spf_check_free(c);
  cr_assert_eq(result("192.0.2.6", "u@loop.test"), MXGW_SPF_PERMERROR);
}

/* ---- identities and initial checks ---------------------------------------- */

Test(spf_eval, identities) {
  load("mx.client.test. TXT \"v=spf1 ip4:192.0.2.1 -all\"\n"
       "mx.client.test. A 192.0.2.1\n"
       "example.org. TXT \"v=spf1 -all exp=why.example.org\"\n"
       "why.example.org. TXT \"%{l} at %{o} via %{h}: %{s}\"\n");
  /* null sender: postmaster@helo */
  mxgw_spf_check *c = check("192.0.2.1", "mx.client.test", "");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_SENDER), "postmaster@mx.client.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_IDENTITY), "mailfrom");
  mxgw_spf_check_free(c);
  /* HELO identity ignores the reverse-path */
  cr_assert_eq(mxgw_spf_check_sync(S, "192.0.2.1", "mx.client.test",
                                   "x@example.org", MXGW_SPF_ID_HELO, &c),
               MXGW_OK);
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_IDENTITY), "helo");
  cr_assert_eq(num(c, MXGW_SPF_INFO_IDENTITY_ID), MXGW_SPF_ID_HELO);
  mxgw_spf_check_free(c);
  /* no local part, no '@', angle brackets */
  const char *froms[] = {"@example.org", "example.org", "<@example.org>"};
  for (int i = 0; i < 3; i++) {
    c = check("192.0.2.9", "mx.client.test", froms[i]);
    cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_FAIL);
    cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION),
                     "postmaster at example.org via mx.client.test: "
                     "postmaster@example.org",
                     "%s", froms[i]);
    mxgw_spf_check_free(c);
  }
  /* the last '@' separates the domain */
  c = check("192.0.2.9", "mx.client.test", "\"a@b\"@example.org");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_CHECKED_DOMAIN), "example.org");
  mxgw_spf_check_free(c);
}

Test(spf_eval, ipv4_mapped_is_ipv4) {
  load("m.test. TXT \"v=spf1 ip6:::ffff:192.0.2.0/120 ip4:192.0.2.1 -all\"\n");
  mxgw_spf_check *c = check("::ffff:192.0.2.1", "h.test", "u@m.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_CLIENT_IP), "192.0.2.1");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_MECHANISM), "ip4:192.0.2.1");
  mxgw_spf_check_free(c);
}

Test(spf_eval, initial_checks_give_none_without_lookups) {
  load("example.com. TXT \"v=spf1 -all\"\n");
  const char *from[] = {"u@[192.0.2.1]", "u@nodots", "u@a..example.com",
                        "u@-", "u@"};
  for (int i = 0; i < 5; i++) {
    mxgw_spf_check *c = check("192.0.2.1", "h.test", from[i]);
    cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_NONE, "%s", from[i]);
    cr_assert_eq(num(c, MXGW_SPF_INFO_DNS_QUERIES), 0, "%s", from[i]);
    ASSERT_TRACE(c, MXGW_SPF_TRACE_RECORD, "RFC 7208 4.3");
    mxgw_spf_check_free(c);
  }
}

Test(spf_eval, bad_arguments) {
  load("example.com. TXT \"v=spf1 -all\"\n");
  mxgw_spf_check *c = (mxgw_spf_check *)1;
  cr_assert_eq(mxgw_spf_check_start(S, "192.0.2", "h.test", "u@example.com",
                                    MXGW_SPF_ID_MAILFROM, &c),
               MXGW_E_INVAL);
  cr_assert_null(c);
  cr_assert_eq(mxgw_spf_check_start(S, "192.0.2.1", "h.test", "u@exa\nmple.com",
                                    MXGW_SPF_ID_MAILFROM, &c),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_check_start(S, "192.0.2.1", NULL, "",
                                    MXGW_SPF_ID_MAILFROM, &c),
               MXGW_E_INVAL, "a null sender needs the HELO name");
  cr_assert_eq(mxgw_spf_check_start(S, "192.0.2.1", "h.test", "u@example.com",
                                    3, &c),
               MXGW_E_INVAL);
  char big[1100];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_eq(mxgw_spf_check_start(S, "192.0.2.1", big, "",
                                    MXGW_SPF_ID_MAILFROM, &c),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_check_start(NULL, "192.0.2.1", "h.test", "",
                                    MXGW_SPF_ID_MAILFROM, &c),
               MXGW_E_INVAL);
}

/* ---- DNS failures ---------------------------------------------------------- */

Test(spf_eval, dns_errors_give_temperror) {
  load("a.test. TXT \"v=spf1 a:slow.test -all\"\n"
       "mx.test. TXT \"v=spf1 mx -all\"\nmx.test. MX 0 h1.mx.test.\n"
       "mx.test. MX 5 h2.mx.test.\nh1.mx.test. A 10.0.0.1\n"
       "cn.test. CNAME cn2.test.\ncn2.test. CNAME cn.test.\n");
  cr_assert_eq(mxgw_resolver_add_record(R, "slow.test", MXGW_DNS_A, 0, NULL,
                                        MXGW_DNS_TIMEOUT),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(R, "h2.mx.test", MXGW_DNS_A, 0, NULL,
                                        MXGW_DNS_SERVFAIL),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(R, "sf.test", MXGW_DNS_TXT, 0, NULL,
                                        MXGW_DNS_SERVFAIL),
               MXGW_OK);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@a.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_TEMPERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM),
                   "a:slow.test: A lookup for slow.test: TIMEOUT");
  mxgw_spf_check_free(c);
  c = check("192.0.2.1", "h.test", "u@mx.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_TEMPERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM),
                   "mx: A lookup for h2.mx.test: SERVFAIL");
  mxgw_spf_check_free(c);
  c = check("192.0.2.1", "h.test", "u@sf.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_TEMPERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM), "TXT lookup for sf.test: SERVFAIL");
  mxgw_spf_check_free(c);
  /* a CNAME loop on the record */
  cr_assert_eq(result("192.0.2.1", "u@cn.test"), MXGW_SPF_TEMPERROR);
}

/* ---- explanations ---------------------------------------------------------- */

Test(spf_eval, explanations) {
  load("e.test. TXT \"v=spf1 -all exp=why.%{d}\"\n"
       "why.e.test. TXT \"%{c} is not allowed for %{d} (%{i}, %{v}, %{r})\"\n"
       "d.test. TXT \"v=spf1 -all\"\n"
       "two.test. TXT \"v=spf1 -all exp=two.why.test\"\n"
       "two.why.test. TXT \"a\"\ntwo.why.test. TXT \"b\"\n"
       "p.test. TXT \"v=spf1 -all exp=pw.test\"\n"
       "pw.test. TXT \"you are %{p}\"\n"
       "1.2.0.192.in-addr.arpa. PTR host.p.test.\n"
       "host.p.test. A 192.0.2.1\n");
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@e.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION),
                   "192.0.2.1 is not allowed for e.test (192.0.2.1, in-addr, "
                   "unknown)");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM, "exp=why.%{d}: explanation \"192.0.2.1 is");
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_spf_set_str(S, MXGW_SPF_OPT_RECEIVER, "mx.us.test"), MXGW_OK);
  c = check("192.0.2.1", "h.test", "u@e.test");
  cr_assert(strstr(str(c, MXGW_SPF_INFO_EXPLANATION), "mx.us.test)"));
  mxgw_spf_check_free(c);
  /* the default */
  c = check("192.0.2.1", "h.test", "u@d.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION),
                   "d.test does not designate 192.0.2.1 as a permitted sender");
  mxgw_spf_check_free(c);
  c = check("192.0.2.1", "h.test", "u@two.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION),
                   "two.test does not designate 192.0.2.1 as a permitted sender");
  ASSERT_TRACE(c, MXGW_SPF_TRACE_TERM, "more than one TXT record");
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_spf_set_str(S, MXGW_SPF_OPT_DEFAULT_EXPLANATION,
                                "Not from %{c}, see https://example.net/spf"),
               MXGW_OK);
  c = check("192.0.2.1", "h.test", "u@d.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION),
                   "Not from 192.0.2.1, see https://example.net/spf");
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_spf_set_str(S, MXGW_SPF_OPT_DEFAULT_EXPLANATION, "100%"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_set_str(S, MXGW_SPF_OPT_RECEIVER, "a b"), MXGW_E_INVAL);
  /* %{p} is looked up when the explanation needs it */
  c = check("192.0.2.1", "h.test", "u@p.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION), "you are host.p.test");
  mxgw_spf_check_free(c);
}

/* ---- asynchrony ------------------------------------------------------------ */

typedef struct done_rec {
  int calls, result;
  int free_it;
} done_rec;

static void on_done(void *arg, mxgw_spf_check *c) {
  done_rec *d = arg;
  d->calls++;
  d->result = mxgw_spf_check_result(c);
  if (d->free_it)
    mxgw_spf_check_free(c);
}

Test(spf_eval, async_life) {
  load(story);
  mxgw_spf_check *c;
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test",
                                    "u@example.com", MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  cr_assert(!mxgw_spf_check_done(c), "waits for the resolver");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_E_STATE);
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_spf_check_get_str(c, MXGW_SPF_INFO_MECHANISM, &p, &n),
               MXGW_E_STATE);
  cr_assert_eq(mxgw_spf_check_get_str(c, MXGW_SPF_INFO_CLIENT_IP, &p, &n),
               MXGW_OK);
  cr_assert_eq(mxgw_spf_check_received_spf(c, &p, &n), MXGW_E_STATE);
  done_rec d = {0, -1, 0};
  cr_assert_eq(mxgw_spf_check_set_done_cb(c, on_done, &d), MXGW_OK);
  cr_assert_eq(mxgw_resolver_process(R, -1, 0), 1);
  cr_assert_eq(d.calls, 0, "the include is still to be looked up");
  cr_assert_eq(mxgw_resolver_pending(R), 1);
  cr_assert_eq(mxgw_resolver_process(R, -1, 0), 1);
  cr_assert_eq(d.calls, 1);
  cr_assert_eq(d.result, MXGW_SPF_PASS);
  cr_assert(mxgw_spf_check_done(c));
  mxgw_spf_check_free(c);
}

Test(spf_eval, hook_may_free_and_is_not_called_when_already_done) {
  load(story);
  mxgw_spf_check *c;
  done_rec d = {0, -1, 1};
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test",
                                    "u@example.com", MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  mxgw_spf_check_set_done_cb(c, on_done, &d);
  cr_assert_eq(mxgw_resolver_run(R, 1000), MXGW_OK);
  cr_assert_eq(d.calls, 1);
  cr_assert_eq(d.result, MXGW_SPF_PASS);
  /* an immediate result: the hook never runs */
  done_rec d2 = {0, -1, 0};
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test", "u@[1.2.3.4]",
                                    MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  cr_assert(mxgw_spf_check_done(c));
  mxgw_spf_check_set_done_cb(c, on_done, &d2);
  cr_assert_eq(mxgw_resolver_run(R, 1000), MXGW_OK);
  cr_assert_eq(d2.calls, 0);
  mxgw_spf_check_free(c);
  /* freeing from the hook inside mxgw_spf_check_run() */
  done_rec d3 = {0, -1, 1};
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test",
                                    "u@example.com", MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  mxgw_spf_check_set_done_cb(c, on_done, &d3);
  cr_assert_eq(mxgw_spf_check_run(c, 1000), MXGW_OK);
  cr_assert_eq(d3.calls, 1);
}

Test(spf_eval, free_while_running_cancels) {
  load(story);
  mxgw_spf_check *c;
  done_rec d = {0, -1, 0};
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test",
                                    "u@example.com", MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  mxgw_spf_check_set_done_cb(c, on_done, &d);
  cr_assert_eq(mxgw_resolver_pending(R), 1);
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_resolver_pending(R), 0);
  cr_assert_eq(mxgw_resolver_run(R, 1000), MXGW_OK);
  cr_assert_eq(d.calls, 0);
}

Test(spf_eval, abort) {
  load(story);
  mxgw_spf_check *c;
  done_rec d = {0, -1, 0};
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test",
                                    "u@example.com", MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  mxgw_spf_check_set_done_cb(c, on_done, &d);
  mxgw_spf_check_abort(c);
  cr_assert_eq(d.calls, 1);
  cr_assert_eq(d.result, MXGW_SPF_TEMPERROR);
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_PROBLEM), "evaluation aborted");
  cr_assert_eq(mxgw_resolver_pending(R), 0);
  mxgw_spf_check_abort(c); /* no-op */
  cr_assert_eq(d.calls, 1);
  mxgw_spf_check_free(c);
}

Test(spf_eval, overall_time_limit) {
  load(story);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_TIMEOUT_MS, 1), MXGW_OK);
  mxgw_spf_check *c;
  cr_assert_eq(mxgw_spf_check_start(S, "198.51.100.7", "h.test",
                                    "u@example.com", MXGW_SPF_ID_MAILFROM, &c),
               MXGW_OK);
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  cr_assert_eq(mxgw_spf_check_run(c, 1000), MXGW_OK);
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_TEMPERROR);
  cr_assert(strstr(str(c, MXGW_SPF_INFO_PROBLEM), "longer than 1 ms"));
  mxgw_spf_check_free(c);
}

typedef struct flight {
  int calls, wrong;
  int expect;
} flight;

static void count_done(void *arg, mxgw_spf_check *c) {
  flight *f = arg;
  f->calls++;
  if (mxgw_spf_check_result(c) != f->expect)
    f->wrong++;
  mxgw_spf_check_free(c);
}

Test(spf_eval, many_checks_in_flight) {
  /* 1000 checks at once on one resolver, of four kinds */
  load("example.com. TXT \"v=spf1 ip4:192.0.2.0/24 include:_spf.example.net "
       "mx ~all\"\n"
       "example.com. MX 10 mx.example.com.\nmx.example.com. A 203.0.113.1\n"
       "_spf.example.net. TXT \"v=spf1 ip4:198.51.100.0/24 -all\"\n");
  static const struct {
    const char *ip;
    int result;
  } kinds[] = {{"192.0.2.7", MXGW_SPF_PASS},
               {"198.51.100.7", MXGW_SPF_PASS},
               {"203.0.113.1", MXGW_SPF_PASS},
               {"233.252.0.1", MXGW_SPF_SOFTFAIL}};
  flight f[4] = {{0, 0, MXGW_SPF_PASS},
                 {0, 0, MXGW_SPF_PASS},
                 {0, 0, MXGW_SPF_PASS},
                 {0, 0, MXGW_SPF_SOFTFAIL}};
  for (int i = 0; i < 1000; i++) {
    mxgw_spf_check *c;
    cr_assert_eq(mxgw_spf_check_start(S, kinds[i % 4].ip, "h.test",
                                      "u@example.com", MXGW_SPF_ID_MAILFROM,
                                      &c),
                 MXGW_OK);
    cr_assert(!mxgw_spf_check_done(c));
    mxgw_spf_check_set_done_cb(c, count_done, &f[i % 4]);
  }
  cr_assert_eq(mxgw_resolver_pending(R), 1000);
  cr_assert_eq(mxgw_resolver_run(R, 10000), MXGW_OK);
  for (int k = 0; k < 4; k++) {
    cr_assert_eq(f[k].calls, 250, "kind %d", k);
    cr_assert_eq(f[k].wrong, 0, "kind %d", k);
  }
}

/* ---- hostile input ---------------------------------------------------------- */

Test(spf_eval, hostile_records) {
  char *z = malloc(200000);
  int k = sprintf(z, "nul.test. TXT \"v=spf1 a:foo.test\\000 -all\"\n"
                     "inc1.test. TXT \"v=spf1 include:inc2.test -all\"\n"
                     "inc2.test. TXT \"v=spf1 include:inc1.test -all\"\n"
                     "self.test. TXT \"v=spf1 include:self.test -all\"\n"
                     "bomb.test. TXT \"v=spf1 exists:");
  for (int i = 0; i < 200; i++) /* strings of at most 255 octets */
    k += sprintf(z + k, i && i % 50 == 0 ? "\" \"%%{L}" : "%%{L}");
  k += sprintf(z + k, ".x.test -all\"\nbig.test. TXT");
  /* a 60 KB record of 255-octet strings */
  char chunk[300];
  for (int i = 0; i < 240; i++) {
    int n = sprintf(chunk, "%s", i == 0 ? "v=spf1" : "");
    while (n < 230)
      n += sprintf(chunk + n, " ip4:10.%d.%d.0/24", i % 250, n % 250);
    k += sprintf(z + k, " \"%s\"", chunk);
  }
  k += sprintf(z + k, " \" ip4:192.0.2.1 -all\"\n");
  load(z);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@nul.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PERMERROR);
  cr_assert(strstr(str(c, MXGW_SPF_INFO_PROBLEM), "control character 0x00"));
  ASSERT_TRACE(c, MXGW_SPF_TRACE_RECORD, "a:foo.test\\x00 -all");
  mxgw_spf_check_free(c);
  cr_assert_eq(result("192.0.2.1", "u@inc1.test"), MXGW_SPF_PERMERROR);
  cr_assert_eq(result("192.0.2.1", "u@self.test"), MXGW_SPF_PERMERROR);
  char local[900];
  memset(local, '%', sizeof local - 13);
  strcpy(local + sizeof local - 13, "@bomb.test");
  c = check("192.0.2.1", "h.test", local);
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_FAIL,
               "200 x 2.6 KB expands, is truncated, and is looked up");
  mxgw_spf_check_free(c);
  c = check("192.0.2.1", "h.test", "u@big.test");
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_PASS);
  mxgw_spf_check_free(c);
  free(z);
}

Test(spf_eval, options) {
  load(story);
  int64_t v;
  cr_assert_eq(mxgw_spf_get_int(S, MXGW_SPF_OPT_MAX_DNS_TERMS, &v), MXGW_OK);
  cr_assert_eq(v, 10);
  cr_assert_eq(mxgw_spf_get_int(S, MXGW_SPF_OPT_MAX_VOID_LOOKUPS, &v), MXGW_OK);
  cr_assert_eq(v, 2);
  cr_assert_eq(mxgw_spf_get_int(S, MXGW_SPF_OPT_TIMEOUT_MS, &v), MXGW_OK);
  cr_assert_eq(v, 20000);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_DNS_TERMS, 0), MXGW_E_RANGE);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_MAX_MX_NAMES, 1001),
               MXGW_E_RANGE);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_TRACE, 2), MXGW_E_RANGE);
  cr_assert_eq(mxgw_spf_set_int(S, 999, 1), MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_set_str(S, 999, "x"), MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_NOW, 1234), MXGW_OK);
  cr_assert_eq(mxgw_spf_new(NULL, R, NULL), MXGW_E_INVAL);
  mxgw_spf *s2 = (mxgw_spf *)1;
  cr_assert_eq(mxgw_spf_new(&s2, NULL, NULL), MXGW_E_INVAL);
  cr_assert_null(s2);
  cr_assert_str_eq(mxgw_spf_result_name(MXGW_SPF_SOFTFAIL), "softfail");
  cr_assert_str_eq(mxgw_spf_result_name(99), "unknown");
  cr_assert_str_eq(mxgw_spf_trace_kind_name(MXGW_SPF_TRACE_QUERY), "query");
}

Test(spf_eval, t_macro_uses_the_now_option) {
  load("t.test. TXT \"v=spf1 -all exp=w.t.test\"\nw.t.test. TXT \"at %{t}\"\n");
  cr_assert_eq(mxgw_spf_set_int(S, MXGW_SPF_OPT_NOW, 1700000000), MXGW_OK);
  mxgw_spf_check *c = check("192.0.2.1", "h.test", "u@t.test");
  cr_assert_str_eq(str(c, MXGW_SPF_INFO_EXPLANATION), "at 1700000000");
  mxgw_spf_check_free(c);
}
