// Command bench measures nimbo's identity API side by side with Debian 12's
// Keystone, the reference nimbo must beat, and writes a markdown report with
// the ratios. `make bench` (scripts/bench) installs Keystone, prepares its
// configuration, creates a throwaway network namespace and runs this program
// inside it with `ip netns exec`; everything it starts inherits that
// namespace and listens on 127.0.0.1 there, and its HTTP client connects only
// to 127.0.0.1, so no traffic ever reaches the host's own network.
//
// The servers run one at a time, each with the machine to itself:
//
//   - nimbo: `nimbo up` (Keystone v3 at /v3, embedded etcd) in a fresh data dir;
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
// Usage (normally through scripts/bench, which supplies every flag):
//
//	ip netns exec NS bench -nimbo PATH [-keystone-ini PATH -keystone-uwsgi PATH | -keystone-missing WHY] -out REPORT.md
//
// Run `bench -h` for the flags. A server that cannot be started or that
// answers a request wrongly is reported (with the exact request and response)
// instead of aborting the run; the report always shows what could be measured.
package main
