# SPDX-License-Identifier: MIT
"""test_mxgwd_check_config.py: `mxgwd --check-config FILE` as an operator
runs it: exit status 0 and a summary for a valid file; exit status 1 and
every error (not just the first), each naming its key path, for a broken
one; the bundled examples (examples/mxgwd/demo.json, production.json) are
valid once their files exist. `mxgwd --config` refuses to start on the
same errors. Debian's /usr/bin/python3, unittest, standard library only.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mxgwd_fixture import (SRC, check_config, make_cert,  # noqa: E402
                           require_mxgwd)


def base_config(d, port=2525):
    return {
        "hostname": "mx.gw.test",
        "listeners": [{"address": "127.0.0.1", "port": port}],
        "domains": ["example.test"],
        "spool": {"directory": os.path.join(d, "spool")},
        "lmtp": {"backends": ["127.0.0.1:24"]},
    }


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="mxgwd-check.")

    def tearDown(self):
        shutil.rmtree(self.d, ignore_errors=True)

    def write(self, cfg, name="mxgwd.json"):
        path = os.path.join(self.d, name)
        with open(path, "w") as f:
            if isinstance(cfg, str):
                f.write(cfg)
            else:
                json.dump(cfg, f, indent=2)
        return path

    def test_valid_config_exit_0_with_summary(self):
        cert, key = make_cert(self.d, "gw")
        cfg = base_config(self.d)
        cfg["listeners"].append({"address": "127.0.0.1", "port": 2526,
                                 "proxy_protocol": True,
                                 "tls": {"policy": "encrypt",
                                         "cert_file": "gw-cert.pem",
                                         "key_file": "gw-key.pem"}})
        path = self.write(cfg)
        rc, out, err = check_config(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("listener 127.0.0.1:2525 mode=smtp tls=none\n", out)
        self.assertIn("listener 127.0.0.1:2526 mode=smtp tls=encrypt "
                      "proxy_protocol cert=%s\n" % cert, out)
        self.assertIn("domains example.test\n", out)
        self.assertIn("spf none=accept neutral=accept pass=accept "
                      "fail=reject softfail=accept temperror=defer "
                      "permerror=accept dns=resolv.conf\n", out)
        self.assertIn("%s: configuration OK\n" % path, out)
        # a self-signed certificate is a warning, not an error
        self.assertIn("warning: listeners[1].tls: %s: certificate "
                      "CN=mx.gw.test is self-signed" % cert, err)

    def test_every_error_with_its_path(self):
        cert, key = make_cert(self.d, "gw", key_mode=0o644)
        cfg = base_config(self.d)
        cfg["listeners"] += [
            {"address": "127.0.0.1", "port": 2526,
             "tls": {"policy": "may", "cert_file": cert, "key_file": key}},
            {"address": "127.0.0.1", "port": 2525},
            {"address": "127.0.0.1", "port": 0},
        ]
        cfg["limits"] = {"max_connections": "lots", "max_conections": 3,
                         "greeting_delay": "1y"}
        cfg["spf"] = {"policy": {"fail": "bounce"}}
        cfg["domains"] = ["example.test", "Example.TEST"]
        del cfg["lmtp"]
        cfg["logging"] = {"outputs": [{"destination": "file",
                                       "path": "/nonexistent/mxgwd.log"}]}
        path = self.write(cfg)
        rc, out, err = check_config(path)
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(out, "")
        want = [
            "listeners[1].tls.key_file: %s: private key file mode 0644 is "
            "readable by group and others; chmod 600 %s" % (key, key),
            "listeners[2]: 127.0.0.1 port 2525 is already used by "
            "listeners[0] (127.0.0.1 port 2525)",
            "listeners[3].port: 0 is out of range (1 to 65535)",
            "limits.max_connections: must be an integer, not a string",
            "limits.max_conections: unknown key (did you mean "
            "\"max_connections\"?)",
            "limits.greeting_delay: \"1y\" is not a duration (a number of "
            "seconds, or a string such as \"500ms\", \"30s\", \"5m\", "
            "\"2h\", \"5d\")",
            "spf.policy.fail: \"bounce\" is not one of \"accept\", "
            "\"reject\" or \"defer\"",
            "domains[1]: \"example.test\" is listed twice",
            "lmtp: missing (required)",
            "logging.outputs[0].path: /nonexistent/mxgwd.log: cannot be "
            "created: directory /nonexistent does not exist",
        ]
        lines = err.splitlines()
        for w in want:
            self.assertIn("%s: %s" % (path, w), lines)
        self.assertEqual(lines[-1], "%s: %d errors" % (path, len(want)))
        self.assertEqual(len(lines), len(want) + 1, err)

    def test_unreadable_and_missing_files(self):
        cfg = base_config(self.d)
        cfg["listeners"][0]["tls"] = {"cert_file": "missing.pem"}
        with open(os.path.join(self.d, "users"), "w") as f:
            f.write("alice:$6$x$y\n")
        os.chmod(os.path.join(self.d, "users"), 0o600)
        cfg["listeners"].append({"address": "127.0.0.1", "mode": "submission",
                                 "tls": {"cert_file": "missing.pem"}})
        cfg["auth"] = {"users_file": "users"}
        cfg["spool"]["directory"] = "/etc/hostname/spool"
        path = self.write(cfg)
        rc, out, err = check_config(path)
        self.assertEqual(rc, 1)
        missing = os.path.join(self.d, "missing.pem")
        self.assertIn("%s: listeners[0].tls.cert_file: %s: No such file or "
                      "directory\n" % (path, missing), err)
        self.assertIn("%s: listeners[1].tls.cert_file: %s: No such file or "
                      "directory\n" % (path, missing), err)
        self.assertIn("%s: spool.directory: /etc/hostname/spool: cannot be "
                      "created: /etc/hostname is not a directory\n" % path,
                      err)
        self.assertIn("%s: 3 errors\n" % path, err)

    def test_json_syntax_error(self):
        path = self.write('{\n  "hostname": "mx.gw.test",\n  "listeners": [\n}\n')
        rc, out, err = check_config(path)
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"^%s: line 4, column 1: .+\n%s: 1 error\n$"
                         % (path, path))

    def test_missing_config_file(self):
        path = os.path.join(self.d, "nope.json")
        rc, out, err = check_config(path)
        self.assertEqual(rc, 1)
        self.assertIn("%s: No such file or directory" % path, err)

    def test_usage(self):
        mxgwd = require_mxgwd()
        for args in ([], ["--config"], ["--config", "a", "--check-config", "b"],
                     ["--bogus"], ["--config", "a", "extra"]):
            p = subprocess.run([mxgwd, *args], capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn("usage: mxgwd --config FILE", p.stderr)

    def test_run_refuses_an_invalid_config(self):
        cfg = base_config(self.d)
        cfg["listeners"][0]["prot"] = 25
        path = self.write(cfg)
        p = subprocess.run([require_mxgwd(), "--config", path],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("%s: listeners[0].prot: unknown key (did you mean "
                      "\"port\"?)\n" % path, p.stderr)
        self.assertIn("1 error; not starting", p.stderr)

    def test_bundled_demo_config(self):
        # examples/mxgwd/demo.json, with the files run.sh makes in ./var
        root = os.path.join(self.d, "tree")
        os.makedirs(os.path.join(root, "examples", "mxgwd"))
        os.makedirs(os.path.join(root, "var", "tls"))
        os.makedirs(os.path.join(root, "var", "log"))
        shutil.copy(os.path.join(SRC, "examples", "mxgwd", "demo.json"),
                    os.path.join(root, "examples", "mxgwd", "demo.json"))
        make_cert(os.path.join(root, "var", "tls"), "demo", cn="mx.demo.test")
        path = os.path.join(root, "examples", "mxgwd", "demo.json")
        rc, out, err = check_config(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("listener 127.0.0.1:10025 mode=smtp tls=may cert=%s/var/"
                      "tls/demo-cert.pem\n" % root, out)
        self.assertIn("lmtp 127.0.0.1:10024 concurrency=4 starttls=never\n", out)
        self.assertIn("recipient_validation lmtp_probe\n", out)

    def test_bundled_production_config(self):
        # examples/mxgwd/production.json with its paths moved into a temp dir
        with open(os.path.join(SRC, "examples", "mxgwd",
                               "production.json")) as f:
            text = f.read()
        le = os.path.join(self.d, "le")
        os.makedirs(le)
        cert, key = make_cert(le, "mx1", cn="mx1.example.org")
        text = text.replace("/etc/letsencrypt/live/mx1.example.org/fullchain.pem",
                            cert)
        text = text.replace("/etc/letsencrypt/live/mx1.example.org/privkey.pem",
                            key)
        users = os.path.join(self.d, "users")
        with open(users, "w") as f:
            f.write("# user:crypt hash\nalice:$6$salt$hash\n")
        os.chmod(users, 0o640)
        text = text.replace("/etc/mxgwd/users", users)
        text = text.replace("/var/spool/mxgwd", os.path.join(self.d, "spool"))
        text = text.replace("/var/log/mxgwd/mxgwd.json",
                            os.path.join(self.d, "mxgwd.json"))
        path = self.write(text, "production.json")
        rc, out, err = check_config(path)
        self.assertEqual(rc, 0, err)
        self.assertIn("listener 0.0.0.0:587 mode=submission tls=encrypt "
                      "auth cert=%s\n" % cert, out)
        self.assertIn("lmtp 10.0.1.10:24 10.0.1.11:24(fallback) "
                      "concurrency=8 starttls=never\n", out)


if __name__ == "__main__":
    require_mxgwd()
    unittest.main(verbosity=2)
