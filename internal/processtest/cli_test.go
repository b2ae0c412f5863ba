package processtest

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// TestCLIBadInputFailsCleanly: the blixard command line, run against a
// live cluster, exits non-zero with a one-line message on stderr for bad
// input, and changes nothing.
func TestCLIBadInputFailsCleanly(t *testing.T) {
	c := startCluster(t, 3)
	addrs := strings.Join(c.addrs(), ",")

	ok := c.runCLI(addrs, "vm", "create", "web", "--vcpus", "1", "--memory", "256")
	if ok.code != 0 {
		t.Fatalf("vm create web: exit %d, stderr %q", ok.code, ok.stderr)
	}

	for _, tc := range []struct {
		args []string
		want []string // in the error line, case-insensitively
	}{
		{[]string{"vm", "status", "nosuchvm"}, []string{"nosuchvm"}},
		{[]string{"vm", "create", "web", "--vcpus", "1", "--memory", "256"}, []string{"web", "already exists"}},
		{[]string{"vm", "create", "x", "--vcpus", "1", "--memory", "0"}, []string{"memory"}},
		{[]string{"--addr", "not-an-address", "vm", "list"}, []string{"not-an-address"}},
	} {
		res := c.runCLI(addrs, tc.args...)
		cmdline := "blixard " + strings.Join(tc.args, " ")
		if res.code == 0 {
			t.Errorf("%s: exit 0, want non-zero", cmdline)
			continue
		}
		msg := lines(res.stderr)
		if len(msg) != 1 || !strings.HasPrefix(msg[0], "error: ") {
			t.Errorf("%s: stderr %q, want one line starting with \"error: \"", cmdline, res.stderr)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(strings.ToLower(msg[0]), w) {
				t.Errorf("%s: error %q does not mention %q", cmdline, msg[0], w)
			}
		}
		if res.stdout != "" {
			t.Errorf("%s: printed %q on stdout as well", cmdline, res.stdout)
		}
	}

	// Nothing changed: the cluster holds the one VM created above.
	res := c.runCLI(addrs, "vm", "list", "-o", "json")
	if res.code != 0 {
		t.Fatalf("vm list -o json: exit %d, stderr %q", res.code, res.stderr)
	}
	var list apiv1.ListVmsResponse
	if err := protojson.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("vm list -o json printed what protojson cannot read (%v):\n%s", err, res.stdout)
	}
	if len(list.GetVms()) != 1 || list.GetVms()[0].GetName() != "web" {
		t.Fatalf("vm list shows %d VMs, want just web:\n%s", len(list.GetVms()), res.stdout)
	}
	if sp := list.GetVms()[0].GetSpec(); sp.GetVcpus() != 1 || sp.GetMemoryMib() != 256 {
		t.Fatalf("web's spec is %v, want 1 vCPU and 256 MiB", sp)
	}
}
