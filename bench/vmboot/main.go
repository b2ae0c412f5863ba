package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/bench/hostinfo"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/guest/wire"
	"github.com/blixard/blixard/internal/image"
	"github.com/blixard/blixard/internal/vmm"
)

const (
	// qemuBinary is the hypervisor, looked up on PATH as the node does.
	qemuBinary = "qemu-system-x86_64"
	// agentName is the guest agent's binary, beside blixard.
	agentName = "blixard-agent"
	// tcgTBSizeMiB is vmm's bound on QEMU's translated-code cache.
	tcgTBSizeMiB = 64
	// stopGrace is how long the node gets after SIGTERM before SIGKILL.
	stopGrace = 30 * time.Second
	// pollEvery is how often vmboot looks at processes and the cluster.
	pollEvery = 50 * time.Millisecond
	// consoleTail is how many console lines a failed bare boot shows.
	consoleTail = 30
)

type options struct {
	runs    int
	memory  uint64
	blixard string
	keep    bool
	timeout time.Duration
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmboot: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "vmboot: %v\n", err)
		return 1
	}
	return 0
}

// parseFlags reads the command line; usage and flag errors go to out.
func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("vmboot", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&o.runs, "runs", 20, "measured `runs` of each of the three measurements (after one warm-up round)")
	fs.Uint64Var(&o.memory, "memory", 128, "guest memory in `MiB` of every VM and task (and of the bare boot)")
	fs.StringVar(&o.blixard, "blixard", "./bin/blixard", "`path` to the blixard binary; blixard-agent must be beside it (make build)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (node data and log) at the end")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "deadline of every wait (a boot, a VM's start or deletion, a task, the node's start)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/vmboot [flags]\n\n"+
			"Measures bare QEMU boot, CreateVm→RUNNING and SubmitTask→result latency\n"+
			"on a 1-node Blixard cluster it starts itself.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.runs < 1:
		return o, errors.New("-runs must be at least 1")
	case o.memory < image.DefaultMinMemoryMiB:
		return o, fmt.Errorf("-memory %d is below the default image's minimum of %d MiB", o.memory, image.DefaultMinMemoryMiB)
	case o.timeout <= 0:
		return o, errors.New("-timeout must be positive")
	case o.blixard == "":
		return o, errors.New("-blixard must name the blixard binary")
	}
	return o, nil
}

// bencher holds what the measurements share.
type bencher struct {
	o       options
	dir     string // the temporary directory: everything vmboot makes
	nodeDir string // the node's data directory, in dir
	qemu    string // QEMU's path
	caps    qemuCaps
	node    *nodeProc
	cl      *client.Client
	// Set once the warm-up VM has run.
	img      *image.Image
	accel    string
	bareArgs []string
}

// bench runs everything. All it starts is stopped, and the temporary
// directory removed (unless --keep), before it returns.
func bench(ctx context.Context, o options) (err error) {
	bin, err := filepath.Abs(o.blixard)
	if err != nil {
		return err
	}
	if err := regularFile(bin); err != nil {
		return fmt.Errorf("-blixard: %w (build it with `make build`)", err)
	}
	if err := regularFile(filepath.Join(filepath.Dir(bin), agentName)); err != nil {
		return fmt.Errorf("the guest agent must be beside blixard: %w (`make build` puts both in bin/)", err)
	}
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return fmt.Errorf("%w (install the qemu-system-x86 package)", err)
	}
	caps, err := detectCaps(ctx, qemu)
	if err != nil {
		return err
	}
	m := describeMachine(ctx, qemu)

	dir, err := os.MkdirTemp("", "vmboot-")
	if err != nil {
		return err
	}
	b := &bencher{o: o, dir: dir, nodeDir: filepath.Join(dir, "n1"), qemu: qemu, caps: caps}
	defer func() {
		if err != nil && ctx.Err() == nil && b.node != nil {
			tailFile(os.Stderr, b.node.logPath, 25)
		}
		b.cleanup(os.Stderr)
	}()

	fmt.Printf("machine: %d CPUs, %s; %s\n", m.cpus, m.model, m.qemuVersion)
	fmt.Printf("data:    %s\n", dir)
	fmt.Printf("load avg before: %s\n", hostinfo.LoadAvg())

	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if b.node, err = startNode(bin, addr, b.nodeDir, filepath.Join(dir, "node.log")); err != nil {
		return err
	}
	if b.cl, err = client.New(ctx, client.Options{Addrs: []string{addr}, Timeout: 10 * time.Second, MaxAttempts: 5, BackoffInitial: 50 * time.Millisecond}); err != nil {
		return err
	}
	if err := b.waitNodeReady(ctx); err != nil {
		return failed(ctx, "the node's start", err)
	}
	fmt.Printf("node:    1 node on %s (log %s)\n", addr, b.node.logPath)

	// The warm-up round: create first (the node builds the default image,
	// and vmboot learns the orchestrator's QEMU command line), then bare,
	// then task. None of it counts.
	fmt.Println("warm-up round (not counted): create→running, then bare boot, then task")
	cw, err := b.createRun(ctx, "warmup", true)
	if err != nil {
		return failed(ctx, "warm-up create→running", err)
	}
	bw, err := b.bareRun(ctx)
	if err != nil {
		return failed(ctx, "warm-up bare boot", err)
	}
	tw, err := b.taskRun(ctx)
	if err != nil {
		return failed(ctx, "warm-up task", err)
	}
	fmt.Printf("  warm-up: create→running %s (includes building the default image), bare %s, task %s\n", ms(cw), ms(bw), ms(tw))
	fmt.Printf("bare QEMU: %s %s\n", b.qemu, strings.Join(quoteArgs(b.bareArgs), " "))

	fmt.Printf("%d rounds, each: bare boot, create→running, task submit→result (interleaved, so background load affects all three alike)\n", o.runs)
	var bare, create, task []time.Duration
	for i := 1; i <= o.runs; i++ {
		d, err := b.bareRun(ctx)
		if err != nil {
			return failed(ctx, fmt.Sprintf("round %d, bare boot", i), err)
		}
		bare = append(bare, d)
		if d, err = b.createRun(ctx, fmt.Sprintf("r%d", i), false); err != nil {
			return failed(ctx, fmt.Sprintf("round %d, create→running", i), err)
		}
		create = append(create, d)
		if d, err = b.taskRun(ctx); err != nil {
			return failed(ctx, fmt.Sprintf("round %d, task", i), err)
		}
		task = append(task, d)
		fmt.Printf("  round %*d/%d: bare %s, create→running %s, task %s\n", len(strconv.Itoa(o.runs)), i, o.runs, ms(bare[i-1]), ms(create[i-1]), ms(d))
	}
	fmt.Printf("load avg after: %s\n\n", hostinfo.LoadAvg())

	m.accel, m.guestKernel = b.accel, b.img.KernelRelease
	printReport(os.Stdout, o, m, []row{
		{"Bare QEMU: process start → agent ready frame", summarize(bare)},
		{"CreateVm (start) → RUNNING", summarize(create)},
		{"SubmitTask `sh -c 'echo hello'` → SUCCEEDED, output \"hello\\n\"", summarize(task)},
	})
	return nil
}

// failed names what failed, or says that vmboot was interrupted (Ctrl-C
// or SIGTERM): then err is only a consequence.
func failed(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted during %s", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ---- the node ----

type nodeProc struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited
	err     error         // Wait's result, read after done
}

func (n *nodeProc) exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func startNode(bin, addr, dataDir, logPath string) (*nodeProc, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	// --insecure: loopback only; the figures are about VMs, not TLS.
	cmd := exec.Command(bin, "node", "--id", "1", "--listen", addr, "--data-dir", dataDir, "--insecure")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: Ctrl-C reaches vmboot only, which stops
		// the node itself.
		Setpgid: true,
		// A backstop should vmboot be killed.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s node: %w", bin, err)
	}
	n := &nodeProc{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { n.err = cmd.Wait(); close(n.done) }()
	return n, nil
}

// alive returns an error if the node has exited.
func (b *bencher) alive() error {
	if b.node.exited() {
		return fmt.Errorf("the node exited (%v); its log is %s", b.node.err, b.node.logPath)
	}
	return nil
}

// waitNodeReady waits until the node leads and has registered itself ready.
func (b *bencher) waitNodeReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	last := "no answer yet"
	for {
		if err := b.alive(); err != nil {
			return err
		}
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := b.cl.GetClusterStatus(actx, &apiv1.GetClusterStatusRequest{Stale: true})
		acancel()
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("leader %d", st.GetLeaderId())
			for _, n := range st.GetNodes() {
				if n.GetId() == 1 {
					last += ", node 1 " + n.GetStatus().String()
					if st.GetLeaderId() == 1 && n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the node is not a ready leader within %s (last: %s)", b.o.timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cleanup stops the node, kills what names the directory and removes it.
func (b *bencher) cleanup(w io.Writer) {
	if b.cl != nil {
		_ = b.cl.Close()
	}
	if n := b.node; n != nil && !n.exited() {
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(stopGrace):
			fmt.Fprintf(w, "the node did not stop within %s of SIGTERM; killing it\n", stopGrace)
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
	if pids := killNaming(b.dir, stopGrace); len(pids) > 0 {
		fmt.Fprintf(w, "processes %v naming %s survived SIGKILL\n", pids, b.dir)
	}
	if b.o.keep {
		fmt.Fprintf(w, "kept %s (node log: node.log, node data: n1/)\n", b.dir)
		return
	}
	if err := os.RemoveAll(b.dir); err != nil {
		fmt.Fprintf(w, "remove %s: %v\n", b.dir, err)
	}
}

// ---- create→running ----

// createRun creates VM name, started, and returns the time from the call
// until the VM is RUNNING; then it deletes the VM and waits until it is
// gone, its processes too. With learn, it also reads the orchestrator's
// QEMU command line while the VM runs and sets up the bare boot from it.
func (b *bencher) createRun(ctx context.Context, name string, learn bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	stream, err := b.cl.WatchVms(ctx, &apiv1.WatchVmsRequest{Name: name})
	if err != nil {
		return 0, fmt.Errorf("watch VM %s: %w", name, err)
	}
	events := make(chan *apiv1.VmWatchEvent, 64)
	var streamErr error
	go func() {
		defer close(events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				streamErr = err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				streamErr = ctx.Err()
				return
			}
		}
	}()
	next := func(what string) (*apiv1.VmWatchEvent, error) {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, fmt.Errorf("the watch of VM %s ended while waiting for it to be %s: %v", name, what, streamErr)
			}
			return ev, nil
		case <-ctx.Done():
			if err := b.alive(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("VM %s not %s within %s: %w", name, what, b.o.timeout, ctx.Err())
		}
	}

	start := time.Now()
	_, err = b.cl.CreateVm(ctx, &apiv1.CreateVmRequest{
		Name:  name,
		Spec:  &apiv1.VmSpec{Vcpus: 1, MemoryMib: b.o.memory},
		Start: true,
	})
	if err != nil {
		return 0, fmt.Errorf("CreateVm %s: %w", name, err)
	}
	var took time.Duration
	var last *apiv1.Vm
	for took == 0 {
		ev, err := next("running")
		if err != nil {
			if last != nil {
				err = fmt.Errorf("%w (last seen %s: %s)", err, last.GetState(), last.GetReason())
			}
			return 0, err
		}
		last = ev.GetVm()
		switch st := last.GetState(); {
		case ev.GetDeleted():
			return 0, fmt.Errorf("VM %s was deleted before it ran", name)
		case st == apiv1.VmState_VM_STATE_RUNNING:
			took = time.Since(start)
		case st == apiv1.VmState_VM_STATE_FAILED || st == apiv1.VmState_VM_STATE_STOPPED || st == apiv1.VmState_VM_STATE_LOST:
			return 0, fmt.Errorf("VM %s is %s instead of running: %s\n%s", name, st, last.GetReason(), last.GetConsoleTail())
		}
	}

	vmDir := filepath.Join(b.nodeDir, "vms", name)
	if learn {
		if err := b.learnQEMU(vmDir); err != nil {
			return 0, err
		}
	}

	if _, err := b.cl.DeleteVm(ctx, &apiv1.DeleteVmRequest{Name: name}); err != nil {
		return 0, fmt.Errorf("DeleteVm %s: %w", name, err)
	}
	for {
		ev, err := next("deleted")
		if err != nil {
			return 0, err
		}
		if ev.GetDeleted() {
			break
		}
	}
	cancel() // the watch
	return took, b.waitQuiet(ctx, vmDir, "VM "+name+"'s processes")
}

// learnQEMU reads the orchestrator's QEMU command line (the QEMU whose
// command line names vmDir), loads the image it boots, and sets up the
// bare boot's command line, checking that it agrees with the
// orchestrator's on everything that matters for the boot.
func (b *bencher) learnQEMU(vmDir string) error {
	var argv []string
	for _, pid := range vmm.ProcessesNaming(vmDir) {
		a := procArgs(pid)
		if len(a) > 0 && filepath.Base(a[0]) == qemuBinary {
			argv = a
			break
		}
	}
	if argv == nil {
		return fmt.Errorf("no %s process names %s while its VM runs", qemuBinary, vmDir)
	}
	img, err := image.Load(b.nodeDir, image.DefaultName)
	if err != nil {
		return fmt.Errorf("the node's default image: %w", err)
	}
	if b.o.memory < img.MinMemoryMiB {
		return fmt.Errorf("-memory %d is below the image's minimum of %d MiB", b.o.memory, img.MinMemoryMiB)
	}
	b.img = img
	orch := flagValues(argv[1:])
	b.accel = "tcg"
	if strings.HasPrefix(orch["-accel"], "kvm") {
		b.accel = "kvm"
	}
	if b.bareArgs, err = bareArgs(b.caps, b.accel, b.o.memory, img); err != nil {
		return err
	}
	mine := flagValues(b.bareArgs)
	var diffs []string
	for _, f := range []string{"-M", "-accel", "-cpu", "-smp", "-m", "-kernel", "-initrd", "-append"} {
		o, m := orch[f], mine[f]
		if f == "-append" {
			o, m = tscRE.ReplaceAllString(o, "tsc_early_khz=N"), tscRE.ReplaceAllString(m, "tsc_early_khz=N")
		}
		if o != m {
			diffs = append(diffs, fmt.Sprintf("%s %q (orchestrator) vs %q (bare)", f, orch[f], mine[f]))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the bare boot's QEMU command line differs from the orchestrator's: %s", strings.Join(diffs, "; "))
	}
	fmt.Printf("  the orchestrator's QEMU (%s): %s\n", b.accel, strings.Join(quoteArgs(argv[1:]), " "))
	fmt.Printf("  the bare boot matches it in -M, -accel, -cpu, -smp, -m, -kernel, -initrd and -append (tsc_early_khz's value aside)\n")
	return nil
}

var tscRE = regexp.MustCompile(`tsc_early_khz=\d+`)

// flagValues maps each "-flag value" pair of a QEMU command line to its
// value (the last one given).
func flagValues(args []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "-") && !strings.HasPrefix(args[i+1], "-") {
			m[args[i]] = args[i+1]
			i++
		}
	}
	return m
}

// ---- bare boot ----

// qemuCaps are what this QEMU's microvm machine supports, as vmm reads them.
type qemuCaps struct{ rtc, optionROMs bool }

func detectCaps(ctx context.Context, qemu string) (qemuCaps, error) {
	var c qemuCaps
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "-M", "microvm,help").CombinedOutput()
	if err != nil {
		return c, fmt.Errorf("%s -M microvm,help: %w: %s", qemu, err, bytes.TrimSpace(out))
	}
	seen := false
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "microvm-machine options"):
			seen = true
		case strings.HasPrefix(line, "rtc="):
			c.rtc = true
		case strings.HasPrefix(line, "x-option-roms="):
			c.optionROMs = true
		}
	}
	if !seen {
		return c, fmt.Errorf("%s has no microvm machine", qemu)
	}
	return c, nil
}

// bareArgs is vmm's qemuArgs for a 1-vCPU VM of memMiB on img under accel,
// but with the console on stdio, and without -S and QMP (nothing needs to
// attach before the guest runs).
func bareArgs(caps qemuCaps, accel string, memMiB uint64, img *image.Image) ([]string, error) {
	machine := "microvm"
	if caps.optionROMs {
		machine += ",x-option-roms=off"
	}
	if caps.rtc {
		machine += ",rtc=on"
	}
	cmdline := image.Cmdline
	args := []string{"-name", "vmboot-bare,debug-threads=on", "-M", machine}
	if accel == "kvm" {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg,tb-size="+strconv.Itoa(tcgTBSizeMiB))
		tcg, err := image.TCGArgs()
		if err != nil {
			return nil, fmt.Errorf("kernel arguments for TCG: %w", err)
		}
		cmdline += " " + tcg
	}
	return append(args,
		"-smp", "1",
		"-m", strconv.FormatUint(memMiB, 10)+"M",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", img.Kernel,
		"-initrd", img.Initrd,
		"-append", cmdline,
		"-serial", "stdio",
	), nil
}

// bareRun boots QEMU directly and returns the time from just before its
// start to the agent's ready frame; QEMU is then killed.
func (b *bencher) bareRun(ctx context.Context) (took time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	cmd := exec.Command(b.qemu, b.bareArgs...)
	cmd.Dir = b.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A pipe that stays open: QEMU's stdio chardev reads it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr := &lockedBuf{}
	cmd.Stderr = stderr
	console := &lines{max: consoleTail}

	type result struct {
		took  time.Duration
		ready wire.Ready
		err   error
	}
	ready := make(chan result, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", b.qemu, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := wire.NewReader(stdout)
		sent := false
		for {
			it, err := r.Next()
			if err != nil {
				if !sent {
					ready <- result{err: fmt.Errorf("the console ended before the ready frame: %w", err)}
				}
				return
			}
			if it.Text != nil {
				console.add(string(it.Text))
			}
			if !sent && it.Frame != nil && it.Frame.Kind == wire.KindReady {
				res := result{took: time.Since(start)}
				res.err = it.Frame.Decode(&res.ready)
				ready <- res
				sent = true
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { <-readDone; waited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-waited:
		case <-time.After(b.o.timeout):
			err = errors.Join(err, fmt.Errorf("QEMU %d did not exit after SIGKILL", cmd.Process.Pid))
		}
	}()

	select {
	case res := <-ready:
		if res.err != nil {
			return 0, fmt.Errorf("%w; QEMU stderr: %s; console:\n%s", res.err, strings.TrimSpace(stderr.String()), console.String())
		}
		if b.img.KernelRelease != "" && res.ready.Kernel != b.img.KernelRelease {
			return 0, fmt.Errorf("the agent reports kernel %q, the image %q", res.ready.Kernel, b.img.KernelRelease)
		}
		return res.took, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("no ready frame within %s (%v); QEMU stderr: %s; console:\n%s", b.o.timeout, ctx.Err(), strings.TrimSpace(stderr.String()), console.String())
	}
}

// ---- task submit→result ----

// taskRun submits `sh -c 'echo hello'` and returns the time from the call
// until the task has ended; it must have succeeded with output "hello\n".
// It then waits until the task's VM processes are gone.
func (b *bencher) taskRun(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.timeout)
	defer cancel()
	start := time.Now()
	resp, err := b.cl.SubmitTask(ctx, &apiv1.SubmitTaskRequest{Spec: &apiv1.TaskSpec{
		Command:   "sh",
		Args:      []string{"-c", "echo hello"},
		Resources: &apiv1.Resources{Vcpus: 1, MemoryMib: b.o.memory},
	}})
	if err != nil {
		return 0, fmt.Errorf("SubmitTask: %w", err)
	}
	id := resp.GetTask().GetId()
	stream, err := b.cl.WatchTask(ctx, &apiv1.WatchTaskRequest{Id: id})
	if err != nil {
		return 0, fmt.Errorf("watch task %d: %w", id, err)
	}
	var task *apiv1.Task
	for task == nil || !task.GetStatus().Ended() {
		ev, err := stream.Recv()
		if err != nil {
			if aerr := b.alive(); aerr != nil {
				return 0, aerr
			}
			if ctx.Err() != nil {
				err = fmt.Errorf("not ended within %s: %w", b.o.timeout, err)
			}
			return 0, fmt.Errorf("task %d (last seen %s): %w", id, task.GetStatus(), err)
		}
		task = ev.GetTask()
	}
	took := time.Since(start)
	res := task.GetResult()
	if task.GetStatus() != apiv1.TaskStatus_TASK_STATUS_SUCCEEDED || string(res.GetOutputTail()) != "hello\n" {
		return 0, fmt.Errorf("task %d ended %s (exit %d, error %q, reason %q) with output %q; want SUCCEEDED and \"hello\\n\"",
			id, task.GetStatus(), res.GetExitCode(), res.GetError(), task.GetReason(), res.GetOutputTail())
	}
	return took, b.waitQuiet(ctx, filepath.Join(b.nodeDir, "vms"), fmt.Sprintf("task %d's VM processes", id))
}

// waitQuiet waits until no process names dir: the next measurement starts
// with no VM left running.
func (b *bencher) waitQuiet(ctx context.Context, dir, what string) error {
	for {
		pids := vmm.ProcessesNaming(dir)
		if len(pids) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %v still run after %s", what, pids, b.o.timeout)
		case <-time.After(pollEvery):
		}
	}
}

// ---- statistics and the report ----

type stats struct {
	n                        int
	p50, p99, min, max, mean time.Duration
}

// summarize computes nearest-rank percentiles: p is the value at rank
// ceil(p/100 * n) of the sorted runs, so with fewer than 100 runs p99 is the
// max.
func summarize(d []time.Duration) stats {
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, v := range s {
		sum += v
	}
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return stats{n: len(s), p50: rank(50), p99: rank(99), min: s[0], max: s[len(s)-1], mean: sum / time.Duration(len(s))}
}

type row struct {
	name string
	s    stats
}

type machine struct {
	cpus        int
	model       string
	qemuVersion string
	accel       string
	guestKernel string
}

func printReport(w io.Writer, o options, m machine, rows []row) {
	accel := m.accel
	switch accel {
	case "kvm":
		accel = "KVM"
	case "tcg":
		accel = "TCG (no KVM: software emulation)"
	}
	fmt.Fprintf(w, "Machine: %d CPUs (runtime.NumCPU), %s; accel %s; %s; guest kernel %s.\n",
		m.cpus, m.model, accel, m.qemuVersion, m.guestKernel)
	fmt.Fprintf(w, "Each VM and task: 1 vCPU, %d MiB. %d runs of each, interleaved (one bare boot, one create, one task per round, so that background load affects all three alike), after one warm-up round that is not counted (in it the node builds the default guest image).\n\n", o.memory, o.runs)
	fmt.Fprintln(w, "| Measurement | Runs | p50 | p99 | min | max | mean |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", r.name, r.s.n, ms(r.s.p50), ms(r.s.p99), ms(r.s.min), ms(r.s.max), ms(r.s.mean))
	}
	fmt.Fprintln(w)
	if len(rows) >= 2 {
		bare, create := rows[0].s, rows[1].s
		fmt.Fprintf(w, "create→running / bare boot: p50 %.2f×, p99 %.2f×.\n", ratio(create.p50, bare.p50), ratio(create.p99, bare.p99))
	}
	if o.runs < 100 {
		fmt.Fprintf(w, "Percentiles are nearest rank; with %d runs p99 is the max.\n", o.runs)
	} else {
		fmt.Fprintln(w, "Percentiles are nearest rank.")
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + " ms"
}

func describeMachine(ctx context.Context, qemu string) machine {
	m := machine{cpus: runtime.NumCPU(), qemuVersion: qemuBinary + " (version unknown)"}
	m.model, _ = hostinfo.CPUModel()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, qemu, "--version").Output(); err == nil {
		if first, _, _ := strings.Cut(string(out), "\n"); strings.TrimSpace(first) != "" {
			m.qemuVersion = strings.TrimSpace(first)
		}
	}
	return m
}

// ---- processes and files ----

func regularFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}

// freeAddr is a loopback address whose port the kernel says is free.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// procArgs is a process's argv.
func procArgs(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// killNaming SIGKILLs every process naming dir until none is left or
// timeout passes; it returns those still alive then.
func killNaming(dir string, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		pids := vmm.ProcessesNaming(dir)
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(pollEvery)
	}
}

// tailFile prints the last n lines of path.
func tailFile(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	l := &lines{max: n}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l.add(sc.Text())
	}
	fmt.Fprintf(w, "--- last lines of the node's log (%s)\n%s\n", path, l.String())
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"'\\$") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}

// lines keeps the last max lines added.
type lines struct {
	mu  sync.Mutex
	max int
	l   []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, s)
	if len(l.l) > l.max {
		l.l = l.l[len(l.l)-l.max:]
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
