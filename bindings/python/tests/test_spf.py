# SPDX-License-Identifier: MIT
"""SPF through the Python binding: blocking checks with result, trace and
headers; the static and c-ares resolvers (NSD on loopback); asyncio; the
rfc7208 suite (100%); 8 threads at once; every error path."""
import asyncio
import concurrent.futures
import os
import socket
import tempfile
import threading
import time

import pytest

import conftest
import mxgw
import spfsuite

ZONE = """$ORIGIN example.org.
$TTL 3600
@        TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net ~all"
strict   TXT "v=spf1 ip4:192.0.2.1 -all exp=why.example.org"
why      TXT "%{i} is not allowed to send for %{d}"
broken   TXT "v=spf1 ip4:192.0.2.300 -all"
$ORIGIN example.net.
_spf     TXT "v=spf1 ip4:198.51.100.0/24 a:mx1.example.net -all"
mx1      A   203.0.113.25
"""
SUITE = os.path.join(conftest.SRC, "tests", "spf", "rfc7208-tests.yml")


@pytest.fixture
def spf():
    with mxgw.Resolver.static(ZONE) as r, mxgw.Spf(r, receiver="mx.test") as s:
        yield s


def test_blocking_check_result_trace_headers(spf):
    with spf.check("203.0.113.25", "mail.example.org", "news@example.org") as c:
        assert c.result == "pass" and c.result_code == 2 and c.done
        assert c.mechanism == "include:_spf.example.net"
        assert c.domain == "example.org" and c.client_ip == "203.0.113.25"
        assert c.sender == "news@example.org" and c.helo == "mail.example.org"
        assert c.identity == "mailfrom" and c.problem is None
        assert c.explanation is None
        kinds = [e.kind for e in c.trace]
        assert kinds[0] == "query" and "term" in kinds and kinds[-1] == "result"
        assert any(e.depth == 1 and "a:mx1.example.net" in e.text for e in c.trace)
        assert c.counts["dns_terms"] == 2 and c.counts["dns_queries"] >= 3
        rs = c.received_spf()
        assert rs.startswith("Received-SPF: pass") and rs.endswith("\r\n")
        assert "client-ip=203.0.113.25;" in rs and "receiver=mx.test;" in rs
        assert c.auth_results() == "spf=pass (domain of news@example.org designates " \
            "203.0.113.25 as permitted sender) smtp.mailfrom=news@example.org"
        assert c.auth_results("mx.test").startswith("Authentication-Results: mx.test; spf=pass")
        assert c.reply() == (0, None, "")
        j = c.json()
        assert j["result"] == "pass" and j["client_ip"] == "203.0.113.25"
        assert len(j["trace"]) == len(c.trace)
        assert "pass" in repr(c)


def test_fail_softfail_permerror_and_policy(spf):
    with spf.check("192.0.2.9", "h.example.org", "a@strict.example.org") as c:
        assert c.result == "fail" and c.mechanism == "-all"
        assert c.explanation == "192.0.2.9 is not allowed to send for strict.example.org"
        assert c.reply() == (550, "5.7.23", c.explanation)
    with spf.check("192.0.2.200", "h.example.org", "a@example.org") as c:
        assert c.result == "pass"
    with spf.check("10.0.0.1", "h.example.org", "a@example.org") as c:
        assert c.result == "softfail" and c.reply()[0] == 0
    with spf.check("10.0.0.1", "h.example.org", "a@broken.example.org") as c:
        assert c.result == "permerror" and "192.0.2.300" in c.problem
        code, enh, text = c.reply(permerror_reject=True)
        assert (code, enh) == (550, "5.7.24") and text.startswith("SPF permanent error")
        assert c.reply(permerror_reject=False)[0] == 0
    with spf.check("10.0.0.1", "h.example.org", "a@nowhere.example.org") as c:
        assert c.result == "none"
    # HELO identity and the null sender
    with spf.check("192.0.2.5", "example.org", "", identity="helo") as c:
        assert c.result == "pass" and c.identity == "helo"
        assert c.sender == "postmaster@example.org"
    assert mxgw.spf_policy("fail") == (550, "5.7.23")
    assert mxgw.spf_policy("temperror") == (451, "4.7.24")
    assert mxgw.spf_policy(mxgw.RESULTS.index("pass")) == (0, None)
    assert mxgw.RESULTS == ("none", "neutral", "pass", "fail", "softfail",
                            "temperror", "permerror")


def test_options_and_records():
    with mxgw.Resolver.static() as r:
        r.add_record("t.example", "TXT", "v=spf1 a -all")
        r.add_record("t.example", "A", "192.0.2.7", ttl=60)
        r.add_record("slow.example", "TXT", None, fail="timeout")
        r.add_record("sf.example", mxgw.DNS_TYPES["TXT"], None, fail="servfail")
        with mxgw.Spf(r, trace=False, timeout_ms=5000, max_void_lookups=2,
                      default_explanation="nope %{i}") as s:
            assert s.get_option("trace") == 0 and s.get_option("timeout_ms") == 5000
            s.set_option("max_dns_terms", 5)
            assert s.get_option("max_dns_terms") == 5
            with s.check("192.0.2.7", "h", "x@t.example") as c:
                assert c.result == "pass" and c.trace == []
            with s.check("192.0.2.8", "h", "x@t.example") as c:
                assert c.result == "fail" and c.explanation == "nope 192.0.2.8"
            for dom in ("slow.example", "sf.example"):
                with s.check("192.0.2.8", "h", "x@" + dom) as c:
                    assert c.result == "temperror" and c.problem
                    assert c.reply() == (451, "4.7.24", "SPF temporary error: " + c.problem)


def test_errors(tmp_path):
    with pytest.raises(mxgw.MxgwSyntaxError) as e:
        mxgw.Resolver.static("$ORIGIN example.org.\n@ TXT \"unterminated\n")
    assert e.value.code == -9 and e.value.name == "MXGW_E_SYNTAX"
    assert "line" in e.value.message and isinstance(e.value, ValueError)
    with mxgw.Resolver.static() as r:
        with pytest.raises(mxgw.MxgwIOError) as e:
            r.load_zone_file(str(tmp_path / "missing.zone"))
        assert isinstance(e.value, OSError)
        zf = tmp_path / "ok.zone"
        zf.write_text(ZONE)
        r.load_zone_file(str(zf))
        with pytest.raises(mxgw.InvalidArgumentError) as e:
            r.add_record("a.example", "A", "not-an-address")
        assert "not-an-address" in str(e.value) or e.value.message
        with mxgw.Spf(r) as s:
            with pytest.raises(mxgw.InvalidArgumentError):
                s.check("not-an-ip", "h", "a@example.org")
            with pytest.raises(mxgw.InvalidArgumentError):
                s.check("192.0.2.1", None, "", identity="helo")
            with pytest.raises(mxgw.InvalidArgumentError):
                s.set_option("no_such_option", 1)
            with pytest.raises(mxgw.RangeError):
                s.set_option("max_dns_terms", 0)
            with pytest.raises(mxgw.InvalidArgumentError):
                s.set_option("receiver", "has space")
            with pytest.raises(mxgw.InvalidArgumentError):
                s.get_option("receiver")
            c = s.check("192.0.2.1", "h", "a@example.org")
            with pytest.raises(mxgw.InvalidArgumentError):
                c.auth_results("not a token")
            c.close()
            with pytest.raises(mxgw.StateError):
                c.result  # closed
        with pytest.raises(mxgw.UnsupportedError):
            with mxgw.Resolver.ares(["127.0.0.1:9"]) as a:
                a.add_record("x.example", "A", "192.0.2.1")
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.Resolver.ares(["not an address"])
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.Resolver.ares(timeout_ms=-5)
    with pytest.raises(mxgw.InvalidArgumentError):
        mxgw.spf_policy(42)
    assert issubclass(mxgw.MxgwTimeoutError, mxgw.MxgwError)
    assert mxgw.strerror(-10) == "I/O error" and mxgw.errname(-12) == "MXGW_E_TLS"


def test_close_order_is_safe():
    """Closing the resolver and evaluator before their checks must not free
    them under the checks (C requires checks first); they go last."""
    r = mxgw.Resolver.static(ZONE)
    s = mxgw.Spf(r)
    c = s.check("192.0.2.1", "h", "a@example.org")
    r.close()
    s.close()
    assert c.result == "pass" and c.received_spf().startswith("Received-SPF: pass")
    c.close()
    assert s._ptr is None and r._ptr is None
    with pytest.raises(mxgw.StateError):
        s.check("192.0.2.1", "h", "a@example.org")


def test_rfc7208_suite_100_percent():
    results = list(spfsuite.run(SUITE))
    failed = [r for r in results if not r[2]]
    assert len(results) == 203
    assert not failed, failed[:5]


def test_eight_threads_at_once():
    """8 threads evaluate at the same time, each with its own resolver and
    evaluator (the C handles are one-thread-at-a-time), plus 8 threads
    sharing one evaluator (serialised by its lock): every result right."""
    cases = [("192.0.2.1", "news@example.org", "pass"),
             ("203.0.113.25", "news@example.org", "pass"),
             ("10.0.0.1", "news@example.org", "softfail"),
             ("192.0.2.9", "a@strict.example.org", "fail")]
    errors = []
    barrier = threading.Barrier(8)

    def own(n):
        with mxgw.Resolver.static(ZONE) as r, mxgw.Spf(r) as s:
            barrier.wait()
            for i in range(n):
                ip, mf, want = cases[i % len(cases)]
                with s.check(ip, "h.example.org", mf) as c:
                    if c.result != want:
                        errors.append((ip, mf, c.result))

    threads = [threading.Thread(target=own, args=(500,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with mxgw.Resolver.static(ZONE) as r, mxgw.Spf(r) as shared:
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(lambda i=i: (cases[i % 4][2],
                                           shared.check(cases[i % 4][0], "h",
                                                        cases[i % 4][1]).result))
                    for i in range(800)]
            assert all(want == got for want, got in (f.result() for f in futs))


def silent_udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_gil_released_while_waiting_for_dns():
    """8 threads whose checks wait on a DNS server that never answers
    (c-ares: 200 ms, 1 try) finish together in about one timeout, not 8."""
    with silent_udp() as sock:
        server = "127.0.0.1:%d" % sock.getsockname()[1]

        def one(_):
            with mxgw.Resolver.ares([server], timeout_ms=200, tries=1) as r, \
                    mxgw.Spf(r) as s:
                with s.check("192.0.2.1", "h", "a@example.org") as c:
                    return c.result, c.problem
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            res = list(ex.map(one, range(8)))
        dt = time.monotonic() - t0
    assert all(r == "temperror" for r, _p in res), res
    single = 0.2
    assert dt < 8 * single * 0.75, dt  # serialised it would take >= 1.6 s


@pytest.fixture(scope="module")
def nsd():
    import dns_fixture
    tmp = tempfile.mkdtemp(prefix="mxgw-py-dns-")
    port = dns_fixture.free_port()
    proc, _bulk = dns_fixture.start_nsd(tmp, port, os.path.join(
        conftest.SRC, "tests", "dns", "spf.test.zone"), 20)
    yield "127.0.0.1:%d" % port
    proc.terminate()
    proc.wait()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)


def test_ares_against_nsd(nsd):
    with mxgw.Resolver.ares([nsd], timeout_ms=500, tries=2, cache_size=100,
                            negative_ttl=10) as r:
        assert r.kind == "ares"
        with mxgw.Spf(r) as s:
            for dom, ip, want in (("pass", "192.0.2.1", "pass"),
                                  ("pass", "192.0.2.2", "fail"),
                                  ("softfail", "192.0.2.2", "softfail"),
                                  ("include", "198.51.100.7", "pass"),
                                  ("redirect", "192.0.2.1", "pass"),
                                  ("nospf", "192.0.2.1", "none")):
                with s.check(ip, "h.example", f"u@{dom}.spf.test") as c:
                    assert c.result == want, (dom, ip, c.result, c.trace)
            with s.check("192.0.2.1", "h", "u@exp.spf.test") as c:
                assert c.result == "pass"
            with s.check("192.0.2.9", "h", "u@exp.spf.test") as c:
                assert c.result == "fail"
                assert c.explanation == "192.0.2.9 is not one of exp.spf.test's " \
                    "designated mail servers."


def test_asyncio_many_in_flight(nsd):
    """check_async drives the c-ares resolver from the asyncio loop: 50
    checks in flight on one resolver, while the loop stays responsive."""
    async def main():
        with mxgw.Resolver.ares([nsd], timeout_ms=500) as r, mxgw.Spf(r) as s:
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.001)
            tk = asyncio.create_task(ticker())
            checks = await asyncio.gather(*[
                s.check_async("192.0.2.1" if i % 2 else "192.0.2.9", "h",
                              f"u{i}@pass.spf.test") for i in range(50)])
            tk.cancel()
            res = [c.result for c in checks]
            for c in checks:
                c.close()
            assert res == ["fail" if i % 2 == 0 else "pass" for i in range(50)]
            assert ticks >= 1
            # static resolver too, and the executor form (GIL released)
            loop = asyncio.get_running_loop()
            with mxgw.Resolver.static(ZONE) as zr, mxgw.Spf(zr) as zs:
                c = await zs.check_async("192.0.2.1", "h", "a@example.org")
                assert c.result == "pass"
                c.close()
                c = await loop.run_in_executor(None, zs.check, "10.1.1.1", "h",
                                               "a@example.org")
                assert c.result == "softfail"
                c.close()

    asyncio.run(main())


def test_asyncio_cancel(nsd):
    async def main():
        with silent_udp() as sock:
            server = "127.0.0.1:%d" % sock.getsockname()[1]
            with mxgw.Resolver.ares([server], timeout_ms=2000, tries=1) as r, \
                    mxgw.Spf(r) as s:
                t = asyncio.create_task(s.check_async("192.0.2.1", "h", "a@x.example"))
                await asyncio.sleep(0.05)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
                assert r.pending == 0
    asyncio.run(main())


def test_manual_drive():
    """start() + fds/timeout/process: the non-blocking API by hand."""
    with mxgw.Resolver.static(ZONE) as r, mxgw.Spf(r) as s:
        c = s.start("192.0.2.1", "h", "a@example.org")
        assert not c.done and r.pending >= 1 and r.fds() == []
        assert r.timeout() == 0
        while not c.done:
            r.process()
        assert c.result == "pass"
        c.close()
        c2 = s.start("192.0.2.1", "h", "a@example.org")
        r.run(1000)
        assert c2.done and c2.result == "pass"
        c2.close()
        c3 = s.start("192.0.2.1", "h", "a@example.org")
        c3.run(1000)
        assert c3.result == "pass"
        c3.close()
        c4 = s.start("192.0.2.1", "h", "a@example.org")
        c4.abort()
        assert c4.done and c4.result == "temperror" and "abort" in c4.problem
        c4.close()
    assert mxgw.spf.dns_status_name(2) == "NXDOMAIN"
    with silent_udp() as sock:
        with mxgw.Resolver.ares(["127.0.0.1:%d" % sock.getsockname()[1]],
                                timeout_ms=2000, tries=1) as r, mxgw.Spf(r) as s:
            c = s.start("192.0.2.1", "h", "a@example.org")
            with pytest.raises(mxgw.MxgwTimeoutError):
                c.run(50)
            with pytest.raises(mxgw.MxgwTimeoutError):
                r.run(50)
            c.abort()
            assert c.result == "temperror"
            c.close()


def test_strings_with_nul_or_wrong_type_are_refused():
    with mxgw.Resolver.static(ZONE) as r, mxgw.Spf(r) as s:
        with pytest.raises(ValueError):
            s.check("192.0.2.1", "h", "a@example.org\0.evil")
        with pytest.raises(TypeError):
            s.check(12345, "h", "a@example.org")
        with s.check(b"192.0.2.1", b"h", b"a@example.org") as c:  # bytes work too
            assert c.result == "pass"


def test_spf_check_example(tmp_path):
    import subprocess
    import sys
    ex = os.path.join(conftest.SRC, "examples", "python", "spf_check.py")
    zone = os.path.join(conftest.SRC, "examples", "spf", "example.zone")
    p = subprocess.run([sys.executable, ex, "--ip", "43.207.242.167", "--sender",
                        "newsletter@example.org", "--zone", zone],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "result: softfail" in p.stdout, p.stderr
    assert "Received-SPF: softfail" in p.stdout and "trace:" in p.stdout
    p = subprocess.run([sys.executable, ex, "--ip", "198.51.100.4", "--sender", "a@example.org",
                        "--sender", "b@example.org", "--zone", zone, "--async", "--json"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.count('"result": "pass"') == 2, p.stderr
    p = subprocess.run([sys.executable, ex, "--ip", "1.2.3.4", "--zone",
                        str(tmp_path / "missing.zone")], capture_output=True, text=True)
    assert p.returncode == 4 and "MXGW_E_IO" in p.stderr
