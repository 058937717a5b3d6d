/* SPDX-License-Identifier: MIT */
/*
 * hello-session.c: the smallest complete use of the libmxgw session engine.
 * It plays one SMTP conversation from a byte string, accepts every decision
 * with the default reply, and prints the events, the message body as it
 * arrives, the Received header the engine builds, and every reply the server
 * would send. There is no socket and no clock: the session is sans-IO, so
 * the "network" here is a string going in and stdout coming out.
 */
#include <stdio.h>
#include <string.h>

#include <mxgw/mxgw.h>

static const char client[] = "EHLO client.example.org\r\n"
                             "MAIL FROM:<alice@example.org>\r\n"
                             "RCPT TO:<bob@example.test>\r\n"
                             "DATA\r\n"
                             "Subject: hello\r\n"
                             "\r\n"
                             "Hi Bob.\r\n"
                             "..this line starts with one dot\r\n"
                             ".\r\n"
                             "QUIT\r\n";

static const char *event_name(int ev) {
  static const char *const names[] = {
      "NONE", "CONNECT", "HELO",        "STARTTLS",      "AUTH",
      "MAIL", "RCPT",    "DATA",        "BODY",          "MESSAGE_END",
      "MESSAGE_ABORT",   "RSET",        "CLOSE"};
  return ev >= 0 && ev <= MXGW_EV_CLOSE ? names[ev] : "?";
}

/* Print what the server has to say, "S: " before each line, and mark it
 * written (a real server would send() it and consume what was sent). */
static size_t print_output(mxgw_session *s) {
  const char *p;
  size_t len, total = 0;
  while (mxgw_session_output(s, &p, &len) == MXGW_OK && len > 0) {
    size_t i, start = 0;
    for (i = 0; i < len; i++) {
      if (p[i] == '\n') {
        printf("S: %.*s\n", (int)(i - start - (i > start && p[i - 1] == '\r')),
               p + start);
        start = i + 1;
      }
    }
    if (start < len) /* a partial line (never for complete replies) */
      printf("S: %.*s\n", (int)(len - start), p + start);
    mxgw_session_consume(s, len);
    total += len;
  }
  return total;
}

int main(void) {
  mxgw_session_config *cfg;
  mxgw_session *s;
  size_t off = 0, in_len = sizeof client - 1;
  int64_t now = 0; /* any monotonic milliseconds; a constant is fine here */
  int64_t unix_time = 1735689600; /* the Received date: 2025-01-01 */
  int ev, closed = 0, eof_sent = 0, rc;

  if (mxgw_session_config_new(&cfg, NULL) != MXGW_OK)
    return 1;
  mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, "mx.example.test");
  rc = mxgw_session_new(&s, cfg, NULL);
  mxgw_session_config_free(cfg); /* the session holds its own reference */
  if (rc != MXGW_OK)
    return 1;
  mxgw_session_set_peer(s, "192.0.2.1", 50000, NULL);
  mxgw_session_start(s, now);

  while (!closed) {
    int progress = 0, n;
    /* 1. Handle every event; decisions are answered at once here. */
    while ((ev = mxgw_session_next_event(s)) > 0) {
      const char *p;
      size_t len;
      progress = 1;
      printf("   [%s]", event_name(ev));
      switch (ev) {
      case MXGW_EV_BODY: /* a dot-unstuffed chunk of the message */
        mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &len);
        printf(" %zu bytes: %.*s", len, (int)len, p);
        break;
      case MXGW_EV_MESSAGE_END: /* store the message, then accept it */
        if (mxgw_session_received_header(s, "4711", unix_time, &p, &len) ==
            MXGW_OK)
          printf(" the header to prepend:\n%.*s", (int)len, p);
        else
          printf("\n");
        mxgw_session_accept(s);
        break;
      case MXGW_EV_CLOSE:
        closed = 1;
        printf("\n");
        break;
      default:
        if (mxgw_session_pending(s) != MXGW_EV_NONE) {
          printf(" -> accept");
          mxgw_session_accept(s);
        }
        printf("\n");
        break;
      }
      print_output(s); /* the reply to this event, if any */
    }
    if (ev < 0)
      break;
    /* 2. Send the replies. */
    if (print_output(s) > 0)
      progress = 1;
    /* 3. Feed what the client sent; the session may take only part. */
    if (!closed && off < in_len) {
      n = mxgw_session_feed(s, client + off, in_len - off, now);
      if (n < 0)
        break;
      off += (size_t)n;
      if (n > 0)
        progress = 1;
    }
    /* 4. Nothing moved: the client has nothing more to say. */
    if (!closed && !progress) {
      if (eof_sent)
        break;
      mxgw_session_eof(s);
      eof_sent = 1;
    }
  }
  print_output(s);
  mxgw_session_free(s);
  return closed ? 0 : 1;
}
