# SPDX-License-Identifier: MIT
"""deliver_common.py: what the delivery tests in this directory share:
tests/lmtp's fixtures (lmtp_fixture as F, test_lmtp_faults as FF), the
Postfix-style delivery log line (LINE), running a delivery test driver
(run_tool: deliver_tool, deliver_tls_tool), the queue as mxgw-queue lists it
(queue_json), and a test case with a scratch spool and fake LMTP backends
(SpoolCase)."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lmtp"))
import lmtp_fixture as F  # noqa: E402
import test_lmtp_faults as FF  # noqa: E402

QCLI = os.environ.get("MXGW_QUEUE_CLI", "")
D = F.DOMAIN
# "ID: to=<R>, [orig_to=<O>,] relay=..., delay=..., delays=..., dsn=X.Y.Z,
# status=sent|deferred|bounced (REASON)"
LINE = re.compile(
    r"^(?P<id>[0-9A-F]{23}): to=<(?P<to>[^>]*)>,(?: orig_to=<[^>]*>,)? "
    r"relay=(?P<relay>none|[^,\[]+\[[^\]]+\](?::\d+)?), "
    r"delay=\d+(?:\.\d{1,2})?, "
    r"delays=\d+(?:\.\d{1,2})?/\d+(?:\.\d{1,2})?/\d+(?:\.\d{1,2})?/"
    r"\d+(?:\.\d{1,2})?, "
    r"dsn=(?P<dsn>\d\.\d{1,3}\.\d{1,3}), "
    r"status=(?P<status>sent|deferred|bounced) \((?P<reason>.*)\)$")


def run_tool(tool, spool, *args, timeout=120):
    """TOOL --spool SPOOL ARGS: its exit status, the "log" lines, the
    "json" events, the "stat" counters and its whole output (stdout, then
    stderr)."""
    p = subprocess.run([tool, "--spool", spool, *map(str, args)],
                       capture_output=True, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    logs = [l[6:] for l in out.splitlines() if l.startswith("log ")]
    events = [json.loads(l[5:]) for l in out.splitlines()
              if l.startswith("json ")]
    stats = dict(l[5:].split("=") for l in out.splitlines()
                 if l.startswith("stat "))
    return p.returncode, logs, events, stats, out + p.stderr.decode()


def queue_json(spool, state=None):
    args = [QCLI, "--spool", spool, "list", "--json"]
    if state:
        args += ["--state", state]
    p = subprocess.run(args, capture_output=True, check=True)
    return json.loads(p.stdout)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class SpoolCase(unittest.TestCase):
    """Per test: a scratch directory self.tmp (named after PREFIX) with the
    spool path self.spool in it, and the fake LMTP backends of self.fake(),
    closed and removed afterwards."""
    PREFIX = "mxgw-deliver."

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=self.PREFIX)
        self.spool = os.path.join(self.tmp, "spool")
        self.fakes = []

    def tearDown(self):
        for f in self.fakes:
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def fake(self, **kw):
        f = FF.FakeLMTP(**kw)
        self.fakes.append(f)
        return f

    def assert_empty_queue(self):
        for st in ("incoming", "active", "deferred", "hold", "failed"):
            self.assertEqual(glob.glob(f"{self.spool}/{st}/*"), [], st)
