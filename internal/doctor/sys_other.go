//go:build !linux

package doctor

import (
	"context"
	"errors"
)

// realNetProbe is only implemented on Linux.
func realNetProbe(context.Context) netProbeResult {
	return netProbeResult{netnsErr: errors.New("network namespaces are Linux-only")}
}

// freeBytes is only implemented on Linux.
func freeBytes(string) (uint64, bool) { return 0, false }
