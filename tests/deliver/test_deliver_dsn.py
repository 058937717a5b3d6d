# SPDX-License-Identifier: MIT
"""test_deliver_dsn.py: the delivery scheduler's success and delay DSNs
(mxgw_deliver, RFC 3461/3464), end to end: messages committed to a spool
with deliver_tool, delivered with deliver_dsn_tool (mxgw_deliver_run_once)
to a private Dovecot LMTP (tests/lmtp/lmtp_fixture.py; Dovecot 2.3 does not
offer DSN, so the gateway reports success itself) or to the fake LMTP
backend of tests/lmtp (which does offer DSN). The reports are read where a
user finds them (the sender's or the bounce mailbox in Dovecot's Maildir)
and parsed with Python's email package."""
import email
import email.policy
import email.utils
import json
import os
import re
import smtplib
import subprocess
import sys
import time
import unittest

from deliver_common import (D, F, FF, HERE, QCLI, SpoolCase, queue_json,
                            read)

TOOL = os.environ.get("DELIVER_TOOL", "")
DSN_TOOL = os.environ.get("DELIVER_DSN_TOOL", "")
MXGWD = os.environ.get("MXGWD", "")
# mxgw_notify bits (mxgw_session.h)
NEVER, SUCCESS, FAILURE, DELAY = 1, 2, 4, 8
STATUS = re.compile(r"^(?P<id>[0-9A-F]{23}): to=<(?P<to>[^>]*)>,.* "
                    r"status=(?P<status>sent|deferred|bounced) ")


def run(args, timeout=120):
    p = subprocess.run(list(map(str, args)), capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


class Report:
    """A DSN as a user's mail program sees it."""

    def __init__(self, raw):
        self.msg = parse(raw)
        self.parts = self.msg.get_payload()
        self.text = self.parts[0].get_payload()
        blocks = self.parts[1].get_payload()
        self.permsg = blocks[0]
        self.rcpts = {b["Final-Recipient"]: b for b in blocks[1:]}
        self.original = self.parts[2]


class DsnTests(SpoolCase):
    PREFIX = "mxgw-deliver-dsn."

    @classmethod
    def setUpClass(cls):
        if not TOOL or not DSN_TOOL or not QCLI:
            raise unittest.SkipTest(
                "DELIVER_TOOL / DELIVER_DSN_TOOL / MXGW_QUEUE_CLI not set")
        cls.dove = F.Dovecot(users=("alice", "bob", "carol")).start()
        cls.target = f"127.0.0.1:{cls.dove.port}"

    @classmethod
    def tearDownClass(cls):
        cls.dove.stop()

    def body(self, tag):
        path = os.path.join(self.tmp, f"{tag}.eml")
        with open(path, "wb") as f:
            f.write(b"From: Sender <sender@remote.example>\r\n"
                    b"To: alice@" + D.encode() + b"\r\n"
                    b"Subject: dsn test " + tag.encode() + b"\r\n"
                    b"Message-ID: <" + tag.encode() + b"@remote.example>\r\n"
                    b"\r\n" +
                    b"".join(b"body line %d SECRET-BODY\r\n" % i
                             for i in range(30)))
        return path

    def enqueue(self, *args):
        rc, out, err = run([TOOL, "--spool", self.spool, "enqueue", *args])
        self.assertEqual(rc, 0, out + err)
        return [l[3:] for l in out.splitlines() if l.startswith("id=")]

    def deliver(self, *args, backend=None):
        rc, out, err = run([DSN_TOOL, "--spool", self.spool, "run",
                            "--backend", backend or self.target, *args])
        self.assertEqual(rc, 0, out + err)
        logs = [l[6:] for l in out.splitlines() if l.startswith("log ")]
        stats = dict(l[5:].split("=") for l in out.splitlines()
                     if l.startswith("stat "))
        return logs, stats

    def new_files(self, user, before, n=1):
        files = self.dove.wait_files(user, len(before) + n)
        return sorted(set(files) - set(before))

    def no_new_files(self, user, before):
        time.sleep(0.3)
        self.assertEqual(self.dove.maildir_files(user), before)

    def statuses(self, logs):
        return [(m["id"], m["to"], m["status"])
                for m in map(STATUS.match, logs) if m]

    def dsn_ids(self, logs, kind):
        return [l.rsplit(" ", 1)[1] for l in logs
                if f"sender {kind} notification: " in l]

    # -- success ----------------------------------------------------------

    def test_notify_success_report_in_bounce_mailbox(self):
        """Two recipients with NOTIFY=SUCCESS,FAILURE and ORCPT, RET=FULL:
        one report for both, Action: delivered, 2.0.0, Dovecot's reply,
        the original's header only (RFC 3461 4.3)."""
        path = self.body("success")
        before_c = self.dove.maildir_files("carol")
        before_a = self.dove.maildir_files("alice")
        [mid] = self.enqueue("--from", "sender@remote.example",
                             "--rcpt", f"alice@{D}", "--rcpt", f"bob@{D}",
                             "--notify", SUCCESS | FAILURE,
                             "--orcpt", "rfc822;orig@example.org",
                             "--envid", "ENV-S1", "--ret", "FULL",
                             "--file", path)
        logs, stats = self.deliver("--bounce-rcpt", f"carol@{D}",
                                   "--hostname", "gw.example.test")
        st = self.statuses(logs)
        self.assertIn((mid, f"alice@{D}", "sent"), st, logs)
        self.assertIn((mid, f"bob@{D}", "sent"), st, logs)
        [dsn_id] = self.dsn_ids(logs, "delivery status")
        self.assertFalse(self.dsn_ids(logs, "non-delivery"), logs)
        self.assertIn((dsn_id, f"carol@{D}", "sent"), st, logs)
        self.assertEqual(stats["dsns"], "1")
        self.assert_empty_queue()
        # the original itself reached alice
        [fa] = self.new_files("alice", before_a)
        self.assertIn(b"SECRET-BODY", read(fa))
        [fn] = self.new_files("carol", before_c)
        raw = read(fn)
        r = Report(raw)
        self.assertEqual(r.msg["Return-Path"], "<>")
        self.assertEqual(r.msg["To"], "<sender@remote.example>")
        self.assertIn("MAILER-DAEMON@gw.example.test", r.msg["From"])
        self.assertEqual(r.msg["Subject"], "Successful Mail Delivery Report")
        self.assertEqual(r.msg["Auto-Submitted"], "auto-replied")
        self.assertEqual(r.msg.get_content_type(), "multipart/report")
        self.assertEqual(r.msg.get_param("report-type"), "delivery-status")
        self.assertEqual([p.get_content_type() for p in r.parts],
                         ["text/plain", "message/delivery-status",
                          "text/rfc822-headers"])
        self.assertIn("successfully delivered", r.text)
        self.assertEqual(r.permsg["Reporting-MTA"], "dns; gw.example.test")
        self.assertEqual(r.permsg["Original-Envelope-Id"], "ENV-S1")
        self.assertIsNotNone(email.utils.parsedate_to_datetime(
            r.permsg["Arrival-Date"]))
        self.assertEqual(sorted(r.rcpts),
                         [f"rfc822; alice@{D}", f"rfc822; bob@{D}"])
        for who in ("alice", "bob"):
            b = r.rcpts[f"rfc822; {who}@{D}"]
            self.assertEqual(b["Action"], "delivered")
            self.assertEqual(b["Status"], "2.0.0")
            self.assertEqual(b["Original-Recipient"],
                             "rfc822; orig@example.org")
            self.assertRegex(b["Diagnostic-Code"],
                             rf"^smtp; 250 2\.0\.0 <{who}@{D}> .*Saved")
            self.assertEqual(b["Remote-MTA"], "dns; 127.0.0.1")
            self.assertIsNone(b["Will-Retry-Until"])
            self.assertIsNotNone(email.utils.parsedate_to_datetime(
                b["Last-Attempt-Date"]))
        # the original's header, not its body, even with RET=FULL
        hdrs = parse(r.original.get_payload().encode())
        self.assertEqual(hdrs["Subject"], "dsn test success")
        self.assertEqual(hdrs["Message-ID"], "<success@remote.example>")
        self.assertNotIn(b"SECRET-BODY", raw)

    def test_notify_success_report_to_sender(self):
        """Without a bounce mailbox the report goes to the sender (here a
        user of the store, bob), from <>."""
        path = self.body("tosender")
        before_b = self.dove.maildir_files("bob")
        [mid] = self.enqueue("--from", f"bob@{D}", "--rcpt", f"alice@{D}",
                             "--notify", SUCCESS, "--file", path)
        logs, stats = self.deliver()
        [dsn_id] = self.dsn_ids(logs, "delivery status")
        self.assertIn((dsn_id, f"bob@{D}", "sent"), self.statuses(logs))
        [fn] = self.new_files("bob", before_b)
        r = Report(read(fn))
        self.assertEqual(r.msg["Return-Path"], "<>")
        self.assertEqual(r.msg["To"], f"<bob@{D}>")
        [b] = r.rcpts.values()
        self.assertEqual(b["Final-Recipient"], f"rfc822; alice@{D}")
        self.assertIsNone(b["Original-Recipient"])
        self.assertEqual((b["Action"], b["Status"]), ("delivered", "2.0.0"))
        self.assertNotIn(mid, [e["id"] for e in queue_json(self.spool)])

    def test_no_success_report_unless_asked(self):
        """NOTIFY=NEVER, no NOTIFY, NOTIFY=FAILURE,DELAY, and NOTIFY=SUCCESS
        from the null sender: delivered, no report anywhere."""
        path = self.body("quiet")
        before = {u: self.dove.maildir_files(u) for u in ("bob", "carol")}
        ids = []
        for notify in (NEVER, 0, FAILURE | DELAY):
            ids += self.enqueue("--from", f"bob@{D}", "--rcpt", f"alice@{D}",
                                "--notify", notify, "--file", path)
        ids += self.enqueue("--from", "", "--rcpt", f"alice@{D}",
                            "--notify", SUCCESS, "--file", path)
        logs, stats = self.deliver("--bounce-rcpt", f"carol@{D}")
        self.assertEqual(sorted((i, s) for i, _, s in self.statuses(logs)),
                         sorted((i, "sent") for i in ids), logs)
        self.assertEqual(stats["dsns"], "0", logs)
        self.assertFalse([l for l in logs if "notification" in l], logs)
        self.assert_empty_queue()
        for u in ("bob", "carol"):
            self.no_new_files(u, before[u])

    def test_bounce_policy_keep_no_success_report(self):
        path = self.body("keep")
        before_c = self.dove.maildir_files("carol")
        self.enqueue("--from", f"bob@{D}", "--rcpt", f"alice@{D}",
                     "--notify", SUCCESS, "--file", path)
        logs, stats = self.deliver("--bounce", "keep",
                                   "--bounce-rcpt", f"carol@{D}")
        self.assertEqual(stats["dsns"], "0", logs)
        self.assert_empty_queue()
        self.no_new_files("carol", before_c)

    def test_backend_with_dsn_gets_notify_and_reports_itself(self):
        """A backend offering DSN gets NOTIFY and ORCPT in RCPT and is
        responsible for the success report: the gateway sends none."""
        fake = self.fake()
        path = self.body("bdsn")
        [mid] = self.enqueue("--from", "sender@remote.example",
                             "--rcpt", f"alice@{D}",
                             "--notify", SUCCESS | FAILURE,
                             "--orcpt", "rfc822;orig@example.org",
                             "--file", path)
        logs, stats = self.deliver(backend=f"127.0.0.1:{fake.port}")
        self.assertEqual(self.statuses(logs), [(mid, f"alice@{D}", "sent")])
        self.assertEqual(stats["dsns"], "0", logs)
        self.assertTrue([l for l in logs if "left to" in l and
                         "offers DSN" in l], logs)
        rcpt = [c for c in fake.commands if c.upper().startswith(b"RCPT")]
        self.assertEqual(len(rcpt), 1)
        self.assertIn(b"NOTIFY=SUCCESS,FAILURE", rcpt[0])
        self.assertIn(b"ORCPT=rfc822;orig@example.org", rcpt[0])
        self.assert_empty_queue()

    def test_backend_without_dsn_own_report(self):
        """The same fake backend without the DSN keyword: no NOTIFY on the
        wire, and the gateway's own report is the next message it gets."""
        ext = [e for e in FF.EXT if e != b"DSN"]
        fake = self.fake(ext=ext)
        path = self.body("nodsn")
        [mid] = self.enqueue("--from", "sender@remote.example",
                             "--rcpt", f"alice@{D}", "--notify", SUCCESS,
                             "--file", path)
        logs, stats = self.deliver("--hostname", "gw.example.test",
                                   backend=f"127.0.0.1:{fake.port}")
        [dsn_id] = self.dsn_ids(logs, "delivery status")
        st = self.statuses(logs)
        self.assertIn((mid, f"alice@{D}", "sent"), st)
        self.assertIn((dsn_id, "sender@remote.example", "sent"), st)
        rcpts = [c for c in fake.commands if c.upper().startswith(b"RCPT")]
        self.assertFalse([c for c in rcpts if b"NOTIFY" in c], rcpts)
        r = Report(fake.data)
        [b] = r.rcpts.values()
        self.assertEqual((b["Action"], b["Status"]), ("delivered", "2.0.0"))
        self.assertEqual(b["Diagnostic-Code"],
                         f"smtp; 250 2.0.0 <alice@{D}> Saved")

    # -- delay ------------------------------------------------------------

    def test_delay_warning_once_then_retried(self):
        """Backend down longer than the delay warning: exactly one delayed
        report across several attempts, the message still retried, and
        delivered once the backend is back."""
        path = self.body("delay")
        now = int(time.time())
        arrival = now - 100
        before_c = self.dove.maildir_files("carol")
        before_a = self.dove.maildir_files("alice")
        [mid] = self.enqueue("--from", "sender@remote.example",
                             "--rcpt", f"alice@{D}",
                             "--orcpt", "rfc822;orig-alice@example.org",
                             "--envid", "ENV-D1", "--file", path,
                             "--arrival", arrival)
        down = f"127.0.0.1:{F.free_port()}"
        common = ("--delay-warning", 600, "--lifetime", 7200,
                  "--backoff", 60, "--bounce-rcpt", f"carol@{D}",
                  "--hostname", "gw.example.test")
        # before arrival + 600: deferred, no warning
        logs, stats = self.deliver("--now", now, *common, backend=down)
        self.assertEqual(self.statuses(logs), [(mid, f"alice@{D}",
                                                "deferred")], logs)
        self.assertEqual(stats["dsns"], "0", logs)
        # past it: one warning (itself deferred: the backend is down)
        logs, stats = self.deliver("--now", now + 700, *common, backend=down)
        [dsn_id] = self.dsn_ids(logs, "delay")
        self.assertEqual(stats["dsns"], "1", logs)
        self.assertEqual(sorted(self.statuses(logs)),
                         sorted([(mid, f"alice@{D}", "deferred"),
                                 (dsn_id, f"carol@{D}", "deferred")]), logs)
        q = {e["id"]: e for e in queue_json(self.spool, "deferred")}
        self.assertEqual(sorted(q), sorted([mid, dsn_id]))
        self.assertEqual(q[mid]["recipients"][0]["delay_dsn"], now + 700)
        self.assertEqual(q[dsn_id]["sender"], "")
        # the queued report, read from the spool
        rc, raw, err = run([DSN_TOOL, "--spool", self.spool, "body",
                            dsn_id])
        self.assertEqual(rc, 0, err)
        r = Report(raw.encode())
        self.assertEqual(r.msg["Subject"], "Delayed Mail (still being "
                                           "retried)")
        # more attempts, still down: no second warning
        for t in (now + 1000, now + 2000, now + 4000):
            logs, stats = self.deliver("--now", t, *common, backend=down)
            self.assertIn((mid, f"alice@{D}", "deferred"),
                          self.statuses(logs), logs)
            self.assertEqual(stats["dsns"], "0", logs)
            self.assertFalse(self.dsn_ids(logs, "delay"), logs)
        [e] = [e for e in queue_json(self.spool, "deferred")
               if e["id"] == mid]
        self.assertEqual(e["attempts"], 5)
        # the backend is back: the message and the one warning go out
        logs, stats = self.deliver("--now", now + 6000, *common)
        st = self.statuses(logs)
        self.assertIn((mid, f"alice@{D}", "sent"), st, logs)
        self.assertIn((dsn_id, f"carol@{D}", "sent"), st, logs)
        self.assertEqual(stats["dsns"], "0", logs)
        self.assert_empty_queue()
        self.assertEqual(len(self.new_files("alice", before_a)), 1)
        files = self.new_files("carol", before_c)
        self.no_new_files("carol", before_c + files)
        [fn] = files
        raw = read(fn)
        r = Report(raw)
        self.assertEqual(r.msg["Return-Path"], "<>")
        self.assertEqual(r.msg["To"], "<sender@remote.example>")
        self.assertEqual([p.get_content_type() for p in r.parts],
                         ["text/plain", "message/delivery-status",
                          "text/rfc822-headers"])
        self.assertIn("WARNING ONLY", r.text)
        self.assertEqual(r.permsg["Original-Envelope-Id"], "ENV-D1")
        self.assertEqual(
            email.utils.parsedate_to_datetime(
                r.permsg["Arrival-Date"]).timestamp(), arrival)
        b = r.rcpts[f"rfc822; alice@{D}"]
        self.assertEqual(b["Original-Recipient"],
                         "rfc822; orig-alice@example.org")
        self.assertEqual(b["Action"], "delayed")
        self.assertEqual(b["Status"], "4.4.1")
        self.assertIn("Connection refused", b["Diagnostic-Code"])
        self.assertEqual(email.utils.parsedate_to_datetime(
            b["Will-Retry-Until"]).timestamp(), arrival + 7200)
        self.assertEqual(email.utils.parsedate_to_datetime(
            b["Last-Attempt-Date"]).timestamp(), now + 700)
        hdrs = parse(r.original.get_payload().encode())
        self.assertEqual(hdrs["Subject"], "dsn test delay")
        self.assertNotIn(b"SECRET-BODY", raw)

    def test_delay_warning_who_is_warned(self):
        """Past the warning time, with a 4xx from the backend: NOTIFY=DELAY
        and no NOTIFY are warned (one report each, status from the reply);
        NOTIFY=FAILURE, NEVER and the null sender are not; a warning time
        of 0 (the default) warns nobody."""
        fake = self.fake(rcpt_reply=lambda a: b"452 4.2.2 <%s> over quota" % a)
        target = f"127.0.0.1:{fake.port}"
        path = self.body("who")
        now = int(time.time())
        ids = {}
        for name, sender, notify in (("delay", "s@remote.example", DELAY),
                                     ("none", "s@remote.example", 0),
                                     ("failure", "s@remote.example", FAILURE),
                                     ("never", "s@remote.example", NEVER),
                                     ("null", "", 0)):
            [ids[name]] = self.enqueue("--from", sender, "--rcpt",
                                       f"{name}@{D}", "--notify", notify,
                                       "--file", path, "--arrival", now - 100)
        # warning off: nobody
        logs, stats = self.deliver("--now", now, "--bounce-rcpt",
                                   f"carol@{D}", backend=target)
        self.assertEqual(stats["dsns"], "0", logs)
        self.assertEqual(len(self.statuses(logs)), 5, logs)
        # on, past due (and the DSNs then also get the 452)
        logs, stats = self.deliver("--now", now + 3600, "--delay-warning",
                                   60, "--bounce-rcpt", f"carol@{D}",
                                   backend=target)
        self.assertEqual(stats["dsns"], "2", logs)
        warned = [l.split(":", 1)[0] for l in logs
                  if "sender delay notification" in l]
        self.assertEqual(sorted(warned), sorted([ids["delay"], ids["none"]]))
        q = {e["id"]: e for e in queue_json(self.spool, "deferred")}
        for name in ids:
            r = q[ids[name]]["recipients"][0]
            self.assertEqual("delay_dsn" in r, name in ("delay", "none"), name)
        for dsn_id in self.dsn_ids(logs, "delay"):
            rc, raw, err = run([DSN_TOOL, "--spool", self.spool, "body",
                                dsn_id])
            r = Report(raw.encode())
            [b] = r.rcpts.values()
            self.assertEqual(b["Action"], "delayed")
            self.assertEqual(b["Status"], "4.2.2")
            self.assertIn(b["Final-Recipient"], (f"rfc822; delay@{D}",
                                                 f"rfc822; none@{D}"))
            self.assertRegex(b["Diagnostic-Code"],
                             r"^smtp; 452 4\.2\.2 <[a-z]+@example\.test> "
                             r"over quota$")

    def test_mxgwd_spool_delay_warning(self):
        """mxgwd's spool.delay_warning: a duration in whole seconds, shown
        in the --check-config summary; not shorter than max_lifetime is a
        warning (it could never fire)."""
        if not MXGWD:
            self.skipTest("MXGWD not set")

        def check(spool):
            path = os.path.join(self.tmp, "mxgwd.json")
            with open(path, "w") as f:
                json.dump({"hostname": "mx.gw.test",
                           "listeners": [{"address": "127.0.0.1",
                                          "port": 2525}],
                           "domains": [D],
                           "spool": dict(directory=self.spool, **spool),
                           "lmtp": {"backends": ["127.0.0.1:24"]}}, f)
            return run([MXGWD, "--check-config", path])
        rc, out, err = check({"delay_warning": "4h"})
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^spool .* bounce=dsn delay_warning=4h$")
        rc, out, err = check({})
        self.assertEqual(rc, 0, err)
        self.assertNotIn("delay_warning", out)
        rc, out, err = check({"delay_warning": "1500ms"})
        self.assertEqual(rc, 1, out)
        self.assertIn("spool.delay_warning: whole seconds", err)
        rc, out, err = check({"delay_warning": "6d", "max_lifetime": "5d"})
        self.assertEqual(rc, 0, err)
        self.assertIn("warning: spool.delay_warning: not shorter than "
                      "max_lifetime", err)

    def test_mxgwd_delay_warning_end_to_end(self):
        """mxgwd with spool.delay_warning 2s and its store down: one
        delay notification, while the attempts go on."""
        if not MXGWD:
            self.skipTest("MXGWD not set")
        sys.path.insert(0, os.path.join(HERE, "..", "mxgwd"))
        import mxgwd_fixture as MF
        gw = MF.Mxgwd([f"127.0.0.1:{F.free_port()}"], tls=False)
        gw.config["spool"]["delay_warning"] = "2s"
        try:
            gw.start()
            with smtplib.SMTP("127.0.0.1", gw.port, timeout=30) as c:
                c.sendmail("s@remote.example", [f"alice@{D}"],
                           b"From: s@remote.example\r\nSubject: e2e delay"
                           b"\r\n\r\nbody\r\n")
            self.assertTrue(gw.wait_log(r"sender delay notification: ",
                                        secs=30), gw.log())
            tried = r"to=<alice@[^>]*>.*status=deferred"
            n = len(re.findall(tried, gw.log()))
            # at least two more attempts of the original
            self.assertTrue(gw.wait_log(tried, secs=30, count=n + 2),
                            gw.log())
            self.assertEqual(
                len(re.findall(r"sender delay notification: ", gw.log())), 1,
                gw.log())
            q = [e for e in queue_json(gw.spool) if e["sender"]]
            self.assertEqual(len(q), 1)
            self.assertGreater(q[0]["recipients"][0]["delay_dsn"], 0)
        finally:
            gw.cleanup()

    def test_options(self):
        rc, out, err = run([DSN_TOOL, "--spool", self.spool, "options"])
        self.assertEqual((rc, out.strip()), (0, "ok"), out + err)


if __name__ == "__main__":
    unittest.main()
