// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/smtp"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

// The raw pull API, fed by hand.
func TestSessionRaw(t *testing.T) {
	cfg, err := mxgw.NewSessionConfig()
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetString(mxgw.OptHostname, "mx.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetOption(mxgw.OptMaxRecipients, 2); err != nil {
		t.Fatal(err)
	}
	if v, _ := cfg.Option(mxgw.OptMaxRecipients); v != 2 {
		t.Errorf("option %d", v)
	}
	s, err := mxgw.NewSession(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var logs []string
	s.SetLogger(func(k mxgw.LogKind, text string) { logs = append(logs, text) })
	if err := cfg.SetOption(mxgw.OptMaxRecipients, 3); !errors.Is(err, mxgw.ErrBusy) {
		t.Errorf("frozen config: %v", err)
	}
	if err := s.SetPeer("192.0.2.9", 4321, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeer("not an ip", 1, ""); err == nil {
		t.Error("bad peer accepted")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	out := func() string {
		o := s.Output()
		s.Consume(len(o))
		return string(o)
	}
	next := func(want mxgw.Event) {
		t.Helper()
		ev, err := s.NextEvent()
		if err != nil || ev != want {
			t.Fatalf("event %v (%v), want %v", ev, err, want)
		}
	}
	next(mxgw.EventConnect)
	if s.Pending() != mxgw.EventConnect || !mxgw.EventConnect.IsDecision() {
		t.Error("pending")
	}
	s.Accept()
	if g := out(); !strings.HasPrefix(g, "220 mx.example.test") {
		t.Errorf("greeting %q", g)
	}
	if err := s.Accept(); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("accept twice: %v", err)
	}
	in := "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"
	if n, err := s.Feed([]byte(in)); err != nil || n != len(in) {
		t.Fatalf("feed %d %v", n, err)
	}
	next(mxgw.EventHelo)
	if s.String(mxgw.InfoHelo) != "client.example" {
		t.Error("helo")
	}
	if e, _ := s.Int(mxgw.InfoIsEHLO); e != 1 {
		t.Error("is ehlo")
	}
	s.Accept()
	next(mxgw.EventMail)
	if s.String(mxgw.InfoMailFrom) != "a@example.org" {
		t.Error("mail from")
	}
	s.Accept()
	next(mxgw.EventRcpt)
	s.Accept()
	next(mxgw.EventRcpt)
	if s.String(mxgw.InfoRcpt) != "c@example.net" {
		t.Error("rcpt")
	}
	if err := s.Reply(250, "1.2.3", "x"); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad enhanced code: %v", err)
	}
	if err := s.Reply(550, "5.1.1", "no such user"); err != nil {
		t.Fatal(err)
	}
	next(mxgw.EventData)
	s.Accept()
	o := out()
	for _, w := range []string{"250-mx.example.test", "250 2.1.0", "250 2.1.5", "550 5.1.1 no such user", "354 "} {
		if !strings.Contains(o, w) {
			t.Errorf("missing %q in %q", w, o)
		}
	}
	body := "Subject: t\r\n\r\n..dot line\r\nbinary \x00\xff\r\n.\r\n"
	s.Feed([]byte(body))
	var got []byte
	for {
		ev, _ := s.NextEvent()
		if ev == mxgw.EventBody {
			b, _ := s.Bytes(mxgw.InfoData)
			got = append(got, b...)
			continue
		}
		if ev != mxgw.EventMessageEnd {
			t.Fatalf("event %v", ev)
		}
		break
	}
	if string(got) != "Subject: t\r\n\r\n.dot line\r\nbinary \x00\xff\r\n" {
		t.Errorf("body %q", got)
	}
	if n, _ := s.Int(mxgw.InfoRcptCount); n != 1 {
		t.Errorf("rcpt count %d", n)
	}
	if r, err := s.RcptString(0, mxgw.InfoRcpt); err != nil || r != "b@example.net" {
		t.Errorf("rcpt 0 %q %v", r, err)
	}
	if _, err := s.RcptString(5, mxgw.InfoRcpt); !errors.Is(err, mxgw.ErrRange) {
		t.Errorf("rcpt range: %v", err)
	}
	if f, err := s.RcptInt(0, mxgw.InfoNotifyFlags); err != nil || f != 0 {
		t.Errorf("notify %d %v", f, err)
	}
	rh, err := s.ReceivedHeader("ABC123", time.Unix(1700000000, 0))
	if err != nil || !strings.HasPrefix(rh, "Received: from client.example") || !strings.Contains(rh, "id ABC123") ||
		!strings.Contains(rh, "2023") || !strings.HasSuffix(rh, "\r\n") {
		t.Errorf("received %q %v", rh, err)
	}
	s.Reply(250, "", "queued as ABC123")
	if o := out(); !strings.Contains(o, "250 2.0.0 queued as ABC123") {
		t.Errorf("end %q", o)
	}
	if _, err := s.Bytes(mxgw.InfoAuthUser); !errors.Is(err, mxgw.ErrNotFound) {
		t.Errorf("unset item: %v", err)
	}
	if dl, ok := s.Deadline(); !ok || dl.Before(time.Now()) {
		t.Errorf("deadline %v %v", dl, ok)
	}
	if fired, err := s.Tick(); fired || err != nil {
		t.Errorf("tick %v %v", fired, err)
	}
	s.Feed([]byte("QUIT\r\n"))
	next(mxgw.EventClose)
	if o := out(); !strings.HasPrefix(o, "221") {
		t.Errorf("quit %q", o)
	}
	if s.Want()&mxgw.WantClose == 0 {
		t.Error("want close")
	}
	if _, err := s.Feed([]byte("NOOP\r\n")); !errors.Is(err, mxgw.ErrClosed) {
		t.Errorf("feed after close: %v", err)
	}
	joined := strings.Join(logs, "\n")
	if !strings.Contains(joined, "connect from unknown[192.0.2.9]") || !strings.Contains(joined, "disconnect from") {
		t.Errorf("log hook: %q", joined)
	}
	// a logger that panics does not crash anything
	s2, _ := mxgw.NewSession(cfg)
	defer s2.Close()
	s2.SetLogger(func(mxgw.LogKind, string) { panic("boom") })
	s2.SetPeer("192.0.2.1", 0, "")
	s2.Start()
	s2.NextEvent()
	s2.Shutdown("bye")
	s2.SetLogger(nil)
	if o := s2.Output(); !strings.Contains(string(o), "421 4.3.2") {
		t.Errorf("shutdown %q", o)
	}
	s.Close()
	if _, err := s.NextEvent(); err == nil {
		t.Error("closed session")
	}
}

type smtpServer struct {
	ln  net.Listener
	wg  sync.WaitGroup
	mu  sync.Mutex
	got []*mxgw.Envelope
	bod [][]byte
	err []error
}

func startSMTP(t *testing.T, ctx context.Context, cfg *mxgw.SessionConfig, h *mxgw.SessionHandler) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &smtpServer{ln: ln}
	if h.OnMessage == nil {
		h.OnMessage = func(s *mxgw.Session, env *mxgw.Envelope, body []byte) *mxgw.Reply {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			srv.got = append(srv.got, env)
			srv.bod = append(srv.bod, body)
			return nil
		}
	}
	h.OnError = func(err error) { srv.mu.Lock(); srv.err = append(srv.err, err); srv.mu.Unlock() }
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.wg.Add(1)
			go func() { defer srv.wg.Done(); mxgw.Serve(ctx, c, cfg, h) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); srv.wg.Wait() })
	return srv
}

func sendMail(addr, from string, to []string, msg string, tlsConf *tls.Config) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if tlsConf != nil {
		if err := c.StartTLS(tlsConf); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// A real net/smtp client over loopback, with Go policy handlers, a handler
// that panics (451, the server goes on), and STARTTLS run by the library.
func TestServeNetSMTP(t *testing.T) {
	dir := t.TempDir()
	cert := makeCert(t, dir, "srv", true, time.Now().Add(24*time.Hour*60), "mx.example.test")
	tl, _ := mxgw.NewTLS(mxgw.TLSServer)
	defer tl.Close()
	if err := tl.AddCertFiles("", cert.chain, cert.key); err != nil {
		t.Fatal(err)
	}
	if err := tl.Load(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := mxgw.NewSessionConfig()
	defer cfg.Close()
	cfg.SetString(mxgw.OptHostname, "mx.example.test")
	cfg.SetOption(mxgw.OptStartTLS, 1)
	if err := cfg.SetTLS(tl); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &mxgw.SessionHandler{
		OnRcpt: func(s *mxgw.Session, rcpt string) *mxgw.Reply {
			switch {
			case strings.HasPrefix(rcpt, "panic@"):
				panic("policy bug")
			case !strings.HasSuffix(rcpt, "@example.test"):
				return &mxgw.Reply{Code: 554, Enh: "5.7.1", Text: "Relay access denied"}
			}
			return nil
		},
	}
	srv := startSMTP(t, ctx, cfg, h)
	addr := srv.ln.Addr().String()

	msg := "From: a@example.org\r\nSubject: hello\r\n\r\n.leading dot\r\nline two\r\n"
	if err := sendMail(addr, "a@example.org", []string{"alice@example.test", "bob@example.test"}, msg, nil); err != nil {
		t.Fatal(err)
	}
	err := sendMail(addr, "a@example.org", []string{"x@elsewhere.example"}, msg, nil)
	if err == nil || !strings.Contains(err.Error(), "554") || !strings.Contains(err.Error(), "Relay access denied") {
		t.Errorf("relay: %v", err)
	}
	err = sendMail(addr, "a@example.org", []string{"panic@example.test"}, msg, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Errorf("panicking handler: %v", err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert.chain)
	pool.AppendCertsFromPEM(pem)
	if err := sendMail(addr, "tls@example.org", []string{"carol@example.test"}, msg,
		&tls.Config{ServerName: "mx.example.test", RootCAs: pool}); err != nil {
		t.Fatalf("starttls: %v", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.got) != 2 {
		t.Fatalf("messages %d", len(srv.got))
	}
	e := srv.got[0]
	if e.MailFrom != "a@example.org" || len(e.Rcpts) != 2 || e.Rcpts[1] != "bob@example.test" || e.Helo != "client.example" || e.TLS ||
		!strings.HasPrefix(e.Received, "Received: from client.example") {
		t.Errorf("envelope %+v", e)
	}
	if string(srv.bod[0]) != msg {
		t.Errorf("body %q", srv.bod[0])
	}
	if !srv.got[1].TLS || !strings.Contains(srv.got[1].Received, "SMTPS") {
		t.Errorf("tls envelope %+v", srv.got[1])
	}
	var pe *mxgw.PanicError
	if len(srv.err) != 1 || !errors.As(srv.err[0], &pe) || pe.Stage != mxgw.EventRcpt {
		t.Errorf("OnError: %v", srv.err)
	}
}

// STARTTLS offered without a TLS context: Serve refuses it with 454.
func TestServeStartTLSWithoutContext(t *testing.T) {
	cfg, _ := mxgw.NewSessionConfig()
	defer cfg.Close()
	cfg.SetOption(mxgw.OptStartTLS, 1)
	srv := startSMTP(t, context.Background(), cfg, &mxgw.SessionHandler{})
	c, err := smtp.Dial(srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.StartTLS(&tls.Config{InsecureSkipVerify: true})
	if err == nil || !strings.Contains(err.Error(), "454") {
		t.Errorf("starttls: %v", err)
	}
	if err := c.Noop(); err != nil {
		t.Errorf("session unusable after 454: %v", err)
	}
}

// Cancelling ctx closes idle sessions with 421.
func TestServeContextShutdown(t *testing.T) {
	cfg, _ := mxgw.NewSessionConfig()
	defer cfg.Close()
	ctx, cancel := context.WithCancel(context.Background())
	srv := startSMTP(t, ctx, cfg, &mxgw.SessionHandler{})
	c, err := net.Dial("tcp", srv.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 512)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "220 ") {
		t.Fatalf("greeting %q", buf[:n])
	}
	cancel()
	n, _ = c.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "421 4.3.2") {
		t.Errorf("after cancel %q", buf[:n])
	}
}
