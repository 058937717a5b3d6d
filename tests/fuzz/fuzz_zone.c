/* SPDX-License-Identifier: MIT */
/*
 * fuzz_zone.c: libFuzzer target for the RFC 1035 master-file parser of the
 * static resolver, mxgw_resolver_load_zone() (public API only).
 *
 * Input: the whole input is the zone text (arbitrary bytes: NULs, controls,
 * non-ASCII, CR, no final newline), so the seeds are plain zone files. An
 * FNV-1a hash of the input picks the rest, so a given input always runs the
 * same way: the initial origin (NULL, "fuzz.test" or "Example.ORG.") and,
 * for one input in eight, a failing allocator (allocation 1 + h % 256 fails,
 * and with another hash bit every later one too) for the load.
 *
 * Invariants (each a __builtin_trap()):
 *   - the load returns MXGW_OK, MXGW_E_SYNTAX or MXGW_E_NOMEM (the codes the
 *     header documents; the origin is always valid), and MXGW_E_NOMEM only
 *     with the failing allocator;
 *   - after an error mxgw_resolver_errmsg() is non-empty; after
 *     MXGW_E_SYNTAX it reads "line N: detail" with 1 <= N <= the number of
 *     lines of the input and a non-empty detail (header and docs/spf.md:
 *     "an error names the line");
 *   - a file loads whole or not at all: after an error (MXGW_E_SYNTAX or
 *     MXGW_E_NOMEM) the fresh resolver holds nothing, every query below
 *     gives NXDOMAIN;
 *   - determinism: the same text loaded into another fresh resolver with
 *     the plain allocator gives the same result, and the same message after
 *     a syntax error; a load that succeeded under the failing allocator
 *     succeeds without it, and one that failed with MXGW_E_SYNTAX fails the
 *     same way;
 *   - after a load, queries (A, AAAA, MX, TXT, PTR, CNAME) for up to 8 owner
 *     names taken from the input (the first field of lines that do not start
 *     with white space, '$' or ';', as written and with the initial origin
 *     appended) are accepted or refused with MXGW_E_INVAL, and each accepted
 *     one completes exactly once in mxgw_resolver_process() with OK, NODATA,
 *     NXDOMAIN or SERVFAIL (CNAME chains); an answer comes with OK only, has
 *     count >= 1, a TTL <= 2^31-1, and well-formed records: A 4 octets, AAAA
 *     16, PTR/CNAME a name of 1..253 octets, MX a name of 0..253 octets (0:
 *     null MX) with a preference 0..65535, names without NUL and without a
 *     final dot; the preference of non-MX records is 0; record `count` is
 *     MXGW_E_RANGE; every data octet is read (ASan checks the bounds).
 * ASan and UBSan catch memory errors and leaks (also on the error paths).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mxgw/mxgw.h>

#include "failmem.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      __builtin_trap();                                                        \
  } while (0)

/* ---- answers ----------------------------------------------------------- */

typedef struct qstate {
  int type;
  int calls;
  int status;
  bool expect_nx; /* the resolver should be empty */
} qstate;

static void check_name(const char *p, size_t n, size_t min) {
  CHECK(n >= min && n <= 253);
  CHECK(n == 0 || p != NULL);
  for (size_t i = 0; i < n; i++)
    CHECK(p[i] != '\0');
  CHECK(n == 0 || p[n - 1] != '.');
}

static void on_answer(void *arg, int status, const mxgw_dns_answer *ans) {
  qstate *q = arg;
  q->calls++;
  q->status = status;
  CHECK(status == MXGW_DNS_OK || status == MXGW_DNS_NODATA ||
        status == MXGW_DNS_NXDOMAIN || status == MXGW_DNS_SERVFAIL);
  if (q->expect_nx)
    CHECK(status == MXGW_DNS_NXDOMAIN);
  CHECK((status == MXGW_DNS_OK) == (ans != NULL));
  if (!ans)
    return;
  size_t n = mxgw_dns_answer_count(ans);
  CHECK(n >= 1);
  CHECK(mxgw_dns_answer_ttl(ans) <= 0x7fffffffu);
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p = NULL;
    size_t len = (size_t)-1;
    CHECK(mxgw_dns_answer_data(ans, i, &p, &len) == MXGW_OK);
    int pref = mxgw_dns_answer_pref(ans, i);
    switch (q->type) {
    case MXGW_DNS_A:
      CHECK(len == 4 && p);
      break;
    case MXGW_DNS_AAAA:
      CHECK(len == 16 && p);
      break;
    case MXGW_DNS_MX:
      check_name(p, len, 0);
      CHECK(pref >= 0 && pref <= 65535);
      break;
    case MXGW_DNS_PTR:
    case MXGW_DNS_CNAME:
      check_name(p, len, 1);
      break;
    case MXGW_DNS_TXT:
      CHECK(len == 0 || p);
      break;
    default:
      CHECK(0);
    }
    if (q->type != MXGW_DNS_MX)
      CHECK(pref == 0);
    for (size_t k = 0; k < len; k++)
      sum += (unsigned char)p[k];
  }
  const char *p;
  size_t len;
  CHECK(mxgw_dns_answer_data(ans, n, &p, &len) == MXGW_E_RANGE);
  (void)sum;
}

/* ---- owner names from the input ---------------------------------------- */

#define MAX_OWNERS 8
#define MAX_NAME 300

static int owners(const char *t, size_t n, char out[][MAX_NAME]) {
  int k = 0;
  size_t i = 0;
  while (i < n && k < MAX_OWNERS) {
    size_t e = i;
    while (e < n && t[e] != '\n')
      e++;
    char c = t[i];
    if (e > i && c != ' ' && c != '\t' && c != ';' && c != '$' && c != '(' &&
        c != '\r') {
      size_t j = i;
      while (j < e && j - i < MAX_NAME - 1 && t[j] != ' ' && t[j] != '\t' &&
             t[j] != ';' && t[j] != '(' && t[j] != ')' && t[j] != '"' &&
             t[j] != '\r' && t[j] != '\0')
        j++;
      if (j > i) {
        memcpy(out[k], t + i, j - i);
        out[k][j - i] = '\0';
        k++;
      }
    }
    i = e + 1;
  }
  return k;
}

static const int qtypes[] = {MXGW_DNS_A,   MXGW_DNS_AAAA, MXGW_DNS_MX,
                             MXGW_DNS_TXT, MXGW_DNS_PTR,  MXGW_DNS_CNAME};
#define NQT (sizeof qtypes / sizeof qtypes[0])

static void query_all(mxgw_resolver *r, char names[][MAX_NAME], int nn,
                      const char *origin, bool expect_nx) {
  qstate qs[2 * MAX_OWNERS * NQT];
  int nq = 0;
  for (int i = 0; i < nn; i++) {
    for (int v = 0; v < 2; v++) {
      char name[2 * MAX_NAME];
      if (v == 0)
        snprintf(name, sizeof name, "%s", names[i]);
      else if (origin && names[i][0] && names[i][strlen(names[i]) - 1] != '.')
        snprintf(name, sizeof name, "%s.%s", names[i], origin);
      else
        continue;
      for (size_t t = 0; t < NQT; t++) {
        qstate *q = &qs[nq];
        memset(q, 0, sizeof *q);
        q->type = qtypes[t];
        q->expect_nx = expect_nx;
        int rv = mxgw_resolver_query(r, name, q->type, on_answer, q, NULL);
        CHECK(rv == MXGW_OK || rv == MXGW_E_INVAL);
        if (rv == MXGW_OK)
          nq++;
        else
          CHECK(mxgw_resolver_errmsg(r)[0] != '\0');
      }
    }
  }
  CHECK(mxgw_resolver_pending(r) == (size_t)nq);
  CHECK(mxgw_resolver_process(r, -1, 0) == nq);
  CHECK(mxgw_resolver_pending(r) == 0);
  for (int i = 0; i < nq; i++)
    CHECK(qs[i].calls == 1);
}

/* "line N: detail" with 1 <= N <= lines */
static void check_syntax_msg(const char *m, size_t lines) {
  CHECK(strncmp(m, "line ", 5) == 0);
  m += 5;
  CHECK(*m >= '1' && *m <= '9');
  size_t v = 0;
  while (*m >= '0' && *m <= '9') {
    v = v * 10 + (size_t)(*m - '0');
    CHECK(v <= lines);
    m++;
  }
  CHECK(v >= 1);
  CHECK(m[0] == ':' && m[1] == ' ' && m[2] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536)
    return 0;
  const char *text = (const char *)data;
  uint32_t h = 2166136261u;
  size_t lines = 1;
  for (size_t i = 0; i < size; i++) {
    h = (h ^ data[i]) * 16777619u;
    if (data[i] == '\n')
      lines++;
  }
  static const char *const origins[] = {NULL, "fuzz.test", "Example.ORG."};
  const char *origin = origins[(h >> 8) % 3];
  failmem fm = {0};
  if ((h >> 12) % 8 == 0) {
    fm.fail_at = 1 + (h >> 16) % 256;
    fm.sticky = (h >> 24) & 1;
  }
  mxgw_mem mem = failmem_mem(&fm);

  mxgw_resolver *r = NULL;
  int rv = mxgw_resolver_new_static(&r, &mem);
  if (rv == MXGW_E_NOMEM) {
    CHECK(fm.fail_at && r == NULL);
    return 0;
  }
  CHECK(rv == MXGW_OK && r);
  rv = mxgw_resolver_load_zone(r, text, size, origin);
  CHECK(rv == MXGW_OK || rv == MXGW_E_SYNTAX || rv == MXGW_E_NOMEM);
  if (rv == MXGW_E_NOMEM)
    CHECK(fm.fail_at != 0);
  const char *msg = mxgw_resolver_errmsg(r);
  CHECK(msg != NULL);
  if (rv != MXGW_OK)
    CHECK(msg[0] != '\0');
  if (rv == MXGW_E_SYNTAX)
    check_syntax_msg(msg, lines);
  char saved[256];
  snprintf(saved, sizeof saved, "%s", msg);
  int first = rv;

  /* the queries run with the plain allocator */
  bool failing = fm.fail_at != 0;
  fm.fail_at = 0;
  char names[MAX_OWNERS][MAX_NAME];
  int nn = owners(text, size, names);
  query_all(r, names, nn, origin, rv != MXGW_OK);
  mxgw_resolver_free(r);

  /* the same text again, without failures */
  if (failing || first != MXGW_OK) {
    mxgw_resolver *r2 = NULL;
    CHECK(mxgw_resolver_new_static(&r2, NULL) == MXGW_OK);
    rv = mxgw_resolver_load_zone(r2, text, size, origin);
    if (first == MXGW_E_NOMEM)
      CHECK(rv == MXGW_OK || rv == MXGW_E_SYNTAX);
    else
      CHECK(rv == first);
    if (first == MXGW_E_SYNTAX)
      CHECK(strcmp(saved, mxgw_resolver_errmsg(r2)) == 0);
    if (first == MXGW_E_NOMEM && rv == MXGW_OK)
      query_all(r2, names, nn, origin, false);
    mxgw_resolver_free(r2);
  }
  return 0;
}
