/* SPDX-License-Identifier: MIT */
/*
 * mxgw_lmtp_io.c: the socket driver of the LMTP client. It owns one
 * sans-IO client (mxgw_lmtp.c) and a non-blocking socket (TCP over IPv4 or
 * IPv6 with numeric addresses, or a Unix socket), and offers two ways to
 * drive them: an event-loop interface (fd, wanted poll events, deadline,
 * process), and blocking calls built on it with poll() that deliver one
 * message from a file descriptor and return when every recipient has its
 * result. A connection that fails, at any point, turns into temporary
 * failures of the recipients still waiting (the core's rule), never into a
 * claimed delivery.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mxgw/mxgw_lmtp.h"
#include "mxgw_int.h"
#include "mxgw_lmtp_int.h"

struct mxgw_lmtp_conn {
  mxgw_mem mem;
  mxgw_lmtp_config *cfg;
  mxgw_lmtp *c;
  struct sockaddr_storage sa;
  socklen_t salen;
  char target[300];
  int fd;
  bool connecting;
  int64_t connect_deadline;
};


static int parse_port(const char *s, uint16_t *port) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < 1 || v > 65535)
    return MXGW_E_INVAL;
  *port = (uint16_t)v;
  return MXGW_OK;
}

int mxgw__lmtp_target_addr(const char *t, struct sockaddr_storage *ss,
                           socklen_t *sl, char *label, size_t labelcap) {
  memset(ss, 0, sizeof *ss);
  if (strncmp(t, "unix:", 5) == 0 || t[0] == '/') {
    const char *path = t[0] == '/' ? t : t + 5;
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    if (!*path || strlen(path) >= sizeof un->sun_path)
      return MXGW_E_INVAL;
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, strlen(path) + 1);
    *sl = (socklen_t)sizeof *un;
    if (label)
      snprintf(label, labelcap, "%s", path);
    return MXGW_OK;
  }
  if (strncmp(t, "inet:", 5) == 0)
    t += 5;
  char host[256];
  const char *colon;
  if (t[0] == '[') {
    const char *rb = strchr(t, ']');
    if (!rb || rb[1] != ':' || (size_t)(rb - t - 1) >= sizeof host)
      return MXGW_E_INVAL;
    memcpy(host, t + 1, (size_t)(rb - t - 1));
    host[rb - t - 1] = '\0';
    colon = rb + 1;
  } else {
    colon = strrchr(t, ':');
    if (!colon || (size_t)(colon - t) >= sizeof host)
      return MXGW_E_INVAL;
    memcpy(host, t, (size_t)(colon - t));
    host[colon - t] = '\0';
  }
  uint16_t port;
  if (parse_port(colon + 1, &port))
    return MXGW_E_INVAL;
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *sl = (socklen_t)sizeof *v4;
  } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *sl = (socklen_t)sizeof *v6;
  } else {
    return MXGW_E_INVAL;
  }
  if (label)
    snprintf(label, labelcap, "%.100s[%.100s]:%u", host, host, port);
  return MXGW_OK;
}

static int parse_target(mxgw_lmtp_conn *k, const char *t) {
  return mxgw__lmtp_target_addr(t, &k->sa, &k->salen, k->target,
                                sizeof k->target);
}

int mxgw_lmtp_conn_new(mxgw_lmtp_conn **out, mxgw_lmtp_config *cfg,
                       const char *target, const mxgw_mem *mem) {
  if (!out || !cfg || !target)
    return MXGW_E_INVAL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_lmtp_conn *k = mxgw__calloc(&m, 1, sizeof *k);
  if (!k)
    return MXGW_E_NOMEM;
  k->mem = m;
  k->fd = -1;
  if (parse_target(k, target)) {
    mxgw__free(&m, k);
    return MXGW_E_INVAL;
  }
  int rv = mxgw_lmtp_new(&k->c, cfg, mem);
  if (rv) {
    mxgw__free(&m, k);
    return rv;
  }
  mxgw__lmtp_config_ref(cfg);
  k->cfg = cfg;
  *out = k;
  return MXGW_OK;
}

static void close_fd(mxgw_lmtp_conn *k) {
  if (k->fd >= 0)
    close(k->fd);
  k->fd = -1;
  k->connecting = false;
}

void mxgw_lmtp_conn_free(mxgw_lmtp_conn *k) {
  if (!k)
    return;
  close_fd(k);
  mxgw_lmtp_free(k->c);
  mxgw__lmtp_config_unref(k->cfg);
  mxgw_mem m = k->mem;
  mxgw__free(&m, k);
}

mxgw_lmtp *mxgw_lmtp_conn_client(mxgw_lmtp_conn *k) { return k ? k->c : NULL; }

int mxgw_lmtp_conn_fd(const mxgw_lmtp_conn *k) { return k ? k->fd : -1; }

static void connect_failed(mxgw_lmtp_conn *k, int err, int64_t now) {
  char m[512];
  snprintf(m, sizeof m, "connect to %.300s: %.100s", k->target, strerror(err));
  close_fd(k);
  mxgw_lmtp_abort(k->c, "4.4.1", m, now);
}

int mxgw_lmtp_conn_open(mxgw_lmtp_conn *k, int64_t now) {
  if (!k)
    return MXGW_E_INVAL;
  if (k->fd >= 0)
    return MXGW_OK;
  if (mxgw__lmtp_started(k->c))
    mxgw__lmtp_reset(k->c); /* a new connection */
  int fd = socket(k->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0) {
    connect_failed(k, errno, now);
    return MXGW_OK;
  }
  k->fd = fd;
  mxgw__sock_nodelay(fd, k->sa.ss_family);
  if (connect(fd, (struct sockaddr *)&k->sa, k->salen) == 0) {
    k->connecting = false;
    return mxgw_lmtp_start(k->c, now);
  }
  if (errno != EINPROGRESS) {
    connect_failed(k, errno, now);
    return MXGW_OK;
  }
  int64_t to = 0;
  mxgw_lmtp_config_get_int(k->cfg, MXGW_LMTP_OPT_CONNECT_TIMEOUT_MS, &to);
  k->connecting = true;
  k->connect_deadline = now + to;
  return MXGW_OK;
}

int mxgw_lmtp_conn_events(const mxgw_lmtp_conn *k) {
  if (!k || k->fd < 0)
    return 0;
  if (k->connecting)
    return POLLOUT;
  int w = mxgw_lmtp_want(k->c), ev = 0;
  if (w & MXGW_LMTP_WANT_WRITE)
    ev |= POLLOUT;
  if ((w & MXGW_LMTP_WANT_READ) && !(w & MXGW_LMTP_WANT_CLOSE))
    ev |= POLLIN;
  return ev;
}

int64_t mxgw_lmtp_conn_deadline(const mxgw_lmtp_conn *k) {
  if (!k)
    return -1;
  if (k->connecting)
    return k->connect_deadline;
  return mxgw_lmtp_deadline(k->c);
}

static int do_write(mxgw_lmtp_conn *k, int64_t now) {
  for (;;) {
    const char *p;
    size_t n;
    int rv = mxgw_lmtp_output(k->c, &p, &n);
    if (rv)
      return rv;
    if (n == 0)
      return MXGW_OK;
    ssize_t w = send(k->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return MXGW_OK;
      char m[512];
      snprintf(m, sizeof m, "write to %.300s failed: %.100s", k->target,
               strerror(errno));
      close_fd(k);
      return mxgw_lmtp_abort(k->c, "4.4.2", m, now);
    }
    mxgw_lmtp_consume(k->c, (size_t)w);
  }
}

static int do_read(mxgw_lmtp_conn *k, int64_t now) {
  char buf[65536];
  for (;;) {
    ssize_t r = recv(k->fd, buf, sizeof buf, 0);
    if (r > 0) {
      int rv = mxgw_lmtp_feed(k->c, buf, (size_t)r, now);
      if (rv == MXGW_E_CLOSED)
        return MXGW_OK;
      if (rv < 0)
        return rv;
      continue;
    }
    if (r == 0)
      return mxgw_lmtp_eof(k->c, now);
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return MXGW_OK;
    char m[512];
    snprintf(m, sizeof m, "read from %.300s failed: %.100s", k->target,
             strerror(errno));
    close_fd(k);
    return mxgw_lmtp_abort(k->c, "4.4.2", m, now);
  }
}

int mxgw_lmtp_conn_process(mxgw_lmtp_conn *k, int revents, int64_t now) {
  if (!k)
    return MXGW_E_INVAL;
  int rv = MXGW_OK;
  if (k->fd >= 0 && k->connecting) {
    if (revents & (POLLOUT | POLLERR | POLLHUP)) {
      int err = 0;
      socklen_t el = sizeof err;
      if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
      if (err) {
        connect_failed(k, err, now);
        return MXGW_OK;
      }
      k->connecting = false;
      if ((rv = mxgw_lmtp_start(k->c, now)))
        return rv;
    } else if (now >= k->connect_deadline) {
      connect_failed(k, ETIMEDOUT, now);
      return MXGW_OK;
    } else
      return MXGW_OK;
  }
  if (k->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR)))
    if ((rv = do_read(k, now)))
      return rv;
  if (k->fd >= 0 && (mxgw_lmtp_want(k->c) & MXGW_LMTP_WANT_WRITE))
    if ((rv = do_write(k, now)))
      return rv;
  if ((rv = mxgw_lmtp_tick(k->c, now)) < 0)
    return rv;
  int w = mxgw_lmtp_want(k->c);
  if (k->fd >= 0 && (w & MXGW_LMTP_WANT_CLOSE) &&
      !(w & MXGW_LMTP_WANT_WRITE))
    close_fd(k);
  return MXGW_OK;
}

/* One round of the blocking loop: wait for the socket or the deadline. */
static int wait_once(mxgw_lmtp_conn *k) {
  int64_t now = mxgw__mono_ms();
  int64_t d = mxgw_lmtp_conn_deadline(k);
  int timeout = -1;
  if (d >= 0)
    timeout = d <= now ? 0 : (d - now > 1000000 ? 1000000 : (int)(d - now));
  int revents = 0;
  if (k->fd >= 0) {
    struct pollfd pfd = {k->fd, (short)mxgw_lmtp_conn_events(k), 0};
    if (pfd.events == 0 && timeout < 0)
      timeout = 1000; /* nothing to wait for: the caller's step */
    int r = poll(&pfd, 1, timeout);
    if (r < 0 && errno != EINTR)
      return MXGW_E_IO;
    revents = r > 0 ? pfd.revents : 0;
  }
  return mxgw_lmtp_conn_process(k, revents, mxgw__mono_ms());
}

/* The body from fd: read() until EOF when `range` is false, else the
 * `left` octets at `pos` with pread() (a short file is a read error). */
static int deliver_body(mxgw_lmtp_conn *k, int fd, bool range, int64_t pos,
                        int64_t left) {
  mxgw_lmtp *c = k->c;
  if (!mxgw__lmtp_msg_ready(c))
    return MXGW_E_STATE;
  int rv;
  if (k->fd < 0 || mxgw__lmtp_closed(c)) {
    close_fd(k);
    if ((rv = mxgw_lmtp_conn_open(k, mxgw__mono_ms())))
      return rv;
    if (mxgw__lmtp_closed(c)) /* the connect failed at once (ENOENT...) */
      return mxgw__lmtp_fail_unsent(c);
  }
  if ((rv = mxgw_lmtp_msg_submit(c, mxgw__mono_ms())))
    return rv;
  char buf[65536];
  size_t off = 0, len = 0;
  bool in_eof = false, io_error = false;
  while (!mxgw__lmtp_msg_done(c)) {
    /* push the body while the client takes it */
    while (!in_eof && (mxgw_lmtp_want(c) & MXGW_LMTP_WANT_BODY)) {
      if (off == len) {
        ssize_t r;
        if (!range)
          r = read(fd, buf, sizeof buf);
        else if (left == 0)
          r = 0;
        else {
          size_t want = left < (int64_t)sizeof buf ? (size_t)left : sizeof buf;
          r = pread(fd, buf, want, (off_t)pos);
          if (r == 0) { /* the file ends before the range does */
            r = -1;
            errno = EIO;
          }
          if (r > 0) {
            pos += r;
            left -= r;
          }
        }
        if (r < 0 && errno == EINTR)
          continue;
        if (r < 0) {
          char m[200];
          snprintf(m, sizeof m, "cannot read the message: %s",
                   strerror(errno));
          close_fd(k);
          mxgw_lmtp_abort(c, "4.3.0", m, mxgw__mono_ms());
          io_error = true;
          break;
        }
        if (r == 0) {
          in_eof = true;
          if ((rv = mxgw_lmtp_body_end(c, mxgw__mono_ms())) &&
              rv != MXGW_E_STATE)
            return rv;
          break;
        }
        off = 0;
        len = (size_t)r;
      }
      int n = mxgw_lmtp_body(c, buf + off, len - off, mxgw__mono_ms());
      if (n < 0)
        return n;
      off += (size_t)n;
      if (n == 0)
        break;
    }
    if (mxgw__lmtp_msg_done(c))
      break;
    if (k->fd < 0 && !mxgw__lmtp_closed(c)) {
      mxgw_lmtp_abort(c, NULL, NULL, mxgw__mono_ms());
      break;
    }
    if ((rv = wait_once(k)))
      return rv;
  }
  /* finish a QUIT the client decided on (message limit) */
  while (k->fd >= 0 && !mxgw__lmtp_closed(c))
    if (mxgw_lmtp_want(c) & MXGW_LMTP_WANT_WRITE ||
        mxgw_lmtp_deadline(c) >= 0) {
      if ((rv = wait_once(k)))
        return rv;
    } else
      break;
  if (mxgw__lmtp_closed(c))
    close_fd(k);
  while (mxgw_lmtp_next_event(c) > 0)
    ;
  return io_error ? MXGW_E_IO : MXGW_OK;
}

int mxgw_lmtp_conn_deliver_fd(mxgw_lmtp_conn *k, int fd) {
  if (!k || fd < 0)
    return MXGW_E_INVAL;
  return deliver_body(k, fd, false, 0, 0);
}

int mxgw_lmtp_conn_deliver_range(mxgw_lmtp_conn *k, int fd, int64_t offset,
                                 int64_t length) {
  if (!k || fd < 0 || offset < 0 || length < 0)
    return MXGW_E_INVAL;
  return deliver_body(k, fd, true, offset, length);
}

int mxgw_lmtp_conn_deliver_file(mxgw_lmtp_conn *k, const char *path) {
  if (!k || !path)
    return MXGW_E_INVAL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return MXGW_E_IO;
  int rv = mxgw_lmtp_conn_deliver_fd(k, fd);
  close(fd);
  return rv;
}

int mxgw_lmtp_conn_quit(mxgw_lmtp_conn *k) {
  if (!k)
    return MXGW_E_INVAL;
  if (k->fd >= 0 && !k->connecting && !mxgw__lmtp_closed(k->c)) {
    mxgw_lmtp_quit(k->c);
    int rv;
    while (k->fd >= 0 && !mxgw__lmtp_closed(k->c))
      if ((rv = wait_once(k)))
        break;
  }
  close_fd(k);
  while (mxgw_lmtp_next_event(k->c) > 0)
    ;
  return MXGW_OK;
}
