/* SPDX-License-Identifier: MIT */
/*
 * tool_common.h: what the delivery test drivers (deliver_tool.c,
 * deliver_dsn_tool.c, deliver_tls_tool.c) share: their command line
 * ("TOOL --spool DIR COMMAND [OPTIONS]"; each tool names the options it
 * accepts, anything else is a usage error), opening the queue, the
 * "enqueue" command, a scheduler configured from the options, and one
 * mxgw_deliver_run_once() with its output:
 *   "log LEVEL LINE" and "json JSON" per log event (flushed at once),
 *   then "tried=N" and one "stat NAME=VALUE" line per counter;
 *   "id=ID" per message committed by "enqueue".
 * Errors: "WHAT: STRERROR" on stderr and exit status 1; usage errors
 * "usage: see the comment at the top of TOOL.c" and exit status 2.
 * Nothing here is allocated for the caller: the strings in tool_opts point
 * into argv.
 */
#ifndef MXGW_TESTS_DELIVER_TOOL_COMMON_H
#define MXGW_TESTS_DELIVER_TOOL_COMMON_H

#include <mxgw/mxgw.h>

#define TOOL_MAX_RCPTS 64
#define TOOL_MAX_BACKENDS 16

/* The parsed command line. tool_init() sets the defaults: --count 1,
 * --lifetime -1 and --delay-warning -1 (not set), --verify 1, the rest 0 or
 * NULL. A tool may set a field its command line does not (e.g. a fixed
 * concurrency) after tool_init(). */
typedef struct tool_opts {
  const char *name; /* the tool, for the usage message */
  char **argv;      /* as given to main() */
  const char *spool, *cmd;
  /* enqueue */
  const char *from, *file, *orcpt, *ret, *envid, *caddr, *chelo;
  const char *rcpts[TOOL_MAX_RCPTS];
  int nr, count, notify, smtputf8;
  long long arrival;
  int nosync; /* the queue without fsync (MXGW_QOPT_SYNC 0) */
  /* run */
  const char *backends[TOOL_MAX_BACKENDS];
  int nb, keep_bounced;
  const char *bounce, *bounce_rcpt, *hostname;
  long long now, lifetime, delay_warning, conc, backoff;
  long long connect_ms, command_ms, data_ms; /* --timeout-ms sets all */
  /* STARTTLS (used by deliver_tls_tool.c only) */
  const char *ca, *servername, *tls_hostname;
  int starttls, verify;
} tool_opts;

/* Print the usage message of tool O->name and exit with status 2. */
_Noreturn void tool_usage(const tool_opts *o);

/* "WHAT: mxgw_strerror(RV)" on stderr; returns 1 (the exit status). */
int tool_die(const char *what, int rv);

/* Check "NAME --spool DIR COMMAND" (else usage) and fill O with the
 * defaults, the spool and the command. */
void tool_init(tool_opts *o, const char *name, int argc, char **argv);

/* Parse argv[FIRST..] into O; ACCEPTED is the NULL-terminated list of the
 * option names this tool takes. An option not in it, one unknown, one
 * without its value or a --rcpt/--backend too many is a usage error. */
void tool_parse(tool_opts *o, int argc, char **argv, int first,
                const char *const *accepted);

/* More configuration of the "run" scheduler: called after the backends,
 * the options of tool_opts and the log hook are set.
 * Returns the exit status (0 to go on). */
typedef int (*tool_configure_fn)(const tool_opts *o, mxgw_deliver *d);

/* A tool's own commands: returns 1 with *STATUS set when it did O->cmd
 * (it may also call tool_usage()), 0 to leave it to tool_main(). */
typedef int (*tool_command_fn)(const tool_opts *o, mxgw_queue *q,
                               int *status);

/* The rest of main() after tool_parse(): open the queue (error "queue
 * open"), then COMMAND (when not NULL), else
 *   "enqueue": commit O->count copies of O->file with the envelope of O
 *     (usage error without --from, --file and a --rcpt), printing "id=ID"
 *     for each;
 *   "run": a scheduler with O's backends (usage error without one) and
 *     options, tool_log and CONFIGURE (when not NULL), then one
 *     mxgw_deliver_run_once() at O->now (the clock when 0), "tried=N" and
 *     the counters;
 * anything else is a usage error. Frees the queue; returns the exit
 * status. */
int tool_main(const tool_opts *o, tool_configure_fn configure,
              tool_command_fn command);

#endif
