/* SPDX-License-Identifier: MIT */
/*
 * mxgw_smtp_parse.h: zero-allocation parsers for the pieces of SMTP command
 * lines: paths (RFC 5321 4.1.2 with RFC 6531 UTF-8), domains and address
 * literals, ESMTP parameters, xtext (RFC 3461 4) and base64 (RFC 4648).
 */
#ifndef MXGW_SMTP_PARSE_H
#define MXGW_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

/* Results of mxgw__parse_path(). */
enum {
  MXGW_PATH_OK = 0,
  MXGW_PATH_SYNTAX = 1,  /* malformed path */
  MXGW_PATH_UTF8 = 2,    /* non-ASCII without SMTPUTF8 */
  MXGW_PATH_TOOLONG = 3, /* local part > 64, domain > 255, path > 256 */
  MXGW_PATH_NULL = 4     /* "<>" where it is not allowed */
};

typedef struct mxgw_path {
  const char *mailbox; /* local@domain without <> and source route */
  size_t mailbox_len;  /* 0 for the null path */
  size_t consumed;     /* bytes of input up to and including '>' */
} mxgw_path;

/*
 * Parse a path at the start of p[0..n): "<" [A-d-l ":"] Mailbox ">" or "<>".
 * allow_null: accept "<>". postmaster: accept "<Postmaster>" (any case)
 * without a domain (RCPT). utf8: allow UTF-8 (RFC 6531).
 */
int mxgw__parse_path(const char *p, size_t n, bool allow_null, bool postmaster,
                     bool utf8, mxgw_path *out);

/* Domain (RFC 5321 4.1.2; with utf8, U-labels too). */
bool mxgw__valid_domain(const char *p, size_t n, bool utf8);
/* "[...]" address literal (RFC 5321 4.1.3). */
bool mxgw__valid_addr_literal(const char *p, size_t n);
/* Well-formed UTF-8 (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
bool mxgw__utf8_valid(const char *p, size_t n);
/* Any byte >= 0x80? */
bool mxgw__has_8bit(const char *p, size_t n);

/* xtext (RFC 3461 4): decode into out (capacity >= n). -1 if malformed. */
long mxgw__xtext_decode(const char *p, size_t n, char *out);
/* base64: decode into out (capacity >= n/4*3). -1 if malformed. */
long mxgw__base64_decode(const char *p, size_t n, unsigned char *out);

#endif /* MXGW_SMTP_PARSE_H */
