/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server_verify.c: recipient verification by LMTP probe
 * (MXGW_SRV_OPT_RCPT_VERIFY). One blocking conversation per probe, run on
 * a policy worker thread:
 *
 *   <- 220 greeting
 *   -> LHLO name          <- 250 (multi-line)
 *   -> MAIL FROM:<>       <- 250
 *   -> RCPT TO:<addr>     <- the answer we want
 *   -> QUIT
 *
 * Nothing is delivered (no DATA). Every read and the connect are bounded by
 * the probe timeout. Backends are tried in order; the first that gives a
 * RCPT answer decides (a 4xx from one backend is an answer too: the store
 * knows the user and is busy).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mxgw_int.h"
#include "mxgw_lmtp_int.h"
#include "mxgw_server_int.h"


struct pconn {
  int fd;
  int64_t deadline;
  char buf[4096];
  size_t len;
};

static int wait_fd(struct pconn *c, short ev) {
  int64_t left = c->deadline - mxgw__mono_ms();
  if (left <= 0)
    return -1;
  struct pollfd p = {c->fd, ev, 0};
  int r = poll(&p, 1, (int)left);
  return r > 0 ? 0 : -1;
}

static int send_all(struct pconn *c, const char *s) {
  size_t n = strlen(s), off = 0;
  while (off < n) {
    ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        if (wait_fd(c, POLLOUT) < 0)
          return -1;
        continue;
      }
      return -1;
    }
    off += (size_t)w;
  }
  return 0;
}

/* Read one complete reply; returns its code (or -1) and its last line's
 * text (after "NNN "). */
static int read_reply(struct pconn *c, char *text, size_t cap) {
  for (;;) {
    /* a complete final line "NNN text\r\n" in the buffer? */
    size_t start = 0;
    for (size_t i = 0; i + 1 < c->len; i++) {
      if (c->buf[i] != '\r' || c->buf[i + 1] != '\n')
        continue;
      size_t ll = i - start;
      if (ll >= 3 && (ll == 3 || c->buf[start + 3] == ' ')) {
        int code = (c->buf[start] - '0') * 100 + (c->buf[start + 1] - '0') * 10 +
                   (c->buf[start + 2] - '0');
        if (text && cap) {
          size_t tl = ll > 4 ? ll - 4 : 0;
          if (tl >= cap)
            tl = cap - 1;
          if (tl)
            memcpy(text, c->buf + start + 4, tl);
          text[tl] = '\0';
        }
        memmove(c->buf, c->buf + i + 2, c->len - i - 2);
        c->len -= i + 2;
        return code >= 200 && code <= 599 ? code : -1;
      }
      start = i + 2;
    }
    if (start > 0) { /* drop complete continuation lines */
      memmove(c->buf, c->buf + start, c->len - start);
      c->len -= start;
    }
    if (c->len == sizeof c->buf)
      return -1; /* a line that long is not LMTP */
    if (wait_fd(c, POLLIN) < 0)
      return -1;
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r <= 0) {
      if (r < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      return -1;
    }
    c->len += (size_t)r;
  }
}

static int probe_one(const char *target, const char *lhlo, const char *rcpt,
                     int timeout_ms, char *text, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t sl;
  struct pconn c;
  char line[1200];
  int code = 0;
  if (mxgw__lmtp_target_addr(target, &ss, &sl, NULL, 0) != MXGW_OK)
    return 0;
  c.len = 0;
  c.deadline = mxgw__mono_ms() + timeout_ms;
  c.fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0)
    return 0;
  mxgw__sock_nodelay(c.fd, ss.ss_family);
  if (connect(c.fd, (struct sockaddr *)&ss, sl) < 0) {
    int err = 0;
    socklen_t el = sizeof err;
    if (errno != EINPROGRESS || wait_fd(&c, POLLOUT) < 0 ||
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
      close(c.fd);
      return 0;
    }
  }
  if (read_reply(&c, text, cap) / 100 != 2)
    goto out;
  snprintf(line, sizeof line, "LHLO %s\r\n", lhlo);
  if (send_all(&c, line) < 0 || read_reply(&c, text, cap) / 100 != 2)
    goto out;
  if (send_all(&c, "MAIL FROM:<>\r\n") < 0 ||
      read_reply(&c, text, cap) / 100 != 2)
    goto out;
  snprintf(line, sizeof line, "RCPT TO:<%.1000s>\r\n", rcpt);
  if (send_all(&c, line) < 0)
    goto out;
  code = read_reply(&c, text, cap);
  if (code < 0)
    code = 0;
  else
    send_all(&c, "QUIT\r\n");
out:
  close(c.fd);
  return code;
}

int mxgw__srv_probe(char *const *backends, size_t n, const char *lhlo,
                    const char *rcpt, int timeout_ms, char *text,
                    size_t cap) {
  if (cap)
    text[0] = '\0';
  /* CR, LF or controls in the address would inject commands. */
  for (const char *p = rcpt; *p; p++)
    if ((unsigned char)*p < 32 || *p == 127)
      return 0;
  for (size_t i = 0; i < n; i++) {
    int code = probe_one(backends[i], lhlo, rcpt, timeout_ms, text, cap);
    if (code)
      return code;
  }
  return 0;
}
