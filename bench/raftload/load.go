package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/image"
)

// callTimeout bounds one SubmitTask call, its retries included.
const callTimeout = 30 * time.Second

// snapshotEvery is the nodes' default --snapshot-entries, used only to
// estimate how many snapshots a level crossed.
const snapshotEvery = 10000

// result is one load level's outcome.
type result struct {
	clients   int
	window    time.Duration
	writes    int64 // completed in the measured window
	attempted int64 // calls made during the whole level, warmup included
	errors    int64 // of those, the ones that failed
	firstErr  error
	errKinds  map[string]int64
	lat       []time.Duration // sorted
	nodeCPU   []time.Duration // per node, during the window
	selfCPU   time.Duration   // raftload's, during the window
	leader    uint64
	applied   [2]uint64 // the leader's applied index before and after the level
}

func (r result) throughput() float64 { return float64(r.writes) / r.window.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

// taskSpec is the spec every write submits: /bin/echo with one argument of
// payload bytes, and the least memory the default image boots with (the
// state refuses a task with less). The tasks are accepted but never placed
// (see cluster.start and cluster.drainAll).
func taskSpec(payload int) *apiv1.TaskSpec {
	return &apiv1.TaskSpec{
		Command:   "/bin/echo",
		Args:      []string{strings.Repeat("x", payload)},
		Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: image.DefaultMinMemoryMiB},
	}
}

// requestSize is the encoded size of one write's request.
func requestSize(payload int) int {
	return proto.Size(&apiv1.SubmitTaskRequest{ClientRequestId: client.NewRequestID(), Spec: taskSpec(payload)})
}

// writerLog is what one writer goroutine records.
type writerLog struct {
	lat       []time.Duration
	attempted int64
	errors    int64
	firstErr  error
	errKinds  map[string]int64
}

// runLevel runs n writers sharing one client for o.warmup + o.duration.
func runLevel(ctx context.Context, c *cluster, o options, n int) (result, error) {
	r := result{clients: n, window: o.duration, errKinds: map[string]int64{}}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	cl, err := client.New(ctx, c.clientOptions(client.Options{Addrs: c.addrs}))
	if err != nil {
		return r, err
	}
	defer cl.Close()
	if st, err := c.status(ctx, cl); err == nil {
		r.leader, r.applied[0] = st.GetLeaderId(), st.GetAppliedIndex()
	}

	start := time.Now()
	from, until := start.Add(o.warmup), start.Add(o.warmup+o.duration)

	// A node dying ends the level.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for ctx.Err() == nil && time.Now().Before(until) {
			if err := c.checkAlive(); err != nil {
				cancel(err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// CPU used by each process during the window.
	cpuDone := make(chan struct{})
	go func() {
		defer close(cpuDone)
		sample := func() ([]time.Duration, time.Duration) {
			var out []time.Duration
			for _, nd := range c.nodes {
				t, _ := cpuTime(nd.cmd.Process.Pid)
				out = append(out, t)
			}
			return out, selfCPU()
		}
		if !sleepUntil(ctx, from) {
			return
		}
		n0, s0 := sample()
		if !sleepUntil(ctx, until) {
			return
		}
		n1, s1 := sample()
		for i := range n0 {
			r.nodeCPU = append(r.nodeCPU, n1[i]-n0[i])
		}
		r.selfCPU = s1 - s0
	}()

	logs := make([]writerLog, n)
	expected := int(float64(o.duration.Seconds())*20000)/n + 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func(w *writerLog) {
			defer wg.Done()
			w.lat = make([]time.Duration, 0, expected)
			spec := taskSpec(o.payload)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(until) {
					return
				}
				cctx, ccancel := context.WithTimeout(ctx, callTimeout)
				_, err := cl.SubmitTask(cctx, &apiv1.SubmitTaskRequest{ClientRequestId: client.NewRequestID(), Spec: spec})
				ccancel()
				t1 := time.Now()
				w.attempted++
				if err != nil {
					if ctx.Err() != nil {
						return // the level was cut short: not the write's fault
					}
					w.errors++
					if w.firstErr == nil {
						w.firstErr = err
					}
					if w.errKinds == nil {
						w.errKinds = map[string]int64{}
					}
					w.errKinds[client.ErrorOf(err).GetCode().String()]++
					continue
				}
				if !t1.Before(from) && t1.Before(until) {
					w.lat = append(w.lat, t1.Sub(t0))
				}
			}
		}(&logs[i])
	}
	wg.Wait()
	<-watchDone
	<-cpuDone
	if err := context.Cause(ctx); err != nil {
		return r, fmt.Errorf("level of %d clients: %w", n, err)
	}

	for _, w := range logs {
		r.lat = append(r.lat, w.lat...)
		r.attempted += w.attempted
		r.errors += w.errors
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
		for k, v := range w.errKinds {
			r.errKinds[k] += v
		}
	}
	slices.Sort(r.lat)
	r.writes = int64(len(r.lat))
	if st, err := c.status(ctx, cl); err == nil {
		r.applied[1] = st.GetAppliedIndex()
		if st.GetLeaderId() != r.leader {
			fmt.Printf("note: the leader changed from %d to %d during the level of %d clients\n", r.leader, st.GetLeaderId(), n)
		}
	}
	fmt.Printf("level %4d clients: %8.0f writes/s, p50 %s, p99 %s, %d errors\n",
		n, r.throughput(), ms(r.percentile(0.50)), ms(r.percentile(0.99)), r.errors)
	return r, nil
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func cores(d, window time.Duration) string {
	return fmt.Sprintf("%.2f", d.Seconds()/window.Seconds())
}

// printTable writes the results as an aligned table, then any errors.
func printTable(w io.Writer, results []result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "clients\twrites\twrites/s\tp50\tp90\tp99\tmax\terrors\tCPU n1\tCPU n2\tCPU n3\tCPU bench\tleader\tapplied\t≈snapshots\t")
	for _, r := range results {
		cpu := make([]string, 3)
		for i := range cpu {
			cpu[i] = "?"
			if i < len(r.nodeCPU) {
				cpu[i] = cores(r.nodeCPU[i], r.window)
			}
		}
		snaps := r.applied[1]/snapshotEvery - r.applied[0]/snapshotEvery
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%d\t%d→%d\t%d\t\n",
			r.clients, r.writes, r.throughput(),
			ms(r.percentile(0.50)), ms(r.percentile(0.90)), ms(r.percentile(0.99)), ms(r.percentile(1)),
			r.errors, r.attempted, cpu[0], cpu[1], cpu[2], cores(r.selfCPU, r.window),
			r.leader, r.applied[0], r.applied[1], snaps)
	}
	tw.Flush()
	fmt.Fprintln(w, "CPU columns: cores used during the measured window; applied: the leader's applied index before → after the level (warmup included).")
	for _, r := range results {
		if r.errors == 0 {
			continue
		}
		kinds := make([]string, 0, len(r.errKinds))
		for k := range r.errKinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s×%d", k, r.errKinds[k]))
		}
		fmt.Fprintf(w, "errors at %d clients: %s; first: %v\n", r.clients, strings.Join(parts, ", "), r.firstErr)
	}
}
