// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

func TestQueue(t *testing.T) {
	dir := t.TempDir()
	q, err := mxgw.NewQueue(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.SetOption(mxgw.QueueOptSync, 1); err != nil {
		t.Fatal(err)
	}
	if err := q.Open(); err != nil {
		t.Fatal(err)
	}
	if err := q.SetOption(mxgw.QueueOptSync, 0); !errors.Is(err, mxgw.ErrBusy) {
		t.Errorf("option after open: %v", err)
	}
	// a second owner is refused
	if _, err := mxgw.OpenQueue(dir); !errors.Is(err, mxgw.ErrBusy) {
		t.Errorf("second owner: %v", err)
	}
	body := []byte("Subject: q\r\n\r\nbody \x00\xff\r\n")
	env := &mxgw.QueueEnvelope{Sender: "", Rcpts: []mxgw.QueueRcpt{{Addr: "alice@example.test", Notify: 4},
		{Addr: "bob@example.test", ORcpt: "rfc822;bob@example.test"}}, ClientAddr: "192.0.2.1",
		ClientHelo: "client.example", SPFJSON: `{"result":"pass"}`, Body: "8BITMIME"}
	id, err := q.Submit(env, body)
	if err != nil || id == "" {
		t.Fatalf("submit %q %v", id, err)
	}
	if n, _ := q.Count(mxgw.QueueIncoming); n != 1 {
		t.Errorf("incoming %d", n)
	}
	e, err := q.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	in := e.Info()
	e.Close()
	if in.ID != id || in.Sender != "" || in.Size != int64(len(body)) || in.State != mxgw.QueueIncoming ||
		len(in.Rcpts) != 2 || in.Rcpts[0].Notify != 4 || in.Rcpts[1].ORcpt != "rfc822;bob@example.test" ||
		in.ClientHelo != "client.example" || in.Arrival.IsZero() {
		t.Errorf("info %+v", in)
	}
	stored, _ := os.ReadFile(in.BodyPath)
	if !bytes.Equal(stored, body) {
		t.Errorf("body file %q", stored)
	}
	// invalid JSON is refused, nothing is left behind
	if _, err := q.Submit(&mxgw.QueueEnvelope{Rcpts: []mxgw.QueueRcpt{{Addr: "a@b"}}, SPFJSON: "{bad"}, body); !errors.Is(err, mxgw.ErrSyntax) {
		t.Errorf("bad json: %v", err)
	}
	if _, err := q.Submit(&mxgw.QueueEnvelope{}, body); !errors.Is(err, mxgw.ErrState) {
		t.Errorf("no recipient: %v", err)
	}
	// hold / release / list
	if n, err := q.Manage(mxgw.QueueOpHold, id, 0); err != nil || n != 1 {
		t.Errorf("hold %d %v", n, err)
	}
	if ids, _ := q.List(mxgw.QueueHold); len(ids) != 1 || ids[0] != id {
		t.Errorf("hold list %v", ids)
	}
	if _, err := q.Take(time.Now()); !errors.Is(err, mxgw.ErrNotFound) {
		t.Errorf("take from empty incoming: %v", err)
	}
	q.Manage(mxgw.QueueOpRelease, id, 0)
	if _, err := q.Manage(mxgw.QueueOpHold, "NOSUCHID", 0); !errors.Is(err, mxgw.ErrNotFound) {
		t.Errorf("manage unknown: %v", err)
	}
	// a delivery attempt: one delivered, one deferred
	e, err = q.Take(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if e.Info().State != mxgw.QueueActive {
		t.Errorf("taken state %v", e.Info().State)
	}
	e.SetRcpt(0, mxgw.RcptDelivered, 250, "2.0.0", "Saved")
	e.SetRcpt(1, mxgw.RcptDeferred, 451, "4.4.1", "try later")
	if err := e.SetRcpt(7, mxgw.RcptDelivered, 250, "", ""); !errors.Is(err, mxgw.ErrRange) {
		t.Errorf("rcpt range: %v", err)
	}
	st, err := q.Finish(e, time.Now().Add(time.Hour))
	if err != nil || st != mxgw.QueueDeferred {
		t.Fatalf("finish %v %v", st, err)
	}
	js, _ := e.JSON()
	var m map[string]any
	if json.Unmarshal(js, &m) != nil {
		t.Errorf("json %s", js)
	}
	e.Close()
	e, _ = q.Load(id)
	in = e.Info()
	e.Close()
	if in.Attempts != 1 || in.Rcpts[0].State != mxgw.RcptDelivered || in.Rcpts[1].Code != 451 || in.Rcpts[1].Text != "try later" {
		t.Errorf("after attempt %+v", in)
	}
	if n, err := q.Manage(mxgw.QueueOpDelete, "", mxgw.QueueDeferred); err != nil || n != 1 {
		t.Errorf("delete %d %v", n, err)
	}
	if c, _ := q.Stat(mxgw.QueueStatCommits); c != 1 {
		t.Errorf("commits %d", c)
	}
}

// Concurrent submits share directory fsyncs (group commit).
func TestQueueConcurrentSubmit(t *testing.T) {
	q, err := mxgw.OpenQueue(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := q.Submit(&mxgw.QueueEnvelope{Sender: "a@x.example",
					Rcpts: []mxgw.QueueRcpt{{Addr: fmt.Sprintf("u%d@y.example", g)}}}, []byte("x\r\n")); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	if n, _ := q.Count(mxgw.QueueIncoming); n != 80 {
		t.Errorf("count %d", n)
	}
	c, _ := q.Stat(mxgw.QueueStatCommits)
	d, _ := q.Stat(mxgw.QueueStatDirSyncs)
	t.Logf("80 commits from 8 goroutines: %d commits, %d directory fsyncs", c, d)
	if c != 80 {
		t.Errorf("commits %d", c)
	}
}

// Queue to Dovecot: take, deliver over LMTP, record, finish (removed).
func TestQueueToLMTP(t *testing.T) {
	target := needEnv(t, "MXGW_TEST_LMTP")
	q, err := mxgw.OpenQueue(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	before := maildirFiles(t, "carol", 0)
	id, err := q.Submit(&mxgw.QueueEnvelope{Sender: "q@example.org", Rcpts: []mxgw.QueueRcpt{{Addr: "carol@example.test"}}},
		[]byte("Subject: queued from Go\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := mxgw.NewLMTPConfig()
	defer cfg.Close()
	c, _ := mxgw.NewLMTPClient(cfg, target)
	defer c.Close()
	e, err := q.Take(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	in := e.Info()
	m := &mxgw.LMTPMessage{From: in.Sender}
	for _, r := range in.Rcpts {
		m.Rcpts = append(m.Rcpts, mxgw.LMTPRcpt{Addr: r.Addr})
	}
	f, _ := os.Open(in.BodyPath)
	res, err := c.Deliver(context.Background(), m, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		st := mxgw.RcptDelivered
		if !r.Delivered() {
			st = mxgw.RcptDeferred
		}
		e.SetRcpt(i, st, r.Code, r.Enh, r.Text)
	}
	st, err := q.Finish(e, time.Now())
	e.Close()
	if err != nil || st != 0 {
		t.Fatalf("finish %v %v (%+v)", st, err, res)
	}
	if _, err := q.Load(id); !errors.Is(err, mxgw.ErrNotFound) {
		t.Errorf("delivered message still queued: %v", err)
	}
	if f := newMaildirFiles(t, "carol", before, 1); len(f) != 1 {
		t.Errorf("%d new files in carol's Maildir", len(f))
	} else if b, _ := os.ReadFile(f[0]); !strings.Contains(string(b), "Subject: queued from Go") {
		t.Errorf("carol's new message %q", b)
	}
}
