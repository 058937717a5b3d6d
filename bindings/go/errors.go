// SPDX-License-Identifier: MIT

// Package mxgw is the Go binding of libmxgw, an embeddable C library for
// inbound MX gateways: SPF checks, TLS certificate loading and inspection,
// the sans-IO SMTP session engine, LMTP delivery and the durable queue.
//
// Errors are values: every failing call returns an *Error carrying the
// library's mxgw_err code and the handle's last-error message. Compare with
// errors.Is against the sentinels (ErrInvalid, ErrTimeout, ...). Handles
// have a Close method; a finalizer frees a forgotten handle as a safety
// net only. A handle may be used by several goroutines: calls on one
// handle are serialized by a mutex (the C library allows one thread at a
// time per handle).
package mxgw

import (
	"fmt"

	"libmxgw.org/mxgw/internal/capi"
)

// Code is a libmxgw status code (mxgw_err): 0 is success, errors are
// negative. Codes are never renumbered.
type Code int

// The status codes of mxgw_common.h.
const (
	CodeOK          Code = 0
	CodeInvalid     Code = -1
	CodeNoMem       Code = -2
	CodeState       Code = -3
	CodeAgain       Code = -4
	CodeNotFound    Code = -5
	CodeClosed      Code = -6
	CodeBusy        Code = -7
	CodeRange       Code = -8
	CodeSyntax      Code = -9
	CodeIO          Code = -10
	CodeTimeout     Code = -11
	CodeTLS         Code = -12
	CodeDNS         Code = -13
	CodeProtocol    Code = -14
	CodeUnsupported Code = -15
	CodePerm        Code = -16
	CodeCanceled    Code = -17
	CodeNoSpace     Code = -18
	CodeFatal       Code = -900
)

// String returns the C name of the code, e.g. "MXGW_E_NOMEM".
func (c Code) String() string { return capi.Mxgw_errname(int(c)) }

// Description returns the library's English description of the code.
func (c Code) Description() string { return capi.Mxgw_strerror(int(c)) }

// Error is an error returned by libmxgw.
type Error struct {
	Code Code   // the mxgw_err status
	Op   string // the Go call that failed, e.g. "Resolver.LoadZone"
	Msg  string // the handle's last-error detail ("" if it has none)
}

func (e *Error) Error() string {
	s := "mxgw: "
	if e.Op != "" {
		s += e.Op + ": "
	}
	s += e.Code.Description()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s + " (" + e.Code.String() + ")"
}

// Is reports whether target is an *Error with the same code (sentinels
// carry no Op or Msg, so errors.Is(err, mxgw.ErrTimeout) matches any
// timeout).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Op == "" || t.Op == e.Op) &&
		(t.Msg == "" || t.Msg == e.Msg)
}

// Sentinels for errors.Is.
var (
	ErrInvalid     = &Error{Code: CodeInvalid}
	ErrNoMem       = &Error{Code: CodeNoMem}
	ErrState       = &Error{Code: CodeState}
	ErrAgain       = &Error{Code: CodeAgain}
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrClosed      = &Error{Code: CodeClosed}
	ErrBusy        = &Error{Code: CodeBusy}
	ErrRange       = &Error{Code: CodeRange}
	ErrSyntax      = &Error{Code: CodeSyntax}
	ErrIO          = &Error{Code: CodeIO}
	ErrTimeout     = &Error{Code: CodeTimeout}
	ErrTLS         = &Error{Code: CodeTLS}
	ErrDNS         = &Error{Code: CodeDNS}
	ErrProtocol    = &Error{Code: CodeProtocol}
	ErrUnsupported = &Error{Code: CodeUnsupported}
	ErrPerm        = &Error{Code: CodePerm}
	ErrCanceled    = &Error{Code: CodeCanceled}
	ErrNoSpace     = &Error{Code: CodeNoSpace}
	ErrFatal       = &Error{Code: CodeFatal}
)

// errClosedHandle is returned by calls on a handle after Close.
func errClosedHandle(op string) error {
	return &Error{Code: CodeInvalid, Op: op, Msg: "handle is closed"}
}

// check turns a C status into an error (nil for rc >= 0).
func check(rc int, op string, msg func() string) error {
	if rc >= 0 {
		return nil
	}
	e := &Error{Code: Code(rc), Op: op}
	if msg != nil {
		e.Msg = msg()
	}
	return e
}

// Version returns the run-time library version string and MXGW_VERSION_NUM
// (0xMMmmpp).
func Version() (string, int) {
	var n int32
	s := capi.Mxgw_version(&n)
	return s, int(n)
}

// Errorf-style helper for Go-side argument errors.
func invalid(op, format string, a ...any) error {
	return &Error{Code: CodeInvalid, Op: op, Msg: fmt.Sprintf(format, a...)}
}
