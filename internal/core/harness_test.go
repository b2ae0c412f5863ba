package core_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/store"
)

// harness shuttles messages between real cores, each with a real store on
// its own in-memory filesystem, from one goroutine. It is the core's own
// small test bed; the simulator (package sim) is the full one.
type harness struct {
	t     *testing.T
	ids   []uint64
	nodes map[uint64]*hnode
	// queue holds messages sent and not yet delivered, in send order.
	queue []*raftpb.Message
	// cut[[2]uint64{from, to}] drops messages from from to to.
	cut       map[[2]uint64]bool
	now       time.Time
	nextReq   core.RequestID
	responses map[core.RequestID]*apiv1.Response
	// snapsDelivered counts MsgSnap messages delivered, by recipient.
	snapsDelivered map[uint64]int
	// digest hashes every Ready of every node, for the determinism test.
	digest [32]byte
}

type hnode struct {
	cfg   core.Config
	fs    *vfs.MemFS
	store *store.Store
	node  *core.Node
}

func newHarness(t *testing.T, seed uint64, n int, tweak func(*core.Config)) *harness {
	t.Helper()
	cryptotest.SetGlobalRandom(t, seed)
	h := &harness{
		t:              t,
		nodes:          map[uint64]*hnode{},
		cut:            map[[2]uint64]bool{},
		now:            time.Unix(1_700_000_000, 0).UTC(),
		responses:      map[core.RequestID]*apiv1.Response{},
		snapsDelivered: map[uint64]int{},
	}
	for i := 1; i <= n; i++ {
		h.ids = append(h.ids, uint64(i))
	}
	for _, id := range h.ids {
		cfg := core.Config{
			ID:        id,
			Peers:     h.ids,
			ClusterID: "test-cluster",
			Address:   fmt.Sprintf("127.0.0.1:%d", 7000+id),
			Capacity:  &apiv1.Resources{Vcpus: 8, MemoryMib: 16384},
		}
		if tweak != nil {
			tweak(&cfg)
		}
		h.nodes[id] = &hnode{cfg: cfg, fs: vfs.NewCrashableMem()}
		h.start(id)
	}
	t.Cleanup(func() {
		for _, id := range h.ids {
			if hn := h.nodes[id]; hn.store != nil {
				_ = hn.store.Close()
			}
		}
	})
	return h
}

// start opens node id's store and makes a core from what it holds.
func (h *harness) start(id uint64) {
	h.t.Helper()
	hn := h.nodes[id]
	st, loaded, err := store.Open(context.Background(), store.Options{FS: hn.fs, Dir: "data"})
	if err != nil {
		h.t.Fatalf("node %d: open store: %v", id, err)
	}
	node, err := core.New(hn.cfg, core.Persisted{HardState: loaded.HardState, Snapshot: loaded.Snapshot, Entries: loaded.Entries})
	if err != nil {
		h.t.Fatalf("node %d: new core: %v", id, err)
	}
	hn.store, hn.node = st, node
}

// stop closes node id cleanly (all it saved was synced).
func (h *harness) stop(id uint64) {
	h.t.Helper()
	hn := h.nodes[id]
	if err := hn.store.Close(); err != nil {
		h.t.Fatalf("node %d: close store: %v", id, err)
	}
	hn.store, hn.node = nil, nil
}

// crash drops node id's volatile state and every unsynced byte of its disk.
func (h *harness) crash(id uint64) {
	hn := h.nodes[id]
	crashed := hn.fs.CrashClone(vfs.CrashCloneCfg{})
	_ = hn.store.Close()
	hn.fs, hn.store, hn.node = crashed, nil, nil
}

func (h *harness) up(id uint64) bool { return h.nodes[id].node != nil }

// isolate cuts every link to and from id; heal restores all links.
func (h *harness) isolate(id uint64) {
	for _, other := range h.ids {
		if other != id {
			h.cut[[2]uint64{id, other}] = true
			h.cut[[2]uint64{other, id}] = true
		}
	}
}

func (h *harness) heal() { clear(h.cut) }

// process carries out every node's Readys until none has any.
func (h *harness) process() {
	h.t.Helper()
	for _, id := range h.ids {
		hn := h.nodes[id]
		for hn.node != nil && hn.node.HasReady() {
			rd := hn.node.Ready()
			h.hashReady(id, rd)
			err := hn.store.Save(context.Background(), store.Batch{
				HardState:  rd.HardState,
				ConfState:  rd.ConfState,
				Snapshot:   rd.Snapshot,
				ReplaceLog: rd.SnapshotReplacesLog,
				Entries:    rd.Entries,
				NoSync:     !rd.MustSync,
			})
			if err != nil {
				h.t.Fatalf("node %d: save: %v", id, err)
			}
			h.queue = append(h.queue, rd.Messages...)
			for _, r := range rd.Responses {
				if _, dup := h.responses[r.ID]; dup {
					h.t.Fatalf("node %d: second response to request %d", id, r.ID)
				}
				h.responses[r.ID] = r.Response
			}
			if err := hn.node.Advance(); err != nil {
				h.t.Fatalf("node %d: advance: %v", id, err)
			}
		}
	}
}

// deliver hands every queued message to its recipient, dropping those on a
// cut link or to a node that is down.
func (h *harness) deliver() {
	h.t.Helper()
	msgs := h.queue
	h.queue = nil
	for _, m := range msgs {
		from, to := m.GetFrom(), m.GetTo()
		if h.cut[[2]uint64{from, to}] || !h.up(to) {
			if m.GetType() == raftpb.MessageType_MsgSnap && h.up(from) {
				h.nodes[from].node.ReportSnapshot(to, false)
			}
			continue
		}
		if err := h.nodes[to].node.Step(m); err != nil {
			h.t.Logf("node %d: step: %v", to, err)
		}
		if m.GetType() == raftpb.MessageType_MsgSnap {
			h.snapsDelivered[to]++
			if h.up(from) {
				h.nodes[from].node.ReportSnapshot(to, true)
			}
		}
	}
}

// settle processes and delivers until the cluster is quiet.
func (h *harness) settle() {
	h.t.Helper()
	for i := 0; i < 10000; i++ {
		h.process()
		if len(h.queue) == 0 {
			return
		}
		h.deliver()
	}
	h.t.Fatalf("cluster did not settle")
}

// tick advances every live node's clock by one 100 ms tick, then settles.
func (h *harness) tick() {
	h.t.Helper()
	h.now = h.now.Add(100 * time.Millisecond)
	for _, id := range h.ids {
		if h.up(id) {
			h.nodes[id].node.Tick(h.now)
		}
	}
	h.settle()
}

// leader returns the single node that leads in the highest term, or 0.
func (h *harness) leader() uint64 {
	var best, bestTerm uint64
	for _, id := range h.ids {
		if !h.up(id) {
			continue
		}
		st := h.nodes[id].node.Status()
		if st.RaftState == raft.StateLeader && st.GetTerm() >= bestTerm {
			best, bestTerm = id, st.GetTerm()
		}
	}
	return best
}

// waitLeader ticks until some node leads and every live node follows it.
func (h *harness) waitLeader() uint64 {
	h.t.Helper()
	for i := 0; i < 500; i++ {
		if l := h.leader(); l != 0 {
			agreed := true
			for _, id := range h.ids {
				if h.up(id) && !h.isCut(id, l) {
					if lead, _ := h.nodes[id].node.Leader(); lead != l {
						agreed = false
					}
				}
			}
			if agreed {
				return l
			}
		}
		h.tick()
	}
	h.t.Fatalf("no leader after 500 ticks")
	return 0
}

func (h *harness) isCut(a, b uint64) bool { return h.cut[[2]uint64{a, b}] || h.cut[[2]uint64{b, a}] }

// send hands req to node id and returns its request id.
func (h *harness) send(id uint64, req *apiv1.Request) core.RequestID {
	h.nextReq++
	h.nodes[id].node.Request(h.nextReq, req)
	return h.nextReq
}

// await ticks until request rid has a response.
func (h *harness) await(rid core.RequestID) *apiv1.Response {
	h.t.Helper()
	h.settle()
	for i := 0; i < 500; i++ {
		if r, ok := h.responses[rid]; ok {
			return r
		}
		h.tick()
	}
	h.t.Fatalf("no response to request %d after 500 ticks", rid)
	return nil
}

// do sends req to node id and waits for the answer.
func (h *harness) do(id uint64, req *apiv1.Request) *apiv1.Response {
	h.t.Helper()
	return h.await(h.send(id, req))
}

// waitApplied ticks until every live node has applied index.
func (h *harness) waitApplied(index uint64) {
	h.t.Helper()
	for i := 0; i < 500; i++ {
		all := true
		for _, id := range h.ids {
			if h.up(id) && h.nodes[id].node.State().AppliedIndex() < index {
				all = false
			}
		}
		if all {
			return
		}
		h.tick()
	}
	h.t.Fatalf("nodes did not apply index %d", index)
}

// stateBytes is node id's state machine as snapshot bytes.
func (h *harness) stateBytes(id uint64) []byte {
	h.t.Helper()
	b, err := h.nodes[id].node.State().Snapshot()
	if err != nil {
		h.t.Fatalf("node %d: snapshot: %v", id, err)
	}
	return b
}

func (h *harness) hashReady(id uint64, rd core.Ready) {
	hs := sha256.New()
	hs.Write(h.digest[:])
	fmt.Fprintf(hs, "node %d ready\n", id)
	det := proto.MarshalOptions{Deterministic: true}
	add := func(m proto.Message) {
		b, err := det.Marshal(m)
		if err != nil {
			h.t.Fatalf("marshal: %v", err)
		}
		hs.Write(b)
	}
	if rd.HardState != nil {
		add(rd.HardState)
	}
	for _, e := range rd.Entries {
		add(e)
	}
	if rd.Snapshot != nil {
		add(rd.Snapshot)
	}
	for _, m := range rd.Messages {
		add(m)
	}
	for _, r := range rd.Responses {
		fmt.Fprintf(hs, "resp %d\n", r.ID)
		add(r.Response)
	}
	copy(h.digest[:], hs.Sum(nil))
}

// Request builders.

func createVm(key, name string, start bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_CreateVm{CreateVm: &apiv1.CreateVmRequest{
		ClientRequestId: key, Name: name, Start: start,
		Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
	}}}
}

func submitTask(key string) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_SubmitTask{SubmitTask: &apiv1.SubmitTaskRequest{
		ClientRequestId: key,
		Spec:            &apiv1.TaskSpec{Command: "/bin/true", Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: 64}},
	}}}
}

func getVm(name string, stale bool) *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name, Stale: stale}}}
}

func listTasks() *apiv1.Request {
	return &apiv1.Request{Kind: &apiv1.Request_ListTasks{ListTasks: &apiv1.ListTasksRequest{}}}
}

func mustOK(t *testing.T, r *apiv1.Response) *apiv1.Response {
	t.Helper()
	if r.GetError() != nil {
		t.Fatalf("request failed: %v", r.GetError())
	}
	return r
}

func sortedIDs(m map[uint64]int) []uint64 {
	var ids []uint64
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
