/* SPDX-License-Identifier: MIT */
/*
 * capi_glue.h: C helpers of the Go binding that SWIG wraps like the library
 * API (implemented in trampolines.c). They install C trampolines that call
 * exported Go functions (callbacks.go) with a runtime/cgo.Handle value as
 * the user pointer.
 */
#ifndef MXGW_CAPI_GLUE_H
#define MXGW_CAPI_GLUE_H

#include <stdint.h>
#include <mxgw/mxgw_session.h>
#include <mxgw/mxgw_server.h>
#include <mxgw/mxgw_spf.h>

/* Install the session log hook: every record calls the Go function behind
 * `handle` (a cgo.Handle). handle 0 removes the hook. The caller keeps the
 * handle alive while the session lives and deletes it afterwards. */
void capi_session_set_log(mxgw_session *s, uintptr_t handle);

/* Server hooks: the log hook and the policy callback of a stage call the
 * Go functions behind the cgo.Handle values (0 removes the hook). They run
 * on library threads (loop, delivery, policy workers); the Go side
 * recovers panics. The caller keeps the handles alive while any server
 * uses the configuration. */
int capi_server_config_set_log(mxgw_server_config *cfg, uintptr_t handle);
int capi_server_config_set_policy(mxgw_server_config *cfg, int stage,
                                  uintptr_t handle);

/* SPF in few crossings (each cgo call costs ~40-100 ns): start the check
 * and drive it for up to slice_ms (-1: until done). Returns MXGW_OK (done),
 * MXGW_E_TIMEOUT (still running: *out is set, continue with
 * mxgw_spf_check_run()), or an error of mxgw_spf_check_start() /
 * mxgw_spf_check_run() (then *out is NULL). */
int capi_spf_check(mxgw_spf *spf, const char *ip, const char *helo,
                   const char *mail_from, int identity, int64_t slice_ms,
                   mxgw_spf_check **out);

/* Pack a finished check's items into obuf (little-endian host order):
 * int32 result; for the string items 1..9: uint32 length (0xffffffff when
 * not set) and the bytes; then the int64 items 100..104. Returns the size
 * needed (nothing is written past cap; call again with a larger buffer),
 * or a negative error (MXGW_E_STATE: running). */
int capi_spf_collect(const mxgw_spf_check *chk, void *obuf, size_t cap);

/* poll() one descriptor: returns its revents (0 on timeout), or -errno.
 * fd < 0 just sleeps for timeout_ms. Used to drive an mxgw_lmtp_conn from
 * Go with a context (the Go side polls in short slices). */
int capi_poll(int fd, int events, int timeout_ms);

/* Bytes of C heap in use (glibc mallinfo2: every arena, small blocks plus
 * mmapped chunks), for the leak tests. */
long long capi_malloc_inuse(void);

/* The cheapest call into libmxgw, for measuring per-call overhead. */
int capi_noop(int x);

#endif
