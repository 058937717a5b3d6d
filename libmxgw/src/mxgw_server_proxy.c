/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server_proxy.c: proxy (before-queue) mode of the server layer
 * (MXGW_SRV_OPT_PROXY_MODE). Drives one mxgw_proxy per session on the
 * session's loop: the backend socket (non-blocking connect to the
 * configured backends in order, the first that connects is used), its
 * epoll registration in the loop's set, the backend's deadlines (the
 * loop's timers ask mxgw__srv_px_deadline()), and the Received-SPF field
 * written ahead of the proxy's Received field. mxgw_server.c decides what
 * reaches the proxy (after SPF, the accepted domains and the callbacks)
 * and logs the outcomes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mxgw/mxgw_deliver.h"
#include "mxgw/mxgw_proxy.h"
#include "mxgw_lmtp_int.h"
#include "mxgw_server_int.h"

struct mxgw__srv_px {
  mxgw_mem mem;
  mxgw_proxy *p;
  mxgw_session *s;
  const mxgw_server_config *cfg; /* the session's snapshot (kept alive by
                                    the connection) */
  int epfd;
  void *ep_ptr;
  int fd;
  uint32_t mask;
  int connecting;
  int64_t connect_deadline;
  int64_t connect_timeout;
  size_t bi;      /* backend being tried */
  int trying;     /* a connection round is under way */
  char label[300];
  char why[400];  /* failures of this round */
  mxgw__srv_px_log_fn log;
  void *log_user;
  /* Received-SPF */
  char *prefix;
  int data_wait;  /* DATA handed to the proxy, its answer not seen */
  const char *pre; /* prefix bytes still to write before the proxy's */
  size_t pre_len;
  /* the decision being answered */
  int watch;
  int ans_ev, ans_code;
  char ans_text[512];
  /* the envelope as it was when the decision was handed over (the
   * session forgets a refused RCPT and the envelope after the message) */
  char from[320], to[320];
};

static void pxlog(struct mxgw__srv_px *x, int level, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
static void pxlog(struct mxgw__srv_px *x, int level, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  if (!x->log)
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  x->log(x->log_user, level, line);
}

static int64_t dopt(const mxgw_server_config *cfg, int key, int64_t def) {
  int64_t v = def;
  for (size_t i = 0; i < cfg->ndopt; i++)
    if (cfg->dopt[i].key == key)
      v = cfg->dopt[i].value;
  return v;
}

int mxgw__srv_px_new(struct mxgw__srv_px **out, const mxgw_mem *mem,
                     mxgw_session *s, const mxgw_server_config *cfg,
                     int epfd, void *ep_ptr, mxgw__srv_px_log_fn log,
                     void *log_user) {
  struct mxgw__srv_px *x = mxgw__calloc(mem, 1, sizeof *x);
  if (!x)
    return MXGW_E_NOMEM;
  x->mem = *mem;
  x->s = s;
  x->cfg = cfg;
  x->epfd = epfd;
  x->ep_ptr = ep_ptr;
  x->fd = -1;
  x->log = log;
  x->log_user = log_user;
  x->connect_timeout = dopt(cfg, MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS, 30000);
  int rc = mxgw_proxy_new(&x->p, s, mem);
  if (rc == 0)
    rc = mxgw_proxy_set_str(x->p, MXGW_PROXY_OPT_LHLO_NAME,
                            cfg->hostname ? cfg->hostname : "localhost");
  if (rc == 0)
    rc = mxgw_proxy_set_int(
        x->p, MXGW_PROXY_OPT_COMMAND_TIMEOUT_MS,
        dopt(cfg, MXGW_DELIVER_OPT_COMMAND_TIMEOUT_MS, 300000));
  if (rc == 0)
    rc = mxgw_proxy_set_int(
        x->p, MXGW_PROXY_OPT_DATA_TIMEOUT_MS,
        dopt(cfg, MXGW_DELIVER_OPT_DATA_TIMEOUT_MS, 600000));
  if (rc == 0)
    rc = mxgw_proxy_set_int(x->p, MXGW_PROXY_OPT_XCLIENT,
                            dopt(cfg, MXGW_DELIVER_OPT_XCLIENT, 1) ? 1 : 0);
  if (rc == 0) {
    /* The Received date: the proxy is given CLOCK_MONOTONIC ms. */
    struct timespec mono, real;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &real);
    int64_t off = ((int64_t)real.tv_sec - (int64_t)mono.tv_sec) * 1000 +
                  (real.tv_nsec - mono.tv_nsec) / 1000000;
    rc = mxgw_proxy_set_int(x->p, MXGW_PROXY_OPT_CLOCK_OFFSET_MS, off);
  }
  if (rc < 0) {
    mxgw__srv_px_free(x);
    return rc;
  }
  *out = x;
  return MXGW_OK;
}

static void sock_close(struct mxgw__srv_px *x) {
  if (x->fd < 0)
    return;
  epoll_ctl(x->epfd, EPOLL_CTL_DEL, x->fd, NULL);
  close(x->fd);
  x->fd = -1;
  x->mask = 0;
  x->connecting = 0;
  x->connect_deadline = -1;
  x->pre = NULL;
  x->pre_len = 0;
}

void mxgw__srv_px_free(struct mxgw__srv_px *x) {
  if (!x)
    return;
  if (x->fd >= 0 && !x->connecting && x->p) {
    /* A QUIT the proxy queued at the session's end: one try, no wait. */
    const char *ptr;
    size_t len;
    if (mxgw_proxy_backend_output(x->p, &ptr, &len) == 0 && len) {
      ssize_t w = send(x->fd, ptr, len, MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)w;
    }
  }
  sock_close(x);
  mxgw_proxy_free(x->p);
  mxgw__free(&x->mem, x->prefix);
  mxgw_mem m = x->mem;
  mxgw__free(&m, x);
}

int mxgw__srv_px_set_prefix(struct mxgw__srv_px *x, const char *hdr) {
  mxgw__free(&x->mem, x->prefix);
  x->prefix = NULL;
  if (hdr && *hdr && !(x->prefix = mxgw__strdup(&x->mem, hdr)))
    return MXGW_E_NOMEM;
  return MXGW_OK;
}

int mxgw__srv_px_event(struct mxgw__srv_px *x, int ev, int64_t now) {
  if (ev == MXGW_EV_MAIL || ev == MXGW_EV_RCPT || ev == MXGW_EV_DATA ||
      ev == MXGW_EV_MESSAGE_END) {
    const char *v;
    size_t n;
    x->watch = ev;
    x->ans_ev = 0;
    if (mxgw_session_get_str(x->s, MXGW_INFO_MAIL_FROM, &v, &n) < 0)
      n = 0;
    snprintf(x->from, sizeof x->from, "%.*s", (int)(n > 300 ? 300 : n),
             n ? v : "");
    if (ev == MXGW_EV_RCPT) {
      if (mxgw_session_get_str(x->s, MXGW_INFO_RCPT, &v, &n) < 0)
        n = 0;
    } else if (ev != MXGW_EV_MAIL) {
      if (mxgw_session_rcpt_get_str(x->s, 0, MXGW_INFO_RCPT, &v, &n) < 0)
        n = 0;
    } else {
      n = 0;
    }
    snprintf(x->to, sizeof x->to, "%.*s", (int)(n > 300 ? 300 : n),
             n ? v : "");
  }
  if (ev == MXGW_EV_DATA)
    x->data_wait = 1;
  return mxgw_proxy_session_event(x->p, ev, now);
}

void mxgw__srv_px_note_reply(struct mxgw__srv_px *x, const char *text,
                             size_t len) {
  if (!x->watch)
    return;
  int ev = x->watch;
  x->watch = 0;
  int code = 0;
  if (len >= 3 && text[0] >= '2' && text[0] <= '5')
    code = (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0');
  /* the last line, without its code and CRLF */
  while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
    len--;
  size_t st = len;
  while (st && text[st - 1] != '\n')
    st--;
  const char *l = text + st;
  size_t ll = len - st;
  if (ll >= 4) {
    l += 4;
    ll -= 4;
  } else {
    ll = 0;
  }
  snprintf(x->ans_text, sizeof x->ans_text, "%.*s",
           (int)(ll > 500 ? 500 : ll), l);
  x->ans_ev = ev;
  x->ans_code = code;
  if (ev == MXGW_EV_DATA && x->data_wait) {
    x->data_wait = 0;
    /* 354 (or the 250 of a first BDAT chunk): the body follows; the
     * Received-SPF field goes first. The DATA command was written and
     * answered, so the proxy has nothing queued before its Received
     * field. */
    if (code >= 200 && code < 400 && x->prefix && x->fd >= 0) {
      x->pre = x->prefix;
      x->pre_len = strlen(x->prefix);
    }
  }
}

int mxgw__srv_px_answered(struct mxgw__srv_px *x, int *ev, int *code,
                          char *text, size_t cap) {
  if (!x->ans_ev)
    return 0;
  *ev = x->ans_ev;
  *code = x->ans_code;
  snprintf(text, cap, "%s", x->ans_text);
  x->ans_ev = 0;
  return 1;
}

const char *mxgw__srv_px_backend(const struct mxgw__srv_px *x) {
  return x->label;
}

const char *mxgw__srv_px_from(const struct mxgw__srv_px *x) {
  return x->from;
}

const char *mxgw__srv_px_to(const struct mxgw__srv_px *x) { return x->to; }

int mxgw__srv_px_paused(const struct mxgw__srv_px *x) {
  return (mxgw_proxy_want(x->p) & MXGW_PROXY_WANT_PAUSE) != 0;
}

int64_t mxgw__srv_px_deadline(const struct mxgw__srv_px *x) {
  int64_t d = mxgw_proxy_deadline(x->p);
  if (x->connecting && x->connect_deadline >= 0 &&
      (d < 0 || x->connect_deadline < d))
    d = x->connect_deadline;
  return d;
}

/* This backend failed to connect: try the next one, or tell the proxy
 * once every backend failed. */
static void connect_failed(struct mxgw__srv_px *x, int err, int64_t now) {
  size_t wl = strlen(x->why);
  snprintf(x->why + wl, sizeof x->why - wl, "%s%s: %s", wl ? "; " : "",
           x->label, err ? strerror(err) : "connect timed out");
  pxlog(x, MXGW_SRV_LOG_WARNING, "warning: proxy: connect to %s: %s",
        x->label, err ? strerror(err) : "timed out");
  sock_close(x);
  x->bi++;
  if (x->bi < x->cfg->nbackends)
    return; /* the next pump connects to the next backend */
  x->trying = 0;
  x->bi = 0;
  x->label[0] = 0;
  /* The reply goes to the client: no backend addresses in it (they are in
   * the log lines above). */
  pxlog(x, MXGW_SRV_LOG_WARNING, "warning: proxy: no backend reachable: %s",
        x->why);
  mxgw_proxy_backend_failed(x->p, "no backend reachable", now);
}

static void start_connect(struct mxgw__srv_px *x, int64_t now) {
  struct sockaddr_storage ss;
  socklen_t sl;
  if (!x->trying) {
    x->trying = 1;
    x->bi = 0;
    x->why[0] = 0;
  }
  const char *t = x->cfg->backends[x->bi];
  if (mxgw__lmtp_target_addr(t, &ss, &sl, x->label, sizeof x->label) < 0) {
    snprintf(x->label, sizeof x->label, "%s", t);
    connect_failed(x, EINVAL, now);
    return;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0) {
    connect_failed(x, errno, now);
    return;
  }
  x->fd = fd;
  mxgw__sock_nodelay(fd, ss.ss_family);
  if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
    x->connecting = 0;
  } else if (errno == EINPROGRESS || errno == EAGAIN) {
    x->connecting = 1;
    x->connect_deadline = now + x->connect_timeout;
  } else {
    connect_failed(x, errno, now);
    return;
  }
  struct epoll_event ee;
  memset(&ee, 0, sizeof ee);
  ee.events = x->mask = EPOLLIN | EPOLLOUT;
  ee.data.ptr = x->ep_ptr;
  if (epoll_ctl(x->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
    connect_failed(x, errno, now);
    return;
  }
  if (!x->connecting) {
    x->trying = 0;
    mxgw_proxy_backend_connected(x->p, now);
  }
}

static void lost(struct mxgw__srv_px *x, const char *what, int err,
                 int64_t now) {
  char why[400];
  snprintf(why, sizeof why, "%s %s: %s", what, x->label, strerror(err));
  pxlog(x, MXGW_SRV_LOG_WARNING, "warning: proxy: %s", why);
  sock_close(x);
  mxgw_proxy_backend_failed(x->p, "connection to the backend lost", now);
}

int mxgw__srv_px_pump(struct mxgw__srv_px *x, int64_t now) {
  int moved = 0;
  for (int round = 0; round < 16; round++) {
    int want = mxgw_proxy_want(x->p);
    if ((want & MXGW_PROXY_WANT_CONNECT) && x->fd < 0) {
      start_connect(x, now);
      moved = 1;
      continue;
    }
    if (want & MXGW_PROXY_WANT_CLOSE) {
      sock_close(x);
      mxgw_proxy_backend_closed(x->p);
      moved = 1;
      continue;
    }
    if (x->fd >= 0 && !x->connecting && x->pre_len) {
      ssize_t n = send(x->fd, x->pre, x->pre_len, MSG_NOSIGNAL);
      if (n > 0) {
        x->pre += n;
        x->pre_len -= (size_t)n;
        moved = 1;
        if (!x->pre_len)
          continue;
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != EINTR) {
        lost(x, "write to", errno, now);
        moved = 1;
        continue;
      }
      break;
    }
    if ((want & MXGW_PROXY_WANT_WRITE) && x->fd >= 0 && !x->connecting) {
      const char *p;
      size_t len;
      mxgw_proxy_backend_output(x->p, &p, &len);
      ssize_t n = send(x->fd, p, len, MSG_NOSIGNAL);
      if (n > 0) {
        mxgw_proxy_backend_consume(x->p, (size_t)n);
        moved = 1;
        if ((size_t)n == len)
          continue;
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != EINTR) {
        lost(x, "write to", errno, now);
        moved = 1;
        continue;
      }
    }
    break;
  }
  if (x->fd >= 0) {
    int want = mxgw_proxy_want(x->p);
    uint32_t mask = EPOLLIN;
    if (x->connecting || x->pre_len || (want & MXGW_PROXY_WANT_WRITE))
      mask |= EPOLLOUT;
    if (mask != x->mask) {
      struct epoll_event ee;
      memset(&ee, 0, sizeof ee);
      ee.events = mask;
      ee.data.ptr = x->ep_ptr;
      if (epoll_ctl(x->epfd, EPOLL_CTL_MOD, x->fd, &ee) == 0)
        x->mask = mask;
    }
  }
  return moved;
}

void mxgw__srv_px_io(struct mxgw__srv_px *x, uint32_t events, int64_t now) {
  if (x->fd < 0)
    return;
  if (x->connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
      return;
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
      connect_failed(x, err, now);
      return;
    }
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    if (getpeername(x->fd, (struct sockaddr *)&peer, &pl) < 0)
      return; /* a stale event: the connect is still in progress */
    x->connecting = 0;
    x->connect_deadline = -1;
    x->trying = 0;
    mxgw_proxy_backend_connected(x->p, now);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buf[16384];
    for (int i = 0; i < 4 && x->fd >= 0; i++) {
      ssize_t n = recv(x->fd, buf, sizeof buf, 0);
      if (n > 0) {
        if (mxgw_proxy_backend_feed(x->p, buf, (size_t)n, now) < 0)
          lost(x, "out of memory reading from", ENOMEM, now);
        if ((size_t)n < sizeof buf)
          break;
      } else if (n == 0) {
        mxgw_proxy_backend_eof(x->p, now);
        break;
      } else {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          lost(x, "read from", errno, now);
        break;
      }
    }
  }
}

void mxgw__srv_px_tick(struct mxgw__srv_px *x, int64_t now) {
  if (x->connecting && x->connect_deadline >= 0 &&
      now >= x->connect_deadline) {
    connect_failed(x, 0, now);
    return;
  }
  if (mxgw_proxy_tick(x->p, now) == 1)
    pxlog(x, MXGW_SRV_LOG_WARNING, "warning: proxy: %s: %s", x->label,
          mxgw_proxy_errmsg(x->p));
}
