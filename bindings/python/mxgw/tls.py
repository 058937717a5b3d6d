# SPDX-License-Identifier: MIT
"""TLS contexts (OpenSSL 3): load and validate certificates and keys, and
inspect what is served.

    ctx = mxgw.load_certificate("/etc/mx/chain.pem", "/etc/mx/key.pem")
    for c in ctx.certificates:
        print(c.subject, c.san, c.not_after, c.fingerprint)

Validation errors are exceptions whose message names the file:
MxgwIOError (missing or unreadable), MxgwPermissionError (key readable by
others), MxgwSyntaxError (not PEM), TLSError (key mismatch, expired, name
not covered ...).
"""
from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from . import _capi
from ._base import Handle, check, now_ms, text
from .errors import error_for

__all__ = ["TlsContext", "CertInfo", "load_certificate"]

_INT_OPTS = {"min_version": _capi.MXGW_TLS_MIN_VERSION,
             "max_version": _capi.MXGW_TLS_MAX_VERSION,
             "strict_key_mode": _capi.MXGW_TLS_STRICT_KEY_MODE,
             "expiry_warn_days": _capi.MXGW_TLS_EXPIRY_WARN_DAYS,
             "refuse_expired": _capi.MXGW_TLS_REFUSE_EXPIRED,
             "refuse_hostname_mismatch": _capi.MXGW_TLS_REFUSE_HOSTNAME_MISMATCH,
             "client_cert": _capi.MXGW_TLS_CLIENT_CERT,
             "verify_peer": _capi.MXGW_TLS_VERIFY_PEER,
             "session_cache": _capi.MXGW_TLS_SESSION_CACHE,
             "reload_interval_ms": _capi.MXGW_TLS_RELOAD_INTERVAL_MS}
_STR_OPTS = {"ciphers": _capi.MXGW_TLS_CIPHERS,
             "ciphersuites": _capi.MXGW_TLS_CIPHERSUITES,
             "ca_file": _capi.MXGW_TLS_CA_FILE,
             "ca_path": _capi.MXGW_TLS_CA_PATH,
             "hostname": _capi.MXGW_TLS_HOSTNAME,
             "key_passphrase": _capi.MXGW_TLS_KEY_PASSPHRASE}
_ROLES = {"server": _capi.MXGW_TLS_SERVER, "client": _capi.MXGW_TLS_CLIENT}


@dataclass(frozen=True)
class CertInfo:
    """One certificate of the serving generation."""
    subject: str
    issuer: str
    san: List[str]
    not_before: str
    not_after: str
    key_type: str
    fingerprint: str
    file: str
    sni_name: str
    key_bits: int
    days_left: int
    self_signed: bool
    chain_length: int


class TlsContext(Handle):
    """A TLS context (role "server" or "client").

    Keyword options: min_version (12 or 13), max_version, strict_key_mode,
    expiry_warn_days, refuse_expired, refuse_hostname_mismatch,
    client_cert, verify_peer, session_cache, reload_interval_ms, ciphers,
    ciphersuites, ca_file, ca_path, hostname, key_passphrase.
    """

    _free = staticmethod(_capi.mxgw_tls_free)

    def __init__(self, role: str = "server", **opts: Any) -> None:
        rc, p = _capi.mxgw_tls_new(_ROLES[role])
        check(rc)
        self._ptr = p
        self.role = role
        for k, v in opts.items():
            self.set_option(k, v)

    def _errmsg(self) -> str:
        return _capi.mxgw_tls_errmsg(self._ptr) if self._ptr else ""

    @property
    def errmsg(self) -> str:
        """Detail of the last error ("" if none)."""
        return self._errmsg()

    def set_option(self, name: str, value: Any) -> None:
        """Set an option by name (takes effect at the next load)."""
        if name in _INT_OPTS:
            check(_capi.mxgw_tls_set_int(self._p(), _INT_OPTS[name], int(value)),
                  self._errmsg)
        elif name in _STR_OPTS:
            check(_capi.mxgw_tls_set_str(self._p(), _STR_OPTS[name], value),
                  self._errmsg)
        else:
            raise error_for(_capi.MXGW_E_INVAL, f"unknown TLS option {name!r}")

    def add_cert_files(self, chain_file: str, key_file: Optional[str] = None,
                       sni_name: Optional[str] = None) -> None:
        """Add a chain (leaf first) and its key from PEM files, validated
        now. key_file None: the key is in chain_file."""
        check(_capi.mxgw_tls_add_cert_files(self._p(), sni_name, str(chain_file),
                                            None if key_file is None
                                            else str(key_file)),
              self._errmsg)

    def add_cert_pem(self, chain_pem: Union[bytes, str],
                     key_pem: Union[bytes, str, None] = None,
                     sni_name: Optional[str] = None) -> None:
        """Add a chain and key from PEM in memory."""
        check(_capi.mxgw_tls_add_cert_pem(self._p(), sni_name, chain_pem,
                                          key_pem), self._errmsg)

    def reload(self) -> None:
        """Build the serving generation (first load) or rebuild it from the
        files (reload); atomic: on error the old one keeps serving."""
        check(_capi.mxgw_tls_reload(self._p()), self._errmsg)

    def check_reload(self, now: Optional[int] = None) -> bool:
        """Reload if the files changed; True if it reloaded."""
        rc = _capi.mxgw_tls_check_reload(self._p(), now_ms() if now is None
                                         else now)
        check(rc, self._errmsg)
        return rc == 1

    @property
    def generation(self) -> int:
        """0 before the first load, then 1, 2, ... per successful reload."""
        return _capi.mxgw_tls_generation(self._p())

    @property
    def warnings(self) -> List[str]:
        """Warnings of the last load (chain order, expiry, key mode)."""
        p = self._p()
        out = []
        for i in range(_capi.mxgw_tls_warning_count(p)):
            rc, b = _capi.mxgw_tls_warning(p, i)
            check(rc, self._errmsg)
            out.append(text(b))
        return out

    def _cert_str(self, i: int, key: int) -> str:
        rc, b = _capi.mxgw_tls_cert_str(self._p(), i, key)
        check(rc, self._errmsg)
        return text(b)

    def _cert_int(self, i: int, key: int) -> int:
        rc, v = _capi.mxgw_tls_cert_int(self._p(), i, key)
        check(rc, self._errmsg)
        return v

    def certificate(self, i: int = 0) -> CertInfo:
        """Certificate i of the serving generation (RangeError past the end)."""
        s, n = self._cert_str, self._cert_int
        san = s(i, _capi.MXGW_CERT_SAN)
        return CertInfo(
            subject=s(i, _capi.MXGW_CERT_SUBJECT),
            issuer=s(i, _capi.MXGW_CERT_ISSUER),
            san=[x.strip() for x in san.split(",") if x.strip()],
            not_before=s(i, _capi.MXGW_CERT_NOT_BEFORE),
            not_after=s(i, _capi.MXGW_CERT_NOT_AFTER),
            key_type=s(i, _capi.MXGW_CERT_KEY_TYPE),
            fingerprint=s(i, _capi.MXGW_CERT_FINGERPRINT),
            file=s(i, _capi.MXGW_CERT_FILE),
            sni_name=s(i, _capi.MXGW_CERT_SNI_NAME),
            key_bits=n(i, _capi.MXGW_CERT_KEY_BITS),
            days_left=n(i, _capi.MXGW_CERT_DAYS_LEFT),
            self_signed=bool(n(i, _capi.MXGW_CERT_SELF_SIGNED)),
            chain_length=n(i, _capi.MXGW_CERT_CHAIN_LENGTH))

    @property
    def certificates(self) -> List[CertInfo]:
        """Every certificate of the serving generation."""
        return [self.certificate(i)
                for i in range(_capi.mxgw_tls_cert_count(self._p()))]

    def json_text(self) -> str:
        """The inspection as JSON text."""
        rc, b = _capi.mxgw_tls_json(self._p())
        check(rc, self._errmsg)
        return text(b)

    def json(self) -> Dict[str, Any]:
        """The inspection as a dict."""
        return _json.loads(self.json_text())


def load_certificate(chain_file: str, key_file: Optional[str] = None,
                     **opts: Any) -> TlsContext:
    """A server context with one certificate loaded and validated."""
    ctx = TlsContext("server", **opts)
    try:
        ctx.add_cert_files(chain_file, key_file)
        ctx.reload()
    except BaseException:
        ctx.close()
        raise
    return ctx
