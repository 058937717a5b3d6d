# SPDX-License-Identifier: MIT
"""Integration: STARTTLS and implicit TLS of mxgw-example-smtpd, real peers.

Certificates are generated at test time (tests/tls/gen-fixtures.sh: a test
root CA, an intermediate, an RSA-2048 leaf for mx.example.test and
smtp.example.test served with the intermediate). Then, each against its own
example server on a free 127.0.0.1 port:

 1. openssl s_client -starttls smtp -servername mx.example.test: the served
    subject, SAN list and chain (leaf, intermediate) are the configured
    ones, the chain verifies against the test root and the host name
    matches (and a wrong name is reported as a mismatch: the check works);
 2. swaks --tls delivers; the stored Received header says "with ESMTPS" and
    names the protocol and cipher swaks negotiated;
 3. Python smtplib starttls() with a context that trusts only the test root
    and checks the host name delivers; STARTTLS is offered before TLS and
    not after it; a client expecting another name refuses the certificate;
 4. implicit TLS (--smtps, smtplib.SMTP_SSL) delivers; no plaintext greeting
    and no STARTTLS there;
 5. --tls-policy encrypt: MAIL before STARTTLS gets 530 5.7.0, after it
    works;
 6. plaintext pipelined in the same packet as STARTTLS is never executed:
    after the handshake the session is fresh (MAIL without EHLO gets 503),
    the injected MAIL never reaches the log as a command and gets no reply;
 7. broken peers: garbage instead of a ClientHello closes that session at
    once, a client stalling mid-handshake (STARTTLS and implicit TLS) is
    dropped after --timeout, and meanwhile and afterwards other clients are
    served;
 8. startup refusals: a self-signed CN=localhost certificate with
    --hostname mx.example.test, and a world-readable key, make the example
    exit non-zero with a message naming the file (and "chmod 600").
"""

import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxgwtest  # noqa: E402

NAME = mxgwtest.TLS_NAME
FX = None  # the fixtures directory, set in main()


def fx(name):
    return os.path.join(FX, name)


def tls_args(cert="rsa-fullchain.pem", key="rsa.key", extra=()):
    return ["--tls-cert", fx(cert), "--tls-key", fx(key)] + list(extra)


def client_ctx():
    return mxgwtest.tls_client_context(fx("root.pem"))


def message(subject, body=b"Hello over TLS.\r\n"):
    return (b"From: Alice <alice@example.org>\r\n"
            b"To: Bob <bob@example.test>\r\n"
            b"Subject: " + subject.encode() + b"\r\n\r\n" + body)


def stored_by_qid(srv, qid):
    msgs = mxgwtest.read_messages(srv)
    assert qid in msgs, "%s not in spool %r" % (qid, srv.entries())
    return msgs[qid]


def check_esmtps(hdr, proto, cipher):
    """The Received header says ESMTPS and names protocol and cipher."""
    line = hdr.decode()
    print("  stored:", line)
    assert re.search(r"\bwith ESMTPS\b", line), line
    want = "(using %s with cipher %s)" % (proto, cipher)
    assert want in line, "%r not in %r" % (want, line)


def queued_id(reply):
    m = re.search(r"queued as ([0-9A-Za-z]+)", reply)
    assert m, reply
    return m.group(1)


def send_with(s, subject):
    """MAIL/RCPT/DATA on an smtplib connection; return the queue id."""
    code, resp = s.mail("alice@example.org")
    assert code == 250, (code, resp)
    code, resp = s.rcpt("bob@example.test")
    assert code == 250, (code, resp)
    code, resp = s.data(message(subject))
    assert code == 250, (code, resp)
    return queued_id(resp.decode())


def openssl(*args, input=b"", timeout=30):
    p = subprocess.run(["openssl"] + list(args), input=input,
                       capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def cert_names(pem_text):
    """(subject, [DNS names]) of one PEM certificate, via openssl x509."""
    rc, out = openssl("x509", "-noout", "-subject", "-ext", "subjectAltName",
                      input=pem_text.encode())
    assert rc == 0, out
    subj = re.search(r"^subject=\s*(.*)$", out, re.M).group(1)
    return norm_dn(subj), sorted(re.findall(r"DNS:([^,\s]+)", out))


def norm_dn(dn):
    return re.sub(r"\s*=\s*", "=", dn.strip())


# --- 1. openssl s_client --------------------------------------------------

def s_client(port, verify_name):
    return openssl("s_client", "-connect", "127.0.0.1:%d" % port,
                   "-starttls", "smtp", "-servername", NAME, "-showcerts",
                   "-CAfile", fx("root.pem"), "-verify_hostname", verify_name,
                   input=b"QUIT\r\n")


def test_s_client():
    with mxgwtest.Server(tls_args()) as srv:
        rc, out = s_client(srv.port, NAME)
        assert rc == 0, out
        # The served chain: depth 0 the leaf, depth 1 the intermediate.
        chain = re.findall(r"^\s*(\d+) s:(.*)\n\s+i:(.*)$", out, re.M)
        with open(fx("rsa.pem")) as f:
            leaf_subj, leaf_san = cert_names(f.read())
        with open(fx("inter.pem")) as f:
            inter_subj, _ = cert_names(f.read())
        with open(fx("root.pem")) as f:
            root_subj, _ = cert_names(f.read())
        got = [(int(d), norm_dn(s), norm_dn(i)) for d, s, i in chain]
        assert got == [(0, leaf_subj, inter_subj), (1, inter_subj, root_subj)
                       ], "served chain %r:\n%s" % (got, out)
        # The operator's check: subject and SAN of the served certificate.
        blocks = re.findall(r"-----BEGIN CERTIFICATE-----.*?"
                            r"-----END CERTIFICATE-----", out, re.S)
        assert len(blocks) == 2, out
        subj, san = cert_names(blocks[0])
        print("  served: subject %s, SAN %s" % (subj, ", ".join(san)))
        assert subj == "CN=" + NAME, subj
        assert subj == leaf_subj and san == leaf_san, (subj, san, leaf_san)
        assert NAME in san and "smtp.example.test" in san, san
        assert mxgwtest.fingerprint(ssl.PEM_cert_to_DER_cert(blocks[0])) == \
            mxgwtest.file_fingerprint(fx("rsa.pem"))
        assert "Verify return code: 0 (ok)" in out, out
        assert re.search(r"Verified peername: %s" % re.escape(NAME), out), out
        # The same check with a name the certificate does not cover fails
        # (so the check above is a real one).
        rc, out2 = s_client(srv.port, "wrong.example.net")
        assert re.search(r"Verify return code: [1-9]\d* \(hostname mismatch\)",
                         out2), out2
        log = srv.log()
        # The example logs the certificate it serves, at startup.
        assert re.search(r"certificate 0 \(generation 1\): CN=%s, SAN %s"
                         % (re.escape(NAME), re.escape(", ".join(
                             ["mx.example.test", "smtp.example.test"]))),
                         log), log
        assert "TLS connection established: TLSv1." in log, log
    print("ok: openssl s_client shows the configured subject, SAN, chain")


# --- 2. swaks --tls -------------------------------------------------------

def test_swaks():
    mxgwtest.require_tool("swaks")
    with mxgwtest.Server(tls_args()) as srv:
        body = os.path.join(srv.root, "msg.txt")
        with open(body, "wb") as f:
            f.write(b"Subject: swaks tls\n\nHello over STARTTLS")
        p = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(srv.port),
             "--helo", "client.example.org", "--from", "alice@example.org",
             "--to", "bob@example.test", "--data", "@" + body,
             "--tls", "--tls-verify", "--tls-ca-path", fx("root.pem"),
             "--tls-sni", NAME, "--timeout", "20"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 0, "swaks %d:\n%s%s\n%s" % (
            p.returncode, out, p.stderr.decode(), srv.log())
        m = re.search(r"=== TLS started with cipher ([^:\s]+):([^:\s]+):\d+",
                      out)
        assert m, out
        proto, cipher = m.group(1), m.group(2)
        qid = queued_id(re.search(r"<~  250 .*queued as \S+", out).group(0))
        hdr, msg = stored_by_qid(srv, qid)
        check_esmtps(hdr, proto, cipher)
        assert msg.endswith(b"Hello over STARTTLS\r\n"), msg
        # Before TLS swaks saw STARTTLS offered ("<-"), after it ("<~") no
        # longer.
        assert re.search(r"^<-  250[- ]STARTTLS\s*$", out, re.M), out
        assert re.search(r"^<~  250[- ]PIPELINING\s*$", out, re.M), out
        assert not re.search(r"^<~  250[- ]STARTTLS", out, re.M), out
    print("ok: swaks --tls delivered with ESMTPS (%s, %s)" % (proto, cipher))


# --- 3. smtplib starttls() -------------------------------------------------

def test_smtplib_starttls():
    with mxgwtest.Server(tls_args()) as srv:
        with mxgwtest.NamedSMTP("127.0.0.1", srv.port, timeout=20,
                                local_hostname="client.example.org") as s:
            s.ehlo()
            assert s.has_extn("starttls"), s.esmtp_features
            code, resp = s.starttls(context=client_ctx())
            assert code == 220, (code, resp)
            assert mxgwtest.served_fingerprint(s.sock) == \
                mxgwtest.file_fingerprint(fx("rsa-fullchain.pem"))
            proto, cipher = s.sock.version(), s.sock.cipher()[0]
            cert = s.sock.getpeercert()
            assert ("DNS", NAME) in cert["subjectAltName"], cert
            # RFC 3207 4.2: the client must EHLO again; STARTTLS is gone.
            s.ehlo()
            assert not s.has_extn("starttls"), s.esmtp_features
            assert s.has_extn("pipelining"), s.esmtp_features
            qid = send_with(s, "smtplib starttls")
        hdr, msg = stored_by_qid(srv, qid)
        check_esmtps(hdr, proto, cipher)
        assert b"from client.example.org" in hdr, hdr
        assert msg == message("smtplib starttls"), msg

        # A client that expects another name refuses this certificate.
        with mxgwtest.NamedSMTP("127.0.0.1", srv.port, timeout=20,
                                tls_name="wrong.example.net") as s:
            s.ehlo()
            try:
                s.starttls(context=client_ctx())
            except ssl.SSLCertVerificationError as e:
                assert "mismatch" in str(e) or "match" in str(e), e
            else:
                raise AssertionError("a certificate for %s was accepted for "
                                     "wrong.example.net" % NAME)
        # ... and the server is still fine afterwards.
        with mxgwtest.NamedSMTP("127.0.0.1", srv.port, timeout=20) as s:
            s.starttls(context=client_ctx())
            s.ehlo()
            qid2 = send_with(s, "after a refused handshake")
        assert qid2 != qid and len(srv.eml_files()) == 2, srv.entries()
        srv.assert_spool_clean()
        assert srv.stop() == 0
    print("ok: smtplib starttls() delivered (%s, %s)" % (proto, cipher))


# --- 4. implicit TLS ----------------------------------------------------------

def test_smtps():
    with mxgwtest.Server(tls_args(extra=["--smtps"])) as srv:
        with mxgwtest.NamedSMTP_SSL("127.0.0.1", srv.port, timeout=20,
                                    context=client_ctx(),
                                    local_hostname="client.example.org") as s:
            proto, cipher = s.sock.version(), s.sock.cipher()[0]
            assert mxgwtest.served_fingerprint(s.sock) == \
                mxgwtest.file_fingerprint(fx("rsa.pem"))
            code, resp = s.ehlo()
            assert code == 250, resp
            assert not s.has_extn("starttls"), s.esmtp_features
            code, resp = s.docmd("STARTTLS")
            assert code in (502, 503, 554), (code, resp)  # already in TLS
            qid = send_with(s, "implicit tls")
        hdr, _ = stored_by_qid(srv, qid)
        check_esmtps(hdr, proto, cipher)

        # A plaintext client on the smtps port gets no greeting: the server
        # waits for a ClientHello, and an SMTP command is not one.
        with socket.create_connection(("127.0.0.1", srv.port), 10) as sock:
            sock.settimeout(1.0)
            try:
                early = sock.recv(100)
            except socket.timeout:
                early = b""
            assert early == b"", early
            sock.settimeout(10)
            sock.sendall(b"EHLO client.example.org\r\n")
            rest = b""
            while True:
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                rest += chunk
            assert b"220" not in rest and b"250" not in rest, rest
        assert srv.alive()
        assert len(srv.eml_files()) == 1
    print("ok: implicit TLS (--smtps) delivered (%s, %s)" % (proto, cipher))


# --- 5. --tls-policy encrypt -------------------------------------------------

def test_policy_encrypt():
    with mxgwtest.Server(tls_args(extra=["--tls-policy", "encrypt"])) as srv:
        with mxgwtest.NamedSMTP("127.0.0.1", srv.port, timeout=20) as s:
            s.ehlo()
            assert s.has_extn("starttls"), s.esmtp_features
            code, resp = s.mail("alice@example.org")
            assert code == 530 and resp.startswith(b"5.7.0"), (code, resp)
            code, resp = s.rcpt("bob@example.test")
            assert code == 503, (code, resp)  # no MAIL was accepted
            s.starttls(context=client_ctx())
            s.ehlo()
            qid = send_with(s, "policy encrypt")
        hdr, _ = stored_by_qid(srv, qid)
        assert b"with ESMTPS" in hdr, hdr
        assert len(srv.eml_files()) == 1
    # With the default policy (may), MAIL without TLS is fine.
    with mxgwtest.Server(tls_args()) as srv:
        with mxgwtest.NamedSMTP("127.0.0.1", srv.port, timeout=20) as s:
            s.ehlo()
            assert s.has_extn("starttls")
            qid = send_with(s, "policy may, plaintext")
        hdr, _ = stored_by_qid(srv, qid)
        assert re.search(rb"\bwith ESMTP\b", hdr) and b"using" not in hdr, hdr
    print("ok: --tls-policy encrypt: 530 5.7.0 before STARTTLS, 250 after")


# --- 6. plaintext pipelined with STARTTLS -------------------------------------

def test_starttls_injection():
    injected = b"MAIL FROM:<evil@example.net>\r\n"
    with mxgwtest.Server(tls_args()) as srv:
        with mxgwtest.RawClient("127.0.0.1", srv.port) as c:
            c.expect(220)
            c.send("EHLO client.example.org\r\n")
            c.expect(250)
            # One write: STARTTLS and a command behind it.
            c.send(b"STARTTLS\r\n" + injected)
            c.expect(220)
            time.sleep(0.3)  # anything else the server might say in clear
            c.sock.settimeout(0.01)
            try:
                extra = c.sock.recv(100, socket.MSG_PEEK)
            except socket.timeout:
                extra = b""
            assert c.buf == b"" and extra == b"", (c.buf, extra)
            c.sock.settimeout(15)
            c.sock = client_ctx().wrap_socket(c.sock, server_hostname=NAME)
            # A fresh session: the first thing said in TLS is ours, and MAIL
            # without EHLO is out of sequence. (Had the injected MAIL run, it
            # would have been answered first, or this MAIL would get 503
            # "nested MAIL".)
            c.send("MAIL FROM:<alice@example.org>\r\n")
            code, lines = c.read_reply()
            assert code == 503, lines
            c.send("EHLO client.example.org\r\n")
            lines = c.expect(250)
            assert lines[0] == "250-" + NAME, lines
            assert not any("STARTTLS" in l for l in lines), lines
            c.send("MAIL FROM:<alice@example.org>\r\n")
            c.expect(250)
            c.send("RCPT TO:<bob@example.test>\r\n")
            c.expect(250)
            c.send("DATA\r\n")
            c.expect(354)
            c.send(mxgwtest.dot_stuff(message("after injection")))
            qid = queued_id(" ".join(c.expect(250)))
            c.send("QUIT\r\n")
            c.expect(221)
        hdr, _ = stored_by_qid(srv, qid)
        assert b"with ESMTPS" in hdr, hdr
        assert len(srv.eml_files()) == 1
        log = srv.log()
        # never run: not logged as a command, no reply to it
        assert "evil@example.net" not in log, log
        m = re.search(r"discarded (\d+) bytes of plaintext pipelined after "
                      r"STARTTLS", log)
        assert m and int(m.group(1)) == len(injected), log
    print("ok: plaintext pipelined after STARTTLS was discarded, not run")


# --- 7. broken peers -------------------------------------------------------------

def deliver_tls(port, subject):
    with mxgwtest.NamedSMTP("127.0.0.1", port, timeout=20) as s:
        s.starttls(context=client_ctx())
        s.ehlo()
        return send_with(s, subject)


def wait_closed(sock, limit, got=None):
    """Seconds until the peer closes the connection (or raise); what it
    sent meanwhile is appended to the list `got`."""
    t0 = time.monotonic()
    sock.settimeout(limit)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            if got is not None:
                got.append(chunk)
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("connection still open after %.1f s" % limit)
    return time.monotonic() - t0


def assert_no_plaintext(chunks):
    """Mid-handshake, a server may send TLS records (an alert), never a
    plaintext SMTP reply such as its 421 timeout."""
    data = b"".join(chunks)
    assert not any(data.startswith(p) for p in (b"4", b"5", b"2")) and \
        b"421" not in data, data


def partial_client_hello():
    """The first half of a real ClientHello for NAME."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname=NAME)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert len(hello) > 100 and hello[0] == 0x16, hello[:8]
    return hello[:len(hello) // 2]


def test_broken_peers():
    timeout_ms = 3000
    with mxgwtest.Server(tls_args(extra=["--timeout", str(timeout_ms)])) \
            as srv:
        # a) garbage where the ClientHello belongs
        with mxgwtest.RawClient("127.0.0.1", srv.port) as c:
            c.expect(220)
            c.send("EHLO client.example.org\r\n")
            c.expect(250)
            c.send("STARTTLS\r\n")
            c.expect(220)
            c.send(b"GET / HTTP/1.0\r\n\x00\x01 this is no ClientHello\r\n")
            got = []
            took = wait_closed(c.sock, 10, got)
            assert_no_plaintext(got)
            assert took < 2.0, "garbage session lasted %.1f s" % took
        assert srv.alive()
        assert re.search(r"TLS handshake failed", srv.log()), srv.log()
        deliver_tls(srv.port, "after garbage")

        # b) a TLS client that stalls mid-handshake, while others are served
        with mxgwtest.RawClient("127.0.0.1", srv.port) as c:
            c.expect(220)
            c.send("EHLO client.example.org\r\n")
            c.expect(250)
            c.send("STARTTLS\r\n")
            c.expect(220)
            c.send(partial_client_hello())
            t0 = time.monotonic()
            deliver_tls(srv.port, "during a stalled handshake")
            got = []
            took = time.monotonic() - t0 + wait_closed(c.sock, 30, got)
            assert_no_plaintext(got)
            print("  stalled STARTTLS handshake dropped after %.1f s" % took)
            assert timeout_ms / 1000 * 0.8 <= took <= timeout_ms / 1000 + 5, \
                took
        assert srv.alive()
        assert len(srv.eml_files()) == 2
    with mxgwtest.Server(tls_args(extra=["--smtps", "--timeout",
                                         str(timeout_ms)])) as srv:
        # c) implicit TLS: connects, sends half a ClientHello, stalls
        with socket.create_connection(("127.0.0.1", srv.port), 10) as sock:
            sock.sendall(partial_client_hello())
            t0 = time.monotonic()
            with mxgwtest.NamedSMTP_SSL("127.0.0.1", srv.port, timeout=20,
                                        context=client_ctx()) as s:
                s.ehlo()
                send_with(s, "smtps during a stalled handshake")
            got = []
            took = time.monotonic() - t0 + wait_closed(sock, 30, got)
            assert_no_plaintext(got)
            print("  stalled implicit-TLS handshake dropped after %.1f s"
                  % took)
            assert timeout_ms / 1000 * 0.8 <= took <= timeout_ms / 1000 + 5, \
                took
        assert srv.alive()
        assert len(srv.eml_files()) == 1
        assert srv.stop() == 0
    print("ok: broken TLS peers are dropped; the server keeps serving")


# --- 8. startup refusals ----------------------------------------------------------

def run_example(args, timeout=20):
    """Run the example to completion (it must refuse to start) or, if it
    does start, stop it; return (exit status or None, output)."""
    root = mxgwtest.make_tempdir()
    try:
        os.mkdir(os.path.join(root, "mail"))
        cmd = [mxgwtest.smtpd_binary(), "--listen", "127.0.0.1:0", "--dir",
               os.path.join(root, "mail")] + args
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             preexec_fn=mxgwtest._die_with_parent)
        try:
            out, _ = p.communicate(timeout=3)
            return p.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            p.terminate()
            out, _ = p.communicate(timeout=timeout)
            return None, out.decode("utf-8", "replace")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    finally:
        mxgwtest.remove_tree(root)


def test_startup_refusals():
    # The deployment's mistake: a self-signed CN=localhost certificate.
    rc, out = run_example(["--hostname", NAME] +
                          tls_args("localhost.pem", "localhost.key"))
    print("  localhost cert: exit %r: %s" % (rc, out.strip()))
    assert rc not in (None, 0), out
    assert "listening on" not in out, out
    assert fx("localhost.pem") in out, out
    assert NAME in out and re.search(r"does not cover|not covered", out), out
    # Control: the same files are accepted when the name is localhost.
    rc, out = run_example(["--hostname", "localhost"] +
                          tls_args("localhost.pem", "localhost.key"))
    assert rc is None and "listening on" in out, (rc, out)

    # A private key readable by everybody.
    assert os.stat(fx("world.key")).st_mode & 0o004
    rc, out = run_example(["--hostname", NAME] +
                          tls_args("rsa-fullchain.pem", "world.key"))
    print("  world-readable key: exit %r: %s" % (rc, out.strip()))
    assert rc not in (None, 0), out
    assert "listening on" not in out, out
    assert fx("world.key") in out and "chmod 600" in out, out
    # Control: the same key with mode 0600 is accepted.
    rc, out = run_example(["--hostname", NAME] +
                          tls_args("rsa-fullchain.pem", "rsa.key"))
    assert rc is None and "listening on" in out, (rc, out)
    print("ok: a wrong-name certificate and a world-readable key are refused")


def main():
    global FX
    mxgwtest.require_tool("openssl")
    mxgwtest.overall_timeout(200)
    root = mxgwtest.make_tempdir("mxgw-tls-")
    try:
        FX = mxgwtest.tls_fixtures(os.path.join(root, "fx"))
        only = sys.argv[1:]
        for name, fn in (("s_client", test_s_client), ("swaks", test_swaks),
                         ("smtplib", test_smtplib_starttls),
                         ("smtps", test_smtps),
                         ("encrypt", test_policy_encrypt),
                         ("injection", test_starttls_injection),
                         ("broken", test_broken_peers),
                         ("refusals", test_startup_refusals)):
            if not only or name in only:
                print("--", name)
                fn()
    finally:
        mxgwtest.remove_tree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
