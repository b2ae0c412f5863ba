package sim

import (
	"io"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
)

func task(cmd string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{
		Spec: &apiv1.TaskSpec{Command: cmd, Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64}},
	}}}
}

func runToLeader(t *testing.T, w *World) uint64 {
	t.Helper()
	w.Must(t, w.RunUntil(func() bool { return w.StableLeader() != 0 && w.Registered() }, 20*time.Second))
	return w.StableLeader()
}

func TestCrashLosesUnsyncedWritesAndKeepsSyncedOnes(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	runToLeader(t, w)
	n := w.Node(2)
	write := func(name string, sync bool) {
		f, err := n.fs.Create(name, vfs.WriteCategoryUnspecified)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("payload")); err != nil {
			t.Fatal(err)
		}
		if sync {
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write("synced", true)
	dir, err := n.fs.OpenDir("")
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Sync(); err != nil {
		t.Fatal(err)
	}
	_ = dir.Close()
	write("unsynced", false)
	// Keep none of the unsynced data: the unsynced file must be gone.
	n.crash(0)
	if _, err := n.fs.Stat("unsynced"); err == nil {
		f, _ := n.fs.Open("unsynced")
		b, _ := io.ReadAll(f)
		if len(b) > 0 {
			t.Fatalf("unsynced write survived a crash: %q", b)
		}
	}
	f, err := n.fs.Open("synced")
	if err != nil {
		t.Fatalf("synced file lost in a crash: %v", err)
	}
	if b, _ := io.ReadAll(f); string(b) != "payload" {
		t.Fatalf("synced file holds %q after a crash", b)
	}
	// The node's store, all synced, reopens and the node rejoins.
	w.Must(t, w.Restart(2))
	w.Must(t, w.RunUntil(w.Converged, 30*time.Second))
}

func TestDiskFaultStopsTheNodeBeforeItSendsAnything(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	leader := runToLeader(t, w)
	follower := uint64(1)
	if follower == leader {
		follower = 2
	}
	w.FailSave(follower, 1)
	c := w.NewClient(ClientOptions{Target: leader})
	for i := 0; i < 5; i++ {
		c.Do(task("x"))
	}
	w.Must(t, w.RunUntil(w.ClientsIdle, 30*time.Second))
	n := w.Node(follower)
	if n.Up() || n.DiskFaults() != 1 {
		t.Fatalf("after a disk fault: up=%v faults=%d, want a stopped node with one fault", n.Up(), n.DiskFaults())
	}
	acked, _, _, _, _ := w.History().Summary()
	if acked != 5 {
		t.Fatalf("%d of 5 writes acknowledged with one follower stopped", acked)
	}
	w.Must(t, w.Restart(follower))
	w.Must(t, w.RunUntil(w.Converged, 30*time.Second))
	if got := len(w.Node(follower).Core().State().Tasks(0)); got != 5 {
		t.Fatalf("restarted node holds %d tasks, want 5", got)
	}
}

func TestPausedNodeReceivesNothingUntilResumed(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 3})
	leader := runToLeader(t, w)
	follower := uint64(1)
	if follower == leader {
		follower = 2
	}
	before := w.Node(follower).Core().State().AppliedIndex()
	w.Pause(follower)
	c := w.NewClient(ClientOptions{Target: leader})
	for i := 0; i < 5; i++ {
		c.Do(task("y"))
	}
	w.Must(t, w.RunUntil(w.ClientsIdle, 30*time.Second))
	if got := w.Node(follower).Core().State().AppliedIndex(); got != before {
		t.Fatalf("paused node applied %d -> %d", before, got)
	}
	if len(w.Node(follower).held) == 0 {
		t.Fatalf("nothing was held for the paused node")
	}
	w.Resume(follower)
	w.Must(t, w.RunUntil(w.Converged, 30*time.Second))
}

// The simulator never drifts a clock beyond MaxClockDrift, the core's
// constant from which the fencing margin derives: each node's drift is
// drawn within it, and its clock (and so its ticks) runs at that rate.
func TestClockDriftStaysWithinTheBound(t *testing.T) {
	if MaxClockDrift != core.MaxClockDrift {
		t.Fatalf("the simulator's MaxClockDrift %v is not the core's %v", MaxClockDrift, core.MaxClockDrift)
	}
	w := NewT(t, BaseSeed(t), Options{Nodes: 5, ClockDrift: true, MaxClockSkew: time.Second})
	check := func(n *Node) {
		if d := n.Drift(); d < -MaxClockDrift || d > MaxClockDrift {
			t.Fatalf("node %d drifts %.4f, beyond ±%.2f", n.ID(), d, MaxClockDrift)
		}
	}
	start := map[uint64]time.Time{}
	for _, id := range w.IDs() {
		check(w.Node(id))
		start[id] = w.Node(id).clock()
	}
	runToLeader(t, w)
	from := w.Now()
	w.Must(t, w.RunFor(10*time.Second))
	for _, id := range w.IDs() {
		elapsed := w.Node(id).clock().Sub(start[id])
		real := w.Now()
		if lo, hi := time.Duration(float64(real)*(1-MaxClockDrift)), time.Duration(float64(real)*(1+MaxClockDrift)); elapsed < lo || elapsed > hi {
			t.Fatalf("node %d's clock advanced %s in %s of virtual time (since %s): beyond ±%.2f", id, elapsed, real, from, MaxClockDrift)
		}
		if tick := w.Node(id).tickInterval(); tick < time.Duration(float64(w.opts.TickInterval)*(1-MaxClockDrift)) || tick > time.Duration(float64(w.opts.TickInterval)*(1+MaxClockDrift)) {
			t.Fatalf("node %d ticks every %s", id, tick)
		}
	}
	// Many draws, all within the bound.
	for i := range 50 {
		w2, err := New(BaseSeed(t)+uint64(i), Options{Nodes: 7, ClockDrift: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range w2.IDs() {
			check(w2.Node(id))
		}
		w2.Close()
	}
}

func TestPartitionCutsAcrossGroupsOnly(t *testing.T) {
	w := NewT(t, BaseSeed(t), Options{Nodes: 5})
	runToLeader(t, w)
	w.Net().Partition([]uint64{1, 2}, []uint64{3, 4, 5})
	for _, tc := range []struct {
		a, b    uint64
		blocked bool
	}{{1, 2, false}, {3, 5, false}, {1, 3, true}, {4, 2, true}} {
		if got := w.Net().blocked(tc.a, tc.b); got != tc.blocked {
			t.Fatalf("blocked(%d, %d) = %v, want %v", tc.a, tc.b, got, tc.blocked)
		}
	}
	w.Net().ClogLink(3, 4, false)
	if !w.Net().blocked(3, 4) || w.Net().blocked(4, 3) {
		t.Fatalf("a one-way clog must cut one direction only")
	}
	w.Net().Heal()
	if w.Net().blocked(1, 3) || w.Net().blocked(3, 4) {
		t.Fatalf("heal left a cut")
	}
	w.Must(t, w.RunUntil(w.Converged, 30*time.Second))
}
