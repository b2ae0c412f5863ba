package processtest

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
)

// TestLeaderCrashElectsNewLeaderAndWritesContinue: writers create VMs
// through one client that knows every node; the leader is killed with
// SIGKILL mid-stream. A new leader is elected, the writers carry on without
// an error, and every acknowledged VM is there afterwards, on the survivors
// and on the old leader once it restarts from its data directory.
func TestLeaderCrashElectsNewLeaderAndWritesContinue(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client()

	w := startVMWriters(t, cl, 4)
	w.waitAcked(40, "writes before the crash")

	old, oldLeader := c.mustLeader()
	oldLeader.kill9()
	atKill := w.acked()
	t.Logf("killed leader %d (term %d) after %d acknowledged writes", oldLeader.id, old.GetTerm(), atKill)

	// The survivors elect a new leader, in a later term, and agree on it.
	waitFor(t, formTimeout, "a new leader that both survivors know", func() (bool, string) {
		var views []string
		var lead uint64
		agree := true
		for _, n := range c.byID() {
			if n == oldLeader {
				continue
			}
			st, err := n.status()
			if err != nil {
				return false, fmt.Sprintf("node %d: %v", n.id, err)
			}
			views = append(views, describeMembers(st))
			if lead == 0 {
				lead = st.GetLeaderId()
			}
			if st.GetLeaderId() == 0 || st.GetLeaderId() == oldLeader.id || st.GetLeaderId() != lead || st.GetTerm() <= old.GetTerm() {
				agree = false
			}
		}
		return agree, strings.Join(views, " | ")
	})

	// Writes continue through the same client.
	w.waitAcked(atKill+40, "writes after the crash")
	want := w.stop()
	t.Logf("%d writes acknowledged, %d after the crash", len(want), len(want)-atKill)

	// Every acknowledged write is there: a linearizable read through the
	// cluster, then the old leader's own state once it is back.
	rctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	list, err := cl.ListVms(rctx, &apiv1.ListVmsRequest{})
	if err != nil {
		t.Fatalf("ListVms: %v", err)
	}
	checkVMs(t, "the cluster", list.GetVms(), want)

	oldLeader.restart()
	st := c.waitVoters(3)
	waitCaughtUp(t, oldLeader, st.GetCommitIndex())
	list, err = oldLeader.staleClient().ListVms(rctx, &apiv1.ListVmsRequest{Stale: true})
	if err != nil {
		t.Fatalf("ListVms on the restarted node %d: %v", oldLeader.id, err)
	}
	checkVMs(t, fmt.Sprintf("restarted node %d", oldLeader.id), list.GetVms(), want)
}

// TestPausedLeaderIsReplacedAndRejoins: the leader is frozen with SIGSTOP
// while writers run. The other two elect a new leader and the writes carry
// on; thawed, the old leader follows the new one and catches up with every
// acknowledged write.
func TestPausedLeaderIsReplacedAndRejoins(t *testing.T) {
	c := startCluster(t, 3)
	w := startVMWriters(t, c.client(), 4)
	w.waitAcked(40, "writes before the pause")

	old, oldLeader := c.mustLeader()
	oldLeader.pause()
	atPause := w.acked()
	t.Logf("paused leader %d (term %d) after %d acknowledged writes", oldLeader.id, old.GetTerm(), atPause)
	waitFor(t, formTimeout, "a new leader", func() (bool, string) {
		st, n, why := c.leaderStatus()
		if st == nil {
			return false, why
		}
		return n != oldLeader && st.GetTerm() > old.GetTerm(), describeMembers(st)
	})
	w.waitAcked(atPause+40, "writes while the old leader is paused")

	oldLeader.resume()
	var lead uint64
	waitFor(t, formTimeout, "the old leader following the new one", func() (bool, string) {
		st, n, why := c.leaderStatus()
		if st == nil {
			return false, why
		}
		lead = n.id
		own, err := oldLeader.status()
		if err != nil {
			return false, err.Error()
		}
		return n != oldLeader && own.GetLeaderId() == n.id, describeMembers(own)
	})
	want := w.stop()
	t.Logf("%d writes acknowledged, %d after the pause; leader now %d", len(want), len(want)-atPause, lead)

	st := c.waitVoters(3)
	waitCaughtUp(t, oldLeader, st.GetCommitIndex())
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	list, err := oldLeader.staleClient().ListVms(ctx, &apiv1.ListVmsRequest{Stale: true})
	if err != nil {
		t.Fatalf("ListVms on node %d: %v", oldLeader.id, err)
	}
	checkVMs(t, fmt.Sprintf("the old leader %d", oldLeader.id), list.GetVms(), want)
}

// vmWriters create VMs through one client from several goroutines, each
// call with a generous deadline, until stopped; they record the names of
// acknowledged creates and every error. Stopping lets each writer finish
// its call in flight, so that no create's outcome is left unknown.
type vmWriters struct {
	t        *testing.T
	stopping atomic.Bool
	cancel   context.CancelFunc // ends calls in flight: for the test's cleanup only
	wg       sync.WaitGroup
	mu       sync.Mutex
	names    []string
	errs     []error
}

func startVMWriters(t *testing.T, cl *client.Client, workers int) *vmWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &vmWriters{t: t, cancel: cancel}
	t.Cleanup(func() { w.stopping.Store(true); cancel(); w.wg.Wait() })
	for g := range workers {
		w.wg.Go(func() {
			for i := 0; !w.stopping.Load(); i++ {
				name := fmt.Sprintf("w%d-%d", g, i)
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				_, err := cl.CreateVm(cctx, &apiv1.CreateVmRequest{
					Name: name, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
				})
				cancel()
				w.mu.Lock()
				switch {
				case err == nil:
					w.names = append(w.names, name)
				case ctx.Err() == nil:
					w.errs = append(w.errs, fmt.Errorf("create %s: %w", name, err))
				}
				w.mu.Unlock()
			}
		})
	}
	return w
}

// acked is how many creates were acknowledged so far; it fails the test if
// any failed.
func (w *vmWriters) acked() int {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		w.t.Fatalf("%d writes failed, the first: %v", len(w.errs), w.errs[0])
	}
	return len(w.names)
}

// waitAcked waits until at least n creates were acknowledged.
func (w *vmWriters) waitAcked(n int, what string) {
	w.t.Helper()
	waitFor(w.t, callTimeout, what, func() (bool, string) {
		got := w.acked()
		return got >= n, fmt.Sprintf("%d acknowledged, want %d", got, n)
	})
}

// stop lets every writer finish its call in flight, then returns the
// acknowledged names. It fails the test if any call failed.
func (w *vmWriters) stop() []string {
	w.t.Helper()
	w.stopping.Store(true)
	w.wg.Wait()
	w.acked()
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.names)
}

// checkVMs fails unless vms are exactly the VMs named in want. Every
// create the writers sent was acknowledged (a retry keeps its request id),
// so a VM missing lost an acknowledged write, and one too many means a
// create was applied without being acknowledged, or twice.
func checkVMs(t *testing.T, where string, vms []*apiv1.Vm, want []string) {
	t.Helper()
	have := map[string]bool{}
	for _, vm := range vms {
		have[vm.GetName()] = true
	}
	var missing []string
	for _, name := range want {
		if !have[name] {
			missing = append(missing, name)
		}
		delete(have, name)
	}
	if len(missing) > 0 || len(have) > 0 {
		t.Fatalf("%s lacks %d of %d acknowledged VMs %v and holds %d more %v", where, len(missing), len(want), missing, len(have), slices.Sorted(maps.Keys(have)))
	}
}

// TestRestartedFollowerCatchesUpBySnapshot: a follower is killed, 20,000
// writes go by (two snapshots' worth at the default of 10,000 entries, so
// the leader's log no longer reaches back to where the follower stopped),
// and the follower restarts from its data directory alone. It catches up,
// through a snapshot, to the leader's commit index and holds every task.
func TestRestartedFollowerCatchesUpBySnapshot(t *testing.T) {
	const writes = 20000
	c := startCluster(t, 3)
	_, leader := c.mustLeader()
	var f *node
	for _, n := range c.byID() {
		if n != leader {
			f = n
		}
	}
	before, err := f.status()
	if err != nil {
		t.Fatal(err)
	}
	f.kill9()
	t.Logf("killed follower %d at applied index %d", f.id, before.GetAppliedIndex())

	cl := c.client()
	createVMs(t, cl, writes, 96, "while-down")
	st, _ := c.mustLeader()
	commit := st.GetCommitIndex()
	offsets := map[*node]int{}
	for _, n := range c.byID() {
		offsets[n] = n.logSize()
	}

	f.restart()
	waitCaughtUp(t, f, commit)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	got, err := f.staleClient().ListVms(ctx, &apiv1.ListVmsRequest{Stale: true})
	if err != nil {
		t.Fatalf("ListVms on node %d: %v", f.id, err)
	}
	if n := len(got.GetVms()); n < writes {
		t.Fatalf("restarted node %d holds %d VMs, want at least %d", f.id, n, writes)
	}
	// It holds exactly what the leader holds (nothing was written since).
	lst, ln := c.mustLeader()
	want, err := ln.staleClient().ListVms(ctx, &apiv1.ListVmsRequest{Stale: true})
	if err != nil {
		t.Fatalf("ListVms on the leader: %v", err)
	}
	if lst.GetCommitIndex() != commit {
		t.Logf("the leader's commit index moved from %d to %d (its own entries)", commit, lst.GetCommitIndex())
	}
	if !slices.EqualFunc(got.GetVms(), want.GetVms(), func(a, b *apiv1.Vm) bool { return a.GetName() == b.GetName() }) {
		t.Fatalf("restarted node %d holds %d VMs, the leader %d: their names differ", f.id, len(got.GetVms()), len(want.GetVms()))
	}
	if st := c.waitVoters(3); member(st, f.id) == nil || !member(st, f.id).GetVoter() {
		t.Fatalf("node %d is not a voter again: %s", f.id, describeMembers(st))
	}

	// The catch-up went through a snapshot: a peer's transport logged
	// sending node f one taken after the writes began.
	sent := regexp.MustCompile(`msg="snapshot sent".* peer=` + strconv.FormatUint(f.id, 10) + ` index=(\d+)`)
	var evidence []string
	for n, off := range offsets {
		for _, m := range sent.FindAllStringSubmatch(n.logSince(off), -1) {
			if idx, _ := strconv.ParseUint(m[1], 10, 64); idx > before.GetAppliedIndex()+10000 {
				evidence = append(evidence, fmt.Sprintf("node %d: %s", n.id, m[0]))
			}
		}
	}
	if len(evidence) == 0 {
		t.Fatalf("no peer logged sending node %d a snapshot past index %d", f.id, before.GetAppliedIndex()+10000)
	}
	t.Logf("snapshot path: %s", strings.Join(evidence, "; "))
}
