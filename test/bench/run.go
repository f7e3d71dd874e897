package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nimbo-cloud/nimbo/internal/identity"
)

// kdfNimbo names nimbo's password KDF and its cost.
const kdfNimbo = identity.KDFDescription

// target is one server to measure.
type target struct {
	name    string   // "nimbo" or "Keystone"
	desc    []string // how it runs, for the report
	argv    []string // command that starts it
	env     []string
	base    string // Keystone v3 base URL
	missing string // why it is not measured
	network bool   // also measure the network service (nimbo)
}

// Keys of result.ops, in report order.
const (
	opPassword     = "password"
	opValidate     = "validate"
	opValidateLoad = "validate_load"
	opRescope      = "rescope"
	opAppCred      = "appcred"
	opProvision    = "provision"
)

// result is everything measured on one target.
type result struct {
	target
	fatal     string // why the measurements stopped early
	startup   time.Duration
	memStart  memSample // at readiness
	memIdle   memSample // after warm-up, once idle
	memLoaded memSample // after all the measurements, once idle
	idleWait  time.Duration
	// others is the share of the machine's CPU that other processes used
	// during the measurements (after the idle memory sample).
	others   float64
	ops      map[string]stats
	notes    []string
	dials    int64
	requests int64
	retries  int64      // requests sent again after a kept-alive connection failed
	net      *netResult // the network part (nimbo), nil when not run
}

// runTarget starts t, measures it and stops it. Failures are recorded in the
// result, never fatal to the run.
func runTarget(ctx context.Context, cfg config, t target, logf func(string, ...any)) *result {
	r := &result{target: t, ops: map[string]stats{}}
	if t.missing != "" {
		logf("%s: not measured: %s", t.name, t.missing)
		return r
	}
	fail := func(format string, a ...any) *result {
		r.fatal = fmt.Sprintf(format, a...)
		logf("%s: %s", t.name, r.fatal)
		return r
	}
	c := newClient(t.base, cfg.clients+4)
	defer func() {
		c.close()
		r.dials, r.requests, r.retries = c.dials.Load(), c.reqs.Load(), c.retries.Load()
	}()

	logf("%s: starting: %s", t.name, redact(strings.Join(t.argv, " "), cfg.password))
	started := time.Now()
	logPath := filepath.Join(cfg.workDir, strings.ToLower(t.name)+".log")
	s, err := startServer(t.name, logPath, t.env, t.argv...)
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := s.stop(); err != nil {
			r.notes = append(r.notes, err.Error())
		}
	}()
	if r.startup, err = s.waitReady(ctx, c, started, cfg.readyTimeout); err != nil {
		return fail("%v", err)
	}
	pid := s.cmd.Process.Pid
	logf("%s: ready after %v (PID %d)", t.name, r.startup.Round(time.Millisecond), pid)
	if r.memStart, err = measureMem(pid); err != nil {
		return fail("memory at start: %v", err)
	}

	// The tokens every measurement uses: two project-scoped tokens (the
	// caller's and the one it validates) and an unscoped one to re-scope.
	admin, err := c.issue(ctx, passwordAuth("admin", cfg.password, "admin"))
	if err != nil {
		return fail("issuing the admin token failed:\n%v", err)
	}
	subject, err := c.issue(ctx, passwordAuth("admin", cfg.password, "admin"))
	if err != nil {
		return fail("issuing the subject token failed:\n%v", err)
	}
	unscoped, err := c.issue(ctx, passwordAuth("admin", cfg.password, ""))
	if err != nil {
		return fail("issuing an unscoped token failed:\n%v", err)
	}
	if admin.ProjectID == "" {
		return fail("the password token asked for project admin has no project")
	}
	if unscoped.ProjectID != "" {
		r.notes = append(r.notes, "an auth request with \"scope\": \"unscoped\" returned a project-scoped token")
	}

	// Warm-up: every operation a few times, then validations from several
	// clients so that every worker process has served requests.
	logf("%s: warm-up", t.name)
	for range 3 {
		if _, err := c.issue(ctx, rescopeAuth(unscoped.ID, admin.ProjectID)); err != nil {
			r.notes = append(r.notes, "warm-up re-scope failed:\n"+err.Error())
			break
		}
	}
	if w := concurrent(ctx, 2*cfg.clients, cfg.warmup, func(ctx context.Context, _, _ int) error {
		return c.validate(ctx, admin.ID, subject.ID)
	}); w.FirstError != "" {
		r.notes = append(r.notes, fmt.Sprintf("warm-up validations: %d failed; first:\n%s", w.Errors, w.FirstError))
	}
	r.idleWait = settle(ctx, pid, 30*time.Second)
	if r.memIdle, err = measureMem(pid); err != nil {
		return fail("memory after warm-up: %v", err)
	}
	logf("%s: idle RSS %s, PSS %s over %d processes", t.name, mib(r.memIdle.RSS), mib(r.memIdle.PSS), r.memIdle.Procs)

	cpuStart := snapshotCPU(pid)
	// stalled reports whether the server stopped answering altogether after
	// a measurement had failures (then the rest is skipped).
	stalled := func(key string) bool {
		if r.ops[key].FirstError == "" || ctx.Err() != nil {
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := c.ready(rctx); err != nil {
			fail("%s stopped answering during %q: even GET /v3 fails now:\n%v", t.name, key, err)
			return true
		}
		return false
	}
	seq := func(key string, n int, op func(ctx context.Context, i int) error) bool {
		logf("%s: %s (up to %d samples or %v)", t.name, key, n, cfg.opTime)
		r.ops[key] = sequential(ctx, budget{N: n, Time: cfg.opTime}, op)
		return !stalled(key)
	}
	ok := seq(opPassword, cfg.passwordN, func(ctx context.Context, _ int) error {
		_, err := c.issue(ctx, passwordAuth("admin", cfg.password, "admin"))
		return err
	}) && seq(opValidate, cfg.validateN, func(ctx context.Context, _ int) error {
		return c.validate(ctx, admin.ID, subject.ID)
	})
	if ok {
		logf("%s: %s (%d clients for %v)", t.name, opValidateLoad, cfg.clients, cfg.loadTime)
		r.ops[opValidateLoad] = concurrent(ctx, cfg.clients, cfg.loadTime, func(ctx context.Context, _, _ int) error {
			return c.validate(ctx, admin.ID, subject.ID)
		})
		ok = !stalled(opValidateLoad)
	}
	ok = ok && seq(opRescope, cfg.rescopeN, func(ctx context.Context, _ int) error {
		_, err := c.issue(ctx, rescopeAuth(unscoped.ID, admin.ProjectID))
		return err
	})
	runID := time.Now().UnixNano()
	if ok {
		acID, acSecret, err := c.createAppCred(ctx, admin, fmt.Sprintf("bench-%d", runID))
		if err != nil {
			r.ops[opAppCred] = stats{Skipped: "creating the application credential failed:\n" + err.Error()}
		} else {
			ok = seq(opAppCred, cfg.appCredN, func(ctx context.Context, _ int) error {
				_, err := c.issue(ctx, appCredAuth(acID, acSecret))
				return err
			})
		}
	}
	if ok {
		member, err := c.roleID(ctx, admin.ID, "member")
		if err != nil {
			r.ops[opProvision] = stats{Skipped: "finding the member role failed:\n" + err.Error()}
		} else {
			seq(opProvision, cfg.provisionN, func(ctx context.Context, i int) error {
				return c.provision(ctx, admin.ID, fmt.Sprintf("bench-%d-%d", runID, i), cfg.password, member)
			})
		}
	}

	r.others = othersShare(cpuStart, snapshotCPU(pid))
	settle(ctx, pid, 15*time.Second)
	if r.memLoaded, err = measureMem(pid); err != nil {
		r.notes = append(r.notes, "memory after the load: "+err.Error())
	}
	if t.network && ctx.Err() == nil {
		r.net = runNetwork(ctx, cfg, admin, pid, logf)
	}
	if ctx.Err() != nil {
		return fail("interrupted")
	}
	if r.fatal == "" {
		logf("%s: done", t.name)
	}
	return r
}

// redact hides the admin password in a command line.
func redact(s, password string) string {
	if password == "" {
		return s
	}
	return strings.ReplaceAll(s, password, "…")
}

// ini is a parsed uwsgi ini: key = value lines of its [uwsgi] section, in
// order (keys may repeat).
type ini [][2]string

// readIni parses a uwsgi ini file.
func readIni(path string) (ini, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out ini
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": no settings")
	}
	return out, nil
}

// get returns the last value of key, or "(unset)".
func (in ini) get(key string) string {
	v := "(unset)"
	for _, kv := range in {
		if kv[0] == key {
			v = kv[1]
		}
	}
	return v
}

// diff lists the settings of other that are not in in and vice versa.
func (in ini) diff(other ini) []string {
	has := func(set ini, kv [2]string) bool {
		for _, x := range set {
			if x == kv {
				return true
			}
		}
		return false
	}
	var d []string
	for _, kv := range in {
		if !has(other, kv) {
			d = append(d, fmt.Sprintf("`-%s = %s`", kv[0], kv[1]))
		}
	}
	for _, kv := range other {
		if !has(in, kv) {
			d = append(d, fmt.Sprintf("`+%s = %s`", kv[0], kv[1]))
		}
	}
	return d
}
