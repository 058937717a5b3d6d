/* SPDX-License-Identifier: MIT */
/*
 * mxgw_queue_int.h: internals shared by the durable queue's modules:
 * mxgw_queue.c (spool directories, commit and group commit, recovery) and
 * mxgw_queue_meta.c (metadata JSON, entries, delivery moves, listing and
 * operator actions).
 */
#ifndef MXGW_QUEUE_INT_H
#define MXGW_QUEUE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <jansson.h>

#include "mxgw/mxgw_queue.h"
#include "mxgw_int.h"

#define MXGW_QID_MAX 32 /* with NUL */
#define MXGW_QSTATE_MAX 6 /* highest mxgw_queue_state */
#define MXGW_QBUF 65536   /* body write buffer */

struct mxgw_queue_msg {
  mxgw_queue *q;
  char id[MXGW_QID_MAX];
  int fd;          /* tmp/<id>, -1 once closed */
  int failed;      /* a write failed: only free is allowed */
  int status;      /* result of the commit */
  int done;        /* group commit finished for this message */
  int renamed;     /* 1 body moved, 2 body and metadata moved */
  uint64_t tag;
  uint64_t size;
  json_t *meta;    /* envelope */
  char *metatext;  /* serialised metadata, written at commit */
  size_t buflen;
  struct mxgw_queue_msg *next;
  unsigned char buf[MXGW_QBUF];
};

struct mxgw_queue_entry {
  mxgw_queue *q;
  char id[MXGW_QID_MAX];
  int state;
  int64_t size;
  json_t *meta;
  char *json;      /* mxgw_queue_entry_json() */
  char *jtext[2];  /* TLS and SPF JSON as text (get_str) */
  char *body_path;
};

struct mxgw_queue {
  mxgw_mem mem;
  char *dir;
  int opened;
  /* options */
  int create, owner, workers, sync;
  int64_t max_batch;
  /* file descriptors */
  int rootfd, lockfd, tmpfd, evfd;
  int statefd[MXGW_QSTATE_MAX + 1]; /* index = mxgw_queue_state */
  /* ID generation */
  pthread_mutex_t idlock;
  uint32_t idcounter;
  /* group commit */
  pthread_mutex_t lock;
  pthread_cond_t cond;      /* committers wait for their batch */
  pthread_cond_t work;      /* async workers wait for messages */
  int leader;               /* a batch is being committed */
  mxgw_queue_msg *ready;    /* file stage done, waiting for a batch */
  mxgw_queue_msg **ready_tail;
  mxgw_queue_msg *pending;  /* async: waiting for a worker */
  mxgw_queue_msg **pending_tail;
  int stopping;
  pthread_t *threads;
  int nthreads;
  mxgw_queue_done *done;    /* async results to collect */
  size_t ndone, capdone;
  /* operator actions: in-process mutex + flock(DIR/manage.lock) */
  pthread_mutex_t admin;
  int adminfd;
  /* take() cursor over one sorted listing of incoming/ (admin lock held):
   * taken in order, re-listed only when used up, so that taking N messages
   * reads the directory about once instead of N times */
  char **take_ids;
  size_t take_n, take_pos;
  /* counters */
  atomic_llong st_commits, st_commit_errors, st_file_syncs, st_dir_syncs,
      st_batches, st_recovered_active, st_quarantined, st_orphans,
      st_recovered;
};

/* mxgw_queue.c */
int mxgw__queue_errno(int e);
int mxgw__queue_dirsync(mxgw_queue *q, int dirfd);
int mxgw__queue_filesync(mxgw_queue *q, int fd);
int mxgw__queue_write_file(mxgw_queue *q, int dirfd, const char *name,
                           const char *data, size_t len);
int mxgw__queue_valid_id(const char *id);
int mxgw__queue_tmpname(mxgw_queue *q, const char *id, const char *suffix,
                        char *out, size_t cap);
void mxgw__queue_admin_lock(mxgw_queue *q);
void mxgw__queue_admin_unlock(mxgw_queue *q);
/* list IDs of messages (metadata files) in one state, sorted */
void mxgw__queue_take_reset(mxgw_queue *q);
int mxgw__queue_list_ids(mxgw_queue *q, int state, char ***ids, size_t *n);
void mxgw__queue_free_ids(char **ids, size_t n);

/* mxgw_queue_meta.c */
json_t *mxgw__queue_meta_new(const char *id);
int mxgw__queue_meta_check(json_t *meta);
int mxgw__queue_load_at(mxgw_queue *q, int state, const char *id,
                        mxgw_queue_entry **out);
int mxgw__queue_move(mxgw_queue *q, const char *id, int from, int to,
                     int sync);

#endif /* MXGW_QUEUE_INT_H */
