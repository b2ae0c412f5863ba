package guest

import (
	"fmt"
	"io"
	"sync"

	"github.com/blixard/blixard/internal/guest/wire"
)

// Console is the agent's only writer to the serial console. Each frame and
// each text line is written with one Write call under a mutex, so lines
// written from different goroutines never interleave.
type Console struct {
	mu sync.Mutex
	w  io.Writer
}

// NewConsole writes to w.
func NewConsole(w io.Writer) *Console {
	return &Console{w: w}
}

// Send writes one frame.
func (c *Console) Send(kind wire.Kind, v any) error {
	line, err := wire.Encode(kind, v)
	if err != nil {
		return err
	}
	return c.write(line)
}

// Printf writes one human-readable line, "blixard-agent: " and the
// formatted text. A newline is added; newlines inside the text are kept, so
// callers pass single lines.
func (c *Console) Printf(format string, args ...any) error {
	line := fmt.Appendf([]byte("blixard-agent: "), format, args...)
	return c.write(append(line, '\n'))
}

func (c *Console) write(line []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.w.Write(line); err != nil {
		return fmt.Errorf("write to console: %w", err)
	}
	return nil
}

// drainer is a console that can wait until what was written has left it (a
// tty: tcdrain).
type drainer interface{ Drain() error }

// Drain waits until everything written so far has been sent, if the
// underlying writer can tell (a serial tty can: power-off must not cut the
// last frames off).
func (c *Console) Drain() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.w.(drainer); ok {
		return d.Drain()
	}
	return nil
}
