/* SPDX-License-Identifier: MIT */
/*
 * doctor_mkqueue: put deferred messages into a spool with the mxgw_queue
 * API, as a gateway whose backend failed would have left them.
 *
 *   doctor_mkqueue SPOOL COUNT AGE_SECONDS CODE ENHANCED TEXT
 *
 * Each message (rcpt user<i>@example.test) arrived AGE_SECONDS ago (the
 * first one; each later one a minute later), had one delivery attempt whose
 * recipient got CODE ENHANCED TEXT (deferred), and waits for its next
 * attempt in 10 minutes. Prints the queue IDs, oldest first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mxgw/mxgw_queue.h>

static int die(const char *what, int rc) {
  fprintf(stderr, "doctor_mkqueue: %s: %s\n", what, mxgw_strerror(rc));
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: doctor_mkqueue SPOOL COUNT AGE CODE ENH TEXT\n");
    return 2;
  }
  int count = atoi(argv[2]);
  long age = atol(argv[3]);
  int code = atoi(argv[4]);
  mxgw_queue *q = NULL;
  int rc = mxgw_queue_new(&q, argv[1], NULL);
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_SYNC, 0);
  if (rc == MXGW_OK)
    rc = mxgw_queue_open(q);
  if (rc != MXGW_OK)
    return die("open", rc);
  time_t now = time(NULL);
  for (int i = 0; i < count; i++) {
    mxgw_queue_msg *m = NULL;
    char rcpt[64], body[200];
    snprintf(rcpt, sizeof rcpt, "user%d@example.test", i);
    snprintf(body, sizeof body,
             "From: <sender@origin.test>\r\nTo: <%s>\r\nSubject: deferred "
             "%d\r\n\r\nbody\r\n",
             rcpt, i);
    if ((rc = mxgw_queue_begin(q, &m)) ||
        (rc = mxgw_queue_write(m, body, strlen(body))) ||
        (rc = mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "sender@origin.test",
                                     18)) ||
        (rc = mxgw_queue_msg_set_int(m, MXGW_QKEY_ARRIVAL,
                                     (int64_t)now - age + 60 * i)) ||
        (rc = mxgw_queue_msg_add_rcpt(m, rcpt, strlen(rcpt), 0, NULL, 0))) {
      mxgw_queue_msg_free(m);
      return die("write", rc);
    }
    if ((rc = mxgw_queue_commit(m)))
      return die("commit", rc);
  }
  for (int i = 0; i < count; i++) {
    mxgw_queue_entry *e = NULL;
    if ((rc = mxgw_queue_take(q, (int64_t)now, &e)))
      return die("take", rc);
    const char *id;
    size_t l;
    if (mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &l) == MXGW_OK)
      printf("%.*s\n", (int)l, id);
    if ((rc = mxgw_queue_entry_set_rcpt(e, 0, MXGW_RCPT_DEFERRED, code,
                                        argv[5], argv[6])) ||
        (rc = mxgw_queue_finish(q, e, (int64_t)now + 600)) < 0) {
      mxgw_queue_entry_free(e);
      return die("finish", rc);
    }
    mxgw_queue_entry_free(e);
  }
  mxgw_queue_free(q);
  return 0;
}
