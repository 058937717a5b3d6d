// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"libmxgw.org/mxgw"
	"libmxgw.org/mxgw/internal/capi"
)

// The Go constants mirror the C enums: a renumbering in a header would
// show here (the C values come through the SWIG layer).
func TestConstantsMatchC(t *testing.T) {
	checks := []struct {
		name   string
		goVal  int
		cNamed string
	}{
		{"CodeNoSpace", int(mxgw.CodeNoSpace), capi.Mxgw_errname(-18)},
		{"CodeFatal", int(mxgw.CodeFatal), capi.Mxgw_errname(-900)},
	}
	for _, c := range checks {
		if mxgw.Code(c.goVal).String() != c.cNamed {
			t.Errorf("%s: %s vs %s", c.name, mxgw.Code(c.goVal), c.cNamed)
		}
	}
	for code := mxgw.Code(0); code >= -18; code-- {
		if strings.HasSuffix(code.String(), "UNKNOWN") || code.Description() == "unknown error" {
			t.Errorf("code %d unknown to the library", code)
		}
	}
	if mxgw.QueueDeferred.String() != "deferred" || mxgw.QueueState(0).String() != "removed" {
		t.Error("queue state names")
	}
	if mxgw.SPFPermerror.String() != "permerror" || mxgw.EventMessageEnd.String() != "message-end" ||
		mxgw.StageRcpt.String() != "rcpt" || mxgw.Event(99).String() != "unknown" {
		t.Error("names")
	}
	if capi.Capi_noop(42) != 42 {
		t.Error("noop")
	}
}

// STARTTLS run by the application (no TLS context), EOF and Abort.
func TestSessionStartTLSDoneEOFAbort(t *testing.T) {
	cfg, _ := mxgw.NewSessionConfig()
	defer cfg.Close()
	cfg.SetOption(mxgw.OptStartTLS, 1)
	if err := cfg.SetTLS(nil); err != nil {
		t.Fatal(err)
	}
	s, _ := mxgw.NewSession(cfg)
	defer s.Close()
	s.SetPeer("2001:db8::1", 1234, "client.example")
	s.Start()
	s.NextEvent()
	s.Accept()
	s.Feed([]byte("EHLO x\r\nSTARTTLS\r\n"))
	ev, _ := s.NextEvent()
	s.Accept()
	ev, _ = s.NextEvent()
	if ev != mxgw.EventStartTLS {
		t.Fatalf("event %v (%q)", ev, s.Output())
	}
	if err := s.StartTLSDone("TLSv1.3", "TLS_AES_256_GCM_SHA384"); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("before accept: %v", err)
	}
	s.Accept()
	if err := s.StartTLSDone("TLSv1.3", "TLS_AES_256_GCM_SHA384"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Int(mxgw.InfoTLS); v != 1 || s.String(mxgw.InfoTLSProtocol) != "TLSv1.3" ||
		s.String(mxgw.InfoPeerHost) != "client.example" || s.String(mxgw.InfoPeerAddr) != "2001:db8::1" {
		t.Errorf("tls info %d %q", v, s.String(mxgw.InfoTLSProtocol))
	}
	s.Feed([]byte("EHLO x\r\nMAIL FROM:<a@b.example>\r\n"))
	for ev, _ := s.NextEvent(); ev != mxgw.EventNone; ev, _ = s.NextEvent() {
		s.Accept()
	}
	if err := s.EOF(); err != nil {
		t.Fatal(err)
	}
	var evs []mxgw.Event
	for ev, _ := s.NextEvent(); ev != mxgw.EventNone; ev, _ = s.NextEvent() {
		evs = append(evs, ev)
	}
	if len(evs) == 0 || evs[len(evs)-1] != mxgw.EventClose {
		t.Errorf("after EOF: %v", evs)
	}
	s2, _ := mxgw.NewSession(cfg)
	defer s2.Close()
	s2.SetPeer("192.0.2.1", 0, "")
	if err := s2.Abort(); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("abort before start: %v", err)
	}
	s2.Start()
	s2.NextEvent()
	s2.Accept()
	if err := s2.Abort(); err != nil {
		t.Fatal(err)
	}
	if ev, _ := s2.NextEvent(); ev != mxgw.EventClose {
		t.Errorf("after abort: %v", ev)
	}
}

func TestTLSOptionsAndLMTPConfig(t *testing.T) {
	cl, _ := mxgw.NewTLS(mxgw.TLSClient)
	defer cl.Close()
	for _, o := range []struct {
		k mxgw.TLSOption
		v int64
	}{{mxgw.TLSOptMinVersion, 13}, {mxgw.TLSOptMaxVersion, 13}, {mxgw.TLSOptVerifyPeer, 0},
		{mxgw.TLSOptExpiryWarnDays, 10}, {mxgw.TLSOptReloadIntervalMS, 1000}} {
		if err := cl.SetOption(o.k, o.v); err != nil {
			t.Errorf("%d: %v", o.k, err)
		}
	}
	if err := cl.SetString(mxgw.TLSOptCiphersuites, "TLS_AES_256_GCM_SHA384"); err != nil {
		t.Error(err)
	}
	if err := cl.Load(); err != nil {
		t.Fatal(err)
	}
	lc, _ := mxgw.NewLMTPConfig()
	defer lc.Close()
	if err := lc.SetTLS(cl); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetOption(mxgw.LMTPOptStartTLS, 1); err != nil {
		t.Fatal(err)
	}
	if err := lc.SetOption(mxgw.LMTPOptChunkSize, 1); !errors.Is(err, mxgw.ErrRange) {
		t.Errorf("chunk size: %v", err)
	}
	if err := lc.SetString(mxgw.LMTPOptLHLOName, "bad\r\nname"); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("lhlo: %v", err)
	}
	c, err := mxgw.NewLMTPClient(lc, "unix:/nonexistent/lmtp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Deliver(context.Background(), &mxgw.LMTPMessage{From: "a@x.example", Size: 10, EightBit: true,
		EnvID: "e1", Rcpts: []mxgw.LMTPRcpt{{Addr: "b@y.example", Notify: 2 | 4, ORcpt: "rfc822;b@y.example"}}},
		strings.NewReader("x\r\n"))
	if err != nil || len(res) != 1 || res[0].Code != 451 || !res[0].Local || res[0].Stage != mxgw.LMTPStageConnect {
		t.Errorf("unix socket missing: %+v %v", res, err)
	}
	if err := lc.SetOption(mxgw.LMTPOptPipelining, 0); !errors.Is(err, mxgw.ErrBusy) {
		t.Errorf("frozen: %v", err)
	}
	r, _ := mxgw.NewStaticResolver()
	if r.Pending() != 0 {
		t.Error("pending")
	}
	r.Close()
	if err := r.AddRecord("x.example", mxgw.DNSTypeA, 1, "192.0.2.1"); err == nil {
		t.Error("closed resolver")
	}
}

// Server lifecycle: drain from another goroutine, reload with a new
// configuration (new policy for new sessions), Stop, Stat, options.
func TestServerReloadDrain(t *testing.T) {
	mk := func(reply string) *mxgw.ServerConfig {
		cfg, _ := mxgw.NewServerConfig()
		cfg.SetString(int(mxgw.OptHostname), "mx.example.test")
		cfg.SetString(int(mxgw.SrvOptSpoolDir), spool)
		cfg.SetOption(mxgw.SrvOptDeliver, 0)
		cfg.SetOption(mxgw.SrvOptQueueSync, 0)
		cfg.SetSessionOption(mxgw.OptSMTPUTF8, 0)
		idx, _ := cfg.AddListener("127.0.0.1", 0, mxgw.ListenSMTP)
		if err := cfg.SetListenerOption(idx, mxgw.ListenerTLS, 0); err != nil {
			t.Fatal(err)
		}
		if err := cfg.SetListenerOption(idx, mxgw.ListenerTLS, 9); !errors.Is(err, mxgw.ErrRange) {
			t.Errorf("listener option range: %v", err)
		}
		if err := cfg.SetDeliverOption(999999, 1); !errors.Is(err, mxgw.ErrInvalid) {
			t.Errorf("deliver option: %v", err)
		}
		if err := cfg.SetDeliverString(999999, "x"); !errors.Is(err, mxgw.ErrInvalid) {
			t.Errorf("deliver string option: %v", err)
		}
		if err := cfg.SetDeliverTLS(nil); err != nil {
			t.Errorf("deliver tls: %v", err)
		}
		cfg.SetPolicy(mxgw.StageHelo, func(r *mxgw.PolicyRequest) *mxgw.Reply {
			if r.Stage != mxgw.StageHelo || r.ClientHost() != "unknown" || r.TLS() || r.SessionID() <= 0 {
				return &mxgw.Reply{Code: 550, Text: "bad request fields"}
			}
			return &mxgw.Reply{Code: 250, Text: reply}
		})
		return cfg
	}
	spool = t.TempDir()
	cfg1 := mk("first config")
	defer cfg1.Close()
	if v, err := cfg1.Option(int(mxgw.SrvOptPolicyWorkers)); err != nil || v != 4 {
		t.Errorf("default policy workers %d %v", v, err)
	}
	srv, err := mxgw.NewServer(cfg1)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("second start: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", srv.Ports()[0])
	var wg sync.WaitGroup
	wg.Add(1)
	var runErr error
	go func() { defer wg.Done(); runErr = srv.Run(context.Background(), 1) }()
	hello := func() string {
		c, err := dialSMTP(addr)
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		return c.ehlo
	}
	if h := hello(); !strings.Contains(h, "first config") {
		t.Errorf("first: %q", h)
	}
	if err := srv.Reload(nil); err != nil {
		t.Errorf("reload certificates: %v", err)
	}
	cfg2 := mk("second config")
	if err := srv.Reload(cfg2); err != nil {
		t.Fatalf("reload: %v", err)
	}
	cfg2.Close() // the server keeps it (and its Go callbacks) alive
	if h := hello(); !strings.Contains(h, "second config") {
		t.Errorf("after reload: %q", h)
	}
	if n, _ := srv.Stat(mxgw.SrvStatReloads); n < 1 {
		t.Errorf("reloads %d", n)
	}
	srv.Drain(2 * time.Second)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Drain")
	}
	if runErr != nil {
		t.Error(runErr)
	}
	srv.Stop() // after the end: harmless
	if err := srv.Close(); err != nil {
		t.Error(err)
	}
	if _, err := srv.Stat(mxgw.SrvStatConnections); err == nil {
		t.Error("stat after close")
	}
}

var spool string

type smtpConn struct {
	c    interface{ Close() error }
	ehlo string
}

func (s *smtpConn) Close() error { return s.c.Close() }

// dialSMTP reads the greeting and the EHLO reply.
func dialSMTP(addr string) (*smtpConn, error) {
	c, err := netDial(addr)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "220") {
		c.Close()
		return nil, fmt.Errorf("greeting %q", buf[:n])
	}
	c.Write([]byte("EHLO client.example\r\n"))
	n, _ = c.Read(buf)
	return &smtpConn{c: c, ehlo: string(buf[:n])}, nil
}

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
