// Package transportpb holds the generated messages and gRPC stubs of the
// internal peer transport. Regenerate with `make proto`.
package transportpb
