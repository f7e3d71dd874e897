package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/probe"
	"github.com/nimbo-cloud/nimbo/internal/routercheck"
)

const routerUsage = `Usage: nimbo router check ROUTER [--target IP] [--port N] [--netns-prefix P] [--host H] [--timeout D]

Checks, step by step, where a router's outbound packets stop: the router and its gateway as the
API says (OS_* environment of an openrc), then its namespace on this host: the gateway interface,
SNAT, the default route, a ping to the next hop (the external subnet's gateway_ip) and, with
--target, a ping (or with --port a TCP connect) to IP from the router's gateway address.
Run it as root on the host where the router lives. One line per step ("ok" or "FAIL"), then a
verdict; exit status 0 when every step passed, 1 when one failed, 2 for usage errors.
`

func runRouter(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprint(stderr, routerUsage)
			return 2
		}
		return runRouterCheck([]string{"-h"}, stdout, stdout)
	}
	if args[0] != "check" {
		fmt.Fprintf(stderr, "nimbo router: unknown subcommand %q\n\n%s", args[0], routerUsage)
		return 2
	}
	return runRouterCheck(args[1:], stdout, stderr)
}

func runRouterCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nimbo router check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\nFlags:\n", routerUsage)
		fs.PrintDefaults()
	}
	target := fs.String("target", "", "an IPv4 address beyond the router to reach (default: the next hop only)")
	port := fs.Int("port", 0, "with --target: connect to this TCP port instead of pinging")
	prefix := fs.String("netns-prefix", "nimbo", "the agent's --netns-prefix")
	host := fs.String("host", "", "this host's ID, as given to nimbo up --host (default: the hostname)")
	timeout := fs.Duration("timeout", routercheck.DefaultTimeout, "how long each ping or TCP connect waits for an answer")
	// Flags may come before or after ROUTER.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "nimbo router check: "+format+"\n", a...)
		return 2
	}
	if len(pos) != 1 {
		return usageErr("give exactly one ROUTER (name or ID)")
	}
	o := routercheck.Options{Router: pos[0], Port: *port, NetnsPrefix: *prefix, Host: *host, Timeout: *timeout}
	if *target != "" {
		a, err := netip.ParseAddr(*target)
		if err != nil || !a.Is4() {
			return usageErr("--target %q is not an IPv4 address", *target)
		}
		o.Target = a
	}
	if o.Port < 0 || o.Port > 65535 {
		return usageErr("--port %d is not a TCP port", o.Port)
	}
	if o.Port != 0 && !o.Target.IsValid() {
		return usageErr("--port needs --target")
	}
	if o.Timeout <= 0 {
		return usageErr("--timeout must be positive")
	}
	if strings.TrimSpace(o.NetnsPrefix) == "" {
		return usageErr("--netns-prefix must not be empty")
	}
	if o.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "nimbo router check: host name: %v (give --host)\n", err)
			return 1
		}
		o.Host = h
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := probe.Client(actx)
	if err != nil {
		fmt.Fprintf(stderr, "nimbo router check: %v\n", err)
		return 1
	}
	rep := routercheck.Check(ctx, routercheck.OpenStack{Client: c}, routercheck.System{}, o)
	if err := rep.Write(stdout); err != nil {
		return 1
	}
	return rep.ExitCode()
}
