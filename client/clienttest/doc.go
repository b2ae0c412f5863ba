// Package clienttest runs fake Blixard nodes for tests of code that uses
// package client, such as the blixard command line.
//
// A Node serves the public gRPC services (ClusterService, VmService,
// TaskService, TokenService) on 127.0.0.1 from a small in-memory state:
// VMs and tasks are stored and never run, tokens are made with
// predictable secrets, writes are idempotent by client request id, and
// errors travel as the real server sends them (a gRPC status carrying an
// apiv1.Error detail; see Status). Start serves plaintext, StartTLS TLS.
// A Hook lets a test fail, delay or redirect any unary call, and Calls
// records what arrived, with the bearer token each call carried; the fake
// itself checks no token.
//
// The fake checks only what tests rely on; it is not a second implementation
// of the state machine's rules.
package clienttest
