# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Shared helpers for check-install.sh and check-deb.sh (sourced, not run):
# PASS/FAIL bookkeeping, the exported-symbol check, the build of consumer.c
# through pkg-config (shared, static, and as C++), and the stand-alone
# compile of every installed public header as C99 and C++11 with gcc and
# clang.

MXGW_NPASS=0
MXGW_NFAIL=0
MXGW_INSTALL_TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CC=${CC:-cc}
CXX=${CXX:-c++}

pass() { MXGW_NPASS=$((MXGW_NPASS + 1)); printf 'PASS: %s\n' "$*"; }
fail() { MXGW_NFAIL=$((MXGW_NFAIL + 1)); printf 'FAIL: %s\n' "$*"; }
note() { printf '  %s\n' "$*"; }

# Print a log file indented, for the reader of a FAIL line.
show_log() { sed 's/^/    | /' "$1" | head -n 60; }

# run_check NAME CMD...: run CMD with its output in a log; PASS or FAIL.
run_check() {
  local name=$1; shift
  local log; log=$(mktemp)
  if "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name (exit $?): $*"
    show_log "$log"
  fi
  rm -f "$log"
}

# summary NAME: the closing line; returns non-zero if anything failed.
summary() {
  printf '%s: %d passed, %d failed\n' "$1" "$MXGW_NPASS" "$MXGW_NFAIL"
  [ "$MXGW_NFAIL" -eq 0 ]
}

# check_exports SO: `nm -D --defined-only` lists mxgw_* only (plus the
# version-node marker symbols of libmxgw.map, type A, e.g. MXGW_0).
check_exports() {
  local so=$1 bad n
  if ! nm -D --defined-only "$so" >/dev/null 2>&1; then
    fail "nm -D --defined-only $so failed"
    return
  fi
  bad=$(nm -D --defined-only "$so" |
        awk '!($NF ~ /^mxgw_/) && !($(NF-1) == "A" && $NF ~ /^MXGW_[0-9A-Z_.]*$/)')
  n=$(nm -D --defined-only "$so" | awk '$NF ~ /^mxgw_/' | wc -l)
  if [ -n "$bad" ]; then
    fail "$(basename "$so") exports symbols outside mxgw_*:"
    printf '%s\n' "$bad" | sed 's/^/    | /' | head -n 40
  elif [ "$n" -eq 0 ]; then
    fail "$(basename "$so") exports no mxgw_* symbol at all"
  else
    pass "$(basename "$so") exports only mxgw_* symbols ($n of them)"
  fi
}

# check_headers INCLUDEDIR: every installed header compiles on its own, twice
# included (include guards), as C99 and as C++11, with gcc and clang.
check_headers() {
  local incdir=$1 work h rel ok log tu
  local cwarn="-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wundef"
  local cxxwarn="-Wall -Wextra -Werror -Wshadow -Wundef"
  work=$(mktemp -d)
  log=$work/log
  local found=0
  for h in "$incdir"/mxgw/*.h; do
    [ -e "$h" ] || continue
    found=$((found + 1))
    rel=mxgw/$(basename "$h")
    tu=$work/tu
    printf '#include <%s>\n#include <%s>\ntypedef int mxgw_header_check_nonempty;\n' \
      "$rel" "$rel" >"$tu.c"
    cp "$tu.c" "$tu.cpp"
    ok=1
    local spec
    for spec in "gcc -std=c99 -pedantic $cwarn -x c $tu.c" \
                "g++ -std=c++11 -pedantic $cxxwarn -x c++ $tu.cpp" \
                "clang -std=c99 -pedantic $cwarn -x c $tu.c" \
                "clang++ -std=c++11 -pedantic $cxxwarn -x c++ $tu.cpp"; do
      # shellcheck disable=SC2086
      if ! ${spec%% *} -fsyntax-only -I"$incdir" ${spec#* } >"$log" 2>&1; then
        ok=0
        fail "header $rel does not compile on its own: ${spec%% -x*}"
        show_log "$log"
      fi
    done
    [ $ok -eq 1 ] && pass "header $rel compiles alone (gcc -std=c99, g++ -std=c++11, clang -std=c99, clang++ -std=c++11)"
  done
  [ $found -gt 0 ] || fail "no header found in $incdir/mxgw"
  rm -rf "$work"
}

# check_pkgconfig_consumer WORKDIR PKGCONFIG_PATH EXPECT_PREFIX LD_PATH:
# build and run consumer.c through pkg-config, shared, static and as C++.
# PKGCONFIG_PATH may be empty (system search path). LD_PATH is the
# LD_LIBRARY_PATH for the shared builds (empty: the system's).
check_pkgconfig_consumer() {
  local work=$1 pcpath=$2 prefix=$3 ldpath=$4 src=$MXGW_INSTALL_TESTS_DIR/consumer.c
  local pc=(env PKG_CONFIG_PATH="$pcpath" pkg-config)
  local cflags libs slibs got
  if ! "${pc[@]}" --exists --print-errors libmxgw; then
    fail "pkg-config does not find libmxgw (PKG_CONFIG_PATH=$pcpath)"
    return
  fi
  got=$("${pc[@]}" --variable=prefix libmxgw)
  if [ "$got" = "$prefix" ]; then
    pass "pkg-config finds libmxgw $("${pc[@]}" --modversion libmxgw) with prefix=$got"
  else
    fail "pkg-config libmxgw has prefix=$got, expected $prefix"
  fi
  cflags=$("${pc[@]}" --cflags libmxgw)
  libs=$("${pc[@]}" --libs libmxgw)
  slibs=$("${pc[@]}" --static --libs libmxgw)
  note "pkg-config --cflags --libs libmxgw: $cflags $libs"

  # shellcheck disable=SC2086
  run_check "cc consumer.c \$(pkg-config --cflags --libs libmxgw)" \
    $CC -std=c99 -Wall -Wextra -Werror $cflags -o "$work/consumer" "$src" $libs
  if [ -x "$work/consumer" ]; then
    run_check "consumer (shared) runs" env LD_LIBRARY_PATH="$ldpath" "$work/consumer"
    local resolved
    resolved=$(LD_LIBRARY_PATH="$ldpath" ldd "$work/consumer" | awk '/libmxgw\.so/ {print $3}')
    # Compare real paths: with merged /usr, /lib/x.so is /usr/lib/x.so.
    case $(readlink -f "$resolved") in
      "$(readlink -f "$prefix")"/*) pass "consumer loads the installed $resolved" ;;
      *) fail "consumer loads libmxgw from '$resolved', not from $prefix" ;;
    esac
  fi

  # Static: the same flags, with -lmxgw replaced by the archive (-l:libmxgw.a),
  # since the .so beside it would win otherwise.
  local sl=() w
  for w in $slibs; do
    if [ "$w" = "-lmxgw" ]; then sl+=("-l:libmxgw.a"); else sl+=("$w"); fi
  done
  # shellcheck disable=SC2086
  run_check "cc consumer.c \$(pkg-config --static --cflags --libs libmxgw) with libmxgw.a" \
    $CC -std=c99 -Wall -Wextra -Werror -DMXGW_STATICLIB $cflags \
      -o "$work/consumer_static" "$src" "${sl[@]}"
  if [ -x "$work/consumer_static" ]; then
    if readelf -d "$work/consumer_static" | grep -q 'NEEDED.*libmxgw'; then
      fail "consumer_static still needs libmxgw.so"
    else
      pass "consumer_static has libmxgw linked in (no NEEDED libmxgw.so)"
    fi
    run_check "consumer (static) runs" env LD_LIBRARY_PATH= "$work/consumer_static"
  fi

  # The same source as C++: links only if the headers declare extern "C".
  # shellcheck disable=SC2086
  run_check "c++ -x c++ consumer.c \$(pkg-config --cflags --libs libmxgw) (extern \"C\")" \
    $CXX -std=c++11 -Wall -Wextra -Werror -x c++ $cflags \
      -o "$work/consumer_cxx" "$src" -x none $libs
  if [ -x "$work/consumer_cxx" ]; then
    run_check "consumer (C++) runs" env LD_LIBRARY_PATH="$ldpath" "$work/consumer_cxx"
  fi
}
