// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

type testCert struct{ chain, key string }

// makeCert writes a self-signed certificate for names into dir.
func makeCert(t testing.TB, dir, base string, ec bool, notAfter time.Time, names ...string) testCert {
	var pub, priv any
	if ec {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, priv = &k.PublicKey, k
	} else {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		pub, priv = &k.PublicKey, k
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(priv)
	c := testCert{filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")}
	os.WriteFile(c.chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(c.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return c
}

func TestTLSLoadInspect(t *testing.T) {
	dir := t.TempDir()
	rsaC := makeCert(t, dir, "rsa", false, time.Now().Add(90*24*time.Hour), "mx.example.test")
	ecC := makeCert(t, dir, "ec", true, time.Now().Add(10*24*time.Hour), "mx.example.test")
	sni := makeCert(t, dir, "sni", true, time.Now().Add(90*24*time.Hour), "other.example.test")

	tl, err := mxgw.NewTLS(mxgw.TLSServer)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	if err := tl.SetString(mxgw.TLSOptHostname, "mx.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := tl.AddCertFiles("", rsaC.chain, rsaC.key); err != nil {
		t.Fatal(err)
	}
	if err := tl.AddCertFiles("", ecC.chain, ecC.key); err != nil {
		t.Fatal(err)
	}
	chainPEM, _ := os.ReadFile(sni.chain)
	keyPEM, _ := os.ReadFile(sni.key)
	if err := tl.AddCertPEM("other.example.test", chainPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	if g := tl.Generation(); g != 0 {
		t.Errorf("generation before load %d", g)
	}
	if err := tl.Load(); err != nil {
		t.Fatal(err)
	}
	if g := tl.Generation(); g != 1 {
		t.Errorf("generation %d", g)
	}
	certs, err := tl.Certs()
	if err != nil || len(certs) != 3 {
		t.Fatalf("certs %d %v", len(certs), err)
	}
	byType := map[string]mxgw.CertInfo{}
	for _, c := range certs {
		byType[c.KeyType+"/"+c.SNIName] = c
	}
	r := byType["RSA/"]
	if r.Subject != "CN=mx.example.test" || r.KeyBits != 2048 || !r.SelfSigned || r.File != rsaC.chain ||
		len(r.SAN) != 1 || r.SAN[0] != "mx.example.test" || r.DaysLeft < 88 || r.NotAfter.Before(time.Now()) ||
		strings.Count(r.Fingerprint, ":") != 31 {
		t.Errorf("rsa cert %+v", r)
	}
	if e := byType["EC/"]; e.KeyBits != 256 || e.DaysLeft > 10 {
		t.Errorf("ec cert %+v", e)
	}
	if s := byType["EC/other.example.test"]; s.File != "" {
		t.Errorf("sni cert %+v", s)
	}
	// the 10-day certificate is within the 30-day expiry warning
	warned := false
	for _, w := range tl.Warnings() {
		if strings.Contains(w, "expire") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no expiry warning: %q", tl.Warnings())
	}
	js, err := tl.JSON()
	var v any
	if err != nil || json.Unmarshal(js, &v) != nil {
		t.Errorf("json %s %v", js, err)
	}
	// unchanged files: CheckReload has nothing to do; after a rewrite it reloads
	if re, err := tl.CheckReload(); err != nil || re {
		t.Errorf("check reload %v %v", re, err)
	}
	if err := tl.Reload(); err != nil || tl.Generation() != 2 {
		t.Errorf("reload %v gen %d", err, tl.Generation())
	}
}

func TestTLSValidationErrors(t *testing.T) {
	dir := t.TempDir()
	good := makeCert(t, dir, "good", false, time.Now().Add(90*24*time.Hour), "mx.example.test")
	other := makeCert(t, dir, "other", true, time.Now().Add(90*24*time.Hour), "mx.example.test")
	wrongName := makeCert(t, dir, "wrong", true, time.Now().Add(90*24*time.Hour), "localhost")

	tl, _ := mxgw.NewTLS(mxgw.TLSServer)
	defer tl.Close()
	tl.SetString(mxgw.TLSOptHostname, "mx.example.test")
	var me *mxgw.Error

	err := tl.AddCertFiles("", filepath.Join(dir, "missing.pem"), good.key)
	if !errors.Is(err, mxgw.ErrIO) || !errors.As(err, &me) || !strings.Contains(me.Msg, "missing.pem") {
		t.Errorf("missing file: %v", err)
	}
	err = tl.AddCertFiles("", good.chain, other.key)
	if !errors.Is(err, mxgw.ErrTLS) || !strings.Contains(strings.ToLower(err.Error()), "key") {
		t.Errorf("key mismatch: %v", err)
	}
	err = tl.AddCertFiles("", wrongName.chain, wrongName.key)
	if !errors.Is(err, mxgw.ErrTLS) || !strings.Contains(err.Error(), "mx.example.test") {
		t.Errorf("name mismatch: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	if err := tl.AddCertFiles("", garbage, good.key); !errors.Is(err, mxgw.ErrSyntax) {
		t.Errorf("garbage: %v", err)
	}
	os.Chmod(good.key, 0o644)
	if err := tl.AddCertFiles("", good.chain, good.key); !errors.Is(err, mxgw.ErrPerm) {
		t.Errorf("key mode: %v", err)
	}
	if err := tl.Load(); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("load with nothing added: %v", err)
	}
	if err := tl.SetOption(mxgw.TLSOptMinVersion, 99); !errors.Is(err, mxgw.ErrRange) && !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad version: %v", err)
	}
	if _, err := mxgw.NewTLS(7); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad role: %v", err)
	}
	cl, err := mxgw.NewTLS(mxgw.TLSClient)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Load(); err != nil {
		t.Errorf("client load: %v", err)
	}
}
