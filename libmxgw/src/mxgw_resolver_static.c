/* SPDX-License-Identifier: MIT */
/*
 * mxgw_resolver_static.c: the static in-memory resolver. A hash table keyed
 * by the lower-cased owner name holds, per name, the records of each
 * supported type and optional per-type status overrides (SERVFAIL,
 * TIMEOUT). A lookup is O(1) plus the CNAME chain it follows (at most 8
 * links; longer chains and loops give SERVFAIL, as a recursive server
 * would). Queries are only queued by mxgw_resolver_query(); they are
 * answered, and their callbacks run, in mxgw_resolver_process(), so callers
 * never see a callback inside their own call. Query handles are recycled
 * through a free list, which keeps an evaluation that does many lookups
 * free of malloc.
 *
 * The RFC 1035 master-file parser (section 5.1) loads a zone into it:
 * $ORIGIN, $TTL, relative and absolute names, "@", omitted owners,
 * TTL/class in either order, parentheses, comments, quoted strings, and the
 * \X and \DDD escapes. A, AAAA, MX, TXT, PTR and CNAME are kept; other
 * types (SOA, NS, SPF ...) are parsed and skipped. A file is loaded whole or
 * not at all: an error names the line and adds nothing.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxgw_resolver_int.h"

#define NTYPES 6
#define CNAME_IDX 1
#define MAX_CNAME_HOPS 8
#define NAME_MAX_LEN 253

static int type_index(int type) {
  switch (type) {
  case MXGW_DNS_A:
    return 0;
  case MXGW_DNS_CNAME:
    return 1;
  case MXGW_DNS_PTR:
    return 2;
  case MXGW_DNS_MX:
    return 3;
  case MXGW_DNS_TXT:
    return 4;
  case MXGW_DNS_AAAA:
    return 5;
  default:
    return -1;
  }
}

typedef struct zset {
  mxgw_dns_rr *rr;
  size_t n, cap;
  uint32_t ttl; /* smallest TTL of the records */
  int status;   /* override: 0 or an mxgw_dns_status */
} zset;

typedef struct znode {
  char *name; /* lower case, no final dot */
  size_t len;
  uint32_t hash;
  zset set[NTYPES];
} znode;

enum { Q_FREE = 0, Q_QUEUED = 1, Q_RUNNING = 2 };

struct mxgw_dns_query {
  struct mxgw_dns_query *next, *prev;
  int where; /* Q_* */
  int type;
  mxgw_dns_cb cb;
  void *arg;
  size_t len;
  char name[NAME_MAX_LEN + 1];
};

typedef struct qlist {
  mxgw_dns_query *head, *tail;
  size_t n;
} qlist;

typedef struct static_res {
  struct mxgw_resolver base; /* first: the generic layer casts */
  znode **tab;
  size_t cap, count;
  qlist queued, running;
  mxgw_dns_query *free_q;
  size_t nfree;
  int destroying;
} static_res;

#define FREE_Q_MAX 1024

static const mxgw_resolver_ops static_ops;

static static_res *as_static(mxgw_resolver *r) {
  return (r && r->ops == &static_ops) ? (static_res *)r : NULL;
}

/* ---- names ------------------------------------------------------------ */

static uint32_t hash_name(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

/*
 * Normalize a name given as text: drop one final dot, lower-case ASCII,
 * check that labels are 1..63 octets and the whole at most 253. Dots always
 * separate labels (no escapes). The root (".") gives length 0 and is valid
 * only where allow_root says so.
 */
static int norm_name(const char *in, size_t n, char *out, size_t *outlen,
                     int allow_root) {
  if (n && in[n - 1] == '.')
    n--;
  if (n == 0) {
    *outlen = 0;
    return allow_root ? 0 : -1;
  }
  if (n > NAME_MAX_LEN)
    return -1;
  size_t lab = 0;
  for (size_t i = 0; i < n; i++) {
    char c = in[i];
    if (c == '.') {
      if (lab == 0)
        return -1;
      lab = 0;
    } else if (++lab > 63) {
      return -1;
    }
    out[i] = (char)mxgw__lower((unsigned char)c);
  }
  if (lab == 0)
    return -1;
  out[n] = '\0';
  *outlen = n;
  return 0;
}

/* ---- the table -------------------------------------------------------- */

static znode *find_node(const static_res *s, const char *name, size_t len,
                        uint32_t h) {
  if (!s->cap)
    return NULL;
  size_t mask = s->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    znode *z = s->tab[i];
    if (!z)
      return NULL;
    if (z->hash == h && z->len == len && memcmp(z->name, name, len) == 0)
      return z;
  }
}

static int grow(static_res *s) {
  size_t ncap = s->cap ? s->cap * 2 : 64;
  znode **nt = mxgw__calloc(&s->base.mem, ncap, sizeof *nt);
  if (!nt)
    return MXGW_E_NOMEM;
  for (size_t i = 0; i < s->cap; i++) {
    znode *z = s->tab[i];
    if (!z)
      continue;
    size_t j = z->hash & (ncap - 1);
    while (nt[j])
      j = (j + 1) & (ncap - 1);
    nt[j] = z;
  }
  mxgw__free(&s->base.mem, s->tab);
  s->tab = nt;
  s->cap = ncap;
  return MXGW_OK;
}

static znode *get_node(static_res *s, const char *name, size_t len) {
  uint32_t h = hash_name(name, len);
  znode *z = find_node(s, name, len, h);
  if (z)
    return z;
  if ((s->count + 1) * 10 > s->cap * 7 && grow(s))
    return NULL;
  z = mxgw__calloc(&s->base.mem, 1, sizeof *z);
  if (!z)
    return NULL;
  z->name = mxgw__memdup0(&s->base.mem, name, len);
  if (!z->name) {
    mxgw__free(&s->base.mem, z);
    return NULL;
  }
  z->len = len;
  z->hash = h;
  size_t mask = s->cap - 1, i = h & mask;
  while (s->tab[i])
    i = (i + 1) & mask;
  s->tab[i] = z;
  s->count++;
  return z;
}

/* Add one record (data already in answer form) or a status override. The
 * name is normalized. */
static int add_rr(static_res *s, const char *name, size_t nlen, int ti,
                  uint32_t ttl, const char *data, size_t dlen, int pref,
                  int status) {
  znode *z = get_node(s, name, nlen);
  if (!z)
    return MXGW_E_NOMEM;
  zset *set = &z->set[ti];
  if (status) {
    set->status = status;
    return MXGW_OK;
  }
  if (set->n == set->cap) {
    size_t nc = set->cap ? set->cap * 2 : 2;
    mxgw_dns_rr *nr = mxgw__realloc(&s->base.mem, set->rr, nc * sizeof *nr);
    if (!nr)
      return MXGW_E_NOMEM;
    set->rr = nr;
    set->cap = nc;
  }
  char *d = mxgw__memdup0(&s->base.mem, data, dlen);
  if (!d)
    return MXGW_E_NOMEM;
  set->rr[set->n].data = d;
  set->rr[set->n].len = dlen;
  set->rr[set->n].pref = pref;
  if (set->n == 0 || ttl < set->ttl)
    set->ttl = ttl;
  set->n++;
  return MXGW_OK;
}

/* ---- lookups ---------------------------------------------------------- */

static int resolve(const static_res *s, const char *name, size_t len,
                   int type, mxgw_dns_answer *ans) {
  int ti = type_index(type);
  char buf[NAME_MAX_LEN + 1];
  for (int hops = 0; hops <= MAX_CNAME_HOPS; hops++) {
    const znode *z = find_node(s, name, len, hash_name(name, len));
    if (!z)
      return MXGW_DNS_NXDOMAIN;
    const zset *set = &z->set[ti];
    if (set->status)
      return set->status;
    if (set->n) {
      ans->type = type;
      ans->ttl = set->ttl;
      ans->n = set->n;
      ans->rr = set->rr;
      return MXGW_DNS_OK;
    }
    if (ti != CNAME_IDX) {
      const zset *c = &z->set[CNAME_IDX];
      if (c->status)
        return c->status;
      if (c->n) {
        size_t tl;
        if (norm_name(c->rr[0].data, c->rr[0].len, buf, &tl, 0))
          return MXGW_DNS_NXDOMAIN;
        name = buf;
        len = tl;
        continue;
      }
    }
    return MXGW_DNS_NODATA;
  }
  return MXGW_DNS_SERVFAIL; /* CNAME chain too long, or a loop */
}

static void ql_push(qlist *l, mxgw_dns_query *q, int where) {
  q->next = NULL;
  q->prev = l->tail;
  if (l->tail)
    l->tail->next = q;
  else
    l->head = q;
  l->tail = q;
  l->n++;
  q->where = where;
}

static void ql_unlink(qlist *l, mxgw_dns_query *q) {
  if (q->prev)
    q->prev->next = q->next;
  else
    l->head = q->next;
  if (q->next)
    q->next->prev = q->prev;
  else
    l->tail = q->prev;
  l->n--;
  q->next = q->prev = NULL;
  q->where = Q_FREE;
}

static void q_release(static_res *s, mxgw_dns_query *q) {
  q->where = Q_FREE;
  if (s->nfree < FREE_Q_MAX) {
    q->next = s->free_q;
    s->free_q = q;
    s->nfree++;
  } else {
    mxgw__free(&s->base.mem, q);
  }
}

static int st_query(mxgw_resolver *r, const char *name, int type,
                    mxgw_dns_cb cb, void *arg, mxgw_dns_query **out) {
  static_res *s = (static_res *)r;
  if (s->destroying)
    return mxgw__resolver_set_err(r, MXGW_E_STATE, "resolver is being freed");
  char buf[NAME_MAX_LEN + 1];
  size_t len;
  size_t nl = strlen(name);
  if (nl > NAME_MAX_LEN + 1 || norm_name(name, nl, buf, &len, 0))
    return mxgw__resolver_set_err(r, MXGW_E_INVAL,
                                  "not a domain name: \"%.200s\"", name);
  mxgw_dns_query *q = s->free_q;
  if (q) {
    s->free_q = q->next;
    s->nfree--;
  } else {
    q = mxgw__malloc(&r->mem, sizeof *q);
    if (!q)
      return mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
  }
  q->type = type;
  q->cb = cb;
  q->arg = arg;
  q->len = len;
  memcpy(q->name, buf, len + 1);
  ql_push(&s->queued, q, Q_QUEUED);
  if (out)
    *out = q;
  return MXGW_OK;
}

static void st_cancel(mxgw_resolver *r, mxgw_dns_query *q) {
  static_res *s = (static_res *)r;
  if (q->where == Q_QUEUED)
    ql_unlink(&s->queued, q);
  else if (q->where == Q_RUNNING)
    ql_unlink(&s->running, q);
  else
    return; /* already completed: a caller bug, ignored */
  q_release(s, q);
}

static size_t st_pending(const mxgw_resolver *r) {
  const static_res *s = (const static_res *)r;
  return s->queued.n + s->running.n;
}

static int st_fds(mxgw_resolver *r, int *fds, int *events, int cap) {
  (void)r;
  (void)fds;
  (void)events;
  (void)cap;
  return 0;
}

static int64_t st_timeout(mxgw_resolver *r) {
  return st_pending(r) ? 0 : -1;
}

/*
 * Answer the queries queued before this call; queries that callbacks start
 * wait for the next call, so one call does bounded work. A callback may
 * cancel queries still waiting here (they sit on the running list).
 */
static int st_process(mxgw_resolver *r, int fd, int events) {
  (void)fd;
  (void)events;
  static_res *s = (static_res *)r;
  if (!s->queued.n)
    return 0;
  if (s->running.n) /* called from inside a callback: nested, refuse */
    return mxgw__resolver_set_err(r, MXGW_E_STATE,
                                  "mxgw_resolver_process() called from a "
                                  "callback");
  s->running = s->queued;
  s->queued.head = s->queued.tail = NULL;
  s->queued.n = 0;
  for (mxgw_dns_query *q = s->running.head; q; q = q->next)
    q->where = Q_RUNNING;
  int ran = 0;
  for (;;) {
    mxgw_dns_query *q = s->running.head;
    if (!q)
      break;
    ql_unlink(&s->running, q);
    mxgw_dns_answer ans;
    int st = resolve(s, q->name, q->len, q->type, &ans);
    mxgw_dns_cb cb = q->cb;
    void *arg = q->arg;
    q_release(s, q);
    cb(arg, st, st == MXGW_DNS_OK ? &ans : NULL);
    ran++;
  }
  return ran;
}

static void st_destroy(mxgw_resolver *r) {
  static_res *s = (static_res *)r;
  s->destroying = 1;
  /* complete every query in flight with ERROR so owners can clean up */
  for (;;) {
    mxgw_dns_query *q = s->running.head ? s->running.head : s->queued.head;
    if (!q)
      break;
    ql_unlink(q->where == Q_RUNNING ? &s->running : &s->queued, q);
    mxgw_dns_cb cb = q->cb;
    void *arg = q->arg;
    q_release(s, q);
    cb(arg, MXGW_DNS_ERROR, NULL);
  }
  const mxgw_mem *m = &r->mem;
  for (size_t i = 0; i < s->cap; i++) {
    znode *z = s->tab[i];
    if (!z)
      continue;
    for (int t = 0; t < NTYPES; t++) {
      for (size_t k = 0; k < z->set[t].n; k++)
        mxgw__free(m, (void *)(uintptr_t)z->set[t].rr[k].data);
      mxgw__free(m, z->set[t].rr);
    }
    mxgw__free(m, z->name);
    mxgw__free(m, z);
  }
  mxgw__free(m, s->tab);
  while (s->free_q) {
    mxgw_dns_query *q = s->free_q;
    s->free_q = q->next;
    mxgw__free(m, q);
  }
  mxgw_mem copy = *m;
  mxgw__free(&copy, s);
}

static const mxgw_resolver_ops static_ops = {
    "static",   st_query,   st_cancel,  st_pending,
    st_fds,     st_timeout, st_process, st_destroy,
};

int mxgw_resolver_new_static(mxgw_resolver **out, const mxgw_mem *mem) {
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  static_res *s = mxgw__calloc(&m, 1, sizeof *s);
  if (!s)
    return MXGW_E_NOMEM;
  s->base.ops = &static_ops;
  s->base.mem = m;
  s->base.errmsg[0] = '\0';
  *out = &s->base;
  return MXGW_OK;
}

/* ---- adding records ---------------------------------------------------- */

/* Parse rdata in presentation form (as mxgw_resolver_add_record() takes
 * it) into answer form. out must hold NAME_MAX_LEN + 1 octets. For TXT the
 * data is used as is (not copied here). */
static int parse_simple_rdata(int type, const char *data, char *out,
                              size_t *olen, int *pref, const char **err) {
  *pref = 0;
  switch (type) {
  case MXGW_DNS_A:
    if (inet_pton(AF_INET, data, out) != 1) {
      *err = "bad IPv4 address";
      return -1;
    }
    *olen = 4;
    return 0;
  case MXGW_DNS_AAAA:
    if (inet_pton(AF_INET6, data, out) != 1) {
      *err = "bad IPv6 address";
      return -1;
    }
    *olen = 16;
    return 0;
  case MXGW_DNS_MX: {
    const char *p = data;
    long v = 0;
    if (*p < '0' || *p > '9') {
      *err = "MX needs \"PREFERENCE NAME\"";
      return -1;
    }
    while (*p >= '0' && *p <= '9') {
      v = v * 10 + (*p++ - '0');
      if (v > 65535) {
        *err = "MX preference out of range";
        return -1;
      }
    }
    if (*p != ' ' && *p != '\t') {
      *err = "MX needs \"PREFERENCE NAME\"";
      return -1;
    }
    while (*p == ' ' || *p == '\t')
      p++;
    *pref = (int)v;
    size_t n = strlen(p);
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    if (n == 0 || norm_name(p, n, out, olen, 1)) {
      *err = "bad MX target name";
      return -1;
    }
    /* keep the case the data gave, as DNS answers do */
    memcpy(out, p, *olen);
    return 0;
  }
  case MXGW_DNS_PTR:
  case MXGW_DNS_CNAME: {
    size_t n = strlen(data);
    if (n == 0 || norm_name(data, n, out, olen, 0)) {
      *err = "bad target name";
      return -1;
    }
    memcpy(out, data, *olen);
    return 0;
  }
  default:
    *err = "unsupported type";
    return -1;
  }
}

int mxgw_resolver_add_record(mxgw_resolver *r, const char *name, int type,
                             uint32_t ttl, const char *data,
                             int status_override) {
  static_res *s = as_static(r);
  if (!s)
    return r ? mxgw__resolver_set_err(r, MXGW_E_UNSUPPORTED,
                                      "not a static resolver")
             : MXGW_E_INVAL;
  int ti = type_index(type);
  if (ti < 0)
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "unsupported type %d",
                                  type);
  char key[NAME_MAX_LEN + 1];
  size_t klen;
  if (!name || norm_name(name, strlen(name), key, &klen, 0))
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "bad owner name \"%.200s\"",
                                  name ? name : "(null)");
  if (status_override) {
    if (status_override != MXGW_DNS_SERVFAIL &&
        status_override != MXGW_DNS_TIMEOUT &&
        status_override != MXGW_DNS_ERROR)
      return mxgw__resolver_set_err(r, MXGW_E_INVAL,
                                    "status override must be SERVFAIL, "
                                    "TIMEOUT or ERROR");
    return add_rr(s, key, klen, ti, ttl, NULL, 0, 0, status_override);
  }
  if (!data)
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "NULL data");
  if (type == MXGW_DNS_TXT)
    return add_rr(s, key, klen, ti, ttl, data, strlen(data), 0, 0);
  char rd[NAME_MAX_LEN + 1];
  size_t rlen;
  int pref;
  const char *err = NULL;
  if (parse_simple_rdata(type, data, rd, &rlen, &pref, &err))
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "%s: \"%.200s\"", err,
                                  data);
  int rv = add_rr(s, key, klen, ti, ttl, rd, rlen, pref, 0);
  if (rv)
    mxgw__resolver_set_err(r, rv, "out of memory");
  return rv;
}

/* ---- master files ------------------------------------------------------ */

/* A token of a master file: decoded bytes. */
typedef struct ztok {
  const char *p; /* into the parser's token buffer */
  size_t n;
  int quoted;
  int esc_dot; /* an escaped '.' (\. or \046): not representable here */
} ztok;

#define ZT_MAX 512 /* fields per entry */

typedef struct zrec { /* a parsed record waiting for commit */
  char *name;
  size_t nlen;
  int ti;
  uint32_t ttl;
  char *data;
  size_t dlen;
  int pref;
  int created;       /* commit: the record created its node */
  uint32_t prev_ttl; /* commit: the set's TTL before the record */
} zrec;

typedef struct zparser {
  static_res *s;
  const char *t, *end;
  size_t line;       /* current line */
  size_t entry_line; /* line where the current entry started */
  int paren;
  int bol; /* at the beginning of a line */
  char origin[NAME_MAX_LEN + 1];
  size_t olen;
  char owner[NAME_MAX_LEN + 1];
  size_t ownlen;
  int have_owner;
  uint32_t ttl;
  int have_ttl;
  mxgw_buf tokbuf; /* decoded token bytes */
  size_t tokoff[ZT_MAX + 1];
  ztok tok[ZT_MAX];
  int ntok;
  int ws_start; /* entry began with white space (owner omitted) */
  zrec *recs;
  size_t nrec, caprec;
  int nomem; /* the error is an allocation failure */
  char err[200];
} zparser;

static int zerr(zparser *z, const char *fmt, ...) MXGW_PRINTF(2, 3);
static int zerr(zparser *z, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(z->err, sizeof z->err, fmt, ap);
  va_end(ap);
  return -1;
}

static int znomem(zparser *z) {
  z->nomem = 1;
  return zerr(z, "out of memory");
}

/*
 * Read one entry (a logical line, parentheses joined) into z->tok.
 * Returns 1 with an entry, 0 at end of text, -1 on error.
 */
static int read_entry(zparser *z) {
  const mxgw_mem *m = &z->s->base.mem;
  mxgw__buf_reset(&z->tokbuf);
  z->ntok = 0;
  z->paren = 0;
  for (;;) {
    if (z->t >= z->end) {
      if (z->paren)
        return zerr(z, "unbalanced parenthesis");
      return z->ntok ? 1 : 0;
    }
    char c = *z->t;
    if (z->bol) {
      if (z->ntok == 0 && z->paren == 0) {
        z->entry_line = z->line;
        z->ws_start = (c == ' ' || c == '\t');
      }
      z->bol = 0;
    }
    if (c == '\n') {
      z->t++;
      z->line++;
      z->bol = 1;
      if (z->paren == 0 && z->ntok)
        return 1;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      z->t++;
      continue;
    }
    if (c == ';') {
      while (z->t < z->end && *z->t != '\n')
        z->t++;
      continue;
    }
    if (c == '(') {
      z->paren++;
      z->t++;
      continue;
    }
    if (c == ')') {
      if (!z->paren)
        return zerr(z, "unbalanced parenthesis");
      z->paren--;
      z->t++;
      continue;
    }
    /* a token: quoted or plain */
    if (z->ntok == ZT_MAX)
      return zerr(z, "too many fields");
    ztok *tk = &z->tok[z->ntok];
    tk->quoted = (c == '"');
    tk->esc_dot = 0;
    z->tokoff[z->ntok] = z->tokbuf.len;
    if (tk->quoted)
      z->t++;
    for (;;) {
      if (z->t >= z->end) {
        if (tk->quoted)
          return zerr(z, "unterminated quoted string");
        break;
      }
      c = *z->t;
      if (tk->quoted) {
        if (c == '"') {
          z->t++;
          break;
        }
        if (c == '\n')
          return zerr(z, "newline in quoted string");
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
                 c == ';' || c == '(' || c == ')' || c == '"') {
        break;
      }
      unsigned char byte = (unsigned char)c;
      z->t++;
      if (c == '\\') {
        if (z->t >= z->end)
          return zerr(z, "backslash at end of text");
        if (z->t + 2 < z->end && z->t[0] >= '0' && z->t[0] <= '9' &&
            z->t[1] >= '0' && z->t[1] <= '9' && z->t[2] >= '0' &&
            z->t[2] <= '9') {
          int v = (z->t[0] - '0') * 100 + (z->t[1] - '0') * 10 + (z->t[2] - '0');
          if (v > 255)
            return zerr(z, "bad escape \\%.3s", z->t);
          byte = (unsigned char)v;
          z->t += 3;
        } else if (*z->t >= '0' && *z->t <= '9') {
          return zerr(z, "bad escape: \\DDD needs three digits");
        } else {
          byte = (unsigned char)*z->t++;
          if (byte == '\n')
            return zerr(z, "escaped newline");
        }
        if (byte == '.')
          tk->esc_dot = 1;
      }
      if (mxgw__buf_append(&z->tokbuf, m, &byte, 1))
        return znomem(z);
    }
    z->ntok++;
  }
}

/* Pointers into tokbuf are only stable once the entry is read. */
static void fix_tokens(zparser *z) {
  for (int i = 0; i < z->ntok; i++) {
    size_t endoff = (i + 1 < z->ntok) ? z->tokoff[i + 1] : z->tokbuf.len;
    z->tok[i].p = z->tokbuf.data ? z->tokbuf.data + z->tokoff[i] : "";
    z->tok[i].n = endoff - z->tokoff[i];
  }
}

static int tok_ieq(const ztok *t, const char *s) {
  return !t->quoted && mxgw__ieq(t->p, t->n, s);
}

/* A name field: "@", relative (origin appended) or absolute. Owner names
 * are lower-cased (the table's key); names in data keep their case, as a
 * server's answers do. */
static int zname_case(zparser *z, const ztok *t, char *out, size_t *olen,
                      int allow_root, int keep_case) {
  if (t->esc_dot)
    return zerr(z, "escaped dot in a name is not supported");
  if (t->n == 1 && t->p[0] == '@') {
    memcpy(out, z->origin, z->olen + 1);
    *olen = z->olen;
    if (!z->olen && !allow_root)
      return zerr(z, "\"@\" is the root here (no $ORIGIN)");
    return 0;
  }
  for (size_t i = 0; i < t->n; i++)
    if (t->p[i] == '\0')
      return zerr(z, "NUL in a name");
  char tmp[2 * NAME_MAX_LEN + 4];
  size_t n = t->n;
  if (n == 0) /* a quoted "" */
    return zerr(z, "empty name");
  if (n > NAME_MAX_LEN + 1)
    return zerr(z, "name too long");
  memcpy(tmp, t->p, n);
  if (n == 1 && tmp[0] == '.') {
    *olen = 0;
    out[0] = '\0';
    return allow_root ? 0 : zerr(z, "the root is not allowed here");
  }
  if (tmp[n - 1] != '.' && z->olen) { /* relative */
    tmp[n++] = '.';
    memcpy(tmp + n, z->origin, z->olen);
    n += z->olen;
  }
  if (n > NAME_MAX_LEN + 1 || norm_name(tmp, n, out, olen, 0))
    return zerr(z, "bad name \"%.*s\"", (int)(t->n > 100 ? 100 : t->n), t->p);
  if (keep_case)
    memcpy(out, tmp, *olen);
  return 0;
}

static int zname(zparser *z, const ztok *t, char *out, size_t *olen,
                 int allow_root) {
  return zname_case(z, t, out, olen, allow_root, 0);
}

static int parse_ttl(const ztok *t, uint32_t *out) {
  if (t->quoted || t->n == 0 || t->p[0] < '0' || t->p[0] > '9')
    return -1;
  uint64_t total = 0, cur = 0;
  int digits = 0;
  for (size_t i = 0; i < t->n; i++) {
    char c = (char)mxgw__lower((unsigned char)t->p[i]);
    if (c >= '0' && c <= '9') {
      cur = cur * 10 + (uint64_t)(c - '0');
      digits = 1;
      if (cur > 0x7fffffffULL)
        return -1;
      continue;
    }
    uint64_t mult = c == 's' ? 1 : c == 'm' ? 60 : c == 'h' ? 3600
                   : c == 'd' ? 86400 : c == 'w' ? 604800 : 0;
    if (!mult || !digits)
      return -1;
    total += cur * mult;
    cur = 0;
    digits = 0;
  }
  total += cur;
  if (total > 0x7fffffffULL)
    return -1;
  *out = (uint32_t)total;
  return 0;
}

static int zpush(zparser *z, const char *name, size_t nlen, int ti,
                 uint32_t ttl, const char *data, size_t dlen, int pref) {
  const mxgw_mem *m = &z->s->base.mem;
  if (z->nrec == z->caprec) {
    size_t nc = z->caprec ? z->caprec * 2 : 16;
    zrec *nr = mxgw__realloc(m, z->recs, nc * sizeof *nr);
    if (!nr)
      return znomem(z);
    z->recs = nr;
    z->caprec = nc;
  }
  zrec *rc = &z->recs[z->nrec];
  rc->name = mxgw__memdup0(m, name, nlen);
  rc->data = mxgw__memdup0(m, data ? data : "", dlen);
  if (!rc->name || !rc->data) {
    mxgw__free(m, rc->name);
    mxgw__free(m, rc->data);
    return znomem(z);
  }
  rc->nlen = nlen;
  rc->ti = ti;
  rc->ttl = ttl;
  rc->dlen = dlen;
  rc->pref = pref;
  z->nrec++;
  return 0;
}

static int zentry(zparser *z) {
  ztok *t = z->tok;
  int nt = z->ntok, i = 0;
  if (!z->ws_start && !t[0].quoted && t[0].n && t[0].p[0] == '$') {
    if (tok_ieq(&t[0], "$ORIGIN")) {
      if (nt != 2)
        return zerr(z, "$ORIGIN needs one name");
      char o[NAME_MAX_LEN + 1];
      size_t ol;
      if (zname(z, &t[1], o, &ol, 1))
        return -1;
      memcpy(z->origin, o, ol + 1);
      z->olen = ol;
      return 0;
    }
    if (tok_ieq(&t[0], "$TTL")) {
      if (nt != 2 || parse_ttl(&t[1], &z->ttl))
        return zerr(z, "$TTL needs one TTL value");
      z->have_ttl = 1;
      return 0;
    }
    return zerr(z, "unsupported directive %.*s",
                (int)(t[0].n > 40 ? 40 : t[0].n), t[0].p);
  }
  char owner[NAME_MAX_LEN + 1];
  size_t ownlen;
  if (z->ws_start) {
    if (!z->have_owner)
      return zerr(z, "no owner name (and no previous one)");
    memcpy(owner, z->owner, z->ownlen + 1);
    ownlen = z->ownlen;
  } else {
    if (zname(z, &t[0], owner, &ownlen, 0))
      return -1;
    i = 1;
    memcpy(z->owner, owner, ownlen + 1);
    z->ownlen = ownlen;
    z->have_owner = 1;
  }
  uint32_t ttl = z->have_ttl ? z->ttl : 3600;
  int is_in = 1, seen_ttl = 0, seen_class = 0;
  for (; i < nt; i++) {
    uint32_t v;
    if (!seen_ttl && parse_ttl(&t[i], &v) == 0) {
      ttl = v;
      seen_ttl = 1;
      continue;
    }
    if (!seen_class && (tok_ieq(&t[i], "IN") || tok_ieq(&t[i], "CH") ||
                        tok_ieq(&t[i], "HS") || tok_ieq(&t[i], "CS"))) {
      is_in = tok_ieq(&t[i], "IN");
      seen_class = 1;
      continue;
    }
    break;
  }
  if (seen_ttl && !z->have_ttl) { /* RFC 1035: the last explicit TTL */
    z->ttl = ttl;
    z->have_ttl = 1;
  }
  if (i >= nt)
    return zerr(z, "missing record type");
  ztok *ty = &t[i++];
  int nrd = nt - i;
  ztok *rd = &t[i];
  int type;
  if (tok_ieq(ty, "A"))
    type = MXGW_DNS_A;
  else if (tok_ieq(ty, "AAAA"))
    type = MXGW_DNS_AAAA;
  else if (tok_ieq(ty, "MX"))
    type = MXGW_DNS_MX;
  else if (tok_ieq(ty, "TXT"))
    type = MXGW_DNS_TXT;
  else if (tok_ieq(ty, "PTR"))
    type = MXGW_DNS_PTR;
  else if (tok_ieq(ty, "CNAME"))
    type = MXGW_DNS_CNAME;
  else {
    for (size_t k = 0; k < ty->n; k++) {
      char c = ty->p[k];
      if (ty->quoted || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-'))
        return zerr(z, "bad record type \"%.*s\"",
                    (int)(ty->n > 40 ? 40 : ty->n), ty->p);
    }
    /* another type: skipped, but the name exists (NODATA, not NXDOMAIN) */
    return is_in ? zpush(z, owner, ownlen, -1, ttl, NULL, 0, 0) : 0;
  }
  if (!is_in)
    return 0;
  int ti = type_index(type);
  char buf[NAME_MAX_LEN + 1];
  size_t blen;
  switch (type) {
  case MXGW_DNS_A:
  case MXGW_DNS_AAAA: {
    if (nrd != 1 || rd[0].quoted || rd[0].n > 45)
      return zerr(z, "%s needs one address", type == MXGW_DNS_A ? "A" : "AAAA");
    char a[46], bin[16];
    memcpy(a, rd[0].p, rd[0].n);
    a[rd[0].n] = '\0';
    if (inet_pton(type == MXGW_DNS_A ? AF_INET : AF_INET6, a, bin) != 1)
      return zerr(z, "bad %s address \"%s\"", type == MXGW_DNS_A ? "IPv4" : "IPv6",
                  a);
    return zpush(z, owner, ownlen, ti, ttl, bin, type == MXGW_DNS_A ? 4 : 16,
                 0);
  }
  case MXGW_DNS_MX: {
    uint32_t pref;
    if (nrd != 2 || parse_ttl(&rd[0], &pref) || pref > 65535)
      return zerr(z, "MX needs a preference (0..65535) and a name");
    for (size_t k = 0; k < rd[0].n; k++)
      if (rd[0].p[k] < '0' || rd[0].p[k] > '9')
        return zerr(z, "bad MX preference");
    if (zname_case(z, &rd[1], buf, &blen, 1, 1))
      return -1;
    return zpush(z, owner, ownlen, ti, ttl, buf, blen, (int)pref);
  }
  case MXGW_DNS_PTR:
  case MXGW_DNS_CNAME:
    if (nrd != 1)
      return zerr(z, "%s needs one name", type == MXGW_DNS_PTR ? "PTR" : "CNAME");
    if (zname_case(z, &rd[0], buf, &blen, 0, 1))
      return -1;
    return zpush(z, owner, ownlen, ti, ttl, buf, blen, 0);
  case MXGW_DNS_TXT: {
    if (nrd < 1)
      return zerr(z, "TXT needs at least one string");
    /* the strings are contiguous in tokbuf: concatenate (RFC 7208 3.3) */
    size_t total = 0;
    for (int k = 0; k < nrd; k++) {
      if (rd[k].n > 255)
        return zerr(z, "TXT string longer than 255 octets");
      total += rd[k].n;
    }
    return zpush(z, owner, ownlen, ti, ttl, nrd ? rd[0].p : "", total, 0);
  }
  }
  return 0;
}

/* Take a node out of the table (linear probing: the entries after it in
 * its cluster are placed again) and free it. */
static void drop_node(static_res *s, znode *z) {
  size_t mask = s->cap - 1, i = z->hash & mask;
  while (s->tab[i] != z)
    i = (i + 1) & mask;
  s->tab[i] = NULL;
  for (size_t j = (i + 1) & mask; s->tab[j]; j = (j + 1) & mask) {
    znode *y = s->tab[j];
    s->tab[j] = NULL;
    size_t k = y->hash & mask;
    while (s->tab[k])
      k = (k + 1) & mask;
    s->tab[k] = y;
  }
  s->count--;
  for (int t = 0; t < NTYPES; t++)
    mxgw__free(&s->base.mem, z->set[t].rr);
  mxgw__free(&s->base.mem, z->name);
  mxgw__free(&s->base.mem, z);
}

/* Undo the commit of recs[0..n) (newest first), so that a load that runs
 * out of memory half-way adds nothing. recs[n - 1] may be the one that
 * failed: added = 0 says its record is not in its set. */
static void zrollback(static_res *s, zrec *recs, size_t n, int added) {
  for (; n; n--, added = 1) {
    zrec *rc = &recs[n - 1];
    znode *z = find_node(s, rc->name, rc->nlen, hash_name(rc->name, rc->nlen));
    if (!z) /* only the failed record: its node was never made */
      continue;
    if (rc->ti >= 0 && added) {
      zset *set = &z->set[rc->ti];
      set->n--;
      mxgw__free(&s->base.mem, (void *)(uintptr_t)set->rr[set->n].data);
      set->ttl = rc->prev_ttl;
    }
    if (rc->created)
      drop_node(s, z);
  }
}

int mxgw_resolver_load_zone(mxgw_resolver *r, const char *text, size_t len,
                            const char *origin) {
  static_res *s = as_static(r);
  if (!s)
    return r ? mxgw__resolver_set_err(r, MXGW_E_UNSUPPORTED,
                                      "not a static resolver")
             : MXGW_E_INVAL;
  if (!text && len)
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "NULL text");
  zparser *z = mxgw__calloc(&r->mem, 1, sizeof *z);
  if (!z)
    return mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
  z->s = s;
  z->t = text ? text : "";
  z->end = z->t + len;
  z->line = 1;
  z->bol = 1;
  if (origin && *origin) {
    size_t n = strlen(origin);
    if (norm_name(origin, n, z->origin, &z->olen, 1)) {
      mxgw__free(&r->mem, z);
      return mxgw__resolver_set_err(r, MXGW_E_INVAL, "bad origin \"%.200s\"",
                                    origin);
    }
  }
  int rv = MXGW_OK, k;
  while ((k = read_entry(z)) > 0) {
    fix_tokens(z);
    if (zentry(z)) {
      k = -1;
      break;
    }
  }
  if (k < 0) {
    rv = mxgw__resolver_set_err(r, MXGW_E_SYNTAX, "line %zu: %s",
                                z->entry_line ? z->entry_line : z->line,
                                z->err);
    if (z->nomem)
      rv = MXGW_E_NOMEM;
  } else {
    for (size_t i = 0; i < z->nrec; i++) {
      zrec *rc = &z->recs[i];
      size_t before = s->count;
      znode *old = find_node(s, rc->name, rc->nlen,
                             hash_name(rc->name, rc->nlen));
      rc->prev_ttl = (old && rc->ti >= 0) ? old->set[rc->ti].ttl : 0;
      int fail = rc->ti < 0 ? !get_node(s, rc->name, rc->nlen)
                            : add_rr(s, rc->name, rc->nlen, rc->ti, rc->ttl,
                                     rc->data, rc->dlen, rc->pref, 0) != 0;
      rc->created = s->count != before;
      if (fail) { /* a file loads whole or not at all */
        zrollback(s, z->recs, i + 1, 0);
        rv = mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
        break;
      }
    }
  }
  for (size_t i = 0; i < z->nrec; i++) {
    mxgw__free(&r->mem, z->recs[i].name);
    mxgw__free(&r->mem, z->recs[i].data);
  }
  mxgw__free(&r->mem, z->recs);
  mxgw__buf_free(&z->tokbuf, &r->mem);
  mxgw__free(&r->mem, z);
  return rv;
}

int mxgw_resolver_load_zone_file(mxgw_resolver *r, const char *path,
                                 const char *origin) {
  if (!as_static(r))
    return r ? mxgw__resolver_set_err(r, MXGW_E_UNSUPPORTED,
                                      "not a static resolver")
             : MXGW_E_INVAL;
  if (!path)
    return mxgw__resolver_set_err(r, MXGW_E_INVAL, "NULL path");
  FILE *f = fopen(path, "rb");
  if (!f)
    return mxgw__resolver_set_err(r, MXGW_E_IO, "%.200s: cannot open",
                                  path);
  mxgw_buf b = {0};
  char chunk[8192];
  size_t n;
  int rv = MXGW_OK;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (mxgw__buf_append(&b, &r->mem, chunk, n)) {
      rv = mxgw__resolver_set_err(r, MXGW_E_NOMEM, "out of memory");
      break;
    }
  }
  if (!rv && ferror(f))
    rv = mxgw__resolver_set_err(r, MXGW_E_IO, "%.200s: read error", path);
  fclose(f);
  if (!rv)
    rv = mxgw_resolver_load_zone(r, mxgw__buf_ptr(&b), mxgw__buf_size(&b),
                                 origin);
  mxgw__buf_free(&b, &r->mem);
  return rv;
}
