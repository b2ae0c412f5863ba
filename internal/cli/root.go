package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// rootLong is the help text of the root command. Its last two paragraphs say
// what this build can do; update them whenever a command that reaches a node
// or a cluster is added, or what the cluster does with VMs and tasks changes.
const rootLong = `Blixard is a distributed orchestrator for microVMs.

A few server nodes keep the cluster's desired state (nodes, VMs and tasks) in a
Raft-replicated state machine, and every node can also run workloads. The
leader places VMs and tasks on nodes that have room, each node boots what was
placed on it with a real hypervisor and reports back through Raft, and when a
node dies its VMs restart elsewhere.

"blixard node" runs one node in the foreground; "blixard dev" runs a local
cluster of several nodes on loopback, each a child process, and boots a demo
VM in it. "blixard image" builds and lists guest images on this machine.

A cluster is secure by default: nodes talk TLS 1.3 to each other and to
clients, with certificates from a CA the first node makes when it
bootstraps; a new node joins with a join token ("cluster token create"); and
every API request carries an ACL token whose role (viewer, operator, admin)
decides what it may do. The first node writes the first admin token to
<data-dir>/admin.token. Clients trust the CA in --ca (or BLIXARD_CA, or
./.blixard-dev/ca.crt, where "blixard dev" leaves it) and send --token (or
BLIXARD_TOKEN). A node started with --insecure serves plaintext on loopback
without authentication, for clients run with --insecure (or
BLIXARD_INSECURE=1).

The cluster, vm, task and acl commands talk to a running cluster over gRPC,
through any of its nodes (--addr, or BLIXARD_ADDR): they show the cluster's
members and Raft state, remove and drain members, make, list and revoke
join and ACL tokens, show and rotate the cluster CA ("cluster ca"),
create, start, stop, delete, list and inspect VMs and read their
consoles, and submit, list, inspect and cancel tasks; "events" shows
what happened in the cluster, and why. Writes reach the leader and are
retried safely.

The leader places each VM or task on a ready node with room for it (its
constraints, features and anti-affinity respected; binpack or spread), moves
the VMs of a node that goes down, and a node cut off from the quorum stops
its VMs. The node boots it as a QEMU microVM, with KVM when a
probe VM boots with it there, else with TCG software emulation, from the image
it names (default "default", which each node builds the first time it needs
it). "vm logs" shows a VM's console. A VM's restart policy (always,
on-failure, never) applies when it fails or stops on its own. A task runs its
command in a small VM of its own through the guest agent; the VM powers off
when the command ends, and "task submit --wait" exits with its exit code.`

// NewRootCommand returns the blixard root command with every subcommand
// attached. Each call builds a fresh tree, so tests can run it in isolation.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "blixard",
		Short: "Blixard: a distributed orchestrator for microVMs",
		Long:  rootLong,
		// A failing command prints one line, not a usage dump; Execute prints
		// it (see errorLine), so cobra prints nothing itself.
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	g := &globalFlags{}
	g.register(root)
	// One line per command: commands that run a node locally take no
	// globalFlags.
	root.AddCommand(
		newVersionCommand(),
		newNodeCommand(),
		newDevCommand(),
		newClusterCommand(g),
		newVMCommand(g),
		newTaskCommand(g),
		newEventsCommand(g),
		newACLCommand(g),
		newImageCommand(),
		newVMMCommand(),
	)
	return root
}

// Execute runs the root command with the process's arguments until it ends or
// the process is interrupted (SIGINT, SIGTERM cancel the command's context).
// It prints a failure as one line on stderr and returns it.
func Execute() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handling: a second one
	// ends a command that does not stop in time.
	go func() {
		<-ctx.Done()
		stop()
	}()
	return execute(ctx, NewRootCommand())
}

// execute runs root with ctx and prints its error, if any, on root's stderr.
func execute(ctx context.Context, root *cobra.Command) error {
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		root.PrintErrln(errorLine(cmd, err))
	}
	return err
}
