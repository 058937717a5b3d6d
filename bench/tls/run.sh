#!/bin/bash
# SPDX-License-Identifier: MIT
# STARTTLS cost: mxgw-example-smtpd and mxgwd (the gateway daemon) side by
# side with Postfix, loaded by the SAME client (shared/bench/postfix-peer/tls-bench.py: Python smtplib, one
# message per connection, EHLO [STARTTLS EHLO] MAIL RCPT DATA QUIT from S
# threads), plain and STARTTLS, plus OpenSSL's own handshake cost with the
# same certificate and key as the floor:
#   - openssl s_server + openssl s_time -new: CPU of s_server per full
#     handshake (one connection at a time, so nothing else runs in it);
#   - openssl speed rsa2048 / ecdhx25519: the signature and key exchange
#     alone.
# Both servers serve the same self-signed RSA-2048 certificate (the one
# postfix-peer/setup.sh makes, CN=gw.example.test), so key type and size,
# protocol (TLSv1.3), cipher (TLS_AES_256_GCM_SHA384), key exchange (X25519)
# and signature (RSA-PSS) are the same everywhere.
#
# Each repeat runs all three targets back to back, rotating which goes first
# (the host's background load changes from minute to minute); the figures
# are medians over the repeats.
#
# Postfix is our own instance of shared/bench/postfix-peer (setup.sh with
# BACKEND=sink: smtpd with STARTTLS "may", relaying to an LMTP smtp-sink),
# in its own directories and on free ports; the shared scripts are called,
# never modified. tls-bench.py charges a server the CPU of its whole process
# tree until it is idle again, so Postfix's figure includes its relay to the
# sink; the example server only writes (and fsyncs) a file per message. The
# TLS cost proper is therefore the difference tls - plain for each server.
#
# mxgwd does Postfix's job: the same certificate with STARTTLS "may", its
# default configuration otherwise (one event loop per CPU, the journal), SPF
# off as in Postfix's setup, and every accepted message forwarded over LMTP
# to the same smtp-sink, so its figure includes the relay as Postfix's does.
# Its spool is beside Postfix's queue (on /tmp, or /dev/shm with -T).
#
# Usage: bench/tls/run.sh [-r 3] [-s 20] [-m 1000] [-t 10] [-q] [-T] [-o FILE]
#   -r  repeats (medians of them)                         [3]
#   -s  client threads (parallel connections)             [20]
#   -m  messages (= connections) per run and mode          [1000]
#   -t  seconds of openssl s_time per repeat               [10]
#   -q  run the example server with --quiet (by default it logs every
#       command and reply to a file, as Postfix logs to its maillog)
#   -T  put both servers' storage (the example's DIR, Postfix's queue) on
#       tmpfs (/dev/shm) instead of /tmp: fsync becomes free. The example
#       is single-threaded and fsyncs each message (file and directory)
#       before its 250, so on a busy disk its msg/s is bounded by fsync
#       latency, not by TLS; -T shows the TLS and SMTP side alone.
#   -o  also write all output here
# Environment: MXGW_SMTPD (server binary, default
#   build/release/examples/mxgw-example-smtpd), MXGW_MXGWD (default
#   build/release/tools/mxgwd/mxgwd), MXGW_SHARED (the shared/
#   directory, default "$(git rev-parse --show-toplevel)/../shared").
# Needs: root, postfix (smtp-sink), dovecot-core + dovecot-lmtpd (setup.sh
#   checks for them even with BACKEND=sink), openssl, /usr/bin/python3.
#   Everything listens on 127.0.0.1 only and is stopped at exit.
# Output: RUN lines (tls-bench.py's, and one per s_time run), then RESULT
#   lines and a Markdown table of the medians.
set -uo pipefail
PATH=$PATH:/usr/sbin:/sbin

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
SHARED=${MXGW_SHARED:-$ROOT/../shared}
PEER=$SHARED/bench/postfix-peer
SMTPD=${MXGW_SMTPD:-$ROOT/build/release/examples/mxgw-example-smtpd}
MXGWD=${MXGW_MXGWD:-$ROOT/build/release/tools/mxgwd/mxgwd}
PY=/usr/bin/python3

REPS=3; S=20; M=1000; STIME=10; QUIET=""; OUT=""; BASE=/tmp
while getopts "r:s:m:t:qTo:h" o; do case $o in
  T) BASE=/dev/shm;;
  r) REPS=$OPTARG;; s) S=$OPTARG;; m) M=$OPTARG;; t) STIME=$OPTARG;;
  q) QUIET=--quiet;; o) OUT=$OPTARG;; *) sed -n '2,49p' "$0"; exit 2;; esac; done
if [ -n "$OUT" ]; then exec > >(tee "$OUT") 2>&1; fi

die() { echo "tls/run.sh: $*" >&2; exit 1; }
[ -x "$MXGWD" ] || die "no mxgwd at $MXGWD (cmake --build build/release --target mxgwd; or set MXGW_MXGWD)"
[ -x "$SMTPD" ] || die "no server binary at $SMTPD (cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release && cmake --build build/release -j2 --target mxgw-example-smtpd; or set MXGW_SMTPD)"
[ -f "$PEER/tls-bench.py" ] || die "postfix-peer scripts not found at $PEER (set MXGW_SHARED)"
for b in smtp-sink postfix postconf dovecot openssl; do
  command -v $b >/dev/null || die "missing $b (apt-get install postfix dovecot-core dovecot-lmtpd openssl)"
done
[ -x "$PY" ] || die "missing $PY"
[ "$(id -u)" = 0 ] || die "must run as root (Postfix)"

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Our own postfix-peer instance (common.sh reads these from the environment).
W=$(mktemp -d "$BASE/mxgw-tlsbench.XXXXXX")
chmod 755 "$W"   # postfix and dovecot run as their own users
export PF_DIR=$W/pf DC_DIR=$W/dovecot MAIL_ROOT=$W/peer-mail
export PF_PORT=$(free_port) LMTP_PORT=$(free_port) SINK_PORT=$(free_port)
SS_PORT=$(free_port)
GW_DIR=$W/gw-mail
SMTPD_PID=""; SINK_PID=""; SS_PID=""; GWD_PID=""
HZ=$(getconf CLK_TCK)

cleanup() {
  [ -n "$SMTPD_PID" ] && kill -TERM "$SMTPD_PID" 2>/dev/null && wait "$SMTPD_PID" 2>/dev/null
  [ -n "$GWD_PID" ] && kill -TERM "$GWD_PID" 2>/dev/null && wait "$GWD_PID" 2>/dev/null
  [ -n "$SS_PID" ] && kill -TERM "$SS_PID" 2>/dev/null && wait "$SS_PID" 2>/dev/null
  [ -n "$SINK_PID" ] && kill -TERM "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null
  exec 3>&- 2>/dev/null
  "$PEER/stop.sh" >/dev/null 2>&1
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- start everything -----------------------------------------------------
echo "# tls bench $(date -u +%FT%TZ): $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# storage: $W ($(df -T "$W" | awk 'NR == 2 { print $2 }'))"
echo "# $(openssl version), postfix $(postconf -d -h mail_version), server $SMTPD, libmxgw $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
BACKEND=sink "$PEER/setup.sh" > "$W/setup.log" 2>&1 || { cat "$W/setup.log"; die "postfix-peer setup.sh failed"; }
. "$PEER/common.sh"
PF_MASTER=$(pf_master_pid) || die "no Postfix master pid"
# Dovecot is not used (BACKEND=sink); stop it by its pid to free its CPU.
if dc=$(dc_master_pid); then kill -TERM "$dc" 2>/dev/null; fi
smtp-sink -L -u nobody -m 1000 "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>"$W/sink.err" &
SINK_PID=$!

CERT=$PF_DIR/tls/cert.pem KEY=$PF_DIR/tls/key.pem
echo "# certificate (both servers and s_server): $(openssl x509 -in "$CERT" -noout -subject | sed 's/^subject=//'), $(openssl x509 -in "$CERT" -noout -text | grep -m1 -o 'Public-Key: ([0-9]* bit)'), $CERT"

mkdir -p "$GW_DIR"
"$SMTPD" --listen 127.0.0.1:0 --dir "$GW_DIR" --hostname gw.example.test \
  --tls-cert "$CERT" --tls-key "$KEY" $QUIET 2>"$W/gw.log" &
SMTPD_PID=$!
GW_PORT=""
for _ in $(seq 100); do
  GW_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$W/gw.log" | head -1)
  [ -n "$GW_PORT" ] && break
  kill -0 "$SMTPD_PID" 2>/dev/null || { cat "$W/gw.log"; die "server exited"; }
  sleep 0.1
done
[ -n "$GW_PORT" ] || die "server did not report its port"

# mxgwd: the gateway daemon, relaying to the same sink as Postfix.
GWD_PORT=$(free_port)
mkdir -p "$W/gwd"
cat > "$W/gwd/mxgwd.json" <<JSON
{
  "hostname": "gw.example.test",
  "listeners": [{"address": "127.0.0.1", "port": $GWD_PORT, "mode": "smtp",
                 "tls": {"policy": "may", "cert_file": "$CERT", "key_file": "$KEY"}}],
  "domains": ["example.test"],
  "spf": {"enabled": false},
  "limits": {"max_connections": 20000, "max_connections_per_ip": 0},
  "spool": {"directory": "$W/gwd/spool"},
  "lmtp": {"backends": ["127.0.0.1:$SINK_PORT"]},
  "logging": {"outputs": [{"destination": "file", "path": "$W/gwd/mxgwd.log", "format": "text"}]}
}
JSON
"$MXGWD" --check-config "$W/gwd/mxgwd.json" >"$W/gwd/check.log" 2>&1 || { cat "$W/gwd/check.log"; die "mxgwd --check-config failed"; }
"$MXGWD" --config "$W/gwd/mxgwd.json" 2>"$W/gwd/stderr.log" &
GWD_PID=$!
for _ in $(seq 100); do
  (exec 4<>"/dev/tcp/127.0.0.1/$GWD_PORT") 2>/dev/null && break
  kill -0 "$GWD_PID" 2>/dev/null || { cat "$W/gwd/stderr.log"; die "mxgwd exited"; }
  sleep 0.1
done

# s_server's stdin: a FIFO that never delivers anything nor EOF (EOF on
# stdin would make it spin in select()).
mkfifo "$W/ss.in"
exec 3<>"$W/ss.in"
openssl s_server -accept "127.0.0.1:$SS_PORT" -cert "$CERT" -key "$KEY" \
  -quiet -naccept 100000000 <&3 >/dev/null 2>"$W/s_server.err" &
SS_PID=$!
for _ in $(seq 50); do (exec 4<>"/dev/tcp/127.0.0.1/$SS_PORT") 2>/dev/null && break; sleep 0.1; done
sleep 1
echo "# postfix smtpd 127.0.0.1:$PF_PORT (master $PF_MASTER), mxgw-example-smtpd 127.0.0.1:$GW_PORT (pid $SMTPD_PID${QUIET:+, --quiet}), mxgwd 127.0.0.1:$GWD_PORT (pid $GWD_PID), openssl s_server 127.0.0.1:$SS_PORT (pid $SS_PID)"

proccpu() { awk '{ i = match($0, /\) [A-Za-z] /); split(substr($0, i + 2), f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }

# ---- the floor: OpenSSL alone -------------------------------------------------
# "rsa 2048 bits 0.000206s 0.000012s   4859.8  81225.0" (sign/s is $6)
speed=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ { printf "%.4f %s\n", 1000 / $6, $6 }')
x25519=$(openssl speed -seconds 3 ecdhx25519 2>/dev/null | awk '/X25519/ { printf "%.4f %s\n", 1000 / $NF, $NF }')
echo "SPEED rsa2048_sign_ms=$(echo "$speed" | cut -d' ' -f1) rsa2048_sign_per_s=$(echo "$speed" | cut -d' ' -f2) x25519_derive_ms=$(echo "$x25519" | cut -d' ' -f1) x25519_per_s=$(echo "$x25519" | cut -d' ' -f2)"

run_stime() { # rep
  local c0 c1 out n real load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  c0=$(proccpu "$SS_PID")
  out=$(openssl s_time -connect "127.0.0.1:$SS_PORT" -new -time "$STIME" 2>&1)
  c1=$(proccpu "$SS_PID")
  n=$(echo "$out" | sed -n 's/^\([0-9]*\) connections in \([0-9]*\) real seconds.*/\1/p')
  real=$(echo "$out" | sed -n 's/^\([0-9]*\) connections in \([0-9]*\) real seconds.*/\2/p')
  [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "$out" | tail -5; echo "WARNING: s_time failed"; return; }
  echo "RUN tag=openssl target=127.0.0.1:$SS_PORT client=s_time mode=handshake rep=$1/$REPS connections=$n real_s=$real hs_per_s=$(awk -v n="$n" -v t="$real" 'BEGIN { printf "%.1f", n / t }') srv_cpu_s=$(awk -v c=$((c1 - c0)) -v hz="$HZ" 'BEGIN { printf "%.2f", c / hz }') srv_cpu_ms_per_hs=$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.3f", c * 1000 / hz / n }') load1=$load1"
}

run_bench() { # tag port pid rep
  echo "# $1 rep $4: load $(cut -d' ' -f1-3 /proc/loadavg)"
  "$PY" "$PEER/tls-bench.py" "127.0.0.1:$2" -s "$S" -m "$M" -l 1024 -r 1 \
    --mode both --pid "$3" --tag "$1" | grep '^RUN' | sed "s|rep=1/1|rep=$4/$REPS|"
  [ "$1" = mxgw ] && find "$GW_DIR" -name '*.eml' -delete
}

TARGETS=(mxgw mxgwd postfix openssl)
for rep in $(seq "$REPS"); do
  for k in 0 1 2 3; do
    t=${TARGETS[$(( (rep - 1 + k) % 4 ))]}
    case $t in
      mxgw) run_bench mxgw "$GW_PORT" "$SMTPD_PID" "$rep";;
      mxgwd) run_bench mxgwd "$GWD_PORT" "$GWD_PID" "$rep";;
      postfix) run_bench postfix "$PF_PORT" "$PF_MASTER" "$rep";;
      openssl) run_stime "$rep";;
    esac
  done
done | tee "$W/runs.txt"

kill -0 "$SMTPD_PID" 2>/dev/null || die "the example server died; log: $(tail -5 "$W/gw.log")"
kill -0 "$GWD_PID" 2>/dev/null || die "mxgwd died; log: $(tail -5 "$W/gwd/stderr.log")"
echo "# mxgwd: $(grep -c 'status=sent' "$W/gwd/mxgwd.log") relayed (status=sent), $(grep -c 'status=deferred' "$W/gwd/mxgwd.log") deferred"
echo "# example server: $(grep -c 'TLS connection established' "$W/gw.log") TLS sessions logged, $(grep -c ': warning: ' "$W/gw.log") session warnings, $(grep -ci 'handshake failed' "$W/gw.log") failed handshakes"
# What was negotiated, per target (the same parameters everywhere?)
echo "# negotiated, mxgw: $(sed -n 's/.*TLS connection established: \(.*\)$/\1/p' "$W/gw.log" | sort | uniq -c | sed 's/^ *//' | paste -sd';')"
echo "# negotiated, mxgwd: $(sed -n 's/.*TLS connection established: \(.*\)$/\1/p' "$W/gwd/mxgwd.log" | sort | uniq -c | sed 's/^ *//' | paste -sd';')"
echo "# negotiated, postfix: $(sed -n 's/.*TLS connection established from [^:]*: \(.*\)$/\1/p' "$PF_LOG" | sort | uniq -c | sed 's/^ *//' | paste -sd';')"
echo "# negotiated, s_server: $(echo | openssl s_client -connect "127.0.0.1:$SS_PORT" 2>&1 | grep -E '^(New,|Server Temp Key|Peer signature type)' | paste -sd' ')"

# ---- summary -------------------------------------------------------------------
SPEED_LINE="rsa=$speed x25519=$x25519" "$PY" - "$W/runs.txt" <<'PYEOF'
import os, re, statistics, sys
runs = [dict(kv.split("=", 1) for kv in l.split()[1:] if "=" in kv)
        for l in open(sys.argv[1]) if l.startswith("RUN ")]
def med(tag, mode, key):
    v = [float(r[key]) for r in runs if r.get("tag") == tag
         and r.get("mode") == mode and r.get(key, "NA") != "NA"]
    return (statistics.median(v), min(v), max(v), len(v)) if v else None
errs = sum(int(r.get("errors", 0)) for r in runs)
out = {}
for tag in ("mxgw", "mxgwd", "postfix"):
    for mode in ("plain", "tls"):
        out[tag, mode, "mps"] = med(tag, mode, "accept_mps")
        out[tag, mode, "cpu"] = med(tag, mode, "srv_cpu_ms_per_msg")
hs = med("openssl", "handshake", "srv_cpu_ms_per_hs")
hsr = med("openssl", "handshake", "hs_per_s")
sp = os.environ["SPEED_LINE"]
m = re.match(r"rsa=(\S+) \S+ x25519=(\S+)", sp)
sign_ms, x_ms = (float(m.group(1)), float(m.group(2))) if m else (None, None)
def f(x, d=2):
    return "NA" if x is None else ("%.*f" % (d, x[0]) + " (%.*f–%.*f)" % (d, x[1], d, x[2]))
def v(x):
    return None if x is None else x[0]
def extra(tag):
    a, b = v(out[tag, "tls", "cpu"]), v(out[tag, "plain", "cpu"])
    return None if a is None or b is None else a - b
for tag in ("mxgw", "mxgwd", "postfix"):
    for mode in ("plain", "tls"):
        print("RESULT %s_%s_msgs_per_s %s" % (tag, mode, f(out[tag, mode, "mps"], 1)))
        print("RESULT %s_%s_cpu_ms_per_msg %s" % (tag, mode, f(out[tag, mode, "cpu"], 3)))
    e = extra(tag)
    print("RESULT %s_tls_extra_cpu_ms_per_session %s" % (tag, "NA" if e is None else "%.3f" % e))
print("RESULT openssl_s_server_cpu_ms_per_handshake %s" % f(hs, 3))
print("RESULT openssl_s_time_handshakes_per_s %s" % f(hsr, 1))
print("RESULT openssl_speed_rsa2048_sign_ms %s" % sign_ms)
print("RESULT openssl_speed_x25519_ms %s" % x_ms)
e, h = extra("mxgw"), v(hs)
ratio = e / h if e is not None and h else None
tls_m, tls_p = v(out["mxgw", "tls", "mps"]), v(out["postfix", "tls", "mps"])
speedup = tls_m / tls_p if tls_m and tls_p else None
print("RESULT mxgw_tls_cost_vs_openssl %s (target <= 1.2)" % ("NA" if ratio is None else "%.2f" % ratio))
print("RESULT mxgw_vs_postfix_starttls_msgs_per_s %s (target >= 2)" % ("NA" if speedup is None else "%.2f" % speedup))
e, d = extra("mxgwd"), v(out["mxgwd", "tls", "mps"])
print("RESULT mxgwd_tls_cost_vs_openssl %s (target <= 1.2)" % ("NA" if e is None or not h else "%.2f" % (e / h)))
print("RESULT mxgwd_vs_postfix_starttls_msgs_per_s %s (target >= 2)" % ("NA" if not d or not tls_p else "%.2f" % (d / tls_p)))
# Per CPU-second of the server: robust against a busy host, where a
# single-threaded server gets a smaller share of the CPUs than 20 smtpds.
cm, cp = v(out["mxgw", "tls", "cpu"]), v(out["postfix", "tls", "cpu"])
print("RESULT mxgw_vs_postfix_starttls_msgs_per_cpu_s %s" % ("NA" if not cm or not cp else "%.2f" % (cp / cm)))
cd = v(out["mxgwd", "tls", "cpu"])
print("RESULT mxgwd_vs_postfix_starttls_msgs_per_cpu_s %s" % ("NA" if not cd or not cp else "%.2f" % (cp / cd)))
print("RESULT client_errors %d" % errs)
print()
print("| target | plain msg/s | STARTTLS msg/s | plain CPU ms/msg | STARTTLS CPU ms/msg | TLS extra CPU ms/session |")
print("|---|---|---|---|---|---|")
for tag, name in (("mxgw", "mxgw-example-smtpd"), ("mxgwd", "mxgwd (relays to the sink)"),
                  ("postfix", "Postfix smtpd (relays to the sink)")):
    e = extra(tag)
    print("| %s | %s | %s | %s | %s | %s |" % (
        name, f(out[tag, "plain", "mps"], 1), f(out[tag, "tls", "mps"], 1),
        f(out[tag, "plain", "cpu"]), f(out[tag, "tls", "cpu"]),
        "NA" if e is None else "%.2f" % e))
print("| openssl s_server (s_time -new) | – | %s handshakes/s | – | – | %s |" % (f(hsr, 0), f(hs, 3)))
print()
print("medians (min–max) of %d repeats; rsa2048 sign %s ms, X25519 derive %s ms (openssl speed)"
      % (max(x[3] for x in out.values() if x) if any(out.values()) else 0, sign_ms, x_ms))
PYEOF
