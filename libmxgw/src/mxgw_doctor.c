/* SPDX-License-Identifier: MIT */
/*
 * mxgw_doctor.c: the diagnostics handle: options, the run that calls each
 * check, the list of findings and its JSON form. The checks themselves are
 * in mxgw_doctor_dns.c, mxgw_doctor_tls.c and mxgw_doctor_net.c.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mxgw/mxgw_doctor.h"
#include "mxgw_doctor_int.h"

const char *mxgw_doctor_status_name(int status) {
  switch (status) {
  case MXGW_DOCTOR_OK:
    return "ok";
  case MXGW_DOCTOR_WARN:
    return "warn";
  case MXGW_DOCTOR_FAIL:
    return "fail";
  default:
    return "unknown";
  }
}

const char *mxgw_doctor_check_name(int check) {
  switch (check) {
  case MXGW_DOCTOR_CHECK_DNS:
    return "dns";
  case MXGW_DOCTOR_CHECK_SPF:
    return "spf";
  case MXGW_DOCTOR_CHECK_CERT:
    return "cert";
  case MXGW_DOCTOR_CHECK_LISTENER:
    return "listener";
  case MXGW_DOCTOR_CHECK_BACKEND:
    return "backend";
  case MXGW_DOCTOR_CHECK_QUEUE:
    return "queue";
  case MXGW_DOCTOR_CHECK_ROUND_TRIP:
    return "roundtrip";
  default:
    return "unknown";
  }
}

void mxgw__doc_fmt(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  if (n < 0 && cap)
    buf[0] = '\0';
}

void mxgw__doc_seterr(mxgw_doctor *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(d->errmsg, sizeof d->errmsg, fmt, ap);
  va_end(ap);
  if (n < 0)
    d->errmsg[0] = '\0';
}

int mxgw_doctor_new(mxgw_doctor **out, const mxgw_mem *mem) {
  if (!out)
    return MXGW_E_INVAL;
  *out = NULL;
  mxgw_mem m;
  mxgw__mem_init(&m, mem);
  mxgw_doctor *d = mxgw__calloc(&m, 1, sizeof *d);
  if (!d)
    return MXGW_E_NOMEM;
  d->mem = m;
  d->timeout_ms = 5000;
  d->expiry_warn_days = 21;
  d->deferred_fail_age = 3600;
  d->rt_wait_ms = 30000;
  *out = d;
  return MXGW_OK;
}

static void clear_findings(mxgw_doctor *d) {
  for (size_t i = 0; i < d->nf; i++) {
    doc_finding *f = &d->f[i];
    mxgw__free(&d->mem, f->concerns);
    mxgw__free(&d->mem, f->finding);
    mxgw__free(&d->mem, f->fix);
    mxgw__free(&d->mem, f->note);
    mxgw__free(&d->mem, f->detail);
  }
  d->nf = 0;
  mxgw__free(&d->mem, d->json);
  d->json = NULL;
}

void mxgw_doctor_free(mxgw_doctor *d) {
  if (!d)
    return;
  clear_findings(d);
  mxgw__free(&d->mem, d->f);
  char **s[] = {&d->domain,  &d->hostname,   &d->tls_cert,    &d->tls_key,
                &d->ca_file, &d->backend,    &d->spool,       &d->dns_server,
                &d->probe_rcpt, &d->probe_sender, &d->rt_rcpt,
                &d->log_file};
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
    mxgw__free(&d->mem, *s[i]);
  for (size_t i = 0; i < d->n_ip; i++)
    mxgw__free(&d->mem, d->ip[i]);
  for (size_t i = 0; i < d->n_listen; i++)
    mxgw__free(&d->mem, d->listen[i]);
  mxgw_mem m = d->mem;
  mxgw__free(&m, d);
}

static int set_one(mxgw_doctor *d, char **slot, const char *v) {
  char *c = NULL;
  if (v && !(c = mxgw__strdup(&d->mem, v)))
    return MXGW_E_NOMEM;
  mxgw__free(&d->mem, *slot);
  *slot = c;
  return MXGW_OK;
}

static int add_many(mxgw_doctor *d, char **arr, size_t *n, const char *v) {
  if (!v) {
    for (size_t i = 0; i < *n; i++)
      mxgw__free(&d->mem, arr[i]);
    *n = 0;
    return MXGW_OK;
  }
  if (*n >= DOC_MAXV) {
    mxgw__doc_seterr(d, "at most %d values", DOC_MAXV);
    return MXGW_E_RANGE;
  }
  if (!(arr[*n] = mxgw__strdup(&d->mem, v)))
    return MXGW_E_NOMEM;
  (*n)++;
  return MXGW_OK;
}

/* "HOST:PORT[/smtp|/submission|/smtps]" */
static int valid_listen(const char *v) {
  char target[300], host[300];
  const char *slash = strrchr(v, '/');
  size_t n = slash ? (size_t)(slash - v) : strlen(v);
  if (n >= sizeof target)
    return 0;
  memcpy(target, v, n);
  target[n] = '\0';
  if (slash && strcmp(slash + 1, "smtp") && strcmp(slash + 1, "submission") &&
      strcmp(slash + 1, "smtps"))
    return 0;
  int port, is_unix;
  return mxgw__doc_parse_target(target, 0, host, sizeof host, &port,
                                &is_unix) == 0;
}

int mxgw_doctor_set_str(mxgw_doctor *d, int key, const char *v) {
  if (!d)
    return MXGW_E_INVAL;
  d->errmsg[0] = '\0';
  char host[300];
  int port, is_unix;
  switch (key) {
  case MXGW_DOCTOR_OPT_DOMAIN:
    return set_one(d, &d->domain, v);
  case MXGW_DOCTOR_OPT_HOSTNAME:
    return set_one(d, &d->hostname, v);
  case MXGW_DOCTOR_OPT_PUBLIC_IP:
    if (v) {
      unsigned char b[16];
      if (inet_pton(AF_INET, v, b) != 1 && inet_pton(AF_INET6, v, b) != 1) {
        mxgw__doc_seterr(d, "public IP '%s' is not an IPv4 or IPv6 address",
                         v);
        return MXGW_E_INVAL;
      }
    }
    return add_many(d, d->ip, &d->n_ip, v);
  case MXGW_DOCTOR_OPT_LISTEN:
    if (v && !valid_listen(v)) {
      mxgw__doc_seterr(d,
                       "listener '%s': want HOST:PORT[/smtp|/submission|"
                       "/smtps]",
                       v);
      return MXGW_E_INVAL;
    }
    return add_many(d, d->listen, &d->n_listen, v);
  case MXGW_DOCTOR_OPT_TLS_CERT:
    return set_one(d, &d->tls_cert, v);
  case MXGW_DOCTOR_OPT_TLS_KEY:
    return set_one(d, &d->tls_key, v);
  case MXGW_DOCTOR_OPT_CA_FILE:
    return set_one(d, &d->ca_file, v);
  case MXGW_DOCTOR_OPT_BACKEND:
    if (v && mxgw__doc_parse_target(v, 1, host, sizeof host, &port,
                                    &is_unix) != 0) {
      mxgw__doc_seterr(d, "backend '%s': want HOST:PORT or unix:PATH", v);
      return MXGW_E_INVAL;
    }
    return set_one(d, &d->backend, v);
  case MXGW_DOCTOR_OPT_SPOOL:
    return set_one(d, &d->spool, v);
  case MXGW_DOCTOR_OPT_DNS_SERVER:
    if (v && (!*v || strpbrk(v, " \t\r\n="))) {
      mxgw__doc_seterr(d, "DNS server '%s': want IP[:PORT]", v);
      return MXGW_E_INVAL;
    }
    return set_one(d, &d->dns_server, v);
  case MXGW_DOCTOR_OPT_PROBE_RCPT:
    return set_one(d, &d->probe_rcpt, v);
  case MXGW_DOCTOR_OPT_PROBE_SENDER:
    return set_one(d, &d->probe_sender, v);
  case MXGW_DOCTOR_OPT_ROUND_TRIP_RCPT:
    return set_one(d, &d->rt_rcpt, v);
  case MXGW_DOCTOR_OPT_LOG_FILE:
    return set_one(d, &d->log_file, v);
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_doctor_set_int(mxgw_doctor *d, int key, int64_t v) {
  if (!d)
    return MXGW_E_INVAL;
  switch (key) {
  case MXGW_DOCTOR_OPT_TIMEOUT_MS:
    if (v < 1 || v > 600000)
      return MXGW_E_RANGE;
    d->timeout_ms = v;
    return MXGW_OK;
  case MXGW_DOCTOR_OPT_ALLOW_SELF_SIGNED:
    if (v != 0 && v != 1)
      return MXGW_E_RANGE;
    d->allow_self_signed = v;
    return MXGW_OK;
  case MXGW_DOCTOR_OPT_EXPIRY_WARN_DAYS:
    if (v < 0 || v > 3650)
      return MXGW_E_RANGE;
    d->expiry_warn_days = v;
    return MXGW_OK;
  case MXGW_DOCTOR_OPT_DEFERRED_FAIL_AGE:
    if (v < 0)
      return MXGW_E_RANGE;
    d->deferred_fail_age = v;
    return MXGW_OK;
  case MXGW_DOCTOR_OPT_NOW:
    if (v < 0)
      return MXGW_E_RANGE;
    d->now_opt = v;
    return MXGW_OK;
  case MXGW_DOCTOR_OPT_ROUND_TRIP_WAIT_MS:
    if (v < 1 || v > 3600000)
      return MXGW_E_RANGE;
    d->rt_wait_ms = v;
    return MXGW_OK;
  default:
    return MXGW_E_INVAL;
  }
}

int mxgw_doctor_set_resolver(mxgw_doctor *d, mxgw_resolver *r) {
  if (!d)
    return MXGW_E_INVAL;
  d->user_res = r;
  return MXGW_OK;
}

int mxgw__doc_add(mxgw_doctor *d, int check, int status, const char *concerns,
                  const char *finding, const char *fix, const char *note,
                  const char *detail) {
  if (d->nf == d->capf) {
    size_t nc = d->capf ? d->capf * 2 : 16;
    doc_finding *nf = mxgw__realloc(&d->mem, d->f, nc * sizeof *nf);
    if (!nf)
      return MXGW_E_NOMEM;
    d->f = nf;
    d->capf = nc;
  }
  doc_finding *f = &d->f[d->nf];
  memset(f, 0, sizeof *f);
  f->check = check;
  f->status = status;
  f->concerns = mxgw__strdup(&d->mem, concerns ? concerns : "");
  f->finding = mxgw__strdup(&d->mem, finding ? finding : "");
  f->fix = mxgw__strdup(&d->mem, fix ? fix : "");
  f->note = mxgw__strdup(&d->mem, note ? note : "");
  f->detail = mxgw__strdup(&d->mem, detail ? detail : "");
  d->nf++; /* counted even if a copy failed, so clear_findings frees it */
  if (!f->concerns || !f->finding || !f->fix || !f->note || !f->detail)
    return MXGW_E_NOMEM;
  return MXGW_OK;
}

int mxgw_doctor_run(mxgw_doctor *d, int checks) {
  if (!d)
    return MXGW_E_INVAL;
  clear_findings(d);
  d->errmsg[0] = '\0';
  d->cert_fp[0] = '\0';
  d->cert_subject[0] = '\0';
  d->now = d->now_opt ? d->now_opt : (int64_t)time(NULL);
  int want_dns = (checks & (MXGW_DOCTOR_CHECK_DNS | MXGW_DOCTOR_CHECK_SPF)) &&
                 d->domain;
  int any = want_dns ||
            ((checks & MXGW_DOCTOR_CHECK_CERT) && d->tls_cert) ||
            ((checks & MXGW_DOCTOR_CHECK_LISTENER) && d->n_listen) ||
            ((checks & MXGW_DOCTOR_CHECK_BACKEND) && d->backend) ||
            ((checks & MXGW_DOCTOR_CHECK_QUEUE) && d->spool) ||
            ((checks & MXGW_DOCTOR_CHECK_ROUND_TRIP) && d->rt_rcpt);
  if (!any) {
    mxgw__doc_seterr(d, "nothing to check: set the domain, certificate, "
                        "listeners, backend or spool");
    return MXGW_E_STATE;
  }
  mxgw_resolver *own = NULL;
  if (want_dns) {
    if (d->user_res) {
      d->res = d->user_res;
    } else {
      char servers[300], tmo[40];
      const char *opts[5];
      size_t no = 0;
      if (d->dns_server) {
        mxgw__doc_fmt(servers, sizeof servers, "servers=%s", d->dns_server);
        opts[no++] = servers;
      }
      int64_t t = d->timeout_ms / 3;
      mxgw__doc_fmt(tmo, sizeof tmo, "timeout_ms=%lld",
                    (long long)(t < 100 ? 100 : t));
      opts[no++] = tmo;
      opts[no++] = "tries=1";
      opts[no] = NULL;
      int rc = mxgw_resolver_new_ares(&own, opts, &d->mem);
      if (rc != MXGW_OK) {
        mxgw__doc_seterr(d, "DNS resolver: %s", mxgw_strerror(rc));
        return rc == MXGW_E_NOMEM ? rc : MXGW_E_DNS;
      }
      d->res = own;
    }
  }
  int rc = MXGW_OK;
  if (rc == MXGW_OK && d->domain && (checks & MXGW_DOCTOR_CHECK_DNS))
    rc = mxgw__doc_check_dns(d);
  if (rc == MXGW_OK && d->domain && (checks & MXGW_DOCTOR_CHECK_SPF))
    rc = mxgw__doc_check_spf(d);
  if (rc == MXGW_OK && d->tls_cert && (checks & MXGW_DOCTOR_CHECK_CERT))
    rc = mxgw__doc_check_cert(d);
  if (rc == MXGW_OK && d->n_listen && (checks & MXGW_DOCTOR_CHECK_LISTENER))
    rc = mxgw__doc_check_listeners(d);
  if (rc == MXGW_OK && d->backend && (checks & MXGW_DOCTOR_CHECK_BACKEND))
    rc = mxgw__doc_check_backend(d);
  if (rc == MXGW_OK && d->spool && (checks & MXGW_DOCTOR_CHECK_QUEUE))
    rc = mxgw__doc_check_queue(d);
  if (rc == MXGW_OK && d->rt_rcpt && (checks & MXGW_DOCTOR_CHECK_ROUND_TRIP))
    rc = mxgw__doc_check_round_trip(d);
  mxgw_resolver_free(own);
  d->res = NULL;
  if (rc != MXGW_OK)
    return rc;
  int worst = MXGW_DOCTOR_OK;
  for (size_t i = 0; i < d->nf; i++)
    if (d->f[i].status > worst)
      worst = d->f[i].status;
  return worst;
}

size_t mxgw_doctor_count(const mxgw_doctor *d) { return d ? d->nf : 0; }

int mxgw_doctor_get_str(const mxgw_doctor *d, size_t i, int key,
                        const char **ptr, size_t *len) {
  if (!d || !ptr)
    return MXGW_E_INVAL;
  if (i >= d->nf)
    return MXGW_E_RANGE;
  const doc_finding *f = &d->f[i];
  const char *s;
  switch (key) {
  case MXGW_DOCTOR_F_CHECK:
    s = mxgw_doctor_check_name(f->check);
    break;
  case MXGW_DOCTOR_F_CONCERNS:
    s = f->concerns;
    break;
  case MXGW_DOCTOR_F_FINDING:
    s = f->finding;
    break;
  case MXGW_DOCTOR_F_FIX:
    s = f->fix;
    break;
  case MXGW_DOCTOR_F_NOTE:
    s = f->note;
    break;
  case MXGW_DOCTOR_F_DETAIL:
    s = f->detail;
    break;
  default:
    return MXGW_E_INVAL;
  }
  if (!s)
    s = "";
  *ptr = s;
  if (len)
    *len = strlen(s);
  return MXGW_OK;
}

int mxgw_doctor_get_int(const mxgw_doctor *d, size_t i, int key,
                        int64_t *out) {
  if (!d || !out)
    return MXGW_E_INVAL;
  if (i >= d->nf)
    return MXGW_E_RANGE;
  switch (key) {
  case MXGW_DOCTOR_F_STATUS:
    *out = d->f[i].status;
    return MXGW_OK;
  case MXGW_DOCTOR_F_CHECK_ID:
    *out = d->f[i].check;
    return MXGW_OK;
  default:
    return MXGW_E_INVAL;
  }
}

static int jset(json_t *o, const char *k, json_t *v) {
  return v ? json_object_set_new(o, k, v) : -1;
}

int mxgw_doctor_json(mxgw_doctor *d, const char **ptr, size_t *len) {
  if (!d || !ptr)
    return MXGW_E_INVAL;
  json_t *root = json_object(), *arr = json_array(), *counts = json_object();
  int bad = !root || !arr || !counts;
  size_t n[3] = {0, 0, 0};
  int worst = 0;
  for (size_t i = 0; !bad && i < d->nf; i++) {
    const doc_finding *f = &d->f[i];
    if (f->status >= 0 && f->status <= 2)
      n[f->status]++;
    if (f->status > worst)
      worst = f->status;
    json_t *o = json_object(), *det = json_array();
    if (!o || !det) {
      json_decref(o);
      json_decref(det);
      bad = 1;
      break;
    }
    const char *p = f->detail ? f->detail : "";
    while (*p) {
      const char *e = strchr(p, '\n');
      size_t l = e ? (size_t)(e - p) : strlen(p);
      bad |= json_array_append_new(det, json_stringn(p, l)) != 0;
      p += l + (e ? 1 : 0);
    }
    bad |= jset(o, "check", json_string(mxgw_doctor_check_name(f->check)));
    bad |= jset(o, "status", json_string(mxgw_doctor_status_name(f->status)));
    bad |= jset(o, "concerns", json_string(f->concerns ? f->concerns : ""));
    bad |= jset(o, "finding", json_string(f->finding ? f->finding : ""));
    bad |= jset(o, "fix", json_string(f->fix ? f->fix : ""));
    bad |= jset(o, "note", json_string(f->note ? f->note : ""));
    bad |= jset(o, "detail", det);
    bad |= json_array_append_new(arr, o) != 0;
  }
  if (!bad) {
    bad |= jset(counts, "ok", json_integer((json_int_t)n[0]));
    bad |= jset(counts, "warn", json_integer((json_int_t)n[1]));
    bad |= jset(counts, "fail", json_integer((json_int_t)n[2]));
    bad |= jset(root, "status", json_string(mxgw_doctor_status_name(worst)));
    bad |= jset(root, "exit", json_integer(worst));
    bad |= json_object_set(root, "counts", counts) != 0;
    bad |= json_object_set(root, "findings", arr) != 0;
  }
  char *txt = bad ? NULL : json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(counts);
  json_decref(arr);
  json_decref(root);
  if (!txt)
    return MXGW_E_NOMEM;
  mxgw__free(&d->mem, d->json);
  d->json = mxgw__strdup(&d->mem, txt);
  free(txt);
  if (!d->json)
    return MXGW_E_NOMEM;
  *ptr = d->json;
  if (len)
    *len = strlen(d->json);
  return MXGW_OK;
}

const char *mxgw_doctor_errmsg(const mxgw_doctor *d) {
  return d ? d->errmsg : "";
}
