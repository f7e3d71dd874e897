//go:build linux

package doctor

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// hostNetns identifies the test process's own network namespace.
func hostNetns(t *testing.T) netnsID {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return netnsID{st.Dev, st.Ino}
}

// noProbeLinks fails if a probe interface leaked into this namespace.
func noProbeLinks(t *testing.T) {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, "nimbo-") {
			t.Errorf("probe interface %s is in the host namespace", i.Name)
		}
	}
}

func TestRealNetProbe(t *testing.T) {
	requireRoot(t)
	before := hostNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := realNetProbe(ctx)
	if !r.ran || r.netnsErr != nil {
		t.Fatalf("no namespace: %+v", r)
	}
	for _, nf := range netFeatures {
		err, ok := r.results[nf.name]
		if !ok {
			t.Errorf("%s: not probed", nf.name)
		} else if err != nil {
			t.Errorf("%s: %v", nf.name, err)
		}
	}
	if after := hostNetns(t); after != before {
		t.Fatal("the process's namespace changed")
	}
	noProbeLinks(t)
}

// TestNetlinkErrors checks that kernel refusals come back as errors with
// the kernel's explanation, inside a throwaway namespace.
func TestNetlinkErrors(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs, err := inThrowawayNetns(ctx, func() []error {
		nl, err := openNetlink(unix.NETLINK_ROUTE)
		if err != nil {
			return []error{err}
		}
		defer nl.close()
		return []error{
			nl.newLink("nimbo-x-probe", "nimbo-no-such-kind", nil),
			nl.newLink("nimbo-br-probe", "bridge", nil),
			nl.newLink("nimbo-br-probe", "bridge", nil), // exists already
			nl.setMaster("nimbo-no-such", "nimbo-br-probe"),
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 4 {
		t.Fatalf("setup failed: %v", errs)
	}
	if errs[0] == nil {
		t.Error("an unknown link kind was accepted")
	} else {
		t.Logf("unknown kind: %v", errs[0])
	}
	if errs[1] != nil {
		t.Errorf("bridge: %v", errs[1])
	}
	if !errors.Is(errs[2], syscall.EEXIST) {
		t.Errorf("duplicate bridge: %v, want EEXIST", errs[2])
	}
	if errs[3] == nil {
		t.Error("enslaving a missing link was accepted")
	}
	noProbeLinks(t)
}

func TestInThrowawayNetnsContext(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := inThrowawayNetns(ctx, func() int { <-release; return 1 })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	}()
	cancel()
	<-done
	close(release)
}

// TestRunHere runs every real check on this machine.
func TestRunHere(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fs := Run(ctx, Options{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	var b strings.Builder
	Format(&b, fs)
	t.Logf("\n%s", b.String())
	m := byCheck(fs)
	for _, name := range []string{"root", "netns", "bridge", "veth", "vxlan", "tun", "nftables", "datadir", "listen"} {
		if f, ok := m[name]; !ok || f.Status != OK {
			t.Errorf("%s: %s", name, f)
		}
	}
	if f := m["kvm"]; f.Status == Fail || f.Message == "" {
		t.Errorf("kvm: %s", f)
	} else if _, err := os.Stat("/dev/kvm"); err != nil && (f.Status != Warn || !strings.Contains(f.Message, "/dev/kvm is absent")) {
		t.Errorf("kvm without /dev/kvm: %s", f)
	}
	noProbeLinks(t)
}

func TestNetlinkMessageLayout(t *testing.T) {
	m := newNlMsg(unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 7)
	m.put(ifInfomsg())
	m.attrString(unix.IFLA_IFNAME, "br0")
	li := m.nestStart(unix.IFLA_LINKINFO)
	m.attrString(unix.IFLA_INFO_KIND, "bridge")
	m.nestEnd(li)
	b := m.bytes()
	le := binary.NativeEndian
	// header 16 + ifinfomsg 16 + IFNAME (4+4) + LINKINFO (4 + KIND (4+7, padded to 12))
	if len(b) != 16+16+8+16 || int(le.Uint32(b)) != len(b) {
		t.Fatalf("length %d (header says %d)", len(b), le.Uint32(b))
	}
	if le.Uint16(b[4:]) != unix.RTM_NEWLINK || le.Uint16(b[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_ACK || le.Uint32(b[8:]) != 7 {
		t.Fatal("bad header")
	}
	if le.Uint16(b[32:]) != 8 || le.Uint16(b[34:]) != unix.IFLA_IFNAME || string(b[36:40]) != "br0\x00" {
		t.Fatalf("bad IFLA_IFNAME %x", b[32:40])
	}
	if le.Uint16(b[40:]) != 16 {
		t.Fatalf("bad LINKINFO length %d", le.Uint16(b[40:]))
	}
	if le.Uint16(b[42:]) != unix.IFLA_LINKINFO|unix.NLA_F_NESTED {
		t.Fatal("LINKINFO not marked nested")
	}
	if le.Uint16(b[44:]) != 11 || le.Uint16(b[46:]) != unix.IFLA_INFO_KIND || string(b[48:55]) != "bridge\x00" {
		t.Fatalf("bad IFLA_INFO_KIND %x", b[44:])
	}
}

func TestParseNetlinkError(t *testing.T) {
	le := binary.NativeEndian
	// NLMSG_ERROR, capped, with an extended-ack message.
	msg := "Unknown device type"
	attr := make([]byte, 4)
	le.PutUint16(attr, uint16(4+len(msg)+1))
	le.PutUint16(attr[2:], unix.NLMSGERR_ATTR_MSG)
	attr = append(attr, msg+"\x00"...)
	for len(attr)%4 != 0 {
		attr = append(attr, 0)
	}
	payload := make([]byte, 4+16)
	le.PutUint32(payload, uint32(0xffffffff-uint32(unix.EOPNOTSUPP)+1)) // -EOPNOTSUPP
	le.PutUint32(payload[4:], 40)                                       // the request's length
	payload = append(payload, attr...)
	hdr := make([]byte, 16)
	le.PutUint32(hdr, uint32(16+len(payload)))
	le.PutUint16(hdr[4:], unix.NLMSG_ERROR)
	le.PutUint16(hdr[6:], unix.NLM_F_CAPPED|unix.NLM_F_ACK_TLVS)
	le.PutUint32(hdr[8:], 42)
	// followed by a plain ack
	ack := make([]byte, 16+4+16)
	le.PutUint32(ack, uint32(len(ack)))
	le.PutUint16(ack[4:], unix.NLMSG_ERROR)
	le.PutUint32(ack[8:], 43)
	rs, err := parseNetlink(append(append(hdr, payload...), ack...))
	if err != nil || len(rs) != 2 {
		t.Fatalf("got %+v, %v", rs, err)
	}
	if rs[0].seq != 42 || !errors.Is(rs[0].err, syscall.EOPNOTSUPP) || !strings.Contains(rs[0].err.Error(), msg) {
		t.Errorf("first: %+v", rs[0])
	}
	if rs[1].seq != 43 || rs[1].err != nil {
		t.Errorf("second: %+v", rs[1])
	}
	if _, err := parseNetlink([]byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Error("truncated message accepted")
	}
}

func TestNetProbeClosesFDs(t *testing.T) {
	requireRoot(t)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	before := len(ents)
	for i := 0; i < 10; i++ {
		if r := realNetProbe(context.Background()); !r.ran {
			t.Fatalf("probe did not run: %v", r.netnsErr)
		}
	}
	ents, _ = os.ReadDir("/proc/self/fd")
	if len(ents) != before {
		t.Fatalf("%d descriptors open before, %d after", before, len(ents))
	}
}
