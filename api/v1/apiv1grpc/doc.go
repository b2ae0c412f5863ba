// Package apiv1grpc holds the generated gRPC service stubs of Blixard's
// public API (ClusterService, VmService, TaskService) over the messages of
// package apiv1. Regenerate with `make proto`.
package apiv1grpc
