#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# test_cli.py: mxgw-queue against a spool filled by queue_helper: list
# (postqueue -p style and --json), show, stats, hold/release/requeue/delete
# of one ID and of ALL (with --state), and the exit status (0 ok, 1
# failure, 2 usage).
import json, re, subprocess, sys, tempfile

helper, cli = sys.argv[1], sys.argv[2]
spool = tempfile.mkdtemp(prefix="mxgw-cli.")
fails = []

def run(*args, code=0):
    p = subprocess.run([cli, "--spool", spool, *args], capture_output=True, text=True)
    if p.returncode != code:
        fails.append(f"{args}: exit {p.returncode}, wanted {code}: {p.stderr}")
    return p.stdout

def check(cond, what):
    if not cond:
        fails.append(what)

subprocess.run([helper, "write", spool, "3", "1"], check=True, capture_output=True)
ids = sorted(l.split()[1] for l in
             subprocess.run([helper, "verify", spool], capture_output=True, text=True,
                            check=True).stdout.splitlines() if l.startswith("MSG"))
check(len(ids) == 3, "3 messages written")
out = run("list")
check(out.startswith("-Queue ID-"), "list header")
check(all(i in out for i in ids), "list shows every ID")
check("alice@example.org" in out and "bob@example.net" in out, "sender and recipients")
check(re.search(r"-- \d+ Kbytes in 3 Requests\.", out), "list summary line: " + out[-80:])
# defer them: the second recipient gets a 451 that list must show
subprocess.run([helper, "defer", spool], check=True, capture_output=True)
out = run("list", "--state", "deferred")
check(out.count("(451 4.4.1 connect to 127.0.0.1[127.0.0.1]:2525: Connection refused)") == 3,
      "last error shown per recipient: " + out)
check("info@example.net" not in out, "delivered recipient not listed")
js = json.loads(run("list", "--json"))
check(len(js) == 3 and all(m["state"] == "deferred" for m in js), "json list states")
check(js[0]["recipients"][1]["code"] == 451 and js[0]["recipients"][0]["state"] == "delivered",
      "json recipient results")
sh = json.loads(run("show", ids[0]))
check(sh["id"] == ids[0] and sh["sender"] == "alice@example.org" and sh["attempts"] == 1, "show")
run("show", "0000000000000000000000", code=1)
st = json.loads(run("stats", "--json"))
check(st["deferred"] == 3 and st["incoming"] == 0, "stats counts")
check(st["oldest_deferred"]["id"] == ids[0] and "451 4.4.1" in st["oldest_deferred"]["last_error"],
      "stats oldest deferred")
check("oldest deferred: " + ids[0] in run("stats"), "stats text")
# hold one, hold ALL, release ALL
check("hold: 1 message" in run("hold", ids[0]), "hold one")
check("!" in run("list", "--state", "hold"), "held marked with !")
check("hold: 2 messages" in run("hold", "ALL"), "hold ALL (the other two)")
run("hold", ids[0], code=1)  # already held
check("release: 3 messages" in run("release", "ALL"), "release ALL")
check(json.loads(run("stats", "--json"))["incoming"] == 3, "released to incoming")
# flush (postqueue -f): deferred -> incoming, due now, results kept
subprocess.run([helper, "defer", spool], check=True, capture_output=True)
check(all(m["next_attempt"] > 0 for m in json.loads(run("list", "--json"))),
      "deferred messages have a next attempt")
check("flush: 3 messages" in run("flush", "ALL"), "flush ALL")
js = json.loads(run("list", "--json"))
check(all(m["state"] == "incoming" and m["next_attempt"] == 0 for m in js),
      "flushed: incoming, due now")
check(all(m["recipients"][1]["state"] == "deferred" and
          m["recipients"][0]["state"] == "delivered" for m in js),
      "flush keeps the recipients' results")
run("flush", ids[0], code=1)  # not deferred any more
# fail one, requeue it
subprocess.run([helper, "defer", spool], check=True, capture_output=True)
run("requeue", ids[1])
check(json.loads(run("show", ids[1]))["recipients"][1]["state"] == "pending", "requeue resets")
# delete: only deferred ones with --state (postsuper -d ALL deferred)
check("delete: 2 messages" in run("delete", "ALL", "--state", "deferred"), "delete ALL deferred")
check(json.loads(run("stats", "--json"))["incoming"] == 1, "incoming one kept")
check("delete: 1 message" in run("delete", ids[1]), "delete one")
check("Mail queue is empty" in run("list"), "empty queue")
run("delete", ids[1], code=1)
# usage errors
run(code=2)
run("frobnicate", code=2)
run("list", "--state", "nowhere", code=2)
run("hold", code=2)
p = subprocess.run([cli, "--spool", spool + "/missing", "list"], capture_output=True)
check(p.returncode == 1, "missing spool is exit 1")
subprocess.run(["rm", "-rf", spool])
for f in fails:
    print("FAIL:", f)
print("PASS" if not fails else f"{len(fails)} failures")
sys.exit(1 if fails else 0)
