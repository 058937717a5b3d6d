# SPDX-License-Identifier: MIT
"""The openspf YAML suites (rfc7208-tests.yml) through the Python binding,
with the conventions of tools/mxgw-spf-suite.c: each scenario's zonedata
becomes master-file text loaded into a fresh static resolver (SPF-type
records stand in for TXT when a name lists no TXT; a bare TIMEOUT makes the
types not listed before it time out), default explanation "DEFAULT"; a
test passes when the result is one it lists and the explanation, if
given, is the same."""
import yaml

import mxgw

TYPES = ("A", "AAAA", "MX", "TXT", "PTR", "CNAME", "SPF")
RESULT_ALIASES = {"error": "temperror", "unknown": "permerror"}


def zname(s):
    s = s[:-1] if s.endswith(".") else s
    if not s:
        return "."
    out = []
    for ch in s.encode("utf-8"):
        c = chr(ch)
        if c.isascii() and (c.isalnum() or c in "-_."):
            out.append(c)
        else:
            out.append("\\%03d" % ch)
    return "".join(out) + "."


def ztxt(v):
    strings = [v] if isinstance(v, str) else [x for x in (v or []) if isinstance(x, str)]
    if not strings:
        return ' ""'
    out = ""
    for s in strings:
        b = s.encode("utf-8")
        i = 0
        while True:
            chunk = b[i:i + 255]
            out += ' "' + "".join(chr(c) if 0x20 <= c < 0x7f and c not in (0x22, 0x5c)
                                  else "\\%03d" % c for c in chunk) + '"'
            i += 255
            if i >= len(b):
                break
    return out


def owner_records(resolver, name, lst, zone):
    entries, has_txt = [], False
    for m in lst or []:
        if m == "TIMEOUT":
            entries.append((None, None))
            continue
        if not isinstance(m, dict):
            continue
        for k, v in m.items():
            if k in TYPES:
                has_txt |= k == "TXT"
                entries.append((k, v))
    if not has_txt:
        entries += [("TXT", v) for k, v in list(entries) if k == "SPF" and v != "NONE"]
    seen = set()
    for t, v in entries:
        if t is None:
            for k in TYPES:
                if k not in seen and k != "SPF":
                    resolver.add_record(name, k, None, 0, fail="timeout")
            break
        seen.add(t)
        if t == "SPF" or v == "NONE":
            continue
        if v == "TIMEOUT":
            resolver.add_record(name, t, None, 0, fail="timeout")
            continue
        line = zname(name) + " 3600 IN " + t
        if t == "TXT":
            line += ztxt(v)
        elif t == "MX":
            line += " %s %s" % (v[0], zname(v[1]))
        elif t in ("PTR", "CNAME"):
            line += " " + zname(v)
        else:
            line += " " + v
        zone.append(line)


def load(path):
    with open(path, encoding="utf-8") as f:
        return list(yaml.load_all(f, Loader=yaml.BaseLoader))


def scenario_spf(doc, trace=True):
    r = mxgw.Resolver.static()
    zone = []
    for name, lst in (doc.get("zonedata") or {}).items():
        owner_records(r, name, lst, zone)
    if zone:
        r.load_zone("\n".join(zone) + "\n")
    spf = mxgw.Spf(r, default_explanation="DEFAULT", trace=trace)
    return r, spf


def run(path):
    """Yield (scenario, test name, ok, detail) for every test."""
    for doc in load(path):
        r, spf = scenario_spf(doc)
        with r, spf:
            for tname, t in doc["tests"].items():
                want = t["result"] if isinstance(t["result"], list) else [t["result"]]
                want = [RESULT_ALIASES.get(w, w) for w in want]
                chk = spf.check(t.get("host", ""), t.get("helo"), t.get("mailfrom", ""),
                                identity=t.get("identity", "mailfrom"))
                with chk:
                    res = chk.result
                    exp = chk.explanation
                    ok = res in want and ("explanation" not in t
                                          or (exp or "") == t["explanation"])
                    yield doc.get("description"), tname, ok, \
                        f"got {res} {exp!r}, want {want} {t.get('explanation')!r}"
