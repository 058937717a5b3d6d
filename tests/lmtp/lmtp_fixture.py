# SPDX-License-Identifier: MIT
"""lmtp_fixture.py: test helpers for the LMTP client tests.

Dovecot: a private Dovecot instance (own base_dir, config, log, Maildirs
under a temporary directory) with protocols = lmtp on 127.0.0.1:FREEPORT
and on a Unix socket (base_dir/lmtp). The userdb is a passwd-file listing
only the known users, so unknown recipients get 550 5.1.1. Optional
ssl = yes with a certificate from a throw-away test CA. XCLIENT is offered
to 127.0.0.0/8 (login_trusted_networks). The instance runs in the
foreground (dovecot -F) as our child and is stopped by its PID.

Also: free_port(), run_deliver() for the lmtp_deliver front end, and
maildir helpers. Debian's /usr/bin/python3, standard library only.
"""
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

DELIVER = os.environ.get("LMTP_DELIVER", "")
DOMAIN = "example.test"


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    """True if ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def run_deliver(*args, timeout=300):
    """Run lmtp_deliver; return (rc, results, conn lines, stderr)."""
    p = subprocess.run([DELIVER, *args], capture_output=True, timeout=timeout)
    res, conns = [], []
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("msg="):
            head, _, text = line.partition(" text=")
            d = dict(kv.split("=", 1) for kv in head.split())
            d["text"] = text
            for k in ("msg", "code", "stage", "local"):
                d[k] = int(d[k])
            res.append(d)
        elif line.startswith("conn "):
            conns.append(dict(kv.split("=", 1) for kv in line[5:].split()
                              if "=" in kv))
    return p.returncode, res, conns, p.stderr.decode("utf-8", "replace")


def mail_user():
    """The unprivileged owner of the test mail (Dovecot will not deliver as
    root). The benchmark's 'vmail' user is reused, else created."""
    try:
        pw = pwd.getpwnam("vmail")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "vmail"], check=True)
        pw = pwd.getpwnam("vmail")
    return pw.pw_uid, pw.pw_gid


def make_ca(d, cn="store.example.test", ips=("127.0.0.1",)):
    """A test CA and a server certificate for cn and the addresses ips."""
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=mxgw LMTP test CA", "-keyout", f"{d}/ca.key",
         "-out", f"{d}/ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
         "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write(f"subjectAltName=DNS:{cn}" +
                "".join(f",IP:{ip}" for ip in ips) + "\n")
    ossl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem",
         "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", f"{d}/ext.cnf", "-out", f"{d}/server.pem")
    return f"{d}/ca.pem", f"{d}/server.pem", f"{d}/server.key"


class Dovecot:
    def __init__(self, users=("alice", "bob", "carol"), ssl=False,
                 listen="127.0.0.1"):
        """ssl: False (ssl = no), True (ssl = yes) or "required";
        listen: the loopback address of the TCP listener ("::1" for
        IPv6: the certificate then covers ::1 too and ::1 is trusted)."""
        self.dir = tempfile.mkdtemp(prefix="mxgw-lmtp-dovecot.")
        os.chmod(self.dir, 0o755)
        self.listen = listen
        self.port = free_port(listen)
        self.uid, self.gid = mail_user()
        self.users = users
        self.ssl = ssl
        self.proc = None
        self.log = f"{self.dir}/dovecot.log"
        self.mail = f"{self.dir}/mail"
        self.socket = f"{self.dir}/run/lmtp"

    def start(self):
        d = self.dir
        os.makedirs(f"{d}/run")
        os.makedirs(f"{d}/state")
        os.makedirs(self.mail)
        os.chown(self.mail, self.uid, self.gid)
        with open(f"{d}/users", "w") as f:
            for u in self.users:
                f.write(f"{u}@{DOMAIN}::{self.uid}:{self.gid}::"
                        f"{self.mail}/{DOMAIN}/{u}::\n")
        ssl = "ssl = no\n"
        v6 = ":" in self.listen
        if self.ssl:
            self.ca, cert, key = make_ca(
                d, ips=("127.0.0.1", "::1") if v6 else ("127.0.0.1",))
            mode = "required" if self.ssl == "required" else "yes"
            ssl = (f"ssl = {mode}\nssl_cert = <{cert}\nssl_key = <{key}\n"
                   "ssl_min_protocol = TLSv1.2\n")
        conf = f"""# mxgw LMTP client tests (tests/lmtp/lmtp_fixture.py)
instance_name = mxgw-lmtp-{os.getpid()}-{self.port}
base_dir = {d}/run
state_dir = {d}/state
protocols = lmtp
listen = {self.listen}
hostname = store.example.test
log_path = {self.log}
mail_debug = yes
auth_debug = yes
{ssl}login_trusted_networks = 127.0.0.0/8{" ::1/128" if v6 else ""}
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
mail_location = maildir:{self.mail}/%d/%n/Maildir
passdb {{
  driver = static
  args = password=unused
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.listen}
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{DOMAIN}
}}
"""
        self.conf = f"{d}/dovecot.conf"
        with open(self.conf, "w") as f:
            f.write(conf)
        self._stderr = open(f"{d}/stderr", "w")
        self.proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._stderr)
        for _ in range(100):
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited: " + self.errors())
            try:
                socket.create_connection((self.listen, self.port), 0.2).close()
                if os.path.exists(self.socket):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("dovecot did not start: " + self.errors())

    def read_log(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def errors(self):
        out = ""
        for f in (f"{self.dir}/stderr", self.log):
            if os.path.exists(f):
                with open(f, errors="replace") as fh:
                    out += fh.read()[-3000:]
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_stderr", None):
            self._stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def maildir_files(self, user):
        return sorted(glob.glob(f"{self.mail}/{DOMAIN}/{user}/Maildir/new/*"))

    def wait_files(self, user, n, secs=10):
        end = time.time() + secs
        while time.time() < end:
            f = self.maildir_files(user)
            if len(f) >= n:
                return f
            time.sleep(0.05)
        return self.maildir_files(user)


def split_added_headers(stored):
    """Split a delivered file into (headers Dovecot added, the rest).
    Dovecot prepends Return-Path, Delivered-To and its Received header
    (folded); everything after them must be our message, byte for byte."""
    pos = 0
    added = []
    while True:
        for name in (b"Return-Path:", b"Delivered-To:", b"Received:"):
            if stored.startswith(name, pos):
                end = stored.index(b"\n", pos) + 1
                while stored[end:end + 1] in (b" ", b"\t"):
                    end = stored.index(b"\n", end) + 1
                added.append(stored[pos:end])
                pos = end
                break
        else:
            return added, stored[pos:]
