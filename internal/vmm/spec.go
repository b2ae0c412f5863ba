package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/blixard/blixard/internal/guest/wire"
)

// Spec describes one VM to run.
type Spec struct {
	// Name is the VM's name, a DNS label: its directory is DataDir/vms/<Name>.
	Name string `json:"name"`
	// Generation is the placement generation the VM runs under; it is
	// carried in every Status so that a report from an older placement can
	// be told apart.
	Generation uint64 `json:"generation"`
	Vcpus      uint32 `json:"vcpus"`
	MemoryMiB  uint64 `json:"memory_mib"`
	// Kernel is the guest kernel, an uncompressed PVH vmlinux.
	Kernel string `json:"kernel"`
	// Initrd is the initramfs with the guest agent as /init. For a task VM
	// it already carries /blixard/task.json.
	Initrd string `json:"initrd"`
	// Cmdline is extra kernel command-line arguments, appended after the
	// defaults (see defaultCmdline).
	Cmdline string `json:"cmdline,omitempty"`
	// Task is the task the VM runs, for a task VM. The agent reads it from
	// the initramfs; the supervisor uses it for the host's timeout backstop
	// (TimeoutMillis + BootTimeout) and to collect the task's result.
	Task *wire.Run `json:"task,omitempty"`
}

// Limits of a Spec.
const (
	// MaxVcpus a VM may have: QEMU's microvm machine takes many more, but a
	// VM asking for more than this is a mistake.
	MaxVcpus = 64
	// MinMemoryMiB a VM needs to boot the kernel and the agent.
	MinMemoryMiB = 32
	// maxNameLen is a DNS label's length.
	maxNameLen = 63
)

// validName reports whether name can name a VM here: 1 to 63 lower-case
// letters, digits, hyphens and dots, starting and ending with a letter or
// digit. A VM's own name is a DNS label; the node agent names a task's VM
// "task.<id>", which no VM's name can be.
func validName(name string) bool {
	if name == "" || len(name) > maxNameLen || !alnum(name[0]) || !alnum(name[len(name)-1]) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !alnum(c) && c != '-' && c != '.' {
			return false
		}
	}
	return !strings.Contains(name, "..")
}

func alnum(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') }

// Validate reports what is wrong with s, if anything. It does not look at
// the files.
func (s Spec) Validate() error {
	var errs []error
	if !validName(s.Name) {
		errs = append(errs, fmt.Errorf("name %q is not 1-63 of a-z, 0-9, '-' and '.', starting and ending with a letter or digit", s.Name))
	}
	if s.Vcpus == 0 || s.Vcpus > MaxVcpus {
		errs = append(errs, fmt.Errorf("vcpus %d is not within 1..%d", s.Vcpus, MaxVcpus))
	}
	if s.MemoryMiB < MinMemoryMiB {
		errs = append(errs, fmt.Errorf("memory %d MiB is less than %d MiB", s.MemoryMiB, MinMemoryMiB))
	}
	if s.Kernel == "" {
		errs = append(errs, errors.New("no kernel"))
	}
	if s.Initrd == "" {
		errs = append(errs, errors.New("no initrd"))
	}
	if strings.ContainsAny(s.Cmdline, "\n\x00") {
		errs = append(errs, errors.New("cmdline contains a newline or NUL"))
	}
	if s.Task != nil && s.Task.Command == "" {
		errs = append(errs, errors.New("task has no command"))
	}
	if s.Task != nil && s.Task.TimeoutMillis < 0 {
		errs = append(errs, fmt.Errorf("task timeout %d ms is negative", s.Task.TimeoutMillis))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vm spec: %w", err)
	}
	return nil
}

// launchVersion is the version of spec.json this package writes and reads.
const launchVersion = 1

const launchFile = "spec.json"

// launch is DIR/spec.json: everything a supervisor needs to run its VM,
// written by the Manager before it spawns the supervisor.
type launch struct {
	Version int  `json:"version"`
	Spec    Spec `json:"spec"`
	// Dir is the VM's directory (absolute).
	Dir string `json:"dir"`
	// Driver names the hypervisor driver ("qemu").
	Driver string `json:"driver"`
	// Binary is the hypervisor's executable.
	Binary string `json:"binary"`
	// QEMUCaps is what Binary's microvm machine supports.
	QEMUCaps qemuCaps `json:"qemu_caps"`
	// Accel is "kvm" or "tcg".
	Accel string `json:"accel"`
	// AccelCmdline is kernel command-line arguments for Accel, between the
	// defaults and Spec.Cmdline (Config.TCGCmdline under TCG).
	AccelCmdline      string `json:"accel_cmdline,omitempty"`
	BootTimeoutMillis int64  `json:"boot_timeout_ms"`
	StopGraceMillis   int64  `json:"stop_grace_ms"`
	// LeaseUntilMonoNs is when the fencing lease the VM starts with runs
	// out, an instant of CLOCK_MONOTONIC; 0: no fencing.
	LeaseUntilMonoNs int64 `json:"lease_until_mono_ns,omitempty"`
	// CgroupRoot is where cgroups are mounted; CgroupName the VM's cgroup
	// below "blixard/" (<node hash>-<vm>).
	CgroupRoot string `json:"cgroup_root"`
	CgroupName string `json:"cgroup_name"`
}

func (l launch) validate() error {
	var errs []error
	if l.Version != launchVersion {
		errs = append(errs, fmt.Errorf("version %d, this supervisor reads version %d", l.Version, launchVersion))
	}
	if err := l.Spec.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !filepath.IsAbs(l.Dir) {
		errs = append(errs, fmt.Errorf("dir %q is not absolute", l.Dir))
	}
	if _, ok := drivers[l.Driver]; !ok {
		errs = append(errs, fmt.Errorf("unknown driver %q", l.Driver))
	}
	if l.Binary == "" {
		errs = append(errs, errors.New("no hypervisor binary"))
	}
	if l.Accel != AccelKVM && l.Accel != AccelTCG {
		errs = append(errs, fmt.Errorf("accel %q is not kvm or tcg", l.Accel))
	}
	if l.BootTimeoutMillis <= 0 || l.StopGraceMillis <= 0 || l.LeaseUntilMonoNs < 0 {
		errs = append(errs, errors.New("boot timeout and stop grace must be positive, lease not negative"))
	}
	if l.CgroupName == "" || strings.ContainsAny(l.CgroupName, "/.") {
		errs = append(errs, fmt.Errorf("cgroup name %q", l.CgroupName))
	}
	return errors.Join(errs...)
}

func writeLaunch(l launch) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", launchFile, err)
	}
	return writeFileAtomic(filepath.Join(l.Dir, launchFile), append(data, '\n'))
}

func readLaunch(dir string) (launch, error) {
	var l launch
	path := filepath.Join(dir, launchFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return l, fmt.Errorf("read launch spec: %w", err)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return l, fmt.Errorf("read launch spec %s: %w", path, err)
	}
	if err := l.validate(); err != nil {
		return l, fmt.Errorf("launch spec %s: %w", path, err)
	}
	return l, nil
}
