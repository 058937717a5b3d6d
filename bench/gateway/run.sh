#!/bin/bash
# SPDX-License-Identifier: MIT
# The example server (mxgw-example-smtpd) side by side with Postfix, on
# loopback, loaded by Postfix's smtp-source: messages/s accepted and CPU ms
# per message for each, in the same run, interleaved (the host's background
# load changes from minute to minute, so each repeat runs both targets back
# to back, alternating which goes first).
#
# Postfix is the reference instance of shared/bench/postfix-peer (setup.sh
# with BACKEND=sink: smtpd with STARTTLS offered, relay to an LMTP sink), in
# its own directories and on free ports so that it cannot collide with other
# users of postfix-peer. The shared scripts are called, never modified. The
# example server only writes each message to a file (fsync + rename before
# its 250), so the comparable Postfix figure is the accept side: smtpd and
# cleanup, which write and fsync the queue file before their 250. Postfix's
# CPU is reported twice: "pf_accept" = smtpd + cleanup processes only
# (per-PID deltas; max_use is raised so they do not exit mid-run), and
# "pf_total" = the whole Postfix process tree (master, qmgr,
# trivial-rewrite, anvil, lmtp delivery to the sink, ...), measured until the
# queue is empty again. smtp-source and smtp-sink CPU is charged to neither.
#
# Usage: bench/gateway/run.sh [-s "1 20"] [-l "1024 102400"] [-r 3]
#                             [-m MSGS_SMALL] [-M MSGS_LARGE] [-o OUTFILE]
#   -s  smtp-source sessions (parallel connections), list   [1 20]
#   -l  message sizes in octets, list                        [1024 102400]
#   -r  repeats per configuration (median of them)           [3]
#   -m  messages per run for sizes <= 10 KiB                 [5000]
#   -M  messages per run for larger sizes                    [2000]
#   -o  also write all output here
#   -T  put both servers' storage (the example's DIR, Postfix's queue) on
#       tmpfs (/dev/shm) instead of /tmp: fsync becomes free, which shows
#       the CPU of SMTP handling without the file system's share
# Environment: MXGW_SMTPD (server binary, default
#   build/release/examples/mxgw-example-smtpd), MXGW_SHARED (the shared/
#   directory, default "$(git rev-parse --show-toplevel)/../shared").
# Needs: postfix (smtp-source, smtp-sink), dovecot-core + dovecot-lmtpd
#   (postfix-peer/setup.sh checks for them even with BACKEND=sink), root
#   (Postfix). Everything listens on 127.0.0.1 only and is stopped at exit.
# Output: RUN lines per run, SUMMARY lines (min/median/max) per target and
#   configuration, and "RESULT name value unit" lines.
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
SHARED=${MXGW_SHARED:-$ROOT/../shared}
PEER=$SHARED/bench/postfix-peer
SMTPD=${MXGW_SMTPD:-$ROOT/build/release/examples/mxgw-example-smtpd}

SESS="1 20"; SIZES="1024 102400"; REPS=3; M_SMALL=5000; M_LARGE=2000; OUT=""
BASE=/tmp
while getopts "s:l:r:m:M:o:Th" o; do case $o in
  T) BASE=/dev/shm;;
  s) SESS=$OPTARG;; l) SIZES=$OPTARG;; r) REPS=$OPTARG;; m) M_SMALL=$OPTARG;;
  M) M_LARGE=$OPTARG;; o) OUT=$OPTARG;; *) sed -n '2,40p' "$0"; exit 2;; esac; done
if [ -n "$OUT" ]; then exec > >(tee "$OUT") 2>&1; fi

die() { echo "gateway/run.sh: $*" >&2; exit 1; }
[ -x "$SMTPD" ] || die "no server binary at $SMTPD (build the release configuration first, or set MXGW_SMTPD)"
[ -d "$PEER" ] || die "postfix-peer scripts not found at $PEER (set MXGW_SHARED)"
for b in smtp-source smtp-sink postfix postconf dovecot; do
  command -v $b >/dev/null || die "missing $b (apt-get install postfix dovecot-core dovecot-lmtpd)"
done
[ "$(id -u)" = 0 ] || die "must run as root (Postfix)"

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Our own postfix-peer instance (common.sh reads these from the environment).
W=$(mktemp -d "$BASE/mxgw-gwbench.XXXXXX")
chmod 755 "$W"   # postfix and dovecot run as their own users
export PF_DIR=$W/pf DC_DIR=$W/dovecot MAIL_ROOT=$W/peer-mail
export PF_PORT=$(free_port) LMTP_PORT=$(free_port) SINK_PORT=$(free_port)
GW_DIR=$W/gw-mail
SMTPD_PID=""; SINK_PID=""
HZ=$(getconf CLK_TCK)

cleanup() {
  [ -n "$SMTPD_PID" ] && kill -TERM "$SMTPD_PID" 2>/dev/null && wait "$SMTPD_PID" 2>/dev/null
  [ -n "$SINK_PID" ] && kill -TERM "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
  "$PEER/stop.sh" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- start everything -----------------------------------------------------
echo "# gateway bench $(date -u +%FT%TZ): $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# storage: $W ($(df -T "$W" | awk 'NR == 2 { print $2 }'))"
echo "# postfix $(postconf -d -h mail_version), server $SMTPD, libmxgw $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
BACKEND=sink "$PEER/setup.sh" > "$W/setup.log" 2>&1 || { cat "$W/setup.log"; die "postfix-peer setup.sh failed"; }
. "$PEER/common.sh"
PF_MASTER=$(pf_master_pid) || die "no Postfix master pid"
# Keep smtpd and cleanup processes alive through a run, so their CPU can be
# read per PID (default max_use=100 would recycle them every 100 clients).
postconf -c "$PF_CONF" -e "max_use = 1000000" >/dev/null
postfix -c "$PF_CONF" reload >/dev/null 2>&1
# Dovecot is not used (BACKEND=sink); stop it by its pid to free its CPU.
if dc=$(dc_master_pid); then kill -TERM "$dc" 2>/dev/null; fi

smtp-sink -L -u nobody -m 1000 "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>"$W/sink.err" &
SINK_PID=$!

mkdir -p "$GW_DIR"
"$SMTPD" --listen 127.0.0.1:0 --dir "$GW_DIR" --quiet 2>"$W/gw.err" &
SMTPD_PID=$!
GW_PORT=""
for _ in $(seq 100); do
  GW_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/gw.err" | head -1)
  [ -n "$GW_PORT" ] && break
  kill -0 "$SMTPD_PID" 2>/dev/null || { cat "$W/gw.err"; die "server exited"; }
  sleep 0.1
done
[ -n "$GW_PORT" ] || die "server did not report its port"
sleep 1
echo "# postfix smtpd 127.0.0.1:$PF_PORT (master $PF_MASTER, relay lmtp:127.0.0.1:$SINK_PORT smtp-sink), mxgw-example-smtpd 127.0.0.1:$GW_PORT (pid $SMTPD_PID)"

# ---- measuring helpers ----------------------------------------------------
# utime+stime+cutime+cstime of every live process in the tree rooted at $1
treecpu() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '{
      i = match($0, /\) [A-Za-z] /); if (!i) next; pid = $1
      n = split(substr($0, i + 2), f, " "); pp[pid] = f[2]; t[pid] = f[12] + f[13] + f[14] + f[15] }
    END { s = 0; for (p in t) { q = p; for (d = 0; d < 64 && q != "" && q != 0; d++) {
            if (q == root) { s += t[p]; break } q = pp[q] } } print s }'
}
# "pid ticks user_ticks" for each live process named smtpd or cleanup
pidcpu() {
  for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; done | awk '{
      i = match($0, /\) [A-Za-z] /); if (!i) next
      c = substr($0, index($0, "(") + 1, i - index($0, "(") - 1)
      if (c != "smtpd" && c != "cleanup") next
      split(substr($0, i + 2), f, " "); print $1, f[12] + f[13], f[12] }'
}
# ticks between two pidcpu snapshots (new PIDs count from 0; PIDs that
# exited in between are left out: they were idle)
# (column $3: 2 = all CPU, 3 = user CPU only)
pidcpu_delta() {
  awk -v k="$3" 'FILENAME == ARGV[1] { a[$1] = $k; next } { d += $k - (($1 in a) ? a[$1] : 0) } END { print d + 0 }' "$1" "$2"
}
# utime+stime, or utime only with a second argument "user"
proccpu() { awk -v u="${2:-}" '{ i = match($0, /\) [A-Za-z] /); split(substr($0, i + 2), f, " "); print (u == "user") ? f[12] : f[12] + f[13] }' "/proc/$1/stat"; }
hostbusy() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
now() { date +%s.%N; }
queue_files() { find "$PF_SPOOL/incoming" "$PF_SPOOL/active" "$PF_SPOOL/deferred" "$PF_SPOOL/maildrop" -type f 2>/dev/null | wc -l; }
ms_per() { awk -v t="$1" -v m="$2" -v hz="$HZ" 'BEGIN { printf "%.3f", t * 1000 / hz / m }'; }
stats() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (!NR) { print "NA NA NA"; exit }
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print v[1], m, v[NR] }'; }

declare -A R   # R[target,size,s,field] = space-separated values of all reps

run_one() { # target size sessions msgs rep
  local tgt=$1 size=$2 s=$3 m=$4 rep=$5 port c0 c1 p0 p1 h0 h1 t0 t1 tq rc
  local rcpt="r${rep}s${s}l${size}@example.test"
  local u0 u1 acc_user
  if [ "$tgt" = mxgw ]; then port=$GW_PORT; c0=$(proccpu "$SMTPD_PID"); u0=$(proccpu "$SMTPD_PID" user)
  else port=$PF_PORT; c0=$(treecpu "$PF_MASTER"); pidcpu > "$W/p0"; fi
  local files0; files0=$(find "$GW_DIR" -name '*.eml' | wc -l)
  local sent0; sent0=$(grep -c 'status=sent' "$PF_LOG" 2>/dev/null); sent0=${sent0:-0}
  local load1; load1=$(cut -d' ' -f1 /proc/loadavg)
  h0=$(hostbusy); t0=$(now)
  smtp-source -s "$s" -m "$m" -l "$size" -f sender@example.org -t "$rcpt" \
    "127.0.0.1:$port" > "$W/src.out" 2>&1
  rc=$?
  t1=$(now)
  local acc_cpu deliver_s="NA" tot_cpu="NA" ok
  if [ "$tgt" = mxgw ]; then
    c1=$(proccpu "$SMTPD_PID"); acc_cpu=$((c1 - c0))
    u1=$(proccpu "$SMTPD_PID" user); acc_user=$((u1 - u0))
    ok=$(( $(find "$GW_DIR" -name '*.eml' | wc -l) - files0 ))
  else
    pidcpu > "$W/p1"; acc_cpu=$(pidcpu_delta "$W/p0" "$W/p1" 2)
    acc_user=$(pidcpu_delta "$W/p0" "$W/p1" 3)
    # the whole tree, once the queue is empty again (delivery to the sink)
    for _ in $(seq 1200); do [ "$(queue_files)" -eq 0 ] && break; sleep 0.1; done
    tq=$(now); c1=$(treecpu "$PF_MASTER")
    tot_cpu=$(ms_per $((c1 - c0)) "$m")
    deliver_s=$(awk -v a="$t0" -v b="$tq" 'BEGIN { printf "%.2f", b - a }')
    sleep 0.5
    ok=$(( $(grep -c 'status=sent' "$PF_LOG") - sent0 ))
  fi
  h1=$(hostbusy)
  local acc_s; acc_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  local mps; mps=$(awk -v t="$acc_s" -v m="$m" 'BEGIN { printf "%.1f", m / t }')
  local cpu; cpu=$(ms_per "$acc_cpu" "$m")
  local ucpu; ucpu=$(ms_per "$acc_user" "$m")
  local busy; busy=$(awk -v a="$h0" -v b="$h1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
  local err; err=$(grep -a -m1 -iE 'fatal|error|warning' "$W/src.out" | tr ' ' '_' | cut -c1-80)
  echo "RUN target=$tgt size=$size s=$s m=$m rep=$rep rc=$rc accept_s=$acc_s accept_mps=$mps cpu_ms_per_msg=$cpu user_ms_per_msg=$ucpu pf_total_ms_per_msg=$tot_cpu deliver_s=$deliver_s stored=$ok host_busy_s=$busy load1=$load1${err:+ err=$err}"
  [ "$rc" = 0 ] && [ "$ok" -ge "$m" ] || echo "WARNING: $tgt run incomplete (rc=$rc, $ok of $m messages stored/delivered)"
  R[$tgt,$size,$s,mps]+="$mps "; R[$tgt,$size,$s,cpu]+="$cpu "; R[$tgt,$size,$s,usr]+="$ucpu "; R[$tgt,$size,$s,tot]+="$tot_cpu "
  [ "$tgt" = mxgw ] && find "$GW_DIR" -name '*.eml' -delete
  sleep 1
}

# ---- the runs -------------------------------------------------------------
T_START=$(date +%s)
for size in $SIZES; do
  m=$M_SMALL; [ "$size" -gt 10240 ] && m=$M_LARGE
  for s in $SESS; do
    for rep in $(seq "$REPS"); do
      if [ $((rep % 2)) = 1 ]; then order="mxgw postfix"; else order="postfix mxgw"; fi
      for tgt in $order; do run_one "$tgt" "$size" "$s" "$m" "$rep"; done
    done
  done
done

# ---- summary --------------------------------------------------------------
echo
printf '%-8s %7s %4s | %-24s | %-24s | %-8s | %-24s\n' target size sess "accept msg/s min/med/max" "CPU ms/msg min/med/max" "user med" "pf_total ms/msg min/med/max"
for size in $SIZES; do for s in $SESS; do for tgt in mxgw postfix; do
  read -r a1 a2 a3 <<< "$(echo "${R[$tgt,$size,$s,mps]}" | stats)"
  read -r c1 c2 c3 <<< "$(echo "${R[$tgt,$size,$s,cpu]}" | stats)"
  read -r t1 t2 t3 <<< "$(echo "${R[$tgt,$size,$s,tot]}" | stats)"
  read -r _ u2 _ <<< "$(echo "${R[$tgt,$size,$s,usr]}" | stats)"
  printf '%-8s %7s %4s | %7s %7s %8s | %7s %7s %8s | %8s | %7s %7s %8s\n' "$tgt" "$size" "$s" "$a1" "$a2" "$a3" "$c1" "$c2" "$c3" "$u2" "$t1" "$t2" "$t3"
  echo "SUMMARY target=$tgt size=$size s=$s n=$REPS min/med/max: accept_mps=$a1/$a2/$a3 cpu_ms_per_msg=$c1/$c2/$c3 user_ms_per_msg_med=$u2 pf_total_ms_per_msg=$t1/$t2/$t3"
  echo "RESULT gw_${tgt}_${size}_s${s}_accept_mps $a2 msg/s"
  echo "RESULT gw_${tgt}_${size}_s${s}_cpu_ms $c2 ms/msg"
  [ "$tgt" = postfix ] && echo "RESULT gw_${tgt}_${size}_s${s}_total_cpu_ms $t2 ms/msg"
done; done; done
echo "# cpu_ms_per_msg (user+sys; "user" = user space only): mxgw = the server process; postfix = smtpd + cleanup only. pf_total = whole Postfix tree incl. queue manager and LMTP delivery to smtp-sink."
echo "# total time $(( $(date +%s) - T_START )) s"
