package nft

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
)

// RouterTableName is the table (family ip) that RouterNAT owns in a router
// namespace. Nothing else in the namespace is touched.
const RouterTableName = "nimbo_router"

// RouterRules is the whole desired NAT of one router namespace, with the
// meaning Neutron's L3 agent gives it. RouterNAT.Apply makes the kernel
// match it exactly.
//
// Translation happens only for the first packet of a connection (nftables
// NAT chains see nothing else): later packets and the replies follow the
// conntrack entry, so a change of RouterRules never alters a connection
// that already exists, and each floating IP or forward is one map element,
// so changing one leaves every other untouched. A removed floating IP or
// forward therefore keeps carrying the connections it already had until
// they end; a caller that wants them cut deletes their conntrack entries.
//
// Only IPv4 is translated (Neutron does not NAT IPv6).
type RouterRules struct {
	// GatewayIface is the router's leg on the external network; "" means
	// the router has no gateway: then nothing is source-NATed, and
	// FloatingIPs and Forwards must be empty.
	GatewayIface string
	// GatewayIP is the router's address on the external network: the
	// source of SNAT. Required with a GatewayIface.
	GatewayIP netip.Addr
	// SNAT is Neutron's enable_snat: traffic from Internal leaving by
	// GatewayIface gets GatewayIP as its source (a fixed address, not
	// masquerade, so conntrack survives interface events), unless its
	// source has a floating IP.
	SNAT bool
	// Internal are the subnets of the router's internal legs: the sources
	// SNAT applies to, and what hairpinned connections come from. IPv6
	// prefixes are ignored.
	Internal []netip.Prefix
	// FloatingIPs are 1:1 NAT between an external and an internal address,
	// whatever SNAT says.
	FloatingIPs []FloatingIP
	// Forwards are port forwards (Neutron's floating IP port forwardings;
	// nimbo also lets them use GatewayIP).
	Forwards []Forward
	// Metadata, if set, sends TCP to 169.254.169.254:80 arriving on an
	// internal leg to a local listener.
	Metadata *Metadata
}

// FloatingIP is 1:1 NAT: connections to External (from any side, so hosts
// behind the same router reach it too) go to Internal, and connections
// Internal opens through the gateway leave from External.
type FloatingIP struct {
	External netip.Addr
	Internal netip.Addr
}

// Forward is a port forward: connections of Protocol (ProtoTCP or ProtoUDP)
// to External on a port in [ExternalPortMin, ExternalPortMax] go to
// Internal, on the port at the same offset in [InternalPortMin,
// InternalPortMax] (port for port), or, if the internal range is one port,
// all to that port. A zero ...PortMax means the same as ...PortMin. As in
// Neutron, the internal range is one port or as long as the external one.
type Forward struct {
	Protocol        int
	External        netip.Addr
	ExternalPortMin uint16
	ExternalPortMax uint16
	Internal        netip.Addr
	InternalPortMin uint16
	InternalPortMax uint16
}

// Metadata is the metadata service of a router's networks: TCP to
// 169.254.169.254:80 arriving on an internal leg is redirected to Port on
// the address of the leg it arrived on, in the router namespace (the
// listener should listen on 0.0.0.0:Port there). Port is reachable only
// through that redirect: direct connections to it are dropped.
type Metadata struct {
	Port uint16
}

// MetadataAddr is the address guests reach their metadata service at.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// LinkLocal is the IPv4 link-local range: a router never forwards packets
// to it, so a guest can never reach a link-local service beyond the router
// (on EC2, the host cloud's own metadata service at 169.254.169.254).
var LinkLocal = netip.MustParsePrefix("169.254.0.0/16")

// GatewayAddrs returns the addresses the gateway interface must carry for
// rr to work: GatewayIP with prefix length bits (its subnet on the external
// network) and, as /32s, every other external address rr translates (the
// floating IPs and the external addresses of forwards), so that the router
// answers ARP for them on the external network, as Neutron's qg- device
// does. nft does not manage addresses: the caller gives these to
// hostnet.NS.SetAddrs (see SetGatewayAddrs) before or with Apply. With no
// gateway it returns nil.
func (rr RouterRules) GatewayAddrs(bits int) []netip.Prefix {
	if rr.GatewayIface == "" || !rr.GatewayIP.IsValid() {
		return nil
	}
	gw := rr.GatewayIP.Unmap()
	out := []netip.Prefix{netip.PrefixFrom(gw, bits)}
	seen := map[netip.Addr]bool{gw: true}
	add := func(a netip.Addr) {
		a = a.Unmap()
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	for _, f := range rr.FloatingIPs {
		add(f.External)
	}
	for _, f := range rr.Forwards {
		add(f.External)
	}
	return out
}

// SetGatewayAddrs makes the addresses of rr.GatewayIface in ns exactly
// rr.GatewayAddrs(bits) (IPv6 link-local addresses aside). A caller whose
// gateway carries more addresses (IPv6) calls ns.SetAddrs itself with
// GatewayAddrs and those.
func SetGatewayAddrs(ctx context.Context, ns *hostnet.NS, rr RouterRules, bits int) error {
	if rr.GatewayIface == "" {
		return nil
	}
	if !rr.GatewayIP.Is4() || bits < 0 || bits > 32 {
		return errdefs.Invalidf("nft: gateway address %s/%d is not IPv4", rr.GatewayIP, bits)
	}
	return ns.SetAddrs(ctx, rr.GatewayIface, rr.GatewayAddrs(bits))
}

// RouterNAT programs the NAT of one router namespace: table ip
// RouterTableName. Like Firewall it diffs against what the kernel holds and
// sends one atomic batch, so a second Apply with the same rules sends
// nothing and a restarted agent adopts the table it finds. It does not set
// net.ipv4.ip_forward nor addresses (see GatewayAddrs). It is safe for
// concurrent use; calls are serialised.
type RouterNAT struct {
	ns   *hostnet.NS
	log  *slog.Logger
	mu   sync.Mutex
	last *applied // see Firewall.last
}

// NewRouterNAT returns a RouterNAT for the router namespace ns, which the
// caller keeps open while using it (and closes afterwards). A nil log
// discards logs.
func NewRouterNAT(ns *hostnet.NS, log *slog.Logger) *RouterNAT {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RouterNAT{ns: ns, log: log}
}

// Apply makes the router's NAT table hold exactly rr: sets and map elements
// are added and removed one by one, chains rewritten only when their
// content changes, all in one atomic batch. A zero Stats means nothing was
// sent. Invalid rules are an errdefs.ErrInvalid before the namespace is
// touched.
func (r *RouterNAT) Apply(ctx context.Context, rr RouterRules) (Stats, error) {
	prog, err := compileRouter(rr)
	if err != nil {
		return Stats{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	last := r.last
	r.last = nil // until this Apply succeeds
	st, next, err := applyProgram(ctx, r.ns, last, prog)
	if err != nil {
		return Stats{}, err
	}
	r.last = next
	r.log.Debug("nft: router NAT applied", "floating_ips", len(rr.FloatingIPs), "forwards", len(rr.Forwards),
		"stats", st, "took", time.Since(start))
	return st, nil
}

// Delete removes the router's NAT table (not an error if absent).
func (r *RouterNAT) Delete(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := nsConn(r.ns)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	t, err := findTable(conn, nftables.TableFamilyIPv4, RouterTableName)
	if err != nil {
		return fmt.Errorf("nft: list ip tables: %w", err)
	}
	if t == nil {
		return nil
	}
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nft: delete table %s: %w", RouterTableName, err)
	}
	return nil
}

// applyProgram makes the kernel in ns hold prog, in one batch: it diffs
// against last while the namespace's generation has not moved since last
// was recorded, and against what it reads back otherwise. It returns what
// it changed and the state to diff against next time (nil if unknown).
func applyProgram(ctx context.Context, ns *hostnet.NS, last *applied, prog *program) (Stats, *applied, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, nil, err
	}
	gen, err := ruleGeneration(ns.Fd())
	if err != nil {
		return Stats{}, nil, err
	}
	conn, err := nsConn(ns)
	if err != nil {
		return Stats{}, nil, err
	}
	defer conn.CloseLasting()
	a := &applier{conn: conn}
	cached := last != nil && last.gen == gen && len(last.tables) == len(prog.tables)
	for i, t := range prog.tables {
		var st *tableState
		if cached {
			st = last.tables[i]
		} else if st, err = readTable(conn, t.family, t.name); err != nil {
			return Stats{}, nil, fmt.Errorf("nft: read %s table %s: %w", FamilyName(t.family), t.name, err)
		}
		if err := a.plan(t, st); err != nil {
			return Stats{}, nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return Stats{}, nil, err
	}
	if a.stats.Messages == 0 {
		if cached {
			return a.stats, last, nil
		}
		return a.stats, &applied{gen: gen, tables: stateOf(prog)}, nil
	}
	if err := conn.Flush(); err != nil {
		return Stats{}, nil, fmt.Errorf("nft: apply batch of %d messages: %w", a.stats.Messages, err)
	}
	var next *applied
	// Exactly one commit since gen (ours): nobody else changed anything
	// in between, so the kernel now holds prog.
	if after, err := ruleGeneration(ns.Fd()); err == nil && after == gen+1 {
		next = &applied{gen: after, tables: stateOf(prog)}
	}
	return a.stats, next, nil
}
