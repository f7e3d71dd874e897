//go:build !(linux && amd64)

package kvm

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// probeDevice reports that the KVM ioctls are not implemented here.
func probeDevice(_ context.Context, _ string, _ time.Duration, _ *slog.Logger) deviceOutcome {
	return deviceOutcome{opened: false, openErr: errNotSupported}
}

// errNotSupported is returned by probeDevice on systems without KVM ioctls.
var errNotSupported = errors.New("the KVM probe is only implemented for linux/amd64")
