#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""with_dovecot.py -- CMD...: run CMD with a private Dovecot LMTP server
(tests/lmtp/lmtp_fixture.py) on loopback. CMD gets:
  MXGW_TEST_LMTP        "127.0.0.1:PORT"
  MXGW_TEST_LMTP_MAIL   the Maildir root (<root>/example.test/<user>/Maildir)
  MXGW_TEST_LMTP_USERS  "alice,bob,carol" (known users @example.test)
Dovecot is stopped and its directory removed afterwards; the exit status is
CMD's."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests", "lmtp"))
import lmtp_fixture  # noqa: E402


def main():
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: with_dovecot.py -- CMD...", file=sys.stderr)
        return 2
    d = lmtp_fixture.Dovecot().start()
    try:
        env = dict(os.environ)
        env["MXGW_TEST_LMTP"] = f"127.0.0.1:{d.port}"
        env["MXGW_TEST_LMTP_MAIL"] = d.mail
        env["MXGW_TEST_LMTP_USERS"] = ",".join(d.users)
        return subprocess.call(argv, env=env)
    finally:
        d.stop()


if __name__ == "__main__":
    sys.exit(main())
