// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"libmxgw.org/mxgw"
	"libmxgw.org/mxgw/internal/capi"
)

func rssKB(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm")
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize()) / 1024
}

// One round of everything a long-running program repeats: handles created
// and closed, SPF checks, a session transaction with the log hook (a
// cgo.Handle), TLS loading and inspection, errors.
func leakRound(t testing.TB, i int, pemChain, pemKey []byte, cfg *mxgw.SessionConfig, q *mxgw.Queue) {
	// queue: submit, load, inspect, delete
	id, err := q.Submit(&mxgw.QueueEnvelope{Sender: "a@b.example", Rcpts: []mxgw.QueueRcpt{{Addr: "c@d.example"}}},
		[]byte("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := q.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	e.Info()
	e.Close()
	if n, err := q.Manage(mxgw.QueueOpDelete, id, 0); err != nil || n != 1 {
		t.Fatalf("delete %d %v", n, err)
	}

	r, s := newZoneSPF(t)
	res, err := s.Check(context.Background(), mxgw.SPFRequest{IP: "203.0.113.9", Helo: "h", MailFrom: "a@example.org",
		WithTrace: true, WithHeaders: true, WithJSON: i%10 == 0})
	if err != nil || res.Result != mxgw.SPFPass {
		t.Fatalf("spf %v %v", res, err)
	}
	if _, err := s.Check(context.Background(), mxgw.SPFRequest{IP: "bad"}); err == nil {
		t.Fatal("no error")
	}
	s.Close()
	r.Close()

	se, _ := mxgw.NewSession(cfg)
	n := 0
	se.SetLogger(func(mxgw.LogKind, string) { n++ })
	se.SetPeer("192.0.2.1", 25, "")
	se.Start()
	se.NextEvent()
	se.Accept()
	se.Feed([]byte("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"))
	for {
		ev, _ := se.NextEvent()
		if ev == mxgw.EventNone {
			break
		}
		se.Accept()
	}
	se.Feed([]byte("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"))
	for {
		ev, _ := se.NextEvent()
		if ev == mxgw.EventNone || ev == mxgw.EventClose {
			break
		}
		if ev == mxgw.EventBody {
			se.Bytes(mxgw.InfoData)
		}
		if ev.IsDecision() {
			se.ReceivedHeader("ID", time.Unix(0, 0))
			se.Accept()
		}
	}
	se.Consume(len(se.Output()))
	se.Close()

	// TLS: a context and an error path every round; a full load and
	// inspection every 10th (OpenSSL takes ~2.5 ms per key load).
	tl, _ := mxgw.NewTLS(mxgw.TLSServer)
	tl.AddCertFiles("", "/nonexistent", "")
	if i%10 == 0 {
		if err := tl.AddCertPEM("", pemChain, pemKey); err != nil {
			t.Fatal(err)
		}
		tl.Load()
		tl.Certs()
		tl.JSON()
	}
	tl.Close()
}

func TestNoLeak10000(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	// One OS thread for every C call: glibc's per-thread caches (tcache)
	// count as "in use" in mallinfo2, so calls spread over many threads
	// would look like growth.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := t.TempDir()
	c := makeCert(t, dir, "leak", true, time.Now().Add(90*24*time.Hour), "mx.example.test")
	chain, _ := os.ReadFile(c.chain)
	key, _ := os.ReadFile(c.key)
	cfg, _ := mxgw.NewSessionConfig()
	defer cfg.Close()
	q, err := mxgw.NewQueue(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	q.SetOption(mxgw.QueueOptSync, 0)
	if err := q.Open(); err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	warm, iters := 1000, 10000
	if v, err := strconv.Atoi(os.Getenv("MXGW_LEAK_ITERS")); err == nil && v > 0 {
		iters = v
	}
	for i := 0; i < warm; i++ {
		leakRound(t, i, chain, key, cfg, q)
	}
	runtime.GC()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	rss0 := rssKB(t)
	c0 := capi.Capi_malloc_inuse()
	t0 := time.Now()
	for i := 0; i < iters; i++ {
		leakRound(t, i, chain, key, cfg, q)
	}
	el := time.Since(t0)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	rss1 := rssKB(t)
	c1 := capi.Capi_malloc_inuse()
	heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	objs := int64(m1.HeapObjects) - int64(m0.HeapObjects)
	t.Logf("%d rounds in %v: C heap in use %+d bytes, Go heap %+d bytes (%+d objects), RSS %d -> %d kB (%+d kB)",
		iters, el.Round(time.Millisecond), c1-c0, heap, objs, rss0, rss1, rss1-rss0)
	// one leaked allocation per round would be >= 16 bytes per round
	if c1-c0 > int64(iters)*6 {
		t.Errorf("C heap grew by %d bytes over %d rounds", c1-c0, iters)
	}
	// a leak of one small C allocation per round would be >= 10000 * 16
	// bytes plus malloc overhead; of one handle, hundreds of kB.
	// RSS is noisy (malloc arenas of the threads cgo calls run on): a
	// loose bound only.
	if rss1-rss0 > 8192 {
		t.Errorf("RSS grew by %d kB over %d rounds", rss1-rss0, iters)
	}
	if heap > 1<<20 || objs > 2000 {
		t.Errorf("Go heap grew by %d bytes / %d objects", heap, objs)
	}
}
