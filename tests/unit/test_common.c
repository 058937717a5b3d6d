/* SPDX-License-Identifier: MIT */
/*
 * test_common.c: unit tests of mxgw_common.h: every status code has a
 * description and a symbolic name, unknown codes get the documented
 * fallbacks, and the run-time version matches the version header.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "mxgw/mxgw_common.h"
#include "mxgw/mxgw_version.h"

struct code_row {
  int val;
  const char *name;
  const char *str;
};

static const struct code_row codes[] = {
#define ROW_(name, val, str) {val, "MXGW_" #name, str},
    MXGW_ERRNO_MAP(ROW_)
#undef ROW_
};
#define NCODES (sizeof codes / sizeof codes[0])

Test(common, strerror_every_code) {
  for (size_t i = 0; i < NCODES; i++) {
    const char *s = mxgw_strerror(codes[i].val);
    cr_assert(s != NULL, "mxgw_strerror(%d) is NULL", codes[i].val);
    cr_assert_str_eq(s, codes[i].str, "mxgw_strerror(%d)", codes[i].val);
    cr_assert_str_neq(s, "unknown error", "code %d has no description",
                      codes[i].val);
  }
}

Test(common, strerror_unknown_codes) {
  static const int unknown[] = {1,     2,   -850,    -100,    -899, -901,
                                -1000, 900, INT_MIN, INT_MAX, 12345};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *s = mxgw_strerror(unknown[i]);
    cr_assert(s != NULL, "mxgw_strerror(%d) is NULL", unknown[i]);
    cr_assert_str_eq(s, "unknown error", "mxgw_strerror(%d)", unknown[i]);
  }
}

Test(common, errname_every_code) {
  for (size_t i = 0; i < NCODES; i++) {
    const char *s = mxgw_errname(codes[i].val);
    cr_assert(s != NULL);
    cr_assert_str_eq(s, codes[i].name, "mxgw_errname(%d)", codes[i].val);
  }
  cr_assert_str_eq(mxgw_errname(MXGW_OK), "MXGW_OK");
  cr_assert_str_eq(mxgw_errname(MXGW_E_NOMEM), "MXGW_E_NOMEM");
  cr_assert_str_eq(mxgw_errname(-900), "MXGW_E_FATAL");
}

Test(common, errname_unknown_codes) {
  static const int unknown[] = {1, -850, -899, -901, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *s = mxgw_errname(unknown[i]);
    cr_assert(s != NULL);
    cr_assert_str_eq(s, "MXGW_E_UNKNOWN", "mxgw_errname(%d)", unknown[i]);
  }
}

Test(common, codes_are_distinct_and_negative) {
  for (size_t i = 0; i < NCODES; i++) {
    if (codes[i].val != 0)
      cr_assert_lt(codes[i].val, 0, "%s is not negative", codes[i].name);
    for (size_t j = i + 1; j < NCODES; j++)
      cr_assert_neq(codes[i].val, codes[j].val, "%s and %s share a value",
                    codes[i].name, codes[j].name);
  }
  cr_assert_eq(MXGW_OK, 0);
  cr_assert_eq(MXGW_E_FATAL, -900);
}

Test(common, version_matches_header) {
  int num = -1;
  const char *v = mxgw_version(&num);
  cr_assert(v != NULL);
  cr_assert_eq(num, MXGW_VERSION_NUM, "run-time 0x%06x, header 0x%06x", num,
               MXGW_VERSION_NUM);
  cr_assert_str_eq(v, MXGW_VERSION_STR);
  cr_assert_str_eq(mxgw_version(NULL), MXGW_VERSION_STR);

  char expect[64];
  snprintf(expect, sizeof expect, "%d.%d.%d", (num >> 16) & 0xff,
           (num >> 8) & 0xff, num & 0xff);
  cr_assert_str_eq(v, expect, "version string and number disagree");
  cr_assert_eq(MXGW_VERSION_NUM, (MXGW_VERSION_MAJOR << 16) |
                                     (MXGW_VERSION_MINOR << 8) |
                                     MXGW_VERSION_PATCH);
}
