# SPDX-License-Identifier: MIT
"""The gateway from Python: examples/python/gateway.py (recipient policy =
a Python function reading a SQLite table) delivers a real message through
a private Dovecot LMTP, on both engines (libmxgw's server when the library
has it, and the asyncio engine on the session API); the policy failing
gives 451, never a crash. With the server: Python policy callbacks on its
worker threads (a blocking one does not stall other sessions), the log
hook, errors."""
import os
import signal
import smtplib
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

import conftest
import lmtp_fixture
import mxgw

GATEWAY = os.path.join(conftest.SRC, "examples", "python", "gateway.py")
MSG = (b"From: sender@example.org\r\nTo: alice@example.test\r\n"
       b"Subject: through the Python gateway\r\n\r\nHello from gateway.py\r\n")


@pytest.fixture(scope="module")
def dovecot():
    d = lmtp_fixture.Dovecot().start()
    yield d
    d.stop()


def make_db(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE recipients (address TEXT PRIMARY KEY, "
               "active INTEGER NOT NULL DEFAULT 1)")
    db.executemany("INSERT INTO recipients VALUES (?, ?)",
                   [("alice@example.test", 1), ("bob@example.test", 1),
                    ("carol@example.test", 0)])
    db.commit()
    db.close()


def run_gateway(engine, dovecot, tmp_path):
    db = str(tmp_path / "users.sqlite")
    make_db(db)
    p = subprocess.Popen([sys.executable, GATEWAY, "--engine", engine,
                          "--listen", "127.0.0.1:0", "--lmtp", f"127.0.0.1:{dovecot.port}",
                          "--db", db, "--spool", str(tmp_path / "spool"), "--no-fsync"],
                         stdout=subprocess.PIPE, stderr=open(tmp_path / "gw.log", "w"),
                         text=True)
    line = p.stdout.readline()
    assert line.startswith("listening on "), (line, open(tmp_path / "gw.log").read())
    return p, int(line.rsplit(":", 1)[1]), db


@pytest.mark.parametrize("engine", ["asyncio", "server"])
def test_gateway_delivers_through_dovecot(engine, dovecot, tmp_path):
    if engine == "server" and not mxgw.server.AVAILABLE:
        pytest.skip("libmxgw has no server yet (mxgw_server.c not built)")
    old = set(dovecot.maildir_files("alice"))
    before = len(old)
    p, port, db = run_gateway(engine, dovecot, tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example")
            refused = c.sendmail("sender@example.org",
                                 ["alice@example.test", "nobody@example.test",
                                  "carol@example.test"], MSG)
            assert set(refused) == {"nobody@example.test", "carol@example.test"}
            assert refused["nobody@example.test"][0] == 550
            assert refused["nobody@example.test"][1].startswith(b"5.1.1")
            # the policy fails (the table is gone): 451, and the gateway lives on
            con = sqlite3.connect(db)
            con.execute("DROP TABLE recipients")
            con.commit()
            con.close()
            c.rset()
            c.mail("sender@example.org")
            code, text = c.rcpt("bob@example.test")
            assert code == 451 and text.startswith(b"4.3.0"), (code, text)
            assert c.noop()[0] == 250
        files = dovecot.wait_files("alice", before + 1, secs=30)
        assert len(files) == before + 1, open(tmp_path / "gw.log").read()
        # the one new file (names and mtimes do not order arrivals)
        [new] = set(files) - old
        stored = open(new, "rb").read()
        assert b"Subject: through the Python gateway" in stored
        assert b"Hello from gateway.py" in stored
        assert b"Received: from client.example" in stored
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    log = open(tmp_path / "gw.log").read()
    assert rc == 0, log
    assert "Traceback" not in log or "policy" in log  # the 451 was logged
    assert "status=sent" in log or "delivered" in log, log


needs_server = pytest.mark.skipif(not mxgw.server.AVAILABLE,
                                  reason="libmxgw has no server yet")


@needs_server
def test_server_callbacks(dovecot, tmp_path):
    lines = []
    calls = []
    cfg = mxgw.ServerConfig(hostname="mx.example.test", spool_dir=str(tmp_path / "spool"),
                            policy_workers=4, queue_sync=0)
    cfg.add_listener("127.0.0.1", 0)
    cfg.add_backend(f"127.0.0.1:{dovecot.port}")
    cfg.set_log(lambda level, line: lines.append((level, line)))

    @cfg.on_connect
    def connect(req):
        calls.append(("connect", req.client_addr, threading.get_ident()))

    @cfg.on_mail
    def mail(req):
        if req.mail_from == "slow@example.org":
            time.sleep(1.5)  # blocks a worker, not the server
        calls.append(("mail", req.mail_from))

    @cfg.on_rcpt
    def rcpt(req):
        if req.rcpt.startswith("boom"):
            raise RuntimeError("policy bug")
        if req.rcpt.startswith("deny"):
            req.reply(550, "5.7.1", "denied by Python")
        elif req.rcpt.startswith("tuple"):
            return (450, "4.2.0", "try later")

    @cfg.on_message
    def message(req):
        calls.append(("message", req.queue_id, req.recipients))

    with mxgw.Server.background(cfg) as srv:
        port = srv.listener_port(0)
        t0 = time.monotonic()
        slow_done = []

        def slow():
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.ehlo("slow.example")
                c.mail("slow@example.org")
                slow_done.append(time.monotonic() - t0)
        th = threading.Thread(target=slow)
        th.start()
        time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example")
            c.mail("sender@example.org")
            fast = time.monotonic() - t0
            assert c.rcpt("boom@example.test")[0] == 451
            code, text = c.rcpt("deny@example.test")
            assert code == 550 and b"denied by Python" in text
            assert c.rcpt("tuple@example.test")[0] == 450
            assert c.rcpt("alice@example.test")[0] == 250
            c.data(MSG)
        th.join()
        assert fast < 1.0 < slow_done[0], (fast, slow_done)
        assert srv.stat("policy_calls") >= 6 and srv.stat("messages") == 1
    assert any("policy" in l.lower() or "451" in l for _lv, l in lines), lines[-10:]
    assert any(c[0] == "message" and c[2] == ["alice@example.test"] for c in calls)
    assert dovecot.wait_files("alice", 1)


@needs_server
def test_server_errors(tmp_path):
    cfg = mxgw.ServerConfig()
    with pytest.raises(mxgw.InvalidArgumentError):
        cfg.set("nonsense", 1)
    with pytest.raises(mxgw.InvalidArgumentError):
        cfg.add_listener("not-an-address", 25)
    with pytest.raises(mxgw.InvalidArgumentError):
        cfg.add_domain("not a domain")
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.Server(cfg)  # no listener, no spool: the message says which
    with pytest.raises(TypeError):
        cfg.set_policy("rcpt", 42)
    with pytest.raises(mxgw.InvalidArgumentError):
        cfg.set_deliver("nonsense", 1)
    with pytest.raises(mxgw.InvalidArgumentError):
        cfg.set_deliver("bounce_rcpt", "bad\r\nvalue")
    cfg.set_deliver("tls_servername", "store.example.test")
    with mxgw.TlsContext("client") as tls:
        tls.reload()
        cfg.set_deliver_tls(tls)
    cfg.set_deliver_tls(None)
    cfg.close()


@needs_server
def test_server_embedded_process_loop(tmp_path):
    """The embedded API from Python: start(), fd, timeout_ms(), process() on
    the test's own thread, callbacks inline (policy_workers=0: they run
    inside process(), which released the GIL and gets it back through the
    trampoline), reload(), drain()."""
    import select
    seen = []

    def make_cfg():
        cfg = mxgw.ServerConfig(hostname="mx.example.test",
                                spool_dir=str(tmp_path / "spool"),
                                policy_workers=0, queue_sync=0, deliver=0,
                                max_recipients=5)
        cfg.add_listener("127.0.0.1", 0)
        cfg.add_domain("example.test")

        @cfg.on_helo
        def helo(req):
            seen.append(("helo", req.helo, req.stage_name, req.client_port > 0,
                         req.listener, req.tls, req.session_id > 0))

        @cfg.on_message
        def msg(req):
            seen.append(("message", req.queue_id, req.recipients, req.size,
                         req.mail_from, req.client_addr))
        return cfg

    cfg = make_cfg()
    assert cfg.get("max_recipients") == 5 and cfg.get("policy_workers") == 0
    with mxgw.Server(cfg) as srv:
        srv.start()
        port = srv.listener_port(0)
        with pytest.raises(mxgw.RangeError):
            srv.listener_port(7)
        assert srv.fd >= 0
        result = {}

        def client():
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as c:
                    c.ehlo("embedded.example")
                    result["refused"] = c.sendmail("a@example.org",
                                                   ["x@example.test", "y@elsewhere.net"],
                                                   MSG)
            except Exception as e:
                result["error"] = e
        th = threading.Thread(target=client)
        th.start()
        end = time.monotonic() + 20
        while th.is_alive() and time.monotonic() < end:
            t = srv.timeout_ms()
            select.select([srv.fd], [], [], 0.05 if t < 0 else min(t, 50) / 1000)
            srv.process()
        th.join()
        assert "error" not in result, result
        assert set(result["refused"]) == {"y@elsewhere.net"}
        assert result["refused"]["y@elsewhere.net"][0] == 554
        assert srv.stat("messages") == 1 and srv.stat("rejected_rcpt") == 1
        srv.reload()
        cfg2 = make_cfg()
        srv.reload(cfg2)
        assert srv.stat("reloads") >= 1
        srv.drain(0)
        end = time.monotonic() + 10
        while not srv.process() and time.monotonic() < end:
            select.select([srv.fd], [], [], 0.05)
    assert seen[0][:3] == ("helo", "embedded.example", "helo")
    assert seen[0][3:] == (True, 0, 0, True)
    m = [s for s in seen if s[0] == "message"][0]
    assert m[2] == ["x@example.test"] and m[4] == "a@example.org" and m[5] == "127.0.0.1"
    assert m[3] >= len(MSG)
    with mxgw.Queue(str(tmp_path / "spool"), owner=False) as q:
        [e] = q.list("incoming")
        assert e.id == m[1]


@needs_server
def test_server_tls_listener(tmp_path):
    import ssl
    crt, key = str(tmp_path / "c.pem"), str(tmp_path / "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.example.test", "-keyout", key, "-out", crt,
                    "-addext", "subjectAltName=DNS:mx.example.test"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    seen = []
    tls = mxgw.load_certificate(crt, key)
    cfg = mxgw.ServerConfig(hostname="mx.example.test", spool_dir=str(tmp_path / "spool"),
                            queue_sync=0, deliver=0, spf_action={"fail": "reject"})
    cfg.set_deliver("poll_ms", 100)
    cfg.add_listener("127.0.0.1", 0, "smtp", tls=tls, tls_policy="encrypt",
                     auth_plaintext=False)
    tls.close()  # the configuration keeps its own reference

    @cfg.on_mail
    def mail(req):
        seen.append((req.tls, req.tls_protocol, req.tls_cipher is not None))

    with mxgw.Server.background(cfg) as srv:
        port = srv.listener_port(0)
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as c:
            c.ehlo("client.example")
            assert c.mail("a@example.org")[0] == 530  # TLS required first
            c._host = "mx.example.test"
            c.starttls(context=ssl.create_default_context(cafile=crt))
            c.ehlo("client.example")
            c.sendmail("a@example.org", ["x@example.test"], MSG)
        assert srv.stat("messages") == 1
    assert seen and seen[0][0] == 1 and seen[0][1].startswith("TLSv1.") and seen[0][2]
    with pytest.raises(KeyError):
        cfg.add_listener("127.0.0.1", 0, "nonsense")


@pytest.fixture(scope="module")
def nsd():
    import shutil
    import tempfile
    import dns_fixture
    tmp = tempfile.mkdtemp(prefix="mxgw-py-dns-")
    port = dns_fixture.free_port()
    proc, _bulk = dns_fixture.start_nsd(tmp, port, os.path.join(
        conftest.SRC, "tests", "dns", "spf.test.zone"), 20)
    yield "127.0.0.1:%d" % port
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("engine", ["asyncio", "server"])
def test_gateway_spf_at_mail_from(engine, dovecot, nsd, tmp_path):
    """With --dns-server the gateway checks SPF at MAIL FROM against NSD on
    loopback: pass.spf.test allows only 192.0.2.1, so mail from 127.0.0.1
    is refused with 550 5.7.23; a domain without SPF is accepted and the
    message carries a Received-SPF header (server engine) or the SPF JSON
    in the queue (asyncio engine)."""
    if engine == "server" and not mxgw.server.AVAILABLE:
        pytest.skip("libmxgw has no server yet")
    db = str(tmp_path / "users.sqlite")
    make_db(db)
    p = subprocess.Popen([sys.executable, GATEWAY, "--engine", engine,
                          "--listen", "127.0.0.1:0", "--lmtp", f"127.0.0.1:{dovecot.port}",
                          "--db", db, "--spool", str(tmp_path / "spool"), "--no-fsync",
                          "--dns-server", nsd],
                         stdout=subprocess.PIPE, stderr=open(tmp_path / "gw.log", "w"),
                         text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening on "), open(tmp_path / "gw.log").read()
        port = int(line.rsplit(":", 1)[1])
        old = set(dovecot.maildir_files("bob"))
        before = len(old)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
            c.ehlo("client.example")
            code, text = c.mail("someone@pass.spf.test")
            assert code == 550 and text.startswith(b"5.7.23"), (code, text)
            c.rset()
            c.sendmail("someone@nospf.spf.test", ["bob@example.test"],
                       MSG.replace(b"alice", b"bob"))
        files = dovecot.wait_files("bob", before + 1, secs=30)
        assert len(files) == before + 1, open(tmp_path / "gw.log").read()
        [new] = set(files) - old
        stored = open(new, "rb").read()
        if engine == "server":
            assert b"Received-SPF: none" in stored
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0, open(tmp_path / "gw.log").read()
