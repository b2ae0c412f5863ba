package main

import (
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blixard/blixard/bench/hostinfo"
)

// describeMachine is one line about the machine: cores, CPU model, memory,
// whether /dev/kvm exists, kernel, Go.
func describeMachine() string {
	model, procs := hostinfo.CPUModel()
	kvm := "no /dev/kvm"
	if _, err := os.Stat("/dev/kvm"); err == nil {
		kvm = "/dev/kvm present"
	}
	mem := ""
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(si.Totalram)*float64(si.Unit)/(1<<30))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("nproc %d (%d in /proc/cpuinfo), %q%s, %s, Linux %s, %s",
		goruntime.NumCPU(), procs, model, mem, kvm, strings.TrimSpace(string(kernel)), goruntime.Version())
}

// fsType names the file system that holds dir, which decides what an fsync
// costs (on tmpfs it costs nothing).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "file system unknown"
	}
	switch st.Type {
	case 0xEF53:
		return "ext4"
	case 0x01021994:
		return "tmpfs: fsync is free here, the figures do not measure a disk"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system magic %#x", st.Type)
}

func load1() float64 {
	f := strings.Fields(hostinfo.LoadAvg())
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// waitForLoad waits until the 1-minute load average is below limit, for at
// most wait; it says what it does.
func waitForLoad(ctx context.Context, limit float64, wait time.Duration) {
	deadline := time.Now().Add(wait)
	said := false
	for {
		l := load1()
		if l < limit {
			if said {
				fmt.Printf("load average now %.2f\n", l)
			}
			return
		}
		if time.Now().After(deadline) {
			fmt.Printf("load average still %.2f after %s; running anyway\n", l, wait)
			return
		}
		if !said {
			fmt.Printf("waiting (up to %s) for the load average (%.2f) to drop below %.2f\n", wait, l, limit)
			said = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}
