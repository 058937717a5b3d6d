// SPDX-License-Identifier: MIT

package mxgw

import (
	"os"
	"strconv"
	"time"
)

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// monoBase anchors the monotonic millisecond clock handed to the sans-IO
// engines (they read no clock themselves).
var monoBase = time.Now()

func nowMS() int64 { return time.Since(monoBase).Milliseconds() }

func openFile(path string) (*os.File, error) { return os.Open(path) }
