package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a server gets to exit after SIGTERM before every
// process of its tree is SIGKILLed.
const stopGrace = 15 * time.Second

// server is one running server process (and the processes it forks).
type server struct {
	name   string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

// startServer runs argv with its output in logPath. The process inherits this
// program's network namespace; it is killed if this program dies.
func startServer(name, logPath string, env []string, argv ...string) (*server, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", strings.Join(argv, " "), err)
	}
	s := &server{name: name, cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// waitReady polls GET /v3 until it answers 200, the process exits or timeout
// passes; it returns how long that took from start.
func (s *server) waitReady(ctx context.Context, c *client, started time.Time, timeout time.Duration) (time.Duration, error) {
	var last error
	for {
		select {
		case <-s.exited:
			return 0, fmt.Errorf("%s exited before answering GET %s: %v; last lines of its log:\n%s", s.name, c.base, s.err, s.tail(2048))
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.ready(rctx)
		cancel()
		if err == nil {
			return time.Since(started), nil
		}
		last = err
		if time.Since(started) > timeout {
			return 0, fmt.Errorf("%s not ready within %v; last attempt: %v; last lines of its log:\n%s", s.name, timeout, last, s.tail(2048))
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the last n bytes of the server's log.
func (s *server) tail(n int64) string {
	b, err := os.ReadFile(s.log.Name())
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// stop sends SIGTERM to the server's main process and waits for its whole
// tree to be gone; processes still there after stopGrace are SIGKILLed by
// PID (Keystone's uwsgi workers sometimes hang in Python's finalisation).
func (s *server) stop() error {
	defer s.log.Close()
	root := s.cmd.Process.Pid
	pids := processTree(root)
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(stopGrace)
	var left []int
	for {
		left = left[:0]
		seen := map[int]bool{}
		for _, pid := range append(pids, processTree(root)...) {
			if !seen[pid] && alive(pid) {
				left = append(left, pid)
			}
			seen[pid] = true
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-s.exited
	if len(left) > 0 {
		return fmt.Errorf("%s: processes %v still running %v after SIGTERM; killed", s.name, left, stopGrace)
	}
	return nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	return ok && len(rest) > 0 && rest[0] != 'Z'
}

// processTree returns root and all its descendants (by scanning /proc).
func processTree(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{root}
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	tree := []int{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// parentOf reads a process's parent PID from /proc/PID/stat.
func parentOf(pid int) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	// The command name is in parentheses and may contain spaces.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0, false
	}
	f := strings.Fields(string(rest))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// memSample is the memory of a process tree at one moment.
type memSample struct {
	Procs int
	RSS   int64 // bytes, VmRSS summed over the processes (shared pages counted in each)
	PSS   int64 // bytes, Pss summed (shared pages divided among their users)
}

// measureMem sums VmRSS and Pss over root's process tree.
func measureMem(root int) (memSample, error) {
	var m memSample
	for _, pid := range processTree(root) {
		rss, err := procKB(pid, "status", "VmRSS:")
		if err != nil {
			continue // gone, or a kernel thread
		}
		pss, err := procKB(pid, "smaps_rollup", "Pss:")
		if err != nil {
			return m, err
		}
		m.Procs++
		m.RSS += rss << 10
		m.PSS += pss << 10
	}
	if m.Procs == 0 {
		return m, errors.New("no process left to measure")
	}
	return m, nil
}

// procKB reads a "Key:   123 kB" line from /proc/PID/file.
func procKB(pid int, file, key string) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), file))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/%s: no %s line", pid, file, key)
}

// cpuTicks sums user and system CPU time (clock ticks) over root's tree.
func cpuTicks(root int) int64 {
	var total int64
	for _, pid := range processTree(root) {
		total += procTicks(pid)
	}
	return total
}

// procTicks returns one process's user and system CPU time in clock ticks
// (0 if it is gone).
func procTicks(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0
	}
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	// Fields 14 and 15 of stat (utime, stime) are 11 and 12 after ") ".
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// cpuSnapshot is the CPU time used so far by the machine, the server's
// process tree and this program, in clock ticks.
type cpuSnapshot struct {
	busy, total, server, self int64
}

// selfTicks is this program's CPU time in clock ticks, with that of the
// commands it ran and waited for (`nimbo probe create`).
func selfTicks() int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte(") "))
	if !ok {
		return 0
	}
	f := strings.Fields(string(rest))
	if len(f) < 15 {
		return 0
	}
	var total int64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		total += v
	}
	return total
}

// snapshotCPU reads a cpuSnapshot; root is the server's main process.
func snapshotCPU(root int) cpuSnapshot {
	c := cpuSnapshot{server: cpuTicks(root), self: selfTicks()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		c.total += v
		if i != 4 && i != 5 { // idle, iowait
			c.busy += v
		}
	}
	return c
}

// othersShare returns the share of the machine's CPU time between a and b
// that neither the server nor this program (with the commands it ran) used:
// other processes competing with the measurement.
func othersShare(a, b cpuSnapshot) float64 {
	total := b.total - a.total
	if total <= 0 {
		return 0
	}
	others := (b.busy - a.busy) - (b.server - a.server) - (b.self - a.self)
	return max(0, float64(others)/float64(total))
}

// settle waits until root's tree uses (almost) no CPU: at most 2 ticks
// (20 ms at 100 Hz) in a second, twice in a row, or until max passes. It
// returns how long it waited.
func settle(ctx context.Context, root int, max time.Duration) time.Duration {
	start := time.Now()
	prev := cpuTicks(root)
	quiet := 0
	for time.Since(start) < max && ctx.Err() == nil {
		time.Sleep(time.Second)
		cur := cpuTicks(root)
		if cur-prev <= 2 {
			quiet++
			if quiet == 2 {
				break
			}
		} else {
			quiet = 0
		}
		prev = cur
	}
	return time.Since(start)
}
