// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"context"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The example gateway delivers a real message through Dovecot LMTP
// (bindings/go/testdata/with_dovecot.py provides it under ctest).
func TestGatewayDeliversToDovecot(t *testing.T) {
	backend, mail := os.Getenv("MXGW_TEST_LMTP"), os.Getenv("MXGW_TEST_LMTP_MAIL")
	if backend == "" {
		if os.Getenv("MXGW_GO_REQUIRE_FIXTURES") != "" {
			t.Fatal("MXGW_TEST_LMTP not set")
		}
		t.Skip("MXGW_TEST_LMTP not set: run under with_dovecot.py")
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users.txt")
	os.WriteFile(users, []byte("# recipients\nbob@example.test\n"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan int, 1)
	var logBuf syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, options{listen: "127.0.0.1:0", hostname: "mx.example.test", spool: filepath.Join(dir, "spool"),
			users: users, domains: listFlag{"example.test"}, backends: listFlag{backend}, noSync: true,
			ready: func(p int) { ready <- p }}, &logBuf)
	}()
	var port int
	select {
	case port = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pattern := filepath.Join(mail, "example.test", "bob", "Maildir", "new", "*")
	before, _ := filepath.Glob(pattern)
	msg := "From: sender@example.org\r\nTo: bob@example.test\r\nSubject: go gateway example\r\n\r\nbody\r\n"
	if err := smtp.SendMail(addr, nil, "sender@example.org", []string{"bob@example.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := smtp.SendMail(addr, nil, "sender@example.org", []string{"alice@example.test"}, []byte(msg)); err == nil ||
		!strings.Contains(err.Error(), "No such user here") {
		t.Errorf("unknown recipient: %v", err)
	}
	var files []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if files, _ = filepath.Glob(pattern); len(files) > len(before) {
			break
		}
	}
	if len(files) != len(before)+1 {
		t.Fatalf("not delivered; log:\n%s", logBuf.String())
	}
	// the one file that was not there before (Dovecot's names do not sort
	// by arrival)
	var fresh string
	for _, f := range files {
		if !contains(before, f) {
			fresh = f
		}
	}
	stored, _ := os.ReadFile(fresh)
	if !strings.Contains(string(stored), "Subject: go gateway example") {
		t.Errorf("stored %q", stored)
	}
	// the table is re-read when it changes
	time.Sleep(1100 * time.Millisecond)
	os.WriteFile(users, []byte("bob@example.test\nalice@example.test\n"), 0o644)
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(users, future, future)
	time.Sleep(1100 * time.Millisecond)
	if err := smtp.SendMail(addr, nil, "sender@example.org", []string{"alice@example.test"}, []byte(msg)); err != nil {
		t.Errorf("after reload: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no drain")
	}
	if l := logBuf.String(); !strings.Contains(l, "status=sent") || !strings.Contains(l, "gateway stopped") {
		t.Errorf("log:\n%s", l)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
