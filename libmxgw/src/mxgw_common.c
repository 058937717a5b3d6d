/* SPDX-License-Identifier: MIT */
/*
 * mxgw_common.c: status-code strings, the version query, and the allocator
 * wrappers used by every module.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mxgw/mxgw_version.h"
#include "mxgw_int.h"

const char *mxgw_strerror(int err) {
  switch (err) {
#define MXGW_XX_(name, val, str)                                               \
  case val:                                                                    \
    return str;
    MXGW_ERRNO_MAP(MXGW_XX_)
#undef MXGW_XX_
  default:
    return "unknown error";
  }
}

const char *mxgw_errname(int err) {
  switch (err) {
#define MXGW_XX_(name, val, str)                                               \
  case val:                                                                    \
    return "MXGW_" #name;
    MXGW_ERRNO_MAP(MXGW_XX_)
#undef MXGW_XX_
  default:
    return "MXGW_E_UNKNOWN";
  }
}

const char *mxgw_version(int *num) {
  if (num)
    *num = MXGW_VERSION_NUM;
  return MXGW_VERSION_STR;
}

static void *std_malloc(size_t n, void *u) { (void)u; return malloc(n); }
static void std_free(void *p, void *u) { (void)u; free(p); }
static void *std_calloc(size_t a, size_t b, void *u) { (void)u; return calloc(a, b); }
static void *std_realloc(void *p, size_t n, void *u) { (void)u; return realloc(p, n); }

void mxgw__mem_init(mxgw_mem *dst, const mxgw_mem *src) {
  if (src && src->malloc_fn && src->free_fn && src->realloc_fn) {
    *dst = *src;
  } else {
    dst->user = NULL;
    dst->malloc_fn = std_malloc;
    dst->free_fn = std_free;
    dst->calloc_fn = std_calloc;
    dst->realloc_fn = std_realloc;
  }
}

void *mxgw__malloc(const mxgw_mem *m, size_t n) {
  return m->malloc_fn(n ? n : 1, m->user);
}

void *mxgw__calloc(const mxgw_mem *m, size_t nmemb, size_t n) {
  if (m->calloc_fn)
    return m->calloc_fn(nmemb ? nmemb : 1, n ? n : 1, m->user);
  if (n && nmemb > SIZE_MAX / n)
    return NULL;
  size_t total = nmemb * n;
  void *p = m->malloc_fn(total ? total : 1, m->user);
  if (p)
    memset(p, 0, nmemb * n);
  return p;
}

void *mxgw__realloc(const mxgw_mem *m, void *p, size_t n) {
  return m->realloc_fn(p, n ? n : 1, m->user);
}

void mxgw__free(const mxgw_mem *m, void *p) {
  if (p)
    m->free_fn(p, m->user);
}

char *mxgw__memdup0(const mxgw_mem *m, const char *s, size_t n) {
  char *d = mxgw__malloc(m, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

char *mxgw__strdup(const mxgw_mem *m, const char *s) {
  return mxgw__memdup0(m, s, strlen(s));
}

bool mxgw__ieq(const char *a, size_t alen, const char *b) {
  size_t i;
  for (i = 0; i < alen; i++) {
    if (b[i] == '\0' || mxgw__lower((unsigned char)a[i]) != mxgw__lower((unsigned char)b[i]))
      return false;
  }
  return b[i] == '\0';
}

bool mxgw__iprefix(const char *a, size_t alen, const char *prefix) {
  size_t i;
  for (i = 0; prefix[i]; i++) {
    if (i >= alen || mxgw__lower((unsigned char)a[i]) != mxgw__lower((unsigned char)prefix[i]))
      return false;
  }
  return true;
}

int64_t mxgw__mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mxgw__sock_nodelay(int fd, int family) {
  if (family != AF_INET && family != AF_INET6)
    return;
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
