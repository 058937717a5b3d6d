/* SPDX-License-Identifier: MIT */
/*
 * mxgw_proxyproto.c: the PROXY protocol header (HAProxy's
 * proxy-protocol.txt, versions 1 and 2), parsed from a byte buffer without
 * state, allocation or I/O, and formatted for senders and tests.
 *
 * The parser is re-run over everything received so far on each call; a v1
 * line is at most 107 bytes and a v2 header is only looked at in full once
 * its announced length is in, so that costs nothing worth keeping state
 * for. Each check is made as soon as the bytes it needs are there, so a
 * prefix that can never become a header is refused early (section 2 of the
 * specification: a receiver must drop what does not match).
 */
#include <mxgw/mxgw_proxyproto.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "mxgw_int.h"

/* Section 2.2: "\r\n\r\n\0\r\nQUIT\n". */
static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define V2_HDR 16       /* signature, ver_cmd, fam, len */
#define V2_LEN_INET 12  /* 2 * 4 + 2 * 2 */
#define V2_LEN_INET6 36 /* 2 * 16 + 2 * 2 */
#define V2_LEN_UNIX 216 /* 2 * 108 */
#define V2_UNIX_PATH 108
#define V1_ADDR4_MAX 15 /* 255.255.255.255 */
#define V1_ADDR6_MAX 45 /* ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 */
#define PP2_UNIQUE_ID_MAX 128 /* section 2.2.7 */

/* The outcome of one parse: r > 0 complete, 0 need more, < 0 error. */
typedef struct pp_state {
  size_t need;
  const char *why;
} pp_state;

static int pp_fail(pp_state *st, const char *why) {
  st->why = why;
  st->need = 0;
  return MXGW_E_PROTOCOL;
}

static int pp_more(pp_state *st, size_t need) {
  st->need = need;
  return 0;
}

static void hdr_clear(mxgw_proxy_hdr *h, int version) {
  memset(h, 0, sizeof *h);
  h->version = version;
  h->command = MXGW_PROXY_CMD_LOCAL;
  h->family = AF_UNSPEC;
}

/* ---- version 1 --------------------------------------------------------- */

/*
 * Section 2.1: "exactly 4 integers in the range [0..255] inclusive written
 * in decimal representation separated by exactly one dot ... Heading zeroes
 * are not permitted". With complete == 0, s[0..n) need only be a prefix of
 * such an address. s holds only digits and dots.
 */
static int v1_ipv4_ok(const char *s, size_t n, int complete) {
  int octets = 1, digits = 0, value = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '.') {
      if (digits == 0 || octets == 4)
        return 0;
      octets++;
      digits = value = 0;
    } else { /* a digit: the caller admits only digits and dots */
      if (digits == 1 && value == 0)
        return 0; /* a leading zero */
      value = value * 10 + (c - '0');
      if (++digits > 3 || value > 255)
        return 0;
    }
  }
  return !complete || (octets == 4 && digits > 0);
}

/* Characters an IPv6 address text can hold (inet_pton() decides the rest
 * once the field is complete). */
static int v1_ipv6_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

/*
 * One address field starting at p[*pos], ending with a space. Returns 1
 * with the canonical text in dst and *pos after the space, 0 when the
 * bytes end first (a valid prefix so far), or an error.
 */
static int v1_addr(const unsigned char *p, size_t n, size_t *pos, int af,
                   char *dst, size_t dstsz, pp_state *st) {
  size_t start = *pos, max = af == AF_INET ? V1_ADDR4_MAX : V1_ADDR6_MAX;
  size_t i = start;
  while (i < n && p[i] != ' ') {
    if (i - start >= max)
      return pp_fail(st, af == AF_INET ? "v1: IPv4 address too long"
                                       : "v1: IPv6 address too long");
    if (af == AF_INET ? !(p[i] == '.' || (p[i] >= '0' && p[i] <= '9'))
                      : !v1_ipv6_char(p[i]))
      return pp_fail(st, af == AF_INET ? "v1: bad character in IPv4 address"
                                       : "v1: bad character in IPv6 address");
    i++;
  }
  size_t alen = i - start;
  if (af == AF_INET && !v1_ipv4_ok((const char *)p + start, alen, i < n))
    return pp_fail(st, "v1: invalid IPv4 address");
  if (i == n)
    return 0;
  if (alen == 0)
    return pp_fail(st, "v1: empty address (two spaces)");
  char tmp[V1_ADDR6_MAX + 1];
  memcpy(tmp, p + start, alen);
  tmp[alen] = '\0';
  if (af == AF_INET) {
    memcpy(dst, tmp, alen + 1); /* canonical already (checked above) and
                                   at most 15 characters < dstsz */
  } else {
    struct in6_addr a6;
    if (inet_pton(AF_INET6, tmp, &a6) != 1)
      return pp_fail(st, "v1: invalid IPv6 address");
    /* cannot fail: dstsz (64) > INET6_ADDRSTRLEN (46) */
    inet_ntop(AF_INET6, &a6, dst, (socklen_t)dstsz);
  }
  *pos = i + 1;
  return 1;
}

/*
 * A port: "a decimal integer in the range [0..65535] inclusive. Heading
 * zeroes are not permitted". Ends at `term` (' ' or '\r'). Same returns as
 * v1_addr; *pos is left on the terminator.
 */
static int v1_port(const unsigned char *p, size_t n, size_t *pos, char term,
                   uint16_t *port, pp_state *st) {
  size_t i = *pos;
  unsigned long v = 0;
  int digits = 0;
  for (; i < n && p[i] != term; i++) {
    if (p[i] < '0' || p[i] > '9')
      return pp_fail(st, term == ' ' ? "v1: bad character in source port"
                                     : "v1: bad character in destination "
                                       "port");
    if (digits == 1 && v == 0)
      return pp_fail(st, "v1: port with a leading zero");
    v = v * 10 + (unsigned long)(p[i] - '0');
    if (++digits > 5 || v > 65535)
      return pp_fail(st, "v1: port out of range");
  }
  if (i == n)
    return 0;
  if (digits == 0)
    return pp_fail(st, "v1: empty port");
  *port = (uint16_t)v;
  *pos = i;
  return 1;
}

/* Does p[0..n) start like `lit` (as far as it goes)? */
static int prefix_of(const unsigned char *p, size_t n, const char *lit) {
  size_t l = strlen(lit);
  return memcmp(p, lit, n < l ? n : l) == 0;
}

/* The line is still open: wait, unless 107 bytes are in already. */
static int v1_more(pp_state *st, size_t n, size_t more) {
  if (n == MXGW_PROXY_V1_MAX_LEN)
    return pp_fail(st, "v1: no CRLF within 107 bytes");
  return pp_more(st, more);
}

static int parse_v1(const unsigned char *p, size_t len, mxgw_proxy_hdr *out,
                    pp_state *st) {
  /* Nothing past 107 bytes can be part of the line (section 2.1). */
  size_t n = len < MXGW_PROXY_V1_MAX_LEN ? len : MXGW_PROXY_V1_MAX_LEN;
  size_t more = len + 1;
  if (!prefix_of(p, n, "PROXY "))
    return pp_fail(st, "not a PROXY protocol header");
  if (n < 6)
    return pp_more(st, more);

  const unsigned char *q = p + 6;
  size_t qn = n - 6;
  int af;
  if (prefix_of(q, qn, "TCP4 ")) {
    af = AF_INET;
  } else if (prefix_of(q, qn, "TCP6 ")) {
    af = AF_INET6;
  } else if (prefix_of(q, qn, "UNKNOWN")) {
    af = AF_UNSPEC;
  } else {
    return pp_fail(st, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
  }
  if (qn < 5)
    return pp_more(st, more); /* "TCP4 " and "UNKNO" still open */

  if (af == AF_UNSPEC) {
    /* "PROXY UNKNOWN" then CRLF, or a space and anything up to the CRLF,
     * which the receiver must ignore. */
    if (n < 14)
      return pp_more(st, more);
    if (p[13] != '\r' && p[13] != ' ')
      return pp_fail(st, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    if (p[13] == '\r') {
      if (n < 15)
        return pp_more(st, more);
      if (p[14] != '\n')
        return pp_fail(st, "v1: CR not followed by LF");
      hdr_clear(out, 1);
      return 15;
    }
    for (size_t i = 14; i + 1 < n; i++) {
      if (p[i] == '\r' && p[i + 1] == '\n') {
        hdr_clear(out, 1);
        return (int)(i + 2);
      }
    }
    return v1_more(st, n, more);
  }

  mxgw_proxy_hdr h;
  hdr_clear(&h, 1);
  size_t pos = 11; /* after "PROXY TCPx " */
  int r = v1_addr(p, n, &pos, af, h.src_addr, sizeof h.src_addr, st);
  if (r <= 0)
    return r < 0 ? r : v1_more(st, n, more);
  r = v1_addr(p, n, &pos, af, h.dst_addr, sizeof h.dst_addr, st);
  if (r <= 0)
    return r < 0 ? r : v1_more(st, n, more);
  r = v1_port(p, n, &pos, ' ', &h.src_port, st);
  if (r <= 0)
    return r < 0 ? r : v1_more(st, n, more);
  pos++; /* the space */
  r = v1_port(p, n, &pos, '\r', &h.dst_port, st);
  if (r <= 0)
    return r < 0 ? r : v1_more(st, n, more);
  if (pos + 1 >= n) /* the CR is in, the LF is not yet */
    return v1_more(st, n, more);
  if (p[pos + 1] != '\n')
    return pp_fail(st, "v1: CR not followed by LF");
  h.command = MXGW_PROXY_CMD_PROXY;
  h.family = af;
  *out = h;
  return (int)(pos + 2);
}

/* ---- version 2 --------------------------------------------------------- */

static uint16_t be16(const unsigned char *p) {
  return (uint16_t)((p[0] << 8) | p[1]);
}

/* CRC32c (Castagnoli, reflected 0x82F63B78), as RFC 4960 appendix B and
 * section 2.2.3 of the specification ask. Bitwise: headers are small and
 * the sum is computed once per connection. */
static uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

/*
 * Address block length for a PROXY command's family/transport byte: -1 if
 * either nibble is one the specification does not define ("must be
 * rejected as invalid by receivers"), 0 when the layout is not known
 * (family or transport UNSPEC: no address is taken and the TLVs cannot be
 * located), else the block length of section 2.2.
 */
static int v2_addr_len(unsigned fam) {
  unsigned af = fam >> 4, tp = fam & 0x0f;
  if (af > 3 || tp > 2)
    return -1;
  if (af == 0 || tp == 0)
    return 0;
  return af == 1 ? V2_LEN_INET : af == 2 ? V2_LEN_INET6 : V2_LEN_UNIX;
}

/* A socket path from a 108-byte field: kept only when it is printable
 * ASCII and fits (see mxgw_proxy_hdr). */
static void v2_unix_path(const unsigned char *f, char *dst, size_t dstsz) {
  size_t l = 0;
  dst[0] = '\0';
  while (l < V2_UNIX_PATH && f[l] != 0)
    l++;
  if (l == 0 || l >= dstsz)
    return;
  for (size_t i = 0; i < l; i++)
    if (f[i] < 0x20 || f[i] > 0x7e)
      return;
  memcpy(dst, f, l);
  dst[l] = '\0';
}

/*
 * Walk the TLVs in p[off..total): they must tile it exactly. Checks the
 * CRC32c and UNIQUE_ID rules; when `type` >= 0, stops at the first TLV of
 * that type and reports its value (returns 1).
 */
static int v2_tlvs(const unsigned char *p, size_t off, size_t total, int type,
                   const void **value, size_t *vlen, pp_state *st) {
  size_t crc_at = 0;
  int found = 0;
  while (off < total) {
    if (total - off < 3)
      return pp_fail(st, "v2: truncated TLV");
    size_t tl = be16(p + off + 1);
    if (tl > total - off - 3)
      return pp_fail(st, "v2: TLV longer than the header");
    unsigned t = p[off];
    if (t == MXGW_PP2_TYPE_CRC32C) {
      if (tl != 4)
        return pp_fail(st, "v2: CRC32C TLV is not 4 bytes");
      if (crc_at)
        return pp_fail(st, "v2: two CRC32C TLVs");
      crc_at = off + 3;
    } else if (t == MXGW_PP2_TYPE_UNIQUE_ID && tl > PP2_UNIQUE_ID_MAX) {
      return pp_fail(st, "v2: UNIQUE_ID TLV longer than 128 bytes");
    }
    if (!found && type >= 0 && t == (unsigned)type) {
      found = 1;
      if (value)
        *value = p + off + 3;
      if (vlen)
        *vlen = tl;
    }
    off += 3 + tl;
  }
  if (crc_at) {
    /* Section 2.2.3: the sum of the whole header with its own field
     * zeroed; sent in network byte order. */
    static const unsigned char zero[4] = {0, 0, 0, 0};
    uint32_t c = crc32c(0, p, crc_at);
    c = crc32c(c, zero, 4);
    c = crc32c(c, p + crc_at + 4, total - crc_at - 4);
    const unsigned char *v = p + crc_at;
    uint32_t sent = ((uint32_t)v[0] << 24) | ((uint32_t)v[1] << 16) |
                    ((uint32_t)v[2] << 8) | (uint32_t)v[3];
    if (c != sent)
      return pp_fail(st, "v2: CRC32C mismatch");
  }
  return found;
}

/*
 * Parse a v2 header; on success *tlv_off is where its TLVs start (0 when
 * the library cannot locate them: LOCAL, family UNSPEC).
 */
static int parse_v2(const unsigned char *p, size_t len, mxgw_proxy_hdr *out,
                    size_t *tlv_off, pp_state *st) {
  size_t n = len < sizeof v2_sig ? len : sizeof v2_sig;
  if (memcmp(p, v2_sig, n) != 0)
    return pp_fail(st, "not a PROXY protocol header");
  if (len < 13)
    return pp_more(st, V2_HDR);
  /* The 13th byte: version (high nibble) must be 2, command 0 or 1. */
  if ((p[12] >> 4) != 2)
    return pp_fail(st, "v2: version is not 2");
  unsigned cmd = p[12] & 0x0f;
  if (cmd > 1)
    return pp_fail(st, "v2: command is neither LOCAL nor PROXY");
  if (len < 14)
    return pp_more(st, V2_HDR);
  /* The 14th byte: for LOCAL "the family ... is ignored". */
  int alen = cmd == 1 ? v2_addr_len(p[13]) : 0;
  if (alen < 0)
    return pp_fail(st, "v2: invalid address family or transport");
  if (len < V2_HDR)
    return pp_more(st, V2_HDR);
  size_t total = V2_HDR + (size_t)be16(p + 14);
  if (total < V2_HDR + (size_t)alen)
    return pp_fail(st, "v2: length too short for the address family");
  if (len < total)
    return pp_more(st, total);

  mxgw_proxy_hdr h;
  hdr_clear(&h, 2);
  *tlv_off = 0;
  if (cmd == 1 && alen > 0) {
    int r = v2_tlvs(p, V2_HDR + (size_t)alen, total, -1, NULL, NULL, st);
    if (r < 0)
      return r;
    *tlv_off = V2_HDR + (size_t)alen;
    const unsigned char *a = p + V2_HDR;
    switch (p[13]) {
    case 0x11:
      h.family = AF_INET;
      inet_ntop(AF_INET, a, h.src_addr, sizeof h.src_addr);
      inet_ntop(AF_INET, a + 4, h.dst_addr, sizeof h.dst_addr);
      h.src_port = be16(a + 8);
      h.dst_port = be16(a + 10);
      break;
    case 0x21:
      h.family = AF_INET6;
      inet_ntop(AF_INET6, a, h.src_addr, sizeof h.src_addr);
      inet_ntop(AF_INET6, a + 16, h.dst_addr, sizeof h.dst_addr);
      h.src_port = be16(a + 32);
      h.dst_port = be16(a + 34);
      break;
    case 0x31:
      h.family = AF_UNIX;
      v2_unix_path(a, h.src_addr, sizeof h.src_addr);
      v2_unix_path(a + V2_UNIX_PATH, h.dst_addr, sizeof h.dst_addr);
      break;
    default:
      /* DGRAM: valid, but not taken from; "fall back to UNSPEC mode". */
      break;
    }
    if (h.family != AF_UNSPEC)
      h.command = MXGW_PROXY_CMD_PROXY;
  }
  *out = h;
  return (int)total;
}

/* ---- public ------------------------------------------------------------ */

static int parse_any(const void *buf, size_t len, mxgw_proxy_hdr *out,
                     size_t *tlv_off, pp_state *st) {
  const unsigned char *p = buf;
  *tlv_off = 0;
  if (len == 0)
    return pp_more(st, 1);
  if (p[0] == 'P')
    return parse_v1(p, len, out, st);
  if (p[0] == 0x0D)
    return parse_v2(p, len, out, tlv_off, st);
  return pp_fail(st, "not a PROXY protocol header");
}

int mxgw_proxyproto_parse_ex(const void *buf, size_t len, mxgw_proxy_hdr *out,
                             size_t *need, const char **why) {
  pp_state st = {0, NULL};
  size_t tlv_off;
  int r;
  if (!out || (!buf && len > 0)) {
    st.why = "invalid argument";
    r = MXGW_E_INVAL;
  } else {
    r = parse_any(buf, len, out, &tlv_off, &st);
    if (r > 0)
      st.need = (size_t)r;
  }
  if (need)
    *need = r < 0 ? 0 : st.need;
  if (why)
    *why = r < 0 ? st.why : NULL;
  return r;
}

int mxgw_proxyproto_parse(const void *buf, size_t len, mxgw_proxy_hdr *out) {
  return mxgw_proxyproto_parse_ex(buf, len, out, NULL, NULL);
}

int mxgw_proxyproto_tlv(const void *buf, size_t len, int type,
                        const void **value, size_t *vlen) {
  if (!buf || type < 0 || type > 255)
    return MXGW_E_INVAL;
  pp_state st = {0, NULL};
  mxgw_proxy_hdr h;
  size_t tlv_off;
  int r = parse_any(buf, len, &h, &tlv_off, &st);
  if (r == 0)
    return MXGW_E_PROTOCOL; /* incomplete */
  if (r < 0)
    return r;
  if (h.version != 2 || tlv_off == 0)
    return 0;
  return v2_tlvs(buf, tlv_off, (size_t)r, type, value, vlen, &st);
}

/* Text address to binary for the family; 1 on success. */
static int addr_bin(int af, const char *s, void *dst) {
  if (memchr(s, '\0', 64) == NULL)
    return 0;
  return inet_pton(af, s, dst) == 1;
}

static int format_v1(const mxgw_proxy_hdr *h, char *buf, size_t size) {
  char line[MXGW_PROXY_V1_MAX_LEN + 1];
  int n;
  if (h->command == MXGW_PROXY_CMD_LOCAL || h->family == AF_UNSPEC) {
    n = snprintf(line, sizeof line, "PROXY UNKNOWN\r\n");
  } else if (h->family == AF_INET || h->family == AF_INET6) {
    unsigned char s[16], d[16];
    char st[INET6_ADDRSTRLEN], dt[INET6_ADDRSTRLEN];
    if (!addr_bin(h->family, h->src_addr, s) ||
        !addr_bin(h->family, h->dst_addr, d))
      return MXGW_E_INVAL;
    /* cannot fail: the buffers hold any address of the family */
    inet_ntop(h->family, s, st, sizeof st);
    inet_ntop(h->family, d, dt, sizeof dt);
    n = snprintf(line, sizeof line, "PROXY %s %s %s %u %u\r\n",
                 h->family == AF_INET ? "TCP4" : "TCP6", st, dt,
                 (unsigned)h->src_port, (unsigned)h->dst_port);
  } else {
    return MXGW_E_INVAL;
  }
  /* n <= 104 ("PROXY TCP6" with two 39-character addresses) */
  if ((size_t)n > size)
    return MXGW_E_RANGE;
  memcpy(buf, line, (size_t)n);
  return n;
}

static void put16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static int format_v2(const mxgw_proxy_hdr *h, unsigned char *buf, size_t size) {
  unsigned char out[MXGW_PROXY_V2_ADDR_MAX_LEN];
  unsigned fam;
  size_t alen;
  memset(out, 0, sizeof out);
  memcpy(out, v2_sig, sizeof v2_sig);
  unsigned char *a = out + V2_HDR;
  if (h->command == MXGW_PROXY_CMD_LOCAL) {
    fam = 0x00;
    alen = 0;
  } else if (h->family == AF_UNSPEC) {
    fam = 0x00;
    alen = 0;
  } else if (h->family == AF_INET) {
    fam = 0x11;
    alen = V2_LEN_INET;
    if (!addr_bin(AF_INET, h->src_addr, a) ||
        !addr_bin(AF_INET, h->dst_addr, a + 4))
      return MXGW_E_INVAL;
    put16(a + 8, h->src_port);
    put16(a + 10, h->dst_port);
  } else if (h->family == AF_INET6) {
    fam = 0x21;
    alen = V2_LEN_INET6;
    if (!addr_bin(AF_INET6, h->src_addr, a) ||
        !addr_bin(AF_INET6, h->dst_addr, a + 16))
      return MXGW_E_INVAL;
    put16(a + 32, h->src_port);
    put16(a + 34, h->dst_port);
  } else if (h->family == AF_UNIX) {
    fam = 0x31;
    alen = V2_LEN_UNIX;
    size_t sl = strnlen(h->src_addr, sizeof h->src_addr);
    size_t dl = strnlen(h->dst_addr, sizeof h->dst_addr);
    if (sl >= sizeof h->src_addr || dl >= sizeof h->dst_addr)
      return MXGW_E_INVAL;
    memcpy(a, h->src_addr, sl);
    memcpy(a + V2_UNIX_PATH, h->dst_addr, dl);
  } else {
    return MXGW_E_INVAL;
  }
  out[12] = (unsigned char)(0x20 | (h->command == MXGW_PROXY_CMD_PROXY));
  out[13] = (unsigned char)fam;
  put16(out + 14, (uint16_t)alen);
  size_t total = V2_HDR + alen;
  if (total > size)
    return MXGW_E_RANGE;
  memcpy(buf, out, total);
  return (int)total;
}

int mxgw_proxyproto_format(const mxgw_proxy_hdr *h, void *buf, size_t size) {
  if (!h || !buf)
    return MXGW_E_INVAL;
  if (h->command != MXGW_PROXY_CMD_LOCAL && h->command != MXGW_PROXY_CMD_PROXY)
    return MXGW_E_INVAL;
  if (h->version == 1)
    return format_v1(h, buf, size);
  if (h->version == 2)
    return format_v2(h, buf, size);
  return MXGW_E_INVAL;
}
