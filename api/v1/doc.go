// Package apiv1 holds Blixard's public protobuf messages: the records of the
// replicated state (types.proto), the requests and responses a node answers
// (api.proto) and the commands of the Raft log (command.proto).
//
// The Go code is generated and committed; regenerate it with `make proto`.
// This package imports no gRPC: the service stubs live in their own package.
package apiv1

//go:generate sh -c "cd ../.. && make proto"
