package vmm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// probeTimeout bounds a probe boot. A kernel that boots under KVM reaches
// its agent in well under a second; one that faults does so at once or
// hangs.
const probeTimeout = 20 * time.Second

// probeMemoryMiB is the probe VM's memory.
const probeMemoryMiB = 128

// Probe decides the accelerator for this host: "kvm" only if /dev/kvm opens
// and a probe VM (kernel, initrd: an image whose agent sends a ready frame)
// boots under -accel kvm to its ready frame within a deadline; else "tcg".
// A host whose KVM exists but fails the probe (e.g. a paravirtual KVM on
// which the guest kernel faults) is logged as a warning. The error is for
// what makes even TCG impossible: no QEMU, no kernel or initrd.
func Probe(ctx context.Context, qemu, kernel, initrd string, logger *slog.Logger) (string, error) {
	if logger == nil {
		logger = slog.Default()
	}
	path, caps, err := detectQEMU(ctx, qemu)
	if err != nil {
		return "", err
	}
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			return "", fmt.Errorf("probe: %w", err)
		}
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		logger.Info("KVM unavailable: VMs run under TCG (software emulation)", "err", err)
		return AccelTCG, nil
	}
	f.Close()
	start := time.Now()
	if err := probeBoot(ctx, path, caps, AccelKVM, "", kernel, initrd); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("probe: %w", ctx.Err())
		}
		logger.Warn("/dev/kvm opens but a probe VM does not boot under KVM: VMs run under TCG (software emulation)", "err", err)
		return AccelTCG, nil
	}
	logger.Info("KVM works: a probe VM booted under it", "boot", time.Since(start).Round(time.Millisecond))
	return AccelKVM, nil
}

// probeBoot boots kernel and initrd under accel (with the extra kernel
// arguments accelCmdline) in a temporary directory, through the same driver
// as every VM, until the agent's ready frame, then kills the VM.
func probeBoot(ctx context.Context, qemuPath string, caps qemuCaps, accel, accelCmdline, kernel, initrd string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "blixard-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l := launch{
		Version:      launchVersion,
		Spec:         Spec{Name: "probe", Vcpus: 1, MemoryMiB: probeMemoryMiB, Kernel: kernel, Initrd: initrd},
		Dir:          dir,
		Driver:       "qemu",
		Binary:       qemuPath,
		QEMUCaps:     caps,
		Accel:        accel,
		AccelCmdline: accelCmdline,
	}
	drv := drivers[l.Driver]
	cmd, err := drv.command(l)
	if err != nil {
		return err
	}
	stderr := newTail(ConsoleTailBytes)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", qemuPath, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = killProcessGroup(cmd.Process.Pid)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, fmt.Errorf("probe QEMU %d did not exit after SIGKILL", cmd.Process.Pid))
		}
	}()
	m, err := drv.attach(ctx, l)
	if err != nil {
		return fmt.Errorf("%w: %s", err, lastLine(stderr.String()))
	}
	defer m.close()
	console := newTail(ConsoleTailBytes)
	ready := make(chan error, 1)
	go func() {
		r := wire.NewReader(m.console())
		for {
			it, err := r.Next()
			if err != nil {
				ready <- fmt.Errorf("console ended before the ready frame: %w", err)
				return
			}
			if it.Text != nil {
				console.Write(append(it.Text, '\n'))
			}
			if it.Frame != nil && it.Frame.Kind == wire.KindReady {
				ready <- nil
				return
			}
		}
	}()
	if err := m.resume(ctx); err != nil {
		return err
	}
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("%w; console: %q", err, lastLine(console.String()))
		}
		return nil
	case werr := <-exited:
		exited <- werr // for the deferred wait
		return fmt.Errorf("qemu exited before the ready frame: %v: %s", werr, lastLine(stderr.String()))
	case <-ctx.Done():
		return fmt.Errorf("no ready frame: %w", ctx.Err())
	}
}
