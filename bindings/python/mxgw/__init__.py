# SPDX-License-Identifier: MIT
"""mxgw: Python binding of libmxgw, an embeddable library for inbound MX
gateways (SMTP sessions, TLS, SPF, LMTP delivery, a durable queue).

The C library is wrapped by SWIG (mxgw._capi, the raw layer); this package
is the thin Python layer on top: one exception hierarchy (MxgwError),
bytes for message data, context managers and type hints. See docs/python.md.
"""
from __future__ import annotations

from typing import Tuple

from . import _capi
from ._base import now_ms
from .errors import *  # noqa: F401,F403
from .errors import MxgwError, error_for
from .spf import (DNS_TYPES, RESULTS, Resolver, Spf, SpfCheck, TraceEntry,
                  dns_status_name, spf_policy)
from .tls import CertInfo, TlsContext, load_certificate
from .smtp import Event, Session, SessionConfig
from .lmtp import LmtpClient, LmtpConfig, LmtpConnection, LmtpEvent, RcptResult
from .queue import Queue, QueueEntry
from . import server as _server_mod

from . import errors as _errors

__all__ = (["version", "strerror", "errname", "now_ms", "DNS_TYPES", "RESULTS",
            "Resolver", "Spf", "SpfCheck", "TraceEntry", "dns_status_name",
            "spf_policy", "CertInfo", "TlsContext", "load_certificate", "Event",
            "Session", "SessionConfig", "LmtpConfig", "LmtpConnection", "LmtpClient", "LmtpEvent",
            "RcptResult", "Queue", "QueueEntry", "MxgwError", "error_for"]
           + list(_errors.__all__))

__version__: str = _capi.mxgw_version()[0]


def version() -> Tuple[str, int]:
    """The C library's version string and MXGW_VERSION_NUM."""
    s, n = _capi.mxgw_version()
    return s, n


def strerror(code: int) -> str:
    """The English description of an mxgw_err code."""
    return _capi.mxgw_strerror(code)


def errname(code: int) -> str:
    """The symbolic name of an mxgw_err code ("MXGW_E_IO")."""
    return _capi.mxgw_errname(code)


if _server_mod.AVAILABLE:
    from .server import Request, Server, ServerConfig  # noqa: F401
    __all__ += ["Request", "Server", "ServerConfig"]
