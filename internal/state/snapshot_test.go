package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"pgregory.net/rapid"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// ---- random command sequences ----------------------------------------------
//
// Names and ids come from small pools so that commands hit existing records;
// specs are mostly valid; the generator reads the state to steer towards
// commands that apply (current generations, nodes with room, images some
// node offers), so that the sequences walk deep into the VM and task
// lifecycles.

var (
	poolVMs   = []string{"a", "b", "c", "d", "e", "f"}
	poolNodes = []uint64{1, 2, 3, 4}
	// Every node always registers with the same capacity, so that a
	// re-registration is never refused for shrinking below what the node
	// holds. Its images change from one registration to the next.
	nodeCapacity = map[uint64][2]uint64{1: {8, 8192}, 2: {4, 4096}, 3: {4, 2048}, 4: {16, 16384}}
	// poolImages are the images nodes offer, sorted by name.
	poolImages = []string{"alpine-3.20", "default", "ubuntu-24.04"}
)

const clientIDPool = 200

func clientID(i int) string { return fmt.Sprintf("c%d", i) }

type stepKind int

const (
	stepCommand stepKind = iota
	stepEmpty
	stepMembership
)

// step is one entry of the log.
type step struct {
	index    uint64
	kind     stepKind
	cmd      *apiv1.Command
	voters   []uint64
	learners []uint64
	// stale: cmd reports on a VM from a node at a (node, generation) of an
	// earlier life of its name, which must be refused as stale.
	stale bool
}

// apply applies st to s. Commands return their response and error.
func (st step) apply(s *state.State) (*apiv1.Response, error) {
	switch st.kind {
	case stepEmpty:
		s.ApplyEmpty(st.index)
	case stepMembership:
		s.ApplyMembership(st.index, st.voters, st.learners)
	default:
		// Each state gets its own copy of the command.
		return s.Apply(st.index, proto.CloneOf(st.cmd))
	}
	return nil, nil
}

// gen draws steps that fit the state s.
type gen struct {
	s    *state.State
	idx  uint64
	live []uint64 // tasks that have not ended
	done []uint64 // tasks that ended most recently (cancelled ones may still report)
	seen map[uint64]bool

	// The lives of each VM name, as observed after every entry: the
	// creation index of the current life, the highest generation and the
	// last placement (node, generation) it was seen at; the highest
	// generation of all its earlier lives; and the last placements of
	// earlier lives, for reports from nodes that missed the end.
	life    map[string]uint64
	maxGen  map[string]uint64
	placed  map[string]placement
	earlier map[string]uint64
	ghosts  map[string][]placement
	// drewStale: the command just drawn is a stale report (see step).
	drewStale bool
	// Statistics: lives that followed an earlier one, and stale reports
	// drawn from an earlier life.
	recreated, staleReports int
}

type placement struct{ node, gen uint64 }

func newGen(s *state.State) *gen {
	return &gen{
		s: s, seen: map[uint64]bool{},
		life: map[string]uint64{}, maxGen: map[string]uint64{}, placed: map[string]placement{},
		earlier: map[string]uint64{}, ghosts: map[string][]placement{},
	}
}

// trackLives follows the lives of every VM name after an entry: a VM
// created again under a name starts at generations none of the earlier
// lives of the name had.
func (g *gen) trackLives(t fataler) {
	t.Helper()
	now := map[string]bool{}
	for _, v := range g.s.Vms(0) {
		name := v.GetName()
		now[name] = true
		if created, ok := g.life[name]; ok && created != v.GetCreatedIndex() {
			g.endLife(name)
		}
		if _, ok := g.life[name]; !ok {
			g.life[name] = v.GetCreatedIndex()
			if _, again := g.earlier[name]; again {
				g.recreated++
			}
		}
		if e, again := g.earlier[name]; again && v.GetGeneration() <= e {
			t.Fatalf("VM %q (created at %d) is at generation %d, not above its earlier lives' %d",
				name, v.GetCreatedIndex(), v.GetGeneration(), e)
		}
		g.maxGen[name] = max(g.maxGen[name], v.GetGeneration())
		if holds(v.GetState()) {
			g.placed[name] = placement{v.GetNodeId(), v.GetGeneration()}
		}
	}
	for name := range g.life {
		if !now[name] {
			g.endLife(name)
		}
	}
}

func (g *gen) endLife(name string) {
	g.earlier[name] = max(g.earlier[name], g.maxGen[name])
	if p, ok := g.placed[name]; ok {
		g.ghosts[name] = append(g.ghosts[name], p)
		if len(g.ghosts[name]) > 4 {
			g.ghosts[name] = g.ghosts[name][1:]
		}
	}
	delete(g.life, name)
	delete(g.maxGen, name)
	delete(g.placed, name)
}

// drawImages draws the images a node offers: most of poolImages, never
// none, each needing at least 64 or 128 MiB.
func drawImages(t *rapid.T) []*apiv1.ImageInfo {
	var out []*apiv1.ImageInfo
	for i, name := range poolImages {
		if chance(t, 3, 4, "offers") {
			out = append(out, &apiv1.ImageInfo{
				Name:         name,
				Digest:       fmt.Sprintf("sha256:%02x", i),
				MinMemoryMib: sample(t, []uint64{64, 64, 128}, "min-memory"),
			})
		}
	}
	if len(out) == 0 {
		i := pick(t, len(poolImages), "image")
		out = append(out, &apiv1.ImageInfo{Name: poolImages[i], Digest: fmt.Sprintf("sha256:%02x", i), MinMemoryMib: 64})
	}
	return out
}

// registerDrawn registers node id with its capacity and drawn images.
func registerDrawn(t *rapid.T, id uint64, zone string) *apiv1.Command {
	c := nodeCapacity[id]
	cmd := registerNode(id, uint32(c[0]), c[1], map[string]string{"zone": zone})
	cmd.GetRegisterNode().Images = drawImages(t)
	return cmd
}

// offeredImages returns the images that nodes which have not left offer.
func (g *gen) offeredImages() []string {
	seen := map[string]bool{}
	for _, n := range g.s.Nodes() {
		if n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
			continue
		}
		for _, img := range n.GetImages() {
			seen[img.GetName()] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// drawImage draws the image of a VM or task: mostly one that some node
// offers ("default" sometimes spelt ""), now and then any name at all.
func (g *gen) drawImage(t *rapid.T) string {
	if offered := g.offeredImages(); len(offered) > 0 && chance(t, 19, 20, "offered") {
		img := sample(t, offered, "image")
		if img == state.DefaultImage && chance(t, 1, 2, "implicit") {
			return ""
		}
		return img
	}
	return sample(t, append(slices.Clone(poolImages), "", "nope"), "any-image")
}

// prelude names the cluster, sets the membership and registers the nodes.
func (g *gen) prelude(t *rapid.T) []step {
	var out []step
	add := func(st step) {
		g.idx++
		st.index = g.idx
		out = append(out, st)
	}
	add(step{kind: stepCommand, cmd: initCluster("blix")})
	add(step{kind: stepMembership, voters: []uint64{1, 2, 3}, learners: []uint64{4}})
	for _, id := range poolNodes {
		add(step{kind: stepCommand, cmd: registerDrawn(t, id, "a")})
	}
	return out
}

// observe learns task ids from a response, and follows the VMs' lives.
func (g *gen) observe(t fataler, resp *apiv1.Response) {
	t.Helper()
	if tk := resp.GetSubmitTask().GetTask(); tk != nil && !g.seen[tk.GetId()] {
		g.seen[tk.GetId()] = true
		g.live = append(g.live, tk.GetId())
	}
	g.trackLives(t)
}

// tasks returns the live tasks, forgetting those that ended.
func (g *gen) tasks() []*apiv1.Task {
	var out []*apiv1.Task
	kept := g.live[:0]
	for _, id := range g.live {
		tk, ok := g.s.Task(id)
		if !ok {
			continue
		}
		switch tk.GetStatus() {
		case apiv1.TaskStatus_TASK_STATUS_PENDING, apiv1.TaskStatus_TASK_STATUS_ASSIGNED, apiv1.TaskStatus_TASK_STATUS_RUNNING:
			kept = append(kept, id)
			out = append(out, tk)
		default:
			g.done = append(g.done, id)
			if len(g.done) > 8 {
				g.done = g.done[1:]
			}
		}
	}
	g.live = kept
	return out
}

func tasksWith(ts []*apiv1.Task, sts ...apiv1.TaskStatus) []*apiv1.Task {
	var out []*apiv1.Task
	for _, tk := range ts {
		if slices.Contains(sts, tk.GetStatus()) {
			out = append(out, tk)
		}
	}
	return out
}

func vmsWhere(vms []*apiv1.Vm, pred func(*apiv1.Vm) bool) []*apiv1.Vm {
	var out []*apiv1.Vm
	for _, v := range vms {
		if pred(v) {
			out = append(out, v)
		}
	}
	return out
}

func holds(st apiv1.VmState) bool {
	switch st {
	case apiv1.VmState_VM_STATE_SCHEDULED, apiv1.VmState_VM_STATE_STARTING,
		apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_STOPPING:
		return true
	}
	return false
}

// assignable: a VM that an AssignVm may place, as far as the VM goes: wanted
// running and running nowhere (pending, failed, lost, or stopped on its
// own), whatever its restart policy says.
func assignable(v *apiv1.Vm) bool {
	if v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
		return false
	}
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_PENDING, apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_LOST,
		apiv1.VmState_VM_STATE_STOPPED: // stopped on its own: a restart
		return true
	}
	return false
}

// waitsForNode is the model of VmsToPlace: an assignable VM that is pending,
// or whose restart policy restarts it — after a failure or the loss of its
// node under always or on-failure, after stopping on its own under always.
func waitsForNode(v *apiv1.Vm) bool {
	if !assignable(v) {
		return false
	}
	policy := v.GetSpec().GetRestartPolicy()
	always := policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_PENDING:
		return true
	case apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_LOST:
		return always || policy == apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
	}
	return always
}

// pick draws an int in [0, n), close to uniformly. rapid's own integer
// draws lean hard towards small values (good at finding edge cases, bad at
// honouring weights); the sum of three draws modulo n is uniform as soon as
// one of them is, and it still shrinks towards 0.
func pick(t *rapid.T, n int, label string) int {
	g := rapid.IntRange(0, n-1)
	return (g.Draw(t, label) + g.Draw(t, label) + g.Draw(t, label)) % n
}

// sample draws an element of from, close to uniformly.
func sample[E any](t *rapid.T, from []E, label string) E {
	return from[pick(t, len(from), label)]
}

// chance draws true with probability num/den.
func chance(t *rapid.T, num, den int, label string) bool {
	return pick(t, den, label) < num
}

// pickNode returns a node on which cmd passes Check, most of the time; any
// node otherwise. with sets the node id on cmd.
func (g *gen) pickNode(t *rapid.T, cmd *apiv1.Command, with func(uint64)) {
	if chance(t, 9, 10, "fitting") {
		for _, id := range rapid.Permutation(poolNodes).Draw(t, "nodes") {
			with(id)
			if g.s.Check(cmd) == nil {
				return
			}
		}
	}
	with(sample(t, poolNodes, "node"))
}

// drawStep draws the next entry of the log.
func (g *gen) drawStep(t *rapid.T) step {
	g.idx++
	if chance(t, 1, 20, "gap") {
		g.idx++
	}
	st := step{index: g.idx, kind: stepCommand}
	switch k := pick(t, 100, "kind"); {
	case k == 0:
		st.kind = stepEmpty
	case k == 1:
		st.kind = stepMembership
		configs := [][2][]uint64{
			{{1, 2, 3}, {4}},
			{{1, 2}, {3, 4}},
			{{1, 2, 3}, nil}, // removes 4, for good
		}
		if g.s.Removed(4) {
			configs = [][2][]uint64{{{1, 2, 3}, nil}, {{1, 2}, {3}}}
		}
		c := sample(t, configs, "config")
		st.voters, st.learners = c[0], c[1]
	default:
		g.drewStale = false
		st.cmd = g.drawCommand(t)
		st.stale = g.drewStale
		// A stale report goes without a client request id, so that its
		// refusal is its own and not a remembered answer.
		if !st.stale && chance(t, 1, 4, "has-id") {
			st.cmd.ClientRequestId = clientID(pick(t, clientIDPool, "id"))
		}
	}
	return st
}

// drawCommand draws a command, mostly valid, mostly on existing records.
func (g *gen) drawCommand(t *rapid.T) *apiv1.Command {
	bad := chance(t, 1, 25, "bad")
	vms := g.s.Vms(0)
	existing := func() string {
		if len(vms) > 0 && chance(t, 9, 10, "existing") {
			return sample(t, vms, "vm").GetName()
		}
		return sample(t, poolVMs, "name")
	}
	k := pick(t, 100, "op")
	switch {
	case k < 2:
		switch {
		case bad && chance(t, 1, 2, "no-op"):
			return &apiv1.Command{ProposedUnixNano: int64(g.idx)}
		case bad:
			return initCluster(sample(t, []string{"", "other"}, "cluster"))
		}
		return initCluster("blix")

	case k < 6:
		cmd := registerDrawn(t, sample(t, poolNodes, "node"), sample(t, []string{"a", "b"}, "zone"))
		reg := cmd.GetRegisterNode()
		if chance(t, 1, 2, "worker") {
			reg.Role = apiv1.NodeRole_NODE_ROLE_WORKER
		}
		if bad {
			switch pick(t, 4, "bad-node") {
			case 0:
				reg.Role = apiv1.NodeRole(99)
			case 1:
				reg.Capacity.MemoryMib = 0
			case 2:
				reg.Images = append(reg.Images, &apiv1.ImageInfo{Name: "Not_An_Image"})
			default:
				reg.Images[0].Digest = strings.Repeat("d", state.MaxDigestLen+1)
			}
		}
		return cmd

	case k < 19:
		var free []string
		for _, n := range poolVMs {
			if _, ok := g.s.Vm(n); !ok {
				free = append(free, n)
			}
		}
		if len(free) == 0 && len(vms) > 0 && chance(t, 3, 4, "full") {
			return deleteVm(sample(t, vms, "vm").GetName())
		}
		name := sample(t, poolVMs, "name")
		if len(free) > 0 && chance(t, 9, 10, "free") {
			name = sample(t, free, "free-name")
		}
		spec := vmSpec(uint32(1+pick(t, 4, "vcpus")),
			sample(t, []uint64{256, 512, 1024, 2048}, "mem"))
		spec.Image = g.drawImage(t)
		switch pick(t, 25, "size") {
		case 0:
			spec.MemoryMib = sample(t, []uint64{32, 64, 100}, "small-mem") // at or below what images need
		case 1:
			if chance(t, 1, 2, "huge-vcpus") {
				spec.Vcpus = state.MaxWorkloadVcpus // the most a VM may have; more than any node has
			} else {
				spec.MemoryMib = 32768
			}
		}
		if chance(t, 1, 4, "cmdline") {
			spec.KernelCmdline = sample(t, []string{"console=ttyS0", "console=ttyS0 reboot=k panic=1", "init=/sbin/init rw quiet"}, "cmdline")
		}
		spec.RestartPolicy = apiv1.RestartPolicy(pick(t, 4, "restart"))
		if chance(t, 1, 6, "constrained") {
			spec.Constraints = map[string]string{"zone": sample(t, []string{"a", "b"}, "zone")}
		}
		if chance(t, 1, 4, "anti") {
			spec.AntiAffinityGroup = sample(t, []string{"g1", "g2"}, "group")
		}
		if bad {
			switch pick(t, 6, "bad-vm") {
			case 0:
				spec.MemoryMib = 0
			case 1:
				spec.RestartPolicy = apiv1.RestartPolicy(42)
			case 2:
				name = "Not_A_Name"
			case 3:
				spec.Vcpus = state.MaxWorkloadVcpus + 1
			case 4:
				spec.KernelCmdline = "console=ttyS0\ninit=/bin/sh"
			default:
				spec.Image = "\xff"
			}
		}
		cmd := createVm(name, spec, chance(t, 4, 5, "start"))
		cmd.ProposedUnixNano = int64(g.idx) * 1000
		return cmd

	case k < 25:
		name := existing()
		if bad {
			name = "-"
		}
		return startVm(name)

	case k < 31:
		name := existing()
		if bad {
			name = "-"
		}
		return stopVm(name)

	case k < 36:
		name := existing()
		if bad {
			name = ""
		}
		return deleteVm(name)

	case k < 51:
		// Mostly what a placer would place (what VmsToPlace lists), now and
		// then any VM the state lets an assignment place, whatever its
		// restart policy says.
		cands := vmsWhere(vms, waitsForNode)
		if len(cands) == 0 || chance(t, 1, 10, "unlisted") {
			if all := vmsWhere(vms, assignable); len(all) > 0 {
				cands = all
			}
		}
		if len(cands) == 0 {
			if stopped := vmsWhere(vms, func(v *apiv1.Vm) bool { return v.GetState() == apiv1.VmState_VM_STATE_STOPPED }); len(stopped) > 0 {
				return startVm(sample(t, stopped, "vm").GetName())
			}
			return startVm(existing())
		}
		v := sample(t, cands, "vm")
		gen := v.GetGeneration()
		if chance(t, 1, 10, "stale") {
			gen++
		}
		cmd := assignVm(v.GetName(), 0, gen)
		g.pickNode(t, cmd, func(id uint64) { cmd.GetAssignVm().NodeId = id })
		if bad {
			cmd.GetAssignVm().NodeId = 9
		}
		return cmd

	case k < 65:
		// Now and then the node of an earlier life of a name that lives
		// again reports on it, as if it had missed the end.
		var ghosts []*apiv1.Command
		for _, v := range vms {
			for _, p := range g.ghosts[v.GetName()] {
				ghosts = append(ghosts, reportVm(v.GetName(), p.node, p.gen, apiv1.VmState_VM_STATE_RUNNING))
			}
		}
		if len(ghosts) > 0 && chance(t, 1, 8, "ghost") {
			cmd := sample(t, ghosts, "ghost")
			cmd.GetReportVm().State = sample(t, []apiv1.VmState{
				apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_STOPPED, apiv1.VmState_VM_STATE_FAILED,
			}, "ghost-state")
			g.drewStale = true
			g.staleReports++
			return cmd
		}
		cands := vmsWhere(vms, func(v *apiv1.Vm) bool { return holds(v.GetState()) })
		if len(cands) == 0 {
			return startVm(existing())
		}
		v := sample(t, cands, "vm")
		node, gen := v.GetNodeId(), v.GetGeneration()
		if chance(t, 1, 10, "stale") {
			if chance(t, 1, 2, "stale-gen") {
				gen--
			} else {
				node = sample(t, poolNodes, "node")
			}
		}
		var st apiv1.VmState
		switch {
		case v.GetState() != apiv1.VmState_VM_STATE_SCHEDULED && v.GetState() != apiv1.VmState_VM_STATE_STOPPING && chance(t, 1, 8, "repeat"):
			st = v.GetState() // a node repeats its last report
		case v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING && chance(t, 7, 10, "obey"):
			st = apiv1.VmState_VM_STATE_STOPPED
		default:
			st = sample(t, []apiv1.VmState{
				apiv1.VmState_VM_STATE_STARTING, apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_RUNNING,
				apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_STOPPED, apiv1.VmState_VM_STATE_STOPPED,
				apiv1.VmState_VM_STATE_FAILED,
			}, "state")
		}
		cmd := reportVm(v.GetName(), node, gen, st)
		cmd.ProposedUnixNano = int64(g.idx) * 1000
		if chance(t, 2, 3, "console") {
			cmd.GetReportVm().ConsoleTail = strings.Repeat(fmt.Sprintf("[%d] line\n", g.idx), pick(t, 4, "lines"))
		}
		if bad {
			switch pick(t, 3, "bad-report") {
			case 0:
				cmd.GetReportVm().State = apiv1.VmState(77)
			case 1:
				cmd.GetReportVm().Reason = "\xc3\x28"
			default:
				cmd.GetReportVm().ConsoleTail = strings.Repeat("x", state.MaxConsoleTailLen+1)
			}
		}
		return cmd

	case k < 74:
		spec := taskSpec(sample(t, []string{"make", "echo", "true"}, "command"),
			uint32(1+pick(t, 2, "vcpus")), sample(t, []uint64{64, 256, 1024}, "mem"))
		spec.Image = g.drawImage(t)
		spec.TimeoutMs = sample(t, []uint64{0, 60000, 60000, state.MaxTaskTimeoutMs}, "timeout")
		if chance(t, 1, 25, "huge") {
			if chance(t, 1, 2, "huge-gpu") {
				spec.Resources.Features = []string{"gpu"} // no node has one
			} else {
				spec.Resources.DiskMib = 200000 // more than any node has
			}
		}
		if bad {
			switch pick(t, 4, "bad-task") {
			case 0:
				spec.Command = ""
			case 1:
				spec.Resources.MemoryMib = 0
			case 2:
				spec.Resources.Vcpus = state.MaxWorkloadVcpus + 1
			default:
				spec.TimeoutMs = state.MaxTaskTimeoutMs + 1
			}
		}
		return submitTask(spec)

	case k < 78:
		live := g.tasks()
		if len(live) > 0 && chance(t, 4, 5, "live") {
			return cancelTask(sample(t, live, "task").GetId())
		}
		if len(g.done) > 0 {
			return cancelTask(sample(t, g.done, "ended"))
		}
		return cancelTask(g.idx + 1000)

	case k < 88:
		pending := tasksWith(g.tasks(), apiv1.TaskStatus_TASK_STATUS_PENDING)
		if len(pending) == 0 {
			return submitTask(taskSpec("true", 1, 64))
		}
		tk := sample(t, pending, "task")
		cmd := assignTask(tk.GetId(), 0)
		g.pickNode(t, cmd, func(id uint64) { cmd.GetAssignTask().NodeId = id })
		return cmd

	default:
		cands := tasksWith(g.tasks(), apiv1.TaskStatus_TASK_STATUS_ASSIGNED, apiv1.TaskStatus_TASK_STATUS_RUNNING)
		for _, id := range g.done {
			if tk, ok := g.s.Task(id); ok && tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_CANCELLED && tk.GetNodeId() != 0 {
				cands = append(cands, tk)
			}
		}
		if len(cands) == 0 {
			return submitTask(taskSpec("echo", 1, 64))
		}
		tk := sample(t, cands, "task")
		node, attempt := tk.GetNodeId(), tk.GetAttempt()
		if chance(t, 1, 10, "stale") {
			attempt++
		}
		var sts []apiv1.TaskStatus
		switch tk.GetStatus() {
		case apiv1.TaskStatus_TASK_STATUS_ASSIGNED:
			sts = []apiv1.TaskStatus{apiv1.TaskStatus_TASK_STATUS_RUNNING, apiv1.TaskStatus_TASK_STATUS_RUNNING, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, apiv1.TaskStatus_TASK_STATUS_FAILED}
		case apiv1.TaskStatus_TASK_STATUS_RUNNING:
			sts = []apiv1.TaskStatus{apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, apiv1.TaskStatus_TASK_STATUS_FAILED, apiv1.TaskStatus_TASK_STATUS_RUNNING}
		default:
			sts = []apiv1.TaskStatus{apiv1.TaskStatus_TASK_STATUS_SUCCEEDED, apiv1.TaskStatus_TASK_STATUS_FAILED}
		}
		st := sample(t, sts, "status")
		var result *apiv1.TaskResult
		if st != apiv1.TaskStatus_TASK_STATUS_RUNNING {
			result = &apiv1.TaskResult{
				ExitCode:         int32(pick(t, 4, "exit")),
				OutputTail:       []byte(strings.Repeat("o", pick(t, 65, "output"))),
				StartedUnixNano:  int64(g.idx),
				FinishedUnixNano: int64(g.idx) + 5,
			}
		}
		cmd := reportTask(tk.GetId(), node, attempt, st, result)
		if bad {
			cmd.GetReportTask().Status = apiv1.TaskStatus(99)
		}
		return cmd
	}
}

// ---- checks -----------------------------------------------------------------

// checkInvariants checks what must hold after every entry.
func checkInvariants(t fataler, s *state.State) {
	t.Helper()
	nodes := map[uint64]*apiv1.Node{}
	for _, n := range s.Nodes() {
		nodes[n.GetId()] = n
		used := s.Allocated(n.GetId())
		if used.GetVcpus() > n.GetCapacity().GetVcpus() || used.GetMemoryMib() > n.GetCapacity().GetMemoryMib() {
			t.Fatalf("node %d over capacity: %v allocated of %v", n.GetId(), used, n.GetCapacity())
		}
		for i, img := range n.GetImages() {
			if !state.ValidImageName(img.GetName()) || (i > 0 && n.GetImages()[i-1].GetName() >= img.GetName()) {
				t.Fatalf("node %d images not valid, sorted and unique: %v", n.GetId(), n.GetImages())
			}
		}
	}
	vms := s.Vms(0)
	for _, id := range append(slices.Clone(poolNodes), 9) {
		want := vmsWhere(vms, func(v *apiv1.Vm) bool { return v.GetNodeId() == id && holds(v.GetState()) })
		if got := s.VmsOn(id); !protoSliceEqual(got, want) {
			t.Fatalf("VmsOn(%d) = %v, want %v", id, vmNames(got), vmNames(want))
		}
	}
	toPlace := vmsWhere(vms, waitsForNode)
	if got := s.VmsToPlace(); !protoSliceEqual(got, toPlace) {
		t.Fatalf("VmsToPlace() = %v, want %v", vmNames(got), vmNames(toPlace))
	}
	for _, v := range vms {
		// Generations start at the index of the VM's creation and go up by
		// one with each placement.
		if v.GetGeneration() < v.GetCreatedIndex() {
			t.Fatalf("VM %q created at %d is at generation %d", v.GetName(), v.GetCreatedIndex(), v.GetGeneration())
		}
		placements := v.GetGeneration() - v.GetCreatedIndex()
		// The first placement is never a restart: a VM only fails, stops or
		// is lost once it has been placed.
		if r := v.GetRestarts(); (placements == 0 && r != 0) || (placements > 0 && uint64(r) >= placements) {
			t.Fatalf("VM %q restarted %d times in %d placements", v.GetName(), r, placements)
		}
		for i, e := range v.GetEvents() {
			if e.GetGeneration() < v.GetCreatedIndex() || e.GetGeneration() > v.GetGeneration() ||
				(i > 0 && e.GetGeneration() < v.GetEvents()[i-1].GetGeneration()) {
				t.Fatalf("VM %q (created at %d, at generation %d) has events at generations out of order: %v",
					v.GetName(), v.GetCreatedIndex(), v.GetGeneration(), v.GetEvents())
			}
		}
		if len(v.GetConsoleTail()) > state.MaxConsoleTailLen {
			t.Fatalf("VM %q keeps %d bytes of console", v.GetName(), len(v.GetConsoleTail()))
		}
	}
	for _, v := range vms {
		if holds(v.GetState()) {
			if _, ok := nodes[v.GetNodeId()]; !ok {
				t.Fatalf("VM %q is %v on node %d, which does not exist", v.GetName(), v.GetState(), v.GetNodeId())
			}
			if v.GetGeneration() <= v.GetCreatedIndex() {
				t.Fatalf("VM %q is %v at generation %d, never placed since its creation at %d",
					v.GetName(), v.GetState(), v.GetGeneration(), v.GetCreatedIndex())
			}
		}
		if len(v.GetEvents()) > state.MaxVmEvents {
			t.Fatalf("VM %q has %d events", v.GetName(), len(v.GetEvents()))
		}
		if n := len(v.GetEvents()); n > 0 && v.GetEvents()[n-1].GetState() != v.GetState() {
			t.Fatalf("VM %q is %v but its last event says %v", v.GetName(), v.GetState(), v.GetEvents()[n-1].GetState())
		}
		if v.GetUpdatedIndex() > s.AppliedIndex() || v.GetCreatedIndex() > v.GetUpdatedIndex() {
			t.Fatalf("VM %q indexes: created %d updated %d applied %d", v.GetName(), v.GetCreatedIndex(), v.GetUpdatedIndex(), s.AppliedIndex())
		}
	}
	if n := s.RequestRecords(); n > state.MaxRequestRecords {
		t.Fatalf("%d request records", n)
	}
}

// checkPlacement checks that what a placer asks of the state — CanPlaceVm
// for the VMs waiting for a node, CanPlaceWith for the first pending tasks,
// both with nothing reserved — answers, on every node, exactly what Check
// answers of the assignment it would then propose.
func checkPlacement(t fataler, s *state.State) {
	t.Helper()
	nodes := append(slices.Clone(poolNodes), 9)
	for _, v := range s.VmsToPlace() {
		for _, id := range nodes {
			placeErr := s.CanPlaceVm(id, v.GetName(), nil)
			if d := sameErr(placeErr, s.Check(assignVm(v.GetName(), id, v.GetGeneration()))); d != "" {
				t.Fatalf("VM %q on node %d: CanPlaceVm and Check(AssignVm) disagree: %s", v.GetName(), id, d)
			}
		}
	}
	for _, tk := range s.PendingTasks(4) {
		for _, id := range nodes {
			placeErr := s.CanPlaceWith(id, tk.GetSpec().GetImage(), tk.GetSpec().GetResources(), nil)
			if d := sameErr(placeErr, s.Check(assignTask(tk.GetId(), id))); d != "" {
				t.Fatalf("task %d on node %d: CanPlaceWith and Check(AssignTask) disagree: %s", tk.GetId(), id, d)
			}
		}
	}
}

// checkTasks checks the task records (expensive: copies every task).
func checkTasks(t fataler, s *state.State) {
	t.Helper()
	for _, tk := range s.Tasks(0) {
		if tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_ASSIGNED || tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING {
			if _, ok := s.Node(tk.GetNodeId()); !ok || tk.GetAttempt() == 0 {
				t.Fatalf("task %v is active on no node", tk)
			}
		}
		if tk.GetId() != tk.GetSubmittedIndex() {
			t.Fatalf("task id %d submitted at %d", tk.GetId(), tk.GetSubmittedIndex())
		}
	}
	all := s.Tasks(0)
	pending := tasksWith(all, apiv1.TaskStatus_TASK_STATUS_PENDING)
	if got := s.PendingTasks(0); !protoSliceEqual(got, pending) {
		t.Fatalf("PendingTasks() = %d tasks, want %d", len(got), len(pending))
	}
	// From every pending task's id, and from past them: the same tasks,
	// rotated to start there.
	for i := 0; i <= len(pending); i++ {
		from := uint64(math.MaxUint64)
		if i < len(pending) {
			from = pending[i].GetId()
		}
		want := append(slices.Clone(pending[i:]), pending[:i]...)
		if got := slices.Collect(s.PendingTasksFrom(from)); !protoSliceEqual(got, want) {
			t.Fatalf("PendingTasksFrom(%d) = %v, want %v", from, taskIDs(got), taskIDs(want))
		}
	}
	for _, id := range append(slices.Clone(poolNodes), 9) {
		var want []*apiv1.Task
		for _, tk := range all {
			switch {
			case tk.GetNodeId() != id:
			case tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_ASSIGNED, tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_RUNNING:
				want = append(want, tk)
			case tk.GetStatus() == apiv1.TaskStatus_TASK_STATUS_CANCELLED && tk.GetResult().GetFinishedUnixNano() == 0:
				want = append(want, tk)
			}
		}
		if got := s.TasksOn(id); !protoSliceEqual(got, want) {
			t.Fatalf("TasksOn(%d) = %v, want %v", id, got, want)
		}
		// What a node holds is what the helpers say is on it.
		sum := &apiv1.Resources{}
		for _, v := range s.VmsOn(id) {
			sum.Vcpus += v.GetSpec().GetVcpus()
			sum.MemoryMib += v.GetSpec().GetMemoryMib()
		}
		for _, tk := range want {
			sum.Vcpus += tk.GetSpec().GetResources().GetVcpus()
			sum.MemoryMib += tk.GetSpec().GetResources().GetMemoryMib()
			sum.DiskMib += tk.GetSpec().GetResources().GetDiskMib()
		}
		if got := s.Allocated(id); !proto.Equal(got, sum) {
			t.Fatalf("Allocated(%d) = %v, but its VMs and tasks hold %v", id, got, sum)
		}
	}
}

func vmNames(vms []*apiv1.Vm) []string {
	out := make([]string, len(vms))
	for i, v := range vms {
		out[i] = v.GetName()
	}
	return out
}

// ---- a model of the workload rules -----------------------------------------

// placeable is what the rules say of a workload of image needing need,
// given the nodes: 0 and "" when some node could hold it, else the code and
// field of the refusal. memField and field name the spec's memory and whole
// request; the image is always "spec.image".
func placeable(nodes []*apiv1.Node, image string, need *apiv1.Resources, memField, field string) (apiv1.ErrorCode, string) {
	image = state.ImageOf(image)
	type offer struct {
		min uint64
		c   *apiv1.Resources
	}
	var offers []offer
	for _, n := range nodes {
		if n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
			continue
		}
		for _, img := range n.GetImages() {
			if img.GetName() == image {
				offers = append(offers, offer{img.GetMinMemoryMib(), n.GetCapacity()})
			}
		}
	}
	if len(offers) == 0 {
		return codeNotFound, "spec.image"
	}
	least := offers[0].min
	for _, o := range offers {
		least = min(least, o.min)
	}
	if need.GetMemoryMib() < least {
		return codeInvalid, memField
	}
	for _, o := range offers {
		hasAll := true
		for _, f := range need.GetFeatures() {
			hasAll = hasAll && slices.Contains(o.c.GetFeatures(), f)
		}
		if hasAll && need.GetMemoryMib() >= o.min && need.GetVcpus() <= o.c.GetVcpus() &&
			need.GetMemoryMib() <= o.c.GetMemoryMib() && need.GetDiskMib() <= o.c.GetDiskMib() {
			return 0, ""
		}
	}
	return codeExhausted, field
}

func offers(n *apiv1.Node, image string) bool {
	return slices.ContainsFunc(n.GetImages(), func(img *apiv1.ImageInfo) bool { return img.GetName() == state.ImageOf(image) })
}

// expect looks at cmd before it applies to s and returns a check of what
// the workload rules say of its outcome, or nil when it knows nothing.
func expect(s *state.State, cmd *apiv1.Command) func(t fataler, s *state.State, err error) {
	wantOutcome := func(code apiv1.ErrorCode, field string) func(t fataler, s *state.State, err error) {
		return func(t fataler, _ *state.State, err error) {
			t.Helper()
			if code == 0 {
				if err != nil {
					t.Fatalf("%v refused (%v), but some node could hold it", cmd, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("%v accepted, want code %v on %s", cmd, code, field)
			}
			wantErr(t, err, code, field)
		}
	}
	switch op := cmd.GetOp().(type) {
	case *apiv1.Command_CreateVm:
		if _, taken := s.Vm(op.CreateVm.GetName()); taken || state.Validate(cmd) != nil {
			return nil
		}
		spec := op.CreateVm.GetSpec()
		return wantOutcome(placeable(s.Nodes(), spec.GetImage(), state.VmNeeds(spec), "spec.memory_mib", "spec"))
	case *apiv1.Command_SubmitTask:
		if state.Validate(cmd) != nil {
			return nil
		}
		spec := op.SubmitTask.GetSpec()
		return wantOutcome(placeable(s.Nodes(), spec.GetImage(), spec.GetResources(), "spec.resources.memory_mib", "spec.resources"))
	case *apiv1.Command_AssignVm:
		before, _ := s.Vm(op.AssignVm.GetName())
		node, _ := s.Node(op.AssignVm.GetNodeId())
		return func(t fataler, s *state.State, err error) {
			t.Helper()
			if err != nil {
				return
			}
			if !offers(node, before.GetSpec().GetImage()) {
				t.Fatalf("%v placed VM of image %q on a node offering %v", cmd, before.GetSpec().GetImage(), node.GetImages())
			}
			after, _ := s.Vm(op.AssignVm.GetName())
			restarts := before.GetRestarts()
			if before.GetState() != apiv1.VmState_VM_STATE_PENDING {
				restarts++
			}
			if after.GetRestarts() != restarts || after.GetGeneration() != before.GetGeneration()+1 ||
				after.GetState() != apiv1.VmState_VM_STATE_SCHEDULED || after.GetNodeId() != node.GetId() {
				t.Fatalf("%v: VM %v, was %v", cmd, after, before)
			}
		}
	case *apiv1.Command_AssignTask:
		before, _ := s.Task(op.AssignTask.GetId())
		node, _ := s.Node(op.AssignTask.GetNodeId())
		return func(t fataler, _ *state.State, err error) {
			t.Helper()
			if err == nil && !offers(node, before.GetSpec().GetImage()) {
				t.Fatalf("%v placed task of image %q on a node offering %v", cmd, before.GetSpec().GetImage(), node.GetImages())
			}
		}
	case *apiv1.Command_ReportVm:
		before, ok := s.Vm(op.ReportVm.GetName())
		r := op.ReportVm
		return func(t fataler, s *state.State, err error) {
			t.Helper()
			if err != nil || !ok {
				return
			}
			after, still := s.Vm(r.GetName())
			late := before.GetState() == apiv1.VmState_VM_STATE_STOPPING &&
				(r.GetState() == apiv1.VmState_VM_STATE_STARTING || r.GetState() == apiv1.VmState_VM_STATE_RUNNING)
			switch {
			case late || (before.GetState() == r.GetState() && before.GetReason() == r.GetReason()):
				if !still || !proto.Equal(before, after) {
					t.Fatalf("%v should have changed nothing: %v became %v", cmd, before, after)
				}
			case !still:
			case r.GetState() == apiv1.VmState_VM_STATE_FAILED:
				if after.GetConsoleTail() != r.GetConsoleTail() {
					t.Fatalf("%v: console tail %q, want %q", cmd, after.GetConsoleTail(), r.GetConsoleTail())
				}
			default:
				if after.GetConsoleTail() != before.GetConsoleTail() {
					t.Fatalf("%v changed the console tail %q to %q", cmd, before.GetConsoleTail(), after.GetConsoleTail())
				}
			}
		}
	}
	return nil
}

// sameErr reports how two errors returned by Apply/Check differ, or "".
func sameErr(a, b error) string {
	if (a == nil) != (b == nil) {
		return fmt.Sprintf("%v vs %v", a, b)
	}
	if a == nil {
		return ""
	}
	var ea, eb *state.Error
	if !errors.As(a, &ea) || !errors.As(b, &eb) {
		return fmt.Sprintf("not *state.Error: %T %T", a, b)
	}
	if ea.Code != eb.Code || ea.Field != eb.Field || ea.Msg != eb.Msg {
		return fmt.Sprintf("%+v vs %+v", ea, eb)
	}
	return ""
}

// compareStates checks that two states hold the same records, query by query.
func compareStates(t fataler, a, b *state.State) {
	t.Helper()
	if a.AppliedIndex() != b.AppliedIndex() {
		t.Fatalf("applied index %d vs %d", a.AppliedIndex(), b.AppliedIndex())
	}
	if !proto.Equal(a.Cluster(), b.Cluster()) {
		t.Fatalf("cluster %v vs %v", a.Cluster(), b.Cluster())
	}
	if d := viewOf(a).diff(viewOf(b)); d != "" {
		t.Fatalf("states differ: %s", d)
	}
	for _, id := range append(poolNodes, 5, 9) {
		na, oka := a.Node(id)
		nb, okb := b.Node(id)
		if oka != okb || !proto.Equal(na, nb) || a.Removed(id) != b.Removed(id) {
			t.Fatalf("node %d: %v %v vs %v %v", id, na, oka, nb, okb)
		}
		if !proto.Equal(a.Allocated(id), b.Allocated(id)) {
			t.Fatalf("allocated on %d: %v vs %v", id, a.Allocated(id), b.Allocated(id))
		}
		if !protoSliceEqual(a.VmsOn(id), b.VmsOn(id)) || !protoSliceEqual(a.TasksOn(id), b.TasksOn(id)) {
			t.Fatalf("workloads on %d differ", id)
		}
	}
	if !protoSliceEqual(a.VmsToPlace(), b.VmsToPlace()) || !protoSliceEqual(a.PendingTasks(0), b.PendingTasks(0)) {
		t.Fatalf("workloads waiting for a node differ")
	}
	for _, name := range poolVMs {
		va, oka := a.Vm(name)
		vb, okb := b.Vm(name)
		if oka != okb || !proto.Equal(va, vb) {
			t.Fatalf("VM %q: %v vs %v", name, va, vb)
		}
	}
	for _, tk := range a.Tasks(0) {
		tb, ok := b.Task(tk.GetId())
		if !ok || !proto.Equal(tk, tb) {
			t.Fatalf("task %d: %v vs %v", tk.GetId(), tk, tb)
		}
	}
	for i := 0; i < clientIDPool; i++ {
		ra, oka := a.Response(clientID(i))
		rb, okb := b.Response(clientID(i))
		if oka != okb || !proto.Equal(ra, rb) {
			t.Fatalf("Response(%s): %v %v vs %v %v", clientID(i), ra, oka, rb, okb)
		}
	}
}

func mustSnapshot(t fataler, s *state.State) []byte {
	t.Helper()
	b, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return b
}

// roomView is what a placement that found no room depended on: the
// nodes' records and what is placed on each, with the RoomVersion then.
type roomView struct {
	version   uint64
	nodes     []*apiv1.Node
	allocated map[uint64]*apiv1.Resources
	pending   map[uint64]bool
}

func roomOf(s *state.State) roomView {
	r := roomView{version: s.RoomVersion(), nodes: s.Nodes(), allocated: map[uint64]*apiv1.Resources{}, pending: map[uint64]bool{}}
	for _, n := range r.nodes {
		r.allocated[n.GetId()] = s.Allocated(n.GetId())
	}
	for _, tk := range s.PendingTasks(0) {
		r.pending[tk.GetId()] = true
	}
	return r
}

// check fails t when cmd may have made room (a node's record changed, or
// a node holds less than before) and RoomVersion stayed the same: a
// placement blocked for want of room would then wait for nothing. Nor may
// a task wait again (not submitted by cmd) without changing it: a placer
// that went past the task's id would not look at it again.
func (r roomView) check(t fataler, s *state.State, cmd *apiv1.Command) {
	t.Helper()
	if s.RoomVersion() != r.version {
		return
	}
	for _, tk := range s.PendingTasks(0) {
		if !r.pending[tk.GetId()] && tk.GetId() != s.AppliedIndex() {
			t.Fatalf("%v made task %d wait again but did not change RoomVersion (%d)", cmd, tk.GetId(), r.version)
		}
	}
	after := s.Nodes()
	if !protoSliceEqual(after, r.nodes) {
		t.Fatalf("%v changed the nodes' records but not RoomVersion (%d)", cmd, r.version)
	}
	for _, n := range after {
		a, b := s.Allocated(n.GetId()), r.allocated[n.GetId()]
		if a.GetVcpus() < b.GetVcpus() || a.GetMemoryMib() < b.GetMemoryMib() || a.GetDiskMib() < b.GetDiskMib() {
			t.Fatalf("%v freed room on node %d (%v, was %v) but did not change RoomVersion (%d)", cmd, n.GetId(), a, b, r.version)
		}
	}
}

// applyChecked applies one step to s and checks everything that can be
// checked about a single step. It returns the response and error. With
// untouched set, a rejected command is also checked to have left every record
// as it was (two snapshots: the costliest check, so callers sample it).
func applyChecked(t fataler, s *state.State, st step, untouched bool) (*apiv1.Response, error) {
	t.Helper()
	if st.kind != stepCommand {
		_, _ = st.apply(s)
		if s.AppliedIndex() != st.index {
			t.Fatalf("AppliedIndex = %d after entry %d", s.AppliedIndex(), st.index)
		}
		return nil, nil
	}
	id := st.cmd.GetClientRequestId()
	var stored *apiv1.Response
	dup := false
	if id != "" {
		stored, dup = s.Response(id)
	}
	checkErr := s.Check(st.cmd)
	var before *recordsKey
	if untouched && checkErr != nil && id == "" {
		before = keyOf(t, s)
	}
	var expected func(fataler, *state.State, error)
	if !dup {
		expected = expect(s, st.cmd)
	}
	room := roomOf(s)

	resp, err := st.apply(s)
	room.check(t, s, st.cmd)

	if s.AppliedIndex() != st.index {
		t.Fatalf("AppliedIndex = %d after entry %d", s.AppliedIndex(), st.index)
	}
	if resp == nil {
		t.Fatalf("Apply(%d, %v) returned a nil response", st.index, st.cmd)
	}
	if dup {
		if checkErr != nil {
			t.Fatalf("Check refused a retry of %q: %v", id, checkErr)
		}
		if err != nil || !proto.Equal(resp, stored) {
			t.Fatalf("retry of %q: %v, %v; want the stored %v", id, resp, err, stored)
		}
		return resp, err
	}
	if d := sameErr(checkErr, err); d != "" {
		t.Fatalf("Check and Apply disagree on %v: %s", st.cmd, d)
	}
	if err != nil {
		var se *state.Error
		if !errors.As(err, &se) {
			t.Fatalf("error %v is %T", err, err)
		}
		if !proto.Equal(resp.GetError(), se.Proto()) || resp.GetKind() != nil {
			t.Fatalf("rejected response %v, error %v", resp, err)
		}
		if before != nil {
			if after := keyOf(t, s); !before.equal(after) {
				t.Fatalf("rejected %v (%v) changed the state", st.cmd, err)
			}
		}
	} else if resp.GetError() != nil {
		t.Fatalf("accepted %v with a response error %v", st.cmd, resp.GetError())
	}
	if expected != nil {
		expected(t, s, err)
	}
	if id != "" {
		if got, ok := s.Response(id); !ok || !proto.Equal(got, resp) {
			t.Fatalf("Response(%q) = %v, %v; want %v", id, got, ok, resp)
		}
	}
	return resp, err
}

// recordsKey is a state's snapshot split into its cluster record, with the
// applied index zeroed, and the bytes of everything after it: a cheap exact
// comparison of all records but the applied index. It relies on the
// deterministic marshalling writing fields in number order (version 1,
// cluster 2, then the records).
type recordsKey struct {
	head    []byte // everything before the cluster field
	cluster *apiv1.Cluster
	rest    []byte
}

func keyOf(t fataler, s *state.State) *recordsKey {
	t.Helper()
	b := mustSnapshot(t, s)
	pos := 0
	for pos < len(b) {
		num, typ, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			t.Fatalf("snapshot: bad tag at %d", pos)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[pos+n:])
		if m < 0 {
			t.Fatalf("snapshot: bad field %d at %d", num, pos)
		}
		if num == 2 {
			v, _ := protowire.ConsumeBytes(b[pos+n:])
			var c apiv1.Cluster
			if err := proto.Unmarshal(v, &c); err != nil {
				t.Fatalf("snapshot cluster: %v", err)
			}
			c.AppliedIndex = 0
			return &recordsKey{head: b[:pos], cluster: &c, rest: b[pos+n+m:]}
		}
		pos += n + m
	}
	t.Fatalf("snapshot has no cluster field")
	return nil
}

func (k *recordsKey) equal(o *recordsKey) bool {
	return bytes.Equal(k.head, o.head) && proto.Equal(k.cluster, o.cluster) && bytes.Equal(k.rest, o.rest)
}

// ---- properties -------------------------------------------------------------

// outcome is what Apply returned for one entry of the log.
type outcome struct {
	resp *apiv1.Response
	err  error
}

// run is one random sequence applied to a fresh state.
type run struct {
	s        *state.State
	g        *gen
	log      []step
	outcomes []outcome
	accepted int // commands applied (response without error)
	total    int // commands
	byOp     map[string][2]int
}

// opName names a command's operation ("create_vm"), for statistics.
func opName(cmd *apiv1.Command) string {
	if cmd.GetOp() == nil {
		return "none"
	}
	return string(cmd.ProtoReflect().WhichOneof(cmd.ProtoReflect().Descriptor().Oneofs().ByName("op")).Name())
}

// runSequence applies the prelude and then n random entries to a fresh state,
// checking each step and the invariants after it. after, if set, is called
// after each random entry.
func runSequence(t *rapid.T, n int, after func(s *state.State, i int, st step, o outcome)) *run {
	s := state.New()
	r := &run{s: s, g: newGen(s), byOp: map[string][2]int{}}
	for _, st := range r.g.prelude(t) {
		resp, err := applyChecked(t, s, st, true)
		if err != nil {
			t.Fatalf("prelude %v: %v", st.cmd, err)
		}
		r.log = append(r.log, st)
		r.outcomes = append(r.outcomes, outcome{resp, err})
	}
	for i := 0; i < n; i++ {
		st := r.g.drawStep(t)
		resp, err := applyChecked(t, s, st, i%3 == 0)
		if st.kind == stepCommand {
			r.total++
			c := r.byOp[opName(st.cmd)]
			if resp.GetError() == nil {
				r.accepted++
				c[0]++
			}
			c[1]++
			r.byOp[opName(st.cmd)] = c
			r.g.observe(t, resp)
			if st.stale {
				// A report from an earlier life of the name never passes
				// for one of this life.
				wantErr(t, err, codePrecond, "generation")
			}
		}
		r.log = append(r.log, st)
		r.outcomes = append(r.outcomes, outcome{resp, err})
		checkInvariants(t, s)
		if i%3 == 0 { // a sample: it costs a Check per VM or task and node
			checkPlacement(t, s)
		}
		if after != nil {
			after(s, i, st, outcome{resp, err})
		}
	}
	checkTasks(t, s)
	return r
}

// sameOutcome checks that two applications of one entry answered alike.
func sameOutcome(t fataler, st step, a, b outcome) {
	t.Helper()
	if !proto.Equal(a.resp, b.resp) {
		t.Fatalf("entry %d %v: responses differ:\n%v\n%v", st.index, st.cmd, a.resp, b.resp)
	}
	if d := sameErr(a.err, b.err); d != "" {
		t.Fatalf("entry %d %v: errors differ: %s", st.index, st.cmd, d)
	}
}

func TestSnapshotRestoreProperty(t *testing.T) {
	// Few ended tasks kept, so that runs forget tasks, and the restored
	// copy must forget the same ones.
	t.Cleanup(state.SetMaxEndedTasks(5))
	var accepted, total, runs, recreated, staleReports int
	byOp := map[string][2]int{}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(200, 2000).Draw(t, "n")
		// A copy restored at a random point follows the rest of the log
		// alongside the original.
		restoreAt := rapid.IntRange(0, n-1).Draw(t, "restore-at")
		var mid *state.State
		orig := runSequence(t, n, func(s *state.State, i int, st step, o outcome) {
			switch {
			case i == restoreAt:
				var err error
				if mid, err = restoreNoPanic(t, mustSnapshot(t, s)); err != nil {
					t.Fatalf("Restore after entry %d: %v", st.index, err)
				}
			case i > restoreAt:
				resp, err := st.apply(mid)
				sameOutcome(t, st, o, outcome{resp, err})
			}
		})
		s := orig.s
		runs++
		for op, c := range orig.byOp {
			b := byOp[op]
			byOp[op] = [2]int{b[0] + c[0], b[1] + c[1]}
		}
		accepted += orig.accepted
		total += orig.total
		recreated += orig.g.recreated
		staleReports += orig.g.staleReports
		if orig.accepted*2 < orig.total {
			t.Fatalf("only %d of %d commands applied", orig.accepted, orig.total)
		}

		// Snapshot, restore, snapshot: the same bytes and the same records.
		b1 := mustSnapshot(t, s)
		r, err := restoreNoPanic(t, b1)
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if b2 := mustSnapshot(t, r); !bytes.Equal(b1, b2) {
			t.Fatalf("Snapshot(Restore(b)) differs from b (%d vs %d bytes)", len(b1), len(b2))
		}
		compareStates(t, s, r)
		checkInvariants(t, r)
		checkTasks(t, r)

		// The copy restored midway, which applied the rest of the log itself.
		if b := mustSnapshot(t, mid); !bytes.Equal(b1, b) {
			t.Fatal("the copy restored midway diverged from the original")
		}
		compareStates(t, s, mid)

		// The restored state is a true copy: the next commands do the same
		// to it as to the original.
		for i := 0; i < 20; i++ {
			st := orig.g.drawStep(t)
			o1, o2 := outcome{}, outcome{}
			o1.resp, o1.err = applyChecked(t, s, st, true)
			o2.resp, o2.err = applyChecked(t, r, st, true)
			sameOutcome(t, st, o1, o2)
			orig.g.observe(t, o1.resp)
			if i%5 == 4 && !bytes.Equal(mustSnapshot(t, s), mustSnapshot(t, r)) {
				t.Fatalf("after entry %d %v the restored state diverged", st.index, st.cmd)
			}
			orig.log = append(orig.log, st)
			orig.outcomes = append(orig.outcomes, o1)
		}
		compareStates(t, s, r)

		// Determinism: the same log applied to a fresh state gives the same
		// answers and the same bytes.
		fresh := state.New()
		for i, st := range orig.log {
			resp, err := st.apply(fresh)
			sameOutcome(t, st, orig.outcomes[i], outcome{resp, err})
		}
		if !bytes.Equal(mustSnapshot(t, s), mustSnapshot(t, fresh)) {
			t.Fatal("replaying the log on a fresh state gave different bytes")
		}
	})
	if total > 0 {
		t.Logf("%d runs: %d of %d commands applied (%.1f%%)", runs, accepted, total, 100*float64(accepted)/float64(total))
		t.Logf("  %d VMs created again under a name that had lived; %d stale reports from an earlier life, all refused", recreated, staleReports)
		ops := slices.Sorted(maps.Keys(byOp))
		for _, op := range ops {
			t.Logf("  %-13s %6d of %6d applied", op, byOp[op][0], byOp[op][1])
		}
	}
}

// TestApplyIsDeterministic applies the same log to two fresh states and
// compares their bytes after every entry, so that map order leaking into the
// state (or into a stored response) shows up at the entry that leaked it.
func TestApplyIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		orig := runSequence(t, rapid.IntRange(50, 200).Draw(t, "n"), nil)
		a, b := state.New(), state.New()
		for i, st := range orig.log {
			ra, ea := st.apply(a)
			rb, eb := st.apply(b)
			sameOutcome(t, st, orig.outcomes[i], outcome{ra, ea})
			sameOutcome(t, st, outcome{ra, ea}, outcome{rb, eb})
			if !bytes.Equal(mustSnapshot(t, a), mustSnapshot(t, b)) {
				t.Fatalf("states differ after entry %d %v", st.index, st.cmd)
			}
		}
		if !bytes.Equal(mustSnapshot(t, a), mustSnapshot(t, orig.s)) {
			t.Fatal("replayed state differs from the original")
		}
	})
}

// ---- Restore on bad input ---------------------------------------------------

// smallState is a state with a bit of everything.
func smallState(t testing.TB) *state.State {
	t.Helper()
	f := newFixture(t)
	f.ok(withID("r1", createVm("extra", vmSpec(1, 256), true)))
	f.reject(withID("r2", createVm("extra", vmSpec(1, 256), true)), codeExists, "name")
	f.ok(withID("r3", submitTask(taskSpec("ls", 1, 64))))
	return f.s
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	good := mustSnapshot(t, smallState(t))
	decode := func() *apiv1.StateSnapshot {
		var snap apiv1.StateSnapshot
		if err := proto.Unmarshal(good, &snap); err != nil {
			t.Fatal(err)
		}
		return &snap
	}
	tests := []struct {
		name string
		data func() []byte
	}{
		{"nil", func() []byte { return nil }},
		{"empty", func() []byte { return []byte{} }},
		{"one byte", func() []byte { return []byte{0x08} }},
		{"garbage", func() []byte { return []byte("this is not a snapshot at all") }},
		{"bad wire type", func() []byte { return []byte{0xff, 0xff, 0xff, 0xff} }},
		{"truncated", func() []byte { return good[:len(good)-3] }},
		{"version 0", func() []byte {
			s := decode()
			s.Version = 0
			return marshal(t, s)
		}},
		{"version 2", func() []byte {
			s := decode()
			s.Version = state.SnapshotVersion + 1
			return marshal(t, s)
		}},
		{"nodes unsorted", func() []byte {
			s := decode()
			s.Nodes[0], s.Nodes[1] = s.Nodes[1], s.Nodes[0]
			return marshal(t, s)
		}},
		{"node id 0", func() []byte {
			s := decode()
			s.Nodes[0].Id = 0
			return marshal(t, s)
		}},
		{"duplicate node", func() []byte {
			s := decode()
			s.Nodes = append(s.Nodes, s.Nodes[len(s.Nodes)-1])
			return marshal(t, s)
		}},
		{"VMs unsorted", func() []byte {
			s := decode()
			s.Vms[0], s.Vms[1] = s.Vms[1], s.Vms[0]
			return marshal(t, s)
		}},
		{"duplicate VM", func() []byte {
			s := decode()
			s.Vms = append(s.Vms, s.Vms[len(s.Vms)-1])
			return marshal(t, s)
		}},
		{"invalid VM name", func() []byte {
			s := decode()
			s.Vms[0].Name = "A"
			return marshal(t, s)
		}},
		{"VM without spec", func() []byte {
			s := decode()
			s.Vms[0].Spec = nil
			return marshal(t, s)
		}},
		{"tasks unsorted", func() []byte {
			s := decode()
			s.Tasks[0], s.Tasks[1] = s.Tasks[1], s.Tasks[0]
			return marshal(t, s)
		}},
		{"task id 0", func() []byte {
			s := decode()
			s.Tasks[0].Id = 0
			return marshal(t, s)
		}},
		{"request without id", func() []byte {
			s := decode()
			s.Requests[0].ClientRequestId = ""
			return marshal(t, s)
		}},
		{"request without response", func() []byte {
			s := decode()
			s.Requests[0].Response = nil
			return marshal(t, s)
		}},
		{"duplicate request id", func() []byte {
			s := decode()
			s.Requests[1].ClientRequestId = s.Requests[0].GetClientRequestId()
			return marshal(t, s)
		}},
		{"requests out of index order", func() []byte {
			s := decode()
			s.Requests[0], s.Requests[1] = s.Requests[1], s.Requests[0]
			return marshal(t, s)
		}},
		{"request from the future", func() []byte {
			s := decode()
			s.Requests[len(s.Requests)-1].Index = s.GetCluster().GetAppliedIndex() + 1
			return marshal(t, s)
		}},
		{"too many requests", func() []byte {
			s := decode()
			s.Cluster.AppliedIndex = state.MaxRequestRecords + 10
			s.Requests = nil
			for i := 0; i <= state.MaxRequestRecords; i++ {
				s.Requests = append(s.Requests, &apiv1.RequestRecord{ClientRequestId: clientID(i), Index: uint64(i + 1), Response: &apiv1.Response{}})
			}
			return marshal(t, s)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := restoreNoPanic(t, tc.data())
			if err == nil {
				t.Fatalf("Restore accepted a bad snapshot: %v", r.Cluster())
			}
			if r != nil {
				t.Fatalf("Restore returned a state with error %v", err)
			}
		})
	}

	// The decode/encode helpers above are sound: the untouched snapshot restores.
	if _, err := state.Restore(marshal(t, decode())); err != nil {
		t.Fatalf("re-encoded good snapshot: %v", err)
	}
}

// TestRestoreKeepsEveryField restores a snapshot in which every field of
// every record is set (including statuses no command sets yet) and checks
// that Snapshot writes back the same bytes.
func TestRestoreKeepsEveryField(t *testing.T) {
	res := &apiv1.Resources{Vcpus: 4, MemoryMib: 4096, DiskMib: 1000, Features: []string{"gpu", "kvm"}}
	snap := &apiv1.StateSnapshot{
		Version: state.SnapshotVersion,
		Cluster: &apiv1.Cluster{
			Id:           "c1",
			Membership:   &apiv1.Membership{Voters: []uint64{1, 2}, Learners: []uint64{3}, Removed: []uint64{4}},
			AppliedIndex: 100,
			Secure:       true,

			CaCertificates:         [][]byte{{1, 2, 3}, {4, 5}},
			CaRotationPhase:        apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST,
			CaRotationNextUnixNano: 15,
		},
		Events:                  []*apiv1.Event{{Index: 50, TimeUnixNano: 5, Kind: "vm", NodeId: 1, VmName: "a", TaskId: 7, Message: "lost: node 1 is down"}},
		NotedTerm:               3,
		CaSealedKey:             []byte{9, 9},
		CaRotationOverlapNanos:  10,
		CaRotationPhaseUnixNano: 5,
		Tokens: []*apiv1.Token{
			{Id: "00000000000000aa", Kind: apiv1.TokenKind_TOKEN_KIND_JOIN, SecretSha256: make([]byte, 32), NodeRole: apiv1.NodeRole_NODE_ROLE_WORKER,
				CreatedUnixNano: 5, ExpiresUnixNano: 10, Description: "rack 4"},
			{Id: "00000000000000aa", Kind: apiv1.TokenKind_TOKEN_KIND_ACL, SecretSha256: make([]byte, 32), AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER,
				CreatedUnixNano: 5, ExpiresUnixNano: 10, Description: "dashboard"},
		},
		Nodes: []*apiv1.Node{
			{Id: 1, Address: "a:1", Role: apiv1.NodeRole_NODE_ROLE_VOTER, Capacity: res, Labels: map[string]string{"zone": "a", "rack": "r"},
				Status: apiv1.NodeStatus_NODE_STATUS_DOWN, Drain: true, RegisteredIndex: 2, UpdatedIndex: 50,
				Images:         []*apiv1.ImageInfo{{Name: "default", Digest: "sha256:00", MinMemoryMib: 64}, {Name: "img", Digest: "sha256:01", MinMemoryMib: 128}},
				VcpuOvercommit: 2, MemoryOvercommit: 1.5, LeaseMillis: 5000, StatusReason: "no heartbeat for 6s"},
			{Id: 3, Address: "c:1", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Capacity: res,
				Status: apiv1.NodeStatus_NODE_STATUS_DISCONNECTED, RegisteredIndex: 3, UpdatedIndex: 3},
		},
		Vms: []*apiv1.Vm{
			{Name: "a", Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 512, Image: "img", KernelCmdline: "console=ttyS0",
				RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ALWAYS, Constraints: map[string]string{"zone": "a"}, AntiAffinityGroup: "g",
				Features: []string{"kvm"}, AntiAffinitySoft: true, Placement: apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD},
				DesiredState: apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING, State: apiv1.VmState_VM_STATE_LOST, NodeId: 1, Generation: 8, // created at 5, placed 3 times
				Reason: "node down", Events: []*apiv1.VmEvent{{Index: 9, TimeUnixNano: 99, State: apiv1.VmState_VM_STATE_LOST, NodeId: 1, Generation: 8, Reason: "node down"}},
				CreatedIndex: 5, UpdatedIndex: 9, CreatedUnixNano: 55, ConsoleTail: "kernel panic\n", Restarts: 2},
			{Name: "b", Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 1}, DesiredState: apiv1.VmDesiredState_VM_DESIRED_STATE_DELETED,
				State: apiv1.VmState_VM_STATE_STOPPING, NodeId: 1, Generation: 1},
		},
		Tasks: []*apiv1.Task{
			{Id: 7, Spec: &apiv1.TaskSpec{Command: "make", Args: []string{"all"}, Env: map[string]string{"A": "b"}, Resources: res, TimeoutMs: 5, Image: "img", MaxAttempts: 4},
				Status: apiv1.TaskStatus_TASK_STATUS_LOST, Attempt: 2, NodeId: 1,
				Result: &apiv1.TaskResult{ExitCode: -1, OutputTail: []byte{0, 1, 2}, StartedUnixNano: 1, FinishedUnixNano: 2, Error: "lost"},
				Reason: "node down", SubmittedIndex: 7, UpdatedIndex: 60, SubmittedUnixNano: 77},
		},
		Requests: []*apiv1.RequestRecord{
			{ClientRequestId: "x", Index: 10, Response: &apiv1.Response{Error: &apiv1.Error{Code: codeExists, Message: "m", Field: "name"}}},
			{ClientRequestId: "y", Index: 11, Response: &apiv1.Response{Kind: &apiv1.Response_DeleteVm{DeleteVm: &apiv1.DeleteVmResponse{Removed: true}}}},
		},
	}
	// The literal above must keep up with the records: a field added to them
	// and left out here would go untested.
	checkEveryFieldSet(t, snap)
	b := marshal(t, snap)
	r, err := state.Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustSnapshot(t, r); !bytes.Equal(got, b) {
		var back apiv1.StateSnapshot
		_ = proto.Unmarshal(got, &back)
		t.Fatalf("round trip lost something:\nwant %v\ngot  %v", snap, &back)
	}
	if !r.Removed(4) || r.AppliedIndex() != 100 || r.RequestRecords() != 2 {
		t.Fatalf("restored: removed(4)=%v applied=%d records=%d", r.Removed(4), r.AppliedIndex(), r.RequestRecords())
	}
	// Restore takes the holding VM "b" into account.
	if got := r.Allocated(1); got.GetVcpus() != 1 || got.GetMemoryMib() != 1 {
		t.Fatalf("Allocated(1) = %v", got)
	}
}

// checkEveryFieldSet checks that every field of every message type reached
// from m is set in at least one message of that type. Responses, which are a
// oneof of many kinds, are not walked into.
func checkEveryFieldSet(t testing.TB, m proto.Message) {
	t.Helper()
	set := map[protoreflect.FullName]map[protoreflect.Name]bool{}
	descs := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	var walk func(protoreflect.Message)
	walk = func(msg protoreflect.Message) {
		d := msg.Descriptor()
		if d.FullName() == (&apiv1.Response{}).ProtoReflect().Descriptor().FullName() {
			return
		}
		descs[d.FullName()] = d
		if set[d.FullName()] == nil {
			set[d.FullName()] = map[protoreflect.Name]bool{}
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			set[d.FullName()][fd.Name()] = true
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message())
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	for _, name := range slices.Sorted(maps.Keys(descs)) {
		fields := descs[name].Fields()
		for i := 0; i < fields.Len(); i++ {
			if f := fields.Get(i); !set[name][f.Name()] {
				t.Errorf("no %s in the test data sets field %s", name, f.Name())
			}
		}
	}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restoreNoPanic runs Restore and turns a panic into a test failure.
func restoreNoPanic(t fataler, data []byte) (s *state.State, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Restore panicked on %d bytes %x: %v", len(data), data, p)
		}
	}()
	return state.Restore(data)
}

// checkRestored checks what must hold of any state Restore accepts: it
// snapshots, and that snapshot restores to itself (a fixed point).
func checkRestored(t fataler, s *state.State) {
	t.Helper()
	b1 := mustSnapshot(t, s)
	r, err := restoreNoPanic(t, b1)
	if err != nil {
		t.Fatalf("Restore(Snapshot(Restore(x))): %v", err)
	}
	if b2 := mustSnapshot(t, r); !bytes.Equal(b1, b2) {
		t.Fatalf("Snapshot(Restore(Snapshot(Restore(x)))) differs from Snapshot(Restore(x))")
	}
}

func TestRestoreTruncatedAndCorrupt(t *testing.T) {
	good := mustSnapshot(t, smallState(t))
	accepted := 0
	for n := 0; n < len(good); n++ {
		if r, err := restoreNoPanic(t, good[:n]); err == nil {
			accepted++
			checkRestored(t, r)
		}
	}
	t.Logf("%d of %d proper prefixes decode to a valid-looking state", accepted, len(good))

	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		data := slices.Clone(good)
		for j := rng.IntN(4); j >= 0; j-- {
			data[rng.IntN(len(data))] ^= byte(1 + rng.IntN(255))
		}
		if r, err := restoreNoPanic(t, data); err == nil {
			checkRestored(t, r)
		}
	}
	for i := 0; i < 2000; i++ {
		data := make([]byte, rng.IntN(256))
		for j := range data {
			data[j] = byte(rng.UintN(256))
		}
		if rng.IntN(2) == 0 && len(data) > 2 {
			data[0], data[1] = 0x08, 0x01 // version 1, so decoding gets further
		}
		if r, err := restoreNoPanic(t, data); err == nil {
			checkRestored(t, r)
		}
	}
}
