/* SPDX-License-Identifier: MIT */
/*
 * mxgw_deliver_dsn.c: delivery status notifications (RFC 3464) for failed,
 * delayed and (NOTIFY=SUCCESS) delivered recipients. The report is a
 * multipart/report; report-type=delivery-status (RFC 6522) with a
 * human-readable part, a message/delivery-status part (per-message fields
 * Reporting-MTA, Original-Envelope-Id, Arrival-Date; per recipient
 * Final-Recipient, Original-Recipient from ORCPT, Action: failed, delayed
 * or delivered, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
 * Will-Retry-Until for delayed) and the original message (message/rfc822)
 * or only its header (text/rfc822-headers). A failure report returns only
 * the header when the sender asked for RET=HDRS or the message is larger
 * than the bounce size limit; delay and success reports always return only
 * the header (RFC 3461 4.3: "If a DSN contains no indications of delivery
 * failure, only the headers of the message SHOULD be returned"; Postfix
 * does the same). It is committed into a queue like any
 * accepted message, from the null sender (RFC 5321 4.5.5, so it never
 * causes another notification), to the original sender or to a configured
 * bounce mailbox.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mxgw_deliver_int.h"

void mxgw__rfc5322_date(int64_t t, char *out, size_t size) {
  static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed",
                                   "Thu", "Fri", "Sat"};
  static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d +0000", wd[tm.tm_wday],
           tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
           tm.tm_sec);
}

typedef struct out {
  mxgw_queue_msg *msg;
  int rv;
} out;

static void put(out *o, const char *s, size_t n) {
  if (!o->rv && n)
    o->rv = mxgw_queue_write(o->msg, s, n);
}

static void putf(out *o, const char *fmt, ...) MXGW_PRINTF(2, 3);
static void putf(out *o, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* A reply on one line, control characters replaced (header field safe). */
static void flat(char *dst, size_t n, int code, const char *enh,
                 const char *text) {
  size_t o = 0;
  if (code)
    o = (size_t)snprintf(dst, n, "%d ", code);
  if (*enh && o < n)
    o += (size_t)snprintf(dst + o, n - o, "%s ", enh);
  for (const char *p = text; *p && o + 1 < n; p++)
    dst[o++] = (unsigned char)*p < 0x20 ? ' ' : *p;
  if (o >= n)
    o = n - 1;
  while (o && dst[o - 1] == ' ')
    o--;
  dst[o] = 0;
}

/* Copy the original: whole, or its header up to the empty line. */
static void copy_original(out *o, const mxgw_queue_entry *e,
                          bool headers_only) {
  int fd;
  int64_t pos, left;
  if (mxgw_queue_entry_body(e, &fd, &pos, &left) != MXGW_OK) {
    o->rv = MXGW_E_IO;
    return;
  }
  char buf[65536];
  int state = 0; /* headers_only: how much of "\r\n\r\n" (or "\n\n") seen */
  bool at_eol = true;
  for (;;) {
    ssize_t r = left <= 0 ? 0
                          : pread(fd, buf,
                                  left < (int64_t)sizeof buf ? (size_t)left
                                                             : sizeof buf,
                                  (off_t)pos);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      o->rv = MXGW_E_IO;
      break;
    }
    if (r == 0)
      break;
    pos += r;
    left -= r;
    size_t n = (size_t)r;
    if (headers_only) {
      size_t i;
      for (i = 0; i < n; i++) {
        char ch = buf[i];
        if (ch == '\n') {
          if (state == 1) {
            state = 2;
            break;
          }
          state = 1;
        } else if (ch != '\r') {
          state = 0;
        }
      }
      if (state == 2) {
        put(o, buf, i + 1);
        at_eol = true;
        break;
      }
    }
    put(o, buf, n);
    at_eol = buf[n - 1] == '\n';
    if (o->rv)
      break;
  }
  close(fd);
  if (!at_eol)
    put(o, "\r\n", 2);
}

int mxgw__dsn_queue(struct mxgw_queue *bq, const mxgw_queue_entry *e,
                    const mxgw__dsn_rcpt *r, size_t n, const mxgw__dsn_args *a,
                    char *dsn_id) {
  const char *sender = "", *id = "", *envid = "", *ret = "", *body = "";
  size_t l;
  mxgw_queue_entry_get_str(e, MXGW_QKEY_SENDER, &sender, &l);
  mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &id, &l);
  if (mxgw_queue_entry_get_str(e, MXGW_QKEY_ENVID, &envid, &l))
    envid = "";
  if (mxgw_queue_entry_get_str(e, MXGW_QKEY_RET, &ret, &l))
    ret = "";
  if (mxgw_queue_entry_get_str(e, MXGW_QKEY_BODY, &body, &l))
    body = "";
  int64_t arrival = 0, size = 0, utf8 = 0;
  mxgw_queue_entry_get_int(e, MXGW_QKEY_ARRIVAL, &arrival);
  mxgw_queue_entry_get_int(e, MXGW_QKEY_SIZE, &size);
  mxgw_queue_entry_get_int(e, MXGW_QKEY_SMTPUTF8, &utf8);
  if (!*sender || n == 0)
    return MXGW_E_INVAL;
  const char *to = a->bounce_rcpt && *a->bounce_rcpt ? a->bounce_rcpt
                                                     : sender;
  bool failed = a->kind == MXGW__DSN_FAILED;
  bool delayed = a->kind == MXGW__DSN_DELAYED;
  bool headers_only =
      !failed || strcmp(ret, "HDRS") == 0 || size > a->size_limit;

  mxgw_queue_msg *msg;
  int rv = mxgw_queue_begin(bq, &msg);
  if (rv)
    return rv;
  const char *did;
  size_t dl;
  mxgw_queue_msg_id(msg, &did, &dl);
  snprintf(dsn_id, 32, "%.*s", (int)dl, did);
  out o = {msg, 0};
  char now[64], arr[64], until[64];
  mxgw__rfc5322_date(a->now, now, sizeof now);
  mxgw__rfc5322_date(arrival, arr, sizeof arr);
  mxgw__rfc5322_date(a->retry_until, until, sizeof until);
  const char *subject = failed    ? "Undelivered Mail Returned to Sender"
                        : delayed ? "Delayed Mail (still being retried)"
                                  : "Successful Mail Delivery Report";
  char boundary[200];
  snprintf(boundary, sizeof boundary, "%s/%.150s", did, a->hostname);

  putf(&o,
       "Date: %s\r\n"
       "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
       "To: <%s>\r\n"
       "Subject: %s\r\n"
       "Message-ID: <%s@%s>\r\n"
       "Auto-Submitted: auto-replied\r\n"
       "MIME-Version: 1.0\r\n"
       "Content-Type: multipart/report; report-type=delivery-status;\r\n"
       "\tboundary=\"%s\"\r\n"
       "\r\n"
       "This is a MIME-encapsulated message.\r\n"
       "\r\n",
       now, a->hostname, sender, subject, did, a->hostname, boundary);
  /* human-readable part */
  putf(&o,
       "--%s\r\n"
       "Content-Description: Notification\r\n"
       "Content-Type: text/plain; charset=utf-8\r\n"
       "\r\n"
       "This is the mail system at host %s.\r\n"
       "\r\n",
       boundary, a->hostname);
  if (failed)
    putf(&o, "I'm sorry to have to inform you that your message could not\r\n"
             "be delivered to one or more recipients. It's attached below.\r\n"
             "\r\n");
  else if (delayed)
    putf(&o,
         "####### THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR "
         "MESSAGE. #######\r\n"
         "\r\n"
         "Your message could not be delivered for %lld hours and %lld "
         "minutes.\r\n"
         "It will be retried until %s.\r\n"
         "\r\n",
         (long long)((a->now - arrival) / 3600),
         (long long)((a->now - arrival) % 3600 / 60), until);
  else
    putf(&o, "Your message was successfully delivered to the destination(s)\r\n"
             "listed below. The message was delivered to the mailbox; you\r\n"
             "will receive no further notifications for it.\r\n"
             "\r\n");
  for (size_t i = 0; i < n; i++) {
    char reply[1100];
    flat(reply, sizeof reply, r[i].code, r[i].enh, r[i].text);
    if (a->kind == MXGW__DSN_DELIVERED)
      putf(&o, "<%s>: delivered to the mailbox by %s: %s\r\n\r\n",
           r[i].addr, *r[i].relay ? r[i].relay : "the store", reply);
    else if (r[i].remote)
      putf(&o, "<%s>: host %s said: %s\r\n\r\n", r[i].addr, r[i].relay,
           reply);
    else
      putf(&o, "<%s>: %s\r\n\r\n", r[i].addr, reply);
  }
  /* machine-readable part (RFC 3464 2.2, 2.3) */
  putf(&o,
       "--%s\r\n"
       "Content-Description: Delivery report\r\n"
       "Content-Type: message/delivery-status\r\n"
       "\r\n"
       "Reporting-MTA: dns; %s\r\n"
       "X-Mxgw-Queue-ID: %s\r\n",
       boundary, a->hostname, id);
  if (*envid)
    putf(&o, "Original-Envelope-Id: %s\r\n", envid);
  putf(&o, "Arrival-Date: %s\r\n", arr);
  for (size_t i = 0; i < n; i++) {
    char reply[1100];
    flat(reply, sizeof reply, r[i].code, r[i].enh, r[i].text);
    /* the class must say what the Action says: 2 delivered, 4 delayed
     * (RFC 3464 2.3.4); a failure keeps its reply's status, an expired
     * recipient its 4.x.x */
    char status[16];
    char cls = failed ? (r[i].code >= 500 ? '5' : '4') : delayed ? '4' : '2';
    if (*r[i].enh && (failed || r[i].enh[0] == cls))
      snprintf(status, sizeof status, "%s", r[i].enh);
    else
      snprintf(status, sizeof status, "%c.0.0", cls);
    putf(&o, "\r\nFinal-Recipient: rfc822; %s\r\n", r[i].addr);
    if (*r[i].orcpt) {
      const char *semi = strchr(r[i].orcpt, ';');
      if (semi)
        putf(&o, "Original-Recipient: %.*s; %s\r\n",
             (int)(semi - r[i].orcpt), r[i].orcpt, semi + 1);
    }
    putf(&o, "Action: %s\r\nStatus: %s\r\n",
         failed ? "failed" : delayed ? "delayed" : "delivered", status);
    if (r[i].remote && *r[i].relay)
      putf(&o, "Remote-MTA: dns; %s\r\n", r[i].relay);
    if (r[i].remote)
      putf(&o, "Diagnostic-Code: smtp; %s\r\n", reply);
    else
      putf(&o, "Diagnostic-Code: X-mxgw; %s\r\n", reply);
    putf(&o, "Last-Attempt-Date: %s\r\n", now);
    if (delayed)
      putf(&o, "Will-Retry-Until: %s\r\n", until);
  }
  /* the original (RFC 3462/6522: third part) */
  putf(&o,
       "\r\n--%s\r\n"
       "Content-Description: %s\r\n"
       "Content-Type: %s\r\n"
       "\r\n",
       boundary,
       !failed        ? "Message Headers"
       : headers_only ? "Undelivered Message Headers"
                      : "Undelivered Message",
       headers_only ? "text/rfc822-headers" : "message/rfc822");
  copy_original(&o, e, headers_only);
  putf(&o, "\r\n--%s--\r\n", boundary);
  if (!o.rv)
    o.rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_SENDER, "", 0);
  if (!o.rv && !headers_only && strcmp(body, "8BITMIME") == 0)
    o.rv = mxgw_queue_msg_set_str(msg, MXGW_QKEY_BODY, "8BITMIME", 8);
  if (!o.rv && !headers_only && utf8)
    o.rv = mxgw_queue_msg_set_int(msg, MXGW_QKEY_SMTPUTF8, 1);
  if (!o.rv)
    o.rv = mxgw_queue_msg_add_rcpt(msg, to, strlen(to), 0, NULL, 0);
  if (o.rv) {
    mxgw_queue_msg_free(msg);
    return o.rv;
  }
  return mxgw_queue_commit(msg);
}
