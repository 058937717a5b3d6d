#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: the README's "set up and run" command. It installs the Debian
# packages the project needs (cmake/debian-packages.txt), builds the release
# configuration in build/release, and runs the gateway mxgwd in the
# foreground with the bundled demo configuration (examples/mxgwd/demo.json):
#   - SMTP on 127.0.0.1:10025 with STARTTLS, for the domain demo.test;
#   - a self-signed certificate for mx.demo.test, made on the first run
#     (./var/tls, key mode 0600);
#   - the spool in ./var/spool;
#   - a private Dovecot LMTP on 127.0.0.1:10024 (its own configuration, run
#     directory and log in ./var/dovecot; the system Dovecot is not used)
#     delivering to Maildirs in ./var/mail/demo.test/USER/Maildir for the
#     users someone, info and postmaster.
# The log goes to the terminal (Postfix-style) and to var/log/mxgwd.json.
# Stop with Ctrl-C: mxgwd drains, then Dovecot is stopped.
# Needs root (Dovecot delivers as the system user vmail, created if
# missing).
#
# Usage: ./run.sh                 the gateway (above)
#        ./run.sh --example [--port N] [--dir DIR]
#                                 the example server mxgw-example-smtpd
#                                 instead (127.0.0.1:10025, one .eml file
#                                 per message in DIR, default ./var/example)
# Environment: MXGW_JOBS (default 2), MXGW_SKIP_PACKAGES=1 (no apt-get),
#   MXGW_BUILD_DIR (default build/release).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
JOBS=${MXGW_JOBS:-2}
BUILD=${MXGW_BUILD_DIR:-$ROOT/build/release}
VAR=$ROOT/var
SMTP_PORT=10025 # examples/mxgwd/demo.json listeners[0].port
LMTP_PORT=10024 # examples/mxgwd/demo.json lmtp.backends[0]
DOMAIN=demo.test
HOSTNAME_DEMO=mx.demo.test
USERS=(someone info postmaster)

EXAMPLE=0
PORT=10025
MAILDIR=${MXGW_MAIL_DIR:-./var/example}
EXAMPLE_ARGS=0
while [ $# -gt 0 ]; do
  case $1 in
    --example) EXAMPLE=1; shift ;;
    --port) [ $# -ge 2 ] || { echo "run.sh: --port needs a number" >&2; exit 2; }
            PORT=$2; EXAMPLE_ARGS=1; shift 2 ;;
    --port=*) PORT=${1#--port=}; EXAMPLE_ARGS=1; shift ;;
    --dir) [ $# -ge 2 ] || { echo "run.sh: --dir needs a directory" >&2; exit 2; }
           MAILDIR=$2; EXAMPLE_ARGS=1; shift 2 ;;
    --dir=*) MAILDIR=${1#--dir=}; EXAMPLE_ARGS=1; shift ;;
    -h|--help) sed -n '3,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if [ $EXAMPLE -eq 0 ] && [ $EXAMPLE_ARGS -eq 1 ]; then
  echo "run.sh: --port and --dir go with --example (the gateway's ports are in examples/mxgwd/demo.json)" >&2
  exit 2
fi
if ! [[ $PORT =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
  echo "run.sh: --port must be a number from 1 to 65535, not '$PORT'" >&2
  exit 2
fi

if [ "${MXGW_SKIP_PACKAGES:-}" != 1 ]; then
  "$ROOT/cmake/install-debian-packages.sh"
fi

echo "run.sh: building release in ${BUILD#$ROOT/}"
# The same configuration as ./test.sh's release stage, so the two share it.
CC=$(command -v gcc) cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DMXGW_WERROR=ON -DMXGW_SANITIZE=OFF -DMXGW_BUILD_TESTS=ON \
  -DMXGW_BUILD_EXAMPLES=ON -DMXGW_BUILD_BENCH=ON -DMXGW_BUILD_FUZZ=OFF >/dev/null

# ---- the example server (--example) ---------------------------------------
if [ $EXAMPLE -eq 1 ]; then
  SERVER=$BUILD/examples/mxgw-example-smtpd
  cmake --build "$BUILD" -j "$JOBS" --target mxgw-example-smtpd
  [ -x "$SERVER" ] || { echo "run.sh: ERROR: $SERVER was not built" >&2; exit 1; }
  mkdir -p "$MAILDIR"
  cat <<MSG

mxgw-example-smtpd: listening on 127.0.0.1:$PORT, writing mail to $MAILDIR/
Send a test message from another terminal:

  swaks --server 127.0.0.1:$PORT --from sender@example.org --to you@example.net

then look at the newest file in $MAILDIR/. Stop the server with Ctrl-C.

MSG
  exec "$SERVER" --listen "127.0.0.1:$PORT" --dir "$MAILDIR"
fi

# ---- the gateway ----------------------------------------------------------
MXGWD=$BUILD/tools/mxgwd/mxgwd
cmake --build "$BUILD" -j "$JOBS" --target mxgwd
[ -x "$MXGWD" ] || { echo "run.sh: ERROR: $MXGWD was not built" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: the demo starts a private Dovecot, which needs root: sudo ./run.sh" >&2
  exit 1
fi
for port in $SMTP_PORT $LMTP_PORT; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "run.sh: ERROR: 127.0.0.1:$port is already in use (another run.sh?); stop that first" >&2
    exit 1
  fi
done

mkdir -p "$VAR/tls" "$VAR/spool" "$VAR/log" "$VAR/dovecot/run" "$VAR/dovecot/state" "$VAR/mail"

# A self-signed certificate for the demo host name, made once. The key is
# written with umask 077: mxgwd refuses a key readable by others.
if [ ! -s "$VAR/tls/demo-cert.pem" ] || [ ! -s "$VAR/tls/demo-key.pem" ]; then
  echo "run.sh: making a self-signed certificate for $HOSTNAME_DEMO in var/tls"
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -nodes -days 825 -subj "/CN=$HOSTNAME_DEMO" \
    -addext "subjectAltName=DNS:$HOSTNAME_DEMO,DNS:localhost,IP:127.0.0.1" \
    -keyout "$VAR/tls/demo-key.pem" -out "$VAR/tls/demo-cert.pem" 2>/dev/null)
  chmod 600 "$VAR/tls/demo-key.pem"
  chmod 644 "$VAR/tls/demo-cert.pem"
fi

# The mail user: Dovecot never delivers as root.
if ! getent passwd vmail >/dev/null; then
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin vmail
fi
VUID=$(id -u vmail)
VGID=$(id -g vmail)
chown "$VUID:$VGID" "$VAR/mail"
# vmail must be able to reach var/mail: let it through parents that only
# their owner may enter (a clone in /root, mode 0700), with the x bit only.
d=$VAR
while [ "$d" != / ]; do
  d=$(dirname "$d")
  if ! runuser -u vmail -- test -x "$d" 2>/dev/null; then
    echo "run.sh: letting the mail user vmail pass through $d (chmod o+x $d)"
    chmod o+x "$d"
  fi
done

# The private Dovecot: LMTP only, on loopback, its own base_dir.
{
  for u in "${USERS[@]}"; do
    echo "$u@$DOMAIN::$VUID:$VGID::$VAR/mail/$DOMAIN/$u::"
  done
} >"$VAR/dovecot/users"
cat >"$VAR/dovecot/dovecot.conf" <<CONF
# Written by run.sh: the demo's private Dovecot (LMTP only, loopback).
instance_name = mxgw-demo
base_dir = $VAR/dovecot/run
state_dir = $VAR/dovecot/state
protocols = lmtp
listen = 127.0.0.1
hostname = store.$DOMAIN
log_path = $VAR/dovecot/dovecot.log
ssl = no
login_trusted_networks = 127.0.0.0/8
first_valid_uid = $VUID
last_valid_uid = $VUID
mail_location = maildir:$VAR/mail/%d/%n/Maildir
passdb {
  driver = static
  args = password=unused
}
userdb {
  driver = passwd-file
  args = $VAR/dovecot/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
  unix_listener lmtp {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
CONF

DOVECOT_PID=
MXGWD_PID=
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$MXGWD_PID" ] && kill -0 "$MXGWD_PID" 2>/dev/null; then
    kill -TERM "$MXGWD_PID" 2>/dev/null || true
    wait "$MXGWD_PID" 2>/dev/null || true
  fi
  if [ -n "$DOVECOT_PID" ] && kill -0 "$DOVECOT_PID" 2>/dev/null; then
    echo "run.sh: stopping the demo Dovecot"
    kill -TERM "$DOVECOT_PID" 2>/dev/null || true
    wait "$DOVECOT_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/sbin/dovecot -F -c "$VAR/dovecot/dovecot.conf" 2>>"$VAR/dovecot/dovecot.log" &
DOVECOT_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$LMTP_PORT") 2>/dev/null && break
  if ! kill -0 "$DOVECOT_PID" 2>/dev/null; then
    echo "run.sh: ERROR: Dovecot did not start; its log:" >&2
    tail -20 "$VAR/dovecot/dovecot.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "run.sh: Dovecot LMTP on 127.0.0.1:$LMTP_PORT, Maildirs in var/mail/$DOMAIN/"

if ! "$MXGWD" --check-config examples/mxgwd/demo.json >/dev/null 2>"$VAR/check-config.err"; then
  cat "$VAR/check-config.err" >&2
  exit 1
fi

cat <<MSG

mxgwd: SMTP on 127.0.0.1:$SMTP_PORT (STARTTLS), mail for @$DOMAIN
(users: ${USERS[*]}) to Dovecot over LMTP. From another terminal:

  swaks --server 127.0.0.1:$SMTP_PORT --to someone@$DOMAIN --tls
  ls var/mail/$DOMAIN/someone/Maildir/new/

Watch for the "status=sent" line below. Stop with Ctrl-C.

MSG
# Not exec: this script stays to stop Dovecot when mxgwd exits. Ctrl-C
# reaches mxgwd too (same process group): it drains and exits.
"$MXGWD" --config examples/mxgwd/demo.json &
MXGWD_PID=$!
set +e
wait "$MXGWD_PID"
rc=$?
# interrupted by a signal: wait for mxgwd's drain to finish
while kill -0 "$MXGWD_PID" 2>/dev/null; do wait "$MXGWD_PID"; rc=$?; done
MXGWD_PID=
exit $rc
