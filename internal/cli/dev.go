package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
)

// devFormTimeout bounds the wait for a dev cluster to elect a leader and
// promote every node.
const devFormTimeout = 90 * time.Second

func newDevCommand() *cobra.Command {
	var (
		nodes    int
		dataDir  string
		host     string
		basePort int
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster on loopback in the foreground",
		Long: `Run a local cluster for development: each node is a child process running
"blixard node" with its own data directory under --data-dir and its log in
<data-dir>/n<ID>/node.log. Node 1 bootstraps, the others join it. dev prints
the export line that points other commands at the cluster, waits until every
node is a voter, shows the cluster's status, and then runs until Ctrl-C, which
stops every node. Run it again with the same --data-dir and the cluster comes
back from its disks.`,
		Example: `  blixard dev
  blixard dev --nodes 5 --data-dir /tmp/blixard-dev
  # in another shell:
  export BLIXARD_ADDR=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  blixard cluster status`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes < 1 || nodes > 9 {
				return usageErrorf("--nodes: %d is not between 1 and 9", nodes)
			}
			if basePort < 1 || basePort+nodes > 65535 {
				return usageErrorf("--base-port: %d leaves no room for %d nodes", basePort, nodes)
			}
			return runDev(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), nodes, dataDir, host, basePort)
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 3, "how many nodes")
	f.StringVar(&dataDir, "data-dir", ".blixard-dev", "`directory` that holds every node's data directory and log")
	f.StringVar(&host, "host", "127.0.0.1", "loopback `address` the nodes listen on")
	f.IntVar(&basePort, "base-port", 7001, "node i listens on base-port + i - 1")
	return cmd
}

type devNode struct {
	id   uint64
	addr string
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

func runDev(ctx context.Context, out, errOut io.Writer, count int, dataDir, host string, basePort int) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the blixard binary: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dataDir, err)
	}
	var all []*devNode
	var addrs []string
	for i := 1; i <= count; i++ {
		addrs = append(addrs, fmt.Sprintf("%s:%d", host, basePort+i-1))
	}
	defer func() { stopDev(errOut, all) }()
	for i := 1; i <= count; i++ {
		dir := filepath.Join(dataDir, fmt.Sprintf("n%d", i))
		args := []string{"node", "--id", strconv.Itoa(i), "--listen", addrs[i-1], "--data-dir", dir}
		if i > 1 {
			args = append(args, "--join", addrs[0])
		}
		n, err := startDevNode(exe, uint64(i), addrs[i-1], dir, args)
		if err != nil {
			return err
		}
		all = append(all, n)
		fmt.Fprintf(errOut, "started node %d on %s (log: %s)\n", i, addrs[i-1], n.log.Name())
	}
	fmt.Fprintf(out, "export BLIXARD_ADDR=%s\n", strings.Join(addrs, ","))

	c, err := client.New(ctx, client.Options{Addrs: addrs})
	if err != nil {
		return err
	}
	defer c.Close()
	status, err := waitForVoters(ctx, errOut, c, all, count)
	if err != nil {
		return err
	}
	tw := newTable(out)
	clusterStatusTable(tw, status)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(errOut, "cluster is up; Ctrl-C stops it\n")
	return waitDev(ctx, all)
}

func startDevNode(exe string, id uint64, addr, dir string, args []string) (*devNode, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open node %d's log: %w", id, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: the terminal's Ctrl-C reaches dev, which stops
	// the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start node %d: %w", id, err)
	}
	n := &devNode{id: id, addr: addr, cmd: cmd, log: logf, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	return n, nil
}

// waitForVoters polls the cluster until it has a leader and count voters,
// showing progress, or a node dies, or the wait times out.
func waitForVoters(ctx context.Context, errOut io.Writer, c *client.Client, all []*devNode, count int) (*apiv1.GetClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, devFormTimeout)
	defer cancel()
	last := ""
	for {
		for _, n := range all {
			select {
			case err := <-n.done:
				n.done <- err
				return nil, fmt.Errorf("node %d exited while the cluster formed (%v); see %s", n.id, err, n.log.Name())
			default:
			}
		}
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.GetClusterStatus(actx, &apiv1.GetClusterStatusRequest{})
		acancel()
		voters := 0
		for _, m := range st.GetMembers() {
			if m.GetVoter() {
				voters++
			}
		}
		progress := fmt.Sprintf("waiting for a leader and %d voters: ", count)
		switch {
		case err != nil:
			progress += "no answer yet"
		case st.GetLeaderId() == 0:
			progress += "no leader yet"
		default:
			if voters == count {
				return st, nil
			}
			progress += fmt.Sprintf("leader %d, %d voters so far", st.GetLeaderId(), voters)
		}
		if progress != last {
			fmt.Fprintln(errOut, progress)
			last = progress
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("the cluster did not form within %s (%s); see the node logs", devFormTimeout, progress)
			}
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// waitDev runs until ctx ends (nil) or a node exits (an error).
func waitDev(ctx context.Context, all []*devNode) error {
	died := make(chan *devNode, len(all))
	for _, n := range all {
		go func() {
			select {
			case err := <-n.done:
				n.done <- err
				died <- n
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case n := <-died:
		return fmt.Errorf("node %d exited; see %s", n.id, n.log.Name())
	}
}

// stopDev stops every node: SIGTERM, then SIGKILL after a grace period.
func stopDev(errOut io.Writer, all []*devNode) {
	for _, n := range all {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, n := range all {
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		n.log.Close()
	}
	if len(all) > 0 {
		fmt.Fprintf(errOut, "stopped %d nodes\n", len(all))
	}
}
