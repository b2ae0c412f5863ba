package processtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/pki"
)

// CLI exit codes of refused credentials (internal/cli/errors.go).
const (
	exitUnauthenticated  = 77
	exitPermissionDenied = 78
)

// TestSecureJoin: a cluster forms over mutual TLS with join tokens (the
// harness joins every node with one); a voter gets the CA key and a worker
// does not; and a node cannot join without a token, with an expired,
// revoked or worker-only token as a voter, or with a token that pins
// another CA. Each refused node exits non-zero, saying why, and the
// membership does not change.
func TestSecureJoin(t *testing.T) {
	c := newCluster(t)
	metricsAddr := freeAddr(t)
	c.add(1, "--metrics-listen", metricsAddr).start("")
	c.add(2).start(c.node(1).addr)
	c.add(3, "--role", "worker").start(c.node(1).addr)
	c.waitVoters(2)
	waitFor(t, formTimeout, "worker 3 a member", func() (bool, string) {
		st, _, why := c.leaderStatus()
		return st != nil && member(st, 3) != nil, why
	})
	// Node 1's metrics, plain HTTP, show its send queue to each peer.
	waitFor(t, formTimeout, "node 1's send queues in its metrics", func() (bool, string) {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return false, err.Error()
		}
		for _, peer := range []string{"2", "3"} {
			if !strings.Contains(string(body), `blixard_transport_send_queue_messages{peer="`+peer+`"}`) {
				return false, "no send queue to node " + peer
			}
		}
		return true, ""
	})

	for _, f := range []struct {
		id   uint64
		file string
		want bool
	}{
		{1, pki.CAKeyFile, true}, {2, pki.CAKeyFile, true}, {3, pki.CAKeyFile, false},
		{2, pki.NodeCertFile, true}, {3, pki.NodeCertFile, true},
	} {
		_, err := os.Stat(filepath.Join(c.node(f.id).dir, f.file))
		if got := err == nil; got != f.want {
			t.Errorf("node %d has %s: %v, want %v", f.id, f.file, got, f.want)
		}
	}
	if fi, err := os.Stat(filepath.Join(c.node(2).dir, pki.CAKeyFile)); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("node 2's %s has mode %v, want 0600", pki.CAKeyFile, fi.Mode().Perm())
	}

	// The refusals.
	addrs := strings.Join(c.addrs(), ",")
	expired := c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_JOIN, TtlSeconds: 1})
	revoked := c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_JOIN})
	if res := c.runCLI(addrs, "cluster", "token", "revoke", strings.Split(revoked, ".")[1]); res.code != 0 {
		t.Fatalf("cluster token revoke: exit %d: %s", res.code, res.stderr)
	}
	workerOnly := c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_JOIN, NodeRole: apiv1.NodeRole_NODE_ROLE_WORKER})
	good := c.joinTok()
	otherCA := good[:strings.LastIndexByte(good, '.')+1] + strings.Repeat("ab", 32)
	// Wait until node 1 itself calls the short-lived token expired.
	waitFor(t, formTimeout, "the 1 s join token expired at node 1", func() (bool, string) {
		cc, err := grpc.NewClient(c.node(1).addr, grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConfig())))
		if err != nil {
			return false, err.Error()
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+expired), 5*time.Second)
		defer cancel()
		_, err = apiv1grpc.NewClusterServiceClient(cc).JoinCluster(ctx, &apiv1.JoinClusterRequest{NodeId: 99})
		return err != nil && strings.Contains(err.Error(), "expired"), fmt.Sprint(err)
	})

	for i, tc := range []struct {
		name  string
		token string // "" starts the node without --join-token
		extra []string
		want  string // in the node's log
	}{
		{"no token", "", nil, "needs --join-token"},
		{"expired token", expired, nil, "expired"},
		{"revoked token", revoked, nil, "revoked, or never made"},
		{"worker token for a voter", workerOnly, nil, "admits workers only"},
		{"token pinning another CA", otherCA, nil, "does not present the CA the join token pins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := uint64(10 + i)
			// An empty --join-token keeps the harness from adding its own.
			n := c.add(id, append([]string{"--join-token", tc.token}, tc.extra...)...)
			n.start(c.node(1).addr)
			n.mayExit()
			if code := n.waitExit(); code == 0 {
				t.Fatalf("node %d exited 0; want a refusal", id)
			}
			if log := n.log(); !strings.Contains(log, tc.want) {
				t.Fatalf("node %d's log does not say %q:\n%s", id, tc.want, tail(log, logTailLines))
			}
			st, _, why := c.leaderStatus()
			if st == nil {
				t.Fatal(why)
			}
			if member(st, id) != nil || slices.ContainsFunc(st.GetNodes(), func(r *apiv1.Node) bool { return r.GetId() == id }) {
				t.Fatalf("refused node %d is in the cluster: %s", id, describeMembers(st))
			}
		})
	}

	// The API refuses a join without a token before anything else, even
	// from a client that trusts the CA.
	cc, err := grpc.NewClient(c.node(1).addr, grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConfig())))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	_, err = apiv1grpc.NewClusterServiceClient(cc).JoinCluster(ctx, &apiv1.JoinClusterRequest{
		ClientRequestId: "join-x", NodeId: 99, Address: "127.0.0.1:1", Capacity: &apiv1.Resources{Vcpus: 1, MemoryMib: 1}})
	if code := grpcCode(err); code != "Unauthenticated" {
		t.Fatalf("JoinCluster without a token: %v; want Unauthenticated", err)
	}
}

// TestClientAccess: a plain-TCP client and a client that trusts another
// CA are refused; a viewer token reads but cannot create a VM, an operator
// token creates VMs but cannot remove a node, a missing or revoked token
// is refused, and each refusal changes nothing. A removed node's
// certificate, which connected before, no longer does.
func TestClientAccess(t *testing.T) {
	c := newCluster(t)
	c.add(1).start("")
	c.add(2).start(c.node(1).addr)
	c.add(3).start(c.node(1).addr)
	c.waitVoters(3)
	addrs := strings.Join(c.addrs(), ",")

	// Transport: plaintext and a foreign CA get nowhere.
	foreign, err := pki.NewCA("someone-else", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"plain TCP", insecure.NewCredentials()},
		{"another CA", credentials.NewTLS(pki.ClientOnlyTLS(pki.PoolOf(foreign.Certificate())))},
	} {
		if err := clusterStatusWith(c.node(1).addr, tc.creds); err == nil {
			t.Errorf("%s: GetClusterStatus succeeded; want refused", tc.name)
		}
	}
	otherCA := filepath.Join(t.TempDir(), "other.crt")
	if err := os.WriteFile(otherCA, pki.EncodeCerts(foreign.Certificate()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--insecure", "cluster", "status"},
		{"--ca", otherCA, "cluster", "status"},
	} {
		if res := c.runCLI(addrs, args...); res.code == 0 {
			t.Errorf("blixard %s: exit 0; want refused", strings.Join(args, " "))
		}
	}

	// The standard health probe needs no token, only the CA: the node and
	// each API service are SERVING; without TLS the probe is refused.
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-tls", "-tls-ca-cert", c.caFile}, true},
		{[]string{"-tls", "-tls-ca-cert", c.caFile, "-service", "blixard.v1.VmService"}, true},
		{[]string{"-tls", "-tls-ca-cert", c.caFile, "-service", "no.such.Service"}, false},
		{[]string{"-tls", "-tls-ca-cert", otherCA}, false},
		{nil, false},
	} {
		args := append([]string{"-addr", c.node(1).addr, "-connect-timeout", "5s", "-rpc-timeout", "5s"}, tc.args...)
		out, err := exec.Command(healthProbeBin, args...).CombinedOutput()
		t.Logf("$ grpc-health-probe %s → %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		if (err == nil) != tc.ok {
			t.Errorf("grpc-health-probe %s: err %v, want success %v", strings.Join(args, " "), err, tc.ok)
		}
	}

	// grpcurl, through reflection and with the CA only, lists the
	// services and a service's methods; calling a method still needs a
	// token.
	for _, tc := range []struct {
		flags, call []string // grpcurl [flags] address [call]
		ok          bool
		want        []string
	}{
		{nil, []string{"list"}, true, []string{"blixard.v1.ClusterService", "blixard.v1.VmService", "blixard.v1.TaskService",
			"blixard.v1.TokenService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"}},
		{nil, []string{"list", "blixard.v1.VmService"}, true, []string{"blixard.v1.VmService.CreateVm", "blixard.v1.VmService.StreamVmLogs"}},
		{[]string{"-d", `{"service":"blixard.v1.VmService"}`}, []string{"grpc.health.v1.Health/Check"}, true, []string{"SERVING"}},
		{[]string{"-d", `{}`}, []string{"blixard.v1.VmService/ListVms"}, false, []string{"Unauthenticated"}},
		{[]string{"-H", "authorization: Bearer " + c.adminToken, "-d", `{}`}, []string{"blixard.v1.VmService/ListVms"}, true, nil},
	} {
		args := slices.Concat([]string{"-cacert", c.caFile, "-max-time", "10"}, tc.flags, []string{c.node(1).addr}, tc.call)
		out, err := exec.Command(grpcurlBin, args...).CombinedOutput()
		t.Logf("$ grpcurl %s → %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		if (err == nil) != tc.ok {
			t.Errorf("grpcurl %s: err %v, want success %v", strings.Join(args, " "), err, tc.ok)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("grpcurl %s: output lacks %q", strings.Join(args, " "), w)
			}
		}
	}

	// Roles.
	viewer := c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER})
	operator := c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL, AccessRole: apiv1.AccessRole_ACCESS_ROLE_OPERATOR})
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"viewer reads", []string{"--token", viewer, "vm", "list"}, 0},
		{"viewer cannot create a VM", []string{"--token", viewer, "vm", "create", "v1", "--vcpus", "1", "--memory", "128", "--no-start"}, exitPermissionDenied},
		{"viewer cannot make tokens", []string{"--token", viewer, "acl", "token", "create", "--role", "admin"}, exitPermissionDenied},
		{"operator creates a VM", []string{"--token", operator, "vm", "create", "o1", "--vcpus", "1", "--memory", "128", "--no-start"}, 0},
		{"operator cannot remove a node", []string{"--token", operator, "cluster", "leave", "3"}, exitPermissionDenied},
		{"operator cannot drain a node", []string{"--token", operator, "cluster", "drain", "2"}, exitPermissionDenied},
		{"no token", []string{"--token", "", "vm", "list"}, exitUnauthenticated},
		{"unknown token", []string{"--token", "bxa.0123456789abcdef.0123456789abcdef0123456789abcdef", "vm", "list"}, exitUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			noToken := slices.Contains(args, "")
			if noToken {
				args = args[2:] // no --token, and no BLIXARD_TOKEN either
			}
			res := c.runCLIWith(addrs, noToken, args...)
			if res.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", res.code, tc.code, res.stderr)
			}
		})
	}
	vms := c.mustCLI(addrs, "vm", "list").stdout
	if strings.Contains(vms, "v1") || !strings.Contains(vms, "o1") {
		t.Fatalf("vm list after the viewer's and operator's creates:\n%s\nwant o1 and not v1", vms)
	}
	st, _, why := c.leaderStatus()
	if st == nil || member(st, 3) == nil {
		t.Fatalf("node 3 should still be a member: %s", why)
	}

	// A revoked ACL token stops working.
	id := strings.Split(viewer, ".")[1]
	c.mustCLI(addrs, "acl", "token", "revoke", id)
	waitFor(t, formTimeout, "the revoked viewer token refused by every node", func() (bool, string) {
		for _, n := range c.byID() {
			if res := c.runCLI(n.addr, "--token", viewer, "vm", "list"); res.code != exitUnauthenticated {
				return false, "node " + n.addr + ": " + res.stderr
			}
		}
		return true, ""
	})

	// Node 3's certificate connects while it is a member...
	n3cert, err := pki.LoadNode(c.node(3).dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.LoadBundleFile(c.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := b.Pool()
	asNode3 := func() credentials.TransportCredentials {
		return credentials.NewTLS(pki.ClientTLS(n3cert.TLSCertificate(), pool, func(uint64) error { return nil }))
	}
	if err := clusterStatusWith(c.node(1).addr, asNode3()); err != nil {
		t.Fatalf("node 3's certificate, before its removal: %v", err)
	}
	// ...and not once it was removed.
	c.node(3).mayExit()
	c.mustCLI(addrs, "cluster", "leave", "3")
	waitFor(t, formTimeout, "node 3's certificate refused by nodes 1 and 2", func() (bool, string) {
		for _, id := range []uint64{1, 2} {
			if err := clusterStatusWith(c.node(id).addr, asNode3()); err == nil {
				return false, "node " + c.node(id).addr + " still answers node 3"
			}
		}
		return true, ""
	})
}

// clusterStatusWith asks the node at addr for its status over a new
// connection with creds, once.
func clusterStatusWith(addr string, creds credentials.TransportCredentials) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = apiv1grpc.NewClusterServiceClient(cc).GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{Stale: true})
	return err
}

// grpcCode names the gRPC code of err.
func grpcCode(err error) string { return status.Code(err).String() }
