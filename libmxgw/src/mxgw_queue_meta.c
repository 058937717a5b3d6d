/* SPDX-License-Identifier: MIT */
/*
 * mxgw_queue_meta.c: the durable queue's metadata and state machine. The
 * metadata is one JSON object per message (jansson), written beside the
 * body as "<id>.json"; this module builds it, loads and validates it,
 * rewrites it atomically, and moves messages between state directories
 * (body first, then metadata: the metadata's directory is the state), for
 * delivery (take, finish) and for operators (iterate, hold, release,
 * delete, requeue).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mxgw_queue_int.h"
#include "mxgw_deliver_int.h" /* mxgw__queue_entry_rcpt_*mark() */

static const char *const rcpt_states[] = {"pending", "delivered", "failed",
                                          "deferred"};

static const char *str_key(int key) {
  switch (key) {
  case MXGW_QKEY_ID: return "id";
  case MXGW_QKEY_SENDER: return "sender";
  case MXGW_QKEY_ENVID: return "envid";
  case MXGW_QKEY_RET: return "ret";
  case MXGW_QKEY_BODY: return "body";
  case MXGW_QKEY_CLIENT_ADDR: return "client_addr";
  case MXGW_QKEY_CLIENT_HELO: return "client_helo";
  case MXGW_QKEY_CLIENT_HOST: return "client_host";
  case MXGW_QKEY_TLS_JSON: return "tls";
  case MXGW_QKEY_SPF_JSON: return "spf";
  default: return NULL;
  }
}

static const char *int_key(int key) {
  switch (key) {
  case MXGW_QKEY_SMTPUTF8: return "smtputf8";
  case MXGW_QKEY_ARRIVAL: return "arrival";
  case MXGW_QKEY_ATTEMPTS: return "attempts";
  case MXGW_QKEY_NEXT_ATTEMPT: return "next_attempt";
  case MXGW_QKEY_SIZE: return "size";
  default: return NULL;
  }
}

json_t *mxgw__queue_meta_new(const char *id) {
  json_t *m = json_object();
  if (!m)
    return NULL;
  if (json_object_set_new(m, "version", json_integer(1)) ||
      json_object_set_new(m, "id", json_string(id)) ||
      json_object_set_new(m, "attempts", json_integer(0)) ||
      json_object_set_new(m, "next_attempt", json_integer(0)) ||
      json_object_set_new(m, "recipients", json_array())) {
    json_decref(m);
    return NULL;
  }
  return m;
}

/* What every metadata file must have; also the commit's precondition. */
int mxgw__queue_meta_check(json_t *m) {
  json_t *r = json_object_get(m, "recipients");
  if (!json_is_string(json_object_get(m, "id")) ||
      !json_is_string(json_object_get(m, "sender")) || !json_is_array(r) ||
      json_array_size(r) == 0)
    return MXGW_E_SYNTAX;
  size_t i;
  json_t *v;
  json_array_foreach(r, i, v) {
    if (!json_is_string(json_object_get(v, "addr")) ||
        !json_is_string(json_object_get(v, "state")))
      return MXGW_E_SYNTAX;
  }
  return MXGW_OK;
}

int mxgw_queue_msg_set_str(mxgw_queue_msg *msg, int key, const char *ptr,
                           size_t len) {
  const char *k = str_key(key);
  if (!msg || !k || key == MXGW_QKEY_ID || (!ptr && len))
    return MXGW_E_INVAL;
  json_t *v;
  if (key == MXGW_QKEY_TLS_JSON || key == MXGW_QKEY_SPF_JSON) {
    json_error_t err;
    v = json_loadb(ptr ? ptr : "", len, JSON_DECODE_ANY, &err);
    if (!v)
      return MXGW_E_SYNTAX;
  } else {
    v = json_stringn(ptr ? ptr : "", len);
    if (!v)
      return MXGW_E_SYNTAX; /* not UTF-8, or NUL inside */
  }
  return json_object_set_new(msg->meta, k, v) ? MXGW_E_NOMEM : MXGW_OK;
}

int mxgw_queue_msg_set_int(mxgw_queue_msg *msg, int key, int64_t value) {
  if (!msg || (key != MXGW_QKEY_SMTPUTF8 && key != MXGW_QKEY_ARRIVAL &&
               key != MXGW_QKEY_NEXT_ATTEMPT))
    return MXGW_E_INVAL;
  json_t *v = key == MXGW_QKEY_SMTPUTF8 ? json_boolean(value != 0)
                                        : json_integer((json_int_t)value);
  return json_object_set_new(msg->meta, int_key(key), v) ? MXGW_E_NOMEM
                                                         : MXGW_OK;
}

int mxgw_queue_msg_add_rcpt(mxgw_queue_msg *msg, const char *addr,
                            size_t addr_len, int notify, const char *orcpt,
                            size_t orcpt_len) {
  if (!msg || !addr || !addr_len || notify < 0 || notify > 15 ||
      (!orcpt && orcpt_len))
    return MXGW_E_INVAL;
  json_t *a = json_stringn(addr, addr_len);
  json_t *o = orcpt_len ? json_stringn(orcpt, orcpt_len) : json_string("");
  if (!a || !o) {
    json_decref(a);
    json_decref(o);
    return MXGW_E_SYNTAX;
  }
  json_t *r = json_pack("{s:o,s:o,s:i,s:s,s:i,s:s,s:s}", "addr", a, "orcpt",
                        o, "notify", notify, "state", "pending", "code", 0,
                        "enhanced", "", "text", "");
  if (!r)
    return MXGW_E_NOMEM;
  return json_array_append_new(json_object_get(msg->meta, "recipients"), r)
             ? MXGW_E_NOMEM
             : MXGW_OK;
}

/* ------------------------------------------------------------------------ */
/* Entries                                                                  */
/* ------------------------------------------------------------------------ */

static int read_file_at(int dirfd, const char *name, char **out, size_t *len) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return mxgw__queue_errno(errno);
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size > (64 << 20)) {
    close(fd);
    return MXGW_E_IO;
  }
  char *buf = malloc((size_t)st.st_size + 1);
  if (!buf) {
    close(fd);
    return MXGW_E_NOMEM;
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  close(fd);
  buf[got] = '\0';
  *out = buf;
  *len = got;
  return MXGW_OK;
}

/* An entry of message `id` in `state` from its metadata text: parsed and
 * checked (MXGW_E_SYNTAX if it is not this message's metadata; MXGW_E_NOMEM
 * also when the parser ran out of memory, so that a good message is never
 * taken for a bad one). Its body is for the caller to set. */
int mxgw__queue_entry_new(mxgw_queue *q, int state, const char *id,
                          const char *text, size_t len,
                          mxgw_queue_entry **out) {
  json_error_t err;
  json_t *meta = json_loadb(text, len, 0, &err);
  if (!meta && json_error_code(&err) == json_error_out_of_memory)
    return MXGW_E_NOMEM;
  if (!meta || mxgw__queue_meta_check(meta) != MXGW_OK ||
      strcmp(json_string_value(json_object_get(meta, "id")), id) != 0) {
    json_decref(meta);
    return MXGW_E_SYNTAX;
  }
  mxgw_queue_entry *e = mxgw__calloc(&q->mem, 1, sizeof *e);
  if (!e) {
    json_decref(meta);
    return MXGW_E_NOMEM;
  }
  e->q = q;
  e->state = state;
  e->meta = meta;
  snprintf(e->id, sizeof e->id, "%s", id);
  /* TLS and SPF details as text, for mxgw_queue_entry_get_str() */
  for (int i = 0; i < 2; i++) {
    json_t *v = json_object_get(meta, i ? "spf" : "tls");
    if (v)
      e->jtext[i] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  }
  *out = e;
  return MXGW_OK;
}

int mxgw__queue_load_at(mxgw_queue *q, int state, const char *id,
                        mxgw_queue_entry **out) {
  char name[MXGW_QID_MAX + 8];
  snprintf(name, sizeof name, "%s.json", id);
  char *text = NULL;
  size_t len = 0;
  int sfd = q->statefd[state];
  int rc = read_file_at(sfd, name, &text, &len);
  if (rc != MXGW_OK)
    return rc;
  mxgw_queue_entry *e = NULL;
  rc = mxgw__queue_entry_new(q, state, id, text, len, &e);
  free(text);
  if (rc != MXGW_OK)
    return rc;
  size_t plen = strlen(q->dir) + strlen(id) + 32;
  char *path = mxgw__malloc(&q->mem, plen);
  if (!path) {
    mxgw_queue_entry_free(e);
    return MXGW_E_NOMEM;
  }
  snprintf(path, plen, "%s/%s/%s", q->dir, mxgw_queue_state_name(state), id);
  e->body_path = path;
  struct stat st;
  e->size = fstatat(sfd, id, &st, 0) == 0 ? (int64_t)st.st_size : -1;
  *out = e;
  return MXGW_OK;
}

static int find_state(mxgw_queue *q, const char *id) {
  char name[MXGW_QID_MAX + 8];
  struct stat st;
  snprintf(name, sizeof name, "%s.json", id);
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED; s++)
    if (fstatat(q->statefd[s], name, &st, 0) == 0)
      return s;
  return 0;
}

int mxgw_queue_load(mxgw_queue *q, const char *id, mxgw_queue_entry **out) {
  if (!q || !out || !mxgw__queue_valid_id(id))
    return MXGW_E_INVAL;
  *out = NULL;
  if (!q->opened)
    return MXGW_E_STATE;
  for (int tries = 0; tries < 3; tries++) { /* it may move meanwhile */
    int s = find_state(q, id);
    int rc = s ? mxgw__queue_load_at(q, s, id, out)
               : mxgw__journal_load(q, 0, id, out);
    if (rc != MXGW_E_NOTFOUND)
      return rc;
  }
  return MXGW_E_NOTFOUND;
}

void mxgw_queue_entry_free(mxgw_queue_entry *e) {
  if (!e)
    return;
  json_decref(e->meta);
  free(e->json);
  free(e->jtext[0]);
  free(e->jtext[1]);
  mxgw__free(&e->q->mem, e->body_path);
  mxgw__free(&e->q->mem, e);
}

static int str_out(const char *s, const char **ptr, size_t *len) {
  if (!s)
    return MXGW_E_NOTFOUND;
  *ptr = s;
  if (len)
    *len = strlen(s);
  return MXGW_OK;
}

int mxgw_queue_entry_get_str(const mxgw_queue_entry *e, int key,
                             const char **ptr, size_t *len) {
  if (!e || !ptr)
    return MXGW_E_INVAL;
  if (key == MXGW_QKEY_BODY_PATH)
    return str_out(e->body_path, ptr, len);
  if (key == MXGW_QKEY_ID)
    return str_out(e->id, ptr, len);
  const char *k = str_key(key);
  if (!k)
    return MXGW_E_INVAL;
  json_t *v = json_object_get(e->meta, k);
  if (!v)
    return MXGW_E_NOTFOUND;
  if (key == MXGW_QKEY_TLS_JSON || key == MXGW_QKEY_SPF_JSON)
    return str_out(e->jtext[key == MXGW_QKEY_SPF_JSON], ptr, len);
  return str_out(json_string_value(v), ptr, len);
}

int mxgw_queue_entry_get_int(const mxgw_queue_entry *e, int key,
                             int64_t *out) {
  if (!e || !out)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_QKEY_STATE: *out = e->state; return MXGW_OK;
  case MXGW_QKEY_SIZE: *out = e->size; return MXGW_OK;
  case MXGW_QKEY_RCPT_COUNT:
    *out = (int64_t)json_array_size(json_object_get(e->meta, "recipients"));
    return MXGW_OK;
  case MXGW_QKEY_SMTPUTF8:
    *out = json_is_true(json_object_get(e->meta, "smtputf8"));
    return MXGW_OK;
  case MXGW_QKEY_IN_JOURNAL: *out = e->in_journal; return MXGW_OK;
  default: break;
  }
  const char *k = int_key(key);
  if (!k)
    return MXGW_E_INVAL;
  *out = (int64_t)json_integer_value(json_object_get(e->meta, k));
  return MXGW_OK;
}

static json_t *rcpt_at(const mxgw_queue_entry *e, size_t idx) {
  return json_array_get(json_object_get(e->meta, "recipients"), idx);
}

int mxgw_queue_entry_rcpt_get_str(const mxgw_queue_entry *e, size_t idx,
                                  int key, const char **ptr, size_t *len) {
  if (!e || !ptr)
    return MXGW_E_INVAL;
  json_t *r = rcpt_at(e, idx);
  if (!r)
    return MXGW_E_RANGE;
  const char *k = key == MXGW_QRKEY_ADDR       ? "addr"
                  : key == MXGW_QRKEY_ORCPT    ? "orcpt"
                  : key == MXGW_QRKEY_ENHANCED ? "enhanced"
                  : key == MXGW_QRKEY_TEXT     ? "text"
                                               : NULL;
  if (!k)
    return MXGW_E_INVAL;
  return str_out(json_string_value(json_object_get(r, k)), ptr, len);
}

static int rcpt_state_num(json_t *r) {
  const char *s = json_string_value(json_object_get(r, "state"));
  for (int i = 0; s && i < 4; i++)
    if (!strcmp(s, rcpt_states[i]))
      return i;
  return MXGW_RCPT_PENDING;
}

int mxgw_queue_entry_rcpt_get_int(const mxgw_queue_entry *e, size_t idx,
                                  int key, int64_t *out) {
  if (!e || !out)
    return MXGW_E_INVAL;
  json_t *r = rcpt_at(e, idx);
  if (!r)
    return MXGW_E_RANGE;
  switch (key) {
  case MXGW_QRKEY_STATE: *out = rcpt_state_num(r); return MXGW_OK;
  case MXGW_QRKEY_NOTIFY:
    *out = (int64_t)json_integer_value(json_object_get(r, "notify"));
    return MXGW_OK;
  case MXGW_QRKEY_CODE:
    *out = (int64_t)json_integer_value(json_object_get(r, "code"));
    return MXGW_OK;
  default: return MXGW_E_INVAL;
  }
}

int mxgw_queue_entry_json(mxgw_queue_entry *e, const char **ptr, size_t *len) {
  if (!e || !ptr)
    return MXGW_E_INVAL;
  json_t *copy = json_copy(e->meta);
  if (!copy)
    return MXGW_E_NOMEM;
  json_object_set_new(copy, "state",
                      json_string(mxgw_queue_state_name(e->state)));
  json_object_set_new(copy, "size", json_integer((json_int_t)e->size));
  free(e->json);
  e->json = json_dumps(copy, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(copy);
  if (!e->json)
    return MXGW_E_NOMEM;
  return str_out(e->json, ptr, len);
}

int mxgw_queue_entry_body(const mxgw_queue_entry *e, int *fd,
                          int64_t *offset, int64_t *length) {
  if (!e || !fd || !offset || !length)
    return MXGW_E_INVAL;
  *fd = -1;
  if (e->in_journal)
    return mxgw__journal_body(e, fd, offset, length);
  if (!e->body_path)
    return MXGW_E_NOTFOUND; /* removed */
  int f = open(e->body_path, O_RDONLY | O_CLOEXEC);
  if (f < 0)
    return mxgw__queue_errno(errno);
  struct stat st;
  if (fstat(f, &st) != 0) {
    int rc = mxgw__queue_errno(errno);
    close(f);
    return rc;
  }
  *fd = f;
  *offset = 0;
  *length = (int64_t)st.st_size;
  return MXGW_OK;
}

int mxgw_queue_entry_set_rcpt(mxgw_queue_entry *e, size_t idx, int state,
                              int code, const char *enhanced,
                              const char *text) {
  if (!e || state < MXGW_RCPT_PENDING || state > MXGW_RCPT_DEFERRED ||
      code < 0 || code > 999)
    return MXGW_E_INVAL;
  json_t *r = rcpt_at(e, idx);
  if (!r)
    return MXGW_E_RANGE;
  json_t *en = json_string(enhanced ? enhanced : "");
  json_t *tx = json_string(text ? text : "");
  if (!en || !tx) {
    json_decref(en);
    json_decref(tx);
    return MXGW_E_INVAL;
  }
  if (json_object_set_new(r, "state", json_string(rcpt_states[state])) ||
      json_object_set_new(r, "code", json_integer(code)) ||
      json_object_set_new(r, "enhanced", en) ||
      json_object_set_new(r, "text", tx))
    return MXGW_E_NOMEM;
  return MXGW_OK;
}

/* The scheduler's own per-recipient fields (mxgw_deliver_int.h): kept in
 * the recipient's object, saved and shown like the rest of it. */
int mxgw__queue_entry_rcpt_set_mark(mxgw_queue_entry *e, size_t idx,
                                    const char *key, int64_t value) {
  if (!e || !key)
    return MXGW_E_INVAL;
  json_t *r = rcpt_at(e, idx);
  if (!r)
    return MXGW_E_RANGE;
  return json_object_set_new(r, key, json_integer((json_int_t)value))
             ? MXGW_E_NOMEM
             : MXGW_OK;
}

int64_t mxgw__queue_entry_rcpt_mark(const mxgw_queue_entry *e, size_t idx,
                                    const char *key) {
  json_t *r = e && key ? rcpt_at(e, idx) : NULL;
  return r ? (int64_t)json_integer_value(json_object_get(r, key)) : 0;
}

/* Rewrite metadata in `state` atomically: tmp file, fdatasync, rename over,
 * fsync the directory. The message must be in `state` (checked by the
 * caller under the admin lock, or the caller owns it as active). */
static int save_meta(mxgw_queue *q, int state, const char *id, json_t *meta) {
  char *text = json_dumps(meta, JSON_COMPACT);
  if (!text)
    return MXGW_E_NOMEM;
  char tmp[MXGW_QID_MAX + 64], name[MXGW_QID_MAX + 8];
  snprintf(name, sizeof name, "%s.json", id);
  int rc = mxgw__queue_tmpname(q, id, ".json.new", tmp, sizeof tmp);
  int sfd = q->statefd[state];
  struct stat st;
  if (rc == MXGW_OK && fstatat(sfd, name, &st, 0) != 0)
    rc = MXGW_E_NOTFOUND;
  if (rc == MXGW_OK)
    rc = mxgw__queue_write_file(q, q->tmpfd, tmp, text, strlen(text));
  free(text);
  if (rc != MXGW_OK)
    return rc;
  if (renameat(q->tmpfd, tmp, sfd, name) != 0) {
    rc = mxgw__queue_errno(errno);
    unlinkat(q->tmpfd, tmp, 0);
    return rc;
  }
  return mxgw__queue_dirsync(q, sfd);
}

int mxgw_queue_save(mxgw_queue *q, mxgw_queue_entry *e) {
  if (!q || !e || e->q != q)
    return MXGW_E_INVAL;
  if (e->jref) /* from the journal: it becomes files in active/ */
    return mxgw__journal_finish(q, e, MXGW_QSTATE_ACTIVE);
  if (e->in_journal)
    return MXGW_E_BUSY; /* loaded, not taken: the owner delivers it */
  return save_meta(q, e->state, e->id, e->meta);
}

/* Move a message: body first (that rename is the claim: if it fails with
 * ENOENT someone else moved or removed it), then metadata. Recovery puts a
 * body back beside its metadata if we die between the two. */
int mxgw__queue_move(mxgw_queue *q, const char *id, int from, int to,
                     int sync) {
  char name[MXGW_QID_MAX + 8];
  snprintf(name, sizeof name, "%s.json", id);
  int f = q->statefd[from], t = q->statefd[to];
  if (renameat(f, id, t, id) != 0)
    return mxgw__queue_errno(errno);
  if (renameat(f, name, t, name) != 0) {
    int rc = mxgw__queue_errno(errno);
    renameat(t, id, f, id);
    return rc;
  }
  return sync ? mxgw__queue_dirsync(q, t) : MXGW_OK;
}

/* Remove a message: the metadata goes first, renamed into tmp/ as
 * "<id>.json.del.*" (the point of no return); recovery removes a lone body
 * that such a marker explains. */
static int remove_msg_nosync(mxgw_queue *q, int state, const char *id) {
  char name[MXGW_QID_MAX + 8], del[MXGW_QID_MAX + 64];
  snprintf(name, sizeof name, "%s.json", id);
  int rc = mxgw__queue_tmpname(q, id, ".json.del", del, sizeof del);
  if (rc != MXGW_OK)
    return rc;
  int sfd = q->statefd[state];
  if (renameat(sfd, name, q->tmpfd, del) != 0)
    return mxgw__queue_errno(errno);
  unlinkat(sfd, id, 0);
  unlinkat(q->tmpfd, del, 0);
  return MXGW_OK;
}

static int remove_msg(mxgw_queue *q, int state, const char *id) {
  int rc = remove_msg_nosync(q, state, id);
  return rc == MXGW_OK ? mxgw__queue_dirsync(q, q->statefd[state]) : rc;
}

/* A deferred message's next attempt is at `at` (admin lock held). */
void mxgw__queue_deferred_at(mxgw_queue *q, int64_t at) {
  if (q->dnext_at && at < q->dnext)
    q->dnext = at;
}

/* Oldest message due in deferred/ (next_attempt <= now), as an ID (admin
 * lock held). Reading every deferred message's metadata is skipped while
 * the earliest next attempt seen by the last scan (kept up to date by
 * finish) is in the future; the scan is redone at least once a minute in
 * case another process changed deferred/. */
static int pick_due(mxgw_queue *q, int64_t now, char *out) {
  int state = MXGW_QSTATE_DEFERRED;
  if (q->dnext_at && now < q->dnext && now - q->dnext_at < 60)
    return MXGW_E_NOTFOUND;
  char **ids;
  size_t n;
  int rc = mxgw__queue_list_ids(q, state, &ids, &n);
  if (rc != MXGW_OK)
    return rc;
  rc = MXGW_E_NOTFOUND;
  int64_t earliest = INT64_MAX;
  for (size_t i = 0; i < n; i++) {
    mxgw_queue_entry *e = NULL;
    if (mxgw__queue_load_at(q, state, ids[i], &e) != MXGW_OK)
      continue;
    int64_t na = 0;
    mxgw_queue_entry_get_int(e, MXGW_QKEY_NEXT_ATTEMPT, &na);
    mxgw_queue_entry_free(e);
    if (na > now) {
      if (na < earliest)
        earliest = na;
      continue;
    }
    snprintf(out, MXGW_QID_MAX, "%s", ids[i]);
    rc = MXGW_OK;
    break;
  }
  mxgw__queue_free_ids(ids, n);
  /* nothing due: remember when something will be; something due: more
   * may be, scan again next time */
  q->dnext_at = rc == MXGW_E_NOTFOUND ? (now > 0 ? now : 1) : 0;
  q->dnext = earliest;
  return rc;
}

int mxgw_queue_take(mxgw_queue *q, int64_t now, mxgw_queue_entry **out) {
  if (!q || !out)
    return MXGW_E_INVAL;
  *out = NULL;
  if (!q->opened)
    return MXGW_E_STATE;
  char id[MXGW_QID_MAX];
  int rc;
  mxgw__queue_admin_lock(q);
  /* incoming/ first, oldest first, from the cursor; an entry that is gone
   * (moved by an operator or another process) is skipped */
  /* the journal first: its messages are the newest, but they are in
   * memory and in the page cache, and each one taken saves two files;
   * every 8th take looks at incoming/ and deferred/ first */
  rc = MXGW_E_NOTFOUND;
  int files_first = (++q->take_turn & 7) == 0;
  if (q->journal && q->owner && !files_first) {
    rc = mxgw__journal_take(q, out);
    if (rc != MXGW_E_NOTFOUND) {
      mxgw__queue_admin_unlock(q);
      return rc;
    }
  }
  for (int listed = 0; rc == MXGW_E_NOTFOUND;) {
    if (q->take_pos >= q->take_n) {
      if (listed)
        break;
      mxgw__queue_take_reset(q);
      rc = mxgw__queue_list_ids(q, MXGW_QSTATE_INCOMING, &q->take_ids,
                                &q->take_n);
      if (rc != MXGW_OK) {
        q->take_ids = NULL;
        q->take_n = 0;
        break;
      }
      rc = MXGW_E_NOTFOUND;
      listed = 1;
      continue;
    }
    snprintf(id, sizeof id, "%s", q->take_ids[q->take_pos++]);
    /* no directory fsync: if this move is lost the message is found again
     * in its old state, which is the same as after recovery of active/ */
    rc = mxgw__queue_move(q, id, MXGW_QSTATE_INCOMING, MXGW_QSTATE_ACTIVE, 0);
  }
  if (rc == MXGW_E_NOTFOUND) {
    rc = pick_due(q, now, id);
    if (rc == MXGW_OK)
      rc = mxgw__queue_move(q, id, MXGW_QSTATE_DEFERRED, MXGW_QSTATE_ACTIVE,
                            0);
  }
  if (rc == MXGW_OK)
    rc = mxgw__queue_load_at(q, MXGW_QSTATE_ACTIVE, id, out);
  else if (rc == MXGW_E_NOTFOUND && q->journal && q->owner && files_first)
    rc = mxgw__journal_take(q, out);
  mxgw__queue_admin_unlock(q);
  return rc;
}

int mxgw_queue_finish(mxgw_queue *q, mxgw_queue_entry *e,
                      int64_t next_attempt) {
  if (!q || !e || e->q != q)
    return MXGW_E_INVAL;
  if (e->state != MXGW_QSTATE_ACTIVE)
    return MXGW_E_STATE;
  json_t *rs = json_object_get(e->meta, "recipients");
  size_t i, open = 0, failed = 0;
  json_t *r;
  json_array_foreach(rs, i, r) {
    int st = rcpt_state_num(r);
    if (st == MXGW_RCPT_PENDING || st == MXGW_RCPT_DEFERRED)
      open++;
    else if (st == MXGW_RCPT_FAILED)
      failed++;
  }
  json_object_set_new(
      e->meta, "attempts",
      json_integer(json_integer_value(json_object_get(e->meta, "attempts")) +
                   1));
  json_object_set_new(e->meta, "next_attempt",
                      json_integer((json_int_t)(open ? next_attempt : 0)));
  int to = open ? MXGW_QSTATE_DEFERRED
                : failed ? MXGW_QSTATE_FAILED : 0;
  if (e->jref) { /* taken from the journal */
    int rc = mxgw__journal_finish(q, e, to);
    if (rc != MXGW_OK)
      return rc;
    e->state = to;
    return to;
  }
  mxgw__queue_admin_lock(q);
  int rc;
  if (to == 0) {
    /* the renames under the lock, the directory fsync after it: other
     * workers' takes and finishes need not wait for this one's disk flush */
    rc = remove_msg_nosync(q, MXGW_QSTATE_ACTIVE, e->id);
    mxgw__queue_admin_unlock(q);
    if (rc == MXGW_OK)
      rc = mxgw__queue_dirsync(q, q->statefd[MXGW_QSTATE_ACTIVE]);
    if (rc != MXGW_OK)
      return rc;
    e->state = to;
    return to;
  } else {
    rc = save_meta(q, MXGW_QSTATE_ACTIVE, e->id, e->meta);
    if (rc == MXGW_OK)
      rc = mxgw__queue_move(q, e->id, MXGW_QSTATE_ACTIVE, to, 1);
    if (rc == MXGW_OK && to == MXGW_QSTATE_DEFERRED)
      mxgw__queue_deferred_at(q, next_attempt);
  }
  mxgw__queue_admin_unlock(q);
  if (rc != MXGW_OK)
    return rc;
  e->state = to;
  return to;
}

/* ------------------------------------------------------------------------ */
/* Listing                                                                  */
/* ------------------------------------------------------------------------ */

static int cmp_id(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

struct mxgw_queue_iter {
  mxgw_queue *q;
  int state;
  char **ids;
  size_t n, pos;
  mxgw_queue_entry *cur;
  const char *curid;
  mxgw__jsnap *jsnap; /* not the owner: the journal as read at iter_new */
};

int mxgw_queue_iter_new(mxgw_queue *q, int state, mxgw_queue_iter **out) {
  if (!q || !out || state < 1 || state > MXGW_QSTATE_FAILED)
    return MXGW_E_INVAL;
  *out = NULL;
  if (!q->opened)
    return MXGW_E_STATE;
  mxgw_queue_iter *it = mxgw__calloc(&q->mem, 1, sizeof *it);
  if (!it)
    return MXGW_E_NOMEM;
  int rc = mxgw__queue_list_ids(q, state, &it->ids, &it->n);
  if (rc != MXGW_OK) {
    mxgw__free(&q->mem, it);
    return rc;
  }
  /* with the journal's messages of this state, in ID (arrival) order */
  char **jids;
  size_t jn;
  if (q->owner || state != MXGW_QSTATE_INCOMING)
    rc = mxgw__journal_ids(q, state, &jids, &jn);
  else
    rc = mxgw__journal_snap(q, &it->jsnap, &jids, &jn);
  if (rc == MXGW_OK && jn) {
    char **all = realloc(it->ids, (it->n + jn) * sizeof *all);
    if (!all) {
      mxgw__queue_free_ids(jids, jn);
      rc = MXGW_E_NOMEM;
    } else {
      memcpy(all + it->n, jids, jn * sizeof *all);
      free(jids);
      it->ids = all;
      it->n += jn;
      qsort(it->ids, it->n, sizeof *it->ids, cmp_id);
    }
  } else if (rc == MXGW_OK) {
    free(jids);
  }
  if (rc != MXGW_OK) {
    mxgw__queue_free_ids(it->ids, it->n);
    mxgw__journal_snap_free(it->jsnap);
    mxgw__free(&q->mem, it);
    return rc;
  }
  it->q = q;
  it->state = state;
  *out = it;
  return MXGW_OK;
}

int mxgw_queue_iter_next(mxgw_queue_iter *it, mxgw_queue_entry **out) {
  if (!it || !out)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_queue_entry_free(it->cur);
  it->cur = NULL;
  while (it->pos < it->n) {
    it->curid = it->ids[it->pos++];
    int rc = mxgw__queue_load_at(it->q, it->state, it->curid, &it->cur);
    if (rc == MXGW_E_NOTFOUND)
      rc = it->jsnap ? mxgw__journal_snap_load(it->q, it->jsnap, it->curid,
                                               &it->cur)
                     : mxgw__journal_load(it->q, it->state, it->curid,
                                          &it->cur);
    if (rc == MXGW_E_NOTFOUND)
      continue; /* moved away meanwhile */
    if (rc != MXGW_OK)
      return rc;
    *out = it->cur;
    return 1;
  }
  it->curid = NULL;
  return 0;
}

int mxgw_queue_iter_id(const mxgw_queue_iter *it, const char **ptr,
                       size_t *len) {
  if (!it || !ptr)
    return MXGW_E_INVAL;
  if (!it->curid)
    return MXGW_E_STATE;
  return str_out(it->curid, ptr, len);
}

void mxgw_queue_iter_free(mxgw_queue_iter *it) {
  if (!it)
    return;
  mxgw_queue_entry_free(it->cur);
  mxgw__queue_free_ids(it->ids, it->n);
  mxgw__journal_snap_free(it->jsnap);
  mxgw__free(&it->q->mem, it);
}

/* ------------------------------------------------------------------------ */
/* Operator actions                                                         */
/* ------------------------------------------------------------------------ */

static int op_applies(int op, int state) {
  switch (op) {
  case MXGW_QOP_HOLD:
    return state == MXGW_QSTATE_INCOMING || state == MXGW_QSTATE_DEFERRED ||
           state == MXGW_QSTATE_FAILED;
  case MXGW_QOP_RELEASE: return state == MXGW_QSTATE_HOLD;
  case MXGW_QOP_DELETE:
    return state != MXGW_QSTATE_ACTIVE && state != MXGW_QSTATE_CORRUPT;
  case MXGW_QOP_REQUEUE:
    return state == MXGW_QSTATE_DEFERRED || state == MXGW_QSTATE_HOLD ||
           state == MXGW_QSTATE_FAILED;
  case MXGW_QOP_FLUSH: return state == MXGW_QSTATE_DEFERRED;
  default: return 0;
  }
}

/* requeue: failed and deferred recipients become pending, due now; flush
 * (`all` 0): only due now */
static int reset_meta(mxgw_queue *q, int state, const char *id, int all) {
  mxgw_queue_entry *e = NULL;
  int rc = mxgw__queue_load_at(q, state, id, &e);
  if (rc != MXGW_OK)
    return rc;
  json_t *rs = json_object_get(e->meta, "recipients"), *r;
  size_t i;
  json_array_foreach(rs, i, r) {
    int st = rcpt_state_num(r);
    if (all && (st == MXGW_RCPT_FAILED || st == MXGW_RCPT_DEFERRED))
      json_object_set_new(r, "state", json_string("pending"));
  }
  json_object_set_new(e->meta, "next_attempt", json_integer(0));
  rc = save_meta(q, state, id, e->meta);
  mxgw_queue_entry_free(e);
  return rc;
}

/* One message, admin lock held. */
static int apply(mxgw_queue *q, int op, int state, const char *id) {
  switch (op) {
  case MXGW_QOP_HOLD:
    return mxgw__queue_move(q, id, state, MXGW_QSTATE_HOLD, 1);
  case MXGW_QOP_RELEASE:
    return mxgw__queue_move(q, id, state, MXGW_QSTATE_INCOMING, 1);
  case MXGW_QOP_DELETE:
    return remove_msg(q, state, id);
  case MXGW_QOP_REQUEUE:
  case MXGW_QOP_FLUSH: {
    int rc = reset_meta(q, state, id, op == MXGW_QOP_REQUEUE);
    return rc == MXGW_OK
               ? mxgw__queue_move(q, id, state, MXGW_QSTATE_INCOMING, 1)
               : rc;
  }
  default: return MXGW_E_INVAL;
  }
}

int mxgw_queue_manage(mxgw_queue *q, int op, const char *id, int state) {
  if (!q || op < MXGW_QOP_HOLD || op > MXGW_QOP_FLUSH || state < 0 ||
      state > MXGW_QSTATE_MAX || (id && !mxgw__queue_valid_id(id)))
    return MXGW_E_INVAL;
  if (!q->opened)
    return MXGW_E_STATE;
  int rc, count = 0;
  mxgw__queue_admin_lock(q);
  mxgw__queue_take_reset(q); /* released/requeued messages: list again */
  q->dnext_at = 0;
  if (id) {
    int s = find_state(q, id);
    mxgw_queue_entry *je = NULL;
    if (!s && mxgw__journal_load(q, 0, id, &je) == MXGW_OK)
      rc = MXGW_E_BUSY; /* in the journal: its first attempt is under way */
    else if (!s)
      rc = MXGW_E_NOTFOUND;
    else if (s == MXGW_QSTATE_ACTIVE)
      rc = MXGW_E_BUSY;
    else if ((state && s != state) || !op_applies(op, s))
      rc = MXGW_E_STATE;
    else
      rc = apply(q, op, s, id);
    mxgw_queue_entry_free(je);
    mxgw__queue_admin_unlock(q);
    return rc == MXGW_OK ? 1 : rc;
  }
  rc = MXGW_OK;
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED && rc == MXGW_OK;
       s++) {
    if ((state && s != state) || !op_applies(op, s))
      continue;
    char **ids;
    size_t n;
    if ((rc = mxgw__queue_list_ids(q, s, &ids, &n)) != MXGW_OK)
      break;
    for (size_t i = 0; i < n; i++) {
      int r = apply(q, op, s, ids[i]);
      if (r == MXGW_OK)
        count++;
      else if (r != MXGW_E_NOTFOUND) {
        rc = r;
        break;
      }
    }
    mxgw__queue_free_ids(ids, n);
  }
  mxgw__queue_admin_unlock(q);
  return rc == MXGW_OK ? count : rc;
}
