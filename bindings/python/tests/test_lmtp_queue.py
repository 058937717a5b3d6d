# SPDX-License-Identifier: MIT
"""LMTP delivery through the blocking driver to a private Dovecot
(tests/lmtp/lmtp_fixture.py), and queue management (open, submit, list,
show, hold, release, requeue, delete, take/finish), with the error paths."""

import pytest

import lmtp_fixture
import mxgw

BODY = (b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: py\r\n\r\n"
        b"line 1\r\n.dot line\r\n\xc3\xa9t\xc3\xa9\r\n")


@pytest.fixture(scope="module")
def dovecot():
    d = lmtp_fixture.Dovecot().start()
    yield d
    d.stop()


def test_deliver_to_dovecot(dovecot, tmp_path):
    cfg = mxgw.LmtpConfig(lhlo_name="gw.example.test", command_timeout_ms=10000)
    assert cfg.get("command_timeout_ms") == 10000
    with mxgw.LmtpConnection(f"127.0.0.1:{dovecot.port}", cfg) as conn:
        res = conn.deliver("a@example.org",
                           ["alice@example.test", "nosuch@example.test",
                            ("bob@example.test", 0, None)],
                           BODY, size=len(BODY), eightbitmime=1)
        assert [r.address for r in res] == ["alice@example.test", "nosuch@example.test",
                                            "bob@example.test"]
        assert res[0].ok and res[0].code == 250 and res[0].stage == "delivery"
        assert res[1].code == 550 and res[1].enh == "5.1.1" and res[1].stage == "rcpt"
        assert not res[1].local and res[2].ok
        assert "Dovecot" in conn.info("greeting") or conn.info("greeting")
        assert conn.info("extensions") & 1  # PIPELINING
        # the connection is reused; a body from a file and from a path
        p = tmp_path / "m.eml"
        p.write_bytes(BODY)
        with open(p, "rb") as f:
            [r] = conn.deliver("", ["carol@example.test"], f)
        assert r.ok
        [r] = conn.deliver("a@example.org", ["carol@example.test"], str(p))
        assert r.ok and conn.info("messages") >= 2
        conn.quit()
    cfg.close()
    files = dovecot.wait_files("alice", 1)
    stored = open(files[0], "rb").read()
    _added, rest = lmtp_fixture.split_added_headers(stored.replace(b"\n", b"\r\n")
                                                    if b"\r\n" not in stored else stored)
    assert rest.replace(b"\r\n", b"\n") == BODY.replace(b"\r\n", b"\n")
    assert len(dovecot.wait_files("carol", 2)) == 2


def test_lmtp_errors(tmp_path):
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.LmtpConnection("no target here")
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.LmtpConfig(nope=1)
    with pytest.raises(mxgw.RangeError):
        mxgw.LmtpConfig(chunk_size=1)
    port = lmtp_fixture.free_port()  # nothing listens there
    with mxgw.LmtpConnection(f"127.0.0.1:{port}",
                             mxgw.LmtpConfig(connect_timeout_ms=2000)) as conn:
        [r] = conn.deliver("a@example.org", ["x@example.test"], b"Subject: x\r\n\r\nx\r\n")
        assert r.code == 451 and r.local and r.temporary and r.enh == "4.4.1"
        assert "127.0.0.1" in r.text
        with pytest.raises(mxgw.InvalidArgumentError):
            conn.deliver("bad\r\nsender", ["x@example.test"], b"x")
        with pytest.raises(mxgw.MxgwIOError):
            conn.deliver("a@example.org", ["x@example.test"], str(tmp_path / "missing"))
        with pytest.raises(mxgw.InvalidArgumentError):
            conn.deliver("a@example.org", ["x@example.test"], b"x", nonsense=1)


def test_queue_management(tmp_path):
    spool = str(tmp_path / "spool")
    with mxgw.Queue(spool, sync=0, async_workers=0) as q:
        ids = [q.submit("a@example.org", ["alice@example.test", ("bob@example.test", 2,
                                                                   "rfc822;bob@example.test")],
                        BODY, client_addr="192.0.2.1", client_helo="c.example",
                        spf_json='{"result":"pass"}', envid="E1", smtputf8=0)
               for _ in range(3)]
        assert len(set(ids)) == 3 and q.count("incoming") == 3
        assert q.ids("incoming") == sorted(ids)
        e = q.show(ids[0])
        assert e.id == ids[0] and e.sender == "a@example.org" and e.state == "incoming"
        assert e.get_str("client_addr") == "192.0.2.1" and e.get_str("envid") == "E1"
        assert e.get_int("size") == len(BODY) and e.get_int("rcpt_count") == 2
        rc = e.recipients
        assert rc[0]["addr"] == "alice@example.test" and rc[0]["state"] == "pending"
        assert rc[1]["notify"] == 2 and rc[1]["orcpt"] == "rfc822;bob@example.test"
        j = e.json()
        assert j["sender"] == "a@example.org" and e.get_str("spf_json")
        assert open(e.get_str("body_path"), "rb").read() == BODY
        e.close()
        assert [x.id for x in q.list("incoming")] == sorted(ids)
        assert q.hold(ids[0]) == 1 and q.count("hold") == 1
        assert q.list("hold")[0].state == "hold"
        assert q.release(ids[0]) == 1 and q.count("hold") == 0
        assert q.hold(state="incoming") == 3
        assert q.release(state="hold") == 3
        assert q.delete(ids[2]) == 1 and q.count("incoming") == 2
        with pytest.raises(mxgw.NotFoundError):
            q.show(ids[2])
        with pytest.raises(mxgw.NotFoundError):
            q.delete(ids[2])
        # delivery bookkeeping: take, finish with results
        t = q.take()
        assert t.state == "active"
        with pytest.raises(mxgw.BusyError):
            q.hold(t.id)
        st = q.finish(t, [(0, "delivered", 250, "2.0.0", "ok"),
                          (1, "deferred", 451, "4.3.0", "later")], next_attempt=1)
        assert st == "deferred" and q.count("deferred") == 1
        assert q.requeue(t.id) == 1 and q.count("incoming") == 2
        t2 = q.take()
        assert q.finish(t2, [(0, "delivered", 250, "2.0.0", "ok"),
                             (1, "delivered", 250, "2.0.0", "ok")]) is None
        assert q.stat("commits") == 3 and q.stat("sync") == 0
        with pytest.raises(mxgw.InvalidArgumentError):
            q.count("nonsense")
        with pytest.raises(mxgw.InvalidArgumentError):
            q.stat("nonsense")
        with pytest.raises(mxgw.InvalidArgumentError):
            q.submit("a@example.org", [""], b"x")  # empty recipient
        with pytest.raises(mxgw.StateError):
            q.submit("a@example.org", [], b"x")  # no recipient
        with pytest.raises(mxgw.MxgwSyntaxError):
            q.submit("a@example.org", ["x@y.z"], b"x", spf_json="{not json")
        # an operator handle on a spool someone owns
        with mxgw.Queue(spool, owner=False) as op:
            assert op.count("incoming") == 1
        with pytest.raises(mxgw.BusyError):
            mxgw.Queue(spool)  # a second owner
    with pytest.raises(mxgw.NotFoundError):
        mxgw.Queue(str(tmp_path / "absent"), create=0)
    # asynchronous commits (the event-loop form), and save()
    import select
    with mxgw.Queue(str(tmp_path / "spool2"), sync=1, async_workers=2) as q:
        assert q.eventfd >= 0
        ids = {q.submit_async(i, "a@example.org", ["b@example.net"], BODY): i
               for i in range(1, 6)}
        done = []
        while len(done) < 5:
            select.select([q.eventfd], [], [], 5)
            done += q.completed(max=3)
        assert sorted(t for t, st, _ in done) == [1, 2, 3, 4, 5]
        assert all(st == 0 and ids[qid] == t for t, st, qid in done)
        assert q.count("incoming") == 5
        with pytest.raises(mxgw.StateError):  # no recipient: refused at once
            q.submit_async(9, "a@example.org", [], BODY)
        assert q.completed() == []  # and no completion follows
        t = q.take()
        q.set_rcpt(t, 0, "deferred", 451, "4.4.1", "later")
        q.save(t)
        assert q.show(t.id).recipients[0]["code"] == 451
        t.close()
    with mxgw.Queue(str(tmp_path / "spool3"), async_workers=0) as q:
        assert q.eventfd == -1
        with pytest.raises(mxgw.UnsupportedError):
            q.submit_async(1, "a@example.org", ["b@example.net"], BODY)
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.Queue(spool, nonsense=1)
    assert q.take.__doc__


def test_deliver_over_starttls(tmp_path):
    d = lmtp_fixture.Dovecot(ssl=True).start()
    try:
        with mxgw.TlsContext("client", ca_file=d.ca, hostname="store.example.test") as tls:
            tls.reload()
            cfg = mxgw.LmtpConfig(tls=tls, starttls=2, tls_servername="store.example.test")
            with mxgw.LmtpConnection(f"127.0.0.1:{d.port}", cfg) as conn:
                [r] = conn.deliver("a@example.org", ["alice@example.test"], BODY,
                                   envid="ENV1", xclient_addr="192.0.2.1")
                assert r.ok, r
                assert conn.info("tls") == 1 and conn.info("tls_protocol").startswith("TLS")
                assert conn.info("tls_cipher")
            cfg.close()
        # a client that does not trust the server's CA: a local 4xx, not a crash
        with mxgw.TlsContext("client", hostname="store.example.test") as tls:
            tls.reload()
            with mxgw.LmtpConnection(f"127.0.0.1:{d.port}",
                                     mxgw.LmtpConfig(tls=tls, starttls=2)) as conn:
                [r] = conn.deliver("a@example.org", ["alice@example.test"], BODY)
                assert r.temporary and r.local, r
                assert conn.errmsg
        assert len(d.wait_files("alice", 1)) == 1
    finally:
        d.stop()


def test_sans_io_client_over_own_socket(dovecot):
    """LmtpClient: the program owns the socket and moves the bytes."""
    import socket
    with mxgw.LmtpClient(mxgw.LmtpConfig(lhlo_name="py.example.test")) as c, \
            socket.create_connection(("127.0.0.1", dovecot.port), 10) as sock:
        c.start()
        c.msg_new("a@example.org", size=len(BODY))
        assert c.add_rcpt("alice@example.test") == 0
        assert c.add_rcpt("nosuch@example.test", 2, "rfc822;nosuch@example.test") == 1
        c.submit()
        pos, events = 0, []
        while True:
            while c.want & c.WANT_BODY and pos <= len(BODY):
                if pos < len(BODY):
                    pos += c.body(BODY[pos:pos + 7])  # small pieces: streaming
                else:
                    c.body_end()
                    pos += 1
            for ev in c.events():
                events.append(ev)
                if ev == mxgw.LmtpEvent.DONE:
                    res = c.results()
                    c.quit()
            out = c.take_output()
            if out:
                sock.sendall(out)
            if c.want & c.WANT_CLOSE and not c.want & c.WANT_WRITE:
                break
            data = sock.recv(65536)
            if not data:
                c.eof()
            else:
                assert c.feed(data) == len(data)
            c.tick()
        assert mxgw.LmtpEvent.READY in events and events[-1] == mxgw.LmtpEvent.CLOSED
        assert res[0].ok and res[1].code == 550 and res[1].stage == "rcpt"
        assert c.info("messages") == 1 and c.info("greeting")
        assert c.deadline == -1
    with mxgw.LmtpClient() as c:
        c.msg_new("a@example.org")
        c.add_rcpt("x@example.test")
        c.submit(0)
        c.abort("4.4.1", "connect failed", 0)
        [r] = c.results()
        assert (r.code, r.enh, r.local) == (451, "4.4.1", True) and r.text == "connect failed"
        with pytest.raises(mxgw.InvalidArgumentError):
            c.consume(10)


def test_deliver_async(dovecot):
    import asyncio

    async def main():
        with mxgw.LmtpConnection(f"127.0.0.1:{dovecot.port}") as conn:
            r1 = await conn.deliver_async("a@example.org", ["bob@example.test"], BODY)
            r2 = await conn.deliver_async("", ["bob@example.test", "nosuch@example.test"],
                                          BODY, envid="E2")
            conn.quit()
            r3 = await conn.deliver_async("a@example.org", ["bob@example.test"], BODY)
        with mxgw.LmtpConnection(f"127.0.0.1:{lmtp_fixture.free_port()}") as dead:
            r4 = await dead.deliver_async("a@example.org", ["bob@example.test"], BODY)
        return r1, r2, r3, r4
    before = len(dovecot.maildir_files("bob"))
    r1, r2, r3, r4 = asyncio.run(main())
    assert r1[0].ok and r2[0].ok and r2[1].code == 550 and r3[0].ok
    assert r4[0].code == 451 and r4[0].local
    assert len(dovecot.wait_files("bob", before + 3)) == before + 3
