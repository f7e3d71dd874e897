package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// stats summarises a set of latencies. Percentiles use the nearest-rank
// method, so with fewer than 100 samples p99 is the maximum.
type stats struct {
	N                       int           // successful samples
	Min, P50, P90, P99, Max time.Duration // over the samples
	Mean                    time.Duration // over the samples
	Elapsed                 time.Duration // wall time of the whole measurement
	Clients                 int           // concurrent clients (1: sequential)
	Errors                  int           // failed requests (not in the latencies)
	FirstError              string        // the first failure, request and response
	Skipped                 string        // why the operation was not measured
	rps                     float64
	hasRPS                  bool
}

// failed records a sequence that stopped on err (one failure).
func (s stats) failed(err error) stats {
	s.Errors, s.FirstError = 1, err.Error()
	return s
}

// summarize computes stats over d (which it sorts).
func summarize(d []time.Duration) stats {
	var s stats
	s.N = len(d)
	if s.N == 0 {
		return s
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	rank := func(p float64) time.Duration {
		i := int(p*float64(s.N)+0.999999) - 1 // ceil(p*N) - 1
		return d[min(max(i, 0), s.N-1)]
	}
	s.Min, s.Max = d[0], d[s.N-1]
	s.P50, s.P90, s.P99 = rank(0.50), rank(0.90), rank(0.99)
	s.Mean = sum / time.Duration(s.N)
	return s
}

// RPS returns the completed requests per second of a load run and whether the
// stats come from one.
func (s stats) RPS() (float64, bool) { return s.rps, s.hasRPS }

// budget bounds one sequential measurement: at most N samples, and no more
// samples once Time has passed (but at least minSamples).
type budget struct {
	N    int
	Time time.Duration
}

// minSamples is the fewest samples a sequential measurement takes even when
// over its time budget.
const minSamples = 5

// sequential runs op up to b.N times one after the other and times each run.
// It stops at the first error, which it records with the samples so far.
func sequential(ctx context.Context, b budget, op func(ctx context.Context, i int) error) stats {
	lat := make([]time.Duration, 0, b.N)
	start := time.Now()
	var firstErr error
	for i := 0; i < b.N; i++ {
		if i >= minSamples && time.Since(start) > b.Time {
			break
		}
		if ctx.Err() != nil {
			firstErr = ctx.Err()
			break
		}
		t0 := time.Now()
		if err := op(ctx, i); err != nil {
			firstErr = err
			break
		}
		lat = append(lat, time.Since(t0))
	}
	s := summarize(lat)
	s.Elapsed = time.Since(start)
	s.Clients = 1
	if firstErr != nil {
		s.Errors = 1
		s.FirstError = firstErr.Error()
	}
	return s
}

// concurrent runs op from clients goroutines for d and reports the
// latencies and the completed requests per second. Errors are counted; the
// first is kept. A client stops after maxClientErrors errors.
func concurrent(ctx context.Context, clients int, d time.Duration, op func(ctx context.Context, client, i int) error) stats {
	return concurrentN(ctx, clients, 0, d, op)
}

// concurrentN runs op n times in all (n <= 0: without a count) from clients
// goroutines, for at most maxTime, and reports the latencies and the
// completed operations per second. Errors are counted; the first is kept. A
// client stops after maxClientErrors errors.
func concurrentN(ctx context.Context, clients, n int, maxTime time.Duration, op func(ctx context.Context, client, i int) error) stats {
	const maxClientErrors = 10
	var (
		mu       sync.Mutex
		all      []time.Duration
		errs     int
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(maxTime)
	// Requests still running at the end get a grace period, then fail: a
	// server that stopped answering cannot hold the run for long.
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var nerr int
			for ctx.Err() == nil && nerr < maxClientErrors && time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				if n > 0 && i >= n {
					break
				}
				t0 := time.Now()
				if err := op(ctx, c, i); err != nil {
					nerr++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += nerr
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	s := summarize(all)
	s.Elapsed, s.Clients, s.Errors = elapsed, clients, errs
	if firstErr != nil {
		s.FirstError = firstErr.Error()
	}
	s.rps, s.hasRPS = float64(s.N)/elapsed.Seconds(), true
	return s
}

func fmtDur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d <= 0:
		return "0"
	case us < 999.5:
		return fmt.Sprintf("%.0f µs", us)
	case ms < 9.995:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 99.95:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 9999.5:
		return fmt.Sprintf("%.0f ms", ms)
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// fmtRatio formats how many times a is worse than b (a/b) as "12.3×".
func fmtRatio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	r := a / b
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}
