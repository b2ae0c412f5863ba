// Package cli holds the blixard command line: one cobra command per file, with
// the root command in root.go.
//
// Commands that talk to a cluster will use only the public client package,
// never the server's internals; commands that run a node locally may use the
// runtime. A command exists here only once it does what its help says: this
// build has no cluster commands yet, and none are stubbed.
package cli
