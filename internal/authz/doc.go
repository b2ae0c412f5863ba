// Package authz is Blixard's access table: the roles a client token can
// carry, what each may do, and the one permission every RPC of every gRPC
// service a node serves requires.
//
// Roles are ordered: a viewer reads; an operator also creates, starts,
// stops and deletes VMs and tasks; an admin also manages membership,
// tokens and drains. Two permissions are not roles' to grant: a peer's
// (the Raft transport, for nodes presenting a cluster certificate) and
// public (health checks, open to anyone who can connect).
//
// The table (Methods) is the only place a method's permission is decided;
// its test walks the descriptors of every service the node registers and
// fails on a method with no entry, so a new RPC cannot ship unguarded.
//
// Not wired yet: the node's gRPC interceptors, the token store in the
// replicated state and the TLS that carries them come with the rest of the
// security work; until then the README's advice stands (trusted networks
// only).
package authz
