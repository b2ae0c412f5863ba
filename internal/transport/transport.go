package transport

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

// Transport sends Raft messages to peers and receives them from peers. All
// its methods are safe for concurrent use.
type Transport struct {
	cfg         Config
	log         *slog.Logger
	dialOptions []grpc.DialOption

	// ctx is cancelled by Close; every goroutine of the transport derives
	// its context from it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the transport's goroutines (peer senders, snapshot senders)
	// and the gRPC handlers that are running.
	// Invariant: wg.Add is called only under mu with closed false, so that
	// Close's wg.Wait sees every goroutine that may call back.
	wg sync.WaitGroup

	mu     sync.RWMutex
	closed bool
	// peers holds one entry per known peer; never this node's own ID.
	peers map[uint64]*peer

	// What was warned of, so that a condition that lasts is logged once
	// per peer (then at debug): snapshots to a peer failing, snapshots
	// from a peer refused, and a peer's streams carrying messages that
	// are dropped.
	snapshotFailing, snapshotRefused, streamWarned noteSet
}

// New returns a Transport with no peers. Call Register to receive, SetPeer
// to add peers, and Close when done.
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.BackoffMin,
				Multiplier: 2,
				Jitter:     0.2,
				MaxDelay:   cfg.BackoffMax,
			},
			MinConnectTimeout: dialTimeout,
		}),
	}
	dialOptions = append(dialOptions, cfg.DialOptions...)
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "transport", "id", cfg.ID),
		dialOptions: dialOptions,
		ctx:         ctx,
		cancel:      cancel,
		peers:       make(map[uint64]*peer),
	}, nil
}

// dialOptionsFor are the options to dial peer with: its credentials, if
// the transport is secure, after the common options.
func (t *Transport) dialOptionsFor(peer uint64) []grpc.DialOption {
	if t.cfg.Credentials == nil {
		return t.dialOptions
	}
	return append(slices.Clip(t.dialOptions), grpc.WithTransportCredentials(t.cfg.Credentials(peer)))
}

// Register registers the RaftTransport service on the node's gRPC server.
// The server's MaxRecvMsgSize must be at least the senders' MaxBatchBytes
// (gRPC's default of 4 MiB matches the default here).
func (t *Transport) Register(s *grpc.Server) {
	transportpb.RegisterRaftTransportServer(s, receiver{t: t})
}

// SetPeer adds a peer or updates its address. It is idempotent; changing
// the address closes the peer's stream and reconnects to the new one.
// SetPeer with this node's own ID or an empty address is ignored.
func (t *Transport) SetPeer(id uint64, addr string) {
	if id == t.cfg.ID || id == 0 || addr == "" {
		t.log.Debug("ignoring SetPeer", "peer", id, "addr", addr)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if p, ok := t.peers[id]; ok {
		if p.setAddress(addr) {
			t.log.Info("peer address changed", "peer", id, "addr", addr)
		}
		return
	}
	p := newPeer(t.ctx, id, addr, t.cfg.QueueSize)
	t.peers[id] = p
	t.wg.Add(1)
	go t.runSender(p)
	t.log.Debug("peer added", "peer", id, "addr", addr)
}

// RemovePeer stops the peer's sender goroutine and drops its queue. A
// snapshot in flight to it fails (SnapshotStatus false). It does not wait
// for the goroutines to end; Close does.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if ok {
		p.cancel()
		t.log.Debug("peer removed", "peer", id)
	}
}

// Send enqueues each message on its peer's queue and never blocks. A
// message to an unknown peer, or to a peer whose queue is full, is dropped
// and reported through Unreachable (once per peer per call). A MsgSnap goes
// through the snapshot path: its own goroutine, at most one in flight per
// peer; a second one while one is in flight is reported at once as
// SnapshotStatus(peer, false). The callbacks may run before Send returns,
// on the caller's goroutine. Messages must not be modified after Send: they
// are encoded later, on the peer's goroutine. After Close, Send drops
// everything silently.
func (t *Transport) Send(msgs []*raftpb.Message) {
	var unreachable, snapshotFailed []uint64
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return
	}
	for _, m := range msgs {
		if m == nil {
			continue
		}
		to := m.GetTo()
		p := t.peers[to]
		switch {
		case p == nil:
			unreachable = appendOnce(unreachable, to)
		case m.GetType() == raftpb.MessageType_MsgSnap:
			if !p.snapshotInFlight.CompareAndSwap(false, true) {
				snapshotFailed = append(snapshotFailed, to)
				continue
			}
			t.wg.Add(1)
			go t.runSnapshotSender(p, m)
		default:
			select {
			case p.queue <- m:
			default:
				unreachable = appendOnce(unreachable, to)
			}
		}
	}
	t.mu.RUnlock()

	for _, id := range unreachable {
		t.log.Debug("dropped messages: peer unknown or queue full", "peer", id)
		t.cfg.Unreachable(id)
	}
	for _, id := range snapshotFailed {
		t.log.Warn("snapshot refused: one already in flight", "peer", id)
		t.cfg.SnapshotStatus(id, false)
	}
}

// Close stops every goroutine of the transport, closes its connections and
// ends the RaftTransport handlers that are running (later calls to them are
// refused). Once Close returns, no callback of Config runs any more. Close
// is idempotent and always returns nil. It does not stop the gRPC server.
func (t *Transport) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		t.cancel()
		clear(t.peers)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// enter registers a running gRPC handler; it reports false once the
// transport is closed. A true result must be paired with t.wg.Done.
func (t *Transport) enter() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

// appendOnce appends id unless ids holds it. ids is at most one entry per
// peer, so the scan is short.
func appendOnce(ids []uint64, id uint64) []uint64 {
	if slices.Contains(ids, id) {
		return ids
	}
	return append(ids, id)
}

// QueueDepths is how many messages wait in each peer's send queue now.
func (t *Transport) QueueDepths() map[uint64]int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make(map[uint64]int, len(t.peers))
	for id, p := range t.peers {
		out[id] = len(p.queue)
	}
	return out
}
