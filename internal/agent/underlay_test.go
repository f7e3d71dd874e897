package agent_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
)

// countingUnderlay counts Sets and reports the egress it is told to.
type countingUnderlay struct {
	mu     sync.Mutex
	sets   int
	egress bool
}

func (u *countingUnderlay) Name() string { return "counting" }

func (u *countingUnderlay) Set(context.Context, underlay.Config) (underlay.Status, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.sets++
	if u.egress {
		return underlay.Status{Egress: true, Uplink: "up0"}, nil
	}
	return underlay.Status{Message: "no default route"}, nil
}

func (u *countingUnderlay) Teardown(context.Context) error { return nil }

func (u *countingUnderlay) state() (int, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sets, u.egress
}

// An underlay without egress is set again every lookUplinkEvery, with
// nothing changed in the store, so an uplink that appears is found; one
// with egress is left alone until its configuration changes; and passes in
// between do not set it again.
func TestUnderlayLooksForUplink(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, svc, prefix := testHost(t, "nimbo-upl")
	cfg := agent.Config{Host: "h1", Network: svc, NS: ns, NetnsPrefix: prefix}
	agent.SetLookUplinkEvery(t, time.Hour)
	cfg.Underlay = &countingUnderlay{}
	a := agent.New(cfg)
	for range 3 {
		if err := a.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := cfg.Underlay.(*countingUnderlay).state(); n != 1 {
		t.Fatalf("3 passes in a row set the underlay %d times, want 1 (the look again waits)", n)
	}
	if got := a.UnderlayStatus(); got.Message != "no default route" {
		t.Fatalf("UnderlayStatus = %+v", got)
	}

	agent.SetLookUplinkEvery(t, 50*time.Millisecond)
	u := &countingUnderlay{}
	cfg.Underlay = u
	a = agent.New(cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for n, _ := u.state(); n < 4; n, _ = u.state() {
		if time.Now().After(deadline) {
			t.Fatalf("without egress and without changes, the underlay was set %d times in 10 s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	u.mu.Lock()
	u.egress = true // an uplink appeared
	u.mu.Unlock()
	for time.Now().Before(deadline) && !a.UnderlayStatus().Egress {
		time.Sleep(10 * time.Millisecond)
	}
	if !a.UnderlayStatus().Egress {
		t.Fatal("the uplink that appeared was not found")
	}
	n, _ := u.state()
	time.Sleep(300 * time.Millisecond) // 6 intervals
	if m, _ := u.state(); m != n {
		t.Fatalf("with egress and nothing changed, the underlay was set %d more times", m-n)
	}
	cancel()
	<-done
}
