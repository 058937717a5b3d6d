/* SPDX-License-Identifier: MIT */
/*
 * deliver_tool.c: a command-line front end to the queue and the delivery
 * scheduler, used by the Python tests in this directory.
 *   deliver_tool --spool DIR enqueue --from F --rcpt R [--rcpt R...]
 *       --file PATH [--count N] [--notify BITS] [--orcpt T;A] [--ret FULL|HDRS]
 *       [--envid X] [--arrival UNIX] [--client-addr A] [--client-helo H]
 *       [--smtputf8]
 *     commits N messages, prints "id=ID" for each;
 *   deliver_tool --spool DIR run --backend T [--backend T...] [--now UNIX]
 *       [--lifetime S] [--bounce keep|dsn] [--bounce-rcpt ADDR]
 *       [--keep-bounced] [--concurrency N] [--timeout-ms N] [--hostname H]
 *       [--backoff S] [--nosync]
 *     one mxgw_deliver_run_once(); prints "log LEVEL LINE" and "json JSON"
 *     per log event, then "tried=N" and "stat NAME=VALUE" lines.
 * Exit status 0 on success, 1 on an API error, 2 on bad usage. The work is
 * done by tool_common.c, shared with deliver_dsn_tool and deliver_tls_tool.
 */
#include "tool_common.h"

int main(int argc, char **argv) {
  static const char *const accepted[] = {
      "--from",        "--rcpt",        "--file",       "--count",
      "--notify",      "--orcpt",       "--ret",        "--envid",
      "--arrival",     "--client-addr", "--client-helo", "--smtputf8",
      "--nosync",      "--backend",     "--now",        "--lifetime",
      "--bounce",      "--bounce-rcpt", "--keep-bounced", "--concurrency",
      "--timeout-ms",  "--hostname",    "--backoff",    NULL};
  tool_opts o;
  tool_init(&o, "deliver_tool", argc, argv);
  tool_parse(&o, argc, argv, 4, accepted);
  return tool_main(&o, NULL, NULL);
}
