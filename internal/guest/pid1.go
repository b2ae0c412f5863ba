package guest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// consolePaths are tried in order for the agent's console: the serial port
// that QEMU's -serial connects to, then whatever console= names.
var consolePaths = []string{"/dev/ttyS0", "/dev/console"}

// mounts are the filesystems PID 1 mounts before anything else.
var mounts = []struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}{
	{"proc", "/proc", "proc", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", syscall.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", syscall.MS_NOSUID | syscall.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
	{"tmpfs", "/dev/shm", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777"},
	{"tmpfs", "/tmp", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777"},
}

// Main is the agent's entry point as PID 1 of a guest. It never returns:
// it ends by powering the VM off. Run as any other PID it refuses and exits
// with status 2.
func Main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "blixard-agent: this is the init process (PID 1) of a Blixard guest VM's initramfs; it does not run on a host")
		os.Exit(2)
	}
	// The kernel opened /dev/console as stdin, stdout and stderr; until the
	// serial console is open, that is where messages go.
	early := NewConsole(os.Stdout)
	defer func() {
		if p := recover(); p != nil {
			_ = early.Printf("fatal: panic: %v", p)
			powerOff(early, "panic")
		}
	}()
	// PID 1 must not die of a signal (the kernel would panic). Notify, not
	// Ignore: ignored signals stay ignored in the tasks it executes.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)

	for _, m := range mounts {
		if err := mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
			_ = early.Printf("%v", err)
		}
	}
	if err := os.Setenv("PATH", DefaultPath); err != nil {
		_ = early.Printf("set PATH: %v", err)
	}
	if err := os.Chdir("/"); err != nil {
		_ = early.Printf("chdir /: %v", err)
	}

	tty, err := openConsole()
	if err != nil {
		_ = early.Printf("fatal: %v", err)
		powerOff(early, "no console")
	}
	con := NewConsole(tty)
	go func() {
		for s := range sigs {
			_ = con.Printf("ignored signal %v", s)
		}
	}()

	reaper := NewReaper()
	a := &Agent{
		Console:  con,
		Input:    tty,
		Runner:   &Runner{Console: con, Reaper: reaper},
		Kernel:   kernelRelease(),
		Uptime:   uptime,
		TaskFile: TaskFile,
		Poweroff: func(string) { powerOff(con, "") },
	}
	err = a.Serve(context.Background())
	_ = con.Printf("fatal: %v", err)
	powerOff(con, "fatal error")
}

func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	err := syscall.Mount(source, target, fstype, flags, data)
	if err != nil && !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// openConsole opens the first console of consolePaths that works, in raw
// mode. O_NOCTTY: the agent takes no controlling terminal, so a hangup
// cannot signal it.
func openConsole() (*tty, error) {
	var errs []error
	for _, p := range consolePaths {
		f, err := os.OpenFile(p, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t := &tty{File: f}
		if err := t.makeRaw(); err != nil {
			f.Close()
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		return t, nil
	}
	return nil, fmt.Errorf("open a console: %w", errors.Join(errs...))
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// uptime reads how long ago the guest booted from /proc/uptime (10 ms
// resolution); 0 if it cannot.
func uptime() time.Duration {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(data), " ")
	secs, err := strconv.ParseFloat(first, 64)
	if err != nil {
		return 0
	}
	return time.Duration(secs * float64(time.Second))
}

// powerOff syncs and powers the VM off; if the kernel refuses, it asks for
// a restart, which ends a QEMU started with -no-reboot as well. It never
// returns.
func powerOff(con *Console, reason string) {
	if reason != "" {
		_ = con.Printf("powering off (%s)", reason)
	}
	_ = con.Drain()
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	_ = con.Printf("power off: %v; restarting instead", err)
	_ = con.Drain()
	err = syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	_ = con.Printf("restart: %v; halting here", err)
	for {
		time.Sleep(time.Hour)
	}
}
