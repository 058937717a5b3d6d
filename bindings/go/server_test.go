// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

// A gateway run from Go: Go policy callbacks (one of them panics), a real
// net/smtp client, and delivery through the private Dovecot over LMTP.
func TestServerGatewayDovecot(t *testing.T) {
	backend := needEnv(t, "MXGW_TEST_LMTP")
	cfg, err := mxgw.NewServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cfg.SetString(int(mxgw.OptHostname), "mx.example.test"))
	must(cfg.SetString(int(mxgw.SrvOptSpoolDir), t.TempDir()))
	must(cfg.SetOption(mxgw.SrvOptQueueSync, 0))
	must(cfg.SetOption(mxgw.SrvOptPolicyWorkers, 2))
	// Go's net/smtp asks for SMTPUTF8 whenever it is offered, and the
	// private Dovecot does not offer it to LMTP clients: the delivery
	// would bounce (553 5.6.7), even for an ASCII-only message.
	must(cfg.SetSessionOption(mxgw.OptSMTPUTF8, 0))
	idx, err := cfg.AddListener("127.0.0.1", 0, mxgw.ListenSMTP)
	must(err)
	if idx != 0 {
		t.Errorf("listener index %d", idx)
	}
	must(cfg.AddDomain("example.test"))
	must(cfg.AddBackend(backend))
	var mu sync.Mutex
	var logs []string
	var errs []error
	must(cfg.SetLogger(func(level mxgw.LogLevel, line string) {
		mu.Lock()
		logs = append(logs, line)
		mu.Unlock()
	}))
	cfg.OnError(func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() })
	var seenMail []string
	must(cfg.SetPolicy(mxgw.StageMail, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		mu.Lock()
		seenMail = append(seenMail, r.MailFrom()+"|"+r.Helo()+"|"+r.ClientAddr())
		mu.Unlock()
		if strings.HasPrefix(r.MailFrom(), "spammer@") {
			return &mxgw.Reply{Code: 550, Enh: "5.7.1", Text: "Go says no"}
		}
		return nil
	}))
	// the recipient policy is a Go function (a map here; a database in
	// examples/go/gateway)
	users := map[string]bool{"alice@example.test": true, "bob@example.test": true}
	must(cfg.SetPolicy(mxgw.StageRcpt, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		if strings.HasPrefix(r.Rcpt(), "panic@") {
			panic("rcpt policy bug")
		}
		if !users[strings.ToLower(r.Rcpt())] {
			return &mxgw.Reply{Code: 550, Enh: "5.1.1", Text: "no such user here"}
		}
		return nil
	}))
	var ended []string
	must(cfg.SetPolicy(mxgw.StageMessageEnd, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		mu.Lock()
		ended = append(ended, fmt.Sprintf("%s %v %d", r.QueueID(), r.Rcpts(), r.Size()))
		mu.Unlock()
		return nil
	}))
	if err := cfg.SetPolicy(99, nil); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad stage: %v", err)
	}

	srv, err := mxgw.NewServer(cfg)
	must(err)
	defer srv.Close()
	if err := cfg.AddDomain("late.example"); !errors.Is(err, mxgw.ErrBusy) {
		t.Errorf("frozen config: %v", err)
	}
	must(srv.Start())
	ports := srv.Ports()
	if len(ports) != 1 || ports[0] <= 0 {
		t.Fatalf("ports %v", ports)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx, 1) }()
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])

	before := maildirFiles(t, "alice", 0)
	msg := "From: go@example.org\r\nTo: alice@example.test\r\nSubject: through the Go gateway\r\n\r\nhello from Go\r\n"
	must(sendMail(addr, "go@example.org", []string{"alice@example.test"}, msg, nil))
	if err := sendMail(addr, "go@example.org", []string{"nobody@example.test"}, msg, nil); err == nil ||
		!strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("unknown user: %v", err)
	}
	if err := sendMail(addr, "spammer@example.org", []string{"alice@example.test"}, msg, nil); err == nil ||
		!strings.Contains(err.Error(), "Go says no") {
		t.Errorf("mail policy: %v", err)
	}
	if err := sendMail(addr, "go@example.org", []string{"panic@example.test"}, msg, nil); err == nil ||
		!strings.HasPrefix(err.Error(), "451") {
		t.Errorf("panicking policy: %v", err)
	}
	if err := sendMail(addr, "go@example.org", []string{"x@other.example"}, msg, nil); err == nil ||
		!strings.Contains(err.Error(), "Relay access denied") {
		t.Errorf("relay: %v", err)
	}
	files := newMaildirFiles(t, "alice", before, 1)
	if len(files) != 1 {
		t.Fatalf("%d new files in alice's Maildir (logs: %q)", len(files), logs)
	}
	stored, _ := os.ReadFile(files[0])
	if !strings.Contains(string(stored), "Subject: through the Go gateway") ||
		!strings.Contains(string(stored), "by mx.example.test") {
		t.Errorf("stored message %q", stored)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, _ := srv.Stat(mxgw.SrvStatDelivered)
		if d >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, _ := srv.Stat(mxgw.SrvStatMessages); n != 1 {
		t.Errorf("messages %d", n)
	}
	if n, _ := srv.Stat(mxgw.SrvStatPolicyCalls); n < 5 {
		t.Errorf("policy calls %d", n)
	}
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	var pe *mxgw.PanicError
	if len(errs) != 1 || !errors.As(errs[0], &pe) || mxgw.Stage(pe.Stage) != mxgw.StageRcpt {
		t.Errorf("OnError: %v", errs)
	}
	if len(ended) != 1 || !strings.Contains(ended[0], "alice@example.test") {
		t.Errorf("message-end policy: %q", ended)
	}
	if len(seenMail) < 3 || !strings.HasPrefix(seenMail[0], "go@example.org|client.example|127.0.0.1") {
		t.Errorf("mail policy saw %q", seenMail)
	}
	joined := strings.Join(logs, "\n")
	for _, w := range []string{"connect from", "status=sent"} {
		if !strings.Contains(joined, w) {
			t.Errorf("log lacks %q:\n%s", w, joined)
		}
	}
}

func TestServerConfigErrors(t *testing.T) {
	cfg, _ := mxgw.NewServerConfig()
	defer cfg.Close()
	if _, err := cfg.AddListener("not-an-address", 25, mxgw.ListenSMTP); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad address: %v", err)
	}
	if err := cfg.SetOption(9999, 1); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad key: %v", err)
	}
	// no listener, no spool: NewServer says why
	_, err := mxgw.NewServer(cfg)
	var me *mxgw.Error
	if !errors.As(err, &me) || me.Code != mxgw.CodeInvalid || me.Msg == "" {
		t.Errorf("invalid config: %v", err)
	}
}

// Many clients at once through the server: Go policy callbacks run on
// several library worker threads concurrently; SPF at MAIL FROM against
// NSD on loopback, its result visible to the Go callback.
func TestServerConcurrentPoliciesSPF(t *testing.T) {
	dns := needEnv(t, "MXGW_TEST_DNS")
	cfg, _ := mxgw.NewServerConfig()
	defer cfg.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cfg.SetString(int(mxgw.SrvOptSpoolDir), t.TempDir()))
	must(cfg.SetOption(mxgw.SrvOptDeliver, 0))
	must(cfg.SetOption(mxgw.SrvOptQueueSync, 0))
	must(cfg.SetOption(mxgw.SrvOptPolicyWorkers, 4))
	must(cfg.SetOption(mxgw.SrvOptSPF, 1))
	must(cfg.SetOption(mxgw.SrvOptMaxConnPerIP, 0))
	must(cfg.SetString(int(mxgw.SrvOptDNSServers), dns))
	must(cfg.SetSessionOption(mxgw.OptSMTPUTF8, 0))
	_, err := cfg.AddListener("127.0.0.1", 0, mxgw.ListenSMTP)
	must(err)
	var mu sync.Mutex
	spfSeen := map[string]int{}
	inFlight, maxInFlight := 0, 0
	must(cfg.SetPolicy(mxgw.StageMail, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		mu.Lock()
		spfSeen[r.SPFResult()]++
		mu.Unlock()
		return nil
	}))
	must(cfg.SetPolicy(mxgw.StageRcpt, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		mu.Lock()
		inFlight++
		if inFlight > maxInFlight {
			maxInFlight = inFlight
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // a slow lookup: others go on
		mu.Lock()
		inFlight--
		mu.Unlock()
		if strings.HasPrefix(r.Rcpt(), "no") {
			return &mxgw.Reply{Code: 550, Enh: "5.1.1", Text: "nope"}
		}
		return nil
	}))
	srv, err := mxgw.NewServer(cfg)
	must(err)
	defer srv.Close()
	must(srv.Start())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, 2) }()
	addr := fmt.Sprintf("127.0.0.1:%d", srv.Ports()[0])
	var wg sync.WaitGroup
	var failures []string
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				msg := fmt.Sprintf("Subject: %d/%d\r\n\r\nx\r\n", g, i)
				// pass.spf.test authorizes 192.0.2.1, not 127.0.0.1: fail
				// (rejected by the default action); nospf: none (accepted)
				if err := sendMail(addr, "a@nospf.spf.test", []string{fmt.Sprintf("u%d@example.test", g)}, msg, nil); err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			}
		}(g)
	}
	wg.Wait()
	err = sendMail(addr, "a@pass.spf.test", []string{"u@example.test"}, "Subject: x\r\n\r\nx\r\n", nil)
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.7.23") {
		t.Errorf("SPF fail not rejected: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 0 {
		t.Errorf("failures: %q", failures)
	}
	if n, _ := srv.Stat(mxgw.SrvStatMessages); n != 40 {
		t.Errorf("messages %d", n)
	}
	if spfSeen["none"] != 40 {
		t.Errorf("SPF results seen by the Go callback: %v", spfSeen)
	}
	if maxInFlight < 2 {
		t.Errorf("RCPT callbacks never ran concurrently (max %d)", maxInFlight)
	}
	t.Logf("RCPT callbacks in flight at once: up to %d; SPF results seen: %v", maxInFlight, spfSeen)
}
