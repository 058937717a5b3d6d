# SPDX-License-Identifier: MIT
"""SPF (RFC 7208) through libmxgw: resolvers, the evaluator and its results.

Blocking::

    with mxgw.Resolver.static(zone_text) as r, mxgw.Spf(r) as spf:
        chk = spf.check("192.0.2.1", "mx.example.org", "user@example.org")
        print(chk.result, chk.received_spf())

asyncio (many checks in flight on one resolver, driven by the loop)::

    chk = await spf.check_async("192.0.2.1", "mx.example.org", "a@example.org")

The blocking :meth:`Spf.check` releases the GIL while it waits for DNS, so
``loop.run_in_executor(None, spf.check, ...)`` works too. A resolver and its
Spf are used by one thread at a time (a lock in :class:`Spf` serialises
callers); give each thread its own pair to evaluate in parallel.
"""
from __future__ import annotations

import asyncio
import json as _json
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from . import _capi
from ._base import Handle, check, options, text
from .errors import error_for

__all__ = ["Resolver", "Spf", "SpfCheck", "TraceEntry", "RESULTS",
           "spf_policy", "DNS_TYPES", "dns_status_name"]

#: The seven results, indexed by their C value.
RESULTS: Tuple[str, ...] = tuple(_capi.mxgw_spf_result_name(i) for i in range(7))
def dns_status_name(status: int) -> str:
    """"NOERROR", "NODATA", "NXDOMAIN", "SERVFAIL", "TIMEOUT", "ERROR"."""
    return _capi.mxgw_dns_status_name(status)


#: Record type names -> IANA numbers.
DNS_TYPES: Dict[str, int] = {k.upper(): v for k, v in options("MXGW_DNS_").items()
                             if k.upper() in ("A", "AAAA", "MX", "TXT", "PTR",
                                              "CNAME")}
_DNS_STATUS = {"servfail": _capi.MXGW_DNS_SERVFAIL,
               "timeout": _capi.MXGW_DNS_TIMEOUT}
_IDENTITY = {"mailfrom": _capi.MXGW_SPF_ID_MAILFROM,
             "helo": _capi.MXGW_SPF_ID_HELO}
_INT_OPTS = {"max_dns_terms": _capi.MXGW_SPF_OPT_MAX_DNS_TERMS,
             "max_void_lookups": _capi.MXGW_SPF_OPT_MAX_VOID_LOOKUPS,
             "max_mx_names": _capi.MXGW_SPF_OPT_MAX_MX_NAMES,
             "max_ptr_names": _capi.MXGW_SPF_OPT_MAX_PTR_NAMES,
             "timeout_ms": _capi.MXGW_SPF_OPT_TIMEOUT_MS,
             "trace": _capi.MXGW_SPF_OPT_TRACE,
             "now": _capi.MXGW_SPF_OPT_NOW}
_STR_OPTS = {"receiver": _capi.MXGW_SPF_OPT_RECEIVER,
             "default_explanation": _capi.MXGW_SPF_OPT_DEFAULT_EXPLANATION}

Buffer = Union[bytes, bytearray, memoryview, str]


class Resolver(Handle):
    """A DNS resolver for SPF: a static in-memory zone, or c-ares.

    Use the constructors :meth:`static` and :meth:`ares`. One thread at a
    time; it must outlive the :class:`Spf` objects that use it.
    """

    _free = staticmethod(_capi.mxgw_resolver_free)

    def __init__(self, _ptr: Any, kind: str) -> None:
        self._ptr = _ptr
        self.kind = kind
        self._drivers: Dict[Any, "_AsyncDriver"] = {}
        self._children = 0
        self._closing = False

    def close(self) -> None:
        """Free the resolver. Evaluators still open keep it alive until they
        are closed."""
        self._closing = True
        if self._children == 0:
            super().close()

    def _child_closed(self) -> None:
        self._children -= 1
        if self._closing and self._children == 0:
            self.close()

    def _errmsg(self) -> str:
        return _capi.mxgw_resolver_errmsg(self._ptr) if self._ptr else ""

    @classmethod
    def static(cls, zone: Optional[Buffer] = None,
               origin: Optional[str] = None) -> "Resolver":
        """A static zone, optionally loaded from RFC 1035 master-file text.

        Raises MxgwSyntaxError (naming the line) for a bad zone."""
        rc, p = _capi.mxgw_resolver_new_static()
        check(rc)
        self = cls(p, "static")
        if zone is not None:
            self.load_zone(zone, origin)
        return self

    @classmethod
    def ares(cls, servers: Optional[Sequence[str]] = None, *,
             timeout_ms: Optional[int] = None, tries: Optional[int] = None,
             cache_size: Optional[int] = None,
             negative_ttl: Optional[int] = None) -> "Resolver":
        """A c-ares resolver. servers: ["127.0.0.1:5353", "[::1]:53"] (the
        --dns-server of the command-line tools); default /etc/resolv.conf.

        Raises InvalidArgumentError for a value that does not parse."""
        opts: List[str] = []
        if servers:
            opts.append("servers=" + ",".join(servers))
        for k, v in (("timeout_ms", timeout_ms), ("tries", tries),
                     ("cache_size", cache_size), ("negative_ttl", negative_ttl)):
            if v is not None:
                opts.append(f"{k}={int(v)}")
        rc, p = _capi.mxgw_resolver_new_ares(opts or None)
        check(rc, where="c-ares resolver " + " ".join(opts))
        return cls(p, "ares")

    def add_record(self, name: str, rtype: Union[str, int], data: Optional[str],
                   ttl: int = 3600, fail: Optional[str] = None) -> None:
        """Add one record to a static zone. rtype "A", "TXT" ...; data in
        presentation form ("10 mx.example.org" for MX, the text for TXT).
        fail="servfail" or "timeout" makes every query for (name, rtype)
        fail that way instead."""
        t = DNS_TYPES[rtype.upper()] if isinstance(rtype, str) else int(rtype)
        status = _DNS_STATUS[fail] if fail else 0
        check(_capi.mxgw_resolver_add_record(self._p(), name, t, ttl,
                                             data, status), self._errmsg)

    def load_zone(self, zone: Buffer, origin: Optional[str] = None) -> None:
        """Load master-file text (str or bytes) into a static zone."""
        check(_capi.mxgw_resolver_load_zone(self._p(), zone, origin),
              self._errmsg)

    def load_zone_file(self, path: str, origin: Optional[str] = None) -> None:
        """Load a master file into a static zone (MxgwIOError if unreadable)."""
        check(_capi.mxgw_resolver_load_zone_file(self._p(), str(path), origin),
              self._errmsg)

    @property
    def pending(self) -> int:
        """Queries started and not yet completed."""
        return _capi.mxgw_resolver_pending(self._p())

    def fds(self) -> List[Tuple[int, int]]:
        """Descriptors to watch: [(fd, events)], events 1 = read, 2 = write."""
        rc, lst = _capi.mxgw_resolver_fds(self._p())
        return lst

    def timeout(self) -> int:
        """Milliseconds until process() is due without I/O (-1: no timer)."""
        return _capi.mxgw_resolver_timeout(self._p())

    def process(self, fd: int = -1, events: int = 0) -> int:
        """Do the due work (callbacks run here); returns callbacks run."""
        return check(_capi.mxgw_resolver_process(self._p(), fd, events),
                     self._errmsg)

    def run(self, timeout_ms: int = -1) -> None:
        """Block (GIL released) until nothing is pending or the time is up
        (MxgwTimeoutError)."""
        check(_capi.mxgw_resolver_run(self._p(), timeout_ms), self._errmsg)


class TraceEntry(NamedTuple):
    """One step of an evaluation: depth (include level), kind ("query",
    "record", "term", "result") and the text."""
    depth: int
    kind: str
    text: str


class SpfCheck(Handle):
    """A finished SPF evaluation: the result and everything it recorded."""

    __slots__ = ("_ptr", "_code", "_spf")
    _free = staticmethod(_capi.mxgw_spf_check_free)

    def __init__(self, ptr: Any, code: int, spf: "Spf") -> None:
        self._ptr = ptr
        self._code = code
        self._spf = spf  # the context must outlive its checks
        spf._children += 1

    def close(self) -> None:
        """Free the check (the context it came from stays usable)."""
        p, self._ptr = self._ptr, None
        if p is not None:
            _capi.mxgw_spf_check_free(p)
            self._spf._child_closed()

    def __repr__(self) -> str:
        return f"<SpfCheck {self.result} {self.client_ip} {self.sender}>"

    # ---- result -----------------------------------------------------------
    @property
    def result_code(self) -> int:
        """The result as its C value (mxgw_spf_result)."""
        if self._code < 0 or self._ptr is None:
            self._code = check(_capi.mxgw_spf_check_result(self._p()))
        return self._code

    @property
    def result(self) -> str:
        """"pass", "fail", "softfail", "neutral", "none", "temperror" or
        "permerror"."""
        return RESULTS[self.result_code]

    @property
    def done(self) -> bool:
        """True once the check has its result."""
        return bool(_capi.mxgw_spf_check_done(self._p()))

    def run(self, timeout_ms: int = -1) -> None:
        """Drive the resolver (GIL released) until this check is done;
        MxgwTimeoutError if it is still running after timeout_ms."""
        with self._spf._lock:
            check(_capi.mxgw_spf_check_run(self._p(), timeout_ms))

    def abort(self) -> None:
        """End a running check now with temperror ("evaluation aborted")."""
        _capi.mxgw_spf_check_abort(self._p())

    def _str(self, key: int) -> Optional[str]:
        rc, b = _capi.mxgw_spf_check_get_str(self._p(), key)
        if rc == _capi.MXGW_E_NOTFOUND:
            return None
        check(rc)
        return text(b)

    mechanism = property(lambda s: s._str(_capi.MXGW_SPF_INFO_MECHANISM),
                         doc="The term that decided (None for none/errors).")
    domain = property(lambda s: s._str(_capi.MXGW_SPF_INFO_DOMAIN),
                      doc="The domain whose record decided.")
    explanation = property(lambda s: s._str(_capi.MXGW_SPF_INFO_EXPLANATION),
                           doc="For fail: the explanation.")
    problem = property(lambda s: s._str(_capi.MXGW_SPF_INFO_PROBLEM),
                       doc="For temperror/permerror: what went wrong.")
    client_ip = property(lambda s: s._str(_capi.MXGW_SPF_INFO_CLIENT_IP),
                         doc="The client address as evaluated.")
    sender = property(lambda s: s._str(_capi.MXGW_SPF_INFO_SENDER),
                      doc="The sender as evaluated.")
    helo = property(lambda s: s._str(_capi.MXGW_SPF_INFO_HELO),
                    doc="The HELO argument.")
    identity = property(lambda s: s._str(_capi.MXGW_SPF_INFO_IDENTITY),
                        doc='"mailfrom" or "helo".')

    @property
    def counts(self) -> Dict[str, int]:
        """Counters against the RFC 7208 4.6.4 limits, and DNS queries."""
        out = {}
        for k, key in (("dns_terms", _capi.MXGW_SPF_INFO_DNS_TERMS),
                       ("void_lookups", _capi.MXGW_SPF_INFO_VOID_LOOKUPS),
                       ("mx_names", _capi.MXGW_SPF_INFO_MX_NAMES),
                       ("ptr_names", _capi.MXGW_SPF_INFO_PTR_NAMES),
                       ("dns_queries", _capi.MXGW_SPF_INFO_DNS_QUERIES)):
            rc, v = _capi.mxgw_spf_check_get_int(self._p(), key)
            check(rc)
            out[k] = v
        return out

    @property
    def trace(self) -> List[TraceEntry]:
        """Every DNS lookup and term, in order (empty with trace=False)."""
        p = self._p()
        out = []
        for i in range(_capi.mxgw_spf_check_trace_count(p)):
            rc, depth, kind, b = _capi.mxgw_spf_check_trace(p, i)
            check(rc)
            out.append(TraceEntry(depth, _capi.mxgw_spf_trace_kind_name(kind),
                                  text(b)))
        return out

    def json_text(self) -> str:
        """The whole check as JSON text."""
        rc, b = _capi.mxgw_spf_check_json(self._p())
        check(rc)
        return text(b)

    def json(self) -> Dict[str, Any]:
        """The whole check as a dict (result, trace, counts, headers ...)."""
        return _json.loads(self.json_text())

    # ---- headers and policy ---------------------------------------------
    def received_spf(self) -> str:
        """The complete Received-SPF header field, folded, ending in CRLF."""
        rc, b = _capi.mxgw_spf_check_received_spf(self._p())
        check(rc)
        return text(b)

    def auth_results(self, authserv_id: Optional[str] = None) -> str:
        """The spf resinfo of Authentication-Results, or with authserv_id
        the complete header field."""
        rc, b = _capi.mxgw_spf_check_auth_results(self._p(), authserv_id)
        check(rc)
        return text(b)

    def reply(self, permerror_reject: bool = True
              ) -> Tuple[int, Optional[str], str]:
        """The SMTP reply for this result (RFC 7372): (code, enh, text);
        code 0 means accept."""
        rc, code, enh, b = _capi.mxgw_spf_check_reply(self._p(),
                                                      int(permerror_reject))
        check(rc)
        return code, enh, text(b)


def spf_policy(result: Union[str, int], permerror_reject: bool = True
               ) -> Tuple[int, Optional[str]]:
    """Map a result to (reply code, enhanced code); (0, None) = accept."""
    r = RESULTS.index(result) if isinstance(result, str) else int(result)
    rc, code, enh = _capi.mxgw_spf_policy(r, int(permerror_reject))
    check(rc)
    return code, enh


class Spf(Handle):
    """An SPF evaluator over a :class:`Resolver` (borrowed: keep it open).

    Keyword options: receiver, default_explanation, trace (bool),
    timeout_ms, max_dns_terms, max_void_lookups, max_mx_names,
    max_ptr_names, now.
    """

    _free = staticmethod(_capi.mxgw_spf_free)

    def __init__(self, resolver: Resolver, **opts: Any) -> None:
        rc, p = _capi.mxgw_spf_new(resolver._p())
        check(rc)
        self._ptr = p
        self.resolver = resolver  # keeps it alive as long as we are
        self._lock = threading.Lock()
        self._children = 0
        self._closing = False
        resolver._children += 1
        for k, v in opts.items():
            self.set_option(k, v)

    def close(self) -> None:
        """Free the evaluator. Checks still open keep it alive until they
        are closed (C requires checks to be freed first)."""
        self._closing = True
        if self._children == 0 and self._ptr is not None:
            super().close()
            self.resolver._child_closed()

    def _child_closed(self) -> None:
        self._children -= 1
        if self._closing and self._children == 0:
            self.close()

    def set_option(self, name: str, value: Any) -> None:
        """Set an option by name (see the class docstring)."""
        if name in _INT_OPTS:
            check(_capi.mxgw_spf_set_int(self._p(), _INT_OPTS[name], int(value)))
        elif name in _STR_OPTS:
            check(_capi.mxgw_spf_set_str(self._p(), _STR_OPTS[name], value))
        else:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown SPF option {name!r}")

    def get_option(self, name: str) -> int:
        """Read an integer option."""
        if name not in _INT_OPTS:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown SPF option {name!r}")
        rc, v = _capi.mxgw_spf_get_int(self._p(), _INT_OPTS[name])
        check(rc)
        return v

    def check(self, ip: str, helo: Optional[str] = None,
              mail_from: Optional[str] = "", identity: str = "mailfrom"
              ) -> SpfCheck:
        """Evaluate check_host() and wait for the result (GIL released).

        ip: the client address; helo: the HELO/EHLO name; mail_from: the
        reverse-path without <> ("" for the null sender); identity:
        "mailfrom" or "helo". Raises InvalidArgumentError for a bad ip or a
        missing HELO."""
        with self._lock:
            rc, p, code = _capi.mxgw_py_spf_eval(self._p(), ip, helo, mail_from,
                                                 _IDENTITY[identity])
            if rc == 0:
                return SpfCheck(p, code, self)
        check(rc, where=f"SPF check of {ip}")
        raise error_for(rc)  # not reached: rc < 0

    def start(self, ip: str, helo: Optional[str] = None,
              mail_from: Optional[str] = "", identity: str = "mailfrom"
              ) -> SpfCheck:
        """Start a check without waiting (drive the resolver yourself:
        fds()/timeout()/process(), then read the check once .done)."""
        with self._lock:
            rc, p = _capi.mxgw_spf_check_start(self._p(), ip, helo, mail_from,
                                               _IDENTITY[identity])
            if rc == 0:
                return SpfCheck(p, -1, self)
        check(rc, where=f"SPF check of {ip}")
        raise error_for(rc)  # not reached: rc < 0

    async def check_async(self, ip: str, helo: Optional[str] = None,
                          mail_from: Optional[str] = "",
                          identity: str = "mailfrom") -> SpfCheck:
        """Evaluate without blocking the event loop: the resolver's sockets
        and timers are driven by the running asyncio loop, so any number of
        checks can be in flight on one resolver. Cancelling the task aborts
        the check."""
        loop = asyncio.get_running_loop()
        chk = self.start(ip, helo, mail_from, identity)
        if chk.done:
            return chk
        drv = self.resolver._drivers.get(loop)
        if drv is None:
            drv = self.resolver._drivers[loop] = _AsyncDriver(self.resolver, loop)
        fut = drv.add(chk)
        try:
            await fut
        except asyncio.CancelledError:
            drv.discard(chk)
            chk.close()
            raise
        return chk


class _AsyncDriver:
    """Drives one resolver from one asyncio loop for the checks waiting on
    it: watches its descriptors with add_reader/add_writer and its timer
    with call_later, calls process(), and completes the futures of the
    checks that are done."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop):
        self.r = resolver
        self.loop = loop
        self.waiting: Dict[int, Tuple[SpfCheck, "asyncio.Future[None]"]] = {}
        self.watched: Dict[int, int] = {}
        self.timer: Optional[asyncio.TimerHandle] = None

    def add(self, chk: SpfCheck) -> "asyncio.Future[None]":
        fut = self.loop.create_future()
        self.waiting[id(chk)] = (chk, fut)
        self._arm()
        return fut

    def discard(self, chk: SpfCheck) -> None:
        self.waiting.pop(id(chk), None)
        if not self.waiting:
            self._disarm()

    def _disarm(self) -> None:
        for fd, ev in self.watched.items():
            if ev & 1:
                self.loop.remove_reader(fd)
            if ev & 2:
                self.loop.remove_writer(fd)
        self.watched = {}
        if self.timer:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        self._disarm()
        if not self.waiting or self.r._ptr is None:
            return
        for fd, ev in self.r.fds():
            self.watched[fd] = ev
            if ev & 1:
                self.loop.add_reader(fd, self._ready, fd, 1)
            if ev & 2:
                self.loop.add_writer(fd, self._ready, fd, 2)
        t = self.r.timeout()
        if t >= 0:
            self.timer = self.loop.call_later(t / 1000.0, self._ready, -1, 0)

    def _ready(self, fd: int, ev: int) -> None:
        try:
            self.r.process(fd, ev)
        except Exception as e:  # pragma: no cover (process fails only nested)
            for chk, fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(e)
            self.waiting.clear()
        for key, (chk, fut) in list(self.waiting.items()):
            if chk._ptr is None or chk.done:
                del self.waiting[key]
                if not fut.done():
                    fut.set_result(None)
        self._arm()
