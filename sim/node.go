package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/store"
)

// epoch is the wall-clock reading at virtual time zero.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var deterministic = proto.MarshalOptions{Deterministic: true}

// errDiskFault is what an injected disk fault looks like to the driver.
var errDiskFault = errors.New("injected disk fault")

// Node is one simulated machine: a real core and a real store on a
// crashable in-memory filesystem, driven the way the production runtime
// drives them.
type Node struct {
	w   *World
	id  uint64
	cfg core.Config
	fs  *vfs.MemFS

	store *store.Store
	core  *core.Node
	// incarnation goes up at every crash and restart; events scheduled for
	// an older incarnation are void.
	incarnation uint64
	paused      bool
	// held are deliveries that reached the node while it was paused.
	held []func()

	// drift scales the node's tick interval; skew offsets its wall clock.
	drift float64
	skew  time.Duration

	// failSaves counts down to an injected disk fault: the save that brings
	// it to 0 fails. diskFaultRate fails each save with that probability.
	failSaves     int
	diskFaultRate float64

	routes  map[core.RequestID]route
	nextReq core.RequestID

	crashes, diskFaults int
	// snapshotsReceived counts MsgSnap messages delivered to the node.
	snapshotsReceived int
	// leaderless counts ticks, for the periodic removal check.
	leaderless int
	// hyper is the node's simulated hypervisor; it outlives crashes.
	hyper *hypervisor
	// left is set once the node learned it was removed from the cluster,
	// from its own log or from a peer that refused its messages; it stops
	// for good, as the runtime does.
	left bool
}

// Left reports whether the node was removed from the cluster and stopped.
func (n *Node) Left() bool { return n.left }

// removalCheckTicks is how often a node asks its peers whether it was
// removed, as the runtime's removal watch does (every 2 s of a 100 ms
// tick): a removed learner never campaigns and may keep believing in its
// old leader, so no peer would otherwise tell it.
const removalCheckTicks = 20

func (n *Node) askIfRemoved() {
	if n.core == nil {
		return
	}
	n.leaderless++ // ticks since the last check
	if n.leaderless%removalCheckTicks != 0 {
		return
	}
	for _, id := range n.w.ids {
		peer := n.w.nodes[id]
		if id == n.id || peer.core == nil || n.w.net.blocked(n.id, id) || n.w.net.blocked(id, n.id) {
			continue
		}
		if peer.core.State().Removed(n.id) {
			n.leave(fmt.Sprintf("node %d says so", id))
			return
		}
	}
}

// leave stops a removed node for good.
func (n *Node) leave(why string) {
	if n.core == nil || n.left {
		return
	}
	n.left = true
	n.closeStore()
	n.core = nil
	n.paused = false
	n.held = nil
	n.incarnation++
	clear(n.routes)
	n.w.note("node %d stops: removed from the cluster (%s)", n.id, why)
}

// route says where the answer to a request goes.
type route struct {
	client  uint64
	attempt uint64
}

func newNode(w *World, id uint64, peers []uint64) (*Node, error) {
	cfg := core.Config{
		ID:        id,
		Peers:     peers,
		ClusterID: fmt.Sprintf("sim-%d", w.seed),
		Address:   fmt.Sprintf("sim-node-%d:7000", id),
		Capacity:  &apiv1.Resources{Vcpus: 16, MemoryMib: 65536},
		Images:    []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:5e", MinMemoryMib: 64}},
	}
	cfg.Workloads = w.opts.Workloads
	cfg.TickInterval = w.opts.TickInterval
	if w.opts.Core != nil {
		w.opts.Core(&cfg)
	}
	n := &Node{w: w, id: id, cfg: cfg, fs: vfs.NewCrashableMem(), routes: map[core.RequestID]route{}}
	n.hyper = newHypervisor(n)
	if w.opts.ClockDrift {
		n.drift = (w.rng.Float64()*2 - 1) * MaxClockDrift
	}
	if w.opts.MaxClockSkew > 0 {
		n.skew = time.Duration(w.rng.Int64N(int64(2*w.opts.MaxClockSkew))) - w.opts.MaxClockSkew
	}
	return n, nil
}

// ID is the node's id.
func (n *Node) ID() uint64 { return n.id }

// Up reports whether the node is running (it may be paused).
func (n *Node) Up() bool { return n.core != nil }

// Paused reports whether the node is paused.
func (n *Node) Paused() bool { return n.paused }

// Core is the node's core while it is up, else nil. Read it; drive it only
// through the world.
func (n *Node) Core() *core.Node { return n.core }

// Crashes is how many times the node crashed (disk faults included).
func (n *Node) Crashes() int { return n.crashes }

// SnapshotsReceived is how many snapshots the leader sent the node that
// reached it.
func (n *Node) SnapshotsReceived() int { return n.snapshotsReceived }

// DiskFaults is how many injected disk faults the node met.
func (n *Node) DiskFaults() int { return n.diskFaults }

// Drift is the node's clock drift, a fraction within ±MaxClockDrift.
func (n *Node) Drift() float64 { return n.drift }

// boot opens the store and makes a core from it, as the runtime does.
func (n *Node) boot() error {
	st, loaded, err := store.Open(context.Background(), store.Options{FS: n.fs, Dir: "data"})
	if err != nil {
		return fmt.Errorf("sim: node %d: open store: %w", n.id, err)
	}
	n.cfg.Incarnation = n.w.rng.Uint64()
	c, err := core.New(n.cfg, core.Persisted{HardState: loaded.HardState, Snapshot: loaded.Snapshot, Entries: loaded.Entries})
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("sim: node %d: new core: %w", n.id, err)
	}
	n.store, n.core = st, c
	n.incarnation++
	n.w.note("node %d up (incarnation %d, %d entries loaded, snapshot %d)", n.id, n.incarnation, len(loaded.Entries), loaded.Snapshot.GetMetadata().GetIndex())
	if n.cfg.Workloads {
		c.VMsRecovered(n.hyper.recovered())
	}
	// The first tick comes at a random phase of the tick interval.
	n.scheduleTick(time.Duration(n.w.rng.Int64N(int64(n.w.opts.TickInterval))) + 1)
	n.drive()
	return nil
}

func (n *Node) closeStore() {
	if n.store != nil {
		_ = n.store.Close()
		n.store = nil
	}
}

func (n *Node) tickInterval() time.Duration {
	return time.Duration(float64(n.w.opts.TickInterval) * (1 + n.drift))
}

// clock is the node's wall clock: virtual time, drifted and skewed.
func (n *Node) clock() time.Time {
	return epoch.Add(time.Duration(float64(n.w.now)*(1+n.drift)) + n.skew)
}

func (n *Node) scheduleTick(after time.Duration) {
	inc := n.incarnation
	n.w.at(n.w.now+after, func() {
		if n.incarnation != inc || n.core == nil {
			return
		}
		n.scheduleTick(n.tickInterval())
		if n.paused {
			return
		}
		n.core.Tick(n.clock())
		n.drive()
		n.askIfRemoved()
	})
}

// deliver runs fn on the node now, or when it resumes if it is paused; it
// is dropped if the node is down or has restarted since inc.
func (n *Node) deliver(inc uint64, fn func()) {
	if n.core == nil || n.incarnation != inc {
		return
	}
	if n.paused {
		n.held = append(n.held, fn)
		return
	}
	fn()
	n.drive()
}

// step hands the node a peer's message.
func (n *Node) step(m *raftpb.Message) {
	if err := n.core.Step(m); err != nil {
		n.w.tracef("node %d: %v", n.id, err)
	}
}

// request hands the node a client's request.
func (n *Node) request(client, attempt uint64, req *apiv1.Request) {
	n.nextReq++
	n.routes[n.nextReq] = route{client: client, attempt: attempt}
	n.core.Request(n.nextReq, req)
}

// drive carries out the core's Readys: persist (one synced batch), send,
// answer, advance — the production order.
func (n *Node) drive() {
	for n.core != nil && n.core.HasReady() {
		rd := n.core.Ready()
		if err := n.persist(rd); err != nil {
			n.w.note("node %d: %v: stops", n.id, err)
			n.crash(0)
			return
		}
		for _, m := range rd.Messages {
			n.w.net.sendRaft(n, m)
		}
		if !rd.LeaseUntil.IsZero() {
			n.hyper.renew(rd.LeaseUntil)
		}
		n.hyper.carry(rd.VMActions)
		for _, r := range rd.Responses {
			rt, ok := n.routes[r.ID]
			if !ok {
				n.w.fail(fmt.Errorf("node %d answered request %d that it never got, or twice", n.id, r.ID))
				return
			}
			delete(n.routes, r.ID)
			n.w.net.sendResponse(n, rt, r.Response)
		}
		if err := n.core.Advance(); err != nil {
			n.w.fail(fmt.Errorf("node %d: advance: %w", n.id, err))
			return
		}
		n.w.observeApply(n, rd.CommittedEntries)
		if n.core != nil && n.core.Removed() {
			n.leave("its own log says so")
			return
		}
	}
	n.w.checkNode(n)
}

// persist saves one Ready as one synced batch, unless a disk fault is due.
func (n *Node) persist(rd core.Ready) error {
	b := store.Batch{
		HardState:  rd.HardState,
		ConfState:  rd.ConfState,
		Snapshot:   rd.Snapshot,
		ReplaceLog: rd.SnapshotReplacesLog,
		Entries:    rd.Entries,
		NoSync:     !rd.MustSync,
	}
	if b.HardState == nil && b.ConfState == nil && b.Snapshot == nil && len(b.Entries) == 0 {
		return nil
	}
	fault := false
	if n.failSaves > 0 {
		n.failSaves--
		fault = n.failSaves == 0
	}
	if !fault && n.diskFaultRate > 0 {
		fault = n.w.rng.Float64() < n.diskFaultRate
	}
	if fault {
		n.diskFaults++
		// A failed write leaves nothing; a failed sync may leave the batch
		// or not. Either way the node stops before anything leaves it.
		if n.w.rng.IntN(2) == 0 {
			_ = n.store.Save(context.Background(), b)
			n.w.note("node %d: disk fault: sync failed after the write", n.id)
		} else {
			n.w.note("node %d: disk fault: write failed", n.id)
		}
		return errDiskFault
	}
	if err := n.store.Save(context.Background(), b); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	n.w.observePersist(n, rd)
	return nil
}

// crash drops the node's volatile state. Its disk keeps what was synced and
// keepPct percent (in expectation) of what was not.
func (n *Node) crash(keepPct int) {
	if n.core == nil {
		return
	}
	pct := keepPct
	crashed := n.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(n.w.rng.Uint64(), n.w.rng.Uint64()))})
	n.closeStore()
	n.fs = crashed
	n.core = nil
	n.paused = false
	n.held = nil
	n.incarnation++
	n.crashes++
	clear(n.routes)
	n.w.note("node %d crashed (%d%% of unsynced data kept)", n.id, pct)
}
