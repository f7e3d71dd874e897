// Command bench measures nimbo's identity API side by side with Debian 12's
// Keystone, the reference nimbo must beat, then nimbo's network service on its
// own, and writes a markdown report. `make bench` (scripts/bench) installs
// Keystone, prepares its configuration, creates a throwaway network namespace
// and runs this program inside it with `nsenter --net=/run/netns/NS` (only the
// network namespace changes, so the namespaces nimbo's agent mounts under
// /run/netns are the host's, visible to everyone and removable); everything
// it starts inherits that namespace and listens on 127.0.0.1 there, nimbo's
// agent builds its bridges and firewall there, and the HTTP client connects
// only to 127.0.0.1, so no traffic ever reaches the host's own network.
//
// The servers run one at a time, each with the machine to itself:
//
//   - nimbo: `nimbo up` (Keystone v3 at /v3, Neutron v2.0 at /networking, the
//     agent, embedded etcd) in a fresh data dir, with the --host and
//     --netns-prefix given to this program;
//   - Keystone: Debian's uwsgi front (uwsgi_python3 with the package's
//     keystone-uwsgi.ini: its processes and threads) serving
//     keystone-wsgi-public, on an sqlite database with fernet tokens.
//
// For each it measures the start-up time, the memory of its whole process tree
// (VmRSS and PSS summed over every process) once idle after a short warm-up and
// again after the load, and the latency (p50/p99) of token issue by password,
// token validation (sequential, and requests/s with a few concurrent clients),
// token re-scope (unscoped to project), token issue by application credential
// and a project create + user create + role assignment sequence. It also runs
// in-process Go benchmarks of nimbo's identity service (Service.Validate and
// Service.Authenticate on an embedded etcd), which `go test -bench .
// ./test/bench` runs too.
//
// Then, on the same nimbo (there is no Neutron to compare with), the network
// part (netbench.go): one network with a /16 subnet filled with 1,000 and then
// 10,000 ports by bulk creates; at each, port create latency and creates/s,
// GET /v2.0/ports?limit=100, probes timed from the create until ACTIVE and
// until a DHCP exchange from the probe's namespace is answered, `nimbo probe
// create` itself, and nimbo's memory. It runs only when this program is in a
// named network namespace (one of /run/netns/*), never in the host's own; at
// the end it deletes every /run/netns/PREFIX-* of nimbo's --netns-prefix.
//
// Usage (normally through scripts/bench, which supplies every flag):
//
//	nsenter --net=/run/netns/NS bench -nimbo PATH -work DIR [-keystone-ini PATH -keystone-uwsgi PATH | -keystone-missing WHY] -out REPORT.md
//
// Run `bench -h` for the flags. A server that cannot be started or that
// answers a request wrongly is reported (with the exact request and response)
// instead of aborting the run; the report always shows what could be measured.
package main
