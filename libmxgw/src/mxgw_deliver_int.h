/* SPDX-License-Identifier: MIT */
/*
 * mxgw_deliver_int.h: internals shared by the delivery scheduler
 * (mxgw_deliver.c: options, worker threads, outcomes, logging) and its DSN
 * composer (mxgw_deliver_dsn.c: RFC 3464 reports queued to the sender).
 */
#ifndef MXGW_DELIVER_INT_H
#define MXGW_DELIVER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "mxgw/mxgw_deliver.h"
#include "mxgw/mxgw_queue.h"
#include "mxgw_int.h"

/* What a DSN reports (RFC 3464 2.3.3 Action). */
typedef enum mxgw__dsn_kind {
  MXGW__DSN_FAILED = 0,    /* non-delivery: Action: failed */
  MXGW__DSN_DELAYED = 1,   /* delay warning: Action: delayed */
  MXGW__DSN_DELIVERED = 2  /* success (NOTIFY=SUCCESS): Action: delivered */
} mxgw__dsn_kind;

/* One recipient to report in a DSN. */
typedef struct mxgw__dsn_rcpt {
  const char *addr;  /* final recipient */
  const char *orcpt; /* "type;address" or "" */
  const char *enh;   /* "5.1.1" or "" */
  const char *text;  /* reply text ("\n" between lines) */
  int code;          /* reply code */
  bool remote;       /* the reply came from the backend */
  const char *relay; /* backend host (for Remote-MTA), "" if none */
} mxgw__dsn_rcpt;

typedef struct mxgw__dsn_args {
  const char *hostname;    /* Reporting-MTA, From: MAILER-DAEMON@ */
  const char *bounce_rcpt; /* envelope recipient, "" = the sender */
  int64_t size_limit;      /* largest original returned whole (failed) */
  int64_t now;             /* Unix seconds */
  mxgw__dsn_kind kind;     /* what the report says for every recipient */
  int64_t retry_until;     /* DELAYED: Will-Retry-Until, Unix seconds */
} mxgw__dsn_args;

/*
 * Compose an RFC 3464 report of kind a->kind for `n` recipients of entry
 * `e` and commit it (blocking) into `bq`, envelope sender <>. A failure
 * report returns the original whole (or its header with RET=HDRS or above
 * the size limit); delay and success reports return the header only
 * (RFC 3461 4.3). On success *dsn_id (size >= 32) holds its queue ID.
 * Errors: MXGW_E_INVAL (null sender), queue errors.
 */
int mxgw__dsn_queue(struct mxgw_queue *bq, const mxgw_queue_entry *e,
                    const mxgw__dsn_rcpt *r, size_t n,
                    const mxgw__dsn_args *a, char *dsn_id);

/* Scheduler bookkeeping in a recipient's metadata object, an integer
 * field the queue keeps as it is (saved by mxgw_queue_save()/finish(),
 * shown by mxgw-queue): "delay_dsn", when its delay warning was queued.
 * Defined in mxgw_queue_meta.c. get: 0 if absent. set errors:
 * MXGW_E_INVAL, MXGW_E_RANGE, MXGW_E_NOMEM. */
int mxgw__queue_entry_rcpt_set_mark(mxgw_queue_entry *e, size_t idx,
                                    const char *key, int64_t value);
int64_t mxgw__queue_entry_rcpt_mark(const mxgw_queue_entry *e, size_t idx,
                                    const char *key);

/* "Mon, 02 Jan 2006 15:04:05 +0000" (RFC 5322, UTC, locale free). */
void mxgw__rfc5322_date(int64_t t, char *out, size_t size);

#endif /* MXGW_DELIVER_INT_H */
