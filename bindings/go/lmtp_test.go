// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

func maildirFiles(t testing.TB, user string, n int) []string {
	root := needEnv(t, "MXGW_TEST_LMTP_MAIL")
	pat := filepath.Join(root, "example.test", user, "Maildir", "new", "*")
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, _ := filepath.Glob(pat)
		if len(f) >= n || time.Now().After(deadline) {
			return f
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newMaildirFiles waits (up to 10 s) until the user's Maildir/new holds n
// files that are not in before (a listing taken earlier) and returns those.
// Other tests deliver to the same Maildirs, and Dovecot's file names do not
// sort by arrival, so "the last name" is not "the new message".
func newMaildirFiles(t testing.TB, user string, before []string, n int) []string {
	old := make(map[string]bool, len(before))
	for _, f := range before {
		old[f] = true
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var fresh []string
		for _, f := range maildirFiles(t, user, 0) {
			if !old[f] {
				fresh = append(fresh, f)
			}
		}
		if len(fresh) >= n || time.Now().After(deadline) {
			return fresh
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLMTPDovecot(t *testing.T) {
	target := needEnv(t, "MXGW_TEST_LMTP")
	cfg, err := mxgw.NewLMTPConfig()
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetString(mxgw.LMTPOptLHLOName, "gw.example.test"); err != nil {
		t.Fatal(err)
	}
	cfg.SetOption(mxgw.LMTPOptCommandTimeoutMS, 5000)
	if v, _ := cfg.Option(mxgw.LMTPOptCommandTimeoutMS); v != 5000 {
		t.Errorf("option %d", v)
	}
	c, err := mxgw.NewLMTPClient(cfg, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := maildirFiles(t, "alice", 0)
	body := []byte("From: go@example.org\r\nSubject: from Go\r\n\r\nhello\r\n.dot\r\nbinary \xff\r\n")
	res, err := c.Deliver(context.Background(), &mxgw.LMTPMessage{From: "go@example.org",
		Rcpts:       []mxgw.LMTPRcpt{{Addr: "alice@example.test"}, {Addr: "nobody@example.test"}},
		XClientAddr: "192.0.2.44", XClientHelo: "client.example"}, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].Delivered() || res[0].Stage != mxgw.LMTPStageDelivery || res[0].Addr != "alice@example.test" ||
		res[1].Code != 550 || res[1].Stage != mxgw.LMTPStageRcpt || res[1].Local {
		t.Fatalf("results %+v", res)
	}
	files := newMaildirFiles(t, "alice", before, 1)
	if len(files) != 1 {
		t.Fatalf("maildir: %d new files", len(files))
	}
	stored, _ := os.ReadFile(files[0])
	if !bytes.Contains(stored, []byte("Subject: from Go")) || !bytes.Contains(stored, []byte("\n.dot")) ||
		!bytes.Contains(stored, []byte("binary \xff")) {
		t.Errorf("stored %q", stored)
	}
	info := c.Info()
	if !strings.Contains(info.Greeting, "ready") || info.Extensions&1 == 0 || info.Messages != 1 {
		t.Errorf("info %+v", info)
	}
	// the connection is reused; a file source works too
	p := filepath.Join(t.TempDir(), "m.eml")
	os.WriteFile(p, body, 0o600)
	res, err = c.DeliverFile(&mxgw.LMTPMessage{From: "", Rcpts: []mxgw.LMTPRcpt{{Addr: "bob@example.test"}}}, p)
	if err != nil || len(res) != 1 || !res[0].Delivered() {
		t.Fatalf("second %+v %v", res, err)
	}
	if c.Info().Messages != 2 {
		t.Errorf("connection not reused: %+v", c.Info())
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
	// bad envelope: an error value, nothing sent
	if _, err := c.Deliver(context.Background(), &mxgw.LMTPMessage{From: "a\r\nb@x"}, bytes.NewReader(nil)); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad sender: %v", err)
	}
	if _, err := c.Deliver(context.Background(), &mxgw.LMTPMessage{From: "a@x"}, bytes.NewReader(nil)); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("no recipient: %v", err)
	}
	if _, err := mxgw.NewLMTPClient(cfg, "no target"); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("bad target: %v", err)
	}
}

// Unreachable backend: every recipient gets a local 451, no error.
func TestLMTPRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg, _ := mxgw.NewLMTPConfig()
	defer cfg.Close()
	c, err := mxgw.NewLMTPClient(cfg, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Deliver(context.Background(), &mxgw.LMTPMessage{From: "a@x.example",
		Rcpts: []mxgw.LMTPRcpt{{Addr: "b@y.example"}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil || len(res) != 1 || res[0].Code != 451 || !res[0].Local || res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
}

// A backend that greets and then never answers: ctx ends the delivery.
func TestLMTPContext(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 silent LMTP\r\n"))
			defer c.Close()
		}
	}()
	cfg, _ := mxgw.NewLMTPConfig()
	defer cfg.Close()
	c, _ := mxgw.NewLMTPClient(cfg, ln.Addr().String())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res, err := c.Deliver(ctx, &mxgw.LMTPMessage{From: "a@x.example",
		Rcpts: []mxgw.LMTPRcpt{{Addr: "b@y.example"}}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if !errors.Is(err, context.DeadlineExceeded) || len(res) != 1 || res[0].Code != 451 || res[0].Delivered() {
		t.Fatalf("%+v %v", res, err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}
