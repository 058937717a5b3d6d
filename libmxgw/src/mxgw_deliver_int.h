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

/* One failed recipient to report in a DSN. */
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
  int64_t size_limit;      /* largest original returned whole */
  int64_t now;             /* Unix seconds */
} mxgw__dsn_args;

/*
 * Compose an RFC 3464 non-delivery report for `n` failed recipients of
 * entry `e` and commit it (blocking) into `bq`, envelope sender <>.
 * On success *dsn_id (size >= 32) holds its queue ID.
 * Errors: MXGW_E_INVAL (null sender), queue errors.
 */
int mxgw__dsn_queue(struct mxgw_queue *bq, const mxgw_queue_entry *e,
                    const mxgw__dsn_rcpt *r, size_t n,
                    const mxgw__dsn_args *a, char *dsn_id);

/* "Mon, 02 Jan 2006 15:04:05 +0000" (RFC 5322, UTC, locale free). */
void mxgw__rfc5322_date(int64_t t, char *out, size_t size);

#endif /* MXGW_DELIVER_INT_H */
