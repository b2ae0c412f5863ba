// Package cli holds the blixard command line: one cobra command per file, with
// the root command in root.go.
//
// Commands that talk to a cluster (cluster, vm, task) use only the public
// client package and the api/v1 messages, never the server's internals;
// commands that run a node locally may use the runtime. A command exists here
// only once it does what its help says; none are stubbed.
//
// Conventions every cluster command keeps:
//   - The root's persistent flags say where the cluster is (--addr, a
//     comma-separated host:port list, else $BLIXARD_ADDR, else
//     127.0.0.1:7001) and how to print (-o table|json). session.go reads
//     them and makes the client.
//   - Flag and argument values are checked before any request is sent
//     (flagvalues.go); such errors are usage errors.
//   - -o json prints protojson with proto names and unpopulated fields
//     (snake_case, enums by proto name, 64-bit integers as strings); tables
//     are aligned with text/tabwriter and show enums short and lower-case
//     (output.go).
//   - Results go to stdout, progress and notes to stderr. A failure is one
//     line on stderr, "error: ...", printed by Execute (errors.go); main
//     turns it into the exit status an ExitCodeError asks for (a task's own
//     exit code with task submit --wait), else 1.
package cli
