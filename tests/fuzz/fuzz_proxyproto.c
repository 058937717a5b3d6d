/* SPDX-License-Identifier: MIT */
/*
 * fuzz_proxyproto.c: libFuzzer target for the PROXY protocol v1/v2 parser
 * (mxgw_proxyproto.h), through the public API. The input is the first bytes
 * of a connection. Invariants (each a __builtin_trap()):
 *
 *   - the return is MXGW_E_PROTOCOL (with a reason, need 0), 0 (need more
 *     than what was given; exactly 16 + length for a v2 header whose 16
 *     fixed bytes are in) or the header length (<= the input, <= 107 for v1,
 *     <= 16 + 65535 for v2, need equal to it); the output structure is
 *     written only in the last case;
 *   - the answers over the growing prefixes of the input are monotone:
 *     0 ... 0, then either an error for every longer prefix, or the header
 *     length n at prefix n and for every longer prefix, with the same
 *     decoded fields (the parser keeps no state and never looks past the
 *     header);
 *   - a decoded header is well formed: version 1 or 2, PROXY only with
 *     AF_INET/AF_INET6 (addresses inet_pton() accepts) or AF_UNIX, LOCAL
 *     only with AF_UNSPEC, empty addresses and zero ports, strings
 *     NUL-terminated;
 *   - formatted back with mxgw_proxyproto_format() in the same version, it
 *     parses to the same fields, in as many bytes as were written;
 *   - mxgw_proxyproto_tlv() agrees: MXGW_E_PROTOCOL unless complete, and
 *     any value it returns lies inside the header.
 */
#include <mxgw/mxgw.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c))                                                                  \
      __builtin_trap();                                                        \
  } while (0)

/* Prefixes checked one by one up to this length, then a few beyond. */
#define ALL_PREFIXES 300

static void check_hdr(const mxgw_proxy_hdr *h) {
  CHECK(h->version == 1 || h->version == 2);
  CHECK(memchr(h->src_addr, '\0', sizeof h->src_addr) != NULL);
  CHECK(memchr(h->dst_addr, '\0', sizeof h->dst_addr) != NULL);
  if (h->command == MXGW_PROXY_CMD_LOCAL) {
    CHECK(h->family == AF_UNSPEC);
    CHECK(h->src_addr[0] == '\0' && h->dst_addr[0] == '\0');
    CHECK(h->src_port == 0 && h->dst_port == 0);
    return;
  }
  CHECK(h->command == MXGW_PROXY_CMD_PROXY);
  if (h->family == AF_INET || h->family == AF_INET6) {
    unsigned char b[16];
    CHECK(inet_pton(h->family, h->src_addr, b) == 1);
    CHECK(inet_pton(h->family, h->dst_addr, b) == 1);
  } else {
    CHECK(h->version == 2 && h->family == AF_UNIX);
    CHECK(h->src_port == 0 && h->dst_port == 0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mxgw_proxy_hdr h, hk, sentinel;
  size_t need = 0, needk;
  const char *why = NULL, *whyk;
  memset(&sentinel, 0xA5, sizeof sentinel);
  h = sentinel;
  int r = mxgw_proxyproto_parse_ex(data, size, &h, &need, &why);
  if (r <= 0) /* *out is written only for a complete header */
    CHECK(memcmp(&h, &sentinel, sizeof h) == 0);

  if (r < 0) {
    CHECK(r == MXGW_E_PROTOCOL && why != NULL && why[0] != '\0' && need == 0);
  } else if (r == 0) {
    CHECK(why == NULL && need > size);
    if (size >= 16 && data[0] == 0x0D)
      CHECK(need == 16 + (((size_t)data[14] << 8) | data[15]));
  } else {
    CHECK(why == NULL && (size_t)r <= size && need == (size_t)r);
    CHECK(h.version == 1 ? r <= MXGW_PROXY_V1_MAX_LEN
                         : r <= MXGW_PROXY_V2_MAX_LEN);
    check_hdr(&h);
  }

  /* Monotone over prefixes; the plain call agrees with the _ex one. */
  int seen_err = 0;
  for (size_t k = 0; k <= size; k++) {
    if (k > ALL_PREFIXES && k != size && k != (size_t)(r > 0 ? r : 0) &&
        (k % 997) != 0)
      continue;
    int rk = mxgw_proxyproto_parse_ex(data, k, &hk, &needk, &whyk);
    CHECK(rk == mxgw_proxyproto_parse(data, k, &hk));
    if (rk < 0) {
      seen_err = 1;
      CHECK(r < 0);
    } else if (rk == 0) {
      CHECK(!seen_err);
      CHECK(r < 0 || r == 0 || (size_t)r > k);
    } else {
      CHECK(rk == r && (size_t)rk <= k);
      CHECK(memcmp(&hk, &h, sizeof h) == 0);
    }
  }

  /* The TLV lookup agrees with the parser. */
  int type = size ? data[size - 1] : 0;
  const void *v = NULL;
  size_t vl = 0;
  int t = mxgw_proxyproto_tlv(data, size, type, &v, &vl);
  if (r <= 0) {
    CHECK(t == MXGW_E_PROTOCOL);
  } else {
    CHECK(t == 0 || t == 1);
    if (t == 1) {
      const uint8_t *vp = v;
      CHECK(h.version == 2 && vp >= data + 16 && vl <= (size_t)r &&
            vp + vl <= data + r);
    }
  }

  /* Formatted back, it parses to the same fields. */
  if (r > 0) {
    unsigned char out[MXGW_PROXY_V2_ADDR_MAX_LEN];
    int n = mxgw_proxyproto_format(&h, out, sizeof out);
    CHECK(n > 0 && (size_t)n <= sizeof out);
    mxgw_proxy_hdr h2;
    CHECK(mxgw_proxyproto_parse(out, (size_t)n, &h2) == n);
    CHECK(memcmp(&h, &h2, sizeof h) == 0);
    /* too small a buffer is refused */
    CHECK(mxgw_proxyproto_format(&h, out, (size_t)n - 1) == MXGW_E_RANGE);
  }
  return 0;
}
