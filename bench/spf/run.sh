#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: the SPF benchmarks of docs/PERFORMANCE.md in one run.
#   1. evaluations per CPU second over an SPF test suite (default: the
#      rfc7208 suite; no I/O, so CPU time, steady on a busy machine),
#      side by side: libmxgw on its static resolver (trace on and off),
#      libspf2 on its zone DNS layer, pyspf on a dict through its DNS hook;
#      interleaved in REPEAT rounds (so a busy machine slows all of them
#      alike), medians of the rates and of the per-round ratios to libspf2
#      and pyspf, and how many results each gets right;
#   2. libmxgw through c-ares against NSD on loopback (tests/dns/
#      dns_fixture.py): cold and warm cache, 1,000 evaluations in flight
#      and one at a time; wall clock (NSD included) and CPU time of ours.
# usage: bench/spf/run.sh [BUILD_DIR [SUITE.yml]]   (REPEAT=7 by default)
# Build first, preferably in Release: cmake -S . -B build -DCMAKE_BUILD_TYPE=
# Release && cmake --build build -j2 --target bench_spf bench_spf_libspf2
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
suite=${2:-$root/../shared/testdata/spf/rfc7208-tests.yml}
repeat=${REPEAT:-7}
py=/usr/bin/python3
[ -x "$py" ] || py=python3

bench=$build/bench/spf/bench_spf
libspf2=$build/bench/spf/bench_spf_libspf2
for f in "$bench" "$libspf2"; do
  [ -x "$f" ] || { echo "run.sh: $f not built (see the header of this script)" >&2; exit 1; }
done
[ -r "$suite" ] || { echo "run.sh: no suite file $suite" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" "$here/suite_flat.py" "$suite" > "$tmp/suite.flat"

echo "== SPF evaluations/s over $(basename "$suite"): $repeat rounds, the four"
echo "   implementations interleaved in each round (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
: > "$tmp/results"
for round in $(seq "$repeat"); do
  {
    "$bench" suite "$tmp/suite.flat" --repeat 1
    "$bench" suite "$tmp/suite.flat" --repeat 1 --no-trace
    "$libspf2" "$tmp/suite.flat" --repeat 1
    "$py" "$here/bench_spf_pyspf.py" "$suite" --repeat 1
  } 2> "$tmp/log" | sed "s/^RESULT /RESULT $round /" >> "$tmp/results" ||
    { cat "$tmp/log" >&2; exit 1; }
done
grep -v '^  mismatch' "$tmp/log" | sed 's/(median of 1), //' >&2 || true

# Medians over the rounds, of the rates and of the per-round ratios (the
# ratios are steadier on a busy machine: both sides of one round share it).
awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $1 == "RESULT" { v[$2, $3] = $4; if ($2 > n) n = $2; if ($3 ~ /matched/) m[$3] = $4 }
  END {
    split("mxgw_static_evals_per_s mxgw_static_notrace_evals_per_s libspf2_evals_per_s pyspf_evals_per_s", k, " ")
    for (x = 1; x <= 4; x++) {
      for (r = 1; r <= n; r++) { a[r] = v[r, k[x]]; rl[r] = v[r, k[x]] / v[r, "libspf2_evals_per_s"]; rp[r] = v[r, k[x]] / v[r, "pyspf_evals_per_s"] }
      rate[x] = median(a, n); vl[x] = median(rl, n); vp[x] = median(rp, n)
      lo[x] = a[1]; hi[x] = a[n]   # median() sorted a
    }
    printf "| implementation | evaluations per CPU second: median (min-max) | vs libspf2 | vs pyspf | suite results right |\n"
    printf "|---|---:|---:|---:|---:|\n"
    printf "| libmxgw, static resolver, trace on (default) | %d (%d-%d) | %.2fx | %.1fx | %s |\n", rate[1], lo[1], hi[1], vl[1], vp[1], m["mxgw_static_matched"]
    printf "| libmxgw, static resolver, trace off | %d (%d-%d) | %.2fx | %.1fx | %s |\n", rate[2], lo[2], hi[2], vl[2], vp[2], m["mxgw_static_matched"]
    printf "| libspf2 1.2.10, zone DNS layer | %d (%d-%d) | 1.00x | %.1fx | %s |\n", rate[3], lo[3], hi[3], vp[3], m["libspf2_matched"]
    printf "| pyspf 2.0.14, dict DNS | %d (%d-%d) | %.3fx | 1.0x | %s |\n", rate[4], lo[4], hi[4], vl[4], m["pyspf_matched"]
    printf "(medians of %d rounds; ratios are medians of the per-round ratios)\n", n
  }' "$tmp/results"

echo
echo "== libmxgw through c-ares against NSD on 127.0.0.1 (1,000 domains)"
"$py" "$root/tests/dns/dns_fixture.py" --bulk 1000 -- \
  sh -c 'exec "$0" cares --server "$MXGW_TEST_DNS" --bulk 1000 --repeat "$1"' \
  "$bench" "$(( repeat < 5 ? repeat : 5 ))" > "$tmp/cares" 2> "$tmp/cares.log" ||
  { cat "$tmp/cares.log" >&2; exit 1; }
cat "$tmp/cares.log" >&2
awk '
  $1 == "RESULT" { v[$2] = $3 }
  END {
    printf "| c-ares path, %d domains | evaluations/s (wall clock) | per CPU second of the process |\n|---|---:|---:|\n", v["cares_inflight"]
    printf "| cold cache, all %d in flight at once | %d | %d |\n", v["cares_inflight"], v["cares_cold_inflight_evals_per_s"], v["cares_cold_inflight_evals_per_cpu_s"]
    printf "| warm cache, all %d in flight at once | %d | %d |\n", v["cares_inflight"], v["cares_warm_inflight_evals_per_s"], v["cares_warm_inflight_evals_per_cpu_s"]
    printf "| cold cache, one at a time | %d | %d |\n", v["cares_cold_serial_evals_per_s"], v["cares_cold_serial_evals_per_cpu_s"]
    printf "| warm cache, one at a time | %d | %d |\n", v["cares_warm_serial_evals_per_s"], v["cares_warm_serial_evals_per_cpu_s"]
    printf "\n%d DNS queries per cold pass; wrong results: %d\n", v["cares_queries_per_cold_pass"], v["cares_wrong_results"]
  }' "$tmp/cares"
