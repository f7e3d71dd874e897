// Command nimbo is a private cloud in one binary that speaks the OpenStack
// APIs. This package only parses the command line and wires internal packages
// together; see `nimbo help`.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

func init() {
	// Keep the main goroutine on the main OS thread: later namespace work
	// switches threads into network namespaces on throwaway goroutines, and
	// must never land on the thread the process started on.
	runtime.LockOSThread()
}

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"up", "run an all-in-one cloud on this host (store + API + agent), in the foreground", runUp},
		{"probe", "create, list, use and delete probes: ports wired into namespaces on this host", runProbe},
		{"router", "check, step by step, where a router's outbound packets stop (nimbo router check ROUTER)", runRouter},
		{"doctor", "check that this host can run nimbo, and say how to fix what is missing", runDoctor},
		{"version", "print nimbo's version", runVersion},
		{"help", "show help for nimbo or for one command", runHelp},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return 0
	case "-v", "-version", "--version":
		return runVersion(nil, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "nimbo: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "nimbo is a private cloud in one binary that speaks the OpenStack APIs.\n\nUsage:\n  nimbo <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun `nimbo <command> -h` for a command's flags.\n")
}

func runHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"-h"}, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "nimbo: no help for unknown command %q\n", args[0])
	return 2
}

// Version returns the build's version string.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if dirty {
				rev += "-dirty"
			}
			return "dev-" + rev
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "nimbo %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
