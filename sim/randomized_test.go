package sim

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"

	"github.com/blixard/blixard/internal/core"
)

var simSeeds = flag.Int("sim.seeds", 3, "how many seeds TestRandomized runs (each 60 s of virtual time under faults)")

// Randomized runs, the VOPR shape: each seed draws a cluster, a fault mix
// and a client load; a safety phase of faults, then a liveness phase in
// which the faults stop and the cluster must converge.
const (
	safetyPhase   = 60 * time.Second
	livenessBound = 90 * time.Second // worst case: an op's 30 one-second attempts, elections, catch-up by snapshot
)

func TestRandomized(t *testing.T) {
	base := BaseSeed(t)
	for i := 0; i < *simSeeds; i++ {
		seed := base + uint64(i)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runRandomized(t, seed)
		})
	}
}

// regressionSeeds are seeds that once found a bug; they run every time.
var regressionSeeds = []struct {
	seed uint64
	bug  string
}{
	{5193, "a removed learner never learned it was removed"},
	{30102, "a membership change turned into an empty entry blocked all later ones"},
	{40628, "a Ready carrying only the leader's snapshot was written unsynced; a crash lost it after it was acknowledged"},
	{200753, "a removed node's task was started elsewhere while the node, still renewing its lease through the leader, ran it"},
	{300025, "a removed node's VM was started elsewhere while the node, still renewing its lease through the leader, ran it"},
	{700196, "a leader lost, in a crash, the unsynced commit of a voter's removal that the voter had seen and left on: two voters, one gone, no quorum ever again"},
}

func TestRandomizedRegressions(t *testing.T) {
	for _, r := range regressionSeeds {
		t.Run(fmt.Sprintf("seed=%d", r.seed), func(t *testing.T) {
			t.Log(r.bug)
			runRandomized(t, r.seed)
		})
	}
}

func TestRandomizedDeterministic(t *testing.T) {
	seed := BaseSeed(t)
	var hashes [2]string
	for i := range hashes {
		t.Run(fmt.Sprintf("run%d", i+1), func(t *testing.T) {
			hashes[i] = runRandomized(t, seed)
		})
	}
	if hashes[0] != hashes[1] {
		t.Fatalf("seed %d: two runs differ: trace-hash %s vs %s", seed, hashes[0], hashes[1])
	}
}

// randomRun is one seed's drawn scenario.
type randomRun struct {
	w       *World
	rng     *rand.Rand
	wl      *Workload
	faults  bool
	actions map[string]int
	// seen is how far load has read the history for task ids.
	seen int
	// membership: this run also adds and removes nodes; admin sends the
	// join and leave requests; joined are the nodes added so far.
	membership bool
	admin      *Client
	joined     []uint64
	t          *testing.T
	// workloads: the node agents place and run VMs and tasks on simulated
	// hypervisors, and the nemesis also kills VMs.
	workloads bool
	// Long faults (workload runs only, drawn from wrng): nodes held down,
	// cut off or paused past the down timeout, until the virtual time
	// given (a held-down node may stay down to the end of the safety
	// phase); and drains.
	wrng                       *rand.Rand
	heldDown, isolated, frozen map[uint64]time.Duration
}

// held reports whether node id is under a long fault of kind m now.
func (r *randomRun) held(m map[uint64]time.Duration, id uint64) bool {
	until, ok := m[id]
	return ok && r.w.Now() < until
}

// join adds a machine with an empty disk and asks the cluster to take it
// in, as a voter or a worker.
func (r *randomRun) join() {
	w := r.w
	if len(w.IDs()) >= 7 {
		return
	}
	id := uint64(len(w.IDs()) + 1)
	role := apiv1.NodeRole_NODE_ROLE_VOTER
	if r.rng.IntN(3) == 0 {
		role = apiv1.NodeRole_NODE_ROLE_WORKER
	}
	if _, err := w.AddNode(id, role); err != nil {
		w.fail(err)
		return
	}
	r.actions["join"]++
	r.joined = append(r.joined, id)
	r.admin.Do(w.JoinRequest(id))
}

// leave asks the cluster to remove a member (never so many that fewer than
// two voters of the first nodes remain, so the run can still converge).
func (r *randomRun) leave() {
	w := r.w
	left := 0
	for _, id := range w.IDs() {
		if w.Node(id).Left() {
			left++
		}
	}
	ids := w.IDs()
	id := ids[r.rng.IntN(len(ids))]
	if w.Node(id).Left() || len(ids)-left <= 3 {
		return
	}
	r.actions["leave"]++
	r.admin.Do(&apiv1.Request{Kind: &apiv1.Request_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterRequest{NodeId: id}}})
}

// rejoin asks again for every node added that is neither a member nor
// removed: a joiner whose requests all failed, as a real joiner keeps asking.
func (r *randomRun) rejoin() {
	w := r.w
	l := w.Leader()
	if l == 0 {
		return
	}
	m := w.Node(l).Core().State().Cluster().GetMembership()
	for _, id := range r.joined {
		n := w.Node(id)
		if n.Left() || slices.Contains(m.GetVoters(), id) || slices.Contains(m.GetLearners(), id) || slices.Contains(m.GetRemoved(), id) {
			continue
		}
		if r.admin.Idle() {
			r.admin.Do(w.JoinRequest(id))
		}
	}
}

func runRandomized(t *testing.T, seed uint64) string {
	// The scenario's own parameters come from the seed too.
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	nodes := []int{1, 3, 3, 5, 5}[rng.IntN(5)]
	opts := Options{
		Nodes:         nodes,
		MinLatency:    time.Millisecond,
		MaxLatency:    time.Duration(2+rng.IntN(48)) * time.Millisecond,
		LossRate:      rng.Float64() * 0.1,
		DuplicateRate: rng.Float64() * 0.05,
		ReorderRate:   rng.Float64() * 0.1,
		ClockDrift:    true,
		MaxClockSkew:  time.Duration(rng.IntN(2000)) * time.Millisecond,
		Core: func(c *core.Config) {
			// Small snapshot intervals put snapshots, compaction and
			// catch-up by snapshot on the path of every run.
			c.SnapshotEntries = uint64(20 + rng.IntN(200))
			c.TrailingEntries = uint64(5 + rng.IntN(50))
		},
	}
	// Drawn apart, so that seeds drawn before workloads existed replay the
	// same scenario.
	workloads := rand.New(rand.NewPCG(seed, 0x3015)).IntN(2) == 0
	opts.Workloads = workloads
	w := NewT(t, seed, opts)
	for _, id := range w.IDs() {
		if d := w.Node(id).Drift(); d < -MaxClockDrift || d > MaxClockDrift {
			t.Fatalf("node %d drifts %.4f, beyond ±%.2f", id, d, MaxClockDrift)
		}
	}
	r := &randomRun{t: t, workloads: workloads, w: w, rng: rng, wl: NewWorkload(rand.New(rand.NewPCG(seed, 0x10ad)), 6), faults: true, actions: map[string]int{},
		wrng: rand.New(rand.NewPCG(seed, 0xd0a1)), heldDown: map[uint64]time.Duration{}, isolated: map[uint64]time.Duration{}, frozen: map[uint64]time.Duration{}}
	r.wl.RestartPolicies = workloads
	r.membership = nodes >= 3 && rng.IntN(2) == 0
	r.admin = w.NewClient(ClientOptions{})
	clients := 2 + rng.IntN(5)
	for i := 0; i < clients; i++ {
		c := w.NewClient(ClientOptions{})
		r.load(c)
	}
	r.nemesis()
	if workloads {
		r.longFaults()
	}
	w.Must(t, w.RunFor(safetyPhase))

	// Liveness: faults stop, every node restarts or resumes, the network
	// heals; the cluster must converge and every request be answered.
	r.faults = false
	r.heal()
	if err := w.RunUntil(func() bool {
		r.rejoin()
		return w.ClientsIdle() && w.Converged()
	}, livenessBound); err != nil {
		w.Must(t, fmt.Errorf("liveness: %w\n%s", err, r.describe()))
	}
	// Settled, it stays settled: a promotion or registration still under
	// way may take a moment, then every node agrees again.
	w.Must(t, w.RunFor(2*time.Second))
	if err := w.RunUntil(w.Converged, 30*time.Second); err != nil {
		w.Must(t, fmt.Errorf("liveness: cluster did not settle again: %w\n%s", err, r.describe()))
	}
	var want []byte
	for _, id := range w.IDs() {
		if w.Node(id).Left() {
			continue
		}
		b, err := w.Node(id).Core().State().Snapshot()
		w.Must(t, err)
		if want == nil {
			want = b
		} else if !bytes.Equal(b, want) {
			w.Must(t, fmt.Errorf("liveness: node %d's state differs from node %d's", id, w.IDs()[0]))
		}
	}
	if r.workloads {
		// The porcupine models know no placement (a VM being deleted is
		// gone at once to them); with workloads on, what is checked is the
		// agents' end state instead, besides the vm-once and capacity
		// checkers that ran at every step. Drained nodes are undrained
		// first, so that every VM has somewhere to go.
		r.undrainAll()
		if err := w.RunUntil(func() bool { return w.ClientsIdle() && r.workloadsSettled() }, livenessBound); err != nil {
			w.Must(t, fmt.Errorf("liveness: workloads did not settle: %w\n%s", err, r.workloadsDescribe()))
		}
		// Then one node dies for good: its VMs with restart policy always
		// must run elsewhere within RescheduleBound (the vm-liveness
		// checker).
		r.deathForGood()
	} else {
		w.Must(t, CheckLinearizable(w.History()))
	}
	if r.workloads {
		downs, moved := 0, 0
		for _, a := range w.AppliedCommands() {
			if a.Err == nil && a.Cmd.GetSetNodeStatus().GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN {
				downs++
			}
		}
		for _, d := range w.DeathWatches() {
			moved += len(d.VMs)
		}
		t.Logf("workloads: %d down verdicts; %d VMs with restart policy always moved off the node that died for good", downs, moved)
	}
	acked, refused, indet, reads, unanswered := w.History().Summary()
	sent, dropped, dup := w.Net().Stats()
	t.Logf("nodes=%d clients=%d workloads=%v faults=%v ops: acked=%d refused=%d indeterminate=%d reads=%d unanswered-reads=%d net: sent=%d dropped=%d duplicated=%d",
		nodes, clients, r.workloads, r.actions, acked, refused, indet, reads, unanswered, sent, dropped, dup)
	return w.TraceHash()
}

// load keeps client c busy during the safety phase: a new operation every
// time it finishes one, after a short think time.
func (r *randomRun) load(c *Client) {
	var feed func()
	feed = func() {
		if !r.faults {
			return
		}
		ops := r.w.history.ops
		for ; r.seen < len(ops); r.seen++ {
			if op := ops[r.seen]; op.Acked() && op.Resp.GetSubmitTask() != nil {
				r.wl.SawTask(op.Resp.GetSubmitTask().GetTask().GetId())
			}
		}
		if c.Idle() {
			c.Do(r.wl.Next())
		}
		r.w.at(r.w.now+time.Duration(10+r.rng.IntN(200))*time.Millisecond, feed)
	}
	r.w.at(r.w.now, feed)
}

// nemesis injects a fault every 0.2–3 s of the safety phase.
func (r *randomRun) nemesis() {
	var next func()
	next = func() {
		if !r.faults {
			return
		}
		r.fault()
		gap := time.Duration(200+r.rng.IntN(2800)) * time.Millisecond
		if r.workloads {
			// Calmer, so that a leader often lasts the down timeout and
			// the long faults end in down verdicts.
			gap *= 2
		}
		r.w.at(r.w.now+gap, next)
	}
	r.w.at(r.w.now+time.Second, next)
}

func (r *randomRun) fault() {
	w := r.w
	ids := w.IDs()
	id := ids[r.rng.IntN(len(ids))]
	n := w.Node(id)
	switch p := r.rng.IntN(100); {
	case p < 15:
		if n.Up() {
			r.actions["crash"]++
			w.Crash(id)
		}
	case p < 35:
		if !n.Up() && !n.Left() && !r.held(r.heldDown, id) {
			r.actions["restart"]++
			_ = w.Restart(id)
		}
	case p < 45:
		perm := r.rng.Perm(len(ids))
		cut := 1 + r.rng.IntN(max(1, len(ids)-1))
		var a, b []uint64
		for i, j := range perm {
			if i < cut {
				a = append(a, ids[j])
			} else {
				b = append(b, ids[j])
			}
		}
		r.actions["partition"]++
		w.Net().Partition(a, b)
	case p < 60:
		r.actions["heal"]++
		w.Net().Heal()
	case p < 67:
		r.actions["clog-node"]++
		w.Net().ClogNode(id)
	case p < 72:
		other := ids[r.rng.IntN(len(ids))]
		if other != id {
			r.actions["clog-link"]++
			w.Net().ClogLink(id, other, r.rng.IntN(2) == 0)
		}
	case p < 80:
		if n.Paused() {
			if !r.held(r.frozen, id) {
				r.actions["resume"]++
				w.Resume(id)
			}
		} else if n.Up() {
			r.actions["pause"]++
			w.Pause(id)
		}
	case p < 87:
		r.actions["disk-fault"]++
		w.FailSave(id, 1+r.rng.IntN(20))
	case p < 89 && r.workloads:
		r.killVM(id)
	case p < 90 && r.membership:
		r.join()
	case p < 92 && r.membership:
		r.leave()
	default:
		r.actions["loss"]++
		w.Net().LossRate = r.rng.Float64() * 0.2
	}
	// A node cut off for long stays cut off whatever was healed.
	for _, id := range w.IDs() {
		if r.held(r.isolated, id) && !w.Net().clogged[id] {
			w.Net().ClogNode(id)
		}
	}
}

// longFaults (workload runs) injects, every 4–12 s of the safety phase, a
// fault that outlasts the down timeout, so that nodes are declared down and
// their VMs and tasks placed elsewhere: a node crashed and held down (for a
// third of them, to the end of the safety phase), cut off from everyone,
// or paused; or a drain or undrain of a node.
func (r *randomRun) longFaults() {
	w := r.w
	down := time.Duration(w.downTicks()) * w.opts.TickInterval
	var next func()
	next = func() {
		if !r.faults {
			return
		}
		ids := w.IDs()
		id := ids[r.wrng.IntN(len(ids))]
		n := w.Node(id)
		span := down + time.Duration(1000+r.wrng.IntN(7000))*time.Millisecond
		switch p := r.wrng.IntN(100); {
		case p < 30:
			if n.Up() && !n.Left() {
				r.actions["long-crash"]++
				w.Crash(id)
				if r.wrng.IntN(3) == 0 {
					span = safetyPhase // down to the end: restarted by the heal
				}
				r.heldDown[id] = w.Now() + span
				w.at(w.Now()+span, func() {
					if r.faults && !w.Node(id).Up() && !w.Node(id).Left() {
						_ = w.Restart(id)
					}
				})
			}
		case p < 55:
			r.actions["long-isolate"]++
			r.isolated[id] = w.Now() + span
			w.Net().ClogNode(id)
			w.at(w.Now()+span, func() {
				if r.faults && w.Net().clogged[id] {
					w.Net().UnclogNode(id)
				}
			})
		case p < 75:
			if n.Up() && !n.Paused() {
				r.actions["long-pause"]++
				r.frozen[id] = w.Now() + span
				w.Pause(id)
				w.at(w.Now()+span, func() {
					if r.faults {
						w.Resume(id)
					}
				})
			}
		default:
			drain := r.wrng.IntN(3) != 0
			if drain {
				r.actions["drain"]++
			} else {
				r.actions["undrain"]++
			}
			r.admin.Do(&apiv1.Request{Kind: &apiv1.Request_DrainNode{DrainNode: &apiv1.DrainNodeRequest{NodeId: id, Drain: drain}}})
		}
		w.at(w.Now()+time.Duration(4000+r.wrng.IntN(8000))*time.Millisecond, next)
	}
	w.at(w.Now()+2*time.Second, next)
}

// undrainAll undrains every node the leader's state shows drained.
func (r *randomRun) undrainAll() {
	w := r.w
	l := w.StableLeader()
	if l == 0 {
		return
	}
	for _, rec := range w.Node(l).Core().State().Nodes() {
		if rec.GetDrain() && rec.GetStatus() != apiv1.NodeStatus_NODE_STATUS_LEFT {
			r.admin.Do(&apiv1.Request{Kind: &apiv1.Request_DrainNode{DrainNode: &apiv1.DrainNodeRequest{NodeId: rec.GetId(), Drain: false}}})
		}
	}
}

// deathForGood, once the workloads have settled, kills one member whose
// loss leaves a quorum — crashed for good, or cut off for good — and runs
// until the vm-liveness checker has judged whether its VMs with restart
// policy always run elsewhere in time.
func (r *randomRun) deathForGood() {
	w := r.w
	l := w.StableLeader()
	if l == 0 {
		return
	}
	m := w.Node(l).Core().State().Cluster().GetMembership()
	var candidates []uint64
	for _, id := range append(slices.Clone(m.GetVoters()), m.GetLearners()...) {
		voter := slices.Contains(m.GetVoters(), id)
		if !voter || len(m.GetVoters())-1 > len(m.GetVoters())/2 {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) < 1 || len(m.GetVoters())+len(m.GetLearners()) < 2 {
		return
	}
	slices.Sort(candidates)
	id := candidates[r.wrng.IntN(len(candidates))]
	if r.wrng.IntN(2) == 0 {
		r.actions["death-crash"]++
		w.Crash(id)
	} else {
		r.actions["death-cut-off"]++
		w.Net().Partition([]uint64{id})
	}
	deadline := w.WatchDeath(id)
	w.Must(r.t, w.RunFor(deadline-w.Now()+time.Second))
}

// describe says where every node and client stands, for a liveness failure.
func (r *randomRun) describe() string {
	w := r.w
	var b bytes.Buffer
	for _, id := range w.IDs() {
		n := w.Node(id)
		fmt.Fprintf(&b, "node %d: up=%v paused=%v left=%v", id, n.Up(), n.Paused(), n.Left())
		if c := n.Core(); c != nil {
			lead, term := c.Leader()
			fmt.Fprintf(&b, " lead=%d term=%d commit=%d applied=%d membership=%v", lead, term,
				c.BasicStatus().GetCommit(), c.State().AppliedIndex(), c.State().Cluster().GetMembership())
		}
		b.WriteByte('\n')
	}
	for _, op := range w.History().Ops() {
		if op.Client == r.admin.ID() {
			fmt.Fprintf(&b, "admin op %v -> %v (attempts %d, %s..%s)\n", op.Req, op.Resp, op.Attempts, op.Call, op.Return)
		}
	}
	for _, c := range w.Clients() {
		if !c.Idle() {
			fmt.Fprintf(&b, "client %d busy: %v\n", c.ID(), c.op.Req)
		}
	}
	return b.String()
}

// heal ends every fault.
func (r *randomRun) heal() {
	w := r.w
	w.Net().Heal()
	w.Net().LossRate, w.Net().DuplicateRate, w.Net().ReorderRate = 0, 0, 0
	for _, id := range w.IDs() {
		w.FailSave(id, 0)
		w.SetDiskFaultRate(id, 0)
		if w.Node(id).Paused() {
			w.Resume(id)
		}
		if !w.Node(id).Up() {
			_ = w.Restart(id)
		}
	}
}

// killVM kills one VM that node id runs, as if its QEMU died.
func (r *randomRun) killVM(id uint64) {
	var names []string
	for _, v := range r.w.SimVMs(id) {
		if !v.Ended() {
			names = append(names, v.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	if r.w.FailVM(id, names[r.rng.IntN(len(names))], "qemu exited: signal: killed") {
		r.actions["kill-vm"]++
	}
}

// workloadsSettled: every VM and task on a node still in the cluster has
// reached a resting state that its node's hypervisor agrees with, and no
// hypervisor runs anything the state does not place there.
func (r *randomRun) workloadsSettled() bool {
	w := r.w
	l := w.StableLeader()
	if l == 0 {
		return false
	}
	st := w.Node(l).Core().State()
	gone := func(id uint64) bool { return id != 0 && w.Node(id) != nil && w.Node(id).Left() }
	for _, v := range st.Vms(0) {
		if gone(v.GetNodeId()) {
			continue
		}
		switch v.GetState() {
		case apiv1.VmState_VM_STATE_SCHEDULED, apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_STOPPING:
			return false
		case apiv1.VmState_VM_STATE_PENDING:
			if v.GetDesiredState() == apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
				return false
			}
		case apiv1.VmState_VM_STATE_RUNNING:
			sv, ok := wlSimVM(w, v.GetNodeId(), v.GetName())
			if !ok || sv.Generation != v.GetGeneration() || sv.State != apiv1.VmState_VM_STATE_RUNNING {
				return false
			}
		}
	}
	for _, t := range st.Tasks(0) {
		if gone(t.GetNodeId()) {
			continue
		}
		if !t.GetStatus().Ended() {
			return false
		}
	}
	for _, id := range w.IDs() {
		if w.Node(id).Left() {
			continue
		}
		for _, sv := range w.SimVMs(id) {
			if sv.Ended() {
				continue
			}
			if tid, ok := strings.CutPrefix(sv.Name, "task."); ok {
				_ = tid
				return false // a task still runs
			}
			v, ok := st.Vm(sv.Name)
			if !ok || v.GetNodeId() != id || v.GetGeneration() != sv.Generation || v.GetState() != apiv1.VmState_VM_STATE_RUNNING {
				return false
			}
		}
	}
	return true
}

func (r *randomRun) workloadsDescribe() string {
	w := r.w
	var b bytes.Buffer
	if l := w.Leader(); l != 0 {
		for _, v := range w.Node(l).Core().State().Vms(0) {
			fmt.Fprintf(&b, "vm %s: desired %s state %s node %d generation %d (%s)\n", v.GetName(), v.GetDesiredState(), v.GetState(), v.GetNodeId(), v.GetGeneration(), v.GetReason())
		}
		for _, t := range w.Node(l).Core().State().Tasks(0) {
			if !t.GetStatus().Ended() {
				fmt.Fprintf(&b, "task %d: %s node %d attempt %d (%s)\n", t.GetId(), t.GetStatus(), t.GetNodeId(), t.GetAttempt(), t.GetReason())
			}
		}
	}
	for _, id := range w.IDs() {
		for _, sv := range w.SimVMs(id) {
			fmt.Fprintf(&b, "node %d hypervisor: %s generation %d %s (%s)\n", id, sv.Name, sv.Generation, sv.State, sv.Reason)
		}
	}
	return b.String()
}
