# SPDX-License-Identifier: MIT
"""Shared helpers of the Python binding's tests (run by ctest with
PYTHONPATH pointing at the build's package directory)."""
import os
import sys

SRC = os.environ.get("MXGW_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "lmtp"))
sys.path.insert(0, os.path.join(SRC, "tests", "dns"))
sys.path.insert(0, os.path.join(SRC, "bindings", "python", "tests"))


# MXGW_CALLS_FILE=path: record every function of the raw layer (mxgw._capi)
# that the tests call, to check that each public C function is exercised
# (bindings/python/tests/check_coverage.py compares it with the module).
if os.environ.get("MXGW_CALLS_FILE"):
    import atexit
    import threading

    _called = set()

    def _prof(frame, event, arg):
        if event == "c_call" and getattr(arg, "__module__", None) in ("mxgw._capi", "_capi"):
            _called.add(arg.__name__)

    sys.setprofile(_prof)
    threading.setprofile(_prof)

    @atexit.register
    def _dump():
        with open(os.environ["MXGW_CALLS_FILE"], "a") as f:
            f.write("\n".join(sorted(_called)) + "\n")
