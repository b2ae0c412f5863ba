package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// eventsPoll is how often "events -f" asks for new events (a variable for
// tests).
var eventsPoll = time.Second

func newEventsCommand(g *globalFlags) *cobra.Command {
	var (
		follow bool
		vm     string
		node   uint64
		limit  uint32
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show what happened in the cluster, and why",
		Long: `Show the cluster's event log: leader changes, nodes joining, leaving and
changing status, VMs placed, started, stopped, failed and lost with their
reasons, and tasks assigned, retried and ended. The log is part of the
replicated state, so every node tells the same story; it keeps the last
1,000 events.

--vm and --node keep the events about one VM or one node; --limit the
newest N. -f keeps printing new events as they are applied, until Ctrl-C.
With -o json each event is printed as a JSON line.`,
		Example: `  blixard events
  blixard events --vm web-1
  blixard events --node 3 --limit 20
  blixard events -f`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer s.close()
			req := &apiv1.ListEventsRequest{VmName: vm, NodeId: node, Limit: limit}
			tw := newTable(s.out)
			header := true
			for {
				resp, err := s.client.ListEvents(s.ctx, req)
				if err != nil {
					if follow && s.ctx.Err() != nil {
						return nil
					}
					return err
				}
				for _, e := range resp.GetEvents() {
					if s.json {
						if err := printJSON(s.out, e); err != nil {
							return err
						}
						continue
					}
					if header {
						fmt.Fprintln(tw, "TIME\tINDEX\tKIND\tSUBJECT\tWHAT")
						header = false
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", timeText(e.GetTimeUnixNano()), e.GetIndex(), e.GetKind(), eventSubject(e), e.GetMessage())
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if !follow {
					if header && !s.json {
						fmt.Fprintln(s.errOut, "no events")
					}
					return nil
				}
				if n := len(resp.GetEvents()); n > 0 {
					req.AfterIndex = resp.GetEvents()[n-1].GetIndex()
				} else if req.AfterIndex == 0 {
					req.AfterIndex = resp.GetAppliedIndex()
				}
				req.Limit = 0
				select {
				case <-s.ctx.Done():
					return nil
				case <-time.After(eventsPoll):
				}
			}
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	f.StringVar(&vm, "vm", "", "only events about the VM `NAME`")
	f.Uint64Var(&node, "node", 0, "only events about node `ID`")
	f.Uint32Var(&limit, "limit", 0, "only the newest `N` events (default 0: all kept)")
	return cmd
}

// eventSubject names what an event is about.
func eventSubject(e *apiv1.Event) string {
	switch {
	case e.GetVmName() != "":
		s := "vm " + e.GetVmName()
		if e.GetNodeId() != 0 {
			s += " (node " + strconv.FormatUint(e.GetNodeId(), 10) + ")"
		}
		return s
	case e.GetTaskId() != 0:
		s := "task " + strconv.FormatUint(e.GetTaskId(), 10)
		if e.GetNodeId() != 0 {
			s += " (node " + strconv.FormatUint(e.GetNodeId(), 10) + ")"
		}
		return s
	case e.GetNodeId() != 0:
		return "node " + strconv.FormatUint(e.GetNodeId(), 10)
	}
	return "-"
}
