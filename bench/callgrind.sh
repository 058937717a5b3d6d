#!/bin/bash
# SPDX-License-Identifier: MIT
# Instruction counts of the session engine under valgrind's callgrind, which
# are deterministic (no timing noise). Each measurement of bench_session is
# run twice with different iteration counts and the difference is divided by
# the extra iterations, so start-up, message generation and verification
# cancel out. Two figures per measurement: "total" counts every instruction
# of the program (engine + the benchmark's application side: event loop,
# checksum over every body byte), "engine" only those executed inside the
# public mxgw_session_* calls (callgrind --toggle-collect), memchr/memcpy
# called from them included.
#
# Usage: bench/callgrind.sh [path/to/bench_session]
#        (default: build/release/bench/bench_session)
# Output: a table and "RESULT name value unit" lines.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/build/release/bench/bench_session}
[ -x "$BIN" ] || { echo "no bench_session at $BIN (build first)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 1; }
W=$(mktemp -d /tmp/mxgw-callgrind.XXXXXX)
trap 'rm -rf "$W"' EXIT

# Ir of one run: $1 = --only name, $2 = --count, $3 = extra valgrind option
ir() {
  local out="$W/cg.out"
  rm -f "$out"
  valgrind --tool=callgrind --callgrind-out-file="$out" $3 \
    "$BIN" --runs 1 --only "$1" --count "$2" >/dev/null 2>"$W/vg.err" \
    || { cat "$W/vg.err" >&2; exit 1; }
  # "summary:" holds the total of the collected events (Ir)
  awk '/^summary:/{print $2; exit} /^totals:/{t=$2} END{if (t) print t}' "$out" | head -1
}

# per-iteration instructions: $1 name, $2 small count, $3 large count
# bench_session runs one warm-up and --runs timed passes: 2 x count.
per_iter() {
  local a b
  a=$(ir "$1" "$2" "$4"); b=$(ir "$1" "$3" "$4")
  awk -v a="$a" -v b="$b" -v n="$(( 2 * ($3 - $2) ))" 'BEGIN{printf "%.0f", (b - a) / n}'
}

ENGINE='--toggle-collect=mxgw_session_*'
printf '# callgrind (valgrind %s), %s\n' "$(valgrind --version)" "$BIN"
printf '  %-34s %14s %14s\n' measurement total engine
row() { # name unit divisor only small large
  local t e
  t=$(per_iter "$4" "$5" "$6" "")
  e=$(per_iter "$4" "$5" "$6" "$ENGINE")
  t=$(awk -v v="$t" -v d="$3" 'BEGIN{printf "%.0f", v / d}')
  e=$(awk -v v="$e" -v d="$3" 'BEGIN{printf "%.0f", v / d}')
  printf '  %-34s %14s %14s\n' "$1 ($2)" "$t" "$e"
  echo "RESULT cg_$1_total $t $2"
  echo "RESULT cg_$1_engine $e $2"
}
# 1 MiB message, 64 KiB reads: instructions per KiB of body. (The untimed
# envelope of each message is counted too: about 1% at 1 MiB. For 1 KiB
# messages it would dominate, so tx_pipelined stands for them.)
row data_1m_64k Ir/KiB 1024 data_1m_64k 2 6
row data_1m_16k Ir/KiB 1024 data_1m_16k 2 6
row tx_pipelined Ir/tx 1 tx_pipelined 200 1200
row tx_session Ir/tx 1 tx_session 200 1200
