package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/cloud"
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
	netnsPrefix := fs.String("netns-prefix", "nimbo", "prefix of the network namespaces the agent makes (<prefix>-dhcp-<network>, <prefix>-probe-<port>)")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
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
