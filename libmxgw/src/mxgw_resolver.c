/* SPDX-License-Identifier: MIT */
/*
 * mxgw_resolver.c: the backend-independent half of the resolver interface:
 * public calls dispatched through the backend's ops table, the answer
 * accessors, status names, error detail, and the generic blocking loop
 * (poll() over mxgw_resolver_fds(), with mxgw_resolver_timeout() as the
 * timer) behind mxgw_resolver_run() and mxgw_spf_check_run().
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mxgw_int.h"
#include "mxgw_resolver_int.h"

const char *mxgw_dns_status_name(int status) {
  switch (status) {
  case MXGW_DNS_OK:
    return "NOERROR";
  case MXGW_DNS_NODATA:
    return "NODATA";
  case MXGW_DNS_NXDOMAIN:
    return "NXDOMAIN";
  case MXGW_DNS_SERVFAIL:
    return "SERVFAIL";
  case MXGW_DNS_TIMEOUT:
    return "TIMEOUT";
  case MXGW_DNS_ERROR:
    return "ERROR";
  default:
    return "UNKNOWN";
  }
}

int mxgw__resolver_set_err(mxgw_resolver *r, int code, const char *fmt, ...) {
  if (r) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* ---- answers ---------------------------------------------------------- */

size_t mxgw_dns_answer_count(const mxgw_dns_answer *a) { return a ? a->n : 0; }

uint32_t mxgw_dns_answer_ttl(const mxgw_dns_answer *a) {
  return a ? a->ttl : 0;
}

int mxgw_dns_answer_data(const mxgw_dns_answer *a, size_t i, const char **ptr,
                         size_t *len) {
  if (!a || !ptr || !len)
    return MXGW_E_INVAL;
  if (i >= a->n)
    return MXGW_E_RANGE;
  *ptr = a->rr[i].data;
  *len = a->rr[i].len;
  return MXGW_OK;
}

int mxgw_dns_answer_pref(const mxgw_dns_answer *a, size_t i) {
  if (!a || i >= a->n)
    return 0;
  return a->rr[i].pref;
}

/* ---- dispatch --------------------------------------------------------- */

void mxgw_resolver_free(mxgw_resolver *r) {
  if (r)
    r->ops->destroy(r);
}

int mxgw_resolver_query(mxgw_resolver *r, const char *name, int type,
                        mxgw_dns_cb cb, void *arg, mxgw_dns_query **q) {
  if (q)
    *q = NULL;
  if (!r)
    return MXGW_E_INVAL;
  if (!name || !cb)
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "NULL name or callback");
  switch (type) {
  case MXGW_DNS_A:
  case MXGW_DNS_CNAME:
  case MXGW_DNS_PTR:
  case MXGW_DNS_MX:
  case MXGW_DNS_TXT:
  case MXGW_DNS_AAAA:
    break;
  default:
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "unsupported type %d",
                                  type);
  }
  return r->ops->query(r, name, type, cb, arg, q);
}

void mxgw_resolver_cancel(mxgw_resolver *r, mxgw_dns_query *q) {
  if (r && q)
    r->ops->cancel(r, q);
}

size_t mxgw_resolver_pending(const mxgw_resolver *r) {
  return r ? r->ops->pending(r) : 0;
}

int mxgw_resolver_fds(mxgw_resolver *r, int *fds, int *events, int cap) {
  if (!r || cap < 0 || (cap > 0 && (!fds || !events)))
    return MXGW_E_INVAL;
  return r->ops->fds(r, fds, events, cap);
}

int64_t mxgw_resolver_timeout(mxgw_resolver *r) {
  return r ? r->ops->timeout(r) : -1;
}

int mxgw_resolver_process(mxgw_resolver *r, int fd, int events) {
  if (!r)
    return MXGW_E_INVAL;
  return r->ops->process(r, fd, events);
}

const char *mxgw_resolver_errmsg(const mxgw_resolver *r) {
  return r ? r->errmsg : "";
}

/* ---- the blocking loop ------------------------------------------------ */


#define RUN_STACK_FDS 16

/*
 * Drive r until stop(arg) says so (checked before every wait) or
 * timeout_ms passes. Every round either completes work that is due now
 * (timeout() == 0) or waits in poll() for the earliest of: a ready
 * descriptor, the resolver's timer, our own deadline.
 */
int mxgw__resolver_run_until(mxgw_resolver *r, int64_t timeout_ms,
                             int (*stop)(void *), void *arg) {
  if (!r)
    return MXGW_E_INVAL;
  int64_t deadline = timeout_ms >= 0 ? mxgw__mono_ms() + timeout_ms : -1;
  struct pollfd stack_pfd[RUN_STACK_FDS];
  int stack_fds[RUN_STACK_FDS], stack_ev[RUN_STACK_FDS];
  struct pollfd *pfd = stack_pfd;
  int *fds = stack_fds, *ev = stack_ev;
  int cap = RUN_STACK_FDS, rv = MXGW_OK;

  while (!stop(arg)) {
    int64_t t = r->ops->timeout(r);
    if (t == 0) {
      int n = r->ops->process(r, -1, 0);
      if (n < 0) {
        rv = n;
        break;
      }
      continue;
    }
    int n = r->ops->fds(r, fds, ev, cap);
    if (n < 0) {
      rv = n;
      break;
    }
    if (n > cap) {
      /* grow the descriptor arrays and ask again */
      if (pfd != stack_pfd) {
        mxgw__free(&r->mem, pfd);
        mxgw__free(&r->mem, fds);
        mxgw__free(&r->mem, ev);
      }
      pfd = mxgw__calloc(&r->mem, (size_t)n, sizeof *pfd);
      fds = mxgw__calloc(&r->mem, (size_t)n, sizeof *fds);
      ev = mxgw__calloc(&r->mem, (size_t)n, sizeof *ev);
      cap = n;
      if (!pfd || !fds || !ev) {
        rv = mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
        break;
      }
      continue;
    }
    int64_t wait = t;
    if (deadline >= 0) {
      int64_t left = deadline - mxgw__mono_ms();
      if (left <= 0) {
        rv = MXGW_E_TIMEOUT;
        break;
      }
      if (wait < 0 || left < wait)
        wait = left;
    }
    if (n == 0 && wait < 0) {
      /* pending work but nothing to wait for: a backend bug */
      rv = mxgw__resolver_set_err(r, MXGW_E_STATE,
                                  "queries pending but nothing to wait for");
      break;
    }
    for (int i = 0; i < n; i++) {
      pfd[i].fd = fds[i];
      pfd[i].events = (short)(((ev[i] & 1) ? POLLIN : 0) |
                              ((ev[i] & 2) ? POLLOUT : 0));
      pfd[i].revents = 0;
    }
    int pr = poll(pfd, (nfds_t)n, wait > 1000000 ? 1000000 : (int)wait);
    if (pr < 0) {
      if (errno == EINTR)
        continue;
      rv = mxgw__resolver_set_err(r, MXGW_E_IO, "poll: %s", strerror(errno));
      break;
    }
    if (pr == 0) {
      /* the resolver's timer (or our deadline, seen next round) */
      if (t >= 0) {
        int k = r->ops->process(r, -1, 0);
        if (k < 0) {
          rv = k;
          break;
        }
      }
      continue;
    }
    for (int i = 0; i < n; i++) {
      if (!pfd[i].revents)
        continue;
      int e = 0;
      if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
        e |= 1;
      if (pfd[i].revents & POLLOUT)
        e |= 2;
      if ((pfd[i].revents & (POLLERR | POLLNVAL | POLLHUP)) && (ev[i] & 2))
        e |= 2;
      int k = r->ops->process(r, pfd[i].fd, e);
      if (k < 0) {
        rv = k;
        break;
      }
    }
    if (rv)
      break;
  }
  if (pfd != stack_pfd) {
    mxgw__free(&r->mem, pfd);
    mxgw__free(&r->mem, fds);
    mxgw__free(&r->mem, ev);
  }
  return rv;
}

static int none_pending(void *arg) {
  mxgw_resolver *r = arg;
  return r->ops->pending(r) == 0;
}

int mxgw_resolver_run(mxgw_resolver *r, int64_t timeout_ms) {
  if (!r)
    return MXGW_E_INVAL;
  return mxgw__resolver_run_until(r, timeout_ms, none_pending, r);
}
