# SPDX-License-Identifier: MIT
"""TLS through the Python binding: loading certificate and key files,
validation errors as exceptions naming the file, inspection (subject, SANs,
dates, fingerprint, JSON), PEM from memory, reload, SNI."""
import hashlib
import os
import ssl
import subprocess

import pytest

import mxgw


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(d, name, cn, sans, key="rsa:2048", days=30):
    crt, k = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    openssl("req", "-x509", "-newkey", key, "-nodes", "-days", str(days),
            "-subj", "/CN=" + cn, "-keyout", k, "-out", crt,
            "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans))
    os.chmod(k, 0o600)
    return crt, k


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    rsa = make_cert(d, "rsa", "mx.example.test", ["mx.example.test", "mail.example.test"])
    return d, rsa


def test_load_and_inspect(certs):
    d, (crt, key) = certs
    with mxgw.load_certificate(crt, key, hostname="mx.example.test") as ctx:
        assert ctx.generation == 1 and ctx.role == "server"
        [c] = ctx.certificates
        assert c.subject == "CN=mx.example.test" and c.issuer == "CN=mx.example.test"
        assert c.san == ["mx.example.test", "mail.example.test"]
        assert c.key_type == "RSA" and c.key_bits == 2048 and c.self_signed
        assert 28 <= c.days_left <= 30 and c.chain_length == 1
        assert c.file == crt and c.sni_name == ""
        assert c.not_before.endswith("Z") and c.not_after > c.not_before
        der = ssl.PEM_cert_to_DER_cert(open(crt).read())
        fp = hashlib.sha256(der).hexdigest().upper()
        assert c.fingerprint.replace(":", "") == fp
        j = ctx.json()
        assert "CN=mx.example.test" in ctx.json_text()
        assert isinstance(j, dict)
        assert ctx.certificate(0) == c
        with pytest.raises(mxgw.RangeError):
            ctx.certificate(1)
        assert ctx.check_reload(now=0) in (True, False)
        ctx.reload()
        assert ctx.generation == 2
        assert isinstance(ctx.warnings, list)


def test_pem_from_memory_and_sni(certs, tmp_path):
    d, (crt, key) = certs
    crt2, key2 = make_cert(str(tmp_path), "other", "other.example.test",
                           ["other.example.test"])
    with mxgw.TlsContext("server", strict_key_mode=1, expiry_warn_days=60) as ctx:
        ctx.add_cert_pem(open(crt, "rb").read(), open(key, "rb").read())
        ctx.add_cert_files(crt2, key2, sni_name="other.example.test")
        ctx.reload()
        certs_ = ctx.certificates
        assert [c.sni_name for c in certs_] == ["", "other.example.test"]
        assert certs_[0].file == ""
        # expiring within 60 days: a warning, not an error
        assert any("expire" in w for w in ctx.warnings), ctx.warnings
    with mxgw.TlsContext("client", verify_peer=0) as cl:
        cl.reload()
        assert cl.certificates == []


def test_validation_errors_name_the_file(certs, tmp_path):
    d, (crt, key) = certs
    missing = str(tmp_path / "nope.pem")
    with mxgw.TlsContext() as ctx:
        with pytest.raises(mxgw.MxgwIOError) as e:
            ctx.add_cert_files(missing, key)
        assert missing in str(e.value) and e.value.code == -10
        assert isinstance(e.value, OSError)
        assert missing in ctx.errmsg

        garbage = tmp_path / "garbage.pem"
        garbage.write_text("this is not PEM\n")
        with pytest.raises(mxgw.MxgwSyntaxError) as e:
            ctx.add_cert_files(str(garbage), key)
        assert str(garbage) in str(e.value)

        loose = tmp_path / "loose.key"
        loose.write_bytes(open(key, "rb").read())
        os.chmod(loose, 0o644)
        with pytest.raises(mxgw.MxgwPermissionError) as e:
            ctx.add_cert_files(crt, str(loose))
        assert str(loose) in str(e.value) and isinstance(e.value, PermissionError)

        crt2, key2 = make_cert(str(tmp_path), "x", "x.example.test", ["x.example.test"])
        with pytest.raises(mxgw.TLSError) as e:
            ctx.add_cert_files(crt, key2)  # key of another certificate
        assert "TLS" in e.value.name and (key2 in str(e.value) or crt in str(e.value))

        with pytest.raises(mxgw.StateError):
            ctx.reload()  # nothing added
        with pytest.raises(mxgw.InvalidArgumentError):
            ctx.add_cert_files(crt, key, sni_name="bad name!")
        with pytest.raises(mxgw.InvalidArgumentError):
            ctx.set_option("nope", 1)
        with pytest.raises(mxgw.RangeError):
            ctx.set_option("min_version", 99)
    with pytest.raises(mxgw.TLSError) as e:
        mxgw.load_certificate(crt, key, hostname="other.example.net")
    assert "other.example.net" in str(e.value)
    with pytest.raises(KeyError):
        mxgw.TlsContext("nonsense")
