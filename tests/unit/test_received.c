/* SPDX-License-Identifier: MIT */
/*
 * test_received.c: unit tests of the Received: header the engine builds
 * (from/by/with/id/for clauses and their order, the "with" keyword for
 * every combination of EHLO, TLS, AUTH and SMTPUTF8, the RFC 5322 date from
 * the given unix time, CRLF ending and folding), and of the log hook
 * (CONNECT, COMMAND, REPLY, PROTOCOL, DISCONNECT records, AUTH secrets
 * redacted, Postfix-style disconnect counters).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

TestSuite(received, .timeout = 30);

/* ------------------------------------------------------------------------ */
/* Received:                                                                */
/* ------------------------------------------------------------------------ */

struct rcv {
  const char *qid;
  int64_t when;
  char *hdr; /* captured at MESSAGE_END */
  int rc;
};

static void rcv_hook(harness *h, int ev) {
  if (ev != MXGW_EV_MESSAGE_END)
    return;
  struct rcv *r = h->user;
  const char *p = NULL;
  size_t n = 0;
  free(r->hdr);
  r->hdr = NULL;
  r->rc = mxgw_session_received_header(h->s, r->qid, r->when, &p, &n);
  if (r->rc == MXGW_OK) {
    r->hdr = malloc(n + 1);
    memcpy(r->hdr, p, n);
    r->hdr[n] = '\0';
  }
}

/* Check the folding rules and return the unfolded header (heap). */
static char *check_and_unfold(harness *h, const char *hdr) {
  size_t n = strlen(hdr);
  cr_assert(n > 2 && hdr[n - 2] == '\r' && hdr[n - 1] == '\n',
            "Received header must end in CRLF: %s", h_esc0(h, hdr));
  cr_assert(strncmp(hdr, "Received: ", 10) == 0, "%s", h_esc0(h, hdr));
  char *u = malloc(n + 1);
  size_t o = 0;
  const char *line = hdr;
  int lines = 0;
  while (*line) {
    const char *eol = strstr(line, "\r\n");
    cr_assert(eol != NULL);
    size_t len = (size_t)(eol - line);
    lines++;
    cr_assert_leq(len, 998, "line longer than 998 octets");
    cr_assert_leq(len, 78, "line %d longer than 78 octets: %s", lines,
                  h_esc(h, line, len));
    for (const char *c = line; c < eol; c++)
      cr_assert(*c != '\r' && *c != '\n', "bare CR/LF inside the header");
    if (line != hdr) {
      cr_assert(line[0] == ' ' || line[0] == '\t',
                "continuation line without leading white space: %s",
                h_esc(h, line, len));
      int blank = 1;
      for (const char *c = line; c < eol; c++)
        if (*c != ' ' && *c != '\t')
          blank = 0;
      cr_assert(!blank, "white-space-only continuation line");
    }
    memcpy(u + o, line, len);
    o += len;
    line = eol + 2;
  }
  u[o] = '\0';
  /* RFC 5322 unfolding keeps the white space; compare with spaces */
  for (char *t = u; *t; t++)
    if (*t == '\t')
      *t = ' ';
  return u;
}

/* Run EHLO/HELO, optional TLS/AUTH, MAIL (args), RCPTs, DATA; return the
 * Received header captured at MESSAGE_END (unfolded, heap). */
struct scenario {
  int helo;         /* HELO instead of EHLO */
  int tls;          /* STARTTLS first */
  int auth;         /* AUTH PLAIN */
  int utf8;         /* MAIL ... SMTPUTF8 */
  int nrcpt;        /* recipients */
  int bdat;         /* BDAT instead of DATA */
  const char *host; /* peer host (NULL: unknown) */
  const char *qid;
  int64_t when;
};

static char *run_scenario(const struct scenario *sc, char **folded) {
  harness h;
  struct rcv r = {sc->qid, sc->when, NULL, -100};
  h_init(&h);
  h.hook = rcv_hook;
  h.user = &r;
  h_set_str(&h, MXGW_OPT_HOSTNAME, "mx.example.org");
  h_set(&h, MXGW_OPT_STARTTLS, 1);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  H_OK(mxgw_session_new(&h.s, h.cfg, NULL));
  H_OK(mxgw_session_set_peer(h.s, "192.0.2.1", 4711, sc->host));
  H_OK(mxgw_session_start(h.s, h.now));
  h_pump(&h);
  H_EXPECT(&h, "220 ");
  if (sc->tls) {
    h_send(&h, "EHLO client.example\r\nSTARTTLS\r\n");
    H_EXPECT(&h, "250");
    H_EXPECT(&h, "220 2.0.0");
    H_OK(mxgw_session_starttls_done(h.s, "TLSv1.3", "TLS_AES_256_GCM_SHA384"));
    h_pump(&h);
  }
  h_send(&h, sc->helo ? "HELO client.example\r\n" : "EHLO client.example\r\n");
  H_EXPECT(&h, "250");
  if (sc->auth) {
    h_send(&h, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
    H_EXPECT(&h, "235 2.7.0");
  }
  h_send(&h, sc->utf8 ? "MAIL FROM:<a@example.org> SMTPUTF8\r\n"
                      : "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  for (int i = 0; i < sc->nrcpt; i++) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "RCPT TO:<r%d@example.net>\r\n", i);
    h_send(&h, cmd);
    H_EXPECT(&h, "250 2.1.5");
  }
  if (sc->bdat) {
    h_send(&h, "BDAT 3 LAST\r\nx\r\n");
  } else {
    h_send(&h, "DATA\r\nx\r\n.\r\n");
    H_EXPECT(&h, "354");
  }
  H_EXPECT(&h, "250 2.0.0");
  cr_assert_eq(r.rc, MXGW_OK, "received_header at MESSAGE_END: %s",
               mxgw_errname(r.rc));
  char *u = check_and_unfold(&h, r.hdr);
  if (folded)
    *folded = r.hdr;
  else
    free(r.hdr);
  h_free(&h);
  return u;
}

/* Position of needle in hay, asserting it is there. */
static size_t pos(const char *hay, const char *needle) {
  const char *p = strstr(hay, needle);
  cr_assert(p != NULL, "\"%s\" not in \"%s\"", needle, hay);
  return (size_t)(p - hay);
}

/* The word after " with " outside comments in an unfolded header. */
static char *with_kw(const char *u) {
  const char *p = NULL;
  int depth = 0;
  for (const char *q = u; *q; q++) {
    if (*q == '(')
      depth++;
    else if (*q == ')' && depth > 0)
      depth--;
    else if (depth == 0 && strncmp(q, " with ", 6) == 0) {
      p = q;
      break;
    }
  }
  cr_assert(p != NULL, "no with clause: %s", u);
  p += 6;
  while (*p == ' ' || *p == '\t')
    p++;
  size_t n = strcspn(p, " \t;");
  char *w = malloc(n + 1);
  memcpy(w, p, n);
  w[n] = '\0';
  return w;
}

Test(received, esmtp_single_recipient) {
  struct scenario sc = {0,         0,         0, 0, 1, 0, "client.example",
                        "Q123ABC", 1700000000};
  char *folded = NULL;
  char *u = run_scenario(&sc, &folded);
  cr_assert(strncmp(u, "Received: from client.example (", 31) == 0, "%s", u);
  size_t pfrom = pos(u, "from client.example");
  size_t ptcp = pos(u, "(client.example [192.0.2.1])");
  size_t pby = pos(u, " by mx.example.org");
  size_t pwith = pos(u, " with ESMTP ");
  size_t pid = pos(u, " id Q123ABC");
  size_t pfor = pos(u, " for <r0@example.net>");
  size_t psemi = pos(u, ";");
  cr_assert(pfrom < ptcp && ptcp < pby && pby < pwith && pwith < pid &&
                pid < pfor && pfor < psemi,
            "clauses out of RFC 5321 4.4 order: %s", u);
  const char *date = "Tue, 14 Nov 2023 22:13:20 +0000";
  size_t ul = strlen(u), dl = strlen(date);
  cr_assert(ul > dl && strcmp(u + ul - dl, date) == 0,
            "date clause: %s, want \"; %s\"", u, date);
  cr_assert(strchr(folded, '\n') != strrchr(folded, '\n'),
            "a %zu-octet header must be folded: %s", strlen(u), folded);
  free(folded);
  free(u);
}

Test(received, no_for_with_two_recipients) {
  struct scenario sc = {0, 0, 0, 0, 2, 0, "client.example", "Q1", 0};
  char *u = run_scenario(&sc, NULL);
  cr_assert(strstr(u, " for ") == NULL, "for clause with 2 recipients: %s", u);
  cr_assert(strstr(u, "r0@example.net") == NULL &&
                strstr(u, "r1@example.net") == NULL,
            "recipients leaked: %s", u);
  free(u);
}

Test(received, no_id_without_queue_id) {
  struct scenario sc = {0, 0, 0, 0, 1, 0, "client.example", NULL, 0};
  char *u = run_scenario(&sc, NULL);
  cr_assert(strstr(u, " id ") == NULL, "%s", u);
  pos(u, " for <r0@example.net>");
  free(u);
}

Test(received, unknown_peer_host) {
  struct scenario sc = {0, 0, 0, 0, 1, 0, NULL, "Q2", 0};
  char *u = run_scenario(&sc, NULL);
  pos(u, "(unknown [192.0.2.1])");
  free(u);
}

struct with_row {
  int helo, tls, auth, utf8, bdat;
  const char *kw;
};

Test(received, with_keywords) {
  static const struct with_row rows[] = {
      {1, 0, 0, 0, 0, "SMTP"},      {0, 0, 0, 0, 0, "ESMTP"},
      {0, 0, 0, 0, 1, "ESMTP"},     {0, 1, 0, 0, 0, "ESMTPS"},
      {0, 0, 1, 0, 0, "ESMTPA"},    {0, 1, 1, 0, 0, "ESMTPSA"},
      {0, 0, 0, 1, 0, "UTF8SMTP"},  {0, 1, 0, 1, 0, "UTF8SMTPS"},
      {0, 0, 1, 1, 0, "UTF8SMTPA"}, {0, 1, 1, 1, 0, "UTF8SMTPSA"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct scenario sc = {rows[i].helo,     rows[i].tls, rows[i].auth,
                          rows[i].utf8,     1,           rows[i].bdat,
                          "client.example", "Q",         1700000000};
    char *u = run_scenario(&sc, NULL);
    char *w = with_kw(u);
    cr_assert_str_eq(w, rows[i].kw, "row %zu: %s", i, u);
    free(w);
    free(u);
  }
}

struct date_row {
  int64_t t;
  const char *a, *b; /* accepted forms (1- or 2-digit day) */
};

Test(received, dates) {
  static const struct date_row rows[] = {
      {0, "Thu, 01 Jan 1970 00:00:00 +0000", "Thu, 1 Jan 1970 00:00:00 +0000"},
      {951782400, "Tue, 29 Feb 2000 00:00:00 +0000", NULL},
      {1234567890, "Fri, 13 Feb 2009 23:31:30 +0000", NULL},
      {1709251199, "Thu, 29 Feb 2024 23:59:59 +0000", NULL},
      {2147483648, "Tue, 19 Jan 2038 03:14:08 +0000", NULL},
      {4107456000, "Sun, 28 Feb 2100 00:00:00 +0000", NULL},
      {4107542400, "Mon, 01 Mar 2100 00:00:00 +0000",
       "Mon, 1 Mar 2100 00:00:00 +0000"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct scenario sc = {0, 0, 0, 0, 1, 0, "client.example", "Q", rows[i].t};
    char *u = run_scenario(&sc, NULL);
    const char *semi = strrchr(u, ';');
    cr_assert(semi != NULL, "%s", u);
    const char *d = semi + 1;
    while (*d == ' ' || *d == '\t')
      d++;
    cr_assert(
        strcmp(d, rows[i].a) == 0 || (rows[i].b && strcmp(d, rows[i].b) == 0),
        "time %lld: \"%s\", want \"%s\"", (long long)rows[i].t, d, rows[i].a);
    free(u);
  }
}

Test(received, requires_mail) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  const char *p;
  size_t n;
  H_RET(MXGW_E_STATE, mxgw_session_received_header(h.s, "Q", 0, &p, &n));
  h_send(&h, "MAIL FROM:<a@example.org>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_OK(mxgw_session_received_header(h.s, "Q", 0, &p, &n));
  cr_assert(n > 20 && strncmp(p, "Received: ", 10) == 0);
  h_free(&h);
}

/* ------------------------------------------------------------------------ */
/* Log hook                                                                 */
/* ------------------------------------------------------------------------ */

Test(received, log_connect_command_reply) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  cr_assert(h.nlogs > 0);
  cr_assert_eq(h.logs[0].kind, MXGW_LOG_CONNECT);
  cr_assert_str_eq(h.logs[0].text, "connect from client.example[192.0.2.1]");
  const h_log *c = h_log_find(&h, MXGW_LOG_COMMAND, "EHLO client.example");
  cr_assert(c != NULL, "EHLO not logged as a command");
  const h_log *r = h_log_find(&h, MXGW_LOG_REPLY, "220 ");
  cr_assert(r != NULL, "greeting not logged as a reply");
  cr_assert(strstr(r->text, "\r\n") != NULL, "REPLY keeps its CRLFs");
  cr_assert(h_log_find(&h, MXGW_LOG_REPLY, "250-") != NULL ||
            h_log_find(&h, MXGW_LOG_REPLY, "250 ") != NULL);
  /* every reply queued is logged, byte for byte */
  h_buf all = {0};
  for (size_t i = 0; i < h.nlogs; i++)
    if (h.logs[i].kind == MXGW_LOG_REPLY)
      h_buf_add(&all, h.logs[i].text, h.logs[i].len);
  cr_assert_str_eq(h_buf_str(&all), h_output(&h));
  h_buf_free(&all);
  h_free(&h);
}

static void assert_no_secret(harness *h, const char *secret) {
  for (size_t i = 0; i < h->nlogs; i++)
    cr_assert(strstr(h->logs[i].text, secret) == NULL,
              "log record %zu (kind %d) leaks \"%s\": %s", i, h->logs[i].kind,
              secret, h_esc0(h, h->logs[i].text));
}

Test(received, log_auth_redacted) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  h_start_ehlo(&h);
  /* PLAIN with initial response; PLAIN with continuation; LOGIN */
  h_send(&h, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
  H_EXPECT(&h, "235 2.7.0");
  h_free(&h);
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  h_script(&h, MXGW_EV_AUTH, H_REPLY, 535, NULL, NULL);
  h_start_ehlo(&h);
  h_send(&h, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
  H_EXPECT(&h, "535 5.7.8");
  h_send(&h, "AUTH PLAIN\r\nAHVzZXIAc2VjcmV0\r\n");
  H_EXPECT(&h, "334 ");
  H_EXPECT(&h, "235 2.7.0");
  h_free(&h);
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  h_start_ehlo(&h);
  h_send(&h, "AUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\nQUIT\r\n");
  H_EXPECT(&h, "334 ");
  H_EXPECT(&h, "334 ");
  H_EXPECT(&h, "235 2.7.0");
  H_EXPECT(&h, "221 2.0.0");
  assert_no_secret(&h, "c2VjcmV0");
  assert_no_secret(&h, "secret");
  assert_no_secret(&h, "dXNlcg==");
  const h_log *c = h_log_find(&h, MXGW_LOG_COMMAND, "AUTH LOGIN");
  cr_assert(c != NULL, "AUTH command not logged");
  h_free(&h);
}

Test(received, log_auth_plain_redacted_text) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_AUTH, 1);
  h_set(&h, MXGW_OPT_AUTH_PLAINTEXT, 1);
  h_start_ehlo(&h);
  h_send(&h, "AUTH PLAIN AHVzZXIAc2VjcmV0\r\nAUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
  H_EXPECT(&h, "235 2.7.0");
  H_EXPECT(&h, "503 5.5.1");
  assert_no_secret(&h, "AHVzZXIAc2VjcmV0");
  const h_log *c = h_log_find(&h, MXGW_LOG_COMMAND, "AUTH PLAIN");
  cr_assert(c != NULL);
  cr_assert(strstr(c->text, "***") != NULL, "secret not replaced by ***: %s",
            c->text);
  h_free(&h);
}

Test(received, log_disconnect_counters) {
  harness h;
  h_init(&h);
  h_script(&h, MXGW_EV_RCPT, H_REPLY, 550, "5.1.1", "unknown");
  h_start(&h);
  h_send(&h, "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n"
             "RCPT TO:<x@example.net>\r\nRCPT TO:<b@example.net>\r\n"
             "DATA\r\nhi\r\n.\r\nQUIT\r\n");
  H_EXPECT(&h, "220 ");
  H_EXPECT(&h, "250");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "550 5.1.1");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "354");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "221 2.0.0");
  cr_assert_eq(h_log_count(&h, MXGW_LOG_DISCONNECT), 1);
  const h_log *d = &h.logs[h.nlogs - 1];
  cr_assert_eq(d->kind, MXGW_LOG_DISCONNECT, "DISCONNECT is the last record");
  cr_assert_str_eq(d->text, "disconnect from client.example[192.0.2.1] "
                            "ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 "
                            "commands=5/6");
  h_free(&h);
}

Test(received, log_disconnect_after_eof) {
  harness h;
  h_init(&h);
  h_start(&h);
  h_send(&h, "EHLO client.example\r\nFROB\r\n");
  H_OK(mxgw_session_eof(h.s));
  h_pump(&h);
  cr_assert_eq(h_log_count(&h, MXGW_LOG_DISCONNECT), 1);
  const h_log *d = h_log_find(&h, MXGW_LOG_DISCONNECT, NULL);
  cr_assert(
      strncmp(d->text, "disconnect from client.example[192.0.2.1] ", 42) == 0,
      "%s", d->text);
  cr_assert(strstr(d->text, " ehlo=1") != NULL, "%s", d->text);
  cr_assert(strstr(d->text, " unknown=0/1") != NULL, "%s", d->text);
  cr_assert(strstr(d->text, " commands=1/2") != NULL, "%s", d->text);
  h_free(&h);
}

Test(received, log_hook_removed) {
  harness h;
  h_init(&h);
  h_start_ehlo(&h);
  size_t before = h.nlogs;
  mxgw_session_set_log(h.s, NULL, NULL);
  h_send(&h, "NOOP\r\nQUIT\r\n");
  H_EXPECT(&h, "250 2.0.0");
  H_EXPECT(&h, "221 2.0.0");
  cr_assert_eq(h.nlogs, before, "records after the hook was removed");
  h_free(&h);
}
