/* SPDX-License-Identifier: MIT */
/*
 * mxgw-doctor: find an MX gateway's silent failures in one command. It runs
 * the checks of mxgw_doctor.h (DNS, SPF for the gateway's outbound mail,
 * certificate files, a live STARTTLS probe of each listener, the LMTP
 * backend, the queue) and prints one line per finding with its status, what
 * it concerns, and the fix; or, with --json, one JSON object.
 *
 * Exit status: 0 all ok; 1 warnings; 2 failures; 64 usage error (also:
 * nothing to check); 66 the config or zone file cannot be read; 69 the DNS
 * resolver cannot start; 70 internal error.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mxgw/mxgw_doctor.h"
#include "mxgw/mxgw_resolver.h"

#define EX_USAGE_ 64
#define EX_NOINPUT_ 66
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_ 70

static void usage(FILE *f, const char *argv0) {
  fprintf(
      f,
      "usage: %s [--config FILE] [--domain D] [--hostname H]\n"
      "       [--public-ip IP]... [--listen HOST:PORT[/smtp|/submission|"
      "/smtps]]...\n"
      "       [--tls-cert F --tls-key F] [--ca-file F] [--allow-self-signed]\n"
      "       [--backend HOST:PORT|unix:PATH] [--probe-rcpt ADDR]\n"
      "       [--spool DIR] [--dns-server IP:PORT] [--zone FILE]\n"
      "       [--round-trip ADDR --log-file FILE [--round-trip-wait MS]]\n"
      "       [--timeout MS] [--only CHECK,...] [--json] [--verbose]\n"
      "       [--color auto|always|never]\n"
      "\n"
      "Checks an MX gateway and says what is wrong and how to fix it.\n"
      "  --config FILE      read domain, hostname, public IPs, listeners,\n"
      "                     certificate, backend and spool from mxgwd's JSON\n"
      "                     configuration (flags given as well override it);\n"
      "                     with no flag at all: $MXGWD_CONFIG, or\n"
      "                     /etc/mxgwd/mxgwd.json when it is readable\n"
      "  --domain D         the mail domain (DNS and SPF checks)\n"
      "  --hostname H       the gateway's public host name\n"
      "  --public-ip IP     an address the gateway receives on and sends\n"
      "                     from (repeatable)\n"
      "  --listen SPEC      a listener to probe live (repeatable); /smtp\n"
      "                     expects STARTTLS, /submission requires it before\n"
      "                     MAIL, /smtps is implicit TLS (default /smtp)\n"
      "  --tls-cert F       certificate chain file (PEM, leaf first)\n"
      "  --tls-key F        its private key\n"
      "  --ca-file F        CA certificates besides the system store\n"
      "  --allow-self-signed  a self-signed certificate is a warning only\n"
      "  --backend T        the LMTP backend: connect and LHLO\n"
      "  --probe-rcpt ADDR  also deliver a small probe message to ADDR\n"
      "  --spool DIR        the gateway's queue directory\n"
      "  --round-trip ADDR  send a test message to ADDR through the first\n"
      "                     smtp/smtps listener and wait for its delivery\n"
      "                     line (status=sent) in --log-file\n"
      "  --log-file FILE    the gateway's log (mxgwd's text or json format)\n"
      "  --round-trip-wait MS  how long to wait for it (default 30000)\n"
      "  --dns-server S     ask this DNS server (IP or IP:PORT)\n"
      "  --zone FILE        answer DNS from this zone file instead\n"
      "  --timeout MS       limit of each network step (default 5000)\n"
      "  --only LIST        run only these checks: dns,spf,cert,listener,\n"
      "                     backend,queue,roundtrip\n"
      "  --json             print one JSON object\n"
      "  --verbose          print every finding's detail lines\n"
      "  --color WHEN       colour the status (default: on a terminal)\n"
      "\n"
      "Exit status: 0 all ok, 1 warnings, 2 failures, 64 usage error.\n",
      argv0);
}

enum {
  O_DOMAIN = 256,
  O_HOSTNAME,
  O_PUBLIC_IP,
  O_LISTEN,
  O_TLS_CERT,
  O_TLS_KEY,
  O_CA_FILE,
  O_SELF_SIGNED,
  O_BACKEND,
  O_PROBE_RCPT,
  O_SPOOL,
  O_DNS_SERVER,
  O_ZONE,
  O_TIMEOUT,
  O_ONLY,
  O_JSON,
  O_VERBOSE,
  O_COLOR,
  O_CONFIG,
  O_HELP,
  O_ROUND_TRIP,
  O_LOG_FILE,
  O_RT_WAIT
};

static int set(mxgw_doctor *d, int key, const char *v, const char *flag) {
  int rc = mxgw_doctor_set_str(d, key, v);
  if (rc != MXGW_OK) {
    const char *m = mxgw_doctor_errmsg(d);
    fprintf(stderr, "mxgw-doctor: %s: %s\n", flag, *m ? m : mxgw_strerror(rc));
    return -1;
  }
  return 0;
}

/* mxgwd's configuration (docs/mxgwd.md, tools/mxgwd/config.c): only the
 * keys the doctor needs, read leniently so that a configuration mxgwd
 * refuses can still be diagnosed:
 *   hostname; domains[] (the first one without a wildcard); listeners[]
 *   {address, port, mode, tls {cert_file, key_file}, proxy_protocol};
 *   spool.directory; lmtp.backends[0]; spf.dns_servers[0]; the first
 *   logging.outputs[] with destination "file" (its path, for the round
 *   trip).
 * Relative paths are resolved against the configuration file's directory,
 * as mxgwd does. Flags given on the command line win (`given`: one bit per
 * option set by a flag). */
static const char *jstr(json_t *o, const char *k) {
  json_t *v = o ? json_object_get(o, k) : NULL;
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static void resolve(const char *base, const char *s, char *buf, size_t cap) {
  if (s[0] == '/' || !base[0])
    snprintf(buf, cap, "%s", s);
  else
    snprintf(buf, cap, "%s/%s", base, s);
}

static int load_config(mxgw_doctor *d, const char *file, unsigned given,
                       int *warned) {
  json_error_t je;
  json_t *root = json_load_file(file, 0, &je);
  if (!root) {
    fprintf(stderr, "mxgw-doctor: --config %s: line %d: %s\n", file, je.line,
            je.text);
    return EX_NOINPUT_;
  }
  char base[4096], path[4096], spec[600];
  const char *slash = strrchr(file, '/');
  snprintf(base, sizeof base, "%.*s", slash ? (int)(slash - file) : 0, file);
  if (slash && slash == file)
    snprintf(base, sizeof base, "/");
  int rc = 0;
  const char *s;
  size_t i;
  json_t *v;
#define GIVEN(k) (given & (1u << (k)))
  if (!GIVEN(MXGW_DOCTOR_OPT_HOSTNAME) && (s = jstr(root, "hostname")))
    rc |= set(d, MXGW_DOCTOR_OPT_HOSTNAME, s, "config hostname");
  if (!GIVEN(MXGW_DOCTOR_OPT_DOMAIN)) {
    json_array_foreach(json_object_get(root, "domains"), i, v) {
      if (json_is_string(v) && json_string_value(v)[0] != '*') {
        rc |= set(d, MXGW_DOCTOR_OPT_DOMAIN, json_string_value(v),
                  "config domains");
        break;
      }
    }
  }
  int have_cert = GIVEN(MXGW_DOCTOR_OPT_TLS_CERT);
  json_array_foreach(json_object_get(root, "listeners"), i, v) {
    const char *addr = jstr(v, "address"), *mode = jstr(v, "mode");
    json_t *tls = json_object_get(v, "tls");
    if (!mode)
      mode = "smtp";
    json_t *pj = json_object_get(v, "port");
    long port = json_is_integer(pj) ? (long)json_integer_value(pj)
                : !strcmp(mode, "submission") ? 587
                : !strcmp(mode, "smtps")      ? 465
                                              : 25;
    if (!have_cert && (s = jstr(tls, "cert_file"))) {
      resolve(base, s, path, sizeof path);
      rc |= set(d, MXGW_DOCTOR_OPT_TLS_CERT, path, "config tls.cert_file");
      if (!GIVEN(MXGW_DOCTOR_OPT_TLS_KEY) && (s = jstr(tls, "key_file"))) {
        resolve(base, s, path, sizeof path);
        rc |= set(d, MXGW_DOCTOR_OPT_TLS_KEY, path, "config tls.key_file");
      }
      have_cert = 1;
    }
    if (GIVEN(MXGW_DOCTOR_OPT_LISTEN) || !addr)
      continue;
    if (json_is_true(json_object_get(v, "proxy_protocol"))) {
      fprintf(stderr,
              "mxgw-doctor: listeners[%zu] (%s:%ld) expects a PROXY header: "
              "not probed (give --listen for the address in front of it)\n",
              i, addr, port);
      *warned = 1;
      continue;
    }
    /* a wildcard address is probed on the loopback */
    if (!strcmp(addr, "0.0.0.0"))
      addr = "127.0.0.1";
    else if (!strcmp(addr, "::"))
      addr = "::1";
    snprintf(spec, sizeof spec, strchr(addr, ':') ? "[%s]:%ld/%s"
                                                  : "%s:%ld/%s",
             addr, port, mode);
    rc |= set(d, MXGW_DOCTOR_OPT_LISTEN, spec, "config listeners");
  }
  json_t *bs = json_object_get(json_object_get(root, "lmtp"), "backends");
  if (!GIVEN(MXGW_DOCTOR_OPT_BACKEND) &&
      (s = json_string_value(json_array_get(bs, 0)))) {
    if (s[0] == '/')
      snprintf(spec, sizeof spec, "unix:%s", s);
    else
      snprintf(spec, sizeof spec, "%s", s);
    rc |= set(d, MXGW_DOCTOR_OPT_BACKEND, spec, "config lmtp.backends");
  }
  if (!GIVEN(MXGW_DOCTOR_OPT_SPOOL) &&
      (s = jstr(json_object_get(root, "spool"), "directory"))) {
    resolve(base, s, path, sizeof path);
    rc |= set(d, MXGW_DOCTOR_OPT_SPOOL, path, "config spool.directory");
  }
  json_t *outs = json_object_get(json_object_get(root, "logging"), "outputs");
  json_array_foreach(outs, i, v) {
    if (GIVEN(MXGW_DOCTOR_OPT_LOG_FILE))
      break;
    const char *dest = jstr(v, "destination");
    if (dest && !strcmp(dest, "file") && (s = jstr(v, "path"))) {
      resolve(base, s, path, sizeof path);
      rc |= set(d, MXGW_DOCTOR_OPT_LOG_FILE, path, "config logging");
      break;
    }
  }
  json_t *ds = json_object_get(json_object_get(root, "spf"), "dns_servers");
  if (!GIVEN(MXGW_DOCTOR_OPT_DNS_SERVER) &&
      (s = json_string_value(json_array_get(ds, 0))))
    rc |= set(d, MXGW_DOCTOR_OPT_DNS_SERVER, s, "config spf.dns_servers");
#undef GIVEN
  json_decref(root);
  return rc ? EX_USAGE_ : 0;
}

static int parse_only(const char *s) {
  static const struct {
    const char *name;
    int bit;
  } t[] = {{"dns", MXGW_DOCTOR_CHECK_DNS},
           {"spf", MXGW_DOCTOR_CHECK_SPF},
           {"cert", MXGW_DOCTOR_CHECK_CERT},
           {"listener", MXGW_DOCTOR_CHECK_LISTENER},
           {"backend", MXGW_DOCTOR_CHECK_BACKEND},
           {"queue", MXGW_DOCTOR_CHECK_QUEUE},
           {"roundtrip", MXGW_DOCTOR_CHECK_ROUND_TRIP}};
  int bits = 0;
  while (*s) {
    size_t l = strcspn(s, ",");
    int found = 0;
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
      if (strlen(t[i].name) == l && !strncmp(s, t[i].name, l)) {
        bits |= t[i].bit;
        found = 1;
      }
    if (!found)
      return -1;
    s += l;
    if (*s == ',')
      s++;
  }
  return bits;
}

static const char *sget(mxgw_doctor *d, size_t i, int key) {
  const char *p = "";
  size_t l;
  if (mxgw_doctor_get_str(d, i, key, &p, &l) != MXGW_OK)
    return "";
  return p;
}

static void print_lines(const char *prefix, const char *text) {
  const char *p = text;
  while (*p) {
    const char *e = strchr(p, '\n');
    int l = (int)(e ? e - p : (long)strlen(p));
    printf("%s%.*s\n", prefix, l, p);
    p += l + (e ? 1 : 0);
  }
}

static void print_table(mxgw_doctor *d, int color, int verbose) {
  static const char *const word[] = {"OK", "WARN", "FAIL"};
  static const char *const col[] = {"\033[1;32m", "\033[1;33m", "\033[1;31m"};
  size_t n = mxgw_doctor_count(d), cnt[3] = {0, 0, 0};
  const char *pad = "                  ";
  char last_note[1024] = "";
  for (size_t i = 0; i < n; i++) {
    int64_t st = 0;
    (void)mxgw_doctor_get_int(d, i, MXGW_DOCTOR_F_STATUS, &st);
    if (st < 0 || st > 2)
      st = 2;
    cnt[st]++;
    const char *check = sget(d, i, MXGW_DOCTOR_F_CHECK);
    if (color)
      printf("%s%-4s\033[0m  ", col[st], word[st]);
    else
      printf("%-4s  ", word[st]);
    printf("%-10s  %s\n", check, sget(d, i, MXGW_DOCTOR_F_CONCERNS));
    printf("%s%s\n", pad, sget(d, i, MXGW_DOCTOR_F_FINDING));
    const char *fix = sget(d, i, MXGW_DOCTOR_F_FIX);
    if (*fix)
      printf("%sfix: %s\n", pad, fix);
    const char *note = sget(d, i, MXGW_DOCTOR_F_NOTE);
    if (*note && strcmp(note, last_note)) {
      printf("%snote: %s\n", pad, note);
      snprintf(last_note, sizeof last_note, "%s", note);
    }
    const char *det = sget(d, i, MXGW_DOCTOR_F_DETAIL);
    if (*det && (verbose || st != 0 || !strcmp(check, "spf"))) {
      printf("%s%s:\n", pad,
             !strcmp(check, "spf") && !strncmp(det, "query", 5) ? "trace"
                                                                 : "detail");
      print_lines("                    ", det);
    }
  }
  int ex = cnt[2] ? 2 : cnt[1] ? 1 : 0;
  printf("\n%zu ok, %zu warning%s, %zu failure%s: exit %d\n", cnt[0], cnt[1],
         cnt[1] == 1 ? "" : "s", cnt[2], cnt[2] == 1 ? "" : "s", ex);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"domain", required_argument, NULL, O_DOMAIN},
      {"hostname", required_argument, NULL, O_HOSTNAME},
      {"public-ip", required_argument, NULL, O_PUBLIC_IP},
      {"listen", required_argument, NULL, O_LISTEN},
      {"tls-cert", required_argument, NULL, O_TLS_CERT},
      {"tls-key", required_argument, NULL, O_TLS_KEY},
      {"ca-file", required_argument, NULL, O_CA_FILE},
      {"allow-self-signed", no_argument, NULL, O_SELF_SIGNED},
      {"backend", required_argument, NULL, O_BACKEND},
      {"probe-rcpt", required_argument, NULL, O_PROBE_RCPT},
      {"spool", required_argument, NULL, O_SPOOL},
      {"dns-server", required_argument, NULL, O_DNS_SERVER},
      {"zone", required_argument, NULL, O_ZONE},
      {"timeout", required_argument, NULL, O_TIMEOUT},
      {"only", required_argument, NULL, O_ONLY},
      {"json", no_argument, NULL, O_JSON},
      {"verbose", no_argument, NULL, O_VERBOSE},
      {"color", required_argument, NULL, O_COLOR},
      {"config", required_argument, NULL, O_CONFIG},
      {"help", no_argument, NULL, O_HELP},
      {"round-trip", required_argument, NULL, O_ROUND_TRIP},
      {"log-file", required_argument, NULL, O_LOG_FILE},
      {"round-trip-wait", required_argument, NULL, O_RT_WAIT},
      {NULL, 0, NULL, 0}};
  mxgw_doctor *d = NULL;
  if (mxgw_doctor_new(&d, NULL) != MXGW_OK) {
    fprintf(stderr, "mxgw-doctor: out of memory\n");
    return EX_SOFTWARE_;
  }
  const char *config = NULL, *zone = NULL;
  int json = 0, verbose = 0, color = -1, checks = MXGW_DOCTOR_CHECK_ALL;
  unsigned given = 0;
  int c, bad = 0;
  while (!bad && (c = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
    int key = 0;
    const char *flag = NULL;
    switch (c) {
    case O_DOMAIN: key = MXGW_DOCTOR_OPT_DOMAIN; flag = "--domain"; break;
    case O_HOSTNAME: key = MXGW_DOCTOR_OPT_HOSTNAME; flag = "--hostname"; break;
    case O_PUBLIC_IP: key = MXGW_DOCTOR_OPT_PUBLIC_IP; flag = "--public-ip"; break;
    case O_LISTEN: key = MXGW_DOCTOR_OPT_LISTEN; flag = "--listen"; break;
    case O_TLS_CERT: key = MXGW_DOCTOR_OPT_TLS_CERT; flag = "--tls-cert"; break;
    case O_TLS_KEY: key = MXGW_DOCTOR_OPT_TLS_KEY; flag = "--tls-key"; break;
    case O_CA_FILE: key = MXGW_DOCTOR_OPT_CA_FILE; flag = "--ca-file"; break;
    case O_BACKEND: key = MXGW_DOCTOR_OPT_BACKEND; flag = "--backend"; break;
    case O_PROBE_RCPT: key = MXGW_DOCTOR_OPT_PROBE_RCPT; flag = "--probe-rcpt"; break;
    case O_SPOOL: key = MXGW_DOCTOR_OPT_SPOOL; flag = "--spool"; break;
    case O_DNS_SERVER: key = MXGW_DOCTOR_OPT_DNS_SERVER; flag = "--dns-server"; break;
    case O_ROUND_TRIP: key = MXGW_DOCTOR_OPT_ROUND_TRIP_RCPT; flag = "--round-trip"; break;
    case O_LOG_FILE: key = MXGW_DOCTOR_OPT_LOG_FILE; flag = "--log-file"; break;
    case O_RT_WAIT: {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (!*optarg || *end ||
          mxgw_doctor_set_int(d, MXGW_DOCTOR_OPT_ROUND_TRIP_WAIT_MS, v) !=
              MXGW_OK) {
        fprintf(stderr, "mxgw-doctor: --round-trip-wait: want 1..3600000 "
                        "ms\n");
        bad = 1;
      }
      break;
    }
    case O_SELF_SIGNED:
      (void)mxgw_doctor_set_int(d, MXGW_DOCTOR_OPT_ALLOW_SELF_SIGNED, 1);
      break;
    case O_ZONE: zone = optarg; break;
    case O_CONFIG: config = optarg; break;
    case O_JSON: json = 1; break;
    case 'v':
    case O_VERBOSE: verbose = 1; break;
    case O_TIMEOUT: {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (!*optarg || *end ||
          mxgw_doctor_set_int(d, MXGW_DOCTOR_OPT_TIMEOUT_MS, v) != MXGW_OK) {
        fprintf(stderr, "mxgw-doctor: --timeout: want 1..600000 ms\n");
        bad = 1;
      }
      break;
    }
    case O_ONLY:
      if ((checks = parse_only(optarg)) <= 0) {
        fprintf(stderr, "mxgw-doctor: --only: want dns,spf,cert,listener,"
                        "backend,queue,roundtrip\n");
        bad = 1;
      }
      break;
    case O_COLOR:
      if (!strcmp(optarg, "always"))
        color = 1;
      else if (!strcmp(optarg, "never"))
        color = 0;
      else if (!strcmp(optarg, "auto"))
        color = -1;
      else {
        fprintf(stderr, "mxgw-doctor: --color: want auto, always or never\n");
        bad = 1;
      }
      break;
    case O_HELP:
      usage(stdout, argv[0]);
      mxgw_doctor_free(d);
      return 0;
    default:
      bad = 1;
      break;
    }
    if (key) {
      given |= 1u << key;
      if (set(d, key, optarg, flag))
        bad = 1;
    }
  }
  if (bad || optind != argc) {
    if (!bad)
      fprintf(stderr, "mxgw-doctor: unexpected argument '%s'\n", argv[optind]);
    usage(stderr, argv[0]);
    mxgw_doctor_free(d);
    return EX_USAGE_;
  }
  if (!config && !given && !zone) {
    /* Bare `mxgw-doctor` on a gateway host: mxgwd's configuration from
     * $MXGWD_CONFIG or its documented place, when there is one. */
    const char *dflt = getenv("MXGWD_CONFIG");
    if (!dflt || !*dflt)
      dflt = "/etc/mxgwd/mxgwd.json";
    if (access(dflt, R_OK) == 0) {
      config = dflt;
      if (!json)
        fprintf(stderr, "mxgw-doctor: using %s\n", dflt);
    }
  }
  if (config) {
    int warned = 0;
    int rc = load_config(d, config, given, &warned);
    if (rc) {
      mxgw_doctor_free(d);
      return rc;
    }
  }
  mxgw_resolver *zr = NULL;
  if (zone) {
    int rc = mxgw_resolver_new_static(&zr, NULL);
    if (rc == MXGW_OK)
      rc = mxgw_resolver_load_zone_file(zr, zone, NULL);
    if (rc != MXGW_OK) {
      fprintf(stderr, "mxgw-doctor: --zone %s: %s\n", zone,
              zr ? mxgw_resolver_errmsg(zr) : mxgw_strerror(rc));
      mxgw_resolver_free(zr);
      mxgw_doctor_free(d);
      return EX_NOINPUT_;
    }
    (void)mxgw_doctor_set_resolver(d, zr);
  }
  int worst = mxgw_doctor_run(d, checks);
  int ex;
  if (worst < 0) {
    fprintf(stderr, "mxgw-doctor: %s\n", *mxgw_doctor_errmsg(d)
                                             ? mxgw_doctor_errmsg(d)
                                             : mxgw_strerror(worst));
    ex = worst == MXGW_E_STATE ? EX_USAGE_
         : worst == MXGW_E_DNS ? EX_UNAVAILABLE_
                               : EX_SOFTWARE_;
    if (worst == MXGW_E_STATE)
      usage(stderr, argv[0]);
  } else {
    ex = worst;
    if (json) {
      const char *p;
      size_t l;
      if (mxgw_doctor_json(d, &p, &l) != MXGW_OK) {
        fprintf(stderr, "mxgw-doctor: out of memory\n");
        ex = EX_SOFTWARE_;
      } else {
        fwrite(p, 1, l, stdout);
        putchar('\n');
      }
    } else {
      if (color < 0) {
        const char *term = getenv("TERM");
        color = isatty(STDOUT_FILENO) && !getenv("NO_COLOR") &&
                !(term && !strcmp(term, "dumb"));
      }
      print_table(d, color, verbose);
    }
  }
  mxgw_doctor_free(d);
  mxgw_resolver_free(zr);
  return ex;
}
