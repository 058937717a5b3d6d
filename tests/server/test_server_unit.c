/* SPDX-License-Identifier: MIT */
/*
 * test_server_unit.c: the pure parts of the server layer: configuration
 * setters and their validation, accepted-domain matching, policy request
 * replies, and mxgw_server_new()'s configuration checks; and, through the
 * embedded API (the test decides when each round of the loop runs), the
 * rounds whose order matters: a stop, and a resolver socket whose number a
 * new client gets in the same round. (The loop is otherwise tested end to
 * end by test_server.py.)
 */
#define _GNU_SOURCE /* mkdtemp */
#include <criterion/criterion.h>
#include <string.h>

#include <mxgw/mxgw.h>

#include "mxgw_server_int.h"

static mxgw_server_config *cfg;

static void setup(void) { cr_assert_eq(mxgw_server_config_new(&cfg, NULL), 0); }
static void teardown(void) { mxgw_server_config_free(cfg); }

TestSuite(server_config, .init = setup, .fini = teardown);

Test(server_config, defaults) {
  int64_t v;
  cr_assert_eq(mxgw_server_config_get_int(cfg, MXGW_SRV_OPT_MAX_CONNECTIONS,
                                          &v), 0);
  cr_assert_eq(v, 10000);
  cr_assert_eq(mxgw_server_config_get_int(cfg, MXGW_SRV_OPT_MAX_CONN_PER_IP,
                                          &v), 0);
  cr_assert_eq(v, 20);
  cr_assert_eq(mxgw_server_config_get_int(
                   cfg, MXGW_SRV_OPT_SPF_ACTION + MXGW_SPF_FAIL, &v), 0);
  cr_assert_eq(v, MXGW_ACTION_REJECT);
  cr_assert_eq(mxgw_server_config_get_int(
                   cfg, MXGW_SRV_OPT_SPF_ACTION + MXGW_SPF_TEMPERROR, &v), 0);
  cr_assert_eq(v, MXGW_ACTION_TEMPFAIL);
  cr_assert_eq(mxgw_server_config_get_int(
                   cfg, MXGW_SRV_OPT_SPF_ACTION + MXGW_SPF_SOFTFAIL, &v), 0);
  cr_assert_eq(v, MXGW_ACTION_ACCEPT);
  /* a session option's default comes from the session layer */
  cr_assert_eq(mxgw_server_config_get_int(cfg, MXGW_OPT_MAX_RECIPIENTS, &v),
               0);
  cr_assert_eq(v, 1000);
}

Test(server_config, set_int_ranges) {
  int64_t v;
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_MAX_CONNECTIONS,
                                          0), MXGW_E_RANGE);
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_SPF, 2),
               MXGW_E_RANGE);
  cr_assert_eq(mxgw_server_config_set_int(cfg, 999999, 1), MXGW_E_INVAL);
  cr_assert_neq(strlen(mxgw_server_config_errmsg(cfg)), 0);
  cr_assert_eq(mxgw_server_config_set_int(
                   cfg, MXGW_SRV_OPT_SPF_ACTION + MXGW_SPF_PERMERROR,
                   MXGW_ACTION_REJECT), 0);
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_SPF_ACTION + 7,
                                          0), MXGW_E_INVAL);
  /* session options are validated by the session layer */
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, 10),
               MXGW_E_RANGE);
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_OPT_MAX_ERRORS, 5), 0);
  cr_assert_eq(mxgw_server_config_get_int(cfg, MXGW_OPT_MAX_ERRORS, &v), 0);
  cr_assert_eq(v, 5);
  /* TLS/AUTH options come from the listener mode */
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_OPT_STARTTLS, 1),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_OPT_REQUIRE_AUTH, 1),
               MXGW_E_INVAL);
}

Test(server_config, strings_and_listeners) {
  cr_assert_eq(mxgw_server_config_set_str(cfg, MXGW_OPT_HOSTNAME,
                                          "mx.example.org"), 0);
  cr_assert_eq(mxgw_server_config_set_str(cfg, MXGW_OPT_HOSTNAME, "bad host"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_set_str(cfg, MXGW_SRV_OPT_SPOOL_DIR, ""),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_set_str(cfg, MXGW_SRV_OPT_DNS_SERVERS,
                                          "127.0.0.1:53\n"), MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_add_listener(cfg, "127.0.0.1", 25,
                                               MXGW_LISTEN_SMTP), 0);
  cr_assert_eq(mxgw_server_config_add_listener(cfg, "::1", 587,
                                               MXGW_LISTEN_SUBMISSION), 1);
  cr_assert_eq(mxgw_server_config_add_listener(cfg, "localhost", 25,
                                               MXGW_LISTEN_SMTP),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_add_listener(cfg, "127.0.0.1", 70000,
                                               MXGW_LISTEN_SMTP),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_add_listener(cfg, "127.0.0.1", 25, 9),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_listener_set_int(cfg, 0, MXGW_LISTENER_TLS,
                                                   3), MXGW_E_RANGE);
  cr_assert_eq(mxgw_server_config_listener_set_int(cfg, 5, MXGW_LISTENER_TLS,
                                                   1), MXGW_E_RANGE);
  cr_assert_eq(mxgw_server_config_listener_set_int(cfg, 0,
                                                   MXGW_LISTENER_PROXY, 1),
               0);
  cr_assert_eq(mxgw_server_config_set_policy(cfg, 0, NULL, NULL),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_add_backend(cfg, ""), MXGW_E_INVAL);
}

Test(server_config, validation) {
  char err[256];
  mxgw_server *srv;
  /* no listener */
  cr_assert_eq(mxgw__srv_cfg_validate(cfg, err, sizeof err), MXGW_E_INVAL);
  cr_assert_str_eq(err, "no listener");
  mxgw_server_config_add_listener(cfg, "127.0.0.1", 0, MXGW_LISTEN_SMTP);
  cr_assert_eq(mxgw__srv_cfg_validate(cfg, err, sizeof err), MXGW_E_INVAL);
  cr_assert(strstr(err, "spool"));
  mxgw_server_config_set_str(cfg, MXGW_SRV_OPT_SPOOL_DIR, "/tmp/x");
  cr_assert_eq(mxgw__srv_cfg_validate(cfg, err, sizeof err), MXGW_E_INVAL);
  cr_assert(strstr(err, "backend"));
  mxgw_server_config_add_backend(cfg, "127.0.0.1:24");
  cr_assert_eq(mxgw__srv_cfg_validate(cfg, err, sizeof err), 0);
  /* smtps and submission need TLS */
  int i = mxgw_server_config_add_listener(cfg, "127.0.0.1", 0,
                                          MXGW_LISTEN_SUBMISSION);
  cr_assert_eq(mxgw_server_new(&srv, cfg, NULL), MXGW_E_INVAL);
  cr_assert(strstr(mxgw_server_errmsg(srv), "submission needs a TLS"),
            "%s", mxgw_server_errmsg(srv));
  mxgw_server_free(srv);
  mxgw_server_config_listener_set_int(cfg, i, MXGW_LISTENER_AUTH_PLAINTEXT,
                                      1);
  cr_assert_eq(mxgw_server_new(&srv, cfg, NULL), 0);
  /* frozen now */
  cr_assert_eq(mxgw_server_config_set_int(cfg, MXGW_SRV_OPT_SPF, 1),
               MXGW_E_BUSY);
  cr_assert_eq(mxgw_server_listener_port(srv, 0), MXGW_E_STATE);
  cr_assert_eq(mxgw_server_fd(srv), -1);
  cr_assert_eq(mxgw_server_process(srv), MXGW_E_STATE);
  mxgw_server_free(srv);
}

Test(server_config, domains) {
  cr_assert_eq(mxgw__srv_domain_ok(cfg, "a@b.c", 5), 1); /* none: all */
  cr_assert_eq(mxgw_server_config_add_domain(cfg, "Example.ORG"), 0);
  cr_assert_eq(mxgw_server_config_add_domain(cfg, ".sub.example.net"), 0);
  cr_assert_eq(mxgw_server_config_add_domain(cfg, "bad domain"),
               MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_config_add_domain(cfg, "a..b"), MXGW_E_INVAL);
#define OK(s) mxgw__srv_domain_ok(cfg, s, strlen(s))
  cr_assert_eq(OK("alice@example.org"), 1);
  cr_assert_eq(OK("alice@EXAMPLE.org"), 1);
  cr_assert_eq(OK("alice@example.org."), 1);
  cr_assert_eq(OK("alice@x.example.org"), 0);
  cr_assert_eq(OK("alice@notexample.org"), 0);
  cr_assert_eq(OK("alice@a.sub.example.net"), 1);
  cr_assert_eq(OK("alice@sub.example.net"), 0);
  cr_assert_eq(OK("alice@xsub.example.net"), 0);
  cr_assert_eq(OK("\"a@b\"@example.org"), 1);
  cr_assert_eq(OK("Postmaster"), 1);
  cr_assert_eq(OK("alice"), 0);
#undef OK
}

Test(server_req, replies_and_items) {
  mxgw_mem m;
  mxgw_server_req *r;
  mxgw__mem_init(&m, NULL);
  cr_assert_eq(mxgw__srv_req_new(&m, MXGW_STAGE_RCPT, &r), 0);
  cr_assert_eq(mxgw_server_req_get_int(r, MXGW_REQ_STAGE), MXGW_STAGE_RCPT);
  cr_assert_eq(mxgw_server_req_get_int(r, MXGW_REQ_SPF), -1);
  cr_assert_null(mxgw_server_req_get_str(r, MXGW_REQ_HELO));
  cr_assert_eq(mxgw__srv_req_set(r, MXGW_REQ_RCPT, "bob@x.org", 9), 0);
  cr_assert_str_eq(mxgw_server_req_get_str(r, MXGW_REQ_RCPT), "bob@x.org");
  cr_assert_eq(mxgw__srv_req_add_rcpt(r, "a@x.org", 7), 0);
  cr_assert_str_eq(mxgw_server_req_rcpt(r, 0), "a@x.org");
  cr_assert_null(mxgw_server_req_rcpt(r, 1));
  cr_assert_eq(mxgw_server_req_reply(r, 550, "5.7.1", "no"), 0);
  cr_assert_eq(mxgw_server_req_reply(r, 550, "4.7.1", "no"), MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_req_reply(r, 99, NULL, NULL), MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_req_reply(r, 550, "5.7", NULL), MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_req_reply(r, 550, NULL, "a\r\nb"), MXGW_E_INVAL);
  cr_assert_eq(mxgw_server_req_reply(r, 451, NULL, "line1\nline2"), 0);
  cr_assert_eq(r->code, 451);
  mxgw__srv_req_free(r);
}

/* ------------------------------------------------------------------------ */
/* The embedded API in-process: one loop driven by the test                */
/* ------------------------------------------------------------------------ */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Run the server until fd is readable; return what was read. */
static ssize_t pump_read(mxgw_server *srv, int fd, char *buf, size_t cap) {
  for (int i = 0; i < 500; i++) {
    cr_assert_geq(mxgw_server_process(srv), 0);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 10) == 1)
      return recv(fd, buf, cap, 0);
  }
  return -1;
}

static void rm_rf(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

/* A configuration for one in-process server: spool under the test's
 * directory, no delivery, no fsync, one SMTP listener on a free port. */
static mxgw_server_config *embedded_config(const char *spool) {
  mxgw_server_config *c;
  cr_assert_eq(mxgw_server_config_new(&c, NULL), 0);
  cr_assert_eq(mxgw_server_config_set_str(c, MXGW_SRV_OPT_SPOOL_DIR, spool),
               0);
  cr_assert_eq(mxgw_server_config_set_str(c, MXGW_OPT_HOSTNAME,
                                          "unit.example.test"), 0);
  cr_assert_eq(mxgw_server_config_set_int(c, MXGW_SRV_OPT_DELIVER, 0), 0);
  cr_assert_eq(mxgw_server_config_set_int(c, MXGW_SRV_OPT_QUEUE_SYNC, 0), 0);
  cr_assert_eq(mxgw_server_config_add_listener(c, "127.0.0.1", 0,
                                               MXGW_LISTEN_SMTP), 0);
  return c;
}

static mxgw_server *embedded_start(mxgw_server_config *c) {
  mxgw_server *srv;
  cr_assert_eq(mxgw_server_new(&srv, c, NULL), 0, "%s",
               mxgw_server_errmsg(srv));
  cr_assert_eq(mxgw_server_start(srv), 0, "%s", mxgw_server_errmsg(srv));
  return srv;
}

Test(server_embedded, greet_quit_stop) {
  char dir[] = "/tmp/mxgw-srv-unit-XXXXXX", spool[600], buf[512];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(spool, sizeof spool, "%s/spool", dir);
  mxgw_server_config *c;
  mxgw_server *srv;
  c = embedded_config(spool);
  srv = embedded_start(c);
  cr_assert_eq(mxgw_server_start(srv), MXGW_E_STATE);
  cr_assert_geq(mxgw_server_fd(srv), 0);
  int port = mxgw_server_listener_port(srv, 0);
  cr_assert_gt(port, 0);
  cr_assert_eq(mxgw_server_listener_port(srv, 1), MXGW_E_RANGE);

  /* a reload must keep the listeners */
  mxgw_server_config *c2;
  cr_assert_eq(mxgw_server_config_new(&c2, NULL), 0);
  mxgw_server_config_set_str(c2, MXGW_SRV_OPT_SPOOL_DIR, spool);
  mxgw_server_config_set_int(c2, MXGW_SRV_OPT_DELIVER, 0);
  mxgw_server_config_add_listener(c2, "127.0.0.1", 2525, MXGW_LISTEN_SMTP);
  cr_assert_eq(mxgw_server_reload(srv, c2), MXGW_E_INVAL);
  cr_assert(strstr(mxgw_server_errmsg(srv), "listeners differ"));
  mxgw_server_config_free(c2);
  cr_assert_eq(mxgw_server_reload(srv, c), 0); /* same configuration */

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  ssize_t n = pump_read(srv, fd, buf, sizeof buf - 1);
  cr_assert_gt(n, 0);
  buf[n] = '\0';
  cr_assert(strncmp(buf, "220 unit.example.test ", 22) == 0, "%s", buf);
  int64_t v = -1;
  cr_assert_eq(mxgw_server_get_int(srv, MXGW_SRV_STAT_SESSIONS, &v), 0);
  cr_assert_eq(v, 1);
  cr_assert_eq(mxgw_server_get_int(srv, MXGW_SRV_OPT_DELIVER, &v), 0);
  cr_assert_eq(v, 0);

  /* stop: the session is told 421 4.3.2, process() reports the end */
  cr_assert_eq(mxgw_server_stop(srv), 0);
  n = pump_read(srv, fd, buf, sizeof buf - 1);
  cr_assert_gt(n, 0);
  buf[n] = '\0';
  cr_assert(strncmp(buf, "421 4.3.2 ", 10) == 0, "%s", buf);
  int rc = 0;
  for (int i = 0; i < 500 && rc == 0; i++)
    rc = mxgw_server_process(srv);
  cr_assert_eq(rc, 1);
  cr_assert_eq(mxgw_server_process(srv), 1);
  cr_assert_eq(mxgw_server_run(srv, 1), MXGW_E_STATE);
  close(fd);
  mxgw_server_free(srv);
  mxgw_server_config_free(c);
  rm_rf(dir);
}

/* ------------------------------------------------------------------------ */
/* A resolver socket closed and its number reused by a client, in one round */
/* ------------------------------------------------------------------------ */

static int connect_port(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  return fd;
}

static void send_str(int fd, const char *s) {
  cr_assert_eq(send(fd, s, strlen(s), 0), (ssize_t)strlen(s));
}

static void expect_reply(mxgw_server *srv, int fd, const char *prefix,
                         const char *what) {
  char buf[1024];
  ssize_t n = pump_read(srv, fd, buf, sizeof buf - 1);
  cr_assert_gt(n, 0, "%s: no reply within 5 s", what);
  buf[n] = '\0';
  cr_assert(strncmp(buf, prefix, strlen(prefix)) == 0, "%s: %s", what, buf);
}

/* The answer to a DNS query (RFC 1035 4.1): its ID and question, one TXT
 * record "v=spf1 ?all". Returns the length, 0 if q is not a query. */
static size_t txt_answer(const unsigned char *q, size_t qn, unsigned char *a,
                         size_t cap) {
  static const char txt[] = "v=spf1 ?all";
  size_t i = 12;
  if (qn < 17)
    return 0;
  while (i < qn && q[i] != 0)
    i += (size_t)q[i] + 1;
  i += 5; /* root label, QTYPE, QCLASS */
  if (i > qn || i + 12 + sizeof txt > cap)
    return 0;
  memcpy(a, q, i);
  a[2] = 0x81; /* QR, RD */
  a[3] = 0x80; /* RA, NOERROR */
  a[6] = 0, a[7] = 1;   /* ANCOUNT 1 */
  a[8] = a[9] = a[10] = a[11] = 0;
  unsigned char rr[] = {0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60,
                        0, (unsigned char)sizeof txt,
                        (unsigned char)(sizeof txt - 1)};
  memcpy(a + i, rr, sizeof rr);
  memcpy(a + i + sizeof rr, txt, sizeof txt - 1);
  return i + sizeof rr + sizeof txt - 1;
}

/* Run the server until its resolver's query reaches the UDP socket dns,
 * then answer it (and do not run the server again). */
static void answer_query(mxgw_server *srv, int dns) {
  unsigned char q[512], ans[600];
  ssize_t qn = -1;
  struct sockaddr_storage from;
  socklen_t fl = sizeof from;
  for (int i = 0; i < 500 && qn < 0; i++) {
    cr_assert_geq(mxgw_server_process(srv), 0);
    struct pollfd p = {dns, POLLIN, 0};
    if (poll(&p, 1, 10) == 1)
      qn = recvfrom(dns, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
  }
  cr_assert_gt(qn, 0, "no DNS query from the SPF check within 5 s");
  size_t an = txt_answer(q, (size_t)qn, ans, sizeof ans);
  cr_assert_gt(an, 0, "not a DNS query");
  cr_assert_eq(sendto(dns, ans, an, 0, (struct sockaddr *)&from, fl),
               (ssize_t)an);
}

/* c-ares closes its UDP socket when its last query is answered. If a
 * client connects in the same round of the loop, accept() hands that client
 * the socket's number, and the resolver bookkeeping that runs after the
 * events (dns_sync) must not take the client's registration out of the
 * epoll set: the session would never see its next command. (Seen once as a
 * hung EHLO in go_bindings' TestServerConcurrentPoliciesSPF.) The embedded
 * API lets the test put both events in one round: the DNS answer and the
 * connection are both waiting before mxgw_server_process() runs. */
Test(server_embedded, resolver_fd_reused_by_client) {
  char dir[] = "/tmp/mxgw-srv-unit-XXXXXX", spool[600], servers[64];
  cr_assert_not_null(mkdtemp(dir));
  snprintf(spool, sizeof spool, "%s/spool", dir);
  int dns = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in da = {.sin_family = AF_INET};
  socklen_t dl = sizeof da;
  inet_pton(AF_INET, "127.0.0.1", &da.sin_addr);
  cr_assert_eq(bind(dns, (struct sockaddr *)&da, sizeof da), 0);
  cr_assert_eq(getsockname(dns, (struct sockaddr *)&da, &dl), 0);
  snprintf(servers, sizeof servers, "127.0.0.1:%d", ntohs(da.sin_port));

  mxgw_server_config *c;
  mxgw_server *srv;
  c = embedded_config(spool);
  cr_assert_eq(mxgw_server_config_set_int(c, MXGW_SRV_OPT_SPF, 1), 0);
  cr_assert_eq(mxgw_server_config_set_str(c, MXGW_SRV_OPT_DNS_SERVERS,
                                          servers), 0);
  cr_assert_eq(mxgw_server_config_set_str(c, MXGW_SRV_OPT_DNS_OPTIONS,
                                          "timeout_ms=5000;tries=1"), 0);
  srv = embedded_start(c);
  int port = mxgw_server_listener_port(srv, 0);

  /* A: MAIL FROM starts an SPF check; run the loop until its query is out */
  int a = connect_port(port);
  expect_reply(srv, a, "220 ", "A greeting");
  send_str(a, "EHLO a.example\r\n");
  expect_reply(srv, a, "250", "A EHLO");
  send_str(a, "MAIL FROM:<s@spf.example.test>\r\n");

  /* The answer first, then B connects; both wait for the same round. */
  answer_query(srv, dns);
  usleep(20000);
  int b = connect_port(port);
  usleep(20000);
  cr_assert_geq(mxgw_server_process(srv), 0);

  expect_reply(srv, a, "250", "A MAIL after SPF");
  expect_reply(srv, b, "220 ", "B greeting");
  send_str(b, "EHLO b.example\r\n");
  expect_reply(srv, b, "250", "B EHLO (the client that got the resolver's "
                              "descriptor number)");
  /* A second SPF check on A opens a new resolver socket and still works */
  send_str(a, "RSET\r\n");
  expect_reply(srv, a, "250", "A RSET");
  send_str(a, "MAIL FROM:<t@spf2.example.test>\r\n");
  answer_query(srv, dns);
  expect_reply(srv, a, "250", "A second MAIL after SPF");
  send_str(b, "QUIT\r\n");
  expect_reply(srv, b, "221", "B QUIT");

  cr_assert_eq(mxgw_server_stop(srv), 0);
  int rc = 0;
  for (int i = 0; i < 500 && rc == 0; i++)
    rc = mxgw_server_process(srv);
  cr_assert_eq(rc, 1);
  close(a);
  close(b);
  close(dns);
  mxgw_server_free(srv);
  mxgw_server_config_free(c);
  rm_rf(dir);
}
