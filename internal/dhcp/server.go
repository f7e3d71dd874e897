// Package dhcp is nimbo's DHCPv4 server: one per network, on the network's
// DHCP port inside a network namespace, built on insomniacslk/dhcp's server4.
//
// It answers only MACs it knows (a static table MAC -> IP, as Neutron's ports
// define it; there is no dynamic pool and no lease database), with the
// network's options: subnet mask, router, DNS servers, domain name, MTU
// (option 26), host routes as classless static routes (option 121, which
// then also carries the default route, since clients that get option 121
// ignore option 3), the route to the metadata address, and the lease time.
// Its server identifier is the DHCP port's own address, because clients
// renew by unicast to it. The table can be replaced while the server runs
// (Update). Unparsable packets are logged through log/slog.
//
// The socket is opened on a thread switched into the namespace (a socket
// keeps the namespace it was created in) and then served from ordinary
// goroutines. Stop closes it, so the namespace can be deleted afterwards.
package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// DefaultLeaseTime is the lease time when Config.LeaseTime is 0 (Neutron's
// default dhcp_lease_duration).
const DefaultLeaseTime = 24 * time.Hour

// MetadataAddr is the address of the metadata service guests reach.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// Host is a client the server answers: a port's MAC and fixed IP.
type Host struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string // option 12; "" for none
}

// Route is a host route (a Neutron subnet's host_routes entry).
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
}

// Config is one network's DHCP service.
type Config struct {
	NS         *hostnet.NS // the namespace of Interface; nil for the process's own
	Interface  string      // the DHCP port's interface
	ServerIP   netip.Addr  // the DHCP port's own address: the server identifier
	Subnet     netip.Prefix
	Router     netip.Addr   // option 3; zero for none (an isolated network)
	DNS        []netip.Addr // option 6
	DomainName string       // option 15
	MTU        int          // option 26; 0 to not send it
	Routes     []Route      // option 121
	// MetadataVia, if set, adds 169.254.169.254/32 via this address to
	// option 121 (Neutron's isolated metadata: usually the DHCP port's own
	// address).
	MetadataVia netip.Addr
	LeaseTime   time.Duration // option 51; 0 for DefaultLeaseTime
	Hosts       []Host
	Logger      *slog.Logger // nil discards logs
}

// Server is a running DHCP server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	conn    net.PacketConn
	hostsMu sync.RWMutex
	hosts   map[string]Host // by MAC string

	mu       sync.Mutex
	stopped  bool
	inflight sync.WaitGroup
	stopOnce sync.Once
	served   chan struct{} // closed when Serve returns
	serveErr error
	stopCh   chan struct{}
}

func (c *Config) validate() error {
	if err := hostnet.ValidIfName(c.Interface); err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
		return errdefs.Invalidf("dhcp: subnet %v is not an IPv4 prefix", c.Subnet)
	}
	c.Subnet = c.Subnet.Masked()
	if !c.ServerIP.Is4() || !c.Subnet.Contains(c.ServerIP) {
		return errdefs.Invalidf("dhcp: server address %v is not in %v", c.ServerIP, c.Subnet)
	}
	if c.Router.IsValid() && (!c.Router.Is4() || !c.Subnet.Contains(c.Router)) {
		return errdefs.Invalidf("dhcp: router %v is not in %v", c.Router, c.Subnet)
	}
	for _, d := range c.DNS {
		if !d.Is4() {
			return errdefs.Invalidf("dhcp: DNS server %v is not IPv4", d)
		}
	}
	for _, r := range c.Routes {
		if !r.Dst.IsValid() || !r.Dst.Addr().Is4() || !r.Via.Is4() {
			return errdefs.Invalidf("dhcp: host route %v via %v is not IPv4", r.Dst, r.Via)
		}
	}
	if c.MetadataVia.IsValid() && !c.MetadataVia.Is4() {
		return errdefs.Invalidf("dhcp: metadata route via %v is not IPv4", c.MetadataVia)
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		return errdefs.Invalidf("dhcp: MTU %d out of range", c.MTU)
	}
	if c.LeaseTime < 0 {
		return errdefs.Invalidf("dhcp: negative lease time")
	}
	if c.LeaseTime == 0 {
		c.LeaseTime = DefaultLeaseTime
	}
	return nil
}

func (s *Server) hostTable(hosts []Host) (map[string]Host, error) {
	m := make(map[string]Host, len(hosts))
	for _, h := range hosts {
		if err := s.validHost(h); err != nil {
			return nil, err
		}
		key := h.MAC.String()
		if _, dup := m[key]; dup {
			return nil, errdefs.Invalidf("dhcp: MAC %s listed twice", key)
		}
		m[key] = h
	}
	return m, nil
}

func (s *Server) validHost(h Host) error {
	if len(h.MAC) != 6 {
		return errdefs.Invalidf("dhcp: host %v: MAC %q is not a 6-byte Ethernet address", h.IP, h.MAC)
	}
	if !h.IP.Is4() || !s.cfg.Subnet.Contains(h.IP) {
		return errdefs.Invalidf("dhcp: host %s: address %v is not in %v", h.MAC, h.IP, s.cfg.Subnet)
	}
	return nil
}

// Start opens the server's socket (port 67, bound to cfg.Interface, inside
// cfg.NS) and serves until ctx is done or Stop is called. The interface must
// exist and, so that unicast renewals reach the server, have cfg.ServerIP.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, served: make(chan struct{}), stopCh: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("iface", cfg.Interface, "server", cfg.ServerIP)
	hosts, err := s.hostTable(cfg.Hosts)
	if err != nil {
		return nil, err
	}
	s.hosts = hosts
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.NS != nil {
		addrs, err := cfg.NS.Addrs(ctx, cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("dhcp: %w", err)
		}
		if !slices.ContainsFunc(addrs, func(p netip.Prefix) bool { return p.Addr() == cfg.ServerIP }) {
			return nil, errdefs.Invalidf("dhcp: %s does not have the server address %v (renewals are unicast to it)", cfg.Interface, cfg.ServerIP)
		}
	}
	open := func() error {
		var err error
		s.conn, err = server4.NewIPv4UDPConn(cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
		return err
	}
	if cfg.NS != nil {
		err = cfg.NS.Do(open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen on %s:67: %w", cfg.Interface, err)
	}
	srv, err := server4.NewServer("", nil, s.handle, server4.WithConn(s.conn), server4.WithLogger(slogLogger{s.log}))
	if err != nil {
		s.conn.Close()
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	go func() {
		err := srv.Serve()
		if s.isStopped() {
			err = nil
		}
		s.serveErr = err
		close(s.served)
	}()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Stop()
		case <-s.stopCh:
		}
	}()
	s.log.Info("dhcp: serving", "hosts", len(hosts))
	return s, nil
}

// Update replaces the table of hosts the server answers; it takes effect
// for the next packet.
func (s *Server) Update(hosts []Host) error {
	m, err := s.hostTable(hosts)
	if err != nil {
		return err
	}
	s.hostsMu.Lock()
	s.hosts = m
	s.hostsMu.Unlock()
	return nil
}

// Change adds or replaces the hosts in set and removes the hosts with the
// MACs in remove (removals first), in time proportional to the change, not
// to the table: an agent serving a network of 10,000 ports updates one
// entry per port change. Nothing changes if an entry of set is invalid.
func (s *Server) Change(set []Host, remove []net.HardwareAddr) error {
	for _, h := range set {
		if err := s.validHost(h); err != nil {
			return err
		}
	}
	s.hostsMu.Lock()
	defer s.hostsMu.Unlock()
	for _, mac := range remove {
		delete(s.hosts, mac.String())
	}
	for _, h := range set {
		s.hosts[h.MAC.String()] = h
	}
	return nil
}

// Hosts returns the number of hosts the server answers.
func (s *Server) Hosts() int {
	s.hostsMu.RLock()
	defer s.hostsMu.RUnlock()
	return len(s.hosts)
}

// Stop closes the socket and waits for the requests being answered. It is
// safe to call more than once. It returns the error that ended serving
// early, if any.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		close(s.stopCh)
		_ = s.conn.Close()
		<-s.served
		s.inflight.Wait()
		s.log.Info("dhcp: stopped")
	})
	return s.serveErr
}

// Done is closed when the server has stopped serving (Stop, ctx, or an
// error on the socket).
func (s *Server) Done() <-chan struct{} { return s.served }

func (s *Server) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// enter registers a request being answered, unless the server stops.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.inflight.Add(1)
	return true
}

// handle answers one request. server4 calls it on a goroutine per packet.
func (s *Server) handle(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
	if !s.enter() {
		return
	}
	defer s.inflight.Done()
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return
	}
	mac := req.ClientHWAddr.String()
	log := s.log.With("mac", mac, "type", req.MessageType().String(), "xid", req.TransactionID.String())
	s.hostsMu.RLock()
	host, known := s.hosts[mac]
	s.hostsMu.RUnlock()
	if !known {
		log.Debug("dhcp: ignoring unknown MAC")
		return
	}
	server := net.IP(s.cfg.ServerIP.AsSlice())
	var reply *dhcpv4.DHCPv4
	var err error
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		reply, err = s.lease(req, host, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.Equal(server) {
			log.Debug("dhcp: client chose another server", "chosen", sid)
			return
		}
		asked := req.RequestedIPAddress()
		if asked == nil || asked.IsUnspecified() {
			asked = req.ClientIPAddr // renewing or rebinding
		}
		if want := net.IP(host.IP.AsSlice()); !asked.Equal(want) {
			log.Info("dhcp: refusing a request for another address", "asked", asked, "assigned", host.IP)
			reply, err = dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
				dhcpv4.WithOption(dhcpv4.OptMessage("address not assigned to this client")))
			break
		}
		reply, err = s.lease(req, host, dhcpv4.MessageTypeAck)
	case dhcpv4.MessageTypeInform:
		reply, err = s.lease(req, host, dhcpv4.MessageTypeAck)
		if reply != nil {
			reply.YourIPAddr = net.IPv4zero
			reply.Options.Del(dhcpv4.OptionIPAddressLeaseTime)
			reply.Options.Del(dhcpv4.OptionRenewTimeValue)
			reply.Options.Del(dhcpv4.OptionRebindingTimeValue)
		}
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		log.Info("dhcp: client gave its address back", "ip", req.ClientIPAddr)
		return
	default:
		return
	}
	if err != nil {
		log.Error("dhcp: building a reply", "err", err)
		return
	}
	dst := s.destination(req, reply)
	if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
		if !s.isStopped() {
			log.Warn("dhcp: sending the reply", "to", dst, "err", err)
		}
		return
	}
	log.Debug("dhcp: replied", "reply", reply.MessageType().String(), "ip", reply.YourIPAddr, "to", dst)
}

// destination picks where a reply goes (RFC 2131 4.1): to a relay, to a
// client that already has its address, else broadcast (the client cannot
// answer ARP yet; sending to its MAC needs a raw socket).
func (s *Server) destination(req, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case req.GatewayIPAddr != nil && !req.GatewayIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	case reply.MessageType() != dhcpv4.MessageTypeNak && req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// lease builds an offer or an ack for host with all the network's options.
func (s *Server) lease(req *dhcpv4.DHCPv4, host Host, typ dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
	c := &s.cfg
	mask := net.CIDRMask(c.Subnet.Bits(), 32)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(host.IP.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(c.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(c.LeaseTime)),
		dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(c.LeaseTime / 2)),
		dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(c.LeaseTime * 7 / 8)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
		dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(broadcast(c.Subnet))),
	}
	if c.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(c.Router.AsSlice())))
	}
	if len(c.DNS) > 0 {
		ips := make([]net.IP, len(c.DNS))
		for i, d := range c.DNS {
			ips[i] = d.AsSlice()
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(ips...)))
	}
	if c.DomainName != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(c.DomainName)))
	}
	if host.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(host.Hostname)))
	}
	if c.MTU != 0 {
		mtu := make([]byte, 2)
		binary.BigEndian.PutUint16(mtu, uint16(c.MTU))
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionInterfaceMTU, mtu)))
	}
	if routes := s.classlessRoutes(); len(routes) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClasslessStaticRoute(routes...)))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

// classlessRoutes is option 121: the host routes, the metadata route, and,
// when there are any and a router, the default route (a client that gets
// option 121 ignores option 3, RFC 3442).
func (s *Server) classlessRoutes() []*dhcpv4.Route {
	c := &s.cfg
	var out []*dhcpv4.Route
	add := func(dst netip.Prefix, via netip.Addr) {
		dst = dst.Masked()
		out = append(out, &dhcpv4.Route{
			Dest:   &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)},
			Router: via.AsSlice(),
		})
	}
	for _, r := range c.Routes {
		add(r.Dst, r.Via)
	}
	if c.MetadataVia.IsValid() {
		add(netip.PrefixFrom(MetadataAddr, 32), c.MetadataVia)
	}
	if len(out) > 0 && c.Router.IsValid() && !slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Dst.Bits() == 0 }) {
		add(netip.MustParsePrefix("0.0.0.0/0"), c.Router)
	}
	return out
}

func broadcast(p netip.Prefix) net.IP {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return net.IP(b[:])
}

// slogLogger routes server4's logging through slog: read errors and
// unparsable packets at warning level, the chatter at debug level.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Error") {
		if len(v) > 0 {
			if err, ok := v[len(v)-1].(error); ok && errors.Is(err, net.ErrClosed) {
				return // Stop closed the socket
			}
		}
		l.log.Warn("dhcp: " + msg)
		return
	}
	l.log.Debug("dhcp: " + msg)
}

func (l slogLogger) PrintMessage(prefix string, m *dhcpv4.DHCPv4) {
	l.log.Debug("dhcp: "+prefix, "message", m.Summary())
}
