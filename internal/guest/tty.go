package guest

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// tcsbrk is the TCSBRK ioctl; with argument 1 it is tcdrain(3). The syscall
// package does not name it.
const tcsbrk = 0x5409

// tty is the console: a terminal device.
type tty struct {
	*os.File
}

func (t *tty) ioctl(req, arg uintptr) error {
	rc, err := t.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg)
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// makeRaw puts the terminal in raw mode, as cfmakeraw(3) does: no echo (the
// host's frames must not come back to it), no line editing, no signals from
// control characters, no newline translation, 8-bit characters.
func (t *tty) makeRaw() error {
	var tio syscall.Termios
	if err := t.ioctl(syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); err != nil {
		return fmt.Errorf("get terminal attributes: %w", err)
	}
	tio.Iflag &^= syscall.IGNBRK | syscall.BRKINT | syscall.PARMRK | syscall.ISTRIP | syscall.INLCR | syscall.IGNCR | syscall.ICRNL | syscall.IXON
	tio.Oflag &^= syscall.OPOST
	tio.Lflag &^= syscall.ECHO | syscall.ECHONL | syscall.ICANON | syscall.ISIG | syscall.IEXTEN
	tio.Cflag &^= syscall.CSIZE | syscall.PARENB
	tio.Cflag |= syscall.CS8
	tio.Cc[syscall.VMIN] = 1
	tio.Cc[syscall.VTIME] = 0
	if err := t.ioctl(syscall.TCSETS, uintptr(unsafe.Pointer(&tio))); err != nil {
		return fmt.Errorf("set raw mode: %w", err)
	}
	return nil
}

// Drain waits until all output written to the terminal has been sent.
func (t *tty) Drain() error {
	if err := t.ioctl(tcsbrk, 1); err != nil {
		return fmt.Errorf("drain console: %w", err)
	}
	return nil
}
