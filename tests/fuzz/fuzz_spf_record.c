/* SPDX-License-Identifier: MIT */
/*
 * fuzz_spf_record.c: libFuzzer target for the SPF record parser and the
 * evaluator. The input after a one-byte header is an SPF record, arbitrary
 * bytes (NULs, controls, non-ASCII, huge). It is parsed directly (white
 * box), then published as the TXT record of fuzz.test and of inc.fuzz.test
 * in a small static zone (addresses, MX, PTR, a CNAME chain and a CNAME
 * loop, a name that times out and one that fails) and evaluated for a
 * client chosen by the header, so includes, redirects, macros and the
 * limits run against it. Invariants (each a __builtin_trap()): the parser
 * returns 0 or -1 with an error text, and its terms lie inside the record;
 * every evaluation finishes synchronously under mxgw_spf_check_sync() with
 * one of the seven results; counters stay within their limits plus one;
 * the trace is non-empty when on; Received-SPF and Authentication-Results
 * are well-formed header text (CRLF only as folding or at the end); the
 * SMTP reply text is printable ASCII of at most 400 octets; the JSON is
 * produced.
 *
 * Header byte: bits 0-1 the client (192.0.2.1, 2001:db8::1, 203.0.113.9,
 * ::ffff:192.0.2.1), bit 2 HELO identity, bit 3 trace off, bit 4 small
 * limits, bit 5 null sender, bit 6 prefix "v=spf1 " to the record.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mxgw/mxgw.h>

#include "mxgw_spf_int.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      __builtin_trap();                                                        \
  } while (0)

static const char base_zone[] =
    "a.test. A 192.0.2.1\n"
    "a.test. AAAA 2001:db8::1\n"
    "a.test. MX 10 a.test.\n"
    "a.test. MX 20 b.test.\n"
    "a.test. TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
    "b.test. CNAME a.test.\n"
    "loop.test. CNAME loop2.test.\n"
    "loop2.test. CNAME loop.test.\n"
    "void.test. TXT \"not spf\"\n"
    "1.2.0.192.in-addr.arpa. PTR a.test.\n"
    "1.2.0.192.in-addr.arpa. PTR fuzz.test.\n"
    "9.113.0.203.in-addr.arpa. PTR nowhere.test.\n"
    "exp.test. TXT \"%{l} from %{c} is not %{d} %{p} %{r} %{t}\"\n";

/* A TXT record of arbitrary bytes in master-file syntax. */
static void txt(char *z, size_t *k, const char *owner, const uint8_t *d,
                size_t n) {
  *k += (size_t)sprintf(z + *k, "%s TXT", owner);
  size_t i = 0;
  do {
    size_t chunk = n - i > 255 ? 255 : n - i;
    z[(*k)++] = ' ';
    z[(*k)++] = '"';
    for (size_t j = i; j < i + chunk; j++) {
      uint8_t c = d[j];
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
        z[(*k)++] = (char)c;
      else
        *k += (size_t)sprintf(z + *k, "\\%03u", c);
    }
    z[(*k)++] = '"';
    i += chunk;
  } while (i < n);
  z[(*k)++] = '\n';
  z[*k] = '\0';
}

static void check_header(const char *p, size_t n, int folded) {
  CHECK(strlen(p) == n);
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\r') {
      CHECK(folded && i + 1 < n && p[i + 1] == '\n');
      CHECK(i + 2 == n || p[i + 2] == ' ');
      i++;
      continue;
    }
    CHECK(p[i] != '\n');
    CHECK((unsigned char)p[i] >= 0x20 && p[i] != 0x7f);
  }
  if (folded)
    CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 8192)
    return 0;
  uint8_t h = data[0];
  const uint8_t *rec = data + 1;
  size_t rlen = size - 1;
  uint8_t *buf = NULL;
  if (h & 0x40) {
    buf = malloc(rlen + 7);
    memcpy(buf, "v=spf1 ", 7);
    memcpy(buf + 7, rec, rlen);
    rec = buf;
    rlen += 7;
  }

  /* the parser alone */
  {
    mxgw_mem m;
    mxgw__mem_init(&m, NULL);
    spf_arena a;
    memset(&a, 0, sizeof a);
    spf_record r;
    char err[300];
    err[0] = '\0';
    int rv = mxgw__spf_parse(&a, &m, (const char *)rec, rlen, &r, err,
                             sizeof err);
    CHECK(rv == 0 || rv == -1);
    if (rv == -1)
      CHECK(err[0] != '\0');
    else
      for (size_t i = 0; i < r.n; i++) {
        const spf_term *t = &r.terms[i];
        CHECK(t->text >= (const char *)rec &&
              t->text + t->tlen <= (const char *)rec + rlen);
        CHECK(t->tlen > 0);
        if (t->spec)
          CHECK(t->spec >= t->text && t->spec + t->slen <= t->text + t->tlen);
        CHECK(t->cidr4 <= 32 && t->cidr6 <= 128);
      }
    mxgw__spf_arena_free(&a, &m);
  }

  /* evaluation */
  char *z = malloc(sizeof base_zone + 2 * (rlen * 4 + rlen / 255 * 3 + 64));
  size_t k = (size_t)sprintf(z, "%s", base_zone);
  txt(z, &k, "fuzz.test.", rec, rlen);
  txt(z, &k, "inc.fuzz.test.", rec, rlen);
  mxgw_resolver *r = NULL;
  CHECK(mxgw_resolver_new_static(&r, NULL) == MXGW_OK);
  CHECK(mxgw_resolver_load_zone(r, z, k, NULL) == MXGW_OK);
  free(z);
  CHECK(mxgw_resolver_add_record(r, "slow.test", MXGW_DNS_TXT, 0, NULL,
                                 MXGW_DNS_TIMEOUT) == MXGW_OK);
  CHECK(mxgw_resolver_add_record(r, "slow.test", MXGW_DNS_A, 0, NULL,
                                 MXGW_DNS_TIMEOUT) == MXGW_OK);
  CHECK(mxgw_resolver_add_record(r, "fail.test", MXGW_DNS_A, 0, NULL,
                                 MXGW_DNS_SERVFAIL) == MXGW_OK);
  mxgw_spf *spf = NULL;
  CHECK(mxgw_spf_new(&spf, r, NULL) == MXGW_OK);
  CHECK(mxgw_spf_set_str(spf, MXGW_SPF_OPT_RECEIVER, "mx.fuzz.test") == 0);
  if (h & 0x08)
    CHECK(mxgw_spf_set_int(spf, MXGW_SPF_OPT_TRACE, 0) == MXGW_OK);
  int max_terms = 10, max_void = 2;
  if (h & 0x10) {
    max_terms = 3;
    max_void = 0;
    CHECK(mxgw_spf_set_int(spf, MXGW_SPF_OPT_MAX_DNS_TERMS, 3) == MXGW_OK);
    CHECK(mxgw_spf_set_int(spf, MXGW_SPF_OPT_MAX_VOID_LOOKUPS, 0) == MXGW_OK);
    CHECK(mxgw_spf_set_int(spf, MXGW_SPF_OPT_MAX_MX_NAMES, 1) == MXGW_OK);
    CHECK(mxgw_spf_set_int(spf, MXGW_SPF_OPT_MAX_PTR_NAMES, 1) == MXGW_OK);
  }
  static const char *const ips[] = {"192.0.2.1", "2001:db8::1", "203.0.113.9",
                                    "::ffff:192.0.2.1"};
  mxgw_spf_check *c = NULL;
  int rv = mxgw_spf_check_sync(spf, ips[h & 3], "fuzz.test",
                               (h & 0x20) ? "" : "Some.One@fuzz.test",
                               (h & 0x04) ? MXGW_SPF_ID_HELO
                                          : MXGW_SPF_ID_MAILFROM,
                               &c);
  CHECK(rv == MXGW_OK);
  CHECK(mxgw_spf_check_done(c));
  int res = mxgw_spf_check_result(c);
  CHECK(res >= MXGW_SPF_NONE && res <= MXGW_SPF_PERMERROR);
  int64_t v;
  CHECK(mxgw_spf_check_get_int(c, MXGW_SPF_INFO_DNS_TERMS, &v) == 0);
  CHECK(v <= max_terms + 1);
  CHECK(mxgw_spf_check_get_int(c, MXGW_SPF_INFO_VOID_LOOKUPS, &v) == 0);
  CHECK(v <= max_void + 1);
  if (!(h & 0x08))
    CHECK(mxgw_spf_check_trace_count(c) > 0);
  const char *p;
  size_t n;
  if (res == MXGW_SPF_TEMPERROR || res == MXGW_SPF_PERMERROR)
    CHECK(mxgw_spf_check_get_str(c, MXGW_SPF_INFO_PROBLEM, &p, &n) == 0);
  if (res == MXGW_SPF_FAIL)
    CHECK(mxgw_spf_check_get_str(c, MXGW_SPF_INFO_EXPLANATION, &p, &n) == 0 &&
          n <= SPF_EXP_MAX);
  CHECK(mxgw_spf_check_received_spf(c, &p, &n) == MXGW_OK);
  check_header(p, n, 1);
  CHECK(mxgw_spf_check_auth_results(c, NULL, &p, &n) == MXGW_OK);
  check_header(p, n, 0);
  CHECK(mxgw_spf_check_auth_results(c, "mx.fuzz.test", &p, &n) == MXGW_OK);
  check_header(p, n, 1);
  int code;
  const char *enh;
  CHECK(mxgw_spf_check_reply(c, 1, &code, &enh, &p, &n) == MXGW_OK);
  CHECK(n <= 400);
  for (size_t i = 0; i < n; i++)
    CHECK((unsigned char)p[i] >= 0x20 && (unsigned char)p[i] < 0x7f);
  CHECK(mxgw_spf_check_json(c, &p, &n) == MXGW_OK && n > 0);
  mxgw_spf_check_free(c);
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
  free(buf);
  return 0;
}
