// Package doctor checks whether a host can run nimbo, for `nimbo doctor`.
//
// Run performs a series of named checks — root, KVM, the kernel's network
// features (namespaces, bridge, veth, vxlan, tun, nftables), the data
// directory, the API listen address and the external tools nimbo calls —
// and returns one Finding per check, each with a Status, a plain-words
// message and, when something is wrong, a Fix saying what to run or do.
//
// The checks only look: the network features are exercised inside a
// throwaway network namespace that disappears afterwards, the listen port
// is bound and closed at once, and the data directory gets a temporary file
// that is removed again. Nothing touches the host's own interfaces,
// addresses or routes, and no packet is sent.
package doctor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/kvm"
)

// Status is the outcome of one check.
type Status int

// Statuses, from good to bad.
const (
	// OK means the check passed.
	OK Status = iota
	// Warn means nimbo works, but something is missing or degraded.
	Warn
	// Fail means nimbo cannot work on this host until it is fixed.
	Fail
)

// String returns "OK", "WARN" or "FAIL".
func (s Status) String() string {
	switch s {
	case OK:
		return "OK"
	case Warn:
		return "WARN"
	case Fail:
		return "FAIL"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// label is the four-character status shown between brackets.
func (s Status) label() string {
	if s == OK {
		return " OK "
	}
	return s.String()
}

// Finding is the result of one check.
type Finding struct {
	// Check is the check's short name, e.g. "root" or "netns".
	Check string
	// Status says whether the check passed.
	Status Status
	// Message says in plain words what was found.
	Message string
	// Fix says what to run or do when Status is not OK; empty otherwise.
	Fix string
}

// String renders the finding as one line, as Format does.
func (f Finding) String() string {
	s := fmt.Sprintf("[%s] %s: %s", f.Status.label(), f.Check, f.Message)
	if f.Status != OK && f.Fix != "" {
		s += " — fix: " + f.Fix
	}
	return s
}

// DefaultTimeout bounds each check that could block when Options.Timeout
// is zero.
const DefaultTimeout = 10 * time.Second

// Options configure Run.
type Options struct {
	// DataDir is nimbo's data directory; the check is skipped when empty.
	DataDir string
	// Listen is the API's host:port; the check is skipped when empty.
	Listen string
	// Root is prepended to /proc, /sys, /dev, /lib/modules and /boot when
	// reading kernel facts; "" means "/". Tests point it at a fake tree.
	// The live probes (namespaces, KVM ioctls) always use the real system.
	Root string
	// SkipNetProbe skips the live probe in a throwaway network namespace;
	// kernel features are then judged from /sys, /proc and /lib/modules.
	SkipNetProbe bool
	// Timeout bounds each check that could block; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// Logger receives debug details; nil means slog.Default().
	Logger *slog.Logger

	// Test hooks; nil means the real thing.
	euid     func() int
	lookPath func(string) (string, error)
	kvmProbe func(context.Context) kvm.Result
	netProbe func(context.Context) netProbeResult
}

// Run performs every check and returns the findings in a fixed order.
func Run(ctx context.Context, opts Options) []Finding {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	var out []Finding
	add := func(fs ...Finding) {
		for _, f := range fs {
			opts.Logger.Debug("doctor check", "check", f.Check, "status", f.Status.String(), "message", f.Message)
			out = append(out, f)
		}
	}
	add(checkRoot(opts))
	add(checkKVM(ctx, opts))
	add(checkNetwork(ctx, opts)...)
	if opts.DataDir != "" {
		add(checkDataDir(opts.DataDir))
	}
	if opts.Listen != "" {
		add(checkListen(ctx, opts.Listen))
	}
	add(checkTools(opts)...)
	return out
}

// Format writes one line per finding, e.g.
//
//	[ OK ] netns: network namespaces work
//	[FAIL] root: nimbo must run as root — fix: run it with sudo
func Format(w io.Writer, findings []Finding) error {
	var b strings.Builder
	for _, f := range findings {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Failed reports whether any finding has Status Fail, i.e. whether
// `nimbo doctor` should exit non-zero.
func Failed(findings []Finding) bool {
	for _, f := range findings {
		if f.Status == Fail {
			return true
		}
	}
	return false
}

// withTimeout derives a context bounded by opts.Timeout.
func (o Options) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.Timeout)
}
