#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""dns_fixture.py: real DNS servers on loopback for the c-ares tests.

Starts, each on its own free port on 127.0.0.1:
  - NSD (Debian's `nsd`), authoritative for spf.test (tests/dns/spf.test.zone,
    the same file the static resolver loads), bulk.test (generated: one SPF
    record per name for the many-in-flight tests) and broken.test (a zone
    that fails to load, so NSD answers SERVFAIL); any other name is REFUSED.
    NSD runs in the foreground as the current user, with its config, pid,
    state and log files in a private temporary directory.
  - a silent UDP socket that never answers (timeouts);
  - a lying UDP server for liar.test that answers with a wrong ID, garbage,
    wrong types, truncation without TCP, CNAME loops, ... and logs every
    query it gets (one "name type" line per query) so tests can count them.
Then it runs the command after `--` with these in its environment:
  MXGW_TEST_DNS            NSD, "127.0.0.1:PORT"
  MXGW_TEST_DNS_SILENT     the silent socket
  MXGW_TEST_DNS_LIAR       the lying server
  MXGW_TEST_DNS_LIAR_LOG   its query log
  MXGW_TEST_DNS_ZONE       spf.test.zone
  MXGW_TEST_DNS_BULK_ZONE  the generated bulk.test zone
  MXGW_TEST_DNS_BULK       how many names bulk.test has
stops everything and exits with the command's status. Without a command
(`--serve`) it prints the variables and serves until interrupted.
"""
import argparse
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            u.close()
            t.close()
            continue
        u.close()
        t.close()
        return port
    raise RuntimeError("no free port")


# ---- DNS wire helpers ---------------------------------------------------

def enc_name(name):
    out = b""
    for lab in name.rstrip(".").split("."):
        if lab:
            b = lab.encode()
            out += bytes([len(b)]) + b
    return out + b"\0"


def parse_query(pkt):
    """(id, flags, qname, qtype, question bytes) or None."""
    if len(pkt) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", pkt[:6])
    if qd != 1:
        return None
    off, labels = 12, []
    while off < len(pkt) and pkt[off]:
        n = pkt[off]
        if n & 0xC0:
            return None
        labels.append(pkt[off + 1:off + 1 + n].decode("latin-1"))
        off += 1 + n
    if off + 5 > len(pkt):
        return None
    qtype = struct.unpack("!H", pkt[off + 1:off + 3])[0]
    return qid, flags, ".".join(labels).lower(), qtype, pkt[12:off + 5]


def header(qid, rcode=0, an=0, ns=0, tc=False, aa=True):
    flags = 0x8000 | 0x0100 | rcode  # QR, RD copied
    if aa:
        flags |= 0x0400
    if tc:
        flags |= 0x0200
    return struct.pack("!HHHHHH", qid, flags, 1, an, ns, 0)


def rr(name_bytes, rtype, ttl, rdata):
    return name_bytes + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def txt_rdata(*strings):
    out = b""
    for s in strings:
        b = s.encode()
        out += bytes([len(b)]) + b
    return out


SOA = rr(enc_name("liar.test"), 6, 300,
         enc_name("ns.liar.test") + enc_name("h.liar.test") +
         struct.pack("!IIIII", 1, 3600, 600, 86400, 30))


def liar_answer(q):
    """The reply bytes for a query to the lying server, or None (silence)."""
    qid, _flags, qname, qtype, question = q
    first = qname.split(".")[0]
    ptr = b"\xc0\x0c"  # the question name
    if not qname.endswith("liar.test"):
        return header(qid, rcode=5) + question
    if first == "drop":
        return None
    if first == "badid":
        return header((qid + 1) & 0xFFFF, an=1) + question + \
            rr(ptr, 16, 300, txt_rdata("v=spf1 +all"))
    if first == "wrongq":
        other = enc_name("other.liar.test") + question[-4:]
        return header(qid, an=1) + other + rr(b"\xc0\x0c", 16, 300,
                                              txt_rdata("v=spf1 +all"))
    if first == "garbage":
        # one answer whose RDLENGTH runs past the end of the message
        return header(qid, an=1) + question + ptr + \
            struct.pack("!HHIH", qtype, 1, 300, 200) + b"\x05ab"
    if first == "badtxt":
        # a character-string longer than its RDATA
        return header(qid, an=1) + question + rr(ptr, 16, 300, b"\x40v=spf1")
    if first == "badlen":
        # an A record of 3 octets
        return header(qid, an=1) + question + rr(ptr, qtype, 300, b"\x01\x02\x03")
    if first == "loop":
        # the owner name of the answer is a pointer to itself
        start = 12 + len(question)
        me = struct.pack("!H", 0xC000 | start)
        return header(qid, an=1) + question + rr(me, 16, 300, txt_rdata("x"))
    if first == "wrongtype":
        return header(qid, an=1) + question + rr(ptr, 1, 300, b"\xc0\x00\x02\x01")
    if first == "trunc":
        return header(qid, tc=True) + question
    if first == "servfail":
        return header(qid, rcode=2) + question
    if first == "cnameloop":
        a = enc_name(qname)
        b = enc_name("x." + qname)
        return header(qid, an=2) + question + rr(a, 5, 300, b) + rr(b, 5, 300, a)
    if first == "ok":
        # a well-behaved name: counted by the tests through the log
        if qtype == 16:
            return header(qid, an=1) + question + \
                rr(ptr, 16, 300, txt_rdata("v=spf1 ip4:192.0.2.1 -all"))
        if qtype == 1:
            return header(qid, an=1) + question + rr(ptr, 1, 300, bytes([192, 0, 2, 1]))
        return header(qid, ns=1) + question + SOA
    if first == "nxdomain":
        return header(qid, rcode=3, ns=1) + question + SOA
    if first == "nodata-nosoa":
        return header(qid) + question
    return header(qid, rcode=5) + question


def serve_udp(sock, stop, answer, log=None):
    while not stop.is_set():
        r, _, _ = select.select([sock], [], [], 0.1)
        if not r:
            continue
        try:
            pkt, peer = sock.recvfrom(4096)
        except OSError:
            continue
        q = parse_query(pkt)
        if q is None:
            continue
        if log is not None:
            with open(log, "a") as f:
                f.write("%s %d\n" % (q[2], q[3]))
        out = answer(q)
        if out is not None:
            sock.sendto(out, peer)


# ---- NSD ----------------------------------------------------------------

def bulk_zone(n):
    lines = ["$ORIGIN bulk.test.", "$TTL 300",
             "@ SOA ns.bulk.test. h.bulk.test. 1 3600 600 86400 60",
             "@ NS ns", "ns A 127.0.0.1"]
    for i in range(n):
        # d<i>: authorizes 192.0.2.<i % 250> directly and through an A lookup
        lines.append('d%d TXT "v=spf1 ip4:192.0.2.%d a:h%d.bulk.test -all"'
                     % (i, i % 250, i))
        lines.append("h%d A 198.51.100.%d" % (i, i % 250))
    return "\n".join(lines) + "\n"


def query_ok(port, name, timeout):
    deadline = time.time() + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    pkt = struct.pack("!HHHHHH", 4242, 0x0100, 1, 0, 0, 0) + enc_name(name) + \
        struct.pack("!HH", 6, 1)
    try:
        while time.time() < deadline:
            try:
                s.sendto(pkt, ("127.0.0.1", port))
                data, _ = s.recvfrom(4096)
                if len(data) >= 12 and data[:2] == pkt[:2] and (data[3] & 0xF) == 0:
                    return True
            except OSError:
                time.sleep(0.05)
        return False
    finally:
        s.close()


def start_nsd(tmp, port, zone, nbulk):
    nsd = shutil.which("nsd") or "/usr/sbin/nsd"
    if not os.path.exists(nsd):
        sys.exit("dns_fixture: nsd not found (apt-get install nsd)")
    shutil.copy(zone, os.path.join(tmp, "spf.test.zone"))
    bulk = os.path.join(tmp, "bulk.test.zone")
    with open(bulk, "w") as f:
        f.write(bulk_zone(nbulk))
    with open(os.path.join(tmp, "broken.test.zone"), "w") as f:
        f.write("$ORIGIN broken.test.\n@ SOA this is not a zone file\n")
    conf = os.path.join(tmp, "nsd.conf")
    with open(conf, "w") as f:
        f.write("""server:
  ip-address: 127.0.0.1@{port}
  port: {port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{tmp}"
  database: ""
  zonelistfile: "{tmp}/zone.list"
  xfrdfile: "{tmp}/xfrd.state"
  xfrdir: "{tmp}"
  pidfile: "{tmp}/nsd.pid"
  logfile: "{tmp}/nsd.log"
  cookie-secret-file: "{tmp}/cookiesecrets.txt"
  server-count: 1
  tcp-count: 200
  verbosity: 0
  hide-version: yes
  reuseport: no
remote-control:
  control-enable: no
zone:
  name: spf.test
  zonefile: "{tmp}/spf.test.zone"
zone:
  name: bulk.test
  zonefile: "{tmp}/bulk.test.zone"
zone:
  name: broken.test
  zonefile: "{tmp}/broken.test.zone"
""".format(port=port, tmp=tmp))
    log = open(os.path.join(tmp, "nsd.stderr"), "w")
    proc = subprocess.Popen([nsd, "-d", "-c", conf], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    if not query_ok(port, "spf.test", 15) or not query_ok(port, "bulk.test", 15):
        proc.kill()
        proc.wait()
        for name in ("nsd.stderr", "nsd.log"):
            p = os.path.join(tmp, name)
            if os.path.exists(p):
                sys.stderr.write(open(p).read())
        sys.exit("dns_fixture: nsd did not start on port %d" % port)
    return proc, bulk


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zone", default=os.path.join(HERE, "spf.test.zone"))
    ap.add_argument("--bulk", type=int, default=1000,
                    help="names in the generated bulk.test zone")
    ap.add_argument("--serve", action="store_true",
                    help="print the environment and serve until interrupted")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd and not args.serve:
        ap.error("give a command after --, or --serve")

    tmp = tempfile.mkdtemp(prefix="mxgw-dns-")
    stop = threading.Event()
    threads, socks, nsd = [], [], None
    try:
        nsd_port = free_port()
        nsd, bulk = start_nsd(tmp, nsd_port, args.zone, args.bulk)

        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        liar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        liar.bind(("127.0.0.1", 0))
        socks += [silent, liar]
        liar_log = os.path.join(tmp, "liar.log")
        open(liar_log, "w").close()
        t = threading.Thread(target=serve_udp,
                             args=(liar, stop, liar_answer, liar_log), daemon=True)
        t.start()
        threads.append(t)

        env = dict(os.environ)
        env.update({
            "MXGW_TEST_DNS": "127.0.0.1:%d" % nsd_port,
            "MXGW_TEST_DNS_SILENT": "127.0.0.1:%d" % silent.getsockname()[1],
            "MXGW_TEST_DNS_LIAR": "127.0.0.1:%d" % liar.getsockname()[1],
            "MXGW_TEST_DNS_LIAR_LOG": liar_log,
            "MXGW_TEST_DNS_ZONE": os.path.abspath(args.zone),
            "MXGW_TEST_DNS_BULK_ZONE": bulk,
            "MXGW_TEST_DNS_BULK": str(args.bulk),
        })
        if args.serve and not cmd:
            for k in sorted(env):
                if k.startswith("MXGW_TEST_DNS"):
                    print("export %s=%s" % (k, env[k]), flush=True)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            return 0
        child = subprocess.Popen(cmd, env=env)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.terminate()
            return child.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        for s in socks:
            s.close()
        if nsd is not None:
            nsd.terminate()
            try:
                nsd.wait(10)
            except subprocess.TimeoutExpired:
                nsd.kill()
                nsd.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    sys.exit(main())
