package runtime

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/blixard/blixard/internal/vmm"
)

// TestRenewalsLogChanges: a VM whose lease renewals start failing is one
// warning, its further failures debug lines, its recovery one info line;
// a VM that ends while failing is forgotten quietly.
func TestRenewalsLogChanges(t *testing.T) {
	var rec logRecorder
	log := rec.logger()
	r := renewals{}
	ended := map[string]bool{}
	live := func(name string) bool { return !ended[name] }
	refused := errors.New("connection refused")
	rounds := []struct {
		failed []string
		end    string
		want   []string // level and VM of each line
	}{
		{failed: nil, want: nil},
		{failed: []string{"b", "a"}, want: []string{"WARN a", "WARN b"}},
		{failed: []string{"a", "b"}, want: []string{"DEBUG a", "DEBUG b"}},
		{failed: []string{"a"}, want: []string{"DEBUG a", "INFO b"}},
		{failed: []string{"a", "c"}, want: []string{"DEBUG a", "WARN c"}},
		{failed: nil, end: "a", want: []string{"DEBUG a", "INFO c"}},
		{failed: nil, want: nil},
		{failed: []string{"b"}, want: []string{"WARN b"}},
	}
	for i, round := range rounds {
		if round.end != "" {
			ended[round.end] = true
		}
		failed := map[string]error{}
		for _, name := range round.failed {
			failed[name] = refused
		}
		r.take(log, failed, live)
		var got []string
		for _, line := range rec.take() {
			level, _, _ := strings.Cut(line, " ")
			_, vm, _ := strings.Cut(line, " vm=")
			vm, _, _ = strings.Cut(vm, " ")
			got = append(got, level+" "+vm)
		}
		if !slices.Equal(got, round.want) {
			t.Fatalf("round %d (failed %v): logged %q, want %q", i, round.failed, got, round.want)
		}
	}
}

// TestRenewFailures: Renew's joined error is split by VM.
func TestRenewFailures(t *testing.T) {
	if got := renewFailures(nil); len(got) != 0 {
		t.Fatalf("renewFailures(nil) = %v", got)
	}
	a, b := errors.New("a down"), errors.New("b down")
	got := renewFailures(errors.Join(&vmm.RenewError{VM: "a", Err: a}, &vmm.RenewError{VM: "b", Err: b}))
	if len(got) != 2 || got["a"] != a || got["b"] != b {
		t.Fatalf("renewFailures = %v, want a and b with their errors", got)
	}
	other := errors.New("something else")
	if got := renewFailures(other); len(got) != 1 || !errors.Is(got[""], other) {
		t.Fatalf("renewFailures(%v) = %v, want it under \"\"", other, got)
	}
}

// TestVMFateLoggedOncePerChange: statuses that differ only in what is no
// news (the console's tail, their time) are no change; a new state, a
// task's end, a new reason and a new generation are.
func TestVMFateLoggedOncePerChange(t *testing.T) {
	wl := &workloads{notes: map[string]*vmNote{}}
	st := func(gen uint64, state vmm.State, reason string, exit *int) vmm.Status {
		s := vmm.Status{Name: "web", Generation: gen, State: state, Reason: reason}
		if exit != nil {
			s.Task = &vmm.TaskResult{ExitCode: *exit}
		}
		return s
	}
	zero, three := 0, 3
	for i, step := range []struct {
		st   vmm.Status
		want bool
	}{
		{st(1, vmm.StateStarting, "", nil), true},
		{st(1, vmm.StateStarting, "", nil), false},
		{st(1, vmm.StateRunning, "", nil), true},
		{func() vmm.Status { s := st(1, vmm.StateRunning, "", nil); s.ConsoleTail = "login:"; return s }(), false},
		{st(1, vmm.StateRunning, "", &zero), true},
		{st(1, vmm.StateRunning, "", &zero), false},
		{st(1, vmm.StateStopped, "powered off", &zero), true},
		{st(1, vmm.StateStopped, "powered off", &zero), false},
		{st(2, vmm.StateStopped, "powered off", &zero), true},
		{st(2, vmm.StateFailed, "lease expired", &three), true},
	} {
		if got := wl.fateChanged(step.st); got != step.want {
			t.Fatalf("step %d: fateChanged(%+v) = %v, want %v", i, step.st, got, step.want)
		}
	}
	wl.forget("web")
	if !wl.fateChanged(st(2, vmm.StateFailed, "lease expired", &three)) {
		t.Fatal("a forgotten VM's fate is no change")
	}
}

// TestStopLoggedOncePerGeneration: the agent's repeated stops of one VM
// generation are said once, and their failure once.
func TestStopLoggedOncePerGeneration(t *testing.T) {
	wl := &workloads{notes: map[string]*vmNote{}}
	for i, step := range []struct {
		gen    uint64
		failed bool
		want   bool
	}{
		{1, false, true}, {1, true, true},
		{1, false, false}, {1, true, false},
		{1, false, false},
		{2, false, true}, {2, false, false}, {2, true, true},
	} {
		if got := wl.noteStop("web", step.gen, step.failed); got != step.want {
			t.Fatalf("step %d: noteStop(gen %d, failed %v) = %v, want %v", i, step.gen, step.failed, got, step.want)
		}
	}
	if got := fmt.Sprint(len(wl.notes)); got != "1" {
		t.Fatalf("%s notes for one VM", got)
	}
}
