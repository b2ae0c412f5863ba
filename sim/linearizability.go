package sim

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// LinearizabilityTimeout bounds CheckLinearizable: past it the result is
// unknown, which is reported as an error, never as a pass.
const LinearizabilityTimeout = 30 * time.Second

// CheckLinearizable checks, with porcupine, that the clients' history is
// linearizable against sequential models of the VM and task APIs. It
// returns nil when it is, and an error that names the operations that cannot
// be ordered when it is not, or when the check did not finish within
// LinearizabilityTimeout.
//
// The models:
//
//   - VMs (CreateVm, StartVm, StopVm, DeleteVm, GetVm, ListVms): a VM is its
//     name, its desired state (running or stopped) and its spec (restart
//     policy aside, which the state defaults), or absent.
//   - Tasks (SubmitTask, CancelTask, GetTask, ListTasks): a task is its id,
//     its spec and whether it is cancelled, or absent.
//   - Not checked: GetClusterStatus (Raft metadata, not the state), stale
//     reads (they promise no linearizability), reads with no answer.
//
// No VM is ever placed in these histories (there is no scheduler yet), so
// the models know no VM that waits for its node to stop it and no task that
// runs; they must learn those states when placement joins the simulation.
//
// Partitions: linearizability is local (a history is linearizable iff its
// restriction to each object is), so the VM history is checked per VM name
// and the task history per task id, each its own porcupine search. A list
// spans every object; it is checked as one read per object, of that object
// (present, as shown, or absent; past the last entry of a list cut short by
// its limit, nothing is known). That checks what a list says about each
// object but not that it says it all at one instant; three direct checks
// make up for the part that matters: a list must be sorted (by name, by id)
// and no longer than its limit; a ListTasks that shows task n must show
// every task with a lower id that ever existed (an id is the log index of
// its submission, and tasks are never removed); and acknowledged
// submissions ordered in real time must have increasing ids.
//
// Answers: a response whose code is UNAVAILABLE, OUTCOME_UNKNOWN or
// NOT_LEADER is not a final answer (clients retry those); where one is final
// anyway (a Raw client), the operation counts as unanswered. An unanswered
// read is dropped. An unanswered write is indeterminate: it may or may not
// have taken effect. It never returns (its return is after every other
// operation's), and the models apply it as the state machine would,
// whatever its answer would have been; porcupine may linearize it anywhere
// after its call, and linearizing it last is the same as "it never
// happened" (see withEnds for how that is kept cheap).
//
// An indeterminate SubmitTask is special: its task id, assigned at apply
// time, is unknown. If it did apply, its id shows up in a later answer
// (ListTasks, GetTask, CancelTask) without any acknowledged SubmitTask
// having returned it: an orphan id. Each orphan id gets a phantom
// submission of that id, with the spec the answers show, called at the
// earliest call of the indeterminate SubmitTasks whose spec matches and
// never returning; the indeterminate SubmitTasks themselves are dropped (one
// that applied is represented by its phantom; one that did not had no
// effect). Orphans are first matched one to one with such submissions
// (bipartite matching): an orphan that gets none has no phantom, so the
// answer that showed it cannot be linearized — a read of a task nobody
// submitted. The matching ignores when each submission was called beyond
// the phantom's earliest call; that is the only precision given up.
//
// Client request ids: the simulated clients give every operation its own.
// A history may still reuse one across operations (a scenario that tests
// idempotency): those operations must carry equal requests, and they stand
// for one application. The answer of the latest of them is the stored
// response; the operations that got it merge into one operation, from the
// earliest call of those and of the unanswered ones to the earliest return
// among those that got it. An operation that got a different answer was
// refused before the write was applied (at the leader's early check) and is
// checked on its own as a refusal; a success followed by a different answer
// is a violation. (Ids evicted after state.MaxRequestRecords newer writes
// would break this; histories here are far shorter.)
//
// Real-time order: porcupine reads intervals as closed, so operations that
// touch at one instant count as concurrent — except that an operation
// called at the very instant its client's previous operation returned is
// put right after that return (the client issued it then), and returns at
// one instant keep the history's order (the order they happened in).
func CheckLinearizable(h *History) error {
	return CheckLinearizableTimeout(h, LinearizabilityTimeout)
}

// CheckLinearizableTimeout is CheckLinearizable with a time budget for the
// whole check; an exhausted budget is an error.
func CheckLinearizableTimeout(h *History, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	p, err := prepareHistory(h.Ops())
	if err != nil {
		return err
	}
	if err := checkLists(p); err != nil {
		return err
	}
	if err := checkTaskIDOrder(p.task); err != nil {
		return err
	}
	checks := []struct {
		name  string
		ops   []*linOp
		model porcupine.Model
		part  func(*linOp) string
	}{
		{"VM", p.vm, vmModel(), func(o *linOp) string { return o.name }},
		{"task", p.task, taskModel(), func(o *linOp) string { return strconv.FormatUint(o.id, 10) }},
	}
	for _, c := range checks {
		if len(c.ops) == 0 {
			continue
		}
		if err := runCheck(c.name, len(c.ops), project(c.ops), c.model, c.part, deadline, timeout); err != nil {
			return err
		}
	}
	return nil
}

// runCheck checks the n operations that ops (lists projected) stand for.
func runCheck(name string, n int, ops []*linOp, model porcupine.Model, part func(*linOp) string, deadline time.Time, budget time.Duration) error {
	ops, keys := withEnds(ops, part)
	events := makeEvents(ops)
	partition := func(history []porcupine.Event) [][]porcupine.Event {
		var out [][]porcupine.Event
		at := map[string]int{}
		for _, e := range history {
			k := keys[e.Id]
			i, ok := at[k]
			if !ok {
				i = len(out)
				at[k] = i
				out = append(out, nil)
			}
			out[i] = append(out[i], e)
		}
		return out
	}
	model.PartitionEvent = partition
	parts := 0 // one end operation each
	for _, o := range ops {
		if o.kind == kEnd {
			parts++
		}
	}
	remaining := time.Until(deadline)
	if remaining <= 0 {
		return fmt.Errorf("linearizability: %s check timed out: the %s budget ran out before it started (%s); result unknown", name, budget, count(n, "operation"))
	}
	switch porcupine.CheckEventsTimeout(model, events, remaining) {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("linearizability: %s check timed out after %s (%s, %s); result unknown", name, budget, count(n, "operation"), count(parts, "partition"))
	}
	// Illegal: check again, verbosely, for the operations to show.
	msg := fmt.Sprintf("linearizability: the %s history (%s, %s) is not linearizable", name, count(n, "operation"), count(parts, "partition"))
	remaining = time.Until(deadline)
	if remaining <= 0 {
		return fmt.Errorf("%s (no time left to say where)", msg)
	}
	res, info := porcupine.CheckEventsVerbose(model, events, remaining)
	if res != porcupine.Illegal {
		return fmt.Errorf("%s (the verbose re-check said %s, so no details)", msg, res)
	}
	return fmt.Errorf("%s\n%s", msg, explainIllegal(model, partition(events), ops, keys, info))
}

// withEnds appends to ops one end operation per partition, and returns
// each operation's partition key.
//
// Indeterminate operations never return, so porcupine may linearize each
// anywhere after its call; where many are pending (all of them are, by the
// end of a long history), the ways to place those whose effect is nil where
// they are placed (a StopVm of a stopped VM, a CreateVm of one that exists)
// multiply without bound: each placement is a new set of linearized
// operations, so porcupine's cache does not merge them. The end operation
// cuts that: it is called after every definite operation has returned and
// never returns, so it linearizes after all of them. Before it, the models
// accept an indeterminate operation only where it changes the state; after
// it, the state is one "ended" state that accepts every indeterminate
// operation and nothing else. This accepts the same histories: an
// indeterminate operation placed where it changes nothing can be moved past
// the end, where nothing observes it.
func withEnds(ops []*linOp, part func(*linOp) string) ([]*linOp, []string) {
	out := slices.Clone(ops)
	keys := make([]string, len(ops))
	seen := map[string]bool{}
	var order []string
	for i, o := range ops {
		k := part(o)
		keys[i] = k
		if !seen[k] {
			seen[k] = true
			order = append(order, k)
		}
	}
	for _, k := range order {
		out = append(out, &linOp{kind: kEnd, indeterminate: true})
		keys = append(keys, k)
	}
	return out, keys
}

// explainIllegal describes the first partition that cannot be linearized:
// the end of its longest linearizable prefix, the state after it, and the
// operations none of which can come next.
func explainIllegal(model porcupine.Model, parts [][]porcupine.Event, ops []*linOp, keys []string, info porcupine.LinearizationInfo) string {
	partials := info.PartialLinearizationsOperations()
	var b strings.Builder
	failing := 0
	for p, evs := range parts {
		n := len(evs) / 2
		var best []porcupine.Operation
		if p < len(partials) {
			for _, l := range partials[p] {
				if len(l) > len(best) {
					best = l
				}
			}
		}
		if len(best) >= n {
			continue
		}
		failing++
		if failing > 1 {
			continue
		}
		key := keys[evs[0].Id]
		if key == "" {
			key = "all"
		}
		// n counts the partition's end operation, which never shows here.
		fmt.Fprintf(&b, "partition %q (%s, lists counted once per object): the longest linearizable prefix has %s", key, count(n-1, "operation"), count(len(best), "operation"))
		const show = 12
		from := max(0, len(best)-show)
		if from > 0 {
			fmt.Fprintf(&b, "; its last %d:", show)
		} else {
			b.WriteString(":")
		}
		state := model.Init()
		in := map[*linOp]bool{}
		for i, op := range best {
			o := op.Input.(*linOp)
			in[o] = true
			_, state = model.Step(state, o, o)
			if i >= from {
				fmt.Fprintf(&b, "\n    %s", o)
			}
		}
		fmt.Fprintf(&b, "\n  state after it: %s\n  none of these can come next:", model.DescribeState(state))
		var pending []*linOp
		for _, e := range evs {
			if o := ops[e.Id]; e.Kind == porcupine.CallEvent && !in[o] && o.kind != kEnd {
				pending = append(pending, o)
			}
		}
		for i, o := range pending {
			if i == show {
				fmt.Fprintf(&b, "\n    ... and %d more", len(pending)-show)
				break
			}
			fmt.Fprintf(&b, "\n    %s", o)
		}
	}
	if failing > 1 {
		fmt.Fprintf(&b, "\n(%s more cannot be linearized)", count(failing-1, "partition"))
	}
	return b.String()
}

// linKind is the kind of a checked operation.
type linKind int

const (
	kNone linKind = iota
	kCreateVm
	kStartVm
	kStopVm
	kDeleteVm
	kGetVm
	kListVms
	kSubmitTask
	kCancelTask
	kGetTask
	kListTasks
	kPhantomSubmit
	// kEnd ends a partition's history; see withEnds.
	kEnd
)

func (k linKind) vm() bool { return k >= kCreateVm && k <= kListVms }

func kindOf(req *apiv1.Request) (k linKind, stale bool) {
	switch r := req.GetKind().(type) {
	case *apiv1.Request_CreateVm:
		return kCreateVm, false
	case *apiv1.Request_StartVm:
		return kStartVm, false
	case *apiv1.Request_StopVm:
		return kStopVm, false
	case *apiv1.Request_DeleteVm:
		return kDeleteVm, false
	case *apiv1.Request_GetVm:
		return kGetVm, r.GetVm.GetStale()
	case *apiv1.Request_ListVms:
		return kListVms, r.ListVms.GetStale()
	case *apiv1.Request_SubmitTask:
		return kSubmitTask, false
	case *apiv1.Request_CancelTask:
		return kCancelTask, false
	case *apiv1.Request_GetTask:
		return kGetTask, r.GetTask.GetStale()
	case *apiv1.Request_ListTasks:
		return kListTasks, r.ListTasks.GetStale()
	}
	return kNone, false // GetClusterStatus, or no known kind: not checked
}

// linOp is one operation as the models see it.
type linOp struct {
	kind linKind
	op   *Op // the history's operation (the earliest, when merged); nil for a phantom
	// merged counts the history operations this one stands for.
	merged        int
	call, ret     time.Duration
	indeterminate bool
	resp          *apiv1.Response // the definite answer; nil when indeterminate
	code          apiv1.ErrorCode // its error code; UNSPECIFIED on success
	ok            bool            // the answer is a success
	// histIdx is the history position of the return; pred is the same
	// client's previous operation when this one was called at the instant
	// that one returned.
	histIdx int
	pred    *linOp
	client  int

	// Request fields, and what the answer shows, in the models' terms.
	name    string // VM name
	id      uint64 // task id: the request's, or (submit) the answer's
	start   bool
	spec    string // fingerprint of the request's spec (a phantom's: the spec seen)
	limit   int
	vm      *vmRec // the VM in the answer
	removed bool
	vms     []vmRec
	task    *taskRec // the task in the answer
	tasks   []taskRec
	// phantomOf counts the indeterminate submissions a phantom stands for.
	phantomOf int
	// projOf is the list this operation is one object's view of.
	projOf *linOp
}

// prepared is a history ready for the models.
type prepared struct {
	vm, task []*linOp
}

// noAnswer reports whether resp is no final answer.
func noAnswer(resp *apiv1.Response) bool {
	if resp == nil {
		return true
	}
	switch resp.GetError().GetCode() {
	case apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN, apiv1.ErrorCode_ERROR_CODE_NOT_LEADER:
		return resp.GetError() != nil
	}
	return false
}

func prepareHistory(history []*Op) (*prepared, error) {
	ops := slices.DeleteFunc(slices.Clone(history), func(op *Op) bool { return op == nil || op.Req == nil })
	slices.SortStableFunc(ops, func(a, b *Op) int { return cmp.Compare(a.Return, b.Return) })

	// Normalise: drop what is not checked, mark what is indeterminate.
	type norm struct {
		lo   *linOp
		keep bool
	}
	norms := make([]norm, len(ops))
	clients := map[uint64]int{}
	for i, op := range ops {
		if op.Return < op.Call {
			return nil, fmt.Errorf("linearizability: malformed history: %s returns at %s before its call at %s", describeReq(op.Req), op.Return, op.Call)
		}
		k, stale := kindOf(op.Req)
		if k == kNone || stale {
			continue
		}
		write := IsWrite(op.Req)
		indet := op.Indeterminate || noAnswer(op.Resp)
		if indet && !write {
			continue
		}
		c, ok := clients[op.Client]
		if !ok {
			c = len(clients)
			clients[op.Client] = c
		}
		lo := &linOp{kind: k, op: op, merged: 1, call: op.Call, ret: op.Return, indeterminate: indet, histIdx: i, client: c}
		if !indet {
			lo.resp = op.Resp
			lo.ok = op.Resp.GetError() == nil
			lo.code = op.Resp.GetError().GetCode()
		}
		norms[i] = norm{lo: lo, keep: true}
	}

	// Operations that reuse a client request id stand for one application.
	byKey := map[string][]int{}
	var keyOrder []string
	for i, n := range norms {
		if !n.keep || !IsWrite(n.lo.op.Req) {
			continue
		}
		key := ClientRequestID(n.lo.op.Req)
		if key == "" {
			continue
		}
		if _, seen := byKey[key]; !seen {
			keyOrder = append(keyOrder, key)
		}
		byKey[key] = append(byKey[key], i)
	}
	mergedInto := map[int]*linOp{} // history index -> merged operation
	for _, key := range keyOrder {
		idx := byKey[key]
		if len(idx) < 2 {
			continue
		}
		first := norms[idx[0]].lo
		for _, i := range idx[1:] {
			if !proto.Equal(norms[i].lo.op.Req, first.op.Req) {
				return nil, fmt.Errorf("linearizability: client request id %q is used for different requests (%s and %s): not supported", key, describeReq(first.op.Req), describeReq(norms[i].lo.op.Req))
			}
		}
		var stored *linOp // the latest definite answer
		for _, i := range idx {
			if lo := norms[i].lo; !lo.indeterminate {
				stored = lo
			}
		}
		var members []*linOp
		for _, i := range idx {
			lo := norms[i].lo
			switch {
			case lo.indeterminate, proto.Equal(lo.resp, stored.resp):
				members = append(members, lo)
				norms[i].keep = false
			case lo.ok:
				return nil, fmt.Errorf("linearizability: write %q was answered with success %v, and later with %v: a retry must get the stored response", key, lo.resp, stored.resp)
			}
			// Otherwise: refused before it was applied; checked on its own.
		}
		m := *members[0]
		m.merged = len(members)
		m.pred = nil
		if stored == nil {
			m.indeterminate = true
		} else {
			m.indeterminate = false
			m.resp, m.ok, m.code = stored.resp, stored.ok, stored.code
			m.ret = time.Duration(math.MaxInt64)
			for _, lo := range members {
				m.call = min(m.call, lo.call)
				if !lo.indeterminate && lo.ret < m.ret {
					m.ret, m.histIdx = lo.ret, lo.histIdx
				}
			}
		}
		for _, lo := range members {
			m.call = min(m.call, lo.call)
		}
		mm := &m
		mergedInto[idx[0]] = mm
	}

	// The same client's previous operation, when this one was called at the
	// instant that one returned. A dropped operation breaks the chain.
	last := map[uint64]int{}
	for i, op := range ops {
		if n := norms[i]; n.keep {
			if j, ok := last[op.Client]; ok {
				if p := norms[j]; p.keep && !p.lo.indeterminate && p.lo.ret == n.lo.call {
					n.lo.pred = p.lo
				}
			}
		}
		last[op.Client] = i
	}

	p := &prepared{}
	var all []*linOp
	for i, n := range norms {
		if m, ok := mergedInto[i]; ok {
			all = append(all, m)
		}
		if n.keep {
			all = append(all, n.lo)
		}
	}
	var indetSubmits []*linOp
	for _, lo := range all {
		if err := lo.fill(); err != nil {
			return nil, err
		}
		switch {
		case lo.kind.vm():
			p.vm = append(p.vm, lo)
		case lo.kind == kSubmitTask && lo.indeterminate:
			indetSubmits = append(indetSubmits, lo)
		case lo.kind == kSubmitTask && !lo.ok && (lo.code == apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT ||
			lo.code == apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED || lo.code == apiv1.ErrorCode_ERROR_CODE_NOT_FOUND):
			// Refused whatever the state the model knows (NOT_FOUND: no
			// node offers the image; node records are not modelled): no
			// effect, nothing to check.
		default:
			p.task = append(p.task, lo)
		}
	}
	p.task = append(p.task, phantoms(p.task, indetSubmits, len(clients))...)
	return p, nil
}

// checkLists checks that every list is sorted and within its limit, and
// that a ListTasks that shows a task shows every task with a lower id that
// ever existed (seen in any answer): ids are the log indexes of the
// submissions, and tasks are never removed.
func checkLists(p *prepared) error {
	var exist []uint64
	for _, o := range p.task {
		switch {
		case o.kind == kListTasks && o.ok:
			for _, t := range o.tasks {
				exist = append(exist, t.id)
			}
		case (o.kind == kSubmitTask || o.kind == kGetTask || o.kind == kCancelTask || o.kind == kPhantomSubmit) && (o.ok || o.kind == kPhantomSubmit):
			exist = append(exist, o.id)
		case o.kind == kCancelTask && o.code == apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			exist = append(exist, o.id)
		}
	}
	slices.Sort(exist)
	exist = slices.Compact(exist)
	for _, o := range p.task {
		if o.kind != kListTasks || !o.ok {
			continue
		}
		if o.limit > 0 && len(o.tasks) > o.limit {
			return fmt.Errorf("linearizability: %s: %d tasks, more than its limit", o, len(o.tasks))
		}
		for i := 1; i < len(o.tasks); i++ {
			if o.tasks[i-1].id >= o.tasks[i].id {
				return fmt.Errorf("linearizability: %s: not sorted by id", o)
			}
		}
		if len(o.tasks) == 0 {
			continue
		}
		last := o.tasks[len(o.tasks)-1].id
		j := 0
		for _, id := range exist {
			if id >= last {
				break
			}
			for j < len(o.tasks) && o.tasks[j].id < id {
				j++
			}
			if o.tasks[j].id != id {
				return fmt.Errorf("linearizability: %s: shows task %d but not task %d, which exists and has a lower id (an earlier log index)", o, last, id)
			}
		}
	}
	for _, o := range p.vm {
		if o.kind != kListVms || !o.ok {
			continue
		}
		if o.limit > 0 && len(o.vms) > o.limit {
			return fmt.Errorf("linearizability: %s: %d VMs, more than its limit", o, len(o.vms))
		}
		for i := 1; i < len(o.vms); i++ {
			if o.vms[i-1].name >= o.vms[i].name {
				return fmt.Errorf("linearizability: %s: not sorted by name", o)
			}
		}
	}
	return nil
}

// project replaces each successful list with one read per object the
// history names: of a VM by name, or of a task by id. Each says the object
// is present as the list shows it, or absent; past the end of a list cut
// short by its limit, nothing is known and nothing is said.
func project(ops []*linOp) []*linOp {
	var names []string
	var ids []uint64
	// born is the earliest call of an operation that may create each task.
	born := map[uint64]time.Duration{}
	for _, o := range ops {
		if o.kind == kSubmitTask && o.ok || o.kind == kPhantomSubmit {
			if b, ok := born[o.id]; !ok || o.call < b {
				born[o.id] = o.call
			}
		}
	}
	for _, o := range ops {
		switch o.kind {
		case kListVms:
			for _, v := range o.vms {
				names = append(names, v.name)
			}
		case kListTasks:
			for _, t := range o.tasks {
				ids = append(ids, t.id)
			}
		default:
			if o.kind.vm() {
				names = append(names, o.name)
			} else {
				ids = append(ids, o.id)
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]*linOp, 0, len(ops))
	for _, o := range ops {
		if !o.ok || (o.kind != kListVms && o.kind != kListTasks) {
			out = append(out, o)
			continue
		}
		read := func() *linOp {
			r := *o
			r.projOf, r.vms, r.tasks, r.ok, r.code = o, nil, nil, false, apiv1.ErrorCode_ERROR_CODE_NOT_FOUND
			return &r
		}
		if o.kind == kListVms {
			complete := o.limit == 0 || len(o.vms) < o.limit
			j := 0
			for _, name := range names {
				for j < len(o.vms) && o.vms[j].name < name {
					j++
				}
				r := read()
				r.kind, r.name = kGetVm, name
				switch {
				case j < len(o.vms) && o.vms[j].name == name:
					r.ok, r.code, r.vm = true, apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED, &o.vms[j]
				case !complete && j == len(o.vms):
					continue // past the end of a list cut short
				}
				out = append(out, r)
			}
			continue
		}
		complete := o.limit == 0 || len(o.tasks) < o.limit
		j := 0
		for _, id := range ids {
			for j < len(o.tasks) && o.tasks[j].id < id {
				j++
			}
			r := read()
			r.kind, r.id = kGetTask, id
			switch {
			case j < len(o.tasks) && o.tasks[j].id == id:
				r.ok, r.code, r.task = true, apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED, &o.tasks[j]
			case !complete && j == len(o.tasks):
				continue
			default:
				// Absent before anything could create it: trivially true
				// (nothing else changes a task's partition before then).
				if b, ok := born[id]; !ok || o.ret < b {
					continue
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// checkTaskIDOrder checks that acknowledged submissions ordered in real
// time got increasing ids (an id is the log index of the submission): the
// per-id partitions cannot see that.
func checkTaskIDOrder(tasks []*linOp) error {
	var subs []*linOp
	for _, o := range tasks {
		if o.kind == kSubmitTask && o.ok {
			subs = append(subs, o)
		}
	}
	byRet := slices.Clone(subs)
	slices.SortFunc(byRet, func(a, b *linOp) int { return cmp.Compare(a.ret, b.ret) })
	slices.SortFunc(subs, func(a, b *linOp) int { return cmp.Compare(a.call, b.call) })
	var top *linOp // the highest id among submissions returned so far
	j := 0
	for _, o := range subs {
		for ; j < len(byRet) && byRet[j].ret < o.call; j++ {
			if top == nil || byRet[j].id > top.id {
				top = byRet[j]
			}
		}
		if top != nil && top.id >= o.id {
			return fmt.Errorf("linearizability: task ids out of real-time order: %s returned before %s was called", top, o)
		}
	}
	return nil
}

// fill derives the request's and the answer's fields the models use.
func (o *linOp) fill() error {
	req := o.op.Req
	resp := o.resp
	switch o.kind {
	case kCreateVm:
		r := req.GetCreateVm()
		o.name, o.start, o.spec = r.GetName(), r.GetStart(), vmSpecFP(r.GetSpec())
		o.vm = vmRecOf(resp.GetCreateVm().GetVm())
	case kStartVm:
		o.name = req.GetStartVm().GetName()
		o.vm = vmRecOf(resp.GetStartVm().GetVm())
	case kStopVm:
		o.name = req.GetStopVm().GetName()
		o.vm = vmRecOf(resp.GetStopVm().GetVm())
	case kDeleteVm:
		o.name = req.GetDeleteVm().GetName()
		o.vm = vmRecOf(resp.GetDeleteVm().GetVm())
		o.removed = resp.GetDeleteVm().GetRemoved()
	case kGetVm:
		o.name = req.GetGetVm().GetName()
		o.vm = vmRecOf(resp.GetGetVm().GetVm())
	case kListVms:
		o.limit = int(req.GetListVms().GetLimit())
		for _, v := range resp.GetListVms().GetVms() {
			o.vms = append(o.vms, *vmRecOf(v))
		}
	case kSubmitTask:
		o.spec = taskSpecFP(req.GetSubmitTask().GetSpec())
		o.task = taskRecOf(resp.GetSubmitTask().GetTask())
		if o.task != nil {
			o.id = o.task.id
		}
	case kCancelTask:
		o.id = req.GetCancelTask().GetId()
		o.task = taskRecOf(resp.GetCancelTask().GetTask())
	case kGetTask:
		o.id = req.GetGetTask().GetId()
		o.task = taskRecOf(resp.GetGetTask().GetTask())
	case kListTasks:
		o.limit = int(req.GetListTasks().GetLimit())
		for _, t := range resp.GetListTasks().GetTasks() {
			o.tasks = append(o.tasks, *taskRecOf(t))
		}
	}
	if o.ok && o.kind != kListVms && o.kind != kListTasks && o.vm == nil && o.task == nil {
		return fmt.Errorf("linearizability: a successful %s carries no record: %v", describeReq(req), resp)
	}
	return nil
}

// unknownSpec stands for the spec of a task whose answers never showed it.
const unknownSpec = "?"

// phantoms makes one phantom submission per orphan task id (an id that an
// answer shows and no acknowledged submission returned) that can be matched
// to its own indeterminate submission with the same spec.
func phantoms(tasks, indet []*linOp, phantomClient int) []*linOp {
	acked := map[uint64]bool{}
	for _, o := range tasks {
		if o.kind == kSubmitTask && o.ok {
			acked[o.id] = true
		}
	}
	seen := map[uint64]string{} // orphan id -> spec shown
	var orphans []uint64
	see := func(id uint64, spec string) {
		if acked[id] {
			return
		}
		s, ok := seen[id]
		if !ok {
			orphans = append(orphans, id)
		}
		if !ok || s == unknownSpec {
			seen[id] = spec
		}
	}
	for _, o := range tasks {
		switch {
		case o.kind == kListTasks && o.ok:
			for _, t := range o.tasks {
				see(t.id, t.spec)
			}
		case (o.kind == kGetTask || o.kind == kCancelTask) && o.ok:
			see(o.id, o.task.spec)
		case o.kind == kCancelTask && o.code == apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			see(o.id, unknownSpec)
		}
	}
	if len(orphans) == 0 || len(indet) == 0 {
		return nil
	}
	slices.Sort(orphans)
	compatible := func(id uint64, s *linOp) bool {
		return seen[id] == unknownSpec || seen[id] == s.spec
	}
	// Kuhn's augmenting paths: orphans on one side, submissions on the other.
	owner := make([]int, len(indet)) // submission -> orphan index + 1
	var try func(o int, visited []bool) bool
	try = func(o int, visited []bool) bool {
		for s, sub := range indet {
			if visited[s] || !compatible(orphans[o], sub) {
				continue
			}
			visited[s] = true
			if owner[s] == 0 || try(owner[s]-1, visited) {
				owner[s] = o + 1
				return true
			}
		}
		return false
	}
	matched := make([]bool, len(orphans))
	for o := range orphans {
		matched[o] = try(o, make([]bool, len(indet)))
	}
	var out []*linOp
	for o, id := range orphans {
		if !matched[o] {
			continue
		}
		ph := &linOp{kind: kPhantomSubmit, id: id, spec: seen[id], indeterminate: true, call: time.Duration(math.MaxInt64), client: phantomClient}
		for _, s := range indet {
			if compatible(id, s) {
				ph.call = min(ph.call, s.call)
				ph.phantomOf++
			}
		}
		out = append(out, ph)
	}
	return out
}

// makeEvents turns the operations into porcupine's call and return events,
// ordered as the package comment says. Event ids are indexes into ops.
func makeEvents(ops []*linOp) []porcupine.Event {
	type item struct {
		t     int64
		class int
		seq   int
		kind  porcupine.EventKind
		id    int
	}
	items := make([]item, 0, 2*len(ops))
	for id, o := range ops {
		if o.kind == kEnd {
			items = append(items, item{math.MaxInt64, 1, id, porcupine.CallEvent, id}, item{math.MaxInt64, 2, id, porcupine.ReturnEvent, id})
			continue
		}
		if o.pred != nil {
			items = append(items, item{int64(o.pred.ret), 1, 2*o.pred.histIdx + 1, porcupine.CallEvent, id})
		} else {
			items = append(items, item{int64(o.call), 0, id, porcupine.CallEvent, id})
		}
		if o.indeterminate {
			items = append(items, item{math.MaxInt64, 2, id, porcupine.ReturnEvent, id})
		} else {
			items = append(items, item{int64(o.ret), 1, 2 * o.histIdx, porcupine.ReturnEvent, id})
		}
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.class, b.class), cmp.Compare(a.seq, b.seq))
	})
	events := make([]porcupine.Event, len(items))
	for i, it := range items {
		events[i] = porcupine.Event{ClientId: ops[it.id].client, Kind: it.kind, Value: ops[it.id], Id: it.id}
	}
	return events
}

// --- VM model ---------------------------------------------------------

// vmRec is a VM as the model sees it.
type vmRec struct {
	name    string
	desired apiv1.VmDesiredState
	spec    string
}

func (r vmRec) hash() uint64 {
	h := fnv.New64a()
	h.Write([]byte(r.name))
	h.Write([]byte{0, byte(r.desired)})
	h.Write([]byte(r.spec))
	return mix64(h.Sum64())
}

func vmRecOf(v *apiv1.Vm) *vmRec {
	if v == nil {
		return nil
	}
	return &vmRec{name: v.GetName(), desired: v.GetDesiredState(), spec: vmSpecFP(v.GetSpec())}
}

// vmSpecFP fingerprints a VM spec, restart policy aside (the state fills
// in its default).
func vmSpecFP(s *apiv1.VmSpec) string {
	if s == nil {
		return ""
	}
	c := proto.CloneOf(s)
	c.RestartPolicy = apiv1.RestartPolicy_RESTART_POLICY_UNSPECIFIED
	b, _ := deterministic.Marshal(c)
	return string(b)
}

// vmState is the model's state: the VMs sorted by name, and the sum of
// their hashes. It is never modified once made.
type vmState struct {
	recs []vmRec
	h    uint64
	// ended: past the end operation (see withEnds).
	ended bool
}

var vmEnded = &vmState{ended: true, h: 1}

func (s *vmState) find(name string) (int, bool) {
	return slices.BinarySearchFunc(s.recs, name, func(r vmRec, n string) int { return strings.Compare(r.name, n) })
}

// put returns s with r in place of the VM of its name.
func (s *vmState) put(r vmRec) *vmState {
	i, found := s.find(r.name)
	n := &vmState{h: s.h + r.hash()}
	if found {
		n.h -= s.recs[i].hash()
		n.recs = slices.Clone(s.recs)
		n.recs[i] = r
	} else {
		n.recs = slices.Insert(slices.Clip(s.recs), i, r)
	}
	return n
}

func (s *vmState) remove(name string) *vmState {
	i, found := s.find(name)
	if !found {
		return s
	}
	return &vmState{h: s.h - s.recs[i].hash(), recs: slices.Delete(slices.Clone(s.recs), i, i+1)}
}

func (s *vmState) equal(t *vmState) bool {
	return s == t || (s.h == t.h && s.ended == t.ended && slices.Equal(s.recs, t.recs))
}

func (s *vmState) String() string {
	if s.ended {
		return "ended"
	}
	var b strings.Builder
	b.WriteString("{")
	for i, r := range s.recs {
		if i == 20 {
			fmt.Fprintf(&b, " ... %d more", len(s.recs)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s spec %s", r.name, shortDesired(r.desired), shortFP(r.spec))
	}
	b.WriteString("}")
	return b.String()
}

func vmModel() porcupine.Model {
	return settledModel(func() *vmState { return &vmState{} }, vmEnded, vmStep)
}

func (s *vmState) hash() uint64   { return s.h }
func (s *vmState) isEnded() bool  { return s.ended }
func (s *taskState) hash() uint64 { return s.h }
func (s *taskState) isEnded() bool {
	return s.ended
}

// modelState is what settledModel needs of a per-key model state.
type modelState[S any] interface {
	equal(S) bool
	hash() uint64
	isEnded() bool
	String() string
}

// settledModel wraps a sequential specification step into a porcupine
// model with the final "end" operation: before it, an indeterminate write
// is accepted only where it changes the state; after it, every
// indeterminate write is accepted as a no-op (a write that changes nothing
// can always be moved past the end, so this accepts the same histories and
// spares porcupine the search).
func settledModel[S modelState[S]](initial func() S, ended S, step func(S, *linOp) (bool, any)) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return initial() },
		Step: func(s, in, _ any) (bool, any) {
			st, o := s.(S), in.(*linOp)
			switch {
			case o.kind == kEnd:
				return !st.isEnded(), ended
			case st.isEnded():
				return o.indeterminate, st
			}
			ok, next := step(st, o)
			if ok && o.indeterminate && next.(S).equal(st) {
				return false, st // changes nothing here: it goes after the end
			}
			return ok, next
		},
		Equal:             func(a, b any) bool { return a.(S).equal(b.(S)) },
		Hash:              func(s any) uint64 { return s.(S).hash() },
		DescribeOperation: func(in, _ any) string { return in.(*linOp).String() },
		DescribeState:     func(s any) string { return s.(S).String() },
	}
}

// vmStep is the VM API's sequential specification.
func vmStep(s *vmState, o *linOp) (bool, any) {
	const (
		running = apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING
		stopped = apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED
	)
	if o.kind == kListVms {
		if !o.ok {
			return false, s
		}
		want := s.recs
		if o.limit > 0 && o.limit < len(want) {
			want = want[:o.limit]
		}
		return slices.Equal(o.vms, want), s
	}
	i, present := s.find(o.name)
	var cur vmRec
	if present {
		cur = s.recs[i]
	}
	if !o.indeterminate && !o.ok {
		// A definite refusal changes nothing; is it the right one?
		switch o.code {
		case apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			return true, s // refused whatever the state (name, spec, request id)
		case apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED:
			return o.kind == kCreateVm, s
		case apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
			return o.kind == kCreateVm && present, s
		case apiv1.ErrorCode_ERROR_CODE_NOT_FOUND:
			// A create is refused NOT_FOUND when no node offers its image
			// (no node has registered yet): node records are not modelled,
			// so that refusal is allowed in any state.
			return o.kind == kCreateVm || !present, s
		}
		return false, s
	}
	// A success (checked against the answer), or an indeterminate write
	// (applied as the state machine would, whatever it meets).
	switch o.kind {
	case kCreateVm:
		if present {
			return o.indeterminate, s // an indeterminate one would be refused
		}
		want := vmRec{name: o.name, desired: stopped, spec: o.spec}
		if o.start {
			want.desired = running
		}
		return o.indeterminate || *o.vm == want, s.put(want)
	case kStartVm, kStopVm:
		if !present {
			return o.indeterminate, s
		}
		want := cur
		want.desired = running
		if o.kind == kStopVm {
			want.desired = stopped
		}
		return o.indeterminate || *o.vm == want, s.put(want)
	case kDeleteVm:
		if !present {
			return o.indeterminate, s
		}
		// Nothing is ever placed, so the record goes at once.
		return o.indeterminate || (o.removed && o.vm.name == cur.name && o.vm.spec == cur.spec), s.remove(o.name)
	case kGetVm:
		return present && *o.vm == cur, s
	}
	return false, s
}

// --- Task model -------------------------------------------------------

// taskRec is a task as the model sees it.
type taskRec struct {
	id        uint64
	cancelled bool
	spec      string
}

func (r taskRec) hash() uint64 {
	h := fnv.New64a()
	h.Write([]byte(r.spec))
	x := h.Sum64() ^ mix64(r.id)
	if r.cancelled {
		x = ^x
	}
	return mix64(x)
}

func taskRecOf(t *apiv1.Task) *taskRec {
	if t == nil {
		return nil
	}
	return &taskRec{id: t.GetId(), cancelled: t.GetStatus() == apiv1.TaskStatus_TASK_STATUS_CANCELLED, spec: taskSpecFP(t.GetSpec())}
}

func taskSpecFP(s *apiv1.TaskSpec) string {
	if s == nil {
		return ""
	}
	b, _ := deterministic.Marshal(s)
	return string(b)
}

// matches reports whether an answer's task agrees with the model's; the
// spec of a phantom whose spec no answer showed matches any.
func (r taskRec) matches(got taskRec) bool {
	return r.id == got.id && r.cancelled == got.cancelled && (r.spec == got.spec || r.spec == unknownSpec)
}

// taskState is the model's state: the tasks sorted by id, and the sum of
// their hashes. It is never modified once made.
type taskState struct {
	recs []taskRec
	h    uint64
	// ended: past the end operation (see withEnds).
	ended bool
}

var taskEnded = &taskState{ended: true, h: 1}

func (s *taskState) find(id uint64) (int, bool) {
	return slices.BinarySearchFunc(s.recs, id, func(r taskRec, id uint64) int { return cmp.Compare(r.id, id) })
}

func (s *taskState) equal(t *taskState) bool {
	return s == t || (s.h == t.h && s.ended == t.ended && slices.Equal(s.recs, t.recs))
}

// add adds a task whose id is not present.
func (s *taskState) add(r taskRec) *taskState {
	i, _ := s.find(r.id)
	return &taskState{recs: slices.Insert(slices.Clip(s.recs), i, r), h: s.h + r.hash()}
}

func (s *taskState) cancel(i int) *taskState {
	r := s.recs[i]
	n := &taskState{recs: slices.Clone(s.recs), h: s.h - r.hash()}
	r.cancelled = true
	n.recs[i] = r
	n.h += r.hash()
	return n
}

func (s *taskState) String() string {
	if s.ended {
		return "ended"
	}
	var b strings.Builder
	b.WriteString("{")
	for i, r := range s.recs {
		if i == 40 {
			fmt.Fprintf(&b, " ... %d more", len(s.recs)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", r.id)
		if r.cancelled {
			b.WriteString(" (cancelled)")
		}
	}
	b.WriteString("}")
	return b.String()
}

func taskModel() porcupine.Model {
	return settledModel(func() *taskState { return &taskState{} }, taskEnded, taskStep)
}

// taskStep is the task API's sequential specification.
func taskStep(s *taskState, o *linOp) (bool, any) {
	i, present := s.find(o.id)
	switch o.kind {
	case kListTasks:
		want := s.recs
		if o.limit > 0 && o.limit < len(want) {
			want = want[:o.limit]
		}
		if !o.ok || len(o.tasks) != len(want) {
			return false, s
		}
		for j, r := range want {
			if !r.matches(o.tasks[j]) {
				return false, s
			}
		}
		return true, s
	case kGetTask:
		switch {
		case o.ok:
			return present && s.recs[i].matches(*o.task), s
		case o.code == apiv1.ErrorCode_ERROR_CODE_NOT_FOUND:
			return !present, s
		}
		return false, s
	case kSubmitTask: // acknowledged, or refused on grounds the model does not know
		if !o.ok {
			return false, s
		}
		r := taskRec{id: o.id, spec: o.spec}
		return !present && *o.task == r, s.add(r)
	case kPhantomSubmit:
		return !present, s.add(taskRec{id: o.id, spec: o.spec})
	case kCancelTask:
		live := present && !s.recs[i].cancelled
		if o.indeterminate {
			if live {
				return true, s.cancel(i)
			}
			return true, s
		}
		switch {
		case o.ok:
			if !live {
				return false, s
			}
			want := s.recs[i]
			want.cancelled = true
			return want.matches(*o.task), s.cancel(i)
		case o.code == apiv1.ErrorCode_ERROR_CODE_NOT_FOUND:
			return !present, s
		case o.code == apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			return present && !live, s
		case o.code == apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			return true, s
		}
	}
	return false, s
}

// --- descriptions -----------------------------------------------------

// count says "1 thing" or "n things".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func shortFP(fp string) string {
	switch fp {
	case "":
		return "none"
	case unknownSpec:
		return unknownSpec
	}
	h := fnv.New32a()
	h.Write([]byte(fp))
	return fmt.Sprintf("#%08x", h.Sum32())
}

func shortDesired(d apiv1.VmDesiredState) string {
	return strings.ToLower(strings.TrimPrefix(d.String(), "VM_DESIRED_STATE_"))
}

func describeReq(req *apiv1.Request) string {
	switch r := req.GetKind().(type) {
	case *apiv1.Request_CreateVm:
		return fmt.Sprintf("CreateVm(%q, start=%v, spec %s)", r.CreateVm.GetName(), r.CreateVm.GetStart(), shortFP(vmSpecFP(r.CreateVm.GetSpec())))
	case *apiv1.Request_StartVm:
		return fmt.Sprintf("StartVm(%q)", r.StartVm.GetName())
	case *apiv1.Request_StopVm:
		return fmt.Sprintf("StopVm(%q)", r.StopVm.GetName())
	case *apiv1.Request_DeleteVm:
		return fmt.Sprintf("DeleteVm(%q)", r.DeleteVm.GetName())
	case *apiv1.Request_GetVm:
		return fmt.Sprintf("GetVm(%q)", r.GetVm.GetName())
	case *apiv1.Request_ListVms:
		return fmt.Sprintf("ListVms(limit %d)", r.ListVms.GetLimit())
	case *apiv1.Request_SubmitTask:
		return fmt.Sprintf("SubmitTask(spec %s)", shortFP(taskSpecFP(r.SubmitTask.GetSpec())))
	case *apiv1.Request_CancelTask:
		return fmt.Sprintf("CancelTask(%d)", r.CancelTask.GetId())
	case *apiv1.Request_GetTask:
		return fmt.Sprintf("GetTask(%d)", r.GetTask.GetId())
	case *apiv1.Request_ListTasks:
		return fmt.Sprintf("ListTasks(limit %d)", r.ListTasks.GetLimit())
	case *apiv1.Request_GetClusterStatus:
		return "GetClusterStatus"
	}
	return fmt.Sprintf("%v", req)
}

func (o *linOp) describeAnswer() string {
	switch {
	case o.indeterminate:
		return "no definite answer (indeterminate)"
	case !o.ok:
		return strings.TrimPrefix(o.code.String(), "ERROR_CODE_")
	}
	var b strings.Builder
	b.WriteString("OK")
	if o.vm != nil {
		fmt.Fprintf(&b, " %q %s spec %s", o.vm.name, shortDesired(o.vm.desired), shortFP(o.vm.spec))
		if o.kind == kDeleteVm {
			fmt.Fprintf(&b, " removed=%v", o.removed)
		}
	}
	if o.task != nil {
		fmt.Fprintf(&b, " task %d", o.task.id)
		if o.task.cancelled {
			b.WriteString(" (cancelled)")
		}
		fmt.Fprintf(&b, " spec %s", shortFP(o.task.spec))
	}
	if o.kind == kListVms {
		b.WriteString(" [")
		for i, v := range o.vms {
			if i == 20 {
				fmt.Fprintf(&b, " ... %d more", len(o.vms)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s: %s", v.name, shortDesired(v.desired))
		}
		b.WriteString("]")
	}
	if o.kind == kListTasks {
		b.WriteString(" [")
		for i, t := range o.tasks {
			if i == 40 {
				fmt.Fprintf(&b, " ... %d more", len(o.tasks)-i)
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%d", t.id)
			if t.cancelled {
				b.WriteString(" (cancelled)")
			}
		}
		b.WriteString("]")
	}
	return b.String()
}

func (o *linOp) String() string {
	if o.kind == kEnd {
		return "end of the history (indeterminate writes that changed nothing go after it)"
	}
	if o.kind == kPhantomSubmit {
		return fmt.Sprintf("phantom SubmitTask giving task %d spec %s, for one of %d indeterminate SubmitTasks (earliest called at %s)", o.id, shortFP(o.spec), o.phantomOf, o.call)
	}
	if o.projOf != nil {
		what := fmt.Sprintf("VM %q", o.name)
		if o.kind == kGetTask {
			what = fmt.Sprintf("task %d", o.id)
		}
		shows := "does not show " + what
		if o.ok {
			shows = "shows " + what
		}
		return fmt.Sprintf("%s [which %s]", o.projOf, shows)
	}
	ret := o.ret.String()
	if o.indeterminate {
		ret = "∞"
	}
	s := fmt.Sprintf("client %d [%s, %s] %s -> %s", o.op.Client, o.call, ret, describeReq(o.op.Req), o.describeAnswer())
	if o.merged > 1 {
		s += fmt.Sprintf(" (%d operations with client request id %q)", o.merged, o.op.Key)
	}
	return s
}
