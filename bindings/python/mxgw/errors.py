# SPDX-License-Identifier: MIT
"""The exceptions of the mxgw package: one hierarchy rooted at MxgwError.

Every libmxgw call that fails returns a negative ``mxgw_err`` code; the
binding raises the subclass registered for that code, carrying the code,
its symbolic name (``"MXGW_E_IO"``) and the handle's last-error message
(``mxgw_tls_errmsg()``, ``mxgw_session_errmsg()`` ...) when there is one,
so a TLS file error names the file.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

from . import _capi

__all__ = [
    "MxgwError", "InvalidArgumentError", "NoMemoryError", "StateError",
    "AgainError", "NotFoundError", "ClosedError", "BusyError", "RangeError",
    "MxgwSyntaxError", "MxgwIOError", "MxgwTimeoutError", "TLSError",
    "DNSError", "ProtocolError", "UnsupportedError", "MxgwPermissionError",
    "CanceledError", "NoSpaceError", "FatalError", "error_for",
]


class MxgwError(Exception):
    """Base class of every error raised by libmxgw through the binding.

    Attributes:
        code: the negative ``mxgw_err`` value (e.g. ``-10``).
        name: its symbolic name (``"MXGW_E_IO"``).
        message: the handle's detail message, or the generic description.
    """

    code: int = 0

    def __init__(self, code: int, message: Optional[str] = None,
                 where: Optional[str] = None) -> None:
        self.code = code
        self.name = _capi.mxgw_errname(code)
        generic = _capi.mxgw_strerror(code)
        self.message = message or generic
        self.where = where
        text = f"{self.name}: {self.message}"
        if where:
            text = f"{where}: {text}"
        super().__init__(text)


class InvalidArgumentError(MxgwError, ValueError):
    """MXGW_E_INVAL: an argument was refused."""


class NoMemoryError(MxgwError, MemoryError):
    """MXGW_E_NOMEM."""


class StateError(MxgwError):
    """MXGW_E_STATE: the call is not valid in the object's current state."""


class AgainError(MxgwError):
    """MXGW_E_AGAIN."""


class NotFoundError(MxgwError, LookupError):
    """MXGW_E_NOTFOUND."""


class ClosedError(MxgwError):
    """MXGW_E_CLOSED: the session is over."""


class BusyError(MxgwError):
    """MXGW_E_BUSY: the object is in use (frozen, locked, active)."""


class RangeError(MxgwError, ValueError):
    """MXGW_E_RANGE: a value or index out of range."""


class MxgwSyntaxError(MxgwError, ValueError):
    """MXGW_E_SYNTAX: unparsable input (zone file, PEM, JSON)."""


class MxgwIOError(MxgwError, OSError):
    """MXGW_E_IO: a file or socket operation failed."""

    def __init__(self, code: int, message: Optional[str] = None,
                 where: Optional[str] = None) -> None:
        MxgwError.__init__(self, code, message, where)


class MxgwTimeoutError(MxgwError, TimeoutError):
    """MXGW_E_TIMEOUT."""

    def __init__(self, code: int, message: Optional[str] = None,
                 where: Optional[str] = None) -> None:
        MxgwError.__init__(self, code, message, where)


class TLSError(MxgwError):
    """MXGW_E_TLS: OpenSSL refused a key, certificate or handshake."""


class DNSError(MxgwError):
    """MXGW_E_DNS: the resolver could not start."""


class ProtocolError(MxgwError):
    """MXGW_E_PROTOCOL."""


class UnsupportedError(MxgwError):
    """MXGW_E_UNSUPPORTED."""


class MxgwPermissionError(MxgwError, PermissionError):
    """MXGW_E_PERM: e.g. a private key readable by others."""

    def __init__(self, code: int, message: Optional[str] = None,
                 where: Optional[str] = None) -> None:
        MxgwError.__init__(self, code, message, where)


class CanceledError(MxgwError):
    """MXGW_E_CANCELED."""


class NoSpaceError(MxgwError):
    """MXGW_E_NOSPACE: disk full or quota (map to 452 4.3.1)."""


class FatalError(MxgwError):
    """MXGW_E_FATAL: the handle is unusable; only closing it is allowed."""


_BY_CODE: Dict[int, Type[MxgwError]] = {
    _capi.MXGW_E_INVAL: InvalidArgumentError,
    _capi.MXGW_E_NOMEM: NoMemoryError,
    _capi.MXGW_E_STATE: StateError,
    _capi.MXGW_E_AGAIN: AgainError,
    _capi.MXGW_E_NOTFOUND: NotFoundError,
    _capi.MXGW_E_CLOSED: ClosedError,
    _capi.MXGW_E_BUSY: BusyError,
    _capi.MXGW_E_RANGE: RangeError,
    _capi.MXGW_E_SYNTAX: MxgwSyntaxError,
    _capi.MXGW_E_IO: MxgwIOError,
    _capi.MXGW_E_TIMEOUT: MxgwTimeoutError,
    _capi.MXGW_E_TLS: TLSError,
    _capi.MXGW_E_DNS: DNSError,
    _capi.MXGW_E_PROTOCOL: ProtocolError,
    _capi.MXGW_E_UNSUPPORTED: UnsupportedError,
    _capi.MXGW_E_PERM: MxgwPermissionError,
    _capi.MXGW_E_CANCELED: CanceledError,
    _capi.MXGW_E_NOSPACE: NoSpaceError,
    _capi.MXGW_E_FATAL: FatalError,
}


def error_for(code: int, message: Optional[str] = None,
              where: Optional[str] = None) -> MxgwError:
    """The exception object for a negative status code."""
    return _BY_CODE.get(code, MxgwError)(code, message, where)
