# SPDX-License-Identifier: MIT
"""The queue's incoming journal from Python (Queue(journal=True)): a
message committed to the journal has no body file of its own; its body is
read with QueueEntry.read_body()/open_body() and delivered to a private
Dovecot over LMTP straight from the journal segment
(mxgw_lmtp_conn_deliver_range). Deferred messages leave the journal as
files; un-finished journal messages are recovered to incoming/ at open."""

import io
import os

import pytest

import lmtp_fixture
import mxgw

# dot-stuffing-like lines, a lone CR and LF, 8-bit and NUL octets: the body
# must come back and reach the mailbox byte for byte
BODY = (b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: journal\r\n\r\n"
        b"line 1\r\n.\r\n..two dots\r\n.dot line\r\n\xc3\xa9t\xc3\xa9 \xff\xfe\x00 bin\r\n"
        b"end\r\n")


@pytest.fixture(scope="module")
def dovecot():
    d = lmtp_fixture.Dovecot().start()
    yield d
    d.stop()


def new_files(dovecot, user, before, n, secs=10):
    """The files in user's Maildir/new that were not in `before` (waits for
    n of them). Other deliveries share the Maildirs and Dovecot's names do
    not sort by arrival: never "the last file by name"."""
    import time
    end = time.time() + secs
    while True:
        fresh = sorted(set(dovecot.maildir_files(user)) - set(before))
        if len(fresh) >= n or time.time() > end:
            return fresh
        time.sleep(0.05)


def stored_message(path):
    stored = open(path, "rb").read()
    if b"\r\n" not in stored:
        stored = stored.replace(b"\n", b"\r\n")
    _added, rest = lmtp_fixture.split_added_headers(stored)
    return rest


def test_journal_entry_body_and_lmtp_delivery(dovecot, tmp_path):
    spool = str(tmp_path / "spool")
    before = dovecot.maildir_files("alice")
    with mxgw.Queue(spool, journal=True, journal_max_body=4096, async_workers=0) as q:
        assert q.stat("journal") == 1 and q.stat("journal_max_body") == 4096
        qid = q.submit("a@example.org", ["alice@example.test"], BODY, body="8BITMIME")
        assert q.stat("journal_commits") == 1 and q.stat("journal_messages") == 1
        assert q.stat("journal_segments") == 1
        assert os.listdir(os.path.join(spool, "incoming")) == []  # no files of its own
        assert q.count("incoming") == 1 and q.ids("incoming") == [qid]
        # a message bigger than journal_max_body goes to files as before
        big = b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n"
        big_id = q.submit("a@example.org", ["bob@example.test"], big)
        assert q.stat("journal_commits") == 1 and q.stat("journal_messages") == 1
        s = q.show(big_id)
        assert not s.in_journal and open(s.get_str("body_path"), "rb").read() == big
        assert s.read_body() == big
        s.close()

        shown = q.show(qid)
        assert shown.in_journal and shown.state == "incoming"
        assert shown.get_str("body_path") is None
        assert shown.read_body() == BODY
        shown.close()

        e = q.take()  # journal messages first
        assert e.id == qid and e.state == "active" and e.in_journal
        assert e.get_int("size") == len(BODY) and e.get_str("body_path") is None
        assert e.read_body() == BODY
        with io.BufferedReader(e.open_body(), 16) as buffered:  # a binary stream
            assert buffered.read(3) == BODY[:3] and buffered.read() == BODY[3:]
        with e.open_body() as b:
            assert b.length == len(BODY) and b.fd >= 0
            assert b.read(6) == BODY[:6] and b.tell() == 6
            b.seek(-5, io.SEEK_END)
            assert b.read() == BODY[-5:] and b.read() == b""
            b.seek(0)
            assert b.readall() == BODY
            with pytest.raises(io.UnsupportedOperation):
                b.fileno()  # the fd's position is not the body's start
            # the range as raw numbers, as mxgw_queue_entry_body() gives it
            assert os.pread(b.fd, b.length, b.offset) == BODY
            fd = b.fd
            with mxgw.LmtpConnection(f"127.0.0.1:{dovecot.port}") as conn:
                [r] = conn.deliver(e.sender, [x["addr"] for x in e.recipients], b,
                                   size=b.length, eightbitmime=1)
                assert r.ok and r.code == 250, r
                # the QueueBody is left open for the caller
                assert not b.closed
        assert b.closed
        with pytest.raises(OSError):
            os.fstat(fd)  # closed with the block
        with pytest.raises(ValueError):
            b.read()
        assert q.finish(e, [(0, "delivered", r.code, r.enh, r.text)]) is None
        with pytest.raises(mxgw.NotFoundError):
            q.show(qid)
        assert q.stat("journal_messages") == 0 and q.count("incoming") == 1
        assert q.stat("journal_spills") == 0
    [new] = new_files(dovecot, "alice", before, 1)
    assert stored_message(new) == BODY


def test_journal_deliver_entry_and_range(dovecot, tmp_path):
    """deliver() also takes the QueueEntry itself, or (fd, offset, length)."""
    before = dovecot.maildir_files("carol")
    bodies = [BODY.replace(b"journal", b"entry"), BODY.replace(b"journal", b"range")]
    with mxgw.Queue(str(tmp_path / "spool"), journal=1, sync=0) as q, \
            mxgw.LmtpConnection(f"127.0.0.1:{dovecot.port}") as conn:
        for body in bodies:
            q.submit("", ["carol@example.test"], body)
        e1, e2 = q.take(), q.take()
        assert e1.in_journal and e2.in_journal
        [r1] = conn.deliver("", ["carol@example.test"], e1)
        with e2.open_body() as b:
            [r2] = conn.deliver("", ["carol@example.test"], (b.fd, b.offset, b.length))
            # a range past the end of the file fails the message (nothing
            # claimed delivered), the connection stays usable
            with pytest.raises(mxgw.MxgwIOError):
                conn.deliver("", ["carol@example.test"], (b.fd, b.offset, 1 << 40))
        assert r1.ok and r2.ok
        with pytest.raises(mxgw.InvalidArgumentError):
            conn.deliver("", ["carol@example.test"], (0, -1, 10))
        with pytest.raises(mxgw.StateError):
            conn.deliver("", ["carol@example.test"], b)  # closed
        for e, r in ((e1, r1), (e2, r2)):
            assert q.finish(e, [(0, "delivered", r.code, r.enh, r.text)]) is None
        assert q.count("incoming") == 0 and q.stat("journal_messages") == 0
    got = sorted(stored_message(f) for f in new_files(dovecot, "carol", before, 2))
    assert got == sorted(bodies)


def test_journal_deferred_goes_to_files(tmp_path):
    spool = str(tmp_path / "spool")
    with mxgw.Queue(spool, journal=1, sync=0) as q:
        qid = q.submit("a@example.org", ["alice@example.test", "bob@example.test"], BODY)
        e = q.take()
        assert e.in_journal
        st = q.finish(e, [(0, "delivered", 250, "2.0.0", "ok"),
                          (1, "deferred", 451, "4.3.0", "later")], next_attempt=1)
        assert st == "deferred" and q.stat("journal_spills") == 1
        assert q.stat("journal_messages") == 0
        d = q.show(qid)
        assert d.state == "deferred" and not d.in_journal
        path = d.get_str("body_path")
        assert path and os.path.dirname(path).endswith("deferred")
        assert open(path, "rb").read() == BODY and d.read_body() == BODY
        assert [r["state"] for r in d.recipients] == ["delivered", "deferred"]


def test_journal_recovered_at_open(tmp_path):
    spool = str(tmp_path / "spool")
    q = mxgw.Queue(spool, journal=1, sync=1, async_workers=0)
    ids = [q.submit("a@example.org", ["alice@example.test"], BODY + b"%d\r\n" % i)
           for i in range(3)]
    taken = q.take()  # active, never finished: delivery is at least once
    assert taken.id == ids[0] and taken.in_journal
    assert q.stat("journal_messages") == 3
    # an operator handle (not the owner) lists the journal's messages
    # (a taken journal message is active in the owner's memory only: the
    # segment says incoming, so the operator sees all three there)
    with mxgw.Queue(spool, owner=False) as op:
        assert op.ids("incoming") == sorted(ids) and op.ids("active") == []
        o = op.show(ids[1])
        assert o.in_journal and o.read_body() == BODY + b"1\r\n"
        o.close()
    q.close()  # like a crash: nothing was finished
    assert os.listdir(os.path.join(spool, "incoming")) == []
    # the owner with the journal indexes them again (nothing written)
    with mxgw.Queue(spool, journal=1) as q2:
        assert q2.stat("journal_recovered") == 3 and q2.stat("journal_torn") == 0
        assert q2.stat("journal_messages") == 3
        assert os.listdir(os.path.join(spool, "incoming")) == []
        assert q2.count("incoming") == 3 and sorted(q2.ids("incoming")) == sorted(ids)
        for i, qid in enumerate(ids):
            e = q2.show(qid)
            assert e.in_journal and e.state == "incoming"
            assert e.read_body() == BODY + b"%d\r\n" % i
            e.close()
    # an owner without the journal writes them out as files
    with mxgw.Queue(spool) as q3:
        assert q3.stat("journal_recovered") == 3
        assert q3.count("incoming") == 3 and sorted(q3.ids("incoming")) == sorted(ids)
        for i, qid in enumerate(ids):
            e = q3.show(qid)
            assert not e.in_journal and e.state == "incoming"
            assert open(e.get_str("body_path"), "rb").read() == BODY + b"%d\r\n" % i
            assert e.read_body() == BODY + b"%d\r\n" % i
            e.close()
        assert [f for f in os.listdir(os.path.join(spool, "journal"))] == []


def test_journal_options_and_errors(tmp_path):
    with pytest.raises(mxgw.RangeError):
        mxgw.Queue(str(tmp_path / "a"), journal=1, journal_max_body=10)
    with mxgw.Queue(str(tmp_path / "b")) as q:  # off by default
        assert q.stat("journal") == 0
        qid = q.submit("a@example.org", ["x@example.test"], BODY)
        e = q.show(qid)
        assert not e.in_journal and e.read_body() == BODY
        assert q.delete(qid) == 1
        with pytest.raises(mxgw.NotFoundError):
            e.open_body()  # the message is gone
    with pytest.raises(mxgw.StateError):
        e.read_body()  # closed with its queue


@pytest.mark.skipif(not mxgw.server.AVAILABLE, reason="no server in this libmxgw")
def test_server_journal_options():
    with mxgw.ServerConfig() as cfg:
        assert cfg.get("queue_journal") == 1  # on by default
        assert cfg.get("queue_journal_max_body") == 1 << 20
    with mxgw.ServerConfig(queue_journal=0, queue_journal_max_body=65536) as cfg:
        assert cfg.get("queue_journal") == 0
        assert cfg.get("queue_journal_max_body") == 65536
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.ServerConfig(queue_journalx=1)
