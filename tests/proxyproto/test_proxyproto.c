/* SPDX-License-Identifier: MIT */
/*
 * test_proxyproto.c: Criterion unit tests of the PROXY protocol parser and
 * formatter (mxgw_proxyproto.h), through the public API. Every valid header
 * is also fed byte by byte (0 until the last byte, then the full length, and
 * the bytes after it left alone); every malformed one is checked to fail at
 * the earliest byte that shows it, where that is defined.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include <arpa/inet.h>
#include <string.h>

#include <mxgw/mxgw_proxyproto.h>

/* ---- helpers ----------------------------------------------------------- */

/* Parse buf[0..len) with the header of `hlen` bytes at its start: every
 * shorter prefix needs more, the whole returns hlen. */
static mxgw_proxy_hdr parse_ok(const void *buf, size_t len, size_t hlen) {
  mxgw_proxy_hdr h;
  size_t need;
  const char *why;
  for (size_t k = 0; k < hlen; k++) {
    int r = mxgw_proxyproto_parse_ex(buf, k, &h, &need, &why);
    cr_assert(eq(int, r, 0), "prefix of %zu/%zu bytes: %d (%s)", k, hlen, r,
              why ? why : "");
    cr_assert(need > k, "need %zu after %zu bytes", need, k);
    cr_assert(need <= hlen, "need %zu > header %zu", need, hlen);
    cr_assert(why == NULL);
  }
  memset(&h, 0x5a, sizeof h);
  int r = mxgw_proxyproto_parse_ex(buf, len, &h, &need, &why);
  cr_assert(eq(int, r, (int)hlen), "full: %d (%s)", r, why ? why : "");
  cr_assert(eq(sz, need, hlen));
  cr_assert(why == NULL);
  /* the plain call agrees */
  mxgw_proxy_hdr h2;
  cr_assert(eq(int, mxgw_proxyproto_parse(buf, len, &h2), (int)hlen));
  cr_assert(memcmp(&h, &h2, sizeof h) == 0);
  return h;
}

static mxgw_proxy_hdr parse_str_ok(const char *s) {
  return parse_ok(s, strlen(s), strlen(s));
}

/* buf fails with exactly `at` bytes (and every shorter prefix needs more);
 * at == 0 means: only the whole of it is checked to fail. */
static void parse_err_at(const void *buf, size_t len, size_t at) {
  mxgw_proxy_hdr h;
  size_t need;
  const char *why;
  if (at) {
    for (size_t k = 0; k < at; k++) {
      int r = mxgw_proxyproto_parse_ex(buf, k, &h, &need, &why);
      cr_assert(eq(int, r, 0), "prefix %zu before the error at %zu: %d (%s)", k,
                at, r, why ? why : "");
    }
    int r = mxgw_proxyproto_parse_ex(buf, at, &h, &need, &why);
    cr_assert(eq(int, r, MXGW_E_PROTOCOL), "error expected at byte %zu: %d", at,
              r);
    cr_assert(why != NULL && why[0] != '\0');
    cr_assert(eq(sz, need, 0));
  }
  int r = mxgw_proxyproto_parse_ex(buf, len, &h, &need, &why);
  cr_assert(eq(int, r, MXGW_E_PROTOCOL), "whole input: %d", r);
  cr_assert(why != NULL);
  cr_assert(eq(int, mxgw_proxyproto_parse(buf, len, &h), MXGW_E_PROTOCOL));
}

static void str_err_at(const char *s, size_t at) {
  parse_err_at(s, strlen(s), at);
}

/* m is a header with a '|' right after the byte at which the error must
 * show (every shorter prefix is a valid one); the '|' is not sent. */
static void str_err_mark(const char *m) {
  char s[256];
  const char *bar = strchr(m, '|');
  cr_assert(bar != NULL && strlen(m) < sizeof s);
  size_t at = (size_t)(bar - m);
  memcpy(s, m, at);
  strcpy(s + at, bar + 1);
  parse_err_at(s, strlen(s), at);
}

static const unsigned char SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Build a v2 header: signature, ver_cmd, fam, length = alen + tlen, then
 * the address block and the TLV bytes. Returns the total length. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam,
                 const void *addr, size_t alen, const void *tlv, size_t tlen) {
  memcpy(out, SIG, 12);
  out[12] = (unsigned char)ver_cmd;
  out[13] = (unsigned char)fam;
  size_t l = alen + tlen;
  out[14] = (unsigned char)(l >> 8);
  out[15] = (unsigned char)l;
  if (alen)
    memcpy(out + 16, addr, alen);
  if (tlen)
    memcpy(out + 16 + alen, tlv, tlen);
  return 16 + l;
}

static size_t inet_block(unsigned char *a, const char *src, const char *dst,
                         uint16_t sp, uint16_t dp) {
  cr_assert(eq(int, inet_pton(AF_INET, src, a), 1));
  cr_assert(eq(int, inet_pton(AF_INET, dst, a + 4), 1));
  a[8] = (unsigned char)(sp >> 8);
  a[9] = (unsigned char)sp;
  a[10] = (unsigned char)(dp >> 8);
  a[11] = (unsigned char)dp;
  return 12;
}

static size_t inet6_block(unsigned char *a, const char *src, const char *dst,
                          uint16_t sp, uint16_t dp) {
  cr_assert(eq(int, inet_pton(AF_INET6, src, a), 1));
  cr_assert(eq(int, inet_pton(AF_INET6, dst, a + 16), 1));
  a[32] = (unsigned char)(sp >> 8);
  a[33] = (unsigned char)sp;
  a[34] = (unsigned char)(dp >> 8);
  a[35] = (unsigned char)dp;
  return 36;
}

static size_t tlv(unsigned char *out, unsigned type, const void *v,
                  size_t vlen) {
  out[0] = (unsigned char)type;
  out[1] = (unsigned char)(vlen >> 8);
  out[2] = (unsigned char)vlen;
  if (vlen)
    memcpy(out + 3, v, vlen);
  return 3 + vlen;
}

/* An independent CRC32c: table driven (the library's is bitwise). */
static uint32_t t_crc32c(const unsigned char *p, size_t n) {
  uint32_t table[256];
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++)
    crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

static void expect_hdr(const mxgw_proxy_hdr *h, int version, int command,
                       int family, const char *src, const char *dst,
                       unsigned sp, unsigned dp) {
  cr_assert(eq(int, h->version, version));
  cr_assert(eq(int, h->command, command));
  cr_assert(eq(int, h->family, family));
  cr_assert(strcmp(h->src_addr, src) == 0, "src_addr \"%s\", want \"%s\"",
            h->src_addr, src);
  cr_assert(strcmp(h->dst_addr, dst) == 0, "dst_addr \"%s\", want \"%s\"",
            h->dst_addr, dst);
  cr_assert(eq(u32, h->src_port, sp));
  cr_assert(eq(u32, h->dst_port, dp));
}

static void expect_local(const mxgw_proxy_hdr *h, int version) {
  expect_hdr(h, version, MXGW_PROXY_CMD_LOCAL, AF_UNSPEC, "", "", 0, 0);
}

/* ---- v1 valid ---------------------------------------------------------- */

Test(v1, tcp4_with_client_bytes_after) {
  const char *s = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n";
  size_t hl = strlen("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n");
  mxgw_proxy_hdr h = parse_ok(s, strlen(s), hl);
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1", "198.51.100.2",
             56324, 25);
}

Test(v1, tcp4_bounds) {
  mxgw_proxy_hdr h =
      parse_str_ok("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n");
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET, "0.0.0.0", "255.255.255.255",
             0, 65535);
  h = parse_str_ok("PROXY TCP4 10.0.100.9 127.0.0.1 1 10\r\n");
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET, "10.0.100.9", "127.0.0.1", 1,
             10);
}

Test(v1, tcp6_canonical) {
  mxgw_proxy_hdr h =
      parse_str_ok("PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:db8::2 65535 0\r\n");
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET6, "2001:db8::1",
             "2001:db8::2", 65535, 0);
  /* what HAProxy sends for an IPv4 client on a v6 socket */
  h = parse_str_ok("PROXY TCP6 ::ffff:192.0.2.7 ::1 4000 587\r\n");
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET6, "::ffff:192.0.2.7", "::1",
             4000, 587);
}

Test(v1, tcp6_longest_104) {
  const char *s = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  cr_assert(eq(sz, strlen(s), 104));
  mxgw_proxy_hdr h = parse_str_ok(s);
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET6,
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535);
}

Test(v1, unknown_short) {
  mxgw_proxy_hdr h = parse_str_ok("PROXY UNKNOWN\r\n");
  expect_local(&h, 1);
  const char *s = "PROXY UNKNOWN\r\nQUIT\r\n";
  h = parse_ok(s, strlen(s), 15);
  expect_local(&h, 1);
}

Test(v1, unknown_rest_ignored) {
  mxgw_proxy_hdr h = parse_str_ok("PROXY UNKNOWN 192.0.2.1 192.0.2.2 1 2\r\n");
  expect_local(&h, 1);
  /* "the receiver must ignore anything presented before the CRLF" */
  h = parse_str_ok("PROXY UNKNOWN ?? \x01\x7f\xff bare\nLF \r not CRLF\r\n");
  expect_local(&h, 1);
}

Test(v1, unknown_longest_107) {
  const char *s = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  cr_assert(eq(sz, strlen(s), MXGW_PROXY_V1_MAX_LEN));
  mxgw_proxy_hdr h = parse_str_ok(s);
  expect_local(&h, 1);
}

/* ---- v1 malformed ------------------------------------------------------ */

Test(v1_bad, not_proxy_at_first_byte) {
  str_err_at("GET / HTTP/1.0\r\n\r\n", 1);
  str_err_at("EHLO client.example\r\n", 1);
  str_err_at("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", 1);
  str_err_at("\x16\x03\x01", 1); /* a TLS ClientHello */
  str_err_at(" PROXY", 1);
}

Test(v1_bad, signature_and_protocol) {
  str_err_mark("PROXZ| TCP4");
  str_err_mark("PROXYT|CP4 1.2.3.4 5.6.7.8 1 2\r\n");
  str_err_mark("PROXY  |TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
  str_err_mark("PROXY TCP5| 1.2.3.4 5.6.7.8 1 2\r\n");
  str_err_mark("PROXY t|cp4 1.2.3.4 5.6.7.8 1 2\r\n");
  str_err_mark("PROXY TCP4\r|\n");
  str_err_mark("PROXY TCP41|.2.3.4 5.6.7.8 1 2\r\n");
  str_err_mark("PROXY UD|P4 1.2.3.4 5.6.7.8 1 2\r\n");
  str_err_mark("PROXY UNKNOWX|\r\n");
  str_err_mark("PROXY UNKNOWNX|\r\n");
  str_err_mark("PROXY UNKNOWN\rX|");
  str_err_mark("PROXY UNKNOWN\r\r|\n");
  str_err_mark("PROXY UNKNOWN\n|");
  str_err_mark("PROXY \r|\n");
  str_err_mark("PROXY\r|\n");
}

Test(v1_bad, too_long) {
  char s[200];
  /* no CRLF within 107 bytes: refused at byte 107, not before */
  memset(s, 'a', sizeof s);
  memcpy(s, "PROXY UNKNOWN ", 14);
  parse_err_at(s, sizeof s, MXGW_PROXY_V1_MAX_LEN);
  /* the CRLF one byte too late: CR is the 107th byte, LF the 108th */
  memcpy(s + 106, "\r\n", 2);
  parse_err_at(s, 108, MXGW_PROXY_V1_MAX_LEN);
  /* syntactically fine TCP6 line with 45-character addresses: 116 bytes */
  const char *l = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
                  "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 "
                  "65535\r\n";
  cr_assert(eq(sz, strlen(l), 116));
  str_err_at(l, MXGW_PROXY_V1_MAX_LEN);
  l = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
      "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 6 5\r\n";
  cr_assert(eq(sz, strlen(l), 108));
  str_err_at(l, MXGW_PROXY_V1_MAX_LEN);
  /* one character less: exactly 107, accepted */
  l = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
      "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.25 6 5\r\n";
  cr_assert(eq(sz, strlen(l), 107));
  mxgw_proxy_hdr h = parse_str_ok(l);
  expect_hdr(&h, 1, MXGW_PROXY_CMD_PROXY, AF_INET6,
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff19", 6, 5);
}

Test(v1_bad, ipv4_addresses) {
  str_err_mark("PROXY TCP4 256| 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.00|.2.1 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0..|1 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0.2.1.|5 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0.2.1a| 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0.2.1 198.51.100.-|2 1 2\r\n");
  str_err_mark("PROXY TCP4 .|92.0.2.1 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 1920|.0.2.1 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 :|:1 198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0.2.1  |198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 0x|1.0.2.1 198.51.100.2 1 2\r\n");
  /* only complete at the space */
  str_err_mark("PROXY TCP4 192.0.2 |198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0.2. |198.51.100.2 1 2\r\n");
  str_err_mark("PROXY TCP4 192.0.2.1 198.51.100.2\r|\n");
  str_err_mark("PROXY TCP4 0 |0 1 2\r\n");
  /* digits and dots only, but too many: refused at the 4th digit as an
   * invalid prefix, and as too long when all of it is there */
  str_err_mark("PROXY TCP4 1111|111111111111 1.2.3.4 1 2\r\n");
}

Test(v1_bad, ipv6_addresses) {
  str_err_mark("PROXY TCP6 2001:db8::g| 2001:db8::2 1 2\r\n");
  str_err_mark("PROXY TCP6 2001:db8:::1 |2001:db8::2 1 2\r\n");
  str_err_mark("PROXY TCP6 12345::1 |2001:db8::2 1 2\r\n");
  str_err_mark("PROXY TCP6 1:2:3:4:5:6:7:8:9 |::1 1 2\r\n");
  str_err_mark("PROXY TCP6 1::2::3 |::1 1 2\r\n");
  str_err_mark("PROXY TCP6 192.0.2.1 |::1 1 2\r\n"); /* TCP6 needs IPv6 */
  str_err_mark("PROXY TCP6 ::1 fe80::1%|eth0 1 2\r\n");
  str_err_mark("PROXY TCP6 ::1 :: 1 2 |\r\n");
  str_err_mark("PROXY TCP6  |::1 1 2\r\n");
  str_err_mark("PROXY TCP6 ::1  |1 2\r\n");
  /* 46 characters: refused at the 46th */
  str_err_mark("PROXY TCP6 0000:0000:0000:0000:0000:0000:255.255.255.2550| "
               "::1 1 2\r\n");
}

Test(v1_bad, ports) {
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 65536| 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 99999| 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 123456| 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 01|234 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 00| 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 02|5\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 65540|\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 -|1 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 +|1 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 12a|4 25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8  |25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 \r|\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 25 |\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234\r|\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234  |25\r\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234\t|25\r\n");
  /* 0 alone and 65535 are fine (see tcp4_bounds); 6553 too */
  parse_str_ok("PROXY TCP4 1.2.3.4 5.6.7.8 6553 0\r\n");
}

Test(v1_bad, line_end) {
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 25\n|");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 25\r\r|\n");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 25\rX|");
  str_err_mark("PROXY TCP4 1.2.3.4 5.6.7.8 1234 25 |foo\r\n");
}

/* ---- v2 valid ---------------------------------------------------------- */

Test(v2, proxy_inet) {
  unsigned char a[12], b[64];
  inet_block(a, "192.0.2.1", "198.51.100.2", 56324, 25);
  size_t n = v2(b, 0x21, 0x11, a, 12, NULL, 0);
  cr_assert(eq(sz, n, 28));
  memcpy(b + n, "EHLO x\r\n", 8);
  mxgw_proxy_hdr h = parse_ok(b, n + 8, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1", "198.51.100.2",
             56324, 25);
}

Test(v2, proxy_inet6) {
  unsigned char a[36], b[64];
  inet6_block(a, "2001:db8::1", "2001:db8:0:0:1::2", 65535, 0);
  size_t n = v2(b, 0x21, 0x21, a, 36, NULL, 0);
  cr_assert(eq(sz, n, 52));
  mxgw_proxy_hdr h = parse_ok(b, n, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_INET6, "2001:db8::1",
             "2001:db8::1:0:0:2", 65535, 0);
}

Test(v2, proxy_unix) {
  unsigned char a[216], b[300];
  memset(a, 0, sizeof a);
  memcpy(a, "/run/client.sock", 16);
  memcpy(a + 108, "/run/mxgwd/smtp.sock", 20);
  size_t n = v2(b, 0x21, 0x31, a, 216, NULL, 0);
  cr_assert(eq(sz, n, MXGW_PROXY_V2_ADDR_MAX_LEN));
  mxgw_proxy_hdr h = parse_ok(b, n, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "/run/client.sock",
             "/run/mxgwd/smtp.sock", 0, 0);
}

Test(v2, proxy_unix_paths_not_kept) {
  unsigned char a[216], b[300];
  /* abstract socket (leading NUL); 64 bytes (does not fit); control byte */
  memset(a, 0, sizeof a);
  memcpy(a + 1, "abstract", 8);
  memset(a + 108, 'p', 108); /* no NUL at all: 108 bytes */
  size_t n = v2(b, 0x21, 0x31, a, 216, NULL, 0);
  mxgw_proxy_hdr h = parse_ok(b, n, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "", "", 0, 0);

  memset(a, 0, sizeof a);
  memset(a, 'x', 63); /* 63 bytes: kept */
  memset(a + 108, 'y', 64);
  n = v2(b, 0x21, 0x31, a, 216, NULL, 0);
  h = parse_ok(b, n, n);
  cr_assert(eq(sz, strlen(h.src_addr), 63));
  cr_assert(h.dst_addr[0] == '\0');

  memset(a, 0, sizeof a);
  memcpy(a, "/tmp/a\nb", 8);
  memcpy(a + 108, "/tmp/\x80", 6);
  n = v2(b, 0x21, 0x31, a, 216, NULL, 0);
  h = parse_ok(b, n, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "", "", 0, 0);
}

Test(v2, local) {
  unsigned char b[400], a[36];
  size_t n = v2(b, 0x20, 0x00, NULL, 0, NULL, 0);
  cr_assert(eq(sz, n, 16));
  mxgw_proxy_hdr h = parse_ok(b, n, n);
  expect_local(&h, 2);
  /* "must not assume zero is presented for LOCAL": a block to skip */
  inet6_block(a, "2001:db8::1", "2001:db8::2", 1, 2);
  n = v2(b, 0x20, 0x21, a, 36, NULL, 0);
  memcpy(b + n, "220 ", 4);
  h = parse_ok(b, n + 4, n);
  expect_local(&h, 2);
  /* "the family which is ignored": even undefined ones, and a block that
   * would be too short or is not TLVs */
  n = v2(b, 0x20, 0xff, "\x03\x00\x09", 3, NULL, 0);
  h = parse_ok(b, n, n);
  expect_local(&h, 2);
  n = v2(b, 0x20, 0x11, "ab", 2, NULL, 0);
  h = parse_ok(b, n, n);
  expect_local(&h, 2);
}

Test(v2, proxy_with_tlvs) {
  unsigned char a[12], t[600], b[700];
  size_t tl = 0;
  inet_block(a, "203.0.113.9", "192.0.2.25", 40000, 25);
  tl += tlv(t + tl, MXGW_PP2_TYPE_NOOP, NULL, 0);
  tl += tlv(t + tl, MXGW_PP2_TYPE_AUTHORITY, "mx.example.org", 14);
  tl += tlv(t + tl, MXGW_PP2_TYPE_ALPN, "smtp", 4);
  unsigned char uid[128];
  memset(uid, 'u', sizeof uid);
  tl += tlv(t + tl, MXGW_PP2_TYPE_UNIQUE_ID, uid, 128);
  tl += tlv(t + tl, 0x20, "\x01\x00\x00\x00\x00\x21\x00\x07TLSv1.3", 15);
  tl += tlv(t + tl, 0xE0, "custom", 6);
  tl += tlv(t + tl, MXGW_PP2_TYPE_AUTHORITY, "second", 6);
  size_t n = v2(b, 0x21, 0x11, a, 12, t, tl);
  mxgw_proxy_hdr h = parse_ok(b, n, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_INET, "203.0.113.9", "192.0.2.25",
             40000, 25);

  const void *v = NULL;
  size_t vl = 0;
  cr_assert(
      eq(int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_AUTHORITY, &v, &vl), 1));
  cr_assert(eq(sz, vl, 14));
  cr_assert(memcmp(v, "mx.example.org", 14) == 0);
  const unsigned char *vp = v;
  cr_assert(vp > b && vp < b + n); /* points into buf */
  cr_assert(eq(int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_NOOP, &v, &vl), 1));
  cr_assert(eq(sz, vl, 0));
  cr_assert(eq(int, mxgw_proxyproto_tlv(b, n, 0xE0, NULL, &vl), 1));
  cr_assert(eq(sz, vl, 6));
  cr_assert(
      eq(int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_UNIQUE_ID, &v, NULL), 1));
  cr_assert(
      eq(int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_CRC32C, &v, &vl), 0));
  cr_assert(
      eq(int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_NETNS, &v, &vl), 0));
  /* bytes after the header do not matter */
  memcpy(b + n, "\x02\x00\x05hello", 8);
  cr_assert(eq(int, mxgw_proxyproto_tlv(b, n + 8, 0xE0, NULL, NULL), 1));
}

Test(v2, crc32c) {
  /* the CRC-32C check value (RFC 3720 B.4 / the usual "123456789") */
  cr_assert(
      eq(u32, t_crc32c((const unsigned char *)"123456789", 9), 0xE3069283u));
  unsigned char a[36], t[64], b[200];
  size_t tl = 0;
  inet6_block(a, "2001:db8::7", "2001:db8::25", 1234, 25);
  tl += tlv(t + tl, MXGW_PP2_TYPE_AUTHORITY, "mx", 2);
  size_t crc_off = 16 + 36 + tl + 3;
  tl += tlv(t + tl, MXGW_PP2_TYPE_CRC32C, "\0\0\0\0", 4);
  size_t n = v2(b, 0x21, 0x21, a, 36, t, tl);
  uint32_t c = t_crc32c(b, n);
  b[crc_off] = (unsigned char)(c >> 24);
  b[crc_off + 1] = (unsigned char)(c >> 16);
  b[crc_off + 2] = (unsigned char)(c >> 8);
  b[crc_off + 3] = (unsigned char)c;
  mxgw_proxy_hdr h = parse_ok(b, n, n);
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_INET6, "2001:db8::7",
             "2001:db8::25", 1234, 25);
  const void *v;
  size_t vl;
  cr_assert(
      eq(int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_CRC32C, &v, &vl), 1));
  cr_assert(eq(sz, vl, 4));
  /* any flipped bit anywhere is refused */
  for (size_t i = 0; i < n; i++) {
    if ((i >= 12 && i <= 15) || i == crc_off - 3)
      continue; /* structure (tested elsewhere); the CRC32C TLV's type */
    b[i] ^= 0x10;
    mxgw_proxy_hdr x;
    cr_assert(eq(int, mxgw_proxyproto_parse(b, n, &x), MXGW_E_PROTOCOL),
              "flipped byte %zu", i);
    b[i] ^= 0x10;
  }
  /* the checksum in host order instead of network order */
  b[crc_off] = (unsigned char)c;
  b[crc_off + 1] = (unsigned char)(c >> 8);
  b[crc_off + 2] = (unsigned char)(c >> 16);
  b[crc_off + 3] = (unsigned char)(c >> 24);
  parse_err_at(b, n, n);
}

Test(v2, fallback_to_unspec) {
  unsigned char a[216], b[300], t[16];
  mxgw_proxy_hdr h;
  /* UDP over IPv4/IPv6, UNIX datagram: valid, addresses not taken */
  inet_block(a, "192.0.2.1", "192.0.2.2", 53, 53);
  size_t n = v2(b, 0x21, 0x12, a, 12, NULL, 0);
  h = parse_ok(b, n, n);
  expect_local(&h, 2);
  inet6_block(a, "::1", "::2", 53, 53);
  n = v2(b, 0x21, 0x22, a, 36, NULL, 0);
  h = parse_ok(b, n, n);
  expect_local(&h, 2);
  memset(a, 0, sizeof a);
  memcpy(a, "/dev/log", 8);
  n = v2(b, 0x21, 0x32, a, 216, NULL, 0);
  h = parse_ok(b, n, n);
  expect_local(&h, 2);
  /* their TLVs are still checked */
  size_t tl = tlv(t, MXGW_PP2_TYPE_AUTHORITY, "a", 1);
  n = v2(b, 0x21, 0x12, a, 12, t, tl);
  h = parse_ok(b, n, n);
  expect_local(&h, 2);
  cr_assert(eq(
      int, mxgw_proxyproto_tlv(b, n, MXGW_PP2_TYPE_AUTHORITY, NULL, NULL), 1));
  n = v2(b, 0x21, 0x12, a, 12, t, tl - 1);
  parse_err_at(b, n, n);
  /* family or transport UNSPEC: the block is skipped unread */
  unsigned fams[] = {0x00, 0x01, 0x02, 0x10, 0x20, 0x30};
  for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
    n = v2(b, 0x21, fams[i], "\x01\x02\x03\x04\x05", 5, NULL, 0);
    h = parse_ok(b, n, n);
    expect_local(&h, 2);
    cr_assert(eq(int, mxgw_proxyproto_tlv(b, n, 1, NULL, NULL), 0));
    n = v2(b, 0x21, fams[i], NULL, 0, NULL, 0);
    h = parse_ok(b, n, n);
    expect_local(&h, 2);
  }
}

Test(v2, length_beyond_address) {
  /* extra bytes after the address are TLVs; the biggest length works */
  static unsigned char b[MXGW_PROXY_V2_MAX_LEN + 10];
  unsigned char a[12];
  inet_block(a, "192.0.2.1", "192.0.2.2", 1, 2);
  size_t vlen = 65535 - 12 - 3;
  static unsigned char t[65535];
  t[0] = MXGW_PP2_TYPE_NOOP;
  t[1] = (unsigned char)(vlen >> 8);
  t[2] = (unsigned char)vlen;
  memset(t + 3, 'n', vlen);
  size_t n = v2(b, 0x21, 0x11, a, 12, t, 3 + vlen);
  cr_assert(eq(sz, n, MXGW_PROXY_V2_MAX_LEN));
  mxgw_proxy_hdr h;
  size_t need;
  /* once the 16 fixed bytes are in, need is the whole header */
  for (size_t k = 16; k < n; k += 4099) {
    cr_assert(eq(int, mxgw_proxyproto_parse_ex(b, k, &h, &need, NULL), 0));
    cr_assert(eq(sz, need, n));
  }
  cr_assert(eq(int, mxgw_proxyproto_parse_ex(b, 13, &h, &need, NULL), 0));
  cr_assert(eq(sz, need, 16));
  cr_assert(eq(int, mxgw_proxyproto_parse(b, n - 1, &h), 0));
  cr_assert(eq(int, mxgw_proxyproto_parse(b, n, &h), (int)n));
  expect_hdr(&h, 2, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1", "192.0.2.2", 1,
             2);
}

/* ---- v2 malformed ------------------------------------------------------ */

Test(v2_bad, signature_each_byte) {
  unsigned char a[12], b[64];
  inet_block(a, "192.0.2.1", "198.51.100.2", 1, 2);
  size_t n = v2(b, 0x21, 0x11, a, 12, NULL, 0);
  for (size_t i = 0; i < 12; i++) {
    unsigned char c[64];
    memcpy(c, b, n);
    c[i] ^= 0x20;
    parse_err_at(c, n, i + 1);
  }
  /* the v1 and v2 signatures mixed */
  parse_err_at("\r\nPROXY", 7, 3);
}

Test(v2_bad, version_and_command) {
  unsigned char a[12], b[64];
  inet_block(a, "192.0.2.1", "198.51.100.2", 1, 2);
  unsigned bad[] = {0x11, 0x31, 0x01, 0xF1, 0x22, 0x2F, 0x23, 0x10, 0x00};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = v2(b, bad[i], 0x11, a, 12, NULL, 0);
    parse_err_at(b, n, 13);
  }
}

Test(v2_bad, family_byte) {
  unsigned char a[216], b[300];
  memset(a, 0, sizeof a);
  unsigned bad[] = {0x13, 0x1F, 0x41, 0x40, 0xF1, 0x03, 0x33, 0xFF};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t n = v2(b, 0x21, bad[i], a, 216, NULL, 0);
    parse_err_at(b, n, 14);
  }
}

Test(v2_bad, length_too_short_for_family) {
  unsigned char a[216], b[300];
  memset(a, 0, sizeof a);
  struct {
    unsigned fam;
    size_t len;
  } c[] = {{0x11, 11},  {0x12, 0},  {0x21, 35}, {0x22, 12},
           {0x31, 215}, {0x32, 36}, {0x11, 0}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    size_t n = v2(b, 0x21, c[i].fam, a, c[i].len, NULL, 0);
    /* refused as soon as the length is in: no waiting for the block */
    parse_err_at(b, n, 16);
  }
}

Test(v2_bad, tlvs) {
  unsigned char a[12], t[300], b[400];
  inet_block(a, "192.0.2.1", "198.51.100.2", 1, 2);
  size_t n;
  /* 1 and 2 stray bytes after the address: not a TLV */
  n = v2(b, 0x21, 0x11, a, 12, "\x04", 1);
  parse_err_at(b, n, n);
  n = v2(b, 0x21, 0x11, a, 12, "\x04\x00", 2);
  parse_err_at(b, n, n);
  /* a TLV that runs past the length */
  n = v2(b, 0x21, 0x11, a, 12,
         "\x02\x00\x05"
         "abcd",
         7);
  parse_err_at(b, n, n);
  size_t tl = tlv(t, MXGW_PP2_TYPE_AUTHORITY, "abc", 3);
  tl += tlv(t + tl, MXGW_PP2_TYPE_NOOP, "x", 1);
  n = v2(b, 0x21, 0x11, a, 12, t, tl - 1);
  parse_err_at(b, n, n);
  /* CRC32C of the wrong size */
  tl = tlv(t, MXGW_PP2_TYPE_CRC32C, "\0\0\0", 3);
  n = v2(b, 0x21, 0x11, a, 12, t, tl);
  parse_err_at(b, n, n);
  tl = tlv(t, MXGW_PP2_TYPE_CRC32C, "\0\0\0\0\0", 5);
  n = v2(b, 0x21, 0x11, a, 12, t, tl);
  parse_err_at(b, n, n);
  /* a zero CRC32C field that is not the checksum */
  tl = tlv(t, MXGW_PP2_TYPE_CRC32C, "\0\0\0\0", 4);
  n = v2(b, 0x21, 0x11, a, 12, t, tl);
  parse_err_at(b, n, n);
  /* two CRC32C TLVs (each could not both be right) */
  tl = tlv(t, MXGW_PP2_TYPE_CRC32C, "\0\0\0\0", 4);
  tl += tlv(t + tl, MXGW_PP2_TYPE_CRC32C, "\0\0\0\0", 4);
  n = v2(b, 0x21, 0x11, a, 12, t, tl);
  parse_err_at(b, n, n);
  /* UNIQUE_ID of 129 bytes */
  unsigned char uid[129];
  memset(uid, 'u', sizeof uid);
  tl = tlv(t, MXGW_PP2_TYPE_UNIQUE_ID, uid, 129);
  n = v2(b, 0x21, 0x11, a, 12, t, tl);
  parse_err_at(b, n, n);
  /* mxgw_proxyproto_tlv() on them */
  cr_assert(eq(int, mxgw_proxyproto_tlv(b, n, 5, NULL, NULL), MXGW_E_PROTOCOL));
}

Test(v2_bad, truncated_is_incomplete_not_accepted) {
  unsigned char a[36], b[64];
  inet6_block(a, "2001:db8::1", "2001:db8::2", 1, 2);
  size_t n = v2(b, 0x21, 0x21, a, 36, NULL, 0);
  mxgw_proxy_hdr h;
  for (size_t k = 0; k < n; k++)
    cr_assert(eq(int, mxgw_proxyproto_parse(b, k, &h), 0));
  cr_assert(
      eq(int, mxgw_proxyproto_tlv(b, n - 1, 1, NULL, NULL), MXGW_E_PROTOCOL));
}

/* ---- API edges ---------------------------------------------------------- */

Test(api, arguments) {
  mxgw_proxy_hdr h;
  size_t need = 99;
  const char *why = "x";
  cr_assert(eq(int, mxgw_proxyproto_parse(NULL, 0, &h), 0));
  cr_assert(eq(int, mxgw_proxyproto_parse_ex(NULL, 0, &h, &need, &why), 0));
  cr_assert(eq(sz, need, 1));
  cr_assert(why == NULL);
  cr_assert(eq(int, mxgw_proxyproto_parse(NULL, 3, &h), MXGW_E_INVAL));
  cr_assert(eq(int, mxgw_proxyproto_parse("PROXY", 5, NULL), MXGW_E_INVAL));
  cr_assert(eq(int, mxgw_proxyproto_parse_ex("P", 1, NULL, &need, &why),
               MXGW_E_INVAL));
  cr_assert(why != NULL);
  cr_assert(eq(int, mxgw_proxyproto_parse_ex("PROX", 4, &h, &need, &why), 0));
  cr_assert(eq(sz, need, 5));
  cr_assert(eq(int, mxgw_proxyproto_parse_ex("X", 1, &h, &need, &why),
               MXGW_E_PROTOCOL));
  cr_assert(strcmp(why, "not a PROXY protocol header") == 0, "%s", why);
  cr_assert(eq(int, mxgw_proxyproto_tlv(NULL, 0, 1, NULL, NULL), MXGW_E_INVAL));
  cr_assert(eq(int,
               mxgw_proxyproto_tlv("PROXY UNKNOWN\r\n", 15, 256, NULL, NULL),
               MXGW_E_INVAL));
  cr_assert(eq(int,
               mxgw_proxyproto_tlv("PROXY UNKNOWN\r\n", 15, -1, NULL, NULL),
               MXGW_E_INVAL));
  cr_assert(
      eq(int, mxgw_proxyproto_tlv("PROXY UNKNOWN\r\n", 15, 2, NULL, NULL), 0));
  cr_assert(eq(int, mxgw_proxyproto_tlv("PROXY UNKNOWN\r", 14, 2, NULL, NULL),
               MXGW_E_PROTOCOL));
  unsigned char b[32];
  size_t n = v2(b, 0x20, 0x11, "\x02\x00\x01x", 4, NULL, 0);
  cr_assert(eq(int, mxgw_proxyproto_tlv(b, n, 2, NULL, NULL), 0)); /* LOCAL */
}

/* ---- formatter ----------------------------------------------------------- */

static mxgw_proxy_hdr mk(int version, int command, int family, const char *src,
                         const char *dst, uint16_t sp, uint16_t dp) {
  mxgw_proxy_hdr h;
  memset(&h, 0, sizeof h);
  h.version = version;
  h.command = command;
  h.family = family;
  strcpy(h.src_addr, src);
  strcpy(h.dst_addr, dst);
  h.src_port = sp;
  h.dst_port = dp;
  return h;
}

static void format_is(const mxgw_proxy_hdr *h, const void *want, size_t wlen) {
  unsigned char buf[MXGW_PROXY_V2_ADDR_MAX_LEN + 8];
  int n = mxgw_proxyproto_format(h, buf, sizeof buf);
  cr_assert(eq(int, n, (int)wlen), "format: %d", n);
  cr_assert(memcmp(buf, want, wlen) == 0);
  /* exactly big enough works; one less does not and writes nothing */
  unsigned char exact[MXGW_PROXY_V2_ADDR_MAX_LEN];
  cr_assert(eq(int, mxgw_proxyproto_format(h, exact, wlen), (int)wlen));
  memset(buf, 0xee, sizeof buf);
  cr_assert(eq(int, mxgw_proxyproto_format(h, buf, wlen - 1), MXGW_E_RANGE));
  for (size_t i = 0; i < sizeof buf; i++)
    cr_assert(eq(int, buf[i], 0xee));
}

Test(format, v1) {
  mxgw_proxy_hdr h = mk(1, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1",
                        "198.51.100.2", 56324, 25);
  const char *w = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n";
  format_is(&h, w, strlen(w));
  h = mk(1, MXGW_PROXY_CMD_PROXY, AF_INET6, "2001:DB8:0::1", "::FFFF:1.2.3.4",
         0, 65535);
  w = "PROXY TCP6 2001:db8::1 ::ffff:1.2.3.4 0 65535\r\n";
  format_is(&h, w, strlen(w));
  h = mk(1, MXGW_PROXY_CMD_LOCAL, AF_INET, "192.0.2.1", "x", 1, 2);
  format_is(&h, "PROXY UNKNOWN\r\n", 15);
  h = mk(1, MXGW_PROXY_CMD_PROXY, AF_UNSPEC, "", "", 0, 0);
  format_is(&h, "PROXY UNKNOWN\r\n", 15);
}

Test(format, v2) {
  unsigned char a[216], want[300];
  mxgw_proxy_hdr h = mk(2, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1",
                        "198.51.100.2", 56324, 25);
  inet_block(a, "192.0.2.1", "198.51.100.2", 56324, 25);
  size_t n = v2(want, 0x21, 0x11, a, 12, NULL, 0);
  format_is(&h, want, n);
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_INET6, "2001:db8::1", "2001:db8::2", 7, 8);
  inet6_block(a, "2001:db8::1", "2001:db8::2", 7, 8);
  n = v2(want, 0x21, 0x21, a, 36, NULL, 0);
  format_is(&h, want, n);
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "/run/a.sock", "", 0, 0);
  memset(a, 0, sizeof a);
  memcpy(a, "/run/a.sock", 11);
  n = v2(want, 0x21, 0x31, a, 216, NULL, 0);
  format_is(&h, want, n);
  h = mk(2, MXGW_PROXY_CMD_LOCAL, AF_INET, "192.0.2.1", "", 0, 0);
  n = v2(want, 0x20, 0x00, NULL, 0, NULL, 0);
  format_is(&h, want, n);
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_UNSPEC, "", "", 0, 0);
  n = v2(want, 0x21, 0x00, NULL, 0, NULL, 0);
  format_is(&h, want, n);
}

Test(format, errors) {
  unsigned char buf[400];
  mxgw_proxy_hdr h;
  h = mk(3, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1", "192.0.2.2", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(1, 2, AF_INET, "192.0.2.1", "192.0.2.2", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(1, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.256", "192.0.2.2", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1", "::1", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_INET, "::1", "192.0.2.1", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_INET6, "192.0.2.1", "::1", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_INET6, "::1", "::1::", 1, 2);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(1, MXGW_PROXY_CMD_PROXY, AF_UNIX, "/a", "/b", 0, 0);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, 12345, "", "", 0, 0);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "/a", "/b", 0, 0);
  memset(h.src_addr, 'a', sizeof h.src_addr); /* not NUL-terminated */
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "/a", "/b", 0, 0);
  memset(h.dst_addr, 'b', sizeof h.dst_addr);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(1, MXGW_PROXY_CMD_PROXY, AF_INET, "192.0.2.1", "192.0.2.2", 1, 2);
  memset(h.dst_addr, '1', sizeof h.dst_addr);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, buf, sizeof buf), MXGW_E_INVAL));
  cr_assert(
      eq(int, mxgw_proxyproto_format(NULL, buf, sizeof buf), MXGW_E_INVAL));
  h = mk(1, MXGW_PROXY_CMD_LOCAL, AF_UNSPEC, "", "", 0, 0);
  cr_assert(eq(int, mxgw_proxyproto_format(&h, NULL, 0), MXGW_E_INVAL));
}

Test(format, round_trip) {
  mxgw_proxy_hdr in[] = {
      mk(1, MXGW_PROXY_CMD_PROXY, AF_INET, "10.1.2.3", "10.3.2.1", 65535, 0),
      mk(1, MXGW_PROXY_CMD_PROXY, AF_INET6, "fe80::1", "::", 1, 2),
      mk(1, MXGW_PROXY_CMD_LOCAL, AF_UNSPEC, "", "", 0, 0),
      mk(2, MXGW_PROXY_CMD_PROXY, AF_INET, "0.0.0.0", "255.255.255.255", 9, 9),
      mk(2, MXGW_PROXY_CMD_PROXY, AF_INET6, "::ffff:10.0.0.1", "1::", 3, 4),
      mk(2, MXGW_PROXY_CMD_PROXY, AF_UNIX, "/s", "/d", 0, 0),
      mk(2, MXGW_PROXY_CMD_LOCAL, AF_UNSPEC, "", "", 0, 0),
  };
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
    unsigned char buf[MXGW_PROXY_V2_ADDR_MAX_LEN];
    int n = mxgw_proxyproto_format(&in[i], buf, sizeof buf);
    cr_assert(gt(int, n, 0));
    mxgw_proxy_hdr out = parse_ok(buf, (size_t)n, (size_t)n);
    cr_assert(memcmp(&in[i], &out, sizeof out) == 0, "case %zu", i);
  }
}

Test(api, out_untouched_unless_complete) {
  mxgw_proxy_hdr h, before;
  memset(&h, 0x77, sizeof h);
  before = h;
  cr_assert(eq(int, mxgw_proxyproto_parse("PROXY TCP4 1.2.3.4 ", 19, &h), 0));
  cr_assert(
      eq(int, mxgw_proxyproto_parse("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31, &h),
         MXGW_E_PROTOCOL));
  cr_assert(eq(int, mxgw_proxyproto_parse("PROXY UNKNOWN", 13, &h), 0));
  cr_assert(eq(
      int, mxgw_proxyproto_parse("\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c", 16, &h),
      0));
  cr_assert(memcmp(&h, &before, sizeof h) == 0);
}
