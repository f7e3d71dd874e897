package main

import (
	"context"
	"io"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/cloud"
	"github.com/nimbo-cloud/nimbo/internal/doctor"
)

func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("doctor", "Checks that this host can run nimbo: root, the kernel features it needs (network namespaces,\n"+
		"bridge, veth, nftables, vxlan, tun), whether KVM really works (a test guest is run) or guests\n"+
		"will use TCG, the API port, and the data dir. Each finding says how to fix it.\n"+
		"Exits 1 when a check fails.", stderr)
	dataDir := fs.String("data-dir", cloud.DefaultDataDir, "data directory that `nimbo up` will use")
	listen := fs.String("listen", cloud.DefaultListen, "address:port that `nimbo up` will listen on")
	if rc := parseFlags(fs, args); rc >= 0 {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	findings := doctor.Run(ctx, doctor.Options{DataDir: *dataDir, Listen: *listen})
	doctor.Format(stdout, findings)
	if doctor.Failed(findings) {
		return 1
	}
	return 0
}
