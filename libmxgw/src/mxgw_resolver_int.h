/* SPDX-License-Identifier: MIT */
/*
 * mxgw_resolver_int.h: what resolver backends share. A backend embeds
 * `struct mxgw_resolver` as its first member and fills in an ops table;
 * mxgw_resolver.c dispatches the public calls through it and owns the
 * answer type and the generic poll() loop of mxgw_resolver_run().
 */
#ifndef MXGW_RESOLVER_INT_H
#define MXGW_RESOLVER_INT_H

#include "mxgw/mxgw_resolver.h"
#include "mxgw_int.h"

typedef struct mxgw_resolver_ops {
  const char *name; /* "static", "ares" */
  int (*query)(mxgw_resolver *r, const char *name, int type, mxgw_dns_cb cb,
               void *arg, mxgw_dns_query **q);
  void (*cancel)(mxgw_resolver *r, mxgw_dns_query *q);
  size_t (*pending)(const mxgw_resolver *r);
  int (*fds)(mxgw_resolver *r, int *fds, int *events, int cap);
  int64_t (*timeout)(mxgw_resolver *r);
  int (*process)(mxgw_resolver *r, int fd, int events);
  /* complete pending queries with MXGW_DNS_ERROR, then free everything */
  void (*destroy)(mxgw_resolver *r);
} mxgw_resolver_ops;

struct mxgw_resolver {
  const mxgw_resolver_ops *ops;
  mxgw_mem mem;
  char errmsg[256];
};

/* One resource record as an answer holds it. */
typedef struct mxgw_dns_rr {
  const char *data; /* see mxgw_dns_answer_data() */
  size_t len;
  int pref; /* MX preference */
} mxgw_dns_rr;

struct mxgw_dns_answer {
  int type;
  uint32_t ttl;
  size_t n;
  const mxgw_dns_rr *rr;
};

int mxgw__resolver_set_err(mxgw_resolver *r, int code, const char *fmt, ...)
    MXGW_PRINTF(3, 4);

/* The loop behind mxgw_resolver_run(): drive r (poll over its descriptors,
 * its timer) until stop(arg) returns non-zero (checked before each wait) or
 * timeout_ms passes (-1: no limit). MXGW_OK, MXGW_E_TIMEOUT, or an error. */
int mxgw__resolver_run_until(mxgw_resolver *r, int64_t timeout_ms,
                             int (*stop)(void *), void *arg);

#endif /* MXGW_RESOLVER_INT_H */
