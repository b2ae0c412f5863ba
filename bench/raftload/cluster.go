package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
)

// stopGrace is how long a node gets to stop after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// cluster is three `blixard node` processes.
type cluster struct {
	bin     string
	dataDir string
	addrs   []string
	nodes   []*node
}

type node struct {
	id   int
	addr string
	cmd  *exec.Cmd
	log  *os.File
	// done receives Wait's result once; whoever reads it puts it back.
	done chan error
}

// exited reports whether the node's process has ended, and how.
func (n *node) exited() (error, bool) {
	select {
	case err := <-n.done:
		n.done <- err
		return err, true
	default:
		return nil, false
	}
}

// buildBlixard builds ./cmd/blixard of the module raftload runs in into dir.
func buildBlixard(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "blixard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/blixard")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if root, err := moduleRoot(ctx); err == nil {
		cmd.Dir = root
	}
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/blixard: %w", err)
	}
	return out, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not in a module")
	}
	return filepath.Dir(gomod), nil
}

// nodeAddrs returns the three nodes' addresses: base-port onwards, or (for
// 0) three ports the kernel says are free right now.
func nodeAddrs(host string, basePort int) ([]string, error) {
	var addrs []string
	if basePort > 0 {
		for i := range 3 {
			addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(basePort+i)))
		}
		return addrs, nil
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 3 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// start starts node 1, which bootstraps, then nodes 2 and 3, which join it.
func (c *cluster) start(ctx context.Context) error {
	for i, addr := range c.addrs {
		id := i + 1
		dir := filepath.Join(c.dataDir, fmt.Sprintf("n%d", id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// --insecure: the benchmark measures Raft and the disk, on loopback;
		// TLS and token checks are left out of the figures (BENCHMARKS.md).
		args := []string{"node", "--id", strconv.Itoa(id), "--listen", addr, "--data-dir", dir, "--insecure"}
		if id > 1 {
			args = append(args, "--join", c.addrs[0])
		}
		logf, err := os.Create(filepath.Join(dir, "node.log"))
		if err != nil {
			return err
		}
		cmd := exec.Command(c.bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{
			// Its own process group, so that a terminal's Ctrl-C reaches
			// raftload only, which stops the nodes in order.
			Setpgid: true,
			// A backstop if raftload itself is killed.
			Pdeathsig: syscall.SIGTERM,
		}
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("start node %d: %w", id, err)
		}
		n := &node{id: id, addr: addr, cmd: cmd, log: logf, done: make(chan error, 1)}
		go func() { n.done <- cmd.Wait() }()
		c.nodes = append(c.nodes, n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// checkAlive returns an error if a node has exited.
func (c *cluster) checkAlive() error {
	for _, n := range c.nodes {
		if err, ok := n.exited(); ok {
			return fmt.Errorf("node %d exited (%v)", n.id, err)
		}
	}
	return nil
}

// waitForVoters polls until the cluster has a leader and three voters.
func (c *cluster) waitForVoters(ctx context.Context, timeout time.Duration) (*apiv1.GetClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := client.New(ctx, client.Options{Addrs: c.addrs, Timeout: time.Second, MaxAttempts: 3, BackoffInitial: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for {
		if err := c.checkAlive(); err != nil {
			return nil, err
		}
		st, err := c.status(ctx, cl)
		if err == nil && st.GetLeaderId() != 0 && voters(st) == len(c.nodes) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader and %d voters within %s (last: %v, %d voters)", len(c.nodes), timeout, err, voters(st))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *cluster) status(ctx context.Context, cl *client.Client) (*apiv1.GetClusterStatusResponse, error) {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return cl.GetClusterStatus(actx, &apiv1.GetClusterStatusRequest{})
}

func voters(st *apiv1.GetClusterStatusResponse) int {
	n := 0
	for _, m := range st.GetMembers() {
		if m.GetVoter() {
			n++
		}
	}
	return n
}

// stop sends every node SIGTERM and waits; a node still running after
// stopGrace gets SIGKILL.
func (c *cluster) stop(w io.Writer) {
	for _, n := range c.nodes {
		if _, ok := n.exited(); !ok {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(stopGrace)
	for _, n := range c.nodes {
		t := time.NewTimer(time.Until(deadline))
		select {
		case err := <-n.done:
			n.done <- err
		case <-t.C:
			fmt.Fprintf(w, "node %d did not stop within %s of SIGTERM; killing it\n", n.id, stopGrace)
			_ = n.cmd.Process.Kill()
			n.done <- <-n.done
		}
		t.Stop()
		n.log.Close()
	}
	if len(c.nodes) > 0 {
		fmt.Fprintf(w, "stopped %d nodes\n", len(c.nodes))
	}
}

// tailLogs prints the last lines of every node's log.
func (c *cluster) tailLogs(w io.Writer, lines int) {
	for _, n := range c.nodes {
		f, err := os.Open(n.log.Name())
		if err != nil {
			continue
		}
		var tail []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			tail = append(tail, sc.Text())
			if len(tail) > lines {
				tail = tail[1:]
			}
		}
		f.Close()
		fmt.Fprintf(w, "--- last lines of node %d's log (%s)\n", n.id, n.log.Name())
		for _, l := range tail {
			fmt.Fprintln(w, l)
		}
	}
}

// cpuTime is the CPU time (user + system) a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	// USER_HZ is 100 on every Linux that Go supports.
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// selfCPU is the CPU time raftload has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
