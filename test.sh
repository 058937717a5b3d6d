#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# test.sh: the whole libmxgw test suite, the README's test command. It
# installs the Debian packages it needs (cmake/debian-packages.txt), then:
#   release  gcc Release build with -Werror; every ctest test (all labels
#            except install/package, which the install stage runs itself)
#   asan     clang build with ASan+UBSan (-DMXGW_SANITIZE=ON, -Werror);
#            the unit, transcript, TLS, DNS, queue, LMTP and delivery
#            tests (ctest -L 'unit|transcript|tls|dns|queue|lmtp|deliver')
#   fuzz     clang -Werror build with -DMXGW_BUILD_FUZZ=ON (when
#            tests/fuzz/CMakeLists.txt exists); each fuzz_* target runs for a
#            bounded time: MXGW_FUZZ_SECONDS in all (default 60, 0 = build
#            only), split evenly
#   install  tests/install/check-install.sh and check-deb.sh on the release
#            build (installed-library consumers, headers alone, DEB packages)
# Build directories: build/release, build/asan, build/fuzz; logs in
# build/logs. It stops at the first failing stage. The last line is
# "N passed, M failed", counting ctest tests, fuzz targets, install/package
# checks and build stages.
#
# Usage: ./test.sh [STAGE...]   (default: all stages, in the order above)
# Environment: MXGW_JOBS (default 2), MXGW_FUZZ_SECONDS (default 60),
#   MXGW_SKIP_PACKAGES=1 (do not run apt-get), CI=true (always apt-get).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
JOBS=${MXGW_JOBS:-2}
FUZZ_SECONDS=${MXGW_FUZZ_SECONDS:-60}
LOGS=$ROOT/build/logs
ALL_STAGES=(release asan fuzz install)

usage() {
  sed -n '3,23p' "$0" | sed 's/^# \{0,1\}//'
}

stages=()
for a in "$@"; do
  case $a in
    -h|--help) usage; exit 0 ;;
    release|asan|fuzz|install) stages+=("$a") ;;
    *) echo "test.sh: unknown stage '$a' (stages: ${ALL_STAGES[*]})" >&2; exit 2 ;;
  esac
done
[ ${#stages[@]} -gt 0 ] || stages=("${ALL_STAGES[@]}")

mkdir -p "$LOGS"
T0=$(date +%s)
NPASS=0
NFAIL=0
SUMMARY=()

record() { # record STATUS NAME DETAIL
  SUMMARY+=("$(printf '%-4s  %-34s %s' "$1" "$2" "$3")")
}

finish() {
  local rc=$1 t
  t=$(( $(date +%s) - T0 ))
  echo
  echo "==================== test.sh summary ($((t / 60))m$((t % 60))s) ===================="
  local line
  for line in "${SUMMARY[@]}"; do echo "$line"; done
  if [ "$rc" -ne 0 ]; then
    echo "test.sh: FAILED (logs in build/logs/)"
  fi
  echo "$NPASS passed, $NFAIL failed"
  exit "$rc"
}

die() { # die STAGE MESSAGE [LOG]: fail fast
  echo
  echo "test.sh: FAIL: $1: $2"
  if [ -n "${3:-}" ] && [ -f "$3" ]; then
    echo "---- last 60 lines of ${3#"$ROOT"/} ----"
    tail -n 60 "$3"
  fi
  NFAIL=$((NFAIL + 1))
  record FAIL "$1" "$2"
  finish 1
}

banner() { echo; echo "=== $* ==="; }

elapsed_since() { echo "$(( $(date +%s) - $1 ))s"; }

# configure_build NAME CC CMAKE_ARGS...: (re)configure build/NAME and build
# it with $JOBS jobs. A build stage counts as one passed/failed check.
configure_build() {
  local name=$1 cc=$2; shift 2
  local dir=$ROOT/build/$name log=$LOGS/build-$name.log t
  t=$(date +%s)
  local want; want=$(command -v "$cc" || true)
  [ -n "$want" ] || die "build $name" "compiler '$cc' not found"
  if [ -f "$dir/CMakeCache.txt" ] &&
     ! grep -qx "CMAKE_C_COMPILER:[A-Z]*=$want" "$dir/CMakeCache.txt"; then
    echo "build/$name was configured with another compiler: starting afresh"
    rm -rf "$dir"
  fi
  banner "build $name ($cc $*)"
  if ! { CC=$want cmake -S "$ROOT" -B "$dir" "$@" &&
         cmake --build "$dir" -j "$JOBS"; } >"$log" 2>&1; then
    die "build $name" "configure/build failed (build/logs/build-$name.log)" "$log"
  fi
  grep -E 'warning:' "$log" | head -n 20 || true
  echo "build $name: OK ($(elapsed_since "$t"))"
  NPASS=$((NPASS + 1))
  record PASS "build $name" "$cc, $(elapsed_since "$t")"
}

# run_ctest STAGE BUILD_DIR LOGNAME CTEST_ARGS...: run ctest, count its tests.
run_ctest() {
  local stage=$1 dir=$2 logname=$3; shift 3
  local log=$LOGS/$logname.log t rc=0 line total nf
  t=$(date +%s)
  banner "$stage: ctest $*"
  (cd "$dir" && ctest --output-on-failure --no-tests=error --timeout 300 "$@") \
    2>&1 | tee "$log" || rc=$?
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    die "$stage" "ctest ran no test or did not finish (exit $rc)" "$log"
  fi
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  nf=$(sed -E 's/.* ([0-9]+) tests? failed.*/\1/' <<<"$line")
  NPASS=$((NPASS + total - nf))
  NFAIL=$((NFAIL + nf))
  if [ "$rc" -ne 0 ] || [ "$nf" -ne 0 ]; then
    record FAIL "$stage" "$((total - nf)) passed, $nf failed (ctest $*)"
    echo "test.sh: FAIL: $stage: $nf of $total tests failed (build/logs/$logname.log)"
    finish 1
  fi
  record PASS "$stage" "$total tests ($(elapsed_since "$t"))"
}

# run_check_script STAGE SCRIPT BUILD_DIR: a tests/install script; its
# closing line "NAME: N passed, M failed" is added to the totals.
run_check_script() {
  local stage=$1 script=$2 dir=$3
  local log=$LOGS/$stage.log t rc=0 line np nf
  t=$(date +%s)
  banner "$stage: $script ${dir#"$ROOT"/}"
  "$ROOT/$script" "$dir" 2>&1 | tee "$log" || rc=$?
  line=$(grep -E '^[a-z-]+: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
  if [ -z "$line" ]; then
    die "$stage" "$script ended without its summary line (exit $rc)" "$log"
  fi
  np=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
  nf=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")
  NPASS=$((NPASS + np))
  NFAIL=$((NFAIL + nf))
  if [ "$rc" -ne 0 ] || [ "$nf" -ne 0 ]; then
    record FAIL "$stage" "$np passed, $nf failed"
    echo "test.sh: FAIL: $stage (build/logs/$stage.log)"
    finish 1
  fi
  record PASS "$stage" "$np checks ($(elapsed_since "$t"))"
}

stage_packages() {
  if [ "${MXGW_SKIP_PACKAGES:-}" = 1 ]; then
    echo "packages: skipped (MXGW_SKIP_PACKAGES=1)"
    return
  fi
  banner "packages (cmake/debian-packages.txt)"
  if ! "$ROOT/cmake/install-debian-packages.sh" 2>&1 | tee "$LOGS/packages.log"; then
    die packages "installing Debian packages failed" "$LOGS/packages.log"
  fi
}

stage_release() {
  configure_build release gcc -DCMAKE_BUILD_TYPE=Release -DMXGW_WERROR=ON \
    -DMXGW_SANITIZE=OFF -DMXGW_BUILD_TESTS=ON -DMXGW_BUILD_EXAMPLES=ON \
    -DMXGW_BUILD_BENCH=ON -DMXGW_BUILD_FUZZ=OFF \
    -DMXGW_BUILD_PYTHON=ON -DPython3_EXECUTABLE=/usr/bin/python3 \
    -DMXGW_BUILD_GO=ON
  # Unit and transcript tests in parallel; the rest (integration tests with
  # servers on loopback ports) one at a time.
  run_ctest "release unit+transcript" "$ROOT/build/release" ctest-release-unit \
    -j "$JOBS" -L 'unit|transcript'
  local others
  others=$(cd "$ROOT/build/release" &&
           ctest -N -LE 'unit|transcript|install|package' | sed -n 's/^Total Tests: //p')
  if [ "${others:-0}" -gt 0 ]; then
    run_ctest "release other labels" "$ROOT/build/release" ctest-release-other \
      -LE 'unit|transcript|install|package'
  else
    echo "release: no tests outside the unit/transcript/install/package labels"
  fi
}

stage_asan() {
  configure_build asan clang -DCMAKE_BUILD_TYPE=Debug -DMXGW_WERROR=ON \
    -DMXGW_SANITIZE=ON -DMXGW_BUILD_TESTS=ON -DMXGW_BUILD_EXAMPLES=ON \
    -DMXGW_BUILD_BENCH=OFF -DMXGW_BUILD_FUZZ=OFF
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_ctest "asan unit/transcript/tls/dns/queue/lmtp/deliver" \
      "$ROOT/build/asan" ctest-asan \
      -j "$JOBS" -L 'unit|transcript|tls|dns|queue|lmtp|deliver'
}

stage_fuzz() {
  if [ ! -f "$ROOT/tests/fuzz/CMakeLists.txt" ]; then
    echo "fuzz: tests/fuzz/CMakeLists.txt does not exist yet: stage skipped"
    record SKIP fuzz "no tests/fuzz/CMakeLists.txt"
    return
  fi
  # The fuzz_* targets compile the library sources once more themselves,
  # with -fsanitize=fuzzer-no-link,address,undefined (tests/fuzz/), so the
  # rest of this build needs no sanitizer.
  configure_build fuzz clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXGW_WERROR=ON \
    -DMXGW_SANITIZE=OFF -DMXGW_BUILD_FUZZ=ON -DMXGW_BUILD_TESTS=OFF \
    -DMXGW_BUILD_EXAMPLES=OFF -DMXGW_BUILD_BENCH=OFF
  local dir=$ROOT/build/fuzz targets=() t
  mapfile -t targets < <(find "$dir" -path "$dir/CMakeFiles" -prune -o \
                           -type f -executable -name 'fuzz_*' -print | sort)
  if [ ${#targets[@]} -eq 0 ]; then
    die fuzz "MXGW_BUILD_FUZZ=ON built no fuzz_* executable in build/fuzz"
  fi
  if [ "$FUZZ_SECONDS" -eq 0 ]; then
    echo "fuzz: MXGW_FUZZ_SECONDS=0: targets built, not run"
    record SKIP "fuzz runs" "MXGW_FUZZ_SECONDS=0"
    return
  fi
  local per=$(( FUZZ_SECONDS / ${#targets[@]} ))
  [ "$per" -ge 5 ] || per=5
  mkdir -p "$dir/artifacts"
  for t in "${targets[@]}"; do
    local name; name=$(basename "$t")
    local seed=$ROOT/tests/fuzz/corpus/${name#fuzz_}
    local work=$dir/corpus-work/$name log=$LOGS/fuzz-$name.log
    local args=(-max_total_time="$per" -timeout=25 -rss_limit_mb=2048
                -print_final_stats=1 -artifact_prefix="$dir/artifacts/$name-")
    [ -f "$ROOT/tests/fuzz/$name.dict" ] && args+=(-dict="$ROOT/tests/fuzz/$name.dict")
    [ -f "$ROOT/tests/fuzz/${name#fuzz_}.dict" ] && args+=(-dict="$ROOT/tests/fuzz/${name#fuzz_}.dict")
    mkdir -p "$work"
    # New inputs go to build/fuzz/corpus-work; the seed corpus in the tree is
    # read only.
    local dirs=("$work")
    [ -d "$seed" ] && dirs+=("$seed")
    banner "fuzz: $name for ${per}s"
    local rc=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
      timeout --kill-after=10 $((per + 120)) "$t" "${args[@]}" "${dirs[@]}" \
      >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
      die "fuzz $name" "exit $rc; crash inputs in build/fuzz/artifacts/ (log build/logs/fuzz-$name.log)" "$log"
    fi
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    echo "fuzz $name: OK, ${runs:-?} runs in ${per}s"
    NPASS=$((NPASS + 1))
    record PASS "fuzz $name" "${runs:-?} runs, ${per}s"
  done
}

stage_install() {
  [ -f "$ROOT/build/release/CMakeCache.txt" ] || stage_release
  run_check_script check-install tests/install/check-install.sh "$ROOT/build/release"
  run_check_script check-deb tests/install/check-deb.sh "$ROOT/build/release"
}

stage_packages
for s in "${stages[@]}"; do
  "stage_$s"
done
finish 0
