# SPDX-License-Identifier: MIT
"""Integration: Python's smtplib and raw sockets against mxgw-example-smtpd.

Every test starts its own server (own port, own spool directory) and checks
what a user of the server would check: the replies, and the files that do
or do not appear in the spool, byte for byte. Covered: pipelining (one
write, replies in order), several messages per connection, dot-stuffing
round trips, 8-bit bodies and SMTPUTF8 addresses, SIZE limits, RSET, the
published SMTP smuggling sequences, bare LF, many concurrent clients, the
connection cap, a full disk, clean shutdown with a transfer in progress,
and IPv6. Standard library only (unittest, no pytest).
"""

import base64
import os
import random
import re
import smtplib
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxgwtest  # noqa: E402
from mxgwtest import RawClient, Server, dot_stuff, read_messages  # noqa

HELO = "client.example.org"


def smtp(srv, host="127.0.0.1"):
    return smtplib.SMTP(host, srv.port, local_hostname=HELO, timeout=30)


def body_of(srv, qid):
    msgs = read_messages(srv)
    assert qid in msgs, "%s not stored; spool: %r" % (qid, srv.entries())
    return msgs[qid]


def queued_id(resp):
    if isinstance(resp, bytes):
        resp = resp.decode()
    m = re.search(r"Ok: queued as ([0-9A-Za-z]+)", resp)
    assert m, "no queue id in %r" % resp
    return m.group(1)


def raw_session(c):
    c.expect(220)
    c.send("EHLO %s\r\n" % HELO)
    return c.expect(250)


class SmtpdTest(unittest.TestCase):
    server_args = ()
    quiet = True

    def setUp(self):
        self.srv = Server(args=self.server_args, quiet=self.quiet)
        self.srv.__enter__()
        self.addCleanup(self.srv.cleanup)

    def tearDown(self):
        # The server is still alive (no test may crash it), stops cleanly on
        # SIGTERM with status 0 (in sanitizer builds, a leak makes it
        # non-zero), and the spool holds only <id>.eml files, never temp
        # files.
        if self.srv.proc is None:
            return
        self.assertTrue(self.srv.alive(),
                        "server died:\n" + self.srv.log()[-4000:])
        rc = self.srv.stop()
        self.assertEqual(rc, 0, "server exit status %r:\n%s"
                         % (rc, self.srv.log()[-4000:]))
        self.srv.assert_spool_clean()

    def raw(self):
        c = RawClient("127.0.0.1", self.srv.port)
        self.addCleanup(c.close)
        return c


class TestPipelining(SmtpdTest):
    def test_mail_rcpts_data_in_one_write(self):
        c = self.raw()
        ehlo = raw_session(c)
        self.assertIn("250-PIPELINING", ehlo)
        msg1 = b"Subject: pipelined 1\r\n\r\nfirst body\r\n"
        msg2 = b"Subject: pipelined 2\r\n\r\n.second body\r\n"
        c.send(b"MAIL FROM:<alice@example.org>\r\n"
               b"RCPT TO:<b1@example.test>\r\n"
               b"RCPT TO:<b2@example.test>\r\n"
               b"RCPT TO:<b3@example.test>\r\n"
               b"DATA\r\n")
        self.assertTrue(c.expect(250)[0].startswith("250 2.1.0"))
        for _ in range(3):
            self.assertTrue(c.expect(250)[0].startswith("250 2.1.5"))
        c.expect(354)
        # End of data, then the next transaction, again in one write.
        c.send(dot_stuff(msg1) + b"MAIL FROM:<>\r\n"
               b"RCPT TO:<c@example.test>\r\nDATA\r\n")
        qid1 = queued_id(c.expect(250)[0])
        self.assertTrue(c.expect(250)[0].startswith("250 2.1.0"))
        self.assertTrue(c.expect(250)[0].startswith("250 2.1.5"))
        c.expect(354)
        c.send(dot_stuff(msg2) + b"QUIT\r\n")
        qid2 = queued_id(c.expect(250)[0])
        c.expect(221)
        self.assertNotEqual(qid1, qid2)
        self.assertEqual(body_of(self.srv, qid1)[1], msg1)
        self.assertEqual(body_of(self.srv, qid2)[1], msg2)
        self.assertEqual(len(self.srv.eml_files()), 2)

    def test_whole_transaction_pipelined_with_errors_in_order(self):
        # A bad RCPT in the middle of a pipelined group gets its error in
        # its place; the others still succeed.
        c = self.raw()
        raw_session(c)
        c.send(b"MAIL FROM:<alice@example.org>\r\n"
               b"RCPT TO:<ok1@example.test>\r\n"
               b"RCPT TO:<broken\r\n"
               b"RCPT TO:<ok2@example.test>\r\n"
               b"NOOP\r\n"
               b"DATA\r\n")
        codes = [c.read_reply()[0] for _ in range(6)]
        self.assertEqual(codes[:2], [250, 250])
        self.assertTrue(500 <= codes[2] < 600, codes)
        self.assertEqual(codes[3:], [250, 250, 354])
        c.send(dot_stuff(b"Subject: x\r\n\r\ny\r\n"))
        qid = queued_id(c.expect(250)[0])
        hdr, _ = body_of(self.srv, qid)
        self.assertNotIn(b"broken", hdr)

    def test_client_that_does_not_read_its_replies(self):
        # 100000 pipelined EHLOs (2 MB, with 15 MB of replies) sent without
        # reading a reply: the replies pile up, the server must stop
        # reading (the session takes only part of the input, want() drops
        # READ), keep serving other clients meanwhile, and resume when this
        # client reads again, losing and reordering nothing.
        n = 100000
        c = RawClient("127.0.0.1", self.srv.port, sndbuf=16384)
        self.addCleanup(c.close)
        c.expect(220)
        c.send(b"EHLO c.example.org\r\n")
        template = ("\r\n".join(c.expect(250)) + "\r\n").encode()
        sender = threading.Thread(
            target=c.sock.sendall,
            args=(b"EHLO c.example.org\r\n" * n + b"QUIT\r\n",))
        sender.start()
        time.sleep(1.0)
        # With small socket buffers on the client, 2 MB cannot all be in
        # flight: the sender is blocked because the server stopped reading.
        blocked = sender.is_alive()
        # Another client is served while the first one is stuck.
        s = smtp(self.srv)
        self.addCleanup(s.close)
        msg = b"Subject: meanwhile\r\n\r\nserved\r\n"
        self.assertEqual(s.sendmail("a@example.org", ["b@example.test"], msg),
                         {})
        s.quit()
        self.assertEqual([b for _, b in read_messages(self.srv).values()],
                         [msg])
        got = c.read_until_closed(timeout=60)
        sender.join(30)
        self.assertFalse(sender.is_alive())
        self.assertTrue(blocked, "the server never stopped reading")
        self.assertEqual(len(got) // len(template), n)
        self.assertEqual(got[:len(template) * n], template * n)
        self.assertRegex(got[len(template) * n:], rb"^221 2\.0\.0 [^\r\n]*\r\n$")

class TestMessages(SmtpdTest):
    def test_several_messages_per_connection(self):
        s = smtp(self.srv)
        self.addCleanup(s.close)
        s.ehlo()
        sent = {}
        for i in range(7):
            msg = ("Subject: message %d\r\n\r\n" % i).encode() + \
                (b"line %d of the body\r\n" % i) * (i * 50 + 1)
            rcpt = "rcpt%d@example.test" % i
            s.mail("sender@example.org")
            s.rcpt(rcpt)
            code, resp = s.data(msg)
            self.assertEqual(code, 250, resp)
            self.assertTrue(resp.startswith(b"2.0.0"), resp)
            sent[queued_id(resp)] = (rcpt, msg)
        s.quit()
        stored = read_messages(self.srv)
        self.assertEqual(set(stored), set(sent))
        for qid, (rcpt, msg) in sent.items():
            hdr, body = stored[qid]
            self.assertEqual(body, msg)
            self.assertIn(("for <%s>" % rcpt).encode(), hdr)
            self.assertIn(b"from client.example.org", hdr)

    def test_dot_stuffing_round_trip_smtplib(self):
        msg = (b"Subject: dots\r\n"
               b"\r\n"
               b".\r\n"
               b"..\r\n"
               b"...\r\n"
               b".leading dot\r\n"
               b"..two leading dots\r\n"
               b" .space then dot\r\n"
               b"trailing dot.\r\n"
               b"\r\n"
               b".\r\n")
        s = smtp(self.srv)
        self.addCleanup(s.close)
        s.ehlo()
        s.mail("a@example.org")
        s.rcpt("b@example.test")
        code, resp = s.data(msg)
        self.assertEqual(code, 250, resp)
        s.quit()
        self.assertEqual(body_of(self.srv, queued_id(resp))[1], msg)

    def test_dot_stuffing_round_trip_raw(self):
        # Lines that look like the end of data once stuffed, split across
        # many writes at awkward places.
        msg = b"Subject: raw dots\r\n\r\n" + b"".join(
            b"." * (i % 4) + (b"line %d\r\n" % i) for i in range(200)) + \
            b".\r\n..\r\n"
        c = self.raw()
        raw_session(c)
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
               "DATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        wire = dot_stuff(msg)
        rnd = random.Random(5321)
        pos = 0
        while pos < len(wire):
            n = rnd.choice([1, 2, 3, 5, 7, 64, 1000])
            c.send(wire[pos:pos + n])
            pos += n
        qid = queued_id(c.expect(250)[0])
        c.send("QUIT\r\n")
        c.expect(221)
        self.assertEqual(body_of(self.srv, qid)[1], msg)

    def test_8bit_body_and_smtputf8_addresses(self):
        frm = "jöran@exämple.org"
        to = "用户@例子.test"
        msg = ("From: %s\r\nTo: %s\r\nSubject: Grüße\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n"
               "Æøå – 8-bit body ✓\r\n\x7f and \u00ff\r\n" % (frm, to)
               ).encode("utf-8") + bytes(range(0x80, 0x100)) + b"\r\n"
        s = smtp(self.srv)
        self.addCleanup(s.close)
        s.ehlo()
        self.assertTrue(s.has_extn("smtputf8"))
        self.assertTrue(s.has_extn("8bitmime"))
        refused = s.sendmail(frm, [to], msg,
                             mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        self.assertEqual(refused, {})
        s.quit()
        stored = read_messages(self.srv)
        self.assertEqual(len(stored), 1)
        hdr, body = list(stored.values())[0]
        self.assertEqual(body, msg)
        self.assertRegex(hdr, rb"\bwith UTF8SMTP")
        self.assertIn(("<%s>" % to).encode("utf-8"), hdr)

    def test_utf8_address_without_smtputf8_refused(self):
        c = self.raw()
        raw_session(c)
        c.send("MAIL FROM:<jöran@exämple.org>\r\n".encode("utf-8"))
        code, lines = c.read_reply()
        self.assertTrue(500 <= code < 600, lines)
        c.send("MAIL FROM:<j@example.org>\r\nRCPT TO:<用户@例子.test>\r\n"
               .encode("utf-8"))
        c.expect(250)
        code, lines = c.read_reply()
        self.assertTrue(500 <= code < 600, lines)
        c.send("QUIT\r\n")
        c.expect(221)
        self.assertEqual(self.srv.eml_files(), [])


class TestSize(SmtpdTest):
    server_args = ("--max-size", "10000")

    def test_size_limit(self):
        s = smtp(self.srv)
        self.addCleanup(s.close)
        s.ehlo()
        self.assertTrue(s.has_extn("size"))
        self.assertEqual(int(s.esmtp_features["size"]), 10000)
        # Declared too large: refused up front.
        code, resp = s.mail("a@example.org", ["SIZE=20000"])
        self.assertEqual(code, 552, resp)
        self.assertTrue(resp.startswith(b"5.3.4"), resp)
        # Not declared, but too large: refused at the end of data.
        head = b"Subject: big\r\n\r\n"
        line = b"x" * 98 + b"\r\n"

        def sized(n):
            body = head + line * ((n - len(head)) // 100)
            body += b"y" * (n - len(body) - 2) + b"\r\n"
            assert len(body) == n
            return body

        s.mail("a@example.org")
        s.rcpt("b@example.test")
        code, resp = s.data(sized(20000))
        self.assertEqual(code, 552, resp)
        # At the limit: accepted. One octet over: refused.
        s.mail("a@example.org")
        s.rcpt("b@example.test")
        code, resp = s.data(sized(10001))
        self.assertEqual(code, 552, resp)
        ok = sized(10000)
        s.mail("a@example.org", ["SIZE=10000"])
        s.rcpt("b@example.test")
        code, resp = s.data(ok)
        self.assertEqual(code, 250, resp)
        s.quit()
        stored = read_messages(self.srv)
        self.assertEqual(len(stored), 1)
        self.assertEqual(list(stored.values())[0][1], ok)


class TestRset(SmtpdTest):
    def test_rset(self):
        c = self.raw()
        raw_session(c)
        c.send("MAIL FROM:<first@example.org>\r\n")
        c.expect(250)
        c.send("RCPT TO:<dropped@example.test>\r\n")
        c.expect(250)
        c.send("RSET\r\n")
        self.assertTrue(c.expect(250)[0].startswith("250 2.0.0"))
        # The transaction is gone: RCPT needs a new MAIL.
        c.send("RCPT TO:<x@example.test>\r\n")
        code, lines = c.read_reply()
        self.assertEqual(code, 503, lines)
        c.send("MAIL FROM:<second@example.org>\r\n")
        c.expect(250)
        c.send("RCPT TO:<kept@example.test>\r\n")
        c.expect(250)
        c.send("DATA\r\n")
        c.expect(354)
        c.send(dot_stuff(b"Subject: after rset\r\n\r\nbody\r\n"))
        qid = queued_id(c.expect(250)[0])
        c.send("QUIT\r\n")
        c.expect(221)
        stored = read_messages(self.srv)
        self.assertEqual(list(stored), [qid])
        hdr = stored[qid][0]
        self.assertIn(b"for <kept@example.test>", hdr)
        self.assertNotIn(b"dropped", hdr)

    def test_smtplib_rset_between_messages(self):
        s = smtp(self.srv)
        self.addCleanup(s.close)
        s.ehlo()
        s.mail("a@example.org")
        s.rcpt("b@example.test")
        self.assertEqual(s.rset()[0], 250)
        code, resp = s.docmd("DATA")   # DATA without MAIL after RSET
        self.assertEqual(code, 503, resp)
        self.assertEqual(s.sendmail("a@example.org", ["c@example.test"],
                                    b"Subject: s\r\n\r\nok\r\n"), {})
        s.quit()
        self.assertEqual(len(self.srv.eml_files()), 1)


# Published end-of-data variants (SEC Consult, "SMTP smuggling", 2023, and
# Postfix's smtpd_forbid_bare_newline notes). Only <CRLF>.<CRLF> ends DATA.
SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r",
             b"\n.\r", b"\r.\n", b"\r.\r\n", b"\r\n.\r\r\n", b"\r\n.\n\r\n",
             b"\n.\n\r\n", b"\r\n\n.\r\n", b"\r\n\r.\r\n"]


class TestSmuggling(SmtpdTest):
    def smuggle(self, seq):
        """Send a message whose body holds `seq` followed by a complete
        second transaction, all in one write, then QUIT; return the reply
        codes the server sent until it closed."""
        c = self.raw()
        raw_session(c)
        c.send("MAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt@example.test>"
               "\r\nDATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        c.send(b"From: sender@example.org\r\nSubject: first\r\n\r\n"
               b"first message" + seq +
               b"MAIL FROM:<admin@example.org>\r\n"
               b"RCPT TO:<victim@example.test>\r\n"
               b"DATA\r\n"
               b"From: admin@example.org\r\nSubject: smuggled\r\n\r\n"
               b"smuggled\r\n"
               b".\r\n"
               b"QUIT\r\n")
        rest = c.read_until_closed()
        return re.findall(rb"^(\d{3}) ", rest, re.M), rest

    def test_smuggling_sequences_are_not_end_of_data(self):
        for seq in SMUGGLING:
            with self.subTest(seq=seq):
                before = set(self.srv.eml_files())
                codes, rest = self.smuggle(seq)
                # One reply for the one message, then QUIT's 221: the
                # smuggled MAIL/RCPT/DATA were never commands.
                self.assertEqual(codes, [b"550", b"221"], rest)
                self.assertIn(b"550 5.5.2", rest)
                self.assertEqual(set(self.srv.eml_files()), before)
        self.assertEqual(self.srv.eml_files(), [])

    def test_control_real_end_of_data_does_end_the_message(self):
        # The same check with a real <CRLF>.<CRLF> must see two messages:
        # this proves the check above can fail.
        codes, rest = self.smuggle(b"\r\n.\r\n")
        self.assertEqual(codes, [b"250", b"250", b"250", b"354", b"250",
                                 b"221"], rest)
        self.assertEqual(len(self.srv.eml_files()), 2)


class TestBareNewline(SmtpdTest):
    def test_bare_lf_in_command_rejected(self):
        c = self.raw()
        raw_session(c)
        c.send(b"NOOP\n")
        lines = c.expect(500)
        self.assertTrue(lines[0].startswith("500 5.5.2"), lines)
        c.send(b"NOOP\r\n")
        c.expect(250)
        c.send(b"QUIT\r\n")
        c.expect(221)

    def test_bare_lf_in_body_rejected(self):
        c = self.raw()
        raw_session(c)
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
               "DATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        c.send(b"Subject: bare\r\n\r\nline one\nline two\r\n.\r\n")
        lines = c.expect(550)
        self.assertTrue(lines[0].startswith("550 5.5.2"), lines)
        # The session goes on: a clean message is still accepted.
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
               "DATA\r\n")
        c.expect(250)
        c.expect(250)
        c.expect(354)
        good = b"Subject: clean\r\n\r\nline one\r\nline two\r\n"
        c.send(dot_stuff(good))
        qid = queued_id(c.expect(250)[0])
        c.send("QUIT\r\n")
        c.expect(221)
        stored = read_messages(self.srv)
        self.assertEqual(list(stored), [qid])
        self.assertEqual(stored[qid][1], good)


class TestConcurrency(SmtpdTest):
    THREADS = 50
    PER_THREAD = 20

    def test_many_concurrent_clients(self):
        barrier = threading.Barrier(self.THREADS)
        expected = {}
        errors = []
        lock = threading.Lock()

        def client(t):
            rnd = random.Random(t)
            s = None
            try:
                barrier.wait(30)
                for i in range(self.PER_THREAD):
                    noise = base64.encodebytes(
                        rnd.randbytes(rnd.randrange(10, 30000)))
                    noise = noise.replace(b"\n", b"\r\n").replace(
                        b"\r\nA", b"\r\n.A")  # some leading dots
                    msg = (b"Subject: thread %d message %d\r\n\r\n" % (t, i)
                           + noise)
                    if s is None:
                        s = smtp(self.srv)
                    refused = s.sendmail("t%d@example.org" % t,
                                         ["r%d-%d@example.test" % (t, i)],
                                         msg)
                    assert refused == {}, refused
                    with lock:
                        expected[(t, i)] = msg
                    if t % 2:  # odd threads: one connection per message
                        s.quit()
                        s = None
                if s is not None:
                    s.quit()
            except Exception as e:  # reported below
                with lock:
                    errors.append("thread %d: %r" % (t, e))

        threads = [threading.Thread(target=client, args=(t,))
                   for t in range(self.THREADS)]
        start = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(240)
        self.assertFalse(any(th.is_alive() for th in threads),
                         "clients still running after 240 s")
        self.assertEqual(errors, [])
        total = self.THREADS * self.PER_THREAD
        self.assertEqual(len(expected), total)
        print("\n  %d messages from %d clients in %.2f s"
              % (total, self.THREADS, time.monotonic() - start),
              file=sys.stderr)
        stored = read_messages(self.srv)
        self.assertEqual(len(stored), total)
        got = sorted(body for _, body in stored.values())
        self.assertEqual(got, sorted(expected.values()))
        for hdr, body in stored.values():
            m = re.match(rb"Subject: thread (\d+) message (\d+)\r\n", body)
            self.assertIn(b"for <r%s-%s@example.test>" % m.groups(), hdr)


class TestMaxConns(SmtpdTest):
    server_args = ("--max-conns", "3")

    def test_connection_cap(self):
        held = [self.raw() for _ in range(3)]
        for c in held:
            c.expect(220)
        extra = self.raw()
        lines = extra.expect(421)
        self.assertIn("too many connections", lines[0])
        self.assertEqual(extra.read_until_closed(), b"")
        # A slot frees up when a client leaves.
        held[0].send("QUIT\r\n")
        held[0].expect(221)
        held[0].read_until_closed()
        deadline = time.monotonic() + 10
        while True:
            c = self.raw()
            code, lines = c.read_reply()
            if code == 220 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(code, 220, lines)


class TestDiskFull(SmtpdTest):
    def setUp(self):
        # A file size limit makes writes fail with EFBIG, as a full disk
        # fails them with ENOSPC.
        self.srv = Server(quiet=True, rlimit_fsize=64 * 1024)
        self.srv.__enter__()
        self.addCleanup(self.srv.cleanup)

    def test_write_failure_is_452_and_leaves_nothing(self):
        s = smtp(self.srv)
        self.addCleanup(s.close)
        big = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 3000
        s.ehlo()
        s.mail("a@example.org")
        s.rcpt("b@example.test")
        code, resp = s.data(big)
        self.assertEqual(code, 452, resp)
        self.assertTrue(resp.startswith(b"4.3.1"), resp)
        self.assertEqual(self.srv.entries(), [])
        small = b"Subject: small\r\n\r\nfits\r\n"
        self.assertEqual(s.sendmail("a@example.org", ["b@example.test"],
                                    small), {})
        s.quit()
        stored = read_messages(self.srv)
        self.assertEqual([b for _, b in stored.values()], [small])


class TestShutdown(SmtpdTest):
    quiet = False

    def test_sigterm_during_data(self):
        busy = self.raw()
        raw_session(busy)
        busy.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\n"
                  "DATA\r\n")
        busy.expect(250)
        busy.expect(250)
        busy.expect(354)
        busy.send(b"Subject: unfinished\r\n\r\npartial body\r\n")
        idle = self.raw()
        idle.expect(220)
        time.sleep(0.2)  # let the partial body arrive (not required)
        files_before = self.srv.entries()
        self.assertEqual(len(files_before), 1)           # the temp file
        self.assertTrue(files_before[0].startswith("tmp-"))
        self.srv.proc.send_signal(15)
        for c in (busy, idle):
            lines = c.expect(421)
            self.assertTrue(lines[0].startswith("421 4.3.2"), lines)
            self.assertEqual(c.read_until_closed(), b"")
        self.assertEqual(self.srv.proc.wait(10), 0)
        self.assertEqual(self.srv.entries(), [])
        self.assertIn("stopping", self.srv.log())
        self.srv.proc = None


class TestTimeout(SmtpdTest):
    server_args = ("--timeout", "700")

    def test_idle_and_stalled_clients_time_out(self):
        idle = self.raw()
        idle.expect(220)
        stalled = self.raw()
        raw_session(stalled)
        stalled.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>"
                     "\r\nDATA\r\n")
        stalled.expect(250)
        stalled.expect(250)
        stalled.expect(354)
        stalled.send(b"Subject: never finished\r\n\r\nsome body\r\n")
        # An active client keeps its session alive past the timeout.
        busy = self.raw()
        raw_session(busy)
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            busy.send("NOOP\r\n")
            busy.expect(250)
            time.sleep(0.2)
        for c in (idle, stalled):
            lines = c.expect(421)
            self.assertTrue(lines[0].startswith("421 4.4.2"), lines)
            self.assertEqual(c.read_until_closed(), b"")
        busy.send("QUIT\r\n")
        busy.expect(221)
        self.assertEqual(self.srv.entries(), [])

class TestIPv6(SmtpdTest):
    def setUp(self):
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback on this machine")
        self.srv = Server(listen="[::1]:0", quiet=True)
        self.srv.__enter__()
        self.addCleanup(self.srv.cleanup)

    def test_ipv6_loopback(self):
        self.assertEqual(self.srv.host, "::1")
        s = smtp(self.srv, host="::1")
        self.addCleanup(s.close)
        msg = b"Subject: v6\r\n\r\nover IPv6\r\n"
        self.assertEqual(s.sendmail("a@example.org", ["b@example.test"], msg),
                         {})
        s.quit()
        stored = read_messages(self.srv)
        self.assertEqual(len(stored), 1)
        hdr, body = list(stored.values())[0]
        self.assertEqual(body, msg)
        self.assertIn(b"::1", hdr)


if __name__ == "__main__":
    mxgwtest.overall_timeout(420)
    unittest.main(verbosity=2)
