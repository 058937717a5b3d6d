#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""test_dns_cli.py: the mxgw-spf command line tool, as an operator uses it.

Run through dns_fixture.py (NSD, silent and lying servers on loopback), with
the path of mxgw-spf as the first argument. For each scenario it runs the
tool against NSD (--dns-server) and against the same zone file (--zone) and
checks the exit status, the result and deciding term, the explanation, the
trace (indented by include depth), the Received-SPF and
Authentication-Results lines, that both resolvers agree, and that --json is
one JSON object that says the same. Then: DNS failures and timeouts exit 2
(temperror), bad usage exits 64.
"""
import json
import os
import subprocess
import sys
import time

TOOL = sys.argv[1] if len(sys.argv) > 1 else "mxgw-spf"
NSD = os.environ["MXGW_TEST_DNS"]
ZONE = os.environ["MXGW_TEST_DNS_ZONE"]
failures = []


def run(*args, timeout=30):
    p = subprocess.run([TOOL] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def field(out, name):
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line[len(name) + 1:].strip()
    return None


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


# (ip, sender, exit status, result, term, explanation or None)
SCENARIOS = [
    ("192.0.2.1", "a@pass.spf.test", 0, "pass", "ip4:192.0.2.1", None),
    ("43.207.242.167", "a@pass.spf.test", 1, "fail", "-all",
     "pass.spf.test does not designate 43.207.242.167 as a permitted sender"),
    ("43.207.242.167", "a@softfail.spf.test", 1, "softfail", "~all", None),
    ("43.207.242.167", "a@neutral.spf.test", 1, "neutral", "?all", None),
    ("192.0.2.1", "a@nospf.spf.test", 1, "none", None, None),
    ("192.0.2.77", "a@include.spf.test", 0, "pass", "include:inc1.spf.test",
     None),
    ("192.0.2.1", "a@redirect.spf.test", 0, "pass", "ip4:192.0.2.1", None),
    ("192.0.2.99", "a@exp.spf.test", 1, "fail", "-all",
     "192.0.2.99 is not one of exp.spf.test's designated mail servers."),
    ("192.0.2.12", "a@mxrec.spf.test", 0, "pass", "mx", None),
    ("192.0.2.1", "a@void3.spf.test", 2, "permerror", None, None),
    ("203.0.113.12", "a@big.spf.test", 0, "pass", "ip4:203.0.113.12", None),
]

for ip, sender, status, result, term, expl in SCENARIOS:
    outs = {}
    for how, args in (("dns", ["--dns-server", NSD]), ("zone", ["--zone", ZONE])):
        rc, out, err = run("--ip", ip, "--sender", sender, "--helo", "helo.test",
                           "--receiver", "mx.test", *args)
        tag = "%s %s %s" % (how, sender, ip)
        outs[how] = out
        check(rc == status, "%s: exit %d, want %d (%s)" % (tag, rc, status, err))
        check(field(out, "result") == result,
              "%s: result %r, want %r" % (tag, field(out, "result"), result))
        if term:
            check(field(out, "mechanism") == term,
                  "%s: term %r, want %r" % (tag, field(out, "mechanism"), term))
        if expl:
            check(field(out, "explanation") == expl,
                  "%s: explanation %r" % (tag, field(out, "explanation")))
        check("trace:" in out, "%s: no trace" % tag)
        check(("\nReceived-SPF: %s " % result) in out,
              "%s: no Received-SPF line for %s" % (tag, result))
        check(("Authentication-Results: mx.test;" in out) and
              ("spf=%s" % result) in out,
              "%s: no Authentication-Results line" % tag)
        check(("client-ip=%s" % ip) in out, "%s: client-ip missing" % tag)
        # --json says the same
        rc2, js, err = run("--ip", ip, "--sender", sender, "--helo", "helo.test",
                           "--json", *args)
        check(rc2 == status, "%s --json: exit %d" % (tag, rc2))
        try:
            obj = json.loads(js)
            check(obj.get("result") == result,
                  "%s --json: result %r" % (tag, obj.get("result")))
            check(isinstance(obj.get("trace"), list) and obj["trace"],
                  "%s --json: no trace" % tag)
        except ValueError as e:
            check(False, "%s --json: not JSON (%s): %r" % (tag, e, js[:200]))
    # both resolvers give the same result, term and explanation
    for f in ("result", "mechanism", "explanation", "problem"):
        check(field(outs["dns"], f) == field(outs["zone"], f),
              "%s: %s differs: dns %r, zone %r" % (sender, f,
                                                  field(outs["dns"], f),
                                                  field(outs["zone"], f)))

# The trace shows why 43.207.242.167 is not authorized, indented by depth.
rc, out, _ = run("--ip", "43.207.242.167", "--sender", "a@include.spf.test",
                 "--dns-server", NSD)
check(rc == 1 and field(out, "result") == "fail", "include fail: %d %r" %
      (rc, field(out, "result")))
trace = out.split("trace:\n", 1)[1].split("\n\n", 1)[0].splitlines() if "trace:\n" in out else []
check(any("198.51.100.0/24" in l and "43.207.242.167" in l for l in trace),
      "include fail: the trace does not say the ip4 term did not match")
depths = {len(l) - len(l.lstrip(" ")) for l in trace if l.strip()}
check(len(depths) >= 3, "include fail: trace not indented by depth: %r" % trace)
check(any(l.lstrip().startswith("term") and "-all" in l for l in trace),
      "include fail: the -all term is not in the trace")

# DNS failures: temperror, exit 2, in bounded time
for args, sender in (
        (["--dns-server", NSD], "a@servfail.spf.test"),
        (["--dns-server", NSD], "a@refused.spf.test"),
        (["--dns-server", os.environ["MXGW_TEST_DNS_SILENT"], "--timeout", "200"],
         "a@pass.spf.test"),
        (["--dns-server", os.environ["MXGW_TEST_DNS_LIAR"], "--timeout", "200"],
         "a@garbage.liar.test"),
        (["--dns-server", os.environ["MXGW_TEST_DNS_LIAR"], "--timeout", "200"],
         "a@badid.liar.test")):
    t0 = time.time()
    rc, out, err = run("--ip", "192.0.2.1", "--sender", sender, *args)
    dt = time.time() - t0
    check(rc == 2 and field(out, "result") == "temperror",
          "%s: exit %d result %r, want temperror" % (sender, rc, field(out, "result")))
    check(field(out, "problem"), "%s: no problem line" % sender)
    check(dt < 10, "%s: took %.1f s" % (sender, dt))

# HELO identity and the null sender
rc, out, _ = run("--ip", "192.0.2.1", "--sender", "", "--helo", "pass.spf.test",
                 "--dns-server", NSD)
check(rc == 0 and field(out, "sender") == "postmaster@pass.spf.test",
      "null sender: %d %r" % (rc, field(out, "sender")))
rc, out, _ = run("--ip", "192.0.2.99", "--identity", "helo", "--helo",
                 "pass.spf.test", "--zone", ZONE)
check(rc == 1 and field(out, "result") == "fail" and "smtp.helo=pass.spf.test" in out,
      "helo identity: %d %r" % (rc, field(out, "result")))

# usage errors: 64
for args in ([], ["--ip", "192.0.2.1"], ["--sender", "a@b.test"],
             ["--ip", "192.0.2.1", "--sender", "a@b.test", "--bogus"],
             ["--ip", "nonsense", "--sender", "a@b.test", "--zone", ZONE],
             ["--ip", "192.0.2.1", "--sender", "a@b.test", "--zone", ZONE,
              "--dns-server", NSD],
             ["--ip", "192.0.2.1", "--sender", "a@b.test", "--dns-server", "x:y"],
             ["--ip", "192.0.2.1", "--sender", "a@b.test", "--timeout", "0"],
             ["--ip", "192.0.2.1", "--sender", "a@b.test", "--identity", "rcpt"]):
    rc, out, err = run(*args)
    check(rc == 64 and err, "usage %r: exit %d, stderr %r" % (args, rc, err))
rc, out, _ = run("--help")
check(rc == 0 and "--dns-server" in out and "Exit status" in out, "--help")
rc, _, err = run("--ip", "192.0.2.1", "--sender", "a@b.test", "--zone",
                 "/nonexistent/zone")
check(rc == 66 and err, "missing zone file: exit %d" % rc)

print("%d checks failed" % len(failures) if failures else "all CLI checks passed")
sys.exit(1 if failures else 0)
