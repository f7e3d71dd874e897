package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// Packets of the router part of the benchmark (routerbench.go): ARP kicks,
// UDP senders and catchers, and the first-packet measurement.

// arpRequest is the payload of an ARP request (Ethernet/IPv4) from
// mac/src asking for target, as sent on an AF_PACKET SOCK_DGRAM socket.
func arpRequest(mac net.HardwareAddr, src, target netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:14], mac)
	s, t := src.As4(), target.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// arpKick makes a sender also ask for its next hop (see the package
// comment above).
type arpKick struct {
	iface       string
	mac         net.HardwareAddr
	src, target netip.Addr
}

// udpSender sends payload to dst every packetEvery, each time from a new
// socket, from namespace ns (nil: this process's), until stop is closed or
// timeout passes.
type udpSender struct {
	ns      *hostnet.NS
	dst     netip.AddrPort
	payload []byte
	arp     *arpKick
}

var errSendTimeout = errors.New("timed out")

func (u udpSender) run(stop <-chan struct{}, timeout time.Duration) error {
	loop := func() error {
		afd := -1
		var sll unix.SockaddrLinklayer
		var req []byte
		if u.arp != nil {
			ifi, err := net.InterfaceByName(u.arp.iface)
			if err != nil {
				return fmt.Errorf("interface %s: %w", u.arp.iface, err)
			}
			if afd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP))); err != nil {
				return fmt.Errorf("ARP socket on %s: %w", u.arp.iface, err)
			}
			defer unix.Close(afd)
			sll = unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6,
				Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
			req = arpRequest(u.arp.mac, u.arp.src, u.arp.target)
		}
		dst := unix.SockaddrInet4{Port: int(u.dst.Port()), Addr: u.dst.Addr().As4()}
		deadline := time.Now().Add(timeout)
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			if time.Now().After(deadline) {
				return errSendTimeout
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			// Errors are expected until the path exists (no neighbour,
			// unreachable): keep sending.
			_ = unix.Sendto(fd, u.payload, 0, &dst)
			_ = unix.Close(fd)
			if afd >= 0 {
				_ = unix.Sendto(afd, req, 0, &sll)
			}
			time.Sleep(packetEvery)
		}
	}
	if u.ns == nil {
		return loop()
	}
	return u.ns.Do(loop)
}

// arrival is a datagram a catcher received.
type arrival struct {
	at      time.Time
	src     netip.Addr
	payload string
}

// udpCatcher receives datagrams on a port of a namespace.
type udpCatcher struct {
	conn *net.UDPConn
	ch   chan arrival
}

// listenUDP opens a catcher on port in ns (nil: this process's namespace);
// the socket stays in that namespace.
func listenUDP(ns *hostnet.NS, port int) (*udpCatcher, error) {
	var conn *net.UDPConn
	open := func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}
	var err error
	if ns == nil {
		err = open()
	} else {
		err = ns.Do(open)
	}
	if err != nil {
		return nil, err
	}
	u := &udpCatcher{conn: conn, ch: make(chan arrival, 4096)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(u.ch)
				return
			}
			select {
			case u.ch <- arrival{at: time.Now(), src: from.Addr().Unmap(), payload: string(buf[:n])}:
			default:
			}
		}
	}()
	return u, nil
}

func (u *udpCatcher) close() { _ = u.conn.Close() }

// wait returns the first datagram with payload from want (any source if
// want is zero) until deadline. Datagrams with the payload from another
// source are passed to other.
func (u *udpCatcher) wait(payload string, want netip.Addr, deadline time.Time, other func(arrival)) (arrival, bool) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		select {
		case a, ok := <-u.ch:
			if !ok {
				return arrival{}, false
			}
			if a.payload != payload {
				continue
			}
			if want.IsValid() && a.src != want {
				if other != nil {
					other(a)
				}
				continue
			}
			return a, true
		case <-t.C:
			return arrival{}, false
		}
	}
}

// firstPacket runs sender until catcher sees its payload from want() (any
// source if that is zero), or timeout; it returns when the datagram
// arrived. start, the operation being timed, is called once the sender
// runs; want is read after it (datagrams that arrive meanwhile wait in the
// catcher's queue).
func firstPacket(s udpSender, c *udpCatcher, want func() netip.Addr, timeout time.Duration, other func(arrival), start func() error) (time.Time, error) {
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() { sent <- s.run(stop, timeout) }()
	defer func() {
		close(stop)
		<-sent
	}()
	deadline := time.Now().Add(timeout)
	if start != nil {
		if err := start(); err != nil {
			return time.Time{}, err
		}
	}
	type res struct {
		a  arrival
		ok bool
	}
	got := make(chan res, 1)
	go func() {
		var w netip.Addr
		if want != nil {
			w = want()
		}
		a, ok := c.wait(string(s.payload), w, deadline, other)
		got <- res{a, ok}
	}()
	select {
	case r := <-got:
		if !r.ok {
			return time.Time{}, fmt.Errorf("no datagram %q arrived within %v", s.payload, timeout)
		}
		return r.a.at, nil
	case err := <-sent:
		sent <- err // for the deferred receive
		if err == nil || errors.Is(err, errSendTimeout) {
			r := <-got
			if r.ok {
				return r.a.at, nil
			}
			return time.Time{}, fmt.Errorf("no datagram %q arrived within %v", s.payload, timeout)
		}
		return time.Time{}, fmt.Errorf("sending from %v: %w", nsName(s.ns), err)
	}
}

func nsName(ns *hostnet.NS) string {
	if ns == nil {
		return "this namespace"
	}
	return ns.Path()
}
