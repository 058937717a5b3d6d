/* SPDX-License-Identifier: MIT */
/*
 * config.h: mxgwd's JSON configuration (docs/mxgwd.md is the reference for
 * every key). mxgwd_config_load() reads a file with jansson, checks every
 * key (unknown keys, types, ranges, required keys, duplicates, files) and
 * fills a mxgwd_config with every default applied. Errors are collected,
 * not stopped at: each is one line "path: problem", the path in the form
 * `listeners[1].tls.key_file`, e.g.
 *
 *   listeners[1].tls.key_file: /etc/ssl/gw.key: private key file mode 0644
 *   is readable by others; chmod 600 /etc/ssl/gw.key
 *
 * Relative paths in the file are resolved against the directory of the
 * configuration file (so a config and its certificates can move together).
 *
 * This module is daemon code, not library API: it is linked into mxgwd and
 * into the Criterion unit test tests/mxgwd/test_mxgwd_config.c.
 * Ownership: a mxgwd_config owns all its strings; mxgwd_config_free().
 */
#ifndef MXGWD_CONFIG_H
#define MXGWD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum mxgwd_mode { MXGWD_MODE_SMTP = 0, MXGWD_MODE_SUBMISSION, MXGWD_MODE_SMTPS };
enum mxgwd_tls_policy { MXGWD_TLS_NONE = 0, MXGWD_TLS_MAY, MXGWD_TLS_ENCRYPT };
enum mxgwd_rcpt_mode { MXGWD_RV_NONE = 0, MXGWD_RV_PROXY, MXGWD_RV_LMTP_PROBE };
/* SPF actions, per result. */
enum mxgwd_spf_action {
  MXGWD_SPF_ACCEPT = 0, /* accept (the Received-SPF header records it) */
  MXGWD_SPF_REJECT,     /* 550 5.7.23 (RFC 7372) at MAIL FROM */
  MXGWD_SPF_DEFER       /* 451 4.7.24 / 4.4.3 at MAIL FROM */
};
enum mxgwd_log_dest { MXGWD_LOG_STDERR = 0, MXGWD_LOG_FILE, MXGWD_LOG_SYSLOG };
enum mxgwd_log_format { MXGWD_LOG_TEXT = 0, MXGWD_LOG_JSON };
enum mxgwd_bounce { MXGWD_BOUNCE_KEEP = 0, MXGWD_BOUNCE_DSN };
enum mxgwd_starttls { MXGWD_LMTP_TLS_NEVER = 0, MXGWD_LMTP_TLS_MAY,
                      MXGWD_LMTP_TLS_REQUIRE };

/* The seven SPF results, in mxgw_spf_result order (mxgw_spf.h). */
#define MXGWD_SPF_RESULTS 7
extern const char *const mxgwd_spf_result_names[MXGWD_SPF_RESULTS];

/* One more certificate pair of a listener (tls.certificates[i]). */
typedef struct mxgwd_cert {
  char *cert_file;      /* absolute */
  char *key_file;       /* absolute, or NULL (then in cert_file) */
  char **server_names;  /* SNI names, lower case ("*.example.org" allowed) */
  size_t n_server_names; /* 0: a default pair (e.g. ECDSA beside RSA) */
} mxgwd_cert;

typedef struct mxgwd_listener {
  char *address;       /* numeric IPv4 or IPv6 ("0.0.0.0", "::" = any) */
  int port;            /* 1..65535 */
  int mode;            /* enum mxgwd_mode */
  int tls_policy;      /* enum mxgwd_tls_policy */
  bool proxy_protocol; /* PROXY v1/v2 header expected first */
  char *cert_file;     /* absolute, or NULL */
  char *key_file;      /* absolute, or NULL (then in cert_file) */
  mxgwd_cert *certs;   /* tls.certificates, served beside cert_file */
  size_t n_certs;
  bool auth;           /* AUTH offered (submission, smtps) */
} mxgwd_listener;

typedef struct mxgwd_log_output {
  int destination; /* enum mxgwd_log_dest */
  int format;      /* enum mxgwd_log_format */
  char *path;      /* file destination: absolute path */
  int facility;    /* syslog facility (LOG_MAIL...) */
  char *ident;     /* syslog ident ["mxgwd"] */
} mxgwd_log_output;

typedef struct mxgwd_config {
  char *file;      /* the configuration file (absolute), or "" from text */
  char *hostname;  /* our name: greeting, Received, LHLO, TLS name check */
  int64_t workers; /* event loops (threads); 0 = one per CPU */
  int64_t policy_workers; /* threads for AUTH checks and RCPT probes */
  int64_t tls_check_interval_ms; /* certificate file checks; 0 = SIGHUP only */
  int64_t shutdown_timeout_ms; /* SIGTERM: sessions finish, then 421 */
  char *auth_users_file; /* "user:crypt-hash" lines, or NULL */
  bool auth_relay;       /* authenticated clients may send anywhere */

  mxgwd_listener *listeners;
  size_t n_listeners;

  char **domains; /* lower case; "*.example.org" covers subdomains */
  size_t n_domains;

  struct {
    int mode; /* enum mxgwd_rcpt_mode */
    int64_t cache_ttl_ms;
    int64_t negative_cache_ttl_ms;
    int64_t timeout_ms; /* one probe, connect to last reply */
  } recipients;

  struct {
    bool enabled;
    int action[MXGWD_SPF_RESULTS]; /* enum mxgwd_spf_action per result */
    char **dns_servers;            /* "IP", "IP:PORT", "[v6]:PORT" */
    size_t n_dns_servers;
    int64_t timeout_ms;
  } spf;

  struct {
    int64_t max_connections;
    int64_t max_connections_per_ip;
    int64_t connection_rate_per_ip;   /* new connections per minute */
    int64_t max_errors;
    int64_t max_junk_commands;
    int64_t max_unknown_commands;
    int64_t max_message_size;
    int64_t max_recipients;
    int64_t max_messages_per_connection;
    int64_t greeting_delay_ms;
    int64_t command_timeout_ms;
    int64_t data_timeout_ms;
    int64_t proxy_timeout_ms; /* PROXY header after connect */
  } limits;

  struct {
    char *directory; /* absolute */
    bool sync;       /* fsync before 250 (the durability promise) */
    int64_t commit_workers; /* queue commit threads (group commit width) */
    bool journal;             /* the queue's incoming journal */
    int64_t journal_max_body; /* largest body journaled, octets */
    int64_t max_lifetime_ms;
    int64_t delay_warning_ms; /* "delayed" DSN after this long, 0 = off */
    int64_t backoff_initial_ms;
    int64_t backoff_factor;
    int64_t backoff_max_ms;
    int bounce;       /* enum mxgwd_bounce */
    char *bounce_recipient; /* DSNs go here instead of the sender, or NULL */
  } spool;

  struct {
    char **backends; /* in order: the first, then fallbacks */
    size_t n_backends;
    int64_t concurrency;
    bool xclient;
    int starttls;          /* enum mxgwd_starttls */
    char *tls_ca_file;     /* absolute, or NULL: the system store */
    char *tls_servername;  /* name to verify, or NULL: none */
    bool tls_verify;       /* verify the backend's certificate */
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    int64_t data_timeout_ms;
  } lmtp;

  struct {
    mxgwd_log_output *outputs;
    size_t n_outputs;
    bool log_commands; /* each SMTP command and reply (debugging) */
  } logging;
} mxgwd_config;

/* A list of messages ("path: problem"). */
typedef struct mxgwd_msgs {
  char **v;
  size_t n, cap;
} mxgwd_msgs;

void mxgwd_msgs_free(mxgwd_msgs *m);

/* Checks done beyond the JSON itself. Pure unit tests turn them off. */
enum {
  MXGWD_CHECK_FILES = 1, /* certificates, keys, directories, log files */
};

/*
 * Parse and validate. On success (0) *out is a complete configuration; on
 * failure (-1) *out is NULL and `errors` holds every problem found (at least
 * one). Warnings (not fatal) go to `warnings` either way. `base_dir` resolves
 * relative paths (mxgwd_config_load: the file's directory).
 */
int mxgwd_config_parse(const char *text, size_t len, const char *base_dir,
                       unsigned checks, mxgwd_config **out, mxgwd_msgs *errors,
                       mxgwd_msgs *warnings);
int mxgwd_config_load(const char *file, unsigned checks, mxgwd_config **out,
                      mxgwd_msgs *errors, mxgwd_msgs *warnings);
void mxgwd_config_free(mxgwd_config *c);

/* The summary --check-config prints: one line per listener etc. */
void mxgwd_config_summary(const mxgwd_config *c, FILE *f);

#endif /* MXGWD_CONFIG_H */
