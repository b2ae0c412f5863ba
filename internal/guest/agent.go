package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// HeartbeatInterval is how often the agent sends a heartbeat frame.
const HeartbeatInterval = time.Second

// TaskFile is where a task image carries the task to run at boot (written
// there by image.WithFiles): a JSON wire.Run.
const TaskFile = "/blixard/task.json"

// ProtocolVersion is the Version of the agent's ready frame.
const ProtocolVersion = 1

// maxTaskFileBytes bounds the task file; a wire.Run fits in a frame body.
const maxTaskFileBytes = wire.MaxBody

// Agent is the agent's protocol loop, apart from the PID 1 setup of Main so
// that it runs on a host over pipes in tests.
type Agent struct {
	Console *Console
	// Input carries the host's frames (the console, read side); nil: no
	// frames are read.
	Input io.Reader
	// Runner runs the tasks.
	Runner *Runner
	// Kernel is the guest's kernel release, for the ready frame.
	Kernel string
	// Uptime returns how long ago the guest booted; nil reports 0.
	Uptime func() time.Duration
	// TaskFile is the task to run at boot if the file exists; "" for none.
	TaskFile string
	// HeartbeatInterval between heartbeat frames; 0 means HeartbeatInterval.
	HeartbeatInterval time.Duration
	// Poweroff powers the VM off. Serve calls it once, after the console has
	// been drained; in the guest it does not return.
	Poweroff func(reason string)

	mu sync.Mutex
	// busy: a task is running. Guarded by mu.
	busy bool
	// stopped: Serve is powering off and starts no more tasks. Guarded by mu.
	stopped bool
	// tasks counts running task goroutines.
	tasks sync.WaitGroup
}

// Serve sends the ready frame, then heartbeats; runs the task file, if any;
// obeys the host's frames; and returns once it has called Poweroff (nil) or
// ctx is done (its error). It returns an error at once if the ready frame
// cannot be written.
func (a *Agent) Serve(ctx context.Context) error {
	taskCtx, cancelTasks := context.WithCancelCause(ctx)
	defer cancelTasks(nil)
	// poweroff carries the reason of the first power-off request.
	poweroff := make(chan string, 1)
	requestPoweroff := func(reason string) {
		select {
		case poweroff <- reason:
		default:
		}
	}

	_ = a.Console.Printf("ready (kernel %s)", a.Kernel)
	if err := a.Console.Send(wire.KindReady, wire.Ready{Version: ProtocolVersion, Kernel: a.Kernel, UptimeMillis: a.uptime()}); err != nil {
		return fmt.Errorf("send ready frame: %w", err)
	}

	var heartbeats sync.WaitGroup
	heartbeats.Go(func() { a.heartbeat(taskCtx) })
	defer heartbeats.Wait()
	defer cancelTasks(errors.New("agent stopped"))

	if a.TaskFile != "" {
		a.runTaskFile(taskCtx, requestPoweroff)
	}
	if a.Input != nil {
		go a.readCommands(taskCtx, requestPoweroff)
	}

	select {
	case reason := <-poweroff:
		a.mu.Lock()
		a.stopped = true
		a.mu.Unlock()
		// A running task is killed and its exit frame sent before the VM
		// goes: the runner bounds this by killWait + outputGrace.
		cancelTasks(fmt.Errorf("poweroff: %s", reason))
		a.tasks.Wait()
		_ = a.Console.Printf("powering off (%s)", reason)
		_ = a.Console.Drain()
		a.Poweroff(reason)
		return nil
	case <-ctx.Done():
		a.mu.Lock()
		a.stopped = true
		a.mu.Unlock()
		cancelTasks(context.Cause(ctx))
		a.tasks.Wait()
		return ctx.Err()
	}
}

func (a *Agent) uptime() int64 {
	if a.Uptime == nil {
		return 0
	}
	return a.Uptime().Milliseconds()
}

func (a *Agent) heartbeat(ctx context.Context) {
	interval := a.HeartbeatInterval
	if interval <= 0 {
		interval = HeartbeatInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = a.Console.Send(wire.KindHeartbeat, wire.Heartbeat{Seq: seq, UptimeMillis: a.uptime()})
	}
}

// runTaskFile starts the task in a.TaskFile if the file exists. A file that
// exists but cannot be read as a wire.Run is reported as a task that could
// not start (exit code 127), and the VM powers off: it was made for that
// task alone.
func (a *Agent) runTaskFile(ctx context.Context, requestPoweroff func(string)) {
	run, err := readTaskFile(a.TaskFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		_ = a.Console.Printf("task file: %v", err)
		_ = a.Console.Send(wire.KindExit, wire.Exit{Code: 127, Error: err.Error()})
		requestPoweroff("unreadable task file")
		return
	}
	_ = a.Console.Printf("running task from %s: %s", a.TaskFile, run.Command)
	a.startTask(ctx, run, requestPoweroff)
}

func readTaskFile(path string) (wire.Run, error) {
	var run wire.Run
	f, err := os.Open(path)
	if err != nil {
		return run, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTaskFileBytes+1))
	if err != nil {
		return run, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxTaskFileBytes {
		return run, fmt.Errorf("%s is larger than %d bytes", path, maxTaskFileBytes)
	}
	if err := json.Unmarshal(data, &run); err != nil {
		return run, fmt.Errorf("%s: %w", path, err)
	}
	return run, nil
}

// startTask runs run in a goroutine unless a task is running already or the
// agent is stopping.
//
// The agent is idle again (or, for a PoweroffAfter task, stopping) before
// the task's exit frame is written, not after: a host may send its next Run
// frame as soon as it reads the exit frame, and that frame must not find
// the finished task still marked as running.
func (a *Agent) startTask(ctx context.Context, run wire.Run, requestPoweroff func(string)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.stopped:
		_ = a.Console.Printf("refused a task: powering off")
		return
	case a.busy:
		_ = a.Console.Printf("refused a task: another task is running")
		return
	}
	a.busy = true
	a.tasks.Go(func() {
		a.Runner.runThen(ctx, run, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.busy = false
			if run.PoweroffAfter {
				// A Run frame between this exit frame and the power-off
				// is refused, not started only to be killed.
				a.stopped = true
			}
		})
		if run.PoweroffAfter {
			requestPoweroff("task ended")
		}
	})
}

// readCommands obeys the host's frames until Input ends.
func (a *Agent) readCommands(ctx context.Context, requestPoweroff func(string)) {
	r := wire.NewReader(a.Input)
	for {
		it, err := r.Next()
		if err != nil {
			if ctx.Err() == nil {
				_ = a.Console.Printf("console input ended: %v", err)
			}
			return
		}
		if it.Frame == nil {
			continue
		}
		switch it.Frame.Kind {
		case wire.KindRun:
			var run wire.Run
			if err := it.Frame.Decode(&run); err != nil {
				_ = a.Console.Printf("refused a run frame: %v", err)
				continue
			}
			a.startTask(ctx, run, requestPoweroff)
		case wire.KindPoweroff:
			var p wire.Poweroff
			_ = it.Frame.Decode(&p)
			reason := "requested by the host"
			if p.Reason != "" {
				reason += ": " + p.Reason
			}
			requestPoweroff(reason)
		default:
			_ = a.Console.Printf("ignored a %s frame from the host", it.Frame.Kind)
		}
	}
}
