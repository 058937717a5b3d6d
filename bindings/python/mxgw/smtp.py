# SPDX-License-Identifier: MIT
"""The sans-IO SMTP server session engine, driven from Python.

The session does no I/O: the program owns the socket (or asyncio stream)
and moves bytes in and out::

    cfg = mxgw.SessionConfig(hostname="mx.example.org")
    with mxgw.Session(cfg, peer=("192.0.2.1", 40000)) as s:
        s.start()
        while True:
            for ev in s.events():
                if ev == mxgw.Event.RCPT and not allowed(s.rcpt):
                    s.reply(550, "5.1.1", "no such user")
                elif ev == mxgw.Event.BODY:
                    body += s.data                 # bytes
                elif ev.is_decision:
                    s.accept()
            sock.sendall(s.take_output())
            if s.want & mxgw.Session.WANT_CLOSE: break
            s.feed(sock.recv(65536))

One session is used by one thread at a time. The configuration is frozen
(read-only, shareable) once a session was created from it.
"""
from __future__ import annotations

import enum
from typing import Any, Callable, Iterator, List, Optional, Tuple

from . import _capi
from ._base import Handle, check, now_ms, options, text
from .errors import error_for
from .tls import TlsContext

__all__ = ["Event", "Session", "SessionConfig", "LogKind"]


class Event(enum.IntEnum):
    """Events of :meth:`Session.next_event` (mxgw_event)."""
    CONNECT = _capi.MXGW_EV_CONNECT
    HELO = _capi.MXGW_EV_HELO
    STARTTLS = _capi.MXGW_EV_STARTTLS
    AUTH = _capi.MXGW_EV_AUTH
    MAIL = _capi.MXGW_EV_MAIL
    RCPT = _capi.MXGW_EV_RCPT
    DATA = _capi.MXGW_EV_DATA
    BODY = _capi.MXGW_EV_BODY
    MESSAGE_END = _capi.MXGW_EV_MESSAGE_END
    MESSAGE_ABORT = _capi.MXGW_EV_MESSAGE_ABORT
    RSET = _capi.MXGW_EV_RSET
    CLOSE = _capi.MXGW_EV_CLOSE

    @property
    def is_decision(self) -> bool:
        """True for events that wait for accept() or reply()."""
        return self in _DECISIONS


_DECISIONS = frozenset({Event.CONNECT, Event.HELO, Event.STARTTLS, Event.AUTH,
                        Event.MAIL, Event.RCPT, Event.DATA, Event.MESSAGE_END})


class LogKind(enum.IntEnum):
    """Kinds of records passed to the log hook (mxgw_log_kind)."""
    CONNECT = _capi.MXGW_LOG_CONNECT
    COMMAND = _capi.MXGW_LOG_COMMAND
    REPLY = _capi.MXGW_LOG_REPLY
    PROTOCOL = _capi.MXGW_LOG_PROTOCOL
    DISCONNECT = _capi.MXGW_LOG_DISCONNECT
    TLS = _capi.MXGW_LOG_TLS


_OPT_INT = {k: v for k, v in options("MXGW_OPT_").items() if v < 100}
_OPT_STR = {k: v for k, v in options("MXGW_OPT_").items() if v >= 100}
_INFO = options("MXGW_INFO_")


class SessionConfig(Handle):
    """Session options, by lower-case name of the C constant without the
    MXGW_OPT_ prefix: hostname, greeting, max_message_size,
    max_recipients, starttls, bare_newline ... and tls (a server
    :class:`TlsContext`). Frozen once a session uses it (BusyError)."""

    _free = staticmethod(_capi.mxgw_session_config_free)

    def __init__(self, *, tls: Optional[TlsContext] = None, **opts: Any) -> None:
        rc, p = _capi.mxgw_session_config_new()
        check(rc)
        self._ptr = p
        for k, v in opts.items():
            self.set(k, v)
        if tls is not None:
            self.set_tls(tls)

    def set(self, name: str, value: Any) -> None:
        """Set an option by name."""
        if name in _OPT_INT:
            check(_capi.mxgw_session_config_set_int(self._p(), _OPT_INT[name],
                                                    int(value)),
                  where=f"option {name}")
        elif name in _OPT_STR:
            check(_capi.mxgw_session_config_set_str(self._p(), _OPT_STR[name],
                                                    value),
                  where=f"option {name}")
        else:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown session option {name!r}")

    def get(self, name: str) -> int:
        """Read an integer option."""
        if name not in _OPT_INT:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown integer option {name!r}")
        rc, v = _capi.mxgw_session_config_get_int(self._p(), _OPT_INT[name])
        check(rc)
        return v

    def set_tls(self, tls: Optional[TlsContext]) -> None:
        """Attach a loaded server TLS context (the configuration keeps its
        own reference), or None to detach."""
        check(_capi.mxgw_session_config_set_tls(self._p(),
                                                None if tls is None else tls._p()))


class Session(Handle):
    """One SMTP client connection's protocol state (sans-IO)."""

    WANT_READ = _capi.MXGW_WANT_READ
    WANT_WRITE = _capi.MXGW_WANT_WRITE
    WANT_CLOSE = _capi.MXGW_WANT_CLOSE
    _free = staticmethod(_capi.mxgw_session_free)

    def __init__(self, config: SessionConfig,
                 peer: Optional[Tuple[Any, ...]] = None,
                 log: Optional[Callable[[LogKind, bytes], None]] = None) -> None:
        """config: the SessionConfig (frozen from now on); peer: (addr,
        port[, host]) of the client; log: a hook log(kind, text_bytes)."""
        rc, p = _capi.mxgw_session_new(config._p())
        check(rc)
        self._ptr = p
        self._log = None
        self.config = config
        if peer is not None:
            addr, port, *rest = peer
            self.set_peer(addr, port, rest[0] if rest else None)
        if log is not None:
            self.set_log(log)

    def close(self) -> None:
        """Free the session (then the log hook it held)."""
        super().close()
        self._log = None

    def _errmsg(self) -> str:
        return _capi.mxgw_session_errmsg(self._ptr) if self._ptr else ""

    @property
    def errmsg(self) -> str:
        """Detail of the last error on this session."""
        return self._errmsg()

    def set_log(self, fn: Optional[Callable[[LogKind, bytes], None]]) -> None:
        """Install (None: remove) the log hook: fn(kind, text). It runs
        inside session calls; an exception in it is reported with
        sys.unraisablehook and otherwise ignored."""
        if fn is not None and not callable(fn):
            raise TypeError("log hook must be callable or None")
        cb = None if fn is None else (lambda k, t: fn(LogKind(k), t))
        cap = _capi.mxgw_py_session_set_log(self._p(), cb)
        self._log = cap  # the previous hook's context may go now

    # ---- lifecycle and I/O --------------------------------------------------
    def set_peer(self, addr: str, port: int = 0, host: Optional[str] = None) -> None:
        """Describe the client (before start())."""
        check(_capi.mxgw_session_set_peer(self._p(), addr, int(port), host),
              self._errmsg)

    def start(self, now: Optional[int] = None) -> None:
        """Start: the first event is CONNECT."""
        check(_capi.mxgw_session_start(self._p(), now_ms() if now is None else now),
              self._errmsg)

    def feed(self, data: bytes, now: Optional[int] = None) -> int:
        """Give bytes from the client; returns how many were taken (fewer
        when the input buffer is full: offer the rest again later)."""
        return check(_capi.mxgw_session_feed(self._p(), data,
                                             now_ms() if now is None else now),
                     self._errmsg)

    def eof(self) -> None:
        """The client closed its sending side."""
        check(_capi.mxgw_session_eof(self._p()), self._errmsg)

    def abort(self) -> None:
        """The connection is gone."""
        check(_capi.mxgw_session_abort(self._p()), self._errmsg)

    def next_event(self) -> Optional[Event]:
        """The next event, or None when there is nothing to report."""
        ev = _capi.mxgw_session_next_event(self._p())
        if ev > 0:
            return Event(ev)
        check(ev, self._errmsg)
        return None

    def events(self) -> Iterator[Event]:
        """Iterate over next_event() until it returns None. Answer each
        decision event before asking for the next one."""
        while True:
            ev = self.next_event()
            if ev is None:
                return
            yield ev

    def output(self) -> bytes:
        """The bytes waiting to be written (not consumed)."""
        rc, b = _capi.mxgw_session_output(self._p())
        check(rc, self._errmsg)
        return b or b""

    def consume(self, n: int) -> None:
        """Mark n bytes of output() as written (RangeError/InvalidArgument
        if more than pending)."""
        check(_capi.mxgw_session_consume(self._p(), n), self._errmsg)

    def take_output(self) -> bytes:
        """output() and consume() of all of it, in one call."""
        b = self.output()
        if b:
            self.consume(len(b))
        return b

    @property
    def want(self) -> int:
        """WANT_READ | WANT_WRITE | WANT_CLOSE bits."""
        return _capi.mxgw_session_want(self._p())

    @property
    def deadline(self) -> int:
        """When tick() is due (same clock as now), or -1."""
        return _capi.mxgw_session_deadline(self._p())

    def tick(self, now: Optional[int] = None) -> bool:
        """Advance time; True if a timeout fired (421 and close)."""
        return bool(check(_capi.mxgw_session_tick(self._p(),
                                                  now_ms() if now is None else now),
                          self._errmsg))

    def shutdown(self, text_: Optional[str] = None) -> None:
        """Close from our side with 421 4.3.2."""
        check(_capi.mxgw_session_shutdown(self._p(), text_), self._errmsg)

    # ---- decisions ----------------------------------------------------------
    def accept(self) -> None:
        """Accept the pending decision with its default reply."""
        check(_capi.mxgw_session_accept(self._p()), self._errmsg)

    def reply(self, code: int, enh: Optional[str] = None,
              text_: Optional[str] = None) -> None:
        """Answer the pending decision: reply(550, "5.1.1", "no such user")."""
        check(_capi.mxgw_session_reply(self._p(), code, enh, text_), self._errmsg)

    @property
    def pending(self) -> Optional[Event]:
        """The decision waiting for an answer, or None."""
        ev = _capi.mxgw_session_pending(self._p())
        return Event(ev) if ev > 0 else None

    def starttls_done(self, protocol: Optional[str] = None,
                      cipher: Optional[str] = None) -> None:
        """Report a handshake the application ran itself."""
        check(_capi.mxgw_session_starttls_done(self._p(), protocol, cipher),
              self._errmsg)

    # ---- information ----------------------------------------------------------
    def get_bytes(self, key: str) -> Optional[bytes]:
        """A string item by name ("helo", "mail_from", "data" ...) as bytes,
        or None when it is not set now."""
        rc, b = _capi.mxgw_session_get_str(self._p(), _INFO[key])
        if rc == _capi.MXGW_E_NOTFOUND:
            return None
        check(rc, self._errmsg)
        return b

    def get_str(self, key: str) -> Optional[str]:
        """A string item by name, decoded (UTF-8), or None."""
        b = self.get_bytes(key)
        return None if b is None else text(b)

    def get_int(self, key: str) -> int:
        """An integer item by name ("rcpt_count", "tls", "message_size" ...)."""
        rc, v = _capi.mxgw_session_get_int(self._p(), _INFO[key])
        check(rc, self._errmsg)
        return v

    helo = property(lambda s: s.get_str("helo"), doc="HELO/EHLO argument.")
    mail_from = property(lambda s: s.get_str("mail_from"),
                         doc='Reverse path without <> ("" for <>).')
    rcpt = property(lambda s: s.get_str("rcpt"), doc="The current RCPT.")
    peer_addr = property(lambda s: s.get_str("peer_addr"), doc="Client IP.")

    @property
    def data(self) -> bytes:
        """The current event's payload as bytes (BODY chunks: message data;
        MESSAGE_ABORT and CLOSE: the reason)."""
        return self.get_bytes("data") or b""

    def recipients(self) -> List[str]:
        """The accepted recipients of the current message."""
        p = self._p()
        out = []
        for i in range(self.get_int("rcpt_count")):
            rc, b = _capi.mxgw_session_rcpt_get_str(p, i, _capi.MXGW_INFO_RCPT)
            check(rc, self._errmsg)
            out.append(text(b))
        return out

    def rcpt_info(self, idx: int) -> dict:
        """Recipient idx: address, notify (text), orcpt, notify_flags."""
        p = self._p()
        out: dict = {}
        for name, key in (("address", _capi.MXGW_INFO_RCPT),
                          ("notify", _capi.MXGW_INFO_NOTIFY),
                          ("orcpt", _capi.MXGW_INFO_ORCPT)):
            rc, b = _capi.mxgw_session_rcpt_get_str(p, idx, key)
            if rc == _capi.MXGW_E_NOTFOUND:
                out[name] = None
                continue
            check(rc, self._errmsg)
            out[name] = text(b)
        rc, v = _capi.mxgw_session_rcpt_get_int(p, idx, _capi.MXGW_INFO_NOTIFY_FLAGS)
        check(rc, self._errmsg)
        out["notify_flags"] = v
        return out

    def received_header(self, queue_id: Optional[str] = None,
                        unix_time: Optional[int] = None) -> bytes:
        """The Received: header for the current message (bytes, CRLF)."""
        import time
        rc, b = _capi.mxgw_session_received_header(
            self._p(), queue_id, int(time.time()) if unix_time is None else unix_time)
        check(rc, self._errmsg)
        return b
