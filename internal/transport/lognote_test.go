package transport

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/blixard/blixard/internal/transport/transportpb"
)

// TestNoteSet: an id is first once until cleared; the set starts over
// past maxNotedPeers ids.
func TestNoteSet(t *testing.T) {
	var s noteSet
	for i, step := range []struct {
		op   string
		id   uint64
		want bool
	}{
		{"first", 1, true}, {"first", 1, false}, {"first", 2, true},
		{"clear", 1, true}, {"clear", 1, false},
		{"first", 1, true}, {"first", 2, false},
	} {
		var got bool
		if step.op == "first" {
			got = s.first(step.id)
		} else {
			got = s.clear(step.id)
		}
		if got != step.want {
			t.Fatalf("step %d: %s(%d) = %v, want %v", i, step.op, step.id, got, step.want)
		}
	}
	for id := uint64(100); id < 100+maxNotedPeers; id++ {
		s.first(id)
	}
	if len(s.ids) > maxNotedPeers {
		t.Fatalf("the set holds %d ids, more than %d", len(s.ids), maxNotedPeers)
	}
}

// levels records the level of each line logged with a given message.
type levels struct {
	mu    sync.Mutex
	byMsg map[string][]slog.Level
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byMsg == nil {
		l.byMsg = map[string][]slog.Level{}
	}
	l.byMsg[r.Message] = append(l.byMsg[r.Message], r.Level)
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

func (l *levels) of(msg string) []slog.Level {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.byMsg[msg])
}

// TestReceiverWarnsOncePerSender: a sender whose every stream carries
// misaddressed messages, or whose snapshots are refused, is warned of
// once, then logged at debug; a clean stream from it, or a snapshot
// taken, clears the warning.
func TestReceiverWarnsOncePerSender(t *testing.T) {
	lv := &levels{}
	n2 := newNode(t, 2, "127.0.0.1:0", newRecorder(), func(c *Config) { c.Logger = slog.New(lv) })
	client := rawClient(t, n2.addr)
	stream := func(msgs ...[]byte) {
		t.Helper()
		s, err := client.Stream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&transportpb.Batch{From: 1, Messages: msgs}); err != nil {
			t.Fatal(err)
		}
		// The handler has logged once it answers.
		if _, err := s.CloseAndRecv(); err != nil {
			t.Fatalf("CloseAndRecv: %v", err)
		}
	}
	misaddressed, good := encode(t, appMsg(1, 3, 0)), encode(t, appMsg(1, 2, 0))
	stream(misaddressed)
	stream(misaddressed, good)
	stream(good)
	stream(misaddressed)
	want := []slog.Level{slog.LevelWarn, slog.LevelDebug, slog.LevelWarn}
	if got := lv.of("dropping received message"); !slices.Equal(got, want) {
		t.Fatalf("dropped messages logged at %v, want %v", got, want)
	}

	refused := func() {
		t.Helper()
		s, err := client.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Send(&transportpb.SnapshotChunk{From: 1, TotalBytes: 1, Data: []byte("1")}) // no header
		if _, err := s.CloseAndRecv(); err == nil {
			t.Fatal("a snapshot without a header was taken")
		}
	}
	refused()
	refused()
	want = []slog.Level{slog.LevelWarn, slog.LevelDebug}
	if got := lv.of("refusing snapshot"); !slices.Equal(got, want) {
		t.Fatalf("refused snapshots logged at %v, want %v", got, want)
	}
}
