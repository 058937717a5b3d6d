// SPDX-License-Identifier: MIT

package capi

/*
#cgo LDFLAGS: -lmxgw
#include <stddef.h>
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

// LogFunc receives session log records (kind is an mxgw_log_kind, text is
// copied). It must not panic: the public layer wraps it with recover.
type LogFunc func(kind int, text string)

//export capiLogCallback
func capiLogCallback(h C.uintptr_t, kind C.int, text C.uintptr_t, n C.size_t) {
	defer func() { _ = recover() }() // never unwind through C frames
	f, ok := cgo.Handle(h).Value().(LogFunc)
	if !ok || f == nil {
		return
	}
	// text is C memory (const char *) passed as an integer so that the C
	// side needs no cast dropping const
	f(int(kind), C.GoStringN((*C.char)(unsafe.Pointer(uintptr(text))), C.int(n)))
}

// ServerLogFunc receives server log lines (level is an
// mxgw_server_log_level). Called on library threads, never twice at once.
type ServerLogFunc func(level int, line string)

// PolicyFunc answers a policy request (req is an mxgw_server_req pointer,
// valid during the call): 0 accept (or the reply it set), negative: the
// callback failed (451 4.3.0).
type PolicyFunc func(req uintptr) int

//export capiServerLogCallback
func capiServerLogCallback(h C.uintptr_t, level C.int, line C.uintptr_t) {
	defer func() { _ = recover() }()
	f, ok := cgo.Handle(h).Value().(ServerLogFunc)
	if !ok || f == nil {
		return
	}
	f(int(level), C.GoString((*C.char)(unsafe.Pointer(uintptr(line)))))
}

//export capiPolicyCallback
func capiPolicyCallback(h C.uintptr_t, req C.uintptr_t) (rc C.int) {
	defer func() {
		if recover() != nil {
			rc = -1 // the library answers 451 4.3.0 and logs a warning
		}
	}()
	f, ok := cgo.Handle(h).Value().(PolicyFunc)
	if !ok || f == nil {
		return 0
	}
	return C.int(f(uintptr(req)))
}

// Ptr converts a C pointer value to uintptr (for tests of the glue).
func Ptr(p unsafe.Pointer) uintptr { return uintptr(p) }
