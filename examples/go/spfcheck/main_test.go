// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func zonePath(t *testing.T) string {
	root := os.Getenv("MXGW_SOURCE_DIR")
	if root == "" {
		root = "../../.."
	}
	return filepath.Join(root, "examples/spf/example.zone")
}

func TestSpfcheckZone(t *testing.T) {
	var out, errb bytes.Buffer
	rc := run(context.Background(), options{ip: "43.207.242.167", sender: "newsletter@example.org",
		helo: "mail.example.org", zone: zonePath(t), receiver: "mx.example.test", timeout: 5e9}, &out, &errb)
	if rc != 1 {
		t.Fatalf("rc %d, stderr %s", rc, errb.String())
	}
	s := out.String()
	for _, w := range []string{"result: softfail", "matched: ~all", "Received-SPF: softfail",
		"Authentication-Results: mx.example.test;", "include:_spf.example.net"} {
		if !strings.Contains(s, w) {
			t.Errorf("missing %q in:\n%s", w, s)
		}
	}
	out.Reset()
	rc = run(context.Background(), options{ip: "203.0.113.25", sender: "newsletter@example.org",
		zone: zonePath(t), json: true, timeout: 5e9}, &out, &errb)
	if rc != 0 || !strings.Contains(out.String(), `"result"`) {
		t.Errorf("json pass: rc %d %s", rc, out.String())
	}
	if rc := run(context.Background(), options{ip: "bad", sender: "a@example.org", zone: zonePath(t), timeout: 5e9},
		&out, &errb); rc != 3 || !strings.Contains(errb.String(), "invalid") {
		t.Errorf("bad ip: rc %d %q", rc, errb.String())
	}
}

// Against NSD on loopback when the fixture is there (ctest runs it).
func TestSpfcheckDNS(t *testing.T) {
	server := os.Getenv("MXGW_TEST_DNS")
	if server == "" {
		if os.Getenv("MXGW_GO_REQUIRE_FIXTURES") != "" {
			t.Fatal("MXGW_TEST_DNS not set")
		}
		t.Skip("MXGW_TEST_DNS not set")
	}
	var out, errb bytes.Buffer
	rc := run(context.Background(), options{ip: "192.0.2.1", sender: "a@pass.spf.test", dnsServer: server, timeout: 5e9}, &out, &errb)
	if rc != 0 || !strings.Contains(out.String(), "result: pass") {
		t.Errorf("rc %d %s %s", rc, out.String(), errb.String())
	}
}
