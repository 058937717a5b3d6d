#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""spf_check.py: check SPF for a client address and sender with libmxgw's
Python binding, and print the result, the headers and the trace.

    spf_check.py --ip 43.207.242.167 --sender newsletter@example.org \
                 --zone examples/spf/example.zone
    spf_check.py --ip 192.0.2.1 --sender a@example.org --dns-server 127.0.0.1:53
    spf_check.py --ip 192.0.2.1 --helo mx.example.org --identity helo ...
    spf_check.py --json ...           (the whole check as JSON)
    spf_check.py --async --ip ... --sender a@x --sender b@y   (asyncio, in flight
                                                                together)

Exit status: 0 pass, 1 fail, 2 softfail/neutral/none, 3 temperror/permerror,
4 usage or setup error (the exception's message says what).
"""
import argparse
import asyncio
import json
import sys

import mxgw

EXIT = {"pass": 0, "fail": 1, "softfail": 2, "neutral": 2, "none": 2,
        "temperror": 3, "permerror": 3}


def show(chk, args):
    if args.json:
        print(json.dumps(chk.json(), indent=2))
        return
    print(f"result: {chk.result}")
    for label, value in (("mechanism", chk.mechanism), ("domain", chk.domain),
                         ("explanation", chk.explanation), ("problem", chk.problem)):
        if value:
            print(f"{label}: {value}")
    code, enh, text = chk.reply()
    print("smtp: " + (f"{code} {enh} {text}" if code else "accept"))
    sys.stdout.write(chk.received_spf())
    sys.stdout.write(chk.auth_results(args.receiver))
    if args.trace:
        print("trace:")
        for e in chk.trace:
            print(f"  {'  ' * e.depth}{e.kind:6} {e.text}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ip", required=True, help="the client address")
    ap.add_argument("--sender", action="append", default=[],
                    help="MAIL FROM address (repeat for several checks)")
    ap.add_argument("--helo", default=None, help="HELO/EHLO name")
    ap.add_argument("--identity", choices=("mailfrom", "helo"), default="mailfrom")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--zone", help="an RFC 1035 master file (static resolver)")
    src.add_argument("--dns-server", action="append",
                     help="IP[:PORT] of a DNS server (c-ares); default resolv.conf")
    ap.add_argument("--receiver", default="mx.local", help="our host name")
    ap.add_argument("--timeout-ms", type=int, default=20000)
    ap.add_argument("--no-trace", dest="trace", action="store_false")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--async", dest="use_async", action="store_true",
                    help="evaluate every sender at once on the asyncio loop")
    args = ap.parse_args(argv)
    senders = args.sender or [""]
    try:
        if args.zone:
            resolver = mxgw.Resolver.static()
            resolver.load_zone_file(args.zone)
        else:
            resolver = mxgw.Resolver.ares(args.dns_server)
        with resolver, mxgw.Spf(resolver, receiver=args.receiver,
                                timeout_ms=args.timeout_ms, trace=args.trace) as spf:
            if args.use_async:
                async def all_checks():
                    return await asyncio.gather(*[
                        spf.check_async(args.ip, args.helo, s, args.identity)
                        for s in senders])
                checks = asyncio.run(all_checks())
            else:
                checks = [spf.check(args.ip, args.helo, s, args.identity)
                          for s in senders]
            worst = 0
            for chk in checks:
                with chk:
                    if len(checks) > 1:
                        print(f"== {chk.sender}")
                    show(chk, args)
                    worst = max(worst, EXIT[chk.result])
            return worst
    except mxgw.MxgwError as e:
        print(f"spf_check.py: {e}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
