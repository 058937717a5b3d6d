# SPDX-License-Identifier: MIT
"""test_deliver_ipv6_tls.py: the delivery scheduler (mxgw_deliver) to an IPv6
backend and with STARTTLS, end to end through deliver_tls_tool (queue,
mxgw_deliver_run_once, log hook), against private Dovecot LMTP instances
(tests/lmtp/lmtp_fixture.py) and the fake backend of test_lmtp_faults.py.

IPv6: Dovecot listening on [::1] only, the scheduler given "[::1]:PORT":
the mail in the Maildir byte for byte, the log line's relay= written as
Postfix writes an IPv6 peer ("::1[::1]:PORT": host[address]:port, no DNS
so the host is the address), the queue empty. Skipped when ::1 cannot be
bound (no IPv6 on the machine).

STARTTLS (MXGW_DELIVER_OPT_STARTTLS, mxgw_deliver_set_tls with a client
context; the test CA and certificates are made with openssl at test time):
  (a) verified against the right CA and name: delivered, and Dovecot's
      Received header says "with LMTPS" with the TLS version and cipher;
  (b) wrong CA, wrong host name, wrong IP address: every recipient
      deferred with 4.7.5 and the verification error in the log line,
      nothing in the Maildir, the message still queued (deferred);
  (c) STARTTLS required (2) but the backend does not offer it: deferred
      with 4.7.5, and the backend never saw MAIL, RCPT or the body (a
      recording fake backend, and a real Dovecot without ssl);
      when offered only (1), the same backends get the mail in clear.
"""
import os
import shutil
import tempfile
import unittest

from deliver_common import (D, F, LINE, QCLI, SpoolCase, queue_json, read,
                            run_tool)

TOOL = os.environ.get("DELIVER_TLS_TOOL", "")


def tool(spool, *args, timeout=120):
    return run_tool(TOOL, spool, *args, timeout=timeout)


class Base(SpoolCase):
    PREFIX = "mxgw-deliver-v6tls."

    def setUp(self):
        if not TOOL or not QCLI:
            self.skipTest("DELIVER_TLS_TOOL / MXGW_QUEUE_CLI not set")
        super().setUp()

    def message(self, tag):
        """A body with CRLF lines, a leading dot and a long line."""
        body = (b"From: s@remote.example\r\nTo: alice@" + D.encode() +
                b"\r\nSubject: " + tag.encode() + b"\r\n"
                b"Message-ID: <" + tag.encode() + b"@remote.example>\r\n\r\n" +
                b"".join(b"line %d of %s\r\n" % (i, tag.encode())
                         for i in range(30)) +
                b".leading dot\r\n" + b"x" * 900 + b"\r\n")
        path = os.path.join(self.tmp, tag + ".eml")
        with open(path, "wb") as f:
            f.write(body)
        return path, body

    def enqueue(self, tag, rcpts=("alice", "bob")):
        path, body = self.message(tag)
        args = ["enqueue", "--from", "s@remote.example", "--file", path]
        for r in rcpts:
            args += ["--rcpt", f"{r}@{D}"]
        rc, _, _, _, out = tool(self.spool, *args)
        self.assertEqual(rc, 0, out)
        [mid] = [l[3:] for l in out.splitlines() if l.startswith("id=")]
        return mid, body

    def run_once(self, backend, *args):
        rc, logs, events, stats, out = tool(
            self.spool, "run", "--backend", backend, "--timeout-ms", 20000,
            *args)
        self.assertEqual(rc, 0, out)
        # one line per recipient (plus "ID: removed", "ID: deferred until")
        lines = [LINE.match(l) for l in logs if ": to=<" in l]
        self.assertTrue(all(lines), f"unparsed log line in {logs}")
        return lines, events, stats, out

    def stored(self, dove, user, tag):
        """The message files of user holding tag, CRLF restored."""
        out = []
        for fn in dove.maildir_files(user):
            data = read(fn).replace(b"\n", b"\r\n")
            if tag.encode() in data:
                out.append(data)
        return out

    def assert_deferred_no_delivery(self, lines, mid, dove, tag, relay,
                                    why_re, nrcpt=2):
        """Every recipient deferred with the reason; nothing in any
        Maildir; the message deferred in the queue with that text. Then
        what the log line and the queue should say: 451 4.7.5 (the LMTP
        client's code for every STARTTLS failure, docs/lmtp.md) and
        relay= the backend that was connected to (Postfix: "relay=host[addr]
        :port, ... dsn=4.7.5, status=deferred (...)" for a TLS failure)."""
        self.assertEqual(len(lines), nrcpt, [m.group(0) for m in lines])
        for m in lines:
            self.assertEqual(m["id"], mid)
            self.assertEqual(m["status"], "deferred", m.group(0))
            self.assertRegex(m["reason"], why_re)
        if dove is not None:
            for u in ("alice", "bob"):
                self.assertEqual(self.stored(dove, u, tag), [],
                                 f"{u} got the message although TLS failed")
        [e] = queue_json(self.spool)
        self.assertEqual((e["id"], e["state"]), (mid, "deferred"))
        for r in e["recipients"]:
            self.assertEqual((r["state"], r["code"]), ("deferred", 451))
            self.assertRegex(r["text"], why_re)
        for m in lines:
            self.assertEqual(m["dsn"], "4.7.5", m.group(0))
            self.assertEqual(m["relay"], relay, m.group(0))
        for r in e["recipients"]:
            self.assertEqual(r["enhanced"], "4.7.5", r)


@unittest.skipUnless(F.have_ipv6_loopback(), "no IPv6 loopback (::1) here")
class IPv6Backend(Base):
    @classmethod
    def setUpClass(cls):
        cls.dove = F.Dovecot(users=("alice", "bob"), listen="::1").start()

    @classmethod
    def tearDownClass(cls):
        cls.dove.stop()

    def test_ipv6_delivery_byte_exact(self):
        mid, body = self.enqueue("v6-exact")
        target = f"[::1]:{self.dove.port}"
        lines, events, stats, out = self.run_once(target)
        self.assertEqual(stats["sent"], "2", out)
        self.assertEqual(len(lines), 2, out)
        for m in lines:
            self.assertEqual(m["status"], "sent", m.group(0))
            self.assertEqual(m["dsn"], "2.0.0", m.group(0))
            # Postfix: relay=host[address]:port; the host is the address
            # since there is no DNS, so an IPv6 one reads ::1[::1]:PORT
            self.assertEqual(m["relay"], f"::1[::1]:{self.dove.port}")
        deliveries = [ev for ev in events if ev.get("event") == "delivery"]
        self.assertEqual(len(deliveries), 2, events)
        for ev in deliveries:
            self.assertEqual(ev["relay"], f"::1[::1]:{self.dove.port}")
        # byte for byte after the headers Dovecot adds, for both users
        for u in ("alice", "bob"):
            files = self.dove.wait_files(u, 1)
            got = [f for f in files if b"v6-exact" in read(f)]
            self.assertEqual(len(got), 1, files)
            added, rest = F.split_added_headers(
                read(got[0]).replace(b"\n", b"\r\n"))
            self.assertEqual(rest, body)
            received = b"".join(a for a in added if a.startswith(b"Received:"))
            # Dovecot saw an IPv6 peer (its Received names ::1)
            self.assertIn(b"::1", received, received)
        self.assertEqual(queue_json(self.spool), [])

    def test_ipv4_target_refused_on_v6_only_backend(self):
        """Control: the same port on 127.0.0.1 is refused (Dovecot really
        listens on ::1 only), so the delivery above went over IPv6."""
        mid, _ = self.enqueue("v6-control", rcpts=("alice",))
        lines, _, _, out = self.run_once(f"127.0.0.1:{self.dove.port}")
        [m] = lines
        self.assertEqual((m["status"], m["dsn"]), ("deferred", "4.4.1"),
                         out)
        self.assertIn("Connection refused", m["reason"])


class StartTLS(Base):
    @classmethod
    def setUpClass(cls):
        cls.dove = F.Dovecot(users=("alice", "bob"), ssl=True).start()
        cls.cadir = tempfile.mkdtemp(prefix="mxgw-deliver-otherca.")
        # another CA, with a certificate for the same name: not trusted
        cls.other_ca, _, _ = F.make_ca(cls.cadir)
        cls.target = f"127.0.0.1:{cls.dove.port}"
        cls.relay = f"127.0.0.1[127.0.0.1]:{cls.dove.port}"

    @classmethod
    def tearDownClass(cls):
        cls.dove.stop()
        shutil.rmtree(cls.cadir, ignore_errors=True)

    def test_a_verified_delivery(self):
        mid, body = self.enqueue("tls-ok")
        lines, events, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.dove.ca,
            "--servername", "store.example.test")
        self.assertEqual(stats["sent"], "2", out)
        for m in lines:
            self.assertEqual((m["status"], m["dsn"]), ("sent", "2.0.0"),
                             m.group(0))
            self.assertEqual(m["relay"], f"127.0.0.1[127.0.0.1]:"
                             f"{self.dove.port}")
        for u in ("alice", "bob"):
            self.dove.wait_files(u, 1)
            [data] = self.stored(self.dove, u, "tls-ok")
            added, rest = F.split_added_headers(data)
            self.assertEqual(rest, body)
            received = b"".join(a for a in added if a.startswith(b"Received:"))
            # Dovecot: "with LMTPS (TLS_AES_256_GCM_SHA384 (256/256 bits))"
            # or "(using TLSv1.3 with cipher ...)" depending on version
            self.assertIn(b"with LMTPS", received, received)
            self.assertRegex(received, rb"TLSv1\.[23]|TLS_|ECDHE")
        self.assertEqual(queue_json(self.spool), [])

    def test_a_verified_by_ip_address(self):
        """The name checked may be the address (IP SAN 127.0.0.1)."""
        mid, _ = self.enqueue("tls-ip", rcpts=("alice",))
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.dove.ca,
            "--servername", "127.0.0.1")
        [m] = lines
        self.assertEqual(m["status"], "sent", out)

    def test_b_wrong_ca(self):
        mid, _ = self.enqueue("tls-wrong-ca")
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.other_ca,
            "--servername", "store.example.test")
        self.assertEqual(stats["sent"], "0", out)
        self.assert_deferred_no_delivery(
            lines, mid, self.dove, "tls-wrong-ca", self.relay,
            r"TLS handshake with the backend failed: .*certificate verify "
            r"failed.*unable to get local issuer certificate")

    def test_b_wrong_hostname(self):
        mid, _ = self.enqueue("tls-wrong-name")
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.dove.ca,
            "--servername", "other.example.test")
        self.assertEqual(stats["sent"], "0", out)
        self.assert_deferred_no_delivery(
            lines, mid, self.dove, "tls-wrong-name", self.relay,
            r"TLS handshake with the backend failed: .*certificate verify "
            r"failed.*[Hh]ostname mismatch")

    def test_b_wrong_hostname_from_tls_context(self):
        """The name may come from the context (MXGW_TLS_HOSTNAME) when the
        scheduler sets none: it is checked too."""
        mid, _ = self.enqueue("tls-ctx-name", rcpts=("alice",))
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.dove.ca,
            "--tls-hostname", "other.example.test")
        self.assert_deferred_no_delivery(
            lines, mid, self.dove, "tls-ctx-name", self.relay,
            r"certificate verify failed.*[Hh]ostname mismatch", nrcpt=1)

    def test_b_wrong_ip_address(self):
        mid, _ = self.enqueue("tls-wrong-ip", rcpts=("alice",))
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.dove.ca,
            "--servername", "127.0.0.2")
        self.assert_deferred_no_delivery(
            lines, mid, self.dove, "tls-wrong-ip", self.relay,
            r"certificate verify failed.*IP address mismatch", nrcpt=1)

    def test_b_no_name_to_verify(self):
        """Verification on, the right CA, but no name at all (neither
        MXGW_DELIVER_OPT_TLS_SERVERNAME nor MXGW_TLS_HOSTNAME): only the
        chain can be checked. Documents what happens: delivered (any
        certificate from the CA is accepted for this backend)."""
        mid, _ = self.enqueue("tls-noname", rcpts=("alice",))
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.dove.ca)
        [m] = lines
        self.assertEqual(m["status"], "sent", out)

    def test_verify_off_accepts_any_ca(self):
        """MXGW_TLS_VERIFY_PEER 0: encrypted without authentication."""
        mid, _ = self.enqueue("tls-noverify", rcpts=("alice",))
        lines, _, stats, out = self.run_once(
            self.target, "--starttls", 2, "--ca", self.other_ca,
            "--verify", 0, "--servername", "other.example.test")
        [m] = lines
        self.assertEqual(m["status"], "sent", out)
        self.dove.wait_files("alice", 1)
        [data] = self.stored(self.dove, "alice", "tls-noverify")
        self.assertIn(b"with LMTPS", data)


class StartTLSNotOffered(Base):
    @classmethod
    def setUpClass(cls):
        # a real Dovecot without ssl: does not offer STARTTLS
        cls.dove = F.Dovecot(users=("alice", "bob")).start()
        cls.cadir = tempfile.mkdtemp(prefix="mxgw-deliver-ca.")
        cls.ca, _, _ = F.make_ca(cls.cadir)

    @classmethod
    def tearDownClass(cls):
        cls.dove.stop()
        shutil.rmtree(cls.cadir, ignore_errors=True)

    def test_c_required_not_offered_fake(self):
        fake = self.fake()  # PIPELINING ... SMTPUTF8, no STARTTLS
        self.assertNotIn(b"STARTTLS", b" ".join(fake.ext))
        mid, _ = self.enqueue("notls-fake")
        lines, _, stats, out = self.run_once(
            f"127.0.0.1:{fake.port}", "--starttls", 2, "--ca", self.ca,
            "--servername", "store.example.test")
        self.assert_deferred_no_delivery(
            lines, mid, None, "notls-fake", f"127.0.0.1[127.0.0.1]:{fake.port}",
            r"backend does not offer STARTTLS")
        verbs = [c.split(b" ")[0].upper() for c in fake.commands]
        self.assertIn(b"LHLO", verbs)
        for v in (b"MAIL", b"RCPT", b"DATA", b"BDAT", b"XCLIENT"):
            self.assertNotIn(v, verbs, f"sent in clear: {fake.commands}")
        self.assertEqual(fake.data, b"")

    def test_c_required_not_offered_dovecot(self):
        mid, _ = self.enqueue("notls-dovecot")
        lines, _, stats, out = self.run_once(
            f"127.0.0.1:{self.dove.port}", "--starttls", 2, "--ca", self.ca,
            "--servername", "store.example.test")
        self.assertEqual(stats["sent"], "0", out)
        self.assert_deferred_no_delivery(
            lines, mid, self.dove, "notls-dovecot",
            f"127.0.0.1[127.0.0.1]:{self.dove.port}",
            r"backend does not offer STARTTLS")
        self.assertNotIn("MAIL FROM", self.dove.read_log())

    def test_c_opportunistic_goes_in_clear(self):
        """Control: STARTTLS 1 (when offered) delivers to the same backend
        without TLS (Received "with LMTP", not LMTPS)."""
        mid, body = self.enqueue("notls-opportunistic", rcpts=("alice",))
        lines, _, stats, out = self.run_once(
            f"127.0.0.1:{self.dove.port}", "--starttls", 1, "--ca", self.ca)
        [m] = lines
        self.assertEqual(m["status"], "sent", out)
        self.dove.wait_files("alice", 1)
        [data] = self.stored(self.dove, "alice", "notls-opportunistic")
        added, rest = F.split_added_headers(data)
        self.assertEqual(rest, body)
        self.assertNotIn(b"LMTPS", b"".join(added))


if __name__ == "__main__":
    unittest.main()
