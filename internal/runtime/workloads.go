package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/guest/wire"
	"github.com/blixard/blixard/internal/image"
	"github.com/blixard/blixard/internal/state"
	"github.com/blixard/blixard/internal/vmm"
)

// taskInitrdFile is the name, in a task VM's directory, of the initramfs
// that carries the task.
const taskInitrdFile = "task-initrd.img"

// actionTimeout bounds one start, stop or remove of a VM.
const actionTimeout = 3 * time.Minute

// workloads carries the node agent's VMActions out through vmm, and its
// VMs' status changes back to the core as VMReports.
type workloads struct {
	n    *Node
	log  *slog.Logger
	mgr  *vmm.Manager
	opts image.BuildOptions

	// imageMu serialises image builds (the first VM builds the default);
	// checked are the images checked in this run, by name.
	imageMu sync.Mutex
	checked map[string]*image.Image

	// leaseMu guards lease, the latest fencing lease the core granted and
	// the renewer has not pushed to the supervisors yet; leaseKick wakes
	// the renewer.
	leaseMu   sync.Mutex
	lease     time.Time
	leaseKick chan struct{}

	mu sync.Mutex
	// queues run each VM's actions in order, one goroutine per VM while it
	// has actions.
	queues map[string][]core.VMAction
	// starting marks when this node took each VM's start, by name, for
	// the boot-time metric.
	starting map[string]startMark
	// notes are what the log last said of each VM, by name (vmlog.go); an
	// entry lives until the VM's files are removed.
	notes map[string]*vmNote
	wg    sync.WaitGroup
}

func newWorkloads(n *Node) (*workloads, error) {
	return &workloads{n: n, log: n.log, opts: image.BuildOptions{Agent: n.cfg.Agent, Logger: n.log},
		queues: map[string][]core.VMAction{}, checked: map[string]*image.Image{}, leaseKick: make(chan struct{}, 1),
		notes: map[string]*vmNote{}}, nil
}

// decideAccel settles KVM or TCG before the node registers, so that its
// features say "kvm" only when a probe VM really booted with it.
func (wl *workloads) decideAccel(ctx context.Context) error {
	cfg := &wl.n.cfg
	if cfg.Accel == "" {
		if _, err := os.Stat("/dev/kvm"); err != nil {
			cfg.Accel = vmm.AccelTCG
			wl.log.Warn("no /dev/kvm: VMs run under TCG, QEMU's software emulation (slower)", "err", err)
		} else {
			img, err := wl.image(ctx, state.DefaultImage)
			if err != nil {
				return fmt.Errorf("build the default image to probe KVM: %w", err)
			}
			// Probe logs its verdict.
			accel, err := vmm.Probe(ctx, cfg.QEMU, img.Kernel, img.Initrd, wl.log)
			if err != nil {
				return fmt.Errorf("probe KVM: %w", err)
			}
			cfg.Accel = accel
		}
	} else {
		wl.log.Info("VMs will run", "accel", cfg.Accel)
	}
	if cfg.Accel == vmm.AccelKVM && !slices.Contains(cfg.Capacity.GetFeatures(), "kvm") {
		cfg.Capacity.Features = append(slices.Clone(cfg.Capacity.GetFeatures()), "kvm")
		slices.Sort(cfg.Capacity.Features)
	}
	mgr, err := vmm.NewManager(vmm.Config{
		DataDir: cfg.DataDir, QEMU: cfg.QEMU, Supervisor: cfg.Supervisor, Accel: cfg.Accel, Logger: wl.log,
		Lease: cfg.Lease,
	})
	if err != nil {
		return fmt.Errorf("vm manager: %w", err)
	}
	wl.mgr = mgr
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// images are the images this node offers: those in its data directory,
// and the default image, which it builds the first time it needs it.
func (wl *workloads) images() []*apiv1.ImageInfo {
	byName := map[string]*apiv1.ImageInfo{
		state.DefaultImage: {Name: state.DefaultImage, MinMemoryMib: image.DefaultMinMemoryMiB},
	}
	imgs, err := image.List(wl.n.cfg.DataDir)
	if err != nil {
		wl.log.Warn("cannot list the images in the data directory", "err", err)
	}
	for _, img := range imgs {
		if state.ValidImageName(img.Name) {
			byName[img.Name] = &apiv1.ImageInfo{Name: img.Name, Digest: img.Digest, MinMemoryMib: img.MinMemoryMiB}
		}
	}
	var out []*apiv1.ImageInfo
	for _, name := range sortedNames(byName) {
		out = append(out, byName[name])
	}
	return out
}

// recover finds the VMs this node left running (or that ended while it was
// down) and tells the core, which adopts them.
func (wl *workloads) recover(ctx context.Context) []core.VMReport {
	statuses, err := wl.mgr.Recover(ctx)
	if err != nil {
		wl.log.Error("recovering VMs", "err", err)
	}
	var out []core.VMReport
	for _, st := range statuses {
		if st.State.Final() {
			// Ended while the node was down: watch logs how, as it
			// would have had the node been up.
			wl.log.Debug("found a VM from before the restart", "vm", st.Name, "generation", st.Generation, "state", st.State)
		} else {
			wl.log.Info("found a VM from before the restart", "vm", st.Name, "generation", st.Generation, "state", st.State, "qemu_pid", st.QEMUPid)
			wl.fateChanged(st) // said now: watch does not say it again
		}
		out = append(out, reportOf(st))
	}
	return out
}

// renewLease takes a lease the core was granted: VMs started from now on
// start with it at once, and the renewer extends the running VMs' leases
// to it in the background (each supervisor is a socket call away; the
// core's loop must not wait on them).
func (wl *workloads) renewLease(until time.Time) {
	wl.mgr.SetLease(until)
	wl.leaseMu.Lock()
	wl.lease = until
	wl.leaseMu.Unlock()
	select {
	case wl.leaseKick <- struct{}{}:
	default:
	}
}

// renewer pushes the latest lease to the supervisors until ctx ends. A
// supervisor it cannot reach keeps its older lease, and is tried again
// with the next one (the core renews every fifth of a lease). The log
// says when a VM's renewals start failing and when they work again.
func (wl *workloads) renewer(ctx context.Context) {
	failing := renewals{}
	live := func(name string) bool {
		st, ok := wl.mgr.Status(name)
		return ok && !st.State.Final()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-wl.leaseKick:
		}
		wl.leaseMu.Lock()
		until := wl.lease
		wl.leaseMu.Unlock()
		err := wl.mgr.Renew(ctx, until)
		if ctx.Err() != nil {
			return
		}
		failing.take(wl.log, renewFailures(err), live)
	}
}

// startMark is when a VM's start, of one generation, was taken.
type startMark struct {
	generation uint64
	at         time.Time
}

// markStart notes that a VM's start was taken now.
func (wl *workloads) markStart(name string, generation uint64) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if wl.starting == nil {
		wl.starting = map[string]startMark{}
	}
	wl.starting[name] = startMark{generation: generation, at: time.Now()}
}

// observeBoot records, once a started VM's guest is up (or it ended),
// how long its start took.
func (wl *workloads) observeBoot(st vmm.Status) {
	if st.State == vmm.StateStarting {
		return
	}
	wl.mu.Lock()
	m, ok := wl.starting[st.Name]
	if ok && m.generation == st.Generation {
		delete(wl.starting, st.Name)
	}
	wl.mu.Unlock()
	if ok && m.generation == st.Generation && st.State == vmm.StateRunning {
		wl.n.metrics.VMBootSeconds.Observe(time.Since(m.at).Seconds())
	}
}

// watch forwards every status change to the core until ctx ends.
func (wl *workloads) watch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case st, ok := <-wl.mgr.Events():
			if !ok {
				return
			}
			wl.observeBoot(st)
			if wl.fateChanged(st) && st.State != vmm.StateStarting {
				// Starting is what "starting VM" and vmm's "vm started" say.
				wl.log.Info("VM state changed", fateAttrs(st)...)
			}
			r := reportOf(st)
			wl.n.postWait(func() { wl.n.core.ReportVM(r) })
		}
	}
}

// reportOf turns a vmm status into the core's report.
func reportOf(st vmm.Status) core.VMReport {
	r := core.VMReport{Name: st.Name, Generation: st.Generation, Reason: st.Reason, ConsoleTail: st.ConsoleTail}
	switch st.State {
	case vmm.StateStarting:
		r.State = apiv1.VmState_VM_STATE_STARTING
	case vmm.StateRunning:
		r.State = apiv1.VmState_VM_STATE_RUNNING
	case vmm.StateStopped:
		r.State = apiv1.VmState_VM_STATE_STOPPED
	default:
		r.State = apiv1.VmState_VM_STATE_FAILED
	}
	if t := st.Task; t != nil {
		r.Task = &apiv1.TaskResult{ExitCode: int32(t.ExitCode), OutputTail: t.Output, Error: t.Error}
		if t.TimedOut {
			r.Task.Error = "timeout"
		}
		if !t.Started.IsZero() {
			r.Task.StartedUnixNano = t.Started.UnixNano()
		}
		if !t.Finished.IsZero() {
			r.Task.FinishedUnixNano = t.Finished.UnixNano()
		}
	}
	return r
}

// carry queues the actions of one Ready; each VM's run in order.
func (wl *workloads) carry(ctx context.Context, actions []core.VMAction) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	for _, a := range actions {
		q, busy := wl.queues[a.Name]
		wl.queues[a.Name] = append(q, a)
		if !busy {
			wl.wg.Add(1)
			go wl.run(ctx, a.Name)
		}
	}
}

func (wl *workloads) run(ctx context.Context, name string) {
	defer wl.wg.Done()
	for {
		wl.mu.Lock()
		q := wl.queues[name]
		if len(q) == 0 {
			delete(wl.queues, name)
			wl.mu.Unlock()
			return
		}
		a := q[0]
		wl.queues[name] = q[1:]
		wl.mu.Unlock()
		wl.do(ctx, a)
	}
}

func (wl *workloads) do(ctx context.Context, a core.VMAction) {
	log := wl.log.With("vm", a.Name, "generation", a.Generation)
	if a.Kind == core.StartVM {
		// A start under way finishes even if the node stops meanwhile:
		// cut short, it would kill the VM it was starting, which is meant
		// to outlive the node. It is bounded on its own.
		ctx = context.WithoutCancel(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	switch a.Kind {
	case core.StartVM:
		wl.markStart(a.Name, a.Generation)
		spec, err := wl.spec(ctx, a)
		if err == nil {
			log.Info("starting VM", "vcpus", spec.Vcpus, "memory_mib", spec.MemoryMiB)
			err = wl.mgr.Start(ctx, spec)
		}
		if errors.Is(err, vmm.ErrExists) {
			// Something this node did not recover runs under that name:
			// reporting a failure would start the VM again elsewhere
			// while it runs here. Left as it is, the VM shows as not
			// started, and the log says why.
			log.Error("VM not started: one of that name already runs on this node outside of its knowledge; stop it by hand", "err", err)
			return
		}
		if err != nil {
			log.Error("VM did not start", "err", err)
			r := core.VMReport{Name: a.Name, Generation: a.Generation, State: apiv1.VmState_VM_STATE_FAILED, Reason: "start: " + err.Error()}
			if st, ok := wl.mgr.Status(a.Name); ok && st.Generation == a.Generation && st.State.Final() {
				r = reportOf(st)
			}
			wl.n.postWait(func() { wl.n.core.ReportVM(r) })
		}
	case core.StopVM:
		// The agent asks again until the VM has stopped: the log says so
		// once per generation.
		first := wl.noteStop(a.Name, a.Generation, false)
		log.Log(ctx, levelIf(first, slog.LevelInfo), "stopping VM")
		err := wl.mgr.Stop(ctx, a.Name)
		if errors.Is(err, vmm.ErrNotFound) {
			r := core.VMReport{Name: a.Name, Generation: a.Generation, State: apiv1.VmState_VM_STATE_STOPPED, Reason: "not running on this node"}
			wl.n.postWait(func() { wl.n.core.ReportVM(r) })
			return
		}
		if err != nil {
			first := wl.noteStop(a.Name, a.Generation, true)
			log.Log(ctx, levelIf(first, slog.LevelError), "VM did not stop", "err", err)
		}
	case core.RemoveVM:
		// The agent has forgotten the VM: a removal that fails (its
		// supervisor still exiting) is tried again here, a few times,
		// unless something else for that name is queued behind it.
		for attempt, wait := 1, 2*time.Second; ; attempt, wait = attempt+1, 2*wait {
			err := wl.mgr.Remove(a.Name)
			if err == nil || errors.Is(err, vmm.ErrNotFound) {
				log.Info("removed the VM's files")
				wl.forget(a.Name)
				return
			}
			if attempt == 4 || wl.queued(a.Name) {
				log.Error("cannot remove the VM's files; they stay", "dir", wl.mgr.Dir(a.Name), "err", err)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// queued reports whether more actions wait for VM name.
func (wl *workloads) queued(name string) bool {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return len(wl.queues[name]) > 0
}

// spec makes the vmm spec of a StartVM: the image (built the first time),
// and for a task its own initramfs carrying the command.
func (wl *workloads) spec(ctx context.Context, a core.VMAction) (vmm.Spec, error) {
	spec := vmm.Spec{Name: a.Name, Generation: a.Generation}
	var imageName string
	switch {
	case a.Vm != nil:
		s := a.Vm.GetSpec()
		spec.Vcpus, spec.MemoryMiB, spec.Cmdline, imageName = s.GetVcpus(), s.GetMemoryMib(), s.GetKernelCmdline(), s.GetImage()
	case a.Task != nil:
		s := a.Task.GetSpec()
		spec.Vcpus, spec.MemoryMiB, imageName = s.GetResources().GetVcpus(), s.GetResources().GetMemoryMib(), s.GetImage()
		spec.Task = &wire.Run{Command: s.GetCommand(), Args: s.GetArgs(), Env: s.GetEnv(), TimeoutMillis: int64(s.GetTimeoutMs()), PoweroffAfter: true}
	default:
		return spec, errors.New("a start with neither a VM nor a task")
	}
	img, err := wl.image(ctx, state.ImageOf(imageName))
	if err != nil {
		return spec, err
	}
	spec.Kernel, spec.Initrd = img.Kernel, img.Initrd
	if wl.n.cfg.Accel == vmm.AccelTCG {
		// Under TCG the guest must take the host's TSC rate on trust, or
		// its boot may hang on a busy host (see image.TCGArgs).
		args, err := image.TCGArgs()
		if err != nil {
			return spec, fmt.Errorf("kernel arguments for TCG: %w", err)
		}
		spec.Cmdline = strings.TrimSpace(args + " " + spec.Cmdline)
	}
	if spec.Task != nil {
		task, err := json.Marshal(spec.Task)
		if err != nil {
			return spec, fmt.Errorf("encode the task: %w", err)
		}
		dir := wl.mgr.Dir(a.Name)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return spec, fmt.Errorf("make the VM's directory: %w", err)
		}
		initrd := filepath.Join(dir, taskInitrdFile)
		if err := image.WithFiles(img.Initrd, initrd, []image.File{{Path: "blixard/task.json", Mode: 0o644, Data: task}}); err != nil {
			return spec, fmt.Errorf("write the task's initramfs: %w", err)
		}
		spec.Initrd = initrd
	}
	return spec, nil
}

// image returns the image called name: checked (and built, for the
// default) once per run of the node, which hashes every byte of it, then
// from memory as long as its files are still there.
func (wl *workloads) image(ctx context.Context, name string) (*image.Image, error) {
	wl.imageMu.Lock()
	defer wl.imageMu.Unlock()
	if img, ok := wl.checked[name]; ok {
		if _, err := image.Load(wl.n.cfg.DataDir, name); err == nil {
			return img, nil
		}
		delete(wl.checked, name)
	}
	img, err := image.Ensure(ctx, wl.n.cfg.DataDir, name, wl.opts)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", name, err)
	}
	wl.checked[name] = img
	return img, nil
}

// consoleLog is the path of VM name's console log on this node.
func (wl *workloads) consoleLog(name string) (string, error) {
	if !state.ValidImageName(name) || strings.Contains(name, "..") {
		return "", fmt.Errorf("%q is not a VM name", name)
	}
	return wl.mgr.ConsolePath(name), nil
}

// stopAll stops every VM this node runs (a node removed from the
// cluster), each within the manager's own bounds, until ctx ends.
func (wl *workloads) stopAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), actionTimeout)
	defer cancel()
	for _, st := range wl.mgr.List() {
		if st.State.Final() {
			continue
		}
		wl.log.Info("stopping VM: this node was removed from the cluster", "vm", st.Name)
		if err := wl.mgr.Stop(ctx, st.Name); err != nil {
			wl.log.Error("VM did not stop", "vm", st.Name, "err", err)
		}
	}
}

// close waits for the actions under way and stops watching; the VMs run on.
func (wl *workloads) close() {
	wl.wg.Wait()
	_ = wl.mgr.Close()
}
