/* SPDX-License-Identifier: MIT */
/*
 * bench_spf.c: SPF evaluations per second with libmxgw.
 *
 *   bench_spf suite FILE.flat [--repeat R] [--min-ms MS] [--no-trace]
 *     Every test of a suite (flattened by suite_flat.py) against the static
 *     resolver holding its scenario's zone, through the public SPF API
 *     (mxgw_spf_check_sync). Zones and contexts are built before timing;
 *     the time is the CPU time of the process.
 *     Each repeat runs the whole suite until MS ms have passed; the median
 *     of the repeats is reported, with how many results the suite accepts.
 *
 *   bench_spf cares --server IP:PORT --bulk N [--repeat R]
 *     Evaluations through c-ares against a DNS server on loopback serving
 *     bulk.test (tests/dns/dns_fixture.py): N distinct domains, each
 *     "v=spf1 ip4:192.0.2.<i%250> a:h<i>.bulk.test -all", with clients that
 *     pass on ip4, pass on a:, or fail. Cold cache (a new resolver) and warm
 *     cache (the same resolver again), with all N evaluations in flight at
 *     once and one at a time.
 *
 * Output: one "RESULT key value" line per figure, for run.sh, and a
 * readable summary on stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flat.h"
#include "mxgw/mxgw_resolver.h"
#include "mxgw/mxgw_spf.h"
#include "mxgw_resolver_ares.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process: the suite benchmark does no I/O, and CPU time
 * keeps the figures steady on a shared, busy machine. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int type_of(const char *t) {
  if (!strcmp(t, "A"))
    return MXGW_DNS_A;
  if (!strcmp(t, "AAAA"))
    return MXGW_DNS_AAAA;
  if (!strcmp(t, "MX"))
    return MXGW_DNS_MX;
  if (!strcmp(t, "TXT"))
    return MXGW_DNS_TXT;
  if (!strcmp(t, "PTR"))
    return MXGW_DNS_PTR;
  if (!strcmp(t, "CNAME"))
    return MXGW_DNS_CNAME;
  return 0;
}

/* ---- the suite on the static resolver -------------------------------------- */

typedef struct ctx {
  mxgw_resolver *r;
  mxgw_spf *spf;
} ctx;

/* A TXT record goes through the zone-file loader, whose \DDD escapes carry
 * any byte (mxgw_resolver_add_record takes a C string: no NUL). */
static int add_txt(mxgw_resolver *r, const flat_rr *rr) {
  size_t cap = strlen(rr->name) + 4 * rr->dlen + 64 + 3 * (rr->dlen / 255 + 1);
  char *z = malloc(cap), *o = z;
  o += sprintf(o, "%s. 300 IN TXT", rr->name);
  for (size_t i = 0; i == 0 || i < rr->dlen; i += 255) {
    *o++ = ' ';
    *o++ = '"';
    for (size_t j = i; j < rr->dlen && j < i + 255; j++) {
      unsigned char ch = (unsigned char)rr->data[j];
      if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
        o += sprintf(o, "\\%03u", ch);
      else
        *o++ = (char)ch;
    }
    *o++ = '"';
  }
  *o++ = '\n';
  int rv = mxgw_resolver_load_zone(r, z, (size_t)(o - z), NULL);
  free(z);
  return rv;
}

static const char *eval(mxgw_spf *spf, const flat_test *t) {
  mxgw_spf_check *chk = NULL;
  int rv = mxgw_spf_check_sync(spf, t->ip, t->helo, t->mailfrom,
                               MXGW_SPF_ID_MAILFROM, &chk);
  const char *res = rv == MXGW_OK
                        ? mxgw_spf_result_name(mxgw_spf_check_result(chk))
                        : "(refused)";
  mxgw_spf_check_free(chk);
  return res;
}

static int bench_suite(int argc, char **argv) {
  const char *file = NULL;
  int repeat = 7, trace = 1;
  double min_s = 0.3;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
      repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc)
      min_s = atof(argv[++i]) / 1000.0;
    else if (!strcmp(argv[i], "--no-trace"))
      trace = 0;
    else
      file = argv[i];
  }
  flat_suite s;
  if (!file || repeat < 1 || repeat > 101 || flat_load(file, &s) != 0) {
    fprintf(stderr, "usage: bench_spf suite FILE.flat [--repeat R] "
                    "[--min-ms MS] [--no-trace]\n");
    return 64;
  }
  ctx *c = calloc(s.nsc, sizeof *c);
  size_t skipped = 0;
  for (size_t i = 0; i < s.nsc; i++) {
    if (mxgw_resolver_new_static(&c[i].r, NULL) != MXGW_OK ||
        mxgw_spf_new(&c[i].spf, c[i].r, NULL) != MXGW_OK)
      return 70;
    mxgw_spf_set_int(c[i].spf, MXGW_SPF_OPT_TRACE, trace);
    mxgw_spf_set_str(c[i].spf, MXGW_SPF_OPT_DEFAULT_EXPLANATION, "DEFAULT");
    for (size_t k = 0; k < s.sc[i].nrr; k++) {
      const flat_rr *rr = &s.sc[i].rr[k];
      int rv;
      if (rr->data && !strcmp(rr->type, "TXT") &&
          add_txt(c[i].r, rr) == MXGW_OK)
        rv = MXGW_OK;
      else /* also a name a zone file cannot spell (spaces) */
        rv = mxgw_resolver_add_record(c[i].r, rr->name, type_of(rr->type), 300,
                                      rr->data ? rr->data : "",
                                      rr->data ? 0 : MXGW_DNS_TIMEOUT);
      if (rv != MXGW_OK) { /* data a resolver cannot hold */
        skipped++;
        fprintf(stderr, "  not loadable: %s %s: %s\n", rr->name, rr->type,
                mxgw_resolver_errmsg(c[i].r));
      }
    }
  }
  size_t matched = 0;
  for (size_t i = 0; i < s.nsc; i++)
    for (size_t k = 0; k < s.sc[i].nt; k++) {
      const char *res = eval(c[i].spf, &s.sc[i].t[k]);
      if (flat_accepts(s.sc[i].t[k].results, res))
        matched++;
      else
        fprintf(stderr, "  mismatch %s: %s, suite wants %s\n",
                s.sc[i].t[k].id, res, s.sc[i].t[k].results);
    }

  double *rate = calloc((size_t)repeat, sizeof *rate);
  for (int r = 0; r < repeat; r++) {
    size_t n = 0;
    double t0 = cpu_s(), dt;
    do {
      for (size_t i = 0; i < s.nsc; i++)
        for (size_t k = 0; k < s.sc[i].nt; k++)
          (void)eval(c[i].spf, &s.sc[i].t[k]);
      n += s.ntests;
      dt = cpu_s() - t0;
    } while (dt < min_s);
    rate[r] = (double)n / dt;
  }
  double med = flat_median(rate, repeat);
  printf("RESULT mxgw_static%s_evals_per_s %.0f\n", trace ? "" : "_notrace",
         med);
  printf("RESULT mxgw_static_matched %zu/%zu\n", matched, s.ntests);
  fprintf(stderr,
          "libmxgw (static resolver%s): %.0f evaluations/s (median of %d), "
          "%zu/%zu results accepted by the suite, %zu records not loadable\n",
          trace ? ", trace on" : ", trace off", med, repeat, matched, s.ntests,
          skipped);
  for (size_t i = 0; i < s.nsc; i++) {
    mxgw_spf_free(c[i].spf);
    mxgw_resolver_free(c[i].r);
  }
  free(c);
  free(rate);
  return 0;
}

/* ---- c-ares against the loopback server -------------------------------------- */

typedef struct job {
  char ip[32], sender[64];
  int want;
  mxgw_spf_check *chk;
} job;

static mxgw_resolver *new_ares(const char *server) {
  char sv[128];
  snprintf(sv, sizeof sv, "servers=%s", server);
  const char *opts[] = {sv, NULL};
  mxgw_resolver *r = NULL;
  if (mxgw_resolver_new_ares(&r, opts, NULL) != MXGW_OK) {
    fprintf(stderr, "cannot create the c-ares resolver for %s\n", server);
    exit(69);
  }
  return r;
}

/* All n in flight at once; returns evaluations per (wall) second, stores
 * evaluations per CPU second of this process in *cpu_rate, counts wrong
 * results. */
static double run_parallel(mxgw_spf *spf, mxgw_resolver *r, job *j, int n,
                           int *wrong, double *cpu_rate) {
  double t0 = now_s(), c0 = cpu_s();
  for (int i = 0; i < n; i++)
    if (mxgw_spf_check_start(spf, j[i].ip, "helo.test", j[i].sender,
                             MXGW_SPF_ID_MAILFROM, &j[i].chk) != MXGW_OK)
      exit(70);
  if (mxgw_resolver_run(r, 120000) != MXGW_OK)
    fprintf(stderr, "  resolver run did not finish\n");
  double dt = now_s() - t0;
  *cpu_rate = n / (cpu_s() - c0);
  for (int i = 0; i < n; i++) {
    if (mxgw_spf_check_result(j[i].chk) != j[i].want)
      (*wrong)++;
    mxgw_spf_check_free(j[i].chk);
  }
  return n / dt;
}

/* One at a time. */
static double run_serial(mxgw_spf *spf, job *j, int n, int *wrong,
                         double *cpu_rate) {
  double t0 = now_s(), c0 = cpu_s();
  for (int i = 0; i < n; i++) {
    mxgw_spf_check *chk = NULL;
    if (mxgw_spf_check_sync(spf, j[i].ip, "helo.test", j[i].sender,
                            MXGW_SPF_ID_MAILFROM, &chk) != MXGW_OK)
      exit(70);
    if (mxgw_spf_check_result(chk) != j[i].want)
      (*wrong)++;
    mxgw_spf_check_free(chk);
  }
  double dt = now_s() - t0;
  *cpu_rate = n / (cpu_s() - c0);
  return n / dt;
}

static int bench_cares(int argc, char **argv) {
  const char *server = NULL;
  int n = 1000, repeat = 5;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--server"))
      server = argv[i + 1];
    else if (!strcmp(argv[i], "--bulk"))
      n = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--repeat"))
      repeat = atoi(argv[i + 1]);
  }
  if (!server || n < 1 || repeat < 1 || repeat > 101) {
    fprintf(stderr, "usage: bench_spf cares --server IP:PORT --bulk N "
                    "[--repeat R]\n");
    return 64;
  }
  job *j = calloc((size_t)n, sizeof *j);
  for (int i = 0; i < n; i++) {
    snprintf(j[i].sender, sizeof j[i].sender, "u%d@d%d.bulk.test", i, i);
    switch (i % 3) {
    case 0:
      snprintf(j[i].ip, sizeof j[i].ip, "192.0.2.%d", i % 250);
      j[i].want = MXGW_SPF_PASS;
      break;
    case 1:
      snprintf(j[i].ip, sizeof j[i].ip, "198.51.100.%d", i % 250);
      j[i].want = MXGW_SPF_PASS;
      break;
    default:
      snprintf(j[i].ip, sizeof j[i].ip, "203.0.113.%d", i % 250);
      j[i].want = MXGW_SPF_FAIL;
      break;
    }
  }
  /* wall-clock rates, then the same as evaluations per CPU second */
  double *cp = calloc((size_t)repeat, sizeof(double)),
         *wp = calloc((size_t)repeat, sizeof(double)),
         *cs = calloc((size_t)repeat, sizeof(double)),
         *ws = calloc((size_t)repeat, sizeof(double)),
         *ccp = calloc((size_t)repeat, sizeof(double)),
         *cwp = calloc((size_t)repeat, sizeof(double)),
         *ccs = calloc((size_t)repeat, sizeof(double)),
         *cws = calloc((size_t)repeat, sizeof(double));
  int wrong = 0;
  uint64_t sent = 0;
  for (int r = 0; r < repeat; r++) {
    mxgw_resolver *res = new_ares(server);
    mxgw_spf *spf = NULL;
    mxgw_spf_new(&spf, res, NULL);
    cp[r] = run_parallel(spf, res, j, n, &wrong, &ccp[r]);
    mxgw__ares_stats st;
    mxgw__resolver_ares_stats(res, &st);
    sent = st.sent;
    wp[r] = run_parallel(spf, res, j, n, &wrong, &cwp[r]);
    mxgw_spf_free(spf);
    mxgw_resolver_free(res);

    res = new_ares(server);
    spf = NULL;
    mxgw_spf_new(&spf, res, NULL);
    cs[r] = run_serial(spf, j, n, &wrong, &ccs[r]);
    ws[r] = run_serial(spf, j, n, &wrong, &cws[r]);
    mxgw_spf_free(spf);
    mxgw_resolver_free(res);
  }
  double a = flat_median(cp, repeat), b = flat_median(wp, repeat),
         c = flat_median(cs, repeat), d = flat_median(ws, repeat);
  printf("RESULT cares_cold_inflight_evals_per_s %.0f\n", a);
  printf("RESULT cares_warm_inflight_evals_per_s %.0f\n", b);
  printf("RESULT cares_cold_serial_evals_per_s %.0f\n", c);
  printf("RESULT cares_warm_serial_evals_per_s %.0f\n", d);
  printf("RESULT cares_cold_inflight_evals_per_cpu_s %.0f\n",
         flat_median(ccp, repeat));
  printf("RESULT cares_warm_inflight_evals_per_cpu_s %.0f\n",
         flat_median(cwp, repeat));
  printf("RESULT cares_cold_serial_evals_per_cpu_s %.0f\n",
         flat_median(ccs, repeat));
  printf("RESULT cares_warm_serial_evals_per_cpu_s %.0f\n",
         flat_median(cws, repeat));
  printf("RESULT cares_inflight %d\n", n);
  printf("RESULT cares_queries_per_cold_pass %llu\n", (unsigned long long)sent);
  printf("RESULT cares_wrong_results %d\n", wrong);
  fprintf(stderr,
          "libmxgw over c-ares, %d domains (median of %d):\n"
          "  cold cache, %d in flight: %8.0f evaluations/s (%llu DNS queries, "
          "%.2f s for all)\n"
          "  warm cache, %d in flight: %8.0f evaluations/s\n"
          "  cold cache, one at a time: %7.0f evaluations/s (%.0f us each)\n"
          "  warm cache, one at a time: %7.0f evaluations/s\n"
          "  wrong results: %d\n",
          n, repeat, n, a, (unsigned long long)sent, n / a, n, b, c, 1e6 / c,
          d, wrong);
  free(cp);
  free(wp);
  free(cs);
  free(ws);
  free(ccp);
  free(cwp);
  free(ccs);
  free(cws);
  free(j);
  return wrong ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "suite"))
    return bench_suite(argc - 2, argv + 2);
  if (argc >= 2 && !strcmp(argv[1], "cares"))
    return bench_cares(argc - 2, argv + 2);
  fprintf(stderr, "usage: bench_spf suite FILE.flat [...] | bench_spf cares "
                  "--server IP:PORT --bulk N [...]\n");
  return 64;
}
