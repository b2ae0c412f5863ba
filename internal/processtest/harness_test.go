package processtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/pki"
	"github.com/blixard/blixard/internal/vmm"
)

// Deadlines of the waits. They are generous: two cores run three or four
// nodes, their fsyncs and the test itself. A wait that runs out is a
// failure; how long a wait took is never asserted.
const (
	formTimeout  = 90 * time.Second  // a cluster elects a leader and promotes its voters
	exitTimeout  = 60 * time.Second  // a process exits after a signal, or on its own
	catchTimeout = 180 * time.Second // a node catches up after a restart or a pause
	callTimeout  = 60 * time.Second  // one client call, retries included
	writeTimeout = 5 * time.Minute   // a batch of thousands of writes
	cliTimeout   = 60 * time.Second  // one run of the blixard command line
	pollEvery    = 100 * time.Millisecond
)

// logTailLines is how much of each node's log a failing test prints;
// BLIXARD_PROCESSTEST_LOGS=N (any N > 0) prints the last N lines of every
// test's logs, passing or not.
var logTailLines = 60

// ---- processes ----

// node is one blixard node: its identity, address and data directory, and
// the process currently running it (if any). A restart runs a new process
// with the same id, address and data directory.
type node struct {
	t       *testing.T
	c       *cluster
	id      uint64
	addr    string
	dir     string
	logPath string
	// args are added to every start (--role, --snapshot-entries, ...);
	// --join is given only to the first.
	args []string

	mu     sync.Mutex
	proc   *proc
	starts int
	stale  *client.Client // lazily made: stale reads from this node only
	// stoppedOnPurpose: the test ended (or expects the end of) the current
	// process, so waits do not treat its exit as a failure.
	stoppedOnPurpose bool
}

// proc is one run of a node's process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
	err  error         // cmd.Wait's result; read after done
}

// start runs the node's process, with --join if join is not empty. Its
// stdout and stderr go to the node's log file, after a line that says how
// it was started.
func (n *node) start(join string) {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		n.t.Fatalf("node %d: start while its process %d runs", n.id, n.proc.cmd.Process.Pid)
	}
	args := []string{"node", "--id", strconv.FormatUint(n.id, 10), "--listen", n.addr, "--data-dir", n.dir}
	args = append(args, n.args...)
	switch {
	case n.c.insecure:
		args = append(args, "--insecure")
	case join == "" && n.starts == 0 && n.c.boot == nil:
		n.c.boot = n // the node that makes the cluster's CA and admin token
	}
	if join != "" {
		args = append(args, "--join", join)
		if !n.c.insecure && !slices.Contains(n.args, "--join-token") {
			n.mu.Unlock() // the token is made through the cluster
			tok := n.c.joinTok()
			n.mu.Lock()
			args = append(args, "--join-token", tok)
		}
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatalf("node %d: open its log: %v", n.id, err)
	}
	defer logf.Close() // the child has its own copy of the descriptor
	fmt.Fprintf(logf, "=== processtest %s: blixard %s\n", time.Now().Format(time.TimeOnly), strings.Join(args, " "))
	cmd := exec.Command(blixardBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Should the test binary die without its cleanups, the nodes die too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("node %d: start: %v", n.id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	n.proc = p
	n.starts++
	n.stoppedOnPurpose = false
}

// restart runs the node again from its data directory, without --join.
func (n *node) restart() { n.t.Helper(); n.start("") }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (n *node) current() *proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// running reports whether the node's process runs (a stopped one counts).
func (n *node) running() bool {
	p := n.current()
	return p != nil && !p.exited()
}

func (n *node) pid() int { return n.current().cmd.Process.Pid }

// signal sends sig to the node's running process.
func (n *node) signal(sig syscall.Signal) {
	n.t.Helper()
	p := n.current()
	if p == nil || p.exited() {
		n.t.Fatalf("node %d: %v to a process that is not running", n.id, sig)
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		n.mayExit()
	}
	if err := syscall.Kill(p.cmd.Process.Pid, sig); err != nil {
		n.t.Fatalf("node %d: %v: %v", n.id, sig, err)
	}
}

// kill9 crashes the node (SIGKILL) and waits for its process to be gone.
func (n *node) kill9() {
	n.t.Helper()
	n.signal(syscall.SIGKILL)
	n.waitExit()
}

// term stops the node cleanly (SIGTERM) and waits for it to exit; it
// returns the exit code.
func (n *node) term() int {
	n.t.Helper()
	n.signal(syscall.SIGTERM)
	return n.waitExit()
}

// pause freezes the node (SIGSTOP); resume thaws it (SIGCONT).
func (n *node) pause()  { n.t.Helper(); n.signal(syscall.SIGSTOP) }
func (n *node) resume() { n.t.Helper(); n.signal(syscall.SIGCONT) }

// waitExit waits for the process to exit on its own and returns its exit
// code (-1 if a signal ended it).
func (n *node) waitExit() int {
	n.t.Helper()
	n.mayExit()
	p := n.current()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		n.t.Fatalf("node %d: process %d still runs after %s", n.id, p.cmd.Process.Pid, exitTimeout)
	}
	return p.cmd.ProcessState.ExitCode()
}

// exitState describes how the current process ended, or that it runs.
func (n *node) exitState() string {
	p := n.current()
	switch {
	case p == nil:
		return "never started"
	case !p.exited():
		return fmt.Sprintf("pid %d running", p.cmd.Process.Pid)
	default:
		return fmt.Sprintf("pid %d exited: %v", p.cmd.Process.Pid, p.cmd.ProcessState)
	}
}

// kill ends the process, if it runs, for the test's cleanup.
func (n *node) kill() {
	p := n.current()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill() // SIGKILL also ends a stopped process
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		n.t.Errorf("node %d: process %d survived SIGKILL", n.id, p.cmd.Process.Pid)
	}
}

// log returns the node's whole log (every run).
func (n *node) log() string {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		n.t.Fatalf("node %d: read its log: %v", n.id, err)
	}
	return string(b)
}

// logSize is the log's current length: pass it to logSince.
func (n *node) logSize() int { return len(n.log()) }

// logSince returns what the node logged after offset.
func (n *node) logSince(offset int) string { return n.log()[offset:] }

// staleClient is a client of this node alone that tries once: its answers
// are this node's own view.
func (n *node) staleClient() *client.Client {
	n.t.Helper()
	opts := n.c.clientOptions() // before the lock: it may wait on the nodes
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stale == nil {
		opts.Addrs, opts.MaxAttempts, opts.Timeout = []string{n.addr}, 1, 3*time.Second
		c, err := client.New(context.Background(), opts)
		if err != nil {
			n.t.Fatalf("node %d: client: %v", n.id, err)
		}
		n.stale = c
	}
	return n.stale
}

// status is this node's own view of the cluster (a stale read).
func (n *node) status() (*apiv1.GetClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.staleClient().GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{Stale: true})
}

// ---- clusters ----

// cluster is the set of nodes one test runs, with their data directories
// and logs under the test's temporary directory.
type cluster struct {
	t   *testing.T
	dir string
	// insecure: the nodes run with --insecure (set before the first
	// start). Otherwise the first node started without --join (boot)
	// makes the CA and the admin token that the test's clients use, and
	// nodes that join get a join token made with it.
	insecure   bool
	nodeArgs   []string // for every node, before its own
	boot       *node
	caFile     string
	adminToken string
	joinToken  string

	all   []*node          // every node ever made, for cleanup and logs
	nodes map[uint64]*node // the latest node of each id

	mu      sync.Mutex
	clients []*client.Client
}

// newCluster makes an empty cluster; args are given to every node's start.
func newCluster(t *testing.T, args ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[uint64]*node{}, nodeArgs: args}
	// Registered after TempDir's cleanup, so it runs before it: the
	// processes are gone before their directories are removed.
	t.Cleanup(func() {
		for _, n := range c.all {
			n.kill()
		}
		// VMs outlive their nodes: their supervisors and QEMUs name the
		// node's data directory on their command lines.
		killNaming(t, c.dir)
		if t.Failed() || os.Getenv("BLIXARD_PROCESSTEST_LOGS") != "" {
			c.dumpLogs()
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, cl := range c.clients {
			_ = cl.Close()
		}
		for _, n := range c.all {
			if n.stale != nil {
				_ = n.stale.Close()
			}
		}
	})
	return c
}

// startCluster starts node 1, which bootstraps, and nodes 2..size, which
// join through it, and waits until there is a leader and size voters.
func startCluster(t *testing.T, size int) *cluster {
	t.Helper()
	c := newCluster(t)
	first := c.add(1)
	first.start("")
	for id := 2; id <= size; id++ {
		c.add(uint64(id)).start(first.addr)
	}
	c.waitVoters(size)
	return c
}

// add makes a node with a fresh data directory and a free port; it does not
// start it. The node replaces any earlier node of the same id.
func (c *cluster) add(id uint64, args ...string) *node {
	c.t.Helper()
	name := fmt.Sprintf("n%d", id)
	for i := 2; slices.ContainsFunc(c.all, func(n *node) bool { return filepath.Base(n.dir) == name }); i++ {
		name = fmt.Sprintf("n%d-%d", id, i)
	}
	n := &node{
		t: c.t, c: c, id: id, addr: freeAddr(c.t),
		dir:     filepath.Join(c.dir, name),
		logPath: filepath.Join(c.dir, name+".log"),
		args:    append(slices.Clip(c.nodeArgs), args...),
	}
	c.all = append(c.all, n)
	c.nodes[id] = n
	return n
}

// node returns the latest node of id.
func (c *cluster) node(id uint64) *node {
	c.t.Helper()
	n, ok := c.nodes[id]
	if !ok {
		c.t.Fatalf("no node %d", id)
	}
	return n
}

// addrs lists the addresses of the latest node of each id, by id.
func (c *cluster) addrs() []string {
	var out []string
	for _, n := range c.byID() {
		out = append(out, n.addr)
	}
	return out
}

func (c *cluster) byID() []*node {
	var ids []uint64
	for id := range c.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []*node
	for _, id := range ids {
		out = append(out, c.nodes[id])
	}
	return out
}

// client is a client of every node, patient enough to ride out an
// election. The cluster's cleanup closes it.
func (c *cluster) client(addrs ...string) *client.Client {
	c.t.Helper()
	if len(addrs) == 0 {
		addrs = c.addrs()
	}
	opts := c.clientOptions()
	opts.Addrs, opts.MaxAttempts, opts.BackoffMax = addrs, 50, time.Second
	cl, err := client.New(context.Background(), opts)
	if err != nil {
		c.t.Fatalf("client.New(%v): %v", addrs, err)
	}
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	return cl
}

// leaderStatus asks each running node for its own view and returns the view
// of the node that says it is the leader, with its node; nil and why not if
// none does.
func (c *cluster) leaderStatus() (*apiv1.GetClusterStatusResponse, *node, string) {
	var why []string
	for _, n := range c.byID() {
		if !n.running() {
			continue
		}
		st, err := n.status()
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("node %d: %v", n.id, err))
		case st.GetLeaderId() != 0 && st.GetLeaderId() == st.GetNodeId():
			return st, n, ""
		default:
			why = append(why, fmt.Sprintf("node %d: leader %d, term %d", n.id, st.GetLeaderId(), st.GetTerm()))
		}
	}
	return nil, nil, strings.Join(why, "; ")
}

// mustLeader waits for a node that says it is the leader.
func (c *cluster) mustLeader() (*apiv1.GetClusterStatusResponse, *node) {
	c.t.Helper()
	var st *apiv1.GetClusterStatusResponse
	var ln *node
	waitFor(c.t, formTimeout, "a leader", func() (bool, string) {
		if err := c.unexpectedExit(); err != "" {
			c.t.Fatal(err)
		}
		var why string
		st, ln, why = c.leaderStatus()
		return st != nil, why
	})
	return st, ln
}

// waitVoters waits until the leader counts want voters among its members,
// every running node's process still runs, and returns the leader's view.
func (c *cluster) waitVoters(want int) *apiv1.GetClusterStatusResponse {
	c.t.Helper()
	var st *apiv1.GetClusterStatusResponse
	waitFor(c.t, formTimeout, fmt.Sprintf("a leader and %d voters", want), func() (bool, string) {
		if err := c.unexpectedExit(); err != "" {
			c.t.Fatal(err)
		}
		s, _, why := c.leaderStatus()
		if s == nil {
			return false, why
		}
		st = s
		return len(voters(s)) == want && registered(s, want), describeMembers(s)
	})
	return st
}

// registered: at least want nodes have registered, each with the images
// it offers (until then a workload may be refused for want of one).
func registered(st *apiv1.GetClusterStatusResponse, want int) bool {
	n := 0
	for _, rec := range st.GetNodes() {
		if len(rec.GetImages()) > 0 {
			n++
		}
	}
	return n >= want
}

// unexpectedExit names a node whose process exited although the test
// neither ended it nor said it may exit.
func (c *cluster) unexpectedExit() string {
	for _, n := range c.byID() {
		if p := n.current(); p != nil && p.exited() && n.expectRunning() {
			return fmt.Sprintf("node %d exited unexpectedly: %s; its log:\n%s", n.id, n.exitState(), tail(n.log(), logTailLines))
		}
	}
	return ""
}

// mayExit tells the waits that the node's process may exit on its own: the
// test expects it to.
func (n *node) mayExit() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stoppedOnPurpose = true
}

// expectRunning: a node is expected to run unless the test ended it or
// said it may exit.
func (n *node) expectRunning() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.stoppedOnPurpose
}

func init() {
	if n, err := strconv.Atoi(os.Getenv("BLIXARD_PROCESSTEST_LOGS")); err == nil && n > 0 {
		logTailLines = n
	}
}

// dumpLogs prints every node's state and the tail of its log.
func (c *cluster) dumpLogs() {
	for _, n := range c.all {
		c.t.Logf("==== node %d at %s (%s), data %s; last %d lines of %s:\n%s",
			n.id, n.addr, n.exitState(), n.dir, logTailLines, n.logPath, tail(readOrErr(n.logPath), logTailLines))
	}
}

func readOrErr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- views ----

// member returns the member id of a status, or nil.
func member(st *apiv1.GetClusterStatusResponse, id uint64) *apiv1.ClusterMember {
	for _, m := range st.GetMembers() {
		if m.GetId() == id {
			return m
		}
	}
	return nil
}

// voters lists the ids of a status's voting members.
func voters(st *apiv1.GetClusterStatusResponse) []uint64 {
	var out []uint64
	for _, m := range st.GetMembers() {
		if m.GetVoter() {
			out = append(out, m.GetId())
		}
	}
	return out
}

// describeMembers renders a status for a wait's progress: who answered,
// the leader, and each member.
func describeMembers(st *apiv1.GetClusterStatusResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %d: leader %d term %d commit %d applied %d; members:",
		st.GetNodeId(), st.GetLeaderId(), st.GetTerm(), st.GetCommitIndex(), st.GetAppliedIndex())
	for _, m := range st.GetMembers() {
		fmt.Fprintf(&b, " %d(voter=%v match=%d)", m.GetId(), m.GetVoter(), m.GetMatchIndex())
	}
	return b.String()
}

// ---- waiting ----

// waitFor polls cond every pollEvery until it holds; after timeout it fails
// the test with what cond last said.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	waitEvery(t, timeout, pollEvery, what, cond)
}

func waitEvery(t *testing.T, timeout, every time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if detail != "" {
			last = detail
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s; last seen: %s", what, timeout, last)
		}
		<-time.After(every) // the poll's interval, not a synchronisation
	}
}

// ---- ports ----

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freeAddr returns a loopback address whose port was free a moment ago and
// has not been handed out before in this test binary.
func freeAddr(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
	}
	t.Fatal("no free port found")
	return ""
}

// ---- writes ----

// createVMs creates count VMs, stopped (so that nothing boots: a write of
// the log, nothing more), named <tag>-<i>, through cl from workers
// goroutines, and fails the test on the first error. It returns their
// names.
func createVMs(t *testing.T, cl *client.Client, count, workers int, tag string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	var (
		next     atomic.Int64
		mu       sync.Mutex
		names    []string
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(count) || ctx.Err() != nil {
					return
				}
				name := fmt.Sprintf("%s-%d", tag, i)
				_, err := cl.CreateVm(ctx, &apiv1.CreateVmRequest{Name: name, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}})
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("VM %s: %w", name, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				names = append(names, name)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("creating %d VMs (%s): %v", count, tag, firstErr)
	}
	return names
}

// ---- the command line ----

// cliResult is how one run of the blixard command line ended.
type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs the blixard binary with args and BLIXARD_ADDR set to addrs,
// and the cluster's CA and admin token (or BLIXARD_INSECURE).
func (c *cluster) runCLI(addrs string, args ...string) cliResult {
	c.t.Helper()
	return c.runCLIWith(addrs, false, args...)
}

// runCLIWith is runCLI, without the admin token if noToken.
func (c *cluster) runCLIWith(addrs string, noToken bool, args ...string) cliResult {
	t := c.t
	t.Helper()
	env := c.cliEnv()
	if noToken {
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "BLIXARD_TOKEN=") })
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, blixardBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BLIXARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BLIXARD_ADDR="+addrs)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		t.Fatalf("blixard %s: %v (ctx: %v); stderr: %s", strings.Join(args, " "), err, ctx.Err(), stderr.String())
	}
	t.Logf("$ blixard %s → exit %d; stderr: %q", strings.Join(args, " "), res.code, res.stderr)
	return res
}

// lines returns s's non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// killNaming SIGKILLs every process whose command line names dir, and
// waits until they are gone.
func killNaming(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(exitTimeout)
	for {
		pids := vmm.ProcessesNaming(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v naming %s survived SIGKILL", pids, dir)
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(pollEvery)
	}
}

// ---- credentials ----

// credentials waits for the boot node's CA certificate and admin token
// and reads them, once.
func (c *cluster) credentials() {
	c.t.Helper()
	if c.insecure || c.caFile != "" {
		return
	}
	if c.boot == nil {
		c.t.Fatal("no node bootstrapped the cluster: no CA, no admin token")
	}
	ca := filepath.Join(c.boot.dir, "ca.crt")
	tokFile := filepath.Join(c.boot.dir, "admin.token")
	waitFor(c.t, formTimeout, "node "+strconv.FormatUint(c.boot.id, 10)+"'s CA and admin token", func() (bool, string) {
		if err := c.unexpectedExit(); err != "" {
			c.t.Fatal(err)
		}
		b, err := os.ReadFile(tokFile)
		if err != nil {
			return false, err.Error()
		}
		if _, err := os.Stat(ca); err != nil {
			return false, err.Error()
		}
		c.adminToken = strings.TrimSpace(string(b))
		return c.adminToken != "", "empty " + tokFile
	})
	c.caFile = ca
}

// clientOptions are the TLS and token of a client with the admin token,
// or nothing for an insecure cluster.
func (c *cluster) clientOptions() client.Options {
	c.t.Helper()
	if c.insecure {
		return client.Options{}
	}
	c.credentials()
	return client.Options{TLS: c.tlsConfig(), Token: c.adminToken}
}

// tlsConfig trusts the cluster's CA.
func (c *cluster) tlsConfig() *tls.Config {
	c.t.Helper()
	c.credentials()
	b, err := pki.LoadBundleFile(c.caFile)
	if err != nil {
		c.t.Fatalf("read the cluster CA: %v", err)
	}
	return pki.ClientOnlyTLS(b.Pool())
}

// cliEnv is the environment that points the command line at the
// cluster's credentials.
func (c *cluster) cliEnv() []string {
	c.t.Helper()
	if c.insecure {
		return []string{"BLIXARD_INSECURE=1"}
	}
	c.credentials()
	return []string{"BLIXARD_CA=" + c.caFile, "BLIXARD_TOKEN=" + c.adminToken}
}

// joinTok is a voter join token of the cluster (it admits workers too),
// made the first time a node joins.
func (c *cluster) joinTok() string {
	c.t.Helper()
	if c.joinToken != "" {
		return c.joinToken
	}
	c.joinToken = c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_JOIN, TtlSeconds: 7200, Description: "processtest"})
	return c.joinToken
}

// createToken makes a token with the admin token and returns its secret.
func (c *cluster) createToken(req *apiv1.CreateTokenRequest) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var resp *apiv1.CreateTokenResponse
	// The admin token works once the cluster has applied its first entry.
	waitFor(c.t, formTimeout, "a token made with the admin token", func() (bool, string) {
		var err error
		resp, err = c.client().CreateToken(ctx, req)
		return err == nil, fmt.Sprint(err)
	})
	return resp.GetSecret()
}
