/* SPDX-License-Identifier: MIT */
/*
 * log.h: mxgwd's log outputs. Each line (Postfix-style text from the server
 * layer, or mxgwd's own) goes to every configured output: stderr, a file
 * (appended; reopened on SIGHUP for log rotation) or syslog, as text
 *   Nov 28 07:30:26 mx.example.org mxgwd[1234]: 3F2A...: to=<a@b>, ...
 * (the syslog daemon adds its own prefix) or as one JSON object per line
 *   {"time":"2026-11-28T07:30:26.123Z","host":"mx.example.org",
 *    "program":"mxgwd","pid":1234,"level":"info","queue_id":"3F2A...",
 *    "to":"a@b","status":"sent",...,"message":"3F2A...: to=<a@b>, ..."}
 * Thread-safe (one mutex): called from the server's threads and mxgwd's.
 */
#ifndef MXGWD_LOG_H
#define MXGWD_LOG_H

#include "config.h"

enum { MXGWD_DEBUG = 0, MXGWD_INFO, MXGWD_NOTICE, MXGWD_WARNING, MXGWD_ERROR };

/* Start with stderr/text only (before the configuration is read). */
void mxgwd_log_init(const char *hostname);
/* Switch to the outputs of `c` (opens files; reopens them on every call).
 * Returns 0, or -1 with a message logged to the previous outputs. */
int mxgwd_log_configure(const mxgwd_config *c);
void mxgwd_log_line(int level, const char *line);
void mxgwd_logf(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void mxgwd_log_close(void);
/* The server layer's hook (mxgw_server_log_fn). */
void mxgwd_log_hook(void *user, int level, const char *line);

#endif /* MXGWD_LOG_H */
