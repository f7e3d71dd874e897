//go:build linux

package doctor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Names used inside the throwaway namespace (IFNAMSIZ-1 = 15 bytes max).
const (
	probeBridge  = "nimbo-br-probe"
	probeVeth    = "nimbo-ve-probe"
	probeVethPr  = "nimbo-vp-probe"
	probeVXLAN   = "nimbo-vx-probe"
	probeTap     = "nimbo-tp-probe"
	probeNFTable = "nimbo_probe"

	probeVNI       = 4242
	probeVXLANPort = 4789

	vethInfoPeer = 1 // VETH_INFO_PEER, include/uapi/linux/veth.h
)

// netlinkTimeout bounds each netlink receive.
const netlinkTimeout = 3 * time.Second

// realNetProbe creates a network namespace on a dedicated OS thread and,
// inside it, a bridge, a veth pair enslaved to the bridge, a vxlan device,
// a tap device and an nftables table. The namespace and everything in it
// disappear with the thread; the host's namespace is never touched.
func realNetProbe(ctx context.Context) netProbeResult {
	r, err := inThrowawayNetns(ctx, probeFeatures)
	if err != nil {
		return netProbeResult{netnsErr: err}
	}
	return r
}

// inThrowawayNetns runs fn on a fresh OS thread moved into a new network
// namespace. The thread stays locked when fn returns, so the Go runtime
// destroys it instead of reusing it, and the namespace goes with it. The
// calling goroutine's thread never changes namespace. If ctx ends first,
// inThrowawayNetns returns ctx's error and fn finishes on its own.
func inThrowawayNetns[T any](ctx context.Context, fn func() T) (T, error) {
	type result struct {
		v   T
		err error
	}
	work := func() result {
		if err := enterNewNetns(); err != nil {
			return result{err: err}
		}
		return result{v: fn()}
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			// No UnlockOSThread: the thread is discarded at exit.
			ch <- work()
			return
		}
		// This is the process's main thread, which the runtime parks
		// instead of destroying; keep it locked and untouched while
		// another thread does the work.
		inner := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			inner <- work()
		}()
		r := <-inner
		runtime.UnlockOSThread()
		ch <- r
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("the namespace probe did not finish: %w", ctx.Err())
	}
}

// netnsID identifies a network namespace by the device and inode of its
// nsfs file.
type netnsID struct{ dev, ino uint64 }

func threadNetns() (netnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err != nil {
		return netnsID{}, err
	}
	return netnsID{st.Dev, st.Ino}, nil
}

// enterNewNetns moves the calling (locked, to-be-discarded) thread into a
// new network namespace and verifies that it really left the old one.
func enterNewNetns() error {
	before, err := threadNetns()
	if err != nil {
		return fmt.Errorf("cannot read this thread's network namespace: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	after, err := threadNetns()
	if err != nil || after == before {
		// Never go on in what may be the host's namespace.
		return fmt.Errorf("unshare(CLONE_NEWNET) did not give the thread a new namespace (%v)", err)
	}
	return nil
}

// probeFeatures exercises each feature; it runs inside a throwaway
// namespace.
func probeFeatures() netProbeResult {
	r := netProbeResult{ran: true, results: map[string]error{}}
	nl, err := openNetlink(unix.NETLINK_ROUTE)
	if err != nil {
		err = fmt.Errorf("netlink socket: %w", err)
		r.results["bridge"], r.results["veth"], r.results["vxlan"] = err, err, err
	} else {
		defer nl.close()
		r.results["bridge"] = nl.newLink(probeBridge, "bridge", nil)
		r.results["veth"] = nl.newLink(probeVeth, "veth", func(m *nlMsg) {
			peer := m.nestStart(vethInfoPeer)
			m.put(ifInfomsg())
			m.attrString(unix.IFLA_IFNAME, probeVethPr)
			m.nestEnd(peer)
		})
		if r.results["bridge"] == nil && r.results["veth"] == nil {
			if err := nl.setMaster(probeVeth, probeBridge); err != nil {
				r.results["bridge"] = fmt.Errorf("attaching a veth to the bridge: %w", err)
			}
		}
		r.results["vxlan"] = nl.newLink(probeVXLAN, "vxlan", func(m *nlMsg) {
			m.attrU32(unix.IFLA_VXLAN_ID, probeVNI)
			port := make([]byte, 2)
			binary.BigEndian.PutUint16(port, probeVXLANPort)
			m.attr(unix.IFLA_VXLAN_PORT, port)
		})
	}
	r.results["tun"] = probeTapDevice()
	r.results["nftables"] = probeNFTables()
	return r
}

// probeTapDevice creates a tap device through /dev/net/tun; it vanishes
// when the fd is closed.
func probeTapDevice() error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(probeTap)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF (create a tap device): %w", err)
	}
	return nil
}

// probeNFTables creates an inet table in a netfilter batch.
func probeNFTables() error {
	nl, err := openNetlink(unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer nl.close()
	seq := nl.nextSeq(3)
	var buf []byte
	begin := newNlMsg(unix.NFNL_MSG_BATCH_BEGIN, unix.NLM_F_REQUEST, seq)
	begin.put(nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES))
	buf = append(buf, begin.bytes()...)
	table := newNlMsg(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE,
		unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE, seq+1)
	table.put(nfgenmsg(unix.NFPROTO_INET, 0))
	table.attrString(unix.NFTA_TABLE_NAME, probeNFTable)
	buf = append(buf, table.bytes()...)
	end := newNlMsg(unix.NFNL_MSG_BATCH_END, unix.NLM_F_REQUEST, seq+2)
	end.put(nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES))
	buf = append(buf, end.bytes()...)
	if err := nl.send(buf); err != nil {
		return err
	}
	if err := nl.waitAck(seq, seq+2, seq+1); err != nil {
		return fmt.Errorf("creating an nftables table: %w", err)
	}
	return nil
}

// nfgenmsg is struct nfgenmsg: family, version, res_id (big endian).
func nfgenmsg(family uint8, resID uint16) []byte {
	b := []byte{family, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], resID)
	return b
}

// ifInfomsg is an empty struct ifinfomsg (AF_UNSPEC, no index).
func ifInfomsg() []byte {
	return make([]byte, unix.SizeofIfInfomsg)
}

// netlinkSock is a netlink socket with a sequence counter.
type netlinkSock struct {
	fd  int
	seq uint32
}

func openNetlink(proto int) (*netlinkSock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Ask for error strings and a capped echo of the request; both are
	// optional.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &netlinkSock{fd: fd, seq: uint32(time.Now().UnixNano())}, nil
}

func (s *netlinkSock) close() { unix.Close(s.fd) }

// nextSeq reserves n sequence numbers and returns the first.
func (s *netlinkSock) nextSeq(n uint32) uint32 {
	first := s.seq + 1
	s.seq += n
	return first
}

func (s *netlinkSock) send(b []byte) error {
	return unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// waitAck reads replies until the ack for want arrives or a request in
// [lo, hi] fails.
func (s *netlinkSock) waitAck(lo, hi, want uint32) error {
	buf := make([]byte, 64*1024)
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
			return errors.New("no netlink answer (timed out)")
		}
		if err != nil {
			return err
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.seq < lo || m.seq > hi || m.typ != unix.NLMSG_ERROR {
				continue
			}
			if m.err != nil {
				return m.err
			}
			if m.seq == want {
				return nil
			}
		}
	}
}

// request sends one message and waits for its ack.
func (s *netlinkSock) request(m *nlMsg) error {
	if err := s.send(m.bytes()); err != nil {
		return err
	}
	return s.waitAck(m.seq, m.seq, m.seq)
}

// newLink creates a link of the given kind; data, if not nil, fills
// IFLA_INFO_DATA.
func (s *netlinkSock) newLink(name, kind string, data func(*nlMsg)) error {
	m := newNlMsg(unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, s.nextSeq(1))
	m.put(ifInfomsg())
	m.attrString(unix.IFLA_IFNAME, name)
	li := m.nestStart(unix.IFLA_LINKINFO)
	m.attrString(unix.IFLA_INFO_KIND, kind)
	if data != nil {
		d := m.nestStart(unix.IFLA_INFO_DATA)
		data(m)
		m.nestEnd(d)
	}
	m.nestEnd(li)
	if err := s.request(m); err != nil {
		return fmt.Errorf("creating a %s device: %w", kind, err)
	}
	return nil
}

// setMaster makes link a port of master.
func (s *netlinkSock) setMaster(link, master string) error {
	idx, err := s.ifindex(master)
	if err != nil {
		return err
	}
	m := newNlMsg(unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK, s.nextSeq(1))
	m.put(ifInfomsg())
	m.attrString(unix.IFLA_IFNAME, link)
	m.attrU32(unix.IFLA_MASTER, idx)
	return s.request(m)
}

// ifindex looks a link up by name in the socket's namespace.
func (s *netlinkSock) ifindex(name string) (uint32, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(s.fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("SIOCGIFINDEX %s: %w", name, err)
	}
	return ifr.Uint32(), nil
}

// nlMsg builds one netlink message.
type nlMsg struct {
	b   []byte
	seq uint32
}

func newNlMsg(typ, flags uint16, seq uint32) *nlMsg {
	m := &nlMsg{b: make([]byte, unix.SizeofNlMsghdr, 256), seq: seq}
	binary.NativeEndian.PutUint16(m.b[4:], typ)
	binary.NativeEndian.PutUint16(m.b[6:], flags)
	binary.NativeEndian.PutUint32(m.b[8:], seq)
	return m
}

// put appends raw bytes, padded to 4.
func (m *nlMsg) put(b []byte) {
	m.b = append(m.b, b...)
	m.pad()
}

func (m *nlMsg) pad() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

func (m *nlMsg) attr(typ uint16, data []byte) {
	h := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(h[0:], uint16(unix.SizeofRtAttr+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	m.b = append(m.b, h...)
	m.b = append(m.b, data...)
	m.pad()
}

func (m *nlMsg) attrString(typ uint16, s string) {
	m.attr(typ, append([]byte(s), 0))
}

func (m *nlMsg) attrU32(typ uint16, v uint32) {
	m.attr(typ, binary.NativeEndian.AppendUint32(nil, v))
}

// nestStart opens a nested attribute; nestEnd closes it.
func (m *nlMsg) nestStart(typ uint16) int {
	at := len(m.b)
	m.attr(typ|unix.NLA_F_NESTED, nil)
	return at
}

func (m *nlMsg) nestEnd(at int) {
	binary.NativeEndian.PutUint16(m.b[at:], uint16(len(m.b)-at))
}

// bytes returns the message with its length set.
func (m *nlMsg) bytes() []byte {
	binary.NativeEndian.PutUint32(m.b[0:], uint32(len(m.b)))
	return m.b
}

// nlReply is one received netlink message; err is set for NLMSG_ERROR
// messages that carry an error.
type nlReply struct {
	typ uint16
	seq uint32
	err error
}

// parseNetlink splits a datagram into messages and decodes errors,
// including the extended-ack message string when present.
func parseNetlink(b []byte) ([]nlReply, error) {
	var out []nlReply
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return out, fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
		}
		r := nlReply{
			typ: binary.NativeEndian.Uint16(b[4:]),
			seq: binary.NativeEndian.Uint32(b[8:]),
		}
		flags := binary.NativeEndian.Uint16(b[6:])
		payload := b[unix.SizeofNlMsghdr:l]
		if r.typ == unix.NLMSG_ERROR && len(payload) >= 4 {
			if code := int32(binary.NativeEndian.Uint32(payload)); code != 0 {
				err := error(syscall.Errno(-code))
				if msg := extAckMessage(payload, flags); msg != "" {
					err = fmt.Errorf("%w (%s)", err, msg)
				}
				r.err = err
			}
		}
		out = append(out, r)
		adv := (l + 3) &^ 3
		if adv > len(b) {
			break
		}
		b = b[adv:]
	}
	return out, nil
}

// extAckMessage extracts NLMSGERR_ATTR_MSG from an NLMSG_ERROR payload
// (int error, the request's header or whole request, then attributes).
func extAckMessage(payload []byte, flags uint16) string {
	if flags&unix.NLM_F_ACK_TLVS == 0 || len(payload) < 4+unix.SizeofNlMsghdr {
		return ""
	}
	off := 4 + unix.SizeofNlMsghdr
	if flags&unix.NLM_F_CAPPED == 0 {
		off = 4 + int(binary.NativeEndian.Uint32(payload[4:]))
	}
	for off = (off + 3) &^ 3; off+unix.SizeofRtAttr <= len(payload); {
		l := int(binary.NativeEndian.Uint16(payload[off:]))
		typ := binary.NativeEndian.Uint16(payload[off+2:])
		if l < unix.SizeofRtAttr || off+l > len(payload) {
			return ""
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			return strings.TrimRight(string(payload[off+unix.SizeofRtAttr:off+l]), "\x00")
		}
		off += (l + 3) &^ 3
	}
	return ""
}
