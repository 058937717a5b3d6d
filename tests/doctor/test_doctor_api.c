/* SPDX-License-Identifier: MIT */
/*
 * test_doctor_api.c: the mxgw_doctor API on its own, hermetic: options and
 * their errors, a run over a static resolver (mxgw_doctor_set_resolver)
 * loaded with the incident zones' records, the findings' getters and the
 * JSON form. The live checks are tested by test_doctor.py.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <jansson.h>

#include <mxgw/mxgw_doctor.h>

static const char ZONE[] =
    "$ORIGIN test.\n"
    "example MX 10 mx.example\n"
    "mx.example A 43.207.242.167\n"
    "example TXT \"v=spf1 +mx ~all\"\n"
    "mx.example TXT \"v=spf1 a -all\"\n"
    "nogw MX 10 mx.example\n"
    "nogw TXT \"v=spf1 ip4:192.0.2.10 -all\"\n"
    "other MX 10 mx.other\n"
    "mx.other A 198.51.100.7\n"
    "other TXT \"v=spf1 ip4:43.207.242.167 -all\"\n";

static mxgw_resolver *zone(void) {
  mxgw_resolver *r = NULL;
  cr_assert_eq(mxgw_resolver_new_static(&r, NULL), MXGW_OK);
  cr_assert_eq(mxgw_resolver_load_zone(r, ZONE, strlen(ZONE), NULL), MXGW_OK);
  return r;
}

static mxgw_doctor *doctor(mxgw_resolver *r, const char *domain) {
  mxgw_doctor *d = NULL;
  cr_assert_eq(mxgw_doctor_new(&d, NULL), MXGW_OK);
  cr_assert_eq(mxgw_doctor_set_resolver(d, r), MXGW_OK);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_DOMAIN, domain), 0);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_HOSTNAME,
                                   "mx.example.test"), 0);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_PUBLIC_IP,
                                   "43.207.242.167"), 0);
  return d;
}

static const char *str(mxgw_doctor *d, size_t i, int key) {
  const char *p = NULL;
  size_t l = 0;
  cr_assert_eq(mxgw_doctor_get_str(d, i, key, &p, &l), MXGW_OK);
  cr_assert_eq(strlen(p), l);
  return p;
}

/* Index of the finding of `check` whose finding text contains s. */
static size_t find(mxgw_doctor *d, int check, const char *s) {
  for (size_t i = 0; i < mxgw_doctor_count(d); i++) {
    int64_t c = 0;
    cr_assert_eq(mxgw_doctor_get_int(d, i, MXGW_DOCTOR_F_CHECK_ID, &c), 0);
    if (c == check && strstr(str(d, i, MXGW_DOCTOR_F_FINDING), s))
      return i;
  }
  cr_assert_fail("no finding with \"%s\"", s);
  return 0;
}

static int64_t status(mxgw_doctor *d, size_t i) {
  int64_t v = -1;
  cr_assert_eq(mxgw_doctor_get_int(d, i, MXGW_DOCTOR_F_STATUS, &v), 0);
  return v;
}

Test(doctor_api, names) {
  cr_assert_str_eq(mxgw_doctor_status_name(MXGW_DOCTOR_OK), "ok");
  cr_assert_str_eq(mxgw_doctor_status_name(MXGW_DOCTOR_WARN), "warn");
  cr_assert_str_eq(mxgw_doctor_status_name(MXGW_DOCTOR_FAIL), "fail");
  cr_assert_str_eq(mxgw_doctor_status_name(7), "unknown");
  cr_assert_str_eq(mxgw_doctor_check_name(MXGW_DOCTOR_CHECK_LISTENER),
                   "listener");
  cr_assert_str_eq(mxgw_doctor_check_name(MXGW_DOCTOR_CHECK_ROUND_TRIP),
                   "roundtrip");
  cr_assert_str_eq(mxgw_doctor_check_name(3), "unknown");
}

Test(doctor_api, option_errors) {
  mxgw_doctor *d = NULL;
  cr_assert_eq(mxgw_doctor_new(NULL, NULL), MXGW_E_INVAL);
  cr_assert_eq(mxgw_doctor_new(&d, NULL), MXGW_OK);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_PUBLIC_IP, "mx.example"),
               MXGW_E_INVAL);
  cr_assert_str_eq(mxgw_doctor_errmsg(d),
                   "public IP 'mx.example' is not an IPv4 or IPv6 address");
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_LISTEN,
                                   "127.0.0.1:25/lmtp"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_LISTEN, "127.0.0.1"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_LISTEN,
                                   "[::1]:587/submission"),
               MXGW_OK);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_BACKEND, "unix:"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_BACKEND,
                                   "127.0.0.1:99999"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_BACKEND,
                                   "unix:/run/dovecot/lmtp"),
               MXGW_OK);
  cr_assert_eq(mxgw_doctor_set_str(d, 999, "x"), MXGW_E_INVAL);
  cr_assert_eq(mxgw_doctor_set_int(d, MXGW_DOCTOR_OPT_TIMEOUT_MS, 0),
               MXGW_E_RANGE);
  cr_assert_eq(mxgw_doctor_set_int(d, 999, 0), MXGW_E_INVAL);
  for (int i = 0; i < 16; i++)
    cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_PUBLIC_IP,
                                     "192.0.2.1"), MXGW_OK);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_PUBLIC_IP, "192.0.2.1"),
               MXGW_E_RANGE);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_PUBLIC_IP, NULL),
               MXGW_OK); /* clears */
  mxgw_doctor_free(d);
}

Test(doctor_api, nothing_to_check) {
  mxgw_doctor *d = NULL;
  cr_assert_eq(mxgw_doctor_new(&d, NULL), MXGW_OK);
  cr_assert_eq(mxgw_doctor_run(d, MXGW_DOCTOR_CHECK_ALL), MXGW_E_STATE);
  cr_assert_eq(mxgw_doctor_set_str(d, MXGW_DOCTOR_OPT_SPOOL, "/x"), MXGW_OK);
  /* a spool is set, but only DNS is asked for */
  cr_assert_eq(mxgw_doctor_run(d, MXGW_DOCTOR_CHECK_DNS), MXGW_E_STATE);
  cr_assert_eq(mxgw_doctor_count(d), 0);
  mxgw_doctor_free(d);
}

Test(doctor_api, healthy_zone) {
  mxgw_resolver *r = zone();
  mxgw_doctor *d = doctor(r, "example.test");
  cr_assert_eq(mxgw_doctor_run(d, MXGW_DOCTOR_CHECK_DNS |
                                      MXGW_DOCTOR_CHECK_SPF),
               MXGW_DOCTOR_OK);
  size_t i = find(d, MXGW_DOCTOR_CHECK_SPF, "matched \"+mx\"");
  cr_assert_eq(status(d, i), MXGW_DOCTOR_OK);
  cr_assert(strstr(str(d, i, MXGW_DOCTOR_F_NOTE),
                   "plays no part in whether others can deliver TO "
                   "example.test"));
  cr_assert(strstr(str(d, i, MXGW_DOCTOR_F_DETAIL),
                   "term   +mx: match (via MX host mx.example.test) -> pass"));
  cr_assert_str_eq(str(d, i, MXGW_DOCTOR_F_FIX), "");
  cr_assert_str_eq(str(d, i, MXGW_DOCTOR_F_CHECK), "spf");
  const char *p;
  cr_assert_eq(mxgw_doctor_get_str(d, mxgw_doctor_count(d), 1, &p, NULL),
               MXGW_E_RANGE);
  cr_assert_eq(mxgw_doctor_get_str(d, 0, 77, &p, NULL), MXGW_E_INVAL);
  mxgw_doctor_free(d);
  mxgw_resolver_free(r);
}

Test(doctor_api, spf_without_gateway_and_json) {
  mxgw_resolver *r = zone();
  mxgw_doctor *d = doctor(r, "nogw.test");
  cr_assert_eq(mxgw_doctor_run(d, MXGW_DOCTOR_CHECK_SPF), MXGW_DOCTOR_FAIL);
  size_t i = find(d, MXGW_DOCTOR_CHECK_SPF, "is not authorized: fail");
  cr_assert_eq(status(d, i), MXGW_DOCTOR_FAIL);
  cr_assert_str_eq(str(d, i, MXGW_DOCTOR_F_FIX),
                   "add ip4:43.207.242.167 to the SPF record of nogw.test: "
                   "\"v=spf1 ip4:192.0.2.10 ip4:43.207.242.167 -all\"");
  const char *js;
  size_t jl;
  cr_assert_eq(mxgw_doctor_json(d, &js, &jl), MXGW_OK);
  json_error_t je;
  json_t *root = json_loadb(js, jl, 0, &je);
  cr_assert_not_null(root, "%s", je.text);
  cr_assert_str_eq(json_string_value(json_object_get(root, "status")), "fail");
  cr_assert_eq(json_integer_value(json_object_get(root, "exit")), 2);
  json_t *f = json_array_get(json_object_get(root, "findings"), i);
  cr_assert_str_eq(json_string_value(json_object_get(f, "fix")),
                   str(d, i, MXGW_DOCTOR_F_FIX));
  cr_assert(json_array_size(json_object_get(f, "detail")) > 3);
  json_decref(root);
  /* a second run replaces the findings */
  size_t n = mxgw_doctor_count(d);
  cr_assert_eq(mxgw_doctor_run(d, MXGW_DOCTOR_CHECK_SPF), MXGW_DOCTOR_FAIL);
  cr_assert_eq(mxgw_doctor_count(d), n);
  mxgw_doctor_free(d);
  mxgw_resolver_free(r);
}

Test(doctor_api, mx_elsewhere) {
  mxgw_resolver *r = zone();
  mxgw_doctor *d = doctor(r, "other.test");
  cr_assert_eq(mxgw_doctor_run(d, MXGW_DOCTOR_CHECK_DNS), MXGW_DOCTOR_FAIL);
  size_t i = find(d, MXGW_DOCTOR_CHECK_DNS,
                  "MX host mx.other.test (preference 10) -> 198.51.100.7, "
                  "not the gateway (43.207.242.167)");
  cr_assert_eq(status(d, i), MXGW_DOCTOR_FAIL);
  cr_assert_str_eq(str(d, i, MXGW_DOCTOR_F_CONCERNS), "MX of other.test");
  mxgw_doctor_free(d);
  mxgw_resolver_free(r);
}
