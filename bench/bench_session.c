/* SPDX-License-Identifier: MIT */
/*
 * bench_session.c: micro-benchmarks of the sans-IO SMTP session engine, with
 * no sockets. The program plays both the client (it feeds wire bytes) and
 * the application (it accepts every decision, consumes every reply and reads
 * every BODY chunk, folding the bytes into a checksum so the work cannot be
 * optimised away). It measures, on one pinned core: (a) DATA throughput in
 * GB/s of body octets for a 1 KiB and a 1 MiB message of realistic text
 * (76-character lines, some starting with '.', so dot-unstuffing runs), fed
 * in 64 KiB and 16 KiB reads, timing only the DATA phase; (b) whole SMTP
 * transactions per second, pipelined on one long session and as one full
 * session per transaction; (c) the memory an idle session holds after EHLO,
 * exactly (a counting allocator) and as RSS. Every measurement is repeated
 * (--runs, default 7) and reported as median, min and max, in a table and in
 * machine-readable "RESULT name value unit" lines. Reassembled bodies are
 * checked against the expected unstuffed text outside the timed loops.
 * --only and --count select one measurement and its size, which is how
 * bench/callgrind.sh derives noise-free instruction counts by differencing
 * two runs under valgrind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, sched_getcpu */
#endif

#include <errno.h>
#include <inttypes.h>
#include <malloc.h> /* malloc_trim */
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mxgw/mxgw.h>

#define KiB 1024u
#define MiB (1024u * 1024u)

/* ------------------------------------------------------------------------ */
/* Small utilities                                                          */
/* ------------------------------------------------------------------------ */

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench_session: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void check(int rv, const char *what) {
  if (rv < 0)
    die("%s: %s (%s)", what, mxgw_errname(rv), mxgw_strerror(rv));
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    die("out of memory (%zu bytes)", n);
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct stats {
  double med, min, max;
} stats;

static stats summarize(double *v, int n) {
  stats st;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  st.min = v[0];
  st.max = v[n - 1];
  st.med = (n % 2) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return st;
}

/* Resident set size of this process, in bytes (0 if unknown). */
static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  unsigned long size = 0, res = 0;
  int n = fscanf(f, "%lu %lu", &size, &res);
  fclose(f);
  if (n != 2)
    return 0;
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Pin the process to the CPU it is running on; failure is not fatal. */
static int pin_cpu(void) {
  int cpu = sched_getcpu();
  if (cpu < 0)
    return -1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    return -1;
  return cpu;
}

/*
 * Fold bytes into a checksum, 8 at a time: this is the "application work"
 * on each BODY chunk. It depends on how the body is cut into chunks, which
 * is deterministic for a given read size, so each timed run must reproduce
 * the checksum of the verified run.
 */
static uint64_t touch(uint64_t sum, const char *p, size_t n) {
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    sum += w;
    p += 8;
    n -= 8;
  }
  while (n--)
    sum = sum * 31u + (unsigned char)*p++;
  return sum;
}

/* ------------------------------------------------------------------------ */
/* Counting allocator: exact live bytes, with every live block listed       */
/* ------------------------------------------------------------------------ */

typedef union blk {
  struct {
    size_t size;
    union blk *prev, *next;
  } h;
  max_align_t align;
} blk;

typedef struct counter {
  size_t live;   /* bytes requested and not freed */
  size_t nlive;  /* live blocks */
  size_t allocs; /* allocations ever made */
  blk head;      /* circular list of live blocks */
} counter;

static void counter_init(counter *c) {
  memset(c, 0, sizeof *c);
  c->head.h.prev = c->head.h.next = &c->head;
}

static void blk_link(counter *c, blk *b, size_t size) {
  b->h.size = size;
  b->h.next = c->head.h.next;
  b->h.prev = &c->head;
  c->head.h.next->h.prev = b;
  c->head.h.next = b;
  c->live += size;
  c->nlive++;
  c->allocs++;
}

static void blk_unlink(counter *c, blk *b) {
  b->h.prev->h.next = b->h.next;
  b->h.next->h.prev = b->h.prev;
  c->live -= b->h.size;
  c->nlive--;
}

static void *cnt_malloc(size_t size, void *user) {
  blk *b = malloc(sizeof(blk) + size);
  if (!b)
    return NULL;
  blk_link(user, b, size);
  return b + 1;
}

static void cnt_free(void *p, void *user) {
  if (!p)
    return;
  blk *b = (blk *)p - 1;
  blk_unlink(user, b);
  free(b);
}

static void *cnt_calloc(size_t nmemb, size_t size, void *user) {
  if (size && nmemb > SIZE_MAX / size)
    return NULL;
  void *p = cnt_malloc(nmemb * size, user);
  if (p)
    memset(p, 0, nmemb * size);
  return p;
}

static void *cnt_realloc(void *p, size_t size, void *user) {
  if (!p)
    return cnt_malloc(size, user);
  blk *old = (blk *)p - 1;
  size_t oldsize = old->h.size;
  void *np = cnt_malloc(size, user);
  if (!np)
    return NULL;
  memcpy(np, p, oldsize < size ? oldsize : size);
  cnt_free(p, user);
  return np;
}

/* ------------------------------------------------------------------------ */
/* The test message                                                         */
/* ------------------------------------------------------------------------ */

typedef struct message {
  char *body;  /* what the application must receive (unstuffed) */
  size_t body_len;
  char *wire;  /* what the client sends after 354: stuffed + ".\r\n" */
  size_t wire_len;
  size_t dot_lines; /* lines that needed a stuffed dot */
} message;

/*
 * Realistic text of exactly `size` octets: a header block, a blank line,
 * then lines of 76 characters plus CRLF. One line in 16 begins with '.'
 * ("..." or ".signature"), so the wire form needs dot-stuffing. Deterministic
 * (a fixed LCG), so every run sees the same bytes.
 */
static void make_message(message *m, size_t size) {
  static const char *const words[] = {
      "the",     "gateway", "accepts", "mail",    "for",       "example",
      "domains", "and",     "relays",  "it",      "over",      "LMTP",
      "to",      "a",       "store;",  "every",   "recipient", "is",
      "checked", "before",  "DATA,",   "which",   "keeps",     "queues",
      "short.",  "Lorem",   "ipsum",   "dolor",   "sit",       "amet,"};
  static const char header[] =
      "From: Sender Example <sender@example.org>\r\n"
      "To: Recipient <rcpt@example.test>\r\n"
      "Subject: benchmark message\r\n"
      "Date: Sat, 28 Nov 2026 04:00:00 +0000\r\n"
      "Message-ID: <bench.0001@example.org>\r\n"
      "MIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=us-ascii\r\n"
      "\r\n";
  uint32_t rng = 12345;
  m->body = xmalloc(size);
  size_t len = 0, line = 0;
  size_t hl = sizeof header - 1;
  if (size >= hl + 2) {
    memcpy(m->body, header, hl);
    len = hl;
  }
  while (len < size) {
    size_t rem = size - len;
    size_t ll = rem >= 78 ? 78 : rem; /* line length with CRLF */
    if (rem - ll == 1)
      ll--; /* leave 2 for a last, empty line */
    if (ll < 2) {
      /* only possible when size itself is 1: a lone octet of text */
      m->body[len++] = 'x';
      continue;
    }
    size_t textlen = ll - 2, i = 0;
    char *p = m->body + len;
    if (line % 16 == 5 && textlen > 0) {
      const char *lead = (line % 32 == 5) ? "..." : ".signature follows";
      for (; lead[i] && i < textlen; i++)
        p[i] = lead[i];
    }
    while (i < textlen) {
      rng = rng * 1103515245u + 12345u;
      const char *w = words[(rng >> 16) % (sizeof words / sizeof words[0])];
      if (i > 0 && p[i - 1] != ' ')
        p[i++] = ' ';
      for (; *w && i < textlen; w++)
        p[i++] = *w;
    }
    p[textlen] = '\r';
    p[textlen + 1] = '\n';
    len += ll;
    line++;
  }
  m->body_len = size;

  /* wire form: a dot before every line that starts with one, then the end */
  m->dot_lines = 0;
  for (size_t i = 0; i < size; i++)
    if (m->body[i] == '.' && (i == 0 || m->body[i - 1] == '\n'))
      m->dot_lines++;
  m->wire = xmalloc(size + m->dot_lines + 3);
  size_t w = 0;
  for (size_t i = 0; i < size; i++) {
    if (m->body[i] == '.' && (i == 0 || m->body[i - 1] == '\n'))
      m->wire[w++] = '.';
    m->wire[w++] = m->body[i];
  }
  memcpy(m->wire + w, ".\r\n", 3);
  m->wire_len = w + 3;
}

static void free_message(message *m) {
  free(m->body);
  free(m->wire);
}

/* ------------------------------------------------------------------------ */
/* The application side: accept everything, read every body chunk           */
/* ------------------------------------------------------------------------ */

typedef struct app {
  uint64_t sum;      /* checksum of BODY bytes */
  uint64_t body;     /* BODY octets of the current message */
  uint64_t messages; /* MESSAGE_END events accepted */
  int closed;
  char *collect; /* if set, BODY bytes are copied here (verification) */
  size_t collect_len, collect_cap;
} app;

/* Run the event loop until the session has nothing more to report. */
static void pump(mxgw_session *s, app *a) {
  for (;;) {
    int ev = mxgw_session_next_event(s);
    check(ev, "next_event");
    if (ev == 0)
      break;
    const char *p;
    size_t n;
    int64_t v;
    switch (ev) {
    case MXGW_EV_BODY:
      check(mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &n), "get DATA");
      a->sum = touch(a->sum, p, n);
      a->body += n;
      if (a->collect) {
        if (a->collect_len + n > a->collect_cap)
          die("body longer than expected");
        memcpy(a->collect + a->collect_len, p, n);
        a->collect_len += n;
      }
      break;
    case MXGW_EV_MESSAGE_END:
      check(mxgw_session_get_int(s, MXGW_INFO_MESSAGE_SIZE, &v), "get SIZE");
      if ((uint64_t)v != a->body)
        die("MESSAGE_SIZE %" PRId64 " != %" PRIu64 " BODY octets", v, a->body);
      a->body = 0;
      a->messages++;
      check(mxgw_session_accept(s), "accept");
      break;
    case MXGW_EV_CONNECT:
    case MXGW_EV_HELO:
    case MXGW_EV_MAIL:
    case MXGW_EV_RCPT:
    case MXGW_EV_DATA:
      check(mxgw_session_accept(s), "accept");
      break;
    case MXGW_EV_MESSAGE_ABORT:
      mxgw_session_get_str(s, MXGW_INFO_DATA, &p, &n);
      die("unexpected MESSAGE_ABORT: %.*s", (int)n, p);
      break;
    case MXGW_EV_CLOSE:
      a->closed = 1;
      break;
    case MXGW_EV_RSET:
      break;
    default:
      die("unexpected event %d", ev);
    }
  }
  /* the client reads every reply at once */
  const char *out;
  size_t olen;
  check(mxgw_session_output(s, &out, &olen), "output");
  if (olen) {
    if (out[0] != '2' && out[0] != '3')
      die("unexpected reply: %.*s", (int)(olen > 200 ? 200 : olen), out);
    check(mxgw_session_consume(s, olen), "consume");
  }
}

/* Offer buf in reads of at most `chunk` octets, as a socket would. */
static void feed_all(mxgw_session *s, app *a, const char *buf, size_t len,
                     size_t chunk) {
  size_t off = 0;
  while (off < len) {
    size_t rd = len - off < chunk ? len - off : chunk; /* one read() */
    size_t done = 0;
    int stalls = 0;
    while (done < rd) {
      int n = mxgw_session_feed(s, buf + off + done, rd - done, 0);
      check(n, "feed");
      pump(s, a);
      if (n == 0 && ++stalls > 2)
        die("session takes no input (want=%d)", mxgw_session_want(s));
      if (n > 0)
        stalls = 0;
      done += (size_t)n;
    }
    off += rd;
  }
}

static mxgw_session_config *make_config(void) {
  mxgw_session_config *cfg;
  check(mxgw_session_config_new(&cfg, NULL), "config_new");
  check(mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, "mx.example.test"),
        "set HOSTNAME");
  check(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_MESSAGES, INT32_MAX),
        "set MAX_MESSAGES");
  return cfg;
}

static const char ENVELOPE[] = "MAIL FROM:<sender@example.org> SIZE=2048\r\n"
                               "RCPT TO:<rcpt@example.test>\r\n"
                               "DATA\r\n";
static const char EHLO[] = "EHLO client.example.org\r\n";

/* A new session, greeted and after EHLO. */
static mxgw_session *open_session(mxgw_session_config *cfg, const mxgw_mem *mem,
                                  app *a) {
  mxgw_session *s;
  check(mxgw_session_new(&s, cfg, mem), "session_new");
  check(mxgw_session_set_peer(s, "192.0.2.25", 41234, NULL), "set_peer");
  check(mxgw_session_start(s, 0), "start");
  pump(s, a);
  feed_all(s, a, EHLO, sizeof EHLO - 1, 64 * KiB);
  return s;
}

/* ------------------------------------------------------------------------ */
/* Options and reporting                                                    */
/* ------------------------------------------------------------------------ */

typedef struct opts {
  int runs;
  int quick;
  const char *only; /* run only the measurements whose name starts so */
  long count;       /* iterations per run, overriding the default */
} opts;

static int selected(const opts *o, const char *name) {
  return !o->only || strncmp(name, o->only, strlen(o->only)) == 0;
}

static long iterations(const opts *o, long full, long quick) {
  if (o->count > 0)
    return o->count;
  return o->quick ? quick : full;
}

/* ------------------------------------------------------------------------ */
/* (a) DATA throughput                                                      */
/* ------------------------------------------------------------------------ */

/* One message: envelope untimed, the DATA phase timed. Returns ns. */
static uint64_t one_data_phase(mxgw_session *s, app *a, const message *m,
                               size_t chunk) {
  feed_all(s, a, ENVELOPE, sizeof ENVELOPE - 1, 64 * KiB);
  uint64_t t0 = now_ns();
  feed_all(s, a, m->wire, m->wire_len, chunk);
  uint64_t t1 = now_ns();
  return t1 - t0;
}

static void bench_data(const opts *o, const char *name, size_t size,
                       size_t chunk, long msgs) {
  if (!selected(o, name))
    return;
  message m;
  make_message(&m, size);
  mxgw_session_config *cfg = make_config();

  /* Verification, untimed: the reassembled body is the unstuffed text. */
  app a = {0};
  a.collect_cap = m.body_len;
  a.collect = xmalloc(m.body_len);
  mxgw_session *s = open_session(cfg, NULL, &a);
  a.sum = 0;
  one_data_phase(s, &a, &m, chunk);
  if (a.messages != 1 || a.collect_len != m.body_len ||
      memcmp(a.collect, m.body, m.body_len) != 0)
    die("%s: reassembled body differs from the expected text", name);
  uint64_t ref_sum = a.sum;
  free(a.collect);
  a.collect = NULL;

  double *gbps = xmalloc(sizeof(double) * (size_t)o->runs);
  for (int r = -1; r < o->runs; r++) { /* run -1 warms up */
    uint64_t ns = 0, bytes = 0;
    for (long i = 0; i < msgs; i++) {
      a.sum = 0;
      uint64_t before = a.messages;
      ns += one_data_phase(s, &a, &m, chunk);
      if (a.sum != ref_sum || a.messages != before + 1)
        die("%s: checksum or message count differs in a timed run", name);
      bytes += m.body_len;
    }
    if (r >= 0)
      gbps[r] = (double)bytes / (double)ns; /* octets per ns == GB/s */
  }
  stats st = summarize(gbps, o->runs);
  printf("  %-22s %10.3f %10.3f %10.3f  GB/s   (%ld msgs x %zu B, %zu dot "
         "lines, reads of %zu KiB)\n",
         name, st.med, st.min, st.max, msgs, m.body_len, m.dot_lines,
         chunk / KiB);
  printf("RESULT %s_gbps %.3f GB/s min=%.3f max=%.3f\n", name, st.med, st.min,
         st.max);
  fflush(stdout);
  free(gbps);
  mxgw_session_free(s);
  mxgw_session_config_free(cfg);
  free_message(&m);
}

/* ------------------------------------------------------------------------ */
/* (b) transactions per second                                              */
/* ------------------------------------------------------------------------ */

/* MAIL+RCPT+DATA in one read (PIPELINING), then body and "." in one read. */
static void tx_pipelined(const opts *o, long n) {
  const char *name = "tx_pipelined";
  if (!selected(o, name))
    return;
  message m;
  make_message(&m, 1 * KiB);
  mxgw_session_config *cfg = make_config();
  app a = {0};
  mxgw_session *s = open_session(cfg, NULL, &a);
  double *rate = xmalloc(sizeof(double) * (size_t)o->runs);
  for (int r = -1; r < o->runs; r++) {
    uint64_t before = a.messages;
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
      feed_all(s, &a, ENVELOPE, sizeof ENVELOPE - 1, 64 * KiB);
      feed_all(s, &a, m.wire, m.wire_len, 64 * KiB);
    }
    uint64_t t1 = now_ns();
    if (a.messages - before != (uint64_t)n || a.closed)
      die("%s: %" PRIu64 " of %ld messages accepted", name,
          a.messages - before, n);
    if (r >= 0)
      rate[r] = (double)n * 1e9 / (double)(t1 - t0);
  }
  stats st = summarize(rate, o->runs);
  printf("  %-22s %10.0f %10.0f %10.0f  tx/s   (%ld tx of 1 KiB on one "
         "session)\n",
         name, st.med, st.min, st.max, n);
  printf("RESULT %s %.0f tx/s min=%.0f max=%.0f\n", name, st.med, st.min,
         st.max);
  fflush(stdout);
  free(rate);
  mxgw_session_free(s);
  mxgw_session_config_free(cfg);
  free_message(&m);
}

/* One whole session per transaction: connect, EHLO, MAIL, RCPT, DATA, QUIT. */
static void tx_session(const opts *o, long n) {
  const char *name = "tx_session";
  if (!selected(o, name))
    return;
  static const char quit[] = "QUIT\r\n";
  message m;
  make_message(&m, 1 * KiB);
  mxgw_session_config *cfg = make_config();
  double *rate = xmalloc(sizeof(double) * (size_t)o->runs);
  for (int r = -1; r < o->runs; r++) {
    uint64_t msgs = 0;
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
      app a = {0};
      mxgw_session *s = open_session(cfg, NULL, &a);
      feed_all(s, &a, ENVELOPE, sizeof ENVELOPE - 1, 64 * KiB);
      feed_all(s, &a, m.wire, m.wire_len, 64 * KiB);
      feed_all(s, &a, quit, sizeof quit - 1, 64 * KiB);
      if (!a.closed)
        die("%s: no CLOSE after QUIT", name);
      msgs += a.messages;
      mxgw_session_free(s);
    }
    uint64_t t1 = now_ns();
    if (msgs != (uint64_t)n)
      die("%s: %" PRIu64 " of %ld messages accepted", name, msgs, n);
    if (r >= 0)
      rate[r] = (double)n * 1e9 / (double)(t1 - t0);
  }
  stats st = summarize(rate, o->runs);
  printf("  %-22s %10.0f %10.0f %10.0f  tx/s   (%ld sessions: connect, EHLO, "
         "MAIL, RCPT, DATA 1 KiB, QUIT)\n",
         name, st.med, st.min, st.max, n);
  printf("RESULT %s %.0f tx/s min=%.0f max=%.0f\n", name, st.med, st.min,
         st.max);
  fflush(stdout);
  free(rate);
  mxgw_session_config_free(cfg);
  free_message(&m);
}

/* ------------------------------------------------------------------------ */
/* (c) memory per idle session                                              */
/* ------------------------------------------------------------------------ */

static int cmp_size_desc(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x < y) - (x > y);
}

static void bench_memory(const opts *o, long n) {
  if (!selected(o, "mem_idle"))
    return;
  mxgw_session_config *cfg = make_config();
  mxgw_session **ss = xmalloc(sizeof *ss * (size_t)n);
  memset(ss, 0, sizeof *ss * (size_t)n);

  /* Exact bytes, through a counting allocator. */
  counter c;
  counter_init(&c);
  mxgw_mem mem = {&c, cnt_malloc, cnt_free, cnt_calloc, cnt_realloc};
  app a = {0};
  for (long i = 0; i < n; i++)
    ss[i] = open_session(cfg, &mem, &a);
  if (a.closed)
    die("mem_idle: a session closed");
  double per = (double)c.live / (double)n;
  double blocks = (double)c.nlive / (double)n;

  /* What one idle session holds, block by block (the last one created). */
  counter one;
  counter_init(&one);
  mxgw_mem mem1 = {&one, cnt_malloc, cnt_free, cnt_calloc, cnt_realloc};
  mxgw_session *s1 = open_session(cfg, &mem1, &a);
  size_t sizes[64], ns = 0;
  for (blk *b = one.head.h.next; b != &one.head && ns < 64; b = b->h.next)
    sizes[ns++] = b->h.size;
  qsort(sizes, ns, sizeof sizes[0], cmp_size_desc);
  char detail[512];
  size_t dl = 0;
  detail[0] = '\0';
  for (size_t i = 0; i < ns && dl < sizeof detail - 16; i++)
    dl += (size_t)snprintf(detail + dl, sizeof detail - dl, "%s%zu",
                           i ? "+" : "", sizes[i]);
  mxgw_session_free(s1);
  for (long i = 0; i < n; i++) {
    mxgw_session_free(ss[i]);
    ss[i] = NULL;
  }
  if (c.live != 0 || one.live != 0)
    die("mem_idle: %zu bytes still allocated after mxgw_session_free",
        c.live + one.live);

  /* RSS with the C library's malloc (includes malloc's own overhead);
   * give the memory freed above back to the system first. */
  malloc_trim(0);
  size_t rss0 = rss_bytes();
  for (long i = 0; i < n; i++)
    ss[i] = open_session(cfg, NULL, &a);
  size_t rss1 = rss_bytes();
  double rss_per = rss1 > rss0 ? (double)(rss1 - rss0) / (double)n : 0.0;
  for (long i = 0; i < n; i++)
    mxgw_session_free(ss[i]);

  printf("  %-22s %10.0f %10s %10s  B      (exact, %ld sessions, %.1f blocks "
         "each: %s)\n",
         "mem_idle_exact", per, "-", "-", n, blocks, detail);
  printf("  %-22s %10.0f %10s %10s  B      (RSS delta / %ld, glibc malloc)\n",
         "mem_idle_rss", rss_per, "-", "-", n);
  printf("RESULT mem_idle_exact %.0f B blocks=%.1f\n", per, blocks);
  printf("RESULT mem_idle_rss %.0f B\n", rss_per);
  fflush(stdout);
  free(ss);
  mxgw_session_config_free(cfg);
}

/* ------------------------------------------------------------------------ */

static void usage(FILE *f) {
  fputs("usage: bench_session [--quick] [--runs N] [--only NAME] [--count N]\n"
        "  --quick      small iteration counts (for valgrind, smoke tests)\n"
        "  --runs N     timed repetitions per measurement (default 7)\n"
        "  --only NAME  run the measurements whose name starts with NAME:\n"
        "               data_1k_64k data_1k_16k data_1m_64k data_1m_16k\n"
        "               tx_pipelined tx_session mem_idle\n"
        "  --count N    iterations per run (messages, transactions or\n"
        "               sessions) instead of the default\n",
        f);
}

int main(int argc, char **argv) {
  opts o = {7, 0, NULL, 0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      o.quick = 1;
    } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
      o.runs = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
      o.only = argv[++i];
    } else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
      o.count = atol(argv[++i]);
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (o.runs < 1 || o.count < 0)
    die("--runs must be >= 1 and --count >= 0");

  int cpu = pin_cpu();
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  char where[32];
  if (cpu < 0)
    snprintf(where, sizeof where, "not pinned");
  else
    snprintf(where, sizeof where, "pinned to CPU %d", cpu);
  printf("# bench_session: libmxgw %s, %s sizes, %d timed runs each "
         "(median/min/max), %s, %ld CPUs online\n",
         mxgw_version(NULL), o.quick ? "quick" : "full", o.runs, where, ncpu);
  printf("RESULT runs %d count\n", o.runs);
  printf("  %-22s %10s %10s %10s\n", "measurement", "median", "min", "max");

  /* (c) idle sessions, first, while the heap is still small */
  bench_memory(&o, iterations(&o, 10000, 10000));
  /* (a) DATA phase only; message counts give ~64 MiB per run when full. */
  bench_data(&o, "data_1k_64k", 1 * KiB, 64 * KiB, iterations(&o, 65536, 200));
  bench_data(&o, "data_1k_16k", 1 * KiB, 16 * KiB, iterations(&o, 65536, 200));
  bench_data(&o, "data_1m_64k", 1 * MiB, 64 * KiB, iterations(&o, 64, 2));
  bench_data(&o, "data_1m_16k", 1 * MiB, 16 * KiB, iterations(&o, 64, 2));
  /* (b) whole transactions */
  tx_pipelined(&o, iterations(&o, 200000, 1000));
  tx_session(&o, iterations(&o, 100000, 500));
  return 0;
}
