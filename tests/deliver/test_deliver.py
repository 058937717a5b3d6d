# SPDX-License-Identifier: MIT
"""test_deliver.py: the delivery scheduler (mxgw_deliver) end to end: messages
committed to a spool, then mxgw_deliver_run_once() through deliver_tool,
against a private Dovecot LMTP (tests/lmtp/lmtp_fixture.py) and the fake
LMTP backend of tests/lmtp/test_lmtp_faults.py. Checks what an operator
checks: the mail in the Maildir (byte-exact), the Postfix-style log lines
(status=sent/deferred/bounced), the queue state (mxgw-queue list --json),
and the RFC 3464 report delivered to a bounce mailbox."""
import email
import email.policy
import glob
import os
import signal
import subprocess
import time
import unittest

from deliver_common import (D, F, LINE, QCLI, SpoolCase, queue_json, read,
                            run_tool)

TOOL = os.environ.get("DELIVER_TOOL", "")


def tool(spool, *args, timeout=120):
    return run_tool(TOOL, spool, *args, timeout=timeout)


def sent_lines(logs):
    return [LINE.match(l) for l in logs if LINE.match(l)]


class DeliverTests(SpoolCase):
    @classmethod
    def setUpClass(cls):
        if not TOOL or not QCLI:
            raise unittest.SkipTest("DELIVER_TOOL / MXGW_QUEUE_CLI not set")
        cls.dove = F.Dovecot(users=("alice", "bob", "carol")).start()
        cls.target = f"127.0.0.1:{cls.dove.port}"

    @classmethod
    def tearDownClass(cls):
        cls.dove.stop()

    def setUp(self):
        super().setUp()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        super().tearDown()

    def body(self, name="m.eml", n=20, tag=b""):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(b"From: s@remote.example\r\nTo: alice@" + D.encode() +
                    b"\r\nSubject: deliver test " + tag + b"\r\n"
                    b"Message-ID: <" + tag + b"x@remote.example>\r\n\r\n" +
                    b"".join(b"line %d of the body\r\n" % i
                             for i in range(n)) + b".dot line\r\n")
        return path

    def enqueue(self, *args):
        rc, _, _, _, out = tool(self.spool, "enqueue", *args)
        self.assertEqual(rc, 0, out)
        return [l[3:] for l in out.splitlines() if l.startswith("id=")]

    def run_once(self, *args, backend=None):
        rc, logs, events, stats, out = tool(
            self.spool, "run", "--backend", backend or self.target, *args)
        self.assertEqual(rc, 0, out)
        return logs, events, stats

    # ------------------------------------------------------------------

    def test_twenty_messages_delivered_byte_exact(self):
        path = self.body(tag=b"twenty")
        before = len(self.dove.maildir_files("alice"))
        ids = self.enqueue("--from", "s@remote.example", "--rcpt",
                           f"alice@{D}", "--file", path, "--count", 20,
                           "--client-addr", "192.0.2.7",
                           "--client-helo", "mx.remote.example")
        self.assertEqual(len(set(ids)), 20)
        logs, events, stats = self.run_once()
        lines = sent_lines(logs)
        self.assertEqual(len(lines), 20, "\n".join(logs))
        self.assertEqual(sorted(m["id"] for m in lines), sorted(ids))
        for m in lines:
            self.assertEqual(m["status"], "sent")
            self.assertEqual(m["dsn"], "2.0.0")
            self.assertEqual(m["relay"], f"127.0.0.1[127.0.0.1]:"
                                         f"{self.dove.port}")
            self.assertRegex(m["reason"], rf"^250 2\.0\.0 <alice@{D}> .*Saved")
        self.assertEqual(sum(1 for l in logs if l.endswith(": removed")), 20)
        # the JSON twin of each line
        dev = [e for e in events if e.get("event") == "delivery"]
        self.assertEqual(len(dev), 20)
        self.assertTrue(all(e["status"] == "sent" and e["code"] == 250
                            for e in dev))
        self.assertEqual(stats["sent"], "20")
        self.assert_empty_queue()
        files = self.dove.wait_files("alice", before + 20)
        self.assertEqual(len(files), before + 20)
        want = read(path)
        got = 0
        for fn in files:
            data = read(fn).replace(b"\n", b"\r\n")
            added, rest = F.split_added_headers(data)
            if b"deliver test twenty" in rest:
                self.assertEqual(rest, want)
                got += 1
        self.assertEqual(got, 20)
        # XCLIENT: Dovecot saw the original client, not us
        self.assertIn("192.0.2.7", self.dove.read_log())

    def test_smtputf8_requested_ascii_message_delivered(self):
        # The client said MAIL ... SMTPUTF8 but nothing in the envelope or
        # the header section is UTF-8: Dovecot 2.3 (no SMTPUTF8) gets it,
        # as Postfix would deliver it, instead of a 553 5.6.7 bounce.
        path = self.body(tag=b"u8ascii")
        before = len(self.dove.maildir_files("alice"))
        ids = self.enqueue("--from", "s@remote.example", "--rcpt",
                           f"alice@{D}", "--file", path, "--smtputf8")
        logs, _, _ = self.run_once()
        lines = sent_lines(logs)
        self.assertEqual([(m["id"], m["status"]) for m in lines],
                         [(ids[0], "sent")], "\n".join(logs))
        self.assert_empty_queue()
        files = self.dove.wait_files("alice", before + 1)
        self.assertTrue(any(b"deliver test u8ascii" in read(f) for f in files))

    def test_smtputf8_needed_not_offered_fails_precisely(self):
        # A UTF-8 header does need SMTPUTF8: the backend does not offer it,
        # so the recipient fails with 553 5.6.7 (a DSN goes to the sender,
        # the message is kept in failed/) and nothing reaches the Maildir.
        path = os.path.join(self.tmp, "u8.eml")
        with open(path, "wb") as f:
            f.write("From: s@remote.example\r\nSubject: caf\u00e9 "
                    "u8needed\r\n\r\nbody\r\n".encode())
        before = len(self.dove.maildir_files("alice"))
        ids = self.enqueue("--from", "s@remote.example", "--rcpt",
                           f"alice@{D}", "--file", path, "--smtputf8")
        logs, _, _ = self.run_once("--keep-bounced")
        lines = [m for m in sent_lines(logs) if m["id"] == ids[0]]
        self.assertEqual(len(lines), 1, "\n".join(logs))
        self.assertEqual(lines[0]["status"], "bounced")
        self.assertEqual(lines[0]["dsn"], "5.6.7")
        self.assertIn("SMTPUTF8", lines[0]["reason"])
        self.assertTrue(any(ids[0] in p
                            for p in glob.glob(f"{self.spool}/failed/*")))
        self.assertFalse(any(b"u8needed" in read(f)
                             for f in self.dove.maildir_files("alice")[before:]))

    def test_backend_down_then_up(self):
        dove = F.Dovecot(users=("alice",))
        try:
            target = f"127.0.0.1:{dove.port}"
            path = self.body(tag=b"down")
            ids = self.enqueue("--from", "s@remote.example", "--rcpt",
                               f"alice@{D}", "--file", path, "--count", 2)
            now = int(time.time())
            logs, _, _ = self.run_once("--now", now, backend=target)
            lines = sent_lines(logs)
            self.assertEqual(len(lines), 2, logs)
            for m in lines:
                self.assertEqual(m["status"], "deferred")
                self.assertEqual(m["relay"], "none")
                self.assertIn("Connection refused", m["reason"])
            q = queue_json(self.spool)
            self.assertEqual(sorted(e["id"] for e in q), sorted(ids))
            for e in q:
                self.assertEqual(e["state"], "deferred")
                self.assertGreaterEqual(e["next_attempt"], now + 60)
                self.assertEqual(e["recipients"][0]["state"], "deferred")
                self.assertIn("Connection refused", e["recipients"][0]["text"])
            dove.start()
            # not due yet: nothing is tried
            logs, _, stats = self.run_once("--now", now + 30, backend=target)
            self.assertEqual(stats["attempts"], "0", logs)
            logs, _, _ = self.run_once("--now", now + 61, backend=target)
            self.assertEqual([m["status"] for m in sent_lines(logs)],
                             ["sent", "sent"], logs)
            self.assert_empty_queue()
            self.assertEqual(len(dove.wait_files("alice", 2)), 2)
        finally:
            dove.stop()

    def test_fallback_backend(self):
        """The first backend is down: the second one gets the message."""
        path = self.body(tag=b"fallback")
        self.enqueue("--from", "s@remote.example", "--rcpt", f"bob@{D}",
                     "--file", path)
        rc, logs, _, _, out = tool(self.spool, "run", "--backend",
                                   f"127.0.0.1:{F.free_port()}",
                                   "--backend", self.target)
        self.assertEqual(rc, 0, out)
        lines = sent_lines(logs)
        self.assertEqual([m["status"] for m in lines], ["sent"], logs)
        self.assertIn(str(self.dove.port), lines[0]["relay"])
        self.assert_empty_queue()

    def dsn_files(self, before):
        files = self.dove.wait_files("carol", len(before) + 1)
        return sorted(set(files) - set(before))

    def test_mixed_recipients_dsn_to_bounce_mailbox(self):
        path = self.body(tag=b"mixed")
        before_c = self.dove.maildir_files("carol")
        [mid] = self.enqueue("--from", "sender@remote.example",
                             "--rcpt", f"bob@{D}", "--rcpt", f"nobody@{D}",
                             "--orcpt", "rfc822;orig-nobody@example.org",
                             "--envid", "ENV-42", "--file", path)
        logs, events, stats = self.run_once(
            "--bounce-rcpt", f"carol@{D}", "--hostname", "gw.example.test")
        by = {m["to"]: m for m in sent_lines(logs) if m["id"] == mid}
        self.assertEqual(by[f"bob@{D}"]["status"], "sent", logs)
        self.assertEqual(by[f"nobody@{D}"]["status"], "bounced", logs)
        self.assertTrue(by[f"nobody@{D}"]["dsn"].startswith("5."))
        self.assertIn("said: 550", by[f"nobody@{D}"]["reason"])
        dsn_line = [l for l in logs if "sender non-delivery notification"
                    in l]
        self.assertEqual(len(dsn_line), 1, logs)
        dsn_id = dsn_line[0].rsplit(" ", 1)[1]
        # the DSN itself was delivered to the bounce mailbox, same run
        dsn_sent = [m for m in sent_lines(logs) if m["id"] == dsn_id]
        self.assertEqual([(m["to"], m["status"]) for m in dsn_sent],
                         [(f"carol@{D}", "sent")], logs)
        self.assert_empty_queue()  # original removed after its DSN
        [fn] = self.dsn_files(before_c)
        raw = read(fn)
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        self.assertEqual(msg["Return-Path"], "<>")
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["To"], "<sender@remote.example>")
        self.assertIn("MAILER-DAEMON@gw.example.test", msg["From"])
        parts = msg.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status",
                          "message/rfc822"])
        self.assertIn(f"<nobody@{D}>", parts[0].get_payload())
        # message/delivery-status: per-message block, then one per rcpt
        blocks = parts[1].get_payload()
        self.assertEqual(len(blocks), 2)
        permsg, rcpt = blocks
        self.assertEqual(permsg["Reporting-MTA"], "dns; gw.example.test")
        self.assertEqual(permsg["Original-Envelope-Id"], "ENV-42")
        self.assertIsNotNone(email.utils.parsedate_to_datetime(
            permsg["Arrival-Date"]))
        self.assertEqual(rcpt["Final-Recipient"], f"rfc822; nobody@{D}")
        self.assertEqual(rcpt["Original-Recipient"],
                         "rfc822; orig-nobody@example.org")
        self.assertEqual(rcpt["Action"], "failed")
        self.assertRegex(rcpt["Status"], r"^5\.\d+\.\d+$")
        self.assertRegex(rcpt["Diagnostic-Code"], r"^smtp; 550 5\.\d+\.\d+ ")
        self.assertEqual(rcpt["Remote-MTA"], "dns; 127.0.0.1")
        # only the failed recipient is reported
        self.assertNotIn(f"bob@{D}", parts[1].as_string())
        orig = parts[2].get_payload()[0]
        self.assertEqual(orig["Subject"], "deliver test mixed")
        self.assertIn("line 19 of the body", orig.get_payload())

    def failed_kept(self, sender, *extra, bounce_args=()):
        path = self.body(tag=b"kept")
        before_c = self.dove.maildir_files("carol")
        [mid] = self.enqueue("--from", sender, "--rcpt", f"nobody@{D}",
                             "--file", path, *extra)
        logs, _, stats = self.run_once("--bounce-rcpt", f"carol@{D}",
                                       *bounce_args)
        [m] = [m for m in sent_lines(logs) if m["id"] == mid]
        self.assertEqual(m["status"], "bounced")
        self.assertFalse([l for l in logs if "non-delivery" in l], logs)
        self.assertEqual(stats["dsns"], "0")
        q = queue_json(self.spool, "failed")
        self.assertEqual([e["id"] for e in q], [mid])
        self.assertEqual(q[0]["recipients"][0]["state"], "failed")
        self.assertEqual(q[0]["recipients"][0]["code"], 550)
        # the operator's listing shows it
        p = subprocess.run([QCLI, "--spool", self.spool, "list", "--state",
                            "failed"], capture_output=True, text=True)
        self.assertIn(mid, p.stdout)
        time.sleep(0.3)
        self.assertEqual(self.dove.maildir_files("carol"), before_c)
        return logs

    def test_null_sender_never_bounced(self):
        logs = self.failed_kept("")
        self.assertTrue(any("null sender" in l for l in logs), logs)

    def test_notify_never_no_dsn(self):
        self.failed_kept("s@remote.example", "--notify", "1")

    def test_policy_keep_no_dsn(self):
        self.failed_kept("s@remote.example", bounce_args=("--bounce", "keep"))

    def test_lifetime_expiry(self):
        path = self.body(tag=b"expire")
        now = int(time.time())
        [mid] = self.enqueue("--from", "s@remote.example", "--rcpt",
                             f"alice@{D}", "--file", path,
                             "--arrival", now - 100)
        port = F.free_port()
        logs, _, _ = self.run_once("--now", now, "--lifetime", 3600,
                                   "--bounce", "keep",
                                   backend=f"127.0.0.1:{port}")
        self.assertEqual([m["status"] for m in sent_lines(logs)],
                         ["deferred"])
        logs, _, _ = self.run_once("--now", now + 3700, "--lifetime", 3600,
                                   "--bounce", "keep",
                                   backend=f"127.0.0.1:{port}")
        [m] = sent_lines(logs)
        self.assertEqual(m["status"], "bounced", logs)
        self.assertIn("expired", m["reason"])
        self.assertIn("Connection refused", m["reason"])
        [e] = queue_json(self.spool, "failed")
        self.assertEqual(e["id"], mid)
        r = e["recipients"][0]
        self.assertEqual(r["state"], "failed")
        self.assertEqual((r["code"], r["enhanced"]), (451, "4.4.1"))
        self.assertIn("Connection refused", r["text"])

    def test_lifetime_expiry_dsn(self):
        """Expired with the DSN policy: the report says 4.4.1 / failed."""
        path = self.body(tag=b"expdsn")
        now = int(time.time())
        self.enqueue("--from", "s@remote.example", "--rcpt", f"alice@{D}",
                     "--file", path, "--arrival", now - 100)
        before_c = self.dove.maildir_files("carol")
        fake = self.fake(rcpt_reply=lambda a: b"451 4.3.0 busy")
        logs, _, _ = self.run_once("--now", now, "--lifetime", 10,
                                   "--bounce-rcpt", f"carol@{D}",
                                   backend=f"127.0.0.1:{fake.port}")
        st = {m["to"]: m["status"] for m in sent_lines(logs)}
        self.assertEqual(st[f"alice@{D}"], "bounced", logs)
        self.assertEqual(st[f"carol@{D}"], "deferred", logs)  # the DSN
        # the DSN waits in the queue for a working backend
        logs, _, _ = self.run_once("--now", now + 61)
        self.assertEqual([(m["to"], m["status"]) for m in sent_lines(logs)],
                         [(f"carol@{D}", "sent")], logs)
        [fn] = self.dsn_files(before_c)
        msg = email.message_from_bytes(read(fn),
                                       policy=email.policy.compat32)
        rcpt = msg.get_payload()[1].get_payload()[1]
        self.assertEqual(rcpt["Action"], "failed")
        self.assertEqual(rcpt["Status"], "4.3.0")
        self.assertIn("451 4.3.0 busy", rcpt["Diagnostic-Code"])
        self.assert_empty_queue()

    def test_kill9_between_commit_and_delivery(self):
        """A delivery process killed while the message is active: after a
        restart (recovery puts it back into incoming) it is delivered."""
        slow = self.fake(delay=30)
        path = self.body(tag=b"crash")
        [mid] = self.enqueue("--from", "s@remote.example", "--rcpt",
                             f"alice@{D}", "--file", path)
        before = len(self.dove.maildir_files("alice"))
        p = subprocess.Popen([TOOL, "--spool", self.spool, "run",
                              "--backend", f"127.0.0.1:{slow.port}"],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        end = time.time() + 20
        while time.time() < end and not slow.data:
            time.sleep(0.05)
        self.assertTrue(slow.data, "the fake backend never got the data")
        self.assertTrue(os.path.exists(f"{self.spool}/active/{mid}.json"))
        p.send_signal(signal.SIGKILL)
        p.wait()
        logs, _, _ = self.run_once()
        self.assertEqual([(m["id"], m["status"]) for m in sent_lines(logs)],
                         [(mid, "sent")], logs)
        self.assert_empty_queue()
        files = self.dove.wait_files("alice", before + 1)
        self.assertEqual(len(files), before + 1)

    def test_451_for_some_recipients(self):
        fake = self.fake(final_reply=lambda a: (
            b"451 4.2.0 <%s> mailbox busy" % a if a.startswith(b"bob")
            else b"250 2.0.0 <%s> Saved" % a))
        path = self.body(tag=b"partial")
        now = int(time.time())
        [mid] = self.enqueue("--from", "s@remote.example", "--rcpt",
                             f"alice@{D}", "--rcpt", f"bob@{D}",
                             "--rcpt", f"carol@{D}", "--file", path)
        logs, _, _ = self.run_once("--now", now,
                                   backend=f"127.0.0.1:{fake.port}")
        st = {m["to"]: m["status"] for m in sent_lines(logs)}
        self.assertEqual(st, {f"alice@{D}": "sent", f"bob@{D}": "deferred",
                              f"carol@{D}": "sent"})
        [e] = queue_json(self.spool, "deferred")
        self.assertEqual([r["state"] for r in e["recipients"]],
                         ["delivered", "deferred", "delivered"])
        # the retry goes to bob only
        ok = self.fake()
        logs, _, _ = self.run_once("--now", now + 61,
                                   backend=f"127.0.0.1:{ok.port}")
        self.assertEqual([(m["to"], m["status"]) for m in sent_lines(logs)],
                         [(f"bob@{D}", "sent")])
        rcpts = [c for c in ok.commands if c.upper().startswith(b"RCPT")]
        self.assertEqual(len(rcpts), 1)
        self.assertIn(b"bob@", rcpts[0])
        self.assert_empty_queue()

    def test_drop_mid_data_defers_all(self):
        fake = self.fake(drop_mid_data=True)
        path = self.body(n=2000, tag=b"drop")
        [mid] = self.enqueue("--from", "s@remote.example", "--rcpt",
                             f"alice@{D}", "--rcpt", f"bob@{D}",
                             "--file", path)
        logs, _, stats = self.run_once(backend=f"127.0.0.1:{fake.port}")
        self.assertEqual([m["status"] for m in sent_lines(logs)],
                         ["deferred", "deferred"], logs)
        self.assertEqual(stats["sent"], "0")
        [e] = queue_json(self.spool, "deferred")
        self.assertEqual(e["id"], mid)
        self.assertEqual([r["state"] for r in e["recipients"]],
                         ["deferred", "deferred"])


if __name__ == "__main__":
    unittest.main()
