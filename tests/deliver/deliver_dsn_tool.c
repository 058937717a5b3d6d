/* SPDX-License-Identifier: MIT */
/*
 * deliver_dsn_tool.c: the delivery scheduler's success and delay DSNs, for
 * test_deliver_dsn.py (messages are queued with deliver_tool's enqueue).
 *   deliver_dsn_tool --spool DIR run --backend T [--backend T...]
 *       [--now UNIX] [--lifetime S] [--delay-warning S] [--bounce keep|dsn]
 *       [--bounce-rcpt ADDR] [--hostname H] [--backoff S]
 *     one mxgw_deliver_run_once(); prints "log LEVEL LINE" and "json JSON"
 *     per log event, then "tried=N" and "stat NAME=VALUE" lines (as
 *     deliver_tool does);
 *   deliver_dsn_tool --spool DIR body ID
 *     writes the body of queued message ID to stdout (read through
 *     mxgw_queue_entry_body(), wherever it is);
 *   deliver_dsn_tool --spool DIR options
 *     checks MXGW_DELIVER_OPT_DELAY_WARNING (default, range, get) on a
 *     scheduler and through mxgw_server_config_set_deliver_int(); prints
 *     "ok" or the first failed check (exit 1).
 * Exit status 0 on success, 1 on an API error, 2 on bad usage. The command
 * line, the queue and "run" are tool_common.c's (as in deliver_tool).
 */
#define _GNU_SOURCE
#include "tool_common.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      printf("FAILED line %d: %s\n", __LINE__, #cond);                       \
      return 1;                                                              \
    }                                                                        \
  } while (0)

static int options(mxgw_queue *q) {
  mxgw_deliver *d;
  CHECK(mxgw_deliver_new(&d, q, NULL) == MXGW_OK);
  int64_t v = -1;
  CHECK(mxgw_deliver_get_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, &v) == 0);
  CHECK(v == 0); /* off by default, like Postfix's delay_warning_time */
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, -1) ==
        MXGW_E_RANGE);
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING,
                             (int64_t)INT32_MAX + 1) == MXGW_E_RANGE);
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, 14400) == 0);
  CHECK(mxgw_deliver_get_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, &v) == 0);
  CHECK(v == 14400);
  CHECK(mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_DELAY_WARNING, 0) == 0);
  mxgw_deliver_free(d);
  mxgw_server_config *cfg;
  CHECK(mxgw_server_config_new(&cfg, NULL) == MXGW_OK);
  CHECK(mxgw_server_config_set_deliver_int(
            cfg, MXGW_DELIVER_OPT_DELAY_WARNING, 3600) == MXGW_OK);
  CHECK(mxgw_server_config_set_deliver_int(
            cfg, MXGW_DELIVER_OPT_DELAY_WARNING + 1, 1) == MXGW_E_INVAL);
  mxgw_server_config_free(cfg);
  printf("ok\n");
  return 0;
}

static int body(mxgw_queue *q, const char *id) {
  mxgw_queue_entry *e;
  int rv = mxgw_queue_load(q, id, &e);
  if (rv)
    return tool_die("load", rv);
  int fd;
  int64_t off, len;
  rv = mxgw_queue_entry_body(e, &fd, &off, &len);
  if (rv) {
    mxgw_queue_entry_free(e);
    return tool_die("body", rv);
  }
  char buf[65536];
  while (len > 0) {
    ssize_t r = pread(fd, buf, len < (int64_t)sizeof buf ? (size_t)len
                                                         : sizeof buf,
                      (off_t)off);
    if (r <= 0)
      break;
    fwrite(buf, 1, (size_t)r, stdout);
    off += r;
    len -= r;
  }
  close(fd);
  mxgw_queue_entry_free(e);
  return len == 0 ? 0 : tool_die("read", MXGW_E_IO);
}

/* "options" and "body ID"; any other command but "run" (including
 * "enqueue": deliver_tool enqueues) is a usage error. */
static int command(const tool_opts *o, mxgw_queue *q, int *status) {
  if (strcmp(o->cmd, "options") == 0)
    *status = options(q);
  else if (strcmp(o->cmd, "body") == 0)
    *status = body(q, o->argv[4]);
  else if (strcmp(o->cmd, "run") != 0)
    tool_usage(o);
  else
    return 0;
  return 1;
}

int main(int argc, char **argv) {
  static const char *const accepted[] = {
      "--backend", "--now",         "--lifetime", "--delay-warning",
      "--bounce",  "--bounce-rcpt", "--hostname", "--backoff",
      NULL};
  tool_opts o;
  tool_init(&o, "deliver_dsn_tool", argc, argv);
  o.connect_ms = 5000; /* (--timeout-ms is not an option here) */
  int first = 4;
  if (strcmp(o.cmd, "body") == 0) {
    if (argc != 5)
      tool_usage(&o);
    first = argc;
  }
  tool_parse(&o, argc, argv, first, accepted);
  return tool_main(&o, NULL, command);
}
