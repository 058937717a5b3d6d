/* SPDX-License-Identifier: MIT */
/*
 * config.c: mxgwd's JSON configuration: parse with jansson, validate every
 * key (collecting every error, each prefixed with its key path), apply the
 * defaults, check files (certificates and keys through mxgw_tls, which gives
 * the same messages the library gives at run time; directories; log files).
 * The reference for the keys is docs/mxgwd.md; keep the two in step.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <mxgw/mxgw.h>
#include <mxgw/mxgw_tls.h>

const char *const mxgwd_spf_result_names[MXGWD_SPF_RESULTS] = {
    "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"};

/* ---- messages ----------------------------------------------------------- */

/* Out of memory ends mxgwd here (as Postfix's mymalloc does): a parser that
 * went on could drop an error and accept a configuration it did not read. */
static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) {
    fputs("mxgwd: out of memory\n", stderr);
    abort();
  }
  return p;
}

static void *xrealloc(void *p, size_t size) {
  void *q = realloc(p, size ? size : 1);
  if (!q) {
    fputs("mxgwd: out of memory\n", stderr);
    abort();
  }
  return q;
}

void mxgwd_msgs_free(mxgwd_msgs *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->n; i++)
    free(m->v[i]);
  free(m->v);
  m->v = NULL;
  m->n = m->cap = 0;
}

/* One line per message: a control character (from a key or value such as
 * "a\nb" in the file) becomes the JSON escape that wrote it. Takes s;
 * returns it or its escaped copy. */
static char *one_line(char *s) {
  size_t n = 0, extra = 0;
  for (; s[n]; n++)
    extra += (unsigned char)s[n] < 0x20 ? 5 : 0;
  if (!extra)
    return s;
  char *e = xcalloc(n + extra + 1, 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20)
      e[o++] = (char)ch;
    else if (ch == '\n' || ch == '\r' || ch == '\t')
      o += (size_t)snprintf(e + o, 3, "\\%c",
                            ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't');
    else
      o += (size_t)snprintf(e + o, 7, "\\u%04x", ch);
  }
  e[o] = 0;
  free(s);
  return e;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 0)))
#endif
static void msgs_vadd(mxgwd_msgs *m, const char *path, const char *fmt,
                      va_list ap) {
  char text[1500];
  vsnprintf(text, sizeof text, fmt, ap);
  size_t need = strlen(path) + strlen(text) + 3;
  char *s = xcalloc(need, 1);
  snprintf(s, need, "%s%s%s", path, *path ? ": " : "", text);
  s = one_line(s);
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 8;
    m->v = xrealloc(m->v, m->cap * sizeof *m->v);
  }
  m->v[m->n++] = s;
}

/* The parser's state: where errors and warnings go, and how paths resolve. */
typedef struct ctx {
  mxgwd_msgs *err;
  mxgwd_msgs *warn;
  mxgwd_msgs local_warn;
  const char *base_dir;
  unsigned checks;
} ctx;

#if defined(__GNUC__)
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))
#else
#define PRINTF_LIKE(a, b)
#endif

static void PRINTF_LIKE(3, 4) error(ctx *c, const char *path, const char *fmt,
                                    ...) {
  va_list ap;
  va_start(ap, fmt);
  msgs_vadd(c->err, path, fmt, ap);
  va_end(ap);
}

static void PRINTF_LIKE(3, 4) warning(ctx *c, const char *path,
                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  msgs_vadd(c->warn, path, fmt, ap);
  va_end(ap);
}

/* ---- small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d) {
    fputs("mxgwd: out of memory\n", stderr);
    abort();
  }
  return d;
}

/* path + "." + key, or path + "[i]" */
static void subkey(char *out, size_t cap, const char *path, const char *key) {
  int n = snprintf(out, cap, "%s%s%s", path, *path ? "." : "", key);
  if (n < 0 || (size_t)n >= cap) /* paths are short; cut if not */
    out[cap - 1] = 0;
}
static void subidx(char *out, size_t cap, const char *path, size_t i) {
  int n = snprintf(out, cap, "%s[%zu]", path, i);
  if (n < 0 || (size_t)n >= cap)
    out[cap - 1] = 0;
}

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number with a fraction";
  case JSON_TRUE: return "true";
  case JSON_FALSE: return "false";
  case JSON_NULL: return "null";
  }
  return "?";
}

/* Levenshtein distance, for "did you mean" on unknown keys. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return 99;
  size_t d[64][64];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      size_t x = d[i - 1][j] + 1, y = d[i][j - 1] + 1,
             z = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      d[i][j] = x < y ? (x < z ? x : z) : (y < z ? y : z);
    }
  return d[la][lb];
}

/* Every key of `obj` must be in `known` (NULL-terminated). */
static void check_keys(ctx *c, const char *path, json_t *obj,
                       const char *const *known) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    bool ok = false;
    const char *best = NULL;
    size_t bestd = 3;
    bool best_prefix = false;
    for (const char *const *k = known; *k; k++) {
      if (strcmp(*k, key) == 0) {
        ok = true;
        break;
      }
      size_t d = edit_distance(*k, key);
      size_t kl = strlen(key);
      bool prefix = false;
      /* "cert" -> "cert_file" (the first key it begins, not "certificates") */
      if (d >= bestd && kl >= 3 && !best_prefix && strncmp(*k, key, kl) == 0) {
        d = bestd - 1;
        prefix = true;
      }
      if (d < bestd) {
        bestd = d;
        best = *k;
        best_prefix = prefix;
      }
    }
    if (ok)
      continue;
    char p[512];
    subkey(p, sizeof p, path, *key ? key : "\"\""); /* {"": 1} */
    if (best)
      error(c, p, "unknown key (did you mean \"%s\"?)", best);
    else
      error(c, p, "unknown key");
  }
}

/* The member `key` of `obj` if it has JSON type `want` (its key path in p);
 * NULL, with the error recorded, if it is missing but required or has
 * another type; NULL if it is absent and optional. */
static json_t *get_typed(ctx *c, const char *path, json_t *obj,
                         const char *key, bool required, json_type want,
                         const char *want_name, char *p, size_t pcap) {
  json_t *v = json_object_get(obj, key);
  subkey(p, pcap, path, key);
  if (!v) {
    if (required)
      error(c, p, "missing (required)");
    return NULL;
  }
  if (json_typeof(v) != want) {
    error(c, p, "must be %s, not %s", want_name, type_name(v));
    return NULL;
  }
  return v;
}

/* An object member that must be an object (or absent: returns NULL). */
static json_t *get_object(ctx *c, const char *path, json_t *obj,
                          const char *key, bool required) {
  char p[512];
  return get_typed(c, path, obj, key, required, JSON_OBJECT, "an object", p,
                   sizeof p);
}

static json_t *get_array(ctx *c, const char *path, json_t *obj,
                         const char *key, bool required, bool nonempty) {
  char p[512];
  json_t *v = get_typed(c, path, obj, key, required, JSON_ARRAY, "an array",
                        p, sizeof p);
  if (v && nonempty && json_array_size(v) == 0) {
    error(c, p, "must not be empty");
    return NULL;
  }
  return v;
}

/* A string member. Returns 1 (found, *out set to a borrowed pointer), 0
 * (absent), -1 (error reported). Empty strings are refused unless
 * allow_empty. */
static int get_str(ctx *c, const char *path, json_t *obj, const char *key,
                   bool required, bool allow_empty, const char **out) {
  json_t *v = json_object_get(obj, key);
  char p[512];
  subkey(p, sizeof p, path, key);
  if (!v) {
    if (required) {
      error(c, p, "missing (required)");
      return -1;
    }
    return 0;
  }
  if (!json_is_string(v)) {
    error(c, p, "must be a string, not %s", type_name(v));
    return -1;
  }
  const char *s = json_string_value(v);
  if (strlen(s) != json_string_length(v)) {
    error(c, p, "must not contain a NUL character");
    return -1;
  }
  if (!allow_empty && !*s) {
    error(c, p, "must not be empty");
    return -1;
  }
  *out = s;
  return 1;
}

static void get_bool(ctx *c, const char *path, json_t *obj, const char *key,
                     bool *out) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return;
  if (!json_is_boolean(v)) {
    char p[512];
    subkey(p, sizeof p, path, key);
    error(c, p, "must be true or false, not %s", type_name(v));
    return;
  }
  *out = json_is_true(v);
}

/* One of `names` (NULL-terminated); *out = its index. */
static void get_enum(ctx *c, const char *path, json_t *obj, const char *key,
                     const char *const *names, int *out) {
  const char *s;
  if (get_str(c, path, obj, key, false, true, &s) != 1)
    return;
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], s) == 0) {
      *out = i;
      return;
    }
  char list[300] = "";
  for (int i = 0; names[i]; i++) {
    size_t l = strlen(list);
    const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
    snprintf(list + l, sizeof list - l, "%s\"%s\"", sep, names[i]);
  }
  char p[512];
  subkey(p, sizeof p, path, key);
  error(c, p, "\"%s\" is not one of %s", s, list);
}

static void get_int(ctx *c, const char *path, json_t *obj, const char *key,
                    int64_t min, int64_t max, int64_t *out) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return;
  char p[512];
  subkey(p, sizeof p, path, key);
  if (!json_is_integer(v)) {
    error(c, p, "must be an integer, not %s", type_name(v));
    return;
  }
  json_int_t n = json_integer_value(v);
  if (n < min || n > max) {
    error(c, p, "%lld is out of range (%lld to %lld)", (long long)n,
          (long long)min, (long long)max);
    return;
  }
  *out = (int64_t)n;
}

/* A duration: an integer number of seconds, or a string "250ms", "30s",
 * "5m", "2h", "5d". Stored in ms. */
static void get_duration(ctx *c, const char *path, json_t *obj,
                         const char *key, int64_t min_ms, int64_t max_ms,
                         int64_t *out_ms) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return;
  char p[512];
  subkey(p, sizeof p, path, key);
  int64_t ms;
  if (json_is_integer(v)) {
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > INT64_MAX / 1000) {
      error(c, p, "%lld is out of range", (long long)n);
      return;
    }
    ms = (int64_t)n * 1000;
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    int64_t mul = 0;
    if (end == s || n < 0 || errno)
      mul = 0;
    else if (strcmp(end, "ms") == 0)
      mul = 1;
    else if (strcmp(end, "s") == 0 || *end == 0)
      mul = 1000;
    else if (strcmp(end, "m") == 0)
      mul = 60000;
    else if (strcmp(end, "h") == 0)
      mul = 3600000;
    else if (strcmp(end, "d") == 0)
      mul = 86400000;
    if (!mul || (s[0] < '0' || s[0] > '9')) {
      error(c, p,
            "\"%s\" is not a duration (a number of seconds, or a string "
            "such as \"500ms\", \"30s\", \"5m\", \"2h\", \"5d\")",
            s);
      return;
    }
    if (n > INT64_MAX / mul) {
      error(c, p, "\"%s\" is out of range", s);
      return;
    }
    ms = (int64_t)n * mul;
  } else {
    error(c, p, "must be a duration (seconds, or a string such as \"30s\"), "
                "not %s",
          type_name(v));
    return;
  }
  if (ms < min_ms || ms > max_ms) {
    char lo[32], hi[32];
    if (min_ms % 1000 == 0)
      snprintf(lo, sizeof lo, "%llds", (long long)(min_ms / 1000));
    else
      snprintf(lo, sizeof lo, "%lldms", (long long)min_ms);
    if (max_ms % 86400000 == 0)
      snprintf(hi, sizeof hi, "%lldd", (long long)(max_ms / 86400000));
    else if (max_ms % 1000 == 0)
      snprintf(hi, sizeof hi, "%llds", (long long)(max_ms / 1000));
    else
      snprintf(hi, sizeof hi, "%lldms", (long long)max_ms);
    error(c, p, "%lldms is out of range (%s to %s)", (long long)ms, lo, hi);
    return;
  }
  *out_ms = ms;
}

/* A size: an integer number of octets, or a string "512K", "50M", "1G"
 * (binary multiples). */
static void get_size(ctx *c, const char *path, json_t *obj, const char *key,
                     int64_t min, int64_t max, int64_t *out) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return;
  char p[512];
  subkey(p, sizeof p, path, key);
  int64_t n;
  if (json_is_integer(v)) {
    n = (int64_t)json_integer_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    int64_t mul = 0;
    if (end == s || x < 0 || errno || s[0] < '0' || s[0] > '9')
      mul = 0;
    else if (*end == 0)
      mul = 1;
    else if (strcmp(end, "K") == 0 || strcmp(end, "k") == 0)
      mul = 1024;
    else if (strcmp(end, "M") == 0)
      mul = 1024 * 1024;
    else if (strcmp(end, "G") == 0)
      mul = 1024 * 1024 * 1024;
    if (!mul) {
      error(c, p,
            "\"%s\" is not a size (a number of octets, or a string such as "
            "\"512K\", \"50M\", \"1G\")",
            s);
      return;
    }
    if (x > INT64_MAX / mul) {
      error(c, p, "\"%s\" is out of range", s);
      return;
    }
    n = (int64_t)x * mul;
  } else {
    error(c, p, "must be a size (octets, or a string such as \"50M\"), not %s",
          type_name(v));
    return;
  }
  if (n < min || n > max) {
    error(c, p, "%lld is out of range (%lld to %lld)", (long long)n,
          (long long)min, (long long)max);
    return;
  }
  *out = n;
}

/* Collapse "//", "/./" and "dir/../" in an absolute path, lexically (the
 * files may not exist yet). */
static void normalize(char *p) {
  if (p[0] != '/')
    return;
  size_t len = strlen(p);
  char *tmp = xcalloc(1, len + 2);
  size_t o = 0;
  const char *in = p;
  while (*in) {
    while (*in == '/')
      in++;
    if (!*in)
      break;
    const char *e = strchr(in, '/');
    size_t n = e ? (size_t)(e - in) : strlen(in);
    if (n == 1 && in[0] == '.') {
      /* nothing */
    } else if (n == 2 && in[0] == '.' && in[1] == '.') {
      while (o > 0 && tmp[o - 1] != '/')
        o--;
      if (o > 0)
        o--;
    } else {
      tmp[o++] = '/';
      memcpy(tmp + o, in, n);
      o += n;
    }
    in += n;
  }
  if (o == 0)
    tmp[o++] = '/';
  tmp[o] = 0;
  memcpy(p, tmp, o + 1);
  free(tmp);
}

/* A path from the file: relative ones against base_dir. Returns malloc'd. */
static char *resolve_path(ctx *c, const char *s) {
  if (s[0] == '/' || !c->base_dir || !*c->base_dir) {
    char *r = xstrdup(s);
    normalize(r);
    return r;
  }
  size_t n = strlen(c->base_dir) + strlen(s) + 2;
  char *r = xcalloc(1, n);
  snprintf(r, n, "%s/%s", c->base_dir, s);
  normalize(r);
  return r;
}

/* A file that must exist and be readable by us. */
static bool check_readable_file(ctx *c, const char *p, const char *file) {
  struct stat st;
  if (stat(file, &st) != 0) {
    error(c, p, "%s: %s", file, strerror(errno));
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    error(c, p, "%s: not a regular file", file);
    return false;
  }
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error(c, p, "%s: cannot be read: %s", file, strerror(errno));
    return false;
  }
  close(fd);
  return true;
}

/* A directory that exists and is writable, or can be created (its nearest
 * existing ancestor is a writable directory). */
static void check_dir_usable(ctx *c, const char *p, const char *dir) {
  struct stat st;
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      error(c, p, "%s: not a directory", dir);
    else if (access(dir, W_OK | X_OK) != 0)
      error(c, p, "%s: not writable: %s", dir, strerror(errno));
    return;
  }
  if (errno != ENOENT && errno != ENOTDIR) {
    error(c, p, "%s: %s", dir, strerror(errno));
    return;
  }
  char up[PATH_MAX];
  snprintf(up, sizeof up, "%s", dir);
  for (;;) {
    char *slash = strrchr(up, '/');
    if (!slash)
      break;
    if (slash == up)
      slash[1] = 0;
    else
      *slash = 0;
    if (stat(up, &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        error(c, p, "%s: cannot be created: %s is not a directory", dir, up);
      else if (access(up, W_OK | X_OK) != 0)
        error(c, p, "%s: does not exist and cannot be created: %s is not "
                    "writable",
              dir, up);
      return;
    }
    if (strcmp(up, "/") == 0)
      break;
  }
  error(c, p, "%s: does not exist and cannot be created", dir);
}

/* A file we will append to: writable if it exists, else its directory must
 * be. */
static void check_writable_file(ctx *c, const char *p, const char *file) {
  struct stat st;
  if (stat(file, &st) == 0) {
    if (!S_ISREG(st.st_mode))
      error(c, p, "%s: not a regular file", file);
    else if (access(file, W_OK) != 0)
      error(c, p, "%s: not writable: %s", file, strerror(errno));
    return;
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  if (!slash) {
    snprintf(dir, sizeof dir, ".");
  } else if (slash == dir) {
    slash[1] = 0;
  } else {
    *slash = 0;
  }
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    error(c, p, "%s: cannot be created: directory %s does not exist", file,
          dir);
  else if (access(dir, W_OK | X_OK) != 0)
    error(c, p, "%s: cannot be created: directory %s is not writable", file,
          dir);
}

/* RFC 1035 host name (letters, digits, hyphens; labels of 1..63; at most
 * 253). A trailing dot is refused (it is never written in mail domains). */
static bool valid_hostname(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253)
    return false;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '.') {
      if (label == 0 || s[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
    if (!ok || (label == 0 && ch == '-') || ++label > 63)
      return false;
  }
  return label > 0 && s[n - 1] != '-';
}

static bool is_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* "IP:PORT", "[v6]:PORT"; with allow_no_port also a bare IP. On success
 * *port is set (0 when absent). */
static bool parse_hostport(const char *s, bool allow_no_port, char *ip,
                           size_t ipcap, int *port) {
  const char *colon = NULL;
  *port = 0;
  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (!rb || (size_t)(rb - s - 1) >= ipcap)
      return false;
    memcpy(ip, s + 1, (size_t)(rb - s - 1));
    ip[rb - s - 1] = 0;
    unsigned char b[16];
    if (inet_pton(AF_INET6, ip, b) != 1)
      return false;
    if (rb[1] == 0)
      return allow_no_port;
    if (rb[1] != ':')
      return false;
    colon = rb + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon && strchr(s, ':') != colon) {
      /* several colons: a bare IPv6 address */
      if (!allow_no_port || strlen(s) >= ipcap)
        return false;
      snprintf(ip, ipcap, "%s", s);
      unsigned char b[16];
      return inet_pton(AF_INET6, ip, b) == 1;
    }
    size_t hl = colon ? (size_t)(colon - s) : strlen(s);
    if (hl >= ipcap)
      return false;
    memcpy(ip, s, hl);
    ip[hl] = 0;
    unsigned char b[4];
    if (inet_pton(AF_INET, ip, b) != 1)
      return false;
    if (!colon)
      return allow_no_port;
  }
  const char *ps = colon + 1;
  if (!*ps || strlen(ps) > 5)
    return false;
  for (const char *q = ps; *q; q++)
    if (*q < '0' || *q > '9')
      return false;
  int pn = atoi(ps);
  if (pn < 1 || pn > 65535)
    return false;
  *port = pn;
  return true;
}

/* Array of strings -> malloc'd vector; each element checked by `check`
 * (which reports its own error and returns false). */
static char **get_str_array(ctx *c, const char *path, json_t *arr, size_t *n,
                            bool (*check)(ctx *, const char *, const char *,
                                          void *),
                            void *arg) {
  size_t cnt = json_array_size(arr);
  char **v = xcalloc(cnt + 1, sizeof *v);
  size_t k = 0;
  for (size_t i = 0; i < cnt; i++) {
    json_t *e = json_array_get(arr, i);
    char p[512];
    subidx(p, sizeof p, path, i);
    if (!json_is_string(e)) {
      error(c, p, "must be a string, not %s", type_name(e));
      continue;
    }
    const char *s = json_string_value(e);
    if (!*s) {
      error(c, p, "must not be empty");
      continue;
    }
    if (check && !check(c, p, s, arg))
      continue;
    v[k++] = xstrdup(s);
  }
  *n = k;
  return v;
}

/* Strings listed twice in a JSON array (by their index in the file). */
static void check_duplicates(ctx *c, const char *path, json_t *arr,
                             bool casefold) {
  for (size_t i = 0; i < json_array_size(arr); i++) {
    const char *a = json_string_value(json_array_get(arr, i));
    for (size_t j = 0; a && j < i; j++) {
      const char *b = json_string_value(json_array_get(arr, j));
      if (b && (casefold ? strcasecmp(a, b) : strcmp(a, b)) == 0) {
        char p[512];
        subidx(p, sizeof p, path, i);
        char low[300];
        size_t k = 0;
        for (; a[k] && k + 1 < sizeof low; k++)
          low[k] = casefold && a[k] >= 'A' && a[k] <= 'Z' ? (char)(a[k] + 32)
                                                          : a[k];
        low[k] = 0;
        error(c, p, "\"%s\" is listed twice", low);
        break;
      }
    }
  }
}

static void free_strv(char **v, size_t n) {
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* The AUTH users file: "user:crypt-hash" per line ('#' comments). Its hashes
 * must not be readable by others. */
static void check_users_file(ctx *c, const char *p, const char *file) {
  if (!check_readable_file(c, p, file))
    return;
  struct stat st;
  if (stat(file, &st) == 0 && (st.st_mode & S_IROTH)) {
    error(c, p, "%s: mode %04o is readable by others; chmod 640 %s", file,
          (unsigned)(st.st_mode & 07777), file);
    return;
  }
  FILE *f = fopen(file, "r");
  if (!f)
    return;
  char line[1024];
  int ln = 0;
  while (fgets(line, sizeof line, f)) {
    ln++;
    size_t n = strcspn(line, "\r\n");
    line[n] = 0;
    if (!line[0] || line[0] == '#')
      continue;
    char *colon = strchr(line, ':');
    if (!colon || colon == line || colon[1] != '$') {
      error(c, p, "%s line %d: not \"user:hash\" with a crypt(3) hash such "
                  "as \"$6$...\" or \"$y$...\" (openssl passwd -6)",
            file, ln);
      break;
    }
  }
  fclose(f);
}

/* ---- sections ----------------------------------------------------------- */

static const char *const k_top[] = {
    "hostname", "workers", "policy_workers", "shutdown_timeout",
    "tls_check_interval", "listeners", "domains",
    "recipient_validation", "spf", "limits", "spool", "lmtp", "auth",
    "logging", NULL};
static const char *const k_listener[] = {"address", "port", "mode", "tls",
                                         "proxy_protocol", NULL};
static const char *const k_tls[] = {"policy", "cert_file", "key_file",
                                    "certificates", NULL};
static const char *const k_cert[] = {"cert_file", "key_file", "server_names",
                                     NULL};
static const char *const k_rv[] = {"mode", "cache_ttl", "negative_cache_ttl",
                                   "timeout", NULL};
static const char *const k_spf[] = {"enabled", "policy", "dns_servers",
                                    "timeout", NULL};
static const char *const k_limits[] = {
    "max_connections", "max_connections_per_ip", "connection_rate_per_ip",
    "max_errors", "max_junk_commands",
    "max_unknown_commands", "max_message_size", "max_recipients",
    "max_messages_per_connection", "greeting_delay", "command_timeout",
    "data_timeout", "proxy_timeout", NULL};
static const char *const k_spool[] = {"directory", "sync", "commit_workers",
                                      "journal", "journal_max_body",
                                      "max_lifetime", "delay_warning",
                                      "backoff_initial", "backoff_factor",
                                      "backoff_max", "bounce",
                                      "bounce_recipient", NULL};
static const char *const k_lmtp[] = {"backends", "concurrency", "xclient",
                                     "starttls", "tls_ca_file",
                                     "tls_servername", "tls_verify",
                                     "connect_timeout",
                                     "command_timeout", "data_timeout", NULL};
static const char *const k_logging[] = {"outputs", "log_commands", NULL};
static const char *const k_output[] = {"destination", "format", "path",
                                       "facility", "ident", NULL};

static const char *const n_modes[] = {"smtp", "submission", "smtps", NULL};
static const char *const n_policies[] = {"none", "may", "encrypt", NULL};
static const char *const n_rv[] = {"none", "proxy", "lmtp_probe", NULL};
static const char *const n_spf_act[] = {"accept", "reject", "defer", NULL};
static const char *const n_dest[] = {"stderr", "file", "syslog", NULL};
static const char *const n_format[] = {"text", "json", NULL};
static const char *const n_bounce[] = {"keep", "dsn", NULL};
static const char *const n_starttls[] = {"never", "may", "require", NULL};

static void defaults(mxgwd_config *cf) {
  cf->workers = 0;
  cf->policy_workers = 4;
  cf->tls_check_interval_ms = 60000;
  cf->auth_relay = true;
  cf->limits.proxy_timeout_ms = 10000;
  cf->shutdown_timeout_ms = 30000;
  cf->recipients.mode = MXGWD_RV_NONE;
  cf->recipients.cache_ttl_ms = 600000;
  cf->recipients.negative_cache_ttl_ms = 60000;
  cf->recipients.timeout_ms = 10000;
  cf->spf.enabled = true;
  for (int i = 0; i < MXGWD_SPF_RESULTS; i++)
    cf->spf.action[i] = MXGWD_SPF_ACCEPT;
  cf->spf.action[3] = MXGWD_SPF_REJECT; /* fail */
  cf->spf.action[5] = MXGWD_SPF_DEFER;  /* temperror */
  cf->spf.timeout_ms = 20000;
  cf->limits.max_connections = 1000;
  cf->limits.max_connections_per_ip = 20;
  cf->limits.connection_rate_per_ip = 0;
  cf->limits.max_errors = 20;
  cf->limits.max_junk_commands = 100;
  cf->limits.max_unknown_commands = 10;
  cf->limits.max_message_size = 67108864;
  cf->limits.max_recipients = 1000;
  cf->limits.max_messages_per_connection = 1000;
  cf->limits.greeting_delay_ms = 0;
  cf->limits.command_timeout_ms = 300000;
  cf->limits.data_timeout_ms = 180000;
  cf->spool.sync = true;
  cf->spool.commit_workers = 16;
  cf->spool.journal = 1;
  cf->spool.journal_max_body = 1 << 20;
  cf->spool.max_lifetime_ms = 5LL * 86400000;
  cf->spool.backoff_initial_ms = 60000;
  cf->spool.backoff_factor = 2;
  cf->spool.backoff_max_ms = 3600000;
  cf->spool.bounce = MXGWD_BOUNCE_DSN;
  cf->lmtp.concurrency = 4;
  cf->lmtp.xclient = true;
  cf->lmtp.starttls = MXGWD_LMTP_TLS_NEVER;
  cf->lmtp.tls_verify = true;
  cf->lmtp.connect_timeout_ms = 30000;
  cf->lmtp.command_timeout_ms = 300000;
  cf->lmtp.data_timeout_ms = 600000;
}

/* A TLS error of mxgw_tls (the same messages as at run time), attributed to
 * the key that names the file: pc/pk are the cert_file/key_file paths. */
static void tls_error(ctx *c, const mxgw_tls *t, int rv, const char *path,
                      const char *pc, const char *pk, const char *cert,
                      const char *key) {
  char msg[1200];
  snprintf(msg, sizeof msg, "%s", t ? mxgw_tls_errmsg(t) : mxgw_strerror(rv));
  /* The library's hint names its C option; the config has none. */
  char *hint = strstr(msg, " (or set MXGW_TLS_STRICT_KEY_MODE to 0)");
  if (hint)
    *hint = 0;
  const char *p = path;
  if (key && pk && strncmp(msg, key, strlen(key)) == 0 &&
      msg[strlen(key)] == ':')
    p = pk;
  else if (cert && pc && strncmp(msg, cert, strlen(cert)) == 0 &&
           msg[strlen(cert)] == ':')
    p = pc;
  error(c, p, "%s", *msg ? msg : mxgw_strerror(rv));
}

/* One pair (path: "listeners[0].tls" or "listeners[0].tls.certificates[1]"):
 * the files exist, then mxgw_tls validates it into t, once per SNI name (or
 * as a default pair, checked against the hostname). false on an error. */
static bool add_tls_pair(ctx *c, mxgw_tls *t, const char *path,
                         const char *cert, const char *key,
                         char *const *names, size_t n_names) {
  char pc[512], pk[512];
  subkey(pc, sizeof pc, path, "cert_file");
  subkey(pk, sizeof pk, path, "key_file");
  bool ok = check_readable_file(c, pc, cert);
  if (key)
    ok = check_readable_file(c, pk, key) && ok;
  if (!ok)
    return false;
  for (size_t i = 0; i < (n_names ? n_names : 1); i++) {
    int rv = mxgw_tls_add_cert_files(t, n_names ? names[i] : NULL, cert, key);
    if (rv != 0) {
      if (n_names && strncmp(mxgw_tls_errmsg(t), "SNI name", 8) == 0) {
        char pn[512], q[512];
        subkey(pn, sizeof pn, path, "server_names");
        subidx(q, sizeof q, pn, i);
        error(c, q, "%s", mxgw_tls_errmsg(t));
      } else {
        tls_error(c, t, rv, path, pc, pk, cert, key);
      }
      return false;
    }
  }
  return true;
}

/* A listener's certificates together, as mxgwd will serve them: tls.cert_file
 * (the default pair) and tls.certificates[]. Errors name the pair's key. */
static void check_tls_listener(ctx *c, const char *tp, const char *hostname,
                               const mxgwd_listener *l) {
  mxgw_tls *t = NULL;
  int rv = mxgw_tls_new(&t, MXGW_TLS_SERVER, NULL);
  if (rv == 0 && hostname)
    rv = mxgw_tls_set_str(t, MXGW_TLS_HOSTNAME, hostname);
  if (rv != 0) {
    error(c, tp, "%s", mxgw_strerror(rv));
    mxgw_tls_free(t);
    return;
  }
  bool ok = true;
  if (l->cert_file)
    ok = add_tls_pair(c, t, tp, l->cert_file, l->key_file, NULL, 0);
  char cp[512], q[512];
  subkey(cp, sizeof cp, tp, "certificates");
  for (size_t i = 0; i < l->n_certs; i++) {
    const mxgwd_cert *ce = &l->certs[i];
    subidx(q, sizeof q, cp, i);
    ok = add_tls_pair(c, t, q, ce->cert_file, ce->key_file, ce->server_names,
                      ce->n_server_names) &&
         ok;
  }
  if (ok) {
    rv = mxgw_tls_reload(t);
    if (rv != 0) {
      tls_error(c, t, rv, tp, NULL, NULL, NULL, NULL);
    } else {
      size_t nw = mxgw_tls_warning_count(t);
      for (size_t i = 0; i < nw; i++) {
        const char *w;
        size_t wl;
        if (mxgw_tls_warning(t, i, &w, &wl) == 0)
          warning(c, tp, "%.*s", (int)wl, w);
      }
    }
  }
  mxgw_tls_free(t);
}

/* An SNI name: a host name, or "*.example.org" (one label). */
static bool check_server_name(ctx *c, const char *p, const char *s,
                              void *arg) {
  (void)arg;
  const char *d = strncmp(s, "*.", 2) == 0 ? s + 2 : s;
  if (!valid_hostname(d) || !strchr(d, '.')) {
    error(c, p, "\"%s\" is not a host name (e.g. \"mx.example.org\", or "
                "\"*.example.org\")",
          s);
    return false;
  }
  return true;
}

/* tls.certificates: [{cert_file, key_file, server_names}] */
static void parse_certificates(ctx *c, const char *tp, json_t *tls,
                               mxgwd_listener *l) {
  json_t *arr = get_array(c, tp, tls, "certificates", false, true);
  if (!arr)
    return;
  char cp[512];
  subkey(cp, sizeof cp, tp, "certificates");
  size_t n = json_array_size(arr);
  l->certs = xcalloc(n, sizeof *l->certs);
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(arr, i);
    char q[512];
    subidx(q, sizeof q, cp, i);
    if (!json_is_object(e)) {
      error(c, q, "must be an object {\"cert_file\", \"key_file\", "
                  "\"server_names\"}, not %s",
            type_name(e));
      continue;
    }
    check_keys(c, q, e, k_cert);
    const char *s;
    if (get_str(c, q, e, "cert_file", true, false, &s) != 1)
      continue;
    mxgwd_cert *ce = &l->certs[l->n_certs++];
    ce->cert_file = resolve_path(c, s);
    if (get_str(c, q, e, "key_file", false, false, &s) == 1)
      ce->key_file = resolve_path(c, s);
    json_t *names = get_array(c, q, e, "server_names", false, true);
    if (names) {
      char np[512];
      subkey(np, sizeof np, q, "server_names");
      ce->server_names = get_str_array(c, np, names, &ce->n_server_names,
                                       check_server_name, NULL);
      for (size_t k = 0; k < ce->n_server_names; k++)
        for (char *z = ce->server_names[k]; *z; z++)
          if (*z >= 'A' && *z <= 'Z')
            *z = (char)(*z - 'A' + 'a');
      check_duplicates(c, np, names, true);
    }
  }
}

static void parse_listener(ctx *c, const char *p, json_t *o,
                           mxgwd_listener *l, const char *hostname) {
  check_keys(c, p, o, k_listener);
  const char *s;
  char q[512];
  if (get_str(c, p, o, "address", true, false, &s) == 1) {
    subkey(q, sizeof q, p, "address");
    if (!is_ip(s))
      error(c, q, "\"%s\" is not a numeric IPv4 or IPv6 address (use "
                  "\"0.0.0.0\" or \"::\" for every address)",
            s);
    else
      l->address = xstrdup(s);
  }
  l->mode = MXGWD_MODE_SMTP;
  get_enum(c, p, o, "mode", n_modes, &l->mode);
  int64_t port = l->mode == MXGWD_MODE_SMTP ? 25
                 : l->mode == MXGWD_MODE_SUBMISSION ? 587 : 465;
  get_int(c, p, o, "port", 1, 65535, &port);
  l->port = (int)port;
  l->auth = l->mode != MXGWD_MODE_SMTP;
  get_bool(c, p, o, "proxy_protocol", &l->proxy_protocol);

  json_t *tls = get_object(c, p, o, "tls", false);
  char tp[512];
  subkey(tp, sizeof tp, p, "tls");
  int policy = -1;
  if (tls) {
    check_keys(c, tp, tls, k_tls);
    get_enum(c, tp, tls, "policy", n_policies, &policy);
    if (get_str(c, tp, tls, "cert_file", false, false, &s) == 1)
      l->cert_file = resolve_path(c, s);
    if (get_str(c, tp, tls, "key_file", false, false, &s) == 1)
      l->key_file = resolve_path(c, s);
    parse_certificates(c, tp, tls, l);
  }
  bool have_cert = l->cert_file || l->n_certs;
  bool have_policy = policy >= 0;
  if (!have_policy)
    policy = l->mode != MXGWD_MODE_SMTP ? MXGWD_TLS_ENCRYPT
             : have_cert                 ? MXGWD_TLS_MAY
                                         : MXGWD_TLS_NONE;
  l->tls_policy = policy;
  char pp[512];
  subkey(pp, sizeof pp, tp, "policy");
  if (l->mode == MXGWD_MODE_SMTPS && policy != MXGWD_TLS_ENCRYPT)
    error(c, pp, "must be \"encrypt\" for mode \"smtps\" (implicit TLS)");
  if (l->mode == MXGWD_MODE_SUBMISSION && policy == MXGWD_TLS_NONE)
    error(c, pp, "\"none\" on a submission listener would send passwords in "
                 "clear; use \"encrypt\"");
  if (policy != MXGWD_TLS_NONE && !have_cert) {
    subkey(q, sizeof q, tp, "cert_file");
    if (l->mode == MXGWD_MODE_SMTP)
      error(c, q, "missing: tls.policy \"%s\" needs a certificate",
            n_policies[policy]);
    else
      error(c, q, "missing: mode \"%s\" needs a certificate",
            n_modes[l->mode]);
  }
  if (policy == MXGWD_TLS_NONE && have_cert)
    warning(c, tp, "%s is set but policy is \"none\": TLS is not offered",
            l->cert_file ? "cert_file" : "certificates");
  if (l->key_file && !l->cert_file) {
    subkey(q, sizeof q, tp, "key_file");
    error(c, q, "set without cert_file");
  }
  if (have_cert && policy != MXGWD_TLS_NONE &&
      (c->checks & MXGWD_CHECK_FILES))
    check_tls_listener(c, tp, hostname, l);
}

static bool check_domain(ctx *c, const char *p, const char *s, void *arg) {
  (void)arg;
  const char *d = strncmp(s, "*.", 2) == 0 ? s + 2 : s;
  if (!valid_hostname(d) || !strchr(d, '.')) {
    error(c, p, "\"%s\" is not a domain name (e.g. \"example.org\", or "
                "\"*.example.org\" for its subdomains)",
          s);
    return false;
  }
  return true;
}

static bool check_dns_server(ctx *c, const char *p, const char *s,
                             void *arg) {
  (void)arg;
  char ip[64];
  int port;
  if (!parse_hostport(s, true, ip, sizeof ip, &port)) {
    error(c, p, "\"%s\" is not a DNS server address (\"IP\", \"IP:PORT\" or "
                "\"[IPv6]:PORT\", numeric)",
          s);
    return false;
  }
  return true;
}

static bool check_backend(ctx *c, const char *p, const char *s, void *arg) {
  (void)arg;
  if (strncmp(s, "unix:", 5) == 0 || s[0] == '/') {
    const char *path = s[0] == '/' ? s : s + 5;
    if (path[0] != '/') {
      error(c, p, "\"%s\": the socket path must be absolute (\"unix:/run/"
                  "dovecot/lmtp\")",
            s);
      return false;
    }
    if (strlen(path) >= 108) {
      error(c, p, "\"%s\": the socket path is longer than 107 characters", s);
      return false;
    }
    return true;
  }
  const char *t = strncmp(s, "inet:", 5) == 0 ? s + 5 : s;
  char ip[64];
  int port;
  if (!parse_hostport(t, false, ip, sizeof ip, &port)) {
    error(c, p, "\"%s\" is not an LMTP backend (\"IP:PORT\", \"[IPv6]:PORT\" "
                "with a numeric address, or \"unix:/path/to/socket\")",
          s);
    return false;
  }
  return true;
}

static int facility_code(const char *s) {
  static const struct {
    const char *name;
    int code;
  } f[] = {{"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
           {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},
           {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
           {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
           {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (strcmp(f[i].name, s) == 0)
      return f[i].code;
  return -1;
}

static void parse_logging(ctx *c, json_t *root, mxgwd_config *cf) {
  json_t *lg = get_object(c, "", root, "logging", false);
  json_t *outs = NULL;
  if (lg) {
    check_keys(c, "logging", lg, k_logging);
    get_bool(c, "logging", lg, "log_commands", &cf->logging.log_commands);
    outs = get_array(c, "logging", lg, "outputs", false, true);
  }
  if (!outs) {
    cf->logging.outputs = xcalloc(1, sizeof *cf->logging.outputs);
    cf->logging.n_outputs = 1;
    cf->logging.outputs[0].destination = MXGWD_LOG_STDERR;
    cf->logging.outputs[0].format = MXGWD_LOG_TEXT;
    return;
  }
  size_t n = json_array_size(outs);
  cf->logging.outputs = xcalloc(n, sizeof *cf->logging.outputs);
  for (size_t i = 0; i < n; i++) {
    char p[512];
    snprintf(p, sizeof p, "logging.outputs[%zu]", i);
    json_t *o = json_array_get(outs, i);
    if (!json_is_object(o)) {
      error(c, p, "must be an object, not %s", type_name(o));
      continue;
    }
    check_keys(c, p, o, k_output);
    mxgwd_log_output *lo = &cf->logging.outputs[cf->logging.n_outputs++];
    lo->destination = -1;
    lo->format = MXGWD_LOG_TEXT;
    lo->facility = LOG_MAIL;
    get_enum(c, p, o, "destination", n_dest, &lo->destination);
    if (!json_object_get(o, "destination")) {
      char q[512];
      subkey(q, sizeof q, p, "destination");
      error(c, q, "missing (required): \"stderr\", \"file\" or \"syslog\"");
    }
    get_enum(c, p, o, "format", n_format, &lo->format);
    const char *s;
    int hp = get_str(c, p, o, "path", false, false, &s);
    char q[512];
    subkey(q, sizeof q, p, "path");
    if (lo->destination == MXGWD_LOG_FILE) {
      if (hp == 0)
        error(c, q, "missing: destination \"file\" needs a path");
      else if (hp == 1) {
        lo->path = resolve_path(c, s);
        if (c->checks & MXGWD_CHECK_FILES)
          check_writable_file(c, q, lo->path);
      }
    } else if (hp == 1) {
      error(c, q, "only for destination \"file\"");
    }
    if (get_str(c, p, o, "facility", false, false, &s) == 1) {
      subkey(q, sizeof q, p, "facility");
      if (lo->destination != MXGWD_LOG_SYSLOG)
        error(c, q, "only for destination \"syslog\"");
      else if ((lo->facility = facility_code(s)) < 0)
        error(c, q, "\"%s\" is not a syslog facility (\"mail\", \"daemon\", "
                    "\"user\", \"local0\" to \"local7\")",
              s);
    }
    if (get_str(c, p, o, "ident", false, false, &s) == 1) {
      subkey(q, sizeof q, p, "ident");
      if (lo->destination != MXGWD_LOG_SYSLOG)
        error(c, q, "only for destination \"syslog\"");
      else
        lo->ident = xstrdup(s);
    }
    if (lo->destination == MXGWD_LOG_SYSLOG && !lo->ident)
      lo->ident = xstrdup("mxgwd");
  }
}

static void parse_root(ctx *c, json_t *root, mxgwd_config *cf) {
  check_keys(c, "", root, k_top);
  const char *s;
  if (get_str(c, "", root, "hostname", true, false, &s) == 1) {
    if (!valid_hostname(s) || !strchr(s, '.'))
      error(c, "hostname", "\"%s\" is not a fully qualified host name (e.g. "
                           "\"mx.example.org\")",
            s);
    else
      cf->hostname = xstrdup(s);
  }
  get_int(c, "", root, "workers", 0, 256, &cf->workers);
  get_int(c, "", root, "policy_workers", 1, 256, &cf->policy_workers);
  get_duration(c, "", root, "tls_check_interval", 0, 86400000,
               &cf->tls_check_interval_ms);
  get_duration(c, "", root, "shutdown_timeout", 0, 3600000,
               &cf->shutdown_timeout_ms);

  /* listeners */
  json_t *ls = get_array(c, "", root, "listeners", true, true);
  if (ls) {
    size_t n = json_array_size(ls);
    cf->listeners = xcalloc(n, sizeof *cf->listeners);
    for (size_t i = 0; i < n; i++) {
      char p[64];
      snprintf(p, sizeof p, "listeners[%zu]", i);
      json_t *o = json_array_get(ls, i);
      if (!json_is_object(o)) {
        error(c, p, "must be an object, not %s", type_name(o));
        continue;
      }
      mxgwd_listener *l = &cf->listeners[cf->n_listeners++];
      parse_listener(c, p, o, l, cf->hostname);
      /* duplicates: the same address and port twice, or a wildcard address
       * overlapping a specific one of the same family on the same port */
      for (size_t j = 0; j + 1 < cf->n_listeners && l->address; j++) {
        mxgwd_listener *m = &cf->listeners[j];
        if (!m->address || m->port != l->port)
          continue;
        bool v6a = strchr(l->address, ':') != NULL;
        bool v6b = strchr(m->address, ':') != NULL;
        bool any_a =
            !strcmp(l->address, "0.0.0.0") || !strcmp(l->address, "::");
        bool any_b =
            !strcmp(m->address, "0.0.0.0") || !strcmp(m->address, "::");
        if (!strcmp(l->address, m->address) ||
            (v6a == v6b && (any_a || any_b))) {
          char q[64];
          snprintf(q, sizeof q, "listeners[%zu]", i);
          error(c, q, "%s port %d is already used by listeners[%zu] (%s port "
                      "%d)",
                l->address, l->port, j, m->address, m->port);
        }
      }
    }
  }

  /* domains */
  json_t *ds = get_array(c, "", root, "domains", true, true);
  if (ds) {
    cf->domains = get_str_array(c, "domains", ds, &cf->n_domains, check_domain,
                                NULL);
    for (size_t i = 0; i < cf->n_domains; i++)
      for (char *q = cf->domains[i]; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
          *q = (char)(*q - 'A' + 'a');
    check_duplicates(c, "domains", ds, true);
  }

  /* recipient validation */
  json_t *rv = get_object(c, "", root, "recipient_validation", false);
  if (rv) {
    const char *p = "recipient_validation";
    check_keys(c, p, rv, k_rv);
    get_enum(c, p, rv, "mode", n_rv, &cf->recipients.mode);
    get_duration(c, p, rv, "cache_ttl", 0, 86400000LL * 30,
                 &cf->recipients.cache_ttl_ms);
    get_duration(c, p, rv, "negative_cache_ttl", 0, 86400000LL * 30,
                 &cf->recipients.negative_cache_ttl_ms);
    get_duration(c, p, rv, "timeout", 100, 300000, &cf->recipients.timeout_ms);
    if (cf->recipients.cache_ttl_ms % 1000 ||
        cf->recipients.negative_cache_ttl_ms % 1000)
      error(c, p, "cache_ttl and negative_cache_ttl are whole seconds");
    if (cf->recipients.mode != MXGWD_RV_LMTP_PROBE)
      for (const char *const *k = k_rv + 1; *k; k++)
        if (json_object_get(rv, *k)) {
          char q[128];
          snprintf(q, sizeof q, "%s.%s", p, *k);
          warning(c, q, "ignored: only used with mode \"lmtp_probe\"");
        }
  }

  /* SPF */
  json_t *spf = get_object(c, "", root, "spf", false);
  if (spf) {
    const char *p = "spf";
    check_keys(c, p, spf, k_spf);
    get_bool(c, p, spf, "enabled", &cf->spf.enabled);
    get_duration(c, p, spf, "timeout", 1000, 300000, &cf->spf.timeout_ms);
    json_t *dns = get_array(c, p, spf, "dns_servers", false, false);
    if (dns)
      cf->spf.dns_servers = get_str_array(c, "spf.dns_servers", dns,
                                          &cf->spf.n_dns_servers,
                                          check_dns_server, NULL);
    json_t *pol = get_object(c, p, spf, "policy", false);
    if (pol) {
      static const char *const k_pol[] = {"none",     "neutral",   "pass",
                                          "fail",     "softfail",  "temperror",
                                          "permerror", NULL};
      check_keys(c, "spf.policy", pol, k_pol);
      for (int i = 0; i < MXGWD_SPF_RESULTS; i++)
        get_enum(c, "spf.policy", pol, mxgwd_spf_result_names[i], n_spf_act,
                 &cf->spf.action[i]);
    }
  }

  /* limits */
  json_t *lim = get_object(c, "", root, "limits", false);
  if (lim) {
    const char *p = "limits";
    check_keys(c, p, lim, k_limits);
    get_int(c, p, lim, "max_connections", 1, 1000000,
            &cf->limits.max_connections);
    get_int(c, p, lim, "max_connections_per_ip", 0, 1000000,
            &cf->limits.max_connections_per_ip);
    get_int(c, p, lim, "connection_rate_per_ip", 0, 1000000,
            &cf->limits.connection_rate_per_ip);
    get_int(c, p, lim, "max_errors", 1, 1000, &cf->limits.max_errors);
    get_int(c, p, lim, "max_junk_commands", 1, 100000,
            &cf->limits.max_junk_commands);
    get_int(c, p, lim, "max_unknown_commands", 1, 1000,
            &cf->limits.max_unknown_commands);
    get_size(c, p, lim, "max_message_size", 0, (int64_t)1 << 40,
             &cf->limits.max_message_size);
    get_int(c, p, lim, "max_recipients", 1, 100000,
            &cf->limits.max_recipients);
    get_int(c, p, lim, "max_messages_per_connection", 1, 1000000,
            &cf->limits.max_messages_per_connection);
    get_duration(c, p, lim, "greeting_delay", 0, 300000,
                 &cf->limits.greeting_delay_ms);
    get_duration(c, p, lim, "command_timeout", 1000, 3600000,
                 &cf->limits.command_timeout_ms);
    get_duration(c, p, lim, "data_timeout", 1000, 3600000,
                 &cf->limits.data_timeout_ms);
    get_duration(c, p, lim, "proxy_timeout", 100, 300000,
                 &cf->limits.proxy_timeout_ms);
    if (cf->limits.max_connections_per_ip > cf->limits.max_connections)
      warning(c, "limits.max_connections_per_ip",
              "%lld is above limits.max_connections (%lld)",
              (long long)cf->limits.max_connections_per_ip,
              (long long)cf->limits.max_connections);
  }

  /* spool */
  json_t *sp = get_object(c, "", root, "spool", true);
  if (sp) {
    const char *p = "spool";
    check_keys(c, p, sp, k_spool);
    if (get_str(c, p, sp, "directory", true, false, &s) == 1) {
      cf->spool.directory = resolve_path(c, s);
      if (c->checks & MXGWD_CHECK_FILES)
        check_dir_usable(c, "spool.directory", cf->spool.directory);
    }
    get_bool(c, p, sp, "sync", &cf->spool.sync);
    get_int(c, p, sp, "commit_workers", 1, 256, &cf->spool.commit_workers);
    get_bool(c, p, sp, "journal", &cf->spool.journal);
    get_size(c, p, sp, "journal_max_body", 1024, 64 << 20,
             &cf->spool.journal_max_body);
    if (!cf->spool.sync)
      warning(c, "spool.sync", "false: accepted mail can be lost in a crash "
                               "or power failure");
    get_duration(c, p, sp, "max_lifetime", 0, 86400000LL * 365,
                 &cf->spool.max_lifetime_ms);
    get_duration(c, p, sp, "delay_warning", 0, 86400000LL * 365,
                 &cf->spool.delay_warning_ms);
    if (cf->spool.delay_warning_ms % 1000)
      error(c, "spool.delay_warning", "whole seconds");
    else if (cf->spool.delay_warning_ms &&
             cf->spool.delay_warning_ms >= cf->spool.max_lifetime_ms)
      warning(c, "spool.delay_warning",
              "not shorter than max_lifetime: no delay warning is ever sent");
    get_duration(c, p, sp, "backoff_initial", 1000, 86400000,
                 &cf->spool.backoff_initial_ms);
    get_int(c, p, sp, "backoff_factor", 1, 100, &cf->spool.backoff_factor);
    get_duration(c, p, sp, "backoff_max", 1000, 86400000LL * 7,
                 &cf->spool.backoff_max_ms);
    get_enum(c, p, sp, "bounce", n_bounce, &cf->spool.bounce);
    if (get_str(c, p, sp, "bounce_recipient", false, false, &s) == 1) {
      const char *at = strchr(s, '@');
      if (!at || at == s || !valid_hostname(at + 1) || strchr(s, ' ') ||
          strchr(s, '<'))
        error(c, "spool.bounce_recipient",
              "\"%s\" is not a mail address (local@domain)", s);
      else
        cf->spool.bounce_recipient = xstrdup(s);
    }
    if (cf->spool.backoff_initial_ms > cf->spool.backoff_max_ms)
      error(c, "spool.backoff_initial",
            "%llds is longer than spool.backoff_max (%llds)",
            (long long)(cf->spool.backoff_initial_ms / 1000),
            (long long)(cf->spool.backoff_max_ms / 1000));
    if (cf->spool.backoff_initial_ms % 1000 || cf->spool.backoff_max_ms % 1000)
      error(c, "spool", "backoff_initial and backoff_max are whole seconds");
  }

  /* LMTP */
  json_t *lm = get_object(c, "", root, "lmtp", true);
  if (lm) {
    const char *p = "lmtp";
    check_keys(c, p, lm, k_lmtp);
    json_t *bs = get_array(c, p, lm, "backends", true, true);
    if (bs) {
      if (json_array_size(bs) > 16)
        error(c, "lmtp.backends", "at most 16 backends, not %zu",
              json_array_size(bs));
      else
        cf->lmtp.backends = get_str_array(c, "lmtp.backends", bs,
                                          &cf->lmtp.n_backends, check_backend,
                                          NULL);
      check_duplicates(c, "lmtp.backends", bs, false);
    }
    get_int(c, p, lm, "concurrency", 1, 1024, &cf->lmtp.concurrency);
    get_bool(c, p, lm, "xclient", &cf->lmtp.xclient);
    get_enum(c, p, lm, "starttls", n_starttls, &cf->lmtp.starttls);
    get_bool(c, p, lm, "tls_verify", &cf->lmtp.tls_verify);
    if (get_str(c, p, lm, "tls_servername", false, false, &s) == 1) {
      if (!valid_hostname(s))
        error(c, "lmtp.tls_servername", "\"%s\" is not a host name", s);
      else
        cf->lmtp.tls_servername = xstrdup(s);
    }
    if (get_str(c, p, lm, "tls_ca_file", false, false, &s) == 1) {
      cf->lmtp.tls_ca_file = resolve_path(c, s);
      if (c->checks & MXGWD_CHECK_FILES)
        check_readable_file(c, "lmtp.tls_ca_file", cf->lmtp.tls_ca_file);
    }
    if (cf->lmtp.starttls == MXGWD_LMTP_TLS_NEVER)
      for (const char *const *k = (const char *const[]){
               "tls_ca_file", "tls_servername", "tls_verify", NULL};
           *k; k++)
        if (json_object_get(lm, *k)) {
          char q[64];
          snprintf(q, sizeof q, "lmtp.%s", *k);
          warning(c, q, "ignored: lmtp.starttls is \"never\"");
        }
    get_duration(c, p, lm, "connect_timeout", 100, 3600000,
                 &cf->lmtp.connect_timeout_ms);
    get_duration(c, p, lm, "command_timeout", 100, 3600000,
                 &cf->lmtp.command_timeout_ms);
    get_duration(c, p, lm, "data_timeout", 100, 3600000,
                 &cf->lmtp.data_timeout_ms);
  }

  /* AUTH (submission and smtps listeners) */
  json_t *au = get_object(c, "", root, "auth", false);
  if (au) {
    static const char *const k_auth[] = {"users_file", "relay", NULL};
    check_keys(c, "auth", au, k_auth);
    get_bool(c, "auth", au, "relay", &cf->auth_relay);
    if (get_str(c, "auth", au, "users_file", true, false, &s) == 1) {
      cf->auth_users_file = resolve_path(c, s);
      if (c->checks & MXGWD_CHECK_FILES)
        check_users_file(c, "auth.users_file", cf->auth_users_file);
    }
  }
  for (size_t i = 0; i < cf->n_listeners; i++)
    if (cf->listeners[i].auth && !cf->auth_users_file && !au) {
      char q[64];
      snprintf(q, sizeof q, "listeners[%zu].mode", i);
      error(c, q, "\"%s\" needs auth.users_file (the users who may log in)",
            n_modes[cf->listeners[i].mode]);
    }

  parse_logging(c, root, cf);
}

void mxgwd_config_free(mxgwd_config *c) {
  if (!c)
    return;
  free(c->file);
  free(c->hostname);
  free(c->auth_users_file);
  for (size_t i = 0; i < c->n_listeners; i++) {
    free(c->listeners[i].address);
    free(c->listeners[i].cert_file);
    free(c->listeners[i].key_file);
    for (size_t k = 0; k < c->listeners[i].n_certs; k++) {
      mxgwd_cert *ce = &c->listeners[i].certs[k];
      free(ce->cert_file);
      free(ce->key_file);
      free_strv(ce->server_names, ce->n_server_names);
    }
    free(c->listeners[i].certs);
  }
  free(c->listeners);
  free_strv(c->domains, c->n_domains);
  free_strv(c->spf.dns_servers, c->spf.n_dns_servers);
  free(c->spool.directory);
  free(c->spool.bounce_recipient);
  free(c->lmtp.tls_ca_file);
  free(c->lmtp.tls_servername);
  free_strv(c->lmtp.backends, c->lmtp.n_backends);
  for (size_t i = 0; i < c->logging.n_outputs; i++) {
    free(c->logging.outputs[i].path);
    free(c->logging.outputs[i].ident);
  }
  free(c->logging.outputs);
  free(c);
}

int mxgwd_config_parse(const char *text, size_t len, const char *base_dir,
                       unsigned checks, mxgwd_config **out, mxgwd_msgs *errors,
                       mxgwd_msgs *warnings) {
  *out = NULL;
  ctx c = {.err = errors, .base_dir = base_dir, .checks = checks};
  c.warn = warnings ? warnings : &c.local_warn;
  json_error_t je;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    error(&c, "", "line %d, column %d: %s", je.line, je.column, je.text);
    mxgwd_msgs_free(&c.local_warn);
    return -1;
  }
  size_t before = errors->n;
  mxgwd_config *cf = xcalloc(1, sizeof *cf);
  defaults(cf);
  cf->file = xstrdup("");
  if (!json_is_object(root))
    error(&c, "", "the configuration must be a JSON object, not %s",
          type_name(root));
  else
    parse_root(&c, root, cf);
  json_decref(root);
  mxgwd_msgs_free(&c.local_warn);
  if (errors->n > before) {
    mxgwd_config_free(cf);
    return -1;
  }
  *out = cf;
  return 0;
}

int mxgwd_config_load(const char *file, unsigned checks, mxgwd_config **out,
                      mxgwd_msgs *errors, mxgwd_msgs *warnings) {
  *out = NULL;
  ctx c = {.err = errors};
  FILE *f = fopen(file, "rb");
  if (!f) {
    error(&c, "", "%s: %s", file, strerror(errno));
    return -1;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > (64u << 20)) {
        error(&c, "", "%s: larger than 64 MiB", file);
        free(buf);
        fclose(f);
        return -1;
      }
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        fclose(f);
        error(&c, "", "%s: out of memory", file);
        return -1;
      }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0)
      break;
  }
  int rerr = ferror(f);
  fclose(f);
  if (rerr) {
    error(&c, "", "%s: read error", file);
    free(buf);
    return -1;
  }
  /* the base directory: that of the file, made absolute */
  char abs[PATH_MAX];
  if (!realpath(file, abs))
    snprintf(abs, sizeof abs, "%s", file);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", abs);
  char *slash = strrchr(dir, '/');
  if (slash == dir)
    dir[1] = 0;
  else if (slash)
    *slash = 0;
  else if (!getcwd(dir, sizeof dir))
    snprintf(dir, sizeof dir, ".");
  int rv = mxgwd_config_parse(buf, len, dir, checks, out, errors, warnings);
  free(buf);
  if (rv == 0) {
    free((*out)->file);
    (*out)->file = xstrdup(abs);
  }
  return rv;
}

static void fmt_dur(char *b, size_t n, int64_t ms) {
  if (ms == 0)
    snprintf(b, n, "0");
  else if (ms % 86400000 == 0)
    snprintf(b, n, "%lldd", (long long)(ms / 86400000));
  else if (ms % 3600000 == 0)
    snprintf(b, n, "%lldh", (long long)(ms / 3600000));
  else if (ms % 60000 == 0)
    snprintf(b, n, "%lldm", (long long)(ms / 60000));
  else if (ms % 1000 == 0)
    snprintf(b, n, "%llds", (long long)(ms / 1000));
  else
    snprintf(b, n, "%lldms", (long long)ms);
}

void mxgwd_config_summary(const mxgwd_config *c, FILE *f) {
  static const char *const dests[] = {"stderr", "file", "syslog"};
  fprintf(f, "hostname %s\n", c->hostname);
  for (size_t i = 0; i < c->n_listeners; i++) {
    const mxgwd_listener *l = &c->listeners[i];
    bool v6 = strchr(l->address, ':') != NULL;
    fprintf(f, "listener %s%s%s:%d mode=%s tls=%s%s%s%s%s", v6 ? "[" : "",
            l->address, v6 ? "]" : "", l->port, n_modes[l->mode],
            n_policies[l->tls_policy],
            l->proxy_protocol ? " proxy_protocol" : "",
            l->auth ? " auth" : "",
            l->cert_file && l->tls_policy ? " cert=" : "",
            l->cert_file && l->tls_policy ? l->cert_file : "");
    for (size_t k = 0; l->tls_policy && k < l->n_certs; k++) {
      const mxgwd_cert *ce = &l->certs[k];
      fprintf(f, " cert=%s", ce->cert_file);
      for (size_t j = 0; j < ce->n_server_names; j++)
        fprintf(f, "%c%s", j ? ',' : '(', ce->server_names[j]);
      if (ce->n_server_names)
        fputc(')', f);
    }
    fputc('\n', f);
  }
  fprintf(f, "domains");
  for (size_t i = 0; i < c->n_domains; i++)
    fprintf(f, " %s", c->domains[i]);
  fprintf(f, "\nrecipient_validation %s\n", n_rv[c->recipients.mode]);
  if (c->spf.enabled) {
    fprintf(f, "spf");
    for (int i = 0; i < MXGWD_SPF_RESULTS; i++)
      fprintf(f, " %s=%s", mxgwd_spf_result_names[i],
              n_spf_act[c->spf.action[i]]);
    fprintf(f, " dns=");
    if (!c->spf.n_dns_servers)
      fprintf(f, "resolv.conf");
    for (size_t i = 0; i < c->spf.n_dns_servers; i++)
      fprintf(f, "%s%s", i ? "," : "", c->spf.dns_servers[i]);
    fprintf(f, "\n");
  } else {
    fprintf(f, "spf off\n");
  }
  char d1[32], d2[32], d3[32];
  fmt_dur(d1, sizeof d1, c->limits.greeting_delay_ms);
  fprintf(f,
          "limits connections=%lld per_ip=%lld rate_per_ip=%lld "
          "message_size=%lld "
          "recipients=%lld greeting_delay=%s\n",
          (long long)c->limits.max_connections,
          (long long)c->limits.max_connections_per_ip,
          (long long)c->limits.connection_rate_per_ip,
          (long long)c->limits.max_message_size,
          (long long)c->limits.max_recipients, d1);
  fmt_dur(d1, sizeof d1, c->spool.max_lifetime_ms);
  fmt_dur(d2, sizeof d2, c->spool.backoff_initial_ms);
  fmt_dur(d3, sizeof d3, c->spool.backoff_max_ms);
  fprintf(f, "spool %s sync=%s max_lifetime=%s backoff=%s*%lld..%s bounce=%s",
          c->spool.directory, c->spool.sync ? "yes" : "no", d1, d2,
          (long long)c->spool.backoff_factor, d3, n_bounce[c->spool.bounce]);
  if (c->spool.delay_warning_ms) {
    fmt_dur(d1, sizeof d1, c->spool.delay_warning_ms);
    fprintf(f, " delay_warning=%s", d1);
  }
  fprintf(f, "\n");
  fprintf(f, "lmtp");
  for (size_t i = 0; i < c->lmtp.n_backends; i++)
    fprintf(f, " %s%s", c->lmtp.backends[i], i ? "(fallback)" : "");
  fprintf(f, " concurrency=%lld starttls=%s\n", (long long)c->lmtp.concurrency,
          n_starttls[c->lmtp.starttls]);
  fprintf(f, "logging");
  for (size_t i = 0; i < c->logging.n_outputs; i++) {
    const mxgwd_log_output *o = &c->logging.outputs[i];
    fprintf(f, " %s%s%s/%s", dests[o->destination], o->path ? ":" : "",
            o->path ? o->path : "", n_format[o->format]);
  }
  fprintf(f, "\n");
}
