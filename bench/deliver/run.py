#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""run.py: bench_deliver against smtp-sink -L (Postfix's LMTP sink) and a
private Dovecot LMTP (tests/lmtp/lmtp_fixture.py), 1 KiB and 100 KiB,
durable spool on /tmp. Usage: run.py BUILD_DIR [--messages N] [--runs R]
[--concurrency C] [--journal] (--journal: commits go to the queue's journal).
Prints the bench lines; every process started here is stopped by PID."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "lmtp"))
import lmtp_fixture as F  # noqa: E402

build = sys.argv[1]
args = sys.argv[2:]
n = int(args[args.index("--messages") + 1]) if "--messages" in args else 2000
runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 3
conc = args[args.index("--concurrency") + 1] if "--concurrency" in args else "4"
journal = ["--journal"] if "--journal" in args else []
bench = os.path.join(build, "bench", "deliver", "bench_deliver")


def one(backend, size, rcpt="alice@example.test"):
    d = tempfile.mkdtemp(prefix="mxgw-bench-deliver.", dir="/tmp")
    try:
        p = subprocess.run([bench, "--spool", f"{d}/spool", "--backend",
                            backend, "--messages", str(n), "--size",
                            str(size), "--concurrency", conc, "--rcpt", rcpt]
                           + journal,
                           capture_output=True, text=True, timeout=600)
        print(f"backend={backend.split(':')[0]} size={size}", p.stdout.strip()
              .replace("\n", " | "), p.stderr.strip(), flush=True)
    finally:
        shutil.rmtree(d, ignore_errors=True)


port = F.free_port()
sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-L", "-u", "nobody", "-c",
                         f"127.0.0.1:{port}", "1000"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    time.sleep(0.5)
    for size in (1024, 102400):
        for _ in range(runs):
            print("smtp-sink -L:", end=" ")
            one(f"127.0.0.1:{port}", size)
finally:
    sink.send_signal(signal.SIGTERM)
    sink.wait()

dove = F.Dovecot(users=("alice",)).start()
try:
    for size in (1024, 102400):
        for _ in range(runs):
            print("dovecot:", end=" ")
            one(f"127.0.0.1:{dove.port}", size)
finally:
    dove.stop()
