/* SPDX-License-Identifier: MIT */
/*
 * bench_spf_libspf2.c: the same suite benchmark as `bench_spf suite`, with
 * libspf2 (Debian libspf2-dev) for comparison. Each scenario's records go
 * into libspf2's in-memory zone DNS layer (SPF_dns_zone), names that time
 * out become TRY_AGAIN entries, and every test is one
 * SPF_request_query_mailfrom() on a server over that zone. Zones and
 * servers are built before timing; each repeat runs the whole suite until
 * MS ms of CPU time have passed; the median is reported with how many results the suite
 * accepts.
 *
 *   bench_spf_libspf2 FILE.flat [--repeat R] [--min-ms MS] [--verbose]
 */
#define _DEFAULT_SOURCE /* NETDB_SUCCESS, TRY_AGAIN in netdb.h */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <arpa/nameser.h>
#include <spf2/spf.h>
#include <spf2/spf_dns_zone.h>

#include "flat.h"

/* CPU time of this process: the suite benchmark does no I/O, and CPU time
 * keeps the figures steady on a shared, busy machine. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static ns_type type_of(const char *t) {
  if (!strcmp(t, "A"))
    return ns_t_a;
  if (!strcmp(t, "AAAA"))
    return ns_t_aaaa;
  if (!strcmp(t, "MX"))
    return ns_t_mx;
  if (!strcmp(t, "TXT"))
    return ns_t_txt;
  if (!strcmp(t, "PTR"))
    return ns_t_ptr;
  if (!strcmp(t, "CNAME"))
    return ns_t_cname;
  return ns_t_invalid;
}

/* Same DNS name? (case-insensitive, a final dot ignored) */
static int same_name(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la && a[la - 1] == '.')
    la--;
  if (lb && b[lb - 1] == '.')
    lb--;
  if (la != lb)
    return 0;
  for (size_t i = 0; i < la; i++) {
    int x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z')
      x += 32;
    if (y >= 'A' && y <= 'Z')
      y += 32;
    if (x != y)
      return 0;
  }
  return 1;
}

/*
 * libspf2's zone layer has no CNAME records: give an alias the records of
 * the end of its chain instead, as a recursive resolver's answer would
 * carry them. A loop leaves the alias empty.
 */
static void add_flattened(SPF_dns_server_t *z, const flat_scenario *sc,
                          const flat_rr *alias) {
  const char *target = alias->data;
  for (int hop = 0; hop < 8; hop++) {
    const flat_rr *next = NULL;
    for (size_t k = 0; k < sc->nrr; k++)
      if (!strcmp(sc->rr[k].type, "CNAME") && sc->rr[k].data &&
          same_name(sc->rr[k].name, target))
        next = &sc->rr[k];
    if (!next)
      break;
    if (hop == 7 || same_name(next->data, alias->name))
      return; /* loop */
    target = next->data;
  }
  for (size_t k = 0; k < sc->nrr; k++) {
    const flat_rr *rr = &sc->rr[k];
    if (!same_name(rr->name, target) || !strcmp(rr->type, "CNAME"))
      continue;
    if (rr->data)
      SPF_dns_zone_add_str(z, alias->name, type_of(rr->type), NETDB_SUCCESS,
                           rr->data);
    else
      SPF_dns_zone_add_str(z, alias->name, type_of(rr->type), TRY_AGAIN, NULL);
  }
}

static const char *result_name(SPF_result_t r) {
  switch (r) {
  case SPF_RESULT_PASS: return "pass";
  case SPF_RESULT_FAIL: return "fail";
  case SPF_RESULT_SOFTFAIL: return "softfail";
  case SPF_RESULT_NEUTRAL: return "neutral";
  case SPF_RESULT_NONE: return "none";
  case SPF_RESULT_TEMPERROR: return "temperror";
  case SPF_RESULT_PERMERROR: return "permerror";
  default: return "(invalid)";
  }
}

static const char *eval(SPF_server_t *srv, const flat_test *t) {
  SPF_request_t *req = SPF_request_new(srv);
  SPF_response_t *resp = NULL;
  const char *res = "permerror";
  if (!req)
    return "(nomem)";
  /* an address libspf2 cannot take: permerror, as RFC 7208 4.3 would */
  if (SPF_request_set_ipv4_str(req, t->ip) != SPF_E_SUCCESS &&
      SPF_request_set_ipv6_str(req, t->ip) != SPF_E_SUCCESS)
    goto done;
  SPF_request_set_helo_dom(req, t->helo);
  if (SPF_request_set_env_from(req, t->mailfrom) != 0)
    goto done;
  SPF_errcode_t err = SPF_request_query_mailfrom(req, &resp);
  if (resp && SPF_response_result(resp) != SPF_RESULT_INVALID)
    res = result_name(SPF_response_result(resp));
  else /* an error without a result (as libspf2's spfquery reports it) */
    res = err == SPF_E_DNS_ERROR ? "temperror" : "permerror";
done:
  if (resp)
    SPF_response_free(resp);
  SPF_request_free(req);
  return res;
}

int main(int argc, char **argv) {
  const char *file = NULL;
  int repeat = 7, verbose = 0;
  double min_s = 0.3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--verbose"))
      verbose = 1;
    else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
      repeat = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc)
      min_s = atof(argv[++i]) / 1000.0;
    else
      file = argv[i];
  }
  flat_suite s;
  if (!file || repeat < 1 || repeat > 101 || flat_load(file, &s) != 0) {
    fprintf(stderr, "usage: bench_spf_libspf2 FILE.flat [--repeat R] "
                    "[--min-ms MS] [--verbose]\n");
    return 64;
  }
  SPF_server_t **srv = calloc(s.nsc, sizeof *srv);
  SPF_dns_server_t **zones = calloc(s.nsc, sizeof *zones);
  for (size_t i = 0; i < s.nsc; i++) {
    SPF_dns_server_t *z = zones[i] = SPF_dns_zone_new(NULL, "bench", 0);
    if (!z)
      return 70;
    for (size_t k = 0; k < s.sc[i].nrr; k++) {
      const flat_rr *rr = &s.sc[i].rr[k];
      if (!strcmp(rr->type, "CNAME")) {
        if (rr->data)
          add_flattened(z, &s.sc[i], rr);
        continue;
      }
      if (rr->data)
        SPF_dns_zone_add_str(z, rr->name, type_of(rr->type), NETDB_SUCCESS,
                             rr->data);
      else
        SPF_dns_zone_add_str(z, rr->name, type_of(rr->type), TRY_AGAIN, NULL);
    }
    srv[i] = SPF_server_new_dns(z, 0);
    SPF_response_t *err = NULL;
    SPF_server_set_explanation(srv[i], "DEFAULT", &err);
    if (err)
      SPF_response_free(err);
  }
  size_t matched = 0;
  for (size_t i = 0; i < s.nsc; i++)
    for (size_t k = 0; k < s.sc[i].nt; k++) {
      const char *res = eval(srv[i], &s.sc[i].t[k]);
      if (flat_accepts(s.sc[i].t[k].results, res))
        matched++;
      else if (verbose)
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
          (void)eval(srv[i], &s.sc[i].t[k]);
      n += s.ntests;
      dt = cpu_s() - t0;
    } while (dt < min_s);
    rate[r] = (double)n / dt;
  }
  double med = flat_median(rate, repeat);
  printf("RESULT libspf2_evals_per_s %.0f\n", med);
  printf("RESULT libspf2_matched %zu/%zu\n", matched, s.ntests);
  fprintf(stderr,
          "libspf2 %d.%d.%d (zone DNS layer): %.0f evaluations/s (median of "
          "%d), %zu/%zu results accepted by the suite\n",
          SPF_LIB_VERSION_MAJOR, SPF_LIB_VERSION_MINOR, SPF_LIB_VERSION_PATCH,
          med, repeat, matched, s.ntests);
  for (size_t i = 0; i < s.nsc; i++) {
    SPF_server_free(srv[i]);
    SPF_dns_free(zones[i]);
  }
  free(srv);
  free(zones);
  free(rate);
  return 0;
}
