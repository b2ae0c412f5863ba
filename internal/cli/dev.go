package cli

import (
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

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/image"
	"github.com/blixard/blixard/internal/vmm"
)

// devFormTimeout bounds the wait for a dev cluster to elect a leader and
// promote every node.
const devFormTimeout = 90 * time.Second

// The demo VM that dev creates unless --no-demo.
const (
	devDemoName      = "demo"
	devDemoVcpus     = 1
	devDemoMemoryMiB = 128
	// devDemoTimeout bounds the wait for the demo VM to run: the first boot
	// includes building the default image, and VMs run under TCG here.
	devDemoTimeout = 2 * time.Minute
)

// devDemoPoll is how often the demo VM's state is read (a variable for
// tests).
var devDemoPoll = 500 * time.Millisecond

func newDevCommand() *cobra.Command {
	var (
		cfg    devConfig
		noDemo bool
	)
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster on loopback in the foreground",
		Long: `Run a local cluster for development: each node is a child process running
"blixard node" with its own data directory under --data-dir and its log in
<data-dir>/n<ID>/node.log. Node 1 bootstraps, the others join it. dev prints
the export lines that point other commands at the cluster and waits until
every node is a voter.

The cluster is secure, as a real one is: node 1 makes the cluster's CA and
the first admin token, which dev copies to <data-dir>/ca.crt and
<data-dir>/admin.token (mode 0600); with the admin token it makes a join
token ("blixard dev", an hour) for the other nodes. The export lines set
BLIXARD_ADDR, BLIXARD_CA and BLIXARD_TOKEN (the admin token); commands run
from the same directory with the default --data-dir find
./.blixard-dev/ca.crt without BLIXARD_CA. With --insecure every node runs
with --insecure instead (plaintext, no tokens) and the exports set
BLIXARD_INSECURE=1.

Then, unless --no-demo, it creates the VM "demo" (1 vCPU, 128 MiB, restart
on-failure; left alone if it exists already), waits up to 2 minutes for it
to run, showing its progress, and prints the cluster's status and its VMs
as "cluster status" and "vm list" would. The node that took the request
(the leader) boots it as a QEMU microVM, with KVM if a probe VM boots with
it, else with TCG software emulation; the first boot also builds the
default image. "blixard vm logs demo" shows its console. If the demo VM
fails, dev prints why and the end of its console, and the cluster keeps
running. With --no-demo it prints the cluster's status at once.

Node i serves Prometheus metrics on http://<host>:<metrics-base-port + i - 1>/metrics
(--metrics-base-port 0: none) and the web dashboard on
http://<host>:<http-base-port + i - 1>/ (--http-base-port 0: none); sign in
there with the admin token, or a viewer token, to read consoles kept on
other nodes.

dev runs until Ctrl-C, which stops every node. Run it again with the same
--data-dir (and the same --insecure or not) and the cluster comes back from
its disks: nodes that hold their certificates need no join token.`,
		Example: `  blixard dev
  blixard dev --nodes 5 --data-dir /tmp/blixard-dev --no-demo
  # in another shell, paste the export lines dev printed:
  export BLIXARD_ADDR=127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
  export BLIXARD_CA=$PWD/.blixard-dev/ca.crt
  export BLIXARD_TOKEN=$(cat .blixard-dev/admin.token)
  blixard cluster status
  blixard vm logs demo -f

  # Plaintext, no tokens
  blixard dev --insecure
  BLIXARD_INSECURE=1 blixard vm list`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.count < 1 || cfg.count > 9 {
				return usageErrorf("--nodes: %d is not between 1 and 9", cfg.count)
			}
			if err := cfg.checkPorts(); err != nil {
				return err
			}
			if err := cfg.portsFree(); err != nil {
				return err
			}
			cfg.demo = !noDemo
			return runDev(cmd.Context(), cmd.OutOrStdout(), progressFor(cmd), cfg)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.count, "nodes", 3, "how many nodes")
	f.StringVar(&cfg.dataDir, "data-dir", ".blixard-dev", "`directory` that holds every node's data directory and log")
	f.StringVar(&cfg.host, "host", "127.0.0.1", "loopback `address` the nodes listen on")
	f.IntVar(&cfg.basePort, "base-port", 7001, "node i listens on base-port + i - 1")
	f.BoolVar(&noDemo, "no-demo", false, "do not create and boot the demo VM")
	f.BoolVar(&cfg.insecure, "insecure", false, "run every node with --insecure: plaintext, no TLS, no tokens")
	f.IntVar(&cfg.metricsPort, "metrics-base-port", 9101, "node i serves Prometheus metrics on host:metrics-base-port + i - 1 (0: none)")
	f.IntVar(&cfg.httpPort, "http-base-port", 8081, "node i serves the web dashboard on host:http-base-port + i - 1 (0: none)")
	return cmd
}

// devConfig is what one dev run was asked for.
type devConfig struct {
	count    int
	dataDir  string
	host     string
	basePort int
	demo     bool
	insecure bool
	// metricsPort is node 1's metrics port; 0 serves none.
	metricsPort int
	// httpPort is node 1's dashboard port; 0 serves none.
	httpPort int
}

// portRange is one of dev's port flags: count ports from base (0: off).
type portRange struct {
	flag string
	base int
}

func (c devConfig) portRanges() []portRange {
	return []portRange{{"--base-port", c.basePort}, {"--metrics-base-port", c.metricsPort}, {"--http-base-port", c.httpPort}}
}

// checkPorts checks that each port range fits below 65536 and that no two
// overlap.
func (c devConfig) checkPorts() error {
	if c.basePort < 1 {
		return usageErrorf("--base-port: %d is not a port", c.basePort)
	}
	ranges := c.portRanges()
	for i, r := range ranges {
		if r.base < 0 || r.base+c.count-1 > 65535 {
			return usageErrorf("%s: %d leaves no room for %d nodes", r.flag, r.base, c.count)
		}
		for _, o := range ranges[:i] {
			if r.base > 0 && o.base > 0 && r.base < o.base+c.count && o.base < r.base+c.count {
				return usageErrorf("%s %d and %s %d overlap: %d nodes need %d ports from each", o.flag, o.base, r.flag, r.base, c.count, c.count)
			}
		}
	}
	return nil
}

// portsFree checks, before any node starts, that every port dev's nodes
// will listen on is free, so a port in use says which flag to change
// instead of a node failing to start.
func (c devConfig) portsFree() error {
	for _, r := range c.portRanges() {
		if r.base == 0 {
			continue
		}
		for i := range c.count {
			addr := net.JoinHostPort(c.host, strconv.Itoa(r.base+i))
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				hint := "give " + r.flag + " another port"
				if r.flag != "--base-port" {
					hint += ", or 0 to serve none"
				}
				return fmt.Errorf("%s is in use (is another dev cluster running?): %s: %w", addr, hint, err)
			}
			_ = lis.Close()
		}
	}
	return nil
}

type devNode struct {
	id   uint64
	addr string
	dir  string // its data directory
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

// runDev runs the dev cluster: its results (the export lines, the
// cluster's status) go to out, its progress and notes to pc.
func runDev(ctx context.Context, out io.Writer, pc progressConfig, cfg devConfig) error {
	errOut := pc.w
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the blixard binary: %w", err)
	}
	if err := os.MkdirAll(cfg.dataDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", cfg.dataDir, err)
	}
	var all []*devNode
	var addrs, dirs []string
	for i := 1; i <= cfg.count; i++ {
		addrs = append(addrs, fmt.Sprintf("%s:%d", cfg.host, cfg.basePort+i-1))
		dirs = append(dirs, filepath.Join(cfg.dataDir, fmt.Sprintf("n%d", i)))
	}
	defer func() {
		stopDev(errOut, all)
		stopDevVMs(errOut, dirs)
	}()
	// start runs node i (from 1) with extra arguments and, if joinToken is
	// set, that join token in its environment (not on its command line,
	// where other users of the machine could read it).
	start := func(i int, joinToken string, extra ...string) error {
		args := []string{"node", "--id", strconv.Itoa(i), "--listen", addrs[i-1], "--data-dir", dirs[i-1]}
		if cfg.insecure {
			args = append(args, "--insecure")
		}
		metrics := ""
		if cfg.metricsPort > 0 {
			metrics = fmt.Sprintf("%s:%d", cfg.host, cfg.metricsPort+i-1)
			args = append(args, "--metrics-listen", metrics)
		}
		web := ""
		if cfg.httpPort > 0 {
			web = fmt.Sprintf("%s:%d", cfg.host, cfg.httpPort+i-1)
			args = append(args, "--http-listen", web)
		}
		n, err := startDevNode(exe, uint64(i), addrs[i-1], dirs[i-1], append(args, extra...), devNodeEnv(joinToken))
		if err != nil {
			return err
		}
		all = append(all, n)
		served := []string{"log: " + n.log.Name()}
		if metrics != "" {
			served = append(served, "metrics: http://"+metrics+"/metrics")
		}
		if web != "" {
			served = append(served, "dashboard: http://"+web+"/")
		}
		fmt.Fprintf(errOut, "started node %d on %s (%s)\n", i, addrs[i-1], strings.Join(served, "; "))
		return nil
	}

	if err := start(1, ""); err != nil {
		return err
	}
	access := devAccess{addrs: addrs, insecure: true}
	if cfg.insecure {
		for i := 2; i <= cfg.count; i++ {
			if err := start(i, "", "--join", addrs[0]); err != nil {
				return err
			}
		}
	} else {
		if access, err = waitForBootstrap(ctx, pc, all[0], cfg.dataDir, addrs); err != nil {
			return err
		}
		c, err := access.client(ctx)
		if err != nil {
			return err
		}
		var joinToken string
		if devNeedJoin(dirs[1:]) {
			joinToken, err = createDevJoinToken(ctx, pc, c, all[0])
		}
		c.Close()
		if err != nil {
			return err
		}
		for i := 2; i <= cfg.count; i++ {
			if devHasCert(dirs[i-1]) {
				// It joined on an earlier run and restarts from its data
				// directory alone.
				err = start(i, "")
			} else {
				err = start(i, joinToken, "--join", addrs[0])
			}
			if err != nil {
				return err
			}
		}
	}
	for _, line := range access.exports() {
		fmt.Fprintln(out, line)
	}

	c, err := access.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	status, err := waitForVoters(ctx, pc, c, all, cfg.count)
	if err != nil {
		return err
	}
	if !cfg.demo {
		tw := newTable(out)
		clusterStatusTable(tw, status)
		if err := tw.Flush(); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(errOut, "cluster formed: leader %d, %d voters\n", status.GetLeaderId(), cfg.count)
		if show, running := runDevDemo(ctx, pc, c, all); show {
			// As "cluster status" and "vm list" print them.
			for _, args := range [][]string{{"cluster", "status"}, {"vm", "list"}} {
				if !devShow(ctx, out, errOut, access, args...) {
					break
				}
			}
			if running {
				fmt.Fprintf(errOut, "VM %s's console: blixard vm logs %s -f\n", devDemoName, devDemoName)
			}
		}
	}
	fmt.Fprintf(errOut, "cluster is up; Ctrl-C stops it\n")
	return waitDev(ctx, all)
}

// runDevDemo creates the demo VM (or finds it from an earlier run) and waits
// until it runs, showing its state as progress (and the build of the
// default image on its node, which its first boot waits for), until it
// fails, stops, devDemoTimeout passes, a node exits or ctx ends. What went
// wrong is printed, not returned: the cluster runs on either way. It
// reports whether the cluster's state is worth showing (not after ctx
// ended or a node exited: waitDev says which) and whether the VM runs.
func runDevDemo(ctx context.Context, pc progressConfig, c *client.Client, all []*devNode) (show, running bool) {
	errOut := pc.w
	ctx, cancel := context.WithTimeout(ctx, devDemoTimeout)
	defer cancel()
	fmt.Fprintf(errOut, "creating VM %s (%d vCPU, %d MiB, restart on-failure; --no-demo skips this)\n",
		devDemoName, devDemoVcpus, devDemoMemoryMiB)
	resp, err := c.CreateVm(ctx, &apiv1.CreateVmRequest{Name: devDemoName, Start: true, Spec: &apiv1.VmSpec{
		Vcpus: devDemoVcpus, MemoryMib: devDemoMemoryMiB, RestartPolicy: apiv1.RestartPolicy_RESTART_POLICY_ON_FAILURE,
	}})
	v := resp.GetVm()
	switch {
	case client.ErrorOf(err).GetCode() == apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
		got, gerr := c.GetVm(ctx, &apiv1.GetVmRequest{Name: devDemoName})
		if gerr != nil {
			return devDemoGaveUp(ctx, errOut, fmt.Errorf("read VM %s: %w", devDemoName, gerr)), false
		}
		v = got.GetVm()
		fmt.Fprintf(errOut, "VM %s exists already (from an earlier run)\n", devDemoName)
		if v.GetDesiredState() != apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING {
			fmt.Fprintf(errOut, "VM %s is wanted %s; 'blixard vm start %s' starts it\n",
				devDemoName, enumText(v.GetDesiredState()), devDemoName)
			return true, false
		}
	case err != nil:
		return devDemoGaveUp(ctx, errOut, fmt.Errorf("create VM %s: %w", devDemoName, err)), false
	}
	p := pc.start("vm " + devDemoName)
	defer p.Done()
	var building uint64 // the node seen building the default image; 0: none
	for {
		p.Update(enumText(v.GetState()), v.GetReason())
		building = noteDevImage(p, all, v, building)
		switch v.GetState() {
		case apiv1.VmState_VM_STATE_RUNNING, apiv1.VmState_VM_STATE_FAILED, apiv1.VmState_VM_STATE_STOPPED:
			p.Done() // before the lines that say how it ended
		}
		switch v.GetState() {
		case apiv1.VmState_VM_STATE_RUNNING:
			fmt.Fprintf(errOut, "VM %s is running on node %d\n", devDemoName, v.GetNodeId())
			return true, true
		case apiv1.VmState_VM_STATE_FAILED:
			fmt.Fprintf(errOut, "VM %s failed: %s\n", devDemoName, orDash(v.GetReason()))
			_ = writeConsoleTail(errOut, v)
			fmt.Fprintf(errOut, "its restart policy (on-failure) boots it again after a back-off; see 'blixard vm status %s' and 'blixard vm logs %s'\n",
				devDemoName, devDemoName)
			return true, false
		case apiv1.VmState_VM_STATE_STOPPED:
			fmt.Fprintf(errOut, "VM %s stopped on its own: %s; 'blixard vm logs %s' shows its console, 'blixard vm start %s' starts it again\n",
				devDemoName, orDash(v.GetReason()), devDemoName, devDemoName)
			return true, false
		}
		for _, n := range all {
			select {
			case err := <-n.done:
				n.done <- err
				return false, false
			default:
			}
		}
		select {
		case <-ctx.Done():
			p.Done()
			return devDemoGaveUp(ctx, errOut, fmt.Errorf("VM %s is still %s", devDemoName, withReason(enumText(v.GetState()), v.GetReason()))), false
		case <-time.After(devDemoPoll):
		}
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := c.GetVm(actx, &apiv1.GetVmRequest{Name: devDemoName})
		acancel()
		if err == nil {
			v = got.GetVm()
		} else if ctx.Err() == nil && client.ErrorOf(err).GetCode() == apiv1.ErrorCode_ERROR_CODE_NOT_FOUND {
			p.Done()
			fmt.Fprintf(errOut, "VM %s was deleted\n", devDemoName)
			return true, false
		}
		// Other errors: a leader change, a slow node; ask again.
	}
}

// devImageBuilt reports whether the node whose data directory is nodeDir
// holds the default image (a variable for tests).
var devImageBuilt = func(nodeDir string) bool {
	_, err := image.Load(nodeDir, image.DefaultName)
	return err == nil
}

// noteDevImage notes, as progress of the demo VM v, that its node builds
// the default image (the VM stays scheduled meanwhile: a node builds it
// before the VM's first boot) and when the image is there. building is the
// node already noted as building it (0: none); it returns the new one.
func noteDevImage(p *progress, all []*devNode, v *apiv1.Vm, building uint64) uint64 {
	scheduled := v.GetState() == apiv1.VmState_VM_STATE_SCHEDULED
	if img := v.GetSpec().GetImage(); (img != "" && img != image.DefaultName) || (!scheduled && building == 0) {
		return building
	}
	var dir string
	for _, n := range all {
		if n.id == v.GetNodeId() {
			dir = n.dir
		}
	}
	if dir == "" {
		return building
	}
	switch built := devImageBuilt(dir); {
	case !built && scheduled && building != v.GetNodeId():
		p.Note("node %d is building image %s for the VM's first boot", v.GetNodeId(), image.DefaultName)
		return v.GetNodeId()
	case built && building == v.GetNodeId():
		p.Note("image %s built on node %d", image.DefaultName, building)
		return 0
	}
	return building
}

// devDemoGaveUp prints why the demo wait ended early, unless the user
// stopped dev (the parent context ended). It reports whether the cluster is
// worth showing.
func devDemoGaveUp(ctx context.Context, errOut io.Writer, err error) bool {
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return false
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		fmt.Fprintf(errOut, "demo: %s after %s; the cluster runs on: see 'blixard vm status %s' and 'blixard vm logs %s'\n",
			oneLine(err.Error()), devDemoTimeout, devDemoName, devDemoName)
		return true
	}
	fmt.Fprintf(errOut, "demo: %s; the cluster runs on\n", oneLine(err.Error()))
	return true
}

// devShow runs the blixard command line args against the dev cluster, as a
// user would in another shell, and reports whether it succeeded (a failure
// is printed as a note).
func devShow(ctx context.Context, out, errOut io.Writer, access devAccess, args ...string) bool {
	root := NewRootCommand()
	root.SetArgs(append(append(access.flags(), "--output", "table"), args...))
	root.SetOut(out)
	root.SetErr(errOut)
	fmt.Fprintf(out, "\n$ blixard %s\n", strings.Join(args, " "))
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		fmt.Fprintf(errOut, "blixard %s: %s\n", strings.Join(args, " "), strings.TrimPrefix(errorLine(cmd, err), "error: "))
		return false
	}
	return true
}

// startDevNode starts "blixard node" as a child process, logging to
// dir/node.log, with env as its environment (nil: dev's own).
func startDevNode(exe string, id uint64, addr, dir string, args, env []string) (*devNode, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	// 0600: node 1 prints the first admin token to it.
	logf, err := os.OpenFile(filepath.Join(dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open node %d's log: %w", id, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: the terminal's Ctrl-C reaches dev, which stops
	// the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start node %d: %w", id, err)
	}
	n := &devNode{id: id, addr: addr, dir: dir, cmd: cmd, log: logf, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	return n, nil
}

// waitForVoters polls the cluster until it has a leader and count voters,
// showing progress, or a node dies, or the wait times out.
func waitForVoters(ctx context.Context, pc progressConfig, c *client.Client, all []*devNode, count int) (*apiv1.GetClusterStatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, devFormTimeout)
	defer cancel()
	// The caller says how it ended: "cluster formed", or the error.
	p := pc.start(fmt.Sprintf("waiting for a leader and %d voters", count))
	defer p.Clear()
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
		var seen string
		switch {
		case err != nil:
			seen = "no answer yet"
		case st.GetLeaderId() == 0:
			seen = "no leader yet"
		default:
			if voters == count {
				return st, nil
			}
			seen = fmt.Sprintf("leader %d, %d voters so far", st.GetLeaderId(), voters)
		}
		p.Update(seen, "")
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("the cluster did not form within %s (%s); see the node logs", devFormTimeout, seen)
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

// stopDevVMs ends the VMs the dev cluster's nodes left running: their
// supervisors and QEMUs outlive a node by design, and name its data
// directory (one of nodeDirs) on their command lines. A later dev run on
// the same directory finds them ended, and their restart policies decide.
// Only the node directories are looked for, not --data-dir itself, which
// the command line of whatever runs dev (a timeout, a script) may name.
func stopDevVMs(errOut io.Writer, nodeDirs []string) {
	var killed int
	for _, dir := range nodeDirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		for _, pid := range vmm.ProcessesNaming(abs) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	if killed > 0 {
		fmt.Fprintf(errOut, "stopped %d VM processes (supervisors and QEMU)\n", killed)
	}
}
