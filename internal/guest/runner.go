package guest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// DefaultPath is the PATH of the agent and of the tasks it runs. The default
// image has busybox and its applets in /bin (/sbin, /usr/bin and /usr/sbin
// link to it).
const DefaultPath = "/bin:/sbin:/usr/bin:/usr/sbin"

// MaxChunkBytes bounds the data of one output frame: a frame's body is
// base64 twice over, so 2 KiB of output makes a console line of about 3.7 KB.
const MaxChunkBytes = 2 << 10

// outputGrace is how long, after a task's process group has been killed,
// the runner waits for the rest of its output before it closes the pipes:
// only a process that left the group (setsid) can hold them open that long.
const outputGrace = 2 * time.Second

// killWait bounds the wait for a process to die after SIGKILL (a process
// stuck in uninterruptible sleep does not).
const killWait = 10 * time.Second

// DefaultEnv is the environment a task starts from; its wire.Run's Env is
// added to it (and wins).
func DefaultEnv() []string {
	return []string{"HOME=/root", "PATH=" + DefaultPath, "TERM=dumb", "TMPDIR=/tmp"}
}

// Runner runs tasks: it streams their output as wire.KindOutput frames and
// reports their end with a wire.KindExit frame and a console text line.
type Runner struct {
	Console *Console
	// Reaper starts the task's process and waits for it.
	Reaper *Reaper
	// Env is the base environment; nil means DefaultEnv().
	Env []string
}

// Run runs one task and returns how it ended, after the exit frame has
// been written. Cancelling ctx kills the task's process group.
func (r *Runner) Run(ctx context.Context, run wire.Run) wire.Exit {
	return r.runThen(ctx, run, nil)
}

// runThen is Run, calling ended (if not nil) once the task has ended and
// before its end is reported on the console. The host answers the exit
// frame at once (with its next Run frame, say), so whatever state that
// answer depends on must be settled by ended before the frame goes out.
func (r *Runner) runThen(ctx context.Context, run wire.Run, ended func()) wire.Exit {
	start := time.Now()
	exit := r.run(ctx, run)
	exit.DurationMillis = time.Since(start).Milliseconds()
	if ended != nil {
		ended()
	}
	switch {
	case exit.TimedOut:
		_ = r.Console.Printf("task timed out after %d ms and was killed", run.TimeoutMillis)
	case exit.Error != "":
		_ = r.Console.Printf("task exited with code %d: %s", exit.Code, exit.Error)
	default:
		_ = r.Console.Printf("task exited with code %d", exit.Code)
	}
	_ = r.Console.Send(wire.KindExit, exit)
	return exit
}

func (r *Runner) run(ctx context.Context, run wire.Run) wire.Exit {
	env := mergeEnv(r.Env, run.Env)
	path, err := lookPath(run.Command, envValue(env, "PATH"))
	if err != nil {
		return wire.Exit{Code: 127, Error: err.Error()}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return wire.Exit{Code: 127, Error: fmt.Sprintf("stdout pipe: %v", err)}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return wire.Exit{Code: 127, Error: fmt.Sprintf("stderr pipe: %v", err)}
	}
	cmd := &exec.Cmd{
		Path:   path,
		Args:   append([]string{run.Command}, run.Args...),
		Env:    env,
		Stdout: outW,
		Stderr: errW,
		// Stdin nil: /dev/null. Its own group, so that a timeout kills
		// everything the task started.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	exited, err := r.Reaper.Start(cmd)
	// The child has its copies of the write ends; the parent's must close
	// so that the readers see EOF when the task's processes are gone.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return wire.Exit{Code: 127, Error: fmt.Sprintf("start %s: %v", run.Command, err)}
	}
	defer cmd.Process.Release()
	pgid := cmd.Process.Pid

	var readers sync.WaitGroup
	for _, s := range []struct {
		name string
		f    *os.File
	}{{"stdout", outR}, {"stderr", errR}} {
		readers.Go(func() { r.stream(s.name, s.f) })
	}

	var timeout <-chan time.Time
	if run.TimeoutMillis > 0 {
		t := time.NewTimer(time.Duration(run.TimeoutMillis) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	var exit wire.Exit
	var ws syscall.WaitStatus
	select {
	case ws = <-exited:
		exit.Code, exit.Error = exitCode(ws)
	case <-timeout:
		exit = r.kill(pgid, exited, "timeout")
		exit.TimedOut = true
	case <-ctx.Done():
		exit = r.kill(pgid, exited, fmt.Sprintf("killed: %v", context.Cause(ctx)))
	}
	// Whatever the task left running in its group goes with it.
	killGroup(pgid)

	drained := make(chan struct{})
	go func() {
		readers.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(outputGrace):
		// A process outside the group still holds a pipe; stop reading.
		outR.Close()
		errR.Close()
		<-drained
	}
	outR.Close()
	errR.Close()
	return exit
}

// kill kills the task's group and waits for its process, at most killWait.
func (r *Runner) kill(pgid int, exited <-chan syscall.WaitStatus, reason string) wire.Exit {
	killGroup(pgid)
	select {
	case ws := <-exited:
		code, _ := exitCode(ws)
		return wire.Exit{Code: code, Error: reason}
	case <-time.After(killWait):
		return wire.Exit{Code: -1, Error: reason + "; the process did not exit after SIGKILL"}
	}
}

// killGroup sends SIGKILL to process group pgid; a group that is gone
// already is fine.
func killGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// stream sends what f yields as output frames of stream name until EOF or
// until f is closed.
func (r *Runner) stream(name string, f *os.File) {
	buf := make([]byte, MaxChunkBytes)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			// A console that fails to write is no reason to stop reading:
			// the task would block on a full pipe.
			_ = r.Console.Send(wire.KindOutput, wire.Output{Stream: name, Data: buf[:n]})
		}
		if err != nil {
			return
		}
	}
}

// mergeEnv returns base (DefaultEnv() when nil) with the variables of add
// set, in a stable order: base's order, then add's new keys sorted.
func mergeEnv(base []string, add map[string]string) []string {
	if base == nil {
		base = DefaultEnv()
	}
	env := make([]string, 0, len(base)+len(add))
	seen := map[string]bool{}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if v, ok := add[k]; ok {
			kv = k + "=" + v
		}
		seen[k] = true
		env = append(env, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(add)) {
		if !seen[k] {
			env = append(env, k+"="+add[k])
		}
	}
	return env
}

// envValue returns the value of key in env, "" if absent.
func envValue(env []string, key string) string {
	for _, kv := range slices.Backward(env) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds the program a task names: a name with a slash as it is,
// any other in the directories of pathList (the task's PATH, not the
// agent's).
func lookPath(file, pathList string) (string, error) {
	if file == "" {
		return "", errors.New("no command given")
	}
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", err
		}
		return file, nil
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found in PATH %q", file, pathList)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s: is a directory", p)
	case fi.Mode()&0o111 == 0:
		return &fs.PathError{Op: "exec", Path: p, Err: fs.ErrPermission}
	}
	return nil
}
