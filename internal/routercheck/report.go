package routercheck

import (
	"fmt"
	"io"
	"net/netip"
)

// Report is the outcome of Check.
type Report struct {
	// Router is the router's ID and RouterName its name ("" until found).
	Router, RouterName string
	// Netns is the router's namespace name; Iface its gateway interface
	// ("" when not reached).
	Netns, Iface string
	// GatewayIP is the router's external address; NextHop the external
	// subnet's gateway it routes through (zero when not reached).
	GatewayIP, NextHop netip.Addr
	// Target and Port are what was asked for.
	Target netip.Addr
	Port   int
	// Steps are the steps run, in order.
	Steps []Step
	// Verdict sums the report up: "ok: ..." or "FAIL at STEP: ...".
	Verdict string
	// OK is true when every step run passed, so the target (or, without
	// one, the next hop) answered.
	OK bool
}

// Write prints the report: one line per step run, its status (ok or FAIL)
// padded to 4 columns, two spaces, the step name padded to 9, two spaces,
// the text; then a last line "verdict: " and Verdict. For example:
//
//	ok    route      default via 172.24.4.1 dev qg-3f1c2a9e0b7
//	FAIL  snat       no SNAT rule: the namespace has no table ip nimbo_router: ...
//	verdict: FAIL at snat: no SNAT rule: ...
func (r Report) Write(w io.Writer) error {
	for _, s := range r.Steps {
		if _, err := fmt.Fprintf(w, "%-4s  %-9s  %s\n", s.Status, s.Name, s.Text); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "verdict: %s\n", r.Verdict)
	return err
}

// ExitCode is the command's exit status for the report: 0 when every step
// passed, 1 when one failed.
func (r Report) ExitCode() int {
	if r.OK {
		return 0
	}
	return 1
}

// Failed returns the first failed step, if any.
func (r Report) Failed() (Step, bool) {
	for _, s := range r.Steps {
		if s.Status != OK {
			return s, true
		}
	}
	return Step{}, false
}
