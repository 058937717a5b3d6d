// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

// needEnv returns an environment variable set by a fixture wrapper
// (dns_fixture.py, with_dovecot.py). Under ctest MXGW_GO_REQUIRE_FIXTURES
// is set, so a missing fixture fails instead of skipping.
func needEnv(t testing.TB, name string) string {
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("MXGW_GO_REQUIRE_FIXTURES") != "" {
			t.Fatalf("%s not set (fixture missing)", name)
		}
		t.Skipf("%s not set: run under the fixture wrapper", name)
	}
	return v
}

const exampleZone = `
$ORIGIN example.org.
@        TXT "v=spf1 ip4:192.0.2.0/24 include:_spf.example.net -all"
news     TXT "v=spf1 a:mail.example.org ~all"
mail     A   198.51.100.7
broken   TXT "v=spf1 ip4:1.2.3.4/99 -all"
`

func newZoneSPF(t testing.TB) (*mxgw.Resolver, *mxgw.SPF) {
	r, err := mxgw.NewStaticResolver()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadZone(exampleZone, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRecord("_spf.example.net", mxgw.DNSTypeTXT, 300, "v=spf1 ip4:203.0.113.0/24 -all"); err != nil {
		t.Fatal(err)
	}
	s, err := mxgw.NewSPF(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetReceiver("mx.example.test"); err != nil {
		t.Fatal(err)
	}
	return r, s
}

func TestSPFStaticZone(t *testing.T) {
	r, s := newZoneSPF(t)
	defer r.Close()
	defer s.Close()
	ctx := context.Background()

	res, err := s.Check(ctx, mxgw.SPFRequest{IP: "203.0.113.9", Helo: "mx.sender.example",
		MailFrom: "alice@example.org", AuthServID: "mx.example.test", WithJSON: true,
		WithTrace: true, WithHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != mxgw.SPFPass || res.Result.String() != "pass" {
		t.Fatalf("result %v", res.Result)
	}
	if res.Mechanism != "include:_spf.example.net" || res.Domain != "example.org" {
		t.Errorf("mechanism %q domain %q", res.Mechanism, res.Domain)
	}
	if !strings.HasPrefix(res.ReceivedSPF, "Received-SPF: pass") || !strings.HasSuffix(res.ReceivedSPF, "\r\n") ||
		!strings.Contains(res.ReceivedSPF, "client-ip=203.0.113.9") || !strings.Contains(res.ReceivedSPF, "receiver=mx.example.test") {
		t.Errorf("Received-SPF %q", res.ReceivedSPF)
	}
	if !strings.HasPrefix(res.AuthResults, "Authentication-Results: mx.example.test;") ||
		!strings.Contains(res.AuthResults, "spf=pass (") || !strings.Contains(res.AuthResults, "smtp.mailfrom=alice@example.org") {
		t.Errorf("Authentication-Results %q", res.AuthResults)
	}
	if res.DNSTerms != 1 || res.DNSQueries < 2 {
		t.Errorf("counters: terms %d queries %d", res.DNSTerms, res.DNSQueries)
	}
	var kinds []string
	matched := false
	for _, e := range res.Trace {
		kinds = append(kinds, e.Kind)
		if e.Kind == "term" && e.Depth == 1 && strings.Contains(e.Text, "ip4:203.0.113.0/24") && strings.Contains(e.Text, "match") {
			matched = true
		}
	}
	if !matched {
		t.Errorf("trace does not show the matching term inside the include: %+v", res.Trace)
	}
	var js map[string]any
	if err := json.Unmarshal(res.JSON, &js); err != nil || js["result"] != "pass" {
		t.Errorf("json %s (%v)", res.JSON, err)
	}
	if res.ReplyCode != 0 {
		t.Errorf("pass must be accepted, got %d", res.ReplyCode)
	}

	// fail: explanation, policy reply 550 5.7.23
	res, err = s.Check(ctx, mxgw.SPFRequest{IP: "198.51.100.1", Helo: "h.example", MailFrom: "bob@example.org", WithHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != mxgw.SPFFail || res.Mechanism != "-all" || res.ReplyCode != 550 || res.ReplyEnh != "5.7.23" ||
		!strings.Contains(res.Explanation, "example.org does not designate 198.51.100.1") || res.ReplyText != res.Explanation {
		t.Errorf("fail: %+v", res)
	}
	if !strings.HasPrefix(res.AuthResults, "spf=fail (") || !strings.HasSuffix(res.AuthResults, "smtp.mailfrom=bob@example.org") {
		t.Errorf("resinfo %q", res.AuthResults)
	}

	// softfail through a:, HELO identity none, permerror with and without reject
	res, _ = s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.200", MailFrom: "x@news.example.org", Helo: "h"})
	if res.Result != mxgw.SPFSoftfail {
		t.Errorf("softfail: %v", res.Result)
	}
	res, _ = s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "unknown.example", Identity: mxgw.SPFHelo})
	if res.Result != mxgw.SPFNone || res.Identity != "helo" || res.Sender != "postmaster@unknown.example" {
		t.Errorf("helo: %+v", res)
	}
	res, _ = s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h", MailFrom: "a@broken.example.org", PermerrorReject: true})
	if res.Result != mxgw.SPFPermerror || res.Problem == "" || res.ReplyCode != 550 || res.ReplyEnh != "5.7.24" {
		t.Errorf("permerror: %+v", res)
	}

	// temperror from a failing record
	if err := r.AddFailure("tmp.example.org", mxgw.DNSTypeTXT, mxgw.DNSServFail); err != nil {
		t.Fatal(err)
	}
	res, _ = s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h", MailFrom: "a@tmp.example.org"})
	if res.Result != mxgw.SPFTemperror || res.ReplyCode != 451 || res.ReplyEnh != "4.7.24" {
		t.Errorf("temperror: %+v", res)
	}

	// options
	if err := s.SetOption(mxgw.SPFOptTrace, 0); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Option(mxgw.SPFOptTrace); err != nil || v != 0 {
		t.Errorf("option %d %v", v, err)
	}
	res, _ = s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h", MailFrom: "a@example.org", WithTrace: true})
	if res.Result != mxgw.SPFPass || len(res.Trace) != 0 {
		t.Errorf("no trace: %v %d", res.Result, len(res.Trace))
	}
	res, _ = s.Check(ctx, mxgw.SPFRequest{IP: "198.51.100.1", Helo: "h", MailFrom: "a@example.org"})
	if res.Result != mxgw.SPFFail || res.Mechanism != "-all" || res.ReplyCode != 550 || res.ReceivedSPF != "" || res.JSON != nil {
		t.Errorf("default (no trace, headers, json): %+v", res)
	}
	if v, err := s.Option(mxgw.SPFOptMaxDNSTerms); err != nil || v != 10 {
		t.Errorf("default max terms %d %v", v, err)
	}
}

func TestSPFErrors(t *testing.T) {
	r, s := newZoneSPF(t)
	defer r.Close()
	ctx := context.Background()

	_, err := s.Check(ctx, mxgw.SPFRequest{IP: "not-an-ip", Helo: "h", MailFrom: "a@example.org"})
	var me *mxgw.Error
	if !errors.As(err, &me) || me.Code != mxgw.CodeInvalid || !errors.Is(err, mxgw.ErrInvalid) || errors.Is(err, mxgw.ErrNoMem) {
		t.Fatalf("bad ip: %v", err)
	}
	if !strings.Contains(err.Error(), "MXGW_E_INVAL") {
		t.Errorf("message %q", err)
	}
	if err := s.SetOption(mxgw.SPFOptMaxDNSTerms, 100000); !errors.Is(err, mxgw.ErrRange) {
		t.Errorf("range: %v", err)
	}
	if err := s.SetOption(999, 1); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("unknown key: %v", err)
	}
	if err := s.SetReceiver("bad name with spaces"); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("receiver: %v", err)
	}
	err = r.LoadZone("$ORIGIN x.\n@ TXT \"unterminated\n", "")
	if !errors.Is(err, mxgw.ErrSyntax) || !errors.As(err, &me) || me.Msg == "" {
		t.Errorf("zone syntax: %v", err)
	}
	if err := r.AddRecord("a.example", mxgw.DNSTypeA, 1, "not an address"); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad record: %v", err)
	}
	if err := r.LoadZoneFile("/nonexistent/zone", ""); !errors.Is(err, mxgw.ErrIO) {
		t.Errorf("missing file: %v", err)
	}
	// closed handles give errors, not crashes
	s.Close()
	if _, err := s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h"}); err == nil {
		t.Error("check on a closed SPF")
	}
	s.Close() // twice is fine
	if code, enh, err := mxgw.SPFPolicy(mxgw.SPFFail, false); err != nil || code != 550 || enh != "5.7.23" {
		t.Errorf("policy fail: %d %q %v", code, enh, err)
	}
	if code, enh, err := mxgw.SPFPolicy(mxgw.SPFPass, false); err != nil || code != 0 || enh != "" {
		t.Errorf("policy pass: %d %q %v", code, enh, err)
	}
	if _, _, err := mxgw.SPFPolicy(42, false); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("policy unknown: %v", err)
	}
	if v, n := mxgw.Version(); v == "" || n <= 0 {
		t.Errorf("version %q %x", v, n)
	}
	if mxgw.CodeTimeout.String() != "MXGW_E_TIMEOUT" || mxgw.DNSNXDomain.String() != "NXDOMAIN" {
		t.Error("names")
	}
}

func TestSPFZoneFile(t *testing.T) {
	r, err := mxgw.NewStaticResolver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.LoadZoneFile(filepath.Join(repoRoot(t), "examples/spf/example.zone"), ""); err != nil {
		t.Fatal(err)
	}
	s, _ := mxgw.NewSPF(r)
	defer s.Close()
	res, err := s.Check(context.Background(), mxgw.SPFRequest{IP: "43.207.242.167", Helo: "h", MailFrom: "newsletter@example.org"})
	if err != nil || res.Result.String() == "" {
		t.Fatalf("%v %v", res, err)
	}
	t.Logf("example.zone: %s (%s)", res.Result, res.Mechanism)
}

// Eight goroutines evaluating at once, each with its own evaluator, and
// eight more sharing one (serialized by the handle's mutex).
func TestSPFConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	_, shared := newZoneSPF(t)
	for g := 0; g < 8; g++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r, s := newZoneSPF(t)
			defer r.Close()
			defer s.Close()
			for i := 0; i < 300; i++ {
				res, err := s.Check(context.Background(), mxgw.SPFRequest{IP: "203.0.113.5", Helo: "h", MailFrom: "a@example.org"})
				if err != nil || res.Result != mxgw.SPFPass {
					errs <- errors.New("own evaluator: wrong result")
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				res, err := shared.Check(context.Background(), mxgw.SPFRequest{IP: "198.51.100.1", Helo: "h", MailFrom: "a@example.org"})
				if err != nil || res.Result != mxgw.SPFFail {
					errs <- errors.New("shared evaluator: wrong result")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// c-ares against NSD on loopback (tests/dns/dns_fixture.py).
func TestSPFAres(t *testing.T) {
	server := needEnv(t, "MXGW_TEST_DNS")
	r, err := mxgw.NewAresResolver(mxgw.AresOptions{Servers: []string{server}, Timeout: 500 * time.Millisecond, Tries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, _ := mxgw.NewSPF(r)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		from string
		want mxgw.SPFResult
	}{{"a@pass.spf.test", mxgw.SPFPass}, {"a@softfail.spf.test", mxgw.SPFSoftfail},
		{"a@include.spf.test", mxgw.SPFPass}, {"a@nospf.spf.test", mxgw.SPFNone}} {
		ip := "192.0.2.1"
		switch c.from {
		case "a@include.spf.test":
			ip = "192.0.2.77"
		case "a@softfail.spf.test":
			ip = "192.0.2.2"
		}
		res, err := s.Check(ctx, mxgw.SPFRequest{IP: ip, Helo: "h.example", MailFrom: c.from})
		if err != nil {
			t.Fatal(err)
		}
		if res.Result != c.want {
			t.Errorf("%s: %s, want %s (%s)", c.from, res.Result, c.want, res.Problem)
		}
	}
	if _, err := mxgw.NewAresResolver(mxgw.AresOptions{Servers: []string{"not an address"}}); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad server: %v", err)
	}
}

// A DNS server that never answers: the context deadline ends the check.
func TestSPFContextCancel(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r, err := mxgw.NewAresResolver(mxgw.AresOptions{Servers: []string{pc.LocalAddr().String()},
		Timeout: 5 * time.Second, Tries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, _ := mxgw.NewSPF(r)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err = s.Check(ctx, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h", MailFrom: "a@silent.example"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// an already cancelled context does not start anything
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := s.Check(ctx2, mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h", MailFrom: "a@x.example"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// the library's own limit gives temperror, not an error
	if err := s.SetOption(mxgw.SPFOptTimeoutMS, 150); err != nil {
		t.Fatal(err)
	}
	res, err := s.Check(context.Background(), mxgw.SPFRequest{IP: "192.0.2.1", Helo: "h", MailFrom: "a@silent2.example"})
	if err != nil || res.Result != mxgw.SPFTemperror {
		t.Errorf("library timeout: %v %v", res, err)
	}
}
