package sim

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

// MaxClockDrift bounds how much faster or slower than real time any node's
// clock runs: its ticks arrive at TickInterval × (1 ± drift) with
// |drift| <= MaxClockDrift. It is the core's constant, from which the
// fencing lease's margin derives: the simulator never drifts further.
const MaxClockDrift = core.MaxClockDrift

// TraceTailLines is how many trace lines a failure report shows.
const TraceTailLines = 200

// Options shape a world. Zero fields take the defaults noted.
type Options struct {
	// Nodes is the cluster size (default 3).
	Nodes int
	// TickInterval is a node's tick in virtual time (default 100 ms).
	TickInterval time.Duration
	// MinLatency and MaxLatency bound one message's delay (default 1–10 ms).
	MinLatency, MaxLatency time.Duration
	// LossRate, DuplicateRate and ReorderRate are per-message probabilities
	// of loss, of a second copy, and of an extra delay of up to
	// ReorderDelay (default 50 ms) that lets later messages overtake it.
	LossRate, DuplicateRate, ReorderRate float64
	ReorderDelay                         time.Duration
	// ClockDrift gives each node a tick rate drawn within ±MaxClockDrift;
	// MaxClockSkew an offset of its wall clock drawn within ±MaxClockSkew.
	ClockDrift   bool
	MaxClockSkew time.Duration
	// Workloads turns on the node agents: the leader places VMs and tasks,
	// and each node runs them on its simulated hypervisor (hypervisor.go),
	// under the vm-once and capacity checkers.
	Workloads bool
	// Core adjusts every node's core configuration.
	Core func(*core.Config)
	// Trace, when set, receives every trace line.
	Trace io.Writer
}

func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.TickInterval == 0 {
		o.TickInterval = 100 * time.Millisecond
	}
	if o.MinLatency == 0 && o.MaxLatency == 0 {
		o.MinLatency, o.MaxLatency = time.Millisecond, 10*time.Millisecond
	}
	if o.MaxLatency < o.MinLatency {
		o.MaxLatency = o.MinLatency
	}
	if o.ReorderDelay == 0 {
		o.ReorderDelay = 50 * time.Millisecond
	}
	return o
}

// World is a simulated cluster: real cores and stores, a simulated network,
// clock and disk, all driven from one goroutine by an event queue ordered by
// virtual time. One seeded PRNG decides everything random.
type World struct {
	seed uint64
	opts Options
	rng  *rand.Rand
	// now is virtual time since the world began.
	now    time.Duration
	events eventQueue
	seq    uint64
	// delivered counts the events run.
	delivered uint64

	ids   []uint64
	nodes map[uint64]*Node
	net   *Network

	clients []*Client
	history *History

	checkers []Checker
	chk      checkers
	// lives are the runs of every VM on the hypervisors, by name.
	lives map[string][]*VMLife
	// failure is the first checker violation or driver fault; the world
	// stops running events once it is set.
	failure error

	traceHash hash.Hash
	tail      []traceLine // ring of the last TraceTailLines lines
	tailNext  int
	scratch   [8]byte
}

// New makes a world of opts.Nodes fresh nodes that bootstrap one cluster.
// Everything random in it derives from seed.
func New(seed uint64, opts Options) (*World, error) {
	opts = opts.withDefaults()
	w := &World{
		seed:      seed,
		opts:      opts,
		rng:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nodes:     map[uint64]*Node{},
		traceHash: sha256.New(),
		tail:      make([]traceLine, 0, TraceTailLines),
		history:   newHistory(),
		lives:     map[string][]*VMLife{},
	}
	w.net = newNetwork(w)
	w.checkers = defaultCheckers(w)
	for i := 1; i <= opts.Nodes; i++ {
		w.ids = append(w.ids, uint64(i))
	}
	for _, id := range w.ids {
		n, err := newNode(w, id, w.ids)
		if err != nil {
			return nil, err
		}
		w.nodes[id] = n
	}
	for _, id := range w.ids {
		if err := w.nodes[id].boot(); err != nil {
			return nil, err
		}
	}
	if opts.Workloads {
		if err := w.startWorkloadCheckers(); err != nil {
			return nil, fmt.Errorf("sim: workload checkers: %w", err)
		}
	}
	return w, nil
}

// Close releases every node's store.
func (w *World) Close() {
	for _, id := range w.ids {
		w.nodes[id].closeStore()
	}
}

// Seed is the seed the world was made from.
func (w *World) Seed() uint64 { return w.seed }

// Now is the virtual time since the world began.
func (w *World) Now() time.Duration { return w.now }

// Rand is the world's PRNG, for scenarios that draw their own choices.
func (w *World) Rand() *rand.Rand { return w.rng }

// IDs are the node ids, ascending.
func (w *World) IDs() []uint64 { return slices.Clone(w.ids) }

// Node returns node id.
func (w *World) Node(id uint64) *Node { return w.nodes[id] }

// Net is the simulated network.
func (w *World) Net() *Network { return w.net }

// History is the clients' operation history.
func (w *World) History() *History { return w.history }

// Events is how many events have run.
func (w *World) Events() uint64 { return w.delivered }

// Err is the first violation or fault the world met, or nil.
func (w *World) Err() error { return w.failure }

// TraceHash is the hash over everything the run did so far.
func (w *World) TraceHash() string { return fmt.Sprintf("%x", w.traceHash.Sum(nil)) }

// SeedLine is the one-line summary every run prints.
func (w *World) SeedLine() string {
	return fmt.Sprintf("sim: seed=%d trace-hash=%s events=%d virtual=%s", w.seed, w.TraceHash(), w.delivered, w.now)
}

// RunFor runs events for d of virtual time. It stops early, returning the
// failure, when a checker fires.
func (w *World) RunFor(d time.Duration) error {
	end := w.now + d
	for w.failure == nil && len(w.events) > 0 && w.events[0].at <= end {
		w.step()
	}
	if w.failure == nil {
		w.now = end
	}
	return w.failure
}

// RunUntil runs events until cond holds (checked after every event) or d of
// virtual time has passed, whichever is first.
func (w *World) RunUntil(cond func() bool, d time.Duration) error {
	end := w.now + d
	for w.failure == nil && !cond() {
		if len(w.events) == 0 || w.events[0].at > end {
			w.now = end
			return fmt.Errorf("sim: condition not met within %s (at %s)", d, w.now)
		}
		w.step()
	}
	return w.failure
}

// step runs the next event.
func (w *World) step() {
	ev := heap.Pop(&w.events).(*event)
	w.now = ev.at
	w.delivered++
	ev.run()
}

// at schedules run at virtual time t (not before now).
func (w *World) at(t time.Duration, run func()) {
	if t < w.now {
		t = w.now
	}
	w.seq++
	heap.Push(&w.events, &event{at: t, seq: w.seq, run: run})
}

// fail records the first failure; the world stops.
func (w *World) fail(err error) {
	if w.failure == nil {
		w.failure = err
		w.tracef("FAILURE: %v", err)
	}
}

// Failure formats an error for a test failure: the seed line, the error and
// the last trace lines.
func (w *World) Failure(err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%v\nlast %d trace lines:\n", w.SeedLine(), err, len(w.tail))
	for _, l := range w.TraceTail() {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// TraceTail returns the last trace lines, oldest first.
func (w *World) TraceTail() []string {
	lines := w.tail
	if len(w.tail) == TraceTailLines {
		lines = append(slices.Clone(w.tail[w.tailNext:]), w.tail[:w.tailNext]...)
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.String()
	}
	return out
}

// traceLine is one line of the trace, formatted only when it is read: a
// run makes millions and reads them only when it fails.
type traceLine struct {
	at     time.Duration
	format string
	args   []any
}

func (l traceLine) String() string {
	return fmt.Sprintf("%12s ", l.at) + fmt.Sprintf(l.format, l.args...)
}

// tracef records one line of the trace in the tail (and the optional
// writer). The trace hash does not hash the lines: it hashes the bytes they
// describe (hashBytes), which is both cheaper and stricter.
func (w *World) tracef(format string, args ...any) {
	line := traceLine{at: w.now, format: format, args: args}
	if len(w.tail) < TraceTailLines {
		w.tail = append(w.tail, line)
	} else {
		w.tail[w.tailNext] = line
		w.tailNext = (w.tailNext + 1) % TraceTailLines
	}
	if w.opts.Trace != nil {
		fmt.Fprintln(w.opts.Trace, line.String())
	}
}

// note records a rare happening (a fault, a crash, a give-up): traced, and
// hashed as its formatted text.
func (w *World) note(format string, args ...any) {
	w.tracef(format, args...)
	w.hashBytes(8, []byte(fmt.Sprintf(format, args...)))
}

// hashBytes adds one happening to the trace hash: its kind, its virtual
// time and its bytes.
func (w *World) hashBytes(tag uint64, b []byte) {
	binary.BigEndian.PutUint64(w.scratch[:], tag)
	w.traceHash.Write(w.scratch[:])
	binary.BigEndian.PutUint64(w.scratch[:], uint64(w.now))
	w.traceHash.Write(w.scratch[:])
	binary.BigEndian.PutUint64(w.scratch[:], uint64(len(b)))
	w.traceHash.Write(w.scratch[:])
	w.traceHash.Write(b)
}

// Leader returns the node that leads in the highest term among live nodes,
// or 0 when none does.
func (w *World) Leader() uint64 {
	var best, bestTerm uint64
	for _, id := range w.ids {
		n := w.nodes[id]
		if !n.Up() {
			continue
		}
		if lead, term := n.core.Leader(); lead == id && term >= bestTerm {
			best, bestTerm = id, term
		}
	}
	return best
}

// StableLeader reports the leader that every live, unclogged node follows,
// or 0 if they do not agree.
func (w *World) StableLeader() uint64 {
	l := w.Leader()
	if l == 0 {
		return 0
	}
	for _, id := range w.ids {
		n := w.nodes[id]
		if !n.Up() || n.paused || n.left || w.net.cutOff(id) {
			continue
		}
		if lead, _ := n.core.Leader(); lead != l {
			return 0
		}
	}
	return l
}

// Registered reports whether the leader's state holds a record of every
// node that has not left: until then a workload may be refused for want of
// a node that offers its image.
func (w *World) Registered() bool {
	l := w.Leader()
	if l == 0 {
		return false
	}
	st := w.nodes[l].core.State()
	for _, id := range w.ids {
		if w.nodes[id].left {
			continue
		}
		if _, ok := st.Node(id); !ok {
			return false
		}
	}
	return true
}

// StableLeaderOr returns StableLeader, or fallback when there is none.
func (w *World) StableLeaderOr(fallback uint64) uint64 {
	if l := w.StableLeader(); l != 0 {
		return l
	}
	return fallback
}

// Converged reports whether every node is up, follows one leader and has
// applied the same index as the leader's commit index.
func (w *World) Converged() bool {
	l := w.StableLeader()
	if l == 0 {
		return false
	}
	commit := w.nodes[l].core.BasicStatus().GetCommit()
	for _, id := range w.ids {
		n := w.nodes[id]
		if n.left {
			continue
		}
		if !n.Up() || n.paused || n.core.State().AppliedIndex() != commit {
			return false
		}
	}
	return true
}

// event is one scheduled happening.
type event struct {
	at  time.Duration
	seq uint64
	run func()
}

// eventQueue orders events by time, then by the order they were scheduled.
type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	ev := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return ev
}

// request is the envelope of a client request on the simulated network.
type request struct {
	client uint64
	id     core.RequestID
	req    *apiv1.Request
}
