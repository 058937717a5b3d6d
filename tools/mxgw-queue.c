/* SPDX-License-Identifier: MIT */
/*
 * mxgw-queue: the operator's view of a libmxgw spool directory, in the
 * manner of Postfix's postqueue -p and postsuper. It opens the spool
 * without owning it (no lock, no recovery), so it is safe while a gateway
 * runs. Commands: list [--state S] [--json], show ID, hold ID|ALL,
 * release ID|ALL, delete ID|ALL [--state S], requeue ID|ALL, flush ID|ALL,
 * stats [--json].
 * Exit status: 0 success, 1 failure (unknown ID, message busy, spool
 * error), 2 usage error. See docs/queue.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <mxgw/mxgw.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: mxgw-queue --spool DIR COMMAND [ARGS]\n"
          "  list [--state S] [--json]   messages (postqueue -p)\n"
          "  show ID                     one message's metadata (JSON)\n"
          "  hold ID|ALL [--state S]     put on hold\n"
          "  release ID|ALL              hold -> incoming\n"
          "  delete ID|ALL [--state S]   remove (postsuper -d)\n"
          "  requeue ID|ALL [--state S]  retry now, failed recipients too\n"
          "  flush ID|ALL                deferred: retry now (postqueue -f)\n"
          "  stats [--json]              counts per state, oldest deferred\n"
          "states: incoming active deferred hold failed corrupt\n"
          "exit status: 0 ok, 1 failure, 2 usage\n");
}

static int parse_state(const char *s) {
  for (int i = 1; i <= MXGW_QSTATE_CORRUPT; i++)
    if (!strcmp(s, mxgw_queue_state_name(i)))
      return i;
  return -1;
}

static const char *estr(const mxgw_queue_entry *e, int key) {
  const char *p;
  size_t l;
  return mxgw_queue_entry_get_str(e, key, &p, &l) == MXGW_OK ? p : "";
}

static int64_t eint(const mxgw_queue_entry *e, int key) {
  int64_t v = 0;
  mxgw_queue_entry_get_int(e, key, &v);
  return v;
}

static const char *rstr(const mxgw_queue_entry *e, size_t i, int key) {
  const char *p;
  size_t l;
  return mxgw_queue_entry_rcpt_get_str(e, i, key, &p, &l) == MXGW_OK ? p : "";
}

static int64_t rint_(const mxgw_queue_entry *e, size_t i, int key) {
  int64_t v = 0;
  mxgw_queue_entry_rcpt_get_int(e, i, key, &v);
  return v;
}

/* postqueue -p style: '*' after the ID = active, '!' = hold. */
static void print_entry(const mxgw_queue_entry *e, int state) {
  char when[64];
  time_t t = (time_t)eint(e, MXGW_QKEY_ARRIVAL);
  struct tm tm;
  strftime(when, sizeof when, "%a %b %e %H:%M:%S", localtime_r(&t, &tm));
  char mark = state == MXGW_QSTATE_ACTIVE ? '*'
              : state == MXGW_QSTATE_HOLD ? '!'
                                          : ' ';
  const char *sender = estr(e, MXGW_QKEY_SENDER);
  printf("%s%c %8lld %s  %s\n", estr(e, MXGW_QKEY_ID), mark,
         (long long)eint(e, MXGW_QKEY_SIZE), when,
         *sender ? sender : "MAILER-DAEMON");
  int64_t n = eint(e, MXGW_QKEY_RCPT_COUNT);
  for (int64_t i = 0; i < n; i++) {
    int64_t st = rint_(e, (size_t)i, MXGW_QRKEY_STATE);
    if (st == MXGW_RCPT_DELIVERED)
      continue; /* as postqueue: only recipients still to do or failed */
    int64_t code = rint_(e, (size_t)i, MXGW_QRKEY_CODE);
    if (code)
      printf("%*s(%lld %s %s)\n", 10, "", (long long)code,
             rstr(e, (size_t)i, MXGW_QRKEY_ENHANCED),
             rstr(e, (size_t)i, MXGW_QRKEY_TEXT));
    printf("%*s%s%s\n", 42, "", rstr(e, (size_t)i, MXGW_QRKEY_ADDR),
           st == MXGW_RCPT_FAILED ? " (failed)" : "");
  }
  printf("\n");
}

static int cmd_list(mxgw_queue *q, int state, int json) {
  int rc = 0, total = 0;
  long long bytes = 0;
  json_t *arr = json ? json_array() : NULL;
  if (!json)
    printf("-Queue ID-                 --Size-- ----Arrival Time---- "
           "-Sender/Recipient-------\n");
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED; s++) {
    if (state > 0 && s != state)
      continue;
    mxgw_queue_iter *it;
    int r = mxgw_queue_iter_new(q, s, &it);
    if (r != MXGW_OK) {
      fprintf(stderr, "mxgw-queue: %s: %s\n", mxgw_queue_state_name(s),
              mxgw_strerror(r));
      rc = 1;
      continue;
    }
    mxgw_queue_entry *e;
    while ((r = mxgw_queue_iter_next(it, &e)) != 0) {
      if (r < 0) {
        const char *id = "?";
        size_t l;
        mxgw_queue_iter_id(it, &id, &l);
        fprintf(stderr, "mxgw-queue: %s: %s\n", id, mxgw_strerror(r));
        rc = 1;
        continue;
      }
      total++;
      bytes += eint(e, MXGW_QKEY_SIZE);
      if (json) {
        const char *p;
        size_t l;
        json_error_t err;
        if (mxgw_queue_entry_json(e, &p, &l) == MXGW_OK)
          json_array_append_new(arr, json_loadb(p, l, 0, &err));
      } else {
        print_entry(e, s);
      }
    }
    mxgw_queue_iter_free(it);
  }
  if (json) {
    json_dumpf(arr, stdout, JSON_INDENT(2));
    printf("\n");
    json_decref(arr);
  } else if (total == 0) {
    printf("Mail queue is empty\n");
  } else {
    printf("-- %lld Kbytes in %d Request%s.\n", (bytes + 1023) / 1024, total,
           total == 1 ? "" : "s");
  }
  return rc;
}

static int cmd_show(mxgw_queue *q, const char *id) {
  mxgw_queue_entry *e;
  int r = mxgw_queue_load(q, id, &e);
  if (r != MXGW_OK) {
    fprintf(stderr, "mxgw-queue: %s: %s\n", id, mxgw_strerror(r));
    return 1;
  }
  const char *p;
  size_t l;
  r = mxgw_queue_entry_json(e, &p, &l);
  if (r == MXGW_OK)
    printf("%s\n", p);
  mxgw_queue_entry_free(e);
  return r == MXGW_OK ? 0 : 1;
}

static int cmd_stats(mxgw_queue *q, int json) {
  json_t *o = json_object();
  int rc = 0;
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++) {
    int n = mxgw_queue_count(q, s);
    if (n < 0) {
      fprintf(stderr, "mxgw-queue: %s: %s\n", mxgw_queue_state_name(s),
              mxgw_strerror(n));
      rc = 1;
      n = 0;
    }
    json_object_set_new(o, mxgw_queue_state_name(s), json_integer(n));
  }
  /* oldest deferred: IDs start with the arrival time, the iterator sorts */
  mxgw_queue_iter *it;
  mxgw_queue_entry *e;
  if (mxgw_queue_iter_new(q, MXGW_QSTATE_DEFERRED, &it) == MXGW_OK) {
    int r;
    while ((r = mxgw_queue_iter_next(it, &e)) < 0)
      ;
    if (r == 1) {
      json_t *d = json_object();
      json_object_set_new(d, "id", json_string(estr(e, MXGW_QKEY_ID)));
      json_object_set_new(d, "arrival",
                          json_integer(eint(e, MXGW_QKEY_ARRIVAL)));
      json_object_set_new(d, "attempts",
                          json_integer(eint(e, MXGW_QKEY_ATTEMPTS)));
      int64_t n = eint(e, MXGW_QKEY_RCPT_COUNT);
      for (int64_t i = 0; i < n; i++)
        if (rint_(e, (size_t)i, MXGW_QRKEY_CODE)) {
          char buf[1200];
          snprintf(buf, sizeof buf, "%lld %s %s",
                   (long long)rint_(e, (size_t)i, MXGW_QRKEY_CODE),
                   rstr(e, (size_t)i, MXGW_QRKEY_ENHANCED),
                   rstr(e, (size_t)i, MXGW_QRKEY_TEXT));
          json_object_set_new(d, "last_error", json_string(buf));
        }
      json_object_set_new(o, "oldest_deferred", d);
    }
    mxgw_queue_iter_free(it);
  }
  if (json) {
    json_dumpf(o, stdout, JSON_INDENT(2));
    printf("\n");
  } else {
    for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++)
      printf("%-9s %lld\n", mxgw_queue_state_name(s),
             (long long)json_integer_value(
                 json_object_get(o, mxgw_queue_state_name(s))));
    json_t *d = json_object_get(o, "oldest_deferred");
    if (d) {
      time_t t = (time_t)json_integer_value(json_object_get(d, "arrival"));
      char when[64];
      struct tm tm;
      strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
      printf("oldest deferred: %s arrived %s, %lld attempts",
             json_string_value(json_object_get(d, "id")), when,
             (long long)json_integer_value(json_object_get(d, "attempts")));
      const char *le = json_string_value(json_object_get(d, "last_error"));
      printf("%s%s\n", le ? ", last error: " : "", le ? le : "");
    }
  }
  json_decref(o);
  return rc;
}

int main(int argc, char **argv) {
  const char *spool = NULL, *cmd = NULL, *arg = NULL;
  int state = 0, json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--spool") && i + 1 < argc) {
      spool = argv[++i];
    } else if (!strcmp(argv[i], "--state") && i + 1 < argc) {
      if ((state = parse_state(argv[++i])) < 0) {
        fprintf(stderr, "mxgw-queue: unknown state '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      fprintf(stderr, "mxgw-queue: unknown option '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    } else if (!cmd) {
      cmd = argv[i];
    } else if (!arg) {
      arg = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!spool || !cmd) {
    usage(stderr);
    return 2;
  }
  int op = !strcmp(cmd, "hold")      ? MXGW_QOP_HOLD
           : !strcmp(cmd, "release") ? MXGW_QOP_RELEASE
           : !strcmp(cmd, "delete")  ? MXGW_QOP_DELETE
           : !strcmp(cmd, "requeue") ? MXGW_QOP_REQUEUE
           : !strcmp(cmd, "flush")   ? MXGW_QOP_FLUSH
                                     : 0;
  int needs_arg = op || !strcmp(cmd, "show");
  if (!op && strcmp(cmd, "show") && strcmp(cmd, "list") &&
      strcmp(cmd, "stats")) {
    fprintf(stderr, "mxgw-queue: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
  }
  if (needs_arg != (arg != NULL)) {
    usage(stderr);
    return 2;
  }
  mxgw_queue *q;
  int r = mxgw_queue_new(&q, spool, NULL);
  if (r == MXGW_OK) {
    mxgw_queue_set_int(q, MXGW_QOPT_OWNER, 0);
    mxgw_queue_set_int(q, MXGW_QOPT_CREATE, 0);
    mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0);
    r = mxgw_queue_open(q);
  }
  if (r != MXGW_OK) {
    fprintf(stderr, "mxgw-queue: %s: %s\n", spool, mxgw_strerror(r));
    mxgw_queue_free(q);
    return 1;
  }
  int rc;
  if (!strcmp(cmd, "list")) {
    rc = cmd_list(q, state, json);
  } else if (!strcmp(cmd, "show")) {
    rc = cmd_show(q, arg);
  } else if (!strcmp(cmd, "stats")) {
    rc = cmd_stats(q, json);
  } else {
    const char *id = strcmp(arg, "ALL") ? arg : NULL;
    r = mxgw_queue_manage(q, op, id, state);
    if (r == MXGW_E_BUSY) {
      fprintf(stderr,
              "mxgw-queue: %s: being delivered (active, or in the journal: "
              "on its first attempt, or waiting for the gateway to start "
              "and recover it); if the attempt fails it is in deferred a "
              "moment later\n",
              arg);
      rc = 1;
    } else if (r < 0) {
      fprintf(stderr, "mxgw-queue: %s: %s\n", arg, mxgw_strerror(r));
      rc = 1;
    } else {
      printf("mxgw-queue: %s: %d message%s\n", cmd, r, r == 1 ? "" : "s");
      rc = 0;
    }
  }
  mxgw_queue_free(q);
  return rc;
}
