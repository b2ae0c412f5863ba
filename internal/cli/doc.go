// Package cli holds the blixard command line: one cobra command per file, with
// the root command in root.go.
//
// Commands that talk to a cluster (cluster, vm, task, acl) use only the
// public client package and the api/v1 messages, never the server's
// internals (they read the cluster CA with internal/pki, a file format,
// not a server part); commands that run a node locally (node, dev) may use
// the runtime. A command exists here only once it does what its help says;
// none are stubbed.
//
// Conventions every cluster command keeps:
//   - The root's persistent flags say where the cluster is (--addr, a
//     comma-separated host:port list, else $BLIXARD_ADDR, else
//     127.0.0.1:7001), how to reach it and how to print (-o table|json).
//     session.go reads them and makes the client. A secure cluster (the
//     default) needs its CA, --ca, else $BLIXARD_CA, else
//     ./.blixard-dev/ca.crt if it exists (no CA is a usage error), and an
//     ACL token, --token, else $BLIXARD_TOKEN, sent over TLS only;
//     --insecure (else $BLIXARD_INSECURE=1 or true) talks plaintext to a
//     node started with --insecure and sends no token.
//   - Flag and argument values are checked before any request is sent
//     (flagvalues.go); such errors are usage errors.
//   - -o json prints protojson with proto names and unpopulated fields
//     (snake_case, enums by proto name, 64-bit integers as strings); tables
//     are aligned with text/tabwriter and show enums short and lower-case
//     (output.go).
//   - Results go to stdout, progress and notes to stderr ("token create"
//     prints the token alone on stdout). A long wait (--wait of vm create,
//     start, stop, delete and task submit; image build; dev's start-up)
//     shows its progress through progress.go: on a terminal one line
//     rewritten in place, with a spinner and the seconds waited; elsewhere
//     one plain line per change of state. -q/--quiet hides it. A failure is one line on stderr,
//     "error: ...", printed by Execute (errors.go); refused credentials get
//     a hint of what to do. main turns it into the exit status ExitCode
//     gives: the one an ExitCodeError asks for (a task's own exit code with
//     task submit --wait), ExitUnauthenticated (77) when the cluster did
//     not accept the token, ExitPermissionDenied (78) when the token's role
//     does not allow the request, else 1 (usage errors included).
package cli
