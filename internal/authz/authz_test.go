package authz_test

import (
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "google.golang.org/grpc/health/grpc_health_v1"
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1"
	_ "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	_ "github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/authz"
	_ "github.com/blixard/blixard/internal/transport/transportpb"
)

// rpcs lists every method of every service a node serves — Blixard's, and
// the standard health and reflection services — from the descriptors
// registered by the generated code, as gRPC names it.
func rpcs(t *testing.T) []string {
	t.Helper()
	var out []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		pkg := string(fd.Package())
		if !strings.HasPrefix(pkg, "blixard.") && pkg != "grpc.health.v1" && !strings.HasPrefix(pkg, "grpc.reflection.") {
			return true
		}
		svcs := fd.Services()
		for i := 0; i < svcs.Len(); i++ {
			svc := svcs.Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				out = append(out, "/"+string(svc.FullName())+"/"+string(svc.Methods().Get(j).Name()))
			}
		}
		return true
	})
	sort.Strings(out)
	return out
}

// TestEveryRPCHasAPermission fails when an RPC is added to a service
// without an entry in the table, and when the table names a method that
// no longer exists.
func TestEveryRPCHasAPermission(t *testing.T) {
	all := rpcs(t)
	if len(all) < 20 {
		t.Fatalf("found only %d methods in the registered descriptors: %v", len(all), all)
	}
	seen := map[string]bool{}
	for _, m := range all {
		seen[m] = true
		if _, ok := authz.Required(m); !ok {
			t.Errorf("RPC %s has no entry in authz.Methods: give it a permission", m)
		}
	}
	for m := range authz.Methods {
		if !seen[m] {
			t.Errorf("authz.Methods names %s, which no registered service has", m)
		}
	}
}

func TestRolesGrant(t *testing.T) {
	perms := []authz.Permission{authz.Public, authz.Read, authz.Operate, authz.Administer, authz.Join, authz.Peer}
	tests := []struct {
		role authz.Role
		want []bool // in perms' order
	}{
		{authz.RoleNone, []bool{true, false, false, false, false, false}},
		{authz.RoleViewer, []bool{true, true, false, false, false, false}},
		{authz.RoleOperator, []bool{true, true, true, false, false, false}},
		{authz.RoleAdmin, []bool{true, true, true, true, false, false}},
	}
	for _, tc := range tests {
		for i, p := range perms {
			if got := tc.role.Grants(p); got != tc.want[i] {
				t.Errorf("%s.Grants(%s) = %v, want %v", tc.role, p, got, tc.want[i])
			}
		}
	}
}

// TestTableMatchesTheRoles spells out the promise for a few
// methods: a viewer cannot create a VM, an operator cannot remove a node.
func TestTableMatchesTheRoles(t *testing.T) {
	tests := []struct {
		method string
		role   authz.Role
		want   bool
	}{
		{"/blixard.v1.VmService/CreateVm", authz.RoleViewer, false},
		{"/blixard.v1.VmService/CreateVm", authz.RoleOperator, true},
		{"/blixard.v1.VmService/ListVms", authz.RoleViewer, true},
		{"/blixard.v1.ClusterService/LeaveCluster", authz.RoleOperator, false},
		{"/blixard.v1.ClusterService/LeaveCluster", authz.RoleAdmin, true},
		{"/blixard.v1.ClusterService/DrainNode", authz.RoleOperator, false},
		{"/blixard.v1.ClusterService/HealthCheck", authz.RoleNone, true},
		{"/blixard.transport.v1.RaftTransport/Stream", authz.RoleAdmin, false},
		{"/blixard.v1.ClusterService/JoinCluster", authz.RoleAdmin, false},
		{"/blixard.v1.VmService/NoSuchMethod", authz.RoleAdmin, false},
	}
	for _, tc := range tests {
		p, ok := authz.Required(tc.method)
		if got := ok && tc.role.Grants(p); got != tc.want {
			t.Errorf("%s may call %s: %v, want %v", tc.role, tc.method, got, tc.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    authz.Role
		wantErr bool
	}{
		{"viewer", authz.RoleViewer, false},
		{" Operator ", authz.RoleOperator, false},
		{"ADMIN", authz.RoleAdmin, false},
		{"none", authz.RoleNone, true},
		{"", authz.RoleNone, true},
		{"root", authz.RoleNone, true},
	} {
		got, err := authz.ParseRole(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRole(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
