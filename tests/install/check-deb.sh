#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check-deb.sh BUILD_DIR: runs `cpack -G DEB` in BUILD_DIR and checks the
# packages it makes: libmxgw (the versioned shared library only),
# libmxgw-dev (headers, libmxgw.so, libmxgw.a, libmxgw.pc, CMake config,
# depending on libmxgw of the same version) and mxgwd (the daemon and the
# commands), with `dpkg-deb -c` and `dpkg-deb -I`. When run as root with
# CI=true (or MXGW_DEB_INSTALL=1), it also installs them with `dpkg -i`,
# builds tests/install/consumer.c against /usr through pkg-config (no
# PKG_CONFIG_PATH, no LD_LIBRARY_PATH), runs it, checks a configuration
# with the installed /usr/sbin/mxgwd and evaluates SPF with the installed
# mxgw-spf, and removes the packages again with `dpkg -r`. Prints PASS:/FAIL: lines and
# "check-deb: N passed, M failed"; exits non-zero on any failure.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/install/common.sh
. "$here/common.sh"

if [ $# -ne 1 ] || [ ! -f "$1/CMakeCache.txt" ]; then
  echo "usage: $0 BUILD_DIR   (a configured and built libmxgw build directory)" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mxgw-check-deb.XXXXXX")
installed_by_us=""
cleanup() {
  if [ -n "$installed_by_us" ]; then
    dpkg -r mxgwd libmxgw-dev libmxgw >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

out=$build/deb
echo "== check-deb: cpack -G DEB in $build -> $out"
rm -rf "$out"
log=$tmp/cpack.log
if (cd "$build" && cpack -G DEB -B "$out") >"$log" 2>&1; then
  pass "cpack -G DEB"
else
  fail "cpack -G DEB"
  show_log "$log"
  summary check-deb
  exit 1
fi

rt=$(find "$out" -maxdepth 1 -name 'libmxgw_*.deb' | head -n 1)
dev=$(find "$out" -maxdepth 1 -name 'libmxgw-dev_*.deb' | head -n 1)
if [ -n "$rt" ] && [ -n "$dev" ]; then
  pass "two packages: $(basename "$rt") $(basename "$dev")"
else
  fail "expected libmxgw_*.deb and libmxgw-dev_*.deb in $out, got: $(ls "$out")"
  summary check-deb
  exit 1
fi

daemon=$(find "$out" -maxdepth 1 -name 'mxgwd_*.deb' | head -n 1)
if [ -n "$daemon" ]; then
  pass "daemon package: $(basename "$daemon")"
else
  fail "expected mxgwd_*.deb in $out, got: $(ls "$out")"
  summary check-deb
  exit 1
fi

field() { dpkg-deb -f "$1" "$2"; }
version=$(field "$rt" Version)

# --- libmxgw: the runtime package -------------------------------------------
# Its files (not directories): the real .so.N.M.P and the .so.N link, nothing
# else, under /usr/lib.
rtfiles=$(dpkg-deb -c "$rt" | awk '$1 !~ /^d/ {print $6}' | sort)
note "libmxgw files: $(echo $rtfiles)"
if [ "$(printf '%s\n' "$rtfiles" | grep -c .)" -eq 2 ] &&
   printf '%s\n' "$rtfiles" | grep -Eq '^\./usr/lib/([^/]+/)?libmxgw\.so\.[0-9]+$' &&
   printf '%s\n' "$rtfiles" | grep -Eq '^\./usr/lib/([^/]+/)?libmxgw\.so\.[0-9]+\.[0-9]+\.[0-9]+$'; then
  pass "libmxgw contains exactly libmxgw.so.N and libmxgw.so.N.M.P"
else
  fail "libmxgw contents are not just libmxgw.so.N + libmxgw.so.N.M.P"
fi
if [ "$(field "$rt" Package)" = libmxgw ] && [ "$(field "$rt" Section)" = libs ]; then
  pass "libmxgw control: Package libmxgw, Version $version, Section libs"
else
  fail "libmxgw control fields: $(dpkg-deb -I "$rt" | grep -E 'Package|Section')"
fi
deps=$(field "$rt" Depends)
if printf '%s' "$deps" | grep -q 'libc6'; then
  pass "libmxgw Depends (from dpkg-shlibdeps): $deps"
else
  fail "libmxgw Depends has no libc6 (shlibdeps not run?): '$deps'"
fi
# (the listing is read whole first: with pipefail, grep -q leaving early
# would kill tar with SIGPIPE and fail the pipeline although it matched)
ctrl=$(dpkg-deb --ctrl-tarfile "$rt" | tar -t)
if printf '%s\n' "$ctrl" | grep -q 'shlibs'; then
  pass "libmxgw ships a shlibs control file"
else
  fail "libmxgw has no shlibs control file"
fi

# --- libmxgw-dev -------------------------------------------------------------
devfiles=$(dpkg-deb -c "$dev" | awk '$1 !~ /^d/ {print $6}' | sort)
missing=""
for h in "$src"/libmxgw/include/mxgw/*.h mxgw_version.h; do
  f=./usr/include/mxgw/$(basename "$h")
  printf '%s\n' "$devfiles" | grep -qxF "$f" || missing="$missing $f"
done
for re in 'libmxgw\.so' 'libmxgw\.a' 'pkgconfig/libmxgw\.pc' \
          'cmake/mxgw/mxgwConfig\.cmake' 'cmake/mxgw/mxgwConfigVersion\.cmake' \
          'cmake/mxgw/mxgwTargets\.cmake' 'cmake/mxgw/mxgwTargets-[a-z]+\.cmake'; do
  printf '%s\n' "$devfiles" | grep -Eq "^\./usr/lib/([^/]+/)?$re\$" || missing="$missing $re"
done
if [ -z "$missing" ]; then
  pass "libmxgw-dev contains the headers, libmxgw.so, libmxgw.a, libmxgw.pc and the CMake config"
else
  fail "libmxgw-dev lacks:$missing"
fi
if printf '%s\n' "$devfiles" | grep -Eq 'libmxgw\.so\.[0-9]'; then
  fail "libmxgw-dev also contains the versioned shared library"
else
  pass "libmxgw-dev does not duplicate the runtime files"
fi
if [ "$(field "$dev" Package)" = libmxgw-dev ] &&
   field "$dev" Depends | grep -qF "libmxgw (= $version)"; then
  pass "libmxgw-dev Depends: $(field "$dev" Depends)"
else
  fail "libmxgw-dev control: Package $(field "$dev" Package), Depends '$(field "$dev" Depends)'"
fi
# The packaged .pc must describe /usr, not the build machine's prefix.
pctext=$(dpkg-deb --fsys-tarfile "$dev" | tar -xO --wildcards '*/pkgconfig/libmxgw.pc')
if printf '%s\n' "$pctext" | grep -qx 'prefix=/usr'; then
  pass "packaged libmxgw.pc has prefix=/usr"
else
  fail "packaged libmxgw.pc: $(printf '%s\n' "$pctext" | grep '^prefix=')"
fi

# --- mxgwd: the daemon and the commands --------------------------------------
dfiles=$(dpkg-deb -c "$daemon" | awk '$1 !~ /^d/ {print $6}' | sort)
note "mxgwd files: $(echo $dfiles)"
missing=""
for f in ./usr/sbin/mxgwd ./usr/bin/mxgw-doctor ./usr/bin/mxgw-spf \
         ./usr/bin/mxgw-queue ./usr/share/doc/mxgwd/examples/production.json; do
  printf '%s\n' "$dfiles" | grep -qx -- "$f" || missing="$missing $f"
done
if [ -z "$missing" ]; then
  pass "mxgwd contains mxgwd, mxgw-doctor, mxgw-spf, mxgw-queue and the example configuration"
else
  fail "mxgwd lacks:$missing"
fi
if printf '%s\n' "$dfiles" | grep -q 'libmxgw\.so'; then
  fail "mxgwd duplicates the shared library"
else
  pass "mxgwd does not duplicate the shared library"
fi
if [ "$(field "$daemon" Package)" = mxgwd ] &&
   field "$daemon" Depends | grep -q "libmxgw (= $version)"; then
  pass "mxgwd Depends: $(field "$daemon" Depends)"
else
  fail "mxgwd control: Package $(field "$daemon" Package), Depends '$(field "$daemon" Depends)'"
fi

# --- install, use, remove (root + CI only) -----------------------------------
if [ "$(id -u)" -eq 0 ] && { [ "${CI:-}" = true ] || [ "${MXGW_DEB_INSTALL:-}" = 1 ]; }; then
  if dpkg-query -W -f='${Status}' libmxgw 2>/dev/null | grep -q 'ok installed'; then
    note "libmxgw was already installed; it is replaced and removed at the end"
  fi
  log=$tmp/dpkg.log
  if dpkg -i "$rt" "$dev" "$daemon" >"$log" 2>&1; then
    installed_by_us=1
    pass "dpkg -i $(basename "$rt") $(basename "$dev") $(basename "$daemon")"
    mkdir -p "$tmp/sys"
    check_pkgconfig_consumer "$tmp/sys" "" /usr ""
    # the installed daemon validates a configuration (and names a bad key)
    mkdir -p "$tmp/gw"
    cat >"$tmp/gw/ok.json" <<JSON
{ "hostname": "mx.example.test",
  "listeners": [ { "address": "127.0.0.1", "port": 10999, "mode": "smtp",
                   "tls": { "policy": "none" } } ],
  "domains": ["example.test"],
  "spool": { "directory": "$tmp/gw/spool" },
  "lmtp": { "backends": ["127.0.0.1:24"] } }
JSON
    sed 's/"domains"/"domian"/' "$tmp/gw/ok.json" >"$tmp/gw/bad.json"
    run_check "/usr/sbin/mxgwd --check-config (valid file: exit 0)" \
      /usr/sbin/mxgwd --check-config "$tmp/gw/ok.json"
    badout=$(/usr/sbin/mxgwd --check-config "$tmp/gw/bad.json" 2>&1); rc=$?
    if [ "$rc" -eq 1 ] && printf '%s' "$badout" | grep -q 'domian'; then
      pass "/usr/sbin/mxgwd --check-config names the unknown key (exit 1)"
    else
      fail "mxgwd --check-config on a bad file: exit $rc: $badout"
    fi
    spfout=$(/usr/bin/mxgw-spf --ip 43.207.242.167 --sender newsletter@example.org \
               --zone "$src/examples/spf/example.zone" 2>&1); rc=$?
    if [ "$rc" -le 2 ] && printf '%s' "$spfout" | grep -qi 'spf'; then
      pass "installed /usr/bin/mxgw-spf evaluates a zone (exit $rc)"
    else
      fail "installed mxgw-spf: exit $rc: $spfout"
    fi
    run_check "dpkg -r mxgwd libmxgw-dev libmxgw" dpkg -r mxgwd libmxgw-dev libmxgw
    installed_by_us=""
    if [ -e /usr/include/mxgw/mxgw.h ] || [ -e /usr/sbin/mxgwd ] ||
       ls /usr/lib/libmxgw.so* /usr/lib/*/libmxgw.so* >/dev/null 2>&1; then
      fail "files left behind after dpkg -r"
    else
      pass "dpkg -r removed every file"
    fi
  else
    fail "dpkg -i of the three packages"
    show_log "$log"
  fi
else
  echo "SKIP: dpkg -i / dpkg -r (only as root with CI=true or MXGW_DEB_INSTALL=1)"
fi

summary check-deb
