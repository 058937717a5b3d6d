// SPDX-License-Identifier: MIT

package mxgw_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"libmxgw.org/mxgw"
)

// The rfc7208 suite (tests/spf/rfc7208-tests.yml) through the Go binding:
// the YAML is converted to JSON by Debian's python3-yaml at test time, each
// scenario's zone is built as a master file (the same rules as
// tools/mxgw-spf-suite.c) and every test must give an expected result and,
// where given, exactly the expected explanation.

type suiteScenario struct {
	Description string            `json:"description"`
	Zonedata    []json.RawMessage `json:"zonedata"`
	Tests       []json.RawMessage `json:"tests"`
}

type suiteTest struct {
	Host, Helo, Mailfrom, Explanation, Identity string
	Result                                      []string
}

func repoRoot(t testing.TB) string {
	if r := os.Getenv("MXGW_SOURCE_DIR"); r != "" {
		return r
	}
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func python(t testing.TB) string {
	p := "/usr/bin/python3"
	if _, err := os.Stat(p); err != nil {
		t.Skip("Debian /usr/bin/python3 not found")
	}
	return p
}

func loadSuite(t testing.TB) []suiteScenario {
	root := repoRoot(t)
	cmd := exec.Command(python(t), filepath.Join(root, "bindings/go/testdata/yaml2json.py"),
		filepath.Join(root, "tests/spf/rfc7208-tests.yml"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("yaml2json: %v", err)
	}
	var s []suiteScenario
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func zoneName(b *strings.Builder, s string) {
	s = strings.TrimSuffix(s, ".")
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(b, "\\%03d", c)
		}
	}
	b.WriteByte('.')
}

func zoneTXTString(b *strings.Builder, s string) {
	i := 0
	for {
		n := len(s) - i
		if n > 255 {
			n = 255
		}
		b.WriteString(" \"")
		for k := i; k < i+n; k++ {
			c := s[k]
			if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(b, "\\%03d", c)
			}
		}
		b.WriteByte('"')
		i += n
		if i >= len(s) {
			break
		}
	}
}

var suiteTypes = map[string]mxgw.DNSType{"A": mxgw.DNSTypeA, "AAAA": mxgw.DNSTypeAAAA,
	"MX": mxgw.DNSTypeMX, "TXT": mxgw.DNSTypeTXT, "PTR": mxgw.DNSTypePTR,
	"CNAME": mxgw.DNSTypeCNAME, "SPF": 0}
var suiteTypeOrder = []string{"A", "AAAA", "MX", "TXT", "PTR", "CNAME"}

type zentry struct {
	typ string // "" for a bare TIMEOUT
	v   json.RawMessage
}

func isStr(v json.RawMessage, s string) bool {
	var x string
	return json.Unmarshal(v, &x) == nil && x == s
}

// buildZone mirrors zone_owner() of tools/mxgw-spf-suite.c.
func buildZone(t testing.TB, r *mxgw.Resolver, sc suiteScenario) {
	var z strings.Builder
	for _, raw := range sc.Zonedata {
		var pair []json.RawMessage
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			t.Fatalf("zonedata: %s", raw)
		}
		var name string
		json.Unmarshal(pair[0], &name)
		var items []json.RawMessage
		json.Unmarshal(pair[1], &items)
		var es []zentry
		hasTXT := false
		for _, it := range items {
			if isStr(it, "TIMEOUT") {
				es = append(es, zentry{})
				continue
			}
			var kv [][]json.RawMessage
			if json.Unmarshal(it, &kv) != nil {
				continue
			}
			for _, p := range kv {
				var ty string
				json.Unmarshal(p[0], &ty)
				if _, ok := suiteTypes[ty]; !ok {
					continue
				}
				if ty == "TXT" {
					hasTXT = true
				}
				es = append(es, zentry{ty, p[1]})
			}
		}
		if !hasTXT {
			for _, e := range es[:len(es):len(es)] {
				if e.typ == "SPF" && !isStr(e.v, "NONE") {
					es = append(es, zentry{"TXT", e.v})
				}
			}
		}
		seen := map[string]bool{}
		for _, e := range es {
			if e.typ == "" {
				for _, ty := range suiteTypeOrder {
					if !seen[ty] {
						if err := r.AddFailure(strings.TrimSuffix(name, "."), suiteTypes[ty], mxgw.DNSTimeout); err != nil {
							t.Logf("%s: %v", name, err)
						}
					}
				}
				break
			}
			seen[e.typ] = true
			if e.typ == "SPF" || isStr(e.v, "NONE") {
				continue
			}
			if isStr(e.v, "TIMEOUT") {
				r.AddFailure(strings.TrimSuffix(name, "."), suiteTypes[e.typ], mxgw.DNSTimeout)
				continue
			}
			zoneName(&z, name)
			z.WriteString(" 3600 IN " + e.typ)
			switch e.typ {
			case "TXT":
				var s string
				var l []string
				if json.Unmarshal(e.v, &s) == nil {
					zoneTXTString(&z, s)
				} else if json.Unmarshal(e.v, &l) == nil && len(l) > 0 {
					for _, x := range l {
						zoneTXTString(&z, x)
					}
				} else {
					z.WriteString(" \"\"")
				}
			case "MX":
				var l []string
				if json.Unmarshal(e.v, &l) != nil || len(l) != 2 {
					t.Fatalf("%s: MX value is not [pref, name]", name)
				}
				z.WriteString(" " + l[0] + " ")
				zoneName(&z, l[1])
			case "PTR", "CNAME":
				var s string
				json.Unmarshal(e.v, &s)
				z.WriteString(" ")
				zoneName(&z, s)
			default:
				var s string
				json.Unmarshal(e.v, &s)
				z.WriteString(" " + s)
			}
			z.WriteString("\n")
		}
	}
	if z.Len() > 0 {
		if err := r.LoadZone(z.String(), ""); err != nil {
			t.Fatalf("%s: %v", sc.Description, err)
		}
	}
}

func TestSPFSuiteRFC7208(t *testing.T) {
	suite := loadSuite(t)
	total, passed := 0, 0
	for _, sc := range suite {
		r, err := mxgw.NewStaticResolver()
		if err != nil {
			t.Fatal(err)
		}
		spf, err := mxgw.NewSPF(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := spf.SetDefaultExplanation("DEFAULT"); err != nil {
			t.Fatal(err)
		}
		buildZone(t, r, sc)
		for _, raw := range sc.Tests {
			var pair []json.RawMessage
			json.Unmarshal(raw, &pair)
			var name string
			json.Unmarshal(pair[0], &name)
			var tc suiteTest
			if err := json.Unmarshal(pair[1], &tc); err != nil {
				t.Fatal(err)
			}
			total++
			id := mxgw.SPFMailFrom
			if tc.Identity == "helo" {
				id = mxgw.SPFHelo
			}
			res, err := spf.Check(context.Background(), mxgw.SPFRequest{
				IP: tc.Host, Helo: tc.Helo, MailFrom: tc.Mailfrom, Identity: id})
			if err != nil {
				t.Errorf("%s: %s: %v", sc.Description, name, err)
				continue
			}
			ok := false
			for _, want := range tc.Result {
				w := want
				switch w {
				case "error":
					w = "temperror"
				case "unknown":
					w = "permerror"
				}
				if res.Result.String() == w {
					ok = true
				}
			}
			if ok && tc.Explanation != "" && res.Explanation != tc.Explanation {
				ok = false
			}
			if !ok {
				t.Errorf("%s: %s: expected %v (exp %q), got %s (exp %q, problem %q)",
					sc.Description, name, tc.Result, tc.Explanation, res.Result,
					res.Explanation, res.Problem)
				continue
			}
			passed++
		}
		spf.Close()
		r.Close()
	}
	t.Logf("rfc7208 suite through Go: %d/%d passed", passed, total)
	if total != 203 {
		t.Errorf("expected 203 tests in the suite, found %d", total)
	}
}
