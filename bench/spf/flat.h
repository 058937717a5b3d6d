/* SPDX-License-Identifier: MIT */
/*
 * flat.h: reader of the flat suite files that suite_flat.py writes from an
 * SPF test suite in YAML (scenarios: zone records, names whose queries time
 * out, tests with HELO, client IP, MAIL FROM and the accepted results).
 * Header-only, shared by the libmxgw and the libspf2 benchmark programs so
 * that both read exactly the same scenarios.
 */
#ifndef MXGW_BENCH_FLAT_H
#define MXGW_BENCH_FLAT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct flat_rr {
  char *name, *type, *data; /* data NULL: queries of this type time out */
  size_t dlen;              /* data may hold NUL bytes (the suite has one) */
} flat_rr;

typedef struct flat_test {
  char *id, *helo, *ip, *mailfrom, *results; /* results: "pass,fail" */
} flat_test;

typedef struct flat_scenario {
  flat_rr *rr;
  size_t nrr;
  flat_test *t;
  size_t nt;
} flat_scenario;

typedef struct flat_suite {
  flat_scenario *sc;
  size_t nsc;
  size_t ntests;
} flat_suite;

static inline void *flat_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    fprintf(stderr, "out of memory\n");
    exit(70);
  }
  return q;
}

static inline int flat_hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decode a hex field into a new NUL-terminated string. */
static inline char *flat_unhex_n(const char *s, size_t *len) {
  size_t n = strlen(s) / 2;
  if (len)
    *len = n;
  char *o = flat_xrealloc(NULL, n + 1);
  for (size_t i = 0; i < n; i++)
    o[i] = (char)(flat_hexval(s[2 * i]) * 16 + flat_hexval(s[2 * i + 1]));
  o[n] = 0;
  return o;
}

static inline char *flat_unhex(const char *s) { return flat_unhex_n(s, NULL); }

static inline char *flat_dup(const char *s) {
  size_t n = strlen(s);
  char *o = flat_xrealloc(NULL, n + 1);
  memcpy(o, s, n + 1);
  return o;
}

/* Split line at tabs into at most max fields (the line is modified). */
static inline int flat_split(char *line, char **f, int max) {
  int n = 0;
  f[n++] = line;
  for (char *p = line; *p && n < max; p++) {
    if (*p == '\t') {
      *p = 0;
      f[n++] = p + 1;
    }
  }
  return n;
}

static inline int flat_load(const char *path, flat_suite *s) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  memset(s, 0, sizeof *s);
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) > 0) {
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    char *fl[8];
    int nf = flat_split(line, fl, 8);
    if (fl[0][0] == 'S') {
      s->sc = flat_xrealloc(s->sc, (s->nsc + 1) * sizeof *s->sc);
      memset(&s->sc[s->nsc], 0, sizeof s->sc[0]);
      s->nsc++;
    } else if (s->nsc && (fl[0][0] == 'Z' || fl[0][0] == 'X') && nf >= 3) {
      flat_scenario *c = &s->sc[s->nsc - 1];
      c->rr = flat_xrealloc(c->rr, (c->nrr + 1) * sizeof *c->rr);
      c->rr[c->nrr].name = flat_unhex(fl[1]);
      c->rr[c->nrr].type = flat_dup(fl[2]);
      c->rr[c->nrr].data = fl[0][0] == 'Z'
                               ? flat_unhex_n(nf >= 4 ? fl[3] : "",
                                              &c->rr[c->nrr].dlen)
                               : NULL;
      c->nrr++;
    } else if (s->nsc && fl[0][0] == 'T' && nf >= 6) {
      flat_scenario *c = &s->sc[s->nsc - 1];
      c->t = flat_xrealloc(c->t, (c->nt + 1) * sizeof *c->t);
      flat_test *t = &c->t[c->nt++];
      t->id = flat_dup(fl[1]);
      t->helo = flat_unhex(fl[2]);
      t->ip = flat_unhex(fl[3]);
      t->mailfrom = flat_unhex(fl[4]);
      t->results = flat_dup(fl[5]);
      s->ntests++;
    }
  }
  free(line);
  fclose(f);
  return 0;
}

/* Is `res` one of the comma-separated accepted results? */
static inline int flat_accepts(const char *results, const char *res) {
  size_t n = strlen(res);
  for (const char *p = results; *p;) {
    const char *c = strchr(p, ',');
    size_t l = c ? (size_t)(c - p) : strlen(p);
    if (l == n && memcmp(p, res, n) == 0)
      return 1;
    if (!c)
      break;
    p = c + 1;
  }
  return 0;
}

static inline int flat_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median of n values (sorts them). */
static inline double flat_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, flat_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif /* MXGW_BENCH_FLAT_H */
