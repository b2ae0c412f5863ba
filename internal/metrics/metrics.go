package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics is one node's metrics and the registry that serves them.
type Metrics struct {
	reg *prometheus.Registry

	apiRequests *prometheus.CounterVec
	apiLatency  *prometheus.HistogramVec

	RaftTerm          prometheus.Gauge
	RaftCommitIndex   prometheus.Gauge
	RaftAppliedIndex  prometheus.Gauge
	RaftIsLeader      prometheus.Gauge
	RaftLeaderChanges prometheus.Counter
	ReadyEntries      prometheus.Histogram
	ReadyMessages     prometheus.Histogram
	StoreSaveSeconds  *prometheus.HistogramVec
	SnapshotsTotal    prometheus.Counter
	SnapshotBytes     prometheus.Histogram
	VMBootSeconds     prometheus.Histogram

	ProposalsCommitted prometheus.Counter
	ProposalsDropped   prometheus.Counter
	PlacementSeconds   prometheus.Histogram
	// Reschedules is by kind: "vm" or "task".
	Reschedules *prometheus.CounterVec
	// PlacementTries counts scheduler calls; PlacementBlocked is how many
	// workloads wait for room without being tried.
	PlacementTries   prometheus.Counter
	PlacementBlocked prometheus.Gauge
}

// Stats is what the node's state says at a scrape: workloads by state and
// this node's capacity and allocation.
type Stats struct {
	VMsByState    map[string]int
	TasksByStatus map[string]int
	// Capacity and Allocated are this node's, by resource ("vcpus",
	// "memory_bytes").
	Capacity, Allocated map[string]float64
	// PeerQueue is the messages waiting to be sent to each peer, by id.
	PeerQueue map[string]int
}

// New makes a node's metrics; stats is called at each scrape for the
// state's gauges and may fail (the node is stopping), which leaves them
// out of that scrape.
func New(stats func(ctx context.Context) (Stats, error)) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blixard_api_requests_total",
		Help: "gRPC requests this node finished, by full method name and status code (refusals by the access checks included).",
	}, []string{"method", "code"})
	m.apiLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "blixard_api_request_duration_seconds",
		Help:    "Time from a gRPC request's arrival to its answer (a stream: to its end), by full method name.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"method"})
	m.RaftTerm = prometheus.NewGauge(prometheus.GaugeOpts{Name: "blixard_raft_term", Help: "The Raft term this node is in."})
	m.RaftCommitIndex = prometheus.NewGauge(prometheus.GaugeOpts{Name: "blixard_raft_commit_index", Help: "The highest log index this node knows to be committed."})
	m.RaftAppliedIndex = prometheus.NewGauge(prometheus.GaugeOpts{Name: "blixard_raft_applied_index", Help: "The highest log index this node has applied to its state."})
	m.RaftIsLeader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "blixard_raft_is_leader", Help: "1 if this node is the Raft leader, else 0."})
	m.RaftLeaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: "blixard_raft_leader_changes_total", Help: "Times the leader this node knows changed (to another node or to none)."})
	m.ReadyEntries = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "blixard_raft_ready_entries", Help: "Log entries persisted per Raft Ready (group commit size).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	m.ReadyMessages = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "blixard_raft_ready_messages", Help: "Messages sent to peers per Raft Ready.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	m.StoreSaveSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "blixard_store_save_seconds", Help: "Time to persist one Ready to the store, by whether it was synced (fsync).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"synced"})
	m.SnapshotsTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "blixard_raft_snapshots_saved_total", Help: "Raft snapshots this node persisted (its own or a leader's)."})
	m.VMBootSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "blixard_vm_boot_seconds", Help: "Time from this node taking a VM's start (an image build included) to its guest agent's ready.",
		Buckets: prometheus.ExponentialBuckets(0.125, 2, 10),
	})
	m.SnapshotBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "blixard_raft_snapshot_bytes", Help: "Size of each Raft snapshot this node persisted (its own or a leader's).",
		Buckets: prometheus.ExponentialBuckets(1024, 4, 12),
	})
	m.ProposalsCommitted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blixard_raft_proposals_committed_total",
		Help: "Entries this node proposed (client writes as leader, placements, node verdicts, its own reports, membership changes) that it applied.",
	})
	m.ProposalsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blixard_raft_proposals_dropped_total",
		Help: "Proposals of this node that Raft refused at once (no leader known, a leadership transfer, too much uncommitted log).",
	})
	m.PlacementSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "blixard_placement_seconds",
		Help:    "On the leader, time from a VM or task starting to wait for a node (created, submitted, started, or its node gone) to the leader applying its assignment; restarts by restart policy left out.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	})
	m.Reschedules = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blixard_reschedules_total",
		Help: "Placements this node made as leader that moved a workload off a node that went down, left or was drained, by kind (vm, task).",
	}, []string{"kind"})
	for _, kind := range []string{"vm", "task"} {
		m.Reschedules.WithLabelValues(kind)
	}
	m.PlacementTries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blixard_placement_tries_total",
		Help: "On the leader, scheduler calls made for workloads waiting for a node, placed or not (blocked workloads are not tried).",
	})
	m.PlacementBlocked = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "blixard_placement_blocked",
		Help: "On the leader, workloads that fit nowhere and wait, untried, until room may have grown (a workload ends, a node joins, registers, changes status or is drained or undrained); 0 on followers.",
	})
	for _, c := range []prometheus.Collector{m.VMBootSeconds, m.apiRequests, m.apiLatency, m.RaftTerm, m.RaftCommitIndex, m.RaftAppliedIndex,
		m.RaftIsLeader, m.RaftLeaderChanges, m.ReadyEntries, m.ReadyMessages, m.StoreSaveSeconds, m.SnapshotsTotal,
		m.SnapshotBytes, m.ProposalsCommitted, m.ProposalsDropped, m.PlacementSeconds, m.Reschedules,
		m.PlacementTries, m.PlacementBlocked} {
		f(c)
	}
	f(&stateCollector{stats: stats})
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Interceptors count every gRPC call by method and code. They go before
// the access checks, so refused calls are counted too.
func (m *Metrics) Interceptors() []grpc.ServerOption {
	observe := func(method string, start time.Time, err error) {
		m.apiRequests.WithLabelValues(method, status.Code(err).String()).Inc()
		m.apiLatency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := time.Now()
			resp, err := h(ctx, req)
			observe(info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := time.Now()
			err := h(srv, ss)
			observe(info.FullMethod, start, err)
			return err
		}),
	}
}

// stateCollector reads the workload and capacity gauges at each scrape.
type stateCollector struct {
	stats func(ctx context.Context) (Stats, error)
}

var (
	vmsDesc       = prometheus.NewDesc("blixard_vms", "VMs in the cluster by state, as this node's state has them.", []string{"state"}, nil)
	tasksDesc     = prometheus.NewDesc("blixard_tasks", "Tasks in the cluster by status, as this node's state has them.", []string{"status"}, nil)
	capacityDesc  = prometheus.NewDesc("blixard_node_capacity", "What this node offers, by resource (vcpus; memory_bytes).", []string{"resource"}, nil)
	peerQueueDesc = prometheus.NewDesc("blixard_transport_send_queue_messages", "Raft messages waiting in this node's send queue to each peer.", []string{"peer"}, nil)
	allocatedDesc = prometheus.NewDesc("blixard_node_allocated", "What the VMs and tasks placed on this node take, by resource (vcpus; memory_bytes).", []string{"resource"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- vmsDesc
	ch <- tasksDesc
	ch <- capacityDesc
	ch <- allocatedDesc
	ch <- peerQueueDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := c.stats(ctx)
	if err != nil {
		return
	}
	for k, v := range s.VMsByState {
		ch <- prometheus.MustNewConstMetric(vmsDesc, prometheus.GaugeValue, float64(v), k)
	}
	for k, v := range s.TasksByStatus {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(v), k)
	}
	for k, v := range s.Capacity {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, v, k)
	}
	for k, v := range s.Allocated {
		ch <- prometheus.MustNewConstMetric(allocatedDesc, prometheus.GaugeValue, v, k)
	}
	for k, v := range s.PeerQueue {
		ch <- prometheus.MustNewConstMetric(peerQueueDesc, prometheus.GaugeValue, float64(v), k)
	}
}
