package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
)

// etcdBin is Debian's etcd-server.
const etcdBin = "/usr/bin/etcd"

// TestExternalEtcd runs nimbo up against an external etcd (Debian's, started
// in the cloud's namespace) instead of the embedded one: the state lives in
// that cluster, so a nimbo with a fresh data dir finds the same cloud.
func TestExternalEtcd(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(etcdBin); err != nil {
		t.Skipf("%s is not installed (apt-get install etcd-server): %v", etcdBin, err)
	}
	c := newCloud(t)
	etcdDir := t.TempDir()
	// The namespace has its own loopback, so etcd's usual ports clash with nothing.
	etcd := c.ns.Command(context.Background(), etcdBin, "--name", "e2e", "--data-dir", filepath.Join(etcdDir, "data"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "e2e=http://127.0.0.1:2380", "--log-level", "warn")
	log, err := os.Create(filepath.Join(etcdDir, "etcd.log"))
	fatalIf(t, err, "etcd log")
	etcd.Stdout, etcd.Stderr = log, log
	fatalIf(t, etcd.Start(), "start etcd")
	t.Cleanup(func() {
		_ = etcd.Process.Kill()
		_ = etcd.Wait()
		_ = log.Close()
		if t.Failed() {
			out, _ := os.ReadFile(log.Name())
			t.Logf("etcd output:\n%s", out)
		}
	})
	c.extraArgs = []string{"--etcd-endpoints", "http://127.0.0.1:2379"}

	first := c.startReady()
	ctx := ctxT(t, 2*time.Minute)
	env := c.openrc()
	id := c.identity(ctx, adminAuthOptions(env))
	p, err := projects.Create(ctx, id, projects.CreateOpts{Name: "in-etcd"}).Extract()
	fatalIf(t, err, "create project")
	if _, err := os.Stat(filepath.Join(c.dataDir, "etcd")); err == nil {
		t.Errorf("nimbo started an embedded etcd in %s despite --etcd-endpoints", c.dataDir)
	}
	if code := first.stop(); code != 0 {
		t.Errorf("nimbo up exited with %s after SIGTERM", first.exitStatus())
	}

	// Another nimbo, with an empty data dir, on the same cluster: same cloud.
	c.dataDir = t.TempDir()
	second := c.startReady()
	id = c.identity(ctx, adminAuthOptions(c.openrc()))
	got, err := projects.Get(ctx, id, p.ID).Extract()
	if err != nil || got.Name != "in-etcd" {
		t.Errorf("project from the external etcd: %+v, %v", got, err)
	}
	if code := second.stop(); code != 0 {
		t.Errorf("second nimbo up exited with %s after SIGTERM", second.exitStatus())
	}
}
