#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""vs_postfix.py: the delivery scheduler side by side with Postfix's own LMTP
delivery, in the same run, to the same kind of backend (a fresh
`smtp-sink -L -u nobody -c` per run, counted by its mesg= counter).

Postfix: a private instance built by ../shared/bench/postfix-peer/setup.sh
(BACKEND=sink, own directories and ports, so that no other instance is
touched), fed by smtp-source (-s 20, one message per connection); its
queue delivers over LMTP to the sink. Measured: wall time from the start of
the feed until the sink has all N messages, and the CPU (user+sys, reaped
children included) of the whole Postfix process tree over that time, so
smtpd, cleanup, qmgr, lmtp, trivial-rewrite ... are all counted.

libmxgw: bench_deliver commits the same N messages of the same size into a
durable spool (its own "phase=commit" line), then delivers them with one
mxgw_deliver_run_once() (its "phase=deliver" line: wall time and CPU of the
bench process only, no SMTP server in front of it).

Second series, delivery alone on both sides: Postfix takes the feed into
its hold queue (smtpd_data_restrictions =
  check_client_access static:HOLD), then
`postsuper -H ALL` plus `postqueue -f` release it; wall time and the tree's CPU from the
release until the sink has all N (qmgr + lmtp + ..., no smtpd).

Runs interleave (postfix, mxgw, postfix, mxgw, ...), R repeats, medians;
the mxgw medians are over both series (2R runs).
Usage: vs_postfix.py BUILD_DIR [--messages N] [--runs R] [--size B]
       [--concurrency C] [--shared DIR] [--journal]
--journal: bench_deliver commits into the queue's journal (MXGW_QOPT_JOURNAL,
what mxgwd uses by default) instead of two files per message.
Every process started here is stopped by PID; the Postfix instance with the
peer's stop.sh (by the PIDs in its pid files)."""
import os
import re
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
if not args or args[0].startswith("-"):
    sys.exit(__doc__)
build = args[0]


def opt(name, default):
    return args[args.index(name) + 1] if name in args else default


n = int(opt("--messages", "5000"))
runs = int(opt("--runs", "3"))
size = int(opt("--size", "1024"))
conc = opt("--concurrency", "4")
journal = ["--journal"] if "--journal" in args else []
shared = opt("--shared", os.path.join(
    subprocess.run(["git", "-C", HERE, "rev-parse", "--show-toplevel"],
                   capture_output=True, text=True).stdout.strip(),
    "..", "shared"))
peer = os.path.join(shared, "bench", "postfix-peer")
bench = os.path.join(build, "bench", "deliver", "bench_deliver")
PATH = os.environ["PATH"] + ":/usr/sbin:/sbin"
# a private peer instance: own directories and ports
ENV = dict(os.environ, PATH=PATH, PF_DIR="/tmp/mxgw-vs-pf",
           DC_DIR="/tmp/mxgw-vs-dc", MAIL_ROOT="/tmp/mxgw-vs-mail",
           PF_PORT="10125", LMTP_PORT="2725", SINK_PORT="2726",
           BACKEND="sink")
SINK = f"127.0.0.1:{ENV['SINK_PORT']}"
HZ = os.sysconf("SC_CLK_TCK")


def tree_cpu(root):
    """CPU seconds (utime+stime+cutime+cstime) of the live tree under root."""
    par, ticks = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                s = f.read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        par[int(p)] = int(f[1])
        ticks[int(p)] = sum(int(x) for x in f[11:15])
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


class Sink:
    def __init__(self):
        self.out = tempfile.NamedTemporaryFile(prefix="mxgw-vs-sink.",
                                               dir="/tmp", delete=False)
        self.p = subprocess.Popen(["smtp-sink", "-L", "-u", "nobody", "-c",
                                   SINK, "1000"], stdout=self.out,
                                  stderr=subprocess.DEVNULL, env=ENV)
        for _ in range(50):
            if subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/{SINK.replace(':', '/')}"],
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        self.base = self.count()  # the probe session

    def count(self):
        with open(self.out.name, "rb") as f:
            f.seek(max(0, os.path.getsize(self.out.name) - 300))
            m = re.findall(rb"mesg=(\d+)", f.read())
        return int(m[-1]) if m else 0

    def delivered(self):
        return self.count() - self.base

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait()
        os.unlink(self.out.name)


def pf_master():
    with open(f"{ENV['PF_DIR']}/spool/pid/master.pid") as f:
        return int(f.read().strip())


def run_postfix(rep):
    sink = Sink()
    try:
        master = pf_master()
        rcpt = f"vs{int(time.time() * 1000) % 10**9}r{rep}@example.test"
        c0, w0 = tree_cpu(master), time.monotonic()
        src = subprocess.run(["smtp-source", "-s", "20", "-m", str(n), "-l",
                              str(size), "-f", "sender@example.org", "-t",
                              rcpt, f"127.0.0.1:{ENV['PF_PORT']}"],
                             capture_output=True, env=ENV, timeout=600)
        wa = time.monotonic()
        while sink.delivered() < n and time.monotonic() - w0 < 600:
            time.sleep(0.05)
        w1, c1 = time.monotonic(), tree_cpu(master)
        got = sink.delivered()
    finally:
        sink.stop()
    r = dict(who="postfix", rep=rep, msgs=n, delivered=got,
             accept_s=wa - w0, secs=w1 - w0, msg_per_s=got / (w1 - w0),
             cpu_ms_per_msg=(c1 - c0) * 1000 / n, src_rc=src.returncode)
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in r.items()), flush=True)
    return r


def count_files(d):
    return sum(len(fs) for _, _, fs in os.walk(d))


def postconf(setting):
    conf = f"{ENV['PF_DIR']}/etc"
    subprocess.run(["postconf", "-c", conf, "-e", setting], env=ENV,
                   check=True)
    subprocess.run(["postfix", "-c", conf, "reload"], env=ENV, check=True,
                   stderr=subprocess.DEVNULL)
    time.sleep(1)


def run_postfix_held(rep):
    """Postfix's queue -> LMTP alone: the feed goes to the hold queue
    (smtpd_data_restrictions =
  check_client_access static:HOLD); then `postsuper -H ALL`, `postqueue -f`, and
    the clock and the CPU of the tree run until the sink has all N."""
    conf = f"{ENV['PF_DIR']}/etc"
    hold = f"{ENV['PF_DIR']}/spool/hold"
    sink = Sink()
    try:
        master = pf_master()
        rcpt = f"vh{int(time.time() * 1000) % 10**9}r{rep}@example.test"
        subprocess.run(["smtp-source", "-s", "20", "-m", str(n), "-l",
                        str(size), "-f", "sender@example.org", "-t", rcpt,
                        f"127.0.0.1:{ENV['PF_PORT']}"], capture_output=True,
                       env=ENV, timeout=600)
        t = time.monotonic()
        while count_files(hold) < n and time.monotonic() - t < 60:
            time.sleep(0.05)
        held = count_files(hold)
        if held < n:
            raise SystemExit(f"only {held} of {n} messages held")
        time.sleep(1)  # let the tree go idle
        c0, w0 = tree_cpu(master), time.monotonic()
        subprocess.run(["postsuper", "-c", conf, "-H", "ALL"], env=ENV,
                       capture_output=True)  # hold -> deferred/
        subprocess.run(["postqueue", "-c", conf, "-f"], env=ENV,
                       capture_output=True)  # deferred -> qmgr now
        while sink.delivered() < n and time.monotonic() - w0 < 600:
            time.sleep(0.05)
        w1, c1 = time.monotonic(), tree_cpu(master)
        got = sink.delivered()
    finally:
        sink.stop()
    r = dict(who="postfix-held", rep=rep, msgs=n, held=held, delivered=got,
             secs=w1 - w0, msg_per_s=got / (w1 - w0),
             cpu_ms_per_msg=(c1 - c0) * 1000 / n)
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in r.items()), flush=True)
    return r


def run_mxgw(rep):
    sink = Sink()
    d = tempfile.mkdtemp(prefix="mxgw-vs-spool.", dir="/tmp")
    try:
        p = subprocess.run([bench, "--spool", f"{d}/spool", "--backend", SINK,
                            "--messages", str(n), "--size", str(size),
                            "--concurrency", conc] + journal,
                           capture_output=True,
                           text=True, timeout=600)
        got = sink.delivered()
    finally:
        sink.stop()
        shutil.rmtree(d, ignore_errors=True)
    kv = {}
    for line in p.stdout.splitlines():
        f = dict(x.split("=", 1) for x in line.split())
        for k in ("secs", "msg_per_s", "cpu_ms_per_msg"):
            kv[f"{f['phase']}_{k}"] = float(f[k])
    r = dict(who="mxgw", rep=rep, msgs=n, delivered=got, rc=p.returncode, **kv)
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in r.items()), p.stderr.strip(), flush=True)
    return r


subprocess.run([os.path.join(peer, "setup.sh")], env=ENV, check=True,
               stdout=subprocess.DEVNULL)
pf, ph, mx = [], [], []
try:
    for rep in range(1, runs + 1):
        pf.append(run_postfix(rep))
        mx.append(run_mxgw(rep))
    postconf("smtpd_data_restrictions = check_client_access static:HOLD")
    for rep in range(1, runs + 1):
        ph.append(run_postfix_held(rep))
        mx.append(run_mxgw(runs + rep))
finally:
    subprocess.run([os.path.join(peer, "stop.sh")], env=ENV,
                   stdout=subprocess.DEVNULL)


def med(rs, k):
    return statistics.median(r[k] for r in rs)


pf_rate, mx_rate = med(pf, "msg_per_s"), med(mx, "deliver_msg_per_s")
print(f"SUMMARY n={n} size={size} runs={runs} journal={int(bool(journal))} (medians) "
      f"postfix_deliver_msg_per_s={pf_rate:.0f} "
      f"postfix_cpu_ms_per_msg={med(pf, 'cpu_ms_per_msg'):.3f} "
      f"mxgw_deliver_msg_per_s={mx_rate:.0f} "
      f"mxgw_deliver_cpu_ms_per_msg={med(mx, 'deliver_cpu_ms_per_msg'):.3f} "
      f"mxgw_commit_cpu_ms_per_msg={med(mx, 'commit_cpu_ms_per_msg'):.3f} "
      f"ratio_msg_per_s={mx_rate / pf_rate:.2f}")
ph_rate = med(ph, "msg_per_s")
print(f"SUMMARY-HELD n={n} size={size} runs={runs} (medians) "
      f"postfix_queue_to_lmtp_msg_per_s={ph_rate:.0f} "
      f"postfix_queue_to_lmtp_cpu_ms_per_msg={med(ph, 'cpu_ms_per_msg'):.3f} "
      f"mxgw_deliver_msg_per_s={mx_rate:.0f} "
      f"ratio_msg_per_s={mx_rate / ph_rate:.2f}")
ok = all(r["delivered"] == n for r in pf + ph + mx) and all(r["rc"] == 0 for r in mx)
sys.exit(0 if ok else 1)
