package cli

import "github.com/spf13/cobra"

// rootLong is the help text of the root command. Its second paragraph says what
// this build can do; update it whenever a command that reaches a node or a
// cluster is added.
const rootLong = `Blixard is a distributed orchestrator for microVMs.

A few server nodes keep the cluster's desired state (nodes, VMs and tasks) in a
Raft-replicated state machine, and every node can also run workloads. The
leader places VMs and tasks on nodes that have room, each node boots what was
placed on it with a real hypervisor and reports back through Raft, and when a
node dies its VMs restart elsewhere.

Today this build ships the foundations only: the deterministic core, the
replicated state machine and the durable store, exercised by the test suite.
It cannot start a node or reach a cluster yet. The node, cluster, vm and task
commands arrive with later work; until then this binary offers only what is
listed below.`

// NewRootCommand returns the blixard root command with every subcommand
// attached. Each call builds a fresh tree, so tests can run it in isolation.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "blixard",
		Short: "Blixard: a distributed orchestrator for microVMs",
		Long:  rootLong,
		// A failing command prints its error, not a usage dump; a bad flag or
		// an unknown command still names the problem.
		SilenceUsage: true,
	}
	root.AddCommand(newVersionCommand())
	return root
}

// Execute runs the root command with the process's arguments. Cobra has
// already printed the returned error to stderr.
func Execute() error {
	return NewRootCommand().Execute()
}
