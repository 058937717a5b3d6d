/* SPDX-License-Identifier: MIT */
/*
 * mxgw_common.h: what every libmxgw component shares: status codes, the
 * per-object allocator, and the version query.
 *
 * Thread safety: libmxgw has no mutable global state and needs no init or
 * cleanup call. Any number of handles can coexist in one process. One handle
 * may be used by one thread at a time; the caller locks if a handle moves
 * between threads. Objects documented as "frozen" (a session configuration
 * with sessions attached) are read-only and may be shared across threads;
 * their reference counts are atomic.
 *
 * Errors: every fallible call returns 0 (MXGW_OK) or a negative mxgw_err.
 * Calls that return a count return it as a non-negative int. A code at or
 * below MXGW_E_FATAL poisons the handle: only its _free function may follow.
 * Codes are never renumbered or reused.
 */
#ifndef MXGW_COMMON_H
#define MXGW_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_export.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The single list of status codes. It generates the mxgw_err enum,
 * mxgw_strerror() and mxgw_errname().
 */
#define MXGW_ERRNO_MAP(XX)                                                     \
  XX(OK, 0, "success")                                                         \
  XX(E_INVAL, -1, "invalid argument")                                          \
  XX(E_NOMEM, -2, "out of memory")                                             \
  XX(E_STATE, -3, "call not valid in the current state")                       \
  XX(E_AGAIN, -4, "resource temporarily unavailable")                          \
  XX(E_NOTFOUND, -5, "not found")                                              \
  XX(E_CLOSED, -6, "session is closed")                                        \
  XX(E_BUSY, -7, "object is in use and can no longer be changed")              \
  XX(E_RANGE, -8, "value out of range")                                        \
  XX(E_SYNTAX, -9, "syntax error")                                             \
  XX(E_IO, -10, "I/O error")                                                   \
  XX(E_TIMEOUT, -11, "timed out")                                              \
  XX(E_TLS, -12, "TLS error")                                                  \
  XX(E_DNS, -13, "DNS error")                                                  \
  XX(E_PROTOCOL, -14, "protocol error")                                        \
  XX(E_UNSUPPORTED, -15, "not supported")                                      \
  XX(E_PERM, -16, "permission denied")                                         \
  XX(E_CANCELED, -17, "operation canceled")                                    \
  XX(E_NOSPACE, -18, "no space left on device or quota exceeded")              \
  XX(E_FATAL, -900, "fatal internal error; the handle is unusable")

/** Status codes. 0 is success; every error is negative. */
typedef enum mxgw_err {
#define MXGW_XX_(name, val, str) MXGW_##name = (val),
  MXGW_ERRNO_MAP(MXGW_XX_)
#undef MXGW_XX_
} mxgw_err;

/**
 * Describe a status code in English.
 * @param err  any int; unknown values give "unknown error".
 * @return a static string, never NULL.
 * Ownership: static storage; do not free. Context: any thread.
 */
MXGW_EXTERN const char *mxgw_strerror(int err);

/**
 * The symbolic name of a status code, e.g. "MXGW_E_NOMEM".
 * @return a static string, never NULL ("MXGW_E_UNKNOWN" for unknown codes).
 * Ownership: static storage. Context: any thread.
 */
MXGW_EXTERN const char *mxgw_errname(int err);

/**
 * Run-time library version.
 * @param num  if not NULL, receives MXGW_VERSION_NUM of the built library.
 * @return the version string, e.g. "0.1.0" (static storage).
 */
MXGW_EXTERN const char *mxgw_version(int *num);

/**
 * A per-object allocator (never global). Pass NULL wherever an mxgw_mem is
 * taken to use malloc/free. The structure is copied by the constructor that
 * receives it; `user` is passed back to every hook. The hooks must behave
 * like their C library namesakes (realloc(NULL, n) == malloc(n); free(NULL)
 * is a no-op). This structure is frozen: it will never change layout.
 */
typedef struct mxgw_mem {
  void *user;
  void *(*malloc_fn)(size_t size, void *user);
  void (*free_fn)(void *ptr, void *user);
  void *(*calloc_fn)(size_t nmemb, size_t size, void *user);
  void *(*realloc_fn)(void *ptr, size_t size, void *user);
} mxgw_mem;

#ifdef __cplusplus
}
#endif

#endif /* MXGW_COMMON_H */
