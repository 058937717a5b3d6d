#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench_spf_pyspf.py: the suite benchmark of bench_spf, with pyspf (Debian
python3-spf) for comparison. Each scenario's records (read by suite_flat.py,
so with the same conventions as the C benchmarks) are served by a
dictionary through pyspf's DNS hook (spf.DNSLookup, the way pyspf's own test
harness does it: pydns-style answers, one level of CNAME data, TempError for
names that time out). Every test is one spf.query(...).check(). Each repeat
runs the whole suite until MS ms have passed; the median of the repeats is
reported with how many results the suite accepts.

usage: bench_spf_pyspf.py SUITE.yml [--repeat R] [--min-ms MS]
"""
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spf  # noqa: E402
import suite_flat  # noqa: E402

ZONE = {}


def norm(name):
    return ".".join(l for l in name.split(".") if l).lower()


def build_zone(zone):
    out = {}
    for name, rrs in zone.items():
        lst = []
        for t, v in rrs:
            if v is None:
                lst.append((t, None))
            elif t == "TXT":
                lst.append((t, tuple(s.encode("utf-8") for s in v)))
            elif t == "AAAA":
                lst.append((t, socket.inet_pton(socket.AF_INET6, v)))
            elif t == "MX":
                pref, host = v.split(" ", 1)
                lst.append((t, (int(pref), "" if host == "." else host)))
            else:
                lst.append((t, v))
        out.setdefault(norm(name), []).extend((t, v, name) for t, v in lst)
    return out


def dns_lookup(name, qtype, strict=True, timeout=None, level=0):
    for label in name.split("."):
        if len(label) > 63:
            raise spf.TempError("DNS label too long")
    for t, v, n in ZONE.get(norm(name), ()):
        if t == qtype and v is None:
            raise spf.TempError("DNS timeout")
        if v is None:
            continue
        if t == qtype or t == "CNAME":
            yield ((n, t), v)
        if t == "CNAME" and not level:
            for x in dns_lookup(v, qtype, strict, timeout, 1):
                yield x


spf.DNSLookup = dns_lookup


def evaluate(t):
    q = spf.query(i=t["host"], s=t["mailfrom"], h=t["helo"], strict=True)
    q.set_default_explanation("DEFAULT")
    res = q.check()[0]
    return {"unknown": "permerror", "error": "temperror"}.get(res, res)


def main():
    args = sys.argv[1:]
    repeat, min_s, path = 7, 0.3, None
    while args:
        a = args.pop(0)
        if a == "--repeat":
            repeat = int(args.pop(0))
        elif a == "--min-ms":
            min_s = float(args.pop(0)) / 1000
        else:
            path = a
    if not path:
        sys.exit(__doc__)
    global ZONE
    scenarios = [(build_zone(z), tests) for _d, z, tests in suite_flat.load(path)]
    ntests = sum(len(t) for _z, t in scenarios)
    matched = 0
    for zone, tests in scenarios:
        ZONE = zone
        for t in tests:
            try:
                res = evaluate(t)
            except Exception as e:  # a crash counts as a wrong result
                res = "exception %s" % e
            if res in t["result"]:
                matched += 1
    rates = []
    for _ in range(repeat):
        n, t0 = 0, time.process_time()
        while True:
            for zone, tests in scenarios:
                ZONE = zone
                for t in tests:
                    try:
                        evaluate(t)
                    except Exception:
                        pass
            n += ntests
            dt = time.process_time() - t0
            if dt >= min_s:
                break
        rates.append(n / dt)
    med = statistics.median(rates)
    print("RESULT pyspf_evals_per_s %.0f" % med)
    print("RESULT pyspf_matched %d/%d" % (matched, ntests))
    sys.stderr.write("pyspf %s (dict DNS): %.0f evaluations/s (median of %d), "
                     "%d/%d results accepted by the suite\n"
                     % (getattr(spf, "__version__", "?"), med, repeat, matched,
                        ntests))


if __name__ == "__main__":
    main()
