package sched_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/sched"
	"github.com/blixard/blixard/internal/state"
)

// benchState is nodes nodes of 8 to 128 vCPUs, a fifth of their vCPUs
// taken by VMs; or, when nearlyFull, every vCPU of the even nodes and all
// but one of the odd ones (bench/placement measures whole passes; this
// measures one Place).
func benchState(b *testing.B, nodes int, nearlyFull bool) *state.State {
	rng := rand.New(rand.NewPCG(1, 2))
	w := newWorld(b)
	for id := 1; id <= nodes; id++ {
		vcpus := uint32(8 << rng.IntN(5))
		w.node(nodeSpec{id: uint64(id), vcpus: vcpus, memMiB: uint64(vcpus) * 4096, features: []string{"kvm"}})
		used := vcpus / 5
		if nearlyFull {
			used = vcpus - uint32(id%2)
		}
		for part := 0; used > 0; part++ {
			size := min(used, state.MaxWorkloadVcpus)
			name := fmt.Sprintf("vm-%d-%d", id, part)
			w.vm(name, vmSpec(size, 1024))
			w.assign(name, uint64(id))
			used -= size
		}
	}
	return w.st
}

// BenchmarkPlace is one Place of a 2-vCPU, 4 GiB VM on 5,000 nodes.
func BenchmarkPlace(b *testing.B) {
	st, full := benchState(b, 5000, false), benchState(b, 5000, true)
	for _, bc := range []struct {
		name string
		opts sched.Options
		req  sched.Request
		// onFull: on the nearly full nodes, where half of the nodes fail
		// the check of a 1-vCPU request.
		onFull bool
	}{
		{"full/binpack", sched.Options{}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096}}, false},
		{"full/spread", sched.Options{}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096}, Strategy: spread}, false},
		{"full/soft-group+feature", sched.Options{}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096, Features: []string{"kvm"}}, Group: "g", GroupSoft: true}, false},
		{"full/nearly-full", sched.Options{}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 1024}}, true},
		{"default/nearly-full", sched.Options{MaxCandidates: sched.DefaultMaxCandidates}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 1, MemoryMib: 1024}}, true},
		{"max64/binpack", sched.Options{MaxCandidates: 64}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096}}, false},
		{"default/binpack", sched.Options{MaxCandidates: sched.DefaultMaxCandidates}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096}}, false},
		{"max256/binpack", sched.Options{MaxCandidates: 256}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096}}, false},
		{"default/soft-group+feature", sched.Options{MaxCandidates: sched.DefaultMaxCandidates}, sched.Request{Key: "vm/x", Need: &apiv1.Resources{Vcpus: 2, MemoryMib: 4096, Features: []string{"kvm"}}, Group: "g", GroupSoft: true}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := sched.New(st, bc.opts)
			if bc.onFull {
				c = sched.New(full, bc.opts)
			}
			for b.Loop() {
				if _, err := c.Place(bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNew is building the view of 5,000 nodes, once per pass.
func BenchmarkNew(b *testing.B) {
	st := benchState(b, 5000, false)
	for b.Loop() {
		sched.New(st, sched.Options{})
	}
}
