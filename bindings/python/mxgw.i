/* SPDX-License-Identifier: MIT */
/*
 * mxgw.i: the raw SWIG layer of the Python binding (module mxgw._capi).
 *
 * The public headers are the single source of truth: they are %included
 * as they are and SWIG wraps the flat C functions. Typemaps give them a
 * Python shape without changing their meaning:
 *
 *   - every function keeps its int status as the first element of the
 *     result; out-parameters are appended ([rc, value, ...]); the Python
 *     layer (mxgw/_base.py) turns a negative status into an MxgwError
 *     subclass carrying the handle's last-error message;
 *   - `T **out` out-handles become opaque pointer objects;
 *   - `(const char **ptr, size_t *len)` out-strings become bytes (copied:
 *     the C memory is only valid until the next call);
 *   - `(const void *buf, size_t len)` and friends take any buffer
 *     (bytes, bytearray, memoryview) or str (UTF-8);
 *   - `const mxgw_mem *mem` is always NULL (malloc/free).
 *
 * The GIL: the module is built with -threads, but every call holds the GIL
 * (%nothread) except the ones that block on I/O, DNS, fsync or a lock
 * (listed under %thread below). Cheap calls stay cheap, and calls on one
 * handle from several Python threads are serialised by the GIL; the Python
 * layer adds a lock where a blocking call could race.
 *
 * Callbacks (C -> Python): the session log hook and the server's policy
 * hooks go through C trampolines that take the GIL (PyGILState_Ensure), so
 * they are safe on any thread; a Python exception in a hook never crosses
 * into C.
 */
%module(package="mxgw") capi

%{
#define SWIG_FILE_WITH_INIT
#include <mxgw/mxgw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
%}

%include <stdint.i>

/* ---- the GIL: held by default, released around blocking calls --------- */
%nothread;
%thread mxgw_spf_check_sync;
%thread mxgw_spf_check_run;
%thread mxgw_resolver_run;
%thread mxgw_resolver_new_ares;
%thread mxgw_resolver_load_zone_file;
%thread mxgw_tls_add_cert_files;
%thread mxgw_tls_reload;
%thread mxgw_tls_check_reload;
%thread mxgw_lmtp_conn_deliver_fd;
%thread mxgw_lmtp_conn_deliver_file;
%thread mxgw_lmtp_conn_deliver_range;
%thread mxgw_lmtp_conn_quit;
%thread mxgw_queue_open;
%thread mxgw_queue_free;
%thread mxgw_queue_commit;
%thread mxgw_queue_save;
%thread mxgw_queue_finish;
%thread mxgw_queue_take;
%thread mxgw_queue_manage;
%thread mxgw_queue_count;
%thread mxgw_queue_iter_new;
%thread mxgw_queue_load;
%thread mxgw_queue_entry_body;
%thread mxgw_queue_begin;
%thread mxgw_queue_write;
%thread mxgw_py_spf_eval;

/* ---- C strings: str (UTF-8) or bytes, None for NULL; an embedded NUL is
 * refused (ValueError) instead of silently cutting the string short ------- */
%typemap(in) const char * {
  if ($input == Py_None) {
    $1 = NULL;
  } else {
    const char *s_ = NULL;
    Py_ssize_t n_ = 0;
    if (PyUnicode_Check($input)) {
      s_ = PyUnicode_AsUTF8AndSize($input, &n_);
    } else if (PyBytes_Check($input)) {
      s_ = PyBytes_AS_STRING($input);
      n_ = PyBytes_GET_SIZE($input);
    } else {
      PyErr_Format(PyExc_TypeError, "argument $argnum ($1_name) must be str, bytes or None, not %.100s",
                   Py_TYPE($input)->tp_name);
    }
    if (!s_) SWIG_fail;
    if ((size_t)n_ != strlen(s_)) {
      PyErr_SetString(PyExc_ValueError, "embedded NUL character in argument $1_name");
      SWIG_fail;
    }
    $1 = ($1_ltype)s_;
  }
}
%typemap(freearg) const char * ""
%typemap(typecheck, precedence=SWIG_TYPECHECK_STRING) const char * {
  $1 = ($input == Py_None || PyUnicode_Check($input) || PyBytes_Check($input));
}

/* ---- allocator: always malloc/free --------------------------------------- */
%typemap(in, numinputs=0) const mxgw_mem *mem "$1 = NULL;"
%ignore mxgw_mem;

/* ---- out-handles ---------------------------------------------------------- */
%typemap(in, numinputs=0) SWIGTYPE **out ($*1_ltype tmp = NULL) "$1 = &tmp;"
%typemap(argout) SWIGTYPE **out {
  $result = SWIG_Python_AppendOutput($result,
      SWIG_NewPointerObj(SWIG_as_voidptr(tmp$argnum), $*1_descriptor, 0));
}

/* ---- integer out-parameters ----------------------------------------------- */
%typemap(in, numinputs=0) int64_t *out (int64_t tmp = 0) "$1 = &tmp;"
%typemap(argout) int64_t *out {
  $result = SWIG_Python_AppendOutput($result, PyLong_FromLongLong(tmp$argnum));
}
%typemap(in, numinputs=0) int *num (int tmp = 0), int *code (int tmp = 0),
                          int *depth (int tmp = 0), int *kind (int tmp = 0)
  "$1 = &tmp;"
%typemap(argout) int *num, int *code, int *depth, int *kind {
  $result = SWIG_Python_AppendOutput($result, PyLong_FromLong(tmp$argnum));
}

/* ---- a message body: [rc, fd, offset, length]; the fd (-1 on error) is
 * the caller's to close (mxgw/queue.py wraps it in a QueueBody) --------- */
%typemap(in, numinputs=0) (int *fd, int64_t *offset, int64_t *length)
    (int f = -1, int64_t o = 0, int64_t l = 0) "$1 = &f; $2 = &o; $3 = &l;"
%typemap(argout) (int *fd, int64_t *offset, int64_t *length) {
  PyObject *o_[3] = {PyLong_FromLong(f$argnum), PyLong_FromLongLong(o$argnum),
                     PyLong_FromLongLong(l$argnum)};
  if (!o_[0] || !o_[1] || !o_[2]) {
    Py_XDECREF(o_[0]); Py_XDECREF(o_[1]); Py_XDECREF(o_[2]);
    if (f$argnum >= 0) close(f$argnum);
    SWIG_fail;
  }
  for (int i_ = 0; i_ < 3; i_++)
    $result = SWIG_Python_AppendOutput($result, o_[i_]);
}

/* ---- out-strings: copied into bytes ---------------------------------------- */
%typemap(in, numinputs=0) (const char **ptr, size_t *len)
    (const char *p = NULL, size_t n = 0),
                          (const char **text, size_t *len)
    (const char *p = NULL, size_t n = 0) "$1 = ($1_ltype)&p; $2 = &n;"
%typemap(argout) (const char **ptr, size_t *len),
                 (const char **text, size_t *len) {
  PyObject *o_ = p$argnum ? PyBytes_FromStringAndSize(p$argnum, (Py_ssize_t)n$argnum)
                          : (Py_INCREF(Py_None), Py_None);
  if (!o_) SWIG_fail;
  $result = SWIG_Python_AppendOutput($result, o_);
}
%typemap(in, numinputs=0) const char **enh (const char *p = NULL) "$1 = ($1_ltype)&p;"
%typemap(argout) const char **enh {
  PyObject *o_ = p$argnum ? PyUnicode_FromString(p$argnum)
                          : (Py_INCREF(Py_None), Py_None);
  if (!o_) SWIG_fail;
  $result = SWIG_Python_AppendOutput($result, o_);
}

/* ---- in-buffers: bytes, bytearray, memoryview or str (UTF-8); None for
 * NULL where the C side allows it ---------------------------------------- */
%define MXGW_BUFFER_IN(PTR, LEN)
%typemap(in) (PTR, LEN) (Py_buffer view = {0}, int have = 0) {
  if ($input == Py_None) {
    $1 = NULL; $2 = 0;
  } else if (PyUnicode_Check($input)) {
    Py_ssize_t n_ = 0;
    const char *s_ = PyUnicode_AsUTF8AndSize($input, &n_);
    if (!s_) SWIG_fail;
    $1 = ($1_ltype)s_; $2 = (size_t)n_;
  } else {
    if (PyObject_GetBuffer($input, &view, PyBUF_SIMPLE) != 0) SWIG_fail;
    have = 1;
    $1 = ($1_ltype)view.buf; $2 = (size_t)view.len;
  }
}
%typemap(freearg) (PTR, LEN) { if (have$argnum) PyBuffer_Release(&view$argnum); }
%typemap(typecheck) (PTR, LEN) "$1 = 1;"
%enddef
MXGW_BUFFER_IN(const void *buf, size_t len)
MXGW_BUFFER_IN(const char *text, size_t len)
MXGW_BUFFER_IN(const char *ptr, size_t len)
MXGW_BUFFER_IN(const char *chain_pem, size_t chain_len)
MXGW_BUFFER_IN(const char *key_pem, size_t key_len)
MXGW_BUFFER_IN(const char *addr, size_t addr_len)
MXGW_BUFFER_IN(const char *orcpt, size_t orcpt_len)

/* ---- c-ares options: a list of "key=value" strings, or None ------------- */
%typemap(in) const char *const *options (char **arr = NULL, Py_ssize_t n = 0) {
  if ($input != Py_None) {
    if (!PySequence_Check($input) || PyUnicode_Check($input)) {
      PyErr_SetString(PyExc_TypeError, "options must be a list of str");
      SWIG_fail;
    }
    n = PySequence_Size($input);
    arr = (char **)calloc((size_t)n + 1, sizeof *arr);
    if (!arr) { PyErr_NoMemory(); SWIG_fail; }
    for (Py_ssize_t i = 0; i < n; i++) {
      PyObject *it = PySequence_GetItem($input, i);
      const char *s = it && PyUnicode_Check(it) ? PyUnicode_AsUTF8(it) : NULL;
      if (s) arr[i] = strdup(s);
      Py_XDECREF(it);
      if (!s) {
        if (!PyErr_Occurred())
          PyErr_SetString(PyExc_TypeError, "options must be a list of str");
        SWIG_fail;
      }
    }
  }
  $1 = ($1_ltype)arr;
}
%typemap(freearg) const char *const *options {
  if (arr$argnum) {
    for (Py_ssize_t i = 0; i < n$argnum; i++) free(arr$argnum[i]);
    free(arr$argnum);
  }
}

/* ---- resolver descriptors: [(fd, events), ...] ----------------------------- */
%typemap(in, numinputs=0) (int *fds, int *events, int cap)
    (int f[64], int e[64]) "$1 = f; $2 = e; $3 = 64;"
%typemap(argout) (int *fds, int *events, int cap) {
  int n_ = PyLong_AsLong(PyList_Check($result) ? PyList_GetItem($result, 0) : $result);
  PyObject *l_ = PyList_New(0);
  for (int i = 0; l_ && i < n_ && i < 64; i++) {
    PyObject *t_ = Py_BuildValue("(ii)", f$argnum[i], e$argnum[i]);
    if (!t_ || PyList_Append(l_, t_) != 0) { Py_XDECREF(t_); Py_CLEAR(l_); break; }
    Py_DECREF(t_);
  }
  if (!l_) SWIG_fail;
  $result = SWIG_Python_AppendOutput($result, l_);
}

/* ---- asynchronous queue commits: [(tag, status, id), ...] ----------------- */
%typemap(in, numinputs=1) (mxgw_queue_done *out, size_t max)
    (mxgw_queue_done *d = NULL) {
  long m_ = PyLong_AsLong($input);
  if (m_ < 0 || m_ > 4096) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "max out of range");
    SWIG_fail;
  }
  d = (mxgw_queue_done *)calloc((size_t)(m_ ? m_ : 1), sizeof *d);
  if (!d) { PyErr_NoMemory(); SWIG_fail; }
  $1 = d; $2 = (size_t)m_;
}
%typemap(argout) (mxgw_queue_done *out, size_t max) {
  long n_ = PyLong_AsLong(PyList_Check($result) ? PyList_GetItem($result, 0) : $result);
  PyObject *l_ = PyList_New(0);
  for (long i = 0; l_ && i < n_; i++) {
    PyObject *t_ = Py_BuildValue("(Kis)", (unsigned long long)d$argnum[i].tag,
                                 d$argnum[i].status, d$argnum[i].id);
    if (!t_ || PyList_Append(l_, t_) != 0) { Py_XDECREF(t_); Py_CLEAR(l_); break; }
    Py_DECREF(t_);
  }
  if (!l_) SWIG_fail;
  $result = SWIG_Python_AppendOutput($result, l_);
}
%typemap(freearg) (mxgw_queue_done *out, size_t max) { free(d$argnum); }
%ignore mxgw_queue_done;

/* ---- what the binding does not expose -------------------------------------- */
/* Raw DNS queries and answers (only meaningful inside C callbacks), the SPF
 * completion hook (the Python layer polls mxgw_spf_check_done() instead),
 * the user pointer (Python objects keep their own state) and the raw log
 * hook (replaced by mxgw_py_session_set_log below). */
%ignore mxgw_resolver_query;
%ignore mxgw_resolver_cancel;
%ignore mxgw_dns_answer_count;
%ignore mxgw_dns_answer_ttl;
%ignore mxgw_dns_answer_data;
%ignore mxgw_dns_answer_pref;
%ignore mxgw_spf_check_set_done_cb;
%ignore mxgw_session_set_user;
%ignore mxgw_session_get_user;
%ignore mxgw_session_set_log;

#define MXGW_EXTERN
#define MXGW_DEPRECATED_FOR(f)
#define MXGW_WARN_UNUSED
%include <mxgw/mxgw_common.h>
%include <mxgw/mxgw_resolver.h>
%include <mxgw/mxgw_spf.h>
%include <mxgw/mxgw_tls.h>
%include <mxgw/mxgw_session.h>
%include <mxgw/mxgw_lmtp.h>
%include <mxgw/mxgw_queue.h>

/* ---- helpers written for the binding ---------------------------------------- */
%{
/* One SPF evaluation in one call (the hot path of Spf.check): start, run,
 * and read the result, so the binding crosses into C once per evaluation. */
static int mxgw_py_spf_eval(mxgw_spf *spf, const char *ip, const char *helo,
                            const char *mail_from, int identity,
                            mxgw_spf_check **out, int *code) {
  int rv = mxgw_spf_check_sync(spf, ip, helo, mail_from, identity, out);
  *code = rv ? -1 : mxgw_spf_check_result(*out);
  return rv;
}

/* The session log hook: a trampoline into a Python callable. The context
 * lives in a capsule that the Python Session keeps next to the session and
 * drops only after mxgw_session_free(). */
typedef struct mxgw_py_log { PyObject *fn; } mxgw_py_log;

static void mxgw_py_log_tramp(void *user, mxgw_session *s, int kind,
                              const char *text, size_t len) {
  mxgw_py_log *ctx = (mxgw_py_log *)user;
  (void)s;
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *r = PyObject_CallFunction(ctx->fn, "iy#", kind, text, (Py_ssize_t)len);
  if (!r)
    PyErr_WriteUnraisable(ctx->fn); /* never into C; reported, dropped */
  Py_XDECREF(r);
  PyGILState_Release(g);
}

static void mxgw_py_log_free(PyObject *cap) {
  mxgw_py_log *ctx = (mxgw_py_log *)PyCapsule_GetPointer(cap, "mxgw.log");
  if (ctx) {
    Py_XDECREF(ctx->fn);
    free(ctx);
  }
}

static PyObject *mxgw_py_session_set_log(mxgw_session *s, PyObject *fn) {
  if (fn == Py_None) {
    mxgw_session_set_log(s, NULL, NULL);
    Py_RETURN_NONE;
  }
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "log hook must be callable or None");
    return NULL;
  }
  mxgw_py_log *ctx = (mxgw_py_log *)calloc(1, sizeof *ctx);
  if (!ctx)
    return PyErr_NoMemory();
  PyObject *cap = PyCapsule_New(ctx, "mxgw.log", mxgw_py_log_free);
  if (!cap) {
    free(ctx);
    return NULL;
  }
  Py_INCREF(fn);
  ctx->fn = fn;
  mxgw_session_set_log(s, mxgw_py_log_tramp, ctx);
  return cap;
}
%}
%typemap(in, numinputs=0) (mxgw_spf_check **out, int *code)
    (mxgw_spf_check *tmp = NULL, int c = 0) "$1 = &tmp; $2 = &c;"
%typemap(argout) (mxgw_spf_check **out, int *code) {
  $result = SWIG_Python_AppendOutput($result,
      SWIG_NewPointerObj(SWIG_as_voidptr(tmp$argnum), $descriptor(mxgw_spf_check *), 0));
  $result = SWIG_Python_AppendOutput($result, PyLong_FromLong(c$argnum));
}
int mxgw_py_spf_eval(mxgw_spf *spf, const char *ip, const char *helo,
                     const char *mail_from, int identity,
                     mxgw_spf_check **out, int *code);
PyObject *mxgw_py_session_set_log(mxgw_session *s, PyObject *fn);

#ifdef MXGW_PY_SERVER
%include "mxgw_server.i"
#endif
