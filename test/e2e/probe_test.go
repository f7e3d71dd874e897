package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	underlaynat "github.com/nimbo-cloud/nimbo/internal/underlay/nat"
)

// probeIP is the address in `nimbo probe create` output's ADDRESSES column.
func probeIP(t *testing.T, out string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("probe create output: %q", out)
	}
	return strings.Fields(lines[1])[3]
}

// nimbo runs a nimbo client command in the cloud's namespace with env.
func (c *cloud) nimbo(env map[string]string, args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := c.ns.Command(ctx, nimboBin, args...)
	cmd.Env = []string{"PATH=" + cliPATH, "HOME=" + c.home}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
		if code <= 0 {
			c.t.Fatalf("nimbo %s: %v", strings.Join(args, " "), err)
		}
	}
	c.t.Logf("nimbo %s: exit %d\n%s", strings.Join(args, " "), code, out)
	return string(out), code
}

func (c *cloud) probeCreate(env map[string]string, args ...string) string {
	c.t.Helper()
	out, code := c.nimbo(env, append([]string{"probe", "create", "--netns-prefix", c.netnsPrefix}, args...)...)
	if code != 0 || !strings.Contains(out, "DHCP answered with") {
		c.t.Fatalf("probe create %v: exit %d: %s", args, code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if f := strings.Fields(lines[1]); len(f) >= 8 {
		if c.probeNetnsCached == nil {
			c.probeNetnsCached = map[string]string{}
		}
		c.probeNetnsCached[f[1]] = f[7]
	}
	return probeIP(c.t, out)
}

func (c *cloud) probeExec(env map[string]string, probe string, argv ...string) int {
	c.t.Helper()
	_, code := c.nimbo(env, append([]string{"probe", "exec", "--netns-prefix", c.netnsPrefix, probe, "--"}, argv...)...)
	return code
}

// inProbe runs fn with sockets inside a probe's namespace.
func (c *cloud) inProbe(name string, fn func() error) error {
	ns, err := hostnet.OpenNetns(c.probeNetns(name))
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(fn)
}

// probeNetns finds a probe's namespace by the probe's name (one per test).
func (c *cloud) probeNetns(name string) string {
	c.t.Helper()
	out, code := c.nimbo(c.openrc(), "probe", "list", "--netns-prefix", c.netnsPrefix)
	if code != 0 {
		c.t.Fatalf("probe list: %s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 8 && f[1] == name {
			return f[7]
		}
	}
	c.t.Fatalf("no probe %s in %s", name, out)
	return ""
}

// TestProbes checks the data plane through probes: DHCP leases, L2
// connectivity within a network and isolation between networks, a security
// group opening TCP 22 only, anti-spoofing, and that deleting everything
// leaves nothing behind.
func TestProbes(t *testing.T) {
	t.Parallel()
	c := newCloud(t)
	c.startReady()
	admin := c.openrc()
	c.osOK(admin, "network", "create", "net1")
	c.osOK(admin, "subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24", "sub1")
	c.osOK(admin, "network", "create", "net2")
	c.osOK(admin, "subnet", "create", "--network", "net2", "--subnet-range", "10.1.0.0/24", "sub2")

	ipA := c.probeCreate(admin, "--name", "a", "net1")
	ipB := c.probeCreate(admin, "--name", "b", "net1")
	ipC := c.probeCreate(admin, "--name", "c", "net2")
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W2", ipB); code != 0 {
		t.Errorf("a cannot ping b on the same network")
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W1", ipC); code == 0 {
		t.Errorf("a reaches c on another network")
	}

	// A group that opens TCP 22 only.
	var sg struct{ ID string }
	c.osJSON(admin, &sg, "security", "group", "create", "ssh")
	c.osOK(admin, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "ssh")
	ipD := c.probeCreate(admin, "--name", "d", "--security-group", sg.ID, "net1")
	var listeners []net.Listener
	err := c.inProbe("d", func() error {
		for _, port := range []int{22, 23} {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ipD, port))
			if err != nil {
				return err
			}
			listeners = append(listeners, l)
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					conn.Close()
				}
			}()
		}
		return nil
	})
	fatalIf(t, err, "listeners in probe d")
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	dial := func(port int) error {
		return c.inProbe("a", func() error {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", ipD, port), 2*time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		})
	}
	if err := dial(22); err != nil {
		t.Errorf("TCP 22 to d is closed: %v", err)
	}
	if err := dial(23); err == nil {
		t.Errorf("TCP 23 to d is open; only 22 is allowed")
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W1", ipD); code == 0 {
		t.Errorf("ping to d passes; its group allows TCP 22 only")
	}

	// Anti-spoofing: a source address or MAC that is not the port's is dropped.
	if code := c.probeExec(admin, "a", "ip", "addr", "add", "10.0.0.250/24", "dev", "eth0"); code != 0 {
		t.Fatal("adding a spoofed address in probe a failed")
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W1", "-I", "10.0.0.250", ipB); code == 0 {
		t.Errorf("a spoofed source address gets through")
	}
	if code := c.probeExec(admin, "a", "ping", "-c1", "-W2", ipB); code != 0 {
		t.Errorf("a's own address stopped working")
	}
	if code := c.probeExec(admin, "b", "ip", "link", "set", "eth0", "address", "fa:16:3e:00:00:99"); code != 0 {
		t.Fatal("changing b's MAC failed")
	}
	if code := c.probeExec(admin, "b", "ping", "-c1", "-W1", ipA); code == 0 {
		t.Errorf("a spoofed MAC gets through")
	}

	// Delete everything: nothing is left behind.
	for _, p := range []string{"a", "b", "c", "d"} {
		if out, code := c.nimbo(admin, "probe", "delete", "--netns-prefix", c.netnsPrefix, p); code != 0 {
			t.Errorf("probe delete %s: %s", p, out)
		}
	}
	c.osOK(admin, "security", "group", "delete", "ssh")
	c.osOK(admin, "network", "delete", "net1", "net2")
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := c.leftovers()
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind after deleting everything: %s", left)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leftovers describes the agent's namespaces, links and nft tables still
// present, or "" — apart from what the cloud's public network needs (its
// bridge and the underlay's table), which stays as long as it exists.
func (c *cloud) leftovers() string {
	var left []string
	names, _ := hostnet.ListNetns(c.netnsPrefix + "-")
	left = append(left, names...)
	publicBridge := ""
	if id := strings.TrimSpace(c.osOK(c.openrc(), "network", "list", "--external", "--name", "public", "-f", "value", "-c", "ID")); id != "" {
		publicBridge = agent.BridgeName(id)
	}
	ns, err := hostnet.Open(c.ns.Path())
	if err == nil {
		for _, prefix := range []string{"nb-", "nd-", "np-", "nr-", "ng-"} {
			links, _ := ns.ListLinks(context.Background(), prefix)
			for _, l := range links {
				if l.Name != publicBridge {
					left = append(left, "link "+l.Name)
				}
			}
		}
		ns.Close()
	}
	if out, err := c.ns.Command(context.Background(), "nft", "list", "tables").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.Contains(l, "nimbo") && !(publicBridge != "" && strings.Contains(l, underlaynat.TableName)) {
				left = append(left, "nft: "+l)
			}
		}
	}
	if _, err := os.Stat("/run/netns"); err != nil {
		return strings.Join(left, ", ")
	}
	return strings.Join(left, ", ")
}
