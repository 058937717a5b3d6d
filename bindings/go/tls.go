// SPDX-License-Identifier: MIT

package mxgw

import (
	"runtime"
	"strings"
	"sync"
	"time"

	"libmxgw.org/mxgw/internal/capi"
)

// TLSRole says whether a context serves (SMTP server) or connects (LMTP
// client).
type TLSRole int

const (
	TLSServer TLSRole = 1
	TLSClient TLSRole = 2
)

// TLSOption keys for TLS.SetOption (mxgw_tls_opt).
type TLSOption int

const (
	TLSOptMinVersion             TLSOption = 1 // 12 or 13
	TLSOptMaxVersion             TLSOption = 2
	TLSOptStrictKeyMode          TLSOption = 3
	TLSOptExpiryWarnDays         TLSOption = 4
	TLSOptRefuseExpired          TLSOption = 5
	TLSOptRefuseHostnameMismatch TLSOption = 6
	TLSOptClientCert             TLSOption = 7
	TLSOptVerifyPeer             TLSOption = 8
	TLSOptSessionCache           TLSOption = 9
	TLSOptReloadIntervalMS       TLSOption = 10
)

// TLSStringOption keys for TLS.SetString (mxgw_tls_opt_str).
type TLSStringOption int

const (
	TLSOptCiphers       TLSStringOption = 100
	TLSOptCiphersuites  TLSStringOption = 101
	TLSOptCAFile        TLSStringOption = 102
	TLSOptCAPath        TLSStringOption = 103
	TLSOptHostname      TLSStringOption = 104
	TLSOptKeyPassphrase TLSStringOption = 105
)

// TLS is a TLS context on OpenSSL 3: certificates with precise validation
// errors, inspection, SNI, RSA and ECDSA, atomic hot reload.
type TLS struct {
	mu sync.Mutex
	p  uintptr
}

// NewTLS creates an empty context.
func NewTLS(role TLSRole) (*TLS, error) {
	var p uintptr
	if err := check(capi.Mxgw_tls_new(&p, int(role)), "NewTLS", nil); err != nil {
		return nil, err
	}
	t := &TLS{p: p}
	runtime.SetFinalizer(t, (*TLS).Close)
	return t, nil
}

func (t *TLS) errmsg() string { return capi.Mxgw_tls_errmsg(t.p) }

func (t *TLS) do(op string, f func() int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == 0 {
		return errClosedHandle(op)
	}
	return check(f(), op, t.errmsg)
}

// SetOption sets an integer option (effective at the next load).
func (t *TLS) SetOption(key TLSOption, v int64) error {
	return t.do("TLS.SetOption", func() int { return capi.Mxgw_tls_set_int(t.p, int(key), v) })
}

// SetString sets a string option (effective at the next load).
func (t *TLS) SetString(key TLSStringOption, v string) error {
	return t.do("TLS.SetString", func() int { return capi.Mxgw_tls_set_str(t.p, int(key), v) })
}

// AddCertFiles adds a chain and key from PEM files; sni "" is the default
// certificate, keyFile "" means the key is in chainFile. The files are
// validated now; the error names the file and the problem.
func (t *TLS) AddCertFiles(sni, chainFile, keyFile string) error {
	return t.do("TLS.AddCertFiles", func() int { return capi.Mxgw_tls_add_cert_files(t.p, sni, chainFile, keyFile) })
}

// AddCertPEM adds a chain and key from memory (keyPEM nil: in chainPEM).
func (t *TLS) AddCertPEM(sni string, chainPEM, keyPEM []byte) error {
	return t.do("TLS.AddCertPEM", func() int {
		return capi.Mxgw_tls_add_cert_pem(t.p, sni, string(chainPEM), string(keyPEM))
	})
}

// Load builds the serving generation from everything added (first load)
// or rebuilds it from the same files (reload). Atomic: on error the
// previous generation keeps serving.
func (t *TLS) Load() error {
	return t.do("TLS.Load", func() int { return capi.Mxgw_tls_reload(t.p) })
}

// Reload is Load; the name reads better after the first load.
func (t *TLS) Reload() error { return t.Load() }

// CheckReload reloads if the files changed (at most every
// TLSOptReloadIntervalMS); it reports whether it reloaded.
func (t *TLS) CheckReload() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == 0 {
		return false, errClosedHandle("TLS.CheckReload")
	}
	rc := capi.Mxgw_tls_check_reload(t.p, nowMS())
	return rc == 1, check(rc, "TLS.CheckReload", t.errmsg)
}

// Generation counts successful loads (0 before the first).
func (t *TLS) Generation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == 0 {
		return 0
	}
	return uint64(capi.Mxgw_tls_generation(t.p))
}

// Warnings returns the warnings of the last load attempt.
func (t *TLS) Warnings() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == 0 {
		return nil
	}
	n := capi.Mxgw_tls_warning_count(t.p)
	var w []string
	for i := int64(0); i < n; i++ {
		var b []byte
		if capi.Mxgw_tls_warning(t.p, i, &b) == 0 {
			w = append(w, string(b))
		}
	}
	return w
}

// CertInfo describes one certificate of the serving generation.
type CertInfo struct {
	Subject, Issuer     string
	SAN                 []string
	NotBefore, NotAfter time.Time
	KeyType             string // "RSA", "EC", "ED25519"
	Fingerprint         string // SHA-256, "AB:CD:..."
	File                string // chain file ("" from memory)
	SNIName             string // "" for the default
	KeyBits, DaysLeft   int
	SelfSigned          bool
	ChainLength         int
}

// Certs inspects the certificates of the serving generation.
func (t *TLS) Certs() ([]CertInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p == 0 {
		return nil, errClosedHandle("TLS.Certs")
	}
	n := capi.Mxgw_tls_cert_count(t.p)
	out := make([]CertInfo, 0, n)
	for i := int64(0); i < n; i++ {
		str := func(k int) string {
			var b []byte
			capi.Mxgw_tls_cert_str(t.p, i, k, &b)
			return string(b)
		}
		num := func(k int) int {
			var v int64
			capi.Mxgw_tls_cert_int(t.p, i, k, &v)
			return int(v)
		}
		c := CertInfo{Subject: str(1), Issuer: str(2), KeyType: str(6), Fingerprint: str(7),
			File: str(8), SNIName: str(9), KeyBits: num(100), DaysLeft: num(101),
			SelfSigned: num(102) != 0, ChainLength: num(103)}
		if san := str(3); san != "" {
			for _, s := range strings.Split(san, ",") {
				c.SAN = append(c.SAN, strings.TrimSpace(s))
			}
		}
		c.NotBefore, _ = time.Parse(time.RFC3339, str(4))
		c.NotAfter, _ = time.Parse(time.RFC3339, str(5))
		out = append(out, c)
	}
	return out, nil
}

// JSON describes the context (certificates, warnings) as JSON.
func (t *TLS) JSON() ([]byte, error) {
	var b []byte
	err := t.do("TLS.JSON", func() int { return capi.Mxgw_tls_json(t.p, &b) })
	return b, err
}

// Close releases the context (configurations using it keep their own
// reference).
func (t *TLS) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p != 0 {
		capi.Mxgw_tls_free(t.p)
		t.p = 0
	}
	runtime.SetFinalizer(t, nil)
	return nil
}

// handle returns the C pointer for attaching to configurations.
func (t *TLS) handle() uintptr {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}
