/* SPDX-License-Identifier: MIT */
/*
 * mxgw_doctor_net.c: blocking socket helpers of the doctor (connect with a
 * timeout, SMTP/LMTP replies, optional TLS through OpenSSL), and the
 * backend (LMTP) and queue checks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "mxgw/mxgw_lmtp.h"
#include "mxgw/mxgw_queue.h"
#include "mxgw_int.h"
#include "mxgw_doctor_int.h"

/* ---- targets and sockets ------------------------------------------------ */

int mxgw__doc_parse_target(const char *t, int allow_unix, char *host,
                           size_t hcap, int *port, int *is_unix) {
  *is_unix = 0;
  *port = 0;
  if (!t || !*t)
    return -1;
  if (!strncmp(t, "unix:", 5)) {
    if (!allow_unix || !t[5] || strlen(t + 5) >= hcap ||
        strlen(t + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
      return -1;
    strcpy(host, t + 5);
    *is_unix = 1;
    return 0;
  }
  const char *colon;
  size_t hl;
  if (t[0] == '[') {
    const char *rb = strchr(t, ']');
    if (!rb || rb[1] != ':')
      return -1;
    hl = (size_t)(rb - t - 1);
    if (hl == 0 || hl >= hcap)
      return -1;
    memcpy(host, t + 1, hl);
    colon = rb + 1;
  } else {
    colon = strrchr(t, ':');
    if (!colon || colon == t || memchr(t, ':', (size_t)(colon - t)))
      return -1;
    hl = (size_t)(colon - t);
    if (hl >= hcap)
      return -1;
    memcpy(host, t, hl);
  }
  host[hl] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || p < 1 || p > 65535)
    return -1;
  *port = (int)p;
  return 0;
}


static int connect_addr(const struct sockaddr *sa, socklen_t sl, int family,
                        int64_t timeout_ms, int *err_no) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *err_no = errno;
    return -1;
  }
  mxgw__sock_nodelay(fd, family);
  if (connect(fd, sa, sl) != 0) {
    if (errno != EINPROGRESS) {
      *err_no = errno;
      close(fd);
      return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r;
    do {
      r = poll(&p, 1, (int)timeout_ms);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
      *err_no = ETIMEDOUT;
      close(fd);
      return -1;
    }
    int soerr = 0;
    socklen_t l = sizeof soerr;
    if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0 ||
        soerr) {
      *err_no = r < 0 ? errno : soerr ? soerr : EIO;
      close(fd);
      return -1;
    }
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                       .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

int mxgw__doc_connect(doc_conn *c, const char *target, int allow_unix,
                      int64_t timeout_ms, char *err, size_t errcap) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  char host[300];
  int port, is_unix, eno = 0;
  if (mxgw__doc_parse_target(target, allow_unix, host, sizeof host, &port,
                             &is_unix) != 0) {
    mxgw__doc_fmt(err, errcap, "bad address '%s'", target);
    return -1;
  }
  if (is_unix) {
    struct sockaddr_un su;
    memset(&su, 0, sizeof su);
    su.sun_family = AF_UNIX;
    memcpy(su.sun_path, host, strlen(host) + 1);
    c->fd = connect_addr((struct sockaddr *)&su, sizeof su, AF_UNIX,
                         timeout_ms, &eno);
  } else {
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    char ps[8];
    mxgw__doc_fmt(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &ai);
    if (rc != 0) {
      mxgw__doc_fmt(err, errcap, "%s: %s", host, gai_strerror(rc));
      return -1;
    }
    for (struct addrinfo *a = ai; a && c->fd < 0; a = a->ai_next)
      c->fd = connect_addr(a->ai_addr, a->ai_addrlen, a->ai_family,
                           timeout_ms, &eno);
    freeaddrinfo(ai);
  }
  if (c->fd < 0) {
    if (eno == ETIMEDOUT)
      mxgw__doc_fmt(err, errcap,
                    "connect to %s: no answer within %" PRId64 " ms", target,
                    timeout_ms);
    else
      mxgw__doc_fmt(err, errcap, "connect to %s: %s", target, strerror(eno));
    return -1;
  }
  return 0;
}

void mxgw__doc_close(doc_conn *c) {
  if (c->ssl) {
    SSL_free((SSL *)c->ssl);
    c->ssl = NULL;
  }
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

static long io_read(doc_conn *c, char *buf, size_t n, char *err,
                    size_t errcap) {
  if (c->ssl) {
    int r = SSL_read((SSL *)c->ssl, buf, (int)n);
    if (r > 0)
      return r;
    int e = SSL_get_error((SSL *)c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN)
      return 0;
    if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
      mxgw__doc_fmt(err, errcap, "timed out waiting for a reply");
    else
      mxgw__doc_fmt(err, errcap, "TLS read failed");
    ERR_clear_error();
    return -1;
  }
  ssize_t r;
  do {
    r = recv(c->fd, buf, n, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      mxgw__doc_fmt(err, errcap, "timed out waiting for a reply");
    else
      mxgw__doc_fmt(err, errcap, "read: %s", strerror(errno));
    return -1;
  }
  return (long)r;
}

int mxgw__doc_send(doc_conn *c, const char *line, char *err, size_t errcap) {
  char buf[1100];
  size_t n = strlen(line);
  if (n + 2 > sizeof buf) {
    mxgw__doc_fmt(err, errcap, "line too long");
    return -1;
  }
  memcpy(buf, line, n);
  memcpy(buf + n, "\r\n", 2);
  n += 2;
  size_t off = 0;
  while (off < n) {
    long w;
    if (c->ssl) {
      w = SSL_write((SSL *)c->ssl, buf + off, (int)(n - off));
      if (w <= 0) {
        ERR_clear_error();
        mxgw__doc_fmt(err, errcap, "TLS write failed");
        return -1;
      }
    } else {
      w = (long)send(c->fd, buf + off, n - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR)
          continue;
        mxgw__doc_fmt(err, errcap, "write: %s", strerror(errno));
        return -1;
      }
    }
    off += (size_t)w;
  }
  return 0;
}

int mxgw__doc_reply(doc_conn *c, int *code, char *text, size_t tcap,
                    char *err, size_t errcap) {
  size_t tl = 0;
  if (tcap)
    text[0] = '\0';
  *code = 0;
  for (;;) {
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl) {
      if (c->len >= sizeof c->buf - 1) {
        mxgw__doc_fmt(err, errcap, "reply line too long");
        return -1;
      }
      long r = io_read(c, c->buf + c->len, sizeof c->buf - 1 - c->len, err,
                       errcap);
      if (r < 0)
        return -1;
      if (r == 0) {
        mxgw__doc_fmt(err, errcap, "connection closed by the server");
        return -1;
      }
      c->len += (size_t)r;
      continue;
    }
    size_t ll = (size_t)(nl - c->buf);
    size_t body = ll;
    if (body && c->buf[body - 1] == '\r')
      body--;
    if (body < 3 || c->buf[0] < '2' || c->buf[0] > '5' ||
        (body > 3 && c->buf[3] != ' ' && c->buf[3] != '-')) {
      mxgw__doc_fmt(err, errcap, "not an SMTP reply: \"%.*s\"",
                    (int)(body > 80 ? 80 : body), c->buf);
      return -1;
    }
    int cd = (c->buf[0] - '0') * 100 + (c->buf[1] - '0') * 10 +
             (c->buf[2] - '0');
    int more = body > 3 && c->buf[3] == '-';
    const char *t = body > 4 ? c->buf + 4 : "";
    size_t tn = body > 4 ? body - 4 : 0;
    if (tcap && tl + tn + 2 < tcap) {
      if (tl)
        text[tl++] = '\n';
      memcpy(text + tl, t, tn);
      tl += tn;
      text[tl] = '\0';
    }
    memmove(c->buf, nl + 1, c->len - ll - 1);
    c->len -= ll + 1;
    *code = cd;
    if (!more)
      return 0;
  }
}

/* ---- backend ------------------------------------------------------------ */

static int backend_probe_delivery(mxgw_doctor *d, const char *concerns) {
  char finding[1200], fix[600], sender[300];
  const char *rcpt = d->probe_rcpt;
  if (d->probe_sender)
    mxgw__doc_fmt(sender, sizeof sender, "%s", d->probe_sender);
  else
    mxgw__doc_fmt(sender, sizeof sender, "postmaster@%s",
                  d->domain ? d->domain : "localhost");
  mxgw_lmtp_config *cfg = NULL;
  mxgw_lmtp_conn *conn = NULL;
  int rc = mxgw_lmtp_config_new(&cfg, &d->mem);
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_CONNECT_TIMEOUT_MS,
                                  d->timeout_ms);
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_COMMAND_TIMEOUT_MS,
                                  d->timeout_ms);
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_config_set_int(cfg, MXGW_LMTP_OPT_DATA_TIMEOUT_MS,
                                  d->timeout_ms);
  if (rc == MXGW_OK && d->hostname)
    rc = mxgw_lmtp_config_set_str(cfg, MXGW_LMTP_OPT_LHLO_NAME, d->hostname);
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_conn_new(&conn, cfg, d->backend, &d->mem);
  mxgw_lmtp *cl = conn ? mxgw_lmtp_conn_client(conn) : NULL;
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_msg_new(cl, sender);
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_msg_add_rcpt(cl, rcpt, 0, NULL);
  char tmpl[] = "/tmp/mxgw-doctor-probe.XXXXXX";
  int fd = -1;
  if (rc == MXGW_OK) {
    fd = mkstemp(tmpl);
    if (fd < 0) {
      rc = MXGW_E_IO;
    } else {
      unlink(tmpl);
      char msg[800];
      mxgw__doc_fmt(msg, sizeof msg,
                    "From: <%s>\r\nTo: <%s>\r\nSubject: mxgw-doctor probe "
                    "delivery\r\nX-Mxgw-Doctor: probe\r\n\r\nThis message "
                    "was delivered by mxgw-doctor to test the backend. It "
                    "can be deleted.\r\n",
                    sender, rcpt);
      if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg) ||
          lseek(fd, 0, SEEK_SET) != 0)
        rc = MXGW_E_IO;
    }
  }
  if (rc == MXGW_OK)
    rc = mxgw_lmtp_conn_deliver_fd(conn, fd);
  if (fd >= 0)
    close(fd);
  int status;
  if (rc != MXGW_OK) {
    status = MXGW_DOCTOR_FAIL;
    mxgw__doc_fmt(finding, sizeof finding, "probe delivery to %s not made: %s",
                  rcpt, mxgw_strerror(rc));
    mxgw__doc_fmt(fix, sizeof fix, "check --probe-rcpt and the backend");
  } else {
    cl = mxgw_lmtp_conn_client(conn);
    int64_t code = 0, local = 0;
    const char *enh = "", *text = "";
    size_t el = 0, tl = 0;
    (void)mxgw_lmtp_rcpt_get_int(cl, 0, MXGW_LMTP_R_CODE, &code);
    (void)mxgw_lmtp_rcpt_get_int(cl, 0, MXGW_LMTP_R_LOCAL, &local);
    (void)mxgw_lmtp_rcpt_get_str(cl, 0, MXGW_LMTP_R_ENH, &enh, &el);
    (void)mxgw_lmtp_rcpt_get_str(cl, 0, MXGW_LMTP_R_TEXT, &text, &tl);
    status = code >= 200 && code < 300 ? MXGW_DOCTOR_OK : MXGW_DOCTOR_FAIL;
    mxgw__doc_fmt(finding, sizeof finding, "probe delivery to %s: %d %.*s%s%.*s",
                  rcpt, (int)code, (int)el, enh, el ? " " : "",
                  (int)(tl > 300 ? 300 : tl), text);
    if (status == MXGW_DOCTOR_OK)
      fix[0] = '\0';
    else if (code >= 500)
      mxgw__doc_fmt(fix, sizeof fix,
                    "the backend refuses %s: create the mailbox or fix the "
                    "backend's user database",
                    rcpt);
    else
      mxgw__doc_fmt(fix, sizeof fix,
                    "the backend failed temporarily: read its log");
    (void)mxgw_lmtp_conn_quit(conn);
  }
  mxgw_lmtp_conn_free(conn);
  mxgw_lmtp_config_free(cfg);
  return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_BACKEND, status, concerns, finding,
                       fix, NULL, NULL);
}

int mxgw__doc_check_backend(mxgw_doctor *d) {
  char concerns[400], finding[1200], fix[800], err[400], text[2048];
  mxgw__doc_fmt(concerns, sizeof concerns, "LMTP backend %s", d->backend);
  doc_conn c;
  int code = 0;
  int64_t t0 = mxgw__mono_ms();
  int status = MXGW_DOCTOR_FAIL;
  fix[0] = '\0';
  if (mxgw__doc_connect(&c, d->backend, 1, d->timeout_ms, err, sizeof err)) {
    mxgw__doc_fmt(finding, sizeof finding, "not reachable: %s", err);
    if (!strncmp(d->backend, "unix:", 5))
      mxgw__doc_fmt(fix, sizeof fix,
                    "start the LMTP server (Dovecot: protocols = lmtp, "
                    "service lmtp { unix_listener }) or correct the "
                    "backend path; messages wait in the queue meanwhile");
    else
      mxgw__doc_fmt(fix, sizeof fix,
                    "start the LMTP server (Dovecot: protocols = lmtp, "
                    "service lmtp { inet_listener lmtp { port } }) or "
                    "correct the backend address; messages wait in the "
                    "queue meanwhile");
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_BACKEND, status, concerns,
                         finding, fix, NULL, NULL);
  }
  if (mxgw__doc_reply(&c, &code, text, sizeof text, err, sizeof err)) {
    mxgw__doc_fmt(finding, sizeof finding, "connected, but no greeting: %s",
                  err);
    mxgw__doc_fmt(fix, sizeof fix,
                  "check that the backend address is an LMTP service");
  } else if (code != 220) {
    mxgw__doc_fmt(finding, sizeof finding, "greeting refused: %d %.200s", code,
                  text);
    mxgw__doc_fmt(fix, sizeof fix, "read the backend's log");
  } else {
    char greet[300], lhlo[320];
    const char *nl = strchr(text, '\n');
    mxgw__doc_fmt(greet, sizeof greet, "%.*s",
                  (int)(nl ? nl - text : (long)strlen(text)), text);
    mxgw__doc_fmt(lhlo, sizeof lhlo, "LHLO %s",
                  d->hostname ? d->hostname : "mxgw-doctor");
    if (mxgw__doc_send(&c, lhlo, err, sizeof err) ||
        mxgw__doc_reply(&c, &code, text, sizeof text, err, sizeof err)) {
      mxgw__doc_fmt(finding, sizeof finding, "greeting, then LHLO failed: %s",
                    err);
      mxgw__doc_fmt(fix, sizeof fix,
                    "check that the backend speaks LMTP (not SMTP)");
    } else if (code != 250) {
      mxgw__doc_fmt(finding, sizeof finding, "LHLO refused: %d %.200s", code,
                    text);
      mxgw__doc_fmt(fix, sizeof fix,
                    "check that the backend speaks LMTP (an SMTP server "
                    "answers LHLO with 500)");
    } else {
      status = MXGW_DOCTOR_OK;
      mxgw__doc_fmt(finding, sizeof finding,
                    "reachable: 220 %s (LHLO accepted in %lld ms)", greet,
                    (long long)(mxgw__mono_ms() - t0));
      (void)mxgw__doc_send(&c, "QUIT", err, sizeof err);
      (void)mxgw__doc_reply(&c, &code, text, sizeof text, err, sizeof err);
    }
  }
  mxgw__doc_close(&c);
  int rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_BACKEND, status, concerns,
                         finding, fix, NULL, NULL);
  if (rc == MXGW_OK && status == MXGW_DOCTOR_OK && d->probe_rcpt)
    rc = backend_probe_delivery(d, concerns);
  return rc;
}

/* ---- queue --------------------------------------------------------------- */

static void fmt_age(char *buf, size_t cap, int64_t s) {
  if (s < 0)
    s = 0;
  if (s < 120)
    mxgw__doc_fmt(buf, cap, "%llds", (long long)s);
  else if (s < 7200)
    mxgw__doc_fmt(buf, cap, "%lldm", (long long)(s / 60));
  else if (s < 172800)
    mxgw__doc_fmt(buf, cap, "%lldh%02lldm", (long long)(s / 3600),
                  (long long)(s % 3600 / 60));
  else
    mxgw__doc_fmt(buf, cap, "%lldd%02lldh", (long long)(s / 86400),
                  (long long)(s % 86400 / 3600));
}

int mxgw__doc_check_queue(mxgw_doctor *d) {
  char concerns[400], finding[1400], fix[800];
  mxgw__doc_fmt(concerns, sizeof concerns, "queue %s", d->spool);
  mxgw_queue *q = NULL;
  int rc = mxgw_queue_new(&q, d->spool, &d->mem);
  if (rc == MXGW_E_NOMEM)
    return rc;
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_CREATE, 0);
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_OWNER, 0);
  if (rc == MXGW_OK)
    rc = mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
  if (rc == MXGW_OK)
    rc = mxgw_queue_open(q);
  if (rc != MXGW_OK) {
    mxgw_queue_free(q);
    mxgw__doc_fmt(finding, sizeof finding, "cannot open the spool: %s",
                  mxgw_strerror(rc));
    mxgw__doc_fmt(fix, sizeof fix,
                  "check the spool path (the gateway's spool setting) and "
                  "that this user may read it");
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_QUEUE, MXGW_DOCTOR_FAIL,
                         concerns, finding, fix, NULL, NULL);
  }
  static const int states[] = {MXGW_QSTATE_INCOMING, MXGW_QSTATE_ACTIVE,
                               MXGW_QSTATE_DEFERRED, MXGW_QSTATE_HOLD,
                               MXGW_QSTATE_FAILED,   MXGW_QSTATE_CORRUPT};
  int cnt[6];
  char counts[300];
  size_t cl = 0;
  counts[0] = '\0';
  for (size_t i = 0; i < 6; i++) {
    cnt[i] = mxgw_queue_count(q, states[i]);
    char part[60];
    mxgw__doc_fmt(part, sizeof part, "%s%s %d", i ? ", " : "",
                  mxgw_queue_state_name(states[i]), cnt[i] < 0 ? 0 : cnt[i]);
    size_t pl = strlen(part);
    if (cl + pl < sizeof counts) {
      memcpy(counts + cl, part, pl + 1);
      cl += pl;
    }
  }
  int status = MXGW_DOCTOR_OK;
  fix[0] = '\0';
  if (cnt[2] > 0) {
    /* the oldest deferred message (by arrival) and its last error */
    mxgw_queue_iter *it = NULL;
    mxgw_queue_entry *e = NULL;
    char oid[64] = "", err[600] = "";
    int64_t oldest = INT64_MAX, attempts = 0, next = 0;
    rc = mxgw_queue_iter_new(q, MXGW_QSTATE_DEFERRED, &it);
    while (rc == MXGW_OK) {
      int r = mxgw_queue_iter_next(it, &e);
      if (r == MXGW_E_SYNTAX)
        continue;
      if (r <= 0)
        break;
      int64_t arr = 0;
      (void)mxgw_queue_entry_get_int(e, MXGW_QKEY_ARRIVAL, &arr);
      if (arr >= oldest)
        continue;
      oldest = arr;
      const char *p;
      size_t l;
      if (mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &p, &l) == MXGW_OK)
        mxgw__doc_fmt(oid, sizeof oid, "%.*s", (int)l, p);
      (void)mxgw_queue_entry_get_int(e, MXGW_QKEY_ATTEMPTS, &attempts);
      (void)mxgw_queue_entry_get_int(e, MXGW_QKEY_NEXT_ATTEMPT, &next);
      int64_t nr = 0;
      (void)mxgw_queue_entry_get_int(e, MXGW_QKEY_RCPT_COUNT, &nr);
      err[0] = '\0';
      for (size_t i = 0; i < (size_t)nr; i++) {
        int64_t st = 0, code = 0;
        (void)mxgw_queue_entry_rcpt_get_int(e, i, MXGW_QRKEY_STATE, &st);
        (void)mxgw_queue_entry_rcpt_get_int(e, i, MXGW_QRKEY_CODE, &code);
        if (st != MXGW_RCPT_DEFERRED && !(st == MXGW_RCPT_PENDING && code))
          continue;
        const char *a = "", *enh = "", *tx = "";
        size_t al = 0, el = 0, txl = 0;
        (void)mxgw_queue_entry_rcpt_get_str(e, i, MXGW_QRKEY_ADDR, &a, &al);
        (void)mxgw_queue_entry_rcpt_get_str(e, i, MXGW_QRKEY_ENHANCED, &enh,
                                            &el);
        (void)mxgw_queue_entry_rcpt_get_str(e, i, MXGW_QRKEY_TEXT, &tx, &txl);
        mxgw__doc_fmt(err, sizeof err, "<%.*s>: %d %.*s%s%.*s",
                      (int)(al > 200 ? 200 : al), a, (int)code, (int)el, enh,
                      el ? " " : "", (int)(txl > 300 ? 300 : txl), tx);
        break;
      }
    }
    mxgw_queue_iter_free(it);
    if (rc == MXGW_E_NOMEM) {
      mxgw_queue_free(q);
      return rc;
    }
    char age[40], nexts[40];
    fmt_age(age, sizeof age, d->now - oldest);
    if (next > d->now)
      fmt_age(nexts, sizeof nexts, next - d->now);
    else
      mxgw__doc_fmt(nexts, sizeof nexts, "now");
    status = d->now - oldest > d->deferred_fail_age ? MXGW_DOCTOR_FAIL
                                                     : MXGW_DOCTOR_WARN;
    mxgw__doc_fmt(finding, sizeof finding,
                  "%d deferred; oldest %s, waiting %s, %lld attempt%s, "
                  "next in %s, last error %s",
                  cnt[2], oid[0] ? oid : "?", age, (long long)attempts,
                  attempts == 1 ? "" : "s", nexts,
                  err[0] ? err : "(none recorded)");
    mxgw__doc_fmt(fix, sizeof fix,
                  "remove the cause of the last error (see the backend "
                  "check), then retry now: mxgw-queue --spool %s requeue ALL "
                  "--state deferred",
                  d->spool);
  } else if (cnt[4] > 0 || cnt[5] > 0) {
    status = MXGW_DOCTOR_WARN;
    mxgw__doc_fmt(finding, sizeof finding,
                  "no deferred message, but %d failed and %d quarantined "
                  "(corrupt) kept in the spool",
                  cnt[4] < 0 ? 0 : cnt[4], cnt[5] < 0 ? 0 : cnt[5]);
    mxgw__doc_fmt(fix, sizeof fix,
                  "inspect them: mxgw-queue --spool %s list; delete or "
                  "requeue",
                  d->spool);
  } else {
    mxgw__doc_fmt(finding, sizeof finding, "nothing deferred");
  }
  char full[1800];
  mxgw__doc_fmt(full, sizeof full, "%s (%s)", finding, counts);
  mxgw_queue_free(q);
  return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_QUEUE, status, concerns, full,
                       fix, NULL, NULL);
}
