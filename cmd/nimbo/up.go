package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/cloud"
	"github.com/nimbo-cloud/nimbo/internal/network"
)

// newFlagSet returns a flag set whose -h prints a usage block.
func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nimbo "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: nimbo %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns -1 to go on, else an exit status.
func parseFlags(fs *flag.FlagSet, args []string) int {
	switch err := fs.Parse(args); {
	case err == flag.ErrHelp:
		return 0
	case err != nil:
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2
	}
	return -1
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func runUp(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("up", "Runs an all-in-one nimbo cloud on this host in the foreground: the state store (embedded\n"+
		"etcd unless --etcd-endpoints), the OpenStack APIs on one port and the agent that builds this\n"+
		"host's networks (bridges, DHCP, probes, firewall), and writes <data-dir>/openrc.\n"+
		"Ctrl-C or SIGTERM stops it cleanly; running it again on the same data dir resumes the same cloud.", stderr)
	dataDir := fs.String("data-dir", cloud.DefaultDataDir, "directory for nimbo's state (embedded etcd, openrc)")
	listen := fs.String("listen", cloud.DefaultListen, "address:port the API listens on (Keystone at /v3)")
	publicURL := fs.String("public-url", "", "base URL clients use, put in the catalog and openrc (default: from --listen and this host's primary address)")
	adminPW := fs.String("admin-password", "", "set the admin password (default: random on a new cloud, kept on a resumed one)")
	etcd := fs.String("etcd-endpoints", "", "comma-separated client URLs of an external etcd cluster to use instead of the embedded one")
	region := fs.String("region", cloud.DefaultRegion, "region name in the catalog")
	ttl := fs.Duration("token-ttl", time.Hour, "lifetime of issued tokens")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	host := fs.String("host", "", "this host's ID in port bindings (default: the hostname)")
	netnsPrefix := fs.String("netns-prefix", "nimbo", "prefix of the network namespaces the agent makes (<prefix>-dhcp-<network>, <prefix>-probe-<port>, <prefix>-router-<router>)")
	underlayMode := fs.String("underlay", "nat", "how external networks reach the outside world: nat (the host masquerades the public range out of its default route) or flat (bridged onto a host interface, see --physical-interface)")
	var physIfs physMappings
	fs.Var(&physIfs, "physical-interface", "PHYSNET=IFACE: bridge provider physical network PHYSNET onto host interface IFACE (flat underlay; repeatable)")
	publicName := fs.String("public-network", "public", "name of the external network a new cloud gets")
	noPublic := fs.Bool("no-public-network", false, "do not create the public network")
	publicCIDR := fs.String("public-cidr", network.DefaultPublicCIDR.String(), "IPv4 range of the public network (its gateway, the first address, is on this host under nat)")
	publishAddr := fs.String("publish-address", "", "a host address on which every floating IP port forwarding is also published (same external port), so clients outside the host reach VMs (nat underlay)")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	pubCIDR, err := netip.ParsePrefix(*publicCIDR)
	if err != nil || !pubCIDR.Addr().Is4() || pubCIDR.Bits() > 30 {
		fmt.Fprintf(stderr, "nimbo up: --public-cidr %q: want an IPv4 range such as 172.24.4.0/24\n", *publicCIDR)
		return 2
	}
	var pubAddr netip.Addr
	if *publishAddr != "" {
		if pubAddr, err = netip.ParseAddr(*publishAddr); err != nil || !pubAddr.Is4() {
			fmt.Fprintf(stderr, "nimbo up: --publish-address %q: want an IPv4 address of this host\n", *publishAddr)
			return 2
		}
	}
	lvl, err := logLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "nimbo up: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)

	var endpoints []string
	for _, e := range strings.Split(*etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			endpoints = append(endpoints, e)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(stdout, "nimbo %s: starting an all-in-one cloud in %s\n", Version(), *dataDir)
	start := time.Now()
	c, err := cloud.Up(ctx, cloud.Config{DataDir: *dataDir, Listen: *listen, PublicURL: *publicURL, AdminPassword: *adminPW,
		EtcdEndpoints: endpoints, Region: *region, TokenTTL: *ttl, Logger: log, Host: *host, NetnsPrefix: *netnsPrefix,
		Underlay: *underlayMode, PhysicalInterfaces: physIfs, PublishAddr: pubAddr, NoPublicNetwork: *noPublic,
		PublicNetwork: network.PublicNetwork{Name: *publicName, CIDR: pubCIDR},
		Progress: func(step, detail string, took time.Duration) {
			fmt.Fprintf(stdout, "  %-12s %s", step+":", detail)
			if took > 0 {
				fmt.Fprintf(stdout, " (%s)", took.Round(time.Millisecond))
			}
			fmt.Fprintln(stdout)
		}})
	if err != nil {
		fmt.Fprintf(stderr, "nimbo up: %v\n", err)
		if ctx.Err() != nil {
			return 130
		}
		fmt.Fprintf(stderr, "Run `nimbo doctor --data-dir %s --listen %s` to check this host.\n", *dataDir, *listen)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- c.Serve() }()

	fmt.Fprintf(stdout, "\nnimbo is up (%s).\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "  API:          %s  (identity: %s)\n", c.URL, c.AuthURL)
	fmt.Fprintf(stdout, "  Region:       %s\n", *region)
	fmt.Fprintf(stdout, "  Credentials:  %s (user admin, project admin)\n", c.Openrc)
	if !c.OpenrcHasPassword {
		fmt.Fprintf(stdout, "                the admin password is not in it: set OS_PASSWORD or restart with --admin-password\n")
	}
	fmt.Fprintf(stdout, "Use it from another shell:\n  . %s\n  openstack token issue\n  openstack catalog list\n", c.Openrc)
	fmt.Fprintf(stdout, "Stop with Ctrl-C; `nimbo up --data-dir %s` again resumes this cloud.\n", *dataDir)

	select {
	case err := <-served:
		c.Close()
		fmt.Fprintf(stderr, "nimbo up: API server stopped: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	fmt.Fprintln(stdout, "nimbo: stopping...")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(sctx); err != nil {
		fmt.Fprintf(stderr, "nimbo up: shutdown: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "nimbo: stopped.")
	return 0
}

// physMappings is the repeatable --physical-interface PHYSNET=IFACE flag.
type physMappings map[string]string

func (m *physMappings) String() string {
	var out []string
	for k, v := range *m {
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ",")
}

func (m *physMappings) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" || v == "" {
		return fmt.Errorf("want PHYSNET=IFACE, got %q", s)
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
	return nil
}
