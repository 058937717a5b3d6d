# SPDX-License-Identifier: MIT
"""test_lmtp_dovecot.py: the LMTP client against a real Dovecot LMTP server
(dovecot-lmtpd), started by lmtp_fixture on 127.0.0.1:FREEPORT and a Unix
socket, delivering into Maildirs. Each test checks what a mail operator
would: the file in the Maildir is what we sent (after Dovecot's own
Return-Path, Delivered-To and Received), per-recipient results, and what
Dovecot recorded about the connection. Dovecot stores Maildir files with
LF line ends, so "byte-exact" means: what we sent with CRLF turned into LF.
"""
import os
import resource
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lmtp_fixture as F  # noqa: E402

D = F.DOMAIN


def msg(subject, body, extra=b""):
    return (b"From: Sender <sender@origin.example>\r\nTo: alice@example.test\r\n"
            b"Subject: " + subject + b"\r\nMessage-ID: <" + str(time.time_ns()).encode()
            + b"@origin.example>\r\n" + extra + b"\r\n" + body)


class DovecotTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not F.DELIVER:
            raise unittest.SkipTest("LMTP_DELIVER not set")
        cls.dc = F.Dovecot(ssl=True).start()
        cls.tmp = tempfile.mkdtemp(prefix="mxgw-lmtp-msg.")

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()
        subprocess.run(["rm", "-rf", cls.tmp])

    def write(self, name, data):
        p = os.path.join(self.tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def deliver(self, path, rcpts, *extra, target=None):
        args = ["--target", target or f"127.0.0.1:{self.dc.port}",
                "--from", "sender@origin.example", "--file", path]
        for r in rcpts:
            args += ["--rcpt", r]
        rc, res, conns, err = F.run_deliver(*args, *extra)
        self.assertEqual(rc, 0, err)
        return res, conns

    def stored_after(self, user, before):
        files = self.dc.wait_files(user, before + 1)
        self.assertEqual(len(files), before + 1, f"no new mail for {user}")
        newest = max(files, key=os.path.getmtime) if before else files[-1]
        new = [f for f in files if f not in self._before.get(user, [])]
        with open(new[-1] if new else newest, "rb") as f:
            return f.read()

    def snapshot(self, *users):
        self._before = {u: self.dc.maildir_files(u) for u in users}
        return {u: len(self._before[u]) for u in users}

    def assert_exact(self, stored, sent, rcpt):
        added, rest = F.split_added_headers(stored)
        # Maildir stores lines with LF (Dovecot converts CRLF on save)
        self.assertEqual(rest, sent.replace(b"\r\n", b"\n"))
        names = [a.split(b":")[0] for a in added]
        self.assertIn(b"Return-Path", names)
        self.assertIn(b"Received", names)
        if rcpt:  # Dovecot adds Delivered-To for a single recipient only
            self.assertIn(b"Delivered-To: " + rcpt.encode() + b"\n", b"".join(added))
        return added

    def test_byte_exact_tcp_and_dots(self):
        body = (b"first line\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
                b"a line with only a dot above\r\n. space\r\nend")
        sent = msg(b"dots", body)
        p = self.write("dots.eml", sent)
        n = self.snapshot("alice")
        res, conns = self.deliver(p, [f"alice@{D}"])
        self.assertEqual(len(res), 1)
        self.assertEqual(res[0]["code"], 250, res)
        self.assertEqual(res[0]["enh"], "2.0.0")
        self.assertEqual(res[0]["stage"], 5)
        self.assertEqual(res[0]["local"], 0)
        stored = self.stored_after("alice", n["alice"])
        # the last line had no CRLF: the client added one
        self.assert_exact(stored, sent + b"\r\n", f"alice@{D}")

    def test_unix_socket(self):
        sent = msg(b"unix", b"over a unix socket\r\n")
        p = self.write("unix.eml", sent)
        n = self.snapshot("bob")
        res, _ = self.deliver(p, [f"bob@{D}"], target=f"unix:{self.dc.socket}")
        self.assertEqual(res[0]["code"], 250, res)
        self.assert_exact(self.stored_after("bob", n["bob"]), sent, f"bob@{D}")

    def test_mixed_recipients(self):
        sent = msg(b"mixed", b"for some of you\r\n")
        p = self.write("mixed.eml", sent)
        n = self.snapshot("alice", "carol")
        rcpts = [f"alice@{D}", f"nobody@{D}", f"carol@{D}", f"ghost@{D}"]
        res, _ = self.deliver(p, rcpts)
        by = {r["rcpt"]: r for r in res}
        self.assertEqual(by[f"alice@{D}"]["code"], 250)
        self.assertEqual(by[f"alice@{D}"]["stage"], 5)
        self.assertEqual(by[f"carol@{D}"]["code"], 250)
        for bad in (f"nobody@{D}", f"ghost@{D}"):
            self.assertEqual(by[bad]["code"], 550, by[bad])
            self.assertEqual(by[bad]["enh"], "5.1.1")
            self.assertEqual(by[bad]["stage"], 3)  # refused at RCPT
            self.assertEqual(by[bad]["local"], 0)
        self.assert_exact(self.stored_after("alice", n["alice"]), sent, None)
        self.assert_exact(self.stored_after("carol", n["carol"]), sent, None)

    def test_8bitmime_and_utf8_headers(self):
        sent = msg("8bit ünïcödé".encode(), "Grüße aus Köln — 日本語\r\n".encode(),
                   b"Content-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Transfer-Encoding: 8bit\r\n")
        p = self.write("8bit.eml", sent)
        n = self.snapshot("alice")
        res, _ = self.deliver(p, [f"alice@{D}"], "--8bit")
        self.assertEqual(res[0]["code"], 250, res)
        self.assert_exact(self.stored_after("alice", n["alice"]), sent, f"alice@{D}")

    def test_smtputf8_not_offered_by_dovecot(self):
        # Dovecot 2.3 LMTP does not offer SMTPUTF8: a message that needs it
        # must not be sent (RFC 6531 3.7.1): a local permanent failure.
        p = self.write("utf8.eml", msg(b"utf8", "ü\r\n".encode()))
        n = self.snapshot("alice")
        res, conns = self.deliver(p, [f"alice@{D}"], "--smtputf8")
        self.assertEqual(res[0]["code"], 553)
        self.assertEqual(res[0]["enh"], "5.6.7")
        self.assertEqual(res[0]["local"], 1)
        time.sleep(0.3)
        self.assertEqual(len(self.dc.maildir_files("alice")), n["alice"])

    def test_bare_lf_normalized(self):
        raw = (b"From: a@origin.example\nTo: bob@example.test\nSubject: lf\n\n"
               b"line one\nline two\r\nbare cr\rlast")
        p = self.write("lf.eml", raw)
        n = self.snapshot("bob")
        res, _ = self.deliver(p, [f"bob@{D}"])
        self.assertEqual(res[0]["code"], 250, res)
        want = (b"From: a@origin.example\r\nTo: bob@example.test\r\nSubject: lf\r\n"
                b"\r\nline one\r\nline two\r\nbare cr\r\nlast\r\n")
        self.assert_exact(self.stored_after("bob", n["bob"]), want, f"bob@{D}")

    def test_chunking_bdat(self):
        body = b"".join(b"line %05d .dot\r\n.%05d\r\n" % (i, i) for i in range(3000))
        sent = msg(b"bdat", body)
        p = self.write("bdat.eml", sent)
        n = self.snapshot("carol")
        res, conns = self.deliver(p, [f"carol@{D}", f"nobody@{D}"], "--chunking",
                                  "--chunk-size", "4096")
        self.assertEqual(res[0]["code"], 250, res)
        self.assertEqual(res[1]["code"], 550, res)
        self.assert_exact(self.stored_after("carol", n["carol"]), sent, None)

    def test_xclient_original_client(self):
        sent = msg(b"xclient", b"who sent me\r\n")
        p = self.write("xc.eml", sent)
        n = self.snapshot("alice")
        res, conns = self.deliver(p, [f"alice@{D}"], "--xclient-addr", "192.0.2.77",
                                  "--xclient-helo", "mx.origin.example")
        self.assertEqual(res[0]["code"], 250, res)
        self.assertIn("ADDR", conns[0]["xclient"])
        added = self.assert_exact(self.stored_after("alice", n["alice"]), sent,
                                  f"alice@{D}")
        rec = b"".join(a for a in added if a.startswith(b"Received:"))
        # Dovecot's Received header names the client it believes it talks to
        self.assertIn(b"from mx.origin.example", rec)
        self.assertIn(b"192.0.2.77", rec)
        self.assertNotIn(b"127.0.0.1", rec)

    def test_without_xclient_dovecot_sees_loopback(self):
        # the control for the test above: without XCLIENT, Dovecot sees us
        sent = msg(b"plain", b"no xclient\r\n")
        p = self.write("noxc.eml", sent)
        n = self.snapshot("alice")
        res, _ = self.deliver(p, [f"alice@{D}"])
        added = self.assert_exact(self.stored_after("alice", n["alice"]), sent,
                                  f"alice@{D}")
        rec = b"".join(a for a in added if a.startswith(b"Received:"))
        self.assertIn(b"from gw.example.test", rec)
        self.assertIn(b"127.0.0.1", rec)

    def test_starttls_verified(self):
        sent = msg(b"tls", b"over TLS\r\n")
        p = self.write("tls.eml", sent)
        n = self.snapshot("bob")
        res, conns = self.deliver(p, [f"bob@{D}"], "--starttls", "2", "--ca", self.dc.ca,
                                  "--servername", "store.example.test")
        self.assertEqual(res[0]["code"], 250, res)
        self.assertEqual(conns[0]["tls"], "1")
        added = self.assert_exact(self.stored_after("bob", n["bob"]), sent,
                                  f"bob@{D}")
        rec = b"".join(a for a in added if a.startswith(b"Received:"))
        # Dovecot saw the TLS session: it says so in its Received header
        self.assertIn(b"with LMTPS", rec)
        self.assertIn(b"(using TLSv1.", rec)

    def test_starttls_wrong_name_fails_temporarily(self):
        p = self.write("tlsbad.eml", msg(b"tls-bad", b"x\r\n"))
        n = self.snapshot("bob")
        res, conns = self.deliver(p, [f"bob@{D}"], "--starttls", "2", "--ca", self.dc.ca,
                                  "--servername", "other.example.test")
        self.assertEqual(res[0]["code"], 451, res)
        self.assertEqual(res[0]["enh"], "4.7.5")
        self.assertEqual(res[0]["local"], 1)
        time.sleep(0.3)
        self.assertEqual(len(self.dc.maildir_files("bob")), n["bob"])

    def test_connection_reuse(self):
        sent = msg(b"reuse", b"twice on one connection\r\n")
        p = self.write("reuse.eml", sent)
        n = self.snapshot("carol")
        before = self.dc.read_log().count("Connect from")
        res, conns = self.deliver(p, [f"carol@{D}"], "--repeat", "2")
        self.assertEqual([r["code"] for r in res], [250, 250], res)
        self.assertEqual(conns[1]["messages"], "2")  # same client, 2 messages
        files = self.dc.wait_files("carol", n["carol"] + 2)
        self.assertEqual(len(files), n["carol"] + 2)
        log = self.dc.read_log()
        self.assertEqual(log.count("Connect from") - before, 1, "not reused")

    def test_max_messages_reconnects(self):
        p = self.write("max.eml", msg(b"max", b"limit 1\r\n"))
        before = self.dc.read_log().count("Connect from")
        res, conns = self.deliver(p, [f"carol@{D}"], "--repeat", "2",
                                  "--max-messages", "1")
        self.assertEqual([r["code"] for r in res], [250, 250], res)
        time.sleep(0.2)
        log = self.dc.read_log()
        self.assertEqual(log.count("Connect from") - before, 2)

    def test_50mb_streamed(self):
        path = os.path.join(self.tmp, "big.eml")
        line = b"0123456789abcdefghijklmnopqrstuvwxyz.ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
        with open(path, "wb") as f:
            f.write(b"From: big@origin.example\nSubject: 50 MB\n\n")
            chunk = (b"." + line) * 1000
            while f.tell() < 50 * 1024 * 1024:
                f.write(chunk)
        size = os.path.getsize(path)
        n = self.snapshot("alice")
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", F.DELIVER, "--target",
                            f"127.0.0.1:{self.dc.port}", "--from", "s@origin.example",
                            "--rcpt", f"alice@{D}", "--file", path],
                           capture_output=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"code=250", p.stdout)
        max_rss_kb = int(p.stderr.decode().strip().splitlines()[-1])
        # streamed: far below the message size
        self.assertLess(max_rss_kb, 20 * 1024, f"max RSS {max_rss_kb} kB")
        files = self.dc.wait_files("alice", n["alice"] + 1, 30)
        new = [f for f in files if f not in self._before["alice"]]
        with open(new[0], "rb") as f:
            stored = f.read()
        _, rest = F.split_added_headers(stored)
        with open(path, "rb") as f:
            want = f.read()  # LF in the file, LF in the Maildir
        self.assertEqual(len(rest), len(want))
        self.assertTrue(rest == want)
        print(f"50 MB: {size} octets in {time.time() - t0:.1f}s, "
              f"max RSS {max_rss_kb} kB", file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
