# SPDX-License-Identifier: MIT
"""Error paths of the binding must raise a clean exception, never crash.

Failures are injected at each step of LmtpConnection.deliver() /
deliver_async() and Queue.submit() / submit_async() (a _capi function
replaced to return an error code or to raise between the C calls), then the
objects are dropped, the `with` blocks exit and the garbage collector runs.
The regressions:

- a QueueEntry outliving its Queue (a `with mxgw.Queue(...)` block left by
  an exception while an entry from take()/show() was alive): its finaliser
  called mxgw_queue_entry_free() after mxgw_queue_free(), which reads the
  freed queue, and pytest died with SIGSEGV;
- an LmtpConnection whose deliver_async() was cancelled or failed after the
  message was submitted: every later delivery failed with StateError from
  mxgw_lmtp_msg_new().

Each scenario runs in a child interpreter (this file run as a script, with
PYTHONFAULTHANDLER=1) so that a crash is reported as a failed test with
the child's traceback instead of killing pytest. MXGW_ERRPATH_VALGRIND=1
runs the children under valgrind (memcheck errors fail the test).
"""
import functools
import gc
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BODY = b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: e\r\n\r\nbody\r\n"


# ---------------------------------------------------------------- the runner

def run(name, **args):
    """Run scenario_<name>(**args) in a child interpreter; return its
    stdout lines. Fails with the child's output if it died."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, os.path.join(HERE, "test_error_paths.py"), name,
           json.dumps(args)]
    if os.environ.get("MXGW_ERRPATH_VALGRIND") == "1":
        env["PYTHONMALLOC"] = "malloc"
        cmd = ["valgrind", "-q", "--error-exitcode=99", "--errors-for-leak-kinds=none",
               "--num-callers=30"] + cmd
    p = subprocess.run(cmd, capture_output=True, timeout=600, env=env)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, (
        f"scenario {name} ended with status {p.returncode}"
        f"{' (SIGSEGV)' if p.returncode in (-11, 139) else ''}\n"
        f"--- stdout\n{out}\n--- stderr\n{err}")
    assert f"OK {name}" in out, out + err
    return out.splitlines()


# ------------------------------------------------------ helpers in the child

class Boom(Exception):
    """The injected Python exception."""


def inject(name, nth=1, result=None, every=False):
    """Replace mxgw._capi.<name>: its nth call (every call from the nth on
    when every=True) raises Boom if result is None, else returns result
    without calling C. Returns the function that restores it."""
    from mxgw import _capi
    orig = getattr(_capi, name)
    count = [0]

    @functools.wraps(orig)
    def fake(*a, **k):
        count[0] += 1
        if count[0] == nth or (every and count[0] > nth):
            if result is None:
                raise Boom(f"{name} call {count[0]}")
            return result
        return orig(*a, **k)
    setattr(_capi, name, fake)
    return lambda: setattr(_capi, name, orig)


def spray():
    """Reuse freed C memory (what pytest's reporting does between a
    failure and the finalisers): blocks of every small size, 0xff."""
    return [bytes([255]) * n + bytes([i & 255]) for i in range(200)
            for n in range(100, 1200, 16)]


def tmp_files(spool):
    return os.listdir(os.path.join(spool, "tmp"))


# ----------------------------------------------------------- queue scenarios

def scenario_entry_outlives_queue(d):
    """The crash of the `with mxgw.Queue` block left by an exception while
    entries were alive (take(), show(), list())."""
    import mxgw
    spool = os.path.join(d, "spool")

    def body():
        with mxgw.Queue(spool, sync=0, async_workers=0) as q:
            ids = [q.submit("a@example.org", ["b@example.net"], BODY) for _ in range(3)]
            taken = q.take()
            shown = q.show(ids[1])
            listed = q.list("incoming")
            raise Boom((taken, shown, listed))  # the traceback keeps them
    try:
        body()
    except Boom as e:
        taken, shown, listed = e.args[0]
        junk = spray()
        for ent in [taken, shown] + listed:
            with pytest.raises(mxgw.StateError):
                ent.get_str("sender")
            with pytest.raises(mxgw.StateError):
                ent.recipients
        with pytest.raises(mxgw.StateError):
            taken.json()
        del junk
        taken.close()  # no-op: the queue freed it
    gc.collect()
    junk = spray()  # noqa: F841
    gc.collect()
    # an entry used after its queue was closed (no exception involved)
    q = mxgw.Queue(spool, sync=0, async_workers=0)
    e = q.take()
    assert e.state == "active"
    q.close()
    with pytest.raises(mxgw.StateError):
        e.state
    with pytest.raises(mxgw.StateError):
        q.save(e)
    del e, q
    gc.collect()
    # a queue and its entries in one reference cycle, collected together
    for first in (0, 1):
        q = mxgw.Queue(spool, sync=0, async_workers=0)
        cyc = [q, q.show(q.ids("incoming")[0]), q.list("incoming")]
        if first:
            cyc.reverse()
        cyc.append(cyc)
        del q, cyc
        spray()
        gc.collect()
    # an entry of one queue refused by another
    with mxgw.Queue(spool, sync=0, async_workers=0) as q1, \
            mxgw.Queue(os.path.join(d, "other"), sync=0, async_workers=0) as q2:
        e = q1.show(q1.ids("incoming")[0])
        with pytest.raises(mxgw.InvalidArgumentError):
            q2.save(e)
    with pytest.raises(mxgw.StateError):  # closed with q1
        e.sender
    # an entry keeps its Queue object alive: dropping the queue's name (no
    # close()) leaves the entry usable
    e = mxgw.Queue(spool, sync=0, async_workers=0).take()
    gc.collect()
    assert e.sender == "a@example.org" and e.state == "active"
    del e
    gc.collect()
    print("OK entry_outlives_queue")


_BUILD_STEPS = ["mxgw_queue_begin", "mxgw_queue_write", "mxgw_queue_msg_set_str",
                "mxgw_queue_msg_set_int", "mxgw_queue_msg_add_rcpt", "mxgw_queue_msg_id"]


def _fail_value(name):
    from mxgw import _capi
    rc = _capi.MXGW_E_STATE
    return [rc, None] if name in ("mxgw_queue_begin", "mxgw_queue_msg_id") else rc


def scenario_submit_steps(d, async_workers):
    """An error or an exception at each C call of submit()/submit_async():
    a clean exception, the half-built message freed once (no temporary file
    left), the queue still usable, earlier async commits still completed."""
    import select

    import mxgw
    spool = os.path.join(d, "spool")
    done = []
    with mxgw.Queue(spool, sync=1, async_workers=async_workers) as q:
        def submit(tag, wait=True):
            if not async_workers:
                return q.submit("a@example.org", ["b@example.net", "c@example.net"], BODY,
                                smtputf8=0, envid="E1")
            qid = q.submit_async(tag, "a@example.org", ["b@example.net", "c@example.net"],
                                 BODY, smtputf8=0, envid="E1")
            while wait and tag not in [t for t, _st, _id in done]:
                select.select([q.eventfd], [], [], 10)
                done.extend(q.completed())
            return qid
        good = {submit(1)}
        tag = 2
        for name in _BUILD_STEPS:
            nths = (1, 2) if name in ("mxgw_queue_msg_set_str", "mxgw_queue_msg_add_rcpt") else (1,)
            for nth in nths:
                for result in (_fail_value(name), None):
                    undo = inject(name, nth, result)
                    try:
                        with pytest.raises(Boom if result is None else mxgw.StateError):
                            submit(tag)
                    finally:
                        undo()
                    assert tmp_files(spool) == [], (name, nth, result, tmp_files(spool))
                    tag += 1
                    good.add(submit(tag))  # still usable
                    tag += 1
        # the consuming calls' own errors: the message is theirs, not freed again
        with pytest.raises(mxgw.StateError):  # no recipient
            if async_workers:
                q.submit_async(tag, "a@example.org", [], BODY)
            else:
                q.submit("a@example.org", [], BODY)
        for bad in (-1, 1 << 64, "x", None):  # refused before a message exists
            if not async_workers:
                break
            with pytest.raises((mxgw.RangeError, ValueError, TypeError)):
                q.submit_async(bad, "a@example.org", ["b@example.net"], BODY)
        assert tmp_files(spool) == []
        if async_workers:
            assert {qid for _t, st, qid in done if st == 0} == good, done
            assert len(done) == len(good) and q.completed() == []
        assert set(q.ids("incoming")) == good
        # the failure inside the `with` block, after async commits (the
        # regression): the queue closes while workers may still be busy
        submit(tag + 1, wait=False)
        e = q.show(sorted(good)[0])
        raise Boom(e)


def scenario_submit_in_with(d, async_workers):
    import mxgw
    try:
        scenario_submit_steps(d, async_workers)
    except Boom as b:
        junk = spray()
        with pytest.raises(mxgw.StateError):
            b.args[0].sender
        del junk, b
    gc.collect()
    spool = os.path.join(d, "spool")
    with mxgw.Queue(spool, sync=0, async_workers=0) as q:  # a new owner: the lock was released
        n = q.count("incoming")
    assert tmp_files(spool) == []
    print(f"incoming {n}")
    print("OK submit_in_with")


def scenario_close_while_busy(d):
    """Another thread closes the Queue while threads submit (the commit
    runs without the GIL): close() waits for them; later calls raise."""
    import threading

    import mxgw
    q = mxgw.Queue(os.path.join(d, "spool"), sync=1, async_workers=2)
    errors, stop = [], threading.Event()

    def worker():
        while not stop.is_set():
            try:
                q.submit("a@example.org", ["b@example.net"], BODY)
                e = q.show(q.ids("incoming")[0])
                e.recipients
            except mxgw.StateError:
                return
            except Exception as ex:  # pragma: no cover - reported below
                errors.append(repr(ex))
                return
    ts = [threading.Thread(target=worker) for _ in range(3)]
    for t in ts:
        t.start()
    import time
    time.sleep(0.3)
    q.close()
    stop.set()
    for t in ts:
        t.join(30)
    assert not errors, errors
    with pytest.raises(mxgw.StateError):
        q.count("incoming")
    print("OK close_while_busy")


# ------------------------------------------------------------ LMTP scenarios

_DELIVER_STEPS = ["mxgw_lmtp_msg_new", "mxgw_lmtp_msg_add_rcpt", "mxgw_lmtp_msg_set_int",
                  "mxgw_lmtp_msg_set_str", "mxgw_lmtp_conn_deliver_fd",
                  "mxgw_lmtp_conn_deliver_file", "mxgw_lmtp_rcpt_get_str",
                  "mxgw_lmtp_rcpt_get_int", "mxgw_lmtp_errmsg", "mxgw_lmtp_conn_client"]


def _lmtp_fail_value(name):
    from mxgw import _capi
    rc = _capi.MXGW_E_STATE  # what mxgw_lmtp_msg_new() returned in the report
    if name.endswith("_get_str") or name.endswith("_get_int"):
        return [rc, None]
    if name in ("mxgw_lmtp_errmsg", "mxgw_lmtp_conn_client"):
        return None  # these do not fail with a code: only the exception
    return rc


def scenario_deliver_steps(port, d):
    """An error code or an exception at each C call of deliver(); the
    next delivery on the same connection works; an exception leaving the
    `with` block is clean."""
    import mxgw
    path = os.path.join(d, "m.eml")
    with open(path, "wb") as f:
        f.write(BODY)
    rcpts = ["alice@example.test", ("bob@example.test", 0, None)]
    for name in _DELIVER_STEPS:
        for result in {repr(v): v for v in (_lmtp_fail_value(name), None)}.values():
            undo = inject(name, 1, result)
            try:
                with mxgw.LmtpConnection(f"127.0.0.1:{port}") as conn:
                    body = path if name.endswith("_file") else BODY
                    try:
                        conn.deliver("a@example.org", rcpts, body, size=len(BODY), envid="E")
                    except Boom:
                        assert result is None
                    except mxgw.StateError:
                        assert result is not None
                    else:
                        # errmsg/conn_client raising only matters on error paths
                        assert name in ("mxgw_lmtp_errmsg",), name
                    undo()
                    res = conn.deliver("a@example.org", rcpts, BODY)
                    assert [r.code for r in res] == [250, 250], (name, res)
                    res = conn.deliver("a@example.org", rcpts, path)
                    assert [r.code for r in res] == [250, 250], (name, res)
                    raise Boom("leave the with block")
            except Boom:
                pass
            finally:
                undo()
            junk = spray()  # noqa: F841
            gc.collect()
            print(name, repr(result), "ok", flush=True)
    print("OK deliver_steps")


def scenario_deliver_state_error(port, d):
    """The reported case: mxgw_lmtp_msg_new() returns MXGW_E_STATE in
    deliver() (the real one: a message left in progress by a deliver_async()
    that was cancelled), inside `with`; also an unreadable body."""
    import asyncio

    import mxgw
    big = BODY + b"x" * 2000 + b"\r\n" * 40000
    undo = inject("mxgw_lmtp_msg_new", 1, -3)
    try:
        with mxgw.LmtpConnection(f"127.0.0.1:{port}") as conn:
            with pytest.raises(mxgw.StateError):
                conn.deliver("a@example.org", ["alice@example.test"], BODY)
            raise Boom("in with")
    except Boom:
        pass
    finally:
        undo()
    gc.collect()

    from mxgw import _capi
    process = _capi.mxgw_lmtp_conn_process

    def hooked(action):
        """Run action() at the first mxgw_lmtp_conn_process() call: the
        message is submitted and the task waits for the socket next."""
        def fake(*a):
            _capi.mxgw_lmtp_conn_process = process
            rv = process(*a)
            action()
            return rv
        _capi.mxgw_lmtp_conn_process = fake

    async def main():
        loop = asyncio.get_running_loop()
        with mxgw.LmtpConnection(f"127.0.0.1:{port}") as conn:
            task = asyncio.ensure_future(
                conn.deliver_async("a@example.org", ["alice@example.test"], big))
            hooked(lambda: task.cancel())
            with pytest.raises(asyncio.CancelledError):
                await task
            # before the fix: StateError for ever (msg_new: message in progress)
            [r] = conn.deliver("a@example.org", ["alice@example.test"], BODY)
            assert r.code == 250, r
            [r] = await conn.deliver_async("a@example.org", ["alice@example.test"], BODY)
            assert r.code == 250, r
            # a body that cannot be read: MxgwIOError, then the next works
            fd = os.open(d, os.O_RDONLY)

            class Unreadable:
                def fileno(self):
                    return fd
            with pytest.raises(mxgw.MxgwIOError):
                conn.deliver("a@example.org", ["alice@example.test"], Unreadable())
            os.close(fd)
            [r] = conn.deliver("a@example.org", ["alice@example.test"], BODY)
            assert r.code == 250, r
            # close() (another task) while a deliver_async() waits:
            # StateError, not a crash
            task = asyncio.ensure_future(
                conn.deliver_async("a@example.org", ["alice@example.test"], big))
            hooked(lambda: loop.call_soon(conn.close))
            with pytest.raises(mxgw.StateError):
                await task
            # and from another thread, while a blocking deliver() runs
            import threading
            conn2 = mxgw.LmtpConnection(f"127.0.0.1:{port}")
            t = threading.Thread(target=lambda: conn2.deliver(
                "a@example.org", ["alice@example.test"], big))
            t.start()
            conn2.close()  # waits for the delivery (or comes first)
            t.join(60)
            with pytest.raises(mxgw.StateError):
                conn2.deliver("a@example.org", ["alice@example.test"], BODY)
    asyncio.run(main())
    gc.collect()
    # the sans-IO client: msg_new while a message is in progress
    with mxgw.LmtpClient() as c:
        c.msg_new("a@example.org")
        c.add_rcpt("x@example.test")
        c.submit(0)
        with pytest.raises(mxgw.StateError):
            c.msg_new("b@example.org")
    gc.collect()
    print("OK deliver_state_error")


_ASYNC_STEPS = ["mxgw_lmtp_conn_open", "mxgw_lmtp_msg_new", "mxgw_lmtp_msg_add_rcpt",
                "mxgw_lmtp_msg_submit", "mxgw_lmtp_body", "mxgw_lmtp_body_end",
                "mxgw_lmtp_next_event", "mxgw_lmtp_conn_process", "mxgw_lmtp_rcpt_get_int"]


def scenario_deliver_async_steps(port):
    """deliver_async(): an error code or an exception at each step; the
    next deliveries (async and blocking) on the same connection work."""
    import asyncio

    import mxgw
    body = BODY + b"line\r\n" * 2000
    for name in _ASYNC_STEPS:
        fail = [-3, None] if name.endswith("_get_int") else -3
        for result in (fail, None):
            async def main():
                with mxgw.LmtpConnection(f"127.0.0.1:{port}") as conn:
                    undo = inject(name, 1, result)
                    try:
                        with pytest.raises(Boom if result is None else mxgw.StateError):
                            await conn.deliver_async("a@example.org", ["alice@example.test"],
                                                     body)
                    finally:
                        undo()
                    [r] = await conn.deliver_async("a@example.org", ["alice@example.test"],
                                                   body)
                    assert r.code == 250, (name, r)
                    [r] = conn.deliver("a@example.org", ["alice@example.test"], body)
                    assert r.code == 250, (name, r)
                    raise Boom("leave the with block")
            with pytest.raises(Boom):
                asyncio.run(main())
            junk = spray()  # noqa: F841
            gc.collect()
            print(name, repr(result), "ok", flush=True)
    print("OK deliver_async_steps")


# -------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def dovecot():
    import lmtp_fixture
    dv = lmtp_fixture.Dovecot().start()
    yield dv
    dv.stop()


def test_queue_entry_outlives_queue(tmp_path):
    run("entry_outlives_queue", d=str(tmp_path))


@pytest.mark.parametrize("async_workers", [0, 2])
def test_queue_submit_failures(tmp_path, async_workers):
    out = run("submit_in_with", d=str(tmp_path), async_workers=async_workers)
    # every good submission is in the spool: the first, one after each of
    # the 16 injected failures (8 calls x error code/exception), the last
    n = int([x for x in out if x.startswith("incoming ")][0].split()[1])
    assert n == 1 + 16 + 1, out


def test_queue_close_while_busy(tmp_path):
    run("close_while_busy", d=str(tmp_path))


def test_lmtp_deliver_failures(dovecot, tmp_path):
    run("deliver_steps", port=dovecot.port, d=str(tmp_path))


def test_lmtp_msg_new_state_error(dovecot, tmp_path):
    run("deliver_state_error", port=dovecot.port, d=str(tmp_path))


def test_lmtp_deliver_async_failures(dovecot):
    run("deliver_async_steps", port=dovecot.port)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    import conftest  # noqa: F401  (the fixture paths)
    globals()["scenario_" + sys.argv[1]](**json.loads(sys.argv[2]))
    sys.stdout.flush()
