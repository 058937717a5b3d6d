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

typedef struct mxgw__jseg mxgw__jseg;
typedef struct mxgw__jmsg mxgw__jmsg;

struct mxgw_queue_msg {
  mxgw_queue *q;
  int jmode;       /* journal: the body is in jbody, no file yet */
  int jwanted;     /* counted in q->jpending */
  unsigned char *jbody;
  size_t jcap;
  unsigned char jhdr[64];
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
  /* in the journal: the body is e->size octets at jbody_off in segment
   * jseq; jref is the index node when this entry was taken (owner) */
  int in_journal;
  uint64_t jseq;
  int64_t jbody_off;
  mxgw__jmsg *jref;
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
  /* take(): the earliest next attempt in deferred/ as of the last scan
   * (dnext_at: when; 0 = unknown), so that take() does not read every
   * deferred message's metadata while none is due; and a turn counter
   * that lets incoming/ and deferred/ go first now and then, so neither
   * starves behind a journal that is never empty under load */
  int64_t dnext, dnext_at;
  unsigned take_turn;
  /* the journal (mxgw_queue_journal.c): options, segments oldest first
   * (the last is the current one), the index of its messages (incoming,
   * then active, each in commit order); all under jlock */
  int journal;
  int64_t jmax_body, jseg_max, jmax_msgs;
  int jdirfd;
  pthread_mutex_t jlock;
  mxgw__jseg *jsegs, *jtail_seg;
  int64_t jnsegs;
  uint64_t jnext_seq;
  mxgw__jmsg *jin, *jin_tail, *jact, *jact_tail;
  int64_t jcount, jpending;
  atomic_llong st_jcommits, st_jspills, st_jrecovered, st_jtorn;
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
int mxgw__queue_ids_push(char ***v, size_t *n, size_t *cap, const char *s);

/* mxgw_queue_meta.c */
json_t *mxgw__queue_meta_new(const char *id);
int mxgw__queue_meta_check(json_t *meta);
int mxgw__queue_load_at(mxgw_queue *q, int state, const char *id,
                        mxgw_queue_entry **out);
int mxgw__queue_entry_new(mxgw_queue *q, int state, const char *id,
                          const char *text, size_t len,
                          mxgw_queue_entry **out);
int mxgw__queue_move(mxgw_queue *q, const char *id, int from, int to,
                     int sync);
void mxgw__queue_deferred_at(mxgw_queue *q, int64_t at);

/* mxgw_queue_journal.c */
/* whether take() may find more now (1 when it cannot be known cheaply) */
int mxgw__queue_more_due(mxgw_queue *q);
int mxgw__journal_open(mxgw_queue *q);
void mxgw__journal_close(mxgw_queue *q);
int mxgw__journal_wants(mxgw_queue *q);
void mxgw__journal_unwant(mxgw_queue *q);
void mxgw__journal_msg_header(mxgw_queue_msg *m);
void mxgw__journal_commit(mxgw_queue *q, mxgw_queue_msg **v, size_t n);
int mxgw__journal_take(mxgw_queue *q, mxgw_queue_entry **out);
int mxgw__journal_finish(mxgw_queue *q, mxgw_queue_entry *e, int to);
int mxgw__journal_body(const mxgw_queue_entry *e, int *fd, int64_t *off,
                       int64_t *len);
int mxgw__journal_ids(mxgw_queue *q, int state, char ***ids, size_t *n);
int mxgw__journal_load(mxgw_queue *q, int state, const char *id,
                       mxgw_queue_entry **out);
/* a non-owner's one reading of the segments, for iteration */
typedef struct mxgw__jsnap mxgw__jsnap;
int mxgw__journal_snap(mxgw_queue *q, mxgw__jsnap **out, char ***ids,
                       size_t *n);
int mxgw__journal_snap_load(mxgw_queue *q, mxgw__jsnap *sn, const char *id,
                            mxgw_queue_entry **out);
void mxgw__journal_snap_free(mxgw__jsnap *sn);

#endif /* MXGW_QUEUE_INT_H */
