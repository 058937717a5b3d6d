/* SPDX-License-Identifier: MIT */
/*
 * fuzz_queue_journal.c: libFuzzer target for the queue journal's segment
 * reader (mxgw_queue_journal.c: scan_segment/scan_all), which reads files
 * that may be torn or corrupt after a crash: through the operator view (a
 * non-owner lists and loads the journal's messages) and through recovery
 * (an owner opening the spool writes them out to incoming/).
 *
 * Input: 3 header octets, then segment data (seeds: gen_queue_journal.py).
 *   h0 bit 0  two segments: h1 | h2 << 8 octets (at most what is left) go
 *             to journal/0000000000000001.log, the rest to ...0002.log (so
 *             done/moved records in segment 2 refer to messages in 1);
 *             otherwise everything goes to ...0001.log
 *   h0 bit 1  if segment 1 starts with a record whose ID is valid, that ID
 *             is also put in deferred/ as files (a spill interrupted before
 *             its "moved" record): the journal copy must then be ignored
 *   h0 bit 2  fix the CRCs: every record that is complete in its segment
 *             gets the right CRC-32C before the segment is written, so that
 *             mutations of the metadata, IDs and types get past the check
 *             (without it nearly every mutation ends the segment there)
 *
 * Each input gets a fresh spool (mkdtemp under $TMPDIR or /tmp), removed
 * at the end. Invariants (each a __builtin_trap()):
 *
 *   (a) non-owner (OWNER 0, CREATE 1, ASYNC_WORKERS 0, SYNC 0): open
 *       succeeds; mxgw_queue_count(INCOMING) equals the number of entries
 *       the INCOMING iterator returns (loaded, or MXGW_E_SYNTAX for unreadable
 *       metadata); each loaded one is in the journal, its body range is
 *       readable with pread() and as long as MXGW_QKEY_SIZE, and
 *       mxgw_queue_load() of its ID agrees (same size; MXGW_E_SYNTAX for
 *       the unreadable ones); the ID put in deferred/ is never listed.
 *   (b) owner with the journal (JOURNAL 1, SYNC 0): open (recovery)
 *       succeeds; the incoming state holds exactly the distinct IDs (a)
 *       loaded, each still in the journal (re-indexed, incoming/ has no
 *       file) with the same size and octets; corrupt/ holds a body and a
 *       metadata file for each distinct ID whose metadata (a) could not
 *       read (count(CORRUPT) counts both); deferred/ is unchanged.
 *   (c) then an owner without the journal: the same IDs and octets, now as
 *       files in incoming/ (offset 0); journal/ is empty; tmp/ is empty.
 *
 * ASan/UBSan catch memory errors and leaks.
 */
#define _GNU_SOURCE
#include <mxgw/mxgw.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,     \
              #c);                                                             \
      __builtin_trap();                                                        \
    }                                                                          \
  } while (0)

typedef struct seen {
  char id[32];
  unsigned char *body;
  int64_t len;
  int bad; /* metadata unreadable */
} seen;

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *f) {
  (void)st;
  (void)flag;
  (void)f;
  return remove(path);
}

static void write_file(const char *dir, const char *name, const void *buf,
                       size_t len) {
  char path[4300];
  int pl = snprintf(path, sizeof path, "%s/%s", dir, name);
  CHECK(pl > 0 && (size_t)pl < sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  CHECK(fd >= 0);
  const char *p = buf;
  while (len) {
    ssize_t w = write(fd, p, len);
    CHECK(w > 0);
    p += w;
    len -= (size_t)w;
  }
  CHECK(close(fd) == 0);
}

/* CRC-32C (Castagnoli), bitwise: the inputs are small. */
static uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* Give each complete record of seg[0..len) its right CRC (h0 bit 2). */
static void fix_crcs(unsigned char *seg, size_t len) {
  size_t off = 0;
  while (len - off >= 64 && !memcmp(seg + off, "MXJ1", 4)) {
    unsigned char *h = seg + off;
    uint64_t mlen = get_le(h + 8, 4), blen = get_le(h + 16, 8);
    if (mlen > len - off - 64 || blen > len - off - 64 - mlen)
      break;
    memset(h + 12, 0, 4);
    uint32_t c = crc32c(crc32c(0, h, 64), h + 64, (size_t)(mlen + blen));
    for (int i = 0; i < 4; i++)
      h[12 + i] = (unsigned char)(c >> (8 * i));
    off += 64 + (size_t)(mlen + blen);
  }
}

static int valid_id(const char *id) {
  size_t n = strlen(id);
  for (size_t i = 0; i < n; i++)
    if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'Z')))
      return 0;
  return n >= 8 && n < 32;
}

static mxgw_queue *open_queue(const char *dir, int owner, int journal) {
  mxgw_queue *q = NULL;
  CHECK(mxgw_queue_new(&q, dir, NULL) == MXGW_OK);
  CHECK(mxgw_queue_set_int(q, MXGW_QOPT_OWNER, owner) == MXGW_OK);
  CHECK(mxgw_queue_set_int(q, MXGW_QOPT_CREATE, 1) == MXGW_OK);
  CHECK(mxgw_queue_set_int(q, MXGW_QOPT_ASYNC_WORKERS, 0) == MXGW_OK);
  /* no fsyncs (speed); they change nothing the checks look at */
  CHECK(mxgw_queue_set_int(q, MXGW_QOPT_SYNC, 0) == MXGW_OK);
  if (owner && journal)
    CHECK(mxgw_queue_set_int(q, MXGW_QOPT_JOURNAL, 1) == MXGW_OK);
  CHECK(mxgw_queue_open(q) == MXGW_OK);
  return q;
}

static int64_t geti(const mxgw_queue_entry *e, int key) {
  int64_t v = -12345;
  CHECK(mxgw_queue_entry_get_int(e, key, &v) == MXGW_OK);
  return v;
}

/* The body of e, read through mxgw_queue_entry_body(); *len is its length. */
static unsigned char *read_body(const mxgw_queue_entry *e, int64_t *len,
                                int64_t *offset) {
  int fd = -1;
  int64_t off = -1, n = -1;
  CHECK(mxgw_queue_entry_body(e, &fd, &off, &n) == MXGW_OK);
  CHECK(fd >= 0 && off >= 0 && n >= 0);
  CHECK(n == geti(e, MXGW_QKEY_SIZE));
  CHECK(n <= (int64_t)1 << 30);
  unsigned char *buf = malloc((size_t)n + 1);
  CHECK(buf != NULL);
  for (int64_t got = 0; got < n;) {
    ssize_t r = pread(fd, buf + got, (size_t)(n - got), (off_t)(off + got));
    CHECK(r > 0); /* the whole range exists */
    got += r;
  }
  close(fd);
  *len = n;
  if (offset)
    *offset = off;
  return buf;
}

static size_t count_dir(const char *dir, const char *sub, char *only,
                        size_t only_cap, off_t *only_size) {
  char path[4300];
  int pl = snprintf(path, sizeof path, "%s/%s", dir, sub);
  CHECK(pl > 0 && (size_t)pl < sizeof path);
  DIR *d = opendir(path);
  CHECK(d != NULL);
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (n++ == 0 && only) {
      snprintf(only, only_cap, "%s", de->d_name);
      struct stat st;
      CHECK(fstatat(dirfd(d), de->d_name, &st, 0) == 0);
      *only_size = st.st_size;
    }
  }
  closedir(d);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  int two = data[0] & 1, stale = data[0] & 2, fix = data[0] & 4;
  size_t l1 = size - 3;
  if (two) {
    size_t want = (size_t)data[1] | (size_t)data[2] << 8;
    if (want < l1)
      l1 = want;
  }
  size_t l2 = size - 3 - l1;
  unsigned char *copy = malloc(size);
  CHECK(copy != NULL);
  memcpy(copy, data, size);
  unsigned char *s1 = copy + 3, *s2 = copy + 3 + l1;
  if (fix) {
    fix_crcs(s1, l1);
    fix_crcs(s2, l2);
  }

  const char *tmpdir = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/mxgw-fzqj-XXXXXX",
           tmpdir && *tmpdir ? tmpdir : "/tmp");
  CHECK(mkdtemp(dir) != NULL);
  char jdir[4200];
  snprintf(jdir, sizeof jdir, "%s/journal", dir);
  CHECK(mkdir(jdir, 0700) == 0);
  write_file(jdir, "0000000000000001.log", s1, l1);
  if (two)
    write_file(jdir, "0000000000000002.log", s2, l2);

  /* (a) the operator's view */
  mxgw_queue *q = open_queue(dir, 0, 0);
  char stale_id[32] = "";
  if (stale && l1 >= 64 && !memcmp(s1, "MXJ1", 4)) {
    memcpy(stale_id, s1 + 24, 31);
    stale_id[31] = '\0';
    if (!valid_id(stale_id) || s1[55] != 0) {
      stale_id[0] = '\0';
    } else {
      char ddir[4200], name[48], meta[160];
      snprintf(ddir, sizeof ddir, "%s/deferred", dir);
      snprintf(name, sizeof name, "%s.json", stale_id);
      int ml = snprintf(meta, sizeof meta,
                        "{\"id\":\"%s\",\"sender\":\"\",\"recipients\":"
                        "[{\"addr\":\"a@example.org\",\"state\":\"pending\"}]}",
                        stale_id);
      write_file(ddir, stale_id, "x\r\n", 3);
      write_file(ddir, name, meta, (size_t)ml);
    }
  }
  int count_a = mxgw_queue_count(q, MXGW_QSTATE_INCOMING);
  CHECK(count_a >= 0);
  CHECK(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED) == (stale_id[0] ? 1 : 0));
  /* a record is at least 64 octets: a bound on the distinct IDs */
  size_t maxids = size / 64 + 1;
  seen *v = calloc(maxids, sizeof *v);
  CHECK(v != NULL);
  size_t nv = 0, ngood = 0, nbad = 0;
  int iterated = 0;
  mxgw_queue_iter *it = NULL;
  CHECK(mxgw_queue_iter_new(q, MXGW_QSTATE_INCOMING, &it) == MXGW_OK);
  for (;;) {
    mxgw_queue_entry *e = NULL;
    int r = mxgw_queue_iter_next(it, &e);
    if (r == 0)
      break;
    CHECK(r == 1 || r == MXGW_E_SYNTAX);
    iterated++;
    const char *idp = NULL;
    size_t idl = 0;
    CHECK(mxgw_queue_iter_id(it, &idp, &idl) == MXGW_OK);
    CHECK(idl == strlen(idp) && valid_id(idp));
    CHECK(strcmp(idp, stale_id) != 0);
    /* the IDs come sorted: a duplicate follows its first occurrence and
     * loads the same (the first live) record */
    int dup = nv && !strcmp(v[nv - 1].id, idp);
    mxgw_queue_entry *e2 = NULL;
    int lr = mxgw_queue_load(q, idp, &e2);
    if (r == MXGW_E_SYNTAX) {
      CHECK(e == NULL && lr == MXGW_E_SYNTAX && e2 == NULL);
      if (dup) {
        CHECK(v[nv - 1].bad);
        continue;
      }
      CHECK(nv < maxids);
      snprintf(v[nv].id, sizeof v[nv].id, "%s", idp);
      v[nv++].bad = 1;
      nbad++;
      continue;
    }
    CHECK(e != NULL && lr == MXGW_OK && e2 != NULL);
    const char *eid = NULL;
    CHECK(mxgw_queue_entry_get_str(e, MXGW_QKEY_ID, &eid, NULL) == MXGW_OK);
    CHECK(!strcmp(eid, idp));
    CHECK(geti(e, MXGW_QKEY_IN_JOURNAL) == 1);
    CHECK(geti(e, MXGW_QKEY_STATE) == MXGW_QSTATE_INCOMING);
    CHECK(geti(e, MXGW_QKEY_RCPT_COUNT) >= 1);
    int64_t len = 0, off = 0, len2 = 0, off2 = 0;
    unsigned char *body = read_body(e, &len, &off);
    unsigned char *body2 = read_body(e2, &len2, &off2);
    CHECK(len == len2 && off == off2 && !memcmp(body, body2, (size_t)len));
    free(body2);
    mxgw_queue_entry_free(e2);
    if (dup) {
      CHECK(!v[nv - 1].bad && v[nv - 1].len == len);
      free(body);
      continue;
    }
    CHECK(nv < maxids);
    snprintf(v[nv].id, sizeof v[nv].id, "%s", idp);
    v[nv].body = body;
    v[nv++].len = len;
    ngood++;
  }
  mxgw_queue_iter_free(it);
  CHECK(iterated == count_a);
  mxgw_queue_free(q);
  if (getenv("MXGW_FUZZ_VERBOSE")) /* to check what a seed exercises */
    fprintf(stderr,
            "segments %d, listed %d, loadable %zu, unreadable %zu, "
            "in deferred/ %s\n",
            two ? 2 : 1, count_a, ngood, nbad, stale_id[0] ? stale_id : "-");

  /* (b) recovery by an owner that uses the journal: the live records are
   * indexed again (read from the old segments), unreadable ones go to
   * corrupt/ (a body and a metadata file each) */
  q = open_queue(dir, 1, 1);
  CHECK(mxgw_queue_count(q, MXGW_QSTATE_INCOMING) == (int)ngood);
  CHECK(mxgw_queue_count(q, MXGW_QSTATE_CORRUPT) == (int)(2 * nbad));
  CHECK(count_dir(dir, "corrupt", NULL, 0, NULL) == 2 * nbad);
  CHECK(mxgw_queue_count(q, MXGW_QSTATE_DEFERRED) == (stale_id[0] ? 1 : 0));
  CHECK(mxgw_queue_count(q, MXGW_QSTATE_ACTIVE) == 0);
  CHECK(count_dir(dir, "incoming", NULL, 0, NULL) == 0);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < nv; i++) {
      if (v[i].bad)
        continue;
      mxgw_queue_entry *e = NULL;
      CHECK(mxgw_queue_load(q, v[i].id, &e) == MXGW_OK);
      CHECK(geti(e, MXGW_QKEY_STATE) == MXGW_QSTATE_INCOMING);
      CHECK(geti(e, MXGW_QKEY_IN_JOURNAL) == (pass == 0));
      int64_t len = 0, off = -1;
      unsigned char *body = read_body(e, &len, &off);
      CHECK(len == v[i].len && (pass == 0 || off == 0));
      CHECK(!memcmp(body, v[i].body, (size_t)len));
      free(body);
      mxgw_queue_entry_free(e);
    }
    if (pass == 0) {
      /* (c) then an owner without the journal: the same messages, now as
       * files in incoming/, and no segment left */
      mxgw_queue_free(q);
      q = open_queue(dir, 1, 0);
      CHECK(mxgw_queue_count(q, MXGW_QSTATE_INCOMING) == (int)ngood);
      CHECK(count_dir(dir, "incoming", NULL, 0, NULL) == 2 * ngood);
      CHECK(count_dir(dir, "journal", NULL, 0, NULL) == 0);
      CHECK(mxgw_queue_count(q, MXGW_QSTATE_CORRUPT) == (int)(2 * nbad));
    }
  }
  CHECK(count_dir(dir, "tmp", NULL, 0, NULL) == 0);
  mxgw_queue_free(q);

  for (size_t i = 0; i < nv; i++)
    free(v[i].body);
  free(v);
  free(copy);
  CHECK(nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0);
  return 0;
}
