/* SPDX-License-Identifier: MIT */
/*
 * test_mxgwd_config.c: Criterion unit tests of mxgwd's configuration parser
 * (tools/mxgwd/config.c): every kind of error gives its key path and an
 * exact message, every error is reported (not just the first), defaults are
 * applied, and the file checks (certificates through mxgw_tls, key modes,
 * directories) name the file. Pure parsing runs with checks = 0; the file
 * checks use files made in a temporary directory.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

#define MIN_OK                                                                 \
  "\"hostname\": \"mx.example.org\",\n"                                        \
  "\"listeners\": [{\"address\": \"127.0.0.1\", \"port\": 2525}],\n"           \
  "\"domains\": [\"example.org\"],\n"                                          \
  "\"spool\": {\"directory\": \"/tmp/spool\"},\n"                              \
  "\"lmtp\": {\"backends\": [\"127.0.0.1:24\"]}"

static mxgwd_msgs errs, warns;
static mxgwd_config *cfg;

static int parse(const char *text, unsigned checks, const char *base) {
  mxgwd_msgs_free(&errs);
  mxgwd_msgs_free(&warns);
  mxgwd_config_free(cfg);
  cfg = NULL;
  return mxgwd_config_parse(text, strlen(text), base, checks, &cfg, &errs,
                            &warns);
}

static void fini(void) {
  mxgwd_msgs_free(&errs);
  mxgwd_msgs_free(&warns);
  mxgwd_config_free(cfg);
  cfg = NULL;
}

/* Is `want` one of the errors, exactly? */
static bool has_error(const char *want) {
  for (size_t i = 0; i < errs.n; i++)
    if (strcmp(errs.v[i], want) == 0)
      return true;
  return false;
}

static void dump(void) {
  for (size_t i = 0; i < errs.n; i++)
    cr_log_info("error: %s", errs.v[i]);
}

#define EXPECT_ERROR(text, msg)                                                \
  do {                                                                         \
    cr_assert_eq(parse(text, 0, "/etc/mxgwd"), -1);                            \
    if (!has_error(msg))                                                       \
      dump();                                                                  \
    cr_assert(has_error(msg), "missing error: %s", msg);                       \
  } while (0)

TestSuite(config, .fini = fini);

Test(config, minimal_valid_config_gets_every_default) {
  int rv = parse("{" MIN_OK "}", 0, "/etc/mxgwd");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(errs.n, 0);
  cr_assert_str_eq(cfg->hostname, "mx.example.org");
  cr_assert_eq(cfg->n_listeners, 1);
  cr_assert_eq(cfg->listeners[0].mode, MXGWD_MODE_SMTP);
  cr_assert_eq(cfg->listeners[0].tls_policy, MXGWD_TLS_NONE);
  cr_assert_eq(cfg->listeners[0].proxy_protocol, false);
  cr_assert_eq(cfg->limits.max_connections, 1000);
  cr_assert_eq(cfg->limits.max_connections_per_ip, 20);
  cr_assert_eq(cfg->limits.max_message_size, 67108864);
  cr_assert_eq(cfg->limits.greeting_delay_ms, 0);
  cr_assert_eq(cfg->spool.max_lifetime_ms, 5LL * 86400 * 1000);
  cr_assert_eq(cfg->spool.backoff_initial_ms, 60000);
  cr_assert_eq(cfg->spool.backoff_max_ms, 3600000);
  cr_assert_eq(cfg->spool.sync, true);
  cr_assert_eq(cfg->spool.commit_workers, 16);
  cr_assert_eq(cfg->spf.enabled, true);
  cr_assert_eq(cfg->spf.action[3], MXGWD_SPF_REJECT);  /* fail */
  cr_assert_eq(cfg->spf.action[5], MXGWD_SPF_DEFER);   /* temperror */
  cr_assert_eq(cfg->spf.action[4], MXGWD_SPF_ACCEPT);  /* softfail */
  cr_assert_eq(cfg->recipients.mode, MXGWD_RV_NONE);
  cr_assert_eq(cfg->logging.n_outputs, 1);
  cr_assert_eq(cfg->logging.outputs[0].destination, MXGWD_LOG_STDERR);
  cr_assert_eq(cfg->logging.outputs[0].format, MXGWD_LOG_TEXT);
  cr_assert_eq(cfg->policy_workers, 4);
  cr_assert_eq(cfg->tls_check_interval_ms, 60000);
  cr_assert_eq(cfg->limits.proxy_timeout_ms, 10000);
  cr_assert_eq(cfg->auth_relay, true);
  cr_assert_eq(cfg->shutdown_timeout_ms, 30000);
  cr_assert_eq(cfg->workers, 0);
}

Test(config, default_ports_follow_the_mode) {
  cr_assert_eq(parse("{" MIN_OK ", \"auth\": {\"users_file\": \"u\"}}", 0,
                     "/x"),
               0);
  const char *t =
      "{\"hostname\": \"mx.example.org\", \"domains\": [\"example.org\"],"
      "\"spool\": {\"directory\": \"s\"}, \"lmtp\": {\"backends\": "
      "[\"unix:/run/dovecot/lmtp\"]}, \"auth\": {\"users_file\": \"u\"},"
      "\"listeners\": [{\"address\": \"0.0.0.0\"},"
      "{\"address\": \"0.0.0.0\", \"mode\": \"submission\", \"tls\": "
      "{\"cert_file\": \"c.pem\", \"key_file\": \"k.pem\"}},"
      "{\"address\": \"::\", \"mode\": \"smtps\", \"tls\": "
      "{\"cert_file\": \"c.pem\"}}]}";
  int rv = parse(t, 0, "/etc/mxgwd");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->listeners[0].port, 25);
  cr_assert_eq(cfg->listeners[1].port, 587);
  cr_assert_eq(cfg->listeners[2].port, 465);
  cr_assert_eq(cfg->listeners[1].tls_policy, MXGWD_TLS_ENCRYPT);
  cr_assert_eq(cfg->listeners[1].auth, true);
  cr_assert_eq(cfg->listeners[0].auth, false);
  /* relative paths resolve against the configuration's directory */
  cr_assert_str_eq(cfg->listeners[1].cert_file, "/etc/mxgwd/c.pem");
  cr_assert_str_eq(cfg->spool.directory, "/etc/mxgwd/s");
  cr_assert_str_eq(cfg->auth_users_file, "/etc/mxgwd/u");
}

Test(config, paths_are_normalized) {
  int rv = parse("{\"hostname\": \"mx.example.org\", \"domains\": "
                 "[\"example.org\"], \"listeners\": [{\"address\": "
                 "\"::1\"}], \"lmtp\": {\"backends\": [\"[::1]:24\"]},"
                 "\"spool\": {\"directory\": \"../../var/./spool/\"}}",
                 0, "/srv/mxgw/examples/mxgwd");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_str_eq(cfg->spool.directory, "/srv/mxgw/var/spool");
  cr_assert_eq(parse("{\"hostname\": \"mx.example.org\", \"domains\": "
                     "[\"example.org\"], \"listeners\": [{\"address\": "
                     "\"::1\"}], \"lmtp\": {\"backends\": [\"[::1]:24\"]},"
                     "\"spool\": {\"directory\": \"/a/b/../../../c//d\"}}",
                     0, "/"),
               0);
  cr_assert_str_eq(cfg->spool.directory, "/c/d");
}

Test(config, spool_commit_workers_range) {
  const char *base = "\"hostname\": \"mx.example.org\",\n"
                     "\"listeners\": [{\"address\": \"127.0.0.1\"}],\n"
                     "\"domains\": [\"example.org\"],\n"
                     "\"lmtp\": {\"backends\": [\"127.0.0.1:24\"]},\n";
  char buf[512];
  snprintf(buf, sizeof buf, "{%s\"spool\": {\"directory\": \"/s\", "
           "\"commit_workers\": 64}}", base);
  cr_assert_eq(parse(buf, 0, "/"), 0);
  cr_assert_eq(cfg->spool.commit_workers, 64);
  snprintf(buf, sizeof buf, "{%s\"spool\": {\"directory\": \"/s\", "
           "\"commit_workers\": 0}}", base);
  cr_assert_eq(parse(buf, 0, "/"), -1);
  cr_assert(has_error("spool.commit_workers: 0 is out of range (1 to 256)"));
}

Test(config, json_syntax_error_has_line_and_column) {
  cr_assert_eq(parse("{\n\"hostname\": \"a.b\",\n}", 0, "/"), -1);
  cr_assert_eq(errs.n, 1);
  cr_assert(strncmp(errs.v[0], "line 3, column 1: ", 18) == 0, "%s",
            errs.v[0]);
}

Test(config, duplicate_json_keys_are_an_error) {
  cr_assert_eq(parse("{" MIN_OK ", \"hostname\": \"b.example\"}", 0, "/"), -1);
  cr_assert(strstr(errs.v[0], "duplicate object key") != NULL, "%s",
            errs.v[0]);
}

Test(config, unknown_keys_are_errors_with_a_suggestion) {
  EXPECT_ERROR("{" MIN_OK ", \"limit\": {}}",
               "limit: unknown key (did you mean \"limits\"?)");
  EXPECT_ERROR("{" MIN_OK ", \"limits\": {\"max_conections\": 5}}",
               "limits.max_conections: unknown key (did you mean "
               "\"max_connections\"?)");
  EXPECT_ERROR("{" MIN_OK ", \"frobnicate\": true}", "frobnicate: unknown key");
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": [{\"address\": "
               "\"127.0.0.1\", \"tls\": {\"policy\": \"may\", \"cert\": "
               "\"x\"}}]}",
               "listeners[0].tls.cert: unknown key (did you mean "
               "\"cert_file\"?)");
}

/* Every message is one line: control characters in a key or value are
 * written back as the JSON escape that produced them (found by
 * fuzz_mxgwd_config: a "\n" in a key split --check-config's output). */
Test(config, messages_are_one_line) {
  EXPECT_ERROR("{" MIN_OK ", \"list\\neners\": 1}",
               "list\\neners: unknown key (did you mean \"listeners\"?)");
  EXPECT_ERROR("{" MIN_OK ", \"a\\r\\nb\\u001b\": 1}",
               "a\\r\\nb\\u001b: unknown key");
  EXPECT_ERROR("{" MIN_OK ", \"\": 1}", "\"\": unknown key");
  for (size_t i = 0; i < errs.n; i++)
    cr_assert(!strpbrk(errs.v[i], "\r\n\x1b"), "%s", errs.v[i]);
}

Test(config, missing_required_keys) {
  EXPECT_ERROR("{}", "hostname: missing (required)");
  cr_assert(has_error("listeners: missing (required)"));
  cr_assert(has_error("domains: missing (required)"));
  cr_assert(has_error("spool: missing (required)"));
  cr_assert(has_error("lmtp: missing (required)"));
  cr_assert_eq(errs.n, 5); /* every error, not just the first */
}

Test(config, listener_address_required) {
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": [{\"port\": 25}]}",
               "listeners[0].address: missing (required)");
}

Test(config, wrong_types) {
  EXPECT_ERROR("{" MIN_OK ", \"limits\": {\"max_connections\": \"many\"}}",
               "limits.max_connections: must be an integer, not a string");
  EXPECT_ERROR("{" MIN_OK ", \"spf\": {\"enabled\": 1}}",
               "spf.enabled: must be true or false, not an integer");
  EXPECT_ERROR("{\"hostname\": 5, \"listeners\": {}, \"domains\": \"a.org\","
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}}",
               "hostname: must be a string, not an integer");
  cr_assert(has_error("listeners: must be an array, not an object"));
  cr_assert(has_error("domains: must be an array, not a string"));
  EXPECT_ERROR("[1]", "the configuration must be a JSON object, not an array");
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"listeners\": [{\"address\": \"127.0.0.1\"}],"
               "\"spool\": [\"/s\"], \"lmtp\": {\"backends\": []}}",
               "spool: must be an object, not an array");
  cr_assert(has_error("lmtp.backends: must not be empty"));
}

Test(config, out_of_range_values) {
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": [{\"address\": "
               "\"127.0.0.1\", \"port\": 70000}]}",
               "listeners[0].port: 70000 is out of range (1 to 65535)");
  EXPECT_ERROR("{" MIN_OK ", \"limits\": {\"max_connections\": 0}}",
               "limits.max_connections: 0 is out of range (1 to 1000000)");
  EXPECT_ERROR("{" MIN_OK ", \"limits\": {\"greeting_delay\": \"10m\"}}",
               "limits.greeting_delay: 600000ms is out of range (0s to 300s)");
  EXPECT_ERROR("{" MIN_OK ", \"limits\": {\"greeting_delay\": \"soon\"}}",
               "limits.greeting_delay: \"soon\" is not a duration (a number "
               "of seconds, or a string such as \"500ms\", \"30s\", \"5m\", "
               "\"2h\", \"5d\")");
  EXPECT_ERROR("{" MIN_OK ", \"limits\": {\"max_message_size\": \"10X\"}}",
               "limits.max_message_size: \"10X\" is not a size (a number of "
               "octets, or a string such as \"512K\", \"50M\", \"1G\")");
}

Test(config, durations_and_sizes) {
  int rv = parse("{" MIN_OK ", \"limits\": {\"greeting_delay\": \"1500ms\","
                 "\"max_message_size\": \"50M\", \"command_timeout\": 120},"
                 "\"shutdown_timeout\": \"2m\"}",
                 0, "/");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->limits.greeting_delay_ms, 1500);
  cr_assert_eq(cfg->limits.max_message_size, 50 * 1024 * 1024);
  cr_assert_eq(cfg->limits.command_timeout_ms, 120000);
  cr_assert_eq(cfg->shutdown_timeout_ms, 120000);
}

Test(config, enums_list_their_values) {
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": [{\"address\": "
               "\"127.0.0.1\", \"mode\": \"lmtp\"}]}",
               "listeners[0].mode: \"lmtp\" is not one of \"smtp\", "
               "\"submission\" or \"smtps\"");
  EXPECT_ERROR("{" MIN_OK ", \"spf\": {\"policy\": {\"fail\": \"drop\"}}}",
               "spf.policy.fail: \"drop\" is not one of \"accept\", "
               "\"reject\" or \"defer\"");
  EXPECT_ERROR("{" MIN_OK ", \"spf\": {\"policy\": {\"hardfail\": "
               "\"reject\"}}}",
               "spf.policy.hardfail: unknown key");
}

Test(config, spf_policy_per_result) {
  int rv = parse("{" MIN_OK ", \"spf\": {\"policy\": {\"softfail\": "
                 "\"reject\", \"temperror\": \"accept\", \"permerror\": "
                 "\"defer\"}, \"dns_servers\": [\"127.0.0.1:5353\", "
                 "\"[::1]:53\", \"192.0.2.53\"]}}",
                 0, "/");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->spf.action[4], MXGWD_SPF_REJECT);
  cr_assert_eq(cfg->spf.action[5], MXGWD_SPF_ACCEPT);
  cr_assert_eq(cfg->spf.action[6], MXGWD_SPF_DEFER);
  cr_assert_eq(cfg->spf.action[3], MXGWD_SPF_REJECT);
  cr_assert_eq(cfg->spf.n_dns_servers, 3);
  EXPECT_ERROR("{" MIN_OK ", \"spf\": {\"dns_servers\": [\"dns.google\"]}}",
               "spf.dns_servers[0]: \"dns.google\" is not a DNS server address "
               "(\"IP\", \"IP:PORT\" or \"[IPv6]:PORT\", numeric)");
}

Test(config, duplicate_listeners) {
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": ["
               "{\"address\": \"127.0.0.1\", \"port\": 2525},"
               "{\"address\": \"127.0.0.2\", \"port\": 2525},"
               "{\"address\": \"127.0.0.1\", \"port\": 2525}]}",
               "listeners[2]: 127.0.0.1 port 2525 is already used by "
               "listeners[0] (127.0.0.1 port 2525)");
  cr_assert_eq(errs.n, 1);
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": ["
               "{\"address\": \"0.0.0.0\"}, {\"address\": \"192.0.2.1\"}]}",
               "listeners[1]: 192.0.2.1 port 25 is already used by "
               "listeners[0] (0.0.0.0 port 25)");
}

Test(config, tls_policy_rules) {
  const char *head = "{\"hostname\": \"mx.example.org\", \"domains\": "
                     "[\"a.org\"], \"spool\": {\"directory\": \"/s\"}, "
                     "\"lmtp\": {\"backends\": [\"127.0.0.1:24\"]}, "
                     "\"auth\": {\"users_file\": \"/u\"}, \"listeners\": [";
  char t[1024];
  snprintf(t, sizeof t, "%s{\"address\": \"127.0.0.1\", \"tls\": "
                        "{\"policy\": \"encrypt\"}}]}", head);
  EXPECT_ERROR(t, "listeners[0].tls.cert_file: missing: tls.policy "
                  "\"encrypt\" needs a certificate");
  snprintf(t, sizeof t, "%s{\"address\": \"127.0.0.1\", \"mode\": \"smtps\", "
                        "\"tls\": {\"policy\": \"may\", \"cert_file\": "
                        "\"/c\"}}]}", head);
  EXPECT_ERROR(t, "listeners[0].tls.policy: must be \"encrypt\" for mode "
                  "\"smtps\" (implicit TLS)");
  snprintf(t, sizeof t, "%s{\"address\": \"127.0.0.1\", \"mode\": "
                        "\"submission\", \"tls\": {\"policy\": \"none\"}}]}",
           head);
  EXPECT_ERROR(t, "listeners[0].tls.policy: \"none\" on a submission "
                  "listener would send passwords in clear; use \"encrypt\"");
  snprintf(t, sizeof t, "%s{\"address\": \"127.0.0.1\", \"tls\": "
                        "{\"key_file\": \"/k\"}}]}", head);
  EXPECT_ERROR(t, "listeners[0].tls.key_file: set without cert_file");
}

Test(config, submission_needs_users) {
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"spool\": {\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
               "[\"127.0.0.1:24\"]}, \"listeners\": [{\"address\": "
               "\"127.0.0.1\", \"mode\": \"submission\", \"tls\": "
               "{\"cert_file\": \"/c\"}}]}",
               "listeners[0].mode: \"submission\" needs auth.users_file (the "
               "users who may log in)");
}

Test(config, addresses_domains_backends) {
  EXPECT_ERROR("{\"hostname\": \"localhost\", \"domains\": [\"a.org\", "
               "\"A.org\", \"not a domain\", 7], \"spool\": {\"directory\": "
               "\"/s\"}, \"lmtp\": {\"backends\": [\"dovecot:24\", "
               "\"unix:run/lmtp\", \"127.0.0.1:99999\"]}, \"listeners\": "
               "[{\"address\": \"localhost\"}]}",
               "domains[1]: \"a.org\" is listed twice");
  cr_assert(has_error("domains[1]: \"a.org\" is listed twice"));
  cr_assert(has_error("domains[2]: \"not a domain\" is not a domain name "
                      "(e.g. \"example.org\", or \"*.example.org\" for its "
                      "subdomains)"));
  cr_assert(has_error("domains[3]: must be a string, not an integer"));
  cr_assert(has_error("lmtp.backends[0]: \"dovecot:24\" is not an LMTP "
                      "backend (\"IP:PORT\", \"[IPv6]:PORT\" with a numeric "
                      "address, or \"unix:/path/to/socket\")"));
  cr_assert(has_error("lmtp.backends[1]: \"unix:run/lmtp\": the socket path "
                      "must be absolute (\"unix:/run/dovecot/lmtp\")"));
  cr_assert(has_error("lmtp.backends[2]: \"127.0.0.1:99999\" is not an LMTP "
                      "backend (\"IP:PORT\", \"[IPv6]:PORT\" with a numeric "
                      "address, or \"unix:/path/to/socket\")"));
  cr_assert(has_error("listeners[0].address: \"localhost\" is not a numeric "
                      "IPv4 or IPv6 address (use \"0.0.0.0\" or \"::\" for "
                      "every address)"));
  cr_assert(has_error("hostname: \"localhost\" is not a fully qualified "
                      "host name (e.g. \"mx.example.org\")"));
  if (errs.n != 8)
    dump();
  cr_assert_eq(errs.n, 8, "%zu errors", errs.n);
}

Test(config, recipient_validation) {
  int rv = parse("{" MIN_OK ", \"recipient_validation\": {\"mode\": "
                 "\"proxy\"}}",
                 0, "/");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->recipients.mode, MXGWD_RV_PROXY);
  rv = parse("{" MIN_OK ", \"recipient_validation\": {\"mode\": "
                 "\"lmtp_probe\", \"cache_ttl\": \"1h\", \"timeout\": 5}}",
                 0, "/");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->recipients.mode, MXGWD_RV_LMTP_PROBE);
  cr_assert_eq(cfg->recipients.cache_ttl_ms, 3600000);
  cr_assert_eq(cfg->recipients.timeout_ms, 5000);
  EXPECT_ERROR("{" MIN_OK ", \"recipient_validation\": {\"mode\": "
               "\"lmtp_probe\", \"cache_size\": 5}}",
               "recipient_validation.cache_size: unknown key");
  EXPECT_ERROR("{" MIN_OK ", \"recipient_validation\": {\"mode\": "
               "\"lmtp_probe\", \"cache_ttl\": \"1500ms\"}}",
               "recipient_validation: cache_ttl and negative_cache_ttl are "
               "whole seconds");
  rv = parse("{" MIN_OK ", \"recipient_validation\": {\"cache_ttl\": 5}}", 0,
             "/");
  cr_assert_eq(rv, 0);
  cr_assert_eq(warns.n, 1);
  cr_assert_str_eq(warns.v[0], "recipient_validation.cache_ttl: ignored: only "
                               "used with mode \"lmtp_probe\"");
}

Test(config, logging_outputs) {
  int rv = parse("{" MIN_OK ", \"logging\": {\"outputs\": ["
                 "{\"destination\": \"stderr\"},"
                 "{\"destination\": \"file\", \"path\": \"log/mxgwd.json\", "
                 "\"format\": \"json\"},"
                 "{\"destination\": \"syslog\", \"facility\": \"local3\"}]}}",
                 0, "/var");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->logging.n_outputs, 3);
  cr_assert_str_eq(cfg->logging.outputs[1].path, "/var/log/mxgwd.json");
  cr_assert_eq(cfg->logging.outputs[1].format, MXGWD_LOG_JSON);
  cr_assert_str_eq(cfg->logging.outputs[2].ident, "mxgwd");
  EXPECT_ERROR("{" MIN_OK ", \"logging\": {\"outputs\": [{\"destination\": "
               "\"file\"}, {\"format\": \"xml\"}, {\"destination\": "
               "\"stderr\", \"path\": \"x\"}]}}",
               "logging.outputs[0].path: missing: destination \"file\" needs "
               "a path");
  cr_assert(has_error("logging.outputs[1].destination: missing (required): "
                      "\"stderr\", \"file\" or \"syslog\""));
  cr_assert(has_error("logging.outputs[1].format: \"xml\" is not one of "
                      "\"text\" or \"json\""));
  cr_assert(has_error("logging.outputs[2].path: only for destination "
                      "\"file\""));
}

Test(config, spool_backoff_consistency) {
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
               "\"lmtp\": {\"backends\": [\"127.0.0.1:24\"]}, \"listeners\": "
               "[{\"address\": \"127.0.0.1\"}], \"spool\": {\"directory\": "
               "\"/s\", \"backoff_initial\": \"2h\", \"backoff_max\": "
               "\"1h\"}}",
               "spool.backoff_initial: 7200s is longer than "
               "spool.backoff_max (3600s)");
}

Test(config, lmtp_starttls_and_bounce_recipient) {
  int rv = parse("{\"hostname\": \"mx.example.org\", \"domains\": "
                 "[\"a.org\"], \"listeners\": [{\"address\": \"::1\"}],"
                 "\"spool\": {\"directory\": \"/s\", \"bounce_recipient\": "
                 "\"postmaster@a.org\"}, \"lmtp\": {\"backends\": "
                 "[\"10.0.1.10:24\"], \"starttls\": \"require\", "
                 "\"tls_ca_file\": \"ca.pem\", \"tls_servername\": "
                 "\"store.a.org\"}}",
                 0, "/etc/mxgwd");
  dump();
  cr_assert_eq(rv, 0);
  cr_assert_eq(cfg->lmtp.starttls, MXGWD_LMTP_TLS_REQUIRE);
  cr_assert_str_eq(cfg->lmtp.tls_ca_file, "/etc/mxgwd/ca.pem");
  cr_assert_str_eq(cfg->lmtp.tls_servername, "store.a.org");
  cr_assert_eq(cfg->lmtp.tls_verify, true);
  cr_assert_str_eq(cfg->spool.bounce_recipient, "postmaster@a.org");
  EXPECT_ERROR("{\"hostname\": \"mx.example.org\", \"domains\": "
               "[\"a.org\"], \"listeners\": [{\"address\": \"::1\"}],"
               "\"spool\": {\"directory\": \"/s\", \"bounce_recipient\": "
               "\"postmaster\"}, \"lmtp\": {\"backends\": "
               "[\"10.0.1.10:24\"], \"starttls\": \"always\"}}",
               "spool.bounce_recipient: \"postmaster\" is not a mail address "
               "(local@domain)");
  cr_assert(has_error("lmtp.starttls: \"always\" is not one of \"never\", "
                      "\"may\" or \"require\""));
  rv = parse("{" MIN_OK ", \"lmtp\": {\"backends\": [\"10.0.1.10:24\"], "
             "\"tls_verify\": false}}",
             0, "/");
  cr_assert_eq(rv, -1); /* lmtp twice: a JSON error */
  rv = parse("{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
             "\"listeners\": [{\"address\": \"::1\"}], \"spool\": "
             "{\"directory\": \"/s\"}, \"lmtp\": {\"backends\": "
             "[\"10.0.1.10:24\"], \"tls_verify\": false}}",
             0, "/");
  cr_assert_eq(rv, 0);
  cr_assert_eq(warns.n, 1);
  cr_assert_str_eq(warns.v[0], "lmtp.tls_verify: ignored: lmtp.starttls is "
                               "\"never\"");
}

/* ---- file checks ------------------------------------------------------- */

static char dir[64];

static void mkdir_tmp(void) {
  snprintf(dir, sizeof dir, "/tmp/mxgwd-unit.XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

static void make_cert(const char *cn, mode_t key_mode) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=%s "
           "-addext subjectAltName=DNS:%s -keyout %s/key.pem -out %s/cert.pem "
           ">/dev/null 2>&1",
           cn, cn, dir, dir);
  cr_assert_eq(system(cmd), 0);
  char key[128];
  snprintf(key, sizeof key, "%s/key.pem", dir);
  cr_assert_eq(chmod(key, key_mode), 0);
}

static const char *tls_config(void) {
  static char t[2048];
  snprintf(t, sizeof t,
           "{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
           "\"spool\": {\"directory\": \"spool\"}, \"lmtp\": {\"backends\": "
           "[\"127.0.0.1:24\"]}, \"listeners\": ["
           "{\"address\": \"127.0.0.1\", \"port\": 2525},"
           "{\"address\": \"127.0.0.1\", \"port\": 2526, \"tls\": "
           "{\"policy\": \"may\", \"cert_file\": \"cert.pem\", \"key_file\": "
           "\"key.pem\"}}]}");
  return t;
}

Test(config_files, valid_certificate_passes, .init = mkdir_tmp, .fini = rm_tmp) {
  make_cert("mx.example.org", 0600);
  int rv = parse(tls_config(), MXGWD_CHECK_FILES, dir);
  dump();
  cr_assert_eq(rv, 0);
  fini();
}

Test(config_files, key_readable_by_others, .init = mkdir_tmp, .fini = rm_tmp) {
  make_cert("mx.example.org", 0644);
  cr_assert_eq(parse(tls_config(), MXGWD_CHECK_FILES, dir), -1);
  char want[512];
  snprintf(want, sizeof want,
           "listeners[1].tls.key_file: %s/key.pem: private key file mode 0644 "
           "is readable by group and others; chmod 600 %s/key.pem",
           dir, dir);
  if (!has_error(want))
    dump();
  cr_assert(has_error(want), "missing: %s", want);
  fini();
}

Test(config_files, certificate_for_another_name, .init = mkdir_tmp,
     .fini = rm_tmp) {
  make_cert("localhost", 0600);
  cr_assert_eq(parse(tls_config(), MXGWD_CHECK_FILES, dir), -1);
  cr_assert_eq(errs.n, 1);
  char want[128];
  snprintf(want, sizeof want, "listeners[1].tls.cert_file: %s/cert.pem: ", dir);
  cr_assert(strncmp(errs.v[0], want, strlen(want)) == 0, "%s", errs.v[0]);
  cr_assert(strstr(errs.v[0], "mx.example.org") != NULL, "%s", errs.v[0]);
  fini();
}

Test(config_files, missing_files_and_unwritable_dirs, .init = mkdir_tmp,
     .fini = rm_tmp) {
  char t[2048];
  snprintf(t, sizeof t,
           "{\"hostname\": \"mx.example.org\", \"domains\": [\"a.org\"],"
           "\"spool\": {\"directory\": \"/etc/hostname/spool\"}, \"lmtp\": "
           "{\"backends\": [\"127.0.0.1:24\"]}, \"listeners\": ["
           "{\"address\": \"127.0.0.1\", \"port\": 2526, \"tls\": "
           "{\"cert_file\": \"none.pem\", \"key_file\": \"nokey.pem\"}}],"
           "\"logging\": {\"outputs\": [{\"destination\": \"file\", \"path\": "
           "\"/nonexistent/dir/log\"}]}}");
  cr_assert_eq(parse(t, MXGWD_CHECK_FILES, dir), -1);
  char want[512];
  snprintf(want, sizeof want,
           "listeners[0].tls.cert_file: %s/none.pem: No such file or "
           "directory", dir);
  cr_assert(has_error(want), "missing: %s", want);
  snprintf(want, sizeof want,
           "listeners[0].tls.key_file: %s/nokey.pem: No such file or "
           "directory", dir);
  cr_assert(has_error(want), "missing: %s", want);
  cr_assert(has_error("logging.outputs[0].path: /nonexistent/dir/log: cannot "
                      "be created: directory /nonexistent/dir does not exist"));
  bool spool = false;
  for (size_t i = 0; i < errs.n; i++)
    spool |= !strcmp(errs.v[i], "spool.directory: /etc/hostname/spool: "
                                "cannot be created: /etc/hostname is not a "
                                "directory");
  if (!spool)
    dump();
  cr_assert(spool);
  fini();
}

Test(config_files, users_file_mode, .init = mkdir_tmp, .fini = rm_tmp) {
  char path[128];
  snprintf(path, sizeof path, "%s/users", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs("alice:$6$salt$hash\n", f);
  fclose(f);
  chmod(path, 0644);
  char t[1024];
  snprintf(t, sizeof t, "{" MIN_OK ", \"auth\": {\"users_file\": \"users\"}}");
  cr_assert_eq(parse(t, MXGWD_CHECK_FILES, dir), -1);
  char want[512];
  snprintf(want, sizeof want,
           "auth.users_file: %s: mode 0644 is readable by others; chmod 640 %s",
           path, path);
  cr_assert(has_error(want), "missing: %s", want);
  fini();
}
