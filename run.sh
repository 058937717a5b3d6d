#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh: the README's "set up and run" command. It installs the Debian
# packages the project needs (cmake/debian-packages.txt), builds the release
# configuration in build/release, and runs the example SMTP server
# mxgw-example-smtpd in the foreground on 127.0.0.1 (port 10025 unless
# --port N), writing each received message to its own file in
# $MXGW_MAIL_DIR (default ./var/mail). Stop it with Ctrl-C.
#
# Usage: ./run.sh [--port N] [--dir DIR]
# Environment: MXGW_MAIL_DIR, MXGW_JOBS (default 2),
#   MXGW_SKIP_PACKAGES=1 (do not run apt-get).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
PORT=10025
MAILDIR=${MXGW_MAIL_DIR:-./var/mail}
JOBS=${MXGW_JOBS:-2}
BUILD=$ROOT/build/release
SERVER=$BUILD/examples/mxgw-example-smtpd

while [ $# -gt 0 ]; do
  case $1 in
    --port) [ $# -ge 2 ] || { echo "run.sh: --port needs a number" >&2; exit 2; }
            PORT=$2; shift 2 ;;
    --port=*) PORT=${1#--port=}; shift ;;
    --dir) [ $# -ge 2 ] || { echo "run.sh: --dir needs a directory" >&2; exit 2; }
           MAILDIR=$2; shift 2 ;;
    --dir=*) MAILDIR=${1#--dir=}; shift ;;
    -h|--help) sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if ! [[ $PORT =~ ^[0-9]+$ ]] || [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
  echo "run.sh: --port must be a number from 1 to 65535, not '$PORT'" >&2
  exit 2
fi

if [ "${MXGW_SKIP_PACKAGES:-}" != 1 ]; then
  "$ROOT/cmake/install-debian-packages.sh"
fi

echo "run.sh: building release in build/release"
# The same configuration as ./test.sh's release stage, so the two share it.
CC=$(command -v gcc) cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DMXGW_WERROR=ON -DMXGW_SANITIZE=OFF -DMXGW_BUILD_TESTS=ON \
  -DMXGW_BUILD_EXAMPLES=ON -DMXGW_BUILD_BENCH=ON -DMXGW_BUILD_FUZZ=OFF >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target mxgw-example-smtpd
if [ ! -x "$SERVER" ]; then
  echo "run.sh: ERROR: $SERVER was not built" >&2
  exit 1
fi

mkdir -p "$MAILDIR"
cat <<MSG

mxgw-example-smtpd: listening on 127.0.0.1:$PORT, writing mail to $MAILDIR/
Send a test message from another terminal:

  swaks --server 127.0.0.1:$PORT --from sender@example.org --to you@example.net

then look at the newest file in $MAILDIR/. Stop the server with Ctrl-C.

MSG
exec "$SERVER" --listen "127.0.0.1:$PORT" --dir "$MAILDIR"
