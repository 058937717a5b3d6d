/* SPDX-License-Identifier: MIT */
/*
 * fuzz_mxgwd_config.c: libFuzzer target for mxgwd's JSON configuration
 * parser and validator (tools/mxgwd/config.c, mxgwd_config_parse(): what
 * `mxgwd --config` and `--check-config` run on the file's text). The input
 * is the configuration text itself, so the seeds are configuration files
 * (corpus/mxgwd_config/).
 *
 * Each input is parsed twice, both times with base_dir = a fixture
 * directory made once at start-up (mkdtemp under $TMPDIR or /tmp, removed
 * at exit): cert.pem / key.pem (an EC certificate for mx.example.org,
 * mail.example.net and *.example.com, key mode 0600), key-open.pem (the
 * same key, mode 0644), both.pem (certificate and key), users (mode 0640,
 * one crypt hash), users-bad (0640, a line without a hash), users-open
 * (0644), spool/ and log/ (directories), log/mxgwd.log (a file):
 *
 *   1. pure: checks = 0 (no file is looked at);
 *   2. with MXGWD_CHECK_FILES (certificates and keys loaded through
 *      mxgw_tls, the users file read, directories and log files checked),
 *      but only when no string value in the document starts with '/' or
 *      contains "..": every file the checks touch is then inside the
 *      fixture directory (an absolute path could name /proc/kmsg, which
 *      the users-file check would read with a blocking fopen()).
 *
 * Invariants (each a __builtin_trap()):
 *   - the result is 0 (a configuration, no error) or -1 (no configuration,
 *     at least one error);
 *   - every error and warning is a non-empty single line (the header
 *     promises one "path: problem" line each; a newline in a key or value
 *     must not split it or forge another line);
 *   - text that is not JSON gives exactly one error, "line L, column C:
 *     ..."; for JSON, every error is "path: problem" (an empty key is
 *     shown as "", so the path is never empty) with a non-empty problem, or the root's "the configuration must be a JSON object,
 *     not ...";
 *   - a configuration is complete: hostname, listeners (numeric address,
 *     port 1..65535, known mode and TLS policy, a certificate unless the
 *     policy is "none"), domains, spool.directory and every other path
 *     absolute, LMTP backends, at least one log output; enums in range;
 *     mxgwd_config_summary() prints it (into memory);
 *   - the file checks only add problems: every error and warning of the
 *     pure parse is also one of the checked parse, and a checked success
 *     implies a pure one;
 *   - nothing is written: the fixture directory, its subdirectories and
 *     its files keep their inode, size, mode and mtime.
 * ASan, UBSan and LSan catch memory errors and leaks (everything the parser
 * allocates is freed with mxgwd_config_free() / mxgwd_msgs_free()).
 *
 * The harness itself writes only its fixture directory, once, before the
 * first input.
 */
#define _GNU_SOURCE
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c))                                                                  \
      __builtin_trap();                                                        \
  } while (0)

/* Self-signed, valid 2026-11-28 to 2126; SAN mx.example.org,
 * mail.example.net, *.example.com. Test material only. */
static const char cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBxzCCAW2gAwIBAgIUAQqK+TxOjHTq3rlDUjHORBA8ZMEwCgYIKoZIzj0EAwIw\n"
    "GTEXMBUGA1UEAwwObXguZXhhbXBsZS5vcmcwIBcNMjYxMTI4MTMyODQxWhgPMjEy\n"
    "NjExMDQxMzI4NDFaMBkxFzAVBgNVBAMMDm14LmV4YW1wbGUub3JnMFkwEwYHKoZI\n"
    "zj0CAQYIKoZIzj0DAQcDQgAE3MFdsb4fsoSPC8EkJWrHRIZUvWKFK5gF3NKpfzSN\n"
    "BzuXRnSTM6CSTupNNBod3WaBFmgpbjIK+enel4r6NA/rjqOBkDCBjTAdBgNVHQ4E\n"
    "FgQU+jaLPsA7SJsvSbVAirnsk7cY0dIwHwYDVR0jBBgwFoAU+jaLPsA7SJsvSbVA\n"
    "irnsk7cY0dIwDwYDVR0TAQH/BAUwAwEB/zA6BgNVHREEMzAxgg5teC5leGFtcGxl\n"
    "Lm9yZ4IQbWFpbC5leGFtcGxlLm5ldIINKi5leGFtcGxlLmNvbTAKBggqhkjOPQQD\n"
    "AgNIADBFAiBeIxd2r30gjA8D+0dkPg6HiVtifjo1K5hOhaKQB/Ym/AIhAMf9V7US\n"
    "StNKbzO9XnH/pTpF5vxCO/FveWI6II9F05XQ\n"
    "-----END CERTIFICATE-----\n";
static const char key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwTfEWZIUmIH5O2I7\n"
    "KayJNDj9dpBR2yUF1Sd4PU36ybWhRANCAATcwV2xvh+yhI8LwSQlasdEhlS9YoUr\n"
    "mAXc0ql/NI0HO5dGdJMzoJJO6k00Gh3dZoEWaCluMgr56d6Xivo0D+uO\n"
    "-----END PRIVATE KEY-----\n";

static char fixture[4096];

static const char *const fixture_files[] = {
    ".", "cert.pem", "key.pem", "key-open.pem", "both.pem", "users",
    "users-bad", "users-open", "spool", "log", "log/mxgwd.log", NULL};
static struct stat fixture_st[sizeof fixture_files / sizeof *fixture_files];

static void put(const char *name, mode_t mode, const char *a, const char *b) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", fixture, name);
  FILE *f = fopen(p, "w");
  CHECK(f != NULL);
  CHECK(fputs(a, f) >= 0 && fputs(b, f) >= 0);
  CHECK(fclose(f) == 0);
  CHECK(chmod(p, mode) == 0);
}

static void fixture_stat(size_t i, struct stat *st) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", fixture, fixture_files[i]);
  CHECK(lstat(p, st) == 0);
}

static void remove_fixture(void) {
  char p[4200];
  for (size_t i = 1; fixture_files[i]; i++) {
    snprintf(p, sizeof p, "%s/%s", fixture, fixture_files[i]);
    unlink(p);
  }
  snprintf(p, sizeof p, "%s/log", fixture);
  rmdir(p);
  snprintf(p, sizeof p, "%s/spool", fixture);
  rmdir(p);
  rmdir(fixture);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *tmpdir = getenv("TMPDIR");
  snprintf(fixture, sizeof fixture, "%s/mxgw-fzcfg-XXXXXX",
           tmpdir && *tmpdir ? tmpdir : "/tmp");
  CHECK(mkdtemp(fixture) != NULL);
  atexit(remove_fixture);
  put("cert.pem", 0644, cert_pem, "");
  put("key.pem", 0600, key_pem, "");
  put("key-open.pem", 0644, key_pem, "");
  put("both.pem", 0600, cert_pem, key_pem);
  put("users", 0640,
      "# user:hash\nalice:$6$salt$"
      "IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6Wo"
      "uIL9AjRbLCelDCy.g.\n",
      "");
  put("users-bad", 0640, "alice:secret\n", "");
  put("users-open", 0644, "alice:$6$salt$x\n", "");
  char p[4200];
  snprintf(p, sizeof p, "%s/spool", fixture);
  CHECK(mkdir(p, 0700) == 0);
  snprintf(p, sizeof p, "%s/log", fixture);
  CHECK(mkdir(p, 0700) == 0);
  put("log/mxgwd.log", 0600, "", "");
  for (size_t i = 0; fixture_files[i]; i++)
    fixture_stat(i, &fixture_st[i]);
  return 0;
}

/* May the file checks run on this document? (No absolute path, no "..".) */
static bool contained(json_t *v) {
  const char *key;
  json_t *e;
  size_t i;
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    json_object_foreach(v, key, e) {
      if (!contained(e))
        return false;
    }
    return true;
  case JSON_ARRAY:
    json_array_foreach(v, i, e) {
      if (!contained(e))
        return false;
    }
    return true;
  case JSON_STRING: {
    const char *s = json_string_value(v);
    return s[0] != '/' && !strstr(s, "..");
  }
  default:
    return true;
  }
}

static void check_msgs(const mxgwd_msgs *m) {
  CHECK(m->n <= m->cap);
  for (size_t i = 0; i < m->n; i++) {
    const char *s = m->v[i];
    CHECK(s != NULL && s[0] != '\0');
    CHECK(strchr(s, '\n') == NULL && strchr(s, '\r') == NULL);
  }
}

static bool has(const mxgwd_msgs *m, const char *s) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->v[i], s) == 0)
      return true;
  return false;
}

static bool absolute(const char *p) { return p == NULL || p[0] == '/'; }

static void check_config(const mxgwd_config *c) {
  CHECK(c->file != NULL && c->hostname != NULL && strchr(c->hostname, '.'));
  CHECK(c->n_listeners >= 1 && c->n_domains >= 1);
  CHECK(c->lmtp.n_backends >= 1 && c->lmtp.n_backends <= 16);
  CHECK(c->logging.n_outputs >= 1);
  CHECK(c->spool.directory != NULL && absolute(c->spool.directory));
  CHECK(absolute(c->auth_users_file) && absolute(c->lmtp.tls_ca_file));
  for (size_t i = 0; i < c->n_listeners; i++) {
    const mxgwd_listener *l = &c->listeners[i];
    CHECK(l->address != NULL && l->port >= 1 && l->port <= 65535);
    CHECK(l->mode >= MXGWD_MODE_SMTP && l->mode <= MXGWD_MODE_SMTPS);
    CHECK(l->tls_policy >= MXGWD_TLS_NONE &&
          l->tls_policy <= MXGWD_TLS_ENCRYPT);
    CHECK(l->tls_policy == MXGWD_TLS_NONE || l->cert_file || l->n_certs);
    CHECK(l->mode != MXGWD_MODE_SMTPS || l->tls_policy == MXGWD_TLS_ENCRYPT);
    CHECK(!l->auth || c->auth_users_file);
    CHECK(absolute(l->cert_file) && absolute(l->key_file));
    CHECK(!l->key_file || l->cert_file);
    for (size_t k = 0; k < l->n_certs; k++) {
      CHECK(l->certs[k].cert_file && absolute(l->certs[k].cert_file));
      CHECK(absolute(l->certs[k].key_file));
      for (size_t j = 0; j < l->certs[k].n_server_names; j++)
        CHECK(l->certs[k].server_names[j][0] != '\0');
    }
  }
  for (size_t i = 0; i < c->n_domains; i++)
    CHECK(c->domains[i] && c->domains[i][0]);
  for (size_t i = 0; i < c->lmtp.n_backends; i++)
    CHECK(c->lmtp.backends[i] && c->lmtp.backends[i][0]);
  CHECK(c->recipients.mode >= MXGWD_RV_NONE &&
        c->recipients.mode <= MXGWD_RV_LMTP_PROBE);
  for (int i = 0; i < MXGWD_SPF_RESULTS; i++)
    CHECK(c->spf.action[i] >= MXGWD_SPF_ACCEPT &&
          c->spf.action[i] <= MXGWD_SPF_DEFER);
  CHECK(c->spool.bounce == MXGWD_BOUNCE_KEEP ||
        c->spool.bounce == MXGWD_BOUNCE_DSN);
  CHECK(c->lmtp.starttls >= MXGWD_LMTP_TLS_NEVER &&
        c->lmtp.starttls <= MXGWD_LMTP_TLS_REQUIRE);
  CHECK(c->spool.backoff_initial_ms <= c->spool.backoff_max_ms);
  for (size_t i = 0; i < c->logging.n_outputs; i++) {
    const mxgwd_log_output *o = &c->logging.outputs[i];
    CHECK(o->destination >= MXGWD_LOG_STDERR &&
          o->destination <= MXGWD_LOG_SYSLOG);
    CHECK(o->format == MXGWD_LOG_TEXT || o->format == MXGWD_LOG_JSON);
    CHECK((o->destination == MXGWD_LOG_FILE) == (o->path != NULL));
    CHECK(absolute(o->path));
    CHECK((o->destination == MXGWD_LOG_SYSLOG) == (o->ident != NULL));
  }
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK(f != NULL);
  mxgwd_config_summary(c, f);
  CHECK(fclose(f) == 0);
  CHECK(len > 0 && buf[len - 1] == '\n');
  free(buf);
}

/* Parse once; check the result; on success check the configuration. */
static int parse(const uint8_t *data, size_t size, unsigned checks, bool json,
                 mxgwd_msgs *err, mxgwd_msgs *warn) {
  mxgwd_config *c = (mxgwd_config *)(uintptr_t)1;
  int rv = mxgwd_config_parse((const char *)data, size, fixture, checks, &c,
                              err, warn);
  CHECK(rv == 0 || rv == -1);
  if (getenv("MXGW_FUZZ_VERBOSE")) { /* to check what a seed exercises */
    fprintf(stderr, "checks=%u: %s\n", checks, rv ? "invalid" : "valid");
    for (size_t i = 0; i < err->n; i++)
      fprintf(stderr, "  error: %s\n", err->v[i]);
    for (size_t i = 0; i < warn->n; i++)
      fprintf(stderr, "  warning: %s\n", warn->v[i]);
  }
  check_msgs(err);
  check_msgs(warn);
  if (rv == 0) {
    CHECK(c != NULL && err->n == 0);
    check_config(c);
    mxgwd_config_free(c);
  } else {
    CHECK(c == NULL && err->n >= 1);
  }
  if (!json) {
    CHECK(rv == -1 && err->n == 1 && warn->n == 0);
    CHECK(strncmp(err->v[0], "line ", 5) == 0);
    return rv;
  }
  for (size_t i = 0; i < err->n; i++) {
    const char *s = err->v[i];
    if (strncmp(s, "the configuration must be a JSON object, not ", 45) == 0)
      continue;
    /* (a key may itself hold ": ", e.g. {": [": 1}) */
    const char *sep = strstr(s, ": ");
    CHECK(sep != NULL && sep[2] != '\0');
  }
  return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t je;
  json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
                            &je);
  bool json = root != NULL, files = json && contained(root);
  json_decref(root);

  mxgwd_msgs e0 = {0}, w0 = {0}, e1 = {0}, w1 = {0};
  int rv0 = parse(data, size, 0, json, &e0, &w0);
  if (files) {
    int rv1 = parse(data, size, MXGWD_CHECK_FILES, true, &e1, &w1);
    CHECK(rv1 == -1 || rv0 == 0);
    if (e0.n < 256)
      for (size_t i = 0; i < e0.n; i++)
        CHECK(has(&e1, e0.v[i]));
    if (w0.n < 256)
      for (size_t i = 0; i < w0.n; i++)
        CHECK(has(&w1, w0.v[i]));
    for (size_t i = 0; fixture_files[i]; i++) {
      struct stat st;
      fixture_stat(i, &st);
      CHECK(st.st_ino == fixture_st[i].st_ino &&
            st.st_size == fixture_st[i].st_size &&
            st.st_mode == fixture_st[i].st_mode &&
            st.st_mtim.tv_sec == fixture_st[i].st_mtim.tv_sec &&
            st.st_mtim.tv_nsec == fixture_st[i].st_mtim.tv_nsec);
    }
  }
  mxgwd_msgs_free(&e0);
  mxgwd_msgs_free(&w0);
  mxgwd_msgs_free(&e1);
  mxgwd_msgs_free(&w1);
  return 0;
}
