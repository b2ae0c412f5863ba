// Command placement measures how fast internal/sched places VMs, and checks
// that the state machine accepts every placement it makes.
//
// It builds a state with the real state machine (state.Apply): --nodes
// nodes of unequal sizes (8 to 128 vCPUs, 2 or 4 GiB of memory per vCPU,
// between 16 and 512 GiB) and --vms VMs created wanted running (1 to 8
// vCPUs, 512 MiB to 16 GiB), every size drawn from --seed. Building it is not
// timed. Then, --runs times, it times one placement pass as the leader's
// placement controller makes it: sched.New over the state (timed on its
// own), then for each VM waiting for a node (state.VmsToPlace, listed before
// the clock starts) sched.VmRequest, Place and, when a node is found, Commit.
// Every run must give the same answers (sched is deterministic).
//
// Finally every assignment of the pass is applied to the state as an
// AssignVm command, and state.CheckCommitted must find no node beyond its
// capacity × overcommit. The exit status is non-zero if the state refuses
// any assignment, if any limit is broken, or if two runs disagree.
//
//	go run ./bench/placement
//	go run ./bench/placement -nodes 5000 -vms 10000 -max-candidates 0 -strategy spread
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/bench/hostinfo"
	"github.com/blixard/blixard/internal/sched"
	"github.com/blixard/blixard/internal/state"
)

type options struct {
	nodes, vms    int
	maxCandidates int
	strategy      apiv1.PlacementStrategy
	seed          uint64
	runs          int
	cpuProfile    string
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var strategy string
	flag.IntVar(&o.nodes, "nodes", 5000, "`count` of nodes in the cluster")
	flag.IntVar(&o.vms, "vms", 10000, "`count` of VMs to place")
	flag.IntVar(&o.maxCandidates, "max-candidates", sched.DefaultMaxCandidates, "feasible nodes ranked per placement (`count`; 0: every node)")
	flag.StringVar(&strategy, "strategy", "binpack", "placement strategy of every VM: binpack or spread")
	flag.Uint64Var(&o.seed, "seed", 1, "`seed` of the node and VM sizes")
	flag.IntVar(&o.runs, "runs", 5, "timed placement passes (`count`); the median is reported")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed passes to `file`")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "placement: unexpected arguments %q\n", flag.Args())
		return 2
	}
	var err error
	switch strategy {
	case "binpack":
		o.strategy = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK
	case "spread":
		o.strategy = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD
	default:
		err = fmt.Errorf("-strategy %q: want binpack or spread", strategy)
	}
	switch {
	case err != nil:
	case o.nodes < 1 || o.nodes > 1_000_000:
		err = errors.New("-nodes must be between 1 and 1,000,000")
	case o.vms < 1 || o.vms > 10_000_000:
		err = errors.New("-vms must be between 1 and 10,000,000")
	case o.maxCandidates < 0:
		err = errors.New("-max-candidates must not be negative")
	case o.runs < 1:
		err = errors.New("-runs must be at least 1")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "placement: %v\n", err)
		return 2
	}
	if err := bench(o); err != nil {
		fmt.Fprintf(os.Stderr, "placement: %v\n", err)
		return 1
	}
	return 0
}

func bench(o options) error {
	model, procs := hostinfo.CPUModel()
	fmt.Printf("machine: %s, %d processors, %s %s/%s, GOMAXPROCS %d, load avg %s\n",
		model, procs, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), hostinfo.LoadAvg())
	fmt.Printf("placement: %d nodes, %d VMs, strategy %s, max candidates %d, seed %d, %d runs\n",
		o.nodes, o.vms, o.strategy, o.maxCandidates, o.seed, o.runs)

	start := time.Now()
	b := &builder{st: state.New()}
	if err := b.build(o); err != nil {
		return err
	}
	waiting := b.st.VmsToPlace()
	var vcpus, memMiB, wantVcpus, wantMemMiB uint64
	for _, n := range b.st.Nodes() {
		vcpus += uint64(n.GetCapacity().GetVcpus())
		memMiB += n.GetCapacity().GetMemoryMib()
	}
	for _, v := range waiting {
		wantVcpus += uint64(v.GetSpec().GetVcpus())
		wantMemMiB += v.GetSpec().GetMemoryMib()
	}
	fmt.Printf("state built in %v: %d nodes (%d vCPUs, %d GiB), %d VMs waiting (%d vCPUs, %d GiB)\n", time.Since(start).Round(time.Millisecond),
		len(b.st.Nodes()), vcpus, memMiB/1024, len(waiting), wantVcpus, wantMemMiB/1024)

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	opts := sched.Options{MaxCandidates: o.maxCandidates}
	var passes []pass
	for range o.runs {
		p := placeAll(b.st, waiting, opts)
		if len(passes) > 0 && !slices.Equal(p.nodes, passes[0].nodes) {
			return errors.New("two runs of the same pass placed the VMs differently: sched is not deterministic")
		}
		passes = append(passes, p)
	}
	pprof.StopCPUProfile()
	slices.SortFunc(passes, func(a, b pass) int { return cmp.Compare(a.place, b.place) })
	med := passes[len(passes)/2]
	rate := func(p pass) float64 { return float64(len(waiting)) / p.place.Seconds() }
	fmt.Printf("sched.New: %v (median of %d)\n", medianNew(passes).Round(time.Microsecond), len(passes))
	fmt.Printf("placement loop: %v for %d VMs, %.0f placements/s (median); fastest run %.0f/s, slowest %.0f/s\n",
		med.place.Round(time.Microsecond), len(waiting), rate(med), rate(passes[0]), rate(passes[len(passes)-1]))
	fmt.Printf("including sched.New: %.0f placements/s\n", float64(len(waiting))/(med.place+med.new).Seconds())
	fmt.Printf("unplaceable: %d", med.unplaceable)
	if med.firstReason != "" {
		fmt.Printf(" (first: %s)", med.firstReason)
	}
	fmt.Println()

	// Apply the pass: the state must accept every assignment.
	start = time.Now()
	refused := 0
	for i, v := range waiting {
		node := med.nodes[i]
		if node == 0 {
			continue
		}
		cmd := &apiv1.Command{Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{Name: v.GetName(), NodeId: node, Generation: v.GetGeneration()}}}
		if _, err := b.st.Apply(b.next(), cmd); err != nil {
			refused++
			if refused <= 5 {
				fmt.Fprintf(os.Stderr, "placement: the state refuses %s on node %d: %v\n", v.GetName(), node, err)
			}
		}
	}
	fmt.Printf("applied %d assignments in %v; refused: %d\n", len(waiting)-med.unplaceable, time.Since(start).Round(time.Millisecond), refused)
	if refused > 0 {
		return fmt.Errorf("the state refused %d of the pass's assignments", refused)
	}
	if err := b.st.CheckCommitted(); err != nil {
		return fmt.Errorf("after the pass: %w", err)
	}
	fmt.Println("CheckCommitted: every node within capacity × overcommit")
	printUse(b.st)
	return nil
}

// pass is one timed placement pass.
type pass struct {
	new, place  time.Duration
	nodes       []uint64 // per waiting VM, its node; 0 when unplaceable
	unplaceable int
	firstReason string
}

// placeAll is one placement pass over st: what is timed.
func placeAll(st *state.State, waiting []*apiv1.Vm, opts sched.Options) pass {
	p := pass{nodes: make([]uint64, len(waiting))}
	t0 := time.Now()
	c := sched.New(st, opts)
	t1 := time.Now()
	for i, v := range waiting {
		r := sched.VmRequest(v)
		node, err := c.Place(r)
		if err != nil {
			if p.unplaceable == 0 {
				p.firstReason = err.Error()
			}
			p.unplaceable++
			continue
		}
		c.Commit(node, r)
		p.nodes[i] = node
	}
	t2 := time.Now()
	p.new, p.place = t1.Sub(t0), t2.Sub(t1)
	return p
}

func medianNew(passes []pass) time.Duration {
	ds := make([]time.Duration, len(passes))
	for i, p := range passes {
		ds[i] = p.new
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// builder applies commands to the state at consecutive log indexes.
type builder struct {
	st  *state.State
	idx uint64
}

func (b *builder) next() uint64 {
	b.idx++
	return b.idx
}

func (b *builder) apply(cmd *apiv1.Command) error {
	if _, err := b.st.Apply(b.next(), cmd); err != nil {
		return fmt.Errorf("building the state: %v: %w", cmd, err)
	}
	return nil
}

// build registers the nodes and creates the VMs, sizes drawn from o.seed.
func (b *builder) build(o options) error {
	rng := rand.New(rand.NewPCG(o.seed, 0x706c6163656d656e)) // "placemen"
	ids := make([]uint64, o.nodes)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	b.st.ApplyMembership(b.next(), ids, nil)
	images := []*apiv1.ImageInfo{{Name: state.DefaultImage, Digest: "sha256:bench", MinMemoryMib: 64}}
	for _, id := range ids {
		vcpus := uint32(8 << rng.IntN(5))                                 // 8, 16, 32, 64, 128
		memGiB := min(max(uint64(vcpus)*uint64(2<<rng.IntN(2)), 16), 512) // 2 or 4 GiB per vCPU
		err := b.apply(&apiv1.Command{Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{
			Id:       id,
			Address:  fmt.Sprintf("10.%d.%d.%d:7000", id>>16&255, id>>8&255, id&255),
			Role:     apiv1.NodeRole_NODE_ROLE_WORKER,
			Capacity: &apiv1.Resources{Vcpus: vcpus, MemoryMib: memGiB * 1024, DiskMib: 1 << 20, Features: []string{"kvm"}},
			Images:   images,
		}}})
		if err != nil {
			return err
		}
	}
	for i := range o.vms {
		spec := &apiv1.VmSpec{
			Vcpus:     uint32(1 + rng.IntN(8)),
			MemoryMib: uint64(512 * (1 + rng.IntN(32))), // 512 MiB to 16 GiB
			Placement: o.strategy,
		}
		err := b.apply(&apiv1.Command{Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{
			Name: fmt.Sprintf("vm-%07d", i), Spec: spec, Start: true,
		}}})
		if err != nil {
			return err
		}
	}
	return nil
}

// printUse sums up how full the pass left the cluster: how many nodes hold
// VMs, and the vCPU and memory those nodes have committed.
func printUse(st *state.State) {
	var used, total int
	var vcpus, vcpuLim, mem, memLim uint64
	for _, n := range st.Nodes() {
		total++
		a := st.Allocated(n.GetId())
		if a.GetVcpus() == 0 {
			continue
		}
		used++
		lim := state.NodeLimits(n)
		vcpus += uint64(a.GetVcpus())
		vcpuLim += lim.Vcpus
		mem += a.GetMemoryMib()
		memLim += lim.MemoryMiB
	}
	if used == 0 {
		fmt.Println("no node holds a VM")
		return
	}
	fmt.Printf("nodes holding VMs: %d of %d; on them %.1f%% of vCPUs and %.1f%% of memory committed\n",
		used, total, 100*float64(vcpus)/float64(vcpuLim), 100*float64(mem)/float64(memLim))
}
