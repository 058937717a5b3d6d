/* SPDX-License-Identifier: MIT */
/*
 * test_dns_resolver.c: the c-ares resolver against real DNS servers on
 * loopback, started by dns_fixture.py: NSD serving spf.test.zone (answers,
 * CNAME chains, NXDOMAIN, NODATA, SERVFAIL, REFUSED, a TXT record over 512
 * octets that needs TCP), a socket that never answers (timeouts) and a
 * lying server (wrong IDs, garbage, wrong types, truncation without TCP,
 * CNAME loops) that logs every query it receives. Covers the cache (TTLs,
 * negative answers, LRU bound), coalescing of identical queries, cancel,
 * free with queries in flight, 1,000 queries at once, and driving the
 * resolver from an outside poll() loop through fds/timeout/process.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mxgw/mxgw_resolver.h"
#include "mxgw_resolver_ares.h"

/* ---- helpers --------------------------------------------------------- */

static const char *env(const char *k) {
  const char *v = getenv(k);
  cr_assert(v && *v, "%s is not set: run through tests/dns/dns_fixture.py", k);
  return v;
}

static mxgw_resolver *new_res(const char *server, const char *o1,
                              const char *o2) {
  char sv[128];
  snprintf(sv, sizeof sv, "servers=%s", server);
  const char *opts[] = {sv, "timeout_ms=300", "tries=1", o1, o2, NULL};
  /* o1/o2 may be NULL: the list ends at the first NULL */
  mxgw_resolver *r = NULL;
  int rv = mxgw_resolver_new_ares(&r, opts, NULL);
  cr_assert_eq(rv, MXGW_OK, "new_ares: %s", mxgw_strerror(rv));
  cr_assert_not_null(r);
  return r;
}

#define MAXREC 16
typedef struct res {
  int calls;
  int status;
  size_t n;
  uint32_t ttl;
  char data[MAXREC][1100];
  size_t len[MAXREC];
  int pref[MAXREC];
} res;

static void on_answer(void *arg, int status, const mxgw_dns_answer *ans) {
  res *x = arg;
  x->calls++;
  x->status = status;
  x->n = 0;
  if (status != MXGW_DNS_OK) {
    cr_assert_null(ans, "an answer with status %d", status);
    return;
  }
  cr_assert_not_null(ans);
  x->n = mxgw_dns_answer_count(ans);
  x->ttl = mxgw_dns_answer_ttl(ans);
  for (size_t i = 0; i < x->n && i < MAXREC; i++) {
    const char *p;
    size_t l;
    cr_assert_eq(mxgw_dns_answer_data(ans, i, &p, &l), MXGW_OK);
    cr_assert_lt(l, sizeof x->data[i]);
    memcpy(x->data[i], p, l);
    x->data[i][l] = 0;
    x->len[i] = l;
    x->pref[i] = mxgw_dns_answer_pref(ans, i);
  }
}

/* Look a name up and wait for the answer. */
static res lookup(mxgw_resolver *r, const char *name, int type) {
  res x;
  memset(&x, 0, sizeof x);
  cr_assert_eq(mxgw_resolver_query(r, name, type, on_answer, &x, NULL),
               MXGW_OK, "query %s: %s", name, mxgw_resolver_errmsg(r));
  cr_assert_eq(mxgw_resolver_run(r, 10000), MXGW_OK, "%s: no answer", name);
  cr_assert_eq(x.calls, 1, "%s: %d callbacks", name, x.calls);
  return x;
}

static mxgw__ares_stats stats(const mxgw_resolver *r) {
  mxgw__ares_stats st;
  cr_assert_eq(mxgw__resolver_ares_stats(r, &st), MXGW_OK);
  return st;
}

/* Lines of the lying server's log naming `name`. */
static int liar_count(const char *name) {
  FILE *f = fopen(env("MXGW_TEST_DNS_LIAR_LOG"), "r");
  cr_assert_not_null(f);
  char line[512];
  int n = 0;
  size_t nl = strlen(name);
  while (fgets(line, sizeof line, f))
    if (strncmp(line, name, nl) == 0 && line[nl] == ' ')
      n++;
  fclose(f);
  return n;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- answers from NSD ------------------------------------------------------- */

Test(ares, txt_record) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res x = lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(x.status, MXGW_DNS_OK);
  cr_assert_eq(x.n, 1);
  cr_assert_str_eq(x.data[0], "v=spf1 ip4:192.0.2.1 -all");
  cr_assert(x.ttl > 0 && x.ttl <= 300, "ttl %u", x.ttl);
  /* names are case-insensitive and may end in a dot */
  x = lookup(r, "PASS.Spf.Test.", MXGW_DNS_TXT);
  cr_assert_str_eq(x.data[0], "v=spf1 ip4:192.0.2.1 -all");
  mxgw_resolver_free(r);
}

Test(ares, big_txt_over_tcp_is_concatenated) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res x = lookup(r, "big.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(x.status, MXGW_DNS_OK);
  cr_assert_eq(x.n, 1);
  cr_assert_eq(x.len[0], 1005, "length %zu", x.len[0]);
  cr_assert(strncmp(x.data[0], "v=spf1 ip4:203.0.113.1 ", 23) == 0);
  /* "ip4:203.0.113.1" "2" across two strings reads as one token */
  cr_assert_not_null(strstr(x.data[0], " ip4:203.0.113.12 ip4:203.0.113.13 "));
  cr_assert_not_null(strstr(x.data[0], " ip4:203.0.113.59 -all"));
  cr_assert_geq(stats(r).tcp_sockets, 1, "the answer did not come over TCP");
  mxgw_resolver_free(r);
}

Test(ares, address_and_mx_records) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res x = lookup(r, "host.spf.test", MXGW_DNS_A);
  cr_assert_eq(x.status, MXGW_DNS_OK);
  cr_assert_eq(x.n, 1);
  cr_assert_eq(x.len[0], 4);
  cr_assert(memcmp(x.data[0], "\xc0\x00\x02\x4d", 4) == 0);
  x = lookup(r, "host.spf.test", MXGW_DNS_AAAA);
  cr_assert_eq(x.len[0], 16);
  cr_assert(memcmp(x.data[0], "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x77", 16) == 0);
  x = lookup(r, "mxrec.spf.test", MXGW_DNS_MX);
  cr_assert_eq(x.status, MXGW_DNS_OK);
  cr_assert_eq(x.n, 2);
  int i10 = x.pref[0] == 10 ? 0 : 1;
  cr_assert_eq(x.pref[i10], 10);
  cr_assert_str_eq(x.data[i10], "mail1.spf.test");
  cr_assert_eq(x.pref[1 - i10], 20);
  cr_assert_str_eq(x.data[1 - i10], "mail2.spf.test");
  mxgw_resolver_free(r);
}

Test(ares, cname_chain_is_followed) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res x = lookup(r, "cname.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(x.status, MXGW_DNS_OK);
  cr_assert_eq(x.n, 1);
  cr_assert_str_eq(x.data[0], "v=spf1 ip4:192.0.2.1 -all");
  x = lookup(r, "cname.spf.test", MXGW_DNS_CNAME);
  cr_assert_eq(x.status, MXGW_DNS_OK);
  cr_assert_str_eq(x.data[0], "cname2.spf.test");
  mxgw_resolver_free(r);
}

Test(ares, nxdomain_and_nodata) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  cr_assert_eq(lookup(r, "nx1.spf.test", MXGW_DNS_A).status, MXGW_DNS_NXDOMAIN);
  cr_assert_eq(lookup(r, "nodata.spf.test", MXGW_DNS_A).status, MXGW_DNS_NODATA);
  cr_assert_eq(lookup(r, "nodata.spf.test", MXGW_DNS_MX).status, MXGW_DNS_NODATA);
  cr_assert_eq(lookup(r, "nodata.spf.test", MXGW_DNS_TXT).status, MXGW_DNS_OK);
  mxgw_resolver_free(r);
}

Test(ares, servfail_and_refused) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  /* broken.test does not load in NSD: SERVFAIL */
  cr_assert_eq(lookup(r, "spf.broken.test", MXGW_DNS_TXT).status,
               MXGW_DNS_SERVFAIL);
  /* refused.test is not served: REFUSED counts as a server failure */
  cr_assert_eq(lookup(r, "spf.refused.test", MXGW_DNS_TXT).status,
               MXGW_DNS_SERVFAIL);
  /* neither is cached */
  uint64_t sent = stats(r).sent;
  cr_assert_eq(lookup(r, "spf.broken.test", MXGW_DNS_TXT).status,
               MXGW_DNS_SERVFAIL);
  cr_assert_gt(stats(r).sent, sent);
  mxgw_resolver_free(r);
}

Test(ares, timeout) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS_SILENT"), NULL, NULL);
  double t0 = now_s();
  res x = lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  double dt = now_s() - t0;
  cr_assert_eq(x.status, MXGW_DNS_TIMEOUT);
  cr_assert(dt >= 0.25 && dt < 3.0, "took %.2f s for a 300 ms timeout", dt);
  mxgw_resolver_free(r);
}

Test(ares, dead_server_port) {
  /* nothing listens on UDP port 9 (discard) on loopback: ICMP port
   * unreachable, which c-ares reports as a refused connection */
  mxgw_resolver *r = new_res("127.0.0.1:9", NULL, NULL);
  res x = lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  cr_assert(x.status == MXGW_DNS_SERVFAIL || x.status == MXGW_DNS_TIMEOUT,
            "status %d", x.status);
  mxgw_resolver_free(r);
}

/* ---- lying DNS -------------------------------------------------------------- */

Test(ares, lying_server) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS_LIAR"), NULL, NULL);
  static const struct {
    const char *name;
    int type;
    int want;
  } cases[] = {
      {"badid.liar.test", MXGW_DNS_TXT, MXGW_DNS_TIMEOUT}, /* ignored */
      {"wrongq.liar.test", MXGW_DNS_TXT, MXGW_DNS_TIMEOUT},
      {"drop.liar.test", MXGW_DNS_TXT, MXGW_DNS_TIMEOUT},
      {"garbage.liar.test", MXGW_DNS_TXT, MXGW_DNS_ERROR},
      {"badtxt.liar.test", MXGW_DNS_TXT, MXGW_DNS_ERROR},
      {"badlen.liar.test", MXGW_DNS_A, MXGW_DNS_ERROR},
      {"loop.liar.test", MXGW_DNS_TXT, MXGW_DNS_ERROR},
      {"cnameloop.res.liar.test", MXGW_DNS_TXT, MXGW_DNS_ERROR},
      {"wrongtype.liar.test", MXGW_DNS_TXT, MXGW_DNS_NODATA},
      {"trunc.liar.test", MXGW_DNS_TXT, MXGW_DNS_SERVFAIL}, /* no TCP */
      {"servfail.liar.test", MXGW_DNS_TXT, MXGW_DNS_SERVFAIL},
      {"nxdomain.liar.test", MXGW_DNS_TXT, MXGW_DNS_NXDOMAIN},
      {"nodata-nosoa.liar.test", MXGW_DNS_TXT, MXGW_DNS_NODATA},
      {"ok.liar.test", MXGW_DNS_TXT, MXGW_DNS_OK},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    res x = lookup(r, cases[i].name, cases[i].type);
    cr_expect_eq(x.status, cases[i].want, "%s: status %s, want %s",
                 cases[i].name, mxgw_dns_status_name(x.status),
                 mxgw_dns_status_name(cases[i].want));
  }
  /* the CNAME loop was asked again a bounded number of times */
  int n = liar_count("cnameloop.res.liar.test");
  cr_assert(n >= 1 && n <= 10, "cnameloop asked %d times", n);
  mxgw_resolver_free(r);
}

/* ---- cache ------------------------------------------------------------------- */

Test(ares, cache_serves_second_lookup) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res a = lookup(r, "softfail.spf.test", MXGW_DNS_TXT);
  uint64_t sent = stats(r).sent;
  res b = lookup(r, "SOFTFAIL.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(stats(r).sent, sent, "second lookup went to the network");
  cr_assert_eq(stats(r).cache_hits, 1);
  cr_assert_str_eq(a.data[0], b.data[0]);
  cr_assert_leq(b.ttl, a.ttl);
  /* another type of the same name is another entry */
  lookup(r, "softfail.spf.test", MXGW_DNS_A);
  cr_assert_eq(stats(r).sent, sent + 1);
  mxgw_resolver_free(r);
}

Test(ares, cache_counted_at_the_server) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS_LIAR"), NULL, NULL);
  const char *name = "ok.cache1.liar.test";
  for (int i = 0; i < 5; i++)
    cr_assert_eq(lookup(r, name, MXGW_DNS_TXT).status, MXGW_DNS_OK);
  cr_assert_eq(liar_count(name), 1, "the server saw %d queries",
               liar_count(name));
  mxgw_resolver_free(r);
}

Test(ares, negative_answers_cached_with_soa_ttl) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  lookup(r, "nx2.spf.test", MXGW_DNS_A);
  lookup(r, "nodata.spf.test", MXGW_DNS_AAAA);
  uint64_t sent = stats(r).sent;
  cr_assert_eq(lookup(r, "nx2.spf.test", MXGW_DNS_A).status, MXGW_DNS_NXDOMAIN);
  cr_assert_eq(lookup(r, "nodata.spf.test", MXGW_DNS_AAAA).status,
               MXGW_DNS_NODATA);
  cr_assert_eq(stats(r).sent, sent);
  mxgw_resolver_free(r);

  /* negative_ttl=0: not cached */
  r = new_res(env("MXGW_TEST_DNS"), "negative_ttl=0", NULL);
  lookup(r, "nx2.spf.test", MXGW_DNS_A);
  lookup(r, "nx2.spf.test", MXGW_DNS_A);
  cr_assert_eq(stats(r).sent, 2);
  mxgw_resolver_free(r);

  /* a negative answer without an SOA is not cached (RFC 2308 5) */
  r = new_res(env("MXGW_TEST_DNS_LIAR"), NULL, NULL);
  lookup(r, "nodata-nosoa.c2.liar.test", MXGW_DNS_TXT);
  lookup(r, "nodata-nosoa.c2.liar.test", MXGW_DNS_TXT);
  cr_assert_eq(liar_count("nodata-nosoa.c2.liar.test"), 2);
  mxgw_resolver_free(r);
}

Test(ares, cache_disabled) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), "cache_size=0", NULL);
  lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(stats(r).sent, 2);
  cr_assert_eq(stats(r).cache_hits, 0);
  mxgw_resolver_free(r);
}

Test(ares, cache_entry_expires_with_ttl) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res a = lookup(r, "ttl1.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(a.status, MXGW_DNS_OK);
  cr_assert_leq(a.ttl, 1);
  nanosleep(&(struct timespec){.tv_sec = 1, .tv_nsec = 100000000}, NULL);
  lookup(r, "ttl1.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(stats(r).sent, 2, "an expired entry was served");
  mxgw_resolver_free(r);
}

Test(ares, cache_is_bounded_lru) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), "cache_size=2", NULL);
  lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  lookup(r, "softfail.spf.test", MXGW_DNS_TXT);
  lookup(r, "pass.spf.test", MXGW_DNS_TXT); /* hit: pass is now newest */
  lookup(r, "neutral.spf.test", MXGW_DNS_TXT); /* evicts softfail */
  mxgw__ares_stats st = stats(r);
  cr_assert_eq(st.cache_entries, 2);
  cr_assert_eq(st.evictions, 1);
  cr_assert_eq(st.sent, 3);
  lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(stats(r).sent, 3, "the recently used entry was evicted");
  lookup(r, "softfail.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(stats(r).sent, 4, "the least recently used entry stayed");
  mxgw_resolver_free(r);
}

/* ---- coalescing, cancel, free ---------------------------------------------- */

Test(ares, identical_queries_coalesce) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS_LIAR"), NULL, NULL);
  res x[10];
  memset(x, 0, sizeof x);
  for (int i = 0; i < 10; i++)
    cr_assert_eq(mxgw_resolver_query(r, "ok.co.liar.test", MXGW_DNS_A,
                                     on_answer, &x[i], NULL),
                 MXGW_OK);
  cr_assert_eq(mxgw_resolver_pending(r), 10);
  cr_assert_eq(mxgw_resolver_run(r, 5000), MXGW_OK);
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(x[i].calls, 1);
    cr_assert_eq(x[i].status, MXGW_DNS_OK);
    cr_assert(memcmp(x[i].data[0], "\xc0\x00\x02\x01", 4) == 0);
  }
  cr_assert_eq(stats(r).coalesced, 9);
  cr_assert_eq(liar_count("ok.co.liar.test"), 1);
  mxgw_resolver_free(r);
}

Test(ares, cancel) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  res a, b;
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  mxgw_dns_query *qa, *qb;
  cr_assert_eq(mxgw_resolver_query(r, "pass.spf.test", MXGW_DNS_TXT,
                                   on_answer, &a, &qa), MXGW_OK);
  cr_assert_eq(mxgw_resolver_query(r, "pass.spf.test", MXGW_DNS_TXT,
                                   on_answer, &b, &qb), MXGW_OK);
  mxgw_resolver_cancel(r, qa);
  cr_assert_eq(mxgw_resolver_pending(r), 1);
  cr_assert_eq(mxgw_resolver_run(r, 5000), MXGW_OK);
  cr_assert_eq(a.calls, 0);
  cr_assert_eq(b.calls, 1);

  /* cancelling every waiter: no callback, the answer still fills the cache */
  memset(&a, 0, sizeof a);
  cr_assert_eq(mxgw_resolver_query(r, "neutral.spf.test", MXGW_DNS_TXT,
                                   on_answer, &a, &qa), MXGW_OK);
  mxgw_resolver_cancel(r, qa);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  for (int i = 0; i < 200 && stats(r).cache_entries < 2; i++) {
    struct pollfd p[8];
    int fds[8], ev[8];
    int n = mxgw_resolver_fds(r, fds, ev, 8);
    for (int k = 0; k < n && k < 8; k++)
      p[k] = (struct pollfd){.fd = fds[k], .events = POLLIN};
    poll(p, (nfds_t)(n < 8 ? n : 8), 20);
    for (int k = 0; k < n && k < 8; k++)
      if (p[k].revents)
        mxgw_resolver_process(r, p[k].fd, 1);
    mxgw_resolver_process(r, -1, 0);
  }
  cr_assert_eq(a.calls, 0);
  cr_assert_eq(stats(r).cache_entries, 2);

  /* cancelling a cache hit before it is delivered */
  memset(&a, 0, sizeof a);
  cr_assert_eq(mxgw_resolver_query(r, "pass.spf.test", MXGW_DNS_TXT,
                                   on_answer, &a, &qa), MXGW_OK);
  mxgw_resolver_cancel(r, qa);
  cr_assert_eq(mxgw_resolver_run(r, 1000), MXGW_OK);
  cr_assert_eq(a.calls, 0);
  mxgw_resolver_free(r);
}

static void count_cb(void *arg, int status, const mxgw_dns_answer *ans) {
  int *c = arg;
  (void)ans;
  cr_assert_eq(status, MXGW_DNS_ERROR);
  (*c)++;
}

Test(ares, free_completes_pending_with_error) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS_SILENT"), NULL, NULL);
  int calls = 0;
  cr_assert_eq(mxgw_resolver_query(r, "a.spf.test", MXGW_DNS_TXT, count_cb,
                                   &calls, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_query(r, "a.spf.test", MXGW_DNS_TXT, count_cb,
                                   &calls, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_query(r, "b.spf.test", MXGW_DNS_MX, count_cb,
                                   &calls, NULL), MXGW_OK);
  cr_assert_eq(calls, 0, "a callback ran inside mxgw_resolver_query");
  mxgw_resolver_free(r);
  cr_assert_eq(calls, 3);
}

static void mark_cb(void *arg, int status, const mxgw_dns_answer *ans) {
  (void)status;
  (void)ans;
  (*(int *)arg)++;
}

Test(ares, cache_hit_completes_later_not_inside_query) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  int calls = 0;
  cr_assert_eq(mxgw_resolver_query(r, "pass.spf.test", MXGW_DNS_TXT, mark_cb,
                                   &calls, NULL), MXGW_OK);
  cr_assert_eq(calls, 0);
  cr_assert_eq(mxgw_resolver_timeout(r), 0, "a ready answer needs process()");
  cr_assert_eq(mxgw_resolver_process(r, -1, 0), 1);
  cr_assert_eq(calls, 1);
  mxgw_resolver_free(r);
}

/* A callback that asks the next question: chains work from callbacks. */
typedef struct chain {
  mxgw_resolver *r;
  int step;
  int last;
} chain;
static void chain_cb(void *arg, int status, const mxgw_dns_answer *ans) {
  chain *c = arg;
  (void)ans;
  c->last = status;
  if (++c->step < 4)
    cr_assert_eq(mxgw_resolver_query(c->r, c->step % 2 ? "mail1.spf.test" : "mail2.spf.test",
                                     MXGW_DNS_A, chain_cb, c, NULL),
                 MXGW_OK);
}

Test(ares, queries_from_callbacks) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  chain c = {r, 0, -1};
  cr_assert_eq(mxgw_resolver_query(r, "mxrec.spf.test", MXGW_DNS_MX, chain_cb,
                                   &c, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_run(r, 5000), MXGW_OK);
  cr_assert_eq(c.step, 4);
  cr_assert_eq(c.last, MXGW_DNS_OK);
  mxgw_resolver_free(r);
}

/* ---- many in flight, outside event loop --------------------------------------- */

typedef struct bulk {
  int calls, ok;
  char want[128];
} bulk;
static void bulk_cb(void *arg, int status, const mxgw_dns_answer *ans) {
  bulk *b = arg;
  b->calls++;
  const char *p;
  size_t l;
  if (status == MXGW_DNS_OK && mxgw_dns_answer_count(ans) == 1 &&
      mxgw_dns_answer_data(ans, 0, &p, &l) == MXGW_OK &&
      l == strlen(b->want) && memcmp(p, b->want, l) == 0)
    b->ok++;
}

Test(ares, thousand_queries_in_flight, .timeout = 60) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  int n = atoi(env("MXGW_TEST_DNS_BULK"));
  cr_assert_geq(n, 1000);
  n = 1000;
  bulk *b = calloc((size_t)n, sizeof *b);
  for (int i = 0; i < n; i++) {
    char name[64];
    snprintf(name, sizeof name, "d%d.bulk.test", i);
    snprintf(b[i].want, sizeof b[i].want,
             "v=spf1 ip4:192.0.2.%d a:h%d.bulk.test -all", i % 250, i);
    cr_assert_eq(mxgw_resolver_query(r, name, MXGW_DNS_TXT, bulk_cb, &b[i],
                                     NULL), MXGW_OK);
  }
  cr_assert_eq(mxgw_resolver_pending(r), (size_t)n);
  /* drive it from our own poll() loop */
  double t0 = now_s();
  while (mxgw_resolver_pending(r) > 0 && now_s() - t0 < 30) {
    int fds[16], ev[16];
    struct pollfd p[16];
    int nf = mxgw_resolver_fds(r, fds, ev, 16);
    cr_assert_geq(nf, 1, "queries pending but no descriptor to watch");
    for (int k = 0; k < nf && k < 16; k++)
      p[k] = (struct pollfd){
          .fd = fds[k],
          .events = (short)(((ev[k] & 1) ? POLLIN : 0) | ((ev[k] & 2) ? POLLOUT : 0))};
    int64_t to = mxgw_resolver_timeout(r);
    cr_assert(to >= 0, "queries pending but no timer");
    poll(p, (nfds_t)(nf < 16 ? nf : 16), (int)(to > 1000 ? 1000 : to));
    int ran = 0;
    for (int k = 0; k < nf && k < 16; k++) {
      if (!p[k].revents)
        continue;
      int e = ((p[k].revents & (POLLIN | POLLERR | POLLHUP)) ? 1 : 0) |
              ((p[k].revents & POLLOUT) ? 2 : 0);
      int c = mxgw_resolver_process(r, p[k].fd, e);
      cr_assert_geq(c, 0);
      ran += c;
    }
    if (!ran)
      mxgw_resolver_process(r, -1, 0);
  }
  int ok = 0, calls = 0;
  for (int i = 0; i < n; i++) {
    calls += b[i].calls;
    ok += b[i].ok;
    cr_assert_leq(b[i].calls, 1);
  }
  cr_assert_eq(calls, n);
  cr_assert_eq(ok, n, "%d of %d answers right", ok, n);
  cr_assert_eq(stats(r).sent, (uint64_t)n);
  free(b);
  mxgw_resolver_free(r);
}

/* ---- bad input ------------------------------------------------------------------- */

static void never_cb(void *arg, int status, const mxgw_dns_answer *ans) {
  (void)arg;
  (void)status;
  (void)ans;
  cr_assert_fail("a failed query called back");
}

Test(ares, bad_names_and_types) {
  mxgw_resolver *r = new_res(env("MXGW_TEST_DNS"), NULL, NULL);
  char longlabel[80];
  memset(longlabel, 'a', 64);
  strcpy(longlabel + 64, ".spf.test");
  char longname[300];
  memset(longname, 0, sizeof longname);
  for (int i = 0; i < 64; i++)
    memcpy(longname + i * 4, "abc.", 4); /* 256 characters */
  const char *bad[] = {"", ".", "a..b", ".a", "a.b..", longlabel, longname};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(mxgw_resolver_query(r, bad[i], MXGW_DNS_TXT, never_cb, NULL,
                                     NULL), MXGW_E_INVAL, "name \"%s\"", bad[i]);
  cr_assert_eq(mxgw_resolver_query(r, "pass.spf.test", 99, never_cb, NULL, NULL),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  cr_assert_eq(mxgw_resolver_run(r, 100), MXGW_OK);
  /* a 63-octet label is fine: NXDOMAIN */
  memmove(longlabel + 63, longlabel + 64, strlen(longlabel + 64) + 1);
  cr_assert_eq(strlen(longlabel), 63 + 9);
  cr_assert_eq(lookup(r, longlabel, MXGW_DNS_TXT).status, MXGW_DNS_NXDOMAIN);
  mxgw_resolver_free(r);
}

Test(ares, bad_options) {
  const char *bad[][2] = {
      {"servers=nonsense", NULL}, {"servers=127.0.0.1:0", NULL},
      {"servers=127.0.0.1:70000", NULL}, {"servers=", NULL},
      {"servers=[::1", NULL},     {"timeout_ms=0", NULL},
      {"timeout_ms=abc", NULL},   {"tries=-1", NULL},
      {"cache_size=1x", NULL},    {"bogus=1", NULL},
      {"servers", NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    mxgw_resolver *r = (mxgw_resolver *)1;
    cr_assert_eq(mxgw_resolver_new_ares(&r, bad[i], NULL), MXGW_E_INVAL, "%s",
                 bad[i][0]);
    cr_assert_null(r);
  }
  const char *good[] = {"servers=127.0.0.1,[::1]:5353,::1,10.0.0.1:53",
                        "timeout_ms=100", "tries=3", "cache_size=5",
                        "negative_ttl=10", NULL};
  mxgw_resolver *r = NULL;
  cr_assert_eq(mxgw_resolver_new_ares(&r, good, NULL), MXGW_OK);
  mxgw_resolver_free(r);
  /* defaults (resolv.conf) */
  cr_assert_eq(mxgw_resolver_new_ares(&r, NULL, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_pending(r), 0);
  cr_assert_eq(mxgw_resolver_timeout(r), -1);
  mxgw_resolver_free(r);
}

Test(ares, next_server_after_refused) {
  /* the lying server refuses names outside liar.test: c-ares asks NSD */
  char two[160];
  snprintf(two, sizeof two, "%s,%s", env("MXGW_TEST_DNS_LIAR"),
           env("MXGW_TEST_DNS"));
  mxgw_resolver *r = new_res(two, NULL, NULL);
  res x = lookup(r, "pass.spf.test", MXGW_DNS_TXT);
  cr_assert_eq(x.status, MXGW_DNS_OK, "status %s",
               mxgw_dns_status_name(x.status));
  cr_assert_str_eq(x.data[0], "v=spf1 ip4:192.0.2.1 -all");
  cr_assert_geq(liar_count("pass.spf.test"), 1, "the first server was not asked");
  mxgw_resolver_free(r);
}
