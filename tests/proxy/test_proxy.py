# SPDX-License-Identifier: MIT
"""test_proxy.py: proxy (before-queue) mode end to end. The example server
(mxgw-example-smtpd --lmtp-proxy) relays each SMTP transaction in step to
an LMTP backend: a private Dovecot (tests/lmtp/lmtp_fixture.py) for the
real deliveries, and the fault-injecting fake backend of
tests/lmtp/test_lmtp_faults.py for per-recipient replies, drops and
slowness. Checks what a sender sees (the SMTP replies) and what the
mailbox gets (byte-exact), and that nothing is ever written to --dir.
Debian's /usr/bin/python3, standard library only."""
import os
import smtplib
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lmtp"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import lmtp_fixture as F  # noqa: E402
import mxgwtest as M  # noqa: E402
from test_lmtp_faults import FakeLMTP  # noqa: E402

D = F.DOMAIN
BODY = (b"From: Sender <s@origin.example>\r\nTo: alice@" + D.encode() +
        b"\r\nSubject: proxy test\r\n\r\nHello.\r\n.leading dot\r\n..two\r\n"
        b"\r\n.\r\nlast line\r\n")


class Server(M.Server):
    """The example server in proxy mode; on exit it is stopped with
    SIGTERM and must exit 0 without sanitizer reports (ASan builds)."""

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                rc = self.stop()
                log = self.log()
                for bad in ("AddressSanitizer", "LeakSanitizer",
                            "runtime error:"):
                    assert bad not in log, log[-3000:]
                assert rc == 0, "exit status %r\n%s" % (rc, log[-2000:])
        finally:
            self.cleanup()
        return False


def sanitized():
    with open(M.smtpd_binary(), "rb") as f:
        return b"__asan_init" in f.read()


def session(port, rcpts, body=BODY, sender="s@origin.example"):
    """One transaction over a raw socket: returns the list of (code, lines)
    for MAIL, each RCPT, DATA and (if DATA got 354) the end of data."""
    out = []
    with M.RawClient("127.0.0.1", port, timeout=30) as c:
        c.expect(220)
        c.send("EHLO client.example\r\n")
        c.expect(250)
        c.send("MAIL FROM:<%s>\r\n" % sender)
        out.append(c.read_reply())
        if out[-1][0] != 250:
            return out
        for r in rcpts:
            c.send("RCPT TO:<%s>\r\n" % r)
            out.append(c.read_reply())
        c.send("DATA\r\n")
        out.append(c.read_reply())
        if out[-1][0] == 354:
            c.send(M.dot_stuff(body))
            out.append(c.read_reply())
        try:
            c.send("QUIT\r\n")
            c.read_reply()
        except (OSError, EOFError):
            pass
    return out


class ProxyDovecot(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists("/usr/sbin/dovecot"):
            raise unittest.SkipTest("dovecot not installed")
        cls.dc = F.Dovecot(users=("alice", "bob")).start()

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def check_delivered(self, user, before, n, body=BODY):
        """n new messages since the Maildir listing `before`; returns the
        content of the new ones, each checked."""
        files = self.dc.wait_files(user, len(before) + n)
        new = sorted(set(files) - set(before))
        self.assertEqual(len(new), n, self.dc.errors())
        for path in new:
            got = self.check_one(path, body)
        return got

    def check_one(self, path, body):
        with open(path, "rb") as f:
            got = f.read()
        # Dovecot prepends Return-Path/Delivered-To/its Received; ours is
        # the first of the original headers; the rest is byte-exact (the
        # Maildir stores LF line ends).
        body = body.replace(b"\r\n", b"\n")
        self.assertTrue(got.endswith(body), got[-400:])
        head = got[:len(got) - len(body)]
        # our Received header carries today's date, not the epoch
        self.assertIn(time.strftime("%d %b %Y", time.gmtime()).encode(),
                      head.split(b"by mx.example.test")[1][:200])
        self.assertIn(b"by mx.example.test", head)
        self.assertIn(b"Return-Path: <s@origin.example>", head)
        return got

    def test_smtplib_byte_exact_tcp(self):
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % self.dc.port]) as srv:
            before = self.dc.maildir_files("alice")
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=30) as s:
                s.ehlo("client.example")
                code, msg = s.docmd("MAIL FROM:<s@origin.example>")
                self.assertEqual(code, 250, msg)
                code, msg = s.docmd("RCPT TO:<alice@%s>" % D)
                self.assertEqual(code, 250, msg)
                code, msg = s.data(BODY)
                self.assertEqual(code, 250, msg)
            got = self.check_delivered("alice", before, 1)
            # XCLIENT passed the original client's HELO to Dovecot: its own
            # Received header (the first one) names it, not our LHLO name
            first = got.split(b"\nReceived: ")[1].split(b"by ")[0]
            self.assertIn(b"from client.example", first, got[:600])
            self.assertEqual(os.listdir(srv.dir), [], "proxy mode spooled")

    def test_unknown_user_rejected_at_rcpt(self):
        with Server(["--lmtp-proxy", "unix:" + self.dc.socket]) as srv:
            before = self.dc.maildir_files("bob")
            r = session(srv.port, ["nobody@" + D, "bob@" + D])
            self.assertEqual(r[0][0], 250)
            self.assertEqual(r[1][0], 550, r[1])       # Dovecot's own reply
            self.assertIn("5.1.1", r[1][1][0])
            self.assertEqual(r[2][0], 250, r[2])
            self.assertEqual(r[3][0], 354)
            self.assertEqual(r[4][0], 250, r[4])
            self.check_delivered("bob", before, 1)
            self.assertEqual(os.listdir(srv.dir), [])

    def test_all_unknown_no_data(self):
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % self.dc.port]) as srv:
            r = session(srv.port, ["x@" + D, "y@" + D])
            self.assertEqual([x[0] for x in r[1:3]], [550, 550])
            self.assertGreaterEqual(r[3][0], 500)  # DATA without recipients

    def test_swaks_two_messages(self):
        swaks = "/usr/bin/swaks"
        if not os.access(swaks, os.X_OK):
            self.skipTest("swaks missing")
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % self.dc.port]) as srv:
            before = self.dc.maildir_files("alice")
            for i in range(2):
                p = subprocess.run(
                    [swaks, "--server", "127.0.0.1", "--port", str(srv.port),
                     "--from", "s@origin.example", "--to", "alice@" + D,
                     "--helo", "client.example", "--data", "-"],
                    input=BODY, capture_output=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertIn(b"<-  250 2.0.0", p.stdout)
            # swaks sends "\r\n.\r\n" after --data even when it ends in
            # CRLF: one empty line more, its own addition
            self.check_delivered("alice", before, 2, BODY + b"\r\n")


class ProxyFaults(unittest.TestCase):
    def fake(self, **kw):
        b = FakeLMTP(**kw)
        self.addCleanup(b.close)
        return b

    def run_one(self, backend, rcpts, args=(), body=BODY):
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % backend.port,
                       *args]) as srv:
            r = session(srv.port, rcpts, body=body)
            self.assertEqual(os.listdir(srv.dir), [])
            return r

    def test_rcpt_reply_passed_through(self):
        b = self.fake(rcpt_reply=lambda a: b"452 4.2.2 <%s> mailbox full" % a
                      if a.startswith(b"full") else b"250 2.1.5 OK")
        r = self.run_one(b, ["full@x.example", "ok@x.example"])
        self.assertEqual(r[1][0], 452)
        self.assertIn("4.2.2 <full@x.example> mailbox full", r[1][1][0])
        self.assertEqual(r[2][0], 250)
        self.assertEqual(r[-1][0], 250)
        # the body reached the backend dot-stuffed, after our Received
        self.assertTrue(b.data.startswith(b"Received: from client.example"))
        self.assertTrue(b.data.endswith(BODY.replace(b"\r\n.", b"\r\n..")),
                        b.data[-200:])

    def final(self, table):
        return self.fake(final_reply=lambda a: table[a.split(b"@")[0]])

    def test_end_of_data_policy(self):
        cases = [
            ({b"a": b"250 2.0.0 ok", b"b": b"250 2.0.0 ok"}, 250, "2.0.0"),
            ({b"a": b"452 4.2.2 full", b"b": b"452 4.2.2 full"}, 452, "4.2.2"),
            ({b"a": b"550 5.2.1 gone", b"b": b"550 5.2.1 gone"}, 550, "5.2.1"),
            ({b"a": b"250 2.0.0 ok", b"b": b"451 4.3.0 tmp"}, 451, "4.3.0"),
            ({b"a": b"250 2.0.0 ok", b"b": b"552 5.2.2 quota"}, 451, "4.3.0"),
            ({b"a": b"550 5.1.1 x", b"b": b"552 5.2.2 y"}, 554, "5.0.0"),
        ]
        for table, code, enh in cases:
            with self.subTest(table=table):
                b = self.final(table)
                r = self.run_one(b, ["a@x.example", "b@x.example"])
                self.assertEqual(r[-1][0], code, r)
                self.assertIn(enh, r[-1][1][0])

    def test_partial_5xx_option_is_not_default(self):
        # documented default: 2xx mixed with 5xx is a temporary failure
        b = self.final({b"a": b"250 2.0.0 ok", b"b": b"550 5.1.1 no"})
        r = self.run_one(b, ["a@x.example", "b@x.example"])
        self.assertEqual(r[-1][0], 451)

    def test_two_messages_and_rset_one_connection(self):
        b = self.fake()
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % b.port]) as srv:
            with M.RawClient("127.0.0.1", srv.port, timeout=30) as c:
                c.expect(220)
                c.send("EHLO client.example\r\n")
                c.expect(250)
                # a transaction abandoned with RSET reaches no mailbox
                c.send("MAIL FROM:<s@origin.example>\r\n")
                c.expect(250)
                c.send("RCPT TO:<gone@x.example>\r\n")
                c.expect(250)
                c.send("RSET\r\n")
                c.expect(250)
                for i in range(2):
                    c.send("MAIL FROM:<s%d@origin.example>\r\n" % i)
                    c.expect(250)
                    c.send("RCPT TO:<r%d@x.example>\r\n" % i)
                    c.expect(250)
                    c.send("DATA\r\n")
                    c.expect(354)
                    c.send(M.dot_stuff(b"Subject: %d\r\n\r\nbody\r\n" % i))
                    c.expect(250)
                    self.assertTrue(b.data.endswith(b"Subject: %d\r\n\r\n"
                                                    b"body\r\n" % i))
                c.send("QUIT\r\n")
                c.expect(221)
        end = time.monotonic() + 10  # the fake reads QUIT in its thread
        while b"QUIT" not in b.commands and time.monotonic() < end:
            time.sleep(0.05)
        verbs = [x.split(b" ")[0].split(b":")[0].upper() for x in b.commands]
        # one backend connection: one LHLO, the RSET passed on, one QUIT
        self.assertEqual(verbs.count(b"LHLO"), 1, b.commands)
        self.assertIn(b"RSET", verbs)
        self.assertEqual(verbs[-1], b"QUIT")
        self.assertIn(b"RCPT TO:<r1@x.example>", b.commands)

    def test_big_message_streams(self):
        # 24 MB through the proxy: the server's memory stays far below it
        b = self.fake()
        line = b"x" * 998 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * 24000
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % b.port]) as srv:
            r = session(srv.port, ["a@x.example"], body=body)
            self.assertEqual(r[-1][0], 250, r[-1])
            with open("/proc/%d/status" % srv.proc.pid) as f:
                hwm = [l for l in f if l.startswith("VmHWM")][0]
            if not sanitized():  # ASan's shadow memory and quarantine
                self.assertLess(int(hwm.split()[1]), 12 * 1024, hwm)
        self.assertTrue(b.data.endswith(body))

    def test_backend_down(self):
        port = F.free_port()  # nobody listens there
        with Server(["--lmtp-proxy", "127.0.0.1:%d" % port]) as srv:
            r = session(srv.port, ["a@x.example"])
            self.assertEqual(r[0][0], 451, r)
            self.assertIn("4.4.1", r[0][1][0])
            self.assertEqual(os.listdir(srv.dir), [])

    def test_drop_mid_data_never_250(self):
        b = self.fake(drop_mid_data=True)
        big = BODY + b"".join(b"line %d of padding\r\n" % i
                              for i in range(2000))
        r = self.run_one(b, ["a@x.example"], body=big)
        self.assertEqual(r[-2][0], 354)
        self.assertEqual(r[-1][0] // 100, 4, r[-1])

    def test_slow_backend_times_out(self):
        b = self.fake(delay=8.0)
        t0 = time.monotonic()
        r = self.run_one(b, ["a@x.example"], args=["--timeout", "1500"])
        self.assertEqual(r[-1][0], 451, r[-1])
        self.assertIn("4.4.2", r[-1][1][0])
        self.assertLess(time.monotonic() - t0, 7.0)


if __name__ == "__main__":
    M.overall_timeout(500)
    unittest.main()
