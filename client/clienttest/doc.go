// Package clienttest runs fake Blixard nodes for tests of code that uses
// package client, such as the blixard command line.
//
// A Node serves the public gRPC services (ClusterService, VmService,
// TaskService) on 127.0.0.1 from a small in-memory state: VMs and tasks are
// stored and never run, writes are idempotent by client request id, and
// errors travel as the real server sends them (a gRPC status carrying an
// apiv1.Error detail; see Status). A Hook lets a test fail, delay or
// redirect any call, and Calls records what arrived.
//
// The fake checks only what tests rely on; it is not a second implementation
// of the state machine's rules.
package clienttest
