# SPDX-License-Identifier: MIT
"""test_haproxy.py: the PROXY protocol parser (mxgw_proxyproto.h) against
the headers a real HAProxy (Debian's haproxy package) sends.

A private HAProxy runs on loopback with its own configuration: frontends on
free ports relay to backends whose servers use `send-proxy` (v1) and
`send-proxy-v2` (v2, also with `proxy-v2-options crc32c,unique-id`), on
IPv4, IPv6 and UNIX-socket frontends, and two health-checked servers (a
PROXY header goes on HAProxy's own check connections too: v1 with the
check connection's addresses, v2 LOCAL). A Python client connects through
each frontend from 127.0.0.2 (or ::1), so the client's address differs
from the frontend's; a Python listener
captures every byte HAProxy sends upstream; pp-decode (tests/proxyproto/
pp_decode.c, the library's parser) must report the client's real address
and port, the frontend's address and port, and exactly the client's bytes
after the header.

Environment: MXGW_PP_DECODE (path to pp-decode), optional MXGW_HAPROXY.
Debian's /usr/bin/python3, standard library only. Loopback only.
"""
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

DECODE = os.environ.get("MXGW_PP_DECODE", "")
HAPROXY = os.environ.get("MXGW_HAPROXY") or shutil.which("haproxy") or \
    "/usr/sbin/haproxy"
PAYLOAD = b"EHLO client.example\r\n"
# not the frontend's address, so the test can tell them apart
CLIENT4 = "127.0.0.2"


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_bound(host, port):
    """True once something listens on host:port (our bind then fails)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def decode(data, *tlvs):
    args = [DECODE]
    for t in tlvs:
        args += ["--tlv", str(t)]
    p = subprocess.run(args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    out = {}
    for line in p.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    out["exit"] = p.returncode
    return out


class Capture:
    """A listener standing in for the backend server: records the bytes of
    each connection (until the client's payload has arrived, or EOF), then
    answers OK and closes."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.got = queue.Queue()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                data = b""
                try:
                    while not data.endswith(PAYLOAD):
                        b = c.recv(65536)
                        if not b:
                            break
                        data += b
                    c.sendall(b"OK\r\n")
                except OSError:
                    pass
                self.got.put(data)

    def next(self, timeout=10):
        return self.got.get(timeout=timeout)

    def close(self):
        self.stopping = True
        self.sock.close()


class HAProxy:
    """haproxy -db -f <private config>, stopped with SIGTERM on exit."""

    def __init__(self, tmpdir, cfg_text, ports, paths):
        self.dir = tmpdir
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(self.cfg, "w") as f:
            f.write(cfg_text)
        self.ports = ports
        self.log = open(os.path.join(self.dir, "haproxy.log"), "w+")
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if check.returncode != 0:
            raise AssertionError("haproxy -c: " + check.stdout.decode())
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.cfg],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 15
        while not (all(port_bound(h, p) for h, p in ports) and
                   all(os.path.exists(p) for p in paths)):
            if self.proc.poll() is not None:
                raise AssertionError("haproxy exited: " + self.logtext())
            if time.monotonic() > deadline:
                raise AssertionError("haproxy did not bind: " + self.logtext())
            time.sleep(0.05)

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def connect_through(fe_host, fe_port, src_host):
    """Connect to a frontend from src_host, send PAYLOAD, read OK back.
    Returns the client's own (address, port)."""
    if fe_host.startswith("/"):
        fam = socket.AF_UNIX
    else:
        fam = socket.AF_INET6 if ":" in fe_host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        if fam == socket.AF_UNIX:
            s.connect(fe_host)
            me = None
        else:
            s.bind((src_host, 0))
            s.connect((fe_host, fe_port))
            me = s.getsockname()[:2]
        s.sendall(PAYLOAD)
        reply = b""
        while not reply.endswith(b"\r\n"):
            b = s.recv(100)
            if not b:
                break
            reply += b
        if reply != b"OK\r\n":
            raise AssertionError("reply through HAProxy: %r" % reply)
        return me


@unittest.skipUnless(os.path.exists(HAPROXY), "haproxy is not installed")
class TestHAProxy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not DECODE or not os.access(DECODE, os.X_OK):
            raise AssertionError("MXGW_PP_DECODE must name pp-decode")
        cls.v6 = have_ipv6_loopback()
        cls.cap = {k: Capture() for k in ("v1", "v2", "v2x", "chk1", "chk2")}
        fe = {k: free_port("127.0.0.1") for k in ("v1", "v2", "v2x",
                                                     "chk1", "chk2")}
        ports = [("127.0.0.1", p) for p in fe.values()]
        binds6 = {}
        if cls.v6:
            binds6 = {k: free_port("::1") for k in ("v1", "v2")}
            ports += [("::1", p) for p in binds6.values()]
        cls.fe, cls.fe6 = fe, binds6
        tmpdir = tempfile.mkdtemp(prefix="mxgw-pp-")
        cls.unix = {k: os.path.join(tmpdir, k + ".sock") for k in ("v1", "v2")}

        def bind6(k):
            return ("  bind [::1]:%d\n" % binds6[k]) if k in binds6 else ""

        c = cls.cap
        v2opts = "proxy-v2-options crc32c,unique-id"
        cfg = f"""global
  maxconn 200
  nbthread 1

defaults
  mode tcp
  timeout connect 5s
  timeout client 10s
  timeout server 10s

listen pp_v1
  bind 127.0.0.1:{fe['v1']}
{bind6('v1')}  bind unix@{cls.unix['v1']}
  server up 127.0.0.1:{c['v1'].port} send-proxy

listen pp_v2
  bind 127.0.0.1:{fe['v2']}
{bind6('v2')}  bind unix@{cls.unix['v2']}
  server up 127.0.0.1:{c['v2'].port} send-proxy-v2

listen pp_v2x
  bind 127.0.0.1:{fe['v2x']}
  unique-id-format mxgw-%ci-%cp
  server up 127.0.0.1:{c['v2x'].port} send-proxy-v2 {v2opts}

listen chk_v1
  bind 127.0.0.1:{fe['chk1']}
  server up 127.0.0.1:{c['chk1'].port} send-proxy check inter 300ms

listen chk_v2
  bind 127.0.0.1:{fe['chk2']}
  server up 127.0.0.1:{c['chk2'].port} send-proxy-v2 check inter 300ms
"""
        cls.hap = HAProxy(tmpdir, cfg, ports, list(cls.unix.values()))

    @classmethod
    def tearDownClass(cls):
        cls.hap.stop()
        for c in cls.cap.values():
            c.close()

    def relay(self, key, fe_host, fe_port, src_host, *tlvs):
        cap = self.cap[key]
        me = connect_through(fe_host, fe_port, src_host)
        data = cap.next()
        self.assertTrue(data.endswith(PAYLOAD), data)
        d = decode(data, *tlvs)
        self.assertEqual(d["exit"], 0, d)
        hl = int(d["rc"])
        # the header is exactly what precedes the client's bytes
        self.assertEqual(data[hl:], PAYLOAD)
        self.assertEqual(int(d["rest"]), len(PAYLOAD))
        # and it is complete only at its last byte
        for k in range(hl):
            self.assertIn(decode(data[:k])["exit"], (1,), (k, hl))
        return me, d, data[:hl]

    def expect(self, d, version, family, me, fe_host, fe_port):
        self.assertEqual(d["version"], str(version))
        self.assertEqual(d["command"], "proxy")
        self.assertEqual(d["family"], family)
        self.assertEqual(d["src"], me[0])
        self.assertEqual(d["sport"], str(me[1]))
        self.assertEqual(d["dst"], fe_host)
        self.assertEqual(d["dport"], str(fe_port))

    def test_v1_tcp4(self):
        me, d, hdr = self.relay("v1", "127.0.0.1", self.fe["v1"], CLIENT4)
        self.assertEqual(me[0], CLIENT4)
        self.expect(d, 1, "inet", me, "127.0.0.1", self.fe["v1"])
        self.assertEqual(hdr, ("PROXY TCP4 %s 127.0.0.1 %d %d\r\n" % (
            CLIENT4, me[1], self.fe["v1"])).encode())

    def test_v1_tcp6(self):
        if not self.v6:
            self.skipTest("no IPv6 loopback")
        me, d, hdr = self.relay("v1", "::1", self.fe6["v1"], "::1")
        self.expect(d, 1, "inet6", me, "::1", self.fe6["v1"])
        self.assertTrue(hdr.startswith(b"PROXY TCP6 ::1 ::1 "), hdr)

    def test_v2_inet(self):
        me, d, hdr = self.relay("v2", "127.0.0.1", self.fe["v2"], CLIENT4)
        self.expect(d, 2, "inet", me, "127.0.0.1", self.fe["v2"])
        self.assertEqual(hdr[12:14], b"\x21\x11")

    def test_v2_inet6(self):
        if not self.v6:
            self.skipTest("no IPv6 loopback")
        me, d, hdr = self.relay("v2", "::1", self.fe6["v2"], "::1")
        self.expect(d, 2, "inet6", me, "::1", self.fe6["v2"])
        self.assertEqual(hdr[12:14], b"\x21\x21")

    def test_v2_crc32c_and_unique_id(self):
        me, d, hdr = self.relay("v2x", "127.0.0.1", self.fe["v2x"], CLIENT4,
                                3, 5)
        self.expect(d, 2, "inet", me, "127.0.0.1", self.fe["v2x"])
        # HAProxy's own CRC32c, which the parser verified (exit 0)
        self.assertEqual(len(d.get("tlv.3", "")), 8, d)
        uid = bytes.fromhex(d["tlv.5"]).decode()
        self.assertEqual(uid, "mxgw-%s-%d" % (CLIENT4, me[1]))
        # the same header with one address bit changed fails the CRC
        bad = bytearray(hdr)
        bad[16] ^= 0x01
        r = decode(bytes(bad))
        self.assertEqual(r["exit"], 2, r)
        self.assertIn("CRC32C", r["why"])

    def test_unix_client(self):
        # a client on HAProxy's UNIX-socket frontend: no IP to relay; v1
        # says "UNKNOWN"
        _, d, hdr = self.relay("v1", self.unix["v1"], 0, None)
        self.assertEqual(hdr, b"PROXY UNKNOWN\r\n")
        self.assertEqual((d["version"], d["command"], d["family"], d["src"]),
                         ("1", "local", "unspec", ""))
        _, d, hdr = self.relay("v2", self.unix["v2"], 0, None)
        self.assertEqual(d["version"], "2")
        # HAProxy 2.6 relays a UNIX-socket client as LOCAL with no block
        self.assertEqual(hdr[12:], b"\x20\x00\x00\x00")
        self.assertEqual((d["version"], d["command"], d["family"], d["src"]),
                         ("2", "local", "unspec", ""))

    def test_health_checks(self):
        # HAProxy's own check connections: v1 carries the check
        # connection's own addresses, v2 is LOCAL ("use the socket's")
        data = self.cap["chk1"].next(timeout=15)
        d = decode(data)
        self.assertEqual(d["exit"], 0, (data, d))
        self.assertEqual((d["version"], d["command"], d["family"]),
                         ("1", "proxy", "inet"))
        self.assertEqual((d["src"], d["dst"]), ("127.0.0.1", "127.0.0.1"))
        self.assertEqual(d["dport"], str(self.cap["chk1"].port))
        self.assertEqual(data, ("PROXY TCP4 127.0.0.1 127.0.0.1 %s %d\r\n" % (
            d["sport"], self.cap["chk1"].port)).encode())

        data = self.cap["chk2"].next(timeout=15)
        d = decode(data)
        self.assertEqual(d["exit"], 0, (data, d))
        self.assertEqual((d["version"], d["command"], d["family"], d["src"],
                          d["sport"]), ("2", "local", "unspec", "", "0"))
        self.assertEqual(data[12], 0x20)
        self.assertEqual(int(d["rc"]), len(data))

if __name__ == "__main__":
    unittest.main(verbosity=2 if "-v" in sys.argv else 1)
