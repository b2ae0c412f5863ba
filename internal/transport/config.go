package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Defaults for the zero values of Config's limits.
const (
	DefaultQueueSize          = 4096
	DefaultMaxBatchBytes      = 4 << 20 // gRPC's default receive limit: a batch never exceeds it
	DefaultSnapshotChunkBytes = 1 << 20
	DefaultBackoffMin         = 50 * time.Millisecond
	DefaultBackoffMax         = 2 * time.Second
)

// Fixed limits. They are constants rather than Config fields because no
// caller has needed to tune them.
const (
	// MaxSnapshotBytes is the largest snapshot the receiving side accepts.
	MaxSnapshotBytes = 1 << 30

	// dialTimeout bounds one connection attempt to a peer (TCP and HTTP/2
	// handshake).
	dialTimeout = 5 * time.Second

	// sendStallTimeout bounds one Send on a stream. A Send blocks only when
	// the peer stops reading (its HTTP/2 flow-control window is full), so a
	// peer that stalls this long is treated as unreachable and the stream is
	// torn down rather than holding its sender forever.
	sendStallTimeout = 10 * time.Second

	// snapshotAckTimeout bounds the wait for a peer's Ack once all of a
	// snapshot's chunks are sent (the peer hands it to its node first).
	snapshotAckTimeout = 5 * time.Minute
)

// Config configures a Transport. ID and Deliver are required; every other
// zero value takes its default.
type Config struct {
	// ID is this node's Raft id. Messages received with another To are
	// dropped.
	ID uint64
	// Address is this node's advertised gRPC address. It is sent on the first
	// batch of each stream, so that a new node can answer a leader it has
	// never heard of (see Learned).
	Address string

	// Deliver hands one received message to the node. It must not block for
	// long: the runtime's inbox is bounded and it may drop (raft tolerates
	// loss). Called from transport goroutines, possibly concurrently.
	Deliver func(m *raftpb.Message)
	// SnapshotStatus reports whether a MsgSnap to peer was delivered (ok) or
	// failed; the runtime calls core.ReportSnapshot. May be called from
	// within Send. Optional.
	SnapshotStatus func(peer uint64, ok bool)
	// Unreachable reports that messages to peer could not be sent (unknown
	// peer, queue full, or connection down); the runtime calls
	// core.ReportUnreachable. May be called from within Send. Optional.
	Unreachable func(peer uint64)
	// Learned reports a peer's address learned from an incoming stream. The
	// runtime may use it until the replicated state has the peer's record.
	// Optional.
	Learned func(peer uint64, addr string)

	// Logger receives the transport's logs; default slog.Default().
	Logger *slog.Logger
	// Credentials, if set, gives the transport credentials to dial peer
	// with (mutual TLS that checks the server is that peer); nil dials in
	// plaintext.
	Credentials func(peer uint64) credentials.TransportCredentials
	// Authenticate, if set, names the node at the other end of a received
	// stream (from its verified certificate); a stream it fails is refused,
	// and so is every message whose sender is not that node. nil trusts
	// the sender a batch names (plaintext, --insecure).
	Authenticate func(ctx context.Context) (uint64, error)
	// Allowed, if set, is asked of an authenticated sender before each
	// batch: a stream from a node removed since it opened ends.
	Allowed func(id uint64) error

	// DialOptions are added after the transport's own (insecure credentials,
	// reconnect backoff from BackoffMin/BackoffMax), so they override them.
	DialOptions []grpc.DialOption

	// QueueSize is the number of messages each peer's queue holds; when it is
	// full, Send drops the message and reports Unreachable. Default 4096.
	QueueSize int
	// MaxBatchBytes bounds the encoded size of one Batch on a stream. A
	// single message larger than this is dropped (and reported Unreachable):
	// the receiving gRPC server's MaxRecvMsgSize (default 4 MiB) must be at
	// least MaxBatchBytes. Default 4 MiB.
	MaxBatchBytes int
	// SnapshotChunkBytes is the size of the data in one snapshot chunk. The
	// receiver's MaxRecvMsgSize must exceed it plus the header. Default 1 MiB.
	SnapshotChunkBytes int
	// BackoffMin and BackoffMax bound the delay between reconnection
	// attempts to a peer; the delay doubles after each failure, with jitter.
	// Defaults 50ms and 2s.
	BackoffMin, BackoffMax time.Duration
}

// withDefaults validates cfg and returns it with its zero values replaced
// by defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ID == 0 {
		return cfg, errors.New("transport: Config.ID must be non-zero")
	}
	if cfg.Deliver == nil {
		return cfg, errors.New("transport: Config.Deliver is required")
	}
	if cfg.QueueSize < 0 || cfg.MaxBatchBytes < 0 || cfg.SnapshotChunkBytes < 0 ||
		cfg.BackoffMin < 0 || cfg.BackoffMax < 0 {
		return cfg, errors.New("transport: Config limits must not be negative")
	}
	if cfg.SnapshotStatus == nil {
		cfg.SnapshotStatus = func(uint64, bool) {}
	}
	if cfg.Unreachable == nil {
		cfg.Unreachable = func(uint64) {}
	}
	if cfg.Learned == nil {
		cfg.Learned = func(uint64, string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.SnapshotChunkBytes == 0 {
		cfg.SnapshotChunkBytes = DefaultSnapshotChunkBytes
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return cfg, fmt.Errorf("transport: BackoffMax %v < BackoffMin %v", cfg.BackoffMax, cfg.BackoffMin)
	}
	return cfg, nil
}
