/* SPDX-License-Identifier: MIT */
/*
 * failmem.h: the failing allocator of the tests and fuzz targets (header
 * only). An mxgw_mem whose malloc/calloc/realloc hooks count every
 * allocation attempt (1-based) and make attempt `fail_at` return NULL
 * (once), or, with `sticky`, every attempt from `fail_at` on. fail_at 0:
 * nothing fails. It also counts the blocks currently allocated (`live`,
 * 0 again once everything it handed out was freed) and records whether an
 * injected failure was reached (`failed`).
 *
 * The counters are atomics, so an allocator may be shared by threads (the
 * queue's workers allocate on their own threads); fail_at and sticky are
 * plain fields, set before the allocator is used or while no other thread
 * allocates. A zero-initialised failmem never fails:
 *
 *   failmem f = {.fail_at = 3, .sticky = true};
 *   mxgw_mem mem = failmem_mem(&f);
 *   ... use &mem; then check atomic_load(&f.live) == 0 ...
 *
 * Fields may be read and assigned directly (f.n = 0 resets the count);
 * on an _Atomic field that is an atomic load or store. The hooks allocate
 * at least one byte, so a zero-size request is not the C library's
 * implementation-defined case (realloc(p, 0) does not free p).
 */
#ifndef MXGW_TESTS_FAILMEM_H
#define MXGW_TESTS_FAILMEM_H

#include <mxgw/mxgw_common.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* FAILMEM_HAVE_LSAN: LeakSanitizer is there (ASan build, gcc or clang);
 * then <sanitizer/lsan_interface.h> is included, for a test's
 * __lsan_do_recoverable_leak_check() after a loop of runs. */
#if defined(__SANITIZE_ADDRESS__)
#define FAILMEM_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAILMEM_HAVE_LSAN 1
#endif
#endif
#ifdef FAILMEM_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

typedef struct failmem {
  atomic_long n;     /* allocation attempts so far */
  long fail_at;      /* the attempt that fails (1-based); 0: none */
  bool sticky;       /* every attempt from fail_at on fails */
  atomic_long live;  /* blocks currently allocated */
  atomic_int failed; /* an injected failure was reached */
} failmem;

/* Counts one attempt; true if it is to fail. */
static inline bool failmem_fail(failmem *f) {
  long n = atomic_fetch_add(&f->n, 1) + 1;
  if (f->fail_at && (n == f->fail_at || (f->sticky && n > f->fail_at))) {
    atomic_store(&f->failed, 1);
    return true;
  }
  return false;
}

static inline void *failmem_malloc(size_t size, void *u) {
  failmem *f = u;
  if (failmem_fail(f))
    return NULL;
  void *p = malloc(size ? size : 1);
  if (p)
    atomic_fetch_add(&f->live, 1);
  return p;
}

static inline void *failmem_calloc(size_t nmemb, size_t size, void *u) {
  failmem *f = u;
  if (failmem_fail(f))
    return NULL;
  void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
  if (p)
    atomic_fetch_add(&f->live, 1);
  return p;
}

static inline void *failmem_realloc(void *ptr, size_t size, void *u) {
  failmem *f = u;
  if (failmem_fail(f))
    return NULL;
  void *p = realloc(ptr, size ? size : 1);
  if (p && !ptr)
    atomic_fetch_add(&f->live, 1);
  return p;
}

static inline void failmem_free(void *ptr, void *u) {
  failmem *f = u;
  if (ptr)
    atomic_fetch_sub(&f->live, 1);
  free(ptr);
}

/* The mxgw_mem for f (f must outlive every object given it). */
static inline mxgw_mem failmem_mem(failmem *f) {
  mxgw_mem m = {f, failmem_malloc, failmem_free, failmem_calloc,
                failmem_realloc};
  return m;
}

#endif /* MXGW_TESTS_FAILMEM_H */
