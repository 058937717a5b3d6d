/* SPDX-License-Identifier: MIT */
/*
 * mxgw_tls.h: TLS contexts on OpenSSL 3: certificate chains and keys from
 * PEM files or memory, validation with precise errors, inspection, SNI,
 * RSA and ECDSA side by side, and hot reload without a restart.
 *
 * A server context is attached to a session configuration with
 * mxgw_session_config_set_tls(); sessions then run STARTTLS (or implicit
 * TLS) themselves through memory BIOs: the session stays sans-IO.
 *
 * Reload is atomic: a context holds a *generation* (an OpenSSL SSL_CTX per
 * certificate set). mxgw_tls_reload() builds a new generation from the same
 * files and swaps it in only if everything validates; sessions already
 * running keep the generation they started with; a failed reload keeps
 * serving the old one and says why (mxgw_tls_errmsg()).
 *
 * Ownership: strings returned point into context memory and stay valid
 * until the next call that changes the context (add, load, reload, set).
 * Strings passed in are copied.
 * Threading: configure and reload a context from one thread. Sessions on
 * other threads may start handshakes from it concurrently: the generation
 * swap is protected and reference counted.
 */
#ifndef MXGW_TLS_H
#define MXGW_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_tls mxgw_tls;

/** Role of a context. */
typedef enum mxgw_tls_role {
  MXGW_TLS_SERVER = 1,
  MXGW_TLS_CLIENT = 2
} mxgw_tls_role;

/** Protocol versions for MXGW_TLS_MIN_VERSION / MAX_VERSION. */
typedef enum mxgw_tls_version {
  MXGW_TLS_V1_2 = 12,
  MXGW_TLS_V1_3 = 13
} mxgw_tls_version;

/** Integer options (mxgw_tls_set_int). Defaults in brackets. */
typedef enum mxgw_tls_opt {
  MXGW_TLS_MIN_VERSION = 1,        /**< [MXGW_TLS_V1_2] */
  MXGW_TLS_MAX_VERSION = 2,        /**< [MXGW_TLS_V1_3] */
  /** Refuse a private key file readable by group or others (1), or only
   *  warn (0). [1] */
  MXGW_TLS_STRICT_KEY_MODE = 3,
  /** Warn when a certificate expires within this many days. [30] */
  MXGW_TLS_EXPIRY_WARN_DAYS = 4,
  /** Refuse an expired or not yet valid certificate (1) or warn (0). [1] */
  MXGW_TLS_REFUSE_EXPIRED = 5,
  /** Refuse a certificate that does not cover MXGW_TLS_HOSTNAME (1) or
   *  warn (0). Only checked when HOSTNAME is set. [1] */
  MXGW_TLS_REFUSE_HOSTNAME_MISMATCH = 6,
  /** Server: ask for a client certificate (1) and require it (2). [0] */
  MXGW_TLS_CLIENT_CERT = 7,
  /** Client: verify the server's chain and name (1) or not (0). [1] */
  MXGW_TLS_VERIFY_PEER = 8,
  /** Server session cache and tickets (resumption). [1] */
  MXGW_TLS_SESSION_CACHE = 9,
  /** Minimum interval between file checks in mxgw_tls_check_reload(), ms.
   *  [60000] */
  MXGW_TLS_RELOAD_INTERVAL_MS = 10
} mxgw_tls_opt;

/** String options (mxgw_tls_set_str). */
typedef enum mxgw_tls_opt_str {
  /** TLS 1.2 cipher list (OpenSSL syntax). [OpenSSL's secure default] */
  MXGW_TLS_CIPHERS = 100,
  /** TLS 1.3 ciphersuites. [OpenSSL's default] */
  MXGW_TLS_CIPHERSUITES = 101,
  /** CA file for verifying peers (client certificates, or servers). A
   *  server also uses it (with the system trust store) to tell whether its
   *  own chain is complete. */
  MXGW_TLS_CA_FILE = 102,
  /** CA directory (hashed, c_rehash). */
  MXGW_TLS_CA_PATH = 103,
  /** The host name the default certificate must cover (server; a
   *  certificate added for an SNI name must cover that name), or the name
   *  to verify and send as SNI (client) when a connection names none. */
  MXGW_TLS_HOSTNAME = 104,
  /** Passphrase for encrypted private keys. */
  MXGW_TLS_KEY_PASSPHRASE = 105
} mxgw_tls_opt_str;

/**
 * Create an empty context.
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM, MXGW_E_TLS (OpenSSL failed).
 */
MXGW_EXTERN int mxgw_tls_new(mxgw_tls **out, int role, const mxgw_mem *mem);

/** Release the caller's reference (configurations hold their own). NULL is
 *  a no-op. */
MXGW_EXTERN void mxgw_tls_free(mxgw_tls *t);

/** Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE. Takes effect at the
 *  next load/reload. */
MXGW_EXTERN int mxgw_tls_set_int(mxgw_tls *t, int key, int64_t value);
/** Errors: MXGW_E_INVAL, MXGW_E_NOMEM. Takes effect at the next load. */
MXGW_EXTERN int mxgw_tls_set_str(mxgw_tls *t, int key, const char *value);

/**
 * Add a certificate chain and its private key from files. Several pairs
 * may be added: one per key type (RSA and ECDSA, chosen per client) and per
 * SNI name. The files are read and validated now (see "Validation" below)
 * and remembered for reloads.
 * @param sni_name   NULL for the default certificate, or a host name
 *                   ("mx.example.org", "*.example.org") selected by SNI.
 * @param chain_file PEM: the leaf certificate first, then intermediates
 *                   (another order is served corrected, with a warning).
 * @param key_file   PEM private key (may be the same file as chain_file, or
 *                   NULL for that).
 * Errors: MXGW_E_IO (missing/unreadable file), MXGW_E_PERM (key readable by
 * group/others with STRICT_KEY_MODE), MXGW_E_SYNTAX (not PEM, DER given,
 * empty, garbage), MXGW_E_TLS (key does not match, encrypted key without
 * passphrase, expired/not yet valid, host name not covered, or OpenSSL
 * refusing it, e.g. a key too weak for its security level), MXGW_E_INVAL
 * (bad SNI name, SNI name on a client context, a second certificate of the
 * same key type for the same name). The detail, naming the file, is in
 * mxgw_tls_errmsg(); the context is unchanged. On success the pair's
 * warnings replace mxgw_tls_warning()'s list.
 */
MXGW_EXTERN int mxgw_tls_add_cert_files(mxgw_tls *t, const char *sni_name,
                                        const char *chain_file,
                                        const char *key_file);

/** Same from memory (copied; reloads reuse the copy). key_pem NULL: the key
 *  is in chain_pem. */
MXGW_EXTERN int mxgw_tls_add_cert_pem(mxgw_tls *t, const char *sni_name,
                                      const char *chain_pem, size_t chain_len,
                                      const char *key_pem, size_t key_len);

/**
 * Build the serving generation from everything added (first load), or
 * rebuild it from the same files (reload). Atomic: on any error the
 * previous generation stays in use. Warnings (chain out of order or
 * incomplete, expiring soon, key mode with STRICT_KEY_MODE off) do not fail
 * the load; read them with mxgw_tls_warning() (the list is that of this
 * attempt, successful or not). A client context needs one call too, even
 * without a certificate. Handshakes whose ClientHello arrives after the
 * swap get the new certificates; those past it keep the old ones.
 * Errors: as mxgw_tls_add_cert_files(), plus MXGW_E_STATE (nothing added,
 * for a server), MXGW_E_INVAL (MIN_VERSION above MAX_VERSION, CLIENT_CERT 2
 * without CA_FILE/CA_PATH), MXGW_E_IO/MXGW_E_SYNTAX (CA file or path).
 */
MXGW_EXTERN int mxgw_tls_reload(mxgw_tls *t);

/**
 * Reload if the files changed (device, inode, size, mode, mtime with
 * nanoseconds: a renewal tool that writes new files and renames them is
 * seen; so is a chmod), at most every MXGW_TLS_RELOAD_INTERVAL_MS (the
 * first call always looks). A failed attempt is not retried until the files
 * change again (a renewal caught between its two renames is completed by
 * the next check). Pairs added from memory are not watched.
 * @param now_ms  a monotonic clock in milliseconds.
 * @return 1 reloaded, 0 nothing to do, or a negative error (the old
 *         generation keeps serving; mxgw_tls_errmsg() says why).
 */
MXGW_EXTERN int mxgw_tls_check_reload(mxgw_tls *t, int64_t now_ms);

/** Generation counter: starts at 1 after the first successful load and
 *  grows with every successful reload. 0 before any. */
MXGW_EXTERN uint64_t mxgw_tls_generation(const mxgw_tls *t);

/** Detail of the last error (never NULL, "" if none). */
MXGW_EXTERN const char *mxgw_tls_errmsg(const mxgw_tls *t);

/** Warnings of the last load: count, and text i. */
MXGW_EXTERN size_t mxgw_tls_warning_count(const mxgw_tls *t);
MXGW_EXTERN int mxgw_tls_warning(const mxgw_tls *t, size_t i, const char **ptr,
                                 size_t *len);

/* ---- inspection ------------------------------------------------------- */

/** Keys for mxgw_tls_cert_str() / mxgw_tls_cert_int(). */
typedef enum mxgw_cert_info {
  MXGW_CERT_SUBJECT = 1,     /**< RFC 2253 form, e.g. "CN=mx.example.org" */
  MXGW_CERT_ISSUER = 2,
  MXGW_CERT_SAN = 3,         /**< DNS names, comma-separated */
  MXGW_CERT_NOT_BEFORE = 4,  /**< "2026-11-28T04:37:02Z" */
  MXGW_CERT_NOT_AFTER = 5,
  MXGW_CERT_KEY_TYPE = 6,    /**< "RSA", "EC", "ED25519" */
  MXGW_CERT_FINGERPRINT = 7, /**< SHA-256, "AB:CD:..." */
  MXGW_CERT_FILE = 8,        /**< chain file ("" from memory) */
  MXGW_CERT_SNI_NAME = 9,    /**< "" for the default */
  MXGW_CERT_KEY_BITS = 100,
  MXGW_CERT_DAYS_LEFT = 101, /**< negative once expired */
  MXGW_CERT_SELF_SIGNED = 102,
  MXGW_CERT_CHAIN_LENGTH = 103
} mxgw_cert_info;

/** Certificates of the serving generation (one per added pair). */
MXGW_EXTERN size_t mxgw_tls_cert_count(const mxgw_tls *t);
/** Errors: MXGW_E_RANGE (i), MXGW_E_INVAL (key). */
MXGW_EXTERN int mxgw_tls_cert_str(const mxgw_tls *t, size_t i, int key,
                                  const char **ptr, size_t *len);
MXGW_EXTERN int mxgw_tls_cert_int(const mxgw_tls *t, size_t i, int key,
                                  int64_t *out);
/** All of the above as one JSON document (for logs and diagnostics). */
MXGW_EXTERN int mxgw_tls_json(mxgw_tls *t, const char **ptr, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_TLS_H */
