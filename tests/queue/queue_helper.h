/* SPDX-License-Identifier: MIT */
/*
 * queue_helper.h: shared by the queue tests: a deterministic body for a
 * queue ID (so a recovered message can be checked without a record of what
 * was written), a helper that writes one message, and the spool
 * directory's listing and removal.
 */
#ifndef QUEUE_HELPER_H
#define QUEUE_HELPER_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mxgw/mxgw.h>

/* Entries of spool/sub, dot files aside; -1 if it cannot be opened. */
static inline int qh_count_entries(const char *spool, const char *sub) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", spool, sub);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (de->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

/* rm -rf path (a test's scratch spool); 0 when it went. */
static inline int qh_rm_rf(const char *path) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  return system(cmd);
}

/* FNV-1a of the ID picks the size: 1 .. 200000 octets. */
static inline size_t qh_body_size(const char *id) {
  uint32_t h = 2166136261u;
  for (const char *p = id; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  return 1 + h % 200000u;
}

/* Octet i of the body of `id`: lines "<id> NNNNNNNN\r\n" (the line number). */
static inline void qh_body(const char *id, size_t off, unsigned char *buf,
                           size_t len) {
  size_t idl = strlen(id), ll = idl + 11; /* id, space, 8 digits, CRLF */
  for (size_t i = 0; i < len; i++) {
    size_t pos = off + i, line = pos / ll, col = pos % ll;
    unsigned char c;
    if (col < idl)
      c = (unsigned char)id[col];
    else if (col == idl)
      c = ' ';
    else if (col < idl + 9) {
      size_t d = line;
      for (size_t k = idl + 8; k > col; k--)
        d /= 10;
      c = (unsigned char)('0' + d % 10);
    } else
      c = col == idl + 9 ? '\r' : '\n';
    buf[i] = c;
  }
}

/* Begin, stream the body in odd-sized chunks, set an envelope. */
static inline int qh_write(mxgw_queue *q, mxgw_queue_msg **out, char *id) {
  mxgw_queue_msg *m;
  int rc = mxgw_queue_begin(q, &m);
  if (rc != MXGW_OK)
    return rc;
  const char *p;
  size_t l;
  mxgw_queue_msg_id(m, &p, &l);
  snprintf(id, 32, "%s", p);
  size_t size = qh_body_size(id);
  unsigned char buf[7001];
  for (size_t off = 0; off < size;) {
    size_t n = size - off < sizeof buf ? size - off : sizeof buf - off % 13;
    qh_body(id, off, buf, n);
    if ((rc = mxgw_queue_write(m, buf, n)) != MXGW_OK) {
      mxgw_queue_msg_free(m);
      return rc;
    }
    off += n;
  }
  mxgw_queue_msg_set_str(m, MXGW_QKEY_SENDER, "alice@example.org", 17);
  mxgw_queue_msg_set_str(m, MXGW_QKEY_CLIENT_ADDR, "192.0.2.7", 9);
  mxgw_queue_msg_add_rcpt(m, "info@example.net", 16, 0, NULL, 0);
  mxgw_queue_msg_add_rcpt(m, "bob@example.net", 15,
                          MXGW_NOTIFY_FAILURE | MXGW_NOTIFY_DELAY,
                          "rfc822;bob@example.net", 22);
  *out = m;
  return MXGW_OK;
}

/* 1 if the body file at `path` is exactly the body of `id`. */
static inline int qh_check_body(const char *path, const char *id) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0;
  size_t size = qh_body_size(id), off = 0;
  unsigned char got[8192], want[8192];
  size_t n;
  int ok = 1;
  while ((n = fread(got, 1, sizeof got, f)) > 0) {
    if (off + n > size) {
      ok = 0;
      break;
    }
    qh_body(id, off, want, n);
    if (memcmp(got, want, n)) {
      ok = 0;
      break;
    }
    off += n;
  }
  fclose(f);
  return ok && off == size;
}

#endif
