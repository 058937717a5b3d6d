// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"libmxgw.org/mxgw"
)

// journalBody has lines that look like SMTP's end of data and dot-stuffing,
// 8-bit and NUL octets: it must come back and reach the mailbox exactly.
func journalBody(tag string) []byte {
	return []byte("X-Journal-Test: " + tag + "\r\nFrom: q@example.org\r\nSubject: journal from Go\r\n\r\n" +
		"line 1\r\n.\r\n..two dots\r\n.dot line\r\n\xc3\xa9t\xc3\xa9 \xff\xfe\x00 bin\r\nend\r\n")
}

func openJournalQueue(t *testing.T, dir string, sync int64) *mxgw.Queue {
	t.Helper()
	q, err := mxgw.NewQueue(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		k mxgw.QueueOption
		v int64
	}{{mxgw.QueueOptJournal, 1}, {mxgw.QueueOptJournalMaxBody, 4096}, {mxgw.QueueOptSync, sync},
		{mxgw.QueueOptAsyncWorkers, 0}} {
		if err := q.SetOption(o.k, o.v); err != nil {
			t.Fatalf("option %d: %v", o.k, err)
		}
	}
	if err := q.Open(); err != nil {
		t.Fatal(err)
	}
	return q
}

func stat(t *testing.T, q *mxgw.Queue, k mxgw.QueueOption) int64 {
	t.Helper()
	v, err := q.Stat(k)
	if err != nil {
		t.Fatalf("stat %d: %v", k, err)
	}
	return v
}

// storedBody is a delivered Maildir file from our first header on (after
// the headers Dovecot adds), with CRLF line ends as in the body (Dovecot
// may store LF), or nil.
func storedBody(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("\r\n")) {
		b = bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	}
	i := bytes.Index(b, []byte("X-Journal-Test: "))
	if i < 0 {
		return nil
	}
	return b[i:]
}

func TestQueueJournalToLMTP(t *testing.T) {
	target := needEnv(t, "MXGW_TEST_LMTP")
	q := openJournalQueue(t, t.TempDir(), 1)
	defer q.Close()
	before := maildirFiles(t, "alice", 0)
	bodies := [][]byte{journalBody("reader"), journalBody("range")}
	var ids []string
	for _, body := range bodies {
		id, err := q.Submit(&mxgw.QueueEnvelope{Sender: "q@example.org", Body: "8BITMIME",
			Rcpts: []mxgw.QueueRcpt{{Addr: "alice@example.test"}}}, body)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if v := stat(t, q, mxgw.QueueStatJournalCommits); v != 2 {
		t.Errorf("journal commits %d", v)
	}
	if v := stat(t, q, mxgw.QueueStatJournalMessages); v != 2 {
		t.Errorf("journal messages %d", v)
	}
	// a body over QueueOptJournalMaxBody gets files of its own
	big := append([]byte("Subject: big\r\n\r\n"), bytes.Repeat([]byte("x"), 5000)...)
	bigID, err := q.Submit(&mxgw.QueueEnvelope{Rcpts: []mxgw.QueueRcpt{{Addr: "bob@example.test"}}}, big)
	if err != nil {
		t.Fatal(err)
	}
	if le, err := q.Load(bigID); err != nil {
		t.Fatal(err)
	} else {
		in := le.Info()
		onDisk, _ := os.ReadFile(in.BodyPath)
		got, err := le.Body()
		le.Close()
		if in.InJournal || !bytes.Equal(onDisk, big) || err != nil || !bytes.Equal(got, big) {
			t.Errorf("big message: in journal %v, file %d octets, Body %d octets %v", in.InJournal,
				len(onDisk), len(got), err)
		}
	}
	cfg, _ := mxgw.NewLMTPConfig()
	defer cfg.Close()
	c, err := mxgw.NewLMTPClient(cfg, target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, body := range bodies {
		e, err := q.Take(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		in := e.Info()
		if in.ID != ids[i] || !in.InJournal || !e.InJournal() || in.BodyPath != "" ||
			in.State != mxgw.QueueActive || in.Size != int64(len(body)) {
			t.Fatalf("taken %+v (want %s in the journal)", in, ids[i])
		}
		if got, err := e.Body(); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Body %q %v", got, err)
		}
		b, err := e.OpenBody()
		if err != nil {
			t.Fatal(err)
		}
		if b.Size() != int64(len(body)) {
			t.Errorf("body size %d", b.Size())
		}
		// the range as the C API gives it: pread at Offset in File
		raw := make([]byte, b.Size())
		if _, err := b.File().ReadAt(raw, b.Offset()); err != nil || !bytes.Equal(raw, body) {
			t.Errorf("file range %q %v", raw, err)
		}
		m := &mxgw.LMTPMessage{From: in.Sender, EightBit: true, Size: b.Size()}
		for _, r := range in.Rcpts {
			m.Rcpts = append(m.Rcpts, mxgw.LMTPRcpt{Addr: r.Addr})
		}
		var res []mxgw.LMTPResult
		if i == 0 {
			res, err = c.Deliver(context.Background(), m, b) // io.Reader over the range
		} else {
			res, err = c.DeliverBody(m, b) // mxgw_lmtp_conn_deliver_range
		}
		b.Close()
		if err != nil || len(res) != 1 || !res[0].Delivered() {
			t.Fatalf("deliver %d: %+v %v", i, res, err)
		}
		e.SetRcpt(0, mxgw.RcptDelivered, res[0].Code, res[0].Enh, res[0].Text)
		st, err := q.Finish(e, time.Now())
		e.Close()
		if err != nil || st != 0 {
			t.Fatalf("finish %v %v", st, err)
		}
		if _, err := q.Load(ids[i]); !errors.Is(err, mxgw.ErrNotFound) {
			t.Errorf("delivered message still queued: %v", err)
		}
	}
	if v := stat(t, q, mxgw.QueueStatJournalMessages); v != 0 {
		t.Errorf("journal messages after delivery %d", v)
	}
	fresh := newMaildirFiles(t, "alice", before, 2)
	if len(fresh) != 2 {
		t.Fatalf("%d new files in alice's Maildir", len(fresh))
	}
	var got []string
	for _, f := range fresh {
		got = append(got, string(storedBody(t, f)))
	}
	sort.Strings(got)
	want := []string{string(bodies[0]), string(bodies[1])}
	sort.Strings(want)
	if got[0] != want[0] || got[1] != want[1] {
		t.Errorf("stored %q, want %q", got, want)
	}
}

func TestQueueJournalDeliverRangeErrors(t *testing.T) {
	target := needEnv(t, "MXGW_TEST_LMTP")
	cfg, _ := mxgw.NewLMTPConfig()
	defer cfg.Close()
	c, _ := mxgw.NewLMTPClient(cfg, target)
	defer c.Close()
	f, err := os.CreateTemp(t.TempDir(), "body")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	body := journalBody("short")
	f.Write(append([]byte("garbage before"), body...))
	m := &mxgw.LMTPMessage{From: "q@example.org", Rcpts: []mxgw.LMTPRcpt{{Addr: "bob@example.test"}}}
	// the file ends before offset+length: ErrIO, nothing delivered
	if res, err := c.DeliverRange(m, f, 14, int64(len(body))+10); !errors.Is(err, mxgw.ErrIO) {
		t.Errorf("short file: %+v %v", res, err)
	}
	if _, err := c.DeliverRange(m, f, -1, 5); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("negative offset: %v", err)
	}
	// the connection is usable afterwards
	before := maildirFiles(t, "bob", 0)
	res, err := c.DeliverRange(m, f, 14, int64(len(body)))
	if err != nil || len(res) != 1 || !res[0].Delivered() {
		t.Fatalf("deliver after errors: %+v %v", res, err)
	}
	fresh := newMaildirFiles(t, "bob", before, 1)
	if len(fresh) != 1 {
		t.Fatalf("%d new files in bob's Maildir", len(fresh))
	}
	if got := storedBody(t, fresh[0]); !bytes.Equal(got, body) {
		t.Errorf("stored %q", got)
	}
}

func TestQueueJournalDeferredAndRecovery(t *testing.T) {
	dir := t.TempDir()
	q := openJournalQueue(t, dir, 1)
	env := &mxgw.QueueEnvelope{Sender: "q@example.org",
		Rcpts: []mxgw.QueueRcpt{{Addr: "alice@example.test"}, {Addr: "bob@example.test"}}}
	deferredID, err := q.Submit(env, journalBody("deferred"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := q.Take(time.Now())
	if err != nil || !e.InJournal() {
		t.Fatalf("take %v", err)
	}
	e.SetRcpt(0, mxgw.RcptDelivered, 250, "2.0.0", "ok")
	e.SetRcpt(1, mxgw.RcptDeferred, 451, "4.3.0", "later")
	if st, err := q.Finish(e, time.Now().Add(time.Hour)); err != nil || st != mxgw.QueueDeferred {
		t.Fatalf("finish %v %v", st, err)
	}
	e.Close()
	d, err := q.Load(deferredID)
	if err != nil {
		t.Fatal(err)
	}
	in := d.Info()
	onDisk, _ := os.ReadFile(in.BodyPath)
	got, err := d.Body()
	d.Close()
	if in.State != mxgw.QueueDeferred || in.InJournal || filepath.Base(filepath.Dir(in.BodyPath)) != "deferred" ||
		!bytes.Equal(onDisk, journalBody("deferred")) || err != nil || !bytes.Equal(got, onDisk) {
		t.Errorf("deferred %+v: file %q, Body %q %v", in, onDisk, got, err)
	}
	if v := stat(t, q, mxgw.QueueStatJournalSpills); v != 1 {
		t.Errorf("spills %d", v)
	}

	// un-finished journal messages (one of them taken) survive a reopen
	var ids []string
	for _, tag := range []string{"r0", "r1", "r2"} {
		id, err := q.Submit(env, journalBody(tag))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if a, err := q.Take(time.Now()); err != nil || a.Info().ID != ids[0] {
		t.Fatalf("take %v", err)
	} else {
		a.Close()
	}
	q.Close() // nothing finished: like a crash
	if f, _ := os.ReadDir(filepath.Join(dir, "incoming")); len(f) != 0 {
		t.Errorf("incoming/ before recovery: %d files", len(f))
	}
	// the owner with the journal: the three are indexed again and
	// delivered from the old segments (nothing written at open)
	q2 := openJournalQueue(t, dir, 1)
	if v := stat(t, q2, mxgw.QueueStatJournalRecovered); v != 3 {
		t.Errorf("recovered %d", v)
	}
	if v := stat(t, q2, mxgw.QueueStatJournalMessages); v != 3 {
		t.Errorf("journal messages after recovery %d", v)
	}
	if f, _ := os.ReadDir(filepath.Join(dir, "incoming")); len(f) != 0 {
		t.Errorf("incoming/ after recovery with the journal: %d files", len(f))
	}
	checkRecovered := func(q *mxgw.Queue, inJournal bool) {
		t.Helper()
		inc, err := q.List(mxgw.QueueIncoming)
		if err != nil || strings.Join(inc, ",") != strings.Join(ids, ",") {
			t.Errorf("incoming after recovery %v (want %v) %v", inc, ids, err)
		}
		for i, id := range ids {
			r, err := q.Load(id)
			if err != nil {
				t.Fatal(err)
			}
			in := r.Info()
			b, err := r.OpenBody()
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(b)
			b.Close()
			r.Close()
			want := journalBody([]string{"r0", "r1", "r2"}[i])
			if in.InJournal != inJournal || in.State != mxgw.QueueIncoming || !bytes.Equal(got, want) {
				t.Errorf("recovered %s: %+v body %q", id, in, got)
			}
			if !inJournal {
				if onDisk, _ := os.ReadFile(in.BodyPath); !bytes.Equal(onDisk, want) {
					t.Errorf("recovered %s: file %q", id, onDisk)
				}
			}
		}
	}
	checkRecovered(q2, true)
	q2.Close()
	// an owner without the journal: the same three, now as files
	q3, err := mxgw.NewQueue(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer q3.Close()
	if err := q3.SetOption(mxgw.QueueOptAsyncWorkers, 0); err != nil {
		t.Fatal(err)
	}
	if err := q3.Open(); err != nil {
		t.Fatal(err)
	}
	if v := stat(t, q3, mxgw.QueueStatJournalRecovered); v != 3 {
		t.Errorf("recovered into files %d", v)
	}
	checkRecovered(q3, false)
}

func TestQueueJournalClosedEntry(t *testing.T) {
	q := openJournalQueue(t, t.TempDir(), 0)
	defer q.Close()
	id, err := q.Submit(&mxgw.QueueEnvelope{Rcpts: []mxgw.QueueRcpt{{Addr: "a@example.test"}}}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := q.Load(id)
	e.Close()
	if _, err := e.OpenBody(); !errors.Is(err, mxgw.ErrInvalid) {
		t.Errorf("OpenBody on a closed entry: %v", err)
	}
	// operator actions leave a journal message alone (its first attempt
	// is under way: MXGW_E_BUSY)
	if _, err := q.Manage(mxgw.QueueOpDelete, id, 0); !errors.Is(err, mxgw.ErrBusy) {
		t.Errorf("delete of a journal message: %v", err)
	}
	// a message gone from the spool has no body to open
	big := bytes.Repeat([]byte("y"), 5000)
	bigID, err := q.Submit(&mxgw.QueueEnvelope{Rcpts: []mxgw.QueueRcpt{{Addr: "a@example.test"}}}, big)
	if err != nil {
		t.Fatal(err)
	}
	e, _ = q.Load(bigID)
	defer e.Close()
	if n, err := q.Manage(mxgw.QueueOpDelete, bigID, 0); err != nil || n != 1 {
		t.Fatalf("delete %d %v", n, err)
	}
	if _, err := e.Body(); !errors.Is(err, mxgw.ErrNotFound) {
		t.Errorf("Body of a deleted message: %v", err)
	}
	// the server's journal options
	sc, err := mxgw.NewServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if v, err := sc.Option(int(mxgw.SrvOptQueueJournal)); err != nil || v != 1 {
		t.Errorf("server journal default %d %v", v, err)
	}
	if err := sc.SetOption(mxgw.SrvOptQueueJournalMaxBody, 65536); err != nil {
		t.Error(err)
	}
	if v, _ := sc.Option(int(mxgw.SrvOptQueueJournalMaxBody)); v != 65536 {
		t.Errorf("server journal max body %d", v)
	}
}
