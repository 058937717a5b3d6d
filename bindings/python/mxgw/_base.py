# SPDX-License-Identifier: MIT
"""Internal helpers shared by the mxgw modules (not public API)."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Tuple

from . import _capi
from .errors import error_for


def now_ms() -> int:
    """A monotonic clock in milliseconds (what the sans-IO engines expect)."""
    return int(time.monotonic() * 1000)


def check(rc: int, errmsg: Optional[Callable[[], str]] = None,
          where: Optional[str] = None) -> int:
    """Raise the MxgwError subclass for a negative rc; return rc otherwise.
    errmsg, when given, reads the handle's last-error detail."""
    if rc < 0:
        msg = None
        if errmsg is not None:
            try:
                msg = errmsg() or None
            except Exception:  # the detail is a bonus, never a second error
                msg = None
        raise error_for(rc, msg, where)
    return rc


def options(prefix: str, strip: str = "") -> Dict[str, int]:
    """Map lower-case option names to the C constants sharing a prefix:
    options("MXGW_OPT_") -> {"max_message_size": 1, ...}."""
    out = {}
    for name in dir(_capi):
        if name.startswith(prefix):
            key = name[len(prefix):]
            if strip and key.startswith(strip):
                key = key[len(strip):]
            out[key.lower()] = getattr(_capi, name)
    return out


def text(b: Any) -> str:
    """bytes from C -> str (UTF-8, undecodable bytes escaped)."""
    if b is None:
        return ""
    return b.decode("utf-8", "backslashreplace")


class Handle:
    """Base of the classes that own a C handle: close() frees it once,
    context managers close on exit, and the garbage collector closes what
    the program forgot.

    Children: a C object that must be freed before the handle it came from
    (a QueueEntry before its Queue: mxgw_queue_entry_free() reads the
    queue) is registered with _adopt(). The parent's close() frees the
    children still open first; a child closed that way is closed for good
    (its methods raise StateError, its close() and finaliser do nothing).
    The registry holds raw pointers only, so it is intact whatever order
    the garbage collector finalises a parent and its children in (a
    traceback keeps both in one reference cycle)."""

    _ptr: Any = None
    _free: Callable[[Any], None]
    _owner: Optional["Handle"] = None  # the parent that frees us with itself
    _kids: Optional[Dict[int, Tuple[Callable[[Any], None], Any]]] = None

    def _adopt(self, parent: "Handle") -> None:
        """Register this (open) handle as a child of parent."""
        if parent._ptr is None:  # pragma: no cover - callers hold parent._p()
            raise error_for(_capi.MXGW_E_STATE, f"{type(parent).__name__} is closed")
        if parent._kids is None:
            parent._kids = {}
        parent._kids[id(self)] = (type(self)._free, self._ptr)
        self._owner = parent

    def _orphaned(self) -> bool:
        """True when the parent freed this child's C object."""
        owner = self._owner
        if owner is None:
            return False
        kids = owner._kids
        return kids is None or id(self) not in kids

    def close(self) -> None:
        """Free the C object (and the children still open). Idempotent; the
        object is unusable after."""
        p, self._ptr = self._ptr, None
        if p is None:
            return
        owner = self._owner
        if owner is not None:
            kids = owner._kids
            if kids is None or kids.pop(id(self), None) is None:
                return  # freed by the parent's close()
        kids, self._kids = self._kids, None
        if kids:
            for free, cp in list(kids.values()):
                free(cp)
        type(self)._free(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _p(self) -> Any:
        p = self._ptr
        if p is None or (self._owner is not None and self._orphaned()):
            self._ptr = None
            raise error_for(_capi.MXGW_E_STATE, f"{type(self).__name__} is closed")
        return p
