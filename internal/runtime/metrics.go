package runtime

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/blixard/blixard/internal/metrics"
	"github.com/blixard/blixard/internal/server"
)

// stats reads the workload and capacity gauges from the node's state, on
// the owner goroutine (metrics.Stats).
func (n *Node) stats(ctx context.Context) (metrics.Stats, error) {
	out := make(chan metrics.Stats, 1)
	ev := func() {
		st := n.core.State()
		s := metrics.Stats{VMsByState: map[string]int{}, TasksByStatus: map[string]int{},
			Capacity: map[string]float64{}, Allocated: map[string]float64{}}
		for _, v := range st.Vms(0) {
			s.VMsByState[enumLabel(v.GetState().String(), "VM_STATE_")]++
		}
		for _, t := range st.Tasks(0) {
			s.TasksByStatus[enumLabel(t.GetStatus().String(), "TASK_STATUS_")]++
		}
		capacity := n.cfg.Capacity
		s.Capacity["vcpus"] = float64(capacity.GetVcpus())
		s.Capacity["memory_bytes"] = float64(capacity.GetMemoryMib()) * (1 << 20)
		alloc := st.Allocated(n.cfg.ID)
		s.Allocated["vcpus"] = float64(alloc.GetVcpus())
		s.Allocated["memory_bytes"] = float64(alloc.GetMemoryMib()) * (1 << 20)
		s.PeerQueue = map[string]int{}
		for id, n := range n.tr.QueueDepths() {
			s.PeerQueue[strconv.FormatUint(id, 10)] = n
		}
		out <- s
	}
	select {
	case n.events <- ev:
	case <-ctx.Done():
		return metrics.Stats{}, ctx.Err()
	case <-n.stopped:
		return metrics.Stats{}, server.ErrStopping
	}
	select {
	case s := <-out:
		return s, nil
	case <-ctx.Done():
		return metrics.Stats{}, ctx.Err()
	case <-n.stopped:
		return metrics.Stats{}, server.ErrStopping
	}
}

func enumLabel(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

// observeReady records one Ready's sizes and how long persisting it took;
// snapshotBytes is the size of the snapshot it saved, -1 when none.
func (n *Node) observeReady(entries, messages int, synced bool, snapshotBytes int, took time.Duration) {
	m := n.metrics
	if entries > 0 {
		m.ReadyEntries.Observe(float64(entries))
	}
	if messages > 0 {
		m.ReadyMessages.Observe(float64(messages))
	}
	label := "false"
	if synced {
		label = "true"
	}
	m.StoreSaveSeconds.WithLabelValues(label).Observe(took.Seconds())
	if snapshotBytes >= 0 {
		m.SnapshotsTotal.Inc()
		m.SnapshotBytes.Observe(float64(snapshotBytes))
	}
}

// observeRaft records the node's Raft position after an Advance, and
// what the core counted (core.Observations).
func (n *Node) observeRaft() {
	m := n.metrics
	o := n.core.TakeObservations()
	m.ProposalsCommitted.Add(float64(o.ProposalsCommitted))
	m.ProposalsDropped.Add(float64(o.ProposalsDropped))
	for _, d := range o.PlacementLatencies {
		m.PlacementSeconds.Observe(d.Seconds())
	}
	m.Reschedules.WithLabelValues("vm").Add(float64(o.VMReschedules))
	m.Reschedules.WithLabelValues("task").Add(float64(o.TaskReschedules))
	m.PlacementTries.Add(float64(o.PlacementTries))
	m.PlacementBlocked.Set(float64(n.core.PlacementBlocked()))
	lead, term := n.core.Leader()
	m.RaftTerm.Set(float64(term))
	m.RaftCommitIndex.Set(float64(n.core.BasicStatus().GetCommit()))
	m.RaftAppliedIndex.Set(float64(n.core.State().AppliedIndex()))
	if lead == n.cfg.ID {
		m.RaftIsLeader.Set(1)
	} else {
		m.RaftIsLeader.Set(0)
	}
}

// serveMetrics serves /metrics (and with Config.Pprof, /debug/pprof/) on
// lis until ctx ends.
func (n *Node) serveMetrics(ctx context.Context, lis net.Listener) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", n.metrics.Handler())
	if n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		n.log.Warn("metrics server stopped", "err", err)
	}
}

// MetricsAddr is the address /metrics is served on; "" without
// Config.MetricsListen.
func (n *Node) MetricsAddr() string {
	if n.metricsLis == nil {
		return ""
	}
	return n.metricsLis.Addr().String()
}

// snapshotBytes is the size of a Ready's snapshot's data, -1 when it
// carries none.
func snapshotBytes(s *raftpb.Snapshot) int {
	if s == nil || s.GetMetadata().GetIndex() == 0 {
		return -1
	}
	return len(s.GetData())
}
