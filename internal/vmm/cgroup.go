package vmm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultCgroupRoot is where cgroup file systems are mounted.
const DefaultCgroupRoot = "/sys/fs/cgroup"

// cgroupParent is the directory below which every VM's cgroup sits.
const cgroupParent = "blixard"

// nodeHash is a short hash of a node's data directory: the part of a VM's
// cgroup name that keeps the VMs of several nodes on one machine apart.
func nodeHash(dataDir string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(dataDir)))
	return hex.EncodeToString(sum[:4])
}

// cgroupName is the VM's cgroup below blixard/.
func cgroupName(dataDir, vm string) string {
	return nodeHash(dataDir) + "-" + strings.ReplaceAll(vm, ".", "_")
}

// cgroups are the cgroups made for one VM's hypervisor.
type cgroups struct {
	// limits are what was applied; limits.Dirs the directories made.
	limits Limits
}

// cgroupV2 reports whether root is a cgroup v2 mount with the cpu and
// memory controllers.
func cgroupV2(root string) bool {
	data, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return slices.Contains(f, "cpu") && slices.Contains(f, "memory")
}

// ownCgroupV1 returns this process's cgroup path in the v1 hierarchy that
// holds controller, from /proc/self/cgroup ("4:memory:/a/b").
func ownCgroupV1(controller string) (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	return cgroupPathV1(data, controller)
}

// cgroupPathV1 finds controller's path in the content of a /proc/<pid>/cgroup
// file.
func cgroupPathV1(data []byte, controller string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if slices.Contains(strings.Split(parts[1], ","), controller) {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("no v1 %s cgroup in /proc/self/cgroup", controller)
}

// cgroupPathV2 finds the unified hierarchy's path ("0::/a/b") in the content
// of a /proc/<pid>/cgroup file.
func cgroupPathV2(data []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, true
		}
	}
	return "", false
}

func writeCgroupFile(dir, name, value string) error {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("cgroup: set %s to %s: %w", filepath.Join(dir, name), value, err)
	}
	return nil
}

// makeCgroups creates the cgroups of the VM spec named name under root and
// sets their limits. What cannot be done is recorded in limits.Warning; it
// never fails the VM.
func makeCgroups(root, name string, spec Spec) *cgroups {
	cg := &cgroups{}
	quota, period, mem := CPUQuotaMicros(spec), int64(CPUPeriodMicros), MemoryLimitBytes(spec)
	var warnings []error
	if cgroupV2(root) {
		cg.limits.Cgroup = "v2"
		parent := filepath.Join(root, cgroupParent)
		dir := filepath.Join(parent, name)
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			// Controllers must be enabled down the path to the VM's cgroup.
			for _, d := range []string{root, parent} {
				if e := writeCgroupFile(d, "cgroup.subtree_control", "+cpu +memory"); e != nil && err == nil {
					err = e
				}
			}
		}
		if err != nil {
			warnings = append(warnings, fmt.Errorf("cgroup v2: %w", err))
		} else {
			cg.limits.Dirs = append(cg.limits.Dirs, dir)
			if e := writeCgroupFile(dir, "cpu.max", fmt.Sprintf("%d %d", quota, period)); e != nil {
				warnings = append(warnings, e)
			} else {
				cg.limits.CPUQuotaMicros, cg.limits.CPUPeriodMicros = quota, period
			}
			if e := writeCgroupFile(dir, "memory.max", strconv.FormatInt(mem, 10)); e != nil {
				warnings = append(warnings, e)
			} else {
				cg.limits.MemoryBytes = mem
			}
		}
	} else {
		cg.limits.Cgroup = "v1"
		for _, controller := range []string{"cpu", "memory"} {
			own, err := ownCgroupV1(controller)
			var dir string
			if err == nil {
				dir = filepath.Join(root, controller, own, cgroupParent, name)
				err = os.MkdirAll(dir, 0o755)
			}
			if err != nil {
				warnings = append(warnings, fmt.Errorf("cgroup v1 %s: %w", controller, err))
				continue
			}
			cg.limits.Dirs = append(cg.limits.Dirs, dir)
			switch controller {
			case "cpu":
				err = writeCgroupFile(dir, "cpu.cfs_period_us", strconv.FormatInt(period, 10))
				if err == nil {
					err = writeCgroupFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
				}
				if err == nil {
					cg.limits.CPUQuotaMicros, cg.limits.CPUPeriodMicros = quota, period
				}
			case "memory":
				err = writeCgroupFile(dir, "memory.limit_in_bytes", strconv.FormatInt(mem, 10))
				if err == nil {
					cg.limits.MemoryBytes = mem
				}
			}
			if err != nil {
				warnings = append(warnings, err)
			}
		}
	}
	if len(cg.limits.Dirs) == 0 {
		cg.limits.Cgroup = ""
	}
	if err := errors.Join(warnings...); err != nil {
		cg.limits.Warning = err.Error()
	}
	return cg
}

// verify checks that process pid is in every cgroup made (the shim joined
// them before it became QEMU). A cgroup pid is not in no longer counts as
// applied.
func (cg *cgroups) verify(pid int) {
	var warnings []string
	if cg.limits.Warning != "" {
		warnings = append(warnings, cg.limits.Warning)
	}
	var joined []string
	for _, dir := range cg.limits.Dirs {
		if err := inCgroup(dir, pid); err != nil {
			warnings = append(warnings, err.Error())
			switch {
			case cg.limits.Cgroup == "v2":
				cg.limits.CPUQuotaMicros, cg.limits.CPUPeriodMicros, cg.limits.MemoryBytes = 0, 0, 0
			case strings.Contains(dir, "/cpu/"):
				cg.limits.CPUQuotaMicros, cg.limits.CPUPeriodMicros = 0, 0
			default:
				cg.limits.MemoryBytes = 0
			}
			continue
		}
		joined = append(joined, dir)
	}
	if len(joined) == 0 {
		cg.limits.Cgroup = ""
	}
	cg.limits.Warning = strings.Join(warnings, "; ")
}

// inCgroup reports (as nil) whether pid is in the cgroup dir.
func inCgroup(dir string, pid int) error {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	if !slices.Contains(strings.Fields(string(data)), strconv.Itoa(pid)) {
		return fmt.Errorf("cgroup: process %d is not in %s", pid, dir)
	}
	return nil
}

// removeCgroups removes the cgroup directories dirs, once the processes in
// them are gone: it retries for up to a second while the kernel still
// counts exiting tasks.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		deadline := time.Now().Add(time.Second)
		for {
			err := syscall.Rmdir(dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			errs = append(errs, fmt.Errorf("cgroup: remove %s: %w", dir, err))
			break
		}
	}
	return errors.Join(errs...)
}

// CgroupLimits reads the CPU quota and period (in µs) and the memory limit
// (in bytes) that apply to process pid, from the cgroups it is in under
// DefaultCgroupRoot (v1 cpu and memory hierarchies, else v2). An unlimited
// value is -1.
func CgroupLimits(pid int) (cpuQuota, cpuPeriod, memoryBytes int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: %w", pid, err)
	}
	root := DefaultCgroupRoot
	if !cgroupV2(root) {
		cpuPath, err1 := cgroupPathV1(data, "cpu")
		memPath, err2 := cgroupPathV1(data, "memory")
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: %w", pid, err)
		}
		cpuDir := filepath.Join(root, "cpu", cpuPath)
		memDir := filepath.Join(root, "memory", memPath)
		cpuQuota, err1 = readCgroupInt(cpuDir, "cpu.cfs_quota_us")
		cpuPeriod, err2 = readCgroupInt(cpuDir, "cpu.cfs_period_us")
		var err3 error
		memoryBytes, err3 = readCgroupInt(memDir, "memory.limit_in_bytes")
		if err := errors.Join(err1, err2, err3); err != nil {
			return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: %w", pid, err)
		}
		return cpuQuota, cpuPeriod, memoryBytes, nil
	}
	p, ok := cgroupPathV2(data)
	if !ok {
		return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: no cgroup v2 path", pid)
	}
	dir := filepath.Join(root, p)
	cpuMax, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: %w", pid, err)
	}
	f := strings.Fields(string(cpuMax))
	if len(f) != 2 {
		return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: cpu.max %q", pid, cpuMax)
	}
	cpuQuota, err1 := parseCgroupInt(f[0])
	cpuPeriod, err2 := parseCgroupInt(f[1])
	memoryBytes, err3 := readCgroupInt(dir, "memory.max")
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, 0, fmt.Errorf("cgroup limits of pid %d: %w", pid, err)
	}
	return cpuQuota, cpuPeriod, memoryBytes, nil
}

func readCgroupInt(dir, name string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return 0, err
	}
	v, err := parseCgroupInt(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
	}
	return v, nil
}

// parseCgroupInt parses a cgroup number; "max" is -1.
func parseCgroupInt(s string) (int64, error) {
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
