# SPDX-License-Identifier: MIT
"""test_server_proxy_bdat.py: CHUNKING (RFC 3030 BDAT) from the client
through the server layer in proxy (before-queue) mode
(MXGW_SRV_OPT_PROXY_MODE, --srv 1050=1 of server_driver). smtplib has no
BDAT, so a raw-socket client speaks it; the backend is the private Dovecot
LMTP of tests/lmtp/lmtp_fixture.py (via test_server.py's fixtures), or a
small LMTP peer written here where a precise failure is needed (the
backend going away in the middle of a chunked message).

What is checked: EHLO offers CHUNKING in proxy mode; a message sent in
chunks of awkward sizes (1 octet, odd, 64 KiB + 1, a chunk boundary inside
a CRLF, lines starting with "." and a line that is only ".") reaches the
Maildir byte for byte (BDAT content is not dot-stuffed by the client: the
proxy must stuff it towards LMTP DATA), the final 250 only after the store
has it, the backend's 550 at RCPT passed through; pipelined chunks; BDAT
without a valid recipient; RSET between and inside BDAT transactions; the
backend lost mid-BDAT gives 451 4.4.2 (never 250) and the session goes on.
Run: SERVER_DRIVER=build/.../server_driver /usr/bin/python3
     test_server_proxy_bdat.py
"""
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_server as TS  # noqa: E402  (Driver, fixtures, helpers)
from test_server_proxy import PROXY, spool_files  # noqa: E402


def setUpModule():
    TS.setUpModule()


def tearDownModule():
    TS.tearDownModule()


def D():
    return TS.D


class Client:
    """A raw SMTP client: BDAT needs one (smtplib has none)."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self):
        """One complete reply (all lines, CRLF included); b"" on EOF."""
        while True:
            m = re.search(rb"(?:^|\r\n)\d{3} [^\r\n]*\r\n", self.buf)
            if m:
                r, self.buf = self.buf[:m.end()], self.buf[m.end():]
                return r
            chunk = self.sock.recv(65536)
            if not chunk:
                r, self.buf = self.buf, b""
                return r
            self.buf += chunk

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def bdat(self, chunk, last=False):
        self.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"")
                  + chunk)
        return self.reply()

    def ehlo(self, name="client.test"):
        return self.cmd("EHLO " + name)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def message(subject, body):
    return TS.message(subject, body)


def tricky_body():
    """A body with lines starting with '.', a line that is only '.', one
    that is '..', 8-bit text, and enough ordinary lines for a 64 KiB+1
    chunk."""
    lines = [b"First line",
             b".leading dot",
             b".",
             b"..",
             b"...three",
             b"\xc3\xa9t\xc3\xa9 8bit",
             b""]
    for i in range(900):
        lines.append(b"%04d " % i + b"x" * 70)
        if i % 97 == 0:
            lines.append(b". a dotted line %d" % i)
    lines.append(b".")
    lines.append(b"last line")
    return b"\r\n".join(lines) + b"\r\n"


def split_chunks(msg):
    """Cut msg into chunks: 1 octet, 7 octets (odd), 65537 octets, one
    that ends between a CR and its LF, one that starts with a '.' at the
    beginning of a line, then the rest. Returns the list of chunks."""
    chunks = [msg[:1], msg[1:8]]
    pos = 8
    chunks.append(msg[pos:pos + 65537])
    pos += 65537
    cr = msg.index(b"\r\n", pos + 10)  # the next chunk ends after this CR
    chunks.append(msg[pos:cr + 1])
    pos = cr + 1
    dot = msg.index(b"\n.", pos + 5) + 1  # the next chunk starts with "."
    chunks.append(msg[pos:dot])
    pos = dot
    chunks.append(msg[pos:])
    assert b"".join(chunks) == msg
    assert chunks[3].endswith(b"\r") and chunks[4].startswith(b"\n")
    assert chunks[5].startswith(b".")
    return chunks


def stored_files(user, subject):
    out = []
    for p in TS.DOVECOT.maildir_files(user):
        with open(p, "rb") as f:
            if (b"Subject: " + subject.encode() + b"\n") in f.read():
                out.append(p)
    return out


def dot_stuff(msg):
    """SMTP/LMTP DATA transparency of a CRLF message (RFC 5321 4.5.2)."""
    return b"\r\n".join(b"." + l if l.startswith(b".") else l
                        for l in msg.split(b"\r\n"))


class FakeLmtp:
    """An LMTP peer written in Python for failures at a precise point.
    Connection number 1 (the first) misbehaves according to `mode`:
      "drop-body":  after DATA's 354, reads the body until `marker` has
                    arrived, then closes (a store crashing mid-message);
      "drop-final": reads the whole body, then closes instead of answering
                    the final dot;
      "ok":         none misbehaves.
    Later connections are a well-behaved LMTP server that takes every
    recipient; the raw DATA octets they received are in self.bodies."""

    def __init__(self, mode, marker=b""):
        self.mode = mode
        self.marker = marker
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.dropped = threading.Event()
        self.nconn = 0
        self.bodies = []
        self.cmds = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.nconn += 1
                n = self.nconn
            threading.Thread(target=self._one, args=(c, n),
                             daemon=True).start()

    def _one(self, c, n):
        f = c.makefile("rb")
        bad = n == 1 and self.mode != "ok"
        try:
            c.sendall(b"220 fake.test LMTP\r\n")
            nrcpt = 0
            for line in f:
                with self.lock:
                    self.cmds.append((n, line))
                cmd = line[:4].upper()
                if cmd == b"LHLO":
                    c.sendall(b"250-fake.test\r\n250-PIPELINING\r\n"
                              b"250 8BITMIME\r\n")
                elif cmd == b"MAIL":
                    nrcpt = 0
                    c.sendall(b"250 2.1.0 ok\r\n")
                elif cmd == b"RCPT":
                    nrcpt += 1
                    c.sendall(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    body = b""
                    if bad and self.mode == "drop-body":
                        while self.marker not in body:
                            b = f.read1(65536)
                            if not b:
                                break
                            body += b
                        self.dropped.set()
                        break
                    while not body.endswith(b"\r\n.\r\n"):
                        b = f.readline()
                        if not b:
                            raise OSError("eof in data")
                        body += b
                    if bad:
                        self.dropped.set()
                        break
                    with self.lock:
                        self.bodies.append(body)
                    c.sendall(b"250 2.0.0 stored\r\n" * nrcpt)
                elif cmd == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    break
                else:
                    c.sendall(b"250 2.0.0 ok\r\n")
        except OSError:
            pass
        f.close()
        c.close()

    def close(self):
        self.sock.close()


class ProxyBdat(unittest.TestCase):
    def setUp(self):
        self.d = TS.Driver(*PROXY, "--domain", D())
        self.before = spool_files(self.d.spool)

    def tearDown(self):
        self.d.kill()

    def finish(self):
        self.assertEqual(spool_files(self.d.spool), self.before)
        self.assertEqual(self.d.stop(), 0)

    def test_ehlo_offers_chunking(self):
        c = Client(self.d.port)
        try:
            self.assertTrue(c.greeting.startswith(b"220"), c.greeting)
            r = c.ehlo()
            self.assertTrue(r.startswith(b"250-"), r)
            exts = [l[4:].split(b" ")[0].upper()
                    for l in r.split(b"\r\n") if l]
            self.assertIn(b"CHUNKING", exts, r)
            self.assertIn(b"PIPELINING", exts, r)
        finally:
            c.close()
        self.finish()

    def test_chunks_byte_exact_unknown_rcpt(self):
        """Six chunks of awkward sizes then BDAT 0 LAST to alice and an
        unknown user: 550 5.1.1 from Dovecot at RCPT, 250 after the last
        chunk only once the Maildir has the message, byte for byte."""
        subj = "pxb-chunks-1"
        msg = message(subj, tricky_body())
        chunks = split_chunks(msg)
        c = Client(self.d.port)
        try:
            c.ehlo()
            r = c.cmd("MAIL FROM:<s@client.test>")
            self.assertTrue(r.startswith(b"250"), r)
            r = c.cmd("RCPT TO:<alice@%s>" % D())
            self.assertTrue(r.startswith(b"250"), r)
            r = c.cmd("RCPT TO:<nobody@%s>" % D())
            self.assertTrue(r.startswith(b"550 5.1.1"), r)
            self.assertIn(b"User doesn't exist", r)
            for ch in chunks:
                r = c.bdat(ch)
                self.assertEqual(
                    r, b"250 2.0.0 Ok: %d octets received\r\n" % len(ch))
            r = c.bdat(b"", last=True)
            # the store has it as soon as 250 is read (no waiting)
            files = stored_files("alice", subj)
            self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered to 1 "
                                         b"recipient"), r)
            self.assertEqual(len(files), 1, files)
            ours, orig = TS.stored_rest(files[0])
            self.assertEqual(orig, msg.replace(b"\r\n", b"\n"))
            self.assertEqual(len(ours), 1, ours)
            self.assertTrue(ours[0].startswith(b"Received: from client.test"),
                            ours)
            self.assertEqual(c.cmd("QUIT")[:3], b"221")
        finally:
            c.close()
        self.d.wait_log(r"^NOQUEUE: proxy-accept: END-OF-MESSAGE from "
                        r"unknown\[127\.0\.0\.1\]: 250 2\.0\.0 Ok: delivered "
                        r"to 1 recipient; from=<s@client\.test> "
                        r"to=<alice@%s>" % D())
        self.d.wait_log(r"^NOQUEUE: proxy-reject: RCPT from unknown\[127\."
                        r"0\.0\.1\]: 550 5\.1\.1 <nobody@%s>" % D())
        self.assertEqual(self.d.stats()["messages"], 1)
        self.finish()

    def test_last_chunk_carries_data(self):
        """BDAT n LAST with octets (no BDAT 0), a chunk of 1 octet before
        it, a body ending without CRLF: the store gets the message with the
        line ended (RFC 3030 leaves that to the server: the proxy adds the
        CRLF before the final dot)."""
        subj = "pxb-last-1"
        msg = message(subj, b".x\r\n.\r\nno newline at the end")
        c = Client(self.d.port)
        try:
            c.ehlo()
            c.cmd("MAIL FROM:<s@client.test>")
            self.assertTrue(c.cmd("RCPT TO:<bob@%s>" % D())
                            .startswith(b"250"))
            self.assertTrue(c.bdat(msg[:1]).startswith(b"250 "))
            r = c.bdat(msg[1:], last=True)
            self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered"), r)
            files = stored_files("bob", subj)
            self.assertEqual(len(files), 1)
            _, orig = TS.stored_rest(files[0])
            self.assertEqual(orig, msg.replace(b"\r\n", b"\n") + b"\n")
        finally:
            c.close()
        self.finish()

    def test_pipelined_chunks(self):
        """MAIL, RCPT, three BDAT chunks and BDAT 0 LAST in one write,
        without waiting: the replies come in order, one each, the last
        250 after the store has the message."""
        subj = "pxb-pipe-1"
        msg = message(subj, tricky_body())
        chunks = split_chunks(msg)
        c = Client(self.d.port)
        try:
            c.ehlo()
            out = (b"MAIL FROM:<s@client.test>\r\n"
                   b"RCPT TO:<carol@%s>\r\n" % D().encode())
            for ch in chunks:
                out += b"BDAT %d\r\n" % len(ch) + ch
            out += b"BDAT 0 LAST\r\n"
            c.send(out)
            self.assertTrue(c.reply().startswith(b"250 2.1.0"))
            self.assertTrue(c.reply().startswith(b"250 2.1.5"))
            for ch in chunks:
                self.assertEqual(c.reply(), b"250 2.0.0 Ok: %d octets "
                                 b"received\r\n" % len(ch))
            r = c.reply()
            files = stored_files("carol", subj)
            self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered to 1 "
                                         b"recipient"), r)
            self.assertEqual(len(files), 1)
            _, orig = TS.stored_rest(files[0])
            self.assertEqual(orig, msg.replace(b"\r\n", b"\n"))
        finally:
            c.close()
        self.finish()

    def test_pipelined_large_all_lines_dotted(self):
        """6 MB in 1 MB chunks (odd size) plus BDAT 0 LAST in one write,
        every line starting with '.': the proxy's back-pressure (PAUSE)
        holds the client while the store catches up; byte-exact."""
        subj = "pxb-big-1"
        body = b"".join(b".%07d " % i + b"q" * 90 + b"\r\n"
                        for i in range(60000))
        msg = message(subj, body)
        c = Client(self.d.port, timeout=120)
        try:
            c.ehlo()
            out = (b"MAIL FROM:<s@client.test>\r\n"
                   b"RCPT TO:<alice@%s>\r\n" % D().encode())
            n = 0
            for i in range(0, len(msg), 1000003):
                ch = msg[i:i + 1000003]
                out += b"BDAT %d\r\n" % len(ch) + ch
                n += 1
            out += b"BDAT 0 LAST\r\n"
            c.send(out)
            replies = [c.reply() for _ in range(n + 3)]
            self.assertEqual([r[:4] for r in replies], [b"250 "] * (n + 3),
                             replies)
            self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: "
                                                   b"delivered"), replies)
            files = stored_files("alice", subj)
            self.assertEqual(len(files), 1)
            _, orig = TS.stored_rest(files[0])
            self.assertEqual(orig, msg.replace(b"\r\n", b"\n"))
        finally:
            c.close()
        self.finish()

    def test_bdat_without_valid_recipient(self):
        """The only RCPT refused by the backend (550 5.1.1): a pipelined
        BDAT 10 LAST gets 554 5.5.1 (docs/smtp-session.md, RFC 3030: the
        chunk is read and discarded), a following BDAT 503 (no
        transaction); then RSET and a good chunked transaction on the same
        connection."""
        c = Client(self.d.port)
        try:
            c.ehlo()
            c.send(b"MAIL FROM:<s@client.test>\r\n"
                   b"RCPT TO:<nobody@%s>\r\n"
                   b"BDAT 10\r\n0123456789"
                   b"BDAT 5 LAST\r\nabcde" % D().encode())
            self.assertTrue(c.reply().startswith(b"250"))
            r = c.reply()
            self.assertTrue(r.startswith(b"550 5.1.1"), r)
            r = c.reply()
            self.assertTrue(r.startswith(b"554 5.5.1"), r)
            r = c.reply()
            self.assertTrue(r[:3] in (b"554", b"503"), r)
            self.assertTrue(c.cmd("RSET").startswith(b"250"))
            subj = "pxb-after-norcpt"
            msg = message(subj, b".dot\r\nbody\r\n")
            c.cmd("MAIL FROM:<s@client.test>")
            self.assertTrue(c.cmd("RCPT TO:<alice@%s>" % D())
                            .startswith(b"250"))
            self.assertTrue(c.bdat(msg).startswith(b"250 "))
            r = c.bdat(b"", last=True)
            self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered"), r)
            _, orig = TS.stored_rest(stored_files("alice", subj)[0])
            self.assertEqual(orig, msg.replace(b"\r\n", b"\n"))
        finally:
            c.close()
        self.finish()

    def test_rset_between_and_inside_bdat_transactions(self):
        """One connection: a chunked message, RSET, a chunked message
        abandoned by RSET after its first chunk (the backend's DATA cannot
        be taken back: nothing of it may be stored), then a third chunked
        message. The first and third are stored, the second not."""
        c = Client(self.d.port)
        subjs = ["pxb-rset-1", "pxb-rset-2", "pxb-rset-3"]
        try:
            c.ehlo()
            for i, subj in enumerate(subjs):
                msg = message(subj, b"..dots\r\nmessage %d\r\n" % i)
                self.assertTrue(c.cmd("MAIL FROM:<s@client.test>")
                                .startswith(b"250"), i)
                self.assertTrue(c.cmd("RCPT TO:<bob@%s>" % D())
                                .startswith(b"250"), i)
                self.assertTrue(c.bdat(msg[:40]).startswith(b"250 "))
                if i == 1:
                    r = c.cmd("RSET")
                    self.assertTrue(r.startswith(b"250"), r)
                    continue
                r = c.bdat(msg[40:], last=True)
                self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered"),
                                (i, r))
                r = c.cmd("RSET")
                self.assertTrue(r.startswith(b"250"), r)
            self.assertEqual(c.cmd("QUIT")[:3], b"221")
        finally:
            c.close()
        self.assertEqual(len(stored_files("bob", subjs[0])), 1)
        self.assertEqual(len(stored_files("bob", subjs[2])), 1)
        time.sleep(0.5)
        self.assertEqual(stored_files("bob", subjs[1]), [])
        self.assertEqual(self.d.stats()["messages"], 2)
        self.finish()


class ProxyBdatBackendLost(unittest.TestCase):
    def run_lost(self, mode):
        b = FakeLmtp(mode, marker=b"END-OF-CHUNK-1")
        d = TS.Driver(*PROXY, backend="127.0.0.1:%d" % b.port)
        try:
            before = spool_files(d.spool)
            c = Client(d.port)
            c.ehlo()
            self.assertTrue(c.cmd("MAIL FROM:<s@client.test>")
                            .startswith(b"250"))
            self.assertTrue(c.cmd("RCPT TO:<alice@%s>" % D())
                            .startswith(b"250"))
            msg = message("pxb-lost-1", b"x" * 5000 + b"END-OF-CHUNK-1\r\n"
                          + (b"y" * 998 + b"\r\n") * 200)
            cut = msg.index(b"END-OF-CHUNK-1") + 16
            replies = [c.bdat(msg[:cut])]
            if mode == "drop-body":
                self.assertTrue(b.dropped.wait(10))
                time.sleep(0.2)  # let the proxy see the EOF
            replies.append(c.bdat(msg[cut:]))
            replies.append(c.bdat(b"", last=True))
            # intermediate chunks: the session's own receipt (not a
            # decision); the end of the message: 451 4.4.2, never 250
            self.assertTrue(replies[-1].startswith(b"451 4.4.2"), replies)
            self.assertTrue(b.dropped.is_set())
            self.assertFalse([r for r in replies if b"delivered" in r],
                             replies)
            d.wait_log(r"^NOQUEUE: proxy-reject: END-OF-MESSAGE from "
                       r"unknown\[127\.0\.0\.1\]: 451 4\.4\.2 ")
            self.assertFalse([l for l in d.logs() if "proxy-accept" in l])
            self.assertEqual(b.bodies, [])  # nothing stored
            # the session goes on: the next MAIL connects again and a
            # chunked message goes through, dot-stuffed on the wire
            msg2 = message("pxb-lost-2", b".a\r\n.\r\n..b\r\nend\r\n")
            r = c.cmd("MAIL FROM:<s@client.test>")
            self.assertTrue(r.startswith(b"250"), r)
            self.assertTrue(c.cmd("RCPT TO:<alice@%s>" % D())
                            .startswith(b"250"))
            self.assertTrue(c.bdat(msg2[:30]).startswith(b"250 "))
            r = c.bdat(msg2[30:], last=True)
            self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered"), r)
            self.assertEqual(len(b.bodies), 1)
            self.assertTrue(b.bodies[0].endswith(dot_stuff(msg2) + b".\r\n"),
                            b.bodies[0][-200:])
            self.assertEqual(c.cmd("QUIT")[:3], b"221")
            c.close()
            self.assertEqual(spool_files(d.spool), before)
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()
            b.close()

    def test_backend_drops_mid_bdat(self):
        self.run_lost("drop-body")

    def test_backend_drops_before_final_answer(self):
        self.run_lost("drop-final")


def children(pid, comm):
    """Pids of the direct children of pid whose name is comm."""
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % e) as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == pid and name == comm:
            out.append(int(e))
    return out


class ProxyBdatDovecotKilled(unittest.TestCase):
    def test_dovecot_killed_mid_bdat(self):
        """A private Dovecot of its own: after the first chunk its lmtp
        process (the one holding our transaction) is SIGKILLed and the
        master stopped. The last chunk gets 451 4.4.2, never 250, the
        Maildir has nothing, and the session goes on: the next MAIL finds
        no backend (451 4.4.1, docs/server.md)."""
        dv = TS.F.Dovecot(users=("alice",)).start()
        d = TS.Driver(*PROXY, backend="127.0.0.1:%d" % dv.port)
        try:
            c = Client(d.port)
            c.ehlo()
            self.assertTrue(c.cmd("MAIL FROM:<s@client.test>")
                            .startswith(b"250"))
            self.assertTrue(c.cmd("RCPT TO:<alice@%s>" % D())
                            .startswith(b"250"))
            msg = message("pxb-killed-1", (b".k" * 400 + b"\r\n") * 100)
            self.assertTrue(c.bdat(msg[:30001]).startswith(b"250 "))
            lmtp = children(dv.proc.pid, "lmtp")
            self.assertTrue(lmtp, "no lmtp process under dovecot")
            for pid in lmtp:
                os.kill(pid, signal.SIGKILL)
            dv.proc.send_signal(signal.SIGTERM)
            dv.proc.wait(10)
            r2 = c.bdat(msg[30001:])
            r = c.bdat(b"", last=True)
            self.assertTrue(r.startswith(b"451 4.4.2"), (r2, r))
            self.assertNotIn(b"127.0.0.1", r)  # backends not named
            self.assertEqual(dv.maildir_files("alice"), [])
            d.wait_log(r"^NOQUEUE: proxy-reject: END-OF-MESSAGE from "
                       r"unknown\[127\.0\.0\.1\]: 451 4\.4\.2 ")
            r = c.cmd("MAIL FROM:<s@client.test>")
            self.assertTrue(r.startswith(b"451 4.4.1"), r)
            self.assertEqual(c.cmd("QUIT")[:3], b"221")
            c.close()
            self.assertEqual(d.stats()["messages"], 0)
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()
            dv.stop()

class ProxyBdatBareNewlines(unittest.TestCase):
    def test_bare_cr_lf_in_chunks_not_sent_raw(self):
        """BDAT content is not checked line by line by the session, so bare
        CR and bare LF reach the proxy. Towards LMTP DATA they must not go
        out raw (RFC 5321 2.3.8: CR and LF only as CRLF; a bare-LF/CR
        "<LF>.<CR><LF>" is what SMTP smuggling uses): either the message is
        refused as docs/smtp-session.md says for the default
        MXGW_BARE_REJECT (550 5.5.2), or what the backend receives has
        CRLF line ends only (as the spooling path's LMTP client makes them,
        docs/lmtp.md). One message in, at most one message out."""
        b = FakeLmtp("ok")
        d = TS.Driver(*PROXY, backend="127.0.0.1:%d" % b.port)
        try:
            c = Client(d.port)
            c.ehlo()
            self.assertTrue(c.cmd("MAIL FROM:<s@client.test>")
                            .startswith(b"250"))
            self.assertTrue(c.cmd("RCPT TO:<alice@%s>" % D())
                            .startswith(b"250"))
            msg = message("pxb-bare-1", b"bare LF\nbare CR\rx\r\n"
                          b"smuggle\r.\r\nMAIL FROM:<x@evil.test>\r\n"
                          b"end\n.\r\nRCPT TO:<y@evil.test>\r\n")
            self.assertTrue(c.bdat(msg[:50]).startswith(b"250 "))
            r = c.bdat(msg[50:], last=True)
            c.cmd("QUIT")
            c.close()
            with b.lock:
                cmds = [l for _, l in b.cmds]
                bodies = list(b.bodies)
            self.assertFalse([l for l in cmds if b"evil.test" in l], cmds)
            if r.startswith(b"550 5.5.2"):
                self.assertEqual(bodies, [])
            else:
                self.assertTrue(r.startswith(b"250 2.0.0 Ok: delivered"), r)
                self.assertEqual(len(bodies), 1)
                wire = bodies[0]
                self.assertIsNone(re.search(rb"\r(?!\n)|(?<!\r)\n", wire),
                                  "bare CR/LF sent to the backend: %r"
                                  % wire[-160:])
            self.assertEqual(d.stop(), 0)
        finally:
            d.kill()
            b.close()


if __name__ == "__main__":
    unittest.main()
