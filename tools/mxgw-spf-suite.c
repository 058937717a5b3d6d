/* SPDX-License-Identifier: MIT */
/*
 * mxgw-spf-suite: run an SPF test suite in the published openspf YAML
 * format (rfc7208-tests.yml and its relatives) against libmxgw's evaluator
 * on the static resolver. Each YAML document is a scenario: its zonedata is
 * turned into an RFC 1035 master file and loaded into a fresh static
 * resolver (SPF-type records are never used for SPF, RFC 7208 3.1; as the
 * suite's drivers do, they stand in for TXT records of a name that lists
 * no TXT record; "TIMEOUT" makes the types not listed before it time out),
 * then every test is evaluated: host is the client address, mailfrom and
 * helo the identities. A test passes when the result is one of those it
 * lists and, if it gives one, the explanation is exactly the same (the
 * default explanation is set to "DEFAULT", as the suite expects).
 *
 * Prints one line per failed test and ends with "N passed, N failed";
 * exits 0 only when nothing failed. --repeat N then evaluates the whole
 * suite N more times and reports evaluations per second.
 *
 * Usage: mxgw-spf-suite [-v] [--show] [--no-trace] [--repeat N] [--only TEST]
 *        FILE.yml
 * (-v: traces of failed tests, -v -v: of all tests and the zone files;
 * --show: one line per test)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include <mxgw/mxgw.h>

typedef struct test {
  char *name, *ip, *helo, *mailfrom, *explanation;
  int identity;
  int results[8];
  int nresults;
} test;

typedef struct scenario {
  char *name;
  mxgw_resolver *r;
  mxgw_spf *spf;
  char *error; /* the zone could not be loaded */
  test *tests;
  size_t ntests;
} scenario;

static int verbose, trace = 1, show;

/* ---- small helpers ---------------------------------------------------- */

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "mxgw-spf-suite: out of memory\n");
    exit(2);
  }
  return q;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = xrealloc(NULL, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* ---- YAML access -------------------------------------------------------- */

static yaml_node_t *node(yaml_document_t *d, int i) {
  return yaml_document_get_node(d, i);
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *m, const char *k) {
  if (!m || m->type != YAML_MAPPING_NODE)
    return NULL;
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
       p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = node(d, p->key);
    if (kn && kn->type == YAML_SCALAR_NODE &&
        kn->data.scalar.length == strlen(k) &&
        memcmp(kn->data.scalar.value, k, strlen(k)) == 0)
      return node(d, p->value);
  }
  return NULL;
}

static int is_scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE;
}

static char *scalar_dup(const yaml_node_t *n) {
  if (!is_scalar(n))
    return NULL;
  return xstrndup((const char *)n->data.scalar.value, n->data.scalar.length);
}

static int scalar_is(const yaml_node_t *n, const char *s) {
  return is_scalar(n) && n->data.scalar.length == strlen(s) &&
         memcmp(n->data.scalar.value, s, strlen(s)) == 0;
}

/* ---- zone data ---------------------------------------------------------- */

/* A name in master-file syntax: every octet outside LDH as \DDD. */
static void zone_name(sbuf *z, const char *s, size_t n) {
  if (n && s[n - 1] == '.')
    n--;
  if (n == 0) {
    sb_str(z, ".");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.') {
      sb_put(z, (const char *)&c, 1);
    } else {
      char e[8];
      snprintf(e, sizeof e, "\\%03u", c);
      sb_str(z, e);
    }
  }
  sb_str(z, ".");
}

/* One character-string (or several, when longer than 255 octets). */
static void zone_txt_string(sbuf *z, const char *s, size_t n) {
  size_t i = 0;
  do {
    size_t chunk = n - i > 255 ? 255 : n - i;
    sb_str(z, " \"");
    for (size_t k = i; k < i + chunk; k++) {
      unsigned char c = (unsigned char)s[k];
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
        sb_put(z, (const char *)&c, 1);
      } else {
        char e[8];
        snprintf(e, sizeof e, "\\%03u", c);
        sb_str(z, e);
      }
    }
    sb_str(z, "\"");
    i += chunk;
  } while (i < n);
}

static void zone_txt(sbuf *z, yaml_document_t *d, yaml_node_t *v) {
  if (is_scalar(v)) {
    zone_txt_string(z, (const char *)v->data.scalar.value, v->data.scalar.length);
    return;
  }
  int any = 0;
  if (v && v->type == YAML_SEQUENCE_NODE)
    for (yaml_node_item_t *it = v->data.sequence.items.start;
         it < v->data.sequence.items.top; it++) {
      yaml_node_t *s = node(d, *it);
      if (is_scalar(s)) {
        zone_txt_string(z, (const char *)s->data.scalar.value,
                        s->data.scalar.length);
        any = 1;
      }
    }
  if (!any) /* a TXT record without strings: as one empty string */
    sb_str(z, " \"\"");
}

enum { TY_A, TY_AAAA, TY_MX, TY_TXT, TY_PTR, TY_CNAME, TY_SPF, TY_N };
static const char *const ty_names[TY_N] = {"A",   "AAAA",  "MX", "TXT",
                                           "PTR", "CNAME", "SPF"};
static const int ty_dns[TY_N] = {MXGW_DNS_A,   MXGW_DNS_AAAA,  MXGW_DNS_MX,
                                 MXGW_DNS_TXT, MXGW_DNS_PTR,   MXGW_DNS_CNAME,
                                 0};

typedef struct entry {
  int type;        /* TY_*, or -1 for a bare TIMEOUT */
  yaml_node_t *v;  /* value */
} entry;

static int ty_of(const yaml_node_t *k) {
  for (int i = 0; i < TY_N; i++)
    if (scalar_is(k, ty_names[i]))
      return i;
  return -2;
}

/*
 * The records of one name. The entries are taken in order; generated TXT
 * records (from SPF entries, when the name lists no TXT entry at all, as the
 * suite's drivers do) come last. A bare TIMEOUT makes every type not seen
 * before it time out, and ends the list.
 */
static void zone_owner(sbuf *z, mxgw_resolver *r, yaml_document_t *d,
                       const char *name, size_t nlen, yaml_node_t *list,
                       char **err) {
  entry *e = NULL;
  size_t ne = 0;
  int has_txt = 0;
  if (!list || list->type != YAML_SEQUENCE_NODE)
    return;
  for (yaml_node_item_t *it = list->data.sequence.items.start;
       it < list->data.sequence.items.top; it++) {
    yaml_node_t *m = node(d, *it);
    if (scalar_is(m, "TIMEOUT")) {
      e = xrealloc(e, (ne + 1) * sizeof *e);
      e[ne].type = -1;
      e[ne++].v = NULL;
      continue;
    }
    if (!m || m->type != YAML_MAPPING_NODE)
      continue;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
         p < m->data.mapping.pairs.top; p++) {
      int t = ty_of(node(d, p->key));
      if (t < 0)
        continue; /* a type this driver does not know */
      if (t == TY_TXT)
        has_txt = 1;
      e = xrealloc(e, (ne + 1) * sizeof *e);
      e[ne].type = t;
      e[ne++].v = node(d, p->value);
    }
  }
  if (!has_txt) {
    size_t n0 = ne;
    for (size_t i = 0; i < n0; i++)
      if (e[i].type == TY_SPF && !scalar_is(e[i].v, "NONE")) {
        e = xrealloc(e, (ne + 1) * sizeof *e);
        e[ne].type = TY_TXT;
        e[ne++].v = e[i].v;
      }
  }
  int seen[TY_N] = {0};
  char owner[1024];
  for (size_t i = 0; i < ne; i++) {
    int t = e[i].type;
    if (t == -1) {
      for (int k = 0; k < TY_N; k++) {
        if (seen[k] || !ty_dns[k])
          continue;
        snprintf(owner, sizeof owner, "%.*s", (int)nlen, name);
        if (mxgw_resolver_add_record(r, owner, ty_dns[k], 0, NULL,
                                     MXGW_DNS_TIMEOUT) && !*err) {
          size_t l = strlen(mxgw_resolver_errmsg(r));
          *err = xstrndup(mxgw_resolver_errmsg(r), l);
        }
      }
      break;
    }
    seen[t] = 1;
    yaml_node_t *v = e[i].v;
    if (t == TY_SPF || scalar_is(v, "NONE"))
      continue;
    if (scalar_is(v, "TIMEOUT")) {
      snprintf(owner, sizeof owner, "%.*s", (int)nlen, name);
      mxgw_resolver_add_record(r, owner, ty_dns[t], 0, NULL, MXGW_DNS_TIMEOUT);
      continue;
    }
    zone_name(z, name, nlen);
    sb_str(z, " 3600 IN ");
    sb_str(z, ty_names[t]);
    switch (t) {
    case TY_TXT:
      zone_txt(z, d, v);
      break;
    case TY_MX: {
      yaml_node_t *pref = NULL, *host = NULL;
      if (v && v->type == YAML_SEQUENCE_NODE &&
          v->data.sequence.items.top - v->data.sequence.items.start == 2) {
        pref = node(d, v->data.sequence.items.start[0]);
        host = node(d, v->data.sequence.items.start[1]);
      }
      if (!is_scalar(pref) || !is_scalar(host)) {
        if (!*err)
          *err = xstrndup("MX value is not [pref, name]", 28);
        sb_str(z, " 0 .\n");
        continue;
      }
      sb_str(z, " ");
      sb_put(z, (const char *)pref->data.scalar.value, pref->data.scalar.length);
      sb_str(z, " ");
      zone_name(z, (const char *)host->data.scalar.value,
                host->data.scalar.length);
      break;
    }
    case TY_PTR:
    case TY_CNAME:
      sb_str(z, " ");
      if (is_scalar(v))
        zone_name(z, (const char *)v->data.scalar.value, v->data.scalar.length);
      break;
    default: /* A, AAAA */
      sb_str(z, " ");
      if (is_scalar(v))
        sb_put(z, (const char *)v->data.scalar.value, v->data.scalar.length);
      break;
    }
    sb_str(z, "\n");
  }
  free(e);
}

/* ---- loading ------------------------------------------------------------- */

static int result_of(const char *s, size_t n) {
  static const struct {
    const char *name;
    int r;
  } map[] = {{"none", MXGW_SPF_NONE},           {"neutral", MXGW_SPF_NEUTRAL},
             {"pass", MXGW_SPF_PASS},           {"fail", MXGW_SPF_FAIL},
             {"softfail", MXGW_SPF_SOFTFAIL},   {"temperror", MXGW_SPF_TEMPERROR},
             {"permerror", MXGW_SPF_PERMERROR}, {"error", MXGW_SPF_TEMPERROR},
             {"unknown", MXGW_SPF_PERMERROR}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strlen(map[i].name) == n && strncmp(map[i].name, s, n) == 0)
      return map[i].r;
  return -1;
}

static void load_test(test *t, yaml_document_t *d, yaml_node_t *k,
                      yaml_node_t *v) {
  memset(t, 0, sizeof *t);
  t->name = scalar_dup(k);
  t->ip = scalar_dup(map_get(d, v, "host"));
  t->helo = scalar_dup(map_get(d, v, "helo"));
  t->mailfrom = scalar_dup(map_get(d, v, "mailfrom"));
  t->explanation = scalar_dup(map_get(d, v, "explanation"));
  t->identity = MXGW_SPF_ID_MAILFROM;
  yaml_node_t *id = map_get(d, v, "identity");
  if (scalar_is(id, "helo"))
    t->identity = MXGW_SPF_ID_HELO;
  yaml_node_t *res = map_get(d, v, "result");
  if (is_scalar(res)) {
    t->results[t->nresults++] = result_of((const char *)res->data.scalar.value,
                                          res->data.scalar.length);
  } else if (res && res->type == YAML_SEQUENCE_NODE) {
    for (yaml_node_item_t *it = res->data.sequence.items.start;
         it < res->data.sequence.items.top && t->nresults < 8; it++) {
      yaml_node_t *s = node(d, *it);
      if (is_scalar(s))
        t->results[t->nresults++] = result_of(
            (const char *)s->data.scalar.value, s->data.scalar.length);
    }
  }
}

static void load_scenario(scenario *s, yaml_document_t *d, int idx) {
  memset(s, 0, sizeof *s);
  yaml_node_t *root = yaml_document_get_root_node(d);
  s->name = scalar_dup(map_get(d, root, "description"));
  if (!s->name) {
    char b[32];
    snprintf(b, sizeof b, "scenario %d", idx);
    s->name = xstrndup(b, strlen(b));
  }
  yaml_node_t *tests = map_get(d, root, "tests");
  if (tests && tests->type == YAML_MAPPING_NODE) {
    size_t n = (size_t)(tests->data.mapping.pairs.top -
                        tests->data.mapping.pairs.start);
    s->tests = xrealloc(NULL, n * sizeof *s->tests);
    for (yaml_node_pair_t *p = tests->data.mapping.pairs.start;
         p < tests->data.mapping.pairs.top; p++)
      load_test(&s->tests[s->ntests++], d, node(d, p->key), node(d, p->value));
  }
  if (mxgw_resolver_new_static(&s->r, NULL) ||
      mxgw_spf_new(&s->spf, s->r, NULL) ||
      mxgw_spf_set_str(s->spf, MXGW_SPF_OPT_DEFAULT_EXPLANATION, "DEFAULT") ||
      mxgw_spf_set_int(s->spf, MXGW_SPF_OPT_TRACE, trace)) {
    fprintf(stderr, "mxgw-spf-suite: cannot set up a resolver\n");
    exit(2);
  }
  sbuf z = {0};
  yaml_node_t *zd = map_get(d, root, "zonedata");
  if (zd && zd->type == YAML_MAPPING_NODE)
    for (yaml_node_pair_t *p = zd->data.mapping.pairs.start;
         p < zd->data.mapping.pairs.top; p++) {
      yaml_node_t *k = node(d, p->key);
      if (!is_scalar(k))
        continue;
      zone_owner(&z, s->r, d, (const char *)k->data.scalar.value,
                 k->data.scalar.length, node(d, p->value), &s->error);
    }
  if (z.n && mxgw_resolver_load_zone(s->r, z.p, z.n, NULL) && !s->error) {
    const char *m = mxgw_resolver_errmsg(s->r);
    s->error = xstrndup(m, strlen(m));
  }
  if (verbose > 1 && z.n)
    fprintf(stderr, "--- zone of %s\n%s", s->name, z.p);
  free(z.p);
}

/* ---- running ------------------------------------------------------------- */

static void print_results(const test *t) {
  for (int i = 0; i < t->nresults; i++)
    printf("%s%s", i ? "|" : "", mxgw_spf_result_name(t->results[i]));
}

static int run_test(const scenario *s, const test *t, int report) {
  mxgw_spf_check *chk = NULL;
  int rv = mxgw_spf_check_sync(s->spf, t->ip ? t->ip : "", t->helo,
                               t->mailfrom ? t->mailfrom : "", t->identity,
                               &chk);
  if (rv) {
    if (report)
      printf("FAIL %s: %s: cannot evaluate (%s)\n", s->name, t->name,
             mxgw_strerror(rv));
    return 0;
  }
  int res = mxgw_spf_check_result(chk), ok = 0;
  for (int i = 0; i < t->nresults; i++)
    if (t->results[i] == res)
      ok = 1;
  const char *exp = "";
  size_t expn = 0;
  mxgw_spf_check_get_str(chk, MXGW_SPF_INFO_EXPLANATION, &exp, &expn);
  int exp_ok = !t->explanation || (strlen(t->explanation) == expn &&
                                   memcmp(t->explanation, exp, expn) == 0);
  if (report && show) {
    printf("%s %s: %s: %s", ok && exp_ok ? "ok" : "FAIL", s->name, t->name,
           mxgw_spf_result_name(res));
    if (expn)
      printf(" \"%.*s\"", (int)expn, exp);
    printf("\n");
  }
  if (report && (!ok || !exp_ok)) {
    printf("FAIL %s: %s: expected ", s->name, t->name);
    print_results(t);
    printf(", got %s", mxgw_spf_result_name(res));
    if (!exp_ok)
      printf("; explanation expected \"%s\", got \"%.*s\"", t->explanation,
             (int)expn, exp);
    const char *p;
    size_t pn;
    if (mxgw_spf_check_get_str(chk, MXGW_SPF_INFO_PROBLEM, &p, &pn) == 0)
      printf(" (%.*s)", (int)pn, p);
    printf("\n");
  }
  if (report && (verbose > 1 || (verbose && (!ok || !exp_ok)))) {
    const char *p;
    size_t pn, n = mxgw_spf_check_trace_count(chk);
    for (size_t i = 0; i < n; i++) {
      int depth, kind;
      mxgw_spf_check_trace(chk, i, &depth, &kind, &p, &pn);
      printf("    %*s%-6s %.*s\n", depth * 2, "",
             mxgw_spf_trace_kind_name(kind), (int)pn, p);
    }
  }
  mxgw_spf_check_free(chk);
  return ok && exp_ok;
}

static double clock_s(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
  fprintf(stderr, "usage: mxgw-spf-suite [-v] [--show] [--no-trace] "
                  "[--repeat N] [--only TEST] FILE.yml\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *file = NULL, *only = NULL;
  long repeat = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-v") == 0)
      verbose++;
    else if (strcmp(argv[i], "--show") == 0)
      show = 1;
    else if (strcmp(argv[i], "--no-trace") == 0)
      trace = 0;
    else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
      repeat = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      only = argv[++i];
    else if (argv[i][0] == '-' || file)
      usage();
    else
      file = argv[i];
  }
  if (!file)
    usage();
  FILE *f = fopen(file, "rb");
  if (!f) {
    perror(file);
    return 2;
  }
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  scenario *sc = NULL;
  size_t nsc = 0;
  for (;;) {
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
      fprintf(stderr, "%s:%zu: YAML error: %s\n", file,
              parser.problem_mark.line + 1,
              parser.problem ? parser.problem : "?");
      return 2;
    }
    if (!yaml_document_get_root_node(&doc)) {
      yaml_document_delete(&doc);
      break;
    }
    sc = xrealloc(sc, (nsc + 1) * sizeof *sc);
    load_scenario(&sc[nsc], &doc, (int)nsc + 1);
    nsc++;
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);
  fclose(f);

  long passed = 0, failed = 0;
  for (size_t i = 0; i < nsc; i++) {
    scenario *s = &sc[i];
    for (size_t k = 0; k < s->ntests; k++) {
      test *t = &s->tests[k];
      if (only && strcmp(only, t->name) != 0)
        continue;
      if (s->error) {
        printf("FAIL %s: %s: zone data not loaded: %s\n", s->name, t->name,
               s->error);
        failed++;
        continue;
      }
      if (run_test(s, t, 1))
        passed++;
      else
        failed++;
    }
  }
  if (repeat > 0) {
    long evals = 0;
    double t0 = clock_s(CLOCK_MONOTONIC);
    double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (long r = 0; r < repeat; r++)
      for (size_t i = 0; i < nsc; i++)
        for (size_t k = 0; k < sc[i].ntests; k++) {
          if (sc[i].error || (only && strcmp(only, sc[i].tests[k].name)))
            continue;
          run_test(&sc[i], &sc[i].tests[k], 0);
          evals++;
        }
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    double ct = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    fprintf(stderr,
            "%ld evaluations in %.3f s: %.0f evaluations/s (%.0f per CPU "
            "second)%s\n",
            evals, dt, dt > 0 ? (double)evals / dt : 0.0,
            ct > 0 ? (double)evals / ct : 0.0, trace ? "" : ", no trace");
  }
  for (size_t i = 0; i < nsc; i++) {
    scenario *s = &sc[i];
    for (size_t k = 0; k < s->ntests; k++) {
      test *t = &s->tests[k];
      free(t->name);
      free(t->ip);
      free(t->helo);
      free(t->mailfrom);
      free(t->explanation);
    }
    free(s->tests);
    free(s->name);
    free(s->error);
    mxgw_spf_free(s->spf);
    mxgw_resolver_free(s->r);
  }
  free(sc);
  printf("%ld passed, %ld failed\n", passed, failed);
  return failed ? 1 : 0;
}
