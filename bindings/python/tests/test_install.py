# SPDX-License-Identifier: MIT
"""`cmake --install --prefix /usr` puts the package into Debian's
site-packages of /usr/bin/python3 (Python3_SITEARCH,
/usr/lib/python3/dist-packages); from a DESTDIR it imports and works with
nothing else on the path (the extension links libmxgw statically, so no
RPATH is needed)."""
import os
import subprocess
import tempfile

import pytest

BUILD = os.environ.get("MXGW_BUILD_DIR")
SITE = os.environ.get("MXGW_PY_SITEARCH")
PREFIX = os.environ.get("MXGW_PY_PREFIX", "/usr")


@pytest.mark.skipif(not BUILD or not SITE, reason="run through ctest")
def test_install_into_destdir_and_import():
    assert SITE == "/usr/lib/python3/dist-packages" or SITE.endswith("-packages")
    with tempfile.TemporaryDirectory(prefix="mxgw-py-install-") as dest:
        env = dict(os.environ, DESTDIR=dest)
        p = subprocess.run(["cmake", "--install", BUILD, "--component", "Python",
                            "--prefix", PREFIX],
                           env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        site = dest + SITE
        files = sorted(os.listdir(os.path.join(site, "mxgw")))
        assert "__init__.py" in files and "py.typed" in files
        assert any(f.startswith("_capi") and f.endswith(".so") for f in files), files
        code = ("import mxgw, sys; assert mxgw.__file__.startswith(%r), mxgw.__file__; "
                "r = mxgw.Resolver.static('example.org. TXT \"v=spf1 -all\"\\n'); "
                "s = mxgw.Spf(r); print(mxgw.__version__, "
                "s.check('192.0.2.1', 'h', 'a@example.org').result)" % site)
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site}
        p = subprocess.run(["/usr/bin/python3", "-c", code], env=env, cwd=dest,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert p.stdout.split()[1] == "fail"
        ldd = subprocess.run(["ldd", [os.path.join(site, "mxgw", f) for f in files
                                      if f.endswith(".so")][0]],
                             capture_output=True, text=True).stdout
        assert "libmxgw" not in ldd and "not found" not in ldd, ldd
