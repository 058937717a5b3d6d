/* SPDX-License-Identifier: MIT */
/*
 * mxgw_resolver_ares.h: internal counters of the c-ares resolver, for the
 * real-DNS tests and the benchmarks (which link the static library): how
 * many lookups were asked, how many DNS queries actually went to c-ares,
 * how many were answered from the cache or joined a query already in
 * flight, and how many TCP connections c-ares opened (truncated UDP
 * answers). Not part of the public API.
 */
#ifndef MXGW_RESOLVER_ARES_H
#define MXGW_RESOLVER_ARES_H

#include <stdint.h>

#include "mxgw/mxgw_resolver.h"

typedef struct mxgw__ares_stats {
  uint64_t lookups;     /* mxgw_resolver_query() calls accepted */
  uint64_t sent;        /* queries handed to c-ares (CNAME restarts too) */
  uint64_t cache_hits;  /* lookups answered from the cache */
  uint64_t coalesced;   /* lookups that joined an identical one in flight */
  uint64_t tcp_sockets; /* TCP connections opened (truncation fallback) */
  uint64_t cache_entries; /* entries in the cache now */
  uint64_t evictions;   /* entries dropped because the cache was full */
} mxgw__ares_stats;

/* Fill *st. Errors: MXGW_E_UNSUPPORTED if r is not a c-ares resolver. */
int mxgw__resolver_ares_stats(const mxgw_resolver *r, mxgw__ares_stats *st);

#endif /* MXGW_RESOLVER_ARES_H */
