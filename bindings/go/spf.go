// SPDX-License-Identifier: MIT

package mxgw

import (
	"context"
	"encoding/binary"
	"runtime"
	"strings"
	"sync"
	"time"

	"libmxgw.org/mxgw/internal/capi"
)

// DNSType is a DNS record type (mxgw_dns_type).
type DNSType int

// Record types a static zone can hold.
const (
	DNSTypeA     DNSType = 1
	DNSTypeCNAME DNSType = 5
	DNSTypePTR   DNSType = 12
	DNSTypeMX    DNSType = 15
	DNSTypeTXT   DNSType = 16
	DNSTypeAAAA  DNSType = 28
)

// DNSStatus is the outcome of a lookup (mxgw_dns_status); a static record
// can be made to fail with DNSServFail or DNSTimeout.
type DNSStatus int

const (
	DNSOK       DNSStatus = 0
	DNSNoData   DNSStatus = 1
	DNSNXDomain DNSStatus = 2
	DNSServFail DNSStatus = 3
	DNSTimeout  DNSStatus = 4
	DNSError    DNSStatus = 5
)

func (s DNSStatus) String() string { return capi.Mxgw_dns_status_name(int(s)) }

// Resolver is the DNS resolver SPF asks: a static in-memory zone or
// c-ares. A Resolver serves one SPF evaluator (checks on it are
// serialized); give each concurrently used SPF its own Resolver.
type Resolver struct {
	mu sync.Mutex
	p  uintptr
}

func newResolver(p uintptr) *Resolver {
	r := &Resolver{p: p}
	runtime.SetFinalizer(r, (*Resolver).Close)
	return r
}

// NewStaticResolver creates a resolver with an empty in-memory zone; fill
// it with AddRecord, LoadZone or LoadZoneFile.
func NewStaticResolver() (*Resolver, error) {
	var p uintptr
	if err := check(capi.Mxgw_resolver_new_static(&p), "NewStaticResolver", nil); err != nil {
		return nil, err
	}
	return newResolver(p), nil
}

// AresOptions configures a c-ares resolver. Zero values mean the library
// defaults (servers from /etc/resolv.conf, 2000 ms, 2 tries, cache 10000,
// negative TTL 300 s).
type AresOptions struct {
	Servers     []string      // "IP[:PORT]" or "[v6]:PORT"
	Timeout     time.Duration // first try; c-ares doubles it per round
	Tries       int
	CacheSize   int // -1 disables the cache
	NegativeTTL time.Duration
}

// NewAresResolver creates a resolver on c-ares.
func NewAresResolver(o AresOptions) (*Resolver, error) {
	var opts []string
	if len(o.Servers) > 0 {
		opts = append(opts, "servers="+strings.Join(o.Servers, ","))
	}
	if o.Timeout > 0 {
		opts = append(opts, "timeout_ms="+itoa(o.Timeout.Milliseconds()))
	}
	if o.Tries > 0 {
		opts = append(opts, "tries="+itoa(int64(o.Tries)))
	}
	if o.CacheSize > 0 {
		opts = append(opts, "cache_size="+itoa(int64(o.CacheSize)))
	} else if o.CacheSize < 0 {
		opts = append(opts, "cache_size=0")
	}
	if o.NegativeTTL > 0 {
		opts = append(opts, "negative_ttl="+itoa(int64(o.NegativeTTL/time.Second)))
	}
	var p uintptr
	if err := check(capi.Mxgw_resolver_new_ares(&p, strings.Join(opts, "\n")), "NewAresResolver", nil); err != nil {
		return nil, err
	}
	return newResolver(p), nil
}

func (r *Resolver) errmsg() string { return capi.Mxgw_resolver_errmsg(r.p) }

// AddRecord adds a record to a static zone. data is in presentation form:
// an address (A, AAAA), "PREF NAME" (MX), a name (PTR, CNAME) or the text
// (TXT).
func (r *Resolver) AddRecord(name string, typ DNSType, ttl uint32, data string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == 0 {
		return errClosedHandle("Resolver.AddRecord")
	}
	return check(capi.Mxgw_resolver_add_record(r.p, name, int(typ), uint(ttl), data, 0),
		"Resolver.AddRecord", r.errmsg)
}

// AddFailure makes every query for (name, typ) on a static zone fail with
// status (DNSServFail or DNSTimeout).
func (r *Resolver) AddFailure(name string, typ DNSType, status DNSStatus) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == 0 {
		return errClosedHandle("Resolver.AddFailure")
	}
	return check(capi.Mxgw_resolver_add_record(r.p, name, int(typ), 0, "", int(status)),
		"Resolver.AddFailure", r.errmsg)
}

// LoadZone loads RFC 1035 master-file text into a static zone. origin ""
// means the root.
func (r *Resolver) LoadZone(text, origin string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == 0 {
		return errClosedHandle("Resolver.LoadZone")
	}
	return check(capi.Mxgw_resolver_load_zone(r.p, text, origin), "Resolver.LoadZone", r.errmsg)
}

// LoadZoneFile loads a master file into a static zone.
func (r *Resolver) LoadZoneFile(path, origin string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == 0 {
		return errClosedHandle("Resolver.LoadZoneFile")
	}
	return check(capi.Mxgw_resolver_load_zone_file(r.p, path, origin), "Resolver.LoadZoneFile", r.errmsg)
}

// Pending returns the number of queries in flight.
func (r *Resolver) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == 0 {
		return 0
	}
	return int(capi.Mxgw_resolver_pending(r.p))
}

// Close frees the resolver. Close the SPF evaluators using it first.
func (r *Resolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != 0 {
		capi.Mxgw_resolver_free(r.p)
		r.p = 0
	}
	runtime.SetFinalizer(r, nil)
	return nil
}

// SPFResult is one of the seven results of RFC 7208 2.6.
type SPFResult int

const (
	SPFNone      SPFResult = 0
	SPFNeutral   SPFResult = 1
	SPFPass      SPFResult = 2
	SPFFail      SPFResult = 3
	SPFSoftfail  SPFResult = 4
	SPFTemperror SPFResult = 5
	SPFPermerror SPFResult = 6
)

// String returns the name RFC 7208 uses ("pass", "softfail", ...).
func (r SPFResult) String() string { return capi.Mxgw_spf_result_name(int(r)) }

// SPFIdentity is the identity checked.
type SPFIdentity int

const (
	SPFMailFrom SPFIdentity = 1 // MAIL FROM (HELO for the null sender)
	SPFHelo     SPFIdentity = 2 // HELO/EHLO
)

// SPFOption keys for SPF.SetOption (mxgw_spf_opt).
type SPFOption int

const (
	SPFOptMaxDNSTerms    SPFOption = 1
	SPFOptMaxVoidLookups SPFOption = 2
	SPFOptMaxMXNames     SPFOption = 3
	SPFOptMaxPTRNames    SPFOption = 4
	SPFOptTimeoutMS      SPFOption = 5
	SPFOptTrace          SPFOption = 6
	SPFOptNow            SPFOption = 7
)

// SPF is an evaluator context: options plus the resolver it asks.
type SPF struct {
	p         uintptr
	r         *Resolver // its mutex serializes every use of the pair
	timeoutMS int64     // SPFOptTimeoutMS, cached (guarded by r.mu)
	buf       []byte    // scratch for capi_spf_collect (guarded by r.mu)
}

// NewSPF creates an evaluator on r. The resolver must stay open while the
// evaluator is used.
func NewSPF(r *Resolver) (*SPF, error) {
	if r == nil {
		return nil, invalid("NewSPF", "nil resolver")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p == 0 {
		return nil, errClosedHandle("NewSPF")
	}
	var p uintptr
	if err := check(capi.Mxgw_spf_new(&p, r.p), "NewSPF", nil); err != nil {
		return nil, err
	}
	var limit int64
	capi.Mxgw_spf_get_int(p, int(SPFOptTimeoutMS), &limit)
	s := &SPF{p: p, r: r, buf: make([]byte, 1024), timeoutMS: limit}
	runtime.SetFinalizer(s, (*SPF).Close)
	return s, nil
}

// SetOption sets an integer option.
func (s *SPF) SetOption(key SPFOption, v int64) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.p == 0 {
		return errClosedHandle("SPF.SetOption")
	}
	err := check(capi.Mxgw_spf_set_int(s.p, int(key), v), "SPF.SetOption", nil)
	if err == nil && key == SPFOptTimeoutMS {
		s.timeoutMS = v
	}
	return err
}

// Option reads an integer option.
func (s *SPF) Option(key SPFOption) (int64, error) {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.p == 0 {
		return 0, errClosedHandle("SPF.Option")
	}
	var v int64
	err := check(capi.Mxgw_spf_get_int(s.p, int(key), &v), "SPF.Option", nil)
	return v, err
}

// SetReceiver sets our host name (%{r}, receiver= in Received-SPF).
func (s *SPF) SetReceiver(name string) error { return s.setStr(100, name, "SPF.SetReceiver") }

// SetDefaultExplanation sets the macro string explaining a fail when the
// domain has no exp=.
func (s *SPF) SetDefaultExplanation(macro string) error {
	return s.setStr(101, macro, "SPF.SetDefaultExplanation")
}

func (s *SPF) setStr(key int, v, op string) error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.p == 0 {
		return errClosedHandle(op)
	}
	return check(capi.Mxgw_spf_set_str(s.p, key, v), op, nil)
}

// Close frees the evaluator (not its resolver).
func (s *SPF) Close() error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.p != 0 {
		capi.Mxgw_spf_free(s.p)
		s.p = 0
	}
	runtime.SetFinalizer(s, nil)
	return nil
}

// SPFRequest is what to check.
type SPFRequest struct {
	IP       string      // client address, IPv4 or IPv6
	Helo     string      // HELO/EHLO argument
	MailFrom string      // reverse path without <>, "" for the null sender
	Identity SPFIdentity // SPFMailFrom (default when 0) or SPFHelo

	// PermerrorReject makes the reply policy reject permerror (550 5.7.24).
	PermerrorReject bool

	// What to collect besides the result, the deciding term, the
	// explanation or problem, the counters and the gateway reply (always
	// there). Each costs formatting in the library, so it is asked for:
	WithTrace   bool // SPFCheck.Trace (about 4 µs for a short trace)
	WithHeaders bool // SPFCheck.ReceivedSPF and AuthResults (about 1 µs)
	WithJSON    bool // SPFCheck.JSON (about 20 µs)
	// AuthServID, with WithHeaders, makes AuthResults a complete
	// Authentication-Results header field for this host; otherwise it is
	// only the spf resinfo ("spf=pass (...) smtp.mailfrom=...").
	AuthServID string
}

// SPFTrace is one entry of a check's trace.
type SPFTrace struct {
	Depth int    // include depth
	Kind  string // "query", "record", "term", "result"
	Text  string
}

// SPFCheck is the outcome of one evaluation, copied out of the library.
type SPFCheck struct {
	Result        SPFResult
	Mechanism     string // the deciding term, "default", or ""
	Domain        string // the domain whose record decided
	Explanation   string // for fail
	Problem       string // for temperror / permerror
	ClientIP      string
	Sender        string
	Helo          string
	Identity      string // "mailfrom" or "helo"
	CheckedDomain string

	DNSTerms, VoidLookups, MXNames, PTRNames, DNSQueries int

	Trace       []SPFTrace // with SPFRequest.WithTrace
	ReceivedSPF string     // with WithHeaders: the Received-SPF header field, CRLF-terminated
	AuthResults string     // with WithHeaders: see SPFRequest.AuthServID
	JSON        []byte     // the whole check as JSON (only with SPFRequest.WithJSON)

	// The gateway policy (RFC 7372): ReplyCode 0 means accept; otherwise
	// reject with ReplyCode, ReplyEnh ("5.7.23") and ReplyText.
	ReplyCode int
	ReplyEnh  string
	ReplyText string
}

// Check evaluates SPF. It honours ctx: when ctx is done before the result
// is known, the check is aborted and ctx.Err() is returned. The library's
// own limit (SPFOptTimeoutMS) gives temperror instead.
func (s *SPF) Check(ctx context.Context, req SPFRequest) (*SPFCheck, error) {
	const op = "SPF.Check"
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := req.Identity
	if id == 0 {
		id = SPFMailFrom
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	if s.p == 0 {
		return nil, errClosedHandle(op)
	}
	// Like mxgw_spf_check_sync(): the evaluation is bounded by
	// SPFOptTimeoutMS (then aborted: temperror), and also by ctx. The
	// static resolver (and a warm c-ares cache) finish inside the first
	// call: one crossing into C for start and run.
	var libDeadline time.Time
	if s.timeoutMS > 0 {
		libDeadline = time.Now().Add(time.Duration(s.timeoutMS) * time.Millisecond)
	}
	done := ctx.Done()
	slice := func() int64 {
		sl := int64(-1)
		if !libDeadline.IsZero() {
			if sl = time.Until(libDeadline).Milliseconds() + 1; sl < 1 {
				sl = 1
			}
		}
		if done != nil && (sl < 0 || sl > 50) {
			sl = 50 // look at ctx every 50 ms
		}
		return sl
	}
	var chk uintptr
	rc := capi.Capi_spf_check(s.p, req.IP, req.Helo, req.MailFrom, int(id), slice(), &chk)
	if rc != 0 && Code(rc) != CodeTimeout {
		return nil, check(rc, op, s.r.errmsg)
	}
	defer capi.Mxgw_spf_check_free(chk)
	for Code(rc) == CodeTimeout && capi.Mxgw_spf_check_done(chk) == 0 {
		if err := ctx.Err(); err != nil {
			capi.Mxgw_spf_check_abort(chk)
			return nil, err
		}
		if !libDeadline.IsZero() && !time.Now().Before(libDeadline) {
			capi.Mxgw_spf_check_abort(chk) // temperror, "evaluation aborted"
			break
		}
		rc = capi.Mxgw_spf_check_run(chk, slice())
		if rc != 0 && Code(rc) != CodeTimeout {
			return nil, check(rc, op, s.r.errmsg)
		}
	}
	return s.collect(chk, &req)
}

// collect reads a finished check: the items in one crossing
// (capi_spf_collect), then what the request asks for.
func (s *SPF) collect(chk uintptr, req *SPFRequest) (*SPFCheck, error) {
	const op = "SPF.Check"
	n := capi.Capi_spf_collect(chk, s.buf)
	if n < 0 {
		return nil, check(n, op, nil)
	}
	if n > len(s.buf) {
		s.buf = make([]byte, n)
		if n = capi.Capi_spf_collect(chk, s.buf); n < 0 {
			return nil, check(n, op, nil)
		}
	}
	b := s.buf[:n]
	le := binary.LittleEndian
	c := &SPFCheck{Result: SPFResult(int32(le.Uint32(b)))}
	b = b[4:]
	var strs [9]string
	for i := range strs {
		l := le.Uint32(b)
		b = b[4:]
		if l != 0xffffffff {
			strs[i] = string(b[:l])
			b = b[l:]
		}
	}
	var ints [5]int
	for i := range ints {
		ints[i] = int(int64(le.Uint64(b)))
		b = b[8:]
	}
	c.Mechanism, c.Domain, c.Explanation, c.Problem, c.ClientIP = strs[0], strs[1], strs[2], strs[3], strs[4]
	c.Sender, c.Helo, c.Identity, c.CheckedDomain = strs[5], strs[6], strs[7], strs[8]
	c.DNSTerms, c.VoidLookups, c.MXNames, c.PTRNames, c.DNSQueries = ints[0], ints[1], ints[2], ints[3], ints[4]
	return collectMore(chk, req, c)
}

func collectMore(chk uintptr, req *SPFRequest, c *SPFCheck) (*SPFCheck, error) {
	const op = "SPF.Check"
	var b []byte
	if req.WithTrace {
		n := capi.Mxgw_spf_check_trace_count(chk)
		if n > 0 {
			c.Trace = make([]SPFTrace, 0, n)
		}
		for i := int64(0); i < n; i++ {
			var depth, kind int32
			if err := check(capi.Mxgw_spf_check_trace(chk, i, &depth, &kind, &b), op, nil); err != nil {
				return nil, err
			}
			c.Trace = append(c.Trace, SPFTrace{Depth: int(depth),
				Kind: capi.Mxgw_spf_trace_kind_name(int(kind)), Text: string(b)})
		}
	}
	if req.WithHeaders {
		if err := check(capi.Mxgw_spf_check_received_spf(chk, &b), op, nil); err != nil {
			return nil, err
		}
		c.ReceivedSPF = string(b)
		if err := check(capi.Mxgw_spf_check_auth_results(chk, req.AuthServID, &b), op, nil); err != nil {
			return nil, err
		}
		c.AuthResults = string(b)
	}
	if req.WithJSON {
		if err := check(capi.Mxgw_spf_check_json(chk, &b), op, nil); err != nil {
			return nil, err
		}
		c.JSON = b
	}
	// the reply: only fail, temperror and permerror can reject
	if c.Result == SPFFail || c.Result == SPFTemperror || c.Result == SPFPermerror {
		var code int32
		var enh string
		rej := 0
		if req.PermerrorReject {
			rej = 1
		}
		if err := check(capi.Mxgw_spf_check_reply(chk, rej, &code, &enh, &b), op, nil); err != nil {
			return nil, err
		}
		c.ReplyCode, c.ReplyEnh, c.ReplyText = int(code), enh, string(b)
	}
	return c, nil
}

// SPFPolicy maps a result to a gateway reply (RFC 7372): code 0 means
// accept.
func SPFPolicy(r SPFResult, permerrorReject bool) (code int, enh string, err error) {
	var c int32
	rej := 0
	if permerrorReject {
		rej = 1
	}
	err = check(capi.Mxgw_spf_policy(int(r), rej, &c, &enh), "SPFPolicy", nil)
	return int(c), enh, err
}
