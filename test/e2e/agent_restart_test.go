package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// linkIndexes maps the agent's links in the cloud's namespace to their
// interface indexes (a re-created link gets a new index).
func (c *cloud) linkIndexes() map[string]int {
	c.t.Helper()
	ns, err := hostnet.Open(c.ns.Path())
	fatalIf(c.t, err, "open namespace")
	defer ns.Close()
	out := map[string]int{}
	for _, prefix := range []string{"nb-", "nd-", "np-"} {
		links, err := ns.ListLinks(context.Background(), prefix)
		fatalIf(c.t, err, "list links")
		for _, l := range links {
			out[l.Name] = l.Index
		}
	}
	return out
}

// TestAgentRestartAdopts stops and restarts nimbo: the agent must adopt the
// bridges, veths and namespaces it made (same interface indexes), probes keep
// working, and a port created after the restart is wired too.
func TestAgentRestartAdopts(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	first := c.startReady()
	admin := c.openrc()
	c.osOK(admin, "network", "create", "net1")
	c.osOK(admin, "subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24", "sub1")
	c.probeCreate(admin, "--name", "a", "net1")
	ipB := c.probeCreate(admin, "--name", "b", "net1")
	before := c.linkIndexes()
	if len(before) != 5 { // the public network's bridge, net1's bridge, DHCP veth, two probe veths
		t.Fatalf("agent links before restart: %v", before)
	}
	if code := first.stop(); code != 0 {
		t.Fatalf("nimbo up exited with %s", first.exitStatus())
	}
	// The data plane outlives nimbo: traffic keeps flowing while it is down.
	if code := c.probeExecDirect("a", "ping", "-c1", "-W2", ipB); code != 0 {
		t.Errorf("a cannot reach b while nimbo is stopped")
	}
	c.resume = true
	c.startReady()
	time.Sleep(300 * time.Millisecond) // let a pass run after start-up
	after := c.linkIndexes()
	for name, idx := range before {
		if after[name] != idx {
			t.Errorf("link %s was re-created by the restart (index %d -> %d)", name, idx, after[name])
		}
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W2", ipB); code != 0 {
		t.Errorf("a cannot reach b after the restart")
	}
	ipC := c.probeCreate(admin, "--name", "c", "net1")
	if code := c.probeExec(admin, "c", "ping", "-c1", "-W2", ipB); code != 0 {
		t.Errorf("a probe made after the restart cannot reach b")
	}
	_ = ipC
}

// probeExecDirect runs a command in a probe's namespace without the API
// (for when nimbo is down).
func (c *cloud) probeExecDirect(probe string, argv ...string) int {
	c.t.Helper()
	ns := c.probeNetnsCached[probe]
	if ns == "" {
		c.t.Fatalf("probe %s's namespace is not known", probe)
	}
	cmd := c.ns.Command(context.Background(), "ip", append([]string{"netns", "exec", ns}, argv...)...)
	out, err := cmd.CombinedOutput()
	c.t.Logf("in %s: %v: %s", probe, argv, out)
	if err != nil {
		return 1
	}
	return 0
}
