package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
	"github.com/blixard/blixard/internal/image"
)

// waitTimeout bounds every wait of the boot tests: a TCG boot takes about
// 2 s alone on this kind of machine; this is far beyond it.
const waitTimeout = 60 * time.Second

func vmSpec(img *image.Image, name string) Spec {
	return Spec{Name: name, Generation: 1, Vcpus: 1, MemoryMiB: 128, Kernel: img.Kernel, Initrd: img.Initrd}
}

// waitState waits for the VM to reach state (or a final state) and returns
// its status.
func waitState(t *testing.T, m *Manager, name string, want State) Status {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		st, ok := m.Status(name)
		if !ok {
			t.Fatalf("vm %s unknown", name)
		}
		if st.State == want {
			return st
		}
		if st.State.Final() {
			t.Fatalf("vm %s is %s (%s), want %s; console:\n%s", name, st.State, st.Reason, want, st.ConsoleTail)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _ := m.Status(name)
	t.Fatalf("vm %s still %s after %s, want %s\n%s", name, st.State, waitTimeout, want, vmLogs(m, name))
	return st
}

// vmLogs is the end of the VM's supervisor log and console, for a failure
// message.
func vmLogs(m *Manager, name string) string {
	sup, _ := readTail(m.Dir(name)+"/"+supervisorLog, 4096)
	con, _ := readTail(m.ConsolePath(name), 4096)
	return "supervisor.log:\n" + string(sup) + "\nconsole.log:\n" + string(con)
}

func waitFinal(t *testing.T, m *Manager, name string) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := m.Wait(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func assertGone(t *testing.T, what string, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("%s pid %d", what, pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := waitGone(ctx, pid); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A VM boots to its agent's ready frame, runs within its cgroup limits,
// and stops gracefully on request; its events, console and directory are
// what the node expects.
func TestBootRunStop(t *testing.T) {
	img := bootImage(t)
	m := newTestManager(t, nil)
	spec := vmSpec(img, "web-1")
	spec.Vcpus, spec.MemoryMiB = 2, 160
	ctx := context.Background()
	start := time.Now()
	if err := m.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, "web-1", StateRunning)
	t.Logf("start → running in %s under TCG (QEMU process start → ready frame: %s)", time.Since(start).Round(time.Millisecond), st.ReadyAt.Sub(st.StartedAt).Round(time.Millisecond))
	if !st.Ready || st.QEMUPid == 0 || st.SupervisorPid == 0 || st.Accel != AccelTCG || st.Generation != 1 {
		t.Fatalf("running status %+v", st)
	}
	if st.SupervisorPid == os.Getpid() || !cmdlineNames(st.QEMUPid, m.Dir("web-1")) || !cmdlineNames(st.SupervisorPid, m.Dir("web-1")) {
		t.Fatalf("the VM's processes do not name its directory on their command lines")
	}

	// The cgroup limits of the QEMU process are the spec's.
	quota, period, mem, err := CgroupLimits(st.QEMUPid)
	if err != nil {
		t.Fatal(err)
	}
	if quota != 200000 || period != 100000 || mem != MemoryLimitBytes(spec) {
		t.Errorf("QEMU's cgroup limits: quota %d period %d memory %d; want 200000 100000 %d", quota, period, mem, MemoryLimitBytes(spec))
	}
	if st.Limits.Cgroup == "" || st.Limits.MemoryBytes != MemoryLimitBytes(spec) || st.Limits.CPUQuotaMicros != 200000 {
		t.Errorf("recorded limits %+v", st.Limits)
	}
	for _, d := range st.Limits.Dirs {
		if !strings.Contains(d, "/blixard/"+nodeHash(m.cfg.DataDir)+"-web-1") {
			t.Errorf("cgroup %s is not blixard/<node>-<vm>", d)
		}
	}

	// The agent's text is in the console log.
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(m.ConsolePath("web-1"))
		if strings.Contains(string(data), "blixard-agent: ready") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console.log lacks the agent's ready line:\n%s", data)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := m.Start(ctx, spec); !errors.Is(err, ErrExists) {
		t.Errorf("a second start of a running VM: %v, want ErrExists", err)
	}
	if err := m.Remove("web-1"); err == nil {
		t.Error("removed a running VM")
	}

	stopStart := time.Now()
	if err := m.Stop(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %s", time.Since(stopStart).Round(time.Millisecond))
	final, _ := m.Status("web-1")
	if final.State != StateStopped || final.Reason != "stopped on request" {
		t.Fatalf("after Stop: %s %q", final.State, final.Reason)
	}
	if processAlive(st.QEMUPid) {
		t.Fatalf("QEMU %d still runs after Stop returned", st.QEMUPid)
	}
	assertGone(t, "supervisor", st.SupervisorPid)
	for _, d := range st.Limits.Dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind: %v", d, err)
		}
	}
	if disk, err := readStatus(m.Dir("web-1")); err != nil || disk.State != StateStopped {
		t.Errorf("status.json: %+v, %v", disk, err)
	}

	// Events carried the VM through its states, ending stopped.
	var states []State
	timeout := time.After(5 * time.Second)
	for len(states) == 0 || !states[len(states)-1].Final() {
		select {
		case ev := <-m.Events():
			if ev.Name == "web-1" {
				states = append(states, ev.State)
			}
		case <-timeout:
			t.Fatalf("events %v never reached a final state", states)
		}
	}
	if states[len(states)-1] != StateStopped {
		t.Errorf("events %v", states)
	}

	if err := m.Remove("web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Dir("web-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the VM's directory is still there: %v", err)
	}
	if _, ok := m.Status("web-1"); ok {
		t.Error("a removed VM is still known")
	}
}

// A QEMU killed behind the supervisor's back fails the VM with the reason.
func TestQEMUKilled(t *testing.T) {
	img := bootImage(t)
	m := newTestManager(t, nil)
	if err := m.Start(context.Background(), vmSpec(img, "victim")); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, m, "victim", StateRunning)
	if err := syscall.Kill(st.QEMUPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	final := waitFinal(t, m, "victim")
	if final.State != StateFailed || !strings.HasPrefix(final.Reason, "qemu exited: signal: killed") {
		t.Fatalf("final %s %q, want failed \"qemu exited: signal: killed\"", final.State, final.Reason)
	}
	if !strings.Contains(final.ConsoleTail, "blixard-agent") {
		t.Errorf("console tail of the failed VM lacks the agent's lines: %q", final.ConsoleTail)
	}
	assertGone(t, "supervisor", st.SupervisorPid)
}

// Task VMs end with their task: exit 0 is stopped, another code is failed
// with the code, a task past its timeout is failed "timeout"; each carries
// its output.
func TestTaskVMs(t *testing.T) {
	img := bootImage(t)
	m := newTestManager(t, nil)
	tests := []struct {
		name       string
		run        wire.Run
		wantState  State
		wantReason string
		wantCode   int
		wantOutput string
		timedOut   bool
	}{
		{"exit-3", wire.Run{Command: "sh", Args: []string{"-c", "echo hello; exit 3"}, PoweroffAfter: true},
			StateFailed, "exit code 3", 3, "hello\n", false},
		{"exit-0", wire.Run{Command: "sh", Args: []string{"-c", "echo fine"}, PoweroffAfter: true},
			StateStopped, "task exited 0", 0, "fine\n", false},
		{"too-slow", wire.Run{Command: "sh", Args: []string{"-c", "echo started; sleep 60"}, TimeoutMillis: 1500, PoweroffAfter: true},
			StateFailed, "timeout", -1, "started\n", true},
	}
	for _, tt := range tests {
		spec := vmSpec(img, tt.name)
		run := tt.run
		spec.Initrd = taskInitrd(t, img, run)
		spec.Task = &run
		if err := m.Start(context.Background(), spec); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := waitFinal(t, m, tt.name)
			if st.State != tt.wantState || st.Reason != tt.wantReason {
				t.Fatalf("final %s %q, want %s %q; console:\n%s", st.State, st.Reason, tt.wantState, tt.wantReason, st.ConsoleTail)
			}
			res := st.Task
			if res == nil {
				t.Fatal("no task result")
			}
			if res.TimedOut != tt.timedOut || string(res.Output) != tt.wantOutput || (!tt.timedOut && res.ExitCode != tt.wantCode) {
				t.Errorf("task result %+v, output %q; want code %d, timed out %v, output %q", res, res.Output, tt.wantCode, tt.timedOut, tt.wantOutput)
			}
			if res.Started.IsZero() || res.Finished.Before(res.Started) {
				t.Errorf("task timings %v .. %v", res.Started, res.Finished)
			}
			assertGone(t, "qemu", st.QEMUPid)
		})
	}
}

// A VM whose agent never says it is ready fails at the boot timeout.
func TestBootTimeout(t *testing.T) {
	img := bootImage(t)
	m := newTestManager(t, func(c *Config) { c.BootTimeout = 200 * time.Millisecond })
	if err := m.Start(context.Background(), vmSpec(img, "slow")); err != nil {
		t.Fatal(err)
	}
	st := waitFinal(t, m, "slow")
	if st.State != StateFailed || st.Reason != "boot timeout: no ready frame in 200ms" {
		t.Fatalf("final %s %q", st.State, st.Reason)
	}
	assertGone(t, "qemu", st.QEMUPid)
}

// A new Manager on the same data directory adopts a running VM (same QEMU)
// and can stop it; a VM whose supervisor died has its QEMU killed.
func TestRecover(t *testing.T) {
	img := bootImage(t)
	m1 := newTestManager(t, nil)
	ctx := context.Background()
	for _, name := range []string{"kept", "orphan"} {
		if err := m1.Start(ctx, vmSpec(img, name)); err != nil {
			t.Fatal(err)
		}
	}
	kept := waitState(t, m1, "kept", StateRunning)
	orphan := waitState(t, m1, "orphan", StateRunning)
	// The node goes away; then one supervisor dies.
	m1.Close()
	if err := syscall.Kill(orphan.SupervisorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	assertGone(t, "orphan's supervisor", orphan.SupervisorPid)
	if !processAlive(orphan.QEMUPid) {
		t.Fatal("the orphan's QEMU died with its supervisor; the test needs it alive")
	}

	m2 := newTestManager(t, func(c *Config) { c.DataDir = m1.cfg.DataDir })
	sts, err := m2.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 2 || sts[0].Name != "kept" || sts[1].Name != "orphan" {
		t.Fatalf("recovered %+v", sts)
	}
	if sts[0].State != StateRunning || sts[0].QEMUPid != kept.QEMUPid || !sts[0].Ready {
		t.Errorf("adopted %+v, want running with QEMU %d", sts[0], kept.QEMUPid)
	}
	if sts[1].State != StateFailed || sts[1].Reason != "supervisor died; qemu killed" {
		t.Errorf("orphan %s %q", sts[1].State, sts[1].Reason)
	}
	assertGone(t, "orphan's QEMU", orphan.QEMUPid)

	if err := m2.Stop(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if st, _ := m2.Status("kept"); st.State != StateStopped {
		t.Fatalf("after Stop: %+v", st)
	}
	assertGone(t, "kept's QEMU", kept.QEMUPid)

	// A third manager finds both ended.
	m3 := newTestManager(t, func(c *Config) { c.DataDir = m1.cfg.DataDir })
	sts, err = m3.Recover(ctx)
	if err != nil || len(sts) != 2 || sts[0].State != StateStopped || sts[1].State != StateFailed {
		t.Fatalf("third recover: %+v, %v", sts, err)
	}
}

// A VM whose lease is not renewed is killed when it runs out; renewals keep
// it running.
func TestLease(t *testing.T) {
	img := bootImage(t)
	const lease = 3 * time.Second
	m := newTestManager(t, func(c *Config) { c.Lease = lease })
	ctx := context.Background()
	if err := m.Start(ctx, vmSpec(img, "fenced")); err != nil {
		t.Fatal(err)
	}
	// The node renews every 200 ms, as it would while it has a quorum, from
	// the start (a boot under load may outlast one lease), until the VM
	// runs and the renewals have carried it past its first lease.
	renewErr := make(chan error, 1)
	stopRenew := make(chan struct{})
	var running atomic.Bool // before, a booting supervisor may not answer yet
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := m.Renew(ctx, time.Now().Add(lease)); err != nil && running.Load() {
				renewErr <- err
				return
			}
			select {
			case <-stopRenew:
				renewErr <- nil
				return
			case <-tick.C:
			}
		}
	}()
	waitState(t, m, "fenced", StateRunning)
	running.Store(true)
	pastFirstLease := time.Now().Add(lease + time.Second)
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for now := time.Now(); now.Before(pastFirstLease); now = <-poll.C {
		if st, _ := m.Status("fenced"); st.State != StateRunning {
			t.Fatalf("a renewed VM is %s (%s)", st.State, st.Reason)
		}
	}
	close(stopRenew)
	if err := <-renewErr; err != nil {
		t.Fatal(err)
	}
	// Renewals stop: the lease runs out and the supervisor kills the VM.
	st := waitFinal(t, m, "fenced")
	if st.State != StateFailed || st.Reason != "lease expired" {
		t.Fatalf("final %s %q, want failed \"lease expired\"", st.State, st.Reason)
	}
	assertGone(t, "qemu", st.QEMUPid)
}

// The probe's boot path works (here under TCG), and the probe picks TCG on
// a host without a usable /dev/kvm.
func TestProbe(t *testing.T) {
	img := bootImage(t)
	ctx := context.Background()
	path, caps, err := detectQEMU(ctx, DefaultQEMU)
	if err != nil {
		t.Fatal(err)
	}
	if err := probeBoot(ctx, path, caps, AccelTCG, tcgCmdline(t), img.Kernel, img.Initrd); err != nil {
		t.Fatalf("a probe boot under TCG: %v", err)
	}
	accel, err := Probe(ctx, DefaultQEMU, img.Kernel, img.Initrd, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, kvmErr := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if kvmErr == nil {
		f.Close()
	}
	t.Logf("accelerator: %s (/dev/kvm: %v)", accel, kvmErr)
	if kvmErr != nil && accel != AccelTCG {
		t.Fatalf("accel %s without /dev/kvm", accel)
	}
	if accel != AccelKVM && accel != AccelTCG {
		t.Fatalf("accel %q", accel)
	}
}

// A missing QEMU fails Start with the package to install.
func TestMissingQEMU(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.QEMU = "/nonexistent/qemu-system-x86_64" })
	dir := t.TempDir()
	for _, f := range []string{"k", "i"} {
		os.WriteFile(dir+"/"+f, []byte("x"), 0o644)
	}
	err := m.Start(context.Background(), Spec{Name: "x", Vcpus: 1, MemoryMiB: 64, Kernel: dir + "/k", Initrd: dir + "/i"})
	if err == nil || !strings.Contains(err.Error(), "install the qemu-system-x86 package") {
		t.Fatalf("got %v, want an error naming the package", err)
	}
}

// Kill ends a VM at once (stopped, "killed on request"); a supervisor that
// dies takes its QEMU with it (the manager kills it: nothing runs a VM
// without a supervisor) and the VM is failed.
func TestKillAndSupervisorDeath(t *testing.T) {
	img := bootImage(t)
	m := newTestManager(t, nil)
	ctx := context.Background()
	for _, name := range []string{"killed", "abandoned"} {
		if err := m.Start(ctx, vmSpec(img, name)); err != nil {
			t.Fatal(err)
		}
	}
	killed := waitState(t, m, "killed", StateRunning)
	abandoned := waitState(t, m, "abandoned", StateRunning)

	if err := m.Kill(ctx, "killed"); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status("killed"); st.State != StateStopped || st.Reason != "killed on request" {
		t.Errorf("after Kill: %s %q", st.State, st.Reason)
	}
	assertGone(t, "killed's QEMU", killed.QEMUPid)
	if err := m.Kill(ctx, "killed"); err != nil {
		t.Errorf("killing an ended VM: %v", err)
	}

	if err := syscall.Kill(abandoned.SupervisorPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := waitFinal(t, m, "abandoned")
	if st.State != StateFailed || st.Reason != "supervisor died; qemu killed" {
		t.Fatalf("final %s %q", st.State, st.Reason)
	}
	assertGone(t, "abandoned's QEMU", abandoned.QEMUPid)
	if disk, err := readStatus(m.Dir("abandoned")); err != nil || disk.State != StateFailed {
		t.Errorf("status.json after the supervisor died: %+v, %v", disk, err)
	}
}

// A guest that ignores the poweroff frame (no agent: a shell is init) is
// ended by QMP quit after the grace, and still counts as stopped. The data
// directory is too deep for unix socket addresses: QEMU's sockets are
// relative, and the supervisor reaches them through a directory descriptor.
func TestStopEscalatesToQuit(t *testing.T) {
	img := bootImage(t)
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 50), strings.Repeat("e", 50))
	m := newTestManager(t, func(c *Config) {
		c.StopGrace = time.Second
		c.DataDir = deep
	})
	spec := vmSpec(img, "deaf")
	spec.Cmdline = "rdinit=/bin/sh"
	ctx := context.Background()
	if err := m.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Status("deaf")
	if err := m.Stop(ctx, "deaf"); err != nil {
		t.Fatal(err)
	}
	final, _ := m.Status("deaf")
	if final.State != StateStopped || final.Reason != "stopped on request" {
		t.Fatalf("after Stop: %s %q", final.State, final.Reason)
	}
	assertGone(t, "qemu", st.QEMUPid)
	if len(filepath.Join(m.Dir("deaf"), qmpSocket)) <= maxUnixPath {
		t.Fatal("the data directory is not deep enough for the test")
	}
	log, _ := os.ReadFile(m.Dir("deaf") + "/" + supervisorLog)
	if !strings.Contains(string(log), "guest did not power off: quitting QEMU") || strings.Contains(string(log), "killing it") {
		t.Errorf("supervisor.log does not show a stop by QMP quit:\n%s", log)
	}
}
