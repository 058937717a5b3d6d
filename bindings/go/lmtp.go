// SPDX-License-Identifier: MIT

package mxgw

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"

	"libmxgw.org/mxgw/internal/capi"
)

// LMTPOption keys for LMTPConfig.SetOption (mxgw_lmtp_opt).
type LMTPOption int

const (
	LMTPOptConnectTimeoutMS LMTPOption = 1
	LMTPOptCommandTimeoutMS LMTPOption = 2
	LMTPOptDataTimeoutMS    LMTPOption = 3
	LMTPOptMaxMessages      LMTPOption = 4
	LMTPOptStartTLS         LMTPOption = 5 // 0 never, 1 when offered, 2 required
	LMTPOptXClient          LMTPOption = 6
	LMTPOptPipelining       LMTPOption = 7
	LMTPOptChunking         LMTPOption = 8
	LMTPOptChunkSize        LMTPOption = 9
	LMTPOptBodyBuffer       LMTPOption = 10
	LMTPOptLHLOName         LMTPOption = 100 // string
	LMTPOptTLSServerName    LMTPOption = 101 // string
)

// LMTPConfig configures LMTP clients; frozen once a client uses it.
type LMTPConfig struct {
	mu sync.Mutex
	p  uintptr
}

// NewLMTPConfig creates a configuration with the library defaults.
func NewLMTPConfig() (*LMTPConfig, error) {
	var p uintptr
	if err := check(capi.Mxgw_lmtp_config_new(&p), "NewLMTPConfig", nil); err != nil {
		return nil, err
	}
	c := &LMTPConfig{p: p}
	runtime.SetFinalizer(c, (*LMTPConfig).Close)
	return c, nil
}

func (c *LMTPConfig) do(op string, f func() int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return errClosedHandle(op)
	}
	return check(f(), op, nil)
}

// SetOption sets an integer option.
func (c *LMTPConfig) SetOption(key LMTPOption, v int64) error {
	return c.do("LMTPConfig.SetOption", func() int { return capi.Mxgw_lmtp_config_set_int(c.p, int(key), v) })
}

// Option reads an integer option.
func (c *LMTPConfig) Option(key LMTPOption) (int64, error) {
	var v int64
	err := c.do("LMTPConfig.Option", func() int { return capi.Mxgw_lmtp_config_get_int(c.p, int(key), &v) })
	return v, err
}

// SetString sets LMTPOptLHLOName or LMTPOptTLSServerName.
func (c *LMTPConfig) SetString(key LMTPOption, v string) error {
	return c.do("LMTPConfig.SetString", func() int { return capi.Mxgw_lmtp_config_set_str(c.p, int(key), v) })
}

// SetTLS attaches a loaded client TLS context (for STARTTLS).
func (c *LMTPConfig) SetTLS(t *TLS) error {
	h := t.handle()
	return c.do("LMTPConfig.SetTLS", func() int { return capi.Mxgw_lmtp_config_set_tls(c.p, h) })
}

// Close releases the caller's reference.
func (c *LMTPConfig) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != 0 {
		capi.Mxgw_lmtp_config_free(c.p)
		c.p = 0
	}
	runtime.SetFinalizer(c, nil)
	return nil
}

// LMTPRcpt is a recipient of an LMTPMessage.
type LMTPRcpt struct {
	Addr   string
	Notify int    // mxgw_notify bits (1 never, 2 success, 4 failure, 8 delay)
	ORcpt  string // "rfc822;addr" or ""
}

// LMTPMessage is the envelope of one delivery.
type LMTPMessage struct {
	From     string // "" for the null sender
	Rcpts    []LMTPRcpt
	Size     int64 // SIZE= estimate, 0 for none
	EightBit bool
	SMTPUTF8 bool
	EnvID    string
	// Original client, sent with XCLIENT when the backend offers it.
	XClientAddr, XClientHelo, XClientName, XClientProto, XClientLogin string
	XClientPort                                                       int
}

// LMTPStage says where a recipient's result came from.
type LMTPStage int

const (
	LMTPStageNone     LMTPStage = 0
	LMTPStageConnect  LMTPStage = 1
	LMTPStageMail     LMTPStage = 2
	LMTPStageRcpt     LMTPStage = 3
	LMTPStageData     LMTPStage = 4
	LMTPStageDelivery LMTPStage = 5
)

// LMTPResult is one recipient's outcome.
type LMTPResult struct {
	Addr  string
	Code  int    // 2xx delivered, 4xx try again, 5xx failed
	Enh   string // enhanced status code
	Text  string
	Stage LMTPStage
	Local bool // made up by the client (no reply from the backend)
}

// Delivered reports a 2xx result.
func (r LMTPResult) Delivered() bool { return r.Code >= 200 && r.Code < 300 }

// LMTPClient is a connection to one LMTP backend ("host:port",
// "[v6]:port", "unix:/path"); it connects on first use and reuses the
// connection for later messages.
type LMTPClient struct {
	mu sync.Mutex
	p  uintptr
}

// NewLMTPClient creates a client for target (nothing is connected yet).
func NewLMTPClient(cfg *LMTPConfig, target string) (*LMTPClient, error) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.p == 0 {
		return nil, errClosedHandle("NewLMTPClient")
	}
	var p uintptr
	if err := check(capi.Mxgw_lmtp_conn_new(&p, cfg.p, target), "NewLMTPClient", nil); err != nil {
		return nil, err
	}
	c := &LMTPClient{p: p}
	runtime.SetFinalizer(c, (*LMTPClient).Close)
	return c, nil
}

// Deliver sends one message, its body read from body until EOF, and
// returns every recipient's result (temporary failures included). A nil
// error with 4xx results is a normal outcome; an error means the call
// itself failed (bad envelope, unreadable body, ctx done). When ctx is
// done the message is abandoned: every recipient without a result gets a
// local 451 and ctx.Err() is returned with the results.
func (c *LMTPClient) Deliver(ctx context.Context, m *LMTPMessage, body io.Reader) ([]LMTPResult, error) {
	const op = "LMTPClient.Deliver"
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return nil, errClosedHandle(op)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := c.p
	cl := capi.Mxgw_lmtp_conn_client(k)
	msg := func() string { return capi.Mxgw_lmtp_errmsg(cl) }
	if err := prepareLMTP(cl, m, op); err != nil {
		return nil, err
	}
	// connect if needed (a closed connection is replaced), then submit
	if err := check(capi.Mxgw_lmtp_conn_open(k, nowMS()), op, msg); err != nil {
		return nil, err
	}
	cl = capi.Mxgw_lmtp_conn_client(k)
	if rc := capi.Mxgw_lmtp_msg_submit(cl, nowMS()); rc < 0 {
		if Code(rc) == CodeClosed {
			// The connection failed at once (a missing Unix socket): the
			// C driver reports MXGW_E_CLOSED here instead of failing the
			// message. Give every recipient the temporary failure that a
			// failed connection gets (451 4.4.1, local), as documented.
			why := capi.Mxgw_lmtp_errmsg(cl)
			res := make([]LMTPResult, 0, len(m.Rcpts))
			for _, r := range m.Rcpts {
				res = append(res, LMTPResult{Addr: r.Addr, Code: 451, Enh: "4.4.1", Text: why,
					Stage: LMTPStageConnect, Local: true})
			}
			return res, nil
		}
		return nil, check(rc, op, msg)
	}
	buf := make([]byte, 65536)
	var off, n int
	bodyDone, done := false, false
	aborted := 0
	var ioErr, ctxErr error
	for !done {
		for !bodyDone && capi.Mxgw_lmtp_want(cl)&8 != 0 {
			if off == n {
				r, err := body.Read(buf)
				off, n = 0, r
				if err != nil && !errors.Is(err, io.EOF) {
					ioErr = err
					capi.Mxgw_lmtp_abort(cl, "4.3.0", "cannot read the message: "+err.Error(), nowMS())
					bodyDone = true
					break
				}
				if r == 0 && err != nil {
					bodyDone = true
					if rc := capi.Mxgw_lmtp_body_end(cl, nowMS()); rc < 0 && Code(rc) != CodeState {
						return nil, check(rc, op, msg)
					}
					break
				}
				if r == 0 {
					continue
				}
			}
			t := capi.Mxgw_lmtp_body(cl, buf[off:n], nowMS())
			if t < 0 {
				return nil, check(t, op, msg)
			}
			off += t
			if t == 0 {
				break
			}
		}
		for {
			ev := capi.Mxgw_lmtp_next_event(cl)
			if ev <= 0 {
				break
			}
			if ev == 3 { // DONE
				done = true
			}
		}
		if done {
			break
		}
		if err := ctx.Err(); err != nil && ctxErr == nil {
			ctxErr = err
			capi.Mxgw_lmtp_abort(cl, "4.4.2", "delivery canceled", nowMS())
			continue
		}
		fd := capi.Mxgw_lmtp_conn_fd(k)
		if fd < 0 {
			// the connection failed or closed without finishing the
			// message: the client fails what is left (local 451)
			if aborted++; aborted > 3 {
				return nil, &Error{Code: CodeState, Op: op, Msg: "delivery did not finish"}
			}
			capi.Mxgw_lmtp_abort(cl, "", "", nowMS())
			continue
		}
		timeout := int64(100)
		if dl := capi.Mxgw_lmtp_conn_deadline(k); dl >= 0 {
			if d := dl - nowMS(); d < timeout {
				timeout = d
			}
		}
		if timeout < 0 {
			timeout = 0
		}
		rev := capi.Capi_poll(fd, capi.Mxgw_lmtp_conn_events(k), int(timeout))
		if rev < 0 {
			rev = 0
		}
		if err := check(capi.Mxgw_lmtp_conn_process(k, rev, nowMS()), op, msg); err != nil {
			return nil, err
		}
	}
	res := lmtpResults(cl)
	if ctxErr != nil {
		return res, ctxErr
	}
	if ioErr != nil {
		return res, &Error{Code: CodeIO, Op: op, Msg: "cannot read the message: " + ioErr.Error()}
	}
	return res, nil
}

// prepareLMTP builds message m on client cl (msg_new, options, recipients;
// not submitted).
func prepareLMTP(cl uintptr, m *LMTPMessage, op string) error {
	msg := func() string { return capi.Mxgw_lmtp_errmsg(cl) }
	if err := check(capi.Mxgw_lmtp_msg_new(cl, m.From), op, msg); err != nil {
		return err
	}
	if m.Size > 0 {
		capi.Mxgw_lmtp_msg_set_int(cl, 1, m.Size)
	}
	if m.EightBit {
		capi.Mxgw_lmtp_msg_set_int(cl, 2, 1)
	}
	if m.SMTPUTF8 {
		capi.Mxgw_lmtp_msg_set_int(cl, 3, 1)
	}
	if m.XClientPort > 0 {
		capi.Mxgw_lmtp_msg_set_int(cl, 5, int64(m.XClientPort))
	}
	for key, v := range map[int]string{100: m.EnvID, 101: m.XClientAddr, 102: m.XClientHelo,
		103: m.XClientName, 104: m.XClientProto, 105: m.XClientLogin} {
		if v != "" {
			if err := check(capi.Mxgw_lmtp_msg_set_str(cl, key, v), op, msg); err != nil {
				return err
			}
		}
	}
	for _, r := range m.Rcpts {
		if rc := capi.Mxgw_lmtp_msg_add_rcpt(cl, r.Addr, r.Notify, r.ORcpt); rc < 0 {
			return check(rc, op, msg)
		}
	}
	return nil
}

// lmtpResults reads every recipient's result of cl's current message.
func lmtpResults(cl uintptr) []LMTPResult {
	var nr int64
	capi.Mxgw_lmtp_get_int(cl, 155, &nr)
	res := make([]LMTPResult, 0, nr)
	for i := int64(0); i < nr; i++ {
		str := func(key int) string {
			var b []byte
			capi.Mxgw_lmtp_rcpt_get_str(cl, i, key, &b)
			return string(b)
		}
		num := func(key int) int {
			var v int64
			capi.Mxgw_lmtp_rcpt_get_int(cl, i, key, &v)
			return int(v)
		}
		res = append(res, LMTPResult{Addr: str(1), Enh: str(2), Text: str(3), Code: num(50),
			Stage: LMTPStage(num(51)), Local: num(52) == 1})
	}
	return res
}

// DeliverRange sends a message whose body is the length octets at offset
// in f, with the library's own blocking loop (mxgw_lmtp_conn_deliver_range:
// the body is read with pread, f's position is not used; no context). A
// file that ends before offset+length fails the call with ErrIO and
// nothing is claimed delivered (the connection is dropped; the next
// delivery reconnects). f stays open.
func (c *LMTPClient) DeliverRange(m *LMTPMessage, f *os.File, offset, length int64) ([]LMTPResult, error) {
	const op = "LMTPClient.DeliverRange"
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return nil, errClosedHandle(op)
	}
	k := c.p
	if err := prepareLMTP(capi.Mxgw_lmtp_conn_client(k), m, op); err != nil {
		return nil, err
	}
	rc := capi.Mxgw_lmtp_conn_deliver_range(k, int(f.Fd()), offset, length)
	runtime.KeepAlive(f)                // the descriptor stays open during the call
	cl := capi.Mxgw_lmtp_conn_client(k) // a fresh one if the connection closed
	if rc < 0 {
		// Nothing the driver left behind may wedge the connection (a
		// message in progress would make the next msg_new fail): drop it,
		// the next delivery reconnects. The detail is read first.
		why := capi.Mxgw_lmtp_errmsg(cl)
		capi.Mxgw_lmtp_abort(cl, "4.3.0", "delivery failed", nowMS())
		capi.Mxgw_lmtp_conn_quit(k)
		return nil, check(rc, op, func() string { return why })
	}
	return lmtpResults(cl), nil
}

// DeliverBody sends a message whose body is b (QueueEntry.OpenBody: the
// body where it lies, a range of a journal segment included) with
// DeliverRange. b stays open.
func (c *LMTPClient) DeliverBody(m *LMTPMessage, b *QueueBody) ([]LMTPResult, error) {
	return c.DeliverRange(m, b.File(), b.Offset(), b.Size())
}

// LMTPInfo describes the backend as last seen.
type LMTPInfo struct {
	Greeting   string
	Extensions int // mxgw_lmtp_ext bits
	XClient    string
	TLS        bool
	TLSProto   string
	LastReply  string
	Messages   int
}

// Info returns what the client knows about the backend.
func (c *LMTPClient) Info() LMTPInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return LMTPInfo{}
	}
	cl := capi.Mxgw_lmtp_conn_client(c.p)
	str := func(key int) string {
		var b []byte
		capi.Mxgw_lmtp_get_str(cl, key, &b)
		return string(b)
	}
	num := func(key int) int {
		var v int64
		capi.Mxgw_lmtp_get_int(cl, key, &v)
		return int(v)
	}
	return LMTPInfo{Greeting: str(100), XClient: str(101), TLSProto: str(102), LastReply: str(104),
		Extensions: num(150), TLS: num(152) == 1, Messages: num(153)}
}

// Quit sends QUIT (if connected) and closes the connection; the client
// stays usable (the next Deliver reconnects).
func (c *LMTPClient) Quit() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return errClosedHandle("LMTPClient.Quit")
	}
	return check(capi.Mxgw_lmtp_conn_quit(c.p), "LMTPClient.Quit", nil)
}

// DeliverFile sends a message from a file with the library's own blocking
// loop (no context).
func (c *LMTPClient) DeliverFile(m *LMTPMessage, path string) ([]LMTPResult, error) {
	f, err := openFile(path)
	if err != nil {
		return nil, &Error{Code: CodeIO, Op: "LMTPClient.DeliverFile", Msg: err.Error()}
	}
	defer f.Close()
	return c.Deliver(context.Background(), m, f)
}

// Close closes the socket (without QUIT) and frees the client.
func (c *LMTPClient) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != 0 {
		capi.Mxgw_lmtp_conn_free(c.p)
		c.p = 0
	}
	runtime.SetFinalizer(c, nil)
	return nil
}
