/* SPDX-License-Identifier: MIT */
/*
 * test_transcripts.c: the golden SMTP dialogue runner. It reads one
 * transcript (*.smtp, format in README.md: client bytes, the exact server
 * bytes expected, the application's decisions, the expected events) and
 * replays it against the session engine in every chunking of the client
 * stream: each segment whole, byte by byte (with the output also written
 * one byte at a time), and split in two at every offset. Every replay must
 * produce exactly the expected server bytes (checked at each directive and
 * at the end), the same event sequence as the whole replay, and the
 * expected events when the transcript lists them. Along the way it checks
 * invariants the header promises: decision events are pending when they
 * are returned, nothing happens while a decision is deferred, CLOSE is the
 * last event, the REPLY log records add up to the output, the allocator
 * hooks balance, and MESSAGE_SIZE matches the body delivered. (The BODY
 * octets of a message that is then aborted depend on where the input was
 * cut, since the body is streamed; they are compared as prefixes only.)
 *
 * Usage: test_transcripts [--print] [--expect-fail] FILE.smtp
 *   --print        replay whole once and print the actual output and events
 *                  in transcript syntax (a tool for writing transcripts;
 *                  always check the printed replies against the RFCs).
 *   --expect-fail  exit 0 only if the transcript cleanly fails to match
 *                  (used by the runner's self-tests in selftest/).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mxgw/mxgw_session.h>

/* ------------------------------------------------------------------------ */
/* Small growable byte string                                               */
/* ------------------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      fprintf(stderr, "out of memory\n");
      exit(2);
    }
    b->p = np;
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_adds(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_addf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void sb_addf(sbuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_free(sbuf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

static int sb_eq(const sbuf *a, const sbuf *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Append p[0..n) in transcript escape syntax. */
static void sb_escape(sbuf *b, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    switch (c) {
    case '\r':
      sb_adds(b, "\\r");
      break;
    case '\n':
      sb_adds(b, "\\n");
      break;
    case '\t':
      sb_adds(b, "\\t");
      break;
    case '\\':
      sb_adds(b, "\\\\");
      break;
    default:
      if (c < 0x20 || c >= 0x7f)
        sb_addf(b, "\\x%02X", c);
      else
        sb_add(b, &p[i], 1);
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Names                                                                    */
/* ------------------------------------------------------------------------ */

static const char *const event_names[] = {
    "NONE",        "CONNECT",       "HELO", "STARTTLS", "AUTH",
    "MAIL",        "RCPT",          "DATA", "BODY",     "MESSAGE_END",
    "MESSAGE_ABORT", "RSET",        "CLOSE"};
#define N_EVENTS ((int)(sizeof event_names / sizeof event_names[0]))

static const char *event_name(int ev) {
  return (ev > 0 && ev < N_EVENTS) ? event_names[ev] : "?";
}

static int event_by_name(const char *s, size_t n) {
  for (int i = 1; i < N_EVENTS; i++)
    if (strlen(event_names[i]) == n && memcmp(event_names[i], s, n) == 0)
      return i;
  return 0;
}

static int is_decision(int ev) {
  switch (ev) {
  case MXGW_EV_CONNECT:
  case MXGW_EV_HELO:
  case MXGW_EV_STARTTLS:
  case MXGW_EV_AUTH:
  case MXGW_EV_MAIL:
  case MXGW_EV_RCPT:
  case MXGW_EV_DATA:
  case MXGW_EV_MESSAGE_END:
    return 1;
  default:
    return 0;
  }
}

static const struct {
  const char *name;
  int key;
} int_opts[] = {
    {"MAX_MESSAGE_SIZE", MXGW_OPT_MAX_MESSAGE_SIZE},
    {"MAX_RECIPIENTS", MXGW_OPT_MAX_RECIPIENTS},
    {"MAX_MESSAGES", MXGW_OPT_MAX_MESSAGES},
    {"MAX_COMMAND_LINE", MXGW_OPT_MAX_COMMAND_LINE},
    {"MAX_TEXT_LINE", MXGW_OPT_MAX_TEXT_LINE},
    {"MAX_ERRORS", MXGW_OPT_MAX_ERRORS},
    {"MAX_UNKNOWN_COMMANDS", MXGW_OPT_MAX_UNKNOWN_COMMANDS},
    {"MAX_JUNK_COMMANDS", MXGW_OPT_MAX_JUNK_COMMANDS},
    {"COMMAND_TIMEOUT_MS", MXGW_OPT_COMMAND_TIMEOUT_MS},
    {"DATA_TIMEOUT_MS", MXGW_OPT_DATA_TIMEOUT_MS},
    {"BARE_NEWLINE", MXGW_OPT_BARE_NEWLINE},
    {"STARTTLS", MXGW_OPT_STARTTLS},
    {"REQUIRE_TLS", MXGW_OPT_REQUIRE_TLS},
    {"AUTH", MXGW_OPT_AUTH},
    {"AUTH_PLAINTEXT", MXGW_OPT_AUTH_PLAINTEXT},
    {"REQUIRE_AUTH", MXGW_OPT_REQUIRE_AUTH},
    {"SMTPUTF8", MXGW_OPT_SMTPUTF8},
    {"CHUNKING", MXGW_OPT_CHUNKING},
    {"DSN", MXGW_OPT_DSN},
    {"8BITMIME", MXGW_OPT_8BITMIME},
    {"PIPELINING", MXGW_OPT_PIPELINING},
    {"INPUT_BUFFER", MXGW_OPT_INPUT_BUFFER},
    {"OUTPUT_BUFFER", MXGW_OPT_OUTPUT_BUFFER},
    {"REJECT_HTTP", MXGW_OPT_REJECT_HTTP},
    {"IMPLICIT_TLS", MXGW_OPT_IMPLICIT_TLS},
};

static const struct {
  const char *name;
  int key;
} str_opts[] = {
    {"HOSTNAME", MXGW_OPT_HOSTNAME},
    {"GREETING", MXGW_OPT_GREETING},
};

/* ------------------------------------------------------------------------ */
/* The parsed transcript                                                    */
/* ------------------------------------------------------------------------ */

enum { ACT_ACCEPT = 1, ACT_REPLY, ACT_DEFER };

typedef struct action {
  int kind;
  int code;
  char *enh;  /* NULL: default */
  char *text; /* NULL: default */
} action;

typedef struct dline {
  int event;
  action act;
  int lineno;
} dline;

typedef struct eline {
  int event;
  int has_payload;
  sbuf payload;
  int lineno;
} eline;

enum {
  ST_SEG = 1, /* client bytes */
  ST_TLS,
  ST_EOF,
  ST_TICK,
  ST_RESUME,
  ST_DEADLINE,
  ST_CLOSED
};

typedef struct step {
  int kind;
  int lineno;
  sbuf bytes;       /* ST_SEG */
  int64_t value;    /* ST_TICK: delta; ST_DEADLINE: delta or -1 */
  int event;        /* ST_RESUME */
  action act;       /* ST_RESUME */
  size_t expect_at; /* boundary steps: expected output length before it */
} step;

typedef struct opt {
  int key;
  int is_str;
  int64_t ival;
  char *sval;
} opt;

typedef struct transcript {
  const char *path;
  opt *opts;
  size_t nopts;
  char *peer_addr, *peer_host;
  int peer_port;
  step *steps;
  size_t nsteps;
  dline *ds;
  size_t nds;
  eline *es;
  size_t nes;
  sbuf expect; /* all S: bytes */
} transcript;

static void *xcalloc_grow(void *p, size_t n, size_t size) {
  void *np = realloc(p, n * size);
  if (!np) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  memset((char *)np + (n - 1) * size, 0, size);
  return np;
}

static char *xstrndup(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Unescape s[0..n) into out. Returns 0 or -1 on a bad escape. */
static int unescape(const char *s, size_t n, sbuf *out) {
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c != '\\') {
      sb_add(out, &c, 1);
      continue;
    }
    if (++i >= n)
      return -1;
    switch (s[i]) {
    case 'r':
      c = '\r';
      break;
    case 'n':
      c = '\n';
      break;
    case 't':
      c = '\t';
      break;
    case '\\':
      c = '\\';
      break;
    case 'x': {
      int h = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
      int l = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
      if (h < 0 || l < 0)
        return -1;
      c = (char)(h * 16 + l);
      i += 2;
      break;
    }
    default:
      return -1;
    }
    sb_add(out, &c, 1);
  }
  return 0;
}

static int perr(const transcript *t, int lineno, const char *msg) {
  fprintf(stderr, "%s:%d: %s\n", t->path, lineno, msg);
  return -1;
}

/* Next space-separated token of line[*pos..n); returns its length. */
static size_t token(const char *line, size_t n, size_t *pos, const char **tok) {
  while (*pos < n && line[*pos] == ' ')
    (*pos)++;
  *tok = line + *pos;
  size_t start = *pos;
  while (*pos < n && line[*pos] != ' ')
    (*pos)++;
  return *pos - start;
}

static int looks_enh(const char *s, size_t n) {
  /* class "." subject "." detail, digits only (RFC 3463) */
  int dots = 0, digits = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '.') {
      if (!digits)
        return 0;
      dots++;
      digits = 0;
    } else if (s[i] >= '0' && s[i] <= '9') {
      digits++;
    } else {
      return 0;
    }
  }
  return dots == 2 && digits > 0;
}

/* "accept" | "defer" | "reply CODE [ENH|-] [TEXT]" from line[pos..n). */
static int parse_action(const transcript *t, int lineno, const char *line,
                        size_t n, size_t pos, action *a) {
  const char *tok;
  size_t tl = token(line, n, &pos, &tok);
  memset(a, 0, sizeof *a);
  if (tl == 6 && memcmp(tok, "accept", 6) == 0) {
    a->kind = ACT_ACCEPT;
  } else if (tl == 5 && memcmp(tok, "defer", 5) == 0) {
    a->kind = ACT_DEFER;
  } else if (tl == 5 && memcmp(tok, "reply", 5) == 0) {
    a->kind = ACT_REPLY;
    tl = token(line, n, &pos, &tok);
    if (tl != 3 || tok[0] < '1' || tok[0] > '9' || tok[1] < '0' ||
        tok[1] > '9' || tok[2] < '0' || tok[2] > '9')
      return perr(t, lineno, "reply needs a 3-digit code");
    a->code = (tok[0] - '0') * 100 + (tok[1] - '0') * 10 + (tok[2] - '0');
    size_t save = pos;
    tl = token(line, n, &pos, &tok);
    if (tl == 1 && tok[0] == '-') {
      /* default enhanced code */
    } else if (tl && looks_enh(tok, tl)) {
      a->enh = xstrndup(tok, tl);
    } else {
      pos = save;
    }
    while (pos < n && line[pos] == ' ')
      pos++;
    if (pos < n) {
      sbuf tx = {0};
      if (unescape(line + pos, n - pos, &tx) < 0)
        return perr(t, lineno, "bad escape in reply text");
      a->text = xstrndup(tx.p, tx.len);
      sb_free(&tx);
    }
    return 0;
  } else {
    return perr(t, lineno, "expected accept, defer or reply");
  }
  if (token(line, n, &pos, &tok) > 0)
    return perr(t, lineno, "junk after the action");
  return 0;
}

static step *add_step(transcript *t, int kind, int lineno) {
  t->steps = xcalloc_grow(t->steps, ++t->nsteps, sizeof *t->steps);
  step *st = &t->steps[t->nsteps - 1];
  st->kind = kind;
  st->lineno = lineno;
  st->expect_at = t->expect.len;
  return st;
}

static int parse_line(transcript *t, int lineno, const char *line, size_t n,
                      int *dialogue_started) {
  const char *tok;
  size_t pos = 0, tl;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
      return perr(t, lineno,
                  "control character in the transcript file; use escapes");
  if (n == 0 || line[0] == '#')
    return 0;

  if (n >= 2 && (line[0] == 'C' || line[0] == 'S') &&
      (line[1] == ':' || line[1] == '*')) {
    /* "C: text", or "C*N: text" for N copies of the text */
    long reps = 1;
    size_t at = 1;
    if (line[1] == '*') {
      reps = 0;
      for (at = 2; at < n && line[at] >= '0' && line[at] <= '9'; at++)
        if ((reps = reps * 10 + (line[at] - '0')) > 1000000)
          return perr(t, lineno, "repeat count too large");
      if (at == 2 || at >= n || line[at] != ':' || reps < 1)
        return perr(t, lineno, "expected C*N: or S*N:");
    }
    at++; /* the colon */
    if (n > at && line[at] != ' ')
      return perr(t, lineno, "C:/S: must be followed by one space");
    sbuf one = {0}, bytes = {0};
    if (n > at + 1 && unescape(line + at + 1, n - at - 1, &one) < 0)
      return perr(t, lineno, "bad escape");
    for (long k = 0; k < reps; k++)
      sb_add(&bytes, one.p, one.len);
    sb_free(&one);
    *dialogue_started = 1;
    if (line[0] == 'S') {
      sb_add(&t->expect, bytes.p, bytes.len);
    } else {
      step *last = t->nsteps ? &t->steps[t->nsteps - 1] : NULL;
      if (!last || last->kind != ST_SEG)
        last = add_step(t, ST_SEG, lineno);
      sb_add(&last->bytes, bytes.p, bytes.len);
    }
    sb_free(&bytes);
    return 0;
  }

  if (n >= 3 && line[0] == 'D' && line[1] == ':' && line[2] == ' ') {
    pos = 3;
    tl = token(line, n, &pos, &tok);
    int ev = event_by_name(tok, tl);
    if (!ev || !is_decision(ev))
      return perr(t, lineno, "D: needs a decision event name");
    t->ds = xcalloc_grow(t->ds, ++t->nds, sizeof *t->ds);
    dline *d = &t->ds[t->nds - 1];
    d->event = ev;
    d->lineno = lineno;
    *dialogue_started = 1;
    return parse_action(t, lineno, line, n, pos, &d->act);
  }

  if (n >= 3 && line[0] == 'E' && line[1] == ':' && line[2] == ' ') {
    pos = 3;
    tl = token(line, n, &pos, &tok);
    int ev = event_by_name(tok, tl);
    if (!ev)
      return perr(t, lineno, "E: needs an event name");
    t->es = xcalloc_grow(t->es, ++t->nes, sizeof *t->es);
    eline *e = &t->es[t->nes - 1];
    e->event = ev;
    e->lineno = lineno;
    if (pos < n) { /* one space, then the payload verbatim */
      e->has_payload = 1;
      if (unescape(line + pos + 1, n - pos - 1, &e->payload) < 0)
        return perr(t, lineno, "bad escape");
    }
    *dialogue_started = 1;
    return 0;
  }

  if (line[0] != '@')
    return perr(t, lineno, "unknown line (C:, S:, D:, E:, @..., # only)");

  tl = token(line, n, &pos, &tok);
#define IS(word) (tl == strlen(word) && memcmp(tok, word, tl) == 0)
  if (IS("@opt")) {
    if (*dialogue_started)
      return perr(t, lineno, "@opt must come before the dialogue");
    const char *key;
    size_t kl = token(line, n, &pos, &key);
    while (pos < n && line[pos] == ' ')
      pos++;
    if (!kl || pos >= n)
      return perr(t, lineno, "@opt KEY VALUE");
    t->opts = xcalloc_grow(t->opts, ++t->nopts, sizeof *t->opts);
    opt *o = &t->opts[t->nopts - 1];
    for (size_t i = 0; i < sizeof str_opts / sizeof str_opts[0]; i++)
      if (strlen(str_opts[i].name) == kl &&
          memcmp(str_opts[i].name, key, kl) == 0) {
        sbuf v = {0};
        if (unescape(line + pos, n - pos, &v) < 0)
          return perr(t, lineno, "bad escape");
        o->key = str_opts[i].key;
        o->is_str = 1;
        o->sval = xstrndup(v.p ? v.p : "", v.len);
        sb_free(&v);
        return 0;
      }
    for (size_t i = 0; i < sizeof int_opts / sizeof int_opts[0]; i++)
      if (strlen(int_opts[i].name) == kl &&
          memcmp(int_opts[i].name, key, kl) == 0) {
        o->key = int_opts[i].key;
        char *val = xstrndup(line + pos, n - pos);
        if (strcmp(val, "REJECT") == 0) {
          o->ival = MXGW_BARE_REJECT;
        } else if (strcmp(val, "NORMALIZE") == 0) {
          o->ival = MXGW_BARE_NORMALIZE;
        } else {
          char *end;
          errno = 0;
          o->ival = strtoll(val, &end, 10);
          if (errno || end == val || *end) {
            free(val);
            return perr(t, lineno, "bad integer option value");
          }
        }
        free(val);
        return 0;
      }
    return perr(t, lineno, "unknown option name");
  }
  if (IS("@peer")) {
    if (*dialogue_started)
      return perr(t, lineno, "@peer must come before the dialogue");
    const char *a, *h, *p;
    size_t al = token(line, n, &pos, &a);
    size_t hl = token(line, n, &pos, &h);
    size_t pl = token(line, n, &pos, &p);
    if (!al)
      return perr(t, lineno, "@peer ADDR [HOST [PORT]]");
    free(t->peer_addr);
    free(t->peer_host);
    t->peer_addr = xstrndup(a, al);
    t->peer_host = hl ? xstrndup(h, hl) : NULL;
    t->peer_port = 0;
    for (size_t i = 0; i < pl; i++) {
      if (p[i] < '0' || p[i] > '9' || t->peer_port > 65535)
        return perr(t, lineno, "bad @peer port");
      t->peer_port = t->peer_port * 10 + (p[i] - '0');
    }
    return 0;
  }
  *dialogue_started = 1;
  if (IS("@tls")) {
    add_step(t, ST_TLS, lineno);
    return 0;
  }
  if (IS("@eof")) {
    add_step(t, ST_EOF, lineno);
    return 0;
  }
  if (IS("@closed")) {
    add_step(t, ST_CLOSED, lineno);
    return 0;
  }
  if (IS("@tick") || IS("@deadline")) {
    int is_tick = IS("@tick");
    const char *v;
    size_t vl = token(line, n, &pos, &v);
    step *st = add_step(t, is_tick ? ST_TICK : ST_DEADLINE, lineno);
    if (!is_tick && vl == 4 && memcmp(v, "none", 4) == 0) {
      st->value = -1;
      return 0;
    }
    if (vl < 2 || v[0] != '+')
      return perr(t, lineno, "expected +MILLISECONDS");
    char *s = xstrndup(v + 1, vl - 1), *end;
    st->value = strtoll(s, &end, 10);
    int bad = *end || st->value < 0;
    free(s);
    if (bad)
      return perr(t, lineno, "expected +MILLISECONDS");
    return 0;
  }
  if (IS("@resume")) {
    const char *e;
    size_t el = token(line, n, &pos, &e);
    step *st = add_step(t, ST_RESUME, lineno);
    st->event = event_by_name(e, el);
    if (!st->event || !is_decision(st->event))
      return perr(t, lineno, "@resume EVENT accept|reply ...");
    if (parse_action(t, lineno, line, n, pos, &st->act) < 0)
      return -1;
    if (st->act.kind == ACT_DEFER)
      return perr(t, lineno, "@resume cannot defer again");
    return 0;
  }
#undef IS
  return perr(t, lineno, "unknown directive");
}

static int parse_file(transcript *t, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    return -1;
  }
  t->path = path;
  sbuf line = {0};
  int lineno = 0, rc = 0, c, started = 0;
  do {
    c = fgetc(f);
    if (c == '\n' || (c == EOF && line.len)) {
      lineno++;
      if (parse_line(t, lineno, line.p ? line.p : "", line.len, &started) < 0)
        rc = -1;
      line.len = 0;
    } else if (c != EOF) {
      char ch = (char)c;
      sb_add(&line, &ch, 1);
    }
  } while (c != EOF);
  fclose(f);
  sb_free(&line);
  if (!rc && t->nsteps == 0 && t->expect.len == 0)
    rc = perr(t, lineno, "empty transcript");
  if (!t->peer_addr)
    t->peer_addr = xstrndup("192.0.2.1", 9);
  return rc;
}

static void free_transcript(transcript *t) {
  for (size_t i = 0; i < t->nopts; i++)
    free(t->opts[i].sval);
  free(t->opts);
  free(t->peer_addr);
  free(t->peer_host);
  for (size_t i = 0; i < t->nsteps; i++) {
    sb_free(&t->steps[i].bytes);
    free(t->steps[i].act.enh);
    free(t->steps[i].act.text);
  }
  free(t->steps);
  for (size_t i = 0; i < t->nds; i++) {
    free(t->ds[i].act.enh);
    free(t->ds[i].act.text);
  }
  free(t->ds);
  for (size_t i = 0; i < t->nes; i++)
    sb_free(&t->es[i].payload);
  free(t->es);
  sb_free(&t->expect);
}

/* ------------------------------------------------------------------------ */
/* Counting allocator: every byte the library allocates must come back     */
/* ------------------------------------------------------------------------ */

typedef struct memstat {
  long live;
} memstat;

static void *m_malloc(size_t n, void *u) {
  void *p = malloc(n ? n : 1);
  if (p)
    ((memstat *)u)->live++;
  return p;
}
static void m_free(void *p, void *u) {
  if (p) {
    ((memstat *)u)->live--;
    free(p);
  }
}
static void *m_calloc(size_t k, size_t n, void *u) {
  void *p = calloc(k ? k : 1, n ? n : 1);
  if (p)
    ((memstat *)u)->live++;
  return p;
}
static void *m_realloc(void *p, size_t n, void *u) {
  if (!p)
    return m_malloc(n, u);
  if (n == 0) {
    m_free(p, u);
    return NULL;
  }
  return realloc(p, n);
}

/* ------------------------------------------------------------------------ */
/* One replay                                                               */
/* ------------------------------------------------------------------------ */

enum { MODE_WHOLE = 1, MODE_BYTES, MODE_SPLIT };

typedef struct evrec {
  int ev;
  sbuf payload;
  sbuf discarded; /* MESSAGE_ABORT: the BODY octets delivered before it */
} evrec;

typedef struct run {
  const transcript *t;
  int mode;
  size_t split_step, split_at;

  memstat mem;
  mxgw_session_config *cfg;
  mxgw_session *s;
  int64_t now;

  sbuf out;     /* bytes written to the client */
  sbuf logged;  /* MXGW_LOG_REPLY records, concatenated */
  evrec *evs;
  size_t nevs, capevs;
  size_t dnext;  /* next D: line */
  int deferred;  /* the event left unanswered, or 0 */
  sbuf carry;    /* client bytes the session did not take yet */
  size_t max_carry;
  size_t out_stalls; /* next_event() returned 0 with output waiting */
  int fed_closed; /* feed() said MXGW_E_CLOSED */
  int saw_close;
  int eof_sent;
  uint64_t body_bytes;

  size_t *checkpoints; /* out.len at each step (for --print) */
  int failed;
  sbuf why;
} run;

static void describe_mode(const run *r, sbuf *b) {
  switch (r->mode) {
  case MODE_WHOLE:
    sb_adds(b, "whole");
    break;
  case MODE_BYTES:
    sb_adds(b, "byte by byte");
    break;
  default:
    sb_addf(b, "split of the client bytes at line %d at offset %zu",
            r->t->steps[r->split_step].lineno, r->split_at);
  }
}

static void fail(run *r, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void fail(run *r, const char *fmt, ...) {
  if (r->failed)
    return;
  r->failed = 1;
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  sb_adds(&r->why, "replay (");
  describe_mode(r, &r->why);
  sb_adds(&r->why, "): ");
  sb_adds(&r->why, tmp);
  sb_adds(&r->why, "\n");
}

static void log_hook(void *user, mxgw_session *s, int kind, const char *text,
                     size_t len) {
  run *r = user;
  (void)s;
  if (kind == MXGW_LOG_REPLY)
    sb_add(&r->logged, text, len);
}

/* Append string item key to b (nothing if not set). Returns 1 if set. */
static int get_str(run *r, int key, sbuf *b) {
  const char *p = NULL;
  size_t l = 0;
  int rc = mxgw_session_get_str(r->s, key, &p, &l);
  if (rc == MXGW_E_NOTFOUND)
    return 0;
  if (rc < 0) {
    fail(r, "get_str(%d): %s", key, mxgw_errname(rc));
    return 0;
  }
  sb_add(b, p, l);
  return 1;
}

static int64_t get_int(run *r, int key) {
  int64_t v = 0;
  int rc = mxgw_session_get_int(r->s, key, &v);
  if (rc < 0)
    fail(r, "get_int(%d): %s", key, mxgw_errname(rc));
  return v;
}

static void add_param(run *r, sbuf *b, const char *name, int key) {
  sbuf v = {0};
  if (get_str(r, key, &v)) {
    sb_addf(b, " %s=", name);
    sb_add(b, v.p, v.len);
  }
  sb_free(&v);
}

/* The payload recorded for an event (format in README.md). */
static void payload(run *r, int ev, sbuf *b) {
  switch (ev) {
  case MXGW_EV_CONNECT:
    get_str(r, MXGW_INFO_PEER_ADDR, b);
    sb_adds(b, " ");
    get_str(r, MXGW_INFO_PEER_HOST, b);
    break;
  case MXGW_EV_HELO:
    sb_adds(b, get_int(r, MXGW_INFO_IS_EHLO) ? "EHLO " : "HELO ");
    get_str(r, MXGW_INFO_HELO, b);
    break;
  case MXGW_EV_AUTH: {
    sbuf z = {0};
    get_str(r, MXGW_INFO_AUTH_MECH, b);
    if (get_str(r, MXGW_INFO_AUTH_AUTHZID, &z) && z.len) {
      sb_adds(b, " authzid=");
      sb_add(b, z.p, z.len);
    }
    sb_free(&z);
    add_param(r, b, "user", MXGW_INFO_AUTH_USER);
    add_param(r, b, "password", MXGW_INFO_AUTH_PASSWORD);
    break;
  }
  case MXGW_EV_MAIL: {
    sb_adds(b, "<");
    get_str(r, MXGW_INFO_MAIL_FROM, b);
    sb_adds(b, ">");
    int64_t size = get_int(r, MXGW_INFO_SIZE);
    if (size >= 0)
      sb_addf(b, " SIZE=%" PRId64, size);
    { /* BODY=7BIT is the default (RFC 6152); show only 8BITMIME */
      sbuf body = {0};
      if (get_str(r, MXGW_INFO_BODY, &body) &&
          !(body.len == 4 && memcmp(body.p, "7BIT", 4) == 0)) {
        sb_adds(b, " BODY=");
        sb_add(b, body.p, body.len);
      }
      sb_free(&body);
    }
    if (get_int(r, MXGW_INFO_SMTPUTF8))
      sb_adds(b, " SMTPUTF8");
    add_param(r, b, "RET", MXGW_INFO_RET);
    add_param(r, b, "ENVID", MXGW_INFO_ENVID);
    add_param(r, b, "AUTH", MXGW_INFO_MAIL_AUTH);
    break;
  }
  case MXGW_EV_RCPT:
    sb_adds(b, "<");
    get_str(r, MXGW_INFO_RCPT, b);
    sb_adds(b, ">");
    add_param(r, b, "NOTIFY", MXGW_INFO_NOTIFY);
    add_param(r, b, "ORCPT", MXGW_INFO_ORCPT);
    break;
  case MXGW_EV_DATA:
    sb_adds(b, get_int(r, MXGW_INFO_BDAT) ? "BDAT" : "DATA");
    sb_addf(b, " rcpts=%" PRId64, get_int(r, MXGW_INFO_RCPT_COUNT));
    break;
  case MXGW_EV_BODY:
  case MXGW_EV_MESSAGE_ABORT:
  case MXGW_EV_CLOSE:
    get_str(r, MXGW_INFO_DATA, b);
    break;
  case MXGW_EV_MESSAGE_END:
    sb_addf(b, "size=%" PRId64, get_int(r, MXGW_INFO_MESSAGE_SIZE));
    break;
  default:
    break;
  }
}

/* Write out (record) everything pending; returns how many octets. */
static size_t drain_output(run *r) {
  size_t total = 0;
  while (!r->failed) {
    const char *p;
    size_t l;
    int rc = mxgw_session_output(r->s, &p, &l);
    if (rc < 0) {
      fail(r, "output(): %s", mxgw_errname(rc));
      break;
    }
    if (l == 0)
      break;
    size_t n = r->mode == MODE_BYTES ? 1 : l; /* partial writes too */
    sb_add(&r->out, p, n);
    total += n;
    rc = mxgw_session_consume(r->s, n);
    if (rc < 0) {
      fail(r, "consume(%zu): %s", n, mxgw_errname(rc));
      break;
    }
  }
  return total;
}

static void decide(run *r, int ev, const action *a, int lineno) {
  int rc = 0;
  if (a->kind == ACT_DEFER) {
    r->deferred = ev;
    return;
  }
  if (a->kind == ACT_ACCEPT)
    rc = mxgw_session_accept(r->s);
  else
    rc = mxgw_session_reply(r->s, a->code, a->enh, a->text);
  if (rc < 0)
    fail(r, "answering %s (line %d): %s (%s)", event_name(ev), lineno,
         mxgw_errname(rc), mxgw_session_errmsg(r->s));
}

/* Pull events until there are none; returns how many there were. */
static size_t pump(run *r) {
  size_t count = 0;
  while (!r->failed) {
    drain_output(r);
    int ev = mxgw_session_next_event(r->s);
    if (ev < 0) {
      fail(r, "next_event(): %s", mxgw_errname(ev));
      break;
    }
    if (ev == 0) {
      /* The session also stops when its output buffer is full: once that
       * is written, it may go on with the input it holds. */
      if (drain_output(r) > 0) {
        r->out_stalls++;
        continue;
      }
      break;
    }
    count++;
    if (ev >= N_EVENTS) {
      fail(r, "unknown event %d", ev);
      break;
    }
    if (r->saw_close) {
      fail(r, "event %s after CLOSE", event_name(ev));
      break;
    }
    if (r->deferred) {
      if (mxgw_session_pending(r->s) != MXGW_EV_NONE) {
        fail(r, "event %s while the %s decision is deferred", event_name(ev),
             event_name(r->deferred));
        break;
      }
      /* The session dropped the decision as it closed (early talker,
       * shutdown): there is nothing left to answer. */
      r->deferred = 0;
    }
    sbuf pl = {0};
    payload(r, ev, &pl);
    if (ev == MXGW_EV_DATA)
      r->body_bytes = 0;
    if (ev == MXGW_EV_BODY)
      r->body_bytes += pl.len;
    if (ev == MXGW_EV_MESSAGE_END) {
      int64_t size = get_int(r, MXGW_INFO_MESSAGE_SIZE);
      if (size < 0 || (uint64_t)size != r->body_bytes)
        fail(r, "MESSAGE_END: MESSAGE_SIZE %" PRId64
                " but BODY events delivered %" PRIu64 " octets",
             size, r->body_bytes);
    }
    if (ev == MXGW_EV_CLOSE)
      r->saw_close = 1;
    if (ev == MXGW_EV_BODY && r->nevs && r->evs[r->nevs - 1].ev == ev) {
      sb_add(&r->evs[r->nevs - 1].payload, pl.p, pl.len);
      sb_free(&pl);
    } else if (ev == MXGW_EV_MESSAGE_ABORT && r->nevs &&
               r->evs[r->nevs - 1].ev == MXGW_EV_BODY) {
      /* The body is streamed, so how much of an aborted message was
       * delivered before the abort depends on how the input was cut; the
       * application discards it. It is set aside and compared as a prefix
       * only (see same_events()). */
      evrec *last = &r->evs[r->nevs - 1];
      sbuf body = last->payload;
      last->ev = ev;
      last->payload = pl;
      last->discarded = body;
    } else {
      if (r->nevs == r->capevs) {
        r->capevs = r->capevs ? 2 * r->capevs : 16;
        evrec *ne = realloc(r->evs, r->capevs * sizeof *ne);
        if (!ne) {
          fprintf(stderr, "out of memory\n");
          exit(2);
        }
        r->evs = ne;
      }
      memset(&r->evs[r->nevs++], 0, sizeof *r->evs);
      r->evs[r->nevs - 1].ev = ev;
      r->evs[r->nevs - 1].payload = pl;
    }
    int pending = mxgw_session_pending(r->s);
    if (is_decision(ev)) {
      if (pending != ev) {
        fail(r, "decision event %s returned but pending() is %s",
             event_name(ev), event_name(pending));
        break;
      }
      const dline *d = NULL;
      if (r->dnext < r->t->nds && r->t->ds[r->dnext].event == ev)
        d = &r->t->ds[r->dnext++];
      static const action accept = {ACT_ACCEPT, 0, NULL, NULL};
      decide(r, ev, d ? &d->act : &accept, d ? d->lineno : 0);
    } else if (pending != MXGW_EV_NONE) {
      fail(r, "information event %s returned while %s is pending",
           event_name(ev), event_name(pending));
      break;
    }
  }
  drain_output(r);
  return count;
}

/* Offer p[0..n) once, re-offering what the session does not take. */
static void feed_chunk(run *r, const char *p, size_t n) {
  while (n > 0 && !r->failed) {
    if (r->fed_closed)
      return; /* the session is over: the rest is discarded */
    int rc = mxgw_session_feed(r->s, p, n, r->now);
    if (rc == MXGW_E_CLOSED) {
      r->fed_closed = 1;
      pump(r);
      return;
    }
    if (rc < 0) {
      fail(r, "feed(): %s (%s)", mxgw_errname(rc), mxgw_session_errmsg(r->s));
      return;
    }
    if ((size_t)rc > n) {
      fail(r, "feed() took %d of %zu bytes", rc, n);
      return;
    }
    p += rc;
    n -= (size_t)rc;
    size_t evs = pump(r);
    if (rc == 0 && evs == 0 && !r->failed) {
      if (r->deferred) { /* back-pressure while a decision waits */
        sb_add(&r->carry, p, n);
        if (r->carry.len > r->max_carry)
          r->max_carry = r->carry.len;
        return;
      }
      fail(r, "the session takes no more input (%zu bytes left) and has no "
              "event, with no decision deferred (want=%d)",
           n, mxgw_session_want(r->s));
      return;
    }
  }
}

static void offer(run *r, const char *p, size_t n);

static void feed_carry(run *r) {
  if (!r->carry.len)
    return;
  sbuf c = r->carry;
  memset(&r->carry, 0, sizeof r->carry);
  offer(r, c.p, c.len);
  sb_free(&c);
}

static void offer(run *r, const char *p, size_t n) {
  if (r->carry.len) {
    /* earlier bytes still wait; keep the order */
    sb_add(&r->carry, p, n);
    return;
  }
  if (r->mode == MODE_BYTES) {
    for (size_t i = 0; i < n && !r->failed; i++) {
      if (r->carry.len) {
        sb_add(&r->carry, p + i, n - i);
        return;
      }
      feed_chunk(r, p + i, 1);
    }
  } else {
    feed_chunk(r, p, n);
  }
}

static void check_output(run *r, size_t want_len, int lineno) {
  const sbuf *e = &r->t->expect;
  if (r->out.len == want_len && memcmp(r->out.p ? r->out.p : "", e->p ? e->p : "",
                                       want_len) == 0)
    return;
  size_t i = 0;
  while (i < r->out.len && i < want_len && r->out.p[i] == e->p[i])
    i++;
  size_t from = i > 60 ? i - 60 : 0;
  size_t alen = r->out.len - from, xlen = want_len - from;
  if (alen > 300)
    alen = 300;
  if (xlen > 300)
    xlen = 300;
  sbuf a = {0}, x = {0};
  sb_escape(&a, r->out.p ? r->out.p + from : "", alen);
  sb_escape(&x, e->p ? e->p + from : "", xlen);
  char where[64];
  if (lineno)
    snprintf(where, sizeof where, "before line %d", lineno);
  else
    snprintf(where, sizeof where, "at the end");
  fail(r, "server output differs at octet %zu (checked %s)\n"
          "  expected: ...%s\n  actual:   ...%s",
       i, where, x.p ? x.p : "", a.p ? a.p : "");
  sb_free(&a);
  sb_free(&x);
}

static void do_step(run *r, size_t i) {
  const step *st = &r->t->steps[i];
  int rc;
  if (st->kind != ST_SEG)
    check_output(r, st->expect_at, st->lineno);
  if (r->failed)
    return;
  switch (st->kind) {
  case ST_SEG:
    if (r->mode == MODE_SPLIT && i == r->split_step) {
      offer(r, st->bytes.p, r->split_at);
      offer(r, st->bytes.p + r->split_at, st->bytes.len - r->split_at);
    } else {
      offer(r, st->bytes.p, st->bytes.len);
    }
    break;
  case ST_TLS:
    rc = mxgw_session_starttls_done(r->s, "TLSv1.3", "TLS_AES_128_GCM_SHA256");
    if (rc < 0)
      fail(r, "line %d: starttls_done(): %s (%s)", st->lineno,
           mxgw_errname(rc), mxgw_session_errmsg(r->s));
    pump(r);
    break;
  case ST_EOF:
    rc = mxgw_session_eof(r->s);
    if (rc < 0)
      fail(r, "line %d: eof(): %s", st->lineno, mxgw_errname(rc));
    r->eof_sent = 1;
    sb_free(&r->carry); /* the client is gone */
    pump(r);
    break;
  case ST_TICK:
    r->now += st->value;
    rc = mxgw_session_tick(r->s, r->now);
    if (rc < 0)
      fail(r, "line %d: tick(): %s", st->lineno, mxgw_errname(rc));
    pump(r);
    break;
  case ST_DEADLINE: {
    int64_t d = mxgw_session_deadline(r->s);
    int64_t want = st->value < 0 ? -1 : r->now + st->value;
    if (d != want)
      fail(r, "line %d: deadline() is %s%" PRId64 ", expected %s%" PRId64,
           st->lineno, d < 0 ? "" : "now+", d < 0 ? d : d - r->now,
           want < 0 ? "" : "now+", want < 0 ? want : st->value);
    break;
  }
  case ST_CLOSED: {
    int w = mxgw_session_want(r->s);
    if (!(w & MXGW_WANT_CLOSE))
      fail(r, "line %d: the session is not closed (want=%d)", st->lineno, w);
    break;
  }
  case ST_RESUME: {
    pump(r); /* all buffered input has already produced its events */
    if (r->failed)
      break;
    int pending = mxgw_session_pending(r->s);
    if (r->deferred != st->event || pending != st->event) {
      fail(r, "line %d: @resume %s, but the deferred decision is %s "
              "(pending() says %s)",
           st->lineno, event_name(st->event), event_name(r->deferred),
           event_name(pending));
      break;
    }
    r->deferred = 0;
    decide(r, st->event, &st->act, st->lineno);
    pump(r);
    feed_carry(r);
    break;
  }
  }
}

static void init_run(run *r, const transcript *t, int mode, size_t split_step,
                     size_t split_at) {
  memset(r, 0, sizeof *r);
  r->t = t;
  r->mode = mode;
  r->split_step = split_step;
  r->split_at = split_at;
  r->now = 1000000000;
}

static void free_run(run *r) {
  sb_free(&r->out);
  sb_free(&r->logged);
  sb_free(&r->carry);
  sb_free(&r->why);
  for (size_t i = 0; i < r->nevs; i++) {
    sb_free(&r->evs[i].payload);
    sb_free(&r->evs[i].discarded);
  }
  free(r->evs);
  free(r->checkpoints);
}

static void replay(run *r) {
  const transcript *t = r->t;
  mxgw_mem mem = {&r->mem, m_malloc, m_free, m_calloc, m_realloc};
  int rc = mxgw_session_config_new(&r->cfg, &mem);
  if (rc < 0) {
    fail(r, "config_new(): %s", mxgw_errname(rc));
    return;
  }
  for (size_t i = 0; i < t->nopts && !r->failed; i++) {
    const opt *o = &t->opts[i];
    rc = o->is_str ? mxgw_session_config_set_str(r->cfg, o->key, o->sval)
                   : mxgw_session_config_set_int(r->cfg, o->key, o->ival);
    if (rc < 0)
      fail(r, "setting option %d: %s", o->key, mxgw_errname(rc));
  }
  if (!r->failed && (rc = mxgw_session_new(&r->s, r->cfg, &mem)) < 0)
    fail(r, "session_new(): %s", mxgw_errname(rc));
  mxgw_session_config_free(r->cfg);
  r->cfg = NULL;
  if (r->failed)
    return;
  mxgw_session_set_log(r->s, log_hook, r);
  rc = mxgw_session_set_peer(r->s, t->peer_addr, t->peer_port, t->peer_host);
  if (rc < 0)
    fail(r, "set_peer(): %s", mxgw_errname(rc));
  if (!r->failed && (rc = mxgw_session_start(r->s, r->now)) < 0)
    fail(r, "start(): %s", mxgw_errname(rc));
  if (!r->failed)
    pump(r);
  r->checkpoints = calloc(t->nsteps + 1, sizeof *r->checkpoints);
  for (size_t i = 0; i < t->nsteps && !r->failed; i++) {
    if (r->checkpoints)
      r->checkpoints[i] = r->out.len;
    do_step(r, i);
  }
  if (!r->failed)
    pump(r);
  if (r->checkpoints)
    r->checkpoints[t->nsteps] = r->out.len;
  if (!r->failed)
    check_output(r, t->expect.len, 0);
  if (!r->failed && r->dnext < t->nds)
    fail(r, "the D: line at line %d was never used (no %s decision reached "
            "it)",
         t->ds[r->dnext].lineno, event_name(t->ds[r->dnext].event));
  if (!r->failed && r->deferred && !r->saw_close)
    fail(r, "the transcript ends with the %s decision still deferred",
         event_name(r->deferred));
  if (!r->failed && r->carry.len && !r->saw_close && !r->eof_sent)
    fail(r, "%zu client bytes were never taken by the session", r->carry.len);
  if (!r->failed) {
    int w = mxgw_session_want(r->s);
    if (w & MXGW_WANT_WRITE)
      fail(r, "want() has WRITE with no output pending");
    else if (r->saw_close && !(w & MXGW_WANT_CLOSE))
      fail(r, "CLOSE event seen but want() lacks CLOSE (want=%d)", w);
    else if (!r->saw_close && (w & MXGW_WANT_CLOSE))
      fail(r, "want() has CLOSE but no CLOSE event was returned");
  }
  if (!r->failed && !sb_eq(&r->logged, &r->out)) {
    sbuf a = {0};
    sb_escape(&a, r->logged.p ? r->logged.p : "", r->logged.len);
    fail(r, "the MXGW_LOG_REPLY records do not add up to the output:\n"
            "  logged: %s",
         a.p ? a.p : "");
    sb_free(&a);
  }
  mxgw_session_free(r->s);
  r->s = NULL;
  if (!r->failed && r->mem.live != 0)
    fail(r, "%ld allocations not released after mxgw_session_free()",
         r->mem.live);
}

/* ------------------------------------------------------------------------ */
/* Event comparison and reporting                                           */
/* ------------------------------------------------------------------------ */

static void format_events(const evrec *evs, size_t n, sbuf *b) {
  for (size_t i = 0; i < n; i++) {
    if (evs[i].discarded.len) {
      sb_adds(b, "  # discarded BODY ");
      sb_escape(b, evs[i].discarded.p, evs[i].discarded.len);
      sb_adds(b, "\n");
    }
    sb_addf(b, "  E: %s", event_name(evs[i].ev));
    if (evs[i].payload.len) {
      sb_adds(b, " ");
      sb_escape(b, evs[i].payload.p, evs[i].payload.len);
    }
    sb_adds(b, "\n");
  }
}

static void check_expected_events(run *r) {
  const transcript *t = r->t;
  if (!t->nes || r->failed)
    return;
  size_t i;
  for (i = 0; i < t->nes && i < r->nevs; i++) {
    const eline *e = &t->es[i];
    if (e->event != r->evs[i].ev ||
        (e->has_payload && !sb_eq(&e->payload, &r->evs[i].payload)))
      break;
  }
  if (i == t->nes && i == r->nevs)
    return;
  sbuf b = {0};
  format_events(r->evs, r->nevs, &b);
  if (i < t->nes)
    fail(r, "event %zu differs from the E: line at line %d; actual events:\n%s",
         i + 1, t->es[i].lineno, b.p ? b.p : "");
  else
    fail(r, "more events than E: lines; actual events:\n%s", b.p ? b.p : "");
  sb_free(&b);
}

/* One of the two is a prefix of the other. */
static int prefix_consistent(const sbuf *a, const sbuf *b) {
  size_t n = a->len < b->len ? a->len : b->len;
  return n == 0 || memcmp(a->p, b->p, n) == 0;
}

static int same_events(const run *a, const run *b) {
  if (a->nevs != b->nevs)
    return 0;
  for (size_t i = 0; i < a->nevs; i++)
    if (a->evs[i].ev != b->evs[i].ev ||
        !sb_eq(&a->evs[i].payload, &b->evs[i].payload) ||
        !prefix_consistent(&a->evs[i].discarded, &b->evs[i].discarded))
      return 0;
  return 1;
}

static void print_actual(const transcript *t, const run *r) {
  size_t prev = 0;
  for (size_t i = 0; i <= t->nsteps; i++) {
    int boundary = i == t->nsteps || t->steps[i].kind != ST_SEG;
    if (!boundary)
      continue;
    size_t upto = r->checkpoints ? r->checkpoints[i] : r->out.len;
    if (i < t->nsteps)
      printf("# --- output before line %d ---\n", t->steps[i].lineno);
    else
      printf("# --- output at the end ---\n");
    size_t start = prev;
    for (size_t j = prev; j < upto; j++) {
      if (r->out.p[j] == '\n' || j + 1 == upto) {
        sbuf b = {0};
        sb_escape(&b, r->out.p + start, j + 1 - start);
        printf("S: %s\n", b.p);
        sb_free(&b);
        start = j + 1;
      }
    }
    prev = upto;
  }
  sbuf b = {0};
  format_events(r->evs, r->nevs, &b);
  printf("# --- events ---\n%s", b.p ? b.p : "");
  if (r->max_carry)
    printf("# back-pressure: up to %zu client bytes were refused by feed()\n",
           r->max_carry);
  if (r->out_stalls)
    printf("# back-pressure: %zu times no event until output was written\n",
           r->out_stalls);
  sb_free(&b);
  if (r->failed)
    printf("# --- FAILED ---\n# %s", r->why.p);
}

int main(int argc, char **argv) {
  int print = 0, expect_fail = 0;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--print") == 0)
      print = 1;
    else if (strcmp(argv[i], "--expect-fail") == 0)
      expect_fail = 1;
    else if (!path)
      path = argv[i];
    else
      path = NULL, i = argc;
  }
  if (!path) {
    fprintf(stderr, "usage: %s [--print] [--expect-fail] FILE.smtp\n",
            argv[0]);
    return 2;
  }

  transcript t;
  memset(&t, 0, sizeof t);
  if (parse_file(&t, path) < 0) {
    free_transcript(&t);
    return 2; /* a broken transcript is never an expected failure */
  }

  run whole;
  init_run(&whole, &t, MODE_WHOLE, 0, 0);
  replay(&whole);
  if (print) {
    print_actual(&t, &whole);
    free_run(&whole);
    free_transcript(&t);
    return 0;
  }
  check_expected_events(&whole);

  unsigned long runs = 1, failures = whole.failed ? 1 : 0;
  if (whole.failed)
    fputs(whole.why.p, stderr);

  /* byte by byte, then every two-way split of each segment */
  size_t total_splits = 0;
  for (size_t i = 0; i < t.nsteps; i++)
    if (t.steps[i].kind == ST_SEG && t.steps[i].bytes.len > 1)
      total_splits += t.steps[i].bytes.len - 1;
  for (size_t k = 0; k <= t.nsteps && failures < 3; k++) {
    size_t first = 1, last = 1; /* split offsets to try for this step */
    int mode = MODE_SPLIT;
    if (k == t.nsteps) {
      mode = MODE_BYTES;
    } else if (t.steps[k].kind != ST_SEG || t.steps[k].bytes.len < 2) {
      continue;
    } else {
      last = t.steps[k].bytes.len - 1;
    }
    for (size_t at = first; at <= last && failures < 3; at++) {
      run r;
      init_run(&r, &t, mode, k, at);
      replay(&r);
      check_expected_events(&r);
      if (!r.failed && !whole.failed && !same_events(&r, &whole)) {
        sbuf a = {0}, b = {0};
        format_events(whole.evs, whole.nevs, &a);
        format_events(r.evs, r.nevs, &b);
        fail(&r, "events differ from the whole replay:\nwhole:\n%sthis:\n%s",
             a.p ? a.p : "", b.p ? b.p : "");
        sb_free(&a);
        sb_free(&b);
      }
      runs++;
      if (r.failed) {
        failures++;
        fputs(r.why.p, stderr);
      }
      free_run(&r);
    }
  }

  printf("%s: %lu replays (%zu split points), %lu failed\n", path, runs,
         total_splits, failures);
  free_run(&whole);
  free_transcript(&t);
  if (expect_fail)
    return failures ? 0 : 1;
  return failures ? 1 : 0;
}
