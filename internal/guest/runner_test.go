package guest

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

func TestRunnerTasks(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcde\n", 10000) // 160,000 bytes
	tests := []struct {
		name       string
		run        wire.Run
		wantStdout string
		wantStderr string
		want       wire.Exit
		// wantError: a substring of the exit's Error ("" = none).
		wantError string
		wantText  string
		// bgPidOut: stdout is the pid of a background process that must
		// die with the task.
		bgPidOut bool
	}{{
		name:       "exit code and output",
		run:        wire.Run{Command: "sh", Args: []string{"-c", "echo hello; exit 3"}},
		wantStdout: "hello\n",
		want:       wire.Exit{Code: 3},
		wantText:   "task exited with code 3",
	}, {
		name:       "stderr apart from stdout",
		run:        wire.Run{Command: "sh", Args: []string{"-c", "echo out; echo err >&2"}},
		wantStdout: "out\n",
		wantStderr: "err\n",
		want:       wire.Exit{Code: 0},
	}, {
		name:       "environment added to the base",
		run:        wire.Run{Command: "sh", Args: []string{"-c", `echo "$GREETING $HOME"`}, Env: map[string]string{"GREETING": "hi there"}},
		wantStdout: "hi there /root\n",
	}, {
		name: "stdin is /dev/null",
		run:  wire.Run{Command: "cat"},
	}, {
		name:      "killed by a signal",
		run:       wire.Run{Command: "sh", Args: []string{"-c", "kill -9 $$"}},
		want:      wire.Exit{Code: 137},
		wantError: "killed by signal 9",
	}, {
		name:      "command not found",
		run:       wire.Run{Command: "no-such-command-blixard"},
		want:      wire.Exit{Code: 127},
		wantError: "command not found",
		wantText:  "task exited with code 127",
	}, {
		name:      "no command",
		run:       wire.Run{},
		want:      wire.Exit{Code: 127},
		wantError: "no command",
	}, {
		name:      "not executable",
		run:       wire.Run{Command: "/etc/passwd"},
		want:      wire.Exit{Code: 127},
		wantError: "permission denied",
	}, {
		name:      "timeout kills the whole group",
		run:       wire.Run{Command: "sh", Args: []string{"-c", "sleep 30 & sleep 30; echo never"}, TimeoutMillis: 300},
		want:      wire.Exit{Code: 137, TimedOut: true},
		wantError: "timeout",
		wantText:  "task timed out after 300 ms",
	}, {
		name:     "a background process dies with the task",
		run:      wire.Run{Command: "sh", Args: []string{"-c", "sleep 30 & echo $!"}},
		bgPidOut: true,
	}, {
		name:       "large output in chunks",
		run:        wire.Run{Command: "sh", Args: []string{"-c", "yes 0123456789abcde | head -c 160000"}},
		wantStdout: big,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			con, host := newConsole(t)
			r := &Runner{Console: con, Reaper: testReaper}
			start := time.Now()
			exit := r.Run(context.Background(), tt.run)
			took := time.Since(start)
			tk := host.task()
			if tt.bgPidOut {
				// The task printed its background process's pid: once
				// the task has ended, that process must be gone.
				pid, err := strconv.Atoi(strings.TrimSpace(tk.stdout.String()))
				if err != nil {
					t.Fatalf("stdout %q is not a pid", tk.stdout.String())
				}
				gone := time.Now().Add(deadline)
				for syscall.Kill(pid, 0) == nil && !zombie(pid) {
					if time.Now().After(gone) {
						t.Fatalf("the task's background process %d outlived it", pid)
					}
					runtime.Gosched()
				}
				tt.wantStdout = tk.stdout.String()
			}

			if exit.Code != tt.want.Code || exit.TimedOut != tt.want.TimedOut {
				t.Errorf("Run returned %+v, want code %d timed out %v", exit, tt.want.Code, tt.want.TimedOut)
			}
			if tk.exit != exit {
				t.Errorf("exit frame %+v, Run returned %+v", tk.exit, exit)
			}
			if tt.wantError == "" && exit.Error != "" || !strings.Contains(exit.Error, tt.wantError) {
				t.Errorf("exit error %q, want %q", exit.Error, tt.wantError)
			}
			if got := tk.stdout.String(); got != tt.wantStdout {
				t.Errorf("stdout %.80q (%d bytes), want %.80q (%d bytes)", got, len(got), tt.wantStdout, len(tt.wantStdout))
			}
			if got := tk.stderr.String(); got != tt.wantStderr {
				t.Errorf("stderr %q, want %q", got, tt.wantStderr)
			}
			for _, n := range tk.chunks {
				if n == 0 || n > MaxChunkBytes {
					t.Errorf("an output frame of %d bytes, want 1 to %d", n, MaxChunkBytes)
				}
			}
			if tt.wantText != "" && !containsLine(tk.texts, tt.wantText) {
				t.Errorf("console text %q has no line with %q", tk.texts, tt.wantText)
			}
			if exit.DurationMillis < 0 || exit.DurationMillis > took.Milliseconds()+1 {
				t.Errorf("duration %d ms, but Run took %v", exit.DurationMillis, took)
			}
		})
	}
}

func TestRunnerContextCancelKills(t *testing.T) {
	t.Parallel()
	con, host := newConsole(t)
	r := &Runner{Console: con, Reaper: testReaper}
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(context.Canceled) })
	exit := r.Run(ctx, wire.Run{Command: "sleep", Args: []string{"30"}})
	host.task()
	if exit.Code != 137 || exit.TimedOut || !strings.Contains(exit.Error, "killed") {
		t.Fatalf("exit %+v, want code 137 killed, not timed out", exit)
	}
}

// A process that leaves the task's group and keeps its output pipe open
// delays the end of the task by at most outputGrace.
func TestRunnerEscapedProcessHoldsOutputOnlyForTheGrace(t *testing.T) {
	t.Parallel()
	con, host := newConsole(t)
	r := &Runner{Console: con, Reaper: testReaper}
	// The task waits until the escaped process has left its group, so that
	// the group kill cannot catch it first.
	flag := filepath.Join(t.TempDir(), "escaped")
	script := `setsid sh -c 'echo $$ > "$FLAG.tmp"; mv "$FLAG.tmp" "$FLAG"; exec sleep 60' & while [ ! -e "$FLAG" ]; do sleep 0.01; done; echo out`
	exit := r.Run(context.Background(), wire.Run{Command: "sh", Args: []string{"-c", script}, Env: map[string]string{"FLAG": flag}})
	tk := host.task()
	if exit.Code != 0 || tk.stdout.String() != "out\n" {
		t.Fatalf("exit %+v, stdout %q", exit, tk.stdout.String())
	}
	// Run has returned while the escaped process still runs, holding the
	// output pipe: the runner did not wait for the pipe to close.
	data, err := os.ReadFile(flag)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("pid file holds %q", data)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if syscall.Kill(pid, 0) != nil || zombie(pid) {
		t.Fatalf("the escaped process %d is gone: the test proves nothing", pid)
	}
}

// zombie reports whether pid has exited and waits for its parent.
func zombie(pid int) bool {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return i > 0 && i+2 < len(st) && st[i+2] == 'Z'
}

func TestReaperReapsOrphans(t *testing.T) {
	// Not parallel: it counts orphans, which other tests make too.
	con, host := newConsole(t)
	r := &Runner{Console: con, Reaper: testReaper}
	before := testReaper.Orphans()
	// The double fork leaves sleep orphaned outside the task's group (so the
	// group kill misses it) and with its output elsewhere; it comes to the
	// test process, a subreaper as PID 1 would be.
	flag := filepath.Join(t.TempDir(), "escaped")
	script := `(setsid sh -c 'touch "$FLAG"; exec sleep 0.2' >/dev/null 2>&1 &); while [ ! -e "$FLAG" ]; do sleep 0.01; done`
	exit := r.Run(context.Background(), wire.Run{Command: "sh", Args: []string{"-c", script}, Env: map[string]string{"FLAG": flag}})
	host.task()
	if exit.Code != 0 {
		t.Fatalf("exit %+v", exit)
	}
	timeout := time.Now().Add(deadline)
	for testReaper.Orphans() < before+1 {
		if time.Now().After(timeout) {
			t.Fatalf("orphans reaped: %d, want at least %d", testReaper.Orphans(), before+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMergeEnv(t *testing.T) {
	tests := []struct {
		name string
		base []string
		add  map[string]string
		want []string
	}{
		{"default base", nil, nil, DefaultEnv()},
		{"override keeps the order", []string{"A=1", "PATH=/x"}, map[string]string{"PATH": "/y"}, []string{"A=1", "PATH=/y"}},
		{"new keys sorted after", []string{"A=1"}, map[string]string{"Z": "z", "B": "b"}, []string{"A=1", "B=b", "Z=z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeEnv(tt.base, tt.add)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLookPathUsesTheTasksPath(t *testing.T) {
	dir := t.TempDir()
	if _, err := lookPath("sh", dir); err == nil {
		t.Fatal("sh found in an empty PATH")
	}
	p, err := lookPath("sh", dir+":/bin")
	if err != nil || p != "/bin/sh" {
		t.Fatalf("lookPath(sh) = %q, %v", p, err)
	}
}
