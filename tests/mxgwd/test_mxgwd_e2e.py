# SPDX-License-Identifier: MIT
"""test_mxgwd_e2e.py: mxgwd end to end on loopback, with a private Dovecot
LMTP as the store (tests/lmtp/lmtp_fixture.py):

  - swaks with STARTTLS -> mxgwd -> Dovecot LMTP -> Maildir, byte for byte,
    with the status=sent line in the text log and in the JSON log;
  - accepted domains (554 5.7.1 relay denied) and the LMTP RCPT probe
    (Dovecot's 550 5.1.1 for an unknown user at RCPT time, then from the
    cache); recipient_validation "proxy" (before-queue, nothing spooled);
  - SIGHUP with a replaced certificate while clients keep sending: new
    sessions get the new certificate (openssl s_client), no session fails;
  - SIGTERM under load with the backend down: every message that got a 250
    is in the spool; after a restart with the backend up, in the Maildir.

Debian's /usr/bin/python3, unittest, standard library only.
"""
import glob
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mxgwd_fixture import (DOMAIN, SRC, Dovecot, Mxgwd,  # noqa
                           cert_fingerprint, free_port, make_cert, require_mxgwd,
                           split_added_headers)


def maildir_all(dovecot, user):
    return sorted(glob.glob("%s/%s/%s/Maildir/new/*" % (dovecot.mail, DOMAIN,
                                                       user)))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def served_fingerprint(port):
    """The SHA-256 fingerprint of the certificate a new STARTTLS session
    gets (openssl s_client)."""
    p = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port, "-starttls", "smtp",
                        "-servername", "mx.gw.test"],
                       input=b"QUIT\r\n", capture_output=True, timeout=30)
    x = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                        "-sha256"], input=p.stdout, capture_output=True,
                       timeout=30)
    out = x.stdout.decode().strip()
    return out.split("=", 1)[1] if "=" in out else None


class Sender(threading.Thread):
    """Sends messages in a loop (one session each, STARTTLS optional) until
    told to stop or refused; records which got a 250 and which failed."""

    def __init__(self, port, tag, tls=False, rcpt="alice@" + DOMAIN):
        super().__init__(daemon=True)
        self.port, self.tag, self.tls, self.rcpt = port, tag, tls, rcpt
        self.acked, self.failed = [], []
        self.stop = threading.Event()
        self.refused = None

    def run(self):
        n = 0
        while not self.stop.is_set():
            token = "%s-%d" % (self.tag, n)
            n += 1
            msg = ("From: sender@example.org\r\nTo: %s\r\nSubject: %s\r\n"
                   "Message-ID: <%s@example.org>\r\n\r\nbody of %s\r\n" %
                   (self.rcpt, token, token, token))
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                    if self.tls:
                        ctx = ssl.create_default_context()
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                        s.starttls(context=ctx)
                    s.sendmail("sender@example.org", [self.rcpt], msg)
                self.acked.append(token)
            except (smtplib.SMTPServerDisconnected, ConnectionError,
                    smtplib.SMTPConnectError, smtplib.SMTPResponseException,
                    OSError) as e:
                self.failed.append((token, repr(e)))
                self.refused = e
                if self.stop.is_set() or not self.keep_going(e):
                    return

    def keep_going(self, e):
        return False


class E2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dovecot = Dovecot().start()

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()

    def gateway(self, **kw):
        g = Mxgwd(["127.0.0.1:%d" % self.dovecot.port], **kw)
        self.addCleanup(g.cleanup)
        return g

    def test_swaks_starttls_to_maildir_byte_exact(self):
        g = self.gateway().start()
        body = ("From: Sender <sender@example.org>\r\n"
                "To: Alice <alice@example.test>\r\n"
                "Subject: byte-exact through mxgwd\r\n"
                "Message-ID: <e2e-1@example.org>\r\n"
                "\r\n"
                "Line one.\r\n"
                ".leading dot survives\r\n"
                "trailing spaces   \r\n"
                "\tand a tab\r\n").encode()
        msgfile = os.path.join(g.dir, "msg.eml")
        with open(msgfile, "wb") as f:
            f.write(body[:-2])  # swaks adds the last CRLF itself
        before = set(maildir_all(self.dovecot, "carol"))
        p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % g.port,
                            "--tls", "--from", "sender@example.org",
                            "--to", "carol@" + DOMAIN, "--data", msgfile],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("=== TLS started with cipher TLSv1.3", p.stdout)
        self.assertRegex(p.stdout, r"<~  250 2\.0\.0 Ok: queued as [0-9A-F]+")
        self.assertTrue(g.wait_log(r"to=<carol@example\.test>, relay=127\.0\.0"
                                   r"\.1\[127\.0\.0\.1\]:\d+, .*status=sent"),
                        g.log())
        new = sorted(set(self.dovecot.wait_files("carol", len(before) + 1))
                     - before)
        self.assertEqual(len(new), 1)
        added, rest = split_added_headers(read(new[0]))
        # Dovecot stores LF line ends; the message is ours, byte for byte
        self.assertEqual(rest.replace(b"\n", b"\r\n"), body)
        ours = [h for h in added if b"by mx.gw.test" in h]
        self.assertEqual(len(ours), 1, added)
        self.assertIn(b"with ESMTPS", ours[0])
        # the JSON log has the same event with its fields
        with open(g.jsonlog) as f:
            events = [json.loads(line) for line in f]
        sent = [e for e in events if e.get("status") == "sent"]
        self.assertEqual(len(sent), 1, events)
        self.assertEqual(sent[0]["to"], "carol@example.test")
        self.assertEqual(sent[0]["program"], "mxgwd")
        self.assertRegex(sent[0]["queue_id"], r"^[0-9A-F]+$")

    @unittest.skipUnless(os.path.exists("/usr/sbin/postfix")
                         and os.geteuid() == 0,
                         "a private Postfix instance needs postfix and root")
    def test_postfix_relays_with_verified_starttls(self):
        sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
        import test_tls_postfix as tpf
        g = self.gateway().start()
        root = tempfile.mkdtemp(prefix="mxgwd-pf.")
        os.chmod(root, 0o755)  # Postfix daemons run as user postfix
        self.addCleanup(shutil.rmtree, root, True)
        # the self-signed certificate is its own CA: verify chain and name
        pf = tpf.TLSPostfix(root, g.port, g.cert, "mx.gw.test")
        self.addCleanup(pf.stop)
        pf.start()
        before = set(maildir_all(self.dovecot, "carol"))
        tpf.sendmail(pf, "relayed by Postfix", "carol@" + DOMAIN)
        end = time.time() + 60
        while time.time() < end and "status=sent" not in pf.log():
            time.sleep(0.2)
        log = pf.log()
        self.assertRegex(log, r"Verified TLS connection established to "
                              r"127\.0\.0\.1\[127\.0\.0\.1\]:%d" % g.port)
        m = re.search(r"status=sent \(250 2\.0\.0 Ok: queued as "
                      r"([0-9A-F]+)\)", log)
        self.assertIsNotNone(m, log)
        self.assertTrue(g.wait_log(r"%s: to=<carol@example\.test>.*"
                                   r"status=sent" % m.group(1)), g.log())
        new = sorted(set(self.dovecot.wait_files("carol", len(before) + 1))
                     - before)
        self.assertEqual(len(new), 1)
        stored = read(new[0])
        self.assertIn(b"Subject: relayed by Postfix\n", stored)
        self.assertIn(b"\n\nHello from Postfix over TLS.\n", stored)
        self.assertRegex(stored, rb"Received: from relay\.example\.org "
                                 rb"\(unknown \[127\.0\.0\.1\]\)\n\t"
                                 rb"\(using TLSv1\.[23] with cipher [^)]+\)"
                                 rb"\n\tby mx\.gw\.test \(libmxgw\) with "
                                 rb"ESMTPS id " + m.group(1).encode())
        # XCLIENT: the store saw Postfix's HELO, not ours
        self.assertIn(b"Received: from relay.example.org ([127.0.0.1])\n"
                      b"\tby store.example.test with LMTP", stored)

    def test_domains_and_lmtp_probe(self):
        g = self.gateway(extra={"recipient_validation": {
            "mode": "lmtp_probe", "cache_ttl": "1m"}}).start()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.ehlo("client.example.org")
            self.assertEqual(s.mail("sender@example.org")[0], 250)
            code, text = s.rcpt("someone@elsewhere.example")
            self.assertEqual(code, 554)
            self.assertIn(b"5.7.1", text)
            code, text = s.rcpt("nobody@" + DOMAIN)
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.1.1", text)
            self.assertEqual(s.rcpt("bob@" + DOMAIN)[0], 250)
            # the second time (from the cache, any case): the same answer
            code2, text2 = s.rcpt("NOBODY@" + DOMAIN)
            self.assertEqual(code2, 550, text2)
            self.assertIn(b"5.1.1", text2)

    def test_recipient_validation_proxy(self):
        """mode "proxy": each message is forwarded in step to the store
        (before-queue): Dovecot's 550 5.1.1 for an unknown user at RCPT,
        250 only once the store has the message, nothing spooled."""
        g = self.gateway(extra={"recipient_validation": {
            "mode": "proxy"}}).start()
        before = set(maildir_all(self.dovecot, "bob"))
        spooled = sorted(g.spool_files())
        body = ("From: sender@example.org\r\nTo: bob@example.test\r\n"
                "Subject: proxy mode through mxgwd\r\n\r\n"
                ".dot\r\nend\r\n").encode()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.ehlo("client.example.org")
            self.assertEqual(s.mail("sender@example.org")[0], 250)
            code, text = s.rcpt("someone@elsewhere.example")
            self.assertEqual(code, 554)  # accepted domains still first
            code, text = s.rcpt("nobody@" + DOMAIN)
            self.assertEqual(code, 550, text)
            self.assertIn(b"5.1.1 <nobody@example.test> User doesn't exist",
                          text)
            self.assertEqual(s.rcpt("bob@" + DOMAIN)[0], 250)
            code, text = s.data(body)
            self.assertEqual(code, 250, text)
            self.assertIn(b"delivered to 1 recipient", text)
        new = sorted(set(maildir_all(self.dovecot, "bob")) - before)
        self.assertEqual(len(new), 1)  # there already when 250 came
        added, rest = split_added_headers(read(new[0]))
        self.assertEqual(rest.replace(b"\n", b"\r\n"), body)
        self.assertEqual(len([h for h in added if b"by mx.gw.test" in h]), 1)
        self.assertTrue(g.wait_log(r"NOQUEUE: proxy-accept: END-OF-MESSAGE "
                                   r"from unknown\[127\.0\.0\.1\]: 250 "),
                        g.log())
        self.assertEqual(sorted(g.spool_files()), spooled)

    def test_sighup_new_certificate_no_failed_session(self):
        g = self.gateway().start()
        old = cert_fingerprint(g.cert)
        self.assertEqual(served_fingerprint(g.port), old)
        senders = [Sender(g.port, "hup%d" % i, tls=True) for i in range(3)]
        for s in senders:
            s.start()
        # a session that spans the reload
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        long = smtplib.SMTP("127.0.0.1", g.port, timeout=30)
        long.starttls(context=ctx)
        der = long.sock.getpeercert(binary_form=True)
        time.sleep(1.0)
        # a renewal tool writes new files and renames them over the old
        tmpc, tmpk = make_cert(g.dir, "renewed")
        os.rename(tmpk, g.key)
        os.rename(tmpc, g.cert)
        new = cert_fingerprint(g.cert)
        self.assertNotEqual(new, old)
        g.signal(signal.SIGHUP)
        self.assertTrue(g.wait_log(r"reload: done"), g.log())
        time.sleep(1.0)
        self.assertEqual(served_fingerprint(g.port), new)
        # the session from before goes on with the old certificate
        self.assertEqual(long.sendmail("sender@example.org",
                                       ["alice@" + DOMAIN],
                                       "Subject: across the reload\r\n\r\n"
                                       "x\r\n"), {})
        long.quit()
        x = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout",
                            "-fingerprint", "-sha256"], input=der,
                           capture_output=True, check=True)
        self.assertEqual(x.stdout.decode().strip().split("=", 1)[1], old)
        for s in senders:
            s.stop.set()
        for s in senders:
            s.join(60)
        acked = sum(len(s.acked) for s in senders)
        failed = [f for s in senders for f in s.failed]
        self.assertEqual(failed, [])
        self.assertGreater(acked, 3)

    def test_submission_auth_users_file(self):
        g = self.gateway()
        sub_port = free_port()
        g.config["listeners"].append({
            "address": "127.0.0.1", "port": sub_port, "mode": "submission",
            "tls": {"cert_file": g.cert, "key_file": g.key}})
        users = os.path.join(g.dir, "users")
        h = subprocess.run(["openssl", "passwd", "-6", "s3cret"],
                           capture_output=True, text=True,
                           check=True).stdout.strip()
        with open(users, "w") as f:
            f.write("# test users\nsubmitter:%s\n" % h)
        os.chmod(users, 0o600)
        g.config["auth"] = {"users_file": users}
        g.start()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", sub_port, timeout=30) as s:
            s.ehlo("client.example.org")
            self.assertFalse(s.has_extn("auth"))  # not before TLS
            code, text = s.docmd("AUTH", "PLAIN AHN1Ym1pdHRlcgBzM2NyZXQ=")
            self.assertEqual(code, 538, text)  # RFC 4954: encryption required
            code, text = s.mail("submitter@example.test")
            self.assertEqual(code, 530, text)
            s.starttls(context=ctx)
            s.ehlo("client.example.org")
            self.assertTrue(s.has_extn("auth"))
            with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
                s.login("submitter", "wrong")
            self.assertEqual(e.exception.smtp_code, 535)
            self.assertEqual(s.login("submitter", "s3cret")[0], 235)
            # authenticated: any domain is accepted (relay for our users)
            self.assertEqual(s.sendmail("submitter@example.test",
                                        ["bob@" + DOMAIN],
                                        "Subject: submitted\r\n\r\nhi\r\n"),
                             {})
        self.assertTrue(g.wait_log(r"to=<bob@example\.test>.*status=sent"),
                        g.log())

    @unittest.skipUnless(os.path.exists("/usr/sbin/haproxy"),
                         "haproxy is not installed")
    def test_haproxy_proxy_protocol_v1_v2(self):
        g = self.gateway(tls=False)
        gw_port = g.port
        g.config["listeners"][0]["proxy_protocol"] = True
        g.start()
        fe1, fe2 = free_port(), free_port()
        cfg = os.path.join(g.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 100\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n"
                    "  timeout client 30s\n  timeout server 30s\n"
                    "listen v1\n  bind 127.0.0.1:%d\n"
                    "  server gw 127.0.0.1:%d send-proxy\n"
                    "listen v2\n  bind 127.0.0.1:%d\n"
                    "  server gw 127.0.0.1:%d send-proxy-v2\n"
                    % (fe1, gw_port, fe2, gw_port))
        hap = subprocess.Popen(["/usr/sbin/haproxy", "-db", "-f", cfg],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (hap.terminate(), hap.wait(10)))
        for port in (fe1, fe2):
            end = time.time() + 10
            while time.time() < end:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
        for port, src, tag in ((fe1, "127.0.0.61", "v1"),
                               (fe2, "127.0.0.62", "v2")):
            with smtplib.SMTP("127.0.0.1", port, timeout=30,
                              source_address=(src, 0)) as s:
                self.assertEqual(s.sendmail(
                    "sender@example.org", ["bob@" + DOMAIN],
                    "Subject: via haproxy %s\r\n\r\nx\r\n" % tag), {})
            # the client's own address, not HAProxy's, in the log ...
            self.assertTrue(g.wait_log(r"connect from unknown\[%s\]"
                                       % re.escape(src)), g.log())
            # ... and in the Received header the store got
            found = False
            end = time.time() + 20
            while not found and time.time() < end:
                for path in maildir_all(self.dovecot, "bob"):
                    data = read(path)
                    if ("via haproxy %s" % tag).encode() in data:
                        self.assertIn(("[%s]" % src).encode(), data)
                        found = True
                time.sleep(0.1)
            self.assertTrue(found, g.log())
        # a direct connection without a PROXY header is not served
        with socket.create_connection(("127.0.0.1", gw_port), 10) as c:
            c.settimeout(15)
            c.sendall(b"EHLO direct.example\r\n")
            data = b""
            try:
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                self.fail("connection without PROXY header left open")
            self.assertNotIn(b"250", data)

    def test_limits_greeting_delay_and_connections_per_ip(self):
        g = self.gateway(tls=False, extra={"limits": {
            "greeting_delay": "1500ms", "max_connections_per_ip": 2}}).start()
        # an early talker: speaks before the greeting
        with socket.create_connection(("127.0.0.1", g.port), 10) as c:
            c.sendall(b"EHLO early.example\r\n")
            c.settimeout(10)
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"554 5.5.1"), data)
        # a client that hangs up during the delay without a word is let go
        # at once (its connection slots are not held for the rest of the
        # delay), and says so in the log
        hang = r"hangup during the greeting delay from unknown\[127\.0\.0\.1\]"
        n = len(re.findall(hang, g.log()))
        t0 = time.time()
        socket.create_connection(("127.0.0.1", g.port), 10).close()
        self.assertTrue(g.wait_log(hang, 5, count=n + 1), g.log())
        self.assertLess(time.time() - t0, 1.0)
        # a patient client gets the greeting after the delay. The probe,
        # the fixture's readiness probe and the early talker count against
        # the per-IP limit until the gateway has seen them close, which
        # another event loop may do a moment after this connect: until then
        # a connection may get the limit's 421
        first = None
        deadline = time.time() + 10
        while first is None:
            t0 = time.time()
            try:
                first = smtplib.SMTP("127.0.0.1", g.port, timeout=30)
            except smtplib.SMTPConnectError as e:
                if e.smtp_code != 421 or time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.assertGreaterEqual(time.time() - t0, 1.4)
        second = smtplib.SMTP("127.0.0.1", g.port, timeout=30)
        # the third at once from the same address is refused
        with self.assertRaises(smtplib.SMTPConnectError) as e:
            smtplib.SMTP("127.0.0.1", g.port, timeout=30)
        self.assertEqual(e.exception.smtp_code, 421)
        first.quit()
        second.quit()
        self.assertTrue(g.wait_log(r"early|pregreet|talk", 5), g.log())

    @unittest.skipUnless(os.path.exists("/usr/sbin/nsd"), "nsd is not installed")
    def test_spf_pass_fail_temperror_against_nsd(self):
        sys.path.insert(0, os.path.join(SRC, "tests", "dns"))
        import dns_fixture
        tmp = tempfile.mkdtemp(prefix="mxgwd-nsd.")
        self.addCleanup(shutil.rmtree, tmp, True)
        zone = os.path.join(tmp, "zone")
        with open(zone, "w") as f:
            f.write("$ORIGIN spf.test.\n$TTL 300\n"
                    "@ IN SOA ns.spf.test. hostmaster.spf.test. "
                    "( 1 3600 600 86400 60 )\n  IN NS ns\nns IN A 127.0.0.1\n"
                    "lo   TXT \"v=spf1 ip4:127.0.0.0/8 -all\"\n"
                    "hard TXT \"v=spf1 ip4:192.0.2.1 -all\"\n"
                    "soft TXT \"v=spf1 ip4:192.0.2.1 ~all\"\n"
                    "temp TXT \"v=spf1 include:spf.broken.test -all\"\n")
        port = dns_fixture.free_port()
        nsd, _ = dns_fixture.start_nsd(tmp, port, zone, 1)
        self.addCleanup(lambda: (nsd.terminate(), nsd.wait(10)))
        g = self.gateway(tls=False, extra={"spf": {
            "enabled": True, "dns_servers": ["127.0.0.1:%d" % port],
            "timeout": "5s", "policy": {"softfail": "reject"}}}).start()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.ehlo("client.example.org")
            for sender, code, enh in (("a@hard.spf.test", 550, b"5.7.23"),
                                      ("a@soft.spf.test", 550, b"5.7.23"),
                                      ("a@temp.spf.test", 451, b"4.7.24")):
                c, text = s.mail(sender)
                self.assertEqual(c, code, (sender, text))
                self.assertIn(enh, text)
                s.rset()
            self.assertEqual(s.sendmail("a@lo.spf.test", ["bob@" + DOMAIN],
                                        "Subject: spf pass\r\n\r\nx\r\n"),
                             {})
        end = time.time() + 20
        found = None
        while found is None and time.time() < end:
            for path in maildir_all(self.dovecot, "bob"):
                if b"Subject: spf pass" in read(path):
                    found = read(path)
            time.sleep(0.1)
        self.assertIsNotNone(found, g.log())
        self.assertRegex(found, rb"Received-SPF: [Pp]ass ")

    def test_lmtp_probe_store_unreachable(self):
        g = Mxgwd(["127.0.0.1:%d" % free_port()], tls=False, extra={
            "recipient_validation": {"mode": "lmtp_probe", "timeout": "2s"}})
        self.addCleanup(g.cleanup)
        g.start()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.ehlo("client.example.org")
            s.mail("sender@example.org")
            code, text = s.rcpt("alice@" + DOMAIN)
            self.assertEqual(code, 451, text)
            self.assertIn(b"4.4.3", text)

    def test_sighup_reload_domains_and_refusals(self):
        g = self.gateway().start()

        def rcpt(addr):
            with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
                s.ehlo("client.example.org")
                s.mail("sender@example.org")
                return s.rcpt(addr)[0]
        self.assertEqual(rcpt("alice@other.test"), 554)
        # a new accepted domain reaches new sessions
        g.config["domains"] = [DOMAIN, "other.test"]
        g.write_config()
        g.signal(signal.SIGHUP)
        self.assertTrue(g.wait_log(r"reload: done"), g.log())
        self.assertEqual(rcpt("alice@other.test"), 250)
        # a file with an error is refused; the running configuration stays
        g.config["limits"] = {"max_conections": 5}
        g.write_config()
        g.signal(signal.SIGHUP)
        self.assertTrue(g.wait_log(r"reload: 1 error in .*: keeping the "
                                   r"running configuration"), g.log())
        self.assertIn("limits.max_conections: unknown key", g.log())
        self.assertEqual(rcpt("alice@other.test"), 250)
        # listeners cannot change without a restart
        del g.config["limits"]
        g.config["listeners"][0]["port"] = free_port()
        g.write_config()
        g.signal(signal.SIGHUP)
        self.assertTrue(g.wait_log(r"reload: .*: keeping the running "
                                   r"configuration", count=2), g.log())
        self.assertEqual(rcpt("alice@other.test"), 250)

    def test_sigterm_under_load_nothing_acked_is_lost(self):
        # The backend is down: everything acknowledged stays in the spool.
        down = Dovecot(users=("alice",))
        self.addCleanup(down.stop)
        g = Mxgwd(["127.0.0.1:%d" % down.port], tls=False)
        self.addCleanup(g.cleanup)
        g.start()
        senders = [Sender(g.port, "term%d" % i) for i in range(4)]
        for s in senders:
            s.start()
        time.sleep(1.5)
        g.signal(signal.SIGTERM)
        rc = g.wait(60)
        self.assertEqual(rc, 0, g.log())
        for s in senders:
            s.stop.set()
            s.join(60)
        acked = [t for s in senders for t in s.acked]
        self.assertGreater(len(acked), 5, g.log())
        sys.stderr.write("SIGTERM under load: %d messages acknowledged, %d "
                         "sessions refused or cut by the drain\n" %
                         (len(acked), sum(len(s.failed) for s in senders)))
        self.assertIn("draining", g.log())
        # after the drain nobody was served: the senders were refused
        for s in senders:
            self.assertIsNotNone(s.refused)
        spooled = b"".join(read(f) for f in g.spool_files())
        missing = [t for t in acked if ("Subject: %s\r\n" % t).encode()
                   not in spooled]
        self.assertEqual(missing, [], "acknowledged but not in the spool")
        # the backend comes up; a restart delivers every one of them
        down.start()
        g.start()
        end = time.time() + 60
        while time.time() < end:
            files = maildir_all(down, "alice")
            if len(files) >= len(acked):
                break
            time.sleep(0.2)
        got = b"".join(read(f) for f in maildir_all(down, "alice"))
        missing = [t for t in acked if ("Subject: %s\n" % t).encode()
                   not in got]
        self.assertEqual(missing, [], g.log()[-3000:])

    def test_sigterm_under_load_backend_up(self):
        # The store is up: at SIGTERM some messages are delivered, some are
        # being delivered, some wait; each acknowledged one is in the
        # Maildir or the spool, and after a restart in the Maildir.
        g = self.gateway(tls=False).start()
        senders = [Sender(g.port, "up%d" % i, rcpt="carol@" + DOMAIN)
                   for i in range(4)]
        for s in senders:
            s.start()
        time.sleep(1.5)
        g.signal(signal.SIGTERM)
        self.assertEqual(g.wait(60), 0, g.log())
        for s in senders:
            s.stop.set()
            s.join(60)
        acked = [t for s in senders for t in s.acked]
        self.assertGreater(len(acked), 5, g.log())

        def delivered():
            return b"".join(read(f) for f in maildir_all(self.dovecot,
                                                         "carol"))
        spooled = b"".join(read(f) for f in g.spool_files())
        got = delivered()
        missing = [t for t in acked
                   if ("Subject: %s\n" % t).encode() not in got
                   and ("Subject: %s\r\n" % t).encode() not in spooled]
        self.assertEqual(missing, [], "acknowledged but neither delivered "
                         "nor in the spool")
        in_spool = sum(1 for t in acked
                       if ("Subject: %s\n" % t).encode() not in got)
        sys.stderr.write("SIGTERM with the store up: %d acknowledged, %d "
                         "still in the spool at exit\n" % (len(acked),
                                                           in_spool))
        g.start()
        end = time.time() + 60
        while time.time() < end:
            got = delivered()
            missing = [t for t in acked
                       if ("Subject: %s\n" % t).encode() not in got]
            if not missing:
                break
            time.sleep(0.2)
        self.assertEqual(missing, [], g.log()[-3000:])

    def test_kill9_under_load_then_restart(self):
        # kill -9 while clients send: whatever got a 250 was durable; the
        # restart (queue recovery) delivers all of it.
        g = self.gateway(tls=False).start()
        senders = [Sender(g.port, "kill%d" % i, rcpt="alice@" + DOMAIN)
                   for i in range(4)]
        for s in senders:
            s.start()
        time.sleep(1.5)
        g.signal(signal.SIGKILL)
        g.wait(30)
        for s in senders:
            s.stop.set()
            s.join(60)
        acked = [t for s in senders for t in s.acked]
        self.assertGreater(len(acked), 5, g.log())
        g.start()
        end = time.time() + 60
        while time.time() < end:
            got = b"".join(read(f) for f in maildir_all(self.dovecot,
                                                         "alice"))
            missing = [t for t in acked
                       if ("Subject: %s\n" % t).encode() not in got]
            if not missing:
                break
            time.sleep(0.2)
        sys.stderr.write("kill -9 under load: %d acknowledged, %d missing "
                         "after the restart\n" % (len(acked), len(missing)))
        self.assertEqual(missing, [], g.log()[-3000:])

    def test_lmtp_starttls_required_and_verified(self):
        store = Dovecot(users=("alice",), ssl=True).start()
        self.addCleanup(store.stop)
        g = Mxgwd(["127.0.0.1:%d" % store.port], tls=False, extra={
            "lmtp": {"backends": ["127.0.0.1:%d" % store.port],
                     "starttls": "require", "tls_ca_file": store.ca,
                     "tls_servername": "store.example.test"}})
        self.addCleanup(g.cleanup)
        g.start()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            self.assertEqual(s.sendmail("sender@example.org",
                                        ["alice@" + DOMAIN],
                                        "Subject: over LMTPS\r\n\r\nx\r\n"),
                             {})
        self.assertTrue(g.wait_log(r"to=<alice@example\.test>.*status=sent"),
                        g.log())
        files = store.wait_files("alice", 1)
        self.assertEqual(len(files), 1)
        # Dovecot's Received header says the LMTP session was encrypted
        self.assertRegex(read(files[0]), rb"by store\.example\.test with LMTPS")

    def test_lmtp_starttls_wrong_name_is_not_delivered(self):
        store = Dovecot(users=("alice",), ssl=True).start()
        self.addCleanup(store.stop)
        g = Mxgwd(["127.0.0.1:%d" % store.port], tls=False, extra={
            "lmtp": {"backends": ["127.0.0.1:%d" % store.port],
                     "starttls": "require", "tls_ca_file": store.ca,
                     "tls_servername": "other.example.test"}})
        self.addCleanup(g.cleanup)
        g.start()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.sendmail("sender@example.org", ["alice@" + DOMAIN],
                       "Subject: wrong name\r\n\r\nx\r\n")
        self.assertTrue(g.wait_log(r"to=<alice@example\.test>.*"
                                   r"status=deferred"), g.log())
        self.assertEqual(store.maildir_files("alice"), [])

    def test_backend_down_deferred_then_delivered(self):
        store = Dovecot(users=("alice",))
        self.addCleanup(store.stop)
        g = Mxgwd(["127.0.0.1:%d" % store.port], tls=False)
        self.addCleanup(g.cleanup)
        g.start()
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            self.assertEqual(s.sendmail("sender@example.org",
                                        ["alice@" + DOMAIN],
                                        "Subject: while the store is down"
                                        "\r\n\r\nx\r\n"), {})
        self.assertTrue(g.wait_log(r"to=<alice@example\.test>.*"
                                   r"status=deferred"), g.log())
        store.start()
        self.assertTrue(g.wait_log(r"to=<alice@example\.test>.*status=sent",
                                   secs=30), g.log())
        files = store.wait_files("alice", 1)
        self.assertEqual(len(files), 1)
        self.assertIn(b"Subject: while the store is down", read(files[0]))


if __name__ == "__main__":
    require_mxgwd()
    unittest.main(verbosity=2)
