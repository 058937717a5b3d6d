// SPDX-License-Identifier: MIT

package mxgw

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"

	"libmxgw.org/mxgw/internal/capi"
)

// ServerOption keys for ServerConfig.SetOption (mxgw_server_opt).
type ServerOption int

const (
	SrvOptMaxConnections  ServerOption = 1001
	SrvOptMaxConnPerIP    ServerOption = 1002
	SrvOptConnRatePerIP   ServerOption = 1003
	SrvOptGreetingDelayMS ServerOption = 1004
	SrvOptSPF             ServerOption = 1005
	SrvOptSPFTimeoutMS    ServerOption = 1006
	SrvOptSPFAction       ServerOption = 1010 // + SPFResult
	SrvOptPolicyWorkers   ServerOption = 1020
	SrvOptPolicyTimeoutMS ServerOption = 1021
	SrvOptQueueSync       ServerOption = 1030
	SrvOptQueueWorkers    ServerOption = 1031
	SrvOptDeliver         ServerOption = 1032
	SrvOptLogProtocol     ServerOption = 1040
	SrvOptBacklog         ServerOption = 1041
	SrvOptProxyTimeoutMS  ServerOption = 1042
	SrvOptAuthRelay       ServerOption = 1043
	SrvOptDrainTimeoutMS  ServerOption = 1044
	SrvOptTLSCheckMS      ServerOption = 1045
	SrvOptSpoolDir        ServerOption = 1100 // string
	SrvOptDNSServers      ServerOption = 1101 // string
	SrvOptDNSOptions      ServerOption = 1102 // string
	SrvStatConnections    ServerOption = 2000
	SrvStatSessions       ServerOption = 2001
	SrvStatRefused        ServerOption = 2002
	SrvStatMessages       ServerOption = 2003
	SrvStatCommitErrors   ServerOption = 2004
	SrvStatRejectedRcpt   ServerOption = 2005
	SrvStatSPFChecks      ServerOption = 2006
	SrvStatPolicyCalls    ServerOption = 2007
	SrvStatEarlyTalkers   ServerOption = 2008
	SrvStatLoops          ServerOption = 2009
	SrvStatDraining       ServerOption = 2010
	SrvStatReloads        ServerOption = 2011
	SrvStatDelivered      ServerOption = 2012
	SrvStatProxyErrors    ServerOption = 2013
)

// The queue's incoming journal (QueueOptJournal) in the server's spool.
const (
	// 1 (the default): messages up to SrvOptQueueJournalMaxBody octets are
	// committed by appending them to a journal segment; 0 = two files per
	// message.
	SrvOptQueueJournal ServerOption = 1033
	// Largest body committed to the journal, octets [1048576].
	SrvOptQueueJournalMaxBody ServerOption = 1034
)

// ServerAction is the action for an SPF result (SrvOptSPFAction+result).
type ServerAction int

const (
	ActionAccept   ServerAction = 0
	ActionReject   ServerAction = 1
	ActionTempfail ServerAction = 2
)

// ListenMode is a listener's mode.
type ListenMode int

const (
	ListenSMTP       ListenMode = 1
	ListenSubmission ListenMode = 2
	ListenSMTPS      ListenMode = 3
)

// ListenerOption keys (mxgw_listener_opt).
type ListenerOption int

const (
	ListenerTLS           ListenerOption = 1 // 0 none, 1 may, 2 encrypt
	ListenerProxy         ListenerOption = 2
	ListenerAuthPlaintext ListenerOption = 3
)

// Stage is a policy decision stage (mxgw_server_stage).
type Stage int

const (
	StageConnect    Stage = 1
	StageHelo       Stage = 2
	StageAuth       Stage = 3
	StageMail       Stage = 4
	StageRcpt       Stage = 5
	StageMessageEnd Stage = 6
)

var stageNames = [...]string{"", "connect", "helo", "auth", "mail", "rcpt", "message-end"}

func (s Stage) String() string {
	if s > 0 && int(s) < len(stageNames) {
		return stageNames[s]
	}
	return "unknown"
}

// LogLevel of a server log line.
type LogLevel int

const (
	LogDebug   LogLevel = 0
	LogInfo    LogLevel = 1
	LogNotice  LogLevel = 2
	LogWarning LogLevel = 3
	LogError   LogLevel = 4
)

// PolicyRequest is what a policy callback decides on. It is valid only
// during the callback.
type PolicyRequest struct {
	p     uintptr
	Stage Stage
}

// String returns a string item (mxgw_server_req_key 1..99), "" if unset.
func (r *PolicyRequest) String(key int) string {
	if r.p == 0 {
		return ""
	}
	return capi.Mxgw_server_req_get_str(r.p, key)
}

// Int returns an integer item (mxgw_server_req_key 100..).
func (r *PolicyRequest) Int(key int) int64 {
	if r.p == 0 {
		return 0
	}
	return capi.Mxgw_server_req_get_int(r.p, key)
}

func (r *PolicyRequest) ClientAddr() string { return r.String(1) }
func (r *PolicyRequest) ClientHost() string { return r.String(2) }
func (r *PolicyRequest) Helo() string       { return r.String(3) }
func (r *PolicyRequest) MailFrom() string   { return r.String(4) }
func (r *PolicyRequest) Rcpt() string       { return r.String(5) }
func (r *PolicyRequest) QueueID() string    { return r.String(6) }
func (r *PolicyRequest) SPFResult() string  { return r.String(7) }
func (r *PolicyRequest) AuthUser() string   { return r.String(9) }
func (r *PolicyRequest) Size() int64        { return r.Int(106) }
func (r *PolicyRequest) SessionID() int64   { return r.Int(108) }
func (r *PolicyRequest) TLS() bool          { return r.Int(103) == 1 }

// Rcpts returns the recipients accepted so far (all of them at
// StageMessageEnd).
func (r *PolicyRequest) Rcpts() []string {
	if r.p == 0 {
		return nil
	}
	n := r.Int(105)
	out := make([]string, 0, n)
	for i := int64(0); i < n; i++ {
		out = append(out, capi.Mxgw_server_req_rcpt(r.p, i))
	}
	return out
}

// PolicyFunc decides a stage: nil accepts, a *Reply answers. It runs on a
// library policy worker thread and may block (the session waits, others
// go on); callbacks of different sessions may run at the same time. A
// panic is recovered: the client gets 451 4.3.0 and the error goes to the
// configuration's error hook and to the server log.
type PolicyFunc func(req *PolicyRequest) *Reply

// ServerConfig is a server configuration (listeners, domains, backends,
// limits, SPF, callbacks); frozen once a server uses it.
type ServerConfig struct {
	mu      sync.Mutex
	p       uintptr
	refs    int // the caller's reference + one per server using it
	handles []cgo.Handle
	onError func(error)
}

// NewServerConfig creates a configuration with the library defaults.
func NewServerConfig() (*ServerConfig, error) {
	var p uintptr
	if err := check(capi.Mxgw_server_config_new(&p), "NewServerConfig", nil); err != nil {
		return nil, err
	}
	c := &ServerConfig{p: p, refs: 1}
	runtime.SetFinalizer(c, (*ServerConfig).Close)
	return c, nil
}

func (c *ServerConfig) do(op string, f func() int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return 0, errClosedHandle(op)
	}
	rc := f()
	return rc, check(rc, op, func() string { return capi.Mxgw_server_config_errmsg(c.p) })
}

// SetOption sets a server option.
func (c *ServerConfig) SetOption(key ServerOption, v int64) error {
	_, err := c.do("ServerConfig.SetOption", func() int { return capi.Mxgw_server_config_set_int(c.p, int(key), v) })
	return err
}

// SetSessionOption sets a session option for every listener.
func (c *ServerConfig) SetSessionOption(key SessionOption, v int64) error {
	_, err := c.do("ServerConfig.SetSessionOption", func() int { return capi.Mxgw_server_config_set_int(c.p, int(key), v) })
	return err
}

// Option reads an option.
func (c *ServerConfig) Option(key int) (int64, error) {
	var v int64
	_, err := c.do("ServerConfig.Option", func() int { return capi.Mxgw_server_config_get_int(c.p, key, &v) })
	return v, err
}

// SetString sets a string option: OptHostname, OptGreeting (session) or
// SrvOptSpoolDir, SrvOptDNSServers, SrvOptDNSOptions.
func (c *ServerConfig) SetString(key int, v string) error {
	_, err := c.do("ServerConfig.SetString", func() int { return capi.Mxgw_server_config_set_str(c.p, key, v) })
	return err
}

// AddListener adds a listener (numeric address; port 0 picks a free one)
// and returns its index.
func (c *ServerConfig) AddListener(addr string, port int, mode ListenMode) (int, error) {
	return c.do("ServerConfig.AddListener", func() int { return capi.Mxgw_server_config_add_listener(c.p, addr, port, int(mode)) })
}

// SetListenerOption sets an option of listener idx.
func (c *ServerConfig) SetListenerOption(idx int, key ListenerOption, v int64) error {
	_, err := c.do("ServerConfig.SetListenerOption", func() int {
		return capi.Mxgw_server_config_listener_set_int(c.p, idx, int(key), v)
	})
	return err
}

// SetListenerTLS attaches a loaded server TLS context to listener idx.
func (c *ServerConfig) SetListenerTLS(idx int, t *TLS) error {
	h := t.handle()
	_, err := c.do("ServerConfig.SetListenerTLS", func() int { return capi.Mxgw_server_config_listener_set_tls(c.p, idx, h) })
	return err
}

// AddDomain adds an accepted domain ("example.org", ".example.org").
func (c *ServerConfig) AddDomain(domain string) error {
	_, err := c.do("ServerConfig.AddDomain", func() int { return capi.Mxgw_server_config_add_domain(c.p, domain) })
	return err
}

// AddBackend appends an LMTP backend ("host:port", "unix:/path").
func (c *ServerConfig) AddBackend(target string) error {
	_, err := c.do("ServerConfig.AddBackend", func() int { return capi.Mxgw_server_config_add_backend(c.p, target) })
	return err
}

// SetDeliverOption sets a delivery option (mxgw_deliver_opt).
func (c *ServerConfig) SetDeliverOption(key int, v int64) error {
	_, err := c.do("ServerConfig.SetDeliverOption", func() int { return capi.Mxgw_server_config_set_deliver_int(c.p, key, v) })
	return err
}

// SetDeliverString sets a delivery string option (mxgw_deliver_opt_str:
// bounce recipient, TLS server name).
func (c *ServerConfig) SetDeliverString(key int, v string) error {
	_, err := c.do("ServerConfig.SetDeliverString", func() int { return capi.Mxgw_server_config_set_deliver_str(c.p, key, v) })
	return err
}

// SetDeliverTLS attaches a loaded client TLS context for STARTTLS to the
// LMTP backends (nil detaches).
func (c *ServerConfig) SetDeliverTLS(t *TLS) error {
	h := t.handle()
	_, err := c.do("ServerConfig.SetDeliverTLS", func() int { return capi.Mxgw_server_config_set_deliver_tls(c.p, h) })
	return err
}

// OnError sets a hook for errors of the Go callbacks (panics). It is
// called on library threads.
func (c *ServerConfig) OnError(f func(error)) {
	c.mu.Lock()
	c.onError = f
	c.mu.Unlock()
}

func (c *ServerConfig) reportError(err error) {
	c.mu.Lock()
	f := c.onError
	c.mu.Unlock()
	if f != nil {
		func() {
			defer func() { _ = recover() }()
			f(err)
		}()
	}
}

// SetLogger installs the server log hook (Postfix-style lines). It is
// called on library threads, never twice at once.
func (c *ServerConfig) SetLogger(f func(level LogLevel, line string)) error {
	var h cgo.Handle
	if f != nil {
		h = cgo.NewHandle(capi.ServerLogFunc(func(level int, line string) {
			defer func() { _ = recover() }()
			f(LogLevel(level), line)
		}))
	}
	_, err := c.do("ServerConfig.SetLogger", func() int {
		rc := capi.Capi_server_config_set_log(c.p, uint(h))
		if rc == 0 && h != 0 {
			c.handles = append(c.handles, h)
		}
		return rc
	})
	if err != nil && h != 0 {
		h.Delete()
	}
	return err
}

// SetPolicy installs (nil removes) the policy callback of a stage.
func (c *ServerConfig) SetPolicy(stage Stage, f PolicyFunc) error {
	var h cgo.Handle
	if f != nil {
		h = cgo.NewHandle(capi.PolicyFunc(func(req uintptr) (rc int) {
			r := &PolicyRequest{p: req, Stage: stage}
			defer func() {
				r.p = 0
				if v := recover(); v != nil {
					c.reportError(&PanicError{Stage: Event(stage), Value: v,
						policy: true})
					rc = -1
				}
			}()
			reply := f(r)
			if reply == nil || reply.Code == 0 {
				return 0
			}
			if rc := capi.Mxgw_server_req_reply(req, reply.Code, reply.Enh, reply.Text); rc < 0 {
				c.reportError(&Error{Code: Code(rc), Op: "PolicyFunc",
					Msg: fmt.Sprintf("invalid reply %d %q %q", reply.Code, reply.Enh, reply.Text)})
				return rc
			}
			return 0
		}))
	}
	_, err := c.do("ServerConfig.SetPolicy", func() int {
		rc := capi.Capi_server_config_set_policy(c.p, int(stage), uint(h))
		if rc == 0 && h != 0 {
			c.handles = append(c.handles, h)
		}
		return rc
	})
	if err != nil && h != 0 {
		h.Delete()
	}
	return err
}

func (c *ServerConfig) acquire() uintptr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == 0 {
		return 0
	}
	c.refs++
	return c.p
}

// release drops a reference; the Go callbacks are deleted with the last.
func (c *ServerConfig) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs--
	if c.refs == 0 {
		for _, h := range c.handles {
			h.Delete()
		}
		c.handles = nil
	}
}

// Close releases the caller's reference (servers keep theirs; the Go
// callbacks stay alive until the last server using it is closed).
func (c *ServerConfig) Close() error {
	c.mu.Lock()
	if c.p == 0 {
		c.mu.Unlock()
		return nil
	}
	capi.Mxgw_server_config_free(c.p)
	c.p = 0
	c.mu.Unlock()
	runtime.SetFinalizer(c, nil)
	c.release()
	return nil
}

// Server is the gateway: listeners, sessions, policies, queue and delivery,
// on the library's own threads. Its owner-thread calls (create, start, run,
// free) all run on one locked OS thread.
type Server struct {
	ops   chan func()
	p     uintptr
	cfgs  []*ServerConfig
	ports []int
	mu    sync.Mutex
	state int // 0 new, 1 started, 2 running, 3 closed
}

// NewServer validates cfg and creates a server (nothing is opened yet).
func NewServer(cfg *ServerConfig) (*Server, error) {
	cp := cfg.acquire()
	if cp == 0 {
		return nil, errClosedHandle("NewServer")
	}
	s := &Server{ops: make(chan func())}
	go s.owner()
	var err error
	s.exec(func() {
		var p uintptr
		rc := capi.Mxgw_server_new(&p, cp)
		if rc < 0 {
			msg := ""
			if p != 0 {
				msg = capi.Mxgw_server_errmsg(p)
				capi.Mxgw_server_free(p)
			}
			err = &Error{Code: Code(rc), Op: "NewServer", Msg: msg}
			return
		}
		s.p = p
	})
	if err != nil {
		close(s.ops)
		cfg.release()
		return nil, err
	}
	s.cfgs = []*ServerConfig{cfg}
	runtime.SetFinalizer(s, (*Server).Close)
	return s, nil
}

func (s *Server) owner() {
	runtime.LockOSThread() // never unlocked: the thread ends with the server
	for f := range s.ops {
		f()
	}
}

func (s *Server) exec(f func()) {
	done := make(chan struct{})
	s.ops <- func() { defer close(done); f() }
	<-done
}

// Start opens the spool, the resolver and the listening sockets and starts
// the queue, delivery and policy threads.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == 3 {
		return errClosedHandle("Server.Start")
	}
	if s.state != 0 {
		return &Error{Code: CodeState, Op: "Server.Start", Msg: "already started"}
	}
	var err error
	s.exec(func() {
		rc := capi.Mxgw_server_start(s.p)
		if rc < 0 {
			err = &Error{Code: Code(rc), Op: "Server.Start", Msg: capi.Mxgw_server_errmsg(s.p)}
			return
		}
		s.ports = nil
		for i := 0; ; i++ {
			port := capi.Mxgw_server_listener_port(s.p, i)
			if port < 0 {
				break
			}
			s.ports = append(s.ports, port)
		}
	})
	if err == nil {
		s.state = 1
	}
	return err
}

// Ports returns the bound port of each listener (after Start).
func (s *Server) Ports() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.ports...)
}

// Run starts the server if needed and serves with `loops` event loops
// (0: one per CPU) until ctx is done (then it drains: sessions finish
// their transaction within SrvOptDrainTimeoutMS) or Drain/Stop completed.
func (s *Server) Run(ctx context.Context, loops int) error {
	s.mu.Lock()
	if s.state == 0 {
		s.mu.Unlock()
		if err := s.Start(); err != nil {
			return err
		}
		s.mu.Lock()
	}
	if s.state != 1 {
		s.mu.Unlock()
		return &Error{Code: CodeState, Op: "Server.Run", Msg: "not startable"}
	}
	s.state = 2
	p := s.p
	s.mu.Unlock()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-ctx.Done():
			capi.Mxgw_server_drain(p, -1)
		case <-stop:
		}
	}()
	var err error
	s.exec(func() {
		if rc := capi.Mxgw_server_run(p, loops); rc < 0 {
			err = &Error{Code: Code(rc), Op: "Server.Run", Msg: capi.Mxgw_server_errmsg(p)}
		}
	})
	return err
}

// Drain stops accepting and lets sessions finish (timeout < 0: the
// configured default). Any goroutine.
func (s *Server) Drain(timeout time.Duration) {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p != 0 {
		ms := int64(-1)
		if timeout >= 0 {
			ms = timeout.Milliseconds()
		}
		capi.Mxgw_server_drain(p, ms)
	}
}

// Stop is Drain(0): every session gets its 421 now.
func (s *Server) Stop() { s.Drain(0) }

// Stat reads a counter (SrvStat*) or an option. Any goroutine.
func (s *Server) Stat(key ServerOption) (int64, error) {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == 0 {
		return 0, errClosedHandle("Server.Stat")
	}
	var v int64
	err := check(capi.Mxgw_server_get_int(p, int(key), &v), "Server.Stat", nil)
	return v, err
}

// Reload reloads the certificates (cfg nil) or takes a new configuration
// for new sessions (same listeners).
func (s *Server) Reload(cfg *ServerConfig) error {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p == 0 {
		return errClosedHandle("Server.Reload")
	}
	var cp uintptr
	if cfg != nil {
		if cp = cfg.acquire(); cp == 0 {
			return errClosedHandle("Server.Reload")
		}
	}
	rc := capi.Mxgw_server_reload(p, cp)
	if rc < 0 && Code(rc) != CodeTLS && cfg != nil {
		cfg.release()
		return check(rc, "Server.Reload", nil)
	}
	if cfg != nil {
		s.mu.Lock()
		s.cfgs = append(s.cfgs, cfg)
		s.mu.Unlock()
	}
	return check(rc, "Server.Reload", nil)
}

// Close stops everything at once and frees the server. Do not call it
// while Run is running (drain first: Run returns, then Close).
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == 3 {
		return nil
	}
	if s.state == 2 {
		// Run may still be serving: stop it, then free on the owner
		// thread once Run has returned
		capi.Mxgw_server_stop(s.p)
	}
	s.exec(func() { capi.Mxgw_server_free(s.p) })
	s.p = 0
	s.state = 3
	close(s.ops)
	for _, c := range s.cfgs {
		c.release()
	}
	s.cfgs = nil
	runtime.SetFinalizer(s, nil)
	return nil
}
