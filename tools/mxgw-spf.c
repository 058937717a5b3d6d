/* SPDX-License-Identifier: MIT */
/*
 * mxgw-spf: check whether an SPF record authorizes a client address, and
 * show why. It runs one RFC 7208 evaluation with libmxgw, over real DNS
 * (c-ares; the servers of /etc/resolv.conf or --dns-server) or over a zone
 * file loaded into the static resolver (--zone, for "what if I publish this
 * record" checks), and prints the result, the term that decided it, the
 * explanation or the problem, the counters against the RFC 7208 limits,
 * the trace of every lookup and term (indented by include depth), and the
 * Received-SPF and Authentication-Results header lines; or, with --json,
 * the check as one JSON object.
 *
 * Exit status: 0 pass; 1 fail, softfail, neutral or none; 2 temperror or
 * permerror; 64 usage error; 66 the zone file cannot be loaded; 69 the
 * resolver cannot start; 70 internal error.
 */
#define _POSIX_C_SOURCE 200809L /* gethostname */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mxgw/mxgw_resolver.h"
#include "mxgw/mxgw_spf.h"

#define EX_OK_PASS 0
#define EX_NOT_PASS 1
#define EX_SPF_ERROR 2
#define EX_USAGE_ 64
#define EX_NOINPUT_ 66
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_ 70

static void usage(FILE *f, const char *argv0) {
  fprintf(f,
          "usage: %s --ip IP --sender ADDR [--helo NAME] [--zone FILE]\n"
          "       [--dns-server IP:PORT[,IP:PORT...]] [--json] [--trace]\n"
          "       [--identity mailfrom|helo] [--timeout MS] [--receiver NAME]\n"
          "\n"
          "Evaluates SPF (RFC 7208) for the client IP and the sender, and\n"
          "explains the result.\n"
          "  --ip IP            the client address (IPv4 or IPv6)\n"
          "  --sender ADDR      the MAIL FROM address (\"\" for the null sender,\n"
          "                     which checks postmaster@HELO)\n"
          "  --helo NAME        the HELO/EHLO name\n"
          "  --identity ID      mailfrom (default) or helo\n"
          "  --zone FILE        answer from this RFC 1035 zone file, not DNS\n"
          "  --dns-server S     ask these servers (IP, IP:PORT, [IPv6]:PORT);\n"
          "                     default: /etc/resolv.conf\n"
          "  --timeout MS       DNS timeout of the first try in ms (default\n"
          "                     2000; the second try waits twice as long);\n"
          "                     the evaluation as a whole stops at 20 s\n"
          "  --receiver NAME    our host name, for the headers (default: the\n"
          "                     host name of this machine)\n"
          "  --json             print the check as one JSON object\n"
          "  --trace            print the trace (the default; kept for scripts)\n"
          "  --help             this text\n"
          "\n"
          "Exit status: 0 pass; 1 fail, softfail, neutral, none; 2 temperror,\n"
          "permerror; 64 usage error; 66 zone file unusable; 69 resolver\n"
          "cannot start; 70 internal error.\n",
          argv0);
}

/* Print `s` of length n with non-printable bytes as \xHH. */
static void put_clean(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f)
      putchar(c);
    else
      printf("\\x%02X", c);
  }
}

static void print_str(const mxgw_spf_check *chk, int key, const char *label) {
  const char *p;
  size_t n;
  if (mxgw_spf_check_get_str(chk, key, &p, &n) != MXGW_OK)
    return;
  printf("%-12s ", label);
  put_clean(p, n);
  putchar('\n');
}

static int64_t get_int(const mxgw_spf_check *chk, int key) {
  int64_t v = 0;
  (void)mxgw_spf_check_get_int(chk, key, &v);
  return v;
}

static int64_t get_opt(const mxgw_spf *spf, int key) {
  int64_t v = 0;
  (void)mxgw_spf_get_int(spf, key, &v);
  return v;
}

/* Header fields end in CRLF and fold with CRLF + white space: print them
 * with plain newlines. */
static void print_header(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != '\r')
      putchar(p[i]);
  if (n == 0 || p[n - 1] != '\n')
    putchar('\n');
}

static void print_report(const mxgw_spf *spf, mxgw_spf_check *chk,
                         const char *receiver) {
  int res = mxgw_spf_check_result(chk);
  printf("%-12s %s\n", "result:", mxgw_spf_result_name(res));
  print_str(chk, MXGW_SPF_INFO_IDENTITY, "identity:");
  print_str(chk, MXGW_SPF_INFO_CLIENT_IP, "client-ip:");
  print_str(chk, MXGW_SPF_INFO_SENDER, "sender:");
  print_str(chk, MXGW_SPF_INFO_HELO, "helo:");
  print_str(chk, MXGW_SPF_INFO_CHECKED_DOMAIN, "checked:");
  print_str(chk, MXGW_SPF_INFO_DOMAIN, "domain:");
  print_str(chk, MXGW_SPF_INFO_MECHANISM, "mechanism:");
  print_str(chk, MXGW_SPF_INFO_EXPLANATION, "explanation:");
  print_str(chk, MXGW_SPF_INFO_PROBLEM, "problem:");
  printf("%-12s dns-terms %lld/%lld, void-lookups %lld/%lld, "
         "mx-names %lld/%lld, ptr-names %lld/%lld, dns-queries %lld\n",
         "counts:", (long long)get_int(chk, MXGW_SPF_INFO_DNS_TERMS),
         (long long)get_opt(spf, MXGW_SPF_OPT_MAX_DNS_TERMS),
         (long long)get_int(chk, MXGW_SPF_INFO_VOID_LOOKUPS),
         (long long)get_opt(spf, MXGW_SPF_OPT_MAX_VOID_LOOKUPS),
         (long long)get_int(chk, MXGW_SPF_INFO_MX_NAMES),
         (long long)get_opt(spf, MXGW_SPF_OPT_MAX_MX_NAMES),
         (long long)get_int(chk, MXGW_SPF_INFO_PTR_NAMES),
         (long long)get_opt(spf, MXGW_SPF_OPT_MAX_PTR_NAMES),
         (long long)get_int(chk, MXGW_SPF_INFO_DNS_QUERIES));

  size_t nt = mxgw_spf_check_trace_count(chk);
  printf("trace:\n");
  for (size_t i = 0; i < nt; i++) {
    int depth = 0, kind = 0;
    const char *p;
    size_t n;
    if (mxgw_spf_check_trace(chk, i, &depth, &kind, &p, &n) != MXGW_OK)
      continue;
    printf("  %*s%-6s ", depth * 4, "", mxgw_spf_trace_kind_name(kind));
    put_clean(p, n);
    putchar('\n');
  }

  int code = 0;
  const char *enh = NULL, *text;
  size_t tl;
  if (mxgw_spf_check_reply(chk, 1, &code, &enh, &text, &tl) == MXGW_OK) {
    if (code) {
      printf("%-12s %d %s ", "smtp-reply:", code, enh ? enh : "");
      put_clean(text, tl);
      printf(res == MXGW_SPF_PERMERROR ? " (if permerror rejects)\n" : "\n");
    } else {
      printf("%-12s accept, add the headers\n", "smtp-reply:");
    }
  }

  const char *h;
  size_t hl;
  printf("\n");
  if (mxgw_spf_check_received_spf(chk, &h, &hl) == MXGW_OK)
    print_header(h, hl);
  if (mxgw_spf_check_auth_results(chk, receiver, &h, &hl) == MXGW_OK)
    print_header(h, hl);
}

/* A host name usable as receiver and authserv-id (a token, RFC 2045). */
static int token_ok(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c))
      return 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  const char *ip = NULL, *sender = NULL, *helo = NULL, *zone = NULL;
  const char *servers = NULL, *receiver = NULL;
  int json = 0, identity = MXGW_SPF_ID_MAILFROM;
  long timeout_ms = -1;
  enum { O_IP = 1, O_SENDER, O_HELO, O_ZONE, O_DNS, O_JSON, O_TRACE, O_ID,
         O_TIMEOUT, O_RECEIVER, O_HELP };
  static const struct option longopts[] = {
      {"ip", required_argument, NULL, O_IP},
      {"sender", required_argument, NULL, O_SENDER},
      {"helo", required_argument, NULL, O_HELO},
      {"zone", required_argument, NULL, O_ZONE},
      {"dns-server", required_argument, NULL, O_DNS},
      {"json", no_argument, NULL, O_JSON},
      {"trace", no_argument, NULL, O_TRACE},
      {"identity", required_argument, NULL, O_ID},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"receiver", required_argument, NULL, O_RECEIVER},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0}};
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    char *end;
    switch (c) {
    case O_IP: ip = optarg; break;
    case O_SENDER: sender = optarg; break;
    case O_HELO: helo = optarg; break;
    case O_ZONE: zone = optarg; break;
    case O_DNS: servers = optarg; break;
    case O_JSON: json = 1; break;
    case O_TRACE: break;
    case O_RECEIVER: receiver = optarg; break;
    case O_ID:
      if (strcmp(optarg, "mailfrom") == 0) {
        identity = MXGW_SPF_ID_MAILFROM;
      } else if (strcmp(optarg, "helo") == 0) {
        identity = MXGW_SPF_ID_HELO;
      } else {
        fprintf(stderr, "mxgw-spf: --identity must be mailfrom or helo\n");
        return EX_USAGE_;
      }
      break;
    case O_TIMEOUT:
      errno = 0;
      timeout_ms = strtol(optarg, &end, 10);
      if (errno || *end || end == optarg || timeout_ms < 1 || timeout_ms > 600000) {
        fprintf(stderr, "mxgw-spf: --timeout wants 1..600000 ms\n");
        return EX_USAGE_;
      }
      break;
    case O_HELP:
      usage(stdout, argv[0]);
      return 0;
    default:
      fprintf(stderr, "mxgw-spf: unknown option or missing value: %s\n",
              argv[optind - 1]);
      usage(stderr, argv[0]);
      return EX_USAGE_;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "mxgw-spf: unexpected argument: %s\n", argv[optind]);
    return EX_USAGE_;
  }
  if (!ip || (!sender && identity == MXGW_SPF_ID_MAILFROM) ||
      (identity == MXGW_SPF_ID_HELO && (!helo || !*helo))) {
    fprintf(stderr, "mxgw-spf: need --ip and --sender (or --identity helo "
                    "with --helo)\n");
    usage(stderr, argv[0]);
    return EX_USAGE_;
  }
  if (zone && servers) {
    fprintf(stderr, "mxgw-spf: --zone and --dns-server exclude each other\n");
    return EX_USAGE_;
  }
  if (sender && !*sender && (!helo || !*helo)) {
    fprintf(stderr, "mxgw-spf: the null sender needs --helo\n");
    return EX_USAGE_;
  }
  char host[256];
  if (!receiver) {
    if (gethostname(host, sizeof host) != 0 || (host[sizeof host - 1] = 0, !token_ok(host)))
      snprintf(host, sizeof host, "localhost");
    receiver = host;
  } else if (!token_ok(receiver)) {
    fprintf(stderr, "mxgw-spf: --receiver must be a host name\n");
    return EX_USAGE_;
  }

  mxgw_resolver *r = NULL;
  int rv;
  if (zone) {
    rv = mxgw_resolver_new_static(&r, NULL);
    if (rv != MXGW_OK) {
      fprintf(stderr, "mxgw-spf: static resolver: %s\n", mxgw_strerror(rv));
      return EX_SOFTWARE_;
    }
    rv = mxgw_resolver_load_zone_file(r, zone, NULL);
    if (rv != MXGW_OK) {
      fprintf(stderr, "mxgw-spf: %s: %s\n", zone, mxgw_resolver_errmsg(r));
      mxgw_resolver_free(r);
      return EX_NOINPUT_;
    }
  } else {
    char sv[1024], to[32];
    const char *opts[3];
    int n = 0;
    if (servers) {
      if (snprintf(sv, sizeof sv, "servers=%s", servers) >= (int)sizeof sv) {
        fprintf(stderr, "mxgw-spf: --dns-server is too long\n");
        return EX_USAGE_;
      }
      opts[n++] = sv;
    }
    if (timeout_ms > 0) {
      snprintf(to, sizeof to, "timeout_ms=%ld", timeout_ms);
      opts[n++] = to;
    }
    opts[n] = NULL;
    rv = mxgw_resolver_new_ares(&r, opts, NULL);
    if (rv == MXGW_E_INVAL) {
      fprintf(stderr, "mxgw-spf: bad --dns-server \"%s\" (IP, IP:PORT or "
                      "[IPv6]:PORT, comma-separated)\n",
              servers ? servers : "");
      return EX_USAGE_;
    }
    if (rv != MXGW_OK) {
      fprintf(stderr, "mxgw-spf: cannot start the DNS resolver: %s\n",
              mxgw_strerror(rv));
      return EX_UNAVAILABLE_;
    }
  }

  mxgw_spf *spf = NULL;
  rv = mxgw_spf_new(&spf, r, NULL);
  if (rv == MXGW_OK)
    rv = mxgw_spf_set_str(spf, MXGW_SPF_OPT_RECEIVER, receiver);
  if (rv != MXGW_OK) {
    fprintf(stderr, "mxgw-spf: %s\n", mxgw_strerror(rv));
    mxgw_spf_free(spf);
    mxgw_resolver_free(r);
    return EX_SOFTWARE_;
  }

  mxgw_spf_check *chk = NULL;
  rv = mxgw_spf_check_sync(spf, ip, helo, sender, identity, &chk);
  if (rv != MXGW_OK) {
    int ex = rv == MXGW_E_INVAL ? EX_USAGE_ : EX_SOFTWARE_;
    if (rv == MXGW_E_INVAL)
      fprintf(stderr, "mxgw-spf: bad input (--ip must be an IPv4 or IPv6 "
                      "address; --sender and --helo without control "
                      "characters, at most 1024 octets)\n");
    else
      fprintf(stderr, "mxgw-spf: %s\n", mxgw_strerror(rv));
    mxgw_spf_check_free(chk);
    mxgw_spf_free(spf);
    mxgw_resolver_free(r);
    return ex;
  }

  int res = mxgw_spf_check_result(chk);
  int ex = EX_SOFTWARE_;
  if (json) {
    const char *p;
    size_t n;
    if (mxgw_spf_check_json(chk, &p, &n) == MXGW_OK) {
      fwrite(p, 1, n, stdout);
      if (n == 0 || p[n - 1] != '\n')
        putchar('\n');
    } else {
      fprintf(stderr, "mxgw-spf: cannot render JSON\n");
      res = -1;
    }
  } else {
    print_report(spf, chk, receiver);
  }
  switch (res) {
  case MXGW_SPF_PASS:
    ex = EX_OK_PASS;
    break;
  case MXGW_SPF_FAIL:
  case MXGW_SPF_SOFTFAIL:
  case MXGW_SPF_NEUTRAL:
  case MXGW_SPF_NONE:
    ex = EX_NOT_PASS;
    break;
  case MXGW_SPF_TEMPERROR:
  case MXGW_SPF_PERMERROR:
    ex = EX_SPF_ERROR;
    break;
  default:
    break;
  }
  if (fflush(stdout) != 0)
    ex = EX_SOFTWARE_;
  mxgw_spf_check_free(chk);
  mxgw_spf_free(spf);
  mxgw_resolver_free(r);
  return ex;
}
