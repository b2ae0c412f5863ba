package sim

import (
	"maps"
	"slices"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/state"
)

// The workload checkers, on with Options.Workloads:
//
//   - vm-once: no VM runs (starting or running, not ended) on two nodes'
//     hypervisors at the same virtual instant; checked after every
//     hypervisor change.
//   - capacity: no node's hypervisor runs more vCPUs or memory than the
//     node's capacity × overcommit (its own configuration); checked after
//     every hypervisor change.
//   - committed-capacity: after every applied entry, no node's committed
//     assignments exceed its capacity × overcommit (state.CheckCommitted);
//     checked on a shadow replica that applies every committed entry, one
//     at a time, and on each node's own state after each of its Readys.
//   - vm-liveness: every VM with restart policy always whose node died
//     (WatchDeath) runs again on another node within RescheduleBound.

// HostView is what one node's hypervisor runs, for the hypervisor checkers.
type HostView struct {
	Node uint64
	// Limits are the node's capacity × overcommit, from its configuration.
	Limits state.Limits
	// VMs are the VMs that have not ended (starting or running), by name.
	VMs []HostVM
}

// HostVM is one VM a hypervisor runs.
type HostVM struct {
	Name       string
	Generation uint64
	// Running is set once it has booted (else it is starting).
	Running bool
	Need    *apiv1.Resources
}

// VMOnce: no VM runs on two nodes at once. A VM that is starting counts as
// running: its hypervisor has begun to boot it.
type VMOnce struct{}

// Name names the checker.
func (VMOnce) Name() string { return "vm-once" }

// Check looks at every hypervisor at one instant.
func (c VMOnce) Check(hosts []HostView) error {
	type at struct{ node, gen uint64 }
	where := map[string]at{}
	for _, h := range hosts {
		for _, v := range h.VMs {
			if other, ok := where[v.Name]; ok {
				return violation(c, "VM %s runs on node %d (generation %d) and on node %d (generation %d)",
					v.Name, other.node, other.gen, h.Node, v.Generation)
			}
			where[v.Name] = at{h.Node, v.Generation}
		}
	}
	return nil
}

// PhysicalCapacity: no hypervisor runs more than its node's capacity ×
// overcommit.
type PhysicalCapacity struct{}

// Name names the checker.
func (PhysicalCapacity) Name() string { return "capacity" }

// Check looks at every hypervisor at one instant.
func (c PhysicalCapacity) Check(hosts []HostView) error {
	for _, h := range hosts {
		var vcpus, mem uint64
		for _, v := range h.VMs {
			vcpus += uint64(v.Need.GetVcpus())
			mem += v.Need.GetMemoryMib()
		}
		if vcpus > h.Limits.Vcpus || mem > h.Limits.MemoryMiB {
			return violation(c, "node %d runs %d vCPUs and %d MiB; its capacity × overcommit is %d vCPUs and %d MiB",
				h.Node, vcpus, mem, h.Limits.Vcpus, h.Limits.MemoryMiB)
		}
	}
	return nil
}

// AppliedCommand is one command of the committed log as the state took it:
// Err is the state's refusal, nil when it was accepted.
type AppliedCommand struct {
	Index uint64
	Cmd   *apiv1.Command
	Err   error
}

// CommittedCapacity: after every applied entry, no node is committed beyond
// its capacity × overcommit. The nodes apply whole batches in one Advance,
// so the checker keeps a shadow replica that applies each committed entry
// alone (the first time any node applies its index) and checks it after
// each one; every node applies the same entries (state-machine safety), so
// the shadow's states are theirs. Each node's own state is checked too,
// after each of its Readys, and compared with the shadow's where they stand
// at the same index, so that a shadow out of step with the core is noticed.
type CommittedCapacity struct {
	shadow *state.State
	// applied is every command of the log the shadow applied, in order.
	applied []AppliedCommand
}

// NewCommittedCapacity returns the checker, its shadow starting from
// initial (the state every node boots with).
func NewCommittedCapacity(initial *state.State) *CommittedCapacity {
	return &CommittedCapacity{shadow: initial}
}

// Name names the checker.
func (*CommittedCapacity) Name() string { return "committed-capacity" }

// Applied is every command of the log, in order, with the state's verdict.
func (c *CommittedCapacity) Applied() []AppliedCommand { return c.applied }

// Shadow is the shadow replica's state.
func (c *CommittedCapacity) Shadow() *state.State { return c.shadow }

// Apply takes the next committed entry, as core.Node applies it, and checks
// the shadow's commitments after it.
func (c *CommittedCapacity) Apply(e *raftpb.Entry) error {
	st := c.shadow
	index := e.GetIndex()
	if index <= st.AppliedIndex() {
		return nil // in the initial state
	}
	if index != st.AppliedIndex()+1 {
		return violation(c, "the shadow replica is at index %d and was handed index %d", st.AppliedIndex(), index)
	}
	switch e.GetType() {
	case raftpb.EntryType_EntryNormal:
		cmd := &apiv1.Command{}
		if len(e.GetData()) == 0 || proto.Unmarshal(e.GetData(), cmd) != nil {
			st.ApplyEmpty(index)
			break
		}
		_, err := st.Apply(index, cmd)
		c.applied = append(c.applied, AppliedCommand{Index: index, Cmd: cmd, Err: err})
	case raftpb.EntryType_EntryConfChange, raftpb.EntryType_EntryConfChangeV2:
		c.applyConfChange(e)
	default:
		st.ApplyEmpty(index)
	}
	if err := st.CheckCommitted(); err != nil {
		return violation(c, "after index %d: %v", index, err)
	}
	return nil
}

// applyConfChange is core's applyConfChange, with the Raft configuration
// read from the state's membership (the core keeps the two equal).
func (c *CommittedCapacity) applyConfChange(e *raftpb.Entry) {
	st := c.shadow
	index := e.GetIndex()
	var cc raftpb.ConfChangeI
	if e.GetType() == raftpb.EntryType_EntryConfChange {
		var v1 raftpb.ConfChange
		if proto.Unmarshal(e.GetData(), &v1) != nil {
			st.ApplyEmpty(index)
			return
		}
		cc = &v1
	} else {
		var v2 raftpb.ConfChangeV2
		if proto.Unmarshal(e.GetData(), &v2) != nil {
			st.ApplyEmpty(index)
			return
		}
		cc = &v2
	}
	v2 := cc.AsV2()
	ctx := &apiv1.Command{}
	if len(v2.GetContext()) > 0 && proto.Unmarshal(v2.GetContext(), ctx) != nil {
		ctx = &apiv1.Command{}
	}
	key := ctx.GetClientRequestId()
	if key != "" {
		if _, ok := st.Response(key); ok {
			st.ApplyEmpty(index)
			return
		}
	}
	m := st.Cluster().GetMembership()
	voters, learners := slices.Clone(m.GetVoters()), slices.Clone(m.GetLearners())
	if err := core.CheckConfChange(st, v2, ctx, voters, learners); err != nil {
		st.ApplyRefused(index, key, err)
		c.applied = append(c.applied, AppliedCommand{Index: index, Cmd: ctx, Err: err})
		return
	}
	drop := func(ids []uint64, id uint64) []uint64 {
		return slices.DeleteFunc(ids, func(x uint64) bool { return x == id })
	}
	for _, ch := range v2.GetChanges() {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeType_ConfChangeAddNode:
			learners = drop(learners, id)
			if !slices.Contains(voters, id) {
				voters = append(voters, id)
			}
		case raftpb.ConfChangeType_ConfChangeAddLearnerNode:
			voters = drop(voters, id)
			if !slices.Contains(learners, id) {
				learners = append(learners, id)
			}
		case raftpb.ConfChangeType_ConfChangeRemoveNode:
			voters, learners = drop(voters, id), drop(learners, id)
		}
	}
	slices.Sort(voters)
	slices.Sort(learners)
	var resp *apiv1.Response
	switch {
	case ctx.GetRegisterNode() != nil:
		resp = &apiv1.Response{Kind: &apiv1.Response_JoinCluster{JoinCluster: &apiv1.JoinClusterResponse{
			ClusterId:  st.Cluster().GetId(),
			Membership: &apiv1.Membership{Voters: voters, Learners: learners},
		}}}
	case key != "":
		resp = &apiv1.Response{Kind: &apiv1.Response_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterResponse{}}}
	}
	st.ApplyMembershipChange(index, state.MembershipChange{
		Voters: voters, Learners: learners, Join: ctx.GetRegisterNode(), ClientRequestID: key, Response: resp,
	})
	c.applied = append(c.applied, AppliedCommand{Index: index, Cmd: ctx})
}

// Observe checks node's own state after one of its Readys: its commitments,
// and, when it stands at the shadow's index, that the shadow agrees with it
// on every node's commitments, limits and status and on the membership.
func (c *CommittedCapacity) Observe(node uint64, st *state.State) error {
	if err := st.CheckCommitted(); err != nil {
		return violation(c, "node %d at index %d: %v", node, st.AppliedIndex(), err)
	}
	if c.shadow == nil || st.AppliedIndex() != c.shadow.AppliedIndex() {
		return nil
	}
	if a, b := st.Cluster().GetMembership(), c.shadow.Cluster().GetMembership(); !proto.Equal(a, b) {
		return violation(c, "the shadow replica is out of step with node %d at index %d: membership %v, node's %v", node, st.AppliedIndex(), b, a)
	}
	mine, theirs := c.shadow.Nodes(), st.Nodes()
	if len(mine) != len(theirs) {
		return violation(c, "the shadow replica is out of step with node %d at index %d: %d nodes, node's %d", node, st.AppliedIndex(), len(mine), len(theirs))
	}
	for i, n := range mine {
		o := theirs[i]
		if n.GetId() != o.GetId() || n.GetStatus() != o.GetStatus() || n.GetDrain() != o.GetDrain() ||
			state.NodeLimits(n) != state.NodeLimits(o) ||
			!proto.Equal(c.shadow.Allocated(n.GetId()), st.Allocated(o.GetId())) {
			return violation(c, "the shadow replica is out of step with node %d at index %d: its record of node %d is %v holding %v, node's %v holding %v",
				node, st.AppliedIndex(), n.GetId(), n, c.shadow.Allocated(n.GetId()), o, st.Allocated(o.GetId()))
		}
	}
	return nil
}

// VMLiveness: every VM with restart policy always whose node died runs
// again, on another node, within a bound of the death.
type VMLiveness struct {
	watches []*DeathWatch
}

// DeathWatch is one node's death and the VMs it held then.
type DeathWatch struct {
	Node     uint64
	At       time.Duration
	Deadline time.Duration
	// VMs are the VMs (name → generation) with restart policy always,
	// wanted running, that the dead node held.
	VMs map[string]uint64
}

// Name names the checker.
func (*VMLiveness) Name() string { return "vm-liveness" }

// Verify checks one watch at its deadline against the leader's state (nil
// when there is no leader) and what the hypervisors run. A VM deleted or no
// longer wanted running since is not owed.
func (c *VMLiveness) Verify(d *DeathWatch, leader *state.State, hosts []HostView) error {
	if len(d.VMs) == 0 {
		return nil
	}
	if leader == nil {
		return violation(c, "node %d died at %s and at %s there is no leader to run its VMs elsewhere", d.Node, d.At, d.Deadline)
	}
	for _, name := range sortedNames(d.VMs) {
		gen := d.VMs[name]
		v, ok := leader.Vm(name)
		if !ok || v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
			continue
		}
		found := false
		for _, h := range hosts {
			if h.Node == d.Node {
				continue
			}
			for _, hv := range h.VMs {
				if hv.Name == name && hv.Running && hv.Generation > gen {
					found = true
				}
			}
		}
		if !found {
			return violation(c, "VM %s (restart policy always, generation %d on node %d, which died at %s) does not run on another node at %s, %s later: its record says %s on node %d generation %d (%s)",
				name, gen, d.Node, d.At, d.Deadline, d.Deadline-d.At, v.GetState(), v.GetNodeId(), v.GetGeneration(), v.GetReason())
		}
	}
	return nil
}

func sortedNames(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// bootMax is the longest boot of the simulated hypervisor (hypervisor.go).
const bootMax = 1500 * time.Millisecond

// RescheduleBound is how long after a node dies its VMs with restart policy
// always must run elsewhere: the leader's down timeout (DownTicks of its
// drifted ticks), plus the longest boot, plus a slack of one worst-case
// election (the dead node may have been the leader; its successor re-arms
// the timers when it is elected) and one second for the proposals and
// commits on the way (down verdict, assignment, report).
func (w *World) RescheduleBound() time.Duration {
	tick := float64(w.opts.TickInterval) * (1 + MaxClockDrift)
	return time.Duration(float64(w.downTicks())*tick) + bootMax + w.rescheduleSlack()
}

func (w *World) rescheduleSlack() time.Duration {
	tick := float64(w.opts.TickInterval) * (1 + MaxClockDrift)
	return time.Duration(float64(2*core.DefaultElectionTicks)*tick) + time.Second
}

// downTicks is the nodes' effective Config.DownTicks (the core's default
// when not set), and never less than the lease and its margin.
func (w *World) downTicks() int {
	cfg := w.nodes[w.ids[0]].cfg
	lease := cfg.LeaseTicks
	if lease == 0 {
		lease = core.DefaultLeaseTicks
	}
	down := cfg.DownTicks
	if down == 0 {
		down = max(core.DefaultDownTicks, lease+core.FenceMarginTicks(lease))
	}
	return max(down, lease+core.FenceMarginTicks(lease))
}

// WatchDeath records that node id has died for good now (crashed and not
// to be restarted, or cut off for good): every VM with restart policy
// always that it holds must run on another node within RescheduleBound, or
// the vm-liveness checker stops the world. It returns the deadline.
func (w *World) WatchDeath(id uint64) time.Duration {
	d := &DeathWatch{Node: id, At: w.now, Deadline: w.now + w.RescheduleBound(), VMs: map[string]uint64{}}
	always := func(v *apiv1.Vm) bool {
		return v.GetSpec().GetRestartPolicy() == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS &&
			v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
	}
	if l := w.Leader(); l != 0 {
		for _, v := range w.nodes[l].core.State().VmsOn(id) {
			if always(v) {
				d.VMs[v.GetName()] = v.GetGeneration()
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(w.nodes[id].hyper.vms)) {
		sv := w.nodes[id].hyper.vms[name]
		if !sv.Ended() && sv.policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS && sv.Generation >= d.VMs[name] {
			d.VMs[name] = sv.Generation
		}
	}
	w.chk.liveness.watches = append(w.chk.liveness.watches, d)
	w.note("node %d died for good; %d VMs with restart policy always must run elsewhere by %s", id, len(d.VMs), d.Deadline)
	w.at(d.Deadline, func() {
		var st *state.State
		if l := w.Leader(); l != 0 {
			st = w.nodes[l].core.State()
		}
		if err := w.chk.liveness.Verify(d, st, w.hostViews()); err != nil {
			w.fail(err)
		}
	})
	return d.Deadline
}

// DeathWatches are the deaths WatchDeath recorded.
func (w *World) DeathWatches() []*DeathWatch { return w.chk.liveness.watches }

// hostViews is what every hypervisor runs now.
func (w *World) hostViews() []HostView {
	out := make([]HostView, 0, len(w.ids))
	for _, id := range w.ids {
		n := w.nodes[id]
		h := HostView{Node: id, Limits: n.limits()}
		for _, name := range slices.Sorted(maps.Keys(n.hyper.vms)) {
			v := n.hyper.vms[name]
			if v.Ended() {
				continue
			}
			h.VMs = append(h.VMs, HostVM{Name: name, Generation: v.Generation, Running: v.State == apiv1.VmState_VM_STATE_RUNNING, Need: v.need})
		}
		out = append(out, h)
	}
	return out
}

// checkHypervisors runs the vm-once and capacity checkers.
func (w *World) checkHypervisors() {
	if w.failure != nil {
		return
	}
	hosts := w.hostViews()
	if err := w.chk.vmOnce.Check(hosts); err != nil {
		w.fail(err)
		return
	}
	if err := w.chk.capacity.Check(hosts); err != nil {
		w.fail(err)
	}
}

// AppliedCommands is every command of the committed log, in order, with
// the state's verdict (Options.Workloads only).
func (w *World) AppliedCommands() []AppliedCommand {
	if w.chk.committed == nil {
		return nil
	}
	return w.chk.committed.Applied()
}

// limits is the node's capacity × overcommit, from its configuration.
func (n *Node) limits() state.Limits {
	return state.NodeLimits(&apiv1.Node{Capacity: n.cfg.Capacity, VcpuOvercommit: n.cfg.VcpuOvercommit, MemoryOvercommit: n.cfg.MemoryOvercommit})
}
