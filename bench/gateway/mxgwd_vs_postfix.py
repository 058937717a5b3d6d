#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""mxgwd_vs_postfix.py: the gateway daemon mxgwd side by side with Postfix,
doing the same job (SMTP in, durable queue, LMTP out to the same backend), on
loopback, in one run with interleaved rounds.

Targets (all started here, in private directories, on free 127.0.0.1 ports):
  mxgwd       mxgwd --config, spool on /tmp (ext4), "sync": true (the
              default: fdatasync/fsync before every 250), workers 0 (one
              loop per CPU), STARTTLS offered, SPF off, recipient validation
              none, LMTP to the backend (concurrency 4, the default), text log
              to a file.
  mxgwd-tmpfs the same with the spool on /dev/shm (fsync costs nothing
              there): separates the file system's share from mxgwd's CPU.
              (--no-tmpfs leaves it out.)
  mxgwd-proxy with --proxy: the same as mxgwd with recipient_validation
              "proxy" (before-queue: each message goes to the backend in
              step with the client, the 250 is the backend's; nothing is
              spooled).
  postfix     the reference instance of shared/bench/postfix-peer/setup.sh
              (smtpd on 127.0.0.1 with STARTTLS offered, relay_domains
              example.test, relay_transport LMTP to the backend), unchanged:
              the shared scripts are called, never modified; Postfix's own
              defaults (max_use 100, default_process_limit 100, lmtp
              concurrency 20, in_flow_delay 1s) stay as they are.
Backend (--backend): "sink" = one `smtp-sink -L -u nobody -c` for the whole
run (its mesg= counter tells how many messages arrived), or "dovecot" = the
Dovecot LMTP that setup.sh starts (Maildir files counted).

Per run (one target, one size, one session count):
  - load: smtp-source -s S -m M -l SIZE -f sender@example.org
    -t <fresh local part>@example.test, one message per connection;
  - a latency probe alongside it: one extra Python client that runs whole
    sessions one after another (EHLO, MAIL, RCPT, DATA, the same SIZE, QUIT)
    with a pause of --probe-gap-ms between them, and times the reply to the
    end of data (from the moment its last byte was handed to the kernel until
    the reply line arrived). Its messages are delivered too;
  - accepted msg/s = M / wall time of smtp-source (every message had its 250);
  - delivered msg/s = (M + probe messages) / time from the start until the
    backend has every one of them;
  - CPU ms/msg = user+sys CPU of the target's whole process tree (live
    processes' utime+stime+cutime+cstime from /proc, so reaped children such
    as Postfix's exited smtpd/cleanup/lmtp processes are counted) from the
    start until the backend has everything and the tree is idle again
    (< 10 ms of CPU in 0.5 s), divided by M + probe messages. smtp-source,
    the probe client and the backend are charged to no target.
Rounds: R rounds; in each, every (size, sessions) runs every target back to
back, and which target goes first rotates. Medians (min-max) over rounds;
latency percentiles are over the probe samples of all rounds pooled.

Idle connections (before the throughput runs, fresh daemons): idle.py of
postfix-peer holds N connections after their 220 and reports the process
tree's RSS and PSS before and while they are held: mxgwd with --idle-n
(10,000), Postfix with --pf-idle-n (150; it greets at most
default_process_limit = 100, one smtpd process each).

Usage (as root; Postfix needs it):
  bench/gateway/mxgwd_vs_postfix.py [--mxgwd PATH] [--shared DIR]
      [--backend sink|dovecot] [--sessions 1,20,100] [--sizes 1024,102400]
      [--rounds 3] [--msgs-small 2000] [--msgs-large 1000]
      [--probe-gap-ms 10] [--idle-n 10000] [--pf-idle-n 150] [--idle-reps 3]
      [--no-idle] [--no-tmpfs] [--no-throughput] [-o OUTFILE]
  --mxgwd defaults to build/release/tools/mxgwd/mxgwd; --shared to
  ../shared (next to the repository).
Output: RUN lines (one per run), IDLE lines, a summary table, and
"RESULT name value unit" lines. Everything started here is stopped by PID
at exit (Postfix and Dovecot by postfix-peer/stop.sh, which uses their pid
files), and the private directories are removed."""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
HZ = os.sysconf("SC_CLK_TCK")
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
DOMAIN = "example.test"
HOSTNAME = "mx.bench.test"

ap = argparse.ArgumentParser(description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--mxgwd", default=os.path.join(ROOT, "build", "release",
                                                "tools", "mxgwd", "mxgwd"))
ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
ap.add_argument("--backend", choices=("sink", "dovecot"), default="sink")
ap.add_argument("--sessions", default="1,20,100")
ap.add_argument("--sizes", default="1024,102400")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--msgs-small", type=int, default=2000)
ap.add_argument("--msgs-large", type=int, default=1000)
ap.add_argument("--probe-gap-ms", type=float, default=10)
ap.add_argument("--idle-n", type=int, default=10000)
ap.add_argument("--pf-idle-n", type=int, default=150)
ap.add_argument("--idle-reps", type=int, default=3)
ap.add_argument("--no-idle", action="store_true")
ap.add_argument("--no-tmpfs", action="store_true")
ap.add_argument("--proxy", action="store_true",
                help="also run mxgwd in proxy (before-queue) mode")
ap.add_argument("--no-throughput", action="store_true")
ap.add_argument("-o", dest="out")
a = ap.parse_args()

PEER = os.path.join(a.shared, "bench", "postfix-peer")
OUT = open(a.out, "w") if a.out else None


def say(*parts):
    line = " ".join(str(p) for p in parts)
    print(line, flush=True)
    if OUT:
        OUT.write(line + "\n")
        OUT.flush()


def die(msg):
    sys.stderr.write("mxgwd_vs_postfix: %s\n" % msg)
    sys.exit(1)


if os.geteuid() != 0:
    die("must run as root (Postfix)")
if not os.access(a.mxgwd, os.X_OK):
    die("no mxgwd at %s (build it, or pass --mxgwd)" % a.mxgwd)
if not os.path.isfile(os.path.join(PEER, "setup.sh")):
    die("postfix-peer scripts not found under %s (pass --shared)" % a.shared)
for b in ("smtp-source", "smtp-sink", "postfix", "dovecot", "openssl"):
    if not shutil.which(b, path=PATH):
        die("missing %s (apt-get install postfix dovecot-core dovecot-lmtpd)"
            % b)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def hostbusy():
    with open("/proc/stat") as f:
        v = f.readline().split()
    return sum(int(v[i]) for i in (1, 2, 3, 6, 7, 8)) / HZ


def tree_cpu(root):
    """CPU seconds (utime+stime+cutime+cstime) of the live tree under root."""
    par, ticks = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % p) as f:
                s = f.read()
        except OSError:
            continue
        fl = s[s.rindex(")") + 2:].split()
        par[int(p)] = int(fl[1])
        ticks[int(p)] = sum(int(x) for x in fl[11:15])
    tot = 0
    for p, t in ticks.items():
        q = p
        for _ in range(64):
            if q == root:
                tot += t
                break
            q = par.get(q, 0)
            if q == 0:
                break
    return tot / HZ


def settle(root, limit=15.0):
    """Wait until the tree uses < 10 ms of CPU in 0.5 s; its CPU then."""
    end = time.monotonic() + limit
    c = tree_cpu(root)
    while time.monotonic() < end:
        time.sleep(0.5)
        c2 = tree_cpu(root)
        if c2 - c < 0.01:
            return c2
        c = c2
    return c


# ---- private directories and ports ------------------------------------------
W = tempfile.mkdtemp(prefix="mxgw-gwd.", dir="/tmp")
os.chmod(W, 0o755)
WT = None if a.no_tmpfs else tempfile.mkdtemp(prefix="mxgw-gwd.",
                                              dir="/dev/shm")
ENV = dict(os.environ, PATH=PATH, PF_DIR=W + "/pf", DC_DIR=W + "/dovecot",
           MAIL_ROOT=W + "/peer-mail", PF_PORT=str(free_port()),
           LMTP_PORT=str(free_port()), SINK_PORT=str(free_port()),
           BACKEND=a.backend)
BACKEND_PORT = int(ENV["SINK_PORT"] if a.backend == "sink"
                   else ENV["LMTP_PORT"])
started = []          # Popen objects of ours, stopped at exit
peer_started = False


def cleanup():
    for p in reversed(started):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if peer_started:
        subprocess.run([os.path.join(PEER, "stop.sh")], env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(W, ignore_errors=True)
    if WT:
        shutil.rmtree(WT, ignore_errors=True)


def on_signal(sig, frame):
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, on_signal)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- backend ----------------------------------------------------------------
class Sink:
    def __init__(self):
        self.outname = os.path.join(W, "sink.out")
        self.out = open(self.outname, "wb")
        self.p = subprocess.Popen(
            ["smtp-sink", "-L", "-u", "nobody", "-c",
             "127.0.0.1:%d" % BACKEND_PORT, "1000"],
            stdout=self.out, stderr=subprocess.DEVNULL, env=ENV,
            preexec_fn=raise_nofile)
        started.append(self.p)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", BACKEND_PORT),
                                         1).close()
                break
            except OSError:
                time.sleep(0.1)
        self.pid = self.p.pid

    def count(self, locals_):
        with open(self.outname, "rb") as f:
            f.seek(max(0, os.path.getsize(self.outname) - 300))
            m = re.findall(rb"mesg=(\d+)", f.read())
        return int(m[-1]) if m else 0

    def clean(self, locals_):
        pass


class Maildirs:
    def __init__(self, pid):
        self.root = os.path.join(ENV["MAIL_ROOT"], DOMAIN)
        self.pid = pid

    def count(self, locals_):
        n = 0
        for lp in locals_:
            for sub in ("new", "cur"):
                try:
                    with os.scandir(os.path.join(self.root, lp, "Maildir",
                                                 sub)) as it:
                        n += sum(1 for _ in it)
                except OSError:
                    pass
        return n

    def clean(self, locals_):
        for lp in locals_:
            shutil.rmtree(os.path.join(self.root, lp), ignore_errors=True)


# ---- mxgwd ------------------------------------------------------------------
class Mxgwd:
    def __init__(self, name, spool_base, proxy=False):
        self.name = name
        d = os.path.join(W, name)
        os.makedirs(d)
        self.port = free_port()
        self.log = os.path.join(d, "mxgwd.log")
        self.err = os.path.join(d, "stderr.log")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-days", "2", "-subj", "/CN=" + HOSTNAME, "-addext",
                        "subjectAltName=DNS:" + HOSTNAME, "-keyout", key,
                        "-out", cert], check=True, capture_output=True)
        os.chmod(key, 0o600)
        self.spool = os.path.join(spool_base, name + "-spool")
        conf = {
            "hostname": HOSTNAME,
            "listeners": [{"address": "127.0.0.1", "port": self.port,
                           "mode": "smtp",
                           "tls": {"policy": "may", "cert_file": cert,
                                   "key_file": key}}],
            "domains": [DOMAIN],
            "spf": {"enabled": False},
            "limits": {"max_connections": 20000,
                       "max_connections_per_ip": 0},
            "spool": {"directory": self.spool},
            "lmtp": {"backends": ["127.0.0.1:%d" % BACKEND_PORT]},
            **({"recipient_validation": {"mode": "proxy"}} if proxy else {}),
            "logging": {"outputs": [{"destination": "file",
                                     "path": self.log, "format": "text"}]},
        }
        self.conf = os.path.join(d, "mxgwd.json")
        with open(self.conf, "w") as f:
            json.dump(conf, f, indent=2)
        r = subprocess.run([a.mxgwd, "--check-config", self.conf],
                           capture_output=True, text=True)
        if r.returncode != 0:
            die("%s --check-config failed:\n%s%s" % (name, r.stdout,
                                                      r.stderr))
        self.p = subprocess.Popen([a.mxgwd, "--config", self.conf],
                                  stdout=subprocess.DEVNULL,
                                  stderr=open(self.err, "wb"),
                                  preexec_fn=raise_nofile)
        started.append(self.p)
        self.pid = self.p.pid
        end = time.time() + 30
        while time.time() < end:
            if self.p.poll() is not None:
                die("%s exited:\n%s" % (name, open(self.err).read()))
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        die("%s did not start" % name)


# ---- latency probe ----------------------------------------------------------
def make_body(size, rcpt):
    line = b"X" * 76 + b"\r\n"
    hdr = ("From: <sender@example.org>\r\nTo: <%s>\r\nSubject: probe\r\n\r\n"
           % rcpt).encode()
    return hdr + line * (size // len(line)) + b"X" * (size % len(line)) \
        + b"\r\n.\r\n"


class Probe(threading.Thread):
    def __init__(self, port, size, rcpt):
        super().__init__(daemon=True)
        self.port, self.rcpt = port, rcpt
        self.body = make_body(size, rcpt)
        self.stop = threading.Event()
        self.lat, self.ok, self.errors, self.first_err = [], 0, 0, ""

    def reply(self, f):
        while True:
            ln = f.readline()
            if not ln:
                raise EOFError("connection closed")
            if ln[3:4] != b"-":
                return ln

    def session(self):
        s = socket.create_connection(("127.0.0.1", self.port), 30)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            for cmd, want in ((None, b"220"), (b"EHLO probe.example.org", b"250"),
                              (b"MAIL FROM:<sender@example.org>", b"250"),
                              (b"RCPT TO:<%s>" % self.rcpt.encode(), b"250"),
                              (b"DATA", b"354")):
                if cmd:
                    s.sendall(cmd + b"\r\n")
                r = self.reply(f)
                if not r.startswith(want):
                    raise RuntimeError(r.decode(errors="replace").strip())
            s.sendall(self.body)
            t = time.perf_counter()
            r = self.reply(f)
            dt = time.perf_counter() - t
            if not r.startswith(b"250"):
                raise RuntimeError(r.decode(errors="replace").strip())
            self.lat.append(dt)
            self.ok += 1
            s.sendall(b"QUIT\r\n")
            self.reply(f)
        finally:
            s.close()

    def run(self):
        while not self.stop.is_set():
            try:
                self.session()
            except Exception as e:  # noqa: BLE001 (counted and reported)
                self.errors += 1
                self.first_err = self.first_err or repr(e)[:80]
            self.stop.wait(a.probe_gap_ms / 1000)


def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    k = (len(v) - 1) * q
    i = int(k)
    return v[i] + (v[min(i + 1, len(v) - 1)] - v[i]) * (k - i)


# ---- one run ----------------------------------------------------------------
seq = [0]


def run_one(tgt, port, root, backend, size, s, m, rnd):
    seq[0] += 1
    tag = "%s%d" % ({"mxgwd": "g", "mxgwd-tmpfs": "t", "mxgwd-proxy": "x",
                      "postfix": "p"}[tgt],
                    seq[0])
    lp, plp = "r%s" % tag, "q%s" % tag
    d0 = backend.count([lp, plp])
    be0 = tree_cpu(backend.pid) if backend.pid else 0
    load = loadavg()
    c0, h0, t0 = tree_cpu(root), hostbusy(), time.monotonic()
    probe = Probe(port, size, "%s@%s" % (plp, DOMAIN))
    probe.start()
    src = subprocess.run(["smtp-source", "-s", str(s), "-m", str(m), "-l",
                          str(size), "-f", "sender@example.org", "-t",
                          "%s@%s" % (lp, DOMAIN), "127.0.0.1:%d" % port],
                         capture_output=True, env=ENV)
    t1 = time.monotonic()
    probe.stop.set()
    probe.join()
    want = m + probe.ok
    t2 = None
    while time.monotonic() - t0 < 600:
        if backend.count([lp, plp]) - d0 >= want:
            t2 = time.monotonic()
            break
        time.sleep(0.02)
    got = backend.count([lp, plp]) - d0
    c1 = settle(root)
    h1 = hostbusy()
    be1 = tree_cpu(backend.pid) if backend.pid else 0
    r = dict(acc=m / (t1 - t0), dlv=(want / (t2 - t0)) if t2 else 0.0,
             cpu=(c1 - c0) * 1000 / want, lat=probe.lat,
             be=(be1 - be0) * 1000 / want)
    err = (src.stdout + src.stderr).decode(errors="replace").strip()
    say("RUN target=%s backend=%s size=%d s=%d m=%d round=%d rc=%d "
        "accept_s=%.3f accept_mps=%.1f deliver_s=%s deliver_mps=%.1f "
        "delivered=%d/%d probe_msgs=%d probe_errors=%d "
        "cpu_s=%.2f cpu_ms_per_msg=%.3f backend_cpu_ms_per_msg=%.3f "
        "lat_p50_ms=%.2f lat_p99_ms=%.2f host_busy_s=%.2f load1=%s%s"
        % (tgt, a.backend, size, s, m, rnd, src.returncode, t1 - t0, r["acc"],
           "%.2f" % (t2 - t0) if t2 else "NA", r["dlv"], got, want, probe.ok,
           probe.errors, c1 - c0, r["cpu"], r["be"],
           pct(probe.lat, .5) * 1000, pct(probe.lat, .99) * 1000, h1 - h0,
           load, (" err=" + err[:100].replace(" ", "_")) if err else ""))
    if src.returncode != 0 or got < want or probe.errors:
        say("WARNING: %s run incomplete or with errors (rc=%d, %d of %d "
            "delivered, probe errors %d %s)" % (tgt, src.returncode, got,
                                               want, probe.errors,
                                               probe.first_err))
    backend.clean([lp, plp])
    time.sleep(1)
    return r


# ---- idle connections --------------------------------------------------------
def idle(tgt, port, root, n, comm, wait):
    cmd = ["/usr/bin/python3", os.path.join(PEER, "idle.py"),
           "127.0.0.1:%d" % port, "-n", str(n), "--wait", str(wait),
           "--hold", "3",
           "--pid", str(root)]
    if comm:
        cmd += ["--comm", comm]
    r = subprocess.run(cmd, capture_output=True, text=True,
                       preexec_fn=raise_nofile)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else \
        "no output: " + r.stderr.strip()[-200:]
    say("IDLE target=%s load1=%s %s" % (tgt, loadavg(), line))
    kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
    return kv


def main():
    global peer_started
    T0 = time.time()
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    ver = subprocess.run([a.mxgwd, "--version"], capture_output=True,
                         text=True).stdout.strip()
    pfv = subprocess.run(["postconf", "-d", "-h", "mail_version"],
                         capture_output=True, text=True, env=ENV).stdout.strip()
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always",
                          "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    say("# mxgwd_vs_postfix %s: %d CPUs (%s), load %s, RLIMIT_NOFILE %s"
        % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.cpu_count(),
           cpu, " ".join(open("/proc/loadavg").read().split()[:3]),
           resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    say("# %s (%s), Postfix %s, libmxgw %s, backend %s" %
        (ver, a.mxgwd, pfv, git or "?", a.backend))

    # the daemons inherit setup.sh's stdout and stderr: a file, not a pipe
    # (a pipe would never reach EOF while they run)
    peer_started = True
    setup_log = os.path.join(W, "setup.log")
    with open(setup_log, "wb") as lf:
        rc = subprocess.run([os.path.join(PEER, "setup.sh")], env=ENV,
                            stdin=subprocess.DEVNULL, stdout=lf,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0:
        die("postfix-peer setup.sh failed:\n" + open(setup_log).read())
    with open(ENV["PF_DIR"] + "/spool/pid/master.pid") as f:
        pf_master = int(f.read().strip())
    dc_master = None
    try:
        with open(ENV["DC_DIR"] + "/run/master.pid") as f:
            dc_master = int(f.read().strip())
    except OSError:
        pass
    if a.backend == "sink":
        if dc_master:      # not used: stop it by its pid to free its CPU
            os.kill(dc_master, signal.SIGTERM)
        backend = Sink()
    else:
        backend = Maildirs(dc_master)
    gws = [Mxgwd("mxgwd", W)]
    if WT:
        gws.append(Mxgwd("mxgwd-tmpfs", WT))
    if a.proxy:
        gws.append(Mxgwd("mxgwd-proxy", W, proxy=True))
    targets = [(g.name, g.port, g.pid) for g in gws] + \
        [("postfix", int(ENV["PF_PORT"]), pf_master)]
    say("# postfix smtpd 127.0.0.1:%s (master %d); %s; backend %s "
        "127.0.0.1:%d; mxgwd spool %s%s" %
        (ENV["PF_PORT"], pf_master,
         ", ".join("%s 127.0.0.1:%d (pid %d)" % t for t in targets[:-1]),
         a.backend, BACKEND_PORT, gws[0].spool,
         (", tmpfs spool " + gws[1].spool) if WT else ""))
    time.sleep(1)

    idle_res = {}
    if not a.no_idle:
        for rep in range(a.idle_reps):
            idle_res.setdefault("mxgwd", []).append(
                idle("mxgwd", gws[0].port, gws[0].pid, a.idle_n, None, 30))
            time.sleep(2)
            idle_res.setdefault("postfix", []).append(
                idle("postfix", int(ENV["PF_PORT"]), pf_master, a.pf_idle_n,
                     "smtpd", 10))
            time.sleep(2)

    res = {}
    sizes = [int(x) for x in a.sizes.split(",")]
    sess = [int(x) for x in a.sessions.split(",")]
    k = 0
    if not a.no_throughput:
        for rnd in range(1, a.rounds + 1):
            for size in sizes:
                m = a.msgs_small if size <= 10240 else a.msgs_large
                for s in sess:
                    k += 1
                    order = targets[k % len(targets):] + \
                        targets[:k % len(targets)]
                    for name, port, root in order:
                        res.setdefault((name, size, s), []).append(
                            run_one(name, port, root, backend, size, s, m,
                                    rnd))

    # ---- summary --------------------------------------------------------------
    say("")
    say("# load at the end: %s; total time %d s" %
        (" ".join(open("/proc/loadavg").read().split()[:3]),
         time.time() - T0))
    if res:
        say("| size | sess | target | accepted msg/s | delivered msg/s | "
            "CPU ms/msg (tree) | after-DATA p50 ms | p99 ms | probe n |")
        say("|---|---|---|---|---|---|---|---|---|")

    def mmm(v, f):
        v = sorted(v)
        return "%s (%s–%s)" % (f % statistics.median(v), f % v[0], f % v[-1])

    for size in sizes:
        for s in sess:
            for name, _, _ in targets:
                rs = res.get((name, size, s))
                if not rs:
                    continue
                lat = [x for r in rs for x in r["lat"]]
                say("| %s | %d | %s | %s | %s | %s | %.2f | %.2f | %d |" %
                    ("1 KiB" if size == 1024 else "%d KiB" % (size // 1024)
                     if size % 1024 == 0 else str(size), s, name,
                     mmm([r["acc"] for r in rs], "%.0f"),
                     mmm([r["dlv"] for r in rs], "%.0f"),
                     mmm([r["cpu"] for r in rs], "%.3f"),
                     pct(lat, .5) * 1000, pct(lat, .99) * 1000, len(lat)))
                key = "gwd_%s_%s_%d_s%d" % (name.replace("-", "_"), a.backend,
                                            size, s)
                say("RESULT %s_accept_mps %.1f msg/s" %
                    (key, statistics.median(r["acc"] for r in rs)))
                say("RESULT %s_deliver_mps %.1f msg/s" %
                    (key, statistics.median(r["dlv"] for r in rs)))
                say("RESULT %s_cpu_ms %.3f ms/msg" %
                    (key, statistics.median(r["cpu"] for r in rs)))
                say("RESULT %s_lat_p50_ms %.2f ms" % (key, pct(lat, .5) * 1000))
                say("RESULT %s_lat_p99_ms %.2f ms" % (key, pct(lat, .99) * 1000))
            pf = res.get(("postfix", size, s))
            gw = res.get(("mxgwd", size, s))
            if pf and gw:
                say("RESULT gwd_ratio_%s_%d_s%d_accept %.2f x" %
                    (a.backend, size, s,
                     statistics.median(r["acc"] for r in gw) /
                     statistics.median(r["acc"] for r in pf)))
    for name, rs in idle_res.items():
        for i, kv in enumerate(rs):
            say("RESULT gwd_idle_%s_rep%d greeted=%s tree_rss_kb=%s "
                "tree_pss_kb=%s per_conn_pss_kb=%s" %
                (name, i + 1, kv.get("greeted"), kv.get("tree_rss_kb"),
                 kv.get("tree_pss_kb"), kv.get("per_conn_pss_kb")))


try:
    main()
except KeyboardInterrupt:
    say("interrupted")
finally:
    cleanup()
