# SPDX-License-Identifier: MIT
"""The durable spool queue: submit, list, show and manage messages.

    with mxgw.Queue("/var/spool/mxgw", owner=False) as q:   # as an operator
        for e in q.list("deferred"):
            print(e.id, e.sender, [r["addr"] for r in e.recipients])
        q.hold("0123ABCD")
        q.release("0123ABCD")

A Queue may be used by several threads at once (it locks internally);
blocking calls (open, commit, management) release the GIL.

With journal=True (what the server does by default) small messages are
committed to a journal segment instead of two files of their own: read a
body with QueueEntry.read_body() / open_body(), never through its
"body_path" (None for a message in the journal).
"""
from __future__ import annotations

import functools
import io
import json as _json
import os
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, TypeVar, Union

from . import _capi
from ._base import Handle, check, options, text
from .errors import error_for

__all__ = ["Queue", "QueueEntry", "QueueBody", "STATES"]

#: State names -> mxgw_queue_state values.
STATES: Dict[str, int] = {k: v for k, v in options("MXGW_QSTATE_").items()}
_RSTATES = {v: k for k, v in options("MXGW_RCPT_").items()}
_QOPT = options("MXGW_QOPT_")
_QKEY = options("MXGW_QKEY_")


_F = TypeVar("_F", bound=Callable[..., Any])


def _in_use(fn: _F) -> _F:
    """Run a method as a user of the queue (of the entry's queue): close()
    waits until no thread is inside one, so another thread closing the
    Queue cannot free the C queue, message or entry under a call (the
    blocking ones run without the GIL)."""
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        q = self if isinstance(self, Queue) else self._owner
        q._enter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            q._leave()
    return wrapper  # type: ignore[return-value]


def _state(s: Union[str, int, None]) -> int:
    if s is None:
        return 0
    if isinstance(s, str):
        try:
            return STATES[s]
        except KeyError:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown queue state {s!r}") from None
    return int(s)


class QueueBody(io.RawIOBase):
    """An open message body: the `length` octets at `offset` in the file
    descriptor `fd` (offset 0 and the whole file for a message with a body
    file; a range of a journal segment for a message in the journal).

    A read-only, seekable binary stream over that range (read(), readall(),
    seek(), io.BufferedReader(body) ...), reading with os.pread(): fd's own
    file position is never used, so fileno() is deliberately unsupported
    (reading fd from its position would not give the body). It owns fd:
    close() or the end of a `with` block closes it. Pass it to
    LmtpConnection.deliver() to deliver the body from where it lies."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self.fd, self.offset, self.length = fd, offset, length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.length}[whence]
        if base + pos < 0:
            raise ValueError(f"negative seek position {base + pos}")
        self._pos = base + pos
        return self._pos

    def readinto(self, b: Any) -> int:
        self._checkClosed()
        mv = memoryview(b).cast("B")
        n = max(0, min(len(mv), self.length - self._pos))
        if n == 0:
            return 0
        got = os.preadv(self.fd, [mv[:n]], self.offset + self._pos)
        if got == 0:  # the file ends before offset + length
            raise error_for(_capi.MXGW_E_IO,
                            f"message body ends after {self._pos} of {self.length} octets")
        self._pos += got
        return got

    def close(self) -> None:
        """Close the descriptor. Idempotent."""
        if not self.closed:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            finally:
                super().close()


class QueueEntry(Handle):
    """A message's metadata as loaded from the spool (a snapshot).

    An entry belongs to the Queue it came from (show(), list(), take()):
    it keeps that Queue object alive, and closing the Queue (close(), the
    end of its `with` block) closes the entries still open, because the C
    entry must be freed before its queue. Read what you need first."""

    _free = staticmethod(_capi.mxgw_queue_entry_free)

    def __init__(self, ptr: Any, queue: "Queue") -> None:
        self._ptr = ptr
        self._adopt(queue)  # freed before the queue, whatever the order

    @_in_use
    def get_str(self, key: str) -> Optional[str]:
        """sender, envid, ret, body, client_addr, client_helo, client_host,
        tls_json, spf_json, body_path, id; None when not set (body_path is
        None for a message in the journal: use open_body()/read_body())."""
        rc, b = _capi.mxgw_queue_entry_get_str(self._p(), _QKEY[key])
        if rc == _capi.MXGW_E_NOTFOUND:
            return None
        check(rc)
        return text(b)

    @_in_use
    def get_int(self, key: str) -> int:
        """smtputf8, arrival, attempts, next_attempt, size, state, rcpt_count,
        in_journal."""
        rc, v = _capi.mxgw_queue_entry_get_int(self._p(), _QKEY[key])
        check(rc)
        return v

    id = property(lambda s: s.get_str("id"), doc="The queue ID.")
    sender = property(lambda s: s.get_str("sender"), doc="Reverse path.")
    in_journal = property(lambda s: bool(s.get_int("in_journal")),
                          doc="True if the message is in the journal (Queue(journal=True)):"
                              " it has no body file, get_str('body_path') is None.")

    @_in_use
    def open_body(self) -> QueueBody:
        """Open the message body wherever it is (its own file or a journal
        segment): a QueueBody owning a new descriptor; close it (`with`).
        NotFoundError when the message is gone."""
        rc, fd, off, length = _capi.mxgw_queue_entry_body(self._p())
        check(rc, where=f"message {self.id} body")
        return QueueBody(fd, off, length)

    def read_body(self) -> bytes:
        """The whole message body as bytes (as it will be delivered: CRLF,
        dot-unstuffed)."""
        with self.open_body() as b:
            data = b.readall()
        if len(data) != b.length:  # pragma: no cover - readinto raises first
            raise error_for(_capi.MXGW_E_IO, "short message body")
        return data

    @property
    def state(self) -> str:
        """"incoming", "active", "deferred", "hold", "failed" or "corrupt"."""
        return _capi.mxgw_queue_state_name(self.get_int("state")) or "?"

    @property
    @_in_use
    def recipients(self) -> List[Dict[str, Any]]:
        """Per recipient: addr, orcpt, enhanced, text, state, notify, code."""
        p = self._p()
        out = []
        for i in range(self.get_int("rcpt_count")):
            d: Dict[str, Any] = {}
            for name, key in options("MXGW_QRKEY_").items():
                if key < 100:
                    rc, b = _capi.mxgw_queue_entry_rcpt_get_str(p, i, key)
                    d[name] = None if rc == _capi.MXGW_E_NOTFOUND else \
                        (check(rc), text(b))[1]
                else:
                    rc, v = _capi.mxgw_queue_entry_rcpt_get_int(p, i, key)
                    check(rc)
                    d[name] = v
            d["state"] = _RSTATES.get(d["state"], d["state"])
            out.append(d)
        return out

    @_in_use
    def json_text(self) -> str:
        """The metadata as JSON text (what mxgw-queue show prints)."""
        rc, b = _capi.mxgw_queue_entry_json(self._p())
        check(rc)
        return text(b)

    def json(self) -> Dict[str, Any]:
        return _json.loads(self.json_text())


class Queue(Handle):
    """A spool directory, opened on construction.

    Options: create (make the directories), owner (take the lock and run
    recovery; operator tools pass False), async_workers, max_batch, sync
    (False only for tests), journal (commit small messages to the incoming
    journal: one append and one fdatasync per group commit instead of two
    files each; owner only), journal_max_body (octets, 1 KiB..64 MiB),
    journal_segment (octets), journal_max_msgs. Raises BusyError if another
    owner holds it. Counters for stat(): commits, commit_errors,
    file_syncs, dir_syncs, batches, recovered, recovered_active,
    quarantined, orphans_removed, journal_commits, journal_spills,
    journal_messages, journal_segments, journal_recovered, journal_torn.
    """

    _free = staticmethod(_capi.mxgw_queue_free)

    def __init__(self, path: str, **opts: Any) -> None:
        self._cv = threading.Condition()
        self._users = 0
        self._closing = False
        rc, p = _capi.mxgw_queue_new(str(path))
        check(rc, where=f"queue {path}")
        self._ptr = p
        self.path = str(path)
        try:
            for k, v in opts.items():
                if k not in _QOPT:
                    raise error_for(_capi.MXGW_E_INVAL, f"unknown queue option {k!r}")
                check(_capi.mxgw_queue_set_int(p, _QOPT[k], int(v)), where=f"option {k}")
            check(_capi.mxgw_queue_open(p), where=f"queue {path}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the queue: wait for calls running in other threads, free
        the entries still open (they are closed too), stop the commit
        workers (they finish the messages handed to them) and release the
        spool. Idempotent."""
        cv = self.__dict__.get("_cv")
        if cv is None:  # __init__ failed before anything was made
            super().close()
            return
        with cv:
            self._closing = True  # no new calls: they raise StateError
            while self._users:
                cv.wait()
            super().close()

    def _enter(self) -> None:
        with self._cv:
            if self._closing:
                raise error_for(_capi.MXGW_E_STATE, "Queue is closed")
            self._users += 1

    def _leave(self) -> None:
        with self._cv:
            self._users -= 1
            if not self._users:
                self._cv.notify_all()

    @_in_use
    def stat(self, key: str) -> int:
        """An option or counter by name (commits, file_syncs, recovered ...)."""
        k = options("MXGW_QSTAT_").get(key, _QOPT.get(key))
        if k is None:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown queue counter {key!r}")
        rc, v = _capi.mxgw_queue_get_int(self._p(), k)
        check(rc)
        return v

    @_in_use
    def count(self, state: Union[str, int]) -> int:
        """Messages in one state."""
        return check(_capi.mxgw_queue_count(self._p(), _state(state)))

    def _build(self, sender: str, recipients: Iterable[Union[str, tuple]],
               body: Union[bytes, bytearray, memoryview], envelope: Dict[str, Any]):
        rc, m = _capi.mxgw_queue_begin(self._p())
        check(rc, where=f"queue {self.path}")
        try:
            check(_capi.mxgw_queue_write(m, body))
            check(_capi.mxgw_queue_msg_set_str(m, _capi.MXGW_QKEY_SENDER, sender))
            for k, v in envelope.items():
                key = _QKEY.get(k)
                if key is None:
                    raise error_for(_capi.MXGW_E_INVAL, f"unknown envelope key {k!r}")
                if isinstance(v, int):
                    check(_capi.mxgw_queue_msg_set_int(m, key, v), where=k)
                else:
                    check(_capi.mxgw_queue_msg_set_str(m, key, v), where=k)
            for r in recipients:
                addr, notify, orcpt = (r, 0, None) if isinstance(r, str) else \
                    (tuple(r) + (0, None))[:3]
                check(_capi.mxgw_queue_msg_add_rcpt(m, addr, int(notify or 0), orcpt),
                      where=f"recipient {addr!r}")
            rc, qid = _capi.mxgw_queue_msg_id(m)
            check(rc)
        except BaseException:
            _capi.mxgw_queue_msg_free(m)
            raise
        return m, text(qid)

    @_in_use
    def submit(self, sender: str, recipients: Iterable[Union[str, tuple]],
               body: Union[bytes, bytearray, memoryview], /, **envelope: Any) -> str:
        """Write and commit a message durably (GIL released during the
        fsyncs); returns its queue ID once it is safe to send the 250.
        envelope: envid, ret, body (7BIT/8BITMIME), client_addr,
        client_helo, client_host, tls_json, spf_json (str); smtputf8,
        arrival, next_attempt (int). NoSpaceError maps to 452 4.3.1,
        other errors to 451 4.3.0. sender, recipients and the body octets
        are positional only, so body="8BITMIME" is the envelope's BODY=."""
        m, qid = self._build(sender, recipients, body, envelope)
        check(_capi.mxgw_queue_commit(m), where=f"queue {self.path}")  # consumes m
        return qid

    @_in_use
    def submit_async(self, tag: int, sender: str,
                     recipients: Iterable[Union[str, tuple]],
                     body: Union[bytes, bytearray, memoryview], /, **envelope: Any) -> str:
        """Hand a message to the commit workers (needs async_workers > 0)
        and return its queue ID at once; the outcome arrives with `tag`
        through completed() when eventfd is readable (asyncio:
        loop.add_reader(q.eventfd, ...))."""
        tag = int(tag)
        if not 0 <= tag < 1 << 64:
            raise error_for(_capi.MXGW_E_RANGE, f"tag {tag} is not a 64-bit unsigned value")
        m, qid = self._build(sender, recipients, body, envelope)
        # consumes m, successful or not (then no completion follows)
        check(_capi.mxgw_queue_commit_async(m, tag), where=f"queue {self.path}")
        return qid

    @property
    @_in_use
    def eventfd(self) -> int:
        """Readable while finished asynchronous commits wait (-1 without
        workers). Owned by the queue."""
        return _capi.mxgw_queue_eventfd(self._p())

    @_in_use
    def completed(self, max: int = 64) -> List[Tuple[int, int, str]]:
        """Finished asynchronous commits: [(tag, status, queue ID)], status
        0 = durable (send the 250), else a negative mxgw_err."""
        rc, done = _capi.mxgw_queue_completed(self._p(), max)
        check(rc)
        return done

    @_in_use
    def show(self, qid: str) -> QueueEntry:
        """Load one message's metadata (NotFoundError if there is none)."""
        rc, e = _capi.mxgw_queue_load(self._p(), qid)
        check(rc, where=f"message {qid}")
        return QueueEntry(e, self)

    @_in_use
    def list(self, state: Union[str, int]) -> List[QueueEntry]:
        """The messages in one state, oldest first (unreadable entries are
        skipped)."""
        rc, it = _capi.mxgw_queue_iter_new(self._p(), _state(state))
        check(rc)
        out: List[QueueEntry] = []
        try:
            while True:
                rc, e = _capi.mxgw_queue_iter_next(it)
                if rc == 0:
                    return out
                if rc == _capi.MXGW_E_SYNTAX:
                    continue
                check(rc)
                rc2, qid = _capi.mxgw_queue_iter_id(it)
                check(rc2)
                out.append(self.show(text(qid)))  # a copy that outlives it
        finally:
            _capi.mxgw_queue_iter_free(it)

    @_in_use
    def ids(self, state: Union[str, int]) -> List[str]:
        """The queue IDs in one state, oldest first."""
        rc, it = _capi.mxgw_queue_iter_new(self._p(), _state(state))
        check(rc)
        out: List[str] = []
        try:
            while True:
                rc, _e = _capi.mxgw_queue_iter_next(it)
                if rc == 0:
                    return out
                if rc < 0 and rc != _capi.MXGW_E_SYNTAX:
                    check(rc)
                rc2, qid = _capi.mxgw_queue_iter_id(it)
                check(rc2)
                out.append(text(qid))
        finally:
            _capi.mxgw_queue_iter_free(it)

    @_in_use
    def _manage(self, op: int, qid: Optional[str], state: Union[str, int, None]) -> int:
        return check(_capi.mxgw_queue_manage(self._p(), op, qid, _state(state)),
                     where=f"message {qid}" if qid else None)

    def hold(self, qid: Optional[str] = None, state: Union[str, int, None] = None) -> int:
        """Put a message (or every message of a state) on hold; returns
        how many changed."""
        return self._manage(_capi.MXGW_QOP_HOLD, qid, state)

    def release(self, qid: Optional[str] = None,
                state: Union[str, int, None] = None) -> int:
        """Release held messages (due now)."""
        return self._manage(_capi.MXGW_QOP_RELEASE, qid, state)

    def delete(self, qid: Optional[str] = None,
               state: Union[str, int, None] = None) -> int:
        """Delete messages (never active ones: BusyError)."""
        return self._manage(_capi.MXGW_QOP_DELETE, qid, state)

    def requeue(self, qid: Optional[str] = None,
                state: Union[str, int, None] = None) -> int:
        """Make deferred/held/failed messages due now."""
        return self._manage(_capi.MXGW_QOP_REQUEUE, qid, state)

    def flush(self, qid: Optional[str] = None) -> int:
        """Deferred messages due now, their recipients' results kept
        (postqueue -f)."""
        return self._manage(_capi.MXGW_QOP_FLUSH, qid, None)

    @_in_use
    def take(self, now: Optional[int] = None) -> Optional[QueueEntry]:
        """Claim the next due message (moved to active), or None."""
        import time
        rc, e = _capi.mxgw_queue_take(self._p(), int(time.time()) if now is None else now)
        if rc == _capi.MXGW_E_NOTFOUND:
            return None
        check(rc)
        return QueueEntry(e, self)

    def _entry(self, entry: QueueEntry) -> Any:
        """The C entry of one of this queue's entries."""
        if entry._owner is not self:
            raise error_for(_capi.MXGW_E_INVAL, "the entry comes from another Queue")
        return entry._p()

    @_in_use
    def save(self, entry: QueueEntry) -> None:
        """Write an entry's metadata back atomically (after set_rcpt)."""
        check(_capi.mxgw_queue_save(self._p(), self._entry(entry)))

    @_in_use
    def set_rcpt(self, entry: QueueEntry, idx: int, state: str, code: int = 0,
                 enh: Optional[str] = None, text_: Optional[str] = None) -> None:
        """Record one recipient's result in memory (save()/finish() write it)."""
        st = options("MXGW_RCPT_")
        check(_capi.mxgw_queue_entry_set_rcpt(self._entry(entry), idx, st[state], code,
                                              enh, text_))

    @_in_use
    def finish(self, entry: QueueEntry, results: Iterable[tuple],
               next_attempt: int = 0) -> Optional[str]:
        """Record per-recipient results ((idx, state, code, enh, text),
        state "delivered"/"failed"/"deferred") and end the attempt.
        Returns the new state name, or None when the message was removed."""
        st = {k: v for k, v in options("MXGW_RCPT_").items()}
        for idx, state, code, enh, txt in results:
            check(_capi.mxgw_queue_entry_set_rcpt(self._entry(entry), idx, st[state], code,
                                                  enh, txt))
        rc = check(_capi.mxgw_queue_finish(self._p(), self._entry(entry), next_attempt))
        return _capi.mxgw_queue_state_name(rc) if rc else None
