package image

import (
	"fmt"
	"sync"
)

// Cmdline is the kernel command line the default image is made for: the
// kernel's console on the first serial port (the agent's channel to the host
// is /dev/ttyS0), few kernel messages, no waiting on a panic, reboot by
// triple fault (QEMU's -no-reboot turns that into an exit), no crypto
// self-tests at boot.
const Cmdline = "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests"

// TCGCmdline returns Cmdline and TCGArgs: the command line for a guest
// under TCG (software emulation).
func TCGCmdline() (string, error) {
	args, err := TCGArgs()
	if err != nil {
		return "", err
	}
	return Cmdline + " " + args, nil
}

// TCGArgs returns the kernel arguments a guest under TCG needs beyond
// Cmdline. Under TCG the guest's TSC is the host's, but the kernel's
// calibration of it against the emulated PIT fails when the host is busy,
// and the boot then hangs for good (seen here: Debian's 6.1 kernel on QEMU
// 7.2 microvm with a load average of 8, one boot in two). So they are
// tsc_early_khz=<the host's TSC frequency>, which skips the calibration,
// and tsc=reliable, which keeps the clocksource watchdog from dropping the
// TSC for the 4 ms jiffies clock when emulation makes it look jittery.
func TCGArgs() (string, error) {
	khz, err := HostTSCKHz()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("tsc_early_khz=%d tsc=reliable", khz), nil
}

var hostTSC struct {
	once sync.Once
	khz  uint64
	err  error
}

// HostTSCKHz returns the host's TSC frequency in kHz, measured once per
// process (it takes about 100 ms).
func HostTSCKHz() (uint64, error) {
	hostTSC.once.Do(func() { hostTSC.khz, hostTSC.err = measureTSCKHz() })
	return hostTSC.khz, hostTSC.err
}
