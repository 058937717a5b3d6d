# SPDX-License-Identifier: MIT
"""mxgwd_fixture.py: run mxgwd on loopback for the tests.

Mxgwd writes a JSON configuration into a fresh temporary directory (a
spool, a log file, a self-signed certificate for mx.gw.test made with
openssl, key mode 0600), starts `mxgwd --config FILE` on a free
127.0.0.1 port, waits for the "started" log line and the port, and stops
it by its PID (SIGTERM, then SIGKILL after a timeout) and removes the
directory. The LMTP backend is a private Dovecot from
tests/lmtp/lmtp_fixture.py (users alice, bob, carol @example.test).
Debian's /usr/bin/python3, standard library only.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("MXGW_SOURCE_DIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__),
                                                  "..", "..")))
sys.path.insert(0, os.path.join(SRC, "tests", "lmtp"))
from lmtp_fixture import (DOMAIN, Dovecot, free_port,  # noqa: E402,F401
                          split_added_headers)

MXGWD = os.environ.get("MXGWD", "")
HOSTNAME = "mx.gw.test"


def require_mxgwd():
    if not MXGWD or not os.access(MXGWD, os.X_OK):
        sys.stderr.write("MXGWD must name the built mxgwd (got %r)\n" % MXGWD)
        sys.exit(2)
    return MXGWD


def make_cert(directory, name, cn=HOSTNAME, key_mode=0o600):
    """A self-signed certificate for cn: (cert_file, key_file)."""
    cert = os.path.join(directory, name + "-cert.pem")
    key = os.path.join(directory, name + "-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=" + cn, "-addext",
                    "subjectAltName=DNS:" + cn, "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, key_mode)
    return cert, key


def cert_fingerprint(cert_file):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint",
                          "-sha256", "-in", cert_file],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


def check_config(path):
    """Run mxgwd --check-config: (exit status, stdout, stderr)."""
    p = subprocess.run([require_mxgwd(), "--check-config", path],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


class Mxgwd:
    def __init__(self, backends, tls=True, extra=None, listeners=None):
        self.dir = tempfile.mkdtemp(prefix="mxgwd-test.")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.proc = None
        self.logfile = os.path.join(self.dir, "mxgwd.log")
        self.jsonlog = os.path.join(self.dir, "mxgwd.json")
        self.conf = os.path.join(self.dir, "mxgwd.json.conf")
        self.spool = os.path.join(self.dir, "spool")
        self.cert = self.key = None
        if tls:
            self.cert, self.key = make_cert(self.dir, "gw")
        listener = {"address": "127.0.0.1", "port": self.port, "mode": "smtp"}
        if tls:
            listener["tls"] = {"policy": "may", "cert_file": self.cert,
                               "key_file": self.key}
        self.config = {
            "hostname": HOSTNAME,
            "listeners": listeners or [listener],
            "domains": [DOMAIN],
            "spf": {"enabled": False},
            "spool": {"directory": self.spool, "backoff_initial": "1s",
                      "backoff_max": "2s"},
            "lmtp": {"backends": list(backends)},
            "shutdown_timeout": "20s",
            "logging": {"outputs": [
                {"destination": "stderr"},
                {"destination": "file", "path": self.jsonlog,
                 "format": "json"}]},
        }
        for k, v in (extra or {}).items():
            self.config[k] = v

    def write_config(self):
        with open(self.conf, "w") as f:
            json.dump(self.config, f, indent=2)

    def start(self, timeout=30):
        self.write_config()
        if getattr(self, "_log", None):
            self._log.close()
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([require_mxgwd(), "--config", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._log)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("mxgwd exited %d:\n%s" %
                                   (self.proc.returncode, self.log()))
            if "started" in self.log():
                try:
                    socket.create_connection(("127.0.0.1", self.port),
                                             0.5).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("mxgwd did not start:\n" + self.log())

    def log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, secs=20, count=1):
        end = time.time() + secs
        while time.time() < end:
            if len(re.findall(pattern, self.log())) >= count:
                return True
            time.sleep(0.05)
        return False

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=60):
        return self.proc.wait(timeout)

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def spool_files(self):
        out = []
        for root, _, files in os.walk(self.spool):
            out += [os.path.join(root, f) for f in files]
        return out
