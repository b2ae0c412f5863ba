package transport

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// waitTimeout is the generous deadline of every wait in these tests; it is
// a bound on a hang, not a claim about speed.
const waitTimeout = 30 * time.Second

// recorder collects what a Transport reports through its callbacks and
// wakes waiters on every change.
type recorder struct {
	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	delivered   []*raftpb.Message
	unreachable map[uint64]int
	snapshots   []snapshotResult
	learned     map[uint64]string
	// beforeDeliver, if set, runs before a message is recorded (outside mu).
	beforeDeliver func(m *raftpb.Message)
}

type snapshotResult struct {
	peer uint64
	ok   bool
}

func newRecorder() *recorder {
	return &recorder{
		changed:     make(chan struct{}),
		unreachable: make(map[uint64]int),
		learned:     make(map[uint64]string),
	}
}

func (r *recorder) update(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
}

// config returns a Config whose callbacks feed r.
func (r *recorder) config(t *testing.T, id uint64) Config {
	return Config{
		ID: id,
		Deliver: func(m *raftpb.Message) {
			if r.beforeDeliver != nil {
				r.beforeDeliver(m)
			}
			r.update(func() { r.delivered = append(r.delivered, m) })
		},
		SnapshotStatus: func(peer uint64, ok bool) {
			r.update(func() { r.snapshots = append(r.snapshots, snapshotResult{peer, ok}) })
		},
		Unreachable: func(peer uint64) { r.update(func() { r.unreachable[peer]++ }) },
		Learned:     func(peer uint64, addr string) { r.update(func() { r.learned[peer] = addr }) },
		Logger:      testLogger(t),
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  200 * time.Millisecond,
	}
}

// waitUntil waits until cond, evaluated under r.mu after every change,
// holds.
func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, changed := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
	}
}

// from returns the messages delivered so far that came from peer.
func (r *recorder) from(peer uint64) []*raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*raftpb.Message
	for _, m := range r.delivered {
		if m.GetFrom() == peer {
			out = append(out, m)
		}
	}
	return out
}

func (r *recorder) countFrom(peer uint64) int { return len(r.from(peer)) }

func (r *recorder) unreachableCount(peer uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[peer]
}

// eventually repeats step every few milliseconds until cond holds. It is
// for the waits whose progress needs the test to act (resend, as raft
// would) rather than just wait.
func eventually(t *testing.T, what string, step func(), cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for {
		step()
		if cond() {
			return
		}
		select {
		case <-ticker.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
	}
}

// waitClosed waits for ch to be closed.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
	}
}

// testNode is one transport with its own gRPC server on loopback.
type testNode struct {
	id   uint64
	addr string
	tr   *Transport
	srv  *grpc.Server
	rec  *recorder
}

// newNode starts a node listening on addr ("127.0.0.1:0" for any port).
// mod, if set, adjusts the config before New. The node is stopped at the
// end of the test.
func newNode(t *testing.T, id uint64, addr string, rec *recorder, mod func(*Config)) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	cfg := rec.config(t, id)
	cfg.Address = lis.Addr().String()
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := grpc.NewServer()
	tr.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	n := &testNode{id: id, addr: lis.Addr().String(), tr: tr, srv: srv, rec: rec}
	t.Cleanup(n.stop)
	return n
}

// stop closes the transport, then the server, as the runtime does.
func (n *testNode) stop() {
	_ = n.tr.Close()
	n.srv.Stop()
}

// connect makes every node a peer of every other.
func connect(nodes ...*testNode) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.tr.SetPeer(b.id, b.addr)
			}
		}
	}
}

// appMsg is a MsgApp from -> to whose Index is seq, with one entry.
func appMsg(from, to, seq uint64) *raftpb.Message {
	return &raftpb.Message{
		Type:    raftpb.MessageType_MsgApp.Enum(),
		From:    proto.Uint64(from),
		To:      proto.Uint64(to),
		Term:    proto.Uint64(3),
		LogTerm: proto.Uint64(3),
		Index:   proto.Uint64(seq),
		Commit:  proto.Uint64(seq),
		Entries: []*raftpb.Entry{{
			Term:  proto.Uint64(3),
			Index: proto.Uint64(seq + 1),
			Data:  fmt.Appendf(nil, "entry %d from %d to %d", seq, from, to),
		}},
	}
}

// checkInOrder fails unless got is exactly appMsg(from, to, first..first+n-1).
func checkInOrder(t *testing.T, got []*raftpb.Message, from, to, first uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d -> %d: got %d messages, want %d", from, to, len(got), n)
	}
	for i, m := range got {
		if want := appMsg(from, to, first+uint64(i)); !proto.Equal(m, want) {
			t.Fatalf("%d -> %d: message %d is %v, want %v", from, to, i, m, want)
		}
	}
}

// deadAddress returns a loopback address with nothing listening.
func deadAddress(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// silentAddress returns a loopback address that accepts TCP connections
// and never answers on them, so a dial to it hangs in the handshake.
func silentAddress(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}

// testLogger logs through t, at debug level with -v. Logging after the
// test ends panics, which also checks that nothing outlives Close.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
