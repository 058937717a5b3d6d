/* SPDX-License-Identifier: MIT */
/*
 * mxgw_doctor_int.h: internals of the diagnostics (mxgw_doctor.h), shared by
 * mxgw_doctor.c (options, findings, JSON), mxgw_doctor_dns.c (MX, SPF),
 * mxgw_doctor_tls.c (certificate files, listener probes) and
 * mxgw_doctor_net.c (LMTP backend, queue, blocking socket helpers).
 */
#ifndef MXGW_DOCTOR_INT_H
#define MXGW_DOCTOR_INT_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw/mxgw_doctor.h"
#include "mxgw_int.h"

#define DOC_MAXV 16

typedef struct doc_finding {
  int check;
  int status;
  char *concerns, *finding, *fix, *note, *detail;
} doc_finding;

struct mxgw_doctor {
  mxgw_mem mem;
  char *domain, *hostname, *tls_cert, *tls_key, *ca_file, *backend, *spool;
  char *dns_server, *probe_rcpt, *probe_sender, *rt_rcpt, *log_file;
  char *ip[DOC_MAXV];
  size_t n_ip;
  char *listen[DOC_MAXV];
  size_t n_listen;
  int64_t timeout_ms, allow_self_signed, expiry_warn_days, deferred_fail_age;
  int64_t now_opt, rt_wait_ms;
  mxgw_resolver *user_res;
  /* during a run */
  mxgw_resolver *res;
  int64_t now;
  char cert_fp[128];       /* SHA-256 of the leaf in TLS_CERT, "AB:CD:.." */
  char cert_subject[256];  /* its subject */
  /* results */
  doc_finding *f;
  size_t nf, capf;
  char *json;
  char errmsg[256];
};

/* Record a finding (strings copied; NULL = ""). MXGW_E_NOMEM. */
int mxgw__doc_add(mxgw_doctor *d, int check, int status, const char *concerns,
                  const char *finding, const char *fix, const char *note,
                  const char *detail);
/* snprintf that never warns about truncation (the text is cut). */
void mxgw__doc_fmt(char *buf, size_t cap, const char *fmt, ...)
    MXGW_PRINTF(3, 4);
void mxgw__doc_seterr(mxgw_doctor *d, const char *fmt, ...) MXGW_PRINTF(2, 3);

/* The checks. Each returns 0 or MXGW_E_NOMEM (problems are findings). */
int mxgw__doc_check_dns(mxgw_doctor *d);
int mxgw__doc_check_spf(mxgw_doctor *d);
int mxgw__doc_check_cert(mxgw_doctor *d);
int mxgw__doc_check_listeners(mxgw_doctor *d);
int mxgw__doc_check_backend(mxgw_doctor *d);
int mxgw__doc_check_queue(mxgw_doctor *d);
int mxgw__doc_check_round_trip(mxgw_doctor *d);

/* ---- blocking sockets (mxgw_doctor_net.c) ------------------------------ */

/* Parse "HOST:PORT", "[V6]:PORT", "unix:PATH" (unix only if allow_unix).
 * host/path into host (cap hcap), port into *port (0 for unix). 0 or -1. */
int mxgw__doc_parse_target(const char *t, int allow_unix, char *host,
                           size_t hcap, int *port, int *is_unix);

/* A connection with a read buffer; ssl is an OpenSSL SSL * (void * to keep
 * OpenSSL out of this header) once TLS is up. */
typedef struct doc_conn {
  int fd;
  void *ssl;
  char buf[16384];
  size_t len;
} doc_conn;

/* Connect within timeout_ms; on failure -1 with err ("connect to X:
 * Connection refused"). The socket then has receive/send timeouts. */
int mxgw__doc_connect(doc_conn *c, const char *target, int allow_unix,
                      int64_t timeout_ms, char *err, size_t errcap);
void mxgw__doc_close(doc_conn *c);
/* Send a line (CRLF added). 0 or -1 with err. */
int mxgw__doc_send(doc_conn *c, const char *line, char *err, size_t errcap);
/* Read one (multi-line) reply: *code, text = lines after the code joined
 * by "\n". 0, or -1 with err ("timed out", "connection closed", ...). */
int mxgw__doc_reply(doc_conn *c, int *code, char *text, size_t tcap,
                    char *err, size_t errcap);

#endif /* MXGW_DOCTOR_INT_H */
