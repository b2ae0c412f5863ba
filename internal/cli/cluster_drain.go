package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

func newClusterDrainCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "drain ID",
		Short: "Move a node's VMs to other nodes and place nothing new on it",
		Long: `Drain the node with id ID, before maintenance or removal: the leader places
nothing new on it and stops its VMs there. Once the node reports a VM
stopped, a VM wanted running is placed on another node that fits it (by
the same rules as a new VM) and started there. Tasks already on the node
run to their end. Follow the moves with 'blixard vm list'.

The node stays drained, across its restarts, until 'blixard cluster
undrain ID'. Draining a drained node again is harmless. A node that has
left the cluster cannot be drained.

With -o json it prints the DrainNodeResponse: the node's record, with
drain true.`,
		Example: `  # Empty node 3 before taking it down
  blixard cluster drain 3
  blixard vm list                 # watch its VMs move
  blixard cluster undrain 3       # once it is back`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDrain(g, cmd, args[0], true)
		},
	}
}

// runDrain sets or clears the drain flag of the node whose id is arg.
func runDrain(g *globalFlags, cmd *cobra.Command, arg string, drain bool) error {
	id, err := parseID("node id", arg)
	if err != nil {
		return err
	}
	s, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer s.close()
	resp, err := s.client.DrainNode(s.ctx, &apiv1.DrainNodeRequest{NodeId: id, Drain: drain})
	if err != nil {
		return err
	}
	if s.json {
		return printJSON(s.out, resp)
	}
	msg := "node %d draining: its VMs move to other nodes; nothing new lands on it\n"
	if !drain {
		msg = "node %d no longer draining: new VMs and tasks may land on it; nothing moves back\n"
	}
	_, err = fmt.Fprintf(s.out, msg, id)
	return err
}
