/* SPDX-License-Identifier: MIT */
/*
 * test_spf_resolver.c: the static resolver through the public resolver
 * API: NXDOMAIN versus NODATA, case-insensitive names, CNAME chains and
 * loops, status overrides, completion only inside process()/run() (never
 * inside query()), cancellation, freeing with queries in flight, the
 * answer accessors, and the RFC 1035 master-file parser with its errors
 * naming the line.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mxgw/mxgw.h>

#include "failmem.h"

typedef struct got {
  int calls, status;
  size_t n;
  char data[8][300];
  size_t len[8];
  int pref[8];
  uint32_t ttl;
} got;

static void on_answer(void *arg, int status, const mxgw_dns_answer *ans) {
  got *g = arg;
  g->calls++;
  g->status = status;
  g->n = mxgw_dns_answer_count(ans);
  g->ttl = mxgw_dns_answer_ttl(ans);
  cr_assert(status == MXGW_DNS_OK ? ans != NULL : ans == NULL);
  for (size_t i = 0; i < g->n && i < 8; i++) {
    const char *p;
    size_t l;
    cr_assert_eq(mxgw_dns_answer_data(ans, i, &p, &l), MXGW_OK);
    cr_assert_lt(l, sizeof g->data[i]);
    memcpy(g->data[i], p, l);
    g->data[i][l] = '\0';
    g->len[i] = l;
    g->pref[i] = mxgw_dns_answer_pref(ans, i);
  }
  if (ans) {
    const char *p;
    size_t l;
    cr_assert_eq(mxgw_dns_answer_data(ans, g->n, &p, &l), MXGW_E_RANGE);
  }
}

static mxgw_resolver *zone(const char *text) {
  mxgw_resolver *r;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  int rv = mxgw_resolver_load_zone(r, text, strlen(text), NULL);
  cr_assert_eq(rv, MXGW_OK, "%s", mxgw_resolver_errmsg(r));
  return r;
}

static got lookup(mxgw_resolver *r, const char *name, int type) {
  got g;
  memset(&g, 0, sizeof g);
  cr_assert_eq(mxgw_resolver_query(r, name, type, on_answer, &g, NULL), MXGW_OK,
               "%s", mxgw_resolver_errmsg(r));
  cr_assert_eq(mxgw_resolver_run(r, 1000), MXGW_OK);
  cr_assert_eq(g.calls, 1);
  return g;
}

static const char *z1 =
    "$ORIGIN example.com.\n"
    "$TTL 300\n"
    "@        IN A     192.0.2.1\n"
    "         IN AAAA  2001:db8::1\n"
    "         IN MX    10 mx1\n"
    "         IN MX    20 mx2.example.net.\n"
    "         IN TXT   \"v=spf1 \" \"ip4:192.0.2.0/24\" \" -all\"\n"
    "mx1      60 IN A  192.0.2.10 ; a comment\n"
    "www      IN CNAME @\n"
    "alias    IN CNAME www\n"
    "loop1    IN CNAME loop2\n"
    "loop2    IN CNAME loop1\n"
    "dangling IN CNAME nowhere\n"
    "txt      IN TXT   ( \"first\"\n"
    "                    \"second\" ) ; parentheses\n"
    "esc      IN TXT   \"a\\\"b\\\\c\\059d\" unquoted\n"
    "nul      IN TXT   \"x\\000y\"\n"
    "4.3.2.1.in-addr.arpa. IN PTR mail.Example.COM.\n"
    "ns       IN NS    ns1.example.com.\n"
    "@        IN SOA   ns1 hostmaster ( 1 3600 600 86400 300 )\n"
    "spf      IN SPF   \"v=spf1 -all\"\n"
    "Mixed.Case 3600 IN A 192.0.2.7\n"
    "null     IN MX    0 .\n";

Test(spf_resolver, records_by_type) {
  mxgw_resolver *r = zone(z1);
  got g = lookup(r, "example.com", MXGW_DNS_A);
  cr_assert_eq(g.status, MXGW_DNS_OK);
  cr_assert_eq(g.n, 1);
  cr_assert_eq(g.len[0], 4);
  cr_assert_eq(memcmp(g.data[0], "\xc0\x00\x02\x01", 4), 0);
  cr_assert_eq(g.ttl, 300);
  g = lookup(r, "example.com", MXGW_DNS_AAAA);
  cr_assert_eq(g.len[0], 16);
  cr_assert_eq((unsigned char)g.data[0][15], 1);
  g = lookup(r, "example.com", MXGW_DNS_MX);
  cr_assert_eq(g.n, 2);
  cr_assert_str_eq(g.data[0], "mx1.example.com");
  cr_assert_eq(g.pref[0], 10);
  cr_assert_str_eq(g.data[1], "mx2.example.net");
  cr_assert_eq(g.pref[1], 20);
  g = lookup(r, "example.com", MXGW_DNS_TXT);
  cr_assert_eq(g.n, 1);
  cr_assert_str_eq(g.data[0], "v=spf1 ip4:192.0.2.0/24 -all",
                   "strings are concatenated without spaces");
  g = lookup(r, "mx1.example.com", MXGW_DNS_A);
  cr_assert_eq(g.ttl, 60);
  g = lookup(r, "txt.example.com", MXGW_DNS_TXT);
  cr_assert_str_eq(g.data[0], "firstsecond");
  g = lookup(r, "esc.example.com", MXGW_DNS_TXT);
  cr_assert_str_eq(g.data[0], "a\"b\\c;dunquoted");
  g = lookup(r, "nul.example.com", MXGW_DNS_TXT);
  cr_assert_eq(g.len[0], 3);
  cr_assert_eq(memcmp(g.data[0], "x\0y", 3), 0);
  g = lookup(r, "4.3.2.1.in-addr.arpa", MXGW_DNS_PTR);
  cr_assert_str_eq(g.data[0], "mail.Example.COM", "case of data is kept");
  g = lookup(r, "null.example.com", MXGW_DNS_MX);
  cr_assert_str_eq(g.data[0], "", "a null MX is the empty name");
  mxgw_resolver_free(r);
}

Test(spf_resolver, nxdomain_nodata_and_case) {
  mxgw_resolver *r = zone(z1);
  cr_assert_eq(lookup(r, "nothere.example.com", MXGW_DNS_A).status,
               MXGW_DNS_NXDOMAIN);
  cr_assert_eq(lookup(r, "mx1.example.com", MXGW_DNS_TXT).status,
               MXGW_DNS_NODATA);
  cr_assert_eq(lookup(r, "MX1.EXAMPLE.COM.", MXGW_DNS_A).status, MXGW_DNS_OK);
  cr_assert_eq(lookup(r, "mixed.case.EXAMPLE.com", MXGW_DNS_A).status,
               MXGW_DNS_OK);
  /* skipped types leave the name existing but without data */
  cr_assert_eq(lookup(r, "spf.example.com", MXGW_DNS_TXT).status,
               MXGW_DNS_NODATA, "type SPF records are not TXT");
  cr_assert_eq(lookup(r, "ns.example.com", MXGW_DNS_A).status,
               MXGW_DNS_NODATA, "a name with only skipped types exists");
  mxgw_resolver_free(r);
}

Test(spf_resolver, cname_chains_and_loops) {
  mxgw_resolver *r = zone(z1);
  got g = lookup(r, "alias.example.com", MXGW_DNS_A);
  cr_assert_eq(g.status, MXGW_DNS_OK, "alias -> www -> example.com");
  cr_assert_eq(memcmp(g.data[0], "\xc0\x00\x02\x01", 4), 0);
  g = lookup(r, "www.example.com", MXGW_DNS_CNAME);
  cr_assert_str_eq(g.data[0], "example.com", "a CNAME query is not followed");
  cr_assert_eq(lookup(r, "loop1.example.com", MXGW_DNS_A).status,
               MXGW_DNS_SERVFAIL);
  cr_assert_eq(lookup(r, "dangling.example.com", MXGW_DNS_A).status,
               MXGW_DNS_NXDOMAIN);
  mxgw_resolver_free(r);
}

Test(spf_resolver, overrides) {
  mxgw_resolver *r = zone(z1);
  cr_assert_eq(mxgw_resolver_add_record(r, "slow.example.com", MXGW_DNS_TXT, 0,
                                        NULL, MXGW_DNS_TIMEOUT),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(r, "slow.example.com", MXGW_DNS_A, 0,
                                        "192.0.2.9", 0),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(r, "EXAMPLE.com", MXGW_DNS_MX, 0, NULL,
                                        MXGW_DNS_SERVFAIL),
               MXGW_OK);
  cr_assert_eq(lookup(r, "slow.example.com", MXGW_DNS_TXT).status,
               MXGW_DNS_TIMEOUT);
  cr_assert_eq(lookup(r, "slow.example.com", MXGW_DNS_A).status, MXGW_DNS_OK);
  cr_assert_eq(lookup(r, "example.com", MXGW_DNS_MX).status, MXGW_DNS_SERVFAIL,
               "an override wins over records");
  cr_assert_eq(mxgw_resolver_add_record(r, "x.example.com", MXGW_DNS_A, 0, NULL,
                                        MXGW_DNS_NXDOMAIN),
               MXGW_E_INVAL);
  mxgw_resolver_free(r);
}

Test(spf_resolver, add_record_forms) {
  mxgw_resolver *r;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(r, "a.test", MXGW_DNS_MX, 5,
                                        "10 mail.a.test.", 0),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(r, "a.test", MXGW_DNS_MX, 7,
                                        "20 backup.a.test", 0),
               MXGW_OK);
  got g = lookup(r, "a.test", MXGW_DNS_MX);
  cr_assert_eq(g.n, 2);
  cr_assert_str_eq(g.data[0], "mail.a.test");
  cr_assert_eq(g.pref[1], 20);
  cr_assert_eq(g.ttl, 5, "the smallest TTL");
  cr_assert_eq(mxgw_resolver_add_record(r, "a.test", MXGW_DNS_TXT, 0,
                                        "v=spf1 mx -all", 0),
               MXGW_OK);
  cr_assert_str_eq(lookup(r, "a.test", MXGW_DNS_TXT).data[0], "v=spf1 mx -all");
  struct {
    const char *name;
    int type;
    const char *data;
  } bad[] = {
      {"a.test", MXGW_DNS_A, "192.0.2"},    {"a.test", MXGW_DNS_AAAA, "1.2.3.4"},
      {"a.test", MXGW_DNS_MX, "mail.a.test"}, {"a.test", MXGW_DNS_MX, "70000 m"},
      {"a..test", MXGW_DNS_A, "1.2.3.4"},   {"", MXGW_DNS_A, "1.2.3.4"},
      {"a.test", 99, "v=spf1"},             {"a.test", MXGW_DNS_PTR, ""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(mxgw_resolver_add_record(r, bad[i].name, bad[i].type, 0,
                                          bad[i].data, 0),
                 MXGW_E_INVAL, "case %zu", i);
    cr_assert_neq(mxgw_resolver_errmsg(r)[0], '\0');
  }
  mxgw_resolver_free(r);
}

/* ---- asynchrony ---------------------------------------------------------- */

Test(spf_resolver, completes_only_in_process) {
  mxgw_resolver *r = zone(z1);
  got g1, g2;
  memset(&g1, 0, sizeof g1);
  memset(&g2, 0, sizeof g2);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  cr_assert_eq(mxgw_resolver_timeout(r), -1);
  mxgw_dns_query *q1 = NULL;
  cr_assert_eq(mxgw_resolver_query(r, "example.com", MXGW_DNS_A, on_answer, &g1,
                                   &q1),
               MXGW_OK);
  cr_assert_not_null(q1);
  cr_assert_eq(mxgw_resolver_query(r, "nothere.example.com", MXGW_DNS_A,
                                   on_answer, &g2, NULL),
               MXGW_OK);
  cr_assert_eq(g1.calls + g2.calls, 0, "never inside query()");
  cr_assert_eq(mxgw_resolver_pending(r), 2);
  cr_assert_eq(mxgw_resolver_timeout(r), 0, "work is due now");
  int fds[4], ev[4];
  cr_assert_eq(mxgw_resolver_fds(r, fds, ev, 4), 0);
  cr_assert_eq(mxgw_resolver_process(r, -1, 0), 2);
  cr_assert_eq(g1.calls, 1);
  cr_assert_eq(g2.calls, 1);
  cr_assert_eq(g2.status, MXGW_DNS_NXDOMAIN);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  cr_assert_eq(mxgw_resolver_process(r, -1, 0), 0);
  mxgw_resolver_free(r);
}

typedef struct chain {
  mxgw_resolver *r;
  int calls;
} chain;

static void requery(void *arg, int status, const mxgw_dns_answer *ans) {
  (void)status;
  (void)ans;
  chain *c = arg;
  if (++c->calls < 5)
    cr_assert_eq(mxgw_resolver_query(c->r, "example.com", MXGW_DNS_A, requery,
                                     c, NULL),
                 MXGW_OK);
}

Test(spf_resolver, queries_from_callbacks_wait_for_the_next_round) {
  mxgw_resolver *r = zone(z1);
  chain c = {r, 0};
  cr_assert_eq(mxgw_resolver_query(r, "example.com", MXGW_DNS_A, requery, &c,
                                   NULL),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_process(r, -1, 0), 1);
  cr_assert_eq(c.calls, 1);
  cr_assert_eq(mxgw_resolver_pending(r), 1);
  cr_assert_eq(mxgw_resolver_run(r, 1000), MXGW_OK);
  cr_assert_eq(c.calls, 5);
  mxgw_resolver_free(r);
}

typedef struct canceller {
  mxgw_resolver *r;
  mxgw_dns_query *other;
  int calls;
} canceller;

static void cancel_other(void *arg, int status, const mxgw_dns_answer *ans) {
  (void)status;
  (void)ans;
  canceller *c = arg;
  c->calls++;
  if (c->other) {
    mxgw_resolver_cancel(c->r, c->other);
    c->other = NULL;
  }
}

Test(spf_resolver, cancel) {
  mxgw_resolver *r = zone(z1);
  got g;
  memset(&g, 0, sizeof g);
  mxgw_dns_query *q;
  cr_assert_eq(mxgw_resolver_query(r, "example.com", MXGW_DNS_A, on_answer, &g,
                                   &q),
               MXGW_OK);
  mxgw_resolver_cancel(r, q);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  cr_assert_eq(mxgw_resolver_run(r, 1000), MXGW_OK);
  cr_assert_eq(g.calls, 0, "a cancelled query never calls back");

  /* a callback cancels a query answered in the same round */
  canceller c = {r, NULL, 0};
  got g2;
  memset(&g2, 0, sizeof g2);
  cr_assert_eq(mxgw_resolver_query(r, "example.com", MXGW_DNS_A, cancel_other,
                                   &c, NULL),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_query(r, "example.com", MXGW_DNS_MX, on_answer,
                                   &g2, &c.other),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_process(r, -1, 0), 1);
  cr_assert_eq(c.calls, 1);
  cr_assert_eq(g2.calls, 0);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  mxgw_resolver_free(r);
}

Test(spf_resolver, free_completes_pending_with_error) {
  mxgw_resolver *r = zone(z1);
  got g;
  memset(&g, 0, sizeof g);
  cr_assert_eq(mxgw_resolver_query(r, "example.com", MXGW_DNS_A, on_answer, &g,
                                   NULL),
               MXGW_OK);
  mxgw_resolver_free(r);
  cr_assert_eq(g.calls, 1);
  cr_assert_eq(g.status, MXGW_DNS_ERROR);
}

Test(spf_resolver, bad_queries_never_call_back) {
  mxgw_resolver *r = zone(z1);
  got g;
  memset(&g, 0, sizeof g);
  char longlabel[80];
  memset(longlabel, 'a', 64);
  strcpy(longlabel + 64, ".com");
  const char *names[] = {"", ".", "a..b", longlabel};
  for (size_t i = 0; i < 4; i++)
    cr_assert_eq(mxgw_resolver_query(r, names[i], MXGW_DNS_A, on_answer, &g,
                                     NULL),
                 MXGW_E_INVAL, "%s", names[i]);
  cr_assert_eq(mxgw_resolver_query(r, "example.com", 99, on_answer, &g, NULL),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_resolver_run(r, 100), MXGW_OK);
  cr_assert_eq(g.calls, 0);
  mxgw_resolver_free(r);
}

Test(spf_resolver, status_names) {
  cr_assert_str_eq(mxgw_dns_status_name(MXGW_DNS_OK), "NOERROR");
  cr_assert_str_eq(mxgw_dns_status_name(MXGW_DNS_NODATA), "NODATA");
  cr_assert_str_eq(mxgw_dns_status_name(MXGW_DNS_NXDOMAIN), "NXDOMAIN");
  cr_assert_str_eq(mxgw_dns_status_name(MXGW_DNS_SERVFAIL), "SERVFAIL");
  cr_assert_str_eq(mxgw_dns_status_name(MXGW_DNS_TIMEOUT), "TIMEOUT");
  cr_assert_str_eq(mxgw_dns_status_name(MXGW_DNS_ERROR), "ERROR");
  cr_assert_str_eq(mxgw_dns_status_name(42), "UNKNOWN");
}

/* ---- master files -------------------------------------------------------- */

Test(spf_resolver, origin_ttl_and_relative_names) {
  mxgw_resolver *r;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  const char *text = "a IN A 192.0.2.1\n"
                     "$ORIGIN sub\n" /* relative to the origin given */
                     "b 1h30m IN A 192.0.2.2\n"
                     "c IN 7 A 192.0.2.3\n"
                     "$ORIGIN other.test.\n"
                     "@ A 192.0.2.4\n";
  cr_assert_eq(mxgw_resolver_load_zone(r, text, strlen(text), "example.org"),
               MXGW_OK, "%s", mxgw_resolver_errmsg(r));
  cr_assert_eq(lookup(r, "a.example.org", MXGW_DNS_A).status, MXGW_DNS_OK);
  got g = lookup(r, "b.sub.example.org", MXGW_DNS_A);
  cr_assert_eq(g.status, MXGW_DNS_OK);
  cr_assert_eq(g.ttl, 5400);
  g = lookup(r, "c.sub.example.org", MXGW_DNS_A);
  cr_assert_eq(g.ttl, 7);
  cr_assert_eq(lookup(r, "other.test", MXGW_DNS_A).status, MXGW_DNS_OK);
  mxgw_resolver_free(r);
}

static void zone_error(const char *text, const char *needle) {
  mxgw_resolver *r;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_add_record(r, "keep.test", MXGW_DNS_A, 0,
                                        "192.0.2.99", 0),
               MXGW_OK);
  cr_assert_eq(mxgw_resolver_load_zone(r, text, strlen(text), "example.org"),
               MXGW_E_SYNTAX, "should fail: %s", text);
  const char *msg = mxgw_resolver_errmsg(r);
  cr_assert(strstr(msg, needle), "expected \"%s\" in \"%s\"", needle, msg);
  /* nothing of the failed file was added */
  cr_assert_eq(lookup(r, "ok.example.org", MXGW_DNS_A).status,
               MXGW_DNS_NXDOMAIN);
  cr_assert_eq(lookup(r, "keep.test", MXGW_DNS_A).status, MXGW_DNS_OK);
  mxgw_resolver_free(r);
}

Test(spf_resolver, zone_errors_name_the_line) {
  zone_error("ok IN A 192.0.2.1\n\nbad IN A 192.0.2\n", "line 3: bad IPv4");
  zone_error("ok IN A 192.0.2.1\nx IN AAAA zz::1\n", "line 2: bad IPv6");
  zone_error("ok IN A 192.0.2.1\nx IN TXT \"open\n", "line 2: newline in quoted");
  zone_error("ok IN A 192.0.2.1\n; c\nx IN TXT ( \"a\"\n\"b\"\n", "line 3:");
  zone_error("ok IN A 192.0.2.1\nx IN MX mail\n", "line 2: MX needs");
  zone_error("ok IN A 192.0.2.1\nx IN MX 99999 mail\n", "line 2: MX needs");
  zone_error("ok IN A 192.0.2.1\nx IN CNAME a b\n", "line 2: CNAME needs");
  zone_error("ok IN A 192.0.2.1\n$INCLUDE other.zone\n",
             "line 2: unsupported directive $INCLUDE");
  zone_error("ok IN A 192.0.2.1\n$TTL\n", "line 2: $TTL");
  zone_error("ok IN A 192.0.2.1\nx IN\n", "line 2: missing record type");
  zone_error("ok IN A 192.0.2.1\nx IN TXT \"a\\12\"\n", "line 2: bad escape");
  zone_error("ok IN A 192.0.2.1\nx..y IN A 192.0.2.1\n", "line 2: bad name");
  zone_error("  IN A 192.0.2.1\n", "line 1: no owner");
  zone_error("ok IN A 192.0.2.1\nx IN ) A 192.0.2.1\n", "line 2: unbalanced");
  zone_error("ok IN A 192.0.2.1\nx IN TXT\n", "line 2: TXT needs");
  char big[400];
  snprintf(big, sizeof big, "ok IN A 192.0.2.1\nx IN TXT \"%0300d\"\n", 0);
  zone_error(big, "line 2: TXT string longer than 255");
}

/* Found by fuzz_zone: an empty quoted name read before its buffer, and a
 * syntax error whose text said "out of memory" was reported as NOMEM. */
Test(spf_resolver, zone_fuzz_regressions) {
  zone_error("ok IN A 192.0.2.1\n\"\" IN A 192.0.2.1\n", "line 2: empty name");
  zone_error("ok IN A 192.0.2.1\nx IN MX 10 \"\"\n", "line 2: empty name");
  zone_error("ok IN A 192.0.2.1\nx.test. A out\\ of\\ memory\n", "line 2:");
}

/* A zone loads whole or not at all, also when memory runs out part of the
 * way through: the records it had added are taken back and the names it
 * created removed, and what the resolver held before answers as before
 * (also its TTL). Run for every allocation of the load. */
Test(spf_resolver, zone_out_of_memory_loads_nothing) {
  static const char *zone =
      "$ORIGIN example.org.\n$TTL 600\n"
      "a IN A 192.0.2.1\na IN A 192.0.2.2\nb IN AAAA 2001:db8::1\n"
      "@ IN MX 10 mail\n@ IN TXT \"v=spf1 mx -all\"\n"
      "keep.test. 900 IN A 192.0.2.77\n"
      "1.2.0.192.in-addr.arpa. IN PTR a\nc IN CNAME a\n";
  int ok_at = 0;
  for (int at = 1; at < 400 && !ok_at; at++) {
    failmem f = {0}; /* from allocation `at` of the load on, all fail */
    mxgw_mem mem = failmem_mem(&f);
    mxgw_resolver *r;
    cr_assert_eq(mxgw_resolver_new_static(&r, &mem), MXGW_OK);
    cr_assert_eq(mxgw_resolver_add_record(r, "keep.test", MXGW_DNS_A, 60,
                                          "192.0.2.99", 0), MXGW_OK);
    f.n = 0;
    f.fail_at = at;
    f.sticky = true;
    int rc = mxgw_resolver_load_zone(r, zone, strlen(zone), NULL);
    f.fail_at = 0;
    if (rc == MXGW_OK) {
      ok_at = at;
      cr_assert_eq(lookup(r, "a.example.org", MXGW_DNS_A).n, 2);
      cr_assert_eq(lookup(r, "keep.test", MXGW_DNS_A).n, 2);
    } else {
      cr_assert_eq(rc, MXGW_E_NOMEM, "allocation %d: %d %s", at, rc,
                   mxgw_resolver_errmsg(r));
      const char *names[] = {"a.example.org", "b.example.org", "example.org",
                             "c.example.org", "1.2.0.192.in-addr.arpa"};
      for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        cr_assert_eq(lookup(r, names[i], MXGW_DNS_A).status,
                     MXGW_DNS_NXDOMAIN, "allocation %d: %s", at, names[i]);
      got k = lookup(r, "keep.test", MXGW_DNS_A);
      cr_assert_eq(k.n, 1, "allocation %d", at);
      cr_assert_eq(memcmp(k.data[0], "\xc0\x00\x02\x63", 4), 0);
      cr_assert_eq(k.ttl, 60, "allocation %d: ttl %u", at, k.ttl);
    }
    mxgw_resolver_free(r);
  }
  cr_assert_gt(ok_at, 1, "the load never needed memory, or never succeeded");
}

Test(spf_resolver, zone_file) {
  char path[] = "/tmp/mxgw-spf-zone-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  const char *text = "$ORIGIN f.test.\n@ IN TXT \"v=spf1 -all\"\n";
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  mxgw_resolver *r;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_load_zone_file(r, path, NULL), MXGW_OK);
  cr_assert_str_eq(lookup(r, "f.test", MXGW_DNS_TXT).data[0], "v=spf1 -all");
  unlink(path);
  cr_assert_eq(mxgw_resolver_load_zone_file(r, path, NULL), MXGW_E_IO);
  cr_assert(strstr(mxgw_resolver_errmsg(r), path));
  mxgw_resolver_free(r);
}

Test(spf_resolver, many_names_stay_distinct) {
  mxgw_resolver *r;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  char name[64], addr[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof name, "h%d.example.net", i);
    snprintf(addr, sizeof addr, "10.%d.%d.1", i / 256, i % 256);
    cr_assert_eq(mxgw_resolver_add_record(r, name, MXGW_DNS_A, 0, addr, 0),
                 MXGW_OK);
  }
  for (int i = 0; i < 5000; i += 499) {
    snprintf(name, sizeof name, "H%d.EXAMPLE.NET", i);
    got g = lookup(r, name, MXGW_DNS_A);
    cr_assert_eq(g.status, MXGW_DNS_OK);
    cr_assert_eq((unsigned char)g.data[0][1], i / 256);
    cr_assert_eq((unsigned char)g.data[0][2], i % 256);
  }
  mxgw_resolver_free(r);
}

Test(spf_resolver, not_static) {
  cr_assert_eq(mxgw_resolver_add_record(NULL, "a.test", MXGW_DNS_A, 0,
                                        "192.0.2.1", 0),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_resolver_load_zone(NULL, "", 0, NULL), MXGW_E_INVAL);
  cr_assert_eq(mxgw_resolver_new_static(NULL, NULL), MXGW_E_INVAL);
}
