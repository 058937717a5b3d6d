/* SPDX-License-Identifier: MIT */
/*
 * mxgw_int.h: internal helpers shared by the library's modules: the
 * per-object allocator, a growable byte buffer, a bump arena for per-
 * transaction strings, and small string utilities. Nothing here is exported;
 * non-static internals carry the mxgw__ prefix.
 */
#ifndef MXGW_INT_H
#define MXGW_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mxgw/mxgw_common.h"

#if defined(__GNUC__) || defined(__clang__)
#define MXGW_LIKELY(x) __builtin_expect(!!(x), 1)
#define MXGW_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MXGW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MXGW_LIKELY(x) (x)
#define MXGW_UNLIKELY(x) (x)
#define MXGW_PRINTF(a, b)
#endif

/* Allocator: a copy of the caller's mxgw_mem, or the C library's. */
void mxgw__mem_init(mxgw_mem *dst, const mxgw_mem *src);
void *mxgw__malloc(const mxgw_mem *m, size_t n);
void *mxgw__calloc(const mxgw_mem *m, size_t nmemb, size_t n);
void *mxgw__realloc(const mxgw_mem *m, void *p, size_t n);
void mxgw__free(const mxgw_mem *m, void *p);
char *mxgw__strdup(const mxgw_mem *m, const char *s);
char *mxgw__memdup0(const mxgw_mem *m, const char *s, size_t n);

/* CLOCK_MONOTONIC in milliseconds (the drivers' clock; the sans-IO cores
 * never read a clock). */
int64_t mxgw__mono_ms(void);
/* A new TCP client socket (IPv4/IPv6; no-op for others): TCP_NODELAY, so
 * that a command written after a small one is not held back by Nagle until
 * the peer's delayed ACK (40 ms per exchange on Linux) */
void mxgw__sock_nodelay(int fd, int family);

/* A growable byte buffer: data[off .. len) is the live content. */
typedef struct mxgw_buf {
  char *data;
  size_t off; /* first live byte */
  size_t len; /* end of live bytes */
  size_t cap;
} mxgw_buf;

static inline size_t mxgw__buf_size(const mxgw_buf *b) { return b->len - b->off; }
static inline const char *mxgw__buf_ptr(const mxgw_buf *b) { return b->data ? b->data + b->off : ""; }
/* Make room for n more bytes at the end (compacting or growing). */
int mxgw__buf_reserve(mxgw_buf *b, const mxgw_mem *m, size_t n);
int mxgw__buf_append(mxgw_buf *b, const mxgw_mem *m, const void *p, size_t n);
int mxgw__buf_appendf(mxgw_buf *b, const mxgw_mem *m, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
int mxgw__buf_vappendf(mxgw_buf *b, const mxgw_mem *m, const char *fmt,
                       va_list ap) MXGW_PRINTF(3, 0);
void mxgw__buf_consume(mxgw_buf *b, size_t n);
void mxgw__buf_reset(mxgw_buf *b);
void mxgw__buf_free(mxgw_buf *b, const mxgw_mem *m);

/* A bump arena for strings that live as long as one transaction. */
typedef struct mxgw_arena_block mxgw_arena_block;
typedef struct mxgw_arena {
  mxgw_arena_block *head;
  size_t used; /* bytes used in head */
} mxgw_arena;
void *mxgw__arena_alloc(mxgw_arena *a, const mxgw_mem *m, size_t n);
char *mxgw__arena_strndup(mxgw_arena *a, const mxgw_mem *m, const char *s,
                          size_t n);
void mxgw__arena_reset(mxgw_arena *a, const mxgw_mem *m); /* keeps one block */
void mxgw__arena_free(mxgw_arena *a, const mxgw_mem *m);

/* ASCII helpers (locale independent). */
static inline int mxgw__lower(int c) {
  return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}
bool mxgw__ieq(const char *a, size_t alen, const char *b); /* b NUL-terminated */
bool mxgw__iprefix(const char *a, size_t alen, const char *prefix);

#endif /* MXGW_INT_H */
