# SPDX-License-Identifier: MIT
"""mxgwtest: shared harness for the loopback integration tests.

Starts mxgw-example-smtpd on a free 127.0.0.1 port (it binds port 0 and
reports the real one with "listening on ADDR:PORT") with its own spool
directory inside a fresh temp directory, and always stops it and removes
the directory again, even when a test fails or the whole script times out.
It also parses the stored .eml files (Received header + message), speaks
raw SMTP on a socket for the tests that must control every byte, and
exits 77 (ctest SKIP_RETURN_CODE) when a required tool is missing.
Only the Python standard library is used.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77


def skip(reason):
    """Skip the whole test script, loudly."""
    sys.stderr.write("\n*** SKIPPED: %s ***\n\n" % reason)
    sys.exit(SKIP)


def require_tool(path):
    """Exit 77 unless the executable exists."""
    found = path if os.path.isabs(path) else shutil.which(path)
    if not found or not os.access(found, os.X_OK):
        skip("required tool %s is not installed" % path)
    return found


def smtpd_binary():
    path = os.environ.get("MXGW_EXAMPLE_SMTPD")
    if not path or not os.access(path, os.X_OK):
        sys.stderr.write("MXGW_EXAMPLE_SMTPD must name the built "
                         "mxgw-example-smtpd (got %r)\n" % path)
        sys.exit(2)
    return path


class ScriptTimeout(Exception):
    pass


def overall_timeout(seconds):
    """Fail the script (running every finally: cleanup) after `seconds`,
    before ctest's own TIMEOUT would kill it without cleanup."""
    def handler(signo, frame):
        raise ScriptTimeout("integration test exceeded %d s" % seconds)
    signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    # ctest sends SIGTERM/SIGKILL on its own timeout; turn SIGTERM into an
    # exception too, so cleanup still runs.
    signal.signal(signal.SIGTERM, handler)


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def make_tempdir(prefix="mxgw-it-"):
    return tempfile.mkdtemp(prefix=prefix)


def remove_tree(path):
    if os.environ.get("MXGW_KEEP_TMP"):
        sys.stderr.write("keeping %s (MXGW_KEEP_TMP)\n" % path)
        return
    shutil.rmtree(path, ignore_errors=True)


class Server:
    """One mxgw-example-smtpd process with its own temp directory.

    Use as a context manager:  with Server() as srv: ... srv.port ...
    srv.dir is the spool directory; srv.log() returns its stderr so far.
    """

    def __init__(self, args=(), listen="127.0.0.1:0", quiet=False,
                 rlimit_fsize=None, hostname="mx.example.test"):
        self.binary = smtpd_binary()
        self.args = list(args)
        self.listen = listen
        self.quiet = quiet
        self.rlimit_fsize = rlimit_fsize
        self.hostname = hostname
        self.root = None
        self.proc = None
        self.host = None
        self.port = None
        self.returncode = None

    def __enter__(self):
        self.root = make_tempdir()
        try:
            self.dir = os.path.join(self.root, "mail")
            os.mkdir(self.dir)
            self.log_path = os.path.join(self.root, "server.log")
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False

    def _preexec(self):
        _die_with_parent()
        if self.rlimit_fsize is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (self.rlimit_fsize, self.rlimit_fsize))

    def start(self, timeout=10.0):
        cmd = [self.binary, "--listen", self.listen, "--dir", self.dir]
        if self.hostname:
            cmd += ["--hostname", self.hostname]
        if self.quiet:
            cmd.append("--quiet")
        cmd += self.args
        self.cmd = cmd
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=self._preexec, close_fds=True)
        deadline = time.monotonic() + timeout
        pat = re.compile(r"^listening on (\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)$",
                         re.M)
        while time.monotonic() < deadline:
            m = pat.search(self.log())
            if m:
                self.host = m.group(1).strip("[]")
                self.port = int(m.group(2))
                return
            if self.proc.poll() is not None:
                raise AssertionError("server exited with %s before listening:"
                                     "\n%s" % (self.proc.returncode,
                                               self.log()))
            time.sleep(0.02)
        raise AssertionError("server did not report 'listening on' within "
                             "%.0f s:\n%s" % (timeout, self.log()))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Stop the server; return its exit status. SIGKILL after timeout
        (and then raise: a server that does not stop is a bug)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                raise AssertionError("server ignored signal %d for %.0f s"
                                     % (sig, timeout))
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def cleanup(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        finally:
            self.proc = None
            if self.root:
                remove_tree(self.root)
                self.root = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- the spool ---------------------------------------------------------

    def entries(self):
        return sorted(os.listdir(self.dir))

    def eml_files(self):
        return [os.path.join(self.dir, n) for n in self.entries()
                if n.endswith(".eml")]

    def wait_for_files(self, count, timeout=30.0):
        """Wait until `count` .eml files exist (no more than that)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = len(self.eml_files())
            if n >= count:
                return n
            time.sleep(0.05)
        return len(self.eml_files())

    def assert_spool_clean(self):
        """Only <id>.eml files, never temp files or anything else."""
        bad = [n for n in self.entries()
               if not re.fullmatch(r"[0-9A-Za-z]+\.eml", n)]
        if bad:
            raise AssertionError("unexpected entries in spool: %r" % bad)


def split_message(data):
    """Split a stored file into (received_header, message).

    The file must begin with exactly one Received: field (possibly folded)
    that the server prepended; the rest is the message as received."""
    if not data.startswith(b"Received: "):
        raise AssertionError("stored file does not start with Received: %r"
                             % data[:80])
    pos = 0
    while True:
        end = data.index(b"\r\n", pos) + 2
        pos = end
        if not data[pos:pos + 1] in (b" ", b"\t"):
            break
    return data[:pos], data[pos:]


def unfold(header):
    return re.sub(rb"\r\n[ \t]+", b" ", header).rstrip(b"\r\n")


def read_messages(srv):
    """{queue_id: (received_header_unfolded, message)} for every file."""
    out = {}
    for path in srv.eml_files():
        with open(path, "rb") as f:
            hdr, msg = split_message(f.read())
        out[os.path.basename(path)[:-4]] = (unfold(hdr), msg)
    return out


class RawClient:
    """A plain socket speaking SMTP, for exact control of the bytes."""

    def __init__(self, host, port, timeout=15.0, family=socket.AF_INET,
                 rcvbuf=None, sndbuf=None):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_reply(self):
        """One complete (possibly multi-line) reply: (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r, pending %r"
                                   % (lines, self.buf))
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            text = line.decode("utf-8", "replace")
            if not re.match(r"^\d{3}[ -]", text + " "):
                raise AssertionError("malformed reply line %r" % text)
            lines.append(text)
            if len(text) == 3 or text[3] == " ":
                return int(text[:3]), lines

    def expect(self, code):
        got, lines = self.read_reply()
        if got != code:
            raise AssertionError("expected %d, got %r" % (code, lines))
        return lines

    def read_until_closed(self, timeout=10.0):
        """Everything the server still sends until it closes."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
        return data


def dot_stuff(message):
    """RFC 5321 4.5.2 transparency: the DATA payload for `message` (CRLF
    lines), including the terminating <CRLF>.<CRLF>."""
    assert message.endswith(b"\r\n")
    lines = message.split(b"\r\n")[:-1]
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                   for l in lines)
    return out + b".\r\n"


# -- TLS helpers (tests/integration/test_tls*.py) ----------------------------

import hashlib  # noqa: E402
import smtplib  # noqa: E402
import ssl  # noqa: E402

TLS_NAME = "mx.example.test"  # the name the fixtures' good certificates cover


def tls_fixtures(dest):
    """Generate the certificate fixtures with tests/tls/gen-fixtures.sh
    (the openssl command, at test time) into `dest`; return `dest`."""
    require_tool("openssl")
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          os.pardir, "tls", "gen-fixtures.sh")
    p = subprocess.run(["sh", script, dest], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("gen-fixtures.sh failed (%d):\n%s%s" % (
            p.returncode, p.stdout.decode(), p.stderr.decode()))
    return dest


def pem_certs(path):
    """The DER bytes of every CERTIFICATE block in a PEM file, in order."""
    with open(path) as f:
        text = f.read()
    return [ssl.PEM_cert_to_DER_cert(m.group(0)) for m in re.finditer(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text,
        re.S)]


def fingerprint(der):
    """SHA-256 of a DER certificate, hex, lower case."""
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(path):
    """Fingerprint of the first (leaf) certificate of a PEM file."""
    certs = pem_certs(path)
    if not certs:
        raise AssertionError("no certificate in %s" % path)
    return fingerprint(certs[0])


def served_fingerprint(sslsock):
    return fingerprint(sslsock.getpeercert(binary_form=True))


def tls_client_context(cafile, check_hostname=True):
    """An SSLContext that trusts only `cafile` (the test root) and checks the
    server's name the way a careful client does."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=cafile)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class NamedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose starttls() verifies `tls_name` (and sends it as
    SNI) although it connects to an address: smtplib would check the
    address it connected to."""

    def __init__(self, *args, tls_name=TLS_NAME, **kw):
        self.tls_name = tls_name
        super().__init__(*args, **kw)

    def starttls(self, *args, **kw):
        self._host = self.tls_name
        return super().starttls(*args, **kw)


class NamedSMTP_SSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL (implicit TLS) verifying `tls_name`."""

    def __init__(self, *args, tls_name=TLS_NAME, **kw):
        self.tls_name = tls_name
        super().__init__(*args, **kw)

    def _get_socket(self, host, port, timeout):
        self._host = self.tls_name
        return super()._get_socket(host, port, timeout)
