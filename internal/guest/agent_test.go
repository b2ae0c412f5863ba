package guest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

func TestAgentReadyThenHeartbeats(t *testing.T) {
	t.Parallel()
	h := startAgent(t, "")
	var ready wire.Ready
	texts := h.frame(wire.KindReady, &ready)
	if ready.Version != 1 || ready.Kernel != "6.1.0-test" || ready.UptimeMillis != 1500 {
		t.Fatalf("ready frame %+v", ready)
	}
	if !containsLine(texts, "blixard-agent: ready (kernel 6.1.0-test)") {
		t.Fatalf("no ready line before the ready frame: %q", texts)
	}
	var last uint64
	timeout := time.After(deadline)
	for last < 3 {
		select {
		case it := <-h.items:
			if it.Frame == nil || it.Frame.Kind != wire.KindHeartbeat {
				t.Fatalf("got %+v, want heartbeats", it)
			}
			var hb wire.Heartbeat
			if err := it.Frame.Decode(&hb); err != nil {
				t.Fatal(err)
			}
			if hb.Seq != last+1 {
				t.Fatalf("heartbeat %d after %d", hb.Seq, last)
			}
			last = hb.Seq
		case <-timeout:
			t.Fatal("no heartbeats")
		}
	}
}

func TestAgentRunsFramesFromTheHost(t *testing.T) {
	t.Parallel()
	h := startAgent(t, "")
	h.frame(wire.KindReady, &wire.Ready{})
	h.send(wire.KindRun, wire.Run{Command: "sh", Args: []string{"-c", "echo hello; exit 3"}})
	tk := h.task()
	if tk.stdout.String() != "hello\n" || tk.exit.Code != 3 {
		t.Fatalf("stdout %q, exit %+v", tk.stdout.String(), tk.exit)
	}
	// The agent is still listening: a second task, then power-off.
	h.send(wire.KindRun, wire.Run{Command: "true"})
	if tk := h.task(); tk.exit.Code != 0 {
		t.Fatalf("exit %+v", tk.exit)
	}
	h.send(wire.KindPoweroff, wire.Poweroff{Reason: "test done"})
	if reason := h.poweredOff(); !strings.Contains(reason, "test done") {
		t.Fatalf("power-off reason %q", reason)
	}
}

// The host may send its next Run frame the moment it has read an exit
// frame: the agent is idle by then, and takes it.
func TestAgentTakesARunFrameRightAfterTheExitFrame(t *testing.T) {
	t.Parallel()
	h := startAgent(t, "")
	h.frame(wire.KindReady, &wire.Ready{})
	for i := range 20 {
		h.send(wire.KindRun, wire.Run{Command: "true"})
		tk := h.task()
		if tk.exit.Code != 0 {
			t.Fatalf("task %d: exit %+v", i, tk.exit)
		}
		if containsLine(tk.texts, "refused") {
			t.Fatalf("task %d: %q", i, tk.texts)
		}
	}
}

// After the exit frame of a PoweroffAfter task the agent is powering off: a
// Run frame sent then is refused, not started.
func TestAgentRefusesARunFrameAfterAPoweroffAfterTask(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "task.json")
	if err := os.WriteFile(file, []byte(`{"command":"true","poweroff_after":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startAgent(t, file)
	h.frame(wire.KindReady, &wire.Ready{})
	if tk := h.task(); tk.exit.Code != 0 {
		t.Fatalf("exit %+v", tk.exit)
	}
	h.send(wire.KindRun, wire.Run{Command: "true"})
	for {
		it := h.next()
		if it.Frame != nil {
			t.Fatalf("got a %s frame, want the refusal", it.Frame.Kind)
		}
		if strings.Contains(string(it.Text), "refused a task: powering off") {
			break
		}
	}
	h.poweredOff()
}

func TestAgentRunsTheTaskFileAndPowersOff(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "task.json")
	if err := os.WriteFile(file, []byte(`{"command":"sh","args":["-c","echo from file"],"poweroff_after":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startAgent(t, file)
	h.frame(wire.KindReady, &wire.Ready{})
	tk := h.task()
	if tk.stdout.String() != "from file\n" || tk.exit.Code != 0 {
		t.Fatalf("stdout %q, exit %+v", tk.stdout.String(), tk.exit)
	}
	if reason := h.poweredOff(); reason != "task ended" {
		t.Fatalf("power-off reason %q", reason)
	}
}

func TestAgentBadTaskFileFailsAndPowersOff(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "task.json")
	if err := os.WriteFile(file, []byte(`{"command":`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startAgent(t, file)
	h.frame(wire.KindReady, &wire.Ready{})
	var exit wire.Exit
	h.frame(wire.KindExit, &exit)
	if exit.Code != 127 || !strings.Contains(exit.Error, "task.json") {
		t.Fatalf("exit %+v", exit)
	}
	h.poweredOff()
}

func TestAgentPoweroffKillsTheRunningTask(t *testing.T) {
	t.Parallel()
	h := startAgent(t, "")
	h.frame(wire.KindReady, &wire.Ready{})
	h.send(wire.KindRun, wire.Run{Command: "sh", Args: []string{"-c", "echo started; exec sleep 30"}})
	var out wire.Output
	h.frame(wire.KindOutput, &out)
	// A second task while one runs is refused.
	h.send(wire.KindRun, wire.Run{Command: "true"})
	for {
		it := h.next()
		if it.Frame != nil {
			t.Fatalf("got a %s frame, want the refusal", it.Frame.Kind)
		}
		if strings.Contains(string(it.Text), "refused a task: another task is running") {
			break
		}
	}
	h.send(wire.KindPoweroff, wire.Poweroff{})
	tk := h.task()
	if tk.exit.Code != 137 || !strings.Contains(tk.exit.Error, "poweroff") {
		t.Fatalf("exit %+v, want the task killed by the power-off", tk.exit)
	}
	h.poweredOff()
}

// Frames and lines written from many goroutines at once each arrive whole.
func TestConsoleKeepsLinesWhole(t *testing.T) {
	t.Parallel()
	var buf threadSafeBuffer
	con := NewConsole(&buf)
	const writers, each = 8, 200
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				if i%2 == 0 {
					_ = con.Send(wire.KindOutput, wire.Output{Stream: "stdout", Data: []byte(strings.Repeat("x", 1000+w))})
				} else {
					_ = con.Printf("writer %d line %d", w, i)
				}
			}
		}()
	}
	for range writers {
		<-done
	}
	r := wire.NewReader(strings.NewReader(buf.String()))
	var frames, lines int
	for {
		it, err := r.Next()
		if err != nil {
			break
		}
		switch {
		case it.Frame != nil && it.Text == nil:
			frames++
		case it.Frame == nil && strings.HasPrefix(string(it.Text), "blixard-agent: writer "):
			lines++
		default:
			t.Fatalf("a mangled line: %q", it.Text)
		}
	}
	if frames != writers*each/2 || lines != writers*each/2 {
		t.Fatalf("%d frames and %d lines, want %d of each", frames, lines, writers*each/2)
	}
}
