/* SPDX-License-Identifier: MIT */
/*
 * mxgw_doctor_dns.c: the DNS check (the domain's MX hosts and their
 * addresses: do they point at the gateway?) and the SPF check (does the
 * domain's record authorize the addresses the gateway sends from?), over
 * the resolver of mxgw_resolver.h and the evaluator of mxgw_spf.h.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mxgw/mxgw_spf.h"
#include "mxgw_doctor_int.h"

#define ANS_MAX 32
#define REC_MAX 1024

/* One lookup's outcome, with the records in presentation form. */
typedef struct doc_ans {
  int type; /* asked type */
  int done;
  int status;
  size_t n;
  int pref[ANS_MAX];
  char rec[ANS_MAX][REC_MAX];
} doc_ans;

static void ans_cb(void *arg, int status, const mxgw_dns_answer *a) {
  doc_ans *r = arg;
  r->done = 1;
  r->status = status;
  r->n = 0;
  if (status != MXGW_DNS_OK || !a)
    return;
  size_t n = mxgw_dns_answer_count(a);
  for (size_t i = 0; i < n && r->n < ANS_MAX; i++) {
    const char *p;
    size_t l;
    if (mxgw_dns_answer_data(a, i, &p, &l) != MXGW_OK)
      continue;
    char *out = r->rec[r->n];
    if (r->type == MXGW_DNS_A && l == 4) {
      inet_ntop(AF_INET, p, out, REC_MAX);
    } else if (r->type == MXGW_DNS_AAAA && l == 16) {
      inet_ntop(AF_INET6, p, out, REC_MAX);
    } else {
      if (l >= REC_MAX)
        l = REC_MAX - 1;
      memcpy(out, p, l);
      out[l] = '\0';
    }
    r->pref[r->n] = mxgw_dns_answer_pref(a, i);
    r->n++;
  }
}

/* A blocking lookup. Returns 0, or MXGW_E_NOMEM. out->status is set. */
static int lookup(mxgw_doctor *d, const char *name, int type, doc_ans *out) {
  memset(out, 0, sizeof *out);
  out->type = type;
  mxgw_dns_query *q = NULL;
  int rc = mxgw_resolver_query(d->res, name, type, ans_cb, out, &q);
  if (rc == MXGW_E_NOMEM)
    return rc;
  if (rc != MXGW_OK) {
    out->done = 1;
    out->status = MXGW_DNS_ERROR;
    return MXGW_OK;
  }
  (void)mxgw_resolver_run(d->res, d->timeout_ms * 2);
  if (!out->done) {
    mxgw_resolver_cancel(d->res, q); /* its callback never runs */
    out->done = 1;
    out->status = MXGW_DNS_TIMEOUT;
  }
  return MXGW_OK;
}

/* ---- the gateway's addresses -------------------------------------------- */

/* 1 if addr (presentation form) is one of the public IPs. */
static int is_gateway_ip(const mxgw_doctor *d, const char *addr) {
  unsigned char a[16], b[16];
  int fa = strchr(addr, ':') ? AF_INET6 : AF_INET;
  if (inet_pton(fa, addr, a) != 1)
    return 0;
  for (size_t i = 0; i < d->n_ip; i++) {
    int fb = strchr(d->ip[i], ':') ? AF_INET6 : AF_INET;
    if (fb == fa && inet_pton(fb, d->ip[i], b) == 1 &&
        !memcmp(a, b, fa == AF_INET ? 4 : 16))
      return 1;
  }
  return 0;
}

static void ip_list(const mxgw_doctor *d, char *buf, size_t cap) {
  size_t l = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < d->n_ip; i++) {
    int n = snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", d->ip[i]);
    if (n < 0 || (size_t)n >= cap - l)
      break;
    l += (size_t)n;
  }
}

static int same_name(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la && a[la - 1] == '.')
    la--;
  if (lb && b[lb - 1] == '.')
    lb--;
  return la == lb && !strncasecmp(a, b, la);
}

/* Addresses of a host (A then AAAA), comma-separated; *gw = 1 if one of
 * them is the gateway's; *status = the A lookup's status when there is no
 * address at all. */
static int host_addrs(mxgw_doctor *d, const char *host, doc_ans *tmp,
                      char *buf, size_t cap, int *gw, int *naddr,
                      int *status) {
  size_t l = 0;
  buf[0] = '\0';
  *gw = 0;
  *naddr = 0;
  *status = MXGW_DNS_OK;
  static const int types[2] = {MXGW_DNS_A, MXGW_DNS_AAAA};
  for (int t = 0; t < 2; t++) {
    int rc = lookup(d, host, types[t], tmp);
    if (rc)
      return rc;
    if (t == 0)
      *status = tmp->status;
    for (size_t i = 0; i < tmp->n; i++) {
      int n = snprintf(buf + l, cap - l, "%s%s", l ? ", " : "", tmp->rec[i]);
      if (n > 0 && (size_t)n < cap - l)
        l += (size_t)n;
      (*naddr)++;
      if (is_gateway_ip(d, tmp->rec[i]))
        *gw = 1;
    }
  }
  return MXGW_OK;
}

/* ---- DNS check ---------------------------------------------------------- */

typedef struct mx_host {
  int pref;
  char name[300];
} mx_host;

static int cmp_mx(const void *a, const void *b) {
  const mx_host *x = a, *y = b;
  return x->pref - y->pref;
}

static void want_records(const mxgw_doctor *d, char *buf, size_t cap) {
  const char *h = d->hostname ? d->hostname : "<gateway host name>";
  if (d->n_ip)
    mxgw__doc_fmt(buf, cap, "publish \"%s. MX 10 %s.\" and \"%s. %s %s\"",
                  d->domain, h, h, strchr(d->ip[0], ':') ? "AAAA" : "A",
                  d->ip[0]);
  else
    mxgw__doc_fmt(buf, cap, "publish \"%s. MX 10 %s.\"", d->domain, h);
}

int mxgw__doc_check_dns(mxgw_doctor *d) {
  char concerns[400], finding[1600], fix[800], addrs[1000], ips[400];
  doc_ans *ans = mxgw__malloc(&d->mem, sizeof *ans);
  doc_ans *tmp = mxgw__malloc(&d->mem, sizeof *tmp);
  mx_host *mx = mxgw__calloc(&d->mem, ANS_MAX, sizeof *mx);
  int rc = MXGW_E_NOMEM;
  if (!ans || !tmp || !mx)
    goto out;
  ip_list(d, ips, sizeof ips);
  mxgw__doc_fmt(concerns, sizeof concerns, "MX of %s", d->domain);
  if ((rc = lookup(d, d->domain, MXGW_DNS_MX, ans)))
    goto out;
  size_t nmx = 0;
  if (ans->status == MXGW_DNS_OK) {
    for (size_t i = 0; i < ans->n; i++) {
      mx[nmx].pref = ans->pref[i];
      mxgw__doc_fmt(mx[nmx].name, sizeof mx[nmx].name, "%s", ans->rec[i]);
      nmx++;
    }
    qsort(mx, nmx, sizeof *mx, cmp_mx);
  } else if (ans->status == MXGW_DNS_NODATA) {
    want_records(d, fix, sizeof fix);
    mxgw__doc_fmt(finding, sizeof finding,
                  "%s has no MX record: senders fall back to its own "
                  "A/AAAA (implicit MX, RFC 5321 5.1)",
                  d->domain);
    if ((rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_DNS, MXGW_DOCTOR_WARN,
                            concerns, finding, fix, NULL, NULL)))
      goto out;
    mx[0].pref = 0;
    mxgw__doc_fmt(mx[0].name, sizeof mx[0].name, "%s", d->domain);
    nmx = 1;
  } else {
    want_records(d, fix, sizeof fix);
    if (ans->status == MXGW_DNS_NXDOMAIN)
      mxgw__doc_fmt(finding, sizeof finding,
                    "%s does not exist in DNS (NXDOMAIN): nobody can deliver "
                    "to it",
                    d->domain);
    else
      mxgw__doc_fmt(finding, sizeof finding,
                    "the MX lookup failed (%s): senders cannot find where "
                    "to deliver and retry later",
                    mxgw_dns_status_name(ans->status));
    if (ans->status != MXGW_DNS_NXDOMAIN)
      mxgw__doc_fmt(fix, sizeof fix,
                    "make the DNS servers of %s answer (check the zone and "
                    "its delegation)%s",
                    d->domain, d->dns_server ? "" : "");
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_DNS, MXGW_DOCTOR_FAIL, concerns,
                       finding, fix, NULL, NULL);
    goto host;
  }
  /* RFC 7505 null MX */
  if (nmx == 1 && (!mx[0].name[0] || !strcmp(mx[0].name, "."))) {
    mxgw__doc_fmt(finding, sizeof finding,
                  "%s publishes a null MX (\"MX 0 .\", RFC 7505): it "
                  "accepts no mail",
                  d->domain);
    want_records(d, fix, sizeof fix);
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_DNS, MXGW_DOCTOR_FAIL, concerns,
                       finding, fix, NULL, NULL);
    goto host;
  }
  /* each MX host: its addresses, and whether it is the gateway */
  int gw[ANS_MAX], na[ANS_MAX], st[ANS_MAX], any_gw = 0;
  char *al[ANS_MAX];
  memset(al, 0, sizeof al);
  for (size_t i = 0; i < nmx; i++) {
    if ((rc = host_addrs(d, mx[i].name, tmp, addrs, sizeof addrs, &gw[i],
                         &na[i], &st[i])))
      goto out;
    if (!d->n_ip && d->hostname && same_name(mx[i].name, d->hostname) &&
        na[i])
      gw[i] = 1;
    any_gw |= gw[i];
    if (!(al[i] = mxgw__strdup(&d->mem, addrs))) {
      rc = MXGW_E_NOMEM;
      for (size_t j = 0; j < i; j++)
        mxgw__free(&d->mem, al[j]);
      goto out;
    }
  }
  rc = MXGW_OK;
  for (size_t i = 0; i < nmx && rc == MXGW_OK; i++) {
    int status;
    char what[300];
    mxgw__doc_fmt(what, sizeof what, "%s (preference %d)", mx[i].name,
                  mx[i].pref);
    fix[0] = '\0';
    if (!na[i]) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding,
                    "MX host %s has no address (%s): senders cannot "
                    "connect to it",
                    what, mxgw_dns_status_name(st[i]));
      if (d->n_ip && d->hostname && same_name(mx[i].name, d->hostname))
        mxgw__doc_fmt(fix, sizeof fix, "publish \"%s. %s %s\"", mx[i].name,
                      strchr(d->ip[0], ':') ? "AAAA" : "A", d->ip[0]);
      else
        want_records(d, fix, sizeof fix);
    } else if (gw[i]) {
      status = MXGW_DOCTOR_OK;
      mxgw__doc_fmt(finding, sizeof finding,
                    "MX host %s -> %s: the gateway", what, al[i]);
    } else {
      /* not the gateway: a failure if no MX reaches the gateway */
      status = any_gw ? MXGW_DOCTOR_WARN : MXGW_DOCTOR_FAIL;
      if (d->n_ip)
        mxgw__doc_fmt(finding, sizeof finding,
                      "MX host %s -> %s, not the gateway (%s)%s", what, al[i],
                      ips,
                      any_gw ? ": mail sent to this MX bypasses the gateway"
                             : ": mail for the domain goes elsewhere");
      else
        mxgw__doc_fmt(finding, sizeof finding,
                      "MX host %s -> %s is not the gateway host %s%s", what,
                      al[i], d->hostname ? d->hostname : "(unset)",
                      any_gw ? ": mail sent to this MX bypasses the gateway"
                             : ": mail for the domain goes elsewhere");
      if (any_gw)
        mxgw__doc_fmt(fix, sizeof fix,
                      "remove \"%s. MX %d %s.\" unless that host relays to "
                      "the gateway",
                      d->domain, mx[i].pref, mx[i].name);
      else
        want_records(d, fix, sizeof fix);
    }
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_DNS, status, concerns, finding,
                       fix, NULL, NULL);
  }
  for (size_t i = 0; i < nmx; i++)
    mxgw__free(&d->mem, al[i]);
  if (rc)
    goto out;
host:
  if (rc)
    goto out;
  /* the gateway host name itself */
  if (d->hostname) {
    int g, n, s;
    if ((rc = host_addrs(d, d->hostname, tmp, addrs, sizeof addrs, &g, &n,
                         &s)))
      goto out;
    mxgw__doc_fmt(concerns, sizeof concerns, "addresses of %s (gateway host)",
                  d->hostname);
    int status = MXGW_DOCTOR_OK;
    fix[0] = '\0';
    if (!n) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding, "%s has no A/AAAA record (%s)",
                    d->hostname, mxgw_dns_status_name(s));
      if (d->n_ip)
        mxgw__doc_fmt(fix, sizeof fix, "publish \"%s. %s %s\"", d->hostname,
                      strchr(d->ip[0], ':') ? "AAAA" : "A", d->ip[0]);
      else
        mxgw__doc_fmt(fix, sizeof fix, "publish an A record for %s",
                      d->hostname);
    } else if (d->n_ip && !g) {
      status = MXGW_DOCTOR_FAIL;
      mxgw__doc_fmt(finding, sizeof finding, "%s -> %s, not the gateway (%s)",
                    d->hostname, addrs, ips);
      mxgw__doc_fmt(fix, sizeof fix, "set \"%s. %s %s\"", d->hostname,
                    strchr(d->ip[0], ':') ? "AAAA" : "A", d->ip[0]);
    } else {
      mxgw__doc_fmt(finding, sizeof finding, "%s -> %s%s", d->hostname, addrs,
                    d->n_ip ? ": the gateway" : "");
    }
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_DNS, status, concerns, finding,
                       fix, NULL, NULL);
  }
out:
  mxgw__free(&d->mem, ans);
  mxgw__free(&d->mem, tmp);
  mxgw__free(&d->mem, mx);
  return rc;
}

/* ---- SPF check ---------------------------------------------------------- */

static const char SPF_NOTE_FMT[] =
    "outbound only: the SPF record of %s says which hosts may send mail "
    "FROM %s; it plays no part in whether others can deliver TO %s (that "
    "depends on the MX records, the listeners and TLS)";

/* 1 if txt is an SPF record ("v=spf1" then a space or the end). */
static int is_spf(const char *t) {
  return !strncasecmp(t, "v=spf1", 6) && (t[6] == '\0' || t[6] == ' ');
}

/* The term that authorizes ip: "ip4:1.2.3.4" or "ip6:2001:db8::1". */
static void ip_term(const char *ip, char *buf, size_t cap) {
  mxgw__doc_fmt(buf, cap, "%s:%s", strchr(ip, ':') ? "ip6" : "ip4", ip);
}

/* The record with `term` inserted before its "all" or redirect= term (or
 * at the end). */
static void with_term(const char *rec, const char *term, char *buf,
                      size_t cap) {
  const char *p = rec, *at = NULL;
  while (*p) {
    while (*p == ' ')
      p++;
    const char *s = p;
    while (*p && *p != ' ')
      p++;
    size_t l = (size_t)(p - s);
    const char *t = s;
    if (l && strchr("+-~?", *t)) {
      t++;
      l--;
    }
    if ((l == 3 && !strncasecmp(t, "all", 3)) ||
        (l > 9 && !strncasecmp(t, "redirect=", 9))) {
      at = s;
      break;
    }
  }
  if (at)
    mxgw__doc_fmt(buf, cap, "%.*s%s %s", (int)(at - rec), rec, term, at);
  else
    mxgw__doc_fmt(buf, cap, "%s %s", rec, term);
}

/* One record from several: every term once, the all term of the first
 * record that has one last. */
static void merge_records(char recs[][REC_MAX], size_t n, char *buf,
                          size_t cap) {
  size_t l = 0;
  char allterm[16] = "";
  l = (size_t)snprintf(buf, cap, "v=spf1");
  for (size_t r = 0; r < n; r++) {
    const char *p = recs[r] + 6;
    while (*p) {
      while (*p == ' ')
        p++;
      const char *s = p;
      while (*p && *p != ' ')
        p++;
      size_t tl = (size_t)(p - s);
      if (!tl)
        continue;
      const char *t = s;
      size_t bl = tl;
      if (strchr("+-~?", *t)) {
        t++;
        bl--;
      }
      if (bl == 3 && !strncasecmp(t, "all", 3)) {
        if (!allterm[0] && tl < sizeof allterm)
          mxgw__doc_fmt(allterm, sizeof allterm, "%.*s", (int)tl, s);
        continue;
      }
      /* skip duplicates */
      char term[300];
      mxgw__doc_fmt(term, sizeof term, " %.*s", (int)tl, s);
      size_t ql = strlen(term);
      int dup = 0;
      for (const char *q = buf; (q = strstr(q, term)); q += ql)
        if (q[ql] == ' ' || q[ql] == '\0')
          dup = 1;
      if (!dup && l + ql < cap) {
        memcpy(buf + l, term, ql + 1);
        l += ql;
      }
    }
  }
  if (l + 1 + strlen(allterm) < cap && allterm[0])
    mxgw__doc_fmt(buf + l, cap - l, " %s", allterm);
}

/* The trace of a check as lines "  ..." (indented by include depth). */
static int trace_text(mxgw_doctor *d, mxgw_spf_check *chk, char **out) {
  size_t n = mxgw_spf_check_trace_count(chk);
  mxgw_buf b = {0};
  for (size_t i = 0; i < n; i++) {
    int depth = 0, kind = 0;
    const char *p;
    size_t l;
    if (mxgw_spf_check_trace(chk, i, &depth, &kind, &p, &l) != MXGW_OK)
      continue;
    const char *label = mxgw_spf_trace_kind_name(kind);
    if (kind == MXGW_SPF_TRACE_RESULT && l > 8 && !memcmp(p, "result: ", 8)) {
      label = "final"; /* "result: pass (...)": the final result */
      p += 8;
      l -= 8;
    }
    if (mxgw__buf_appendf(&b, &d->mem, "%s%*s%-6s %.*s", i ? "\n" : "",
                          depth * 2, "", label, (int)l, p) != MXGW_OK) {
      mxgw__buf_free(&b, &d->mem);
      return MXGW_E_NOMEM;
    }
  }
  *out = mxgw__memdup0(&d->mem, mxgw__buf_ptr(&b), mxgw__buf_size(&b));
  mxgw__buf_free(&b, &d->mem);
  return *out ? MXGW_OK : MXGW_E_NOMEM;
}

static void get_s(mxgw_spf_check *chk, int key, char *buf, size_t cap) {
  const char *p;
  size_t l;
  if (mxgw_spf_check_get_str(chk, key, &p, &l) == MXGW_OK)
    mxgw__doc_fmt(buf, cap, "%.*s", (int)l, p);
  else
    buf[0] = '\0';
}

/* One evaluation and its finding. identity MAILFROM: sender
 * postmaster@domain; HELO: the host name. recs/nrec: the domain's SPF
 * records as fetched (for the fix). */
static int spf_eval(mxgw_doctor *d, mxgw_spf *spf, const char *ip,
                    int identity, const char *dom, char recs[][REC_MAX],
                    size_t nrec, const char *merged) {
  char concerns[600], finding[1600], fix[1600], note[600], term[80];
  char mech[300], mdom[300], problem[600], sender[400], rec2[1400];
  const char *helo = d->hostname ? d->hostname : d->domain;
  if (identity == MXGW_SPF_ID_MAILFROM) {
    mxgw__doc_fmt(sender, sizeof sender, "postmaster@%s", dom);
    mxgw__doc_fmt(concerns, sizeof concerns,
                  "SPF of %s for %s (outbound: MAIL FROM %s, the gateway's "
                  "notifications)",
                  dom, ip, sender);
  } else {
    sender[0] = '\0';
    mxgw__doc_fmt(concerns, sizeof concerns,
                  "SPF of %s for %s (outbound: HELO %s, the gateway's "
                  "bounces with the null sender)",
                  dom, ip, dom);
  }
  if (identity == MXGW_SPF_ID_MAILFROM)
    mxgw__doc_fmt(note, sizeof note, SPF_NOTE_FMT, dom, dom, dom);
  else
    note[0] = '\0';
  ip_term(ip, term, sizeof term);
  mxgw_spf_check *chk = NULL;
  int rc = mxgw_spf_check_sync(spf, ip, identity == MXGW_SPF_ID_HELO ? dom
                                                                      : helo,
                               sender, identity, &chk);
  if (rc == MXGW_E_NOMEM)
    return rc;
  if (rc != MXGW_OK) {
    mxgw__doc_fmt(finding, sizeof finding, "cannot evaluate: %s",
                  mxgw_strerror(rc));
    return mxgw__doc_add(d, MXGW_DOCTOR_CHECK_SPF, MXGW_DOCTOR_FAIL, concerns,
                         finding, "", note, NULL);
  }
  char *trace = NULL;
  if ((rc = trace_text(d, chk, &trace))) {
    mxgw_spf_check_free(chk);
    return rc;
  }
  int res = mxgw_spf_check_result(chk);
  get_s(chk, MXGW_SPF_INFO_MECHANISM, mech, sizeof mech);
  get_s(chk, MXGW_SPF_INFO_DOMAIN, mdom, sizeof mdom);
  get_s(chk, MXGW_SPF_INFO_PROBLEM, problem, sizeof problem);
  int status;
  fix[0] = '\0';
  const char *rn = mxgw_spf_result_name(res);
  const char *cur = nrec == 1 ? recs[0] : NULL;
  if (cur)
    with_term(cur, term, rec2, sizeof rec2);
  switch (res) {
  case MXGW_SPF_PASS:
    status = MXGW_DOCTOR_OK;
    mxgw__doc_fmt(finding, sizeof finding,
                  "%s is authorized: pass, matched \"%s\" in the record of %s",
                  ip, mech, mdom);
    break;
  case MXGW_SPF_FAIL:
  case MXGW_SPF_SOFTFAIL:
  case MXGW_SPF_NEUTRAL:
    status = res == MXGW_SPF_FAIL ? MXGW_DOCTOR_FAIL : MXGW_DOCTOR_WARN;
    if (!strcmp(mech, "default"))
      mxgw__doc_fmt(finding, sizeof finding,
                    "%s is not authorized: %s (no term matched); receivers "
                    "may refuse or junk mail the gateway sends as %s",
                    ip, rn, identity == MXGW_SPF_ID_HELO ? dom : sender);
    else
      mxgw__doc_fmt(finding, sizeof finding,
                    "%s is not authorized: %s, decided by \"%s\" in the "
                    "record of %s; receivers %s mail the gateway sends as %s",
                    ip, rn, mech, mdom,
                    res == MXGW_SPF_FAIL ? "reject" : "may junk",
                    identity == MXGW_SPF_ID_HELO ? dom : sender);
    if (cur && same_name(mdom, dom))
      mxgw__doc_fmt(fix, sizeof fix, "add %s to the SPF record of %s: \"%s\"",
                    term, dom, rec2);
    else
      mxgw__doc_fmt(fix, sizeof fix, "add %s to the SPF record of %s", term,
                    dom);
    break;
  case MXGW_SPF_NONE:
    status = identity == MXGW_SPF_ID_HELO ? MXGW_DOCTOR_WARN
                                          : MXGW_DOCTOR_FAIL;
    mxgw__doc_fmt(finding, sizeof finding,
                  "%s publishes no SPF record: result none for %s; many "
                  "receivers junk or refuse such mail",
                  dom, ip);
    mxgw__doc_fmt(fix, sizeof fix,
                  "publish a TXT record for %s: \"v=spf1 %s%s -all\"", dom,
                  identity == MXGW_SPF_ID_HELO ? "" : "mx ", term);
    break;
  case MXGW_SPF_PERMERROR:
    status = MXGW_DOCTOR_FAIL;
    mxgw__doc_fmt(finding, sizeof finding,
                  "the record of %s is broken: permerror (%s); receivers "
                  "treat the gateway's mail as unauthenticated or refuse it",
                  dom, problem);
    if (strstr(problem, "SPF records (RFC 7208 4.5)") && merged)
      mxgw__doc_fmt(fix, sizeof fix,
                    "publish a single SPF record for %s, merging the %zu: "
                    "\"%s\"",
                    dom, nrec, merged);
    else if (strstr(problem, "4.6.4") && strstr(problem, "void"))
      mxgw__doc_fmt(fix, sizeof fix,
                    "remove the terms that name hosts without addresses or "
                    "records (at most 2 void lookups, RFC 7208 4.6.4)");
    else if (strstr(problem, "4.6.4"))
      mxgw__doc_fmt(fix, sizeof fix,
                    "bring the record of %s to at most 10 DNS-querying terms "
                    "(include, a, mx, ptr, exists, redirect, counted through "
                    "includes): replace includes by the ip4:/ip6: ranges "
                    "they stand for, e.g. %s",
                    dom, term);
    else
      mxgw__doc_fmt(fix, sizeof fix, "correct the record of %s: %s", dom,
                    problem);
    break;
  default: /* temperror */
    status = MXGW_DOCTOR_FAIL;
    mxgw__doc_fmt(finding, sizeof finding,
                  "cannot evaluate: temperror (%s); receivers defer the "
                  "gateway's mail",
                  problem);
    mxgw__doc_fmt(fix, sizeof fix,
                  "make the DNS servers of %s (and of the domains its record "
                  "names) answer",
                  dom);
    break;
  }
  rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_SPF, status, concerns, finding, fix,
                     note, trace);
  mxgw__free(&d->mem, trace);
  mxgw_spf_check_free(chk);
  return rc;
}

/* Fetch the SPF records of dom into recs; returns the count in *n. */
static int spf_records(mxgw_doctor *d, const char *dom, doc_ans *ans,
                       char recs[][REC_MAX], size_t *n) {
  *n = 0;
  int rc = lookup(d, dom, MXGW_DNS_TXT, ans);
  if (rc)
    return rc;
  for (size_t i = 0; i < ans->n && *n < 8; i++)
    if (is_spf(ans->rec[i]))
      memcpy(recs[(*n)++], ans->rec[i], REC_MAX);
  return MXGW_OK;
}

int mxgw__doc_check_spf(mxgw_doctor *d) {
  char concerns[400], finding[1600], fix[2000], note[600];
  doc_ans *ans = mxgw__malloc(&d->mem, sizeof *ans);
  char(*recs)[REC_MAX] = mxgw__malloc(&d->mem, 8 * REC_MAX);
  char *merged = mxgw__malloc(&d->mem, 1400);
  mxgw_spf *spf = NULL;
  int rc = MXGW_E_NOMEM;
  if (!ans || !recs || !merged)
    goto out;
  if ((rc = mxgw_spf_new(&spf, d->res, &d->mem)))
    goto out;
  (void)mxgw_spf_set_int(spf, MXGW_SPF_OPT_TIMEOUT_MS, d->timeout_ms * 4);
  if (d->hostname)
    (void)mxgw_spf_set_str(spf, MXGW_SPF_OPT_RECEIVER, d->hostname);
  /* the domain (MAIL FROM postmaster@domain) */
  size_t nrec = 0;
  if ((rc = spf_records(d, d->domain, ans, recs, &nrec)))
    goto out;
  merged[0] = '\0';
  if (nrec > 1) {
    merge_records(recs, nrec, merged, 1400);
    mxgw__doc_fmt(concerns, sizeof concerns, "SPF records of %s (outbound)",
                  d->domain);
    mxgw__doc_fmt(finding, sizeof finding,
                  "%s publishes %zu SPF records: every evaluation gives "
                  "permerror (RFC 7208 4.5)",
                  d->domain, nrec);
    mxgw__doc_fmt(fix, sizeof fix,
                  "publish a single SPF record for %s, merging the %zu: "
                  "\"%s\"",
                  d->domain, nrec, merged);
    mxgw__doc_fmt(note, sizeof note, SPF_NOTE_FMT, d->domain, d->domain,
                  d->domain);
    mxgw_buf b = {0};
    for (size_t i = 0; i < nrec; i++)
      if (mxgw__buf_appendf(&b, &d->mem, "%srecord %zu: %s", i ? "\n" : "",
                            i + 1, recs[i]) != MXGW_OK) {
        mxgw__buf_free(&b, &d->mem);
        rc = MXGW_E_NOMEM;
        goto out;
      }
    char *det = mxgw__memdup0(&d->mem, mxgw__buf_ptr(&b), mxgw__buf_size(&b));
    mxgw__buf_free(&b, &d->mem);
    if (!det) {
      rc = MXGW_E_NOMEM;
      goto out;
    }
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_SPF, MXGW_DOCTOR_FAIL, concerns,
                       finding, fix, note, det);
    mxgw__free(&d->mem, det);
    if (rc)
      goto out;
  }
  if (!d->n_ip) {
    mxgw__doc_fmt(concerns, sizeof concerns, "SPF of %s (outbound)",
                  d->domain);
    rc = mxgw__doc_add(d, MXGW_DOCTOR_CHECK_SPF, MXGW_DOCTOR_WARN, concerns,
                       "not evaluated: the gateway's public addresses are "
                       "not known",
                       "give them with --public-ip", NULL, NULL);
    goto out;
  }
  for (size_t i = 0; i < d->n_ip; i++)
    if ((rc = spf_eval(d, spf, d->ip[i], MXGW_SPF_ID_MAILFROM, d->domain, recs,
                       nrec, merged[0] ? merged : NULL)))
      goto out;
  /* the host name (HELO identity: bounces) */
  if (d->hostname && !same_name(d->hostname, d->domain)) {
    if ((rc = spf_records(d, d->hostname, ans, recs, &nrec)))
      goto out;
    merged[0] = '\0';
    if (nrec > 1)
      merge_records(recs, nrec, merged, 1400);
    for (size_t i = 0; i < d->n_ip; i++)
      if ((rc = spf_eval(d, spf, d->ip[i], MXGW_SPF_ID_HELO, d->hostname,
                         recs, nrec, merged[0] ? merged : NULL)))
        goto out;
  }
out:
  mxgw_spf_free(spf);
  mxgw__free(&d->mem, ans);
  mxgw__free(&d->mem, recs);
  mxgw__free(&d->mem, merged);
  return rc;
}
