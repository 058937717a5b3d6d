/* SPDX-License-Identifier: MIT */
/*
 * tool_common.c: the command line, queue, enqueue and run pieces shared by
 * the delivery test drivers (see tool_common.h).
 */
#include "tool_common.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Noreturn void tool_usage(const tool_opts *o) {
  fprintf(stderr, "usage: see the comment at the top of %s.c\n", o->name);
  exit(2);
}

int tool_die(const char *what, int rv) {
  fprintf(stderr, "%s: %s\n", what, mxgw_strerror(rv));
  return 1;
}

static void tool_log(void *user, int level, const char *line, const char *json) {
  (void)user;
  printf("log %d %s\njson %s\n", level, line, json);
  fflush(stdout);
}

void tool_init(tool_opts *o, const char *name, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->name = name;
  o->argv = argv;
  if (argc < 4 || strcmp(argv[1], "--spool") != 0)
    tool_usage(o);
  o->spool = argv[2];
  o->cmd = argv[3];
  o->count = 1;
  o->lifetime = -1;
  o->delay_warning = -1;
  o->verify = 1;
}

/* How an option's value is stored: at OFF in tool_opts as a string, an
 * int (atoi) or a long long (atoll); a flag sets the int at OFF to 1. */
enum opt_kind { O_STR, O_INT, O_LL, O_FLAG, O_RCPT, O_BACKEND, O_TIMEOUT };

static const struct {
  const char *name;
  enum opt_kind kind;
  size_t off;
} option_table[] = {
#define S(name, field) {name, O_STR, offsetof(tool_opts, field)}
#define I(name, field) {name, O_INT, offsetof(tool_opts, field)}
#define L(name, field) {name, O_LL, offsetof(tool_opts, field)}
#define F(name, field) {name, O_FLAG, offsetof(tool_opts, field)}
    S("--from", from),
    {"--rcpt", O_RCPT, 0},
    S("--file", file),
    I("--count", count),
    I("--notify", notify),
    S("--orcpt", orcpt),
    S("--ret", ret),
    S("--envid", envid),
    L("--arrival", arrival),
    S("--client-addr", caddr),
    S("--client-helo", chelo),
    F("--smtputf8", smtputf8),
    F("--nosync", nosync),
    {"--backend", O_BACKEND, 0},
    L("--now", now),
    L("--lifetime", lifetime),
    L("--delay-warning", delay_warning),
    S("--bounce", bounce),
    S("--bounce-rcpt", bounce_rcpt),
    F("--keep-bounced", keep_bounced),
    L("--concurrency", conc),
    {"--timeout-ms", O_TIMEOUT, 0},
    S("--hostname", hostname),
    L("--backoff", backoff),
    I("--starttls", starttls),
    S("--ca", ca),
    I("--verify", verify),
    S("--servername", servername),
    S("--tls-hostname", tls_hostname),
#undef S
#undef I
#undef L
#undef F
};

static int accepts(const char *const *accepted, const char *name) {
  for (; *accepted; accepted++)
    if (strcmp(*accepted, name) == 0)
      return 1;
  return 0;
}

void tool_parse(tool_opts *o, int argc, char **argv, int first,
                const char *const *accepted) {
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    size_t k = 0, n = sizeof option_table / sizeof option_table[0];
    while (k < n && strcmp(option_table[k].name, a) != 0)
      k++;
    if (k == n || !accepts(accepted, a))
      tool_usage(o);
    char *field = (char *)o + option_table[k].off;
    if (option_table[k].kind == O_FLAG) {
      *(int *)field = 1;
      continue;
    }
    if (i + 1 >= argc)
      tool_usage(o);
    const char *v = argv[++i];
    switch (option_table[k].kind) {
    case O_STR:
      *(const char **)field = v;
      break;
    case O_INT:
      *(int *)field = atoi(v);
      break;
    case O_LL:
      *(long long *)field = atoll(v);
      break;
    case O_RCPT:
      if (o->nr == TOOL_MAX_RCPTS)
        tool_usage(o);
      o->rcpts[o->nr++] = v;
      break;
    case O_BACKEND:
      if (o->nb == TOOL_MAX_BACKENDS)
        tool_usage(o);
      o->backends[o->nb++] = v;
      break;
    case O_TIMEOUT:
      o->connect_ms = o->command_ms = o->data_ms = atoll(v);
      break;
    case O_FLAG:
      break;
    }
  }
}

static int tool_queue_open(const tool_opts *o, mxgw_queue **q) {
  int rv = mxgw_queue_new(q, o->spool, NULL);
  if (!rv && o->nosync)
    rv = mxgw_queue_set_int(*q, MXGW_QOPT_SYNC, 0);
  if (!rv)
    rv = mxgw_queue_open(*q);
  return rv ? tool_die("queue open", rv) : 0;
}

static int set_str(mxgw_queue_msg *msg, int key, const char *s) {
  return s ? mxgw_queue_msg_set_str(msg, key, s, strlen(s)) : MXGW_OK;
}

/* One message with the body B (BLEN bytes) and the envelope of O. */
static int enqueue_one(const tool_opts *o, mxgw_queue *q, const char *b,
                       size_t blen) {
  mxgw_queue_msg *msg;
  int rv = mxgw_queue_begin(q, &msg);
  if (rv)
    return tool_die("begin", rv);
  rv = mxgw_queue_write(msg, b, blen);
  if (!rv)
    rv = set_str(msg, MXGW_QKEY_SENDER, o->from);
  if (!rv)
    rv = set_str(msg, MXGW_QKEY_RET, o->ret);
  if (!rv)
    rv = set_str(msg, MXGW_QKEY_ENVID, o->envid);
  if (!rv)
    rv = set_str(msg, MXGW_QKEY_CLIENT_ADDR, o->caddr);
  if (!rv)
    rv = set_str(msg, MXGW_QKEY_CLIENT_HELO, o->chelo);
  if (!rv && o->arrival)
    rv = mxgw_queue_msg_set_int(msg, MXGW_QKEY_ARRIVAL, o->arrival);
  if (!rv && o->smtputf8)
    rv = mxgw_queue_msg_set_int(msg, MXGW_QKEY_SMTPUTF8, 1);
  for (int i = 0; !rv && i < o->nr; i++)
    rv = mxgw_queue_msg_add_rcpt(msg, o->rcpts[i], strlen(o->rcpts[i]),
                                 o->notify, o->orcpt,
                                 o->orcpt ? strlen(o->orcpt) : 0);
  const char *id;
  size_t il;
  mxgw_queue_msg_id(msg, &id, &il);
  char idbuf[64];
  snprintf(idbuf, sizeof idbuf, "%.*s", (int)il, id);
  if (rv) {
    mxgw_queue_msg_free(msg);
    return tool_die("envelope", rv);
  }
  if ((rv = mxgw_queue_commit(msg)))
    return tool_die("commit", rv);
  printf("id=%s\n", idbuf);
  return 0;
}

static int tool_enqueue(const tool_opts *o, mxgw_queue *q) {
  if (!o->from || !o->file || o->nr == 0)
    tool_usage(o);
  FILE *f = fopen(o->file, "rb");
  if (!f)
    return tool_die("open file", MXGW_E_IO);
  static char body[1 << 20];
  size_t blen = fread(body, 1, sizeof body, f);
  fclose(f);
  int status = 0;
  for (int m = 0; !status && m < o->count; m++)
    status = enqueue_one(o, q, body, blen);
  return status;
}

static int tool_deliver_new(const tool_opts *o, mxgw_queue *q, mxgw_deliver **d) {
  if (o->nb == 0)
    tool_usage(o);
  int rv = mxgw_deliver_new(d, q, NULL);
  if (rv)
    return tool_die("deliver_new", rv);
  static const struct {
    int opt;
    size_t off; /* of a long long in tool_opts, set when not 0 */
  } ints[] = {
      {MXGW_DELIVER_OPT_CONCURRENCY, offsetof(tool_opts, conc)},
      {MXGW_DELIVER_OPT_BACKOFF_INITIAL, offsetof(tool_opts, backoff)},
      {MXGW_DELIVER_OPT_CONNECT_TIMEOUT_MS, offsetof(tool_opts, connect_ms)},
      {MXGW_DELIVER_OPT_COMMAND_TIMEOUT_MS, offsetof(tool_opts, command_ms)},
      {MXGW_DELIVER_OPT_DATA_TIMEOUT_MS, offsetof(tool_opts, data_ms)},
  };
  for (int i = 0; !rv && i < o->nb; i++)
    rv = mxgw_deliver_add_backend(*d, o->backends[i]);
  if (!rv && o->lifetime >= 0)
    rv = mxgw_deliver_set_int(*d, MXGW_DELIVER_OPT_LIFETIME, o->lifetime);
  if (!rv && o->delay_warning >= 0)
    rv = mxgw_deliver_set_int(*d, MXGW_DELIVER_OPT_DELAY_WARNING,
                              o->delay_warning);
  for (size_t i = 0; !rv && i < sizeof ints / sizeof ints[0]; i++) {
    long long v = *(const long long *)((const char *)o + ints[i].off);
    if (v)
      rv = mxgw_deliver_set_int(*d, ints[i].opt, v);
  }
  if (!rv && o->bounce)
    rv = mxgw_deliver_set_int(*d, MXGW_DELIVER_OPT_BOUNCE,
                              strcmp(o->bounce, "dsn") == 0 ? MXGW_BOUNCE_DSN
                                                            : MXGW_BOUNCE_KEEP);
  if (!rv && o->keep_bounced)
    rv = mxgw_deliver_set_int(*d, MXGW_DELIVER_OPT_KEEP_BOUNCED, 1);
  if (!rv && o->bounce_rcpt)
    rv = mxgw_deliver_set_str(*d, MXGW_DELIVER_OPT_BOUNCE_RCPT,
                              o->bounce_rcpt);
  if (!rv && o->hostname)
    rv = mxgw_deliver_set_str(*d, MXGW_DELIVER_OPT_HOSTNAME, o->hostname);
  if (!rv)
    rv = mxgw_deliver_set_log(*d, tool_log, NULL);
  if (rv) {
    mxgw_deliver_free(*d);
    return tool_die("configure", rv);
  }
  return 0;
}

static int tool_run(const tool_opts *o, mxgw_deliver *d) {
  int status = 0;
  int rv = mxgw_deliver_run_once(d, o->now ? o->now : (long long)time(NULL));
  if (rv < 0) {
    status = tool_die("run_once", rv);
  } else {
    printf("tried=%d\n", rv);
    static const char *const names[] = {"attempts", "sent",    "deferred",
                                        "bounced",  "dsns",    "removed",
                                        "kept_failed", "errors"};
    for (int k = 0; k < 8; k++) {
      int64_t v = 0;
      mxgw_deliver_get_int(d, MXGW_DELIVER_STAT_ATTEMPTS + k, &v);
      printf("stat %s=%lld\n", names[k], (long long)v);
    }
  }
  mxgw_deliver_free(d);
  return status;
}

int tool_main(const tool_opts *o, tool_configure_fn configure,
              tool_command_fn command) {
  mxgw_queue *q;
  if (tool_queue_open(o, &q))
    return 1;
  int status = 0;
  if (command && command(o, q, &status)) {
    /* done */
  } else if (strcmp(o->cmd, "enqueue") == 0) {
    status = tool_enqueue(o, q);
  } else if (strcmp(o->cmd, "run") == 0) {
    mxgw_deliver *d;
    status = tool_deliver_new(o, q, &d);
    if (!status && configure && (status = configure(o, d)))
      mxgw_deliver_free(d);
    else if (!status)
      status = tool_run(o, d);
  } else {
    tool_usage(o);
  }
  mxgw_queue_free(q);
  return status;
}
