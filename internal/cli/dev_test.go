package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/client/clienttest"
)

// fastDemoPolls makes the demo wait poll every millisecond for the rest of
// the test.
func fastDemoPolls(t *testing.T) {
	old := devDemoPoll
	devDemoPoll = time.Millisecond
	t.Cleanup(func() { devDemoPoll = old })
}

// demoStep is what the fake says of the demo VM on one GetVm.
type demoStep struct {
	state   apiv1.VmState
	reason  string
	console string
}

// stepDemo makes each GetVm of n answer the next of steps (the last one
// repeats), as a node booting the VM would report.
func stepDemo(n *clienttest.Node, steps ...demoStep) {
	var polls atomic.Int32
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		resp, err := next()
		if v := asVM(resp); method == "GetVm" && err == nil && v != nil {
			s := steps[min(int(polls.Add(1))-1, len(steps)-1)]
			v.State, v.Reason, v.ConsoleTail, v.NodeId = s.state, s.reason, s.console, 1
		}
		return resp, err
	})
}

func newTestClient(t *testing.T, n *clienttest.Node) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), client.Options{Addrs: []string{n.Addr}})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDevDemo(t *testing.T) {
	const created = "creating VM demo (1 vCPU, 128 MiB, restart on-failure; --no-demo skips this)\n"
	tests := []struct {
		name    string
		before  func(t *testing.T, n *clienttest.Node) // state before dev runs
		steps   []demoStep
		wantErr string // all of stderr
		running bool
	}{
		{
			name: "runs",
			steps: []demoStep{
				{state: apiv1.VmState_VM_STATE_SCHEDULED, reason: "placed on node 1"},
				{state: apiv1.VmState_VM_STATE_STARTING, reason: "booting (tcg)"},
				{state: apiv1.VmState_VM_STATE_RUNNING, reason: "ready"},
			},
			wantErr: created + `vm demo: pending (created; waiting for placement)
vm demo: scheduled (placed on node 1)
vm demo: starting (booting (tcg))
vm demo: running (ready)
VM demo is running on node 1
`,
			running: true,
		},
		{
			name: "fails",
			steps: []demoStep{
				{state: apiv1.VmState_VM_STATE_STARTING, reason: "booting (tcg)"},
				{state: apiv1.VmState_VM_STATE_FAILED, reason: "boot timeout: no ready frame in 1m0s", console: "Kernel panic - not syncing"},
			},
			wantErr: created + `vm demo: pending (created; waiting for placement)
vm demo: starting (booting (tcg))
vm demo: failed (boot timeout: no ready frame in 1m0s)
VM demo failed: boot timeout: no ready frame in 1m0s

Console at the last failure (last 26 bytes):
Kernel panic - not syncing
its restart policy (on-failure) boots it again after a back-off; see 'blixard vm status demo' and 'blixard vm logs demo'
`,
		},
		{
			name: "stops on its own",
			steps: []demoStep{
				{state: apiv1.VmState_VM_STATE_STOPPED, reason: "guest powered off"},
			},
			wantErr: created + `vm demo: pending (created; waiting for placement)
vm demo: stopped (guest powered off)
VM demo stopped on its own: guest powered off; 'blixard vm logs demo' shows its console, 'blixard vm start demo' starts it again
`,
		},
		{
			name: "left stopped by an earlier run",
			before: func(t *testing.T, n *clienttest.Node) {
				mustRunAt(t, n, "vm", "create", "demo", "--vcpus", "1", "--memory", "128", "--no-start")
			},
			wantErr: created + `VM demo exists already (from an earlier run)
VM demo is wanted stopped; 'blixard vm start demo' starts it
`,
		},
		{
			name: "running since an earlier run",
			before: func(t *testing.T, n *clienttest.Node) {
				mustRunAt(t, n, "vm", "create", "demo", "--vcpus", "1", "--memory", "128")
			},
			steps: []demoStep{{state: apiv1.VmState_VM_STATE_RUNNING, reason: "ready"}},
			wantErr: created + `VM demo exists already (from an earlier run)
vm demo: running (ready)
VM demo is running on node 1
`,
			running: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fastDemoPolls(t)
			n := clienttest.Start(t, 1)
			if tc.before != nil {
				tc.before(t, n)
			}
			if tc.steps != nil {
				stepDemo(n, tc.steps...)
			}
			var errOut bytes.Buffer
			show, running := runDevDemo(context.Background(), progressTo(&errOut), newTestClient(t, n), nil)
			if !show || running != tc.running {
				t.Errorf("runDevDemo = show %v, running %v; want show true, running %v", show, running, tc.running)
			}
			if errOut.String() != tc.wantErr {
				t.Errorf("stderr\n%s\nwant\n%s", errOut.String(), tc.wantErr)
			}
			for _, c := range n.Calls() {
				if req, ok := c.Request.(*apiv1.CreateVmRequest); ok {
					want := &apiv1.CreateVmRequest{ClientRequestId: req.GetClientRequestId(), Name: "demo", Start: true, Spec: &apiv1.VmSpec{
						Vcpus: 1, MemoryMib: 128, RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE,
					}}
					if tc.before == nil && !proto.Equal(req, want) {
						t.Errorf("CreateVm request\n%v\nwant\n%v", req, want)
					}
				}
			}
		})
	}
}

// TestDevDemoNotesImageBuild checks that dev says when the demo VM's node
// builds the default image, which the VM's first boot waits for, and when
// it is built.
func TestDevDemoNotesImageBuild(t *testing.T) {
	fastDemoPolls(t)
	var looks atomic.Int32
	old := devImageBuilt
	devImageBuilt = func(dir string) bool {
		if dir != "data/n1" {
			t.Errorf("looked for the image in %q, want node 1's data directory", dir)
		}
		return looks.Add(1) > 2
	}
	t.Cleanup(func() { devImageBuilt = old })
	n := clienttest.Start(t, 1)
	stepDemo(n,
		demoStep{state: apiv1.VmState_VM_STATE_SCHEDULED, reason: "placed on node 1"},
		demoStep{state: apiv1.VmState_VM_STATE_SCHEDULED, reason: "placed on node 1"},
		demoStep{state: apiv1.VmState_VM_STATE_SCHEDULED, reason: "placed on node 1"},
		demoStep{state: apiv1.VmState_VM_STATE_STARTING, reason: "booting (tcg)"},
		demoStep{state: apiv1.VmState_VM_STATE_RUNNING, reason: "ready"},
	)
	var errOut bytes.Buffer
	all := []*devNode{{id: 1, dir: "data/n1"}}
	if show, running := runDevDemo(context.Background(), progressTo(&errOut), newTestClient(t, n), all); !show || !running {
		t.Errorf("runDevDemo = show %v, running %v; want both", show, running)
	}
	want := `creating VM demo (1 vCPU, 128 MiB, restart on-failure; --no-demo skips this)
vm demo: pending (created; waiting for placement)
vm demo: scheduled (placed on node 1)
node 1 is building image default for the VM's first boot
image default built on node 1
vm demo: starting (booting (tcg))
vm demo: running (ready)
VM demo is running on node 1
`
	if errOut.String() != want {
		t.Errorf("stderr\n%s\nwant\n%s", errOut.String(), want)
	}
}

func TestDevDemoInterrupted(t *testing.T) {
	fastDemoPolls(t)
	n := clienttest.Start(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var polls atomic.Int32
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if method == "GetVm" && polls.Add(1) == 3 {
			cancel()
		}
		return next()
	})
	var errOut bytes.Buffer
	if show, _ := runDevDemo(ctx, progressTo(&errOut), newTestClient(t, n), nil); show {
		t.Error("runDevDemo after Ctrl-C: want nothing shown")
	}
	if strings.Contains(errOut.String(), "\ndemo:") {
		t.Errorf("stderr %q: an interrupt is no failure to report", errOut.String())
	}
}

func TestDevShow(t *testing.T) {
	n := clienttest.Start(t, 1)
	mustRunAt(t, n, "vm", "create", "demo", "--vcpus", "1", "--memory", "128")
	var out, errOut bytes.Buffer
	plain := devAccess{addrs: []string{n.Addr}, insecure: true}
	if !devShow(context.Background(), &out, &errOut, plain, "vm", "list") {
		t.Fatalf("devShow vm list failed: %s", errOut.String())
	}
	want := "\n$ blixard vm list\n" + mustRunAt(t, n, "vm", "list")
	if out.String() != want || errOut.Len() != 0 {
		t.Errorf("devShow printed\n%s\n(stderr %q), want\n%s", out.String(), errOut.String(), want)
	}
	n.Stop()
	out.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if devShow(ctx, &out, &errOut, plain, "cluster", "status") || !strings.HasPrefix(errOut.String(), "blixard cluster status: ") {
		t.Errorf("devShow against a stopped node: stderr %q, want a failure noted", errOut.String())
	}
}

func TestDevFlags(t *testing.T) {
	cmd := newDevCommand()
	for _, name := range []string{"no-demo", "insecure"} {
		if f := cmd.Flags().Lookup(name); f == nil || f.DefValue != "false" {
			t.Errorf("dev has no --%s flag defaulting to false: %v", name, f)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dev", "--nodes", "0"}, "--nodes: 0 is not between 1 and 9"},
		{[]string{"dev", "--no-demo=maybe"}, `invalid argument "maybe" for "--no-demo" flag`},
	} {
		_, stderr, err := run(t, tc.args...)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("blixard %s: err %v, stderr %q; want one containing %q", strings.Join(tc.args, " "), err, stderr, tc.want)
		}
	}
}

// dev's port flags must fit and must not overlap; a port in use is named
// before any node starts.
func TestDevPorts(t *testing.T) {
	base := devConfig{count: 3, host: "127.0.0.1", basePort: 7001, metricsPort: 9101, httpPort: 8081}
	for _, tc := range []struct {
		name string
		edit func(*devConfig)
		want string // "" for none
	}{
		{"defaults", func(*devConfig) {}, ""},
		{"off", func(c *devConfig) { c.metricsPort, c.httpPort = 0, 0 }, ""},
		{"top of the range", func(c *devConfig) { c.httpPort = 65533 }, ""},
		{"past the top", func(c *devConfig) { c.httpPort = 65534 }, "--http-base-port: 65534 leaves no room for 3 nodes"},
		{"http over metrics", func(c *devConfig) { c.httpPort = 9102 }, "--metrics-base-port 9101 and --http-base-port 9102 overlap"},
		{"http over the nodes", func(c *devConfig) { c.httpPort = 6999 }, "--base-port 7001 and --http-base-port 6999 overlap"},
		{"metrics over the nodes", func(c *devConfig) { c.metricsPort = 7003 }, "--base-port 7001 and --metrics-base-port 7003 overlap"},
		{"negative", func(c *devConfig) { c.metricsPort = -1 }, "--metrics-base-port: -1"},
		{"no base port", func(c *devConfig) { c.basePort = 0 }, "--base-port: 0 is not a port"},
	} {
		c := base
		tc.edit(&c)
		err := c.checkPorts()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	busy := lis.Addr().(*net.TCPAddr).Port
	c := devConfig{count: 1, host: "127.0.0.1", basePort: busy}
	if err := c.portsFree(); err == nil || !strings.Contains(err.Error(), "in use") || !strings.Contains(err.Error(), "--base-port") {
		t.Errorf("base port in use: %v", err)
	}
	c = devConfig{count: 1, host: "127.0.0.1", basePort: busy + 1, httpPort: busy}
	if err := c.portsFree(); err == nil || !strings.Contains(err.Error(), "--http-base-port another port, or 0 to serve none") {
		t.Errorf("http port in use: %v", err)
	}
}
