package state_test

import (
	"fmt"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// benchLog builds a realistic log for a fresh state, applied from index 1:
// nodes register, then each round a user creates a VM (with a client request
// id) that is placed, starts and runs; the VM created lag rounds earlier is
// stopped and deleted; and a task is submitted, placed, runs and succeeds.
// About 100 VMs run at any time; finished tasks stay in the state.
func benchLog(rounds int) []*apiv1.Command {
	const (
		nodes = 8
		lag   = 100
	)
	var cmds []*apiv1.Command
	for id := uint64(1); id <= nodes; id++ {
		cmds = append(cmds, registerNode(id, 64, 256*1024, map[string]string{"zone": fmt.Sprint("z", id%3)}))
	}
	nodeOf := func(j int) uint64 { return uint64(j%nodes + 1) }
	// placed[j] is the generation VM j runs at: one above the index of its
	// creation, where its generations start.
	placed := make([]uint64, rounds)
	for j := 0; j < rounds; j++ {
		name := fmt.Sprintf("vm-%d", j)
		created := uint64(len(cmds) + 1) // the log index of the create
		placed[j] = created + 1
		cmds = append(cmds,
			withID(fmt.Sprintf("create-%d", j), createVm(name, vmSpec(1, 512), true)),
			assignVm(name, nodeOf(j), created),
			reportVm(name, nodeOf(j), placed[j], apiv1.VmState_VM_STATE_STARTING),
			reportVm(name, nodeOf(j), placed[j], apiv1.VmState_VM_STATE_RUNNING),
		)
		if j >= lag {
			old := fmt.Sprintf("vm-%d", j-lag)
			cmds = append(cmds,
				withID(fmt.Sprintf("stop-%d", j-lag), stopVm(old)),
				reportVm(old, nodeOf(j-lag), placed[j-lag], apiv1.VmState_VM_STATE_STOPPED),
				withID(fmt.Sprintf("delete-%d", j-lag), deleteVm(old)),
			)
		}
		task := uint64(len(cmds) + 1) // a task's id is the index of its submission
		cmds = append(cmds,
			withID(fmt.Sprintf("task-%d", j), submitTask(taskSpec("make", 1, 256))),
			assignTask(task, nodeOf(j)),
			reportTask(task, nodeOf(j), 1, apiv1.TaskStatus_TASK_STATUS_RUNNING, nil),
			reportTask(task, nodeOf(j), 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED,
				&apiv1.TaskResult{ExitCode: 0, OutputTail: []byte("ok\n"), StartedUnixNano: int64(j), FinishedUnixNano: int64(j) + 1}),
		)
	}
	return cmds
}

// BenchmarkApply applies the log of benchLog over and over, starting a fresh
// state (outside the timer) whenever the log runs out. Over one pass the
// state grows to about 3,000 tasks and the request table fills up and evicts.
func BenchmarkApply(b *testing.B) {
	cmds := benchLog(3000)
	b.ReportAllocs()
	s := state.New()
	pos := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if pos == len(cmds) {
			b.StopTimer()
			s, pos = state.New(), 0
			b.StartTimer()
		}
		resp, err := s.Apply(uint64(pos+1), cmds[pos])
		if err != nil || resp.GetError() != nil {
			b.Fatalf("entry %d %v: %v %v", pos+1, cmds[pos], err, resp.GetError())
		}
		pos++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
}

// bigState is a state with 1,000 VMs (600 running), 1,000 tasks (500 ended)
// and 10,000 remembered requests.
func bigState(b *testing.B) *state.State {
	b.Helper()
	s := state.New()
	idx := uint64(0)
	apply := func(cmd *apiv1.Command) *apiv1.Response {
		idx++
		resp, err := s.Apply(idx, cmd)
		if err != nil {
			b.Fatalf("entry %d %v: %v", idx, cmd, err)
		}
		return resp
	}
	const nodes = 10
	for id := uint64(1); id <= nodes; id++ {
		apply(registerNode(id, 1024, 1<<22, map[string]string{"zone": fmt.Sprint("z", id%3)}))
	}
	requests := 0
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("vm-%04d", i)
		spec := vmSpec(2, 2048)
		spec.KernelCmdline = "console=ttyS0 reboot=k panic=1"
		spec.Constraints = map[string]string{"zone": fmt.Sprint("z", i%3)}
		gen := apply(withID(fmt.Sprintf("create-%d", i), createVm(name, spec, true))).GetCreateVm().GetVm().GetGeneration()
		requests++
		if i%5 < 3 {
			// One of the nodes 1-9 of the VM's zone (zone = id % 3).
			node := uint64(i % 3)
			if node == 0 {
				node = 3
			}
			node += 3 * uint64((i/3)%3)
			apply(assignVm(name, node, gen))
			apply(reportVm(name, node, gen+1, apiv1.VmState_VM_STATE_STARTING))
			apply(reportVm(name, node, gen+1, apiv1.VmState_VM_STATE_RUNNING))
		}
	}
	for i := 0; i < 1000; i++ {
		resp := apply(withID(fmt.Sprintf("task-%d", i), submitTask(taskSpec("make", 1, 256))))
		requests++
		if i%2 == 0 {
			id, node := resp.GetSubmitTask().GetTask().GetId(), uint64(i%nodes+1)
			apply(assignTask(id, node))
			apply(reportTask(id, node, 1, apiv1.TaskStatus_TASK_STATUS_SUCCEEDED,
				&apiv1.TaskResult{OutputTail: make([]byte, 256), StartedUnixNano: 1, FinishedUnixNano: 2}))
		}
	}
	for i := 0; requests < state.MaxRequestRecords; i++ {
		apply(withID(fmt.Sprintf("start-%d", i), startVm(fmt.Sprintf("vm-%04d", i%1000))))
		requests++
	}
	if len(s.Vms(0)) != 1000 || len(s.Tasks(0)) != 1000 || s.RequestRecords() != state.MaxRequestRecords {
		b.Fatalf("state has %d VMs, %d tasks, %d requests", len(s.Vms(0)), len(s.Tasks(0)), s.RequestRecords())
	}
	return s
}

func BenchmarkSnapshot(b *testing.B) {
	s := bigState(b)
	data, err := s.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "snapshot_bytes")
}

func BenchmarkRestore(b *testing.B) {
	data, err := bigState(b).Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := state.Restore(data); err != nil {
			b.Fatal(err)
		}
	}
}
