# SPDX-License-Identifier: MIT
"""doctor_fixture.py: the real components the mxgw-doctor tests run against,
all on loopback with free ports, all stopped and removed afterwards:

  - NSD, authoritative for every zone in tests/doctor/zones/ (one file per
    zone, named ZONE.zone): each zone reproduces one incident. NSD runs in
    the foreground as the current user with a private config (the same
    settings as tests/dns/dns_fixture.py, whose helpers are reused);
  - the TLS fixtures of tests/tls/gen-fixtures.sh (a test PKI with
    mx.example.test certificates, the self-signed CN=localhost pair, ...);
  - mxgw-example-smtpd gateways (tests/integration/mxgwtest.py Server);
  - Dovecot LMTP (tests/lmtp/lmtp_fixture.py);
  - spools with deferred messages (doctor_mkqueue, the mxgw_queue API).

run_doctor() runs the CLI and returns its exit status, its text output and
(with --json) the parsed findings. Debian's /usr/bin/python3, standard
library only.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for sub in ("dns", "lmtp", "integration"):
    sys.path.insert(0, os.path.join(TESTS, sub))
import dns_fixture  # noqa: E402
import lmtp_fixture  # noqa: E402
import mxgwtest  # noqa: E402

DOCTOR = os.environ.get("MXGW_DOCTOR", "")
MKQUEUE = os.environ.get("DOCTOR_MKQUEUE", "")
GATEWAY_IP = "43.207.242.167"  # the deployment's address (DNS data only)
HOSTNAME = "mx.example.test"


class Nsd:
    """NSD serving every zone file of `zonedir` on 127.0.0.1:PORT."""

    def __init__(self, zonedir=os.path.join(HERE, "zones")):
        self.zonedir = zonedir
        self.tmp = tempfile.mkdtemp(prefix="mxgw-doctor-dns-")
        self.port = dns_fixture.free_port()
        self.proc = None

    def start(self):
        nsd = shutil.which("nsd") or "/usr/sbin/nsd"
        zones = []
        for f in sorted(glob.glob(os.path.join(self.zonedir, "*.zone"))):
            name = os.path.basename(f)[:-len(".zone")]
            shutil.copy(f, os.path.join(self.tmp, name + ".zone"))
            zones.append(name)
        t = self.tmp
        conf = os.path.join(t, "nsd.conf")
        with open(conf, "w") as f:
            f.write(f"""server:
  ip-address: 127.0.0.1@{self.port}
  port: {self.port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{t}"
  database: ""
  zonelistfile: "{t}/zone.list"
  xfrdfile: "{t}/xfrd.state"
  xfrdir: "{t}"
  pidfile: "{t}/nsd.pid"
  logfile: "{t}/nsd.log"
  cookie-secret-file: "{t}/cookiesecrets.txt"
  server-count: 1
  verbosity: 0
  hide-version: yes
  reuseport: no
remote-control:
  control-enable: no
""")
            for z in zones:
                f.write(f'zone:\n  name: {z}\n  zonefile: "{t}/{z}.zone"\n')
        self.log = open(os.path.join(t, "nsd.stderr"), "w")
        self.proc = subprocess.Popen([nsd, "-d", "-c", conf], stdout=self.log,
                                     stderr=self.log, stdin=subprocess.DEVNULL,
                                     preexec_fn=mxgwtest._die_with_parent)
        for z in zones:
            if not dns_fixture.query_ok(self.port, z, 15):
                err = open(os.path.join(t, "nsd.stderr")).read()
                self.stop()
                raise RuntimeError(f"nsd does not serve {z}: {err}")
        self.server = f"127.0.0.1:{self.port}"
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def tls_fixtures():
    """Generate the TLS fixtures; returns their directory (remove it)."""
    d = tempfile.mkdtemp(prefix="mxgw-doctor-tls-")
    subprocess.run(["sh", os.path.join(TESTS, "tls", "gen-fixtures.sh"), d],
                   check=True)
    return d


def make_spool(count, age, code=451, enh="4.4.1",
               text="connect to 127.0.0.1:24: Connection refused"):
    """A spool with `count` deferred messages, the oldest `age` s old.
    Returns (spool dir, queue IDs oldest first)."""
    d = tempfile.mkdtemp(prefix="mxgw-doctor-spool-")
    spool = os.path.join(d, "spool")
    ids = []
    if count:
        p = subprocess.run([MKQUEUE, spool, str(count), str(age), str(code),
                            enh, text], capture_output=True, text=True,
                           check=True)
        ids = p.stdout.split()
    else:
        subprocess.run([MKQUEUE, spool, "0", "0", "0", "x", "x"], check=True)
    return spool, ids


def run_doctor(*args, json_out=False, timeout=120, env=None):
    """Run mxgw-doctor; returns (exit status, stdout, findings or None)."""
    cmd = [DOCTOR, *args] + (["--json"] if json_out else [])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=env)
    data = json.loads(p.stdout) if json_out and p.stdout.strip() else None
    return p.returncode, p.stdout + p.stderr, data


def findings(data, check=None, status=None):
    out = data["findings"]
    if check:
        out = [f for f in out if f["check"] == check]
    if status:
        out = [f for f in out if f["status"] == status]
    return out
