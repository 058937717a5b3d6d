# SPDX-License-Identifier: MIT
"""Integration: the README's short C example (examples/hello-session.c)
runs one session from a byte string: it must exit 0 and print the greeting,
the EHLO reply, the events in order, the dot-unstuffed body, the Received
header and the final 250 and 221 replies."""

import os
import re
import subprocess
import sys


def main():
    exe = os.environ.get("MXGW_HELLO_SESSION")
    if not exe or not os.access(exe, os.X_OK):
        sys.stderr.write("MXGW_HELLO_SESSION must name mxgw-hello-session\n")
        return 2
    p = subprocess.run([exe], capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    print(out)
    assert p.returncode == 0, (p.returncode, p.stderr)
    assert re.search(r"^S: 220 mx\.example\.test\b", out, re.M), out
    assert re.search(r"^S: 250-mx\.example\.test\b", out, re.M), out
    assert re.search(r"^S: 250 2\.0\.0\b", out, re.M), out
    assert re.search(r"^S: 221 2\.0\.0\b", out, re.M), out
    events = re.findall(r"^   \[([A-Z_]+)\]", out, re.M)
    for a, b in [("CONNECT", "HELO"), ("HELO", "MAIL"), ("MAIL", "RCPT"),
                 ("RCPT", "DATA"), ("DATA", "BODY"),
                 ("BODY", "MESSAGE_END"), ("MESSAGE_END", "CLOSE")]:
        assert events.index(a) < events.index(b), events
    assert events[-1] == "CLOSE", events
    # dot-unstuffed: one dot left of the two sent
    assert ".this line starts with one dot" in out, out
    assert "..this line" not in out, out
    assert re.search(r"^Received: from client\.example\.org", out, re.M), out
    print("ok: hello-session")
    return 0


if __name__ == "__main__":
    sys.exit(main())
