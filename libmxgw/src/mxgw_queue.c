/* SPDX-License-Identifier: MIT */
/*
 * mxgw_queue.c: the durable queue's spool and commit path. It creates the
 * spool directories, hands out unique queue IDs, streams message bodies into
 * tmp/, and commits them: file fsyncs (fdatasync) by the committing thread,
 * then the renames into incoming/ and ONE fsync of incoming/ for every
 * message that is ready at that moment (leader-based group commit, as in
 * database write-ahead logs). It also recovers the spool at open. The
 * durability argument is in docs/queue.md.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "mxgw_queue_int.h"

static const char *const state_dirs[MXGW_QSTATE_MAX + 1] = {
    NULL, "incoming", "active", "deferred", "hold", "failed", "corrupt"};

const char *mxgw_queue_state_name(int state) {
  if (state < 1 || state > MXGW_QSTATE_MAX)
    return NULL;
  return state_dirs[state];
}

int mxgw__queue_errno(int e) {
  switch (e) {
  case 0: return MXGW_OK;
  case ENOSPC:
  case EDQUOT: return MXGW_E_NOSPACE;
  case ENOENT: return MXGW_E_NOTFOUND;
  case EACCES:
  case EPERM:
  case EROFS: return MXGW_E_PERM;
  case ENOMEM: return MXGW_E_NOMEM;
  case EWOULDBLOCK: return MXGW_E_BUSY;
  default: return MXGW_E_IO;
  }
}

/* Files: fdatasync, not fsync. It flushes the data and every piece of
 * metadata needed to read it back (the size, the block map), which is all
 * that matters here; fsync would add the timestamps. */
int mxgw__queue_filesync(mxgw_queue *q, int fd) {
  if (!q->sync)
    return MXGW_OK;
  atomic_fetch_add(&q->st_file_syncs, 1);
  if (fdatasync(fd) != 0)
    return mxgw__queue_errno(errno);
  return MXGW_OK;
}

/* Directories: fsync makes the entries created or renamed in them durable
 * (POSIX leaves this to the application; ext4 and XFS need it). */
int mxgw__queue_dirsync(mxgw_queue *q, int dirfd) {
  if (!q->sync)
    return MXGW_OK;
  atomic_fetch_add(&q->st_dir_syncs, 1);
  if (fsync(dirfd) != 0)
    return mxgw__queue_errno(errno);
  return MXGW_OK;
}

static int write_all(int fd, const void *p, size_t len) {
  const char *c = p;
  while (len) {
    ssize_t n = write(fd, c, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return mxgw__queue_errno(errno);
    }
    if (n == 0)
      return MXGW_E_IO;
    c += n;
    len -= (size_t)n;
  }
  return MXGW_OK;
}

/* Create dirfd/name exclusively, write, fdatasync, close; removed on error. */
int mxgw__queue_write_file(mxgw_queue *q, int dirfd, const char *name,
                           const char *data, size_t len) {
  int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return mxgw__queue_errno(errno);
  int rc = write_all(fd, data, len);
  if (rc == MXGW_OK)
    rc = mxgw__queue_filesync(q, fd);
  if (close(fd) != 0 && rc == MXGW_OK)
    rc = mxgw__queue_errno(errno);
  if (rc != MXGW_OK)
    unlinkat(dirfd, name, 0);
  return rc;
}

int mxgw__queue_valid_id(const char *id) {
  size_t n = 0;
  if (!id)
    return 0;
  for (; id[n]; n++) {
    char c = id[n];
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
      return 0;
  }
  return n >= 8 && n < MXGW_QID_MAX;
}

/* Unique temporary names for metadata rewrites, also across processes. */
int mxgw__queue_tmpname(mxgw_queue *q, const char *id, const char *suffix,
                        char *out, size_t cap) {
  pthread_mutex_lock(&q->idlock);
  unsigned c = q->idcounter++;
  pthread_mutex_unlock(&q->idlock);
  int n = snprintf(out, cap, "%s%s.%ld.%u", id, suffix, (long)getpid(), c);
  return n > 0 && (size_t)n < cap ? MXGW_OK : MXGW_E_RANGE;
}

/* Queue ID: microseconds since the epoch (13 hex digits, so IDs sort by
 * arrival), a per-handle counter (4) and 24 random bits (6). The counter
 * separates IDs made in the same microsecond by one process, the random
 * part separates processes and restarts; O_EXCL in tmp/ catches the rest. */
static void make_id(mxgw_queue *q, char *out) {
  struct timespec ts;
  uint32_t rnd = 0;
  clock_gettime(CLOCK_REALTIME, &ts);
  unsigned long long us =
      (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u;
  if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
    rnd = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() * 2654435761u;
  pthread_mutex_lock(&q->idlock);
  unsigned c = q->idcounter++;
  pthread_mutex_unlock(&q->idlock);
  snprintf(out, MXGW_QID_MAX, "%013llX%04X%06X", us & 0xFFFFFFFFFFFFFull,
           c & 0xFFFFu, rnd & 0xFFFFFFu);
}

void mxgw__queue_admin_lock(mxgw_queue *q) {
  pthread_mutex_lock(&q->admin);
  while (flock(q->adminfd, LOCK_EX) != 0 && errno == EINTR)
    ;
}

void mxgw__queue_admin_unlock(mxgw_queue *q) {
  flock(q->adminfd, LOCK_UN);
  pthread_mutex_unlock(&q->admin);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append a copy of s to a growing list of names (free with
 * mxgw__queue_free_ids). */
int mxgw__queue_ids_push(char ***v, size_t *n, size_t *cap, const char *s) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    char **nv = realloc(*v, nc * sizeof *nv);
    if (!nv)
      return MXGW_E_NOMEM;
    *v = nv;
    *cap = nc;
  }
  if (!((*v)[*n] = strdup(s)))
    return MXGW_E_NOMEM;
  (*n)++;
  return MXGW_OK;
}

void mxgw__queue_free_ids(char **ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ids[i]);
  free(ids);
}

/* A stream over the entries of dirfd, on a descriptor of its own (dirfd
 * and its offset stay as they are); NULL with *rc set when that fails. */
static DIR *dir_stream(int dirfd, int *rc) {
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *rc = mxgw__queue_errno(errno);
    return NULL;
  }
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    *rc = mxgw__queue_errno(errno);
  }
  return d;
}

/* Names in a directory: with json=1 the IDs that have "<id>.json", with
 * json=0 the bare "<id>" body names, with json=2 every name that starts
 * with an ID (corrupt/: "<id>", "<id>.json", "<id>.N", "<id>.json.N").
 * Sorted. */
static int list_names(int dirfd, int json, char ***out, size_t *nout) {
  int rc = MXGW_OK;
  DIR *d = dir_stream(dirfd, &rc);
  if (!d)
    return rc;
  char **ids = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    char name[MXGW_QID_MAX + 8];
    size_t l = strlen(de->d_name);
    if (json == 2) {
      const char *dot = strchr(de->d_name, '.');
      size_t k = dot ? (size_t)(dot - de->d_name) : l;
      if (k >= MXGW_QID_MAX || l >= sizeof name)
        continue;
      memcpy(name, de->d_name, k);
      name[k] = '\0';
      if (!mxgw__queue_valid_id(name))
        continue;
      memcpy(name, de->d_name, l + 1); /* the whole entry name */
      goto add;
    }
    if (json) {
      if (l < 6 || l - 5 >= MXGW_QID_MAX || strcmp(de->d_name + l - 5, ".json"))
        continue;
      memcpy(name, de->d_name, l - 5);
      name[l - 5] = '\0';
    } else {
      if (l >= MXGW_QID_MAX)
        continue;
      memcpy(name, de->d_name, l + 1);
    }
    if (!mxgw__queue_valid_id(name))
      continue;
  add:
    if ((rc = mxgw__queue_ids_push(&ids, &n, &cap, name)) != MXGW_OK)
      break;
  }
  closedir(d);
  if (rc != MXGW_OK) {
    mxgw__queue_free_ids(ids, n);
    return rc;
  }
  if (n)
    qsort(ids, n, sizeof *ids, cmp_str);
  *out = ids;
  *nout = n;
  return MXGW_OK;
}

void mxgw__queue_take_reset(mxgw_queue *q) {
  mxgw__queue_free_ids(q->take_ids, q->take_n);
  q->take_ids = NULL;
  q->take_n = q->take_pos = 0;
}

int mxgw__queue_list_ids(mxgw_queue *q, int state, char ***ids, size_t *n) {
  if (state < 1 || state > MXGW_QSTATE_MAX)
    return MXGW_E_INVAL;
  /* corrupt/ holds lone bodies and lone metadata: list every entry */
  return list_names(q->statefd[state], state == MXGW_QSTATE_CORRUPT ? 2 : 1,
                    ids, n);
}

/* ------------------------------------------------------------------------ */
/* Handle                                                                   */
/* ------------------------------------------------------------------------ */

int mxgw_queue_new(mxgw_queue **out, const char *dir, const mxgw_mem *mem) {
  if (!out || !dir || !*dir)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_queue *q = mxgw__calloc(&m, 1, sizeof *q);
  if (!q)
    return MXGW_E_NOMEM;
  q->mem = m;
  if (!(q->dir = mxgw__strdup(&m, dir))) {
    mxgw__free(&m, q);
    return MXGW_E_NOMEM;
  }
  q->create = 1;
  q->owner = 1;
  q->workers = 4;
  q->sync = 1;
  q->max_batch = 1024;
  q->jmax_body = 1 << 20;
  q->jseg_max = 32 << 20;
  q->jmax_msgs = 100000;
  q->rootfd = q->lockfd = q->tmpfd = q->evfd = q->adminfd = q->jdirfd = -1;
  for (int i = 0; i <= MXGW_QSTATE_MAX; i++)
    q->statefd[i] = -1;
  pthread_mutex_init(&q->idlock, NULL);
  pthread_mutex_init(&q->lock, NULL);
  pthread_mutex_init(&q->admin, NULL);
  pthread_mutex_init(&q->jlock, NULL);
  pthread_cond_init(&q->cond, NULL);
  pthread_cond_init(&q->work, NULL);
  q->ready_tail = &q->ready;
  q->pending_tail = &q->pending;
  *out = q;
  return MXGW_OK;
}

int mxgw_queue_set_int(mxgw_queue *q, int key, int64_t v) {
  if (!q)
    return MXGW_E_INVAL;
  if (q->opened)
    return MXGW_E_BUSY;
  switch (key) {
  case MXGW_QOPT_CREATE:
  case MXGW_QOPT_OWNER:
  case MXGW_QOPT_SYNC:
  case MXGW_QOPT_JOURNAL:
    if (v != 0 && v != 1)
      return MXGW_E_RANGE;
    if (key == MXGW_QOPT_CREATE) q->create = (int)v;
    else if (key == MXGW_QOPT_OWNER) q->owner = (int)v;
    else if (key == MXGW_QOPT_JOURNAL) q->journal = (int)v;
    else q->sync = (int)v;
    return MXGW_OK;
  case MXGW_QOPT_JOURNAL_MAX_BODY:
    if (v < 1024 || v > (64 << 20))
      return MXGW_E_RANGE;
    q->jmax_body = v;
    return MXGW_OK;
  case MXGW_QOPT_JOURNAL_SEGMENT:
    if (v < (64 << 10) || v > (1 << 30))
      return MXGW_E_RANGE;
    q->jseg_max = v;
    return MXGW_OK;
  case MXGW_QOPT_JOURNAL_MAX_MSGS:
    if (v < 1 || v > 10000000)
      return MXGW_E_RANGE;
    q->jmax_msgs = v;
    return MXGW_OK;
  case MXGW_QOPT_ASYNC_WORKERS:
    if (v < 0 || v > 256)
      return MXGW_E_RANGE;
    q->workers = (int)v;
    return MXGW_OK;
  case MXGW_QOPT_MAX_BATCH:
    if (v < 1 || v > 1000000)
      return MXGW_E_RANGE;
    q->max_batch = v;
    return MXGW_OK;
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_queue_get_int(mxgw_queue *q, int key, int64_t *out) {
  if (!q || !out)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_QOPT_CREATE: *out = q->create; break;
  case MXGW_QOPT_OWNER: *out = q->owner; break;
  case MXGW_QOPT_ASYNC_WORKERS: *out = q->workers; break;
  case MXGW_QOPT_MAX_BATCH: *out = q->max_batch; break;
  case MXGW_QOPT_SYNC: *out = q->sync; break;
  case MXGW_QOPT_JOURNAL: *out = q->journal; break;
  case MXGW_QOPT_JOURNAL_MAX_BODY: *out = q->jmax_body; break;
  case MXGW_QOPT_JOURNAL_SEGMENT: *out = q->jseg_max; break;
  case MXGW_QOPT_JOURNAL_MAX_MSGS: *out = q->jmax_msgs; break;
  case MXGW_QSTAT_JOURNAL_COMMITS: *out = atomic_load(&q->st_jcommits); break;
  case MXGW_QSTAT_JOURNAL_SPILLS: *out = atomic_load(&q->st_jspills); break;
  case MXGW_QSTAT_JOURNAL_RECOVERED: *out = atomic_load(&q->st_jrecovered); break;
  case MXGW_QSTAT_JOURNAL_TORN: *out = atomic_load(&q->st_jtorn); break;
  case MXGW_QSTAT_JOURNAL_MESSAGES:
  case MXGW_QSTAT_JOURNAL_SEGMENTS:
    pthread_mutex_lock(&q->jlock);
    *out = key == MXGW_QSTAT_JOURNAL_MESSAGES ? q->jcount : q->jnsegs;
    pthread_mutex_unlock(&q->jlock);
    break;
  case MXGW_QSTAT_COMMITS: *out = atomic_load(&q->st_commits); break;
  case MXGW_QSTAT_COMMIT_ERRORS: *out = atomic_load(&q->st_commit_errors); break;
  case MXGW_QSTAT_FILE_SYNCS: *out = atomic_load(&q->st_file_syncs); break;
  case MXGW_QSTAT_DIR_SYNCS: *out = atomic_load(&q->st_dir_syncs); break;
  case MXGW_QSTAT_BATCHES: *out = atomic_load(&q->st_batches); break;
  case MXGW_QSTAT_RECOVERED_ACTIVE: *out = atomic_load(&q->st_recovered_active); break;
  case MXGW_QSTAT_QUARANTINED: *out = atomic_load(&q->st_quarantined); break;
  case MXGW_QSTAT_ORPHANS_REMOVED: *out = atomic_load(&q->st_orphans); break;
  case MXGW_QSTAT_RECOVERED: *out = atomic_load(&q->st_recovered); break;
  default: return MXGW_E_INVAL;
  }
  return MXGW_OK;
}

static int open_dir(mxgw_queue *q, int parent, const char *name, int *fd) {
  if (q->create && mkdirat(parent, name, 0700) != 0 && errno != EEXIST)
    return mxgw__queue_errno(errno);
  *fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return *fd < 0 ? mxgw__queue_errno(errno) : MXGW_OK;
}

static void *worker_main(void *arg);
static int recover(mxgw_queue *q);

/* Undoes what mxgw_queue_open() set up, as far as it got: stops and joins
 * the workers, closes the journal and every descriptor (set to -1). For a
 * failed opening and for mxgw_queue_free(). */
static void teardown(mxgw_queue *q) {
  pthread_mutex_lock(&q->lock);
  q->stopping = 1;
  pthread_cond_broadcast(&q->work);
  pthread_mutex_unlock(&q->lock);
  for (int i = 0; i < q->nthreads; i++)
    pthread_join(q->threads[i], NULL);
  q->nthreads = 0;
  q->stopping = 0;
  mxgw__journal_close(q);
  for (int i = 0; i <= MXGW_QSTATE_MAX; i++)
    if (q->statefd[i] >= 0) {
      close(q->statefd[i]);
      q->statefd[i] = -1;
    }
  int *fds[] = {&q->rootfd, &q->tmpfd, &q->lockfd, &q->adminfd, &q->evfd};
  for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
    if (*fds[i] >= 0) {
      close(*fds[i]);
      *fds[i] = -1;
    }
  mxgw__free(&q->mem, q->threads);
  q->threads = NULL;
}

int mxgw_queue_open(mxgw_queue *q) {
  if (!q)
    return MXGW_E_INVAL;
  if (q->opened)
    return MXGW_E_STATE;
  int rc;
  if (q->create && mkdir(q->dir, 0700) != 0 && errno != EEXIST)
    return mxgw__queue_errno(errno);
  q->rootfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (q->rootfd < 0)
    return mxgw__queue_errno(errno);
  if ((rc = open_dir(q, q->rootfd, "tmp", &q->tmpfd)) != MXGW_OK)
    goto fail;
  for (int s = 1; s <= MXGW_QSTATE_MAX; s++)
    if ((rc = open_dir(q, q->rootfd, state_dirs[s], &q->statefd[s])) != MXGW_OK)
      goto fail;
  q->adminfd = openat(q->rootfd, "manage.lock",
                      O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (q->adminfd < 0) {
    rc = mxgw__queue_errno(errno);
    goto fail;
  }
  if (q->create && (rc = mxgw__queue_dirsync(q, q->rootfd)) != MXGW_OK)
    goto fail;
  if (q->owner) {
    q->lockfd = openat(q->rootfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (q->lockfd < 0) {
      rc = mxgw__queue_errno(errno);
      goto fail;
    }
    if (flock(q->lockfd, LOCK_EX | LOCK_NB) != 0) {
      rc = errno == EWOULDBLOCK ? MXGW_E_BUSY : mxgw__queue_errno(errno);
      goto fail;
    }
    if ((rc = recover(q)) != MXGW_OK)
      goto fail;
  }
  /* the journal: recovered into incoming/ by the owner (also when this
   * opening does not use it), listed by anyone else */
  if ((rc = mxgw__journal_open(q)) != MXGW_OK)
    goto fail;
  if (q->workers > 0) {
    q->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->evfd < 0) {
      rc = mxgw__queue_errno(errno);
      goto fail;
    }
    q->threads = mxgw__calloc(&q->mem, (size_t)q->workers, sizeof(pthread_t));
    if (!q->threads) {
      rc = MXGW_E_NOMEM;
      goto fail;
    }
    for (int i = 0; i < q->workers; i++) {
      if (pthread_create(&q->threads[i], NULL, worker_main, q) != 0) {
        rc = MXGW_E_NOMEM;
        goto fail;
      }
      q->nthreads++;
    }
  }
  q->opened = 1;
  return MXGW_OK;
fail:
  q->opened = 1; /* let free() tear down */
  teardown(q);
  q->opened = 0;
  return rc;
}

void mxgw_queue_free(mxgw_queue *q) {
  if (!q)
    return;
  teardown(q);
  mxgw__queue_take_reset(q);
  pthread_mutex_destroy(&q->idlock);
  pthread_mutex_destroy(&q->lock);
  pthread_mutex_destroy(&q->admin);
  pthread_mutex_destroy(&q->jlock);
  pthread_cond_destroy(&q->cond);
  pthread_cond_destroy(&q->work);
  mxgw__free(&q->mem, q->done);
  mxgw__free(&q->mem, q->dir);
  mxgw_mem m = q->mem;
  mxgw__free(&m, q);
}

int mxgw_queue_count(mxgw_queue *q, int state) {
  if (!q || state < 1 || state > MXGW_QSTATE_MAX)
    return MXGW_E_INVAL;
  if (!q->opened)
    return MXGW_E_STATE;
  char **ids, **jids;
  size_t n, jn;
  int rc = mxgw__queue_list_ids(q, state, &ids, &n);
  if (rc != MXGW_OK)
    return rc;
  mxgw__queue_free_ids(ids, n);
  if ((rc = mxgw__journal_ids(q, state, &jids, &jn)) != MXGW_OK)
    return rc;
  mxgw__queue_free_ids(jids, jn);
  n += jn;
  return n > INT_MAX ? INT_MAX : (int)n;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */
/* ------------------------------------------------------------------------ */

int mxgw_queue_begin(mxgw_queue *q, mxgw_queue_msg **out) {
  if (!q || !out)
    return MXGW_E_INVAL;
  *out = NULL;
  if (!q->opened)
    return MXGW_E_STATE;
  mxgw_queue_msg *m = mxgw__calloc(&q->mem, 1, sizeof *m);
  if (!m)
    return MXGW_E_NOMEM;
  m->q = q;
  m->fd = -1;
  if (q->journal && q->owner) {
    /* the body stays in memory until the commit appends it to the journal
     * (or goes to a file once it outgrows MXGW_QOPT_JOURNAL_MAX_BODY) */
    make_id(q, m->id);
    if (!(m->meta = mxgw__queue_meta_new(m->id))) {
      mxgw__free(&q->mem, m);
      return MXGW_E_NOMEM;
    }
    m->jmode = 1;
    *out = m;
    return MXGW_OK;
  }
  for (int tries = 0; tries < 16; tries++) {
    make_id(q, m->id);
    m->fd = openat(q->tmpfd, m->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                   0600);
    if (m->fd >= 0 || errno != EEXIST)
      break;
  }
  if (m->fd < 0) {
    int rc = mxgw__queue_errno(errno);
    mxgw__free(&q->mem, m);
    return rc;
  }
  if (!(m->meta = mxgw__queue_meta_new(m->id))) {
    close(m->fd);
    unlinkat(q->tmpfd, m->id, 0);
    mxgw__free(&q->mem, m);
    return MXGW_E_NOMEM;
  }
  *out = m;
  return MXGW_OK;
}

static int flush_buf(mxgw_queue_msg *m) {
  if (!m->buflen)
    return MXGW_OK;
  int rc = write_all(m->fd, m->buf, m->buflen);
  m->buflen = 0;
  return rc;
}

/* A journal message becomes a file message: tmp/<id> with the body so far. */
static int to_file(mxgw_queue_msg *m) {
  mxgw_queue *q = m->q;
  m->fd = openat(q->tmpfd, m->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                 0600);
  if (m->fd < 0)
    return mxgw__queue_errno(errno);
  m->jmode = 0;
  int rc = m->size ? write_all(m->fd, m->jbody, (size_t)m->size) : MXGW_OK;
  mxgw__free(&q->mem, m->jbody);
  m->jbody = NULL;
  m->jcap = 0;
  return rc;
}

static int journal_append(mxgw_queue_msg *m, const void *buf, size_t len) {
  size_t need = (size_t)m->size + len;
  if (need > m->jcap) {
    size_t nc = m->jcap ? m->jcap : 16384;
    while (nc < need)
      nc *= 2;
    if (nc > (size_t)m->q->jmax_body)
      nc = (size_t)m->q->jmax_body;
    unsigned char *nb = mxgw__realloc(&m->q->mem, m->jbody, nc);
    if (!nb)
      return MXGW_E_NOMEM;
    m->jbody = nb;
    m->jcap = nc;
  }
  if (len)
    memcpy(m->jbody + m->size, buf, len);
  m->size += len;
  return MXGW_OK;
}

int mxgw_queue_write(mxgw_queue_msg *m, const void *buf, size_t len) {
  if (!m || (!buf && len))
    return MXGW_E_INVAL;
  if (m->failed || (m->fd < 0 && !m->jmode))
    return MXGW_E_STATE;
  int rc = MXGW_OK;
  if (m->jmode) {
    if (m->size + len <= (uint64_t)m->q->jmax_body) {
      if ((rc = journal_append(m, buf, len)) != MXGW_OK)
        m->failed = rc;
      return rc;
    }
    if ((rc = to_file(m)) != MXGW_OK) {
      m->failed = rc;
      return rc;
    }
  }
  if (m->buflen + len <= sizeof m->buf) {
    memcpy(m->buf + m->buflen, buf, len);
    m->buflen += len;
  } else if ((rc = flush_buf(m)) == MXGW_OK) {
    if (len >= sizeof m->buf) {
      rc = write_all(m->fd, buf, len);
    } else {
      memcpy(m->buf, buf, len);
      m->buflen = len;
    }
  }
  if (rc != MXGW_OK)
    m->failed = rc;
  else
    m->size += len;
  return rc;
}

int mxgw_queue_msg_id(const mxgw_queue_msg *m, const char **ptr, size_t *len) {
  if (!m || !ptr)
    return MXGW_E_INVAL;
  *ptr = m->id;
  if (len)
    *len = strlen(m->id);
  return MXGW_OK;
}

/* Remove whatever of the message exists (tmp/ and, if renamed, incoming/). */
static void discard(mxgw_queue_msg *m) {
  mxgw_queue *q = m->q;
  if (m->jwanted) {
    mxgw__journal_unwant(q);
    m->jwanted = 0;
  }
  if (m->jmode)
    return; /* nothing of it is on disk */
  char name[MXGW_QID_MAX + 8];
  snprintf(name, sizeof name, "%s.json", m->id);
  if (m->fd >= 0) {
    close(m->fd);
    m->fd = -1;
  }
  int inc = q->statefd[MXGW_QSTATE_INCOMING];
  if (m->renamed >= 2)
    unlinkat(inc, name, 0);
  else
    unlinkat(q->tmpfd, name, 0);
  if (m->renamed >= 1)
    unlinkat(inc, m->id, 0);
  else
    unlinkat(q->tmpfd, m->id, 0);
}

static void msg_destroy(mxgw_queue_msg *m) {
  mxgw__free(&m->q->mem, m->jbody);
  json_decref(m->meta);
  free(m->metatext);
  mxgw__free(&m->q->mem, m);
}

void mxgw_queue_msg_free(mxgw_queue_msg *m) {
  if (!m)
    return;
  discard(m);
  msg_destroy(m);
}

/* File stage, in the committer's thread (or an async worker): body and
 * metadata written and fdatasync'ed in tmp/. Many of these run in
 * parallel; the file system merges their journal commits. */
static int file_stage(mxgw_queue_msg *m) {
  mxgw_queue *q = m->q;
  if (m->failed)
    return MXGW_E_STATE;
  if (mxgw__queue_meta_check(m->meta) != MXGW_OK)
    return MXGW_E_STATE;
  int rc = MXGW_OK;
  if (m->jmode) {
    if (mxgw__journal_wants(q))
      m->jwanted = 1;
    else if ((rc = to_file(m)) != MXGW_OK) /* the journal is full */
      return rc;
  }
  if (!m->jmode) {
    rc = flush_buf(m);
    if (rc == MXGW_OK)
      rc = mxgw__queue_filesync(q, m->fd);
    if (close(m->fd) != 0 && rc == MXGW_OK)
      rc = mxgw__queue_errno(errno);
    m->fd = -1;
    if (rc != MXGW_OK)
      return rc;
  }
  json_object_set_new(m->meta, "size", json_integer((json_int_t)m->size));
  if (!json_is_integer(json_object_get(m->meta, "arrival")))
    json_object_set_new(m->meta, "arrival", json_integer((json_int_t)time(NULL)));
  m->metatext = json_dumps(m->meta, JSON_COMPACT);
  if (!m->metatext)
    return MXGW_E_NOMEM;
  if (m->jmode) { /* the record's header (and CRC) here, in parallel */
    mxgw__journal_msg_header(m);
    return MXGW_OK;
  }
  char name[MXGW_QID_MAX + 8];
  snprintf(name, sizeof name, "%s.json", m->id);
  rc = mxgw__queue_write_file(q, q->tmpfd, name, m->metatext,
                              strlen(m->metatext));
  return rc;
}

/* Group stage for a batch (the leader, lock not held): rename every body,
 * then every metadata file, into incoming/, and fsync incoming/ once. The
 * metadata rename is each message's commit point; the directory fsync makes
 * all of them durable at once. */
static void commit_batch(mxgw_queue *q, mxgw_queue_msg *batch) {
  int inc = q->statefd[MXGW_QSTATE_INCOMING];
  int any = 0;
  char name[MXGW_QID_MAX + 8];
  /* journal messages: one append and one fdatasync for all of them */
  size_t nj = 0;
  for (mxgw_queue_msg *m = batch; m; m = m->next)
    nj += m->jmode && m->status == MXGW_OK;
  if (nj) {
    mxgw_queue_msg *one[64];
    mxgw_queue_msg **v = nj <= 64 ? one
                                  : mxgw__calloc(&q->mem, nj, sizeof *v);
    size_t k = 0;
    for (mxgw_queue_msg *m = batch; m; m = m->next)
      if (m->jmode && m->status == MXGW_OK) {
        if (v)
          v[k++] = m;
        else
          m->status = MXGW_E_NOMEM;
      }
    if (v) {
      mxgw__journal_commit(q, v, k);
      for (size_t i = 0; i < k; i++)
        v[i]->jwanted = 0; /* journal_commit settled the count */
      atomic_fetch_add(&q->st_batches, 1);
    }
    if (v != one)
      mxgw__free(&q->mem, v);
  }
  for (mxgw_queue_msg *m = batch; m; m = m->next) {
    if (m->status != MXGW_OK || m->jmode)
      continue;
    if (renameat(q->tmpfd, m->id, inc, m->id) != 0) {
      m->status = mxgw__queue_errno(errno);
      continue;
    }
    m->renamed = 1;
  }
  for (mxgw_queue_msg *m = batch; m; m = m->next) {
    if (m->status != MXGW_OK || m->jmode)
      continue;
    snprintf(name, sizeof name, "%s.json", m->id);
    if (renameat(q->tmpfd, name, inc, name) != 0) {
      m->status = mxgw__queue_errno(errno);
      continue;
    }
    m->renamed = 2;
    any = 1;
  }
  if (any) {
    atomic_fetch_add(&q->st_batches, 1);
    int rc = mxgw__queue_dirsync(q, inc);
    if (rc != MXGW_OK) /* nothing of this batch may be called committed */
      for (mxgw_queue_msg *m = batch; m; m = m->next)
        if (m->status == MXGW_OK && !m->jmode)
          m->status = rc;
  }
  for (mxgw_queue_msg *m = batch; m; m = m->next) {
    if (m->status != MXGW_OK)
      discard(m);
  }
}

/* Join the group commit: wait until our message is in a committed batch,
 * committing batches ourselves whenever no one else is. */
/* Join the group commit with v[0..n-1] (file stage done): wait until all
 * of them are in committed batches, committing batches ourselves whenever
 * no one else is. Batches are taken from the front of the ready list, so
 * once the last of ours is done, all of ours are. */
static void group_commit_list(mxgw_queue *q, mxgw_queue_msg **v, size_t n) {
  pthread_mutex_lock(&q->lock);
  for (size_t i = 0; i < n; i++) {
    v[i]->next = NULL;
    *q->ready_tail = v[i];
    q->ready_tail = &v[i]->next;
  }
  while (!v[n - 1]->done) {
    if (!q->leader && q->ready) {
      q->leader = 1;
      /* take up to max_batch messages */
      mxgw_queue_msg *batch = q->ready, *last = batch;
      int64_t k = 1;
      while (last->next && k < q->max_batch) {
        last = last->next;
        k++;
      }
      q->ready = last->next;
      if (!q->ready)
        q->ready_tail = &q->ready;
      last->next = NULL;
      pthread_mutex_unlock(&q->lock);
      commit_batch(q, batch);
      pthread_mutex_lock(&q->lock);
      for (mxgw_queue_msg *b = batch; b; b = b->next)
        b->done = 1;
      q->leader = 0;
      pthread_cond_broadcast(&q->cond);
    } else {
      pthread_cond_wait(&q->cond, &q->lock);
    }
  }
  pthread_mutex_unlock(&q->lock);
  for (size_t i = 0; i < n; i++)
    atomic_fetch_add(v[i]->status == MXGW_OK ? &q->st_commits
                                             : &q->st_commit_errors,
                     1);
}

static int group_commit(mxgw_queue_msg *m) {
  group_commit_list(m->q, &m, 1);
  return m->status;
}

static int commit_one(mxgw_queue_msg *m) {
  int rc = file_stage(m);
  if (rc != MXGW_OK) {
    discard(m);
    atomic_fetch_add(&m->q->st_commit_errors, 1);
    return rc;
  }
  m->status = MXGW_OK;
  m->done = 0;
  return group_commit(m);
}

int mxgw_queue_commit(mxgw_queue_msg *m) {
  if (!m)
    return MXGW_E_INVAL;
  int rc = commit_one(m);
  msg_destroy(m);
  return rc;
}

static void push_done(mxgw_queue *q, mxgw_queue_msg *m, int rc) {
  pthread_mutex_lock(&q->lock);
  if (q->ndone == q->capdone) {
    size_t nc = q->capdone ? q->capdone * 2 : 64;
    mxgw_queue_done *nd = mxgw__realloc(&q->mem, q->done, nc * sizeof *nd);
    if (!nd) { /* cannot report: keep the slot count; status lost is
                  impossible to signal, so block until memory (rare) */
      pthread_mutex_unlock(&q->lock);
      usleep(1000);
      push_done(q, m, rc);
      return;
    }
    q->done = nd;
    q->capdone = nc;
  }
  mxgw_queue_done *d = &q->done[q->ndone++];
  memset(d, 0, sizeof *d);
  d->tag = m->tag;
  d->status = rc;
  memcpy(d->id, m->id, sizeof d->id);
  pthread_mutex_unlock(&q->lock);
  uint64_t one = 1;
  ssize_t w = write(q->evfd, &one, sizeof one);
  (void)w;
}

static void *worker_main(void *arg) {
  mxgw_queue *q = arg;
  for (;;) {
    pthread_mutex_lock(&q->lock);
    while (!q->pending && !q->stopping)
      pthread_cond_wait(&q->work, &q->lock);
    mxgw_queue_msg *m = q->pending;
    if (!m) { /* stopping and nothing left */
      pthread_mutex_unlock(&q->lock);
      return NULL;
    }
    q->pending = m->next;
    /* journal messages: every one waiting now goes in with this one, so a
     * batch is not limited to the number of workers */
    mxgw_queue_msg *v[256];
    size_t n = 0;
    v[n++] = m;
    while (m->jmode && n < sizeof v / sizeof *v && q->pending &&
           q->pending->jmode) {
      v[n++] = q->pending;
      q->pending = q->pending->next;
    }
    if (!q->pending)
      q->pending_tail = &q->pending;
    pthread_mutex_unlock(&q->lock);
    if (n == 1) {
      int rc = commit_one(m);
      push_done(q, m, rc);
      msg_destroy(m);
      continue;
    }
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
      int rc = file_stage(v[i]);
      if (rc != MXGW_OK) {
        discard(v[i]);
        atomic_fetch_add(&q->st_commit_errors, 1);
        push_done(q, v[i], rc);
        msg_destroy(v[i]);
        continue;
      }
      v[i]->status = MXGW_OK;
      v[i]->done = 0;
      v[ok++] = v[i];
    }
    if (ok)
      group_commit_list(q, v, ok);
    for (size_t i = 0; i < ok; i++) {
      push_done(q, v[i], v[i]->status);
      msg_destroy(v[i]);
    }
  }
}

int mxgw_queue_commit_async(mxgw_queue_msg *m, uint64_t tag) {
  if (!m)
    return MXGW_E_INVAL;
  mxgw_queue *q = m->q;
  if (q->nthreads == 0) {
    mxgw_queue_msg_free(m);
    return MXGW_E_UNSUPPORTED;
  }
  /* What the worker would refuse is refused here, as documented: no
   * recipient, or an earlier write failed (then no completion follows). */
  if (m->failed || mxgw__queue_meta_check(m->meta) != MXGW_OK) {
    mxgw_queue_msg_free(m);
    return MXGW_E_STATE;
  }
  m->tag = tag;
  m->next = NULL;
  pthread_mutex_lock(&q->lock);
  *q->pending_tail = m;
  q->pending_tail = &m->next;
  pthread_cond_signal(&q->work);
  pthread_mutex_unlock(&q->lock);
  return MXGW_OK;
}

int mxgw_queue_eventfd(mxgw_queue *q) { return q ? q->evfd : -1; }

int mxgw_queue_completed(mxgw_queue *q, mxgw_queue_done *out, size_t max) {
  if (!q || (!out && max))
    return MXGW_E_INVAL;
  if (q->evfd >= 0) {
    uint64_t v;
    ssize_t r = read(q->evfd, &v, sizeof v); /* reset; re-armed below */
    (void)r;
  }
  pthread_mutex_lock(&q->lock);
  size_t n = q->ndone < max ? q->ndone : max;
  if (n > INT_MAX)
    n = INT_MAX;
  memcpy(out, q->done, n * sizeof *out);
  memmove(q->done, q->done + n, (q->ndone - n) * sizeof *q->done);
  q->ndone -= n;
  int more = q->ndone > 0;
  pthread_mutex_unlock(&q->lock);
  if (more) {
    uint64_t one = 1;
    ssize_t w = write(q->evfd, &one, sizeof one);
    (void)w;
  }
  return (int)n;
}

/* ------------------------------------------------------------------------ */
/* Recovery                                                                 */
/* ------------------------------------------------------------------------ */

static int exists_at(int dirfd, const char *name) {
  struct stat st;
  return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Move dirfd/name to corrupt/, never overwriting an earlier one. */
static int quarantine(mxgw_queue *q, int dirfd, const char *name) {
  char dst[MXGW_QID_MAX + 32];
  int cfd = q->statefd[MXGW_QSTATE_CORRUPT];
  snprintf(dst, sizeof dst, "%s", name);
  for (int i = 1; exists_at(cfd, dst) && i < 1000; i++)
    snprintf(dst, sizeof dst, "%s.%d", name, i);
  if (renameat(dirfd, name, cfd, dst) != 0)
    return mxgw__queue_errno(errno);
  atomic_fetch_add(&q->st_quarantined, 1);
  return MXGW_OK;
}

static int find_body(mxgw_queue *q, const char *id) {
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED; s++)
    if (exists_at(q->statefd[s], id))
      return s;
  return 0;
}

/* tmp/ entries that say how a lone body came about: "<id>.json" (a commit
 * interrupted between its two renames: it never returned OK) or
 * "<id>.json.del.*" (a removal interrupted between its two renames). */
static int tmp_explains(char **tmpnames, size_t ntmp, const char *id) {
  size_t l = strlen(id);
  for (size_t i = 0; i < ntmp; i++)
    if (!strncmp(tmpnames[i], id, l) &&
        (!strcmp(tmpnames[i] + l, ".json") ||
         !strncmp(tmpnames[i] + l, ".json.del.", 10)))
      return 1;
  return 0;
}

static int list_all(int dirfd, char ***out, size_t *n) {
  int rc = MXGW_OK;
  DIR *d = dir_stream(dirfd, &rc);
  if (!d)
    return rc;
  char **v = NULL;
  size_t cnt = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if ((rc = mxgw__queue_ids_push(&v, &cnt, &cap, de->d_name)) != MXGW_OK)
      break;
  }
  closedir(d);
  if (rc != MXGW_OK) {
    mxgw__queue_free_ids(v, cnt);
    return rc;
  }
  *out = v;
  *n = cnt;
  return MXGW_OK;
}

/* Recovery (owner only, lock held, nothing else running): see
 * docs/queue.md "Recovery". Order matters: lone bodies are judged against
 * tmp/ before tmp/ is emptied. */
static int recover(mxgw_queue *q) {
  char **tmpn = NULL;
  size_t ntmp = 0;
  int rc = list_all(q->tmpfd, &tmpn, &ntmp);
  if (rc != MXGW_OK)
    return rc;
  char name[MXGW_QID_MAX + 8];
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_FAILED && rc == MXGW_OK;
       s++) {
    int sfd = q->statefd[s];
    char **metas = NULL, **bodies = NULL;
    size_t nm = 0, nb = 0;
    if ((rc = list_names(sfd, 1, &metas, &nm)) != MXGW_OK)
      break;
    if ((rc = list_names(sfd, 0, &bodies, &nb)) != MXGW_OK) {
      mxgw__queue_free_ids(metas, nm);
      break;
    }
    /* metadata: the message lives where its metadata is */
    for (size_t i = 0; i < nm && rc == MXGW_OK; i++) {
      snprintf(name, sizeof name, "%s.json", metas[i]);
      if (!exists_at(sfd, metas[i])) {
        int b = find_body(q, metas[i]);
        if (b) { /* a move interrupted after the body's rename: undo it */
          if (renameat(q->statefd[b], metas[i], sfd, metas[i]) != 0)
            rc = mxgw__queue_errno(errno);
        } else {
          rc = quarantine(q, sfd, name); /* metadata without body */
          continue;
        }
      }
      if (rc != MXGW_OK)
        break;
      mxgw_queue_entry *e = NULL;
      int lr = mxgw__queue_load_at(q, s, metas[i], &e);
      mxgw_queue_entry_free(e);
      if (lr == MXGW_E_SYNTAX) { /* unreadable metadata: both aside */
        rc = quarantine(q, sfd, name);
        if (rc == MXGW_OK)
          rc = quarantine(q, sfd, metas[i]);
        continue;
      }
      atomic_fetch_add(&q->st_recovered, 1);
      if (s == MXGW_QSTATE_ACTIVE) {
        rc = mxgw__queue_move(q, metas[i], MXGW_QSTATE_ACTIVE,
                              MXGW_QSTATE_INCOMING, 0);
        if (rc == MXGW_OK)
          atomic_fetch_add(&q->st_recovered_active, 1);
      }
    }
    /* bodies without metadata anywhere */
    for (size_t i = 0; i < nb && rc == MXGW_OK; i++) {
      if (!exists_at(sfd, bodies[i]))
        continue; /* moved above */
      snprintf(name, sizeof name, "%s.json", bodies[i]);
      int has = 0;
      for (int t = MXGW_QSTATE_INCOMING; t <= MXGW_QSTATE_FAILED; t++)
        if (exists_at(q->statefd[t], name))
          has = 1;
      if (has)
        continue;
      if (tmp_explains(tmpn, ntmp, bodies[i])) {
        if (unlinkat(sfd, bodies[i], 0) == 0)
          atomic_fetch_add(&q->st_orphans, 1);
      } else {
        rc = quarantine(q, sfd, bodies[i]);
      }
    }
    mxgw__queue_free_ids(metas, nm);
    mxgw__queue_free_ids(bodies, nb);
  }
  for (size_t i = 0; i < ntmp && rc == MXGW_OK; i++)
    if (unlinkat(q->tmpfd, tmpn[i], 0) == 0)
      atomic_fetch_add(&q->st_orphans, 1);
  mxgw__queue_free_ids(tmpn, ntmp);
  /* make the recovery's renames durable before anything new happens */
  for (int s = 1; s <= MXGW_QSTATE_MAX && rc == MXGW_OK; s++)
    rc = mxgw__queue_dirsync(q, q->statefd[s]);
  if (rc == MXGW_OK)
    rc = mxgw__queue_dirsync(q, q->tmpfd);
  return rc;
}
