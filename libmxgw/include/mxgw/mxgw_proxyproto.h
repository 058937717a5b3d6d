/* SPDX-License-Identifier: MIT */
/*
 * mxgw_proxyproto.h: a sans-IO parser (and formatter) for the PROXY
 * protocol header, versions 1 (text) and 2 (binary), as HAProxy and other
 * load balancers put it in front of a relayed TCP connection. The
 * specification: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 * (docs/proxy-protocol.md summarises what is accepted and why).
 *
 * A listener that enables the PROXY protocol hands every byte it reads,
 * from the first one, to mxgw_proxyproto_parse() until it returns > 0
 * (the header is complete: that many bytes are the header, whatever follows
 * is the client's first bytes, e.g. an SMTP command or a TLS ClientHello)
 * or < 0 (not a PROXY header: close the connection, without a reply). While
 * it returns 0 the header is a valid prefix that still needs bytes: read
 * more and call again with all the bytes so far (nothing is consumed; the
 * parser keeps no state). A prefix that cannot become a valid header is
 * refused as soon as it shows, e.g. at the first byte that is neither 'P'
 * nor '\r', so a hostile client cannot hold a connection slot by sending
 * junk; one that trickles a valid prefix slowly is the caller's timeout's
 * business. A version 1 header is at most MXGW_PROXY_V1_MAX_LEN bytes; a
 * version 2 header says its length in its first 16 bytes (at most
 * MXGW_PROXY_V2_MAX_LEN); mxgw_proxyproto_parse_ex() reports it as soon as
 * it is known so the caller can size its buffer or apply its own cap.
 *
 * What is checked (strictly, per the specification):
 *   v1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF,
 *       exactly one space between fields, addresses valid for the family
 *       (IPv4 dotted quad without leading zeros; IPv6 as inet_pton() reads
 *       it, which also admits the ::ffff:a.b.c.d form HAProxy sends for
 *       IPv4-mapped clients), ports 0-65535 without leading zeros, the whole
 *       line including CRLF at most 107 bytes. "PROXY UNKNOWN" followed by
 *       CRLF or by a space and anything up to CRLF (ignored) is accepted.
 *   v2: the 12-byte signature, version 2, command LOCAL or PROXY (others
 *       refused), for PROXY a family/transport byte whose nibbles are
 *       defined (family 0-3, transport 0-2; others refused) and a length
 *       that holds the address block of the family (INET 12, INET6 36,
 *       UNIX 216 bytes); the TLVs after the address block must tile the
 *       rest exactly (each one within the length), a PP2_TYPE_CRC32C TLV
 *       must be 4 bytes and match the header's CRC32c, a PP2_TYPE_UNIQUE_ID
 *       at most 128 bytes. When the family or the transport is UNSPEC the
 *       block is skipped unread (its layout is unknown). For LOCAL the
 *       family and the block are ignored, as the specification says.
 *
 * No allocation, no I/O, no global state: any thread, any number of calls.
 */
#ifndef MXGW_PROXYPROTO_H
#define MXGW_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h> /* AF_INET, AF_INET6, AF_UNIX, AF_UNSPEC */

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The longest version 1 header, CRLF included (the specification's
 *  "PROXY UNKNOWN ffff:...:ffff ffff:...:ffff 65535 65535\r\n"). */
#define MXGW_PROXY_V1_MAX_LEN 107
/** The longest version 2 header: 16 fixed bytes + a 16-bit length. */
#define MXGW_PROXY_V2_MAX_LEN (16 + 65535)
/** A v2 header with no TLVs is at most this long (AF_UNIX: 16 + 216). */
#define MXGW_PROXY_V2_ADDR_MAX_LEN (16 + 216)

/** mxgw_proxy_hdr.command. */
enum { MXGW_PROXY_CMD_LOCAL = 0, MXGW_PROXY_CMD_PROXY = 1 };

/** PROXY protocol v2 TLV types (the specification's PP2_TYPE_*), for
 *  mxgw_proxyproto_tlv(). */
enum {
  MXGW_PP2_TYPE_ALPN = 0x01,
  MXGW_PP2_TYPE_AUTHORITY = 0x02,
  MXGW_PP2_TYPE_CRC32C = 0x03,
  MXGW_PP2_TYPE_NOOP = 0x04,
  MXGW_PP2_TYPE_UNIQUE_ID = 0x05,
  MXGW_PP2_TYPE_SSL = 0x20,
  MXGW_PP2_TYPE_NETNS = 0x30
};

/**
 * A decoded PROXY header. A plain value structure, filled by
 * mxgw_proxyproto_parse(); frozen (its layout will never change).
 *
 * How to use it: if command == MXGW_PROXY_CMD_PROXY, the client is
 * src_addr/src_port and the address the client connected to is
 * dst_addr/dst_port; family is then AF_INET or AF_INET6 (IP addresses, in
 * canonical text: inet_ntop() form, "192.0.2.1", "2001:db8::1",
 * "::ffff:192.0.2.1") or AF_UNIX (src_addr/dst_addr are socket paths, or ""
 * when a path is empty, abstract, longer than 63 bytes or not printable
 * ASCII; ports are 0): no IP address, treat it like LOCAL for IP-based
 * checks. Otherwise (command == MXGW_PROXY_CMD_LOCAL, family AF_UNSPEC,
 * addresses "", ports 0) use the socket's own addresses: the proxy made
 * the connection itself (v2 LOCAL, e.g. a health check), or could not say
 * who the client is (v1 "UNKNOWN"), or relayed something the library does
 * not take addresses from (v2 PROXY with family/transport UNSPEC or DGRAM:
 * the specification's "fall back to UNSPEC mode"). So `command` gives the
 * meaning, not always the wire's command nibble.
 */
typedef struct mxgw_proxy_hdr {
  int version;                     /* 1 or 2 */
  int command;                     /* MXGW_PROXY_CMD_* (see above) */
  int family;                      /* AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC */
  char src_addr[64], dst_addr[64]; /* NUL-terminated text, "" when unknown */
  uint16_t src_port, dst_port;     /* host byte order; 0 when unknown */
} mxgw_proxy_hdr;

/**
 * Parse a PROXY protocol v1 or v2 header at the start of buf.
 * @param buf  the bytes received so far on the connection, from its first
 *             byte (may be NULL when len is 0).
 * @param len  how many.
 * @param out  filled when the return is > 0; not written otherwise.
 * @return > 0: the header is complete and valid, this many bytes of buf
 *         are the header (*out is filled; bytes after it belong to the
 *         client); 0: a valid prefix, call again with more bytes (nothing
 *         was consumed); < 0: an error, close the connection.
 * Errors: MXGW_E_PROTOCOL (not a valid PROXY header, or a prefix that
 *         cannot become one), MXGW_E_INVAL (out NULL, or buf NULL with
 *         len > 0).
 * Ownership: nothing is kept; buf is only read. Context: any thread.
 */
MXGW_EXTERN int mxgw_proxyproto_parse(const void *buf, size_t len,
                                      mxgw_proxy_hdr *out);

/**
 * mxgw_proxyproto_parse() with details: the same return value and *out,
 * and optionally:
 * @param need  if not NULL: on > 0, the header length (the return value);
 *              on 0, the total number of bytes the header needs at least
 *              (for v2, the exact total once its first 16 bytes are in;
 *              otherwise len + 1, or 16 for a v2 prefix); on error, 0.
 * @param why   if not NULL: on error, a static English description of what
 *              is wrong (e.g. "v1: port with a leading zero"), for logs;
 *              NULL otherwise.
 * Errors, Ownership, Context: as mxgw_proxyproto_parse(); *why is static
 * storage.
 */
MXGW_EXTERN int mxgw_proxyproto_parse_ex(const void *buf, size_t len,
                                         mxgw_proxy_hdr *out, size_t *need,
                                         const char **why);

/**
 * Find a TLV in a version 2 header (e.g. MXGW_PP2_TYPE_AUTHORITY, the SNI
 * the client sent to the proxy; MXGW_PP2_TYPE_UNIQUE_ID).
 * @param buf, len  the header: the first bytes of the connection, as given
 *                  to mxgw_proxyproto_parse() (bytes after the header are
 *                  ignored); it is parsed again.
 * @param type      the TLV type (0-255), top level only (sub-TLVs of
 *                  MXGW_PP2_TYPE_SSL are inside its value).
 * @param value, vlen  receive a pointer into buf to the first TLV of that
 *                  type and its length (either may be NULL).
 * @return 1 found; 0 not found (also for v1 headers, v2 LOCAL and v2 with
 *         family or transport UNSPEC, which carry no TLVs the library can
 *         locate);
 *         < 0 error.
 * Errors: MXGW_E_PROTOCOL (buf does not start with a complete valid
 *         header), MXGW_E_INVAL (buf NULL, type out of range).
 * Ownership: *value points into buf. Context: any thread.
 */
MXGW_EXTERN int mxgw_proxyproto_tlv(const void *buf, size_t len, int type,
                                    const void **value, size_t *vlen);

/**
 * Write the header described by h (what a proxy sends; also for tests).
 * h->version 1: "PROXY TCP4|TCP6 src dst sport dport\r\n" for command
 * PROXY with AF_INET/AF_INET6; "PROXY UNKNOWN\r\n" for command LOCAL or
 * family AF_UNSPEC. h->version 2: LOCAL as ver_cmd 0x20, family 0x00,
 * length 0; PROXY with AF_INET (0x11), AF_INET6 (0x21), AF_UNIX (0x31, the
 * paths zero-padded to 108 bytes) or AF_UNSPEC (0x00, length 0); no TLVs.
 * Addresses are text as in mxgw_proxy_hdr (any form inet_pton() reads; v1
 * writes them canonicalised). Nothing is written on error.
 * @param size  capacity of buf; MXGW_PROXY_V1_MAX_LEN or
 *              MXGW_PROXY_V2_ADDR_MAX_LEN is always enough.
 * @return the number of bytes written (> 0), or an error.
 * Errors: MXGW_E_INVAL (h or buf NULL, unknown version, command or family,
 *         an address not valid for the family or not NUL-terminated
 *         within its 64 bytes, AF_UNIX in version 1), MXGW_E_RANGE (size
 *         too small).
 * Ownership: buf is the caller's; not NUL-terminated. Context: any thread.
 */
MXGW_EXTERN int mxgw_proxyproto_format(const mxgw_proxy_hdr *h, void *buf,
                                       size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_PROXYPROTO_H */
