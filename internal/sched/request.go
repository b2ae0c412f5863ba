package sched

import (
	"strconv"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Request is one workload to place. Its maps and slices are read, never
// changed, and may be the state's own.
type Request struct {
	// Key names the workload ("vm/<name>", "task/<id>"). Its hash chooses
	// where a bounded scan starts (Options.MaxCandidates), so that different
	// workloads look at different nodes first, the same one always at the
	// same nodes.
	Key string
	// Vm is the VM's name for a VM request, "" for a task.
	Vm string
	// Image is the spec's image as written; "" means state.DefaultImage.
	Image string
	// Need is what the workload holds on its node: vCPUs, memory, disk
	// (tasks only) and the node features it requires.
	Need *apiv1.Resources
	// Constraints are node labels that must be present with exactly these
	// values.
	Constraints map[string]string
	// Group is the VM's anti-affinity group, "" for none.
	Group string
	// GroupSoft: prefer the nodes running the fewest VMs of Group rather than
	// forbid the nodes running any.
	GroupSoft bool
	// Strategy ranks the feasible nodes; unspecified means binpack.
	Strategy apiv1.PlacementStrategy
}

// VmRequest is the request that places VM v.
func VmRequest(v *apiv1.Vm) Request {
	spec := v.GetSpec()
	return Request{
		Key:         "vm/" + v.GetName(),
		Vm:          v.GetName(),
		Image:       spec.GetImage(),
		Need:        &apiv1.Resources{Vcpus: spec.GetVcpus(), MemoryMib: spec.GetMemoryMib(), Features: spec.GetFeatures()},
		Constraints: spec.GetConstraints(),
		Group:       spec.GetAntiAffinityGroup(),
		GroupSoft:   spec.GetAntiAffinitySoft(),
		Strategy:    spec.GetPlacement(),
	}
}

// TaskRequest is the request that places task t. Tasks binpack: they are
// short-lived, and packing them keeps whole nodes free for VMs.
func TaskRequest(t *apiv1.Task) Request {
	return Request{
		Key:      "task/" + strconv.FormatUint(t.GetId(), 10),
		Image:    t.GetSpec().GetImage(),
		Need:     t.GetSpec().GetResources(),
		Strategy: apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK,
	}
}

// spread reports whether r ranks the emptiest node first.
func (r *Request) spread() bool {
	return r.Strategy == apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD
}
