package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

var (
	errAddressChanged = errors.New("peer address changed")
	errStalled        = errors.New("send stalled: peer stopped reading")
)

// peer is the sending side towards one peer.
type peer struct {
	id uint64
	// queue holds messages waiting for the sender goroutine.
	// Invariant: cap(queue) == Config.QueueSize, and only Send writes to it.
	queue chan *raftpb.Message
	// ctx is cancelled by RemovePeer or Close.
	ctx    context.Context
	cancel context.CancelFunc
	// snapshotInFlight is true while a snapshot goroutine runs for this peer.
	snapshotInFlight atomic.Bool

	mu   sync.Mutex
	addr string
	// addressChanged wakes the sender when addr changes (capacity 1).
	addressChanged chan struct{}
}

func newPeer(parent context.Context, id uint64, addr string, queueSize int) *peer {
	ctx, cancel := context.WithCancel(parent)
	return &peer{
		id:             id,
		queue:          make(chan *raftpb.Message, queueSize),
		ctx:            ctx,
		cancel:         cancel,
		addr:           addr,
		addressChanged: make(chan struct{}, 1),
	}
}

func (p *peer) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// setAddress records addr and reports whether it differs from the old one.
func (p *peer) setAddress(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.addr == addr {
		return false
	}
	p.addr = addr
	select {
	case p.addressChanged <- struct{}{}:
	default:
	}
	return true
}

// runSender is the peer's sender goroutine: it keeps one stream open and
// reconnects with jittered exponential backoff when it breaks.
func (t *Transport) runSender(p *peer) {
	defer t.wg.Done()
	delay := t.cfg.BackoffMin
	failures := 0
	for {
		healthy, err := t.runStream(p)
		if p.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errAddressChanged) {
			delay, failures = t.cfg.BackoffMin, 0
			continue
		}
		if healthy {
			delay, failures = t.cfg.BackoffMin, 0
		}
		failures++
		if failures == 1 {
			t.log.Warn("peer unreachable", "peer", p.id, "addr", p.address(), "err", err)
		} else {
			t.log.Debug("peer still unreachable", "peer", p.id, "failures", failures, "err", err)
		}
		t.cfg.Unreachable(p.id)
		if !t.waitBackoff(p, jitter(delay)) {
			return
		}
		delay = min(2*delay, t.cfg.BackoffMax)
	}
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// waitBackoff waits d before the next connection attempt. Messages queued
// meanwhile are dropped (and reported Unreachable): raft resends what
// matters, and stale messages are better lost than delivered late. It
// returns early on an address change, and false once the peer is stopped.
func (t *Transport) waitBackoff(p *peer, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-p.addressChanged:
			return true
		case <-p.queue:
			dropped := 1 + drain(p.queue)
			t.log.Debug("dropped messages to unreachable peer", "peer", p.id, "count", dropped)
			t.cfg.Unreachable(p.id)
		}
	}
}

// drain empties q without blocking and returns how many it took.
func drain(q chan *raftpb.Message) int {
	for n := 0; ; n++ {
		select {
		case <-q:
		default:
			return n
		}
	}
}

// runStream connects to the peer, opens a Stream and sends batches until
// the stream breaks, the address changes or the peer is stopped. healthy
// reports that the stream lasted at least BackoffMax, so that the backoff
// may start again from BackoffMin; a peer that accepts streams and ends
// them at once keeps backing off.
func (t *Transport) runStream(p *peer) (healthy bool, err error) {
	select { // the address read below is the newest: forget older changes
	case <-p.addressChanged:
	default:
	}
	addr := p.address()
	conn, err := grpc.NewClient(addr, t.dialOptionsFor(p.id)...)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stream, err := transportpb.NewRaftTransportClient(conn).Stream(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream to %s: %w", addr, err)
	}
	started := time.Now()
	defer func() { healthy = time.Since(started) >= t.cfg.BackoffMax }()

	// The receiver answers only when it ends the stream; watching for that
	// answer notices a peer that went away even while there is nothing to
	// send.
	var endErr error
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		endErr = stream.RecvMsg(new(transportpb.Ack))
	}()
	defer func() {
		cancel()
		<-ended
	}()

	var pending []byte // an encoded message that did not fit the last batch
	first := true
	for {
		var next *raftpb.Message
		if pending == nil {
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-ended:
				return false, fmt.Errorf("stream to %s ended: %w", addr, endErr)
			case <-p.addressChanged:
				return false, errAddressChanged
			case next = <-p.queue:
			}
		}
		var batch *transportpb.Batch
		batch, pending = t.fillBatch(p, pending, next)
		if len(batch.GetMessages()) == 0 {
			continue
		}
		if first {
			batch.FromAddress = t.cfg.Address
			first = false
		}
		if err := sendOrStall(ctx, cancel, func() error { return stream.Send(batch) }); err != nil {
			return false, fmt.Errorf("send to %s: %w", addr, err)
		}
	}
}

// sendOrStall runs send, cancelling the stream if it blocks longer than
// sendStallTimeout.
func sendOrStall(ctx context.Context, cancel context.CancelFunc, send func() error) error {
	timer := time.AfterFunc(sendStallTimeout, cancel)
	err := send()
	if !timer.Stop() && ctx.Err() != nil {
		return errStalled
	}
	return err
}

// fillBatch builds one Batch from pending (an encoded message left over
// from the last batch) or next, then whatever else is queued, up to
// MaxBatchBytes encoded. It returns the message that did not fit, encoded.
// A message that cannot be encoded, or that exceeds MaxBatchBytes on its
// own, is dropped, logged and reported Unreachable.
func (t *Transport) fillBatch(p *peer, pending []byte, next *raftpb.Message) (*transportpb.Batch, []byte) {
	batch := &transportpb.Batch{From: t.cfg.ID}
	size := protowire.SizeTag(1) + protowire.SizeVarint(t.cfg.ID)
	if t.cfg.Address != "" { // counted on every batch, though only the first carries it
		size += protowire.SizeTag(3) + protowire.SizeBytes(len(t.cfg.Address))
	}
	for {
		encoded := pending
		pending = nil
		if encoded == nil && next != nil {
			var err error
			encoded, err = proto.Marshal(next)
			if err != nil {
				t.log.Error("dropping message that does not encode", "peer", p.id, "type", next.GetType(), "err", err)
				t.cfg.Unreachable(p.id)
			}
		}
		if encoded != nil {
			n := protowire.SizeTag(2) + protowire.SizeBytes(len(encoded))
			switch {
			case size+n <= t.cfg.MaxBatchBytes:
				batch.Messages = append(batch.Messages, encoded)
				size += n
			case len(batch.Messages) > 0:
				return batch, encoded
			default:
				t.log.Error("dropping message larger than MaxBatchBytes", "peer", p.id,
					"type", next.GetType(), "bytes", len(encoded), "max_batch_bytes", t.cfg.MaxBatchBytes)
				t.cfg.Unreachable(p.id)
			}
		}
		select {
		case next = <-p.queue:
		default:
			return batch, nil
		}
	}
}
