# SPDX-License-Identifier: MIT
"""No leaks over 10,000 iterations: every family of calls (SPF with trace,
headers and JSON; the session engine through a whole transaction; TLS
loading and inspection; queue submit/show/delete; the LMTP client and a
delivery to a refused port; error paths raising exceptions) runs 10,000 times after a warm-up, twice; the second round
must not grow the Python heap (tracemalloc) nor the process RSS. Then the
same workload, smaller, under valgrind (definite leaks only; SWIG's own
24-byte shutdown leak is suppressed)."""
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc

import pytest

import mxgw

ZONE = """$ORIGIN example.org.
@    TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all exp=e.example.org"
e    TXT "%{i} is not allowed"
$ORIGIN example.net.
_spf TXT "v=spf1 a:mx1.example.net -all"
mx1  A   203.0.113.25
"""
N = int(os.environ.get("MXGW_LEAK_ITERATIONS", "10000"))


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def make_pem(d):
    crt, key = os.path.join(d, "c.pem"), os.path.join(d, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "5", "-subj",
                    "/CN=mx.example.test", "-keyout", key, "-out", crt,
                    "-addext", "subjectAltName=DNS:mx.example.test"],
                   check=True, capture_output=True)
    return open(crt, "rb").read(), open(key, "rb").read()


class Workload:
    def __init__(self, tmp):
        self.r = mxgw.Resolver.static(ZONE)
        self.spf = mxgw.Spf(self.r, receiver="mx.test")
        self.cfg = mxgw.SessionConfig(hostname="mx.example.test")
        self.pem = make_pem(tmp)
        self.q = mxgw.Queue(os.path.join(tmp, "spool"), sync=0, async_workers=0)
        import socket
        with socket.socket() as s:  # a port nobody listens on: refused at once
            s.bind(("127.0.0.1", 0))
            self.dead_port = s.getsockname()[1]

    def close(self):
        self.spf.close()
        self.r.close()
        self.cfg.close()
        self.q.close()

    def spf_round(self, i):
        ip = ("192.0.2.%d", "203.0.113.%d", "198.51.100.%d")[i % 3] % (i % 250 + 1)
        with self.spf.check(ip, "h.example.org", "u%d@example.org" % i) as c:
            c.result, c.trace, c.received_spf(), c.auth_results("mx"), c.json()
            c.reply(), c.explanation, c.counts

    def session_round(self, i):
        with mxgw.Session(self.cfg, peer=("192.0.2.1", i), log=lambda k, t: None) as s:
            s.start(0)
            wire = (b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<x@y.z>\r\nDATA\r\n"
                    b"Subject: %d\r\n\r\nbody\r\n.\r\nQUIT\r\n" % i)
            body = b""
            for ev in s.events():
                s.accept()
            s.take_output()
            while wire:
                wire = wire[s.feed(wire, 1):]
                for ev in s.events():
                    if ev == mxgw.Event.BODY:
                        body += s.data
                    elif ev.is_decision:
                        if ev == mxgw.Event.MESSAGE_END:
                            s.received_header("Q", 0)
                            s.recipients()
                        s.accept()
                s.take_output()
            assert body.startswith(b"Subject")

    def tls_round(self, i):
        with mxgw.TlsContext() as t:
            t.add_cert_pem(*self.pem)
            t.reload()
            t.certificates, t.json_text(), t.warnings

    def queue_round(self, i):
        qid = self.q.submit("a@example.org", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n",
                            client_addr="192.0.2.1")
        with self.q.show(qid) as e:
            e.recipients, e.json()
        self.q.delete(qid)

    def lmtp_round(self, i):
        with mxgw.LmtpClient() as c:
            c.msg_new("a@example.org", envid="E%d" % i)
            c.add_rcpt("x@example.test", 2, "rfc822;x@example.test")
            c.submit(0)
            c.start(0)
            c.take_output()
            c.feed(b"220 lmtp ready\r\n", 1)
            list(c.events())
            c.take_output()
            c.abort("4.4.2", "gone", 2)
            list(c.events())
            c.results()
        if i % 50 == 0:
            with mxgw.LmtpConnection("127.0.0.1:%d" % self.dead_port) as conn:
                conn.deliver("a@example.org", ["x@example.test"], b"Subject: x\r\n\r\nx\r\n")

    def error_round(self, i):
        for f in (lambda: self.spf.check("bad ip", "h", "a@b.c"),
                  lambda: self.r.load_zone("x IN A nonsense\n"),
                  lambda: mxgw.Resolver.ares(["bad server"]),
                  lambda: self.q.show("NOSUCHID"),
                  lambda: mxgw.load_certificate("/nonexistent/c.pem")):
            try:
                f()
            except mxgw.MxgwError as e:
                str(e)
            else:
                raise AssertionError("no exception")

    def all(self, i):
        self.spf_round(i)
        self.session_round(i)
        self.error_round(i)
        if i % 5 == 0:
            self.tls_round(i)
            self.queue_round(i)
            self.lmtp_round(i)


def measure(w, n):
    for i in range(n):
        w.all(i)
    gc.collect()


def test_no_leak_over_10000_iterations():
    tmp = tempfile.mkdtemp(prefix="mxgw-py-leak-")
    try:
        w = Workload(tmp)
        measure(w, 500)  # warm-up: caches, arenas, interned strings
        tracemalloc.start()
        r0, t0 = rss_kib(), tracemalloc.get_traced_memory()[0]
        measure(w, N)
        r1, t1 = rss_kib(), tracemalloc.get_traced_memory()[0]
        measure(w, N)
        r2, t2 = rss_kib(), tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        w.close()
        print(f"RSS KiB {r0} -> {r1} -> {r2}; Python heap {t0} -> {t1} -> {t2}")
        # A leak of even 64 bytes per iteration would add 640 KB per round.
        assert t2 - t1 < 64 * 1024, (t1, t2)
        assert r2 - r1 < 512, (r0, r1, r2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SUPP = """{
   swig_python_destroy_module
   Memcheck:Leak
   match-leak-kinds: definite
   ...
   fun:SWIG_Python_DestroyModule
}
"""


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")
def test_valgrind_definite_leaks(tmp_path):
    supp = tmp_path / "swig.supp"
    supp.write_text(SUPP)
    script = tmp_path / "run.py"
    script.write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "import test_leaks, tempfile\n"
        "w = test_leaks.Workload(tempfile.mkdtemp())\n"
        "for i in range(int(sys.argv[1])): w.all(i)\n"
        "w.close()\n" % os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONMALLOC="malloc")
    p = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                        "--show-leak-kinds=definite", "--error-exitcode=99",
                        "--suppressions=" + str(supp), sys.executable, str(script), "200"],
                       capture_output=True, text=True, env=env, timeout=900)
    tail = p.stderr[-6000:]
    print("\n".join(l for l in p.stderr.splitlines()
                    if "lost:" in l or "ERROR SUMMARY" in l or "in use at exit" in l))
    assert p.returncode == 0, tail
    assert "definitely lost: 0 bytes" in p.stderr or "All heap blocks were freed" in p.stderr \
        or "definitely lost" not in p.stderr, tail


@pytest.mark.skipif(not mxgw.server.AVAILABLE, reason="libmxgw has no server yet")
def test_policy_callbacks_do_not_leak(tmp_path):
    """10,000 RCPT policy calls through the C->Python trampoline on worker
    threads (Request objects, replies, an exception every 100th call), twice:
    neither the Python heap nor the RSS grows in the second round."""
    import socket
    import logging
    logging.getLogger("mxgw.server").disabled = True  # the 451s are expected
    calls = [0]
    cfg = mxgw.ServerConfig(hostname="mx.example.test", spool_dir=str(tmp_path / "spool"),
                            queue_sync=0, deliver=0, max_recipients=1000,
                            max_errors=100000, max_junk_commands=100000,
                            policy_workers=2)
    cfg.add_listener("127.0.0.1", 0)

    @cfg.on_rcpt
    def rcpt(req):
        calls[0] += 1
        if calls[0] % 100 == 0:
            raise RuntimeError("every 100th")
        if req.rcpt.startswith("r"):
            return (550, "5.1.1", "no " + req.rcpt)
        return None

    def run(sock, f, n):
        for i in range(0, n, 50):
            sock.sendall(b"".join(b"RCPT TO:<%s%d@example.test>\r\n" % (b"ra"[j % 2:j % 2 + 1], j)
                                  for j in range(i, i + 50)) + b"RSET\r\nMAIL FROM:<a@b.c>\r\n")
            for _ in range(52):
                line = f.readline()
                while line[3:4] == b"-":
                    line = f.readline()
                assert line[:1] in (b"2", b"4", b"5"), line
        gc.collect()

    with mxgw.Server.background(cfg) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.listener_port(0)))
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        f.readline()
        run(sock, f, 1000)
        tracemalloc.start()
        r0, t0 = rss_kib(), tracemalloc.get_traced_memory()[0]
        run(sock, f, N)
        r1, t1 = rss_kib(), tracemalloc.get_traced_memory()[0]
        run(sock, f, N)
        r2, t2 = rss_kib(), tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        sock.close()
    print(f"policy calls {calls[0]}; RSS KiB {r0} -> {r1} -> {r2}; heap {t0} -> {t1} -> {t2}")
    assert calls[0] >= 2 * N + 1000
    assert t2 - t1 < 64 * 1024, (t1, t2)
    assert r2 - r1 < 512, (r0, r1, r2)
