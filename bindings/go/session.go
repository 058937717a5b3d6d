// SPDX-License-Identifier: MIT

package mxgw

import (
	"runtime"
	"runtime/cgo"
	"sync"
	"time"

	"libmxgw.org/mxgw/internal/capi"
)

// SessionOption keys for SessionConfig.SetOption (mxgw_opt).
type SessionOption int

const (
	OptMaxMessageSize     SessionOption = 1
	OptMaxRecipients      SessionOption = 2
	OptMaxMessages        SessionOption = 3
	OptMaxCommandLine     SessionOption = 4
	OptMaxTextLine        SessionOption = 5
	OptMaxErrors          SessionOption = 6
	OptMaxUnknownCommands SessionOption = 7
	OptMaxJunkCommands    SessionOption = 8
	OptCommandTimeoutMS   SessionOption = 9
	OptDataTimeoutMS      SessionOption = 10
	OptBareNewline        SessionOption = 11 // 0 reject, 1 normalize
	OptStartTLS           SessionOption = 12
	OptRequireTLS         SessionOption = 13
	OptAuth               SessionOption = 14
	OptAuthPlaintext      SessionOption = 15
	OptRequireAuth        SessionOption = 16
	OptSMTPUTF8           SessionOption = 17
	OptChunking           SessionOption = 18
	OptDSN                SessionOption = 19
	Opt8BitMIME           SessionOption = 20
	OptPipelining         SessionOption = 21
	OptInputBuffer        SessionOption = 22
	OptOutputBuffer       SessionOption = 23
	OptRejectHTTP         SessionOption = 24
	OptImplicitTLS        SessionOption = 25
	OptHostname           SessionOption = 100 // string
	OptGreeting           SessionOption = 101 // string
)

// SessionConfig is a session configuration; it is frozen (read-only,
// shareable) once a session uses it.
type SessionConfig struct {
	mu     sync.Mutex
	p      uintptr
	hasTLS bool // a TLS context is attached (Serve needs it for STARTTLS)
}

// NewSessionConfig creates a configuration with the library defaults.
func NewSessionConfig() (*SessionConfig, error) {
	var p uintptr
	if err := check(capi.Mxgw_session_config_new(&p), "NewSessionConfig", nil); err != nil {
		return nil, err
	}
	c := &SessionConfig{p: p}
	runtime.SetFinalizer(c, (*SessionConfig).Close)
	return c, nil
}

func (c *SessionConfig) do(op string, f func() int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return errClosedHandle(op)
	}
	return check(f(), op, nil)
}

// SetOption sets an integer option. ErrBusy once a session uses it.
func (c *SessionConfig) SetOption(key SessionOption, v int64) error {
	return c.do("SessionConfig.SetOption", func() int { return capi.Mxgw_session_config_set_int(c.p, int(key), v) })
}

// Option reads an integer option.
func (c *SessionConfig) Option(key SessionOption) (int64, error) {
	var v int64
	err := c.do("SessionConfig.Option", func() int { return capi.Mxgw_session_config_get_int(c.p, int(key), &v) })
	return v, err
}

// SetString sets OptHostname or OptGreeting.
func (c *SessionConfig) SetString(key SessionOption, v string) error {
	return c.do("SessionConfig.SetString", func() int { return capi.Mxgw_session_config_set_str(c.p, int(key), v) })
}

// SetTLS attaches a loaded server TLS context: sessions then run STARTTLS
// (OptStartTLS) or implicit TLS themselves. nil detaches.
func (c *SessionConfig) SetTLS(t *TLS) error {
	h := t.handle()
	return c.do("SessionConfig.SetTLS", func() int {
		rc := capi.Mxgw_session_config_set_tls(c.p, h)
		if rc == 0 {
			c.hasTLS = h != 0
		}
		return rc
	})
}

// Close releases the caller's reference (sessions keep their own).
func (c *SessionConfig) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != 0 {
		capi.Mxgw_session_config_free(c.p)
		c.p = 0
	}
	runtime.SetFinalizer(c, nil)
	return nil
}

// Event is a session event (mxgw_event).
type Event int

const (
	EventNone         Event = 0
	EventConnect      Event = 1 // decision
	EventHelo         Event = 2 // decision
	EventStartTLS     Event = 3 // decision
	EventAuth         Event = 4 // decision
	EventMail         Event = 5 // decision
	EventRcpt         Event = 6 // decision
	EventData         Event = 7 // decision
	EventBody         Event = 8
	EventMessageEnd   Event = 9 // decision
	EventMessageAbort Event = 10
	EventRset         Event = 11
	EventClose        Event = 12
)

var eventNames = [...]string{"none", "connect", "helo", "starttls", "auth", "mail",
	"rcpt", "data", "body", "message-end", "message-abort", "rset", "close"}

func (e Event) String() string {
	if e >= 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "unknown"
}

// IsDecision reports whether the event waits for Accept or Reply.
func (e Event) IsDecision() bool {
	switch e {
	case EventConnect, EventHelo, EventStartTLS, EventAuth, EventMail, EventRcpt,
		EventData, EventMessageEnd:
		return true
	}
	return false
}

// Info keys for Session.String / Session.Int (mxgw_info).
type Info int

const (
	InfoData           Info = 1
	InfoHelo           Info = 2
	InfoPeerAddr       Info = 3
	InfoPeerHost       Info = 4
	InfoMailFrom       Info = 5
	InfoRcpt           Info = 6
	InfoEnvID          Info = 7
	InfoRet            Info = 8
	InfoBody           Info = 9
	InfoMailAuth       Info = 10
	InfoNotify         Info = 11
	InfoORcpt          Info = 12
	InfoAuthMech       Info = 13
	InfoAuthAuthzID    Info = 14
	InfoAuthUser       Info = 15
	InfoAuthPassword   Info = 16
	InfoAuthIdentity   Info = 17
	InfoTLSProtocol    Info = 18
	InfoTLSCipher      Info = 19
	InfoHostname       Info = 20
	InfoTLSPeerSubject Info = 21
	InfoTLSSNI         Info = 22
	InfoIsEHLO         Info = 100
	InfoSize           Info = 101
	InfoSMTPUTF8       Info = 102
	InfoRcptCount      Info = 103
	InfoMessageSize    Info = 104
	InfoTLS            Info = 105
	InfoAuthenticated  Info = 106
	InfoMessages       Info = 107
	InfoCommands       Info = 108
	InfoErrors         Info = 109
	InfoBytesIn        Info = 110
	InfoBytesOut       Info = 111
	InfoNotifyFlags    Info = 112
	InfoBDAT           Info = 113
	InfoPeerPort       Info = 114
)

// Want bits (mxgw_want).
type Want int

const (
	WantRead  Want = 1
	WantWrite Want = 2
	WantClose Want = 4
)

// LogKind is the kind of a session log record (mxgw_log_kind).
type LogKind int

const (
	LogConnect    LogKind = 1
	LogCommand    LogKind = 2
	LogReply      LogKind = 3
	LogProtocol   LogKind = 4
	LogDisconnect LogKind = 5
	LogTLS        LogKind = 6
)

// Session is one SMTP server session: the sans-IO engine. Feed it the
// client's bytes, pull events, answer decisions, write its Output. Serve
// (serve.go) drives it over a net.Conn.
type Session struct {
	mu   sync.Mutex
	p    uintptr
	logH cgo.Handle
}

// NewSession creates a session from cfg (which is frozen from now on).
func NewSession(cfg *SessionConfig) (*Session, error) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.p == 0 {
		return nil, errClosedHandle("NewSession")
	}
	var p uintptr
	if err := check(capi.Mxgw_session_new(&p, cfg.p), "NewSession", nil); err != nil {
		return nil, err
	}
	s := &Session{p: p}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

func (s *Session) errmsg() string { return capi.Mxgw_session_errmsg(s.p) }

func (s *Session) do(op string, f func() int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == 0 {
		return 0, errClosedHandle(op)
	}
	rc := f()
	return rc, check(rc, op, s.errmsg)
}

// SetPeer describes the client (before Start); host "" is "unknown".
func (s *Session) SetPeer(addr string, port int, host string) error {
	_, err := s.do("Session.SetPeer", func() int { return capi.Mxgw_session_set_peer(s.p, addr, port, host) })
	return err
}

// Start starts the session; the first event is EventConnect.
func (s *Session) Start() error {
	_, err := s.do("Session.Start", func() int { return capi.Mxgw_session_start(s.p, nowMS()) })
	return err
}

// Feed gives the session bytes from the client; it returns how many it
// took (fewer when its input buffer is full: offer the rest again later).
func (s *Session) Feed(b []byte) (int, error) {
	return s.do("Session.Feed", func() int { return capi.Mxgw_session_feed(s.p, b, nowMS()) })
}

// EOF tells the session that the client closed its sending side.
func (s *Session) EOF() error {
	_, err := s.do("Session.EOF", func() int { return capi.Mxgw_session_eof(s.p) })
	return err
}

// Abort tells the session that the connection is gone.
func (s *Session) Abort() error {
	_, err := s.do("Session.Abort", func() int { return capi.Mxgw_session_abort(s.p) })
	return err
}

// NextEvent processes buffered input and returns the next event
// (EventNone when there is nothing to report).
func (s *Session) NextEvent() (Event, error) {
	rc, err := s.do("Session.NextEvent", func() int { return capi.Mxgw_session_next_event(s.p) })
	if err != nil {
		return EventNone, err
	}
	return Event(rc), nil
}

// Output returns a copy of the bytes waiting to be written to the client;
// call Consume with what was written.
func (s *Session) Output() []byte {
	var b []byte
	s.do("Session.Output", func() int { return capi.Mxgw_session_output(s.p, &b) })
	return b
}

// Consume marks n bytes of Output as written.
func (s *Session) Consume(n int) error {
	_, err := s.do("Session.Consume", func() int { return capi.Mxgw_session_consume(s.p, int64(n)) })
	return err
}

// Want says what the session needs now.
func (s *Session) Want() Want {
	rc, _ := s.do("Session.Want", func() int { return capi.Mxgw_session_want(s.p) })
	return Want(rc)
}

// Deadline returns when Tick is due (ok false when no timer runs).
func (s *Session) Deadline() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == 0 {
		return time.Time{}, false
	}
	d := capi.Mxgw_session_deadline(s.p)
	if d < 0 {
		return time.Time{}, false
	}
	return monoBase.Add(time.Duration(d) * time.Millisecond), true
}

// Tick advances time; it reports whether a timeout fired (421 queued).
func (s *Session) Tick() (bool, error) {
	rc, err := s.do("Session.Tick", func() int { return capi.Mxgw_session_tick(s.p, nowMS()) })
	return rc == 1, err
}

// Shutdown queues "421 4.3.2 <host> text" ("" for the default) and closes.
func (s *Session) Shutdown(text string) error {
	_, err := s.do("Session.Shutdown", func() int { return capi.Mxgw_session_shutdown(s.p, text) })
	return err
}

// Accept answers the pending decision with its default reply.
func (s *Session) Accept() error {
	_, err := s.do("Session.Accept", func() int { return capi.Mxgw_session_accept(s.p) })
	return err
}

// Reply answers the pending decision with code, enhanced code ("" for the
// default) and text ("" for the default; "\n" separates lines).
func (s *Session) Reply(code int, enh, text string) error {
	_, err := s.do("Session.Reply", func() int { return capi.Mxgw_session_reply(s.p, code, enh, text) })
	return err
}

// Pending returns the decision waiting for an answer (EventNone if none).
func (s *Session) Pending() Event {
	rc, _ := s.do("Session.Pending", func() int { return capi.Mxgw_session_pending(s.p) })
	return Event(rc)
}

// StartTLSDone reports an application-run TLS handshake after an accepted
// STARTTLS (only without a TLS context in the configuration).
func (s *Session) StartTLSDone(protocol, cipher string) error {
	_, err := s.do("Session.StartTLSDone", func() int { return capi.Mxgw_session_starttls_done(s.p, protocol, cipher) })
	return err
}

// Bytes reads a string item as bytes (a copy). ErrNotFound when unset.
func (s *Session) Bytes(key Info) ([]byte, error) {
	var b []byte
	_, err := s.do("Session.Bytes", func() int { return capi.Mxgw_session_get_str(s.p, int(key), &b) })
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// String reads a string item ("" when unset).
func (s *Session) String(key Info) string {
	b, _ := s.Bytes(key)
	return string(b)
}

// Int reads an integer item.
func (s *Session) Int(key Info) (int64, error) {
	var v int64
	_, err := s.do("Session.Int", func() int { return capi.Mxgw_session_get_int(s.p, int(key), &v) })
	return v, err
}

// RcptString reads InfoRcpt, InfoNotify or InfoORcpt of accepted recipient idx.
func (s *Session) RcptString(idx int, key Info) (string, error) {
	var b []byte
	_, err := s.do("Session.RcptString", func() int { return capi.Mxgw_session_rcpt_get_str(s.p, int64(idx), int(key), &b) })
	return string(b), err
}

// RcptInt reads InfoNotifyFlags of accepted recipient idx.
func (s *Session) RcptInt(idx int, key Info) (int64, error) {
	var v int64
	_, err := s.do("Session.RcptInt", func() int { return capi.Mxgw_session_rcpt_get_int(s.p, int64(idx), int(key), &v) })
	return v, err
}

// ReceivedHeader builds the Received: header of the current message
// (CRLF-terminated, folded). queueID "" leaves the id clause out.
func (s *Session) ReceivedHeader(queueID string, when time.Time) (string, error) {
	var b []byte
	_, err := s.do("Session.ReceivedHeader", func() int {
		return capi.Mxgw_session_received_header(s.p, queueID, when.Unix(), &b)
	})
	return string(b), err
}

// SetLogger installs (nil removes) the session's log hook. It runs
// synchronously inside session calls; a panic in it is recovered and the
// record dropped.
func (s *Session) SetLogger(f func(kind LogKind, text string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == 0 {
		return
	}
	old := s.logH
	s.logH = 0
	if f != nil {
		s.logH = cgo.NewHandle(capi.LogFunc(func(kind int, text string) {
			defer func() { _ = recover() }()
			f(LogKind(kind), text)
		}))
	}
	capi.Capi_session_set_log(s.p, uint(s.logH))
	if old != 0 {
		old.Delete()
	}
}

// Close frees the session.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != 0 {
		capi.Mxgw_session_free(s.p)
		s.p = 0
	}
	if s.logH != 0 {
		s.logH.Delete()
		s.logH = 0
	}
	runtime.SetFinalizer(s, nil)
	return nil
}
