package core

import (
	"slices"
	"strconv"
	"strings"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/sched"
	"github.com/blixard/blixard/internal/state"
)

// Placement, on the leader. Each pass (after every tick and every applied
// batch) asks the scheduler for a node for the workloads waiting for one
// and proposes the assignments; apply checks them again.
//
// A workload that fits nowhere is blocked: it is not tried again until
// room may have grown (the state's RoomVersion changes, or a reservation
// of this leader's lapses), and the scheduler's reason is recorded in the
// state (PlacementFailed) apart from the trying. So a pass costs what came
// to wait since the last one, not what waits: a backlog of thousands that
// fits nowhere costs the leader nothing until a workload ends or a node
// changes, and then one walk over it, a budget per pass.

// Bounds of one placement pass: at most maxPlacementsPerPass proposals,
// and at most maxPlacementTries scheduler calls for VMs and as many for
// tasks. The rest waits for the next pass.
const (
	maxPlacementsPerPass = 256
	maxPlacementTries    = 1024
	// unplacedEveryTicks: a proposal recording why a workload fits
	// nowhere is made again (if the state does not show its reason yet)
	// at most this often, and at most maxUnplacedPerPass are made per
	// pass.
	unplacedEveryTicks = 50
	maxUnplacedPerPass = 16
)

// inflight is a proposal of the leader's that the state does not show yet:
// a placement (its node and request, reserved on that node in later passes)
// or a status change, until the tick after which it may be proposed again.
type inflight struct {
	until uint64
	node  uint64
	req   *sched.Request
	// vm/gen or task/attempt: what the placement was for.
	vm   string
	gen  uint64
	task uint64
}

// placeKey names a workload waiting for a node: a VM by name and
// generation, a task by id (and attempt, in gen).
type placeKey struct {
	vm   string
	task uint64
	gen  uint64
}

// place (leader only) runs one placement pass.
func (n *Node) place() {
	n.forgetPlacements()
	if n.roomSt != n.st || n.room != n.st.RoomVersion() || n.roomFreed {
		// Room may have grown: every waiting workload is tried afresh.
		n.forgetBlocked()
		n.roomSt, n.room = n.st, n.st.RoomVersion()
	}
	p := pass{n: n}
	n.placeVms(&p)
	p.tries = 0
	n.placeTasks(&p)
	n.recordUnplaced()
}

// forgetBlocked unblocks every workload: the next passes try them all,
// the tasks from where the walk stood (see taskWalk).
func (n *Node) forgetBlocked() {
	clear(n.blockedVms)
	n.tasks.restart()
	n.taskRetry, n.unrecorded, n.roomFreed = nil, nil, false
}

// taskWalk is where the leader's walk over the pending tasks, in id order,
// stands since room last changed. The tasks it has passed fit nowhere (or
// are in Node.taskRetry): they are blocked. Only new tasks come to wait
// with ids above every pending one, since a task that waits again changes
// RoomVersion; so with no lap open the walk visits the ids above mark.
//
// When room changes, every task is to be tried again, but a pass's budget
// may not reach them all. So the walk opens a lap where it stood (from),
// goes up to the highest pending id (top), wraps to the lowest and ends
// the lap when it comes back to from, then goes on above top. Were it to
// start again from the lowest id instead, a steady churn of room changes
// would have every pass spend its budget on the same head of tasks that
// fit nowhere, and never reach those behind it.
type taskWalk struct {
	// from is the first id of the open lap; 0 when none is open.
	from uint64
	// wrapped: the lap has passed the highest pending id, top, and goes
	// on from the lowest.
	wrapped bool
	top     uint64
	// mark is the last id visited.
	mark uint64
}

// restart opens a lap at the task after the last one visited.
func (w *taskWalk) restart() {
	if w.mark == 0 {
		*w = taskWalk{}
		return
	}
	*w = taskWalk{from: w.mark + 1, mark: w.mark}
}

// step is the walk meeting pending id, in the order of
// PendingTasksFrom(mark+1): true to visit it (then visited), false when
// every task from here on has been visited.
func (w *taskWalk) step(id uint64) bool {
	if w.from != 0 && !w.wrapped && id <= w.mark {
		// Past the highest pending id: on from the lowest.
		w.wrapped, w.top, w.mark = true, w.mark, 0
	}
	if w.from != 0 && w.wrapped && (id >= w.from || id <= w.mark) {
		// Back where the lap began: it is over, and what lies above its
		// top came to wait since.
		w.from, w.wrapped, w.mark = 0, false, w.top
	}
	return w.from != 0 || id > w.mark
}

// visited notes that the walk has visited id.
func (w *taskWalk) visited(id uint64) { w.mark = id }

// passed counts the pending tasks of st that the walk has passed.
func (w *taskWalk) passed(st *state.State) int {
	switch {
	case w.from == 0:
		return st.PendingTasksThrough(w.mark)
	case !w.wrapped:
		return st.PendingTasksThrough(w.mark) - st.PendingTasksThrough(w.from-1)
	default:
		return st.PendingTasksThrough(w.top) - st.PendingTasksThrough(w.from-1) + st.PendingTasksThrough(w.mark)
	}
}

// placeVms tries the VMs that wait for a node and are not blocked, from
// where the last pass's budget ran out, so that a head of VMs that fit
// nowhere starves none behind it.
func (n *Node) placeVms(p *pass) {
	vms := n.st.VmsToPlace()
	vms = rotate(vms, func(v *apiv1.Vm) bool { return v.GetName() >= n.vmCursor })
	n.vmCursor = ""
	for _, v := range vms {
		if p.spent() {
			n.vmCursor = v.GetName()
			return
		}
		bk := placeKey{vm: v.GetName(), gen: v.GetGeneration()}
		if _, ok := n.blockedVms[bk]; ok {
			continue
		}
		key := "vm/" + v.GetName() + "/" + strconv.FormatUint(v.GetGeneration(), 10)
		if n.placing[key].until > n.ticks || !n.restartDue(v) {
			continue
		}
		if !p.place(key, sched.VmRequest(v), v.GetReason(), &apiv1.PlacementFailedCommand{VmName: v.GetName(), VmGeneration: v.GetGeneration()},
			func(node uint64) *apiv1.Command {
				return &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{Name: v.GetName(), NodeId: node, Generation: v.GetGeneration()}}}
			}, inflight{vm: v.GetName(), gen: v.GetGeneration()}) {
			n.blockedVms[bk] = struct{}{}
		}
	}
}

// placeTasks tries first the tasks whose placement is in flight
// (taskRetry) when it is due again, then those the walk has not passed
// (taskWalk). Every other pending task is blocked.
func (n *Node) placeTasks(p *pass) {
	retry := n.taskRetry
	n.taskRetry = nil
	for i, id := range retry {
		if p.spent() {
			n.taskRetry = append(n.taskRetry, retry[i:]...)
			return
		}
		t, ok := n.st.PendingTask(id)
		if !ok {
			continue // placed, cancelled or gone
		}
		if n.tryTask(p, t) {
			n.taskRetry = append(n.taskRetry, id)
		}
	}
	for t := range n.st.PendingTasksFrom(n.tasks.mark + 1) {
		if !n.tasks.step(t.GetId()) || p.spent() {
			return // all visited, or out of budget
		}
		n.tasks.visited(t.GetId())
		if n.tryTask(p, t) {
			n.taskRetry = append(n.taskRetry, t.GetId())
		}
	}
}

// tryTask tries to place task t unless its placement is in flight; it
// reports whether t is to be tried again (false: it fits nowhere).
func (n *Node) tryTask(p *pass, t *apiv1.Task) bool {
	key := "task/" + strconv.FormatUint(t.GetId(), 10) + "/" + strconv.FormatUint(uint64(t.GetAttempt()), 10)
	if n.placing[key].until > n.ticks {
		return true
	}
	return p.place(key, sched.TaskRequest(t), t.GetReason(), &apiv1.PlacementFailedCommand{TaskId: t.GetId(), TaskAttempt: t.GetAttempt()},
		func(node uint64) *apiv1.Command {
			return &apiv1.Command{Op: &apiv1.Command_AssignTask{AssignTask: &apiv1.AssignTaskCommand{Id: t.GetId(), NodeId: node}}}
		}, inflight{task: t.GetId(), gen: uint64(t.GetAttempt())})
}

// rotate returns xs (sorted) starting from the first element at or after
// the cursor (from(x) holds), wrapping round.
func rotate[T any](xs []T, from func(T) bool) []T {
	i := slices.IndexFunc(xs, from)
	if i <= 0 {
		return xs
	}
	return append(xs[i:], xs[:i]...)
}

// pass is one placement pass's budget: at most maxPlacementsPerPass
// proposals and maxPlacementTries scheduler calls for VMs and as many for
// tasks.
type pass struct {
	n *Node
	// c is the scheduler's view, made at the pass's first try.
	c               *sched.Cluster
	proposed, tries int
}

// cluster returns the pass's scheduler view, made on first use with the
// placements this leader proposed and the state does not show yet
// reserved on their nodes.
func (p *pass) cluster() *sched.Cluster {
	if p.c == nil {
		n := p.n
		p.c = sched.New(n.st, sched.Options{MaxCandidates: n.cfg.MaxCandidates})
		for _, key := range sortedKeys(n.placing) {
			if f := n.placing[key]; f.req != nil {
				p.c.Commit(f.node, *f.req)
			}
		}
	}
	return p.c
}

func (p *pass) spent() bool {
	return p.proposed >= maxPlacementsPerPass || p.tries >= maxPlacementTries
}

// place asks the scheduler for a node for req and proposes cmd(node). It
// reports false when the workload fits nowhere; its reason (in failed) is
// then queued for the state unless the state shows it (reason) already.
func (p *pass) place(key string, req sched.Request, reason string, failed *apiv1.PlacementFailedCommand,
	cmd func(node uint64) *apiv1.Command, f inflight) bool {
	n := p.n
	p.tries++
	n.observed.PlacementTries++
	c := p.cluster()
	node, err := c.Place(req)
	if err != nil {
		failed.Reason = state.Clip(err.Error(), state.MaxReasonLen)
		if failed.GetReason() != reason {
			n.unrecorded = append(n.unrecorded, failed)
		}
		return false
	}
	if n.propose(cmd(node)) == nil {
		p.proposed++
		c.Commit(node, req)
		f.until, f.node, f.req = n.ticks+uint64(n.cfg.ReportEveryTicks), node, &req
		n.placing[key] = f
	}
	return true
}

// forgetPlacements drops the in-flight proposals that are due again or
// that the state has taken (or refused), and the back-offs of VMs that no
// longer wait at that generation. A reservation dropped without the state
// holding it frees its room (roomFreed). The order of the walk does not
// matter: each entry is looked at alone.
func (n *Node) forgetPlacements() {
	for key, f := range n.placing {
		switch {
		case f.until <= n.ticks:
			delete(n.placing, key)
			// A reservation lapsed unapplied: its room is free again.
			n.roomFreed = n.roomFreed || f.req != nil
		case f.vm != "":
			if _, waits := n.st.VmWaits(f.vm, f.gen); !waits {
				// Applied, refused or gone: the state's usage holds it
				// now, or its room is free.
				delete(n.placing, key)
				v, ok := n.st.Vm(f.vm)
				n.roomFreed = n.roomFreed || !ok || v.GetNodeId() != f.node
			}
		case f.task != 0:
			if _, waits := n.st.TaskWaits(f.task, uint32(f.gen)); !waits {
				delete(n.placing, key)
				t, ok := n.st.Task(f.task)
				n.roomFreed = n.roomFreed || !ok || t.GetNodeId() != f.node
			}
		}
	}
	for key := range n.blockedVms {
		if _, waits := n.st.VmWaits(key.vm, key.gen); !waits {
			delete(n.blockedVms, key) // placed, stopped, deleted or restarted
		}
	}
	for key, until := range n.recording {
		if until <= n.ticks {
			delete(n.recording, key)
		}
	}
	for key := range n.restartAt {
		name, gen, _ := strings.Cut(key, "/")
		if v, ok := n.st.Vm(name); !ok || strconv.FormatUint(v.GetGeneration(), 10) != gen {
			delete(n.restartAt, key)
		}
	}
}

// recordUnplaced proposes, oldest first, the reasons why workloads fit
// nowhere that the state does not show yet: at most maxUnplacedPerPass per
// pass, and each again only after unplacedEveryTicks if it did not apply.
func (n *Node) recordUnplaced() {
	keep := n.unrecorded[:0]
	proposed := 0
	for i, op := range n.unrecorded {
		if proposed == maxUnplacedPerPass {
			keep = append(keep, n.unrecorded[i:]...)
			break
		}
		var shown string
		var waits bool
		if op.GetVmName() != "" {
			shown, waits = n.st.VmWaits(op.GetVmName(), op.GetVmGeneration())
		} else {
			shown, waits = n.st.TaskWaits(op.GetTaskId(), op.GetTaskAttempt())
		}
		key := placeKey{vm: op.GetVmName(), task: op.GetTaskId(), gen: op.GetVmGeneration() + uint64(op.GetTaskAttempt())}
		if !waits || shown == op.GetReason() {
			delete(n.recording, key)
			continue // placed, gone, or recorded
		}
		keep = append(keep, op)
		if n.recording[key] > n.ticks {
			continue
		}
		if n.propose(&apiv1.Command{Op: &apiv1.Command_PlacementFailed{PlacementFailed: op}}) == nil {
			n.recording[key] = n.ticks + unplacedEveryTicks
			proposed++
		}
	}
	clear(n.unrecorded[len(keep):])
	n.unrecorded = keep
}

// restartDue applies the VM's restart policy: a pending VM, or one lost
// with its node, is placed at once; one that failed (or, with policy
// always, stopped on its own) waits a back-off that doubles with each
// restart, from Config.RestartBackoffTicks up to 32 times that.
func (n *Node) restartDue(v *apiv1.Vm) bool {
	policy := v.GetSpec().GetRestartPolicy()
	switch v.GetState() {
	case apiv1.VmState_VM_STATE_PENDING:
		return true
	case apiv1.VmState_VM_STATE_LOST:
		return policy == apiv1.RestartPolicy_RESTART_POLICY_ALWAYS || policy == apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE
	case apiv1.VmState_VM_STATE_FAILED:
		if policy != apiv1.RestartPolicy_RESTART_POLICY_ALWAYS && policy != apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE {
			return false
		}
	case apiv1.VmState_VM_STATE_STOPPED:
		if policy != apiv1.RestartPolicy_RESTART_POLICY_ALWAYS {
			return false
		}
	default:
		return false
	}
	key := v.GetName() + "/" + strconv.FormatUint(v.GetGeneration(), 10)
	due, ok := n.restartAt[key]
	if !ok {
		due = n.ticks + uint64(n.cfg.RestartBackoffTicks)<<min(v.GetRestarts(), 5)
		n.restartAt[key] = due
	}
	if n.ticks < due {
		return false
	}
	delete(n.restartAt, key)
	return true
}
