/* SPDX-License-Identifier: MIT */
/*
 * mxgw_resolver_ares.c: the c-ares backend of mxgw_resolver. It is written
 * for c-ares 1.18 (Debian 12): no event thread, no ares_process_fds(), no
 * cache. The caller's event loop learns which descriptors to watch from
 * c-ares' socket-state callback (ARES_OPT_SOCK_STATE_CB, tracked here for
 * mxgw_resolver_fds()), and drives c-ares with ares_process_fd() and
 * ares_timeout(). Queries are built and answers parsed here (ares_send with
 * our own packet, not ares_query/ares_parse_*), so that the rcode, CNAME
 * chains, every TTL, the SOA of negative answers (RFC 2308) and multi-string
 * TXT records (concatenated, RFC 7208 3.3) are all seen exactly. On top of
 * c-ares sit a TTL-respecting cache shared by all queries of the resolver
 * (bounded, least recently used entries evicted first) and coalescing of
 * identical queries in flight. User callbacks never run inside c-ares: its
 * callback only records the outcome, and mxgw_resolver_process() delivers.
 */
#include <arpa/inet.h>
#include <sys/select.h> /* fd_set, which ares.h uses */

#include <ares.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "mxgw_int.h"
#include "mxgw_resolver_ares.h"
#include "mxgw_resolver_int.h"

/* Limits. A name in wire form is at most 255 octets (RFC 1035 2.3.4). */
#define WIRE_MAX 255
#define CHAIN_MAX 16       /* CNAMEs followed inside one answer */
#define RESTART_MAX 8      /* new queries for a CNAME target left dangling */
#define POS_TTL_MAX 86400  /* cache positive answers at most a day */
#define PTR_HOPS_MAX 64    /* compression pointers followed in one name */

#define DNS_CLASS_IN 1
#define DNS_TYPE_SOA 6

/* ---- intrusive circular list of queries ------------------------------ */

/* A lookup the caller made (the public mxgw_dns_query handle). It waits on
 * a flight (a DNS query in c-ares) or, once its outcome is known without
 * the network (cache hit, shutdown), on the resolver's ready list. */
struct mxgw_dns_query {
  struct mxgw_dns_query *prev, *next;
  mxgw_dns_cb cb;
  void *arg;
  /* ready-list entries only */
  int status;
  struct ans_blob *blob;
  uint32_t ttl;
};

static void qlist_init(struct mxgw_dns_query *h) { h->prev = h->next = h; }
static bool qlist_empty(const struct mxgw_dns_query *h) { return h->next == h; }
static void qlist_push(struct mxgw_dns_query *h, struct mxgw_dns_query *q) {
  q->prev = h->prev;
  q->next = h;
  h->prev->next = q;
  h->prev = q;
}
static void qlist_unlink(struct mxgw_dns_query *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  q->prev = q->next = q;
}
/* Move every entry of src to the end of dst; src becomes empty. */
static void qlist_splice(struct mxgw_dns_query *dst, struct mxgw_dns_query *src) {
  if (qlist_empty(src))
    return;
  src->next->prev = dst->prev;
  dst->prev->next = src->next;
  src->prev->next = dst;
  dst->prev = src->prev;
  qlist_init(src);
}

/* ---- answers ----------------------------------------------------------- */

/* One immutable, reference-counted answer: shared by the cache and by every
 * delivery of it. The rr array and the record bytes follow the struct in the
 * same allocation. */
typedef struct ans_blob {
  size_t refs;
  mxgw_dns_answer ans;
} ans_blob;

/* ---- the resolver ------------------------------------------------------ */

typedef struct flight flight;
typedef struct centry centry;

typedef struct ares_res {
  struct mxgw_resolver base; /* first: the generic layer casts */
  ares_channel ch;
  bool destroying;
  uint32_t cache_cap;
  uint32_t neg_ttl_max;

  struct { int fd; int ev; } *fds; /* sockets c-ares wants watched */
  size_t nfds, capfds;

  flight **ftab; /* identical queries in flight, by (name, type) */
  size_t fbuckets, nflights;
  flight *done_head, **done_tail; /* flights whose outcome is known */

  struct mxgw_dns_query ready; /* outcomes known without the network */
  size_t npending;

  centry **ctab; /* the cache: hash table plus an LRU list */
  size_t cbuckets, ncache;
  centry *lru_head, *lru_tail; /* head = most recently used */

  mxgw__ares_stats st;
} ares_res;

/* A DNS question in flight in c-ares, with the lookups waiting on it. */
struct flight {
  flight *hnext;
  flight *dnext;
  ares_res *res;
  struct mxgw_dns_query waiters;
  uint32_t hash;
  int type;
  int restarts;
  uint32_t chain_ttl; /* smallest TTL of the CNAMEs followed so far */
  bool done;
  int status;
  ans_blob *blob;
  int64_t cache_ttl; /* seconds; -1: do not cache */
  size_t klen;
  uint8_t key[WIRE_MAX]; /* the asked name, wire form, lower case */
};

/* A cache entry. */
struct centry {
  centry *hnext;
  centry *lprev, *lnext;
  uint32_t hash;
  int type;
  int status; /* MXGW_DNS_OK, _NODATA or _NXDOMAIN */
  ans_blob *blob;
  int64_t expires_ms;
  size_t klen;
  uint8_t key[];
};

static const mxgw_resolver_ops ares_ops;


static void blob_unref(ares_res *a, ans_blob *b) {
  if (b && --b->refs == 0)
    mxgw__free(&a->base.mem, b);
}

/* ---- names --------------------------------------------------------------- */

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Text name to uncompressed wire form. As in the static resolver, dots
 * always separate labels and every other byte is taken as it is (no \X or
 * \DDD escapes: SPF builds names by macro expansion, not from zone files);
 * one trailing dot is allowed. Returns the wire length, or -1 for an empty
 * name, an empty label, a label over 63 octets or a name over 255 octets in
 * wire form (253 characters). */
static int name_to_wire(const char *s, uint8_t *out) {
  size_t o = 1, lab = 0, llen = 0;
  if (!s || !*s || (s[0] == '.' && s[1] == 0))
    return -1;
  out[0] = 0;
  for (const char *p = s;; p++) {
    if (*p == 0 || *p == '.') {
      if (llen == 0)
        return -1; /* empty label (a lone trailing dot is handled below) */
      out[lab] = (uint8_t)llen;
      if (*p == 0 || p[1] == 0)
        break;
      lab = o++;
      if (o >= WIRE_MAX)
        return -1;
      out[lab] = 0;
      llen = 0;
      continue;
    }
    if (llen == 63 || o >= WIRE_MAX - 1)
      return -1;
    out[o++] = (uint8_t)*p;
    llen++;
  }
  out[o++] = 0;
  return (int)o;
}

/* Uncompressed wire name to text without the final dot ("" for the root).
 * Bytes are copied as they are, except the two that cannot be part of a
 * text name: a dot inside a label and NUL, written \046 and \000. Returns
 * the length written (the output holds at most 4 * 255 + 1 bytes). */
static size_t wire_to_text(const uint8_t *w, char *out) {
  size_t o = 0;
  for (size_t i = 0; w[i]; i += (size_t)w[i] + 1) {
    if (o)
      out[o++] = '.';
    for (size_t j = 1; j <= w[i]; j++) {
      unsigned c = w[i + j];
      if (c == '.' || c == 0) {
        o += (size_t)snprintf(out + o, 5, "\\%03u", c);
      } else {
        out[o++] = (char)c;
      }
    }
  }
  out[o] = 0;
  return o;
}

static size_t wire_len(const uint8_t *w) {
  size_t i = 0;
  while (w[i])
    i += (size_t)w[i] + 1;
  return i + 1;
}

/* Case-insensitive comparison of two uncompressed wire names. Length octets
 * are at most 63, below 'A', so lower-casing every byte is safe. */
static bool wire_eq(const uint8_t *a, const uint8_t *b) {
  size_t la = wire_len(a), lb = wire_len(b);
  if (la != lb)
    return false;
  for (size_t i = 0; i < la; i++)
    if (lower(a[i]) != lower(b[i]))
      return false;
  return true;
}

static uint32_t key_hash(const uint8_t *k, size_t n, int type) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (uint8_t)lower(k[i]);
    h *= 16777619u;
  }
  h ^= (uint32_t)type;
  h *= 16777619u;
  return h;
}

/* Read a possibly compressed name at *off of msg[0..len) into out (wire,
 * case kept). Advances *off past the name as it appears at *off. Returns
 * false on any malformation: overrun, bad label type, pointer loop, over-
 * long name. */
static bool read_name(const uint8_t *msg, size_t len, size_t *off,
                      uint8_t *out) {
  size_t pos = *off, o = 0;
  bool jumped = false;
  int hops = 0;
  for (;;) {
    if (pos >= len)
      return false;
    unsigned c = msg[pos];
    if (c == 0) {
      out[o++] = 0;
      if (!jumped)
        *off = pos + 1;
      return true;
    }
    if ((c & 0xC0) == 0xC0) {
      if (pos + 1 >= len || ++hops > PTR_HOPS_MAX)
        return false;
      size_t ptr = ((size_t)(c & 0x3F) << 8) | msg[pos + 1];
      if (!jumped)
        *off = pos + 2;
      jumped = true;
      pos = ptr;
      continue;
    }
    if (c & 0xC0)
      return false; /* extended label types (RFC 6891) are not names */
    if (pos + 1 + c > len || o + 1 + c + 1 > WIRE_MAX)
      return false;
    memcpy(out + o, msg + pos, 1 + (size_t)c);
    o += 1 + (size_t)c;
    pos += 1 + (size_t)c;
  }
}

/* ---- answer parsing ------------------------------------------------------ */

typedef struct rrinfo {
  size_t owner; /* offset of the owner name */
  int type, klass;
  uint32_t ttl;
  size_t rd, rdlen; /* rdata offset and length */
} rrinfo;

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
         ((uint32_t)p[2] << 8) | p[3];
}

/* RFC 2181 8: a TTL with the top bit set is treated as zero. */
static uint32_t fix_ttl(uint32_t t) { return (t & 0x80000000u) ? 0 : t; }

/* Parse count resource records starting at *off. Fills rr[0..count). */
static bool parse_rrs(const uint8_t *msg, size_t len, size_t *off,
                      size_t count, rrinfo *rr) {
  uint8_t tmp[WIRE_MAX + 1];
  for (size_t i = 0; i < count; i++) {
    rr[i].owner = *off;
    if (!read_name(msg, len, off, tmp) || *off + 10 > len)
      return false;
    const uint8_t *p = msg + *off;
    rr[i].type = get16(p);
    rr[i].klass = get16(p + 2);
    rr[i].ttl = fix_ttl(get32(p + 4));
    rr[i].rdlen = get16(p + 8);
    rr[i].rd = *off + 10;
    if (rr[i].rd + rr[i].rdlen > len)
      return false;
    *off = rr[i].rd + rr[i].rdlen;
  }
  return true;
}

/* The outcome of one answer. */
typedef struct outcome {
  int status;
  ans_blob *blob;
  int64_t cache_ttl;          /* seconds, -1: not cacheable */
  bool restart;               /* ask again for `next` (dangling CNAME) */
  uint8_t next[WIRE_MAX + 1]; /* wire */
} outcome;

/* Size the record data of one RR needs in a blob (0 terminator included),
 * or -1 if the rdata is malformed for its type. */
static long rdata_size(const uint8_t *msg, size_t len, const rrinfo *rr,
                       int type) {
  uint8_t tmp[WIRE_MAX + 1];
  size_t off;
  switch (type) {
  case MXGW_DNS_A:
    return rr->rdlen == 4 ? 5 : -1;
  case MXGW_DNS_AAAA:
    return rr->rdlen == 16 ? 17 : -1;
  case MXGW_DNS_TXT: {
    size_t i = 0, n = 0;
    while (i < rr->rdlen) {
      size_t sl = msg[rr->rd + i];
      if (i + 1 + sl > rr->rdlen)
        return -1;
      n += sl;
      i += 1 + sl;
    }
    return (long)n + 1;
  }
  case MXGW_DNS_MX:
  case MXGW_DNS_PTR:
  case MXGW_DNS_CNAME:
    off = rr->rd + (type == MXGW_DNS_MX ? 2 : 0);
    if (rr->rdlen < (type == MXGW_DNS_MX ? 3u : 1u))
      return -1;
    if (!read_name(msg, len, &off, tmp) || off != rr->rd + rr->rdlen)
      return -1;
    return 4 * WIRE_MAX + 2;
  default:
    return -1;
  }
}

/* Write the data of one RR into dst; returns its length (no terminator). */
static size_t rdata_write(const uint8_t *msg, size_t len, const rrinfo *rr,
                          int type, char *dst, int *pref) {
  uint8_t tmp[WIRE_MAX + 1];
  size_t off, n = 0;
  *pref = 0;
  switch (type) {
  case MXGW_DNS_A:
  case MXGW_DNS_AAAA:
    memcpy(dst, msg + rr->rd, rr->rdlen);
    n = rr->rdlen;
    break;
  case MXGW_DNS_TXT:
    for (size_t i = 0; i < rr->rdlen;) {
      size_t sl = msg[rr->rd + i];
      memcpy(dst + n, msg + rr->rd + i + 1, sl);
      n += sl;
      i += 1 + sl;
    }
    break;
  default: /* MX, PTR, CNAME: validated by rdata_size */
    off = rr->rd;
    if (type == MXGW_DNS_MX) {
      *pref = get16(msg + rr->rd);
      off += 2;
    }
    (void)read_name(msg, len, &off, tmp);
    n = wire_to_text(tmp, dst);
    break;
  }
  dst[n] = 0;
  return n;
}

/*
 * Turn a DNS message into an outcome for a question about `qname` (wire) of
 * type `type`. The rcode decides between NXDOMAIN, SERVFAIL and the rest; a
 * NOERROR answer is searched along the CNAME chain from qname. A chain that
 * ends at a name with neither data nor an SOA in the authority section (an
 * authoritative server answering only for its own zone) asks for a restart
 * at the chain's end.
 */
static void parse_answer(ares_res *a, const uint8_t *msg, size_t len,
                         const uint8_t *qname, int type, uint32_t chain_ttl,
                         outcome *out) {
  const mxgw_mem *m = &a->base.mem;
  rrinfo *rr = NULL;
  uint8_t cur[WIRE_MAX + 1], tmp[WIRE_MAX + 1];
  out->status = MXGW_DNS_ERROR;
  out->blob = NULL;
  out->cache_ttl = -1;
  out->restart = false;

  if (len < 12)
    return;
  unsigned flags = get16(msg + 2);
  if (!(flags & 0x8000) || ((flags >> 11) & 0xF) != 0)
    return; /* not a response, or not a standard query */
  int rcode = (int)(flags & 0xF);
  size_t qd = get16(msg + 4), an = get16(msg + 6), ns = get16(msg + 8);
  if (rcode == 2 || rcode == 4 || rcode == 5) {
    out->status = MXGW_DNS_SERVFAIL;
    return;
  }
  if (rcode != 0 && rcode != 3)
    return;

  size_t off = 12;
  for (size_t i = 0; i < qd; i++) {
    if (!read_name(msg, len, &off, tmp) || off + 4 > len)
      return;
    off += 4;
  }
  /* Every RR takes at least 11 octets: bounds the allocation. */
  if (an + ns > (len - off) / 11 + 1)
    return;
  rr = mxgw__calloc(m, an + ns + 1, sizeof *rr);
  if (!rr)
    return;
  if (!parse_rrs(msg, len, &off, an + ns, rr))
    goto done;

  /* Negative TTL (RFC 2308 5): min(SOA TTL, SOA MINIMUM) from authority. */
  int64_t neg_ttl = -1;
  for (size_t i = an; i < an + ns; i++) {
    if (rr[i].type == DNS_TYPE_SOA && rr[i].rdlen >= 22) {
      uint32_t mn = fix_ttl(get32(msg + rr[i].rd + rr[i].rdlen - 4));
      neg_ttl = rr[i].ttl < mn ? rr[i].ttl : mn;
      break;
    }
  }

  /* Follow the CNAME chain inside the answer section. */
  memcpy(cur, qname, wire_len(qname));
  uint32_t ttl = chain_ttl;
  size_t nmatch = 0;
  bool followed = false;
  for (int hop = 0; hop <= CHAIN_MAX; hop++) {
    nmatch = 0;
    for (size_t i = 0; i < an; i++) {
      size_t o = rr[i].owner;
      if (rr[i].type != type || rr[i].klass != DNS_CLASS_IN)
        continue;
      if (!read_name(msg, len, &o, tmp))
        goto done;
      if (wire_eq(tmp, cur))
        nmatch++;
    }
    if (nmatch || type == MXGW_DNS_CNAME || hop == CHAIN_MAX)
      break;
    bool found = false;
    for (size_t i = 0; i < an && !found; i++) {
      size_t o = rr[i].owner;
      if (rr[i].type != MXGW_DNS_CNAME || rr[i].klass != DNS_CLASS_IN)
        continue;
      if (!read_name(msg, len, &o, tmp))
        goto done;
      if (!wire_eq(tmp, cur))
        continue;
      o = rr[i].rd;
      if (!read_name(msg, len, &o, tmp) || o != rr[i].rd + rr[i].rdlen)
        goto done;
      memcpy(cur, tmp, wire_len(tmp));
      if (rr[i].ttl < ttl)
        ttl = rr[i].ttl;
      found = followed = true;
    }
    if (!found)
      break;
  }

  if (rcode == 3) {
    out->status = MXGW_DNS_NXDOMAIN;
    if (neg_ttl >= 0)
      out->cache_ttl = neg_ttl < ttl ? neg_ttl : ttl;
    goto done;
  }
  if (nmatch == 0) {
    if (followed && neg_ttl < 0) {
      /* CNAME to a name this server said nothing about: ask for it. */
      out->restart = true;
      memcpy(out->next, cur, wire_len(cur));
      out->cache_ttl = ttl; /* carries the chain TTL to the restart */
      goto done;
    }
    out->status = MXGW_DNS_NODATA;
    if (neg_ttl >= 0)
      out->cache_ttl = neg_ttl < ttl ? neg_ttl : ttl;
    goto done;
  }

  /* Build the blob: sizes first, then the bytes. */
  size_t total = sizeof(ans_blob) + nmatch * sizeof(mxgw_dns_rr);
  for (size_t i = 0; i < an; i++) {
    size_t o = rr[i].owner;
    if (rr[i].type != type || rr[i].klass != DNS_CLASS_IN)
      continue;
    (void)read_name(msg, len, &o, tmp);
    if (!wire_eq(tmp, cur))
      continue;
    long sz = rdata_size(msg, len, &rr[i], type);
    if (sz < 0)
      goto done; /* a malformed record of the asked type */
    total += (size_t)sz;
  }
  ans_blob *b = mxgw__malloc(m, total);
  if (!b)
    goto done;
  mxgw_dns_rr *rrs = (mxgw_dns_rr *)(b + 1);
  char *data = (char *)(rrs + nmatch);
  size_t k = 0;
  for (size_t i = 0; i < an; i++) {
    size_t o = rr[i].owner;
    if (rr[i].type != type || rr[i].klass != DNS_CLASS_IN)
      continue;
    (void)read_name(msg, len, &o, tmp);
    if (!wire_eq(tmp, cur))
      continue;
    int pref;
    size_t n = rdata_write(msg, len, &rr[i], type, data, &pref);
    rrs[k].data = data;
    rrs[k].len = n;
    rrs[k].pref = pref;
    data += n + 1;
    if (rr[i].ttl < ttl)
      ttl = rr[i].ttl;
    k++;
  }
  b->refs = 1;
  b->ans.type = type;
  b->ans.ttl = ttl;
  b->ans.n = k;
  b->ans.rr = rrs;
  out->blob = b;
  out->status = MXGW_DNS_OK;
  out->cache_ttl = ttl > POS_TTL_MAX ? POS_TTL_MAX : ttl;
done:
  mxgw__free(m, rr);
  if (out->status != MXGW_DNS_OK && !out->restart && out->cache_ttl > a->neg_ttl_max)
    out->cache_ttl = a->neg_ttl_max;
  if ((out->status == MXGW_DNS_ERROR && !out->restart) ||
      out->status == MXGW_DNS_SERVFAIL)
    out->cache_ttl = -1;
}

/* ---- the cache ------------------------------------------------------------- */

static void lru_unlink(ares_res *a, centry *e) {
  if (e->lprev)
    e->lprev->lnext = e->lnext;
  else
    a->lru_head = e->lnext;
  if (e->lnext)
    e->lnext->lprev = e->lprev;
  else
    a->lru_tail = e->lprev;
  e->lprev = e->lnext = NULL;
}

static void lru_push_front(ares_res *a, centry *e) {
  e->lprev = NULL;
  e->lnext = a->lru_head;
  if (a->lru_head)
    a->lru_head->lprev = e;
  a->lru_head = e;
  if (!a->lru_tail)
    a->lru_tail = e;
}

static void cache_remove(ares_res *a, centry *e) {
  centry **pp = &a->ctab[e->hash & (a->cbuckets - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  lru_unlink(a, e);
  blob_unref(a, e->blob);
  mxgw__free(&a->base.mem, e);
  a->ncache--;
}

static centry *cache_find(ares_res *a, const uint8_t *key, size_t klen,
                          int type, uint32_t hash, int64_t now) {
  if (!a->ctab)
    return NULL;
  for (centry *e = a->ctab[hash & (a->cbuckets - 1)]; e; e = e->hnext) {
    if (e->hash != hash || e->type != type || e->klen != klen ||
        memcmp(e->key, key, klen) != 0)
      continue;
    if (e->expires_ms <= now) {
      cache_remove(a, e);
      return NULL;
    }
    lru_unlink(a, e);
    lru_push_front(a, e);
    return e;
  }
  return NULL;
}

static void cache_put(ares_res *a, const flight *f) {
  if (!a->ctab || f->cache_ttl <= 0 || a->destroying)
    return;
  int64_t now = mxgw__mono_ms();
  centry *old = cache_find(a, f->key, f->klen, f->type, f->hash, now);
  if (old)
    cache_remove(a, old);
  while (a->ncache >= a->cache_cap && a->lru_tail) {
    cache_remove(a, a->lru_tail);
    a->st.evictions++;
  }
  centry *e = mxgw__malloc(&a->base.mem, sizeof *e + f->klen);
  if (!e)
    return; /* the cache is an optimisation: skip on memory shortage */
  e->hash = f->hash;
  e->type = f->type;
  e->status = f->status;
  e->blob = f->blob;
  if (e->blob)
    e->blob->refs++;
  e->expires_ms = now + f->cache_ttl * 1000;
  e->klen = f->klen;
  memcpy(e->key, f->key, f->klen);
  size_t bi = e->hash & (a->cbuckets - 1);
  e->hnext = a->ctab[bi];
  a->ctab[bi] = e;
  lru_push_front(a, e);
  a->ncache++;
}

/* ---- flights ---------------------------------------------------------------- */

static flight *flight_find(ares_res *a, const uint8_t *key, size_t klen,
                           int type, uint32_t hash) {
  for (flight *f = a->ftab[hash & (a->fbuckets - 1)]; f; f = f->hnext)
    if (f->hash == hash && f->type == type && f->klen == klen &&
        memcmp(f->key, key, klen) == 0)
      return f;
  return NULL;
}

static void flight_unhash(ares_res *a, flight *f) {
  flight **pp = &a->ftab[f->hash & (a->fbuckets - 1)];
  while (*pp && *pp != f)
    pp = &(*pp)->hnext;
  if (*pp) {
    *pp = f->hnext;
    a->nflights--;
  }
  f->hnext = NULL;
}

static int flight_hash_in(ares_res *a, flight *f) {
  if (a->nflights >= a->fbuckets) {
    size_t nb = a->fbuckets * 2;
    flight **nt = mxgw__calloc(&a->base.mem, nb, sizeof *nt);
    if (!nt)
      return MXGW_E_NOMEM;
    for (size_t i = 0; i < a->fbuckets; i++) {
      for (flight *g = a->ftab[i], *nx; g; g = nx) {
        nx = g->hnext;
        g->hnext = nt[g->hash & (nb - 1)];
        nt[g->hash & (nb - 1)] = g;
      }
    }
    mxgw__free(&a->base.mem, a->ftab);
    a->ftab = nt;
    a->fbuckets = nb;
  }
  f->hnext = a->ftab[f->hash & (a->fbuckets - 1)];
  a->ftab[f->hash & (a->fbuckets - 1)] = f;
  a->nflights++;
  return MXGW_OK;
}

static void flight_finish(flight *f, int status, ans_blob *blob,
                          int64_t cache_ttl) {
  ares_res *a = f->res;
  f->done = true;
  f->status = status;
  f->blob = blob;
  f->cache_ttl = cache_ttl;
  f->dnext = NULL;
  *a->done_tail = f;
  a->done_tail = &f->dnext;
}

static void ares_cb(void *arg, int status, int timeouts, unsigned char *abuf,
                    int alen);

/* Hand a question about `name` (wire) to c-ares. */
static void flight_send(flight *f, const uint8_t *name) {
  ares_res *a = f->res;
  uint8_t pkt[12 + WIRE_MAX + 4];
  size_t nl = wire_len(name);
  memset(pkt, 0, 12);
  pkt[2] = 0x01; /* RD; c-ares sets a random ID */
  pkt[5] = 1;    /* QDCOUNT */
  memcpy(pkt + 12, name, nl);
  pkt[12 + nl] = (uint8_t)(f->type >> 8);
  pkt[13 + nl] = (uint8_t)f->type;
  pkt[14 + nl] = 0;
  pkt[15 + nl] = DNS_CLASS_IN;
  a->st.sent++;
  /* May call ares_cb synchronously (no servers, no memory): it only
   * records the outcome, which mxgw_resolver_process() then delivers. */
  ares_send(a->ch, pkt, (int)(16 + nl), ares_cb, f);
}

static void ares_cb(void *arg, int status, int timeouts, unsigned char *abuf,
                    int alen) {
  flight *f = arg;
  ares_res *a = f->res;
  (void)timeouts;
  switch (status) {
  case ARES_SUCCESS:
    if (abuf && alen > 0) {
      outcome o;
      parse_answer(a, abuf, (size_t)alen, f->key, f->type, f->chain_ttl, &o);
      if (o.restart) {
        if (f->restarts < RESTART_MAX && !a->destroying) {
          f->restarts++;
          f->chain_ttl = (uint32_t)o.cache_ttl;
          flight_send(f, o.next);
          return;
        }
        flight_finish(f, MXGW_DNS_ERROR, NULL, -1);
        return;
      }
      flight_finish(f, o.status, o.blob, o.cache_ttl);
      return;
    }
    flight_finish(f, MXGW_DNS_ERROR, NULL, -1);
    return;
  case ARES_ENODATA:
    flight_finish(f, MXGW_DNS_NODATA, NULL, -1);
    return;
  case ARES_ENOTFOUND:
    flight_finish(f, MXGW_DNS_NXDOMAIN, NULL, -1);
    return;
  case ARES_ESERVFAIL:
  case ARES_EREFUSED:
  case ARES_ENOTIMP:
  case ARES_ECONNREFUSED:
    flight_finish(f, MXGW_DNS_SERVFAIL, NULL, -1);
    return;
  case ARES_ETIMEOUT:
    flight_finish(f, MXGW_DNS_TIMEOUT, NULL, -1);
    return;
  default: /* EBADRESP, EFORMERR, ENOMEM, EDESTRUCTION, ECANCELLED, ... */
    flight_finish(f, MXGW_DNS_ERROR, NULL, -1);
    return;
  }
}

/* ---- delivery ----------------------------------------------------------------- */

static void call_one(ares_res *a, struct mxgw_dns_query *q, int status,
                     const ans_blob *b, uint32_t ttl) {
  a->npending--;
  if (status == MXGW_DNS_OK && b) {
    mxgw_dns_answer ans = b->ans;
    ans.ttl = ttl;
    q->cb(q->arg, status, &ans);
  } else {
    q->cb(q->arg, status == MXGW_DNS_OK ? MXGW_DNS_ERROR : status, NULL);
  }
}

/* Run the callbacks of every outcome known when called. Outcomes that
 * appear meanwhile (queries made from callbacks) wait for the next call, so
 * one call always ends. Returns the number of callbacks run. */
static int deliver(ares_res *a) {
  int n = 0;
  flight *list = a->done_head;
  a->done_head = NULL;
  a->done_tail = &a->done_head;

  struct mxgw_dns_query ready;
  qlist_init(&ready);
  qlist_splice(&ready, &a->ready);

  while (list) {
    flight *f = list;
    list = f->dnext;
    flight_unhash(a, f);
    if (f->status == MXGW_DNS_OK || f->status == MXGW_DNS_NODATA ||
        f->status == MXGW_DNS_NXDOMAIN)
      cache_put(a, f);
    struct mxgw_dns_query w;
    qlist_init(&w);
    qlist_splice(&w, &f->waiters);
    ans_blob *b = f->blob;
    int status = a->destroying ? MXGW_DNS_ERROR : f->status;
    uint32_t ttl = b ? b->ans.ttl : 0;
    mxgw__free(&a->base.mem, f);
    /* A callback may cancel another waiter: it unlinks itself from w. */
    while (!qlist_empty(&w)) {
      struct mxgw_dns_query *q = w.next;
      qlist_unlink(q);
      call_one(a, q, status, b, ttl);
      mxgw__free(&a->base.mem, q);
      n++;
    }
    blob_unref(a, b);
  }

  while (!qlist_empty(&ready)) {
    struct mxgw_dns_query *q = ready.next;
    qlist_unlink(q);
    call_one(a, q, a->destroying ? MXGW_DNS_ERROR : q->status, q->blob, q->ttl);
    blob_unref(a, q->blob);
    mxgw__free(&a->base.mem, q);
    n++;
  }
  return n;
}

/* ---- ops ---------------------------------------------------------------------- */

static bool type_ok(int type) {
  return type == MXGW_DNS_A || type == MXGW_DNS_AAAA || type == MXGW_DNS_MX ||
         type == MXGW_DNS_TXT || type == MXGW_DNS_PTR ||
         type == MXGW_DNS_CNAME;
}

static int op_query(mxgw_resolver *r, const char *name, int type,
                    mxgw_dns_cb cb, void *arg, mxgw_dns_query **qout) {
  ares_res *a = (ares_res *)r;
  const mxgw_mem *m = &r->mem;
  uint8_t wire[WIRE_MAX + 1];
  if (qout)
    *qout = NULL;
  if (a->destroying)
    return mxgw__resolver_set_err(r, MXGW_E_STATE, "resolver is being freed");
  if (!cb || !type_ok(type))
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "unsupported type %d", type);
  int wl = name_to_wire(name, wire);
  if (wl < 0)
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "not a domain name: \"%.200s\"",
                                  name ? name : "(null)");
  size_t klen = (size_t)wl;
  for (size_t i = 0; i < klen; i++)
    wire[i] = (uint8_t)lower(wire[i]);
  uint32_t hash = key_hash(wire, klen, type);

  struct mxgw_dns_query *q = mxgw__calloc(m, 1, sizeof *q);
  if (!q)
    return mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
  q->cb = cb;
  q->arg = arg;
  qlist_init(q);

  centry *e = cache_find(a, wire, klen, type, hash, mxgw__mono_ms());
  if (e) {
    q->status = e->status;
    q->blob = e->blob;
    if (q->blob)
      q->blob->refs++;
    int64_t left = (e->expires_ms - mxgw__mono_ms()) / 1000;
    q->ttl = left < 0 ? 0 : (uint32_t)left;
    qlist_push(&a->ready, q);
    a->st.cache_hits++;
  } else {
    flight *f = flight_find(a, wire, klen, type, hash);
    if (f) {
      qlist_push(&f->waiters, q);
      a->st.coalesced++;
    } else {
      f = mxgw__calloc(m, 1, sizeof *f);
      if (!f) {
        mxgw__free(m, q);
        return mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
      }
      f->res = a;
      f->type = type;
      f->hash = hash;
      f->klen = klen;
      f->chain_ttl = UINT32_MAX;
      memcpy(f->key, wire, klen);
      qlist_init(&f->waiters);
      if (flight_hash_in(a, f) != MXGW_OK) {
        mxgw__free(m, f);
        mxgw__free(m, q);
        return mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
      }
      qlist_push(&f->waiters, q);
      flight_send(f, f->key);
    }
  }
  a->st.lookups++;
  a->npending++;
  if (qout)
    *qout = q;
  return MXGW_OK;
}

static void op_cancel(mxgw_resolver *r, mxgw_dns_query *q) {
  ares_res *a = (ares_res *)r;
  if (!q)
    return;
  /* The flight, if any, goes on: its answer still fills the cache. */
  qlist_unlink(q);
  blob_unref(a, q->blob);
  mxgw__free(&r->mem, q);
  a->npending--;
}

static size_t op_pending(const mxgw_resolver *r) {
  return ((const ares_res *)r)->npending;
}

static int op_fds(mxgw_resolver *r, int *fds, int *events, int cap) {
  ares_res *a = (ares_res *)r;
  for (size_t i = 0; i < a->nfds && (int)i < cap; i++) {
    if (fds)
      fds[i] = a->fds[i].fd;
    if (events)
      events[i] = a->fds[i].ev;
  }
  return (int)a->nfds;
}

static int64_t op_timeout(mxgw_resolver *r) {
  ares_res *a = (ares_res *)r;
  if (a->done_head || !qlist_empty(&a->ready))
    return 0;
  struct timeval tv;
  if (!a->ch || !ares_timeout(a->ch, NULL, &tv))
    return -1;
  return (int64_t)tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
}

static int op_process(mxgw_resolver *r, int fd, int events) {
  ares_res *a = (ares_res *)r;
  if (a->ch) {
    ares_socket_t rd = ARES_SOCKET_BAD, wr = ARES_SOCKET_BAD;
    if (fd >= 0 && (events & 1))
      rd = fd;
    if (fd >= 0 && (events & 2))
      wr = fd;
    /* Also handles the timeouts that are due. */
    ares_process_fd(a->ch, rd, wr);
  }
  return deliver(a);
}

static void free_all(ares_res *a) {
  const mxgw_mem *m = &a->base.mem;
  while (a->lru_head)
    cache_remove(a, a->lru_head);
  mxgw__free(m, a->ctab);
  mxgw__free(m, a->ftab);
  mxgw__free(m, a->fds);
  mxgw__free(m, a);
}

static void op_destroy(mxgw_resolver *r) {
  ares_res *a = (ares_res *)r;
  a->destroying = true;
  if (a->ch) {
    /* Every query in c-ares completes with ARES_EDESTRUCTION. */
    ares_destroy(a->ch);
    a->ch = NULL;
  }
  /* Callbacks may start queries (refused now) or cancel others. */
  while (a->done_head || !qlist_empty(&a->ready))
    deliver(a);
  free_all(a);
}

static const mxgw_resolver_ops ares_ops = {
    "ares",     op_query,   op_cancel,  op_pending,
    op_fds,     op_timeout, op_process, op_destroy,
};

/* c-ares says which sockets it wants watched, and for what. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable,
                          int writable) {
  ares_res *a = data;
  int ev = (readable ? 1 : 0) | (writable ? 2 : 0);
  for (size_t i = 0; i < a->nfds; i++) {
    if (a->fds[i].fd != fd)
      continue;
    if (ev) {
      a->fds[i].ev = ev;
    } else {
      a->fds[i] = a->fds[a->nfds - 1];
      a->nfds--;
    }
    return;
  }
  if (!ev)
    return;
  if (a->nfds == a->capfds) {
    size_t nc = a->capfds ? a->capfds * 2 : 8;
    void *p = mxgw__realloc(&a->base.mem, a->fds, nc * sizeof *a->fds);
    if (!p)
      return; /* the descriptor goes unwatched; timeouts still progress */
    a->fds = p;
    a->capfds = nc;
  }
  a->fds[a->nfds].fd = fd;
  a->fds[a->nfds].ev = ev;
  a->nfds++;
  int st = 0;
  socklen_t sl = sizeof st;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &st, &sl) == 0 && st == SOCK_STREAM)
    a->st.tcp_sockets++;
}

/* ---- construction ---------------------------------------------------------- */

static bool parse_uint(const char *s, unsigned long max, unsigned long *out) {
  if (!s || *s < '0' || *s > '9')
    return false;
  unsigned long v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return false;
    v = v * 10 + (unsigned long)(*s - '0');
    if (v > max)
      return false;
  }
  *out = v;
  return true;
}

/* Check one "IP", "IP:PORT", "[IPv6]" or "[IPv6]:PORT". */
static bool server_ok(const char *s, size_t n) {
  char host[64], port[8] = "";
  unsigned char buf[16];
  const char *colon = NULL;
  int colons = 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] == ':') {
      colons++;
      colon = s + i;
    }
  if (n && s[0] == '[') {
    const char *rb = memchr(s, ']', n);
    if (!rb || (size_t)(rb - s - 1) >= sizeof host)
      return false;
    memcpy(host, s + 1, (size_t)(rb - s - 1));
    host[rb - s - 1] = 0;
    size_t rest = n - (size_t)(rb - s) - 1;
    if (rest) {
      if (rb[1] != ':' || rest - 1 >= sizeof port || rest == 1)
        return false;
      memcpy(port, rb + 2, rest - 1);
      port[rest - 1] = 0;
    }
    if (inet_pton(AF_INET6, host, buf) != 1)
      return false;
  } else if (colons == 1) {
    size_t hl = (size_t)(colon - s), pl = n - hl - 1;
    if (hl >= sizeof host || pl == 0 || pl >= sizeof port)
      return false;
    memcpy(host, s, hl);
    host[hl] = 0;
    memcpy(port, colon + 1, pl);
    port[pl] = 0;
    if (inet_pton(AF_INET, host, buf) != 1)
      return false;
  } else {
    if (n >= sizeof host)
      return false;
    memcpy(host, s, n);
    host[n] = 0;
    if (inet_pton(colons ? AF_INET6 : AF_INET, host, buf) != 1)
      return false;
  }
  unsigned long p;
  if (port[0] && (!parse_uint(port, 65535, &p) || p == 0))
    return false;
  return true;
}

static bool servers_ok(const char *s) {
  if (!*s)
    return false;
  for (;;) {
    const char *c = strchr(s, ',');
    size_t n = c ? (size_t)(c - s) : strlen(s);
    if (!server_ok(s, n))
      return false;
    if (!c)
      return true;
    s = c + 1;
  }
}

int mxgw_resolver_new_ares(mxgw_resolver **out, const char *const *options,
                           const mxgw_mem *mem) {
  mxgw_mem m;
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw__mem_init(&m, mem);
  ares_res *a = mxgw__calloc(&m, 1, sizeof *a);
  if (!a)
    return MXGW_E_NOMEM;
  a->base.ops = &ares_ops;
  a->base.mem = m;
  a->base.errmsg[0] = 0;
  a->done_tail = &a->done_head;
  qlist_init(&a->ready);
  a->cache_cap = 10000;
  a->neg_ttl_max = 300;

  unsigned long timeout_ms = 2000, tries = 2, v;
  const char *servers = NULL;
  int rv = MXGW_OK;
  for (size_t i = 0; options && options[i]; i++) {
    const char *o = options[i], *eq = strchr(o, '=');
    size_t kl = eq ? (size_t)(eq - o) : 0;
    const char *val = eq ? eq + 1 : NULL;
#define KEY(k) (kl == sizeof(k) - 1 && memcmp(o, k, kl) == 0)
    if (!eq) {
      rv = MXGW_E_INVAL;
    } else if (KEY("servers")) {
      servers = val;
      if (!servers_ok(val))
        rv = MXGW_E_INVAL;
    } else if (KEY("timeout_ms")) {
      if (!parse_uint(val, 600000, &timeout_ms) || timeout_ms == 0)
        rv = MXGW_E_INVAL;
    } else if (KEY("tries")) {
      if (!parse_uint(val, 20, &tries) || tries == 0)
        rv = MXGW_E_INVAL;
    } else if (KEY("cache_size")) {
      if (!parse_uint(val, 100000000, &v))
        rv = MXGW_E_INVAL;
      else
        a->cache_cap = (uint32_t)v;
    } else if (KEY("negative_ttl")) {
      if (!parse_uint(val, 86400 * 7, &v))
        rv = MXGW_E_INVAL;
      else
        a->neg_ttl_max = (uint32_t)v;
    } else {
      rv = MXGW_E_INVAL;
    }
#undef KEY
    if (rv != MXGW_OK) {
      mxgw__resolver_set_err(&a->base, rv, "bad resolver option \"%.200s\"", o);
      goto fail;
    }
  }

  a->fbuckets = 64;
  a->ftab = mxgw__calloc(&m, a->fbuckets, sizeof *a->ftab);
  if (!a->ftab) {
    rv = MXGW_E_NOMEM;
    goto fail;
  }
  if (a->cache_cap) {
    size_t nb = 16;
    while (nb < a->cache_cap && nb < ((size_t)1 << 20))
      nb *= 2;
    a->cbuckets = nb;
    a->ctab = mxgw__calloc(&m, nb, sizeof *a->ctab);
    if (!a->ctab) {
      rv = MXGW_E_NOMEM;
      goto fail;
    }
  }

  struct ares_options ao;
  memset(&ao, 0, sizeof ao);
  /* No IGNTC: a truncated UDP answer is asked again over TCP. No EDNS, so
   * every answer over 512 octets takes that path. NOCHECKRESP is off, so
   * SERVFAIL/REFUSED/NOTIMP make c-ares try the next server first. */
  ao.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  ao.timeout = (int)timeout_ms;
  ao.tries = (int)tries;
  ao.sock_state_cb = sock_state_cb;
  ao.sock_state_cb_data = a;
  /* Room for the answers of a thousand lookups sent in one burst. */
  ao.socket_receive_buffer_size = 1 << 20;
  int mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
             ARES_OPT_SOCK_STATE_CB | ARES_OPT_SOCK_RCVBUF;
  int st = ares_init_options(&a->ch, &ao, mask);
  if (st != ARES_SUCCESS) {
    a->ch = NULL;
    rv = st == ARES_ENOMEM ? MXGW_E_NOMEM : MXGW_E_DNS;
    mxgw__resolver_set_err(&a->base, rv, "c-ares: %s", ares_strerror(st));
    goto fail;
  }
  if (servers) {
    st = ares_set_servers_ports_csv(a->ch, servers);
    if (st != ARES_SUCCESS) {
      rv = st == ARES_ENOMEM ? MXGW_E_NOMEM : MXGW_E_INVAL;
      mxgw__resolver_set_err(&a->base, rv, "c-ares: servers \"%.100s\": %s",
                             servers, ares_strerror(st));
      goto fail;
    }
  }
  *out = &a->base;
  return MXGW_OK;

fail:
  if (a->ch)
    ares_destroy(a->ch);
  a->ch = NULL;
  free_all(a);
  return rv;
}

int mxgw__resolver_ares_stats(const mxgw_resolver *r, mxgw__ares_stats *st) {
  if (!r || r->ops != &ares_ops || !st)
    return MXGW_E_UNSUPPORTED;
  const ares_res *a = (const ares_res *)r;
  *st = a->st;
  st->cache_entries = a->ncache;
  return MXGW_OK;
}
