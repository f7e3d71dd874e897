package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/probe"
)

const probeUsage = `Usage: nimbo probe <create|list|exec|delete> ...

Probes are ports wired into network namespaces on this host (like neutron-debug's probes),
for checking connectivity from inside a network by hand. They use the cloud and credentials
of the OS_* environment (an openrc); binding a port to a host needs admin credentials.

  nimbo probe create [--name N] [--fixed-ip IP] [--security-group ID]... NETWORK
  nimbo probe list
  nimbo probe exec PROBE -- COMMAND [ARGS...]     e.g. nimbo probe exec p1 -- ping -c1 10.0.0.3
  nimbo probe delete PROBE...
`

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runProbe(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, probeUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("probe "+sub, strings.TrimSpace(probeUsage[strings.Index(probeUsage, "\n\n")+2:]), stderr)
	host := fs.String("host", "", "this host's ID, as given to nimbo up --host (default: the hostname)")
	prefix := fs.String("netns-prefix", "nimbo", "the agent's --netns-prefix")
	name := fs.String("name", "", "probe name (create)")
	fixedIP := fs.String("fixed-ip", "", "address to ask for (create)")
	var groups stringList
	fs.Var(&groups, "security-group", "security group ID, repeatable (create; default: the project's default group)")
	var rest []string
	if sub == "exec" {
		if i := indexOf(args, "--"); i >= 0 {
			args, rest = args[:i], args[i+1:]
		}
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *host == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "nimbo probe: host name: %v (give --host)\n", err)
			return 1
		}
		*host = h
	}
	o := probe.Options{Host: *host, NetnsPrefix: *prefix}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c, err := probe.Client(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "nimbo probe: %v\n", err)
		return 1
	}
	fail := func(err error) int { fmt.Fprintf(stderr, "nimbo probe %s: %v\n", sub, err); return 1 }
	switch sub {
	case "create":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "nimbo probe create: give exactly one NETWORK (name or ID)")
			return 2
		}
		co := probe.CreateOptions{Network: fs.Arg(0), Name: *name, FixedIP: *fixedIP}
		if len(groups) > 0 {
			co.SecurityGroups = groups
		}
		p, err := probe.Create(ctx, c, o, co)
		if err != nil {
			return fail(err)
		}
		printProbes(stdout, []probe.Probe{p})
		if p.Lease != "" {
			fmt.Fprintf(stdout, "DHCP answered with %s, the port's address.\n", p.Lease)
		}
		return 0
	case "list":
		ps, err := probe.List(ctx, c, o)
		if err != nil {
			return fail(err)
		}
		printProbes(stdout, ps)
		return 0
	case "exec":
		if fs.NArg() != 1 || len(rest) == 0 {
			fmt.Fprintln(stderr, "nimbo probe exec: usage: nimbo probe exec PROBE -- COMMAND [ARGS...]")
			return 2
		}
		p, err := probe.Find(ctx, c, o, fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		if p.Host != o.Host {
			return fail(fmt.Errorf("probe %s lives on host %s, not this one (%s)", fs.Arg(0), p.Host, o.Host))
		}
		code, err := probe.Exec(ctx, p, rest)
		if err != nil {
			return fail(err)
		}
		return code
	case "delete":
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, "nimbo probe delete: give one or more PROBEs")
			return 2
		}
		rc := 0
		for _, a := range fs.Args() {
			p, err := probe.Find(ctx, c, o, a)
			if err == nil {
				err = probe.Delete(ctx, c, p, p.Host == o.Host, 30*time.Second)
			}
			if err != nil {
				rc = fail(err)
			}
		}
		return rc
	}
	fmt.Fprintf(stderr, "nimbo probe: unknown subcommand %q\n\n%s", sub, probeUsage)
	return 2
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func printProbes(w io.Writer, ps []probe.Probe) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tNETWORK\tADDRESSES\tMAC\tHOST\tSTATUS\tNAMESPACE")
	for _, p := range ps {
		var addrs []string
		for _, f := range p.Port.FixedIPs {
			addrs = append(addrs, f.IPAddress)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Port.ID, p.Port.Name, p.Port.NetworkID, strings.Join(addrs, ","),
			p.Port.MACAddress, p.Host, p.Port.Status, p.Netns)
	}
	_ = tw.Flush()
}
