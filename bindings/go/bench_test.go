// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"libmxgw.org/mxgw"
	"libmxgw.org/mxgw/internal/capi"
)

// Per-call overhead of the binding (docs/PERFORMANCE.md, "Go binding").
// Run: go test -run '^$' -bench . -benchtime 2s
// Besides ns/op (wall clock), each benchmark reports cpu-ns/op: the
// process's CPU time per operation (getrusage), steadier on a shared
// machine; the loops are single-threaded.

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpu starts the timer and returns a function that reports cpu-ns/op.
func cpu(b *testing.B) func() {
	b.ResetTimer()
	t0 := cpuNow()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpuNow()-t0)/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkCallNoop(b *testing.B) {
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		capi.Capi_noop(i)
	}
}

func BenchmarkCallStringReturn(b *testing.B) {
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		_ = capi.Mxgw_spf_result_name(2)
	}
}

func BenchmarkCallBytesOut(b *testing.B) {
	r, s := newZoneSPF(b)
	defer r.Close()
	defer s.Close()
	res, _ := s.Check(context.Background(), mxgw.SPFRequest{IP: "203.0.113.9", Helo: "h", MailFrom: "a@example.org"})
	_ = res
	// a raw check kept open for the getter
	var spfp, chk uintptr
	capi.Mxgw_spf_new(&spfp, rawResolver(b))
	capi.Mxgw_spf_check_sync(spfp, "192.0.2.1", "h", "a@example.org", 1, &chk)
	defer capi.Mxgw_spf_free(spfp)
	defer capi.Mxgw_spf_check_free(chk)
	var out []byte
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		capi.Mxgw_spf_check_get_str(chk, 1, &out)
	}
}

var rawRes uintptr

func rawResolver(b *testing.B) uintptr {
	if rawRes == 0 {
		capi.Mxgw_resolver_new_static(&rawRes)
		capi.Mxgw_resolver_load_zone(rawRes, exampleZone, "")
		capi.Mxgw_resolver_add_record(rawRes, "_spf.example.net", 16, 300, "v=spf1 ip4:203.0.113.0/24 -all", 0)
	}
	return rawRes
}

// The C evaluation through the raw layer: check_sync, result, free (three
// crossings), for the C cost seen from Go.
func BenchmarkSPFRaw(b *testing.B) {
	var spfp uintptr
	capi.Mxgw_spf_new(&spfp, rawResolver(b))
	defer capi.Mxgw_spf_free(spfp)
	capi.Mxgw_spf_set_int(spfp, 6, 0)
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		var chk uintptr
		capi.Mxgw_spf_check_sync(spfp, "203.0.113.9", "h", "a@example.org", 1, &chk)
		if capi.Mxgw_spf_check_result(chk) != 2 {
			b.Fatal("result")
		}
		capi.Mxgw_spf_check_free(chk)
	}
}

func benchCheck(b *testing.B, trace bool, full bool) {
	r, s := newZoneSPF(b)
	defer r.Close()
	defer s.Close()
	if !trace {
		s.SetOption(mxgw.SPFOptTrace, 0)
	}
	req := mxgw.SPFRequest{IP: "203.0.113.9", Helo: "h", MailFrom: "a@example.org",
		WithTrace: full, WithHeaders: full}
	ctx := context.Background()
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		res, err := s.Check(ctx, req)
		if err != nil || res.Result != mxgw.SPFPass {
			b.Fatal(err)
		}
	}
}

// The public API with the trace and the headers (not the JSON).
func BenchmarkSPFCheckTraceHeaders(b *testing.B) { benchCheck(b, true, true) }

// The public API's default (result, term, counters, reply), trace
// recording off.
func BenchmarkSPFCheckDefault(b *testing.B) { benchCheck(b, false, false) }

func BenchmarkSessionTransaction(b *testing.B) {
	cfg, _ := mxgw.NewSessionConfig()
	defer cfg.Close()
	in1 := []byte("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
	in2 := []byte("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		se, _ := mxgw.NewSession(cfg)
		se.SetPeer("192.0.2.1", 25, "")
		se.Start()
		se.NextEvent()
		se.Accept()
		for _, in := range [][]byte{in1, in2} {
			se.Feed(in)
			for {
				ev, _ := se.NextEvent()
				if ev == mxgw.EventNone || ev == mxgw.EventClose {
					break
				}
				if ev == mxgw.EventBody {
					se.Bytes(mxgw.InfoData)
				} else if ev.IsDecision() {
					se.Accept()
				}
			}
		}
		se.Consume(len(se.Output()))
		se.Close()
	}
}

type suiteCase struct {
	spf *mxgw.SPF
	req mxgw.SPFRequest
}

func suiteCases(b *testing.B, trace bool, full bool) []suiteCase {
	var cases []suiteCase
	for _, sc := range loadSuite(b) {
		r, _ := mxgw.NewStaticResolver()
		s, _ := mxgw.NewSPF(r)
		s.SetDefaultExplanation("DEFAULT")
		if !trace {
			s.SetOption(mxgw.SPFOptTrace, 0)
		}
		buildZone(b, r, sc)
		for _, raw := range sc.Tests {
			var pair []json.RawMessage
			json.Unmarshal(raw, &pair)
			var tc suiteTest
			json.Unmarshal(pair[1], &tc)
			id := mxgw.SPFMailFrom
			if tc.Identity == "helo" {
				id = mxgw.SPFHelo
			}
			cases = append(cases, suiteCase{s, mxgw.SPFRequest{IP: tc.Host, Helo: tc.Helo,
				MailFrom: tc.Mailfrom, Identity: id, WithTrace: full, WithHeaders: full}})
		}
	}
	return cases
}

// The rfc7208 suite's 203 evaluations in turn (as bench/python does for
// the Python binding): the default Check, trace recorded (the library
// default) but not read.
func BenchmarkSPFSuiteDefault(b *testing.B) { benchSuite(b, true, false) }

// Trace recording off.
func BenchmarkSPFSuiteTraceOff(b *testing.B) { benchSuite(b, false, false) }

// Trace and headers read for every evaluation.
func BenchmarkSPFSuiteTraceHeaders(b *testing.B) { benchSuite(b, true, true) }

func benchSuite(b *testing.B, trace, full bool) {
	cases := suiteCases(b, trace, full)
	ctx := context.Background()
	defer cpu(b)()
	for i := 0; i < b.N; i++ {
		c := &cases[i%len(cases)]
		if _, err := c.spf.Check(ctx, c.req); err != nil {
			b.Fatal(err)
		}
	}
}
