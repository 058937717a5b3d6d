/* SPDX-License-Identifier: MIT */
/*
 * mxgw_queue_journal.c: the queue's incoming journal (MXGW_QOPT_JOURNAL).
 *
 * Without it every message costs two new files, two fdatasyncs, six renames
 * and two unlinks on its way through the spool; on ext4 the inode allocation
 * alone was 43% of the gateway's CPU (docs/PERFORMANCE.md). With it, a
 * message whose body fits in memory is appended to a segment file as one
 * record; a group commit is one pwritev() and one fdatasync() for every
 * message in the batch. The owner keeps an index of the journal's messages
 * in memory; take() hands them out first, finish() appends a small "done"
 * record (made durable by the next commit's fdatasync), and a message that
 * is not delivered at once (deferred, failed) or is saved is written out as
 * the usual two files first ("spilled"), then marked "moved".
 *
 * Segments are journal/<16 hex digits>.log, used in order. A segment is
 * removed (and the directory fsynced) when every message in it is done or
 * moved and every older segment is gone, so a surviving segment's done
 * records always refer to messages in it or in an older surviving one.
 *
 * Record: a 64-octet header, then the metadata JSON, then the body:
 *   0  "MXJ1"          magic
 *   4  u32 type        1 message, 2 done, 3 moved
 *   8  u32 meta_len
 *  12  u32 crc         CRC-32C of the header (this field 0), metadata, body
 *  16  u64 body_len
 *  24  char id[32]     NUL-padded queue ID
 *  56  u64 0           reserved
 * little-endian. A record that does not check out ends the segment's
 * readable part: it can only be the tail of a write that was never
 * acknowledged (an acknowledged record was fdatasynced, and so was
 * everything before it).
 *
 * Recovery (owner, at open): every message record without a done or moved
 * record, and not already in a state directory (a spill interrupted before
 * its "moved" record), is live. With the journal on, the live records are
 * indexed again (incoming, in commit order) and delivered from the old
 * segments, which go once finished: a restart reads the segments and writes
 * nothing. With it off, they are written to incoming/ as files (one syncfs
 * for all of them) and the segments are removed. Operator tools (not
 * owners) read the segments to list the journal's messages as incoming.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mxgw_queue_int.h"

#define JHDR 64
#define JT_MSG 1
#define JT_DONE 2
#define JT_MOVED 3

struct mxgw__jseg {
  uint64_t seq;
  int fd;
  int64_t size;   /* append offset */
  int64_t live;   /* message records not yet done or moved */
  mxgw__jseg *next;
};

struct mxgw__jmsg {
  char id[MXGW_QID_MAX];
  mxgw__jseg *seg;
  int64_t body_off, body_len;
  char *meta; /* JSON text as committed */
  int active;
  mxgw__jmsg *prev, *next;
};

/* ------------------------------------------------------------------------ */
/* CRC-32C (Castagnoli): SSE4.2 when the CPU has it, bitwise otherwise.     */
/* ------------------------------------------------------------------------ */

static uint32_t crc32c_sw(uint32_t crc, const unsigned char *p, size_t n) {
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
  uint64_t c = crc;
  while (n && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    n--;
  }
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  while (n--)
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return (uint32_t)c;
}
#endif

static uint32_t crc32c(uint32_t crc, const void *buf, size_t n) {
  const unsigned char *p = buf;
  crc = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  if (__builtin_cpu_supports("sse4.2"))
    return ~crc32c_hw(crc, p, n);
#endif
  return ~crc32c_sw(crc, p, n);
}

/* ------------------------------------------------------------------------ */
/* Records                                                                  */
/* ------------------------------------------------------------------------ */

static void put32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static void put64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get32(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* Fill a record header; the CRC covers the header, meta and body. */
static void make_header(unsigned char *h, int type, const char *id,
                        const void *meta, size_t mlen, const void *body,
                        size_t blen) {
  memset(h, 0, JHDR);
  memcpy(h, "MXJ1", 4);
  put32(h + 4, (uint32_t)type);
  put32(h + 8, (uint32_t)mlen);
  put64(h + 16, (uint64_t)blen);
  snprintf((char *)h + 24, 32, "%s", id);
  uint32_t c = crc32c(0, h, JHDR);
  if (mlen)
    c = crc32c(c, meta, mlen);
  if (blen)
    c = crc32c(c, body, blen);
  put32(h + 12, c);
}

void mxgw__journal_msg_header(mxgw_queue_msg *m) {
  make_header(m->jhdr, JT_MSG, m->id, m->metatext, strlen(m->metatext),
              m->jbody, m->size);
}

static int pwritev_all(int fd, struct iovec *iov, int n, off_t off) {
  while (n > 0) {
    ssize_t w = pwritev(fd, iov, n, off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return mxgw__queue_errno(errno);
    }
    if (w == 0)
      return MXGW_E_IO;
    off += w;
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0 && w > 0) {
      iov->iov_base = (char *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return MXGW_OK;
}

static int pread_all(int fd, void *buf, size_t len, off_t off) {
  char *p = buf;
  while (len) {
    ssize_t r = pread(fd, p, len, off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return mxgw__queue_errno(errno);
    if (r == 0)
      return MXGW_E_SYNTAX; /* short: a torn tail */
    p += r;
    off += r;
    len -= (size_t)r;
  }
  return MXGW_OK;
}

/* ------------------------------------------------------------------------ */
/* Segments                                                                 */
/* ------------------------------------------------------------------------ */

static void seg_name(uint64_t seq, char *out, size_t n) {
  snprintf(out, n, "%016llx.log", (unsigned long long)seq);
}

/* A new current segment (jlock held). */
static int seg_new(mxgw_queue *q) {
  mxgw__jseg *s = mxgw__calloc(&q->mem, 1, sizeof *s);
  if (!s)
    return MXGW_E_NOMEM;
  char name[40];
  s->seq = q->jnext_seq++;
  seg_name(s->seq, name, sizeof name);
  s->fd = openat(q->jdirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                 0600);
  if (s->fd < 0) {
    int rc = mxgw__queue_errno(errno);
    mxgw__free(&q->mem, s);
    return rc;
  }
  /* the new name must survive before anything in it is acknowledged */
  int rc = mxgw__queue_dirsync(q, q->jdirfd);
  if (rc != MXGW_OK) {
    close(s->fd);
    unlinkat(q->jdirfd, name, 0);
    mxgw__free(&q->mem, s);
    return rc;
  }
  if (q->jtail_seg)
    q->jtail_seg->next = s;
  else
    q->jsegs = s;
  q->jtail_seg = s;
  q->jnsegs++;
  return MXGW_OK;
}

/* Remove finished segments from the oldest up (jlock held); returns 1 if
 * something was removed (the caller fsyncs the directory, unlocked). */
static int seg_reclaim(mxgw_queue *q) {
  int removed = 0;
  while (q->jsegs && q->jsegs != q->jtail_seg && q->jsegs->live == 0) {
    mxgw__jseg *s = q->jsegs;
    char name[40];
    seg_name(s->seq, name, sizeof name);
    unlinkat(q->jdirfd, name, 0);
    close(s->fd);
    q->jsegs = s->next;
    q->jnsegs--;
    mxgw__free(&q->mem, s);
    removed = 1;
  }
  return removed;
}

/* Append a done/moved record to the current segment (jlock held). Not
 * synced here: the next commit's fdatasync of the segment carries it. A
 * failed write is undone (truncated) so that nothing after it becomes
 * unreadable; the worst case is a duplicate delivery after a crash. */
static void append_mark(mxgw_queue *q, int type, const char *id) {
  mxgw__jseg *s = q->jtail_seg;
  if (!s)
    return;
  unsigned char h[JHDR];
  make_header(h, type, id, NULL, 0, NULL, 0);
  struct iovec iov = {h, JHDR};
  if (pwritev_all(s->fd, &iov, 1, (off_t)s->size) == MXGW_OK)
    s->size += JHDR;
  else if (ftruncate(s->fd, (off_t)s->size) != 0)
    s->size = q->jseg_max; /* unknown tail: start a new segment next */
}

/* ------------------------------------------------------------------------ */
/* Commit                                                                   */
/* ------------------------------------------------------------------------ */

int mxgw__queue_more_due(mxgw_queue *q) {
  if (!q->journal || !q->owner)
    return 1; /* not known without reading directories */
  pthread_mutex_lock(&q->jlock);
  int more = q->jin != NULL;
  pthread_mutex_unlock(&q->jlock);
  return more;
}

int mxgw__journal_wants(mxgw_queue *q) {
  pthread_mutex_lock(&q->jlock);
  int ok = q->jcount + q->jpending < q->jmax_msgs;
  if (ok)
    q->jpending++;
  pthread_mutex_unlock(&q->jlock);
  return ok;
}

void mxgw__journal_unwant(mxgw_queue *q) {
  pthread_mutex_lock(&q->jlock);
  q->jpending--;
  pthread_mutex_unlock(&q->jlock);
}

static void jmsg_free(mxgw_queue *q, mxgw__jmsg *j) {
  if (!j)
    return;
  free(j->meta);
  mxgw__free(&q->mem, j);
}

static void list_push(mxgw__jmsg **head, mxgw__jmsg **tail, mxgw__jmsg *j) {
  j->next = NULL;
  j->prev = *tail;
  if (*tail)
    (*tail)->next = j;
  else
    *head = j;
  *tail = j;
}

static void list_del(mxgw__jmsg **head, mxgw__jmsg **tail, mxgw__jmsg *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    *head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    *tail = j->prev;
  j->prev = j->next = NULL;
}

/* The batch's journal messages (status OK, file stage done: header built):
 * one pwritev() per IOV_MAX/3 messages and one fdatasync() for all, then
 * they are indexed (takeable). Called by the group commit's leader only, so
 * batches never interleave; done/moved records may be appended between two
 * pwritev()s, which is harmless. */
void mxgw__journal_commit(mxgw_queue *q, mxgw_queue_msg **v, size_t n) {
  if (!n)
    return;
  mxgw__jmsg **js = mxgw__calloc(&q->mem, n, sizeof *js);
  struct iovec *iov = mxgw__calloc(&q->mem, n < 340 ? n * 3 : 1020,
                                   sizeof *iov);
  int rc = js && iov ? MXGW_OK : MXGW_E_NOMEM;
  for (size_t i = 0; i < n && rc == MXGW_OK; i++) {
    js[i] = mxgw__calloc(&q->mem, 1, sizeof *js[i]);
    if (!js[i])
      rc = MXGW_E_NOMEM;
  }
  mxgw__jseg *seg = NULL;
  int written = 0;
  pthread_mutex_lock(&q->jlock);
  if (rc == MXGW_OK && (!q->jtail_seg || q->jtail_seg->size >= q->jseg_max))
    rc = seg_new(q);
  if (rc == MXGW_OK) {
    seg = q->jtail_seg;
    int64_t start = seg->size, off = start;
    size_t i = 0;
    while (i < n && rc == MXGW_OK) {
      int k = 0;
      int64_t at = off;
      for (; i < n && k + 3 <= 1020; i++) {
        mxgw_queue_msg *m = v[i];
        size_t ml = strlen(m->metatext);
        iov[k++] = (struct iovec){m->jhdr, JHDR};
        iov[k++] = (struct iovec){m->metatext, ml};
        if (m->size)
          iov[k++] = (struct iovec){m->jbody, (size_t)m->size};
        js[i]->body_off = off + JHDR + (int64_t)ml;
        off += JHDR + (int64_t)ml + (int64_t)m->size;
      }
      rc = pwritev_all(seg->fd, iov, k, (off_t)at);
    }
    if (rc == MXGW_OK) {
      seg->size = off;
      seg->live += (int64_t)n; /* before unlocking: not reclaimable */
      written = 1;
    } else if (ftruncate(seg->fd, (off_t)start) != 0) {
      seg->size = q->jseg_max; /* unknown tail: rotate */
    }
  }
  pthread_mutex_unlock(&q->jlock);
  if (rc == MXGW_OK)
    rc = mxgw__queue_filesync(q, seg->fd);
  pthread_mutex_lock(&q->jlock);
  for (size_t i = 0; i < n; i++) {
    mxgw_queue_msg *m = v[i];
    q->jpending--;
    m->status = rc;
    if (rc != MXGW_OK)
      continue;
    mxgw__jmsg *j = js[i];
    js[i] = NULL;
    memcpy(j->id, m->id, sizeof j->id);
    j->seg = seg;
    j->body_len = (int64_t)m->size;
    j->meta = m->metatext; /* taken over */
    m->metatext = NULL;
    list_push(&q->jin, &q->jin_tail, j);
    q->jcount++;
    atomic_fetch_add(&q->st_jcommits, 1);
  }
  if (rc != MXGW_OK && written) {
    /* written but not durable (fdatasync failed): nothing is claimed;
     * mark them gone so recovery does not resurrect what was refused */
    seg->live -= (int64_t)n;
    for (size_t i = 0; i < n; i++)
      append_mark(q, JT_DONE, v[i]->id);
  }
  int removed = seg_reclaim(q);
  pthread_mutex_unlock(&q->jlock);
  if (removed)
    mxgw__queue_dirsync(q, q->jdirfd);
  for (size_t i = 0; js && i < n; i++)
    jmsg_free(q, js[i]);
  mxgw__free(&q->mem, js);
  mxgw__free(&q->mem, iov);
}

/* ------------------------------------------------------------------------ */
/* Entries                                                                  */
/* ------------------------------------------------------------------------ */

static int entry_from(mxgw_queue *q, int state, const char *id,
                      const char *meta, size_t mlen, uint64_t seq,
                      int64_t off, int64_t len, mxgw_queue_entry **out) {
  /* NOMEM is not a bad record: recovery never quarantines for it */
  mxgw_queue_entry *e = NULL;
  int rc = mxgw__queue_entry_new(q, state, id, meta, mlen, &e);
  if (rc != MXGW_OK)
    return rc;
  e->size = len;
  e->in_journal = 1;
  e->jseq = seq;
  e->jbody_off = off;
  *out = e;
  return MXGW_OK;
}

int mxgw__journal_take(mxgw_queue *q, mxgw_queue_entry **out) {
  pthread_mutex_lock(&q->jlock);
  mxgw__jmsg *j = q->jin;
  if (!j) {
    pthread_mutex_unlock(&q->jlock);
    return MXGW_E_NOTFOUND;
  }
  int rc = entry_from(q, MXGW_QSTATE_ACTIVE, j->id, j->meta, strlen(j->meta),
                      j->seg->seq, j->body_off, j->body_len, out);
  if (rc == MXGW_OK) {
    list_del(&q->jin, &q->jin_tail, j);
    list_push(&q->jact, &q->jact_tail, j);
    j->active = 1;
    (*out)->jref = j;
  }
  pthread_mutex_unlock(&q->jlock);
  return rc;
}

/* Copy `len` octets at `off` of fd into dirfd/name (created, fdatasynced). */
static int copy_out(mxgw_queue *q, int fd, int64_t off, int64_t len,
                    int dirfd, const char *name) {
  int out = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0)
    return mxgw__queue_errno(errno);
  int rc = MXGW_OK;
  while (len > 0 && rc == MXGW_OK) {
    loff_t in = (loff_t)off;
    ssize_t c = copy_file_range(fd, &in, out, NULL, (size_t)len, 0);
    if (c > 0) {
      off += c;
      len -= c;
      continue;
    }
    if (c == 0) {
      rc = MXGW_E_IO;
      break;
    }
    if (errno == EINTR)
      continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS &&
        errno != EOPNOTSUPP) {
      rc = mxgw__queue_errno(errno);
      break;
    }
    /* no copy_file_range here: read and write */
    char buf[65536];
    size_t want = len < (int64_t)sizeof buf ? (size_t)len : sizeof buf;
    rc = pread_all(fd, buf, want, (off_t)off);
    if (rc == MXGW_E_SYNTAX)
      rc = MXGW_E_IO;
    for (size_t done = 0; rc == MXGW_OK && done < want;) {
      ssize_t w = write(out, buf + done, want - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        rc = w < 0 ? mxgw__queue_errno(errno) : MXGW_E_IO;
      else
        done += (size_t)w;
    }
    off += (int64_t)want;
    len -= (int64_t)want;
  }
  if (rc == MXGW_OK)
    rc = mxgw__queue_filesync(q, out);
  if (close(out) != 0 && rc == MXGW_OK)
    rc = mxgw__queue_errno(errno);
  if (rc != MXGW_OK)
    unlinkat(dirfd, name, 0);
  return rc;
}

/* Write a journal message out as files in `state` (body, then metadata,
 * both through tmp/ and fdatasynced, renamed in that order; the directory
 * fsynced when `sync`). */
static int spill(mxgw_queue *q, const char *id, int fd, int64_t off,
                 int64_t len, const char *meta, int state, int sync) {
  char mname[MXGW_QID_MAX + 8];
  snprintf(mname, sizeof mname, "%s.json", id);
  int rc = copy_out(q, fd, off, len, q->tmpfd, id);
  if (rc != MXGW_OK)
    return rc;
  rc = mxgw__queue_write_file(q, q->tmpfd, mname, meta, strlen(meta));
  if (rc != MXGW_OK) {
    unlinkat(q->tmpfd, id, 0);
    return rc;
  }
  int sfd = q->statefd[state];
  if (renameat(q->tmpfd, id, sfd, id) != 0) {
    rc = mxgw__queue_errno(errno);
    unlinkat(q->tmpfd, id, 0);
    unlinkat(q->tmpfd, mname, 0);
    return rc;
  }
  if (renameat(q->tmpfd, mname, sfd, mname) != 0) {
    rc = mxgw__queue_errno(errno);
    unlinkat(sfd, id, 0);
    unlinkat(q->tmpfd, mname, 0);
    return rc;
  }
  return sync ? mxgw__queue_dirsync(q, sfd) : MXGW_OK;
}

/* The entry leaves the journal (jlock held): done or moved. */
static int leave(mxgw_queue *q, mxgw_queue_entry *e, int type) {
  mxgw__jmsg *j = e->jref;
  append_mark(q, type, j->id);
  list_del(&q->jact, &q->jact_tail, j);
  j->seg->live--;
  q->jcount--;
  jmsg_free(q, j);
  e->jref = NULL;
  e->in_journal = 0;
  return seg_reclaim(q);
}

/* The entry leaves the journal for good (delivered: `to` 0), or as files
 * in state `to` (deferred, failed, or active for a save). */
int mxgw__journal_finish(mxgw_queue *q, mxgw_queue_entry *e, int to) {
  char *path = NULL;
  if (to != 0) {
    size_t plen = strlen(q->dir) + strlen(e->id) + 32;
    char *text = json_dumps(e->meta, JSON_COMPACT);
    path = mxgw__malloc(&q->mem, plen);
    int fd = -1, rc = text && path ? MXGW_OK : MXGW_E_NOMEM;
    int64_t off = 0, len = 0;
    if (rc == MXGW_OK)
      rc = mxgw__journal_body(e, &fd, &off, &len);
    if (rc == MXGW_OK)
      rc = spill(q, e->id, fd, off, len, text, to, 1);
    if (fd >= 0)
      close(fd);
    free(text);
    if (rc != MXGW_OK) {
      mxgw__free(&q->mem, path);
      return rc; /* still active in the journal: retried after recovery */
    }
    snprintf(path, plen, "%s/%s/%s", q->dir, mxgw_queue_state_name(to),
             e->id);
    atomic_fetch_add(&q->st_jspills, 1);
    if (to == MXGW_QSTATE_DEFERRED) {
      int64_t na = 0;
      mxgw_queue_entry_get_int(e, MXGW_QKEY_NEXT_ATTEMPT, &na);
      mxgw__queue_admin_lock(q);
      mxgw__queue_deferred_at(q, na);
      mxgw__queue_admin_unlock(q);
    }
  }
  pthread_mutex_lock(&q->jlock);
  int removed = leave(q, e, to ? JT_MOVED : JT_DONE);
  pthread_mutex_unlock(&q->jlock);
  if (removed)
    mxgw__queue_dirsync(q, q->jdirfd);
  e->body_path = path;
  return MXGW_OK;
}

int mxgw__journal_body(const mxgw_queue_entry *e, int *fd, int64_t *off,
                       int64_t *len) {
  mxgw_queue *q = e->q;
  if (!e->in_journal)
    return MXGW_E_NOTFOUND;
  char name[40];
  seg_name(e->jseq, name, sizeof name);
  if (q->jdirfd < 0)
    return MXGW_E_NOTFOUND;
  int f = openat(q->jdirfd, name, O_RDONLY | O_CLOEXEC);
  if (f < 0)
    return mxgw__queue_errno(errno);
  *fd = f;
  *off = e->jbody_off;
  *len = e->size;
  return MXGW_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading segments: recovery (owner) and listing (operator tools)          */
/* ------------------------------------------------------------------------ */

typedef struct jrec {
  char id[MXGW_QID_MAX];
  uint64_t seq;
  int64_t body_off, body_len;
  char *meta;
  size_t mlen;
  int gone;
} jrec;

typedef struct jscan {
  jrec *v;
  size_t n, cap;
  uint64_t *seqs; /* the segments read, oldest first */
  size_t nseqs;
  uint64_t maxseq;
  int torn;
} jscan;

static void scan_free(jscan *s) {
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i].meta);
  free(s->v);
  free(s->seqs);
  memset(s, 0, sizeof *s);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void mark_gone(jscan *s, const char *id) {
  for (size_t i = s->n; i-- > 0;)
    if (!s->v[i].gone && !strcmp(s->v[i].id, id)) {
      s->v[i].gone = 1;
      return;
    }
}

/* Records of one segment, in order, up to the first that does not check
 * out. `want_meta`: keep the metadata of message records. */
static int scan_segment(int dirfd, uint64_t seq, jscan *s) {
  char name[40];
  seg_name(seq, name, sizeof name);
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? MXGW_OK : mxgw__queue_errno(errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return mxgw__queue_errno(errno);
  }
  int64_t off = 0, size = st.st_size;
  int rc = MXGW_OK;
  unsigned char *buf = NULL;
  size_t bcap = 0;
  while (off < size) {
    unsigned char h[JHDR];
    if (size - off < JHDR || pread_all(fd, h, JHDR, off) != MXGW_OK ||
        memcmp(h, "MXJ1", 4) != 0) {
      s->torn++;
      break;
    }
    uint32_t type = get32(h + 4), mlen = get32(h + 8), crc = get32(h + 12);
    uint64_t blen = get64(h + 16);
    if ((type < JT_MSG || type > JT_MOVED) || h[55] != 0 ||
        mlen > (64u << 20) || blen > (1ull << 40) ||
        (int64_t)(JHDR + mlen + blen) > size - off) {
      s->torn++;
      break;
    }
    size_t need = (size_t)mlen + (size_t)blen;
    if (need > bcap) {
      unsigned char *nb = realloc(buf, need);
      if (!nb) {
        rc = MXGW_E_NOMEM;
        break;
      }
      buf = nb;
      bcap = need;
    }
    if (need && pread_all(fd, buf, need, off + JHDR) != MXGW_OK) {
      s->torn++;
      break;
    }
    put32(h + 12, 0);
    uint32_t c = crc32c(crc32c(0, h, JHDR), buf, need);
    char id[MXGW_QID_MAX];
    memcpy(id, h + 24, 31);
    id[31] = '\0';
    if (c != crc || !mxgw__queue_valid_id(id)) {
      s->torn++;
      break;
    }
    if (type == JT_MSG) {
      if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        jrec *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) {
          rc = MXGW_E_NOMEM;
          break;
        }
        s->v = nv;
        s->cap = nc;
      }
      jrec *r = &s->v[s->n];
      memset(r, 0, sizeof *r);
      memcpy(r->id, id, sizeof r->id);
      r->seq = seq;
      r->body_off = off + JHDR + mlen;
      r->body_len = (int64_t)blen;
      r->mlen = mlen;
      if (!(r->meta = malloc((size_t)mlen + 1))) {
        rc = MXGW_E_NOMEM;
        break;
      }
      if (mlen)
        memcpy(r->meta, buf, mlen);
      r->meta[mlen] = '\0';
      s->n++;
    } else {
      mark_gone(s, id);
    }
    off += JHDR + (int64_t)need;
  }
  free(buf);
  close(fd);
  return rc;
}

/* A queue ID is live at most once: of message records with the same ID
 * (never written by this code; a hand-made or damaged journal) the oldest
 * live one counts and the others are ignored. */
static int cmp_live(const void *a, const void *b, void *arg) {
  const jscan *s = arg;
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  int c = strcmp(s->v[x].id, s->v[y].id);
  return c ? c : x < y ? -1 : x > y;
}

static int dedup(jscan *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++)
    n += !s->v[i].gone;
  if (n < 2)
    return MXGW_OK;
  size_t *ix = malloc(n * sizeof *ix);
  if (!ix)
    return MXGW_E_NOMEM;
  for (size_t i = 0, k = 0; i < s->n; i++)
    if (!s->v[i].gone)
      ix[k++] = i;
  qsort_r(ix, n, sizeof *ix, cmp_live, s);
  for (size_t k = 1; k < n; k++)
    if (!strcmp(s->v[ix[k]].id, s->v[ix[k - 1]].id))
      s->v[ix[k]].gone = 1;
  free(ix);
  return MXGW_OK;
}

/* Every segment, oldest first. */
static int scan_all(mxgw_queue *q, jscan *s) {
  memset(s, 0, sizeof *s);
  if (q->jdirfd < 0)
    return MXGW_OK;
  int dfd = openat(q->jdirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return mxgw__queue_errno(errno);
  DIR *d = fdopendir(dfd);
  if (!d) {
    close(dfd);
    return mxgw__queue_errno(errno);
  }
  uint64_t *seqs = NULL;
  size_t n = 0, cap = 0;
  int rc = MXGW_OK;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    char *end;
    size_t l = strlen(de->d_name);
    if (l != 20 || strcmp(de->d_name + 16, ".log"))
      continue;
    unsigned long long v = strtoull(de->d_name, &end, 16);
    char canon[40];
    seg_name(v, canon, sizeof canon);
    if (end != de->d_name + 16 || strcmp(canon, de->d_name))
      continue; /* only names this code writes: never read or remove others */
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 16;
      uint64_t *ns = realloc(seqs, nc * sizeof *ns);
      if (!ns) {
        rc = MXGW_E_NOMEM;
        break;
      }
      seqs = ns;
      cap = nc;
    }
    seqs[n++] = v;
  }
  closedir(d);
  if (n)
    qsort(seqs, n, sizeof *seqs, cmp_u64);
  for (size_t i = 0; i < n && rc == MXGW_OK; i++) {
    rc = scan_segment(q->jdirfd, seqs[i], s);
    if (seqs[i] >= s->maxseq)
      s->maxseq = seqs[i] + 1;
  }
  s->seqs = seqs;
  s->nseqs = n;
  if (rc == MXGW_OK)
    rc = dedup(s);
  if (rc != MXGW_OK)
    scan_free(s);
  return rc;
}

static int in_state_dir(mxgw_queue *q, const char *id) {
  char name[MXGW_QID_MAX + 8];
  struct stat st;
  snprintf(name, sizeof name, "%s.json", id);
  for (int s = MXGW_QSTATE_INCOMING; s <= MXGW_QSTATE_CORRUPT; s++)
    if (fstatat(q->statefd[s], name, &st, 0) == 0 ||
        fstatat(q->statefd[s], id, &st, 0) == 0)
      return 1;
  return 0;
}

/* Owner, at open (after the state directories' recovery). The journal's
 * live messages (no done or moved record, not already in a state
 * directory) are either indexed again, in commit order, to be delivered
 * from the segments like new ones (journal on: a restart reads the
 * segments and writes nothing), or written out to incoming/ as files
 * (journal off), after which the segments go. A record whose metadata does
 * not load goes to corrupt/ either way. */
static int recover(mxgw_queue *q) {
  jscan s;
  int rc = scan_all(q, &s);
  if (rc != MXGW_OK)
    return rc;
  atomic_fetch_add(&q->st_jtorn, s.torn);
  /* journal on: the old segments, oldest first, before the new current */
  for (size_t i = 0; q->journal && i < s.nseqs && rc == MXGW_OK; i++) {
    mxgw__jseg *g = mxgw__calloc(&q->mem, 1, sizeof *g);
    char name[40];
    seg_name(s.seqs[i], name, sizeof name);
    if (!g) {
      rc = MXGW_E_NOMEM;
      break;
    }
    g->seq = s.seqs[i];
    g->fd = openat(q->jdirfd, name, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (g->fd < 0 || fstat(g->fd, &st) != 0) {
      rc = mxgw__queue_errno(errno);
      if (g->fd >= 0)
        close(g->fd);
      mxgw__free(&q->mem, g);
      break;
    }
    g->size = st.st_size;
    if (q->jtail_seg)
      q->jtail_seg->next = g;
    else
      q->jsegs = g;
    q->jtail_seg = g;
    q->jnsegs++;
  }
  int spilled = 0;
  mxgw__jseg *g = q->jsegs;
  for (size_t i = 0; i < s.n && rc == MXGW_OK; i++) {
    jrec *r = &s.v[i];
    if (r->gone || in_state_dir(q, r->id))
      continue;
    mxgw_queue_entry *e = NULL;
    int lr = entry_from(q, MXGW_QSTATE_INCOMING, r->id, r->meta, r->mlen,
                        r->seq, r->body_off, r->body_len, &e);
    mxgw_queue_entry_free(e);
    if (lr == MXGW_E_NOMEM) {
      rc = lr;
      break;
    }
    if (q->journal && lr == MXGW_OK) {
      while (g && g->seq != r->seq)
        g = g->next;
      mxgw__jmsg *j = g ? mxgw__calloc(&q->mem, 1, sizeof *j) : NULL;
      if (!j) {
        rc = g ? MXGW_E_NOMEM : MXGW_E_IO;
        break;
      }
      memcpy(j->id, r->id, sizeof j->id);
      j->seg = g;
      j->body_off = r->body_off;
      j->body_len = r->body_len;
      j->meta = r->meta; /* taken over */
      r->meta = NULL;
      list_push(&q->jin, &q->jin_tail, j);
      g->live++;
      q->jcount++;
      atomic_fetch_add(&q->st_jrecovered, 1);
      atomic_fetch_add(&q->st_recovered, 1);
      continue;
    }
    /* to files; their data is synced once for all of them (below) */
    char name[40];
    seg_name(r->seq, name, sizeof name);
    int fd = openat(q->jdirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      rc = mxgw__queue_errno(errno);
      break;
    }
    int keep = q->sync;
    q->sync = 0;
    rc = spill(q, r->id, fd, r->body_off, r->body_len, r->meta,
               lr == MXGW_OK ? MXGW_QSTATE_INCOMING : MXGW_QSTATE_CORRUPT, 0);
    q->sync = keep;
    close(fd);
    if (rc == MXGW_OK) {
      spilled = 1;
      atomic_fetch_add(lr == MXGW_OK ? &q->st_jrecovered : &q->st_quarantined,
                       1);
      if (lr == MXGW_OK)
        atomic_fetch_add(&q->st_recovered, 1);
    }
  }
  if (rc == MXGW_OK && spilled && q->sync) {
    /* one flush of the file system for every file written above (recovery
     * runs alone at open), then the names */
    if (syncfs(q->rootfd) != 0)
      rc = mxgw__queue_errno(errno);
    if (rc == MXGW_OK)
      rc = mxgw__queue_dirsync(q, q->statefd[MXGW_QSTATE_INCOMING]);
    if (rc == MXGW_OK)
      rc = mxgw__queue_dirsync(q, q->statefd[MXGW_QSTATE_CORRUPT]);
  }
  q->jnext_seq = s.maxseq;
  int journal_off = !q->journal;
  uint64_t *seqs = s.seqs;
  size_t nseqs = s.nseqs;
  s.seqs = NULL;
  scan_free(&s);
  if (rc == MXGW_OK && journal_off) {
    /* everything is in files now: the segments can go */
    for (size_t i = 0; i < nseqs; i++) {
      char name[40];
      seg_name(seqs[i], name, sizeof name);
      unlinkat(q->jdirfd, name, 0);
    }
    if (nseqs)
      rc = mxgw__queue_dirsync(q, q->jdirfd);
  }
  free(seqs);
  return rc;
}

int mxgw__journal_open(mxgw_queue *q) {
  if (q->create) {
    if (mkdirat(q->rootfd, "journal", 0700) == 0) {
      /* a new journal/ (a new spool, or one made before the journal):
       * its name must be durable before anything in it is acknowledged */
      int rc = mxgw__queue_dirsync(q, q->rootfd);
      if (rc != MXGW_OK)
        return rc;
    } else if (errno != EEXIST) {
      return mxgw__queue_errno(errno);
    }
  }
  q->jdirfd = openat(q->rootfd, "journal", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (q->jdirfd < 0) {
    /* a spool made before the journal existed: nothing to list or recover
     * (an owner that wants the journal needs MXGW_QOPT_CREATE for it) */
    if (errno == ENOENT && (!q->owner || !q->journal))
      return MXGW_OK;
    return mxgw__queue_errno(errno);
  }
  if (!q->owner)
    return MXGW_OK;
  int rc = recover(q);
  if (rc == MXGW_OK && q->journal) {
    pthread_mutex_lock(&q->jlock);
    rc = seg_new(q);
    int removed = rc == MXGW_OK && seg_reclaim(q); /* old, finished ones */
    pthread_mutex_unlock(&q->jlock);
    if (removed)
      rc = mxgw__queue_dirsync(q, q->jdirfd);
  }
  return rc;
}

void mxgw__journal_close(mxgw_queue *q) {
  mxgw__jmsg *lists[2] = {q->jin, q->jact};
  for (int i = 0; i < 2; i++)
    for (mxgw__jmsg *j = lists[i], *nx; j; j = nx) {
      nx = j->next;
      jmsg_free(q, j);
    }
  q->jin = q->jin_tail = q->jact = q->jact_tail = NULL;
  for (mxgw__jseg *s = q->jsegs, *nx; s; s = nx) {
    nx = s->next;
    close(s->fd);
    mxgw__free(&q->mem, s);
  }
  q->jsegs = q->jtail_seg = NULL;
  if (q->jdirfd >= 0)
    close(q->jdirfd);
  q->jdirfd = -1;
}

/* ------------------------------------------------------------------------ */
/* Listing                                                                  */
/* ------------------------------------------------------------------------ */

/* IDs of the journal's messages in `state` (incoming or active): from the
 * index for the owner, from the segments for anyone else (all of them
 * incoming: another process cannot tell which are being delivered). */
int mxgw__journal_ids(mxgw_queue *q, int state, char ***ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  if (state != MXGW_QSTATE_INCOMING && state != MXGW_QSTATE_ACTIVE)
    return MXGW_OK;
  char **v = NULL;
  size_t cnt = 0, cap = 0;
  int rc = MXGW_OK;
  if (q->owner) {
    pthread_mutex_lock(&q->jlock);
    for (mxgw__jmsg *j = state == MXGW_QSTATE_INCOMING ? q->jin : q->jact; j;
         j = j->next) {
      if ((rc = mxgw__queue_ids_push(&v, &cnt, &cap, j->id)) != MXGW_OK)
        break;
    }
    pthread_mutex_unlock(&q->jlock);
  } else if (state == MXGW_QSTATE_INCOMING) {
    jscan s;
    rc = scan_all(q, &s);
    for (size_t i = 0; rc == MXGW_OK && i < s.n; i++) {
      if (s.v[i].gone || in_state_dir(q, s.v[i].id))
        continue;
      if ((rc = mxgw__queue_ids_push(&v, &cnt, &cap, s.v[i].id)) != MXGW_OK)
        break;
    }
    if (rc == MXGW_OK || s.v)
      scan_free(&s);
  }
  if (rc != MXGW_OK) {
    mxgw__queue_free_ids(v, cnt);
    return rc;
  }
  *ids = v;
  *n = cnt;
  return MXGW_OK;
}

/* Operator tools iterate with one reading of the segments, not one per
 * message: the live records, sorted by ID. */
struct mxgw__jsnap {
  jscan s;
};

static int cmp_jrec(const void *a, const void *b) {
  return strcmp(((const jrec *)a)->id, ((const jrec *)b)->id);
}

int mxgw__journal_snap(mxgw_queue *q, mxgw__jsnap **out, char ***ids,
                       size_t *n) {
  *out = NULL;
  *ids = NULL;
  *n = 0;
  mxgw__jsnap *sn = calloc(1, sizeof *sn);
  if (!sn)
    return MXGW_E_NOMEM;
  int rc = scan_all(q, &sn->s);
  if (rc != MXGW_OK) {
    free(sn);
    return rc;
  }
  size_t k = 0;
  for (size_t i = 0; i < sn->s.n; i++) {
    jrec *r = &sn->s.v[i];
    if (r->gone || in_state_dir(q, r->id))
      free(r->meta);
    else
      sn->s.v[k++] = *r;
  }
  sn->s.n = k;
  if (k)
    qsort(sn->s.v, k, sizeof *sn->s.v, cmp_jrec);
  char **v = k ? calloc(k, sizeof *v) : NULL;
  if (k && !v)
    rc = MXGW_E_NOMEM;
  for (size_t i = 0; i < k && rc == MXGW_OK; i++)
    if (!(v[i] = strdup(sn->s.v[i].id)))
      rc = MXGW_E_NOMEM;
  if (rc != MXGW_OK) {
    mxgw__queue_free_ids(v, k);
    mxgw__journal_snap_free(sn);
    return rc;
  }
  *out = sn;
  *ids = v;
  *n = k;
  return MXGW_OK;
}

int mxgw__journal_snap_load(mxgw_queue *q, mxgw__jsnap *sn, const char *id,
                            mxgw_queue_entry **out) {
  jrec key;
  snprintf(key.id, sizeof key.id, "%s", id);
  jrec *r = sn ? bsearch(&key, sn->s.v, sn->s.n, sizeof *sn->s.v, cmp_jrec)
               : NULL;
  if (!r)
    return MXGW_E_NOTFOUND;
  return entry_from(q, MXGW_QSTATE_INCOMING, r->id, r->meta, r->mlen, r->seq,
                    r->body_off, r->body_len, out);
}

void mxgw__journal_snap_free(mxgw__jsnap *sn) {
  if (!sn)
    return;
  scan_free(&sn->s);
  free(sn);
}

/* Load journal message `id` if it is in the journal in `state` (0: any). */
int mxgw__journal_load(mxgw_queue *q, int state, const char *id,
                       mxgw_queue_entry **out) {
  if (q->owner) {
    pthread_mutex_lock(&q->jlock);
    int rc = MXGW_E_NOTFOUND;
    for (int a = 0; a < 2 && rc == MXGW_E_NOTFOUND; a++) {
      int st = a ? MXGW_QSTATE_ACTIVE : MXGW_QSTATE_INCOMING;
      if (state && state != st)
        continue;
      for (mxgw__jmsg *j = a ? q->jact : q->jin; j; j = j->next)
        if (!strcmp(j->id, id)) {
          rc = entry_from(q, st, j->id, j->meta, strlen(j->meta), j->seg->seq,
                          j->body_off, j->body_len, out);
          break;
        }
    }
    pthread_mutex_unlock(&q->jlock);
    return rc;
  }
  if (state && state != MXGW_QSTATE_INCOMING)
    return MXGW_E_NOTFOUND;
  jscan s;
  int rc = scan_all(q, &s);
  if (rc != MXGW_OK)
    return rc;
  rc = MXGW_E_NOTFOUND;
  for (size_t i = 0; i < s.n; i++)
    if (!s.v[i].gone && !strcmp(s.v[i].id, id)) {
      rc = entry_from(q, MXGW_QSTATE_INCOMING, id, s.v[i].meta, s.v[i].mlen,
                      s.v[i].seq, s.v[i].body_off, s.v[i].body_len, out);
      break;
    }
  scan_free(&s);
  return rc;
}
