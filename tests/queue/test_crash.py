#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# test_crash.py: kill -9 a multi-threaded queue writer at random points (in
# the middle of bodies, fsyncs, renames and group commits), restart it (the
# open recovers the spool), repeat; then check that every message whose
# commit returned OK ("OK <id>" printed after mxgw_queue_commit() returned)
# is present and byte-exact, that every visible message is intact (no
# half-written message is ever visible), that no message is there twice,
# and that tmp/ is empty.
#
# With --journal the writer commits into the incoming journal
# (MXGW_QOPT_JOURNAL, 64 KiB segments) while two more threads take
# messages and alternately deliver them (printing "DEL <id>" first: such a
# message may be gone) or defer them (written out as files): the kills
# also hit spills, done records and segment removal. The check is then
# made twice: opened with the journal (its messages may stay in it) and
# then without (everything written out as files, no segment left); both
# must show the same messages.
import os, random, signal, subprocess, sys, tempfile, time

helper = sys.argv[1]
journal = "--journal" in sys.argv[2:]
env = dict(os.environ)
if journal:
    env.update(QUEUE_HELPER_JOURNAL="1", QUEUE_HELPER_SEGMENT="65536",
               QUEUE_HELPER_DELIVERERS="2")
rounds = int(os.environ.get("QUEUE_CRASH_ROUNDS", "25"))
rng = random.Random(int(os.environ.get("QUEUE_CRASH_SEED", "1")))
spool = tempfile.mkdtemp(prefix="mxgw-crash.")
log = os.path.join(spool + ".log")
acked, deleted = set(), set()
fail = 0
with open(log, "wb") as out:
    for r in range(rounds):
        p = subprocess.Popen([helper, "write", spool, "0", str(rng.choice([1, 4, 16]))],
                             stdout=out, stderr=subprocess.PIPE, env=env)
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
        elif line.startswith("DEL ") and line.endswith("\n"):
            deleted.add(line.split()[1])
def verify(venv):
    v = subprocess.run([helper, "verify", spool], capture_output=True,
                       text=True, env=venv)
    if v.returncode != 0:
        print("verify failed:", v.stderr)
        sys.exit(1)
    seen, bad, quarantined, twice, jstat = set(), [], -1, [], None
    for line in v.stdout.splitlines():
        w = line.split()
        if w[0] == "MSG":
            if w[1] in seen:
                twice.append(w[1])
            seen.add(w[1])
        elif w[0] == "BAD":
            bad.append(w[1])
        elif w[0] == "QUARANTINED":
            quarantined = int(w[1])
        elif w[0] == "JOURNAL":
            jstat = (int(w[1]), int(w[2]))
    return seen, bad, quarantined, twice, jstat

seen, bad, quarantined, twice, jstat = verify(env)
if journal:
    off = dict(env, QUEUE_HELPER_JOURNAL="0")
    seen2, bad2, _, twice2, _ = verify(off)
    if seen2 != seen:
        print("journal off shows other messages than journal on:",
              sorted(seen ^ seen2)[:10]); fail = 1
    bad += bad2
    twice += twice2
missing = acked - seen - deleted
extra = seen - acked
print(f"{rounds} kills, {len(acked)} commits acknowledged, {len(seen)} messages "
      f"recovered intact, {len(extra)} committed but killed before the "
      f"acknowledgement was printed, quarantined at last open: {quarantined}")
if journal:
    print(f"journal: {len(deleted)} delivered, recovered from the journal at "
          f"the last open: {jstat[0] if jstat else '?'}, torn segment tails: "
          f"{jstat[1] if jstat else '?'}")
    if jstat is None:
        print("verify did not open with the journal"); fail = 1
    segs = [n for n in os.listdir(os.path.join(spool, "journal"))
            if n.endswith(".log")]
    if segs:
        print("segments left after an open without the journal:", segs)
        fail = 1
if missing:
    print("LOST after OK:", sorted(missing)[:10]); fail = 1
if twice:
    print("listed twice:", twice[:10]); fail = 1
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
