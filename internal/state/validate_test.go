package state_test

import (
	"strings"
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
		{"the most a VM may ask for, more than any node may have", createVm("web", vmSpec(state.MaxWorkloadVcpus, state.MaxMemoryMiB), true), ""},
		{"a task of an image no node may offer", submitTask(taskOf("nope", 1, 64)), ""},
		{"a task image not UTF-8", submitTask(taskOf("\xff", 1, 64)), "spec.image"},
		// Bounds on one workload hold whatever the nodes.
		{"more vCPUs than a VM may have", createVm("web", vmSpec(state.MaxWorkloadVcpus+1, 128), true), "spec.vcpus"},
		{"more vCPUs than a task may have", submitTask(taskOf("", state.MaxWorkloadVcpus+1, 64)), "spec.resources.vcpus"},
		{"a kernel cmdline with a control character", createVm("web", func() *apiv1.VmSpec {
			spec := vmSpec(1, 128)
			spec.KernelCmdline = "quiet\tloglevel=0"
			return spec
		}(), true), "spec.kernel_cmdline"},
		{"a task timeout beyond 30 days", submitTask(func() *apiv1.TaskSpec {
			spec := taskOf("", 1, 64)
			spec.TimeoutMs = state.MaxTaskTimeoutMs + 1
			return spec
		}()), "spec.timeout_ms"},
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

// TestWorkloadLimits: the bounds on one VM or task (vCPUs, a kernel command
// line without control characters, a task's timeout) are refused alike by
// Validate at the edge and by Check and Apply, at their exact edges, on a
// node big enough that room is never the reason.
func TestWorkloadLimits(t *testing.T) {
	vm := func(vcpus uint32, cmdline string) *apiv1.Command {
		spec := vmSpec(vcpus, 512)
		spec.KernelCmdline = cmdline
		return createVm("web", spec, true)
	}
	task := func(vcpus uint32, timeoutMs uint64) *apiv1.Command {
		spec := taskOf("", vcpus, 256)
		spec.TimeoutMs = timeoutMs
		return submitTask(spec)
	}
	const day = 24 * 3600 * 1000
	for _, tc := range []struct {
		name  string
		cmd   *apiv1.Command
		field string // "" when accepted
	}{
		{"VM of the most vCPUs", vm(state.MaxWorkloadVcpus, ""), ""},
		{"VM of one vCPU more", vm(state.MaxWorkloadVcpus+1, ""), "spec.vcpus"},
		{"VM of a node's most vCPUs", vm(state.MaxVcpus, ""), "spec.vcpus"},
		{"VM of more vCPUs than a node may have", vm(state.MaxVcpus+1, ""), "spec.vcpus"},
		{"kernel cmdline of spaces, quotes and slashes", vm(1, `console=ttyS0 root=/dev/vda rw init="/sbin/init" quiet`), ""},
		{"kernel cmdline with printable non-ASCII", vm(1, "label=café ✓"), ""},
		{"kernel cmdline of the greatest length", vm(1, strings.Repeat("x", state.MaxKernelCmdlineLen)), ""},
		{"kernel cmdline with a newline", vm(1, "quiet\ninit=/bin/sh"), "spec.kernel_cmdline"},
		{"kernel cmdline ending in a newline", vm(1, "quiet\n"), "spec.kernel_cmdline"},
		{"kernel cmdline with a carriage return", vm(1, "quiet\rinit=/bin/sh"), "spec.kernel_cmdline"},
		{"kernel cmdline with a tab", vm(1, "quiet\tloglevel=0"), "spec.kernel_cmdline"},
		{"kernel cmdline with a NUL", vm(1, "quiet\x00init=/bin/sh"), "spec.kernel_cmdline"},
		{"kernel cmdline with an escape sequence", vm(1, "\x1b[2Jquiet"), "spec.kernel_cmdline"},
		{"kernel cmdline with DEL", vm(1, "quiet\x7f"), "spec.kernel_cmdline"},
		{"kernel cmdline with a C1 control (NEL)", vm(1, "quiet\u0085init=/bin/sh"), "spec.kernel_cmdline"},
		{"task of the most vCPUs", task(state.MaxWorkloadVcpus, 0), ""},
		{"task of one vCPU more", task(state.MaxWorkloadVcpus+1, 0), "spec.resources.vcpus"},
		{"task of more vCPUs than a node may have", task(state.MaxVcpus+1, 0), "spec.resources.vcpus"},
		{"task without a timeout", task(1, 0), ""},
		{"task timeout of 30 days", task(1, state.MaxTaskTimeoutMs), ""},
		{"task timeout 1 ms over 30 days", task(1, state.MaxTaskTimeoutMs+1), "spec.timeout_ms"},
		{"task timeout of 31 days", task(1, 31*day), "spec.timeout_ms"},
		{"task timeout of the largest uint64", task(1, ^uint64(0)), "spec.timeout_ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(registerNode(1, 2*state.MaxWorkloadVcpus, 65536, nil))
			err := state.Validate(tc.cmd)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				h.ok(tc.cmd)
				if spec := tc.cmd.GetCreateVm().GetSpec(); spec != nil {
					if got := h.vm("web").GetSpec(); got.GetVcpus() != spec.GetVcpus() || got.GetKernelCmdline() != spec.GetKernelCmdline() {
						t.Fatalf("VM spec = %v, want %v", got, spec)
					}
					return
				}
				if got := h.task(h.idx).GetSpec(); got.GetTimeoutMs() != tc.cmd.GetSubmitTask().GetSpec().GetTimeoutMs() ||
					got.GetResources().GetVcpus() != tc.cmd.GetSubmitTask().GetSpec().GetResources().GetVcpus() {
					t.Fatalf("task spec = %v, want %v", got, tc.cmd.GetSubmitTask().GetSpec())
				}
				return
			}
			wantErr(t, err, apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, tc.field)
			// Check and Apply refuse it the same way, and nothing changes.
			h.refusedUnchanged(tc.cmd, apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, tc.field)
		})
	}
	if state.MaxTaskTimeoutMs != 30*day {
		t.Fatalf("MaxTaskTimeoutMs = %d, want 30 days (%d)", state.MaxTaskTimeoutMs, 30*day)
	}
}
