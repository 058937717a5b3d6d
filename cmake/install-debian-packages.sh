#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# install-debian-packages.sh: installs the Debian packages listed in
# cmake/debian-packages.txt, idempotently and without questions. It asks
# dpkg-query which are missing and runs `apt-get update` + `apt-get install`
# only if some are (under CI=true it always runs both, since CI machines are
# meant to be fresh). Postfix is preseeded to "No configuration" and, if this
# run installed it, any postfix it started is stopped again, so nothing is
# left listening on port 25; the same for a system nsd and dovecot. Used
# by ./test.sh, ./run.sh and .ci/run; it can be run on its own. Needs
# root (or sudo) only when something is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
list=$root/cmake/debian-packages.txt

mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list" | grep -v '^$')

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ] && [ "${CI:-}" != true ]; then
  echo "packages: all ${#pkgs[@]} from cmake/debian-packages.txt are installed"
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "packages: missing: ${missing[*]}"
else
  echo "packages: CI=true: apt-get update and install ${#pkgs[@]} packages"
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "packages: ERROR: need root to install: ${missing[*]}" >&2
    echo "packages: run as root, or install them with apt-get yourself" >&2
    exit 1
  fi
fi

new_postfix=0
for p in "${missing[@]}"; do [ "$p" = postfix ] && new_postfix=1; done
new_nsd=0
for p in "${missing[@]}"; do [ "$p" = nsd ] && new_nsd=1; done
new_dovecot=0
for p in "${missing[@]}"; do case $p in dovecot-*) new_dovecot=1 ;; esac; done
new_haproxy=0
for p in "${missing[@]}"; do [ "$p" = haproxy ] && new_haproxy=1; done

# Postfix asks what kind of mail server this is: answer "No configuration",
# which leaves it without a main.cf and so without a running daemon.
echo 'postfix postfix/main_mailer_type select No configuration' |
  "${sudo[@]}" debconf-set-selections
echo "postfix postfix/mailname string $(hostname -f 2>/dev/null || echo localhost)" |
  "${sudo[@]}" debconf-set-selections

# Keep maintainer scripts from starting daemons while we install (the
# standard policy-rc.d mechanism), unless the admin already has a policy.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ $((new_postfix + new_nsd + new_dovecot + new_haproxy)) -gt 0 ] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# installed by libmxgw cmake/install-debian-packages.sh\nexit 101\n' |
    "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ $own_policy -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
  --no-install-recommends "${apt_opts[@]}" "${pkgs[@]}"

if [ $new_postfix -eq 1 ]; then
  # If the package started a system postfix anyway, stop it: tests run their
  # own Postfix instances on loopback and port 25 must stay free.
  if "${sudo[@]}" postfix status >/dev/null 2>&1; then
    echo "packages: stopping the system postfix that the package started"
    "${sudo[@]}" postfix stop >/dev/null 2>&1 || true
  fi
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postfix 2>/dev/null; then
    "${sudo[@]}" systemctl stop postfix || true
  fi
fi

if [ $new_nsd -eq 1 ]; then
  # tests/dns runs its own NSD on a free loopback port: keep the system one
  # from holding port 53, now and after a reboot.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now nsd >/dev/null 2>&1 || true
  else
    "${sudo[@]}" update-rc.d nsd disable >/dev/null 2>&1 || true
    if [ -s /run/nsd/nsd.pid ]; then
      echo "packages: stopping the system nsd that the package started"
      "${sudo[@]}" kill "$(cat /run/nsd/nsd.pid)" 2>/dev/null || true
    fi
  fi
fi

if [ $new_dovecot -eq 1 ]; then
  # tests/lmtp runs its own Dovecot with its own base_dir on a free
  # loopback port: keep the system one from listening (IMAP/POP3/LMTP),
  # now and after a reboot.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now dovecot >/dev/null 2>&1 || true
  else
    "${sudo[@]}" update-rc.d dovecot disable >/dev/null 2>&1 || true
    if [ -s /run/dovecot/master.pid ]; then
      echo "packages: stopping the system dovecot that the package started"
      "${sudo[@]}" kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
    fi
  fi
fi

if [ $new_haproxy -eq 1 ]; then
  # tests/proxyproto runs its own HAProxy with a private config on free
  # loopback ports: keep the system one from running, now and after a boot.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now haproxy >/dev/null 2>&1 || true
  else
    "${sudo[@]}" update-rc.d haproxy disable >/dev/null 2>&1 || true
    if [ -s /run/haproxy.pid ]; then
      echo "packages: stopping the system haproxy that the package started"
      "${sudo[@]}" kill "$(cat /run/haproxy.pid)" 2>/dev/null || true
    fi
  fi
fi

still=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || still+=("$p")
done
if [ ${#still[@]} -gt 0 ]; then
  echo "packages: ERROR: still not installed: ${still[*]}" >&2
  exit 1
fi
echo "packages: all ${#pkgs[@]} from cmake/debian-packages.txt are installed"
