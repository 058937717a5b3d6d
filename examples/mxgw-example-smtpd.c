/* SPDX-License-Identifier: MIT */
/*
 * mxgw-example-smtpd.c: a small, complete SMTP server built on the libmxgw
 * session engine. One thread, one epoll loop, non-blocking sockets. It
 * accepts mail for any recipient and stores each message, with the Received
 * header built by the engine prepended, in its own file: the body is written
 * to DIR/tmp-<id> while it arrives, then fsync'd and renamed to DIR/<id>.eml,
 * and only then is the end of the message acknowledged ("250 2.0.0 Ok:
 * queued as <id>"). It shows how an application drives a session: feed()
 * with partial takes, the next_event() loop, output()/consume() with partial
 * writes, want() for the epoll interest set, deadline()/tick() for timers,
 * eof() and shutdown(). Usage:
 *
 *   mxgw-example-smtpd --listen 127.0.0.1:PORT --dir DIR [--hostname NAME]
 *                      [--max-size N] [--max-conns N] [--timeout MS]
 *                      [--tls-cert FILE --tls-key FILE]
 *                      [--tls-policy none|may|encrypt] [--smtps]
 *                      [--tls-reload-ms MS] [--quiet]
 *
 * --listen may be repeated and takes "[::1]:PORT" for IPv6; PORT 0 picks a
 * free port. When ready it prints "listening on ADDR:PORT" to stderr for each
 * listener. SIGINT or SIGTERM stop it cleanly: every session is told to shut
 * down (421 4.3.2), unfinished messages are discarded, and it exits 0.
 *
 * With --tls-cert/--tls-key it offers STARTTLS (or, with --smtps, speaks
 * implicit TLS on every listener); the session runs the handshake itself.
 * The certificate is validated at startup (a certificate that does not
 * cover --hostname, or a key readable by others, is refused with a message
 * naming the file) and logged; SIGHUP reloads it, and the files are checked
 * for changes every --tls-reload-ms: new sessions get a renewed certificate,
 * sessions in progress keep theirs, a broken one is logged and not used.
 *
 * With --lmtp-proxy HOST:PORT|unix:PATH it runs in proxy (before-queue)
 * mode (mxgw_proxy.h): nothing is written to --dir (still required); each
 * session gets its own backend LMTP connection, driven by the same epoll
 * loop, and the backend's replies become the SMTP replies in step.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, epoll, signalfd, getopt_long */
#endif

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <mxgw/mxgw.h>
#include <mxgw/mxgw_tls.h>

#define PROG "mxgw-example-smtpd"
#define MAX_LISTEN 8
#define IN_CAP 32768          /* socket read size per connection */
#define MAX_EVENTS 128        /* epoll_wait batch */
#define STOP_GRACE_MS 3000    /* how long a clean stop waits for clients */
#define DEFAULT_MAX_CONNS 1024

/* What an epoll_event's data.ptr points at: the first member of each. */
enum handle_kind { H_LISTENER = 1, H_SIGNAL, H_CONN, H_BACKEND };
struct handle {
  int kind;
  int fd;
};

struct listener {
  struct handle h;
  char name[INET6_ADDRSTRLEN + 16];
};

struct server;

/* One client connection and the message it is transferring, if any. */
struct conn {
  struct handle h; /* first */
  struct server *srv;
  mxgw_session *s;
  struct conn *prev, *next; /* live list, or graveyard once dead */
  char peer[INET6_ADDRSTRLEN + 16];
  unsigned char *in; /* bytes read but not yet taken by the session */
  size_t in_off, in_len;
  uint32_t ep_mask; /* current epoll interest */
  int rd_eof;       /* read() returned 0 */
  int broken;       /* the socket failed: mxgw_session_abort(), then close */
  int closed_ev;    /* MXGW_EV_CLOSE was seen */
  int dead;         /* closed; freed at the end of the loop iteration */
  /* proxy mode (--lmtp-proxy) */
  mxgw_proxy *px;
  struct handle bh;   /* the backend socket (kind H_BACKEND) */
  uint32_t bmask;     /* its epoll interest */
  int bconnecting;    /* non-blocking connect in progress */
  int64_t now;        /* time of the current pump, for on_event() */
  /* current message */
  int msg_active;
  int msg_fd;
  int msg_err; /* errno of the first storage failure, 0 if none */
  char qid[40];
  char tmpname[64];
};

struct server {
  int epfd;
  int dirfd;
  const char *dir;
  const char *proxy_target; /* --lmtp-proxy, or NULL */
  struct sockaddr_storage proxy_sa;
  socklen_t proxy_salen;
  int64_t proxy_timeout; /* --timeout also bounds the backend's replies */
  struct handle sigh;
  struct listener ls[MAX_LISTEN];
  size_t nls;
  mxgw_session_config *cfg;
  mxgw_tls *tls;          /* --tls-cert/--tls-key, or NULL */
  int64_t tls_interval;   /* --tls-reload-ms */
  int64_t tls_next_check; /* when to look at the certificate files again */
  char hostname[256];
  struct conn *conns;
  struct conn *graveyard;
  size_t nconns, max_conns;
  int quiet;
  int accept_paused;
  int stopping, force_stop;
  int64_t stop_deadline;
  unsigned qseq;
  long pid;
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Append text to a log line, making control and 8-bit bytes visible. */
static size_t put_escaped(char *out, size_t pos, size_t cap, const char *text,
                          size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t i;
  for (i = 0; i < len && pos + 5 < cap; i++) {
    unsigned char ch = (unsigned char)text[i];
    if (ch == '\r') {
      out[pos++] = '\\';
      out[pos++] = 'r';
    } else if (ch == '\n') {
      out[pos++] = '\\';
      out[pos++] = 'n';
    } else if (ch < 0x20 || ch >= 0x7f) {
      out[pos++] = '\\';
      out[pos++] = 'x';
      out[pos++] = hex[ch >> 4];
      out[pos++] = hex[ch & 15];
    } else {
      out[pos++] = (char)ch;
    }
  }
  if (i < len && pos + 4 < cap) {
    memcpy(out + pos, "...", 3);
    pos += 3;
  }
  return pos;
}

/* One log line, written with a single write(2) so lines never interleave. */
static void emit_line(const struct server *srv, const char *peer,
                      const char *prefix, const char *text, size_t len) {
  char line[1200];
  int n;
  size_t pos;
  ssize_t w;
  if (srv->quiet)
    return;
  n = snprintf(line, sizeof line, PROG "[%ld]: %s%s%s", srv->pid,
               peer ? peer : "", peer ? ": " : "", prefix);
  if (n < 0)
    return;
  pos = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  /* A reply or command ends in CRLF: one line per event, so drop it. */
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
    len--;
  pos = put_escaped(line, pos, sizeof line - 1, text, len);
  line[pos++] = '\n';
  w = write(STDERR_FILENO, line, pos);
  (void)w;
}

static void logmsg(const struct server *srv, const char *peer, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));
static void logmsg(const struct server *srv, const char *peer, const char *fmt,
                   ...) {
  char buf[1024];
  va_list ap;
  int n;
  if (srv->quiet)
    return;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  emit_line(srv, peer, "", buf,
            (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Errors that stop the program are printed even with --quiet. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

/* The library's log hook: one line per connect, command, reply, protocol
 * violation and disconnect, in the Postfix manner. */
static void session_log(void *user, mxgw_session *s, int kind,
                        const char *text, size_t len) {
  const struct conn *c = user;
  const char *prefix = "";
  (void)s;
  switch (kind) {
  case MXGW_LOG_COMMAND:
    prefix = "< ";
    break;
  case MXGW_LOG_REPLY:
    prefix = "> ";
    break;
  case MXGW_LOG_PROTOCOL:
    prefix = "warning: ";
    break;
  default:
    break;
  }
  emit_line(c->srv, c->peer, prefix, text, len);
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Message storage                                                          */
/* ------------------------------------------------------------------------ */

/* The reply for a storage failure: out of space is 452 4.3.1 (RFC 3463),
 * anything else a generic local error. */
static void reply_storage_error(struct conn *c, int err) {
  int rc;
  if (err == ENOSPC || err == EDQUOT || err == EFBIG)
    rc = mxgw_session_reply(c->s, 452, "4.3.1",
                            "Error: insufficient system storage");
  else
    rc = mxgw_session_reply(c->s, 451, "4.3.0",
                            "Error: local error in processing");
  if (rc < 0)
    logmsg(c->srv, c->peer, "reply failed: %s", mxgw_strerror(rc));
}

static void msg_discard(struct conn *c) {
  if (c->msg_fd >= 0) {
    close(c->msg_fd);
    c->msg_fd = -1;
  }
  if (c->msg_active && c->tmpname[0])
    unlinkat(c->srv->dirfd, c->tmpname, 0);
  c->tmpname[0] = '\0';
  c->msg_active = 0;
  c->msg_err = 0;
}

/* A queue id: the time in seconds and microseconds plus a counter, in hex.
 * The temp file is created with O_EXCL, so a clash is retried. */
static void new_queue_id(struct server *srv, char *out, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  snprintf(out, cap, "%08llX%05lX%04X", (unsigned long long)ts.tv_sec,
           (unsigned long)(ts.tv_nsec / 1000), srv->qseq++ & 0xFFFFu);
}

/* DATA: open the temp file and write the Received header, then accept. */
static void msg_begin(struct conn *c) {
  struct server *srv = c->srv;
  const char *hdr;
  size_t hlen;
  int rc, tries;

  msg_discard(c);
  for (tries = 0; tries < 8; tries++) {
    new_queue_id(srv, c->qid, sizeof c->qid);
    snprintf(c->tmpname, sizeof c->tmpname, "tmp-%s", c->qid);
    c->msg_fd = openat(srv->dirfd, c->tmpname,
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (c->msg_fd >= 0 || errno != EEXIST)
      break;
  }
  if (c->msg_fd < 0) {
    int err = errno;
    logmsg(srv, c->peer, "cannot create %s/%s: %s", srv->dir, c->tmpname,
           strerror(err));
    c->tmpname[0] = '\0';
    reply_storage_error(c, err);
    return;
  }
  c->msg_active = 1;
  c->msg_err = 0;

  rc = mxgw_session_received_header(c->s, c->qid, (int64_t)time(NULL), &hdr,
                                    &hlen);
  if (rc < 0) {
    logmsg(srv, c->peer, "received header: %s", mxgw_strerror(rc));
    msg_discard(c);
    reply_storage_error(c, 0);
    return;
  }
  if (write_all(c->msg_fd, hdr, hlen) < 0) {
    int err = errno;
    logmsg(srv, c->peer, "write %s/%s: %s", srv->dir, c->tmpname,
           strerror(err));
    msg_discard(c);
    reply_storage_error(c, err);
    return;
  }
  rc = mxgw_session_accept(c->s);
  if (rc < 0)
    logmsg(srv, c->peer, "accept DATA: %s", mxgw_strerror(rc));
}

/* BODY: append the chunk. After a failure the rest is ignored and the
 * failure is reported when the message ends. */
static void msg_body(struct conn *c) {
  const char *p;
  size_t len;
  if (!c->msg_active || c->msg_err || c->msg_fd < 0)
    return;
  if (mxgw_session_get_str(c->s, MXGW_INFO_DATA, &p, &len) < 0)
    return;
  if (write_all(c->msg_fd, p, len) < 0) {
    c->msg_err = errno;
    logmsg(c->srv, c->peer, "write %s/%s: %s", c->srv->dir, c->tmpname,
           strerror(c->msg_err));
    /* Give the space back at once; the name is unlinked at the end. */
    close(c->msg_fd);
    c->msg_fd = -1;
  }
}

/* MESSAGE_END: make the file durable under its final name, then accept. */
static void msg_end(struct conn *c) {
  struct server *srv = c->srv;
  char final[64], text[96];
  int64_t size = 0, nrcpt = 0;
  const char *from = "";
  size_t from_len = 0;
  int rc, err = 0;

  if (!c->msg_active) {
    reply_storage_error(c, 0);
    return;
  }
  if (c->msg_err)
    err = c->msg_err;
  else if (fsync(c->msg_fd) < 0)
    err = errno;
  if (c->msg_fd >= 0 && close(c->msg_fd) < 0 && !err)
    err = errno;
  c->msg_fd = -1;
  snprintf(final, sizeof final, "%s.eml", c->qid);
  if (!err && renameat(srv->dirfd, c->tmpname, srv->dirfd, final) < 0)
    err = errno;
  if (err) {
    logmsg(srv, c->peer, "%s: cannot store message: %s", c->qid,
           strerror(err));
    msg_discard(c);
    reply_storage_error(c, err);
    return;
  }
  /* The rename is durable once the directory is synced. */
  if (fsync(srv->dirfd) < 0)
    logmsg(srv, c->peer, "fsync %s: %s", srv->dir, strerror(errno));
  c->msg_active = 0;
  c->tmpname[0] = '\0';

  mxgw_session_get_int(c->s, MXGW_INFO_MESSAGE_SIZE, &size);
  mxgw_session_get_int(c->s, MXGW_INFO_RCPT_COUNT, &nrcpt);
  if (mxgw_session_get_str(c->s, MXGW_INFO_MAIL_FROM, &from, &from_len) < 0)
    from_len = 0;
  logmsg(srv, c->peer, "%s: from=<%.*s>, size=%" PRId64 ", nrcpt=%" PRId64,
         c->qid, (int)(from_len > 256 ? 256 : from_len), from, size, nrcpt);

  snprintf(text, sizeof text, "Ok: queued as %s", c->qid);
  rc = mxgw_session_reply(c->s, 250, NULL, text);
  if (rc < 0)
    logmsg(srv, c->peer, "accept message: %s", mxgw_strerror(rc));
}

/* ------------------------------------------------------------------------ */
/* Sessions                                                                 */
/* ------------------------------------------------------------------------ */

static void on_event(struct conn *c, int ev) {
  const char *p;
  size_t len;
  int rc = 0;

  if (c->px) {
    rc = mxgw_proxy_session_event(c->px, ev, c->now);
    if (ev == MXGW_EV_CLOSE)
      c->closed_ev = 1;
    if (rc < 0)
      logmsg(c->srv, c->peer, "proxy: %s", mxgw_strerror(rc));
    if (rc != 0)
      return;
  }
  switch (ev) {
  case MXGW_EV_CONNECT:
  case MXGW_EV_HELO:
  case MXGW_EV_MAIL:
  case MXGW_EV_RCPT: /* any sender, any recipient */
    rc = mxgw_session_accept(c->s);
    break;
  case MXGW_EV_STARTTLS:
    /* Offered only with --tls-cert; the session then runs the handshake
     * itself (its plaintext pipelined after STARTTLS is discarded). */
    if (c->srv->tls)
      rc = mxgw_session_accept(c->s);
    else
      rc = mxgw_session_reply(c->s, 454, "4.7.0", "TLS not available");
    break;
  case MXGW_EV_AUTH: /* not offered either */
    rc = mxgw_session_reply(c->s, 535, "5.7.8", "Authentication failed");
    break;
  case MXGW_EV_DATA:
    msg_begin(c);
    break;
  case MXGW_EV_BODY:
    msg_body(c);
    break;
  case MXGW_EV_MESSAGE_END:
    msg_end(c);
    break;
  case MXGW_EV_MESSAGE_ABORT:
    if (mxgw_session_get_str(c->s, MXGW_INFO_DATA, &p, &len) < 0) {
      p = "";
      len = 0;
    }
    if (c->msg_active)
      logmsg(c->srv, c->peer, "%s: message discarded: %.*s", c->qid,
             (int)(len > 256 ? 256 : len), p);
    msg_discard(c);
    break;
  case MXGW_EV_RSET:
    break;
  case MXGW_EV_CLOSE:
    c->closed_ev = 1;
    msg_discard(c);
    break;
  default:
    /* An event this program does not know: answer decisions safely. */
    if (mxgw_session_pending(c->s) != MXGW_EV_NONE)
      rc = mxgw_session_reply(c->s, 451, NULL, "Error: not supported");
    break;
  }
  if (rc < 0)
    logmsg(c->srv, c->peer, "decision failed: %s (%s)", mxgw_strerror(rc),
           mxgw_session_errmsg(c->s));
}

/* Write what the session has for the client. Returns bytes written. */
static size_t conn_flush(struct conn *c) {
  size_t total = 0;
  for (;;) {
    const char *p;
    size_t len;
    ssize_t n;
    if (mxgw_session_output(c->s, &p, &len) < 0 || len == 0)
      break;
    n = send(c->h.fd, p, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        logmsg(c->srv, c->peer, "write: %s", strerror(errno));
        c->broken = 1;
      }
      break;
    }
    mxgw_session_consume(c->s, (size_t)n);
    total += (size_t)n;
    if ((size_t)n < len)
      break; /* the socket buffer is full: wait for EPOLLOUT */
  }
  return total;
}

/* Run the session until nothing moves: offer buffered input (the session may
 * take only part of it), handle every event, write the output. Writing can
 * unblock input processing, and input can produce output, hence the loop.
 * Once the socket has failed nothing is processed any more: a reply could
 * not reach the client, so accepting a message now would only make it send
 * the message again. conn_update() closes the connection and discards an
 * unfinished message. */
static int proxy_pump(struct conn *c, int64_t now);

static void conn_pump(struct conn *c, int64_t now) {
  c->now = now;
  while (!c->broken) {
    int progress = 0, ev;
    if (c->in_len > 0 &&
        !(c->px && (mxgw_proxy_want(c->px) & MXGW_PROXY_WANT_PAUSE))) {
      int n = mxgw_session_feed(c->s, c->in + c->in_off, c->in_len, now);
      if (n > 0) {
        c->in_off += (size_t)n;
        c->in_len -= (size_t)n;
        if (c->in_len == 0)
          c->in_off = 0;
        progress = 1;
      } else if (n < 0) {
        /* MXGW_E_CLOSED: the session is over and the rest is discarded */
        if (n != MXGW_E_CLOSED)
          logmsg(c->srv, c->peer, "feed: %s", mxgw_strerror(n));
        c->in_len = c->in_off = 0;
      }
    }
    while ((ev = mxgw_session_next_event(c->s)) > 0) {
      on_event(c, ev);
      progress = 1;
    }
    if (ev < 0)
      logmsg(c->srv, c->peer, "session: %s", mxgw_strerror(ev));
    if (c->px && proxy_pump(c, now))
      progress = 1;
    if (conn_flush(c) > 0)
      progress = 1;
    if (!progress)
      break;
  }
}

/* ---- proxy mode: the backend socket ------------------------------------ */

static void backend_close(struct conn *c) {
  if (c->bh.fd < 0)
    return;
  epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->bh.fd, NULL);
  close(c->bh.fd);
  c->bh.fd = -1;
  c->bmask = 0;
  c->bconnecting = 0;
}

static void backend_fail(struct conn *c, const char *what, int err,
                         int64_t now) {
  char why[200];
  snprintf(why, sizeof why, "%s %s: %s", what, c->srv->proxy_target,
           strerror(err));
  logmsg(c->srv, c->peer, "proxy: %s", why);
  backend_close(c);
  mxgw_proxy_backend_failed(c->px, why, now);
}

/* Act on what the proxy wants from the backend socket. Returns 1 if
 * something moved. */
static int proxy_pump(struct conn *c, int64_t now) {
  int moved = 0;
  for (int round = 0; round < 8; round++) {
    int want = mxgw_proxy_want(c->px);
    if ((want & MXGW_PROXY_WANT_CONNECT) && c->bh.fd < 0) {
      struct server *srv = c->srv;
      struct epoll_event ee;
      int fd = socket(srv->proxy_sa.ss_family,
                      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      moved = 1;
      if (fd < 0) {
        int e = errno;
        mxgw_proxy_backend_failed(c->px, strerror(e), now);
        continue;
      }
      c->bh.fd = fd;
      if (connect(fd, (struct sockaddr *)&srv->proxy_sa, srv->proxy_salen) ==
          0) {
        mxgw_proxy_backend_connected(c->px, now);
      } else if (errno == EINPROGRESS || errno == EAGAIN) {
        c->bconnecting = 1;
      } else {
        backend_fail(c, "connect to", errno, now);
        continue;
      }
      memset(&ee, 0, sizeof ee);
      ee.events = c->bmask = EPOLLIN | EPOLLOUT;
      ee.data.ptr = &c->bh;
      epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ee);
      continue;
    }
    if (want & MXGW_PROXY_WANT_CLOSE) {
      backend_close(c);
      mxgw_proxy_backend_closed(c->px);
      moved = 1;
      continue;
    }
    if ((want & MXGW_PROXY_WANT_WRITE) && c->bh.fd >= 0 && !c->bconnecting) {
      const char *p;
      size_t len;
      mxgw_proxy_backend_output(c->px, &p, &len);
      ssize_t n = send(c->bh.fd, p, len, MSG_NOSIGNAL);
      if (n > 0) {
        mxgw_proxy_backend_consume(c->px, (size_t)n);
        moved = 1;
        if ((size_t)n == len)
          continue;
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != EINTR) {
        backend_fail(c, "write to", errno, now);
        moved = 1;
        continue;
      }
    }
    break;
  }
  /* epoll interest for the backend socket */
  if (c->bh.fd >= 0) {
    int want = mxgw_proxy_want(c->px);
    uint32_t mask = EPOLLIN;
    if (c->bconnecting || (want & MXGW_PROXY_WANT_WRITE))
      mask |= EPOLLOUT;
    if (mask != c->bmask) {
      struct epoll_event ee;
      memset(&ee, 0, sizeof ee);
      ee.events = mask;
      ee.data.ptr = &c->bh;
      if (epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->bh.fd, &ee) == 0)
        c->bmask = mask;
    }
  }
  return moved;
}

static void conn_update(struct conn *c);

static void backend_io(struct conn *c, uint32_t events, int64_t now) {
  if (c->dead || c->bh.fd < 0)
    return;
  if (c->bconnecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->bh.fd, SOL_SOCKET, SO_ERROR, &err, &el);
    c->bconnecting = 0;
    if (err)
      backend_fail(c, "connect to", err, now);
    else
      mxgw_proxy_backend_connected(c->px, now);
  } else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buf[16384];
    ssize_t n = recv(c->bh.fd, buf, sizeof buf, 0);
    if (n > 0)
      mxgw_proxy_backend_feed(c->px, buf, (size_t)n, now);
    else if (n == 0)
      mxgw_proxy_backend_eof(c->px, now);
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      backend_fail(c, "read from", errno, now);
  }
  conn_pump(c, now);
  conn_update(c);
}

static void resume_accept(struct server *srv);

static void conn_close(struct conn *c) {
  struct server *srv = c->srv;
  if (c->dead)
    return;
  msg_discard(c);
  if (c->px) {
    backend_close(c);
    mxgw_proxy_free(c->px);
    c->px = NULL;
  }
  epoll_ctl(srv->epfd, EPOLL_CTL_DEL, c->h.fd, NULL);
  close(c->h.fd);
  c->h.fd = -1;
  mxgw_session_free(c->s);
  c->s = NULL;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->dead = 1;
  c->prev = NULL;
  c->next = srv->graveyard; /* freed after the current epoll batch */
  srv->graveyard = c;
  srv->nconns--;
  resume_accept(srv);
}

/* After a pump: close the connection, or set the epoll interest from what
 * the session wants. */
static void conn_update(struct conn *c) {
  int want;
  uint32_t mask = 0;
  if (c->dead)
    return;
  if (c->broken) {
    /* The connection is gone: the session drops what it buffered, aborts
     * a message in progress and logs its disconnect record. */
    int ev;
    if (!c->closed_ev) {
      mxgw_session_abort(c->s);
      while ((ev = mxgw_session_next_event(c->s)) > 0)
        on_event(c, ev);
    }
    conn_close(c);
    return;
  }
  want = mxgw_session_want(c->s);
  if ((want & MXGW_WANT_CLOSE) && !(want & MXGW_WANT_WRITE)) {
    conn_close(c);
    return;
  }
  if (c->closed_ev && !(want & MXGW_WANT_WRITE)) {
    conn_close(c);
    return;
  }
  /* Read only when everything read so far has been taken. */
  if (!c->rd_eof && c->in_len == 0 && (want & MXGW_WANT_READ))
    mask |= EPOLLIN;
  if (want & MXGW_WANT_WRITE)
    mask |= EPOLLOUT;
  if (mask == 0 && mxgw_session_deadline(c->s) < 0 &&
      !(c->px && (c->bh.fd >= 0 || mxgw_proxy_deadline(c->px) >= 0))) {
    /* Nothing could ever wake this connection up again. */
    logmsg(c->srv, c->peer, "session stalled (want=%d, %zu bytes unread)",
           want, c->in_len);
    conn_close(c);
    return;
  }
  if (mask != c->ep_mask) {
    struct epoll_event ee;
    memset(&ee, 0, sizeof ee);
    ee.events = mask;
    ee.data.ptr = &c->h;
    if (epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->h.fd, &ee) == 0)
      c->ep_mask = mask;
  }
}

static void conn_io(struct conn *c, uint32_t events, int64_t now) {
  if (c->dead)
    return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->in_len == 0 &&
      !c->rd_eof && !c->broken) {
    ssize_t n = recv(c->h.fd, c->in, IN_CAP, 0);
    if (n > 0) {
      c->in_len = (size_t)n;
      c->in_off = 0;
    } else if (n == 0) {
      /* The client shut down its side. Input already fed is still
       * processed and answered; then the session closes. */
      c->rd_eof = 1;
      if (!c->closed_ev)
        mxgw_session_eof(c->s);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      logmsg(c->srv, c->peer, "read: %s", strerror(errno));
      c->broken = 1;
    }
  } else if ((events & EPOLLERR) ||
             ((events & EPOLLHUP) && !(c->ep_mask & EPOLLIN))) {
    c->broken = 1; /* the peer is gone and we are not reading */
  }
  conn_pump(c, now);
  conn_update(c);
}

static void conn_new(struct server *srv, int fd, const struct sockaddr *sa,
                     socklen_t salen, int64_t now) {
  char host[INET6_ADDRSTRLEN], serv[16];
  struct conn *c;
  struct epoll_event ee;
  int one = 1, rc;

  if (getnameinfo(sa, salen, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    close(fd);
    return;
  }
  c = calloc(1, sizeof *c);
  if (c)
    c->in = malloc(IN_CAP);
  if (!c || !c->in) {
    if (c)
      free(c);
    logmsg(srv, NULL, "out of memory; connection from %s dropped", host);
    close(fd);
    return;
  }
  c->h.kind = H_CONN;
  c->h.fd = fd;
  c->srv = srv;
  c->msg_fd = -1;
  c->bh.kind = H_BACKEND;
  c->bh.fd = -1;
  snprintf(c->peer, sizeof c->peer, sa->sa_family == AF_INET6 ? "[%s]:%s"
                                                              : "%s:%s",
           host, serv);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  rc = mxgw_session_new(&c->s, srv->cfg, NULL);
  if (rc < 0) {
    logmsg(srv, c->peer, "session: %s", mxgw_strerror(rc));
    free(c->in);
    free(c);
    close(fd);
    return;
  }
  mxgw_session_set_user(c->s, c);
  if (srv->proxy_target) {
    rc = mxgw_proxy_new(&c->px, c->s, NULL);
    if (rc == 0)
      rc = mxgw_proxy_set_str(c->px, MXGW_PROXY_OPT_LHLO_NAME, srv->hostname);
    if (rc == 0) { /* the Received header's date: wall clock from now_ms */
      struct timespec rt;
      clock_gettime(CLOCK_REALTIME, &rt);
      rc = mxgw_proxy_set_int(c->px, MXGW_PROXY_OPT_CLOCK_OFFSET_MS,
                              (int64_t)rt.tv_sec * 1000 +
                                  rt.tv_nsec / 1000000 - now);
    }
    if (rc == 0 && srv->proxy_timeout > 0) {
      mxgw_proxy_set_int(c->px, MXGW_PROXY_OPT_COMMAND_TIMEOUT_MS,
                         srv->proxy_timeout);
      mxgw_proxy_set_int(c->px, MXGW_PROXY_OPT_DATA_TIMEOUT_MS,
                         srv->proxy_timeout);
    }
    if (rc < 0) {
      logmsg(srv, c->peer, "proxy: %s", mxgw_strerror(rc));
      mxgw_proxy_free(c->px);
      mxgw_session_free(c->s);
      free(c->in);
      free(c);
      close(fd);
      return;
    }
  }
  if (!srv->quiet)
    mxgw_session_set_log(c->s, session_log, c);
  rc = mxgw_session_set_peer(c->s, host, atoi(serv), NULL);
  if (rc == 0)
    rc = mxgw_session_start(c->s, now);
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  ee.data.ptr = &c->h;
  if (rc == 0 && epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
    rc = MXGW_E_IO;
  if (rc < 0) {
    logmsg(srv, c->peer, "cannot start session: %s", mxgw_strerror(rc));
    mxgw_proxy_free(c->px);
    mxgw_session_free(c->s);
    free(c->in);
    free(c);
    close(fd);
    return;
  }
  c->ep_mask = EPOLLIN;
  c->next = srv->conns;
  if (srv->conns)
    srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  conn_pump(c, now);
  conn_update(c);
}

/* ------------------------------------------------------------------------ */
/* Listeners, signals, the loop                                             */
/* ------------------------------------------------------------------------ */

static void set_listener_interest(struct server *srv, uint32_t events) {
  size_t i;
  for (i = 0; i < srv->nls; i++) {
    struct epoll_event ee;
    if (srv->ls[i].h.fd < 0)
      continue;
    memset(&ee, 0, sizeof ee);
    ee.events = events;
    ee.data.ptr = &srv->ls[i].h;
    epoll_ctl(srv->epfd, EPOLL_CTL_MOD, srv->ls[i].h.fd, &ee);
  }
}

static void resume_accept(struct server *srv) {
  if (srv->accept_paused && !srv->stopping) {
    srv->accept_paused = 0;
    set_listener_interest(srv, EPOLLIN);
  }
}

static void on_accept(struct server *srv, struct listener *l, int64_t now) {
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(l->h.fd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      /* Out of descriptors or memory: stop accepting until a connection
       * closes, instead of spinning on a listener that stays readable. */
      logmsg(srv, l->name, "accept: %s", strerror(errno));
      srv->accept_paused = 1;
      set_listener_interest(srv, 0);
      return;
    }
    if (srv->nconns >= srv->max_conns) {
      char line[320];
      int n = snprintf(line, sizeof line,
                       "421 4.7.0 %s Error: too many connections\r\n",
                       srv->hostname);
      if (n > 0 && send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        n = 0;
      logmsg(srv, l->name, "connection limit (%zu) reached; refused",
             srv->max_conns);
      close(fd);
      continue;
    }
    conn_new(srv, fd, (struct sockaddr *)&ss, sl, now);
  }
}

/* Clean stop: no new connections, every session says 421 and closes. */
static void begin_stop(struct server *srv, int signo, int64_t now) {
  struct conn *c, *next;
  size_t i;
  if (srv->stopping) {
    srv->force_stop = 1;
    return;
  }
  logmsg(srv, NULL, "signal %d: stopping", signo);
  srv->stopping = 1;
  srv->stop_deadline = now + STOP_GRACE_MS;
  for (i = 0; i < srv->nls; i++) {
    if (srv->ls[i].h.fd >= 0) {
      epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->ls[i].h.fd, NULL);
      close(srv->ls[i].h.fd);
      srv->ls[i].h.fd = -1;
    }
  }
  for (c = srv->conns; c; c = next) {
    next = c->next;
    if (!c->closed_ev)
      mxgw_session_shutdown(c->s, NULL);
    conn_pump(c, now);
    conn_update(c);
  }
}

/* Log the serving certificate: what an operator checks first. */
static void log_cert(struct server *srv, const char *what) {
  size_t i, n = mxgw_tls_cert_count(srv->tls);
  for (i = 0; i < n; i++) {
    const char *subj = "", *san = "", *na = "", *kt = "", *fp = "";
    size_t sl = 0, al = 0, nl = 0, kl = 0, fl = 0;
    int64_t days = 0, bits = 0;
    mxgw_tls_cert_str(srv->tls, i, MXGW_CERT_SUBJECT, &subj, &sl);
    mxgw_tls_cert_str(srv->tls, i, MXGW_CERT_SAN, &san, &al);
    mxgw_tls_cert_str(srv->tls, i, MXGW_CERT_NOT_AFTER, &na, &nl);
    mxgw_tls_cert_str(srv->tls, i, MXGW_CERT_KEY_TYPE, &kt, &kl);
    mxgw_tls_cert_str(srv->tls, i, MXGW_CERT_FINGERPRINT, &fp, &fl);
    mxgw_tls_cert_int(srv->tls, i, MXGW_CERT_DAYS_LEFT, &days);
    mxgw_tls_cert_int(srv->tls, i, MXGW_CERT_KEY_BITS, &bits);
    logmsg(srv, NULL,
           "%s certificate %zu (generation %llu): %.*s, SAN %.*s, %.*s %lld "
           "key, expires %.*s (%lld days), sha256 %.*s",
           what, i, (unsigned long long)mxgw_tls_generation(srv->tls),
           (int)sl, subj, (int)al, san, (int)kl, kt, (long long)bits,
           (int)nl, na, (long long)days, (int)fl, fp);
  }
  for (i = 0; i < mxgw_tls_warning_count(srv->tls); i++) {
    const char *w;
    size_t wl;
    if (mxgw_tls_warning(srv->tls, i, &w, &wl) == 0)
      logmsg(srv, NULL, "TLS warning: %.*s", (int)wl, w);
  }
}

/* Reload the certificate files: on SIGHUP, or when they changed. New
 * sessions get the new certificate, sessions in progress keep theirs, and a
 * failed reload keeps serving the old one. */
static void tls_reload(struct server *srv, int forced, int64_t now) {
  int rc;
  if (!srv->tls)
    return;
  rc = forced ? mxgw_tls_reload(srv->tls) : mxgw_tls_check_reload(srv->tls, now);
  if (rc < 0)
    logmsg(srv, NULL, "TLS reload failed, still serving generation %llu: %s",
           (unsigned long long)mxgw_tls_generation(srv->tls),
           mxgw_tls_errmsg(srv->tls));
  else if (forced || rc > 0)
    log_cert(srv, "reloaded:");
}

static void on_signal(struct server *srv, int64_t now) {
  struct signalfd_siginfo si;
  while (read(srv->sigh.fd, &si, sizeof si) == (ssize_t)sizeof si) {
    if (si.ssi_signo == SIGHUP)
      tls_reload(srv, 1, now);
    else
      begin_stop(srv, (int)si.ssi_signo, now);
  }
}

static void bury(struct server *srv) {
  while (srv->graveyard) {
    struct conn *c = srv->graveyard;
    srv->graveyard = c->next;
    free(c->in);
    free(c);
  }
}

/* Fire due timers and return the epoll timeout up to the next one. */
static int run_timers(struct server *srv, int64_t now) {
  struct conn *c, *next;
  int64_t earliest = -1;
  for (c = srv->conns; c; c = next) {
    int64_t d;
    next = c->next;
    d = mxgw_session_deadline(c->s);
    if (d >= 0 && d <= now) {
      mxgw_session_tick(c->s, now);
      conn_pump(c, now);
      conn_update(c);
      if (c->dead)
        continue;
      d = mxgw_session_deadline(c->s);
    }
    if (d >= 0 && (earliest < 0 || d < earliest))
      earliest = d;
    if (c->px) {
      d = mxgw_proxy_deadline(c->px);
      if (d >= 0 && d <= now) {
        mxgw_proxy_tick(c->px, now);
        conn_pump(c, now);
        conn_update(c);
        if (c->dead)
          continue;
        d = mxgw_proxy_deadline(c->px);
      }
      if (d >= 0 && (earliest < 0 || d < earliest))
        earliest = d;
    }
  }
  if (srv->tls && srv->tls_interval > 0) {
    if (now >= srv->tls_next_check) {
      tls_reload(srv, 0, now);
      srv->tls_next_check = now + srv->tls_interval;
    }
    if (earliest < 0 || srv->tls_next_check < earliest)
      earliest = srv->tls_next_check;
  }
  if (srv->stopping && (earliest < 0 || srv->stop_deadline < earliest))
    earliest = srv->stop_deadline;
  if (earliest < 0)
    return -1;
  if (earliest <= now)
    return 0;
  return earliest - now > INT_MAX ? INT_MAX : (int)(earliest - now);
}

static void run(struct server *srv) {
  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    int64_t now = now_ms();
    int timeout, n, i;
    timeout = run_timers(srv, now);
    bury(srv);
    if (srv->stopping &&
        (srv->nconns == 0 || srv->force_stop || now >= srv->stop_deadline))
      break;
    n = epoll_wait(srv->epfd, evs, MAX_EVENTS, timeout);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_wait: %s", strerror(errno));
    }
    now = now_ms();
    for (i = 0; i < n; i++) {
      struct handle *h = evs[i].data.ptr;
      switch (h->kind) {
      case H_LISTENER:
        on_accept(srv, (struct listener *)(void *)h, now);
        break;
      case H_SIGNAL:
        on_signal(srv, now);
        break;
      case H_CONN:
        conn_io((struct conn *)(void *)h, evs[i].events, now);
        break;
      case H_BACKEND:
        backend_io((struct conn *)(void *)((char *)h -
                                            offsetof(struct conn, bh)),
                   evs[i].events, now);
        break;
      default:
        break;
      }
    }
    bury(srv);
  }
  /* Whatever is still open after the grace period is cut off. */
  while (srv->conns)
    conn_close(srv->conns);
  bury(srv);
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

/* "127.0.0.1:25", "[::1]:25", "localhost:25" (numeric hosts only). */
static void open_listener(struct server *srv, const char *spec) {
  char host[256], serv[16], shown[INET6_ADDRSTRLEN];
  const char *colon;
  struct addrinfo hints, *res = NULL;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  struct listener *l;
  struct epoll_event ee;
  int fd, one = 1, rc;
  size_t hl;

  if (srv->nls >= MAX_LISTEN)
    die("too many --listen options (at most %d)", MAX_LISTEN);
  if (spec[0] == '[') {
    const char *end = strchr(spec, ']');
    if (!end || end[1] != ':')
      die("bad --listen address '%s' (want [IPv6]:PORT)", spec);
    hl = (size_t)(end - spec - 1);
    if (hl >= sizeof host)
      die("bad --listen address '%s'", spec);
    memcpy(host, spec + 1, hl);
    colon = end + 1;
  } else {
    colon = strrchr(spec, ':');
    if (!colon)
      die("bad --listen address '%s' (want ADDR:PORT)", spec);
    hl = (size_t)(colon - spec);
    if (hl >= sizeof host)
      die("bad --listen address '%s'", spec);
    memcpy(host, spec, hl);
  }
  host[hl] = '\0';
  if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof serv ||
      strspn(colon + 1, "0123456789") != strlen(colon + 1))
    die("bad port in --listen '%s'", spec);
  strcpy(serv, colon + 1);

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  rc = getaddrinfo(host[0] ? host : NULL, serv, &hints, &res);
  if (rc != 0)
    die("--listen '%s': %s", spec, gai_strerror(rc));

  fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket: %s", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (res->ai_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
    die("bind %s: %s", spec, strerror(errno));
  if (listen(fd, 511) < 0)
    die("listen %s: %s", spec, strerror(errno));
  freeaddrinfo(res);

  /* Report the real port (the user may have asked for port 0). */
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
      getnameinfo((struct sockaddr *)&ss, sl, shown, sizeof shown, serv,
                  sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    die("getsockname: %s", strerror(errno));
  l = &srv->ls[srv->nls++];
  l->h.kind = H_LISTENER;
  l->h.fd = fd;
  snprintf(l->name, sizeof l->name,
           ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", shown, serv);
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  ee.data.ptr = &l->h;
  if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
    die("epoll_ctl: %s", strerror(errno));
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROG " --listen ADDR:PORT --dir DIR [options]\n"
          "  --listen ADDR:PORT  listen here (repeatable; [::1]:PORT for "
          "IPv6; PORT 0 = any free port)\n"
          "  --dir DIR           store each message as DIR/<queue-id>.eml\n"
          "  --hostname NAME     our name in the greeting and Received\n"
          "  --max-size N        maximum message size in octets (0 = none)\n"
          "  --max-conns N       concurrent connections (default %d)\n"
          "  --timeout MS        command and data timeouts in milliseconds\n"
          "                      (default: the engine's, 300 s and 180 s)\n"
          "  --tls-cert FILE     certificate chain (PEM, leaf first)\n"
          "  --tls-key FILE      private key (PEM, mode 0600)\n"
          "  --tls-policy P      none, may (offer STARTTLS; default with a\n"
          "                      certificate) or encrypt (MAIL before TLS\n"
          "                      gets 530 5.7.0)\n"
          "  --smtps             implicit TLS on every listener (RFC 8314)\n"
          "  --tls-reload-ms MS  check the certificate files for changes this\n"
          "                      often (default 60000; 0 = only on SIGHUP)\n"
          "  --lmtp-proxy T      proxy mode: relay each message in step to\n"
          "                      the LMTP backend T (HOST:PORT, [V6]:PORT or\n"
          "                      unix:PATH; numeric) instead of writing it\n"
          "                      to --dir; its replies become ours\n"
          "  --quiet             no log lines on stderr\n"
          "  --help, --version\n",
          DEFAULT_MAX_CONNS);
}

static long long parse_num(const char *opt, const char *arg, long long min,
                           long long max) {
  char *end;
  long long v;
  errno = 0;
  v = strtoll(arg, &end, 10);
  if (errno || end == arg || *end || v < min || v > max)
    die("%s: '%s' is not a number in %lld..%lld", opt, arg, min, max);
  return v;
}

/* Long options only; new ones (--tls-cert, --tls-key, ...) are one row in
 * the table and one case in the switch. */
enum {
  OPT_LISTEN = 256,
  OPT_DIR,
  OPT_HOSTNAME,
  OPT_MAX_SIZE,
  OPT_MAX_CONNS,
  OPT_TIMEOUT,
  OPT_QUIET,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_TLS_POLICY,
  OPT_SMTPS,
  OPT_TLS_RELOAD,
  OPT_HELP,
  OPT_VERSION,
  OPT_LMTP_PROXY
};

/* --lmtp-proxy: "unix:PATH", "HOST:PORT" or "[V6]:PORT" (numeric). */
static void parse_proxy_target(struct server *srv, const char *t) {
  memset(&srv->proxy_sa, 0, sizeof srv->proxy_sa);
  if (strncmp(t, "unix:", 5) == 0) {
    struct sockaddr_un *un = (struct sockaddr_un *)&srv->proxy_sa;
    if (strlen(t + 5) == 0 || strlen(t + 5) >= sizeof un->sun_path)
      die("--lmtp-proxy '%s': bad socket path", t);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, t + 5, strlen(t + 5) + 1);
    srv->proxy_salen = (socklen_t)sizeof *un;
    return;
  }
  char host[256];
  const char *port;
  if (t[0] == '[') {
    const char *e = strchr(t, ']');
    if (!e || e[1] != ':' || (size_t)(e - t - 1) >= sizeof host)
      die("--lmtp-proxy '%s': want [V6]:PORT", t);
    memcpy(host, t + 1, (size_t)(e - t - 1));
    host[e - t - 1] = '\0';
    port = e + 2;
  } else {
    const char *col = strrchr(t, ':');
    if (!col || (size_t)(col - t) >= sizeof host)
      die("--lmtp-proxy '%s': want HOST:PORT or unix:PATH", t);
    memcpy(host, t, (size_t)(col - t));
    host[col - t] = '\0';
    port = col + 1;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0)
    die("--lmtp-proxy '%s': %s", t, gai_strerror(rc));
  memcpy(&srv->proxy_sa, res->ai_addr, res->ai_addrlen);
  srv->proxy_salen = res->ai_addrlen;
  freeaddrinfo(res);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, OPT_LISTEN},
      {"dir", required_argument, NULL, OPT_DIR},
      {"hostname", required_argument, NULL, OPT_HOSTNAME},
      {"max-size", required_argument, NULL, OPT_MAX_SIZE},
      {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"quiet", no_argument, NULL, OPT_QUIET},
      {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
      {"tls-key", required_argument, NULL, OPT_TLS_KEY},
      {"tls-policy", required_argument, NULL, OPT_TLS_POLICY},
      {"smtps", no_argument, NULL, OPT_SMTPS},
      {"tls-reload-ms", required_argument, NULL, OPT_TLS_RELOAD},
      {"help", no_argument, NULL, OPT_HELP},
      {"version", no_argument, NULL, OPT_VERSION},
      {"lmtp-proxy", required_argument, NULL, OPT_LMTP_PROXY},
      {NULL, 0, NULL, 0}};
  const char *listen_specs[MAX_LISTEN];
  size_t nlisten = 0, i;
  const char *hostname = NULL;
  const char *tls_cert = NULL, *tls_key = NULL, *tls_policy = NULL;
  int smtps = 0;
  long long max_size = -1, timeout_ms = -1, tls_reload_ms = 60000;
  struct server srv;
  sigset_t sigs;
  struct epoll_event ee;
  int opt, rc;

  memset(&srv, 0, sizeof srv);
  srv.max_conns = DEFAULT_MAX_CONNS;
  srv.pid = (long)getpid();
  srv.dirfd = -1;

  while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (opt) {
    case OPT_LISTEN:
      if (nlisten >= MAX_LISTEN)
        die("too many --listen options (at most %d)", MAX_LISTEN);
      listen_specs[nlisten++] = optarg;
      break;
    case OPT_DIR:
      srv.dir = optarg;
      break;
    case OPT_LMTP_PROXY:
      srv.proxy_target = optarg;
      parse_proxy_target(&srv, optarg);
      break;
    case OPT_HOSTNAME:
      hostname = optarg;
      break;
    case OPT_MAX_SIZE:
      max_size = parse_num("--max-size", optarg, 0, INT64_MAX);
      break;
    case OPT_MAX_CONNS:
      srv.max_conns = (size_t)parse_num("--max-conns", optarg, 1, 1000000);
      break;
    case OPT_TIMEOUT:
      timeout_ms = parse_num("--timeout", optarg, 1, 86400000);
      srv.proxy_timeout = timeout_ms;
      break;
    case OPT_QUIET:
      srv.quiet = 1;
      break;
    case OPT_TLS_CERT:
      tls_cert = optarg;
      break;
    case OPT_TLS_KEY:
      tls_key = optarg;
      break;
    case OPT_TLS_POLICY:
      if (strcmp(optarg, "none") && strcmp(optarg, "may") &&
          strcmp(optarg, "encrypt"))
        die("--tls-policy: '%s' is not none, may or encrypt", optarg);
      tls_policy = optarg;
      break;
    case OPT_SMTPS:
      smtps = 1;
      break;
    case OPT_TLS_RELOAD:
      tls_reload_ms = parse_num("--tls-reload-ms", optarg, 0, 86400000);
      break;
    case OPT_HELP:
      usage(stdout);
      return 0;
    case OPT_VERSION:
      printf(PROG " (libmxgw %s)\n", mxgw_version(NULL));
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc || nlisten == 0 || !srv.dir) {
    if (optind < argc)
      fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }

  const char *hostname_opt = hostname; /* before the fallback below */
  /* The session configuration, shared (frozen) by every session. */
  rc = mxgw_session_config_new(&srv.cfg, NULL);
  if (rc < 0)
    die("config: %s", mxgw_strerror(rc));
  if (max_size >= 0 &&
      (rc = mxgw_session_config_set_int(srv.cfg, MXGW_OPT_MAX_MESSAGE_SIZE,
                                        max_size)) < 0)
    die("--max-size: %s", mxgw_strerror(rc));
  if (timeout_ms > 0 &&
      ((rc = mxgw_session_config_set_int(srv.cfg, MXGW_OPT_COMMAND_TIMEOUT_MS,
                                         timeout_ms)) < 0 ||
       (rc = mxgw_session_config_set_int(srv.cfg, MXGW_OPT_DATA_TIMEOUT_MS,
                                         timeout_ms)) < 0))
    die("--timeout: %s", mxgw_strerror(rc));
  if (hostname) {
    rc = mxgw_session_config_set_str(srv.cfg, MXGW_OPT_HOSTNAME, hostname);
    if (rc < 0)
      die("--hostname '%s': %s", hostname, mxgw_strerror(rc));
  } else if (gethostname(srv.hostname, sizeof srv.hostname - 1) == 0 &&
             mxgw_session_config_set_str(srv.cfg, MXGW_OPT_HOSTNAME,
                                         srv.hostname) == 0) {
    hostname = srv.hostname; /* the system's name, if the engine takes it */
  } else {
    hostname = "localhost"; /* the engine's default */
  }
  snprintf(srv.hostname, sizeof srv.hostname, "%s", hostname);

  /* TLS: the certificate is validated now, with errors that name the file
   * (a self-signed CN=localhost certificate for another name is refused). */
  if (!tls_cert != !tls_key)
    die("--tls-cert and --tls-key go together");
  if ((tls_policy && strcmp(tls_policy, "none")) || smtps) {
    if (!tls_cert)
      die("--tls-policy %s and --smtps need --tls-cert and --tls-key",
          tls_policy ? tls_policy : "may");
  }
  if (tls_cert && !(tls_policy && !strcmp(tls_policy, "none") && !smtps)) {
    rc = mxgw_tls_new(&srv.tls, MXGW_TLS_SERVER, NULL);
    if (rc < 0)
      die("TLS: %s", mxgw_strerror(rc));
    /* Only a name given with --hostname is a promise the certificate must
     * keep; the system's name is not checked. */
    if (hostname_opt && mxgw_tls_set_str(srv.tls, MXGW_TLS_HOSTNAME,
                                         hostname_opt) < 0)
      die("TLS: %s", mxgw_tls_errmsg(srv.tls));
    /* The context rate-limits its own file checks: make its interval ours,
     * or --tls-reload-ms would be capped by its 60 s default. */
    if (tls_reload_ms > 0 &&
        (rc = mxgw_tls_set_int(srv.tls, MXGW_TLS_RELOAD_INTERVAL_MS,
                               tls_reload_ms)) < 0)
      die("TLS: --tls-reload-ms: %s", mxgw_strerror(rc));
    if (mxgw_tls_add_cert_files(srv.tls, NULL, tls_cert, tls_key) < 0 ||
        mxgw_tls_reload(srv.tls) < 0)
      die("TLS: %s", mxgw_tls_errmsg(srv.tls));
    if ((rc = mxgw_session_config_set_tls(srv.cfg, srv.tls)) < 0 ||
        (rc = mxgw_session_config_set_int(srv.cfg, MXGW_OPT_STARTTLS,
                                          smtps ? 0 : 1)) < 0 ||
        (rc = mxgw_session_config_set_int(
             srv.cfg, MXGW_OPT_REQUIRE_TLS,
             tls_policy && !strcmp(tls_policy, "encrypt"))) < 0 ||
        (rc = mxgw_session_config_set_int(srv.cfg, MXGW_OPT_IMPLICIT_TLS,
                                          smtps)) < 0)
      die("TLS configuration: %s", mxgw_strerror(rc));
    srv.tls_interval = tls_reload_ms;
    srv.tls_next_check = now_ms() + tls_reload_ms;
  }

  /* Signals: SIGINT/SIGTERM arrive through a signalfd (no handler, no
   * global flag); a closed client or a file size limit must not kill us. */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0)
    die("sigprocmask: %s", strerror(errno));

  srv.epfd = epoll_create1(EPOLL_CLOEXEC);
  if (srv.epfd < 0)
    die("epoll_create1: %s", strerror(errno));
  srv.sigh.kind = H_SIGNAL;
  srv.sigh.fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  if (srv.sigh.fd < 0)
    die("signalfd: %s", strerror(errno));
  memset(&ee, 0, sizeof ee);
  ee.events = EPOLLIN;
  ee.data.ptr = &srv.sigh;
  if (epoll_ctl(srv.epfd, EPOLL_CTL_ADD, srv.sigh.fd, &ee) < 0)
    die("epoll_ctl: %s", strerror(errno));

  for (i = 0; i < nlisten; i++)
    open_listener(&srv, listen_specs[i]);

  /* The spool directory (created if missing, one level). */
  if (mkdir(srv.dir, 0755) < 0 && errno != EEXIST)
    die("mkdir %s: %s", srv.dir, strerror(errno));
  srv.dirfd = open(srv.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (srv.dirfd < 0)
    die("open %s: %s", srv.dir, strerror(errno));

  if (srv.tls)
    log_cert(&srv, smtps ? "smtps:" : "STARTTLS:");
  for (i = 0; i < srv.nls; i++)
    fprintf(stderr, "listening on %s\n", srv.ls[i].name);
  fflush(stderr);

  run(&srv);

  logmsg(&srv, NULL, "stopped");
  for (i = 0; i < srv.nls; i++)
    if (srv.ls[i].h.fd >= 0)
      close(srv.ls[i].h.fd);
  close(srv.sigh.fd);
  close(srv.epfd);
  close(srv.dirfd);
  mxgw_session_config_free(srv.cfg);
  mxgw_tls_free(srv.tls);
  return 0;
}
