# SPDX-License-Identifier: MIT
# Convert the openspf rfc7208 test-suite YAML to JSON for the Go tests (Go
# has no YAML in its standard library). Run with Debian's /usr/bin/python3
# (python3-yaml). Every scalar stays a string (BaseLoader); mappings whose
# order matters become lists of [key, value] pairs.
import json
import sys

import yaml


def pairs(m):
    return [[k, v] for k, v in m.items()] if isinstance(m, dict) else []


out = []
with open(sys.argv[1], encoding="utf-8") as f:
    for doc in yaml.load_all(f, Loader=yaml.BaseLoader):
        if not doc:
            continue
        zone = []
        for name, entries in pairs(doc.get("zonedata") or {}):
            items = []
            for e in entries or []:
                items.append(e if isinstance(e, str) else pairs(e))
            zone.append([name, items])
        tests = []
        for name, t in pairs(doc.get("tests") or {}):
            r = t.get("result")
            t["result"] = r if isinstance(r, list) else [r]
            tests.append([name, t])
        out.append({"description": doc.get("description", ""),
                    "zonedata": zone, "tests": tests})
json.dump(out, sys.stdout)
