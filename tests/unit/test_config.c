/* SPDX-License-Identifier: MIT */
/*
 * test_config.c: unit tests of the session configuration: documented
 * defaults, range checks, unknown keys, host name and greeting validation,
 * freezing once a session uses it (MXGW_E_BUSY), and reference counting
 * (the configuration outlives the caller's reference while sessions use it).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

struct def_row {
  int key;
  int64_t value;
  const char *name;
};

static const struct def_row defaults[] = {
    {MXGW_OPT_MAX_MESSAGE_SIZE, 67108864, "MAX_MESSAGE_SIZE"},
    {MXGW_OPT_MAX_RECIPIENTS, 1000, "MAX_RECIPIENTS"},
    {MXGW_OPT_MAX_MESSAGES, 1000, "MAX_MESSAGES"},
    {MXGW_OPT_MAX_COMMAND_LINE, 2048, "MAX_COMMAND_LINE"},
    {MXGW_OPT_MAX_TEXT_LINE, 1000, "MAX_TEXT_LINE"},
    {MXGW_OPT_MAX_ERRORS, 20, "MAX_ERRORS"},
    {MXGW_OPT_MAX_UNKNOWN_COMMANDS, 10, "MAX_UNKNOWN_COMMANDS"},
    {MXGW_OPT_MAX_JUNK_COMMANDS, 100, "MAX_JUNK_COMMANDS"},
    {MXGW_OPT_COMMAND_TIMEOUT_MS, 300000, "COMMAND_TIMEOUT_MS"},
    {MXGW_OPT_DATA_TIMEOUT_MS, 180000, "DATA_TIMEOUT_MS"},
    {MXGW_OPT_BARE_NEWLINE, MXGW_BARE_REJECT, "BARE_NEWLINE"},
    {MXGW_OPT_STARTTLS, 0, "STARTTLS"},
    {MXGW_OPT_REQUIRE_TLS, 0, "REQUIRE_TLS"},
    {MXGW_OPT_AUTH, 0, "AUTH"},
    {MXGW_OPT_AUTH_PLAINTEXT, 0, "AUTH_PLAINTEXT"},
    {MXGW_OPT_REQUIRE_AUTH, 0, "REQUIRE_AUTH"},
    {MXGW_OPT_SMTPUTF8, 1, "SMTPUTF8"},
    {MXGW_OPT_CHUNKING, 1, "CHUNKING"},
    {MXGW_OPT_DSN, 1, "DSN"},
    {MXGW_OPT_8BITMIME, 1, "8BITMIME"},
    {MXGW_OPT_PIPELINING, 1, "PIPELINING"},
    {MXGW_OPT_INPUT_BUFFER, 65536, "INPUT_BUFFER"},
    {MXGW_OPT_OUTPUT_BUFFER, 65536, "OUTPUT_BUFFER"},
    {MXGW_OPT_REJECT_HTTP, 1, "REJECT_HTTP"},
    {MXGW_OPT_IMPLICIT_TLS, 0, "IMPLICIT_TLS"},
};
#define NDEFAULTS (sizeof defaults / sizeof defaults[0])

static const int bool_keys[] = {
    MXGW_OPT_STARTTLS,       MXGW_OPT_REQUIRE_TLS,  MXGW_OPT_AUTH,
    MXGW_OPT_AUTH_PLAINTEXT, MXGW_OPT_REQUIRE_AUTH, MXGW_OPT_SMTPUTF8,
    MXGW_OPT_CHUNKING,       MXGW_OPT_DSN,          MXGW_OPT_8BITMIME,
    MXGW_OPT_PIPELINING,     MXGW_OPT_REJECT_HTTP,  MXGW_OPT_IMPLICIT_TLS};
#define NBOOLS (sizeof bool_keys / sizeof bool_keys[0])

TestSuite(config, .timeout = 30);

Test(config, new_rejects_null_out) {
  cr_assert_eq(mxgw_session_config_new(NULL, NULL), MXGW_E_INVAL);
  mxgw_session_config_free(NULL); /* no-op */
}

Test(config, defaults_readable) {
  mxgw_session_config *cfg = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  for (size_t i = 0; i < NDEFAULTS; i++) {
    int64_t v = -77;
    int rc = mxgw_session_config_get_int(cfg, defaults[i].key, &v);
    cr_assert_eq(rc, MXGW_OK, "get_int(%s): %s", defaults[i].name,
                 mxgw_errname(rc));
    cr_assert_eq(v, defaults[i].value,
                 "default of %s is %lld, header says %lld", defaults[i].name,
                 (long long)v, (long long)defaults[i].value);
  }
  mxgw_session_config_free(cfg);
  h_leak_check();
}

Test(config, set_get_round_trip) {
  mxgw_session_config *cfg = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_RECIPIENTS, 7));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_MESSAGE_SIZE, 0));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_TEXT_LINE, 0));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, 512));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_BARE_NEWLINE,
                                   MXGW_BARE_NORMALIZE));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_COMMAND_TIMEOUT_MS, 1234));
  for (size_t i = 0; i < NBOOLS; i++) {
    int64_t v = -1, d = -1;
    H_OK(mxgw_session_config_get_int(cfg, bool_keys[i], &d));
    H_OK(mxgw_session_config_set_int(cfg, bool_keys[i], !d));
    H_OK(mxgw_session_config_get_int(cfg, bool_keys[i], &v));
    cr_assert_eq(v, !d, "boolean option %d did not flip", bool_keys[i]);
  }
  int64_t v = 0;
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_RECIPIENTS, &v));
  cr_assert_eq(v, 7);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_MESSAGE_SIZE, &v));
  cr_assert_eq(v, 0);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_TEXT_LINE, &v));
  cr_assert_eq(v, 0);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, &v));
  cr_assert_eq(v, 512);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_BARE_NEWLINE, &v));
  cr_assert_eq(v, MXGW_BARE_NORMALIZE);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_COMMAND_TIMEOUT_MS, &v));
  cr_assert_eq(v, 1234);
  mxgw_session_config_free(cfg);
  h_leak_check();
}

Test(config, range_checks) {
  mxgw_session_config *cfg = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  /* command line >= 512 */
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, 511));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, 0));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, -1));
  /* negative sizes, counts and timeouts */
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_MESSAGE_SIZE, -1));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_RECIPIENTS, -5));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_TEXT_LINE, -1));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_COMMAND_TIMEOUT_MS, -1));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_DATA_TIMEOUT_MS, -1000));
  /* policy enum and booleans */
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_BARE_NEWLINE, 2));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_BARE_NEWLINE, -1));
  for (size_t i = 0; i < NBOOLS; i++) {
    int rc = mxgw_session_config_set_int(cfg, bool_keys[i], 2);
    cr_assert_eq(rc, MXGW_E_RANGE, "boolean option %d took 2: %s", bool_keys[i],
                 mxgw_errname(rc));
    rc = mxgw_session_config_set_int(cfg, bool_keys[i], -1);
    cr_assert_eq(rc, MXGW_E_RANGE, "boolean option %d took -1: %s",
                 bool_keys[i], mxgw_errname(rc));
  }
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_INPUT_BUFFER, -1));
  H_RET(MXGW_E_RANGE,
        mxgw_session_config_set_int(cfg, MXGW_OPT_OUTPUT_BUFFER, -1));
  /* a failed set leaves the value alone */
  int64_t v = 0;
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, &v));
  cr_assert_eq(v, 2048);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_MESSAGE_SIZE, &v));
  cr_assert_eq(v, 67108864);
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_INPUT_BUFFER, &v));
  cr_assert_eq(v, 65536);
  /* boundaries that are fine */
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, 512));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_INPUT_BUFFER, 16384));
  mxgw_session_config_free(cfg);
  h_leak_check();
}

/* The header: a session raises INPUT_BUFFER to fit the longest line it
 * must accept, so a small input buffer with a long command line limit is a
 * valid configuration (limits::line_longer_than_input_buffer runs it). */
Test(config, input_buffer_below_command_line_accepted) {
  mxgw_session_config *cfg = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_COMMAND_LINE, 32768));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_INPUT_BUFFER, 16384));
  int64_t v = 0;
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_INPUT_BUFFER, &v));
  cr_assert_eq(v, 16384, "get_int returns the configured value");
  mxgw_session_config_free(cfg);
  h_leak_check();
}

Test(config, hostname_validation) {
  mxgw_session_config *cfg = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  static const char *good[] = {
      "localhost",  "mx.example.org", "MX1.Example.ORG",   "a-b.example",
      "x1.example", "[192.0.2.1]",    "[IPv6:2001:db8::1]"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    int rc = mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, good[i]);
    cr_assert_eq(rc, MXGW_OK, "valid host name \"%s\" refused: %s", good[i],
                 mxgw_errname(rc));
  }
  char label64[80], long256[300];
  memset(label64, 'a', 64);
  strcpy(label64 + 64, ".example");
  long256[0] = '\0';
  while (strlen(long256) < 256)
    strcat(long256, "abcdefghi.");
  strcat(long256, "example");
  static const char *bad_fixed[] = {"",
                                    "has space.example",
                                    "a..b.example",
                                    ".lead.example",
                                    "-lead.example",
                                    "trail-.example",
                                    "x\r\n250 y",
                                    "mx.example\n",
                                    "[999.0.0.1]",
                                    "[192.0.2]",
                                    "[IPv6:zz::1]",
                                    "[192.0.2.1",
                                    "mx.exa mple"};
  for (size_t i = 0; i < sizeof bad_fixed / sizeof bad_fixed[0]; i++) {
    int rc = mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, bad_fixed[i]);
    cr_assert_eq(rc, MXGW_E_INVAL, "bad host name \"%s\" accepted: %s",
                 bad_fixed[i], mxgw_errname(rc));
  }
  H_RET(MXGW_E_INVAL,
        mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, label64));
  H_RET(MXGW_E_INVAL,
        mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, long256));
  mxgw_session_config_free(cfg);
  h_leak_check();
}

Test(config, greeting_rejects_controls) {
  mxgw_session_config *cfg = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  H_OK(mxgw_session_config_set_str(cfg, MXGW_OPT_GREETING, "ESMTP ready"));
  /* a CRLF in the greeting would inject a second reply */
  H_RET(MXGW_E_INVAL, mxgw_session_config_set_str(cfg, MXGW_OPT_GREETING,
                                                  "hi\r\n250 injected"));
  H_RET(MXGW_E_INVAL,
        mxgw_session_config_set_str(cfg, MXGW_OPT_GREETING, "bare\rcr"));
  mxgw_session_config_free(cfg);
  h_leak_check();
}

Test(config, hostname_and_greeting_used) {
  harness h;
  h_init(&h);
  h_set_str(&h, MXGW_OPT_HOSTNAME, "mx.example.org");
  h_set_str(&h, MXGW_OPT_GREETING, "Test ESMTP service");
  h_start(&h);
  H_EXPECT(&h, "220 mx.example.org Test ESMTP service\r\n");
  char *hn = h_get_str(&h, MXGW_INFO_HOSTNAME);
  cr_assert(hn != NULL);
  cr_assert_str_eq(hn, "mx.example.org");
  free(hn);
  h_send(&h, "EHLO client.example\r\n");
  const char *r = h_pop_reply(&h);
  cr_assert(r != NULL);
  cr_assert(strncmp(r, "250-mx.example.org", 18) == 0 ||
                strncmp(r, "250 mx.example.org", 18) == 0,
            "EHLO reply does not name our host: %s", h_esc0(&h, r));
  h_free(&h);
}

Test(config, default_greeting) {
  harness h;
  h_init(&h);
  h_start(&h);
  H_EXPECT(&h, "220 localhost ESMTP\r\n");
  h_free(&h);
}

Test(config, frozen_after_session_new) {
  mxgw_session_config *cfg = NULL;
  mxgw_session *s = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_RECIPIENTS, 3));
  H_OK(mxgw_session_new(&s, cfg, NULL));
  H_RET(MXGW_E_BUSY,
        mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_RECIPIENTS, 4));
  H_RET(MXGW_E_BUSY,
        mxgw_session_config_set_str(cfg, MXGW_OPT_HOSTNAME, "mx.example"));
  H_RET(MXGW_E_BUSY,
        mxgw_session_config_set_str(cfg, MXGW_OPT_GREETING, "hello"));
  int64_t v = 0;
  H_OK(mxgw_session_config_get_int(cfg, MXGW_OPT_MAX_RECIPIENTS, &v));
  cr_assert_eq(v, 3, "frozen configuration changed");
  mxgw_session_free(s);
  mxgw_session_config_free(cfg);
  h_leak_check();
}

/* After the greeting: a complete transaction on a session whose
 * configuration reference was already dropped by the caller. */
static void full_dialogue(harness *h) {
  h_send(h, "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
            "RCPT TO:<b@example.net>\r\nDATA\r\n");
  H_EXPECT(h, "250");
  H_EXPECT(h, "250 2.1.0");
  H_EXPECT(h, "250 2.1.5");
  H_EXPECT(h, "354");
  h_send(h, "Subject: x\r\n\r\nhi\r\n.\r\n");
  H_EXPECT(h, "250 2.0.0");
  cr_assert_str_eq(h_buf_str(&h->message), "Subject: x\r\n\r\nhi\r\n");
  h_send(h, "QUIT\r\n");
  H_EXPECT(h, "221 2.0.0");
  cr_assert_eq(h_last_event(h), MXGW_EV_CLOSE);
}

Test(config, free_config_before_session) {
  harness h;
  h_init(&h);
  h_set(&h, MXGW_OPT_MAX_RECIPIENTS, 1);
  h_set_str(&h, MXGW_OPT_HOSTNAME, "mx.example.org");
  H_OK(mxgw_session_new(&h.s, h.cfg, NULL));
  mxgw_session_config_free(h.cfg); /* the session keeps its own reference */
  h.cfg = NULL;
  mxgw_session_set_log(h.s, NULL, NULL);
  H_OK(mxgw_session_set_peer(h.s, "192.0.2.1", 4711, "client.example"));
  H_OK(mxgw_session_start(h.s, h.now));
  h_pump(&h);
  const char *r = h_pop_reply(&h);
  cr_assert(r && strncmp(r, "220 mx.example.org", 18) == 0,
            "configuration lost after free: %s", h_esc0(&h, r));
  h_send(&h, "EHLO c.example\r\n");
  H_EXPECT(&h, "250");
  h_send(&h, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
             "RCPT TO:<c@example.net>\r\n");
  H_EXPECT(&h, "250 2.1.0");
  H_EXPECT(&h, "250 2.1.5");
  H_EXPECT(&h, "452 4.5.3"); /* MAX_RECIPIENTS=1 still applies */
  h_free(&h);
}

Test(config, shared_by_two_sessions) {
  harness a, b;
  h_init(&a);
  h_init(&b);
  /* b uses a's configuration; drop b's own */
  mxgw_session_config_free(b.cfg);
  b.cfg = NULL;
  h_set_str(&a, MXGW_OPT_HOSTNAME, "shared.example");
  H_OK(mxgw_session_new(&b.s, a.cfg, NULL));
  mxgw_session_set_log(b.s, NULL, NULL);
  H_OK(mxgw_session_set_peer(b.s, "192.0.2.2", 1, NULL));
  H_OK(mxgw_session_start(b.s, b.now));
  h_start(&a); /* creates a's session from the same (frozen) configuration */
  /* drop the caller's reference while both sessions live */
  mxgw_session_config_free(a.cfg);
  a.cfg = NULL;
  h_pump(&b);
  H_EXPECT(&a, "220 shared.example");
  H_EXPECT(&b, "220 shared.example");
  mxgw_session_free(a.s); /* b still holds a reference */
  a.s = NULL;
  full_dialogue(&b);
  h_free(&a);
  h_free(&b);
}

Test(config, session_new_invalid) {
  mxgw_session_config *cfg = NULL;
  mxgw_session *s = NULL;
  H_OK(mxgw_session_config_new(&cfg, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_new(NULL, cfg, NULL));
  H_RET(MXGW_E_INVAL, mxgw_session_new(&s, NULL, NULL));
  mxgw_session_free(NULL); /* no-op */
  /* failed calls did not freeze the configuration */
  H_OK(mxgw_session_config_set_int(cfg, MXGW_OPT_MAX_RECIPIENTS, 9));
  mxgw_session_config_free(cfg);
  h_leak_check();
}
