# SPDX-License-Identifier: MIT
"""Integration: Postfix's SMTP client delivers to mxgw-example-smtpd over
STARTTLS, verifying the certificate.

A private Postfix instance (the one of test_postfix_relay.py: own
main.cf/master.cf, queue and maillog under a temp directory, 127.0.0.1
only, no DNS) relays to relayhost = [127.0.0.1]:PORT of the example server,
which serves the test PKI's RSA certificate for mx.example.test. A TLS
policy for that next hop says "verify match=mx.example.test" with
smtp_tls_CAfile = the test root, so Postfix checks the chain and the name.
One message is submitted with sendmail; the test waits for Postfix's
"Verified TLS connection established to 127.0.0.1[127.0.0.1]:PORT: TLSv1.x
with cipher ..." and status=sent with the example's queue id, then checks
the stored file: Received says ESMTPS with the protocol and cipher Postfix
logged. Then the policy is changed to a name the certificate does not cover
(postfix reload): the next message must NOT be delivered (Postfix defers
it: "Server certificate not verified"), which shows the first check was
real. Needs root.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxgwtest  # noqa: E402
import test_postfix_relay as pfr  # noqa: E402

NAME = mxgwtest.TLS_NAME


class TLSPostfix(pfr.PostfixInstance):
    def __init__(self, root, relay_port, cafile, match):
        super().__init__(root, relay_port)
        self.cafile = cafile
        self.match = match

    def policy(self):
        return ("inline:{ {[127.0.0.1]:%d = verify match=%s} }"
                % (self.relay_port, self.match))

    def setup(self):
        super().setup()
        path = os.path.join(self.conf, "main.cf")
        with open(path) as f:
            text = f.read()
        text = re.sub(r"(?m)^smtp_tls_security_level = .*$",
                      "smtp_tls_security_level = encrypt", text)
        text += ("# TLS to the example server, verifying its certificate\n"
                 "smtp_tls_CAfile = %s\n"
                 "smtp_tls_policy_maps = %s\n"
                 "smtp_tls_loglevel = 1\n"
                 "smtp_tls_session_cache_database =\n"
                 % (self.cafile, self.policy()))
        with open(path, "w") as f:
            f.write(text)
        # the TLS client needs tlsmgr (entropy, session cache)
        with open(os.path.join(self.conf, "master.cf"), "a") as f:
            f.write("tlsmgr    unix  -       -       n       1000?   1"
                    "       tlsmgr\n")

    def set_match(self, match):
        self.match = match
        p = subprocess.run([pfr.POSTCONF, "-c", self.conf, "-e",
                            "smtp_tls_policy_maps = " + self.policy()],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        rc, out = self.run("reload")
        assert rc == 0, out


def sendmail(pf, subject, rcpt):
    msg = (b"From: Alice <alice@example.org>\n"
           b"To: <" + rcpt.encode() + b">\n"
           b"Subject: " + subject.encode() + b"\n\n"
           b"Hello from Postfix over TLS.\n")
    p = subprocess.run([pfr.SENDMAIL, "-C", pf.conf, "-i", "-f",
                        "alice@example.org", "--", rcpt], input=msg,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, (p.stdout, p.stderr)


def main():
    for tool in (pfr.POSTFIX, pfr.SENDMAIL, pfr.POSTCONF, "openssl"):
        mxgwtest.require_tool(tool)
    if os.geteuid() != 0:
        mxgwtest.skip("a private Postfix instance needs root")
    mxgwtest.overall_timeout(240)
    root = mxgwtest.make_tempdir("mxgw-tlspf-")
    os.chmod(root, 0o755)  # Postfix daemons run as user postfix
    pf = None
    try:
        fx = mxgwtest.tls_fixtures(os.path.join(root, "fx"))
        pf_root = os.path.join(root, "pf")
        os.mkdir(pf_root)
        args = ["--tls-cert", os.path.join(fx, "rsa-fullchain.pem"),
                "--tls-key", os.path.join(fx, "rsa.key")]
        with mxgwtest.Server(args) as srv:
            pf = TLSPostfix(pf_root, srv.port, os.path.join(fx, "root.pem"),
                            NAME)
            pf.start()
            sendmail(pf, "postfix over tls", "bob@example.test")
            sent_pat = (r"to=<bob@example\.test>, relay=127\.0\.0\.1"
                        r"\[127\.0\.0\.1\]:%d,.*status=sent \(250 2\.0\.0 "
                        r"Ok: queued as ([0-9A-Za-z]+)\)" % srv.port)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                m = re.search(sent_pat, pf.log())
                if m:
                    break
                time.sleep(0.2)
            assert m, "no status=sent:\n%s\nexample log:\n%s" % (
                pf.log(), srv.log())
            qid = m.group(1)
            tls = re.search(r"Verified TLS connection established to "
                            r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: (TLSv[\d.]+) "
                            r"with cipher (\S+)" % srv.port, pf.log())
            assert tls, pf.log()
            print("  postfix:", tls.group(0))
            hdr, msg = mxgwtest.read_messages(srv)[qid]
            line = hdr.decode()
            print("  stored:", line)
            assert re.search(r"\bwith ESMTPS\b", line), line
            assert "(using %s with cipher %s)" % (tls.group(1), tls.group(2)) \
                in line, line
            assert "from %s" % pfr.PF_HOSTNAME in line, line
            assert msg.endswith(b"Hello from Postfix over TLS.\r\n"), msg
            assert "TLS connection established" in srv.log()

            # The same Postfix, told to expect a name the certificate does
            # not cover, must refuse to deliver.
            pf.set_match("wrong.example.net")
            n = len(pf.log())
            sendmail(pf, "must not be delivered", "carol@example.test")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if re.search(r"to=<carol@example\.test>.*status=deferred",
                             pf.log()[n:]):
                    break
                time.sleep(0.2)
            later = pf.log()[n:]
            m = re.search(r"to=<carol@example\.test>.*status=deferred.*"
                          r"certificate.*", later)
            assert m, later
            print("  postfix:", m.group(0))
            assert "status=sent" not in later, later
            assert len(srv.eml_files()) == 1, srv.entries()
            pf.stop()
            assert srv.stop() == 0
    finally:
        try:
            if pf is not None:
                pf.stop()
        finally:
            mxgwtest.remove_tree(root)
    print("ok: Postfix delivered over verified TLS to the example server, "
          "and refused a certificate for another name")
    return 0


if __name__ == "__main__":
    sys.exit(main())
