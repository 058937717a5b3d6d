#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""suite_flat.py: turn an SPF test suite in the openspf YAML format (such as
rfc7208-tests.yml) into a flat, line-based file the C benchmarks read
without a YAML parser, and give the Python benchmark the same data.

The suite's conventions are applied once, here, so that every
implementation sees the same DNS data: TXT given as a list of strings is
one record (the strings concatenated, RFC 7208 3.3, for the one-string
loaders; kept as a list for pyspf); a name whose only SPF-looking records
have type SPF also has them as TXT, unless it says `TXT: NONE`; a bare
`TIMEOUT` makes queries for the name time out, except for the types
listed before it.

Output, one item per line, fields separated by tabs, text fields in hex
(the suite has non-ASCII and control characters):
  S  <index> <hex description>
  Z  <hex name> <A|AAAA|MX|TXT|PTR|CNAME> <hex data>    (MX: "pref name")
  X  <hex name> <type>      (queries of this type time out)
  T  <test id> <hex helo> <hex ip> <hex mailfrom> <results,comma> <hex expl or ->
"""
import sys

import yaml


TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME")


def records(rrs):
    """(type, value) pairs for one name, with the suite's conventions (those
    of pyspf's test harness): records are read in order; at a bare TIMEOUT,
    every type not seen yet times out (value None) and the rest is ignored;
    SPF-type records count as TXT, after all others, when the name has no
    TXT entry at all."""
    out, spf, seen, has_txt = [], [], set(), False
    for r in rrs:
        if not isinstance(r, dict):
            if r == "TIMEOUT":
                return out + [(t, None) for t in TYPES if t not in seen]
            continue
        for t, v in r.items():
            if t == "TXT":
                has_txt = True
                if v == "NONE":
                    continue
                out.append(("TXT", [v] if isinstance(v, str) else list(v)))
            elif t == "SPF":
                if v != "NONE":
                    spf.append(("TXT", [v] if isinstance(v, str) else list(v)))
                continue
            elif t == "MX":
                # an empty target is the null MX of RFC 7505: the root
                out.append(("MX", "%d %s" % (v[0], v[1] or ".")))
            elif t in TYPES:
                out.append((t, str(v)))
            else:
                continue
            seen.add(t)
    if not has_txt:
        out += spf
    return out


def load(path):
    """[(description, {name: [(type, value)]}, [test dict])]"""
    out = []
    with open(path, "rb") as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            zone = {n: records(r) for n, r in (doc.get("zonedata") or {}).items()}
            tests = []
            for tid, t in doc["tests"].items():
                res = t["result"]
                tests.append({
                    "id": tid,
                    "helo": str(t.get("helo", "")),
                    "host": str(t.get("host", "")),
                    "mailfrom": str(t.get("mailfrom", "")),
                    "result": [res] if isinstance(res, str) else list(res),
                    "explanation": t.get("explanation"),
                })
            out.append((doc.get("description", ""), zone, tests))
    return out


def hx(s):
    return s.encode("utf-8").hex() if s else ""


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: suite_flat.py SUITE.yml > SUITE.flat")
    w = sys.stdout.write
    for i, (desc, zone, tests) in enumerate(load(sys.argv[1])):
        w("S\t%d\t%s\n" % (i, hx(desc)))
        for name, rrs in zone.items():
            for t, v in rrs:
                if v is None:
                    w("X\t%s\t%s\n" % (hx(name), t))
                    continue
                if t == "TXT":
                    v = "".join(v)
                w("Z\t%s\t%s\t%s\n" % (hx(name), t, hx(v)))
        for t in tests:
            w("T\t%s\t%s\t%s\t%s\t%s\t%s\n" % (
                t["id"], hx(t["helo"]), hx(t["host"]), hx(t["mailfrom"]),
                ",".join(t["result"]),
                hx(t["explanation"]) if t["explanation"] is not None else "-"))


if __name__ == "__main__":
    main()
