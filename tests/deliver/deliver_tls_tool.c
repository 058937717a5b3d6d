/* SPDX-License-Identifier: MIT */
/*
 * deliver_tls_tool.c: the front end of test_deliver_ipv6_tls.py: the queue
 * and the delivery scheduler with STARTTLS options (deliver_tool.c has
 * none).
 *   deliver_tls_tool --spool DIR enqueue --from F --rcpt R [--rcpt R...]
 *       --file PATH
 *     commits one message, prints "id=ID";
 *   deliver_tls_tool --spool DIR run --backend T [--backend T...]
 *       [--starttls 0|1|2] [--ca FILE] [--verify 0|1] [--servername NAME]
 *       [--tls-hostname NAME] [--timeout-ms N]
 *     one mxgw_deliver_run_once() with a client mxgw_tls context (CA file,
 *     MXGW_TLS_VERIFY_PEER, MXGW_TLS_HOSTNAME) attached by
 *     mxgw_deliver_set_tls() and MXGW_DELIVER_OPT_STARTTLS /
 *     MXGW_DELIVER_OPT_TLS_SERVERNAME; prints "log LEVEL LINE" and
 *     "json JSON" per log event, then "tried=N" and "stat NAME=VALUE".
 * Exit status 0 on success, 1 on an API error, 2 on bad usage. The rest
 * of the work is done by tool_common.c (as in deliver_tool).
 */
#include "tool_common.h"

#include <stdio.h>

/* STARTTLS on the "run" scheduler of tool_main(): with --starttls, a
 * client context from --ca, --verify and --tls-hostname. */
static int configure(const tool_opts *o, mxgw_deliver *d) {
  mxgw_tls *tls = NULL;
  int rv = 0;
  if (o->starttls) {
    rv = mxgw_tls_new(&tls, MXGW_TLS_CLIENT, NULL);
    if (!rv && o->ca)
      rv = mxgw_tls_set_str(tls, MXGW_TLS_CA_FILE, o->ca);
    if (!rv)
      rv = mxgw_tls_set_int(tls, MXGW_TLS_VERIFY_PEER, o->verify);
    if (!rv && o->tls_hostname)
      rv = mxgw_tls_set_str(tls, MXGW_TLS_HOSTNAME, o->tls_hostname);
    if (!rv)
      rv = mxgw_tls_reload(tls);
    if (rv) {
      fprintf(stderr, "tls: %s\n", tls ? mxgw_tls_errmsg(tls) : "");
      mxgw_tls_free(tls);
      return tool_die("tls", rv);
    }
  }
  if (tls)
    rv = mxgw_deliver_set_tls(d, tls);
  if (!rv && o->starttls)
    rv = mxgw_deliver_set_int(d, MXGW_DELIVER_OPT_STARTTLS, o->starttls);
  if (!rv && o->servername)
    rv = mxgw_deliver_set_str(d, MXGW_DELIVER_OPT_TLS_SERVERNAME,
                              o->servername);
  mxgw_tls_free(tls); /* the scheduler holds its own reference */
  return rv ? tool_die("configure", rv) : 0;
}

int main(int argc, char **argv) {
  static const char *const accepted[] = {
      "--from",         "--rcpt",       "--file",     "--backend",
      "--starttls",     "--ca",         "--verify",   "--servername",
      "--tls-hostname", "--timeout-ms", NULL};
  tool_opts o;
  tool_init(&o, "deliver_tls_tool", argc, argv);
  o.conc = 1; /* one connection at a time, always */
  tool_parse(&o, argc, argv, 4, accepted);
  return tool_main(&o, configure, NULL);
}
