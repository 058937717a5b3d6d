#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""bench_spf_binding.py: SPF evaluations per CPU second through the Python
binding (mxgw.Spf.check on the static resolver) against pyspf (Debian
python3-spf, a dict behind its DNS hook) on the same DNS data, in the same
process and run: the rfc7208 suite, flattened once by bench/spf/
suite_flat.py (the conventions the C benchmarks use), so every
implementation sees the same records. Rounds interleave the three runs
(binding with trace, binding without trace, pyspf); each runs the whole
suite until MS ms of CPU time have passed; medians of the rounds and of the
per-round ratios are printed. Then the per-call overhead of the binding:
ns per call of a trivial wrapped function (raw SWIG layer and through the
Python layer), and, given the C benchmark (--c-bench build/bench/spf/
bench_spf), the binding's cost per evaluation over the C library's.

usage: bench_spf_binding.py [SUITE.yml] [--repeat R] [--min-ms MS]
                            [--c-bench PATH]
Needs PYTHONPATH to hold the built package (build/bindings/python/pkg).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "spf"))

import mxgw  # noqa: E402
from mxgw import _capi  # noqa: E402
import suite_flat  # noqa: E402
import bench_spf_pyspf as pyspf_bench  # noqa: E402  (sets spf.DNSLookup)


def txt_line(name, text):
    """A TXT record as master-file text: \\DDD escapes carry any byte (NUL
    too), as bench_spf.c does; strings of at most 255 octets."""
    b = text.encode("utf-8")
    parts = []
    for i in range(0, max(len(b), 1), 255):
        parts.append('"' + "".join(chr(c) if 0x20 <= c < 0x7f and c not in (0x22, 0x5c)
                                   else "\\%03d" % c for c in b[i:i + 255]) + '"')
    return f"{name}. 300 IN TXT {' '.join(parts)}\n"


def binding_scenarios(flat, trace):
    out = []
    for _desc, zone, tests in flat:
        r = mxgw.Resolver.static()
        for name, rrs in zone.items():
            for t, v in rrs:
                try:
                    if v is None:
                        r.add_record(name, t, None, 0, fail="timeout")
                    elif t == "TXT":
                        r.load_zone(txt_line(name, "".join(v)))
                    else:
                        r.add_record(name, t, v)
                except (mxgw.MxgwError, ValueError):
                    pass  # as the C benchmark: a record the zone cannot hold
        s = mxgw.Spf(r, default_explanation="DEFAULT", trace=trace)
        out.append((r, s, [(t["host"], t["helo"], t["mailfrom"], t["result"])
                           for t in tests]))
    return out


def run_binding(scen):
    n = 0
    for _r, s, tests in scen:
        check = s.check
        for host, helo, mf, _want in tests:
            try:
                check(host, helo, mf).close()
            except mxgw.MxgwError:
                pass
            n += 1
    return n


def matched_binding(scen):
    ok = 0
    for _r, s, tests in scen:
        for host, helo, mf, want in tests:
            try:
                with s.check(host, helo, mf) as c:
                    ok += c.result in want
            except mxgw.MxgwError:
                pass
    return ok


def run_pyspf(scen):
    n = 0
    for zone, tests in scen:
        pyspf_bench.ZONE = zone
        for t in tests:
            try:
                pyspf_bench.evaluate(t)
            except Exception:
                pass
            n += 1
    return n


def matched_pyspf(scen):
    ok = 0
    for zone, tests in scen:
        pyspf_bench.ZONE = zone
        for t in tests:
            try:
                ok += pyspf_bench.evaluate(t) in t["result"]
            except Exception:
                pass
    return ok


def rate(fn, scen, min_s):
    n, t0 = 0, time.process_time()
    while True:
        n += fn(scen)
        dt = time.process_time() - t0
        if dt >= min_s:
            return n / dt


def per_call_ns(fn, n=200000):
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e9


def main():
    args = sys.argv[1:]
    suite = os.path.join(ROOT, "tests", "spf", "rfc7208-tests.yml")
    repeat, min_s, cbench = 7, 0.5, None
    while args:
        a = args.pop(0)
        if a == "--repeat":
            repeat = int(args.pop(0))
        elif a == "--min-ms":
            min_s = float(args.pop(0)) / 1000
        elif a == "--c-bench":
            cbench = args.pop(0)
        else:
            suite = a
    flat = suite_flat.load(suite)
    ntests = sum(len(t) for _d, _z, t in flat)
    b_on, b_off = binding_scenarios(flat, True), binding_scenarios(flat, False)
    p_scen = [(pyspf_bench.build_zone(z), tests) for _d, z, tests in flat]
    print(f"suite {os.path.basename(suite)}: {ntests} tests; results accepted by the "
          f"suite: binding {matched_binding(b_on)}/{ntests}, "
          f"pyspf {matched_pyspf(p_scen)}/{ntests}")
    print(f"load average {open('/proc/loadavg').read().split()[:3]}; "
          f"{repeat} rounds of {min_s * 1000:.0f} ms CPU each")
    rows = {"binding": [], "binding_notrace": [], "pyspf": []}
    for _ in range(repeat):
        rows["binding"].append(rate(run_binding, b_on, min_s))
        rows["binding_notrace"].append(rate(run_binding, b_off, min_s))
        rows["pyspf"].append(rate(run_pyspf, p_scen, min_s))
    ratio = [b / p for b, p in zip(rows["binding"], rows["pyspf"])]
    ratio_nt = [b / p for b, p in zip(rows["binding_notrace"], rows["pyspf"])]
    for k, v in rows.items():
        print(f"RESULT {k}_evals_per_s {statistics.median(v):.0f} "
              f"(min {min(v):.0f}, max {max(v):.0f})")
    print(f"RESULT binding_vs_pyspf {statistics.median(ratio):.1f}x "
          f"(trace off {statistics.median(ratio_nt):.1f}x)")

    # per-call overhead of the binding
    raw = per_call_ns(lambda: _capi.mxgw_spf_result_name(2))
    noop = per_call_ns(lambda: None)
    r = mxgw.Resolver.static('example.org. TXT "v=spf1 ip4:192.0.2.0/24 -all"\n')
    s = mxgw.Spf(r, trace=False)
    c = s.check("192.0.2.1", "h", "a@example.org")
    layer = per_call_ns(lambda: c.mechanism)
    raw_get = per_call_ns(lambda: _capi.mxgw_spf_check_get_str(c._ptr, 1))
    one = per_call_ns(lambda: s.check("192.0.2.1", "h", "a@example.org").close(), 100000)
    c.close()
    print(f"RESULT call_ns_raw_trivial {raw - noop:.0f}  (mxgw_spf_result_name through "
          f"_capi, minus an empty lambda: {noop:.0f} ns)")
    print(f"RESULT call_ns_raw_getter {raw_get - noop:.0f}  (mxgw_spf_check_get_str with "
          f"its bytes out-parameter)")
    print(f"RESULT call_ns_layer_getter {layer - noop:.0f}  (SpfCheck.mechanism: "
          f"property, status check, decode)")
    print(f"RESULT one_record_check_us {one / 1000:.2f}  (Spf.check + close, one TXT "
          f"record, trace off)")
    if cbench:
        with tempfile.NamedTemporaryFile("w", suffix=".flat") as f:
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "spf",
                                                         "suite_flat.py"), suite],
                           stdout=f, check=True)
            f.flush()
            c_rates = []
            for _ in range(3):
                out = subprocess.run([cbench, "suite", f.name, "--repeat", "3"],
                                     capture_output=True, text=True, check=True).stdout
                for line in out.splitlines():
                    if line.startswith("RESULT mxgw_static_evals_per_s"):
                        c_rates.append(float(line.split()[2]))
        c_rate = statistics.median(c_rates)
        b_rate = statistics.median(rows["binding"])
        print(f"RESULT c_evals_per_s {c_rate:.0f}")
        print(f"RESULT binding_overhead_us_per_eval {1e6 / b_rate - 1e6 / c_rate:.2f} "
              f"(binding {1e6 / b_rate:.2f} us, C {1e6 / c_rate:.2f} us per evaluation)")


if __name__ == "__main__":
    main()
