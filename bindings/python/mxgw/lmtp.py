# SPDX-License-Identifier: MIT
"""LMTP delivery (RFC 2033) with libmxgw's blocking driver.

    with mxgw.LmtpConnection("127.0.0.1:24") as conn:
        for r in conn.deliver("a@example.org", ["bob@example.net"], body):
            print(r.address, r.code, r.enh, r.text)

Each recipient gets exactly one result: the backend's reply, or a
temporary failure made up by the client (local=True) when the connection
failed. deliver() blocks with the GIL released.

A message taken from the queue is delivered from where its body lies (its
own file, or a range of a journal segment):

    e = queue.take()
    with e.open_body() as body:
        res = conn.deliver(e.sender, [r["addr"] for r in e.recipients], body)
"""
from __future__ import annotations

import asyncio
import enum
import os
import threading
from typing import Any, BinaryIO, Iterable, List, NamedTuple, Optional, Tuple, Union

from . import _capi
from ._base import Handle, check, now_ms, options, text
from .errors import error_for
from .queue import QueueBody, QueueEntry
from .tls import TlsContext

__all__ = ["LmtpConfig", "LmtpConnection", "LmtpClient", "LmtpEvent", "RcptResult"]

_OPT_INT = {k: v for k, v in options("MXGW_LMTP_OPT_").items() if v < 100}
_OPT_STR = {k: v for k, v in options("MXGW_LMTP_OPT_").items() if v >= 100}
_MSG_INT = {k: v for k, v in options("MXGW_LMTP_MSG_").items() if v < 100}
_MSG_STR = {k: v for k, v in options("MXGW_LMTP_MSG_").items() if v >= 100}
_STAGES = {v: k for k, v in options("MXGW_LMTP_STAGE_").items()}


class LmtpEvent(enum.IntEnum):
    """Events of LmtpClient.next_event() (mxgw_lmtp_event)."""
    READY = _capi.MXGW_LMTP_EV_READY
    RCPT = _capi.MXGW_LMTP_EV_RCPT
    DONE = _capi.MXGW_LMTP_EV_DONE
    CLOSED = _capi.MXGW_LMTP_EV_CLOSED


class RcptResult(NamedTuple):
    """The outcome for one recipient."""
    address: str
    code: int
    enh: str
    text: str
    stage: str   # "connect", "mail", "rcpt", "data", "delivery"
    local: bool  # made up by the client (no reply from the backend)

    @property
    def ok(self) -> bool:
        """True when the backend took the message for this recipient."""
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


class LmtpConfig(Handle):
    """LMTP client options by name (connect_timeout_ms, command_timeout_ms,
    data_timeout_ms, max_messages, starttls, xclient, pipelining,
    chunking, chunk_size, body_buffer, lhlo_name, tls_servername) and tls
    (a loaded client TlsContext)."""

    _free = staticmethod(_capi.mxgw_lmtp_config_free)

    def __init__(self, *, tls: Optional[TlsContext] = None, **opts: Any) -> None:
        rc, p = _capi.mxgw_lmtp_config_new()
        check(rc)
        self._ptr = p
        for k, v in opts.items():
            self.set(k, v)
        if tls is not None:
            check(_capi.mxgw_lmtp_config_set_tls(self._p(), tls._p()))

    def set(self, name: str, value: Any) -> None:
        if name in _OPT_INT:
            check(_capi.mxgw_lmtp_config_set_int(self._p(), _OPT_INT[name],
                                                 int(value)), where=f"option {name}")
        elif name in _OPT_STR:
            check(_capi.mxgw_lmtp_config_set_str(self._p(), _OPT_STR[name], value),
                  where=f"option {name}")
        else:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown LMTP option {name!r}")

    def get(self, name: str) -> int:
        if name not in _OPT_INT:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown LMTP option {name!r}")
        rc, v = _capi.mxgw_lmtp_config_get_int(self._p(), _OPT_INT[name])
        check(rc)
        return v


class LmtpConnection(Handle):
    """A connection to one LMTP backend that does its own socket I/O.

    target: "unix:/path", "/path", "host:port", "[v6]:port" (numeric
    addresses only). The connection is opened at the first delivery and
    reused for the next ones; quit() or close() ends it.
    """

    _free = staticmethod(_capi.mxgw_lmtp_conn_free)

    def __init__(self, target: str, config: Optional[LmtpConfig] = None) -> None:
        own = config is None
        cfg = LmtpConfig() if own else config
        try:
            rc, p = _capi.mxgw_lmtp_conn_new(cfg._p(), target)
            check(rc, where=f"LMTP target {target!r}")
        finally:
            if own:
                cfg.close()  # the connection holds its own reference
        self._ptr = p
        self.target = target
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the socket (without QUIT) and free the connection. Waits
        for a deliver() or quit() running in another thread; a pending
        deliver_async() fails with StateError when it resumes."""
        lock = self.__dict__.get("_lock")
        if lock is None:
            super().close()
            return
        with lock:
            waiting, self._waiting = self.__dict__.get("_waiting"), None
            if waiting is not None:
                # a deliver_async() waits for the socket: stop watching it
                # before it is closed, and wake the task (StateError)
                loop, fut, fd = waiting

                def wake() -> None:
                    if fd >= 0:
                        loop.remove_reader(fd)
                        loop.remove_writer(fd)
                    if not fut.done():
                        fut.set_result(0)
                try:
                    here = asyncio.get_running_loop() is loop
                except RuntimeError:
                    here = False
                if here:
                    wake()
                elif not loop.is_closed():
                    loop.call_soon_threadsafe(wake)
            super().close()

    def _client(self):
        return _capi.mxgw_lmtp_conn_client(self._p())

    @property
    def errmsg(self) -> str:
        """Detail of the last failure of the current client."""
        with self._lock:
            return _capi.mxgw_lmtp_errmsg(self._client())

    def info(self, key: str) -> Union[int, str, None]:
        """Client information by name: greeting, xclient, tls_protocol,
        tls_cipher, last_reply (str); extensions, size_limit, tls,
        messages, rcpt_count, body_octets (int)."""
        with self._lock:  # close() in another thread waits
            return _info(self._client(), key)

    def deliver(self, mail_from: str, recipients: Iterable[Any],
                body: Union[bytes, bytearray, memoryview, str, os.PathLike, BinaryIO,
                            "QueueBody", "QueueEntry", Tuple[int, int, int]],
                **msg_opts: Any) -> List[RcptResult]:
        """Deliver one message and return one RcptResult per recipient.

        recipients: addresses, or (address, notify_bits, orcpt) tuples.
        body: the message as bytes, a path (str/PathLike), a binary file
        object with a fileno() (read from its position to EOF), a range
        (fd, offset, length) of a file (read with pread(); fd is not
        closed), a QueueBody (QueueEntry.open_body(): the body where it
        lies, a journal segment included; not closed), or a QueueEntry
        (its body is opened and closed here). msg_opts: size,
        eightbitmime, smtputf8, ret, xclient_port, envid, xclient_addr,
        xclient_helo, xclient_name, xclient_proto, xclient_login.
        Raises StateError/InvalidArgumentError for a bad envelope and
        MxgwIOError when the body cannot be read (nothing is delivered)."""
        if isinstance(body, QueueEntry):
            with body.open_body() as b:
                return self.deliver(mail_from, recipients, b, **msg_opts)
        if isinstance(body, QueueBody):
            if body.closed:
                raise error_for(_capi.MXGW_E_STATE, "QueueBody is closed")
            body = (body.fd, body.offset, body.length)
        with self._lock:
            c = self._client()
            err = lambda: _capi.mxgw_lmtp_errmsg(c)  # noqa: E731
            check(_capi.mxgw_lmtp_msg_new(c, mail_from), err)
            n = 0
            for r in recipients:
                addr, notify, orcpt = (r, 0, None) if isinstance(r, str) else \
                    (tuple(r) + (0, None))[:3]
                check(_capi.mxgw_lmtp_msg_add_rcpt(c, addr, int(notify or 0), orcpt),
                      err, where=f"recipient {addr!r}")
                n += 1
            for k, v in msg_opts.items():
                key = "8bitmime" if k == "eightbitmime" else k
                if key in _MSG_INT:
                    check(_capi.mxgw_lmtp_msg_set_int(c, _MSG_INT[key], int(v)), err)
                elif key in _MSG_STR:
                    check(_capi.mxgw_lmtp_msg_set_str(c, _MSG_STR[key], v), err)
                else:
                    raise error_for(_capi.MXGW_E_INVAL, f"unknown message option {k!r}")
            if isinstance(body, tuple):
                fd, off, length = body
                rc = _capi.mxgw_lmtp_conn_deliver_range(self._p(), int(fd), int(off),
                                                        int(length))
            elif isinstance(body, (str, os.PathLike)) and not isinstance(body, str):
                rc = _capi.mxgw_lmtp_conn_deliver_file(self._p(), os.fspath(body))
            elif isinstance(body, str):
                rc = _capi.mxgw_lmtp_conn_deliver_file(self._p(), body)
            elif hasattr(body, "fileno"):
                rc = _capi.mxgw_lmtp_conn_deliver_fd(self._p(), body.fileno())
            else:
                fd = os.memfd_create("mxgw-lmtp-body", os.MFD_CLOEXEC)
                try:
                    mv = memoryview(body)
                    while mv:
                        mv = mv[os.write(fd, mv):]
                    os.lseek(fd, 0, os.SEEK_SET)
                    rc = _capi.mxgw_lmtp_conn_deliver_fd(self._p(), fd)
                finally:
                    os.close(fd)
            c = self._client()
            if rc < 0:
                # Nothing the driver left behind may wedge the connection
                # (a message still in progress would make every later
                # msg_new() fail with StateError): drop it, the next
                # delivery reconnects. The detail is read first.
                msg = _capi.mxgw_lmtp_errmsg(c) or None
                _capi.mxgw_lmtp_abort(c, "4.3.0", "delivery failed", now_ms())
                _capi.mxgw_lmtp_conn_quit(self._p())
                raise error_for(rc, msg, f"LMTP {self.target}")
            return [self._result(c, i) for i in range(n)]

    @staticmethod
    def _result(c: Any, i: int) -> RcptResult:
        def s(key: int) -> str:
            rc, b = _capi.mxgw_lmtp_rcpt_get_str(c, i, key)
            if rc == _capi.MXGW_E_NOTFOUND:
                return ""
            check(rc)
            return text(b)

        def n(key: int) -> int:
            rc, v = _capi.mxgw_lmtp_rcpt_get_int(c, i, key)
            check(rc)
            return v
        return RcptResult(s(_capi.MXGW_LMTP_R_ADDRESS), n(_capi.MXGW_LMTP_R_CODE),
                          s(_capi.MXGW_LMTP_R_ENH), s(_capi.MXGW_LMTP_R_TEXT),
                          _STAGES.get(n(_capi.MXGW_LMTP_R_STAGE), "none"),
                          bool(n(_capi.MXGW_LMTP_R_LOCAL)))

    def quit(self) -> None:
        """Send QUIT (if connected) and close the socket."""
        with self._lock:
            check(_capi.mxgw_lmtp_conn_quit(self._p()))

    async def deliver_async(self, mail_from: str, recipients: Iterable[Any],
                            body: Union[bytes, bytearray, memoryview],
                            **msg_opts: Any) -> List[RcptResult]:
        """deliver() for asyncio: the connection's socket is driven by the
        running loop (mxgw_lmtp_conn_open/fd/events/process), the body is
        pushed as the client takes it. Same results as deliver().

        If it ends any other way than with the results (an error, the task
        cancelled, close() while it waits: StateError), the message is
        abandoned and the connection dropped; the next delivery reconnects.
        """
        loop = asyncio.get_running_loop()
        data = memoryview(bytes(body))
        # The C calls run under self._lock, between the awaits only, so
        # close() (which takes it) never frees the connection under a call.
        with self._lock:
            conn = self._p()
            # (re)connect first: a connection that closed (QUIT, failure)
            # gets a fresh client here, so take the client afterwards
            check(_capi.mxgw_lmtp_conn_open(conn, now_ms()))
            c = _capi.mxgw_lmtp_conn_client(conn)
            err = lambda: _capi.mxgw_lmtp_errmsg(c)  # noqa: E731
            check(_capi.mxgw_lmtp_msg_new(c, mail_from), err)
            n = 0
            for r in recipients:
                addr, notify, orcpt = (r, 0, None) if isinstance(r, str) else \
                    (tuple(r) + (0, None))[:3]
                check(_capi.mxgw_lmtp_msg_add_rcpt(c, addr, int(notify or 0), orcpt), err)
                n += 1
            for k, v in msg_opts.items():
                key = "8bitmime" if k == "eightbitmime" else k
                if key in _MSG_INT:
                    check(_capi.mxgw_lmtp_msg_set_int(c, _MSG_INT[key], int(v)), err)
                elif key in _MSG_STR:
                    check(_capi.mxgw_lmtp_msg_set_str(c, _MSG_STR[key], v), err)
                else:
                    raise error_for(_capi.MXGW_E_INVAL, f"unknown message option {k!r}")
            check(_capi.mxgw_lmtp_msg_submit(c, now_ms()), err)
        # From here the message is in progress on the client: unless it
        # ends with its results, drop the connection, or every later
        # msg_new() would fail with StateError (a message in progress).
        try:
            return await self._drive_async(loop, conn, c, err, data, n)
        except BaseException:
            with self._lock:
                if self._ptr is conn:
                    _capi.mxgw_lmtp_abort(c, "4.3.0", "delivery abandoned by the caller",
                                          now_ms())
                    _capi.mxgw_lmtp_conn_quit(conn)  # closed client: no QUIT, closes
            raise

    def _async_step(self, conn: Any, c: Any, err: Any, st: List[Any], n: int) -> Any:
        """One run of the C calls between two awaits (under self._lock):
        the results when the message is done, else (fd, events, deadline)."""
        if self._ptr is not conn:  # closed while we waited: conn is freed
            raise error_for(_capi.MXGW_E_STATE, "LmtpConnection closed during delivery")
        data, pos, ended, revents = st
        if revents is not None:
            check(_capi.mxgw_lmtp_conn_process(conn, revents, now_ms()), err)
        while not ended and _capi.mxgw_lmtp_want(c) & _capi.MXGW_LMTP_WANT_BODY:
            if pos < len(data):
                k = check(_capi.mxgw_lmtp_body(c, data[pos:pos + 65536], now_ms()), err)
                pos += k
                if k == 0:
                    break
            if pos >= len(data):
                check(_capi.mxgw_lmtp_body_end(c, now_ms()), err)
                ended = True
        st[1], st[2] = pos, ended
        while True:
            ev = check(_capi.mxgw_lmtp_next_event(c), err)
            if ev == 0:
                break
            if ev == _capi.MXGW_LMTP_EV_DONE:
                return [self._result(c, i) for i in range(n)]
        return (_capi.mxgw_lmtp_conn_fd(conn), _capi.mxgw_lmtp_conn_events(conn),
                _capi.mxgw_lmtp_conn_deadline(conn))

    async def _drive_async(self, loop: Any, conn: Any, c: Any, err: Any,
                           data: memoryview, n: int) -> List[RcptResult]:
        POLLIN, POLLOUT = 1, 4
        st: List[Any] = [data, 0, False, None]  # body, position, ended, revents
        while True:
            with self._lock:
                out = self._async_step(conn, c, err, st, n)
            if isinstance(out, list):
                return out
            fd, want, dl = out
            fut = loop.create_future()

            def ready(revents: int) -> None:
                if not fut.done():
                    fut.set_result(revents)
            if fd >= 0 and want & POLLIN:
                loop.add_reader(fd, ready, POLLIN)
            if fd >= 0 and want & POLLOUT:
                loop.add_writer(fd, ready, POLLOUT)
            timer = None
            if dl >= 0:
                timer = loop.call_later(max(0, dl - now_ms()) / 1000.0, ready, 0)
            elif fd < 0 or not want:
                loop.call_soon(ready, 0)
            self._waiting = (loop, fut, fd)
            try:
                st[3] = await fut
            finally:
                self._waiting = None
                if fd >= 0 and want & POLLIN:
                    loop.remove_reader(fd)
                if fd >= 0 and want & POLLOUT:
                    loop.remove_writer(fd)
                if timer:
                    timer.cancel()


def _info(c: Any, key: str) -> Union[int, str, None]:
    k = options("MXGW_LMTP_INFO_")[key]
    if k >= 150:
        rc, v = _capi.mxgw_lmtp_get_int(c, k)
        check(rc)
        return v
    rc, b = _capi.mxgw_lmtp_get_str(c, k)
    if rc == _capi.MXGW_E_NOTFOUND:
        return None
    check(rc)
    return text(b)


class LmtpClient(Handle):
    """The sans-IO LMTP client: the program owns the socket (or asyncio
    stream), as with the SMTP Session. Bytes from the backend go in with
    feed(), bytes for it come out with output()/consume() (or
    take_output()); what happened comes out of next_event(). A message:
    msg_new(), add_rcpt(), submit(), then body() while want has WANT_BODY,
    body_end(), and on LmtpEvent.DONE the results(). Time is a monotonic
    clock in ms (default: now)."""

    WANT_READ = _capi.MXGW_LMTP_WANT_READ
    WANT_WRITE = _capi.MXGW_LMTP_WANT_WRITE
    WANT_CLOSE = _capi.MXGW_LMTP_WANT_CLOSE
    WANT_BODY = _capi.MXGW_LMTP_WANT_BODY
    _free = staticmethod(_capi.mxgw_lmtp_free)

    def __init__(self, config: Optional[LmtpConfig] = None) -> None:
        own = config is None
        cfg = LmtpConfig() if own else config
        try:
            rc, p = _capi.mxgw_lmtp_new(cfg._p())
            check(rc)
        finally:
            if own:
                cfg.close()
        self._ptr = p

    def _err(self) -> str:
        return _capi.mxgw_lmtp_errmsg(self._ptr) if self._ptr else ""

    @property
    def errmsg(self) -> str:
        return self._err()

    @staticmethod
    def _now(now: Optional[int]) -> int:
        return now_ms() if now is None else now

    def start(self, now: Optional[int] = None) -> None:
        """The connection is established: wait for the greeting."""
        check(_capi.mxgw_lmtp_start(self._p(), self._now(now)), self._err)

    def feed(self, data: bytes, now: Optional[int] = None) -> int:
        return check(_capi.mxgw_lmtp_feed(self._p(), data, self._now(now)), self._err)

    def eof(self, now: Optional[int] = None) -> None:
        check(_capi.mxgw_lmtp_eof(self._p(), self._now(now)), self._err)

    def abort(self, enh: Optional[str] = None, text_: Optional[str] = None,
              now: Optional[int] = None) -> None:
        """The connection failed: recipients without a result get 451."""
        check(_capi.mxgw_lmtp_abort(self._p(), enh, text_, self._now(now)), self._err)

    def output(self) -> bytes:
        rc, b = _capi.mxgw_lmtp_output(self._p())
        check(rc, self._err)
        return b or b""

    def consume(self, n: int) -> None:
        check(_capi.mxgw_lmtp_consume(self._p(), n), self._err)

    def take_output(self) -> bytes:
        b = self.output()
        if b:
            self.consume(len(b))
        return b

    @property
    def want(self) -> int:
        return _capi.mxgw_lmtp_want(self._p())

    @property
    def deadline(self) -> int:
        return _capi.mxgw_lmtp_deadline(self._p())

    def tick(self, now: Optional[int] = None) -> bool:
        return bool(check(_capi.mxgw_lmtp_tick(self._p(), self._now(now)), self._err))

    def quit(self) -> None:
        """QUIT once the current message is done."""
        check(_capi.mxgw_lmtp_quit(self._p()), self._err)

    def next_event(self) -> Optional[LmtpEvent]:
        ev = check(_capi.mxgw_lmtp_next_event(self._p()), self._err)
        return LmtpEvent(ev) if ev > 0 else None

    def events(self):
        while True:
            ev = self.next_event()
            if ev is None:
                return
            yield ev

    def msg_new(self, mail_from: str, **opts: Any) -> None:
        """Begin a message; opts as LmtpConnection.deliver()'s."""
        p = self._p()
        check(_capi.mxgw_lmtp_msg_new(p, mail_from), self._err)
        for k, v in opts.items():
            key = "8bitmime" if k == "eightbitmime" else k
            if key in _MSG_INT:
                check(_capi.mxgw_lmtp_msg_set_int(p, _MSG_INT[key], int(v)), self._err)
            elif key in _MSG_STR:
                check(_capi.mxgw_lmtp_msg_set_str(p, _MSG_STR[key], v), self._err)
            else:
                raise error_for(_capi.MXGW_E_INVAL, f"unknown message option {k!r}")

    def add_rcpt(self, rcpt: str, notify: int = 0, orcpt: Optional[str] = None) -> int:
        return check(_capi.mxgw_lmtp_msg_add_rcpt(self._p(), rcpt, notify, orcpt),
                     self._err)

    def submit(self, now: Optional[int] = None) -> None:
        check(_capi.mxgw_lmtp_msg_submit(self._p(), self._now(now)), self._err)

    def body(self, data: bytes, now: Optional[int] = None) -> int:
        """Push body octets; returns how many were taken (back-pressure)."""
        return check(_capi.mxgw_lmtp_body(self._p(), data, self._now(now)), self._err)

    def body_end(self, now: Optional[int] = None) -> None:
        check(_capi.mxgw_lmtp_body_end(self._p(), self._now(now)), self._err)

    def results(self) -> List[RcptResult]:
        """One result per recipient of the current message."""
        p = self._p()
        n = _info(p, "rcpt_count")
        return [LmtpConnection._result(p, i) for i in range(int(n or 0))]

    def info(self, key: str) -> Union[int, str, None]:
        """As LmtpConnection.info()."""
        return _info(self._p(), key)
