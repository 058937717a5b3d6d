# SPDX-License-Identifier: MIT
"""test_doctor.py: mxgw-doctor against real components on loopback (see
doctor_fixture.py): NSD serving a zone per incident, mxgw-example-smtpd
gateways, Dovecot LMTP, spools with deferred messages. Every test asserts
the finding and the fix an operator reads, and the exit status.

The gateway of the tests is mx.example.test at 43.207.242.167, the
deployment's address: it is DNS data only (no traffic leaves loopback).
"""
import os
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import doctor_fixture as F  # noqa: E402

IP = F.GATEWAY_IP
H = F.HOSTNAME


def closed_port():
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Base(unittest.TestCase):
    def doctor(self, *args, expect=None):
        rc, out, data = F.run_doctor(*args, json_out=True)
        if expect is not None:
            self.assertEqual(rc, expect, out)
        self.assertEqual(data["exit"], rc)
        return rc, data

    def one(self, data, check, substr, status=None):
        """The single finding of `check` whose finding text has substr."""
        fs = [f for f in F.findings(data, check) if substr in f["finding"]]
        self.assertEqual(len(fs), 1, "%r not found once in %s findings:\n%s"
                         % (substr, check, "\n".join(
                             f["status"] + " " + f["finding"]
                             for f in F.findings(data, check))))
        if status:
            self.assertEqual(fs[0]["status"], status, fs[0])
        return fs[0]


class DnsSpf(Base):
    @classmethod
    def setUpClass(cls):
        cls.nsd = F.Nsd().start()

    @classmethod
    def tearDownClass(cls):
        cls.nsd.stop()

    def dns(self, domain, *extra, **kw):
        return self.doctor("--dns-server", self.nsd.server, "--domain", domain,
                           "--hostname", H, "--public-ip", IP,
                           "--only", "dns,spf", *extra, **kw)

    def test_healthy_plus_mx_record_authorizes_the_gateway(self):
        # the deployment's record "v=spf1 +mx ~all": its +mx already
        # authorizes the gateway, which is the MX
        rc, data = self.dns("example.test", expect=0)
        self.one(data, "dns", "MX host mx.example.test (preference 10) -> "
                 "43.207.242.167: the gateway", "ok")
        f = self.one(data, "spf", "43.207.242.167 is authorized: pass, "
                     'matched "+mx" in the record of example.test', "ok")
        self.assertIn("SPF of example.test for 43.207.242.167 (outbound: "
                      "MAIL FROM postmaster@example.test", f["concerns"])
        # the trace shows which term matched
        self.assertIn("term   +mx: match (via MX host mx.example.test) -> pass",
                      f["detail"])
        # and the folklore is corrected explicitly
        self.assertIn("it plays no part in whether others can deliver TO "
                      "example.test", f["note"])
        # bounces (null sender): the host name's own record, HELO identity
        f = self.one(data, "spf", 'matched "a" in the record of '
                     'mx.example.test', "ok")
        self.assertIn("HELO mx.example.test", f["concerns"])
        self.assertEqual([x["status"] for x in data["findings"]],
                         ["ok"] * len(data["findings"]))

    def test_spf_without_the_gateway_names_the_term_to_add(self):
        rc, data = self.dns("nogw.test", expect=2)
        f = self.one(data, "spf", "43.207.242.167 is not authorized: fail, "
                     'decided by "-all" in the record of nogw.test', "fail")
        self.assertEqual(f["fix"], 'add ip4:43.207.242.167 to the SPF record '
                         'of nogw.test: "v=spf1 ip4:192.0.2.10 '
                         'ip4:43.207.242.167 -all"')
        self.assertIn("term   ip4:192.0.2.10: no match (43.207.242.167 is "
                      "not in 192.0.2.10)", f["detail"])
        self.assertIn("outbound only", f["note"])
        # the MX is fine: inbound mail is not affected by this record
        self.one(data, "dns", "MX host mx.example.test (preference 10) -> "
                 "43.207.242.167: the gateway", "ok")

    def test_mx_pointing_elsewhere(self):
        rc, data = self.dns("elsewhere.test", expect=2)
        f = self.one(data, "dns", "MX host mx.elsewhere.test (preference 10) "
                     "-> 198.51.100.7, not the gateway (43.207.242.167): mail "
                     "for the domain goes elsewhere", "fail")
        self.assertEqual(f["concerns"], "MX of elsewhere.test")
        self.assertEqual(f["fix"], 'publish "elsewhere.test. MX 10 '
                         'mx.example.test." and "mx.example.test. A '
                         '43.207.242.167"')
        # its SPF record authorizes the gateway by ip4: that is fine
        self.one(data, "spf", 'matched "ip4:43.207.242.167"', "ok")

    def test_two_spf_records(self):
        rc, data = self.dns("twospf.test", expect=2)
        f = self.one(data, "spf", "twospf.test publishes 2 SPF records: every "
                     "evaluation gives permerror (RFC 7208 4.5)", "fail")
        self.assertEqual(f["fix"], "publish a single SPF record for "
                         "twospf.test, merging the 2: \"v=spf1 +mx "
                         "include:_spf.twospf.test -all\"")
        f = self.one(data, "spf", "permerror (twospf.test has 2 SPF records "
                     "(RFC 7208 4.5))", "fail")

    def test_lookup_limit(self):
        rc, data = self.dns("limit.test", expect=2)
        f = self.one(data, "spf", "permerror (more than 10 DNS-querying "
                     "terms, at \"a:h11.limit.test\" in limit.test", "fail")
        self.assertIn("at most 10 DNS-querying terms", f["fix"])

    def test_no_spf_record(self):
        rc, data = self.dns("nospf.test", expect=2)
        f = self.one(data, "spf", "nospf.test publishes no SPF record: result "
                     "none for 43.207.242.167", "fail")
        self.assertEqual(f["fix"], 'publish a TXT record for nospf.test: '
                         '"v=spf1 mx ip4:43.207.242.167 -all"')

    def test_unknown_domain(self):
        rc, data = self.dns("nosuch.example.test", expect=2)
        f = self.one(data, "dns", "nosuch.example.test does not exist in DNS "
                     "(NXDOMAIN): nobody can deliver to it", "fail")
        self.assertEqual(f["fix"], 'publish "nosuch.example.test. MX 10 '
                         'mx.example.test." and "mx.example.test. A '
                         '43.207.242.167"')

    def test_text_output(self):
        rc, out, _ = F.run_doctor("--dns-server", self.nsd.server,
                                  "--domain", "nogw.test", "--hostname", H,
                                  "--public-ip", IP, "--only", "spf")
        self.assertEqual(rc, 2, out)
        self.assertIn("FAIL  spf         SPF of nogw.test for 43.207.242.167",
                      out)
        self.assertIn("fix: add ip4:43.207.242.167 to the SPF record of "
                      "nogw.test", out)
        self.assertNotIn("\033[", out)  # no colour when not on a terminal
        self.assertTrue(out.rstrip().endswith("1 ok, 0 warnings, 1 failure: "
                                              "exit 2"), out)


class Certs(Base):
    @classmethod
    def setUpClass(cls):
        cls.t = F.tls_fixtures()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.t, ignore_errors=True)

    def cert(self, cert, key, *extra, **kw):
        return self.doctor("--hostname", H, "--tls-cert", f"{self.t}/{cert}",
                           "--tls-key", f"{self.t}/{key}", "--ca-file",
                           f"{self.t}/root.pem", *extra, **kw)

    def test_good_pair(self):
        rc, data = self.cert("ec-fullchain.pem", "ec.key", expect=0)
        self.assertEqual(len(data["findings"]), 6)
        self.one(data, "cert", "covers mx.example.test", "ok")
        self.one(data, "cert", "chain complete: 2 certificates in the file, "
                 "verified up to the trusted root CN=MXGW Test Root CA", "ok")
        self.one(data, "cert", "matches the certificate (EC, 256 bits)", "ok")
        self.one(data, "cert", "mode 0600: readable by its owner only", "ok")

    def test_self_signed_localhost(self):
        rc, data = self.cert("localhost.pem", "localhost.key", expect=2)
        f = self.one(data, "cert", "does not cover mx.example.test: subject "
                     "CN=localhost, DNS names localhost", "fail")
        self.assertIn("certbot certonly -d mx.example.test", f["fix"])
        self.one(data, "cert", "self-signed (CN=localhost)", "fail")
        rc, data = self.cert("localhost.pem", "localhost.key",
                             "--allow-self-signed", expect=2)
        self.one(data, "cert", "self-signed (CN=localhost)", "warn")

    def test_world_readable_key(self):
        rc, data = self.cert("rsa-fullchain.pem", "world.key", expect=2)
        f = self.one(data, "cert", "mode 0644: readable by everyone", "fail")
        self.assertEqual(f["fix"], f"chmod 600 {self.t}/world.key")

    def test_key_mismatch(self):
        rc, data = self.cert("rsa-fullchain.pem", "mismatch.key", expect=2)
        f = self.one(data, "cert", "does not belong to the certificate", "fail")
        self.assertIn("openssl pkey -pubout", f["fix"])

    def test_incomplete_chain(self):
        rc, data = self.cert("leaf-only.pem", "rsa.key", expect=2)
        f = self.one(data, "cert", "chain incomplete: the issuer of the "
                     "certificate (CN=MXGW Test Intermediate CA) is neither in",
                     "fail")
        self.assertIn("append the intermediate certificate(s)", f["fix"])

    def test_expired_and_expiring(self):
        rc, data = self.cert("expired-fullchain.pem", "ec.key", expect=2)
        self.one(data, "cert", "expired on 2021-01-01 00:00 UTC", "fail")
        rc, data = self.cert("expiring-fullchain.pem", "ec.key", expect=1)
        f = self.one(data, "cert", "days left (warning below 21)", "warn")
        self.assertIn("renew", f["fix"])


class Listeners(Base):
    @classmethod
    def setUpClass(cls):
        cls.t = F.tls_fixtures()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.t, ignore_errors=True)

    def probe(self, srv_args, spec_suffix="", hostname=H, expect=None):
        with F.mxgwtest.Server(args=srv_args, hostname=hostname,
                               quiet=True) as srv:
            return self.doctor("--hostname", H, "--tls-cert",
                               f"{self.t}/ec-fullchain.pem", "--tls-key",
                               f"{self.t}/ec.key", "--only", "listener",
                               "--listen", f"127.0.0.1:{srv.port}" +
                               spec_suffix, expect=expect)

    def good(self):
        return ["--tls-cert", f"{self.t}/ec-fullchain.pem",
                "--tls-key", f"{self.t}/ec.key"]

    def test_good_starttls(self):
        rc, data = self.probe(self.good(), expect=0)
        self.one(data, "listener", "220 greeting, STARTTLS offered, TLSv1.3",
                 "ok")
        self.one(data, "listener", "serves CN=mx.example.test", "ok")

    def test_serves_localhost_certificate(self):
        t = self.t
        rc, data = self.probe(["--tls-cert", f"{t}/localhost.pem",
                               "--tls-key", f"{t}/localhost.key"],
                              hostname="localhost", expect=2)
        f = self.one(data, "listener", "serves CN=localhost, self-signed "
                     "(SHA-256 ", "fail")
        self.assertIn(f"not the certificate in {t}/ec-fullchain.pem "
                      "(CN=mx.example.test, SHA-256 ", f["finding"])
        self.assertEqual(f["fix"], f"make the gateway serve {t}/ec-fullchain"
                         ".pem: check that its certificate setting names "
                         "that file, then reload (SIGHUP) or restart it")
        # the full fingerprints, to compare with the gateway's log
        fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                             "-sha256", "-in", f"{t}/localhost.pem"],
                            capture_output=True, text=True).stdout
        self.assertIn(fp.strip().split("=", 1)[1], f["detail"][0])

    def test_starttls_off(self):
        rc, data = self.probe([], expect=2)
        f = self.one(data, "listener", "STARTTLS is not offered (EHLO lists: "
                     "PIPELINING", "fail")
        self.assertIn("senders deliver in cleartext", f["finding"])
        self.assertEqual(f["fix"], "give this listener the certificate and "
                         f"key ({self.t}/ec-fullchain.pem) so that it offers "
                         "STARTTLS")

    def test_submission_requires_tls(self):
        rc, data = self.probe(self.good() + ["--tls-policy", "encrypt"],
                              "/submission", expect=0)
        self.one(data, "listener", "MAIL before STARTTLS refused (530 5.7.0",
                 "ok")
        rc, data = self.probe(self.good(), "/submission", expect=2)
        f = self.one(data, "listener", "accepts MAIL before STARTTLS (250",
                     "fail")
        self.assertIn('TLS policy "encrypt"', f["fix"])

    def test_smtps(self):
        rc, data = self.probe(self.good() + ["--smtps"], "/smtps", expect=0)
        self.one(data, "listener", "implicit TLS (TLSv1.3", "ok")

    def test_closed_port(self):
        port = closed_port()
        rc, data = self.doctor("--listen", f"127.0.0.1:{port}", expect=2)
        f = self.one(data, "listener", f"not reachable: connect to "
                     f"127.0.0.1:{port}: Connection refused", "fail")
        self.assertIn("start the gateway", f["fix"])


class Backend(Base):
    @classmethod
    def setUpClass(cls):
        cls.dc = F.lmtp_fixture.Dovecot().start()

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()

    def test_closed_lmtp_port(self):
        port = closed_port()
        rc, data = self.doctor("--backend", f"127.0.0.1:{port}", expect=2)
        f = self.one(data, "backend", f"not reachable: connect to "
                     f"127.0.0.1:{port}: Connection refused", "fail")
        self.assertEqual(f["concerns"], f"LMTP backend 127.0.0.1:{port}")
        self.assertIn("start the LMTP server (Dovecot: protocols = lmtp",
                      f["fix"])

    def test_dovecot_lhlo(self):
        rc, data = self.doctor("--backend", f"127.0.0.1:{self.dc.port}",
                               expect=0)
        self.one(data, "backend", "reachable: 220 ", "ok")
        rc, data = self.doctor("--backend", f"unix:{self.dc.socket}",
                               expect=0)
        self.one(data, "backend", "LHLO accepted", "ok")

    def test_probe_delivery(self):
        before = len(self.dc.maildir_files("alice"))
        rc, data = self.doctor("--backend", f"127.0.0.1:{self.dc.port}",
                               "--probe-rcpt", "alice@example.test",
                               "--domain", "example.test", "--only",
                               "backend", expect=0)
        self.one(data, "backend", "probe delivery to alice@example.test: 250",
                 "ok")
        self.assertEqual(len(self.dc.wait_files("alice", before + 1)),
                         before + 1)
        rc, data = self.doctor("--backend", f"127.0.0.1:{self.dc.port}",
                               "--probe-rcpt", "nobody@example.test",
                               "--only", "backend", expect=2)
        f = self.one(data, "backend", "probe delivery to nobody@example.test: "
                     "550 5.1.1", "fail")
        self.assertIn("create the mailbox", f["fix"])


class Queue(Base):
    def test_deferred_messages(self):
        spool, ids = F.make_spool(3, 7200)
        try:
            rc, data = self.doctor("--spool", spool, expect=2)
            f = self.one(data, "queue", f"3 deferred; oldest {ids[0]}, ",
                         "fail")
            # ages in whole minutes: allow for a slow run
            self.assertRegex(f["finding"], r"^3 deferred; oldest [0-9A-F]+, "
                             r"waiting 2h0[0-2]m, 1 attempt, next in \d+m, "
                             r"last error <user0@example.test>: 451 4.4.1 "
                             r"connect to 127.0.0.1:24: Connection refused "
                             r"\(incoming 0, active 0, deferred 3, hold 0, "
                             r"failed 0, corrupt 0\)$")
            self.assertEqual(f["fix"], "remove the cause of the last error "
                             "(see the backend check), then retry now: "
                             f"mxgw-queue --spool {spool} requeue ALL --state "
                             "deferred")
        finally:
            shutil.rmtree(os.path.dirname(spool), ignore_errors=True)

    def test_young_deferred_is_a_warning(self):
        spool, ids = F.make_spool(1, 300, 452, "4.2.2", "mailbox full")
        try:
            rc, data = self.doctor("--spool", spool, expect=1)
            self.one(data, "queue", "last error <user0@example.test>: 452 "
                     "4.2.2 mailbox full", "warn")
        finally:
            shutil.rmtree(os.path.dirname(spool), ignore_errors=True)

    def test_missing_spool(self):
        rc, data = self.doctor("--spool", "/nonexistent/spool", expect=2)
        self.one(data, "queue", "cannot open the spool: not found", "fail")


class Healthy(Base):
    """Everything at once: good zone, good certificate served, Dovecot,
    empty queue: all ok, exit 0; and the same through --config."""

    def test_all_ok(self):
        nsd = F.Nsd().start()
        t = F.tls_fixtures()
        dc = F.lmtp_fixture.Dovecot().start()
        spool, _ = F.make_spool(0, 0)
        try:
            with F.mxgwtest.Server(args=["--tls-cert", f"{t}/ec-fullchain.pem",
                                         "--tls-key", f"{t}/ec.key"],
                                   quiet=True) as srv:
                args = ["--dns-server", nsd.server, "--domain", "example.test",
                        "--hostname", H, "--public-ip", IP,
                        "--listen", f"127.0.0.1:{srv.port}/smtp",
                        "--tls-cert", f"{t}/ec-fullchain.pem",
                        "--tls-key", f"{t}/ec.key",
                        "--ca-file", f"{t}/root.pem",
                        "--backend", f"127.0.0.1:{dc.port}",
                        "--spool", spool]
                rc, data = self.doctor(*args, expect=0)
                checks = {f["check"] for f in data["findings"]}
                self.assertEqual(checks, {"dns", "spf", "cert", "listener",
                                          "backend", "queue"})
                bad = [f for f in data["findings"] if f["status"] != "ok"]
                self.assertEqual(bad, [])
                self.assertEqual(data["counts"], {"ok": len(data["findings"]),
                                                  "warn": 0, "fail": 0})
                rc, out, _ = F.run_doctor(*args)
                self.assertEqual(rc, 0, out)
                self.assertTrue(out.rstrip().endswith(
                    "0 warnings, 0 failures: exit 0"), out)

                # mxgwd's configuration gives the same checks
                cfg = os.path.join(t, "mxgwd.json")
                with open(cfg, "w") as f:
                    f.write(f"""{{
  "hostname": "{H}",
  "domains": ["*.example.test", "example.test"],
  "listeners": [
    {{"address": "127.0.0.1", "port": {srv.port}, "mode": "smtp",
      "tls": {{"cert_file": "ec-fullchain.pem", "key_file": "ec.key"}}}}
  ],
  "spool": {{"directory": "{spool}"}},
  "lmtp": {{"backends": ["127.0.0.1:{dc.port}"]}},
  "spf": {{"dns_servers": ["{nsd.server}"]}}
}}
""")
                rc, data2 = self.doctor("--config", cfg, "--public-ip", IP,
                                        "--ca-file", f"{t}/root.pem",
                                        expect=0)
                self.assertEqual([(f["check"], f["concerns"], f["status"])
                                  for f in data2["findings"]],
                                 [(f["check"], f["concerns"], f["status"])
                                  for f in data["findings"]])
                # bare `mxgw-doctor` (no flag) reads $MXGWD_CONFIG: the same
                # backend and queue findings as with --config
                env = dict(os.environ, MXGWD_CONFIG=cfg)
                rc3, _, data3 = F.run_doctor("--only", "backend,queue",
                                             json_out=True, env=env)
                self.assertEqual(rc3, 0, data3)
                self.assertEqual(
                    sorted((f["check"], f["concerns"], f["status"])
                           for f in data3["findings"]),
                    sorted((f["check"], f["concerns"], f["status"])
                           for f in data2["findings"]
                           if f["check"] in ("backend", "queue")))
                # and without it (and no /etc/mxgwd here): nothing to check
                env.pop("MXGWD_CONFIG")
                if not os.path.exists("/etc/mxgwd/mxgwd.json"):
                    rc4, out4, _ = F.run_doctor(env=env)
                    self.assertEqual(rc4, 64, out4)
                    self.assertIn("nothing to check", out4)
        finally:
            dc.stop()
            nsd.stop()
            shutil.rmtree(t, ignore_errors=True)
            shutil.rmtree(os.path.dirname(spool), ignore_errors=True)


class RoundTrip(Base):
    """A test message through mxgwd (tools/mxgwd), configured by a JSON file
    that the doctor reads too, to Dovecot; the doctor waits for the delivery
    line in mxgwd's log."""

    @classmethod
    def setUpClass(cls):
        cls.mxgwd = os.environ.get("MXGWD", "")
        if not cls.mxgwd or not os.access(cls.mxgwd, os.X_OK):
            raise unittest.SkipTest("MXGWD not set (mxgwd not built)")
        cls.t = F.tls_fixtures()
        cls.dc = F.lmtp_fixture.Dovecot().start()

    @classmethod
    def tearDownClass(cls):
        cls.dc.stop()
        shutil.rmtree(cls.t, ignore_errors=True)

    def gateway(self, name, backend, fmt="text"):
        """Start mxgwd with its config in self.t/NAME/; returns (proc,
        config file, log file)."""
        import json
        import time
        d = os.path.join(self.t, name)
        os.mkdir(d)
        for f in ("ec-fullchain.pem", "ec.key"):
            shutil.copy2(os.path.join(self.t, f), d)
        port = closed_port()
        cfg = {"hostname": H,
               "listeners": [{"address": "127.0.0.1", "port": port,
                              "mode": "smtp",
                              "tls": {"policy": "may",
                                      "cert_file": "ec-fullchain.pem",
                                      "key_file": "ec.key"}}],
               "domains": ["example.test"], "spf": {"enabled": False},
               "spool": {"directory": "spool"},
               "lmtp": {"backends": [backend]},
               "logging": {"outputs": [{"destination": "file",
                                        "path": "mxgwd.log",
                                        "format": fmt}]}}
        conf = os.path.join(d, "mxgwd.json")
        with open(conf, "w") as f:
            json.dump(cfg, f)
        err = open(os.path.join(d, "stderr"), "w")
        self.addCleanup(err.close)
        proc = subprocess.Popen([self.mxgwd, "--config", conf],
                                stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=F.mxgwtest._die_with_parent)
        self.addCleanup(self.stop, proc)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        return proc, conf, os.path.join(d, "mxgwd.log")

    @staticmethod
    def stop(proc):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def test_delivered(self):
        for fmt in ("text", "json"):
            before = len(self.dc.maildir_files("alice"))
            proc, conf, log = self.gateway("ok-" + fmt,
                                           f"127.0.0.1:{self.dc.port}", fmt)
            rc, data = self.doctor("--config", conf, "--ca-file",
                                   f"{self.t}/root.pem", "--round-trip",
                                   "alice@example.test", "--only",
                                   "cert,listener,backend,queue,roundtrip",
                                   expect=0)
            f = self.one(data, "roundtrip", "delivered in ", "ok")
            self.assertRegex(f["finding"], r"^delivered in \d+\.\d s \(over "
                             r"TLS\): queued as [0-9A-F]+, then status=sent")
            self.assertIn(f"(log {log})", f["concerns"])
            self.assertEqual(len(self.dc.wait_files("alice", before + 1)),
                             before + 1)

    def test_backend_down(self):
        port = closed_port()
        proc, conf, log = self.gateway("down", f"127.0.0.1:{port}")
        rc, data = self.doctor("--config", conf, "--round-trip",
                               "alice@example.test", "--round-trip-wait",
                               "15000", "--only", "backend,roundtrip",
                               expect=2)
        self.one(data, "backend", "Connection refused", "fail")
        f = self.one(data, "roundtrip", "then not delivered: status=deferred",
                     "fail")
        self.assertRegex(f["finding"], r"^queued as [0-9A-F]+, then not "
                         r"delivered: status=deferred")
        self.assertIn("see the backend and queue findings", f["fix"])


if __name__ == "__main__":
    unittest.main()
