package state_test

import (
	"testing"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

func TestValidateChecksOnlyWhatNoStateCouldAccept(t *testing.T) {
	badSpec := vmSpec(1, 0)
	noCommand := taskSpec("", 1, 64)
	for _, tc := range []struct {
		name  string
		cmd   *apiv1.Command
		field string // "" when Validate must accept
	}{
		{"bad VM name", createVm("Not_A_Name", vmSpec(1, 128), true), "name"},
		{"zero memory", createVm("web", badSpec, true), "spec.memory_mib"},
		{"empty task command", submitTask(noCommand), "spec.command"},
		{"bad name on start", startVm("-web"), "name"},
		{"no operation", &apiv1.Command{}, "op"},
		// These depend on the state: only Apply, in log order, may refuse them.
		{"start of a VM nobody created", startVm("ghost"), ""},
		{"cancel of an unknown task", cancelTask(999), ""},
		{"a good create", createVm("web", vmSpec(1, 128), true), ""},
		{"an image no node may offer", createVm("web", vmOf("nope", 1, 128), true), ""},
		{"less memory than any image needs", createVm("web", vmSpec(1, 1), true), ""},
		{"more than any node may have", createVm("web", vmSpec(state.MaxVcpus, state.MaxMemoryMiB), true), ""},
		{"a task of an image no node may offer", submitTask(taskOf("nope", 1, 64)), ""},
		{"a task image not UTF-8", submitTask(taskOf("\xff", 1, 64)), "spec.image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := state.Validate(tc.cmd)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			wantErr(t, err, apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, tc.field)
		})
	}
}
