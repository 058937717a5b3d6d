# SPDX-License-Identifier: MIT
"""test_server_proxy.py: the server layer in proxy (before-queue) mode
(MXGW_SRV_OPT_PROXY_MODE, --srv 1050=1 of server_driver): smtplib and swaks
-> mxgw_server -> a private Dovecot LMTP (tests/lmtp/lmtp_fixture.py), in
step, nothing spooled. Checks the message in the Maildir byte for byte, the
backend's replies passed through, the behaviour with the backend down or
dropping during the data, the server's own policies applied first, and the
Postfix-style proxy-accept / proxy-reject log lines.
Run: SERVER_DRIVER=build/.../server_driver /usr/bin/python3
     test_server_proxy.py
"""
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server as TS  # noqa: E402  (Driver, fixtures, helpers)

PROXY = ("--srv", "1050=1")  # MXGW_SRV_OPT_PROXY_MODE


def setUpModule():
    TS.setUpModule()


def tearDownModule():
    TS.tearDownModule()


def D():
    return TS.D


def spool_files(spool):
    """Regular files in the spool, except the lock."""
    out = []
    for root, _, files in os.walk(spool):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), spool))
    return sorted(out)


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


class DroppingBackend:
    """An LMTP peer that answers the envelope, says 354 to DATA, reads a
    little of the body and then closes the connection (a store crashing
    during the data). Written in Python because a real store cannot be
    told to do that at a precise point."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.dropped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 drop.test LMTP\r\n")
        try:
            for line in f:
                cmd = line[:4].upper()
                if cmd == b"LHLO":
                    c.sendall(b"250-drop.test\r\n250 8BITMIME\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    f.read(1000)
                    self.dropped.set()
                    break
                elif cmd == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    break
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        c.close()

    def close(self):
        self.sock.close()


class ProxyMode(unittest.TestCase):
    def test_smtplib_byte_exact_nothing_spooled(self):
        d = TS.Driver(*PROXY, "--domain", D())
        try:
            before = spool_files(d.spool)
            msg = TS.message("px-plain-1", b"Line one\r\n.leading dot\r\n"
                             b"\xc3\xa9 8bit\r\n\r\nlast\r\n")
            with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as c:
                c.ehlo("client.test")
                c.mail("sender@client.test")
                code, text = c.rcpt("alice@" + D())
                self.assertEqual(code, 250)
                code, text = c.data(msg)
                self.assertEqual(code, 250, text)
                self.assertIn(b"delivered to 1 recipient", text)
            # 250 came after the store took it: it is there already
            files = TS.DOVECOT.maildir_files("alice")
            path = []
            for p in files:
                with open(p, "rb") as f:
                    if b"Subject: px-plain-1\n" in f.read():
                        path.append(p)
            self.assertEqual(len(path), 1)
            ours, orig = TS.stored_rest(path[0])
            self.assertEqual(orig, msg.replace(b"\r\n", b"\n"))
            self.assertEqual(len(ours), 1)
            self.assertTrue(ours[0].startswith(b"Received: from client.test"))
            self.assertIn(b"by mx.example.test", ours[0])
            d.wait_log(r"^NOQUEUE: proxy-accept: END-OF-MESSAGE from "
                       r"unknown\[127\.0\.0\.1\]: 250 2\.0\.0 Ok: delivered "
                       r"to 1 recipient; from=<sender@client\.test> "
                       r"to=<alice@%s> proto=ESMTP helo=<client\.test>"
                       % D())
            self.assertEqual(d.stats()["messages"], 1)
            self.assertEqual(spool_files(d.spool), before)
            self.assertFalse([l for l in d.logs() if "status=" in l],
                             d.log())
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()

    def test_unknown_user_refused_at_rcpt(self):
        """Dovecot's own 550 5.1.1 is the RCPT reply; the known recipient
        gets the message; swaks sees both."""
        d = TS.Driver(*PROXY, "--domain", D())
        try:
            p = subprocess.run(
                ["swaks", "--server", "127.0.0.1:%d" % d.port,
                 "--from", "s@client.test", "--to",
                 "bob@%s,nobody@%s" % (D(), D()),
                 "--header", "Subject: px-swaks-1",
                 "--helo", "swaks.client.test"],
                capture_output=True, timeout=60)
            out = p.stdout.decode()
            self.assertRegex(out, r"<\*\* +550 5\.1\.1 <nobody@%s> User "
                             r"doesn't exist" % D())
            self.assertRegex(out, r"<- +250 2\.0\.0 Ok: delivered to 1 "
                             r"recipient")
            TS.find_subject("bob", "px-swaks-1", secs=5)
            d.wait_log(r"^NOQUEUE: proxy-reject: RCPT from unknown\[127\.0\."
                       r"0\.1\]: 550 5\.1\.1 <nobody@%s> User doesn't exist"
                       r".*; from=<s@client\.test> to=<nobody@%s> "
                       r"proto=ESMTP helo=<swaks\.client\.test>"
                       % (D(), D()))
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()

    def test_server_policies_first(self):
        """Accepted domains and the end-of-message callback decide before
        the backend: a foreign domain gets 554 5.7.1 without reaching the
        store, and a message the callback rejects is not stored."""
        d = TS.Driver(*PROXY, "--domain", D(), "--policy", "rcpt,end",
                      "--reject-end", "--reject-rcpt", "bob@" + D())
        try:
            n = len(TS.DOVECOT.maildir_files("carol"))
            with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as c:
                c.ehlo("client.test")
                c.mail("s@client.test")
                code, text = c.rcpt("x@elsewhere.test")
                self.assertEqual(code, 554)
                self.assertIn(b"Relay access denied", text)
                code, text = c.rcpt("bob@" + D())
                self.assertEqual(code, 550)
                self.assertIn(b"Recipient refused", text)
                code, _ = c.rcpt("carol@" + D())
                self.assertEqual(code, 250)
                code, text = c.data(TS.message("px-rejected-1"))
                self.assertEqual(code, 554, text)
                # the session goes on: the next transaction works
                code, _ = c.rset()
                self.assertEqual(code, 250)
            time.sleep(0.5)
            self.assertEqual(len(TS.DOVECOT.maildir_files("carol")), n)
            d.wait_log(r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]"
                       r": 554 5\.7\.1 <x@elsewhere\.test>: Relay access "
                       r"denied")
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()

    def test_backend_down_451_at_mail(self):
        """No backend reachable: 451 4.4.1 at MAIL (the documented policy),
        nothing accepted, nothing spooled."""
        d = TS.Driver(*PROXY, backend="127.0.0.1:%d" % dead_port())
        try:
            before = spool_files(d.spool)
            with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as c:
                c.ehlo("client.test")
                code, text = c.mail("s@client.test")
                self.assertEqual(code, 451, text)
                self.assertTrue(text.startswith(b"4.4.1"), text)
                self.assertNotIn(b"127.0.0.1", text)  # backends not named
                code, _ = c.rcpt("alice@" + D())
                self.assertEqual(code, 503)  # no transaction
            d.wait_log(r"^warning: proxy: connect to 127\.0\.0\.1\[127\.0\.0"
                       r"\.1\]:\d+: Connection refused")
            d.wait_log(r"^NOQUEUE: proxy-reject: MAIL from unknown\[127\.0\."
                       r"0\.1\]: 451 4\.4\.1 Backend unavailable \(no backend "
                       r"reachable\), try again later; from=<s@client\.test>")
            self.assertEqual(spool_files(d.spool), before)
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()

    def test_fallback_backend(self):
        """The first backend is down: the second (Dovecot) is used."""
        d = TS.Driver(*PROXY, "--backend",
                      "127.0.0.1:%d" % TS.DOVECOT.port,
                      backend="127.0.0.1:%d" % dead_port())
        try:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as c:
                r = c.sendmail("s@client.test", ["alice@" + D()],
                               TS.message("px-fallback-1"))
                self.assertEqual(r, {})
            TS.find_subject("alice", "px-fallback-1", secs=5)
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()

    def test_backend_drops_mid_data(self):
        """The backend goes away during the body: the end of data gets 451
        (never 250), nothing claimed, nothing spooled."""
        b = DroppingBackend()
        d = TS.Driver(*PROXY, backend="127.0.0.1:%d" % b.port)
        try:
            before = spool_files(d.spool)
            big = TS.message("px-drop-1", (b"z" * 998 + b"\r\n") * 3000)
            with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as c:
                c.ehlo("client.test")
                self.assertEqual(c.mail("s@client.test")[0], 250)
                self.assertEqual(c.rcpt("alice@" + D())[0], 250)
                code, text = c.data(big)
                self.assertEqual(code, 451, text)
                self.assertTrue(text.startswith(b"4.4.2"), text)
            self.assertTrue(b.dropped.is_set())
            d.wait_log(r"^NOQUEUE: proxy-reject: END-OF-MESSAGE from "
                       r"unknown\[127\.0\.0\.1\]: 451 4\.4\.2 ")
            self.assertFalse([l for l in d.logs() if "proxy-accept" in l])
            self.assertEqual(spool_files(d.spool), before)
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()
            b.close()

    def test_drain_closes_idle_session(self):
        """SIGTERM with an idle session after a delivered message: the
        client gets 421, the backend connection is closed, exit 0."""
        d = TS.Driver(*PROXY)
        try:
            c = smtplib.SMTP("127.0.0.1", d.port, timeout=20)
            c.ehlo("client.test")
            r = c.sendmail("s@client.test", ["alice@" + D()],
                           TS.message("px-drain-1"))
            self.assertEqual(r, {})
            d.proc.send_signal(signal.SIGTERM)
            line = TS.read_reply(c.sock)
            self.assertTrue(line.startswith(b"421 4.3.2"), line)
            c.close()
            self.assertEqual(d.stop(), 0)
            TS.find_subject("alice", "px-drain-1", secs=5)
        finally:
            d.kill()


class ProxyConfig(unittest.TestCase):
    def refused(self, *args):
        spool = tempfile.mkdtemp(prefix="spool-", dir=TS.TMP)
        p = subprocess.run([TS.DRIVER, "--spool", spool, "--listen",
                            "127.0.0.1:0:smtp", *PROXY, *args],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        return p.stderr.decode()

    def test_invalid_combinations_refused(self):
        self.assertIn("server: proxy mode needs an LMTP backend",
                      self.refused("--no-deliver"))
        # STARTTLS to the backend required: proxy mode cannot honour it
        self.assertIn("proxy mode does not use STARTTLS to the backends",
                      self.refused("--backend", "127.0.0.1:24",
                                   "--deliver", "9=2"))


class ProxySpf(unittest.TestCase):
    """SPF at MAIL FROM (NSD on loopback) still decides before the backend
    in proxy mode, and the Received-SPF field reaches the store above our
    Received field."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, os.path.join(HERE, "..", "dns"))
        import dns_fixture
        cls.tmp = tempfile.mkdtemp(prefix="nsd-", dir=TS.TMP)
        cls.dport = dns_fixture.free_port()
        cls.nsd, _ = dns_fixture.start_nsd(
            cls.tmp, cls.dport, os.path.join(HERE, "..", "dns",
                                             "spf.test.zone"), 10)

    @classmethod
    def tearDownClass(cls):
        cls.nsd.kill()
        cls.nsd.wait()

    def session(self, d, ip, sender):
        s = socket.create_connection(("127.0.0.1", d.port), 10)
        s.sendall(b"PROXY TCP4 %s 127.0.0.1 5555 25\r\n" % ip.encode())
        self.assertTrue(TS.read_reply(s).startswith(b"220"))
        s.sendall(b"EHLO client.spf.test\r\n")
        TS.read_reply(s)
        s.sendall(b"MAIL FROM:<%s>\r\n" % sender.encode())
        return s, TS.read_reply(s)

    def test_spf_pass_header_and_fail_before_backend(self):
        d = TS.Driver(*PROXY, "--spf", "--dns", "127.0.0.1:%d" % self.dport,
                      "--dns-options", "timeout_ms=300;tries=1",
                      listen=("127.0.0.1:0:smtp:proxy",))
        try:
            s, r = self.session(d, "192.0.2.1", "user@pass.spf.test")
            self.assertTrue(r.startswith(b"250 2.1.0"), r)
            s.sendall(b"RCPT TO:<alice@%s>\r\n" % D().encode())
            self.assertTrue(TS.read_reply(s).startswith(b"250"))
            s.sendall(b"DATA\r\n")
            self.assertTrue(TS.read_reply(s).startswith(b"354"))
            s.sendall(TS.message("px-spf-pass") + b".\r\n")
            r = TS.read_reply(s)
            self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered"), r)
            s.close()
            ours, _ = TS.stored_rest(TS.find_subject("alice", "px-spf-pass",
                                                     secs=5))
            self.assertTrue(ours[0].startswith(b"Received-SPF: pass"), ours)
            self.assertIn(b"client-ip=192.0.2.1", ours[0])
            self.assertTrue(ours[1].startswith(b"Received: from "), ours)
            self.assertIn(b"192.0.2.1", ours[1])

            s, r = self.session(d, "192.0.2.99", "user@pass.spf.test")
            self.assertTrue(r.startswith(b"550 5.7.23"), r)
            s.close()
            d.wait_log(r"NOQUEUE: reject: MAIL from unknown\[192\.0\.2\.99\]"
                       r": 550 5\.7\.23")
            self.assertEqual(d.stats()["spf_checks"], 2)
        finally:
            d.stop()
            d.kill()


if __name__ == "__main__":
    unittest.main()
