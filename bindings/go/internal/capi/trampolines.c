// SPDX-License-Identifier: MIT
// C trampolines of the Go binding: plain C functions with the libmxgw
// callback signatures that forward to exported Go functions. Kept out of
// the //export file's preamble (the cgo rules allow only declarations
// there).
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include "_cgo_export.h"
#include "capi_glue.h"

static void capi_log_tramp(void *user, mxgw_session *s, int kind,
                           const char *text, size_t len) {
  (void)s;
  capiLogCallback((uintptr_t)user, kind, (uintptr_t)text, (size_t)len);
}

void capi_session_set_log(mxgw_session *s, uintptr_t handle) {
  if (handle == 0)
    mxgw_session_set_log(s, NULL, NULL);
  else
    mxgw_session_set_log(s, capi_log_tramp, (void *)handle);
}

int capi_noop(int x) { return x; }

int capi_poll(int fd, int events, int timeout_ms) {
  struct pollfd p = {fd, (short)events, 0};
  int r = poll(&p, fd >= 0 ? 1 : 0, timeout_ms);
  if (r < 0)
    return errno == EINTR ? 0 : -errno;
  return r > 0 ? p.revents : 0;
}

long long capi_malloc_inuse(void) {
  struct mallinfo2 mi = mallinfo2();
  return (long long)(mi.uordblks + mi.hblkhd);
}

static void capi_srv_log_tramp(void *user, int level, const char *line) {
  capiServerLogCallback((uintptr_t)user, level, (uintptr_t)line);
}

static int capi_srv_policy_tramp(void *user, mxgw_server_req *req) {
  return capiPolicyCallback((uintptr_t)user, (uintptr_t)req);
}

int capi_server_config_set_log(mxgw_server_config *cfg, uintptr_t handle) {
  if (handle == 0)
    return mxgw_server_config_set_log(cfg, NULL, NULL);
  return mxgw_server_config_set_log(cfg, capi_srv_log_tramp, (void *)handle);
}

int capi_server_config_set_policy(mxgw_server_config *cfg, int stage,
                                  uintptr_t handle) {
  if (handle == 0)
    return mxgw_server_config_set_policy(cfg, stage, NULL, NULL);
  return mxgw_server_config_set_policy(cfg, stage, capi_srv_policy_tramp,
                                       (void *)handle);
}

int capi_spf_check(mxgw_spf *spf, const char *ip, const char *helo,
                   const char *mail_from, int identity, int64_t slice_ms,
                   mxgw_spf_check **out) {
  mxgw_spf_check *chk = NULL;
  *out = NULL;
  int rc = mxgw_spf_check_start(spf, ip, helo, mail_from, identity, &chk);
  if (rc)
    return rc;
  if (!mxgw_spf_check_done(chk)) {
    rc = mxgw_spf_check_run(chk, slice_ms);
    if (rc && rc != MXGW_E_TIMEOUT) {
      mxgw_spf_check_free(chk);
      return rc;
    }
  }
  *out = chk;
  return mxgw_spf_check_done(chk) ? MXGW_OK : MXGW_E_TIMEOUT;
}

static size_t put(unsigned char *b, size_t cap, size_t off, const void *p,
                  size_t n) {
  if (off + n <= cap)
    memcpy(b + off, p, n);
  return off + n;
}

int capi_spf_collect(const mxgw_spf_check *chk, void *obuf, size_t cap) {
  unsigned char *b = obuf;
  int32_t res = mxgw_spf_check_result(chk);
  if (res < 0)
    return res;
  size_t off = put(b, cap, 0, &res, sizeof res);
  for (int key = 1; key <= 9; key++) {
    const char *p = NULL;
    size_t n = 0;
    uint32_t l = 0xffffffffu;
    if (mxgw_spf_check_get_str(chk, key, &p, &n) == 0 && n < 0xffffffffu)
      l = (uint32_t)n;
    off = put(b, cap, off, &l, sizeof l);
    if (l != 0xffffffffu)
      off = put(b, cap, off, p, n);
  }
  for (int key = 100; key <= 104; key++) {
    int64_t v = 0;
    mxgw_spf_check_get_int(chk, key, &v);
    off = put(b, cap, off, &v, sizeof v);
  }
  return off > 0x7fffffff ? MXGW_E_RANGE : (int)off;
}
