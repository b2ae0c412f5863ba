package cli

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
)

func TestVMCreate(t *testing.T) {
	n := clienttest.Start(t, 1)
	got := mustRunAt(t, n, "vm", "create", "web", "--vcpus", "2", "--memory", "512")
	if want := "vm web created: desired running, state pending (created; waiting for placement)\n"; got != want {
		t.Errorf("vm create printed %q, want %q", got, want)
	}
	req := n.Calls()[0].Request.(*apiv1.CreateVmRequest)
	want := &apiv1.CreateVmRequest{ClientRequestId: req.GetClientRequestId(), Name: "web", Start: true, Spec: &apiv1.VmSpec{
		Vcpus: 2, MemoryMib: 512, RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE,
		Placement: apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK,
	}}
	if req.GetClientRequestId() == "" || !proto.Equal(req, want) {
		t.Errorf("CreateVm request\n%v\nwant\n%v (with a client request id)", req, want)
	}
}

func TestVMCreateEveryFlag(t *testing.T) {
	n := clienttest.Start(t, 1)
	out := mustRunAt(t, n, "vm", "create", "db-1", "--vcpus", "4", "--memory", "4096", "--image", "debian",
		"--cmdline", "console=ttyS0 quiet", "--restart", "always", "--no-start",
		"--constraint", "zone=a", "--constraint", "disk=ssd", "--anti-affinity", "db", "--anti-affinity-mode", "soft",
		"--feature", "kvm", "--feature", "huge-pages", "--feature", "kvm", "--placement", "spread", "-o", "json")
	req := n.Calls()[0].Request.(*apiv1.CreateVmRequest)
	want := &apiv1.CreateVmRequest{ClientRequestId: req.GetClientRequestId(), Name: "db-1", Start: false, Spec: &apiv1.VmSpec{
		Vcpus: 4, MemoryMib: 4096, Image: "debian", KernelCmdline: "console=ttyS0 quiet",
		RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ALWAYS,
		Constraints:   map[string]string{"zone": "a", "disk": "ssd"}, AntiAffinityGroup: "db", AntiAffinitySoft: true,
		Features:  []string{"huge-pages", "kvm"}, // sorted, each once
		Placement: apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD,
	}}
	if !proto.Equal(req, want) {
		t.Errorf("CreateVm request\n%v\nwant\n%v", req, want)
	}
	var vm map[string]any
	if err := json.Unmarshal([]byte(out), &vm); err != nil {
		t.Fatalf("vm create -o json: %v\n%s", err, out)
	}
	if vm["name"] != "db-1" || vm["state"] != "VM_STATE_STOPPED" || vm["desired_state"] != "VM_DESIRED_STATE_STOPPED" {
		t.Errorf("vm create -o json is not the stopped VM db-1:\n%s", out)
	}
}

// TestVMCreatePlacementFlags checks how each placement flag reaches the spec.
func TestVMCreatePlacementFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		want  func(*apiv1.VmSpec)
	}{
		{"defaults: binpack, no features, no group", nil, func(*apiv1.VmSpec) {}},
		{"hard anti-affinity is the default mode", []string{"--anti-affinity", "db"},
			func(s *apiv1.VmSpec) { s.AntiAffinityGroup = "db" }},
		{"hard anti-affinity given", []string{"--anti-affinity", "db", "--anti-affinity-mode", "hard"},
			func(s *apiv1.VmSpec) { s.AntiAffinityGroup = "db" }},
		{"soft anti-affinity", []string{"--anti-affinity-mode", "soft", "--anti-affinity", "db"},
			func(s *apiv1.VmSpec) { s.AntiAffinityGroup, s.AntiAffinitySoft = "db", true }},
		{"spread", []string{"--placement", "spread"},
			func(s *apiv1.VmSpec) { s.Placement = apiv1.PlacementStrategy_PLACEMENT_STRATEGY_SPREAD }},
		{"one feature", []string{"--feature", "kvm"}, func(s *apiv1.VmSpec) { s.Features = []string{"kvm"} }},
		{"features sorted and deduplicated", []string{"--feature", "sev", "--feature", "kvm", "--feature", "sev"},
			func(s *apiv1.VmSpec) { s.Features = []string{"kvm", "sev"} }},
		{"constraints", []string{"--constraint", "zone=a", "--constraint", "rack=r1"},
			func(s *apiv1.VmSpec) { s.Constraints = map[string]string{"zone": "a", "rack": "r1"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := clienttest.Start(t, 1)
			mustRunAt(t, n, append([]string{"vm", "create", "web", "--vcpus", "1", "--memory", "128"}, tc.flags...)...)
			want := &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128, RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE,
				Placement: apiv1.PlacementStrategy_PLACEMENT_STRATEGY_BINPACK}
			tc.want(want)
			if got := n.Calls()[0].Request.(*apiv1.CreateVmRequest).GetSpec(); !proto.Equal(got, want) {
				t.Errorf("spec\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func TestVMCreateFlagErrors(t *testing.T) {
	n := clienttest.Start(t, 1)
	base := []string{"vm", "create", "web"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--vcpus", "1", "--memory", "0"}, "error: --memory must be at least 1 (MiB), got 0 (see 'blixard vm create --help')"},
		{[]string{"--vcpus", "1", "--memory", "-5"}, "--memory must be at least 1 (MiB), got -5"},
		{[]string{"--vcpus", "0", "--memory", "128"}, "--vcpus must be at least 1, got 0"},
		{[]string{"--vcpus", "two", "--memory", "128"}, `invalid argument "two" for "--vcpus" flag`},
		{[]string{"--memory", "128"}, `required flag(s) "vcpus" not set`},
		{[]string{"--vcpus", "1", "--memory", "128", "--restart", "sometimes"}, `--restart "sometimes" is not always, on-failure or never`},
		{[]string{"--vcpus", "1", "--memory", "128", "--constraint", "zone"}, `--constraint "zone" is not KEY=VALUE`},
		{[]string{"--vcpus", "1", "--memory", "128", "--constraint", "=a"}, `--constraint "=a" has an empty key`},
		{[]string{"--vcpus", "1", "--memory", "128", "--constraint", "z=a", "--constraint", "z=b"}, `--constraint gives "z" twice`},
		{[]string{"--vcpus", "1", "--memory", "128", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"--vcpus", "1", "--memory", "128", "--placement", "random"}, `--placement "random" is not binpack or spread`},
		{[]string{"--vcpus", "1", "--memory", "128", "--placement", "Spread"}, `--placement "Spread" is not binpack or spread`},
		{[]string{"--vcpus", "1", "--memory", "128", "--anti-affinity", "db", "--anti-affinity-mode", "loose"},
			`--anti-affinity-mode "loose" is not hard or soft`},
		{[]string{"--vcpus", "1", "--memory", "128", "--anti-affinity-mode", "soft"},
			"error: --anti-affinity-mode needs --anti-affinity GROUP (see 'blixard vm create --help')"},
		{[]string{"--vcpus", "1", "--memory", "128", "--anti-affinity-mode", "hard"}, "--anti-affinity-mode needs --anti-affinity GROUP"},
	} {
		failAt(t, n, tc.want, append(base, tc.args...)...)
	}
	failAt(t, n, "blixard vm create takes 1 argument(s), NAME; got 0", "vm", "create", "--vcpus", "1", "--memory", "1")
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none: flags are checked before any request", len(n.Calls()))
	}
}

func TestVMCreateRefusedByCluster(t *testing.T) {
	n := clienttest.Start(t, 1)
	failAt(t, n, "error: spec.memory_mib: must be between 1 and 16777216\n", "vm", "create", "web", "--vcpus", "1", "--memory", "99999999")
	failAt(t, n, `error: name: "Web" is not a valid VM name`, "vm", "create", "Web", "--vcpus", "1", "--memory", "1")
	mustRunAt(t, n, "vm", "create", "web", "--vcpus", "1", "--memory", "1")
	failAt(t, n, `error: name: a VM named "web" already exists`, "vm", "create", "web", "--vcpus", "1", "--memory", "1")
}
