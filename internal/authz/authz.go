package authz

import (
	"fmt"
	"strings"
)

// Role is what a client token may do.
type Role int

const (
	// RoleNone is no role: a missing or unknown token.
	RoleNone Role = iota
	// RoleViewer reads the cluster's state.
	RoleViewer
	// RoleOperator also changes workloads: VMs and tasks.
	RoleOperator
	// RoleAdmin also changes the cluster: membership, tokens, drains.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole reads a role's name, as the CLI takes it.
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q is not one of viewer, operator, admin", s)
}

// Permission is what a method requires of its caller.
type Permission int

const (
	// Public methods need nothing: health checks.
	Public Permission = iota + 1
	// Read needs a viewer, operator or admin token.
	Read
	// Operate needs an operator or admin token.
	Operate
	// Administer needs an admin token.
	Administer
	// Join needs a join token (which the join request carries itself).
	Join
	// Peer needs a node certificate of the cluster (the Raft transport).
	Peer
)

func (p Permission) String() string {
	switch p {
	case Public:
		return "public"
	case Read:
		return "read"
	case Operate:
		return "operate"
	case Administer:
		return "administer"
	case Join:
		return "join"
	case Peer:
		return "peer"
	}
	return fmt.Sprintf("Permission(%d)", int(p))
}

// Grants reports whether role r may do what p requires. Public is anyone's;
// Join and Peer are granted by a join token and a node certificate, never
// by a role.
func (r Role) Grants(p Permission) bool {
	switch p {
	case Public:
		return true
	case Read:
		return r >= RoleViewer
	case Operate:
		return r >= RoleOperator
	case Administer:
		return r >= RoleAdmin
	}
	return false
}

// Methods is the permission of every RPC a node serves, by full method name
// ("/package.Service/Method", as gRPC interceptors see it).
var Methods = map[string]Permission{
	// Cluster membership and status.
	"/blixard.v1.ClusterService/JoinCluster":      Join,
	"/blixard.v1.ClusterService/LeaveCluster":     Administer,
	"/blixard.v1.ClusterService/DrainNode":        Administer,
	"/blixard.v1.ClusterService/GetClusterStatus": Read,
	"/blixard.v1.ClusterService/HealthCheck":      Public,
	"/blixard.v1.ClusterService/RenewCertificate": Peer,
	"/blixard.v1.ClusterService/RotateCa":         Administer,
	"/blixard.v1.ClusterService/ListEvents":       Read,

	// Tokens.
	"/blixard.v1.TokenService/CreateToken": Administer,
	"/blixard.v1.TokenService/ListTokens":  Administer,
	"/blixard.v1.TokenService/RevokeToken": Administer,

	// VMs.
	"/blixard.v1.VmService/CreateVm":     Operate,
	"/blixard.v1.VmService/StartVm":      Operate,
	"/blixard.v1.VmService/StopVm":       Operate,
	"/blixard.v1.VmService/DeleteVm":     Operate,
	"/blixard.v1.VmService/GetVm":        Read,
	"/blixard.v1.VmService/ListVms":      Read,
	"/blixard.v1.VmService/WatchVms":     Read,
	"/blixard.v1.VmService/StreamVmLogs": Read,

	// Tasks.
	"/blixard.v1.TaskService/SubmitTask": Operate,
	"/blixard.v1.TaskService/CancelTask": Operate,
	"/blixard.v1.TaskService/GetTask":    Read,
	"/blixard.v1.TaskService/ListTasks":  Read,
	"/blixard.v1.TaskService/WatchTask":  Read,

	// The standard gRPC health and reflection services: public and
	// read-only, so that probes and grpcurl work with no token.
	"/grpc.health.v1.Health/Check":                                   Public,
	"/grpc.health.v1.Health/List":                                    Public,
	"/grpc.health.v1.Health/Watch":                                   Public,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      Public,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Public,

	// The Raft transport between nodes.
	"/blixard.transport.v1.RaftTransport/Stream":   Peer,
	"/blixard.transport.v1.RaftTransport/Snapshot": Peer,
}

// Required is the permission full method name needs. A method missing from
// the table is refused to everyone (the table's test keeps that from
// happening to a real one).
func Required(method string) (Permission, bool) {
	p, ok := Methods[method]
	return p, ok
}
