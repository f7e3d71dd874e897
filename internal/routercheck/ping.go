package routercheck

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// pingInterval is how often Ping sends another echo request while it waits.
const pingInterval = 500 * time.Millisecond

// maxICMPPacketBytes bounds what ping reads.
const maxICMPPacketBytes = 1500

// unreachableCodes puts destination-unreachable codes in words (RFC 792, 1812).

var unreachableCodes = map[byte]string{
	0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable", 3: "port unreachable",
	4: "fragmentation needed", 5: "source route failed", 6: "destination network unknown",
	7: "destination host unknown", 9: "network administratively prohibited",
	10: "host administratively prohibited", 13: "communication administratively prohibited",
}

// ping sends ICMP echo requests from src to dst inside ns, one every
// pingInterval, until an echo reply or an ICMP error about them comes back,
// or timeout passes. It uses a raw socket (root) created inside the
// namespace and bound to src, so packets leave with src as their source.
func ping(ctx context.Context, ns *hostnet.NS, src, dst netip.Addr, timeout time.Duration) (Reply, error) {
	if !src.Is4() || !dst.Is4() {
		return Reply{}, fmt.Errorf("ping %s from %s: IPv4 addresses only", dst, src)
	}
	var conn net.PacketConn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.ListenPacket("ip4:icmp", src.String())
		return err
	}); err != nil {
		return Reply{}, fmt.Errorf("ICMP socket on %s: %w", src, err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()

	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	sent := map[uint16]time.Time{}
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, maxICMPPacketBytes)
	for seq := uint16(1); ; seq++ {
		if err := ctx.Err(); err != nil {
			return noAnswer(err)
		}
		sent[seq] = time.Now()
		if _, err := conn.WriteTo(echoRequest(id, seq), to); err != nil {
			// The kernel's own verdicts (no route, a failed neighbour)
			// come back as send errors.
			return Reply{Error: sendError(err)}, nil
		}
		next := time.Now().Add(pingInterval)
		if next.After(deadline) {
			next = deadline
		}
		if err := conn.SetReadDeadline(next); err != nil {
			return Reply{}, err
		}
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if ctx.Err() != nil {
						return noAnswer(ctx.Err())
					}
					break // time to send the next one
				}
				return Reply{}, fmt.Errorf("reading ICMP: %w", err)
			}
			fromIP, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
			fromIP = fromIP.Unmap()
			r, ok := parseICMP(buf[:n], fromIP, dst, id, sent)
			if ok {
				return r, nil
			}
		}
	}
}

// noAnswer is ping's result when the context ends: silence at the
// timeout, the context's error when the caller cancelled.
func noAnswer(err error) (Reply, error) {
	if errors.Is(err, context.DeadlineExceeded) {
		return Reply{}, nil
	}
	return Reply{}, err
}

// echoRequest builds an ICMP echo request.
func echoRequest(id, seq uint16) []byte {
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(id), Seq: int(seq), Data: []byte("nimbo router chk")}}
	b, err := m.Marshal(nil)
	if err != nil {
		panic(err) // an echo request always marshals
	}
	return b
}

// parseICMP reads one ICMP message (without its IP header) from from: an
// echo reply from dst to one of ours, or an error about one of ours. ok is
// false for anything else (a raw socket sees every ICMP message the
// namespace receives for its address).
func parseICMP(b []byte, from, dst netip.Addr, id uint16, sent map[uint16]time.Time) (Reply, bool) {
	m, err := icmp.ParseMessage(ipv4.ICMPTypeEcho.Protocol(), b)
	if err != nil {
		return Reply{}, false
	}
	var quoted []byte // an error quotes our IP header and the first 8 bytes of our request
	switch body := m.Body.(type) {
	case *icmp.Echo:
		if m.Type != ipv4.ICMPTypeEchoReply || from != dst || body.ID != int(id) {
			return Reply{}, false
		}
		t, ok := sent[uint16(body.Seq)]
		if !ok {
			return Reply{}, false
		}
		return Reply{Answered: true, RTT: time.Since(t)}, true
	case *icmp.DstUnreach:
		quoted = body.Data
	case *icmp.TimeExceeded:
		quoted = body.Data
	default:
		return Reply{}, false
	}
	h, err := ipv4.ParseHeader(quoted)
	if err != nil || h.Protocol != ipv4.ICMPTypeEcho.Protocol() || len(quoted) < h.Len+8 {
		return Reply{}, false
	}
	q := quoted[h.Len:]
	if q[0] != byte(ipv4.ICMPTypeEcho) || binary.BigEndian.Uint16(q[4:]) != id {
		return Reply{}, false
	}
	what := "time exceeded (a routing loop, or too many hops)"
	if m.Type == ipv4.ICMPTypeDestinationUnreachable {
		if what = unreachableCodes[byte(m.Code)]; what == "" {
			what = fmt.Sprintf("destination unreachable (code %d)", m.Code)
		}
	}
	return Reply{Error: fmt.Sprintf("%s says: %s", from, what)}, true
}

// sendError puts a send error in words.
func sendError(err error) string {
	switch {
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable (no ARP answer, or a route says so)"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable: no route"
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return "the packet was refused locally (a firewall rule in the namespace)"
	}
	return err.Error()
}

// dial connects from src to dst:port over TCP inside ns and closes the
// connection at once.
func dial(ctx context.Context, ns *hostnet.NS, src, dst netip.Addr, port int, timeout time.Duration) (Reply, error) {
	if port <= 0 || port > 65535 {
		return Reply{}, fmt.Errorf("invalid port %d", port)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn net.Conn
	start := time.Now()
	var derr error
	err := ns.Do(func() error {
		// One literal address: the socket is created on this thread (in
		// the namespace), with no parallel fallback.
		d := net.Dialer{FallbackDelay: -1}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		conn, derr = d.DialContext(ctx, "tcp4", netip.AddrPortFrom(dst, uint16(port)).String())
		return nil
	})
	if err != nil {
		return Reply{}, err
	}
	switch {
	case derr == nil:
		rtt := time.Since(start)
		_ = conn.Close()
		return Reply{Answered: true, RTT: rtt}, nil
	case errors.Is(derr, syscall.ECONNREFUSED):
		return Reply{Refused: true, RTT: time.Since(start)}, nil
	case errors.Is(derr, syscall.EHOSTUNREACH), errors.Is(derr, syscall.ENETUNREACH):
		return Reply{Error: sendError(derr)}, nil
	case errors.Is(derr, context.Canceled):
		return Reply{}, derr
	case errors.Is(derr, context.DeadlineExceeded), errors.Is(derr, os.ErrDeadlineExceeded):
		return Reply{}, nil
	}
	return Reply{Error: derr.Error()}, nil
}
