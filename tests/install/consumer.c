/* SPDX-License-Identifier: MIT */
/*
 * consumer.c: a tiny program built against the *installed* libmxgw (through
 * pkg-config, find_package(mxgw) or the Debian packages) by
 * tests/install/check-install.sh and check-deb.sh. It checks that the
 * header's compile-time version matches the library's run-time version, that
 * error strings resolve, and that a session configuration can be created and
 * freed. It is written in the common subset of C99 and C++ so the same file
 * also proves that the headers link from C++ (extern "C").
 */
#include <mxgw/mxgw.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what) {
  fprintf(stderr, "consumer: FAIL: %s\n", what);
  return 1;
}

int main(void) {
  int num = -1;
  const char *v = mxgw_version(&num);
  const char *msg;
  const char *name;
  mxgw_session_config *cfg = NULL;
  int rc;

  if (v == NULL)
    return fail("mxgw_version() returned NULL");
  if (num != MXGW_VERSION_NUM) {
    fprintf(stderr, "consumer: header version 0x%06x, library 0x%06x\n",
            (unsigned)MXGW_VERSION_NUM, (unsigned)num);
    return fail("header and library versions differ");
  }
  if (strcmp(v, MXGW_VERSION_STR) != 0)
    return fail("mxgw_version() string differs from MXGW_VERSION_STR");

  msg = mxgw_strerror(MXGW_E_NOMEM);
  if (msg == NULL || strcmp(msg, "out of memory") != 0)
    return fail("mxgw_strerror(MXGW_E_NOMEM) is not \"out of memory\"");
  name = mxgw_errname(MXGW_E_INVAL);
  if (name == NULL || strcmp(name, "MXGW_E_INVAL") != 0)
    return fail("mxgw_errname(MXGW_E_INVAL) is not \"MXGW_E_INVAL\"");
  if (mxgw_strerror(12345) == NULL)
    return fail("mxgw_strerror(unknown) returned NULL");

  rc = mxgw_session_config_new(&cfg, NULL);
  if (rc != MXGW_OK || cfg == NULL) {
    fprintf(stderr, "consumer: mxgw_session_config_new: %s\n",
            mxgw_strerror(rc));
    return fail("mxgw_session_config_new() failed");
  }
  mxgw_session_config_free(cfg);
  mxgw_session_config_free(NULL);

  printf("consumer: libmxgw %s (0x%06x) OK\n", v, (unsigned)num);
  return 0;
}
