// SPDX-License-Identifier: MIT

package mxgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// Reply is an SMTP reply chosen by a handler. A nil *Reply accepts with
// the library's default reply.
type Reply struct {
	Code int
	Enh  string // "" for the default enhanced code
	Text string // "" for the default text; "\n" separates lines
}

// Envelope is the message handed to SessionHandler.OnMessage.
type Envelope struct {
	PeerAddr string
	Helo     string
	MailFrom string   // "" for the null sender
	Rcpts    []string // accepted recipients
	Received string   // our Received: header (CRLF-terminated)
	TLS      bool
}

// SessionHandler holds the decisions of a Go SMTP server driven by Serve.
// Every field may be nil (accept). A handler that panics gets the session
// a "451 4.3.0" reply and an OnError call; the panic never reaches C.
type SessionHandler struct {
	OnConnect func(s *Session) *Reply
	OnHelo    func(s *Session, helo string) *Reply
	OnMail    func(s *Session, from string) *Reply
	OnRcpt    func(s *Session, rcpt string) *Reply
	OnData    func(s *Session) *Reply
	// OnMessage gets the complete message (dot-unstuffed, CRLF). Only an
	// accepting answer (nil or 250) tells the client the message is taken.
	OnMessage func(s *Session, env *Envelope, body []byte) *Reply
	OnLog     func(kind LogKind, text string)
	OnError   func(err error)
}

// PanicError is passed to OnError when a handler panicked.
type PanicError struct {
	Stage  Event // for policy callbacks: the Stage value
	Value  any
	policy bool
}

func (p *PanicError) Error() string {
	if p.policy {
		return fmt.Sprintf("mxgw: %s policy callback panicked: %v", Stage(p.Stage), p.Value)
	}
	return fmt.Sprintf("mxgw: %s handler panicked: %v", p.Stage, p.Value)
}

// Serve runs one SMTP session over conn until the client quits, the
// session ends, or ctx is done (then the client gets "421 4.3.2" and the
// connection is closed). conn is closed when Serve returns.
func Serve(ctx context.Context, conn net.Conn, cfg *SessionConfig, h *SessionHandler) error {
	defer conn.Close()
	if h == nil {
		h = &SessionHandler{}
	}
	s, err := NewSession(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if h.OnLog != nil {
		s.SetLogger(h.OnLog)
	}
	addr, port := "127.0.0.1", 0
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		addr, port = ta.IP.String(), ta.Port
	} else if hst, p, err := net.SplitHostPort(conn.RemoteAddr().String()); err == nil {
		addr = hst
		port, _ = strconv.Atoi(p)
	}
	if err := s.SetPeer(addr, port, ""); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	cfg.mu.Lock()
	hasTLS := cfg.hasTLS
	cfg.mu.Unlock()
	d := &driver{s: s, h: h, tls: hasTLS}
	var pending []byte
	buf := make([]byte, 65536)
	eof, shut := false, false
	for {
		if !shut && ctx.Err() != nil {
			s.Shutdown("")
			shut = true
		}
		progress := false
		if len(pending) > 0 {
			n, err := s.Feed(pending)
			if err != nil {
				pending = nil // closed: discard
			} else {
				pending = pending[n:]
				progress = n > 0
			}
		}
		for {
			ev, err := s.NextEvent()
			if err != nil || ev == EventNone {
				break
			}
			progress = true
			d.handle(ev)
		}
		if out := s.Output(); len(out) > 0 {
			conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
			n, err := conn.Write(out)
			if n > 0 {
				s.Consume(n)
			}
			if err != nil {
				s.Abort()
				d.drain()
				return err
			}
			continue
		}
		want := s.Want()
		if want&WantClose != 0 {
			return nil
		}
		if len(pending) > 0 && progress {
			continue
		}
		if eof {
			if !progress {
				s.Abort()
				d.drain()
				return nil
			}
			continue
		}
		// wait for input, the session's deadline, or ctx
		dl := time.Now().Add(250 * time.Millisecond)
		if t, ok := s.Deadline(); ok && t.Before(dl) {
			dl = t
		}
		conn.SetReadDeadline(dl)
		n, err := conn.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.Tick()
		case errors.Is(err, io.EOF):
			s.EOF()
			eof = true
		default:
			s.Abort()
			d.drain()
			return err
		}
	}
}

type driver struct {
	s    *Session
	h    *SessionHandler
	tls  bool // the configuration has a TLS context: the library runs STARTTLS
	body bytes.Buffer
}

func (d *driver) drain() {
	for {
		ev, err := d.s.NextEvent()
		if err != nil || ev == EventNone {
			return
		}
		d.handle(ev)
	}
}

// call runs a handler with recover: a panic becomes 451 4.3.0.
func (d *driver) call(stage Event, f func() *Reply) (r *Reply) {
	defer func() {
		if v := recover(); v != nil {
			err := &PanicError{Stage: stage, Value: v}
			if d.h.OnError != nil {
				func() {
					defer func() { _ = recover() }()
					d.h.OnError(err)
				}()
			}
			r = &Reply{Code: 451, Enh: "4.3.0", Text: "Temporary local problem, try again later"}
		}
	}()
	return f()
}

func (d *driver) answer(stage Event, r *Reply) {
	if r == nil || (r.Code == 0) {
		d.s.Accept()
		return
	}
	if err := d.s.Reply(r.Code, r.Enh, r.Text); err != nil {
		if d.h.OnError != nil {
			d.h.OnError(err)
		}
		d.s.Reply(451, "4.3.0", "")
	}
}

func (d *driver) handle(ev Event) {
	s, h := d.s, d.h
	switch ev {
	case EventConnect:
		if h.OnConnect == nil {
			s.Accept()
			return
		}
		d.answer(ev, d.call(ev, func() *Reply { return h.OnConnect(s) }))
	case EventHelo:
		if h.OnHelo == nil {
			s.Accept()
			return
		}
		helo := s.String(InfoHelo)
		d.answer(ev, d.call(ev, func() *Reply { return h.OnHelo(s, helo) }))
	case EventMail:
		d.body.Reset()
		if h.OnMail == nil {
			s.Accept()
			return
		}
		from := s.String(InfoMailFrom)
		d.answer(ev, d.call(ev, func() *Reply { return h.OnMail(s, from) }))
	case EventRcpt:
		if h.OnRcpt == nil {
			s.Accept()
			return
		}
		rcpt := s.String(InfoRcpt)
		d.answer(ev, d.call(ev, func() *Reply { return h.OnRcpt(s, rcpt) }))
	case EventData:
		d.body.Reset()
		if h.OnData == nil {
			s.Accept()
			return
		}
		d.answer(ev, d.call(ev, func() *Reply { return h.OnData(s) }))
	case EventBody:
		if b, err := s.Bytes(InfoData); err == nil {
			d.body.Write(b)
		}
	case EventMessageEnd:
		env := &Envelope{PeerAddr: s.String(InfoPeerAddr), Helo: s.String(InfoHelo),
			MailFrom: s.String(InfoMailFrom)}
		n, _ := s.Int(InfoRcptCount)
		for i := 0; i < int(n); i++ {
			r, _ := s.RcptString(i, InfoRcpt)
			env.Rcpts = append(env.Rcpts, r)
		}
		tl, _ := s.Int(InfoTLS)
		env.TLS = tl == 1
		env.Received, _ = s.ReceivedHeader("", time.Now())
		body := append([]byte(nil), d.body.Bytes()...)
		d.body.Reset()
		if h.OnMessage == nil {
			s.Accept()
			return
		}
		d.answer(ev, d.call(ev, func() *Reply { return h.OnMessage(s, env, body) }))
	case EventStartTLS:
		// The library runs STARTTLS itself when the configuration has a
		// TLS context. Without one, Serve cannot run a handshake.
		if d.tls {
			s.Accept()
		} else {
			s.Reply(454, "4.7.0", "TLS not available")
		}
	case EventAuth:
		// No AUTH handler in this driver: every AUTH fails.
		s.Reply(535, "5.7.8", "")
	case EventMessageAbort, EventRset:
		d.body.Reset()
	case EventClose:
	}
}
