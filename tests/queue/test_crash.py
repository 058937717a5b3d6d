#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# test_crash.py: kill -9 a multi-threaded queue writer at random points (in
# the middle of bodies, fsyncs, renames and group commits), restart it (the
# open recovers the spool), repeat; then check that every message whose
# commit returned OK ("OK <id>" printed after mxgw_queue_commit() returned)
# is present and byte-exact, that every visible message is intact (no
# half-written message is ever visible), and that tmp/ is empty.
import os, random, signal, subprocess, sys, tempfile, time

helper = sys.argv[1]
rounds = int(os.environ.get("QUEUE_CRASH_ROUNDS", "25"))
rng = random.Random(int(os.environ.get("QUEUE_CRASH_SEED", "1")))
spool = tempfile.mkdtemp(prefix="mxgw-crash.")
log = os.path.join(spool + ".log")
acked = set()
fail = 0
with open(log, "wb") as out:
    for r in range(rounds):
        p = subprocess.Popen([helper, "write", spool, "0", str(rng.choice([1, 4, 16]))],
                             stdout=out, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.005, 0.25))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.returncode != -signal.SIGKILL:
            print("writer ended on its own:", p.returncode, p.stderr.read().decode())
            sys.exit(1)
        p.stderr.close()
with open(log) as f:
    for line in f:
        if line.startswith("OK ") and line.endswith("\n"):
            acked.add(line.split()[1])
v = subprocess.run([helper, "verify", spool], capture_output=True, text=True)
if v.returncode != 0:
    print("verify failed:", v.stderr)
    sys.exit(1)
seen, bad, quarantined = set(), [], -1
for line in v.stdout.splitlines():
    w = line.split()
    if w[0] == "MSG":
        seen.add(w[1])
    elif w[0] == "BAD":
        bad.append(w[1])
    elif w[0] == "QUARANTINED":
        quarantined = int(w[1])
missing = acked - seen
extra = seen - acked
print(f"{rounds} kills, {len(acked)} commits acknowledged, {len(seen)} messages "
      f"recovered intact, {len(extra)} committed but killed before the "
      f"acknowledgement was printed, quarantined at last open: {quarantined}")
if missing:
    print("LOST after OK:", sorted(missing)[:10]); fail = 1
if bad:
    print("visible but not intact:", bad[:10]); fail = 1
if os.listdir(os.path.join(spool, "tmp")):
    print("tmp/ not empty after recovery"); fail = 1
corrupt = os.listdir(os.path.join(spool, "corrupt"))
print("corrupt/:", len(corrupt), "entries (lone bodies of commits that never returned OK)")
for c in corrupt:
    if c.split(".")[0] in acked:
        print("acknowledged message quarantined:", c); fail = 1
if len(acked) == 0:
    print("no commit acknowledged at all: the test did not exercise anything"); fail = 1
subprocess.run(["rm", "-rf", spool, log])
print("FAIL" if fail else "PASS")
sys.exit(fail)
