#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-install.sh BUILD_DIR: proves that an *installed* libmxgw is usable.
# It installs BUILD_DIR with `cmake --install --prefix TMP`, checks the
# layout (headers, libmxgw.so -> .so.N -> .so.N.M.P with the right SONAME,
# libmxgw.a, libmxgw.pc, the CMake package config), checks that the shared
# library exports mxgw_* symbols only, builds tests/install/consumer.c through
# pkg-config (shared, static, as C++) and runs it, builds the find_package()
# project in tests/install/cmake-consumer/ (shared and static) and runs it,
# and compiles every installed public header on its own as C99 and C++11
# with gcc and clang. Prints PASS:/FAIL: lines and a closing
# "check-install: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/install/common.sh
. "$here/common.sh"

if [ $# -ne 1 ] || [ ! -f "$1/CMakeCache.txt" ]; then
  echo "usage: $0 BUILD_DIR   (a configured and built libmxgw build directory)" >&2
  exit 2
fi
build=$(cd "$1" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxgw-check-install.XXXXXX")
if [ -z "${MXGW_KEEP_TMP:-}" ]; then
  trap 'rm -rf "$tmp"' EXIT
else
  echo "keeping $tmp"
fi
prefix=$tmp/prefix

echo "== check-install: $build -> $prefix"
log=$tmp/install.log
if cmake --install "$build" --prefix "$prefix" >"$log" 2>&1; then
  pass "cmake --install $build --prefix \$tmp"
else
  fail "cmake --install $build --prefix $prefix"
  show_log "$log"
  summary check-install
  exit 1
fi

# --- layout ------------------------------------------------------------------
pcfile=$(find "$prefix" -path '*/pkgconfig/libmxgw.pc' | head -n 1)
if [ -z "$pcfile" ]; then
  fail "no libmxgw.pc installed under $prefix"
  summary check-install
  exit 1
fi
libdir=$(dirname "$(dirname "$pcfile")")
incdir=$prefix/include
note "libdir: ${libdir#"$prefix"/}"

# Every header of the source tree's public include dir, plus the generated
# version header, must be installed.
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
missing=""
for h in "$src"/libmxgw/include/mxgw/*.h mxgw_version.h; do
  b=$(basename "$h")
  [ -f "$incdir/mxgw/$b" ] || missing="$missing $b"
done
if [ -z "$missing" ]; then
  pass "headers installed in include/mxgw: $(cd "$incdir/mxgw" && echo *.h)"
else
  fail "headers missing from include/mxgw:$missing"
fi

version=$(sed -n 's/^#define MXGW_VERSION_STR "\(.*\)"$/\1/p' "$incdir/mxgw/mxgw_version.h" 2>/dev/null)
if [ -n "$version" ]; then
  pass "installed mxgw_version.h is generated (MXGW_VERSION_STR \"$version\")"
else
  fail "installed mxgw_version.h has no MXGW_VERSION_STR (not generated?)"
  version=0.0.0
fi

# libmxgw.so -> libmxgw.so.N -> libmxgw.so.<real version>, SONAME libmxgw.so.N
so=$libdir/libmxgw.so
if [ -L "$so" ]; then
  soname_link=$(readlink "$so")
  real=$(readlink -f "$so")
  soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  if [[ $soname_link =~ ^libmxgw\.so\.[0-9]+$ ]] && [ -L "$libdir/$soname_link" ] &&
     [ -f "$real" ] && [ ! -L "$real" ] && [ "$soname" = "$soname_link" ]; then
    pass "libmxgw.so -> $soname_link -> $(basename "$real"), SONAME $soname"
  else
    fail "shared library links: libmxgw.so -> '$soname_link' -> '$real', SONAME '$soname'"
  fi
  check_exports "$real"
else
  fail "$so is missing or not a symlink"
fi

# (listings are read whole before grep -q: with pipefail an early grep exit
# would fail the pipeline through the writer's SIGPIPE)
if [ -f "$libdir/libmxgw.a" ] && members=$(ar t "$libdir/libmxgw.a") &&
   printf '%s\n' "$members" | grep -q '\.o$'; then
  pass "libmxgw.a installed ($(ar t "$libdir/libmxgw.a" | wc -l) objects)"
else
  fail "$libdir/libmxgw.a missing or empty"
fi

cmdir=$libdir/cmake/mxgw
missing=""
for f in mxgwConfig.cmake mxgwConfigVersion.cmake mxgwTargets.cmake; do
  [ -f "$cmdir/$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then
  pass "CMake package config installed in ${cmdir#"$prefix"/}"
else
  fail "missing from ${cmdir#"$prefix"/}:$missing"
fi

# The installed files must not mention the build or source tree.
leaks=$(grep -rlIF -e "$build" -e "$src/" "$prefix" 2>/dev/null || true)
if [ -z "$leaks" ]; then
  pass "no installed file refers to the build or source directory"
else
  fail "installed files refer to the build/source tree: $leaks"
fi

# --- pkg-config consumers ------------------------------------------------------
mkdir -p "$tmp/pc"
check_pkgconfig_consumer "$tmp/pc" "$libdir/pkgconfig" "$prefix" "$libdir"

# --- find_package consumer ---------------------------------------------------
cm=$tmp/cmake-consumer
log=$tmp/cmake-consumer.log
if cmake -S "$here/cmake-consumer" -B "$cm" -DCMAKE_PREFIX_PATH="$prefix" \
     -DMXGW_EXPECTED_VERSION="$version" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
     -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >"$log" 2>&1 &&
   cmake --build "$cm" -j2 >>"$log" 2>&1; then
  found=$(sed -n 's/^mxgw_DIR:PATH=//p' "$cm/CMakeCache.txt")
  case $found in
    "$prefix"/*) pass "find_package(mxgw $version CONFIG) from $found; built mxgw::mxgw and mxgw::mxgw_static consumers" ;;
    *) fail "find_package(mxgw) found $found, not the install under $prefix" ;;
  esac
  run_check "find_package consumer (mxgw::mxgw) runs" \
    env LD_LIBRARY_PATH="$libdir" "$cm/consumer_shared"
  run_check "find_package consumer (mxgw::mxgw_static) runs" \
    env LD_LIBRARY_PATH= "$cm/consumer_static"
  dyn=$(readelf -d "$cm/consumer_static")
  if printf '%s\n' "$dyn" | grep -q 'NEEDED.*libmxgw'; then
    fail "mxgw::mxgw_static consumer needs libmxgw.so"
  else
    pass "mxgw::mxgw_static consumer has libmxgw linked in"
  fi
else
  fail "CMake project using find_package(mxgw) did not configure/build"
  show_log "$log"
fi

# --- every public header on its own ------------------------------------------
check_headers "$incdir"

summary check-install
