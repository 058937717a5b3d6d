/* SPDX-License-Identifier: MIT */
/*
 * test_spf_macro.c: macro expansion (white-box, mxgw_spf_macro.c): the
 * examples of RFC 7208 7.4, URL-encoding of upper-case letters, the
 * escapes %% %_ %-, transformers and delimiters, which letters are allowed
 * where, truncation of long domain names on the left (7.3), and expansion
 * bombs that must stay bounded yet give the same name as a naive
 * expansion would.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mxgw_spf_int.h"

static mxgw_mem mem;
static mxgw_buf out;
static spf_macro_env env;

static void setv(char l, const char *v) {
  env.v[l - 'a'] = v;
  env.n[l - 'a'] = strlen(v);
}

/* RFC 7208 7.4: sender strong-bad@email.example.com, client 192.0.2.3,
 * validated PTR name mx.example.org */
static void setup(void) {
  mxgw__mem_init(&mem, NULL);
  memset(&out, 0, sizeof out);
  memset(&env, 0, sizeof env);
  setv('s', "strong-bad@email.example.com");
  setv('l', "strong-bad");
  setv('o', "email.example.com");
  setv('d', "email.example.com");
  setv('i', "192.0.2.3");
  setv('c', "192.0.2.3");
  setv('p', "mx.example.org");
  setv('v', "in-addr");
  setv('h', "mx.example.org");
  setv('r', "receiver.example.net");
  setv('t', "1234567890");
}
static void teardown(void) { mxgw__buf_free(&out, &mem); }

TestSuite(spf_macro, .init = setup, .fini = teardown);

static const char *expand(const char *s, int flags) {
  const char *err = NULL;
  int rv = mxgw__spf_expand(&out, &mem, &env, s, strlen(s), flags, &err);
  cr_assert_eq(rv, 0, "\"%s\" should expand: %s", s, err ? err : "");
  return mxgw__buf_ptr(&out);
}

static void expect(const char *macro, const char *want) {
  const char *got = expand(macro, SPF_M_DOMAIN);
  cr_assert_str_eq(got, want, "%s", macro);
  cr_assert_eq(mxgw__buf_size(&out), strlen(want));
}

Test(spf_macro, rfc7208_7_4_single_macros) {
  expect("%{s}", "strong-bad@email.example.com");
  expect("%{o}", "email.example.com");
  expect("%{d}", "email.example.com");
  expect("%{d4}", "email.example.com");
  expect("%{d3}", "email.example.com");
  expect("%{d2}", "example.com");
  expect("%{d1}", "com");
  expect("%{dr}", "com.example.email");
  expect("%{d2r}", "example.email");
  expect("%{l}", "strong-bad");
  expect("%{l-}", "strong.bad");
  expect("%{lr}", "strong-bad");
  expect("%{lr-}", "bad.strong");
  expect("%{l1r-}", "strong");
}

Test(spf_macro, rfc7208_7_4_macro_strings) {
  expect("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com");
  expect("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com");
  expect("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
         "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
  expect("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
         "3.2.0.192.in-addr.strong.lp._spf.example.com");
  expect("%{d2}.trusted-domains.example.net",
         "example.com.trusted-domains.example.net");
  expect("%{p}", "mx.example.org");
  expect("%{p2}", "example.org");
}

Test(spf_macro, rfc7208_7_4_ipv6) {
  /* The evaluator gives %{i} of 2001:db8::cb01 as 32 upper-case nibbles
   * (what the openspf suite's v-macro-ip6 test expects in an explanation);
   * the RFC prints them in lower case. DNS names compare without case, so
   * the name queried is the same. */
  setv('i', "2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.C.B.0.1");
  setv('v', "ip6");
  const char *got = expand("%{ir}.%{v}._spf.%{d2}", SPF_M_DOMAIN);
  cr_assert_eq(strcasecmp(got, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
                               "0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"),
               0, "%s", got);
}

Test(spf_macro, escapes) {
  expect("macro%%percent%_%_space%-url-space.example.com",
         "macro%percent  space%20url-space.example.com");
}

Test(spf_macro, upper_case_letters_are_url_encoded) {
  setv('l', "~jack&jill=up-a_b3.c");
  const char *got =
      expand("http://example.com/why.html?l=%{L}", SPF_M_EXP);
  cr_assert_str_eq(got, "http://example.com/why.html?l=~jack%26jill%3Dup-a_b3.c");
  setv('h', "JUMPIN' JUPITER");
  expect("%{H}.example.com", "JUMPIN%27%20JUPITER.example.com");
  setv('h', "[192.168.218.40]");
  expect("%{H}", "%5B192.168.218.40%5D");
  /* transformers apply before encoding */
  setv('l', "a b-c d");
  expect("%{L1r-}", "a%20b");
}

Test(spf_macro, delimiters) {
  setv('l', "philip-gladstone-test");
  expect("%{l2r-}", "gladstone.philip");
  setv('l', "foo-bar+zip+quux");
  expect("%{l2r+-}", "bar.foo");
  expect("%{l+-}", "foo.bar.zip.quux");
  expect("%{l1+}", "quux");
  setv('l', "a,b/c_d=e.f");
  expect("%{lr,/_=.}", "f.e.d.c.b.a");
  /* empty parts are kept */
  setv('l', "a..b");
  expect("%{lr}", "b..a");
  /* more parts asked than there are */
  expect("%{l99}", "a..b");
  expect("%{l99999999999999999999}", "a..b");
}

Test(spf_macro, letters_allowed_where) {
  const char *err = NULL;
  int p = 0, last = 0;
  cr_assert_eq(mxgw__spf_macro_check("%{c}", 4, SPF_M_DOMAIN, NULL, NULL, &err),
               -1);
  cr_assert_eq(mxgw__spf_macro_check("%{r}", 4, SPF_M_DOMAIN, NULL, NULL, &err),
               -1);
  cr_assert_eq(mxgw__spf_macro_check("%{t}", 4, SPF_M_DOMAIN, NULL, NULL, &err),
               -1);
  cr_assert_eq(mxgw__spf_macro_check("%{c} %{r} %{t}", 14, SPF_M_EXP, NULL, NULL,
                                     &err),
               0);
  cr_assert_eq(mxgw__spf_macro_check("%{x}", 4, SPF_M_EXP, NULL, NULL, &err),
               -1);
  cr_assert_eq(mxgw__spf_macro_check("%{a}", 4, SPF_M_ANY, NULL, NULL, &err),
               -1);
  /* a space only in explanation text */
  cr_assert_eq(mxgw__spf_macro_check("a b", 3, SPF_M_DOMAIN, NULL, NULL, &err),
               -1);
  cr_assert_eq(mxgw__spf_macro_check("a b", 3, SPF_M_EXP, NULL, NULL, &err), 0);
  cr_assert_eq(mxgw__spf_macro_check("\xc3\xa9", 2, SPF_M_EXP, NULL, NULL, &err),
               -1);
  cr_assert_eq(mxgw__spf_macro_check("%{p}.x", 6, SPF_M_DOMAIN, &p, &last,
                                     &err),
               0);
  cr_assert_eq(p, 1);
  cr_assert_eq(last, 0);
  cr_assert_eq(mxgw__spf_macro_check("x.%{d}", 6, SPF_M_DOMAIN, &p, &last,
                                     &err),
               0);
  cr_assert_eq(p, 0);
  cr_assert_eq(last, 1);
  const char *bad[] = {"%", "x%", "%x", "%{", "%{d", "%{d2", "%{d0}", "%{dr!}",
                       "%{}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err = NULL;
    cr_assert_eq(mxgw__spf_macro_check(bad[i], strlen(bad[i]), SPF_M_EXP, NULL,
                                       NULL, &err),
                 -1, "%s", bad[i]);
    cr_assert_not_null(err);
    out.len = 0;
    cr_assert_eq(mxgw__spf_expand(&out, &mem, &env, bad[i], strlen(bad[i]),
                                  SPF_M_EXP, &err),
                 -1, "%s", bad[i]);
  }
}

Test(spf_macro, explanation_keeps_the_final_dot) {
  cr_assert_str_eq(expand("This is a test.", SPF_M_EXP), "This is a test.");
  expect("mail.example.com.", "mail.example.com");
}

Test(spf_macro, long_names_lose_labels_on_the_left) {
  setv('o', "somewhat.long.exp.example.com");
  const char *got = expand("foobar.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}.%{o}"
                           ".example.com",
                           SPF_M_DOMAIN);
  char want[400] = "";
  for (int i = 0; i < 8; i++)
    strcat(want, "somewhat.long.exp.example.com.");
  strcat(want, "example.com");
  cr_assert_str_eq(got, want);
  cr_assert_leq(strlen(got), 253);
}

/* naive 7.3 truncation of a fully built string, for comparison */
static void naive_truncate(char *s) {
  size_t n = strlen(s);
  if (n && s[n - 1] == '.')
    s[--n] = '\0';
  char *p = s;
  while (n > 253) { /* drop the leftmost label and its dot */
    char *dot = strchr(p, '.');
    if (!dot)
      break;
    n -= (size_t)(dot + 1 - p);
    p = dot + 1;
  }
  memmove(s, p, n + 1);
}

Test(spf_macro, expansion_bomb_is_bounded_and_exact) {
  /* 4000 macros of a 1000-octet local part: 4 MB if built in full */
  char *local = malloc(1001);
  for (int i = 0; i < 1000; i++)
    local[i] = (char)('a' + i % 26);
  local[1000] = '\0';
  for (int i = 50; i < 1000; i += 51)
    local[i] = '.'; /* labels of 50 */
  setv('l', local);
  size_t n = 4000;
  char *spec = malloc(n * 5 + 40);
  for (size_t i = 0; i < n; i++)
    memcpy(spec + 4 * i, "%{l}", 4);
  strcpy(spec + 4 * n, ".tail.example.com");
  const char *err = NULL;
  cr_assert_eq(mxgw__spf_expand(&out, &mem, &env, spec, strlen(spec),
                                SPF_M_DOMAIN, &err),
               0);
  cr_assert_lt(out.cap, 64 * 1024, "memory stayed bounded (%zu)", out.cap);
  /* the naive expansion */
  char *full = malloc(n * 1000 + 40);
  full[0] = '\0';
  size_t fl = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(full + fl, local, 1000);
    fl += 1000;
  }
  strcpy(full + fl, ".tail.example.com");
  naive_truncate(full);
  cr_assert_str_eq(mxgw__buf_ptr(&out), full);
  free(full);
  free(spec);
  free(local);
}

Test(spf_macro, overlong_single_label_is_invalid) {
  char *local = malloc(5001);
  memset(local, 'x', 5000);
  local[5000] = '\0';
  setv('l', local);
  expand("%{l}", SPF_M_DOMAIN);
  cr_assert_neq(mxgw__spf_name_ok(mxgw__buf_ptr(&out), mxgw__buf_size(&out)), 0);
  cr_assert_str_eq(mxgw__buf_ptr(&out), "", "empty, and NUL-terminated");
  /* but followed by labels it is dropped, as truncation would */
  const char *got = expand("%{l}.example.com", SPF_M_DOMAIN);
  cr_assert_str_eq(got, "example.com");
  free(local);
}

Test(spf_macro, explanation_is_capped) {
  char *local = malloc(1001);
  memset(local, 'y', 1000);
  local[1000] = '\0';
  setv('l', local);
  expand("%{l}%{l}%{l}%{l}%{l}", SPF_M_EXP);
  cr_assert_eq(mxgw__buf_size(&out), SPF_EXP_MAX);
  free(local);
}

Test(spf_macro, name_check) {
  cr_assert_eq(mxgw__spf_name_ok("a.b", 3), 0);
  cr_assert_neq(mxgw__spf_name_ok("", 0), 0);
  cr_assert_neq(mxgw__spf_name_ok("a..b", 4), 0);
  cr_assert_neq(mxgw__spf_name_ok(".a", 2), 0);
  cr_assert_neq(mxgw__spf_name_ok("a.", 2), 0);
  char l64[70];
  memset(l64, 'a', 64);
  memcpy(l64 + 64, ".com", 5);
  cr_assert_neq(mxgw__spf_name_ok(l64, strlen(l64)), 0);
  cr_assert_eq(mxgw__spf_name_ok(l64 + 1, strlen(l64 + 1)), 0);
}
