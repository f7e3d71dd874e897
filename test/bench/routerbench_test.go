package main

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Tests of the router part's pure helpers (no server, no root).

func TestARPRequest(t *testing.T) {
	mac, _ := net.ParseMAC("fa:16:3e:01:02:03")
	got := arpRequest(mac, netip.MustParseAddr("10.64.0.5"), netip.MustParseAddr("10.64.0.1"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, lengths, request
		0xfa, 0x16, 0x3e, 1, 2, 3, 10, 64, 0, 5, // sender
		0, 0, 0, 0, 0, 0, 10, 64, 0, 1, // target
	}
	if !bytes.Equal(got, want) {
		t.Errorf("arpRequest = % x, want % x", got, want)
	}
	if htons(0x0806) != 0x0608 {
		t.Errorf("htons(0x0806) = %#x", htons(0x0806))
	}
}

func TestParseUp(t *testing.T) {
	log := "nimbo dev: starting an all-in-one cloud in /tmp/x\n" +
		"  store:       embedded etcd (fresh) (412ms)\n" +
		"time=2026-11-25T02:15:07.090Z level=WARN msg=\"agent: first pass incomplete\" err=\"router r1: boom\"\n" +
		"  agent:       host bench-1: bridges, DHCP, routers, probes and firewall reconciled (4.217s)\n" +
		"  underlay:    nat: no uplink: this namespace has no default route\n" +
		"  api:         listening on 127.0.0.1:5000 (1ms)\n" +
		"\nnimbo is up (5.102s).\n"
	u := parseUp(log)
	if !u.agentSeen || u.agent != 4217*time.Millisecond {
		t.Errorf("agent step = %v (%v), want 4.217s", u.agent, u.agentSeen)
	}
	if !u.upSeen || u.up != 5102*time.Millisecond {
		t.Errorf("up = %v (%v), want 5.102s", u.up, u.upSeen)
	}
	if u.underlay != "nat: no uplink: this namespace has no default route" {
		t.Errorf("underlay = %q", u.underlay)
	}
	if u.incomplete != "router r1: boom" {
		t.Errorf("incomplete = %q", u.incomplete)
	}
	if u := parseUp("  agent:       host h: reconciled (850ms)\n"); !u.agentSeen || u.agent != 850*time.Millisecond || u.upSeen {
		t.Errorf("parseUp of a start still under way = %+v", u)
	}
}

func TestParseIperf(t *testing.T) {
	bps, retrans, err := parseIperf([]byte(`{"start":{},"end":{"sum_sent":{"bits_per_second":9.9e9,"retransmits":3},"sum_received":{"bits_per_second":9.8e9}}}`))
	if err != nil || bps != 9.8e9 || retrans != 3 {
		t.Errorf("parseIperf = %v, %v, %v", bps, retrans, err)
	}
	if _, _, err := parseIperf([]byte(`{"start":{},"end":{},"error":"unable to connect to server: Connection refused"}`)); err == nil {
		t.Error("parseIperf accepted an error report")
	}
	if _, _, err := parseIperf([]byte(`iperf3: error`)); err == nil {
		t.Error("parseIperf accepted non-JSON")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestExtCIDRFor(t *testing.T) {
	for n, want := range map[int]string{1: "10.224.0.0/24", 200: "10.224.0.0/24", 1000: "10.224.0.0/22", 1010: "10.224.0.0/21", 1 << 20: "10.224.0.0/16"} {
		p := extCIDRFor(n)
		if p.String() != want {
			t.Errorf("extCIDRFor(%d) = %v, want %s", n, p, want)
		}
		// Room for n gateways, the subnet's gateway, network and broadcast.
		if n < 60000 && 1<<(32-p.Bits()) < n+3 {
			t.Errorf("extCIDRFor(%d) = %v: too small", n, p)
		}
	}
}

func TestFmtBps(t *testing.T) {
	if got := fmtBps(12.345e9); got != "12.35 Gbit/s" {
		t.Errorf("fmtBps = %q", got)
	}
	if got := fmtBps(850e6); got != "850 Mbit/s" {
		t.Errorf("fmtBps = %q", got)
	}
}
