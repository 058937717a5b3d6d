/* SPDX-License-Identifier: MIT */
/*
 * log.c: mxgwd's log outputs (text or JSON; stderr, files, syslog). See
 * log.h. The process-wide state here is the daemon's, not the library's.
 */
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

typedef struct out {
  int destination, format;
  FILE *f; /* stderr or an opened file */
  char *path;
} out;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static out *g_outs;
static size_t g_n;
static char g_host[256] = "localhost";
static bool g_syslog_open;

static const char *level_name(int level) {
  static const char *const n[] = {"debug", "info", "notice", "warning",
                                  "error"};
  return level >= 0 && level <= 4 ? n[level] : "info";
}

static int syslog_prio(int level) {
  static const int p[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING,
                          LOG_ERR};
  return level >= 0 && level <= 4 ? p[level] : LOG_INFO;
}

static void free_outs(out *o, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (o[i].f && o[i].f != stderr)
      fclose(o[i].f);
    free(o[i].path);
  }
  free(o);
}

void mxgwd_log_init(const char *hostname) {
  pthread_mutex_lock(&g_lock);
  if (hostname)
    snprintf(g_host, sizeof g_host, "%s", hostname);
  free_outs(g_outs, g_n);
  g_outs = calloc(1, sizeof *g_outs);
  g_n = g_outs ? 1 : 0;
  if (g_outs) {
    g_outs[0].destination = MXGWD_LOG_STDERR;
    g_outs[0].format = MXGWD_LOG_TEXT;
    g_outs[0].f = stderr;
  }
  pthread_mutex_unlock(&g_lock);
}

int mxgwd_log_configure(const mxgwd_config *c) {
  out *o = calloc(c->logging.n_outputs ? c->logging.n_outputs : 1, sizeof *o);
  if (!o)
    return -1;
  for (size_t i = 0; i < c->logging.n_outputs; i++) {
    const mxgwd_log_output *lo = &c->logging.outputs[i];
    o[i].destination = lo->destination;
    o[i].format = lo->format;
    if (lo->destination == MXGWD_LOG_STDERR) {
      o[i].f = stderr;
    } else if (lo->destination == MXGWD_LOG_FILE) {
      o[i].f = fopen(lo->path, "a");
      if (!o[i].f) {
        int e = errno;
        free_outs(o, i);
        mxgwd_logf(MXGWD_ERROR, "logging.outputs[%zu].path: %s: %s", i,
                   lo->path, strerror(e));
        return -1;
      }
      setvbuf(o[i].f, NULL, _IOLBF, 0);
      o[i].path = strdup(lo->path);
    } else {
      /* one syslog connection per process: the first output's settings */
      pthread_mutex_lock(&g_lock);
      if (g_syslog_open)
        closelog();
      static char ident[64];
      snprintf(ident, sizeof ident, "%s", lo->ident ? lo->ident : "mxgwd");
      openlog(ident, LOG_PID | LOG_NDELAY, lo->facility);
      g_syslog_open = true;
      pthread_mutex_unlock(&g_lock);
    }
  }
  pthread_mutex_lock(&g_lock);
  snprintf(g_host, sizeof g_host, "%s", c->hostname);
  out *old = g_outs;
  size_t oldn = g_n;
  g_outs = o;
  g_n = c->logging.n_outputs;
  pthread_mutex_unlock(&g_lock);
  free_outs(old, oldn);
  return 0;
}

void mxgwd_log_close(void) {
  pthread_mutex_lock(&g_lock);
  free_outs(g_outs, g_n);
  g_outs = NULL;
  g_n = 0;
  if (g_syslog_open)
    closelog();
  g_syslog_open = false;
  pthread_mutex_unlock(&g_lock);
}

/* Postfix-style fields worth their own JSON member: "ID: key=value, ..." */
static void json_fields(json_t *o, const char *line) {
  /* queue ID: a leading run of [0-9A-Za-z] followed by ": " */
  size_t k = 0;
  while ((line[k] >= '0' && line[k] <= '9') ||
         (line[k] >= 'A' && line[k] <= 'Z') ||
         (line[k] >= 'a' && line[k] <= 'z'))
    k++;
  if (k >= 6 && line[k] == ':' && line[k + 1] == ' ' &&
      strncmp(line, "NOQUEUE", 7) != 0)
    json_object_set_new(o, "queue_id", json_stringn(line, k));
  static const char *const keys[] = {"from", "to", "relay", "delay", "dsn",
                                     "status", "client", "size", "nrcpt",
                                     "orig_to", NULL};
  for (const char *const *key = keys; *key; key++) {
    size_t kl = strlen(*key);
    const char *p = line;
    while ((p = strstr(p, *key)) != NULL) {
      bool start = p == line || p[-1] == ' ';
      if (start && p[kl] == '=') {
        const char *v = p + kl + 1;
        size_t vl;
        if (*v == '<') {
          const char *e = strchr(v, '>');
          vl = e ? (size_t)(e - v - 1) : strcspn(v, ", ");
          v++;
        } else {
          vl = strcspn(v, ", ");
        }
        json_object_set_new(o, *key, json_stringn(v, vl));
        break;
      }
      p += kl;
    }
  }
}

static char *make_json(int level, const char *line, const struct timeval *tv) {
  struct tm gm;
  time_t t = tv->tv_sec;
  gmtime_r(&t, &gm);
  char iso[64];
  strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &gm);
  char iso2[80];
  snprintf(iso2, sizeof iso2, "%s.%03dZ", iso, (int)(tv->tv_usec / 1000));
  json_t *obj = json_object();
  if (!obj)
    return NULL;
  json_object_set_new(obj, "time", json_string(iso2));
  json_object_set_new(obj, "host", json_string(g_host));
  json_object_set_new(obj, "program", json_string("mxgwd"));
  json_object_set_new(obj, "pid", json_integer(getpid()));
  json_object_set_new(obj, "level", json_string(level_name(level)));
  json_fields(obj, line);
  json_object_set_new(obj, "message", json_string(line));
  char *js = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(obj);
  return js;
}

void mxgwd_log_line(int level, const char *line) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  time_t t = tv.tv_sec;
  localtime_r(&t, &tm);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%b %e %H:%M:%S", &tm);
  const char *lv = level >= MXGWD_WARNING ? level_name(level) : "";
  const char *sep = level >= MXGWD_WARNING ? ": " : "";
  pthread_mutex_lock(&g_lock);
  char *js = NULL;
  for (size_t i = 0; i < g_n; i++)
    if (g_outs[i].format == MXGWD_LOG_JSON) {
      js = make_json(level, line, &tv);
      break;
    }
  for (size_t i = 0; i < g_n; i++) {
    out *o = &g_outs[i];
    bool json = o->format == MXGWD_LOG_JSON;
    if (json && !js)
      continue;
    if (o->destination == MXGWD_LOG_SYSLOG) {
      if (json)
        syslog(syslog_prio(level), "%s", js);
      else
        syslog(syslog_prio(level), "%s%s%s", lv, sep, line);
    } else if (o->f) {
      if (json)
        fprintf(o->f, "%s\n", js);
      else
        fprintf(o->f, "%s %s mxgwd[%ld]: %s%s%s\n", stamp, g_host,
                (long)getpid(), lv, sep, line);
      fflush(o->f);
    }
  }
  pthread_mutex_unlock(&g_lock);
  free(js);
}

void mxgwd_logf(int level, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  mxgwd_log_line(level, buf);
}

void mxgwd_log_hook(void *user, int level, const char *line) {
  (void)user;
  mxgwd_log_line(level, line);
}
