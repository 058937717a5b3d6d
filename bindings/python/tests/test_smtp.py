# SPDX-License-Identifier: MIT
"""The SMTP session engine driven from Python: a real smtplib client talks
to a Python loop over loopback sockets (and a socketpair), with STARTTLS
run by the session itself through a TlsContext; decisions, bytes for data,
the log hook, timers, and the error paths."""
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading

import pytest

import mxgw
from mxgw import Event


def serve(sock, cfg, rcpt_ok=lambda r: True, log=None, result=None):
    """A minimal blocking server loop for one connection: the pattern a
    program uses to drive the engine from its own sockets."""
    result = result if result is not None else {}
    result.setdefault("messages", [])
    body = bytearray()
    peer = sock.getpeername()
    with mxgw.Session(cfg, peer=(peer[0], peer[1]) if isinstance(peer, tuple)
                      else ("127.0.0.1", 0), log=log) as s:
        s.start()
        while True:
            for ev in s.events():
                if ev == Event.RCPT and not rcpt_ok(s.rcpt):
                    s.reply(550, "5.1.1", f"<{s.rcpt}>: no such user")
                elif ev == Event.BODY:
                    body += s.data
                elif ev == Event.MESSAGE_END:
                    result["messages"].append({
                        "from": s.mail_from, "rcpts": s.recipients(),
                        "rcpt0": s.rcpt_info(0), "body": bytes(body),
                        "received": s.received_header("QID1", 0),
                        "tls": s.get_int("tls"), "helo": s.helo,
                        "size": s.get_int("message_size")})
                    body.clear()
                    s.reply(250, "2.0.0", "Ok: queued as QID1")
                elif ev == Event.MESSAGE_ABORT:
                    body.clear()
                elif ev == Event.CLOSE:
                    result["close_reason"] = s.data
                elif ev.is_decision:
                    s.accept()
            out = s.take_output()
            if out:
                sock.sendall(out)
            if s.want & s.WANT_CLOSE and not s.want & s.WANT_WRITE:
                break
            data = sock.recv(65536)
            if not data:
                s.eof()
                continue
            while data:
                n = s.feed(data)
                data = data[n:]
                if data:  # input buffer full: handle events, then offer the rest
                    for ev in s.events():
                        if ev.is_decision:
                            s.accept()
                    out = s.take_output()
                    if out:
                        sock.sendall(out)
        result["stats"] = {k: s.get_int(k) for k in ("commands", "messages",
                                                       "bytes_in", "bytes_out")}
    sock.close()
    return result


def start_server(cfg, **kw):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    result = {}

    def run():
        c, _ = ls.accept()
        ls.close()
        try:
            serve(c, cfg, result=result, **kw)
        except BaseException as e:  # surfaced by the test
            result["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls.getsockname()[1], t, result


MSG = (b"From: a@example.org\r\nTo: bob@example.net\r\nSubject: t\r\n\r\n"
       b"hello\r\n.leading dot\r\n8-bit: \xc3\xa9\xff\r\n")


def test_smtplib_over_loopback():
    cfg = mxgw.SessionConfig(hostname="mx.example.test", max_recipients=10)
    logs = []
    port, t, res = start_server(cfg, rcpt_ok=lambda r: not r.startswith("nobody"),
                                log=lambda k, text: logs.append((k, text)))
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example") as c:
        code, banner = c.ehlo()
        assert code == 250 and b"mx.example.test" in banner and b"PIPELINING" in banner
        refused = c.sendmail("a@example.org", ["bob@example.net", "nobody@example.net"], MSG)
        assert refused == {"nobody@example.net": (550, b"5.1.1 <nobody@example.net>: no such user")}
    t.join(10)
    assert "error" not in res, res.get("error")
    [m] = res["messages"]
    assert m["from"] == "a@example.org" and m["rcpts"] == ["bob@example.net"]
    assert m["body"] == MSG  # dot-unstuffed, bytes intact
    assert m["size"] == len(MSG) and m["helo"] == "client.example" and m["tls"] == 0
    assert m["rcpt0"]["address"] == "bob@example.net" and m["rcpt0"]["notify_flags"] == 0
    assert m["received"].startswith(b"Received: from client.example") and b"QID1" in m["received"]
    assert res["stats"]["messages"] == 1 and res["stats"]["bytes_in"] > len(MSG)
    kinds = {k for k, _ in logs}
    assert mxgw.smtp.LogKind.CONNECT in kinds and mxgw.smtp.LogKind.DISCONNECT in kinds
    assert any(k == mxgw.smtp.LogKind.COMMAND and t_.upper().startswith(b"MAIL FROM")
               for k, t_ in logs)


def test_starttls_with_smtplib(tmp_path):
    crt, key = str(tmp_path / "c.pem"), str(tmp_path / "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "2", "-subj", "/CN=mx.example.test", "-keyout", key,
                    "-out", crt, "-addext", "subjectAltName=DNS:mx.example.test"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    with mxgw.load_certificate(crt, key) as tls:
        cfg = mxgw.SessionConfig(hostname="mx.example.test", starttls=1, tls=tls)
    port, t, res = start_server(cfg)
    ctx = ssl.create_default_context(cafile=crt)
    with smtplib.SMTP("127.0.0.1", port) as c:
        c.ehlo("client.example")
        assert c.has_extn("starttls")
        c._host = "mx.example.test"  # verify the name in the certificate
        c.starttls(context=ctx)
        c.ehlo("client.example")
        c.sendmail("a@example.org", ["bob@example.net"], MSG)
    t.join(10)
    assert "error" not in res, res.get("error")
    [m] = res["messages"]
    assert m["tls"] == 1 and m["body"] == MSG
    assert b"ESMTPS" in m["received"]


def test_socketpair_and_pipelining():
    """The engine behind a socketpair (no listener): pipelined commands in
    one write, replies in order, QUIT closes."""
    a, b = socket.socketpair()
    cfg = mxgw.SessionConfig(hostname="mx.example.test")
    res = {}
    t = threading.Thread(target=serve, args=(a, cfg), kwargs={"result": res})
    t.start()
    f = b.makefile("rb")
    assert f.readline().startswith(b"220 mx.example.test")
    b.sendall(b"EHLO c\r\nMAIL FROM:<x@y.z>\r\nRCPT TO:<r@s.t>\r\nDATA\r\n")
    lines = []
    while not lines or not lines[-1].startswith(b"354"):
        lines.append(f.readline())
    assert [l[:3] for l in lines if l[3:4] == b" "] == [b"250", b"250", b"250", b"354"]
    b.sendall(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.0.0 Ok: queued as QID1")
    assert f.readline().startswith(b"221")
    t.join(10)
    b.close()
    assert res["messages"][0]["body"] == b"Subject: x\r\n\r\n.dot\r\n"


def test_session_api_and_errors():
    with mxgw.SessionConfig(hostname="mx.example.test") as cfg:
        cfg.set("greeting", "ready")
        assert cfg.get("max_recipients") == 1000
        with pytest.raises(mxgw.InvalidArgumentError):
            cfg.set("hostname", "not a host name!")
        with pytest.raises(mxgw.InvalidArgumentError):
            cfg.set("no_such_option", 1)
        with pytest.raises(mxgw.RangeError):
            cfg.set("max_command_line", 10)
        s = mxgw.Session(cfg)
        with pytest.raises(mxgw.BusyError):
            cfg.set("max_recipients", 5)  # frozen now
        with pytest.raises(mxgw.InvalidArgumentError):
            s.set_peer("not-an-ip")
        with pytest.raises(mxgw.StateError):
            s.feed(b"EHLO x\r\n", 0)  # not started
        s.set_peer("192.0.2.1", 1234, "client.example")
        s.start(0)
        assert s.next_event() == Event.CONNECT and s.pending == Event.CONNECT
        with pytest.raises(mxgw.InvalidArgumentError):
            s.reply(999)
        s.reply(220, None, "welcome")
        assert s.output().startswith(b"220 mx.example.test welcome")
        with pytest.raises(mxgw.InvalidArgumentError):
            s.consume(10 ** 6)
        s.consume(len(s.output()))
        assert s.output() == b""
        with pytest.raises(mxgw.StateError):
            s.accept()  # nothing pending
        assert s.feed(b"HELO c.example\r\n", 1) == 16
        assert s.next_event() == Event.HELO and s.helo == "c.example"
        assert s.get_int("is_ehlo") == 0 and s.mail_from is None
        assert s.peer_addr == "192.0.2.1" and s.get_str("peer_host") == "client.example"
        s.accept()
        with pytest.raises(mxgw.StateError):
            s.received_header()  # no MAIL yet
        assert s.want & s.WANT_READ and s.want & s.WANT_WRITE
        s.take_output()
        dl = s.deadline
        assert dl == 1 + 300000
        assert s.tick(dl - 1) is False
        assert s.tick(dl) is True  # 421 4.4.2 timeout
        evs = []
        for ev in s.events():
            evs.append((ev, s.data))
        assert evs[-1][0] == Event.CLOSE and b"timeout" in evs[-1][1].lower()
        assert s.take_output().startswith(b"421 4.4.2")
        assert s.want & s.WANT_CLOSE
        with pytest.raises(mxgw.ClosedError):
            s.feed(b"NOOP\r\n", 2)
        with pytest.raises(mxgw.ClosedError):
            s.shutdown()
        s.close()
        s.close()  # idempotent
        with pytest.raises(mxgw.StateError):
            s.want
    # shutdown, abort, eof and starttls_done on fresh sessions
    with mxgw.SessionConfig() as cfg:
        with mxgw.Session(cfg, peer=("::1", 1)) as s:
            s.start(0)
            s.accept() if s.next_event() else None
            s.shutdown("bye")
            assert b"421 4.3.2" in s.take_output()
        with mxgw.Session(cfg, peer=("127.0.0.1", 1)) as s:
            s.start(0)
            s.next_event()
            s.accept()
            s.abort()
            assert list(s.events())[-1] == Event.CLOSE
        with mxgw.Session(cfg, peer=("127.0.0.1", 1)) as s:
            s.start(0)
            s.next_event()
            s.accept()
            with pytest.raises(mxgw.StateError):
                s.starttls_done("TLSv1.3", "X")
            s.eof()
            assert Event.CLOSE in list(s.events())


def test_log_hook_exception_is_reported_not_raised():
    seen = []
    old = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(u.exc_value)
    try:
        with mxgw.SessionConfig() as cfg, mxgw.Session(cfg, peer=("127.0.0.1", 1)) as s:
            def bad(kind, text):
                raise RuntimeError("log hook failed")
            s.set_log(bad)
            s.start(0)
            assert s.next_event() == Event.CONNECT  # the session goes on
            s.accept()
            s.set_log(None)
            with pytest.raises(TypeError):
                s.set_log(42)
    finally:
        sys.unraisablehook = old
    assert seen and isinstance(seen[0], RuntimeError)
