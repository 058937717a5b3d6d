/* SPDX-License-Identifier: MIT */
/*
 * test_spf_output.c: what a finished check becomes: the Received-SPF
 * header field (RFC 7208 9.1: key-value pairs, dot-atom or quoted-string
 * values, escaped comments, folding at 78 columns with CRLF), the spf
 * resinfo of Authentication-Results (RFC 8601) for both identities, the
 * RFC 7372 policy mapping with reply texts, and the JSON document.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mxgw/mxgw.h>

static mxgw_resolver *R;
static mxgw_spf *S;

static void init(void) {
  const char *z = "example.com. TXT \"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 "
                  "?ip4:198.51.100.0/24 -all\"\n"
                  "bad.example.com. TXT \"v=spf1 moo\"\n"
                  "mx.client.test. TXT \"v=spf1 a -all\"\n"
                  "mx.client.test. A 192.0.2.1\n";
  cr_assert_eq(mxgw_resolver_new_static(&R, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_load_zone(R, z, strlen(z), NULL), MXGW_OK);
  cr_assert_eq(mxgw_spf_new(&S, R, NULL), MXGW_OK);
  cr_assert_eq(mxgw_spf_set_str(S, MXGW_SPF_OPT_RECEIVER, "mx.us.test"),
               MXGW_OK);
}

static void fini(void) {
  mxgw_spf_free(S);
  mxgw_resolver_free(R);
}

TestSuite(spf_output, .init = init, .fini = fini);

static mxgw_spf_check *check(const char *ip, const char *helo, const char *from,
                             int identity) {
  mxgw_spf_check *c;
  cr_assert_eq(mxgw_spf_check_sync(S, ip, helo, from, identity, &c), MXGW_OK);
  return c;
}

/* Check the folding rules (lines of at most max_col octets) and return the
 * unfolded header without the final CRLF. */
static char *unfold_max(const char *h, size_t n, size_t max_col) {
  cr_assert_eq(strlen(h), n);
  cr_assert_geq(n, 2);
  cr_assert_eq(memcmp(h + n - 2, "\r\n", 2), 0, "ends in CRLF");
  char *u = malloc(n + 1);
  size_t k = 0, col = 0;
  for (size_t i = 0; i < n; i++) {
    if (h[i] == '\r') {
      cr_assert_eq(h[i + 1], '\n', "CR only before LF");
      cr_assert_leq(col, max_col, "a line of %zu columns: %s", col, h);
      col = 0;
      i++;
      if (i + 1 < n)
        cr_assert_eq(h[i + 1], ' ', "continuation lines start with a space");
      continue;
    }
    cr_assert_neq(h[i], '\n', "no bare LF");
    cr_assert((unsigned char)h[i] >= 0x20, "no control characters");
    u[k++] = h[i];
    col++;
  }
  u[k] = '\0';
  return u;
}

static char *unfold(const char *h, size_t n) { return unfold_max(h, n, 78); }

static void expect_rspf(mxgw_spf_check *c, const char *want) {
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_spf_check_received_spf(c, &p, &n), MXGW_OK);
  char *u = unfold(p, n);
  cr_assert_str_eq(u, want);
  free(u);
}

Test(spf_output, received_spf_pass_and_fail) {
  mxgw_spf_check *c = check("192.0.2.1", "mx.client.test", "user@example.com",
                            MXGW_SPF_ID_MAILFROM);
  expect_rspf(c, "Received-SPF: pass (mx.us.test: domain of user@example.com "
                 "designates 192.0.2.1 as permitted sender) "
                 "client-ip=192.0.2.1; envelope-from=\"user@example.com\"; "
                 "helo=mx.client.test; receiver=mx.us.test; "
                 "mechanism=\"ip4:192.0.2.0/24\"; identity=mailfrom");
  mxgw_spf_check_free(c);
  c = check("203.0.113.9", "mx.client.test", "user@example.com",
            MXGW_SPF_ID_MAILFROM);
  expect_rspf(c, "Received-SPF: fail (mx.us.test: domain of user@example.com "
                 "does not designate 203.0.113.9 as permitted sender) "
                 "client-ip=203.0.113.9; envelope-from=\"user@example.com\"; "
                 "helo=mx.client.test; receiver=mx.us.test; mechanism=-all; "
                 "identity=mailfrom");
  mxgw_spf_check_free(c);
  c = check("198.51.100.1", "mx.client.test", "user@example.com",
            MXGW_SPF_ID_MAILFROM);
  expect_rspf(c, "Received-SPF: neutral (mx.us.test: 198.51.100.1 is neither "
                 "permitted nor denied by domain of user@example.com) "
                 "client-ip=198.51.100.1; envelope-from=\"user@example.com\"; "
                 "helo=mx.client.test; receiver=mx.us.test; "
                 "mechanism=\"?ip4:198.51.100.0/24\"; identity=mailfrom");
  mxgw_spf_check_free(c);
}

Test(spf_output, received_spf_quoting) {
  /* IPv6 is not a dot-atom; the problem is quoted with escapes */
  mxgw_spf_check *c = check("2001:db8::1", "mx.client.test",
                            "user@bad.example.com", MXGW_SPF_ID_MAILFROM);
  expect_rspf(c, "Received-SPF: permerror (mx.us.test: permanent error in "
                 "processing domain of user@bad.example.com) "
                 "client-ip=\"2001:db8::1\"; "
                 "envelope-from=\"user@bad.example.com\"; helo=mx.client.test; "
                 "receiver=mx.us.test; problem=\"bad.example.com: unknown "
                 "mechanism \\\"moo\\\" (RFC 7208 4.6)\"; identity=mailfrom");
  mxgw_spf_check_free(c);
  /* parentheses and backslashes in the comment, quotes in values */
  c = check("192.0.2.1", "odd (helo)", "a\"b\\c(d)@example.com",
            MXGW_SPF_ID_MAILFROM);
  expect_rspf(c, "Received-SPF: pass (mx.us.test: domain of "
                 "a\"b\\\\c\\(d\\)@example.com designates 192.0.2.1 as "
                 "permitted sender) client-ip=192.0.2.1; "
                 "envelope-from=\"a\\\"b\\\\c(d)@example.com\"; "
                 "helo=\"odd (helo)\"; receiver=mx.us.test; "
                 "mechanism=\"ip4:192.0.2.0/24\"; identity=mailfrom");
  mxgw_spf_check_free(c);
}

Test(spf_output, received_spf_helo_identity_and_no_receiver) {
  cr_assert_eq(mxgw_spf_set_str(S, MXGW_SPF_OPT_RECEIVER, NULL), MXGW_OK);
  mxgw_spf_check *c =
      check("192.0.2.1", "mx.client.test", NULL, MXGW_SPF_ID_HELO);
  expect_rspf(c, "Received-SPF: pass (domain of mx.client.test designates "
                 "192.0.2.1 as permitted sender) client-ip=192.0.2.1; "
                 "helo=mx.client.test; mechanism=a; identity=helo");
  mxgw_spf_check_free(c);
}

Test(spf_output, received_spf_folds_long_values) {
  char from[300];
  snprintf(from, sizeof from, "%0150d@example.com", 7);
  mxgw_spf_check *c =
      check("192.0.2.1", "mx.client.test", from, MXGW_SPF_ID_MAILFROM);
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_spf_check_received_spf(c, &p, &n), MXGW_OK);
  /* a value longer than a line cannot be folded: it gets a line of its own
   * (RFC 5322 2.1.1: 78 is a SHOULD, 998 the limit) */
  char *u = unfold_max(p, n, 998);
  cr_assert(strstr(u, from));
  free(u);
  char want[400];
  snprintf(want, sizeof want, "\r\n envelope-from=\"%s\";\r\n", from);
  cr_assert(strstr(p, want), "%s", p);
  mxgw_spf_check_free(c);
}

static const char *ar(mxgw_spf_check *c, const char *id) {
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_spf_check_auth_results(c, id, &p, &n), MXGW_OK);
  cr_assert_eq(strlen(p), n);
  return p;
}

Test(spf_output, authentication_results) {
  mxgw_spf_check *c = check("192.0.2.1", "mx.client.test", "user@example.com",
                            MXGW_SPF_ID_MAILFROM);
  cr_assert_str_eq(ar(c, NULL),
                   "spf=pass (domain of user@example.com designates 192.0.2.1 "
                   "as permitted sender) smtp.mailfrom=user@example.com");
  const char *h = ar(c, "mx.us.test");
  char *u = unfold(h, strlen(h));
  cr_assert_str_eq(u, "Authentication-Results: mx.us.test; spf=pass (domain of "
                      "user@example.com designates 192.0.2.1 as permitted "
                      "sender) smtp.mailfrom=user@example.com");
  free(u);
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_spf_check_auth_results(c, "bad id", &p, &n), MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_check_auth_results(c, "a;b", &p, &n), MXGW_E_INVAL);
  mxgw_spf_check_free(c);

  c = check("192.0.2.1", "mx.client.test", "Macro Error@example.com",
            MXGW_SPF_ID_MAILFROM);
  cr_assert(strstr(ar(c, NULL), " smtp.mailfrom=\"Macro Error\"@example.com"),
            "%s", ar(c, NULL));
  mxgw_spf_check_free(c);

  c = check("203.0.113.5", "mx.client.test", NULL, MXGW_SPF_ID_HELO);
  cr_assert_str_eq(ar(c, NULL),
                   "spf=fail (domain of mx.client.test does not designate "
                   "203.0.113.5 as permitted sender) smtp.helo=mx.client.test");
  mxgw_spf_check_free(c);

  c = check("192.0.2.1", "h.test", "user@[192.0.2.1]", MXGW_SPF_ID_MAILFROM);
  cr_assert_eq(mxgw_spf_check_result(c), MXGW_SPF_NONE);
  cr_assert(strstr(ar(c, NULL), "smtp.mailfrom=\"user@[192.0.2.1]\""), "%s",
            ar(c, NULL));
  mxgw_spf_check_free(c);
}

Test(spf_output, policy) {
  struct {
    int result, permerror_reject, code;
    const char *enh;
  } t[] = {
      {MXGW_SPF_FAIL, 0, 550, "5.7.23"},
      {MXGW_SPF_TEMPERROR, 0, 451, "4.7.24"},
      {MXGW_SPF_PERMERROR, 1, 550, "5.7.24"},
      {MXGW_SPF_PERMERROR, 0, 0, NULL},
      {MXGW_SPF_SOFTFAIL, 1, 0, NULL},
      {MXGW_SPF_NEUTRAL, 1, 0, NULL},
      {MXGW_SPF_NONE, 1, 0, NULL},
      {MXGW_SPF_PASS, 1, 0, NULL},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    int code = -1;
    const char *enh = "x";
    cr_assert_eq(mxgw_spf_policy(t[i].result, t[i].permerror_reject, &code,
                                 &enh),
                 MXGW_OK);
    cr_assert_eq(code, t[i].code, "case %zu", i);
    if (t[i].enh)
      cr_assert_str_eq(enh, t[i].enh);
    else
      cr_assert_null(enh);
  }
  int code;
  cr_assert_eq(mxgw_spf_policy(42, 0, &code, NULL), MXGW_E_INVAL);
  cr_assert_eq(mxgw_spf_policy(MXGW_SPF_FAIL, 0, NULL, NULL), MXGW_E_INVAL);
}

Test(spf_output, reply_texts) {
  int code;
  const char *enh, *text;
  size_t n;
  mxgw_spf_check *c = check("203.0.113.9", "mx.client.test", "user@example.com",
                            MXGW_SPF_ID_MAILFROM);
  cr_assert_eq(mxgw_spf_check_reply(c, 1, &code, &enh, &text, &n), MXGW_OK);
  cr_assert_eq(code, 550);
  cr_assert_str_eq(enh, "5.7.23");
  cr_assert_str_eq(text,
                   "example.com does not designate 203.0.113.9 as a permitted "
                   "sender");
  mxgw_spf_check_free(c);
  c = check("192.0.2.1", "mx.client.test", "user@bad.example.com",
            MXGW_SPF_ID_MAILFROM);
  cr_assert_eq(mxgw_spf_check_reply(c, 1, &code, &enh, &text, &n), MXGW_OK);
  cr_assert_eq(code, 550);
  cr_assert_str_eq(enh, "5.7.24");
  cr_assert_str_eq(text, "SPF permanent error: bad.example.com: unknown "
                         "mechanism \"moo\" (RFC 7208 4.6)");
  cr_assert_eq(mxgw_spf_check_reply(c, 0, &code, &enh, &text, &n), MXGW_OK);
  cr_assert_eq(code, 0);
  cr_assert_str_eq(text, "");
  mxgw_spf_check_free(c);
  cr_assert_eq(mxgw_resolver_add_record(R, "slow.test", MXGW_DNS_TXT, 0, NULL,
                                        MXGW_DNS_TIMEOUT),
               MXGW_OK);
  c = check("192.0.2.1", "mx.client.test", "user@slow.test",
            MXGW_SPF_ID_MAILFROM);
  cr_assert_eq(mxgw_spf_check_reply(c, 0, &code, &enh, &text, &n), MXGW_OK);
  cr_assert_eq(code, 451);
  cr_assert_str_eq(enh, "4.7.24");
  cr_assert_str_eq(text, "SPF temporary error: TXT lookup for slow.test: TIMEOUT");
  mxgw_spf_check_free(c);
}

Test(spf_output, json) {
  mxgw_spf_check *c = check("203.0.113.9", "h\xff.client.test",
                            "user@example.com", MXGW_SPF_ID_MAILFROM);
  const char *p;
  size_t n;
  cr_assert_eq(mxgw_spf_check_json(c, &p, &n), MXGW_OK);
  cr_assert_eq(strlen(p), n);
  json_error_t err;
  json_t *j = json_loadb(p, n, 0, &err);
  cr_assert_not_null(j, "valid JSON: %s", err.text);
  cr_assert_str_eq(json_string_value(json_object_get(j, "result")), "fail");
  cr_assert_str_eq(json_string_value(json_object_get(j, "identity")),
                   "mailfrom");
  cr_assert_str_eq(json_string_value(json_object_get(j, "client_ip")),
                   "203.0.113.9");
  cr_assert_str_eq(json_string_value(json_object_get(j, "helo")),
                   "h\\xff.client.test", "bytes that are not UTF-8 escaped");
  cr_assert_str_eq(json_string_value(json_object_get(j, "mechanism")), "-all");
  cr_assert(json_is_null(json_object_get(j, "problem")));
  cr_assert_str_eq(json_string_value(json_object_get(j, "explanation")),
                   "example.com does not designate 203.0.113.9 as a permitted "
                   "sender");
  json_t *cnt = json_object_get(j, "counts");
  cr_assert_eq(json_integer_value(json_object_get(cnt, "dns_terms")), 0);
  cr_assert_eq(json_integer_value(json_object_get(cnt, "max_dns_terms")), 10);
  cr_assert_eq(json_integer_value(json_object_get(cnt, "dns_queries")), 1);
  json_t *tr = json_object_get(j, "trace");
  cr_assert_eq(json_array_size(tr), mxgw_spf_check_trace_count(c));
  json_t *last = json_array_get(tr, json_array_size(tr) - 1);
  cr_assert_str_eq(json_string_value(json_object_get(last, "kind")), "result");
  cr_assert(strncmp(json_string_value(json_object_get(j, "received_spf")),
                    "Received-SPF: fail", 18) == 0);
  json_decref(j);
  mxgw_spf_check_free(c);
}
