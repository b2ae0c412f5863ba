package vmm

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Files in a VM's directory, DataDir/vms/<name>/.
const (
	// serialSocket is QEMU's serial console, a unix socket it listens on.
	serialSocket = "serial.sock"
	// qmpSocket is QEMU's QMP socket.
	qmpSocket = "qmp.sock"
	// ctlSocket is the supervisor's control socket.
	ctlSocket = "ctl.sock"
	// consoleLog is the VM's whole raw console, written by QEMU.
	consoleLog = "console.log"
	// supervisorLog is the supervisor's stdout and stderr (and QEMU's).
	supervisorLog = "supervisor.log"
)

// maxUnixPath is the longest path a unix socket address holds (sun_path is
// 108 bytes with its NUL).
const maxUnixPath = 107

// withUnixPath calls f with a path naming dir/name that fits in a unix
// socket address: dir/name itself when short enough, else the same file
// reached through an open descriptor of dir (/proc/self/fd/N/name), so that
// a deep data directory works.
func withUnixPath(dir, name string, f func(path string) error) error {
	path := filepath.Join(dir, name)
	if len(path) <= maxUnixPath {
		return f(path)
	}
	d, err := os.OpenFile(dir, oPath|syscall.O_DIRECTORY, 0)
	if err != nil {
		return fmt.Errorf("open %s for its socket: %w", dir, err)
	}
	defer d.Close()
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name))
}

// dialUnix connects to the unix socket dir/name.
func dialUnix(ctx context.Context, dir, name string) (net.Conn, error) {
	var conn net.Conn
	err := withUnixPath(dir, name, func(path string) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", filepath.Join(dir, name), err)
	}
	return conn, nil
}

// listenUnix listens on the unix socket dir/name, replacing a stale one.
func listenUnix(dir, name string) (*net.UnixListener, error) {
	var ln *net.UnixListener
	_ = os.Remove(filepath.Join(dir, name))
	err := withUnixPath(dir, name, func(path string) error {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		ln = l
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", filepath.Join(dir, name), err)
	}
	// The listener was bound maybe through /proc/self/fd: do not let Close
	// try to unlink that name; the owner removes the socket file.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// oPath is Linux's O_PATH (the syscall package does not name it): open a
// directory only to name things in it.
const oPath = 0x200000
