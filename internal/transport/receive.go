package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

// snapshotPreallocBytes bounds the buffer reserved up front for an incoming
// snapshot, so that a claimed total_bytes alone cannot reserve a GiB.
const snapshotPreallocBytes = 64 << 20

var errClosed = status.Error(codes.Unavailable, "transport closed")

// receiver implements the RaftTransport service for a Transport.
type receiver struct {
	transportpb.UnimplementedRaftTransportServer
	t *Transport
}

// received is one result of a stream's Recv.
type received[T any] struct {
	msg *T
	err error
}

// pump calls recv in its own goroutine and hands each result over the
// returned channel, so that a handler can wait for the next message and for
// the transport's Close at once. The goroutine ends after the first error,
// or when ctx (the stream's context, cancelled once the handler returns)
// is done.
func pump[T any](ctx context.Context, recv func() (*T, error)) <-chan received[T] {
	ch := make(chan received[T])
	go func() {
		for {
			msg, err := recv()
			select {
			case ch <- received[T]{msg: msg, err: err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// Stream receives one peer's batches for as long as the peer keeps the
// stream open, and delivers each message addressed to this node.
func (r receiver) Stream(stream grpc.ClientStreamingServer[transportpb.Batch, transportpb.Ack]) error {
	t := r.t
	if !t.enter() {
		return errClosed
	}
	defer t.wg.Done()
	sender, err := t.authenticate(stream.Context())
	if err != nil {
		return err
	}

	in := pump(stream.Context(), stream.Recv)
	first := true
	// A sender's streams are warned of once (streamWarned), until one of
	// them delivers without a message dropped.
	var streamFrom uint64
	dropped, delivered := 0, 0
	defer func() {
		if dropped == 0 && delivered > 0 {
			t.streamWarned.clear(streamFrom)
		}
	}()
	for {
		var next received[transportpb.Batch]
		select {
		case <-t.ctx.Done():
			return errClosed
		case next = <-in:
		}
		if errors.Is(next.err, io.EOF) {
			return stream.SendAndClose(&transportpb.Ack{})
		}
		if next.err != nil {
			return next.err
		}
		batch := next.msg
		from := batch.GetFrom()
		if sender != 0 && t.cfg.Allowed != nil {
			if err := t.cfg.Allowed(sender); err != nil {
				return status.Errorf(codes.PermissionDenied, "node %d: %v", sender, err)
			}
		}
		if sender != 0 && from != sender {
			dropped++
			t.log.Log(stream.Context(), levelIf(t.streamWarned.first(sender), slog.LevelWarn),
				"refusing a stream whose batches claim another sender", "node", sender, "claims", from)
			return status.Errorf(codes.PermissionDenied, "node %d sent a batch from %d", sender, from)
		}
		if first {
			first = false
			streamFrom = from
			if addr := batch.GetFromAddress(); addr != "" && from != 0 && from != t.cfg.ID {
				t.cfg.Learned(from, addr)
			}
		}
		for _, raw := range batch.GetMessages() {
			m := &raftpb.Message{}
			reason := ""
			switch err := proto.Unmarshal(raw, m); {
			case err != nil:
				reason = "undecodable: " + err.Error()
			case m.GetFrom() != from:
				reason = "sender differs from the stream's"
			default:
				if err := CheckMessage(t.cfg.ID, m); err != nil {
					reason = err.Error()
				}
			}
			if reason != "" {
				// Logged once per stream, a warning once per sender: a
				// misaddressed peer sends at tick rate, and reconnects.
				if dropped == 0 {
					t.log.Log(stream.Context(), levelIf(t.streamWarned.first(from), slog.LevelWarn),
						"dropping received message", "from", from, "to", m.GetTo(), "type", m.GetType(), "reason", reason)
				}
				dropped++
				continue
			}
			delivered++
			t.cfg.Deliver(m)
		}
	}
}

// authenticate names the node at the other end of a received stream, 0
// when the transport does not authenticate.
func (t *Transport) authenticate(ctx context.Context) (uint64, error) {
	if t.cfg.Authenticate == nil {
		return 0, nil
	}
	id, err := t.cfg.Authenticate(ctx)
	if err != nil {
		return 0, status.Errorf(codes.Unauthenticated, "peer: %v", err)
	}
	if id == 0 {
		return 0, status.Error(codes.Unauthenticated, "peer: no node id")
	}
	return id, nil
}

// Snapshot reassembles one MsgSnap from its chunks, delivers it, and then
// answers Ack.
func (r receiver) Snapshot(stream grpc.ClientStreamingServer[transportpb.SnapshotChunk, transportpb.Ack]) error {
	t := r.t
	if !t.enter() {
		return errClosed
	}
	defer t.wg.Done()
	sender, err := t.authenticate(stream.Context())
	if err != nil {
		return err
	}

	in := pump(stream.Context(), stream.Recv)
	var (
		m     *raftpb.Message // decoded from the first chunk's header
		data  []byte
		total uint64
	)
	for {
		var next received[transportpb.SnapshotChunk]
		select {
		case <-t.ctx.Done():
			return errClosed
		case next = <-in:
		}
		if errors.Is(next.err, io.EOF) {
			break
		}
		if next.err != nil {
			return next.err
		}
		chunk := next.msg
		if m == nil {
			var err error
			if sender != 0 && chunk.GetFrom() != sender {
				return status.Errorf(codes.PermissionDenied, "node %d sent a snapshot from %d", sender, chunk.GetFrom())
			}
			if m, err = t.snapshotHeader(chunk); err != nil {
				// The sender tries again at every heartbeat.
				t.log.Log(stream.Context(), levelIf(t.snapshotRefused.first(chunk.GetFrom()), slog.LevelWarn),
					"refusing snapshot", "from", chunk.GetFrom(), "err", err)
				return err
			}
			total = chunk.GetTotalBytes()
			data = make([]byte, 0, min(total, snapshotPreallocBytes))
		} else if len(chunk.GetHeader()) != 0 || chunk.GetTotalBytes() != 0 {
			return status.Error(codes.InvalidArgument, "header on a chunk after the first")
		}
		if uint64(len(data))+uint64(len(chunk.GetData())) > total {
			return status.Errorf(codes.InvalidArgument, "snapshot data exceeds total_bytes %d", total)
		}
		data = append(data, chunk.GetData()...)
	}
	if m == nil {
		return status.Error(codes.InvalidArgument, "snapshot stream without chunks")
	}
	if uint64(len(data)) != total {
		return status.Errorf(codes.InvalidArgument, "snapshot data is %d bytes, total_bytes says %d", len(data), total)
	}
	if t.ctx.Err() != nil {
		return errClosed
	}
	if m.Snapshot == nil {
		m.Snapshot = &raftpb.Snapshot{}
	}
	m.Snapshot.Data = data
	t.snapshotRefused.clear(m.GetFrom())
	t.cfg.Deliver(m)
	return stream.SendAndClose(&transportpb.Ack{})
}

// snapshotHeader checks a snapshot's first chunk and decodes its message.
func (t *Transport) snapshotHeader(chunk *transportpb.SnapshotChunk) (*raftpb.Message, error) {
	if total := chunk.GetTotalBytes(); total > MaxSnapshotBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "snapshot of %d bytes exceeds the limit of %d", total, MaxSnapshotBytes)
	}
	if len(chunk.GetHeader()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "first chunk has no header")
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(chunk.GetHeader(), m); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "undecodable header: %v", err)
	}
	switch {
	case m.GetType() != raftpb.MessageType_MsgSnap:
		return nil, status.Errorf(codes.InvalidArgument, "header is a %v, not a MsgSnap", m.GetType())
	case m.GetTo() != t.cfg.ID:
		return nil, status.Errorf(codes.FailedPrecondition, "snapshot for node %d sent to node %d", m.GetTo(), t.cfg.ID)
	case m.GetFrom() != chunk.GetFrom():
		return nil, status.Errorf(codes.InvalidArgument, "header from %d on a stream from %d", m.GetFrom(), chunk.GetFrom())
	}
	if err := CheckMessage(t.cfg.ID, m); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return m, nil
}

// CheckMessage reports why a message decoded from a peer must not reach
// raft on node self, or nil. Besides a message addressed to another node,
// it refuses those on which etcd raft, which trusts its peers, panics and
// which no correct peer sends; the receiving side drops these, so that a
// faulty or hostile peer cannot crash the node with them:
//
//   - a message that claims to come from this node, or from no node (0):
//     raft answers the sender, and panics on a message to itself;
//   - a message of a type raftpb does not declare: raft indexes tables by
//     type;
//   - a vote or pre-vote, or an answer to one, without a term: raft sends
//     them with one, and answering one without a term panics;
//   - a MsgProp or MsgReadIndex without entries, or with a term: followers
//     forward them as they were made, with entries and without a term, and
//     raft panics on the empty ones (a leader) or on resending one with a
//     term (a follower forwarding it to its leader);
//   - a MsgApp whose entries do not follow its index one by one, or whose
//     terms fall, or lie outside [log term, term]: a leader sends a run of
//     its log, and raft panics on an entry out of place (it takes it for a
//     conflict with a committed entry, or slices out of range);
//   - a MsgSnap whose membership raft cannot restore exactly (a duplicate
//     id, an id both voter and learner, an unknown field): raft panics when
//     it restores such a snapshot.
//
// What it cannot see, because it depends on the receiver's log — a
// heartbeat whose commit index lies beyond the receiver's last entry — is
// not refused here; see docs/SECURITY.md.
func CheckMessage(self uint64, m *raftpb.Message) error {
	if m.GetTo() != self {
		return fmt.Errorf("addressed to node %d, not to this node %d", m.GetTo(), self)
	}
	if m.GetFrom() == 0 || m.GetFrom() == self {
		return fmt.Errorf("claims to come from node %d", m.GetFrom())
	}
	if _, known := raftpb.MessageType_name[int32(m.GetType())]; !known {
		return fmt.Errorf("unknown message type %d", m.GetType())
	}
	switch m.GetType() {
	case raftpb.MessageType_MsgVote, raftpb.MessageType_MsgPreVote,
		raftpb.MessageType_MsgVoteResp, raftpb.MessageType_MsgPreVoteResp:
		if m.GetTerm() == 0 {
			return fmt.Errorf("%v without a term", m.GetType())
		}
	case raftpb.MessageType_MsgProp, raftpb.MessageType_MsgReadIndex:
		if len(m.GetEntries()) == 0 {
			return fmt.Errorf("%v without entries", m.GetType())
		}
		if m.GetTerm() != 0 {
			return fmt.Errorf("%v with term %d", m.GetType(), m.GetTerm())
		}
	case raftpb.MessageType_MsgApp:
		prev := m.GetLogTerm()
		for i, e := range m.GetEntries() {
			if e.GetIndex() != m.GetIndex()+1+uint64(i) {
				return fmt.Errorf("MsgApp after index %d with entry %d at index %d", m.GetIndex(), i, e.GetIndex())
			}
			if e.GetTerm() < prev || e.GetTerm() > m.GetTerm() {
				return fmt.Errorf("MsgApp of term %d after log term %d with entry %d of term %d", m.GetTerm(), m.GetLogTerm(), e.GetIndex(), e.GetTerm())
			}
			prev = e.GetTerm()
		}
	case raftpb.MessageType_MsgSnap:
		// A copy: EnsureConfState fills in AutoLeave, and m is not ours to
		// change.
		cs := raftpb.EnsureConfState(proto.CloneOf(m.GetSnapshot().GetMetadata().GetConfState()))
		cfg, prs, err := confchange.Restore(confchange.Changer{
			Tracker:   tracker.MakeProgressTracker(1, 0),
			LastIndex: m.GetSnapshot().GetMetadata().GetIndex(),
		}, cs)
		if err != nil {
			return fmt.Errorf("snapshot membership %v: %w", cs, err)
		}
		restored := tracker.ProgressTracker{Config: cfg, Progress: prs}
		if err := cs.Equivalent(restored.ConfState()); err != nil {
			return fmt.Errorf("snapshot membership %v does not restore as itself", cs)
		}
	}
	return nil
}
