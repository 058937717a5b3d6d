/* SPDX-License-Identifier: MIT */
/*
 * fuzz_spf_macro.c: libFuzzer target for SPF macro expansion (RFC 7208 7).
 * After a one-byte header the input is split at NUL bytes into up to four
 * fields: the macro string, the sender's local part, the sender's domain,
 * the HELO name (missing fields are empty). The string is syntax-checked
 * and expanded (white box) as a domain-spec and as explanation text with
 * those values, and with header bit 7 also evaluated end to end as the
 * exp= text of a failing record, for the sender and HELO given. Invariants
 * (each a __builtin_trap()): the syntax check and the expander agree on
 * validity; a domain expansion is at most 253 octets or has no dot at all,
 * and never grows past a few kilobytes however many macros there are; an
 * explanation is at most SPF_EXP_MAX octets; the evaluation finishes with
 * fail and an explanation of at most SPF_EXP_MAX octets (or refuses
 * arguments it documents as invalid).
 *
 * Header byte: bit 0 an IPv6 client, bit 1 a validated %{p} name that is
 * long, bits 2-3 the receiver, bit 7 also evaluate end to end.
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

static void setv(spf_macro_env *e, char l, const char *v, size_t n) {
  e->v[l - 'a'] = v;
  e->n[l - 'a'] = n;
}

static void expand_one(const spf_macro_env *env, const char *s, size_t n,
                       int flags) {
  mxgw_mem m;
  mxgw__mem_init(&m, NULL);
  mxgw_buf out = {0};
  const char *err = NULL;
  int ok = mxgw__spf_macro_check(s, n, flags, NULL, NULL, &err) == 0;
  int rv = mxgw__spf_expand(&out, &m, env, s, n, flags, &err);
  CHECK(rv == 0 || rv == -1);
  CHECK(ok == (rv == 0));
  if (rv == 0) {
    size_t len = mxgw__buf_size(&out);
    CHECK(mxgw__buf_ptr(&out)[len] == '\0');
    if (flags & SPF_M_DOMAIN) {
      CHECK(len <= 253 || !memchr(mxgw__buf_ptr(&out), '.', len));
      CHECK(out.cap <= 64 * 1024);
    } else {
      CHECK(len <= SPF_EXP_MAX);
    }
  }
  mxgw__buf_free(&out, &m);
}

/* Evaluate "v=spf1 -all exp=e.m.test" with the string as e.m.test's TXT. */
static void end_to_end(const uint8_t *s, size_t n, const char *local,
                       const char *domain, const char *helo, int v6) {
  char *z = malloc(n * 4 + (n / 255 + 1) * 3 + 256);
  size_t k = (size_t)sprintf(z, "m.test. TXT \"v=spf1 -all exp=e.m.test\"\n"
                                "1.2.0.192.in-addr.arpa. PTR host.m.test.\n"
                                "host.m.test. A 192.0.2.1\n"
                                "e.m.test. TXT");
  size_t i = 0;
  do {
    size_t chunk = n - i > 255 ? 255 : n - i;
    k += (size_t)sprintf(z + k, " \"");
    for (size_t j = i; j < i + chunk; j++) {
      if (s[j] >= 0x20 && s[j] < 0x7f && s[j] != '"' && s[j] != '\\')
        z[k++] = (char)s[j];
      else
        k += (size_t)sprintf(z + k, "\\%03u", s[j]);
    }
    z[k++] = '"';
    i += chunk;
  } while (i < n);
  z[k++] = '\n';
  mxgw_resolver *r;
  mxgw_spf *spf;
  CHECK(mxgw_resolver_new_static(&r, NULL) == MXGW_OK);
  CHECK(mxgw_resolver_load_zone(r, z, k, NULL) == MXGW_OK);
  free(z);
  CHECK(mxgw_spf_new(&spf, r, NULL) == MXGW_OK);
  char from[2200];
  snprintf(from, sizeof from, "%s@m.test", local);
  (void)domain;
  mxgw_spf_check *c = NULL;
  int rv = mxgw_spf_check_sync(spf, v6 ? "2001:db8::1" : "192.0.2.1", helo,
                               from, MXGW_SPF_ID_MAILFROM, &c);
  if (rv == MXGW_OK) {
    CHECK(mxgw_spf_check_result(c) == MXGW_SPF_FAIL);
    const char *p;
    size_t pn;
    CHECK(mxgw_spf_check_get_str(c, MXGW_SPF_INFO_EXPLANATION, &p, &pn) == 0);
    CHECK(pn <= SPF_EXP_MAX);
    int code;
    const char *enh;
    CHECK(mxgw_spf_check_reply(c, 0, &code, &enh, &p, &pn) == MXGW_OK);
    CHECK(code == 550 && pn <= 400);
    mxgw_spf_check_free(c);
  } else {
    CHECK(rv == MXGW_E_INVAL); /* control characters, or too long */
  }
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 4096)
    return 0;
  uint8_t h = data[0];
  const uint8_t *f[4] = {NULL, NULL, NULL, NULL};
  size_t fl[4] = {0, 0, 0, 0};
  size_t pos = 1;
  for (int i = 0; i < 4 && pos <= size; i++) {
    const uint8_t *end = i < 3 ? memchr(data + pos, 0, size - pos) : NULL;
    size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
    f[i] = data + pos;
    fl[i] = len;
    pos += len + 1;
  }
  char *local = calloc(1, fl[1] + 1), *domain = calloc(1, fl[2] + 1),
       *helo = calloc(1, fl[3] + 1);
  if (fl[1])
    memcpy(local, f[1], fl[1]);
  if (fl[2])
    memcpy(domain, f[2], fl[2]);
  if (fl[3])
    memcpy(helo, f[3], fl[3]);
  char *sender = malloc(fl[1] + fl[2] + 2);
  memcpy(sender, local, fl[1]);
  sender[fl[1]] = '@';
  memcpy(sender + fl[1] + 1, domain, fl[2] + 1);
  spf_macro_env env;
  memset(&env, 0, sizeof env);
  setv(&env, 's', sender, fl[1] + fl[2] + 1);
  setv(&env, 'l', local, fl[1]);
  setv(&env, 'o', domain, fl[2]);
  setv(&env, 'd', domain, fl[2]);
  setv(&env, 'h', helo, fl[3]);
  if (h & 1) {
    static const char i6[] =
        "2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1";
    setv(&env, 'i', i6, sizeof i6 - 1);
    setv(&env, 'c', "2001:db8::1", 11);
    setv(&env, 'v', "ip6", 3);
  } else {
    setv(&env, 'i', "192.0.2.1", 9);
    setv(&env, 'c', "192.0.2.1", 9);
    setv(&env, 'v', "in-addr", 7);
  }
  static char longp[254];
  if (!longp[0]) {
    for (int i = 0; i < 253; i++)
      longp[i] = (i % 50 == 49) ? '.' : (char)('a' + i % 26);
  }
  if (h & 2)
    setv(&env, 'p', longp, 253);
  else
    setv(&env, 'p', "mx.example.org", 14);
  static const char *const recv[] = {"unknown", "mx.example.net", "", "r-%.x"};
  setv(&env, 'r', recv[(h >> 2) & 3], strlen(recv[(h >> 2) & 3]));
  setv(&env, 't', "1700000000", 10);

  const char *s = (const char *)f[0];
  expand_one(&env, s ? s : "", fl[0], SPF_M_DOMAIN);
  expand_one(&env, s ? s : "", fl[0], SPF_M_EXP);
  if (h & 0x80)
    end_to_end(f[0] ? f[0] : (const uint8_t *)"", fl[0], local, domain, helo,
               h & 1);
  free(sender);
  free(local);
  free(domain);
  free(helo);
  return 0;
}
