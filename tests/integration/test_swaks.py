# SPDX-License-Identifier: MIT
"""Integration: swaks sends mail to mxgw-example-smtpd on loopback.

One plain message, then one with --pipeline and two recipients. For each,
swaks must exit 0, the server must say "queued as <id>", DIR/<id>.eml must
exist and hold the Received header (naming the client's HELO, "with
ESMTP", our host name, the id and a current date) followed by the message
byte for byte. The server's log lines and a clean SIGTERM stop are checked
too.
"""

import email.utils
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mxgwtest  # noqa: E402

MESSAGE = (b"From: Alice <alice@example.org>\n"
           b"To: Bob <bob@example.test>\n"
           b"Subject: swaks integration test\n"
           b"Message-Id: <swaks-1@example.org>\n"
           b"\n"
           b"Hello Bob,\n"
           b".a line that starts with a dot\n"
           b"..and one with two\n"
           b"\n"
           b"  indented line, trailing spaces   \n"
           b"Bye.\n")


def run_swaks(srv, msgfile, extra):
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(srv.port),
           "--helo", "client.example.org", "--from", "alice@example.org",
           "--data", "@" + msgfile, "--timeout", "20"] + extra
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("swaks exited %d:\n%s\n%s\nserver log:\n%s"
                             % (p.returncode, out, p.stderr.decode(),
                                srv.log()))
    m = re.findall(r"<-  250 2\.0\.0 Ok: queued as ([0-9A-Za-z]+)", out)
    assert len(m) == 1, "no single 'queued as' reply in:\n" + out
    return m[0], out


def check_stored(srv, qid, rcpts):
    path = os.path.join(srv.dir, qid + ".eml")
    assert os.path.isfile(path), "%s missing; spool has %r" % (
        path, srv.entries())
    with open(path, "rb") as f:
        hdr, msg = mxgwtest.split_message(f.read())
    expected = MESSAGE.replace(b"\n", b"\r\n")
    assert msg == expected, "body differs:\n%r\n!=\n%r" % (msg, expected)
    line = mxgwtest.unfold(hdr).decode()
    print("stored:", line)
    assert "from client.example.org" in line, line
    assert "by mx.example.test" in line, line
    assert re.search(r"\bwith ESMTP\b", line), line
    assert re.search(r"\bid %s\b" % qid, line), line
    assert "127.0.0.1" in line, line
    if len(rcpts) == 1:
        assert "for <%s>" % rcpts[0] in line, line
    # The date after the last ';' is an RFC 5322 date close to now.
    date = email.utils.parsedate_to_datetime(line.rsplit(";", 1)[1].strip())
    assert abs(date.timestamp() - time.time()) < 600, line


def main():
    mxgwtest.require_tool("swaks")
    mxgwtest.overall_timeout(150)
    with mxgwtest.Server() as srv:
        msgfile = os.path.join(srv.root, "message.txt")
        with open(msgfile, "wb") as f:
            # swaks ends DATA with "\r\n.\r\n" after the file's last line,
            # so a final newline in the file would add an empty line.
            f.write(MESSAGE[:-1])

        # 1. one plain message
        qid1, _ = run_swaks(srv, msgfile, ["--to", "bob@example.test"])
        check_stored(srv, qid1, ["bob@example.test"])

        # 2. pipelined, two recipients
        qid2, out = run_swaks(srv, msgfile,
                              ["--pipeline", "--to",
                               "bob@example.test,carol@example.test"])
        assert "250-PIPELINING" in out or "250 PIPELINING" in out, out
        assert qid2 != qid1
        check_stored(srv, qid2, ["bob@example.test", "carol@example.test"])

        assert sorted(srv.entries()) == sorted([qid1 + ".eml", qid2 + ".eml"])
        srv.assert_spool_clean()

        # The log: one line per event, "prog[pid]: peer: text".
        rc = srv.stop()
        assert rc == 0, "server exited %r on SIGTERM" % rc
        log = srv.log()
        pid_pat = r"mxgw-example-smtpd\[\d+\]: 127\.0\.0\.1:\d+: "
        for what in (r"connect from", r"< MAIL FROM:<alice@example\.org>",
                     r"> 250 2\.0\.0 Ok: queued as " + qid1,
                     r"disconnect from"):
            assert re.search(pid_pat + ".*" + what, log), (
                "log lacks %r:\n%s" % (what, log))
        assert log.count("disconnect from") == 2, log
    print("ok: swaks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
