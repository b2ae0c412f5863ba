package vmm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config configures a Manager.
type Config struct {
	// DataDir is the node's data directory; VMs live in DataDir/vms/<name>/.
	DataDir string
	// QEMU is the QEMU binary, a path or a name looked up on PATH; default
	// DefaultQEMU.
	QEMU string
	// Supervisor is the argv prefix that runs a supervisor; the VM's
	// directory is appended as the last argument. Default: this executable
	// with "vmm supervise" (the blixard binary's hidden command). Tests
	// re-execute their test binary.
	Supervisor []string
	// Accel is "kvm", "tcg", or "" to decide with Probe at the first Start
	// (with that VM's kernel and initrd).
	Accel string
	// TCGCmdline is kernel command-line arguments added for VMs that run
	// under TCG, before Spec.Cmdline: "tsc_early_khz=<host TSC kHz>"
	// (image.TCGArgs). Under TCG the guest's TSC is the host's, and a guest
	// left to calibrate it against the emulated PIT hangs at boot when the
	// host is busy. Empty: nothing is added (the caller may put the same
	// arguments in Spec.Cmdline instead).
	TCGCmdline string
	// StopGrace is how long each stage of a stop waits (the agent's
	// poweroff, then QMP quit, then SIGKILL); default 5 s.
	StopGrace time.Duration
	// BootTimeout is how long a VM may take to send its ready frame;
	// default 60 s.
	BootTimeout time.Duration
	// Lease, when positive, makes every VM's supervisor hold a fencing
	// lease: a VM starts with this long a lease, and is killed (failed,
	// "lease expired") unless Renew extends it in time. 0: no fencing.
	Lease time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// CgroupRoot is where cgroup file systems are mounted; default
	// DefaultCgroupRoot.
	CgroupRoot string
}

// Defaults of Config.
const (
	DefaultStopGrace   = 5 * time.Second
	DefaultBootTimeout = 60 * time.Second
)

// supervisorStartTimeout bounds the wait for a new supervisor to answer:
// it answers once QEMU runs, after attaching (attachTimeout) and resuming
// (resumeTimeout) at worst.
const supervisorStartTimeout = attachTimeout + resumeTimeout + 10*time.Second

// supervisorExitTimeout bounds the wait for a supervisor to exit once its
// VM has ended (it still sends its last answers, within ctlRequestTimeout).
const supervisorExitTimeout = ctlRequestTimeout + time.Second

// Errors of the Manager.
var (
	// ErrNotFound: no VM of that name is known.
	ErrNotFound = errors.New("no such vm")
	// ErrExists: a VM of that name is running (or its supervisor is).
	ErrExists = errors.New("vm exists")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("vmm manager closed")
)

// Manager starts, stops and watches the VMs of one node. It is safe for
// concurrent use. VMs outlive it: Close stops watching, and a later Manager
// on the same DataDir adopts them with Recover.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	vmsDir  string
	events  *eventQueue
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	probeMu sync.Mutex
	// qemuPath, caps and accel are found at the first Start (under
	// probeMu); accel stays "" until then unless configured.
	qemuPath string
	caps     qemuCaps
	accel    string

	mu sync.Mutex
	// vms are the VMs this manager knows: started or recovered.
	vms map[string]*vmEntry
	// leaseUntil is the fencing lease last given to Renew, as a
	// CLOCK_MONOTONIC instant (0: none yet); a VM starts with it.
	leaseUntil int64
}

// vmEntry is one VM the manager knows.
type vmEntry struct {
	name, dir string
	// status is the latest status seen; guarded by Manager.mu.
	status Status
	// done is closed when status is final.
	done chan struct{}
	// answered: its supervisor has answered once (guarded by Manager.mu).
	// Until then its control socket may not exist yet, so Renew leaves it
	// alone: it runs on the lease its launch file carries, and Start hands
	// it any newer lease once it answers.
	answered bool
}

// NewManager returns a Manager for the node whose data directory is
// cfg.DataDir. It starts no process: QEMU is looked for at the first Start.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("vmm: no data directory")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("vmm: data directory: %w", err)
	}
	cfg.DataDir = dataDir
	if cfg.QEMU == "" {
		cfg.QEMU = DefaultQEMU
	}
	if len(cfg.Supervisor) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("vmm: find this executable to run supervisors: %w", err)
		}
		cfg.Supervisor = []string{exe, "vmm", "supervise"}
	}
	switch cfg.Accel {
	case "", AccelKVM, AccelTCG:
	default:
		return nil, fmt.Errorf("vmm: accel %q is not kvm, tcg or empty", cfg.Accel)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = DefaultBootTimeout
	}
	if cfg.Lease < 0 {
		return nil, fmt.Errorf("vmm: negative lease %s", cfg.Lease)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = DefaultCgroupRoot
	}
	vmsDir := filepath.Join(dataDir, "vms")
	if err := os.MkdirAll(vmsDir, 0o750); err != nil {
		return nil, fmt.Errorf("vmm: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "vmm"),
		vmsDir: vmsDir,
		events: newEventQueue(),
		ctx:    ctx,
		cancel: cancel,
		accel:  cfg.Accel,
		vms:    map[string]*vmEntry{},
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.events.run(ctx)
	}()
	return m, nil
}

// Dir is the directory of the VM name: DataDir/vms/<name>.
func (m *Manager) Dir(name string) string { return filepath.Join(m.vmsDir, name) }

// ConsolePath is the VM's whole console output, DataDir/vms/<name>/console.log.
func (m *Manager) ConsolePath(name string) string {
	return filepath.Join(m.Dir(name), consoleLog)
}

// Events delivers every status change of every VM this manager knows
// (started or recovered). It never blocks the manager: at most one status
// per VM waits to be read, the latest, so a reader that falls behind skips
// intermediate statuses of a VM but always gets its latest one (see
// eventQueue). The channel is closed by Close.
func (m *Manager) Events() <-chan Status { return m.events.out }

// Status returns the latest status of the VM name, if the manager knows it.
// List returns the latest status of every VM this manager knows (started
// or recovered), sorted by name.
func (m *Manager) List() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Status, 0, len(m.vms))
	for _, name := range slices.Sorted(maps.Keys(m.vms)) {
		out = append(out, m.vms[name].status)
	}
	return out
}

func (m *Manager) Status(name string) (Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.vms[name]
	if !ok {
		return Status{}, false
	}
	return e.status, true
}

// Wait returns the VM's final status once it is stopped or failed, or
// ctx's error first.
func (m *Manager) Wait(ctx context.Context, name string) (Status, error) {
	m.mu.Lock()
	e, ok := m.vms[name]
	m.mu.Unlock()
	if !ok {
		return Status{}, fmt.Errorf("wait for vm %s: %w", name, ErrNotFound)
	}
	select {
	case <-e.done:
		m.mu.Lock()
		defer m.mu.Unlock()
		return e.status, nil
	case <-ctx.Done():
		return Status{}, fmt.Errorf("wait for vm %s: %w", name, ctx.Err())
	}
}

// resolve finds QEMU and the accelerator, once; a failure is retried by
// the next Start.
func (m *Manager) resolve(ctx context.Context, spec Spec) (qemuPath string, caps qemuCaps, accel string, err error) {
	m.probeMu.Lock()
	defer m.probeMu.Unlock()
	if m.qemuPath == "" {
		path, caps, err := detectQEMU(ctx, m.cfg.QEMU)
		if err != nil {
			return "", caps, "", fmt.Errorf("vmm: %w", err)
		}
		m.qemuPath, m.caps = path, caps
	}
	if m.accel == "" {
		accel, err := Probe(ctx, m.qemuPath, spec.Kernel, spec.Initrd, m.log)
		if err != nil {
			return "", caps, "", fmt.Errorf("vmm: probe accelerator: %w", err)
		}
		m.accel = accel
		m.log.Info("accelerator chosen", "accel", accel)
	}
	return m.qemuPath, m.caps, m.accel, nil
}

func (m *Manager) accelCmdline(accel string) string {
	if accel == AccelTCG {
		return m.cfg.TCGCmdline
	}
	return ""
}

// Start starts the VM spec: it writes the VM's launch spec and spawns its
// supervisor, detached (its own session, its output in
// DataDir/vms/<name>/supervisor.log), and returns once the supervisor
// answers with QEMU running, or with an error (the supervisor's reason when
// it failed; the VM's status then stays known as failed). A VM of the same
// name that has ended is replaced (its console.log is appended to); one
// that is running is ErrExists.
func (m *Manager) Start(ctx context.Context, spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	for _, f := range []string{spec.Kernel, spec.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("start vm %s: %w", spec.Name, err)
		}
	}
	kernel, err1 := filepath.Abs(spec.Kernel)
	initrd, err2 := filepath.Abs(spec.Initrd)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("start vm %s: %w", spec.Name, err)
	}
	spec.Kernel, spec.Initrd = kernel, initrd
	qemuPath, caps, accel, err := m.resolve(ctx, spec)
	if err != nil {
		return fmt.Errorf("start vm %s: %w", spec.Name, err)
	}
	dir := m.Dir(spec.Name)

	m.mu.Lock()
	if e, ok := m.vms[spec.Name]; ok && !e.status.State.Final() {
		m.mu.Unlock()
		return fmt.Errorf("start vm %s: %w (%s)", spec.Name, ErrExists, e.status.State)
	}
	if pid, live := liveSupervisor(dir); live {
		m.mu.Unlock()
		return fmt.Errorf("start vm %s: %w (supervisor %d runs it)", spec.Name, ErrExists, pid)
	}
	e := &vmEntry{name: spec.Name, dir: dir, done: make(chan struct{}),
		status: Status{Name: spec.Name, Generation: spec.Generation, State: StateStarting, Accel: accel, UpdatedAt: time.Now()}}
	m.vms[spec.Name] = e
	m.mu.Unlock()

	fail := func(err error) error {
		m.update(e, Status{Name: spec.Name, Generation: spec.Generation, State: StateFailed, Reason: err.Error(), Accel: accel, UpdatedAt: time.Now()})
		return fmt.Errorf("start vm %s: %w", spec.Name, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fail(err)
	}
	for _, name := range []string{statusFile, handleFile, ctlSocket, serialSocket, qmpSocket} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
	}
	l := launch{
		Version:           launchVersion,
		Spec:              spec,
		Dir:               dir,
		Driver:            "qemu",
		Binary:            qemuPath,
		QEMUCaps:          caps,
		Accel:             accel,
		AccelCmdline:      m.accelCmdline(accel),
		BootTimeoutMillis: m.cfg.BootTimeout.Milliseconds(),
		StopGraceMillis:   m.cfg.StopGrace.Milliseconds(),
		CgroupRoot:        m.cfg.CgroupRoot,
		CgroupName:        cgroupName(m.cfg.DataDir, spec.Name),
	}
	if m.cfg.Lease > 0 {
		m.mu.Lock()
		l.LeaseUntilMonoNs = m.leaseUntil
		m.mu.Unlock()
		switch {
		case l.LeaseUntilMonoNs == 0:
			l.LeaseUntilMonoNs = monoNow() + int64(m.cfg.Lease)
		case l.LeaseUntilMonoNs <= monoNow():
			return fail(errors.New("the fencing lease has run out: not starting"))
		}
	}
	if err := l.validate(); err != nil {
		return fail(err)
	}
	if err := writeLaunch(l); err != nil {
		return fail(err)
	}
	pid, exited, err := m.spawn(dir)
	if err != nil {
		return fail(err)
	}
	st, err := m.awaitSupervisor(ctx, dir, exited)
	if err != nil {
		if st.State.Final() {
			m.update(e, st)
			return fmt.Errorf("start vm %s: %s", spec.Name, st.Reason)
		}
		// The supervisor did not answer in time (or ctx ended): leave no
		// VM running that nobody watches.
		m.log.Warn("supervisor did not answer: killing it and its VM", "vm", spec.Name, "supervisor_pid", pid, "err", err)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(m.cfg.StopGrace):
		}
		st := m.supervisorDied(dir)
		st.Reason = err.Error()
		m.update(e, st)
		return fmt.Errorf("start vm %s: %w", spec.Name, err)
	}
	m.mu.Lock()
	e.answered = true
	lease := m.leaseUntil
	m.mu.Unlock()
	m.update(e, st)
	m.startWatch(e)
	if st.State.Final() {
		return fmt.Errorf("start vm %s: %s", spec.Name, st.Reason)
	}
	if m.cfg.Lease > 0 && lease > l.LeaseUntilMonoNs {
		// Renewals made while the supervisor was starting passed it by.
		m.renewOne(ctx, e, lease)
	}
	m.log.Info("vm started", "vm", spec.Name, "generation", spec.Generation, "qemu_pid", st.QEMUPid, "supervisor_pid", st.SupervisorPid, "accel", accel)
	return nil
}

// renewOne hands the lease a VM's supervisor missed while it was starting;
// a failure is left to the next Renew, which comes within a fifth of a
// lease.
func (m *Manager) renewOne(ctx context.Context, e *vmEntry, until int64) {
	callCtx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	if _, err := ctlCall(callCtx, e.dir, ctlRequest{Op: opRenew, LeaseUntilMonoNs: until}); err != nil {
		m.log.Debug("a new VM's first lease renewal failed; the next renewal tries again", "vm", e.name, "err", err)
	}
}

// spawn starts the supervisor of the VM in dir and returns its pid. The
// returned channel is closed once the supervisor has exited (this process
// reaps it).
func (m *Manager) spawn(dir string) (int, <-chan struct{}, error) {
	logFile, err := os.OpenFile(filepath.Join(dir, supervisorLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return 0, nil, err
	}
	defer logFile.Close()
	argv := append(append([]string(nil), m.cfg.Supervisor...), dir)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = dir
	// Its own session: no terminal's signals, and it outlives this process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("spawn supervisor: %w", err)
	}
	exited := make(chan struct{})
	// Reap it when it exits. This goroutine outlives Close while the
	// supervisor runs; it holds nothing else.
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return cmd.Process.Pid, exited, nil
}

// awaitSupervisor waits for a new supervisor in dir to answer a status
// request, retrying while its socket is not there yet. If the supervisor
// exits first, it returns its final status (from status.json) with an error.
func (m *Manager) awaitSupervisor(ctx context.Context, dir string, exited <-chan struct{}) (Status, error) {
	ctx, cancel := context.WithTimeout(ctx, supervisorStartTimeout)
	defer cancel()
	const retryEvery = 20 * time.Millisecond
	for {
		st, err := ctlCall(ctx, dir, ctlRequest{Op: opStatus})
		if err == nil {
			return st, nil
		}
		select {
		case <-exited:
			if st, rerr := readStatus(dir); rerr == nil && st.State.Final() {
				return st, fmt.Errorf("supervisor ended: %s", st.Reason)
			}
			return Status{}, fmt.Errorf("supervisor exited without a status: %s", fileTail(filepath.Join(dir, supervisorLog), 512))
		case <-ctx.Done():
			return Status{}, fmt.Errorf("supervisor did not answer: %w (last: %v)", ctx.Err(), err)
		case <-time.After(retryEvery):
		}
	}
}

// update records st as e's status, unless it would move the VM back (a
// final status is never replaced; running never goes back to starting),
// and sends it to Events.
func (m *Manager) update(e *vmEntry, st Status) {
	m.mu.Lock()
	cur := e.status
	if cur.State.Final() || stateRank(st.State) < stateRank(cur.State) {
		m.mu.Unlock()
		return
	}
	e.status = st
	if st.State.Final() {
		close(e.done)
	}
	m.mu.Unlock()
	m.events.push(st)
}

func stateRank(s State) int {
	switch s {
	case StateStarting:
		return 0
	case StateRunning:
		return 1
	}
	return 2
}

// startWatch follows the VM's supervisor until its status is final.
func (m *Manager) startWatch(e *vmEntry) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.watch(e)
	}()
}

// watchRetry bounds how often a broken watch stream is reopened.
const watchRetry = 200 * time.Millisecond

func (m *Manager) watch(e *vmEntry) {
	for {
		err := ctlWatch(m.ctx, e.dir, func(st Status) { m.update(e, st) })
		if err == nil || m.ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		final := e.status.State.Final()
		m.mu.Unlock()
		if final {
			return
		}
		if _, live := liveSupervisor(e.dir); live {
			// The stream broke but the supervisor runs (it was busy, or
			// is about to exit): watch again.
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(watchRetry):
			}
			continue
		}
		// The supervisor is gone: its last word is on disk, or it died
		// without one.
		st, rerr := readStatus(e.dir)
		if rerr == nil && st.State.Final() {
			m.update(e, st)
			return
		}
		m.update(e, m.supervisorDied(e.dir))
		return
	}
}

// liveSupervisor reports whether the supervisor of the VM in dir runs, from
// the pid in its status or handle.
func liveSupervisor(dir string) (int, bool) {
	var pids []int
	if st, err := readStatus(dir); err == nil {
		pids = append(pids, st.SupervisorPid)
	}
	if h, err := readHandle(dir); err == nil {
		pids = append(pids, h.SupervisorPid)
	}
	for _, pid := range pids {
		if cmdlineNames(pid, dir) {
			return pid, true
		}
	}
	return 0, false
}

// supervisorDied handles a VM whose supervisor is gone without a final
// status: its QEMU, if it still runs (and its command line names the VM's
// directory), is killed, since nothing would fence or watch it; the VM is
// failed. The status is written to status.json.
func (m *Manager) supervisorDied(dir string) Status {
	st, err := readStatus(dir)
	if err != nil {
		st = Status{Name: filepath.Base(dir)}
	}
	if h, err := readHandle(dir); err == nil {
		st.Name, st.Generation, st.QEMUPid, st.SupervisorPid, st.Accel, st.Limits = h.Name, h.Generation, h.QEMUPid, h.SupervisorPid, h.Accel, h.Limits
	}
	reason := "supervisor died"
	if st.QEMUPid > 0 && cmdlineNames(st.QEMUPid, dir) {
		m.log.Warn("QEMU outlived its supervisor: killing it", "vm", st.Name, "qemu_pid", st.QEMUPid)
		if err := killProcessGroup(st.QEMUPid); err != nil {
			m.log.Warn("kill QEMU", "vm", st.Name, "err", err)
		}
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.StopGrace)
		if err := waitGone(ctx, st.QEMUPid); err != nil {
			m.log.Error("QEMU survived SIGKILL", "vm", st.Name, "err", err)
		}
		cancel()
		reason = "supervisor died; qemu killed"
	}
	if err := removeCgroups(st.Limits.Dirs); err != nil {
		m.log.Warn("cgroups left behind", "vm", st.Name, "err", err)
	}
	st.State, st.Reason = StateFailed, reason
	st.ConsoleTail = consoleTail(filepath.Join(dir, consoleLog))
	if l, err := readLaunch(dir); err == nil && l.Spec.Task != nil && st.Task == nil {
		st.Task = &TaskResult{ExitCode: -1, Error: reason, Finished: time.Now()}
	}
	st.UpdatedAt = time.Now()
	if err := writeStatus(dir, st); err != nil {
		m.log.Error("could not write the status", "vm", st.Name, "err", err)
	}
	return st
}

// Stop stops the VM gracefully: the agent is asked to power off; after
// StopGrace QEMU is told to quit (QMP); after another StopGrace it is
// killed. It returns once QEMU is gone (the VM is then stopped), or with
// ctx's error first. Stopping a VM that has ended does nothing.
func (m *Manager) Stop(ctx context.Context, name string) error {
	return m.end(ctx, name, ctlRequest{Op: opStop, GraceMillis: m.cfg.StopGrace.Milliseconds()})
}

// Kill kills the VM's QEMU at once and returns once it is gone (the VM is
// then stopped, reason "killed on request").
func (m *Manager) Kill(ctx context.Context, name string) error {
	return m.end(ctx, name, ctlRequest{Op: opKill})
}

func (m *Manager) end(ctx context.Context, name string, req ctlRequest) error {
	m.mu.Lock()
	e, ok := m.vms[name]
	m.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s vm %s: %w", req.Op, name, ErrNotFound)
	}
	select {
	case <-e.done:
		return nil
	default:
	}
	// The supervisor answers once QEMU is gone: after at most the three
	// stages of a stop, each StopGrace (one for a kill), and its drain.
	bound := m.cfg.StopGrace + drainTimeout + supervisorExitTimeout
	if req.Op == opStop {
		bound += 2 * m.cfg.StopGrace
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	st, err := ctlCall(ctx, e.dir, req)
	if err == nil {
		m.update(e, st)
		// The supervisor exits right after its answer: let it, so that
		// the VM's directory is free for Remove or a new Start.
		waitCtx, cancel := context.WithTimeout(ctx, supervisorExitTimeout)
		defer cancel()
		if err := waitGone(waitCtx, st.SupervisorPid); err != nil {
			m.log.Warn("supervisor still runs after its VM ended", "vm", name, "err", err)
		}
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s vm %s: %w", req.Op, name, ctx.Err())
	}
	if !errors.Is(err, errNoSupervisor) {
		return fmt.Errorf("%s vm %s: %w", req.Op, name, err)
	}
	// No supervisor answers: it has just ended, or died. The watcher
	// settles which.
	if _, err := m.Wait(ctx, name); err != nil {
		return fmt.Errorf("%s vm %s: %w", req.Op, name, err)
	}
	return nil
}

// SetLease makes VMs started from now on start with a fencing lease that
// runs until expires (it never shrinks), without reaching the running
// ones: Renew does that, and is slower. It does nothing without
// Config.Lease.
func (m *Manager) SetLease(expires time.Time) {
	if m.cfg.Lease <= 0 {
		return
	}
	until := monoAt(expires)
	m.mu.Lock()
	m.leaseUntil = max(m.leaseUntil, until)
	m.mu.Unlock()
}

// Renew extends the fencing lease of every VM this manager knows to
// expires (a local time; it travels as a CLOCK_MONOTONIC instant), and
// VMs started from now on start with it (until then, with Config.Lease
// from their start). A lease never shrinks. It does nothing without
// Config.Lease. A VM whose supervisor has not answered yet is skipped: its
// launch file holds the lease it starts with, and Start passes it a newer
// one once it answers. The error joins a *RenewError per VM that could not
// be reached, in the order of their names.
func (m *Manager) Renew(ctx context.Context, expires time.Time) error {
	if m.cfg.Lease <= 0 {
		return nil
	}
	until := monoAt(expires)
	m.mu.Lock()
	m.leaseUntil = max(m.leaseUntil, until)
	var live []*vmEntry
	for _, name := range slices.Sorted(maps.Keys(m.vms)) {
		if e := m.vms[name]; e.answered && !e.status.State.Final() {
			live = append(live, e)
		}
	}
	m.mu.Unlock()
	// In parallel, each with a short deadline: one slow or booting
	// supervisor must not hold up the others' renewals.
	errs := make([]error, len(live))
	var wg sync.WaitGroup
	for i, e := range live {
		wg.Go(func() {
			callCtx, cancel := context.WithTimeout(ctx, renewTimeout)
			defer cancel()
			if _, err := ctlCall(callCtx, e.dir, ctlRequest{Op: opRenew, LeaseUntilMonoNs: until}); err != nil {
				errs[i] = &RenewError{VM: e.name, Err: err}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RenewError is one VM's failed lease renewal.
type RenewError struct {
	VM  string
	Err error
}

func (e *RenewError) Error() string { return "renew lease of vm " + e.VM + ": " + e.Err.Error() }
func (e *RenewError) Unwrap() error { return e.Err }

// renewTimeout bounds one supervisor's answer to a lease renewal; the node
// renews every fifth of a lease, so a missed one is soon made up.
const renewTimeout = time.Second

// Remove deletes the directory and cgroups of a VM that has ended, and
// forgets it.
func (m *Manager) Remove(name string) error {
	if !validName(name) {
		return fmt.Errorf("remove vm %q: %w", name, ErrNotFound)
	}
	dir := m.Dir(name)
	running := func() error {
		if e, ok := m.vms[name]; ok && !e.status.State.Final() {
			return fmt.Errorf("remove vm %s: it is %s: stop it first", name, e.status.State)
		}
		return nil
	}
	m.mu.Lock()
	err := running()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	if pid, live := liveSupervisor(dir); live {
		// A supervisor whose VM has ended exits at once: give it time,
		// without holding up the other VMs meanwhile.
		ctx, cancel := context.WithTimeout(context.Background(), supervisorExitTimeout)
		err := waitGone(ctx, pid)
		cancel()
		if st, serr := readStatus(dir); err != nil || serr != nil || !st.State.Final() {
			return fmt.Errorf("remove vm %s: its supervisor (pid %d) still runs: stop it first", name, pid)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := running(); err != nil {
		return err // started again while we waited
	}
	if pid, live := liveSupervisor(dir); live {
		return fmt.Errorf("remove vm %s: its supervisor (pid %d) runs: stop it first", name, pid)
	}
	if _, err := os.Stat(dir); err != nil {
		delete(m.vms, name)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove vm %s: %w", name, ErrNotFound)
		}
		return fmt.Errorf("remove vm %s: %w", name, err)
	}
	var dirs []string
	if st, err := readStatus(dir); err == nil {
		dirs = st.Limits.Dirs
	}
	if err := removeCgroups(dirs); err != nil {
		return fmt.Errorf("remove vm %s: %w", name, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove vm %s: %w", name, err)
	}
	delete(m.vms, name)
	return nil
}

// Close stops watching the VMs and closes Events. It does not stop them:
// they outlive the node, and a later Manager adopts them with Recover.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	return nil
}

// fileTail returns the last n bytes of the file at path, as one line.
func fileTail(path string, n int64) string {
	data, err := readTail(path, n)
	if err != nil {
		return err.Error()
	}
	return strings.Join(strings.Fields(string(data)), " ")
}

// readTail reads the last n bytes of the file at path.
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	_, err = f.ReadAt(buf, off)
	return buf, err
}
