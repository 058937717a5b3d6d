/* SPDX-License-Identifier: MIT */
/*
 * mxgw_smtp_parse.c: parsers for SMTP paths and parameter values. They work
 * on spans of the command line, allocate nothing, and are strict where the
 * RFCs are (RFC 5321 4.1.2 path syntax, 4.5.3.1 size limits) so that what
 * reaches the application is always well formed.
 */
#include <arpa/inet.h>
#include <string.h>

#include "mxgw_int.h"
#include "mxgw_smtp_parse.h"

static bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* atext (RFC 5322 3.2.3). */
static bool is_atext(unsigned char c) {
  if (is_alpha(c) || is_digit(c))
    return true;
  return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

bool mxgw__has_8bit(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] >= 0x80)
      return true;
  return false;
}

bool mxgw__utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
      need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    } else
      return false;
    if (n - i <= need)
      return false;
    if (p[i + 1] < lo || p[i + 1] > hi)
      return false;
    for (size_t k = 2; k <= need; k++)
      if ((p[i + k] & 0xC0) != 0x80)
        return false;
    i += need + 1;
  }
  return true;
}

bool mxgw__valid_domain(const char *p, size_t n, bool utf8) {
  if (n == 0 || n > 255)
    return false;
  size_t label = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '.') {
      /* sub-domain = Let-dig [Ldh-str]: no empty label, no trailing '-' */
      if (label == 0 || p[i - 1] == '-')
        return false;
      label = 0;
      continue;
    }
    if (is_alpha(c) || is_digit(c) || (utf8 && c >= 0x80)) {
      label++;
    } else if (c == '-') {
      if (label == 0)
        return false;
      label++;
    } else {
      return false;
    }
    if (label > 63)
      return false;
  }
  if (label == 0 || p[n - 1] == '-')
    return false;
  return !utf8 || mxgw__utf8_valid(p, n);
}

static bool valid_ipv4(const char *p, size_t n) {
  int parts = 0;
  size_t i = 0;
  while (i < n) {
    unsigned v = 0;
    size_t d = 0;
    while (i < n && is_digit((unsigned char)p[i])) {
      v = v * 10 + (unsigned)(p[i] - '0');
      if (++d > 3 || v > 255)
        return false;
      i++;
    }
    if (d == 0)
      return false;
    parts++;
    if (i < n) {
      if (p[i] != '.' || parts == 4)
        return false;
      i++;
      if (i == n)
        return false;
    }
  }
  return parts == 4;
}

bool mxgw__valid_addr_literal(const char *p, size_t n) {
  if (n < 3 || p[0] != '[' || p[n - 1] != ']')
    return false;
  p++;
  n -= 2;
  if (n >= 5 && (p[0] == 'I' || p[0] == 'i') && (p[1] == 'P' || p[1] == 'p') &&
      (p[2] == 'v' || p[2] == 'V') && p[3] == '6' && p[4] == ':') {
    char tmp[64];
    unsigned char addr[16];
    if (n - 5 >= sizeof tmp || n - 5 < 2)
      return false;
    memcpy(tmp, p + 5, n - 5);
    tmp[n - 5] = '\0';
    return inet_pton(AF_INET6, tmp, addr) == 1;
  }
  if (valid_ipv4(p, n))
    return true;
  /* General-address-literal = Standardized-tag ":" 1*dcontent */
  size_t i = 0;
  while (i < n && (is_alpha((unsigned char)p[i]) || is_digit((unsigned char)p[i]) ||
                   p[i] == '-'))
    i++;
  if (i == 0 || i >= n - 1 || p[i] != ':' || p[i - 1] == '-')
    return false;
  for (i++; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (!((c >= 33 && c <= 90) || (c >= 94 && c <= 126)))
      return false;
  }
  return true;
}

/* Local-part = Dot-string / Quoted-string. Returns its length or 0. */
static size_t parse_local(const char *p, size_t n, bool utf8) {
  size_t i = 0;
  if (n && p[0] == '"') {
    for (i = 1; i < n; i++) {
      unsigned char c = (unsigned char)p[i];
      if (c == '"')
        return i + 1;
      if (c == '\\') {
        if (i + 1 >= n)
          return 0;
        unsigned char q = (unsigned char)p[i + 1];
        if (q < 32 || q > 126)
          return 0;
        i++;
      } else if (!((c >= 32 && c <= 126) || (utf8 && c >= 0x80))) {
        return 0;
      }
    }
    return 0;
  }
  size_t atom = 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (is_atext(c) || (utf8 && c >= 0x80)) {
      atom++;
    } else if (c == '.') {
      if (atom == 0)
        return 0;
      atom = 0;
    } else {
      break;
    }
  }
  if (atom == 0)
    return 0;
  return i;
}

int mxgw__parse_path(const char *p, size_t n, bool allow_null, bool postmaster,
                     bool utf8, mxgw_path *out) {
  memset(out, 0, sizeof *out);
  if (n < 2 || p[0] != '<')
    return MXGW_PATH_SYNTAX;
  if (p[1] == '>') {
    if (!allow_null)
      return MXGW_PATH_NULL;
    out->consumed = 2;
    return MXGW_PATH_OK;
  }
  size_t i = 1;
  /* A-d-l ":" : source route, accepted and ignored (RFC 5321 4.1.2, C.) */
  if (p[i] == '@') {
    for (;;) {
      if (i >= n || p[i] != '@')
        return MXGW_PATH_SYNTAX;
      size_t s = ++i;
      while (i < n && p[i] != ',' && p[i] != ':' && p[i] != '>')
        i++;
      if (i >= n || !mxgw__valid_domain(p + s, i - s, utf8))
        return MXGW_PATH_SYNTAX;
      if (p[i] == ':') {
        i++;
        break;
      }
      if (p[i] != ',')
        return MXGW_PATH_SYNTAX;
      i++;
    }
  }
  size_t mb = i;
  size_t ll = parse_local(p + i, n - i, true);
  if (ll == 0)
    return MXGW_PATH_SYNTAX;
  size_t local_len = ll;
  i += ll;
  if (i < n && p[i] == '>' && postmaster && mxgw__ieq(p + mb, ll, "postmaster")) {
    out->mailbox = p + mb;
    out->mailbox_len = ll;
    out->consumed = i + 1;
    return MXGW_PATH_OK;
  }
  if (i >= n || p[i] != '@')
    return MXGW_PATH_SYNTAX;
  i++;
  size_t ds = i;
  if (i < n && p[i] == '[') {
    while (i < n && p[i] != ']')
      i++;
    if (i >= n)
      return MXGW_PATH_SYNTAX;
    i++;
    if (!mxgw__valid_addr_literal(p + ds, i - ds))
      return MXGW_PATH_SYNTAX;
  } else {
    while (i < n && p[i] != '>')
      i++;
    if (!mxgw__valid_domain(p + ds, i - ds, true))
      return MXGW_PATH_SYNTAX;
  }
  if (i >= n || p[i] != '>')
    return MXGW_PATH_SYNTAX;
  size_t mlen = i - mb;
  bool eight = mxgw__has_8bit(p + mb, mlen);
  if (eight && !mxgw__utf8_valid(p + mb, mlen))
    return MXGW_PATH_SYNTAX;
  if (eight && !utf8)
    return MXGW_PATH_UTF8;
  if (local_len > 64 || i - ds > 255 || mlen > 254)
    return MXGW_PATH_TOOLONG;
  out->mailbox = p + mb;
  out->mailbox_len = mlen;
  out->consumed = i + 1;
  return MXGW_PATH_OK;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1; /* RFC 3461: hexchar uses upper case only */
}

long mxgw__xtext_decode(const char *p, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '+') {
      if (i + 2 >= n)
        return -1;
      int h = hexval((unsigned char)p[i + 1]), l = hexval((unsigned char)p[i + 2]);
      if (h < 0 || l < 0)
        return -1;
      out[o++] = (char)(h * 16 + l);
      i += 2;
    } else if (c >= 33 && c <= 126 && c != '=') {
      out[o++] = (char)c;
    } else {
      return -1;
    }
  }
  return (long)o;
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

long mxgw__base64_decode(const char *p, size_t n, unsigned char *out) {
  if (n % 4)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; k++) {
      unsigned char c = (unsigned char)p[i + k];
      if (c == '=' && i + 4 == n && k >= 2) {
        v[k] = 0;
        pad++;
      } else {
        if (pad)
          return -1;
        v[k] = b64val(c);
        if (v[k] < 0)
          return -1;
      }
    }
    unsigned w = ((unsigned)v[0] << 18) | ((unsigned)v[1] << 12) |
                 ((unsigned)v[2] << 6) | (unsigned)v[3];
    out[o++] = (unsigned char)(w >> 16);
    if (pad < 2)
      out[o++] = (unsigned char)(w >> 8);
    if (pad < 1)
      out[o++] = (unsigned char)w;
  }
  return (long)o;
}
