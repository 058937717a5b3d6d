# SPDX-License-Identifier: MIT
"""The server/gateway (mxgw_server.h) with Python policy callbacks.

    cfg = mxgw.ServerConfig(spool_dir="/var/spool/mxgw", hostname="mx.example.org",
                            policy_workers=4)
    cfg.add_listener("127.0.0.1", 2525)
    cfg.add_backend("127.0.0.1:24")
    @cfg.on_rcpt
    def rcpt(req):
        if not known(req.rcpt):
            return (550, "5.1.1", "no such user")   # or req.reply(...)
    with mxgw.Server.background(cfg) as srv:      # runs on its own thread
        print(srv.listener_port(0))

Callbacks run on the server's policy worker threads (they may block: other
sessions go on). Return None to accept, or (code, enh, text) / call
req.reply() to answer. An exception in a callback is logged (logger
"mxgw.server") and the client gets a temporary 451 4.3.0; it never
crashes the server. This module is empty (AVAILABLE False) until the C
library provides the server.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import _capi
from ._base import Handle, check, options
from .errors import error_for
from .tls import TlsContext

AVAILABLE: bool = hasattr(_capi, "mxgw_server_new")

__all__ = ["AVAILABLE", "Request", "ServerConfig", "Server"]

log = logging.getLogger("mxgw.server")

if AVAILABLE:
    _SESSION_INT = {k: v for k, v in options("MXGW_OPT_").items() if v < 100}
    _SESSION_STR = {k: v for k, v in options("MXGW_OPT_").items() if v >= 100}
    _SRV = options("MXGW_SRV_OPT_")
    _SRV_INT = {k: v for k, v in _SRV.items() if v < 1100}
    _SRV_STR = {k: v for k, v in _SRV.items() if v >= 1100}
    _DELIVER = {k: v for k, v in options("MXGW_DELIVER_OPT_").items() if v < 100}
    _DELIVER_STR = {k: v for k, v in options("MXGW_DELIVER_OPT_").items() if v >= 100}
    _STAT = options("MXGW_SRV_STAT_")
    _STAGES = options("MXGW_STAGE_")
    _STAGE_NAMES = {v: k for k, v in _STAGES.items()}
    _MODES = options("MXGW_LISTEN_")
    _TLS_POLICY = options("MXGW_TLS_POLICY_")
    _REQ = options("MXGW_REQ_")
    _ACTIONS = options("MXGW_ACTION_")
    _SPF_RESULTS = ("none", "neutral", "pass", "fail", "softfail",
                    "temperror", "permerror")


class Request:
    """A policy request, valid only during the callback. Attributes are
    read from the C request: stage ("connect", "helo", "auth", "mail",
    "rcpt", "message_end"), client_addr, client_host, helo, mail_from,
    rcpt, queue_id, spf_result, auth_mech, auth_user, auth_password,
    tls_protocol, tls_cipher, local_addr (str or None); client_port,
    listener, tls, authenticated, rcpt_count, size, spf, session_id,
    local_port (int); recipients (list)."""

    def __init__(self, ptr: Any) -> None:
        self._ptr = ptr

    def _p(self) -> Any:
        if self._ptr is None:
            raise error_for(_capi.MXGW_E_STATE,
                            "the request is only valid during its callback")
        return self._ptr

    def __getattr__(self, name: str) -> Any:
        key = _REQ.get(name)
        if key is None:
            raise AttributeError(name)
        if key >= 100:
            return _capi.mxgw_server_req_get_int(self._p(), key)
        return _capi.mxgw_server_req_get_str(self._p(), key)

    @property
    def stage_name(self) -> str:
        return _STAGE_NAMES.get(self.stage, "?")

    @property
    def recipients(self) -> List[str]:
        out = []
        p = self._p()
        for i in range(_capi.mxgw_server_req_get_int(p, _capi.MXGW_REQ_RCPT_COUNT)):
            r = _capi.mxgw_server_req_rcpt(p, i)
            if r is not None:
                out.append(r)
        return out

    def reply(self, code: int, enh: Optional[str] = None,
              text: Optional[str] = None) -> None:
        """Answer with this reply instead of accepting."""
        check(_capi.mxgw_server_req_reply(self._p(), int(code), enh, text))


Policy = Callable[[Request], Union[None, int, Tuple[Any, ...]]]


def _wrap_policy(fn: Policy, stage: str) -> Callable[[Any], int]:
    """The callable handed to C: builds the Request, calls fn, applies its
    answer, and turns any exception into -1 (451 4.3.0) after logging it."""
    def call(ptr: Any) -> int:
        req = Request(ptr)
        try:
            ans = fn(req)
            if ans is None or ans is True:
                return 0
            if isinstance(ans, int):
                req.reply(ans)
            else:
                req.reply(*ans)
            return 0
        except Exception:
            log.exception("policy callback %s for stage %s raised; answering 451",
                          getattr(fn, "__name__", fn), stage)
            return -1
        finally:
            req._ptr = None
    return call


class ServerConfig(Handle):
    """The server's configuration. Keyword options by lower-case name:
    session options (hostname, greeting, max_message_size, ...), server
    options (spool_dir, dns_servers, spf, policy_workers, queue_sync,
    queue_journal (1 by default: the queue's incoming journal; 0 = two
    files per message), queue_journal_max_body, deliver, max_connections,
    ...), spf_action={"fail": "reject", ...}.
    Frozen once a server uses it."""

    _free = staticmethod(_capi.mxgw_server_config_free if AVAILABLE else None)

    def __init__(self, **opts: Any) -> None:
        if not AVAILABLE:
            raise error_for(_capi.MXGW_E_UNSUPPORTED,
                            "this libmxgw has no server (mxgw_server.h)")
        rc, p = _capi.mxgw_server_config_new()
        check(rc)
        self._ptr = p
        self._callbacks: Dict[Any, Any] = {}  # capsules: keep while servers live
        for k, v in opts.items():
            self.set(k, v)

    def _errmsg(self) -> str:
        return _capi.mxgw_server_config_errmsg(self._ptr) if self._ptr else ""

    def close(self) -> None:
        """Release our reference (servers keep theirs; the callbacks stay
        alive with this object)."""
        super().close()

    def set(self, name: str, value: Any) -> None:
        """Set a session or server option by name."""
        p = self._p()
        if name == "spf_action":
            for res, act in dict(value).items():
                check(_capi.mxgw_server_config_set_int(
                    p, _capi.MXGW_SRV_OPT_SPF_ACTION + _SPF_RESULTS.index(res),
                    _ACTIONS[act]), self._errmsg)
        elif name in _SRV_INT:
            check(_capi.mxgw_server_config_set_int(p, _SRV_INT[name], int(value)),
                  self._errmsg, where=f"option {name}")
        elif name in _SRV_STR:
            check(_capi.mxgw_server_config_set_str(p, _SRV_STR[name], str(value)),
                  self._errmsg, where=f"option {name}")
        elif name in _SESSION_INT:
            check(_capi.mxgw_server_config_set_int(p, _SESSION_INT[name], int(value)),
                  self._errmsg, where=f"option {name}")
        elif name in _SESSION_STR:
            check(_capi.mxgw_server_config_set_str(p, _SESSION_STR[name], value),
                  self._errmsg, where=f"option {name}")
        else:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown server option {name!r}")

    def get(self, name: str) -> int:
        key = _SRV_INT.get(name, _SESSION_INT.get(name))
        if key is None:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown server option {name!r}")
        rc, v = _capi.mxgw_server_config_get_int(self._p(), key)
        check(rc, self._errmsg)
        return v

    def add_listener(self, addr: str, port: int = 0, mode: str = "smtp", *,
                     tls: Optional[TlsContext] = None,
                     tls_policy: Optional[str] = None, proxy: bool = False,
                     auth_plaintext: bool = False) -> int:
        """Add a listener ("smtp", "submission", "smtps"); port 0 picks a
        free one (Server.listener_port). Returns its index."""
        p = self._p()
        idx = check(_capi.mxgw_server_config_add_listener(p, addr, int(port),
                                                          _MODES[mode]),
                    self._errmsg, where=f"listener {addr}:{port}")
        if tls is not None:
            check(_capi.mxgw_server_config_listener_set_tls(p, idx, tls._p()),
                  self._errmsg)
        if tls_policy is not None:
            check(_capi.mxgw_server_config_listener_set_int(
                p, idx, _capi.MXGW_LISTENER_TLS, _TLS_POLICY[tls_policy]), self._errmsg)
        if proxy:
            check(_capi.mxgw_server_config_listener_set_int(
                p, idx, _capi.MXGW_LISTENER_PROXY, 1), self._errmsg)
        if auth_plaintext:
            check(_capi.mxgw_server_config_listener_set_int(
                p, idx, _capi.MXGW_LISTENER_AUTH_PLAINTEXT, 1), self._errmsg)
        return idx

    def add_domain(self, domain: str) -> None:
        """Accept mail for a domain (".example.org": its subdomains)."""
        check(_capi.mxgw_server_config_add_domain(self._p(), domain), self._errmsg)

    def add_backend(self, target: str) -> None:
        """Append an LMTP backend ("127.0.0.1:24", "unix:/path")."""
        check(_capi.mxgw_server_config_add_backend(self._p(), target), self._errmsg)

    def set_deliver(self, name: str, value: Union[int, str]) -> None:
        """A delivery option by name: integers (concurrency,
        backoff_initial, ..., starttls, poll_ms) or strings (bounce_rcpt,
        tls_servername)."""
        if name in _DELIVER:
            check(_capi.mxgw_server_config_set_deliver_int(self._p(), _DELIVER[name],
                                                           int(value)), self._errmsg)
        elif name in _DELIVER_STR and hasattr(_capi, "mxgw_server_config_set_deliver_str"):
            check(_capi.mxgw_server_config_set_deliver_str(self._p(), _DELIVER_STR[name],
                                                           str(value)), self._errmsg)
        else:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown delivery option {name!r}")

    def set_deliver_tls(self, tls: Optional[TlsContext]) -> None:
        """A loaded client TlsContext for STARTTLS to the LMTP backends
        (with set_deliver("starttls", 1 or 2)); None detaches."""
        check(_capi.mxgw_server_config_set_deliver_tls(
            self._p(), None if tls is None else tls._p()), self._errmsg)

    def set_log(self, fn: Optional[Callable[[int, str], None]]) -> None:
        """The log hook fn(level, line), level 0 debug .. 4 error. Runs on
        server threads, one call at a time; an exception in it is reported
        through sys.unraisablehook and otherwise ignored."""
        if fn is not None and not callable(fn):
            raise TypeError("the log hook must be callable or None")
        rc, cap = _capi.mxgw_py_server_config_set_log(self._p(), fn)
        check(rc, self._errmsg)
        self._callbacks[("log", len(self._callbacks))] = cap

    def set_policy(self, stage: str, fn: Optional[Policy]) -> None:
        """The policy callback of a stage ("connect", "helo", "auth",
        "mail", "rcpt", "message_end"), or None to remove it."""
        if fn is not None and not callable(fn):
            raise TypeError("a policy callback must be callable or None")
        wrapped = None if fn is None else _wrap_policy(fn, stage)
        rc, cap = _capi.mxgw_py_server_config_set_policy(self._p(), _STAGES[stage],
                                                         wrapped)
        check(rc, self._errmsg)
        self._callbacks[(stage, len(self._callbacks))] = cap

    def on_connect(self, fn: Policy) -> Policy:
        self.set_policy("connect", fn)
        return fn

    def on_helo(self, fn: Policy) -> Policy:
        self.set_policy("helo", fn)
        return fn

    def on_auth(self, fn: Policy) -> Policy:
        self.set_policy("auth", fn)
        return fn

    def on_mail(self, fn: Policy) -> Policy:
        self.set_policy("mail", fn)
        return fn

    def on_rcpt(self, fn: Policy) -> Policy:
        self.set_policy("rcpt", fn)
        return fn

    def on_message(self, fn: Policy) -> Policy:
        self.set_policy("message_end", fn)
        return fn


class Server(Handle):
    """A server made from a ServerConfig. Create, start, run and close it
    on one thread (or use Server.background()); drain(), stop() and
    stat() work from any thread."""

    _free = staticmethod(_capi.mxgw_server_free if AVAILABLE else None)

    def __init__(self, config: ServerConfig) -> None:
        rc, p = _capi.mxgw_server_new(config._p())
        if rc < 0:
            msg = _capi.mxgw_server_errmsg(p) if p is not None else ""
            if p is not None:
                _capi.mxgw_server_free(p)
            check(rc, lambda: msg, where="server configuration")
        self._ptr = p
        self.config = config  # its callbacks must outlive the server

    def _errmsg(self) -> str:
        return _capi.mxgw_server_errmsg(self._ptr) if self._ptr else ""

    def start(self) -> None:
        """Open the spool, resolver and sockets; start the worker threads."""
        check(_capi.mxgw_server_start(self._p()), self._errmsg)

    def run(self, loops: int = 1) -> None:
        """Run until a drain or stop completes (GIL released)."""
        check(_capi.mxgw_server_run(self._p(), loops), self._errmsg)

    @property
    def fd(self) -> int:
        """Embedded use: the descriptor to watch for reading."""
        return _capi.mxgw_server_fd(self._p())

    def timeout_ms(self) -> int:
        return _capi.mxgw_server_timeout_ms(self._p())

    def process(self) -> bool:
        """Embedded use: do the ready work; True once drained/stopped."""
        return check(_capi.mxgw_server_process(self._p()), self._errmsg) == 1

    def drain(self, timeout_ms: int = -1) -> None:
        check(_capi.mxgw_server_drain(self._p(), timeout_ms))

    def stop(self) -> None:
        check(_capi.mxgw_server_stop(self._p()))

    def reload(self, config: Optional[ServerConfig] = None) -> None:
        check(_capi.mxgw_server_reload(self._p(), None if config is None
                                       else config._p()), self._errmsg)
        if config is not None:
            self.config_reloaded = config  # keep its callbacks alive too

    def listener_port(self, idx: int = 0) -> int:
        return check(_capi.mxgw_server_listener_port(self._p(), idx), self._errmsg)

    def stat(self, name: str) -> int:
        """A counter by name (connections, messages, policy_calls, ...)."""
        rc, v = _capi.mxgw_server_get_int(self._p(), _STAT[name])
        check(rc)
        return v

    @classmethod
    def background(cls, config: ServerConfig, loops: int = 1,
                   drain_ms: Optional[int] = None) -> "_Background":
        """Run a server on a thread of its own (created, started, run and
        freed there, as the C API wants one owner thread). Use as a context
        manager: it yields the started Server; on exit the server is
        stopped (or drained for drain_ms) and the thread joined."""
        return _Background(cls, config, loops, drain_ms)


class _Background:
    def __init__(self, cls: Any, config: ServerConfig, loops: int,
                 drain_ms: Optional[int] = None) -> None:
        self._drain_ms = drain_ms
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self.server: Optional[Server] = None
        self.ports: List[int] = []
        self._thread = threading.Thread(target=self._main, args=(cls, config, loops),
                                        name="mxgw-server", daemon=True)

    def _main(self, cls: Any, config: ServerConfig, loops: int) -> None:
        try:
            srv = cls(config)
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        with srv:
            try:
                srv.start()
                i = 0
                while True:
                    try:
                        self.ports.append(srv.listener_port(i))
                    except Exception:
                        break
                    i += 1
                self.server = srv
            except BaseException as e:
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            try:
                srv.run(loops)
            except BaseException as e:
                self._error = e

    def __enter__(self) -> Server:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        assert self.server is not None
        return self.server

    def __exit__(self, *exc: Any) -> None:
        if self.server is not None and self.server._ptr is not None:
            if self._drain_ms is None:
                self.server.stop()
            else:
                self.server.drain(self._drain_ms)
        self._thread.join(60)
        if self._error is not None and exc[0] is None:
            raise self._error
