package runtime

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/metrics"
	"github.com/blixard/blixard/internal/server"
	"github.com/blixard/blixard/internal/store"
	"github.com/blixard/blixard/internal/transport"
)

// ErrRemoved is what Run returns when the node learns it was removed from
// the cluster.
var ErrRemoved = errors.New("this node was removed from the cluster")

// Node is one running node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	core  *core.Node
	tr    *transport.Transport
	grpc  *grpc.Server
	lis   net.Listener
	addr  string
	fresh bool // nothing was persisted: bootstrap or join

	// events feeds the owner goroutine; see Run.
	events chan func()
	// stopped is closed when Run's loop ends: requests still waiting get
	// server.ErrStopping.
	stopped chan struct{}

	// applied is the core's applied index, published for watchers; changed
	// is closed (and replaced) each time it moves.
	appliedMu sync.Mutex
	applied   uint64
	changed   chan struct{}

	// Owned by the Run goroutine.
	// fatal, once set by an event, stops Run with it.
	fatal     error
	lead      uint64
	removedAt time.Time
	nextReq   core.RequestID
	waiting   map[core.RequestID]chan *apiv1.Response
	peers     map[uint64]string
	// notes are what the drive loop last logged of the node's changes of
	// state (statelog.go).
	notes changeNotes
	// caPhase is the CA rotation phase certLoop last saw; owned by it.
	caPhase apiv1.CARotationPhase

	// sec is the node's TLS credentials and access checks; nil with
	// --insecure. joining is set while a secure new node waits for its
	// certificate.
	sec     *security
	joining *joiner
	// health is the standard gRPC health service's status (health.go).
	health *health.Server
	// metrics are the node's Prometheus metrics, served on metricsLis
	// when Config.MetricsListen is set (metrics.go).
	metrics    *metrics.Metrics
	metricsLis net.Listener
	// httpLis is the web dashboard's listener (Config.HTTPListen), or nil.
	httpLis net.Listener

	// wl runs the VMs placed on this node; nil with Config.NoWorkloads.
	wl *workloads
	// runCtx lives while Run does; VM actions run under it.
	runCtx    context.Context
	runCancel context.CancelFunc
}

// Start opens the node's store, makes its core, and starts listening. Run
// drives it.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("node", cfg.ID)
	if err := settleIdentity(&cfg, cfg.RoleGiven); err != nil {
		return nil, err
	}
	if cfg.Insecure {
		log.Warn("running with --insecure: plaintext gRPC, no authentication, anyone who reaches the port may do anything; loopback only")
	}
	st, loaded, err := store.Open(ctx, store.Options{FS: vfs.Default, Dir: filepath.Join(cfg.DataDir, "raft"), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("open the store in %s: %w", cfg.DataDir, err)
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	addr := cfg.Advertise
	if addr == "" {
		addr = lis.Addr().String()
	}
	n := &Node{
		cfg: cfg, log: log, store: st, lis: lis, addr: addr,
		fresh:   loaded.Empty(),
		events:  make(chan func(), cfg.InboxSize),
		stopped: make(chan struct{}),
		waiting: map[core.RequestID]chan *apiv1.Response{},
		peers:   map[uint64]string{},
		changed: make(chan struct{}),
	}
	n.runCtx, n.runCancel = context.WithCancel(context.Background())
	var images []*apiv1.ImageInfo
	if !cfg.NoWorkloads {
		if n.wl, err = newWorkloads(n); err != nil {
			_ = lis.Close()
			_ = st.Close()
			return nil, err
		}
		if err := n.wl.decideAccel(ctx); err != nil {
			_ = lis.Close()
			_ = st.Close()
			return nil, err
		}
		images = n.wl.images()
	}
	var peers []uint64
	if n.fresh && len(cfg.Join) == 0 {
		peers = []uint64{cfg.ID} // bootstrap a new cluster of one
	}
	clusterID := fmt.Sprintf("blixard-%d-%d", cfg.ID, time.Now().UnixNano())
	var admin *apiv1.Token
	var caDER []byte
	if !cfg.Insecure {
		if clusterID, admin, err = n.settleSecurity(clusterID); err != nil {
			_ = lis.Close()
			_ = st.Close()
			return nil, err
		}
		if admin != nil && n.sec.ca != nil {
			caDER = n.sec.ca.Certificate().Raw // the cluster's first entry records it
		}
	}
	var inc [8]byte
	_, _ = rand.Read(inc[:])
	c, err := core.New(core.Config{
		ID:              cfg.ID,
		Incarnation:     binary.BigEndian.Uint64(inc[:]),
		Peers:           peers,
		ClusterID:       clusterID,
		Secure:          !cfg.Insecure,
		AdminToken:      admin,
		CACertificate:   caDER,
		Address:         addr,
		Role:            cfg.Role,
		Capacity:        n.cfg.Capacity,
		Labels:          cfg.Labels,
		Workloads:       true,
		Images:          images,
		ElectionTicks:   cfg.ElectionTicks,
		HeartbeatTicks:  cfg.HeartbeatTicks,
		SnapshotEntries: cfg.SnapshotEntries,
		Logger:          raftLogger{log: log},

		TickInterval:     cfg.TickInterval,
		LeaseTicks:       int(cfg.Lease / cfg.TickInterval),
		DisconnectTicks:  int(cfg.DisconnectAfter / cfg.TickInterval),
		DownTicks:        int(cfg.DownAfter / cfg.TickInterval),
		VcpuOvercommit:   cfg.VcpuOvercommit,
		MemoryOvercommit: cfg.MemoryOvercommit,
	}, core.Persisted{HardState: loaded.HardState, Snapshot: loaded.Snapshot, Entries: loaded.Entries})
	if err != nil {
		_ = lis.Close()
		_ = st.Close()
		return nil, fmt.Errorf("start the core: %w", err)
	}
	n.core = c
	n.applied = c.State().AppliedIndex()
	// What the log holds up to its commit index was applied, and logged,
	// by an earlier run.
	n.notes = changeNotes{events: max(n.applied, loaded.HardState.GetCommit()), bootstrap: len(peers) > 0}
	_, n.notes.learner = c.Status().Config.Learners[cfg.ID]
	trCfg := transport.Config{
		ID:             cfg.ID,
		Address:        addr,
		Deliver:        n.deliver,
		SnapshotStatus: func(peer uint64, ok bool) { n.postWait(func() { n.core.ReportSnapshot(peer, ok) }) },
		Unreachable:    func(peer uint64) { n.post(func() { n.core.ReportUnreachable(peer) }) },
		Learned:        func(peer uint64, a string) { n.post(func() { n.learned(peer, a) }) },
		Logger:         log,
	}
	var api server.Security
	n.metrics = metrics.New(n.stats)
	opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(2 * transport.DefaultMaxBatchBytes)}
	// Counted first, so that the access checks' refusals are counted too.
	opts = append(opts, n.metrics.Interceptors()...)
	if cfg.MetricsListen != "" {
		if n.metricsLis, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			_ = lis.Close()
			_ = st.Close()
			return nil, fmt.Errorf("--metrics-listen %s: %w", cfg.MetricsListen, err)
		}
	}
	if cfg.HTTPListen != "" {
		if n.httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			if n.metricsLis != nil {
				_ = n.metricsLis.Close()
			}
			_ = lis.Close()
			_ = st.Close()
			return nil, fmt.Errorf("--http-listen %s: %w", cfg.HTTPListen, err)
		}
	}
	if n.sec != nil {
		n.sec.refresh(c.State())
		api = n.sec
		trCfg.Credentials, trCfg.Authenticate, trCfg.Allowed = n.sec.peerCredentials, authenticatePeer, n.sec.PeerAllowed
		opts = append(opts, grpc.Creds(credentials.NewTLS(n.sec.serverTLS())))
	}
	tr, err := transport.New(trCfg)
	if err != nil {
		for _, l := range []net.Listener{n.metricsLis, n.httpLis} {
			if l != nil {
				_ = l.Close()
			}
		}
		_ = lis.Close()
		_ = st.Close()
		return nil, fmt.Errorf("start the transport: %w", err)
	}
	n.tr = tr
	// A peer batch may be as large as the transport's batch limit. Every
	// call, the transport's too, passes the permission table.
	n.grpc = grpc.NewServer(append(opts, server.Interceptors(api, cfg.Limits)...)...)
	tr.Register(n.grpc)
	server.Register(n.grpc, n, api)
	n.health = newHealth()
	healthpb.RegisterHealthServer(n.grpc, n.health)
	reflection.Register(n.grpc)
	return n, nil
}

// Addr is the address the node advertises.
func (n *Node) Addr() string { return n.addr }

// Run drives the node until ctx ends, the store fails, or the node is
// removed. It always shuts the node down before it returns.
func (n *Node) Run(ctx context.Context) (err error) {
	serveErr := make(chan error, 1)
	go func() { serveErr <- n.grpc.Serve(n.lis) }()
	n.log.Info("node started", "addr", n.addr, "data_dir", n.cfg.DataDir, "role", n.cfg.Role, "fresh", n.fresh)
	if n.fresh && len(n.cfg.Join) > 0 && (n.sec == nil || n.joining != nil) {
		go n.joinLoop(ctx)
	}
	go n.removalWatch(ctx)
	if n.metricsLis != nil {
		go n.serveMetrics(n.runCtx, n.metricsLis)
		n.log.Info("serving metrics", "addr", "http://"+n.metricsLis.Addr().String()+"/metrics")
	}
	if n.httpLis != nil {
		go n.serveDashboard(n.runCtx, n.httpLis)
		scheme := "http"
		if n.cfg.dashboardTLS() {
			scheme = "https"
		}
		n.log.Info("serving the dashboard", "addr", scheme+"://"+n.httpLis.Addr().String()+"/")
	}
	if n.sec != nil {
		go n.certLoop(n.runCtx)
	}
	defer func() { n.shutdown() }()
	if n.wl != nil {
		reports := n.wl.recover(ctx)
		n.core.VMsRecovered(reports)
		go n.wl.watch(n.runCtx)
		go n.wl.renewer(n.runCtx)
	} else {
		n.core.VMsRecovered(nil)
	}
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	n.syncPeers()
	for {
		select {
		case <-ctx.Done():
			n.log.Info("stopping", "reason", context.Cause(ctx))
			return nil
		case err := <-serveErr:
			return fmt.Errorf("grpc server: %w", err)
		case now := <-ticker.C:
			if !n.removedAt.IsZero() && now.Sub(n.removedAt) > removedLinger {
				if n.wl != nil {
					// A removed node runs nothing of the cluster's any more.
					n.wl.stopAll(ctx)
				}
				return ErrRemoved
			}
			n.core.Tick(now)
			n.syncPeers()
		case ev := <-n.events:
			ev()
			// Group commit: take what else is already waiting (up to a
			// bound) so that one Ready, and one fsync, carries it all.
			n.drain(maxEventsPerReady - 1)
		}
		if n.fatal != nil {
			return n.fatal
		}
		if err := n.drive(); err != nil {
			return err
		}
		n.logFence()
	}
}

// removedLinger is how long a removed node keeps running so that its last
// messages and answers leave it.
const removedLinger = 2 * time.Second

// maxEventsPerReady bounds how many queued events (requests, peer messages)
// one Ready gathers before it is persisted.
const maxEventsPerReady = 256

// drain runs up to max events that are already queued, without waiting.
func (n *Node) drain(max int) {
	for i := 0; i < max; i++ {
		select {
		case ev := <-n.events:
			ev()
		default:
			return
		}
	}
}

// drive carries out the core's Readys: persist, send, answer, advance. The
// save is not cancelled by shutdown: a Ready in hand is finished first.
func (n *Node) drive() error {
	for n.core.HasReady() {
		rd := n.core.Ready()
		saveStart := time.Now()
		err := n.store.Save(context.Background(), store.Batch{
			HardState:  rd.HardState,
			ConfState:  rd.ConfState,
			Snapshot:   rd.Snapshot,
			ReplaceLog: rd.SnapshotReplacesLog,
			Entries:    rd.Entries,
			NoSync:     !rd.MustSync,
		})
		if err != nil {
			// Fail-stop: nothing of this Ready may leave the node.
			n.log.Error("store failed; stopping", "err", err)
			return fmt.Errorf("persist: %w", err)
		}
		n.observeReady(len(rd.Entries), len(rd.Messages), rd.MustSync, snapshotBytes(rd.Snapshot), time.Since(saveStart))
		n.tr.Send(rd.Messages)
		if !rd.LeaseUntil.IsZero() && n.wl != nil {
			n.wl.renewLease(rd.LeaseUntil)
		}
		if len(rd.VMActions) > 0 {
			if n.wl != nil {
				n.wl.carry(n.runCtx, rd.VMActions)
			} else {
				n.refuseVMActions(rd.VMActions)
			}
		}
		for _, r := range rd.Responses {
			if ch, ok := n.waiting[r.ID]; ok {
				delete(n.waiting, r.ID)
				ch <- r.Response
			}
		}
		if err := n.core.Advance(); err != nil {
			n.log.Error("core cannot go on; stopping", "err", err)
			return err
		}
		n.publishApplied(n.core.State().AppliedIndex())
		n.logReady(rd)
		n.observeRaft()
		if n.sec != nil {
			n.sec.refresh(n.core.State())
		}
		if lead, term := n.core.Leader(); lead != n.lead {
			n.lead = lead
			n.log.Info("leader changed", "leader", lead, "term", term)
			n.metrics.RaftLeaderChanges.Inc()
			n.setServing(lead != 0 && !n.core.Removed())
		}
		if n.core.Removed() && n.removedAt.IsZero() {
			// Linger a moment so that this Ready's messages and answers go
			// out before the node stops.
			n.log.Warn("removed from the cluster; stopping shortly")
			n.removedAt = time.Now()
			n.setServing(false)
		}
	}
	return nil
}

func (n *Node) publishApplied(index uint64) {
	n.appliedMu.Lock()
	defer n.appliedMu.Unlock()
	if index != n.applied {
		n.applied = index
		close(n.changed)
		n.changed = make(chan struct{})
	}
}

// WaitApplied blocks until the node has applied past index, and returns
// its applied index (server.Watcher).
func (n *Node) WaitApplied(ctx context.Context, index uint64) (uint64, error) {
	for {
		n.appliedMu.Lock()
		applied, changed := n.applied, n.changed
		n.appliedMu.Unlock()
		if applied > index {
			return applied, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-n.stopped:
			return 0, server.ErrStopping
		}
	}
}

// Do hands a request to the core and waits for its answer (server.Backend).
func (n *Node) Do(ctx context.Context, req *apiv1.Request) (*apiv1.Response, error) {
	reply := make(chan *apiv1.Response, 1)
	ev := func() {
		n.nextReq++
		n.waiting[n.nextReq] = reply
		n.core.Request(n.nextReq, req)
	}
	select {
	case n.events <- ev:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.stopped:
		return nil, server.ErrStopping
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		// The core still answers; the reply channel is buffered and dropped.
		return nil, ctx.Err()
	case <-n.stopped:
		return nil, server.ErrStopping
	}
}

// post queues an event for the owner goroutine without blocking; when the
// inbox is full the event is dropped (a peer message or report: raft
// recovers from both).
func (n *Node) post(ev func()) bool {
	select {
	case n.events <- ev:
		return true
	default:
		return false
	}
}

// postWait queues an event that must not be lost (a snapshot's fate, a
// reason to stop), waiting for room unless the node has stopped.
func (n *Node) postWait(ev func()) {
	select {
	case n.events <- ev:
	case <-n.stopped:
	}
}

// deliver is the transport's hand-off of a peer message.
func (n *Node) deliver(m *raftpb.Message) {
	if !n.post(func() {
		if err := n.core.Step(m); err != nil {
			n.log.Debug("step", "err", err)
		}
	}) {
		n.log.Debug("inbox full; dropped a peer message", "from", m.GetFrom(), "type", m.GetType())
	}
}

// learned records a peer address from an incoming stream, for peers the
// replicated state does not know yet (a joiner hearing from its leader).
func (n *Node) learned(peer uint64, addr string) {
	if _, ok := n.core.State().Node(peer); ok || peer == n.cfg.ID {
		return
	}
	if n.peers[peer] != addr {
		n.peers[peer] = addr
		n.tr.SetPeer(peer, addr)
	}
}

// syncPeers points the transport at every member's address as recorded in
// the replicated state.
func (n *Node) syncPeers() {
	for _, rec := range n.core.State().Nodes() {
		id := rec.GetId()
		if id == n.cfg.ID {
			continue
		}
		if rec.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
			if _, ok := n.peers[id]; ok {
				delete(n.peers, id)
				n.tr.RemovePeer(id)
			}
			continue
		}
		if n.peers[id] != rec.GetAddress() {
			n.peers[id] = rec.GetAddress()
			n.tr.SetPeer(id, rec.GetAddress())
		}
	}
}

// peerAddrs are the addresses of the peers this node knows.
func (n *Node) peerAddrs() []string {
	out := make(chan []string, 1)
	if !n.post(func() {
		var addrs []string
		for _, a := range n.peers {
			addrs = append(addrs, a)
		}
		addrs = append(addrs, n.cfg.Join...)
		out <- addrs
	}) {
		return nil
	}
	select {
	case a := <-out:
		return a
	case <-n.stopped:
		return nil
	}
}

// shutdown stops accepting, answers waiters, closes transport and store.
// The transport closes first: it ends the peer streams that a graceful
// stop would otherwise wait on.
func (n *Node) shutdown() {
	n.health.Shutdown() // NOT_SERVING from now on, to every watcher
	close(n.stopped)
	n.runCancel()
	if n.wl != nil {
		// VMs outlive the node; only the actions under way end.
		n.wl.close()
	}
	if err := n.tr.Close(); err != nil {
		n.log.Warn("close transport", "err", err)
	}
	done := make(chan struct{})
	go func() { n.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		n.grpc.Stop()
	}
	if err := n.store.Close(); err != nil {
		n.log.Warn("close store", "err", err)
	}
	n.log.Info("stopped")
}

// ConsoleLog is the path of VM name's console log on this node
// (server.Consoles).
func (n *Node) ConsoleLog(name string) (string, error) {
	if n.wl == nil {
		return "", errors.New("this node runs no VMs (--no-workloads)")
	}
	return n.wl.consoleLog(name)
}

// refuseVMActions answers the agent of a node started with --no-workloads
// that still holds VMs from an earlier run: nothing starts here (the VM
// fails, and its restart policy places it anew), and nothing runs here to
// stop.
func (n *Node) refuseVMActions(actions []core.VMAction) {
	for _, a := range actions {
		r := core.VMReport{Name: a.Name, Generation: a.Generation}
		switch a.Kind {
		case core.StartVM:
			r.State, r.Reason = apiv1.VmState_VM_STATE_FAILED, "this node runs no VMs (--no-workloads)"
		case core.StopVM:
			r.State, r.Reason = apiv1.VmState_VM_STATE_STOPPED, "this node runs no VMs (--no-workloads)"
		default:
			continue
		}
		n.log.Warn("refused a VM action: this node runs no VMs (--no-workloads)", "vm", a.Name, "action", a.Kind)
		// After this Ready's Advance, as an event of its own.
		go n.postWait(func() { n.core.ReportVM(r) })
	}
}
