# SPDX-License-Identifier: MIT
"""test_mxgwd_sni.py: several certificates per listener
(listeners[].tls.certificates), as an operator checks them with
`openssl s_client -starttls smtp`:

  - two names with their own certificates (server_names): each name gets
    its certificate, an unknown name (and no SNI) the default one;
  - an RSA default (tls.cert_file) beside an ECDSA default (certificates[]
    without server_names): a client that offers only ECDSA signature
    algorithms (TLS 1.3) or only ECDSA cipher suites (TLS 1.2) gets the
    ECDSA certificate, one that offers only RSA gets the RSA one;
  - --check-config names the array index of a bad pair (key mode, name not
    covered, a second certificate of the same key type for a name, unknown
    keys, bad server names);
  - SIGHUP after one pair's files were replaced serves the new certificate
    for that name, keeps the other, and a session in progress goes on;
    the periodic file check (tls_check_interval) reloads a pair of
    certificates[] without a signal.

The certificates are made at test time with openssl. The LMTP store is a
private Dovecot (tests/lmtp/lmtp_fixture.py). Debian's /usr/bin/python3,
unittest, standard library only.
"""
import json
import os
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mxgwd_fixture import (DOMAIN, HOSTNAME, Dovecot, Mxgwd,  # noqa: E402
                           cert_fingerprint, check_config, make_cert,
                           require_mxgwd)


def make_rsa_cert(directory, name, cn=HOSTNAME, key_mode=0o600):
    """A self-signed RSA-2048 certificate for cn: (cert_file, key_file)."""
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "2", "-subj", "/CN=" + cn, "-addext",
                    "subjectAltName=DNS:" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, key_mode)
    return cert, key


def served(port, servername=None, extra=()):
    """(fingerprint, s_client output) of the certificate a new STARTTLS
    session gets; fingerprint None when the handshake failed."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
           "-starttls", "smtp"]
    if servername:
        cmd += ["-servername", servername]
    else:
        cmd += ["-noservername"]
    p = subprocess.run(cmd + list(extra), input=b"QUIT\r\n",
                       capture_output=True, timeout=30)
    x = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                        "-sha256"], input=p.stdout, capture_output=True,
                       timeout=30)
    out = x.stdout.decode().strip()
    text = p.stdout.decode(errors="replace") + p.stderr.decode(
        errors="replace")
    return (out.split("=", 1)[1] if "=" in out else None), text


class SniGateway(unittest.TestCase):
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

    def two_names(self, g):
        """certificates[0] for mail.a.test, certificates[1] for
        mail.b.test and *.b.test, beside the default (mx.gw.test)."""
        ca, ka = make_cert(g.dir, "a", cn="mail.a.test")
        cb, kb = make_cert(g.dir, "b", cn="*.b.test")
        g.config["listeners"][0]["tls"]["certificates"] = [
            {"cert_file": ca, "key_file": ka, "server_names": ["mail.a.test"]},
            {"cert_file": "b-cert.pem", "key_file": "b-key.pem",
             "server_names": ["mail.b.test", "*.b.test"]}]
        return (ca, ka), (cb, kb)

    def test_each_name_gets_its_certificate(self):
        g = self.gateway()
        (ca, _), (cb, _) = self.two_names(g)
        g.start()
        default = cert_fingerprint(g.cert)
        fa, fb = cert_fingerprint(ca), cert_fingerprint(cb)
        self.assertEqual(len({default, fa, fb}), 3)
        self.assertEqual(served(g.port, "mail.a.test")[0], fa)
        self.assertEqual(served(g.port, "MAIL.A.TEST")[0], fa)
        self.assertEqual(served(g.port, "mail.b.test")[0], fb)
        self.assertEqual(served(g.port, "other.b.test")[0], fb)
        self.assertEqual(served(g.port, "unknown.example")[0], default)
        self.assertEqual(served(g.port, HOSTNAME)[0], default)
        self.assertEqual(served(g.port, None)[0], default)
        # a message through the name-selected certificate is delivered
        ctx = ssl.create_default_context(cafile=ca)
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s._host = "mail.a.test"  # smtplib's SNI name and name check
            s.starttls(context=ctx)  # verified against mail.a.test's own
            self.assertEqual(s.sendmail("sender@example.org",
                                        ["alice@" + DOMAIN],
                                        "Subject: via mail.a.test\r\n\r\n"
                                        "x\r\n"), {})
        self.assertTrue(g.wait_log(r"to=<alice@example\.test>.*status=sent",
                                   secs=30), g.log())
        # --check-config lists the pairs
        rc, out, err = check_config(g.conf)
        self.assertEqual(rc, 0, err)
        self.assertIn(" cert=%s cert=%s(mail.a.test) cert=%s(mail.b.test,"
                      "*.b.test)\n" % (g.cert, ca, cb), out)

    def test_rsa_and_ecdsa_chosen_per_client(self):
        g = self.gateway()
        rsa_c, rsa_k = make_rsa_cert(g.dir, "rsa")
        ec_c, ec_k = make_cert(g.dir, "ec")
        g.config["listeners"][0]["tls"] = {
            "policy": "may", "cert_file": rsa_c, "key_file": rsa_k,
            "certificates": [{"cert_file": ec_c, "key_file": ec_k}]}
        g.start()
        rsa, ec = cert_fingerprint(rsa_c), cert_fingerprint(ec_c)
        self.assertNotEqual(rsa, ec)
        cases = [
            # TLS 1.3: the signature algorithms decide
            (["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"], ec),
            (["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256"], rsa),
            # TLS 1.2: the cipher suites decide
            (["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"], ec),
            (["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"], rsa),
            (["-tls1_2", "-sigalgs", "RSA+SHA256"], rsa),
        ]
        for extra, want in cases:
            fp, text = served(g.port, HOSTNAME, extra)
            self.assertEqual(fp, want, "%s:\n%s" % (extra, text[-2000:]))

    def test_sighup_replaces_one_pair_session_goes_on(self):
        g = self.gateway(extra={"tls_check_interval": 0})
        (ca, ka), (cb, kb) = self.two_names(g)
        g.start()
        old_a, old_b = cert_fingerprint(ca), cert_fingerprint(cb)
        default = cert_fingerprint(g.cert)
        self.assertEqual(served(g.port, "mail.a.test")[0], old_a)
        # a session with mail.a.test's certificate, across the reload
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = smtplib.SMTP("127.0.0.1", g.port, timeout=30)
        s._host = "mail.a.test"
        s.starttls(context=ctx)
        der = s.sock.getpeercert(binary_form=True)
        self.assertEqual(s.ehlo()[0], 250)
        self.assertEqual(s.mail("sender@example.org")[0], 250)
        self.assertEqual(s.rcpt("alice@" + DOMAIN)[0], 250)
        # a renewal tool writes new files and renames them over the old
        nc, nk = make_cert(g.dir, "a-renewed", cn="mail.a.test")
        os.rename(nk, ka)
        os.rename(nc, ca)
        new_a = cert_fingerprint(ca)
        self.assertNotEqual(new_a, old_a)
        # no periodic check (tls_check_interval 0): still the old one
        self.assertEqual(served(g.port, "mail.a.test")[0], old_a)
        g.signal(signal.SIGHUP)
        self.assertTrue(g.wait_log(r"reload: done"), g.log())
        self.assertIn("reload: listeners[0] certificate %s for mail.a.test"
                      % ca, g.log())
        self.assertEqual(served(g.port, "mail.a.test")[0], new_a)
        self.assertEqual(served(g.port, "mail.b.test")[0], old_b)
        self.assertEqual(served(g.port, "unknown.example")[0], default)
        # the session from before goes on, with the old certificate
        code, _ = s.data("Subject: across the reload\r\n\r\nx\r\n")
        self.assertEqual(code, 250)
        s.quit()
        x = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout",
                            "-fingerprint", "-sha256"], input=der,
                           capture_output=True, check=True)
        self.assertEqual(x.stdout.decode().strip().split("=", 1)[1], old_a)
        self.assertTrue(g.wait_log(r"to=<alice@example\.test>.*status=sent",
                                   secs=30), g.log())

    def test_file_check_reloads_a_certificates_pair(self):
        g = self.gateway(extra={"tls_check_interval": "250ms"})
        (ca, ka), (cb, kb) = self.two_names(g)
        g.start()
        old_b = cert_fingerprint(cb)
        self.assertEqual(served(g.port, "mail.b.test")[0], old_b)
        time.sleep(0.5)
        nc, nk = make_cert(g.dir, "b-renewed", cn="*.b.test")
        os.rename(nk, kb)
        os.rename(nc, cb)
        new_b = cert_fingerprint(cb)
        self.assertNotEqual(new_b, old_b)
        end = time.time() + 20
        got = None
        while time.time() < end:
            got = served(g.port, "mail.b.test")[0]
            if got == new_b:
                break
            time.sleep(0.3)
        self.assertEqual(got, new_b, g.log())
        self.assertEqual(served(g.port, "mail.a.test")[0],
                         cert_fingerprint(ca))


class SniCheckConfig(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="mxgwd-sni.")

    def tearDown(self):
        shutil.rmtree(self.d, ignore_errors=True)

    def config(self, tls):
        cfg = {
            "hostname": HOSTNAME,
            "listeners": [{"address": "127.0.0.1", "port": 2525,
                           "tls": tls}],
            "domains": ["example.test"],
            "spool": {"directory": os.path.join(self.d, "spool")},
            "lmtp": {"backends": ["127.0.0.1:24"]},
        }
        path = os.path.join(self.d, "mxgwd.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        return path

    def test_bad_pairs_name_their_index(self):
        cert, key = make_cert(self.d, "gw")
        ca, ka = make_cert(self.d, "a", cn="mail.a.test")
        cb, kb = make_cert(self.d, "b", cn="mail.b.test", key_mode=0o644)
        cc, kc = make_cert(self.d, "c", cn="mail.c.test")
        ec, ek = make_cert(self.d, "ec2")
        path = self.config({
            "policy": "may", "cert_file": cert, "key_file": key,
            "certificates": [
                {"cert_file": ca, "key_file": ka,
                 "server_names": ["mail.a.test"]},
                {"cert_file": cb, "key_file": kb,
                 "server_names": ["mail.b.test"]},
                # does not cover the name it is listed for
                {"cert_file": cc, "key_file": kc,
                 "server_names": ["mail.d.test"]},
                # a second ECDSA default beside tls.cert_file's
                {"cert_file": ec, "key_file": ek},
                {"cert_file": ca, "key_file": ka, "server_name": ["x.test"],
                 "server_names": ["bad name", "mail.a.test", "MAIL.A.test"]},
                "a.pem",
                {"key_file": ka},
                {"cert_file": ca, "server_names": []},
            ]})
        rc, out, err = check_config(path)
        self.assertEqual(rc, 1, out)
        p = "listeners[0].tls.certificates"
        self.assertIn(
            "%s[1].key_file: %s: private key file mode 0644 is readable by "
            "group and others; chmod 600 %s" % (p, kb, kb), err)
        self.assertRegex(err, r"%s\[2\]\.cert_file: %s: .*mail\.d\.test"
                         % (p.replace("[", r"\[").replace("]", r"\]"), cc))
        self.assertIn("%s[3].cert_file: %s: the default name already has an "
                      "EC certificate (from %s)" % (p, ec, cert), err)
        self.assertIn('%s[4].server_name: unknown key (did you mean '
                      '"server_names"?)' % p, err)
        self.assertIn('%s[4].server_names[0]: "bad name" is not a host name'
                      % p, err)
        self.assertIn('%s[4].server_names[2]: "mail.a.test" is listed twice'
                      % p, err)
        self.assertIn("%s[5]: must be an object" % p, err)
        self.assertIn("%s[6].cert_file: missing (required)" % p, err)
        self.assertIn("%s[7].server_names: must not be empty" % p, err)
        # the good pair is not blamed
        self.assertNotIn("%s[0]" % p, err)
        # mxgwd --config refuses to start on the same errors
        p2 = subprocess.run([require_mxgwd(), "--config", path],
                            capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p2.returncode, 0)
        self.assertIn("%s[1].key_file" % p, p2.stderr)

    def test_certificates_without_cert_file(self):
        """Only tls.certificates: an RSA and an ECDSA default pair."""
        rc_, rk = make_rsa_cert(self.d, "rsa")
        ec, ek = make_cert(self.d, "ec")
        path = self.config({"certificates": [
            {"cert_file": "rsa-cert.pem", "key_file": "rsa-key.pem"},
            {"cert_file": ec, "key_file": ek}]})
        rc, out, err = check_config(path)
        self.assertEqual(rc, 0, err)
        # no policy given: "may" because there are certificates
        self.assertIn("listener 127.0.0.1:2525 mode=smtp tls=may cert=%s "
                      "cert=%s\n" % (rc_, ec), out)
        # an RSA default that does not cover the hostname is refused
        other, ok_ = make_rsa_cert(self.d, "other", cn="other.test")
        path = self.config({"certificates": [
            {"cert_file": other, "key_file": ok_}]})
        rc, out, err = check_config(path)
        self.assertEqual(rc, 1, out)
        self.assertIn("listeners[0].tls.certificates[0].cert_file: %s: "
                      % other, err)


if __name__ == "__main__":
    require_mxgwd()
    unittest.main(verbosity=2)
