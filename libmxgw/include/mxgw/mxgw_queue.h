/* SPDX-License-Identifier: MIT */
/*
 * mxgw_queue.h: the durable message queue, a spool directory in which
 * nothing accepted is ever lost. A message is a body file plus a JSON
 * metadata file (envelope, per-recipient state, attempts, client, TLS and
 * SPF results). It is written through a mxgw_queue_msg (begin, write body
 * chunks, set the envelope, commit); only when the commit has returned
 * MXGW_OK are both files and their directory entry on stable storage, and
 * only then may the SMTP server send its 250. Messages move between the
 * states incoming, active, deferred, hold and failed by atomic renames.
 * Opening the queue recovers every message (active ones go back to
 * incoming: delivery is at least once), removes orphan temporary files and
 * quarantines incomplete entries in corrupt/. See docs/queue.md.
 *
 * Group commit: concurrent commits share the directory fsync. Blocking
 * callers on several threads use mxgw_queue_commit(); an event loop uses
 * mxgw_queue_commit_async(), watches mxgw_queue_eventfd() and collects
 * results with mxgw_queue_completed().
 *
 * Threading: unlike most libmxgw handles, a mxgw_queue may be used by any
 * number of threads at once (it locks internally). A mxgw_queue_msg or a
 * mxgw_queue_entry is used by one thread at a time.
 *
 * Ownership: strings returned through `const char **ptr, size_t *len` point
 * into the handle they were read from and stay valid until the next call
 * that changes that handle, or its _free. They are NUL-terminated (the
 * terminator is not counted in *len). Strings passed in are copied.
 */
#ifndef MXGW_QUEUE_H
#define MXGW_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "mxgw_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mxgw_queue mxgw_queue;
typedef struct mxgw_queue_msg mxgw_queue_msg;
typedef struct mxgw_queue_entry mxgw_queue_entry;
typedef struct mxgw_queue_iter mxgw_queue_iter;

/** Message states: one directory each under the spool. */
typedef enum mxgw_queue_state {
  MXGW_QSTATE_INCOMING = 1, /**< committed, waiting for a first attempt */
  MXGW_QSTATE_ACTIVE = 2,   /**< being delivered */
  MXGW_QSTATE_DEFERRED = 3, /**< waiting for its next attempt time */
  MXGW_QSTATE_HOLD = 4,     /**< held by the operator */
  MXGW_QSTATE_FAILED = 5,   /**< every recipient final, some failed; kept */
  MXGW_QSTATE_CORRUPT = 6   /**< quarantine: incomplete entries found at
                                 recovery (never deleted by the library) */
} mxgw_queue_state;

/** Per-recipient states. */
typedef enum mxgw_rcpt_state {
  MXGW_RCPT_PENDING = 0,   /**< not tried yet */
  MXGW_RCPT_DELIVERED = 1, /**< 2xx */
  MXGW_RCPT_FAILED = 2,    /**< 5xx: permanent */
  MXGW_RCPT_DEFERRED = 3   /**< 4xx: retried */
} mxgw_rcpt_state;

/** Integer options for mxgw_queue_set_int(), before mxgw_queue_open(). */
typedef enum mxgw_queue_opt {
  /** Create the spool directories if missing (1) or fail (0). [1] */
  MXGW_QOPT_CREATE = 1,
  /** Own the spool: take the exclusive lock (DIR/lock) and run recovery at
   *  open. A second owner gets MXGW_E_BUSY. Operator tools set 0: they can
   *  list and manage a spool that a running gateway owns. [1] */
  MXGW_QOPT_OWNER = 2,
  /** Worker threads for mxgw_queue_commit_async() (started at open; 0
   *  disables the asynchronous API). Each does the file fsyncs of one
   *  message, so this is the number of file fsyncs in flight. [4] */
  MXGW_QOPT_ASYNC_WORKERS = 3,
  /** Most messages one directory fsync covers (group commit). [1024] */
  MXGW_QOPT_MAX_BATCH = 4,
  /** Durability: 1 = fdatasync files and fsync directories (the default
   *  and the only setting under which the durability promise holds);
   *  0 = no syncing at all (tests and benchmarks of the CPU path). [1] */
  MXGW_QOPT_SYNC = 5,
  /** The incoming journal (docs/queue.md "The journal"), owner only: a
   *  message whose body fits MXGW_QOPT_JOURNAL_MAX_BODY is committed by
   *  appending it to a journal segment (journal/NNN.log) instead of
   *  creating two files; a group commit is one write and one fdatasync for
   *  all its messages. Journal messages are in state incoming (active once
   *  taken); delivered ones are marked done in the journal, and one that is
   *  deferred, failed or saved is first written out as files like any
   *  other. Durability is the same (the commit returns only when the
   *  message is on stable storage); a removal is durable with the next
   *  commit or segment removal instead of at once, so a crash may deliver a
   *  message twice, never lose one. [0] */
  MXGW_QOPT_JOURNAL = 6,
  /** Largest body (octets) committed to the journal; the body is buffered
   *  in memory up to this size, larger ones go to a file as without the
   *  journal. 1 KiB..64 MiB. [1 MiB] */
  MXGW_QOPT_JOURNAL_MAX_BODY = 7,
  /** Journal segment size (octets) after which a new segment is started;
   *  a segment file is removed once every message in it is done and every
   *  older one is gone. 64 KiB..1 GiB. [32 MiB] */
  MXGW_QOPT_JOURNAL_SEGMENT = 8,
  /** Most messages in the journal at once (incoming or active); beyond
   *  that, commits make files (a backend too slow to keep up must not grow
   *  memory without bound). 1..10,000,000. [100,000] */
  MXGW_QOPT_JOURNAL_MAX_MSGS = 9
} mxgw_queue_opt;

/** Counters for mxgw_queue_get_int() (monotonic since open unless noted). */
typedef enum mxgw_queue_stat {
  MXGW_QSTAT_COMMITS = 100,       /**< commits that returned MXGW_OK */
  MXGW_QSTAT_COMMIT_ERRORS = 101, /**< commits that failed */
  MXGW_QSTAT_FILE_SYNCS = 102,    /**< fdatasync() calls on files */
  MXGW_QSTAT_DIR_SYNCS = 103,     /**< fsync() calls on directories */
  MXGW_QSTAT_BATCHES = 104,       /**< group commits (directory syncs
                                       made on behalf of commits) */
  MXGW_QSTAT_RECOVERED_ACTIVE = 105, /**< active messages requeued at open */
  MXGW_QSTAT_QUARANTINED = 106,   /**< entries moved to corrupt/ at open */
  MXGW_QSTAT_ORPHANS_REMOVED = 107, /**< temporary files removed at open */
  MXGW_QSTAT_RECOVERED = 108,     /**< messages found at open, any state
                                       (journal messages included) */
  MXGW_QSTAT_JOURNAL_COMMITS = 109, /**< commits into the journal (also
                                         counted in MXGW_QSTAT_COMMITS) */
  MXGW_QSTAT_JOURNAL_SPILLS = 110,  /**< journal messages written out as
                                         files (deferred, failed, saved) */
  MXGW_QSTAT_JOURNAL_MESSAGES = 111, /**< messages in the journal now */
  MXGW_QSTAT_JOURNAL_SEGMENTS = 112, /**< journal segment files now */
  MXGW_QSTAT_JOURNAL_RECOVERED = 113, /**< journal messages written to
                                           incoming/ at open */
  MXGW_QSTAT_JOURNAL_TORN = 114   /**< segments whose tail was unreadable at
                                       open (an interrupted, never
                                       acknowledged write) */
} mxgw_queue_stat;

/** String keys for mxgw_queue_msg_set_str() and mxgw_queue_entry_get_str(). */
typedef enum mxgw_queue_key {
  MXGW_QKEY_ID = 1,          /**< queue ID (read only) */
  MXGW_QKEY_SENDER = 2,      /**< reverse path without <>, "" for <> */
  MXGW_QKEY_ENVID = 3,       /**< MAIL ENVID= */
  MXGW_QKEY_RET = 4,         /**< "FULL" or "HDRS" */
  MXGW_QKEY_BODY = 5,        /**< "7BIT" or "8BITMIME" */
  MXGW_QKEY_CLIENT_ADDR = 6, /**< client IP address */
  MXGW_QKEY_CLIENT_HELO = 7, /**< client HELO/EHLO argument */
  MXGW_QKEY_CLIENT_HOST = 8, /**< client host name */
  MXGW_QKEY_TLS_JSON = 9,    /**< TLS details: any JSON value, free-form */
  MXGW_QKEY_SPF_JSON = 10,   /**< SPF result: any JSON value, free-form */
  MXGW_QKEY_BODY_PATH = 11,  /**< current path of the body file (read only,
                                  entries only). MXGW_E_NOTFOUND for a
                                  message in the journal, which has no file
                                  of its own: use mxgw_queue_entry_body() */
  /* integers (mxgw_queue_msg_set_int / mxgw_queue_entry_get_int) */
  MXGW_QKEY_SMTPUTF8 = 100,     /**< 1 if MAIL had SMTPUTF8 */
  MXGW_QKEY_ARRIVAL = 101,      /**< arrival, Unix seconds [commit time] */
  MXGW_QKEY_ATTEMPTS = 102,     /**< delivery attempts so far [0] */
  MXGW_QKEY_NEXT_ATTEMPT = 103, /**< next attempt, Unix seconds [0 = now] */
  MXGW_QKEY_SIZE = 104,         /**< body size in octets (read only) */
  MXGW_QKEY_STATE = 105,        /**< mxgw_queue_state (read only) */
  MXGW_QKEY_RCPT_COUNT = 106,   /**< recipients (read only) */
  MXGW_QKEY_IN_JOURNAL = 107    /**< 1 if the message is in the journal
                                     (read only) */
} mxgw_queue_key;

/** Recipient keys for mxgw_queue_entry_rcpt_get_str() / _get_int(). */
typedef enum mxgw_queue_rkey {
  MXGW_QRKEY_ADDR = 1,     /**< forward path without <> */
  MXGW_QRKEY_ORCPT = 2,    /**< ORCPT "type;address", "" if none */
  MXGW_QRKEY_ENHANCED = 3, /**< last enhanced status, e.g. "4.4.1" */
  MXGW_QRKEY_TEXT = 4,     /**< last result text */
  MXGW_QRKEY_STATE = 100,  /**< mxgw_rcpt_state */
  MXGW_QRKEY_NOTIFY = 101, /**< mxgw_notify bits (mxgw_session.h), 0 = none */
  MXGW_QRKEY_CODE = 102    /**< last reply code, 0 if none */
} mxgw_queue_rkey;

/** Operator actions for mxgw_queue_manage(). */
typedef enum mxgw_queue_op {
  /** deferred/incoming/failed -> hold */
  MXGW_QOP_HOLD = 1,
  /** hold -> incoming (due now) */
  MXGW_QOP_RELEASE = 2,
  /** remove body and metadata (not active messages) */
  MXGW_QOP_DELETE = 3,
  /** deferred/hold/failed -> incoming, due now; failed and deferred
   *  recipients become pending again */
  MXGW_QOP_REQUEUE = 4,
  /** deferred -> incoming, due now (postqueue -f): deferred recipients are
   *  tried again at once; failed and delivered ones stay as they are */
  MXGW_QOP_FLUSH = 5
} mxgw_queue_op;

/** One finished asynchronous commit (fixed size, no pointers). */
typedef struct mxgw_queue_done {
  uint64_t tag; /**< the caller's tag from mxgw_queue_commit_async() */
  int status;   /**< MXGW_OK: durable, send the 250; MXGW_E_NOSPACE: 452
                     4.3.1; other errors: 451 4.3.0 */
  char id[32];  /**< the queue ID, NUL-terminated */
} mxgw_queue_done;

/* ------------------------------------------------------------------------ */
/* The queue                                                                */
/* ------------------------------------------------------------------------ */

/**
 * Create a queue handle for the spool directory `dir` (not opened yet).
 * Errors: MXGW_E_INVAL (NULL out or dir, empty dir), MXGW_E_NOMEM.
 * Ownership: free with mxgw_queue_free(). `dir` is copied.
 */
MXGW_EXTERN int mxgw_queue_new(mxgw_queue **out, const char *dir,
                               const mxgw_mem *mem);

/**
 * Set an integer option (mxgw_queue_opt) before mxgw_queue_open().
 * Errors: MXGW_E_INVAL (unknown key), MXGW_E_RANGE, MXGW_E_BUSY (opened).
 */
MXGW_EXTERN int mxgw_queue_set_int(mxgw_queue *q, int key, int64_t value);

/**
 * Read an option (mxgw_queue_opt) or a counter (mxgw_queue_stat).
 * Errors: MXGW_E_INVAL (unknown key, NULL out).
 * Context: any thread.
 */
MXGW_EXTERN int mxgw_queue_get_int(mxgw_queue *q, int key, int64_t *out);

/**
 * Open the spool: create the directories (MXGW_QOPT_CREATE), and as owner
 * (MXGW_QOPT_OWNER) take the lock and recover: remove tmp/ files, put active
 * messages back into incoming, reunite a body and its metadata split by an
 * interrupted move, and move incomplete entries to corrupt/ (counted in
 * MXGW_QSTAT_QUARANTINED; they are reported, never deleted). Starts the
 * asynchronous commit workers.
 * Errors: MXGW_E_STATE (already open), MXGW_E_NOTFOUND (missing directory
 * with CREATE off), MXGW_E_BUSY (another owner holds the lock), MXGW_E_PERM,
 * MXGW_E_IO, MXGW_E_NOSPACE, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_open(mxgw_queue *q);

/**
 * Close and free. Pending asynchronous commits are completed first (their
 * results are dropped). Objects made from the queue borrow it: free every
 * mxgw_queue_msg still being written (mxgw_queue_msg_free()), every
 * mxgw_queue_entry (mxgw_queue_entry_free()) and every mxgw_queue_iter
 * (mxgw_queue_iter_free()) BEFORE the queue; freeing them afterwards reads
 * freed memory. NULL is a no-op.
 */
MXGW_EXTERN void mxgw_queue_free(mxgw_queue *q);

/**
 * Number of messages in `state` (a directory scan). Negative on error.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE (not open), MXGW_E_IO.
 */
MXGW_EXTERN int mxgw_queue_count(mxgw_queue *q, int state);

/* ------------------------------------------------------------------------ */
/* Writing a message                                                        */
/* ------------------------------------------------------------------------ */

/**
 * Start a message: picks a unique queue ID and creates its body file in
 * tmp/. Errors: MXGW_E_INVAL, MXGW_E_STATE (queue not open), MXGW_E_NOSPACE,
 * MXGW_E_IO, MXGW_E_NOMEM.
 * Ownership: the message is the caller's until it is committed (commit
 * and commit_async take it over, successful or not) or freed with
 * mxgw_queue_msg_free(), which removes its temporary files.
 * Context: any thread.
 */
MXGW_EXTERN int mxgw_queue_begin(mxgw_queue *q, mxgw_queue_msg **out);

/**
 * Append body octets (as they will be delivered: dot-unstuffed, CRLF).
 * Streaming: the body goes to the file through a small buffer.
 * Errors: MXGW_E_INVAL, MXGW_E_NOSPACE (disk full or quota), MXGW_E_IO.
 * After an error the message can only be freed.
 */
MXGW_EXTERN int mxgw_queue_write(mxgw_queue_msg *msg, const void *buf,
                                 size_t len);

/**
 * Set an envelope string (MXGW_QKEY_SENDER ... MXGW_QKEY_SPF_JSON).
 * TLS_JSON and SPF_JSON must hold one JSON value.
 * Errors: MXGW_E_INVAL (unknown or read-only key), MXGW_E_SYNTAX (invalid
 * JSON or UTF-8), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_msg_set_str(mxgw_queue_msg *msg, int key,
                                       const char *ptr, size_t len);

/**
 * Set an envelope integer (MXGW_QKEY_SMTPUTF8, _ARRIVAL, _NEXT_ATTEMPT).
 * Errors: MXGW_E_INVAL (unknown or read-only key).
 */
MXGW_EXTERN int mxgw_queue_msg_set_int(mxgw_queue_msg *msg, int key,
                                       int64_t value);

/**
 * Add a recipient (state pending).
 * @param notify  mxgw_notify bits, 0 if NOTIFY was not given.
 * @param orcpt   ORCPT "type;address" or NULL/0.
 * Errors: MXGW_E_INVAL (empty address), MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_msg_add_rcpt(mxgw_queue_msg *msg, const char *addr,
                                        size_t addr_len, int notify,
                                        const char *orcpt, size_t orcpt_len);

/** The queue ID of a message being written. Errors: MXGW_E_INVAL. */
MXGW_EXTERN int mxgw_queue_msg_id(const mxgw_queue_msg *msg, const char **ptr,
                                  size_t *len);

/**
 * Commit and wait: fdatasync the body and the metadata, rename both into
 * incoming/, fsync incoming/ (shared with concurrent commits). When this
 * returns MXGW_OK the message survives kill -9 and power loss: send the 250.
 * On error nothing of the message is left in the spool.
 * The message is consumed either way.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE (no recipient, or an earlier write
 * failed), MXGW_E_NOSPACE (map to 452 4.3.1), MXGW_E_IO (451 4.3.0),
 * MXGW_E_NOMEM.
 * Context: any thread; it blocks for the fsyncs.
 */
MXGW_EXTERN int mxgw_queue_commit(mxgw_queue_msg *msg);

/**
 * Commit without blocking: the message goes to a worker thread; its result
 * arrives as a mxgw_queue_done with `tag` (collect with
 * mxgw_queue_completed() when mxgw_queue_eventfd() is readable).
 * The message is consumed even on error.
 * Errors (then no completion follows): MXGW_E_INVAL, MXGW_E_UNSUPPORTED
 * (MXGW_QOPT_ASYNC_WORKERS is 0), MXGW_E_STATE.
 */
MXGW_EXTERN int mxgw_queue_commit_async(mxgw_queue_msg *msg, uint64_t tag);

/**
 * A file descriptor (eventfd) that is readable while finished asynchronous
 * commits wait to be collected. -1 without async workers or before open.
 * Ownership: the queue's; do not close it.
 */
MXGW_EXTERN int mxgw_queue_eventfd(mxgw_queue *q);

/**
 * Collect up to `max` finished asynchronous commits into out[].
 * @return the number stored (0 if none), or a negative error.
 * Errors: MXGW_E_INVAL.
 */
MXGW_EXTERN int mxgw_queue_completed(mxgw_queue *q, mxgw_queue_done *out,
                                     size_t max);

/** Abandon a message being written; removes its temporary file. NULL ok. */
MXGW_EXTERN void mxgw_queue_msg_free(mxgw_queue_msg *msg);

/* ------------------------------------------------------------------------ */
/* Reading and delivering                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Load the metadata of message `id` from whichever state holds it.
 * Errors: MXGW_E_INVAL, MXGW_E_NOTFOUND, MXGW_E_SYNTAX (unreadable
 * metadata), MXGW_E_IO, MXGW_E_NOMEM.
 * Ownership: free the entry with mxgw_queue_entry_free().
 */
MXGW_EXTERN int mxgw_queue_load(mxgw_queue *q, const char *id,
                                mxgw_queue_entry **out);

/** Free an entry (the message itself stays in the spool). NULL ok. */
MXGW_EXTERN void mxgw_queue_entry_free(mxgw_queue_entry *e);

/**
 * Read an entry string (mxgw_queue_key). Errors: MXGW_E_INVAL (unknown
 * key), MXGW_E_NOTFOUND (not set). Ownership: entry memory.
 */
MXGW_EXTERN int mxgw_queue_entry_get_str(const mxgw_queue_entry *e, int key,
                                         const char **ptr, size_t *len);

/** Read an entry integer (mxgw_queue_key). Errors: MXGW_E_INVAL. */
MXGW_EXTERN int mxgw_queue_entry_get_int(const mxgw_queue_entry *e, int key,
                                         int64_t *out);

/** Read recipient idx's string (mxgw_queue_rkey).
 *  Errors: MXGW_E_INVAL, MXGW_E_RANGE (idx), MXGW_E_NOTFOUND. */
MXGW_EXTERN int mxgw_queue_entry_rcpt_get_str(const mxgw_queue_entry *e,
                                              size_t idx, int key,
                                              const char **ptr, size_t *len);

/** Read recipient idx's integer (mxgw_queue_rkey).
 *  Errors: MXGW_E_INVAL, MXGW_E_RANGE (idx). */
MXGW_EXTERN int mxgw_queue_entry_rcpt_get_int(const mxgw_queue_entry *e,
                                              size_t idx, int key,
                                              int64_t *out);

/**
 * The whole metadata as JSON text (what mxgw-queue show prints).
 * Ownership: entry memory, valid until the next call on the entry.
 * Errors: MXGW_E_INVAL, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_entry_json(mxgw_queue_entry *e, const char **ptr,
                                      size_t *len);

/**
 * Open the entry's body for reading: *fd is a new descriptor (the caller
 * closes it) and the body is the *length octets at *offset in it (offset 0
 * and the whole file for a message file; a range of a segment for a
 * message in the journal). Read with pread(), or pass all three to
 * mxgw_lmtp_conn_deliver_range().
 * Errors: MXGW_E_INVAL, MXGW_E_NOTFOUND (the message is gone), MXGW_E_IO.
 */
MXGW_EXTERN int mxgw_queue_entry_body(const mxgw_queue_entry *e, int *fd,
                                      int64_t *offset, int64_t *length);

/**
 * Claim the next due message for delivery: the oldest in the journal (see
 * MXGW_QOPT_JOURNAL), else the oldest in incoming/, else the oldest in
 * deferred/ whose next attempt is <= now (Unix seconds); every 8th call
 * looks at incoming/ and deferred/ before the journal, so that neither
 * waits behind a journal that never empties under load. It is moved to
 * active/ (a journal message is marked active in memory) and loaded.
 * deferred/ is not read while the earliest next attempt seen (by the last
 * reading, and by finish) lies ahead; it is read again at least once a
 * minute.
 * @return MXGW_OK with *out set, or MXGW_E_NOTFOUND when nothing is due.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE, MXGW_E_IO, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_take(mxgw_queue *q, int64_t now,
                                mxgw_queue_entry **out);

/**
 * Record the result of a delivery attempt for recipient idx (in memory;
 * mxgw_queue_save() or mxgw_queue_finish() makes it durable).
 * @param state  MXGW_RCPT_DELIVERED, _FAILED or _DEFERRED.
 * Errors: MXGW_E_INVAL, MXGW_E_RANGE, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_entry_set_rcpt(mxgw_queue_entry *e, size_t idx,
                                          int state, int code,
                                          const char *enhanced,
                                          const char *text);

/**
 * Rewrite the metadata of an entry atomically (temporary file, fdatasync,
 * rename over the old one, fsync the directory).
 * Errors: MXGW_E_INVAL, MXGW_E_NOTFOUND (the message was moved or deleted
 * meanwhile), MXGW_E_NOSPACE, MXGW_E_IO, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_save(mxgw_queue *q, mxgw_queue_entry *e);

/**
 * End a delivery attempt of an active entry: counts the attempt, then, if
 * every recipient is delivered the message is removed; if some are pending
 * or deferred it moves to deferred/ with `next_attempt`; otherwise (all
 * final, some failed) to failed/. The metadata is saved first.
 * @return the resulting mxgw_queue_state, or 0 when removed.
 * Errors: as mxgw_queue_save(); MXGW_E_STATE (entry not active).
 */
MXGW_EXTERN int mxgw_queue_finish(mxgw_queue *q, mxgw_queue_entry *e,
                                  int64_t next_attempt);

/* ------------------------------------------------------------------------ */
/* Listing and management                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Iterate over the messages in one state, oldest queue ID first.
 * Errors: MXGW_E_INVAL, MXGW_E_STATE, MXGW_E_IO, MXGW_E_NOMEM.
 */
MXGW_EXTERN int mxgw_queue_iter_new(mxgw_queue *q, int state,
                                    mxgw_queue_iter **out);

/**
 * Next message. @return 1 with *out set (valid until the next call or the
 * iterator's free), 0 at the end, or an error. A message moved away by
 * someone else meanwhile is skipped.
 * Errors: MXGW_E_SYNTAX (this entry's metadata is unreadable; its ID is
 * still available through mxgw_queue_iter_id(); iteration can continue).
 */
MXGW_EXTERN int mxgw_queue_iter_next(mxgw_queue_iter *it,
                                     mxgw_queue_entry **out);

/** ID of the iterator's current message. Errors: MXGW_E_STATE. */
MXGW_EXTERN int mxgw_queue_iter_id(const mxgw_queue_iter *it, const char **ptr,
                                   size_t *len);

/** Free an iterator. NULL ok. */
MXGW_EXTERN void mxgw_queue_iter_free(mxgw_queue_iter *it);

/**
 * Operator action on one message (`id`) or on every message of `state`
 * (`id` NULL; `state` 0 means every state the action applies to).
 * Active messages are never touched (MXGW_E_BUSY for a single ID), nor
 * are messages in the journal (MXGW_QOPT_JOURNAL), incoming ones included:
 * their first attempt is under way (or the owner recovers them into
 * incoming/ at its next open); a single ID gives MXGW_E_BUSY, a whole
 * state skips them. One whose attempt fails is in deferred/ a moment later.
 * @return the number of messages changed, or an error.
 * Errors: MXGW_E_INVAL, MXGW_E_NOTFOUND (no such ID), MXGW_E_BUSY (active,
 * or in the journal),
 * MXGW_E_STATE (the action does not apply to its state), MXGW_E_IO.
 * Context: any thread or process; safe while a gateway owns the spool.
 */
MXGW_EXTERN int mxgw_queue_manage(mxgw_queue *q, int op, const char *id,
                                  int state);

/** Name of a state ("incoming", ...) or NULL. Static storage. */
MXGW_EXTERN const char *mxgw_queue_state_name(int state);

#ifdef __cplusplus
}
#endif

#endif /* MXGW_QUEUE_H */
