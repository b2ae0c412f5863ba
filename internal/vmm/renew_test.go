package vmm

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestRenewSkipsUnansweredSupervisors: Renew calls only the supervisors
// that have answered and whose VM has not ended; a VM whose supervisor is
// still starting runs on its launch file's lease and is left alone, so
// that it is not reported as unreachable at every start.
func TestRenewSkipsUnansweredSupervisors(t *testing.T) {
	m, err := NewManager(Config{DataDir: t.TempDir(), Supervisor: []string{"true"}, Lease: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	add := func(name string, state State, answered bool) {
		e := &vmEntry{name: name, dir: m.Dir(name), done: make(chan struct{}), answered: answered,
			status: Status{Name: name, Generation: 1, State: state}}
		m.vms[name] = e
	}
	add("booting", StateStarting, true)   // answered, guest not up yet: renewed
	add("spawning", StateStarting, false) // no control socket yet: skipped
	add("running", StateRunning, true)    // renewed
	add("ended", StateStopped, true)      // skipped

	err = m.Renew(context.Background(), time.Now().Add(5*time.Second))
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Renew = %v, want the joined failures of the VMs it called", err)
	}
	var failed []string
	for _, e := range joined.Unwrap() {
		var re *RenewError
		if !errors.As(e, &re) {
			t.Fatalf("Renew's error holds %T, not a *RenewError: %v", e, e)
		}
		failed = append(failed, re.VM)
	}
	// No supervisor runs in the tests' directories: every VM called fails.
	if want := []string{"booting", "running"}; !slices.Equal(failed, want) {
		t.Errorf("Renew called %v, want %v (in name order)", failed, want)
	}
	if m.leaseUntil == 0 {
		t.Error("Renew did not keep the lease for VMs started later")
	}
}
