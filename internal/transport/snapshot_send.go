package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

// runSnapshotSender sends one MsgSnap to p on its own connection (so that
// a large snapshot does not hold up the peer's message stream) and reports
// the outcome through SnapshotStatus.
func (t *Transport) runSnapshotSender(p *peer, m *raftpb.Message) {
	defer t.wg.Done()
	started := time.Now()
	err := t.sendSnapshot(p, m)
	// Cleared before reporting: raft may answer a failure with a new MsgSnap
	// at once, and that one must not be refused as a second in flight.
	p.snapshotInFlight.Store(false)
	if t.ctx.Err() != nil {
		return // closed: no more callbacks
	}
	meta := m.GetSnapshot().GetMetadata()
	if err != nil {
		// Raft sends it again at every heartbeat while it fails.
		t.log.Log(t.ctx, levelIf(t.snapshotFailing.first(p.id), slog.LevelWarn), "snapshot failed",
			"peer", p.id, "index", meta.GetIndex(), "err", err)
	} else {
		t.snapshotFailing.clear(p.id)
		t.log.Info("snapshot sent", "peer", p.id, "index", meta.GetIndex(),
			"bytes", len(m.GetSnapshot().GetData()), "took", time.Since(started))
	}
	t.cfg.SnapshotStatus(p.id, err == nil)
}

// sendSnapshot streams m to p: the message without its data as header,
// then the data in SnapshotChunkBytes chunks, then waits for the Ack.
func (t *Transport) sendSnapshot(p *peer, m *raftpb.Message) error {
	data := m.GetSnapshot().GetData()
	if len(data) > MaxSnapshotBytes {
		return fmt.Errorf("snapshot of %d bytes exceeds the limit of %d", len(data), MaxSnapshotBytes)
	}
	header, err := proto.Marshal(withoutSnapshotData(m))
	if err != nil {
		return fmt.Errorf("encode header: %w", err)
	}

	addr := p.address()
	conn, err := grpc.NewClient(addr, t.dialOptionsFor(p.id)...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stream, err := transportpb.NewRaftTransportClient(conn).Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("open snapshot stream to %s: %w", addr, err)
	}

	chunk := &transportpb.SnapshotChunk{From: t.cfg.ID, Header: header, TotalBytes: uint64(len(data))}
	for offset := 0; ; {
		n := min(t.cfg.SnapshotChunkBytes, len(data)-offset)
		chunk.Data = data[offset : offset+n]
		offset += n
		err := sendOrStall(ctx, cancel, func() error { return stream.Send(chunk) })
		if errors.Is(err, io.EOF) {
			// The receiver ended the stream early; its status says why.
			if _, err = stream.CloseAndRecv(); err == nil {
				err = errors.New("receiver ended the stream early")
			}
		}
		if err != nil {
			return fmt.Errorf("send chunk to %s: %w", addr, err)
		}
		if offset == len(data) {
			break
		}
		chunk = &transportpb.SnapshotChunk{From: t.cfg.ID}
	}

	timer := time.AfterFunc(snapshotAckTimeout, cancel)
	_, err = stream.CloseAndRecv()
	if !timer.Stop() && p.ctx.Err() == nil {
		return fmt.Errorf("no Ack from %s within %v", addr, snapshotAckTimeout)
	}
	if err != nil {
		return fmt.Errorf("snapshot to %s: %w", addr, err)
	}
	return nil
}

// withoutSnapshotData returns a shallow copy of m whose snapshot keeps its
// metadata but not its data. m is not modified; the copy shares m's other
// fields, so it is only read (encoded).
func withoutSnapshotData(m *raftpb.Message) *raftpb.Message {
	header := &raftpb.Message{}
	dst := header.ProtoReflect()
	src := m.ProtoReflect()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() != "snapshot" {
			dst.Set(fd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
	header.Snapshot = &raftpb.Snapshot{Metadata: m.GetSnapshot().GetMetadata()}
	return header
}
