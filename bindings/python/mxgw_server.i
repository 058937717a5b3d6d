/* SPDX-License-Identifier: MIT */
/*
 * mxgw_server.i: the server/gateway part of the binding (mxgw_server.h),
 * included from mxgw.i when the library has the server (CMake passes
 * -DMXGW_PY_SERVER to swig then).
 *
 * Callbacks: the server calls its log hook and policy callbacks from its
 * own threads (loop threads, the delivery thread, policy workers). The
 * trampolines below take the GIL with PyGILState_Ensure(), so they are safe
 * on any thread; the calls that can run or wait for those threads release
 * the GIL (%thread), so a callback waiting for the GIL can never deadlock
 * against a Python thread waiting inside the library. A Python exception
 * never crosses into C: the policy trampoline returns -1 (the server then
 * answers 451 4.3.0 and logs a warning) after reporting it.
 */
%{
#include <mxgw/mxgw_server.h>
#include <mxgw/mxgw_deliver.h>
%}

%thread mxgw_server_new;
%thread mxgw_server_free;
%thread mxgw_server_start;
%thread mxgw_server_run;
%thread mxgw_server_process;
%thread mxgw_server_reload;
%thread mxgw_server_drain;
%thread mxgw_server_stop;
%thread mxgw_server_get_int;

%ignore mxgw_server_config_set_log;
%ignore mxgw_server_config_set_policy;
/* The delivery scheduler is reached through the server (its options by
 * mxgw_server_config_set_deliver_int); only its constants are exposed. */
%rename("$ignore", regextarget=1, %$isfunction) "^mxgw_deliver_";

%include <mxgw/mxgw_deliver.h>
%include <mxgw/mxgw_server.h>

%{
/* A Python callable behind a C hook; owned by a capsule that the Python
 * ServerConfig keeps as long as any server made from it may call it. */
typedef struct mxgw_py_cb { PyObject *fn; } mxgw_py_cb;

static void mxgw_py_cb_free(PyObject *cap) {
  mxgw_py_cb *ctx = (mxgw_py_cb *)PyCapsule_GetPointer(cap, "mxgw.cb");
  if (ctx) {
    PyGILState_STATE g = PyGILState_Ensure();
    Py_XDECREF(ctx->fn);
    PyGILState_Release(g);
    free(ctx);
  }
}

static PyObject *mxgw_py_cb_new(PyObject *fn, mxgw_py_cb **out) {
  if (!PyCallable_Check(fn)) {
    PyErr_SetString(PyExc_TypeError, "callback must be callable or None");
    return NULL;
  }
  mxgw_py_cb *ctx = (mxgw_py_cb *)calloc(1, sizeof *ctx);
  if (!ctx)
    return PyErr_NoMemory();
  PyObject *cap = PyCapsule_New(ctx, "mxgw.cb", mxgw_py_cb_free);
  if (!cap) {
    free(ctx);
    return NULL;
  }
  Py_INCREF(fn);
  ctx->fn = fn;
  *out = ctx;
  return cap;
}

static void mxgw_py_server_log_tramp(void *user, int level, const char *line) {
  mxgw_py_cb *ctx = (mxgw_py_cb *)user;
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *r = PyObject_CallFunction(ctx->fn, "is", level, line ? line : "");
  if (!r)
    PyErr_WriteUnraisable(ctx->fn);
  Py_XDECREF(r);
  PyGILState_Release(g);
}

/* The callable gets the request as an opaque pointer object (valid only
 * during the call) and returns an int: 0 to go on (after
 * mxgw_server_req_reply() or not), negative for a failure. The Python layer
 * wraps the user's function so that it catches and logs exceptions itself;
 * this is the last line of defence. */
static int mxgw_py_policy_tramp(void *user, mxgw_server_req *req) {
  mxgw_py_cb *ctx = (mxgw_py_cb *)user;
  int rv = -1;
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *p = SWIG_NewPointerObj(SWIG_as_voidptr(req),
                                   SWIGTYPE_p_mxgw_server_req, 0);
  PyObject *r = p ? PyObject_CallFunctionObjArgs(ctx->fn, p, NULL) : NULL;
  if (!r) {
    PyErr_WriteUnraisable(ctx->fn);
  } else if (r == Py_None) {
    rv = 0;
  } else if (PyLong_Check(r)) {
    rv = (int)PyLong_AsLong(r);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      rv = -1;
    }
  } else {
    rv = 0;
  }
  Py_XDECREF(r);
  Py_XDECREF(p);
  PyGILState_Release(g);
  return rv;
}

/* Returns [rc, capsule-or-None]. */
static PyObject *mxgw_py_server_config_set_log(mxgw_server_config *cfg,
                                               PyObject *fn) {
  mxgw_py_cb *ctx = NULL;
  PyObject *cap = Py_None;
  int rc;
  if (fn == Py_None) {
    rc = mxgw_server_config_set_log(cfg, NULL, NULL);
    Py_INCREF(Py_None);
  } else {
    if (!(cap = mxgw_py_cb_new(fn, &ctx)))
      return NULL;
    rc = mxgw_server_config_set_log(cfg, mxgw_py_server_log_tramp, ctx);
  }
  return Py_BuildValue("(iN)", rc, cap);
}

static PyObject *mxgw_py_server_config_set_policy(mxgw_server_config *cfg,
                                                  int stage, PyObject *fn) {
  mxgw_py_cb *ctx = NULL;
  PyObject *cap = Py_None;
  int rc;
  if (fn == Py_None) {
    rc = mxgw_server_config_set_policy(cfg, stage, NULL, NULL);
    Py_INCREF(Py_None);
  } else {
    if (!(cap = mxgw_py_cb_new(fn, &ctx)))
      return NULL;
    rc = mxgw_server_config_set_policy(cfg, stage, mxgw_py_policy_tramp, ctx);
  }
  return Py_BuildValue("(iN)", rc, cap);
}
%}
PyObject *mxgw_py_server_config_set_log(mxgw_server_config *cfg, PyObject *fn);
PyObject *mxgw_py_server_config_set_policy(mxgw_server_config *cfg, int stage,
                                           PyObject *fn);
