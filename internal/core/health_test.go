package core

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// Health, fencing and placement, tick by tick. These tests need the core's
// insides (its heartbeat table, its lease, a placement pass on its own), so
// they live in package core and cannot use the simulator (which imports
// core); they drive the nodes with hNet below: a lock-step clock, and a
// network that delivers every message at once unless it is cut.

// hEpoch is the harness clock at tick 0; every node reads hTime(tick).
var hEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const hInterval = DefaultTickInterval

func hTime(tick uint64) time.Time { return hEpoch.Add(time.Duration(tick) * hInterval) }

// hEvent is an effect a node handed its driver: a VM action or a lease.
type hEvent struct {
	seq, tick, node uint64
	act             *VMAction
	lease           time.Time
}

// hApplied is a command a node applied.
type hApplied struct {
	index uint64
	cmd   *apiv1.Command
}

// hNet drives a few nodes in lock step.
type hNet struct {
	t     *testing.T
	ids   []uint64
	nodes map[uint64]*Node
	// tick is the world's tick: every node has ticked this many times.
	tick  uint64
	queue []*raftpb.Message
	// cut nodes send and receive nothing; drop, when set, drops more.
	cut  map[uint64]bool
	drop func(m *raftpb.Message) bool
	// sent is every message a node handed its driver, cut or not.
	sent    []*raftpb.Message
	events  []hEvent
	seq     uint64
	applied map[uint64][]hApplied
	// proposed are the commands each node appended to its log.
	proposed  map[uint64][]*apiv1.Command
	responses map[RequestID]*apiv1.Response
	reqSeq    RequestID
	// auto: the driver runs what it is asked to start (reporting it
	// running) and stops what it is asked to stop (reporting it stopped).
	auto    bool
	reports map[uint64][]VMReport
}

// hConfig is node id's config: 16 vCPUs, labelled node=<id>; node 3 alone
// has the "gpu" feature.
func hConfig(id uint64, peers []uint64) Config {
	features := []string{"kvm"}
	if id == 3 {
		features = []string{"gpu", "kvm"}
	}
	return Config{
		ID:          id,
		Peers:       peers,
		ClusterID:   "hnet",
		Address:     fmt.Sprintf("node-%d:7000", id),
		Capacity:    &apiv1.Resources{Vcpus: 16, MemoryMib: 65536, Features: features},
		Labels:      map[string]string{"node": strconv.FormatUint(id, 10)},
		Images:      []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:5e", MinMemoryMib: 64}},
		Workloads:   true,
		Incarnation: 1000 + id,
	}
}

// newHNet starts a brand-new cluster of n nodes (edit changes each
// config) and has node 1 win the first election.
func newHNet(t *testing.T, n int, edit func(*Config)) *hNet {
	t.Helper()
	h := &hNet{
		t: t, nodes: map[uint64]*Node{}, cut: map[uint64]bool{},
		applied: map[uint64][]hApplied{}, proposed: map[uint64][]*apiv1.Command{},
		responses: map[RequestID]*apiv1.Response{}, reports: map[uint64][]VMReport{}, auto: true,
	}
	var peers []uint64
	for i := 1; i <= n; i++ {
		peers = append(peers, uint64(i))
	}
	for _, id := range peers {
		cfg := hConfig(id, peers)
		if edit != nil {
			edit(&cfg)
		}
		node, err := New(cfg, Persisted{})
		if err != nil {
			t.Fatalf("New(%d): %v", id, err)
		}
		h.ids = append(h.ids, id)
		h.nodes[id] = node
		node.VMsRecovered(nil)
	}
	h.flush()
	if err := h.nodes[1].Campaign(); err != nil {
		t.Fatalf("campaign: %v", err)
	}
	h.flush()
	if !h.nodes[1].isLeader {
		t.Fatalf("node 1 did not win the first election")
	}
	return h
}

// send queues m unless the network drops it.
func (h *hNet) send(m *raftpb.Message) {
	h.sent = append(h.sent, m)
	if h.cut[m.GetFrom()] || h.cut[m.GetTo()] || (h.drop != nil && h.drop(m)) {
		return
	}
	h.queue = append(h.queue, m)
}

// drive carries out node id's Readys, as the runtime does, and hands it
// the reports of its auto driver.
func (h *hNet) drive(id uint64) {
	h.t.Helper()
	n := h.nodes[id]
	for i := 0; n.HasReady() || len(h.reports[id]) > 0; i++ {
		if i > 100000 {
			h.t.Fatalf("node %d never runs out of Readys", id)
		}
		if !n.HasReady() {
			r := h.reports[id][0]
			h.reports[id] = h.reports[id][1:]
			n.ReportVM(r)
			continue
		}
		rd := n.Ready()
		for _, e := range rd.Entries {
			if cmd := decodeCmd(e); cmd != nil {
				h.proposed[id] = append(h.proposed[id], cmd)
			}
		}
		for _, m := range rd.Messages {
			h.send(m)
		}
		if !rd.LeaseUntil.IsZero() {
			h.seq++
			h.events = append(h.events, hEvent{seq: h.seq, tick: h.tick, node: id, lease: rd.LeaseUntil})
		}
		for _, a := range rd.VMActions {
			h.seq++
			h.events = append(h.events, hEvent{seq: h.seq, tick: h.tick, node: id, act: &a})
			if !h.auto {
				continue
			}
			switch a.Kind {
			case StartVM:
				h.reports[id] = append(h.reports[id], VMReport{Name: a.Name, Generation: a.Generation, State: apiv1.VmState_VM_STATE_RUNNING})
			case StopVM:
				h.reports[id] = append(h.reports[id], VMReport{Name: a.Name, Generation: a.Generation, State: apiv1.VmState_VM_STATE_STOPPED, Reason: "stopped"})
			}
		}
		for _, r := range rd.Responses {
			h.responses[r.ID] = r.Response
		}
		for _, e := range rd.CommittedEntries {
			if cmd := decodeCmd(e); cmd != nil {
				h.applied[id] = append(h.applied[id], hApplied{index: e.GetIndex(), cmd: cmd})
			}
		}
		if err := n.Advance(); err != nil {
			h.t.Fatalf("node %d: advance: %v", id, err)
		}
	}
}

func decodeCmd(e *raftpb.Entry) *apiv1.Command {
	if e.GetType() != raftpb.EntryType_EntryNormal || len(e.GetData()) == 0 {
		return nil
	}
	cmd := &apiv1.Command{}
	if proto.Unmarshal(e.GetData(), cmd) != nil {
		return nil
	}
	return cmd
}

// flush drives every node and delivers every message until all is quiet.
func (h *hNet) flush() {
	h.t.Helper()
	for _, id := range h.ids {
		h.drive(id)
	}
	for i := 0; len(h.queue) > 0; i++ {
		if i > 1000000 {
			h.t.Fatalf("the network never quiets down")
		}
		m := h.queue[0]
		h.queue = h.queue[1:]
		if h.cut[m.GetFrom()] || h.cut[m.GetTo()] {
			continue
		}
		if err := h.nodes[m.GetTo()].Step(m); err != nil {
			h.t.Logf("node %d: %v", m.GetTo(), err)
		}
		h.drive(m.GetTo())
	}
}

// step advances the world one tick.
func (h *hNet) step() {
	h.t.Helper()
	h.tick++
	for _, id := range h.ids {
		h.nodes[id].Tick(hTime(h.tick))
		h.drive(id)
	}
	h.flush()
}

// runUntil steps until cond holds, at most limit ticks, and returns how
// many it took.
func (h *hNet) runUntil(what string, limit int, cond func() bool) int {
	h.t.Helper()
	for i := 0; ; i++ {
		if cond() {
			return i
		}
		if i == limit {
			h.t.Fatalf("tick %d: no %s within %d ticks", h.tick, what, limit)
		}
		h.step()
	}
}

// settle waits until every node knows the leader, every node's record
// (with its lease) is in every node's state, and every node may start VMs.
func (h *hNet) settle() {
	h.t.Helper()
	h.runUntil("settled cluster", 200, func() bool {
		for _, id := range h.ids {
			n := h.nodes[id]
			if n.lead == 0 || !n.canStart() || !n.agentSettled {
				return false
			}
			for _, other := range h.ids {
				if rec, ok := n.st.Node(other); !ok || rec.GetLeaseMillis() == 0 {
					return false
				}
			}
		}
		return true
	})
}

// request hands node id a request and waits for its answer.
func (h *hNet) request(id uint64, req *apiv1.Request) *apiv1.Response {
	h.t.Helper()
	h.reqSeq++
	rid := h.reqSeq
	h.nodes[id].Request(rid, req)
	h.flush()
	h.runUntil(fmt.Sprintf("answer to request %d", rid), 100, func() bool { _, ok := h.responses[rid]; return ok })
	return h.responses[rid]
}

func (h *hNet) mustOK(id uint64, req *apiv1.Request) *apiv1.Response {
	h.t.Helper()
	resp := h.request(id, req)
	if resp.GetError() != nil {
		h.t.Fatalf("request %v on node %d: %v", req, id, resp.GetError())
	}
	return resp
}

// nodeRec is node of's record in node on's applied state.
func (h *hNet) nodeRec(on, of uint64) *apiv1.Node {
	h.t.Helper()
	rec, ok := h.nodes[on].st.Node(of)
	if !ok {
		h.t.Fatalf("node %d's state has no node %d", on, of)
	}
	return rec
}

// actions are node id's VM actions of kind since event seq.
func (h *hNet) actions(id uint64, kind VMActionKind, since uint64) []hEvent {
	var out []hEvent
	for _, e := range h.events {
		if e.node == id && e.act != nil && e.act.Kind == kind && e.seq > since {
			out = append(out, e)
		}
	}
	return out
}

// leases are the leases node id handed its driver.
func (h *hNet) leases(id uint64) []hEvent {
	var out []hEvent
	for _, e := range h.events {
		if e.node == id && !e.lease.IsZero() {
			out = append(out, e)
		}
	}
	return out
}

// statusCmds are the SetNodeStatus commands node on applied about node of
// at indexes above after.
func (h *hNet) statusCmds(on, of, after uint64) []*apiv1.SetNodeStatusCommand {
	var out []*apiv1.SetNodeStatusCommand
	for _, a := range h.applied[on] {
		if s := a.cmd.GetSetNodeStatus(); s != nil && s.GetId() == of && a.index > after {
			out = append(out, s)
		}
	}
	return out
}

func createVmReq(key, name string, constraints map[string]string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		ClientRequestId: key, Name: name, Start: true,
		Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128, Constraints: constraints},
	}}}
}

const (
	nsReady        = apiv1.NodeStatus_NODE_STATUS_READY
	nsDisconnected = apiv1.NodeStatus_NODE_STATUS_DISCONNECTED
	nsDown         = apiv1.NodeStatus_NODE_STATUS_DOWN
)

// ---- 1. config ----------------------------------------------------------------

func TestConfigHealthValidation(t *testing.T) {
	base := func(edit func(c *Config)) Config {
		c := Config{ID: 1}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	tests := []struct {
		name    string
		cfg     Config
		errHas  string // "" means valid
		checkOK func(t *testing.T, c Config)
	}{
		{name: "defaults", cfg: base(nil), checkOK: func(t *testing.T, c Config) {
			if c.LeaseTicks != DefaultLeaseTicks || c.DisconnectTicks != DefaultDisconnectTicks || c.DownTicks != DefaultDownTicks ||
				c.TickInterval != DefaultTickInterval || c.ElectionTicks != DefaultElectionTicks {
				t.Fatalf("defaults: lease %d disconnect %d down %d tick %s election %d", c.LeaseTicks, c.DisconnectTicks, c.DownTicks, c.TickInterval, c.ElectionTicks)
			}
			if c.DownTicks < c.LeaseTicks+FenceMarginTicks(c.LeaseTicks) || c.DisconnectTicks >= c.DownTicks || c.LeaseTicks < 3*c.ElectionTicks {
				t.Fatalf("the defaults break their own rules: %+v", c)
			}
		}},
		{name: "a long lease raises the default down timeout", cfg: base(func(c *Config) { c.LeaseTicks = 100 }), checkOK: func(t *testing.T, c Config) {
			if want := 100 + FenceMarginTicks(100); c.DownTicks != want {
				t.Fatalf("DownTicks = %d, want %d", c.DownTicks, want)
			}
		}},
		{name: "down exactly lease + margin", cfg: base(func(c *Config) { c.DownTicks = 50 + FenceMarginTicks(50) })},
		{name: "down one below lease + margin", cfg: base(func(c *Config) { c.DownTicks = 50 + FenceMarginTicks(50) - 1 }), errHas: "DownTicks"},
		{name: "down equal to the lease", cfg: base(func(c *Config) { c.DownTicks = 50 }), errHas: "DownTicks"},
		{name: "disconnect just below down", cfg: base(func(c *Config) { c.DisconnectTicks = 59 })},
		{name: "disconnect equal to down", cfg: base(func(c *Config) { c.DisconnectTicks = 60 }), errHas: "DisconnectTicks"},
		{name: "disconnect above down", cfg: base(func(c *Config) { c.DisconnectTicks = 61 }), errHas: "DisconnectTicks"},
		{name: "lease exactly 3 elections", cfg: base(func(c *Config) { c.ElectionTicks = 20; c.LeaseTicks = 60 })},
		{name: "lease below 3 elections", cfg: base(func(c *Config) { c.ElectionTicks = 20; c.LeaseTicks = 59 }), errHas: "3 × ElectionTicks"},
		{name: "lease below 3 default elections", cfg: base(func(c *Config) { c.LeaseTicks = 29; c.DownTicks = 40 }), errHas: "3 × ElectionTicks"},
		{name: "negative lease", cfg: base(func(c *Config) { c.LeaseTicks = -1 }), errHas: "negative"},
		{name: "negative disconnect", cfg: base(func(c *Config) { c.DisconnectTicks = -1 }), errHas: "negative"},
		{name: "negative tick interval", cfg: base(func(c *Config) { c.TickInterval = -time.Millisecond }), errHas: "negative"},
		{name: "negative down", cfg: base(func(c *Config) { c.DownTicks = -1 }), errHas: "DownTicks"},
		{name: "lease beyond maxTicks", cfg: base(func(c *Config) { c.LeaseTicks = maxTicks + 1; c.TickInterval = time.Microsecond }), errHas: "at most"},
		{name: "down beyond maxTicks", cfg: base(func(c *Config) { c.DownTicks = maxTicks + 1 }), errHas: "at most"},
		{name: "lease at the longest allowed", cfg: base(func(c *Config) { c.LeaseTicks = state.MaxLeaseMillis / 100 })},
		{name: "lease a tick longer than allowed", cfg: base(func(c *Config) { c.LeaseTicks = state.MaxLeaseMillis/100 + 1 }), errHas: "longer than"},
		{name: "tick interval too long for the lease", cfg: base(func(c *Config) { c.TickInterval = time.Hour }), errHas: "longer than"},
		{name: "huge values", cfg: base(func(c *Config) {
			c.LeaseTicks, c.DownTicks, c.DisconnectTicks = math.MaxInt32, math.MaxInt32, math.MaxInt32-1
		}), errHas: "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.withDefaults()
			if tc.errHas == "" {
				if err != nil {
					t.Fatalf("withDefaults() = %v, want valid", err)
				}
				if tc.checkOK != nil {
					tc.checkOK(t, got)
				}
				if _, err := New(tc.cfg, Persisted{}); err != nil {
					t.Fatalf("New() = %v, want a node", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("withDefaults() = %v, want an error about %q", err, tc.errHas)
			}
			if _, err := New(tc.cfg, Persisted{}); err == nil {
				t.Fatalf("New() took a config withDefaults refuses")
			}
		})
	}
}

// TestConfigRefusesTickIntervalWhoseLeaseOverflows: the lease's length is
// LeaseTicks × TickInterval in a time.Duration, which wraps past 292
// years; a wrapped product must not pass for a short lease.
func TestConfigRefusesTickIntervalWhoseLeaseOverflows(t *testing.T) {
	// 32 × 2^62 ns = 2^67 ns, which wraps to 0.
	c := Config{ID: 1, LeaseTicks: 32, TickInterval: time.Duration(1 << 62)}
	if _, err := c.withDefaults(); err == nil {
		t.Fatalf("withDefaults() took a %s tick (a lease of 32 of them wraps to %s)", c.TickInterval, time.Duration(32)*c.TickInterval)
	}
}

func TestFenceMarginTicks(t *testing.T) {
	if got := FenceMarginTicks(50); got != 8 {
		t.Fatalf("FenceMarginTicks(50) = %d, want 8 (ceil(50 × 0.1/0.95) + 2)", got)
	}
	if got := FenceMarginTicks(0); got != 2 {
		t.Fatalf("FenceMarginTicks(0) = %d, want 2", got)
	}
	if MaxClockDrift != 0.05 {
		t.Fatalf("MaxClockDrift = %v", MaxClockDrift)
	}
	prev := FenceMarginTicks(0)
	for l := 1; l <= maxTicks; l++ {
		m := FenceMarginTicks(l)
		if m < prev {
			t.Fatalf("FenceMarginTicks(%d) = %d < FenceMarginTicks(%d) = %d", l, m, l-1, prev)
		}
		prev = m
		// The margin covers the worst drift: a lease of l ticks on a clock
		// 5% fast is over, in the leader's ticks 5% slow, within l + m - 2
		// ticks (and each side may be a tick off): (l+m-2)(1-d) >= l(1+d),
		// with d = 1/20, in integers.
		if (l+m-2)*19 < l*21 {
			t.Fatalf("FenceMarginTicks(%d) = %d does not cover the drift", l, m)
		}
	}
}

// ---- 2. leader health -----------------------------------------------------------

func TestLeaderMarksSilentNodeDisconnectedThenDownThenReady(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	leader := h.nodes[1]
	applied := leader.st.AppliedIndex()

	h.cut[3] = true
	last := leader.heardAt[3]
	if last != h.tick {
		t.Fatalf("leader last heard from node 3 at tick %d, want this tick %d", last, h.tick)
	}
	disconnectAt := last + uint64(leader.cfg.DisconnectTicks)
	downAt := last + leader.downTicks(h.nodeRec(1, 3))
	if downAt != last+60 {
		t.Fatalf("down timeout of node 3 = %d ticks, want the configured 60", downAt-last)
	}

	for h.tick < downAt+2 {
		h.step()
		for _, on := range []uint64{1, 2} {
			rec := h.nodeRec(on, 3)
			want := nsReady
			switch {
			case h.tick >= downAt:
				want = nsDown
			case h.tick >= disconnectAt:
				want = nsDisconnected
			}
			if rec.GetStatus() != want {
				t.Fatalf("tick %d (%d after the last heartbeat): node %d sees node 3 %v (%q), want %v",
					h.tick, h.tick-last, on, rec.GetStatus(), rec.GetStatusReason(), want)
			}
			switch want {
			case nsDisconnected:
				if rec.GetStatusReason() != "no heartbeat for 2.0s" {
					t.Fatalf("disconnected reason = %q", rec.GetStatusReason())
				}
			case nsDown:
				if rec.GetStatusReason() != "no heartbeat for 6.0s; its fencing lease has run out" {
					t.Fatalf("down reason = %q", rec.GetStatusReason())
				}
			}
		}
		// Nodes 1 and 2, which talk, stay ready.
		for _, id := range []uint64{1, 2} {
			if rec := h.nodeRec(1, id); rec.GetStatus() != nsReady {
				t.Fatalf("tick %d: node %d is %v", h.tick, id, rec.GetStatus())
			}
		}
	}
	// One verdict each, no repeats.
	var seen []apiv1.NodeStatus
	for _, s := range h.statusCmds(1, 3, applied) {
		seen = append(seen, s.GetStatus())
	}
	if len(seen) != 2 || seen[0] != nsDisconnected || seen[1] != nsDown {
		t.Fatalf("verdicts on node 3 = %v, want [disconnected down]", seen)
	}

	// Healed, it is heard from and ready again.
	delete(h.cut, 3)
	healed := h.tick
	h.runUntil("node 3 ready again", 5, func() bool { return h.nodeRec(1, 3).GetStatus() == nsReady })
	if rec := h.nodeRec(1, 3); rec.GetStatusReason() != "heard from again" || h.tick > healed+2 {
		t.Fatalf("node 3 ready at tick %d (healed at %d) with reason %q", h.tick, healed, rec.GetStatusReason())
	}
}

// TestNewLeaderDoesNotRaiseTheDeadUnheard: a node declared down stays down
// under a new leader until that leader hears from it; a healthy follower
// is not marked disconnected by the change.
func TestNewLeaderDoesNotRaiseTheDeadUnheard(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	h.cut[3] = true
	h.runUntil("node 3 down", 100, func() bool { return h.nodeRec(1, 3).GetStatus() == nsDown })

	h.nodes[1].rn.TransferLeader(2)
	h.flush()
	h.runUntil("node 2 leading", 30, func() bool { return h.nodes[2].isLeader && h.nodes[1].lead == 2 })
	elected := h.nodes[2].leaderSince
	applied := h.nodes[2].st.AppliedIndex()
	if _, ok := h.nodes[2].heardAt[3]; ok {
		t.Fatalf("new leader claims to have heard from cut-off node 3")
	}

	// Longer than any timeout: node 3 stays down, node 1 ready, and no
	// verdict is proposed about either.
	for h.tick < elected+2*uint64(h.nodes[2].cfg.DownTicks) {
		h.step()
		if rec := h.nodeRec(2, 3); rec.GetStatus() != nsDown {
			t.Fatalf("tick %d (%d after the election): new leader sees node 3 %v (%q), want still down",
				h.tick, h.tick-elected, rec.GetStatus(), rec.GetStatusReason())
		}
		if rec := h.nodeRec(2, 1); rec.GetStatus() != nsReady {
			t.Fatalf("tick %d (%d after the election): new leader sees healthy node 1 %v (%q)",
				h.tick, h.tick-elected, rec.GetStatus(), rec.GetStatusReason())
		}
	}
	for _, id := range []uint64{1, 3} {
		if cmds := h.statusCmds(2, id, applied); len(cmds) != 0 {
			t.Fatalf("new leader proposed verdicts on node %d: %v", id, cmds)
		}
	}

	// Heard from, node 3 is ready again.
	delete(h.cut, 3)
	h.runUntil("node 3 ready under the new leader", 5, func() bool { return h.nodeRec(2, 3).GetStatus() == nsReady })
}

// TestNewLeaderCountsSilenceFromItsElection: a node that went silent
// before the election is marked disconnected and down by the new leader's
// timers, counted from the election, not from its last heartbeat to the
// old leader.
func TestNewLeaderCountsSilenceFromItsElection(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	h.cut[3] = true
	silentSince := h.tick
	for range 10 {
		h.step()
	}
	if rec := h.nodeRec(1, 3); rec.GetStatus() != nsReady {
		t.Fatalf("node 3 is %v after 10 silent ticks", rec.GetStatus())
	}

	h.nodes[1].rn.TransferLeader(2)
	h.flush()
	h.runUntil("node 2 leading", 30, func() bool { return h.nodes[2].isLeader && h.nodes[1].lead == 2 })
	elected := h.nodes[2].leaderSince
	if elected < silentSince+10 {
		t.Fatalf("elected at tick %d, before node 3 had been silent 10 ticks (since %d)", elected, silentSince)
	}
	disconnectAt := elected + uint64(h.nodes[2].cfg.DisconnectTicks)
	downAt := elected + uint64(h.nodes[2].cfg.DownTicks)

	for h.tick < downAt+2 {
		h.step()
		want := nsReady
		switch {
		case h.tick >= downAt:
			want = nsDown
		case h.tick >= disconnectAt:
			want = nsDisconnected
		}
		if rec := h.nodeRec(2, 3); rec.GetStatus() != want {
			t.Fatalf("tick %d (%d after the election, %d after node 3 went silent): node 3 is %v, want %v",
				h.tick, h.tick-elected, h.tick-silentSince, rec.GetStatus(), want)
		}
		if rec := h.nodeRec(2, 1); rec.GetStatus() != nsReady {
			t.Fatalf("tick %d: healthy node 1 is %v (%q)", h.tick, rec.GetStatus(), rec.GetStatusReason())
		}
	}
}

// ---- 3. the fencing lease ---------------------------------------------------------

func TestLeaseIsGrantedByReadIndexRoundsOnceRegistered(t *testing.T) {
	h := newHNet(t, 3, nil)
	for _, id := range h.ids {
		if len(h.leases(id)) != 0 || h.nodes[id].leaseHeld {
			t.Fatalf("node %d holds a lease before any ReadIndex round", id)
		}
	}
	h.settle()
	for _, id := range h.ids {
		n := h.nodes[id]
		ls := h.leases(id)
		if len(ls) == 0 {
			t.Fatalf("node %d holds its lease but gave its driver none", id)
		}
		// Every lease handed out was asked for after the node's record
		// (with its lease) was applied: before, the node holds none.
		lease := uint64(n.cfg.LeaseTicks)
		last := ls[len(ls)-1]
		asked := n.leaseUntil - lease
		if asked > h.tick || asked+lease <= h.tick {
			t.Fatalf("node %d's lease runs to tick %d: asked at %d, now %d", id, n.leaseUntil, asked, h.tick)
		}
		if !last.lease.Equal(hTime(n.leaseUntil)) {
			t.Fatalf("node %d's last lease for its driver = %s, want %s (%d ticks after the ask at tick %d)",
				id, last.lease, hTime(n.leaseUntil), lease, asked)
		}
	}
	// Leases keep being renewed, every LeaseTicks/5.
	before := len(h.leases(2))
	for range 25 {
		h.step()
	}
	if got := len(h.leases(2)) - before; got < 2 || got > 3 {
		t.Fatalf("node 2 renewed its lease %d times in 25 ticks, want every 10", got)
	}
}

// TestNoLeaseNoStart: a node whose lease requests go unanswered starts
// nothing placed on it; once answered it starts it.
func TestNoLeaseNoStart(t *testing.T) {
	h := newHNet(t, 3, nil)
	blocked := true
	h.drop = func(m *raftpb.Message) bool {
		return blocked && ((m.GetFrom() == 2 && m.GetType() == raftpb.MessageType_MsgReadIndex) ||
			(m.GetTo() == 2 && m.GetType() == raftpb.MessageType_MsgReadIndexResp))
	}
	h.runUntil("nodes 1 and 3 leased, node 2 registered and settled", 200, func() bool {
		_, ok := h.nodes[1].st.Node(2)
		return ok && h.nodes[1].canStart() && h.nodes[3].canStart() && h.nodes[2].agentSettled
	})
	h.mustOK(1, createVmReq("c1", "web", map[string]string{"node": "2"}))
	h.runUntil("web placed on node 2", 30, func() bool {
		v, ok := h.nodes[2].st.Vm("web")
		return ok && v.GetNodeId() == 2 && v.GetState() == apiv1.VmState_VM_STATE_SCHEDULED
	})
	for range 3 * h.nodes[2].cfg.LeaseTicks {
		h.step()
	}
	n2 := h.nodes[2]
	if n2.leaseHeld || n2.canStart() || len(h.leases(2)) != 0 {
		t.Fatalf("node 2 holds a lease (held %v, until %d) with its requests dropped", n2.leaseHeld, n2.leaseUntil)
	}
	if starts := h.actions(2, StartVM, 0); len(starts) != 0 {
		t.Fatalf("node 2 started %v without a lease", starts[0].act)
	}
	if v, _ := h.nodes[1].st.Vm("web"); v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED {
		t.Fatalf("web is %v", v.GetState())
	}

	blocked = false
	h.runUntil("web running on node 2", 30, func() bool {
		v, _ := h.nodes[1].st.Vm("web")
		return v.GetState() == apiv1.VmState_VM_STATE_RUNNING
	})
	leases, starts := h.leases(2), h.actions(2, StartVM, 0)
	if len(leases) == 0 || len(starts) != 1 || starts[0].act.Name != "web" || starts[0].seq < leases[0].seq {
		t.Fatalf("node 2: leases %v, starts %v; want web started once, after the first lease", leases, starts)
	}
}

// TestCutOffNodeFencesItself: a node cut off from the quorum stops its VMs
// and its tasks' VMs when its lease lapses, not before, starts nothing,
// and reports the ends as fenced: the VM failed, the task's attempt lost
// (and tried again).
func TestCutOffNodeFencesItself(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	h.mustOK(1, createVmReq("c1", "web", map[string]string{"node": "3"}))
	resp := h.mustOK(1, &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{
		ClientRequestId: "c2",
		Spec:            &apiv1.TaskSpec{Command: "sleep", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64, Features: []string{"gpu"}}},
	}}})
	taskID := resp.GetSubmitTask().GetTask().GetId()
	taskVM := TaskVMName(taskID)
	h.runUntil("web and the task running on node 3", 50, func() bool {
		v, _ := h.nodes[1].st.Vm("web")
		tk, _ := h.nodes[1].st.Task(taskID)
		return v.GetState() == apiv1.VmState_VM_STATE_RUNNING && v.GetNodeId() == 3 &&
			tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING && tk.GetNodeId() == 3
	})
	webGen := func() uint64 { v, _ := h.nodes[1].st.Vm("web"); return v.GetGeneration() }()

	n3 := h.nodes[3]
	h.cut[3] = true
	cutAt, mark := h.tick, h.seq
	lu := n3.leaseUntil
	if lu <= cutAt || lu > cutAt+uint64(n3.cfg.LeaseTicks) {
		t.Fatalf("node 3's lease runs to tick %d, cut at %d", lu, cutAt)
	}
	for h.tick < lu-1 {
		h.step()
	}
	if !n3.canStart() || n3.fenced() || len(h.actions(3, StopVM, mark)) != 0 {
		t.Fatalf("tick %d, lease to %d: node 3 fenced %v, stops %v", h.tick, lu, n3.fenced(), h.actions(3, StopVM, mark))
	}
	h.step() // the lease's last tick is over
	if !n3.fenced() {
		t.Fatalf("tick %d: node 3 not fenced, its lease ran to %d", h.tick, lu)
	}
	stops := h.actions(3, StopVM, mark)
	if len(stops) != 2 || stops[0].act.Name != taskVM || stops[1].act.Name != "web" || stops[1].act.Generation != webGen ||
		stops[0].tick != lu || stops[1].tick != lu {
		t.Fatalf("node 3 stopped %v at tick %d, want %s and web at tick %d", stops, h.tick, taskVM, lu)
	}
	for _, name := range []string{"web", taskVM} {
		l := n3.local[name]
		if l == nil || l.observed != apiv1.VmState_VM_STATE_FAILED || !strings.Contains(l.reason, "fenced") {
			t.Fatalf("node 3's record of %s after its stop: %+v, want failed, fenced", name, l)
		}
	}
	h.step()
	h.step()

	// Healed before the leader declares it down: its reports go through.
	if h.tick >= cutAt+uint64(h.nodes[1].cfg.DownTicks) {
		t.Fatalf("too late to heal before node 3 is down")
	}
	delete(h.cut, 3)
	var vmRep *apiv1.ReportVmCommand
	var taskRep *apiv1.ReportTaskCommand
	h.runUntil("node 3's reports applied", 30, func() bool {
		for _, a := range h.applied[1] {
			if r := a.cmd.GetReportVm(); r != nil && r.GetName() == "web" && r.GetNodeId() == 3 && r.GetState() == apiv1.VmState_VM_STATE_FAILED {
				vmRep = r
			}
			if r := a.cmd.GetReportTask(); r != nil && r.GetId() == taskID && r.GetStatus() != apiv1.TaskStatus_TASK_STATUS_RUNNING {
				taskRep = r
			}
		}
		return vmRep != nil && taskRep != nil
	})
	if vmRep.GetGeneration() != webGen || !strings.Contains(vmRep.GetReason(), "fenced") {
		t.Fatalf("web's report = %v, want failed at generation %d, fenced", vmRep, webGen)
	}
	if taskRep.GetStatus() != apiv1.TaskStatus_TASK_STATUS_LOST || taskRep.GetNodeId() != 3 || taskRep.GetAttempt() != 1 ||
		!strings.Contains(taskRep.GetResult().GetError(), "fenced") || taskRep.GetResult().GetFinishedUnixNano() == 0 {
		t.Fatalf("task's report = %v, want lost, attempt 1 on node 3, fenced, with its end", taskRep)
	}
	if v, _ := h.nodes[1].st.Vm("web"); v.GetState() != apiv1.VmState_VM_STATE_FAILED || !strings.Contains(v.GetReason(), "fenced") {
		t.Fatalf("web = %v (%q), want failed, fenced", v.GetState(), v.GetReason())
	}
	h.runUntil("node 3 ready again", 5, func() bool { return h.nodeRec(1, 3).GetStatus() == nsReady })
	var verdicts []apiv1.NodeStatus
	for _, s := range h.statusCmds(1, 3, 0) {
		verdicts = append(verdicts, s.GetStatus())
	}
	if len(verdicts) != 2 || verdicts[0] != nsDisconnected || verdicts[1] != nsReady {
		t.Fatalf("verdicts on node 3: %v; want it disconnected and ready again, never down", verdicts)
	}

	// The lost attempt is tried again, on the only node with a GPU, which
	// starts it once it holds a lease again.
	h.runUntil("the task's second attempt running", 50, func() bool {
		tk, _ := h.nodes[1].st.Task(taskID)
		return tk.GetAttempt() == 2 && tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING
	})
	starts := h.actions(3, StartVM, mark)
	if len(starts) != 1 || starts[0].act.Name != taskVM || starts[0].act.Generation != 2 {
		t.Fatalf("node 3 started %v since it was cut off, want only the task's second attempt", starts)
	}
	var fencedUntil uint64
	for _, e := range h.events {
		if e.node == 3 && !e.lease.IsZero() && e.seq > mark {
			fencedUntil = e.seq
			break
		}
	}
	if fencedUntil == 0 || starts[0].seq < fencedUntil {
		t.Fatalf("node 3 started the task (event %d) before it held a lease again (event %d)", starts[0].seq, fencedUntil)
	}
}

// ---- 4. the lease a node may hold --------------------------------------------------

func TestEffectiveLeaseIsTheRegisteredOne(t *testing.T) {
	// A node that never registers itself (no capacity): the test registers
	// it, with the lease it chooses.
	h := newHNet(t, 1, func(c *Config) { c.Capacity = nil })
	n := h.nodes[1]
	for range 30 {
		h.step()
	}
	if n.leaseAskedAt == 0 {
		t.Fatalf("the node never asked for its lease")
	}
	if got := n.effectiveLeaseTicks(); got != 0 || n.leaseHeld || n.canStart() || len(h.leases(1)) != 0 {
		t.Fatalf("unregistered node: effective lease %d, held %v, leases %v; want none", got, n.leaseHeld, h.leases(1))
	}

	register := func(leaseMillis uint32) {
		t.Helper()
		err := n.propose(&apiv1.Command{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
			Id: 1, Address: "node-1:7000", Role: apiv1.NodeRole_NODE_ROLE_VOTER,
			Capacity: &apiv1.Resources{Vcpus: 4, MemoryMib: 4096}, LeaseMillis: leaseMillis,
		}}})
		if err != nil {
			t.Fatalf("propose: %v", err)
		}
		h.flush()
		if rec, ok := n.st.Node(1); !ok || rec.GetLeaseMillis() != leaseMillis {
			t.Fatalf("registration with a lease of %d ms not applied: %v", leaseMillis, rec)
		}
	}
	for _, tc := range []struct {
		millis uint32
		want   uint64
	}{
		{3000, 30}, // shorter than the configured 50 ticks: the registered one
		{3050, 30}, // whole ticks only
		{8000, 50}, // longer: the configured one
		{5000, 50},
		{99, 0}, // less than a tick
	} {
		register(tc.millis)
		if got := n.effectiveLeaseTicks(); got != tc.want {
			t.Fatalf("registered %d ms: effective lease %d ticks, want %d", tc.millis, got, tc.want)
		}
		if tc.want == 0 {
			continue
		}
		before := len(h.leases(1))
		h.runUntil("a lease renewed", 20, func() bool { return len(h.leases(1)) > before })
		asked := n.leaseAskedAt
		last := h.leases(1)[len(h.leases(1))-1]
		if n.leaseUntil != asked+tc.want || !last.lease.Equal(hTime(asked).Add(time.Duration(tc.want)*hInterval)) {
			t.Fatalf("registered %d ms, asked at tick %d: lease to tick %d, driver's to %s; want tick %d, %s",
				tc.millis, asked, n.leaseUntil, last.lease, asked+tc.want, hTime(asked+tc.want))
		}
	}
}

// ---- 5. lease requests the leader must not answer -------------------------------

// readIndexFrom is a lease request as node from's raft sends it.
func readIndexFrom(from, to uint64, ctx string) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MessageType_MsgReadIndex.Enum(), From: proto.Uint64(from), To: proto.Uint64(to),
		Entries: []*raftpb.Entry{{Data: []byte(ctx)}},
	}
}

// answered reports whether a MsgReadIndexResp to node to carrying ctx was
// sent since message mark.
func (h *hNet) answered(to uint64, ctx string, mark int) bool {
	for _, m := range h.sent[mark:] {
		if m.GetType() == raftpb.MessageType_MsgReadIndexResp && m.GetTo() == to && len(m.GetEntries()) == 1 && string(m.GetEntries()[0].GetData()) == ctx {
			return true
		}
	}
	return false
}

func TestLeaderDropsReadIndexFromRemovedNode(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	leader := h.nodes[1]

	// The harness sees an answer when there is one.
	mark := len(h.sent)
	if err := leader.Step(readIndexFrom(2, 1, "probe-2")); err != nil {
		t.Fatalf("step: %v", err)
	}
	h.flush()
	if !h.answered(2, "probe-2", mark) {
		t.Fatalf("the leader did not answer node 2's ReadIndex")
	}

	h.mustOK(1, &apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{ClientRequestId: "rm3", NodeId: 3}}})
	if !leader.st.Removed(3) {
		t.Fatalf("node 3 not removed")
	}
	h.cut[3] = true // a removed node stops
	heard := leader.heardAt[3]
	for range 3 {
		h.step()
	}

	mark = len(h.sent)
	if err := leader.Step(readIndexFrom(3, 1, "lease-3")); err != nil {
		t.Fatalf("Step(MsgReadIndex from removed node 3) = %v, want nil", err)
	}
	h.flush()
	h.step()
	if h.answered(3, "lease-3", mark) {
		t.Fatalf("the leader answered a ReadIndex from removed node 3")
	}
	if leader.heardAt[3] != heard {
		t.Fatalf("a dropped request from node 3 counted as a heartbeat (tick %d, was %d)", leader.heardAt[3], heard)
	}
	// Node 2's are still answered.
	mark = len(h.sent)
	_ = leader.Step(readIndexFrom(2, 1, "probe-2b"))
	h.flush()
	if !h.answered(2, "probe-2b", mark) {
		t.Fatalf("the leader no longer answers node 2")
	}
}

func TestLeaderDropsReadIndexFromNodeWithDownPending(t *testing.T) {
	h := newHNet(t, 3, nil)
	h.settle()
	leader := h.nodes[1]
	h.cut[3] = true
	downAt := leader.heardAt[3] + uint64(leader.cfg.DownTicks)
	for h.tick < downAt-1 {
		h.step()
	}
	// From now on the leader's appends to node 2 are lost (its heartbeats
	// are not): the down verdict cannot commit, and stays pending.
	h.drop = func(m *raftpb.Message) bool {
		return (m.GetType() == raftpb.MessageType_MsgApp && m.GetTo() == 2) || (m.GetType() == raftpb.MessageType_MsgAppResp && m.GetFrom() == 2)
	}
	h.step()
	if !leader.isLeader || !leader.downPending[3] || h.nodeRec(1, 3).GetStatus() != nsDisconnected {
		t.Fatalf("tick %d: leader %v, down pending %v, node 3 %v; want the down verdict pending",
			h.tick, leader.isLeader, leader.downPending[3], h.nodeRec(1, 3).GetStatus())
	}
	heard := leader.heardAt[3]

	mark := len(h.sent)
	if err := leader.Step(readIndexFrom(3, 1, "lease-3")); err != nil {
		t.Fatalf("Step(MsgReadIndex from node 3) = %v, want nil", err)
	}
	if err := leader.Step(readIndexFrom(2, 1, "probe-2")); err != nil {
		t.Fatalf("Step(MsgReadIndex from node 2) = %v", err)
	}
	h.flush()
	h.step()
	if !h.answered(2, "probe-2", mark) {
		t.Fatalf("the leader did not answer node 2's ReadIndex: the quorum round failed, the test shows nothing")
	}
	if h.answered(3, "lease-3", mark) {
		t.Fatalf("the leader answered a ReadIndex from node 3, whose down verdict is pending")
	}
	if leader.heardAt[3] != heard {
		t.Fatalf("a dropped request from node 3 counted as a heartbeat")
	}

	// Once the verdict applies, the pending mark goes.
	h.drop = nil
	h.runUntil("node 3 down", 5, func() bool { return h.nodeRec(1, 3).GetStatus() == nsDown })
	h.step()
	if leader.downPending[3] {
		t.Fatalf("down verdict applied, still pending")
	}
}

// ---- 6. placement passes -------------------------------------------------------------

// placeNet is a one-node cluster booted from a state that holds cmds
// (applied after node 1's registration: 16 vCPUs, 64 GiB, labelled
// node=1), with the agent off so that the test runs every placement pass
// itself.
func placeNet(t *testing.T, cmds []*apiv1.Command) *hNet {
	t.Helper()
	st := state.New()
	st.ApplyMembership(1, []uint64{1}, nil)
	idx := uint64(1)
	all := append([]*apiv1.Command{{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
		Id: 1, Address: "node-1:7000", Role: apiv1.NodeRole_NODE_ROLE_VOTER,
		Capacity: &apiv1.Resources{Vcpus: 16, MemoryMib: 65536, Features: []string{"kvm"}},
		Labels:   map[string]string{"node": "1"},
		Images:   []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:5e", MinMemoryMib: 64}},
	}}}}, cmds...)
	for _, cmd := range all {
		idx++
		if resp, err := st.Apply(idx, cmd); err != nil || resp.GetError() != nil {
			t.Fatalf("apply %v: %v %v", cmd, err, resp.GetError())
		}
	}
	data, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap := &raftpb.Snapshot{Data: data, Metadata: &raftpb.SnapshotMetadata{
		ConfState: &raftpb.ConfState{Voters: []uint64{1}}, Index: proto.Uint64(idx), Term: proto.Uint64(1),
	}}
	cfg := hConfig(1, nil)
	cfg.Workloads = false
	cfg.Address = ""
	cfg.ClusterID = ""
	n, err := New(cfg, Persisted{HardState: &raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(idx)}, Snapshot: snap})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &hNet{
		t: t, ids: []uint64{1}, nodes: map[uint64]*Node{1: n}, cut: map[uint64]bool{},
		applied: map[uint64][]hApplied{}, proposed: map[uint64][]*apiv1.Command{},
		responses: map[RequestID]*apiv1.Response{}, reports: map[uint64][]VMReport{},
	}
	if err := n.Campaign(); err != nil {
		t.Fatal(err)
	}
	h.flush()
	if !n.isLeader {
		t.Fatalf("node 1 does not lead")
	}
	return h
}

// passResult is what one placement pass proposed.
type passResult struct {
	assignedVms   []string
	assignedTasks []uint64
	failed        int
}

// pass runs one placement pass on node 1 and applies what it proposed.
func (h *hNet) pass() passResult {
	h.t.Helper()
	n := h.nodes[1]
	before := len(h.proposed[1])
	n.place()
	h.flush()
	var r passResult
	for _, cmd := range h.proposed[1][before:] {
		switch {
		case cmd.GetAssignVm() != nil:
			r.assignedVms = append(r.assignedVms, cmd.GetAssignVm().GetName())
		case cmd.GetAssignTask() != nil:
			r.assignedTasks = append(r.assignedTasks, cmd.GetAssignTask().GetId())
		case cmd.GetPlacementFailed() != nil:
			r.failed++
		}
	}
	if n.st.AppliedIndex() != n.LastIndex() {
		h.t.Fatalf("pass not applied: applied %d, last %d", n.st.AppliedIndex(), n.LastIndex())
	}
	return r
}

// propose has node 1 (the leader) propose cmd, and applies it.
func (h *hNet) propose(cmd *apiv1.Command) {
	h.t.Helper()
	if err := h.nodes[1].propose(cmd); err != nil {
		h.t.Fatal(err)
	}
	h.flush()
}

// nowhereVms are n VMs named a-0000… that no node can hold (their
// constraint matches no node).
func nowhereVms(n int) []*apiv1.Command {
	var out []*apiv1.Command
	for i := range n {
		out = append(out, &apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
			Name: fmt.Sprintf("a-%04d", i), Start: true,
			Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128, Constraints: map[string]string{"zone": "nowhere"}},
		}}})
	}
	return out
}

func placeableVm(name string) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
		Name: name, Start: true, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
	}}}
}

func placeableTask() *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{
		Spec: &apiv1.TaskSpec{Command: "true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64}},
	}}}
}

func TestPlacementPassGoesOnFromItsCursor(t *testing.T) {
	const ahead = maxPlacementTries + 6
	h := placeNet(t, append(nowhereVms(ahead), placeableVm("z-web")))
	n := h.nodes[1]

	first := h.pass()
	if len(first.assignedVms) != 0 || first.failed != maxUnplacedPerPass {
		t.Fatalf("first pass: assigned %v, %d placement failures recorded; want none assigned, %d recorded",
			first.assignedVms, first.failed, maxUnplacedPerPass)
	}
	if want := fmt.Sprintf("a-%04d", maxPlacementTries); n.vmCursor != want {
		t.Fatalf("cursor after the first pass = %q, want %q (the first VM the budget left out)", n.vmCursor, want)
	}
	var placedIn int
	for i := 2; i <= 3 && placedIn == 0; i++ {
		r := h.pass()
		if r.failed > maxUnplacedPerPass {
			t.Fatalf("pass %d recorded %d placement failures, at most %d allowed", i, r.failed, maxUnplacedPerPass)
		}
		for _, name := range r.assignedVms {
			if name != "z-web" {
				t.Fatalf("pass %d placed %s, which fits nowhere", i, name)
			}
			placedIn = i
		}
	}
	if placedIn == 0 {
		t.Fatalf("z-web, behind %d VMs that fit nowhere, not placed in 3 passes", ahead)
	}
	if v, _ := n.st.Vm("z-web"); v.GetNodeId() != 1 || v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED {
		t.Fatalf("z-web = %v on node %d, want scheduled on node 1", v.GetState(), v.GetNodeId())
	}
}

// TestPlacementPassReachesTheLastVmBehindAFullBudget: exactly
// maxPlacementTries VMs that fit nowhere sort before a VM that fits. The
// first pass's budget ends on that VM, which becomes the cursor; each pass
// must get to it.
func TestPlacementPassReachesTheLastVmBehindAFullBudget(t *testing.T) {
	h := placeNet(t, append(nowhereVms(maxPlacementTries), placeableVm("z-web")))
	n := h.nodes[1]
	for i := 1; i <= 5; i++ {
		r := h.pass()
		if len(r.assignedVms) > 0 {
			return
		}
		t.Logf("pass %d: cursor %q", i, n.vmCursor)
	}
	t.Fatalf("z-web, behind exactly %d VMs that fit nowhere, not placed in 5 passes (cursor %q)", maxPlacementTries, n.vmCursor)
}

func TestPlacementPassPlacesTasksWhenVmsSpendTheirBudget(t *testing.T) {
	h := placeNet(t, append(nowhereVms(maxPlacementTries+6), placeableTask()))
	n := h.nodes[1]
	pending := n.st.PendingTasks(0)
	if len(pending) != 1 {
		t.Fatalf("%d pending tasks", len(pending))
	}
	r := h.pass()
	if n.vmCursor == "" {
		t.Fatalf("the VMs did not spend their budget: the test shows nothing")
	}
	if len(r.assignedTasks) != 1 || r.assignedTasks[0] != pending[0].GetId() {
		t.Fatalf("first pass assigned tasks %v, want [%d]", r.assignedTasks, pending[0].GetId())
	}
	if tk, _ := n.st.Task(pending[0].GetId()); tk.GetStatus() != apiv1.TaskStatus_TASK_STATUS_ASSIGNED || tk.GetNodeId() != 1 {
		t.Fatalf("task = %v on node %d", tk.GetStatus(), tk.GetNodeId())
	}
	if r.failed != maxUnplacedPerPass {
		t.Fatalf("first pass recorded %d placement failures, want %d", r.failed, maxUnplacedPerPass)
	}
}

func TestPlacementPassRecordsFewFailures(t *testing.T) {
	h := placeNet(t, nowhereVms(100))
	n := h.nodes[1]
	recorded := map[string]bool{}
	for i := 1; i <= 8; i++ {
		before := len(h.proposed[1])
		r := h.pass()
		if r.failed > maxUnplacedPerPass {
			t.Fatalf("pass %d recorded %d placement failures, at most %d allowed", i, r.failed, maxUnplacedPerPass)
		}
		for _, cmd := range h.proposed[1][before:] {
			if f := cmd.GetPlacementFailed(); f != nil {
				if recorded[f.GetVmName()] {
					t.Fatalf("pass %d recorded %s's failure again, with the same reason", i, f.GetVmName())
				}
				recorded[f.GetVmName()] = true
			}
		}
	}
	// Sixteen a pass, until every VM's reason is recorded.
	if len(recorded) != 100 {
		t.Fatalf("%d of 100 reasons recorded in 8 passes", len(recorded))
	}
	for _, v := range n.st.VmsToPlace() {
		if !strings.Contains(v.GetReason(), "nowhere") && !strings.Contains(v.GetReason(), "zone") {
			t.Fatalf("VM %s's reason = %q, want the scheduler's", v.GetName(), v.GetReason())
		}
	}
}

// gpuBacklog registers node 2, the only node with a GPU (16 vCPUs), and
// marks it down; then n tasks that need a GPU, which fit nowhere.
func gpuBacklog(n int) []*apiv1.Command {
	cmds := []*apiv1.Command{
		{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
			Id: 2, Address: "node-2:7000", Role: apiv1.NodeRole_NODE_ROLE_VOTER,
			Capacity: &apiv1.Resources{Vcpus: 16, MemoryMib: 65536, Features: []string{"gpu", "kvm"}},
			Images:   []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:5e", MinMemoryMib: 64}},
		}}},
		{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{Id: 2, Status: nsDown, Reason: "test"}}},
	}
	for range n {
		cmds = append(cmds, &apiv1.Command{Op: &apiv1.Command_SubmitTask{SubmitTask: &apiv1.SubmitTaskCommand{
			Spec: &apiv1.TaskSpec{Command: "train", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64, Features: []string{"gpu"}}},
		}}})
	}
	return cmds
}

// TestPlacementPassReachesTheLastTaskBehindAFullBudget: the same for
// tasks: exactly maxPlacementTries tasks that fit nowhere (they need a GPU,
// and the only node with one is down) ahead of one that fits.
func TestPlacementPassReachesTheLastTaskBehindAFullBudget(t *testing.T) {
	h := placeNet(t, append(gpuBacklog(maxPlacementTries), placeableTask()))
	n := h.nodes[1]
	pending := n.st.PendingTasks(0)
	last := pending[len(pending)-1].GetId()
	for i := 1; i <= 5; i++ {
		r := h.pass()
		for _, id := range r.assignedTasks {
			if id != last {
				t.Fatalf("pass %d placed task %d, which fits nowhere", i, id)
			}
			return
		}
		t.Logf("pass %d: mark %d", i, n.tasks.mark)
	}
	t.Fatalf("task %d, behind exactly %d tasks that fit nowhere, not placed in 5 passes (mark %d)", last, maxPlacementTries, n.tasks.mark)
}

// TestPlacementPassSkipsTheBlockedBacklog: tasks that fit nowhere cost a
// pass one scheduler call each, then none while nothing frees room; a new
// task is tried alone; room that may have grown (a node back up) has them
// all tried again.
func TestPlacementPassSkipsTheBlockedBacklog(t *testing.T) {
	const backlog = 300
	h := placeNet(t, gpuBacklog(backlog))
	n := h.nodes[1]
	tries := func(pass string, want uint64) passResult {
		t.Helper()
		n.TakeObservations()
		r := h.pass()
		if got := n.TakeObservations().PlacementTries; got != want {
			t.Fatalf("%s: %d scheduler calls, want %d", pass, got, want)
		}
		return r
	}
	tries("first pass", backlog)
	if got := n.PlacementBlocked(); got != backlog {
		t.Fatalf("PlacementBlocked() = %d after the first pass, want %d", got, backlog)
	}
	// The passes that record the reasons (16 each) try nothing.
	for i := range backlog/maxUnplacedPerPass + 1 {
		tries(fmt.Sprintf("pass %d", i+2), 0)
	}
	for _, tk := range n.st.PendingTasks(0) {
		if !strings.Contains(tk.GetReason(), "gpu") {
			t.Fatalf("task %d's reason = %q, want the scheduler's", tk.GetId(), tk.GetReason())
		}
	}
	h.propose(placeableTask())
	if r := tries("a new task", 1); len(r.assignedTasks) != 1 || r.assignedTasks[0] != n.st.AppliedIndex()-1 {
		t.Fatalf("a new task that fits: assigned %v, want it", r.assignedTasks)
	}
	h.propose(&apiv1.Command{Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{Id: 2, Status: nsReady, Reason: "test"}}})
	// Node 2's 16 vCPUs take 16 of them; the rest are blocked again.
	if r := tries("node 2 up", backlog); len(r.assignedTasks) != 16 {
		t.Fatalf("node 2 up: assigned %d tasks, want 16", len(r.assignedTasks))
	}
	if got := n.PlacementBlocked(); got != backlog-16 {
		t.Fatalf("PlacementBlocked() = %d with node 2 full, want %d", got, backlog-16)
	}
	tries("node 2 full", 0)
}

// TestPlacementPassReachesPastTheBacklogUnderChurn: a task that fits,
// behind more than maxPlacementTries tasks that fit nowhere, while room
// changes between every two passes (node 2's drain flag here; a workload
// ending in a live cluster): each pass goes on from where the last one
// stood, so the walk reaches it.
func TestPlacementPassReachesPastTheBacklogUnderChurn(t *testing.T) {
	h := placeNet(t, append(gpuBacklog(maxPlacementTries+10), placeableTask()))
	n := h.nodes[1]
	pending := n.st.PendingTasks(0)
	last := pending[len(pending)-1].GetId()
	for i := 1; i <= 5; i++ {
		h.propose(&apiv1.Command{Op: &apiv1.Command_DrainNode{DrainNode: &apiv1.DrainNodeCommand{Id: 2, Drain: i%2 == 1}}})
		if slices.Contains(h.pass().assignedTasks, last) {
			t.Logf("placed in pass %d", i)
			return
		}
	}
	t.Fatalf("task %d, behind %d tasks that fit nowhere, not placed in 5 passes with room changing between them (walk %+v)",
		last, maxPlacementTries+10, n.tasks)
}

// TestPlacementBlockedForgetsVmsThatNoLongerWait: a blocked VM that is
// deleted holds nothing, so room does not change; it leaves the blocked
// set all the same.
func TestPlacementBlockedForgetsVmsThatNoLongerWait(t *testing.T) {
	h := placeNet(t, nil)
	n := h.nodes[1]
	for range 50 {
		h.propose(nowhereVms(1)[0])
		h.pass()
		h.propose(&apiv1.Command{Op: &apiv1.Command_DeleteVm{DeleteVm: &apiv1.DeleteVmCommand{Name: "a-0000"}}})
		h.pass()
	}
	h.propose(nowhereVms(1)[0])
	h.pass()
	if got := n.PlacementBlocked(); got != 1 || len(n.blockedVms) != 1 {
		t.Fatalf("PlacementBlocked() = %d (%d VM keys) with one VM waiting, want 1", got, len(n.blockedVms))
	}
}

// TestTaskWalk: the walk's laps, step by step, over pending ids.
func TestTaskWalk(t *testing.T) {
	walk := func(w *taskWalk, pending []uint64, budget int) (visited []uint64) {
		start := w.mark + 1
		i, _ := slices.BinarySearch(pending, start)
		for k := range pending {
			id := pending[(i+k)%len(pending)]
			if !w.step(id) || len(visited) == budget {
				break
			}
			w.visited(id)
			visited = append(visited, id)
		}
		return visited
	}
	var w taskWalk
	ids := []uint64{10, 20, 30, 40, 50}
	for _, c := range []struct {
		name    string
		pending []uint64
		budget  int
		restart bool
		want    []uint64
	}{
		{"first pass, budget 2", ids, 2, false, []uint64{10, 20}},
		{"goes on", ids, 2, false, []uint64{30, 40}},
		{"room changes: a lap from 50", ids, 2, true, []uint64{50, 10}},
		{"the lap goes on to its start", ids, 9, false, []uint64{20, 30, 40}},
		{"lap over: nothing new", ids, 9, false, nil},
		{"a new task", append(ids, 60), 9, false, []uint64{60}},
		{"room changes with all passed: from the lowest", append(ids, 60), 9, true, []uint64{10, 20, 30, 40, 50, 60}},
		{"room changes, then a new task in the lap", append(ids, 60, 70), 1, true, []uint64{70}},
		{"the lap wraps", append(ids, 60, 70), 3, false, []uint64{10, 20, 30}},
		{"a newer task waits for the lap's end", append(ids, 60, 70, 80), 9, false, []uint64{40, 50, 60}},
		{"then comes", append(ids, 60, 70, 80), 9, false, []uint64{80}},
		{"room changes after the wrap", append(ids, 60, 70, 80), 9, true, []uint64{10, 20, 30, 40, 50, 60, 70, 80}},
		{"the lap's start gone", []uint64{10, 20}, 1, true, []uint64{10}},
		{"ends at once", []uint64{10, 20}, 9, false, []uint64{20}},
	} {
		if c.restart {
			w.restart()
		}
		if got := walk(&w, c.pending, c.budget); !slices.Equal(got, c.want) {
			t.Fatalf("%s: visited %v, want %v (walk now %+v)", c.name, got, c.want, w)
		}
	}
}
