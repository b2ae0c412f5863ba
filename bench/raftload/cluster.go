package main

import (
	"bufio"
	"context"
	"crypto/tls"
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
	"github.com/blixard/blixard/internal/pki"
	"github.com/blixard/blixard/internal/runtime"
)

// joinTokenEnv is the environment variable `blixard node` reads the join
// token from when --join-token is not given (internal/cli: it keeps the
// token off the command line, which other users can read in /proc).
const joinTokenEnv = "BLIXARD_JOIN_TOKEN"

// stopGrace is how long a node gets to stop after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// cluster is three `blixard node` processes.
type cluster struct {
	bin     string
	dataDir string
	addrs   []string
	nodes   []*node
	// secure: the nodes run as operators run them (TLS 1.3, ACL tokens,
	// join tokens); otherwise with --insecure.
	secure bool
	// pprof, if set, is the loopback host:port node 1 serves its metrics
	// and Go profiles on (--metrics-listen, --pprof).
	pprof string
	// The cluster's CA as a client's TLS config, and node 1's admin token:
	// set by start when secure.
	tls   *tls.Config
	token string
}

// clientOptions adds the cluster's credentials, if it has any, to o.
func (c *cluster) clientOptions(o client.Options) client.Options {
	o.TLS, o.Token = c.tls, c.token
	return o
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
// Insecure, all three start at once, with --insecure. Secure, node 1 starts
// without --insecure and makes the cluster's CA and admin token; start reads
// them, makes a join token through the API with the admin token, and starts
// nodes 2 and 3 with it.
func (c *cluster) start(ctx context.Context, timeout time.Duration) error {
	var joinToken string
	for i, addr := range c.addrs {
		id := i + 1
		dir := filepath.Join(c.dataDir, fmt.Sprintf("n%d", id))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		args := []string{"node", "--id", strconv.Itoa(id), "--listen", addr, "--data-dir", dir}
		var env []string
		if id == 1 {
			// Node 1 bootstraps and stays the leader unless an election
			// moves it; it runs no VMs. Nodes 2 and 3 offer the default
			// image, so the state accepts the tasks, and drainAll keeps
			// them from being placed there: the leader's placement pass
			// records once per task why it fits nowhere (PlacementFailed).
			args = append(args, "--no-workloads")
			if c.pprof != "" {
				args = append(args, "--metrics-listen", c.pprof, "--pprof")
			}
		}
		if !c.secure {
			// --insecure: the benchmark measures Raft and the disk, on
			// loopback; TLS and token checks are left out of the figures
			// (--secure puts them in: BENCHMARKS.md).
			args = append(args, "--insecure")
		}
		if id > 1 {
			args = append(args, "--join", c.addrs[0])
			if c.secure {
				env = append(os.Environ(), joinTokenEnv+"="+joinToken)
			}
		}
		if err := c.startNode(id, addr, dir, args, env); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.secure && id == 1 {
			var err error
			if joinToken, err = c.credentials(ctx, dir, timeout); err != nil {
				return err
			}
		}
	}
	return nil
}

// startNode starts one node process with args (and env, if not nil).
func (c *cluster) startNode(id int, addr, dir string, args, env []string) error {
	logf, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = env
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
	return nil
}

// credentials waits for the bootstrap node (data directory dir) to write
// its CA certificate and admin token, sets c.tls and c.token from them, and
// returns a new voter join token made with the admin token, as an operator
// does with `blixard cluster token create`.
func (c *cluster) credentials(ctx context.Context, dir string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tokFile := filepath.Join(dir, runtime.AdminTokenFile)
	var lastErr error
	for {
		if err := c.checkAlive(); err != nil {
			return "", err
		}
		lastErr = nil
		if b, err := os.ReadFile(tokFile); err != nil {
			lastErr = err
		} else if c.token = strings.TrimSpace(string(b)); c.token == "" {
			lastErr = fmt.Errorf("%s is empty", tokFile)
		} else if bundle, err := pki.LoadBundle(dir); err != nil {
			lastErr = err
		} else {
			c.tls = pki.ClientOnlyTLS(bundle.Pool())
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("node 1's CA and admin token within %s: %v", timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if fi, err := os.Stat(tokFile); err == nil && fi.Mode().Perm() != 0o600 {
		fmt.Printf("warning: %s has mode %v, not 0600\n", tokFile, fi.Mode().Perm())
	}

	cl, err := client.New(ctx, c.clientOptions(client.Options{Addrs: c.addrs[:1], Timeout: time.Second, MaxAttempts: 3, BackoffInitial: 50 * time.Millisecond}))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	// The admin token works once the cluster has applied its first entry.
	for {
		if err := c.checkAlive(); err != nil {
			return "", err
		}
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := cl.CreateToken(actx, &apiv1.CreateTokenRequest{
			Kind:        apiv1.TokenKind_TOKEN_KIND_JOIN,
			TtlSeconds:  3600,
			Description: "raftload",
		})
		acancel()
		if err == nil && resp.GetSecret() != "" {
			return resp.GetSecret(), nil
		}
		if err == nil {
			err = errors.New("empty secret")
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("a join token made with the admin token within %s: %v", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
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
	cl, err := client.New(ctx, c.clientOptions(client.Options{Addrs: c.addrs, Timeout: time.Second, MaxAttempts: 3, BackoffInitial: 50 * time.Millisecond}))
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

// drainAll drains every node, so that no leader places any of the tasks the
// load submits, should leadership move from node 1 (which places nothing:
// --no-workloads) to node 2 or 3: the tasks stay pending in the replicated
// state, and no node builds an image or boots a VM for them.
func (c *cluster) drainAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := client.New(ctx, c.clientOptions(client.Options{Addrs: c.addrs}))
	if err != nil {
		return err
	}
	defer cl.Close()
	for _, n := range c.nodes {
		if _, err := cl.DrainNode(ctx, &apiv1.DrainNodeRequest{NodeId: uint64(n.id), Drain: true}); err != nil {
			return fmt.Errorf("drain node %d: %w", n.id, err)
		}
	}
	return nil
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
