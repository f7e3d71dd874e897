// Package cloud assembles an all-in-one nimbo: the store (embedded etcd or an
// external cluster), the services and the HTTP API on one port. cmd/nimbo's
// `up` runs it; tests and benchmarks start it in-process the same way.
package cloud

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/identityapi"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/networkapi"
	"github.com/nimbo-cloud/nimbo/internal/server"
	"github.com/nimbo-cloud/nimbo/internal/store"
	"github.com/nimbo-cloud/nimbo/internal/store/etcdstore"
	"github.com/nimbo-cloud/nimbo/internal/underlay"
	"github.com/nimbo-cloud/nimbo/internal/underlay/flat"
	"github.com/nimbo-cloud/nimbo/internal/underlay/nat"
)

// Defaults.
const (
	DefaultDataDir = "/var/lib/nimbo"
	DefaultListen  = "0.0.0.0:5000"
	DefaultRegion  = "RegionOne"
)

// Config configures a cloud.
type Config struct {
	DataDir string
	// Listen is the API's address:port.
	Listen string
	// PublicURL is the base URL put in the catalog and openrc; derived from
	// Listen (and the host's primary address) when empty.
	PublicURL string
	// AdminPassword sets the admin password; empty keeps the existing one (a
	// new cloud gets a random one).
	AdminPassword string
	// EtcdEndpoints selects an external etcd cluster instead of the embedded one.
	EtcdEndpoints []string
	Region        string
	TokenTTL      time.Duration
	// Host is this host's ID for port bindings (default: the hostname).
	Host string
	// NetnsPrefix names the network namespaces the agent makes (default "nimbo").
	NetnsPrefix string
	// Underlay is how external networks meet the outside world: "nat"
	// (default) or "flat".
	Underlay string
	// PhysicalInterfaces maps provider physical networks to host
	// interfaces, for the flat underlay ("public" -> "eth1").
	PhysicalInterfaces map[string]string
	// PublicNetwork is the external network a new cloud gets (default:
	// "public", flat, 172.24.4.0/24); NoPublicNetwork skips it.
	PublicNetwork   network.PublicNetwork
	NoPublicNetwork bool
	// PublishAddr, if valid, is a host address on which every port
	// forwarding is also published (nat underlay).
	PublishAddr netip.Addr
	Logger      *slog.Logger
	// Progress, when set, is told about each start-up step as it ends.
	Progress func(step, detail string, took time.Duration)
}

// Cloud is a running all-in-one nimbo.
type Cloud struct {
	cfg      Config
	Store    store.Store
	Identity *identity.Service
	Network  *network.Service
	// URL is the public base URL; AuthURL is Keystone's (URL + "/v3").
	URL, AuthURL string
	// Openrc is the path of the admin credentials file.
	Openrc string
	// NewCloud is true when this start created the cloud.
	NewCloud bool
	// OpenrcHasPassword is false when the admin password is unknown to this
	// start (resumed without --admin-password and no earlier openrc).
	OpenrcHasPassword bool

	// Host is this host's ID; NetnsPrefix names the agent's namespaces.
	Host, NetnsPrefix string
	// Public is the cloud's public network (zero if there is none).
	Public network.Network

	ln    net.Listener
	http  *http.Server
	ns    *hostnet.NS
	agent *agent.Agent
	stop  context.CancelFunc
	done  chan struct{}
}

// Up starts a cloud: opens the store, starts the services, bootstraps the
// identity, binds the API port and writes the openrc. Call Serve, then Close.
func Up(ctx context.Context, cfg Config) (_ *Cloud, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, string, time.Duration) {}
	}
	if cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("host name: %w (give --host)", err)
		}
		cfg.Host = h
	}
	if cfg.NetnsPrefix == "" {
		cfg.NetnsPrefix = "nimbo"
	}
	c := &Cloud{cfg: cfg, Openrc: filepath.Join(cfg.DataDir, "openrc"), Host: cfg.Host, NetnsPrefix: cfg.NetnsPrefix}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if c.URL, err = publicURL(cfg.PublicURL, cfg.Listen); err != nil {
		return nil, err
	}
	c.AuthURL = c.URL + "/v3"

	t := time.Now()
	sc := etcdstore.Config{Logger: cfg.Logger}
	detail := "embedded etcd in " + filepath.Join(cfg.DataDir, "etcd")
	if len(cfg.EtcdEndpoints) > 0 {
		sc.External = &etcdstore.External{Endpoints: cfg.EtcdEndpoints}
		detail = "external etcd at " + strings.Join(cfg.EtcdEndpoints, ",")
	} else {
		sc.Embedded = &etcdstore.Embedded{Dir: filepath.Join(cfg.DataDir, "etcd")}
	}
	st, err := etcdstore.Open(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	c.Store = st
	cfg.Progress("store", detail, time.Since(t))

	t = time.Now()
	if c.Identity, err = identity.New(ctx, st, identity.Options{TokenTTL: cfg.TokenTTL, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	pw, known := cfg.AdminPassword, cfg.AdminPassword != ""
	if !known && !c.Identity.Bootstrapped() {
		pw, known = randomPassword(), true // a new cloud without a given password
	} else if !known {
		pw, known = readOpenrcPassword(c.Openrc) // keep what the last start wrote
	}
	bc := identity.BootstrapConfig{AdminPassword: cfg.AdminPassword, PublicURL: c.URL, Region: cfg.Region}
	if !c.Identity.Bootstrapped() {
		bc.AdminPassword = pw
	}
	res, err := c.Identity.Bootstrap(ctx, bc)
	if err != nil {
		return nil, err
	}
	c.NewCloud, c.OpenrcHasPassword = res.New, known
	how := "resumed"
	if res.New {
		how = "new cloud, admin user created"
	}
	cfg.Progress("identity", "Keystone v3, "+how, time.Since(t))

	t = time.Now()
	if c.Network, err = network.New(ctx, st, network.Options{Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := c.Identity.RegisterService(ctx, "network", "neutron", "nimbo network (Neutron v2.0)", cfg.Region, c.URL+networkapi.Prefix); err != nil {
		return nil, fmt.Errorf("network: catalog: %w", err)
	}
	detail = "Neutron v2.0 at " + networkapi.Prefix
	if !cfg.NoPublicNetwork {
		admin := c.Identity.ListProjects(identity.Filter{Name: "admin", DomainID: identity.DefaultDomainID})
		if len(admin) != 1 {
			return nil, fmt.Errorf("network: public network: no admin project")
		}
		pub, made, err := c.Network.EnsurePublicNetwork(ctx, admin[0].ID, cfg.PublicNetwork)
		if err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
		c.Public = pub
		if made {
			detail += ", public network " + pub.Name + " created"
		}
	}
	cfg.Progress("network", detail, time.Since(t))

	t = time.Now()
	if c.ns, err = hostnet.OpenSelf(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var u underlay.Underlay
	switch cfg.Underlay {
	case "", "nat":
		u = nat.New(c.ns, cfg.Logger)
	case "flat":
		u = flat.New(c.ns, cfg.PhysicalInterfaces, cfg.Logger)
	default:
		return nil, fmt.Errorf("underlay %q: %w (nat or flat)", cfg.Underlay, errdefs.ErrInvalid)
	}
	c.agent = agent.New(agent.Config{Host: cfg.Host, Network: c.Network, NS: c.ns, NetnsPrefix: cfg.NetnsPrefix,
		Underlay: u, PublishAddr: cfg.PublishAddr, Logger: cfg.Logger})
	if err := c.agent.Reconcile(ctx); err != nil {
		// Not fatal: the agent keeps retrying and says why in the log.
		cfg.Logger.Warn("agent: first pass incomplete", "err", err)
	}
	actx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c.stop, c.done = stop, make(chan struct{})
	go func() {
		defer close(c.done)
		_ = c.agent.Run(actx)
	}()
	cfg.Progress("agent", "host "+cfg.Host+": bridges, DHCP, routers, probes and firewall reconciled", time.Since(t))
	us := c.agent.UnderlayStatus()
	cfg.Progress("underlay", u.Name()+": "+us.Message, 0)

	t = time.Now()
	srv := server.New(c.Identity, c.AuthURL, cfg.Logger)
	identityapi.Register(srv, c.Identity, c.URL)
	networkapi.Register(srv, c.Network, c.URL)
	if c.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	c.http = &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	cfg.Progress("api", "listening on "+c.ln.Addr().String(), time.Since(t))

	if err := writeOpenrc(c.Openrc, openrc{AuthURL: c.AuthURL, Password: pw, PasswordKnown: known, Region: cfg.Region}); err != nil {
		return nil, fmt.Errorf("openrc: %w", err)
	}
	cfg.Progress("credentials", c.Openrc, 0)
	return c, nil
}

// Serve serves the API until Shutdown or Close.
func (c *Cloud) Serve() error {
	err := c.http.Serve(c.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting requests and waits for the running ones (until
// ctx ends), then closes everything.
func (c *Cloud) Shutdown(ctx context.Context) error {
	var err error
	if c.http != nil {
		err = c.http.Shutdown(ctx)
	}
	c.Close()
	return err
}

// Close stops everything at once.
func (c *Cloud) Close() {
	if c.http != nil {
		_ = c.http.Close()
	} else if c.ln != nil {
		_ = c.ln.Close()
	}
	if c.stop != nil {
		c.stop()
		<-c.done
	}
	if c.ns != nil {
		_ = c.ns.Close()
	}
	if c.Network != nil {
		c.Network.Close()
	}
	if c.Identity != nil {
		c.Identity.Close()
	}
	if c.Store != nil {
		_ = c.Store.Close()
	}
}

// publicURL derives the base URL clients use.
func publicURL(explicit, listen string) (string, error) {
	if explicit != "" {
		return strings.TrimSuffix(explicit, "/"), nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = primaryAddress()
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// primaryAddress is the first IPv4 address of the interface holding the
// default route (from /proc/net/route; nothing is sent), else 127.0.0.1.
func primaryAddress() string {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return "127.0.0.1"
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != "00000000" {
			continue
		}
		ifc, err := net.InterfaceByName(f[0])
		if err != nil {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func randomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
