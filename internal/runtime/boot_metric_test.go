package runtime

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/blixard/blixard/internal/metrics"
	"github.com/blixard/blixard/internal/vmm"
)

// TestBootMetric: a start taken and then seen running is one boot; a
// report of another generation, a failure, or a second running report is
// not.
func TestBootMetric(t *testing.T) {
	m := metrics.New(func(context.Context) (metrics.Stats, error) { return metrics.Stats{}, nil })
	wl := &workloads{n: &Node{metrics: m}}
	boots := func() uint64 {
		var d dto.Metric
		if err := m.VMBootSeconds.(prometheus.Metric).Write(&d); err != nil {
			t.Fatal(err)
		}
		return d.GetHistogram().GetSampleCount()
	}
	wl.markStart("a", 5)
	wl.observeBoot(vmm.Status{Name: "a", Generation: 5, State: vmm.StateStarting})
	wl.observeBoot(vmm.Status{Name: "a", Generation: 4, State: vmm.StateRunning})
	if got := boots(); got != 0 {
		t.Fatalf("%d boots before the VM ran", got)
	}
	wl.observeBoot(vmm.Status{Name: "a", Generation: 5, State: vmm.StateRunning})
	wl.observeBoot(vmm.Status{Name: "a", Generation: 5, State: vmm.StateRunning})
	if got := boots(); got != 1 {
		t.Fatalf("%d boots after one start ran, want 1", got)
	}
	wl.markStart("b", 1)
	wl.observeBoot(vmm.Status{Name: "b", Generation: 1, State: vmm.StateFailed})
	wl.observeBoot(vmm.Status{Name: "b", Generation: 1, State: vmm.StateRunning})
	if got := boots(); got != 1 {
		t.Fatalf("%d boots, want still 1: a failed start is no boot", got)
	}
}
