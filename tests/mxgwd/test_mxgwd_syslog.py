# SPDX-License-Identifier: MIT
"""test_mxgwd_syslog.py: logging to syslog through a real /dev/log socket.

mxgwd runs in a private mount namespace (`unshare --mount`, as root) in
which /dev/log is a bind mount of a Unix datagram socket this test listens
on (when the system has no /dev/log, the namespace gets a tmpfs /dev with
the real entries bound back in, plus the socket). glibc's syslog(3) in
mxgwd then sends its datagrams to the test, which checks what a syslog
daemon would receive:

  - "<PRI>" with facility mail and the level's severity (info for
    connect/status=sent, notice for a rejection), "Mmm dd hh:mm:ss", the
    tag "mxgwd[PID]:" with mxgwd's PID;
  - the Postfix-style lines of one message: the queue ID of the 250 reply,
    "QUEUEID: to=<alice@example.test>, relay=..., status=sent (...)";
  - a configured facility and ident ("local5", "gwtest").

Skipped (not failed) when unshare or mount is not permitted here. The LMTP
store is a private Dovecot (tests/lmtp/lmtp_fixture.py). Debian's
/usr/bin/python3, unittest, standard library only.
"""
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mxgwd_fixture import (DOMAIN, Dovecot, Mxgwd,  # noqa: E402
                           require_mxgwd)

# Run "$@" with /dev/log bound to the socket $1, in the mount namespace
# unshare made (private propagation: nothing is seen outside).
WRAPPER = r"""
set -e
sock=$1; shift
if [ ! -e /dev/log ] && [ ! -L /dev/log ]; then
  old=$(dirname "$sock")/olddev
  mkdir "$old"
  mount --rbind /dev "$old"
  mount -t tmpfs -o mode=755,size=1m mxgwd-test-dev /dev
  for e in "$old"/*; do
    n=${e##*/}
    if [ -L "$e" ]; then cp -P "$e" "/dev/$n"
    elif [ -d "$e" ]; then mkdir "/dev/$n"; mount --rbind "$e" "/dev/$n"
    else : > "/dev/$n"; mount --bind "$e" "/dev/$n"; fi
  done
  : > /dev/log
fi
mount --bind "$sock" /dev/log
exec "$@"
"""

UNSHARE = ["unshare", "--mount", "--propagation", "private"]


class SyslogSink(threading.Thread):
    """A Unix datagram socket collecting what syslog(3) sends."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.grams = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.grams.append(d.decode("utf-8", "replace"))

    def close(self):
        self.done.set()
        self.join(5)
        self.sock.close()

    def all(self):
        with self.lock:
            return list(self.grams)

    def wait_for(self, pattern, secs=20):
        end = time.time() + secs
        while time.time() < end:
            for g in self.all():
                m = re.search(pattern, g)
                if m:
                    return g, m
            time.sleep(0.05)
        return None, None


class SyslogMxgwd(Mxgwd):
    """Mxgwd started through unshare + the wrapper (same PID: unshare and
    sh exec, nothing forks), otherwise as Mxgwd.start()."""

    def start(self, timeout=30):
        self.write_config()
        wrapper = os.path.join(self.dir, "devlog.sh")
        with open(wrapper, "w") as f:
            f.write(WRAPPER)
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            UNSHARE + ["sh", wrapper, self.sock_path, require_mxgwd(),
                       "--config", self.conf],
            stdout=subprocess.DEVNULL, stderr=self._log)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("mxgwd exited %d:\n%s" %
                                   (self.proc.returncode, self.log()))
            if "started" in self.log():
                try:
                    socket.create_connection(("127.0.0.1", self.port),
                                             0.5).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("mxgwd did not start:\n" + self.log())


def namespace_usable(d):
    """Whether the wrapper works here (unshare and mount permitted)."""
    wrapper = os.path.join(d, "probe.sh")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    sock_path = os.path.join(d, "probe.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(5)
    try:
        p = subprocess.run(UNSHARE + ["sh", wrapper, sock_path, "logger",
                                      "--socket", "/dev/log", "-t",
                                      "probe", "hello"],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            return "unshare/mount not permitted: " + p.stderr.strip()
        try:
            got = s.recv(4096).decode()
        except socket.timeout:
            return "no datagram arrived through the bind mount"
        return None if "hello" in got else "unexpected datagram %r" % got
    except FileNotFoundError as e:
        return str(e)
    finally:
        s.close()
        os.unlink(sock_path)


class Syslog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root for unshare --mount")
        d = tempfile.mkdtemp(prefix="mxgwd-syslog-probe.")
        try:
            why = namespace_usable(d)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        if why:
            raise unittest.SkipTest(why)
        cls.dovecot = Dovecot().start()

    @classmethod
    def tearDownClass(cls):
        cls.dovecot.stop()

    def gateway(self, output):
        g = SyslogMxgwd(["127.0.0.1:%d" % self.dovecot.port], tls=False)
        self.addCleanup(g.cleanup)
        g.sock_path = os.path.join(g.dir, "log.sock")
        sink = SyslogSink(g.sock_path)
        sink.start()
        self.addCleanup(sink.close)
        g.config["logging"] = {"outputs": [{"destination": "stderr"},
                                           output]}
        return g, sink

    def test_message_lines_with_mail_facility(self):
        g, sink = self.gateway({"destination": "syslog"})
        g.start()
        pid = g.proc.pid
        head = r"^<%d>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d mxgwd\[%d\]: "
        mail, info, notice = 2, 6, 5
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.ehlo("client.example.org")
            self.assertEqual(s.mail("sender@example.org")[0], 250)
            code, _ = s.rcpt("someone@elsewhere.example")
            self.assertEqual(code, 554)
            self.assertEqual(s.rcpt("alice@" + DOMAIN)[0], 250)
            code, reply = s.data("Subject: to syslog\r\n\r\nhello\r\n")
            self.assertEqual(code, 250)
        qid = re.search(rb"queued as ([0-9A-Za-z]+)", reply).group(1).decode()
        line, _ = sink.wait_for(r"%s: to=<alice@example\.test>, relay=.*"
                                r"status=sent \(" % qid, secs=30)
        self.assertIsNotNone(line, "\n".join(sink.all()) + g.log())
        self.assertRegex(line, head % (mail * 8 + info, pid) +
                         r"%s: to=<alice@example\.test>, relay=127\.0\.0\.1"
                         r"\[127\.0\.0\.1\]:%d, .*status=sent \(250 "
                         % (qid, self.dovecot.port))
        # the same message's other lines, each an info datagram
        for pat in (r"connect from unknown\[127\.0\.0\.1\]$",
                    r"%s: client=unknown\[127\.0\.0\.1\]" % qid,
                    r"%s: from=<sender@example\.org>, size=\d+, nrcpt=1"
                    % qid):
            got, _ = sink.wait_for(pat)
            self.assertIsNotNone(got, pat + "\n" + "\n".join(sink.all()))
            self.assertRegex(got, head % (mail * 8 + info, pid))
        # a rejection is a notice
        got, _ = sink.wait_for(r"NOQUEUE: reject: RCPT from "
                               r"unknown\[127\.0\.0\.1\]: 554 5\.7\.1")
        self.assertIsNotNone(got, "\n".join(sink.all()))
        self.assertRegex(got, head % (mail * 8 + notice, pid))
        # one line per datagram, no newline inside
        for d in sink.all():
            self.assertNotIn("\n", d.rstrip("\n"))

    def test_configured_facility_and_ident(self):
        g, sink = self.gateway({"destination": "syslog",
                                "facility": "local5", "ident": "gwtest"})
        g.start()
        local5, info = 21, 6
        with smtplib.SMTP("127.0.0.1", g.port, timeout=30) as s:
            s.ehlo("client.example.org")
        got, _ = sink.wait_for(r"connect from unknown\[127\.0\.0\.1\]$")
        self.assertIsNotNone(got, "\n".join(sink.all()))
        self.assertRegex(got, r"^<%d>[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d "
                         r"gwtest\[%d\]: connect from" % (local5 * 8 + info,
                                                           g.proc.pid))
        self.assertFalse([d for d in sink.all() if "mxgwd[" in d])
        if os.environ.get("MXGWD_SYSLOG_SHOW"):
            print("\n".join(sink.all()))


if __name__ == "__main__":
    require_mxgwd()
    unittest.main(verbosity=2)
