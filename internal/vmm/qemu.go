package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// DefaultQEMU is the QEMU binary looked up on PATH when Config.QEMU is empty.
const DefaultQEMU = "qemu-system-x86_64"

// qemuPackage is the Debian package that installs DefaultQEMU, named in
// errors.
const qemuPackage = "qemu-system-x86"

// defaultCmdline is the kernel command line every VM gets, before
// Spec.Cmdline: the console on the first serial port, few boot messages, on
// a panic reboot at once (which -no-reboot turns into QEMU's exit), reboot
// by triple fault (nothing else is there to reboot with), and no crypto
// self-tests (they cost seconds under TCG).
const defaultCmdline = "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests"

// tcgTBSizeMiB bounds QEMU's translated-code cache under TCG. QEMU's
// default (1 GiB) would let the cache alone outgrow MemoryOverheadMiB.
const tcgTBSizeMiB = 64

// MemoryOverheadMiB is what QEMU itself may use beside guest memory: its
// heap, device state and, under TCG, up to tcgTBSizeMiB of translated code.
// Measured under TCG (QEMU 7.2, one vCPU, a 128 MiB guest busy with a shell
// task): 200 MB charged to the VM's cgroup, about 72 MiB beyond guest
// memory. KVM needs less (no translated code); one constant serves both.
const MemoryOverheadMiB = 128

// MemoryLimitBytes is the memory limit of a VM's cgroup: its guest memory
// plus MemoryOverheadMiB.
func MemoryLimitBytes(spec Spec) int64 {
	return int64(spec.MemoryMiB+MemoryOverheadMiB) << 20
}

// CPUPeriodMicros is the CFS period of a VM's cgroup; its quota is one
// period per vCPU.
const CPUPeriodMicros = 100000

// CPUQuotaMicros is the CFS quota of a VM's cgroup: one CPU per vCPU.
func CPUQuotaMicros(spec Spec) int64 { return int64(spec.Vcpus) * CPUPeriodMicros }

// driver is one hypervisor. The supervisor runs a VM through it; nothing
// else in the package names a hypervisor. QEMU is the one driver so far;
// Cloud Hypervisor and Firecracker fit the same shape (a process started
// paused, a console stream, a control channel that can resume and quit).
type driver interface {
	// command returns the hypervisor process for l, set up to start the
	// VM paused, so that the supervisor can put it into its cgroups and
	// attach to its console before the guest runs: nothing the guest
	// prints is missed.
	command(l launch) (*exec.Cmd, error)
	// attach connects to a started hypervisor, waiting until ctx's
	// deadline for it to listen.
	attach(ctx context.Context, l launch) (machine, error)
}

// machine is a started hypervisor's channels.
type machine interface {
	// console is the guest's serial console: the agent's frames and the
	// guest's text come out of it, the host's frames go into it.
	console() net.Conn
	// resume lets a VM started paused run.
	resume(ctx context.Context) error
	// quit ends the hypervisor now; the guest gets no say.
	quit(ctx context.Context) error
	// shutdownReason is why the guest last asked to stop, as the
	// hypervisor reported it ("guest-shutdown", "guest-reset", ...), or "".
	// Called once the hypervisor has exited, it first waits (until ctx
	// ends) to have read all the hypervisor said.
	shutdownReason(ctx context.Context) string
	close() error
}

// drivers by name, as launch.Driver names them.
var drivers = map[string]driver{
	"qemu": qemuDriver{},
}

type qemuDriver struct{}

// qemuCaps are what this QEMU's microvm machine supports, from
// "qemu-system-x86_64 -M microvm,help".
type qemuCaps struct {
	RTC         bool `json:"rtc"`
	OptionROMs  bool `json:"x_option_roms"`
	MicrovmSeen bool `json:"microvm"`
}

// parseQEMUCaps reads the output of "-M microvm,help".
func parseQEMUCaps(help []byte) qemuCaps {
	var c qemuCaps
	for _, line := range strings.Split(string(help), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "microvm-machine options"):
			c.MicrovmSeen = true
		case strings.HasPrefix(line, "rtc="):
			c.RTC = true
		case strings.HasPrefix(line, "x-option-roms="):
			c.OptionROMs = true
		}
	}
	return c
}

// detectQEMU finds the QEMU binary and what its microvm machine supports.
// A missing binary is an error that names the package to install.
func detectQEMU(ctx context.Context, qemu string) (path string, caps qemuCaps, err error) {
	path, err = exec.LookPath(qemu)
	if err != nil {
		return "", caps, fmt.Errorf("qemu: %w (install the %s package)", err, qemuPackage)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-M", "microvm,help").CombinedOutput()
	if err != nil {
		return "", caps, fmt.Errorf("qemu: %s -M microvm,help: %w: %s", path, err, bytes.TrimSpace(out))
	}
	caps = parseQEMUCaps(out)
	if !caps.MicrovmSeen {
		return "", caps, fmt.Errorf("qemu: %s has no microvm machine", path)
	}
	return path, caps, nil
}

// qemuOpt escapes a value inside a QEMU option list: a comma is doubled.
func qemuOpt(v string) string { return strings.ReplaceAll(v, ",", ",,") }

// socketArg is how QEMU is told the path of the socket dir/name: the
// absolute path, or the bare name (QEMU runs in dir) when the absolute path
// does not fit in a unix socket address.
func socketArg(dir, name string) string {
	if p := filepath.Join(dir, name); len(p) <= maxUnixPath {
		return p
	}
	return name
}

// kernelCmdline is the guest kernel's command line for l: the defaults,
// the accelerator's arguments, then the spec's.
func kernelCmdline(l launch) string {
	cmdline := defaultCmdline
	for _, extra := range []string{l.AccelCmdline, l.Spec.Cmdline} {
		if extra = strings.TrimSpace(extra); extra != "" {
			cmdline += " " + extra
		}
	}
	return cmdline
}

// qemuArgs is QEMU's command line (without the binary) for l. Every path of
// the VM's own files names l.Dir, so that the VM's processes name the node's
// data directory on their command lines (Recover checks it before killing).
func qemuArgs(l launch, caps qemuCaps) []string {
	s := l.Spec
	machine := "microvm"
	if caps.OptionROMs {
		machine += ",x-option-roms=off"
	}
	if caps.RTC {
		machine += ",rtc=on"
	}
	args := []string{
		"-name", "blixard-" + s.Name + ",debug-threads=on",
		// Start paused: the supervisor attaches to the console and moves
		// QEMU into its cgroups, then resumes it (QMP cont).
		"-S",
		"-M", machine,
	}
	switch l.Accel {
	case AccelKVM:
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		args = append(args, "-accel", "tcg,tb-size="+strconv.Itoa(tcgTBSizeMiB))
	}
	args = append(args,
		"-smp", strconv.FormatUint(uint64(s.Vcpus), 10),
		"-m", strconv.FormatUint(s.MemoryMiB, 10)+"M",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", s.Kernel,
		"-initrd", s.Initrd,
		"-append", kernelCmdline(l),
		"-chardev", "socket,id=ser0,path="+qemuOpt(socketArg(l.Dir, serialSocket))+
			",server=on,wait=off,logfile="+qemuOpt(filepath.Join(l.Dir, consoleLog))+",logappend=on",
		"-serial", "chardev:ser0",
		// QMP on a chardev rather than -qmp unix:PATH, whose legacy
		// syntax does not take every path (an '=' in it fails to parse).
		"-chardev", "socket,id=qmp0,path="+qemuOpt(socketArg(l.Dir, qmpSocket))+",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
	)
	return args
}

func (qemuDriver) command(l launch) (*exec.Cmd, error) {
	cmd := exec.Command(l.Binary, qemuArgs(l, l.QEMUCaps)...)
	cmd.Dir = l.Dir
	// Its own process group: a signal to the supervisor's group does not
	// reach it, and the supervisor can kill it with everything it forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

func (qemuDriver) attach(ctx context.Context, l launch) (machine, error) {
	// QEMU creates its sockets while it initialises: retry until it
	// listens or ctx ends.
	serial, err := dialRetry(ctx, l.Dir, serialSocket)
	if err != nil {
		return nil, fmt.Errorf("qemu serial console: %w", err)
	}
	qmpConn, err := dialRetry(ctx, l.Dir, qmpSocket)
	if err != nil {
		serial.Close()
		return nil, fmt.Errorf("qemu qmp: %w", err)
	}
	q, err := newQMP(ctx, qmpConn)
	if err != nil {
		serial.Close()
		return nil, err
	}
	return &qemuMachine{serial: serial, qmp: q}, nil
}

// dialRetry connects to dir/name, retrying every 20 ms while the socket is
// not there or not listening yet, until ctx ends.
func dialRetry(ctx context.Context, dir, name string) (net.Conn, error) {
	const retryEvery = 20 * time.Millisecond
	for {
		conn, err := dialUnix(ctx, dir, name)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(retryEvery):
		}
	}
}

type qemuMachine struct {
	serial net.Conn
	qmp    *qmpClient
}

func (m *qemuMachine) console() net.Conn { return m.serial }

func (m *qemuMachine) resume(ctx context.Context) error {
	_, err := m.qmp.execute(ctx, "cont", nil)
	return err
}

func (m *qemuMachine) quit(ctx context.Context) error { return m.qmp.quit(ctx) }

func (m *qemuMachine) shutdownReason(ctx context.Context) string {
	_ = m.qmp.wait(ctx)
	var reason string
	for _, ev := range m.qmp.takeEvents() {
		if ev.Event == "SHUTDOWN" {
			var d struct {
				Reason string `json:"reason"`
			}
			if err := ev.decode(&d); err == nil {
				reason = d.Reason
			}
		}
	}
	return reason
}

func (m *qemuMachine) close() error {
	return errors.Join(m.serial.Close(), m.qmp.close())
}
