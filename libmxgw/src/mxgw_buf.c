/* SPDX-License-Identifier: MIT */
/*
 * mxgw_buf.c: the growable byte buffer and the per-transaction arena.
 * Buffers compact (move live bytes to the front) before they grow, so a
 * buffer that is drained as fast as it is filled never reallocates.
 */
#include <stdio.h>
#include <string.h>

#include "mxgw_int.h"

int mxgw__buf_reserve(mxgw_buf *b, const mxgw_mem *m, size_t n) {
  size_t live = b->len - b->off;
  if (b->cap - b->len >= n)
    return MXGW_OK;
  if (b->off && b->cap - live >= n) {
    memmove(b->data, b->data + b->off, live);
    b->off = 0;
    b->len = live;
    return MXGW_OK;
  }
  if (n > SIZE_MAX / 2 - live)
    return MXGW_E_NOMEM;
  size_t want = live + n, cap = b->cap ? b->cap : 256;
  while (cap < want)
    cap *= 2;
  char *d;
  if (b->off == 0) {
    d = mxgw__realloc(m, b->data, cap);
    if (!d)
      return MXGW_E_NOMEM;
  } else {
    d = mxgw__malloc(m, cap);
    if (!d)
      return MXGW_E_NOMEM;
    memcpy(d, b->data + b->off, live);
    mxgw__free(m, b->data);
  }
  b->data = d;
  b->cap = cap;
  b->off = 0;
  b->len = live;
  return MXGW_OK;
}

int mxgw__buf_append(mxgw_buf *b, const mxgw_mem *m, const void *p, size_t n) {
  if (n == 0)
    return MXGW_OK;
  int rv = mxgw__buf_reserve(b, m, n);
  if (rv)
    return rv;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return MXGW_OK;
}

int mxgw__buf_vappendf(mxgw_buf *b, const mxgw_mem *m, const char *fmt,
                       va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    return MXGW_E_INVAL;
  if ((size_t)n < sizeof tmp)
    return mxgw__buf_append(b, m, tmp, (size_t)n);
  int rv = mxgw__buf_reserve(b, m, (size_t)n + 1);
  if (rv)
    return rv;
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
  return MXGW_OK;
}

int mxgw__buf_appendf(mxgw_buf *b, const mxgw_mem *m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rv = mxgw__buf_vappendf(b, m, fmt, ap);
  va_end(ap);
  return rv;
}

void mxgw__buf_consume(mxgw_buf *b, size_t n) {
  b->off += n;
  if (b->off >= b->len)
    b->off = b->len = 0;
}

void mxgw__buf_reset(mxgw_buf *b) { b->off = b->len = 0; }

void mxgw__buf_free(mxgw_buf *b, const mxgw_mem *m) {
  mxgw__free(m, b->data);
  b->data = NULL;
  b->off = b->len = b->cap = 0;
}

/* Arena: a singly linked list of blocks; big requests get their own. */
struct mxgw_arena_block {
  mxgw_arena_block *next;
  size_t size;
  /* followed by size bytes, max-aligned */
  _Alignas(max_align_t) char mem[];
};

#define ARENA_BLOCK 1024

void *mxgw__arena_alloc(mxgw_arena *a, const mxgw_mem *m, size_t n) {
  n = (n + 15) & ~(size_t)15;
  if (!a->head || a->head->size - a->used < n) {
    size_t sz = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    mxgw_arena_block *blk = mxgw__malloc(m, sizeof *blk + sz);
    if (!blk)
      return NULL;
    blk->size = sz;
    blk->next = a->head;
    a->head = blk;
    a->used = 0;
  }
  void *p = a->head->mem + a->used;
  a->used += n;
  return p;
}

char *mxgw__arena_strndup(mxgw_arena *a, const mxgw_mem *m, const char *s,
                          size_t n) {
  char *d = mxgw__arena_alloc(a, m, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void mxgw__arena_reset(mxgw_arena *a, const mxgw_mem *m) {
  /* Keep the oldest standard-size block to avoid malloc churn per message. */
  mxgw_arena_block *keep = NULL, *b = a->head;
  while (b) {
    mxgw_arena_block *next = b->next;
    if (!next && b->size == ARENA_BLOCK)
      keep = b;
    else
      mxgw__free(m, b);
    b = next;
  }
  if (keep)
    keep->next = NULL;
  a->head = keep;
  a->used = 0;
}

void mxgw__arena_free(mxgw_arena *a, const mxgw_mem *m) {
  mxgw_arena_block *b = a->head;
  while (b) {
    mxgw_arena_block *next = b->next;
    mxgw__free(m, b);
    b = next;
  }
  a->head = NULL;
  a->used = 0;
}
