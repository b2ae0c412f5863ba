// Package runtime is Blixard's production driver: it runs one node as a
// process. One goroutine owns the deterministic core (package core) and
// carries out its Readys in the order the core's contract gives — persist
// each Ready as one Pebble batch (synced when raft needs it), then send its
// messages through the peer transport, then answer its responses, then
// Advance. Other goroutines only feed it events: a ticker (TickInterval),
// the peer transport (Raft messages, snapshot and reachability reports),
// and the gRPC API (requests). Nothing but the owner touches the core.
//
// A node opens its data directory; with nothing in it, it either
// bootstraps a one-node cluster or, given Join addresses, asks the cluster
// to add it (as a learner; a voter is promoted once caught up). With data,
// it restarts from it alone. It stops on its context's end (stop accepting
// requests, finish the Ready in hand, close the transport and the store),
// on a store failure (fail-stop), or when it learns it was removed from
// the cluster.
//
// Unless Config.Insecure, the node is secure (security.go): a bootstrapping
// node makes the cluster CA, its certificate and the first admin token; a
// joining node pins the CA its join token names and receives its
// certificate (and, a voter, the CA key) in the join's answer; every
// connection is TLS 1.3 with the node's certificate, and the access checks
// read the replicated state's tokens and removed nodes. A certificate loop
// (renew.go) renews the node's certificate and carries out CA rotations.
package runtime
