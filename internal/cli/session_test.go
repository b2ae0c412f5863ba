package cli

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/blixard/blixard/client/clienttest"
)

func TestAddrFromEnvironment(t *testing.T) {
	n := clienttest.Start(t, 1)
	t.Setenv(addrEnv, n.Addr)
	t.Setenv(insecureEnv, "1")
	stdout, stderr, err := run(t, "vm", "list")
	if err != nil {
		t.Fatalf("vm list with %s set: %v (stderr %q)", addrEnv, err, stderr)
	}
	if stdout != "" || stderr != "no VMs\n" {
		t.Errorf("vm list: stdout %q, stderr %q; want no VMs", stdout, stderr)
	}
	if len(n.Calls()) != 1 {
		t.Errorf("node got %d calls, want 1", len(n.Calls()))
	}
}

func TestAddrFlagOverridesEnvironment(t *testing.T) {
	n := clienttest.Start(t, 1)
	t.Setenv(addrEnv, "nohost")
	mustRunAt(t, n, "vm", "list", "-o", "json")
}

func TestMalformedAddr(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"nohost", `error: --addr: address "nohost" is not host:port (see 'blixard vm list --help')`},
		{"host:0", `port "0" is not a number from 1 to 65535`},
		{":7001", `address ":7001" has no host`},
		{",", "--addr: no address given"},
	} {
		_, stderr, err := run(t, "--addr", tc.addr, "vm", "list")
		if err == nil || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("--addr %q: err %v, stderr %q; want one line containing %q", tc.addr, err, stderr, tc.want)
		}
	}
	t.Setenv(addrEnv, "10.0.0.1")
	if _, stderr, _ := run(t, "vm", "list"); !strings.Contains(stderr, "BLIXARD_ADDR: address \"10.0.0.1\" is not host:port") {
		t.Errorf("bad %s: stderr %q, want it named", addrEnv, stderr)
	}
}

func TestBadOutputFormat(t *testing.T) {
	n := clienttest.Start(t, 1)
	failAt(t, n, `-o/--output: "yaml" is not table or json`, "vm", "list", "-o", "yaml")
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestNoNodeAnswers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close()
	// Generous: the point is that the call ends, and how it says so.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, stderr, err := runContext(t, ctx, "--addr", dead, "--insecure", "cluster", "status")
	if err == nil {
		t.Fatal("cluster status against a dead address: no error")
	}
	if !strings.HasPrefix(stderr, "error: context deadline exceeded after ") || !strings.Contains(stderr, dead) ||
		strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line saying the deadline passed while %s did not answer", stderr, dead)
	}
}
