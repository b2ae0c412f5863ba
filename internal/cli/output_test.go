package cli

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func TestEnumText(t *testing.T) {
	for _, tc := range []struct {
		e    protoreflect.Enum
		want string
	}{
		{apiv1.VmState_VM_STATE_RUNNING, "running"},
		{apiv1.VmDesiredState_VM_DESIRED_STATE_STOPPED, "stopped"},
		{apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE, "on-failure"},
		{apiv1.TaskStatus_TASK_STATUS_CANCELLED, "cancelled"},
		{apiv1.NodeRole_NODE_ROLE_WORKER, "worker"},
		{apiv1.NodeStatus_NODE_STATUS_DISCONNECTED, "disconnected"},
		{apiv1.VmState_VM_STATE_UNSPECIFIED, "-"},
		{apiv1.VmState(99), "99"},
	} {
		if got := enumText(tc.e); got != tc.want {
			t.Errorf("enumText(%v) = %q, want %q", tc.e, got, tc.want)
		}
	}
}

func TestCommandText(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"ls", []string{"-l", "/tmp"}, "ls -l /tmp"},
		{"sh", []string{"-c", "echo $HOME"}, `sh -c "echo $HOME"`},
		{"echo", []string{""}, `echo ""`},
	} {
		if got := commandText(tc.cmd, tc.args); got != tc.want {
			t.Errorf("commandText(%q, %q) = %q, want %q", tc.cmd, tc.args, got, tc.want)
		}
	}
}

func TestPrintJSONIsStable(t *testing.T) {
	var buf bytes.Buffer
	if err := printJSON(&buf, &apiv1.Resources{Vcpus: 2, MemoryMib: 512}); err != nil {
		t.Fatal(err)
	}
	want := `{
  "vcpus": 2,
  "memory_mib": "512",
  "disk_mib": "0",
  "features": []
}
`
	if buf.String() != want {
		t.Errorf("printJSON wrote\n%s\nwant\n%s", buf.String(), want)
	}
}
