/* SPDX-License-Identifier: MIT */
/*
 * test_spf_parse.c: the SPF record parser (white-box, mxgw_spf_record.c):
 * record selection ("v=spf1" followed by a space or the end), every
 * mechanism and modifier with its argument rules, CIDR lengths, the
 * domain-spec ending rule of RFC 7208 7.1, and the syntax errors that must
 * make the whole record a permerror, each reported with the offending term.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgw_spf_int.h"

static mxgw_mem mem;
static spf_arena arena;

static void setup(void) {
  mxgw__mem_init(&mem, NULL);
  memset(&arena, 0, sizeof arena);
}
static void teardown(void) { mxgw__spf_arena_free(&arena, &mem); }

TestSuite(spf_parse, .init = setup, .fini = teardown);

static spf_record parse_ok(const char *rec) {
  spf_record r;
  char err[300] = "";
  int rv = mxgw__spf_parse(&arena, &mem, rec, strlen(rec), &r, err, sizeof err);
  cr_assert_eq(rv, 0, "\"%s\" should parse, got: %s", rec, err);
  return r;
}

static const char *parse_err(const char *rec, size_t len) {
  static char err[300];
  spf_record r;
  err[0] = '\0';
  int rv = mxgw__spf_parse(&arena, &mem, rec, len, &r, err, sizeof err);
  cr_assert_eq(rv, -1, "\"%.*s\" should be a syntax error", (int)len, rec);
  cr_assert(err[0], "an error needs a description");
  return err;
}

Test(spf_parse, record_selection) {
  cr_assert(mxgw__spf_is_record("v=spf1", 6));
  cr_assert(mxgw__spf_is_record("v=spf1 -all", 11));
  cr_assert(mxgw__spf_is_record("V=SpF1 ~all", 11));
  cr_assert(!mxgw__spf_is_record("v=spf10", 7));
  cr_assert(!mxgw__spf_is_record("v=spf1mx", 8));
  cr_assert(!mxgw__spf_is_record("v=spf", 5));
  cr_assert(!mxgw__spf_is_record(" v=spf1", 7));
  cr_assert(!mxgw__spf_is_record("spf2.0/pra", 10));
}

Test(spf_parse, only_records_are_parsed) {
  const char *bad[] = {"v=spf10 a", "bbbbbbv=spf1 a", "v=spf1\ta", "", "v=sp"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert(strstr(parse_err(bad[i], strlen(bad[i])), "not an SPF record"));
}

Test(spf_parse, empty_record_has_no_terms) {
  spf_record r = parse_ok("v=spf1");
  cr_assert_eq(r.n, 0);
  r = parse_ok("v=spf1   ");
  cr_assert_eq(r.n, 0);
  cr_assert_eq(r.redirect, -1);
  cr_assert_eq(r.exp, -1);
}

Test(spf_parse, mechanisms_and_qualifiers) {
  spf_record r = parse_ok("v=spf1 +all -include:_spf.example.net ~a ?mx "
                          "ptr ip4:192.0.2.0/24 ip6:2001:db8::/32 "
                          "exists:%{i}.bl.example.org");
  cr_assert_eq(r.n, 8);
  static const int types[] = {T_ALL, T_INCLUDE, T_A,   T_MX,
                              T_PTR, T_IP4,     T_IP6, T_EXISTS};
  static const int quals[] = {MXGW_SPF_PASS,     MXGW_SPF_FAIL,
                              MXGW_SPF_SOFTFAIL, MXGW_SPF_NEUTRAL,
                              MXGW_SPF_PASS,     MXGW_SPF_PASS,
                              MXGW_SPF_PASS,     MXGW_SPF_PASS};
  for (size_t i = 0; i < r.n; i++) {
    cr_assert_eq(r.terms[i].type, types[i], "term %zu", i);
    cr_assert_eq(r.terms[i].qual, quals[i], "term %zu", i);
  }
  cr_assert_eq(r.terms[1].slen, strlen("_spf.example.net"));
  cr_assert_eq(memcmp(r.terms[1].spec, "_spf.example.net", r.terms[1].slen), 0);
  cr_assert_null(r.terms[2].spec, "a without argument uses <domain>");
  cr_assert_eq(r.terms[5].cidr4, 24);
  static const uint8_t net4[4] = {192, 0, 2, 0};
  cr_assert_eq(memcmp(r.terms[5].addr, net4, 4), 0);
  cr_assert_eq(r.terms[6].cidr6, 32);
  cr_assert_eq(r.terms[6].addr[0], 0x20);
  cr_assert_eq(r.terms[6].addr[1], 0x01);
  cr_assert(r.terms[7].flags & SPF_TF_MACRO);
  cr_assert(!(r.terms[7].flags & SPF_TF_USES_P));
}

Test(spf_parse, names_are_case_insensitive) {
  spf_record r = parse_ok("v=spf1 A MX:Example.COM IP4:1.2.3.4 -ALL "
                          "REDIRECT=x.example.com");
  cr_assert_eq(r.terms[0].type, T_A);
  cr_assert_eq(r.terms[1].type, T_MX);
  cr_assert_eq(r.terms[2].type, T_IP4);
  cr_assert_eq(r.terms[3].type, T_ALL);
  cr_assert_eq(r.terms[3].qual, MXGW_SPF_FAIL);
  cr_assert_eq(r.redirect, 4);
}

Test(spf_parse, dual_cidr) {
  spf_record r = parse_ok("v=spf1 a/24//64 mx:example.com//0 a:foo.example.com/0 "
                          "a:foo:bar/baz.example.com mx//128 a");
  cr_assert_eq(r.terms[0].cidr4, 24);
  cr_assert_eq(r.terms[0].cidr6, 64);
  cr_assert_null(r.terms[0].spec);
  cr_assert_eq(r.terms[1].cidr4, 32);
  cr_assert_eq(r.terms[1].cidr6, 0);
  cr_assert_eq(r.terms[1].slen, strlen("example.com"));
  cr_assert_eq(r.terms[2].cidr4, 0);
  cr_assert_eq(r.terms[2].cidr6, 128);
  /* a '/' inside the domain is not a CIDR */
  cr_assert_eq(r.terms[3].slen, strlen("foo:bar/baz.example.com"));
  cr_assert_eq(r.terms[3].cidr4, 32);
  cr_assert_eq(r.terms[4].cidr6, 128);
  cr_assert_eq(r.terms[5].cidr4, 32);
  cr_assert_eq(r.terms[5].cidr6, 128);
}

Test(spf_parse, modifiers) {
  spf_record r = parse_ok("v=spf1 exp=explain.%{d} -all redirect=_spf.%{d2} "
                          "moo.cow-far_out=man:dog/cat default=+ empty=");
  cr_assert_eq(r.n, 6);
  cr_assert_eq(r.exp, 0);
  cr_assert_eq(r.redirect, 2);
  cr_assert_eq(r.terms[0].type, T_EXP);
  cr_assert_eq(r.terms[2].type, T_REDIRECT);
  cr_assert_eq(r.terms[3].type, T_UNKNOWN_MOD);
  cr_assert_eq(r.terms[4].type, T_UNKNOWN_MOD);
  cr_assert_eq(r.terms[5].type, T_UNKNOWN_MOD);
}

Test(spf_parse, domain_spec_endings) {
  /* valid: toplabel with a dash, trailing dot, macro at the end, %% */
  parse_ok("v=spf1 a:foo.example.xn--zckzah a:mail.example.com. "
           "exists:%{i}.%{d} include:%{d2} a:x.%% a:%{p}.example.com");
  struct {
    const char *rec, *term;
  } bad[] = {
      {"v=spf1 a:foo-bar", "a:foo-bar"},             /* no dot */
      {"v=spf1 a:museum", "a:museum"},               /* only a toplabel */
      {"v=spf1 a:museum.", "a:museum."},
      {"v=spf1 a:111.222.33.44", "a:111.222.33.44"}, /* numeric toplabel */
      {"v=spf1 a:abc.123", "a:abc.123"},
      {"v=spf1 a:example.-com", "a:example.-com"},   /* leading dash */
      {"v=spf1 a:example.com-", "a:example.com-"},
      {"v=spf1 a:example.com:8080", "a:example.com:8080"},
      {"v=spf1 exists:mail.example.com/24", "exists:mail.example.com/24"},
      {"v=spf1 include:ip5.example.com/24", "include:ip5.example.com/24"},
      {"v=spf1 a:%{d}.", "a:%{d}."},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *e = parse_err(bad[i].rec, strlen(bad[i].rec));
    cr_assert(strstr(e, bad[i].term), "error for %s names the term: %s",
              bad[i].rec, e);
  }
}

Test(spf_parse, syntax_errors_name_the_term) {
  struct {
    const char *rec, *needle;
  } bad[] = {
      {"v=spf1 ip4:1.2.3.4 -all moo", "unknown mechanism \"moo\""},
      {"v=spf1 moo.cow/far_out=man:dog/cat", "moo.cow/far_out"},
      {"v=spf1 moo.cow:far_out=man:dog/cat", "moo.cow:far_out"},
      {"v=spf1 redirect:t2.example.com", "unknown mechanism"},
      {"v=spf1 -all.", "all."},
      {"v=spf1 -all:foobar", "takes no argument"},
      {"v=spf1 -all/8", "all/8"},
      {"v=spf1 =all", "without a name"},
      {"v=spf1 ~", "bad term \"~\""},
      {"v=spf1 -all +", "bad term \"+\""},
      {"v=spf1 1up=foo", "1up=foo"},
      {"v=spf1 -exp=foo.example.com", "qualifier on a modifier"},
      {"v=spf1 exp=a.example.com exp=b.example.com", "second exp="},
      {"v=spf1 redirect=a.example.com redirect=a.example.com",
       "second redirect="},
      {"v=spf1 exp= -all", "empty domain-spec"},
      {"v=spf1 ?all redirect=", "empty domain-spec"},
      {"v=spf1 exp=-all", "top label"},
      {"v=spf1 include", "include needs a domain"},
      {"v=spf1 include:", "empty domain-spec"},
      {"v=spf1 exists", "exists needs a domain"},
      {"v=spf1 exists:", "empty domain-spec"},
      {"v=spf1 a:", "empty domain-spec"},
      {"v=spf1 mx: -all", "empty domain-spec"},
      {"v=spf1 ptr:", "empty domain-spec"},
      {"v=spf1 ptr/0", "ptr/0"},
      {"v=spf1 a/33", "bad IPv4 CIDR"},
      {"v=spf1 a//129", "bad IPv6 CIDR"},
      {"v=spf1 a/24/64", "a/24/64"},
      {"v=spf1 mx/032", "bad IPv4 CIDR"},
      {"v=spf1 ip4", "ip4 needs an address"},
      {"v=spf1 ip4:1.2.3", "bad IPv4 address"},
      {"v=spf1 ip4:1.2.3.4:8080", "bad IPv4 address"},
      {"v=spf1 ip4:1.2.03.4", "bad IPv4 address"},
      {"v=spf1 ip4:1.2.3.256", "bad IPv4 address"},
      {"v=spf1 ip4:1.2.3.4/33", "bad IPv4 CIDR"},
      {"v=spf1 ip4:1.2.3.4/032", "bad IPv4 CIDR"},
      {"v=spf1 ip4:1.2.3.4//32", "bad IPv4 CIDR"},
      {"v=spf1 ip6", "ip6 needs an address"},
      {"v=spf1 ip6::CAFE::BABE", "bad IPv6 address"},
      {"v=spf1 ip6:::1.1.1.1/129", "bad IPv6 CIDR"},
      {"v=spf1 ip6:::1.1.1.1//33", "bad IPv6 CIDR"},
      {"v=spf1 a:%{a}.example.com", "unknown macro letter"},
      {"v=spf1 exists:%(ir).sbl.example.com", "'%' not followed by"},
      {"v=spf1 exists:foo%.sbl.example.com", "'%' not followed by"},
      {"v=spf1 -all exp=%{r}.example.com", "only in exp= text"},
      {"v=spf1 a:%{c}.example.com", "only in exp= text"},
      {"v=spf1 a:%{l0}.example.com", "transformer 0"},
      {"v=spf1 -all foo=%abc", "bad macro"},
      {"v=spf1 a:%{d.example.com", "expected '}'"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *e = parse_err(bad[i].rec, strlen(bad[i].rec));
    cr_assert(strstr(e, bad[i].needle), "\"%s\": expected \"%s\" in \"%s\"",
              bad[i].rec, bad[i].needle, e);
  }
}

Test(spf_parse, only_printable_ascii_and_spaces) {
  struct {
    const char *rec;
    size_t len;
    const char *needle;
  } bad[] = {
      {"v=spf1 a:foo.example.com\0", 25, "control character 0x00 at offset 24"},
      {"v=spf1 a:ctrl.example.com\rptr -all", 0, "control character 0x0D"},
      {"v=spf1 ip4:192.0.2.5\n include:x.example.com", 0, "0x0A"},
      {"v=spf1 a\t-all", 0, "0x09"},
      {"v=spf1 \x80" "a:example.net -all", 0, "non-ASCII character 0x80"},
      {"v=spf1 a:\xEF\xBB\xBFgarbage.example.net -all", 0, "non-ASCII"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t len = bad[i].len ? bad[i].len : strlen(bad[i].rec);
    const char *e = parse_err(bad[i].rec, len);
    cr_assert(strstr(e, bad[i].needle), "case %zu: expected \"%s\" in \"%s\"",
              i, bad[i].needle, e);
  }
}

Test(spf_parse, several_spaces_and_trailing_space) {
  spf_record r = parse_ok("v=spf1 a  -all ");
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.terms[0].tlen, 1);
  cr_assert_eq(r.terms[1].tlen, 4);
}

Test(spf_parse, p_macro_is_flagged) {
  spf_record r = parse_ok("v=spf1 exists:%{p}.ok.example.com a:%{P2}.example.com");
  cr_assert(r.terms[0].flags & SPF_TF_USES_P);
  cr_assert(r.terms[1].flags & SPF_TF_USES_P);
}

Test(spf_parse, strict_dotted_quad) {
  uint8_t a[4];
  cr_assert_eq(mxgw__spf_parse_ip4("192.0.2.255", 11, a), 0);
  cr_assert_eq(a[3], 255);
  cr_assert_eq(mxgw__spf_parse_ip4("0.0.0.0", 7, a), 0);
  const char *bad[] = {"1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.4 ", "1..3.4",
                       "256.1.1.1", "1.2.3.1000", "a.b.c.d", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_neq(mxgw__spf_parse_ip4(bad[i], strlen(bad[i]), a), 0, "%s",
                  bad[i]);
}

Test(spf_parse, many_terms) {
  /* a long record: 2000 ip4 terms parse, each one kept */
  char *rec = malloc(2000 * 20 + 16);
  strcpy(rec, "v=spf1");
  size_t n = 6;
  for (int i = 0; i < 2000; i++)
    n += (size_t)sprintf(rec + n, " ip4:10.%d.%d.0/24", i / 256, i % 256);
  spf_record r;
  char err[300];
  cr_assert_eq(mxgw__spf_parse(&arena, &mem, rec, n, &r, err, sizeof err), 0);
  cr_assert_eq(r.n, 2000);
  cr_assert_eq(r.terms[1999].addr[1], 1999 / 256);
  cr_assert_eq(r.terms[1999].addr[2], 1999 % 256);
  free(rec);
}
