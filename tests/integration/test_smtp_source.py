# SPDX-License-Identifier: MIT
"""Integration: Postfix's smtp-source load generator against
mxgw-example-smtpd on loopback.

1. 10 parallel sessions, 200 messages of 2048 octets, one message per
   connection: smtp-source exits 0 and exactly 200 files arrive, each with
   a Received header naming smtp-source's HELO and a body of at least
   2048 octets.
2. Connections reused (-d), 5 recipients per message (-r 5) and a
   pre-formatted message with leading dots (-F): every stored message
   equals the file byte for byte (with CRLF line ends).
"""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxgwtest  # noqa: E402

SMTP_SOURCE = "/usr/sbin/smtp-source"


def run(args, srv):
    cmd = [SMTP_SOURCE] + args + ["127.0.0.1:%d" % srv.port]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=120)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s\nserver log tail:\n%s"
                             % (" ".join(cmd), p.returncode,
                                p.stdout.decode(), p.stderr.decode(),
                                srv.log()[-3000:]))


def main():
    mxgwtest.require_tool(SMTP_SOURCE)
    mxgwtest.overall_timeout(200)

    with mxgwtest.Server(quiet=True) as srv:
        run(["-s", "10", "-m", "200", "-l", "2048", "-M", "client.example.org",
             "-f", "a@example.org", "-t", "b@example.test"], srv)
        n = srv.wait_for_files(200, timeout=10)
        assert n == 200, "expected 200 files, got %d" % n
        srv.assert_spool_clean()
        for qid, (hdr, msg) in mxgwtest.read_messages(srv).items():
            assert b"from client.example.org" in hdr, hdr
            assert re.search(rb"\bid %s\b" % qid.encode(), hdr), hdr
            assert b"for <b@example.test>" in hdr, hdr
            head, sep, body = msg.partition(b"\r\n\r\n")
            assert sep and len(body) >= 2048, (len(body), msg[:200])
        assert srv.stop() == 0
    print("ok: 200 messages from 10 parallel smtp-source sessions")

    with mxgwtest.Server(quiet=True) as srv:
        lines = [b"From: <a@example.org>", b"To: <b@example.test>",
                 b"Subject: smtp-source -F", b"",
                 b".one leading dot", b"..two leading dots", b".",
                 b"plain line", b"x" * 990]
        path = os.path.join(srv.root, "message.txt")
        with open(path, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
        # smtp-source sends each line + CRLF, then "\r\n.\r\n": one empty
        # line more than the file has.
        expected = b"\r\n".join(lines) + b"\r\n\r\n"
        run(["-s", "4", "-m", "60", "-d", "-r", "5", "-F", path,
             "-M", "client.example.org", "-f", "a@example.org",
             "-t", "b@example.test"], srv)
        n = srv.wait_for_files(60, timeout=10)
        assert n == 60, "expected 60 files, got %d" % n
        srv.assert_spool_clean()
        for qid, (hdr, msg) in mxgwtest.read_messages(srv).items():
            assert msg == expected, "%s differs:\n%r\n!=\n%r" % (
                qid, msg, expected)
            assert b"from client.example.org" in hdr, hdr
        assert srv.stop() == 0
    print("ok: 60 pre-formatted messages over reused connections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
